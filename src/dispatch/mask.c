/*-------------------------------------------------------------------------
 *
 * mask.c
 *		Secret masking: outbox.mask_config(), which the view
 *		outbox.destinations shows every config through.
 *
 * A destination's config may hold secrets (webhook secrets, passwords,
 * tokens, credentials in URLs).  They are write-only: the SQL API never
 * returns a config, and what a user can read of one is the result of
 * outbox.mask_config(), which replaces every secret by "********".  What is
 * a secret is decided by rule, not by a list of known names: any key at
 * any depth (config keys and header names alike) whose name suggests a
 * credential (is_secret_name), and in every string that is a URL its
 * userinfo, every query parameter's value and its fragment.
 *
 * INVARIANTS
 *	Pure functions of their argument: no SPI, no catalog access, no lock,
 *	nothing written; safe in any transaction and in a view.  The result is
 *	built in the caller's memory context.  The SQL symbol
 *	outbox_saga_mask_config keeps its name: released SQL scripts name it.
 *	MaskUrl, the part that reads URLs, is exported so that test/fuzz can
 *	feed it random strings outside the server.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "dispatch/mask.h"

PG_FUNCTION_INFO_V1(outbox_saga_mask_config);

/* What outbox.mask_config() puts in place of a secret. */
#define DEST_MASK				"********"

/*
 * The rule for secret names (config keys at any depth, header names, URL
 * query parameter names are all keys): a name holds a secret if, lower-
 * cased, it contains one of secret_parts anywhere (so "X-Auth",
 * "X-Upstream-Authorization", "Proxy-Authorization", "oauth_token",
 * "X-Amz-Signature", "Set-Cookie" all match), or one of its words - the
 * runs of letters and digits between other characters - is one of
 * secret_words (short words that would match too much as substrings:
 * "X-Api-Key", "ssl.key.pem", "sig"), or it is a SASL config
 * ("sasl.*config": sasl.jaas.config, sasl.oauthbearer.config).
 */
static const char *const secret_parts[] = {
	"secret", "password", "passwd", "passphrase", "token", "credential",
	"apikey", "private", "auth", "cookie", "session", "bearer", "signature",
	"jaas", "hmac", NULL
};

static const char *const secret_words[] = {
	"key", "sig", "pass", "pwd", "psk", "sas", "jwt", "otp", "pin", NULL
};

/*
 * is_secret_name
 *		Whether the 'len' bytes at 'name' are a secret's name by the rule
 *		above.
 */
static bool
is_secret_name(const char *name, int len)
{
	char	   *lower = palloc(len + 1);
	bool		found = false;
	int			i;

	for (i = 0; i < len; i++)
		lower[i] = pg_ascii_tolower((unsigned char) name[i]);
	lower[len] = '\0';

	for (i = 0; secret_parts[i] != NULL && !found; i++)
		found = (strstr(lower, secret_parts[i]) != NULL);
	if (!found && len >= 11 && strncmp(lower, "sasl.", 5) == 0 &&
		strcmp(lower + len - 6, "config") == 0)
		found = true;
	for (i = 0; i < len && !found;)
	{
		int			start;
		int			j;

		while (i < len && !isalnum((unsigned char) lower[i]))
			i++;
		start = i;
		while (i < len && isalnum((unsigned char) lower[i]))
			i++;
		if (i == start)
			break;
		for (j = 0; secret_words[j] != NULL && !found; j++)
			found = (strlen(secret_words[j]) == (size_t) (i - start) &&
					 memcmp(lower + start, secret_words[j], i - start) == 0);
	}
	pfree(lower);
	return found;
}

/*
 * is_ascii_letter
 *		A-Z or a-z, whatever the locale.
 */
static bool
is_ascii_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * scheme_length
 *		The length of "scheme://" at 'str', or 0 if there is none.
 */
static int
scheme_length(const char *str, int len)
{
	int			i = 0;

	if (len == 0 || !is_ascii_letter(str[0]))
		return 0;
	while (i < len && (is_ascii_letter(str[i]) ||
					   (str[i] >= '0' && str[i] <= '9') ||
					   str[i] == '+' || str[i] == '-' || str[i] == '.'))
		i++;
	if (len - i < 3 || memcmp(str + i, "://", 3) != 0)
		return 0;
	return i + 3;
}

/*
 * mask_one_url
 *		If the string 'str' ('len' bytes) is a URL carrying credentials, append
 *		it to 'out' with them masked and return true; else return false and
 *		leave 'out' alone.  Credentials are the userinfo of the authority
 *		(the password of "user:password@", or the whole "token@" if there is
 *		no password; for schemes other than http(s), up to the last '@' of
 *		the URL, as cnats reads it), the value of every query parameter
 *		(whatever its name: "?sig=...", "?X-Amz-Signature=...", "?t=...")
 *		and the fragment.
 */
static bool
mask_one_url(const char *str, int len, StringInfo out)
{
	int			i = 0;
	int			auth_start;
	int			auth_end;
	int			at = -1;
	bool		changed = false;
	StringInfoData buf;

	auth_start = scheme_length(str, len);
	if (auth_start == 0)
		return false;
	for (auth_end = auth_start; auth_end < len; auth_end++)
	{
		char		c = str[auth_end];

		if (c == '/' || c == '?' || c == '#')
			break;
		if (c == '@')
			at = auth_end;
	}

	/*
	 * Only http(s) URLs are parsed by RFC 3986 (libcurl), where the user
	 * information ends within the authority.  cnats (nats://, tls://) ends
	 * it at the last '@' of the URL, wherever it is: it connects to
	 * "nats://u:pa/ss@host" with the password "pa/ss".  For every scheme
	 * but http(s) the user information therefore reaches the last '@'.
	 */
	if (!((auth_start == 7 && pg_strncasecmp(str, "http://", 7) == 0) ||
		  (auth_start == 8 && pg_strncasecmp(str, "https://", 8) == 0)))
	{
		int			j;

		for (j = len - 1; j >= auth_start; j--)
			if (str[j] == '@')
			{
				at = j;
				break;
			}
	}

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, str, auth_start);
	if (at >= 0)
	{
		const char *colon = memchr(str + auth_start, ':', at - auth_start);

		if (colon != NULL)
			appendBinaryStringInfo(&buf, str + auth_start, colon + 1 - (str + auth_start));
		appendStringInfoString(&buf, DEST_MASK);
		changed = true;
		i = at;
	}
	else
		i = auth_start;

	/* path up to the query */
	while (i < len && str[i] != '?' && str[i] != '#')
		appendStringInfoChar(&buf, str[i++]);

	/* every query parameter's value, up to the fragment */
	if (i < len && str[i] == '?')
	{
		appendStringInfoChar(&buf, str[i++]);
		while (i < len && str[i] != '#')
		{
			int			start = i;
			int			eq = -1;

			while (i < len && str[i] != '&' && str[i] != '#')
			{
				if (str[i] == '=' && eq < 0)
					eq = i;
				i++;
			}
			if (eq >= 0)
				appendBinaryStringInfo(&buf, str + start, eq + 1 - start);
			if (i > start)
			{
				appendStringInfoString(&buf, DEST_MASK);
				changed = true;
			}
			if (i < len && str[i] == '&')
				appendStringInfoChar(&buf, str[i++]);
		}
	}
	/* the fragment (OAuth implicit flows put tokens there) */
	if (i < len && str[i] == '#')
	{
		appendStringInfoChar(&buf, str[i++]);
		if (i < len)
		{
			appendStringInfoString(&buf, DEST_MASK);
			changed = true;
		}
		i = len;
	}
	if (changed)
		appendBinaryStringInfo(out, buf.data, buf.len);
	pfree(buf.data);
	return changed;
}

/*
 * MaskUrl
 *		mask_one_url() for a string that may hold several URLs separated by
 *		commas (NATS "url": "nats://u:p@h1,nats://u:p@h2"): each URL, that
 *		is each part starting at the beginning or after a comma (and blanks)
 *		with "scheme://", is masked on its own.  A comma inside a URL (in
 *		its query) does not split it.
 */
bool
MaskUrl(const char *str, int len, StringInfo out)
{
	StringInfoData buf;
	bool		changed = false;
	int			start = 0;

	if (scheme_length(str, len) == 0)
		return false;
	initStringInfo(&buf);
	while (start < len)
	{
		int			end = start + scheme_length(str + start, len - start);

		/* The next URL starts after a comma and blanks, with a scheme. */
		for (; end < len; end++)
		{
			int			next = end + 1;

			if (str[end] != ',')
				continue;
			while (next < len && str[next] == ' ')
				next++;
			if (scheme_length(str + next, len - next) > 0)
				break;
		}
		if (mask_one_url(str + start, end - start, &buf))
			changed = true;
		else
			appendBinaryStringInfo(&buf, str + start, end - start);
		if (end < len)
			appendStringInfoChar(&buf, ',');
		start = end + 1;
		while (start < len && str[start] == ' ')
			appendStringInfoChar(&buf, str[start++]);
	}
	if (changed)
		appendBinaryStringInfo(out, buf.data, buf.len);
	pfree(buf.data);
	return changed;
}

/*
 * mask_scalar
 *		Push scalar 'v' as 'tok', with URL credentials in a string masked.
 */
static JsonbValue *
mask_scalar(JsonbParseState **state, JsonbIteratorToken tok, JsonbValue *v)
{
	if (v->type == jbvString)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		if (MaskUrl(v->val.string.val, v->val.string.len, &buf))
		{
			JsonbValue	masked;

			masked.type = jbvString;
			masked.val.string.val = buf.data;
			masked.val.string.len = buf.len;
			return pushJsonbValue(state, tok, &masked);
		}
	}
	return pushJsonbValue(state, tok, v);
}

/*
 * MaskConfig
 *		'config' with every secret replaced by "********", at any depth: the
 *		value (whole, even an object or array) of every key (config key or
 *		header name alike) whose name is_secret_name; and credentials and
 *		query values in URL strings (MaskUrl).  A scalar is returned as it
 *		is.
 */
Jsonb *
MaskConfig(Jsonb *config)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbValue	mask;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;
	int			skip = 0;		/* > 0: inside a container being masked */
	bool		mask_next = false;	/* the next value belongs to a secret key */

	if (JB_ROOT_IS_SCALAR(config))
		return config;

	mask.type = jbvString;
	mask.val.string.val = DEST_MASK;
	mask.val.string.len = strlen(DEST_MASK);

	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		/* Inside a masked container: drop it, then push the mask once. */
		if (skip > 0)
		{
			if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
				skip++;
			else if ((tok == WJB_END_OBJECT || tok == WJB_END_ARRAY) &&
					 --skip == 0)
				res = pushJsonbValue(&state, WJB_VALUE, &mask);
			continue;
		}

		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				if (mask_next)
				{
					mask_next = false;
					skip = 1;
					break;
				}
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				mask_next = is_secret_name(v.val.string.val, v.val.string.len);
				res = pushJsonbValue(&state, tok, &v);
				break;
			case WJB_VALUE:
				if (mask_next)
					res = pushJsonbValue(&state, tok, &mask);
				else
					res = mask_scalar(&state, tok, &v);
				mask_next = false;
				break;
			case WJB_ELEM:
				res = mask_scalar(&state, tok, &v);
				break;
			default:
				elog(ERROR, "outbox_saga: unexpected JSON token %d", tok);
		}
	}
	return JsonbValueToJsonb(res);
}

/*
 * outbox.mask_config(config jsonb) RETURNS jsonb
 *		MaskConfig(): what the view outbox.destinations shows of a config.
 */
Datum
outbox_saga_mask_config(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(MaskConfig(PG_GETARG_JSONB_P(0)));
}

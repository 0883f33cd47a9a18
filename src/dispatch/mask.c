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
 * a secret is decided by key names (secret_key_parts, at any depth), by
 * header names under a "headers" key (secret_headers) and by the userinfo
 * and secret-looking query parameters of URL strings.
 *
 * INVARIANTS
 *	Pure functions of their argument: no SPI, no catalog access, no lock,
 *	nothing written; safe in any transaction and in a view.  The result is
 *	built in the caller's memory context.  The SQL symbol
 *	outbox_saga_mask_config keeps its name: released SQL scripts name it.
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
 * A key whose lower-cased name contains one of these holds a secret; so
 * does a query parameter of a URL whose name does.
 */
static const char *const secret_key_parts[] = {
	"secret",
	"password",
	"passwd",
	"passphrase",
	"token",
	"credential",
	"apikey",
	"api_key",
	"api-key",
	"private",
	"key.pem",
	NULL
};

/* Headers (in an object under a "headers" key) that carry credentials. */
static const char *const secret_headers[] = {
	"authorization",
	"proxy-authorization",
	"x-api-key",
	"cookie",
	NULL
};

/* The key whose object holds HTTP headers. */
static const char *const headers_key[] = {"headers", NULL};


/*
 * key_matches_any
 *		Whether the 'len' bytes at 'key', lower-cased, contain (or, with
 *		'whole', equal) one of the NULL-terminated 'words'.
 */
static bool
key_matches_any(const char *key, int len, const char *const *words, bool whole)
{
	char	   *lower = palloc(len + 1);
	bool		found = false;
	int			i;

	for (i = 0; i < len; i++)
		lower[i] = pg_ascii_tolower((unsigned char) key[i]);
	lower[len] = '\0';

	for (i = 0; words[i] != NULL && !found; i++)
	{
		if (whole)
			found = (strcmp(lower, words[i]) == 0);
		else
			found = (strstr(lower, words[i]) != NULL);
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
 *		no password) and the values of query parameters whose name looks
 *		secret (the value of "?token=...").
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

	/* query parameters, up to the fragment */
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
			if (eq > start &&
				key_matches_any(str + start, eq - start, secret_key_parts, false))
			{
				appendBinaryStringInfo(&buf, str + start, eq + 1 - start);
				appendStringInfoString(&buf, DEST_MASK);
				changed = true;
			}
			else
				appendBinaryStringInfo(&buf, str + start, i - start);
			if (i < len && str[i] == '&')
				appendStringInfoChar(&buf, str[i++]);
		}
	}
	appendBinaryStringInfo(&buf, str + i, len - i);

	if (changed)
		appendBinaryStringInfo(out, buf.data, buf.len);
	pfree(buf.data);
	return changed;
}

/*
 * mask_url
 *		mask_one_url() for a string that may hold several URLs separated by
 *		commas (NATS "url": "nats://u:p@h1,nats://u:p@h2"): each URL, that
 *		is each part starting at the beginning or after a comma (and blanks)
 *		with "scheme://", is masked on its own.  A comma inside a URL (in
 *		its query) does not split it.
 */
static bool
mask_url(const char *str, int len, StringInfo out)
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
		if (mask_url(v->val.string.val, v->val.string.len, &buf))
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
 *		value (whole, even an object or array) of every key whose name
 *		contains, case insensitively, one of secret_key_parts; in an object
 *		under a key named "headers", the value of every header in
 *		secret_headers; and credentials in URL strings (mask_url).  A scalar
 *		is returned as it is.
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
	bool	   *is_headers;		/* per open container: an object under "headers" */
	int			capacity = 16;
	int			depth = 0;
	int			skip = 0;		/* > 0: inside a container being masked */
	bool		mask_next = false;	/* the next value belongs to a secret key */
	bool		headers_next = false;	/* the next value belongs to "headers" */

	if (JB_ROOT_IS_SCALAR(config))
		return config;

	mask.type = jbvString;
	mask.val.string.val = DEST_MASK;
	mask.val.string.len = strlen(DEST_MASK);
	is_headers = palloc0(sizeof(bool) * capacity);

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
					headers_next = false;
					skip = 1;
					break;
				}
				if (depth + 1 >= capacity)
				{
					is_headers = repalloc(is_headers, sizeof(bool) * capacity * 2);
					capacity *= 2;
				}
				depth++;
				is_headers[depth] = (tok == WJB_BEGIN_OBJECT && headers_next);
				headers_next = false;
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				depth--;
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				mask_next =
					key_matches_any(v.val.string.val, v.val.string.len,
									secret_key_parts, false) ||
					(is_headers[depth] &&
					 key_matches_any(v.val.string.val, v.val.string.len,
									 secret_headers, true));
				headers_next =
					key_matches_any(v.val.string.val, v.val.string.len,
									headers_key, true);
				res = pushJsonbValue(&state, tok, &v);
				break;
			case WJB_VALUE:
				if (mask_next)
					res = pushJsonbValue(&state, tok, &mask);
				else
					res = mask_scalar(&state, tok, &v);
				mask_next = false;
				headers_next = false;
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

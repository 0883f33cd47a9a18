/*-------------------------------------------------------------------------
 *
 * fuzz_mask.c
 *		libFuzzer target: MaskUrl of src/dispatch/mask.c, how
 *		outbox.mask_config (and so outbox.destinations) masks credentials in
 *		URL strings.
 *
 * Input: a string (cut at the first NUL byte).  The oracle is how the
 * consumers read the credentials of a URL: libcurl (http:// and https://,
 * RFC 3986: the user information ends at the last '@' of the authority,
 * which ends at the first '/', '?' or '#') and cnats (every other scheme,
 * a comma-separated list as nats.c splits it: each URL's user information
 * runs from "://" to its last '@').  The password (after the first ':'),
 * or the whole user information if there is no ':', is the secret.  To
 * find it in the output wherever it went, every letter and digit of the
 * secret is made a 'Z' before masking (structure characters stay, so
 * parsing is unchanged) and every other 'Z' a 'Y'; the property is that
 * no 'Z' comes out.  Inputs the consumers would refuse (a list element
 * without a scheme) are skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "dispatch/mask.h"

#include "fuzz_shim.h"

static bool
is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Length of "scheme://" at s, or 0 (the URL syntax's scheme). */
static int
scheme_len(const char *s, int len)
{
	int			i = 0;

	if (len == 0 || !is_letter(s[0]))
		return 0;
	while (i < len && (is_letter(s[i]) || (s[i] >= '0' && s[i] <= '9') ||
					   s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
		return 0;
	return i + 3;
}

static bool
is_http(const char *s, int slen)
{
	return (slen == 7 && pg_strncasecmp(s, "http://", 7) == 0) ||
		(slen == 8 && pg_strncasecmp(s, "https://", 8) == 0);
}

/* Mark the secret of the user information [from, to) of 'secret'. */
static void
mark_userinfo(bool *secret, const char *s, int from, int to)
{
	const char *colon = memchr(s + from, ':', to - from);
	int			i;

	for (i = colon ? (int) (colon - s) + 1 : from; i < to; i++)
		secret[i] = true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s;
	int			len;
	bool	   *secret;
	int			slen;
	int			i;
	StringInfoData out;
	const char *result;

	if (size > 4096)
		return 0;
	FuzzBeginInput();
	s = FuzzCString(data, size);
	len = strlen(s);
	secret = palloc0(len + 1);
	slen = scheme_len(s, len);
	if (slen == 0)
	{
		FuzzEndInput();
		return 0;
	}
	if (is_http(s, slen))
	{
		/* libcurl: one URL. */
		int			end = slen + strcspn(s + slen, "/?#");
		const char *at = NULL;

		for (i = slen; i < end; i++)
			if (s[i] == '@')
				at = s + i;
		if (at)
			mark_userinfo(secret, s, slen, at - s);
	}
	else
	{
		/* nats.c: split at every comma, skip blanks; each needs a scheme. */
		int			start = 0;

		while (start < len)
		{
			int			end = start + strcspn(s + start, ",");
			int			tok = start;
			int			tslen;
			int			at = -1;

			while (tok < end && s[tok] == ' ')
				tok++;
			if (tok < end)
			{
				tslen = scheme_len(s + tok, end - tok);
				if (tslen == 0)
				{
					FuzzEndInput();
					return 0;	/* nats.c refuses such a list */
				}
				if (is_http(s + tok, tslen))
				{
					FuzzEndInput();
					return 0;	/* not a nats list */
				}
				for (i = tok + tslen; i < end; i++)
					if (s[i] == '@')
						at = i;
				if (at >= 0)
					mark_userinfo(secret, s, tok + tslen, at);
			}
			start = end + 1;
		}
	}

	/* Letters and digits of the secret become 'Z', other 'Z's 'Y'. */
	for (i = 0; i < len; i++)
	{
		if (secret[i] && (is_letter(s[i]) || (s[i] >= '0' && s[i] <= '9')))
			s[i] = 'Z';
		else if (s[i] == 'Z')
			s[i] = 'Y';
	}

	initStringInfo(&out);
	result = MaskUrl(s, len, &out) ? out.data : s;
	if (strchr(result, 'Z') != NULL)
		FuzzFail("a credential survives masking: \"%s\" -> \"%s\"", s, result);
	FuzzEndInput();
	return 0;
}

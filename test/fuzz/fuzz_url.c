/*-------------------------------------------------------------------------
 *
 * fuzz_url.c
 *		libFuzzer target: HttpGuardCheckUrl of src/http/http_guard.c, the
 *		check of every webhook and saga http URL (libcurl's URL parser
 *		underneath, as in the server).
 *
 * Input: the URL (cut at the first NUL byte, as a text value would be).
 * Properties: the check either accepts or raises a clean 22023 error whose
 * message and detail never quote the URL (it may carry a token); what it
 * accepts is an http:// or https:// URL without blanks, control
 * characters, backslashes or credentials, of at most 4096 bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "http/http_guard.h"

#include "fuzz_shim.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	HttpGuardInit();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *url;
	size_t		len;
	volatile bool raised = false;

	if (size > 8192)
		return 0;
	FuzzBeginInput();
	url = FuzzCString(data, size);
	len = strlen(url);

	PG_TRY();
	{
		HttpGuardCheckUrl(url);
	}
	PG_CATCH();
	{
		raised = true;
	}
	PG_END_TRY();

	if (raised)
	{
		FuzzCheckError();
		if (FuzzLastError.sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
			FuzzFail("HttpGuardCheckUrl raised %s, not 22023",
					 unpack_sql_state(FuzzLastError.sqlerrcode));
		if (len >= 12 && (strstr(FuzzLastError.message, url) != NULL ||
						  strstr(FuzzLastError.detail, url) != NULL))
			FuzzFail("the error quotes the URL");
	}
	else
	{
		size_t		i;
		const char *authority;
		const char *end;
		const char *at;

		if (len == 0 || len > HTTP_MAX_URL_BYTES)
			FuzzFail("accepted a URL of %zu bytes", len);
		if (pg_strncasecmp(url, "http://", 7) == 0)
			authority = url + 7;
		else if (pg_strncasecmp(url, "https://", 8) == 0)
			authority = url + 8;
		else
			FuzzFail("accepted a URL that is not http:// or https://");
		for (i = 0; i < len; i++)
			if ((unsigned char) url[i] <= 0x20 || url[i] == 0x7F || url[i] == '\\')
				FuzzFail("accepted a URL with a blank, control character or backslash");
		end = authority + strcspn(authority, "/?#");
		at = memchr(authority, '@', end - authority);
		if (at != NULL)
			FuzzFail("accepted a URL with an '@' in its authority");
		if (end == authority)
			FuzzFail("accepted a URL without a host");
	}
	FuzzEndInput();
	return 0;
}

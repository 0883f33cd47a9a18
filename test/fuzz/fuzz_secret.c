/*-------------------------------------------------------------------------
 *
 * fuzz_secret.c
 *		libFuzzer target: src/sink/http_sign.c, the "secret" of an http
 *		destination ("whsec_" and base64 of 16 to 1024 key bytes) and the
 *		Standard Webhooks signature made with it.
 *
 * Input: the secret text (any bytes; the length is passed, as the caller
 * passes a JSON string's).  Properties: HttpSignDecodeSecret either gives
 * a reason (a constant sentence) and no key, or a key of 16 to 1024 bytes
 * whose length is what the base64 after "whsec_" encodes; a key signs a
 * body as "v1," and 44 base64 characters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "sink/http_sign.h"

#include "fuzz_shim.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HttpSecret	secret;
	const char *why;
	volatile bool raised = false;

	if (size > 8192)
		return 0;
	FuzzBeginInput();
	why = HttpSignDecodeSecret((const char *) data, (int) size,
							   CurrentMemoryContext, &secret);
	if (why != NULL)
	{
		if (secret.key != NULL || secret.len != 0)
			FuzzFail("a refused secret left a key behind");
		if (strlen(why) == 0 || strlen(why) > 200)
			FuzzFail("an odd reason");
	}
	else
	{
		size_t		b64 = size - 6;
		size_t		pad = 0;
		size_t		expect;

		while (pad < b64 && data[size - 1 - pad] == '=')
			pad++;
		expect = (b64 - pad) * 3 / 4;
		if (secret.len < HTTP_SECRET_MIN_BYTES || secret.len > HTTP_SECRET_MAX_BYTES)
			FuzzFail("a key of %d bytes was accepted", secret.len);
		if ((size_t) secret.len != expect)
			FuzzFail("a key of %d bytes from %zu base64 characters (%zu expected)",
					 secret.len, b64, expect);

		PG_TRY();
		{
			StringInfoData sig;
			HttpSecret	two[2];

			two[0] = secret;
			two[1] = secret;
			initStringInfo(&sig);
			HttpSignPayload(two, 2, "0190b2c4-0000-7000-8000-000000000000",
							1700000000, (const char *) data, size, &sig);
			if (sig.len != 2 * 47 + 1 || strncmp(sig.data, "v1,", 3) != 0 ||
				strncmp(sig.data, sig.data + 48, 47) != 0)
				FuzzFail("signature header \"%s\"", sig.data);
		}
		PG_CATCH();
		{
			raised = true;
		}
		PG_END_TRY();
		if (raised)
			FuzzFail("signing raised: %s", FuzzLastError.message);
		HttpSignFreeSecret(&secret);
	}
	FuzzEndInput();
	return 0;
}

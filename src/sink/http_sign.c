/*-------------------------------------------------------------------------
 *
 * http_sign.c
 *		Standard Webhooks (v1) signatures for the "http" destination kind.
 *
 * A destination's "secret" is "whsec_" followed by the base64 of the key
 * bytes, or an array of such strings while a key is being rotated.  Every
 * request carries
 *
 *		webhook-signature: v1,<base64 of HMAC-SHA256(key, id.timestamp.body)>
 *
 * once per key, separated by spaces, where id is the webhook-id header (the
 * event_id) and timestamp the webhook-timestamp header (Unix seconds of the
 * attempt).  A receiver accepts the request if any one signature matches a
 * key it knows, so both keys of a rotation sign until the old one is
 * dropped from the config.
 *
 * SECRETS: keys are never part of a message.  The decoded bytes live in the
 * sink's cache of parsed configs and are overwritten before that memory is
 * freed (HttpSignFreeSecret).
 *
 * The HMAC is OpenSSL's (EVP_MAC, fetched once per process); base64 is
 * PostgreSQL's own (src/common/base64.c), which refuses anything but the
 * standard alphabet.  Nothing here runs in or needs a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/base64.h"
#include "utils/memutils.h"

#include "sink/http_sign.h"

#define WHSEC_PREFIX		"whsec_"
#define WHSEC_PREFIX_LEN	6
#define HMAC_SHA256_BYTES	32

static EVP_MAC *hmac_algorithm = NULL;

/*
 * HttpSignDecodeSecret
 *		Decode "whsec_<base64>" into *out; see http_sign.h.  Unpadded base64 is
 *		accepted (some providers strip the '='); an '=' anywhere but in the
 *		padding at the end is not.
 */
const char *
HttpSignDecodeSecret(const char *text, int len, MemoryContext cxt,
					 HttpSecret *out)
{
	char	   *padded;
	int			b64_len = len - WHSEC_PREFIX_LEN;
	int			padded_len;
	int			max_bytes;
	unsigned char *key;
	int			key_len;
	int			pad;
	int			i;

	out->len = 0;
	out->key = NULL;
	if (len < WHSEC_PREFIX_LEN || memcmp(text, WHSEC_PREFIX, WHSEC_PREFIX_LEN) != 0)
		return "it does not start with \"whsec_\"";
	if (b64_len == 0)
		return "it has no key after \"whsec_\"";
	/*
	 * '=' only as padding at the very end: PostgreSQL's decoder goes on
	 * after an inner '=' and makes a key no receiver's base64 gives.
	 */
	for (pad = 0; pad < b64_len && text[len - 1 - pad] == '='; pad++)
		;
	if (pad > 2)
		return "the key after \"whsec_\" is not base64";
	for (i = WHSEC_PREFIX_LEN; i < len - pad; i++)
	{
		unsigned char c = (unsigned char) text[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return "the key after \"whsec_\" is not base64";
	}
	if (b64_len % 4 == 1 || b64_len > 4 * HTTP_SECRET_MAX_BYTES)
		return "the key after \"whsec_\" is not base64 of 16 to 1024 bytes";

	/* Restore the padding, then decode strictly. */
	padded_len = b64_len + (4 - b64_len % 4) % 4;
	padded = palloc(padded_len + 1);
	memcpy(padded, text + WHSEC_PREFIX_LEN, b64_len);
	memset(padded + b64_len, '=', padded_len - b64_len);
	padded[padded_len] = '\0';

	max_bytes = pg_b64_dec_len(padded_len);
	key = MemoryContextAlloc(cxt, max_bytes + 1);
	key_len = CompatB64Decode(padded, padded_len, key, max_bytes);
	explicit_bzero(padded, padded_len);
	pfree(padded);

	if (key_len < 0)
	{
		explicit_bzero(key, max_bytes);
		pfree(key);
		return "the key after \"whsec_\" is not base64";
	}
	if (key_len < HTTP_SECRET_MIN_BYTES || key_len > HTTP_SECRET_MAX_BYTES)
	{
		explicit_bzero(key, max_bytes);
		pfree(key);
		return "the key after \"whsec_\" is not base64 of 16 to 1024 bytes";
	}
	out->key = key;
	out->len = key_len;
	return NULL;
}

/*
 * HttpSignFreeSecret
 *		Overwrite the key bytes, then free them.
 */
void
HttpSignFreeSecret(HttpSecret *secret)
{
	if (secret->key != NULL)
	{
		explicit_bzero(secret->key, secret->len);
		pfree(secret->key);
	}
	secret->key = NULL;
	secret->len = 0;
}

/*
 * hmac_sha256
 *		HMAC-SHA256 of the concatenation of 'nparts' byte strings under
 *		'key' into 'mac' (32 bytes), without copying the parts together.
 */
static void
hmac_sha256(const HttpSecret *key, const char *const *parts,
			const size_t *lens, int nparts, unsigned char *mac)
{
	EVP_MAC_CTX *ctx;
	OSSL_PARAM	params[2];
	size_t		mac_len = 0;
	bool		ok;
	int			i;

	if (hmac_algorithm == NULL)
	{
		hmac_algorithm = EVP_MAC_fetch(NULL, "HMAC", NULL);
		if (hmac_algorithm == NULL)
			elog(ERROR, "outbox_saga: OpenSSL has no HMAC implementation");
	}
	ctx = EVP_MAC_CTX_new(hmac_algorithm);
	if (ctx == NULL)
		elog(ERROR, "outbox_saga: out of memory in OpenSSL");

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
												 (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = EVP_MAC_init(ctx, key->key, key->len, params) == 1;
	for (i = 0; ok && i < nparts; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *) parts[i], lens[i]) == 1;
	ok = ok && EVP_MAC_final(ctx, mac, &mac_len, HMAC_SHA256_BYTES) == 1 &&
		mac_len == HMAC_SHA256_BYTES;
	EVP_MAC_CTX_free(ctx);
	if (!ok)
		elog(ERROR, "outbox_saga: could not compute an HMAC-SHA256 signature");
}

/*
 * HttpSignPayload
 *		The webhook-signature header value; see http_sign.h.
 */
void
HttpSignPayload(const HttpSecret *secrets, int nsecrets, const char *msg_id,
				int64 timestamp, const char *body, size_t body_len,
				StringInfo out)
{
	char		ts[32];
	const char *parts[5];
	size_t		lens[5];
	int			i;

	snprintf(ts, sizeof(ts), INT64_FORMAT, timestamp);
	parts[0] = msg_id;
	lens[0] = strlen(msg_id);
	parts[1] = ".";
	lens[1] = 1;
	parts[2] = ts;
	lens[2] = strlen(ts);
	parts[3] = ".";
	lens[3] = 1;
	parts[4] = body;
	lens[4] = body_len;

	for (i = 0; i < nsecrets; i++)
	{
		unsigned char mac[HMAC_SHA256_BYTES];
		char		encoded[64];
		int			n;

		hmac_sha256(&secrets[i], parts, lens, lengthof(parts), mac);
		n = CompatB64Encode(mac, HMAC_SHA256_BYTES, encoded, sizeof(encoded));
		if (n < 0)
			elog(ERROR, "outbox_saga: could not encode a signature");
		appendStringInfo(out, "%sv1,%.*s", i > 0 ? " " : "", n, encoded);
	}
}

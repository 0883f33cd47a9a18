/*-------------------------------------------------------------------------
 *
 * http_sign.h
 *		Standard Webhooks signatures of the "http" destination kind: the
 *		"whsec_" secrets and the webhook-signature header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_HTTP_SIGN_H
#define OUTBOX_SAGA_SINK_HTTP_SIGN_H

#include "lib/stringinfo.h"
#include "utils/palloc.h"

/* A webhook signing key: the bytes after "whsec_", base64-decoded. */
typedef struct HttpSecret
{
	int			len;
	unsigned char *key;
} HttpSecret;

/* Bounds of a decoded key, in bytes. */
#define HTTP_SECRET_MIN_BYTES	16
#define HTTP_SECRET_MAX_BYTES	1024

/*
 * Decode a secret given as "whsec_<base64>" ('len' bytes at 'text', not
 * necessarily terminated) into *out, allocated in 'cxt'.  Returns NULL on
 * success, else why it is unusable (a constant string that never quotes
 * the secret).
 */
extern const char *HttpSignDecodeSecret(const char *text, int len,
										MemoryContext cxt, HttpSecret *out);

/* Overwrite and free a key decoded by HttpSignDecodeSecret. */
extern void HttpSignFreeSecret(HttpSecret *secret);

/*
 * Append the value of a webhook-signature header to 'out': "v1,<base64>"
 * per secret, separated by spaces, each the HMAC-SHA256 of
 * "<msg_id>.<timestamp>.<body>" under that secret.
 */
extern void HttpSignPayload(const HttpSecret *secrets, int nsecrets,
							const char *msg_id, int64 timestamp,
							const char *body, size_t body_len, StringInfo out);

#endif							/* OUTBOX_SAGA_SINK_HTTP_SIGN_H */

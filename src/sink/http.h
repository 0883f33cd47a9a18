/*-------------------------------------------------------------------------
 *
 * http.h
 *		What the three files of the "http" destination kind share:
 *		http.c (config, requests, the libcurl multi loop), http_sign.c
 *		(Standard Webhooks signatures) and http_guard.c (which URLs and
 *		addresses may be reached).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_HTTP_H
#define OUTBOX_SAGA_SINK_HTTP_H

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "utils/guc.h"

/* ------------------------------------------------------------------------
 * http_sign.c
 * ------------------------------------------------------------------------
 */

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

/* ------------------------------------------------------------------------
 * http_guard.c
 * ------------------------------------------------------------------------
 */

/* Longest URL a destination may have, in bytes. */
#define HTTP_MAX_URL_BYTES		4096

/*
 * What the socket callback found out about one request's connection
 * attempts (CURLOPT_OPENSOCKETDATA points to one).
 */
typedef struct HttpGuardState
{
	bool		denied;			/* an address was refused */
	bool		invalid_setting;	/* ... because the deny list is invalid */
	bool		no_fd;			/* PostgreSQL's descriptor budget was
								 * exhausted */
	char		address[64];	/* the last refused address, as text */
} HttpGuardState;

/*
 * Check a destination URL for create/alter_destination: an absolute
 * http:// or https:// URL with a host, no user name or password, no
 * whitespace or control characters, at most HTTP_MAX_URL_BYTES, and - if
 * its host is an IP address - not in outbox_saga.http_deny_networks.
 * Raises an error (22023) that never quotes the URL.
 */
extern void HttpGuardCheckUrl(const char *url);

/*
 * Bring the parsed copy of outbox_saga.http_deny_networks up to date
 * (call before a batch, outside any curl callback).  Returns true if the
 * list changed since the last call (existing connections were made under
 * other rules).  An unparsable setting denies every address.
 */
extern bool HttpGuardRefresh(void);

/* The GUC check hook of outbox_saga.http_deny_networks. */
extern bool HttpGuardCheckDenyNetworks(char **newval, void **extra,
									   GucSource source);

/* Install the socket callbacks on an easy handle; 'state' gets the news. */
extern void HttpGuardInstall(CURL *easy, HttpGuardState *state);

/* ------------------------------------------------------------------------
 * http.c
 * ------------------------------------------------------------------------
 */

/*
 * Every connection socket libcurl opens and closes (reported by
 * http_guard.c's socket callbacks; they run inside libcurl).
 */
extern void HttpSocketOpened(curl_socket_t fd);
extern void HttpSocketClosed(curl_socket_t fd);

/*
 * One independent HTTP request for SinkHttpSend (saga steps of call kind
 * "http"): no webhook headers, no signature, no lanes.
 */
typedef struct HttpCall
{
	const char *url;
	const char *method;			/* GET, POST, PUT, PATCH or DELETE */
	int			nheaders;
	const char *const *header_names;
	const char *const *header_values;
	const char *idempotency_key;	/* sent as Idempotency-Key; may be NULL */
	const char *body;			/* sent as application/json, whatever the
								 * method */
	int			body_len;
	int64		timeout_ms;		/* per request; <= 0: outbox_saga.http_timeout */
} HttpCall;

typedef struct HttpCallResult
{
	bool		invalid;		/* not sent: the URL or a header is unusable
								 * (error says why); sending again will not
								 * help */
	bool		sent;			/* a request was attempted */
	bool		timed_out;		/* no complete answer within the timeout */
	long		status;			/* HTTP status, 0: no response */
	char	   *body;			/* the response body, NUL-terminated (NULL:
								 * none), at most HTTP_CALL_MAX_BODY bytes */
	int			body_len;
	bool		body_too_large; /* the body was larger: 'body' is NULL */
	char	   *error;			/* for anything but 2xx: the status and the
								 * start of the body, or what went wrong;
								 * never a header, the path or the query */
} HttpCallResult;

/* Longest response body SinkHttpSend returns. */
#define HTTP_CALL_MAX_BODY		(1024 * 1024)

/*
 * Send calls[0..n-1] at once through the process's libcurl multi handle
 * (the same loop, connection cache and outbox_saga.http_deny_networks
 * guard as the http destinations), with no transaction open; fill
 * results[0..n-1] (allocated in CurrentMemoryContext).  Waits on MyLatch
 * and the sockets together (CHECK_FOR_INTERRUPTS while it waits); returns
 * within the longest timeout of the calls plus a little.  Errors other than
 * those of single calls (out of memory, libcurl failing) propagate.
 */
extern void SinkHttpSend(const HttpCall *calls, int n, HttpCallResult *results);
extern char *SinkHttpCallProblem(const HttpCall *call);

#endif							/* OUTBOX_SAGA_SINK_HTTP_H */

/*-------------------------------------------------------------------------
 *
 * http_client.h
 *		The process's HTTP client: libcurl's multi interface, waiting on
 *		MyLatch together with its sockets.  The http destinations
 *		(sink/http.c) run their batches of webhooks through it
 *		(HttpClientRun); saga steps of call kind "http" send independent
 *		calls (HttpClientSend).
 *
 * Every function here runs with no transaction open (it does network
 * I/O); see the header of http_client.c for the loop, its latch waits and
 * what an error leaves behind.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_HTTP_CLIENT_H
#define OUTBOX_SAGA_HTTP_CLIENT_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* Limits of request headers (destination configs and http calls). */
#define HTTP_MAX_HEADERS			64
#define HTTP_MAX_HEADER_NAME		256
#define HTTP_MAX_HEADER_VALUE		8192

/* Longest response body HttpClientSend returns. */
#define HTTP_CALL_MAX_BODY		(1024 * 1024)

/*
 * Initialize libcurl for this process, once (before any other use of
 * libcurl, HttpGuardCheckUrl's included); warn if it resolves names
 * synchronously.
 */
extern void HttpClientInit(void);

/* What is wrong with a header name or value, if anything. */
typedef enum HttpHeaderCheck
{
	HTTP_HEADER_OK,
	HTTP_HEADER_BAD_LENGTH,		/* empty or too long */
	HTTP_HEADER_BAD_CHAR,		/* a name: not an RFC 9110 token; a value: a
								 * control character */
	HTTP_HEADER_RESERVED,		/* a name the client sets itself or that
								 * would break HTTP framing */
} HttpHeaderCheck;

/* Check 'len' bytes of a header name (at most HTTP_MAX_HEADER_NAME). */
extern HttpHeaderCheck HttpClientCheckHeaderName(const char *name, int len);

/* Check 'len' bytes of a header value (at most HTTP_MAX_HEADER_VALUE). */
extern HttpHeaderCheck HttpClientCheckHeaderValue(const char *value, int len);

/* ------------------------------------------------------------------------
 * Batches (the http destinations)
 * ------------------------------------------------------------------------
 */

/* One request of a batch, in a slot of the client's (opaque). */
typedef struct HttpClientRequest HttpClientRequest;

/* What became of one request of a batch. */
typedef struct HttpClientOutcome
{
	long		status;			/* HTTP status of a complete response (its
								 * body may have been too large); 0: none */
	bool		timed_out;		/* no response: the timeout passed */
	bool		too_large;		/* the response body was larger than
								 * HTTP_CALL_MAX_BODY (and not kept) */
	int64		retry_after;	/* Retry-After of a 429, 502, 503 or 504, in
								 * seconds; 0: none */
	char	   *failure;		/* status 0: what went wrong (refused address,
								 * descriptors, timeout, network error) */
} HttpClientOutcome;

/*
 * A kind of batch: which items to start, how to make each one's request,
 * what to do with each outcome.  The callbacks run in the client's loop
 * (never inside libcurl) and may raise errors, which end the batch.
 */
typedef struct HttpClientBatch
{
	bool		keep_bodies;	/* keep whole response bodies
								 * (HttpClientTakeBody) */

	/* The item to start next while 'inflight' are in flight; -1: none now. */
	int			(*next) (void *arg, int inflight);

	/*
	 * Prepare item 'item' on 'req' (HttpClientSetTarget, HttpClientBody,
	 * HttpClientAddHeader); the client then puts it in flight.  Every
	 * request carries "Content-Type: application/json" (before the
	 * caller's headers).
	 */
	void		(*start) (void *arg, int item, HttpClientRequest *req);

	/* Item 'item' completed; 'req' is readable until this returns. */
	void		(*finish) (void *arg, int item, HttpClientRequest *req,
						   const HttpClientOutcome *outcome);
} HttpClientBatch;

/*
 * Run a batch of 'batch''s kind ('arg' goes to its callbacks) until
 * nothing is in flight and nothing more may start: at most 'nslots' (>= 1)
 * requests in flight, nothing new after 'start_until'.  Waits on MyLatch
 * and the sockets together (CHECK_FOR_INTERRUPTS on every wakeup).  A
 * latch wakeup consumed meanwhile is handed back (SetLatch) at the end.
 * An error removes every request and drops every connection before it
 * propagates.
 */
extern void HttpClientRun(const HttpClientBatch *batch, void *arg, int nslots,
						  TimestampTz start_until);

/* For start callbacks: where and how to send, within what time. */
extern void HttpClientSetTarget(HttpClientRequest *req, const char *url,
								const char *method, int64 timeout_ms);

/* For start callbacks: the request's body buffer, empty. */
extern StringInfo HttpClientBody(HttpClientRequest *req);

/* For start callbacks: add a header line "Name: value". */
extern void HttpClientAddHeader(HttpClientRequest *req, const char *line);

/*
 * For finish callbacks: the error text of a response that is not a
 * success: the status, the Location of a redirect, the Retry-After
 * (unless 0) and the start of the body - never a request header, the path
 * or the query of the URL.
 */
extern char *HttpClientDescribeStatus(HttpClientRequest *req, long status,
									  int64 retry_after);

/*
 * For finish callbacks of a keep_bodies batch: take the response body
 * (NUL-terminated, palloc'd in the caller's context); the request keeps
 * none.
 */
extern char *HttpClientTakeBody(HttpClientRequest *req, int *len);

/* ------------------------------------------------------------------------
 * Calls (saga steps of call kind "http")
 * ------------------------------------------------------------------------
 */

/*
 * One independent HTTP request for HttpClientSend: no webhook headers, no
 * signature, no lanes.
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

/*
 * Send calls[0..n-1] at once through the process's libcurl multi handle
 * (the same loop, connection cache and outbox_saga.http_deny_networks
 * guard as the http destinations), with no transaction open; fill
 * results[0..n-1] (allocated in CurrentMemoryContext).  Waits on MyLatch
 * and the sockets together (CHECK_FOR_INTERRUPTS while it waits); returns
 * within the longest timeout of the calls plus a little.  Errors other than
 * those of single calls (out of memory, libcurl failing) propagate.
 */
extern void HttpClientSend(const HttpCall *calls, int n, HttpCallResult *results);

/*
 * Why a call cannot be sent (a palloc'd message that never shows a header
 * value, the path or the query of the URL), or NULL.
 */
extern char *HttpClientCallProblem(const HttpCall *call);

#endif							/* OUTBOX_SAGA_HTTP_CLIENT_H */

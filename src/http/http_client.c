/*-------------------------------------------------------------------------
 *
 * http_client.c
 *		The process's HTTP client: many requests in flight through
 *		libcurl's multi interface, waiting on MyLatch together with their
 *		sockets.  The http destinations (sink/http.c) run their webhook
 *		batches through it; saga steps of call kind "http" send independent
 *		calls (HttpClientSend).
 *
 * THE LOOP (HttpClientRun, outside any transaction)
 *	One CURLM per process, in a long-lived memory context, keeps the
 *	connection cache and the DNS cache across batches and destinations:
 *	keep-alive connections are reused by the next batch.  Easy handles are
 *	pooled too.  The loop waits on the sockets libcurl wants, its timer,
 *	MyLatch and postmaster death together in one WaitEventSet (kept by
 *	http_socket.c), so SIGTERM, DROP DATABASE and a dying postmaster are
 *	noticed at once: CHECK_FOR_INTERRUPTS runs on every wakeup and never
 *	inside a libcurl callback.  A latch wakeup consumed here is handed back
 *	(SetLatch) when the batch ends, so the dispatcher does not miss the
 *	commit that caused it.  DNS runs in libcurl's threaded resolver
 *	(CURL_VERSION_ASYNCHDNS, checked at start): resolution never blocks the
 *	loop.  Signals are blocked while libcurl runs, so that its resolver
 *	threads never run PostgreSQL's handlers.
 *
 *	The caller of a batch decides what starts (its next callback, called
 *	while fewer than nslots requests are in flight and start_until has not
 *	passed), builds each request (start) and judges each outcome (finish);
 *	the callbacks run in the loop, never inside libcurl.
 *
 * REQUESTS
 *	Only http and https; redirects are never followed; proxies are never
 *	used; no signals (CURLOPT_NOSIGNAL); TCP keep-alive; the body is sent
 *	with the request's method (POST, or CURLOPT_CUSTOMREQUEST), without an
 *	"Expect: 100-continue" round trip; every request is sent as
 *	Content-Type application/json.  The
 *	first HTTP_ERROR_BODY_BYTES of a response are kept for the error text;
 *	at most HTTP_MAX_RESPONSE_BYTES are read.  Error texts are the status
 *	and the start of the body (and the Location of a redirect), or
 *	libcurl's message (which may name the host and port) - never a request
 *	header, or the path or query of the URL.
 *
 * CONNECTIONS are opened by http_socket.c under the deny list of
 *	http_guard.c and PostgreSQL's descriptor budget.  When the deny list
 *	changes (its generation, HttpGuardRefresh), every kept connection is
 *	dropped: they were made under other rules.
 *
 * SAGA CALLS (HttpClientSend)
 *	The saga driver's http steps use the same loop with independent
 *	requests (no lanes, no stop after failures, no webhook headers or
 *	signature), each with its own URL, method, headers, timeout and
 *	Idempotency-Key, the whole response body kept (up to
 *	HTTP_CALL_MAX_BODY).  The outcome is classified by the caller
 *	(saga/saga_http.c).
 *
 * MEMORY: per-batch data in the caller's context; the multi handle, the
 *	easy-handle pool and the socket tables in http_cxt.  An error raised in
 *	the loop (or in a callback) removes every request from the multi handle
 *	and drops every connection before it propagates.  Nothing survives the
 *	process: after a crash the dispatcher sends again what was not recorded
 *	as delivered.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <pthread.h>
#include <signal.h>

#include <curl/curl.h>

#include "libpq/pqsignal.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "base/guc.h"
#include "http/http_client.h"
#include "http/http_guard.h"
#include "http/http_socket.h"

/* How much of a response is kept for the error text, and read at all. */
#define HTTP_ERROR_BODY_BYTES		200
#define HTTP_MAX_RESPONSE_BYTES		HTTP_CALL_MAX_BODY

/* Longest sleep without a libcurl timer (the loop rechecks its state). */
#define HTTP_MAX_WAIT_MS			1000

/* Easy handles kept for the next batch. */
#define HTTP_MAX_POOLED_HANDLES		1000

#define HTTP_USER_AGENT				"outbox_saga/" OUTBOX_SAGA_VERSION

/* Headers the client sets itself or that would break HTTP framing. */
static const char *const reserved_headers[] = {
	"content-type", "content-length", "transfer-encoding", "host",
	"connection", "keep-alive", "proxy-connection", "expect", "te",
	"trailer", "upgrade", NULL
};

/* One request in flight (a slot, reused within a batch). */
struct HttpClientRequest
{
	int			index;			/* the batch's item, -1 if the slot is free */
	CURL	   *easy;
	struct curl_slist *headers;
	const char *url;			/* HttpClientSetTarget */
	const char *method;
	int64		timeout_ms;
	StringInfoData body;
	char		errbuf[CURL_ERROR_SIZE];
	char		resp[HTTP_ERROR_BODY_BYTES];
	int			resp_len;
	size_t		resp_total;
	bool		resp_too_large;
	bool		keep_full;		/* keep the whole body in 'full' */
	StringInfoData full;

	HttpConnectReport connect;	/* what opening its sockets found */
};

/* The state of one HttpClientRun() call. */
typedef struct HttpRun
{
	const HttpClientBatch *batch;
	void	   *arg;			/* for the batch's callbacks */
	int			nslots;			/* requests in flight at most */
	TimestampTz start_until;	/* nothing new starts after this */
	HttpClientRequest *slots;
	int			inflight;
	bool		stopped;		/* start_until has passed */
	bool		latch_seen;
	WaitEventSet *set;			/* sockets, latch, postmaster death */
	int			set_capacity;
} HttpRun;

/* Process-wide state. */
static MemoryContext http_cxt = NULL;
static CURLM *multi = NULL;
static uint64 multi_guard_generation = 0;	/* deny list its connections
											 * were made under */
static CURL **easy_pool = NULL;
static int	easy_pool_count = 0;
static bool curl_initialized = false;

/* ------------------------------------------------------------------------
 * libcurl set-up
 * ------------------------------------------------------------------------
 */

/*
 * http_curl_init
 *		curl_global_init once per process, and a word in the log if this
 *		libcurl resolves names synchronously.
 */
static void
http_curl_init(void)
{
	const curl_version_info_data *info;

	if (curl_initialized)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "outbox_saga: could not initialize libcurl");
	curl_initialized = true;

	info = curl_version_info(CURLVERSION_NOW);
	if (!(info->features & CURL_VERSION_ASYNCHDNS))
		ereport(WARNING,
				(errmsg("outbox_saga: libcurl %s resolves host names synchronously",
						info->version),
				 errdetail("A slow DNS server delays every destination of the dispatcher."),
				 errhint("Install a libcurl built with the threaded resolver (Debian's libcurl4-openssl is).")));
}

/*
 * ensure_http_cxt
 *		The client's long-lived memory context.
 */
static void
ensure_http_cxt(void)
{
	if (http_cxt == NULL)
		http_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga http",
										 ALLOCSET_DEFAULT_SIZES);
}

/*
 * HttpClientInit
 *		See http_client.h.
 */
void
HttpClientInit(void)
{
	ensure_http_cxt();
	http_curl_init();
}

/* ------------------------------------------------------------------------
 * Header checks
 * ------------------------------------------------------------------------
 */

/*
 * is_token_char
 *		RFC 9110 tchar: what a header name is made of.
 */
static bool
is_token_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/*
 * HttpClientCheckHeaderName
 *		See http_client.h.
 */
HttpHeaderCheck
HttpClientCheckHeaderName(const char *name, int len)
{
	int			i;

	if (len == 0 || len > HTTP_MAX_HEADER_NAME)
		return HTTP_HEADER_BAD_LENGTH;
	for (i = 0; i < len; i++)
		if (!is_token_char((unsigned char) name[i]))
			return HTTP_HEADER_BAD_CHAR;
	for (i = 0; reserved_headers[i] != NULL; i++)
		if (strlen(reserved_headers[i]) == len &&
			pg_strncasecmp(name, reserved_headers[i], len) == 0)
			return HTTP_HEADER_RESERVED;
	return HTTP_HEADER_OK;
}

/*
 * HttpClientCheckHeaderValue
 *		See http_client.h.  A tab is allowed, no other control character
 *		(no header injection).
 */
HttpHeaderCheck
HttpClientCheckHeaderValue(const char *value, int len)
{
	int			i;

	if (len > HTTP_MAX_HEADER_VALUE)
		return HTTP_HEADER_BAD_LENGTH;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) value[i];

		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return HTTP_HEADER_BAD_CHAR;
	}
	return HTTP_HEADER_OK;
}

/*
 * clip_name
 *		At most 63 bytes of a header name for a message (cut at a character
 *		boundary), with "..." if it was longer.
 */
static char *
clip_name(const char *name, int len)
{
	int			clip = pg_mbcliplen(name, len, 63);

	return psprintf("%.*s%s", clip, name, clip < len ? "..." : "");
}

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------
 */

/*
 * HttpClientSetTarget / HttpClientBody / HttpClientAddHeader
 *		See http_client.h.
 */
void
HttpClientSetTarget(HttpClientRequest *req, const char *url,
					const char *method, int64 timeout_ms)
{
	req->url = url;
	req->method = method;
	req->timeout_ms = timeout_ms;
}

StringInfo
HttpClientBody(HttpClientRequest *req)
{
	return &req->body;
}

void
HttpClientAddHeader(HttpClientRequest *req, const char *line)
{
	struct curl_slist *list = curl_slist_append(req->headers, line);

	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory in libcurl")));
	req->headers = list;
}

/*
 * write_callback
 *		CURLOPT_WRITEFUNCTION: keep the first bytes of the response for the
 *		error text, read (and drop) the rest up to HTTP_MAX_RESPONSE_BYTES.
 */
static size_t
write_callback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpClientRequest *req = (HttpClientRequest *) userdata;
	size_t		len = size * nmemb;

	if (req->resp_len < HTTP_ERROR_BODY_BYTES)
	{
		size_t		take = Min(len, (size_t) (HTTP_ERROR_BODY_BYTES - req->resp_len));

		memcpy(req->resp + req->resp_len, ptr, take);
		req->resp_len += take;
	}
	req->resp_total += len;
	if (req->resp_total > HTTP_MAX_RESPONSE_BYTES)
	{
		req->resp_too_large = true;
		return 0;				/* CURLE_WRITE_ERROR */
	}
	if (req->keep_full)
	{
		/*
		 * Grown by hand without raising an error (inside libcurl); the total
		 * is within HTTP_MAX_RESPONSE_BYTES.
		 */
		if (req->full.len + len + 1 > (size_t) req->full.maxlen)
		{
			size_t		grown_size = Max((size_t) req->full.maxlen * 2, req->full.len + len + 1);
			char	   *grown;

			grown = MemoryContextAllocExtended(GetMemoryChunkContext(req->full.data),
											   grown_size, MCXT_ALLOC_NO_OOM);
			if (grown == NULL)
				return 0;		/* CURLE_WRITE_ERROR */
			memcpy(grown, req->full.data, req->full.len + 1);
			pfree(req->full.data);
			req->full.data = grown;
			req->full.maxlen = (int) grown_size;
		}
		memcpy(req->full.data + req->full.len, ptr, len);
		req->full.len += (int) len;
		req->full.data[req->full.len] = '\0';
	}
	return len;
}

/*
 * take_easy
 *		An easy handle from the pool, or a new one.
 */
static CURL *
take_easy(void)
{
	CURL	   *easy;

	if (easy_pool_count > 0)
		return easy_pool[--easy_pool_count];
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory in libcurl")));
	return easy;
}

/*
 * give_back_easy
 *		Return an easy handle (not in the multi handle) to the pool.
 */
static void
give_back_easy(CURL *easy)
{
	if (easy_pool == NULL)
		easy_pool = MemoryContextAlloc(http_cxt, sizeof(CURL *) * HTTP_MAX_POOLED_HANDLES);
	if (easy_pool_count < HTTP_MAX_POOLED_HANDLES)
	{
		curl_easy_reset(easy);
		easy_pool[easy_pool_count++] = easy;
	}
	else
		curl_easy_cleanup(easy);
}

/*
 * start_easy
 *		Put the request prepared in 'req' (target, headers, body) for item
 *		'i' in flight: the easy handle's options and the multi handle.
 */
static void
start_easy(HttpRun *run, HttpClientRequest *req, int i)
{
	CURL	   *easy;
	CURLMcode	mrc;

	easy = take_easy();
	req->easy = easy;
	req->index = i;
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) Min(req->timeout_ms, LONG_MAX));
	curl_easy_setopt(easy, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body.len);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data);
	if (strcmp(req->method, "POST") != 0)
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	HttpSocketInstall(easy, &req->connect);

	mrc = curl_multi_add_handle(multi, easy);
	if (mrc != CURLM_OK)
	{
		req->index = -1;
		req->easy = NULL;
		curl_slist_free_all(req->headers);
		req->headers = NULL;
		give_back_easy(easy);
		elog(ERROR, "outbox_saga: curl_multi_add_handle failed: %s",
			 curl_multi_strerror(mrc));
	}
	run->inflight++;
}

/*
 * start_item
 *		Put item 'i' of the batch in flight in a free slot, prepared by the
 *		batch's start callback.  The client's own headers frame the
 *		caller's: Content-Type first, "Expect:" (no 100-continue round trip)
 *		last.
 */
static void
start_item(HttpRun *run, int i)
{
	const HttpClientBatch *batch = run->batch;
	HttpClientRequest *req = NULL;
	int			s;

	for (s = 0; s < run->nslots; s++)
		if (run->slots[s].index < 0)
		{
			req = &run->slots[s];
			break;
		}
	if (req == NULL)
		elog(ERROR, "outbox_saga: no free request slot");

	req->url = NULL;
	req->method = NULL;
	req->headers = NULL;
	req->errbuf[0] = '\0';
	req->resp_len = 0;
	req->resp_total = 0;
	req->resp_too_large = false;
	resetStringInfo(&req->body);
	if (req->keep_full)
		resetStringInfo(&req->full);

	HttpClientAddHeader(req, "Content-Type: application/json");
	batch->start(run->arg, i, req);
	if (req->url == NULL || req->method == NULL)
		elog(ERROR, "outbox_saga: an HTTP request has no target");
	HttpClientAddHeader(req, "Expect:");	/* no 100-continue round trip */
	start_easy(run, req, i);
}

/*
 * release_request
 *		Take a request out of the multi handle and free its slot.
 */
static void
release_request(HttpRun *run, HttpClientRequest *req)
{
	curl_multi_remove_handle(multi, req->easy);
	curl_slist_free_all(req->headers);
	req->headers = NULL;
	give_back_easy(req->easy);
	req->easy = NULL;
	req->index = -1;
	run->inflight--;
}

/*
 * append_response_text
 *		Append the kept start of a response body to an error text: valid
 *		characters of the database encoding only (other bytes become '?'),
 *		control characters as spaces.
 */
static void
append_response_text(StringInfo buf, const char *data, int len)
{
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	int			i = 0;

	while (i < len)
	{
		unsigned char c = (unsigned char) data[i];

		if (c < 0x80)
		{
			appendStringInfoChar(buf, (c < 0x20 || c == 0x7F) ? ' ' : (char) c);
			i++;
			continue;
		}
		if (utf8)
		{
			int			l = pg_utf_mblen((const unsigned char *) &data[i]);

			if (i + l <= len && pg_utf8_islegal((const unsigned char *) &data[i], l))
			{
				appendBinaryStringInfo(buf, &data[i], l);
				i += l;
				continue;
			}
			if (i + l > len)
				break;			/* cut in the middle of a character */
		}
		appendStringInfoChar(buf, '?');
		i++;
	}
}

/*
 * HttpClientDescribeStatus
 *		See http_client.h.
 */
char *
HttpClientDescribeStatus(HttpClientRequest *req, long status, int64 retry_after)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "HTTP %ld", status);
	if (status >= 300 && status < 400)
	{
		struct curl_header *location = NULL;

		/* The header as sent, not resolved against our URL and its query. */
		if (curl_easy_header(req->easy, "Location", 0, CURLH_HEADER, -1,
							 &location) == CURLHE_OK && location != NULL)
		{
			appendStringInfoString(&buf, " (redirect to ");
			append_response_text(&buf, location->value,
								 (int) Min(strlen(location->value), HTTP_ERROR_BODY_BYTES));
			appendStringInfoString(&buf, ", not followed)");
		}
		else
			appendStringInfoString(&buf, " (redirect, not followed)");
	}
	if (retry_after > 0)
		appendStringInfo(&buf, " (Retry-After: " INT64_FORMAT " s)", retry_after);
	if (req->resp_len > 0)
	{
		appendStringInfoString(&buf, ": ");
		append_response_text(&buf, req->resp, req->resp_len);
		if (req->resp_total > (size_t) req->resp_len)
			appendStringInfoString(&buf, "...");
	}
	return buf.data;
}

/*
 * describe_failure
 *		The error text of a request that got no usable response.
 */
static char *
describe_failure(HttpClientRequest *req, CURLcode result, int64 timeout_ms)
{
	const char *curl_text = req->errbuf[0] != '\0' ? req->errbuf :
		curl_easy_strerror(result);
	StringInfoData buf;

	initStringInfo(&buf);
	if (req->connect.invalid_setting)
		appendStringInfoString(&buf, "outbox_saga.http_deny_networks is invalid: every address is refused");
	else if (req->connect.denied)
		appendStringInfo(&buf, "address %s is in outbox_saga.http_deny_networks",
						 req->connect.address);
	else if (req->connect.no_fd)
		appendStringInfoString(&buf, "could not open a socket: the dispatcher has used up its file descriptors (max_files_per_process)");
	else if (result == CURLE_OPERATION_TIMEDOUT)
		appendStringInfo(&buf, "timeout after " INT64_FORMAT " ms: %s",
						 timeout_ms, curl_text);
	else
		appendStringInfo(&buf, "network error: %s", curl_text);
	/* libcurl's texts end with a newline sometimes. */
	while (buf.len > 0 && (buf.data[buf.len - 1] == '\n' || buf.data[buf.len - 1] == '\r'))
		buf.data[--buf.len] = '\0';
	return buf.data;
}

/*
 * finish_item
 *		Hand the outcome of a completed request to the batch's finish
 *		callback and free its slot.
 */
static void
finish_item(HttpRun *run, HttpClientRequest *req, CURLcode result)
{
	const HttpClientBatch *batch = run->batch;
	HttpClientOutcome outcome;
	long		status = 0;

	memset(&outcome, 0, sizeof(outcome));
	(void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status > 0 && (result == CURLE_OK ||
					   (result == CURLE_WRITE_ERROR && req->resp_too_large)))
	{
		outcome.status = status;
		outcome.too_large = req->resp_too_large;
		if (status == 429 || status == 502 || status == 503 || status == 504)
		{
			curl_off_t	retry_after = 0;

			if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK ||
				retry_after < 0)
				retry_after = 0;
			outcome.retry_after = (int64) retry_after;
		}
	}
	else
	{
		outcome.timed_out = (result == CURLE_OPERATION_TIMEDOUT);
		outcome.failure = describe_failure(req, result, req->timeout_ms);
	}
	batch->finish(run->arg, req->index, req, &outcome);
	release_request(run, req);
}

/*
 * HttpClientTakeBody
 *		See http_client.h.  The slot gets a new buffer.
 */
char *
HttpClientTakeBody(HttpClientRequest *req, int *len)
{
	char	   *body = req->full.data;

	Assert(req->keep_full);
	*len = req->full.len;
	initStringInfo(&req->full);
	return body;
}

/* ------------------------------------------------------------------------
 * The multi handle
 * ------------------------------------------------------------------------
 */

/*
 * socket_action
 *		curl_multi_socket_action with every signal blocked, so that threads
 *		libcurl starts (its resolver) never run PostgreSQL's handlers; a
 *		signal that arrives meanwhile is handled when it returns.
 */
static void
socket_action(curl_socket_t fd, int mask)
{
	sigset_t	saved;
	int			running;
	CURLMcode	rc;

	pthread_sigmask(SIG_SETMASK, &BlockSig, &saved);
	rc = curl_multi_socket_action(multi, fd, mask, &running);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != CURLM_OK)
		elog(ERROR, "outbox_saga: curl_multi_socket_action failed: %s",
			 curl_multi_strerror(rc));
}

/*
 * reset_multi
 *		Forget every connection (the deny list changed, or an error left the
 *		state unknown): the next batch makes a new multi handle.
 */
static void
reset_multi(void)
{
	if (multi != NULL)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	HttpSocketForgetAll();
}

/*
 * ensure_multi
 *		The process's multi handle.
 */
static void
ensure_multi(void)
{
	if (multi != NULL)
		return;
	http_curl_init();
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory in libcurl")));
	HttpSocketWatchMulti(multi, http_cxt);
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------
 */

/*
 * start_ready
 *		Start what the batch lets start: nothing once start_until has
 *		passed, at most nslots in flight.
 */
static void
start_ready(HttpRun *run, TimestampTz now)
{
	const HttpClientBatch *batch = run->batch;

	if (now >= run->start_until)
		run->stopped = true;
	while (!run->stopped && run->inflight < run->nslots)
	{
		int			item = batch->next(run->arg, run->inflight);

		if (item < 0)
			break;
		start_item(run, item);
	}
}

/*
 * wait_and_act
 *		Wait for a socket, the timer or the latch (at most until libcurl's
 *		timer, at most HTTP_MAX_WAIT_MS), then let libcurl act on what
 *		happened.  'occurred' has room for *occurred_size events; it grows
 *		with the wait set.
 */
static void
wait_and_act(HttpRun *run, WaitEvent **occurred, int *occurred_size)
{
	long		wait_ms;
	int			nevents;
	int			e;

	run->set = HttpSocketSyncWaitSet(run->set, &run->set_capacity);
	if (*occurred_size < run->set_capacity)
	{
		if (*occurred != NULL)
			pfree(*occurred);
		*occurred_size = run->set_capacity;
		*occurred = palloc(sizeof(WaitEvent) * *occurred_size);
	}
	wait_ms = HttpSocketWaitMs(HTTP_MAX_WAIT_MS);
	nevents = WaitEventSetWait(run->set, wait_ms, *occurred, *occurred_size,
							   PG_WAIT_EXTENSION);

	for (e = 0; e < nevents; e++)
	{
		WaitEvent  *ev = &(*occurred)[e];

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			run->latch_seen = true;
			CHECK_FOR_INTERRUPTS();
		}
		else if (ev->events & WL_SOCKET_MASK)
		{
			curl_socket_t fd = (curl_socket_t) (intptr_t) ev->user_data;
			int			mask = 0;

			if (!HttpSocketEventWanted(fd))
				continue;
			if (ev->events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (ev->events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			socket_action(fd, mask);
		}
	}
	if (HttpSocketTimerDue())
		socket_action(CURL_SOCKET_TIMEOUT, 0);
}

/*
 * harvest
 *		Finish every request libcurl has completed.
 */
static void
harvest(HttpRun *run)
{
	CURLMsg    *msg;
	int			pending;

	while ((msg = curl_multi_info_read(multi, &pending)) != NULL)
	{
		HttpClientRequest *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK ||
			req == NULL)
			elog(ERROR, "outbox_saga: a finished transfer has no request");
		finish_item(run, req, msg->data.result);
	}
}

/*
 * run_loop
 *		Start, wait, harvest, until nothing is in flight and nothing more
 *		may start.
 */
static void
run_loop(HttpRun *run)
{
	WaitEvent  *occurred = NULL;
	int			occurred_size = 0;

	for (;;)
	{
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();

		now = GetCurrentTimestamp();
		start_ready(run, now);
		if (run->inflight == 0)
			break;
		wait_and_act(run, &occurred, &occurred_size);
		harvest(run);
	}
	if (occurred != NULL)
		pfree(occurred);
}

/*
 * run_cleanly
 *		run_loop(), then free the batch's wait set and buffers; an error
 *		removes every request from the multi handle and drops every
 *		connection before it propagates.
 */
static void
run_cleanly(HttpRun *run)
{
	int			i;

	HttpSocketRebuildWaitSet(); /* a new wait set for this batch */

	PG_TRY();
	{
		run_loop(run);
	}
	PG_CATCH();
	{
		int			s;

		for (s = 0; s < run->nslots; s++)
			if (run->slots[s].index >= 0)
				release_request(run, &run->slots[s]);
		if (run->set != NULL)
			FreeWaitEventSet(run->set);
		run->set = NULL;
		/* Start the next batch from a clean slate: no connection, no socket. */
		reset_multi();
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (run->set != NULL)
		FreeWaitEventSet(run->set);
	run->set = NULL;
	for (i = 0; i < run->nslots; i++)
	{
		pfree(run->slots[i].body.data);
		if (run->slots[i].keep_full)
			pfree(run->slots[i].full.data);
	}

	/* Hand a consumed wakeup back to the dispatcher's own wait. */
	if (run->latch_seen)
		SetLatch(MyLatch);
}

/*
 * HttpClientRun
 *		See http_client.h.  The multi handle is dropped first if the deny
 *		list changed since its connections were made.
 */
void
HttpClientRun(const HttpClientBatch *batch, void *arg, int nslots,
			  TimestampTz start_until)
{
	HttpRun		run;
	uint64		generation;
	int			i;

	HttpClientInit();
	generation = HttpGuardRefresh();
	if (generation != multi_guard_generation)
	{
		reset_multi();
		multi_guard_generation = generation;
	}
	ensure_multi();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(64, 2 * OutboxMaxInflight));

	memset(&run, 0, sizeof(run));
	run.batch = batch;
	run.arg = arg;
	run.nslots = nslots;
	run.start_until = start_until;
	run.slots = palloc0(sizeof(HttpClientRequest) * nslots);
	for (i = 0; i < nslots; i++)
	{
		run.slots[i].index = -1;
		run.slots[i].keep_full = batch->keep_bodies;
		initStringInfo(&run.slots[i].body);
		if (batch->keep_bodies)
			initStringInfo(&run.slots[i].full);
	}
	run_cleanly(&run);
}

/* ------------------------------------------------------------------------
 * HttpClientSend (saga steps of call kind "http")
 * ------------------------------------------------------------------------
 */

/* The calls of one HttpClientSend, as a batch's callbacks see them. */
typedef struct CallBatch
{
	const HttpCall *calls;
	HttpCallResult *results;
	int			n;
	int			cursor;			/* the next call to consider */
} CallBatch;

/*
 * call_timeout
 *		A call's timeout: its own, or outbox_saga.http_timeout.
 */
static int64
call_timeout(const HttpCall *call)
{
	return call->timeout_ms > 0 ? call->timeout_ms : OutboxHttpTimeout;
}

/*
 * call_next
 *		Batch callback: the next valid call, in order; every call is
 *		independent (no lanes, no stop after failures).
 */
static int
call_next(void *arg, int inflight)
{
	CallBatch  *cb = (CallBatch *) arg;

	while (cb->cursor < cb->n && cb->results[cb->cursor].invalid)
		cb->cursor++;
	return cb->cursor < cb->n ? cb->cursor++ : -1;
}

/*
 * call_start
 *		Batch callback: the request of call 'i' (checked by
 *		HttpClientCallProblem).  Headers: Idempotency-Key, the call's.
 */
static void
call_start(void *arg, int i, HttpClientRequest *req)
{
	CallBatch  *cb = (CallBatch *) arg;
	const HttpCall *call = &cb->calls[i];
	StringInfoData line;
	int			h;

	if (call->body != NULL)
		appendBinaryStringInfo(HttpClientBody(req), call->body, call->body_len);

	initStringInfo(&line);
	if (call->idempotency_key != NULL)
	{
		appendStringInfo(&line, "Idempotency-Key: %s", call->idempotency_key);
		HttpClientAddHeader(req, line.data);
	}
	for (h = 0; h < call->nheaders; h++)
	{
		resetStringInfo(&line);
		appendStringInfo(&line, "%s: %s", call->header_names[h], call->header_values[h]);
		HttpClientAddHeader(req, line.data);
	}
	/* The lines may hold secrets (Authorization): overwrite them. */
	explicit_bzero(line.data, line.maxlen);
	pfree(line.data);

	cb->results[i].sent = true;
	HttpClientSetTarget(req, call->url, call->method, call_timeout(call));
}

/*
 * call_finish
 *		Batch callback: record what call 'i' got.
 */
static void
call_finish(void *arg, int i, HttpClientRequest *req,
			const HttpClientOutcome *outcome)
{
	CallBatch  *cb = (CallBatch *) arg;
	HttpCallResult *res = &cb->results[i];

	res->error = NULL;
	if (outcome->status > 0)
	{
		res->status = outcome->status;
		if (outcome->too_large)
		{
			res->body_too_large = true;
			res->error = psprintf("HTTP %ld: the response body is larger than %d bytes",
								  outcome->status, HTTP_CALL_MAX_BODY);
		}
		else
		{
			res->body = HttpClientTakeBody(req, &res->body_len);
			if (outcome->status < 200 || outcome->status >= 300)
				res->error = HttpClientDescribeStatus(req, outcome->status, 0);
		}
	}
	else
	{
		res->status = 0;
		res->timed_out = outcome->timed_out;
		res->error = outcome->failure;
	}
}

static const HttpClientBatch call_batch = {
	.keep_bodies = true,
	.next = call_next,
	.start = call_start,
	.finish = call_finish,
};

/*
 * HttpClientCallProblem
 *		See http_client.h.  The URL goes through HttpGuardCheckUrl (form,
 *		and a literal address in outbox_saga.http_deny_networks); an address
 *		a name resolves to is checked when the connection is made.
 */
char *
HttpClientCallProblem(const HttpCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile why = NULL;
	int			h;

	if (call->url == NULL || call->method == NULL)
		return pstrdup("the http call has no URL or no method");
	PG_TRY();
	{
		HttpGuardCheckUrl(call->url);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = pstrdup(edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (why != NULL)
		return why;

	if (call->idempotency_key != NULL &&
		HttpClientCheckHeaderValue(call->idempotency_key,
								   strlen(call->idempotency_key)) != HTTP_HEADER_OK)
		return pstrdup("the idempotency key contains a control character");
	if (call->nheaders > HTTP_MAX_HEADERS)
		return psprintf("the http call has more than %d headers", HTTP_MAX_HEADERS);
	for (h = 0; h < call->nheaders; h++)
	{
		const char *name = call->header_names[h];
		const char *value = call->header_values[h];
		int			len = strlen(name);

		switch (HttpClientCheckHeaderName(name, len))
		{
			case HTTP_HEADER_BAD_LENGTH:
				return pstrdup("a header name of the http call is empty or too long");
			case HTTP_HEADER_BAD_CHAR:
				return psprintf("header name \"%s\" of the http call is not valid",
								clip_name(name, len));
			case HTTP_HEADER_RESERVED:
				return psprintf("header \"%s\" may not be set in an http call",
								clip_name(name, len));
			case HTTP_HEADER_OK:
				break;
		}
		if (call->idempotency_key != NULL && pg_strcasecmp(name, "idempotency-key") == 0)
			return psprintf("header \"%s\" may not be set in an http call",
							clip_name(name, len));
		if (HttpClientCheckHeaderValue(value, strlen(value)) != HTTP_HEADER_OK)
			return psprintf("the value of header \"%s\" of the http call is too long or contains a control character",
							clip_name(name, len));
	}
	return NULL;
}

/*
 * HttpClientSend
 *		See http_client.h.  Every call independent, each with its own
 *		timeout.  Nothing new starts once the longest timeout has passed
 *		(calls beyond outbox_saga.max_inflight wait for a slot).
 */
void
HttpClientSend(const HttpCall *calls, int n, HttpCallResult *results)
{
	CallBatch	cb;
	int			i;
	int			nvalid = 0;
	int64		longest = 0;

	memset(results, 0, sizeof(HttpCallResult) * Max(n, 0));
	if (n <= 0)
		return;

	HttpClientInit();

	for (i = 0; i < n; i++)
	{
		results[i].error = HttpClientCallProblem(&calls[i]);
		if (results[i].error != NULL)
		{
			results[i].invalid = true;
			continue;
		}
		longest = Max(longest, call_timeout(&calls[i]));
		nvalid++;
	}
	if (nvalid == 0)
		return;

	memset(&cb, 0, sizeof(cb));
	cb.calls = calls;
	cb.results = results;
	cb.n = n;
	HttpClientRun(&call_batch, &cb, Max(1, Min(OutboxMaxInflight, nvalid)),
				  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), longest));

	for (i = 0; i < n; i++)
		if (!results[i].invalid && !results[i].sent)
			results[i].error = pstrdup("not sent: the other requests of the batch took the whole time");
}

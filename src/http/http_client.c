/*-------------------------------------------------------------------------
 *
 * http.c
 *		Destination kind "http": webhooks, many requests in flight through
 *		libcurl's multi interface.
 *
 * CONFIG
 *	{"url": "https://...", "method": "POST"|"PUT"|"PATCH", "headers": {...},
 *	 "secret": "whsec_..." | ["whsec_...", ...], "concurrency": 1..1000}
 *	plus the common keys; "timeout" is the per-attempt timeout (default:
 *	outbox_saga.http_timeout).  validate() checks everything with SQLSTATE
 *	22023 and never quotes a header value, a secret or the URL.
 *
 * WIRE FORMAT (SPEC 3.2, Standard Webhooks)
 *	Body: {"id": event_id, "type": event_type, "topic": ..., "aggregate_id":
 *	..., "timestamp": created_at in ISO 8601 UTC, "data": payload,
 *	"headers": the event's headers}.  HTTP headers: content-type
 *	application/json, webhook-id (the event_id, the same on every attempt),
 *	webhook-timestamp (Unix seconds of the attempt), webhook-signature
 *	(http_sign.c) when a secret is set, and the config's "headers".
 *	Redirects are never followed; proxies are never used.
 *
 * OUTCOMES
 *	2xx delivered; 410 dead letter and pause; 429, 502, 503, 504 retried no
 *	earlier than their Retry-After (seconds or HTTP date, at most
 *	backoff_max); 3xx, other statuses, network errors, refused addresses
 *	and timeouts retried.  The error text is the status and at most 200
 *	bytes of the response body (and the Location of a redirect), or
 *	libcurl's message (which may name the host and port) - never a secret,
 *	a request header, or the path or query of the URL.
 *
 * THE LOOP (deliver_batch, outside any transaction)
 *	One CURLM per process, in a long-lived memory context, keeps the
 *	connection cache and the DNS cache across batches and destinations:
 *	keep-alive connections are reused by the next batch.  Easy handles are
 *	pooled too.  libcurl tells us which sockets to watch
 *	(CURLMOPT_SOCKETFUNCTION) and when to call it back
 *	(CURLMOPT_TIMERFUNCTION); we wait on those sockets, MyLatch and
 *	postmaster death together in one WaitEventSet, so SIGTERM, DROP
 *	DATABASE and a dying postmaster are noticed at once: CHECK_FOR_INTERRUPTS
 *	runs on every wakeup and never inside a libcurl callback.  The set is
 *	extended and modified in place (ModifyWaitEvent); an idle keep-alive
 *	connection stays in it, parked, watched only for the peer closing it,
 *	and a closed connection socket leaves epoll by itself (http_guard.c
 *	reports every close), so steady keep-alive traffic never rebuilds the
 *	set; only other sockets going away (the resolver's) do.  A latch
 *	wakeup consumed here is handed back (SetLatch) when the batch ends, so
 *	the dispatcher does not miss the commit that caused it.  DNS runs in
 *	libcurl's threaded resolver (CURL_VERSION_ASYNCHDNS, checked at start):
 *	resolution never blocks the loop.  Signals are blocked while libcurl
 *	runs, so that its resolver threads never run PostgreSQL's handlers.
 *
 *	Requests in flight: at most min(outbox_saga.max_inflight, concurrency),
 *	but until one request of the batch has succeeded, at most
 *	HTTP_FAILURES_BEFORE_STOP attempts in all (an unreachable receiver
 *	costs three attempts per batch, not a batch of failures).  Nothing new
 *	starts after a 410 or once the batch has run for the per-attempt
 *	timeout, so a batch returns within twice the timeout.  Lanes (sink.h):
 *	one request in flight per lane, the next one started when it
 *	succeeded, the rest of the lane skipped when it did not.
 *
 * SAGA CALLS (SinkHttpSend, http.h)
 *	The saga driver's http steps use the same loop (run_batch) with
 *	HttpBatch.calls instead of events: independent requests (no lanes, no
 *	stop after failures, no webhook headers or signature), each with its
 *	own URL, method, headers, timeout and Idempotency-Key, the whole
 *	response body kept (up to HTTP_CALL_MAX_BODY).  The outcome is
 *	classified by the caller (saga_driver.c).
 *
 * MEMORY: per-batch data in the caller's context; the multi handle, the
 *	easy-handle pool and the socket table in http_cxt; parsed configs
 *	(secrets included, overwritten before they are freed) in their
 *	dest_cache.c entry.  An error
 *	raised in the loop removes every request from the multi handle and
 *	drops every connection before it propagates.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "libpq/pqsignal.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "base/guc.h"
#include "sink/sink.h"
#include "sink/dest_cache.h"
#include "sink/http.h"
#include "sink/lane_plan.h"

/* Limits of the config keys. */
#define HTTP_MAX_HEADERS			64
#define HTTP_MAX_HEADER_NAME		256
#define HTTP_MAX_HEADER_VALUE		8192
#define HTTP_MAX_SECRETS			10
#define HTTP_MAX_CONCURRENCY		1000

/* How much of a response is kept for the error text, and read at all. */
#define HTTP_ERROR_BODY_BYTES		200
#define HTTP_MAX_RESPONSE_BYTES		(1024 * 1024)

/*
 * Until a request of the batch succeeds, at most this many are attempted
 * (and in flight): an unreachable receiver costs a few attempts per batch.
 */
#define HTTP_FAILURES_BEFORE_STOP	3

/* Longest sleep without a libcurl timer (the loop rechecks its state). */
#define HTTP_MAX_WAIT_MS			1000

/* Easy handles kept for the next batch. */
#define HTTP_MAX_POOLED_HANDLES		1000

#define HTTP_USER_AGENT				"outbox_saga/" OUTBOX_SAGA_VERSION

static const char *const http_keys[] = {
	"url", "method", "headers", "secret", "concurrency", NULL
};

/* Headers outbox_saga sets itself or that would break HTTP framing. */
static const char *const reserved_headers[] = {
	"content-type", "content-length", "transfer-encoding", "host",
	"connection", "keep-alive", "proxy-connection", "expect", "te",
	"trailer", "upgrade", NULL
};

/* A config, parsed. */
typedef struct HttpConfig
{
	char	   *url;
	const char *method;			/* "POST", "PUT" or "PATCH" */
	int			nheaders;
	char	  **headers;		/* "Name: value" */
	int			nsecrets;
	HttpSecret *secrets;
	int			concurrency;	/* 0: not set */
	bool		has_timeout;	/* the "timeout" key is set */
} HttpConfig;

/* A socket libcurl asked us to watch. */
typedef struct HttpSocket
{
	curl_socket_t fd;
	uint32		events;			/* WL_SOCKET_* wanted */
	uint32		registered;		/* WL_SOCKET_* in the wait set */
	int			pos;			/* position in the wait set, -1 if none */
	bool		parked;			/* an idle connection in libcurl's cache */
} HttpSocket;

/* One request in flight (a slot, reused within a batch). */
typedef struct HttpRequest
{
	int			index;			/* event index, -1 if the slot is free */
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData body;
	char		errbuf[CURL_ERROR_SIZE];
	char		resp[HTTP_ERROR_BODY_BYTES];
	int			resp_len;
	size_t		resp_total;
	bool		resp_too_large;
	bool		keep_full;		/* SinkHttpSend: keep the whole body in 'full' */
	StringInfoData full;
	HttpGuardState guard;
} HttpRequest;

/* The state of one deliver_batch() call. */
typedef struct HttpBatch
{
	const DestinationConfig *dest;
	const HttpConfig *conf;
	DispatchEvent *const *events;
	SinkOutcome *outcomes;
	const HttpCall *calls;		/* SinkHttpSend: calls instead of events */
	HttpCallResult *results;
	int			n;
	SinkLanePlan plan;			/* which events may start */
	HttpRequest *slots;
	int			nslots;
	int			inflight;
	int			limit;
	int64		timeout_ms;
	TimestampTz start_until;	/* no new request after this */
	int			ok;
	int			failed;
	bool		stop;			/* start nothing more */
	bool		latch_seen;
	WaitEventSet *set;			/* sockets, latch, postmaster death */
	int			set_capacity;
} HttpBatch;

/* Process-wide state. */
static MemoryContext http_cxt = NULL;
static CURLM *multi = NULL;
static CURL **easy_pool = NULL;
static int	easy_pool_count = 0;
static HttpSocket *sockets = NULL;
static int	socket_count = 0;
static int	socket_capacity = 0;
static bool sockets_removed = false;	/* the wait set must be rebuilt */
static bool *connection_fd = NULL;	/* by fd: an open connection socket */
static int	connection_fd_size = 0;
static bool timer_armed = false;
static TimestampTz timer_at = 0;
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

/* ------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------
 */

/*
 * find_key
 *		Top-level key 'key' of 'config' into *v; false if absent or null.
 */
static bool
find_key(Jsonb *config, const char *key, JsonbValue *v)
{
	if (getKeyJsonValueFromContainer(&config->root, key, strlen(key), v) == NULL)
		return false;
	return v->type != jbvNull;
}

/*
 * config_error
 *		Error: key 'key' is unusable; 'detail' (may be NULL) says why.
 */
static void config_error(const char *msg, const char *detail) pg_attribute_noreturn();

static void
config_error(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg_internal("%s", msg),
			 detail ? errdetail_internal("%s", detail) : 0));
}

/*
 * clip_name
 *		At most 63 bytes of a name for a message (cut at a character
 *		boundary), with "..." if it was longer.
 */
static char *
clip_name(const char *name, int len)
{
	int			clip = pg_mbcliplen(name, len, 63);

	return psprintf("%.*s%s", clip, name, clip < len ? "..." : "");
}

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
 * parse_headers
 *		The "headers" key: an object of string values, names that are HTTP
 *		tokens and not reserved, values without control characters.
 *		Messages may name a header, never show its value.
 */
static void
parse_headers(JsonbValue *v, HttpConfig *out)
{
	JsonbIterator *it;
	JsonbValue	item;
	JsonbIteratorToken tok;
	char	   *name = NULL;
	int			name_len = 0;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		config_error("configuration key \"headers\" must be an object of strings",
					 NULL);

	out->headers = palloc0(sizeof(char *) * HTTP_MAX_HEADERS);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
	{
		int			i;

		if (tok == WJB_KEY)
		{
			name = item.val.string.val;
			name_len = item.val.string.len;
			if (name_len == 0 || name_len > HTTP_MAX_HEADER_NAME)
				config_error("a header name in configuration key \"headers\" is empty or too long",
							 NULL);
			for (i = 0; i < name_len; i++)
				if (!is_token_char((unsigned char) name[i]))
					config_error(psprintf("header name \"%s\" in configuration key \"headers\" is not valid",
										  clip_name(name, name_len)),
								 "A header name consists of letters, digits and !#$%&'*+-.^_`|~.");
			for (i = 0; reserved_headers[i] != NULL; i++)
				if (strlen(reserved_headers[i]) == name_len &&
					pg_strncasecmp(name, reserved_headers[i], name_len) == 0)
					break;
			if (reserved_headers[i] != NULL ||
				(name_len >= 8 && pg_strncasecmp(name, "webhook-", 8) == 0))
				config_error(psprintf("header \"%s\" may not be set in configuration key \"headers\"",
									  clip_name(name, name_len)),
							 "Content-Type, webhook-* and the headers that frame the request are set by outbox_saga.");
		}
		else if (tok == WJB_VALUE)
		{
			if (item.type != jbvString)
				config_error(psprintf("the value of header \"%s\" in configuration key \"headers\" must be a string",
									  clip_name(name, name_len)),
							 NULL);
			if (item.val.string.len > HTTP_MAX_HEADER_VALUE)
				config_error(psprintf("the value of header \"%s\" in configuration key \"headers\" is too long",
									  clip_name(name, name_len)),
							 psprintf("A header value has at most %d bytes.",
									  HTTP_MAX_HEADER_VALUE));
			for (i = 0; i < item.val.string.len; i++)
			{
				unsigned char c = (unsigned char) item.val.string.val[i];

				if ((c < 0x20 && c != '\t') || c == 0x7F)
					config_error(psprintf("the value of header \"%s\" in configuration key \"headers\" contains a control character",
										  clip_name(name, name_len)),
								 NULL);
			}
			if (out->nheaders >= HTTP_MAX_HEADERS)
				config_error("configuration key \"headers\" has too many headers",
							 psprintf("At most %d headers may be set.", HTTP_MAX_HEADERS));
			out->headers[out->nheaders++] =
				psprintf("%.*s: %.*s", name_len, name,
						 item.val.string.len, item.val.string.val);
		}
	}
}

/*
 * parse_secrets
 *		The "secret" key: "whsec_..." or a non-empty array of them.
 */
static void
parse_secrets(JsonbValue *v, HttpConfig *out)
{
	const char *why;

	out->secrets = palloc0(sizeof(HttpSecret) * HTTP_MAX_SECRETS);
	if (v->type == jbvString)
	{
		why = HttpSignDecodeSecret(v->val.string.val, v->val.string.len,
								   CurrentMemoryContext, &out->secrets[0]);
		if (why != NULL)
			config_error("configuration key \"secret\" is not a valid webhook secret",
						 psprintf("The secret is not \"whsec_\" followed by base64: %s.", why));
		out->nsecrets = 1;
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	item;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (item.type != jbvString)
				config_error("configuration key \"secret\" must be a string or an array of strings",
							 NULL);
			if (out->nsecrets >= HTTP_MAX_SECRETS)
				config_error("configuration key \"secret\" has too many secrets",
							 psprintf("At most %d secrets may sign at once.", HTTP_MAX_SECRETS));
			why = HttpSignDecodeSecret(item.val.string.val, item.val.string.len,
									   CurrentMemoryContext,
									   &out->secrets[out->nsecrets]);
			if (why != NULL)
				config_error("configuration key \"secret\" is not a valid webhook secret",
							 psprintf("Secret %d of the array is not \"whsec_\" followed by base64: %s.",
									  out->nsecrets + 1, why));
			out->nsecrets++;
		}
		if (out->nsecrets == 0)
			config_error("configuration key \"secret\" must not be an empty array",
						 NULL);
		return;
	}
	config_error("configuration key \"secret\" must be a string or an array of strings",
				 NULL);
}

/*
 * parse_concurrency
 *		The "concurrency" key: an integer from 1 to HTTP_MAX_CONCURRENCY.
 */
static int
parse_concurrency(JsonbValue *v)
{
	char	   *text;
	char	   *end;
	long		value;

	if (v->type != jbvNumeric)
		config_error("configuration key \"concurrency\" must be an integer", NULL);
	text = DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(v->val.numeric)));
	errno = 0;
	value = strtol(text, &end, 10);
	if (*end == '.')
		for (end++; *end == '0'; end++)
			;
	if (*end != '\0' || end == text)
		config_error("configuration key \"concurrency\" must be an integer", NULL);
	if (errno != 0 || value < 1 || value > HTTP_MAX_CONCURRENCY)
		config_error("configuration key \"concurrency\" is out of range",
					 psprintf("It must be between 1 and %d.", HTTP_MAX_CONCURRENCY));
	return (int) value;
}

/*
 * parse_config
 *		Check and parse a config; allocations in CurrentMemoryContext.
 */
static void
parse_config(Jsonb *config, HttpConfig *out)
{
	JsonbValue	v;

	memset(out, 0, sizeof(HttpConfig));

	if (!find_key(config, "url", &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an http destination needs the config key \"url\""),
				 errhint("For example '{\"url\": \"https://example.com/webhooks\"}'.")));
	if (v.type != jbvString)
		config_error("configuration key \"url\" must be a string", NULL);
	out->url = pnstrdup(v.val.string.val, v.val.string.len);
	if (strlen(out->url) != v.val.string.len)
		config_error("configuration key \"url\" is not a valid webhook URL", NULL);
	HttpGuardCheckUrl(out->url);

	out->method = "POST";
	if (find_key(config, "method", &v))
	{
		if (v.type == jbvString && v.val.string.len == 4 &&
			pg_strncasecmp(v.val.string.val, "POST", 4) == 0)
			out->method = "POST";
		else if (v.type == jbvString && v.val.string.len == 3 &&
				 pg_strncasecmp(v.val.string.val, "PUT", 3) == 0)
			out->method = "PUT";
		else if (v.type == jbvString && v.val.string.len == 5 &&
				 pg_strncasecmp(v.val.string.val, "PATCH", 5) == 0)
			out->method = "PATCH";
		else
			config_error("configuration key \"method\" must be \"POST\", \"PUT\" or \"PATCH\"",
						 NULL);
	}

	if (find_key(config, "headers", &v))
		parse_headers(&v, out);
	if (find_key(config, "secret", &v))
		parse_secrets(&v, out);
	if (find_key(config, "concurrency", &v))
		out->concurrency = parse_concurrency(&v);
	out->has_timeout = find_key(config, "timeout", &v);
}

/*
 * free_secrets
 *		Overwrite the decoded keys of a parsed config.
 */
static void
free_secrets(HttpConfig *conf)
{
	int			i;

	for (i = 0; i < conf->nsecrets; i++)
		HttpSignFreeSecret(&conf->secrets[i]);
	conf->nsecrets = 0;
}

/*
 * http_validate
 *		The kind's part of create_destination / alter_destination.
 */
static void
http_validate(Jsonb *config, Oid owner)
{
	HttpConfig	parsed;

	http_curl_init();
	parse_config(config, &parsed);
	free_secrets(&parsed);
}

/*
 * ensure_http_cxt
 *		The sink's long-lived memory context.
 */
static void
ensure_http_cxt(void)
{
	if (http_cxt == NULL)
		http_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga http",
										 ALLOCSET_DEFAULT_SIZES);
}

/*
 * make_config
 *		A cache entry's state: the parsed config.
 */
static void *
make_config(Jsonb *config)
{
	HttpConfig *conf = palloc0(sizeof(HttpConfig));

	parse_config(config, conf);
	return conf;
}

/*
 * release_config
 *		Overwrite a cache entry's decoded keys.
 */
static void
release_config(void *state)
{
	free_secrets((HttpConfig *) state);
}

static SinkDestCache http_cache = {
	.name = "http",
	.make = make_config,
	.release = release_config,
	.idle_close_ms = 0,
};

/*
 * http_forget
 *		Drop the parsed config of a destination (dropped or changed).
 */
static void
http_forget(int32 dest_id)
{
	SinkDestForget(&http_cache, dest_id);
}

/* ------------------------------------------------------------------------
 * The request
 * ------------------------------------------------------------------------
 */

/*
 * append_json_text
 *		A text datum as a JSON string (or null).
 */
static void
append_json_text(StringInfo buf, text *t)
{
	if (t == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, text_to_cstring(t));
}

/*
 * append_iso8601
 *		A timestamp as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC), whatever the
 *		TimeZone and DateStyle settings.
 */
static void
append_iso8601(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * build_body
 *		The JSON body of an event (SPEC 3.2).
 */
static void
build_body(const DispatchEvent *ev, const char *event_id, StringInfo buf)
{
	appendStringInfo(buf, "{\"id\": \"%s\", \"type\": ", event_id);
	append_json_text(buf, ev->event_type);
	appendStringInfoString(buf, ", \"topic\": ");
	append_json_text(buf, ev->topic);
	appendStringInfoString(buf, ", \"aggregate_id\": ");
	append_json_text(buf, ev->aggregate_id);
	appendStringInfoString(buf, ", \"timestamp\": ");
	append_iso8601(buf, ev->created_at);
	appendStringInfoString(buf, ", \"data\": ");
	(void) JsonbToCString(buf, &ev->payload->root, VARSIZE(ev->payload));
	appendStringInfoString(buf, ", \"headers\": ");
	if (ev->headers != NULL)
		(void) JsonbToCString(buf, &ev->headers->root, VARSIZE(ev->headers));
	else
		appendStringInfoString(buf, "{}");
	appendStringInfoChar(buf, '}');
}

/*
 * append_header
 *		curl_slist_append, with out-of-memory as an error.
 */
static void
append_header(HttpRequest *req, const char *line)
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
	HttpRequest *req = (HttpRequest *) userdata;
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
			size_t		size = Max((size_t) req->full.maxlen * 2, req->full.len + len + 1);
			char	   *grown;

			grown = MemoryContextAllocExtended(GetMemoryChunkContext(req->full.data),
											   size, MCXT_ALLOC_NO_OOM);
			if (grown == NULL)
				return 0;		/* CURLE_WRITE_ERROR */
			memcpy(grown, req->full.data, req->full.len + 1);
			pfree(req->full.data);
			req->full.data = grown;
			req->full.maxlen = (int) size;
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
 *		Put the request prepared in 'req' (headers, body) for item 'i' in
 *		flight: the easy handle's options and the multi handle.
 */
static void
start_easy(HttpBatch *b, HttpRequest *req, int i, const char *url,
		   const char *method, int64 timeout_ms)
{
	CURL	   *easy;
	CURLMcode	mrc;

	easy = take_easy();
	req->easy = easy;
	req->index = i;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) Min(timeout_ms, LONG_MAX));
	curl_easy_setopt(easy, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body.len);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data);
	if (strcmp(method, "POST") != 0)
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	HttpGuardInstall(easy, &req->guard);

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
	b->inflight++;
}

/*
 * start_request
 *		Put event 'i' in flight in a free slot.
 */
static void
start_request(HttpBatch *b, int i)
{
	const HttpConfig *conf = b->conf;
	const DispatchEvent *ev = b->events[i];
	HttpRequest *req = NULL;
	char		event_id[SINK_UUID_TEXT_LEN];
	char		line[128];
	int64		now = (int64) time(NULL);
	int			s;

	for (s = 0; s < b->nslots; s++)
		if (b->slots[s].index < 0)
		{
			req = &b->slots[s];
			break;
		}
	if (req == NULL)
		elog(ERROR, "outbox_saga: no free request slot");

	req->headers = NULL;
	req->errbuf[0] = '\0';
	req->resp_len = 0;
	req->resp_total = 0;
	req->resp_too_large = false;
	resetStringInfo(&req->body);

	SinkFormatUuid(&ev->event_id, event_id);
	build_body(ev, event_id, &req->body);

	append_header(req, "Content-Type: application/json");
	snprintf(line, sizeof(line), "webhook-id: %s", event_id);
	append_header(req, line);
	snprintf(line, sizeof(line), "webhook-timestamp: " INT64_FORMAT, now);
	append_header(req, line);
	if (conf->nsecrets > 0)
	{
		StringInfoData sig;

		initStringInfo(&sig);
		appendStringInfoString(&sig, "webhook-signature: ");
		HttpSignPayload(conf->secrets, conf->nsecrets, event_id, now,
						req->body.data, req->body.len, &sig);
		append_header(req, sig.data);
		pfree(sig.data);
	}
	for (s = 0; s < conf->nheaders; s++)
		append_header(req, conf->headers[s]);
	append_header(req, "Expect:");	/* no 100-continue round trip */

	start_easy(b, req, i, conf->url, conf->method, b->timeout_ms);
}

/*
 * release_request
 *		Take a request out of the multi handle and free its slot.
 */
static void
release_request(HttpBatch *b, HttpRequest *req)
{
	curl_multi_remove_handle(multi, req->easy);
	curl_slist_free_all(req->headers);
	req->headers = NULL;
	give_back_easy(req->easy);
	req->easy = NULL;
	req->index = -1;
	b->inflight--;
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
 * describe_status
 *		The error text of an HTTP response that is not a success.
 */
static char *
describe_status(HttpRequest *req, long status, int64 retry_after)
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
describe_failure(HttpRequest *req, CURLcode result, int64 timeout_ms)
{
	const char *curl_text = req->errbuf[0] != '\0' ? req->errbuf :
		curl_easy_strerror(result);
	StringInfoData buf;

	initStringInfo(&buf);
	if (req->guard.invalid_setting)
		appendStringInfoString(&buf, "outbox_saga.http_deny_networks is invalid: every address is refused");
	else if (req->guard.denied)
		appendStringInfo(&buf, "address %s is in outbox_saga.http_deny_networks",
						 req->guard.address);
	else if (req->guard.no_fd)
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
 * finish_request
 *		Record the outcome of a completed request and free its slot.
 */
static void
finish_request(HttpBatch *b, HttpRequest *req, CURLcode result)
{
	int			i = req->index;
	SinkOutcome *out = &b->outcomes[i];
	long		status = 0;

	(void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);

	out->error = NULL;
	out->not_before = 0;
	if (status > 0 && (result == CURLE_OK ||
					   (result == CURLE_WRITE_ERROR && req->resp_too_large)))
	{
		curl_off_t	retry_after = 0;

		if (status == 429 || status == 502 || status == 503 || status == 504)
		{
			if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK ||
				retry_after < 0)
				retry_after = 0;
		}

		if (status >= 200 && status < 300)
			out->status = SINK_OK;
		else if (status == 410)
			out->status = SINK_DEAD_AND_PAUSE;
		else
			out->status = SINK_RETRY;

		if (out->status != SINK_OK)
			out->error = describe_status(req, status, (int64) retry_after);
		if (retry_after > 0)
		{
			int64		ms = Min((int64) retry_after * 1000, b->dest->backoff_max_ms);

			out->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
		}
	}
	else
	{
		out->status = SINK_RETRY;
		out->error = describe_failure(req, result, b->timeout_ms);
	}

	/* Lanes, counters, when to stop. */
	if (out->status == SINK_OK)
	{
		b->ok++;
		SinkLaneSucceeded(&b->plan, i);
	}
	else
	{
		b->failed++;
		if (out->status == SINK_DEAD_AND_PAUSE)
			b->stop = true;
		if (b->ok == 0 && b->failed >= HTTP_FAILURES_BEFORE_STOP)
			b->stop = true;
	}
	release_request(b, req);
}

/*
 * start_call
 *		SinkHttpSend: put call 'i' (checked by SinkHttpCallProblem) in flight in a
 *		free slot.  Headers: Content-Type, Idempotency-Key, the call's.
 */
static void
start_call(HttpBatch *b, int i)
{
	const HttpCall *call = &b->calls[i];
	HttpRequest *req = NULL;
	int			s;
	StringInfoData line;

	for (s = 0; s < b->nslots; s++)
		if (b->slots[s].index < 0)
		{
			req = &b->slots[s];
			break;
		}
	if (req == NULL)
		elog(ERROR, "outbox_saga: no free request slot");

	req->headers = NULL;
	req->errbuf[0] = '\0';
	req->resp_len = 0;
	req->resp_total = 0;
	req->resp_too_large = false;
	req->keep_full = true;
	resetStringInfo(&req->full);
	resetStringInfo(&req->body);
	if (call->body != NULL)
		appendBinaryStringInfo(&req->body, call->body, call->body_len);

	initStringInfo(&line);
	append_header(req, "Content-Type: application/json");
	if (call->idempotency_key != NULL)
	{
		appendStringInfo(&line, "Idempotency-Key: %s", call->idempotency_key);
		append_header(req, line.data);
	}
	for (s = 0; s < call->nheaders; s++)
	{
		resetStringInfo(&line);
		appendStringInfo(&line, "%s: %s", call->header_names[s], call->header_values[s]);
		append_header(req, line.data);
	}
	append_header(req, "Expect:");	/* no 100-continue round trip */
	/* The lines may hold secrets (Authorization): overwrite them. */
	explicit_bzero(line.data, line.maxlen);
	pfree(line.data);

	b->results[i].sent = true;
	start_easy(b, req, i, call->url, call->method,
			   call->timeout_ms > 0 ? call->timeout_ms : OutboxHttpTimeout);
}

/*
 * finish_call
 *		SinkHttpSend: record what a completed call got and free its slot.
 */
static void
finish_call(HttpBatch *b, HttpRequest *req, CURLcode result)
{
	const HttpCall *call = &b->calls[req->index];
	HttpCallResult *res = &b->results[req->index];
	long		status = 0;

	(void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	res->error = NULL;
	if (status > 0 && (result == CURLE_OK ||
					   (result == CURLE_WRITE_ERROR && req->resp_too_large)))
	{
		res->status = status;
		if (req->resp_too_large)
		{
			res->body_too_large = true;
			res->error = psprintf("HTTP %ld: the response body is larger than %d bytes",
								  status, HTTP_CALL_MAX_BODY);
		}
		else
		{
			/* Hand the body over; the slot gets a new buffer. */
			res->body = req->full.data;
			res->body_len = req->full.len;
			initStringInfo(&req->full);
			if (status < 200 || status >= 300)
				res->error = describe_status(req, status, 0);
		}
	}
	else
	{
		res->status = 0;
		res->timed_out = (result == CURLE_OPERATION_TIMEDOUT);
		res->error = describe_failure(req, result,
									  call->timeout_ms > 0 ? call->timeout_ms : OutboxHttpTimeout);
	}
	release_request(b, req);
}

/* ------------------------------------------------------------------------
 * Sockets, timer, wait set
 * ------------------------------------------------------------------------
 */

/*
 * find_socket
 *		The index of 'fd' in the socket table, or socket_count.
 */
static int
find_socket(curl_socket_t fd)
{
	int			i;

	for (i = 0; i < socket_count; i++)
		if (sockets[i].fd == fd)
			break;
	return i;
}

/*
 * drop_socket
 *		Remove entry 'i' from the socket table.  If 'deregister', its fd is
 *		still open and in the wait set: the set must be rebuilt.
 */
static void
drop_socket(int i, bool deregister)
{
	if (deregister && sockets[i].pos >= 0)
		sockets_removed = true;
	sockets[i] = sockets[--socket_count];
}

/*
 * is_connection_fd
 *		Whether 'fd' is a connection socket that libcurl opened through
 *		HttpSocketOpened and has not closed yet.
 */
static bool
is_connection_fd(curl_socket_t fd)
{
	return fd >= 0 && fd < connection_fd_size && connection_fd[fd];
}

/*
 * HttpSocketOpened / HttpSocketClosed
 *		Called by http_guard.c's socket callbacks for every connection
 *		socket libcurl opens and closes.  A closed socket leaves the epoll
 *		set by itself, so its entry goes without a rebuild.  Inside libcurl:
 *		no errors.
 */
void
HttpSocketOpened(curl_socket_t fd)
{
	if (fd < 0)
		return;
	if (fd >= connection_fd_size)
	{
		int			size = Max(fd + 1, Max(1024, connection_fd_size * 2));
		bool	   *grown;

		grown = MemoryContextAllocExtended(http_cxt, sizeof(bool) * size,
										   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
		if (grown == NULL)
			return;				/* treated as not ours: safe, slower */
		if (connection_fd != NULL)
		{
			memcpy(grown, connection_fd, sizeof(bool) * connection_fd_size);
			pfree(connection_fd);
		}
		connection_fd = grown;
		connection_fd_size = size;
	}
	connection_fd[fd] = true;
}

void
HttpSocketClosed(curl_socket_t fd)
{
	int			i;

	if (is_connection_fd(fd))
		connection_fd[fd] = false;
	i = find_socket(fd);
	if (i < socket_count)
		drop_socket(i, false);
}

/*
 * socket_callback
 *		CURLMOPT_SOCKETFUNCTION: note what libcurl wants to hear about a
 *		socket.  A connection going back to libcurl's cache (REMOVE of an
 *		open connection socket) is parked: it stays in the wait set, asking
 *		only to hear of the peer closing, so that keep-alive traffic costs
 *		no rebuild of the set.  Runs inside libcurl: no errors, no palloc
 *		that can fail.
 */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp,
				void *socketp)
{
	int			i = find_socket(fd);

	if (what == CURL_POLL_REMOVE)
	{
		if (i == socket_count)
			return 0;
		if (is_connection_fd(fd))
		{
			sockets[i].parked = true;
			sockets[i].events = WL_SOCKET_CLOSED;
		}
		else
			drop_socket(i, true);
		return 0;
	}

	if (i == socket_count)
	{
		if (socket_count == socket_capacity)
		{
			int			capacity = Max(16, socket_capacity * 2);
			HttpSocket *grown;

			grown = MemoryContextAllocExtended(http_cxt, sizeof(HttpSocket) * capacity,
											   MCXT_ALLOC_NO_OOM);
			if (grown == NULL)
				return -1;
			if (sockets != NULL)
			{
				memcpy(grown, sockets, sizeof(HttpSocket) * socket_count);
				pfree(sockets);
			}
			sockets = grown;
			socket_capacity = capacity;
		}
		sockets[i].fd = fd;
		sockets[i].registered = 0;
		sockets[i].pos = -1;
		socket_count++;
	}
	sockets[i].parked = false;
	sockets[i].events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		sockets[i].events |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		sockets[i].events |= WL_SOCKET_WRITEABLE;
	return 0;
}

/*
 * timer_callback
 *		CURLMOPT_TIMERFUNCTION: when libcurl wants to be called with
 *		CURL_SOCKET_TIMEOUT (-1: never).
 */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_armed = false;
	else
	{
		timer_armed = true;
		timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

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
 * sync_wait_set
 *		Make 'set' (or a new one) watch MyLatch, postmaster death and the
 *		sockets libcurl wants, as they are now.
 */
static WaitEventSet *
sync_wait_set(WaitEventSet *set, int *capacity)
{
	int			i;
	int			unregistered = 0;

	for (i = 0; i < socket_count; i++)
		if (sockets[i].pos < 0)
			unregistered++;

	if (set == NULL || sockets_removed ||
		GetNumRegisteredWaitEvents(set) + unregistered > *capacity)
	{
		if (set != NULL)
			FreeWaitEventSet(set);
		*capacity = 2 + socket_count * 2 + 8;
		set = CreateWaitEventSet(CurrentMemoryContext, *capacity);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < socket_count; i++)
			sockets[i].pos = -1;
		sockets_removed = false;
	}

	for (i = 0; i < socket_count; i++)
	{
		HttpSocket *sock = &sockets[i];

		if (sock->pos < 0)
		{
			sock->pos = AddWaitEventToSet(set, sock->events, sock->fd, NULL,
										  (void *) (intptr_t) sock->fd);
			sock->registered = sock->events;
		}
		else if (sock->registered != sock->events)
		{
			ModifyWaitEvent(set, sock->pos, sock->events, NULL);
			sock->registered = sock->events;
		}
	}
	return set;
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
	socket_count = 0;
	sockets_removed = true;
	timer_armed = false;
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
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
}

/* ------------------------------------------------------------------------
 * deliver_batch
 * ------------------------------------------------------------------------
 */

/*
 * run_batch
 *		Start, wait, harvest, until nothing is in flight and nothing more
 *		may start.
 */
static void
run_batch(HttpBatch *b)
{
	WaitEvent  *occurred = NULL;
	int			occurred_size = 0;

	for (;;)
	{
		int			window;
		long		wait_ms;
		int			nevents;
		int			e;
		CURLMsg    *msg;
		int			pending;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();

		/* Start what may start. */
		now = GetCurrentTimestamp();
		if (now >= b->start_until)
			b->stop = true;
		window = (b->ok > 0 || b->calls != NULL) ? b->limit :
			Min(b->limit, HTTP_FAILURES_BEFORE_STOP - b->failed);
		while (!b->stop && b->inflight < window && SinkLaneHasReady(&b->plan))
		{
			if (b->calls != NULL)
				start_call(b, SinkLaneTakeReady(&b->plan));
			else
				start_request(b, SinkLaneTakeReady(&b->plan));
		}
		if (b->inflight == 0)
			break;

		/* Wait for a socket, the timer, the latch. */
		b->set = sync_wait_set(b->set, &b->set_capacity);
		if (occurred_size < b->set_capacity)
		{
			if (occurred != NULL)
				pfree(occurred);
			occurred_size = b->set_capacity;
			occurred = palloc(sizeof(WaitEvent) * occurred_size);
		}
		wait_ms = HTTP_MAX_WAIT_MS;
		if (timer_armed)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, timer_at, &secs, &usecs);
			wait_ms = Min(wait_ms, secs * 1000 + (usecs + 999) / 1000);
		}
		nevents = WaitEventSetWait(b->set, wait_ms, occurred, occurred_size,
								   PG_WAIT_EXTENSION);

		for (e = 0; e < nevents; e++)
		{
			WaitEvent  *ev = &occurred[e];

			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				b->latch_seen = true;
				CHECK_FOR_INTERRUPTS();
			}
			else if (ev->events & WL_SOCKET_MASK)
			{
				curl_socket_t fd = (curl_socket_t) (intptr_t) ev->user_data;
				int			s = find_socket(fd);
				int			mask = 0;

				if (s == socket_count)
					continue;	/* gone while handling an earlier event */
				if (sockets[s].parked)
				{
					/* The peer closed an idle connection: stop watching. */
					drop_socket(s, true);
					continue;
				}
				if (ev->events & WL_SOCKET_READABLE)
					mask |= CURL_CSELECT_IN;
				if (ev->events & WL_SOCKET_WRITEABLE)
					mask |= CURL_CSELECT_OUT;
				socket_action(fd, mask);
			}
		}
		if (timer_armed && GetCurrentTimestamp() >= timer_at)
		{
			timer_armed = false;
			socket_action(CURL_SOCKET_TIMEOUT, 0);
		}

		/* Harvest. */
		while ((msg = curl_multi_info_read(multi, &pending)) != NULL)
		{
			HttpRequest *req = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK ||
				req == NULL)
				elog(ERROR, "outbox_saga: a finished transfer has no request");
			if (b->calls != NULL)
				finish_call(b, req, msg->data.result);
			else
				finish_request(b, req, msg->data.result);
		}
	}
	if (occurred != NULL)
		pfree(occurred);
}

/*
 * run_batch_cleanly
 *		run_batch(), then free the batch's wait set and buffers; an error
 *		removes every request from the multi handle and drops every
 *		connection before it propagates.
 */
static void
run_batch_cleanly(HttpBatch *b)
{
	int			i;

	sockets_removed = true;		/* a new wait set for this batch */

	PG_TRY();
	{
		run_batch(b);
	}
	PG_CATCH();
	{
		int			s;

		for (s = 0; s < b->nslots; s++)
			if (b->slots[s].index >= 0)
				release_request(b, &b->slots[s]);
		if (b->set != NULL)
			FreeWaitEventSet(b->set);
		b->set = NULL;
		/* Start the next batch from a clean slate: no connection, no socket. */
		reset_multi();
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (b->set != NULL)
		FreeWaitEventSet(b->set);
	b->set = NULL;
	for (i = 0; i < b->nslots; i++)
	{
		pfree(b->slots[i].body.data);
		if (b->slots[i].keep_full)
			pfree(b->slots[i].full.data);
	}

	/* Hand a consumed wakeup back to the dispatcher's own wait. */
	if (b->latch_seen)
		SetLatch(MyLatch);
}

/*
 * http_deliver_batch
 *		Deliver events[0..n-1]; see sink.h and the file header.
 */
static void
http_deliver_batch(const DestinationConfig *dest, DispatchEvent *const *events,
				   const int *lanes, int n, SinkOutcome *outcomes)
{
	const HttpConfig *conf;
	HttpBatch	b;
	int			i;
	char	   *error;

	if (n == 0)
		return;

	ensure_http_cxt();
	http_curl_init();

	/* A config that no longer parses fails every event with its reason. */
	conf = SinkDestLookup(&http_cache, dest, &error);
	if (conf == NULL)
	{
		SinkOutcomesFailAll(outcomes, n, error);
		return;
	}

	if (HttpGuardRefresh())
		reset_multi();
	ensure_multi();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(64, 2 * OutboxMaxInflight));

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.conf = conf;
	b.events = events;
	b.outcomes = outcomes;
	b.n = n;
	b.limit = OutboxMaxInflight;
	if (conf->concurrency > 0)
		b.limit = Min(b.limit, conf->concurrency);
	b.limit = Max(1, Min(b.limit, n));
	b.timeout_ms = conf->has_timeout ? dest->timeout_ms : OutboxHttpTimeout;
	b.start_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), b.timeout_ms);
	SinkLanePlanInit(&b.plan, n);
	SinkLanePlanAddAll(&b.plan, lanes, n);
	b.nslots = b.limit;
	b.slots = palloc0(sizeof(HttpRequest) * b.nslots);
	for (i = 0; i < b.nslots; i++)
	{
		b.slots[i].index = -1;
		initStringInfo(&b.slots[i].body);
	}
	run_batch_cleanly(&b);
}

/* ------------------------------------------------------------------------
 * SinkHttpSend (saga steps of call kind "http")
 * ------------------------------------------------------------------------
 */

/*
 * check_header_value
 *		Whether a header value has no control character (no header
 *		injection) and a sane length.
 */
static bool
check_header_value(const char *value)
{
	size_t		len = strlen(value);
	size_t		i;

	if (len > HTTP_MAX_HEADER_VALUE)
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) value[i];

		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return false;
	}
	return true;
}

/*
 * SinkHttpCallProblem
 *		Why a call cannot be sent (a message that never shows a header
 *		value, the path or the query of the URL), or NULL.  The URL goes
 *		through HttpGuardCheckUrl (form, and a literal address in
 *		outbox_saga.http_deny_networks); an address a name resolves to is
 *		checked when the connection is made (http_guard.c).
 */
char *
SinkHttpCallProblem(const HttpCall *call)
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

	if (call->idempotency_key != NULL && !check_header_value(call->idempotency_key))
		return pstrdup("the idempotency key contains a control character");
	if (call->nheaders > HTTP_MAX_HEADERS)
		return psprintf("the http call has more than %d headers", HTTP_MAX_HEADERS);
	for (h = 0; h < call->nheaders; h++)
	{
		const char *name = call->header_names[h];
		int			len = strlen(name);
		int			i;

		if (len == 0 || len > HTTP_MAX_HEADER_NAME)
			return pstrdup("a header name of the http call is empty or too long");
		for (i = 0; i < len; i++)
			if (!is_token_char((unsigned char) name[i]))
				return psprintf("header name \"%s\" of the http call is not valid",
								clip_name(name, len));
		for (i = 0; reserved_headers[i] != NULL; i++)
			if (pg_strcasecmp(name, reserved_headers[i]) == 0)
				break;
		if (reserved_headers[i] != NULL ||
			(call->idempotency_key != NULL && pg_strcasecmp(name, "idempotency-key") == 0))
			return psprintf("header \"%s\" may not be set in an http call",
							clip_name(name, len));
		if (!check_header_value(call->header_values[h]))
			return psprintf("the value of header \"%s\" of the http call is too long or contains a control character",
							clip_name(name, len));
	}
	return NULL;
}

/*
 * SinkHttpSend
 *		See http.h.  The loop of the http destinations (run_batch), with
 *		every call independent: no lanes, no stop after failures, each call
 *		with its own timeout.  Nothing new starts once the longest timeout
 *		has passed (calls beyond outbox_saga.max_inflight wait for a slot).
 */
void
SinkHttpSend(const HttpCall *calls, int n, HttpCallResult *results)
{
	HttpBatch	b;
	int			i;
	int			nvalid = 0;
	int64		longest = 0;

	memset(results, 0, sizeof(HttpCallResult) * Max(n, 0));
	if (n <= 0)
		return;

	ensure_http_cxt();
	http_curl_init();

	memset(&b, 0, sizeof(b));
	b.calls = calls;
	b.results = results;
	b.n = n;
	SinkLanePlanInit(&b.plan, n);
	for (i = 0; i < n; i++)
	{
		int64		timeout = calls[i].timeout_ms > 0 ? calls[i].timeout_ms : OutboxHttpTimeout;

		results[i].error = SinkHttpCallProblem(&calls[i]);
		if (results[i].error != NULL)
		{
			results[i].invalid = true;
			continue;
		}
		SinkLanePlanAdd(&b.plan, i, -1);
		longest = Max(longest, timeout);
		nvalid++;
	}
	if (nvalid == 0)
		return;

	if (HttpGuardRefresh())
		reset_multi();
	ensure_multi();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(64, 2 * OutboxMaxInflight));

	b.limit = Max(1, Min(OutboxMaxInflight, nvalid));
	b.timeout_ms = longest;
	b.start_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), longest);
	b.nslots = b.limit;
	b.slots = palloc0(sizeof(HttpRequest) * b.nslots);
	for (i = 0; i < b.nslots; i++)
	{
		b.slots[i].index = -1;
		b.slots[i].keep_full = true;
		initStringInfo(&b.slots[i].body);
		initStringInfo(&b.slots[i].full);
	}

	run_batch_cleanly(&b);

	for (i = 0; i < n; i++)
		if (!results[i].invalid && !results[i].sent)
			results[i].error = pstrdup("not sent: the other requests of the batch took the whole time");
}

const OutboxSink SinkHttp = {
	.kind = "http",
	.keys = http_keys,
	.validate = http_validate,
	.deliver_batch = http_deliver_batch,
	.forget = http_forget,
};

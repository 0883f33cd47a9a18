/*-------------------------------------------------------------------------
 *
 * http.c
 *		Destination kind "http": webhooks, many requests in flight through
 *		the process's HTTP client (http/http_client.c).
 *
 * CONFIG
 *	{"url": "https://...", "method": "POST"|"PUT"|"PATCH", "headers": {...},
 *	 "secret": "whsec_..." | ["whsec_...", ...], "concurrency": 1..1000}
 *	plus the common keys; "timeout" is the per-attempt timeout (default:
 *	outbox_saga.http_timeout).  validate() checks everything with SQLSTATE
 *	22023 and never quotes a header value, a secret or the URL (the URL's
 *	form and literal address: http_guard.c).
 *
 * WIRE FORMAT (SPEC 3.2, Standard Webhooks)
 *	Body: {"id": event_id, "type": event_type, "topic": ..., "aggregate_id":
 *	..., "timestamp": created_at in ISO 8601 UTC, "data": payload,
 *	"headers": the event's headers}.  HTTP headers: content-type
 *	application/json, webhook-id (the event_id, the same on every attempt),
 *	webhook-timestamp (Unix seconds of the attempt), webhook-signature
 *	(http_sign.c) when a secret is set, the config's "headers", and the
 *	event's W3C trace context, traceparent and tracestate (valid ones only:
 *	dispatch/delivery.c drops invalid ones; base/trace_context.c), which
 *	then replaces a traceparent or tracestate of the config's headers (an
 *	invalid one of those is never sent).
 *	Redirects are never followed; proxies are never used (http_client.c).
 *
 * OUTCOMES
 *	2xx delivered; 410 dead letter and pause; 429, 502, 503, 504 retried no
 *	earlier than their Retry-After (seconds or HTTP date, at most
 *	backoff_max), reported as the outcome's not_before, which delivery.c
 *	also makes the whole destination's retry_at (the endpoint asked for a
 *	pause, not for one event); 3xx, other statuses, network errors, refused
 *	addresses and timeouts retried.  The error text is the status and at most 200
 *	bytes of the response body (and the Location of a redirect), or
 *	libcurl's message (which may name the host and port) - never a secret,
 *	a request header, or the path or query of the URL.
 *
 * A BATCH (deliver_batch, outside any transaction)
 *	HttpClientRun waits on the sockets, MyLatch and postmaster death
 *	together (CHECK_FOR_INTERRUPTS on every wakeup) and hands a consumed
 *	latch wakeup back when it returns.  Requests in flight: at most
 *	min(outbox_saga.max_inflight, concurrency), but until one request of
 *	the batch has succeeded, at most HTTP_FAILURES_BEFORE_STOP attempts in
 *	all (an unreachable receiver costs three attempts per batch, not a
 *	batch of failures).  Nothing new starts after a 410 or once the batch
 *	has run for the per-attempt timeout, so a batch returns within twice
 *	the timeout.  Nothing new starts either after a 429 or an answer with
 *	a Retry-After: the endpoint asked not to be sent anything for a while
 *	(requests already in flight cannot be recalled).  Lanes (sink.h): one request in flight per lane, the next
 *	one started when it succeeded, the rest of the lane skipped when it did
 *	not.  An event that never started is SINK_SKIPPED; on a crash, nothing
 *	of the batch is recorded and the dispatcher sends it again (same
 *	webhook-id).
 *
 * MEMORY: per-batch data in the caller's context; parsed configs (secrets
 *	included, overwritten before they are freed) in their dest_cache.c
 *	entry.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <time.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/trace_context.h"
#include "http/http_client.h"
#include "http/http_guard.h"
#include "sink/dest_cache.h"
#include "sink/dest_config.h"
#include "sink/http_sign.h"
#include "sink/lane_plan.h"
#include "sink/sink.h"

/* Limits of the config keys. */
#define HTTP_MAX_SECRETS			10
#define HTTP_MAX_CONCURRENCY		1000

/*
 * Until a request of the batch succeeds, at most this many are attempted
 * (and in flight): an unreachable receiver costs a few attempts per batch.
 */
#define HTTP_FAILURES_BEFORE_STOP	3

static const char *const http_keys[] = {
	"url", "method", "headers", "secret", "concurrency", NULL
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

/* The state of one deliver_batch() call, as the client's callbacks see it. */
typedef struct WebhookBatch
{
	const DestinationConfig *dest;
	const HttpConfig *conf;
	DispatchEvent *const *events;
	SinkOutcome *outcomes;
	SinkLanePlan plan;			/* which events may start */
	int			limit;			/* in flight at most */
	int64		timeout_ms;
	int			ok;
	int			failed;
	bool		stop;			/* start nothing more */
} WebhookBatch;

/* ------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------
 */

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
	HttpHeaderCheck check;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		DestConfigError("configuration key \"headers\" must be an object of strings",
						NULL);

	out->headers = palloc0(sizeof(char *) * HTTP_MAX_HEADERS);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = item.val.string.val;
			name_len = item.val.string.len;
			check = HttpClientCheckHeaderName(name, name_len);
			if (check == HTTP_HEADER_BAD_LENGTH)
				DestConfigError("a header name in configuration key \"headers\" is empty or too long",
								NULL);
			if (check == HTTP_HEADER_BAD_CHAR)
				DestConfigError(psprintf("header name \"%s\" in configuration key \"headers\" is not valid",
										 DestConfigClipName(name, name_len)),
								"A header name consists of letters, digits and !#$%&'*+-.^_`|~.");
			if (check == HTTP_HEADER_RESERVED ||
				(name_len >= 8 && pg_strncasecmp(name, "webhook-", 8) == 0))
				DestConfigError(psprintf("header \"%s\" may not be set in configuration key \"headers\"",
										 DestConfigClipName(name, name_len)),
								"Content-Type, webhook-* and the headers that frame the request are set by outbox_saga.");
		}
		else if (tok == WJB_VALUE)
		{
			if (item.type != jbvString)
				DestConfigError(psprintf("the value of header \"%s\" in configuration key \"headers\" must be a string",
										 DestConfigClipName(name, name_len)),
								NULL);
			check = HttpClientCheckHeaderValue(item.val.string.val,
											   item.val.string.len);
			if (check == HTTP_HEADER_BAD_LENGTH)
				DestConfigError(psprintf("the value of header \"%s\" in configuration key \"headers\" is too long",
										 DestConfigClipName(name, name_len)),
								psprintf("A header value has at most %d bytes.",
										 HTTP_MAX_HEADER_VALUE));
			if (check != HTTP_HEADER_OK)
				DestConfigError(psprintf("the value of header \"%s\" in configuration key \"headers\" contains a control character",
										 DestConfigClipName(name, name_len)),
								NULL);
			if (out->nheaders >= HTTP_MAX_HEADERS)
				DestConfigError("configuration key \"headers\" has too many headers",
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
			DestConfigError("configuration key \"secret\" is not a valid webhook secret",
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
				DestConfigError("configuration key \"secret\" must be a string or an array of strings",
								NULL);
			if (out->nsecrets >= HTTP_MAX_SECRETS)
				DestConfigError("configuration key \"secret\" has too many secrets",
								psprintf("At most %d secrets may sign at once.", HTTP_MAX_SECRETS));
			why = HttpSignDecodeSecret(item.val.string.val, item.val.string.len,
									   CurrentMemoryContext,
									   &out->secrets[out->nsecrets]);
			if (why != NULL)
				DestConfigError("configuration key \"secret\" is not a valid webhook secret",
								psprintf("Secret %d of the array is not \"whsec_\" followed by base64: %s.",
									  out->nsecrets + 1, why));
			out->nsecrets++;
		}
		if (out->nsecrets == 0)
			DestConfigError("configuration key \"secret\" must not be an empty array",
							NULL);
		return;
	}
	DestConfigError("configuration key \"secret\" must be a string or an array of strings",
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
		DestConfigError("configuration key \"concurrency\" must be an integer", NULL);
	text = DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(v->val.numeric)));
	errno = 0;
	value = strtol(text, &end, 10);
	if (*end == '.')
		for (end++; *end == '0'; end++)
			;
	if (*end != '\0' || end == text)
		DestConfigError("configuration key \"concurrency\" must be an integer", NULL);
	if (errno != 0 || value < 1 || value > HTTP_MAX_CONCURRENCY)
		DestConfigError("configuration key \"concurrency\" is out of range",
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

	if (!DestConfigFind(config, "url", &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an http destination needs the config key \"url\""),
				 errhint("For example '{\"url\": \"https://example.com/webhooks\"}'.")));
	if (v.type != jbvString)
		DestConfigError("configuration key \"url\" must be a string", NULL);
	out->url = pnstrdup(v.val.string.val, v.val.string.len);
	if (strlen(out->url) != v.val.string.len)
		DestConfigError("configuration key \"url\" is not a valid webhook URL", NULL);
	HttpGuardCheckUrl(out->url);

	out->method = "POST";
	if (DestConfigFind(config, "method", &v))
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
			DestConfigError("configuration key \"method\" must be \"POST\", \"PUT\" or \"PATCH\"",
							NULL);
	}

	if (DestConfigFind(config, "headers", &v))
		parse_headers(&v, out);
	if (DestConfigFind(config, "secret", &v))
		parse_secrets(&v, out);
	if (DestConfigFind(config, "concurrency", &v))
		out->concurrency = parse_concurrency(&v);
	out->has_timeout = DestConfigFind(config, "timeout", &v);
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

	HttpClientInit();
	parse_config(config, &parsed);
	free_secrets(&parsed);
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
 * webhook_next
 *		Client callback: the next event that may start.  Until one request
 *		of the batch has succeeded, at most HTTP_FAILURES_BEFORE_STOP
 *		attempts in all; nothing after a stop; lanes one at a time.
 */
static int
webhook_next(void *arg, int inflight)
{
	WebhookBatch *b = (WebhookBatch *) arg;
	int			window;

	if (b->stop)
		return -1;
	window = b->ok > 0 ? b->limit :
		Min(b->limit, HTTP_FAILURES_BEFORE_STOP - b->failed);
	if (inflight >= window || !SinkLaneHasReady(&b->plan))
		return -1;
	return SinkLaneTakeReady(&b->plan);
}

/*
 * config_header_sent
 *		Is the config's header 'line' ("Name: value") sent?  A traceparent
 *		or tracestate is not when the event has a trace context (which
 *		replaces it), nor when its value is invalid.
 */
static bool
config_header_sent(const char *line, bool event_has_trace)
{
	const char *value;

	if (pg_strncasecmp(line, TRACE_PARENT_KEY ": ", strlen(TRACE_PARENT_KEY) + 2) == 0)
	{
		value = line + strlen(TRACE_PARENT_KEY) + 2;
		return !event_has_trace && TraceParentInvalid(value, strlen(value)) == NULL;
	}
	if (pg_strncasecmp(line, TRACE_STATE_KEY ": ", strlen(TRACE_STATE_KEY) + 2) == 0)
	{
		value = line + strlen(TRACE_STATE_KEY) + 2;
		return !event_has_trace && TraceStateInvalid(value, strlen(value)) == NULL;
	}
	return true;
}

/*
 * webhook_start
 *		Client callback: the request of event 'i': body, webhook headers
 *		(and signature), the config's headers (the client adds Content-Type
 *		before them).
 */
static void
webhook_start(void *arg, int i, HttpClientRequest *req)
{
	WebhookBatch *b = (WebhookBatch *) arg;
	const HttpConfig *conf = b->conf;
	const DispatchEvent *ev = b->events[i];
	StringInfo	body = HttpClientBody(req);
	char		event_id[SINK_UUID_TEXT_LEN];
	char		line[128];
	int64		now = (int64) time(NULL);
	int			h;
	bool		has_trace;
	char	   *traceparent;
	char	   *tracestate;

	SinkFormatUuid(&ev->event_id, event_id);
	build_body(ev, event_id, body);

	snprintf(line, sizeof(line), "webhook-id: %s", event_id);
	HttpClientAddHeader(req, line);
	snprintf(line, sizeof(line), "webhook-timestamp: " INT64_FORMAT, now);
	HttpClientAddHeader(req, line);
	if (conf->nsecrets > 0)
	{
		StringInfoData sig;

		initStringInfo(&sig);
		appendStringInfoString(&sig, "webhook-signature: ");
		HttpSignPayload(conf->secrets, conf->nsecrets, event_id, now,
						body->data, body->len, &sig);
		HttpClientAddHeader(req, sig.data);
		pfree(sig.data);
	}
	has_trace = TraceGet(ev->headers, &traceparent, &tracestate);
	for (h = 0; h < conf->nheaders; h++)
	{
		if (!config_header_sent(conf->headers[h], has_trace))
			continue;
		HttpClientAddHeader(req, conf->headers[h]);
	}
	if (has_trace)
	{
		HttpClientAddHeader(req, psprintf(TRACE_PARENT_KEY ": %s", traceparent));
		if (tracestate != NULL)
			HttpClientAddHeader(req, psprintf(TRACE_STATE_KEY ": %s", tracestate));
	}

	HttpClientSetTarget(req, conf->url, conf->method, b->timeout_ms);
}

/*
 * webhook_finish
 *		Client callback: the outcome of event 'i' (see OUTCOMES), then
 *		lanes, counters, when to stop.
 */
static void
webhook_finish(void *arg, int i, HttpClientRequest *req,
			   const HttpClientOutcome *outcome)
{
	WebhookBatch *b = (WebhookBatch *) arg;
	SinkOutcome *out = &b->outcomes[i];
	long		status = outcome->status;

	out->error = NULL;
	out->not_before = 0;
	if (status > 0)
	{
		if (status >= 200 && status < 300)
			out->status = SINK_OK;
		else if (status == 410)
			out->status = SINK_DEAD_AND_PAUSE;
		else
			out->status = SINK_RETRY;

		if (out->status != SINK_OK)
			out->error = HttpClientDescribeStatus(req, status, outcome->retry_after);
		if (outcome->retry_after > 0)
		{
			int64		ms = Min(outcome->retry_after * 1000, b->dest->backoff_max_ms);

			out->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
		}
	}
	else
	{
		out->status = SINK_RETRY;
		out->error = outcome->failure;
	}

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
		/* The endpoint asked for a pause: nothing more in this batch. */
		if (status == 429 || out->not_before != 0)
			b->stop = true;
		if (b->ok == 0 && b->failed >= HTTP_FAILURES_BEFORE_STOP)
			b->stop = true;
	}
}

static const HttpClientBatch webhook_batch = {
	.keep_bodies = false,
	.next = webhook_next,
	.start = webhook_start,
	.finish = webhook_finish,
};

/* ------------------------------------------------------------------------
 * deliver_batch
 * ------------------------------------------------------------------------
 */

/*
 * http_deliver_batch
 *		Deliver events[0..n-1]; see sink.h and the file header.
 */
static void
http_deliver_batch(const DestinationConfig *dest, DispatchEvent *const *events,
				   const int *lanes, int n, SinkOutcome *outcomes)
{
	const HttpConfig *conf;
	WebhookBatch b;
	char	   *error;

	if (n == 0)
		return;

	HttpClientInit();

	/* A config that no longer parses fails every event with its reason. */
	conf = SinkDestLookup(&http_cache, dest, &error);
	if (conf == NULL)
	{
		SinkOutcomesFailAll(outcomes, n, error);
		return;
	}

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.conf = conf;
	b.events = events;
	b.outcomes = outcomes;
	b.limit = OutboxMaxInflight;
	if (conf->concurrency > 0)
		b.limit = Min(b.limit, conf->concurrency);
	b.limit = Max(1, Min(b.limit, n));
	b.timeout_ms = conf->has_timeout ? dest->timeout_ms : OutboxHttpTimeout;
	SinkLanePlanInit(&b.plan, n);
	SinkLanePlanAddAll(&b.plan, lanes, n);

	HttpClientRun(&webhook_batch, &b, b.limit,
				  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), b.timeout_ms));
}

const OutboxSink SinkHttp = {
	.kind = "http",
	.keys = http_keys,
	.validate = http_validate,
	.deliver_batch = http_deliver_batch,
	.forget = http_forget,
};

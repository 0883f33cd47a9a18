/*-------------------------------------------------------------------------
 *
 * saga_http.c
 *		http steps: read what to send when a run is claimed, send all the
 *		claimed http runs of a round at once between two rounds, and turn
 *		each answer into the run's outcome.
 *
 * CALLS
 *	An http step is a request through the http destinations' machinery
 *	(HttpClientSend in http/http_client.c: the libcurl multi loop waiting on the
 *	latch and the sockets, connection reuse, outbox_saga.http_deny_networks
 *	on the resolved address), all the http runs of a round at once, between
 *	two rounds (TRANSACTIONS in saga_driver.c).  Method and headers from the
 *	call; body ctx (application/json, whatever the method); Idempotency-Key:
 *	the ctx's idempotency_key (a call may not set it itself); traceparent
 *	and tracestate: the saga's trace context (the one of the transaction
 *	that started it, if valid; it replaces the call's own), also in the
 *	ctx; timeout: the
 *	step's, for the whole request; redirects are not followed.  2xx
 *	succeeds: the body is the result - jsonb if it is JSON, else a JSON
 *	string (an empty body: null; at most 1 MB, a larger body is a failed
 *	attempt).  4xx other than 408, 409, 425, 429 fails the run for good, no
 *	retry (the saga compensates; a compensation gives up); so does a call
 *	that cannot be sent (bad header, refused URL form).  Anything else -
 *	other statuses, timeouts, network errors, refused addresses - is a
 *	failed attempt, retried with the step's backoff (Retry-After is not
 *	used).  Errors carry the status and the start of the body, or libcurl's
 *	message; never a header value, the path or the query of the URL.
 *
 * INVARIANTS
 *	SagaHttpPrepare runs in the claiming round's transaction; SagaHttpSend
 *	runs with no transaction open, after that round committed and flushed
 *	its claims (TRANSACTIONS in saga_driver.c), so a request is never sent
 *	for a run that is not durably 'running'.  The outcome is recorded by
 *	the next round (SagaRunStep asks SagaHttpOutcome), under the saga's row
 *	lock.  The lists live in process memory, in the driver's two list
 *	contexts: a crash loses them, and the runs, still 'running', are
 *	recovered and sent again with the same Idempotency-Key (at least once).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "base/jsonb_util.h"
#include "base/spi_util.h"
#include "base/trace_context.h"
#include "http/http_client.h"
#include "saga/saga.h"

/*
 * Claimed http runs: what to send (read in the round that claimed them),
 * and once sent (between that round and the next, no transaction open)
 * what came back.  'http_runs' belong to the claimed list (in
 * claimed_cxt), 'next_http_runs' to the next list (in next_cxt); they are
 * swapped with the lists.
 */
typedef struct HttpRun
{
	pg_uuid_t	saga_id;
	char	   *step;
	char	   *phase;
	HttpCall	call;
	bool		sent;			/* res is the outcome */
	HttpCallResult res;
} HttpRun;

static HttpRun *http_runs = NULL;
static int	nhttp_runs = 0;
static HttpRun *next_http_runs = NULL;
static int	next_nhttp_runs = 0;
static int	next_http_capacity = 0;


/*
 * SagaHttpResetNext
 *		The next list has no http runs (its context was just reset).
 */
void
SagaHttpResetNext(void)
{
	next_http_runs = NULL;
	next_nhttp_runs = 0;
	next_http_capacity = 0;
}

/*
 * SagaHttpSwap
 *		After a commit: the next list's http runs become the claimed list's.
 */
void
SagaHttpSwap(void)
{
	http_runs = next_http_runs;
	nhttp_runs = next_nhttp_runs;
}

/*
 * find_http_run
 *		The http run of the claimed list for this run, or NULL.
 */
static HttpRun *
find_http_run(const SagaStepRun *run)
{
	int			i;

	for (i = 0; i < nhttp_runs; i++)
	{
		HttpRun    *h = &http_runs[i];

		if (memcmp(&h->saga_id, &run->saga_id, sizeof(pg_uuid_t)) == 0 &&
			strcmp(h->step, run->step) == 0 && strcmp(h->phase, run->phase) == 0)
			return h;
	}
	return NULL;
}

typedef struct JsonParse
{
	const char *text;
	Jsonb	   *result;
} JsonParse;

/* jsonb_in of a response body, run in a subtransaction by http_result. */
static void
parse_json_body(void *arg)
{
	JsonParse  *parse = arg;

	parse->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													   CStringGetDatum(parse->text)));
}

/*
 * http_result
 *		The result of a 2xx answer: its body as jsonb if it is JSON (parsed
 *		in a subtransaction, so that a bad body is no error), else the body
 *		as a JSON string (bytes that are not valid in the database encoding
 *		become '?'); NULL for an empty body.
 */
static Jsonb *
http_result(const char *body, int len)
{
	StringInfoData buf;
	JsonbValue	v;
	int			enc = GetDatabaseEncoding();
	int			i;

	if (body == NULL || len == 0)
		return NULL;
	if ((int) strlen(body) == len)
	{
		JsonParse	parse = {body, NULL};

		if (SpiTryInSubtransaction(parse_json_body, &parse, NULL))
			return parse.result;
	}

	initStringInfo(&buf);
	for (i = 0; i < len;)
	{
		int			l = pg_encoding_verifymbchar(enc, body + i, len - i);

		if (l <= 0)
		{
			appendStringInfoChar(&buf, '?');
			i++;
		}
		else
		{
			appendBinaryStringInfo(&buf, body + i, l);
			i += l;
		}
	}
	v.type = jbvString;
	v.val.string.val = buf.data;
	v.val.string.len = buf.len;
	return JsonbValueToJsonb(&v);
}

/*
 * http_outcome
 *		The outcome of a sent http run (SPEC 3.5): 2xx succeeded with the
 *		body as result; 4xx other than 408, 409, 425 and 429 - and a call
 *		that cannot be sent at all - failed for good, not retried; a
 *		timeout, a network error, a refused address and any other status
 *		are a failed attempt, retried with the step's backoff.
 */
static void
http_outcome(const HttpRun *h, SagaOutcome *out)
{
	const HttpCallResult *res = &h->res;
	long		status = res->status;

	if (res->invalid)
	{
		out->kind = SAGA_ABORT;
		out->error = psprintf("22023: %s (not retried)", res->error);
	}
	else if (status >= 200 && status < 300 && !res->body_too_large)
	{
		out->kind = SAGA_OK;
		out->result = http_result(res->body, res->body_len);
	}
	else if (status >= 400 && status < 500 &&
			 status != 408 && status != 409 && status != 425 && status != 429)
	{
		out->kind = SAGA_ABORT;
		out->error = psprintf("%s (a client error: not retried)", res->error);
	}
	else
	{
		out->kind = res->timed_out ? SAGA_TIMEOUT : SAGA_FAIL;
		out->error = pstrdup(res->error != NULL ? res->error : "the request was not sent");
	}
}


/*
 * SagaHttpOutcome
 *		If 'run' is an http run that was sent, its outcome in *out; false if
 *		it was not sent.
 */
bool
SagaHttpOutcome(const SagaStepRun *run, SagaOutcome *out)
{
	HttpRun    *h = find_http_run(run);

	if (h == NULL || !h->sent)
		return false;
	http_outcome(h, out);
	return true;
}

/*
 * next_http_slot
 *		A new, zeroed entry of the next list's http runs.
 */
static HttpRun *
next_http_slot(MemoryContext next_cxt)
{
	HttpRun    *h;

	if (next_nhttp_runs == next_http_capacity)
	{
		int			capacity = Max(16, next_http_capacity * 2);
		HttpRun    *grown = MemoryContextAllocZero(next_cxt, sizeof(HttpRun) * capacity);

		if (next_nhttp_runs > 0)
			memcpy(grown, next_http_runs, sizeof(HttpRun) * next_nhttp_runs);
		next_http_runs = grown;
		next_http_capacity = capacity;
	}
	h = &next_http_runs[next_nhttp_runs++];
	memset(h, 0, sizeof(HttpRun));
	return h;
}

static char *
copy_or_null(const char *text, int len)
{
	if (text == NULL)
		return NULL;
	return pnstrdup(text, len);
}

/*
 * SagaHttpCarry
 *		The http runs of the sagas 'ids' (still claimed, not recorded yet)
 *		go from the claimed list to the next list (copied into next_cxt).
 */
void
SagaHttpCarry(const pg_uuid_t *ids, int n, MemoryContext next_cxt)
{
	MemoryContext old;
	int			i;
	int			j;

	if (nhttp_runs == 0 || n == 0)
		return;
	old = MemoryContextSwitchTo(next_cxt);
	for (i = 0; i < nhttp_runs; i++)
	{
		const HttpRun *src = &http_runs[i];
		HttpRun    *dst;
		char	  **names;
		char	  **values;
		int			k;

		for (j = 0; j < n; j++)
			if (memcmp(&ids[j], &src->saga_id, sizeof(pg_uuid_t)) == 0)
				break;
		if (j == n)
			continue;
		dst = next_http_slot(next_cxt);
		*dst = *src;
		dst->step = pstrdup(src->step);
		dst->phase = pstrdup(src->phase);
		dst->call.url = copy_or_null(src->call.url, src->call.url ? strlen(src->call.url) : 0);
		dst->call.method = copy_or_null(src->call.method, src->call.method ? strlen(src->call.method) : 0);
		dst->call.idempotency_key = copy_or_null(src->call.idempotency_key,
												 src->call.idempotency_key ? strlen(src->call.idempotency_key) : 0);
		dst->call.body = copy_or_null(src->call.body, src->call.body_len);
		names = palloc(sizeof(char *) * (src->call.nheaders + 1));
		values = palloc(sizeof(char *) * (src->call.nheaders + 1));
		for (k = 0; k < src->call.nheaders; k++)
		{
			names[k] = pstrdup(src->call.header_names[k]);
			values[k] = pstrdup(src->call.header_values[k]);
		}
		dst->call.header_names = (const char *const *) names;
		dst->call.header_values = (const char *const *) values;
		dst->res.body = copy_or_null(src->res.body, src->res.body_len);
		dst->res.error = copy_or_null(src->res.error, src->res.error ? strlen(src->res.error) : 0);
	}
	MemoryContextSwitchTo(old);
}

/*
 * SagaHttpPrepare
 *		Read what to send for the http runs among the sagas 'ids' just
 *		claimed, in the claiming transaction, into the next list (in
 *		next_cxt).
 */
void
SagaHttpPrepare(const pg_uuid_t *ids, int n, MemoryContext next_cxt)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	MemoryContext old;

	if (n <= 0)
		return;
	values[0] = SagaUuidArray(ids, n);
	(void) SagaRun(SAGA_Q_HTTP_CALLS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	old = MemoryContextSwitchTo(next_cxt);
	for (i = 0; i < nrows; i++)
	{
		HttpRun    *h = next_http_slot(next_cxt);
		bool		isnull;
		Datum		d;
		char	  **names = NULL;
		char	  **hvalues = NULL;
		int			nheaders = 0;
		Jsonb	   *trace;
		Jsonb	   *headers;
		Jsonb	   *ctx;

		SagaColumnUuid(rows, i, 1, &h->saga_id);
		h->step = SagaColumnText(rows, i, 2);
		h->phase = SagaColumnText(rows, i, 3);
		h->call.url = SagaColumnText(rows, i, 4);
		h->call.method = SagaColumnText(rows, i, 5);
		/* The saga's trace context, if valid: in ctx and as headers. */
		d = SagaColumn(rows, i, 10, &isnull);
		trace = isnull ? NULL : TraceSanitize(DatumGetJsonbPCopy(d));
		/* Every header (HttpClientSend refuses too many). */
		d = SagaColumn(rows, i, 6, &isnull);
		headers = isnull ? NULL : TraceSanitize(DatumGetJsonbP(d));
		headers = TraceMerge(headers, trace, true);
		if (headers != NULL)
			nheaders = JsonbObjectStrings(headers, &names, &hvalues);
		h->call.nheaders = nheaders;
		h->call.header_names = (const char *const *) names;
		h->call.header_values = (const char *const *) hvalues;
		d = SagaColumn(rows, i, 7, &isnull);
		h->call.timeout_ms = isnull ? 0 : DatumGetInt64(d);
		h->call.idempotency_key = SagaColumnText(rows, i, 8);
		ctx = TraceMerge(DatumGetJsonbP(SagaColumn(rows, i, 9, &isnull)), trace, true);
		h->call.body = JsonbToCString(NULL, &ctx->root, VARSIZE(ctx));
		h->call.body_len = strlen(h->call.body);
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(rows);
}

/*
 * SagaHttpSend
 *		Send the claimed http runs not sent yet, with no transaction open
 *		(after the round that claimed them committed and flushed).  An error
 *		of the sending machinery itself is every such run's failed attempt.
 */
void
SagaHttpSend(MemoryContext claimed_cxt)
{
	MemoryContext old;
	HttpCall   *calls;
	HttpCallResult *results;
	int		   *which;
	int			n = 0;
	int			i;

	Assert(!IsTransactionState());
	for (i = 0; i < nhttp_runs; i++)
		if (!http_runs[i].sent)
			n++;
	if (n == 0)
		return;

	/* Results (and scratch) live with the claimed list. */
	old = MemoryContextSwitchTo(claimed_cxt);
	calls = palloc(sizeof(HttpCall) * n);
	results = palloc0(sizeof(HttpCallResult) * n);
	which = palloc(sizeof(int) * n);
	n = 0;
	for (i = 0; i < nhttp_runs; i++)
		if (!http_runs[i].sent)
		{
			which[n] = i;
			calls[n++] = http_runs[i].call;
		}
	PG_TRY();
	{
		HttpClientSend(calls, n, results);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(claimed_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		for (i = 0; i < n; i++)
		{
			memset(&results[i], 0, sizeof(HttpCallResult));
			results[i].error = psprintf("could not send the request: %s", edata->message);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(claimed_cxt);
	for (i = 0; i < n; i++)
	{
		http_runs[which[i]].res = results[i];
		http_runs[which[i]].sent = true;
	}
	MemoryContextSwitchTo(old);
}

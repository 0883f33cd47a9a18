/*-------------------------------------------------------------------------
 *
 * saga_call.c
 *		Running one claimed step run: function and emit calls, and the
 *		choice of what a run's attempt does (SagaRunStep).
 *
 * CALLS
 *	The ctx passed to a call is {saga_id, definition, step, phase, attempt,
 *	idempotency_key, input, results}, plus traceparent and tracestate when
 *	the saga was started with a trace context (outbox_saga.traceparent, set
 *	in the transaction that called saga.start; kept in saga.instance.trace
 *	and checked again before use: saga_driver.c, TraceSanitize);
 *	idempotency_key is
 *	saga_id:step:phase, the same for every attempt and after a crash (both
 *	built by the statements in saga_state.c).
 *	  function  fn(ctx) in a subtransaction (RunAsOwner), with the saga's
 *				trace context as outbox_saga.traceparent/.tracestate (so
 *				what it emits or captures carries it); its result is
 *				stored.  An error is a failed attempt; overrunning the
 *				step's timeout (RunAsOwner's hard timeout: interrupted
 *				until it returns, rolled back even if it returns) is a
 *				timed-out one (SAGA_TIMEOUT).
 *	  emit		an event (OutboxAppendEvent) in the round's transaction:
 *				payload ctx, aggregate_id the saga, headers saga_id,
 *				saga_step, saga_phase, idempotency_key and the saga's
 *				trace context (replacing the call's own); it exists iff the
 *				outcome is recorded.  Result {"event_id": ...}; with await the
 *				run waits for saga.complete_step until timeout_at, and a
 *				timeout is a failed attempt (the command is emitted again).
 *				The step's owner needs EXECUTE on outbox.emit and the write
 *				privilege on the topic (topic_acl.c), checked at every run.
 *	  http		sent before the round that records it (saga_http.c).
 *
 * INVARIANTS
 *	SagaRunStep runs in the driver's round transaction, with the saga's
 *	instance row lock held (SAGA_Q_LOCK_CLAIMED) and the run committed as
 *	'running' by an earlier round.  A call runs as the definition's owner
 *	through RunAsOwner (SECURITY_RESTRICTED_OPERATION, the definition's
 *	search_path with pg_temp last,
 *	the step's timeout as a hard timeout) in a subtransaction: its error
 *	rolls back its effects and becomes the attempt's error text.  A crash
 *	rolls back the whole round; the run stays 'running' and is recovered
 *	(CRASH in saga_driver.c).
 *
 *	Step functions are resolved once per process by owner and name, and
 *	forgotten on any change to pg_proc (a function dropped, replaced,
 *	EXECUTE revoked).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "base/run_as.h"
#include "base/trace_context.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"
#include "saga/saga.h"

/* Resolved step functions, by owner and name; forgotten on pg_proc changes. */
typedef struct StepFunctionKey
{
	Oid			owner;
	char		name[2 * NAMEDATALEN + 8];
} StepFunctionKey;

typedef struct StepFunction
{
	StepFunctionKey key;
	Oid			fn;
	FmgrInfo	flinfo;
} StepFunction;

static HTAB *step_functions = NULL;
static MemoryContext step_function_cxt = NULL;
static bool step_functions_valid = false;
static bool step_function_callback = false;


/* ------------------------------------------------------------------------
 * Step functions
 * ------------------------------------------------------------------------
 */

/*
 * SagaLookupFunction
 *		The function 'name' (schema-qualified) taking jsonb and returning
 *		jsonb that 'owner' may execute; errors say what is wrong.  'where'
 *		names the call in saga.define's errors ("the action of step \"x\"");
 *		NULL when a step runs (the definition was checked when it was
 *		defined, but the function may have changed since).
 */
Oid
SagaLookupFunction(const char *name, Oid owner, const char *where)
{
	Oid			argtype = JSONBOID;
	Oid			fn;
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		usable;
	const char *named_in = where ? psprintf(" named in %s", where) : "";

	fn = LookupFuncName(CompatStringToQualifiedNameList(name), 1, &argtype, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(jsonb)%s does not exist", name, named_in),
				 where ? errhint("A step function takes (ctx jsonb) and returns jsonb.") : 0));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	usable = (proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
			  proc->prorettype == JSONBOID);
	ReleaseSysCache(tup);
	if (!usable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s(jsonb)%s must return jsonb", name, named_in),
				 where ? errhint("A step function takes (ctx jsonb) and returns jsonb.") : 0));
	RunAsCheckExecute(fn, owner, psprintf("function %s(jsonb)%s", name, named_in));
	return fn;
}

/*
 * invalidate_step_functions
 *		Syscache callback: any change to pg_proc forgets every resolved step
 *		function.
 */
static void
invalidate_step_functions(Datum arg, int cacheid, uint32 hashvalue)
{
	step_functions_valid = false;
}

/*
 * step_function
 *		SagaLookupFunction, cached.  Runs inside the step's subtransaction.
 */
static StepFunction *
step_function(const char *name, Oid owner)
{
	StepFunctionKey key;
	StepFunction *entry;
	bool		found;
	Oid			fn;

	if (!step_function_callback)
	{
		CacheRegisterSyscacheCallback(PROCOID, invalidate_step_functions, (Datum) 0);
		step_function_callback = true;
	}
	if (!step_functions_valid || step_functions == NULL)
	{
		HASHCTL		ctl;

		if (step_function_cxt == NULL)
			step_function_cxt = AllocSetContextCreate(TopMemoryContext,
													  "outbox_saga step functions",
													  ALLOCSET_SMALL_SIZES);
		MemoryContextReset(step_function_cxt);
		ctl.keysize = sizeof(StepFunctionKey);
		ctl.entrysize = sizeof(StepFunction);
		ctl.hcxt = step_function_cxt;
		step_functions = hash_create("outbox_saga step functions", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		step_functions_valid = true;
	}

	memset(&key, 0, sizeof(key));
	key.owner = owner;
	strlcpy(key.name, name, sizeof(key.name));
	entry = hash_search(step_functions, &key, HASH_FIND, NULL);
	if (entry != NULL)
	{
		RunAsCheckExecute(entry->fn, owner, psprintf("function %s(jsonb)", name));
		return entry;
	}

	fn = SagaLookupFunction(name, owner, NULL);
	entry = hash_search(step_functions, &key, HASH_ENTER, &found);
	entry->fn = fn;
	fmgr_info_cxt(fn, &entry->flinfo, step_function_cxt);
	return entry;
}


/* ------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------
 */

/*
 * call_function
 *		RunAsOwner callback of a "function" call: fn(ctx).
 */
static void
call_function(void *arg)
{
	SagaStepRun *run = arg;
	StepFunction *sf = step_function(run->function, run->owner);
	LOCAL_FCINFO(fcinfo, 1);
	Datum		d;

	/* What the step writes carries the saga's trace context. */
	TraceSetForCall(run->ctx);

	InitFunctionCallInfoData(*fcinfo, &sf->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(run->ctx);
	fcinfo->args[0].isnull = false;
	d = FunctionCallInvoke(fcinfo);
	run->result = fcinfo->isnull ? NULL : DatumGetJsonbPCopy(d);
}

/*
 * SagaEmitFunction
 *		The OID of outbox.emit(text, text, jsonb, text, jsonb, timestamptz):
 *		an emit step writes its event as outbox.emit would, so its owner
 *		needs EXECUTE on it, like any role that emits (checked by
 *		saga.define and again at every run).
 */
Oid
SagaEmitFunction(void)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, JSONBOID,
	TIMESTAMPTZOID};

	return LookupFuncName(list_make2(makeString("outbox"), makeString("emit")),
						  6, argtypes, false);
}

/*
 * call_emit
 *		RunAsOwner callback of an "emit" call: one command event whose
 *		payload is the ctx, aggregate_id the saga id (events of a saga are
 *		ordered), headers the configured ones plus saga_id, saga_step,
 *		saga_phase and idempotency_key.  The result is {"event_id": ...}.
 */
static void
call_emit(void *arg)
{
	SagaStepRun *run = arg;
	OutboxEventData ev;
	pg_uuid_t	event_id;
	char	   *saga_id;
	char	   *id_text;

	if (run->topic == NULL || run->event_type == NULL || run->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("emit call of step \"%s\" lacks a topic or an event type", run->step)));
	RunAsCheckExecute(SagaEmitFunction(), run->owner, "function outbox.emit()");
	saga_id = SagaIdString(&run->saga_id);
	ev.topic = cstring_to_text(run->topic);
	ev.event_type = cstring_to_text(run->event_type);
	ev.payload = run->ctx;
	ev.aggregate_id = cstring_to_text(saga_id);
	ev.headers = run->headers;
	ev.has_deliver_after = false;
	ev.deliver_after = 0;
	OutboxCheckTopic("topic", ev.topic);
	OutboxCheckEventType("event_type", ev.event_type);
	OutboxCheckPayload(ev.payload);
	OutboxCheckHeaders(ev.headers);
	TopicAclRequire(run->owner, ev.topic, TOPIC_WRITE, NULL);
	OutboxAppendEvent(&ev, &event_id);

	id_text = SagaIdString(&event_id);
	run->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(psprintf("{\"event_id\": \"%s\"}",
																			  id_text))));
}

/*
 * SagaRunStep
 *		One attempt of a claimed run; its outcome in *out.  Errors of the
 *		call are caught (the call's subtransaction is rolled back): they are
 *		failed attempts.
 */
void
SagaRunStep(SagaStepRun *run, SagaOutcome *out)
{
	char	   *error = NULL;
	bool		is_function;

	out->saga_id = run->saga_id;
	out->step = run->step;
	out->phase = run->phase;
	out->result = NULL;
	out->error = NULL;

	/*
	 * An http run was sent between the previous round and this one: its
	 * answer is recorded whatever happened to the saga meanwhile (an
	 * action that succeeded after a cancel has its compensation run).
	 */
	if (run->kind != NULL && strcmp(run->kind, "http") == 0 &&
		SagaHttpOutcome(run, out))
		return;

	/* An action of a saga that has started compensating never runs. */
	if (strcmp(run->phase, "action") == 0 && strcmp(run->saga_status, "running") != 0)
	{
		out->kind = SAGA_SKIP;
		out->error = psprintf("not run: the saga is %s", run->saga_status);
		return;
	}

	is_function = (run->kind != NULL && strcmp(run->kind, "function") == 0);
	if (is_function || (run->kind != NULL && strcmp(run->kind, "emit") == 0))
	{
		RunAsResult res;

		res = RunAsOwner(run->owner, run->search_path, run->timeout_ms,
						 is_function ? "step function exceeded the step's timeout" :
						 "emit call exceeded the step's timeout",
						 is_function ? call_function : call_emit, run, &error);
		if (res == RUN_AS_OK)
		{
			out->kind = (!is_function && run->await) ? SAGA_WAIT : SAGA_OK;
			out->result = run->result;
		}
		else
		{
			/* A function that overran the step's timeout timed out. */
			out->kind = (is_function && res == RUN_AS_TIMED_OUT) ?
				SAGA_TIMEOUT : SAGA_FAIL;
			out->error = error;
		}
	}
	else if (run->kind != NULL && strcmp(run->kind, "http") == 0)
	{
		/*
		 * Claimed but not sent (it was claimed while its saga was not
		 * running, or reading the call failed): a failed attempt.
		 */
		out->kind = SAGA_FAIL;
		out->error = pstrdup("the http request was not sent: it was not prepared when the step was claimed");
	}
	else
	{
		out->kind = SAGA_FAIL;
		out->error = pstrdup("22023: unknown call kind in the step run");
	}
}


/* ------------------------------------------------------------------------
 * Error context
 * ------------------------------------------------------------------------
 */

static void
step_error_callback(void *arg)
{
	SagaErrorContext *ctx = arg;

	if (ctx->step != NULL)
		errcontext("while running step \"%s\" of saga %s",
				   ctx->step, SagaIdString(ctx->saga_id));
	else
		errcontext("while running the claimed step of saga %s",
				   SagaIdString(ctx->saga_id));
}

/*
 * SagaErrorContextPush / SagaErrorContextPop
 *		While running a step of a saga (its name, if known, in 'step'; the
 *		caller may set ctx->step later), errors carry the context line
 *		"while running step "x" of saga y".  'saga_id' and 'step' must stay
 *		valid until the pop.
 */
void
SagaErrorContextPush(SagaErrorContext *ctx, const pg_uuid_t *saga_id, const char *step)
{
	ctx->saga_id = saga_id;
	ctx->step = step;
	ctx->callback.callback = step_error_callback;
	ctx->callback.arg = ctx;
	ctx->callback.previous = error_context_stack;
	error_context_stack = &ctx->callback;
}

void
SagaErrorContextPop(SagaErrorContext *ctx)
{
	Assert(error_context_stack == &ctx->callback);
	error_context_stack = ctx->callback.previous;
}

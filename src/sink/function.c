/*-------------------------------------------------------------------------
 *
 * function.c
 *		Destination kind "function": an SQL function handles each event.
 *
 * config: {"function": "schema.name"}, a function (outbox.events) RETURNS
 * void or (jsonb) RETURNS void; the jsonb form gets to_jsonb() of the event
 * row.  The dispatcher calls deliver() inside the transaction that records
 * the delivery (G5), in a subtransaction, as the destination's owner with
 * SECURITY_RESTRICTED_OPERATION and the destination's search_path (G10,
 * base/run_as.c); raising an error is a failed attempt,
 * and so is overrunning the destination's timeout (RunAsOwner's hard
 * timeout: the handler is cancelled until it returns, and its writes are
 * rolled back even if it then returns normally).  The handler runs with
 * the event's trace context as outbox_saga.traceparent/.tracestate (undone
 * with RunAsOwner's settings), so the events it writes carry it on.
 *
 * The resolved function is cached per destination and owner, with the
 * owner's EXECUTE privilege checked when it is resolved, and forgotten on
 * any change to pg_proc, pg_authid or pg_auth_members (syscache callbacks):
 * a dropped or replaced handler, a revoked EXECUTE or a revoked role
 * membership is noticed at the next event (G14: handlers run with the
 * privileges current when they run; invalidations are read at every
 * transaction start and lock).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "base/run_as.h"
#include "base/tojsonb.h"
#include "base/trace_context.h"
#include "sink/sink.h"

static const char *const function_keys[] = {"function", NULL};

/* The resolved handler of one destination. */
typedef struct HandlerCache
{
	bool		valid;
	int32		dest_id;
	Oid			owner;			/* checked for EXECUTE when resolved */
	char		name[3 * NAMEDATALEN];
	Oid			fn;
	bool		takes_jsonb;
	FmgrInfo	flinfo;
	ToJsonbCall to_jsonb;
} HandlerCache;

static HandlerCache handler_cache;
static bool callback_registered = false;

/*
 * invalidate_handlers
 *		Syscache callback: any change to pg_proc (a handler replaced,
 *		dropped, its EXECUTE granted or revoked), to roles or to role
 *		memberships forgets the cached handler, which is resolved and
 *		checked again at its next event.
 */
static void
invalidate_handlers(Datum arg, int cacheid, uint32 hashvalue)
{
	handler_cache.valid = false;
}

/*
 * events_rowtype
 *		The row type of outbox.events.
 */
static Oid
events_rowtype(void)
{
	Oid			nsp = get_namespace_oid("outbox", false);
	Oid			relid = get_relname_relid("events", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "outbox.events does not exist");
	return get_rel_type_id(relid);
}

/*
 * resolve_handler
 *		Find the handler named 'name' that 'owner' may execute; set
 *		*takes_jsonb by its argument type.  Errors say what is wrong.
 */
static Oid
resolve_handler(const char *name, Oid owner, bool *takes_jsonb)
{
	List	   *names = CompatStringToQualifiedNameList(name);
	Oid			argtype = events_rowtype();
	Oid			fn;
	HeapTuple	tup;
	Form_pg_proc proc;

	if (list_length(names) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handler function name \"%s\" is not schema-qualified", name),
				 errhint("Write it as schema.name, for example \"public.on_order_event\".")));

	*takes_jsonb = false;
	fn = LookupFuncName(names, 1, &argtype, true);
	if (!OidIsValid(fn))
	{
		argtype = JSONBOID;
		*takes_jsonb = true;
		fn = LookupFuncName(names, 1, &argtype, true);
	}
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function %s(outbox.events) does not exist", name),
				 errhint("A handler takes (outbox.events) or (jsonb) and returns void.")));

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->prorettype != VOIDOID)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler %s must be a function returning void", name),
				 errhint("A handler takes (outbox.events) or (jsonb) and returns void.")));
	}
	ReleaseSysCache(tup);

	RunAsCheckExecute(fn, owner, psprintf("handler %s", name));
	return fn;
}

/*
 * function_validate
 *		config must name an existing handler that the owner may execute.
 */
static void
function_validate(Jsonb *config, Oid owner)
{
	char	   *name = DestConfigString(config, "function");
	bool		takes_jsonb;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a function destination needs the config key \"function\""),
				 errhint("For example '{\"function\": \"public.on_order_event\"}'.")));
	(void) resolve_handler(name, owner, &takes_jsonb);
}

/*
 * function_deliver
 *		Call the handler with the event (the caller has switched to the
 *		owner's identity and opened a subtransaction).
 */
static void
function_deliver(const DestinationConfig *dest, const DispatchEvent *ev)
{
	LOCAL_FCINFO(fcinfo, 1);
	const char *name = DestConfigString(dest->config, "function");
	Datum		arg;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a function destination needs the config key \"function\"")));

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, invalidate_handlers, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, invalidate_handlers, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, invalidate_handlers, (Datum) 0);
		callback_registered = true;
	}
	if (!handler_cache.valid || handler_cache.dest_id != dest->id ||
		handler_cache.owner != dest->owner ||
		strcmp(handler_cache.name, name) != 0)
	{
		handler_cache.valid = false;
		handler_cache.fn = resolve_handler(name, dest->owner,
										   &handler_cache.takes_jsonb);
		fmgr_info_cxt(handler_cache.fn, &handler_cache.flinfo, TopMemoryContext);
		if (handler_cache.takes_jsonb)
			ToJsonbPrepare(&handler_cache.to_jsonb, events_rowtype(),
						   TopMemoryContext);
		handler_cache.dest_id = dest->id;
		handler_cache.owner = dest->owner;
		strlcpy(handler_cache.name, name, sizeof(handler_cache.name));
		handler_cache.valid = true;
	}

	arg = handler_cache.takes_jsonb ?
		ToJsonbInvoke(&handler_cache.to_jsonb, ev->row) : ev->row;

	/* What the handler writes carries the event's trace context. */
	TraceSetForCall(ev->headers);

	InitFunctionCallInfoData(*fcinfo, &handler_cache.flinfo, 1, InvalidOid,
							 NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
}

const OutboxSink SinkFunction = {
	.kind = "function",
	.keys = function_keys,
	.validate = function_validate,
	.deliver = function_deliver,
};

/*-------------------------------------------------------------------------
 *
 * tojsonb.c
 *		Calling the server's own to_jsonb() from C.
 *
 * to_jsonb(anyelement) finds the type of its argument in the call's
 * expression tree (get_fn_expr_argtype), so a direct call needs an FmgrInfo
 * whose fn_expr is a FuncExpr carrying an argument of that type.  Calling
 * the real function, instead of re-implementing it, keeps every value typed
 * exactly as to_jsonb types it (numbers, nested json, arrays, timestamps).
 *
 * Nothing here reads a table or takes a lock beyond what to_jsonb itself
 * does (type lookups through the syscache); it runs in the caller's
 * transaction and allocates the result in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_type_d.h"
#include "nodes/makefuncs.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"

#include "base/tojsonb.h"

/*
 * ToJsonbPrepare
 *		Set up 'call' for values of type 'typid'; what it allocates lives in
 *		'cxt', which must outlive every ToJsonbInvoke on it.
 */
void
ToJsonbPrepare(ToJsonbCall *call, Oid typid, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Node	   *arg = (Node *) makeNullConst(typid, -1, InvalidOid);

	call->typid = typid;
	fmgr_info_cxt(F_TO_JSONB, &call->flinfo, cxt);
	call->flinfo.fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
												 list_make1(arg),
												 InvalidOid, InvalidOid,
												 COERCE_EXPLICIT_CALL);
	MemoryContextSwitchTo(old);
}

/*
 * ToJsonbInvoke
 *		to_jsonb(value) for a non-NULL value of the prepared type.
 */
Datum
ToJsonbInvoke(ToJsonbCall *call, Datum value)
{
	return FunctionCall1(&call->flinfo, value);
}

/*-------------------------------------------------------------------------
 *
 * tojsonb.h
 *		Convert any value to jsonb exactly as SQL's to_jsonb() does.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_TOJSONB_H
#define OUTBOX_SAGA_TOJSONB_H

#include "fmgr.h"

/* A prepared call of to_jsonb() for one argument type. */
typedef struct ToJsonbCall
{
	Oid			typid;
	FmgrInfo	flinfo;
} ToJsonbCall;

extern void ToJsonbPrepare(ToJsonbCall *call, Oid typid, MemoryContext cxt);
extern Datum ToJsonbInvoke(ToJsonbCall *call, Datum value);

#endif							/* OUTBOX_SAGA_TOJSONB_H */

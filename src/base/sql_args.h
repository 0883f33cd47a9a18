/*-------------------------------------------------------------------------
 *
 * sql_args.h
 *		Checks of the arguments of SQL-callable functions, shared by every
 *		SQL API (events, idempotency keys, destinations, sagas).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SQL_ARGS_H
#define OUTBOX_SAGA_SQL_ARGS_H

#include "fmgr.h"
#include "utils/timestamp.h"

/* What a checked text is: its "too long" error has a different SQLSTATE. */
typedef enum SqlTextKind
{
	SQL_TEXT_NAME,				/* the name of an object (destination, saga,
								 * step): too long is 42622 */
	SQL_TEXT_VALUE,				/* a value stored with data (topic, key,
								 * scope): too long is 22001 */
} SqlTextKind;

extern void SqlRequireArg(FunctionCallInfo fcinfo, int argno, const char *name);
extern void SqlCheckLength(const char *what, int len, int max_bytes,
						   SqlTextKind kind);
extern void SqlCheckText(const char *what, const char *p, int len, int max_bytes,
						 SqlTextKind kind, const char *forbidden,
						 const char *invalid_detail);
extern char *SqlNameText(text *name, const char *what, int max_bytes,
						 const char *invalid_detail);
extern Interval *SqlParseInterval(const char *what, const char *str);
extern void SqlHideStatementCallback(void *arg);
extern Datum SqlCallHidingStatement(PGFunction fn, FunctionCallInfo fcinfo);

#endif							/* OUTBOX_SAGA_SQL_ARGS_H */

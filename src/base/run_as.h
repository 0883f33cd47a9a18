/*-------------------------------------------------------------------------
 *
 * run_as.h
 *		The two identities the extension's C code runs under besides the
 *		caller's: the extension's own rights, and a destination's or saga
 *		definition's owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_RUN_AS_H
#define OUTBOX_SAGA_RUN_AS_H

#include "base/spi_util.h"

/* The caller's identity and GUC nest level, saved by RunAsExtensionBegin(). */
typedef struct SavedIdentity
{
	Oid			userid;
	int			sec_context;
	int			guc_nestlevel;
} SavedIdentity;

/* The longest error text RunAsOwner() hands back, in bytes. */
#define RUN_AS_MAX_ERROR_LENGTH		1000

/* The longest search_path recorded for user code, in bytes. */
#define RUN_AS_MAX_SEARCH_PATH		4096

/* How a RunAsOwner() call ended. */
typedef enum RunAsResult
{
	RUN_AS_OK,					/* returned in time */
	RUN_AS_FAILED,				/* raised an error: rolled back */
	RUN_AS_TIMED_OUT,			/* overran its timeout: rolled back */
} RunAsResult;

extern void RunAsExtensionBegin(SavedIdentity *saved);
extern void RunAsExtensionEnd(const SavedIdentity *saved);
extern uint64 RunAsExtensionRun(SpiStatement *stmt, Datum *values,
								 const char *nulls, int expect);
extern void RunAsCheckExecute(Oid fn, Oid role, const char *what);
extern RunAsResult RunAsOwner(Oid role, const char *search_path,
							  int64 timeout_ms, const char *timeout_what,
							  void (*fn) (void *), void *arg, char **error);
extern RunAsResult RunAsOwnerEach(Oid role, const char *search_path,
								  int64 timeout_ms, const char *timeout_what,
								  void (*fn) (void *arg, int i), void *arg,
								  int from, int to, int *failed_at,
								  char **error);
extern char *RunAsSearchPathWithTemp(const char *path);
extern char *RunAsCheckSearchPath(const char *value, const char *what);
extern char *RunAsCurrentSearchPath(void);
extern bool RunAsInOwnerCall(void);

#endif							/* OUTBOX_SAGA_RUN_AS_H */

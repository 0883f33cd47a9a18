/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *		Small helpers shared by the C code that runs SQL through SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SPI_UTIL_H
#define OUTBOX_SAGA_SPI_UTIL_H

#include "executor/spi.h"
#include "utils/timestamp.h"

/* The caller's identity and GUC nest level, saved by SpiBecomeSuperuser(). */
typedef struct SavedIdentity
{
	Oid			userid;
	int			sec_context;
	int			guc_nestlevel;
} SavedIdentity;

extern void SpiBecomeSuperuser(SavedIdentity *saved);
extern void SpiRestoreIdentity(const SavedIdentity *saved);
extern void SpiRunKept(SPIPlanPtr *plan, const char *sql, const Oid *types,
					   int cursor_options, Datum *values, const char *nulls,
					   int expect, const char *what);
extern Interval *ParseIntervalNamed(const char *what, const char *str);
extern bool SpiTryInSubtransaction(void (*fn) (void *), void *arg, ErrorData **edata);
extern ErrorData *SpiAbortKeepingError(MemoryContext cxt);

#endif							/* OUTBOX_SAGA_SPI_UTIL_H */

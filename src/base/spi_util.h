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

/* Most parameters a statement may have. */
#define SPI_STATEMENT_MAX_ARGS	16

/*
 * One statement of the extension's, prepared and kept on first use.
 * Declare it with a static initializer: { what, sql, { types..., 0 },
 * cursor_options }; 'plan' starts NULL.
 */
typedef struct SpiStatement
{
	const char *what;			/* names the statement in errors */
	const char *sql;			/* parameters $1..$n only */
	Oid			types[SPI_STATEMENT_MAX_ARGS + 1];	/* 0-terminated */
	int			cursor_options; /* e.g. CURSOR_OPT_CUSTOM_PLAN; 0: default */
	SPIPlanPtr	plan;			/* kept plan, NULL until first use */
} SpiStatement;

extern void SpiConnect(void);
extern void SpiFinish(void);
extern void SpiBeginWorkerTransaction(void);
extern void SpiCommitWorkerTransaction(void);
extern uint64 SpiRun(SpiStatement *stmt, Datum *values, const char *nulls,
					 int expect);
extern uint64 SpiRunLatest(SpiStatement *stmt, Datum *values, const char *nulls,
						   int expect);
extern bool SpiTryInSubtransaction(void (*fn) (void *), void *arg, ErrorData **edata);
extern ErrorData *SpiAbortKeepingError(MemoryContext cxt);
extern void SpiWorkerInterruptsBetweenSteps(void);
extern void SpiWorkerWithoutCancel(void (*fn) (void *), void *arg);
extern void SpiWorkerReportCaught(ErrorData *edata);
extern bool SpiColumnExists(const char *schema, const char *table,
							const char *column);

#endif							/* OUTBOX_SAGA_SPI_UTIL_H */

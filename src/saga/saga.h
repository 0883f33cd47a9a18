/*-------------------------------------------------------------------------
 *
 * saga.h
 *		Sagas: the one header of the saga family.
 *
 * The files of the family, and what each one is:
 *	  saga_api.c	the SQL API on one saga: start, complete_step,
 *					register_compensation, cancel, retry
 *	  saga_define.c	saga.define and the validation of definitions and calls
 *	  saga_state.c	every statement on the saga tables; the state machine
 *					(SagaApplyOutcomes, SagaAdvanceCompensation)
 *	  saga_driver.c	the dispatcher's pass: rounds, claims, orphans,
 *					deadlines, timeouts
 *	  saga_call.c	running one claimed step: function and emit calls
 *	  saga_http.c	http steps, sent in batches between two rounds
 *
 * What the dispatcher calls: SagaRunPass and SagaNextDue.  Everything else
 * here is for the family's own files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SAGA_H
#define OUTBOX_SAGA_SAGA_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* ------------------------------------------------------------------------
 * For the dispatcher (saga_driver.c)
 * ------------------------------------------------------------------------
 */

/*
 * One round of saga work in this database, called by the dispatcher once
 * per pass with no transaction open.  Runs its own short transactions, or
 * none when the round can have no work (see WHEN A PASS RUNS ROUNDS in
 * saga_driver.c).  Adds the number of steps/compensations it ran to
 * *activity; returns true if more work is ready right away.
 */
extern bool SagaRunPass(int64 *activity);

/*
 * When saga work falls due next: the earliest next attempt of a pending
 * run, timeout of a waiting run or deadline of a running saga; 0 if there
 * is none.  For the sleep of dispatcher 0 (the only process that drives
 * sagas): call it inside a transaction, with SPI connected, once per pass
 * before SagaRunPass, which runs rounds only when it shows work due (or a
 * counted commit, or work left over).  Uses only partial indexes (cheap),
 * and is remembered until rounds had work, the saga work counter moved or
 * the poll interval passed.
 */
extern TimestampTz SagaNextDue(void);


/* ------------------------------------------------------------------------
 * Definitions (saga_define.c)
 * ------------------------------------------------------------------------
 */

/* Definition, step and compensation names, in bytes. */
#define SAGA_MAX_NAME_BYTES		(NAMEDATALEN - 1)

/* Defaults of the step keys (SPEC 3.5; README, "Sagas"). */
#define SAGA_DEFAULT_TIMEOUT_MS			(30 * 1000)
#define SAGA_DEFAULT_MAX_ATTEMPTS		3
#define SAGA_DEFAULT_BACKOFF_BASE_MS	1000
#define SAGA_DEFAULT_BACKOFF_MAX_MS		(3600 * 1000)
#define SAGA_DEFAULT_COMP_MAX_ATTEMPTS	25

extern Jsonb *SagaValidateCall(JsonbValue *call, const char *where, Oid owner);
extern bool SagaDefinitionHasStep(Jsonb *steps, const char *step);


/* ------------------------------------------------------------------------
 * Statements and the state machine (saga_state.c)
 * ------------------------------------------------------------------------
 */

/* The statements on the saga tables; see saga_state.c for each one. */
typedef enum SagaStatementId
{
	/* saga.define */
	SAGA_Q_HEAD_LOCK,
	SAGA_Q_HEAD_INSERT,
	SAGA_Q_HEAD_BUMP,
	SAGA_Q_LATEST_SAME,
	SAGA_Q_LATEST_SAME_010,
	SAGA_Q_DEFINITION_INSERT,
	SAGA_Q_DEFINITION_INSERT_010,
	/* the SQL API on one saga */
	SAGA_Q_START_LOOKUP,
	SAGA_Q_START_INSERT,
	SAGA_Q_START_EXISTING,
	SAGA_Q_LOCK_SAGA,
	SAGA_Q_STEP_RUNS,
	SAGA_Q_ACTIVE_RUN,
	SAGA_Q_CANCEL,
	SAGA_Q_RETRY_RUN,
	SAGA_Q_RETRY_SAGA,
	SAGA_Q_COMP_EXISTING,
	SAGA_Q_COMP_INSERT,
	/* the state machine */
	SAGA_Q_RECORD,
	SAGA_Q_ACTION_DONE,
	SAGA_Q_ACTION_GAVE_UP,
	SAGA_Q_COMP_GAVE_UP,
	SAGA_Q_ADVANCE,
	/* the driver */
	SAGA_Q_DEADLINES,
	SAGA_Q_TIMEOUTS,
	SAGA_Q_LOCK_CLAIMED,
	SAGA_Q_CLAIM,
	SAGA_Q_READY,
	SAGA_Q_ORPHANS,
	SAGA_Q_ORPHANS_LEFT,
	SAGA_Q_EXISTING,
	SAGA_Q_NEXT_DUE,
	SAGA_Q_HTTP_CALLS,
	SAGA_Q_COUNT
} SagaStatementId;

extern uint64 SagaRun(SagaStatementId q, Datum *values, const char *nulls,
					  int expect);
extern uint64 SagaRunLatest(SagaStatementId q, Datum *values, const char *nulls,
							 int expect);
extern uint64 SagaRunAsExtension(SagaStatementId q, Datum *values,
								 const char *nulls, int expect);
extern Datum SagaUuidArray(const pg_uuid_t *ids, int n);
extern Datum SagaTextArray(char **strings, int n);
extern Datum SagaColumn(SPITupleTable *tt, uint64 row, int col, bool *isnull);
extern char *SagaColumnText(SPITupleTable *tt, uint64 row, int col);
extern void SagaColumnUuid(SPITupleTable *tt, uint64 row, int col, pg_uuid_t *out);
extern char *SagaIdString(const pg_uuid_t *id);

/* How a run's attempt ended. */
typedef enum SagaOutcomeKind
{
	SAGA_OK,					/* succeeded with 'result' */
	SAGA_WAIT,					/* emitted; now waits for complete_step */
	SAGA_FAIL,					/* failed; retried while attempts remain */
	SAGA_TIMEOUT,				/* like SAGA_FAIL, and it timed out */
	SAGA_ABORT,					/* failed for good, whatever the attempts */
	SAGA_SKIP,					/* never ran: the saga no longer runs it */
	SAGA_REQUEUE,				/* interrupted by a crash: run it again, the
								 * attempt is not counted */
} SagaOutcomeKind;

/* The outcome of the active run of one saga (addressed by its key). */
typedef struct SagaOutcome
{
	pg_uuid_t	saga_id;
	char	   *step;
	char	   *phase;			/* "action" or "compensation" */
	SagaOutcomeKind kind;
	Jsonb	   *result;			/* NULL: SQL NULL */
	char	   *error;			/* for failures; NULL otherwise */
} SagaOutcome;

/*
 * Record the outcomes of the active (running or waiting) runs of n sagas and
 * advance them: schedule the next step, complete the saga, record
 * compensations, start, continue or finish compensating, or mark it failed.
 * Returns the number of runs recorded.  The caller holds the instance row
 * lock of every saga it passes.
 */
extern int	SagaApplyOutcomes(const SagaOutcome *outcomes, int n, TimestampTz now);

/*
 * For compensating sagas with no active run: schedule the compensation
 * record with the highest seq, or end the saga (compensated, or cancelled
 * after saga.cancel) when none is left.  The caller holds the row locks.
 */
extern void SagaAdvanceCompensation(const pg_uuid_t *saga_ids, int n, TimestampTz now);


/* ------------------------------------------------------------------------
 * Running one claimed step (saga_call.c)
 * ------------------------------------------------------------------------
 */

/* One claimed run, as read under the saga's lock (SAGA_Q_LOCK_CLAIMED). */
typedef struct SagaStepRun
{
	pg_uuid_t	saga_id;
	char	   *saga_status;
	Oid			owner;
	char	   *search_path;	/* the definition's (run_as.c) */
	char	   *step;
	char	   *phase;
	char	   *kind;			/* function, emit, http; NULL: unknown */
	char	   *function;
	char	   *topic;
	char	   *event_type;
	bool		await;
	Jsonb	   *headers;
	int64		timeout_ms;
	Jsonb	   *ctx;
	Jsonb	   *result;			/* set by the call */
} SagaStepRun;

extern void SagaRunStep(SagaStepRun *run, SagaOutcome *out);
extern Oid	SagaLookupFunction(const char *name, Oid owner, const char *where);
extern Oid	SagaEmitFunction(void);
/* While running a step: errors say which (see saga_call.c). */
typedef struct SagaErrorContext
{
	ErrorContextCallback callback;
	const pg_uuid_t *saga_id;
	const char *step;			/* NULL: not known yet */
} SagaErrorContext;

extern void SagaErrorContextPush(SagaErrorContext *ctx, const pg_uuid_t *saga_id,
								 const char *step);
extern void SagaErrorContextPop(SagaErrorContext *ctx);


/* ------------------------------------------------------------------------
 * http steps (saga_http.c)
 * ------------------------------------------------------------------------
 */

extern void SagaHttpResetNext(void);
extern void SagaHttpSwap(void);
extern void SagaHttpPrepare(const pg_uuid_t *ids, int n, MemoryContext next_cxt);
extern void SagaHttpCarry(const pg_uuid_t *ids, int n, MemoryContext next_cxt);
extern void SagaHttpSend(MemoryContext claimed_cxt);
extern bool SagaHttpOutcome(const SagaStepRun *run, SagaOutcome *out);

#endif							/* OUTBOX_SAGA_SAGA_H */

/*-------------------------------------------------------------------------
 *
 * saga_internal.h
 *		What the saga API (saga.c) and the saga driver (saga_driver.c)
 *		share: recording the outcome of a step run and advancing sagas.
 *
 * The state machine lives in saga_driver.c (see its header).  Both callers
 * hold the instance row lock of every saga they pass, are connected to SPI,
 * and run with the rights that may write the saga tables (the worker's own
 * bootstrap superuser; the API switches to it after its permission checks)
 * and with search_path pinned.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SAGA_INTERNAL_H
#define OUTBOX_SAGA_SAGA_INTERNAL_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* Defaults of the step keys (SPEC 3.5; README, "Sagas"). */
#define SAGA_DEFAULT_TIMEOUT_MS			(30 * 1000)
#define SAGA_DEFAULT_MAX_ATTEMPTS		3
#define SAGA_DEFAULT_BACKOFF_BASE_MS	1000
#define SAGA_DEFAULT_BACKOFF_MAX_MS		(3600 * 1000)
#define SAGA_DEFAULT_COMP_MAX_ATTEMPTS	25

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
 * Returns the number of runs recorded.
 */
extern int	SagaApplyOutcomes(const SagaOutcome *outcomes, int n, TimestampTz now);

/*
 * For compensating sagas with no active run: schedule the compensation
 * record with the highest seq, or end the saga (compensated, or cancelled
 * after saga.cancel) when none is left.
 */
extern void SagaAdvanceCompensation(const pg_uuid_t *saga_ids, int n, TimestampTz now);

#endif							/* OUTBOX_SAGA_SAGA_INTERNAL_H */

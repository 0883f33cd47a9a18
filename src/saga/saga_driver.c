/*-------------------------------------------------------------------------
 *
 * saga_driver.c
 *		The dispatcher's part of sagas: the pass, its rounds and claims,
 *		enforcing timeouts and deadlines, recovering after a crash.
 *
 * The saga tables, the state diagram and every statement are in
 * saga_state.c; running one step in saga_call.c (function, emit) and
 * saga_http.c (http).  This file is the pass: rounds, claims, recovery of
 * interrupted runs, deadlines and timeouts, and what happens when a round
 * fails.
 *
 * TRANSACTIONS (what "recorded as running before its action runs" means)
 *	The requirement is that the record "this attempt is running" is
 *	committed before the attempt can have any effect, in a transaction
 *	other than the one the attempt runs in, so that a crash during the
 *	attempt leaves a visible trace and the run is attempted again, with the
 *	same idempotency key.  It does not require one transaction per step, so
 *	the driver batches.  One pass of SagaRunPass is a few *rounds*; one
 *	round is one transaction that
 *	  1. sweeps: sagas past their deadline start compensating; waiting runs
 *		 past timeout_at fail an attempt (in a subtransaction, like the
 *		 recovery below, so that a problem there never blocks the rest);
 *	  2. runs the runs claimed by the previous round (committed 'running'
 *		 there): each in its own subtransaction through RunAsOwner, as
 *		 the definition's owner with SECURITY_RESTRICTED_OPERATION, the
 *		 definition's search_path (pg_temp last) and the step's timeout
 *		 (a hard one, run_as.c);
 *	  3. records their outcomes and advances the sagas (set-based
 *		 statements over the whole batch: SagaApplyOutcomes);
 *	  4. claims the next batch of due pending runs: status 'running',
 *		 attempts + 1 (the claim of batch k+1 commits with the outcomes of
 *		 batch k), and reads what to send for the http runs among them.
 *	So every action runs in the round after the one whose commit made it
 *	'running'.  http runs are sent between the two rounds, with no
 *	transaction open: after the claiming round committed (and flushed),
 *	before the next one starts; that round records their outcomes in step
 *	3 like the others.  A function step's effects, an emitted event and the
 *	recorded outcome commit together (exactly once, like G5); compensations
 *	likewise, so none runs twice.  The last round of a pass claims nothing,
 *	so that claims do not sit across passes.
 *
 *	Durability: the dispatcher commits asynchronously (dispatcher.c).  A
 *	round that claimed runs flushes its commit record (XLogFlush) before the
 *	next round runs them, so "running" is on disk before any attempt can
 *	have an effect - also an effect outside the database (http) - and a
 *	crash always leaves it visible.  The outcomes need no flush: a crash
 *	that loses a round loses its outcomes and the effects of its runs
 *	together (WAL is replayed in order), and those runs are attempted
 *	again.  One flush per round, not per step.
 *
 *	Locks: every change of a saga happens under its instance row lock (FOR
 *	NO KEY UPDATE).  The driver takes it with SKIP LOCKED only: a saga that
 *	a user's transaction holds (saga.cancel, complete_step, ...) is left for
 *	a later round, and the dispatcher never waits for a user.  A claimed run
 *	of such a saga stays in the driver's list (process memory) until it can
 *	be run.  The claim itself locks only the run rows (SKIP LOCKED).
 *
 * CRASH
 *	A crash (or SIGTERM) during a round rolls back that round: the runs it
 *	was running stay 'running' (claimed in the previous, committed round),
 *	and their effects are gone.  The first pass of a new dispatcher process
 *	finds every 'running' run (no other process claims runs: dispatcher 0
 *	of a database alone drives sagas) and puts it back to pending at once:
 *	the attempt is not counted, the run's error says it was interrupted,
 *	and it runs again
 *	with the same idempotency key.  A run interrupted SAGA_MAX_INTERRUPTIONS
 *	times (a step that crashes the server) counts that attempt as failed, so
 *	a crash loop ends.  Timeouts (timeout_at) and deadlines are columns, so
 *	they are enforced after a restart as before.
 *
 * WHEN A PASS RUNS ROUNDS (issue 18 item 3: a pass's fixed cost)
 *	The dispatcher calls SagaRunPass on every pass, also under a load of
 *	events with no saga at all; the sweeps and the claim would cost a
 *	transaction and a few queries each time.  So a pass runs its rounds
 *	only when they can have work:
 *	  - the saga work counter (base/shmem.c) moved since the last pass that
 *		ran rounds: a user's commit changed saga state (saga.start,
 *		complete_step, cancel, retry, register_compensation, resume; see
 *		events/wakeup.c).  It is read before the first round's snapshot,
 *		so a bump that the round may miss is seen by the next pass, which
 *		its wake-up asks for: no wake-up is lost;
 *	  - the earliest due time (SagaNextDue: a pending run's next attempt, a
 *		waiting run's timeout, a deadline) has come: backoffs, timeouts and
 *		deadlines fire on time with nobody's commit, since the dispatcher
 *		sleeps no longer than until then;
 *	  - the last pass had work (ran, claimed, swept or recovered something,
 *		or found more due), claimed runs wait in the list (a user held
 *		their saga), or recovery is pending (the first pass of a process);
 *	Anything else changes saga state only through rounds of this process,
 *	which count as work.  SagaNextDue is remembered on the same terms, and
 *	read again once the poll interval (outbox_saga.poll_interval, less a
 *	tenth) has passed since it was read: the safety net for changes nobody
 *	counted (an UPDATE of the saga tables by hand, a restore).  What a
 *	round can find is what that query looks for (a pending run past its
 *	next attempt, a waiting run past its timeout, a running saga past its
 *	deadline: the conditions of the claim and the sweeps), so the poll
 *	reads one cached-plan query, and rounds run only when it shows work
 *	due: an idle dispatcher no longer plans and runs the sweeps'
 *	statements at every poll.  A pass that skips runs no saga query at all.
 *	Each pass logs at DEBUG1 whether it ran rounds or skipped them, with
 *	running totals, and each poll's reading of the due time.
 *
 * ERRORS
 *	A step's error is a failed attempt (RunAsOwner rolls back its
 *	subtransaction).  Any other error in a round aborts it; the claimed runs
 *	are then run again one saga per transaction, and a saga whose run
 *	still fails that way gets the error recorded as a failed attempt, so
 *	one bad saga never stops the others or the dispatcher.  Such an error
 *	is logged as a WARNING with its own message and an error context that
 *	says what the driver was doing ("while driving sagas", "while running
 *	step "x" of saga y", "while recovering interrupted saga steps").
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "base/spi_util.h"
#include "base/trace_context.h"
#include "saga/saga.h"

/* A pass stops claiming after this many rounds or this much time. */
#define SAGA_MAX_ROUNDS				16
#define SAGA_PASS_BUDGET_MS			250
/* Runs claimed per round, at most. */
#define SAGA_MAX_BATCH				1000
/* Deadlines and timeouts handled per round, at most. */
#define SAGA_SWEEP_LIMIT			1000
/* Interruptions of one run before an interrupted attempt counts. */
#define SAGA_MAX_INTERRUPTIONS		3
/* How long recovery or the sweep waits after it failed. */
#define SAGA_GUARD_BACKOFF_MS		10000

/*
 * Claimed runs (committed 'running' by this process) waiting to be run:
 * their saga ids, in 'claimed_cxt'.  A round builds the next list in
 * 'next_cxt' and the two are swapped when the round commits.
 */
static MemoryContext claimed_cxt = NULL;
static MemoryContext next_cxt = NULL;
static pg_uuid_t *claimed = NULL;
static int	nclaimed = 0;
static pg_uuid_t *next_claimed = NULL;
static int	next_nclaimed = 0;

/* Interrupted runs may exist (a new process, or some were locked). */
static bool recovery_needed = true;

/* After a failure, recovery and sweeps wait until then (0: no wait). */
static TimestampTz recovery_retry_at = 0;
static TimestampTz sweep_retry_at = 0;

/*
 * When a pass runs rounds (WHEN A PASS RUNS ROUNDS in the file header):
 * the saga work counter as the last pass with rounds read it, whether that
 * pass had work, and the passes with and without rounds in this process
 * (for the DEBUG1 lines).
 */
static uint64 work_served = 0;
static bool rounds_had_work = true;
static uint64 passes_ran = 0;
static uint64 passes_skipped = 0;

/*
 * SagaNextDue, remembered: its value (0: nothing due), the saga work
 * counter read before it was computed, and when.  Forgotten when rounds
 * had work.
 */
static bool due_known = false;
static TimestampTz due_at = 0;
static uint64 due_work = 0;
static TimestampTz due_read_at = 0;

/*
 * pin_search_path
 *		search_path = pg_catalog, pg_temp until AtEOXact_GUC(true, level).
 */
static int
pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}



/*
 * lock_claimed
 *		Lock the sagas of 'ids' (SKIP LOCKED) and read their running runs
 *		into *runs.  The ids of sagas a user holds go to 'deferred'
 *		(*ndeferred); a saga with no running run any more, or that no longer
 *		exists, is dropped.
 *		Returns the number of runs.
 */
static int
lock_claimed(const pg_uuid_t *ids, int n, SagaStepRun **runs,
			 pg_uuid_t *deferred, int *ndeferred)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	int			nruns = 0;
	bool	   *seen = palloc0(sizeof(bool) * Max(n, 1));
	int			j;

	values[0] = SagaUuidArray(ids, n);
	(void) SagaRun(SAGA_Q_LOCK_CLAIMED, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	*runs = palloc0(sizeof(SagaStepRun) * (nrows + 1));

	for (i = 0; i < nrows; i++)
	{
		SagaStepRun *run = &(*runs)[nruns];
		bool		isnull;
		Datum		d;

		SagaColumnUuid(rows, i, 1, &run->saga_id);
		for (j = 0; j < n; j++)
			if (memcmp(&ids[j], &run->saga_id, sizeof(pg_uuid_t)) == 0)
				seen[j] = true;
		run->step = SagaColumnText(rows, i, 4);
		if (run->step == NULL)
			continue;			/* locked, but nothing is running */
		run->saga_status = SagaColumnText(rows, i, 2);
		run->owner = DatumGetObjectId(SagaColumn(rows, i, 3, &isnull));
		run->phase = SagaColumnText(rows, i, 5);
		run->kind = SagaColumnText(rows, i, 6);
		run->function = SagaColumnText(rows, i, 7);
		run->topic = SagaColumnText(rows, i, 8);
		run->event_type = SagaColumnText(rows, i, 9);
		run->await = DatumGetBool(SagaColumn(rows, i, 10, &isnull));
		d = SagaColumn(rows, i, 11, &isnull);
		run->headers = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SagaColumn(rows, i, 12, &isnull);
		run->timeout_ms = isnull ? 0 : DatumGetInt64(d);
		d = SagaColumn(rows, i, 13, &isnull);
		run->ctx = DatumGetJsonbPCopy(d);
		run->search_path = SagaColumnText(rows, i, 14);
		/*
		 * The saga's trace context: in ctx, and the headers of an emit
		 * (whose own trace keys, stored by 0.1.0 unchecked, are checked).
		 */
		run->headers = TraceSanitize(run->headers);
		d = SagaColumn(rows, i, 15, &isnull);
		if (!isnull)
		{
			Jsonb	   *trace = TraceSanitize(DatumGetJsonbPCopy(d));

			run->ctx = TraceMerge(run->ctx, trace, true);
			if (run->headers != NULL)
				run->headers = TraceMerge(run->headers, trace, true);
		}
		nruns++;
	}
	SPI_freetuptable(rows);

	/* Not locked: a user holds the saga, or it was deleted. */
	*ndeferred = 0;
	for (j = 0; j < n; j++)
		if (!seen[j])
			deferred[(*ndeferred)++] = ids[j];
	if (*ndeferred > 0)
	{
		values[0] = SagaUuidArray(deferred, *ndeferred);
		(void) SagaRun(SAGA_Q_EXISTING, values, NULL, SPI_OK_SELECT);
		*ndeferred = 0;
		for (i = 0; i < SPI_processed; i++)
			SagaColumnUuid(SPI_tuptable, i, 1, &deferred[(*ndeferred)++]);
		SPI_freetuptable(SPI_tuptable);
	}
	return nruns;
}

/*
 * execute_claimed
 *		Run the claimed runs of the sagas 'ids' that can be locked and record
 *		their outcomes.  Returns how many ran; 'deferred' gets the rest.
 */
static int
execute_claimed(const pg_uuid_t *ids, int n, pg_uuid_t *deferred, int *ndeferred)
{
	SagaStepRun *runs;
	SagaOutcome *outcomes;
	int			nruns;
	int			i;

	*ndeferred = 0;
	if (n == 0)
		return 0;
	nruns = lock_claimed(ids, n, &runs, deferred, ndeferred);
	if (nruns == 0)
		return 0;
	outcomes = palloc0(sizeof(SagaOutcome) * nruns);
	for (i = 0; i < nruns; i++)
	{
		SagaErrorContext ectx;

		SagaErrorContextPush(&ectx, &runs[i].saga_id, runs[i].step);
		SagaRunStep(&runs[i], &outcomes[i]);
		SagaErrorContextPop(&ectx);
		CHECK_FOR_INTERRUPTS();
	}

	/* Recording the outcome of one step is part of running that step. */
	if (nruns == 1)
	{
		SagaErrorContext ectx;

		SagaErrorContextPush(&ectx, &runs[0].saga_id, runs[0].step);
		(void) SagaApplyOutcomes(outcomes, nruns, GetCurrentTimestamp());
		SagaErrorContextPop(&ectx);
	}
	else
		(void) SagaApplyOutcomes(outcomes, nruns, GetCurrentTimestamp());
	return nruns;
}


/* ------------------------------------------------------------------------
 * Rounds
 * ------------------------------------------------------------------------
 */

/*
 * recover_orphans
 *		Put every running run that this process did not claim back to
 *		pending (see CRASH in the file header).  Runs whose sagas a user
 *		holds are left for the next pass.  Returns how many were recovered.
 */
static int
recover_orphans(TimestampTz now)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	SagaOutcome *outcomes;
	bool		isnull;
	int64		left;

	values[0] = SagaUuidArray(claimed, nclaimed);
	(void) SagaRun(SAGA_Q_ORPHANS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	outcomes = palloc0(sizeof(SagaOutcome) * (nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		int			interruptions = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc,
																4, &isnull));

		SagaColumnUuid(rows, i, 1, &outcomes[i].saga_id);
		outcomes[i].step = SagaColumnText(rows, i, 2);
		outcomes[i].phase = SagaColumnText(rows, i, 3);
		if (interruptions + 1 >= SAGA_MAX_INTERRUPTIONS)
		{
			outcomes[i].kind = SAGA_FAIL;
			outcomes[i].error = psprintf("interrupted %d times by a crash or restart while running; this attempt counts as failed",
										 interruptions + 1);
		}
		else
		{
			outcomes[i].kind = SAGA_REQUEUE;
			outcomes[i].error = pstrdup("interrupted by a crash or restart while running; it runs again");
		}
	}
	SPI_freetuptable(rows);
	if (nrows > 0)
	{
		(void) SagaApplyOutcomes(outcomes, (int) nrows, now);
		ereport(LOG,
				(errmsg("outbox_saga: %d saga step run(s) interrupted by a crash or restart run again",
						(int) nrows)));
	}

	(void) SagaRun(SAGA_Q_ORPHANS_LEFT, values, NULL, SPI_OK_SELECT);
	left = DatumGetInt64(SagaColumn(SPI_tuptable, 0,
									   1, &isnull));
	recovery_needed = (left > 0);
	return (int) nrows;
}

/*
 * sweep
 *		Deadlines and wait timeouts that are due.  Returns how many sagas
 *		were affected.
 */
static int
sweep(TimestampTz now)
{
	Datum		values[2];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	pg_uuid_t  *ids;
	SagaOutcome *outcomes;
	int			swept = 0;

	/* Deadlines. */
	values[0] = TimestampTzGetDatum(now);
	values[1] = Int32GetDatum(SAGA_SWEEP_LIMIT);
	(void) SagaRun(SAGA_Q_DEADLINES, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	for (i = 0; i < nrows; i++)
		SagaColumnUuid(rows, i, 1, &ids[i]);
	SPI_freetuptable(rows);
	SagaAdvanceCompensation(ids, (int) nrows, now);
	swept += (int) nrows;

	/* Wait timeouts. */
	(void) SagaRun(SAGA_Q_TIMEOUTS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	outcomes = palloc0(sizeof(SagaOutcome) * (nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		SagaColumnUuid(rows, i, 1, &outcomes[i].saga_id);
		outcomes[i].step = SagaColumnText(rows, i, 2);
		outcomes[i].phase = SagaColumnText(rows, i, 3);
		outcomes[i].kind = SAGA_TIMEOUT;
		outcomes[i].error = SagaColumnText(rows, i, 4);
	}
	SPI_freetuptable(rows);
	(void) SagaApplyOutcomes(outcomes, (int) nrows, now);
	swept += (int) nrows;
	return swept;
}

/*
 * driver_error_callback
 *		Errors say what the driver was doing ("while driving sagas"); 'arg'
 *		is that text.
 */
static void
driver_error_callback(void *arg)
{
	errcontext("while %s", (const char *) arg);
}

/*
 * report_caught
 *		Log an error that the driver caught and goes on from, as a WARNING:
 *		the error's own message, detail and context (which says what was
 *		being done), and 'hint' unless the error has a hint of its own.
 */
static void
report_caught(ErrorData *edata, const char *hint)
{
	if (edata->hint == NULL && hint != NULL)
		edata->hint = MemoryContextStrdup(GetMemoryChunkContext(edata), hint);
	SpiWorkerReportCaught(edata);
}

typedef struct GuardedCall
{
	int			(*fn) (TimestampTz);
	TimestampTz now;
	const char *what;
	int			result;
} GuardedCall;

/* The body of guarded, run in its subtransaction. */
static void
call_guarded(void *arg)
{
	GuardedCall *g = arg;
	ErrorContextCallback errcallback;

	errcallback.callback = driver_error_callback;
	errcallback.arg = (void *) g->what;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	g->result = g->fn(g->now);
	error_context_stack = errcallback.previous;
}

/*
 * guarded
 *		Run fn(now) in a subtransaction of the round: an error is reported
 *		(with the context "while <what>"), rolled back, and the round goes on; the same work is
 *		then not tried again for SAGA_GUARD_BACKOFF_MS (*retry_at), so that
 *		a lasting problem does not flood the log.  Returns fn's result, or 0.
 */
static int
guarded(int (*fn) (TimestampTz), TimestampTz now, const char *what,
		TimestampTz *retry_at)
{
	GuardedCall g = {fn, now, what, 0};
	ErrorData  *edata;

	if (*retry_at != 0 && now < *retry_at)
		return 0;
	if (SpiTryInSubtransaction(call_guarded, &g, &edata))
	{
		*retry_at = 0;
		return g.result;
	}
	report_caught(edata, psprintf("It is tried again in %d seconds.",
								  SAGA_GUARD_BACKOFF_MS / 1000));
	FreeErrorData(edata);
	*retry_at = TimestampTzPlusMilliseconds(now, SAGA_GUARD_BACKOFF_MS);
	return 0;
}

/*
 * claim
 *		Mark up to 'limit' due pending runs running; their saga ids are
 *		appended to the next list.  Returns how many.
 */
static int
claim(int limit, TimestampTz now)
{
	Datum		values[2];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	MemoryContext old;

	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(now);
	(void) SagaRun(SAGA_Q_CLAIM, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;

	old = MemoryContextSwitchTo(next_cxt);
	next_claimed = repalloc(next_claimed, sizeof(pg_uuid_t) * (next_nclaimed + nrows + 1));
	MemoryContextSwitchTo(old);
	for (i = 0; i < nrows; i++)
		SagaColumnUuid(rows, i, 1, &next_claimed[next_nclaimed++]);
	SPI_freetuptable(rows);
	return (int) nrows;
}

/*
 * ready_now
 *		Whether a pending run is due.
 */
static bool
ready_now(TimestampTz now)
{
	Datum		values[1];
	bool		isnull;

	values[0] = TimestampTzGetDatum(now);
	(void) SagaRun(SAGA_Q_READY, values, NULL, SPI_OK_SELECT);
	return DatumGetBool(SagaColumn(SPI_tuptable, 0,
									  1, &isnull));
}

/*
 * reset_next
 *		Start an empty next list.
 */
static void
reset_next(void)
{
	MemoryContextReset(next_cxt);
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t));
	next_nclaimed = 0;
	SagaHttpResetNext();
}

/*
 * swap_lists
 *		After a commit: the next list becomes the claimed list.
 */
static void
swap_lists(void)
{
	MemoryContext tmp = claimed_cxt;

	claimed_cxt = next_cxt;
	claimed = next_claimed;
	nclaimed = next_nclaimed;
	SagaHttpSwap();
	next_cxt = tmp;
	reset_next();
}

/* What one round did. */
typedef struct RoundResult
{
	int			work;			/* runs run, swept, recovered */
	int			claimed;		/* newly claimed */
	bool		ready;			/* (last round) more is due now */
} RoundResult;

/*
 * begin_round / end_round
 *		The transaction of a round, with SPI and search_path pinned.
 */
static int
begin_round(void)
{
	SpiBeginWorkerTransaction();
	return pin_search_path();
}

static void
end_round(int guc_level)
{
	AtEOXact_GUC(true, guc_level);
	SpiCommitWorkerTransaction();
}

/*
 * saga_round
 *		One round (see TRANSACTIONS in the file header): sweep, run what the
 *		previous round claimed, claim up to 'limit' more (0: check only
 *		whether more is due).
 */
static void
saga_round(int limit, RoundResult *res)
{
	int			level;
	int			ndeferred;
	TimestampTz now;

	memset(res, 0, sizeof(*res));
	reset_next();

	level = begin_round();
	now = GetCurrentTimestamp();
	if (recovery_needed)
		res->work += guarded(recover_orphans, now, "recovering interrupted saga steps",
							 &recovery_retry_at);
	res->work += guarded(sweep, now, "enforcing saga deadlines and timeouts",
						 &sweep_retry_at);

	/* Deferred runs stay in the next list (allocated to fit every one). */
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t) * (nclaimed + 1));
	res->work += execute_claimed(claimed, nclaimed, next_claimed, &ndeferred);
	next_nclaimed = ndeferred;
	SagaHttpCarry(next_claimed, ndeferred, next_cxt);

	now = GetCurrentTimestamp();
	if (limit > 0)
	{
		res->claimed = claim(limit, now);
		SagaHttpPrepare(next_claimed + ndeferred, next_nclaimed - ndeferred, next_cxt);
	}
	else
		res->ready = ready_now(now);
	end_round(level);

	/*
	 * The dispatcher commits asynchronously; the claims must be durable
	 * before their runs start (see TRANSACTIONS in the file header).
	 */
	if (res->claimed > 0)
		XLogFlush(XactLastCommitEnd);
	swap_lists();

	/* The http runs just claimed go out now, between two transactions. */
	SagaHttpSend(claimed_cxt);
}

/*
 * run_one_alone
 *		After a round failed: run the claimed run of one saga in a
 *		transaction of its own.  If that fails too, record the error as a
 *		failed attempt (in yet another transaction) so that the run neither
 *		blocks the others nor loops.  Returns false if the saga must stay in
 *		the claimed list (a user holds it).
 */
static bool
run_one_alone(const pg_uuid_t *id, MemoryContext cxt)
{
	volatile bool keep = false;
	ErrorData  *volatile first = NULL;

	PG_TRY();
	{
		SagaErrorContext ectx;
		int			level;
		pg_uuid_t	deferred[1];
		int			ndeferred;

		SagaErrorContextPush(&ectx, id, NULL);
		level = begin_round();
		(void) execute_claimed(id, 1, deferred, &ndeferred);
		keep = (ndeferred > 0);
		end_round(level);
		SagaErrorContextPop(&ectx);
	}
	PG_CATCH();
	{
		first = SpiAbortKeepingError(cxt);
	}
	PG_END_TRY();
	if (first == NULL)
		return !keep;

	PG_TRY();
	{
		SagaErrorContext ectx;
		int			level;
		SagaStepRun *runs;
		pg_uuid_t	deferred[1];
		int			ndeferred;

		SagaErrorContextPush(&ectx, id, NULL);
		level = begin_round();
		if (lock_claimed(id, 1, &runs, deferred, &ndeferred) == 1)
		{
			SagaOutcome outcome;

			ectx.step = runs[0].step;
			outcome.saga_id = *id;
			outcome.step = runs[0].step;
			outcome.phase = runs[0].phase;
			outcome.kind = SAGA_FAIL;
			outcome.result = NULL;
			outcome.error = psprintf("could not run or record the step: %s",
									 first->message);
			(void) SagaApplyOutcomes(&outcome, 1, GetCurrentTimestamp());
		}
		keep = (ndeferred > 0);
		end_round(level);
		SagaErrorContextPop(&ectx);
		report_caught(first, "The error is recorded as a failed attempt of the step.");
	}
	PG_CATCH();
	{
		ErrorData  *edata = SpiAbortKeepingError(cxt);

		report_caught(edata, "Its running step is run again when the dispatcher restarts.");
		FreeErrorData(edata);
		keep = false;
	}
	PG_END_TRY();
	FreeErrorData(first);
	return !keep;
}

/*
 * fall_back
 *		A round failed (its transaction is aborted): run the claimed runs one
 *		saga at a time.
 */
static void
fall_back(MemoryContext cxt)
{
	pg_uuid_t  *ids;
	int			n = nclaimed;
	int			i;
	int			kept = 0;

	ids = MemoryContextAlloc(cxt, sizeof(pg_uuid_t) * (n + 1));
	memcpy(ids, claimed, sizeof(pg_uuid_t) * n);
	for (i = 0; i < n; i++)
	{
		if (!run_one_alone(&ids[i], cxt))
			ids[kept++] = ids[i];
		SpiWorkerInterruptsBetweenSteps();
	}
	reset_next();
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t) * (kept + 1));
	memcpy(next_claimed, ids, sizeof(pg_uuid_t) * kept);
	next_nclaimed = kept;
	SagaHttpCarry(ids, kept, next_cxt);
	swap_lists();
}

/*
 * poll_elapsed
 *		Whether the poll interval has passed since 'since' (0: never), less
 *		a tenth, so that the dispatcher's poll timer, which counts from the
 *		end of a pass, always finds it passed.
 */
static bool
poll_elapsed(TimestampTz since, TimestampTz now)
{
	return since == 0 ||
		TimestampDifferenceExceeds(since, now,
								   OutboxPollInterval - OutboxPollInterval / 10);
}

/*
 * SagaNextDue
 *		See saga.h.  The counter is read before the statement's snapshot
 *		(the latest one, whatever the isolation level), so a commit the
 *		remembered value misses has moved the counter since.
 */
TimestampTz
SagaNextDue(void)
{
	bool		isnull;
	Datum		d;
	int			level;
	TimestampTz now = GetCurrentTimestamp();
	uint64		work = ShmemSagaWorkRead(MyDatabaseId);
	bool		poll = due_known && work == due_work;

	if (poll && !poll_elapsed(due_read_at, now))
		return due_at;

	level = pin_search_path();
	(void) SagaRunLatest(SAGA_Q_NEXT_DUE, NULL, NULL, SPI_OK_SELECT);
	d = SagaColumn(SPI_tuptable, 0, 1, &isnull);
	AtEOXact_GUC(true, level);
	due_at = isnull ? 0 : DatumGetTimestampTz(d);
	due_work = work;
	due_read_at = now;
	due_known = true;
	if (poll)
		elog(DEBUG1, "outbox_saga: saga due time read (poll): %s",
			 due_at == 0 ? "nothing due" :
			 due_at <= now ? "work is due" : "work falls due later");
	return due_at;
}

/*
 * rounds_reason
 *		Why this pass runs rounds (WHEN A PASS RUNS ROUNDS in the file
 *		header), or NULL if it can skip them.  'work' is the saga work
 *		counter, read just now.
 */
static const char *
rounds_reason(uint64 work, TimestampTz now)
{
	if (recovery_needed)
		return "recovery";
	if (rounds_had_work)		/* also: claimed runs wait (SagaRunPass) */
		return "the last pass had work";
	if (work != work_served)
		return "saga work was committed";
	if (!due_known)
		return "the next due time is not known";
	if (due_at != 0 && due_at <= now)
		return "saga work fell due";
	return NULL;
}

/*
 * run_rounds
 *		Rounds until nothing is claimed, SAGA_MAX_ROUNDS or the time budget;
 *		the last round claims nothing.  Adds what they ran to *activity and
 *		sets *had_work if they did, claimed or found anything.  Returns
 *		whether more is due at once.
 */
static bool
run_rounds(int64 *activity, bool *had_work)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	int			batch = Min(OutboxBatchSize, SAGA_MAX_BATCH);
	int			round;

	*had_work = false;
	for (round = 0;; round++)
	{
		RoundResult res;
		/* volatile: read after PG_TRY (newer gcc warns of clobbering) */
		volatile bool last = (round + 1 >= SAGA_MAX_ROUNDS ||
							TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
													   SAGA_PASS_BUDGET_MS));

		PG_TRY();
		{
			ErrorContextCallback errcallback;

			errcallback.callback = driver_error_callback;
			errcallback.arg = (void *) "driving sagas";
			errcallback.previous = error_context_stack;
			error_context_stack = &errcallback;
			saga_round(last ? 0 : Max(batch, 1), &res);
			error_context_stack = errcallback.previous;
		}
		PG_CATCH();
		{
			ErrorData  *edata = SpiAbortKeepingError(cxt);

			report_caught(edata, "The claimed steps run again one saga at a time.");
			FreeErrorData(edata);
			fall_back(cxt);
			*had_work = true;
			return false;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);

		*activity += res.work;
		if (res.work > 0 || res.claimed > 0 || res.ready)
			*had_work = true;
		if (last)
			return res.ready;
		if (res.claimed == 0)
			return false;
		SpiWorkerInterruptsBetweenSteps();
	}
}

/*
 * SagaRunPass
 *		See saga.h: the rounds of this pass, if it can have work (WHEN A
 *		PASS RUNS ROUNDS in the file header).
 */
bool
SagaRunPass(int64 *activity)
{
	uint64		work;
	TimestampTz now;
	const char *reason;
	int64		ran = 0;
	bool		had_work;
	bool		more;

	if (claimed_cxt == NULL)
	{
		claimed_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga claimed runs",
											ALLOCSET_SMALL_SIZES);
		next_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga claimed runs",
										 ALLOCSET_SMALL_SIZES);
		claimed = MemoryContextAlloc(claimed_cxt, sizeof(pg_uuid_t));
		nclaimed = 0;
		reset_next();
	}

	/* Before the first round's snapshot: see the file header. */
	work = ShmemSagaWorkRead(MyDatabaseId);
	now = GetCurrentTimestamp();
	reason = rounds_reason(work, now);
	if (reason == NULL)
	{
		passes_skipped++;
		elog(DEBUG1, "outbox_saga: saga rounds skipped (passes with rounds: " UINT64_FORMAT ", without: " UINT64_FORMAT ")",
			 passes_ran, passes_skipped);
		return false;
	}

	work_served = work;
	more = run_rounds(&ran, &had_work);
	rounds_had_work = had_work || nclaimed > 0;
	/* Rounds that did something moved due times: compute it again. */
	if (rounds_had_work)
		due_known = false;
	*activity += ran;
	passes_ran++;
	elog(DEBUG1, "outbox_saga: saga rounds ran (%s): " INT64_FORMAT " steps run or swept, %s (passes with rounds: " UINT64_FORMAT ", without: " UINT64_FORMAT ")",
		 reason, ran, had_work ? "had work" : "no work",
		 passes_ran, passes_skipped);
	return more;
}

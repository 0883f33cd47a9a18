/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		The dispatchers: a pool of background workers per database,
 *		delivering committed events to destinations and driving sagas.
 *
 * THE POOL (isolation, G3, G4, G8)
 *	The launcher starts outbox_saga.workers_per_database dispatchers per
 *	database (worker 0, 1, ...; main_arg says which, DISPATCHER_ARG).  Each
 *	connects as the bootstrap superuser; each handler runs as its
 *	destination's owner (delivery.c), never as the superuser (G10).  A
 *	destination is served by one worker at a time: before a destination's
 *	batches a worker claims it in shared memory (ShmemClaim: a spinlock
 *	check-and-set over the slot's workers), and other workers skip it while
 *	the claim lasts.  The claim spans the batch's two transactions and the
 *	network I/O between them, so one destination's batches never overlap
 *	and its per-aggregate order (G4) is exactly that of one process.  It
 *	dies with the process (dispatcher_detach), and every position lives in
 *	tables, so a worker killed in the middle of a batch leaves that batch
 *	undelivered, not half-recorded: another worker, or its successor,
 *	delivers it again (G3).  The claim is not a lock a handler could take
 *	or release.
 *	What a slow destination costs: the one worker serving it, and nothing
 *	else.  Worker 0 alone drives sagas and keeps house, and while any other
 *	worker runs it leaves network destinations (http, kafka, nats) to them:
 *	a hung endpoint or a broker outage never delays sagas, housekeeping or
 *	in-database destinations (function, notify), whose handlers are bounded
 *	by their timeouts.  Workers 1.. serve every kind; with N workers, N-1
 *	destinations can hang at once before the others wait.  Each worker
 *	starts its round of destinations at another place, so the drain of busy
 *	destinations spreads over the workers and the cores (item 3 of issue
 *	11); one destination uses one core.
 *	A commit wakes one worker, worker 0 unless it keeps house or is stuck
 *	in a batch or round (base/shmem.c, WHOM A COMMIT WAKES); a worker hands
 *	on what it cannot serve: a destination claimed by another worker wakes
 *	that worker, and network destinations left by worker 0, or work left
 *	ready at the end of a pass, wake the others (deliver).
 *	Ticks (eventlog.c) are taken by every worker (events/tick.c, at the
 *	start of a pass) and by housekeeping, one at a time (the tick lock), so
 *	that tick ids and snapshots keep the same order.  The pass's tick ends
 *	the windows its batches begin (DeliveryRunBatch), unless a destination
 *	is already past it.
 *
 * THE LOOP (OutboxDispatcherMain), one pass per iteration:
 *	  begin_pass	interrupts, SIGHUP, clear wake_pending, reset the loop
 *					memory context;
 *	  start_pass	a short transaction: check that the extension is here and
 *					that its SQL version matches this library (otherwise wait
 *					and say why), take a tick (a snapshot, see eventlog.c) if
 *					anything committed since the last one, load the
 *					destinations, compute when the next retry falls due
 *					(when that may have moved: next_due_ms), and, before
 *					the tick, publish which topics the
 *					destinations not paused want when that may have changed
 *					(refresh_topics: commits of other topics wake nobody,
 *					base/shmem.c);
 *	  deliver		for each destination that is not paused and not backing
 *					off, a few batches, each in its own transaction
 *					(DeliveryRunBatch): claims are short and no network I/O
 *					ever happens inside a transaction;
 *	  drive_sagas	the saga driver's pass (SagaRunPass; worker 0 only), which
 *					runs its rounds only when saga work was committed, fell
 *					due (its due time is read again at every poll
 *					interval, next_due_ms) or was left over;
 *	  housekeeping	every HOUSEKEEPING_MS (housekeeping.c): a round, then the
 *					retirement of each partition, each in its own transaction;
 *	  end_pass		count the pass, report statistics, adapt the pass
 *					interval to the delivery rate (adapt_pass_interval);
 *	  wait_for_work	unless work is left or due times moved: sleep on the
 *					latch until a commit that wrote events some destination
 *					wants sets it (wakeup.c), or until the next retry is
 *					due, at most poll_interval; then start the next pass no
 *					sooner than the pass interval after this one started.
 *	COALESCING: one pass serves every commit since the previous pass's tick.
 *	A commit during a pass sets wake_pending, and the next pass follows
 *	once the pass interval has passed: 1 ms at low rates, growing with the
 *	delivery rate to MAX_PASS_INTERVAL_MS, so that under load a pass's fixed
 *	cost is shared by the commits of a few milliseconds rather than paid per
 *	commit.  A pass that only delivered is not followed by one at once
 *	(nothing became due); one with failures, parked events or saga work is.
 *	A pass that found nothing to do is counted as idle in shared memory,
 *	which is what outbox.wait_idle() waits for (it wakes the workers).
 *
 * TRANSACTIONS: every transaction this file opens goes through
 *	run_transaction (the worker_spi skeleton: statement timestamp, start,
 *	SPI, snapshot, ..., commit); delivery.c and the saga driver run their
 *	own.  Nothing is held across passes.
 *
 * LOCKS: the dispatcher holds no lock of its own across transactions:
 *	"one process per worker" is the compare-and-swap of the worker's pid in
 *	shared memory (dispatcher_attach), and "one worker per destination" the
 *	claim.  A function handler or saga step may leave session advisory
 *	locks of its own; after such a batch or saga pass every session
 *	advisory lock is released (drop_handler_session_locks), and
 *	pg_advisory_unlock_all() in user code releases nothing the dispatcher
 *	relies on.
 *
 * MEMORY: one loop context, reset at every pass; per batch, delivery.c uses
 *	the transaction's contexts.  What must outlive a pass (the destinations
 *	seen last, the version complained of) is in TopMemoryContext.
 *
 * STATE for outbox.workers: each step records what the worker does and
 *	since when (set_doing), and the claim names the destination.  A busy
 *	step (a batch, a saga or housekeeping round) arms a timeout: once it
 *	has lasted WORKER_STUCK_MS, the other workers are woken to serve what
 *	commits woke this one for (stuck_timeout_handler).
 *
 * ERRORS: an error while delivering to one destination is reported as a
 *	WARNING with the contexts "while delivering event ... to destination
 *	..." (delivery.c) and "while dispatching in database ...", the
 *	transaction is aborted, the error recorded on the destination (which
 *	backs off), and the loop goes on; likewise an error in housekeeping
 *	(without the recording).  Any other error ends the process; the
 *	launcher starts it again after a second.  Every position lives in
 *	tables, so a crash anywhere loses nothing (G3): a batch whose
 *	transaction did not commit is delivered again.
 *
 * COMMITS are asynchronous (synchronous_commit = off in this process): a
 *	batch's record and, for function destinations, the handler's writes
 *	are one transaction, so a crash that loses the commit loses both, and
 *	the batch is delivered again (G3, G5 hold); a notification or network
 *	delivery whose record is lost is repeated (at least once).  Waiting
 *	for WAL flushes would only add to delivery latency.
 *
 * ISOLATION: every transaction of this process is READ COMMITTED
 *	(default_transaction_isolation is overridden here), whatever the
 *	server's default: each statement and each direct read of the tables
 *	(dispatch/destination_rows.c, events/logscan.c) takes a snapshot of its
 *	own, and a batch's lock of its destination row follows a row updated
 *	meanwhile to its latest version, which a transaction snapshot forbids.
 *	Handlers and saga steps run in these transactions.
 *
 * SIGNALS: SIGHUP reloads the settings at the start of the next pass;
 *	SIGTERM ends the process at the next CHECK_FOR_INTERRUPTS (die), also
 *	in the middle of a handler (the batch's transaction is rolled back).
 *	DROP DATABASE and the other commands that need the database to
 *	themselves stop every dispatcher of it that way (utility_hook.c); on
 *	exit the worker's pid and claim are cleared (dispatcher_detach), which
 *	is what they wait for.  pg_cancel_backend() cancels the handler or batch running (an
 *	error, as above), never the dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "sink/dest_config.h"
#include "dispatch/delivery.h"
#include "dispatch/destination_rows.h"
#include "events/eventlog.h"
#include "events/tick.h"
#include "dispatch/restore.h"
#include "worker/dispatcher.h"
#include "worker/housekeeping.h"
#include "base/guc.h"
#include "saga/saga.h"
#include "base/shmem.h"
#include "sink/sink.h"
#include "base/spi_util.h"

#define HOUSEKEEPING_MS			5000
/*
 * Passes start at least this far apart: commits that arrive meanwhile are
 * coalesced into the next pass instead of each costing one (latency: at
 * most this much more).  Under load the interval grows with the rate of
 * deliveries, COALESCE_EVENTS_PER_MS per millisecond of interval, up to
 * MAX_PASS_INTERVAL_MS (see adapt_pass_interval).
 */
#define MIN_PASS_INTERVAL_MS	1
#define MAX_PASS_INTERVAL_MS	10
#define COALESCE_EVENTS_PER_MS	0.3
#define BATCHES_PER_PASS		8
/* The topic summary is read again at least this often (base/shmem.c). */
#define TOPICS_REFRESH_MS		5000

typedef enum ExtensionState
{
	EXTENSION_READY,
	EXTENSION_MISSING,
	EXTENSION_OTHER_VERSION,
} ExtensionState;

/*
 * A piece of work run in a transaction of its own by run_transaction:
 * body(arg) runs with SPI connected and a snapshot pushed.
 */
typedef struct TransactionStep
{
	const char *activity;		/* pg_stat_activity text; NULL: unchanged */
	const char *context;		/* errcontext while body runs; NULL: none */
	void		(*body) (void *arg);
	void	   *arg;
} TransactionStep;

/* What start_pass hands to the rest of the pass. */
typedef struct PassStart
{
	MemoryContext cxt;			/* where the destinations are allocated */
	ExtensionState state;
	List	   *dests;			/* DestinationConfig * ready to deliver */
	int64		tick;			/* the latest tick, once committed; 0: none */
} PassStart;

/* What the previous pass read; see forget_changed_destinations. */
typedef struct KnownDestination
{
	int32		id;
	const OutboxSink *sink;
	uint32		config_hash;
} KnownDestination;

/* One failed batch to record (record_batch_error). */
typedef struct BatchError
{
	int32		dest_id;
	const char *message;
} BatchError;

/*
 * Every statement this file runs (spi_util.c), one per query; all run in
 * the pass's first transaction unless said otherwise.
 */
enum
{
	DS_NEXT_DUE,
	DS_TOPICS,
	DS_RECORD_ERROR,
	DS_COUNT
};

static SpiStatement dispatcher_stmts[DS_COUNT] = {
	/*
	 * outbox.delivery_retry, outbox.destination: see next_due_ms.  Per
	 * destination, its earliest head in next_attempt_at order (a scan that
	 * stops at the first head, not a probe of every retry row: a replay
	 * queues many at once, dispatch/replay.c), then GREATEST with its
	 * retry_at: the same as the minimum over its heads of GREATEST.
	 */
	[DS_NEXT_DUE] = {"computing the next due time",
		"SELECT (extract(epoch FROM LEAST("
		"  (SELECT pg_catalog.min(GREATEST(h.due, d.retry_at))"
		"     FROM outbox.destination d"
		"     CROSS JOIN LATERAL ("
		"          SELECT r.next_attempt_at AS due FROM outbox.delivery_retry r"
		"           WHERE r.destination_id = d.id"
		"             AND (r.aggregate_id IS NULL"
		"                  OR d.config -> 'ordered' = 'false'::jsonb"
		"                  OR NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p"
		"                                  WHERE p.destination_id = r.destination_id"
		"                                    AND p.aggregate_id = r.aggregate_id"
		"                                    AND " RETRY_PRECEDES_SQL("p", "r") "))"
		"           ORDER BY r.next_attempt_at LIMIT 1) h"
		"    WHERE NOT d.paused AND d.kind <> 'pull'),"
		"  (SELECT pg_catalog.min(retry_at) FROM outbox.destination WHERE NOT paused))"
		"  - pg_catalog.clock_timestamp()) * 1000)::bigint",
	{0}},
	/* outbox.subscription, outbox.destination: see refresh_topics */
	[DS_TOPICS] = {"reading the subscribed topics",
		"SELECT s.topic, d.retry_at > pg_catalog.now(), d.retry_at"
		"  FROM outbox.subscription s"
		"  JOIN outbox.destination d ON d.id = s.destination_id"
		" WHERE NOT d.paused",
	{0}},
	/* outbox.destination: a failed batch, in a transaction of its own */
	[DS_RECORD_ERROR] = {"recording a dispatch error",
		"UPDATE outbox.destination"
		"   SET last_error = $2, last_error_at = pg_catalog.now(),"
		"       failed_attempts_total = failed_attempts_total + 1,"
		"       consecutive_failures = consecutive_failures + 1,"
		"       retry_at = pg_catalog.now() + pg_catalog.make_interval(secs =>"
		"         LEAST(60, pg_catalog.power(2, LEAST(consecutive_failures, 6))))"
		" WHERE id = $1",
	{INT4OID, TEXTOID, 0}},
};

static DispatcherSlot *my_slot = NULL;
static int	my_worker_no = 0;
static DispatcherWorker *my_worker = NULL;
static char my_database[NAMEDATALEN];
static MemoryContext loop_cxt = NULL;
static long sleep_ms = 1000;	/* from next_due_ms() of the last pass */
/* next_due_ms(): the retries' and backoffs' due time, while it holds. */
static bool delivery_due_known = false;
static TimestampTz delivery_due_at = 0;
static uint64 delivery_due_generation = 0;
static char *version_seen = NULL;	/* SQL version we last complained of */
static int64 pass_tick = 0;		/* the tick this pass took or found; 0: none */

/*
 * Whether the last pass found the extension's SQL matching this library:
 * housekeeping (TRUNCATE, DELETE) and sagas run only then, like dispatch.
 */
static bool extension_ready = false;

/*
 * The destinations the previous pass read, to tell network sinks which
 * vanished or changed (their connections and decoded secrets are then
 * dropped: OutboxSink.forget).  Paused and backing-off destinations count
 * as present: a destination waiting out a broker outage keeps its
 * producer or connection.  Kept in TopMemoryContext.
 */
static KnownDestination *known = NULL;
static int	n_known = 0;

/*
 * Destinations of this pass not paused and not pulled (load_destinations):
 * with none, no retry row or backoff can fall due, and next_due_ms skips
 * its query.
 */
static int	n_pushed_unpaused = 0;

/*
 * The topic summary (refresh_topics): a hash of which destinations were
 * ready to deliver to when this worker last read the subscriptions, the
 * summary's generation then, and when.  ready_hash is this pass's.
 */
static uint32 ready_hash = 0;
static uint32 topics_ready_hash = 0;
static uint64 topics_generation = PG_UINT64_MAX;
static TimestampTz topics_read_at = 0;

/*
 * Coalescing (adapt_pass_interval): when this pass and the previous one
 * started, the deliveries of this pass, whether it did anything that moves
 * due times (failures, parked events, saga work), the smoothed delivery
 * rate (events/s) and the interval it gives.
 */
static TimeoutId stuck_timeout_id = MAX_TIMEOUTS;	/* see set_doing */
static TimestampTz pass_started = 0;
static TimestampTz prev_pass_started = 0;
static int64 pass_delivered = 0;
static bool pass_retimed = false;
static double delivery_rate = 0;
static long pass_interval_ms = MIN_PASS_INTERVAL_MS;

/*
 * stuck_timeout_handler
 *		In the SIGALRM handler, WORKER_STUCK_MS into a batch, saga round or
 *		housekeeping round: commits that woke only this worker (base/shmem.c,
 *		WHOM A COMMIT WAKES), before or during this step, may wait for other
 *		destinations than the one it serves, and the step may last long:
 *		wake the other workers to look.  Atomics and SetLatch only
 *		(async-signal-safe).
 */
static void
stuck_timeout_handler(void)
{
	if (my_slot != NULL)
		ShmemWakeOtherWorkers(my_slot, my_worker_no);
}

/*
 * set_doing
 *		Record what this worker does (ShmemSetDoing); entering a busy step
 *		(WorkerDoingIsBusy) arms the stuck timeout, leaving it disarms it.
 */
static void
set_doing(WorkerDoing doing)
{
	bool		busy = WorkerDoingIsBusy(doing);

	if (busy && !WorkerDoingIsBusy(pg_atomic_read_u32(&my_worker->doing)))
		enable_timeout_after(stuck_timeout_id, WORKER_STUCK_MS);
	else if (!busy && get_timeout_active(stuck_timeout_id))
		disable_timeout(stuck_timeout_id, false);
	ShmemSetDoing(my_worker, doing);
}

/*
 * step_error_context
 *		errcontext of a step: its "while ..." phrase and the database,
 *		formatted only when a message is raised (the loop runs its steps
 *		every pass).
 */
static void
step_error_context(void *arg)
{
	errcontext("%s in database \"%s\"", (const char *) arg, my_database);
}

/*
 * run_transaction
 *		The worker transaction skeleton, the only one in this file: run
 *		step->body in a transaction of its own with SPI connected and a
 *		snapshot pushed, then commit.  'arg' is a TransactionStep (void *,
 *		so that run_caught can run it).  An error propagates; whoever
 *		catches it aborts the transaction (run_caught), or the process
 *		exits - the steps run outside run_caught go through
 *		SpiWorkerWithoutCancel, so that pg_cancel_backend() is not such an
 *		error.  The caller's memory context is current again on return.
 */
static void
run_transaction(void *arg)
{
	TransactionStep *step = arg;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback errcb;

	SpiBeginWorkerTransaction();
	if (step->activity != NULL)
		pgstat_report_activity(STATE_RUNNING, step->activity);
	if (step->context != NULL)
	{
		errcb.callback = step_error_context;
		errcb.arg = (void *) step->context;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
	}

	step->body(step->arg);

	if (step->context != NULL)
		error_context_stack = errcb.previous;
	SpiCommitWorkerTransaction();
	MemoryContextSwitchTo(old);
}

/*
 * run_caught
 *		The error path of the loop's steps: run fn(arg) with 'context' ("while
 *		...") as its errcontext.  If it raises an ERROR, abort the transaction
 *		it left, report the error as a WARNING (its message, detail and
 *		context unchanged) and return it, copied into the caller's memory
 *		context, for the caller to act on and free; NULL if fn returned.
 *		FATAL (SIGTERM) still ends the process.
 */
static ErrorData *
run_caught(const char *context, void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		ErrorContextCallback errcb;

		errcb.callback = step_error_context;
		errcb.arg = (void *) context;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		fn(arg);
		error_context_stack = errcb.previous;
	}
	PG_CATCH();
	{
		/* PG_CATCH restored error_context_stack. */
		edata = SpiAbortKeepingError(cxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	if (edata != NULL)
		SpiWorkerReportCaught(edata);
	return edata;
}

/*
 * dispatcher_detach
 *		On exit: let the launcher and DROP DATABASE see that we are gone.
 */
static void
dispatcher_detach(int code, Datum arg)
{
	if (my_worker != NULL)
	{
		ShmemRelease(my_slot, my_worker_no);
		pg_atomic_write_u32(&my_worker->procno, 0);
		pg_atomic_write_u32(&my_worker->pid, 0);
	}
}

/* Body of read_database_name. */
static void
read_database_name_body(void *arg)
{
	strlcpy(my_database, get_database_name(MyDatabaseId), NAMEDATALEN);
}

/*
 * read_database_name
 *		my_database, for messages.
 */
static void
read_database_name(void)
{
	TransactionStep step = {NULL, NULL, read_database_name_body, NULL};

	SpiWorkerWithoutCancel(run_transaction, &step);
}

/*
 * installed_version
 *		The extversion of outbox_saga in pg_extension (palloc'd), or NULL if
 *		it is not installed: one index probe of the catalog, not a query.
 */
static char *
installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("outbox_saga"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * check_extension
 *		Whether the extension is installed here, in the version this library
 *		implements.  Runs inside a transaction with SPI connected.
 */
static ExtensionState
check_extension(void)
{
	char	   *version = installed_version();

	if (version == NULL)
	{
		pg_atomic_write_u32(&my_slot->version_mismatch, 0);
		return EXTENSION_MISSING;
	}
	pg_atomic_write_u32(&my_slot->version_mismatch,
						strcmp(version, OUTBOX_SAGA_VERSION) != 0);
	if (my_worker_no == 0 && !pg_atomic_read_u32(&my_slot->ready))
	{
		/* The launcher starts the other workers now. */
		pg_atomic_write_u32(&my_slot->ready, 1);
		ShmemWakeLauncher(false);
	}
	if (strcmp(version, OUTBOX_SAGA_VERSION) == 0)
	{
		if (version_seen != NULL)
			ereport(LOG,
					(errmsg("outbox_saga dispatcher: extension version %s matches the library again",
							version)));
		version_seen = NULL;
		return EXTENSION_READY;
	}
	if (version_seen == NULL || strcmp(version_seen, version) != 0)
	{
		ereport(LOG,
				(errmsg("outbox_saga dispatcher is waiting: the extension's SQL version is %s, the library's is %s",
						version, OUTBOX_SAGA_VERSION),
				 errhint("Run ALTER EXTENSION outbox_saga UPDATE, or install the matching library and restart.")));
		version_seen = MemoryContextStrdup(TopMemoryContext, version);
	}
	return EXTENSION_OTHER_VERSION;
}

/*
 * forget_changed_destinations
 *		Compare now[0..n_now-1] (this pass) with the previous pass; call
 *		forget() for every destination that is gone or has another config.
 *		Takes ownership of 'now' (allocated in TopMemoryContext).
 */
static void
forget_changed_destinations(KnownDestination *now, int n_now)
{
	int			i,
				j;

	for (i = 0; i < n_known; i++)
	{
		bool		same = false;

		for (j = 0; j < n_now; j++)
			if (now[j].id == known[i].id && now[j].config_hash == known[i].config_hash)
				same = true;
		if (!same && known[i].sink != NULL && known[i].sink->forget != NULL)
			known[i].sink->forget(known[i].id);
	}
	if (known != NULL)
		pfree(known);
	known = now;
	n_known = n_now;
}

/*
 * load_destinations
 *		Every destination that may be delivered to now (never a pull
 *		destination: sessions take its events, dispatch/pull.c), parsed, allocated in
 *		'cxt'.  A destination whose config no longer parses is skipped with a
 *		WARNING (it stays visible in outbox.stats).  Reads paused and
 *		backing-off destinations too, for forget_changed_destinations.  The
 *		rows come from a heap scan, not a statement (destination_rows.c).
 */
static List *
load_destinations(MemoryContext cxt)
{
	List	   *volatile result = NIL;
	KnownDestination *now;
	DestinationRow *rows;
	MemoryContext caller = MemoryContextSwitchTo(cxt);
	int			n;
	int			i;

	rows = DestinationRowsRead(&n);
	MemoryContextSwitchTo(caller);
	ready_hash = (uint32) n;
	n_pushed_unpaused = 0;
	now = MemoryContextAlloc(TopMemoryContext, sizeof(KnownDestination) * (n + 1));
	for (i = 0; i < n; i++)
	{
		DestinationConfig *dest = &rows[i].dest;
		MemoryContext old = CurrentMemoryContext;

		now[i].id = dest->id;
		now[i].sink = SinkLookup(dest->kind, true);
		now[i].config_hash = hash_bytes((unsigned char *) dest->config,
										VARSIZE(dest->config));
		if (!dest->paused && SinkIsPushed(now[i].sink))
			n_pushed_unpaused++;
		if (!rows[i].ready)
		{
			ready_hash = hash_combine(ready_hash, (uint32) dest->id * 2);
			continue;			/* paused or backing off */
		}
		ready_hash = hash_combine(ready_hash, (uint32) dest->id * 2 + 1);
		if (!SinkIsPushed(now[i].sink))
			continue;			/* pulled by sessions (dispatch/pull.c) */

		PG_TRY();
		{
			MemoryContextSwitchTo(cxt);
			DestConfigParseCommon(dest->config, dest);
			result = lappend(result, dest);
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			/* Only a parse error of our own can get here: nothing to undo. */
			MemoryContextSwitchTo(old);
			FlushErrorState();
			ereport(WARNING,
					(errmsg("outbox_saga: destination \"%s\" has an invalid config and is skipped",
							dest->name),
					 errhint("Fix it with outbox.alter_destination().")));
		}
		PG_END_TRY();
	}
	forget_changed_destinations(now, (int) n);
	return result;
}

/*
 * next_due_ms
 *		How long until the next retry row, destination backoff or (worker 0)
 *		saga step falls due, at most poll_interval.  Only retry rows that can be sent
 *		count: the heads of their aggregates (on ordered destinations), of
 *		destinations not paused, and not before the destination's own
 *		backoff; a row held behind a backing-off head would otherwise look
 *		due at once and make the dispatcher spin.  Runs in the pass's first
 *		transaction (SPI connected); something that falls due during the
 *		pass is found by the next one.  The query runs only when its answer
 *		may have moved (see below).
 */
static long
next_due_ms(void)
{
	long		ms = OutboxPollInterval;
	bool		isnull;
	Datum		d;
	TimestampTz due;
	TimestampTz now = GetCurrentTimestamp();
	uint64		generation = ShmemTopicsGeneration(my_slot);

	/*
	 * The retry rows' and backoffs' part is remembered while nothing that
	 * can move it happened: no failure or parked event in this worker's
	 * passes (pass_retimed), no change of destinations announced (the topic
	 * summary's generation), its time not come.  It is at most a poll
	 * interval ahead, so a change nobody announced (another worker's
	 * failures, which that worker times itself, or an UPDATE by hand) is
	 * seen by the poll as before.
	 */
	if (!delivery_due_known || generation != delivery_due_generation ||
		now >= delivery_due_at)
	{
		long		due_ms = OutboxPollInterval;

		/*
		 * The query counts destinations not paused and not pulled only:
		 * with none of them (every one paused, say) its answer is NULL.
		 */
		if (n_pushed_unpaused > 0 &&
			SpiRun(&dispatcher_stmts[DS_NEXT_DUE], NULL, NULL, SPI_OK_SELECT) == 1)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				due_ms = Max(1, Min(due_ms, DatumGetInt64(d) + 1));
		}
		delivery_due_at = TimestampTzPlusMilliseconds(now, due_ms);
		delivery_due_generation = generation;
		delivery_due_known = true;
	}
	ms = Max(1, Min(ms, (long) ((delivery_due_at - now + 999) / 1000)));
	/*
	 * Saga retries, step timeouts and deadlines: for worker 0 only, which
	 * alone drives sagas (and whose saga round relies on this call, see
	 * saga_driver.c); the others would only wake for nothing.
	 */
	if (my_worker_no == 0)
	{
		due = SagaNextDue();
		if (due != 0)
			ms = Max(1, Min(ms, (long) ((due - GetCurrentTimestamp()) / 1000) + 1));
	}
	return ms;
}

/*
 * refresh_topics
 *		Read which topics the destinations not paused subscribe to, and
 *		publish them as the summary that decides which commits wake the
 *		dispatchers (base/shmem.c has the protocol): when the summary was
 *		invalidated since this worker last read it (a change of destinations
 *		or subscriptions), when the set of destinations ready to deliver to
 *		changed (a backoff began or ended), and every TOPICS_REFRESH_MS (a
 *		change made by other means than the API, e.g. a restore).  The
 *		generation is read before the subscriptions' snapshot is taken; the
 *		caller publishes before it takes its tick.  Runs in the pass's first
 *		transaction (SPI connected).
 */
static void
refresh_topics(void)
{
	uint64		generation = ShmemTopicsGeneration(my_slot);
	TimestampTz now = GetCurrentTimestamp();
	TopicSummaryDraft draft;
	uint64		n;
	uint64		i;

	if (generation == topics_generation && ready_hash == topics_ready_hash &&
		!TimestampDifferenceExceeds(topics_read_at, now, TOPICS_REFRESH_MS))
		return;

	memset(&draft, 0, sizeof(draft));
	n = SpiRun(&dispatcher_stmts[DS_TOPICS], NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		later_isnull;
		text	   *topic = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		bool		later = DatumGetBool(SPI_getbinval(tup, desc, 2, &later_isnull));
		int			bit;

		if (isnull)
			continue;
		if (VARSIZE_ANY_EXHDR(topic) == 1 && *VARDATA_ANY(topic) == '*')
		{
			draft.all = true;
			continue;
		}
		bit = ShmemTopicBit(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic));
		if (!later_isnull && later)
		{
			TimestampTz retry_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));

			draft.later[bit / 64] |= UINT64CONST(1) << (bit % 64);
			if (draft.later_from == 0 || retry_at < draft.later_from)
				draft.later_from = retry_at;
		}
		else
			draft.now[bit / 64] |= UINT64CONST(1) << (bit % 64);
	}
	/* Refused: an invalidation came in between; 'all' stays set. */
	topics_generation = ShmemTopicsPublish(my_slot, generation, &draft) ?
		generation : PG_UINT64_MAX;
	topics_ready_hash = ready_hash;
	topics_read_at = now;
}

/*
 * start_pass_body
 *		The pass's first transaction (a PassStart in 'arg'): the extension
 *		check, then, if it is ready, the destinations, a tick and the next
 *		due time.
 */
static void
start_pass_body(void *arg)
{
	PassStart  *start = arg;

	start->state = check_extension();
	start->dests = NIL;
	if (start->state != EXTENSION_READY)
		return;
	/* A copy of another database waits paused (restore.c). */
	RestoreCheckIdentity();
	/* Nobody consumes ticks without destinations: housekeeping ticks. */
	start->dests = load_destinations(start->cxt);
	sleep_ms = next_due_ms();
	/* Before the tick: see base/shmem.c. */
	refresh_topics();

	/*
	 * Last: the tick lock is held until this transaction commits.  Paused
	 * and backing-off destinations count: outbox.deliver_pending() of a
	 * paused one waits for this tick (dispatch/sync_delivery.c).
	 */
	if (n_known > 0)
		start->tick = TickTake();
}

/*
 * start_pass
 *		Step "start_pass" of the file header.  Returns the destinations to
 *		deliver to this pass; exits if the extension is not installed.
 */
static List *
start_pass(void)
{
	PassStart	start = {loop_cxt, EXTENSION_MISSING, NIL, 0};
	TransactionStep step;

	step.activity = "outbox_saga: taking a tick";
	step.context = "while starting a pass";
	step.body = start_pass_body;
	step.arg = &start;
	SpiWorkerWithoutCancel(run_transaction, &step);
	if (start.state == EXTENSION_MISSING)
	{
		ereport(LOG,
				(errmsg("outbox_saga dispatcher stops: the extension is not installed in this database")));
		pg_atomic_write_u32(&my_worker->exit_reason, DISPATCHER_EXIT_NO_EXTENSION);
		proc_exit(0);
	}
	extension_ready = (start.state == EXTENSION_READY);
	pass_tick = start.tick;
	return start.dests;
}

/* Body of record_batch_error. */
static void
record_batch_error_body(void *arg)
{
	BatchError *err = arg;
	Datum		values[2];

	values[0] = Int32GetDatum(err->dest_id);
	values[1] = CStringGetTextDatum(err->message);
	SpiRun(&dispatcher_stmts[DS_RECORD_ERROR], values, NULL, SPI_OK_UPDATE);
}

/*
 * record_batch_error
 *		After an unexpected error in a destination's batch: store it on the
 *		destination and back it off, in a fresh transaction.
 */
static void
record_batch_error(DestinationConfig *dest, const char *message)
{
	BatchError	err = {dest->id, message};
	TransactionStep step = {NULL, NULL, record_batch_error_body, &err};

	SpiWorkerWithoutCancel(run_transaction, &step);
}

/*
 * drop_handler_session_locks
 *		Session-level advisory locks a handler or saga step took stay with
 *		this session after its transaction: release every one.  The
 *		dispatcher holds none of its own (its claims are in shared memory),
 *		so user code can neither keep a lock held by the dispatcher nor
 *		release one the dispatcher relies on.
 */
static void
drop_handler_session_locks(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * delivers_in_transaction
 *		Whether 'dest' is of an in-database kind (function, notify).  A kind
 *		this build lacks counts as a network kind: its batches fail, and
 *		record why, under run_caught like any other batch error - never
 *		here, outside it, where an error would end the process.
 */
static bool
delivers_in_transaction(const DestinationConfig *dest)
{
	const OutboxSink *sink = SinkLookup(dest->kind, true);

	return sink != NULL && sink->deliver != NULL;
}

/* One batch: the arguments of DeliveryRunBatch, for run_caught. */
typedef struct BatchCall
{
	DestinationConfig *dest;
	BatchResult result;
} BatchCall;

static void
run_batch(void *arg)
{
	BatchCall  *call = arg;
	MemoryContext old = CurrentMemoryContext;

	DeliveryRunBatch(call->dest, pass_tick, &call->result);
	MemoryContextSwitchTo(old);
}

/*
 * due_times_moved
 *		A failure or parked event of this pass may have moved the next due
 *		time: the next pass follows at once (pass_retimed) and queries it
 *		again (next_due_ms).
 */
static void
due_times_moved(void)
{
	pass_retimed = true;
	delivery_due_known = false;
}

/*
 * deliver_to
 *		Up to BATCHES_PER_PASS batches for one destination.  Returns whether
 *		it has more ready work; adds deliveries, failures and parked events
 *		to *activity.  An error in a batch is reported (run_caught) and
 *		recorded on the destination, which backs off.
 */
static bool
deliver_to(DestinationConfig *dest, int64 *activity)
{
	char	   *activity_text = psprintf("outbox_saga: delivering to \"%s\"",
										 dest->name);
	BatchCall	call;
	int			n;

	pgstat_report_activity(STATE_RUNNING, activity_text);
	call.dest = dest;
	call.result.more = false;
	for (n = 0; n < BATCHES_PER_PASS; n++)
	{
		ErrorData  *edata;

		memset(&call.result, 0, sizeof(call.result));
		/* delivery.c's own context names the destination and the event. */
		edata = run_caught("while dispatching", run_batch, &call);
		if (edata != NULL)
		{
			due_times_moved();
			/* Like a handler's error: "SQLSTATE: message". */
			record_batch_error(dest, psprintf("%s: %s",
											  unpack_sql_state(edata->sqlerrcode),
											  edata->message));
			FreeErrorData(edata);
			return false;
		}
		/* Parking counts: the next pass must see the new due times. */
		*activity += call.result.delivered + call.result.failed + call.result.parked;
		pass_delivered += call.result.delivered;
		if (call.result.failed + call.result.parked > 0)
			due_times_moved();
		if (call.result.delivered + call.result.failed > 0 &&
			delivers_in_transaction(dest))
			drop_handler_session_locks();
		if (!call.result.more)
			break;
		SpiWorkerInterruptsBetweenSteps();
	}
	return call.result.more;
}

/*
 * other_workers_running
 *		Whether a dispatcher of this database other than this one runs.
 */
static bool
other_workers_running(void)
{
	int			w;

	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (w != my_worker_no && pg_atomic_read_u32(&my_slot->workers[w].pid) != 0)
			return true;
	return false;
}

/*
 * deliver
 *		Step "deliver" of the file header: every ready destination that no
 *		other worker serves now, in turn, each under this worker's claim.
 *		Worker 0 leaves network destinations to the others while any runs,
 *		so that a slow endpoint never delays sagas, housekeeping or the
 *		in-database destinations.  Each worker starts at another place in
 *		the list, so that busy destinations spread over the workers.
 *		Returns whether a destination this worker served has more ready
 *		work; sets *skipped if it left a ready destination to another
 *		worker (which is serving it now: this pass was not idle).  What it
 *		leaves to others, it wakes them for.
 */
static bool
deliver(List *dests, int64 *activity, bool *skipped)
{
	bool		more = false;
	bool		in_database_only = (my_worker_no == 0 && other_workers_running());
	bool		left_to_others = false;
	int			n = list_length(dests);
	int			k;

	for (k = 0; k < n; k++)
	{
		DestinationConfig *dest = list_nth(dests, (k + my_worker_no) % n);
		int			holder;

		if (in_database_only && !delivers_in_transaction(dest))
		{
			left_to_others = true;
			continue;
		}
		if (!ShmemClaim(my_slot, my_worker_no, dest->id, &holder))
		{
			/*
			 * Another worker serves it now, maybe from an older tick than
			 * the commit that woke this one: it must make another pass.
			 */
			ShmemWakeWorker(my_slot, holder);
			*skipped = true;
			continue;
		}
		set_doing(DOING_DELIVERING);
		if (deliver_to(dest, activity))
			more = true;
		ShmemRelease(my_slot, my_worker_no);
		set_doing(DOING_PASS);
	}

	/*
	 * A commit wakes one worker (base/shmem.c, WHOM A COMMIT WAKES): what
	 * this one leaves to the others, and work it cannot finish in this pass,
	 * is theirs to look at too.
	 */
	if (left_to_others || more)
		ShmemWakeOtherWorkers(my_slot, my_worker_no);
	return more;
}

/*
 * drive_sagas
 *		Step "drive_sagas" of the file header; the saga driver reports its
 *		own errors.  Returns whether it has more ready work.
 */
static bool
drive_sagas(int64 *activity)
{
	MemoryContext old = CurrentMemoryContext;
	bool		more;

	set_doing(DOING_SAGAS);
	pgstat_report_activity(STATE_RUNNING, "outbox_saga: driving sagas");
	more = SagaRunPass(activity);
	MemoryContextSwitchTo(old);
	/* A step's session advisory locks go with its pass (like a handler's). */
	drop_handler_session_locks();
	set_doing(DOING_PASS);
	return more;
}

/* Body of housekeeping's first transaction: HousekeepingRun has no argument. */
static void
housekeeping_body(void *arg)
{
	HousekeepingRun();
}

/* Body of the retirement of one partition: arg points to its number. */
static void
housekeeping_retire_body(void *arg)
{
	HousekeepingRetire(*(int *) arg);
}

/*
 * housekeeping
 *		Step "housekeeping" of the file header: a round when
 *		HOUSEKEEPING_MS have passed since the last one (or at the first idle
 *		pass) - HousekeepingRun in a transaction of its own, then each
 *		partition's retirement in one of its own, so that the readers and
 *		writers a TRUNCATE holds up wait for one partition's commit only.
 *		An error is reported and the dispatcher goes on.
 */
static void
housekeeping(TimestampTz now, int64 activity)
{
	static TimestampTz last_housekeeping = 0;
	TransactionStep step = {"outbox_saga: housekeeping", NULL, housekeeping_body, NULL};
	ErrorData  *edata;
	int			part;

	if (!extension_ready ||
		!(TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS) ||
		  (activity == 0 && last_housekeeping == 0)))
		return;
	/* The context names the round; the transaction's own has none. */
	set_doing(DOING_HOUSEKEEPING);

	/*
	 * Commits from now on wake the next worker (base/shmem.c, WHOM A COMMIT
	 * WAKES); those since this pass began woke only this one: hand them on.
	 * A committer sets wake_pending, then reads 'doing'; this order is the
	 * reverse, so one of the two sees the other's write.  (Were both
	 * missed, the wake-up would still be this worker's, after the round.)
	 */
	pg_memory_barrier();
	if (pg_atomic_read_u32(&my_worker->wake_pending) != 0)
		ShmemWakeOtherWorkers(my_slot, my_worker_no);
	edata = run_caught("while running housekeeping", run_transaction, &step);
	if (edata != NULL)
		FreeErrorData(edata);
	for (part = 0; part < OUTBOX_PARTITIONS; part++)
	{
		TransactionStep retire = {"outbox_saga: housekeeping", NULL,
			housekeeping_retire_body, &part};

		SpiWorkerInterruptsBetweenSteps();
		edata = run_caught("while retiring the log", run_transaction, &retire);
		if (edata != NULL)
			FreeErrorData(edata);
	}
	set_doing(DOING_PASS);
	last_housekeeping = now;
}

/*
 * begin_pass
 *		Step "begin_pass" of the file header.
 */
static void
begin_pass(void)
{
	SpiWorkerInterruptsBetweenSteps();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}

	/*
	 * From here on a commit that wrote events sets wake_pending again: this
	 * pass may or may not see its events, the next one will.
	 */
	pg_atomic_write_u32(&my_worker->wake_pending, 0);
	set_doing(DOING_PASS);
	MemoryContextReset(loop_cxt);
	prev_pass_started = pass_started;
	pass_started = GetCurrentTimestamp();
	pass_delivered = 0;
	pass_retimed = false;
}

/*
 * adapt_pass_interval
 *		After a pass: how far apart the next passes start.  The delivery
 *		rate is smoothed over passes (deliveries of this pass over the time
 *		since the previous one started); the interval is 1 ms per
 *		COALESCE_EVENTS_PER_MS thousand events/s, between
 *		MIN_PASS_INTERVAL_MS and MAX_PASS_INTERVAL_MS.  At a low rate every
 *		commit gets a pass of its own at once; under load a pass serves every
 *		commit of the last few milliseconds, so that a pass's fixed cost (its
 *		transactions, the tick, reading the destinations) is paid once for
 *		many events instead of once per commit, at the price of at most
 *		MAX_PASS_INTERVAL_MS of latency.
 */
static void
adapt_pass_interval(void)
{
	long		secs;
	int			usecs;
	double		elapsed;

	if (prev_pass_started == 0)
		return;
	TimestampDifference(prev_pass_started, pass_started, &secs, &usecs);
	elapsed = secs + usecs / 1000000.0;
	if (elapsed <= 0)
		return;
	delivery_rate = 0.7 * delivery_rate + 0.3 * (pass_delivered / elapsed);
	pass_interval_ms = (long) (delivery_rate / (COALESCE_EVENTS_PER_MS * 1000.0));
	pass_interval_ms = Max(MIN_PASS_INTERVAL_MS, Min(MAX_PASS_INTERVAL_MS, pass_interval_ms));
}

/*
 * end_pass
 *		Step "end_pass" of the file header: count the pass, and as idle if
 *		it found nothing to do (outbox.wait_idle()).  A pass that left a
 *		ready destination to another worker is not idle: that worker is
 *		delivering it (and may leave it again to this one), so the database
 *		is not idle either.
 */
static void
end_pass(int64 activity, bool more, bool skipped)
{
	uint64		pass = pg_atomic_add_fetch_u64(&my_worker->passes, 1);

	if (activity == 0 && !more && !skipped)
		pg_atomic_write_u64(&my_worker->idle_pass, pass);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * wait_for_work
 *		Step "wait_for_work" of the file header, after a pass that has no
 *		more work ready: sleep until a commit wakes this worker (unless one
 *		did during the pass) or the next due time, then let the next pass
 *		start no sooner than pass_interval_ms after this one started, so
 *		that the commits of that interval share it.
 */
static void
wait_for_work(void)
{
	TimestampTz next_pass;
	TimestampTz now;

	/*
	 * A commit during the pass set wake_pending and the latch; code that
	 * waited on the latch inside the pass (a lock wait, a sink, the saga
	 * driver) may have consumed the latch.  wake_pending still says so: do
	 * not sleep then.
	 */
	if (pg_atomic_read_u32(&my_worker->wake_pending) == 0)
	{
		TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														sleep_ms);
		long		wait_ms = sleep_ms;

		set_doing(DOING_WAITING);

		/*
		 * Every wake-up sets wake_pending before the latch (base/shmem.c);
		 * a latch set without it is not one: PostgreSQL's SIGALRM sets the
		 * latch too, also for a timeout already disabled (the stuck timeout
		 * of a short step, a handler's), and that is no reason for a pass.
		 * A reload (SIGHUP) or a signal that ends the process is.
		 */
		for (;;)
		{
			long		left;

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			SpiWorkerInterruptsBetweenSteps();
			if (pg_atomic_read_u32(&my_worker->wake_pending) != 0 ||
				ConfigReloadPending)
				break;
			left = (long) ((until - GetCurrentTimestamp()) / 1000);
			if (left <= 0)
				break;
			wait_ms = left;
		}
	}
	next_pass = TimestampTzPlusMilliseconds(pass_started, pass_interval_ms);
	now = GetCurrentTimestamp();
	if (now < next_pass)
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) ((next_pass - now + 999) / 1000), PG_WAIT_EXTENSION);
}

/*
 * keep_freed_memory
 *		Let glibc keep what a batch frees for the next batch.  A batch's
 *		memory context grows by blocks of up to 8 MB and is deleted at the
 *		end of the batch; by default glibc maps blocks past its (adaptive)
 *		threshold afresh and hands freed memory back, so every batch took
 *		page faults on new memory again (one per ten events delivered, 7% of
 *		a drain's CPU).  Blocks below 16 MB now come from the heap, and up to
 *		16 MB freed at its top stays with the process.
 */
static void
keep_freed_memory(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
#endif
}

/*
 * dispatcher_attach
 *		Set up the process: signals, its worker in the shared memory slot
 *		(cleared again on exit; if another process has it, this one exits:
 *		never two processes per worker), the database connection and the
 *		settings of this process.
 */
static void
dispatcher_attach(int arg, Oid dboid)
{
	int			slotno = DISPATCHER_ARG_SLOT(arg);
	uint32		expected = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	keep_freed_memory();

	my_worker_no = DISPATCHER_ARG_WORKER(arg);
	if (OutboxShared == NULL || slotno < 0 || slotno >= OutboxShared->max_databases ||
		my_worker_no >= OUTBOX_MAX_WORKERS_PER_DATABASE ||
		pg_atomic_read_u32(&OutboxShared->slots[slotno].dboid) != dboid)
		elog(ERROR, "outbox_saga dispatcher started without its shared memory slot");
	my_slot = &OutboxShared->slots[slotno];
	if (!pg_atomic_compare_exchange_u32(&my_slot->workers[my_worker_no].pid,
										&expected, (uint32) MyProcPid))
	{
		ereport(LOG,
				(errmsg("outbox_saga dispatcher exits: process %u is dispatcher %d of this database",
						expected, my_worker_no)));
		proc_exit(0);
	}
	my_worker = &my_slot->workers[my_worker_no];
	stuck_timeout_id = RegisterTimeout(USER_TIMEOUT, stuck_timeout_handler);
	pg_atomic_write_u32(&my_worker->procno, CompatProcNumberOf(MyProc) + 1);
	before_shmem_exit(dispatcher_detach, (Datum) 0);
	/* Whatever the summary says is not this process's: read it again. */
	ShmemTopicsInvalidate(dboid);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", "outbox_saga dispatcher", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* Whatever the server's default: see ISOLATION in the file header. */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A session value, not an override: an override would make PostgreSQL
	 * ignore the search_path RunAsOwner sets for each handler and saga step
	 * (and a handler function's own SET search_path clause), since a
	 * setting of a lower-priority source never replaces it.  What user code
	 * sets is undone when its call returns (run_as.c).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	read_database_name();
	ereport(LOG,
			(errmsg("outbox_saga dispatcher %d started for database \"%s\"",
					my_worker_no, my_database)));
}

/*
 * OutboxDispatcherMain
 *		Entry point of a dispatcher: the loop of the file header.
 */
void
OutboxDispatcherMain(Datum main_arg)
{
	Oid			dboid;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	dispatcher_attach(DatumGetInt32(main_arg), dboid);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga dispatcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		int64		activity = 0;
		int64		saga_activity = 0;
		bool		more;
		bool		skipped = false;
		TimestampTz now;

		begin_pass();
		MemoryContextSwitchTo(loop_cxt);

		more = deliver(start_pass(), &activity, &skipped);
		/* Worker 0 alone drives sagas and keeps house. */
		if (my_worker_no == 0 && extension_ready && drive_sagas(&saga_activity))
			more = true;
		activity += saga_activity;
		now = GetCurrentTimestamp();
		if (my_worker_no == 0)
			housekeeping(now, activity);
		end_pass(activity, more, skipped);
		adapt_pass_interval();

		MemoryContextSwitchTo(TopMemoryContext);

		/*
		 * Deliveries alone do not call for another pass at once: the commits
		 * since this one began woke this worker (wake_pending), and nothing
		 * else became due.  Failures, parked events and saga work may have
		 * moved the next due time: then a pass at once computes it again.
		 */
		if (!more && !pass_retimed && saga_activity == 0)
			wait_for_work();
	}
}

/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		The dispatcher: one background worker per database, delivering
 *		committed events to destinations.
 *
 * Started by the launcher (launcher.c) with its slot number and database.
 * It connects as the bootstrap superuser and holds a session advisory lock
 * so that never two dispatchers serve one database.  Each handler runs as
 * its destination's owner (delivery.c), never as the superuser (G10).
 *
 * THE LOOP
 *	Sleep on the latch until a commit that wrote events sets it (wakeup.c),
 *	or poll_interval passes.  Then one pass:
 *	  1. a short transaction: check that the extension is here and that its
 *		 SQL version matches this library (otherwise wait and say why), take
 *		 a tick (a snapshot, see eventlog.c) if anything committed since the
 *		 last one, and load the destinations;
 *	  2. for each destination that is not paused and not backing off, a few
 *		 batches, each in its own transaction (DeliveryRunBatch): claims are
 *		 short and no network I/O ever happens inside a transaction;
 *	  3. every HOUSEKEEPING_MS, housekeeping (housekeeping.c).
 *	A pass that delivered a full batch anywhere is followed at once by
 *	another; a pass that found nothing to do is counted as idle in shared
 *	memory, which is what outbox.wait_idle() waits for.
 *
 * MEMORY: one loop context, reset at every pass; per batch, delivery.c uses
 *	the transaction's contexts.
 *
 * ERRORS: an error while delivering to one destination is reported, the
 *	transaction is aborted, the error recorded on the destination (which
 *	backs off), and the loop goes on.  Any other error ends the process; the
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
 * SIGNALS: SIGHUP reloads the settings, SIGTERM ends the process at the
 *	next CHECK_FOR_INTERRUPTS (die), also in the middle of a handler.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sink/dest_config.h"
#include "dispatch/delivery.h"
#include "worker/dispatcher.h"
#include "worker/housekeeping.h"
#include "base/guc.h"
#include "saga/saga.h"
#include "saga/saga_driver.h"
#include "base/shmem.h"
#include "sink/sink.h"
#include "base/spi_util.h"

#define HOUSEKEEPING_MS			5000
/*
 * Passes start at least this far apart: commits that arrive meanwhile are
 * coalesced into the next pass instead of each costing one (latency: at
 * most this much more).
 */
#define MIN_PASS_INTERVAL_MS	1
#define BATCHES_PER_PASS		8
/* Advisory lock key (two int4) held by the dispatcher of a database. */
#define DISPATCHER_LOCK_KEY1	1869968482	/* "outb" in ASCII */
#define DISPATCHER_LOCK_KEY2	1

typedef enum ExtensionState
{
	EXTENSION_READY,
	EXTENSION_MISSING,
	EXTENSION_OTHER_VERSION,
} ExtensionState;

static bool take_dispatcher_lock(void);
static long next_due_ms(void);

static DispatcherSlot *my_slot = NULL;

/* Kept plans of the statements every pass runs (spi_util.c). */
enum
{
	P_EXTVERSION,
	P_TICK,
	P_DESTINATIONS,
	P_NEXT_DUE,
	P_COUNT
};
static SPIPlanPtr pass_plans[P_COUNT];
static const Oid no_params[1] = {0};
static long sleep_ms = 1000;	/* from next_due_ms() of the last pass */
static char my_database[NAMEDATALEN];
static char *version_seen = NULL;	/* SQL version we last complained of */

/*
 * dispatcher_detach
 *		On exit: let the launcher and DROP DATABASE see that we are gone.
 */
static void
dispatcher_detach(int code, Datum arg)
{
	if (my_slot != NULL)
	{
		pg_atomic_write_u32(&my_slot->procno, 0);
		pg_atomic_write_u32(&my_slot->pid, 0);
	}
}

/*
 * check_extension
 *		Whether the extension is installed here, in the version this library
 *		implements.  Runs inside a transaction with SPI connected.
 */
static ExtensionState
check_extension(void)
{
	char	   *version;
	bool		isnull;

	if (!OidIsValid(get_extension_oid("outbox_saga", true)))
	{
		pg_atomic_write_u32(&my_slot->version_mismatch, 0);
		return EXTENSION_MISSING;
	}
	SpiRunKept(&pass_plans[P_EXTVERSION],
			   "SELECT extversion FROM pg_catalog.pg_extension"
			   " WHERE extname = 'outbox_saga'",
			   no_params, 0, NULL, NULL, SPI_OK_SELECT, "the extension version check");
	if (SPI_processed != 1)
		return EXTENSION_MISSING;
	version = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1,
												&isnull));
	pg_atomic_write_u32(&my_slot->version_mismatch,
						strcmp(version, OUTBOX_SAGA_VERSION) != 0);
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
 * take_tick
 *		Record a new tick if the current snapshot differs from the last one.
 */
static void
take_tick(void)
{
	SpiRunKept(&pass_plans[P_TICK],
			   "INSERT INTO outbox.tick (id, snapshot)"
			   " SELECT t.id + 1, pg_catalog.pg_current_snapshot()"
			   "   FROM (SELECT id, snapshot FROM outbox.tick"
			   "          ORDER BY id DESC LIMIT 1) t"
			   "  WHERE t.snapshot::text <> pg_catalog.pg_current_snapshot()::text",
			   no_params, 0, NULL, NULL, SPI_OK_INSERT, "taking a tick");
}

/*
 * What the previous pass read, to tell network sinks which destinations
 * vanished or changed (their connections and decoded secrets are then
 * dropped: OutboxSink.forget).  Paused and backing-off destinations count
 * as present: a destination waiting out a broker outage keeps its
 * producer or connection.  Kept in TopMemoryContext.
 */
typedef struct KnownDestination
{
	int32		id;
	const OutboxSink *sink;
	uint32		config_hash;
} KnownDestination;

/*
 * Whether the last pass found the extension's SQL matching this library:
 * housekeeping (TRUNCATE, DELETE) runs only then, like dispatch.
 */
static bool extension_ready = false;

static KnownDestination *known = NULL;
static int	n_known = 0;

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
 *		Every destination that may be delivered to now, parsed, allocated in
 *		'cxt'.  A destination whose config no longer parses is skipped with a
 *		WARNING (it stays visible in outbox.stats).  Reads paused and
 *		backing-off destinations too, for forget_changed_destinations.
 */
static List *
load_destinations(MemoryContext cxt)
{
	List	   *volatile result = NIL;
	KnownDestination *now;
	uint64		n;
	uint64		i;

	SpiRunKept(&pass_plans[P_DESTINATIONS],
			   "SELECT id, name, kind, config, owner,"
			   "       NOT paused AND (retry_at IS NULL OR retry_at <= pg_catalog.now())"
			   "  FROM outbox.destination"
			   " ORDER BY id",
			   no_params, 0, NULL, NULL, SPI_OK_SELECT, "reading the destinations");

	n = SPI_processed;
	now = MemoryContextAlloc(TopMemoryContext, sizeof(KnownDestination) * (n + 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		DestinationConfig *dest = palloc0(sizeof(DestinationConfig));

		dest->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		dest->name = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		dest->kind = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		dest->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		dest->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		MemoryContextSwitchTo(old);

		now[i].id = dest->id;
		now[i].sink = SinkLookup(dest->kind, true);
		now[i].config_hash = hash_bytes((unsigned char *) dest->config,
										VARSIZE(dest->config));
		if (!DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull)))
			continue;			/* paused or backing off */

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
 * record_batch_error
 *		After an unexpected error in a destination's batch: store it on the
 *		destination and back it off, in a fresh transaction.
 */
static void
record_batch_error(DestinationConfig *dest, const char *message)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	values[0] = Int32GetDatum(dest->id);
	values[1] = CStringGetTextDatum(message);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("UPDATE outbox.destination"
							  "   SET last_error = $2, last_error_at = pg_catalog.now(),"
							  "       failed_attempts_total = failed_attempts_total + 1,"
							  "       consecutive_failures = consecutive_failures + 1,"
							  "       retry_at = pg_catalog.now() + pg_catalog.make_interval(secs =>"
							  "         LEAST(60, pg_catalog.power(2, LEAST(consecutive_failures, 6))))"
							  " WHERE id = $1",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record a dispatch error");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * drop_handler_session_locks
 *		Session-level advisory locks a handler took stay with this session
 *		after its transaction; release every one and take the dispatcher's
 *		own lock again.
 */
static void
drop_handler_session_locks(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	if (!take_dispatcher_lock())
	{
		ereport(LOG,
				(errmsg("outbox_saga dispatcher exits: another dispatcher serves database \"%s\"",
						my_database)));
		proc_exit(0);
	}
}

/*
 * run_destination
 *		Up to BATCHES_PER_PASS batches for one destination.  Returns whether
 *		it has more ready work; adds to *delivered.
 */
static bool
run_destination(DestinationConfig *dest, int64 *activity)
{
	int			n;
	BatchResult result;
	MemoryContext cxt = CurrentMemoryContext;

	result.more = false;
	for (n = 0; n < BATCHES_PER_PASS; n++)
	{
		memset(&result, 0, sizeof(result));
		PG_TRY();
		{
			DeliveryRunBatch(dest, &result);
		}
		PG_CATCH();
		{
			ErrorData  *edata = SpiAbortKeepingError(cxt);

			ereport(WARNING,
					(errmsg("outbox_saga: dispatching to destination \"%s\" failed: %s",
							dest->name, edata->message)));
			record_batch_error(dest, edata->message);
			FreeErrorData(edata);
			return false;
		}
		PG_END_TRY();
		/* Parking counts: the next pass must see the new due times. */
		*activity += result.delivered + result.failed + result.parked;
		if (result.delivered + result.failed > 0 &&
			SinkLookup(dest->kind, false)->deliver != NULL)
			drop_handler_session_locks();
		if (!result.more)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return result.more;
}

/*
 * dispatch_pass
 *		One pass over every destination.  Returns whether some destination
 *		has more ready work; *activity counts deliveries and failures.
 */
static bool
dispatch_pass(MemoryContext loop_cxt, int64 *activity)
{
	List	   *dests;
	ListCell   *lc;
	bool		more = false;
	ExtensionState state;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "outbox_saga: taking a tick");

	state = check_extension();
	if (state == EXTENSION_MISSING)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("outbox_saga dispatcher stops: the extension is not installed in this database")));
		pg_atomic_write_u32(&my_slot->exit_reason, DISPATCHER_EXIT_NO_EXTENSION);
		proc_exit(0);
	}
	dests = NIL;
	extension_ready = (state == EXTENSION_READY);
	if (state == EXTENSION_READY)
	{
		/* Nobody consumes ticks without destinations: housekeeping ticks. */
		dests = load_destinations(loop_cxt);
		if (dests != NIL)
			take_tick();
		sleep_ms = next_due_ms();
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(loop_cxt);

	foreach(lc, dests)
	{
		DestinationConfig *dest = lfirst(lc);
		char		activity_text[NAMEDATALEN + 64];

		snprintf(activity_text, sizeof(activity_text),
				 "outbox_saga: delivering to \"%s\"", dest->name);
		pgstat_report_activity(STATE_RUNNING, activity_text);
		if (run_destination(dest, activity))
			more = true;
		MemoryContextSwitchTo(loop_cxt);
	}

	if (state == EXTENSION_READY)
	{
		pgstat_report_activity(STATE_RUNNING, "outbox_saga: driving sagas");
		if (SagaRunPass(activity))
			more = true;
	}
	return more;
}

/*
 * run_housekeeping
 *		Housekeeping in its own transaction; an error is reported and the
 *		dispatcher goes on.
 */
static void
run_housekeeping(MemoryContext cxt)
{
	pgstat_report_activity(STATE_RUNNING, "outbox_saga: housekeeping");
	PG_TRY();
	{
		HousekeepingRun();
	}
	PG_CATCH();
	{
		ErrorData  *edata = SpiAbortKeepingError(cxt);

		ereport(WARNING,
				(errmsg("outbox_saga: housekeeping failed: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * next_due_ms
 *		How long until the next retry row, destination backoff or saga step
 *		falls due, at most poll_interval.  Only retry rows that can be sent
 *		count: the heads of their aggregates (on ordered destinations), of
 *		destinations not paused, and not before the destination's own
 *		backoff; a row held behind a backing-off head would otherwise look
 *		due at once and make the dispatcher spin.  Runs in the pass's first
 *		transaction (SPI connected); something that falls due during the
 *		pass is found by the next one.
 */
static long
next_due_ms(void)
{
	long		ms = OutboxPollInterval;
	bool		isnull;
	Datum		d;
	TimestampTz due;

	SpiRunKept(&pass_plans[P_NEXT_DUE],
			   "SELECT (extract(epoch FROM LEAST("
			   "  (SELECT pg_catalog.min(GREATEST(r.next_attempt_at, d.retry_at))"
			   "     FROM outbox.delivery_retry r"
			   "     JOIN outbox.destination d ON d.id = r.destination_id"
			   "    WHERE NOT d.paused"
			   "      AND (r.aggregate_id IS NULL"
			   "           OR d.config -> 'ordered' = 'false'::jsonb"
			   "           OR NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p"
			   "                           WHERE p.destination_id = r.destination_id"
			   "                             AND p.aggregate_id = r.aggregate_id"
			   "                             AND p.id < r.id))),"
			   "  (SELECT pg_catalog.min(retry_at) FROM outbox.destination WHERE NOT paused))"
			   "  - pg_catalog.clock_timestamp()) * 1000)::bigint",
			   no_params, 0, NULL, NULL, SPI_OK_SELECT, "computing the next due time");
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			ms = Max(1, Min(ms, DatumGetInt64(d) + 1));
	}
	/* Saga retries, step timeouts and deadlines. */
	due = SagaNextDue();
	if (due != 0)
		ms = Max(1, Min(ms, (long) ((due - GetCurrentTimestamp()) / 1000) + 1));
	return ms;
}

/*
 * take_dispatcher_lock
 *		The session advisory lock that makes this the only dispatcher of the
 *		database.  Returns false if another process has it.
 */
static bool
take_dispatcher_lock(void)
{
	bool		got;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT pg_catalog.pg_try_advisory_lock(" CppAsString2(DISPATCHER_LOCK_KEY1)
					", " CppAsString2(DISPATCHER_LOCK_KEY2) ")", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not take the dispatcher lock");
	got = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 1, &isnull));
	strlcpy(my_database, get_database_name(MyDatabaseId), NAMEDATALEN);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return got;
}

/*
 * OutboxDispatcherMain
 *		Entry point of a dispatcher.
 */
void
OutboxDispatcherMain(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext loop_cxt;
	TimestampTz last_housekeeping = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (OutboxShared == NULL || slotno < 0 || slotno >= OutboxShared->max_databases)
		elog(ERROR, "outbox_saga dispatcher started without its shared memory slot");
	my_slot = &OutboxShared->slots[slotno];
	pg_atomic_write_u32(&my_slot->pid, MyProcPid);
	pg_atomic_write_u32(&my_slot->procno, MyProc->pgprocno + 1);
	before_shmem_exit(dispatcher_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", "outbox_saga dispatcher", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	if (!take_dispatcher_lock())
	{
		ereport(LOG,
				(errmsg("outbox_saga dispatcher exits: another dispatcher serves database \"%s\"",
						my_database)));
		proc_exit(0);
	}
	ereport(LOG,
			(errmsg("outbox_saga dispatcher started for database \"%s\"",
					my_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga dispatcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		int64		activity = 0;
		bool		more;
		uint64		pass;
		TimestampTz now;

		/*
		 * pg_cancel_backend() cancels what runs: a handler (a failed attempt)
		 * or a batch (recorded as an error).  Between passes there is nothing
		 * to cancel, and the dispatcher must not exit for it.
		 */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		pg_atomic_write_u32(&my_slot->wake_pending, 0);
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		more = dispatch_pass(loop_cxt, &activity);

		now = GetCurrentTimestamp();
		if (extension_ready &&
			(TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS) ||
			 (activity == 0 && last_housekeeping == 0)))
		{
			run_housekeeping(loop_cxt);
			last_housekeeping = now;
		}

		pass = pg_atomic_add_fetch_u64(&my_slot->passes, 1);
		if (activity == 0 && !more)
			pg_atomic_write_u64(&my_slot->idle_pass, pass);

		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(TopMemoryContext);

		if (more || activity > 0)
			continue;

		/*
		 * A commit during the pass set wake_pending and the latch; code that
		 * waited on the latch inside the pass (a lock wait, a sink, the saga
		 * driver) may have consumed the latch.  wake_pending still says so:
		 * do not sleep then.
		 */
		if (pg_atomic_read_u32(&my_slot->wake_pending) == 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		if (!TimestampDifferenceExceeds(now, GetCurrentTimestamp(), MIN_PASS_INTERVAL_MS))
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 MIN_PASS_INTERVAL_MS, PG_WAIT_EXTENSION);
	}
}

/*-------------------------------------------------------------------------
 *
 * observability.c
 *		What operators and tests call to see and steer dispatch:
 *		outbox.wait_idle(), outbox.wait_delivered(), the rows of
 *		outbox.workers (and their pass counters), the dispatch status shown by outbox.stats,
 *		outbox.replay_dead() and outbox.discard_dead().
 *
 * wait_idle() waits on the dispatchers' pass counters in shared memory: it
 * returns true once, for every worker of the database, a pass that began
 * after the call found nothing ready.
 * Events written by the caller's own open transaction are not visible to
 * the dispatcher, so call it after committing them.
 *
 * wait_delivered() is the stricter wait tests want: it polls the state
 * tables (as the extension, with the latest snapshot, no lock but ACCESS
 * SHARE) until no committed event is owed to the destinations it watches -
 * none of their retry rows (failed, backed off, delayed or held back) is
 * left and every event of their subscriptions is behind their position in
 * the log - waking the dispatchers meanwhile.  Delivered or dead-lettered
 * both count as done.  It returns true as soon as that holds, even with no
 * dispatcher running (nothing is owed).
 *
 * replay_dead() and discard_dead() check ownership as the caller (only the
 * owner of a destination, or a member of its role, or a superuser, may
 * touch its dead letters), then work on the state tables through kept
 * SpiStatements as the bootstrap superuser with search_path pinned
 * (RunAsExtensionBegin), in the caller's transaction: a crash or an error
 * before it commits leaves the dead letters where they were.  The other
 * functions read shared memory only, with no lock.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_type_d.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "base/guc.h"
#include "base/run_as.h"
#include "base/shmem.h"
#include "base/spi_util.h"
#include "dispatch/delivery.h"
#include "events/wakeup.h"

PG_FUNCTION_INFO_V1(outbox_saga_wait_idle);
PG_FUNCTION_INFO_V1(outbox_saga_wait_delivered);
PG_FUNCTION_INFO_V1(outbox_saga_worker_status);
PG_FUNCTION_INFO_V1(outbox_saga_dispatch_status);
PG_FUNCTION_INFO_V1(outbox_saga_replay_dead);
PG_FUNCTION_INFO_V1(outbox_saga_discard_dead);

/*
 * dispatch_off_reason
 *		Why this database has no running dispatcher, or NULL if it has one.
 */
static const char *
dispatch_off_reason(void)
{
	DispatcherSlot *slot;

	if (OutboxShared == NULL)
		return "dispatch is off: outbox_saga is not in shared_preload_libraries";
	if (!OutboxEnabled)
		return "dispatch is off: outbox_saga.enabled is off";
	slot = ShmemFindSlot(MyDatabaseId);
	if (slot == NULL || !ShmemSlotRunning(slot))
		return "dispatch is off: no dispatcher is running for this database (see outbox_saga.databases and the server log)";
	if (pg_atomic_read_u32(&slot->version_mismatch))
		return "dispatch waits: the extension's SQL version differs from the library's (run ALTER EXTENSION outbox_saga UPDATE)";
	return NULL;
}

/*
 * outbox.dispatch_status() RETURNS text
 *		NULL while a dispatcher serves this database, else why not.
 */
Datum
outbox_saga_dispatch_status(PG_FUNCTION_ARGS)
{
	const char *reason = dispatch_off_reason();

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}

/*
 * worker_idle
 *		Whether worker 'w' of 'slot', if it ran when wait_idle started (same
 *		pid), has since completed a whole pass that found nothing ready (the
 *		first pass counted may have begun before the call); a worker that
 *		stopped or was replaced since does not hold it up, and one that
 *		started since must have had such a pass too.
 */
static bool
worker_idle(DispatcherSlot *slot, int w, const uint32 *start_pid,
			const uint64 *start_pass)
{
	DispatcherWorker *wk = &slot->workers[w];
	uint32		pid = pg_atomic_read_u32(&wk->pid);

	if (pid == 0)
		return true;
	if (pid == start_pid[w])
		return pg_atomic_read_u64(&wk->idle_pass) >= start_pass[w] + 2;
	return pg_atomic_read_u64(&wk->idle_pass) != 0;
}

/*
 * all_workers_idle
 *		Whether every worker of 'slot' is idle (worker_idle).  Wakes those
 *		that are not and sleep; a busy one makes its next pass without being
 *		asked, and waking it would cost it a pass it does not need (with a
 *		tick: every 5 ms, during a drain that wait_idle times).
 */
static bool
all_workers_idle(DispatcherSlot *slot, const uint32 *start_pid,
				 const uint64 *start_pass)
{
	int			w;
	bool		idle = true;

	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
	{
		if (worker_idle(slot, w, start_pid, start_pass))
			continue;
		idle = false;
		if (pg_atomic_read_u32(&slot->workers[w].doing) == DOING_WAITING)
			ShmemWakeWorker(slot, w);
	}
	return idle;
}

/*
 * outbox.wait_idle(timeout interval) RETURNS boolean
 *		Wait until a dispatcher pass that began after the call found nothing
 *		ready to deliver in this database; false on timeout or without a
 *		dispatcher.
 */
Datum
outbox_saga_wait_idle(PG_FUNCTION_ARGS)
{
	Interval   *timeout;
	TimestampTz deadline;
	DispatcherSlot *slot = NULL;
	uint32		start_pid[OUTBOX_MAX_WORKERS_PER_DATABASE];
	uint64		start_pass[OUTBOX_MAX_WORKERS_PER_DATABASE];
	bool		started = false;
	bool		woken = false;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout must not be null")));
	timeout = PG_GETARG_INTERVAL_P(0);
	/* At most one day, compared without overflow ('1000 hours' is day 0). */
	if (timeout->month != 0 || timeout->day < 0 || timeout->time < 0 ||
		(timeout->day == 0 && timeout->time == 0) || timeout->day > 1 ||
		timeout->time > USECS_PER_DAY - (int64) timeout->day * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive and at most one day")));
	deadline = GetCurrentTimestamp() + timeout->time + (int64) timeout->day * USECS_PER_DAY;

	if (OutboxShared == NULL)
	{
		ereport(WARNING,
				(errmsg("%s", dispatch_off_reason())));
		PG_RETURN_BOOL(false);
	}

	for (;;)
	{
		if (!started)
		{
			slot = ShmemFindSlot(MyDatabaseId);
			if (slot != NULL && ShmemSlotRunning(slot))
			{
				int			w;

				for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
				{
					start_pid[w] = pg_atomic_read_u32(&slot->workers[w].pid);
					start_pass[w] = pg_atomic_read_u64(&slot->workers[w].passes);
				}
				started = true;
			}
		}
		if (started && pg_atomic_read_u32(&slot->version_mismatch))
		{
			ereport(WARNING,
					(errmsg("%s", dispatch_off_reason())));
			PG_RETURN_BOOL(false);
		}
		if (started)
		{
			if (pg_atomic_read_u32(&slot->dboid) != MyDatabaseId)
				started = woken = false;	/* the slot was reassigned: start over */
			else if (!woken)
			{
				/* A pass must begin after the call: wake every worker once. */
				ShmemWakeDispatcher(MyDatabaseId);
				woken = true;
			}
			else if (all_workers_idle(slot, start_pid, start_pass))
				PG_RETURN_BOOL(true);
		}
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 5, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Whether something committed is still owed to a destination: $1 names it,
 * or NULL for every destination that is not paused and not pulled (the
 * dispatcher cannot deliver those: sessions take them, pull.c).  Owed: a
 * retry row, an unfinished pull batch, or
 * an event of one of its subscriptions whose transaction is neither
 * consumed by its lower tick nor done in its current window (see
 * eventlog.c, READING WITHOUT GAPS, and delivery.c).  The second column
 * says whether the named destination exists.
 */
static SpiStatement owed_statement = {
	"the check for undelivered events",
	"SELECT EXISTS ("
	"  SELECT 1 FROM outbox.destination d"
	"   WHERE (CASE WHEN $1::text IS NULL THEN NOT d.paused AND d.kind <> 'pull'"
	"          ELSE d.name = $1 END)"
	"     AND (EXISTS (SELECT 1 FROM outbox.delivery_retry r WHERE r.destination_id = d.id)"
	"          OR EXISTS (SELECT 1 FROM outbox.pull_batch b WHERE b.destination_id = d.id)"
	"          OR EXISTS ("
	"            SELECT 1"
	"              FROM outbox.tick tf"
	"              JOIN outbox.subscription s ON s.destination_id = d.id"
	"              JOIN outbox.events e"
	"                ON e.txid >= pg_catalog.pg_snapshot_xmin(tf.snapshot)"
	"               AND (s.topic = '*' OR e.topic = s.topic)"
	"               AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))"
	"               AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, s.since)"
	"              LEFT JOIN outbox.tick tt ON tt.id = d.tick_to"
	"             WHERE tf.id = d.tick_from"
	"               AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, tf.snapshot)"
	"               AND NOT (tt.id IS NOT NULL AND " CURSOR_PASSED_SQL("e", "d")
	"                        AND pg_catalog.pg_visible_in_snapshot(e.txid, tt.snapshot))))),"
	" $1::text IS NULL OR EXISTS (SELECT 1 FROM outbox.destination WHERE name = $1)",
	{TEXTOID, 0}
};

/*
 * events_owed
 *		Whether a committed event is still owed to 'destination' (NULL:
 *		every destination that is not paused), read with the latest
 *		snapshot as the extension.  An unknown destination is an error.
 */
static bool
events_owed(text *destination)
{
	SavedIdentity saved;
	Datum		values[1];
	char		nulls[1];
	bool		owed;
	bool		exists;
	bool		isnull;

	values[0] = destination ? PointerGetDatum(destination) : (Datum) 0;
	nulls[0] = destination ? ' ' : 'n';

	RunAsExtensionBegin(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox_saga: SPI_connect failed");
	SpiRunLatest(&owed_statement, values, nulls, SPI_OK_SELECT);
	owed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
	exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
	RunAsExtensionEnd(&saved);

	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("destination \"%s\" does not exist",
						text_to_cstring(destination))));
	return owed;
}

/*
 * outbox.wait_delivered(timeout interval, destination text) RETURNS boolean
 *		Wait until every committed event owed to 'destination' (NULL: to
 *		every destination that is not paused) is delivered or dead-lettered;
 *		false on timeout.  Unlike wait_idle(), events waiting in a backoff
 *		or for their deliver_after time keep it waiting.
 */
Datum
outbox_saga_wait_delivered(PG_FUNCTION_ARGS)
{
	Interval   *timeout;
	TimestampTz deadline;
	text	   *destination = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	long		nap_ms = 1;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout must not be null")));
	timeout = PG_GETARG_INTERVAL_P(0);
	if (timeout->month != 0 || timeout->day < 0 || timeout->time < 0 ||
		(timeout->day == 0 && timeout->time == 0) || timeout->day > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive and at most one day")));
	deadline = GetCurrentTimestamp() + timeout->time + (int64) timeout->day * USECS_PER_DAY;

	for (;;)
	{
		DispatcherSlot *slot;

		if (!events_owed(destination))
			PG_RETURN_BOOL(true);

		/* Owed, and nobody can deliver: say why, as wait_idle() does. */
		slot = OutboxShared ? ShmemFindSlot(MyDatabaseId) : NULL;
		if (OutboxShared == NULL ||
			(slot != NULL && pg_atomic_read_u32(&slot->version_mismatch)))
		{
			ereport(WARNING,
					(errmsg("%s", dispatch_off_reason())));
			PG_RETURN_BOOL(false);
		}
		ShmemWakeDispatcher(MyDatabaseId);

		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		/* Poll fast at first, then every 50 ms. */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		nap_ms = Min(nap_ms * 2, 50);
	}
}

/*
 * find_backend
 *		The backend status of 'pid', or NULL.
 */
static PgBackendStatus *
find_backend(int pid)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = CompatLocalBeentryByIndex(i);

		if (local != NULL && local->backendStatus.st_procpid == pid)
			return &local->backendStatus;
	}
	return NULL;
}

/* Columns of outbox.worker_status(). */
#define WORKER_STATUS_COLUMNS	11

/* What DispatcherWorker.doing means, for outbox.workers. */
static const char *const doing_names[] = {
	[DOING_STARTING] = "starting",
	[DOING_WAITING] = "waiting for work",
	[DOING_PASS] = "starting a pass",
	[DOING_DELIVERING] = "delivering",
	[DOING_SAGAS] = "driving sagas",
	[DOING_HOUSEKEEPING] = "housekeeping",
};

/*
 * add_worker_row
 *		One row of outbox.worker_status(): the launcher (wk NULL) or worker
 *		'worker_no' of a database.
 */
static void
add_worker_row(ReturnSetInfo *rsinfo, const char *kind, Oid dboid, int pid,
			   DispatcherSlot *slot, int worker_no)
{
	Datum		values[WORKER_STATUS_COLUMNS];
	bool		nulls[WORKER_STATUS_COLUMNS] = {false};
	PgBackendStatus *be = find_backend(pid);
	char	   *dbname = OidIsValid(dboid) ? get_database_name(dboid) : NULL;
	PGPROC	   *proc = BackendPidGetProc(pid);

	values[0] = dbname ? CStringGetTextDatum(dbname) : (Datum) 0;
	nulls[0] = (dbname == NULL);
	values[1] = Int32GetDatum(pid);
	if (be == NULL)
	{
		values[2] = CStringGetTextDatum("starting");
		nulls[3] = nulls[4] = true;
	}
	else
	{
		const char *activity = be->st_activity_raw;

		values[2] = CStringGetTextDatum(be->st_state == STATE_RUNNING && activity[0] ?
										pgstat_clip_activity(activity) : "idle");
		values[3] = TimestampTzGetDatum(be->st_proc_start_timestamp);
		values[4] = TimestampTzGetDatum(be->st_state_start_timestamp);
		nulls[3] = (be->st_proc_start_timestamp == 0);
		nulls[4] = (be->st_state_start_timestamp == 0);
	}
	values[5] = CStringGetTextDatum(kind);
	nulls[6] = nulls[7] = nulls[8] = nulls[9] = true;
	if (slot != NULL)
	{
		DispatcherWorker *wk = &slot->workers[worker_no];
		uint32		doing = pg_atomic_read_u32(&wk->doing);
		TimestampTz since = (TimestampTz) pg_atomic_read_u64(&wk->doing_since);
		int32		claim = ShmemClaimOf(slot, worker_no);

		values[6] = Int32GetDatum(worker_no);
		nulls[6] = false;
		if (doing < lengthof(doing_names))
		{
			values[7] = CStringGetTextDatum(doing_names[doing]);
			nulls[7] = false;
		}
		values[8] = TimestampTzGetDatum(since);
		nulls[8] = (since == 0);
		values[9] = Int32GetDatum(claim);
		nulls[9] = (claim == CLAIM_NONE);
	}
	/* What it waits on now, as pg_stat_activity's wait_event_type:wait_event. */
	nulls[10] = true;
	if (proc != NULL && proc->wait_event_info != 0)
	{
		const char *type = pgstat_get_wait_event_type(proc->wait_event_info);
		const char *event = pgstat_get_wait_event(proc->wait_event_info);

		if (type != NULL && event != NULL)
		{
			values[10] = CStringGetTextDatum(psprintf("%s:%s", type, event));
			nulls[10] = false;
		}
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * outbox.worker_status() RETURNS SETOF (database, pid, state, started_at,
 *		last_activity, kind, worker, doing, doing_since, destination_id,
 *		wait_event): the launcher and every running dispatcher.
 */
Datum
outbox_saga_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (OutboxShared == NULL)
		return (Datum) 0;

	i = pg_atomic_read_u32(&OutboxShared->launcher_procno);
	if (i > 0 && i <= ProcGlobal->allProcCount && ProcGlobal->allProcs[i - 1].pid != 0)
		add_worker_row(rsinfo, "launcher", InvalidOid, ProcGlobal->allProcs[i - 1].pid,
					   NULL, 0);

	for (i = 0; i < OutboxShared->max_databases; i++)
	{
		DispatcherSlot *slot = &OutboxShared->slots[i];
		Oid			dboid = pg_atomic_read_u32(&slot->dboid);
		int			w;

		if (!OidIsValid(dboid))
			continue;
		for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		{
			uint32		pid = pg_atomic_read_u32(&slot->workers[w].pid);

			if (pid != 0)
				add_worker_row(rsinfo, "dispatcher", dboid, (int) pid, slot, w);
		}
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(outbox_saga_worker_passes);

/*
 * outbox.worker_passes(pid integer) RETURNS bigint
 *		How many passes the dispatcher with that pid has completed since it
 *		started (the column passes of outbox.workers); NULL if 'pid' is no
 *		dispatcher.  A commit that no destination wants wakes no dispatcher,
 *		and so adds no pass (issue 18).
 */
Datum
outbox_saga_worker_passes(PG_FUNCTION_ARGS)
{
	int32		pid = PG_GETARG_INT32(0);
	int			i;
	int			w;

	if (OutboxShared == NULL || pid <= 0)
		PG_RETURN_NULL();
	for (i = 0; i < OutboxShared->max_databases; i++)
	{
		DispatcherSlot *slot = &OutboxShared->slots[i];

		if (!OidIsValid(pg_atomic_read_u32(&slot->dboid)))
			continue;
		for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
			if (pg_atomic_read_u32(&slot->workers[w].pid) == (uint32) pid)
				PG_RETURN_INT64((int64) pg_atomic_read_u64(&slot->workers[w].passes));
	}
	PG_RETURN_NULL();
}

/* The dead letters dead_letter_action works on, deleted and returned. */
#define DEAD_LETTERS_OF_CALLER \
	"DELETE FROM outbox.dead_letter dl USING outbox.destination x" \
	" WHERE dl.destination_id = x.id" \
	"   AND ($1::text IS NULL OR x.name = $1)" \
	"   AND ($2::uuid[] IS NULL OR dl.event_id = ANY ($2))" \
	"   AND pg_catalog.pg_has_role($3, x.owner, 'USAGE')" \
	" RETURNING dl.*"

/* The statements of replay_dead() and discard_dead(), kept. */
enum
{
	Q_DEST_OWNER,
	Q_REPLAY_DEAD,
	Q_DISCARD_DEAD,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.destination: whose dead letters the caller names */
	[Q_DEST_OWNER] = {
		"the lookup of a destination's owner",
		"SELECT owner FROM outbox.destination WHERE name = $1",
		{TEXTOID, 0}
	},
	/* outbox.dead_letter (deleted) into outbox.delivery_retry */
	[Q_REPLAY_DEAD] = {
		"the replay of dead letters",
		"WITH d AS (" DEAD_LETTERS_OF_CALLER ")"
		" INSERT INTO outbox.delivery_retry"
		"  (destination_id, id, event_id, topic, aggregate_id, event_type,"
		"   payload, headers, created_at, deliver_after, txid,"
		"   attempts, next_attempt_at, last_error, committed_at)"
		" SELECT destination_id, id, event_id, topic, aggregate_id, event_type,"
		"        payload, headers, created_at, deliver_after, txid,"
		"        0, pg_catalog.now(), last_error, committed_at FROM d"
		" ON CONFLICT (destination_id, id) DO NOTHING",
		{TEXTOID, UUIDARRAYOID, OIDOID, 0}
	},
	/* outbox.dead_letter, joined to outbox.destination for the owner */
	[Q_DISCARD_DEAD] = {
		"the discard of dead letters",
		DEAD_LETTERS_OF_CALLER,
		{TEXTOID, UUIDARRAYOID, OIDOID, 0}
	},
};

/*
 * dead_letter_action
 *		replay (true) or discard (false) the dead letters of 'destination'
 *		(NULL: every destination the caller owns) restricted to 'event_ids'
 *		(NULL: all).  Returns how many.  Runs in the caller's transaction;
 *		the dead letters it takes are deleted (so locked) until it ends.
 */
static int64
dead_letter_action(FunctionCallInfo fcinfo, bool replay)
{
	Oid			caller = GetUserId();
	SavedIdentity saved;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int64		count;

	if (!PG_ARGISNULL(1) && array_contains_nulls(PG_GETARG_ARRAYTYPE_P(1)))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_ids must not contain nulls")));

	values[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = ObjectIdGetDatum(caller);

	RunAsExtensionBegin(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox_saga: SPI_connect failed");

	if (!PG_ARGISNULL(0))
	{
		Oid			owner;
		bool		isnull;

		if (SpiRun(&statements[Q_DEST_OWNER], values, nulls, SPI_OK_SELECT) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("destination \"%s\" does not exist",
							text_to_cstring(PG_GETARG_TEXT_PP(0)))));
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		if (!has_privs_of_role(caller, owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only the owner of destination \"%s\" may change its dead letters",
							text_to_cstring(PG_GETARG_TEXT_PP(0)))));
	}

	if (replay)
		count = (int64) SpiRun(&statements[Q_REPLAY_DEAD], values, nulls,
							   SPI_OK_INSERT);
	else
		count = (int64) SpiRun(&statements[Q_DISCARD_DEAD], values, nulls,
							   SPI_OK_DELETE_RETURNING);

	SPI_finish();
	RunAsExtensionEnd(&saved);
	if (replay && count > 0)
		WakeupNoteEventWritten();
	return count;
}

/*
 * outbox.replay_dead(destination text, event_ids uuid[]) RETURNS bigint
 *		Requeue dead letters for delivery (attempts start again at 0).
 */
Datum
outbox_saga_replay_dead(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dead_letter_action(fcinfo, true));
}

/*
 * outbox.discard_dead(destination text, event_ids uuid[]) RETURNS bigint
 *		Delete dead letters.
 */
Datum
outbox_saga_discard_dead(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dead_letter_action(fcinfo, false));
}

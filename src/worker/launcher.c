/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: starts, restarts and stops the dispatchers of every
 *		database (outbox_saga.workers_per_database processes each).
 *
 * A static background worker, registered from _PG_init when preloaded and
 * started only once recovery has finished: nothing dispatches on a hot
 * standby, and after promotion the postmaster starts the launcher, which
 * starts the dispatchers, which carry on from the positions stored in the
 * promoted database.
 *
 * The launcher connects to no database; it reads the shared catalog
 * pg_database and starts dispatcher 0 (a dynamic background worker, slot
 * and worker number in main_arg, database OID in bgw_extra) for every
 * database that accepts connections and is allowed by
 * outbox_saga.databases.  Dispatcher 0 of a database probes it: if it
 * finds no extension it exits with DISPATCHER_EXIT_NO_EXTENSION, and the
 * launcher leaves that database alone until CREATE or ALTER EXTENSION
 * anywhere asks for a rescan; if it finds the extension it sets the
 * slot's 'ready', and only then does the launcher start workers 1 .. N-1
 * (N = outbox_saga.workers_per_database, reloadable: workers at N and
 * above are stopped).  A dispatcher that exits otherwise (crash,
 * pg_terminate_backend) is started again after a second.  A database whose dispatcher was stopped by DROP
 * DATABASE & co (utility_hook.c) is not restarted while blocked_until is in
 * the future.
 *
 * The launcher owns the slots' dboid fields and the worker handles; the
 * handles live in its TopMemoryContext.  If the launcher itself restarts,
 * it stops the dispatchers it no longer has handles for, and starts them
 * again.
 *
 * INVARIANTS
 *	- Transactions: one short read-only transaction per round, to scan
 *	  pg_database (AccessShareLock, no SPI); nothing else runs in one.
 *	- The loop: one memory context reset every round; the latch is set by
 *	  a dispatcher's exit (bgw_notify_pid), by CREATE/ALTER EXTENSION
 *	  (rescan) and by the utility hook lifting a block; otherwise a round
 *	  every RESCAN_INTERVAL_MS.
 *	- SIGHUP reloads the settings (outbox_saga.enabled, .databases) at the
 *	  next round; SIGTERM ends the launcher (die), and the postmaster starts
 *	  it again after bgw_restart_time; after a crash restart shared memory is
 *	  new and the launcher starts every dispatcher again.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "base/guc.h"
#include "worker/launcher.h"
#include "base/shmem.h"

/* Delay before a dispatcher that stopped unexpectedly is started again. */
#define RESTART_DELAY_MS		1000
/* pg_database is read again at least this often. */
#define RESCAN_INTERVAL_MS		10000

typedef struct KnownDatabase
{
	Oid			oid;
	char		name[NAMEDATALEN];
} KnownDatabase;

/* What the launcher knows of one dispatcher process it started. */
typedef struct LauncherWorker
{
	BackgroundWorkerHandle *handle; /* NULL: not started by us */
	TimestampTz restart_at;
	uint32		started_generation; /* rescan generation when started */
} LauncherWorker;

typedef struct LauncherSlot
{
	LauncherWorker workers[OUTBOX_MAX_WORKERS_PER_DATABASE];
} LauncherSlot;


static LauncherSlot *lslots;
static Oid *no_extension;		/* databases probed without the extension */
static int	n_no_extension = 0;
static bool warned_full = false;
static uint32 seen_generation = 0;	/* rescan generation handled */

/*
 * LauncherRegister
 *		Register the launcher; called from _PG_init while preloading.
 */
void
LauncherRegister(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "outbox_saga");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "OutboxLauncherMain");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "outbox_saga launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "outbox_saga launcher");
	RegisterBackgroundWorker(&bgw);
}

/*
 * get_databases
 *		Every database that accepts connections and is not a template.
 */
static List *
get_databases(void)
{
	List	   *result = NIL;
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;
		KnownDatabase *kd;

		if (!db->datallowconn || db->datistemplate ||
			database_is_invalid_form(db))
			continue;
		old = MemoryContextSwitchTo(cxt);
		kd = palloc(sizeof(KnownDatabase));
		kd->oid = db->oid;
		strlcpy(kd->name, NameStr(db->datname), NAMEDATALEN);
		result = lappend(result, kd);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

/*
 * database_allowed
 *		Whether outbox_saga.databases (empty: all) lets 'name' be served.
 */
static bool
database_allowed(const char *name)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		allowed = false;

	if (OutboxDatabases == NULL || OutboxDatabases[0] == '\0')
		return true;
	raw = pstrdup(OutboxDatabases);
	if (!SplitGUCList(raw, ',', &names))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("outbox_saga.databases is not a valid list of names")));
		return false;
	}
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			allowed = true;
	return allowed;
}

static bool
lacks_extension(Oid dboid)
{
	int			i;

	for (i = 0; i < n_no_extension; i++)
		if (no_extension[i] == dboid)
			return true;
	return false;
}

static KnownDatabase *
find_database(List *dbs, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, dbs)
		if (((KnownDatabase *) lfirst(lc))->oid == dboid)
			return lfirst(lc);
	return NULL;
}

/*
 * start_dispatcher
 *		Register dispatcher 'w' of slot 'i' for database 'db'.
 */
static void
start_dispatcher(int i, int w, KnownDatabase *db, TimestampTz now)
{
	BackgroundWorker bgw;
	LauncherWorker *lw = &lslots[i].workers[w];
	MemoryContext old;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "outbox_saga");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "OutboxDispatcherMain");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "outbox_saga dispatcher %d for database \"%s\"",
			 w, db->name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "outbox_saga dispatcher");
	bgw.bgw_main_arg = Int32GetDatum(DISPATCHER_ARG(i, w));
	memcpy(bgw.bgw_extra, &db->oid, sizeof(Oid));
	bgw.bgw_notify_pid = MyProcPid;

	ShmemResetWorker(&OutboxShared->slots[i].workers[w]);
	if (w == 0)
	{
		pg_atomic_write_u32(&OutboxShared->slots[i].ready, 0);
		pg_atomic_write_u32(&OutboxShared->slots[i].version_mismatch, 0);
	}
	lw->started_generation = pg_atomic_read_u32(&OutboxShared->rescan_generation);
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, &lw->handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		lw->handle = NULL;
		lw->restart_at = TimestampTzPlusMilliseconds(now, RESCAN_INTERVAL_MS);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("outbox_saga could not start dispatcher %d for database \"%s\"",
						w, db->name),
				 errhint("Raise max_worker_processes, or lower outbox_saga.workers_per_database.")));
	}
}

/*
 * stop_worker
 *		Stop a dispatcher we started (it notifies us when it is gone), or
 *		forget its handle if it has stopped.  Returns whether it is gone.
 */
static bool
stop_worker(LauncherWorker *lw)
{
	pid_t		pid;
	BgwHandleStatus status;

	if (lw->handle == NULL)
		return true;
	status = GetBackgroundWorkerPid(lw->handle, &pid);
	if (status == BGWH_STARTED || status == BGWH_NOT_YET_STARTED)
	{
		TerminateBackgroundWorker(lw->handle);
		return false;
	}
	pfree(lw->handle);
	lw->handle = NULL;
	return true;
}

/*
 * stop_orphans
 *		At launcher start: stop dispatchers left by a previous launcher.
 */
static void
stop_orphans(void)
{
	int			i;
	int			waited = 0;

	for (i = 0; i < OutboxShared->max_databases; i++)
	{
		int			w;

		for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		{
			uint32		pid = pg_atomic_read_u32(&OutboxShared->slots[i].workers[w].pid);

			if (pid != 0)
				kill((pid_t) pid, SIGTERM);
		}
	}
	for (i = 0; i < OutboxShared->max_databases; i++)
	{
		while (ShmemSlotRunning(&OutboxShared->slots[i]) && waited < 10000)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			waited += 10;
		}
		pg_atomic_write_u32(&OutboxShared->slots[i].dboid, InvalidOid);
	}
}

/*
 * reap_worker
 *		Notice that dispatcher 'w' of slot 'i' stopped, and set when to start
 *		it again.  Returns false if the database has no extension (worker 0
 *		found none since the last rescan): leave it alone then.
 */
static bool
reap_worker(int i, int w, TimestampTz now)
{
	DispatcherWorker *wk = &OutboxShared->slots[i].workers[w];
	LauncherWorker *lw = &lslots[i].workers[w];
	bool		no_ext = (pg_atomic_read_u32(&wk->exit_reason) == DISPATCHER_EXIT_NO_EXTENSION);

	pfree(lw->handle);
	lw->handle = NULL;

	/*
	 * No extension - unless CREATE EXTENSION happened since the probe
	 * started, which it may have missed: then probe again at once.
	 */
	if (w == 0 && no_ext &&
		lw->started_generation == pg_atomic_read_u32(&OutboxShared->rescan_generation))
		return false;
	if (no_ext)
		lw->restart_at = now;
	else
		lw->restart_at = TimestampTzPlusMilliseconds(now, RESTART_DELAY_MS);
	return true;
}

/*
 * reap_dispatchers
 *		First half of a round: stop the dispatchers that should not run
 *		(database gone, not allowed, outbox_saga.enabled off, worker number
 *		at or above outbox_saga.workers_per_database), and notice those that
 *		stopped: set when to start them again, or, if worker 0 found no
 *		extension, leave their database alone until a rescan.
 */
static void
reap_dispatchers(List *dbs, TimestampTz now)
{
	int			i;

	for (i = 0; i < OutboxShared->max_databases; i++)
	{
		DispatcherSlot *slot = &OutboxShared->slots[i];
		Oid			dboid = pg_atomic_read_u32(&slot->dboid);
		KnownDatabase *db;
		bool		all_gone = true;
		bool		no_extension_found = false;
		int			w;

		if (!OidIsValid(dboid))
			continue;
		db = find_database(dbs, dboid);
		if (db == NULL || !OutboxEnabled || !database_allowed(db->name))
		{
			for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
				if (!stop_worker(&lslots[i].workers[w]))
					all_gone = false;
			if (all_gone)
				pg_atomic_write_u32(&slot->dboid, InvalidOid);
			continue;
		}
		for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		{
			LauncherWorker *lw = &lslots[i].workers[w];
			pid_t		pid;

			if (lw->handle == NULL)
				continue;
			if (w >= OutboxWorkersPerDatabase)
			{
				(void) stop_worker(lw);
				continue;
			}
			if (GetBackgroundWorkerPid(lw->handle, &pid) != BGWH_STOPPED)
				continue;
			if (!reap_worker(i, w, now))
				no_extension_found = true;
		}
		if (no_extension_found)
		{
			for (w = 1; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
				if (!stop_worker(&lslots[i].workers[w]))
					all_gone = false;
			if (all_gone)
			{
				no_extension[n_no_extension++] = dboid;
				pg_atomic_write_u32(&slot->dboid, InvalidOid);
			}
			else
				lslots[i].workers[0].restart_at = 0;	/* decide next round */
		}
	}
}

/*
 * start_dispatchers
 *		Second half of a round: give every allowed database with (maybe) the
 *		extension a slot and start its dispatcher, unless it is blocked or
 *		waiting out its restart delay.  Returns how long to sleep at most
 *		(ms).
 */
static long
start_dispatchers(List *dbs, TimestampTz now)
{
	long		wait_ms = RESCAN_INTERVAL_MS;
	ListCell   *lc;
	int			i;

	foreach(lc, dbs)
	{
		KnownDatabase *db = lfirst(lc);
		DispatcherSlot *slot;
		TimestampTz blocked;
		int			free_slot = -1;
		int			w;

		if (!database_allowed(db->name) || lacks_extension(db->oid))
			continue;
		for (i = 0; i < OutboxShared->max_databases; i++)
		{
			Oid			dboid = pg_atomic_read_u32(&OutboxShared->slots[i].dboid);

			if (dboid == db->oid)
				break;
			if (!OidIsValid(dboid) && free_slot < 0)
				free_slot = i;
		}
		if (i == OutboxShared->max_databases)
		{
			if (free_slot < 0)
			{
				if (!warned_full)
					ereport(WARNING,
							(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
							 errmsg("outbox_saga serves at most %d databases; \"%s\" has no dispatcher",
									OutboxShared->max_databases, db->name),
							 errhint("Raise outbox_saga.max_databases, or restrict outbox_saga.databases.")));
				warned_full = true;
				continue;
			}
			i = free_slot;
			memset(&lslots[i], 0, sizeof(LauncherSlot));
			pg_atomic_write_u64(&OutboxShared->slots[i].blocked_until, 0);
			pg_atomic_write_u32(&OutboxShared->slots[i].ready, 0);
			pg_atomic_write_u32(&OutboxShared->slots[i].dboid, db->oid);
		}
		slot = &OutboxShared->slots[i];
		blocked = (TimestampTz) pg_atomic_read_u64(&slot->blocked_until);
		if (blocked > now)
		{
			wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, blocked) + 1);
			continue;
		}
		for (w = 0; w < OutboxWorkersPerDatabase; w++)
		{
			LauncherWorker *lw = &lslots[i].workers[w];

			if (lw->handle != NULL)
				continue;
			/* The others only once worker 0 has found the extension. */
			if (w > 0 && (lslots[i].workers[0].handle == NULL ||
						  !pg_atomic_read_u32(&slot->ready)))
				break;
			if (lw->restart_at > now)
			{
				wait_ms = Min(wait_ms,
							  TimestampDifferenceMilliseconds(now, lw->restart_at) + 1);
				continue;
			}
			start_dispatcher(i, w, db, now);
		}
	}
	return wait_ms;
}

/*
 * reconcile
 *		One round: stop what should not run, notice what stopped, start
 *		what should run.  Returns how long to sleep at most (ms).
 */
static long
reconcile(List *dbs)
{
	TimestampTz now = GetCurrentTimestamp();

	reap_dispatchers(dbs, now);
	if (!OutboxEnabled)
		return RESCAN_INTERVAL_MS;
	return start_dispatchers(dbs, now);
}

/*
 * OutboxLauncherMain
 *		Entry point of the launcher.
 */
void
OutboxLauncherMain(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	SetConfigOption("application_name", "outbox_saga launcher", PGC_SUSET, PGC_S_OVERRIDE);

	if (OutboxShared == NULL)
		elog(ERROR, "outbox_saga shared memory is not initialized");

	lslots = MemoryContextAllocZero(TopMemoryContext,
									sizeof(LauncherSlot) * OutboxShared->max_databases);
	no_extension = MemoryContextAllocZero(TopMemoryContext,
										  sizeof(Oid) * OutboxShared->max_databases * 4 + 1);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	stop_orphans();
	pg_atomic_write_u32(&OutboxShared->launcher_procno, CompatProcNumberOf(MyProc) + 1);
	ereport(LOG, (errmsg("outbox_saga launcher started")));

	for (;;)
	{
		List	   *dbs;
		long		wait_ms;

		QueryCancelPending = false; /* nothing to cancel here */
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (pg_atomic_read_u32(&OutboxShared->rescan_generation) != seen_generation)
		{
			seen_generation = pg_atomic_read_u32(&OutboxShared->rescan_generation);
			n_no_extension = 0;
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		dbs = get_databases();
		if (list_length(dbs) + n_no_extension >= OutboxShared->max_databases * 4)
			n_no_extension = 0;
		wait_ms = reconcile(dbs);
		MemoryContextSwitchTo(TopMemoryContext);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*-------------------------------------------------------------------------
 *
 * utility_hook.c
 *		Stop a database's dispatcher before DDL that needs the database to
 *		itself: DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE,
 *		and CREATE DATABASE ... TEMPLATE it.
 *
 * These commands fail ("database is being accessed by other users") if any
 * session is connected to the database, and a dispatcher always is.  The
 * ProcessUtility hook, installed in every backend when the library is
 * preloaded, marks the database's slot blocked, sends its dispatcher
 * SIGTERM, waits (at most 10 seconds, interruptibly) until it has gone,
 * runs the command, and then lifts the block, so the launcher starts the
 * dispatcher again if the database still exists.
 *
 * PRIVILEGES
 *	The dispatcher is stopped only for a role that passes the privilege
 *	checks PostgreSQL itself makes for the command (may_run_on_database):
 *	ownership of the database, CREATEDB, CREATE on the target tablespace,
 *	a template that is one or is owned.  Any other role gets PostgreSQL's
 *	own error with the dispatcher untouched, so a role with no rights
 *	cannot stop a database's delivery by issuing such commands.  A command
 *	that passes these checks and fails later (the database is in use by a
 *	session, say) lifts the block at once and wakes the launcher.
 *
 * DROP EXTENSION outbox_saga and ALTER EXTENSION outbox_saga UPDATE (and
 * ... SET SCHEMA, which fails anyway) in a database make its dispatchers
 * step aside the same way, after the command's own privilege check
 * (ownership of the extension, may_change_extension): a dispatcher in the
 * middle of a batch holds locks on the extension's tables, which the
 * command would otherwise deadlock with.  Here the block lasts until the
 * command's transaction ends (extension_xact_callback), since the
 * extension's tables stay locked until then; then the launcher starts the
 * dispatchers again, which find the updated extension, or none.
 *
 * It also wakes this database's dispatcher after COMMIT PREPARED: the
 * prepared transaction may have written events or changed saga state (so
 * it bumps the saga work counter too), and its commit does not run the
 * commit callback of wakeup.c; and before DROP ROLE it asks
 * owner_guard.c whether the role still owns work in this database.
 *
 * INVARIANTS
 *	- Runs in the backend that issues the command, before it, in its
 *	  transaction; it takes no lock and runs no SQL of its own (owner_guard.c
 *	  reads in the caller's transaction).
 *	- The block is lifted when the command ends, also by an error
 *	  (PG_FINALLY), or for the extension's own DDL when its transaction
 *	  ends; if the backend dies first, the block expires after BLOCK_MS
 *	  and the launcher starts the dispatcher again.
 *	- A dispatcher that does not exit within STOP_WAIT_MS (a handler not
 *	  reaching CHECK_FOR_INTERRUPTS) is left running: the command then fails
 *	  as it would without the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "catalog/pg_tablespace_d.h"
#include "commands/dbcommands.h"
#include "commands/tablespace.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "base/owner_guard.h"
#include "base/shmem.h"
#include "worker/utility_hook.h"

#define STOP_WAIT_MS	10000
#define BLOCK_MS		60000

static ProcessUtility_hook_type prev_process_utility = NULL;

/* The slot blocked for this transaction's extension DDL, or NULL. */
static DispatcherSlot *extension_blocked_slot = NULL;
static bool xact_callback_registered = false;

static const char *option_string(List *options, const char *name);

/*
 * database_needing_exclusive_use
 *		The database the statement needs to itself, or NULL.
 */
static const char *
database_needing_exclusive_use(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			return NULL;
		case T_AlterDatabaseStmt:
			if (option_string(((AlterDatabaseStmt *) stmt)->options,
							  "tablespace") != NULL)
				return ((AlterDatabaseStmt *) stmt)->dbname;
			return NULL;
		case T_CreatedbStmt:
			return option_string(((CreatedbStmt *) stmt)->options, "template");
		default:
			return NULL;
	}
}

/*
 * option_string
 *		The value of option 'name' in the DefElem list 'options', or NULL.
 */
static const char *
option_string(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst(lc);

		if (strcmp(opt->defname, name) == 0 && opt->arg != NULL)
			return defGetString(opt);
	}
	return NULL;
}

/*
 * database_is_template
 *		Whether database 'dboid' is marked as a template (datistemplate).
 */
static bool
database_is_template(Oid dboid)
{
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		result;

	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
	ReleaseSysCache(tup);
	return result;
}

/*
 * may_run_on_database
 *		Whether the current role passes the privilege checks that
 *		PostgreSQL makes for 'stmt' (one that database_needing_exclusive_use
 *		named database 'dboid' for), made here before the dispatcher is
 *		stopped: DROP DATABASE needs ownership; RENAME ownership and
 *		CREATEDB; SET TABLESPACE ownership and CREATE on the tablespace;
 *		CREATE DATABASE ... TEMPLATE needs CREATEDB and a template that is
 *		marked as one or owned.  Superusers pass them all.
 */
static bool
may_run_on_database(Node *stmt, Oid dboid)
{
	Oid			role = GetUserId();
	const char *spcname;
	Oid			spc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return CompatDatabaseOwnercheck(dboid, role);
		case T_RenameStmt:
			return CompatDatabaseOwnercheck(dboid, role) &&
				have_createdb_privilege();
		case T_AlterDatabaseStmt:
			spcname = option_string(((AlterDatabaseStmt *) stmt)->options,
									"tablespace");
			spc = spcname != NULL ? get_tablespace_oid(spcname, true) : InvalidOid;
			return CompatDatabaseOwnercheck(dboid, role) && OidIsValid(spc) &&
				CompatTablespaceAclcheck(spc, role, ACL_CREATE) == ACLCHECK_OK;
		case T_CreatedbStmt:
			return have_createdb_privilege() &&
				(database_is_template(dboid) ||
				 CompatDatabaseOwnercheck(dboid, role));
		default:
			return false;
	}
}

/*
 * names_own_extension
 *		Whether 'stmt' is DDL on the outbox_saga extension itself that locks
 *		its tables: DROP EXTENSION (among others) or ALTER EXTENSION.
 */
static bool
names_own_extension(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropStmt:
			if (((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
				return false;
			foreach(lc, ((DropStmt *) stmt)->objects)
				if (strcmp(strVal(lfirst(lc)), "outbox_saga") == 0)
					return true;
			return false;
		case T_AlterExtensionStmt:
			return strcmp(((AlterExtensionStmt *) stmt)->extname, "outbox_saga") == 0;
		case T_AlterObjectSchemaStmt:
			return ((AlterObjectSchemaStmt *) stmt)->objectType == OBJECT_EXTENSION &&
				strcmp(strVal(((AlterObjectSchemaStmt *) stmt)->object), "outbox_saga") == 0;
		default:
			return false;
	}
}

/*
 * may_change_extension
 *		Whether the current role passes PostgreSQL's own check for DROP or
 *		ALTER EXTENSION outbox_saga in this database: ownership of the
 *		extension (superusers own everything).  False if it is not here.
 */
static bool
may_change_extension(void)
{
	Oid			ext = get_extension_oid("outbox_saga", true);

	return OidIsValid(ext) && CompatExtensionOwnercheck(ext, GetUserId());
}

/*
 * extension_xact_callback
 *		At the end of the transaction that ran the extension's DDL: lift the
 *		block, so that the launcher starts the dispatchers again.
 */
static void
extension_xact_callback(XactEvent event, void *arg)
{
	if (extension_blocked_slot == NULL)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		pg_atomic_write_u64(&extension_blocked_slot->blocked_until, 0);
		extension_blocked_slot = NULL;
		ShmemWakeLauncher(true);
	}
}

/*
 * stop_dispatcher
 *		Block the slot of database 'dboid' and wait for its dispatchers to
 *		exit.  Returns the slot, or NULL if the database has none.
 */
static DispatcherSlot *
stop_dispatcher(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);
	TimestampTz start = GetCurrentTimestamp();
	uint32		pid;

	if (slot == NULL)
		return NULL;
	pg_atomic_write_u64(&slot->blocked_until,
						(uint64) TimestampTzPlusMilliseconds(start, BLOCK_MS));
	while (ShmemSlotRunning(slot))
	{
		int			w;

		for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
			if ((pid = pg_atomic_read_u32(&slot->workers[w].pid)) != 0)
				kill((pid_t) pid, SIGTERM);
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STOP_WAIT_MS))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return slot;
}

/*
 * outbox_process_utility
 *		The ProcessUtility hook: the checks and the stop described in the
 *		file header around the previous hook or standard_ProcessUtility.
 */
static void
outbox_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	const char *dbname = NULL;
	DispatcherSlot *volatile slot = NULL;

	if (IsA(pstmt->utilityStmt, DropRoleStmt))
		OwnerGuardCheckDropRole((DropRoleStmt *) pstmt->utilityStmt);
	if (OutboxShared != NULL)
		dbname = database_needing_exclusive_use(pstmt->utilityStmt);
	if (dbname != NULL)
	{
		Oid			dboid = get_database_oid(dbname, true);

		if (OidIsValid(dboid) && dboid != MyDatabaseId &&
			may_run_on_database(pstmt->utilityStmt, dboid))
			slot = stop_dispatcher(dboid);
	}
	else if (OutboxShared != NULL && extension_blocked_slot == NULL &&
			 names_own_extension(pstmt->utilityStmt) && may_change_extension())
	{
		if (!xact_callback_registered)
		{
			RegisterXactCallback(extension_xact_callback, NULL);
			xact_callback_registered = true;
		}
		/* Lifted when this transaction ends, not when the command does. */
		extension_blocked_slot = stop_dispatcher(MyDatabaseId);
	}

	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (slot != NULL)
		{
			pg_atomic_write_u64(&slot->blocked_until, 0);
			ShmemWakeLauncher(false);
		}
	}
	PG_END_TRY();

	if (OutboxShared != NULL && IsA(pstmt->utilityStmt, TransactionStmt) &&
		((TransactionStmt *) pstmt->utilityStmt)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		/*
		 * It may have changed destinations: the summary too (shmem.c); and
		 * saga state: count it for the saga driver (before the wake-up).
		 */
		ShmemTopicsInvalidate(MyDatabaseId);
		ShmemSagaWorkBump(MyDatabaseId);
		ShmemWakeDispatcher(MyDatabaseId);
	}
}

/*
 * UtilityHookInit
 *		Install the hook; called from _PG_init while preloading.
 */
void
UtilityHookInit(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = outbox_process_utility;
}

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
 * It also wakes this database's dispatcher after COMMIT PREPARED: the
 * prepared transaction may have written events, and its commit does not
 * run the commit callback of wakeup.c; and before DROP ROLE it asks
 * owner_guard.c whether the role still owns work in this database.
 *
 * INVARIANTS
 *	- Runs in the backend that issues the command, before it, in its
 *	  transaction; it takes no lock and runs no SQL of its own (owner_guard.c
 *	  reads in the caller's transaction).
 *	- The block is lifted when the command ends, also by an error
 *	  (PG_FINALLY); if the backend dies first, the block expires after
 *	  BLOCK_MS and the launcher starts the dispatcher again.
 *	- A dispatcher that does not exit within STOP_WAIT_MS (a handler not
 *	  reaching CHECK_FOR_INTERRUPTS) is left running: the command then fails
 *	  as it would without the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "base/owner_guard.h"
#include "base/shmem.h"
#include "worker/utility_hook.h"

#define STOP_WAIT_MS	10000
#define BLOCK_MS		60000

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * database_needing_exclusive_use
 *		The database the statement needs to itself, or NULL.
 */
static const char *
database_needing_exclusive_use(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			return NULL;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					return ((AlterDatabaseStmt *) stmt)->dbname;
			return NULL;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst(lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					return defGetString(opt);
			}
			return NULL;
		default:
			return NULL;
	}
}

/*
 * stop_dispatcher
 *		Block the slot of database 'dboid' and wait for its dispatcher to
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
	while ((pid = pg_atomic_read_u32(&slot->pid)) != 0)
	{
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

		if (OidIsValid(dboid) && dboid != MyDatabaseId)
			slot = stop_dispatcher(dboid);
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
		ShmemWakeDispatcher(MyDatabaseId);
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

/*-------------------------------------------------------------------------
 *
 * run_as.c
 *		Switching identity: to the extension's rights for the state tables,
 *		to an owner's rights for user code (G10).
 *
 * EXTENSION RIGHTS
 *	RunAsExtensionBegin / RunAsExtensionEnd switch the SQL API to the
 *	bootstrap superuser, after every permission check was made as the
 *	caller, to read and write the state tables (granted to nobody).  The
 *	search_path is pinned to pg_catalog, pg_temp for as long: otherwise the
 *	caller's search_path (e.g. "mine, pg_catalog") would let an operator or
 *	function of the caller's resolve inside a superuser statement.  An
 *	error in between is undone by the (sub)transaction's abort.
 *
 * OWNER RIGHTS
 *	RunAsOwner runs user code - a function destination's handler, a saga's
 *	function or emit step - as the role that owns it, in a subtransaction,
 *	with SECURITY_RESTRICTED_OPERATION, search_path = pg_catalog, pg_temp
 *	and the owner's statement timeout.  Whatever the code does to settings
 *	is undone when it returns, and its error becomes a return value: the
 *	caller's transaction, resource owner, memory context and identity are
 *	unchanged either way.  A role that no longer exists fails the call
 *	(42704), so nothing ever runs under a stale OID.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "catalog/pg_authid_d.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "base/run_as.h"
#include "base/spi_util.h"

/*
 * RunAsExtensionBegin
 *		Switch to the bootstrap superuser with search_path = pg_catalog,
 *		pg_temp, saving the caller's identity in *saved.  Every permission
 *		check must have been made before.  Undone by RunAsExtensionEnd();
 *		an error in between is undone by the transaction's abort.
 */
void
RunAsExtensionBegin(SavedIdentity *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	saved->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * RunAsExtensionEnd
 *		Return to the identity and search_path saved by RunAsExtensionBegin().
 */
void
RunAsExtensionEnd(const SavedIdentity *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
	AtEOXact_GUC(true, saved->guc_nestlevel);
}

/*
 * RunAsExtensionRun
 *		SpiRun() of 'stmt' with the extension's rights (RunAsExtensionBegin
 *		and End around it), for the SQL API after its permission checks.  No
 *		user code runs while the identity is switched; an error restores it
 *		with the (sub)transaction's abort.  Returns SPI_processed.
 */
uint64
RunAsExtensionRun(SpiStatement *stmt, Datum *values, const char *nulls,
				  int expect)
{
	SavedIdentity saved;
	uint64		n;

	RunAsExtensionBegin(&saved);
	n = SpiRun(stmt, values, nulls, expect);
	RunAsExtensionEnd(&saved);
	return n;
}

/*
 * RunAsCheckExecute
 *		Error 42501 unless 'role' may execute function 'fn' ('what' names it
 *		in the message).  For user code the extension calls through fmgr
 *		(handlers, saga step functions, outbox.emit for emit steps), which
 *		bypasses the executor's own check; made at every call, since a
 *		REVOKE of a role membership changes nothing in pg_proc and would
 *		outlive any cached check (G14).
 */
void
RunAsCheckExecute(Oid fn, Oid role, const char *what)
{
	if (pg_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute %s",
						GetUserNameFromId(role, false), what)));
}

typedef struct OwnerCall
{
	Oid			role;
	int64		timeout_ms;
	void		(*fn) (void *);
	void	   *arg;
} OwnerCall;

/*
 * run_as_owner_body
 *		The body of RunAsOwner, in its subtransaction.  On an error the
 *		subtransaction's abort restores the identity and the settings; the
 *		statement timeout is disabled by the caller.
 */
static void
run_as_owner_body(void *arg)
{
	OwnerCall  *c = arg;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(c->role,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (c->timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, (int) Min(c->timeout_ms, INT_MAX));

	c->fn(c->arg);

	disable_timeout(STATEMENT_TIMEOUT, false);

	/*
	 * Undo every setting the call changed, session-level ones included (as
	 * if it had failed): a handler must not leave, say, a search_path behind
	 * for the dispatcher's own statements, which run as superuser.
	 */
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * RunAsOwner
 *		Run fn(arg) in a subtransaction as 'role', with
 *		SECURITY_RESTRICTED_OPERATION, search_path = pg_catalog, pg_temp and
 *		a statement timeout of 'timeout_ms' (0: none).  Every setting it
 *		changes, even with SET SESSION / set_config(..., false), is undone
 *		when it returns.  Returns true if it returned; if it raised an
 *		error, rolls the subtransaction back and returns false with
 *		*error = "SQLSTATE: message" (at most RUN_AS_MAX_ERROR_LENGTH bytes
 *		of the message, in the caller's memory context).  A role that no
 *		longer exists (dropped in another database, where the DROP ROLE
 *		guard of owner_guard.c could not see its destinations and sagas)
 *		fails the call with 42704.
 */
bool
RunAsOwner(Oid role, int64 timeout_ms, void (*fn) (void *), void *arg,
		   char **error)
{
	OwnerCall	c = {role, timeout_ms, fn, arg};
	ErrorData  *edata;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
	{
		*error = psprintf("42704: the owner (role OID %u) no longer exists; "
						  "drop and re-create the destination or saga definition "
						  "as an existing role", role);
		return false;
	}
	if (SpiTryInSubtransaction(run_as_owner_body, &c, &edata))
		return true;

	disable_timeout(STATEMENT_TIMEOUT, false);
	*error = psprintf("%s: %.*s", unpack_sql_state(edata->sqlerrcode),
					  RUN_AS_MAX_ERROR_LENGTH, edata->message);
	FreeErrorData(edata);
	return false;
}

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
 *	with SECURITY_RESTRICTED_OPERATION, the search_path recorded for it and
 *	a hard timeout.  Whatever the code does to settings is undone when it
 *	returns, and its error becomes a return value: the caller's
 *	transaction, resource owner, memory context and identity are unchanged
 *	either way.  A role that no longer exists fails the call (42704), so
 *	nothing ever runs under a stale OID.
 *	RunAsOwnerEach does the same for a run of calls (a batch's handler
 *	calls) in ONE subtransaction, with one identity switch and one
 *	search_path: each call still has its own timeout and its settings
 *	undone before the next (a GUC nest level of its own), but a failed
 *	call rolls back the whole run, and the caller runs again the calls
 *	before it if their writes are to stay (dispatch/delivery.c).
 *
 * SEARCH PATHS OF USER CODE
 *	A destination or saga definition records the search_path of the role
 *	that created it (RunAsCurrentSearchPath: the setting's value at that
 *	moment, as SET search_path FROM CURRENT takes it), or one given
 *	explicitly (RunAsCheckSearchPath: it must parse as a list of
 *	identifiers, 22023 otherwise).  Both end in pg_temp: a path that does
 *	not name pg_temp gets ", pg_temp" appended (RunAsSearchPathWithTemp),
 *	because PostgreSQL otherwise searches the session's temporary schema
 *	FIRST, and a temporary object of whatever session runs the code (a
 *	dispatcher, or a caller of outbox.deliver_pending) must never capture
 *	an unqualified name.  RunAsOwner applies the path inside the call's
 *	own GUC nest level - set at entry, undone at exit - so a function's own
 *	SET search_path clause still wins (it is applied when the function is
 *	entered) and nothing a handler sets reaches the next one.  Rows written
 *	by other paths than the SQL API (0.1.0's destinations and definitions,
 *	restored rows of old dumps) have the column default pg_catalog, pg_temp.
 *
 * HARD TIMEOUT
 *	A call that overruns its timeout fails and is rolled back, whatever the
 *	code does.  The deadline is a timeout of our own (RegisterTimeout,
 *	USER_TIMEOUT) armed with enable_timeout_every: at the deadline and then
 *	every OWNER_CANCEL_REPEAT_MS until the call returns, its handler sets
 *	QueryCancelPending, so the next CHECK_FOR_INTERRUPTS raises 57014 again
 *	- a PL/pgSQL block that catches query_canceled and carries on is
 *	interrupted again at its next statement.  Once the deadline has passed
 *	the call has failed, even if it then returns normally: its
 *	subtransaction is rolled back and the error is "57014: <what> of N ms"
 *	(RUN_AS_TIMED_OUT), so callers classify it by the outcome, never by a
 *	message text.  The timeout is disarmed, and a cancel it left pending is
 *	cleared, before the subtransaction ends, so it never hits the caller's
 *	own statements.  Code that swallows every cancel and never returns
 *	keeps the process busy until it is terminated: die (SIGTERM,
 *	pg_terminate_backend) is processed before a query cancel and cannot be
 *	caught, so the worker still exits promptly.  Only the outermost call
 *	arms the timeout (user code cannot reach RunAsOwner again, but a nested
 *	call would run under the outer deadline).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_authid_d.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "base/run_as.h"
#include "base/spi_util.h"

/* The search_path of user code whose row records none. */
#define RUN_AS_DEFAULT_SEARCH_PATH	"pg_catalog, pg_temp"

/* After the deadline, the cancel is repeated this often until the call ends. */
#define OWNER_CANCEL_REPEAT_MS	100

/* The timeout of RunAsOwner calls (registered on first use). */
static TimeoutId owner_timeout_id = MAX_TIMEOUTS;
static bool owner_timeout_registered = false;

/* How many RunAsOwner calls are running (user code calling in again). */
static int	owner_call_depth = 0;

/* Set by the timeout's handler: the running call passed its deadline. */
static volatile sig_atomic_t owner_call_overran = false;

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
	if (CompatProcAclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute %s",
						GetUserNameFromId(role, false), what)));
}

/*
 * RunAsSearchPathWithTemp
 *		'path' (a search_path value) with ", pg_temp" appended unless it
 *		names pg_temp already; NULL if it does not parse as a list of
 *		identifiers.  An empty list becomes "pg_temp".
 */
char *
RunAsSearchPathWithTemp(const char *path)
{
	char	   *raw = pstrdup(path);
	List	   *names;
	ListCell   *lc;

	if (!SplitIdentifierString(raw, ',', &names))
		return NULL;
	foreach(lc, names)
	{
		if (strcmp((const char *) lfirst(lc), "pg_temp") == 0)
			return pstrdup(path);
	}
	if (names == NIL)
		return pstrdup("pg_temp");
	return psprintf("%s, pg_temp", path);
}

/*
 * RunAsCheckSearchPath
 *		A search_path given by a user for user code ('what' names it in
 *		messages): at most RUN_AS_MAX_SEARCH_PATH bytes, a list of
 *		identifiers as the search_path setting takes it.  Returns it with
 *		pg_temp last if it did not name pg_temp; errors 22023.
 */
char *
RunAsCheckSearchPath(const char *value, const char *what)
{
	char	   *path;

	if (strlen(value) > RUN_AS_MAX_SEARCH_PATH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("The limit is %d bytes.", RUN_AS_MAX_SEARCH_PATH)));
	path = RunAsSearchPathWithTemp(value);
	if (path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a valid search_path", what),
				 errdetail("A search_path is a comma-separated list of schema names, for example 'app, public'.")));
	return path;
}

/*
 * RunAsCurrentSearchPath
 *		The caller's search_path as it is now (as SET search_path FROM
 *		CURRENT takes it), with pg_temp last unless it names pg_temp: what a
 *		new destination or saga definition records for its handlers.
 */
char *
RunAsCurrentSearchPath(void)
{
	const char *current = GetConfigOption("search_path", false, false);

	return RunAsCheckSearchPath(current ? current : "", "the current search_path");
}

/*
 * RunAsInOwnerCall
 *		Whether user code run by RunAsOwner is running now (and calls us
 *		back, e.g. a handler calling outbox.deliver_pending).
 */
bool
RunAsInOwnerCall(void)
{
	return owner_call_depth > 0;
}

/* One RunAsOwnerEach() run: calls fn(arg, i) for i = from .. to - 1. */
typedef struct OwnerRun
{
	Oid			role;
	const char *search_path;
	int64		timeout_ms;
	bool		owns_timeout;	/* the running call armed the timeout */
	bool		armed;			/* ... and it is not disarmed yet */
	void		(*fn) (void *arg, int i);
	void	   *arg;
	int			from;
	int			to;
	int			current;		/* the call running, or the one that failed */
} OwnerRun;

/*
 * owner_timeout_handler
 *		The timeout's handler (in the SIGALRM handler): ask for a query
 *		cancel, as StatementCancelHandler does.  handle_sig_alarm sets the
 *		latch, so a wait wakes up to process it.
 */
static void
owner_timeout_handler(void)
{
	owner_call_overran = true;
	if (!proc_exit_inprogress)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
}

/*
 * owner_timeout_arm
 *		Arm the hard timeout of a call: a cancel at now + timeout_ms, then
 *		every OWNER_CANCEL_REPEAT_MS.  Only the outermost call arms it.
 *		Cheap enough per call: while PostgreSQL's alarm is pending at an
 *		earlier time, re-arming makes no system call (timeout.c).
 */
static void
owner_timeout_arm(OwnerRun *c)
{
	c->owns_timeout = false;
	c->armed = false;
	if (c->timeout_ms <= 0)
		return;
	if (!owner_timeout_registered)
	{
		owner_timeout_id = RegisterTimeout(USER_TIMEOUT, owner_timeout_handler);
		owner_timeout_registered = true;
	}
	else if (get_timeout_active(owner_timeout_id))
		return;					/* a nested call: the outer deadline rules */
	owner_call_overran = false;
	enable_timeout_every(owner_timeout_id,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 Min(c->timeout_ms, PG_INT32_MAX)),
						 OWNER_CANCEL_REPEAT_MS);
	c->owns_timeout = true;
	c->armed = true;
}

/*
 * owner_timeout_disarm
 *		Disarm the hard timeout; a cancel it asked for and that was not
 *		processed yet is withdrawn (it must not hit the caller's statements).
 *		Idempotent.
 */
static void
owner_timeout_disarm(OwnerRun *c)
{
	if (!c->armed)
		return;
	disable_timeout(owner_timeout_id, false);
	if (owner_call_overran)
		QueryCancelPending = false;
	c->armed = false;
}

/*
 * run_one_call
 *		Call i of a run, under its own hard timeout.  Returning after the
 *		deadline is an error all the same (RunAsOwner).
 */
static void
run_one_call(OwnerRun *c, int i)
{
	c->current = i;
	owner_timeout_arm(c);
	owner_call_depth++;
	PG_TRY();
	{
		c->fn(c->arg, i);
	}
	PG_CATCH();
	{
		owner_call_depth--;
		owner_timeout_disarm(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	owner_call_depth--;
	owner_timeout_disarm(c);

	if (c->owns_timeout && owner_call_overran)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the call returned after its timeout")));
}

/*
 * run_as_owner_body
 *		The body of RunAsOwnerEach, in its subtransaction.  On an error the
 *		subtransaction's abort restores the identity and the settings; the
 *		timeout is disarmed before the error leaves.
 */
static void
run_as_owner_body(void *arg)
{
	OwnerRun   *c = arg;
	Oid			save_userid;
	int			save_sec;
	int			run_level;
	int			i;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(c->role,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/* The recorded path, undone with everything else at the end. */
	run_level = NewGUCNestLevel();
	(void) set_config_option("search_path", c->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	/* One call: the run's own level undoes what it sets. */
	if (c->to - c->from == 1)
		run_one_call(c, c->from);
	else
	{
		for (i = c->from; i < c->to; i++)
		{
			/*
			 * Each call's settings are undone before the next, as if it had
			 * failed, session-level ones included: the run's search_path is
			 * what the next call starts with.
			 */
			int			call_level = NewGUCNestLevel();

			run_one_call(c, i);
			AtEOXact_GUC(false, call_level);
		}
	}

	/*
	 * Undo every setting the calls changed (as if they had failed): user
	 * code must not leave, say, a search_path behind for the dispatcher's
	 * own statements, which run as superuser.
	 */
	AtEOXact_GUC(false, run_level);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * RunAsOwnerEach
 *		Calls fn(arg, i) for i = from .. to - 1, in order, in ONE
 *		subtransaction, as 'role' with SECURITY_RESTRICTED_OPERATION and
 *		'search_path' (the one recorded for the code; pg_temp is appended
 *		unless it is named, see SEARCH PATHS OF USER CODE; NULL: pg_catalog,
 *		pg_temp).  Each call has its own hard timeout of 'timeout_ms' (0:
 *		none; see HARD TIMEOUT), and every setting a call changes, even with
 *		SET SESSION / set_config(..., false), is undone before the next call
 *		and at the end; a call sees what the calls before it wrote.  Returns
 *		RUN_AS_OK if every call returned in time.  Otherwise the run stops
 *		at the first call that did not: the subtransaction is rolled back,
 *		the writes of the calls before it too, *failed_at is that call's i
 *		(from, if the run could not start: a role that no longer exists,
 *		42704, or a recorded search_path that does not parse, 22023) and
 *		*error says why (in the caller's memory context): RUN_AS_TIMED_OUT,
 *		*error = "57014: <timeout_what> of N ms" ('timeout_what' says whose
 *		timeout, e.g. "handler exceeded the destination's timeout"); else
 *		RUN_AS_FAILED, *error = "SQLSTATE: message" (at most
 *		RUN_AS_MAX_ERROR_LENGTH bytes of the message).  A role can be
 *		missing when it was dropped in another database, where the DROP
 *		ROLE guard of owner_guard.c could not see its destinations and
 *		sagas.
 *		One subtransaction, identity switch and search_path for many calls
 *		is what makes a batch of handler calls cheap; a caller that needs
 *		each call's writes kept or undone on their own runs again the calls
 *		before a failed one (dispatch/delivery.c).
 */
RunAsResult
RunAsOwnerEach(Oid role, const char *search_path, int64 timeout_ms,
			   const char *timeout_what, void (*fn) (void *arg, int i),
			   void *arg, int from, int to, int *failed_at, char **error)
{
	OwnerRun	c = {role, NULL, timeout_ms, false, false, fn, arg, from, to, from};
	ErrorData  *edata;
	bool		ok;

	Assert(from < to);
	*failed_at = from;

	/* A row written by SQL alone may lack pg_temp: it goes last all the same. */
	c.search_path = search_path ? RunAsSearchPathWithTemp(search_path) : NULL;
	if (c.search_path == NULL)
	{
		if (search_path != NULL)
		{
			*error = psprintf("22023: the recorded search_path \"%.*s\" is not valid; "
							  "set another with outbox.alter_destination() or saga.define()",
							  RUN_AS_MAX_ERROR_LENGTH / 2, search_path);
			return RUN_AS_FAILED;
		}
		c.search_path = RUN_AS_DEFAULT_SEARCH_PATH;
	}

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
	{
		*error = psprintf("42704: the owner (role OID %u) no longer exists; "
						  "drop and re-create the destination or saga definition "
						  "as an existing role", role);
		return RUN_AS_FAILED;
	}

	ok = SpiTryInSubtransaction(run_as_owner_body, &c, &edata);
	owner_timeout_disarm(&c);	/* already done by the body; be sure */
	if (ok)
		return RUN_AS_OK;
	*failed_at = c.current;
	if (c.owns_timeout && owner_call_overran)
	{
		*error = psprintf("57014: %s of " INT64_FORMAT " ms", timeout_what,
						  timeout_ms);
		FreeErrorData(edata);
		return RUN_AS_TIMED_OUT;
	}
	*error = psprintf("%s: %.*s", unpack_sql_state(edata->sqlerrcode),
					  RUN_AS_MAX_ERROR_LENGTH, edata->message);
	FreeErrorData(edata);
	return RUN_AS_FAILED;
}

/* RunAsOwner's one call, as a call of a run. */
typedef struct SingleCall
{
	void		(*fn) (void *);
	void	   *arg;
} SingleCall;

static void
single_call(void *arg, int i)
{
	SingleCall *call = arg;

	call->fn(call->arg);
}

/*
 * RunAsOwner
 *		Run fn(arg) as RunAsOwnerEach runs one call: in a subtransaction as
 *		'role', with the recorded 'search_path' and a hard timeout; every
 *		setting it changes is undone when it returns.  Returns RUN_AS_OK if
 *		it returned in time; otherwise it was rolled back and *error says
 *		why (RunAsOwnerEach).
 */
RunAsResult
RunAsOwner(Oid role, const char *search_path, int64 timeout_ms,
		   const char *timeout_what, void (*fn) (void *), void *arg,
		   char **error)
{
	SingleCall	call = {fn, arg};
	int			failed_at;

	return RunAsOwnerEach(role, search_path, timeout_ms, timeout_what,
						  single_call, &call, 0, 1, &failed_at, error);
}

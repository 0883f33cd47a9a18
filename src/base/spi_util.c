/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *		Helpers shared by the dispatcher, the saga driver and the SQL API.
 *
 * SpiBecomeSuperuser / SpiRestoreIdentity switch the SQL API to the
 * bootstrap superuser, after every permission check was made as the
 * caller, to read and write the state tables (granted to nobody).  The
 * search_path is pinned to pg_catalog, pg_temp for as long: otherwise the
 * caller's search_path (e.g. "mine, pg_catalog") would let an operator or
 * function of the caller's resolve inside a superuser statement.
 *
 * SpiRunKept prepares a statement once per process (SPI_keepplan: the plan
 * lives until the process ends and is re-planned by the plan cache when
 * the objects it uses change), then executes it with parameters only; it
 * checks the result code.  ParseIntervalNamed parses an interval and, on a
 * syntax error, names the value instead of quoting it (a config value may
 * be a secret).  Both run in the caller's transaction.
 *
 * SpiTryInSubtransaction runs a piece of work in an internal subtransaction
 * and turns an error into a return value, leaving the caller's memory
 * context and resource owner as they were; SpiAbortKeepingError is the
 * PG_CATCH half of the worker loops: keep the error, abort the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "catalog/pg_authid_d.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "base/spi_util.h"

/*
 * SpiBecomeSuperuser
 *		Switch to the bootstrap superuser with search_path = pg_catalog,
 *		pg_temp, saving the caller's identity in *saved.  Every permission
 *		check must have been made before.  Undone by SpiRestoreIdentity();
 *		an error in between is undone by the transaction's abort.
 */
void
SpiBecomeSuperuser(SavedIdentity *saved)
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
 * SpiRestoreIdentity
 *		Return to the identity and search_path saved by SpiBecomeSuperuser().
 */
void
SpiRestoreIdentity(const SavedIdentity *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
	AtEOXact_GUC(true, saved->guc_nestlevel);
}

/*
 * SpiRunKept
 *		Execute 'sql' (parameter types 'types', 0-terminated, at most 16)
 *		with 'values'/'nulls', preparing and keeping its plan in *plan on
 *		first use; raise an error if the result code is not 'expect'.
 *		'what' names the statement in that error.
 */
void
SpiRunKept(SPIPlanPtr *plan, const char *sql, const Oid *types,
		   int cursor_options, Datum *values, const char *nulls,
		   int expect, const char *what)
{
	int			rc;

	if (*plan == NULL)
	{
		int			nargs = 0;
		SPIPlanPtr	p;

		while (nargs < 16 && types[nargs] != 0)
			nargs++;
		p = SPI_prepare_cursor(sql, nargs, (Oid *) types, cursor_options);
		if (p == NULL)
			elog(ERROR, "could not prepare %s: %s", what,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "could not keep the plan of %s", what);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * ParseIntervalNamed
 *		interval_in() of 'str'.  Its syntax errors quote the input; this one
 *		says "<what> is not a valid interval" instead, with the same SQLSTATE.
 *		Nothing runs between catching and raising, so no subtransaction is
 *		needed: the new error aborts the transaction exactly as the caught
 *		one would have.  Any other error is re-thrown as it is.
 */
Interval *
ParseIntervalNamed(const char *what, const char *str)
{
	MemoryContext cxt = CurrentMemoryContext;
	Interval   *result = NULL;

	PG_TRY();
	{
		result = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													   CStringGetDatum(str),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s is not a valid interval", what),
				 errhint("Write an interval such as \"30 seconds\" or \"00:05:00\", or a number of seconds.")));
	}
	PG_END_TRY();
	return result;
}

/*
 * SpiTryInSubtransaction
 *		Run fn(arg) in an internal subtransaction.  True if it returned (the
 *		subtransaction is released); false if it raised an error (rolled
 *		back; the error in *edata, copied into the caller's memory context,
 *		or dropped if edata is NULL).  The caller's memory context and
 *		resource owner are current again either way.
 */
bool
SpiTryInSubtransaction(void (*fn) (void *), void *arg, ErrorData **edata)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		if (edata != NULL)
			*edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * SpiAbortKeepingError
 *		In the PG_CATCH of a worker loop: the error, copied into 'cxt', with
 *		the error state flushed and the current transaction aborted, so the
 *		loop can log it and go on in a fresh transaction.
 */
ErrorData *
SpiAbortKeepingError(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
	return edata;
}

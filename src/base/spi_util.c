/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *		Helpers shared by the dispatcher, the saga driver and the SQL API.
 *
 * ONE KEPT-STATEMENT IDIOM
 *	Every statement the C code runs through SPI is an SpiStatement: its
 *	text, parameter types and a name for errors, declared (usually in a
 *	static table) by the file that owns the tables it touches, and run with
 *	SpiRun.  SpiRun prepares it once per process (SPI_keepplan: the plan
 *	lives until the process ends and is re-planned by the plan cache when
 *	the objects it uses change), then executes it with parameters only -
 *	never an interpolated value - and checks the result code.  It runs in
 *	the caller's transaction, with the caller's identity and SPI connection.
 *	SpiRunLatest does the same for a read that must use the latest
 *	snapshot rather than the transaction's (after taking a lock in
 *	REPEATABLE READ).  Only generated DDL (capture_table's CREATE TRIGGER,
 *	whose text carries quoted identifiers) is run otherwise.
 *
 * SpiTryInSubtransaction runs a piece of work in an internal subtransaction
 * and turns an error into a return value, leaving the caller's memory
 * context and resource owner as they were; SpiAbortKeepingError is the
 * PG_CATCH half of the worker loops: keep the error, abort the transaction;
 * SpiWorkerInterruptsBetweenSteps is their CHECK_FOR_INTERRUPTS outside a
 * step, where a cancel has nothing to cancel and an error would end the
 * process; SpiWorkerWithoutCancel runs what a cancel must not turn into
 * such an error either (the steps whose error ends the process, and
 * SpiWorkerReportCaught, the report of a caught error).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid_d.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "base/spi_util.h"

/*
 * SpiConnect / SpiFinish
 *		SPI_connect() and SPI_finish() with their return codes checked.
 */
void
SpiConnect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
}

void
SpiFinish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed: %s", SPI_result_code_string(rc));
}

/*
 * SpiBeginWorkerTransaction / SpiCommitWorkerTransaction
 *		The transaction skeleton of the background workers' own work (the
 *		worker_spi pattern), written once: statement start time, a new
 *		transaction, SPI connected, the transaction snapshot pushed; and
 *		back: SPI finished, the snapshot popped, commit.  The caller is
 *		outside any transaction.  An error in between is the caller's to
 *		catch (it aborts the transaction, which undoes SPI and snapshots).
 */
void
SpiBeginWorkerTransaction(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SpiConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
SpiCommitWorkerTransaction(void)
{
	SpiFinish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * prepare_once
 *		Prepare 'stmt' and keep its plan, unless that was done before in this
 *		process.
 */
static void
prepare_once(SpiStatement *stmt)
{
	int			nargs = 0;
	SPIPlanPtr	p;

	if (stmt->plan != NULL)
		return;
	while (nargs < SPI_STATEMENT_MAX_ARGS && stmt->types[nargs] != InvalidOid)
		nargs++;
	p = SPI_prepare_cursor(stmt->sql, nargs, (Oid *) stmt->types,
						   stmt->cursor_options);
	if (p == NULL)
		elog(ERROR, "could not prepare %s: %s", stmt->what,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(p) != 0)
		elog(ERROR, "could not keep the plan of %s", stmt->what);
	stmt->plan = p;
}

/*
 * SpiRun
 *		Execute 'stmt' with 'values'/'nulls' (as for SPI_execute_plan),
 *		preparing and keeping its plan on first use; raise an error naming
 *		the statement if the result code is not 'expect'.  Returns
 *		SPI_processed; the rows, if any, are in SPI_tuptable.
 */
uint64
SpiRun(SpiStatement *stmt, Datum *values, const char *nulls, int expect)
{
	int			rc;

	prepare_once(stmt);
	rc = SPI_execute_plan(stmt->plan, values, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "%s failed: %s", stmt->what, SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * SpiRunLatest
 *		SpiRun of a read-only statement with the latest snapshot instead of
 *		the transaction's: for a read that must see what committed after the
 *		transaction's snapshot was taken (in REPEATABLE READ), typically
 *		right after taking a lock.
 */
uint64
SpiRunLatest(SpiStatement *stmt, Datum *values, const char *nulls, int expect)
{
	int			rc;

	prepare_once(stmt);
	rc = SPI_execute_snapshot(stmt->plan, values, nulls, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	if (rc != expect)
		elog(ERROR, "%s failed: %s", stmt->what, SPI_result_code_string(rc));
	return SPI_processed;
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

/*
 * SpiWorkerInterruptsBetweenSteps
 *		CHECK_FOR_INTERRUPTS of a worker loop outside its steps (outside the
 *		PG_TRY that SpiAbortKeepingError ends), where an error would end the
 *		process.  pg_cancel_backend() cancels what runs: a handler, a batch,
 *		a saga round.  Between them there is nothing to cancel and the worker
 *		must not exit for it: a pending cancel is dropped.  SIGTERM still
 *		ends the process.
 */
void
SpiWorkerInterruptsBetweenSteps(void)
{
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
}

/*
 * SpiWorkerWithoutCancel
 *		fn(arg) for a worker loop, where a cancel must not raise: held off
 *		while fn runs (any other error, and SIGTERM, still do) and dropped
 *		after it (SpiWorkerInterruptsBetweenSteps).  For the steps whose
 *		error ends the process, and for reporting a caught error.
 */
void
SpiWorkerWithoutCancel(void (*fn) (void *), void *arg)
{
	HOLD_CANCEL_INTERRUPTS();
	fn(arg);
	RESUME_CANCEL_INTERRUPTS();
	SpiWorkerInterruptsBetweenSteps();
}

/* SpiWorkerReportCaught's report. */
static void
report_body(void *arg)
{
	ThrowErrorData((ErrorData *) arg);
}

/*
 * SpiWorkerReportCaught
 *		Report an error a worker loop caught and goes on from, as a WARNING
 *		(its own message, detail, hint and context), outside any step.
 *		Reporting checks for interrupts (errfinish does, after the message
 *		is written), so a cancel that arrived since the error would be
 *		raised there, outside any PG_TRY, and end the process: it is
 *		written by SpiWorkerWithoutCancel.  'edata' is the caller's to free.
 */
void
SpiWorkerReportCaught(ErrorData *edata)
{
	edata->elevel = WARNING;
	SpiWorkerWithoutCancel(report_body, edata);
}

/*
 * SpiColumnExists
 *		Whether table schema.table has a column 'column' (a syscache
 *		lookup, no SQL): for the SQL API of this library called in a
 *		database whose extension SQL is still an older version's, before
 *		ALTER EXTENSION UPDATE added the column.
 */
bool
SpiColumnExists(const char *schema, const char *table, const char *column)
{
	Oid			nsp = get_namespace_oid(schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(table, nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, column) != InvalidAttrNumber;
}

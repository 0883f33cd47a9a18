/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *		Idempotency keys: outbox.idempotency_key(), outbox.idempotency_complete(),
 *		outbox.once() and outbox.purge_idempotency_keys().
 *
 * A key is one row of outbox.idempotency_keys, primary key (scope, key).
 * Its status is 'in_progress' from the claim until idempotency_complete()
 * makes it 'completed' with the response to replay.  expires_at (claim time
 * + ttl) ends its life: from then on the row is treated as absent (the next
 * request takes it over) and the purge may delete it.  once() is a claim
 * that is written as 'completed' at once, with no response.
 *
 * TRANSACTIONS
 *	Everything runs through SPI in the caller's transaction, so a claim or a
 *	completion exists if and only if the caller's transaction (and
 *	savepoint) commits: a rolled-back claim is as if it never happened.  A
 *	request that does slow work outside the database commits its claim first
 *	(other requests then get in_progress) and completes the key in a later
 *	transaction.  Every call reads the clock once; that instant decides
 *	expiry and staleness and becomes the new created_at / completed_at.
 *
 * CLAIMING AND WAITING
 *	A claim is INSERT ... ON CONFLICT DO NOTHING.  When the conflicting row
 *	was written (inserted, taken over, completed or purged) by a transaction
 *	that is still open, the insert waits for that transaction to end: that
 *	is how a concurrent duplicate waits for the first request and then
 *	answers from its outcome (an aborted writer leaves the key as it was).
 *	When the insert meets a committed row, the row is read again (under READ
 *	COMMITTED with a new snapshot, which sees it) and classified, in this
 *	order, without a row lock:
 *	  expired                                  -> take it over: new
 *	  both fingerprints set and different      -> mismatch
 *	  completed                                -> completed, with response
 *	  in progress, claimed by this transaction -> new (again)
 *	  in progress, younger than the lock timeout -> in_progress
 *	  in progress, older                       -> take it over: new
 *	Reading takes no lock on purpose: a FOR UPDATE lock would be held to the
 *	caller's commit and make every replay of a completed key wait for the
 *	previous replay's transaction.  A takeover is an UPDATE whose WHERE
 *	clause repeats the takeover condition, so of two concurrent takeovers
 *	one wins; the other waits for it and, READ COMMITTED re-checking the
 *	updated row, updates nothing.  Then, as when the row vanished between
 *	the insert and the read (purged), the claim starts over.  Each new round
 *	follows a change to the key that another transaction committed.
 *
 *	"Claimed by this transaction" means that the row version was written by
 *	the current transaction or one of its live subtransactions (xmin) and
 *	that claimed_by is the current top-level transaction id.  claimed_by is
 *	64 bits wide and never repeats in a cluster; the xmin test covers a row
 *	restored by pg_dump, whose claimed_by came from another cluster.
 *
 *	Under REPEATABLE READ and SERIALIZABLE a row committed after the
 *	caller's snapshot cannot be classified: the insert or the takeover
 *	fails with SQLSTATE 40001 (serialization_failure), and the caller
 *	retries its transaction as for any serialization failure; the retry
 *	sees the committed row.
 *
 * LOCKS
 *	ROW EXCLUSIVE on outbox.idempotency_keys and its indexes; the row lock
 *	of a key this transaction inserted, took over or completed, held to the
 *	end of the transaction (that is what makes duplicates wait).  Reading
 *	a key takes no row lock.  The purge locks the rows it deletes with
 *	SKIP LOCKED, so it never waits for an open claim or completion.
 *
 * CRASH
 *	There is no state outside the table.  The open claim of a backend that
 *	crashed is rolled back with its transaction.  A committed claim whose
 *	request died before completing it answers in_progress until
 *	outbox_saga.idempotency_lock_timeout has passed since the claim; the
 *	next request then takes it over.
 *
 * The SQL functions are SECURITY DEFINER with search_path pinned to
 * pg_catalog, pg_temp (see src/sql/idempotency.sql): callers need EXECUTE
 * on a function, never privileges on the table.  The statements below are
 * fixed and take every value as a parameter.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "base/guc.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "idempotency.h"

PG_FUNCTION_INFO_V1(outbox_saga_idempotency_key);
PG_FUNCTION_INFO_V1(outbox_saga_idempotency_complete);
PG_FUNCTION_INFO_V1(outbox_saga_once);
PG_FUNCTION_INFO_V1(outbox_saga_purge_idempotency_keys);

/* The answers of outbox.idempotency_key(). */
typedef enum IdemStatus
{
	IDEM_NEW,
	IDEM_COMPLETED,
	IDEM_IN_PROGRESS,
	IDEM_MISMATCH
} IdemStatus;

static const char *const idem_status_names[] = {
	[IDEM_NEW] = "new",
	[IDEM_COMPLETED] = "completed",
	[IDEM_IN_PROGRESS] = "in_progress",
	[IDEM_MISMATCH] = "mismatch",
};

/* One validated request for a key. */
typedef struct IdemRequest
{
	text	   *scope;
	text	   *key;
	text	   *fingerprint;	/* NULL: none given */
	TimestampTz now;			/* the one clock reading of the call */
	TimestampTz expires_at;		/* now + ttl */
	TimestampTz stale_before;	/* uncompleted claims made before this are
								 * taken over */
	bool		complete;		/* once(): write the claim as completed */
} IdemRequest;

/* A key's row as read by read_key(); pointers live in SPI memory. */
typedef struct IdemRow
{
	TransactionId xmin;
	FullTransactionId claimed_by;
	text	   *fingerprint;	/* NULL: none stored */
	bool		completed;
	Datum		response;
	bool		response_isnull;
	TimestampTz created_at;
	TimestampTz expires_at;
} IdemRow;

/*
 * The statements, all on outbox.idempotency_keys, prepared on first use and
 * kept for the life of the backend (SpiRun).  The plan cache re-plans them
 * after DDL on the table (or after the extension was dropped and created
 * again), by name.  Each runs read-write, so under READ COMMITTED each gets
 * a new snapshot and sees what the previous one did.
 *
 * Parameters of the claim statements (insert and takeover):
 *	$1 scope, $2 key, $3 fingerprint, $4 status to write, $5 now,
 *	$6 expires_at, $7 completed_at (NULL unless $4 is 'completed'),
 *	$8 stale_before (takeover only).
 */
#define IDEM_CLAIM_NARGS 8

enum
{
	IDEM_INSERT,				/* claim a key no row holds */
	IDEM_READ,					/* read a key's row, no lock */
	IDEM_TAKEOVER,				/* claim an expired or abandoned key */
	IDEM_COMPLETE,				/* complete a claim in progress */
	IDEM_PURGE					/* delete expired keys */
};

/* Column numbers of IDEM_READ's result. */
enum
{
	RD_XMIN = 1,
	RD_CLAIMED_BY,
	RD_FINGERPRINT,
	RD_COMPLETED,
	RD_RESPONSE,
	RD_CREATED_AT,
	RD_EXPIRES_AT
};

static SpiStatement idem_statements[] = {
	[IDEM_INSERT] = {
		"the claim of an idempotency key",
		"INSERT INTO outbox.idempotency_keys"
		"  (scope, key, fingerprint, status, response, claimed_by,"
		"   created_at, expires_at, completed_at)"
		" VALUES ($1, $2, $3, $4, NULL, pg_catalog.pg_current_xact_id(), $5, $6, $7)"
		" ON CONFLICT (scope, key) DO NOTHING",
		{TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, 0}
	},
	[IDEM_READ] = {
		"the read of an idempotency key",
		"SELECT xmin, claimed_by, fingerprint, status = 'completed', response,"
		"       created_at, expires_at"
		"  FROM outbox.idempotency_keys"
		" WHERE scope = $1 AND key = $2",
		{TEXTOID, TEXTOID, 0}
	},
	[IDEM_TAKEOVER] = {
		"the takeover of an idempotency key",
		"UPDATE outbox.idempotency_keys"
		"   SET fingerprint = $3, status = $4, response = NULL,"
		"       claimed_by = pg_catalog.pg_current_xact_id(),"
		"       created_at = $5, expires_at = $6, completed_at = $7"
		" WHERE scope = $1 AND key = $2"
		"   AND (expires_at <= $5"
		"        OR (status = 'in_progress' AND created_at <= $8"
		"            AND ($3 IS NULL OR fingerprint IS NULL OR fingerprint = $3)))",
		{TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, 0}
	},
	/* $1 scope, $2 key, $3 response, $4 now */
	[IDEM_COMPLETE] = {
		"the completion of an idempotency key",
		"UPDATE outbox.idempotency_keys"
		"   SET status = 'completed', response = $3, completed_at = $4"
		" WHERE scope = $1 AND key = $2"
		"   AND status = 'in_progress' AND expires_at > $4",
		{TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID, 0}
	},

	/*
	 * $1 now, $2 max_rows.  The row lock is taken by the inner SELECT with
	 * SKIP LOCKED; the outer condition re-checks expiry on the locked
	 * version (READ COMMITTED may have moved to a newer one).
	 */
	[IDEM_PURGE] = {
		"the purge of idempotency keys",
		"DELETE FROM outbox.idempotency_keys"
		" WHERE ctid = ANY (ARRAY("
		"         SELECT ctid FROM outbox.idempotency_keys"
		"          WHERE expires_at <= $1"
		"          ORDER BY expires_at"
		"          LIMIT $2"
		"          FOR UPDATE SKIP LOCKED))"
		"   AND expires_at <= $1",
		{TIMESTAMPTZOID, INT8OID, 0}
	},
};

/*
 * read_key
 *		Read the row of (scope, key) visible to a new snapshot (READ
 *		COMMITTED) or to the transaction's snapshot, without locking it.
 *		Returns false if there is none.
 */
static bool
read_key(text *scope, text *key, IdemRow *row)
{
	Datum		values[2];
	HeapTuple	tup;
	TupleDesc	desc;
	uint64		n;
	bool		isnull;
	Datum		d;

	values[0] = PointerGetDatum(scope);
	values[1] = PointerGetDatum(key);
	n = SpiRun(&idem_statements[IDEM_READ], values, NULL, SPI_OK_SELECT);
	if (n == 0)
		return false;
	if (n != 1)
		elog(ERROR, "idempotency key has " UINT64_FORMAT " rows", n);

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	row->xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, RD_XMIN, &isnull));
	row->claimed_by = DatumGetFullTransactionId(SPI_getbinval(tup, desc, RD_CLAIMED_BY,
															  &isnull));
	d = SPI_getbinval(tup, desc, RD_FINGERPRINT, &isnull);
	row->fingerprint = isnull ? NULL : DatumGetTextPP(d);
	row->completed = DatumGetBool(SPI_getbinval(tup, desc, RD_COMPLETED, &isnull));
	row->response = SPI_getbinval(tup, desc, RD_RESPONSE, &row->response_isnull);
	row->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, RD_CREATED_AT,
														&isnull));
	row->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, RD_EXPIRES_AT,
														&isnull));
	return true;
}

/*
 * fingerprints_differ
 *		A mismatch needs two fingerprints: a NULL on either side (the request
 *		or the stored claim) matches anything.  Fingerprints compare byte by
 *		byte.
 */
static bool
fingerprints_differ(text *given, text *stored)
{
	if (given == NULL || stored == NULL)
		return false;
	return VARSIZE_ANY_EXHDR(given) != VARSIZE_ANY_EXHDR(stored) ||
		memcmp(VARDATA_ANY(given), VARDATA_ANY(stored),
			   VARSIZE_ANY_EXHDR(given)) != 0;
}

/*
 * claimed_by_me
 *		Is this row version a claim made by the current transaction?  See
 *		the file header.
 */
static bool
claimed_by_me(const IdemRow *row)
{
	FullTransactionId me = GetTopFullTransactionIdIfAny();

	return FullTransactionIdIsValid(me) &&
		FullTransactionIdEquals(row->claimed_by, me) &&
		TransactionIdIsCurrentTransactionId(row->xmin);
}

/*
 * claim_key
 *		Claim req's key for the current transaction or say why not; see the
 *		file header for the rules.  For IDEM_COMPLETED, *response is the
 *		stored response (copied into the caller's memory context); for the
 *		other answers it is NULL.
 */
static IdemStatus
claim_key(const IdemRequest *req, Datum *response, bool *response_isnull)
{
	Datum		values[IDEM_CLAIM_NARGS];
	char		nulls[IDEM_CLAIM_NARGS];
	IdemStatus	result;
	int			round;

	*response = (Datum) 0;
	*response_isnull = true;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = PointerGetDatum(req->scope);
	values[1] = PointerGetDatum(req->key);
	values[2] = PointerGetDatum(req->fingerprint);
	nulls[2] = req->fingerprint == NULL ? 'n' : ' ';
	values[3] = CStringGetTextDatum(req->complete ? "completed" : "in_progress");
	values[4] = TimestampTzGetDatum(req->now);
	values[5] = TimestampTzGetDatum(req->expires_at);
	values[6] = TimestampTzGetDatum(req->now);
	nulls[6] = req->complete ? ' ' : 'n';
	values[7] = TimestampTzGetDatum(req->stale_before);

	SpiConnect();

	for (round = 0;; round++)
	{
		IdemRow		row;

		CHECK_FOR_INTERRUPTS();

		/*
		 * With a transaction snapshot, nothing changes between two rounds:
		 * another round could only repeat this one.  The key was changed by
		 * a transaction this snapshot cannot see.
		 */
		if (round > 0 && IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update of an idempotency key")));

		if (SpiRun(&idem_statements[IDEM_INSERT], values, nulls, SPI_OK_INSERT) == 1)
		{
			result = IDEM_NEW;
			break;
		}

		/* A committed row is in the way; it may be gone again (purged). */
		if (!read_key(req->scope, req->key, &row))
			continue;

		if (row.expires_at > req->now)
		{
			if (fingerprints_differ(req->fingerprint, row.fingerprint))
			{
				result = IDEM_MISMATCH;
				break;
			}
			if (row.completed)
			{
				result = IDEM_COMPLETED;
				*response_isnull = row.response_isnull;

				/*
				 * Detoast before the copy: a TOAST pointer would outlive
				 * neither SPI_finish() nor, in the caller's tuplestore, the
				 * snapshot that protects the row.
				 */
				if (!row.response_isnull)
					*response = SPI_datumTransfer(PointerGetDatum(PG_DETOAST_DATUM(row.response)),
												  false, -1);
				break;
			}
			if (claimed_by_me(&row))
			{
				/* once() after idempotency_key() in one transaction */
				if (req->complete)
				{
					Datum		cvalues[4];
					char		cnulls[4] = {' ', ' ', 'n', ' '};

					cvalues[0] = values[0];
					cvalues[1] = values[1];
					cvalues[2] = (Datum) 0;
					cvalues[3] = values[4];
					if (SpiRun(&idem_statements[IDEM_COMPLETE], cvalues, cnulls,
								 SPI_OK_UPDATE) != 1)
						elog(ERROR, "could not complete the current transaction's own claim");
				}
				result = IDEM_NEW;
				break;
			}
			if (row.created_at > req->stale_before)
			{
				result = IDEM_IN_PROGRESS;
				break;
			}
		}

		/* Expired, or an abandoned claim: take it over unless beaten. */
		if (SpiRun(&idem_statements[IDEM_TAKEOVER], values, nulls, SPI_OK_UPDATE) == 1)
		{
			result = IDEM_NEW;
			break;
		}
	}

	SpiFinish();
	return result;
}

/*
 * required_text
 *		Argument 'argno' (named 'name'): not NULL, 1..maxbytes bytes.
 */
static text *
required_text(FunctionCallInfo fcinfo, int argno, const char *name, int maxbytes)
{
	text	   *value;

	SqlRequireArg(fcinfo, argno, name);
	value = PG_GETARG_TEXT_PP(argno);
	SqlCheckLength(name, VARSIZE_ANY_EXHDR(value), maxbytes, SQL_TEXT_VALUE);
	return value;
}

/*
 * build_request
 *		Validate the arguments of idempotency_key() or once() (named 'fname')
 *		into *req.  fingerprint_arg is -1 for once(), which has none.
 *		Nothing is written before every argument has been checked.
 */
static void
build_request(FunctionCallInfo fcinfo, const char *fname, int fingerprint_arg,
			  int ttl_arg, bool complete, IdemRequest *req)
{
	Interval   *ttl;
	Interval	zero;

	req->scope = required_text(fcinfo, 0, "scope", OUTBOX_MAX_SCOPE_BYTES);
	req->key = required_text(fcinfo, 1, "key", OUTBOX_MAX_IDEMPOTENCY_KEY_BYTES);
	req->fingerprint = NULL;
	if (fingerprint_arg >= 0 && !PG_ARGISNULL(fingerprint_arg))
	{
		req->fingerprint = PG_GETARG_TEXT_PP(fingerprint_arg);
		if (VARSIZE_ANY_EXHDR(req->fingerprint) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("fingerprint must not be empty"),
					 errhint("Pass NULL to skip the fingerprint check.")));
		SqlCheckLength("fingerprint", VARSIZE_ANY_EXHDR(req->fingerprint),
					   OUTBOX_MAX_FINGERPRINT_BYTES, SQL_TEXT_VALUE);
	}

	if (PG_ARGISNULL(ttl_arg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must not be null"),
				 errhint("Pass a positive interval such as '24 hours'.")));
	ttl = PG_GETARG_INTERVAL_P(ttl_arg);

	req->now = GetCurrentTimestamp();
	memset(&zero, 0, sizeof(zero));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(ttl),
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be positive"),
				 errhint("Pass a positive interval such as '24 hours'.")));

	/* Raises "timestamp out of range" for an absurdly large ttl. */
	req->expires_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(req->now),
															  IntervalPGetDatum(ttl)));
	if (TIMESTAMP_NOT_FINITE(req->expires_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be finite"),
				 errhint("Pass a positive interval such as '24 hours'.")));
	if (req->expires_at <= req->now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be positive"),
				 errdetail("Added to the current time, it gives a time that is not later.")));

	req->stale_before = req->now -
		(TimestampTz) OutboxIdempotencyLockTimeout * USECS_PER_SEC;
	req->complete = complete;

	/* Even a replay writes first (the claim); say so before SPI does. */
	PreventCommandIfReadOnly(fname);
}

/*
 * outbox.idempotency_key(scope text, key text, fingerprint text,
 *						  ttl interval) RETURNS TABLE(status text, response jsonb)
 *
 * Always one row.  status is new, completed, in_progress or mismatch;
 * response is the stored response for completed and NULL otherwise.
 */
Datum
outbox_saga_idempotency_key(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	IdemRequest req;
	IdemStatus	status;
	Datum		values[2];
	bool		nulls[2];

	build_request(fcinfo, "outbox.idempotency_key()", 2, 3, false, &req);
	InitMaterializedSRF(fcinfo, 0);

	status = claim_key(&req, &values[1], &nulls[1]);
	values[0] = CStringGetTextDatum(idem_status_names[status]);
	nulls[0] = false;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	return (Datum) 0;
}

/*
 * outbox.once(scope text, key text, ttl interval) RETURNS boolean
 *
 * idempotency_key(scope, key, NULL, ttl) followed, when it answers new, by
 * idempotency_complete(scope, key, NULL), in a single write: true exactly
 * when the key was claimed.
 */
Datum
outbox_saga_once(PG_FUNCTION_ARGS)
{
	IdemRequest req;
	Datum		response;
	bool		response_isnull;

	build_request(fcinfo, "outbox.once()", -1, 2, true, &req);
	PG_RETURN_BOOL(claim_key(&req, &response, &response_isnull) == IDEM_NEW);
}

/*
 * outbox.idempotency_complete(scope text, key text, response jsonb)
 *		RETURNS void
 *
 * Completes the key's claim in progress, whichever transaction made it.
 * A key that has no claim in progress (absent, expired or already
 * completed) is an error with SQLSTATE 55000, and nothing is changed.
 */
Datum
outbox_saga_idempotency_complete(PG_FUNCTION_ARGS)
{
	text	   *scope = required_text(fcinfo, 0, "scope", OUTBOX_MAX_SCOPE_BYTES);
	text	   *key = required_text(fcinfo, 1, "key", OUTBOX_MAX_IDEMPOTENCY_KEY_BYTES);
	TimestampTz now = GetCurrentTimestamp();
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	IdemRow		row;
	const char *detail;
	const char *hint;

	values[0] = PointerGetDatum(scope);
	values[1] = PointerGetDatum(key);
	if (PG_ARGISNULL(2))
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	else
		values[2] = PointerGetDatum(PG_GETARG_JSONB_P(2));
	values[3] = TimestampTzGetDatum(now);

	PreventCommandIfReadOnly("outbox.idempotency_complete()");
	SpiConnect();
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();

		if (SpiRun(&idem_statements[IDEM_COMPLETE], values, nulls, SPI_OK_UPDATE) == 1)
		{
			SpiFinish();
			PG_RETURN_VOID();
		}

		/* Nothing was changed; say why. */
		if (!read_key(scope, key, &row))
		{
			detail = "No claim of the key is visible: it was never claimed, or its claim rolled back, has not committed yet, or expired and was purged.";
			hint = "Complete a key after outbox.idempotency_key() answered new for it.";
			break;
		}
		if (row.expires_at <= now)
		{
			detail = "Its claim has expired; an expired key counts as absent.";
			hint = "Pass a ttl longer than the request takes.";
			break;
		}
		if (row.completed)
		{
			detail = "It has already been completed.";
			hint = "A key is completed once; replays get the stored response from outbox.idempotency_key().";
			break;
		}

		/*
		 * A claim in progress that the update did not see: under READ
		 * COMMITTED it committed after the update's snapshot was taken, so
		 * the update is tried again.  A transaction snapshot would see here
		 * what the update saw.
		 */
		if (IsolationUsesXactSnapshot())
			elog(ERROR, "idempotency key in progress but not updatable");
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("idempotency key \"%s\" in scope \"%s\" has no claim in progress",
					text_to_cstring(key), text_to_cstring(scope)),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint)));
	PG_RETURN_VOID();			/* keep the compiler quiet */
}

/*
 * OutboxPurgeIdempotencyKeys
 *		Delete at most max_rows expired keys, oldest expiry first, skipping
 *		rows that open transactions have locked (a takeover or completion in
 *		flight); returns how many were deleted.  Runs in the caller's
 *		transaction.
 */
int64
OutboxPurgeIdempotencyKeys(int64 max_rows)
{
	Datum		values[2];
	uint64		n;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[1] = Int64GetDatum(max_rows);

	SpiConnect();
	n = SpiRun(&idem_statements[IDEM_PURGE], values, NULL, SPI_OK_DELETE);
	SpiFinish();

	return (int64) n;
}

/*
 * outbox.purge_idempotency_keys(max_rows integer) RETURNS bigint
 */
Datum
outbox_saga_purge_idempotency_keys(PG_FUNCTION_ARGS)
{
	int32		max_rows;

	SqlRequireArg(fcinfo, 0, "max_rows");
	max_rows = PG_GETARG_INT32(0);
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be positive"),
				 errdetail("It is %d.", max_rows)));
	PreventCommandIfReadOnly("outbox.purge_idempotency_keys()");

	PG_RETURN_INT64(OutboxPurgeIdempotencyKeys(max_rows));
}

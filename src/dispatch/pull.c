/*-------------------------------------------------------------------------
 *
 * pull.c
 *		Pull destinations: outbox.next_batch(), outbox.finish_batch() and
 *		outbox.retry_event() (issue 16 item 1).
 *
 * A destination of kind "pull" (sink/pull.c) is never pushed by the
 * dispatcher; sessions of the application take its events over SQL, one
 * batch at a time, several sessions at once.
 *
 * DESIGN: ONE CURSOR, BATCHES HOLD THEIR AGGREGATES
 *	The destination keeps its one position in the log (outbox.destination,
 *	as every kind).  next_batch runs the dispatcher's own batch
 *	(delivery.c, DeliveryTakeHere) in the caller's transaction: due retry
 *	rows, then the next page of the current window, gap-free (G2) and in
 *	commit order (G4, events/logscan.c), filtered by the subscriptions and
 *	the owner's topic read rights (G14) exactly as for a pushed
 *	destination.  Instead of a sink, each event is copied into the batch:
 *	one row of outbox.pull_batch holding the events (outbox.pull_event[])
 *	and the aggregates they belong to.  The position moves past the batch
 *	at once, so the batch row - not the log - keeps the events until the
 *	batch is finished; the log is retired under it as for any destination,
 *	and housekeeping, outbox.stats and the lag limit see an ordinary
 *	position.  Writes per batch: one INSERT, one DELETE (finish_batch), the
 *	destination row; none per event (G7) but for retry_event.
 *	The lanes alternative (hash(aggregate) mod N cursors) was not taken:
 *	every lane would read the whole window, hold the log on its own, and
 *	need a position of its own everywhere a destination's is read.
 *
 * INVARIANTS
 *	- An aggregate's events are never in two unfinished batches: a new
 *	  batch ends before the first window event whose aggregate an
 *	  unfinished batch holds (delivery.c, ACT_BUSY), so the position stays
 *	  before it, and it does not take the retry rows of such aggregates
 *	  (Q_DUE_RETRIES_PULL) until that batch is finished.  Ending there,
 *	  rather than parking the event as a retry row as the dispatcher does
 *	  behind a failed event, keeps the hot path free of writes per event:
 *	  parking all that a busy consumer holds costs two writes per event
 *	  and was slower with two consumers than with one.  So a second
 *	  consumer takes the events up to the first one the first consumer's
 *	  batch holds, and nothing while the head of the log is held.  A pull
 *	  batch takes the whole due chain of an aggregate's retry rows in
 *	  commit order (RETRY_PRECEDES_SQL), not only its head, so a retried
 *	  aggregate catches up in one batch.
 *	- Within a batch an aggregate's events are in commit order: retry rows
 *	  first (an aggregate with retry rows has its window events parked),
 *	  then the window in commit order.
 *	- A batch whose lease has passed is handed out again as it is, under a
 *	  new id (at least once): its old id is no longer an unfinished batch,
 *	  so a late finish_batch or retry_event with it fails (55000) and
 *	  changes nothing.
 *	- retry_event records a failed attempt exactly as the dispatcher does
 *	  (delivery.c, DeliveryFailTaken: attempts, backoff with full jitter or
 *	  the given delay, a dead letter after max_attempts); the later events
 *	  of its aggregate in the batch are taken out of it and parked behind
 *	  it (their attempts unchanged), so only that aggregate is held back.
 *
 * LOCKS
 *	All three take the destination's row FOR UPDATE first (next_batch: for
 *	the whole batch, in delivery.c), then a batch row.  next_batch takes
 *	an expired batch with SKIP LOCKED and inserts new ones, so it never
 *	waits for a batch row; the others lock the destination first, so the
 *	three never deadlock.  The destination's lock serialises next_batch
 *	calls (each reads the aggregates the previous ones committed: READ
 *	COMMITTED is required, 0A000 otherwise) and makes retry_event's retry
 *	rows and the batch's new aggregates appear to it together.  A caller
 *	that keeps its transaction open after next_batch holds the destination
 *	(only it: G12); call next_batch in a transaction of its own.
 *	Outside a transaction block next_batch takes a tick (eventlog.c) once
 *	it holds the destination, so it sees what committed before it; the
 *	tick lock (OUTBOX_TICK_LOCK_SQL) is then held to the end of its
 *	statement's transaction, a few milliseconds.  Inside a transaction
 *	block it leaves ticks to the dispatcher: the tick lock would be held
 *	until the caller commits, and hold up every dispatcher meanwhile.
 *
 * PRIVILEGES
 *	SECURITY INVOKER C functions (EXECUTE granted to nobody by default).
 *	Each checks first, reading without a lock, that the caller has the
 *	privileges of the destination's owner (has_privs_of_role: 42501), then
 *	works as the extension (RunAsExtensionBegin).  Topic read rights are
 *	the owner's, as for subscriptions (delivery.c, deny_unreadable).
 *
 * CRASH
 *	Everything is in the caller's transaction.  A consumer that dies after
 *	next_batch committed leaves its batch row: it is handed out again once
 *	its lease ends.  One that rolls back next_batch leaves nothing (the
 *	position did not move).  Nothing is lost; events may come twice (G3,
 *	G6: deduplicate by event_id).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "dispatch/delivery.h"
#include "events/eventlog.h"
#include "events/tick.h"
#include "sink/dest_config.h"
#include "sink/sink.h"

PG_FUNCTION_INFO_V1(outbox_saga_next_batch);
PG_FUNCTION_INFO_V1(outbox_saga_finish_batch);
PG_FUNCTION_INFO_V1(outbox_saga_retry_event);

/* The most events one batch may have. */
#define PULL_MAX_EVENTS		100000

/* The most pages and windows one call of next_batch reads. */
#define PULL_MAX_ROUNDS		10000

/* Columns of outbox.pull_event. */
#define PE_COLUMNS			12
#define PE_ATTEMPTS			10
#define PE_COMMITTED_AT		11

enum
{
	P_READ_DEST,
	P_READ_BATCH,
	P_LOCK_DEST,
	P_REHAND,
	P_INSERT,
	P_LOCK_BATCH,
	P_DELETE,
	P_SET_BATCH,
	P_COUNT_DELIVERED,
	P_COUNT_FAILED,
	P_COUNT
};

static SpiStatement statements[P_COUNT] = {
	/* outbox.destination: the row, not locked (the privilege check first) */
	[P_READ_DEST] = {
		"the lookup of a destination",
		"SELECT id, kind, config, owner, search_path, paused FROM outbox.destination"
		" WHERE name = $1",
		{TEXTOID, 0}
	},
	/* outbox.pull_batch, outbox.destination: a batch's destination, no lock */
	[P_READ_BATCH] = {
		"the lookup of a pull batch",
		"SELECT d.id, d.kind, d.config, d.owner, d.search_path, d.name"
		"  FROM outbox.pull_batch b JOIN outbox.destination d ON d.id = b.destination_id"
		" WHERE b.id = $1",
		{INT8OID, 0}
	},
	/* outbox.destination: the row, locked (see LOCKS) */
	[P_LOCK_DEST] = {
		"the lock of a pull destination",
		"SELECT paused, config FROM outbox.destination WHERE id = $1 FOR UPDATE",
		{INT4OID, 0}
	},
	/* outbox.pull_batch: an expired batch, handed out again under a new id */
	[P_REHAND] = {
		"the hand-over of an expired pull batch",
		"UPDATE outbox.pull_batch"
		"   SET id = pg_catalog.nextval('outbox.pull_batch_id_seq'),"
		"       lease_until = pg_catalog.now() + $2, handed_out = handed_out + 1"
		" WHERE id = (SELECT id FROM outbox.pull_batch"
		"              WHERE destination_id = $1 AND lease_until < pg_catalog.now()"
		"              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
		" RETURNING id, events",
		{INT4OID, INTERVALOID, 0}
	},
	/* outbox.pull_batch: a new batch */
	[P_INSERT] = {
		"the insert of a pull batch",
		"INSERT INTO outbox.pull_batch (destination_id, lease_until, aggregates, events)"
		" VALUES ($1, pg_catalog.now() + $2, $3, $4) RETURNING id",
		{INT4OID, INTERVALOID, TEXTARRAYOID, InvalidOid, 0}
	},
	/* outbox.pull_batch: an unfinished batch, locked */
	[P_LOCK_BATCH] = {
		"the lock of a pull batch",
		"SELECT events FROM outbox.pull_batch WHERE id = $1 AND destination_id = $2"
		"   FOR UPDATE",
		{INT8OID, INT4OID, 0}
	},
	/* outbox.pull_batch: a finished batch */
	[P_DELETE] = {
		"the delete of a finished pull batch",
		"DELETE FROM outbox.pull_batch WHERE id = $1 AND destination_id = $2"
		" RETURNING pg_catalog.cardinality(events)",
		{INT8OID, INT4OID, 0}
	},
	/* outbox.pull_batch: a batch some of whose events were failed */
	[P_SET_BATCH] = {
		"the update of a pull batch",
		"UPDATE outbox.pull_batch SET aggregates = $2, events = $3 WHERE id = $1",
		{INT8OID, TEXTARRAYOID, InvalidOid, 0}
	},
	/* outbox.destination: the events of a finished batch */
	[P_COUNT_DELIVERED] = {
		"the count of delivered events",
		"UPDATE outbox.destination"
		"   SET delivered_total = delivered_total + $2,"
		"       last_delivered_at = CASE WHEN $2 > 0 THEN pg_catalog.now()"
		"                           ELSE last_delivered_at END,"
		"       consecutive_failures = 0"
		" WHERE id = $1",
		{INT4OID, INT8OID, 0}
	},
	/* outbox.destination: a failed attempt */
	[P_COUNT_FAILED] = {
		"the count of a failed attempt",
		"UPDATE outbox.destination"
		"   SET failed_attempts_total = failed_attempts_total + 1,"
		"       last_error = $2, last_error_at = pg_catalog.now()"
		" WHERE id = $1",
		{INT4OID, TEXTOID, 0}
	},
};

/*
 * set_array_param
 *		Parameter 'argno' (0-based) of 'stmt' is of type 'typid' (the type
 *		is the extension's, so its OID is known only at run time and changes
 *		when the extension is created again: a kept plan for an older OID
 *		is dropped).
 */
static void
set_array_param(SpiStatement *stmt, int argno, Oid typid)
{
	if (stmt->types[argno] == typid)
		return;
	if (stmt->plan != NULL)
	{
		SPI_freeplan(stmt->plan);
		stmt->plan = NULL;
	}
	stmt->types[argno] = typid;
}

/*
 * pull_event_type
 *		The OID of outbox.pull_event and the OID of its array type; fills
 *		the parameter types of the statements that take them.
 */
static Oid
pull_event_type(Oid *array_type)
{
	Oid			nsp = get_namespace_oid("outbox", false);
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("pull_event"),
										ObjectIdGetDatum(nsp));

	if (!OidIsValid(typid))
		elog(ERROR, "outbox_saga: type outbox.pull_event is missing");
	*array_type = get_array_type(typid);
	set_array_param(&statements[P_INSERT], 3, *array_type);
	set_array_param(&statements[P_SET_BATCH], 2, *array_type);
	return typid;
}

/*
 * check_owner
 *		42501 unless the caller has the privileges of 'owner'.
 */
static void
check_owner(Oid owner, const char *what)
{
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", what),
				 errdetail("Only the role that created a pull destination, a member of it, or a superuser may take, finish or retry its batches.")));
}

/*
 * read_dest_row
 *		Fill *dest from the first five columns (id, kind, config, owner,
 *		search_path) of the last SPI result's first row.
 */
static void
read_dest_row(DestinationConfig *dest)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	dest->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	dest->kind = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	dest->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	dest->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	dest->search_path = SPI_getvalue(tup, desc, 5);
}

/*
 * require_read_committed
 *		0A000 under REPEATABLE READ or SERIALIZABLE (see LOCKS).
 */
static void
require_read_committed(const char *fn)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s needs the READ COMMITTED isolation level", fn),
				 errdetail("It reads what other consumers of the destination committed while it waited for the destination's lock.")));
}

/*
 * begin_as_extension
 *		RunAsExtensionBegin, and no JIT until RunAsExtensionEnd: the
 *		statements here are short, but the statistics of the tables they
 *		read (truncated and refilled all the time) can make a plan look
 *		expensive enough to be compiled, which costs more than it runs.
 */
static void
begin_as_extension(SavedIdentity *saved)
{
	RunAsExtensionBegin(saved);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * lookup_batch
 *		Connected to SPI, as the caller: the destination of unfinished
 *		batch 'batch_id' into *dest, after checking that the caller has the
 *		privileges of its owner.  55000 if it is not an unfinished batch.
 */
static void
lookup_batch(int64 batch_id, DestinationConfig *dest)
{
	Datum		values[1];

	values[0] = Int64GetDatum(batch_id);
	if (RunAsExtensionRun(&statements[P_READ_BATCH], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch %lld is not an unfinished batch", (long long) batch_id),
				 errdetail("It was finished, handed out again under a new id after its lease ended, or never existed."),
				 errhint("Take a batch with outbox.next_batch() and finish it within its lease.")));
	memset(dest, 0, sizeof(DestinationConfig));
	read_dest_row(dest);
	dest->name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	check_owner(dest->owner, psprintf("batch %lld", (long long) batch_id));
	DestConfigParseCommon(dest->config, dest);
}

/*
 * lock_batch_dest
 *		As the extension: lock the destination's row, then check that the
 *		batch is still unfinished (55000 otherwise).
 */
static void
lock_batch_dest(int64 batch_id, const DestinationConfig *dest)
{
	Datum		values[1];

	values[0] = Int32GetDatum(dest->id);
	if (SpiRun(&statements[P_LOCK_DEST], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch %lld is not an unfinished batch", (long long) batch_id),
				 errdetail("Its destination was dropped.")));
}

static void
batch_gone(int64 batch_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("batch %lld is not an unfinished batch", (long long) batch_id),
			 errdetail("It was finished, or handed out again under a new id after its lease ended.")));
}

/* ------------------------------------------------------------------------
 * next_batch
 * ------------------------------------------------------------------------
 */

/* What DeliveryTakeHere hands events to. */
typedef struct Taken
{
	MemoryContext cxt;
	TupleDesc	desc;			/* outbox.pull_event */
	Datum	   *events;			/* composites */
	int			n;
	int			max;
	Datum	   *aggregates;		/* text, with repeats */
	int			naggregates;
} Taken;

/*
 * take_event
 *		DeliveryTakeHere's callback: the event as an outbox.pull_event,
 *		copied into taken->cxt.
 */
static void
take_event(const DispatchEvent *ev, void *arg)
{
	Taken	   *taken = arg;
	MemoryContext old = MemoryContextSwitchTo(taken->cxt);
	Datum		values[PE_COLUMNS];
	bool		nulls[PE_COLUMNS];
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	memset(nulls, false, sizeof(nulls));
	memcpy(uuid, &ev->event_id, sizeof(pg_uuid_t));
	values[EV_ID] = Int64GetDatum(ev->id);
	values[EV_EVENT_ID] = UUIDPGetDatum(uuid);
	values[EV_TOPIC] = PointerGetDatum(ev->topic);
	values[EV_AGGREGATE_ID] = PointerGetDatum(ev->aggregate_id);
	nulls[EV_AGGREGATE_ID] = (ev->aggregate_id == NULL);
	values[EV_EVENT_TYPE] = PointerGetDatum(ev->event_type);
	values[EV_PAYLOAD] = JsonbPGetDatum(ev->payload);
	values[EV_HEADERS] = JsonbPGetDatum(ev->headers);
	values[EV_CREATED_AT] = TimestampTzGetDatum(ev->created_at);
	values[EV_DELIVER_AFTER] = TimestampTzGetDatum(ev->deliver_after);
	nulls[EV_DELIVER_AFTER] = !ev->has_deliver_after;
	values[EV_TXID] = UInt64GetDatum(ev->txid);
	values[PE_ATTEMPTS] = Int32GetDatum(ev->attempts);
	values[PE_COMMITTED_AT] = TimestampTzGetDatum(ev->committed_at);
	nulls[PE_COMMITTED_AT] = (ev->committed_at == 0);

	if (taken->n == taken->max)
	{
		taken->max *= 2;
		taken->events = repalloc(taken->events, sizeof(Datum) * taken->max);
		taken->aggregates = repalloc(taken->aggregates, sizeof(Datum) * taken->max);
	}
	taken->events[taken->n++] =
		heap_copy_tuple_as_datum(heap_form_tuple(taken->desc, values, nulls),
								 taken->desc);
	if (ev->aggregate_id != NULL)
		taken->aggregates[taken->naggregates++] =
			PointerGetDatum(DatumGetTextPCopy(PointerGetDatum(ev->aggregate_id)));
	MemoryContextSwitchTo(old);
}

/*
 * put_rows
 *		One result row per composite of 'events': batch_id, then the
 *		columns of outbox.events, then attempts.
 */
static void
put_rows(ReturnSetInfo *rsinfo, TupleDesc pe_desc, int64 batch_id,
		 Datum *events, bool *enulls, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		HeapTupleHeader hdr;
		HeapTupleData tup;
		Datum		pe[PE_COLUMNS];
		bool		pe_nulls[PE_COLUMNS];
		Datum		values[EV_TXID + 3];
		bool		nulls[EV_TXID + 3];
		int			c;

		if (enulls != NULL && enulls[i])
			continue;
		hdr = DatumGetHeapTupleHeader(events[i]);
		tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = hdr;
		heap_deform_tuple(&tup, pe_desc, pe, pe_nulls);
		values[0] = Int64GetDatum(batch_id);
		nulls[0] = false;
		for (c = 0; c <= EV_TXID; c++)
		{
			values[c + 1] = pe[c];
			nulls[c + 1] = pe_nulls[c];
		}
		values[EV_TXID + 2] = pe[PE_ATTEMPTS];
		nulls[EV_TXID + 2] = pe_nulls[PE_ATTEMPTS];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * take_tick
 *		Outside a transaction block: a tick (see LOCKS).  Not in a handler
 *		or saga step either: its transaction is a dispatcher's batch, which
 *		must not hold the tick lock.  As the extension.
 */
static void
take_tick(void)
{
	if (IsTransactionBlock() || RunAsInOwnerCall())
		return;
	(void) TickTake();
}

/*
 * interval_usecs
 *		An interval as microseconds, a month counting 30 days.
 */
static int64
interval_usecs(const Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/*
 * outbox.next_batch(destination text, max_events integer, lease interval)
 *		RETURNS TABLE (batch_id, <outbox.events columns>, attempts)
 *
 * See the file header.  No rows: nothing is ready (or the destination is
 * paused).  An expired batch of the destination is handed out first, as it
 * is (it may have more than max_events events).
 */
Datum
outbox_saga_next_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	int32		max_events;
	Interval   *lease;
	DestinationConfig dest;
	SavedIdentity saved;
	Datum		values[4];
	char		nulls[4];
	bool		isnull;
	Oid			pe_type;
	Oid			pe_array;
	TupleDesc	pe_desc;
	Taken		taken;
	int			round;

	SqlRequireArg(fcinfo, 0, "destination");
	SqlRequireArg(fcinfo, 1, "max_events");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	max_events = PG_GETARG_INT32(1);
	if (max_events < 1 || max_events > PULL_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and %d", PULL_MAX_EVENTS)));
	lease = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	if (lease != NULL && interval_usecs(lease) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be positive")));
	require_read_committed("outbox.next_batch()");
	InitMaterializedSRF(fcinfo, 0);

	pe_type = pull_event_type(&pe_array);
	pe_desc = lookup_rowtype_tupdesc_copy(pe_type, -1);

	memset(&taken, 0, sizeof(taken));
	taken.cxt = CurrentMemoryContext;
	taken.desc = pe_desc;
	taken.max = Min(max_events, 1024);
	taken.events = palloc(sizeof(Datum) * taken.max);
	taken.aggregates = palloc(sizeof(Datum) * taken.max);

	SpiConnect();
	memset(&dest, 0, sizeof(dest));
	values[0] = CStringGetTextDatum(name);
	if (RunAsExtensionRun(&statements[P_READ_DEST], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("destination \"%s\" does not exist", name)));
	read_dest_row(&dest);
	dest.name = pstrdup(name);
	check_owner(dest.owner, psprintf("destination \"%s\"", name));
	if (strcmp(dest.kind, "pull") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("destination \"%s\" is not a pull destination", name),
				 errdetail("It is of kind %s, which the dispatcher delivers.", dest.kind),
				 errhint("Create one with outbox.create_destination(name, 'pull').")));

	begin_as_extension(&saved);

	/* The lock, and the config as it is now. */
	values[0] = Int32GetDatum(dest.id);
	if (SpiRun(&statements[P_LOCK_DEST], values, NULL, SPI_OK_SELECT) == 0 ||
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
								   &isnull)))
	{
		/* Dropped meanwhile, or paused: nothing to hand out. */
		RunAsExtensionEnd(&saved);
		SpiFinish();
		return (Datum) 0;
	}
	dest.config = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull));
	DestConfigParseCommon(dest.config, &dest);
	if (lease == NULL)
	{
		lease = palloc0(sizeof(Interval));
		lease->time = dest.timeout_ms * 1000;
	}

	/* 1. An expired batch, handed out again. */
	values[0] = Int32GetDatum(dest.id);
	values[1] = IntervalPGetDatum(lease);
	if (SpiRun(&statements[P_REHAND], values, NULL, SPI_OK_UPDATE_RETURNING) == 1)
	{
		int64		batch_id;
		ArrayType  *arr;
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		batch_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		arr = DatumGetArrayTypePCopy(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull));
		RunAsExtensionEnd(&saved);
		deconstruct_array(arr, pe_type, -1, false, TYPALIGN_DOUBLE, &elems, &enulls, &n);
		put_rows(rsinfo, pe_desc, batch_id, elems, enulls, n);
		SpiFinish();
		return (Datum) 0;
	}

	/*
	 * 2. A new batch: the dispatcher's batch, taking instead of delivering,
	 * page after page and window after window (in order: each one goes on
	 * where the last one ended) until it has max_events events, ended
	 * before an event an unfinished batch holds, or reached the latest tick
	 * (so no rows means nothing is ready); PULL_MAX_ROUNDS bounds a call.
	 */
	take_tick();
	for (round = 0; round < PULL_MAX_ROUNDS && taken.n < max_events; round++)
	{
		BatchResult result;

		CHECK_FOR_INTERRUPTS();
		memset(&result, 0, sizeof(result));
		DeliveryTakeHere(&dest, max_events - taken.n, take_event, &taken, &result);
		if (!result.advanced && !result.more)
			break;
	}
	if (taken.n > 0)
	{
		ArrayType  *events;
		ArrayType  *aggregates;
		int64		batch_id;

		events = construct_array(taken.events, taken.n, pe_type, -1, false,
								 TYPALIGN_DOUBLE);
		aggregates = construct_array(taken.aggregates, taken.naggregates, TEXTOID,
									 -1, false, TYPALIGN_INT);
		memset(nulls, ' ', sizeof(nulls));
		values[0] = Int32GetDatum(dest.id);
		values[1] = IntervalPGetDatum(lease);
		values[2] = PointerGetDatum(aggregates);
		values[3] = PointerGetDatum(events);
		SpiRun(&statements[P_INSERT], values, nulls, SPI_OK_INSERT_RETURNING);
		batch_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		RunAsExtensionEnd(&saved);
		put_rows(rsinfo, pe_desc, batch_id, taken.events, NULL, taken.n);
	}
	else
		RunAsExtensionEnd(&saved);
	SpiFinish();
	return (Datum) 0;
}

/* ------------------------------------------------------------------------
 * finish_batch, retry_event
 * ------------------------------------------------------------------------
 */

/*
 * outbox.finish_batch(batch_id bigint) RETURNS bigint
 *		Acknowledge an unfinished batch: its events are delivered.  Returns
 *		their number.
 */
Datum
outbox_saga_finish_batch(PG_FUNCTION_ARGS)
{
	int64		batch_id;
	DestinationConfig dest;
	SavedIdentity saved;
	Datum		values[2];
	bool		isnull;
	int64		n;

	SqlRequireArg(fcinfo, 0, "batch_id");
	batch_id = PG_GETARG_INT64(0);

	SpiConnect();
	lookup_batch(batch_id, &dest);
	begin_as_extension(&saved);
	lock_batch_dest(batch_id, &dest);
	values[0] = Int64GetDatum(batch_id);
	values[1] = Int32GetDatum(dest.id);
	if (SpiRun(&statements[P_DELETE], values, NULL, SPI_OK_DELETE_RETURNING) != 1)
		batch_gone(batch_id);
	n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull));
	if (isnull)
		n = 0;
	values[0] = Int32GetDatum(dest.id);
	values[1] = Int64GetDatum(n);
	SpiRun(&statements[P_COUNT_DELIVERED], values, NULL, SPI_OK_UPDATE);
	RunAsExtensionEnd(&saved);
	SpiFinish();
	PG_RETURN_INT64(n);
}

/*
 * event_of
 *		The DispatchEvent of an outbox.pull_event (deformed values).
 */
static void
event_of(Datum *pe, bool *nulls, DispatchEvent *ev)
{
	memset(ev, 0, sizeof(DispatchEvent));
	ev->id = DatumGetInt64(pe[EV_ID]);
	memcpy(&ev->event_id, DatumGetUUIDP(pe[EV_EVENT_ID]), sizeof(pg_uuid_t));
	ev->topic = DatumGetTextPP(pe[EV_TOPIC]);
	ev->aggregate_id = nulls[EV_AGGREGATE_ID] ? NULL : DatumGetTextPP(pe[EV_AGGREGATE_ID]);
	ev->event_type = DatumGetTextPP(pe[EV_EVENT_TYPE]);
	ev->payload = DatumGetJsonbP(pe[EV_PAYLOAD]);
	ev->headers = DatumGetJsonbP(pe[EV_HEADERS]);
	ev->created_at = DatumGetTimestampTz(pe[EV_CREATED_AT]);
	ev->has_deliver_after = !nulls[EV_DELIVER_AFTER];
	ev->deliver_after = nulls[EV_DELIVER_AFTER] ? 0 : DatumGetTimestampTz(pe[EV_DELIVER_AFTER]);
	ev->txid = DatumGetUInt64(pe[EV_TXID]);
	ev->attempts = nulls[PE_ATTEMPTS] ? 0 : DatumGetInt32(pe[PE_ATTEMPTS]);
	ev->committed_at = nulls[PE_COMMITTED_AT] ? 0 : DatumGetTimestampTz(pe[PE_COMMITTED_AT]);
}

static bool
same_text(text *a, text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * outbox.retry_event(batch_id bigint, event_id uuid, delay interval,
 *		error text) RETURNS void
 *		Fail one event of an unfinished batch (see INVARIANTS).
 */
Datum
outbox_saga_retry_event(PG_FUNCTION_ARGS)
{
	int64		batch_id;
	pg_uuid_t  *event_id;
	Interval   *delay;
	char	   *error;
	DestinationConfig dest;
	SavedIdentity saved;
	Datum		values[3];
	char		nulls[3];
	bool		isnull;
	Oid			pe_type;
	Oid			pe_array;
	TupleDesc	pe_desc;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int			i;
	int			failed = -1;
	text	   *failed_aggregate = NULL;
	Datum	   *keep;
	Datum	   *aggregates;
	int			nkeep = 0;
	int			naggregates = 0;
	TimestampTz next = 0;

	SqlRequireArg(fcinfo, 0, "batch_id");
	SqlRequireArg(fcinfo, 1, "event_id");
	batch_id = PG_GETARG_INT64(0);
	event_id = PG_GETARG_UUID_P(1);
	delay = PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2);
	if (delay != NULL && interval_usecs(delay) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay must not be negative")));
	error = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (error != NULL && strlen(error) > RUN_AS_MAX_ERROR_LENGTH)
		error[pg_mbcliplen(error, strlen(error), RUN_AS_MAX_ERROR_LENGTH)] = '\0';
	if (error == NULL)
		error = "failed by the consumer";
	if (delay != NULL)
		next = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(GetCurrentTimestamp()),
													   IntervalPGetDatum(delay)));

	pe_type = pull_event_type(&pe_array);
	pe_desc = lookup_rowtype_tupdesc_copy(pe_type, -1);

	SpiConnect();
	lookup_batch(batch_id, &dest);
	begin_as_extension(&saved);
	lock_batch_dest(batch_id, &dest);
	values[0] = Int64GetDatum(batch_id);
	values[1] = Int32GetDatum(dest.id);
	if (SpiRun(&statements[P_LOCK_BATCH], values, NULL, SPI_OK_SELECT) != 1)
		batch_gone(batch_id);
	arr = DatumGetArrayTypePCopy(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	deconstruct_array(arr, pe_type, -1, false, TYPALIGN_DOUBLE, &elems, &enulls, &n);
	keep = palloc(sizeof(Datum) * (n + 1));
	aggregates = palloc(sizeof(Datum) * (n + 1));

	for (i = 0; i < n; i++)
	{
		HeapTupleHeader hdr = DatumGetHeapTupleHeader(elems[i]);
		HeapTupleData tup;
		Datum		pe[PE_COLUMNS];
		bool		pe_nulls[PE_COLUMNS];
		DispatchEvent ev;

		tup.t_len = HeapTupleHeaderGetDatumLength(hdr);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = hdr;
		heap_deform_tuple(&tup, pe_desc, pe, pe_nulls);
		event_of(pe, pe_nulls, &ev);

		if (failed < 0 && memcmp(&ev.event_id, event_id, sizeof(pg_uuid_t)) == 0)
		{
			/* The failed event: an attempt. */
			failed = i;
			failed_aggregate = ev.aggregate_id;
			(void) DeliveryFailTaken(&dest, &ev, false, next, error);
			continue;
		}
		if (failed >= 0 && failed_aggregate != NULL && ev.aggregate_id != NULL &&
			same_text(failed_aggregate, ev.aggregate_id))
		{
			/* A later event of its aggregate: held behind it. */
			(void) DeliveryFailTaken(&dest, &ev, true, 0, NULL);
			continue;
		}
		keep[nkeep++] = elems[i];
		if (ev.aggregate_id != NULL)
			aggregates[naggregates++] = PointerGetDatum(ev.aggregate_id);
	}
	if (failed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("event %s is not in batch %lld",
						DatumGetCString(DirectFunctionCall1(uuid_out,
															UUIDPGetDatum(event_id))),
						(long long) batch_id),
				 errdetail("It was failed with outbox.retry_event() already, or belongs to another batch.")));

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(batch_id);
	values[1] = PointerGetDatum(construct_array(aggregates, naggregates, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(keep, nkeep, pe_type, -1, false,
												TYPALIGN_DOUBLE));
	SpiRun(&statements[P_SET_BATCH], values, nulls, SPI_OK_UPDATE);
	values[0] = Int32GetDatum(dest.id);
	values[1] = CStringGetTextDatum(error);
	SpiRun(&statements[P_COUNT_FAILED], values, NULL, SPI_OK_UPDATE);
	RunAsExtensionEnd(&saved);
	SpiFinish();
	PG_RETURN_VOID();
}

/*-------------------------------------------------------------------------
 *
 * sync_delivery.c
 *		Delivery in the calling session, for users' regression tests:
 *		outbox.deliver_pending() and outbox.pending().
 *
 * outbox.deliver_pending(destination, include_backoff, max_events) runs the
 * dispatcher's batches (delivery.c, DeliveryRunBatchHere) of one function or
 * notify destination in the caller's transaction, so that a test can emit,
 * deliver and assert without waiting for the background worker.
 * outbox.pending(destination) lists what a destination still owes.
 *
 * PRIVILEGES
 *	Both are SECURITY INVOKER C functions (EXECUTE is granted to nobody by
 *	default).  The first thing either does after reading its arguments is
 *	to read the destination's row without a lock and check, as the caller,
 *	that the caller has the privileges of its owner (has_privs_of_role: a
 *	member, or a superuser): 42501 otherwise, before any lock, tick or
 *	delivery.  Then the statements run as the bootstrap superuser with
 *	search_path pinned (RunAsExtensionBegin), and handlers run as the
 *	destination's owner with its recorded search_path (RunAsOwner) - the
 *	dispatcher's identities exactly.
 *
 * TICKS
 *	A batch delivers the events of transactions that a tick (eventlog.c)
 *	shows committed.  deliver_pending first makes sure that the latest tick
 *	covers every transaction committed when it was called (its snapshot
 *	then, minus its own transaction):
 *	  - covered already: nothing to do;
 *	  - a dispatcher of this database runs: it is woken, and the call waits
 *		(polling with the latest snapshot) for the tick it takes at the start
 *		of its next pass, at most TICK_WAIT_MS (55000 after that).  No tick
 *		lock is held by the caller, so an open transaction of the caller
 *		never holds up the dispatchers;
 *	  - no dispatcher (library not preloaded, outbox_saga.enabled off, the
 *		SQL version differs, or none started yet): the call takes the tick
 *		itself, under the tick lock (OUTBOX_TICK_LOCK_SQL), which it then
 *		holds until its transaction ends.  The tick's snapshot counts the
 *		caller's own transaction as in progress, so events it writes after
 *		the call are delivered after it commits, like any others.
 *	The tick must be visible to the batch's statements: the call needs READ
 *	COMMITTED (0A000 otherwise).
 *
 * A handler or saga step may not call it (0A000): it runs inside a batch
 * (RunAsInOwnerCall) that holds its own destination's row.
 *
 * TRANSACTION
 *	Everything happens in the caller's transaction: if it rolls back, the
 *	deliveries, the handlers' writes, retry rows and dead letters roll back
 *	with it.  A handler's error is a failed attempt (caught in the handler's
 *	subtransaction, as in the dispatcher): the caller's transaction goes
 *	on.  The destination's row stays locked (FOR UPDATE) until the
 *	caller's transaction ends: the dispatcher skips it meanwhile, and a
 *	batch of the dispatcher that holds it is waited for.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/wait_event.h"

#include "base/run_as.h"
#include "base/shmem.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "dispatch/delivery.h"
#include "events/eventlog.h"
#include "events/wakeup.h"
#include "sink/dest_config.h"
#include "sink/sink.h"

PG_FUNCTION_INFO_V1(outbox_saga_deliver_pending);
PG_FUNCTION_INFO_V1(outbox_saga_pending);

/* How long deliver_pending waits for a dispatcher's tick. */
#define TICK_WAIT_MS			30000

/* The most events one call may attempt. */
#define MAX_EVENTS_LIMIT		1000000

enum
{
	Q_READ_DEST,
	Q_SNAPSHOT,
	Q_COVERED,
	Q_TICK_LOCK,
	Q_TICK,
	Q_PENDING,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.destination: the row, not locked (the privilege check first) */
	[Q_READ_DEST] = {
		"the lookup of a destination",
		"SELECT id, kind, config, owner, search_path FROM outbox.destination"
		" WHERE name = $1",
		{TEXTOID, 0}
	},
	/* no table: the snapshot the call must see delivered */
	[Q_SNAPSHOT] = {
		"the snapshot of the call",
		"SELECT pg_catalog.pg_current_snapshot()",
		{0}
	},

	/*
	 * outbox.tick: whether the latest tick shows committed every transaction
	 * that $1 does (the caller's own transaction aside)
	 */
	[Q_COVERED] = {
		"the check of the latest tick",
		"SELECT pg_catalog.pg_snapshot_xmax(t.snapshot) >= pg_catalog.pg_snapshot_xmax($1)"
		"   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_snapshot_xip(t.snapshot) x"
		"                    WHERE pg_catalog.pg_visible_in_snapshot(x, $1)"
		"                      AND x IS DISTINCT FROM pg_catalog.pg_current_xact_id_if_assigned())"
		"  FROM outbox.tick t ORDER BY t.id DESC LIMIT 1",
		{PG_SNAPSHOTOID, 0}
	},
	/* no table: ticks are taken one at a time (eventlog.h) */
	[Q_TICK_LOCK] = {"waiting for the tick lock", OUTBOX_TICK_LOCK_SQL, {0}},

	/*
	 * outbox.tick: a new tick, as the dispatcher takes it, except that the
	 * caller's own transaction, if it has an id below the snapshot's xmax,
	 * is added to the snapshot's running transactions (a snapshot never
	 * lists its own): its events are not committed yet.
	 */
	[Q_TICK] = {
		"taking a tick",
		"WITH c AS (SELECT pg_catalog.pg_current_snapshot() AS s,"
		"                  pg_catalog.pg_current_xact_id_if_assigned() AS me),"
		" n AS (SELECT CASE WHEN c.me IS NULL OR c.me >= pg_catalog.pg_snapshot_xmax(c.s)"
		"                   THEN c.s"
		"                   ELSE (SELECT (LEAST(pg_catalog.pg_snapshot_xmin(c.s), c.me)::text"
		"                                 || ':' || pg_catalog.pg_snapshot_xmax(c.s)::text"
		"                                 || ':' || pg_catalog.string_agg(u.x::text, ',' ORDER BY u.x)"
		"                                )::pg_catalog.pg_snapshot"
		"                           FROM (SELECT pg_catalog.pg_snapshot_xip(c.s) AS x"
		"                                 UNION SELECT c.me) u)"
		"              END AS s"
		"         FROM c)"
		"INSERT INTO outbox.tick (id, snapshot)"
		" SELECT t.id + 1, n.s"
		"   FROM (SELECT id, snapshot FROM outbox.tick ORDER BY id DESC LIMIT 1) t, n"
		"  WHERE t.snapshot::text <> n.s::text",
		{0}
	},

	/*
	 * outbox.delivery_retry, outbox.pull_batch, outbox.destination,
	 * outbox.tick, outbox.subscription, outbox.events: what a destination
	 * owes - its retry rows, the events of its unfinished pull batches
	 * (dispatch/pull.c), and the events of its subscriptions that its
	 * position in the log has not passed (as wait_delivered reads it,
	 * observability.c)
	 */
	[Q_PENDING] = {
		"the read of the pending events",
		"SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload,"
		"       r.headers, r.created_at, r.deliver_after, r.attempts, r.next_attempt_at,"
		"       r.last_error"
		"  FROM outbox.delivery_retry r WHERE r.destination_id = $1"
		" UNION ALL "
		"SELECT (e).id, (e).event_id, (e).topic, (e).aggregate_id, (e).event_type, (e).payload,"
		"       (e).headers, (e).created_at, (e).deliver_after, (e).attempts,"
		"       NULL::timestamptz, NULL::text"
		"  FROM outbox.pull_batch b, pg_catalog.unnest(b.events) e WHERE b.destination_id = $1"
		" UNION ALL "
		"SELECT e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload,"
		"       e.headers, e.created_at, e.deliver_after, 0, NULL::timestamptz, NULL::text"
		"  FROM outbox.destination d"
		"  JOIN outbox.tick tf ON tf.id = d.tick_from"
		"  JOIN outbox.events e"
		"    ON e.txid >= pg_catalog.pg_snapshot_xmin(tf.snapshot)"
		"   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, tf.snapshot)"
		"  LEFT JOIN outbox.tick tt ON tt.id = d.tick_to"
		" WHERE d.id = $1"
		"   AND NOT (tt.id IS NOT NULL"
		"            AND pg_catalog.pg_visible_in_snapshot(e.txid, tt.snapshot)"
		"            AND " CURSOR_PASSED_SQL("e", "d") ")"
		"   AND EXISTS (SELECT 1 FROM outbox.subscription s"
		"                WHERE s.destination_id = d.id"
		"                  AND (s.topic = '*' OR e.topic = s.topic)"
		"                  AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))"
		"                  AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, s.since))"
		"   AND NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p"
		"                    WHERE p.destination_id = d.id AND p.id = e.id)"
		" ORDER BY 1",
		{INT4OID, 0}
	},
};

/*
 * read_own_destination
 *		Connected to SPI: read destination 'name' (no lock) into *dest and
 *		check that the caller has the privileges of its owner (42501), as
 *		the caller.  42704 if there is no such destination.
 */
static void
read_own_destination(const char *name, DestinationConfig *dest)
{
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	if (RunAsExtensionRun(&statements[Q_READ_DEST], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("destination \"%s\" does not exist", name)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(dest, 0, sizeof(DestinationConfig));
	dest->name = pstrdup(name);
	dest->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	dest->kind = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	dest->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	dest->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	dest->search_path = SPI_getvalue(tup, desc, 5);

	if (!has_privs_of_role(GetUserId(), dest->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of destination \"%s\"", name),
				 errdetail("Only the role that created a destination, a member of it, or a superuser may deliver its events or list them.")));
}

/*
 * tick_covers
 *		Whether the latest tick shows committed every transaction that
 *		'snap' does, read with the latest snapshot.  Connected to SPI, with
 *		the extension's rights.
 */
static bool
tick_covers(Datum snap)
{
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = snap;
	if (SpiRunLatest(&statements[Q_COVERED], values, NULL, SPI_OK_SELECT) != 1)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * dispatcher_ticks
 *		Whether a dispatcher of this database runs and takes ticks (the SQL
 *		version matches its library).
 */
static bool
dispatcher_ticks(void)
{
	DispatcherSlot *slot;

	if (OutboxShared == NULL)
		return false;
	slot = ShmemFindSlot(MyDatabaseId);
	return slot != NULL && ShmemSlotRunning(slot) &&
		!pg_atomic_read_u32(&slot->version_mismatch);
}

/*
 * ensure_tick
 *		Make sure the latest tick covers every transaction committed now
 *		(see TICKS).  Connected to SPI, with the extension's rights.
 */
static void
ensure_tick(void)
{
	Datum		snap;
	bool		isnull;
	TimestampTz deadline;
	long		nap_ms = 1;

	(void) SpiRun(&statements[Q_SNAPSHOT], NULL, NULL, SPI_OK_SELECT);
	snap = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	snap = PointerGetDatum(PG_DETOAST_DATUM_COPY(snap));
	if (tick_covers(snap))
		return;

	if (!dispatcher_ticks())
	{
		(void) SpiRun(&statements[Q_TICK_LOCK], NULL, NULL, SPI_OK_SELECT);
		(void) SpiRun(&statements[Q_TICK], NULL, NULL, SPI_OK_INSERT);
		return;
	}

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TICK_WAIT_MS);
	for (;;)
	{
		ShmemWakeDispatcher(MyDatabaseId);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		nap_ms = Min(nap_ms * 2, 50);
		if (tick_covers(snap))
			return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no dispatcher took a tick within %d seconds",
							TICK_WAIT_MS / 1000),
					 errdetail("The dispatchers of this database are busy or stuck (see outbox.workers)."),
					 errhint("Pause the destination and try again, or stop the dispatchers.")));
	}
}

/*
 * outbox.deliver_pending(destination text, include_backoff boolean,
 *		max_events integer) RETURNS bigint
 *
 * Delivers what a function or notify destination owes, in the caller's
 * transaction, batch after batch, as the dispatcher would (see the file
 * header); returns the number of events delivered.  Each batch waits for
 * the destination's row lock.  With include_backoff, the batches until the
 * first failure also take retry rows whose backoff has not ended (never
 * before their deliver_after), and the destination's own backoff is
 * ignored; so each call attempts every pending event at most once unless
 * a backoff ends during the call.  Stops when nothing is left, or once
 * max_events events were attempted (delivered or failed).  A paused
 * destination is delivered too: the caller asked for it.
 */
Datum
outbox_saga_deliver_pending(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		include_backoff;
	int32		max_events;
	DestinationConfig dest;
	const OutboxSink *sink;
	SavedIdentity saved;
	int64		delivered = 0;
	int64		attempted = 0;
	int64		failed = 0;

	SqlRequireArg(fcinfo, 0, "destination");
	SqlRequireArg(fcinfo, 1, "include_backoff");
	SqlRequireArg(fcinfo, 2, "max_events");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	include_backoff = PG_GETARG_BOOL(1);
	max_events = PG_GETARG_INT32(2);
	if (max_events < 1 || max_events > MAX_EVENTS_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and %d", MAX_EVENTS_LIMIT)));

	SpiConnect();
	read_own_destination(name, &dest);

	/*
	 * A handler or saga step runs inside a batch that holds its
	 * destination's row: a batch in it would deliver and record that
	 * batch's events a second time.
	 */
	if (RunAsInOwnerCall())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("outbox.deliver_pending() cannot be called by a handler or a saga step")));

	sink = SinkLookup(dest.kind, true);
	if (sink == NULL || sink->deliver == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("outbox.deliver_pending() delivers function and notify destinations only"),
				 errdetail("Destination \"%s\" is of kind %s, which only the dispatcher delivers, over the network.",
						   name, dest.kind),
				 errhint("Use outbox.wait_delivered() to wait for the dispatcher.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("outbox.deliver_pending() needs the READ COMMITTED isolation level"),
				 errdetail("It reads the tick it waits for with a new snapshot.")));
	DestConfigParseCommon(dest.config, &dest);

	RunAsExtensionBegin(&saved);
	ensure_tick();
	while (attempted < max_events)
	{
		BatchResult result;

		memset(&result, 0, sizeof(result));
		DeliveryRunBatchHere(&dest, (int) Min(max_events - attempted, PG_INT32_MAX),
							 include_backoff && failed == 0, &result);
		delivered += result.delivered;
		failed += result.failed;
		attempted += result.delivered + result.failed;
		if (!result.more && !result.advanced)
			break;
	}
	RunAsExtensionEnd(&saved);
	SpiFinish();
	/* It may have ended the destination's backoff: the summary (shmem.c). */
	WakeupNoteDestinationsChanged();

	PG_RETURN_INT64(delivered);
}

/*
 * outbox.pending(destination text) RETURNS TABLE (...)
 *
 * What a destination still owes, in id order: its retry rows (failed,
 * delayed, held behind their aggregate; attempts, next_attempt_at and
 * last_error say which), the events of its unfinished pull batches, and
 * the events of its subscriptions that its position has not passed
 * (attempts 0).  Events of the caller's own open
 * transaction are listed too; they are delivered after it commits.
 */
Datum
outbox_saga_pending(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	DestinationConfig dest;
	Datum		values[1];
	uint64		i;

	SqlRequireArg(fcinfo, 0, "destination");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);

	SpiConnect();
	read_own_destination(name, &dest);
	values[0] = Int32GetDatum(dest.id);
	(void) RunAsExtensionRun(&statements[Q_PENDING], values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	SpiFinish();

	return (Datum) 0;
}

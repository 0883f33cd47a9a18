/*-------------------------------------------------------------------------
 *
 * tick.c
 *		Taking a tick (outbox.tick) without the executor: the dispatcher's
 *		tick at the start of every pass.
 *
 * A tick is a snapshot (pg_current_snapshot()) with an id one above the
 * latest tick's; the windows of the log are the spans between two ticks
 * (eventlog.c, READING WITHOUT GAPS).  TickTake does what the statement
 *
 *	 INSERT INTO outbox.tick (id, snapshot)
 *	 SELECT t.id + 1, pg_current_snapshot()
 *	   FROM (SELECT id, snapshot FROM outbox.tick ORDER BY id DESC LIMIT 1) t
 *	  WHERE t.snapshot::text <> pg_current_snapshot()::text
 *
 * did after OUTBOX_TICK_LOCK_SQL, at a tenth of its cost: that statement
 * was planned, started and ended by the executor, and prepared the WHEN
 * condition of the restore trigger, at every pass - a tenth of a pass's CPU
 * at one event per pass.
 *
 * INVARIANTS
 *	- Ticks are taken one at a time: TickTake takes the tick lock (the
 *	  transaction advisory lock of OUTBOX_TICK_LOCK_SQL, held to the end of
 *	  the caller's transaction) before it reads anything.  Every other
 *	  writer of ticks takes it too (housekeeping, outbox.deliver_pending,
 *	  pull consumers), so the latest tick is read after the one before it
 *	  committed, and its snapshot taken after that: each tick's snapshot
 *	  sees at least what the one before saw.
 *	- The latest tick is read with a snapshot taken after the lock, and the
 *	  new tick's snapshot is that same snapshot (the caller's transaction
 *	  may be older than the lock: a pass begins before it takes it).
 *	- A new tick is written only if the snapshot moved (as binary values:
 *	  pg_current_snapshot() sorts and deduplicates the in-progress list,
 *	  so equal snapshots are equal bytes; a false difference would only add
 *	  a tick).
 *	- The row is written with heap_insert and index_insert, like the log's
 *	  rows: no trigger fires (the restore trigger is for rows a client
 *	  restores, never the dispatcher's), only plain column indexes may
 *	  exist, and the table must still have the three columns of the
 *	  extension script.
 *	- It runs in the caller's transaction: a rollback takes the tick back.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "events/eventlog.h"
#include "events/tick.h"

/* Columns of outbox.tick, in their declared order. */
enum
{
	TICK_ID,
	TICK_SNAPSHOT,
	TICK_CREATED_AT,
	TICK_NATTS
};

/*
 * latest_tick
 *		The id and snapshot (copied into the current memory context) of the
 *		latest tick visible to 'snap', through the primary key backwards.
 *		False if the table is empty.
 */
static bool
latest_tick(Relation rel, Snapshot snap, int64 *id, Datum *snapshot)
{
	Oid			pk = CompatRelationGetPrimaryKeyIndex(rel);
	Relation	irel;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox tick table has no primary key"),
				 errhint("Reinstall the extension.")));
	irel = index_open(pk, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = CompatIndexBeginscan(rel, irel, snap, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	found = index_getnext_slot(scan, BackwardScanDirection, slot);
	if (found)
	{
		bool		isnull;

		*id = DatumGetInt64(slot_getattr(slot, TICK_ID + 1, &isnull));
		*snapshot = PointerGetDatum(PG_DETOAST_DATUM_COPY(slot_getattr(slot, TICK_SNAPSHOT + 1,
																		&isnull)));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(irel, AccessShareLock);
	return found;
}

/*
 * same_snapshot
 *		Whether two pg_snapshot values are equal.
 */
static bool
same_snapshot(Datum a, Datum b)
{
	struct varlena *va = (struct varlena *) DatumGetPointer(a);
	struct varlena *vb = (struct varlena *) DatumGetPointer(b);

	return VARSIZE_ANY(va) == VARSIZE_ANY(vb) &&
		memcmp(va, vb, VARSIZE_ANY(va)) == 0;
}

/*
 * TickTake
 *		Take the tick lock and, if the snapshot moved since the latest tick,
 *		write a new tick; in the caller's transaction.  Returns the id of the
 *		latest tick then (the new one, or the latest if the snapshot did not
 *		move): a tick that exists once the caller commits.  An empty tick
 *		table (only by hand: the extension script writes tick 0) gets no
 *		tick, and 0 is returned.
 */
int64
TickTake(void)
{
	Oid			relid;
	Relation	rel;
	TupleDesc	desc;
	Snapshot	snap;
	int64		latest_id = 0;
	Datum		latest_snapshot = (Datum) 0;
	Datum		now_snapshot;
	Datum		values[TICK_NATTS];
	bool		nulls[TICK_NATTS] = {false, false, false};
	HeapTuple	tup;
	LogIndexes	indexes;

	(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
							   Int32GetDatum(OUTBOX_TICK_LOCK_CLASS),
							   Int32GetDatum(OUTBOX_TICK_LOCK_OBJECT));

	relid = OutboxLogRelid(get_namespace_oid("outbox", false), "tick");
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	if (desc->natts != TICK_NATTS || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox tick table has been altered"),
				 errdetail("outbox_saga expects the columns of the installed extension script in a heap table."),
				 errhint("Reinstall the extension.")));

	/* After the lock: sees the tick before this one committed. */
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (!latest_tick(rel, snap, &latest_id, &latest_snapshot))
	{
		UnregisterSnapshot(snap);
		table_close(rel, NoLock);
		return 0;
	}
	PushActiveSnapshot(snap);
	now_snapshot = OidFunctionCall0Coll(F_PG_CURRENT_SNAPSHOT, InvalidOid);
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	if (same_snapshot(now_snapshot, latest_snapshot))
	{
		table_close(rel, NoLock);
		return latest_id;
	}

	values[TICK_ID] = Int64GetDatum(latest_id + 1);
	values[TICK_SNAPSHOT] = now_snapshot;
	values[TICK_CREATED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	tup = heap_form_tuple(desc, values, nulls);
	simple_heap_insert(rel, tup);
	LogIndexesLoad(rel, CurrentMemoryContext, &indexes);
	LogIndexesInsert(rel, &indexes, tup, values, nulls);
	heap_freetuple(tup);
	table_close(rel, NoLock);
	/* The caller's next statements see it, as after an INSERT. */
	CommandCounterIncrement();
	return latest_id + 1;
}

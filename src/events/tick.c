/*-------------------------------------------------------------------------
 *
 * tick.c
 *		Ticks (outbox.tick): taking one without the executor (the
 *		dispatcher's tick at the start of every pass, a pull consumer's
 *		before its batch), and reading their
 *		snapshots through a per-process cache.
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
 *	  writer of ticks takes it too (housekeeping and outbox.deliver_pending,
 *	  whose ticks have conditions of their own and stay SQL), so the
 *	  latest tick is read after the one before it
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
 *	- TickSnapshot caches only committed ticks (a tick never changes once
 *	  committed), in TopMemoryContext, at most TICK_CACHE_SIZE; any
 *	  relcache invalidation of outbox.tick empties the cache.
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
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "base/spi_util.h"
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
	Relation	irel = index_open(OutboxPrimaryKey(rel), AccessShareLock);
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

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
 * TickRelid
 *		The OID of outbox.tick, looked up each time (the extension may have
 *		been dropped and created again); an error if it is not installed.
 */
Oid
TickRelid(void)
{
	return OutboxLogRelid(get_namespace_oid("outbox", false), "tick");
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

	relid = TickRelid();
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

/* ------------------------------------------------------------------------
 * Reading a tick's snapshot, with a cache.
 * ------------------------------------------------------------------------
 */

/* outbox.tick: the snapshot of one tick */
static SpiStatement tick_snapshot_statement = {
	"the read of a tick's snapshot",
	"SELECT snapshot FROM outbox.tick WHERE id = $1",
	{INT8OID, 0}
};

/*
 * Tick snapshots read lately (TickSnapshot): a tick never changes once
 * committed, and a batch reads the two of its window, which the next
 * batches read again.  Forgotten on any relcache invalidation of the tick
 * table (dropped with the extension, TRUNCATE by hand: ids that start again
 * in a new table never find an old snapshot); invalidations are read at
 * every transaction start.
 */
#define TICK_CACHE_SIZE		4

typedef struct CachedTick
{
	int64		id;
	Datum		snapshot;		/* in TopMemoryContext; 0: empty */
} CachedTick;

static CachedTick tick_cache[TICK_CACHE_SIZE];
static int	tick_cache_next = 0;
static Oid	tick_cache_relid = InvalidOid;	/* outbox.tick when filled */
static bool tick_cache_callback = false;

/*
 * tick_cache_forget
 *		Relcache callback: the tick table changed (or everything did).
 */
static void
tick_cache_forget(Datum arg, Oid relid)
{
	int			i;

	if (OidIsValid(relid) && relid != tick_cache_relid)
		return;
	for (i = 0; i < TICK_CACHE_SIZE; i++)
	{
		if (tick_cache[i].snapshot != 0)
			pfree(DatumGetPointer(tick_cache[i].snapshot));
		tick_cache[i].snapshot = 0;
	}
}

/*
 * read_tick_snapshot
 *		The snapshot of tick 'id' as the table has it now (in SPI's memory),
 *		or 0 if it is gone.
 */
static Datum
read_tick_snapshot(int64 id, bool *found)
{
	Datum		values[1];
	bool		isnull;

	values[0] = Int64GetDatum(id);
	SpiRun(&tick_snapshot_statement, values, NULL, SPI_OK_SELECT);
	*found = (SPI_processed == 1);
	if (!*found)
		return (Datum) 0;
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/*
 * TickSnapshot
 *		The snapshot of tick 'id' (a pg_snapshot datum, in the current
 *		memory context), or 0 if it is gone; in the caller's transaction,
 *		SPI connected.  With 'cached', a tick read lately comes from the
 *		cache and a tick read now goes into it: only for ticks that are
 *		committed (a tick of the caller's own transaction may be rolled
 *		back, and its id given again).  A tick pruned since it was cached is
 *		still found: its snapshot is what it was.
 */
Datum
TickSnapshot(int64 id, bool cached, bool *found)
{
	Datum		snap;
	int			i;
	CachedTick *slot;
	MemoryContext old;

	if (cached)
	{
		for (i = 0; i < TICK_CACHE_SIZE; i++)
		{
			if (tick_cache[i].snapshot != 0 && tick_cache[i].id == id)
			{
				*found = true;
				return PointerGetDatum(PG_DETOAST_DATUM_COPY(tick_cache[i].snapshot));
			}
		}
	}

	snap = read_tick_snapshot(id, found);
	if (!*found)
		return (Datum) 0;
	if (cached)
	{
		if (!tick_cache_callback)
		{
			CacheRegisterRelcacheCallback(tick_cache_forget, (Datum) 0);
			tick_cache_callback = true;
		}
		tick_cache_relid = TickRelid();
		slot = &tick_cache[tick_cache_next];
		tick_cache_next = (tick_cache_next + 1) % TICK_CACHE_SIZE;
		if (slot->snapshot != 0)
			pfree(DatumGetPointer(slot->snapshot));
		old = MemoryContextSwitchTo(TopMemoryContext);
		slot->snapshot = PointerGetDatum(PG_DETOAST_DATUM_COPY(snap));
		MemoryContextSwitchTo(old);
		slot->id = id;
	}
	return PointerGetDatum(PG_DETOAST_DATUM_COPY(snap));
}

/*-------------------------------------------------------------------------
 *
 * destination_rows.c
 *		The dispatcher's reads of outbox.destination and outbox.subscription
 *		without the executor: the rows a pass starts from
 *		(DestinationRowsRead), the lock a batch takes on its destination's
 *		row (DestinationLockForBatch) and the batch's subscriptions
 *		(DestinationSubscriptionsRead).
 *
 * All three were SPI statements, planned once but started and ended by the
 * executor at every pass and every batch.  At a steady 3,000 events/s a
 * pass comes every 10 ms with a few dozen events, and those statements
 * were a fifth of the dispatcher's CPU (perf): most of it the executor's
 * setting up of a lock node, index scans and a subplan, in caches gone
 * cold since the last pass.  Here they are a heap scan and index probes.
 *
 * WHAT THEY DO: exactly what these statements did in the dispatcher's READ
 * COMMITTED transactions,
 *
 *	DestinationRowsRead:
 *		SELECT id, name, kind, config, owner,
 *		       NOT paused AND (retry_at IS NULL OR retry_at <= now()),
 *		       search_path
 *		  FROM outbox.destination ORDER BY id
 *	DestinationLockForBatch:
 *		SELECT tick_from, tick_to, last_id, done_id, consecutive_failures,
 *		       last_txid, config, search_path, owner, kind,
 *		       EXISTS (SELECT FROM outbox.delivery_retry r
 *		                WHERE r.destination_id = $1)
 *		  FROM outbox.destination WHERE id = $1 AND NOT paused
 *		   AND (retry_at IS NULL OR retry_at <= now())
 *		   FOR UPDATE SKIP LOCKED
 *	DestinationSubscriptionsRead:
 *		SELECT topic, event_types, since FROM outbox.subscription
 *		 WHERE destination_id = $1
 *	  (through subscription_unique_idx, whose first column it is)
 *
 * INVARIANTS
 *	- Each reads with a snapshot of its own, taken when it starts (what a
 *	  statement of a READ COMMITTED transaction gets); now() is the
 *	  transaction's start, as in SQL.  DestinationRowsRead and
 *	  DestinationLockForBatch run only in the dispatcher's own
 *	  transactions, which are READ COMMITTED whatever the server's default
 *	  (worker/dispatcher.c, ISOLATION): a batch in a caller's transaction
 *	  (DeliveryRunBatchHere, any isolation level, waiting for the lock)
 *	  keeps its statement.  DestinationSubscriptionsRead serves every
 *	  batch, also in a caller's transaction of any isolation level: there
 *	  its latest snapshot matches the window it filters, whose reads take
 *	  one too (events/logscan.c), and it sees the transaction's own earlier
 *	  statements, as a statement would.
 *	- The lock never waits.  The row the snapshot sees is locked FOR
 *	  UPDATE; one that another transaction has locked or is changing is
 *	  skipped (false), as SKIP LOCKED skips it.  A row updated by a commit
 *	  after the snapshot is followed to its latest version, which is locked
 *	  and then checked again (paused? backing off?), as the executor's
 *	  recheck does; a row deleted meanwhile is not there (false).  A row
 *	  locked and then found paused stays locked to the end of the
 *	  transaction, as with the statement.
 *	- Relations are locked as the statements locked them, to the end of
 *	  the transaction: ACCESS SHARE to read, ROW SHARE on the table and
 *	  index whose row is locked.
 *	- Columns are found by name in the table's descriptor at each call: an
 *	  installation upgraded from 0.1.0 has the columns that 0.2.0 added at
 *	  other positions than a fresh one.  The dispatcher runs only once the
 *	  installed SQL matches the library (dispatcher.c), so a missing column
 *	  is an error of a damaged installation.
 *	- Everything returned is copied into the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "dispatch/destination_rows.h"
#include "events/eventlog.h"

/* The columns of outbox.destination read here. */
typedef enum DestinationColumn
{
	DC_ID,
	DC_NAME,
	DC_KIND,
	DC_CONFIG,
	DC_PAUSED,
	DC_OWNER,
	DC_RETRY_AT,
	DC_SEARCH_PATH,
	DC_TICK_FROM,
	DC_TICK_TO,
	DC_LAST_ID,
	DC_DONE_ID,
	DC_CONSECUTIVE_FAILURES,
	DC_LAST_TXID,
	DC_COUNT
} DestinationColumn;

static const char *const column_names[DC_COUNT] = {
	[DC_ID] = "id",
	[DC_NAME] = "name",
	[DC_KIND] = "kind",
	[DC_CONFIG] = "config",
	[DC_PAUSED] = "paused",
	[DC_OWNER] = "owner",
	[DC_RETRY_AT] = "retry_at",
	[DC_SEARCH_PATH] = "search_path",
	[DC_TICK_FROM] = "tick_from",
	[DC_TICK_TO] = "tick_to",
	[DC_LAST_ID] = "last_id",
	[DC_DONE_ID] = "done_id",
	[DC_CONSECUTIVE_FAILURES] = "consecutive_failures",
	[DC_LAST_TXID] = "last_txid",
};

/* A slot of outbox.destination and where its columns are. */
typedef struct DestinationSlot
{
	TupleTableSlot *slot;
	AttrNumber	attnums[DC_COUNT];
} DestinationSlot;

/*
 * attribute_of
 *		The number of column 'name' of 'rel', or an error.
 */
static AttrNumber
attribute_of(Relation rel, const char *name)
{
	int			attnum = attnameAttNum(rel, name, false);

	if (attnum != InvalidAttrNumber)
		return (AttrNumber) attnum;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of outbox.%s does not exist", name,
					RelationGetRelationName(rel)),
			 errhint("Update the extension: ALTER EXTENSION outbox_saga UPDATE.")));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/*
 * slot_begin
 *		A slot for rows of 'rel' (outbox.destination), its columns found by
 *		name.
 */
static void
slot_begin(Relation rel, DestinationSlot *ds)
{
	int			c;

	for (c = 0; c < DC_COUNT; c++)
		ds->attnums[c] = attribute_of(rel, column_names[c]);
	ds->slot = table_slot_create(rel, NULL);
}

/* column: the value of column 'c' of the slot's row. */
static inline Datum
column(DestinationSlot *ds, DestinationColumn c, bool *isnull)
{
	return slot_getattr(ds->slot, ds->attnums[c], isnull);
}

/* text_column: column 'c' as a C string (copied), or NULL. */
static char *
text_column(DestinationSlot *ds, DestinationColumn c)
{
	bool		isnull;
	Datum		d = column(ds, c, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * is_ready
 *		NOT paused AND (retry_at IS NULL OR retry_at <= now()) for the slot's
 *		row.
 */
static bool
is_ready(DestinationSlot *ds)
{
	bool		isnull;
	Datum		d;

	d = column(ds, DC_PAUSED, &isnull);
	if (isnull || DatumGetBool(d))
		return false;
	d = column(ds, DC_RETRY_AT, &isnull);
	return isnull ||
		DatumGetTimestampTz(d) <= GetCurrentTransactionStartTimestamp();
}

/* qsort comparator of DestinationRow by id. */
static int
row_id_cmp(const void *a, const void *b)
{
	int32		ia = ((const DestinationRow *) a)->dest.id;
	int32		ib = ((const DestinationRow *) b)->dest.id;

	return (ia > ib) - (ia < ib);
}

/*
 * destination_relid
 *		The OID of outbox.destination (looked up each time: the extension
 *		may have been dropped and created again).
 */
static Oid
destination_relid(Oid *nspid)
{
	*nspid = get_namespace_oid("outbox", false);
	return OutboxLogRelid(*nspid, "destination");
}

/*
 * DestinationRowsRead
 *		Every destination, in id order, as far as its row goes (the
 *		common config keys are not parsed), with whether it is ready (not
 *		paused, not backing off); *count rows.
 */
DestinationRow *
DestinationRowsRead(int *count)
{
	Oid			nspid;
	Relation	rel = table_open(destination_relid(&nspid), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snap, 0, NULL);
	DestinationSlot ds;
	int			n = 0;
	int			capacity = 8;
	DestinationRow *rows = palloc(sizeof(DestinationRow) * capacity);

	slot_begin(rel, &ds);
	while (table_scan_getnextslot(scan, ForwardScanDirection, ds.slot))
	{
		DestinationRow *row;
		bool		isnull;

		if (n == capacity)
		{
			capacity *= 2;
			rows = repalloc(rows, sizeof(DestinationRow) * capacity);
		}
		row = &rows[n++];
		memset(row, 0, sizeof(DestinationRow));
		row->dest.id = DatumGetInt32(column(&ds, DC_ID, &isnull));
		row->dest.name = text_column(&ds, DC_NAME);
		row->dest.kind = text_column(&ds, DC_KIND);
		row->dest.config = DatumGetJsonbPCopy(column(&ds, DC_CONFIG, &isnull));
		row->dest.owner = DatumGetObjectId(column(&ds, DC_OWNER, &isnull));
		row->dest.paused = DatumGetBool(column(&ds, DC_PAUSED, &isnull));
		row->dest.search_path = text_column(&ds, DC_SEARCH_PATH);
		row->ready = is_ready(&ds);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(ds.slot);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	if (n > 1)
		qsort(rows, n, sizeof(DestinationRow), row_id_cmp);
	*count = n;
	return rows;
}

/*
 * A scan of rows whose index 'index' begins with an int4 column equal to
 * a given id (a destination's id), under 'snap'.
 */
typedef struct IdScan
{
	Relation	index;
	IndexScanDesc scan;
} IdScan;

static void
id_scan_begin(IdScan *is, Relation rel, Oid index, LOCKMODE lockmode,
			  Snapshot snap, int32 id)
{
	ScanKeyData key;

	is->index = index_open(index, lockmode);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	is->scan = CompatIndexBeginscan(rel, is->index, snap, 1, 0);
	index_rescan(is->scan, &key, 1, NULL, 0);
}

static bool
id_scan_next(IdScan *is, TupleTableSlot *slot)
{
	return index_getnext_slot(is->scan, ForwardScanDirection, slot);
}

static void
id_scan_end(IdScan *is)
{
	index_endscan(is->scan);
	index_close(is->index, NoLock);
}

/*
 * first_row
 *		Put the first row of id_scan_begin's scan into 'slot'; false if
 *		there is none.
 */
static bool
first_row(Relation rel, Oid index, LOCKMODE lockmode, Snapshot snap, int32 id,
		  TupleTableSlot *slot)
{
	IdScan		is;
	bool		found;

	id_scan_begin(&is, rel, index, lockmode, snap, id);
	found = id_scan_next(&is, slot);
	id_scan_end(&is);
	return found;
}

/*
 * has_retry_rows
 *		Whether outbox.delivery_retry has a row of destination 'id' that
 *		'snap' sees (its primary key begins with destination_id).
 */
static bool
has_retry_rows(Oid nspid, Snapshot snap, int32 id)
{
	Relation	rel = table_open(OutboxLogRelid(nspid, "delivery_retry"), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found;

	found = first_row(rel, OutboxPrimaryKey(rel), AccessShareLock, snap, id, slot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return found;
}

/*
 * DestinationLockForBatch
 *		Lock the row of destination 'id' for a batch, unless somebody else
 *		has it locked, and fill *row from it: false if it is not there, is
 *		paused or backing off, or is locked (see the file header).
 */
bool
DestinationLockForBatch(int32 id, DestinationLocked *row)
{
	Oid			nspid;
	Relation	rel = table_open(destination_relid(&nspid), RowShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	DestinationSlot ds;
	bool		locked = false;

	Assert(!IsolationUsesXactSnapshot());
	slot_begin(rel, &ds);
	if (first_row(rel, OutboxPrimaryKey(rel), RowShareLock, snap, id, ds.slot) &&
		is_ready(&ds))
	{
		ItemPointerData tid = ds.slot->tts_tid;
		TM_FailureData tmfd;
		TM_Result	result;

		result = table_tuple_lock(rel, &tid, snap, ds.slot,
								  GetCurrentCommandId(true),
								  LockTupleExclusive, LockWaitSkip,
								  TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
		switch (result)
		{
			case TM_Ok:
				/* A newer version than the snapshot's: check it again. */
				locked = !tmfd.traversed || is_ready(&ds);
				break;
			case TM_WouldBlock:
			case TM_Deleted:
				break;
			default:
				elog(ERROR, "unexpected result %d locking the row of destination %d",
					 (int) result, id);
		}
	}
	if (locked)
	{
		bool		isnull;
		Datum		d;

		row->tick_from = DatumGetInt64(column(&ds, DC_TICK_FROM, &isnull));
		d = column(&ds, DC_TICK_TO, &isnull);
		row->tick_to = isnull ? 0 : DatumGetInt64(d);
		row->last_id = DatumGetInt64(column(&ds, DC_LAST_ID, &isnull));
		row->done_id = DatumGetInt64(column(&ds, DC_DONE_ID, &isnull));
		row->consecutive_failures =
			DatumGetInt32(column(&ds, DC_CONSECUTIVE_FAILURES, &isnull));
		d = column(&ds, DC_LAST_TXID, &isnull);
		row->last_txid = isnull ? 0 : DatumGetUInt64(d);
		row->config = DatumGetJsonbPCopy(column(&ds, DC_CONFIG, &isnull));
		row->search_path = text_column(&ds, DC_SEARCH_PATH);
		row->owner = DatumGetObjectId(column(&ds, DC_OWNER, &isnull));
		row->kind = text_column(&ds, DC_KIND);
		row->has_retries = has_retry_rows(nspid, snap, id);
	}
	ExecDropSingleTupleTableSlot(ds.slot);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	return locked;
}

/*
 * DestinationSubscriptionsRead
 *		The subscriptions of destination 'id' (*count of them), in no
 *		particular order.
 */
SubscriptionRow *
DestinationSubscriptionsRead(int32 id, int *count)
{
	Oid			nspid = get_namespace_oid("outbox", false);
	Relation	rel = table_open(OutboxLogRelid(nspid, "subscription"), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	AttrNumber	topic_att = attribute_of(rel, "topic");
	AttrNumber	types_att = attribute_of(rel, "event_types");
	AttrNumber	since_att = attribute_of(rel, "since");
	IdScan		is;
	int			n = 0;
	int			capacity = 4;
	SubscriptionRow *subs = palloc(sizeof(SubscriptionRow) * capacity);

	id_scan_begin(&is, rel, OutboxLogRelid(nspid, "subscription_unique_idx"),
				  AccessShareLock, snap, id);
	while (id_scan_next(&is, slot))
	{
		SubscriptionRow *sub;
		bool		isnull;
		Datum		d;

		if (n == capacity)
		{
			capacity *= 2;
			subs = repalloc(subs, sizeof(SubscriptionRow) * capacity);
		}
		sub = &subs[n++];
		sub->topic = DatumGetTextPCopy(slot_getattr(slot, topic_att, &isnull));
		d = slot_getattr(slot, types_att, &isnull);
		sub->event_types = isnull ? NULL : DatumGetArrayTypePCopy(d);
		d = slot_getattr(slot, since_att, &isnull);
		sub->since = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	}
	id_scan_end(&is);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	*count = n;
	return subs;
}

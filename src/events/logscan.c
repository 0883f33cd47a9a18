/*-------------------------------------------------------------------------
 *
 * logscan.c
 *		Reading a window of the log (see eventlog.c) with index scans.
 *
 * The dispatcher's two reads of the log are done here with the index AM
 * directly, never through the planner: the log's partitions are truncated
 * and refilled all the time, so their statistics are usually wrong, and a
 * plan chosen on them (a sequential scan and a sort, or an id-ordered scan
 * from the start of the log) costs milliseconds per batch instead of
 * microseconds.
 *
 *	LogWindowFirstId: the lowest id of the window (S_from, S_to], by a range
 *		scan of each partition's txid index over [xmin(S_from), xmax(S_to)).
 *	LogWindowPage: the window's events after an id, in id order, up to a
 *		limit.  Generation g lives in partition g % 4 (eventlog.c), so the ids
 *		after X in order are: the rest of X's generation in its partition,
 *		then the next generation in the next partition, and so on; each is a
 *		range scan of one partition's id index.
 *
 * Both run in the caller's transaction, and take ACCESS SHARE locks on the
 * partitions and indexes they read, held to the end of the transaction.  A
 * row is seen if its transaction is visible to the scan's MVCC snapshot, and
 * belongs to the window if it is visible in S_to and not in S_from.  So the
 * scan's snapshot must see every transaction that S_to sees as ended: each
 * scan takes a snapshot of its own, after its caller read S_to (a committed
 * tick row), never the caller's active snapshot - a batch's transaction
 * takes that when it begins, and the upper tick of a new window may have
 * been taken after it by another process (the other dispatchers of the pool,
 * housekeeping): a transaction that committed in between would be in the
 * window but invisible to the scan, and its events skipped for good (found
 * by make soak; test/t/098_window_snapshot.pl).  Later transactions the
 * fresh snapshot sees are outside the window (not visible in S_to).  They
 * only read: nothing to recover after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "events/eventlog.h"
#include "events/logscan.h"

/*
 * log_relid
 *		The OID of the relation of the outbox schema whose name is 'fmt'
 *		(one %d) formatted with 'part'.
 */
static Oid
log_relid(Oid nspid, const char *fmt, int part)
{
	char		name[NAMEDATALEN];

	snprintf(name, sizeof(name), fmt, part);
	return OutboxLogRelid(nspid, name);
}

/* An index range scan of one partition of the log. */
typedef struct LogIndexScan
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
} LogIndexScan;

/*
 * log_scan_begin
 *		Start a scan of partition 'part' through its index named by
 *		'index_fmt' (a format with one %d, the partition), with the two
 *		bounds 'keys', under a snapshot taken now (see the file header).
 *		Takes ACCESS SHARE on the partition and the index.
 */
static void
log_scan_begin(LogIndexScan *ls, Oid nspid, int part, const char *index_fmt,
			   ScanKeyData *keys)
{
	ls->heap = table_open(log_relid(nspid, "events_p%d", part), AccessShareLock);
	ls->index = index_open(log_relid(nspid, index_fmt, part), AccessShareLock);
	ls->slot = table_slot_create(ls->heap, NULL);
	ls->snapshot = RegisterSnapshot(GetLatestSnapshot());
	ls->scan = index_beginscan(ls->heap, ls->index, ls->snapshot, 2, 0);
	index_rescan(ls->scan, keys, 2, NULL, 0);
}

/*
 * log_scan_end
 *		End a scan started by log_scan_begin and release its locks.
 */
static void
log_scan_end(LogIndexScan *ls)
{
	index_endscan(ls->scan);
	UnregisterSnapshot(ls->snapshot);
	ExecDropSingleTupleTableSlot(ls->slot);
	index_close(ls->index, AccessShareLock);
	table_close(ls->heap, AccessShareLock);
}

/*
 * in_window
 *		Whether a transaction belongs to the window (from, to].
 */
static bool
in_window(Datum txid, const LogWindow *w)
{
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, txid, w->to_snap)) &&
		!DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, txid, w->from_snap));
}

/*
 * LogWindowFirstId
 *		The lowest id of an event in the window, or 0 if it has none.
 */
int64
LogWindowFirstId(const LogWindow *w)
{
	Oid			nspid = get_namespace_oid("outbox", false);
	Datum		lo = DirectFunctionCall1(pg_snapshot_xmin, w->from_snap);
	Datum		hi = DirectFunctionCall1(pg_snapshot_xmax, w->to_snap);
	int64		first = 0;
	int			part;

	for (part = 0; part < OUTBOX_PARTITIONS; part++)
	{
		ScanKeyData keys[2];
		LogIndexScan ls;

		ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE, lo);
		ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_XID8LT, hi);
		log_scan_begin(&ls, nspid, part, "events_p%d_txid_idx", keys);
		while (index_getnext_slot(ls.scan, ForwardScanDirection, ls.slot))
		{
			bool		isnull;
			Datum		txid = slot_getattr(ls.slot, EV_TXID + 1, &isnull);
			int64		id;

			if (!in_window(txid, w))
				continue;
			id = DatumGetInt64(slot_getattr(ls.slot, EV_ID + 1, &isnull));
			if (first == 0 || id < first)
				first = id;
		}
		log_scan_end(&ls);
	}
	return first;
}

/*
 * LogWindowPage
 *		Call accept(values, nulls, arg) for the window's events with id >
 *		'after', in id order, until it has accepted 'limit' of them or the
 *		log has no more (ids up to 'max_id').  accept() returns whether it
 *		took the event (a subscription filter may refuse it).  Returns how
 *		many were taken; *last_seen is the id of the last event looked at.
 */
int
LogWindowPage(const LogWindow *w, int64 after, int64 max_id, int limit,
			  bool (*accept) (Datum *values, bool *nulls, void *arg), void *arg,
			  int64 *last_seen)
{
	Oid			nspid = get_namespace_oid("outbox", false);
	int			taken = 0;
	int64		gen;

	*last_seen = after;
	if (after >= max_id)
		return 0;
	for (gen = (after + 1) >> OUTBOX_GENERATION_BITS;
		 taken < limit && (gen << OUTBOX_GENERATION_BITS) <= max_id;
		 gen++)
	{
		int			part = (int) (gen & (OUTBOX_PARTITIONS - 1));
		int64		lo = Max(after, (gen << OUTBOX_GENERATION_BITS) - 1);
		int64		hi = (gen + 1) << OUTBOX_GENERATION_BITS;
		ScanKeyData keys[2];
		LogIndexScan ls;

		ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(lo));
		ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_INT8LT, Int64GetDatum(hi));
		log_scan_begin(&ls, nspid, part, "events_p%d_id_idx", keys);
		while (taken < limit &&
			   index_getnext_slot(ls.scan, ForwardScanDirection, ls.slot))
		{
			bool		isnull;
			Datum		txid = slot_getattr(ls.slot, EV_TXID + 1, &isnull);

			if (!in_window(txid, w))
				continue;
			slot_getallattrs(ls.slot);
			*last_seen = DatumGetInt64(ls.slot->tts_values[EV_ID]);
			if (accept(ls.slot->tts_values, ls.slot->tts_isnull, arg))
				taken++;
		}
		log_scan_end(&ls);
	}
	return taken;
}

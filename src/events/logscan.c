/*-------------------------------------------------------------------------
 *
 * logscan.c
 *		Reading a window of the log (see eventlog.c) with index scans, in
 *		commit order.
 *
 * The dispatcher's reads of the log are done here with the index AM
 * directly, never through the planner: the log's partitions are truncated
 * and refilled all the time, so their statistics are usually wrong, and a
 * plan chosen on them (a sequential scan and a sort, or an id-ordered scan
 * from the start of the log) costs milliseconds per batch instead of
 * microseconds.
 *
 * THE ORDER TO DELIVER (G4)
 *	Event A comes before event B when A's transaction committed, and was
 *	visible, before B's transaction began to commit.  Commits that overlap
 *	in time are unordered; they are put in a deterministic order by txid.
 *	Within one transaction, events come in id order (the order the
 *	transaction wrote them).  The key that realises this is
 *		(commit time of the transaction, txid, id)
 *	with the commit time of track_commit_timestamp.  PostgreSQL records it
 *	just before the commit record is written, so it is taken after the
 *	transaction began to commit and before it became visible: if A was
 *	visible before B began to commit, A's time is below B's (a backwards
 *	step of the wall clock between the two is the one exception).  Ids
 *	alone are not this order: a transaction that drew its ids first can
 *	commit last (two writers of one aggregate, or a capture trigger keyed
 *	on a column that is not unique).
 *
 * WHY THE DISPATCHER DELIVERS IN THAT ORDER
 *	Across windows: a window is (S_from, S_to] of two ticks, snapshots
 *	taken one after the other (eventlog.c).  If A was visible before B
 *	began to commit, every snapshot that sees B also sees A, so A's window
 *	is B's or an earlier one; windows are consumed in tick order.
 *	Within a window: LogWindowCommitPage hands out the window's events in
 *	key order, page after page, from a cursor (CommitCursor: the key of the
 *	last event handed out).  The transactions of the window and their keys
 *	come from one scan of the (txid, id) index (window_order), sorted by
 *	key and cached per window, so the pages of a large window cost one such
 *	scan, not one each; a page then reads the next transactions in key
 *	order from the same index, in runs of transactions that are neighbours
 *	in txid order too (one range scan per run and partition, merged on
 *	(txid, id): the whole page when writers commit in the order they began,
 *	the common case), and hands the events out as read, without a copy or
 *	a sort.  The batch keeps that order for
 *	each aggregate (delivery.c), and a retry row carries its event's
 *	commit time, so retried and held-back events keep it too.
 *	Without commit times (track_commit_timestamp off, or a transaction
 *	older than the commit-time horizon) a window is read in id order
 *	(LogWindowPage): writers of one row are still in commit order (a
 *	capture trigger draws its id holding the row's lock), concurrent
 *	writers of one aggregate are not; outbox.stats says which order each
 *	destination gets.
 *
 *	LogWindowPage: the window's events after an id, in id order, up to a
 *		limit, from the window's transactions (window_order) taken in order
 *		of their first ids and read from the (txid, id) indexes in runs, as
 *		a commit-order page reads them; the rows are copied and sorted by
 *		id, and a page is handed out only as far as it is complete (see
 *		read_id_page).  Generation g lives in partition g % 4 (eventlog.c),
 *		so each run is read generation by generation, its ids bounded to
 *		the generation's.
 *	LogWindowCommitPage: the window's events after a cursor, in key order,
 *		up to a limit, from the (txid, id) indexes.
 *	LogWindowScan: every event of the window, partition by partition, each
 *		in txid order (a range scan over the window's txids), for work that
 *		needs no order: moving a lagging destination on (dispatch/skip.c).
 *
 * The log has no index on id alone (since 0.2.0: it cost a tenth of a
 * captured INSERT): every read is a range scan of the (txid, id) indexes.
 * An index of 0.1.0's shape, (txid) alone, is never read with (the
 * dispatcher waits while the SQL is 0.1.0's, dispatcher.c check_extension,
 * and the update rebuilds it); one rebuilt that way by hand makes every
 * read fail with an error that says so (window_entries_begin).
 *
 * All run in the caller's transaction, and take ACCESS SHARE locks on the
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
 * fresh snapshot sees are outside the window (not visible in S_to).
 *	window_order reads the index entries, not the rows (and not even every
 * entry of a large transaction: past SKIP_TXN_AFTER of them it searches for
 * its last one, since only the transaction's first and last ids count):
 * a transaction of the window (its txid visible in S_to, not in S_from) has
 * ended before S_to was taken, and a commit time recorded for it means it
 * committed; one without (unknown, or it rolled back) is decided by its
 * rows, as in the other scans, until one of them is visible.  An id range
 * too wide would only make a page read more; too narrow would skip events.
 * The entries of rows that a rolled-back subtransaction wrote count among
 * their transaction's ids: its id range can only be wider than its visible
 * rows', and a page skips those rows as it skips any row that is not
 * visible.  A transaction taken in by mistake would cost nothing but an
 * empty read: every row a page hands out is one its snapshot sees.
 *	They only read: nothing to recover after a crash.  The cache of window
 * orders is per process, in TopMemoryContext, at most ORDER_CACHE_SIZE
 * windows; a window's contents never change once its upper tick exists, so
 * an entry never goes stale (a window whose events were retired under it
 * only yields fewer events).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/commit_ts.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "events/eventlog.h"
#include "events/logscan.h"

PG_FUNCTION_INFO_V1(outbox_saga_committed_at);

/* The index of partition N (events.sql): (txid, id). */
#define LOG_TXID_INDEX	"events_p%d_txid_idx"

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
	bool		want_itup;		/* return index tuples (xs_itup) */
} LogIndexScan;

/*
 * log_scan_begin
 *		Start a scan of partition 'part' through its index named by
 *		'index_fmt' (a format with one %d, the partition), with the 'nkeys'
 *		scan keys 'keys' (btree's rescan takes as many as the scan began
 *		with), under a snapshot taken now (see the file header).
 *		Takes ACCESS SHARE on the partition and the index.
 */
static void
log_scan_begin(LogIndexScan *ls, Oid nspid, int part, const char *index_fmt,
			   ScanKeyData *keys, int nkeys)
{
	ls->heap = table_open(log_relid(nspid, "events_p%d", part), AccessShareLock);
	ls->index = index_open(log_relid(nspid, index_fmt, part), AccessShareLock);
	ls->slot = table_slot_create(ls->heap, NULL);
	ls->snapshot = RegisterSnapshot(GetLatestSnapshot());
	ls->scan = CompatIndexBeginscan(ls->heap, ls->index, ls->snapshot, nkeys, 0);
	ls->scan->xs_want_itup = ls->want_itup;
	index_rescan(ls->scan, keys, nkeys, NULL, 0);
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

static TimestampTz committed_at_before(uint64 txid, FullTransactionId next);

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
 * window_txid_keys
 *		The scan keys of the txid index over the window's range of txids,
 *		[xmin(S_from), xmax(S_to)).
 */
static void
window_txid_keys(const LogWindow *w, ScanKeyData *keys)
{
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE,
				DirectFunctionCall1(pg_snapshot_xmin, w->from_snap));
	ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_XID8LT,
				DirectFunctionCall1(pg_snapshot_xmax, w->to_snap));
}

/*
 * How many index entries of one transaction are read one by one before a
 * search moves past the rest: window_order_build then searches for its
 * last entry (window_entries_skip_txn), and window_entries_next moves past
 * a transaction outside the window.  A window of one transaction of
 * 200,000 events read them all, and so did every window whose txid range
 * covered it.
 */
#define SKIP_TXN_AFTER	64

/*
 * The window's entries of one partition's (txid, id) index, in (txid, id)
 * order, of the transactions that belong to the window and committed (see
 * the file header): a transaction with a commit time is in at once, one
 * without from its first visible row on.
 */
typedef enum TxnVerdict
{
	TXN_OUT,					/* not in the window */
	TXN_PENDING,				/* in the window, no visible row met yet */
	TXN_IN
} TxnVerdict;

typedef struct WindowEntries
{
	const LogWindow *w;
	FullTransactionId next;		/* read before the scan (committed_at_before) */
	LogIndexScan ls;
	uint64		txid;			/* the transaction met last, and ... */
	TxnVerdict	verdict;		/* ... what it is */
	TimestampTz committed_at;	/* ... its commit time, 0: unknown */
	int64		met;			/* ... how many of its entries were met */
} WindowEntries;

/*
 * window_entries_restart_after
 *		Go on with the window's entries after those of transaction 'txid'
 *		(a new search of the index).
 */
static void
window_entries_restart_after(WindowEntries *we, uint64 txid)
{
	ScanKeyData keys[2];

	window_txid_keys(we->w, keys);
	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_XID8GT, UInt64GetDatum(txid));
	index_rescan(we->ls.scan, keys, 2, NULL, 0);
}

static void
window_entries_begin(WindowEntries *we, const LogWindow *w, FullTransactionId next,
					 Oid nspid, int part)
{
	ScanKeyData keys[2];

	memset(we, 0, sizeof(*we));
	we->w = w;
	we->next = next;
	window_txid_keys(w, keys);
	we->ls.want_itup = true;
	log_scan_begin(&we->ls, nspid, part, LOG_TXID_INDEX, keys, 2);
	/* Every read of a window starts here: check the index once. */
	if (IndexRelationGetNumberOfKeyAttributes(we->ls.index) < 2 ||
		we->ls.index->rd_index->indkey.values[0] != EV_TXID + 1 ||
		we->ls.index->rd_index->indkey.values[1] != EV_ID + 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox_saga: index \"%s\" of the event log is not on (txid, id)",
						RelationGetRelationName(we->ls.index)),
				 errdetail("The dispatcher reads the log through that index alone."),
				 errhint("Rebuild it as CREATE INDEX ON outbox.events_p%d (txid, id), under the same name.",
						 part)));
}

/*
 * window_entries_next
 *		The next entry (*txid, *id) of a committed transaction of the window,
 *		with the transaction's commit time (0: unknown).  Returns false at
 *		the end.
 */
static bool
window_entries_next(WindowEntries *we, uint64 *txid, int64 *id, TimestampTz *committed_at)
{
	IndexScanDesc scan = we->ls.scan;

	while (index_getnext_tid(scan, ForwardScanDirection) != NULL)
	{
		bool		isnull;
		uint64		t;

		*id = DatumGetInt64(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &isnull));
		t = DatumGetUInt64(index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull));
		if (t != we->txid)
		{
			we->txid = t;
			we->met = 0;
			we->committed_at = 0;
			we->verdict = TXN_OUT;
			if (in_window(UInt64GetDatum(t), we->w))
			{
				we->committed_at = committed_at_before(t, we->next);
				we->verdict = (we->committed_at != 0) ? TXN_IN : TXN_PENDING;
			}
		}
		we->met++;
		if (we->verdict == TXN_OUT)
		{
			/*
			 * A large transaction outside the window (one visible in S_from
			 * whose txid is above its xmin, say): search past its entries.
			 */
			if (we->met == SKIP_TXN_AFTER)
				window_entries_restart_after(we, t);
			continue;
		}
		if (we->verdict == TXN_PENDING)
		{
			if (!index_fetch_heap(scan, we->ls.slot))
				continue;
			we->verdict = TXN_IN;
		}
		*txid = t;
		*committed_at = we->committed_at;
		return true;
	}
	return false;
}

/*
 * window_entries_skip_txn
 *		After an entry of a transaction of the window (the last one
 *		window_entries_next returned), move past the transaction's other
 *		entries without reading them: one search for its last entry, whose
 *		id goes to *max_id, and one for the entries after it (a
 *		transaction's entries are adjacent and in id order).  Worth it for a
 *		large transaction only: it costs two descents of the index.
 */
static void
window_entries_skip_txn(WindowEntries *we, int64 *max_id)
{
	IndexScanDesc scan = we->ls.scan;
	ScanKeyData keys[2];
	bool		isnull;

	Assert(we->verdict == TXN_IN);
	/* Two keys, as the scan began with (btree's rescan copies that many). */
	window_txid_keys(we->w, keys);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ, UInt64GetDatum(we->txid));
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_tid(scan, BackwardScanDirection) != NULL)
		*max_id = Max(*max_id,
					  DatumGetInt64(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &isnull)));
	window_entries_restart_after(we, we->txid);
}

static void
window_entries_end(WindowEntries *we)
{
	log_scan_end(&we->ls);
}

/*
 * LogWindowScan
 *		Call visit(values, nulls, arg) for every event of the window, in no
 *		particular order (partition by partition, each in txid order), until
 *		visit returns false.  Returns false if visit stopped the scan.  The
 *		values are valid during the call only.
 */
bool
LogWindowScan(const LogWindow *w,
			  bool (*visit) (Datum *values, bool *nulls, void *arg), void *arg)
{
	Oid			nspid = get_namespace_oid("outbox", false);
	bool		go_on = true;
	int			part;

	for (part = 0; go_on && part < OUTBOX_PARTITIONS; part++)
	{
		ScanKeyData keys[2];
		LogIndexScan ls = {0};

		window_txid_keys(w, keys);
		log_scan_begin(&ls, nspid, part, LOG_TXID_INDEX, keys, 2);
		while (go_on && index_getnext_slot(ls.scan, ForwardScanDirection, ls.slot))
		{
			bool		isnull;
			Datum		txid = slot_getattr(ls.slot, EV_TXID + 1, &isnull);

			if (!in_window(txid, w))
				continue;
			slot_getallattrs(ls.slot);
			go_on = visit(ls.slot->tts_values, ls.slot->tts_isnull, arg);
		}
		log_scan_end(&ls);
	}
	return go_on;
}

/* ------------------------------------------------------------------------
 * Commit order
 * ------------------------------------------------------------------------
 */

#define ORDER_CACHE_SIZE	8

/* One transaction of a window: its commit key and where its events are. */
typedef struct WindowTxn
{
	uint64		txid;
	TimestampTz committed_at;	/* 0: unknown */
	int64		min_id;
	int64		max_id;
	int64		count;
	int			txid_pos;		/* its place in txid order */
} WindowTxn;

/* A txid and its place in the window's commit order. */
typedef struct TxnRank
{
	uint64		txid;
	int			rank;
} TxnRank;

/* The transactions of a window, in commit order (cached). */
typedef struct WindowOrder
{
	int64		from_tick;		/* the key: both tick ids ... */
	int64		to_tick;
	uint64		from_xmax;		/* ... and their snapshots' xmax */
	uint64		to_xmax;
	MemoryContext cxt;			/* holds this struct and its arrays */
	uint64		used;			/* for LRU eviction */
	bool		by_commit;		/* every commit time is known */
	int			ntxns;
	WindowTxn  *txns;			/* in key order */
	TxnRank    *ranks;			/* in txid order */
	int		   *by_min_id;		/* id order: ranks by first id (NULL until
								 * an id-order page needs them) ... */
	int64	   *reach;			/* ... reach[i]: the highest last id of
								 * by_min_id[0 .. i] */
} WindowOrder;

static WindowOrder *order_cache[ORDER_CACHE_SIZE];
static uint64 order_clock;

/*
 * LogCommitOrderAvailable
 *		Whether commit times are recorded (track_commit_timestamp).
 */
bool
LogCommitOrderAvailable(void)
{
	return track_commit_timestamp;
}

/*
 * LogCommittedAt
 *		The commit time of transaction 'txid' (an xid8), or 0 if it is not
 *		known: commit times are not recorded, the transaction is older than
 *		the commit-time horizon or has not committed.
 */
TimestampTz
LogCommittedAt(uint64 txid)
{
	if (!track_commit_timestamp)
		return 0;				/* before reading the next xid (XidGenLock) */
	return committed_at_before(txid, ReadNextFullTransactionId());
}

/*
 * committed_at_before
 *		LogCommittedAt of a transaction below 'next', a value of the next
 *		transaction id read since that transaction ended (read once for
 *		many lookups).
 */
static TimestampTz
committed_at_before(uint64 txid, FullTransactionId next)
{
	FullTransactionId fxid = FullTransactionIdFromU64(txid);
	TransactionId xid = XidFromFullTransactionId(fxid);
	TimestampTz ts;

	if (!track_commit_timestamp || !TransactionIdIsNormal(xid))
		return 0;
	/* A 32-bit xid names this transaction only within 2^31 of the next. */
	if (!FullTransactionIdPrecedes(fxid, next) ||
		U64FromFullTransactionId(next) - txid >= (UINT64CONST(1) << 31))
		return 0;
	if (!TransactionIdGetCommitTsData(xid, &ts, NULL))
		return 0;
	return ts;
}

static int
cmp_commit_key(const void *a, const void *b)
{
	const WindowTxn *x = a;
	const WindowTxn *y = b;

	if (x->committed_at != y->committed_at)
		return (x->committed_at > y->committed_at) - (x->committed_at < y->committed_at);
	return (x->txid > y->txid) - (x->txid < y->txid);
}

/*
 * LogCommitKeyCompare
 *		<0, 0 or >0 as event (txid_a, id_a) comes before, is, or comes after
 *		event (txid_b, id_b) in commit order (the key of the file header).
 *		Both transactions' commit times must be known.
 */
int
LogCommitKeyCompare(uint64 txid_a, int64 id_a, uint64 txid_b, int64 id_b)
{
	WindowTxn	a = {0};
	WindowTxn	b = {0};

	if (txid_a == txid_b)
		return (id_a > id_b) - (id_a < id_b);
	a.txid = txid_a;
	a.committed_at = LogCommittedAt(txid_a);
	b.txid = txid_b;
	b.committed_at = LogCommittedAt(txid_b);
	return cmp_commit_key(&a, &b);
}

/*
 * merge_partition_runs
 *		The WindowTxns of 'txns', whose partitions' runs [run_start[p],
 *		run_start[p + 1]) are each in txid order (one scan of a partition's
 *		index), as one array in txid order, a transaction that wrote into
 *		two partitions combined into one; sets *n to its length.
 */
static WindowTxn *
merge_partition_runs(const WindowTxn *txns, const int *run_start, int *n)
{
	WindowTxn  *out = MemoryContextAllocHuge(CurrentMemoryContext,
											 sizeof(WindowTxn) * (run_start[OUTBOX_PARTITIONS] + 1));
	int			pos[OUTBOX_PARTITIONS];
	int			m = 0;
	int			p;

	for (p = 0; p < OUTBOX_PARTITIONS; p++)
		pos[p] = run_start[p];
	for (;;)
	{
		const WindowTxn *t;
		int			best = -1;

		for (p = 0; p < OUTBOX_PARTITIONS; p++)
			if (pos[p] < run_start[p + 1] &&
				(best < 0 || txns[pos[p]].txid < txns[pos[best]].txid))
				best = p;
		if (best < 0)
			break;
		t = &txns[pos[best]++];
		Assert(m == 0 || out[m - 1].txid <= t->txid);	/* runs ascend */
		if (m > 0 && out[m - 1].txid == t->txid)
		{
			out[m - 1].min_id = Min(out[m - 1].min_id, t->min_id);
			out[m - 1].max_id = Max(out[m - 1].max_id, t->max_id);
			out[m - 1].count += t->count;
		}
		else
			out[m++] = *t;
	}
	*n = m;
	return out;
}

/*
 * sort_by_commit_key
 *		Sort 'txns' (in txid order) by commit key.  Commit order mostly
 *		follows txid order with short displacements (writers commit soon
 *		after they begin), so an insertion sort does it in about one pass;
 *		past a budget of moves (transactions that committed long after
 *		later ones began) it leaves the rest to qsort, so the worst case
 *		stays O(n log n).
 */
static void
sort_by_commit_key(WindowTxn *txns, int n)
{
	int64		budget = (int64) n * 8;
	int			i;

	for (i = 1; i < n; i++)
	{
		WindowTxn	x;
		int			j;

		if (cmp_commit_key(&txns[i - 1], &txns[i]) <= 0)
			continue;
		x = txns[i];
		for (j = i; j > 0 && cmp_commit_key(&txns[j - 1], &x) > 0; j--)
			txns[j] = txns[j - 1];
		txns[j] = x;
		budget -= i - j;
		if (budget < 0)
		{
			qsort(txns, n, sizeof(WindowTxn), cmp_commit_key);
			return;
		}
	}
}

/*
 * snapshot_xmax
 *		The xmax of a pg_snapshot datum, as a uint64.
 */
static uint64
snapshot_xmax(Datum snap)
{
	return DatumGetUInt64(DirectFunctionCall1(pg_snapshot_xmax, snap));
}

/*
 * window_order_build
 *		The window's index entries (window_entries_next) into one WindowTxn
 *		per transaction with its commit time, the partitions' runs merged
 *		and sorted by key, in a new memory context that is a child of the
 *		current one (its arrays may pass 1 GB: a window spans whatever
 *		committed between two ticks).  The next transaction id is read once,
 *		before the scans: every transaction of the window is below the xmax
 *		of S_to, taken before.
 */
static WindowOrder *
window_order_build(const LogWindow *w)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "outbox_saga window order",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	WindowOrder *o = palloc0(sizeof(WindowOrder));
	Oid			nspid = get_namespace_oid("outbox", false);
	int			cap = 64;
	int			n = 0;
	int			run_start[OUTBOX_PARTITIONS + 1];
	FullTransactionId next = ReadNextFullTransactionId();
	WindowTxn  *scanned;
	int			part;
	int			i;
	int			m;

	o->cxt = cxt;
	o->from_tick = w->from_tick;
	o->to_tick = w->to_tick;
	o->from_xmax = snapshot_xmax(w->from_snap);
	o->to_xmax = snapshot_xmax(w->to_snap);
	o->txns = palloc(sizeof(WindowTxn) * cap);

	for (part = 0; part < OUTBOX_PARTITIONS; part++)
	{
		WindowEntries we;
		uint64		txid;
		int64		id;
		TimestampTz committed_at;

		run_start[part] = n;
		window_entries_begin(&we, w, next, nspid, part);
		while (window_entries_next(&we, &txid, &id, &committed_at))
		{
			WindowTxn  *t;

			/* Entries of one txid are adjacent in one partition's index. */
			if (n > 0 && o->txns[n - 1].txid == txid)
				t = &o->txns[n - 1];
			else
			{
				if (n == cap)
				{
					cap *= 2;
					o->txns = repalloc_huge(o->txns, sizeof(WindowTxn) * cap);
				}
				t = &o->txns[n++];
				t->txid = txid;
				t->committed_at = committed_at;
				t->min_id = PG_INT64_MAX;
				t->max_id = 0;
				t->count = 0;
			}
			t->min_id = Min(t->min_id, id);
			t->max_id = Max(t->max_id, id);
			t->count++;
			/* A large transaction: its last id without reading the rest. */
			if (t->count == SKIP_TXN_AFTER)
			{
				window_entries_skip_txn(&we, &t->max_id);
				/* An upper bound, for the pages' budgets. */
				t->count = Max(t->count, t->max_id - t->min_id + 1);
			}
		}
		window_entries_end(&we);
	}

	run_start[OUTBOX_PARTITIONS] = n;

	/* One array in txid order (a transaction in two partitions once). */
	scanned = o->txns;
	o->txns = merge_partition_runs(scanned, run_start, &m);
	pfree(scanned);
	o->ntxns = m;
	for (i = 0; i < m; i++)
		o->txns[i].txid_pos = i;

	o->by_commit = LogCommitOrderAvailable();
	for (i = 0; i < m && o->by_commit; i++)
		if (o->txns[i].committed_at == 0)
			o->by_commit = false;
	if (o->by_commit)
		sort_by_commit_key(o->txns, m);

	/* ranks in txid order: each transaction's rank at its txid's place */
	o->ranks = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(TxnRank) * (m + 1));
	for (i = 0; i < m; i++)
	{
		o->ranks[o->txns[i].txid_pos].txid = o->txns[i].txid;
		o->ranks[o->txns[i].txid_pos].rank = i;
	}

	MemoryContextSwitchTo(old);
	return o;
}

/*
 * window_order
 *		The commit order of window 'w', from the cache or built (and then
 *		cached, evicting the least recently used entry).
 */
static WindowOrder *
window_order(const LogWindow *w)
{
	uint64		from_xmax = snapshot_xmax(w->from_snap);
	uint64		to_xmax = snapshot_xmax(w->to_snap);
	int			victim = 0;
	int			i;
	WindowOrder *o;

	for (i = 0; i < ORDER_CACHE_SIZE; i++)
	{
		o = order_cache[i];
		if (o == NULL)
		{
			victim = i;
			continue;
		}
		if (o->from_tick == w->from_tick && o->to_tick == w->to_tick &&
			o->from_xmax == from_xmax && o->to_xmax == to_xmax)
		{
			o->used = ++order_clock;
			return o;
		}
		if (order_cache[victim] != NULL && o->used < order_cache[victim]->used)
			victim = i;
	}

	o = window_order_build(w);
	/* Only a complete build is cached. */
	if (order_cache[victim] != NULL)
		MemoryContextDelete(order_cache[victim]->cxt);
	MemoryContextSetParent(o->cxt, TopMemoryContext);
	o->used = ++order_clock;
	order_cache[victim] = o;
	return o;
}

/*
 * rank_of
 *		The place of 'txid' in the window's order, or -1 if it has no event
 *		in the window.
 */
static int
rank_of(const WindowOrder *o, uint64 txid)
{
	int			lo = 0;
	int			hi = o->ntxns - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (o->ranks[mid].txid == txid)
			return o->ranks[mid].rank;
		if (o->ranks[mid].txid < txid)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * LogWindowInCommitOrder
 *		Whether window 'w' can be read in commit order: commit times are
 *		recorded and known for every transaction of the window.
 */
bool
LogWindowInCommitOrder(const LogWindow *w)
{
	WindowOrder *o;

	if (!LogCommitOrderAvailable())
		return false;
	o = window_order(w);
	return o->by_commit;
}

/*
 * The page's scans of the (txid, id) indexes: one per partition, opened
 * when a run of transactions first needs it and searched again (rescan)
 * for each later run, so a page opens each partition once.
 */
typedef struct PageScans
{
	Oid			nspid;
	int			nkeys;			/* of every search */
	bool		open[OUTBOX_PARTITIONS];
	bool		has_head[OUTBOX_PARTITIONS];	/* searched for the current run,
												 * and the slot holds its next
												 * row */
	uint64		head_txid[OUTBOX_PARTITIONS];
	int64		head_id[OUTBOX_PARTITIONS];
	LogIndexScan ls[OUTBOX_PARTITIONS];
} PageScans;

/*
 * page_scan_advance
 *		The next row of partition 'part''s scan into its slot (has_head).
 */
static void
page_scan_advance(PageScans *ps, int part)
{
	LogIndexScan *ls = &ps->ls[part];
	bool		isnull;

	ps->has_head[part] = index_getnext_slot(ls->scan, ForwardScanDirection, ls->slot);
	if (!ps->has_head[part])
		return;
	ps->head_txid[part] = DatumGetUInt64(slot_getattr(ls->slot, EV_TXID + 1, &isnull));
	ps->head_id[part] = DatumGetInt64(slot_getattr(ls->slot, EV_ID + 1, &isnull));
}

/*
 * page_scans_open
 *		Search partition 'part''s (txid, id) index with 'keys' (nkeys of
 *		them), opening it on first use.
 */
static void
page_scans_open(PageScans *ps, int part, ScanKeyData *keys)
{
	if (!ps->open[part])
	{
		log_scan_begin(&ps->ls[part], ps->nspid, part, LOG_TXID_INDEX, keys, ps->nkeys);
		ps->open[part] = true;
	}
	else
		index_rescan(ps->ls[part].scan, keys, ps->nkeys, NULL, 0);
}

/*
 * page_scans_search
 *		Search partition 'part' with 'keys' and read its first row.
 */
static void
page_scans_search(PageScans *ps, int part, ScanKeyData *keys)
{
	page_scans_open(ps, part, keys);
	page_scan_advance(ps, part);
}

static void
page_scans_end(PageScans *ps)
{
	int			part;

	for (part = 0; part < OUTBOX_PARTITIONS; part++)
		if (ps->open[part])
			log_scan_end(&ps->ls[part]);
}

/*
 * LogWindowCommitPage
 *		Call accept() for the window's events after *cursor, in key order,
 *		until it has taken 'limit' of them or the window has no more; moves
 *		*cursor past every event looked at, and sets *window_end when the
 *		window has nothing after it.  Returns how many were taken.  The
 *		window must be LogWindowInCommitOrder.
 *
 *		A page takes the transactions after the cursor, in key order, until
 *		their events add up to 'limit', and reads them from the (txid, id)
 *		indexes in runs: a run is a stretch of them that are neighbours in
 *		txid order as well (txid_pos: the window has no transaction between
 *		them), so that one range scan of each partition it spans, over its
 *		txids, merged on (txid, id), yields its events in key order.  Writers
 *		that commit in the order they began make the whole page one run; each
 *		transaction that committed out of its txid's place makes runs of its
 *		own.  The cursor's transaction, read in part already, is a run of its
 *		own whose search starts after the cursor's id, so a page inside a
 *		large transaction reads only its own events.  Entries of
 *		transactions outside the window that fall in a run's txid range are
 *		passed over (rank_of).  Events are handed out as they are read, with
 *		the slot's values (valid during the call only), without a copy or a
 *		sort; the page stops at 'limit', the cursor on its last event.
 */
int
LogWindowCommitPage(const LogWindow *w, CommitCursor *cursor, int limit,
					LogAcceptFn accept, void *arg, bool *window_end)
{
	WindowOrder *o = window_order(w);
	PageScans	ps = {0};
	int			r0;
	int			re;
	int			r;
	int64		after = 0;		/* ids of rank r0 up to this one are behind */
	int64		budget = 0;
	int			taken = 0;

	Assert(o->by_commit);
	*window_end = false;
	r0 = 0;
	if (cursor->txid != 0)
	{
		r0 = rank_of(o, cursor->txid);
		if (r0 < 0)
		{
			/* Cannot happen unless the window changed: read it again. */
			ereport(LOG,
					(errmsg("outbox_saga: a window position names a transaction the window does not have; the window is read again from its start")));
			r0 = 0;
		}
		else
		{
			after = cursor->id;
			if (after >= o->txns[r0].max_id)
			{
				r0++;
				after = 0;
			}
		}
	}
	if (r0 >= o->ntxns)
	{
		*window_end = true;
		return 0;
	}

	/* The transactions of this page: r0 .. re. */
	for (re = r0; re < o->ntxns; re++)
	{
		budget += o->txns[re].count;
		if (budget >= limit)
			break;
	}
	if (re == o->ntxns)
		re = o->ntxns - 1;

	ps.nspid = get_namespace_oid("outbox", false);
	ps.nkeys = 2;
	for (r = r0; r <= re;)
	{
		bool		resumed = (r == r0 && after > 0);	/* read in part already */
		int			rend = r;
		int64		lo = resumed ? after + 1 : o->txns[r].min_id;
		int64		hi = o->txns[r].max_id;
		ScanKeyData keys[2];
		int64		gen;
		int			i;

		if (!resumed)
			while (rend < re && o->txns[rend + 1].txid_pos == o->txns[rend].txid_pos + 1)
			{
				rend++;
				lo = Min(lo, o->txns[rend].min_id);
				hi = Max(hi, o->txns[rend].max_id);
			}

		if (resumed)
		{
			ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_XID8EQ,
						UInt64GetDatum(o->txns[r].txid));
			ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
		}
		else
		{
			ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE,
						UInt64GetDatum(o->txns[r].txid));
			ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_XID8LE,
						UInt64GetDatum(o->txns[rend].txid));
		}

		/* The partitions of the generations the run's ids lie in. */
		memset(ps.has_head, 0, sizeof(ps.has_head));
		for (gen = lo >> OUTBOX_GENERATION_BITS;
			 gen <= (hi >> OUTBOX_GENERATION_BITS) &&
			 gen < (lo >> OUTBOX_GENERATION_BITS) + OUTBOX_PARTITIONS;
			 gen++)
			page_scans_search(&ps, (int) (gen & (OUTBOX_PARTITIONS - 1)), keys);

		/* Merge the partitions' rows on (txid, id). */
		for (;;)
		{
			int			best = -1;
			int			rank;
			LogIndexScan *ls;

			for (i = 0; i < OUTBOX_PARTITIONS; i++)
				if (ps.has_head[i] &&
					(best < 0 || ps.head_txid[i] < ps.head_txid[best] ||
					 (ps.head_txid[i] == ps.head_txid[best] &&
					  ps.head_id[i] < ps.head_id[best])))
					best = i;
			if (best < 0)
				break;
			ls = &ps.ls[best];
			rank = rank_of(o, ps.head_txid[best]);
			if (rank >= r && rank <= rend)
			{
				slot_getallattrs(ls->slot);
				cursor->txid = ps.head_txid[best];
				cursor->id = ps.head_id[best];
				if (accept(ls->slot->tts_values, ls->slot->tts_isnull,
						   o->txns[rank].committed_at, arg))
					taken++;
				if (taken >= limit)
				{
					page_scans_end(&ps);
					return taken;
				}
			}
			page_scan_advance(&ps, best);
		}
		r = rend + 1;
	}
	page_scans_end(&ps);

	/* ranks r0 .. re are done, whatever the scans found of them */
	cursor->txid = o->txns[re].txid;
	cursor->id = o->txns[re].max_id;
	*window_end = (re == o->ntxns - 1);
	return taken;
}

/* ------------------------------------------------------------------------
 * Id order
 * ------------------------------------------------------------------------
 */

/* How qsort_arg orders ranks (indexes into txns): by first id, or by txid. */
typedef struct RankSort
{
	const WindowTxn *txns;
	bool		by_min_id;
} RankSort;

static int
cmp_rank(const void *a, const void *b, void *arg)
{
	const RankSort *rs = arg;
	const WindowTxn *x = &rs->txns[*(const int *) a];
	const WindowTxn *y = &rs->txns[*(const int *) b];
	int64		kx = rs->by_min_id ? x->min_id : x->txid_pos;
	int64		ky = rs->by_min_id ? y->min_id : y->txid_pos;

	return (kx > ky) - (kx < ky);
}

/*
 * id_order
 *		The window's ranks by first id, and how far the ids of each prefix
 *		of them reach (built on first use, in the order's context; set only
 *		when complete).
 */
static void
id_order(WindowOrder *o)
{
	int		   *by_min_id;
	int64	   *reach;
	RankSort	rs = {o->txns, true};
	int			i;

	if (o->by_min_id != NULL)
		return;
	by_min_id = MemoryContextAllocHuge(o->cxt, sizeof(int) * (o->ntxns + 1));
	reach = MemoryContextAllocHuge(o->cxt, sizeof(int64) * (o->ntxns + 1));
	for (i = 0; i < o->ntxns; i++)
		by_min_id[i] = i;
	qsort_arg(by_min_id, o->ntxns, sizeof(int), cmp_rank, &rs);
	for (i = 0; i < o->ntxns; i++)
		reach[i] = Max(i > 0 ? reach[i - 1] : 0, o->txns[by_min_id[i]].max_id);
	o->reach = reach;
	o->by_min_id = by_min_id;
}

/* An event of an id-order read, its row copied. */
typedef struct IdEvent
{
	int64		id;
	int			part;			/* read from this partition */
	HeapTuple	tuple;
} IdEvent;

static int
cmp_id_event(const void *a, const void *b)
{
	int64		x = ((const IdEvent *) a)->id;
	int64		y = ((const IdEvent *) b)->id;

	return (x > y) - (x < y);
}

/*
 * One read of an id-order page (read_id_page): the events of the window
 * with ids in (after, complete_to], every one of them, sorted by id, and
 * perhaps some above (not to be handed out yet).
 */
typedef struct IdRead
{
	IdEvent    *events;
	int			n;
	int			cap;
	int64		complete_to;
	bool		window_end;		/* the window has no event above complete_to */
	PageScans	ps;				/* open until the events are handed out (their
								 * partitions' tuple descriptors) */
} IdRead;

/*
 * search_past_txn
 *		Go on with an id-order read's run scan (its four 'keys') after the
 *		rows of transaction 'txid'.
 */
static void
search_past_txn(LogIndexScan *ls, ScanKeyData *keys, uint64 txid)
{
	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_XID8GT, UInt64GetDatum(txid));
	index_rescan(ls->scan, keys, 4, NULL, 0);
}

/*
 * read_id_page
 *		The window's events after id 'after', about 'limit' of them, into
 *		'rd', in the current memory context.
 *
 *		The page's transactions S: those with ids above 'after' in order of
 *		their first ids, until their events add up to 'limit', and Y the id
 *		below the first id of the next (none: no bound).  Every event of
 *		the window with an id in (after, Y] is then one of S's, and only the
 *		first 'limit' of each transaction's events above 'after' can be
 *		among the first 'limit' of the page: a transaction is read up to
 *		that many (then the search moves past it), and the page is complete
 *		up to the lowest id where such a cut was made, or else to Y.  S is
 *		read in runs of transactions that are neighbours in txid order
 *		(one range scan of the (txid, id) index per run and generation, the
 *		ids bounded to the generation and (after, Y], so that the rows of
 *		other generations in the partition are passed over in the index),
 *		then sorted by id, unless it came in id order.  The caller ends
 *		rd->ps (page_scans_end).
 */
static void
read_id_page(const WindowOrder *o, int64 after, int limit, IdRead *rd)
{
	int			ntxns = o->ntxns;
	int		   *s;				/* ranks of S */
	int64	   *read;			/* events read of each of S */
	int			ns = 0;
	int			from;
	int			p;
	int			lo;
	int			hi;
	int			q;
	int64		budget = 0;
	int64		y;
	int64		bottom = PG_INT64_MAX;	/* the lowest id of S to read */
	int64		top = 0;		/* the highest last id of S */
	int64		cut = PG_INT64_MAX;
	int64		gen;
	PageScans  *ps = &rd->ps;
	RankSort	by_txid = {o->txns, false};
	bool		sorted = true;
	int			i;

	memset(ps, 0, sizeof(*ps));
	rd->n = 0;
	rd->cap = 64;
	rd->events = palloc(sizeof(IdEvent) * rd->cap);

	/* p: the first rank, by first id, whose first id is above 'after' */
	lo = 0;
	hi = ntxns;
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (o->txns[o->by_min_id[mid]].min_id > after)
			hi = mid;
		else
			lo = mid + 1;
	}
	p = lo;

	/*
	 * Before p, those whose ids reach past 'after': in [from, p), where the
	 * ids of every earlier one end at 'after' or below (reach).
	 */
	for (from = p; from > 0 && o->reach[from - 1] > after; from--)
		;
	for (i = from; i < p; i++)
		if (o->txns[o->by_min_id[i]].max_id > after)
			budget += o->txns[o->by_min_id[i]].count;
	/* From p, at least one (whose first id is a row above 'after'). */
	for (q = p; q < ntxns && (q == p || budget < limit); q++)
		budget += o->txns[o->by_min_id[q]].count;
	s = palloc(sizeof(int) * (q - from + 1));
	for (i = from; i < q; i++)
		if (i >= p || o->txns[o->by_min_id[i]].max_id > after)
			s[ns++] = o->by_min_id[i];
	y = (q < ntxns) ? o->txns[o->by_min_id[q]].min_id - 1 : PG_INT64_MAX;
	if (ns == 0)
	{
		rd->complete_to = PG_INT64_MAX;
		rd->window_end = true;
		return;
	}
	for (i = 0; i < ns; i++)
	{
		bottom = Min(bottom, Max(o->txns[s[i]].min_id, after + 1));
		top = Max(top, o->txns[s[i]].max_id);
	}
	top = Min(top, y);

	qsort_arg(s, ns, sizeof(int), cmp_rank, &by_txid);
	read = palloc0(sizeof(int64) * ns);

	ps->nspid = get_namespace_oid("outbox", false);
	ps->nkeys = 4;
	/* From S's lowest id, not from 'after' (0 for a window not begun). */
	for (gen = bottom >> OUTBOX_GENERATION_BITS;
		 gen <= (top >> OUTBOX_GENERATION_BITS); gen++)
	{
		int			part = (int) (gen & (OUTBOX_PARTITIONS - 1));
		int64		id_lo = Max(after, (gen << OUTBOX_GENERATION_BITS) - 1);
		int64		id_hi = Min(top, ((gen + 1) << OUTBOX_GENERATION_BITS) - 1);
		int			r;

		for (r = 0; r < ns;)
		{
			int			rend = r;
			int64		run_lo = o->txns[s[r]].min_id;
			int64		run_hi = o->txns[s[r]].max_id;
			ScanKeyData keys[4];
			LogIndexScan *ls = &ps->ls[part];
			int			at = r;		/* the member of S met last */

			while (rend + 1 < ns &&
				   o->txns[s[rend + 1]].txid_pos == o->txns[s[rend]].txid_pos + 1)
			{
				rend++;
				run_lo = Min(run_lo, o->txns[s[rend]].min_id);
				run_hi = Max(run_hi, o->txns[s[rend]].max_id);
			}
			if (run_hi <= id_lo || run_lo > id_hi)
			{
				r = rend + 1;
				continue;
			}

			ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_XID8GE,
						UInt64GetDatum(o->txns[s[r]].txid));
			ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_XID8LE,
						UInt64GetDatum(o->txns[s[rend]].txid));
			ScanKeyInit(&keys[2], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(id_lo));
			ScanKeyInit(&keys[3], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(id_hi));
			page_scans_open(ps, part, keys);
			while (index_getnext_slot(ls->scan, ForwardScanDirection, ls->slot))
			{
				bool		isnull;
				uint64		txid = DatumGetUInt64(slot_getattr(ls->slot, EV_TXID + 1, &isnull));
				int64		id = DatumGetInt64(slot_getattr(ls->slot, EV_ID + 1, &isnull));

				/* Rows come in (txid, id) order: find the member of S. */
				while (at < rend && o->txns[s[at]].txid < txid)
					at++;
				if (o->txns[s[at]].txid != txid)
					continue;	/* a transaction outside the window */
				if (read[at] >= limit)
				{
					/* Cut in an earlier generation: search past it. */
					search_past_txn(ls, keys, txid);
					continue;
				}
				if (rd->n == rd->cap)
				{
					rd->cap *= 2;
					rd->events = repalloc_huge(rd->events, sizeof(IdEvent) * rd->cap);
				}
				if (rd->n > 0 && rd->events[rd->n - 1].id > id)
					sorted = false;
				rd->events[rd->n].id = id;
				rd->events[rd->n].part = part;
				rd->events[rd->n].tuple = ExecCopySlotHeapTuple(ls->slot);
				rd->n++;
				if (++read[at] == limit)
				{
					/* Enough of this one: search past its other rows. */
					cut = Min(cut, id);
					search_past_txn(ls, keys, txid);
				}
			}
			r = rend + 1;
		}
	}
	if (!sorted)
		qsort(rd->events, rd->n, sizeof(IdEvent), cmp_id_event);
	rd->complete_to = Min(cut, y);
	rd->window_end = (cut == PG_INT64_MAX && q == ntxns);
}

/*
 * LogWindowPage
 *		Call accept(values, nulls, 0, arg) for the window's events with id
 *		> 'after', in id order, until it has taken 'limit' of them or the
 *		window has no more.  accept() returns whether it took the event (a
 *		subscription filter may refuse it); it is given no commit time.
 *		Returns how many were taken.
 *
 *		From the window's transactions (window_order) and the (txid, id)
 *		indexes, read by read_id_page in reads of about 'limit' events,
 *		again while accept() refuses events; the rows are copied and handed
 *		out from the copies.
 */
int
LogWindowPage(const LogWindow *w, int64 after, int limit,
			  LogAcceptFn accept, void *arg)
{
	WindowOrder *o = window_order(w);
	MemoryContext cxt;
	MemoryContext old;
	Datum	   *values = NULL;
	bool	   *nulls = NULL;
	int			natts = 0;		/* the arrays' length */
	int			taken = 0;

	id_order(o);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "outbox_saga id-order page",
								ALLOCSET_DEFAULT_SIZES);
	while (taken < limit)
	{
		IdRead		rd;
		int			i;

		old = MemoryContextSwitchTo(cxt);
		read_id_page(o, after, limit, &rd);
		MemoryContextSwitchTo(old);
		for (i = 0; i < rd.n && rd.events[i].id <= rd.complete_to; i++)
		{
			IdEvent    *ev = &rd.events[i];
			TupleDesc	desc = RelationGetDescr(rd.ps.ls[ev->part].heap);

			if (desc->natts > natts)
			{
				natts = desc->natts;
				values = MemoryContextAlloc(old, sizeof(Datum) * natts);
				nulls = MemoryContextAlloc(old, sizeof(bool) * natts);
			}
			heap_deform_tuple(ev->tuple, desc, values, nulls);
			if (accept(values, nulls, 0, arg) && ++taken == limit)
				break;
		}
		page_scans_end(&rd.ps);
		MemoryContextReset(cxt);
		if (taken == limit || rd.window_end)
			break;
		after = rd.complete_to;
	}
	MemoryContextDelete(cxt);
	return taken;
}

/*
 * outbox.committed_at(txid xid8) RETURNS timestamptz
 *		LogCommittedAt, NULL when unknown.
 */
Datum
outbox_saga_committed_at(PG_FUNCTION_ARGS)
{
	TimestampTz ts = LogCommittedAt(U64FromFullTransactionId(PG_GETARG_FULLTRANSACTIONID(0)));

	if (ts == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(ts);
}

/*-------------------------------------------------------------------------
 *
 * logscan.h
 *		Reading a window of the log with index scans.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_LOGSCAN_H
#define OUTBOX_SAGA_LOGSCAN_H

#include "fmgr.h"
#include "datatype/timestamp.h"

/*
 * The window (from, to] between two ticks: their ids (which, with the
 * snapshots, key the cache of commit orders) and pg_snapshot datums.
 */
typedef struct LogWindow
{
	int64		from_tick;
	int64		to_tick;
	Datum		from_snap;
	Datum		to_snap;
} LogWindow;

/*
 * A position in the commit order of a window: every event whose key
 * (commit time of its transaction, txid, id) is at most (txid's, txid, id)
 * is behind it.  txid 0: before the window's first event.
 */
typedef struct CommitCursor
{
	uint64		txid;
	int64		id;
} CommitCursor;

/*
 * accept(values, nulls, committed_at, arg): an event of the window
 * (outbox.events values), with the commit time of its transaction (0 if
 * unknown); returns whether it was taken.
 */
typedef bool (*LogAcceptFn) (Datum *values, bool *nulls, TimestampTz committed_at,
							 void *arg);

extern bool LogCommitOrderAvailable(void);
extern TimestampTz LogCommittedAt(uint64 txid);
extern int	LogCommitKeyCompare(uint64 txid_a, int64 id_a, uint64 txid_b, int64 id_b);
extern int	LogWindowPage(const LogWindow *w, int64 after, int limit,
						  LogAcceptFn accept, void *arg);
extern bool LogWindowInCommitOrder(const LogWindow *w);
extern int	LogWindowCommitPage(const LogWindow *w, CommitCursor *cursor, int limit,
								LogAcceptFn accept, void *arg, bool *window_end);
extern bool LogWindowScan(const LogWindow *w,
						  bool (*visit) (Datum *values, bool *nulls, void *arg),
						  void *arg);

#endif							/* OUTBOX_SAGA_LOGSCAN_H */

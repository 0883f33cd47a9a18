/*-------------------------------------------------------------------------
 *
 * delivery.h
 *		One batch of one destination, in its own transaction(s).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DELIVERY_H
#define OUTBOX_SAGA_DELIVERY_H

#include "sink/dest_config.h"
#include "sink/sink.h"

/* What one call of DeliveryRunBatch did. */
typedef struct BatchResult
{
	int64		delivered;		/* events the destination accepted */
	int64		failed;			/* failed attempts */
	int64		parked;			/* events parked as retry rows (delayed,
								 * held back) */
	bool		more;			/* a full batch: call again soon */
	bool		advanced;		/* it finished a window that was not empty
								 * of ticks: a newer window may follow */
} BatchResult;

/*
 * SQL: whether retry row p comes before retry row r of the same aggregate.
 * Replay rows from the history store (position not NULL) come first, in
 * position order: the order the history's archiver was delivered, which
 * is what a read model folded live saw, and what aggregate_events()
 * returns.  (The commit-order key can differ from it for two transactions
 * whose commits overlapped: one may become visible first although its
 * commit time is later, and a window boundary between the two puts it
 * first; see events/logscan.c.)  They precede every other row of the
 * aggregate: those are events after the replayed ones (a live event
 * parked behind them, one not archived yet) or a failed event whose
 * earlier events the replay repeats.  The other rows are in commit order
 * (events/logscan.c): by (committed_at, txid, id) when both commit times
 * are known; a row whose commit time is unknown (read in id order, or
 * restored from another database) comes first, and two such rows come in
 * id order.  A total order, so every aggregate has a head.
 */
#define RETRY_PRECEDES_SQL(p, r) \
	"(CASE WHEN " p ".position IS NOT NULL OR " r ".position IS NOT NULL" \
	" THEN " p ".position < " r ".position OR " r ".position IS NULL" \
	" ELSE (" p ".committed_at IS NULL AND (" r ".committed_at IS NOT NULL OR " p ".id < " r ".id))" \
	"  OR (" p ".committed_at, " p ".txid, " p ".id) < (" r ".committed_at, " r ".txid, " r ".id) END)"

/*
 * SQL: whether event e, of the window of destination d (visible in its
 * upper tick), is behind d's cursor: by id when the window is read in id
 * order (last_txid NULL), by the commit-order key otherwise.
 */
#define CURSOR_PASSED_SQL(e, d) \
	"(CASE WHEN " d ".last_txid IS NULL THEN " e ".id <= " d ".last_id" \
	" ELSE (outbox.committed_at(" e ".txid), " e ".txid, " e ".id)" \
	"      <= (outbox.committed_at(" d ".last_txid), " d ".last_txid, " d ".last_id) END)"

extern void DeliveryRunBatch(DestinationConfig *dest, int64 latest_tick,
							 BatchResult *result);

/* A pull batch (dispatch/pull.c): what takes each event handed out. */
typedef void (*DeliveryTakeFn) (const DispatchEvent *ev, void *arg);

extern void DeliveryTakeHere(DestinationConfig *dest, int limit,
							 DeliveryTakeFn take, void *arg, BatchResult *result);
extern bool DeliveryFailTaken(DestinationConfig *dest, const DispatchEvent *ev,
							  bool hold, TimestampTz next, const char *error);
extern void DeliveryRunBatchHere(DestinationConfig *dest, int limit,
								 bool include_backoff, BatchResult *result);

/* What skip.c shares with a batch (see the end of delivery.c). */
typedef struct DeliveryFilter DeliveryFilter;

extern DeliveryFilter *DeliveryLoadFilter(int32 dest_id, Oid owner);
extern bool DeliveryFilterMatch(DeliveryFilter *f, Datum *values);
extern bool DeliveryWindowDone(Datum to_snap, int64 last_id, uint64 last_txid,
							   Datum *values);

#endif							/* OUTBOX_SAGA_DELIVERY_H */

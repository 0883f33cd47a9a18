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
 * SQL: whether retry row p comes before retry row r of the same aggregate
 * in commit order (see events/logscan.c): by (committed_at, txid, id) when
 * both commit times are known; a row whose commit time is unknown (read in
 * id order, or restored from another database) comes first, and two such
 * rows come in id order.
 */
#define RETRY_PRECEDES_SQL(p, r) \
	"((" p ".committed_at IS NULL AND (" r ".committed_at IS NOT NULL OR " p ".id < " r ".id))" \
	" OR (" p ".committed_at, " p ".txid, " p ".id) < (" r ".committed_at, " r ".txid, " r ".id))"

/*
 * SQL: whether event e, of the window of destination d (visible in its
 * upper tick), is behind d's cursor: by id when the window is read in id
 * order (last_txid NULL), by the commit-order key otherwise.
 */
#define CURSOR_PASSED_SQL(e, d) \
	"(CASE WHEN " d ".last_txid IS NULL THEN " e ".id <= " d ".last_id" \
	" ELSE (outbox.committed_at(" e ".txid), " e ".txid, " e ".id)" \
	"      <= (outbox.committed_at(" d ".last_txid), " d ".last_txid, " d ".last_id) END)"

extern void DeliveryRunBatch(DestinationConfig *dest, BatchResult *result);

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

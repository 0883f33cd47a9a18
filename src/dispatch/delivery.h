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

/* What one call of DeliveryRunBatch did. */
typedef struct BatchResult
{
	int64		delivered;		/* events the destination accepted */
	int64		failed;			/* failed attempts */
	int64		parked;			/* events parked as retry rows (delayed,
								 * held back) */
	bool		more;			/* a full batch: call again soon */
} BatchResult;

extern void DeliveryRunBatch(DestinationConfig *dest, BatchResult *result);

/* What skip.c shares with a batch (see the end of delivery.c). */
typedef struct DeliveryFilter DeliveryFilter;

extern DeliveryFilter *DeliveryLoadFilter(int32 dest_id, Oid owner);
extern bool DeliveryFilterMatch(DeliveryFilter *f, Datum *values);
extern bool DeliveryWindowDone(Datum to_snap, int64 last_id, Datum *values);

#endif							/* OUTBOX_SAGA_DELIVERY_H */

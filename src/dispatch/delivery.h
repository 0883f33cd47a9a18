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
	bool		advanced;		/* it finished a window that was not empty
								 * of ticks: a newer window may follow */
} BatchResult;

extern void DeliveryRunBatch(DestinationConfig *dest, BatchResult *result);
extern void DeliveryRunBatchHere(DestinationConfig *dest, int limit,
								 bool include_backoff, BatchResult *result);

#endif							/* OUTBOX_SAGA_DELIVERY_H */

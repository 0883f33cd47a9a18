/*-------------------------------------------------------------------------
 *
 * dispatcher.h
 *		The per-database dispatcher worker and what it is made of.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DISPATCHER_H
#define OUTBOX_SAGA_DISPATCHER_H

#include "fmgr.h"
#include "utils/jsonb.h"

#include "dispatch/destination.h"

extern PGDLLEXPORT void OutboxDispatcherMain(Datum main_arg);

/* delivery.c: one batch of one destination, in its own transaction. */
typedef struct BatchResult
{
	int64		delivered;		/* events the destination accepted */
	int64		failed;			/* failed attempts */
	int64		parked;			/* events parked as retry rows (delayed,
								 * held back) */
	bool		more;			/* a full batch: call again soon */
} BatchResult;

extern void DeliveryRunBatch(DestinationConfig *dest, BatchResult *result);
extern bool DeliveryCallAs(Oid role, int64 timeout_ms, void (*fn) (void *),
						   void *arg, char **error);

/* housekeeping.c: retire the log, prune ticks, purge idempotency keys. */
extern void HousekeepingRun(void);

#endif							/* OUTBOX_SAGA_DISPATCHER_H */

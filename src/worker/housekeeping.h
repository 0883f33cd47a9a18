/*-------------------------------------------------------------------------
 *
 * housekeeping.h
 *		The dispatcher's housekeeping: retire the log, prune ticks, purge
 *		idempotency keys.  A round is HousekeepingRun, then
 *		HousekeepingRetire for each partition (0 .. OUTBOX_PARTITIONS - 1,
 *		events/eventlog.h), each in a transaction of its own with SPI
 *		connected (the dispatcher opens them), so that a partition's lock
 *		is held from its TRUNCATE to a commit that does nothing else.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_HOUSEKEEPING_H
#define OUTBOX_SAGA_HOUSEKEEPING_H

extern void HousekeepingRun(void);
extern void HousekeepingRetire(int part);

#endif							/* OUTBOX_SAGA_HOUSEKEEPING_H */

/*-------------------------------------------------------------------------
 *
 * housekeeping.h
 *		The dispatcher's housekeeping: retire the log, prune ticks, purge
 *		idempotency keys.  HousekeepingRun runs one round in the caller's
 *		transaction, with SPI connected (the dispatcher opens it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_HOUSEKEEPING_H
#define OUTBOX_SAGA_HOUSEKEEPING_H

extern void HousekeepingRun(void);

#endif							/* OUTBOX_SAGA_HOUSEKEEPING_H */

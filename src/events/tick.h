/*-------------------------------------------------------------------------
 *
 * tick.h
 *		Taking a tick (outbox.tick) without the executor.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_TICK_H
#define OUTBOX_SAGA_TICK_H

extern int64 TickTake(void);

#endif							/* OUTBOX_SAGA_TICK_H */

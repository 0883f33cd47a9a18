/*-------------------------------------------------------------------------
 *
 * tick.h
 *		Ticks (outbox.tick): taking one, reading a snapshot.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_TICK_H
#define OUTBOX_SAGA_TICK_H

extern Oid	TickRelid(void);
extern int64 TickTake(void);
extern Datum TickSnapshot(int64 id, bool cached, bool *found);

#endif							/* OUTBOX_SAGA_TICK_H */

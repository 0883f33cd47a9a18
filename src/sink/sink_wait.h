/*-------------------------------------------------------------------------
 *
 * sink_wait.h
 *		Waiting for a broker library's threads together with the latch;
 *		see sink_wait.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_WAIT_H
#define OUTBOX_SAGA_SINK_WAIT_H

#include "storage/latch.h"
#include "utils/timestamp.h"

typedef struct SinkWait
{
	WaitEventSet *set;
	bool		latch_seen;		/* MyLatch was consumed by a wait */
} SinkWait;

extern void SinkWaitEnsurePipe(void);
extern int	SinkWaitPipeWriteFd(void);
extern void SinkWaitWake(void);
extern void SinkWaitBegin(SinkWait *w);
extern void SinkWaitUntil(SinkWait *w, TimestampTz until, long max_ms);
extern void SinkWaitEnd(SinkWait *w);

#endif							/* OUTBOX_SAGA_SINK_WAIT_H */

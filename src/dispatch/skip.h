/*-------------------------------------------------------------------------
 *
 * skip.h
 *		Moving a destination's position on without delivering.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SKIP_H
#define OUTBOX_SAGA_SKIP_H

/* The last_error of an event moved to the dead letters by the lag limit. */
#define SKIP_LAG_ERROR \
	"skipped: destination lagged past outbox_saga.max_destination_lag"

typedef enum SkipOutcome
{
	SKIP_MOVED,					/* its position is at or past the target */
	SKIP_BUSY,					/* a batch has it, or its position is lost */
	SKIP_OWED,					/* it is owed an event up to the target */
} SkipOutcome;

extern SkipOutcome SkipDestination(int32 dest_id, int64 target, bool to_dead,
								   int64 *moved);

#endif							/* OUTBOX_SAGA_SKIP_H */

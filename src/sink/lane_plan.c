/*-------------------------------------------------------------------------
 *
 * lane_plan.c
 *		The start order of a network batch under the lane rule of sink.h.
 *
 * INVARIANTS
 *	- Events are added in batch order.  An event without a lane (-1) and
 *	  the first event of each lane are ready at once; every later event of
 *	  a lane becomes ready only when its predecessor succeeded
 *	  (SinkLaneSucceeded), so a lane has at most one event in flight and a
 *	  lane's events after a failure are never started (they stay
 *	  SINK_SKIPPED).
 *	- Each event enters the ready FIFO at most once, so 'ready' needs room
 *	  for n entries only.
 *	- Everything lives in the caller's (per-batch) memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "sink/lane_plan.h"

typedef struct LaneEntry
{
	int			lane;
	int			last;
} LaneEntry;

/*
 * SinkLanePlanInit
 *		An empty plan with room for events 0..n-1.
 */
void
SinkLanePlanInit(SinkLanePlan *plan, int n)
{
	int			i;

	plan->next_in_lane = palloc(sizeof(int) * Max(n, 1));
	plan->ready = palloc(sizeof(int) * Max(n, 1));
	plan->head = plan->tail = 0;
	plan->last_of_lane = NULL;
	for (i = 0; i < n; i++)
		plan->next_in_lane[i] = -1;
}

/*
 * SinkLanePlanAdd
 *		Event 'i' (after every event added before it) in 'lane', or -1.
 */
void
SinkLanePlanAdd(SinkLanePlan *plan, int i, int lane)
{
	if (lane >= 0)
	{
		LaneEntry  *entry;
		bool		found;

		if (plan->last_of_lane == NULL)
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(int);
			ctl.entrysize = sizeof(LaneEntry);
			ctl.hcxt = CurrentMemoryContext;
			plan->last_of_lane = hash_create("outbox_saga lanes", 64, &ctl,
											 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		entry = hash_search(plan->last_of_lane, &lane, HASH_ENTER, &found);
		if (found)
		{
			plan->next_in_lane[entry->last] = i;
			entry->last = i;
			return;
		}
		entry->last = i;
	}
	plan->ready[plan->tail++] = i;
}

/*
 * SinkLanePlanAddAll
 *		Events 0..n-1 with lanes[] (NULL: no order constraint).
 */
void
SinkLanePlanAddAll(SinkLanePlan *plan, const int *lanes, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		SinkLanePlanAdd(plan, i, lanes != NULL ? lanes[i] : -1);
}

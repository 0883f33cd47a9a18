/*-------------------------------------------------------------------------
 *
 * lane_plan.h
 *		Which events of a batch may start now, and which one a success
 *		releases (one event in flight per lane); see lane_plan.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_LANE_PLAN_H
#define OUTBOX_SAGA_LANE_PLAN_H

#include "utils/hsearch.h"

typedef struct SinkLanePlan
{
	int		   *next_in_lane;	/* the next event of the same lane, or -1 */
	int		   *ready;			/* FIFO of events that may start now */
	int			head;
	int			tail;
	HTAB	   *last_of_lane;	/* lane -> its last event added so far */
} SinkLanePlan;

extern void SinkLanePlanInit(SinkLanePlan *plan, int n);
extern void SinkLanePlanAdd(SinkLanePlan *plan, int i, int lane);
extern void SinkLanePlanAddAll(SinkLanePlan *plan, const int *lanes, int n);

/* Whether an event may start now. */
static inline bool
SinkLaneHasReady(const SinkLanePlan *plan)
{
	return plan->head < plan->tail;
}

/* The next event that may start. */
static inline int
SinkLaneTakeReady(SinkLanePlan *plan)
{
	return plan->ready[plan->head++];
}

/* Event i succeeded: the next event of its lane may start. */
static inline void
SinkLaneSucceeded(SinkLanePlan *plan, int i)
{
	if (plan->next_in_lane[i] >= 0)
		plan->ready[plan->tail++] = plan->next_in_lane[i];
}

#endif							/* OUTBOX_SAGA_LANE_PLAN_H */

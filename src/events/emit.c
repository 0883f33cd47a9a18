/*-------------------------------------------------------------------------
 *
 * emit.c
 *		outbox.emit(): write one event in the caller's transaction.
 *
 * The SQL function checks its arguments (every NULL and malformed value is
 * an error with an SQLSTATE, before anything is written) and appends the
 * event to the log through OutboxAppendEvent(); see eventlog.c for what that
 * guarantees.  It runs as the caller; who may call it is governed by
 * EXECUTE privilege (revoked from PUBLIC by the extension script), and which
 * topics it may write by the topic's write privilege (topic_acl.c: a cached
 * check, one hash lookup per call; the first emit into a topic nobody owns
 * yet makes the caller its owner).  Its only lock is the one
 * OutboxAppendEvent() takes (ROW EXCLUSIVE on one partition of the log),
 * plus, on a cache miss, ACCESS SHARE on the topic tables; a crash leaves
 * the event iff the caller's transaction committed.
 *
 * Trace context: headers with a traceparent are stored as given (checked);
 * headers without one get the transaction's outbox_saga.traceparent and
 * outbox_saga.tracestate, if set (base/trace_context.c).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "base/sql_args.h"
#include "base/trace_context.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"

PG_FUNCTION_INFO_V1(outbox_saga_emit);

/*
 * outbox.emit(topic text, event_type text, payload jsonb, aggregate_id text,
 *			   headers jsonb, deliver_after timestamptz) RETURNS uuid
 */
Datum
outbox_saga_emit(PG_FUNCTION_ARGS)
{
	OutboxEventData ev;
	pg_uuid_t  *event_id = palloc(sizeof(pg_uuid_t));

	SqlRequireArg(fcinfo, 0, "topic");
	SqlRequireArg(fcinfo, 1, "event_type");
	SqlRequireArg(fcinfo, 2, "payload");
	SqlRequireArg(fcinfo, 4, "headers");

	ev.topic = PG_GETARG_TEXT_PP(0);
	ev.event_type = PG_GETARG_TEXT_PP(1);
	ev.payload = PG_GETARG_JSONB_P(2);
	ev.aggregate_id = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	ev.headers = PG_GETARG_JSONB_P(4);
	ev.has_deliver_after = !PG_ARGISNULL(5);
	ev.deliver_after = ev.has_deliver_after ? PG_GETARG_TIMESTAMPTZ(5) : 0;

	OutboxCheckTopic("topic", ev.topic);
	OutboxCheckEventType("event_type", ev.event_type);
	OutboxCheckAggregateId(ev.aggregate_id);
	OutboxCheckPayload(ev.payload);
	OutboxCheckHeaders(ev.headers);
	if (TraceCurrentIsSet())
	{
		Jsonb	   *with_trace = TraceAddCurrent(ev.headers);

		if (with_trace != ev.headers)
		{
			ev.headers = with_trace;
			OutboxCheckHeaders(ev.headers);
		}
	}
	if (ev.has_deliver_after && TIMESTAMP_NOT_FINITE(ev.deliver_after))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver_after must be a finite timestamp")));
	TopicAclRequire(GetUserId(), ev.topic, TOPIC_WRITE, NULL);

	OutboxAppendEvent(&ev, event_id);
	PG_RETURN_UUID_P(event_id);
}

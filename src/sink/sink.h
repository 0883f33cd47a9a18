/*-------------------------------------------------------------------------
 *
 * sink.h
 *		The interface every destination kind implements.
 *
 * A sink is a table of functions for one kind ("function", "notify",
 * later "http", "kafka", "nats").  Sinks are stateless between calls except
 * for what they keep in their own static caches; the dispatcher owns the
 * transaction and the memory context they run in.
 *
 * In-transaction kinds (function, notify) deliver inside the transaction
 * that also records the delivery, each event in its own subtransaction: an
 * error raised by deliver() is a failed attempt, and the dispatcher rolls
 * the subtransaction back and records the failure (G5).
 *
 * Network kinds (http, kafka, nats) implement deliver_batch() instead: the
 * dispatcher reads a batch in one short transaction, commits, hands the
 * batch to deliver_batch() with no transaction open, and records the
 * outcomes in a second short transaction.  A crash in between delivers the
 * batch again (at least once, same event_id).  deliver_batch() must wait on
 * MyLatch together with its sockets (WaitLatchOrSocket / WaitEventSet,
 * WL_EXIT_ON_PM_DEATH), call CHECK_FOR_INTERRUPTS() while it waits (so
 * SIGTERM and DROP DATABASE are never held up for long), never block in a
 * call that ignores the latch, and return within the destination's timeout
 * plus a little.  It may not use SPI or the catalogs (no transaction).
 *
 * Pull kinds (pull.c) implement neither: the dispatcher never delivers
 * them (SinkIsPushed), sessions take their events over SQL.
 *
 * Lanes: events[i] has lanes[i] >= 0 when it must be delivered strictly
 * after every earlier event of the batch with the same lane (same
 * aggregate on an ordered destination), -1 when it has no order
 * constraint.  At most one event of a lane is in flight at a time; once an
 * event of a lane does not end SINK_OK, the lane's later events are not
 * attempted (SINK_SKIPPED).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_H
#define OUTBOX_SAGA_SINK_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "sink/dest_config.h"

/* One event being delivered, as read from the log or the retry queue. */
typedef struct DispatchEvent
{
	int64		id;
	pg_uuid_t	event_id;
	text	   *topic;
	text	   *aggregate_id;	/* NULL if none */
	text	   *event_type;
	Jsonb	   *payload;
	Jsonb	   *headers;
	TimestampTz created_at;
	bool		has_deliver_after;
	TimestampTz deliver_after;
	uint64		txid;
	TimestampTz committed_at;	/* of its transaction; 0: unknown */
	Datum		row;			/* the event as an outbox.events composite */
	int			attempts;		/* failed attempts so far */
} DispatchEvent;

/*
 * The outcome of one event handed to deliver_batch().  SINK_SKIPPED is the
 * zero value: deliver_batch() receives its outcomes zeroed, so an event a
 * sink never touched counts as not attempted, never as delivered.
 */
typedef enum SinkStatus
{
	SINK_SKIPPED = 0,			/* not attempted (an earlier event of its lane
								 * did not succeed, or time ran out) */
	SINK_OK,					/* delivered (e.g. HTTP 2xx, broker ack) */
	SINK_RETRY,					/* failed; try again after backoff */
	SINK_DEAD,					/* refused for good: to the dead letters */
	SINK_DEAD_AND_PAUSE,		/* refused for good, and the destination is
								 * gone (HTTP 410): dead letter and pause */
} SinkStatus;

typedef struct SinkOutcome
{
	SinkStatus	status;
	char	   *error;			/* for failures: what happened, at most ~1000
								 * bytes, never a secret */
	TimestampTz not_before;		/* 0, or the earliest next attempt (e.g. from
								 * Retry-After) */
} SinkOutcome;

typedef struct OutboxSink
{
	const char *kind;

	/* Config keys of this kind (NULL-terminated), besides the common ones. */
	const char *const *keys;

	/*
	 * Check a kind's part of a destination config; raise an error with an
	 * SQLSTATE if it is unusable.  'owner' is the role the destination will
	 * run as.  Called by create_destination and alter_destination, in the
	 * caller's transaction.
	 */
	void		(*validate) (Jsonb *config, Oid owner);

	/*
	 * Deliver one event inside the current (sub)transaction, running as the
	 * destination's owner.  An error is a failed attempt.
	 */
	void		(*deliver) (const DestinationConfig *dest, const DispatchEvent *ev);

	/*
	 * Network kinds (deliver == NULL): deliver events[0..n-1] outside any
	 * transaction and fill outcomes[0..n-1], which arrive zeroed (all
	 * SINK_SKIPPED); see the file header.  Memory
	 * allocated in CurrentMemoryContext is freed by the caller after the
	 * batch; state kept across batches (connections, producers) lives in the
	 * sink's own long-lived context, keyed by destination id and config.
	 */
	void		(*deliver_batch) (const DestinationConfig *dest,
								  DispatchEvent *const *events, const int *lanes,
								  int n, SinkOutcome *outcomes);

	/* Optional: forget per-destination state (destination dropped/changed). */
	void		(*forget) (int32 dest_id);
} OutboxSink;

/* The length of an event_id as text, with its terminator. */
#define SINK_UUID_TEXT_LEN	37

extern const OutboxSink *SinkLookup(const char *kind, bool missing_ok);
extern const char *SinkKindList(void);
extern void SinkFormatUuid(const pg_uuid_t *uuid, char *out);
extern void SinkOutcomesFailAll(SinkOutcome *outcomes, int n, char *error);

/* The kinds. */
extern const OutboxSink SinkFunction;
extern const OutboxSink SinkNotify;
extern const OutboxSink SinkHttp;
extern const OutboxSink SinkKafka;
extern const OutboxSink SinkNats;
extern const OutboxSink SinkPull;

extern bool SinkIsPushed(const OutboxSink *sink);

#endif							/* OUTBOX_SAGA_SINK_H */

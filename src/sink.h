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
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_H
#define OUTBOX_SAGA_SINK_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "destination.h"

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
	Datum		row;			/* the event as an outbox.events composite */
	int			attempts;		/* failed attempts so far */
} DispatchEvent;

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
} OutboxSink;

extern const OutboxSink *SinkLookup(const char *kind, bool missing_ok);
extern const char *SinkKindList(void);

/* The kinds. */
extern const OutboxSink SinkFunction;
extern const OutboxSink SinkNotify;

#endif							/* OUTBOX_SAGA_SINK_H */

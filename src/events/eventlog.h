/*-------------------------------------------------------------------------
 *
 * eventlog.h
 *		Writing events into the outbox log (outbox.events).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_EVENTLOG_H
#define OUTBOX_SAGA_EVENTLOG_H

#include "access/htup.h"
#include "datatype/timestamp.h"
#include "nodes/execnodes.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

/* Partitioning of the log; outbox.events is declared to match these. */
#define OUTBOX_GENERATION_BITS	16
#define OUTBOX_PARTITIONS		4

/* Limits on the text fields of an event, in bytes. */
#define OUTBOX_MAX_NAME_BYTES		255 /* topic, event_type */
#define OUTBOX_MAX_AGGREGATE_BYTES	1024	/* aggregate_id */

/*
 * Ticks are written one at a time: every statement that inserts into
 * outbox.tick runs after this one, in the same transaction, so that the
 * next tick's id and snapshot are read after the previous tick committed
 * (the dispatchers of a pool and housekeeping all take ticks).  A
 * transaction advisory lock: user code cannot hold or release it.
 */
#define OUTBOX_TICK_LOCK_CLASS	1869968482
#define OUTBOX_TICK_LOCK_OBJECT	2
#define OUTBOX_TICK_LOCK_SQL \
	"SELECT pg_catalog.pg_advisory_xact_lock(" \
	CppAsString2(OUTBOX_TICK_LOCK_CLASS) ", " CppAsString2(OUTBOX_TICK_LOCK_OBJECT) ")"

/*
 * Columns of outbox.events, in their declared order (the SPEC's contract):
 * indexes into a row's values[]; the attribute number is one more.
 */
enum
{
	EV_ID,
	EV_EVENT_ID,
	EV_TOPIC,
	EV_AGGREGATE_ID,
	EV_EVENT_TYPE,
	EV_PAYLOAD,
	EV_HEADERS,
	EV_CREATED_AT,
	EV_DELIVER_AFTER,
	EV_TXID,
	EV_NATTS
};

/* One event to append; every pointer is detoasted. */
typedef struct OutboxEventData
{
	text	   *topic;
	text	   *event_type;
	Jsonb	   *payload;
	text	   *aggregate_id;	/* NULL: the event has no aggregate */
	Jsonb	   *headers;
	bool		has_deliver_after;
	TimestampTz deliver_after;
} OutboxEventData;

extern void OutboxCheckTopic(const char *field, text *value);
extern void OutboxCheckEventType(const char *field, text *value);
extern void OutboxCheckAggregateId(text *value);
extern void OutboxCheckHeaders(Jsonb *headers);
extern void OutboxCheckPayload(Jsonb *payload);
extern Oid	OutboxLogRelid(Oid nspid, const char *relname);
extern Oid	OutboxPrimaryKey(Relation rel);
extern void OutboxAppendEvent(const OutboxEventData *ev, pg_uuid_t *event_id);

/*
 * The plain column indexes of a table written without the executor (the
 * log's partitions, outbox.tick: events/tick.c).
 */
typedef struct LogIndexes
{
	int			n;
	Oid		   *oids;
	IndexInfo **infos;
} LogIndexes;

extern void LogIndexesLoad(Relation heap, MemoryContext cxt, LogIndexes *out);
extern void LogIndexesInsert(Relation heap, const LogIndexes *ix, HeapTuple tup,
							 Datum *values, bool *nulls);

#endif							/* OUTBOX_SAGA_EVENTLOG_H */

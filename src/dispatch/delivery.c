/*-------------------------------------------------------------------------
 *
 * delivery.c
 *		One batch of one destination, in one transaction.
 *
 * THE TRANSACTION
 *	A batch locks its destination row (FOR UPDATE SKIP LOCKED: a user who
 *	holds it in an open transaction only delays that destination), delivers
 *	events, and records the outcome - new position, retry rows, dead letters,
 *	counters - in the same transaction.  In-transaction kinds (function,
 *	notify) deliver inside it, with the outcome of a subtransaction per event
 *	(deliver_in_transaction: one for the batch until an event fails), so a
 *	handler's writes commit if and only if the delivery is recorded (G5); a
 *	crash before the commit delivers the whole batch again (G3).
 *
 * WHAT A BATCH TAKES, IN ORDER
 *	1. Retry rows that are due, lowest id first; on an ordered destination
 *	   only the lowest id of each aggregate is eligible (G4).
 *	2. The next page of the current window of the log (see eventlog.c): the
 *	   events of the destination's subscriptions whose transactions are
 *	   visible in the window's upper tick and not in its lower one, in
 *	   commit order (or id order: see Position), after the position.  An
 *	   event that is delayed (deliver_after in the future), or whose
 *	   aggregate has a retry row on an ordered destination, is parked as a
 *	   retry row (a copy of the event) instead of delivered.
 *	Topics (G14): a '*' subscription matches only the topics the
 *	destination's owner may read; any other event whose topic the owner may
 *	not read (read revoked while it was pending) goes to the dead letters
 *	with a 42501 error instead of being delivered (deny_unreadable).
 *	A failed event gets a retry row with attempts = 1 and a backoff
 *	(full jitter: a random delay up to min(backoff_max,
 *	backoff_base * 2^(attempts-1))), or goes to the dead letters when it has
 *	used up max_attempts; its aggregate is then held back, other aggregates
 *	flow on.
 *
 * OUTAGES
 *	When FAILURES_BEFORE_BACKOFF events that were never tried before fail
 *	and nothing succeeded, the batch stops there and the whole destination
 *	backs off (retry_at, consecutive_failures): an unreachable destination
 *	costs a few attempts per backoff period, and the log - not a copy per
 *	event - keeps what waits.  Retry rows that fail again (a poison event)
 *	only follow their own backoff, and due retry rows are taken fresh ones
 *	(held back, delayed, replayed) first, so poison never starves other
 *	aggregates (G4).  A sink's not_before (the Retry-After of an http
 *	429 or 503) is the endpoint asking for a pause: the failed event is not
 *	retried before it, and neither is anything else of the destination
 *	(retry_at is at least the latest not_before of the batch).
 *
 * A HANDLER THAT DROPS ITS DESTINATION
 *	drop_destination() called by a handler deletes the row the batch has
 *	locked, in the batch's own transaction.  After the in-transaction
 *	deliveries the row is read again; if it is gone, nothing is recorded
 *	(no retry row or dead letter can reference it) and the transaction
 *	commits: the deliveries that succeeded, and the drop, stand; the batch
 *	ends without an error and the destination is never served again.
 *
 * IN THE CALLER'S TRANSACTION (outbox.deliver_pending, sync_delivery.c)
 *	DeliveryRunBatchHere runs the same batch for an in-transaction kind in
 *	the transaction of the session that calls it, without beginning or
 *	committing one: its caller has connected SPI and switched to the
 *	extension's rights.  It waits for the destination's row lock instead
 *	of skipping it (so a dispatcher's batch of the destination ends first,
 *	and a dispatcher skips the destination while the caller holds the
 *	lock, until its transaction ends), delivers a paused destination too,
 *	and - asked to include the backoff - also takes retry rows whose
 *	backoff has not ended (never before their deliver_after) and ignores
 *	the destination's backoff (retry_at).  Everything else - what a batch
 *	takes, attempts, backoff, dead letters, the handler's identity and
 *	search_path - is the dispatcher's code path.
 * MOVED ON WITHOUT DELIVERING
 *	Housekeeping may move a paused or lagging destination's position on
 *	(dispatch/skip.c) under the same row lock; it uses this file's
 *	subscription filter and window position (DeliveryLoadFilter,
 *	DeliveryWindowDone, at the end of the file), so an event it skips is
 *	exactly one a batch would have taken.
 *
 * LOCKS, IDENTITY, ERRORS
 *	Each transaction of a batch holds the destination row FOR UPDATE until
 *	it commits; a network sink delivers between two transactions with no
 *	lock held, and the second records nothing if the position moved.  The
 *	kept SpiStatements of 'statements' run as the dispatcher; a handler runs
 *	as the destination's owner (RunAsOwnerEach).  A failed delivery is an
 *	outcome: its message (for handlers "SQLSTATE: message", clipped at
 *	RUN_AS_MAX_ERROR_LENGTH) becomes last_error.  An error of the batch
 *	propagates to the dispatcher.  Every message raised meanwhile has the
 *	context of batch_error_callback ("while delivering event ...").
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "base/guc.h"
#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/trace_context.h"
#include "dispatch/delivery.h"
#include "dispatch/destination_rows.h"
#include "events/eventlog.h"
#include "events/logscan.h"
#include "events/tick.h"
#include "events/topic_acl.h"
#include "sink/sink.h"

#define FAILURES_BEFORE_BACKOFF	3
#define EVENT_COLUMNS			10

/* The statements of a batch (the table 'statements' below). */
enum
{
	Q_LOCK_DEST_WAIT,
	Q_LATEST_TICK,
	Q_BLOCKED,
	Q_DUE_RETRIES,
	Q_DUE_RETRIES_ALL,
	Q_DUE_RETRIES_PULL,
	Q_PULL_BUSY,
	Q_RETRY_DONE,
	Q_RETRY_FAILED,
	Q_RETRY_TO_DEAD,
	Q_PARK,
	Q_DEAD,
	Q_UPDATE_DEST,
	Q_RELOCK_DEST,
	Q_PAUSE_DEST,
	Q_COUNT
};

#define EVENT_COLS "id, event_id, topic, aggregate_id, event_type, payload, headers, created_at, deliver_after, txid"

/* Q_DUE_RETRIES: the due heads among the retry rows that match 'cond'. */
#define DUE_RETRIES_PART_SQL(cond) \
	"SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload," \
	"       r.headers, r.created_at, r.deliver_after, r.txid, r.attempts, r.committed_at" \
	"  FROM outbox.delivery_retry r" \
	" WHERE r.destination_id = $1 AND " cond " AND r.next_attempt_at <= pg_catalog.now()" \
	"   AND (NOT $2 OR r.aggregate_id IS NULL" \
	"        OR NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p" \
	"                        WHERE p.destination_id = r.destination_id" \
	"                          AND p.aggregate_id = r.aggregate_id" \
	"                          AND " RETRY_PRECEDES_SQL("p", "r") "))" \
	" ORDER BY r.id LIMIT $3"

/*
 * The last column of the lock query (and of the dispatcher's lock,
 * dispatch/destination_rows.c): whether the destination has retry rows at
 * all.  Most batches have none, and then skip the reads of the held
 * back aggregates and of the due retry rows (two statements, a quarter of a
 * pass's cost at one event per pass).  Retry rows are written by the batch
 * that holds this lock, or committed by replays, dead-letter replays and
 * resumes that wake the dispatcher afterwards: one committed after this
 * read is the next batch's, as it would be if committed a moment later.
 */
#define HAS_RETRIES_SQL \
	"EXISTS (SELECT FROM outbox.delivery_retry r WHERE r.destination_id = $1)"

/* Parameter types of the EVENT_COLS columns, in order. */
#define EVENT_TYPES INT8OID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, \
	TIMESTAMPTZOID, TIMESTAMPTZOID, XID8OID

/* Every statement a batch runs, kept (see base/spi_util.c). */
static SpiStatement statements[Q_COUNT] = {
	/*
	 * outbox.destination: the batch's row in the caller's transaction
	 * (DeliveryRunBatchHere), waiting for the lock; paused or not, and
	 * backing off or not ($2: include the backoff)
	 */
	[Q_LOCK_DEST_WAIT] = {
		"the lock of a destination for a batch in the caller's transaction",
		"SELECT tick_from, tick_to, last_id, done_id, consecutive_failures, last_txid,"
		"       config, search_path, owner, kind, " HAS_RETRIES_SQL
		"  FROM outbox.destination WHERE id = $1"
		"   AND ($2 OR retry_at IS NULL OR retry_at <= pg_catalog.now())"
		"   FOR UPDATE",
		{INT4OID, BOOLOID, 0}
	},
	/* outbox.tick: the upper end of a new window */
	[Q_LATEST_TICK] = {
		"the read of the latest tick",
		"SELECT max(id) FROM outbox.tick",
		{0}
	},
	/* outbox.delivery_retry: the aggregates held back */
	[Q_BLOCKED] = {
		"the read of the held-back aggregates",
		"SELECT DISTINCT aggregate_id FROM outbox.delivery_retry"
		" WHERE destination_id = $1 AND aggregate_id IS NOT NULL",
		{INT4OID, 0}
	},
	/*
	 * outbox.delivery_retry: the due rows, heads of their aggregates; never
	 * tried first, then failed ones, each in id order.  Two index scans of
	 * the primary key that stop at the limit (a partial index for the
	 * failed ones), not one sort of every due row: a replay queues many
	 * rows at once (dispatch/replay.c), and each row costs a probe.
	 */
	[Q_DUE_RETRIES] = {
		"the read of the due retry rows",
		"SELECT * FROM ("
		" (" DUE_RETRIES_PART_SQL("NOT (r.attempts > 0)") ")"
		" UNION ALL"
		" (" DUE_RETRIES_PART_SQL("r.attempts > 0") ")) s"
		" ORDER BY s.attempts > 0, s.id LIMIT $3",
		{INT4OID, BOOLOID, INT4OID, 0}
	},
	/*
	 * outbox.delivery_retry: as Q_DUE_RETRIES, and also the failed rows
	 * still in their backoff, though never before their deliver_after
	 * (DeliveryRunBatchHere, include_backoff)
	 */
	[Q_DUE_RETRIES_ALL] = {
		"the read of the retry rows, backoff included",
		"SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload,"
		"       r.headers, r.created_at, r.deliver_after, r.txid, r.attempts"
		"  FROM outbox.delivery_retry r"
		" WHERE r.destination_id = $1"
		"   AND (r.next_attempt_at <= pg_catalog.now()"
		"        OR (r.attempts > 0 AND (r.deliver_after IS NULL"
		"                                OR r.deliver_after <= pg_catalog.now())))"
		"   AND (NOT $2 OR r.aggregate_id IS NULL"
		"        OR NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p"
		"                        WHERE p.destination_id = r.destination_id"
		"                          AND p.aggregate_id = r.aggregate_id AND p.id < r.id))"
		" ORDER BY r.attempts > 0, r.id LIMIT $3",
		{INT4OID, BOOLOID, INT4OID, 0}
	},
	/*
	 * outbox.delivery_retry, outbox.pull_batch: the due retry rows of a pull
	 * destination (DeliveryTakeHere): every due row of an aggregate that no
	 * row not yet due precedes (the whole due chain, not only its head: a
	 * pull batch holds the aggregate, so the chain cannot be overtaken),
	 * of the aggregates no unfinished batch holds, in commit order
	 * (RETRY_PRECEDES_SQL as a sort key).  $2 is unused.
	 */
	[Q_DUE_RETRIES_PULL] = {
		"the read of the due retry rows of a pull destination",
		"SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload,"
		"       r.headers, r.created_at, r.deliver_after, r.txid, r.attempts, r.committed_at"
		"  FROM outbox.delivery_retry r"
		" WHERE r.destination_id = $1 AND r.next_attempt_at <= pg_catalog.now()"
		"   AND (r.aggregate_id IS NULL"
		"        OR (NOT EXISTS (SELECT 1 FROM outbox.delivery_retry p"
		"                         WHERE p.destination_id = r.destination_id"
		"                           AND p.aggregate_id = r.aggregate_id"
		"                           AND p.next_attempt_at > pg_catalog.now()"
		"                           AND " RETRY_PRECEDES_SQL("p", "r") ")"
		"            AND NOT EXISTS (SELECT 1 FROM outbox.pull_batch pb"
		"                             WHERE pb.destination_id = r.destination_id"
		"                               AND r.aggregate_id = ANY (pb.aggregates))))"
		" ORDER BY r.position IS NULL, r.position, r.committed_at IS NOT NULL,"
		"          CASE WHEN r.committed_at IS NULL THEN r.id END,"
		"          r.committed_at, r.txid, r.id"
		" LIMIT $3",
		{INT4OID, BOOLOID, INT4OID, 0}
	},
	/* outbox.pull_batch: the aggregates unfinished pull batches hold */
	[Q_PULL_BUSY] = {
		"the read of the aggregates of unfinished pull batches",
		"SELECT DISTINCT a FROM outbox.pull_batch pb, pg_catalog.unnest(pb.aggregates) a"
		" WHERE pb.destination_id = $1",
		{INT4OID, 0}
	},
	/* outbox.delivery_retry: a row delivered at last */
	[Q_RETRY_DONE] = {
		"the delete of a delivered retry row",
		"DELETE FROM outbox.delivery_retry WHERE destination_id = $1 AND id = $2",
		{INT4OID, INT8OID, 0}
	},
	/* outbox.delivery_retry: a row that failed again */
	[Q_RETRY_FAILED] = {
		"the update of a failed retry row",
		"UPDATE outbox.delivery_retry"
		"   SET attempts = $3, next_attempt_at = $4, last_error = $5,"
		"       last_attempt_at = pg_catalog.now()"
		" WHERE destination_id = $1 AND id = $2",
		{INT4OID, INT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID, 0}
	},
	/* outbox.delivery_retry (deleted) into outbox.dead_letter */
	[Q_RETRY_TO_DEAD] = {
		"the move of a retry row to the dead letters",
		"WITH r AS (DELETE FROM outbox.delivery_retry"
		"            WHERE destination_id = $1 AND id = $2 RETURNING *)"
		" INSERT INTO outbox.dead_letter (destination_id, " EVENT_COLS ", attempts, last_error,"
		"                                 committed_at)"
		" SELECT destination_id, " EVENT_COLS ", $3, $4, committed_at FROM r",
		{INT4OID, INT8OID, INT4OID, TEXTOID, 0}
	},
	/* outbox.delivery_retry: a window event parked as a retry row */
	[Q_PARK] = {
		"the insert of a retry row",
		"INSERT INTO outbox.delivery_retry (destination_id, " EVENT_COLS ","
		"       attempts, next_attempt_at, last_error, last_attempt_at, committed_at)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
		"         CASE WHEN $12 > 0 THEN pg_catalog.now() END, $15)",
		{INT4OID, EVENT_TYPES, INT4OID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, 0}
	},
	/* outbox.dead_letter: a window event that failed for good */
	[Q_DEAD] = {
		"the insert of a dead letter",
		"INSERT INTO outbox.dead_letter (destination_id, " EVENT_COLS ", attempts, last_error,"
		"                                 committed_at)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
		{INT4OID, EVENT_TYPES, INT4OID, TEXTOID, TIMESTAMPTZOID, 0}
	},
	/* outbox.destination: the new position, counters and backoff */
	[Q_UPDATE_DEST] = {
		"the update of a destination after a batch",
		"UPDATE outbox.destination"
		"   SET tick_from = $2, tick_to = $3, last_id = $4, done_id = $5, last_txid = $11,"
		"       delivered_total = delivered_total + $6,"
		"       failed_attempts_total = failed_attempts_total + $7,"
		"       last_delivered_at = CASE WHEN $6 > 0 THEN pg_catalog.now() ELSE last_delivered_at END,"
		"       last_error = COALESCE($8, last_error),"
		"       last_error_at = CASE WHEN $8 IS NOT NULL THEN pg_catalog.now() ELSE last_error_at END,"
		"       consecutive_failures = $9, retry_at = $10"
		" WHERE id = $1",
		{INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
		TEXTOID, INT4OID, TIMESTAMPTZOID, XID8OID, 0}
	},
	/* outbox.destination: the row again, after a network delivery */
	[Q_RELOCK_DEST] = {
		"the relock of a destination after a delivery",
		"SELECT tick_from, tick_to, last_id, done_id, consecutive_failures, last_txid"
		"  FROM outbox.destination WHERE id = $1 FOR UPDATE",
		{INT4OID, 0}
	},
	/* outbox.destination: paused because the sink refused an event for good */
	[Q_PAUSE_DEST] = {
		"the pause of a destination",
		"UPDATE outbox.destination SET paused = true WHERE id = $1",
		{INT4OID, 0}
	},
};

/* The state of one batch. */
typedef struct Batch
{
	DestinationConfig *dest;
	const OutboxSink *sink;
	TupleDesc	events_desc;	/* row type of outbox.events */
	HTAB	   *blocked;		/* aggregates held back (ordered only) */
	int64		delivered;
	int64		failed;
	int64		dead;
	int64		parked;
	int64		fresh_failed;	/* failures of events never tried before */
	char	   *last_error;
	bool		stop;			/* the outage rule stopped the batch */
	const DispatchEvent *current;	/* the event being delivered or recorded,
									 * for batch_error_callback; else NULL */
	bool		here;			/* in the caller's transaction
								 * (DeliveryRunBatchHere) */
	bool		include_backoff;	/* ... taking what backs off too */
	int			limit;			/* ... at most this many per read; 0: the
								 * destination's batch size */
	DeliveryTakeFn take;		/* a pull batch (DeliveryTakeHere): hands
								 * each event to take() instead of a sink */
	void	   *take_arg;
	HTAB	   *busy;			/* ... aggregates of unfinished pull batches */
	int64		latest_tick;	/* a committed tick (the pass's); 0: unknown */
} Batch;

typedef struct BlockedKey
{
	char		aggregate_id[OUTBOX_MAX_AGGREGATE_BYTES + 1];
} BlockedKey;

/*
 * batch_error_callback
 *		The context of every message raised while a batch runs: which
 *		destination and, while one is delivered or recorded, which event.
 *		last_error holds the message alone, so this never changes it.
 */
static void
batch_error_callback(void *arg)
{
	Batch	   *b = arg;

	if (b->current != NULL)
		errcontext("while delivering event %s to destination \"%s\"",
				   DatumGetCString(DirectFunctionCall1(uuid_out,
													   UUIDPGetDatum(&b->current->event_id))),
				   b->dest->name);
	else
		errcontext("while running a batch of destination \"%s\"",
				   b->dest->name);
}

/*
 * events_tupdesc
 *		The tuple descriptor of outbox.events rows, cached per process.
 */
static TupleDesc
events_tupdesc(void)
{
	static TupleDesc cached = NULL;
	static Oid	cached_type = InvalidOid;
	Oid			relid = get_relname_relid("events", get_namespace_oid("outbox", false));
	Oid			typid = get_rel_type_id(relid);

	if (cached == NULL || cached_type != typid)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		cached = lookup_rowtype_tupdesc_copy(typid, -1);
		cached_type = typid;
		MemoryContextSwitchTo(old);
	}
	return cached;
}

/*
 * read_event_values
 *		Fill 'ev' from the EVENT_COLUMNS values of an outbox.events row (in
 *		column order), copying into the current memory context.
 */
static void
read_event_values(Batch *b, Datum *values, bool *nulls, DispatchEvent *ev)
{
	Datum		row[EVENT_COLUMNS];

	ev->id = DatumGetInt64(values[0]);
	memcpy(&ev->event_id, DatumGetUUIDP(values[1]), sizeof(pg_uuid_t));
	ev->topic = DatumGetTextPCopy(values[2]);
	ev->aggregate_id = nulls[3] ? NULL : DatumGetTextPCopy(values[3]);
	ev->event_type = DatumGetTextPCopy(values[4]);
	ev->payload = DatumGetJsonbPCopy(values[5]);
	/* Never pass on an invalid trace context (base/trace_context.c). */
	ev->headers = TraceSanitize(DatumGetJsonbPCopy(values[6]));
	ev->created_at = DatumGetTimestampTz(values[7]);
	ev->has_deliver_after = !nulls[8];
	ev->deliver_after = nulls[8] ? 0 : DatumGetTimestampTz(values[8]);
	ev->txid = DatumGetUInt64(values[9]);
	ev->committed_at = 0;
	ev->attempts = 0;

	/*
	 * The composite outbox.events value handlers receive: only the
	 * in-transaction sinks (function, notify) read it; a network sink sends
	 * the fields, and a pull batch has no handler (dispatch/pull.c keeps its
	 * own).
	 */
	ev->row = (Datum) 0;
	if (b->take != NULL || b->sink->deliver == NULL)
		return;
	memcpy(row, values, sizeof(row));
	row[1] = UUIDPGetDatum(&ev->event_id);
	row[2] = PointerGetDatum(ev->topic);
	row[3] = PointerGetDatum(ev->aggregate_id);
	row[4] = PointerGetDatum(ev->event_type);
	row[5] = JsonbPGetDatum(ev->payload);
	row[6] = JsonbPGetDatum(ev->headers);
	/* Formed from detoasted copies: a composite datum as it is. */
	ev->row = HeapTupleGetDatum(heap_form_tuple(b->events_desc, row, nulls));
}

/*
 * read_event
 *		Fill 'ev' from row 'i' of the last SPI result, whose first
 *		EVENT_COLUMNS columns are those of outbox.events in order (and, for
 *		retry rows, attempts and committed_at after them).  Copies into the current context.
 */
static void
read_event(Batch *b, uint64 i, DispatchEvent *ev, bool with_attempts)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Datum		values[EVENT_COLUMNS];
	bool		nulls[EVENT_COLUMNS];
	int			c;

	for (c = 0; c < EVENT_COLUMNS; c++)
		values[c] = SPI_getbinval(tup, desc, c + 1, &nulls[c]);
	read_event_values(b, values, nulls, ev);
	if (with_attempts)
	{
		bool		isnull;

		Datum		d;

		ev->attempts = DatumGetInt32(SPI_getbinval(tup, desc, EVENT_COLUMNS + 1, &isnull));
		d = SPI_getbinval(tup, desc, EVENT_COLUMNS + 2, &isnull);
		ev->committed_at = isnull ? 0 : DatumGetTimestampTz(d);
	}
}

/*
 * event_params
 *		values/nulls $2..$11 of Q_PARK and Q_DEAD from 'ev'.
 */
static void
event_params(const DispatchEvent *ev, Datum *values, char *nulls)
{
	memset(nulls, ' ', EVENT_COLUMNS);
	values[0] = Int64GetDatum(ev->id);
	values[1] = UUIDPGetDatum(&ev->event_id);
	values[2] = PointerGetDatum(ev->topic);
	values[3] = PointerGetDatum(ev->aggregate_id);
	if (ev->aggregate_id == NULL)
		nulls[3] = 'n';
	values[4] = PointerGetDatum(ev->event_type);
	values[5] = JsonbPGetDatum(ev->payload);
	values[6] = JsonbPGetDatum(ev->headers);
	values[7] = TimestampTzGetDatum(ev->created_at);
	values[8] = TimestampTzGetDatum(ev->deliver_after);
	if (!ev->has_deliver_after)
		nulls[8] = 'n';
	values[9] = UInt64GetDatum(ev->txid);
}

/*
 * backoff_until
 *		When attempt number 'attempts' + 1 may run: full jitter over
 *		min(backoff_max, backoff_base * 2^(attempts - 1)).
 */
static TimestampTz
backoff_until(const DestinationConfig *dest, int attempts)
{
	double		cap = (double) dest->backoff_base_ms;
	int64		delay_ms;

	if (attempts > 1)
		cap *= pow(2.0, Min(attempts - 1, 62));
	if (cap > (double) dest->backoff_max_ms)
		cap = (double) dest->backoff_max_ms;
	delay_ms = (int64) (pg_prng_double(&pg_global_prng_state) * cap);
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
}

/*
 * blocked_key
 *		The hash key of an aggregate id.
 */
static void
blocked_key(text *aggregate_id, BlockedKey *key)
{
	int			len = Min(VARSIZE_ANY_EXHDR(aggregate_id), OUTBOX_MAX_AGGREGATE_BYTES);

	memset(key, 0, sizeof(BlockedKey));
	memcpy(key->aggregate_id, VARDATA_ANY(aggregate_id), len);
}

static bool
is_blocked(Batch *b, text *aggregate_id)
{
	BlockedKey	key;

	if (!b->dest->ordered || aggregate_id == NULL ||
		hash_get_num_entries(b->blocked) == 0)
		return false;
	blocked_key(aggregate_id, &key);
	return hash_search(b->blocked, &key, HASH_FIND, NULL) != NULL;
}

static void
block(Batch *b, text *aggregate_id)
{
	BlockedKey	key;

	if (!b->dest->ordered || aggregate_id == NULL)
		return;
	blocked_key(aggregate_id, &key);
	(void) hash_search(b->blocked, &key, HASH_ENTER, NULL);
}

/*
 * aggregate_hash
 *		A hash table in the current memory context keyed by aggregate id
 *		(BlockedKey), with 'extra' bytes after the key in each entry.
 */
static HTAB *
aggregate_hash(const char *name, Size extra)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(BlockedKey);
	ctl.entrysize = sizeof(BlockedKey) + extra;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * load_blocked
 *		The aggregates that have retry rows: their next events must wait
 *		(none to read if the lock query found no retry rows).
 */
static void
load_blocked(Batch *b, bool has_retries)
{
	Datum		values[1];
	uint64		i;

	b->blocked = aggregate_hash("outbox_saga blocked aggregates", 0);
	if (!b->dest->ordered)
		return;
	values[0] = Int32GetDatum(b->dest->id);
	if (has_retries)
	{
		SpiRun(&statements[Q_BLOCKED], values, NULL, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  1, &isnull);

			block(b, DatumGetTextPP(d));
		}
	}
	/* A pull batch: the aggregates of unfinished batches (see ACT_BUSY). */
	if (b->take == NULL)
		return;
	b->busy = aggregate_hash("outbox_saga busy aggregates", 0);
	SpiRun(&statements[Q_PULL_BUSY], values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
									  1, &isnull);
		BlockedKey	key;

		if (isnull)
			continue;
		blocked_key(DatumGetTextPP(d), &key);
		(void) hash_search(b->busy, &key, HASH_ENTER, NULL);
	}
}

/*
 * is_busy
 *		Whether an unfinished pull batch holds the aggregate (pull batches
 *		only).
 */
static bool
is_busy(Batch *b, text *aggregate_id)
{
	BlockedKey	key;

	if (b->busy == NULL || aggregate_id == NULL)
		return false;
	blocked_key(aggregate_id, &key);
	return hash_search(b->busy, &key, HASH_FIND, NULL) != NULL;
}

/*
 * park_event
 *		Store a copy of 'ev' as a retry row (attempts, next attempt, error)
 *		or, if 'dead', as a dead letter.
 */
static void
park_event(Batch *b, const DispatchEvent *ev, int attempts, TimestampTz next,
		   const char *error, bool dead)
{
	Datum		values[15];
	char		nulls[15];

	values[0] = Int32GetDatum(b->dest->id);
	nulls[0] = ' ';
	event_params(ev, values + 1, nulls + 1);
	values[11] = Int32GetDatum(attempts);
	nulls[11] = ' ';
	if (dead)
	{
		values[12] = error ? CStringGetTextDatum(error) : (Datum) 0;
		nulls[12] = error ? ' ' : 'n';
		values[13] = TimestampTzGetDatum(ev->committed_at);
		nulls[13] = ev->committed_at ? ' ' : 'n';
		SpiRun(&statements[Q_DEAD], values, nulls, SPI_OK_INSERT);
		b->dead++;
		return;
	}
	values[12] = TimestampTzGetDatum(next);
	nulls[12] = ' ';
	values[13] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[13] = error ? ' ' : 'n';
	values[14] = TimestampTzGetDatum(ev->committed_at);
	nulls[14] = ev->committed_at ? ' ' : 'n';
	SpiRun(&statements[Q_PARK], values, nulls, SPI_OK_INSERT);
}

/*
 * tick_snapshot
 *		The snapshot of tick 'id', or 0 if it is gone (events/tick.c).  Only
 *		the dispatcher's batches use the cache: a batch in the caller's
 *		transaction may read the tick that transaction took, which a
 *		rollback takes back (and its id is given again).
 */
static Datum
tick_snapshot(const Batch *b, int64 id, bool *found)
{
	return TickSnapshot(id, !b->here, found);
}

/* ------------------------------------------------------------------------
 * A batch in three phases: collect, deliver, record.
 * ------------------------------------------------------------------------
 */

/* Where an item of the batch came from, and what to do with it. */
typedef enum ItemSource
{
	FROM_RETRY,					/* a due retry row */
	FROM_WINDOW,				/* the current window of the log */
} ItemSource;

typedef enum ItemAction
{
	ACT_SEND,					/* deliver it */
	ACT_HELD,					/* its aggregate is held back: park it */
	ACT_DELAYED,				/* deliver_after in the future: park it */
	ACT_DENIED,					/* its owner may not read the topic: dead */
	ACT_BUSY,					/* a pull batch: an unfinished batch holds its
								 * aggregate: the batch ends before it */
} ItemAction;

typedef struct BatchItem
{
	DispatchEvent ev;
	ItemSource	source;
	ItemAction	action;
	int			lane;			/* ordering lane for network sinks, or -1 */
	bool		handled;		/* in-transaction path: reached before a stop */
	SinkOutcome outcome;
} BatchItem;

/*
 * The position of a destination, as read when the batch was collected.  A
 * window is read in id order (last_txid 0: its events with id <= last_id
 * are done; last_id 0: not begun) or, on an ordered destination whose
 * window has commit times, in commit order (last_txid, last_id: a
 * CommitCursor, see events/logscan.c).
 */
typedef struct Position
{
	int64		tick_from;
	int64		tick_to;		/* 0: no window yet */
	int64		last_id;
	uint64		last_txid;		/* 0: none */
	int64		done_id;
	int			consecutive;
	bool		by_commit;		/* collect() reads this page in commit order */
	CommitCursor page_end;		/* by_commit: the cursor after the page */
	Jsonb	   *config;			/* first lock only: the config now ... */
	char	   *search_path;	/* ... the handler's search_path ... */
	Oid			owner;			/* ... the owner (InvalidOid: not read) ... */
	char	   *kind;			/* ... and the kind (NULL: not read) */
	bool		has_retries;	/* first lock: false if it has no retry rows */
} Position;

/*
 * lock_by_statement
 *		read_position's statement: the caller's transaction's lock, which
 *		waits (skip_locked), or the batch's lock again after its deliveries.
 *		Without 'skip_locked' only the position columns are read (config,
 *		search_path and kind NULL, owner invalid, has_retries true).
 */
static bool
lock_by_statement(const Batch *b, bool skip_locked, DestinationLocked *row)
{
	Datum		values[2];
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	values[0] = Int32GetDatum(b->dest->id);
	values[1] = BoolGetDatum(b->include_backoff);
	if (SpiRun(&statements[skip_locked ? Q_LOCK_DEST_WAIT : Q_RELOCK_DEST],
			   values, NULL, SPI_OK_SELECT) != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(row, 0, sizeof(DestinationLocked));
	row->tick_from = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	row->tick_to = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	if (isnull)
		row->tick_to = 0;
	row->last_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	row->done_id = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	row->consecutive_failures = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	row->last_txid = DatumGetUInt64(SPI_getbinval(tup, desc, 6, &isnull));
	if (isnull)
		row->last_txid = 0;
	row->owner = InvalidOid;
	row->has_retries = true;
	if (skip_locked)
	{
		row->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
		row->search_path = SPI_getvalue(tup, desc, 8);
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 9, &isnull));
		row->kind = SPI_getvalue(tup, desc, 10);
		row->has_retries = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
	}
	return true;
}

/*
 * read_position
 *		Lock the destination's row and read its position.  With 'skip_locked'
 *		a row locked by somebody else (or a paused, backing-off or dropped
 *		destination) returns false; otherwise only a dropped one does.  In
 *		the caller's transaction (b->here), 'skip_locked' waits for the lock
 *		instead, and only a dropped destination, or one backing off unless
 *		b->include_backoff, returns false.  A dispatcher's first lock is
 *		taken without the executor (destination_rows.c).
 */
static bool
read_position(const Batch *b, Position *pos, bool skip_locked)
{
	DestinationLocked row;
	bool		found;

	if (skip_locked && !b->here)
		found = DestinationLockForBatch(b->dest->id, &row);
	else
		found = lock_by_statement(b, skip_locked, &row);
	if (!found)
		return false;
	pos->tick_from = row.tick_from;
	pos->tick_to = row.tick_to;
	pos->last_id = row.last_id;
	pos->done_id = row.done_id;
	pos->consecutive = row.consecutive_failures;
	pos->last_txid = row.last_txid;
	pos->by_commit = false;
	pos->config = row.config;
	pos->search_path = row.search_path;
	pos->owner = row.owner;
	pos->kind = row.kind;
	pos->has_retries = row.has_retries;
	return true;
}

/*
 * refresh_config
 *		The destination as this batch must use it: b->dest, or, if its
 *		config, search_path or owner changed since the dispatcher's pass
 *		read it (alter_destination meanwhile), a copy in 'cxt' with the new
 *		ones, parsed.  So a change applies from the next batch on, however
 *		long the pass: a batch's window is read after its row lock, so an
 *		event committed after the change is never delivered with what the
 *		change replaced.  NULL if its kind changed (an UPDATE by hand, as
 *		after a restore into a build without the kind): the batch's sink is
 *		the pass's kind's, and must not get the new kind's config.  A
 *		config that no longer parses raises, like any batch error.
 */
static DestinationConfig *
refresh_config(const DestinationConfig *dest, const Position *pos, MemoryContext cxt)
{
	DestinationConfig *fresh;
	MemoryContext old;

	if (pos->kind != NULL && strcmp(pos->kind, dest->kind) != 0)
		return NULL;
	if (pos->config == NULL ||
		(VARSIZE(pos->config) == VARSIZE(dest->config) &&
		 memcmp(pos->config, dest->config, VARSIZE(dest->config)) == 0 &&
		 (pos->search_path == NULL) == (dest->search_path == NULL) &&
		 (pos->search_path == NULL || strcmp(pos->search_path, dest->search_path) == 0) &&
		 pos->owner == dest->owner))
		return (DestinationConfig *) dest;

	old = MemoryContextSwitchTo(cxt);
	fresh = palloc(sizeof(DestinationConfig));
	*fresh = *dest;
	fresh->config = palloc(VARSIZE(pos->config));
	memcpy(fresh->config, pos->config, VARSIZE(pos->config));
	fresh->search_path = pos->search_path ? pstrdup(pos->search_path) : NULL;
	fresh->owner = pos->owner;
	DestConfigParseCommon(fresh->config, fresh);
	MemoryContextSwitchTo(old);
	return fresh;
}

/*
 * lane_of
 *		The ordering lane of an aggregate within the batch (ordered
 *		destinations only, never for a pull batch): events of one aggregate
 *		share a lane.
 */
static int
lane_of(Batch *b, HTAB *lanes, text *aggregate_id)
{
	BlockedKey	key;
	struct
	{
		BlockedKey	key;
		int			lane;
	}		   *entry;
	bool		found;

	/* Only network sinks deliver by lanes (deliver_over_network). */
	if (!b->dest->ordered || aggregate_id == NULL || b->take != NULL ||
		b->sink->deliver != NULL)
		return -1;
	blocked_key(aggregate_id, &key);
	entry = hash_search(lanes, &key, HASH_ENTER, &found);
	if (!found)
		entry->lane = (int) hash_get_num_entries(lanes) - 1;
	return entry->lane;
}

/* One subscription of the destination, for the filter of a page. */
typedef struct Subscription
{
	text	   *topic;			/* NULL: every topic */
	int			ntypes;			/* 0: every type */
	text	  **types;
	Datum		since;			/* pg_snapshot */
} Subscription;

/* What accept_event needs while a page of the window is read. */
typedef struct PageState
{
	Batch	   *b;
	MemoryContext cxt;
	HTAB	   *lanes;
	TimestampTz now;
	List	   *items;
	int			nsubs;
	Subscription *subs;
} PageState;

/*
 * load_subscriptions
 *		The destination's subscriptions, into page->subs.
 */
static void
load_subscriptions(Batch *b, PageState *page)
{
	SubscriptionRow *rows = DestinationSubscriptionsRead(b->dest->id, &page->nsubs);
	int			i;

	page->subs = palloc0(sizeof(Subscription) * (page->nsubs + 1));
	for (i = 0; i < page->nsubs; i++)
	{
		Subscription *sub = &page->subs[i];

		sub->topic = rows[i].topic;
		if (VARSIZE_ANY_EXHDR(sub->topic) == 1 && *VARDATA_ANY(sub->topic) == '*')
			sub->topic = NULL;
		if (rows[i].event_types != NULL)
		{
			Datum	   *elems;
			bool	   *elemnulls;
			int			k;

			deconstruct_array(rows[i].event_types, TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, &elemnulls, &sub->ntypes);
			sub->types = palloc(sizeof(text *) * (sub->ntypes + 1));
			for (k = 0; k < sub->ntypes; k++)
				sub->types[k] = DatumGetTextPP(elems[k]);
		}
		sub->since = rows[i].since;
	}
}

static bool
text_equal(text *a, Datum b)
{
	text	   *bt = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(bt) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(bt), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * subscribed
 *		Whether an event (outbox.events values) matches a subscription.
 */
static bool
subscribed(PageState *page, Datum *values)
{
	int			i;

	for (i = 0; i < page->nsubs; i++)
	{
		Subscription *sub = &page->subs[i];

		if (sub->topic != NULL && !text_equal(sub->topic, values[2]))
			continue;
		/* '*': the topics the owner may read (G14, events/topic_acl.c) */
		if (sub->topic == NULL &&
			!TopicAclCheck(page->b->dest->owner, DatumGetTextPP(values[2]),
						   TOPIC_READ, false))
			continue;
		if (sub->ntypes > 0)
		{
			int			k;

			for (k = 0; k < sub->ntypes; k++)
				if (text_equal(sub->types[k], values[4]))
					break;
			if (k == sub->ntypes)
				continue;
		}
		if (DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, values[9],
											 sub->since)))
			continue;
		return true;
	}
	return false;
}

/*
 * accept_event
 *		LogWindowPage's and LogWindowCommitPage's callback: a subscribed
 *		event becomes an item.
 */
static bool
accept_event(Datum *values, bool *nulls, TimestampTz committed_at, void *arg)
{
	PageState  *page = arg;
	Batch	   *b = page->b;
	MemoryContext old;
	BatchItem  *item;

	if (!subscribed(page, values))
		return false;

	old = MemoryContextSwitchTo(page->cxt);
	item = palloc0(sizeof(BatchItem));
	read_event_values(b, values, nulls, &item->ev);
	item->ev.committed_at = committed_at;
	item->source = FROM_WINDOW;
	item->lane = -1;
	if (is_busy(b, item->ev.aggregate_id))
		item->action = ACT_BUSY;
	else if (is_blocked(b, item->ev.aggregate_id))
		item->action = ACT_HELD;
	else if (item->ev.has_deliver_after && item->ev.deliver_after > page->now)
	{
		item->action = ACT_DELAYED;
		block(b, item->ev.aggregate_id);
	}
	else
	{
		item->action = ACT_SEND;
		item->lane = lane_of(b, page->lanes, item->ev.aggregate_id);
	}
	page->items = lappend(page->items, item);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * collect
 *		Phase 1: the due retry rows, then the next page of the window, as
 *		items.  Events are copied into 'cxt'.  Advances *pos to the window
 *		and page read (last_id, done_id; by_commit and page_end when the page
 *		is read in commit order); sets *window_done when the window has no
 *		more events after this page.
 */
static List *
collect(Batch *b, Position *pos, int limit, MemoryContext cxt, bool *window_done,
		bool *more)
{
	List	   *items = NIL;
	Datum		values[5];
	bool		isnull;
	uint64		n;
	uint64		i;
	HTAB	   *lanes;
	Datum		from_snap;
	Datum		to_snap;
	bool		found;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	LogWindow	window;
	PageState	page;

	lanes = aggregate_hash("outbox_saga lanes", sizeof(int));

	/* 1. Due retry rows: heads of their aggregates. */
	n = 0;
	if (pos->has_retries)
	{
		values[0] = Int32GetDatum(b->dest->id);
		values[1] = BoolGetDatum(b->dest->ordered);
		values[2] = Int32GetDatum(limit);
		SpiRun(&statements[b->take != NULL ? Q_DUE_RETRIES_PULL :
						   b->include_backoff ? Q_DUE_RETRIES_ALL : Q_DUE_RETRIES],
			   values, NULL, SPI_OK_SELECT);
		n = SPI_processed;
	}
	*more = (n >= (uint64) limit);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		BatchItem  *item = palloc0(sizeof(BatchItem));

		read_event(b, i, &item->ev, true);
		item->source = FROM_RETRY;
		item->action = ACT_SEND;
		item->lane = lane_of(b, lanes, item->ev.aggregate_id);
		items = lappend(items, item);
		MemoryContextSwitchTo(old);
	}

	/* 2. The window. */
	*window_done = false;
	if (pos->tick_to == 0)
	{
		/*
		 * Any committed tick past tick_from ends a window; the pass's own
		 * saves a statement (its snapshot is read now, and cached for
		 * to_snap below).  Not past it (another process moved the position
		 * beyond, or the window of that tick is done), or gone (the
		 * extension was dropped and created again since the pass began):
		 * the latest.
		 */
		if (b->latest_tick > pos->tick_from)
		{
			(void) tick_snapshot(b, b->latest_tick, &found);
			if (found)
				pos->tick_to = b->latest_tick;
		}
		if (pos->tick_to == 0)
		{
			SpiRun(&statements[Q_LATEST_TICK], NULL, NULL, SPI_OK_SELECT);
			pos->tick_to = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 1, &isnull));
		}
		pos->last_id = 0;
	}
	from_snap = tick_snapshot(b, pos->tick_from, &found);
	if (!found)
	{
		/* Ticks are not dumped with the destination: start from now. */
		ereport(LOG,
				(errmsg("outbox_saga: destination \"%s\" lost its position; it continues from the latest tick",
						b->dest->name)));
		pos->tick_from = pos->tick_to;
		from_snap = tick_snapshot(b, pos->tick_from, &found);
	}
	if (pos->tick_to == pos->tick_from)
	{
		*window_done = true;
		return items;
	}

	/* A pull batch has at most 'limit' events in all. */
	if (b->take != NULL)
	{
		limit -= (int) n;
		if (limit <= 0)
			return items;
	}
	to_snap = tick_snapshot(b, pos->tick_to, &found);

	window.from_tick = pos->tick_from;
	window.to_tick = pos->tick_to;
	window.from_snap = from_snap;
	window.to_snap = to_snap;

	load_subscriptions(b, &page);
	page.b = b;
	page.cxt = cxt;
	page.lanes = lanes;
	page.now = now;
	page.items = items;

	/*
	 * Commit order (G4, events/logscan.c) for an ordered destination, when
	 * the window has commit times; a window begun in id order is finished
	 * in id order.
	 */
	if (b->dest->ordered && (pos->last_id == 0 || pos->last_txid != 0))
	{
		if (LogWindowInCommitOrder(&window))
		{
			pos->by_commit = true;
			pos->page_end.txid = pos->last_txid;
			pos->page_end.id = pos->last_id;
			LogWindowCommitPage(&window, &pos->page_end, limit, accept_event, &page,
								window_done);
			return page.items;
		}
		if (pos->last_txid != 0)
		{
			/* Commit times are gone (turned off): read it again, by id. */
			ereport(LOG,
					(errmsg("outbox_saga: destination \"%s\" reads its current window again in id order: commit timestamps are not available",
							b->dest->name),
					 errhint("Set track_commit_timestamp = on to deliver concurrent writers of one aggregate in commit order.")));
			pos->last_txid = 0;
			pos->last_id = 0;
		}
	}

	/* In id order, after last_id (0: from the start). */
	n = LogWindowPage(&window, pos->last_id, limit, accept_event, &page);
	*window_done = (n < (uint64) limit);
	return page.items;
}

/*
 * deny_unreadable
 *		Items whose topic the destination's owner may not read (any more:
 *		read was revoked after it subscribed, or after the event failed
 *		once) are not delivered: they go to the dead letters with a 42501
 *		last_error, from where outbox.replay_dead() can send them again once
 *		the privilege is back.  TopicAclCheck caches per (owner, topic)
 *		until a grant changes.
 */
static void
deny_unreadable(Batch *b, List *items)
{
	ListCell   *lc;
	char	   *owner = NULL;
	text	   *last_topic = NULL;	/* the topic checked last, and ... */
	bool		last_readable = false;	/* ... its verdict */

	foreach(lc, items)
	{
		BatchItem  *item = lfirst(lc);

		/* A batch is mostly runs of one topic: check each run once. */
		if (last_topic == NULL ||
			VARSIZE_ANY_EXHDR(last_topic) != VARSIZE_ANY_EXHDR(item->ev.topic) ||
			memcmp(VARDATA_ANY(last_topic), VARDATA_ANY(item->ev.topic),
				   VARSIZE_ANY_EXHDR(last_topic)) != 0)
		{
			last_topic = item->ev.topic;
			last_readable = TopicAclCheck(b->dest->owner, last_topic, TOPIC_READ, false);
		}
		if (last_readable)
			continue;
		if (owner == NULL)
			owner = GetUserNameFromId(b->dest->owner, true);
		item->action = ACT_DENIED;
		item->outcome.status = SINK_DEAD;
		if (owner == NULL)		/* the words of RunAsOwner() */
			item->outcome.error = psprintf("42704: the owner (role OID %u) no longer exists; "
										   "drop and re-create the destination or saga definition "
										   "as an existing role", b->dest->owner);
		else
			item->outcome.error = psprintf("42501: permission denied for topic \"%s\": role \"%s\" may not read it",
										   text_to_cstring(item->ev.topic), owner);
		b->last_error = item->outcome.error;
	}
}

/*
 * Runs of handler calls (deliver_in_transaction): the items of a batch in
 * list order, items[from .. to - 1] in one RunAsOwnerEach() run.
 */
typedef struct DeliverRun
{
	Batch	   *b;
	List	   *items;
} DeliverRun;

/*
 * sendable
 *		Whether 'item' is to be delivered now: it is to be sent and, if it
 *		comes from the window, its aggregate is not held back.  An item
 *		whose aggregate is (an earlier failure of the batch, a retry row)
 *		becomes ACT_HELD.  Blocks only grow, so the answer never changes
 *		when a run is rolled back and run again.
 */
static bool
sendable(Batch *b, BatchItem *item)
{
	if (item->action != ACT_SEND)
		return false;
	if (item->source == FROM_WINDOW && is_blocked(b, item->ev.aggregate_id))
	{
		item->action = ACT_HELD;
		return false;
	}
	return true;
}

/* RunAsOwnerEach callback: deliver item i if it is sendable. */
static void
deliver_item(void *arg, int i)
{
	DeliverRun *run = arg;
	BatchItem  *item = list_nth(run->items, i);

	if (!sendable(run->b, item))
		return;
	run->b->current = &item->ev;
	run->b->sink->deliver(run->b->dest, &item->ev);
	run->b->current = NULL;
}

/*
 * deliver_run
 *		Deliver items[from .. to - 1] in one run (one subtransaction, as the
 *		destination's owner, each call with the destination's timeout).
 *		Returns true if every call succeeded; otherwise the run was rolled
 *		back and *failed_at and *error say which item failed and why.
 */
static bool
deliver_run(Batch *b, List *items, int from, int to, int *failed_at,
			char **error)
{
	DeliverRun	run = {b, items};
	RunAsResult result;

	result = RunAsOwnerEach(b->dest->owner, b->dest->search_path,
							b->dest->timeout_ms,
							"handler exceeded the destination's timeout",
							deliver_item, &run, from, to, failed_at, error);
	b->current = NULL;
	return result == RUN_AS_OK;
}

/*
 * first_sendable
 *		The index of the first sendable item at or after 'i' (the list's
 *		length if none); the items passed over are handled.
 */
static int
first_sendable(Batch *b, List *items, int i)
{
	for (; i < list_length(items); i++)
	{
		BatchItem  *item = list_nth(items, i);

		if (sendable(b, item))
			break;
		item->handled = true;
	}
	return i;
}

/*
 * deliver_in_transaction
 *		Phase 2 for in-transaction sinks: deliver in order, with the outcome
 *		of one subtransaction per event: a failed event's writes are rolled
 *		back, the others' stay.  A failure holds back the aggregate's later
 *		items; FAILURES_BEFORE_BACKOFF failures before any success stop the
 *		batch (the items after the stop are not handled).
 *		Cheaply: the remaining items run as ONE run of calls (a single
 *		subtransaction, identity switch and search_path; RunAsOwnerEach).
 *		When an item fails, the run is rolled back, the items before it run
 *		again as a run of their own (their writes stay) and it is recorded
 *		as failed with its error, without a second attempt; the next run
 *		starts after it.  So a batch without failures costs one
 *		subtransaction, and each failure runs the handlers of the items
 *		before it once more (at least once, G3: their first writes were
 *		rolled back).  Should an item of that second run fail, it becomes
 *		the failed one instead and the items after it are run later.
 */
static void
deliver_in_transaction(Batch *b, List *items)
{
	int			n = list_length(items);
	int			start = first_sendable(b, items, 0);

	while (start < n)
	{
		int			end = n;
		int			failed_at;
		char	   *error = NULL;
		bool		failed = false;
		BatchItem  *item;
		int			i;

		/* Run start .. end - 1; on a failure, run again what preceded it. */
		while (end > start && !deliver_run(b, items, start, end, &failed_at, &error))
		{
			failed = true;
			end = failed_at;
		}
		for (i = start; i < end; i++)
		{
			item = list_nth(items, i);
			item->handled = true;
			if (item->action != ACT_SEND)
				continue;
			item->outcome.status = SINK_OK;
			b->delivered++;
		}
		if (!failed)
			break;

		item = list_nth(items, end);
		item->handled = true;
		item->outcome.status = SINK_RETRY;
		item->outcome.error = error;
		block(b, item->ev.aggregate_id);
		b->failed++;
		if (item->ev.attempts == 0)
			b->fresh_failed++;
		b->last_error = error;
		if (b->delivered == 0 && b->fresh_failed >= FAILURES_BEFORE_BACKOFF)
		{
			b->stop = true;
			break;
		}
		start = first_sendable(b, items, end + 1);
	}
}

/*
 * deliver_taken
 *		Phase 2 of a pull batch (DeliveryTakeHere): hand every item to send
 *		to b->take, in order; nothing fails.  The events are recorded as
 *		delivered: the pull batch holds them from now on (dispatch/pull.c).
 *		The batch stops at the first window event whose aggregate an
 *		unfinished pull batch holds (ACT_BUSY): the position stays before
 *		it, so it and what follows are read again by a later batch, with no
 *		write per event (parking it as a retry row would cost two).
 */
static void
deliver_taken(Batch *b, List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		BatchItem  *item = lfirst(lc);

		if (item->action == ACT_BUSY)
		{
			b->stop = true;
			break;
		}
		item->handled = true;
		if (item->action != ACT_SEND)
			continue;
		b->take(&item->ev, b->take_arg);
		item->outcome.status = SINK_OK;
		b->delivered++;
	}
}

/*
 * deliver_over_network
 *		Phase 2 for network sinks: hand every item to send to
 *		deliver_batch(), with no transaction open.
 */
static void
deliver_over_network(Batch *b, List *items)
{
	int			n = 0;
	DispatchEvent **events = palloc(sizeof(DispatchEvent *) * (list_length(items) + 1));
	int		   *lanes = palloc(sizeof(int) * (list_length(items) + 1));
	SinkOutcome *outcomes = palloc0(sizeof(SinkOutcome) * (list_length(items) + 1));
	BatchItem **sent = palloc(sizeof(BatchItem *) * (list_length(items) + 1));
	ListCell   *lc;
	int			i;

	foreach(lc, items)
	{
		BatchItem  *item = lfirst(lc);

		item->handled = true;
		if (item->action != ACT_SEND)
			continue;
		events[n] = &item->ev;
		lanes[n] = item->lane;
		sent[n] = item;
		n++;
	}
	if (n == 0)
		return;

	b->sink->deliver_batch(b->dest, events, lanes, n, outcomes);

	for (i = 0; i < n; i++)
	{
		sent[i]->outcome = outcomes[i];
		switch (outcomes[i].status)
		{
			case SINK_OK:
				b->delivered++;
				break;
			case SINK_SKIPPED:
				break;
			default:
				b->failed++;
				if (sent[i]->ev.attempts == 0)
					b->fresh_failed++;
				if (outcomes[i].error)
					b->last_error = outcomes[i].error;
				break;
		}
	}
}

/*
 * next_attempt
 *		When a failed item may be tried again: its backoff, or later if the
 *		sink asked (Retry-After).
 */
static TimestampTz
next_attempt(Batch *b, BatchItem *item, int attempts)
{
	TimestampTz next = backoff_until(b->dest, attempts);

	return Max(next, item->outcome.not_before);
}

/*
 * record_item
 *		Phase 3 for one item.  Returns true if the destination must be
 *		paused (the sink said it is gone).
 */
static bool
record_item(Batch *b, BatchItem *item)
{
	Datum		values[5];
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			attempts = item->ev.attempts + 1;
	const char *error = item->outcome.error ? item->outcome.error : "failed";

	/*
	 * Not attempted (delayed, held behind its aggregate, or skipped): a
	 * window event becomes a retry row due when it is, and never before its
	 * deliver_after, since a retry row is sent as soon as it heads its
	 * aggregate.  A retry row just stays.
	 */
	if (item->action == ACT_HELD || item->action == ACT_DELAYED ||
		(item->action == ACT_SEND && item->outcome.status == SINK_SKIPPED))
	{
		if (item->source == FROM_WINDOW)
		{
			TimestampTz due = now;

			if (item->ev.has_deliver_after && item->ev.deliver_after > due)
				due = item->ev.deliver_after;
			park_event(b, &item->ev, 0, due, NULL, false);
			b->parked++;
		}
		return false;
	}

	values[0] = Int32GetDatum(b->dest->id);
	values[1] = Int64GetDatum(item->ev.id);
	switch (item->outcome.status)
	{
		case SINK_OK:
			if (item->source == FROM_RETRY)
				SpiRun(&statements[Q_RETRY_DONE], values, NULL, SPI_OK_DELETE);
			return false;

		case SINK_RETRY:
			if (attempts < b->dest->max_attempts)
			{
				if (item->source == FROM_WINDOW)
					park_event(b, &item->ev, attempts, next_attempt(b, item, attempts),
							   error, false);
				else
				{
					values[2] = Int32GetDatum(attempts);
					values[3] = TimestampTzGetDatum(next_attempt(b, item, attempts));
					values[4] = CStringGetTextDatum(error);
					SpiRun(&statements[Q_RETRY_FAILED], values, NULL, SPI_OK_UPDATE);
				}
				return false;
			}
			/* used up max_attempts: a dead letter */
			/* FALLTHROUGH */
		case SINK_DEAD:
		case SINK_DEAD_AND_PAUSE:
			if (item->source == FROM_WINDOW)
				park_event(b, &item->ev, attempts, 0, error, true);
			else
			{
				values[2] = Int32GetDatum(attempts);
				values[3] = CStringGetTextDatum(error);
				SpiRun(&statements[Q_RETRY_TO_DEAD], values, NULL, SPI_OK_INSERT);
				b->dead++;
			}
			return item->outcome.status == SINK_DEAD_AND_PAUSE;

		case SINK_SKIPPED:
			break;
	}
	return false;
}

/*
 * record
 *		Phase 3: the outcome of every handled item, the new position, the
 *		counters and the destination's backoff, in the current transaction.
 *		Returns whether the window was finished.
 */
static bool
record(Batch *b, List *items, Position *pos, bool window_done)
{
	Datum		values[11];
	char		nulls[11];
	ListCell   *lc;
	bool		pause = false;
	int64		last_id = pos->last_id;
	uint64		last_txid = pos->last_txid;
	int64		done_id = pos->done_id;
	bool		all_handled = true;
	int			consecutive = pos->consecutive;
	TimestampTz retry_at = 0;
	TimestampTz asked = 0;		/* the latest not_before of the batch */

	foreach(lc, items)
	{
		BatchItem  *item = lfirst(lc);

		if (!item->handled)
		{
			window_done = false;
			all_handled = false;
			break;
		}
		b->current = &item->ev;
		if (record_item(b, item))
			pause = true;
		b->current = NULL;
		if (item->action == ACT_SEND && item->outcome.status != SINK_OK &&
			item->outcome.not_before > asked)
			asked = item->outcome.not_before;
		if (item->source == FROM_WINDOW)
		{
			last_id = item->ev.id;
			last_txid = pos->by_commit ? item->ev.txid : 0;
			done_id = Max(done_id, item->ev.id);
		}
	}

	/*
	 * In commit order the page may end past its last item (events of other
	 * topics): the cursor moves there once every item is handled.
	 */
	if (pos->by_commit && all_handled)
	{
		last_txid = pos->page_end.txid;
		last_id = pos->page_end.id;
	}

	/*
	 * Only failures of events never tried before say the destination is
	 * down: retry rows that keep failing (poison) have their own backoff,
	 * and must not hold back every other aggregate.
	 */
	if (b->delivered == 0 && b->fresh_failed >= FAILURES_BEFORE_BACKOFF)
	{
		consecutive++;
		retry_at = backoff_until(b->dest, consecutive);
	}
	else if (b->delivered > 0)
		consecutive = 0;

	/*
	 * The endpoint asked not to be contacted before a time (Retry-After of
	 * a 429 or 503): that holds for every event of the destination.
	 */
	if (asked > retry_at)
		retry_at = asked;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int32GetDatum(b->dest->id);
	values[1] = Int64GetDatum(window_done ? pos->tick_to : pos->tick_from);
	values[2] = Int64GetDatum(pos->tick_to);
	nulls[2] = window_done ? 'n' : ' ';
	values[3] = Int64GetDatum(window_done ? 0 : last_id);
	values[4] = Int64GetDatum(done_id);
	values[10] = UInt64GetDatum(last_txid);
	nulls[10] = (window_done || last_txid == 0) ? 'n' : ' ';
	/* A pull batch's events count as delivered when it is finished. */
	values[5] = Int64GetDatum(b->take != NULL ? 0 : b->delivered);
	values[6] = Int64GetDatum(b->failed);
	values[7] = b->last_error ? CStringGetTextDatum(b->last_error) : (Datum) 0;
	nulls[7] = b->last_error ? ' ' : 'n';
	values[8] = Int32GetDatum(consecutive);
	values[9] = TimestampTzGetDatum(retry_at);
	nulls[9] = retry_at ? ' ' : 'n';
	SpiRun(&statements[Q_UPDATE_DEST], values, nulls, SPI_OK_UPDATE);

	if (pause)
	{
		values[0] = Int32GetDatum(b->dest->id);
		SpiRun(&statements[Q_PAUSE_DEST], values, NULL, SPI_OK_UPDATE);
		ereport(LOG,
				(errmsg("outbox_saga: destination \"%s\" paused: it refused an event for good",
						b->dest->name),
				 errdetail("%s", b->last_error ? b->last_error : "")));
	}
	return window_done;
}

/* A batch's transaction; none of its own in the caller's (b->here). */
static void
begin_batch_transaction(const Batch *b)
{
	if (!b->here)
		SpiBeginWorkerTransaction();
}

static void
end_batch_transaction(const Batch *b)
{
	if (!b->here)
		SpiCommitWorkerTransaction();
}

/*
 * run_batch
 *		The body of DeliveryRunBatch: the batch 'b' of b->dest, its events
 *		copied into 'cxt'.  In-transaction sinks: collect, deliver and
 *		record in one transaction.  Network sinks: collect in one
 *		transaction, deliver with none open, record in a second one - if the
 *		destination's position moved in between (it was dropped and
 *		recreated), nothing is recorded and the batch is delivered again
 *		later.  Fills *result only when a batch was recorded.  Returns with
 *		no transaction open, in any memory context.
 */
static void
run_batch(Batch *b, MemoryContext cxt, BatchResult *result)
{
	DestinationConfig *dest = b->dest;
	Position	pos;
	Position	orig;
	Position	now_pos;
	List	   *items;
	bool		window_done;
	bool		more_retries;
	int			limit = dest->batch_size > 0 ? dest->batch_size : OutboxBatchSize;
	bool		finished;

	if (b->limit > 0)
		limit = Min(limit, b->limit);

	begin_batch_transaction(b);
	if (!read_position(b, &pos, true))
	{
		/* Dropped, paused, or locked by a user right now. */
		end_batch_transaction(b);
		return;
	}
	orig = pos;
	dest = refresh_config(dest, &pos, cxt);
	if (dest == NULL)
	{
		/* Another kind now: the next pass loads it anew. */
		end_batch_transaction(b);
		return;
	}
	b->dest = dest;
	limit = dest->batch_size > 0 ? dest->batch_size : OutboxBatchSize;
	if (b->limit > 0)
		limit = (b->take != NULL) ? b->limit : Min(limit, b->limit);
	b->events_desc = events_tupdesc();
	load_blocked(b, pos.has_retries);

	/* A destination that just failed sends a few events only. */
	if (b->sink->deliver == NULL && pos.consecutive > 0)
		limit = Min(limit, FAILURES_BEFORE_BACKOFF);
	items = collect(b, &pos, limit, cxt, &window_done, &more_retries);
	deny_unreadable(b, items);

	if (b->take != NULL)
		deliver_taken(b, items);
	else if (b->sink->deliver != NULL)
	{
		deliver_in_transaction(b, items);

		/*
		 * A handler may have dropped its own destination, in this very
		 * transaction: nothing can be recorded for it any more (its retry
		 * rows and dead letters would reference a deleted row).  Commit what
		 * the handlers did, the drop included, and end the batch.
		 */
		if (!read_position(b, &now_pos, false))
		{
			ereport(LOG,
					(errmsg("outbox_saga: destination \"%s\" was dropped by its own handler; its batch ends",
							dest->name)));
			end_batch_transaction(b);
			return;
		}
	}
	else
	{
		end_batch_transaction(b);
		MemoryContextSwitchTo(cxt);
		deliver_over_network(b, items);
		begin_batch_transaction(b);
		b->events_desc = events_tupdesc();
		if (!read_position(b, &now_pos, false) ||
			now_pos.tick_from != orig.tick_from ||
			now_pos.tick_to != orig.tick_to ||
			now_pos.last_id != orig.last_id ||
			now_pos.last_txid != orig.last_txid)
		{
			end_batch_transaction(b);
			return;
		}
	}

	finished = record(b, items, &pos, window_done);
	if (b->dead > 0)
		ereport(LOG,
				(errmsg("outbox_saga: %lld event(s) of destination \"%s\" moved to the dead letters",
						(long long) b->dead, dest->name),
				 errdetail("Last error: %s", b->last_error ? b->last_error : "none")));
	end_batch_transaction(b);

	result->delivered = b->delivered;
	result->failed = b->failed;
	result->parked = b->parked;
	result->more = !b->stop && (more_retries || !window_done);
	result->advanced = finished && pos.tick_to != orig.tick_from;
}

/*
 * run_batch_with_context / DeliveryRunBatch
 *		One batch of 'dest' (run_batch) under batch_error_callback, in a
 *		memory context of its own.  An error propagates to the dispatcher.
 *		'latest_tick' is a committed tick (the dispatcher's pass took it) to
 *		end a new window with if the position is not past it; 0: none, the
 *		latest is read.
 */
static void
run_batch_with_context(Batch *b, BatchResult *result)
{
	ErrorContextCallback errcb;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(caller, "outbox_saga batch",
											  ALLOCSET_DEFAULT_SIZES);

	b->sink = SinkLookup(b->dest->kind, false);

	errcb.callback = batch_error_callback;
	errcb.arg = b;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	run_batch(b, cxt, result);

	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
}

void
DeliveryRunBatch(DestinationConfig *dest, int64 latest_tick, BatchResult *result)
{
	Batch		b;

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.latest_tick = latest_tick;
	run_batch_with_context(&b, result);
}

/*
 * DeliveryRunBatchHere
 *		One batch of 'dest', an in-transaction kind, in the caller's
 *		transaction (see IN THE CALLER'S TRANSACTION): at most 'limit'
 *		events per read (0: the batch size), the backoff included if
 *		'include_backoff'.  The caller has connected SPI and runs with the
 *		extension's rights; an error propagates to it.
 */
void
DeliveryRunBatchHere(DestinationConfig *dest, int limit, bool include_backoff,
					 BatchResult *result)
{
	Batch		b;

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.here = true;
	b.include_backoff = include_backoff;
	b.limit = limit;
	if (SinkLookup(dest->kind, false)->deliver == NULL)
		elog(ERROR, "outbox_saga: destination \"%s\" is not delivered in a transaction",
			 dest->name);
	run_batch_with_context(&b, result);
}

/*
 * DeliveryTakeHere
 *		One batch of pull destination 'dest' in the caller's transaction (as
 *		DeliveryRunBatchHere): at most 'limit' events in all, due retry rows
 *		first, then the window, each handed to take(ev, arg) in order.  The
 *		aggregates of unfinished pull batches are held back like those with
 *		retry rows: their due retry rows are not taken, their window events
 *		are parked.  The destination's position moves past what was taken;
 *		the taken retry rows are deleted.  The caller keeps the events
 *		(dispatch/pull.c).  'take' must not raise errors it does not mean
 *		to end the transaction with.
 */
void
DeliveryTakeHere(DestinationConfig *dest, int limit, DeliveryTakeFn take,
				 void *arg, BatchResult *result)
{
	Batch		b;

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.here = true;
	b.limit = limit;
	b.take = take;
	b.take_arg = arg;
	run_batch_with_context(&b, result);
}

/*
 * DeliveryFailTaken
 *		A pull consumer failed 'ev' (outbox.retry_event): a failed attempt,
 *		recorded exactly as a failed window event of a batch - a retry row
 *		with attempts + 1 due at 'next' (0: the destination's backoff), or a
 *		dead letter once max_attempts are used up; or, with 'hold', the
 *		event was not attempted (a later event of a failed one's aggregate):
 *		a retry row with its attempts unchanged, due now, behind the failed
 *		one in commit order.  Returns whether it became a dead letter.  In
 *		the caller's transaction, SPI connected, as the extension.
 */
bool
DeliveryFailTaken(DestinationConfig *dest, const DispatchEvent *ev, bool hold,
				  TimestampTz next, const char *error)
{
	Batch		b;
	int			attempts = ev->attempts + 1;

	memset(&b, 0, sizeof(b));
	b.dest = dest;
	if (hold)
	{
		park_event(&b, ev, ev->attempts, GetCurrentTransactionStartTimestamp(),
				   NULL, false);
		return false;
	}
	if (error == NULL)
		error = "failed";
	if (attempts >= dest->max_attempts)
	{
		park_event(&b, ev, attempts, 0, error, true);
		return true;
	}
	if (next == 0)
		next = backoff_until(dest, attempts);
	park_event(&b, ev, attempts, next, error, false);
	return false;
}

/* ------------------------------------------------------------------------
 * What moving a destination on without delivering (skip.c) shares with a
 * batch: which events the destination is owed, and where it stands in its
 * current window.
 * ------------------------------------------------------------------------
 */

/* The subscription filter of one destination (DeliveryLoadFilter). */
struct DeliveryFilter
{
	DestinationConfig dest;
	Batch		b;
	PageState	page;
};

/*
 * DeliveryLoadFilter
 *		The subscriptions of destination 'dest_id' owned by 'owner', read in
 *		the current transaction, allocated in the current memory context.
 */
DeliveryFilter *
DeliveryLoadFilter(int32 dest_id, Oid owner)
{
	DeliveryFilter *f = palloc0(sizeof(DeliveryFilter));

	f->dest.id = dest_id;
	f->dest.owner = owner;
	f->b.dest = &f->dest;
	f->page.b = &f->b;
	load_subscriptions(&f->b, &f->page);
	return f;
}

/*
 * DeliveryFilterMatch
 *		Whether an event (outbox.events values) is owed to the filter's
 *		destination: exactly the events a batch takes from its window
 *		(subscribed: topic, '*' and the owner's read privilege, event types,
 *		since).
 */
bool
DeliveryFilterMatch(DeliveryFilter *f, Datum *values)
{
	return subscribed(&f->page, values);
}

/*
 * DeliveryWindowDone
 *		Whether an event (outbox.events values) of the window that ends at the
 *		tick whose snapshot is 'to_snap' is already behind the position
 *		(last_id, last_txid) in that window.  Agrees with the order in which
 *		collect() reads a window: id order (last_txid 0: last_id is the last
 *		id done) or commit order (the key of the last event done, as
 *		CURSOR_PASSED_SQL).
 */
bool
DeliveryWindowDone(Datum to_snap, int64 last_id, uint64 last_txid, Datum *values)
{
	int64		id = DatumGetInt64(values[EV_ID]);
	uint64		txid = DatumGetUInt64(values[EV_TXID]);

	if (!DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot, values[EV_TXID],
										  to_snap)))
		return false;
	if (last_txid == 0)
		return id <= last_id;
	return LogCommitKeyCompare(txid, id, last_txid, last_id) <= 0;
}

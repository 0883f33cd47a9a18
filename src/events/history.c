/*-------------------------------------------------------------------------
 *
 * history.c
 *		Retained history: topics whose events are kept after the log
 *		retires them, and an aggregate's history in commit order (issue 16).
 *
 * THE STORE
 *	outbox.retain_topic(topic, keep) subscribes an internal function
 *	destination, the archiver (named 'outbox.history', owned by the
 *	bootstrap superuser, created on first use; src/sql/history.sql), to
 *	the topic.  Its handler outbox.history_archive() inserts each event
 *	into outbox.history with a position drawn from
 *	outbox.history_position_seq.  So the archiver reads the log exactly as
 *	any destination does (eventlog.c, logscan.c): gap-free (G2), in commit
 *	order per aggregate (G4; in commit order across aggregates too, within
 *	a window and across windows), and the log is not retired before it has
 *	consumed it (G7's retirement waits for every destination).  History is
 *	insert-only; housekeeping deletes, in bounded statements through the
 *	index (topic, committed_at), the events older than their topic's keep
 *	(outbox.history_prune).
 *
 * POSITIONS (INVARIANTS)
 *	- Stable: a position is written once, with its event, and never
 *	  changes.
 *	- In commit order per aggregate: the archiver delivers an aggregate in
 *	  commit order (an event that fails to archive holds back its
 *	  aggregate, G4), and its batches run one after the other under its
 *	  destination row lock, each drawing its positions after the previous
 *	  one committed.  So a reader never sees a position p without every
 *	  position below p of the same aggregate, and paging with
 *	  after => the last position seen neither skips nor repeats.
 *	- Exactly once: the handler runs in the transaction that moves the
 *	  archiver's position (G5).
 *
 * THE TAIL
 *	A committed event the archiver has not reached yet is not in the store.
 *	outbox.aggregate_events() returns it after the stored ones, with
 *	position NULL (outbox.history_tail: the log ahead of the archiver's
 *	position, plus its retry rows).  The archiver records its position and
 *	the rows it archived in one transaction, so in the one snapshot of the
 *	call every retained committed event is in exactly one of the two parts,
 *	and the tail follows every stored event of its aggregate in commit
 *	order.  A caller that folds incrementally stops at the first NULL
 *	position and pages from the last non-NULL one.
 *
 * EXPECTED VERSION (optimistic concurrency of event-sourced aggregates)
 *	outbox.append(topic, aggregate_id, expected_version, ...) writes an
 *	event as outbox.emit() does, and only if the aggregate's version - the
 *	number of events appended to it with outbox.append(), kept in
 *	outbox.aggregate_version - is expected_version; the version is then
 *	one more, in the same transaction.  The check is one statement: an
 *	UPDATE ... WHERE version = expected (or, for 0, an INSERT ... ON
 *	CONFLICT DO NOTHING), so of two concurrent appends with the same
 *	expected version the second waits for the first's row lock and, once
 *	the first commits, matches no row: it fails with 40001
 *	(serialization_failure; retry by reading the aggregate again).  If the
 *	first rolls back, the second goes ahead.  A wrong expected version is
 *	40001 too.  This is one row UPDATE per append, on the aggregate's row,
 *	for the callers who ask for it; emit() is unchanged.
 *
 * PRIVILEGES
 *	The functions are SECURITY INVOKER; the checks run as the caller:
 *	retain_topic and unretain_topic need the privileges of the topic's
 *	owner (a superuser for a topic with no owner); aggregate_events needs
 *	read on the topic (G14, TopicAclRequire), append write on it.  The bodies then run with
 *	the extension's rights (RunAsExtensionRun) as the internal SQL
 *	functions of history.sql, which no role is granted.
 *
 * CRASH
 *	All state is in tables written in the caller's or the archiver's
 *	transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"

PG_FUNCTION_INFO_V1(outbox_saga_retain_topic);
PG_FUNCTION_INFO_V1(outbox_saga_unretain_topic);
PG_FUNCTION_INFO_V1(outbox_saga_aggregate_events);
PG_FUNCTION_INFO_V1(outbox_saga_role_may_read_topic);
PG_FUNCTION_INFO_V1(outbox_saga_append);

enum
{
	Q_TOPIC_OWNER,
	Q_RETAIN,
	Q_UNRETAIN,
	Q_AGGREGATE,
	Q_NEXT_VERSION,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.topic */
	[Q_TOPIC_OWNER] = {
		"the lookup of a topic's owner",
		"SELECT owner FROM outbox.topic WHERE name = $1",
		{TEXTOID, 0}
	},
	/* outbox.destination, subscription, retained_topic (history.sql) */
	[Q_RETAIN] = {
		"the retention of a topic",
		"SELECT outbox.history_retain($1, $2)",
		{TEXTOID, INTERVALOID, 0}
	},
	/* outbox.retained_topic, subscription, delivery_retry, history */
	[Q_UNRETAIN] = {
		"the end of a topic's retention",
		"SELECT outbox.history_unretain($1)",
		{TEXTOID, 0}
	},
	/* outbox.history, events, delivery_retry (history.sql) */
	[Q_AGGREGATE] = {
		"the read of an aggregate's history",
		"SELECT * FROM outbox.history_aggregate($1, $2, $3)",
		{TEXTOID, TEXTOID, INT8OID, 0}
	},
	/* outbox.aggregate_version: the check and the new version, or nothing */
	[Q_NEXT_VERSION] = {
		"the check of an aggregate's version",
		"WITH up AS (UPDATE outbox.aggregate_version SET version = version + 1"
		"             WHERE topic = $1 AND aggregate_id = $2 AND version = $3"
		"               AND $3 > 0 RETURNING version),"
		"     ins AS (INSERT INTO outbox.aggregate_version (topic, aggregate_id, version)"
		"             SELECT $1, $2, 1 WHERE $3 = 0"
		"             ON CONFLICT (topic, aggregate_id) DO NOTHING RETURNING version)"
		" SELECT version FROM up UNION ALL SELECT version FROM ins",
		{TEXTOID, TEXTOID, INT8OID, 0}
	},
};

/*
 * check_topic_owner
 *		Error 42501 unless the caller has the privileges of the owner of
 *		'topic' (a topic with no owner: a superuser).  Connected to SPI.
 */
static void
check_topic_owner(text *topic)
{
	Datum		values[1];
	bool		isnull;
	Oid			owner = InvalidOid;

	values[0] = PointerGetDatum(topic);
	if (RunAsExtensionRun(&statements[Q_TOPIC_OWNER], values, NULL, SPI_OK_SELECT) == 1)
		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	if (superuser() || (OidIsValid(owner) && has_privs_of_role(GetUserId(), owner)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of topic \"%s\"", text_to_cstring(topic)),
			 errdetail("Only the topic's owner, a member of it, or a superuser may change its retention.")));
}

/*
 * outbox.retain_topic(topic text, keep interval DEFAULT NULL) RETURNS void
 */
Datum
outbox_saga_retain_topic(PG_FUNCTION_ARGS)
{
	text	   *topic;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	SqlRequireArg(fcinfo, 0, "topic");
	topic = PG_GETARG_TEXT_PP(0);
	OutboxCheckTopic("topic", topic);
	if (!PG_ARGISNULL(1))
	{
		Interval   *keep = PG_GETARG_INTERVAL_P(1);
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(keep),
											  IntervalPGetDatum(&zero))) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keep must be positive"),
					 errhint("Pass NULL to keep the events forever.")));
		values[1] = IntervalPGetDatum(keep);
	}
	else
		nulls[1] = 'n';

	SpiConnect();
	/* The caller's first use of a topic makes it its owner (topic_acl.c). */
	(void) TopicAclCheck(GetUserId(), topic, TOPIC_READ, true);
	check_topic_owner(topic);
	values[0] = PointerGetDatum(topic);
	RunAsExtensionRun(&statements[Q_RETAIN], values, nulls, SPI_OK_SELECT);
	SpiFinish();
	PG_RETURN_VOID();
}

/*
 * outbox.unretain_topic(topic text) RETURNS bigint
 */
Datum
outbox_saga_unretain_topic(PG_FUNCTION_ARGS)
{
	text	   *topic;
	Datum		values[1];
	bool		isnull;
	int64		n;

	SqlRequireArg(fcinfo, 0, "topic");
	topic = PG_GETARG_TEXT_PP(0);
	OutboxCheckTopic("topic", topic);

	SpiConnect();
	check_topic_owner(topic);
	values[0] = PointerGetDatum(topic);
	RunAsExtensionRun(&statements[Q_UNRETAIN], values, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull));
	SpiFinish();
	PG_RETURN_INT64(n);
}

/*
 * outbox.aggregate_events(topic text, aggregate_id text, after bigint
 *		DEFAULT 0) RETURNS TABLE (position, ...): see the file header.
 */
Datum
outbox_saga_aggregate_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *topic;
	Datum		values[3];
	uint64		n;
	uint64		i;

	SqlRequireArg(fcinfo, 0, "topic");
	SqlRequireArg(fcinfo, 1, "aggregate_id");
	SqlRequireArg(fcinfo, 2, "after");
	topic = PG_GETARG_TEXT_PP(0);
	OutboxCheckTopic("topic", topic);
	if (PG_GETARG_INT64(2) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after must not be negative"),
				 errhint("Pass 0 for the whole history, or the last position seen.")));

	InitMaterializedSRF(fcinfo, 0);

	SpiConnect();
	TopicAclRequire(GetUserId(), topic, TOPIC_READ, NULL);
	values[0] = PointerGetDatum(topic);
	values[1] = PointerGetDatum(PG_GETARG_TEXT_PP(1));
	values[2] = PG_GETARG_DATUM(2);
	n = RunAsExtensionRun(&statements[Q_AGGREGATE], values, NULL, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	SpiFinish();
	return (Datum) 0;
}

/*
 * outbox.role_may_read_topic(role oid, topic text) RETURNS boolean
 *		Internal (history.sql's rewind): TopicAclCheck for a given role,
 *		never creating the topic.
 */
Datum
outbox_saga_role_may_read_topic(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(TopicAclCheck(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1), TOPIC_READ,
								 false));
}

/*
 * outbox.append(topic text, aggregate_id text, expected_version bigint,
 *		event_type text, payload jsonb DEFAULT '{}', headers jsonb DEFAULT
 *		'{}') RETURNS bigint: see EXPECTED VERSION in the file header.
 *		Returns the aggregate's new version.
 */
Datum
outbox_saga_append(PG_FUNCTION_ARGS)
{
	OutboxEventData ev;
	pg_uuid_t  *event_id = palloc(sizeof(pg_uuid_t));
	int64		expected;
	int64		version;
	Datum		values[3];
	bool		isnull;

	SqlRequireArg(fcinfo, 0, "topic");
	SqlRequireArg(fcinfo, 1, "aggregate_id");
	SqlRequireArg(fcinfo, 2, "expected_version");
	SqlRequireArg(fcinfo, 3, "event_type");
	SqlRequireArg(fcinfo, 4, "payload");
	SqlRequireArg(fcinfo, 5, "headers");
	expected = PG_GETARG_INT64(2);
	if (expected < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must not be negative"),
				 errhint("A new aggregate has version 0.")));

	memset(&ev, 0, sizeof(ev));
	ev.topic = PG_GETARG_TEXT_PP(0);
	ev.aggregate_id = PG_GETARG_TEXT_PP(1);
	ev.event_type = PG_GETARG_TEXT_PP(3);
	ev.payload = PG_GETARG_JSONB_P(4);
	ev.headers = PG_GETARG_JSONB_P(5);
	ev.has_deliver_after = false;
	OutboxCheckTopic("topic", ev.topic);
	OutboxCheckEventType("event_type", ev.event_type);
	OutboxCheckAggregateId(ev.aggregate_id);
	OutboxCheckPayload(ev.payload);
	OutboxCheckHeaders(ev.headers);
	TopicAclRequire(GetUserId(), ev.topic, TOPIC_WRITE, NULL);

	SpiConnect();
	values[0] = PointerGetDatum(ev.topic);
	values[1] = PointerGetDatum(ev.aggregate_id);
	values[2] = Int64GetDatum(expected);
	if (RunAsExtensionRun(&statements[Q_NEXT_VERSION], values, NULL, SPI_OK_SELECT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("aggregate \"%s\" of topic \"%s\" is not at version %lld",
						text_to_cstring(ev.aggregate_id), text_to_cstring(ev.topic),
						(long long) expected),
				 errhint("Another transaction appended to it: read it again and retry.")));
	version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));
	SpiFinish();

	OutboxAppendEvent(&ev, event_id);
	PG_RETURN_INT64(version);
}

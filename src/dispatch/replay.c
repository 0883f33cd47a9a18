/*-------------------------------------------------------------------------
 *
 * replay.c
 *		Replay of retained history to a destination: outbox.rewind() and
 *		outbox.subscribe_since() (issue 16).
 *
 * THE DESIGN: REPLAY AS RETRY ROWS
 *	A rewind works at the level of the destination's position and its retry
 *	rows, never on the kind: it queues the events to deliver again as
 *	retry rows of the destination (outbox.delivery_retry, marked replay,
 *	attempts 0, due now, with their commit time), in the caller's
 *	transaction, under the destination's row lock (so no batch of it runs
 *	meanwhile; history.sql, outbox.history_rewind).  Every kind's batch
 *	takes due retry rows, so every kind replays; the rest is the ordinary
 *	delivery (delivery.c): attempts, backoff, dead letters, the handler's
 *	identity.
 *
 * WHICH EVENTS
 *	The retained events (events/history.c: the store plus the tail the
 *	archiver has not reached) of the destination's subscriptions (or, for
 *	subscribe with since, of the new subscription), whose commit time
 *	(track_commit_timestamp; created_at where unknown) is at or after
 *	'since', of topics the destination's owner may read (G14, as a
 *	subscription's '*'), except:
 *	- those the destination will still take live: ahead of its position
 *	  and taken by one of its subscriptions (not visible in its since
 *	  snapshot) - they come live, once;
 *	- those it already has as a retry row or a dead letter.
 *	So every retained event at or after 'since' is delivered (no gap at the
 *	seam), and none twice by this rewind.
 *
 * ORDER AT THE SEAM (G4)
 *	On an ordered destination only the first retry row of an aggregate is
 *	eligible (RETRY_PRECEDES_SQL: replay rows by their history position,
 *	before every other row of the aggregate), and a live event of an
 *	aggregate that has a retry row is parked behind it.  So an aggregate's
 *	replayed events come in the history's order (the archiver's, which
 *	aggregate_events() returns; the commit-order key alone can differ from
 *	it for overlapping commits), and its live events, written during the
 *	replay or before it, after them: no reorder at the seam.  Other
 *	aggregates flow live.
 *
 * PRIVILEGES, LOCKS
 *	SECURITY INVOKER.  The caller must have the privileges of the
 *	destination's owner: checked (42501) after reading the row without a
 *	lock and before any lock is taken.  The body runs with the extension's
 *	rights and locks the destination row FOR UPDATE (waiting for a batch in
 *	progress) until the caller's transaction ends.  outbox.replay records
 *	the latest rewind; outbox.stats shows replay_pending (the replay rows
 *	left) and replay_since.  The dispatcher is woken at commit.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/wakeup.h"

PG_FUNCTION_INFO_V1(outbox_saga_rewind);
PG_FUNCTION_INFO_V1(outbox_saga_subscribe_since);

/* destination.c */
extern Datum outbox_saga_subscribe(PG_FUNCTION_ARGS);

enum
{
	Q_LOOKUP,
	Q_REWIND,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.destination, not locked (the owner check comes first) */
	[Q_LOOKUP] = {
		"the lookup of a destination",
		"SELECT id, owner FROM outbox.destination WHERE name = $1",
		{TEXTOID, 0}
	},
	/* outbox.destination (locked), delivery_retry, replay (history.sql) */
	[Q_REWIND] = {
		"the rewind of a destination",
		"SELECT outbox.history_rewind($1, $2, $3)",
		{INT4OID, TIMESTAMPTZOID, INT8OID, 0}
	},
};

/*
 * queue_replay
 *		Check the caller against destination 'name' and queue its replay of
 *		the events committed at or after 'since' (of subscription
 *		'only_subscription' alone when it is not 0).  Connected to SPI.
 *		Returns the number of events queued.
 */
static int64
queue_replay(const char *name, TimestampTz since, int64 only_subscription)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;
	int32		id;
	Oid			owner;
	int64		n;

	values[0] = CStringGetTextDatum(name);
	if (RunAsExtensionRun(&statements[Q_LOOKUP], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("destination \"%s\" does not exist", name)));
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									 &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   2, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of destination \"%s\"", name),
				 errdetail("Only the role that created a destination, a member of it, or a superuser may rewind it.")));

	values[0] = Int32GetDatum(id);
	values[1] = TimestampTzGetDatum(since);
	values[2] = Int64GetDatum(only_subscription);
	if (only_subscription == 0)
		nulls[2] = 'n';
	RunAsExtensionRun(&statements[Q_REWIND], values, nulls, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull));
	if (n > 0)
		WakeupNoteEventWritten();
	return n;
}

static TimestampTz
since_arg(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz since;

	SqlRequireArg(fcinfo, argno, "since");
	since = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(since) && since > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("since must not be infinity")));
	return since;
}

/*
 * outbox.rewind(destination text, since timestamptz) RETURNS bigint
 */
Datum
outbox_saga_rewind(PG_FUNCTION_ARGS)
{
	char	   *name;
	TimestampTz since;
	int64		n;

	SqlRequireArg(fcinfo, 0, "destination");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	since = since_arg(fcinfo, 1);

	SpiConnect();
	n = queue_replay(name, since, 0);
	SpiFinish();
	PG_RETURN_INT64(n);
}

/*
 * outbox.subscribe_since(destination text, since timestamptz, topic text
 *		DEFAULT '*', event_types text[] DEFAULT NULL) RETURNS bigint:
 *		outbox.subscribe(destination, topic, event_types), then the replay
 *		of that subscription.
 */
Datum
outbox_saga_subscribe_since(PG_FUNCTION_ARGS)
{
	LOCAL_FCINFO(sub, 3);
	TimestampTz since;
	Datum		id;
	int			i;

	SqlRequireArg(fcinfo, 0, "destination");
	since = since_arg(fcinfo, 1);

	/* subscribe(destination, topic, event_types): arguments 0, 2, 3 */
	InitFunctionCallInfoData(*sub, NULL, 3, InvalidOid, NULL, NULL);
	for (i = 0; i < 3; i++)
	{
		int			from = i == 0 ? 0 : i + 1;

		sub->args[i].value = PG_GETARG_DATUM(from);
		sub->args[i].isnull = PG_ARGISNULL(from);
	}
	id = outbox_saga_subscribe(sub);

	SpiConnect();
	(void) queue_replay(text_to_cstring(PG_GETARG_TEXT_PP(0)), since, DatumGetInt64(id));
	SpiFinish();
	PG_RETURN_DATUM(id);
}

/*-------------------------------------------------------------------------
 *
 * skip.c
 *		Moving a destination's position on without delivering, so that one
 *		paused or lagging destination never holds the log (G7, G12).
 *
 * Housekeeping (worker/housekeeping.c) retires the log a part at a time:
 * a partition, or the oldest generation of one, once every destination's
 * position is past it.  When destinations hold such a part it calls
 * SkipDestination for each of them with a target tick that is past the
 * part:
 *	- without to_dead (a destination that is paused, or has held the part
 *	  for a while): the destination is moved to the target only if it is
 *	  owed nothing up to it - its subscriptions match no event there (a
 *	  paused destination of topic A never holds a log of topic B);
 *	- with to_dead (the part has waited longer than
 *	  outbox_saga.max_destination_lag): every event it is still owed up to
 *	  the target is copied into its own dead letters with last_error
 *	  SKIP_LAG_ERROR (attempts 0), a LOG line names it and the count, its
 *	  last_error says so, and it is moved to the target.
 * "Owed" is exactly what a batch would take (delivery.c: the
 * subscriptions, '*' limited to the topics the owner may read, event types,
 * since, and the events of its current window already behind its
 * position); outbox.replay_dead() delivers the dead letters again.
 *
 * THE POSITION
 *	The events owed up to tick T are those of the window (tick_from, T]
 *	that a batch has not taken yet.  A window in progress ((tick_from,
 *	tick_to], done up to last_id) is finished too: the target is at least
 *	tick_to.  The new position is (T, no window), done_id at least the
 *	highest id passed.
 *
 * INVARIANTS
 *	- It runs in the caller's transaction (housekeeping's): the dead
 *	  letters, the new position and the retirement they allow commit
 *	  together or not at all - a crash loses nothing and copies nothing
 *	  twice.
 *	- It holds the destination's row lock (FOR UPDATE, never waited for:
 *	  a batch that has it wins, and the destination is tried again next
 *	  round) and never moves a destination a worker has claimed in shared
 *	  memory: a network batch delivers between two transactions with no
 *	  lock held, and must not find its events dead-lettered meanwhile.
 *	  The claim is checked after the lock is taken, so a worker that claims
 *	  it later cannot start a batch before this transaction ends.
 *	- The log is read with a snapshot taken after the ticks were read, so
 *	  every event a tick's snapshot sees is seen (nothing is skipped
 *	  unseen).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "base/shmem.h"
#include "base/spi_util.h"
#include "dispatch/delivery.h"
#include "dispatch/skip.h"
#include "events/eventlog.h"
#include "events/logscan.h"

enum
{
	SK_LOCK,
	SK_SNAPSHOT,
	SK_DEAD,
	SK_MOVE,
	SK_COUNT
};

static SpiStatement skip_stmts[SK_COUNT] = {
	/* outbox.destination: the row, unless a batch has it */
	[SK_LOCK] = {"the lock of a destination to move it on",
		"SELECT tick_from, tick_to, last_id, owner, name, last_txid"
		"  FROM outbox.destination WHERE id = $1 FOR UPDATE SKIP LOCKED",
	{INT4OID, 0}},
	/* outbox.tick: the snapshot of one end of the window */
	[SK_SNAPSHOT] = {"the read of a tick's snapshot",
		"SELECT snapshot FROM outbox.tick WHERE id = $1",
	{INT8OID, 0}},
	/* outbox.dead_letter: an owed event, skipped */
	[SK_DEAD] = {"the insert of a skipped event into the dead letters",
		"INSERT INTO outbox.dead_letter (destination_id, id, event_id, topic,"
		"       aggregate_id, event_type, payload, headers, created_at,"
		"       deliver_after, txid, attempts, last_error, committed_at)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12,"
		"         outbox.committed_at($11))"
		" ON CONFLICT (destination_id, id) DO NOTHING",
		{INT4OID, INT8OID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, XID8OID, TEXTOID, 0}},
	/* outbox.destination: the new position */
	[SK_MOVE] = {"the move of a destination's position",
		"UPDATE outbox.destination"
		"   SET tick_from = $2, tick_to = NULL, last_id = 0, last_txid = NULL,"
		"       done_id = GREATEST(done_id, $3),"
		"       last_error = COALESCE($4, last_error),"
		"       last_error_at = CASE WHEN $4 IS NOT NULL THEN pg_catalog.now()"
		"                            ELSE last_error_at END"
		" WHERE id = $1",
	{INT4OID, INT8OID, INT8OID, TEXTOID, 0}},
};

/* What skip_visit needs while the window is scanned. */
typedef struct SkipScan
{
	int32		dest_id;
	DeliveryFilter *filter;
	bool		has_window;		/* a window in progress ... */
	Datum		window_to_snap; /* ... ends at this snapshot ... */
	int64		last_id;		/* ... and is done up to here (with */
	uint64		last_txid;		/* last_txid, in commit order) */
	bool		to_dead;
	Datum		error;			/* text: last_error of the dead letters */
	MemoryContext cxt;			/* reset after each event */
	int64		max_id;			/* highest id seen */
	int64		owed;			/* owed events seen */
	int64		dead;			/* of them, new dead letters */
} SkipScan;

/*
 * claimed
 *		Whether a dispatcher of this database has claimed the destination.
 */
static bool
claimed(int32 dest_id)
{
	DispatcherSlot *slot = ShmemFindSlot(MyDatabaseId);
	int			w;

	if (slot == NULL)
		return false;
	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (ShmemClaimOf(slot, w) == dest_id)
			return true;
	return false;
}

/*
 * tick_snapshot
 *		The snapshot of tick 'id' (a pg_snapshot datum, copied), or 0 if
 *		the tick is gone.
 */
static Datum
tick_snapshot(int64 id)
{
	Datum		value = Int64GetDatum(id);
	bool		isnull;
	Datum		snap;

	if (SpiRun(&skip_stmts[SK_SNAPSHOT], &value, NULL, SPI_OK_SELECT) != 1)
		return (Datum) 0;
	snap = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return PointerGetDatum(PG_DETOAST_DATUM_COPY(snap));
}

/*
 * skip_visit
 *		LogWindowScan's callback: count (and with to_dead, dead-letter) an
 *		owed event; without to_dead the first owed event ends the scan.
 */
static bool
skip_visit(Datum *values, bool *nulls, void *arg)
{
	SkipScan   *s = arg;
	int64		id = DatumGetInt64(values[EV_ID]);
	MemoryContext old;
	Datum		params[12];
	char		pnulls[12];
	int			c;

	if (id > s->max_id)
		s->max_id = id;
	if (s->has_window &&
		DeliveryWindowDone(s->window_to_snap, s->last_id, s->last_txid, values))
		return true;
	old = MemoryContextSwitchTo(s->cxt);
	if (!DeliveryFilterMatch(s->filter, values))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(s->cxt);
		return true;
	}
	s->owed++;
	if (!s->to_dead)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(s->cxt);
		return false;
	}

	params[0] = Int32GetDatum(s->dest_id);
	pnulls[0] = ' ';
	for (c = 0; c < EV_NATTS; c++)
	{
		params[c + 1] = values[c];
		pnulls[c + 1] = nulls[c] ? 'n' : ' ';
	}
	params[11] = s->error;
	pnulls[11] = ' ';
	s->dead += SpiRun(&skip_stmts[SK_DEAD], params, pnulls, SPI_OK_INSERT);
	MemoryContextSwitchTo(old);
	MemoryContextReset(s->cxt);
	return true;
}

/*
 * SkipDestination
 *		Move destination 'dest_id' on to tick 'target' (or to the end of its
 *		window in progress, if that is later); see the file header.  With
 *		to_dead, the events it is owed up to there go to its dead letters
 *		(*moved: how many); without, it is moved only if it is owed none.
 *		Returns SKIP_MOVED if its position is now at or past the target.
 */
SkipOutcome
SkipDestination(int32 dest_id, int64 target, bool to_dead, int64 *moved)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int64		tick_from;
	int64		tick_to = 0;
	Oid			owner;
	char	   *name;
	LogWindow	w;
	SkipScan	s;

	*moved = 0;
	values[0] = Int32GetDatum(dest_id);
	if (SpiRun(&skip_stmts[SK_LOCK], values, NULL, SPI_OK_SELECT) != 1)
		return SKIP_BUSY;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	tick_from = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	values[1] = SPI_getbinval(tup, desc, 2, &isnull);
	if (!isnull)
		tick_to = DatumGetInt64(values[1]);
	memset(&s, 0, sizeof(s));
	s.last_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	name = SPI_getvalue(tup, desc, 5);
	s.last_txid = DatumGetUInt64(SPI_getbinval(tup, desc, 6, &isnull));
	if (isnull)
		s.last_txid = 0;
	if (claimed(dest_id))
		return SKIP_BUSY;

	target = Max(target, tick_to);
	if (tick_from >= target)
		return SKIP_MOVED;
	w.from_snap = tick_snapshot(tick_from);
	w.to_snap = tick_snapshot(target);
	if (w.from_snap == (Datum) 0 || w.to_snap == (Datum) 0)
		return SKIP_BUSY;		/* a lost position: the next batch resets it */
	if (tick_to != 0)
	{
		s.has_window = true;
		s.window_to_snap = tick_snapshot(tick_to);
		if (s.window_to_snap == (Datum) 0)
			return SKIP_BUSY;
	}

	s.dest_id = dest_id;
	s.filter = DeliveryLoadFilter(dest_id, owner);
	s.to_dead = to_dead;
	s.error = CStringGetTextDatum(SKIP_LAG_ERROR);
	s.cxt = AllocSetContextCreate(CurrentMemoryContext, "outbox_saga skip",
								  ALLOCSET_DEFAULT_SIZES);

	/* A snapshot taken after the ticks were read sees all they see. */
	PushActiveSnapshot(GetLatestSnapshot());
	(void) LogWindowScan(&w, skip_visit, &s);
	PopActiveSnapshot();
	MemoryContextDelete(s.cxt);

	if (!to_dead && s.owed > 0)
		return SKIP_OWED;

	values[0] = Int32GetDatum(dest_id);
	values[1] = Int64GetDatum(target);
	values[2] = Int64GetDatum(s.max_id);
	values[3] = s.error;
	nulls[3] = s.owed > 0 ? ' ' : 'n';
	SpiRun(&skip_stmts[SK_MOVE], values, nulls, SPI_OK_UPDATE);
	*moved = s.dead;
	if (s.owed > 0)
		ereport(LOG,
				(errmsg("outbox_saga: destination \"%s\" lagged past outbox_saga.max_destination_lag: %lld event(s) it was owed moved to its dead letters",
						name, (long long) s.dead),
				 errdetail("They were in a part of the log being retired; the destination goes on with the events after it."),
				 errhint("outbox.replay_dead('%s') delivers them again; replaying before outbox.resume_destination() keeps each aggregate's order.",
						 name)));
	return SKIP_MOVED;
}

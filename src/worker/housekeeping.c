/*-------------------------------------------------------------------------
 *
 * housekeeping.c
 *		Keeping the dispatcher's storage bounded (G7).
 *
 * One round, run by the dispatcher every few seconds: steps 0 - 4 are
 * HousekeepingRun, in a short transaction of its own, then step 5 is
 * HousekeepingRetire, once per partition, each in a transaction of its own
 * (dispatcher.c opens them, SPI connected):
 *	0. Take a tick if there is no destination (the dispatcher only ticks for
 *	   destinations).
 *	1. Close generations: for every generation the id sequence has passed,
 *	   record the xmax of the current snapshot (see eventlog.c, RETIRING).
 *	2. Delete ticks no destination needs any more (only under a ShareLock
 *	   on outbox.tick taken without waiting, which a create_destination in
 *	   progress holds off: its starting tick must survive until it is
 *	   visible).
 *	3. Purge expired idempotency keys (outbox.purge_idempotency_keys).
 *	4. Delete retained events older than their topic's keep, at most
 *	   10000 a round (outbox.history_prune, events/history.c; only once
 *	   the extension's SQL has outbox.history, i.e. is 0.2.0's).
 *	5. Retire partitions, last, one per transaction: a partition whose
 *	   newest writing transaction is below the xmin of the oldest tick any
 *	   destination still needs (so every event in it is consumed), and whose
 *	   newest event is older than outbox_saga.retention, is emptied with
 *	   TRUNCATE - the generation being written included.  The ACCESS
 *	   EXCLUSIVE lock is only tried (lock_timeout 50 ms, in a
 *	   subtransaction), so a reader or writer holding the partition only
 *	   delays retirement, and the condition is checked again under the
 *	   lock, where no row can be added.  A partition that also holds a
 *	   later, unconsumed generation (a destination lagged by more than three
 *	   generations) loses its old generation by DELETE once that generation
 *	   is closed and consumed.  The generation records say which closed
 *	   generations a partition may hold (the log has no index on id): a
 *	   record goes when its partition's TRUNCATE or its DELETE removed its
 *	   events for good (every writer of it ended below the consumed xmin),
 *	   and the newest record stays, for step 1 to go on from.
 *	   Destinations never hold a part of the log (a partition, or the
 *	   oldest generation of one) for long: when the part is past retention
 *	   and a tick past it exists, but destinations' positions hold it,
 *	   release_pins moves them on to that tick (dispatch/skip.c, in this
 *	   transaction): one that is owed nothing up to there (its topics are
 *	   not in it) as soon as it is paused or the tick is SETTLED_SECONDS
 *	   old; any of them, its owed events going to its dead letters, once
 *	   the tick is outbox_saga.max_destination_lag old.  The usual round,
 *	   where no destination is paused or behind by SETTLED_SECONDS, looks
 *	   at nothing but the destinations' ticks (HK_ANY_BEHIND).
 *	   It comes last, and each partition commits on its own, because every
 *	   reader and writer of the log waits for a partition's lock from the
 *	   TRUNCATE to the commit, and the commit is the slow part: it removes
 *	   the old files (about 60 ms for 240 MB on ext4, most of it the
 *	   truncation of the first segment), so nothing else - not another
 *	   partition's files either - may stand between the two.  Ticks that
 *	   retirement frees are deleted by the next round's step 2.
 *
 * INVARIANTS
 *	- HousekeepingRun and each HousekeepingRetire run in the caller's
 *	  transaction; a crash or an error rolls that transaction back, and
 *	  the next round does it again (every step only removes what is
 *	  provably consumed, so it is idempotent, and no step relies on another
 *	  having committed: a partition's retirement reads the destinations'
 *	  positions and the ticks itself).
 *	- Locks: the ShareLock on outbox.tick (never waited for) until
 *	  HousekeepingRun's caller commits; the ACCESS EXCLUSIVE lock of a
 *	  partition being emptied (tried, never waited for more than 50 ms)
 *	  until HousekeepingRetire's caller commits.
 *	- Every statement is a kept SpiStatement (spi_util.c); the statements
 *	  naming one partition are built once per partition, the partition
 *	  number being the only part of their text that varies.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

#include "worker/housekeeping.h"
#include "dispatch/skip.h"
#include "events/eventlog.h"
#include "events/tick.h"
#include "base/guc.h"
#include "base/spi_util.h"

/*
 * A destination that is not paused and has not consumed a tick this many
 * seconds old is behind: if it is owed nothing up to there, it is moved on.
 */
#define SETTLED_SECONDS		10

/*
 * The xmin of the oldest tick a destination still starts from (the latest
 * tick when there is no destination): every transaction below it has
 * ended, and its events, if it committed, are consumed by every
 * destination.
 */
#define CONSUMED_XMIN_SQL \
	"(SELECT COALESCE(" \
	"   (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(t.snapshot))" \
	"      FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from)," \
	"   (SELECT pg_catalog.pg_snapshot_xmin(snapshot) FROM outbox.tick" \
	"     ORDER BY id DESC LIMIT 1)))"

/* Statements of a round that name no partition. */
enum
{
	HK_TICK_LOCK,
	HK_TICK,
	HK_LAST_VALUE,
	HK_CLOSE_GENERATIONS,
	HK_LOCK_TIMEOUT,
	HK_DELETE_TICKS,
	HK_PURGE_KEYS,
	HK_ANY_BEHIND,
	HK_TARGET_TICK,
	HK_PINS,
	HK_PRUNE_HISTORY,
	HK_COUNT
};

static SpiStatement round_stmts[HK_COUNT] = {
	/*
	 * no table: ticks are taken one at a time (eventlog.h); only when this
	 * round may tick, so that the rest of the round never holds up the
	 * dispatchers' ticks
	 */
	[HK_TICK_LOCK] = {"waiting for the tick lock",
		OUTBOX_TICK_LOCK_SQL " WHERE NOT EXISTS (SELECT 1 FROM outbox.destination)",
	{0}},
	/* outbox.tick, outbox.destination: a tick when nobody else takes one */
	[HK_TICK] = {"the housekeeping tick",
		"INSERT INTO outbox.tick (id, snapshot)"
		" SELECT t.id + 1, pg_catalog.pg_current_snapshot()"
		"   FROM (SELECT id, snapshot FROM outbox.tick ORDER BY id DESC LIMIT 1) t"
		"  WHERE NOT EXISTS (SELECT 1 FROM outbox.destination)"
		"    AND t.snapshot::text <> pg_catalog.pg_current_snapshot()::text",
	{0}},
	/* outbox.events_id_seq: the id drawn last */
	[HK_LAST_VALUE] = {"reading the event id sequence",
		"SELECT last_value FROM outbox.events_id_seq",
	{0}},
	/*
	 * outbox.generation: close generations up to $1 - 1, after the last one
	 * closed (the newest record is never deleted), or, with no record yet,
	 * the last OUTBOX_PARTITIONS (a new log, or one that 0.1.0 left without
	 * records: it held none of an older generation)
	 */
	[HK_CLOSE_GENERATIONS] = {"closing generations",
		"INSERT INTO outbox.generation (gen, closed_xmax)"
		" SELECT g, pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())"
		"   FROM pg_catalog.generate_series("
		"        COALESCE((SELECT max(gen) + 1 FROM outbox.generation),"
		"                 GREATEST($1 - " CppAsString2(OUTBOX_PARTITIONS) ", 0)),"
		"        $1 - 1) g",
	{INT8OID, 0}},
	/* before a partition's lock is tried (subtransaction-local) */
	[HK_LOCK_TIMEOUT] = {"setting the retirement lock timeout",
		"SET LOCAL lock_timeout = '50ms'",
	{0}},
	/* outbox.tick, outbox.destination: ticks nobody starts from */
	[HK_DELETE_TICKS] = {"deleting old ticks",
		"DELETE FROM outbox.tick"
		" WHERE id < COALESCE((SELECT min(tick_from) FROM outbox.destination),"
		"                     (SELECT max(id) FROM outbox.tick))",
	{0}},
	/* outbox.idempotency_key, through its SQL function */
	[HK_PURGE_KEYS] = {"purging idempotency keys",
		"SELECT outbox.purge_idempotency_keys(10000)",
	{0}},
	/* outbox.history, outbox.retained_topic (issue 16, history.sql) */
	[HK_PRUNE_HISTORY] = {"pruning the retained history",
		"SELECT outbox.history_prune(10000)",
	{0}},
	/* outbox.destination, outbox.tick: anyone paused or $1 seconds behind */
	[HK_ANY_BEHIND] = {"looking for destinations that are behind",
		"SELECT 1 FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from"
		" WHERE d.paused OR t.created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $1)"
		" LIMIT 1",
	{INT4OID, 0}},

	/*
	 * outbox.tick: the first tick whose xmin is at least $1 (an xid8; every
	 * transaction below it has ended), whether it is older than the lag
	 * limit ($2 seconds, 0: none) and than SETTLED_SECONDS ($3)
	 */
	[HK_TARGET_TICK] = {"looking for the tick past a part of the log",
		"SELECT id,"
		"       $2 > 0 AND created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $2),"
		"       created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $3)"
		"  FROM outbox.tick WHERE pg_catalog.pg_snapshot_xmin(snapshot) >= $1"
		" ORDER BY id LIMIT 1",
	{XID8OID, INT4OID, INT4OID, 0}},
	/* outbox.destination, outbox.tick: the positions below xmin $1 */
	[HK_PINS] = {"looking for the destinations that hold a part of the log",
		"SELECT d.id, d.paused"
		"  FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from"
		" WHERE pg_catalog.pg_snapshot_xmin(t.snapshot) < $1"
		" ORDER BY d.id",
	{XID8OID, 0}},
};

/*
 * Statements naming one partition, outbox.events_p<N>: "%1$d" in the text
 * stands for N (built once per partition by partition_stmts).  The log has
 * no index on id (since 0.2.0): a partition's newest event is its newest
 * transaction's last, by the (txid, id) index, and a generation's events
 * are found by txid below its closing xmax (xid before id: every writer of
 * generation g has an xid below closed_xmax(g)) and their ids.
 */
#define NEWEST_EVENT_SQL \
	"(SELECT created_at FROM outbox.events_p%1$d ORDER BY txid DESC, id DESC LIMIT 1)"

/*
 * Whether the newest event of generation g (g.closed_xmax) and those below
 * it in the partition, ids below $2, is past retention ($3 seconds): NULL
 * when there is none
 */
#define GEN_PAST_RETENTION_SQL \
	"((SELECT created_at FROM outbox.events_p%1$d" \
	"   WHERE txid < g.closed_xmax AND id < $2" \
	"   ORDER BY txid DESC, id DESC LIMIT 1)" \
	" <= pg_catalog.now() - pg_catalog.make_interval(secs => $3))"

enum
{
	HP_ALL_CONSUMED,
	HP_LOCK,
	HP_TRUNCATE,
	HP_FORGET_GENS,
	HP_OLDEST_GEN,
	HP_GEN_CONSUMED,
	HP_DELETE_GEN,
	HP_MAX_TXID,
	HP_GEN_XMAX,
	HP_COUNT
};

static const SpiStatement partition_templates[HP_COUNT] = {
	/*
	 * Whether every event of the partition is consumed and past retention
	 * ($1 seconds): the newest transaction that wrote into it is below the
	 * consumed xmin, and its newest event is old enough.  Without any
	 * destination the log is the only record of what happened, so then the
	 * partition of the generation being written ($2: not this one) stays
	 * (at most 65,536 events of it, readable in outbox.events; its closed
	 * generations go by DELETE).
	 */
	[HP_ALL_CONSUMED] = {"checking a partition is consumed",
		"SELECT 1 WHERE (SELECT pg_catalog.max(txid) FROM outbox.events_p%1$d) < "
		CONSUMED_XMIN_SQL
		"  AND " NEWEST_EVENT_SQL
		"      <= pg_catalog.now() - pg_catalog.make_interval(secs => $1)"
		"  AND ($2 OR EXISTS (SELECT 1 FROM outbox.destination))",
	{INT4OID, BOOLOID, 0}},
	[HP_LOCK] = {"locking a partition",
		"LOCK TABLE outbox.events_p%1$d IN ACCESS EXCLUSIVE MODE",
	{0}},
	[HP_TRUNCATE] = {"emptying a partition",
		"TRUNCATE outbox.events_p%1$d",
	{0}},

	/*
	 * outbox.generation: the records of the partition's generations up to
	 * $1 whose events are gone from it for good - every writer of one ended
	 * below the consumed xmin, so none can still add a row - after a
	 * TRUNCATE or a DELETE removed them.  The newest record stays (where
	 * HK_CLOSE_GENERATIONS goes on from).
	 */
	[HP_FORGET_GENS] = {"deleting retired generation records",
		"DELETE FROM outbox.generation"
		" WHERE gen %% " CppAsString2(OUTBOX_PARTITIONS) " = %1$d AND gen <= $1"
		"   AND closed_xmax <= " CONSUMED_XMIN_SQL
		"   AND gen < (SELECT max(gen) FROM outbox.generation)",
	{INT8OID, 0}},
	/*
	 * outbox.generation: the oldest closed generation of the partition, but
	 * the newest closed one (the partition of the one after it is written:
	 * this one holds nothing newer, and goes by TRUNCATE)
	 */
	[HP_OLDEST_GEN] = {"reading a partition's oldest generation",
		"SELECT gen FROM outbox.generation"
		" WHERE gen %% " CppAsString2(OUTBOX_PARTITIONS) " = %1$d"
		"   AND gen < (SELECT max(gen) FROM outbox.generation)"
		" ORDER BY gen LIMIT 1",
	{0}},

	/*
	 * Whether generation $1, whose events are the partition's below id $2,
	 * is closed and consumed - its closing xmax at or below the consumed
	 * xmin - and past retention ($3 seconds) or without events.
	 */
	[HP_GEN_CONSUMED] = {"checking a generation is consumed",
		"SELECT 1 FROM outbox.generation g"
		" WHERE g.gen = $1"
		"   AND g.closed_xmax <= " CONSUMED_XMIN_SQL
		"   AND COALESCE(" GEN_PAST_RETENTION_SQL ", true)",
	{INT8OID, INT8OID, INT4OID, 0}},
	/* the events of generation $1 and the ones before it: ids below $2 */
	[HP_DELETE_GEN] = {"deleting a retired generation",
		"DELETE FROM outbox.events_p%1$d"
		" WHERE txid < (SELECT closed_xmax FROM outbox.generation WHERE gen = $1)"
		"   AND id < $2",
	{INT8OID, INT8OID, 0}},

	/*
	 * The newest transaction that wrote into the partition, if its newest
	 * event is past retention ($1 seconds)
	 */
	[HP_MAX_TXID] = {"reading a partition's newest transaction",
		"SELECT pg_catalog.max(txid) FROM outbox.events_p%1$d"
		" HAVING " NEWEST_EVENT_SQL
		"        <= pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
	{INT4OID, 0}},

	/*
	 * The closing xmax of generation $1, whose events are the partition's
	 * below id $2, if it is closed, has events and is past retention ($3
	 * seconds)
	 */
	[HP_GEN_XMAX] = {"reading a generation's closing xmax",
		"SELECT g.closed_xmax FROM outbox.generation g"
		" WHERE g.gen = $1"
		"   AND " GEN_PAST_RETENTION_SQL,
	{INT8OID, INT8OID, INT4OID, 0}},
};

static SpiStatement partition_stmt_table[OUTBOX_PARTITIONS][HP_COUNT];

/*
 * partition_stmts
 *		The statements of partition 'part', their texts built on first use
 *		(in TopMemoryContext, like their kept plans).
 */
static SpiStatement *
partition_stmts(int part)
{
	SpiStatement *stmts = partition_stmt_table[part];
	int			i;

	if (stmts[0].sql != NULL)
		return stmts;
	for (i = 0; i < HP_COUNT; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		stmts[i] = partition_templates[i];
		stmts[i].sql = psprintf(partition_templates[i].sql, part);
		MemoryContextSwitchTo(old);
	}
	return stmts;
}

/*
 * current_generation
 *		The generation of the id the sequence handed out last.
 */
static int64
current_generation(void)
{
	bool		isnull;
	Datum		d;

	if (SpiRun(&round_stmts[HK_LAST_VALUE], NULL, NULL, SPI_OK_SELECT) != 1)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d) >> OUTBOX_GENERATION_BITS;
}

/*
 * partition_all_consumed
 *		Whether every event of partition 'part' is consumed and past
 *		retention (HP_ALL_CONSUMED).
 */
static bool
partition_all_consumed(int part)
{
	Datum		values[2];

	values[0] = Int32GetDatum(OutboxRetention);
	values[1] = BoolGetDatum((current_generation() & (OUTBOX_PARTITIONS - 1)) != part);
	return SpiRun(&partition_stmts(part)[HP_ALL_CONSUMED], values, NULL,
				  SPI_OK_SELECT) == 1;
}

/*
 * forget_generations
 *		Delete the records of partition 'part''s generations up to 'gen'
 *		whose events are gone for good (HP_FORGET_GENS), after a TRUNCATE or
 *		DELETE of them in this transaction.
 */
static void
forget_generations(int part, int64 gen)
{
	Datum		value = Int64GetDatum(gen);

	SpiRun(&partition_stmts(part)[HP_FORGET_GENS], &value, NULL, SPI_OK_DELETE);
}

typedef struct TruncateAttempt
{
	int			part;
	bool		done;
} TruncateAttempt;

/* The body of truncate_partition, run in its subtransaction. */
static void
try_truncate(void *arg)
{
	TruncateAttempt *t = arg;
	SpiStatement *stmts = partition_stmts(t->part);

	SpiRun(&round_stmts[HK_LOCK_TIMEOUT], NULL, NULL, SPI_OK_UTILITY);
	SpiRun(&stmts[HP_LOCK], NULL, NULL, SPI_OK_UTILITY);
	if (partition_all_consumed(t->part))
	{
		SpiRun(&stmts[HP_TRUNCATE], NULL, NULL, SPI_OK_UTILITY);
		forget_generations(t->part, PG_INT64_MAX);
		t->done = true;
	}
}

/*
 * truncate_partition
 *		TRUNCATE events_p<part> if it can be locked at once and, under the
 *		lock, every event in it is still consumed (HP_ALL_CONSUMED).  Under
 *		ACCESS EXCLUSIVE no writer can add a row, and a writer that drew an
 *		id but has not inserted yet inserts after the TRUNCATE into the empty
 *		partition.  Returns whether it truncated.
 */
static bool
truncate_partition(int part)
{
	TruncateAttempt t = {part, false};
	ErrorData  *edata;

	if (SpiTryInSubtransaction(try_truncate, &t, &edata))
		return t.done;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ereport(WARNING,
				(errmsg("outbox_saga: could not retire outbox.events_p%d: %s",
						part, edata->message)));
	FreeErrorData(edata);
	return false;
}

/*
 * Whether a destination is paused or behind (HK_ANY_BEHIND): read on first
 * need in a retirement's transaction (most partitions are empty or consumed
 * and never ask), -1 until then.
 */
static int	any_behind_known = -1;

static bool
any_behind(void)
{
	Datum		behind_secs;

	if (any_behind_known < 0)
	{
		behind_secs = Int32GetDatum(OutboxMaxDestinationLag > 0 ?
									Min(OutboxMaxDestinationLag, SETTLED_SECONDS) :
									SETTLED_SECONDS);
		any_behind_known = SpiRun(&round_stmts[HK_ANY_BEHIND], &behind_secs, NULL,
								  SPI_OK_SELECT) > 0;
	}
	return any_behind_known;
}

/* One call of SkipDestination, run in a subtransaction by skip_one. */
typedef struct SkipAttempt
{
	int32		dest_id;
	int64		target;
	bool		to_dead;
	SkipOutcome outcome;
} SkipAttempt;

static void
try_skip(void *arg)
{
	SkipAttempt *a = arg;
	int64		moved;

	SpiRun(&round_stmts[HK_LOCK_TIMEOUT], NULL, NULL, SPI_OK_UTILITY);
	a->outcome = SkipDestination(a->dest_id, a->target, a->to_dead, &moved);
}

/*
 * skip_one
 *		SkipDestination in a subtransaction whose locks are only tried
 *		(lock_timeout, like a partition's): somebody holding
 *		outbox.destination (LOCK TABLE, a DDL) only delays the move, and
 *		never holds up the worker that runs housekeeping - worker 0, which
 *		also delivers and drives sagas.  Any other error is a WARNING.
 */
static SkipOutcome
skip_one(int32 dest_id, int64 target, bool to_dead)
{
	SkipAttempt a = {dest_id, target, to_dead, SKIP_BUSY};
	ErrorData  *edata;

	if (SpiTryInSubtransaction(try_skip, &a, &edata))
		return a.outcome;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ereport(WARNING,
				(errmsg("outbox_saga: could not move destination %d on: %s",
						dest_id, edata->message)));
	FreeErrorData(edata);
	return SKIP_BUSY;
}

/*
 * release_pins
 *		Move on the destinations whose positions hold a part of the log that
 *		is consumed once every position's xmin is at least 'bound' (an xid8
 *		datum), as the file header says (step 5).  Returns whether none
 *		holds it any more.
 */
static bool
release_pins(Datum bound)
{
	Datum		values[3];
	bool		isnull;
	int64		target;
	bool		lagging;
	bool		settled;
	int			n;
	int			i;
	int32	   *ids;
	bool	   *paused;
	bool		released = true;

	if (!any_behind())
		return false;
	values[0] = bound;
	values[1] = Int32GetDatum(OutboxMaxDestinationLag);
	values[2] = Int32GetDatum(SETTLED_SECONDS);
	if (SpiRun(&round_stmts[HK_TARGET_TICK], values, NULL, SPI_OK_SELECT) != 1)
		return false;			/* no tick past it yet */
	target = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	lagging = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 2, &isnull));
	settled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 3, &isnull));

	n = (int) SpiRun(&round_stmts[HK_PINS], values, NULL, SPI_OK_SELECT);
	ids = palloc(sizeof(int32) * (n + 1));
	paused = palloc(sizeof(bool) * (n + 1));
	for (i = 0; i < n; i++)
	{
		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
		paused[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
											   SPI_tuptable->tupdesc, 2, &isnull));
		/* A destination catching up by itself: leave them all be. */
		if (!lagging && !settled && !paused[i])
			return false;
	}

	for (i = 0; i < n; i++)
	{
		if (skip_one(ids[i], target, lagging) != SKIP_MOVED)
			released = false;
	}
	return released;
}

/*
 * release_partition
 *		release_pins for all of partition 'part', if it is past retention.
 */
static bool
release_partition(int part)
{
	Datum		value = Int32GetDatum(OutboxRetention);
	bool		isnull;
	Datum		max_txid;

	if (!any_behind() ||
		SpiRun(&partition_stmts(part)[HP_MAX_TXID], &value, NULL, SPI_OK_SELECT) != 1)
		return false;
	max_txid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	/* consumed once every position's xmin is above it */
	return release_pins(FullTransactionIdGetDatum(
		FullTransactionIdFromU64(U64FromFullTransactionId(DatumGetFullTransactionId(max_txid)) + 1)));
}

/*
 * release_generation
 *		release_pins for generation 'gen', the events of partition 'part'
 *		below id 'bound', if it is closed and past retention.
 */
static bool
release_generation(int part, int64 gen, int64 bound)
{
	Datum		values[3];
	bool		isnull;
	Datum		closed_xmax;

	if (!any_behind())
		return false;
	values[0] = Int64GetDatum(gen);
	values[1] = Int64GetDatum(bound);
	values[2] = Int32GetDatum(OutboxRetention);
	if (SpiRun(&partition_stmts(part)[HP_GEN_XMAX], values, NULL, SPI_OK_SELECT) != 1)
		return false;
	closed_xmax = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return release_pins(closed_xmax);
}

/*
 * retire_partition
 *		Step 5 of the file header for partition 'part'.
 */
static void
retire_partition(int part)
{
	SpiStatement *stmts = partition_stmts(part);
	bool		isnull;
	int64		gen,
				bound;
	Datum		values[3];

	/* Every event in the partition consumed: empty it. */
	if (partition_all_consumed(part) && truncate_partition(part))
		return;
	/* Or once the destinations that hold it are moved on. */
	if (release_partition(part) && partition_all_consumed(part) &&
		truncate_partition(part))
		return;

	/*
	 * Else its oldest closed generation (the partition also holds a later
	 * generation: a destination lags by more than three generations, or
	 * this is the partition being written and there is no destination),
	 * once it is consumed, and past retention; or its record alone, if
	 * its events are gone (retired with the partition, or none committed).
	 */
	if (SpiRun(&stmts[HP_OLDEST_GEN], NULL, NULL, SPI_OK_SELECT) != 1)
		return;
	gen = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									  &isnull));
	bound = (gen + 1) << OUTBOX_GENERATION_BITS;
	values[0] = Int64GetDatum(gen);
	values[1] = Int64GetDatum(bound);
	values[2] = Int32GetDatum(OutboxRetention);
	if (SpiRun(&stmts[HP_GEN_CONSUMED], values, NULL, SPI_OK_SELECT) == 1 ||
		(release_generation(part, gen, bound) &&
		 SpiRun(&stmts[HP_GEN_CONSUMED], values, NULL, SPI_OK_SELECT) == 1))
	{
		SpiRun(&stmts[HP_DELETE_GEN], values, NULL, SPI_OK_DELETE);
		forget_generations(part, gen);
	}
}

/*
 * HousekeepingRun
 *		One round, in the caller's transaction (SPI connected); see the file
 *		header.
 */
void
HousekeepingRun(void)
{
	Datum		current_gen;

	/*
	 * 0. Without destinations the dispatcher takes no ticks; retirement
	 * measures "consumed" against the latest tick, so take one here.
	 */
	SpiRun(&round_stmts[HK_TICK_LOCK], NULL, NULL, SPI_OK_SELECT);
	SpiRun(&round_stmts[HK_TICK], NULL, NULL, SPI_OK_INSERT);

	/* 1. Close the generations the sequence has passed. */
	current_gen = Int64GetDatum(current_generation());
	SpiRun(&round_stmts[HK_CLOSE_GENERATIONS], &current_gen, NULL, SPI_OK_INSERT);

	/*
	 * 2. Ticks and generation records nobody needs.  Ticks only under a
	 * ShareLock on outbox.tick, taken without waiting: create_destination
	 * holds RowExclusiveLock from reading the latest tick until it commits
	 * (destination.c), so a destination this statement cannot see yet
	 * never loses its starting tick.  Skipped this time if one is running.
	 */
	if (ConditionalLockRelationOid(TickRelid(), ShareLock))
		SpiRun(&round_stmts[HK_DELETE_TICKS], NULL, NULL, SPI_OK_DELETE);

	/* 3. Expired idempotency keys. */
	SpiRun(&round_stmts[HK_PURGE_KEYS], NULL, NULL, SPI_OK_SELECT);

	/* 4. Retained events past their keep (none before the 0.2.0 SQL). */
	if (OidIsValid(get_relname_relid("history", get_namespace_oid("outbox", false))))
		SpiRun(&round_stmts[HK_PRUNE_HISTORY], NULL, NULL, SPI_OK_SELECT);
}

/*
 * HousekeepingRetire
 *		Step 5 of the file header for partition 'part' (0 ..
 *		OUTBOX_PARTITIONS - 1), in the caller's transaction: the caller
 *		commits right after, since readers and writers of the log wait for
 *		a truncated partition's lock until then.
 */
void
HousekeepingRetire(int part)
{
	Assert(part >= 0 && part < OUTBOX_PARTITIONS);
	/* The extension (and its schema) dropped after the round's first step. */
	if (!OidIsValid(get_namespace_oid("outbox", true)))
		return;
	any_behind_known = -1;
	retire_partition(part);
}

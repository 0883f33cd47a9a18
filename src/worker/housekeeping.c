/*-------------------------------------------------------------------------
 *
 * housekeeping.c
 *		Keeping the dispatcher's storage bounded (G7).
 *
 * Runs in the dispatcher every few seconds, in one short transaction:
 *	0. Take a tick if there is no destination (the dispatcher only ticks for
 *	   destinations).
 *	1. Close generations: for every generation the id sequence has passed,
 *	   record the xmax of the current snapshot (see eventlog.c, RETIRING).
 *	2. Retire partitions: a partition whose newest writing transaction is
 *	   below the xmin of the oldest tick any destination still needs (so
 *	   every event in it is consumed), and whose newest event is older than
 *	   outbox_saga.retention, is emptied with TRUNCATE - the generation being
 *	   written included.  The ACCESS EXCLUSIVE lock is only tried
 *	   (lock_timeout 50 ms, in a subtransaction), so a reader or writer
 *	   holding the partition only delays retirement, and the condition is
 *	   checked again under the lock, where no row can be added.  A partition
 *	   that also holds a later, unconsumed generation (a destination lagged
 *	   by more than three generations) loses its old generation by DELETE
 *	   once that generation is closed and consumed.
 *	3. Delete ticks no destination needs any more (only under a ShareLock
 *	   on outbox.tick taken without waiting, which a create_destination in
 *	   progress holds off: its starting tick must survive until it is
 *	   visible), and generation records below the oldest event.
 *	4. Purge expired idempotency keys (outbox.purge_idempotency_keys).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker/housekeeping.h"
#include "events/eventlog.h"
#include "base/guc.h"
#include "base/spi_util.h"

/*
 * run_sql
 *		Run one statement without parameters; check its result code.
 */
static void
run_sql(const char *sql, int expect)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "housekeeping statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * single_int8
 *		The bigint result of a one-row, one-column query; *isnull if NULL
 *		or no row.
 */
static int64
single_int8(const char *sql, bool *isnull)
{
	Datum		d;

	run_sql(sql, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		*isnull = true;
		return 0;
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	return *isnull ? 0 : DatumGetInt64(d);
}

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

/*
 * Whether every event of partition %d is consumed and past retention
 * (%d seconds): the newest transaction that wrote into it is below the
 * consumed xmin, and its newest event is old enough.  Without any
 * destination the log is the only record of what happened, so then only
 * partitions holding closed generations go (the generation being written,
 * at most 65,536 events, stays readable in outbox.events).
 */
#define ALL_CONSUMED_SQL \
	"SELECT 1 WHERE (SELECT pg_catalog.max(txid) FROM outbox.events_p%d) < " \
	CONSUMED_XMIN_SQL \
	"  AND (SELECT created_at FROM outbox.events_p%d ORDER BY id DESC LIMIT 1)" \
	"      <= pg_catalog.now() - pg_catalog.make_interval(secs => %d)" \
	"  AND (EXISTS (SELECT 1 FROM outbox.destination)" \
	"       OR (SELECT pg_catalog.max(id) FROM outbox.events_p%d) >> 16" \
	"          < (SELECT last_value >> 16 FROM outbox.events_id_seq))"

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
	char	   *sql;

	run_sql("SET LOCAL lock_timeout = '50ms'", SPI_OK_UTILITY);
	sql = psprintf("LOCK TABLE outbox.events_p%d IN ACCESS EXCLUSIVE MODE", t->part);
	run_sql(sql, SPI_OK_UTILITY);
	sql = psprintf(ALL_CONSUMED_SQL, t->part, t->part, OutboxRetention, t->part);
	run_sql(sql, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		sql = psprintf("TRUNCATE outbox.events_p%d", t->part);
		run_sql(sql, SPI_OK_UTILITY);
		t->done = true;
	}
}

/*
 * truncate_partition
 *		TRUNCATE events_p<part> if it can be locked at once and, under the
 *		lock, every event in it is still consumed (ALL_CONSUMED_SQL).  Under
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
 * retire_partitions
 *		Step 2 of the file header.
 */
static void
retire_partitions(void)
{
	bool		isnull;
	int			part;
	char	   *sql;

	for (part = 0; part < OUTBOX_PARTITIONS; part++)
	{
		int64		min_id,
					max_id,
					lo_gen,
					hi_gen;

		sql = psprintf("SELECT min(id) FROM outbox.events_p%d", part);
		min_id = single_int8(sql, &isnull);
		if (isnull)
			continue;
		sql = psprintf("SELECT max(id) FROM outbox.events_p%d", part);
		max_id = single_int8(sql, &isnull);
		lo_gen = min_id >> OUTBOX_GENERATION_BITS;
		hi_gen = max_id >> OUTBOX_GENERATION_BITS;

		/* Every event in the partition consumed: empty it. */
		sql = psprintf(ALL_CONSUMED_SQL, part, part, OutboxRetention, part);
		run_sql(sql, SPI_OK_SELECT);
		if (SPI_processed == 1 && truncate_partition(part))
			continue;
		if (lo_gen == hi_gen)
			continue;

		/*
		 * A partition that also holds a later generation (a destination lags
		 * by more than three generations): remove the oldest generation once
		 * it is closed and consumed - its closing xmax at or below the
		 * consumed xmin - and past retention.
		 */
#define CONSUMED_SQL \
		"SELECT 1 FROM outbox.generation g" \
		" WHERE g.gen = " INT64_FORMAT \
		"   AND g.closed_xmax <= " CONSUMED_XMIN_SQL \
		"   AND (SELECT created_at FROM outbox.events_p%d" \
		"         WHERE id < " INT64_FORMAT " ORDER BY id DESC LIMIT 1)" \
		"       <= pg_catalog.now() - pg_catalog.make_interval(secs => %d)"

		sql = psprintf(CONSUMED_SQL, lo_gen, part,
				 (lo_gen + 1) << OUTBOX_GENERATION_BITS, OutboxRetention);
		run_sql(sql, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			sql = psprintf(
					 "DELETE FROM outbox.events_p%d WHERE id < " INT64_FORMAT,
					 part, (lo_gen + 1) << OUTBOX_GENERATION_BITS);
			run_sql(sql, SPI_OK_DELETE);
		}
	}
}

/*
 * HousekeepingRun
 *		One round, in its own transaction; see the file header.
 */
/*
 * tick_relid
 *		The OID of outbox.tick (looked up each time: the extension may have
 *		been dropped and created again since the last round).
 */
static Oid
tick_relid(void)
{
	Oid			relid = get_relname_relid("tick", get_namespace_oid("outbox", false));

	if (!OidIsValid(relid))
		elog(ERROR, "outbox_saga: table outbox.tick is missing");
	return relid;
}

void
HousekeepingRun(void)
{
	bool		isnull;
	int64		current_gen;
	char	   *sql;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/*
	 * 0. Without destinations the dispatcher takes no ticks; retirement
	 * measures "consumed" against the latest tick, so take one here.
	 */
	run_sql("INSERT INTO outbox.tick (id, snapshot)"
			" SELECT t.id + 1, pg_catalog.pg_current_snapshot()"
			"   FROM (SELECT id, snapshot FROM outbox.tick ORDER BY id DESC LIMIT 1) t"
			"  WHERE NOT EXISTS (SELECT 1 FROM outbox.destination)"
			"    AND t.snapshot::text <> pg_catalog.pg_current_snapshot()::text",
			SPI_OK_INSERT);

	/* 1. Close the generations the sequence has passed. */
	current_gen = single_int8("SELECT last_value FROM outbox.events_id_seq", &isnull)
		>> OUTBOX_GENERATION_BITS;
	sql = psprintf(
			 "INSERT INTO outbox.generation (gen, closed_xmax)"
			 " SELECT g, pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())"
			 "   FROM pg_catalog.generate_series("
			 "        COALESCE((SELECT max(gen) + 1 FROM outbox.generation),"
			 "                 (SELECT min(id) >> %d FROM outbox.events), " INT64_FORMAT "),"
			 "        " INT64_FORMAT " - 1) g",
			 OUTBOX_GENERATION_BITS, current_gen, current_gen);
	run_sql(sql, SPI_OK_INSERT);

	/* 2. Retire what every destination has consumed. */
	retire_partitions();

	/*
	 * 3. Ticks and generation records nobody needs.  Ticks only under a
	 * ShareLock on outbox.tick, taken without waiting: create_destination
	 * holds RowExclusiveLock from reading the latest tick until it commits
	 * (destination.c), so a destination this statement cannot see yet
	 * never loses its starting tick.  Skipped this time if one is running.
	 */
	if (ConditionalLockRelationOid(tick_relid(), ShareLock))
		run_sql("DELETE FROM outbox.tick"
				" WHERE id < COALESCE((SELECT min(tick_from) FROM outbox.destination),"
				"                     (SELECT max(id) FROM outbox.tick))",
				SPI_OK_DELETE);
	sql = psprintf(
			 "DELETE FROM outbox.generation"
			 " WHERE gen < COALESCE((SELECT min(id) >> %d FROM outbox.events), " INT64_FORMAT ")",
			 OUTBOX_GENERATION_BITS, current_gen);
	run_sql(sql, SPI_OK_DELETE);

	/* 4. Expired idempotency keys. */
	run_sql("SELECT outbox.purge_idempotency_keys(10000)", SPI_OK_SELECT);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

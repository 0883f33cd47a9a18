/*-------------------------------------------------------------------------
 *
 * destination.c
 *		Destinations and subscriptions: their SQL API.
 *
 * The SQL functions outbox.create_destination, alter_destination,
 * drop_destination, pause_destination, resume_destination, subscribe and
 * unsubscribe write the tables outbox.destination and outbox.subscription
 * (src/sql/dispatch.sql) in the caller's transaction; nothing is visible to
 * the dispatcher before that transaction commits, and an error changes
 * nothing (G11).  A crash before the commit leaves no trace of the call.
 *
 * PRIVILEGES
 *	The functions are SECURITY INVOKER: who may call them at all is governed
 *	by EXECUTE, which the extension revokes from PUBLIC.  The state tables
 *	are not readable by ordinary roles, so every SPI statement runs as the
 *	bootstrap superuser with search_path = pg_catalog, pg_temp
 *	(RunAsExtensionBegin/End around each statement, see base/run_as.c), so
 *	that no object of the caller's schemas (an operator, a type, a function)
 *	can be picked up by those statements.  The statements are the kept
 *	SpiStatements of the table 'statements', with parameters; no value is
 *	ever interpolated.  Every permission check happens as the real caller,
 *	outside the switched section: a destination, and its subscriptions, may
 *	be changed only by a role that has the privileges of its owner
 *	(has_privs_of_role, so superusers too).  On error, transaction or
 *	subtransaction abort restores the identity and the search_path.
 *
 *	A destination's handler later runs as its owner (G10): the owner is the
 *	role that created it (GetUserId(), i.e. current_user), and the kind's
 *	validate() checks the config against that role, as the caller.  It
 *	runs with the search_path recorded in the row: the creator's current
 *	one (as SET search_path FROM CURRENT takes it), or the config key
 *	"search_path" of create_destination / alter_destination, which is
 *	taken out of the config and stored in its own column; pg_temp always
 *	comes last unless it is named (base/run_as.c).
 *
 *	Topics (G14): subscribe() requires the owner's read privilege on the
 *	topic (events/topic_acl.c), whoever calls it; delivery checks it again
 *	for every event (delivery.c), so a revoke holds for pending events.
 *
 * SECRETS
 *	A config may hold secrets (webhook secrets, passwords, tokens).  They
 *	are write-only: no error message, detail or log line of this file
 *	contains a config value (a validation error names the key only), and
 *	errors raised while a config is checked hide the statement text from the
 *	server log (errhidestmt), since it usually carries the config literal.
 *	The view outbox.destinations shows configs through outbox.mask_config()
 *	(mask.c).
 *
 * LOCKS
 *	Each function locks the destination row it changes (FOR NO KEY UPDATE,
 *	FOR UPDATE to drop it; unsubscribe locks the subscription row FOR
 *	UPDATE) before checking and writing, so concurrent changes of one
 *	destination serialize and a destination cannot be dropped under a
 *	subscribe().  The locks are held until the caller's transaction ends.
 *	create_destination also takes RowExclusiveLock on outbox.tick until the
 *	end of the transaction and reads the latest tick with the latest
 *	snapshot (latest_tick_locked): housekeeping prunes ticks only when it
 *	gets a ShareLock at once, so the new destination's starting tick
 *	survives until the destination is committed (isolation spec
 *	destination_start_tick).  Duplicates are refused by unique indexes,
 *	whatever the isolation level: create_destination by the one on name,
 *	subscribe by subscription_unique_idx (destination, topic, event types;
 *	event types are stored sorted and without duplicates, so that equal sets
 *	are equal arrays), both through INSERT ... ON CONFLICT DO NOTHING.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"
#include "events/wakeup.h"
#include "sink/dest_config.h"
#include "sink/sink.h"

PG_FUNCTION_INFO_V1(outbox_saga_create_destination);
PG_FUNCTION_INFO_V1(outbox_saga_alter_destination);
PG_FUNCTION_INFO_V1(outbox_saga_drop_destination);
PG_FUNCTION_INFO_V1(outbox_saga_pause_destination);
PG_FUNCTION_INFO_V1(outbox_saga_resume_destination);
PG_FUNCTION_INFO_V1(outbox_saga_subscribe);
PG_FUNCTION_INFO_V1(outbox_saga_unsubscribe);

/* Longest destination name, in bytes (that of an SQL identifier). */
#define DEST_MAX_NAME_BYTES		(NAMEDATALEN - 1)

/* A destination row, as read under lock. */
typedef struct DestinationRow
{
	int32		id;
	char	   *kind;
	Jsonb	   *config;
	Oid			owner;
	bool		paused;
} DestinationRow;


/*
 * Every statement of this file, kept (see base/spi_util.c).  Each runs as the
 * bootstrap superuser with search_path pinned (RunAsExtensionRun), in the
 * caller's transaction.
 */
enum
{
	Q_LOOKUP_FOR_UPDATE,
	Q_LOOKUP_FOR_NO_KEY_UPDATE,
	Q_INSERT_DESTINATION,
	Q_INSERT_DESTINATION_010,
	Q_SET_CONFIG,
	Q_SET_CONFIG_010,
	Q_DELETE_DESTINATION,
	Q_SET_PAUSED,
	Q_INSERT_SUBSCRIPTION,
	Q_FIND_SUBSCRIPTION,
	Q_LOCK_SUBSCRIPTION,
	Q_DELETE_SUBSCRIPTION,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.destination: the row drop_destination deletes, locked */
	[Q_LOOKUP_FOR_UPDATE] = {
		"the lookup of a destination to drop",
		"SELECT id, kind, config, owner, paused FROM outbox.destination"
		" WHERE name = $1 FOR UPDATE",
		{TEXTOID, 0}
	},
	/* outbox.destination: the row the other functions change, locked */
	[Q_LOOKUP_FOR_NO_KEY_UPDATE] = {
		"the lookup of a destination",
		"SELECT id, kind, config, owner, paused FROM outbox.destination"
		" WHERE name = $1 FOR NO KEY UPDATE",
		{TEXTOID, 0}
	},
	/* outbox.destination: a new row; a taken name is no conflict error */
	[Q_INSERT_DESTINATION] = {
		"the insert of a destination",
		"INSERT INTO outbox.destination (name, kind, config, owner, tick_from, search_path)"
		" VALUES ($1, $2, $3, $4, $5, $6)"
		" ON CONFLICT (name) DO NOTHING",
		{TEXTOID, TEXTOID, JSONBOID, OIDOID, INT8OID, TEXTOID, 0}
	},
	/*
	 * outbox.destination of a database whose SQL is still 0.1.0's (no
	 * search_path column until ALTER EXTENSION UPDATE, which gives the row
	 * 0.1.0's pg_catalog, pg_temp): Q_INSERT_DESTINATION without the path
	 */
	[Q_INSERT_DESTINATION_010] = {
		"the insert of a destination",
		"INSERT INTO outbox.destination (name, kind, config, owner, tick_from)"
		" VALUES ($1, $2, $3, $4, $5)"
		" ON CONFLICT (name) DO NOTHING",
		{TEXTOID, TEXTOID, JSONBOID, OIDOID, INT8OID, 0}
	},
	/* outbox.destination: alter_destination's merged config (and path) */
	[Q_SET_CONFIG] = {
		"the update of a destination's config",
		"UPDATE outbox.destination SET config = $2,"
		" search_path = COALESCE($3, search_path) WHERE id = $1",
		{INT4OID, JSONBOID, TEXTOID, 0}
	},
	/* outbox.destination of a 0.1.0 database: Q_SET_CONFIG without the path */
	[Q_SET_CONFIG_010] = {
		"the update of a destination's config",
		"UPDATE outbox.destination SET config = $2 WHERE id = $1",
		{INT4OID, JSONBOID, 0}
	},
	/*
	 * outbox.destination, and by ON DELETE CASCADE subscription,
	 * delivery_retry and dead_letter
	 */
	[Q_DELETE_DESTINATION] = {
		"the delete of a destination",
		"DELETE FROM outbox.destination WHERE id = $1",
		{INT4OID, 0}
	},

	/*
	 * outbox.destination: the paused flag; resuming also ends a backoff
	 * after failures (the operator asks for a new attempt now)
	 */
	[Q_SET_PAUSED] = {
		"the update of a destination's paused flag",
		"UPDATE outbox.destination SET paused = $2,"
		" consecutive_failures = CASE WHEN $2 THEN consecutive_failures ELSE 0 END,"
		" retry_at = CASE WHEN $2 THEN retry_at END"
		" WHERE id = $1",
		{INT4OID, BOOLOID, 0}
	},
	/* outbox.subscription: subscription_unique_idx makes duplicates conflict */
	[Q_INSERT_SUBSCRIPTION] = {
		"the insert of a subscription",
		"INSERT INTO outbox.subscription (destination_id, topic, event_types, since)"
		" VALUES ($1, $2, $3, pg_current_snapshot())"
		" ON CONFLICT DO NOTHING RETURNING id",
		{INT4OID, TEXTOID, TEXTARRAYOID, 0}
	},
	/* outbox.subscription: the one a duplicate conflicted with */
	[Q_FIND_SUBSCRIPTION] = {
		"the lookup of an equal subscription",
		"SELECT id FROM outbox.subscription"
		" WHERE destination_id = $1 AND topic = $2"
		" AND event_types IS NOT DISTINCT FROM $3",
		{INT4OID, TEXTOID, TEXTARRAYOID, 0}
	},
	/* outbox.subscription (locked) joined to outbox.destination */
	[Q_LOCK_SUBSCRIPTION] = {
		"the lookup of a subscription",
		"SELECT d.name, d.owner FROM outbox.subscription s"
		" JOIN outbox.destination d ON d.id = s.destination_id"
		" WHERE s.id = $1 FOR UPDATE OF s",
		{INT8OID, 0}
	},
	/* outbox.subscription */
	[Q_DELETE_SUBSCRIPTION] = {
		"the delete of a subscription",
		"DELETE FROM outbox.subscription WHERE id = $1",
		{INT8OID, 0}
	},
};

/*
 * The read of the latest tick (latest_tick_locked): with the latest
 * snapshot, which SpiRun cannot take, so it is prepared and run here.
 */
static SpiStatement latest_tick = {
	"the read of the latest tick",
	"SELECT max(id) FROM outbox.tick",
	{0}
};


/* ------------------------------------------------------------------------
 * Running SPI statements with the privileges of the extension
 * ------------------------------------------------------------------------
 */

/*
 * latest_tick_locked
 *		The id of the latest tick, where a new destination starts.  Takes
 *		RowExclusiveLock on outbox.tick first (kept until the end of the
 *		transaction) and reads with the latest snapshot, not the
 *		transaction's: housekeeping prunes old ticks only under a ShareLock
 *		it takes conditionally, so the tick returned here cannot be pruned
 *		before this destination is committed and visible to the pruning
 *		(otherwise the destination would start from a missing tick and skip
 *		events committed after it was created).  Connected to SPI.
 *
 *		SpiRunLatest, not SpiRun, which executes with the transaction's
 *		snapshot (in REPEATABLE READ, one taken before the lock).
 */
static int64
latest_tick_locked(void)
{
	Oid			tick = get_relname_relid("tick", get_namespace_oid("outbox", false));
	SavedIdentity saved;
	bool		isnull;
	Datum		id;
	uint64		n;

	if (!OidIsValid(tick))
		elog(ERROR, "outbox_saga: table outbox.tick is missing");
	LockRelationOid(tick, RowExclusiveLock);

	RunAsExtensionBegin(&saved);
	n = SpiRunLatest(&latest_tick, NULL, NULL, SPI_OK_SELECT);
	RunAsExtensionEnd(&saved);
	if (n != 1)
		elog(ERROR, "outbox_saga: reading the latest tick returned no row");
	id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "outbox_saga: outbox.tick is empty");
	return DatumGetInt64(id);
}

/*
 * lookup_destination
 *		Read and lock the destination named 'name' into *row; error out if
 *		there is none.  'for_delete' takes FOR UPDATE instead of FOR NO KEY
 *		UPDATE.  Connected to SPI; the row lives in the SPI context.
 */
static void
lookup_destination(const char *name, bool for_delete, DestinationRow *row)
{
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	if (RunAsExtensionRun(&statements[for_delete ? Q_LOOKUP_FOR_UPDATE :
									  Q_LOOKUP_FOR_NO_KEY_UPDATE],
						  values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("destination \"%s\" does not exist", name)));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	row->kind = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	row->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	row->paused = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
}

/*
 * check_owner
 *		Only a role with the privileges of the destination's owner (or a
 *		superuser) may change it or its subscriptions.  Checked as the
 *		caller.
 */
static void
check_owner(const char *name, Oid owner)
{
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of destination \"%s\"", name),
				 errdetail("Only the role that created a destination, a member of it, or a superuser may change the destination or its subscriptions.")));
}


/*
 * strip_null_keys
 *		'config' without its top-level keys whose value is JSON null.
 */
static Jsonb *
strip_null_keys(Jsonb *config)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbValue	key;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;

	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			case WJB_KEY:
				key = v;
				break;
			case WJB_VALUE:
				if (v.type != jbvNull)
				{
					(void) pushJsonbValue(&state, WJB_KEY, &key);
					res = pushJsonbValue(&state, WJB_VALUE, &v);
				}
				break;
			case WJB_END_OBJECT:
				res = pushJsonbValue(&state, tok, NULL);
				break;
			default:
				elog(ERROR, "outbox_saga: unexpected token %d in a config object", tok);
		}
	}
	return JsonbValueToJsonb(res);
}

/*
 * rows_have_search_path
 *		Whether outbox.destination has its search_path column: not in a
 *		database whose extension SQL is still 0.1.0's, where this library's
 *		API goes on working until ALTER EXTENSION UPDATE.
 */
static bool
rows_have_search_path(void)
{
	return SpiColumnExists("outbox", "destination", "search_path");
}

/*
 * take_search_path
 *		The config key "search_path" of create_destination /
 *		alter_destination: removed from *config (it is stored in a column of
 *		its own, not in the config), checked (22023) and returned with
 *		pg_temp last; NULL if the key is absent.  JSON null is refused: a
 *		handler always has a search_path.
 */
static char *
take_search_path(Jsonb **config)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&(*config)->root, "search_path",
									 strlen("search_path"), &v) == NULL)
		return NULL;
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"search_path\" must be a string"),
				 errhint("For example '{\"search_path\": \"app, public\"}'; a handler always has a search_path, so it cannot be removed.")));
	*config = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete,
												 JsonbPGetDatum(*config),
												 CStringGetTextDatum("search_path")));
	return RunAsCheckSearchPath(pnstrdup(v.val.string.val, v.val.string.len),
								"configuration key \"search_path\"");
}

/*
 * validate_config
 *		Check a whole config for 'sink', to run as 'owner': an object, known
 *		keys, common keys, then the kind's own check.  Runs as the caller.
 */
static void
validate_config(const OutboxSink *sink, Jsonb *config, Oid owner)
{
	DestinationConfig parsed;

	DestConfigCheckObject(config);
	DestConfigCheckKeys(config, sink->keys);
	DestConfigParseCommon(config, &parsed);
	sink->validate(config, owner);
}

/* ------------------------------------------------------------------------
 * Destinations
 * ------------------------------------------------------------------------
 */

/*
 * lock_own_destination
 *		For the functions whose first argument is the name of a destination
 *		to change: connect to SPI, lock the destination's row (FOR UPDATE
 *		when it is to be deleted, else FOR NO KEY UPDATE) into *row, and
 *		check that the caller has its owner's privileges.  Returns the name.
 */
static char *
lock_own_destination(FunctionCallInfo fcinfo, bool for_delete,
					 DestinationRow *row)
{
	char	   *name;

	SqlRequireArg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SpiConnect();
	lookup_destination(name, for_delete, row);
	check_owner(name, row->owner);
	return name;
}

/*
 * outbox.create_destination(name text, kind text, config jsonb) RETURNS void
 *
 * The new destination belongs to the calling role and starts at the newest
 * tick; it receives nothing until it has subscriptions.  Top-level keys set
 * to JSON null are dropped (they mean "the default").  Its handler's
 * search_path is the config key "search_path", or else the caller's
 * current search_path.
 */
static Datum
create_destination(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *kind;
	const OutboxSink *sink;
	Jsonb	   *config;
	Oid			owner = GetUserId();
	char	   *search_path;
	Datum		values[6];

	SqlRequireArg(fcinfo, 0, "name");
	SqlRequireArg(fcinfo, 1, "kind");
	SqlRequireArg(fcinfo, 2, "config");

	name = SqlNameText(PG_GETARG_TEXT_PP(0), "destination name",
					   DEST_MAX_NAME_BYTES,
					   "A destination name may not contain control characters.");
	kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	sink = SinkLookup(kind, false);	/* errors, listing the known kinds */

	config = PG_GETARG_JSONB_P(2);
	DestConfigCheckObject(config);
	search_path = take_search_path(&config);
	if (search_path == NULL)
		search_path = RunAsCurrentSearchPath();
	config = strip_null_keys(config);
	validate_config(sink, config, owner);

	SpiConnect();
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(sink->kind);
	values[2] = JsonbPGetDatum(config);
	values[3] = ObjectIdGetDatum(owner);
	values[4] = Int64GetDatum(latest_tick_locked());
	values[5] = CStringGetTextDatum(search_path);
	if (RunAsExtensionRun(&statements[rows_have_search_path() ? Q_INSERT_DESTINATION :
									  Q_INSERT_DESTINATION_010],
						  values, NULL, SPI_OK_INSERT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("destination \"%s\" already exists", name),
				 errhint("Change it with outbox.alter_destination(), or drop it first.")));
	SpiFinish();
	WakeupNoteDestinationsChanged();

	PG_RETURN_VOID();
}

Datum
outbox_saga_create_destination(PG_FUNCTION_ARGS)
{
	return SqlCallHidingStatement(create_destination, fcinfo);
}

/*
 * outbox.alter_destination(name text, config jsonb) RETURNS void
 *
 * Merges 'config' into the stored config (top-level keys: a new value
 * replaces the old one, JSON null removes the key) and checks the result as
 * a whole, as create_destination would for the destination's owner.  The
 * key "search_path" replaces the handler's search_path instead (it is not
 * kept in the config).
 */
static Datum
alter_destination(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *changes;
	Jsonb	   *merged;
	DestinationRow row;
	char	   *search_path;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	SqlRequireArg(fcinfo, 0, "name");
	SqlRequireArg(fcinfo, 1, "config");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	changes = PG_GETARG_JSONB_P(1);

	DestConfigCheckObject(changes);
	search_path = take_search_path(&changes);

	SpiConnect();
	lookup_destination(name, false, &row);
	check_owner(name, row.owner);

	merged = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												JsonbPGetDatum(row.config),
												JsonbPGetDatum(changes)));
	merged = strip_null_keys(merged);
	validate_config(SinkLookup(row.kind, false), merged, row.owner);

	values[0] = Int32GetDatum(row.id);
	values[1] = JsonbPGetDatum(merged);
	values[2] = search_path ? CStringGetTextDatum(search_path) : (Datum) 0;
	nulls[2] = search_path ? ' ' : 'n';
	if (RunAsExtensionRun(&statements[rows_have_search_path() ? Q_SET_CONFIG : Q_SET_CONFIG_010],
						  values, nulls, SPI_OK_UPDATE) != 1)
		elog(ERROR, "outbox_saga: destination row %d vanished under lock", row.id);
	SpiFinish();
	WakeupNoteDestinationsChanged();

	PG_RETURN_VOID();
}

Datum
outbox_saga_alter_destination(PG_FUNCTION_ARGS)
{
	return SqlCallHidingStatement(alter_destination, fcinfo);
}

/*
 * outbox.drop_destination(name text) RETURNS void
 *
 * Removes the destination with its subscriptions, retry queue and dead
 * letters (ON DELETE CASCADE).
 */
Datum
outbox_saga_drop_destination(PG_FUNCTION_ARGS)
{
	DestinationRow row;
	Datum		values[1];

	(void) lock_own_destination(fcinfo, true, &row);

	values[0] = Int32GetDatum(row.id);
	if (RunAsExtensionRun(&statements[Q_DELETE_DESTINATION], values, NULL, SPI_OK_DELETE) != 1)
		elog(ERROR, "outbox_saga: destination row %d vanished under lock", row.id);
	SpiFinish();
	WakeupNoteDestinationsChanged();

	PG_RETURN_VOID();
}

/*
 * set_paused
 *		pause_destination / resume_destination: set the flag, log the change
 *		once; a destination already in that state gets a NOTICE.
 */
static void
set_paused(FunctionCallInfo fcinfo, bool paused)
{
	char	   *name;
	DestinationRow row;
	Datum		values[2];

	name = lock_own_destination(fcinfo, false, &row);

	if (row.paused == paused && paused)
	{
		ereport(NOTICE,
				(errmsg("destination \"%s\" is already paused", name)));
		SpiFinish();
		return;
	}

	/*
	 * Resuming also ends a backoff after failures: the operator asks for a
	 * new attempt now.
	 */
	values[0] = Int32GetDatum(row.id);
	values[1] = BoolGetDatum(paused);
	if (RunAsExtensionRun(&statements[Q_SET_PAUSED], values, NULL, SPI_OK_UPDATE) != 1)
		elog(ERROR, "outbox_saga: destination row %d vanished under lock", row.id);
	SpiFinish();

	/* Either way the next pass reads the destinations again. */
	WakeupNoteDestinationsChanged();
	if (row.paused == paused)
		return;					/* a running destination: only the backoff
								 * ended */
	ereport(LOG,
			(errmsg("outbox_saga: destination \"%s\" %s", name,
					paused ? "paused" : "resumed"),
			 errhidestmt(true)));
}

/*
 * outbox.pause_destination(name text) RETURNS void
 *
 * The dispatcher stops delivering to the destination; events keep
 * accumulating for it and are delivered after resume_destination().
 */
Datum
outbox_saga_pause_destination(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

/*
 * outbox.resume_destination(name text) RETURNS void
 */
Datum
outbox_saga_resume_destination(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, false);
	PG_RETURN_VOID();
}


/* ------------------------------------------------------------------------
 * Subscriptions
 * ------------------------------------------------------------------------
 */

/*
 * compare_text_datums
 *		qsort comparator: byte order, independent of collations.
 */
static int
compare_text_datums(const void *a, const void *b)
{
	text	   *ta = DatumGetTextPP(*(const Datum *) a);
	text	   *tb = DatumGetTextPP(*(const Datum *) b);
	int			la = VARSIZE_ANY_EXHDR(ta);
	int			lb = VARSIZE_ANY_EXHDR(tb);
	int			cmp = memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), Min(la, lb));

	if (cmp != 0)
		return cmp;
	return (la > lb) - (la < lb);
}

/*
 * normalize_event_types
 *		Check a subscription's event_types (a non-empty one-dimensional array
 *		of valid event types without NULLs) and return it sorted in byte
 *		order without duplicates, so that equal sets compare equal.
 */
static ArrayType *
normalize_event_types(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			kept;
	int			i;

	if (ARR_NDIM(arr) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must not be empty"),
				 errhint("Pass NULL to subscribe to every event type.")));
	if (ARR_NDIM(arr) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("event_types must be a one-dimensional array")));

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event_types must not contain null elements")));
		OutboxCheckEventType("event_types element", DatumGetTextPP(elems[i]));
	}

	qsort(elems, n, sizeof(Datum), compare_text_datums);
	kept = 1;
	for (i = 1; i < n; i++)
	{
		if (compare_text_datums(&elems[kept - 1], &elems[i]) != 0)
			elems[kept++] = elems[i];
	}
	return construct_array(elems, kept, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * check_topic_readable
 *		A destination's owner must have the read privilege on a topic it
 *		subscribes to (topic_acl.c); a topic nobody owns yet becomes the
 *		destination owner's.  '*' is not checked here: it stands for the
 *		topics the owner may read when an event is delivered (delivery.c).
 */
static void
check_topic_readable(Oid owner, text *topic)
{
	if (VARSIZE_ANY_EXHDR(topic) == 1 && *VARDATA_ANY(topic) == '*')
		return;
	TopicAclRequire(owner, topic, TOPIC_READ, NULL);
}

/*
 * outbox.subscribe(destination text, topic text, event_types text[])
 *		RETURNS bigint
 *
 * The destination receives the events of 'topic' ('*': every topic) whose
 * type is in 'event_types' (NULL: every type) and whose transactions commit
 * after this one took its snapshot.  Returns the subscription's id.  The
 * destination's owner needs the read privilege on the topic.
 */
Datum
outbox_saga_subscribe(PG_FUNCTION_ARGS)
{
	char	   *name;
	text	   *topic;
	ArrayType  *event_types = NULL;
	DestinationRow row;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;
	int64		id;

	SqlRequireArg(fcinfo, 0, "destination");
	SqlRequireArg(fcinfo, 1, "topic");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	topic = PG_GETARG_TEXT_PP(1);
	if (!(VARSIZE_ANY_EXHDR(topic) == 1 && *VARDATA_ANY(topic) == '*'))
		OutboxCheckTopic("topic", topic);
	if (!PG_ARGISNULL(2))
		event_types = normalize_event_types(PG_GETARG_ARRAYTYPE_P(2));

	SpiConnect();
	lookup_destination(name, false, &row);
	check_owner(name, row.owner);
	check_topic_readable(row.owner, topic);

	values[0] = Int32GetDatum(row.id);
	values[1] = PointerGetDatum(topic);
	values[2] = PointerGetDatum(event_types);
	if (event_types == NULL)
		nulls[2] = 'n';

	/* subscription_unique_idx makes a duplicate a conflict. */
	if (RunAsExtensionRun(&statements[Q_INSERT_SUBSCRIPTION], values, nulls,
						 SPI_OK_INSERT_RETURNING) == 0)
	{
		(void) RunAsExtensionRun(&statements[Q_FIND_SUBSCRIPTION], values, nulls, SPI_OK_SELECT);
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("destination \"%s\" already has this subscription", name),
				 SPI_processed == 0 ? 0 :
				 errdetail("Subscription %lld has the same topic and event types.",
						   (long long) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
																   SPI_tuptable->tupdesc,
																   1, &isnull)))));
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	SpiFinish();
	WakeupNoteDestinationsChanged();

	PG_RETURN_INT64(id);
}

/*
 * outbox.unsubscribe(subscription_id bigint) RETURNS void
 */
Datum
outbox_saga_unsubscribe(PG_FUNCTION_ARGS)
{
	int64		id;
	Datum		values[1];
	char	   *name;
	Oid			owner;
	bool		isnull;

	SqlRequireArg(fcinfo, 0, "subscription_id");
	id = PG_GETARG_INT64(0);

	SpiConnect();
	values[0] = Int64GetDatum(id);
	if (RunAsExtensionRun(&statements[Q_LOCK_SUBSCRIPTION], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription %lld does not exist", (long long) id)));
	name = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2, &isnull));
	check_owner(name, owner);

	if (RunAsExtensionRun(&statements[Q_DELETE_SUBSCRIPTION], values, NULL, SPI_OK_DELETE) != 1)
		elog(ERROR, "outbox_saga: subscription %lld vanished under lock",
			 (long long) id);
	SpiFinish();
	WakeupNoteDestinationsChanged();

	PG_RETURN_VOID();
}

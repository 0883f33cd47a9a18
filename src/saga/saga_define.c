/*-------------------------------------------------------------------------
 *
 * saga.c
 *		The SQL API of sagas: saga.define, saga.start, saga.complete_step,
 *		saga.register_compensation, saga.cancel and saga.retry.
 *
 * Every function runs in the caller's transaction: nothing it writes is
 * visible to the dispatcher before that transaction commits (a saga starts
 * iff its starting transaction commits, G9), and an error changes nothing
 * (G11).  Functions that make work for the worker wake the dispatcher at
 * commit (WakeupNoteEventWritten).  The state machine they share with the
 * worker is in saga_driver.c.
 *
 * DEFINITIONS
 *	saga.define() validates everything before writing (unknown keys and
 *	call kinds, missing or unusable functions, duplicate step names,
 *	intervals, types and ranges), and stores a normalized copy: every step
 *	with every key (defaults from the options, durations as numbers of
 *	seconds, function names resolved and quoted).  Each define writes a new
 *	version unless the normalized definition equals the latest one; sagas
 *	keep the version they started with.  The owner is the role that first
 *	defined the name (current_user); its steps and compensations run as that
 *	role (G10), so every function is checked for EXECUTE by that role, and
 *	only a role with the owner's privileges (a member, or a superuser) may
 *	redefine it.  Concurrent defines of one name serialize on the row of
 *	saga.definition_name.
 *
 * PRIVILEGES
 *	The functions are SECURITY INVOKER: EXECUTE decides who may call them
 *	(nothing is granted to PUBLIC).  A role allowed to call saga.start may
 *	start any definition; saga.complete_step, saga.cancel and saga.retry
 *	likewise act on any saga.  saga.register_compensation additionally
 *	requires the privileges of the definition's owner, since the call runs
 *	as that owner.  Permission checks run as the caller; then each fixed
 *	statement (parameters only) runs as the bootstrap superuser with
 *	SECURITY_RESTRICTED_OPERATION and search_path = pg_catalog, pg_temp,
 *	because the tables are granted to no one.  No user code runs while the
 *	identity is switched.
 *
 * LOCKS
 *	A function that changes a saga first locks its instance row (FOR NO KEY
 *	UPDATE) and waits for it: two calls on one saga serialize, and the
 *	dispatcher, which only ever takes these locks with SKIP LOCKED, leaves a
 *	saga alone while a caller holds it.  saga.start inserts with ON CONFLICT
 *	DO NOTHING on the unique index (definition, idempotency_key): a
 *	concurrent start with the same key waits for the first transaction and
 *	then returns its saga (or inserts its own if the first rolled back).
 *	Under REPEATABLE READ or SERIALIZABLE such a waiter fails with 40001.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "base/run_as.h"
#include "base/sql_args.h"
#include "sink/dest_config.h"
#include "events/eventlog.h"
#include "saga/saga_internal.h"
#include "sink/http.h"
#include "base/spi_util.h"
#include "base/uuidv7.h"
#include "events/wakeup.h"

PG_FUNCTION_INFO_V1(outbox_saga_saga_define);
PG_FUNCTION_INFO_V1(outbox_saga_saga_start);
PG_FUNCTION_INFO_V1(outbox_saga_saga_complete_step);
PG_FUNCTION_INFO_V1(outbox_saga_saga_register_compensation);
PG_FUNCTION_INFO_V1(outbox_saga_saga_cancel);
PG_FUNCTION_INFO_V1(outbox_saga_saga_retry);

/* Limits. */
#define SAGA_MAX_NAME_BYTES		(NAMEDATALEN - 1)	/* definition and step names */
#define SAGA_MAX_STEPS			1000
#define SAGA_MAX_KEY_BYTES		512 /* idempotency keys */
#define SAGA_MAX_ATTEMPTS		1000000
#define SAGA_MAX_TIMEOUT_MS		(INT64CONST(24) * 24 * 3600 * 1000)
#define SAGA_MAX_BACKOFF_MS		(INT64CONST(365) * 24 * 3600 * 1000)
#define SAGA_MAX_DEADLINE_MS	(INT64CONST(3650) * 24 * 3600 * 1000)

/* Keys of a step and of the options. */
static const char *const step_keys[] = {
	"name", "action", "compensation", "timeout", "max_attempts",
	"backoff_base", "backoff_max", "compensation_max_attempts", NULL
};
static const char *const option_keys[] = {
	"deadline", "timeout", "max_attempts", "backoff_base", "backoff_max",
	"compensation_max_attempts", NULL
};
static const char *const emit_keys[] = {"topic", "event_type", "await", "headers", NULL};
static const char *const http_keys[] = {"url", "method", "headers", NULL};
static const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};

/* The policy of a step: defaults, then the options, then the step's keys. */
typedef struct StepPolicy
{
	int64		timeout_ms;
	int			max_attempts;
	int64		backoff_base_ms;
	int64		backoff_max_ms;
	int			compensation_max_attempts;
} StepPolicy;


/* A saga's row as locked by lock_saga(); strings live in SPI memory. */
typedef struct SagaRow
{
	pg_uuid_t	id;
	char	   *definition;
	char	   *status;
	Oid			owner;
	Jsonb	   *steps;
	Jsonb	   *options;
	bool		deadline_passed;
} SagaRow;


/* ------------------------------------------------------------------------
 * Statements, run with the extension's rights
 * ------------------------------------------------------------------------
 */

enum
{
	Q_HEAD_LOCK,
	Q_HEAD_INSERT,
	Q_HEAD_BUMP,
	Q_LATEST_SAME,
	Q_DEFINITION_INSERT,
	Q_START_LOOKUP,
	Q_START_INSERT,
	Q_START_EXISTING,
	Q_LOCK_SAGA,
	Q_STEP_RUNS,
	Q_ACTIVE_RUN,
	Q_CANCEL,
	Q_RETRY_RUN,
	Q_RETRY_SAGA,
	Q_COMP_EXISTING,
	Q_COMP_INSERT,
	Q_COUNT
};

static const char *const query_text[Q_COUNT] = {
	[Q_HEAD_LOCK] =
	"SELECT owner, latest_version FROM saga.definition_name WHERE name = $1 FOR UPDATE",
	[Q_HEAD_INSERT] =
	"INSERT INTO saga.definition_name (name, owner, latest_version) VALUES ($1, $2, 1)"
	" ON CONFLICT (name) DO NOTHING",
	[Q_HEAD_BUMP] =
	"UPDATE saga.definition_name SET latest_version = latest_version + 1"
	" WHERE name = $1 RETURNING latest_version",
	[Q_LATEST_SAME] =
	"SELECT d.version FROM saga.definition d JOIN saga.definition_name n"
	"    ON n.name = d.name AND n.latest_version = d.version"
	" WHERE d.name = $1 AND d.steps = $2 AND d.options = $3",
	[Q_DEFINITION_INSERT] =
	"INSERT INTO saga.definition (name, version, steps, options, owner)"
	" VALUES ($1, $2, $3, $4, $5)",
	[Q_START_LOOKUP] =
	"SELECT d.id FROM saga.definition_name n JOIN saga.definition d"
	"    ON d.name = n.name AND d.version = n.latest_version"
	" WHERE n.name = $1",
	/* $1 id, $2 definition id, $3 input, $4 key */
	[Q_START_INSERT] =
	"WITH ins AS ("
	"  INSERT INTO saga.instance (id, definition, definition_id, version, status, input,"
	"                             current_step, idempotency_key, deadline)"
	"  SELECT $1, d.name, d.id, d.version, 'running', $3, d.steps->0->>'name', $4,"
	"         pg_catalog.now() + pg_catalog.make_interval(secs => (d.options->>'deadline')::float8)"
	"    FROM saga.definition d WHERE d.id = $2"
	"  ON CONFLICT (definition, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
	"  RETURNING id, definition_id"
	")"
	"INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status,"
	"                           next_attempt_at, max_attempts, timeout, backoff_base, backoff_max)"
	"SELECT ins.id, s->>'name', 'action', 0, pg_catalog.nextval('saga.run_seq'), s->'action',"
	"       'pending', pg_catalog.now(), (s->>'max_attempts')::integer,"
	"       pg_catalog.make_interval(secs => (s->>'timeout')::float8),"
	"       pg_catalog.make_interval(secs => (s->>'backoff_base')::float8),"
	"       pg_catalog.make_interval(secs => (s->>'backoff_max')::float8)"
	"  FROM ins JOIN saga.definition d ON d.id = ins.definition_id,"
	"       LATERAL (SELECT d.steps->0 AS s) first",
	[Q_START_EXISTING] =
	"SELECT i.id FROM saga.instance i JOIN saga.definition d ON d.id = $2"
	" WHERE i.definition = d.name AND i.idempotency_key = $1",
	[Q_LOCK_SAGA] =
	"SELECT i.definition, i.status, d.owner, d.steps, d.options,"
	"       i.status = 'running' AND i.deadline <= pg_catalog.clock_timestamp()"
	"  FROM saga.instance i JOIN saga.definition d ON d.id = i.definition_id"
	" WHERE i.id = $1"
	"   FOR NO KEY UPDATE OF i",
	[Q_STEP_RUNS] =
	"SELECT phase, status, timed_out_at IS NOT NULL,"
	"       status = 'waiting' AND timeout_at <= pg_catalog.clock_timestamp()"
	"  FROM saga.step_run WHERE saga_id = $1 AND step = $2"
	" ORDER BY seq DESC",
	[Q_ACTIVE_RUN] =
	"SELECT step, phase, status FROM saga.step_run"
	" WHERE saga_id = $1 AND status IN ('pending', 'running', 'waiting')",
	[Q_CANCEL] =
	"UPDATE saga.instance"
	"   SET status = 'compensating', cancelled = true,"
	"       error = 'cancelled' || COALESCE(': ' || $2, ''),"
	"       updated_at = pg_catalog.clock_timestamp()"
	" WHERE id = $1",
	[Q_RETRY_RUN] =
	"UPDATE saga.step_run"
	"   SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now(),"
	"       finished_at = NULL"
	" WHERE saga_id = $1 AND phase = 'compensation' AND status = 'failed'"
	" RETURNING step",
	[Q_RETRY_SAGA] =
	"UPDATE saga.instance"
	"   SET status = 'compensating', compensation_error = NULL, current_step = $2,"
	"       updated_at = pg_catalog.clock_timestamp()"
	" WHERE id = $1",
	[Q_COMP_EXISTING] =
	"SELECT call = $3 FROM saga.step_run"
	" WHERE saga_id = $1 AND step = $2 AND phase = 'compensation'",
	/* $1 saga, $2 name, $3 call, $4 options */
	[Q_COMP_INSERT] =
	"INSERT INTO saga.step_run (saga_id, step, phase, seq, call, status,"
	"                           max_attempts, timeout, backoff_base, backoff_max)"
	"VALUES ($1, $2, 'compensation', pg_catalog.nextval('saga.run_seq'), $3, 'recorded',"
	"        ($4->>'compensation_max_attempts')::integer,"
	"        pg_catalog.make_interval(secs => ($4->>'timeout')::float8),"
	"        pg_catalog.make_interval(secs => ($4->>'backoff_base')::float8),"
	"        pg_catalog.make_interval(secs => ($4->>'backoff_max')::float8))",
};

static const Oid query_types[Q_COUNT][5] = {
	[Q_HEAD_LOCK] = {TEXTOID},
	[Q_HEAD_INSERT] = {TEXTOID, OIDOID},
	[Q_HEAD_BUMP] = {TEXTOID},
	[Q_LATEST_SAME] = {TEXTOID, JSONBOID, JSONBOID},
	[Q_DEFINITION_INSERT] = {TEXTOID, INT4OID, JSONBOID, JSONBOID, OIDOID},
	[Q_START_LOOKUP] = {TEXTOID},
	[Q_START_INSERT] = {UUIDOID, INT4OID, JSONBOID, TEXTOID},
	[Q_START_EXISTING] = {TEXTOID, INT4OID},
	[Q_LOCK_SAGA] = {UUIDOID},
	[Q_STEP_RUNS] = {UUIDOID, TEXTOID},
	[Q_ACTIVE_RUN] = {UUIDOID},
	[Q_CANCEL] = {UUIDOID, TEXTOID},
	[Q_RETRY_RUN] = {UUIDOID},
	[Q_RETRY_SAGA] = {UUIDOID, TEXTOID},
	[Q_COMP_EXISTING] = {UUIDOID, TEXTOID, JSONBOID},
	[Q_COMP_INSERT] = {UUIDOID, TEXTOID, JSONBOID, JSONBOID},
};

static SPIPlanPtr plans[Q_COUNT];

/*
 * run
 *		Execute statement 'q' (prepared and kept on first use) with the
 *		extension's rights; check that SPI answered 'expect'.  The result
 *		stays in SPI_tuptable / SPI_processed.
 */
static void
run(int q, Datum *values, const char *nulls, int expect)
{
	SavedIdentity saved;
	int			rc;

	RunAsExtensionBegin(&saved);
	if (plans[q] == NULL)
	{
		int			nargs = 0;
		SPIPlanPtr	plan;

		while (nargs < 5 && query_types[q][nargs] != 0)
			nargs++;
		plan = SPI_prepare(query_text[q], nargs, (Oid *) query_types[q]);
		if (plan == NULL)
			elog(ERROR, "could not prepare saga statement %d: %s",
				 q, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep saga statement %d", q);
		plans[q] = plan;
	}
	rc = SPI_execute_plan(plans[q], values, nulls, false, 0);
	RunAsExtensionEnd(&saved);
	if (rc != expect)
		elog(ERROR, "saga statement %d failed: %s", q, SPI_result_code_string(rc));
}

static void
spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
}

static void
spi_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed: %s", SPI_result_code_string(rc));
}

/*
 * value helpers for the last SPI result
 */
static Datum
result_value(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static char *
result_text(uint64 row, int col)
{
	bool		isnull;
	Datum		d = result_value(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}


/* ------------------------------------------------------------------------
 * Arguments and names
 * ------------------------------------------------------------------------
 */

static char *
uuid_string(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}


/* ------------------------------------------------------------------------
 * JSON reading and building
 * ------------------------------------------------------------------------
 */

/*
 * get_key
 *		The value of 'key' in object container 'c' in *out; false if absent
 *		or JSON null.
 */
static bool
get_key(JsonbContainer *c, const char *key, JsonbValue *out)
{
	if (getKeyJsonValueFromContainer(c, key, strlen(key), out) == NULL)
		return false;
	return out->type != jbvNull;
}

/*
 * is_object
 *		Whether a value is a JSON object (a binary container of that kind).
 */
static bool
is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * check_keys
 *		Error out on a key of object 'c' that is not in 'valid'; 'where'
 *		says whose keys these are ("step \"x\"", "the options").
 */
static void
check_keys(JsonbContainer *c, const char *const *valid, const char *where)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		int			i;

		if (tok != WJB_KEY)
			continue;
		for (i = 0; valid[i] != NULL && !known; i++)
			known = (v.val.string.len == strlen(valid[i]) &&
					 memcmp(v.val.string.val, valid[i], v.val.string.len) == 0);
		if (!known)
		{
			StringInfoData list;

			initStringInfo(&list);
			for (i = 0; valid[i] != NULL; i++)
				appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", valid[i]);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized key \"%.*s\" in %s",
							Min(v.val.string.len, 63), v.val.string.val, where),
					 errhint("Valid keys are: %s.", list.data)));
		}
	}
}

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_string(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	v;

	push_key(st, key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_int(JsonbParseState **st, const char *key, int64 value)
{
	JsonbValue	v;

	push_key(st, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

/* A duration in milliseconds, as a number of seconds. */
static void
push_seconds(JsonbParseState **st, const char *key, int64 ms)
{
	JsonbValue	v;
	char	   *text;

	push_key(st, key);
	if (ms % 1000 == 0)
		text = psprintf(INT64_FORMAT, ms / 1000);
	else
	{
		int			len;

		text = psprintf(INT64_FORMAT ".%03d", ms / 1000, (int) (ms % 1000));
		len = strlen(text);
		while (text[len - 1] == '0')
			text[--len] = '\0';
	}
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_bool(JsonbParseState **st, const char *key, bool value)
{
	JsonbValue	v;

	push_key(st, key);
	v.type = jbvBool;
	v.val.boolean = value;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
push_null(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	push_key(st, key);
	v.type = jbvNull;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

/* A value that is itself a Jsonb (object or array). */
static void
push_jsonb(JsonbParseState **st, const char *key, Jsonb *value)
{
	JsonbValue	v;

	push_key(st, key);
	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	(void) pushJsonbValue(st, WJB_VALUE, &v);
}

static void
begin_object(JsonbParseState **st)
{
	(void) pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
}

static Jsonb *
end_object(JsonbParseState **st)
{
	return JsonbValueToJsonb(pushJsonbValue(st, WJB_END_OBJECT, NULL));
}

/* A JsonbValue holding a container, as a Jsonb of its own. */
static Jsonb *
value_to_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}


/* ------------------------------------------------------------------------
 * Validating definitions
 * ------------------------------------------------------------------------
 */

/*
 * parse_duration
 *		A duration value (an interval string or a number of seconds) between
 *		1 millisecond and 'max_ms' ('max_text' in words), in milliseconds.
 *		Months count as 30 days.
 */
static int64
parse_duration(const char *what, JsonbValue *v, int64 max_ms, const char *max_text)
{
	double		ms;

	if (v->type == jbvString)
	{
		Interval   *iv = SqlParseInterval(what, pnstrdup(v->val.string.val,
															v->val.string.len));

		ms = ((double) iv->time + (double) iv->day * USECS_PER_DAY +
			  (double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY) / 1000.0;
	}
	else if (v->type == jbvNumeric)
		ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												NumericGetDatum(v->val.numeric))) * 1000.0;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an interval string or a number of seconds", what)));
	if (!(ms >= 1.0 && ms <= (double) max_ms))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be between 1 millisecond and %s.", max_text)));
	return (int64) ms;
}

/*
 * parse_count
 *		An integer value between 1 and SAGA_MAX_ATTEMPTS.
 */
static int
parse_count(const char *what, JsonbValue *v)
{
	Datum		num;
	bool		overflow = false;
	int32		result;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an integer", what)));
	num = NumericGetDatum(v->val.numeric);
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num,
										  DirectFunctionCall2(numeric_trunc, num,
															  Int32GetDatum(0)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an integer", what)));
	result = numeric_int4_opt_error(v->val.numeric, &overflow);
	if (overflow || result < 1 || result > SAGA_MAX_ATTEMPTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be an integer between 1 and %d.", SAGA_MAX_ATTEMPTS)));
	return result;
}

/*
 * parse_policy
 *		The policy keys of object 'c' (a step or the options) over 'policy';
 *		'where' names the object in messages.  A backoff_max given here must
 *		not be less than the backoff_base in force; an inherited one is
 *		raised to it.
 */
static void
parse_policy(JsonbContainer *c, const char *where, StepPolicy *policy)
{
	JsonbValue	v;
	bool		has_max = false;

	if (get_key(c, "timeout", &v))
		policy->timeout_ms = parse_duration(psprintf("\"timeout\" of %s", where), &v,
											SAGA_MAX_TIMEOUT_MS, "24 days");
	if (get_key(c, "max_attempts", &v))
		policy->max_attempts = parse_count(psprintf("\"max_attempts\" of %s", where), &v);
	if (get_key(c, "compensation_max_attempts", &v))
		policy->compensation_max_attempts =
			parse_count(psprintf("\"compensation_max_attempts\" of %s", where), &v);
	if (get_key(c, "backoff_base", &v))
		policy->backoff_base_ms = parse_duration(psprintf("\"backoff_base\" of %s", where), &v,
												 SAGA_MAX_BACKOFF_MS, "365 days");
	if (get_key(c, "backoff_max", &v))
	{
		policy->backoff_max_ms = parse_duration(psprintf("\"backoff_max\" of %s", where), &v,
												SAGA_MAX_BACKOFF_MS, "365 days");
		has_max = true;
	}
	if (policy->backoff_max_ms < policy->backoff_base_ms)
	{
		if (has_max)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"backoff_max\" of %s must not be less than \"backoff_base\"", where)));
		policy->backoff_max_ms = policy->backoff_base_ms;
	}
}

/*
 * json_string
 *		The string value of 'key' in 'c', or NULL if absent; 'what' names
 *		the key in the error if it is not a string.
 */
static char *
json_string(JsonbContainer *c, const char *key, const char *what)
{
	JsonbValue	v;

	if (!get_key(c, key, &v))
		return NULL;
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a string", what)));
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * check_string_object
 *		A "headers" value: an object of string values.
 */
static Jsonb *
check_headers(JsonbValue *v, const char *what)
{
	Jsonb	   *headers;
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;

	if (!is_object(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object of strings", what)));
	headers = value_to_jsonb(v);
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
		if (tok == WJB_VALUE && x.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON object of strings", what)));
	return headers;
}

/*
 * check_http_call
 *		Refuse at definition time what the worker would refuse at every run
 *		(SinkHttpCallProblem: the URL's form and literal address, header
 *		names, reserved headers, control characters; the worker always sends
 *		an Idempotency-Key, so that header is reserved too).
 */
static void
check_http_call(const char *url, const char *method, Jsonb *headers, const char *what)
{
	HttpCall	call;
	const char **names = NULL;
	const char **values = NULL;
	char	   *problem;

	memset(&call, 0, sizeof(call));
	call.url = url;
	call.method = method;
	call.idempotency_key = "check";
	if (headers != NULL)
	{
		int			n = JB_ROOT_COUNT(headers);
		JsonbIterator *it = JsonbIteratorInit(&headers->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		names = palloc(sizeof(char *) * (n + 1));
		values = palloc(sizeof(char *) * (n + 1));
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				names[call.nheaders] = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE)
				values[call.nheaders++] = pnstrdup(v.val.string.val, v.val.string.len);
		}
	}
	call.header_names = names;
	call.header_values = values;
	problem = SinkHttpCallProblem(&call);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be sent: %s", what, problem)));
}

/*
 * validate_function_call
 *		{"function": "schema.name"}: a function (jsonb) RETURNS jsonb that
 *		'owner' may execute.  Returns its quoted, qualified name.
 */
static char *
validate_function_call(JsonbValue *v, const char *where, Oid owner)
{
	char	   *name;
	List	   *names;
	Oid			argtype = JSONBOID;
	Oid			fn;
	HeapTuple	tup;
	Form_pg_proc proc;
	char	   *result;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the function of %s must be a string", where),
				 errhint("Write it as \"schema.name\".")));
	name = pnstrdup(v->val.string.val, v->val.string.len);
	names = stringToQualifiedNameList(name);
	if (list_length(names) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function name \"%s\" in %s is not schema-qualified", name, where),
				 errhint("Write it as schema.name, for example \"public.reserve_stock\".")));
	fn = LookupFuncName(names, 1, &argtype, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(jsonb) named in %s does not exist", name, where),
				 errhint("A step function takes (ctx jsonb) and returns jsonb.")));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->prorettype != JSONBOID)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s(jsonb) named in %s must return jsonb", name, where),
				 errhint("A step function takes (ctx jsonb) and returns jsonb.")));
	}
	result = quote_qualified_identifier(get_namespace_name(proc->pronamespace),
										NameStr(proc->proname));
	ReleaseSysCache(tup);
	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute function %s(jsonb) named in %s",
						GetUserNameFromId(owner, false), name, where)));
	return result;
}

/*
 * check_may_emit
 *		An emit call writes an event as 'owner': the owner must be allowed to
 *		call outbox.emit().
 */
static void
check_may_emit(Oid owner, const char *where)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, JSONBOID, TIMESTAMPTZOID};
	Oid			fn = LookupFuncName(list_make2(makeString("outbox"), makeString("emit")),
									6, argtypes, false);

	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute outbox.emit(), which %s calls",
						GetUserNameFromId(owner, false), where)));
}

/*
 * validate_call
 *		A CALL (SPEC 3.5): an object with exactly one key, the call kind.
 *		Checked for 'owner', the role it will run as; 'where' names it
 *		("the action of step \"x\"").  Returns the normalized call.
 */
static Jsonb *
validate_call(JsonbValue *call, const char *where, Oid owner)
{
	JsonbContainer *c;
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	v;
	JsonbParseState *st = NULL;
	char	   *kind;

	if (!is_object(call) || JsonContainerSize(call->val.binary.data) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object with exactly one key, the call kind", where),
				 errhint("For example {\"function\": \"public.reserve_stock\"}; the kinds are function, emit and http.")));
	c = call->val.binary.data;
	it = JsonbIteratorInit(c);
	(void) JsonbIteratorNext(&it, &key, true);	/* begin object */
	(void) JsonbIteratorNext(&it, &key, true);	/* the key */
	kind = pnstrdup(key.val.string.val, key.val.string.len);
	if (!get_key(c, kind, &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s call of %s must not be null", kind, where)));

	begin_object(&st);
	if (strcmp(kind, "function") == 0)
		push_string(&st, "function", validate_function_call(&v, where, owner));
	else if (strcmp(kind, "emit") == 0)
	{
		JsonbContainer *e;
		char	   *topic;
		char	   *event_type;
		JsonbValue	x;
		bool		await = false;
		Jsonb	   *headers = NULL;
		char	   *inner = psprintf("the emit call of %s", where);
		JsonbParseState *est = NULL;

		if (!is_object(&v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON object", inner),
					 errhint("For example {\"emit\": {\"topic\": \"payments\", \"event_type\": \"payment.requested\", \"await\": true}}.")));
		e = v.val.binary.data;
		check_keys(e, emit_keys, inner);
		topic = json_string(e, "topic", psprintf("\"topic\" of %s", inner));
		event_type = json_string(e, "event_type", psprintf("\"event_type\" of %s", inner));
		if (topic == NULL || event_type == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s needs \"topic\" and \"event_type\"", inner)));
		OutboxCheckTopic(psprintf("\"topic\" of %s", inner), cstring_to_text(topic));
		OutboxCheckEventType(psprintf("\"event_type\" of %s", inner),
							 cstring_to_text(event_type));
		if (get_key(e, "await", &x))
		{
			if (x.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"await\" of %s must be a boolean", inner)));
			await = x.val.boolean;
		}
		if (get_key(e, "headers", &x))
		{
			headers = check_headers(&x, psprintf("\"headers\" of %s", inner));
			OutboxCheckHeaders(headers);
		}
		check_may_emit(owner, where);

		begin_object(&est);
		push_string(&est, "topic", topic);
		push_string(&est, "event_type", event_type);
		push_bool(&est, "await", await);
		if (headers != NULL)
			push_jsonb(&est, "headers", headers);
		push_jsonb(&st, "emit", end_object(&est));
	}
	else if (strcmp(kind, "http") == 0)
	{
		JsonbContainer *h;
		char	   *url;
		char	   *method;
		JsonbValue	x;
		Jsonb	   *headers = NULL;
		char	   *inner = psprintf("the http call of %s", where);
		JsonbParseState *hst = NULL;
		int			i;
		bool		known = false;

		if (!is_object(&v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON object", inner),
					 errhint("For example {\"http\": {\"url\": \"https://payments.example/charge\"}}.")));
		h = v.val.binary.data;
		check_keys(h, http_keys, inner);
		url = json_string(h, "url", psprintf("\"url\" of %s", inner));
		if (url == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s needs \"url\"", inner)));
		method = json_string(h, "method", psprintf("\"method\" of %s", inner));
		if (method == NULL)
			method = "POST";
		for (i = 0; http_methods[i] != NULL && !known; i++)
			known = (pg_strcasecmp(method, http_methods[i]) == 0);
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"method\" of %s must be GET, POST, PUT, PATCH or DELETE", inner)));
		if (get_key(h, "headers", &x))
			headers = check_headers(&x, psprintf("\"headers\" of %s", inner));
		check_http_call(url, http_methods[i - 1], headers, inner);

		begin_object(&hst);
		push_string(&hst, "url", url);
		push_string(&hst, "method", http_methods[i - 1]);
		if (headers != NULL)
			push_jsonb(&hst, "headers", headers);
		push_jsonb(&st, "http", end_object(&hst));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown call kind \"%s\" in %s", kind, where),
				 errhint("The kinds are function, emit and http.")));
	return end_object(&st);
}

/*
 * validate_steps
 *		Check the steps of definition 'name' for 'owner' with the defaults of
 *		'options'; return the normalized array.
 */
static Jsonb *
validate_steps(const char *name, Jsonb *steps, const StepPolicy *defaults, Oid owner)
{
	JsonbParseState *st = NULL;
	int			n;
	int			i;
	char	  **names;

	if (JB_ROOT_IS_SCALAR(steps) || !JB_ROOT_IS_ARRAY(steps) ||
		(n = JB_ROOT_COUNT(steps)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the steps of saga \"%s\" must be a non-empty JSON array", name),
				 errhint("For example '[{\"name\": \"reserve\", \"action\": {\"function\": \"public.reserve\"}}]'.")));
	if (n > SAGA_MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("saga \"%s\" has too many steps", name),
				 errdetail("It has %d steps; the limit is %d.", n, SAGA_MAX_STEPS)));

	names = palloc(sizeof(char *) * n);
	(void) pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&steps->root, i);
		JsonbContainer *c;
		JsonbValue	v;
		char	   *where;
		StepPolicy	policy = *defaults;
		Jsonb	   *action;
		Jsonb	   *compensation = NULL;
		int			j;
		JsonbParseState *sst;

		if (elem == NULL || !is_object(elem))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of saga \"%s\" must be a JSON object", i + 1, name)));
		c = elem->val.binary.data;
		if (!get_key(c, "name", &v) || v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of saga \"%s\" needs a \"name\" string", i + 1, name)));
		names[i] = pnstrdup(v.val.string.val, v.val.string.len);
		SqlCheckText("step name", names[i], v.val.string.len, SAGA_MAX_NAME_BYTES,
				 SQL_TEXT_NAME, NULL, NULL);
		for (j = 0; j < i; j++)
			if (strcmp(names[j], names[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("duplicate step name \"%s\" in saga \"%s\"", names[i], name),
						 errdetail("Steps %d and %d have the same name.", j + 1, i + 1)));
		where = psprintf("step \"%s\"", names[i]);
		check_keys(c, step_keys, where);
		parse_policy(c, where, &policy);

		if (!get_key(c, "action", &v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step \"%s\" of saga \"%s\" needs an \"action\"", names[i], name)));
		action = validate_call(&v, psprintf("the action of step \"%s\"", names[i]), owner);
		if (get_key(c, "compensation", &v))
			compensation = validate_call(&v, psprintf("the compensation of step \"%s\"",
													  names[i]), owner);

		sst = st;
		begin_object(&sst);
		push_string(&sst, "name", names[i]);
		push_jsonb(&sst, "action", action);
		if (compensation != NULL)
			push_jsonb(&sst, "compensation", compensation);
		else
			push_null(&sst, "compensation");
		push_seconds(&sst, "timeout", policy.timeout_ms);
		push_int(&sst, "max_attempts", policy.max_attempts);
		push_seconds(&sst, "backoff_base", policy.backoff_base_ms);
		push_seconds(&sst, "backoff_max", policy.backoff_max_ms);
		push_int(&sst, "compensation_max_attempts", policy.compensation_max_attempts);
		(void) pushJsonbValue(&sst, WJB_END_OBJECT, NULL);
		st = sst;
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));
}

/*
 * validate_options
 *		The saga options: deadline and the step defaults.  Returns them
 *		normalized (every key, defaults applied) and the defaults in *policy.
 */
static Jsonb *
validate_options(Jsonb *options, StepPolicy *policy)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	int64		deadline_ms = 0;

	if (JB_ROOT_IS_SCALAR(options) || !JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("saga options must be a JSON object"),
				 errhint("For example '{\"deadline\": \"1 hour\"}'.")));
	check_keys(&options->root, option_keys, "the saga options");

	policy->timeout_ms = SAGA_DEFAULT_TIMEOUT_MS;
	policy->max_attempts = SAGA_DEFAULT_MAX_ATTEMPTS;
	policy->backoff_base_ms = SAGA_DEFAULT_BACKOFF_BASE_MS;
	policy->backoff_max_ms = SAGA_DEFAULT_BACKOFF_MAX_MS;
	policy->compensation_max_attempts = SAGA_DEFAULT_COMP_MAX_ATTEMPTS;
	parse_policy(&options->root, "the saga options", policy);
	if (get_key(&options->root, "deadline", &v))
		deadline_ms = parse_duration("\"deadline\" of the saga options", &v,
									 SAGA_MAX_DEADLINE_MS, "3650 days");

	begin_object(&st);
	if (deadline_ms > 0)
		push_seconds(&st, "deadline", deadline_ms);
	else
		push_null(&st, "deadline");
	push_seconds(&st, "timeout", policy->timeout_ms);
	push_int(&st, "max_attempts", policy->max_attempts);
	push_seconds(&st, "backoff_base", policy->backoff_base_ms);
	push_seconds(&st, "backoff_max", policy->backoff_max_ms);
	push_int(&st, "compensation_max_attempts", policy->compensation_max_attempts);
	return end_object(&st);
}


/* ------------------------------------------------------------------------
 * saga.define
 * ------------------------------------------------------------------------
 */

/*
 * saga.define(name text, steps jsonb, options jsonb) RETURNS integer
 */
static Datum
saga_define(PG_FUNCTION_ARGS)
{
	text	   *name_text;
	char	   *name;
	Jsonb	   *steps;
	Jsonb	   *options;
	Oid			owner = GetUserId();
	StepPolicy	defaults;
	Datum		values[5];
	bool		isnull;
	int32		version = 0;
	bool		exists = false;
	int			tries;

	SqlRequireArg(fcinfo, 0, "name");
	SqlRequireArg(fcinfo, 1, "steps");
	SqlRequireArg(fcinfo, 2, "options");
	name_text = PG_GETARG_TEXT_PP(0);
	SqlCheckText("saga name", VARDATA_ANY(name_text), VARSIZE_ANY_EXHDR(name_text), SAGA_MAX_NAME_BYTES,
				 SQL_TEXT_NAME, NULL, NULL);
	name = text_to_cstring(name_text);
	steps = PG_GETARG_JSONB_P(1);
	options = PG_GETARG_JSONB_P(2);

	spi_connect();

	/*
	 * Lock the name (creating it if new), so that concurrent defines of one
	 * name serialize, and learn its owner.  A concurrent creator makes the
	 * insert wait and then do nothing: the lock is taken again.
	 */
	values[0] = CStringGetTextDatum(name);
	for (tries = 0;; tries++)
	{
		run(Q_HEAD_LOCK, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			exists = true;
			owner = DatumGetObjectId(result_value(0, 1, &isnull));
			break;
		}
		if (tries > 0)
			elog(ERROR, "saga definition \"%s\" vanished while it was being defined", name);
		values[1] = ObjectIdGetDatum(owner);
		run(Q_HEAD_INSERT, values, NULL, SPI_OK_INSERT);
		if (SPI_processed == 1)
			break;
	}
	if (exists && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of saga definition \"%s\"", name),
				 errdetail("Only the role that first defined a saga, a member of it, or a superuser may redefine it.")));

	/* Everything is checked as the caller, for the owner. */
	options = validate_options(options, &defaults);
	steps = validate_steps(name, steps, &defaults, owner);

	if (exists)
	{
		values[1] = JsonbPGetDatum(steps);
		values[2] = JsonbPGetDatum(options);
		run(Q_LATEST_SAME, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			version = DatumGetInt32(result_value(0, 1, &isnull));
			spi_finish();
			PG_RETURN_INT32(version);
		}
		run(Q_HEAD_BUMP, values, NULL, SPI_OK_UPDATE_RETURNING);
		version = DatumGetInt32(result_value(0, 1, &isnull));
	}
	else
		version = 1;

	values[1] = Int32GetDatum(version);
	values[2] = JsonbPGetDatum(steps);
	values[3] = JsonbPGetDatum(options);
	values[4] = ObjectIdGetDatum(owner);
	run(Q_DEFINITION_INSERT, values, NULL, SPI_OK_INSERT);
	spi_finish();
	PG_RETURN_INT32(version);
}

/*
 * outbox_saga_saga_define: the statement may carry secrets (http headers): errors keep it out
 * of the server log, as create_destination does.
 */
Datum
outbox_saga_saga_define(PG_FUNCTION_ARGS)
{
	return SqlCallHidingStatement(saga_define, fcinfo);
}


/* ------------------------------------------------------------------------
 * saga.start
 * ------------------------------------------------------------------------
 */

/*
 * saga.start(definition text, input jsonb, idempotency_key text) RETURNS uuid
 */
Datum
outbox_saga_saga_start(PG_FUNCTION_ARGS)
{
	text	   *definition;
	Jsonb	   *input;
	text	   *key = NULL;
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	int32		definition_id;
	int			tries;

	SqlRequireArg(fcinfo, 0, "definition");
	SqlRequireArg(fcinfo, 1, "input");
	definition = PG_GETARG_TEXT_PP(0);
	input = PG_GETARG_JSONB_P(1);
	if (!PG_ARGISNULL(2))
	{
		key = PG_GETARG_TEXT_PP(2);
		if (VARSIZE_ANY_EXHDR(key) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_key must not be empty"),
					 errhint("Pass NULL to start a saga without a key.")));
		if (VARSIZE_ANY_EXHDR(key) > SAGA_MAX_KEY_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("idempotency_key is too long"),
					 errdetail("It has %d bytes; the limit is %d.",
							   (int) VARSIZE_ANY_EXHDR(key), SAGA_MAX_KEY_BYTES)));
	}

	spi_connect();
	values[0] = PointerGetDatum(definition);
	run(Q_START_LOOKUP, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("saga definition \"%s\" does not exist", text_to_cstring(definition)),
				 errhint("Define it with saga.define().")));
	definition_id = DatumGetInt32(result_value(0, 1, &isnull));

	for (tries = 0;; tries++)
	{
		OutboxUuidV7(GetCurrentTimestamp(), id);
		values[0] = UUIDPGetDatum(id);
		values[1] = Int32GetDatum(definition_id);
		values[2] = JsonbPGetDatum(input);
		values[3] = key ? PointerGetDatum(key) : (Datum) 0;
		nulls[3] = key ? ' ' : 'n';
		run(Q_START_INSERT, values, nulls, SPI_OK_INSERT);
		if (SPI_processed == 1)
		{
			WakeupNoteEventWritten();
			break;
		}

		/* The key is taken (by a committed saga: the insert waited). */
		if (key == NULL)
			elog(ERROR, "could not start saga \"%s\"", text_to_cstring(definition));
		values[0] = PointerGetDatum(key);
		run(Q_START_EXISTING, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			memcpy(id, DatumGetUUIDP(result_value(0, 1, &isnull)), sizeof(pg_uuid_t));
			break;
		}
		if (tries >= 3)
			elog(ERROR, "could not start saga \"%s\": its idempotency key is taken and not found",
				 text_to_cstring(definition));
	}
	spi_finish();
	PG_RETURN_UUID_P(id);
}


/* ------------------------------------------------------------------------
 * Functions on one saga
 * ------------------------------------------------------------------------
 */

/*
 * lock_saga
 *		Lock saga 'id' (waiting for other callers) and read it into *row;
 *		error out if it does not exist.
 */
static void
lock_saga(const pg_uuid_t *id, SagaRow *row)
{
	Datum		values[1];
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	run(Q_LOCK_SAGA, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("saga %s does not exist", uuid_string(id))));
	row->id = *id;
	row->definition = result_text(0, 1);
	row->status = result_text(0, 2);
	row->owner = DatumGetObjectId(result_value(0, 3, &isnull));
	row->steps = DatumGetJsonbPCopy(result_value(0, 4, &isnull));
	row->options = DatumGetJsonbPCopy(result_value(0, 5, &isnull));
	row->deadline_passed = DatumGetBool(result_value(0, 6, &isnull));
	if (isnull)
		row->deadline_passed = false;
}

/*
 * definition_has_step
 *		Whether the normalized steps name 'step'.
 */
static bool
definition_has_step(Jsonb *steps, const char *step)
{
	int			n = JB_ROOT_COUNT(steps);
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbValue *s = getIthJsonbValueFromContainer(&steps->root, i);
		JsonbValue	v;

		if (s != NULL && is_object(s) && get_key(s->val.binary.data, "name", &v) &&
			v.type == jbvString && v.val.string.len == strlen(step) &&
			memcmp(v.val.string.val, step, v.val.string.len) == 0)
			return true;
	}
	return false;
}

/*
 * saga.complete_step(saga_id uuid, step text, success boolean, result jsonb)
 *
 * Accepted only while the step's action or compensation is waiting for it
 * and its timeout (and, for an action, the saga's deadline) has not passed
 * by the clock: the worker's timeout and this function serialize on the
 * saga's row lock, and whichever comes second finds the run no longer
 * waiting, or late.  success = false is a failed attempt (retried while
 * attempts remain, the command being emitted again).
 */
Datum
outbox_saga_saga_complete_step(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	char	   *step;
	bool		success;
	Jsonb	   *result = NULL;
	SagaRow		row;
	Datum		values[2];
	bool		isnull;
	uint64		i;
	int			waiting = -1;
	SagaOutcome outcome;
	SavedIdentity saved;

	SqlRequireArg(fcinfo, 0, "saga_id");
	SqlRequireArg(fcinfo, 1, "step");
	SqlRequireArg(fcinfo, 2, "success");
	id = PG_GETARG_UUID_P(0);
	step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	success = PG_GETARG_BOOL(2);
	if (!PG_ARGISNULL(3))
		result = PG_GETARG_JSONB_P(3);

	spi_connect();
	lock_saga(id, &row);

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(step);
	run(Q_STEP_RUNS, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (definition_has_step(row.steps, step))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step \"%s\" is not awaiting completion", step),
					 errdetail("It has not started in saga %s, which is %s.",
							   uuid_string(id), row.status)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" does not exist in saga definition \"%s\"", step,
						row.definition),
				 errdetail("Saga %s has no step or compensation of that name.",
						   uuid_string(id))));
	}
	for (i = 0; i < SPI_processed && waiting < 0; i++)
	{
		char	   *status = result_text(i, 2);

		if (strcmp(status, "waiting") == 0)
			waiting = (int) i;
	}
	if (waiting < 0)
	{
		char	   *phase = result_text(0, 1);
		char	   *status = result_text(0, 2);
		bool		timed_out = DatumGetBool(result_value(0, 3, &isnull));

		if (timed_out && strcmp(status, "succeeded") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step \"%s\" timed out", step),
					 errdetail("Its %s in saga %s waited for saga.complete_step until its timeout; it is %s now.",
							   phase, uuid_string(id), status)));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("step \"%s\" is not awaiting completion", step),
				 errdetail("Its %s in saga %s is %s.", phase, uuid_string(id), status)));
	}
	if (DatumGetBool(result_value(waiting, 4, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("step \"%s\" timed out", step),
				 errdetail("Its %s in saga %s waited for saga.complete_step until its timeout.",
						   result_text(waiting, 1), uuid_string(id))));
	if (row.deadline_passed && strcmp(result_text(waiting, 1), "action") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the deadline of the saga has passed"),
				 errdetail("Saga %s compensates instead of continuing.", uuid_string(id))));

	outcome.saga_id = *id;
	outcome.step = step;
	outcome.phase = result_text(waiting, 1);
	outcome.kind = success ? SAGA_OK : SAGA_FAIL;
	outcome.result = result;
	outcome.error = success ? NULL : pstrdup("saga.complete_step reported a failure");
	RunAsExtensionBegin(&saved);
	(void) SagaApplyOutcomes(&outcome, 1, GetCurrentTimestamp());
	RunAsExtensionEnd(&saved);
	spi_finish();

	WakeupNoteEventWritten();
	PG_RETURN_VOID();
}

/*
 * saga.register_compensation(saga_id uuid, name text, call jsonb)
 *
 * A compensation record that does not belong to a step of the definition:
 * it runs, as the definition's owner, in reverse order with the others if
 * the saga compensates.  Registering the same name and call again is a
 * no-op, so a step that registers and is then run again does no harm.
 */
static Datum
saga_register_compensation(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	text	   *name_text;
	char	   *name;
	Jsonb	   *call;
	Jsonb	   *normalized;
	SagaRow		row;
	JsonbValue	v;
	Datum		values[4];
	bool		isnull;

	SqlRequireArg(fcinfo, 0, "saga_id");
	SqlRequireArg(fcinfo, 1, "name");
	SqlRequireArg(fcinfo, 2, "call");
	id = PG_GETARG_UUID_P(0);
	name_text = PG_GETARG_TEXT_PP(1);
	SqlCheckText("compensation name", VARDATA_ANY(name_text), VARSIZE_ANY_EXHDR(name_text), SAGA_MAX_NAME_BYTES,
				 SQL_TEXT_NAME, NULL, NULL);
	name = text_to_cstring(name_text);
	call = PG_GETARG_JSONB_P(2);

	spi_connect();
	lock_saga(id, &row);
	if (!has_privs_of_role(GetUserId(), row.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of saga definition \"%s\" to register a compensation",
						row.definition),
				 errdetail("A compensation runs as the definition's owner.")));
	if (strcmp(row.status, "running") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot register a compensation for a saga that is %s", row.status),
				 errdetail("Saga %s is %s; compensations can be registered only while a saga is running.",
						   uuid_string(id), row.status)));
	if (definition_has_step(row.steps, name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("\"%s\" is the name of a step of saga definition \"%s\"", name,
						row.definition),
				 errhint("Give the ad-hoc compensation a name of its own.")));

	if (JB_ROOT_IS_SCALAR(call))
		v.type = jbvNull;		/* not an object: validate_call says so */
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &call->root;
		v.val.binary.len = VARSIZE(call) - VARHDRSZ;
	}
	normalized = validate_call(&v, psprintf("compensation \"%s\"", name), row.owner);

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(name);
	values[2] = JsonbPGetDatum(normalized);
	run(Q_COMP_EXISTING, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		if (!DatumGetBool(result_value(0, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("compensation \"%s\" is already registered with another call", name),
					 errdetail("Saga %s has a compensation of that name.", uuid_string(id))));
		spi_finish();
		PG_RETURN_VOID();
	}
	values[3] = JsonbPGetDatum(row.options);
	run(Q_COMP_INSERT, values, NULL, SPI_OK_INSERT);
	spi_finish();
	PG_RETURN_VOID();
}

/*
 * outbox_saga_saga_register_compensation: the statement may carry secrets (http headers): errors keep it out
 * of the server log, as create_destination does.
 */
Datum
outbox_saga_saga_register_compensation(PG_FUNCTION_ARGS)
{
	return SqlCallHidingStatement(saga_register_compensation, fcinfo);
}

/*
 * saga.cancel(saga_id uuid, reason text)
 *
 * A pending or waiting action is abandoned (cancelled); an action the
 * worker is running right now finishes first, and if it succeeds its
 * compensation runs first.  Then the compensation records run in reverse
 * order and the saga ends cancelled.
 */
Datum
outbox_saga_saga_cancel(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	SagaRow		row;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	SagaOutcome active;
	char	   *active_status = NULL;
	SavedIdentity saved;
	TimestampTz now = GetCurrentTimestamp();

	SqlRequireArg(fcinfo, 0, "saga_id");
	id = PG_GETARG_UUID_P(0);

	spi_connect();
	lock_saga(id, &row);
	if (strcmp(row.status, "running") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot cancel a saga that is %s", row.status),
				 errdetail("Saga %s is %s; only a running saga can be cancelled.",
						   uuid_string(id), row.status)));

	values[0] = UUIDPGetDatum(id);
	run(Q_ACTIVE_RUN, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		active.saga_id = *id;
		active.step = result_text(0, 1);
		active.phase = result_text(0, 2);
		active_status = result_text(0, 3);
	}
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	run(Q_CANCEL, values, nulls, SPI_OK_UPDATE);

	/*
	 * A pending or waiting action is abandoned now.  One that the worker has
	 * claimed (running) is left to it: it does not run it, or, if it is
	 * running it at this moment, records its outcome first.
	 */
	RunAsExtensionBegin(&saved);
	if (active_status != NULL && strcmp(active_status, "running") != 0)
	{
		active.kind = SAGA_SKIP;
		active.result = NULL;
		active.error = pstrdup("cancelled");
		(void) SagaApplyOutcomes(&active, 1, now);
	}
	else
		SagaAdvanceCompensation(id, 1, now);
	RunAsExtensionEnd(&saved);
	spi_finish();

	WakeupNoteEventWritten();
	PG_RETURN_VOID();
}

/*
 * saga.retry(saga_id uuid)
 *
 * A failed saga: the compensation that gave up becomes pending again with
 * its attempts starting over, and the saga compensates on from there.
 */
Datum
outbox_saga_saga_retry(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id;
	SagaRow		row;
	Datum		values[2];

	SqlRequireArg(fcinfo, 0, "saga_id");
	id = PG_GETARG_UUID_P(0);

	spi_connect();
	lock_saga(id, &row);
	if (strcmp(row.status, "failed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot retry a saga that is %s", row.status),
				 errdetail("Saga %s is %s; only a failed saga can be retried.",
						   uuid_string(id), row.status)));

	values[0] = UUIDPGetDatum(id);
	run(Q_RETRY_RUN, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "failed saga %s has no failed compensation", uuid_string(id));
	values[1] = CStringGetTextDatum(result_text(0, 1));
	run(Q_RETRY_SAGA, values, NULL, SPI_OK_UPDATE);
	spi_finish();

	WakeupNoteEventWritten();
	PG_RETURN_VOID();
}

/*-------------------------------------------------------------------------
 *
 * saga_define.c
 *		saga.define and saga.drop_definition, and the validation of
 *		definitions and of calls (also used by saga.register_compensation).
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
 *	redefine it.  Each version records the search_path its calls run with:
 *	the option "search_path" (taken out of the stored options), or else the
 *	caller's current one, pg_temp last unless named (base/run_as.c); a
 *	define that changes only the search_path writes a new version.
 *
 * INVARIANTS
 *	saga.define runs in the caller's transaction: a definition exists iff
 *	that transaction commits, and an error writes nothing.  Concurrent
 *	defines of one name serialize on the row of saga.definition_name (FOR
 *	UPDATE, held until the caller's transaction ends).  Checks run as the
 *	caller, for the owner; the statements (saga_state.c) run with the
 *	extension's rights.  The statement may carry secrets (http headers):
 *	errors keep it out of the server log.
 *
 * NAMES are owned: the role that first defines a name owns it until
 *	saga.drop_definition (owner, member or superuser; no saga of it
 *	running, compensating or failed) deletes it with its versions and
 *	finished sagas, so a name cannot be squatted forever.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "base/jsonb_util.h"
#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/eventlog.h"
#include "http/http_client.h"
#include "saga/saga.h"

PG_FUNCTION_INFO_V1(outbox_saga_saga_define);
PG_FUNCTION_INFO_V1(outbox_saga_saga_drop_definition);

/* Limits. */
#define SAGA_MAX_STEPS			1000
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



/* ------------------------------------------------------------------------
 * Validating definitions
 * ------------------------------------------------------------------------
 */

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

	if (JsonbGetKey(c, "timeout", &v))
		policy->timeout_ms = JsonbDurationMs(&v, psprintf("\"timeout\" of %s", where),
											SAGA_MAX_TIMEOUT_MS, "24 days");
	if (JsonbGetKey(c, "max_attempts", &v))
		policy->max_attempts = JsonbIntValue(&v, psprintf("\"max_attempts\" of %s", where),
											 1, SAGA_MAX_ATTEMPTS);
	if (JsonbGetKey(c, "compensation_max_attempts", &v))
		policy->compensation_max_attempts =
			JsonbIntValue(&v, psprintf("\"compensation_max_attempts\" of %s", where),
						  1, SAGA_MAX_ATTEMPTS);
	if (JsonbGetKey(c, "backoff_base", &v))
		policy->backoff_base_ms = JsonbDurationMs(&v, psprintf("\"backoff_base\" of %s", where),
												 SAGA_MAX_BACKOFF_MS, "365 days");
	if (JsonbGetKey(c, "backoff_max", &v))
	{
		policy->backoff_max_ms = JsonbDurationMs(&v, psprintf("\"backoff_max\" of %s", where),
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
 * check_http_call
 *		Refuse at definition time what the worker would refuse at every run
 *		(HttpClientCallProblem: the URL's form and literal address, header
 *		names, reserved headers, control characters; the worker always sends
 *		an Idempotency-Key, so that header is reserved too).
 */
static void
check_http_call(const char *url, const char *method, Jsonb *headers, const char *what)
{
	HttpCall	call;
	char	  **names = NULL;
	char	  **values = NULL;
	char	   *problem;

	memset(&call, 0, sizeof(call));
	call.url = url;
	call.method = method;
	call.idempotency_key = "check";
	if (headers != NULL)
		call.nheaders = JsonbObjectStrings(headers, &names, &values);
	call.header_names = (const char *const *) names;
	call.header_values = (const char *const *) values;
	problem = HttpClientCallProblem(&call);
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
	Oid			fn;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the function of %s must be a string", where),
				 errhint("Write it as \"schema.name\".")));
	name = pnstrdup(v->val.string.val, v->val.string.len);
	if (list_length(CompatStringToQualifiedNameList(name)) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function name \"%s\" in %s is not schema-qualified", name, where),
				 errhint("Write it as schema.name, for example \"public.reserve_stock\".")));
	fn = SagaLookupFunction(name, owner, where);
	return quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
									  get_func_name(fn));
}

/*
 * check_may_emit
 *		An emit call writes an event as 'owner': the owner must be allowed to
 *		call outbox.emit().
 */
static void
check_may_emit(Oid owner, const char *where)
{
	if (CompatProcAclcheck(SagaEmitFunction(), owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute outbox.emit(), which %s calls",
						GetUserNameFromId(owner, false), where)));
}

/*
 * call_object
 *		The object of a call of a kind ('inner' names it); 'example' is the
 *		hint if it is not an object.
 */
static JsonbContainer *
call_object(JsonbValue *v, const char *inner, const char *example)
{
	if (!JsonbValueIsObject(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", inner),
				 errhint("%s", example)));
	return v->val.binary.data;
}

/*
 * validate_emit_call
 *		The value of an emit call: {"topic", "event_type", "await",
 *		"headers"}, checked as outbox.emit() would check them, for 'owner'.
 *		Returns it normalized.
 */
static Jsonb *
validate_emit_call(JsonbValue *v, const char *where, Oid owner)
{
	JsonbContainer *e;
	char	   *topic;
	char	   *event_type;
	JsonbValue	x;
	bool		await = false;
	Jsonb	   *headers = NULL;
	char	   *inner = psprintf("the emit call of %s", where);
	JsonbParseState *est = NULL;

	e = call_object(v, inner, "For example {\"emit\": {\"topic\": \"payments\", \"event_type\": \"payment.requested\", \"await\": true}}.");
	JsonbCheckKeys(e, emit_keys, inner);
	topic = JsonbGetString(e, "topic", psprintf("\"topic\" of %s", inner));
	event_type = JsonbGetString(e, "event_type", psprintf("\"event_type\" of %s", inner));
	if (topic == NULL || event_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s needs \"topic\" and \"event_type\"", inner)));
	OutboxCheckTopic(psprintf("\"topic\" of %s", inner), cstring_to_text(topic));
	OutboxCheckEventType(psprintf("\"event_type\" of %s", inner),
						 cstring_to_text(event_type));
	if (JsonbGetKey(e, "await", &x))
	{
		if (x.type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"await\" of %s must be a boolean", inner)));
		await = x.val.boolean;
	}
	if (JsonbGetKey(e, "headers", &x))
	{
		headers = JsonbCheckStringObject(&x, psprintf("\"headers\" of %s", inner));
		OutboxCheckHeaders(headers);
	}
	check_may_emit(owner, where);

	JsonbBeginObject(&est);
	JsonbPutString(&est, "topic", topic);
	JsonbPutString(&est, "event_type", event_type);
	JsonbPutBool(&est, "await", await);
	if (headers != NULL)
		JsonbPutJsonb(&est, "headers", headers);
	return JsonbEndObject(&est);
}

/*
 * validate_http_call
 *		The value of an http call: {"url", "method", "headers"}, refused now
 *		if the worker would refuse it at every run.  Returns it normalized.
 */
static Jsonb *
validate_http_call(JsonbValue *v, const char *where)
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

	h = call_object(v, inner, "For example {\"http\": {\"url\": \"https://payments.example/charge\"}}.");
	JsonbCheckKeys(h, http_keys, inner);
	url = JsonbGetString(h, "url", psprintf("\"url\" of %s", inner));
	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s needs \"url\"", inner)));
	method = JsonbGetString(h, "method", psprintf("\"method\" of %s", inner));
	if (method == NULL)
		method = "POST";
	for (i = 0; http_methods[i] != NULL && !known; i++)
		known = (pg_strcasecmp(method, http_methods[i]) == 0);
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"method\" of %s must be GET, POST, PUT, PATCH or DELETE", inner)));
	if (JsonbGetKey(h, "headers", &x))
		headers = JsonbCheckStringObject(&x, psprintf("\"headers\" of %s", inner));
	check_http_call(url, http_methods[i - 1], headers, inner);

	JsonbBeginObject(&hst);
	JsonbPutString(&hst, "url", url);
	JsonbPutString(&hst, "method", http_methods[i - 1]);
	if (headers != NULL)
		JsonbPutJsonb(&hst, "headers", headers);
	return JsonbEndObject(&hst);
}

/*
 * SagaValidateCall
 *		A CALL (SPEC 3.5): an object with exactly one key, the call kind.
 *		Checked for 'owner', the role it will run as; 'where' names it
 *		("the action of step \"x\"").  Returns the normalized call.
 */
Jsonb *
SagaValidateCall(JsonbValue *call, const char *where, Oid owner)
{
	JsonbContainer *c;
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	v;
	JsonbParseState *st = NULL;
	char	   *kind;

	if (!JsonbValueIsObject(call) || JsonContainerSize(call->val.binary.data) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object with exactly one key, the call kind", where),
				 errhint("For example {\"function\": \"public.reserve_stock\"}; the kinds are function, emit and http.")));
	c = call->val.binary.data;
	it = JsonbIteratorInit(c);
	(void) JsonbIteratorNext(&it, &key, true);	/* begin object */
	(void) JsonbIteratorNext(&it, &key, true);	/* the key */
	kind = pnstrdup(key.val.string.val, key.val.string.len);
	if (!JsonbGetKey(c, kind, &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s call of %s must not be null", kind, where)));

	JsonbBeginObject(&st);
	if (strcmp(kind, "function") == 0)
		JsonbPutString(&st, "function", validate_function_call(&v, where, owner));
	else if (strcmp(kind, "emit") == 0)
		JsonbPutJsonb(&st, "emit", validate_emit_call(&v, where, owner));
	else if (strcmp(kind, "http") == 0)
		JsonbPutJsonb(&st, "http", validate_http_call(&v, where));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown call kind \"%s\" in %s", kind, where),
				 errhint("The kinds are function, emit and http.")));
	return JsonbEndObject(&st);
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

		if (elem == NULL || !JsonbValueIsObject(elem))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %d of saga \"%s\" must be a JSON object", i + 1, name)));
		c = elem->val.binary.data;
		if (!JsonbGetKey(c, "name", &v) || v.type != jbvString)
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
		JsonbCheckKeys(c, step_keys, where);
		parse_policy(c, where, &policy);

		if (!JsonbGetKey(c, "action", &v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step \"%s\" of saga \"%s\" needs an \"action\"", names[i], name)));
		action = SagaValidateCall(&v, psprintf("the action of step \"%s\"", names[i]), owner);
		if (JsonbGetKey(c, "compensation", &v))
			compensation = SagaValidateCall(&v, psprintf("the compensation of step \"%s\"",
													  names[i]), owner);

		sst = st;
		JsonbBeginObject(&sst);
		JsonbPutString(&sst, "name", names[i]);
		JsonbPutJsonb(&sst, "action", action);
		if (compensation != NULL)
			JsonbPutJsonb(&sst, "compensation", compensation);
		else
			JsonbPutNull(&sst, "compensation");
		JsonbPutSeconds(&sst, "timeout", policy.timeout_ms);
		JsonbPutInt(&sst, "max_attempts", policy.max_attempts);
		JsonbPutSeconds(&sst, "backoff_base", policy.backoff_base_ms);
		JsonbPutSeconds(&sst, "backoff_max", policy.backoff_max_ms);
		JsonbPutInt(&sst, "compensation_max_attempts", policy.compensation_max_attempts);
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
	JsonbCheckKeys(&options->root, option_keys, "the saga options");

	policy->timeout_ms = SAGA_DEFAULT_TIMEOUT_MS;
	policy->max_attempts = SAGA_DEFAULT_MAX_ATTEMPTS;
	policy->backoff_base_ms = SAGA_DEFAULT_BACKOFF_BASE_MS;
	policy->backoff_max_ms = SAGA_DEFAULT_BACKOFF_MAX_MS;
	policy->compensation_max_attempts = SAGA_DEFAULT_COMP_MAX_ATTEMPTS;
	parse_policy(&options->root, "the saga options", policy);
	if (JsonbGetKey(&options->root, "deadline", &v))
		deadline_ms = JsonbDurationMs(&v, "\"deadline\" of the saga options",
									 SAGA_MAX_DEADLINE_MS, "3650 days");

	JsonbBeginObject(&st);
	if (deadline_ms > 0)
		JsonbPutSeconds(&st, "deadline", deadline_ms);
	else
		JsonbPutNull(&st, "deadline");
	JsonbPutSeconds(&st, "timeout", policy->timeout_ms);
	JsonbPutInt(&st, "max_attempts", policy->max_attempts);
	JsonbPutSeconds(&st, "backoff_base", policy->backoff_base_ms);
	JsonbPutSeconds(&st, "backoff_max", policy->backoff_max_ms);
	JsonbPutInt(&st, "compensation_max_attempts", policy->compensation_max_attempts);
	return JsonbEndObject(&st);
}


/* ------------------------------------------------------------------------
 * saga.define
 * ------------------------------------------------------------------------
 */

/*
 * take_search_path
 *		The option "search_path" of saga.define: removed from *options (the
 *		search_path is stored in a column of its own), checked (22023) and
 *		returned with pg_temp last; without it, the caller's current
 *		search_path.  *options must be an object (else validate_options
 *		says so later).
 */
static char *
take_search_path(Jsonb **options)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(*options) || !JB_ROOT_IS_OBJECT(*options) ||
		getKeyJsonValueFromContainer(&(*options)->root, "search_path",
									 strlen("search_path"), &v) == NULL)
		return RunAsCurrentSearchPath();
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"search_path\" of the saga options must be a string"),
				 errhint("For example '{\"search_path\": \"shop, public\"}'.")));
	*options = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete,
												  JsonbPGetDatum(*options),
												  CStringGetTextDatum("search_path")));
	return RunAsCheckSearchPath(pnstrdup(v.val.string.val, v.val.string.len),
								"\"search_path\" of the saga options");
}

/*
 * saga.define(name text, steps jsonb, options jsonb) RETURNS integer
 */
static Datum
saga_define(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *steps;
	Jsonb	   *options;
	Oid			owner = GetUserId();
	StepPolicy	defaults;
	char	   *search_path;
	bool		has_path;
	Datum		values[6];
	bool		isnull;
	int32		version = 0;
	bool		exists = false;
	int			tries;

	SqlRequireArg(fcinfo, 0, "name");
	SqlRequireArg(fcinfo, 1, "steps");
	SqlRequireArg(fcinfo, 2, "options");
	name = SqlNameText(PG_GETARG_TEXT_PP(0), "saga name",
					   SAGA_MAX_NAME_BYTES, NULL);
	steps = PG_GETARG_JSONB_P(1);
	options = PG_GETARG_JSONB_P(2);
	search_path = take_search_path(&options);
	/* A database still at 0.1.0's SQL has no column for it (yet). */
	has_path = SpiColumnExists("saga", "definition", "search_path");

	SpiConnect();

	/*
	 * Lock the name (creating it if new), so that concurrent defines of one
	 * name serialize, and learn its owner.  A concurrent creator makes the
	 * insert wait and then do nothing: the lock is taken again.
	 */
	values[0] = CStringGetTextDatum(name);
	for (tries = 0;; tries++)
	{
		(void) SagaRunAsExtension(SAGA_Q_HEAD_LOCK, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			exists = true;
			owner = DatumGetObjectId(SagaColumn(SPI_tuptable, 0, 1, &isnull));
			break;
		}
		if (tries > 0)
			elog(ERROR, "saga definition \"%s\" vanished while it was being defined", name);
		values[1] = ObjectIdGetDatum(owner);
		(void) SagaRunAsExtension(SAGA_Q_HEAD_INSERT, values, NULL, SPI_OK_INSERT);
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
		values[3] = CStringGetTextDatum(search_path);
		(void) SagaRunAsExtension(has_path ? SAGA_Q_LATEST_SAME : SAGA_Q_LATEST_SAME_010,
								  values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			version = DatumGetInt32(SagaColumn(SPI_tuptable, 0, 1, &isnull));
			SpiFinish();
			PG_RETURN_INT32(version);
		}
		(void) SagaRunAsExtension(SAGA_Q_HEAD_BUMP, values, NULL, SPI_OK_UPDATE_RETURNING);
		version = DatumGetInt32(SagaColumn(SPI_tuptable, 0, 1, &isnull));
	}
	else
		version = 1;

	values[1] = Int32GetDatum(version);
	values[2] = JsonbPGetDatum(steps);
	values[3] = JsonbPGetDatum(options);
	values[4] = ObjectIdGetDatum(owner);
	values[5] = CStringGetTextDatum(search_path);
	(void) SagaRunAsExtension(has_path ? SAGA_Q_DEFINITION_INSERT :
							  SAGA_Q_DEFINITION_INSERT_010,
							  values, NULL, SPI_OK_INSERT);
	SpiFinish();
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

/*
 * SagaDefinitionHasStep
 *		Whether the normalized steps name 'step'.
 */
bool
SagaDefinitionHasStep(Jsonb *steps, const char *step)
{
	int			n = JB_ROOT_COUNT(steps);
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbValue *s = getIthJsonbValueFromContainer(&steps->root, i);
		JsonbValue	v;

		if (s != NULL && JsonbValueIsObject(s) && JsonbGetKey(s->val.binary.data, "name", &v) &&
			v.type == jbvString && v.val.string.len == strlen(step) &&
			memcmp(v.val.string.val, step, v.val.string.len) == 0)
			return true;
	}
	return false;
}



/* ------------------------------------------------------------------------
 * saga.drop_definition
 * ------------------------------------------------------------------------
 */

/*
 * Statements of saga.drop_definition, run with the extension's rights.
 * $1 is the definition's name in each.
 */
static SpiStatement drop_lock_instances = {"saga.drop_definition: lock out saga.start",
	"LOCK TABLE saga.instance IN SHARE ROW EXCLUSIVE MODE",
{0}};

static SpiStatement drop_in_flight = {"saga.drop_definition: sagas not finished",
	"SELECT count(*) FROM saga.instance"
	" WHERE definition = $1 AND status IN ('running', 'compensating', 'failed')",
{TEXTOID, 0}};

static SpiStatement drop_runs = {"saga.drop_definition: delete step runs",
	"DELETE FROM saga.step_run r USING saga.instance i"
	" WHERE i.definition = $1 AND r.saga_id = i.id",
{TEXTOID, 0}};

static SpiStatement drop_instances = {"saga.drop_definition: delete sagas",
	"DELETE FROM saga.instance WHERE definition = $1",
{TEXTOID, 0}};

static SpiStatement drop_versions = {"saga.drop_definition: delete versions",
	"DELETE FROM saga.definition WHERE name = $1",
{TEXTOID, 0}};

static SpiStatement drop_name = {"saga.drop_definition: delete the name",
	"DELETE FROM saga.definition_name WHERE name = $1",
{TEXTOID, 0}};

/*
 * saga.drop_definition(name text) RETURNS void
 *
 * Deletes every version of a definition, its finished sagas (completed,
 * compensated, cancelled) with their step runs, and its name, which anyone
 * with EXECUTE on saga.define may then define anew.  Only a role with the
 * privileges of the name's owner (the role that first defined it: a
 * member, or a superuser) may (42501); refused while a saga of it is
 * running, compensating or failed (55006).  Takes the name's row lock,
 * then SHARE ROW EXCLUSIVE on saga.instance until the transaction ends, so
 * that no saga.start of it can commit a saga in between.
 */
Datum
outbox_saga_saga_drop_definition(PG_FUNCTION_ARGS)
{
	char	   *name;
	Datum		values[1];
	bool		isnull;
	Oid			owner;
	int64		in_flight;

	SqlRequireArg(fcinfo, 0, "name");
	name = SqlNameText(PG_GETARG_TEXT_PP(0), "saga name",
					   SAGA_MAX_NAME_BYTES, NULL);
	values[0] = CStringGetTextDatum(name);

	SpiConnect();
	(void) SagaRunAsExtension(SAGA_Q_HEAD_LOCK, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("saga definition \"%s\" does not exist", name)));
	owner = DatumGetObjectId(SagaColumn(SPI_tuptable, 0, 1, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of saga definition \"%s\"", name),
				 errdetail("Only the role that first defined a saga, a member of it, or a superuser may drop it.")));

	(void) RunAsExtensionRun(&drop_lock_instances, NULL, NULL, SPI_OK_UTILITY);
	(void) RunAsExtensionRun(&drop_in_flight, values, NULL, SPI_OK_SELECT);
	in_flight = DatumGetInt64(SagaColumn(SPI_tuptable, 0, 1, &isnull));
	if (in_flight > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("saga definition \"%s\" has %lld sagas that are not finished",
						name, (long long) in_flight),
				 errhint("Let them finish, or cancel them (saga.cancel) and retry failed ones (saga.retry) first.")));

	(void) RunAsExtensionRun(&drop_runs, values, NULL, SPI_OK_DELETE);
	(void) RunAsExtensionRun(&drop_instances, values, NULL, SPI_OK_DELETE);
	(void) RunAsExtensionRun(&drop_versions, values, NULL, SPI_OK_DELETE);
	(void) RunAsExtensionRun(&drop_name, values, NULL, SPI_OK_DELETE);
	SpiFinish();
	PG_RETURN_VOID();
}

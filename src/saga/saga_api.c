/*-------------------------------------------------------------------------
 *
 * saga_api.c
 *		The SQL API on sagas: saga.start, saga.complete_step,
 *		saga.register_compensation, saga.cancel and saga.retry.
 *
 * Every function runs in the caller's transaction: nothing it writes is
 * visible to the dispatcher before that transaction commits (a saga starts
 * iff its starting transaction commits, G9), and an error changes nothing
 * (G11).  Functions that make work for the worker count it and wake the
 * dispatcher at commit (WakeupNoteSagaWork): the driver's round runs only
 * when such a count moved or something fell due (saga_driver.c).  The
 * state machine they share with the worker, and every statement they run,
 * are in saga_state.c; saga.define is in saga_define.c.
 *
 * PRIVILEGES
 *	The functions are SECURITY INVOKER: EXECUTE decides who may call them
 *	(nothing is granted to PUBLIC).  A role allowed to call saga.start may
 *	start any definition; the saga records its starter (started_by) and
 *	the caller's trace context (outbox_saga.traceparent/.tracestate,
 *	checked when set; saga.instance.trace), which its steps pass on.
 *	saga.complete_step, saga.cancel and saga.retry act only on sagas whose
 *	definition owner or starter the caller has the privileges of
 *	(check_may_act: a member, or a superuser); a saga started before 0.2.0
 *	has no starter recorded.  saga.start's input and complete_step's result
 *	are at most SAGA_MAX_INPUT_BYTES (54000).  saga.register_compensation additionally
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

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "base/jsonb_util.h"
#include "base/run_as.h"
#include "base/sql_args.h"
#include "base/trace_context.h"
#include "base/uuidv7.h"
#include "events/wakeup.h"
#include "saga/saga.h"

PG_FUNCTION_INFO_V1(outbox_saga_saga_start);
PG_FUNCTION_INFO_V1(outbox_saga_saga_complete_step);
PG_FUNCTION_INFO_V1(outbox_saga_saga_register_compensation);
PG_FUNCTION_INFO_V1(outbox_saga_saga_cancel);
PG_FUNCTION_INFO_V1(outbox_saga_saga_retry);

/* The longest idempotency key, in bytes. */
#define SAGA_MAX_KEY_BYTES		512

/*
 * The largest saga input and step result (complete_step), in bytes of
 * jsonb: a saga's input travels in every step's ctx, so it stays small.
 */
#define SAGA_MAX_INPUT_BYTES	(1024 * 1024)

/* A saga's row as locked by lock_saga(); strings live in SPI memory. */
typedef struct SagaRow
{
	pg_uuid_t	id;
	char	   *definition;
	char	   *status;
	Oid			owner;
	Oid			started_by;		/* InvalidOid: started before 0.2.0 */
	Jsonb	   *steps;
	Jsonb	   *options;
	bool		deadline_passed;
} SagaRow;



/*
 * check_size
 *		Refuse a jsonb argument larger than SAGA_MAX_INPUT_BYTES (54000).
 */
static void
check_size(Jsonb *value, const char *what)
{
	if (VARSIZE(value) > SAGA_MAX_INPUT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", what),
				 errdetail("It has %zu bytes as jsonb; the limit is %d.",
						   (size_t) VARSIZE(value), SAGA_MAX_INPUT_BYTES)));
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
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int32		definition_id;
	int			tries;
	Jsonb	   *trace = NULL;

	SqlRequireArg(fcinfo, 0, "definition");
	SqlRequireArg(fcinfo, 1, "input");
	definition = PG_GETARG_TEXT_PP(0);
	input = PG_GETARG_JSONB_P(1);
	check_size(input, "saga input");
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

	/* The trace context of this transaction, which the saga keeps. */
	if (TraceCurrentIsSet())
	{
		Jsonb	   *current = TraceCurrentHeaders();

		trace = palloc(VARSIZE(current));
		memcpy(trace, current, VARSIZE(current));
	}

	SpiConnect();
	values[0] = PointerGetDatum(definition);
	(void) SagaRunAsExtension(SAGA_Q_START_LOOKUP, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("saga definition \"%s\" does not exist", text_to_cstring(definition)),
				 errhint("Define it with saga.define().")));
	definition_id = DatumGetInt32(SagaColumn(SPI_tuptable, 0, 1, &isnull));

	for (tries = 0;; tries++)
	{
		OutboxUuidV7(GetCurrentTimestamp(), id);
		values[0] = UUIDPGetDatum(id);
		values[1] = Int32GetDatum(definition_id);
		values[2] = JsonbPGetDatum(input);
		values[3] = key ? PointerGetDatum(key) : (Datum) 0;
		nulls[3] = key ? ' ' : 'n';
		values[4] = ObjectIdGetDatum(GetUserId());
		values[5] = trace ? JsonbPGetDatum(trace) : (Datum) 0;
		nulls[5] = trace ? ' ' : 'n';
		(void) SagaRunAsExtension(SAGA_Q_START_INSERT, values, nulls, SPI_OK_INSERT);
		if (SPI_processed == 1)
		{
			WakeupNoteSagaWork();
			break;
		}

		/* The key is taken (by a committed saga: the insert waited). */
		if (key == NULL)
			elog(ERROR, "could not start saga \"%s\"", text_to_cstring(definition));
		values[0] = PointerGetDatum(key);
		(void) SagaRunAsExtension(SAGA_Q_START_EXISTING, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			memcpy(id, DatumGetUUIDP(SagaColumn(SPI_tuptable, 0, 1, &isnull)), sizeof(pg_uuid_t));
			break;
		}
		if (tries >= 3)
			elog(ERROR, "could not start saga \"%s\": its idempotency key is taken and not found",
				 text_to_cstring(definition));
	}
	SpiFinish();
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
	(void) SagaRunAsExtension(SAGA_Q_LOCK_SAGA, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("saga %s does not exist", SagaIdString(id))));
	row->id = *id;
	row->definition = SagaColumnText(SPI_tuptable, 0, 1);
	row->status = SagaColumnText(SPI_tuptable, 0, 2);
	row->owner = DatumGetObjectId(SagaColumn(SPI_tuptable, 0, 3, &isnull));
	row->steps = DatumGetJsonbPCopy(SagaColumn(SPI_tuptable, 0, 4, &isnull));
	row->options = DatumGetJsonbPCopy(SagaColumn(SPI_tuptable, 0, 5, &isnull));
	row->deadline_passed = DatumGetBool(SagaColumn(SPI_tuptable, 0, 6, &isnull));
	if (isnull)
		row->deadline_passed = false;
	row->started_by = DatumGetObjectId(SagaColumn(SPI_tuptable, 0, 7, &isnull));
	if (isnull)
		row->started_by = InvalidOid;
}

/*
 * check_may_act
 *		Only a role with the privileges of the definition's owner or of the
 *		role that started the saga (a member of either: GRANT owner TO x,
 *		or a superuser) may complete a step of it, cancel it or retry it.
 *		EXECUTE on the function alone is not enough.
 */
static void
check_may_act(const SagaRow *row, const char *verb)
{
	Oid			me = GetUserId();

	if (has_privs_of_role(me, row->owner))
		return;
	if (OidIsValid(row->started_by) && has_privs_of_role(me, row->started_by))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s a saga of definition \"%s\"",
					verb, row->definition),
			 errdetail("Saga %s: only the definition's owner, the role that started the saga, members of either, and superusers may.",
					   SagaIdString(&row->id))));
}


/*
 * lock_saga_in_status
 *		For saga.cancel and saga.retry: connect to SPI, lock the saga of
 *		argument 0 and require it to be 'status' ("cannot <verb> a saga
 *		that is ...").  Returns its id.
 */
static pg_uuid_t *
lock_saga_in_status(FunctionCallInfo fcinfo, SagaRow *row, const char *status,
					const char *verb, const char *participle)
{
	pg_uuid_t  *id;

	SqlRequireArg(fcinfo, 0, "saga_id");
	id = PG_GETARG_UUID_P(0);

	SpiConnect();
	lock_saga(id, row);
	check_may_act(row, verb);
	if (strcmp(row->status, status) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s a saga that is %s", verb, row->status),
				 errdetail("Saga %s is %s; only a %s saga can be %s.",
						   SagaIdString(id), row->status, status, participle)));
	return id;
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
	{
		result = PG_GETARG_JSONB_P(3);
		check_size(result, "step result");
	}

	SpiConnect();
	lock_saga(id, &row);
	check_may_act(&row, "complete a step of");

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(step);
	(void) SagaRunAsExtension(SAGA_Q_STEP_RUNS, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (SagaDefinitionHasStep(row.steps, step))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step \"%s\" is not awaiting completion", step),
					 errdetail("It has not started in saga %s, which is %s.",
							   SagaIdString(id), row.status)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" does not exist in saga definition \"%s\"", step,
						row.definition),
				 errdetail("Saga %s has no step or compensation of that name.",
						   SagaIdString(id))));
	}
	for (i = 0; i < SPI_processed && waiting < 0; i++)
	{
		char	   *status = SagaColumnText(SPI_tuptable, i, 2);

		if (strcmp(status, "waiting") == 0)
			waiting = (int) i;
	}
	if (waiting < 0)
	{
		char	   *phase = SagaColumnText(SPI_tuptable, 0, 1);
		char	   *status = SagaColumnText(SPI_tuptable, 0, 2);
		bool		timed_out = DatumGetBool(SagaColumn(SPI_tuptable, 0, 3, &isnull));

		if (timed_out && strcmp(status, "succeeded") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step \"%s\" timed out", step),
					 errdetail("Its %s in saga %s waited for saga.complete_step until its timeout; it is %s now.",
							   phase, SagaIdString(id), status)));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("step \"%s\" is not awaiting completion", step),
				 errdetail("Its %s in saga %s is %s.", phase, SagaIdString(id), status)));
	}
	if (DatumGetBool(SagaColumn(SPI_tuptable, waiting, 4, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("step \"%s\" timed out", step),
				 errdetail("Its %s in saga %s waited for saga.complete_step until its timeout.",
						   SagaColumnText(SPI_tuptable, waiting, 1), SagaIdString(id))));
	if (row.deadline_passed && strcmp(SagaColumnText(SPI_tuptable, waiting, 1), "action") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the deadline of the saga has passed"),
				 errdetail("Saga %s compensates instead of continuing.", SagaIdString(id))));

	outcome.saga_id = *id;
	outcome.step = step;
	outcome.phase = SagaColumnText(SPI_tuptable, waiting, 1);
	outcome.kind = success ? SAGA_OK : SAGA_FAIL;
	outcome.result = result;
	outcome.error = success ? NULL : pstrdup("saga.complete_step reported a failure");
	RunAsExtensionBegin(&saved);
	(void) SagaApplyOutcomes(&outcome, 1, GetCurrentTimestamp());
	RunAsExtensionEnd(&saved);
	SpiFinish();

	WakeupNoteSagaWork();
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
	name = SqlNameText(PG_GETARG_TEXT_PP(1), "compensation name",
					   SAGA_MAX_NAME_BYTES, NULL);
	call = PG_GETARG_JSONB_P(2);

	SpiConnect();
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
						   SagaIdString(id), row.status)));
	if (SagaDefinitionHasStep(row.steps, name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("\"%s\" is the name of a step of saga definition \"%s\"", name,
						row.definition),
				 errhint("Give the ad-hoc compensation a name of its own.")));

	JsonbValueFromJsonb(call, &v);	/* a scalar: SagaValidateCall says so */
	normalized = SagaValidateCall(&v, psprintf("compensation \"%s\"", name), row.owner);

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(name);
	values[2] = JsonbPGetDatum(normalized);
	(void) SagaRunAsExtension(SAGA_Q_COMP_EXISTING, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		if (!DatumGetBool(SagaColumn(SPI_tuptable, 0, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("compensation \"%s\" is already registered with another call", name),
					 errdetail("Saga %s has a compensation of that name.", SagaIdString(id))));
		SpiFinish();
		PG_RETURN_VOID();
	}
	values[3] = JsonbPGetDatum(row.options);
	(void) SagaRunAsExtension(SAGA_Q_COMP_INSERT, values, NULL, SPI_OK_INSERT);
	SpiFinish();

	WakeupNoteSagaWork();
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

	id = lock_saga_in_status(fcinfo, &row, "running", "cancel", "cancelled");

	values[0] = UUIDPGetDatum(id);
	(void) SagaRunAsExtension(SAGA_Q_ACTIVE_RUN, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		active.saga_id = *id;
		active.step = SagaColumnText(SPI_tuptable, 0, 1);
		active.phase = SagaColumnText(SPI_tuptable, 0, 2);
		active_status = SagaColumnText(SPI_tuptable, 0, 3);
	}
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	(void) SagaRunAsExtension(SAGA_Q_CANCEL, values, nulls, SPI_OK_UPDATE);

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
	SpiFinish();

	WakeupNoteSagaWork();
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

	id = lock_saga_in_status(fcinfo, &row, "failed", "retry", "retried");

	values[0] = UUIDPGetDatum(id);
	(void) SagaRunAsExtension(SAGA_Q_RETRY_RUN, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "failed saga %s has no failed compensation", SagaIdString(id));
	values[1] = CStringGetTextDatum(SagaColumnText(SPI_tuptable, 0, 1));
	(void) SagaRunAsExtension(SAGA_Q_RETRY_SAGA, values, NULL, SPI_OK_UPDATE);
	SpiFinish();

	WakeupNoteSagaWork();
	PG_RETURN_VOID();
}

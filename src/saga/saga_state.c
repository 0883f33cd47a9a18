/*-------------------------------------------------------------------------
 *
 * saga_state.c
 *		Every statement on the saga tables, and the saga state machine
 *		(SagaApplyOutcomes, SagaAdvanceCompensation) that the SQL API and
 *		the driver share.
 *
 * STATE
 *	All of it lives in tables (src/sql/saga.sql): saga.instance (one row per
 *	saga, its status) and saga.step_run (one row per step action or
 *	compensation record, its status, attempts and policy).  A saga has at
 *	most one *active* run - pending, running or waiting - at any time
 *	(a unique partial index enforces it): actions run one after another, and
 *	so do compensations.
 *
 *	Saga status:
 *	  running -----> completed                 (the last action succeeded)
 *	     |
 *	     | an action gave up (max_attempts), the deadline passed, cancel
 *	     v
 *	  compensating -> compensated              (every record succeeded)
 *	     |        \--> cancelled               (same, after saga.cancel)
 *	     v
 *	  failed  (a compensation gave up; saga.retry goes back to compensating)
 *
 *	Run status: recorded (a compensation record, not needed yet), pending
 *	(at next_attempt_at), running, waiting (for saga.complete_step, until
 *	timeout_at), succeeded, failed (gave up), cancelled (never ran).
 *
 *	When an action succeeds: its result goes into instance.results, its
 *	compensation (if the step has one) becomes a 'recorded' run, and the
 *	next action is inserted as pending (or the saga completes).  When an
 *	attempt fails: the run goes back to pending with a backoff (full
 *	jitter over min(backoff_max, backoff_base * 2^(attempts-1))) while
 *	attempts < max_attempts, else it fails for good.  When a saga
 *	compensates and has no active run, the record with the highest seq
 *	(recorded last: reverse order) becomes pending; with none left the
 *	saga ends compensated (cancelled after saga.cancel).  A compensation
 *	that gives up makes the saga failed; saga.retry() makes it pending again
 *	with attempts starting over.  An action that is still running when the
 *	saga starts compensating (cancel, deadline) holds compensation back
 *	until its outcome is known; if it succeeded, its own compensation runs
 *	first.
 *
 * STATEMENTS
 *	Each statement is an SpiStatement of the table below (base/spi_util.h:
 *	prepared and kept on first use, parameters only), each saying which
 *	tables it touches.  SagaRun runs one in the caller's transaction, with
 *	the caller's identity; SagaRunAsExtension switches to the extension's
 *	rights for it (the SQL API: the tables are granted to no one).  The
 *	driver's statements are planned at every execution (custom plans):
 *	each one works on a whole batch, so planning costs little per step, and
 *	a generic plan cached while the tables were small (a fresh
 *	installation) would scan them whole until autovacuum analyzed them.
 *
 * INVARIANTS
 *	Every caller of SagaApplyOutcomes and SagaAdvanceCompensation holds the
 *	instance row lock (FOR NO KEY UPDATE) of every saga it passes, is
 *	connected to SPI, runs with rights that may write the saga tables and
 *	with search_path pinned.  They change nothing outside the caller's
 *	transaction: a crash or an error before its commit leaves the sagas as
 *	they were (see CRASH in saga_driver.c).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "saga/saga.h"

/* A step run's policy columns, from a normalized step object 's'. */
#define POLICY_COLUMNS "max_attempts, timeout, backoff_base, backoff_max"
#define POLICY_VALUES(s, attempts_key) \
	"(" s "->>'" attempts_key "')::integer," \
	" pg_catalog.make_interval(secs => (" s "->>'timeout')::float8)," \
	" pg_catalog.make_interval(secs => (" s "->>'backoff_base')::float8)," \
	" pg_catalog.make_interval(secs => (" s "->>'backoff_max')::float8)"


/*
 * The idempotency key and the ctx of run 'r' of saga 'i' (CALLS in
 * saga_call.c): the same for every attempt and after a crash.
 */
#define IDEMPOTENCY_KEY_SQL "i.id::text || ':' || r.step || ':' || r.phase"
#define CTX_SQL \
	"pg_catalog.jsonb_build_object(" \
	"    'saga_id', i.id, 'definition', i.definition, 'step', r.step," \
	"    'phase', r.phase, 'attempt', r.attempts," \
	"    'idempotency_key', " IDEMPOTENCY_KEY_SQL "," \
	"    'input', i.input, 'results', i.results)"

static SpiStatement statements[SAGA_Q_COUNT] = {
	/* ---- the SQL API: saga.define, then the functions on one saga ---- */

	/* Touches: saga.definition_name (lock). */
	[SAGA_Q_HEAD_LOCK] = {
		"saga.define: lock the definition name",
		"SELECT owner, latest_version FROM saga.definition_name WHERE name = $1 FOR UPDATE",
		{TEXTOID, 0}
	},

	/* Touches: saga.definition_name (insert). */
	[SAGA_Q_HEAD_INSERT] = {
		"saga.define: create the definition name",
		"INSERT INTO saga.definition_name (name, owner, latest_version) VALUES ($1, $2, 1)"
		" ON CONFLICT (name) DO NOTHING",
		{TEXTOID, OIDOID, 0}
	},

	/* Touches: saga.definition_name (update). */
	[SAGA_Q_HEAD_BUMP] = {
		"saga.define: next version",
		"UPDATE saga.definition_name SET latest_version = latest_version + 1"
		" WHERE name = $1 RETURNING latest_version",
		{TEXTOID, 0}
	},

	/* Touches: saga.definition, saga.definition_name. */
	[SAGA_Q_LATEST_SAME] = {
		"saga.define: compare with the latest version",
		"SELECT d.version FROM saga.definition d JOIN saga.definition_name n"
		"    ON n.name = d.name AND n.latest_version = d.version"
		" WHERE d.name = $1 AND d.steps = $2 AND d.options = $3"
		"   AND d.search_path = $4",
		{TEXTOID, JSONBOID, JSONBOID, TEXTOID, 0}
	},

	/*
	 * The same in a database whose SQL is still 0.1.0's (no search_path
	 * column until ALTER EXTENSION UPDATE, which gives the rows 0.1.0's
	 * pg_catalog, pg_temp): the path is not compared.
	 */
	[SAGA_Q_LATEST_SAME_010] = {
		"saga.define: compare with the latest version",
		"SELECT d.version FROM saga.definition d JOIN saga.definition_name n"
		"    ON n.name = d.name AND n.latest_version = d.version"
		" WHERE d.name = $1 AND d.steps = $2 AND d.options = $3",
		{TEXTOID, JSONBOID, JSONBOID, 0}
	},

	/* Touches: saga.definition (insert). */
	[SAGA_Q_DEFINITION_INSERT] = {
		"saga.define: insert the version",
		"INSERT INTO saga.definition (name, version, steps, options, owner, search_path)"
		" VALUES ($1, $2, $3, $4, $5, $6)",
		{TEXTOID, INT4OID, JSONBOID, JSONBOID, OIDOID, TEXTOID, 0}
	},

	/* The same in a 0.1.0 database, without the search_path. */
	[SAGA_Q_DEFINITION_INSERT_010] = {
		"saga.define: insert the version",
		"INSERT INTO saga.definition (name, version, steps, options, owner)"
		" VALUES ($1, $2, $3, $4, $5)",
		{TEXTOID, INT4OID, JSONBOID, JSONBOID, OIDOID, 0}
	},

	/* Touches: saga.definition_name, saga.definition. */
	[SAGA_Q_START_LOOKUP] = {
		"saga.start: find the definition",
		"SELECT d.id FROM saga.definition_name n JOIN saga.definition d"
		"    ON d.name = n.name AND d.version = n.latest_version"
		" WHERE n.name = $1",
		{TEXTOID, 0}
	},

	/*
	 * $1 id, $2 definition id, $3 input, $4 key, $5 the starting role
	 * Touches: saga.instance, saga.step_run (insert); saga.definition.
	 */
	[SAGA_Q_START_INSERT] = {
		"saga.start: insert the saga and its first run",
		"WITH ins AS ("
		"  INSERT INTO saga.instance (id, definition, definition_id, version, status, input,"
		"                             current_step, idempotency_key, deadline, started_by, trace)"
		"  SELECT $1, d.name, d.id, d.version, 'running', $3, d.steps->0->>'name', $4,"
		"         pg_catalog.now() + pg_catalog.make_interval(secs => (d.options->>'deadline')::float8),"
		"         $5, $6"
		"    FROM saga.definition d WHERE d.id = $2"
		"  ON CONFLICT (definition, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
		"  RETURNING id, definition_id"
		")"
		"INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status,"
		"                           next_attempt_at, " POLICY_COLUMNS ")"
		"SELECT ins.id, s->>'name', 'action', 0, pg_catalog.nextval('saga.run_seq'), s->'action',"
		"       'pending', pg_catalog.now(), " POLICY_VALUES("s", "max_attempts")
		"  FROM ins JOIN saga.definition d ON d.id = ins.definition_id,"
		"       LATERAL (SELECT d.steps->0 AS s) first",
		{UUIDOID, INT4OID, JSONBOID, TEXTOID, OIDOID, JSONBOID, 0}
	},

	/* Touches: saga.instance, saga.definition. */
	[SAGA_Q_START_EXISTING] = {
		"saga.start: the saga of a taken key",
		"SELECT i.id FROM saga.instance i JOIN saga.definition d ON d.id = $2"
		" WHERE i.definition = d.name AND i.idempotency_key = $1",
		{TEXTOID, INT4OID, 0}
	},

	/* Touches: saga.instance (lock), saga.definition. */
	[SAGA_Q_LOCK_SAGA] = {
		"lock a saga",
		"SELECT i.definition, i.status, d.owner, d.steps, d.options,"
		"       i.status = 'running' AND i.deadline <= pg_catalog.clock_timestamp(),"
		"       i.started_by"
		"  FROM saga.instance i JOIN saga.definition d ON d.id = i.definition_id"
		" WHERE i.id = $1"
		"   FOR NO KEY UPDATE OF i",
		{UUIDOID, 0}
	},

	/* Touches: saga.step_run. */
	[SAGA_Q_STEP_RUNS] = {
		"saga.complete_step: the runs of a step",
		"SELECT phase, status, timed_out_at IS NOT NULL,"
		"       status = 'waiting' AND timeout_at <= pg_catalog.clock_timestamp()"
		"  FROM saga.step_run WHERE saga_id = $1 AND step = $2"
		" ORDER BY seq DESC",
		{UUIDOID, TEXTOID, 0}
	},

	/* Touches: saga.step_run. */
	[SAGA_Q_ACTIVE_RUN] = {
		"saga.cancel: the active run",
		"SELECT step, phase, status FROM saga.step_run"
		" WHERE saga_id = $1 AND status IN ('pending', 'running', 'waiting')",
		{UUIDOID, 0}
	},

	/* Touches: saga.instance (update). */
	[SAGA_Q_CANCEL] = {
		"saga.cancel: mark the saga",
		"UPDATE saga.instance"
		"   SET status = 'compensating', cancelled = true,"
		"       error = 'cancelled' || COALESCE(': ' || $2, ''),"
		"       updated_at = pg_catalog.clock_timestamp()"
		" WHERE id = $1",
		{UUIDOID, TEXTOID, 0}
	},

	/* Touches: saga.step_run (update). */
	[SAGA_Q_RETRY_RUN] = {
		"saga.retry: the compensation that gave up",
		"UPDATE saga.step_run"
		"   SET status = 'pending', attempts = 0, next_attempt_at = pg_catalog.now(),"
		"       finished_at = NULL"
		" WHERE saga_id = $1 AND phase = 'compensation' AND status = 'failed'"
		" RETURNING step",
		{UUIDOID, 0}
	},

	/* Touches: saga.instance (update). */
	[SAGA_Q_RETRY_SAGA] = {
		"saga.retry: compensate again",
		"UPDATE saga.instance"
		"   SET status = 'compensating', compensation_error = NULL, current_step = $2,"
		"       updated_at = pg_catalog.clock_timestamp()"
		" WHERE id = $1",
		{UUIDOID, TEXTOID, 0}
	},

	/* Touches: saga.step_run. */
	[SAGA_Q_COMP_EXISTING] = {
		"saga.register_compensation: an existing record",
		"SELECT call = $3 FROM saga.step_run"
		" WHERE saga_id = $1 AND step = $2 AND phase = 'compensation'",
		{UUIDOID, TEXTOID, JSONBOID, 0}
	},

	/*
	 * $1 saga, $2 name, $3 call, $4 options
	 * Touches: saga.step_run (insert).
	 */
	[SAGA_Q_COMP_INSERT] = {
		"saga.register_compensation: insert the record",
		"INSERT INTO saga.step_run (saga_id, step, phase, seq, call, status, "
		POLICY_COLUMNS ")"
		"VALUES ($1, $2, 'compensation', pg_catalog.nextval('saga.run_seq'), $3, 'recorded',"
		"        " POLICY_VALUES("$4", "compensation_max_attempts") ")",
		{UUIDOID, TEXTOID, JSONBOID, JSONBOID, 0}
	},

	/* ---- the state machine ---- */

	/*
	 * $1 saga ids, $2 steps, $3 phases, $4 outcome kinds, $5 results,
	 * $6 errors, $7 now.  Each run, addressed by its primary key, ends its
	 * attempt; see SagaApplyOutcomes.
	 * Touches: saga.step_run (update).
	 */
	[SAGA_Q_RECORD] = {
		"recording saga step outcomes",
		"UPDATE saga.step_run r"
		"   SET status = CASE o.kind"
		"                  WHEN 'ok' THEN 'succeeded'"
		"                  WHEN 'wait' THEN 'waiting'"
		"                  WHEN 'skip' THEN 'cancelled'"
		"                  WHEN 'requeue' THEN 'pending'"
		"                  WHEN 'abort' THEN 'failed'"
		"                  ELSE CASE WHEN r.attempts < r.max_attempts THEN 'pending' ELSE 'failed' END"
		"                END,"
		"       attempts = r.attempts - CASE WHEN o.kind = 'requeue' THEN 1 ELSE 0 END,"
		"       interruptions = r.interruptions + CASE WHEN o.kind = 'requeue' THEN 1 ELSE 0 END,"
		"       result = CASE WHEN o.kind IN ('ok', 'wait') OR o.result IS NOT NULL"
		"                     THEN o.result ELSE r.result END,"
		"       error = COALESCE(o.error, r.error),"
		"       next_attempt_at = CASE"
		"           WHEN o.kind = 'requeue' THEN $7"
		"           WHEN o.kind IN ('fail', 'timeout') AND r.attempts < r.max_attempts THEN"
		"                $7 + pg_catalog.random() * LEAST(r.backoff_max,"
		"                     r.backoff_base * pg_catalog.power(2, LEAST(r.attempts - 1, 40)))"
		"           END,"
		"       timeout_at = CASE WHEN o.kind = 'wait' THEN r.timeout_at END,"
		"       timed_out_at = CASE WHEN o.kind = 'timeout' THEN $7 ELSE r.timed_out_at END,"
		"       finished_at = CASE"
		"           WHEN o.kind IN ('ok', 'skip', 'abort') THEN $7"
		"           WHEN o.kind IN ('fail', 'timeout') AND r.attempts >= r.max_attempts THEN $7"
		"           END"
		"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]),"
		"                  pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[]),"
		"                  pg_catalog.unnest($5::jsonb[]), pg_catalog.unnest($6::text[]))"
		"       AS o(saga_id, step, phase, kind, result, error)"
		" WHERE r.saga_id = o.saga_id AND r.step = o.step AND r.phase = o.phase"
		"   AND r.status IN ('pending', 'running', 'waiting')"
		" RETURNING r.saga_id, r.step, r.phase, r.status",
		{UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids, $2 steps, $3 now: these actions succeeded.  Store the
	 * result, record the compensation, schedule the next action or complete
	 * the saga.  Returns each saga's status (compensating: the action ended
	 * after the saga had started compensating).
	 * Touches: saga.step_run (insert), saga.instance (update); saga.definition.
	 */
	[SAGA_Q_ACTION_DONE] = {
		"advancing sagas after a step",
		"WITH done AS ("
		"  SELECT u.saga_id, u.step, r.step_index, r.result, i.status,"
		"         d.steps -> r.step_index AS def,"
		"         d.steps -> (r.step_index + 1) AS next"
		"    FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
		"         AS u(saga_id, step)"
		"    JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
		"                        AND r.phase = 'action'"
		"    JOIN saga.instance i ON i.id = u.saga_id"
		"    JOIN saga.definition d ON d.id = i.definition_id"
		"), comp AS ("
		"  INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status, "
		POLICY_COLUMNS ")"
		"  SELECT saga_id, step, 'compensation', step_index,"
		"         pg_catalog.nextval('saga.run_seq'), def->'compensation', 'recorded', "
		POLICY_VALUES("def", "compensation_max_attempts")
		"    FROM done WHERE pg_catalog.jsonb_typeof(def->'compensation') = 'object'"
		"), nxt AS ("
		"  INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status,"
		"                             next_attempt_at, " POLICY_COLUMNS ")"
		"  SELECT saga_id, next->>'name', 'action', step_index + 1,"
		"         pg_catalog.nextval('saga.run_seq'), next->'action', 'pending', $3, "
		POLICY_VALUES("next", "max_attempts")
		"    FROM done WHERE status = 'running' AND next IS NOT NULL"
		")"
		"UPDATE saga.instance i"
		"   SET results = i.results || pg_catalog.jsonb_build_object(done.step, done.result),"
		"       status = CASE WHEN i.status = 'running' AND done.next IS NULL"
		"                     THEN 'completed' ELSE i.status END,"
		"       current_step = CASE WHEN i.status = 'running' THEN done.next->>'name'"
		"                           ELSE i.current_step END,"
		"       updated_at = $3"
		"  FROM done WHERE i.id = done.saga_id"
		" RETURNING i.id, i.status",
		{UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids, $2 steps, $3 now: these actions gave up.
	 * Touches: saga.instance (update); saga.step_run.
	 */
	[SAGA_Q_ACTION_GAVE_UP] = {
		"starting to compensate sagas",
		"UPDATE saga.instance i"
		"   SET status = 'compensating',"
		"       error = pg_catalog.format('step \"%s\" failed after %s attempt(s): %s',"
		"                                 r.step, r.attempts, r.error),"
		"       updated_at = $3"
		"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
		"         AS u(saga_id, step)"
		"  JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
		"                      AND r.phase = 'action'"
		" WHERE i.id = u.saga_id AND i.status = 'running'",
		{UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids, $2 steps, $3 now: these compensations gave up.
	 * Touches: saga.instance (update); saga.step_run.
	 */
	[SAGA_Q_COMP_GAVE_UP] = {
		"failing sagas",
		"UPDATE saga.instance i"
		"   SET status = 'failed', current_step = r.step,"
		"       compensation_error = pg_catalog.format("
		"           'compensation \"%s\" failed after %s attempt(s): %s',"
		"           r.step, r.attempts, r.error),"
		"       updated_at = $3"
		"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
		"         AS u(saga_id, step)"
		"  JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
		"                      AND r.phase = 'compensation'"
		" WHERE i.id = u.saga_id",
		{UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids, $2 now: see SagaAdvanceCompensation.
	 * Touches: saga.step_run, saga.instance (update).
	 */
	[SAGA_Q_ADVANCE] = {
		"advancing compensations",
		"WITH s AS ("
		"  SELECT i.id FROM saga.instance i"
		"   WHERE i.id = ANY ($1) AND i.status = 'compensating'"
		"     AND (SELECT count(*) FROM saga.step_run a WHERE a.saga_id = i.id"
		"             AND a.status IN ('pending', 'running', 'waiting')) = 0"
		"), nxt AS ("
		"  SELECT s.id AS saga_id, n.step"
		"    FROM s CROSS JOIN LATERAL ("
		"         SELECT r.step FROM saga.step_run r"
		"          WHERE r.saga_id = s.id AND r.phase = 'compensation' AND r.status = 'recorded'"
		"          ORDER BY r.seq DESC LIMIT 1) n"
		"), promoted AS ("
		"  UPDATE saga.step_run r"
		"     SET status = 'pending', seq = pg_catalog.nextval('saga.run_seq'),"
		"         next_attempt_at = $2"
		"    FROM nxt"
		"   WHERE r.saga_id = nxt.saga_id AND r.step = nxt.step AND r.phase = 'compensation'"
		"  RETURNING r.saga_id, r.step"
		")"
		"UPDATE saga.instance i"
		"   SET status = CASE WHEN p.saga_id IS NOT NULL THEN i.status"
		"                     WHEN i.cancelled THEN 'cancelled' ELSE 'compensated' END,"
		"       current_step = p.step,"
		"       updated_at = $2"
		"  FROM s LEFT JOIN promoted p ON p.saga_id = s.id"
		" WHERE i.id = s.id",
		{UUIDARRAYOID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/* ---- the driver ---- */

	/*
	 * $1 now, $2 limit: running sagas past their deadline start
	 * compensating; their pending or waiting action fails for good (a
	 * running one is left to its round).  Returns the sagas.
	 * Touches: saga.instance (lock, update), saga.step_run (update).
	 */
	[SAGA_Q_DEADLINES] = {
		"enforcing saga deadlines",
		"WITH s AS ("
		"  SELECT i.id, a.step, a.phase FROM saga.instance i"
		"    LEFT JOIN LATERAL ("
		"         SELECT r.step, r.phase FROM saga.step_run r"
		"          WHERE r.saga_id = i.id AND r.status IN ('pending', 'running', 'waiting')"
		"          LIMIT 1) a ON true"
		"   WHERE i.status = 'running' AND i.deadline <= $1"
		"   ORDER BY i.deadline LIMIT $2"
		"     FOR NO KEY UPDATE OF i SKIP LOCKED"
		"), a AS ("
		"  UPDATE saga.step_run r"
		"     SET status = 'failed', error = 'the saga''s deadline passed',"
		"         next_attempt_at = NULL, timeout_at = NULL, finished_at = $1"
		"    FROM s WHERE r.saga_id = s.id AND r.step = s.step AND r.phase = s.phase"
		"     AND r.status IN ('pending', 'waiting')"
		")"
		"UPDATE saga.instance i"
		"   SET status = 'compensating',"
		"       error = pg_catalog.format('deadline exceeded while running step \"%s\"',"
		"                                 i.current_step),"
		"       updated_at = $1"
		"  FROM s WHERE i.id = s.id"
		" RETURNING i.id",
		{TIMESTAMPTZOID, INT4OID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 now, $2 limit: waiting runs past their timeout.
	 * Touches: saga.step_run; saga.instance (lock).
	 */
	[SAGA_Q_TIMEOUTS] = {
		"finding saga wait timeouts",
		"SELECT r.saga_id, r.step, r.phase,"
		"       'timed out after ' || r.timeout || ' waiting for saga.complete_step'"
		"  FROM saga.step_run r JOIN saga.instance i ON i.id = r.saga_id"
		" WHERE r.status = 'waiting' AND r.timeout_at <= $1"
		" ORDER BY r.timeout_at LIMIT $2"
		"   FOR NO KEY UPDATE OF i SKIP LOCKED",
		{TIMESTAMPTZOID, INT4OID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids: lock these sagas (skipping those a user holds) and read
	 * their running run, with the ctx to pass to it and the saga's trace
	 * context (merged into ctx and emit headers in C, after
	 * TraceSanitize).  step is NULL for a saga that has no running run any
	 * more.
	 * Touches: saga.instance (lock), saga.definition, saga.step_run.
	 */
	[SAGA_Q_LOCK_CLAIMED] = {
		"locking claimed sagas",
		"SELECT i.id, i.status, d.owner, r.step, r.phase,"
		"       CASE WHEN r.call ? 'function' THEN 'function'"
		"            WHEN r.call ? 'emit' THEN 'emit'"
		"            WHEN r.call ? 'http' THEN 'http' END,"
		"       r.call->>'function',"
		"       r.call->'emit'->>'topic',"
		"       r.call->'emit'->>'event_type',"
		"       COALESCE((r.call->'emit'->>'await')::boolean, false),"
		"       CASE WHEN r.call ? 'emit' THEN"
		"            COALESCE(r.call->'emit'->'headers', '{}'::jsonb)"
		"            || pg_catalog.jsonb_build_object('saga_id', i.id::text, 'saga_step', r.step,"
		"                 'saga_phase', r.phase,"
		"                 'idempotency_key', " IDEMPOTENCY_KEY_SQL ")"
		"       END,"
		"       (pg_catalog.date_part('epoch', r.timeout) * 1000)::bigint,"
		"       " CTX_SQL ","
		"       d.search_path, i.trace"
		"  FROM pg_catalog.unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)"
		"  JOIN saga.instance i ON i.id = u.id"
		"  JOIN saga.definition d ON d.id = i.definition_id"
		"  LEFT JOIN LATERAL ("
		"       SELECT a.* FROM saga.step_run a"
		"        WHERE a.saga_id = i.id AND a.status IN ('pending', 'running', 'waiting')"
		"        LIMIT 1) r ON r.status = 'running'"
		" ORDER BY u.n"
		"   FOR NO KEY UPDATE OF i SKIP LOCKED",
		{UUIDARRAYOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 limit, $2 now: claim due pending runs.
	 * Touches: saga.step_run (lock, update).
	 */
	[SAGA_Q_CLAIM] = {
		"claiming saga steps",
		"UPDATE saga.step_run r"
		"   SET status = 'running', attempts = r.attempts + 1,"
		"       started_at = COALESCE(r.started_at, $2), timeout_at = $2 + r.timeout,"
		"       next_attempt_at = NULL"
		"  FROM (SELECT c.saga_id, c.step, c.phase FROM saga.step_run c"
		"         WHERE c.status = 'pending' AND c.next_attempt_at <= $2"
		"         ORDER BY c.next_attempt_at LIMIT $1"
		"           FOR UPDATE SKIP LOCKED) c"
		" WHERE r.saga_id = c.saga_id AND r.step = c.step AND r.phase = c.phase"
		" RETURNING r.saga_id",
		{INT4OID, TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 now: is a pending run due?
	 * Touches: saga.step_run.
	 */
	[SAGA_Q_READY] = {
		"checking for due saga steps",
		"SELECT EXISTS (SELECT 1 FROM saga.step_run"
		"                WHERE status = 'pending' AND next_attempt_at <= $1)",
		{TIMESTAMPTZOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids this process has claimed: every other running run was
	 * interrupted (no other process claims).  Locks their sagas.
	 * Touches: saga.step_run; saga.instance (lock).
	 */
	[SAGA_Q_ORPHANS] = {
		"finding interrupted saga steps",
		"SELECT r.saga_id, r.step, r.phase, r.interruptions"
		"  FROM saga.step_run r JOIN saga.instance i ON i.id = r.saga_id"
		" WHERE r.status = 'running' AND NOT (r.saga_id = ANY ($1))"
		"   FOR NO KEY UPDATE OF i SKIP LOCKED",
		{UUIDARRAYOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/* Touches: saga.step_run. */
	[SAGA_Q_ORPHANS_LEFT] = {
		"counting interrupted saga steps",
		"SELECT count(*) FROM saga.step_run"
		" WHERE status = 'running' AND NOT (saga_id = ANY ($1))",
		{UUIDARRAYOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids: those that still exist.
	 * Touches: saga.instance.
	 */
	[SAGA_Q_EXISTING] = {
		"checking deferred sagas",
		"SELECT i.id FROM pg_catalog.unnest($1::uuid[]) AS u(id)"
		"  JOIN saga.instance i ON i.id = u.id",
		{UUIDARRAYOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * When the next saga work falls due (see SagaNextDue).
	 * Touches: saga.step_run, saga.instance.
	 */
	[SAGA_Q_NEXT_DUE] = {
		"finding the next saga work",
		"SELECT LEAST("
		"  (SELECT min(next_attempt_at) FROM saga.step_run WHERE status = 'pending'),"
		"  (SELECT min(timeout_at) FROM saga.step_run WHERE status = 'waiting'),"
		"  (SELECT min(deadline) FROM saga.instance"
		"    WHERE status = 'running' AND deadline IS NOT NULL))",
		{0}, CURSOR_OPT_CUSTOM_PLAN
	},

	/*
	 * $1 saga ids just claimed: their running http runs (not the actions
	 * of sagas that stopped running: those are skipped), with what to send.
	 * The ctx and the trace context as in Q_LOCK_CLAIMED.
	 * Touches: saga.instance, saga.step_run.
	 */
	[SAGA_Q_HTTP_CALLS] = {
		"reading saga http calls",
		"SELECT r.saga_id, r.step, r.phase,"
		"       r.call->'http'->>'url', COALESCE(r.call->'http'->>'method', 'POST'),"
		"       r.call->'http'->'headers',"
		"       (pg_catalog.date_part('epoch', r.timeout) * 1000)::bigint,"
		"       " IDEMPOTENCY_KEY_SQL ","
		"       " CTX_SQL ", i.trace"
		"  FROM pg_catalog.unnest($1::uuid[]) AS u(id)"
		"  JOIN saga.instance i ON i.id = u.id"
		"  JOIN saga.step_run r ON r.saga_id = i.id AND r.status = 'running'"
		" WHERE r.call ? 'http' AND (r.phase = 'compensation' OR i.status = 'running')",
		{UUIDARRAYOID, 0}, CURSOR_OPT_CUSTOM_PLAN
	},
};

static const char *const outcome_kind_names[] = {
	[SAGA_OK] = "ok",
	[SAGA_WAIT] = "wait",
	[SAGA_FAIL] = "fail",
	[SAGA_TIMEOUT] = "timeout",
	[SAGA_ABORT] = "abort",
	[SAGA_SKIP] = "skip",
	[SAGA_REQUEUE] = "requeue",
};


/* ------------------------------------------------------------------------
 * Running statements
 * ------------------------------------------------------------------------
 */

/*
 * SagaRun
 *		Execute statement 'q' with the caller's identity; see SpiRun.
 */
uint64
SagaRun(SagaStatementId q, Datum *values, const char *nulls, int expect)
{
	Assert(q >= 0 && q < SAGA_Q_COUNT);
	return SpiRun(&statements[q], values, nulls, expect);
}

/*
 * SagaRunLatest
 *		SagaRun of a read-only statement with the latest snapshot (see
 *		SpiRunLatest): for a read that must see every commit that was
 *		visible before it began, whatever the transaction's isolation.
 */
uint64
SagaRunLatest(SagaStatementId q, Datum *values, const char *nulls, int expect)
{
	Assert(q >= 0 && q < SAGA_Q_COUNT);
	return SpiRunLatest(&statements[q], values, nulls, expect);
}

/*
 * SagaRunAsExtension
 *		Execute statement 'q' with the extension's rights (RunAsExtension:
 *		bootstrap superuser, SECURITY_RESTRICTED_OPERATION, search_path
 *		pinned), for the SQL API after its permission checks.  No user code
 *		runs while the identity is switched; an error restores it with the
 *		transaction's abort.
 */
uint64
SagaRunAsExtension(SagaStatementId q, Datum *values, const char *nulls, int expect)
{
	Assert(q >= 0 && q < SAGA_Q_COUNT);
	return RunAsExtensionRun(&statements[q], values, nulls, expect);
}

/*
 * SagaUuidArray / SagaTextArray
 *		One-dimensional arrays for statement parameters; a NULL string is a
 *		NULL element.
 */
Datum
SagaUuidArray(const pg_uuid_t *ids, int n)
{
	Datum	   *elems;
	int			i;

	if (n == 0)
		return PointerGetDatum(construct_empty_array(UUIDOID));
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&ids[i]);
	return PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false,
										   TYPALIGN_CHAR));
}

static Datum
varlena_array(Datum *elems, bool *isnull, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return PointerGetDatum(construct_empty_array(type));
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs, type,
											  -1, false, TYPALIGN_INT));
}

Datum
SagaTextArray(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		isnull[i] = (strings[i] == NULL);
		elems[i] = isnull[i] ? (Datum) 0 : CStringGetTextDatum(strings[i]);
	}
	return varlena_array(elems, isnull, n, TEXTOID);
}

/*
 * SagaColumn / SagaColumnText / SagaColumnUuid
 *		Column 'col' (from 1) of row 'row' of a statement's result.
 */
Datum
SagaColumn(SPITupleTable *tt, uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(tt->vals[row], tt->tupdesc, col, isnull);
}

char *
SagaColumnText(SPITupleTable *tt, uint64 row, int col)
{
	bool		isnull;
	Datum		d = SagaColumn(tt, row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

void
SagaColumnUuid(SPITupleTable *tt, uint64 row, int col, pg_uuid_t *out)
{
	bool		isnull;
	Datum		d = SagaColumn(tt, row, col, &isnull);

	if (isnull)
		elog(ERROR, "unexpected null saga id");
	memcpy(out, DatumGetUUIDP(d), sizeof(pg_uuid_t));
}

/* A saga id as text, for messages. */
char *
SagaIdString(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}


/* ------------------------------------------------------------------------
 * The state machine
 * ------------------------------------------------------------------------
 */

/*
 * run_on_steps
 *		Run statement 'q' (parameters: saga ids, steps, now) over n runs, if
 *		there are any.
 */
static void
run_on_steps(SagaStatementId q, const pg_uuid_t *ids, char **steps, int n,
			 TimestampTz now)
{
	Datum		values[3];

	if (n == 0)
		return;
	values[0] = SagaUuidArray(ids, n);
	values[1] = SagaTextArray(steps, n);
	values[2] = TimestampTzGetDatum(now);
	(void) SagaRun(q, values, NULL,
				   q == SAGA_Q_ACTION_DONE ? SPI_OK_UPDATE_RETURNING : SPI_OK_UPDATE);
}

/*
 * SagaAdvanceCompensation
 *		Compensating sagas among 'saga_ids' that have no active run: the
 *		compensation record with the highest seq becomes pending; a saga with
 *		none left ends compensated, or cancelled if saga.cancel() started
 *		its compensation.  The caller holds the sagas' row locks.
 */
void
SagaAdvanceCompensation(const pg_uuid_t *saga_ids, int n, TimestampTz now)
{
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = SagaUuidArray(saga_ids, n);
	values[1] = TimestampTzGetDatum(now);
	SagaRun(SAGA_Q_ADVANCE, values, NULL, SPI_OK_UPDATE);
}

/*
 * SagaApplyOutcomes
 *		Record how the attempt of the active run of each saga ended, then
 *		advance the sagas (see the file header).  The caller holds the
 *		sagas' row locks and has checked that each has an active run in the
 *		state the outcome is for (running, or waiting for complete_step and
 *		timeouts).  Every statement is set-based over the whole batch.
 */
int
SagaApplyOutcomes(const SagaOutcome *outcomes, int n, TimestampTz now)
{
	Datum	   *kinds;
	Datum	   *results;
	bool	   *results_null;
	char	  **errors;
	char	  **steps;
	char	  **phases;
	pg_uuid_t  *ids;
	Datum		values[7];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	pg_uuid_t  *done_ids,
			   *gave_up_ids,
			   *comp_gave_up_ids,
			   *advance_ids;
	char	  **done_steps,
			  **gave_up_steps,
			  **comp_gave_up_steps;
	int			ndone = 0,
				ngave_up = 0,
				ncomp_gave_up = 0,
				nadvance = 0;

	if (n == 0)
		return 0;

	ids = palloc(sizeof(pg_uuid_t) * n);
	kinds = palloc(sizeof(Datum) * n);
	results = palloc(sizeof(Datum) * n);
	results_null = palloc(sizeof(bool) * n);
	errors = palloc(sizeof(char *) * n);
	steps = palloc(sizeof(char *) * n);
	phases = palloc(sizeof(char *) * n);
	for (i = 0; i < (uint64) n; i++)
	{
		ids[i] = outcomes[i].saga_id;
		steps[i] = outcomes[i].step;
		phases[i] = outcomes[i].phase;
		kinds[i] = CStringGetTextDatum(outcome_kind_names[outcomes[i].kind]);
		results_null[i] = (outcomes[i].result == NULL);
		results[i] = results_null[i] ? (Datum) 0 : JsonbPGetDatum(outcomes[i].result);
		errors[i] = outcomes[i].error;
	}
	values[0] = SagaUuidArray(ids, n);
	values[1] = SagaTextArray(steps, n);
	values[2] = SagaTextArray(phases, n);
	values[3] = varlena_array(kinds, NULL, n, TEXTOID);
	values[4] = varlena_array(results, results_null, n, JSONBOID);
	values[5] = SagaTextArray(errors, n);
	values[6] = TimestampTzGetDatum(now);
	SagaRun(SAGA_Q_RECORD, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;

	done_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	gave_up_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	comp_gave_up_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	advance_ids = palloc(sizeof(pg_uuid_t) * (2 * nrows + 1));
	done_steps = palloc(sizeof(char *) * (nrows + 1));
	gave_up_steps = palloc(sizeof(char *) * (nrows + 1));
	comp_gave_up_steps = palloc(sizeof(char *) * (nrows + 1));

	for (i = 0; i < nrows; i++)
	{
		pg_uuid_t	id;
		char	   *step = SagaColumnText(rows, i, 2);
		bool		action = strcmp(SagaColumnText(rows, i, 3), "action") == 0;
		char	   *status = SagaColumnText(rows, i, 4);

		SagaColumnUuid(rows, i, 1, &id);
		if (strcmp(status, "succeeded") == 0)
		{
			if (action)
			{
				done_ids[ndone] = id;
				done_steps[ndone++] = step;
			}
			else
				advance_ids[nadvance++] = id;
		}
		else if (strcmp(status, "failed") == 0)
		{
			if (action)
			{
				gave_up_ids[ngave_up] = id;
				gave_up_steps[ngave_up++] = step;
				advance_ids[nadvance++] = id;
			}
			else
			{
				comp_gave_up_ids[ncomp_gave_up] = id;
				comp_gave_up_steps[ncomp_gave_up++] = step;
			}
		}
		else if (strcmp(status, "cancelled") == 0)
			advance_ids[nadvance++] = id;
	}
	SPI_freetuptable(rows);

	if (ndone > 0)
	{
		run_on_steps(SAGA_Q_ACTION_DONE, done_ids, done_steps, ndone, now);
		rows = SPI_tuptable;
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *status = SagaColumnText(rows, i, 2);

			/* An action that ended after compensation began (cancel). */
			if (strcmp(status, "compensating") == 0)
				SagaColumnUuid(rows, i, 1, &advance_ids[nadvance++]);
		}
		SPI_freetuptable(rows);
	}
	run_on_steps(SAGA_Q_ACTION_GAVE_UP, gave_up_ids, gave_up_steps, ngave_up, now);
	run_on_steps(SAGA_Q_COMP_GAVE_UP, comp_gave_up_ids, comp_gave_up_steps,
				 ncomp_gave_up, now);
	SagaAdvanceCompensation(advance_ids, nadvance, now);
	return (int) nrows;
}


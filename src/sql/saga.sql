
-- ---------------------------------------------------------------------------
-- Sagas (SPEC 3.5).  The API is C (src/saga/saga_api.c, saga_define.c), the worker's part is
-- src/saga/saga_driver.c; the state machine and the transaction boundaries are
-- described in the header of saga_driver.c.  Written only by the saga.*
-- functions and the dispatcher; read through the views.
--
-- No foreign keys between these tables: every insert into step_run would
-- pay for a referential check on the hot path, and rows are only ever
-- written by code that holds the saga's instance row lock and knows the
-- parent exists.  Definitions and instances are never deleted.
-- ---------------------------------------------------------------------------

-- One row per definition name: who owns it and its latest version.
CREATE TABLE saga.definition_name (
	name            text        PRIMARY KEY,
	owner           regrole     NOT NULL,
	latest_version  integer     NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every version of every definition, immutable once written.  steps is the
-- normalized array of steps (every key present, durations in seconds,
-- function names resolved and quoted); options holds the saga options with
-- their defaults.  owner: the role the steps run as (a regrole: pg_dump
-- keeps it by name).  Ids from a member sequence, which pg_dump keeps.
-- search_path: what its function and emit calls run with (issue 15), the
-- definer's or the option search_path; 0.1.0's rows keep pg_catalog, pg_temp.
CREATE SEQUENCE saga.definition_id_seq AS integer;
CREATE TABLE saga.definition (
	id          integer     NOT NULL DEFAULT pg_catalog.nextval('saga.definition_id_seq') PRIMARY KEY,
	name        text        NOT NULL,
	version     integer     NOT NULL,
	steps       jsonb       NOT NULL,
	options     jsonb       NOT NULL,
	owner       regrole     NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	search_path text        NOT NULL DEFAULT 'pg_catalog, pg_temp',
	UNIQUE (name, version)
);
ALTER SEQUENCE saga.definition_id_seq OWNED BY saga.definition.id;

-- One row per saga.  error: why the saga compensates (a step that gave up,
-- cancel, deadline); compensation_error: why it is failed (a compensation
-- that gave up), cleared by saga.retry().  cancelled: saga.cancel() was
-- called, so the saga ends cancelled rather than compensated.
-- started_by: the role that called saga.start (NULL: started before 0.2.0);
-- it, the definition's owner and their members may complete, cancel, retry.
-- trace: the W3C trace context of the transaction that called saga.start
-- ({"traceparent", "tracestate"}, from outbox_saga.traceparent; NULL: none),
-- passed on in every step's ctx, emit headers and http headers (issue 17).
-- fillfactor 70: the per-step update (results, current_step) stays HOT.
CREATE TABLE saga.instance (
	id                  uuid        PRIMARY KEY,
	definition          text        NOT NULL,
	definition_id       integer     NOT NULL,
	version             integer     NOT NULL,
	status              text        NOT NULL,
	input               jsonb       NOT NULL,
	results             jsonb       NOT NULL DEFAULT '{}',
	current_step        text,
	error               text,
	compensation_error  text,
	cancelled           boolean     NOT NULL DEFAULT false,
	idempotency_key     text,
	deadline            timestamptz,
	created_at          timestamptz NOT NULL DEFAULT now(),
	updated_at          timestamptz NOT NULL DEFAULT now(),
	started_by          oid,
	trace               jsonb,
	CONSTRAINT instance_status_check CHECK (status IN
		('running', 'completed', 'compensating', 'compensated', 'failed', 'cancelled'))
) WITH (fillfactor = 70);

-- saga.start(): the same key returns the same saga (per definition name).
CREATE UNIQUE INDEX instance_idempotency_key_idx ON saga.instance (definition, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
-- The worker's deadline sweep.
CREATE INDEX instance_deadline_idx ON saga.instance (deadline)
	WHERE status = 'running' AND deadline IS NOT NULL;
-- saga.stats.
CREATE INDEX instance_definition_status_idx ON saga.instance (definition, status);

-- Order of runs within a saga (see step_run.seq).
CREATE SEQUENCE saga.run_seq AS bigint;

-- One row per step and phase of a saga: the action of a step, or a
-- compensation record (of a completed step, or registered ad hoc with
-- saga.register_compensation(), then step_index is NULL).  The policy of
-- the run (max_attempts, timeout, backoff) is copied from the definition
-- when the row is written, so the worker needs nothing else to enforce it.
--
-- status:
--   recorded   a compensation record; runs only if the saga compensates
--   pending    runs at next_attempt_at
--   running    an attempt is under way (committed before the attempt runs)
--   waiting    waits for saga.complete_step() until timeout_at
--   succeeded, failed (gave up), cancelled (never ran: saga cancelled)
-- A saga has at most one run in pending, running or waiting
-- (step_run_active_idx): steps run one after another, and so do
-- compensations.
-- seq: when the run was scheduled (for a record not run yet: when it was
-- recorded); compensation runs the record with the highest seq first.
CREATE TABLE saga.step_run (
	saga_id          uuid        NOT NULL,
	step             text        NOT NULL,
	phase            text        NOT NULL,
	step_index       integer,
	seq              bigint      NOT NULL,
	call             jsonb       NOT NULL,
	status           text        NOT NULL,
	attempts         integer     NOT NULL DEFAULT 0,
	max_attempts     integer     NOT NULL,
	interruptions    integer     NOT NULL DEFAULT 0,
	timeout          interval    NOT NULL,
	backoff_base     interval    NOT NULL,
	backoff_max      interval    NOT NULL,
	next_attempt_at  timestamptz,
	timeout_at       timestamptz,
	timed_out_at     timestamptz,
	started_at       timestamptz,
	finished_at      timestamptz,
	result           jsonb,
	error            text,
	PRIMARY KEY (saga_id, step, phase),
	CONSTRAINT step_run_phase_check CHECK (phase IN ('action', 'compensation')),
	CONSTRAINT step_run_status_check CHECK (status IN
		('recorded', 'pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'))
);

CREATE UNIQUE INDEX step_run_active_idx ON saga.step_run (saga_id)
	WHERE status IN ('pending', 'running', 'waiting');
CREATE INDEX step_run_due_idx ON saga.step_run (next_attempt_at)
	WHERE status = 'pending';
CREATE INDEX step_run_waiting_idx ON saga.step_run (timeout_at)
	WHERE status = 'waiting';

COMMENT ON TABLE saga.definition IS
	'Saga definitions, one row per version. Written only by saga.define().';
COMMENT ON TABLE saga.instance IS
	'Sagas. Written only by the saga.* functions and the dispatcher; read saga.instances.';
COMMENT ON TABLE saga.step_run IS
	'Step runs and compensation records of sagas. Written only by the saga.* functions and the dispatcher; read saga.step_runs.';

-- Sagas restored from a dump of another database, held until saga.resume()
-- (lifecycle.sql): deadline is the saga's own, set aside meanwhile.  Not
-- dumped: a restore holds the sagas in flight again.
CREATE TABLE saga.restored_hold (
	saga_id      uuid        PRIMARY KEY,
	deadline     timestamptz,
	restored_at  timestamptz NOT NULL DEFAULT now()
);

-- pg_dump keeps everything: no transaction ids are stored here.
SELECT pg_catalog.pg_extension_config_dump('saga.definition_name', '');
SELECT pg_catalog.pg_extension_config_dump('saga.definition', '');
SELECT pg_catalog.pg_extension_config_dump('saga.instance', '');
SELECT pg_catalog.pg_extension_config_dump('saga.step_run', '');
SELECT pg_catalog.pg_extension_config_dump('saga.run_seq', '');
SELECT pg_catalog.pg_extension_config_dump('saga.definition_id_seq', '');

-- ---------------------------------------------------------------------------
-- The API.  C, SECURITY INVOKER: EXECUTE decides who may call a function at
-- all (nothing is granted to PUBLIC); permission checks happen as the
-- caller, then the statements on the tables above run with the extension's
-- rights and search_path pinned (src/saga/saga_state.c).
-- ---------------------------------------------------------------------------

CREATE FUNCTION saga.define(
	name    text,
	steps   jsonb,
	options jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'outbox_saga_saga_define'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.define(text, jsonb, jsonb) IS
	'Create or replace a saga definition and return its version (the latest version again if nothing changed). Steps: [{"name", "action": CALL, "compensation": CALL|null, "timeout", "max_attempts", "backoff_base", "backoff_max", "compensation_max_attempts"}]; a CALL is {"function": "schema.name"}, {"emit": {"topic", "event_type", "await", "headers"}} or {"http": {"url", "method", "headers"}}. Options: deadline, defaults for the step keys, and search_path (default: the current one, pg_temp last). The steps run as the definition''s owner (the role that first defined it) with that search_path; only the owner, a member of it or a superuser may redefine it. Running sagas keep their version.';

CREATE FUNCTION saga.drop_definition(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_drop_definition'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.drop_definition(text) IS
	'Delete a saga definition (every version), its finished sagas and its name, which can then be defined anew by anyone allowed to call saga.define. Only the owner of the name, a member of it or a superuser (42501); refused while a saga of it is running, compensating or failed (55006).';

CREATE FUNCTION saga.start(
	definition      text,
	input           jsonb DEFAULT '{}',
	idempotency_key text  DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'outbox_saga_saga_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.start(text, jsonb, text) IS
	'Start a saga of the latest version of a definition; it exists iff the transaction commits. The same idempotency key (per definition) returns the same saga id; a concurrent start with the key waits for the first one.';

CREATE FUNCTION saga.complete_step(
	saga_id uuid,
	step    text,
	success boolean,
	result  jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_complete_step'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.complete_step(uuid, text, boolean, jsonb) IS
	'Report the outcome of a step (action or compensation) that waits for it (an emit call with "await": true). success = false is a failed attempt. Refused (SQLSTATE 55000) if the step is not waiting, for example because it timed out.';

CREATE FUNCTION saga.register_compensation(
	saga_id uuid,
	name    text,
	call    jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_register_compensation'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.register_compensation(uuid, text, jsonb) IS
	'Record an ad-hoc compensation (a CALL) for a running saga; it runs, in reverse order with the others, if the saga compensates. Only a role with the privileges of the definition''s owner may register one (it runs as that owner). Registering the same name and call again does nothing.';

CREATE FUNCTION saga.cancel(
	saga_id uuid,
	reason  text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_cancel'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.cancel(uuid, text) IS
	'Cancel a running saga: its pending or waiting step is abandoned and its completed steps are compensated in reverse order; it ends cancelled (or failed if a compensation gives up).';

CREATE FUNCTION saga.retry(saga_id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_retry'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.retry(uuid) IS
	'Resume a failed saga: the compensation that gave up is attempted again (attempts start over), then the remaining ones.';

-- For saga functions written in SQL (saga.resume, lifecycle.sql): count the
-- transaction's saga work at commit (src/events/wakeup.c), so that the
-- dispatcher's next saga round runs (src/saga/saga_driver.c).
CREATE FUNCTION outbox.saga_work_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_work_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.saga_work_changed() IS
	'Internal: when the transaction commits, tells the dispatcher that saga state changed, so that its next saga round runs (called by saga.resume).';

-- ---------------------------------------------------------------------------
-- Views.  Revoked from PUBLIC like everything else (privileges.sql): grant
-- SELECT to whom may read every saga's input and results.
-- ---------------------------------------------------------------------------

CREATE VIEW saga.definitions AS
SELECT d.name,
       d.version,
       d.version = n.latest_version AS latest,
       outbox.mask_config(d.steps) AS steps,
       d.options,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at,
       d.search_path
  FROM saga.definition d
  JOIN saga.definition_name n ON n.name = d.name;

COMMENT ON VIEW saga.definitions IS
	'Every version of every saga definition, normalized: each step with all its keys, durations in seconds; credentials in http calls (Authorization and similar headers, user:password in URLs) masked as in outbox.destinations.';

CREATE VIEW saga.instances AS
SELECT i.id,
       i.definition,
       i.version,
       i.status,
       i.input,
       i.results,
       i.current_step,
       COALESCE(i.compensation_error, i.error) AS error,
       i.created_at,
       i.updated_at,
       i.deadline,
       i.idempotency_key,
       EXISTS (SELECT 1 FROM saga.restored_hold h WHERE h.saga_id = i.id) AS restored
  FROM saga.instance i;

COMMENT ON VIEW saga.instances IS
	'Sagas: status (running, completed, compensating, compensated, failed, cancelled), results by step name, the step being run or compensated, and why the saga compensates or failed. restored: restored from a dump of another database, held until saga.resume().';

CREATE VIEW saga.step_runs AS
SELECT r.saga_id,
       r.step,
       r.phase,
       r.status,
       r.attempts,
       r.next_attempt_at,
       r.started_at,
       r.finished_at,
       r.result,
       r.error,
       r.seq,
       r.timeout_at
  FROM saga.step_run r;

COMMENT ON VIEW saga.step_runs IS
	'Actions and compensations of sagas: status (recorded, pending, running, waiting, succeeded, failed, cancelled), attempts, last error; seq orders the runs of a saga as they were scheduled.';

-- A saga's history for people (issue 17 item 5).  SECURITY INVOKER over
-- saga.step_runs: who may read that view may read every timeline, nobody
-- else (42501).  plpgsql for the NULL and unknown-saga errors.
CREATE FUNCTION saga.timeline(saga_id uuid)
RETURNS TABLE(seq bigint, step text, phase text, status text, attempts integer,
              started_at timestamptz, finished_at timestamptz, duration interval,
              error text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
	IF timeline.saga_id IS NULL THEN
		RAISE EXCEPTION 'saga_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	RETURN QUERY
	SELECT r.seq, r.step, r.phase, r.status, r.attempts, r.started_at, r.finished_at,
	       r.finished_at - r.started_at, r.error
	  FROM saga.step_runs r
	 WHERE r.saga_id = timeline.saga_id AND r.status <> 'recorded'
	 ORDER BY r.seq;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'saga % does not exist', timeline.saga_id
			USING ERRCODE = 'undefined_object';
	END IF;
END $$;

COMMENT ON FUNCTION saga.timeline(uuid) IS
	'A saga''s history, one row per step run and compensation in the order they were scheduled (seq): status (pending, running, waiting, succeeded, failed, cancelled), attempts, times, duration and last error. Compensation records that never had to run are left out. Reads saga.step_runs as the caller: needs SELECT on it.';

-- saga.stats: counts by status from the rows (through the index
-- instance_definition_status_idx).  completed, compensated and cancelled
-- are final states and instances are deleted only by saga.drop_definition
-- (with the definition itself), so those counts only grow:
-- contrib/prometheus exports them as counters.  The columns at the end
-- (issue 17 item 1) read only the sagas running or compensating, through
-- the same index: the oldest running one, and the sagas past their
-- deadline (overdue; oldest_overdue_seconds: how long past it the earliest
-- one is, 0 when none).  The dispatcher moves a running saga past its
-- deadline to compensating at once, so one that stays overdue is stuck
-- half done.
CREATE VIEW saga.stats AS
SELECT n.name AS definition,
       n.latest_version AS version,
       COALESCE(c.running, 0) AS running,
       COALESCE(a.waiting, 0) AS waiting,
       COALESCE(a.retrying, 0) AS retrying,
       COALESCE(c.compensating, 0) AS compensating,
       COALESCE(c.completed, 0) AS completed,
       COALESCE(c.compensated, 0) AS compensated,
       COALESCE(c.cancelled, 0) AS cancelled,
       COALESCE(c.failed, 0) AS failed,
       pg_catalog.now() - c.oldest_active AS oldest_active_age,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - c.oldest_active), 0)
           AS oldest_active_age_seconds,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - o.oldest_running), 0)
           AS oldest_running_age_seconds,
       COALESCE(o.overdue, 0) AS overdue,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - o.oldest_deadline), 0)
           AS oldest_overdue_seconds
  FROM saga.definition_name n
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE i.status = 'running') AS running,
              count(*) FILTER (WHERE i.status = 'compensating') AS compensating,
              count(*) FILTER (WHERE i.status = 'completed') AS completed,
              count(*) FILTER (WHERE i.status = 'compensated') AS compensated,
              count(*) FILTER (WHERE i.status = 'cancelled') AS cancelled,
              count(*) FILTER (WHERE i.status = 'failed') AS failed,
              min(i.created_at) FILTER (WHERE i.status IN ('running', 'compensating')) AS oldest_active
         FROM saga.instance i WHERE i.definition = n.name) c ON true
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE r.status = 'waiting') AS waiting,
              count(*) FILTER (WHERE r.status = 'pending' AND r.attempts > 0) AS retrying
         FROM saga.step_run r
         JOIN saga.instance i ON i.id = r.saga_id
        WHERE i.definition = n.name AND r.status IN ('pending', 'waiting')) a ON true
  LEFT JOIN LATERAL (
       SELECT min(i.created_at) FILTER (WHERE i.status = 'running') AS oldest_running,
              count(*) FILTER (WHERE i.deadline < pg_catalog.now()) AS overdue,
              min(i.deadline) FILTER (WHERE i.deadline < pg_catalog.now()) AS oldest_deadline
         FROM saga.instance i
        WHERE i.definition = n.name AND i.status IN ('running', 'compensating')) o ON true;

COMMENT ON VIEW saga.stats IS
	'One row per saga definition: sagas by status (failed ones need an operator: see saga.retry), steps waiting for saga.complete_step, steps retrying after a failed attempt, the age of the oldest unfinished saga (also in seconds), of the oldest running one, and the sagas still running or compensating past their deadline (overdue, oldest_overdue_seconds: how long past it the earliest is). Readable by pg_monitor.';

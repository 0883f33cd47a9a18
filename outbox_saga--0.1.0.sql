-- outbox_saga extension script (assembled from src/sql/*.sql by the Makefile).
--
-- Conventions of every part:
--   * every object is schema-qualified; SQL and PL/pgSQL functions pin
--     search_path = pg_catalog, pg_temp; C functions resolve every name by
--     schema themselves and need no search_path;
--   * every public function has a COMMENT, so \df+ documents the API;
--   * state tables are registered with pg_extension_config_dump;
--   * privileges are set in privileges.sql, last.

\echo Use "CREATE EXTENSION outbox_saga" to load this file. \quit

CREATE SCHEMA outbox;
COMMENT ON SCHEMA outbox IS 'outbox_saga: transactional outbox, destinations and idempotency keys';

CREATE SCHEMA saga;
COMMENT ON SCHEMA saga IS 'outbox_saga: saga definitions and instances';

-- ---------------------------------------------------------------------------
-- The event log (design: src/eventlog.c).
-- ---------------------------------------------------------------------------

-- CACHE 1: ids follow the order in which sessions write events.
CREATE SEQUENCE outbox.events_id_seq AS bigint CACHE 1;

-- Partitioned by generation slot: ids (id >> 16) & 3 == N live in events_pN.
-- The C writer depends on this layout (OUTBOX_GENERATION_BITS,
-- OUTBOX_PARTITIONS in src/eventlog.h) and on the column order.
CREATE TABLE outbox.events (
	id            bigint      NOT NULL,
	event_id      uuid        NOT NULL,
	topic         text        NOT NULL,
	aggregate_id  text,
	event_type    text        NOT NULL,
	payload       jsonb       NOT NULL,
	headers       jsonb       NOT NULL,
	created_at    timestamptz NOT NULL,
	deliver_after timestamptz,
	txid          xid8        NOT NULL
) PARTITION BY LIST (((id >> 16) & 3));

CREATE TABLE outbox.events_p0 PARTITION OF outbox.events FOR VALUES IN (0);
CREATE TABLE outbox.events_p1 PARTITION OF outbox.events FOR VALUES IN (1);
CREATE TABLE outbox.events_p2 PARTITION OF outbox.events FOR VALUES IN (2);
CREATE TABLE outbox.events_p3 PARTITION OF outbox.events FOR VALUES IN (3);

CREATE INDEX events_id_idx ON outbox.events (id);
CREATE INDEX events_txid_idx ON outbox.events (txid);

COMMENT ON TABLE outbox.events IS
	'Committed, not yet retired events. Written only by outbox.emit() and outbox.capture().';

-- Not registered with pg_extension_config_dump: the log holds transaction
-- ids (txid), which mean nothing in another cluster; see README, "Backups".

CREATE FUNCTION outbox.emit(
	topic         text,
	event_type    text,
	payload       jsonb       DEFAULT '{}',
	aggregate_id  text        DEFAULT NULL,
	headers       jsonb       DEFAULT '{}',
	deliver_after timestamptz DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'outbox_saga_emit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) IS
	'Write one event in the current transaction; returns its event_id (UUIDv7). The event exists iff the transaction commits.';

-- ---------------------------------------------------------------------------
-- Change capture (design: src/capture.c).
-- ---------------------------------------------------------------------------

CREATE FUNCTION outbox.capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'outbox_saga_capture'
LANGUAGE C;

COMMENT ON FUNCTION outbox.capture() IS
	'Trigger for AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW: writes one event per changed row. Arguments (all optional): topic=, key=col[,col], ignore=col[,col], columns=col[,col], type_insert=, type_update=, type_delete=.';

CREATE FUNCTION outbox.capture_table(
	tbl            regclass,
	topic          text   DEFAULT NULL,
	key_columns    text[] DEFAULT NULL,
	operations     text[] DEFAULT '{INSERT,UPDATE,DELETE}',
	ignore_columns text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'outbox_saga_capture_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.capture_table(regclass, text, text[], text[], text[]) IS
	'Create the capture trigger "outbox_capture" on a table (validating every argument first) and return its name.';

CREATE FUNCTION outbox.uncapture_table(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_uncapture_table'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.uncapture_table(regclass) IS
	'Drop the capture trigger "outbox_capture" that outbox.capture_table() created on a table.';

-- ---------------------------------------------------------------------------
-- Idempotency keys (design, locking and concurrency: src/idempotency.c).
-- ---------------------------------------------------------------------------

-- One row per (scope, key).  status is 'in_progress' from the claim until
-- outbox.idempotency_complete(), then 'completed'; from expires_at on the
-- row counts as absent and outbox.purge_idempotency_keys() may delete it.
-- claimed_by is the top-level transaction that made the current claim.
-- fillfactor 90 leaves room for the completing UPDATE to stay HOT.
CREATE TABLE outbox.idempotency_keys (
	scope        text        NOT NULL,
	key          text        NOT NULL,
	fingerprint  text,
	status       text        NOT NULL,
	response     jsonb,
	claimed_by   xid8        NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL,
	completed_at timestamptz,
	CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
	CONSTRAINT idempotency_keys_status_check
		CHECK (status IN ('in_progress', 'completed')),
	CONSTRAINT idempotency_keys_completed_at_check
		CHECK ((status = 'completed') = (completed_at IS NOT NULL))
) WITH (fillfactor = 90);

-- The purge deletes oldest expiry first.
CREATE INDEX idempotency_keys_expires_at_idx ON outbox.idempotency_keys (expires_at);

COMMENT ON TABLE outbox.idempotency_keys IS
	'Idempotency keys. Written only by outbox.idempotency_key(), outbox.idempotency_complete(), outbox.once() and outbox.purge_idempotency_keys().';

SELECT pg_catalog.pg_extension_config_dump('outbox.idempotency_keys', '');

-- The functions are SECURITY DEFINER so that a role needs EXECUTE on them,
-- never privileges on the table; their statements are fixed, take every
-- value as a parameter, and run with search_path pinned.

CREATE FUNCTION outbox.idempotency_key(
	scope       text,
	key         text,
	fingerprint text     DEFAULT NULL,
	ttl         interval DEFAULT '24 hours')
RETURNS TABLE (status text, response jsonb)
AS 'MODULE_PATHNAME', 'outbox_saga_idempotency_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.idempotency_key(text, text, text, interval) IS
	'Claim an idempotency key for the current transaction. One row: status new (claimed: do the work, then call outbox.idempotency_complete), completed (response is the stored one), in_progress (another committed claim, younger than outbox_saga.idempotency_lock_timeout) or mismatch (the key was used with a different non-NULL fingerprint). Waits for a concurrent transaction holding the key. Expired keys count as absent.';

CREATE FUNCTION outbox.idempotency_complete(
	scope    text,
	key      text,
	response jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_idempotency_complete'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.idempotency_complete(text, text, jsonb) IS
	'Mark the key''s claim in progress completed and store the response (may be NULL) that replays will get. A key with no claim in progress (absent, expired or already completed) is an error (SQLSTATE 55000).';

CREATE FUNCTION outbox.once(
	scope text,
	key   text,
	ttl   interval DEFAULT '24 hours')
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_once'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.once(text, text, interval) IS
	'True the first time (scope, key) is seen within ttl, false afterwards: the inbox pattern for consumers. A concurrent duplicate waits for the first caller''s transaction: false if it commits, true if it rolls back.';

CREATE FUNCTION outbox.purge_idempotency_keys(max_rows integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_purge_idempotency_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.purge_idempotency_keys(integer) IS
	'Delete at most max_rows expired idempotency keys, oldest first, skipping keys locked by open transactions; returns how many were deleted.';

-- ---------------------------------------------------------------------------
-- Dispatch state (design: src/dispatcher.c).  Written by the API functions
-- and the dispatcher only; read through the views.
-- ---------------------------------------------------------------------------

-- Ticks: snapshots taken one after another by the dispatcher.  The batch
-- between two ticks is every event whose transaction is visible in the later
-- snapshot and not in the earlier one (src/eventlog.c).
CREATE TABLE outbox.tick (
	id          bigint      PRIMARY KEY,
	snapshot    pg_snapshot NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox.tick (id, snapshot) VALUES (0, pg_catalog.pg_current_snapshot());

-- Destinations: config (secrets included, never shown: see the view
-- outbox.destinations), owner, and the dispatch position: every tick up to
-- tick_from is consumed; the window (tick_from, tick_to] is being consumed
-- in id order and its events with id <= last_id are done.  done_id is the
-- highest id passed so far (for the pending estimate of outbox.stats).
-- A batch with failures and no success backs the whole destination off:
-- consecutive_failures counts such batches, retry_at is when to try again.
CREATE TABLE outbox.destination (
	id                    integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name                  text        NOT NULL UNIQUE,
	kind                  text        NOT NULL,
	config                jsonb       NOT NULL,
	paused                boolean     NOT NULL DEFAULT false,
	owner                 oid         NOT NULL,
	created_at            timestamptz NOT NULL DEFAULT now(),
	tick_from             bigint      NOT NULL,
	tick_to               bigint,
	last_id               bigint      NOT NULL DEFAULT 0,
	done_id               bigint      NOT NULL DEFAULT 0,
	consecutive_failures  integer     NOT NULL DEFAULT 0,
	retry_at              timestamptz,
	delivered_total       bigint      NOT NULL DEFAULT 0,
	failed_attempts_total bigint      NOT NULL DEFAULT 0,
	last_delivered_at     timestamptz,
	last_error            text,
	last_error_at         timestamptz
);

-- Subscriptions: a destination receives the events of a topic ('*': every
-- topic) and event types (NULL: every type) whose transactions are not
-- visible in 'since', the snapshot of the subscribing transaction.
CREATE TABLE outbox.subscription (
	id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	destination_id  integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	topic           text        NOT NULL,
	event_types     text[],
	since           pg_snapshot NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);

-- Events that failed at least once, or that wait: for their deliver_after
-- time, or (ordered destinations) behind a failed event of their aggregate.
-- A copy of the event, so that retiring the log never depends on it.  Only
-- the lowest id of an aggregate is eligible.
CREATE TABLE outbox.delivery_retry (
	destination_id   integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	id               bigint      NOT NULL,
	event_id         uuid        NOT NULL,
	topic            text        NOT NULL,
	aggregate_id     text,
	event_type       text        NOT NULL,
	payload          jsonb       NOT NULL,
	headers          jsonb       NOT NULL,
	created_at       timestamptz NOT NULL,
	deliver_after    timestamptz,
	txid             xid8        NOT NULL,
	attempts         integer     NOT NULL DEFAULT 0,
	next_attempt_at  timestamptz NOT NULL,
	last_error       text,
	last_attempt_at  timestamptz,
	PRIMARY KEY (destination_id, id)
);
CREATE INDEX delivery_retry_aggregate_idx ON outbox.delivery_retry (destination_id, aggregate_id, id);
CREATE INDEX delivery_retry_due_idx ON outbox.delivery_retry (next_attempt_at);

-- Dead letters: events that used up max_attempts (or were refused for good),
-- with their last error, until replayed or discarded.
CREATE TABLE outbox.dead_letter (
	destination_id   integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	id               bigint      NOT NULL,
	event_id         uuid        NOT NULL,
	topic            text        NOT NULL,
	aggregate_id     text,
	event_type       text        NOT NULL,
	payload          jsonb       NOT NULL,
	headers          jsonb       NOT NULL,
	created_at       timestamptz NOT NULL,
	deliver_after    timestamptz,
	txid             xid8        NOT NULL,
	attempts         integer     NOT NULL,
	last_error       text,
	failed_at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (destination_id, id)
);

-- Generations of the log that are closed (the sequence is past them), with
-- the xmax of a snapshot taken after that: once every destination has
-- consumed a tick whose xmin reaches it, the generation can be retired.
CREATE TABLE outbox.generation (
	gen          bigint PRIMARY KEY,
	closed_xmax  xid8   NOT NULL
);

-- pg_dump keeps destinations and dead letters.  Ticks, generations,
-- subscriptions (their 'since' snapshot) and the retry queue hold
-- transaction ids of this cluster and are not dumped (README, "Backups").
SELECT pg_catalog.pg_extension_config_dump('outbox.destination', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.dead_letter', '');

-- ---------------------------------------------------------------------------
-- Destinations and subscriptions (design: src/destination.c).  The
-- functions are C, SECURITY INVOKER: EXECUTE decides who may call them, and
-- they let a role change only the destinations it has the privileges of the
-- owner of.  They write outbox.destination and outbox.subscription
-- (dispatch.sql) with pinned search_path and extension privileges.
-- ---------------------------------------------------------------------------

-- One subscription per destination, topic and set of event types (the
-- functions store event types sorted and without duplicates; NULL, every
-- type, is never an empty array, which subscribe() refuses).
CREATE UNIQUE INDEX subscription_unique_idx ON outbox.subscription
	(destination_id, topic, COALESCE(event_types, '{}'::text[]));

CREATE FUNCTION outbox.create_destination(
	name   text,
	kind   text,
	config jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_create_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.create_destination(text, text, jsonb) IS
	'Create a destination of a kind (function, notify, ...) owned by the current role; its handler runs with that role''s privileges. Config keys: those of the kind plus max_attempts, backoff_base, backoff_max, batch_size, ordered, timeout.';

CREATE FUNCTION outbox.alter_destination(
	name   text,
	config jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_alter_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.alter_destination(text, jsonb) IS
	'Merge keys into a destination''s config (a key set to null is removed) and check the result as a whole. Owner or superuser only.';

CREATE FUNCTION outbox.drop_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_drop_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.drop_destination(text) IS
	'Drop a destination with its subscriptions, retry queue and dead letters. Owner or superuser only.';

CREATE FUNCTION outbox.pause_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_pause_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.pause_destination(text) IS
	'Stop delivering to a destination; its events wait until it is resumed. Owner or superuser only.';

CREATE FUNCTION outbox.resume_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_resume_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.resume_destination(text) IS
	'Resume delivering to a paused destination, starting with the events that waited. Owner or superuser only.';

CREATE FUNCTION outbox.subscribe(
	destination text,
	topic       text   DEFAULT '*',
	event_types text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_subscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.subscribe(text, text, text[]) IS
	'Subscribe a destination to a topic (''*'': every topic) and event types (NULL: every type); it receives such events committed after this transaction. Returns the subscription id. Owner or superuser only.';

CREATE FUNCTION outbox.unsubscribe(subscription_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_unsubscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.unsubscribe(bigint) IS
	'Remove a subscription by id. Owner of its destination or superuser only.';

CREATE FUNCTION outbox.mask_config(config jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'outbox_saga_mask_config'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION outbox.mask_config(jsonb) IS
	'A destination config with its secrets replaced by "********": values of keys that look secret (secret, password, token, ...), credential headers, and credentials in URLs. Used by the view outbox.destinations.';

-- Rows: the destinations whose owner the current role has the privileges
-- of (every one for a superuser or a member of pg_read_all_settings).
-- security_barrier: a caller's own functions in WHERE never see other rows.
CREATE VIEW outbox.destinations WITH (security_barrier) AS
SELECT d.name,
       d.kind,
       outbox.mask_config(d.config) AS config,
       d.paused,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at
  FROM outbox.destination d
 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE');

COMMENT ON VIEW outbox.destinations IS
	'Destinations visible to the current role (its own, or all for superusers and pg_read_all_settings), secrets in config masked.';

CREATE VIEW outbox.subscriptions WITH (security_barrier) AS
SELECT s.id,
       d.name AS destination,
       s.topic,
       s.event_types,
       s.created_at
  FROM outbox.subscription s
  JOIN outbox.destination d ON d.id = s.destination_id
 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE');

COMMENT ON VIEW outbox.subscriptions IS
	'Subscriptions of the destinations visible to the current role; topic ''*'' is every topic, event_types NULL every type.';

-- ---------------------------------------------------------------------------
-- Operations and observability (src/observability.c, SPEC 3.3).
-- ---------------------------------------------------------------------------

CREATE FUNCTION outbox.extension_changed() RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_extension_changed' LANGUAGE C;
COMMENT ON FUNCTION outbox.extension_changed() IS
	'Internal: wakes the launcher when the transaction commits (called by the extension scripts).';

CREATE FUNCTION outbox.dispatch_status() RETURNS text
AS 'MODULE_PATHNAME', 'outbox_saga_dispatch_status' LANGUAGE C STABLE;
COMMENT ON FUNCTION outbox.dispatch_status() IS
	'NULL while a dispatcher serves this database; otherwise why dispatch is off.';

CREATE FUNCTION outbox.wait_idle(timeout interval DEFAULT '10 seconds') RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_wait_idle' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.wait_idle(interval) IS
	'Wait until nothing committed is ready to deliver in this database; false on timeout or when dispatch is off.';

CREATE FUNCTION outbox.worker_status(
	OUT database text, OUT pid integer, OUT state text,
	OUT started_at timestamptz, OUT last_activity timestamptz, OUT kind text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_saga_worker_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.worker_status() IS
	'The launcher and the running dispatchers (backs the view outbox.workers).';

CREATE VIEW outbox.workers AS
	SELECT database, pid, state, started_at, last_activity, kind
	  FROM outbox.worker_status();
COMMENT ON VIEW outbox.workers IS
	'The outbox_saga background workers: the launcher and one dispatcher per served database.';

CREATE FUNCTION outbox.replay_dead(destination text DEFAULT NULL, event_ids uuid[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_replay_dead' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.replay_dead(text, uuid[]) IS
	'Requeue dead letters (of one destination, or every destination the caller owns; optionally only these event ids); returns how many.';

CREATE FUNCTION outbox.discard_dead(destination text DEFAULT NULL, event_ids uuid[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_discard_dead' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.discard_dead(text, uuid[]) IS
	'Delete dead letters (of one destination, or every destination the caller owns; optionally only these event ids); returns how many.';

CREATE VIEW outbox.dead_letters AS
	SELECT dl.event_id, d.name AS destination, dl.attempts, dl.last_error, dl.failed_at,
	       dl.id, dl.topic, dl.aggregate_id, dl.event_type, dl.payload, dl.headers,
	       dl.created_at, dl.deliver_after, dl.txid
	  FROM outbox.dead_letter dl
	  JOIN outbox.destination d ON d.id = dl.destination_id;
COMMENT ON VIEW outbox.dead_letters IS
	'Events a destination gave up on, with their last error; see replay_dead() and discard_dead().';

-- One row per destination.  Fast with millions of pending events: the log
-- is never counted; "pending" in the log is the distance in ids between the
-- destination's position and the newest committed event (an upper bound: it
-- includes events of topics the destination does not subscribe to).
CREATE VIEW outbox.stats AS
	SELECT d.name AS destination,
	       d.kind,
	       d.paused,
	       GREATEST(seq.last_value - d.done_id, 0) + COALESCE(r.total, 0) AS pending,
	       CASE WHEN d.paused OR d.retry_at > pg_catalog.now() THEN 0
	            ELSE GREATEST(seq.last_value - d.done_id, 0) + COALESCE(r.due, 0)
	       END AS ready,
	       CASE WHEN d.paused THEN NULL
	            ELSE pg_catalog.now() - LEAST(r.oldest_due, head.created_at)
	       END AS oldest_ready_age,
	       COALESCE(r.retrying, 0) AS retrying,
	       COALESCE(dl.dead, 0) AS dead,
	       d.delivered_total,
	       d.failed_attempts_total,
	       d.last_delivered_at,
	       COALESCE(outbox.dispatch_status(), d.last_error) AS last_error,
	       d.last_error_at
	  FROM outbox.destination d
	 CROSS JOIN (SELECT COALESCE(max(id), 0) AS last_value FROM outbox.events) seq
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS total,
	              count(*) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS due,
	              count(*) FILTER (WHERE rr.attempts > 0) AS retrying,
	              min(rr.created_at) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS oldest_due
	         FROM outbox.delivery_retry rr WHERE rr.destination_id = d.id) r ON true
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS dead FROM outbox.dead_letter x WHERE x.destination_id = d.id) dl ON true
	  LEFT JOIN LATERAL (
	       SELECT e.created_at FROM outbox.events e
	        WHERE e.id > d.done_id ORDER BY e.id LIMIT 1) head ON true;
COMMENT ON VIEW outbox.stats IS
	'One row per destination: backlog, retries, dead letters, counters and the last error.';

-- ---------------------------------------------------------------------------
-- Sagas (SPEC 3.5).  The API is C (src/saga.c), the worker's part is
-- src/saga_driver.c; the state machine and the transaction boundaries are
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
	owner           oid         NOT NULL,
	latest_version  integer     NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every version of every definition, immutable once written.  steps is the
-- normalized array of steps (every key present, durations in seconds,
-- function names resolved and quoted); options holds the saga options with
-- their defaults.  owner: the role the steps run as.
CREATE TABLE saga.definition (
	id          integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name        text        NOT NULL,
	version     integer     NOT NULL,
	steps       jsonb       NOT NULL,
	options     jsonb       NOT NULL,
	owner       oid         NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	UNIQUE (name, version)
);

-- One row per saga.  error: why the saga compensates (a step that gave up,
-- cancel, deadline); compensation_error: why it is failed (a compensation
-- that gave up), cleared by saga.retry().  cancelled: saga.cancel() was
-- called, so the saga ends cancelled rather than compensated.
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

-- pg_dump keeps everything: no transaction ids are stored here.
SELECT pg_catalog.pg_extension_config_dump('saga.definition_name', '');
SELECT pg_catalog.pg_extension_config_dump('saga.definition', '');
SELECT pg_catalog.pg_extension_config_dump('saga.instance', '');
SELECT pg_catalog.pg_extension_config_dump('saga.step_run', '');
SELECT pg_catalog.pg_extension_config_dump('saga.run_seq', '');

-- ---------------------------------------------------------------------------
-- The API.  C, SECURITY INVOKER: EXECUTE decides who may call a function at
-- all (nothing is granted to PUBLIC); permission checks happen as the
-- caller, then the statements on the tables above run with the extension's
-- rights and search_path pinned (src/saga.c).
-- ---------------------------------------------------------------------------

CREATE FUNCTION saga.define(
	name    text,
	steps   jsonb,
	options jsonb DEFAULT '{}')
RETURNS integer
AS 'MODULE_PATHNAME', 'outbox_saga_saga_define'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION saga.define(text, jsonb, jsonb) IS
	'Create or replace a saga definition and return its version (the latest version again if nothing changed). Steps: [{"name", "action": CALL, "compensation": CALL|null, "timeout", "max_attempts", "backoff_base", "backoff_max", "compensation_max_attempts"}]; a CALL is {"function": "schema.name"}, {"emit": {"topic", "event_type", "await", "headers"}} or {"http": {"url", "method", "headers"}}. Options: deadline and defaults for the step keys. The steps run as the definition''s owner (the role that first defined it); only the owner, a member of it or a superuser may redefine it. Running sagas keep their version.';

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
       d.created_at
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
       i.idempotency_key
  FROM saga.instance i;

COMMENT ON VIEW saga.instances IS
	'Sagas: status (running, completed, compensating, compensated, failed, cancelled), results by step name, the step being run or compensated, and why the saga compensates or failed.';

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
       pg_catalog.now() - c.oldest_active AS oldest_active_age
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
        WHERE i.definition = n.name AND r.status IN ('pending', 'waiting')) a ON true;

COMMENT ON VIEW saga.stats IS
	'One row per saga definition: sagas by status (failed ones need an operator: see saga.retry), steps waiting for saga.complete_step, steps retrying after a failed attempt, and the age of the oldest unfinished saga.';

-- ---------------------------------------------------------------------------
-- Privileges.  Nothing is callable by PUBLIC: an administrator grants
-- EXECUTE on the functions a role needs (README, "Privileges").  The log and
-- every state table are readable and writable only through the functions.
-- ---------------------------------------------------------------------------

GRANT USAGE ON SCHEMA outbox, saga TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA saga FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA saga FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA outbox FROM PUBLIC;

-- Masking is harmless and is called by the view outbox.destinations as the
-- reading role.
GRANT EXECUTE ON FUNCTION outbox.mask_config(jsonb) TO PUBLIC;

-- Wake the launcher when this CREATE EXTENSION commits: this database now
-- needs a dispatcher.
SELECT outbox.extension_changed();


-- ---------------------------------------------------------------------------
-- Dispatch state (design: src/worker/dispatcher.c, src/dispatch/delivery.c).  Written by the API functions
-- and the dispatcher only; read through the views.
-- ---------------------------------------------------------------------------

-- Ticks: snapshots taken one after another by the dispatcher.  The batch
-- between two ticks is every event whose transaction is visible in the later
-- snapshot and not in the earlier one (src/events/eventlog.c).
CREATE TABLE outbox.tick (
	id          bigint      PRIMARY KEY,
	snapshot    pg_snapshot NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox.tick (id, snapshot) VALUES (0, pg_catalog.pg_current_snapshot());

-- Destinations: config (secrets included, never shown: see the view
-- outbox.destinations), owner, and the dispatch position: every tick up to
-- tick_from is consumed; the window (tick_from, tick_to] is being consumed
-- in id order and its events with id <= last_id are done, or, when
-- last_txid is set, in commit order and its events up to the key
-- (commit time of last_txid, last_txid, last_id) are done
-- (src/events/logscan.c).  done_id is the highest id passed so far (for the
-- pending estimate of outbox.stats).
-- A batch with failures and no success backs the whole destination off:
-- consecutive_failures counts such batches, retry_at is when to try again.
-- owner is a regrole so that pg_dump keeps it by name (README, "Backups and
-- upgrades").  restored_at: when the row came from a dump of another
-- database; the destination waits paused until resumed (lifecycle.sql).
-- search_path: the handler's (issue 15), recorded by create_destination
-- from its caller's or given as the config key "search_path"; rows written
-- otherwise (0.1.0's, old dumps) keep 0.1.0's pg_catalog, pg_temp.
-- Ids come from a plain sequence, not an identity: pg_dump keeps a member
-- sequence (lifecycle.sql), never an identity's.
CREATE SEQUENCE outbox.destination_id_seq AS integer;
CREATE TABLE outbox.destination (
	id                    integer     NOT NULL DEFAULT pg_catalog.nextval('outbox.destination_id_seq') PRIMARY KEY,
	name                  text        NOT NULL UNIQUE,
	kind                  text        NOT NULL,
	config                jsonb       NOT NULL,
	paused                boolean     NOT NULL DEFAULT false,
	owner                 regrole     NOT NULL,
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
	last_error_at         timestamptz,
	restored_at           timestamptz,
	search_path           text        NOT NULL DEFAULT 'pg_catalog, pg_temp',
	last_txid             xid8
);
ALTER SEQUENCE outbox.destination_id_seq OWNED BY outbox.destination.id;

-- Subscriptions: a destination receives the events of a topic ('*': every
-- topic) and event types (NULL: every type) whose transactions are not
-- visible in 'since', the snapshot of the subscribing transaction.
CREATE SEQUENCE outbox.subscription_id_seq AS bigint;
CREATE TABLE outbox.subscription (
	id              bigint      NOT NULL DEFAULT pg_catalog.nextval('outbox.subscription_id_seq') PRIMARY KEY,
	destination_id  integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	topic           text        NOT NULL,
	event_types     text[],
	since           pg_snapshot NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE outbox.subscription_id_seq OWNED BY outbox.subscription.id;

-- Events that failed at least once, or that wait: for their deliver_after
-- time, or (ordered destinations) behind a failed event of their aggregate.
-- A copy of the event, so that retiring the log never depends on it, with
-- the commit time of its transaction (NULL: unknown).  Only the first row of
-- an aggregate in commit order is eligible (RETRY_PRECEDES_SQL in
-- src/dispatch/delivery.h).
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
	committed_at     timestamptz,
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
	committed_at     timestamptz,
	PRIMARY KEY (destination_id, id)
);

-- Generations of the log that are closed (the sequence is past them), with
-- the xmax of a snapshot taken after that: once every destination has
-- consumed a tick whose xmin reaches it, the generation can be retired.
CREATE TABLE outbox.generation (
	gen          bigint PRIMARY KEY,
	closed_xmax  xid8   NOT NULL
);

-- What pg_dump keeps of these tables, and how a restored copy takes it
-- back: lifecycle.sql.
SELECT pg_catalog.pg_extension_config_dump('outbox.destination', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.dead_letter', '');

-- ---------------------------------------------------------------------------
-- Pull destinations (issue 16 item 1; design: src/dispatch/pull.c).  A
-- destination of kind 'pull' is never pushed by the dispatcher: sessions
-- take its events in batches with outbox.next_batch(), acknowledge them
-- with outbox.finish_batch() and fail single events with
-- outbox.retry_event().  The functions are C, SECURITY INVOKER: EXECUTE
-- decides who may call them, and they serve only a caller who has the
-- privileges of the destination's owner.
-- ---------------------------------------------------------------------------

-- One event of an unfinished batch: the columns of outbox.events, the
-- failed attempts so far and the commit time of its transaction (NULL:
-- unknown), as a retry row keeps them (src/dispatch/delivery.c).
CREATE TYPE outbox.pull_event AS (
	id             bigint,
	event_id       uuid,
	topic          text,
	aggregate_id   text,
	event_type     text,
	payload        jsonb,
	headers        jsonb,
	created_at     timestamptz,
	deliver_after  timestamptz,
	txid           xid8,
	attempts       integer,
	committed_at   timestamptz
);

-- Unfinished batches: one row per batch, with a copy of its events (the
-- destination's position has moved past them when the batch was handed
-- out, so the log may be retired under it) and the aggregates it holds.
-- A batch whose lease_until has passed is handed out again under a new id.
CREATE SEQUENCE outbox.pull_batch_id_seq AS bigint;
CREATE TABLE outbox.pull_batch (
	id              bigint      NOT NULL DEFAULT pg_catalog.nextval('outbox.pull_batch_id_seq') PRIMARY KEY,
	destination_id  integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	lease_until     timestamptz NOT NULL,
	handed_out      integer     NOT NULL DEFAULT 1,
	aggregates      text[]      NOT NULL,
	events          outbox.pull_event[] NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE outbox.pull_batch_id_seq OWNED BY outbox.pull_batch.id;
-- A batch row lives from next_batch to finish_batch, written once and read
-- once or twice: lz4 compresses its copy of the events at little CPU, so
-- less is written (TOAST pages and WAL: the pull drain's largest cost
-- uncompressed); pglz cost more than it saved.  A server built without
-- lz4 stores them uncompressed.
DO $$
BEGIN
	ALTER TABLE outbox.pull_batch ALTER COLUMN events SET COMPRESSION lz4,
		ALTER COLUMN aggregates SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	ALTER TABLE outbox.pull_batch ALTER COLUMN events SET STORAGE EXTERNAL,
		ALTER COLUMN aggregates SET STORAGE EXTERNAL;
END $$;
CREATE INDEX pull_batch_destination_idx ON outbox.pull_batch (destination_id, lease_until);
SELECT pg_catalog.pg_extension_config_dump('outbox.pull_batch', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.pull_batch_id_seq', '');

CREATE FUNCTION outbox.next_batch(
	destination text,
	max_events  integer  DEFAULT 1000,
	lease       interval DEFAULT NULL)
RETURNS TABLE (batch_id bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, attempts integer)
AS 'MODULE_PATHNAME', 'outbox_saga_next_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

COMMENT ON FUNCTION outbox.next_batch(text, integer, interval) IS
	'Take the next batch of a pull destination: at most max_events events, gap-free and in commit order per aggregate, every row with the batch id; no rows when nothing is ready. An aggregate''s events are never in two unfinished batches. Finish the batch with outbox.finish_batch() within the lease (NULL: the destination''s timeout, 30 seconds by default) or it is handed out again. Owner of the destination (or a member) only; call it in its own transaction.';

CREATE FUNCTION outbox.finish_batch(batch_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_finish_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.finish_batch(bigint) IS
	'Acknowledge an unfinished batch of a pull destination: its events (but those failed with outbox.retry_event()) are delivered. Returns their number. Owner of the destination (or a member) only.';

CREATE FUNCTION outbox.retry_event(
	batch_id bigint,
	event_id uuid,
	delay    interval DEFAULT NULL,
	error    text     DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_retry_event'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.retry_event(bigint, uuid, interval, text) IS
	'Fail one event of an unfinished batch: a failed attempt, retried after delay (NULL: the destination''s backoff) or moved to the dead letters after max_attempts; the later events of its aggregate in the batch are taken out of it too and come again after it, other aggregates are not held. Owner of the destination (or a member) only.';

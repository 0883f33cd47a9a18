
-- ---------------------------------------------------------------------------
-- The event log (design: src/events/eventlog.c).
-- ---------------------------------------------------------------------------

-- CACHE 1: ids follow the order in which sessions write events.
CREATE SEQUENCE outbox.events_id_seq AS bigint CACHE 1;

-- Partitioned by generation slot: ids (id >> 16) & 3 == N live in events_pN.
-- The C writer depends on this layout (OUTBOX_GENERATION_BITS,
-- OUTBOX_PARTITIONS in src/events/eventlog.h) and on the column order.
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

-- The log's one index, (txid, id): the dispatcher learns a window's
-- transactions and the ids they span from it alone, without reading the
-- rows (src/events/logscan.c, window_order_build), and reads every window
-- through it; housekeeping finds a partition's newest event and a
-- generation's events through it (src/worker/housekeeping.c).  There is no
-- index on id alone: it cost every write a tenth of a captured INSERT.
-- Querying the log by id scans it.  The partitions' indexes are
-- created first, so that they keep the names the library looks up
-- (events_pN_txid_idx, as in 0.1.0, where the index was (txid)); the
-- partitioned index then attaches them.
CREATE INDEX events_p0_txid_idx ON outbox.events_p0 (txid, id);
CREATE INDEX events_p1_txid_idx ON outbox.events_p1 (txid, id);
CREATE INDEX events_p2_txid_idx ON outbox.events_p2 (txid, id);
CREATE INDEX events_p3_txid_idx ON outbox.events_p3 (txid, id);
CREATE INDEX events_txid_idx ON outbox.events (txid, id);

COMMENT ON TABLE outbox.events IS
	'Committed, not yet retired events. Written only by outbox.emit() and outbox.capture().';

-- The commit-order key of an event is (outbox.committed_at(txid), txid, id)
-- (src/events/logscan.c): the order destinations receive one aggregate in.
CREATE FUNCTION outbox.committed_at(txid xid8)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'outbox_saga_committed_at' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION outbox.committed_at(xid8) IS
	'The commit time of a transaction that wrote events, or NULL if unknown (track_commit_timestamp off, not committed, or past the commit-time horizon); the first part of the commit-order key (committed_at, txid, id).';

-- pg_dump keeps the events a destination may still owe; their txids mean
-- nothing in another database, so a restore sets them aside until the
-- destinations that owe them are resumed (lifecycle.sql; README, "Backups
-- and upgrades").

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

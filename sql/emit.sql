-- outbox.emit(): one event per call, in the caller's transaction (G1),
-- written to the generation partition its id selects; every bad input is an
-- error with an SQLSTATE that writes nothing (G11).
\set VERBOSITY terse
SET timezone = 'UTC';
TRUNCATE outbox.events;

-- An event with every field.
BEGIN;
SELECT outbox.emit('orders', 'order.created', '{"order_id": 7, "total": 12.50}',
                   '7', '{"trace-id": "abc"}', '2030-01-01 00:00:00+00') AS ev \gset
SELECT topic, event_type, payload, aggregate_id, headers, deliver_after,
       txid = pg_current_xact_id() AS own_txid,
       event_id = :'ev'::uuid AS returned_id
  FROM outbox.events;
COMMIT;

-- Defaults: empty payload and headers, no aggregate, no delay.
SELECT outbox.emit('orders', 'order.pinged') IS NOT NULL AS emitted;
SELECT payload, headers, aggregate_id IS NULL AS no_aggregate,
       deliver_after IS NULL AS no_delay
  FROM outbox.events WHERE event_type = 'order.pinged';

-- The event id is a UUIDv7: version 7, RFC variant, time-ordered.
SELECT substr(event_id::text, 15, 1) AS version,
       substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant,
       abs(extract(epoch FROM now()) * 1000
           - ('x' || substr(replace(event_id::text, '-', ''), 1, 12))::bit(48)::bigint)
         < 3600 * 1000 AS time_is_now
  FROM outbox.events ORDER BY id;

-- Any JSON value is a payload.
SELECT outbox.emit('misc', 'scalar', '42') IS NOT NULL,
       outbox.emit('misc', 'array', '[1, "two", null]') IS NOT NULL,
       outbox.emit('misc', 'null', 'null') IS NOT NULL;
SELECT event_type, payload FROM outbox.events WHERE topic = 'misc' ORDER BY id;

-- G1: rolled-back transactions and savepoints leave no event.
BEGIN;
SELECT outbox.emit('g1', 'kept.before') IS NOT NULL;
SAVEPOINT s1;
SELECT outbox.emit('g1', 'rolled.back') IS NOT NULL;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT outbox.emit('g1', 'released') IS NOT NULL;
RELEASE SAVEPOINT s2;
COMMIT;
BEGIN;
SELECT outbox.emit('g1', 'whole.transaction.rolled.back') IS NOT NULL;
ROLLBACK;
SELECT event_type FROM outbox.events WHERE topic = 'g1' ORDER BY id;

-- Ids grow in write order; a transaction's events share its txid.
BEGIN;
SELECT count(*) FROM (SELECT outbox.emit('batch', 'n', jsonb_build_object('n', g))
                        FROM generate_series(1, 5) g) s;
COMMIT;
SELECT array_agg((payload->>'n')::int ORDER BY id) AS order_by_id,
       count(DISTINCT txid) AS transactions
  FROM outbox.events WHERE topic = 'batch';

-- Generations: ids 0..65535 live in events_p0, the next 65536 in events_p1...
SELECT setval('outbox.events_id_seq', 65534);
SELECT outbox.emit('gen', 'a') IS NOT NULL, outbox.emit('gen', 'b') IS NOT NULL;
SELECT setval('outbox.events_id_seq', 3 * 65536 + 10);
SELECT outbox.emit('gen', 'c') IS NOT NULL;
SELECT setval('outbox.events_id_seq', 4 * 65536);
SELECT outbox.emit('gen', 'd') IS NOT NULL;
SELECT event_type, id, tableoid::regclass AS partition
  FROM outbox.events WHERE topic = 'gen' ORDER BY id;

-- Bad input: an error with an SQLSTATE, and nothing written.
\set VERBOSITY default
SELECT count(*) AS before FROM outbox.events \gset
SELECT outbox.emit(NULL, 'x');
SELECT outbox.emit('t', NULL);
SELECT outbox.emit('', 'x');
SELECT outbox.emit('t', '');
SELECT outbox.emit('has space', 'x');
SELECT outbox.emit('wild*', 'x');
SELECT outbox.emit(E'tab\there', 'x');
SELECT outbox.emit(repeat('t', 256), 'x');
SELECT outbox.emit('t', repeat('x', 256));
SELECT outbox.emit('t', E'new\nline');
SELECT outbox.emit('t', 'x', NULL);
SELECT outbox.emit('t', 'x', '{}', '');
SELECT outbox.emit('t', 'x', '{}', repeat('k', 1025));
SELECT outbox.emit('t', 'x', '{}', NULL, NULL);
SELECT outbox.emit('t', 'x', '{}', NULL, '["not", "an", "object"]');
SELECT outbox.emit('t', 'x', '{}', NULL, '"scalar"');
SELECT outbox.emit('t', 'x', '{}', NULL, '{"attempt": 1}');
SELECT outbox.emit('t', 'x', '{}', NULL, '{"nested": {"a": "b"}}');
SELECT outbox.emit('t', 'x', deliver_after => 'infinity');
SELECT outbox.emit('t', 'x', '{bad json');
SET outbox_saga.max_payload_size = '1kB';
SELECT outbox.emit('t', 'x', jsonb_build_object('blob', repeat('x', 2000)));
SELECT outbox.emit('t', 'x', '{}', NULL, jsonb_build_object('h', repeat('x', 2000)));
RESET outbox_saga.max_payload_size;
-- (the wording of core's range message differs between majors: SQLSTATE only)
\set VERBOSITY sqlstate
SET outbox_saga.max_payload_size = 10;
\set VERBOSITY default
SET outbox_saga.no_such_setting = 1;
-- An error inside a transaction takes the transaction's earlier events with it.
BEGIN;
SELECT outbox.emit('t', 'doomed') IS NOT NULL;
SELECT outbox.emit('t', NULL);
COMMIT;
SELECT count(*) - :before AS written_by_bad_calls FROM outbox.events;

-- The SQLSTATE of each kind of bad input.
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SET outbox_saga.max_payload_size = '1kB';
SELECT call, pg_temp.sqlstate_of('SELECT outbox.emit(' || call || ')') AS sqlstate
  FROM (VALUES ($$NULL, 'x'$$), ($$'', 'x'$$), ($$'a b', 'x'$$),
               ($$repeat('t', 256), 'x'$$), ($$'t', 'x', NULL$$),
               ($$'t', 'x', '{}', repeat('k', 1025)$$),
               ($$'t', 'x', headers => '[]'$$),
               ($$'t', 'x', jsonb_build_object('b', repeat('x', 2000))$$),
               ($$'t', 'x', deliver_after => 'infinity'$$),
               ($$'t', 'x', jsonb_build_object('b', repeat('x', 100))$$)) v(call);
RESET outbox_saga.max_payload_size;
DELETE FROM outbox.events WHERE topic = 't';

-- Privileges: nothing is granted to PUBLIC; EXECUTE is granted per role and
-- the log is never readable or writable directly.
CREATE ROLE outbox_emit_app LOGIN;
SET ROLE outbox_emit_app;
SELECT outbox.emit('t', 'x');
SELECT count(*) FROM outbox.events;
RESET ROLE;
GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz)
  TO outbox_emit_app;
SET ROLE outbox_emit_app;
SELECT outbox.emit('granted', 'x') IS NOT NULL AS emitted_as_app;
INSERT INTO outbox.events_p0 (id, event_id, topic, event_type, payload, headers, created_at, txid)
  VALUES (1, gen_random_uuid(), 't', 'forged', '{}', '{}', now(), '1');
SELECT count(*) FROM outbox.events_p0;
RESET ROLE;
SELECT count(*) AS granted_events FROM outbox.events WHERE topic = 'granted';
DROP OWNED BY outbox_emit_app;
-- Topics the roles own or were granted name them by OID: give them back first.
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('outbox_emit_app'))) x;
SELECT count(*) AS topic_privileges_revoked FROM (
  SELECT outbox.revoke_topic(g.topic, g.grantee, g.privilege) FROM outbox.topic_grant g
   WHERE g.grantee::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('outbox_emit_app'))) x;
DROP ROLE outbox_emit_app;

-- Indexes a user adds to the log are maintained by the C writer: a GIN index
-- on the payload keeps working across a REINDEX (its per-statement state is
-- not kept between events), and an expression index is refused.
CREATE INDEX emit_payload_gin ON outbox.events USING gin (payload);
SELECT outbox.emit('indexed', 'first', '{"k": 1}') IS NOT NULL AS emitted;
REINDEX INDEX outbox.emit_payload_gin;
SELECT outbox.emit('indexed', 'second', '{"k": 2}') IS NOT NULL AS emitted;
SET enable_seqscan = off;
SELECT event_type FROM outbox.events WHERE payload @> '{"k": 2}';
RESET enable_seqscan;
DROP INDEX outbox.emit_payload_gin;
CREATE INDEX emit_payload_expr ON outbox.events ((payload->>'k'));
SELECT outbox.emit('indexed', 'third');
DROP INDEX outbox.emit_payload_expr;

TRUNCATE outbox.events;
SELECT setval('outbox.events_id_seq', 1, false);

-- Pull destinations (issue 16 item 1): outbox.next_batch(),
-- outbox.finish_batch(), outbox.retry_event().  Batches in commit order per
-- aggregate, an aggregate never in two unfinished batches, retries to the
-- dead letters, lease expiry, and every error.
\set VERBOSITY terse
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.error_text(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text; m text;
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
	RETURN s || ': ' || m;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.error_text(text) TO PUBLIC;

-- A pull destination is always ordered.
SELECT pg_temp.error_text($$SELECT outbox.create_destination('pl_bad', 'pull', '{"ordered": false}')$$);
SELECT outbox.create_destination('pl', 'pull', '{"max_attempts": 3}');
SELECT outbox.subscribe('pl', 'pl') > 0 AS subscribed;
SELECT kind, paused FROM outbox.destinations WHERE name = 'pl';

-- Nothing yet: no rows, no batch.
SELECT count(*) FROM outbox.next_batch('pl');
SELECT count(*) FROM outbox.pull_batch;

-- a1 written by two transactions, a2 by one, one event without aggregate.
BEGIN;
SELECT outbox.emit('pl', 'e1', '{"n": 1}', 'a1') IS NOT NULL AS emitted;
SELECT outbox.emit('pl', 'e2', '{"n": 2}', 'a2') IS NOT NULL AS emitted;
COMMIT;
BEGIN;
SELECT outbox.emit('pl', 'e3', '{"n": 3}', 'a1') IS NOT NULL AS emitted;
SELECT outbox.emit('pl', 'e4', '{"n": 4}') IS NOT NULL AS emitted;
SELECT outbox.emit('pl', 'other', '{"n": 0}', 'a1', '{}', NULL) IS NOT NULL AS emitted;
COMMIT;
SELECT outbox.emit('nottaken', 'x', '{}', 'a1') IS NOT NULL AS emitted;

-- The first batch: every event, in commit order, attempts 0.
CREATE TEMP TABLE b1 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type, payload, attempts FROM b1;
SELECT count(DISTINCT batch_id) AS batches FROM b1;
SELECT batch_id AS b1 FROM b1 LIMIT 1 \gset

-- While it is unfinished, a batch takes what comes before the first event
-- of an aggregate it holds (a3's e6), and ends there (before a1's e5), so
-- a4's e7, committed after e5, waits too.
SELECT outbox.emit('pl', 'e6', '{"n": 6}', 'a3') IS NOT NULL AS emitted;
SELECT outbox.emit('pl', 'e5', '{"n": 5}', 'a1') IS NOT NULL AS emitted;
SELECT outbox.emit('pl', 'e7', '{"n": 7}', 'a4') IS NOT NULL AS emitted;
CREATE TEMP TABLE b2 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type, attempts, batch_id <> :b1 AS new_batch FROM b2;
SELECT batch_id AS b2 FROM b2 LIMIT 1 \gset
SELECT aggregate_id, event_type, attempts FROM outbox.pending('pl') ORDER BY id;
-- Held back, and nothing else to take.
SELECT count(*) FROM outbox.next_batch('pl', 10);
SELECT count(*) FROM outbox.delivery_retry;

-- Finished: a1 comes again, with what followed it.
SELECT outbox.finish_batch(:b1);
SELECT pg_temp.error_text($$SELECT outbox.finish_batch($$ || :b1 || $$)$$);
CREATE TEMP TABLE b3 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type, attempts FROM b3;
SELECT batch_id AS b3, event_id AS e5 FROM b3 WHERE event_type = 'e5' \gset
SELECT outbox.finish_batch(:b2);

-- retry_event: an attempt; the event comes back after its delay.
SELECT outbox.retry_event(:b3, :'e5', '0 seconds', 'handler broke');
SELECT regexp_replace(pg_temp.error_text(format('SELECT outbox.retry_event(%s, %L)', :b3, :'e5')),
                      '[0-9a-f-]{36}', '<uuid>') AS error_text;
SELECT outbox.finish_batch(:b3);
SELECT aggregate_id, event_type, attempts, last_error FROM outbox.pending('pl');
CREATE TEMP TABLE b4 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type, attempts FROM b4;
SELECT batch_id AS b4 FROM b4 LIMIT 1 \gset
SELECT outbox.retry_event(:b4, :'e5', '0 seconds', 'broke again');
SELECT outbox.finish_batch(:b4);
CREATE TEMP TABLE b5 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type, attempts FROM b5;
SELECT batch_id AS b5 FROM b5 LIMIT 1 \gset
-- The third failure uses up max_attempts (3): a dead letter.
SELECT outbox.retry_event(:b5, :'e5', NULL, 'gave up');
SELECT event_type, attempts, last_error FROM outbox.dead_letters WHERE destination = 'pl';
SELECT outbox.finish_batch(:b5);

-- A failure holds back only the later events of its aggregate, in order.
BEGIN;
SELECT outbox.emit('pl', 'f' || i, jsonb_build_object('n', i), 'a' || (i % 2 + 5)) IS NOT NULL AS emitted
  FROM generate_series(1, 6) i;
COMMIT;
CREATE TEMP TABLE b6 AS SELECT * FROM outbox.next_batch('pl', 10);
SELECT aggregate_id, event_type FROM b6;
SELECT batch_id AS b6, event_id AS f2 FROM b6 WHERE event_type = 'f2' \gset
SELECT outbox.retry_event(:b6, :'f2', '0 seconds');
SELECT outbox.finish_batch(:b6) AS delivered;
SELECT aggregate_id, event_type, attempts FROM outbox.next_batch('pl', 10);

-- max_events bounds a batch, retry rows included.
SELECT outbox.emit('pl', 'g' || i, '{}', 'g' || i) IS NOT NULL AS emitted FROM generate_series(1, 5) i;
SELECT count(*) FROM outbox.pull_batch;
SELECT event_type FROM outbox.next_batch('pl', 2);

-- A lease that ends: the batch is handed out again under a new id, and
-- its old id is not an unfinished batch any more.
SELECT outbox.create_destination('pl_lease', 'pull');
SELECT outbox.subscribe('pl_lease', 'pl') > 0 AS subscribed;
SELECT outbox.emit('pl', 'h1', '{}', 'h') IS NOT NULL AS emitted;
CREATE TEMP TABLE l1 AS SELECT * FROM outbox.next_batch('pl_lease', 10, '1 microsecond');
SELECT event_type, attempts FROM l1;
SELECT batch_id AS l1 FROM l1 LIMIT 1 \gset
CREATE TEMP TABLE l2 AS SELECT * FROM outbox.next_batch('pl_lease', 10);
SELECT event_type, attempts, batch_id <> :l1 AS new_id FROM l2;
SELECT pg_temp.error_text($$SELECT outbox.finish_batch($$ || :l1 || $$)$$);
SELECT handed_out FROM outbox.pull_batch b JOIN outbox.destination d ON d.id = b.destination_id
 WHERE d.name = 'pl_lease';
SELECT outbox.finish_batch(batch_id) FROM l2 LIMIT 1;
SELECT delivered_total FROM outbox.stats WHERE destination = 'pl_lease';

-- Paused: nothing is handed out.
SELECT outbox.pause_destination('pl_lease');
SELECT outbox.emit('pl', 'h2', '{}', 'h') IS NOT NULL AS emitted;
SELECT count(*) FROM outbox.next_batch('pl_lease');
SELECT outbox.resume_destination('pl_lease');
SELECT event_type FROM outbox.next_batch('pl_lease');

-- Events of other topics before the next one of the destination's, many
-- pages of them (a page reads max_events events): one call reads through
-- all of them.
SELECT count(outbox.emit('pl_other', 'x', '{}')) FROM generate_series(1, 60);
SELECT outbox.emit('pl', 'after_others', '{}', 'k') IS NOT NULL AS emitted;
CREATE TEMP TABLE t1 AS SELECT * FROM outbox.next_batch('pl_lease', 5);
SELECT event_type FROM t1;
SELECT outbox.finish_batch(batch_id) FROM t1 LIMIT 1;

-- Errors: bad arguments, unknown destination, wrong kind, not a batch.
SELECT outbox.create_destination('pl_fn', 'notify', '{"channel": "pl_fn"}');
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch(NULL)$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl', NULL)$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl', 0)$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl', -5)$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl', 10, '-1 second')$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl', 10, '0 seconds')$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('nosuch')$$);
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl_fn')$$);
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('pl')$$);
SELECT pg_temp.error_text($$SELECT outbox.finish_batch(NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.finish_batch(-1)$$);
SELECT pg_temp.error_text($$SELECT outbox.retry_event(NULL, '00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.error_text($$SELECT outbox.retry_event(1, NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.retry_event(123456, '00000000-0000-0000-0000-000000000000')$$);
SELECT batch_id AS open_batch FROM outbox.next_batch('pl', 1) LIMIT 1 \gset
SELECT count(*) AS open_batches FROM outbox.pull_batch;
SELECT pg_temp.error_text(format('SELECT outbox.retry_event(%s, %L)', :open_batch, '00000000-0000-0000-0000-000000000000'));
SELECT pg_temp.error_text(format($$SELECT outbox.retry_event(%s, (SELECT (events[1]).event_id FROM outbox.pull_batch WHERE id = %s), '-1 second')$$, :open_batch, :open_batch));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl')$$);
ROLLBACK;

-- Another role: may not take, finish or retry the batches of pl (42501),
-- before anything is locked or changed.
CREATE ROLE pl_other;
GRANT EXECUTE ON FUNCTION outbox.next_batch(text, integer, interval),
	outbox.finish_batch(bigint), outbox.retry_event(bigint, uuid, interval, text) TO pl_other;
SET ROLE pl_other;
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl')$$);
SELECT pg_temp.error_text($$SELECT outbox.finish_batch($$ || :open_batch || $$)$$);
SELECT pg_temp.error_text(format('SELECT outbox.retry_event(%s, %L)', :open_batch, '00000000-0000-0000-0000-000000000000'));
RESET ROLE;
SELECT count(*) AS open_batches FROM outbox.pull_batch;
-- A member of the owner may.
CREATE ROLE pl_owner;
GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb) TO pl_owner;
SET ROLE pl_owner;
SELECT outbox.create_destination('pl_own', 'pull');
RESET ROLE;
SET ROLE pl_other;
SELECT pg_temp.error_text($$SELECT * FROM outbox.next_batch('pl_own')$$);
RESET ROLE;
GRANT pl_owner TO pl_other;
SET ROLE pl_other;
SELECT count(*) FROM outbox.next_batch('pl_own');
RESET ROLE;
SELECT outbox.finish_batch(:open_batch);

-- wait_delivered() of every destination does not wait for pull
-- destinations (the dispatcher cannot deliver them); of one, it waits for
-- its unfinished batches.
SELECT outbox.wait_delivered('10 seconds', NULL);
SELECT outbox.wait_delivered('10 milliseconds', 'pl');
SELECT count(*) AS owed FROM outbox.pending('pl');

-- A trace context stored without the checks of emit() (a 0.1.0 event, a
-- restored row) is checked again before next_batch hands it out: invalid
-- trace keys are dropped (issue 17 item 4, base/trace_context.c).
SELECT outbox.create_destination('pl_trace', 'pull');
SELECT outbox.subscribe('pl_trace', 'pl_traced') > 0 AS subscribed;
WITH tx AS (SELECT pg_catalog.pg_current_xact_id() AS txid)
INSERT INTO outbox.events (id, event_id, topic, aggregate_id, event_type, payload, headers, created_at, txid)
SELECT nextval('outbox.events_id_seq'), gen_random_uuid(), 'pl_traced', NULL, v.type, '{}', v.headers, now(), tx.txid
  FROM tx, (VALUES
	('old.invalid', '{"traceparent": "00-zz", "tracestate": "congo=1", "tenant": "t1"}'::jsonb),
	('old.valid', '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}')) v(type, headers);
SELECT event_type, headers FROM outbox.next_batch('pl_trace', 10) ORDER BY id;
SELECT outbox.drop_destination('pl_trace');

-- The dispatcher leaves pull destinations alone; drop removes the batches.
SELECT outbox.drop_destination('pl');
SELECT outbox.drop_destination('pl_lease');
SELECT outbox.drop_destination('pl_fn');
SELECT outbox.drop_destination('pl_own');
SELECT count(*) FROM outbox.pull_batch;
REVOKE EXECUTE ON FUNCTION outbox.next_batch(text, integer, interval),
	outbox.finish_batch(bigint), outbox.retry_event(bigint, uuid, interval, text) FROM pl_other;
REVOKE EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb) FROM pl_owner;
DROP ROLE pl_other;
DROP ROLE pl_owner;

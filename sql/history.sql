-- Retained history (issue 16 item 2): outbox.retain_topic keeps a topic's
-- events in outbox.history, outbox.aggregate_events returns an aggregate's
-- history in commit order with positions to page by, then what the
-- archiver has not reached yet (position NULL); keep bounds it;
-- unretain_topic ends it; every error has its SQLSTATE and changes nothing.
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
CREATE FUNCTION pg_temp.wait_for(cond text, timeout interval DEFAULT '30 seconds')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	ok boolean;
BEGIN
	LOOP
		EXECUTE cond INTO ok;
		IF ok THEN RETURN true; END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END $$;

CREATE ROLE hist_app;
CREATE ROLE hist_reader;
CREATE ROLE hist_other;
GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz),
	outbox.retain_topic(text, interval), outbox.unretain_topic(text),
	outbox.aggregate_events(text, text, bigint), outbox.create_topic(text),
	outbox.append(text, text, bigint, text, jsonb, jsonb),
	outbox.grant_topic(text, regrole, text)
	TO hist_app, hist_reader, hist_other;

-- The topic's owner retains it; the archiver appears, owned by the
-- bootstrap superuser.
SET ROLE hist_app;
SELECT outbox.create_topic('h_orders');
SELECT outbox.retain_topic('h_orders');
RESET ROLE;
SELECT name, kind, config, owner = (SELECT rolname FROM pg_roles WHERE oid = 10)::regrole AS bootstrap
  FROM outbox.destinations WHERE name = 'outbox.history';
SELECT topic, keep FROM outbox.retained_topic;

-- Errors, as the owner and as others; nothing changes.
SET ROLE hist_app;
SELECT pg_temp.error_text($$SELECT outbox.retain_topic(NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.retain_topic('h_orders', '-1 day')$$);
SELECT pg_temp.error_text($$SELECT outbox.retain_topic('h_orders', '0 seconds')$$);
SELECT pg_temp.error_text($$SELECT outbox.retain_topic('')$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events(NULL, 'a')$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', 'a', -1)$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', 'a', NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_unretained', 'a')$$);
SELECT pg_temp.error_text($$SELECT outbox.unretain_topic('h_unretained')$$);
SET ROLE hist_other;
SELECT pg_temp.error_text($$SELECT outbox.retain_topic('h_orders', '1 day')$$);
SELECT pg_temp.error_text($$SELECT outbox.unretain_topic('h_orders')$$);
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', 'a')$$);
RESET ROLE;
SELECT pg_temp.error_text($$SELECT outbox.rewind('outbox.history', now())$$);
SELECT topic, keep FROM outbox.retained_topic;

-- Events of two aggregates and another topic; the history has those of
-- the retained topic, each with a position, in commit order.
SET ROLE hist_app;
SELECT count(outbox.emit('h_orders', 'order.step', jsonb_build_object('n', n), 'o' || n % 2))
  FROM generate_series(1, 6) n;
SELECT count(outbox.emit('h_other', 'x', '{}', 'o1')) FROM generate_series(1, 2);
BEGIN;
SELECT outbox.emit('h_orders', 'order.step', '{"n": 7}', 'o1') IS NOT NULL AS emitted;
SELECT outbox.emit('h_orders', 'order.step', '{"n": 8}', 'o0') IS NOT NULL AS emitted;
COMMIT;
RESET ROLE;
SELECT pg_temp.wait_for($$SELECT count(*) = 8 FROM outbox.history$$);
SET ROLE hist_app;
SELECT payload->>'n' AS n, aggregate_id, event_type, committed_at IS NOT NULL AS has_commit_time
  FROM outbox.aggregate_events('h_orders', 'o1');
-- positions increase, in commit order
SELECT bool_and(position > prev) AS increasing, bool_and(committed_at >= prev_at) AS commit_order
  FROM (SELECT position, committed_at,
               lag(position, 1, 0::bigint) OVER (ORDER BY position) AS prev,
               lag(committed_at, 1, '-infinity') OVER (ORDER BY position) AS prev_at
          FROM outbox.aggregate_events('h_orders', 'o0')) s;
-- paging: after the second position, the rest
SELECT payload->>'n' AS n
  FROM outbox.aggregate_events('h_orders', 'o1',
       (SELECT position FROM outbox.aggregate_events('h_orders', 'o1') OFFSET 1 LIMIT 1));
SELECT count(*) AS none_after_last
  FROM outbox.aggregate_events('h_orders', 'o1',
       (SELECT max(position) FROM outbox.aggregate_events('h_orders', 'o1')));
SELECT count(*) AS unknown_aggregate FROM outbox.aggregate_events('h_orders', 'nope');

-- Read rights (G14): a reader needs read on the topic.
SET ROLE hist_reader;
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', 'o1')$$);
SET ROLE hist_app;
SELECT outbox.grant_topic('h_orders', 'hist_reader', 'read');
SET ROLE hist_reader;
SELECT count(*) AS reader_sees FROM outbox.aggregate_events('h_orders', 'o1');
RESET ROLE;

-- The tail: with the archiver paused, new events are returned after the
-- history with position NULL, in commit order; archived, they get
-- positions after the ones before.
SELECT outbox.pause_destination('outbox.history');
SET ROLE hist_app;
SELECT outbox.emit('h_orders', 'order.step', '{"n": 9}', 'o1') IS NOT NULL AS emitted;
SELECT outbox.emit('h_orders', 'order.step', '{"n": 11}', 'o1') IS NOT NULL AS emitted;
SELECT payload->>'n' AS n, position IS NULL AS tail
  FROM outbox.aggregate_events('h_orders', 'o1');
SELECT payload->>'n' AS n, position IS NULL AS tail
  FROM outbox.aggregate_events('h_orders', 'o1',
       (SELECT max(position) FROM outbox.aggregate_events('h_orders', 'o1')));
RESET ROLE;
SELECT outbox.resume_destination('outbox.history');
SELECT pg_temp.wait_for($$SELECT count(*) = 10 FROM outbox.history$$);
SET ROLE hist_app;
SELECT payload->>'n' AS n, position IS NULL AS tail,
       position > lag(position) OVER (ORDER BY position) AS after_previous
  FROM outbox.aggregate_events('h_orders', 'o1');
RESET ROLE;

-- keep: changed by a second call; housekeeping deletes older events
-- (outbox.history_prune, called here directly).  Only keep's age counts.
SET ROLE hist_app;
SELECT outbox.retain_topic('h_orders', '1 hour');
RESET ROLE;
SELECT topic, keep FROM outbox.retained_topic;
UPDATE outbox.history SET committed_at = committed_at - interval '2 hours'
 WHERE payload->>'n' IN ('1', '2');
SELECT outbox.history_prune();
SELECT count(*) AS kept FROM outbox.history;
SELECT outbox.history_prune();

-- Privileges: the internal functions and the store are not for users.
SET ROLE hist_app;
SELECT pg_temp.error_text($$SELECT count(*) FROM outbox.history$$);
SELECT pg_temp.error_text($$SELECT outbox.history_prune()$$);
SELECT pg_temp.error_text($$SELECT outbox.history_retain('h_orders', NULL)$$);

-- unretain_topic: stops archiving and deletes the history.
SELECT outbox.unretain_topic('h_orders');
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('h_orders', 'o1')$$);
RESET ROLE;
SELECT count(*) AS history_left FROM outbox.history;
SELECT count(*) AS archiver_subscriptions FROM outbox.subscriptions WHERE destination = 'outbox.history';

-- outbox.append: an expected-version check for event-sourced aggregates
-- (concurrency: the isolation spec append_expected_version).
SET ROLE hist_app;
SELECT outbox.retain_topic('h_accounts');
SELECT outbox.append('h_accounts', 'acct-1', 0, 'opened', '{"n": 1}') AS version;
SELECT outbox.append('h_accounts', 'acct-1', 1, 'deposited', '{"n": 2}') AS version;
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', 'acct-1', 1, 'deposited', '{"n": 3}')$$);
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', 'acct-1', 0, 'opened', '{"n": 3}')$$);
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', 'acct-1', -1, 'x')$$);
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', NULL, 0, 'x')$$);
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', 'acct-1', NULL, 'x')$$);
SELECT outbox.append('h_accounts', 'acct-1', 2, 'deposited', '{"n": 4}') AS version;
SET ROLE hist_other;
SELECT pg_temp.error_text($$SELECT outbox.append('h_accounts', 'acct-1', 3, 'deposited')$$);
RESET ROLE;
SELECT pg_temp.wait_for($$SELECT count(*) = 3 FROM outbox.history WHERE topic = 'h_accounts'$$);
SELECT payload->>'n' AS n, event_type FROM outbox.aggregate_events('h_accounts', 'acct-1');
SELECT topic, aggregate_id, version FROM outbox.aggregate_version;
SELECT outbox.unretain_topic('h_accounts');

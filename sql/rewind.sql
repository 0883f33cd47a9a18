-- Replay (issue 16 item 3): outbox.rewind re-delivers a destination's
-- retained events committed at or after a time, in order per aggregate,
-- then continues live with no gap, no duplicate and no reorder at the
-- seam; outbox.subscribe_since starts a destination from history;
-- outbox.stats shows a replay in progress; owner only; topic read rights.
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

CREATE ROLE rw_app;
CREATE ROLE rw_other;
CREATE SCHEMA rw AUTHORIZATION rw_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO rw_app, rw_other;
GRANT SELECT ON outbox.stats TO rw_app;

SET ROLE rw_app;
-- The read model: one row per delivery, in delivery order.
CREATE TABLE rw.got (seq bigint GENERATED ALWAYS AS IDENTITY, dest text, agg text, n int);
GRANT USAGE ON SCHEMA rw TO rw_other;
GRANT INSERT ON rw.got TO rw_other;
CREATE FUNCTION rw.to_a(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rw.got (dest, agg, n) VALUES ('a', e.aggregate_id, (e.payload->>'n')::int) $$;
CREATE FUNCTION rw.to_b(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rw.got (dest, agg, n) VALUES ('b', e.aggregate_id, (e.payload->>'n')::int) $$;
GRANT EXECUTE ON FUNCTION rw.to_b(outbox.events) TO rw_other;
-- Who got what, per aggregate, in delivery order.
CREATE VIEW rw.per_agg AS
	SELECT dest, agg, array_agg(n ORDER BY seq) AS ns FROM rw.got GROUP BY 1, 2;

SELECT outbox.create_topic('rw_orders');
SELECT outbox.retain_topic('rw_orders');
-- Before the destination exists: retained, not delivered live.
SELECT count(outbox.emit('rw_orders', 'o', jsonb_build_object('n', n), 'k' || n % 3))
  FROM generate_series(1, 6) n;
SELECT outbox.create_destination('rw_a', 'function', '{"function": "rw.to_a"}');
SELECT outbox.subscribe('rw_a', 'rw_orders') > 0 AS subscribed;
SELECT count(outbox.emit('rw_orders', 'o', jsonb_build_object('n', n), 'k' || n % 3))
  FROM generate_series(7, 12) n;
SELECT pg_temp.wait_for($$SELECT count(*) = 6 FROM rw.got$$);
SELECT agg, ns FROM rw.per_agg ORDER BY agg;
RESET ROLE;
SELECT pg_temp.wait_for($$SELECT count(*) = 12 FROM outbox.history WHERE topic = 'rw_orders'$$);
SET ROLE rw_app;

-- Errors: nothing queued.
SELECT pg_temp.error_text($$SELECT outbox.rewind('nope', now())$$);
SELECT pg_temp.error_text($$SELECT outbox.rewind(NULL, now())$$);
SELECT pg_temp.error_text($$SELECT outbox.rewind('rw_a', NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.rewind('rw_a', 'infinity')$$);
SET ROLE rw_other;
SELECT pg_temp.error_text($$SELECT outbox.rewind('rw_a', '-infinity')$$);
SELECT pg_temp.error_text($$SELECT outbox.subscribe_since('rw_a', '-infinity', 'rw_orders')$$);
SET ROLE rw_app;
SELECT count(*) AS nothing_queued FROM outbox.pending('rw_a');

-- The read model truncated and rebuilt from the start of history: every
-- retained event once (the six from before the subscription too), per
-- aggregate in commit order.
TRUNCATE rw.got;
SELECT outbox.rewind('rw_a', '-infinity');
SELECT pg_temp.wait_for($$SELECT count(*) = 12 FROM rw.got$$);
SELECT agg, ns FROM rw.per_agg ORDER BY agg;
SELECT replay_pending, replay_since FROM outbox.stats WHERE destination = 'rw_a';

-- The seam: paused, with two events not delivered yet (they must come
-- live, once), a rewind from the commit time of events 7-12 (one
-- transaction; 1-6 committed before), then events written
-- during the replay.  Each aggregate: the replayed events, then the rest,
-- in commit order, nothing twice.
TRUNCATE rw.got;
SELECT outbox.pause_destination('rw_a');
SELECT count(outbox.emit('rw_orders', 'o', jsonb_build_object('n', n), 'k' || n % 3))
  FROM generate_series(13, 14) n;
RESET ROLE;
SELECT committed_at AS since_7 FROM outbox.history
 WHERE topic = 'rw_orders' AND payload->>'n' = '7' \gset
SET ROLE rw_app;
SELECT outbox.rewind('rw_a', :'since_7');
SELECT replay_pending, replay_since = :'since_7' AS replay_since FROM outbox.stats
 WHERE destination = 'rw_a';
SELECT count(outbox.emit('rw_orders', 'o', jsonb_build_object('n', n), 'k' || n % 3))
  FROM generate_series(15, 17) n;
SELECT outbox.resume_destination('rw_a');
SELECT pg_temp.wait_for($$SELECT count(*) = 11 FROM rw.got$$);
SELECT agg, ns FROM rw.per_agg ORDER BY agg;
SELECT replay_pending, replay_since FROM outbox.stats WHERE destination = 'rw_a';

-- A replay follows the history's order (positions, the archiver's
-- order), not commit times: two overlapping commits of one aggregate may
-- become visible in the other order than their commit times, and the
-- archiver then got them in the order they became visible.  Simulated by
-- giving event 4 a commit time before event 1's: aggregate k1 still
-- replays 1, 4, 7, ... (as aggregate_events returns it).
RESET ROLE;
UPDATE outbox.history SET committed_at = committed_at - interval '1 hour'
 WHERE topic = 'rw_orders' AND payload->>'n' = '4';
SET ROLE rw_app;
SELECT array_agg((payload->>'n')::int ORDER BY position) AS k1_history
  FROM outbox.aggregate_events('rw_orders', 'k1');
TRUNCATE rw.got;
SELECT outbox.rewind('rw_a', '-infinity');
SELECT pg_temp.wait_for($$SELECT count(*) = 17 FROM rw.got$$);
SELECT agg, ns FROM rw.per_agg ORDER BY agg;
RESET ROLE;
UPDATE outbox.history SET committed_at = committed_at + interval '1 hour'
 WHERE topic = 'rw_orders' AND payload->>'n' = '4';
SET ROLE rw_app;

-- A rewind from the future queues nothing.
SELECT outbox.rewind('rw_a', now() + interval '1 day');

-- subscribe_since: a new destination starts from history, then live.
SELECT outbox.create_destination('rw_b', 'function', '{"function": "rw.to_b"}');
SELECT outbox.subscribe_since('rw_b', '-infinity', 'rw_orders', '{o}') > 0 AS subscribed;
SELECT count(outbox.emit('rw_orders', 'o', jsonb_build_object('n', n), 'k' || n % 3))
  FROM generate_series(18, 18) n;
SELECT pg_temp.wait_for($$SELECT count(*) = 18 FROM rw.got WHERE dest = 'b'$$);
SELECT agg, ns FROM rw.per_agg WHERE dest = 'b' ORDER BY agg;
SELECT pg_temp.error_text($$SELECT outbox.subscribe_since('rw_b', NULL, 'rw_orders')$$);
SELECT pg_temp.error_text($$SELECT outbox.subscribe_since('rw_b', now(), 'rw_orders', '{o}')$$);

-- Topic read rights (G14): a destination whose owner may not read the
-- retained topic gets none of its events, '*' or not.
SET ROLE rw_other;
SELECT outbox.create_destination('rw_c', 'function', '{"function": "rw.to_b"}');
SELECT outbox.subscribe('rw_c') > 0 AS subscribed_to_all;
SELECT pg_temp.error_text($$SELECT outbox.subscribe_since('rw_c', '-infinity', 'rw_orders')$$);
SELECT outbox.rewind('rw_c', '-infinity') AS queued_unreadable;
SELECT pg_temp.error_text($$SELECT outbox.aggregate_events('rw_orders', 'k1')$$);
SET ROLE rw_app;
SELECT outbox.grant_topic('rw_orders', 'rw_other', 'read');
SET ROLE rw_other;
SELECT outbox.rewind('rw_c', '-infinity') AS queued_readable;
SELECT outbox.drop_destination('rw_c');
SET ROLE rw_app;
SELECT outbox.revoke_topic('rw_orders', 'rw_other', 'read');

-- Non-owners, as members: a member of the owner may rewind.
RESET ROLE;
GRANT rw_app TO rw_other;
SET ROLE rw_other;
SELECT outbox.rewind('rw_a', now() + interval '1 day') AS member_may;
RESET ROLE;
REVOKE rw_app FROM rw_other;
SELECT outbox.drop_destination('rw_a');
SELECT outbox.drop_destination('rw_b');
SELECT outbox.unretain_topic('rw_orders') > 0 AS unretained;

-- Function destinations: committed events reach the handler in order, as
-- the destination's owner, after the subscription and per its filters;
-- paused destinations wait; delayed events wait for deliver_after.
SET timezone = 'UTC';

-- Wait (without blind sleeps) until a condition holds.
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
		PERFORM outbox.wait_idle('1 second');
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;

CREATE ROLE dispatch_app;
CREATE SCHEMA app AUTHORIZATION dispatch_app;
GRANT USAGE ON SCHEMA outbox TO dispatch_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO dispatch_app;
GRANT SELECT ON outbox.stats TO dispatch_app;

SET ROLE dispatch_app;
CREATE TABLE app.received (
	seq        bigint GENERATED ALWAYS AS IDENTITY,
	event_id   uuid,
	topic      text,
	event_type text,
	aggregate  text,
	payload    jsonb,
	run_as     text,
	search     text
);
CREATE FUNCTION app.on_event(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO app.received (event_id, topic, event_type, aggregate, payload, run_as, search)
	VALUES (e.event_id, e.topic, e.event_type, e.aggregate_id, e.payload,
	        current_user, current_setting('search_path'));
END $$;
CREATE FUNCTION app.on_json(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO app.received (event_id, topic, event_type, aggregate, payload, run_as)
	VALUES ((e->>'event_id')::uuid, e->>'topic', e->>'event_type', e->>'aggregate_id',
	        e, current_user);
END $$;

-- Events committed before the subscription are not delivered.
SELECT outbox.emit('orders', 'order.before', '{}', 'o-0') IS NOT NULL AS emitted;
SELECT outbox.create_destination('app_handler', 'function', '{"function": "app.on_event"}');
SELECT outbox.subscribe('app_handler', 'orders') > 0 AS subscribed;
RESET ROLE;

-- A destination's handler runs as the role that created the destination, with
-- its search_path (pg_temp last).
SELECT count(outbox.emit('orders', 'order.created', jsonb_build_object('n', n), 'o-' || (n % 2)))
  FROM generate_series(1, 6) n;
SELECT outbox.emit('payments', 'payment.done', '{}', 'p-1') IS NOT NULL AS other_topic;
SELECT outbox.wait_idle();
SELECT event_type, aggregate, payload, run_as, search
  FROM app.received ORDER BY seq;

-- Per aggregate, events arrive in commit order.
SELECT aggregate, array_agg((payload->>'n')::int ORDER BY seq) AS arrival
  FROM app.received GROUP BY aggregate ORDER BY aggregate;

-- One transaction's events arrive together, in the order written.
BEGIN;
SELECT count(outbox.emit('orders', 'order.bulk', jsonb_build_object('n', n), 'bulk'))
  FROM generate_series(1, 3) n;
COMMIT;
SELECT outbox.wait_idle();
SELECT array_agg((payload->>'n')::int ORDER BY seq) FROM app.received WHERE aggregate = 'bulk';

-- Filters: event types.
SET ROLE dispatch_app;
SELECT outbox.create_destination('app_json', 'function', '{"function": "app.on_json"}');
SELECT outbox.subscribe('app_json', 'payments', ARRAY['payment.refunded']) > 0 AS subscribed;
RESET ROLE;
TRUNCATE app.received;
SELECT outbox.emit('payments', 'payment.done', '{}', 'p-2') IS NOT NULL;
SELECT outbox.emit('payments', 'payment.refunded', '{"amount": 5}', 'p-2') IS NOT NULL;
SELECT outbox.wait_idle();
-- The jsonb form gets to_jsonb() of the event row.
SELECT topic, event_type, aggregate,
       payload ?& ARRAY['id', 'event_id', 'topic', 'aggregate_id', 'event_type', 'payload',
                        'headers', 'created_at', 'deliver_after', 'txid'] AS has_every_column,
       payload->'payload' AS event_payload
  FROM app.received ORDER BY seq;

-- A paused destination waits; resumed, it catches up.
TRUNCATE app.received;
SELECT outbox.pause_destination('app_handler');
SELECT outbox.emit('orders', 'order.while_paused', '{}', 'o-9') IS NOT NULL;
SELECT outbox.wait_idle();
SELECT count(*) AS delivered_while_paused FROM app.received;
SELECT destination, paused, ready FROM outbox.stats WHERE destination = 'app_handler';
SELECT outbox.resume_destination('app_handler');
SELECT outbox.wait_idle();
SELECT event_type FROM app.received ORDER BY seq;

-- deliver_after: held until then; the aggregate's later events wait behind it.
TRUNCATE app.received;
SELECT outbox.emit('orders', 'order.reminder', '{}', 'o-late',
                   deliver_after => clock_timestamp() + interval '2 seconds') IS NOT NULL;
SELECT outbox.emit('orders', 'order.after_reminder', '{}', 'o-late') IS NOT NULL;
SELECT outbox.emit('orders', 'order.unrelated', '{}', 'o-other') IS NOT NULL;
SELECT outbox.wait_idle();
SELECT event_type FROM app.received ORDER BY seq;
SELECT pg_temp.wait_for($$SELECT count(*) = 3 FROM app.received$$);
SELECT event_type FROM app.received ORDER BY seq;

-- Counters.
SELECT destination, kind, paused, retrying, dead, delivered_total, failed_attempts_total,
       last_error
  FROM outbox.stats ORDER BY destination;

-- The owner's privileges, never more: a handler that reads what its owner
-- may not read fails (the attempt is recorded, nothing is delivered).
CREATE TABLE public.secrets (s text);
INSERT INTO public.secrets VALUES ('top secret');
SET ROLE dispatch_app;
CREATE FUNCTION app.peek(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO app.received (topic, payload) SELECT 'peek', to_jsonb(s) FROM public.secrets;
END $$;
SELECT outbox.create_destination('app_peek', 'function',
	'{"function": "app.peek", "max_attempts": 1}');
SELECT outbox.subscribe('app_peek', 'peek') > 0 AS subscribed;
RESET ROLE;
SELECT outbox.emit('peek', 'try') IS NOT NULL;
SELECT pg_temp.wait_for($$SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'app_peek'$$);
SELECT destination, attempts, last_error FROM outbox.dead_letters WHERE destination = 'app_peek';
SELECT count(*) AS leaked FROM app.received WHERE topic = 'peek';

-- DROP ROLE of a role that a destination runs as is refused (the library
-- is preloaded here), naming what depends on it.
DROP ROLE dispatch_app;

-- A destination whose owner is gone anyway (dropped while connected to
-- another database, where the guard cannot see this one) fails its calls
-- with 42704 instead of running them as a stale role OID.  Simulated by
-- pointing a destination at an OID that no role has.
SET ROLE dispatch_app;
SELECT outbox.create_destination('app_orphan', 'function',
	'{"function": "app.on_event", "max_attempts": 1}');
SELECT outbox.subscribe('app_orphan', 'orphan') > 0 AS subscribed;
RESET ROLE;
UPDATE outbox.destination SET owner = 4000000000::oid WHERE name = 'app_orphan';
SELECT outbox.emit('orphan', 'lost.owner') IS NOT NULL;
SELECT pg_temp.wait_for($$SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'app_orphan'$$);
SELECT destination, attempts, last_error FROM outbox.dead_letters WHERE destination = 'app_orphan';
SELECT count(*) AS ran FROM app.received WHERE topic = 'orphan';

-- A position whose tick is gone (restored, or the tick deleted): outbox.stats
-- ages the backlog from the first event of the oldest transaction after
-- done_id, found by the (txid, id) index (the log has no index on id).  Two
-- transactions to a paused destination, A (two events) then B (one), A's
-- second renumbered past B's: by id B's event would come first, by
-- transaction A's.  The position is lost, and the destination resumed, only
-- inside a transaction that is rolled back, so the dispatcher never sees it.
SELECT outbox.create_destination('lost_pos', 'function', '{"function": "app.on_event"}');
SELECT outbox.subscribe('lost_pos', 'lost') > 0 AS subscribed;
SELECT outbox.pause_destination('lost_pos');
BEGIN;
SELECT count(outbox.emit('lost', 'a', jsonb_build_object('n', g))) FROM generate_series(1, 2) g;
UPDATE outbox.events SET created_at = '2000-01-01 00:00:00+00' WHERE txid = pg_current_xact_id();
COMMIT;
BEGIN;
SELECT outbox.emit('lost', 'b', '{}') IS NOT NULL;
UPDATE outbox.events SET created_at = '2010-01-01 00:00:00+00' WHERE txid = pg_current_xact_id();
COMMIT;
BEGIN;
UPDATE outbox.events SET id = nextval('outbox.events_id_seq')
 WHERE id = (SELECT max(id) FROM outbox.events WHERE topic = 'lost' AND event_type = 'a');
UPDATE outbox.destination
   SET paused = false, tick_from = -1,
       done_id = (SELECT min(id) FROM outbox.events WHERE topic = 'lost')
 WHERE name = 'lost_pos';
SELECT string_agg(event_type, ',' ORDER BY id) AS by_id FROM outbox.events
 WHERE topic = 'lost' AND id > (SELECT done_id FROM outbox.destination WHERE name = 'lost_pos');
SELECT now() - oldest_ready_age < '2005-01-01 00:00:00+00' AS aged_from_a,
       now() - oldest_ready_age > '1999-12-30 00:00:00+00' AS not_older,
       holds_log_since IS NULL AS no_tick
  FROM outbox.stats WHERE destination = 'lost_pos';
ROLLBACK;
SELECT outbox.drop_destination('lost_pos');

-- Clean up.
SELECT outbox.drop_destination(name) FROM outbox.destinations ORDER BY name;
DROP TABLE public.secrets;
DROP SCHEMA app CASCADE;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA outbox FROM dispatch_app;
REVOKE ALL ON SCHEMA outbox FROM dispatch_app;
REVOKE ALL ON outbox.stats FROM dispatch_app;
-- Topics the roles own or were granted name them by OID: give them back first.
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('dispatch_app'))) x;
SELECT count(*) AS topic_privileges_revoked FROM (
  SELECT outbox.revoke_topic(g.topic, g.grantee, g.privilege) FROM outbox.topic_grant g
   WHERE g.grantee::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('dispatch_app'))) x;
DROP ROLE dispatch_app;

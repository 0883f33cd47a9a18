-- Failures: retries with backoff, the retry limit, dead letters, replay and
-- discard; a failing event holds back only later events of its own
-- aggregate (G4); delivery errors are visible in outbox.stats.
SET timezone = 'UTC';

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

CREATE TABLE public.poison (n int PRIMARY KEY);
CREATE TABLE public.delivered (seq bigint GENERATED ALWAYS AS IDENTITY, aggregate text, n int);
CREATE FUNCTION public.picky(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM public.poison WHERE n = (e.payload->>'n')::int) THEN
		RAISE EXCEPTION 'poison event %', e.payload->>'n' USING ERRCODE = 'P0001';
	END IF;
	INSERT INTO public.delivered (aggregate, n) VALUES (e.aggregate_id, (e.payload->>'n')::int);
END $$;

SELECT outbox.create_destination('picky', 'function',
	'{"function": "public.picky", "max_attempts": 3,
	  "backoff_base": "5 milliseconds", "backoff_max": "20 milliseconds"}');
SELECT outbox.subscribe('picky', 'work') > 0 AS subscribed;

-- Event 1 of aggregate A fails for good; A's event 2 waits behind it and is
-- delivered after event 1 has been dead-lettered; aggregate B flows on.
INSERT INTO public.poison VALUES (1);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), agg))
  FROM (VALUES (1, 'A'), (2, 'A'), (3, 'B'), (4, 'B')) v(n, agg);
SELECT pg_temp.wait_for($$SELECT count(*) = 3 FROM public.delivered$$);
SELECT aggregate, n FROM public.delivered ORDER BY seq;
SELECT destination, attempts, last_error, aggregate_id, payload
  FROM outbox.dead_letters ORDER BY id;
SELECT destination, retrying, dead, delivered_total, failed_attempts_total, last_error
  FROM outbox.stats WHERE destination = 'picky';

-- A transient failure: retried until it succeeds; the aggregate's later
-- events wait, other aggregates flow.
TRUNCATE public.delivered;
SELECT outbox.alter_destination('picky', '{"max_attempts": 1000}');
INSERT INTO public.poison VALUES (10);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), 'C'))
  FROM generate_series(10, 12) n;
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', 20), 'D'));
SELECT pg_temp.wait_for($$SELECT count(*) = 1 FROM public.delivered WHERE aggregate = 'D'$$);
SELECT pg_temp.wait_for($$SELECT retrying > 0 FROM outbox.stats WHERE destination = 'picky'$$);
SELECT count(*) AS c_delivered_while_10_fails FROM public.delivered WHERE aggregate = 'C';
DELETE FROM public.poison WHERE n = 10;
SELECT pg_temp.wait_for($$SELECT count(*) = 3 FROM public.delivered WHERE aggregate = 'C'$$);
SELECT array_agg(n ORDER BY seq) AS c_order FROM public.delivered WHERE aggregate = 'C';

-- Poison in several aggregates, retried again and again, does not hold
-- back the other aggregates (G4): fresh events are taken first, and
-- failing retries do not back the whole destination off.
TRUNCATE public.delivered;
INSERT INTO public.poison VALUES (50), (51), (52);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), 'P' || n))
  FROM generate_series(50, 52) n;
SELECT pg_temp.wait_for($$SELECT retrying = 3 FROM outbox.stats WHERE destination = 'picky'$$);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), 'H' || n))
  FROM generate_series(60, 69) n;
SELECT pg_temp.wait_for($$SELECT count(*) = 10 FROM public.delivered$$) AS healthy_flowed;
SELECT count(*) AS poison_delivered FROM public.delivered WHERE n BETWEEN 50 AND 52;
DELETE FROM public.poison WHERE n BETWEEN 50 AND 52;
SELECT pg_temp.wait_for($$SELECT count(*) = 13 FROM public.delivered$$) AS poison_healed;

-- Replay: the dead letter goes back to the queue and is delivered.
DELETE FROM public.poison;
SELECT outbox.replay_dead('picky');
SELECT pg_temp.wait_for($$SELECT count(*) = 1 FROM public.delivered WHERE n = 1$$);
SELECT count(*) AS dead_after_replay FROM outbox.dead_letters;

-- Discard: selected by event id.
SELECT outbox.alter_destination('picky', '{"max_attempts": 3}');
INSERT INTO public.poison VALUES (30), (31);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), 'E' || n))
  FROM generate_series(30, 31) n;
SELECT pg_temp.wait_for($$SELECT count(*) = 2 FROM outbox.dead_letters$$);
SELECT outbox.discard_dead('picky',
	ARRAY(SELECT event_id FROM outbox.dead_letters WHERE payload->>'n' = '30'));
SELECT payload->>'n' AS still_dead FROM outbox.dead_letters;
SELECT outbox.discard_dead();
SELECT count(*) AS dead_left FROM outbox.dead_letters;

-- Unordered destinations do not hold an aggregate back.
TRUNCATE public.delivered;
DELETE FROM public.poison;
SELECT outbox.alter_destination('picky', '{"ordered": false, "max_attempts": 100}');
INSERT INTO public.poison VALUES (40);
SELECT count(outbox.emit('work', 'job', jsonb_build_object('n', n), 'F'))
  FROM generate_series(40, 42) n;
SELECT pg_temp.wait_for($$SELECT count(*) = 2 FROM public.delivered$$);
SELECT array_agg(n ORDER BY seq) AS unordered FROM public.delivered;
DELETE FROM public.poison;
SELECT pg_temp.wait_for($$SELECT count(*) = 3 FROM public.delivered$$);

-- A handler that does not exist any more: the attempt fails with a clear
-- error and the event waits; recreated, delivery resumes.
SELECT outbox.create_destination('fragile', 'function',
	'{"function": "public.fragile", "backoff_base": "5 milliseconds", "backoff_max": "20 milliseconds"}');
CREATE FUNCTION public.fragile(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.delivered (aggregate, n) VALUES ('fragile', 0) $$;
SELECT outbox.create_destination('fragile', 'function',
	'{"function": "public.fragile", "backoff_base": "5 milliseconds", "backoff_max": "20 milliseconds"}');
SELECT outbox.subscribe('fragile', 'fragile') > 0 AS subscribed;
DROP FUNCTION public.fragile(outbox.events);
SELECT outbox.emit('fragile', 'x') IS NOT NULL;
SELECT pg_temp.wait_for($$SELECT failed_attempts_total > 0 FROM outbox.stats WHERE destination = 'fragile'$$);
SELECT last_error FROM outbox.stats WHERE destination = 'fragile';
CREATE FUNCTION public.fragile(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.delivered (aggregate, n) VALUES ('fragile', 0) $$;
SELECT outbox.resume_destination('fragile');  -- ends the backoff: try now
SELECT pg_temp.wait_for($$SELECT count(*) = 1 FROM public.delivered WHERE aggregate = 'fragile'$$);

-- Bad calls.
SELECT outbox.replay_dead('no_such_destination');
SELECT outbox.discard_dead('picky', ARRAY[NULL]::uuid[]);
SELECT outbox.wait_idle(NULL);
SELECT outbox.wait_idle('0 seconds');
SELECT outbox.wait_idle('-1 second');
SELECT outbox.wait_idle('1 month');
CREATE ROLE retry_stranger;
GRANT EXECUTE ON FUNCTION outbox.replay_dead(text, uuid[]) TO retry_stranger;
-- The stranger plants an operator = (text, text) and puts its schema before
-- pg_catalog: the functions' own statements, which run with the
-- extension's rights, must not resolve it.
CREATE SCHEMA stranger AUTHORIZATION retry_stranger;
SET ROLE retry_stranger;
CREATE FUNCTION stranger.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted operator ran as %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR stranger.= (LEFTARG = text, RIGHTARG = text, FUNCTION = stranger.eq);
SET search_path = stranger, pg_catalog;
SELECT outbox.replay_dead('picky');
SELECT outbox.replay_dead();
RESET search_path;
RESET ROLE;
DROP SCHEMA stranger CASCADE;

-- Clean up.
SELECT outbox.drop_destination('picky');
SELECT outbox.drop_destination('fragile');
DROP FUNCTION public.picky(outbox.events);
DROP FUNCTION public.fragile(outbox.events);
DROP TABLE public.poison, public.delivered;
REVOKE ALL ON FUNCTION outbox.replay_dead(text, uuid[]) FROM retry_stranger;
DROP ROLE retry_stranger;

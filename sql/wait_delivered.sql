-- outbox.wait_delivered(): waits until every committed event is delivered
-- or dead-lettered, where wait_idle() only waits until nothing is ready.
-- Events in a retry backoff or waiting for their deliver_after time keep it
-- waiting (false on timeout) while wait_idle() says idle.
SET timezone = 'UTC';
-- The destinations earlier files left (wait_delivered() with no name waits
-- for them too).
SELECT name, paused FROM outbox.destinations ORDER BY name;

CREATE TABLE public.wd_log (dest text, n int);
CREATE FUNCTION public.wd_record(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.wd_log VALUES ('steady', (e.payload->>'n')::int)
$$;
CREATE FUNCTION public.wd_fail(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'not today' USING ERRCODE = 'P0001';
END $$;

SELECT outbox.create_destination('steady', 'function', '{"function": "public.wd_record"}');
SELECT outbox.subscribe('steady', 'wd') > 0 AS subscribed;

-- Nothing owed: true at once.
SELECT outbox.wait_delivered();

-- Delivered when it returns: no polling needed.
SELECT count(outbox.emit('wd', 'job', jsonb_build_object('n', n))) FROM generate_series(1, 5) n;
SELECT outbox.wait_delivered('30 seconds');
SELECT count(*) AS delivered FROM public.wd_log;

-- An event delayed by deliver_after is owed until it is delivered.
SELECT count(outbox.emit('wd', 'job', '{"n": 6}', deliver_after => now() + interval '1 second'));
SELECT outbox.wait_delivered('30 seconds', 'steady');
SELECT array_agg(n ORDER BY n) AS delivered FROM public.wd_log;

-- A failing destination with a long backoff: its event waits in retry.
-- wait_idle() reports idle (nothing is ready), wait_delivered() does not.
SELECT outbox.create_destination('backoff', 'function',
	'{"function": "public.wd_fail", "max_attempts": 5,
	  "backoff_base": "1 hour", "backoff_max": "1 hour"}');
SELECT outbox.subscribe('backoff', 'wd') > 0 AS subscribed;
SELECT count(outbox.emit('wd', 'job', '{"n": 7}'));
SELECT outbox.wait_idle('30 seconds');
SELECT destination, retrying, dead FROM outbox.stats
 WHERE destination IN ('steady', 'backoff') ORDER BY destination;
SELECT outbox.wait_delivered('300 milliseconds');
SELECT outbox.wait_delivered('300 milliseconds', 'backoff');
-- The healthy destination owes nothing.
SELECT outbox.wait_delivered('30 seconds', 'steady');
SELECT count(*) AS delivered FROM public.wd_log;

-- A paused destination is left out unless named.
SELECT outbox.pause_destination('backoff');
SELECT outbox.wait_delivered('30 seconds');
SELECT outbox.wait_delivered('200 milliseconds', 'backoff');
SELECT outbox.drop_destination('backoff');

-- Dead-lettered counts as done.
SELECT outbox.create_destination('doomed', 'function',
	'{"function": "public.wd_fail", "max_attempts": 1}');
SELECT outbox.subscribe('doomed', 'wd') > 0 AS subscribed;
SELECT count(outbox.emit('wd', 'job', '{"n": 8}'));
SELECT outbox.wait_delivered('30 seconds');
SELECT destination, attempts, last_error, payload FROM outbox.dead_letters
 WHERE destination = 'doomed' ORDER BY id;
SELECT count(*) AS delivered FROM public.wd_log;

-- A role granted EXECUTE may wait without reading the state tables.
CREATE ROLE regress_wd_tester;
GRANT EXECUTE ON FUNCTION outbox.wait_delivered(interval, text) TO regress_wd_tester;
SET ROLE regress_wd_tester;
SELECT outbox.wait_delivered('30 seconds', 'steady');
SELECT count(*) FROM outbox.delivery_retry;
RESET ROLE;

-- Bad input.
SELECT outbox.wait_delivered(NULL);
SELECT outbox.wait_delivered('0 seconds');
SELECT outbox.wait_delivered('-1 second');
SELECT outbox.wait_delivered('2 days');
SELECT outbox.wait_delivered('1 second', 'no_such_destination');
-- Nothing granted to PUBLIC.
SELECT has_function_privilege('public', 'outbox.wait_delivered(interval, text)', 'EXECUTE');

-- Cleanup.
REVOKE ALL ON FUNCTION outbox.wait_delivered(interval, text) FROM regress_wd_tester;
DROP ROLE regress_wd_tester;
SELECT outbox.drop_destination('doomed');
SELECT outbox.drop_destination('steady');
DROP FUNCTION public.wd_record(outbox.events), public.wd_fail(outbox.events);
DROP TABLE public.wd_log;

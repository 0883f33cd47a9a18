-- outbox.deliver_pending() and outbox.pending(), for users' regression
-- tests (issue 15 item 3): deliver what a function or notify destination
-- owes in the calling session, exactly as the dispatcher would - attempts,
-- backoff, dead letters, the handler's owner and search_path - and list it.
-- A test pauses the destination so that the dispatcher leaves it alone.
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

CREATE TABLE public.dp_log (n int);
CREATE FUNCTION public.dp_record(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO dp_log VALUES ((e.payload->>'n')::int)
$$;
CREATE FUNCTION public.dp_fail(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'no %', e.payload->>'n' USING ERRCODE = 'P0001';
END $$;

SELECT outbox.create_destination('dp_ok', 'function', '{"function": "public.dp_record"}');
SELECT outbox.subscribe('dp_ok', 'dp') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_ok');

-- Emit, see what is pending, deliver, assert.
SELECT count(outbox.emit('dp', 'job', jsonb_build_object('n', n), 'agg' || n % 2))
  FROM generate_series(1, 4) n;
SELECT topic, aggregate_id, payload, attempts, next_attempt_at, last_error
  FROM outbox.pending('dp_ok') ORDER BY id;
SELECT outbox.deliver_pending('dp_ok');
SELECT array_agg(n ORDER BY n) AS delivered FROM public.dp_log;
SELECT count(*) AS pending FROM outbox.pending('dp_ok');
SELECT outbox.deliver_pending('dp_ok');
SELECT destination, paused, pending, retrying, dead, delivered_total FROM outbox.stats
 WHERE destination = 'dp_ok';

-- max_events: at most that many per call.
SELECT count(outbox.emit('dp', 'job', jsonb_build_object('n', n))) FROM generate_series(5, 9) n;
SELECT outbox.deliver_pending('dp_ok', max_events => 2);
SELECT count(*) AS pending FROM outbox.pending('dp_ok');
SELECT outbox.deliver_pending('dp_ok');
SELECT array_agg(n ORDER BY n) AS delivered FROM public.dp_log;

-- Events of the caller's own open transaction are not delivered before it
-- commits; then they are.
BEGIN;
SELECT count(outbox.emit('dp', 'job', '{"n": 10}'));
SELECT count(*) AS pending FROM outbox.pending('dp_ok');
SELECT outbox.deliver_pending('dp_ok');
COMMIT;
SELECT outbox.deliver_pending('dp_ok');

-- A rolled-back transaction rolls the delivery back too.
SELECT count(outbox.emit('dp', 'job', '{"n": 11}'));
BEGIN;
SELECT outbox.deliver_pending('dp_ok');
SELECT count(*) AS delivered_11 FROM public.dp_log WHERE n = 11;
ROLLBACK;
SELECT count(*) AS delivered_11 FROM public.dp_log WHERE n = 11;
SELECT count(*) AS pending FROM outbox.pending('dp_ok');
SELECT outbox.deliver_pending('dp_ok');
SELECT count(*) AS delivered_11 FROM public.dp_log WHERE n = 11;
-- Still paused: the caller delivered it.
SELECT paused FROM outbox.destinations WHERE name = 'dp_ok';

-- A failing handler: a retry row with attempts = 1, caught like the
-- dispatcher catches it (the caller's transaction goes on); its backoff is
-- respected unless include_backoff; dead after max_attempts.
SELECT outbox.create_destination('dp_bad', 'function',
	'{"function": "public.dp_fail", "max_attempts": 3, "backoff_base": "1 hour", "backoff_max": "1 hour"}');
SELECT outbox.subscribe('dp_bad', 'dpb') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_bad');
SELECT count(outbox.emit('dpb', 'job', '{"n": 1}', 'a'));
BEGIN;
SELECT outbox.deliver_pending('dp_bad');
SELECT attempts, next_attempt_at > now() AS backing_off, last_error, payload
  FROM outbox.pending('dp_bad');
COMMIT;
SELECT outbox.deliver_pending('dp_bad');
SELECT attempts FROM outbox.pending('dp_bad');
SELECT outbox.deliver_pending('dp_bad', include_backoff => true);
SELECT attempts, last_error FROM outbox.pending('dp_bad');
SELECT outbox.deliver_pending('dp_bad', true);
SELECT count(*) AS pending FROM outbox.pending('dp_bad');
SELECT destination, attempts, last_error, payload FROM outbox.dead_letters
 WHERE destination = 'dp_bad';
SELECT destination, retrying, dead, failed_attempts_total, last_error FROM outbox.stats
 WHERE destination = 'dp_bad';

-- Failures in the middle of one batch: each event's outcome is that of its
-- own subtransaction - a failed event's writes are rolled back, the others'
-- stay, once each - although the batch runs its handlers together and only
-- runs again those before a failure (at least once: a handler may run twice).
-- The failed aggregate's later event waits behind it (G4); settings a
-- handler changes never reach the next event.
CREATE SEQUENCE public.dp_calls;
CREATE TABLE public.dp_mixed_log (n int, work_mem text);
CREATE FUNCTION public.dp_mixed(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM nextval('public.dp_calls');
	INSERT INTO public.dp_mixed_log VALUES ((e.payload->>'n')::int, current_setting('work_mem'));
	PERFORM set_config('work_mem', '77MB', false);
	IF (e.payload->>'n')::int IN (3, 7) THEN
		RAISE EXCEPTION 'event % refused', e.payload->>'n' USING ERRCODE = 'P0001';
	END IF;
END $$;
SELECT outbox.create_destination('dp_mixed', 'function',
	'{"function": "public.dp_mixed", "backoff_base": "1 hour", "backoff_max": "1 hour"}');
SELECT outbox.subscribe('dp_mixed', 'dpm') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_mixed');
SELECT count(outbox.emit('dpm', 'job', jsonb_build_object('n', n),
                         CASE WHEN n = 8 THEN 'm7' ELSE 'm' || n END))
  FROM generate_series(1, 10) n;
SELECT outbox.deliver_pending('dp_mixed');
SELECT array_agg(n ORDER BY n) AS delivered_once, count(DISTINCT work_mem) AS work_mem_values
  FROM public.dp_mixed_log;
SELECT current_setting('work_mem') = (SELECT min(work_mem) FROM public.dp_mixed_log) AS settings_undone;
SELECT nextval('public.dp_calls') - 1 BETWEEN 12 AND 20 AS handlers_ran_again_before_failures;
SELECT aggregate_id, attempts, last_error FROM outbox.pending('dp_mixed') ORDER BY id;

-- A notify destination.
SELECT outbox.create_destination('dp_notify', 'notify', '{"channel": "dp_channel"}');
SELECT outbox.subscribe('dp_notify', 'dp') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_notify');
SELECT count(outbox.emit('dp', 'job', '{"n": 12}'));
SELECT outbox.deliver_pending('dp_notify');

-- A handler may not deliver synchronously: it runs inside a batch.
CREATE FUNCTION public.dp_nested(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM outbox.deliver_pending('dp_ok');
END $$;
SELECT outbox.create_destination('dp_nest', 'function', '{"function": "public.dp_nested"}');
SELECT outbox.subscribe('dp_nest', 'dpn') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_nest');
SELECT count(outbox.emit('dpn', 'job', '{"n": 1}'));
SELECT outbox.deliver_pending('dp_nest');
SELECT last_error FROM outbox.pending('dp_nest');

-- A role that owns its destination may; another may not (42501, before
-- anything else); network kinds are refused (0A000).
CREATE ROLE regress_dp_owner;
CREATE ROLE regress_dp_other;
GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb),
	outbox.subscribe(text, text, text[]), outbox.pause_destination(text),
	outbox.emit(text, text, jsonb, text, jsonb, timestamptz),
	outbox.deliver_pending(text, boolean, integer), outbox.pending(text)
  TO regress_dp_owner, regress_dp_other;
GRANT INSERT ON public.dp_log TO regress_dp_owner;
SET ROLE regress_dp_owner;
SELECT outbox.create_destination('dp_mine', 'function', '{"function": "public.dp_record"}');
SELECT outbox.subscribe('dp_mine', 'dpo') > 0 AS subscribed;
SELECT outbox.pause_destination('dp_mine');
SELECT count(outbox.emit('dpo', 'job', '{"n": 100}'));
SELECT count(*) AS pending FROM outbox.pending('dp_mine');
SELECT outbox.deliver_pending('dp_mine');
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_ok')$$);
SET ROLE regress_dp_other;
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_mine')$$);
SELECT pg_temp.error_text($$SELECT count(*) FROM outbox.pending('dp_mine')$$);
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('no_such_destination')$$);
RESET ROLE;
SELECT n FROM public.dp_log WHERE n >= 100 ORDER BY n;
SELECT outbox.create_destination('dp_http', 'http', '{"url": "http://127.0.0.1:9/hook"}');
SELECT outbox.pause_destination('dp_http');
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_http')$$);

-- Bad input.
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending(NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_ok', NULL)$$);
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_ok', max_events => 0)$$);
SELECT pg_temp.error_text($$SELECT count(*) FROM outbox.pending(NULL)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.error_text($$SELECT outbox.deliver_pending('dp_ok')$$);
ROLLBACK;

-- Clean up.
SELECT outbox.drop_destination(name) FROM outbox.destinations WHERE name LIKE 'dp\_%' ORDER BY name;
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'regress\_dp\_%')) x;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA outbox FROM regress_dp_owner, regress_dp_other;
REVOKE ALL ON public.dp_log FROM regress_dp_owner;
DROP ROLE regress_dp_owner, regress_dp_other;
DROP TABLE public.dp_log, public.dp_mixed_log;
DROP SEQUENCE public.dp_calls;
DROP FUNCTION public.dp_mixed(outbox.events);
DROP FUNCTION public.dp_record(outbox.events), public.dp_fail(outbox.events),
	public.dp_nested(outbox.events);

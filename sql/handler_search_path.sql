-- Handlers and saga steps run with the search_path recorded for them
-- (issue 15 item 1): their creator's when create_destination / saga.define
-- ran, or the config key / saga option "search_path"; pg_temp always last
-- unless named.  A handler written with unqualified names works; a
-- function's own SET search_path wins; what a handler sets never reaches
-- the next one; bad paths are refused with 22023 and change nothing.
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

SHOW search_path;
CREATE SCHEMA sp_other;
CREATE TABLE public.im_log (n int, path text);
CREATE TABLE sp_other.im_log (n int, path text);

-- Unqualified names, as everybody writes them.
CREATE FUNCTION public.im_handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO im_log VALUES ((e.payload->>'n')::int, current_setting('search_path'));
END $$;
-- Its own SET clause wins.
CREATE FUNCTION public.im_pinned(e outbox.events) RETURNS void LANGUAGE plpgsql
SET search_path = sp_other, pg_temp AS $$
BEGIN
	INSERT INTO im_log VALUES ((e.payload->>'n')::int, current_setting('search_path'));
END $$;
-- Logs the path it gets, then changes it every way it can.
CREATE FUNCTION public.im_meddler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO im_log VALUES ((e.payload->>'n')::int, current_setting('search_path'));
	PERFORM set_config('search_path', 'sp_other', false);
	SET search_path = sp_other;
	SET SESSION search_path = sp_other;
END $$;

SELECT outbox.create_destination('sp_plain', 'function', '{"function": "public.im_handler"}');
SELECT outbox.create_destination('sp_pinned', 'function', '{"function": "public.im_pinned"}');
SELECT outbox.create_destination('sp_meddler', 'function', '{"function": "public.im_meddler"}');
SELECT name, search_path, config FROM outbox.destinations WHERE name LIKE 'sp\_%' ORDER BY name;
SELECT outbox.subscribe('sp_plain', 'sp') > 0 AS subscribed;
SELECT outbox.subscribe('sp_pinned', 'sp') > 0 AS subscribed;

-- Delivered by the dispatcher.
SELECT count(outbox.emit('sp', 'job', '{"n": 1}'));
SELECT outbox.wait_delivered('30 seconds', 'sp_plain'), outbox.wait_delivered('30 seconds', 'sp_pinned');
SELECT 'public' AS log, n, path FROM public.im_log
UNION ALL SELECT 'sp_other', n, path FROM sp_other.im_log ORDER BY 1, 2;
SELECT destination, retrying, dead FROM outbox.stats WHERE destination LIKE 'sp\_%' ORDER BY 1;
SELECT outbox.drop_destination('sp_pinned');

-- A handler that sets search_path: the next event of its batch, and the
-- next destination, still get their recorded path (delivered in this
-- session, so that both events are one batch).
SELECT outbox.subscribe('sp_meddler', 'spm') > 0 AS subscribed;
SELECT outbox.pause_destination('sp_meddler');
SELECT count(outbox.emit('spm', 'job', jsonb_build_object('n', n))) FROM generate_series(11, 12) n;
SELECT outbox.deliver_pending('sp_meddler');
SHOW search_path;
SELECT count(outbox.emit('sp', 'job', '{"n": 13}'));
SELECT outbox.wait_delivered('30 seconds', 'sp_plain');
SELECT n, path FROM public.im_log WHERE n > 10 ORDER BY n;
SELECT count(*) AS meddled FROM sp_other.im_log WHERE n > 10;

-- alter_destination changes it: to a list without pg_temp (appended) ...
SELECT outbox.alter_destination('sp_plain', '{"search_path": "sp_other"}');
SELECT search_path, config FROM outbox.destinations WHERE name = 'sp_plain';
SELECT count(outbox.emit('sp', 'job', '{"n": 21}'));
SELECT outbox.wait_delivered('30 seconds', 'sp_plain');
SELECT n, path FROM sp_other.im_log WHERE n = 21;
-- ... one that names pg_temp (kept as given), an empty one (pg_temp only),
-- quoted names, and other keys at the same time.
SELECT outbox.alter_destination('sp_plain', '{"search_path": "pg_temp, public"}');
SELECT search_path FROM outbox.destinations WHERE name = 'sp_plain';
SELECT outbox.alter_destination('sp_plain', '{"search_path": ""}');
SELECT search_path FROM outbox.destinations WHERE name = 'sp_plain';
SELECT outbox.alter_destination('sp_plain', '{"search_path": "\"$user\", \"Odd Name\", public", "max_attempts": 7}');
SELECT search_path, config FROM outbox.destinations WHERE name = 'sp_plain';
-- Garbage is refused (22023) and changes nothing.
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', '{"search_path": "public, \"unterminated"}')$$);
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', '{"search_path": "a,,b"}')$$);
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', '{"search_path": 42}')$$);
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', '{"search_path": null}')$$);
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', jsonb_build_object('search_path', repeat('s,', 3000)))$$);
SELECT pg_temp.error_text($$SELECT outbox.alter_destination('sp_plain', '{"search_path": "public", "max_attempts": 0}')$$);
SELECT search_path, config FROM outbox.destinations WHERE name = 'sp_plain';

-- create_destination takes the key, or the caller's current search_path.
SELECT outbox.create_destination('sp_explicit', 'notify', '{"channel": "spx", "search_path": "sp_other"}');
SELECT pg_temp.error_text($$SELECT outbox.create_destination('sp_bad', 'notify', '{"channel": "spx", "search_path": "x,"}')$$);
SET search_path = sp_other, public;
SELECT outbox.create_destination('sp_captured', 'notify', '{"channel": "spx"}');
RESET search_path;
SELECT name, search_path, config FROM outbox.destinations
 WHERE name IN ('sp_explicit', 'sp_captured', 'sp_bad') ORDER BY name;

-- A saga function step with unqualified names.
CREATE TABLE public.sp_stock (sku text PRIMARY KEY, qty int);
INSERT INTO public.sp_stock VALUES ('a', 5);
CREATE FUNCTION public.sp_reserve(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	UPDATE sp_stock SET qty = qty - 1 WHERE sku = 'a';
	RETURN jsonb_build_object('path', current_setting('search_path'));
END $$;
SELECT saga.define('sp_saga', '[{"name": "reserve", "action": {"function": "public.sp_reserve"}}]');
SELECT name, version, search_path, options FROM saga.definitions WHERE name = 'sp_saga';
SELECT saga.start('sp_saga', '{}', 'k1') IS NOT NULL AS started;
DO $$
BEGIN
	FOR i IN 1 .. 3000 LOOP
		EXIT WHEN (SELECT status <> 'running' FROM saga.instances WHERE definition = 'sp_saga');
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT status, results, error FROM saga.instances WHERE definition = 'sp_saga';
SELECT qty FROM public.sp_stock;
-- A define that changes only the search_path is a new version; the same
-- again is not.
SELECT saga.define('sp_saga', '[{"name": "reserve", "action": {"function": "public.sp_reserve"}}]',
	'{"search_path": "sp_other, public"}');
SELECT saga.define('sp_saga', '[{"name": "reserve", "action": {"function": "public.sp_reserve"}}]',
	'{"search_path": "sp_other, public"}');
SELECT pg_temp.error_text($$SELECT saga.define('sp_saga', '[{"name": "reserve", "action": {"function": "public.sp_reserve"}}]', '{"search_path": 1}')$$);
SELECT pg_temp.error_text($$SELECT saga.define('sp_saga', '[{"name": "reserve", "action": {"function": "public.sp_reserve"}}]', '{"search_path": "\""}')$$);
SELECT name, version, latest, search_path, options FROM saga.definitions WHERE name = 'sp_saga' ORDER BY version;

-- Clean up.
SELECT outbox.drop_destination(name) FROM outbox.destinations WHERE name LIKE 'sp\_%' ORDER BY name;
SELECT saga.drop_definition('sp_saga');
DROP TABLE public.im_log, public.sp_stock;
DROP FUNCTION public.im_handler(outbox.events), public.im_pinned(outbox.events),
	public.im_meddler(outbox.events), public.sp_reserve(jsonb);
DROP SCHEMA sp_other CASCADE;

-- saga.define() (SPEC 3.5): definitions are validated (every error has an
-- SQLSTATE and changes nothing, G11), normalized and versioned; running
-- sagas keep their version; only the owner may redefine (G10); misuse of
-- saga.start() and the other functions.
\set VERBOSITY terse
SET timezone = 'UTC';

-- "SQLSTATE: message" of a call, for the tables of bad calls below.
CREATE FUNCTION pg_temp.try(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>', 'g');
END $$;

-- Step functions take (ctx jsonb) and return jsonb.
CREATE FUNCTION public.sd_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.sd_undo(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION public.sd_void(ctx jsonb) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.sd_set(ctx jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.sd_int(n integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION public.sd_private(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
REVOKE EXECUTE ON FUNCTION public.sd_private(jsonb) FROM PUBLIC;

-- A definition: the version, and the normalized form stored (every key,
-- defaults from the options, durations in seconds, names resolved).
SELECT saga.define('sd_order', $$[
	{"name": "reserve", "action": {"function": "public.SD_STEP"},
	 "compensation": {"function": "public.sd_undo"}, "timeout": "2 minutes"},
	{"name": "notify", "action": {"emit": {"topic": "mail", "event_type": "mail.requested"}},
	 "max_attempts": 1, "backoff_base": 0.25},
	{"name": "charge", "action": {"http": {"url": "https://pay.example/charge",
	                                         "method": "put", "headers": {"X-Shop": "1"}}},
	 "compensation": null}
]$$, '{"deadline": "1 hour", "max_attempts": 5, "backoff_max": "10 seconds"}') AS version;
SELECT name, version, latest, owner::text = current_user AS owned_by_definer,
       jsonb_pretty(steps) AS steps, options
  FROM saga.definitions WHERE name = 'sd_order';

-- The same definition again is the same version; any change is a new one.
SELECT saga.define('sd_order', $$[
	{"name": "reserve", "action": {"function": "public.sd_step"},
	 "compensation": {"function": "public.sd_undo"}, "timeout": 120},
	{"name": "notify", "action": {"emit": {"topic": "mail", "event_type": "mail.requested", "await": false}},
	 "max_attempts": 1, "backoff_base": "250 milliseconds"},
	{"name": "charge", "action": {"http": {"url": "https://pay.example/charge",
	                                         "method": "PUT", "headers": {"X-Shop": "1"}}}}
]$$, '{"deadline": "01:00:00", "max_attempts": 5, "backoff_max": 10}') AS same_version;
SELECT saga.define('sd_order', '[{"name": "reserve", "action": {"function": "public.sd_step"}}]')
	AS new_version;
SELECT name, version, latest, jsonb_array_length(steps) AS steps, options->'deadline' AS deadline
  FROM saga.definitions WHERE name = 'sd_order' ORDER BY version;

-- Credentials in http calls are stored as given (the worker sends them) but
-- the view masks them, like outbox.destinations (URL credentials in the
-- userinfo are refused: the worker would not send them).
SELECT saga.define('sd_secret', $$[
	{"name": "charge", "action": {"http": {"url": "https://pay.example/charge?api_key=k1",
	                                         "headers": {"Authorization": "Bearer s3cr3t", "X-Shop": "1"}}}}
]$$) AS version;
SELECT steps->0->'action'->'http' AS shown FROM saga.definitions WHERE name = 'sd_secret';
SELECT steps->0->'action'->'http'->'headers'->>'Authorization' AS stored
  FROM saga.definition WHERE name = 'sd_secret';

-- Running sagas keep the version they started with.
BEGIN;
SELECT saga.start('sd_order', '{"n": 1}') AS v2_saga \gset
SELECT saga.define('sd_order', '[{"name": "other", "action": {"function": "public.sd_step"}}]')
	AS version_3;
SELECT saga.start('sd_order', '{"n": 2}') AS v3_saga \gset
SELECT input->>'n' AS n, definition, version, status, current_step
  FROM saga.instances WHERE id IN (:'v2_saga', :'v3_saga') ORDER BY input->>'n';
SELECT s.step, s.phase, s.status
  FROM saga.step_runs s WHERE s.saga_id IN (:'v2_saga', :'v3_saga') ORDER BY s.seq;
ROLLBACK;

-- Every bad definition is refused with an SQLSTATE and writes nothing.
SELECT count(*) AS definitions_before FROM saga.definitions \gset
SELECT saga.define('sd_bad', '[{"name": "a", "action": {"function": "public.sd_missing"}}]');
SELECT saga.define('sd_bad', '[{"name": "a", "action": {"sql": "DELETE FROM orders"}}]');
SELECT saga.define('sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}},
                               {"name": "a", "action": {"function": "public.sd_step"}}]');
SELECT saga.define('sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": "soon"}]');
SELECT saga.define('sd_bad', '{"name": "a"}');
SELECT what, pg_temp.try(format('SELECT saga.define(%L, %L, %L)', name, steps, options)) AS result
  FROM (VALUES
	('null name', NULL, '[]', '{}'),
	('null steps', 'sd_bad', NULL, '{}'),
	('null options', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', NULL),
	('empty name', '', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{}'),
	('long name', repeat('n', 64), '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{}'),
	('control character', E'sd\tbad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{}'),
	('steps not an array', 'sd_bad', '{"name": "a"}', '{}'),
	('no steps', 'sd_bad', '[]', '{}'),
	('step not an object', 'sd_bad', '[1]', '{}'),
	('step without name', 'sd_bad', '[{"action": {"function": "public.sd_step"}}]', '{}'),
	('name not a string', 'sd_bad', '[{"name": 7, "action": {"function": "public.sd_step"}}]', '{}'),
	('empty step name', 'sd_bad', '[{"name": "", "action": {"function": "public.sd_step"}}]', '{}'),
	('duplicate step', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}},
	                               {"name": "a", "action": {"function": "public.sd_step"}}]', '{}'),
	('unknown step key', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "retries": 3}]', '{}'),
	('no action', 'sd_bad', '[{"name": "a"}]', '{}'),
	('action null', 'sd_bad', '[{"name": "a", "action": null}]', '{}'),
	('action a string', 'sd_bad', '[{"name": "a", "action": "public.sd_step"}]', '{}'),
	('action empty', 'sd_bad', '[{"name": "a", "action": {}}]', '{}'),
	('two call kinds', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step", "emit": {}}}]', '{}'),
	('unknown call kind', 'sd_bad', '[{"name": "a", "action": {"sql": "SELECT 1"}}]', '{}'),
	('unknown compensation kind', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "compensation": {"shell": "rm"}}]', '{}'),
	('function not a string', 'sd_bad', '[{"name": "a", "action": {"function": 1}}]', '{}'),
	('function unqualified', 'sd_bad', '[{"name": "a", "action": {"function": "sd_step"}}]', '{}'),
	('function missing', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_missing"}}]', '{}'),
	('function wrong argument', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_int"}}]', '{}'),
	('function returns void', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_void"}}]', '{}'),
	('function returns a set', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_set"}}]', '{}'),
	('compensation missing', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "compensation": {"function": "public.sd_gone"}}]', '{}'),
	('emit not an object', 'sd_bad', '[{"name": "a", "action": {"emit": "mail"}}]', '{}'),
	('emit without topic', 'sd_bad', '[{"name": "a", "action": {"emit": {"event_type": "x"}}}]', '{}'),
	('emit bad topic', 'sd_bad', '[{"name": "a", "action": {"emit": {"topic": "a b", "event_type": "x"}}}]', '{}'),
	('emit topic not a string', 'sd_bad', '[{"name": "a", "action": {"emit": {"topic": 1, "event_type": "x"}}}]', '{}'),
	('emit await not boolean', 'sd_bad', '[{"name": "a", "action": {"emit": {"topic": "t", "event_type": "x", "await": "yes"}}}]', '{}'),
	('emit unknown key', 'sd_bad', '[{"name": "a", "action": {"emit": {"topic": "t", "event_type": "x", "payload": {}}}}]', '{}'),
	('emit headers not strings', 'sd_bad', '[{"name": "a", "action": {"emit": {"topic": "t", "event_type": "x", "headers": {"n": 1}}}}]', '{}'),
	('http without url', 'sd_bad', '[{"name": "a", "action": {"http": {"method": "POST"}}}]', '{}'),
	('http not http', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "ftp://x.example/"}}}]', '{}'),
	('http no host', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https:///charge"}}}]', '{}'),
	('http denied address', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "http://169.254.169.254/latest"}}}]', '{}'),
	('http reserved header', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https://x.example/", "headers": {"Host": "y"}}}}]', '{}'),
	('http own idempotency key', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https://x.example/", "headers": {"Idempotency-Key": "k"}}}}]', '{}'),
	('http bad header name', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https://x.example/", "headers": {"a b": "c"}}}}]', '{}'),
	('http bad method', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https://x.example/", "method": "FETCH"}}}]', '{}'),
	('http unknown key', 'sd_bad', '[{"name": "a", "action": {"http": {"url": "https://x.example/", "body": "{}"}}}]', '{}'),
	('timeout not an interval', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": "soon"}]', '{}'),
	('timeout zero', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": "0 seconds"}]', '{}'),
	('timeout negative', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": -5}]', '{}'),
	('timeout too long', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": "25 days"}]', '{}'),
	('timeout a boolean', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "timeout": true}]', '{}'),
	('max_attempts zero', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "max_attempts": 0}]', '{}'),
	('max_attempts fraction', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "max_attempts": 1.5}]', '{}'),
	('max_attempts a string', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "max_attempts": "3"}]', '{}'),
	('compensation_max_attempts huge', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "compensation_max_attempts": 99999999999}]', '{}'),
	('backoff_max below base', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}, "backoff_base": "1 minute", "backoff_max": "1 second"}]', '{}'),
	('options not an object', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '[]'),
	('unknown option', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{"retention": "1 day"}'),
	('deadline not an interval', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{"deadline": "never"}'),
	('deadline negative', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{"deadline": "-1 hour"}'),
	('option timeout bad', 'sd_bad', '[{"name": "a", "action": {"function": "public.sd_step"}}]', '{"timeout": "1 fortnight"}')
  ) AS t(what, name, steps, options);
SELECT pg_temp.try($$SELECT saga.define('sd_bad', (SELECT jsonb_agg(jsonb_build_object('name', 's' || g,
	'action', '{"function": "public.sd_step"}'::jsonb)) FROM generate_series(1, 1001) g))$$) AS too_many_steps;
SELECT count(*) - :definitions_before AS written_by_bad_calls FROM saga.definitions;

-- Owners (G10): the steps run as the role that first defined the saga, so
-- its functions are checked for that role; only that role (a member of
-- it, or a superuser) may redefine the saga, and the owner stays.
CREATE ROLE regress_saga_alice;
CREATE ROLE regress_saga_bob;
GRANT EXECUTE ON FUNCTION saga.define(text, jsonb, jsonb) TO regress_saga_alice, regress_saga_bob;
SET ROLE regress_saga_alice;
SELECT saga.define('sd_alices', '[{"name": "a", "action": {"function": "public.sd_step"}}]') AS alice_v1;
SELECT saga.define('sd_alices', '[{"name": "a", "action": {"function": "public.sd_private"}}]');
SELECT saga.define('sd_alices', '[{"name": "a", "action": {"emit": {"topic": "t", "event_type": "x"}}}]');
SET ROLE regress_saga_bob;
SELECT saga.define('sd_alices', '[{"name": "b", "action": {"function": "public.sd_step"}}]');
RESET ROLE;
SELECT saga.define('sd_alices', '[{"name": "a", "action": {"function": "public.sd_private"}}]');
GRANT EXECUTE ON FUNCTION public.sd_private(jsonb) TO regress_saga_alice;
SELECT saga.define('sd_alices', '[{"name": "a", "action": {"function": "public.sd_private"}}]') AS by_superuser;
SELECT name, version, owner FROM saga.definitions WHERE name = 'sd_alices' ORDER BY version;
-- Nothing is granted to PUBLIC.
SET ROLE regress_saga_bob;
SELECT saga.start('sd_alices');
SELECT * FROM saga.instances;
RESET ROLE;

-- Misuse of the other functions: NULLs, unknown definitions and sagas.
SELECT saga.start('sd_nothing');
SELECT saga.complete_step('00000000-0000-0000-0000-000000000000', 'a', true);
SELECT call, pg_temp.try('SELECT saga.' || call) AS result
  FROM (VALUES
	('start(NULL)'),
	('start(''sd_order'', NULL)'),
	('start(''sd_order'', ''{}'', '''')'),
	('start(''sd_order'', ''{}'', repeat(''k'', 513))'),
	('start(''sd_nothing'')'),
	('complete_step(NULL, ''a'', true)'),
	('complete_step(''00000000-0000-0000-0000-000000000000'', NULL, true)'),
	('complete_step(''00000000-0000-0000-0000-000000000000'', ''a'', NULL)'),
	('complete_step(''00000000-0000-0000-0000-000000000000'', ''a'', true)'),
	('register_compensation(NULL, ''a'', ''{}'')'),
	('register_compensation(''00000000-0000-0000-0000-000000000000'', '''', ''{}'')'),
	('register_compensation(''00000000-0000-0000-0000-000000000000'', ''a'', NULL)'),
	('register_compensation(''00000000-0000-0000-0000-000000000000'', ''a'', ''{"function": "public.sd_undo"}'')'),
	('cancel(NULL)'),
	('cancel(''00000000-0000-0000-0000-000000000000'')'),
	('retry(NULL)'),
	('retry(''00000000-0000-0000-0000-000000000000'')')
  ) AS t(call);

-- Every function and view is documented.
SELECT p.proname, obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented
  FROM pg_proc p WHERE p.pronamespace = 'saga'::regnamespace ORDER BY 1;
SELECT c.relname, obj_description(c.oid, 'pg_class') IS NOT NULL AS documented
  FROM pg_class c WHERE c.relnamespace = 'saga'::regnamespace AND c.relkind = 'v' ORDER BY 1;

DROP OWNED BY regress_saga_alice, regress_saga_bob;
DROP ROLE regress_saga_alice, regress_saga_bob;

-- W3C trace context (issue 17 item 4): an event carries the trace context of
-- the transaction that wrote it - from emit()'s headers, or from the
-- transaction settings outbox_saga.traceparent / outbox_saga.tracestate for
-- emit() and the capture trigger - and the function handler's event row
-- has it in headers.  Invalid values are refused (22023), never stored,
-- never passed on.  Sagas keep the context they were started with (ctx,
-- emit headers).  saga.timeline() (item 5).
\set SHOW_CONTEXT never
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

CREATE ROLE trace_app;
CREATE SCHEMA trace AUTHORIZATION trace_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO trace_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA saga TO trace_app;

SET ROLE trace_app;
CREATE TABLE trace.got (
	n       bigint GENERATED ALWAYS AS IDENTITY,
	tag     text,
	headers jsonb,
	setting text
);
-- The handler runs with the event's trace context as its setting, so what
-- it writes carries it on.
CREATE FUNCTION trace.on_event(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO trace.got (tag, headers, setting)
	VALUES (e.event_type, e.headers, current_setting('outbox_saga.traceparent'))
$$;
SELECT outbox.create_destination('trace_fn', 'function', '{"function": "trace.on_event"}');
SELECT outbox.subscribe('trace_fn', 'traced') > 0 AS subscribed;
CREATE TABLE trace.orders (id int PRIMARY KEY, customer text);
SELECT outbox.capture_table('trace.orders', topic => 'traced');

-- The settings: empty (none) by default; SET LOCAL lasts one transaction.
SHOW outbox_saga.traceparent;
BEGIN;
SET LOCAL outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET LOCAL outbox_saga.tracestate = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
SELECT outbox.emit('traced', 'emit.setting') IS NOT NULL AS emitted;
-- Other headers are kept; the context is added.
SELECT outbox.emit('traced', 'emit.setting.more', headers => '{"tenant": "t1"}') IS NOT NULL AS emitted;
-- emit()'s own traceparent wins, as a whole: the setting's tracestate is not added.
SELECT outbox.emit('traced', 'emit.headers.win',
	headers => '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}') IS NOT NULL AS emitted;
-- The capture trigger: insert, and an update that moves the row to another aggregate.
INSERT INTO trace.orders VALUES (1, 'ann');
UPDATE trace.orders SET id = 2 WHERE id = 1;
COMMIT;
-- The next transaction has none.
SHOW outbox_saga.traceparent;
SELECT outbox.emit('traced', 'emit.after') IS NOT NULL AS emitted;
INSERT INTO trace.orders VALUES (3, 'bob');
-- Through emit()'s headers, without a setting.
SELECT outbox.emit('traced', 'emit.headers', headers => '{"traceparent":
	"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor@tenant=x"}') IS NOT NULL AS emitted;
-- A tracestate setting alone is ignored.
BEGIN;
SET LOCAL outbox_saga.tracestate = 'congo=t61rcWkgMzE';
SELECT outbox.emit('traced', 'emit.state.only') IS NOT NULL AS emitted;
COMMIT;
RESET ROLE;

SELECT pg_temp.wait_for('SELECT count(*) = 9 FROM trace.got');
SELECT tag, headers, setting = headers->>'traceparent' OR (setting = '' AND NOT headers ? 'traceparent') AS handler_setting
  FROM trace.got ORDER BY n;

-- Invalid traceparent settings, one rule each (22023; the value is not taken).
\set VERBOSITY sqlstate
SET outbox_saga.traceparent = '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01';
\set VERBOSITY default
SET outbox_saga.traceparent = '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01';
SET outbox_saga.traceparent = 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET outbox_saga.traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
SET outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01';
SET outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7';
SET outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra';
SET outbox_saga.traceparent = '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01';
SET outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g';
SET outbox_saga.traceparent = 'garbage';
-- A later version may carry more after a "-".
SET outbox_saga.traceparent = 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds';
SET outbox_saga.traceparent = 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x';
SHOW outbox_saga.traceparent;
RESET outbox_saga.traceparent;
-- Invalid tracestate settings.
SET outbox_saga.tracestate = 'Congo=t61rcWkgMzE';
SET outbox_saga.tracestate = 'congo';
SET outbox_saga.tracestate = 'congo=a=b';
SET outbox_saga.tracestate = 'congo=';
SET outbox_saga.tracestate = 'congo=1,congo=2';
SET outbox_saga.tracestate = 'tenant@toolongsystemname=1';
SELECT set_config('outbox_saga.tracestate', 'congo=caf' || chr(233), false);
SELECT set_config('outbox_saga.tracestate',
	(SELECT string_agg('k' || g || '=v', ',') FROM generate_series(1, 33) g), false);
SELECT set_config('outbox_saga.tracestate', 'k=' || repeat('v', 256) || ',j=' || repeat('w', 256), false);
-- Valid ones: empty members, blanks around commas, 32 members, multi-tenant keys.
SET outbox_saga.tracestate = ' congo=t61rcWkgMzE ,, rojo=00f067aa0ba902b7 ';
SELECT set_config('outbox_saga.tracestate',
	(SELECT string_agg('k' || g || '=v', ',') FROM generate_series(1, 32) g), false) IS NOT NULL AS ok;
SET outbox_saga.tracestate = 'fw529a3039@dt=ZmZm,0tenant@sys-1=a b';
RESET outbox_saga.tracestate;

-- Invalid trace headers given to emit() (22023; nothing is written).
\set VERBOSITY sqlstate
SELECT outbox.emit('traced', 'bad', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}');
\set VERBOSITY default
SELECT outbox.emit('traced', 'bad', headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}');
SELECT outbox.emit('traced', 'bad', headers => '{"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}');
SELECT outbox.emit('traced', 'bad', headers => '{"tracestate": "congo=t61rcWkgMzE"}');
SELECT outbox.emit('traced', 'bad', headers =>
	'{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "congo=a,congo=b"}');
SELECT count(*) AS bad_events FROM outbox.events WHERE event_type = 'bad';

-- A trace context stored without these checks (a 0.1.0 event, a restored
-- row) is checked again before delivery: invalid keys are dropped.
WITH tx AS (SELECT pg_catalog.pg_current_xact_id() AS txid)
INSERT INTO outbox.events (id, event_id, topic, aggregate_id, event_type, payload, headers, created_at, txid)
SELECT nextval('outbox.events_id_seq'), gen_random_uuid(), 'traced', NULL, v.type, '{}', v.headers, now(), tx.txid
  FROM tx, (VALUES
	('old.invalid', '{"traceparent": "00-zz", "tracestate": "congo=1", "tenant": "t1"}'::jsonb),
	('old.uppercase', '{"TraceParent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'),
	('old.valid', '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=,b"}')) v(type, headers);
SELECT pg_temp.wait_for('SELECT count(*) = 12 FROM trace.got');
SELECT tag, headers FROM trace.got WHERE tag LIKE 'old.%' ORDER BY n;

-- Sagas: started in a transaction with a trace context, its steps see it in
-- ctx and its emit calls carry it; saga.timeline() lists the runs.
SET ROLE trace_app;
CREATE TABLE trace.ctx (step text, phase text, traceparent text, tracestate text, setting text);
CREATE FUNCTION trace.step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO trace.ctx VALUES (ctx->>'step', ctx->>'phase', ctx->>'traceparent', ctx->>'tracestate',
	                              current_setting('outbox_saga.tracestate'))
	RETURNING jsonb_build_object('ok', true)
$$;
CREATE FUNCTION trace.boom(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'no stock';
END $$;
SELECT saga.define('traced_saga', '[
  {"name": "first", "action": {"function": "trace.step"}, "compensation": {"function": "trace.step"}},
  {"name": "notify", "action": {"emit": {"topic": "traced", "event_type": "saga.command",
                                         "headers": {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}}}},
  {"name": "last", "action": {"function": "trace.boom"}, "max_attempts": 2, "backoff_base": "10 milliseconds"}
]');
BEGIN;
SET LOCAL outbox_saga.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET LOCAL outbox_saga.tracestate = 'congo=t61rcWkgMzE';
SELECT saga.start('traced_saga', '{"order": 1}') AS traced_saga \gset
COMMIT;
SELECT saga.start('traced_saga', '{"order": 2}') AS plain_saga \gset
RESET ROLE;
SELECT pg_temp.wait_for(format('SELECT status = %L FROM saga.instances WHERE id = %L', 'compensated', :'traced_saga'));
SELECT pg_temp.wait_for(format('SELECT status = %L FROM saga.instances WHERE id = %L', 'compensated', :'plain_saga'));
-- A step function runs with the saga's trace context as its setting.
SELECT step, phase, traceparent, tracestate, setting FROM trace.ctx ORDER BY traceparent NULLS LAST, phase;
-- The emit step: the saga's context replaces the one in the definition.
SELECT pg_temp.wait_for('SELECT count(*) = 14 FROM trace.got');
SELECT headers->>'traceparent' AS traceparent, headers->>'tracestate' AS tracestate
  FROM trace.got WHERE tag = 'saga.command' ORDER BY traceparent;

SELECT step, phase, status, attempts, started_at IS NOT NULL AS started,
       finished_at >= started_at AS finished, duration >= '0'::interval AS timed, error
  FROM saga.timeline(:'traced_saga');
SELECT step, phase, status, attempts FROM saga.timeline(:'plain_saga');
-- Errors: NULL, an unknown saga, a role that may not read saga.step_runs.
SELECT * FROM saga.timeline(NULL);
SELECT * FROM saga.timeline('00000000-0000-0000-0000-000000000000');
SET ROLE trace_app;
SELECT * FROM saga.timeline(:'traced_saga');
RESET ROLE;
GRANT SELECT ON saga.step_runs TO trace_app;
SET ROLE trace_app;
SELECT count(*) AS runs FROM saga.timeline(:'traced_saga');
RESET ROLE;

-- Clean up.
SELECT outbox.drop_destination('trace_fn');
SELECT outbox.uncapture_table('trace.orders');
DROP SCHEMA trace CASCADE;
REVOKE SELECT ON saga.step_runs FROM trace_app;

# Hard timeouts of user code (src/base/run_as.c, HARD TIMEOUT):
#   - a function destination whose handler writes a row, then catches
#     query_canceled and keeps looping well past its 1 s timeout: every
#     attempt fails with a timeout error, its row never survives, and the
#     event ends in the dead letters after max_attempts;
#   - a saga whose step function does the same times out and compensates
#     the step before it;
#   - meanwhile the other aggregates of the destination, another function
#     destination on the same topic and another saga complete (before the
#     looping event is dead-lettered);
#   - a handler that swallows every cancel for ever is interrupted again and
#     again, and SIGTERM still ends the dispatcher promptly;
#   - a handler that drops its own destination ends the batch cleanly: the
#     destination is gone and nothing loops.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('handler_timeout',
	conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.control (forever boolean NOT NULL);
	INSERT INTO public.control VALUES (false);
	CREATE TABLE public.written (who text, aggregate_id text, at timestamptz DEFAULT clock_timestamp());

	-- Writes a row, then loops for 3 s (or for ever while control.forever),
	-- swallowing every cancel.  With a single cancel it returned after 3 s
	-- and was counted as delivered.
	CREATE FUNCTION public.stubborn(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		t0 timestamptz := clock_timestamp();
	BEGIN
		INSERT INTO public.written (who, aggregate_id) VALUES ('stubborn', e.aggregate_id);
		IF e.aggregate_id IS DISTINCT FROM 'S' THEN
			RETURN;
		END IF;
		LOOP
			BEGIN
				PERFORM pg_sleep(0.05);
			EXCEPTION WHEN query_canceled THEN
				RAISE LOG 'stubborn handler caught a cancel';
			END;
			EXIT WHEN clock_timestamp() > t0 + interval '3 s'
				AND NOT (SELECT forever FROM public.control);
		END LOOP;
	END $$;

	CREATE FUNCTION public.fast(e outbox.events) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.written (who, aggregate_id) VALUES ('fast', e.aggregate_id) $$;

	SELECT outbox.create_destination('stubborn', 'function',
		'{"function": "public.stubborn", "timeout": "1 s", "max_attempts": 3,
		  "backoff_base": "10 ms", "backoff_max": "20 ms"}');
	SELECT outbox.subscribe('stubborn', 'app');
	SELECT outbox.create_destination('fast', 'function', '{"function": "public.fast"}');
	SELECT outbox.subscribe('fast', 'app');

	CREATE FUNCTION public.step_ok(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.written (who, aggregate_id) VALUES (ctx->>'step', ctx->>'saga_id');
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.undo(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.written (who, aggregate_id) VALUES ('undo ' || (ctx->>'step'), ctx->>'saga_id');
		RETURN NULL;
	END $$;
	CREATE FUNCTION public.step_loop(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		t0 timestamptz := clock_timestamp();
	BEGIN
		INSERT INTO public.written (who, aggregate_id) VALUES ('loop', ctx->>'saga_id');
		LOOP
			BEGIN
				PERFORM pg_sleep(0.05);
			EXCEPTION WHEN query_canceled THEN
				NULL;
			END;
			EXIT WHEN clock_timestamp() > t0 + interval '3 s';
		END LOOP;
		RETURN '{"looped": true}';
	END $$;
	SELECT saga.define('slow', $$[
		{"name": "a", "action": {"function": "public.step_ok"}, "compensation": {"function": "public.undo"}},
		{"name": "b", "action": {"function": "public.step_loop"}, "timeout": "1 s", "max_attempts": 2}
	]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "20 milliseconds"}');
	SELECT saga.define('quick', $$[
		{"name": "x", "action": {"function": "public.step_ok"}},
		{"name": "y", "action": {"function": "public.step_ok"}}
	]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "20 milliseconds"}');
});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');

my $log_offset = -s $node->logfile;
sql(q{
	BEGIN;
	SELECT outbox.emit('app', 'loops', '{}', 'S');
	SELECT outbox.emit('app', 'flows', jsonb_build_object('n', g), 'A' || g)
	  FROM generate_series(1, 5) g;
	SELECT saga.start('slow', '{}');
	SELECT saga.start('quick', '{}');
	COMMIT;
});

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'stubborn'}),
	'the looping event ends in the dead letters');
is(sql(q{SELECT attempts || ' ' || aggregate_id FROM outbox.dead_letters WHERE destination = 'stubborn'}),
	'3 S', 'after its three attempts');
is(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'stubborn'}),
	"57014: handler exceeded the destination's timeout of 1000 ms",
	'its last error names the timeout, with SQLSTATE 57014');
is(sql(q{SELECT count(*) FROM public.written WHERE who = 'stubborn' AND aggregate_id = 'S'}),
	'0', 'the writes of the timed-out attempts were rolled back');
is(sql(q{SELECT failed_attempts_total FROM outbox.stats WHERE destination = 'stubborn'}),
	'3', 'three failed attempts are counted, none delivered');
ok(wait_for_log_match($node, qr/stubborn handler caught a cancel/, $log_offset),
	'the handler did catch the cancel');

is(sql(q{SELECT string_agg(aggregate_id, ',' ORDER BY aggregate_id) FROM public.written
          WHERE who = 'stubborn'}),
	'A1,A2,A3,A4,A5', 'the other aggregates of the destination were delivered');
is(sql(q{SELECT string_agg(aggregate_id, ',' ORDER BY aggregate_id) FROM public.written
          WHERE who = 'fast'}),
	'A1,A2,A3,A4,A5,S', 'the other destination got every event');
is(sql(q{SELECT count(*) FROM public.written w, outbox.dead_letters d
          WHERE d.destination = 'stubborn' AND w.who IN ('stubborn', 'fast')
            AND w.at >= d.failed_at}),
	'0', 'all of them before the looping event was dead-lettered');

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM saga.instances WHERE status IN ('running', 'compensating')}),
	'both sagas ended');
is(sql(q{SELECT string_agg(definition || '=' || status, ',' ORDER BY definition) FROM saga.instances}),
	'quick=completed,slow=compensated', 'the looping saga compensated, the other completed');
like(sql(q{SELECT error FROM saga.instances WHERE definition = 'slow'}),
	qr/step "b" .*timed out|step "b" .*timeout/,
	'the saga error says the step timed out');
is(sql(q{SELECT r.status || ' ' || r.attempts || ' ' || r.error FROM saga.step_runs r
          JOIN saga.instances i ON i.id = r.saga_id
         WHERE i.definition = 'slow' AND r.step = 'b' AND r.phase = 'action'}),
	"failed 2 57014: step function exceeded the step's timeout of 1000 ms",
	'the step failed twice with the timeout error');
is(sql(q{SELECT string_agg(w.who, ',' ORDER BY w.at) FROM public.written w
          JOIN saga.instances i ON i.id::text = w.aggregate_id WHERE i.definition = 'slow'}),
	'a,undo a', 'the looping step kept none of its writes; the step before it was compensated');
is(sql(q{SELECT count(*) FROM public.written w
          JOIN saga.instances q ON q.id::text = w.aggregate_id AND q.definition = 'quick',
               saga.instances s
         WHERE s.definition = 'slow' AND w.at >= s.updated_at}),
	'0', 'the other saga completed before the looping one ended');

# --- A handler that never gives up: cancelled again and again, and SIGTERM
# still ends the dispatcher.
sql(q{UPDATE public.control SET forever = true});
$log_offset = -s $node->logfile;
sql(q{SELECT outbox.emit('app', 'loops', '{}', 'S')});
ok(wait_for_log_match($node,
	qr/(?:stubborn handler caught a cancel[\s\S]*?){5}/, $log_offset),
	'the handler is interrupted again after the deadline');
# The dispatcher running the handler: the one in pg_sleep.
my $busy = '';
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND wait_event = 'PgSleep'}, 30),
	'a dispatcher is in the handler');
$busy = sql(q{SELECT pid FROM pg_stat_activity
               WHERE backend_type = 'outbox_saga dispatcher' AND wait_event = 'PgSleep'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($busy)");
ok(wait_until($node, 'postgres', qq{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $busy}, 10),
	'SIGTERM ends the dispatcher while the handler loops');
sql(q{UPDATE public.control SET forever = false});
ok(wait_for_dispatcher($node, 'postgres', $busy), 'a new dispatcher runs');
$pid = dispatcher_pid($node, 'postgres');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM outbox.dead_letters WHERE destination = 'stubborn'}),
	'and dead-letters that event too');

# --- A handler that drops its own destination.
sql(q{
	CREATE FUNCTION public.suicide(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.written (who, aggregate_id) VALUES ('suicide', e.aggregate_id);
		PERFORM outbox.drop_destination('suicide');
	END $$;
	SELECT outbox.create_destination('suicide', 'function', '{"function": "public.suicide"}');
	SELECT outbox.subscribe('suicide', 'gone');
});
$log_offset = -s $node->logfile;
sql(q{SELECT outbox.emit('gone', 'drop', '{}', 'D' || g) FROM generate_series(1, 3) g});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 0 FROM outbox.destinations WHERE name = 'suicide'}, 30),
	'the destination dropped by its own handler is gone');
is(sql(q{SELECT string_agg(aggregate_id, ',') FROM public.written WHERE who = 'suicide'}),
	'D1', 'its handler ran for the first event only, and that delivery committed');
sql(q{SELECT outbox.emit('app', 'after', '{}', 'Z')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM public.written WHERE who = 'fast' AND aggregate_id = 'Z'}),
	'the dispatcher still delivers');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/WARNING: /, 'no warning: the batch ended cleanly');
like($log, qr/destination "suicide" was dropped by its own handler; its batch ends/,
	'the log says why the batch ended');
is(dispatcher_pid($node, 'postgres'), $pid, 'the dispatchers survived');

$node->stop;
done_testing();

# One saga that cannot be advanced must not stop the others, nor the
# dispatcher (src/saga/saga_driver.c, ERRORS).
#
# A trigger planted on saga.instance (by a superuser: the table is not
# granted to anyone) makes recording the second step of one saga fail.
# That error aborts the whole round of the worker; the claimed runs are then
# run one saga per transaction: the others complete, and the poisoned one
# gets the error recorded as a failed attempt of its step, until the step
# has used up its attempts and the saga compensates.  The dispatcher keeps
# its pid and still delivers events.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('saga_poison', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.done (saga_id text, step text);
	CREATE FUNCTION public.step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.done VALUES (ctx->>'saga_id', ctx->>'step');
		RETURN jsonb_build_object('step', ctx->>'step');
	END $$;
	CREATE FUNCTION public.undo(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.done VALUES (ctx->>'saga_id', 'undo ' || (ctx->>'step'));
		RETURN NULL;
	END $$;
	SELECT saga.define('three', $$[
		{"name": "a", "action": {"function": "public.step"}, "compensation": {"function": "public.undo"}},
		{"name": "b", "action": {"function": "public.step"}},
		{"name": "c", "action": {"function": "public.step"}}
	]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "20 milliseconds"}');

	CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.input ? 'poison' AND NEW.results ? 'b' THEN
			RAISE EXCEPTION 'poisoned saga';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER poison BEFORE UPDATE ON saga.instance
		FOR EACH ROW EXECUTE FUNCTION public.poison();

	CREATE TABLE public.delivered (event_type text);
	CREATE FUNCTION public.deliver(e outbox.events) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.delivered VALUES (e.event_type) $$;
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.deliver"}');
	SELECT outbox.subscribe('sink', 'app');
});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');

$node->safe_psql('postgres', q{
	SELECT count(saga.start('three', CASE WHEN g = 7 THEN '{"poison": true}'::jsonb ELSE '{}' END))
	  FROM generate_series(1, 20) g});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM saga.instances WHERE status IN ('running', 'compensating')}),
	'every saga ended');
is($node->safe_psql('postgres', q{
	SELECT string_agg(status || '=' || n, ',' ORDER BY status)
	  FROM (SELECT status, count(*) AS n FROM saga.instances GROUP BY status) s}),
	'compensated=1,completed=19', 'the others completed; the poisoned one compensated');
is($node->safe_psql('postgres', q{
	SELECT i.error FROM saga.instances i WHERE i.input ? 'poison'}),
	'step "b" failed after 3 attempt(s): could not run or record the step: poisoned saga',
	'the error is recorded on the poisoned saga, as failed attempts of its step');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.done d JOIN saga.instances i ON i.id::text = d.saga_id
	 WHERE NOT i.input ? 'poison'}),
	'57', 'every step of the others committed once (19 x 3)');
is($node->safe_psql('postgres', q{
	SELECT string_agg(d.step, ',' ORDER BY d.step) FROM public.done d
	  JOIN saga.instances i ON i.id::text = d.saga_id WHERE i.input ? 'poison'}),
	'a,undo a', 'the poisoned saga kept none of its failed attempts and compensated its first step');
ok(wait_for_log_match($node, qr/WARNING:  poisoned saga\n(?:.*(?:HINT|DETAIL):  .*\n)*.*CONTEXT:  .*\n(?:\t.*\n)*?\twhile driving sagas$/m),
	'the failed round is reported');

is(dispatcher_pid($node, 'postgres'), $pid, 'the dispatcher survived');
$node->safe_psql('postgres', q{SELECT outbox.emit('app', 'still.flowing')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.delivered}),
	'and still delivers events');

$node->stop;
done_testing();

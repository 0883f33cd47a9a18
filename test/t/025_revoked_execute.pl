# Handlers and saga steps run with the privileges their owner has when they
# run (G10, G14).  The EXECUTE privilege on a destination's handler, on a
# saga step's function and on outbox.emit() for an emit step is checked at
# every call, not only when the function is first resolved: a REVOKE of a
# role membership changes nothing in pg_proc, so a cached function would
# otherwise go on running - here a SECURITY DEFINER function owned by a
# superuser.  After the REVOKE the next attempt fails with 42501 and nothing
# runs.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('revoked', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE fnusers NOLOGIN;
	CREATE ROLE bob LOGIN;
	GRANT fnusers TO bob;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO bob;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA saga TO bob;
	CREATE TABLE public.ran (what text);
	CREATE FUNCTION public.su_handler(e outbox.events) RETURNS void
		LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
		AS $$ INSERT INTO public.ran VALUES ('handler ' || (e.payload->>'n')) $$;
	CREATE FUNCTION public.su_step(ctx jsonb) RETURNS jsonb
		LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
		AS $$ INSERT INTO public.ran VALUES ('step ' || (ctx->'input'->>'n')) RETURNING '{}'::jsonb $$;
	REVOKE EXECUTE ON FUNCTION public.su_handler(outbox.events), public.su_step(jsonb) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION public.su_handler(outbox.events), public.su_step(jsonb) TO fnusers;
});
$node->safe_psql('postgres', q{
	SELECT outbox.create_destination('bob_dest', 'function',
		'{"function": "public.su_handler", "max_attempts": 1}');
	SELECT outbox.subscribe('bob_dest', 'work');
	SELECT saga.define('bob_fn', '[{"name": "a", "action": {"function": "public.su_step"}}]',
		'{"max_attempts": 1}');
	SELECT saga.define('bob_emit', '[{"name": "a", "action": {"emit": {"topic": "cmd", "event_type": "go", "await": false}}}]',
		'{"max_attempts": 1}');
}, extra_params => [ '-U', 'bob' ]);
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub ran
{
	my ($what) = @_;
	return $node->safe_psql('postgres', qq{SELECT count(*) FROM public.ran WHERE what = '$what'});
}

# Start a saga of DEFINITION as bob with input {"n": N}; returns its id.
sub start_saga
{
	my ($definition, $n) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT saga.start('$definition', '{"n": $n}')},
		extra_params => [ '-U', 'bob' ]);
}

# Wait until saga ID has one of the STATUSES (a comma-separated SQL list).
sub saga_status
{
	my ($id, $statuses) = @_;
	return $node->poll_query_until('postgres',
		qq{SELECT status IN ($statuses) FROM saga.instances WHERE id = '$id'});
}

# While bob is a member of fnusers everything runs.
$node->safe_psql('postgres', q{SELECT outbox.emit('work', 'e', '{"n": 1}')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.ran WHERE what = 'handler 1'}),
	'the handler runs while bob may execute it');
my $s1 = start_saga('bob_fn', 1);
ok(saga_status($s1, q{'completed'}), 'the function step runs while bob may execute it');
is(ran('step 1'), '1', 'the step function ran once');
my $e1 = start_saga('bob_emit', 1);
ok(saga_status($e1, q{'completed'}), 'the emit step runs while bob may execute outbox.emit()');

# Take the membership away.  Nothing in pg_proc changes (a REVOKE of
# EXECUTE on any function would, and would empty the caches by itself).
$node->safe_psql('postgres', q{REVOKE fnusers FROM bob});

$node->safe_psql('postgres', q{SELECT outbox.emit('work', 'e', '{"n": 2}')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM outbox.dead_letters
	 WHERE destination = 'bob_dest' AND payload->>'n' = '2' AND last_error LIKE '42501:%'}),
	'after REVOKE the handler fails with 42501 and the event is a dead letter');
is(ran('handler 2'), '0', 'the handler did not run');

my $s2 = start_saga('bob_fn', 2);
ok(saga_status($s2, q{'failed', 'compensated'}),
	'after REVOKE the function step fails');
like($node->safe_psql('postgres', qq{
	SELECT string_agg(error, ' ') FROM saga.step_runs WHERE saga_id = '$s2'}),
	qr/42501: role "bob" may not execute function public\.su_step\(jsonb\)/,
	'with 42501, naming the function');
is(ran('step 2'), '0', 'the step function did not run');

# EXECUTE on outbox.emit() granted through a role, then that membership
# revoked: again nothing in pg_proc changes.
$node->safe_psql('postgres', q{
	CREATE ROLE emitters NOLOGIN;
	GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) TO emitters;
	REVOKE EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) FROM bob;
	GRANT emitters TO bob;
});
my $e15 = start_saga('bob_emit', 15);
ok(saga_status($e15, q{'completed'}), 'the emit step runs while bob may execute outbox.emit() through emitters');
$node->safe_psql('postgres', q{REVOKE emitters FROM bob});

my $e2 = start_saga('bob_emit', 2);
ok(saga_status($e2, q{'failed', 'compensated'}),
	'after REVOKE the emit step fails');
like($node->safe_psql('postgres', qq{
	SELECT string_agg(error, ' ') FROM saga.step_runs WHERE saga_id = '$e2'}),
	qr/42501: role "bob" may not execute function outbox\.emit\(\)/,
	'with 42501, naming outbox.emit()');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM outbox.events WHERE topic = 'cmd' AND aggregate_id = '$e2'}),
	'0', 'no command event was written');

$node->stop;
done_testing();

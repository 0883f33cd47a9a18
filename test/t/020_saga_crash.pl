# Sagas through crashes and restarts (SPEC 3.5, G9; design in
# src/saga/saga_driver.c).
#
# Step and compensation functions record every call that commits in
# public.effects (no unique constraint, so a duplicate would show) and count
# every call, committed or not, in a sequence.  A "gate" makes a function
# wait on an advisory lock that the test holds, so the test knows that the
# function is running - inside the worker's transaction, together with the
# other sagas of the batch - and kills the server there:
#   (a) SIGKILL of the dispatcher while an action runs: the step was
#       recorded as running beforehand (visible from outside); after crash
#       recovery it runs again without using up an attempt (max_attempts 1),
#       and every saga of the batch completes with each action once;
#   (b) SIGKILL while compensations run: after recovery every saga ends
#       compensated and each compensation ran once;
#   (c) SIGTERM of the dispatcher (pg_terminate_backend) while an action
#       runs: the launcher starts a new one, which runs the step again;
#   (d) an immediate shutdown while one saga waits for saga.complete_step
#       and another runs towards its deadline: after the restart the timeout
#       and the deadline are enforced and both sagas compensate.
# Every saga ends in the state it would have reached without the crash, and
# the rows show each action and compensation exactly once per saga.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('saga_crash',
	conf => "outbox_saga.poll_interval = '100ms'\nrestart_after_crash = on\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.stock (item text PRIMARY KEY, qty integer NOT NULL);
	INSERT INTO public.stock VALUES ('apple', 1000);
	CREATE TABLE public.effects (
		seq     bigint GENERATED ALWAYS AS IDENTITY,
		batch   text,
		saga_id text,
		call    text
	);
	CREATE SEQUENCE public.calls;

	-- A function waits on advisory lock <gate> when its input asks for it.
	CREATE FUNCTION public.gate(ctx jsonb, what text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('public.calls');
		IF ctx->'input'->>(what || '_gate') IS NOT NULL THEN
			PERFORM pg_advisory_xact_lock((ctx->'input'->>(what || '_gate'))::bigint);
		END IF;
		INSERT INTO public.effects (batch, saga_id, call)
		VALUES (ctx->'input'->>'batch', ctx->>'saga_id', what);
	END $$;
	CREATE FUNCTION public.create_order(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.gate(ctx, 'create_order');
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.reserve(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.gate(ctx, 'reserve');
		UPDATE public.stock SET qty = qty - 1 WHERE item = 'apple';
		RETURN '{"qty": 1}';
	END $$;
	CREATE FUNCTION public.pay(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (ctx->'input'->>'decline')::boolean THEN
			RAISE EXCEPTION 'card declined';
		END IF;
		PERFORM public.gate(ctx, 'pay');
		RETURN '{"paid": true}';
	END $$;
	CREATE FUNCTION public.cancel_order(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.gate(ctx, 'cancel_order');
		RETURN NULL;
	END $$;
	CREATE FUNCTION public.release(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM public.gate(ctx, 'release');
		UPDATE public.stock SET qty = qty + (ctx->'results'->'reserve'->>'qty')::integer
		 WHERE item = 'apple';
		RETURN NULL;
	END $$;

	SELECT saga.define('order', $$[
		{"name": "create_order", "action": {"function": "public.create_order"},
		 "compensation": {"function": "public.cancel_order"}},
		{"name": "reserve", "action": {"function": "public.reserve"},
		 "compensation": {"function": "public.release"},
		 "max_attempts": 1, "timeout": "10 minutes"},
		{"name": "pay", "action": {"function": "public.pay"}, "max_attempts": 1}
	]$$, '{"backoff_base": "10 milliseconds", "timeout": "10 minutes",
	       "compensation_max_attempts": 1}');
	SELECT saga.define('shipment', $$[
		{"name": "create_order", "action": {"function": "public.create_order"},
		 "compensation": {"function": "public.cancel_order"}},
		{"name": "ship", "action": {"emit": {"topic": "shipping", "event_type": "ship", "await": true}},
		 "timeout": "4 seconds", "max_attempts": 1}
	]$$);
	SELECT saga.define('express', $$[
		{"name": "create_order", "action": {"function": "public.create_order"},
		 "compensation": {"function": "public.cancel_order"}},
		{"name": "ship", "action": {"emit": {"topic": "shipping", "event_type": "ship", "await": true}},
		 "timeout": "1 hour"}
	]$$, '{"deadline": "4 seconds"}');
});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');

# Start $n sagas of batch $batch in one transaction; the first one gets
# $extra (JSON members) in its input.
sub start_batch
{
	my ($batch, $definition, $n, $extra, $common) = @_;
	$common //= '';
	$node->safe_psql('postgres', qq{
		SELECT count(saga.start('$definition',
			('{"batch": "$batch"$common' || CASE WHEN g = 1 THEN '$extra' ELSE '' END || '}')::jsonb))
		  FROM generate_series(1, $n) g});
}

# Hold advisory lock $key in a background session; returns the session.
sub hold_gate
{
	my ($key) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->query_safe("SELECT pg_advisory_lock($key)");
	return $session;
}

# Wait until the dispatcher waits on an advisory lock.
sub dispatcher_at_gate
{
	return $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_catalog.pg_locks l
		  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		 WHERE l.locktype = 'advisory' AND NOT l.granted
		   AND a.backend_type = 'outbox_saga dispatcher'});
}

# After a crash: the postmaster reinitialized and a new dispatcher runs.
sub wait_crash_recovery
{
	my ($old_pid, $log_offset, $what) = @_;
	ok(wait_for_log_match($node,
			qr/terminated by signal 9.*\n(?:.*\n)*.*all server processes terminated; reinitializing/,
			$log_offset),
		"$what: the postmaster reinitialized (crash recovery)");
	my $new = wait_for_dispatcher($node, 'postgres', $old_pid);
	ok($new, "$what: a new dispatcher runs");
	return $new;
}

# Wait until every saga of a batch has ended; returns "status=count,...".
sub settled
{
	my ($batch) = @_;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 0 FROM saga.instances
		 WHERE input->>'batch' = '$batch' AND status IN ('running', 'compensating')});
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(status || '=' || n, ',' ORDER BY status)
		  FROM (SELECT status, count(*) AS n FROM saga.instances
		         WHERE input->>'batch' = '$batch' GROUP BY status) s});
}

# "call=count,..." of the effects of a batch, and the largest number of
# times one saga made one call.
sub effects
{
	my ($batch) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(call || '=' || n, ',' ORDER BY call)
		  FROM (SELECT call, count(*) AS n FROM public.effects
		         WHERE batch = '$batch' GROUP BY call) s});
}

sub max_per_saga
{
	my ($batch) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT COALESCE(max(n), 0) FROM (SELECT count(*) AS n FROM public.effects
		                                 WHERE batch = '$batch' GROUP BY saga_id, call) s});
}

# (a) SIGKILL while an action runs.
my $gate = hold_gate(42);
start_batch('a', 'order', 50, ', "reserve_gate": 42');
ok(dispatcher_at_gate(), '(a) the dispatcher runs the gated step, held at the gate');
is($node->safe_psql('postgres', q{
	SELECT r.status || '/' || r.attempts FROM saga.step_runs r JOIN saga.instances i ON i.id = r.saga_id
	 WHERE i.input ? 'reserve_gate' AND r.step = 'reserve' AND r.phase = 'action'}),
	'running/1', '(a) the step was recorded as running before it ran (committed, visible)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects WHERE batch = 'a' AND call = 'reserve'}),
	'0', '(a) nothing of the batch held at the gate is committed');
my $log_offset = -s $node->logfile;
ok(kill('KILL', $pid), "(a) dispatcher $pid killed with SIGKILL");
$pid = wait_crash_recovery($pid, $log_offset, '(a)');
eval { $gate->quit };
is(settled('a'), 'completed=50', '(a) every saga of the batch completed');
is(effects('a'), 'create_order=50,pay=50,reserve=50', '(a) every action ran and committed once per saga');
is(max_per_saga('a'), '1', '(a) no action committed twice for one saga');
is($node->safe_psql('postgres', q{
	SELECT r.status || '/' || r.attempts || '/' || (r.error LIKE 'interrupted by a crash%')
	  FROM saga.step_runs r JOIN saga.instances i ON i.id = r.saga_id
	 WHERE i.input ? 'reserve_gate' AND r.step = 'reserve' AND r.phase = 'action'}),
	'succeeded/1/true',
	'(a) the interrupted step ran again without using up its only attempt, and says it was interrupted');
is($node->safe_psql('postgres', q{SELECT qty FROM public.stock}), '950', '(a) stock reserved once per saga');

# (b) SIGKILL while compensations run: every saga of the batch fails to pay,
# and the release of the first one waits at the gate.
$gate = hold_gate(43);
start_batch('b', 'order', 20, ', "release_gate": 43', ', "decline": true');
ok(dispatcher_at_gate(), '(b) the dispatcher runs a gated compensation, held at the gate');
is($node->safe_psql('postgres', q{
	SELECT i.status || '/' || r.status FROM saga.step_runs r JOIN saga.instances i ON i.id = r.saga_id
	 WHERE i.input ? 'release_gate' AND r.step = 'reserve' AND r.phase = 'compensation'}),
	'compensating/running', '(b) the compensation was recorded as running before it ran');
$log_offset = -s $node->logfile;
ok(kill('KILL', $pid), "(b) dispatcher $pid killed with SIGKILL");
$pid = wait_crash_recovery($pid, $log_offset, '(b)');
eval { $gate->quit };
is(settled('b'), 'compensated=20', '(b) every saga of the batch is compensated');
is(effects('b'), 'cancel_order=20,create_order=20,release=20,reserve=20',
	'(b) each compensation committed once per completed step');
is(max_per_saga('b'), '1', '(b) no compensation ran twice for one step');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT saga_id, array_agg(call ORDER BY seq) AS calls FROM public.effects
		 WHERE batch = 'b' GROUP BY saga_id) s
	 WHERE calls <> ARRAY['create_order', 'reserve', 'release', 'cancel_order']}),
	'0', '(b) compensations ran in reverse order in every saga');
is($node->safe_psql('postgres', q{SELECT qty FROM public.stock}), '950', '(b) the stock is back');

# (c) SIGTERM (pg_terminate_backend) while an action runs.
$gate = hold_gate(44);
start_batch('c', 'order', 10, ', "pay_gate": 44');
ok(dispatcher_at_gate(), '(c) the dispatcher is held at the gate');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $new = wait_for_dispatcher($node, 'postgres', $pid);
ok($new, '(c) the launcher started a new dispatcher');
$pid = $new;
$gate->quit;
is(settled('c'), 'completed=10', '(c) every saga of the batch completed');
is(effects('c'), 'create_order=10,pay=10,reserve=10', '(c) every action committed once per saga');
is(max_per_saga('c'), '1', '(c) no action committed twice for one saga');

# (d) An immediate shutdown while a step waits for saga.complete_step (its
# timeout is 4 seconds) and a saga runs towards its deadline (4 seconds):
# after the restart both are enforced.
start_batch('d', 'shipment', 1, '');
start_batch('d', 'express', 1, '');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM saga.step_runs r JOIN saga.instances i ON i.id = r.saga_id
	 WHERE i.input->>'batch' = 'd' AND r.step = 'ship' AND r.status = 'waiting'}),
	'(d) both sagas wait for saga.complete_step');
$node->stop('immediate');
$node->start;
$pid = wait_for_dispatcher($node, 'postgres');
ok($pid, '(d) a dispatcher runs after the restart');
is(settled('d'), 'compensated=2', '(d) after the restart both sagas compensated');
is($node->safe_psql('postgres', q{
	SELECT string_agg(i.definition || ': ' || i.error, '; ' ORDER BY i.definition)
	  FROM saga.instances i WHERE i.input->>'batch' = 'd'}),
	'express: deadline exceeded while running step "ship"; '
	  . 'shipment: step "ship" failed after 1 attempt(s): timed out after 00:00:04 waiting for saga.complete_step',
	'(d) the deadline and the timeout were enforced');
is(effects('d'), 'cancel_order=2,create_order=2', '(d) each saga compensated its completed step once');

# Across everything: the calls that did not commit (cut by a crash) were
# made, and rolled back with their batch.
my ($calls, $committed) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT last_value FROM public.calls), (SELECT count(*) FROM public.effects)});
cmp_ok($calls, '>', $committed, "calls made ($calls) exceed calls committed ($committed): crashed attempts ran and were undone");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM saga.step_runs WHERE status IN ('pending', 'running', 'waiting')}),
	'0', 'no step run is left active');

$node->stop;
done_testing();

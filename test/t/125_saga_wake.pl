# The saga round runs only when it can have work (issue 18 item 3; design
# in src/saga/saga_driver.c, WHEN A PASS RUNS ROUNDS), and no saga work
# waits for a poll because of it.  outbox_saga.poll_interval is 10 seconds
# here, and every check that wants promptness acts right after the
# dispatcher's poll round (a DEBUG1 line says so), so a missed wake-up would
# cost about 10 seconds, far above what is allowed:
#   (a) with no saga at all, a load of event commits to a function
#       destination makes the dispatcher skip the saga round on almost every
#       pass (counted from its DEBUG1 lines);
#   (b) saga.start, complete_step, cancel, retry and resume each get their
#       saga moving within 2 seconds (their commits count saga work);
#   (c) a step's retry after a backoff, a waiting step's timeout and a
#       saga's deadline fire on time with nobody acting (the due time);
#   (d) a run made due by hand (an UPDATE of saga.step_run, which counts
#       nothing) is found by the poll: it reads the due time again and runs
#       the round for what it shows due.
# With no saga work due, the poll runs no round: only the due time is read
# (an idle dispatcher planned and ran the sweeps' statements every second).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

# Latency allowed for anything that must not wait for the poll (seconds).
my $PROMPT = 2;

my $node = new_node('saga_wake', workers => 2,
	conf => "outbox_saga.poll_interval = '10s'\nlog_min_messages = debug1\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (tag text);
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.got VALUES (e.payload->>'tag') $$;
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('sink', 'load');

	-- When a user acted (the transaction's clock), by name.
	CREATE TABLE public.marks (what text PRIMARY KEY, at timestamptz NOT NULL);

	-- Steps.  ok succeeds; flaky fails its first attempt (step_run.attempts
	-- counts the attempt being run: the step runs as the definition's owner,
	-- a superuser here); undo records a compensation.
	CREATE TABLE public.effects (saga_id uuid, what text, at timestamptz);
	CREATE FUNCTION public.ok(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.effects VALUES ((ctx->>'saga_id')::uuid, ctx->>'step', clock_timestamp());
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT r.attempts FROM saga.step_run r
		     WHERE r.saga_id = (ctx->>'saga_id')::uuid AND r.step = ctx->>'step'
		       AND r.phase = 'action') < 2 THEN
			RAISE EXCEPTION 'first attempt fails';
		END IF;
		RETURN public.ok(ctx);
	END $$;
	CREATE TABLE public.undo_fails (saga_id uuid PRIMARY KEY);
	CREATE FUNCTION public.undo(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.undo_fails u WHERE u.saga_id = (ctx->>'saga_id')::uuid) THEN
			RAISE EXCEPTION 'compensation fails for now';
		END IF;
		INSERT INTO public.effects VALUES ((ctx->>'saga_id')::uuid, 'undo ' || (ctx->>'step'), clock_timestamp());
		RETURN NULL;
	END $$;
});
ok(wait_for_dispatcher($node, 'postgres'), 'two dispatchers run');
ok(wait_until($node, 'postgres', q{SELECT outbox.wait_idle('10 seconds')}, 30),
	'the dispatchers are idle');

# The DEBUG1 lines of dispatcher 0 since OFFSET: passes that ran the saga
# round and passes that skipped it.
sub round_lines
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my $ran = () = $log =~ /outbox_saga: saga rounds ran \(/g;
	my $skipped = () = $log =~ /outbox_saga: saga rounds skipped/g;
	return ($ran, $skipped);
}

# Wait for the next poll of dispatcher 0 (after everything so far): the
# next one is then about poll_interval away.
sub after_poll_round
{
	my ($what) = @_;
	ok(wait_for_log_match($node, qr/outbox_saga: saga due time read \(poll\)/, -s $node->logfile, 30),
		"a poll read the due time before $what");
}

# SQL that is true once saga ID is in STATUS.
sub status_is
{
	my ($id, $status) = @_;
	return "SELECT status = '$status' FROM saga.instances WHERE id = '$id'";
}

# Seconds from mark WHAT to the last update of saga ID.
sub latency
{
	my ($id, $what) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT round(extract(epoch FROM i.updated_at - m.at)::numeric, 3)
		  FROM saga.instances i, public.marks m
		 WHERE i.id = '$id' AND m.what = '$what'});
}

# --- (a) No saga: a load of event commits, and the saga round is skipped.
# 150 commits, each from a session of its own: far enough apart that each
# one costs dispatcher 0 a pass.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', qq{SELECT outbox.emit('load', 'e', '{"tag": "load-$_"}')})
  for 1 .. 150;
ok(wait_until($node, 'postgres', q{SELECT count(*) = 150 FROM public.got}, 60),
	'150 events committed one by one are delivered');
my ($ran, $skipped) = round_lines($offset);
note("passes of dispatcher 0 during the load: $ran with the saga round, $skipped without");
cmp_ok($skipped, '>=', 50, "dispatcher 0 made passes that skipped the saga round ($skipped)");
is($ran, 0, 'with no saga, no pass ran the saga round, not even at a poll');

# --- (b) User actions move sagas at once, also right after the poll round.
$node->safe_psql('postgres', q{
	SELECT saga.define('plain', '[{"name": "a", "action": {"function": "public.ok"}}]');
	SELECT saga.define('awaits', $$[
		{"name": "a", "action": {"function": "public.ok"}, "compensation": {"function": "public.undo"}},
		{"name": "b", "action": {"emit": {"topic": "cmd", "event_type": "do", "await": true}},
		 "timeout": "1 hour"},
		{"name": "c", "action": {"function": "public.ok"}}]$$);
	SELECT saga.define('gives_up', $$[
		{"name": "a", "action": {"function": "public.ok"}, "compensation": {"function": "public.undo"}},
		{"name": "b", "action": {"function": "public.flaky"}, "max_attempts": 1}]$$,
		'{"compensation_max_attempts": 1}');
});

# saga.start
after_poll_round('saga.start');
my $id = $node->safe_psql('postgres', q{
	INSERT INTO public.marks VALUES ('start', clock_timestamp());
	SELECT saga.start('plain')});
ok(wait_until($node, 'postgres', status_is($id, 'completed'), 15), 'the saga completes');
cmp_ok(latency($id, 'start'), '<', $PROMPT, 'saga.start runs its first step at once');

# saga.complete_step of an awaited step
$id = $node->safe_psql('postgres', q{SELECT saga.start('awaits')});
ok(wait_until($node, 'postgres', qq{
	SELECT status = 'waiting' FROM saga.step_runs WHERE saga_id = '$id' AND step = 'b'}, 15),
	'the emit step waits for saga.complete_step');
after_poll_round('saga.complete_step');
$node->safe_psql('postgres', qq{
	INSERT INTO public.marks VALUES ('complete', clock_timestamp());
	SELECT saga.complete_step('$id', 'b', true)});
ok(wait_until($node, 'postgres', status_is($id, 'completed'), 15), 'the saga completes');
cmp_ok(latency($id, 'complete'), '<', $PROMPT, 'saga.complete_step runs the next step at once');

# saga.cancel of a waiting saga: its compensation runs
$id = $node->safe_psql('postgres', q{SELECT saga.start('awaits')});
ok(wait_until($node, 'postgres', qq{
	SELECT status = 'waiting' FROM saga.step_runs WHERE saga_id = '$id' AND step = 'b'}, 15),
	'the emit step waits');
after_poll_round('saga.cancel');
$node->safe_psql('postgres', qq{
	INSERT INTO public.marks VALUES ('cancel', clock_timestamp());
	SELECT saga.cancel('$id', 'test')});
ok(wait_until($node, 'postgres', status_is($id, 'cancelled'), 15), 'the saga ends cancelled');
cmp_ok(latency($id, 'cancel'), '<', $PROMPT, 'saga.cancel runs the compensation at once');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM public.effects WHERE saga_id = '$id' AND what = 'undo a'}),
	'1', 'the completed step was compensated');

# saga.retry of a failed saga (its compensation gave up)
$id = $node->safe_psql('postgres', q{
	WITH s AS (SELECT saga.start('gives_up') AS id)
	INSERT INTO public.undo_fails SELECT id FROM s RETURNING saga_id});
ok(wait_until($node, 'postgres', status_is($id, 'failed'), 15),
	'a saga whose compensation gives up fails');
after_poll_round('saga.retry');
$node->safe_psql('postgres', qq{
	DELETE FROM public.undo_fails;
	INSERT INTO public.marks VALUES ('retry', clock_timestamp());
	SELECT saga.retry('$id')});
ok(wait_until($node, 'postgres', status_is($id, 'compensated'), 15), 'the retried saga compensates');
cmp_ok(latency($id, 'retry'), '<', $PROMPT, 'saga.retry runs the compensation at once');

# saga.resume of a held saga (held as a restore holds it: its pending run
# due at infinity, a row in saga.restored_hold)
$id = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT saga.start('plain') AS id \gset
	UPDATE saga.step_run SET next_attempt_at = 'infinity' WHERE saga_id = :'id';
	INSERT INTO saga.restored_hold (saga_id) VALUES (:'id');
	COMMIT;
	SELECT :'id';
});
is($node->safe_psql('postgres', qq{SELECT restored FROM saga.instances WHERE id = '$id'}),
	't', 'the saga is held');
after_poll_round('saga.resume');
is($node->safe_psql('postgres', qq{SELECT status FROM saga.step_runs WHERE saga_id = '$id'}),
	'pending', 'a held saga does not run');
$node->safe_psql('postgres', qq{
	INSERT INTO public.marks VALUES ('resume', clock_timestamp());
	SELECT saga.resume('$id')});
ok(wait_until($node, 'postgres', status_is($id, 'completed'), 15), 'the resumed saga completes');
cmp_ok(latency($id, 'resume'), '<', $PROMPT, 'saga.resume runs the step at once');

# --- (c) Due times fire with nobody acting.
$node->safe_psql('postgres', q{
	SELECT saga.define('backoff', '[{"name": "a", "action": {"function": "public.flaky"}, "max_attempts": 3}]',
		'{"backoff_base": "3 seconds", "backoff_max": "3 seconds"}');
	SELECT saga.define('times_out', $$[
		{"name": "a", "action": {"emit": {"topic": "cmd", "event_type": "do", "await": true}},
		 "timeout": "2 seconds", "max_attempts": 1}]$$);
	SELECT saga.define('deadline', $$[
		{"name": "a", "action": {"emit": {"topic": "cmd", "event_type": "do", "await": true}},
		 "timeout": "1 hour"}]$$, '{"deadline": "2 seconds"}');
});
after_poll_round('the sagas with due times start');
# Three retries, each after a random part of 3 seconds (full jitter): each
# runs at most 1.5 seconds after its backoff can have ended.
my @backoff = split /\n/, $node->safe_psql('postgres',
	q{SELECT saga.start('backoff') FROM generate_series(1, 3)});
my $timeout = $node->safe_psql('postgres', q{SELECT saga.start('times_out')});
my $deadline = $node->safe_psql('postgres', q{SELECT saga.start('deadline')});
ok(wait_until($node, 'postgres', qq{
	SELECT count(*) = 3 FROM saga.instances
	 WHERE id IN ('$backoff[0]', '$backoff[1]', '$backoff[2]') AND status = 'completed'}, 30),
	'the three sagas whose step failed once complete');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(format('%s attempts, %s s', attempts,
	                         round(extract(epoch FROM finished_at - started_at)::numeric, 1)), '; ')
	  FROM saga.step_runs
	 WHERE saga_id IN ('$backoff[0]', '$backoff[1]', '$backoff[2]')
	   AND extract(epoch FROM finished_at - started_at) > 4.5}), '',
	'each retry ran within 1.5 seconds of the end of its backoff (at most 3 seconds)');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(attempts::text, ',') FROM saga.step_runs
	 WHERE saga_id IN ('$backoff[0]', '$backoff[1]', '$backoff[2]')}), '2,2,2',
	'each took two attempts');
ok(wait_until($node, 'postgres', qq{
	SELECT status = 'failed' FROM saga.step_runs WHERE saga_id = '$timeout'}, 30),
	'the waiting step times out');
my $late = $node->safe_psql('postgres', qq{
	SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 3)
	  FROM saga.step_runs WHERE saga_id = '$timeout'});
cmp_ok($late, '<', 2 + 1.5, "the timeout of 2 seconds fired on time (after $late s)");
like($node->safe_psql('postgres', qq{SELECT error FROM saga.step_runs WHERE saga_id = '$timeout'}),
	qr/timed out/, 'its error says it timed out');
ok(wait_until($node, 'postgres', qq{
	SELECT status IN ('compensating', 'compensated') FROM saga.instances WHERE id = '$deadline'}, 30),
	'the saga past its deadline compensates');
$late = $node->safe_psql('postgres', qq{
	SELECT round(extract(epoch FROM finished_at - i.created_at)::numeric, 3)
	  FROM saga.step_runs r JOIN saga.instances i ON i.id = r.saga_id
	 WHERE r.saga_id = '$deadline'});
cmp_ok($late, '<', 2 + 1.5, "the deadline of 2 seconds was enforced on time (after $late s)");

# --- (d) A run made due by hand, which counts no saga work, is found by
# the poll: it reads the due time again, and a round runs for it.
$node->safe_psql('postgres', q{
	SELECT saga.define('by_hand', '[{"name": "a", "action": {"function": "public.flaky"}, "max_attempts": 3}]',
		'{"backoff_base": "1 hour", "backoff_max": "1 hour"}');
});
$id = $node->safe_psql('postgres', q{SELECT saga.start('by_hand')});
ok(wait_until($node, 'postgres', qq{
	SELECT status = 'pending' AND attempts = 1 FROM saga.step_runs WHERE saga_id = '$id'}, 15),
	'a step failed once and waits for its backoff');
after_poll_round('the UPDATE by hand');
my $by_hand_offset = -s $node->logfile;
$node->safe_psql('postgres', qq{
	INSERT INTO public.marks VALUES ('by hand', clock_timestamp());
	UPDATE saga.step_run SET next_attempt_at = now() WHERE saga_id = '$id' AND status = 'pending'});
ok(wait_until($node, 'postgres', status_is($id, 'completed'), 25),
	'the saga made due by hand completes within a poll interval (not after its backoff of an hour)');
note('the poll found it after ' . latency($id, 'by hand') . ' s');
like(slurp_file($node->logfile, $by_hand_offset),
	qr/saga due time read \(poll\): work is due.*saga rounds ran \(saga work fell due\)/s,
	'the poll read the due time, found the run due and ran a round for it');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM saga.instances WHERE status NOT IN ('completed', 'cancelled', 'compensated', 'compensating')}),
	'0', 'no saga is left behind');
$node->stop;
done_testing();

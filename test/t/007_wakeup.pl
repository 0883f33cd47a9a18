# Low latency (G8): with outbox_saga.poll_interval at its maximum (one
# hour), a commit that wrote events - by outbox.emit or by a capture trigger,
# from a session older or younger than the dispatcher - wakes the dispatcher
# at once; so do resume_destination and replay_dead.  Timed work (a delayed
# event's deliver_after, a retry's backoff) is slept for exactly, not until
# the next poll.  A delayed event is never delivered early.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

# Far above any wait of this test: a delivery here is a wakeup, not a poll.
my $LIMIT = 5;

my $node = new_node('wakeup',
	conf => "outbox_saga.poll_interval = '1h'\nmax_prepared_transactions = 5\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (tag text, at timestamptz, attempt int);
	CREATE TABLE public.fail_once (tag text PRIMARY KEY);
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		-- A tag listed in fail_once fails until the test writes the row
		-- '<tag>:failed' into public.got.
		IF EXISTS (SELECT 1 FROM public.fail_once f WHERE f.tag = e.payload->>'tag')
		   AND NOT EXISTS (SELECT 1 FROM public.got g WHERE g.tag = e.payload->>'tag' || ':failed') THEN
			RAISE EXCEPTION 'first attempt of % fails', e.payload->>'tag';
		END IF;
		INSERT INTO public.got VALUES (e.payload->>'tag', clock_timestamp(), 0);
	END $$;
	-- max_attempts: a failing event keeps retrying (every 0 - 300 ms, full
	-- jitter) until the test lets it succeed.  With 3, two retries could
	-- follow the first failure within a few ms and the event was dead
	-- before "retrying = 1" was seen (CI, PostgreSQL 18: tests 12, 13, 18).
	SELECT outbox.create_destination('sink', 'function',
		'{"function": "public.handler", "backoff_base": "300 milliseconds",
		  "backoff_max": "300 milliseconds", "max_attempts": 1000}');
	SELECT outbox.subscribe('sink');
	CREATE TABLE public.orders (id int PRIMARY KEY, status text);
	SELECT outbox.capture_table('public.orders');
});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');
# The dispatcher's first pass is over once it is idle.
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND state = 'idle'}, 30),
	'the dispatcher sleeps');

# Wait (at most LIMIT seconds) until 'tag' was delivered; returns the latency
# from its commit (measured by the caller as 'since') in seconds, or undef.
sub arrives_within
{
	my ($tag, $since, $seconds) = @_;
	return undef
	  unless wait_until($node, 'postgres',
		"SELECT count(*) >= 1 FROM public.got WHERE tag = '$tag'", $seconds // $LIMIT);
	return $node->safe_psql('postgres', qq{
		SELECT round(extract(epoch FROM min(at) - '$since'::timestamptz)::numeric, 3)
		  FROM public.got WHERE tag = '$tag'});
}

sub now_ts { return $node->safe_psql('postgres', 'SELECT clock_timestamp()'); }

# 1. outbox.emit.
my $t = now_ts();
$node->safe_psql('postgres', q{SELECT outbox.emit('t', 'e', '{"tag": "emit-1"}')});
my $lat = arrives_within('emit-1', $t);
ok(defined $lat, 'a commit with outbox.emit wakes the dispatcher (poll_interval is 1h)');
note('latency of emit-1: ' . ($lat // 'none') . ' s');

# 2. Many commits in a row, each woken for.
my $session = $node->background_psql('postgres');
$t = now_ts();
$session->query_safe(qq{SELECT outbox.emit('t', 'e', jsonb_build_object('tag', 'burst-' || $_))})
  for 1 .. 20;
ok(wait_until($node, 'postgres',
		q{SELECT count(*) = 20 FROM public.got WHERE tag LIKE 'burst-%'}, $LIMIT),
	'twenty commits in a row: all delivered without a poll');

# 3. A capture trigger.
$t = now_ts();
$node->safe_psql('postgres', q{INSERT INTO public.orders VALUES (1, 'new')});
ok($node->safe_psql('postgres', q{SELECT count(*) FROM outbox.events WHERE topic = 'orders'}) == 1,
	'the capture trigger wrote an event');
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM outbox.stats WHERE destination = 'sink' AND delivered_total = 22},
	$LIMIT),
	'a commit through a capture trigger wakes the dispatcher');

# 4. A new dispatcher is woken too, also by a session older than it.
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $new = wait_for_dispatcher($node, 'postgres', $pid);
ok($new, 'the dispatcher was replaced');
ok(wait_until($node, 'postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $new AND state = 'idle'}, 30),
	'the new dispatcher sleeps');
$t = now_ts();
$session->query_safe(q{SELECT outbox.emit('t', 'e', '{"tag": "old-session"}')});
ok(defined arrives_within('old-session', $t),
	'a commit from a session older than the dispatcher wakes it');
$session->quit;

# 5. deliver_after: slept for exactly, never early.
$node->safe_psql('postgres', q{
	CREATE TABLE public.delayed (tag text, deliver_after timestamptz);
	INSERT INTO public.delayed
	SELECT 'delayed-1', clock_timestamp() + interval '1.5 seconds';
	SELECT outbox.emit('t', 'e', '{"tag": "delayed-1"}',
	                   deliver_after => (SELECT deliver_after FROM public.delayed));
});
ok(defined arrives_within('delayed-1', now_ts(), 1.5 + $LIMIT),
	'a delayed event is delivered when it falls due, not at the next poll');
is($node->safe_psql('postgres', q{
	SELECT g.at >= d.deliver_after FROM public.got g JOIN public.delayed d USING (tag)}),
	't', 'and not before its deliver_after');

# 6. A retry after a failure: slept for by its backoff.
$node->safe_psql('postgres', q{INSERT INTO public.fail_once VALUES ('retry-1')});
$node->safe_psql('postgres', q{SELECT outbox.emit('t', 'e', '{"tag": "retry-1"}')});
ok(wait_until($node, 'postgres', q{
	SELECT retrying = 1 FROM outbox.stats WHERE destination = 'sink'}, $LIMIT),
	'the first attempt failed: one event retrying');
# Let the next attempt succeed.
$node->safe_psql('postgres', q{INSERT INTO public.got VALUES ('retry-1:failed', now(), 1)});
ok(defined arrives_within('retry-1', now_ts()),
	'the retry runs after its backoff (300 ms), not at the next poll');

# 7. resume_destination wakes the dispatcher.
$node->safe_psql('postgres', q{SELECT outbox.pause_destination('sink')});
$node->safe_psql('postgres', q{SELECT outbox.emit('t', 'e', '{"tag": "paused-1"}')});
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('10 seconds')}), 't',
	'idle while paused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.got WHERE tag = 'paused-1'}),
	'0', 'nothing delivered while paused');
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND state = 'idle'}, 30),
	'the dispatcher sleeps');
$node->safe_psql('postgres', q{SELECT outbox.resume_destination('sink')});
ok(defined arrives_within('paused-1', now_ts()), 'resume_destination wakes the dispatcher');

# 8. replay_dead wakes the dispatcher.
$node->safe_psql('postgres', q{
	INSERT INTO public.fail_once VALUES ('dead-1');
	SELECT outbox.alter_destination('sink', '{"max_attempts": 1}');
	SELECT outbox.emit('t', 'e', '{"tag": "dead-1"}');
});
ok(wait_until($node, 'postgres', q{SELECT count(*) = 1 FROM outbox.dead_letters}, $LIMIT),
	'an event failing with max_attempts 1 is dead');
$node->safe_psql('postgres', q{INSERT INTO public.got VALUES ('dead-1:failed', now(), 1)});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND state = 'idle'}, 30),
	'the dispatcher sleeps');
$node->safe_psql('postgres', q{SELECT outbox.replay_dead('sink')});
ok(defined arrives_within('dead-1', now_ts()), 'replay_dead wakes the dispatcher');

# 9. Two-phase commit: COMMIT PREPARED is a commit too.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT outbox.emit('t', 'e', '{"tag": "2pc-1"}');
	PREPARE TRANSACTION 'outbox_2pc';
});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND state = 'idle'}, 30),
	'the dispatcher sleeps');
$node->safe_psql('postgres', q{COMMIT PREPARED 'outbox_2pc'});
ok(defined arrives_within('2pc-1', now_ts()), 'COMMIT PREPARED wakes the dispatcher');
# Whatever the wakeup, the event is delivered at the next pass.
$node->safe_psql('postgres', q{SELECT outbox.emit('t', 'e', '{"tag": "after-2pc"}')});
ok(defined arrives_within('after-2pc', now_ts()), 'the next commit wakes the dispatcher');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.got WHERE tag = '2pc-1'}), '1',
	'the prepared transaction\'s event is delivered with it');

is($node->safe_psql('postgres', q{
	SELECT count(tag) - count(DISTINCT tag) FROM public.got}),
	'0', 'nothing delivered twice');

$node->stop;
done_testing();

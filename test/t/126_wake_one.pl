# A commit wakes one dispatcher (issue 18, base/shmem.c WHOM A COMMIT
# WAKES), yet no wake-up is lost (G8) and one slow destination still costs
# only the worker serving it (issue 11): with outbox_saga.poll_interval at
# one hour every delivery here follows a wake-up, never a poll.
#   1. A steady trickle of commits to one destination makes about one pass
#      per commit, not one per commit and worker.
#   2. While worker 0 is stuck in a slow handler of one destination, the
#      commits of another are delivered by the other worker before the slow
#      handler returns, also one committed just before the slow batch began.
#   3. A network destination (http, left by worker 0 to the others) and a
#      function destination written in the same transactions both get every
#      event.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;

my $LIMIT = 20;

my $node = new_node('wake_one', workers => 2,
	conf => "outbox_saga.poll_interval = '1h'\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (tag text, at timestamptz);
	CREATE TABLE public.slow_done (at timestamptz);
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.got VALUES (e.payload->>'tag', clock_timestamp());
	END $$;
	CREATE FUNCTION public.slow(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(4);
		INSERT INTO public.slow_done VALUES (clock_timestamp());
	END $$;
	-- 'slow' first: worker 0's round serves it before 'sink'.
	SELECT outbox.create_destination('slow', 'function',
		'{"function": "public.slow", "timeout": "30 seconds"}');
	SELECT outbox.subscribe('slow', 'slow');
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('sink', 'fast');
});
ok(wait_for_dispatcher($node, 'postgres'), 'two dispatchers run');
ok(wait_until($node, 'postgres', q{SELECT outbox.wait_idle('10 seconds')}, 30),
	'the dispatchers are idle');

sub passes
{
	return $node->safe_psql('postgres', q{
		SELECT sum(passes) FROM outbox.workers
		 WHERE kind = 'dispatcher' AND database = current_database()});
}

sub delivered
{
	my ($pattern, $n) = @_;
	return wait_until($node, 'postgres',
		"SELECT count(*) >= $n FROM public.got WHERE tag LIKE '$pattern'", $LIMIT);
}

# 1. One commit at a time, each delivered before the next: every commit is
# a wake-up, and it costs about one pass, not one per worker.
my $before = passes();
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', qq{SELECT outbox.emit('fast', 'e', '{"tag": "one-$i"}')});
	ok(delivered("one-$i", 1), "commit $i is delivered after a wake-up")
	  or last;
}
my $spent = passes() - $before;
cmp_ok($spent, '<=', 20 * 1.5 + 4,
	"20 commits cost about a pass each ($spent passes in all, not one per worker)");

# 2. A worker stuck in the slow handler: the other delivers the fast
# destination's commits meanwhile - one committed right after the slow
# event (it woke only worker 0, which then serves 'slow' first, or which is
# not stuck yet: worker 0's own timeout hands it on after WORKER_STUCK_MS),
# and five committed later (worker 0 is stuck by then: the commits wake the
# next worker too).
$node->safe_psql('postgres', q{
	SELECT outbox.emit('slow', 'e', '{}');
	SELECT outbox.emit('fast', 'e', '{"tag": "stuck-0"}');
});
ok(delivered('stuck-0', 1), 'the commit right after the slow event is delivered');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM public.slow_done) = 0
	   AND EXISTS (SELECT 1 FROM outbox.workers
	                WHERE kind = 'dispatcher' AND destination = 'slow' AND worker = 0)}),
	't', '... while worker 0, which the commits woke, is still in the slow handler');
for my $i (1 .. 5)
{
	$node->safe_psql('postgres', qq{SELECT outbox.emit('fast', 'e', '{"tag": "stuck-$i"}')});
}
ok(delivered('stuck-%', 6), 'the commits made meanwhile are delivered');
ok(wait_until($node, 'postgres', q{SELECT count(*) = 1 FROM public.slow_done}, $LIMIT),
	'the slow handler returns');
is($node->safe_psql('postgres', q{
	SELECT max(g.at) < (SELECT at FROM public.slow_done)
	  FROM public.got g WHERE g.tag LIKE 'stuck-%'}),
	't', 'they were delivered while the slow handler ran (no wait for it, no poll)');

# 3. A network destination beside the function one: worker 0 leaves it to
# the other worker, and wakes it; both get every event of 50 commits.
my $receiver = WebhookReceiver->new;
my $url = $receiver->url('/hook');
$node->safe_psql('postgres', qq{
	SELECT outbox.create_destination('hook', 'http',
		'{"url": "$url", "timeout": "5 seconds"}');
	SELECT outbox.subscribe('hook', 'fast');
});
$node->safe_psql('postgres',
	qq{SELECT outbox.emit('fast', 'e', '{"tag": "both-$_"}')}) for 1 .. 50;
ok(delivered('both-%', 50), 'the function destination got all 50 events');
ok($receiver->wait_for(sub {
		my %tags = map { ($_->{body} =~ /"tag"\s*:\s*"(both-\d+)"/) ? ($1 => 1) : () } @_;
		return keys(%tags) == 50;
	}, $LIMIT), 'the http destination got all 50 events');
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT tag) FROM public.got WHERE tag LIKE 'both-%'}),
	'50', 'each exactly once in the function destination');

$receiver->stop;
$node->stop;
done_testing();

# No wasted dispatcher work (issue 18 item 1): a commit whose events no
# active destination wants wakes no dispatcher, and paused and backing-off
# destinations cost no pass per commit; yet no wake-up an active destination
# needs is lost (G8: with outbox_saga.poll_interval at one hour, every
# delivery here is a wake-up, not a poll), also right after a subscribe, a
# resume and the end of a backoff, and the coalescing of wake-ups under load
# skips no event (G2).  Two dispatchers per database: both maintain the
# summary of wanted topics.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

# Far above any wait of this test: a delivery here is a wake-up, not a poll.
my $LIMIT = 10;

my $node = new_node('wake_summary', workers => 2,
	conf => "outbox_saga.poll_interval = '1h'\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (tag text, topic text, at timestamptz);
	CREATE TABLE public.failing (topic text PRIMARY KEY);
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.failing f WHERE f.topic = e.topic) THEN
			RAISE EXCEPTION 'topic % fails for now', e.topic;
		END IF;
		INSERT INTO public.got VALUES (e.payload->>'tag', e.topic, clock_timestamp());
	END $$;
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('sink', 'wanted');
	SELECT outbox.create_destination('resting', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('resting', 'resting');
	SELECT outbox.pause_destination('resting');
	CREATE PROCEDURE public.burst(topic text, tag text, n int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			PERFORM outbox.emit(topic, 'e', jsonb_build_object('tag', tag || '-' || i),
			                    aggregate_id => tag);
			COMMIT;
		END LOOP;
	END $$;
});
ok(wait_for_dispatcher($node, 'postgres'), 'two dispatchers run');
ok(wait_until($node, 'postgres', q{SELECT outbox.wait_idle('10 seconds')}, 30),
	'the dispatchers are idle');

# The passes of the database's dispatchers so far.
sub passes
{
	return $node->safe_psql('postgres', q{
		SELECT sum(passes) FROM outbox.workers
		 WHERE kind = 'dispatcher' AND database = current_database()});
}

# Wait (at most LIMIT seconds) until 'tag' was delivered; true if it was.
sub arrives
{
	my ($tag) = @_;
	return wait_until($node, 'postgres',
		"SELECT count(*) >= 1 FROM public.got WHERE tag = '$tag'", $LIMIT);
}

# Commit one event of each of TOPICS, N times, each from a session of its
# own: commits far enough apart that each one woken for would cost a pass.
sub spaced_commits
{
	my ($n, @topics) = @_;
	for my $i (1 .. $n)
	{
		$node->safe_psql('postgres',
			qq{SELECT outbox.emit('$_', 'e', '{"tag": "$_-spaced-$i"}')}) for @topics;
	}
}

# 1. Commits of a topic nobody subscribes to, and of a paused destination's
# topic, make no pass: 60 commits, then one wanted commit, which is
# delivered.  Were each commit woken for, the dispatchers would have made
# dozens of passes (two per commit: both are woken).
my $before = passes();
spaced_commits(10, 'nobody', 'resting');
$node->safe_psql('postgres', q{
	CALL public.burst('nobody', 'nobody', 20);
	CALL public.burst('resting', 'resting', 20);
});
$node->safe_psql('postgres', q{SELECT outbox.emit('wanted', 'e', '{"tag": "wanted-1"}')});
ok(arrives('wanted-1'), 'a wanted commit is delivered without a poll');
my $spent = passes() - $before;
cmp_ok($spent, '<=', 8,
	"60 commits no active destination wants cost no pass ($spent passes in all)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM outbox.events WHERE topic IN ('nobody', 'resting')}),
	'60', 'their events are in the log all the same');

# 2. Resume: the paused destination gets what it missed (G2) and what is
# committed right after the resume (G8).
$node->safe_psql('postgres', q{SELECT outbox.resume_destination('resting')});
$node->safe_psql('postgres', q{SELECT outbox.emit('resting', 'e', '{"tag": "resting-after"}')});
ok(arrives('resting-after'), 'a commit right after resume_destination wakes a dispatcher');
ok(wait_until($node, 'postgres',
		q{SELECT count(*) = 31 FROM public.got WHERE topic = 'resting'}, $LIMIT),
	'the resumed destination gets the 30 events committed while it was paused (G2)');

# 3. Subscribe racing commits: each round subscribes to a new topic and
# commits an event of it from another session at once; every one arrives
# without a poll.
my $session = $node->background_psql('postgres');
for my $i (1 .. 15)
{
	$node->safe_psql('postgres', qq{SELECT outbox.subscribe('sink', 'fresh-$i')});
	$session->query_safe(qq{SELECT outbox.emit('fresh-$i', 'e', '{"tag": "fresh-$i"}')});
}
ok(wait_until($node, 'postgres',
		q{SELECT count(*) = 15 FROM public.got WHERE tag LIKE 'fresh-%'}, $LIMIT),
	'a commit right after its topic was subscribed to wakes a dispatcher, 15 times of 15');

# 4. The end of a backoff.  Three events that fail at once back the whole
# destination off ("flaky", backoff up to 3 s); a commit during the backoff
# wakes nobody, and the first commit after it ends is delivered without a
# poll, with everything it held back.
$node->safe_psql('postgres', q{
	INSERT INTO public.failing VALUES ('flaky');
	SELECT outbox.create_destination('flaky', 'function',
		'{"function": "public.handler", "backoff_base": "3 seconds", "backoff_max": "3 seconds"}');
	SELECT outbox.subscribe('flaky', 'flaky');
});
$node->safe_psql('postgres', q{
	SELECT outbox.emit('flaky', 'e', jsonb_build_object('tag', 'flaky-' || g), aggregate_id => g::text)
	  FROM generate_series(1, 3) g});
# consecutive_failures, not retry_at: the backoff is a random delay up to
# 3 s (full jitter), and the batch run when it ends clears retry_at, so a
# short one can come and go between two polls; the count stays until a
# delivery succeeds.
ok(wait_until($node, 'postgres',
		q{SELECT consecutive_failures >= 1 FROM outbox.destination WHERE name = 'flaky'}, $LIMIT),
	'three failures back the destination off');
$node->safe_psql('postgres', q{DELETE FROM public.failing});
$node->safe_psql('postgres', q{SELECT outbox.emit('flaky', 'e', '{"tag": "flaky-during"}')});
ok(wait_until($node, 'postgres',
		q{SELECT retry_at IS NULL OR retry_at <= now() FROM outbox.destination WHERE name = 'flaky'}, $LIMIT),
	'the backoff ends');
$node->safe_psql('postgres', q{SELECT outbox.emit('flaky', 'e', '{"tag": "flaky-after"}')});
ok(arrives('flaky-after'), 'a commit after a backoff ended wakes a dispatcher');
ok(wait_until($node, 'postgres',
		q{SELECT count(*) = 5 FROM public.got WHERE topic = 'flaky'}, $LIMIT),
	'the backed-off destination gets every event, those of the backoff included');

# 5. Coalescing under load skips nothing (G2): three sessions commit 300
# events each, one per transaction, at once; every event arrives exactly
# once, and the passes are fewer than the commits.
$before = passes();
my @runs;
for my $s (1 .. 3)
{
	push @runs, IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', "CALL public.burst('wanted', 'load$s', 300)" ],
		'>', \my $out, '2>', \my $err);
}
my $all_ok = 1;
$_->finish or $all_ok = 0 for @runs;
ok($all_ok, 'three sessions committed 900 events');
ok(wait_until($node, 'postgres',
		q{SELECT count(*) = 900 FROM public.got WHERE tag LIKE 'load%'}, 60),
	'all 900 are delivered');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT tag FROM public.got WHERE tag LIKE 'load%'
	                       GROUP BY tag HAVING count(*) > 1) d}),
	'0', 'none of them twice');
$spent = passes() - $before;
cmp_ok($spent, '<', 2 * 900, "passes coalesce commits ($spent passes for 900 commits, two dispatchers)");
note("passes for 900 commits: $spent");

# 6. Unsubscribing and dropping narrow the summary again: commits of those
# topics make no pass.
$node->safe_psql('postgres', q{
	SELECT outbox.unsubscribe(id) FROM outbox.subscriptions WHERE topic LIKE 'fresh-%';
	SELECT outbox.drop_destination('flaky');
});
ok(wait_until($node, 'postgres', q{SELECT outbox.wait_idle('10 seconds')}, 30),
	'the dispatchers are idle');
$before = passes();
spaced_commits(10, 'flaky', 'fresh-1');
$node->safe_psql('postgres', q{SELECT outbox.emit('wanted', 'e', '{"tag": "wanted-2"}')});
ok(arrives('wanted-2'), 'a wanted commit is delivered');
$spent = passes() - $before;
cmp_ok($spent, '<=', 8, "commits of dropped and unsubscribed topics cost no pass ($spent passes)");

# 7. A '*' subscription wants every topic.
$node->safe_psql('postgres', q{
	SELECT outbox.create_destination('everything', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('everything');
});
$session->query_safe(q{SELECT outbox.emit('anything', 'e', '{"tag": "star-1"}')});
ok(arrives('star-1'), "a commit of any topic wakes a dispatcher for a '*' subscription");
$session->quit;

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT tag FROM public.got GROUP BY tag, topic HAVING count(*) > 1) d}),
	'0', 'nothing delivered twice');

$node->stop;
done_testing();

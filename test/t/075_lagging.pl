# One paused or lagging destination never holds the whole log (G7, G12;
# issue 14 item 2).  The log is retired a partition at a time once every
# destination's position is past it; housekeeping moves on the positions
# that hold a retirable part (src/dispatch/skip.c):
#   (a) a paused destination owed nothing there (topic A subscriber, a log
#       of topic B; a tenant's '*' destination that may read only A) is
#       moved on at once, without waiting for outbox_saga.max_destination_lag:
#       the log is retired while both stay paused, with no dead letter;
#   (c) before that limit, outbox.stats shows who holds the log
#       (holds_log_since, pinned_events, pinned_bytes), the active
#       destination holding nothing;
#   (b) past the limit (set small by ALTER SYSTEM and a reload), the log is
#       retired all the same: what the paused destinations were owed is in
#       their own dead letters with last_error "skipped: destination lagged
#       past outbox_saga.max_destination_lag", counted in outbox.stats, with
#       a LOG line naming each one and the count; after replay_dead and
#       resume every event reaches the function handler exactly once, in
#       order per aggregate, also the events written after the skip;
#   (d) the same for a generation of a partition that is still being
#       written (the destination lags by more than three generations).
# The active destination receives every event exactly once throughout.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OutboxTest;

my $node = new_node('lagging',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE tenant LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO tenant;
	CREATE SCHEMA tenant AUTHORIZATION tenant;
	GRANT SELECT ON outbox.dead_letters TO tenant;
	CREATE TABLE public.got (seq bigserial, dest text, event_id uuid, topic text,
		aggregate_id text, n int);
	CREATE FUNCTION public.to_fa(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.got (dest, event_id, topic, aggregate_id, n)
	      VALUES ('fa', e.event_id, e.topic, e.aggregate_id, (e.payload->>'n')::int) $$;
	CREATE FUNCTION public.to_live(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.got (dest, event_id, topic, aggregate_id, n)
	      VALUES ('live', e.event_id, e.topic, e.aggregate_id, (e.payload->>'n')::int) $$;
	SELECT outbox.create_destination('live', 'function', '{"function": "public.to_live"}');
	SELECT outbox.subscribe('live');
	SELECT outbox.create_destination('fa', 'function', '{"function": "public.to_fa"}');
	SELECT outbox.subscribe('fa', 'a');
	SELECT outbox.pause_destination('fa');
});
# A tenant's destination of every topic it may read: its own topic a.
$node->safe_psql('postgres', q{
	SET ROLE tenant;
	SELECT outbox.create_topic('a');
	CREATE TABLE tenant.got (event_id uuid);
	CREATE FUNCTION tenant.sink(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO tenant.got VALUES (e.event_id) $$;
	SELECT outbox.create_destination('star', 'function', '{"function": "tenant.sink"}');
	SELECT outbox.subscribe('star');
	SELECT outbox.pause_destination('star');
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub count_events
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events');
}

# --- (a) A flood of topic b: neither paused destination is owed any of it.
$node->safe_psql('postgres', q{
	SELECT count(outbox.emit('b', 'e', jsonb_build_object('n', k), 'b-' || (k % 7)))
	  FROM generate_series(1, 3000) k;
});
is($node->safe_psql('postgres', q{SELECT outbox.wait_delivered('30 seconds', 'live')}),
	't', 'the active destination gets the flood');
ok( wait_until($node, 'postgres', 'SELECT count(*) = 0 FROM outbox.events', 60),
	'the log of topic b is retired while the topic-a destinations are paused, '
	  . 'well before outbox_saga.max_destination_lag (1 hour)');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(destination || '=' || paused || '/' || dead || '/' || pinned_events,
	                  ',' ORDER BY destination)
	  FROM outbox.stats}),
	'fa=true/0/0,live=false/0/0,star=true/0/0',
	'they stay paused, with no dead letter, and hold nothing');
ok( wait_until($node, 'postgres', q{
	SELECT pg_catalog.sum(pg_catalog.pg_stat_get_live_tuples(c.oid)) = 0
	  FROM pg_catalog.pg_class c
	 WHERE c.relnamespace = 'outbox'::regnamespace AND c.relname ~ '^events_p[0-3]$'}, 30),
	'the statistics system has counted the retirement');

# --- (c) Topic a events, owed to both paused destinations: they hold the log.
$node->safe_psql('postgres', q{
	SELECT count(outbox.emit('a', 'e', jsonb_build_object('n', k),
	                         'agg-' || (k % 3)))
	  FROM generate_series(1, 30) k;
	SELECT count(outbox.emit('b', 'e', jsonb_build_object('n', k)))
	  FROM generate_series(1, 20) k;
});
is($node->safe_psql('postgres', q{SELECT outbox.wait_delivered('30 seconds', 'live')}),
	't', 'the active destination gets them');
ok( wait_until($node, 'postgres', q{
	SELECT bool_and(CASE WHEN paused
	                     THEN pinned_events >= 50 AND pinned_bytes > 0
	                          AND holds_log_since < pg_catalog.now()
	                     ELSE pinned_events = 0 END)
	  FROM outbox.stats}, 30),
	'outbox.stats shows that the paused destinations hold the log, and the active one nothing');
is(count_events(), 50, 'within the limit the log waits for them');

# --- (b) Past the limit.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET outbox_saga.max_destination_lag = '2s';
	SELECT pg_reload_conf();
});
ok( wait_until($node, 'postgres', 'SELECT count(*) = 0 FROM outbox.events', 60),
	'past outbox_saga.max_destination_lag the log is retired');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(s, ',' ORDER BY s) FROM (
	SELECT destination || '=' || count(*) || '/' || count(DISTINCT event_id)
	       || '/' || bool_and(last_error = 'skipped: destination lagged past '
	                          || 'outbox_saga.max_destination_lag')
	       || '/' || bool_and(topic = 'a') || '/' || max(attempts) AS s
	  FROM outbox.dead_letters GROUP BY destination) x}),
	'fa=30/30/true/true/0,star=30/30/true/true/0',
	'each paused destination has what it was owed (topic a only) in its own dead letters');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(destination || '=' || dead || '/' || paused || '/'
	                  || COALESCE(last_error, ''), ',' ORDER BY destination)
	  FROM outbox.stats}),
	'fa=30/true/skipped: destination lagged past outbox_saga.max_destination_lag,'
	  . 'live=0/false/,'
	  . 'star=30/true/skipped: destination lagged past outbox_saga.max_destination_lag',
	'outbox.stats counts them and says why');
ok( wait_for_log_match($node,
		qr/destination "fa" lagged past outbox_saga\.max_destination_lag: 30 event\(s\) it was owed moved to its dead letters/,
		$log_offset),
	'a LOG line names the destination and the count');
ok( wait_for_log_match($node,
		qr/destination "star" lagged past outbox_saga\.max_destination_lag: 30 event\(s\)/,
		$log_offset),
	"and one for the tenant's destination");
is( $node->safe_psql('postgres', q{
	SET ROLE tenant; SELECT count(*) FROM outbox.dead_letters WHERE destination = 'star'}),
	'30', 'the tenant sees its dead letters');

# Back to a long limit (wait_idle: a dispatcher pass has reloaded it), then
# more events of the same aggregates, written after the skip.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET outbox_saga.max_destination_lag = '1h';
	SELECT pg_reload_conf();
});
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't',
	'reloaded');
$node->safe_psql('postgres', q{
	SELECT count(outbox.emit('a', 'e', jsonb_build_object('n', 30 + k),
	                         'agg-' || (k % 3)))
	  FROM generate_series(1, 15) k;
});

# Replay, then resume: the dead letters go first, each aggregate in order.
is( $node->safe_psql('postgres', q{
	SELECT outbox.replay_dead('fa'), outbox.resume_destination('fa')}),
	'30|', 'replay_dead requeues the skipped events (in the transaction that resumes)');
is($node->safe_psql('postgres', q{SELECT outbox.wait_delivered('30 seconds', 'fa')}),
	't', 'the resumed destination catches up');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) FROM public.got WHERE dest = 'fa'}),
	'45/45', 'every topic-a event reached its handler exactly once');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(aggregate_id || ':' || ok::text, ',' ORDER BY aggregate_id)
	  FROM (SELECT aggregate_id,
	               array_agg(n ORDER BY seq) = array_agg(n ORDER BY n) AS ok
	          FROM public.got WHERE dest = 'fa' GROUP BY aggregate_id) s}),
	'agg-0:true,agg-1:true,agg-2:true',
	'in order per aggregate, across the skip');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM public.got WHERE dest = 'fa' AND topic <> 'a'}),
	'0', 'nothing of topic b');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) FROM public.got WHERE dest = 'live'}),
	'3065/3065', 'the active destination got every event once');

# --- (d) Across generations: partition p1 holds generation 5 (topic a, owed
# to the paused destination) and generation 9, still being written (topic
# b).  Generation 5 goes once it has waited past the limit, while p1 keeps
# being written; its topic-a events go to the dead letters.
$node->safe_psql('postgres', q{
	SET ROLE tenant; SELECT outbox.drop_destination('star');
});
$node->safe_psql('postgres', q{
	SELECT outbox.pause_destination('fa');
	SELECT setval('outbox.events_id_seq', 5 * 65536);
	SELECT count(outbox.emit('a', 'e', jsonb_build_object('n', 45 + k), 'agg-' || (k % 3)))
	  FROM generate_series(1, 12) k;
	SELECT setval('outbox.events_id_seq', 9 * 65536);
	SELECT outbox.emit('b', 'e', '{"n": 0}');
});
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET outbox_saga.max_destination_lag = '2s';
	SELECT pg_reload_conf();
});
my $gen5_gone = 0;
my $b_written = 1;
for (my $deadline = time() + 60; time() < $deadline;)
{
	$node->safe_psql('postgres', q{SELECT outbox.emit('b', 'e', '{"n": 0}')});
	$b_written++;
	$gen5_gone = $node->safe_psql('postgres',
		'SELECT count(*) = 0 FROM outbox.events WHERE id >> 16 = 5') eq 't';
	last if $gen5_gone;
	usleep(200_000);
}
ok($gen5_gone, 'a generation that waited past the limit is retired while its partition is written');
# Usually by the generation's own DELETE (the partition, still written, keeps
# generation 9); if this machine was too slow to keep the partition's newest
# event younger than the limit, by the partition's TRUNCATE.
note 'generation 5 retired by '
  . ($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events_p1 WHERE id = 9 * 65536 + 1')
	eq '1' ? 'DELETE' : 'TRUNCATE');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || '/' || bool_and(id >> 16 = 5) || '/' || bool_and(topic = 'a')
	  FROM outbox.dead_letters WHERE destination = 'fa'}),
	'12/true/true', 'its topic-a events are in the dead letters of the paused destination');
ok( wait_for_log_match($node,
		qr/destination "fa" lagged past outbox_saga\.max_destination_lag: 12 event\(s\)/,
		$log_offset),
	'with a LOG line');
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET outbox_saga.max_destination_lag = '1h';
	SELECT pg_reload_conf();
});
is( $node->safe_psql('postgres', q{
	SELECT outbox.replay_dead('fa'), outbox.resume_destination('fa')}),
	'12|', 'replayed');
is($node->safe_psql('postgres', q{SELECT outbox.wait_delivered('30 seconds')}), 't',
	'delivered');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) || '/' || bool_and(topic = 'a')
	  FROM public.got WHERE dest = 'fa'}),
	'57/57/true', 'every topic-a event reached the handler exactly once');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(aggregate_id || ':' || ok::text, ',' ORDER BY aggregate_id)
	  FROM (SELECT aggregate_id,
	               array_agg(n ORDER BY seq) = array_agg(n ORDER BY n) AS ok
	          FROM public.got WHERE dest = 'fa' GROUP BY aggregate_id) s}),
	'agg-0:true,agg-1:true,agg-2:true', 'in order per aggregate');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) FROM public.got WHERE dest = 'live'}),
	(3065 + 12 + $b_written) . '/' . (3065 + 12 + $b_written),
	'the active destination got every event once');

$node->stop;
done_testing();

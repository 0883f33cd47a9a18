# Bounded storage without losing events (G7, G3).  The log is split into
# generations of 65536 ids kept in four partitions; the dispatcher's
# housekeeping retires a generation once every destination has consumed it
# and outbox_saga.retention has passed.  Generations are crossed here by
# moving the id sequence forward (ids may have gaps), so that a few events
# span seven generations, and a paused destination lags by more than three
# of them (a partition then holds an old and a new generation).  Checked:
#   - while a destination is paused nothing it still needs is retired;
#   - once it has caught up, nothing is retired before outbox_saga.retention;
#   - after a reload with retention 0, every consumed generation is retired
#     (the partitions of fully retired generations are emptied) and its
#     generation record deleted (the newest stays), only the open
#     generation remains, and every event reached both destinations;
#   - with no destination at all, the log is retired as well, and so are
#     the records.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $GEN = 65536;
my $PER_GEN = 10;

my $node = new_node('retention',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (dest text, event_id uuid, gen bigint);
	CREATE FUNCTION public.to_a(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.got VALUES ('a', e.event_id, e.id >> 16) $$;
	CREATE FUNCTION public.to_p(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ INSERT INTO public.got VALUES ('p', e.event_id, e.id >> 16) $$;
	SELECT outbox.create_destination('active', 'function', '{"function": "public.to_a"}');
	SELECT outbox.subscribe('active');
	SELECT outbox.create_destination('lagging', 'function', '{"function": "public.to_p"}');
	SELECT outbox.subscribe('lagging');
	SELECT outbox.pause_destination('lagging');
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# Housekeeping runs every few seconds and purges expired idempotency keys:
# a key that expires at once and then disappears marks one complete run.
my $barrier = 0;
sub housekeeping_ran
{
	my $key = 'barrier-' . ++$barrier;
	$node->safe_psql('postgres',
		"SELECT status FROM outbox.idempotency_key('test', '$key', NULL, '1 millisecond')");
	return wait_until($node, 'postgres',
		"SELECT count(*) = 0 FROM outbox.idempotency_keys WHERE key = '$key'", 30);
}

# Seven generations: 0..5 are closed, 6 stays open.
for my $g (0 .. 6)
{
	$node->safe_psql('postgres', qq{
		SELECT setval('outbox.events_id_seq', greatest($g * $GEN, 1));
		SELECT count(outbox.emit('t', 'e', jsonb_build_object('gen', $g), 'agg-' || k))
		  FROM generate_series(1, $PER_GEN) k;
	});
}
my $total = 7 * $PER_GEN;
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT id >> 16) || '/' || count(*) FROM outbox.events}),
	"7/$total", "$total events in seven generations");
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't', 'idle');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.got WHERE dest = 'a'}), $total,
	'the active destination has every event');

# The paused destination holds the log (three runs: one closes the
# generations, the next ones could retire them).
ok(housekeeping_ran() && housekeeping_ran() && housekeeping_ran(),
	'housekeeping ran three times');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'), $total,
	'nothing is retired while a paused destination still needs it');

# Caught up, but retention is one hour.
$node->safe_psql('postgres', q{SELECT outbox.resume_destination('lagging')});
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't', 'idle again');
is($node->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) FROM public.got WHERE dest = 'p'}),
	"$total/$total", 'the lagging destination gets every event, once, after resuming');
ok(housekeeping_ran() && housekeeping_ran(), 'housekeeping ran twice');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'), $total,
	'nothing is retired before outbox_saga.retention has passed');

# Retention 0, by reload: every closed and consumed generation goes.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET outbox_saga.retention = 0;
	SELECT pg_reload_conf();
});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 0 FROM outbox.events WHERE id >> 16 < 6}, 30),
	'retention 0 (reloaded): the consumed generations are retired');
ok(wait_until($node, 'postgres', 'SELECT count(*) = 0 FROM outbox.events', 30),
	'once consumed, the generation being written is retired too');
ok(housekeeping_ran(), 'housekeeping ran again');
# The log has no index on id: the generation records say which generations
# a partition may hold; a record goes with its events, the newest stays.
ok(wait_until($node, 'postgres', q{
	SELECT string_agg(gen::text, ',' ORDER BY gen) = '5' FROM outbox.generation}, 30),
	'the records of retired generations are deleted, the newest (5) stays')
  or diag($node->safe_psql('postgres', 'SELECT * FROM outbox.generation'));
is($node->safe_psql('postgres', q{
	SELECT string_agg(c.relname || '=' || pg_relation_size(c.oid), ',' ORDER BY c.relname)
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'outbox' AND c.relname IN ('events_p0', 'events_p1', 'events_p3')}),
	'events_p0=0,events_p1=0,events_p3=0',
	'partitions holding only retired generations are emptied (truncated)');
# Old ticks go: every tick there is now is deleted by some later round, once
# the destinations have passed it.  (A count right after one round depends
# on timing: an idle dispatcher takes a tick per poll when the snapshot moved,
# and a round skips the deletion when a tick being written holds the lock.)
my $newest_tick = $node->safe_psql('postgres', 'SELECT max(id) FROM outbox.tick');
ok(wait_until($node, 'postgres', qq{
	SELECT count(*) = 0 FROM outbox.tick WHERE id <= $newest_tick}, 30),
	'old ticks are deleted');

# Still correct afterwards: new events flow to both.
$node->safe_psql('postgres', q{SELECT outbox.emit('t', 'e', '{"gen": 6}', 'agg-1')});
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't', 'idle');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE dest = 'a') || '/' || count(*) FILTER (WHERE dest = 'p')
	  || '/' || (count(*) - count(DISTINCT (dest, event_id)))
	  FROM public.got}),
	($total + 1) . '/' . ($total + 1) . '/0',
	'after retirement both destinations keep receiving every event exactly once');

# Without any destination the log is retired all the same.
$node->safe_psql('postgres', q{
	SELECT outbox.drop_destination('active');
	SELECT outbox.drop_destination('lagging');
});
for my $g (7 .. 9)
{
	$node->safe_psql('postgres', qq{
		SELECT setval('outbox.events_id_seq', $g * $GEN);
		SELECT count(outbox.emit('t', 'e', jsonb_build_object('gen', $g)))
		  FROM generate_series(1, $PER_GEN);
	});
}
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 0 FROM outbox.events WHERE id >> 16 < 9}, 30),
	'with no destination at all, closed generations are retired too');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'), $PER_GEN,
	'without a destination, the generation being written stays readable');
ok(wait_until($node, 'postgres', q{
	SELECT string_agg(gen::text, ',' ORDER BY gen) = '8' FROM outbox.generation}, 30),
	'records: 6 and 7 go with their partitions, 5 (no events left) from the partition being written')
  or diag($node->safe_psql('postgres', 'SELECT * FROM outbox.generation'));

$node->stop;
done_testing();

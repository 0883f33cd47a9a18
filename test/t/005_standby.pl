# Failover (G3, SPEC 4): nothing dispatches on a hot standby (no launcher,
# no dispatcher, no position moves there), and after promotion the new
# primary carries on from the replicated position: every event committed on
# the old primary is delivered exactly once - the ones delivered before the
# failover are not delivered again, the ones that waited are delivered.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $N_BEFORE = 200;
my $N_WAITING = 1000;

my $primary = new_node('primary',
	init => { allows_streaming => 1 },
	conf => "outbox_saga.poll_interval = '100ms'\n");
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (event_id uuid NOT NULL, k int, on_standby boolean);
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.got VALUES (e.event_id, (e.payload->>'k')::int, pg_is_in_recovery());
	END $$;
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('sink');
});
ok(wait_for_dispatcher($primary, 'postgres'), 'the primary has a dispatcher');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# Some events are delivered on the primary before the failover.
$primary->safe_psql('postgres', qq{
	SELECT count(outbox.emit('orders', 'before', jsonb_build_object('k', k), 'a' || (k % 7)))
	  FROM generate_series(1, $N_BEFORE) k});
is($primary->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't',
	'the primary delivered the first events');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM public.got'), $N_BEFORE,
	"$N_BEFORE events delivered on the primary");

# The rest waits: the destination is paused on the primary.
$primary->safe_psql('postgres', q{SELECT outbox.pause_destination('sink')});
$primary->safe_psql('postgres', qq{
	SELECT count(outbox.emit('orders', 'waiting', jsonb_build_object('k', k), 'a' || (k % 7)))
	  FROM generate_series($N_BEFORE + 1, $N_BEFORE + $N_WAITING) k});
is($primary->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't',
	'the primary is idle with the destination paused');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM public.got'), $N_BEFORE,
	'nothing more delivered while paused');
$primary->wait_for_catchup($standby);

# The standby has the events and the state, and runs no worker.
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM outbox.events WHERE event_type = 'waiting'}),
	$N_WAITING, 'the standby has the waiting events');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type IN ('outbox_saga dispatcher', 'outbox_saga launcher')}),
	'0', 'no outbox_saga launcher or dispatcher runs on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM outbox.workers'), '0',
	'outbox.workers on the standby is empty');
like($standby->safe_psql('postgres',
		q{SELECT last_error FROM outbox.stats WHERE destination = 'sink'}),
	qr/dispatch is off/, 'outbox.stats on the standby says that dispatch is off');
is($standby->safe_psql('postgres', q{SELECT outbox.wait_idle('200 milliseconds')}), 'f',
	'wait_idle on the standby returns false');

# Failover: the primary dies, the standby is promoted.
$primary->stop('immediate');
$standby->promote;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 'f', 'the standby is promoted');
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'outbox_saga launcher'}),
	'the launcher starts after promotion');
ok(wait_for_dispatcher($standby, 'postgres'), 'the new primary has a dispatcher');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM public.got'), $N_BEFORE,
	'the paused destination still waits on the new primary');

$standby->safe_psql('postgres', q{SELECT outbox.resume_destination('sink')});
ok($standby->poll_query_until('postgres',
		'SELECT count(*) >= ' . ($N_BEFORE + $N_WAITING) . ' FROM public.got'),
	'resumed on the new primary: the waiting events arrive');
is($standby->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't',
	'the new primary is idle');
is($standby->safe_psql('postgres', q{
	SELECT count(*) || '/' || count(DISTINCT event_id) || '/' || min(k) || '/' || max(k)
	  FROM public.got}),
	($N_BEFORE + $N_WAITING) . '/' . ($N_BEFORE + $N_WAITING) . '/1/' . ($N_BEFORE + $N_WAITING),
	'every event delivered exactly once across the failover, nothing lost');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM public.got g JOIN outbox.events e USING (event_id)
	 WHERE e.event_type = 'waiting' AND g.on_standby IS NOT FALSE}),
	'0', 'the waiting events were delivered by the promoted server');

# New events on the new primary flow as usual.
$standby->safe_psql('postgres',
	q{SELECT outbox.emit('orders', 'after', '{"k": 0}', 'a0')});
ok($standby->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM public.got WHERE k = 0}),
	'new events are delivered on the new primary');
is($standby->safe_psql('postgres', q{
	SELECT delivered_total || '/' || dead || '/' || retrying
	  FROM outbox.stats WHERE destination = 'sink'}),
	($N_BEFORE + $N_WAITING + 1) . '/0/0',
	'outbox.stats on the new primary counts everything once');

$standby->stop;
done_testing();

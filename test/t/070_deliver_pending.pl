# outbox.deliver_pending() (issue 15 item 3) where pg_regress cannot look:
#  - without any dispatcher (library not preloaded) it takes the tick itself,
#    and events its own transaction writes before and after the call are
#    delivered once it has committed (the tick counts it as in progress);
#  - with the dispatcher: one deliverer at a time.  A call waits for the
#    dispatcher's batch that holds the destination (no double delivery);
#    while a caller's open transaction holds the destination, the
#    dispatcher skips it, and only it: other destinations flow and ticks
#    go on.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;

my $node = new_node('deliver_pending', preload => 0);
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (dest text, n int);
	CREATE FUNCTION public.rec(e outbox.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO got VALUES (e.headers->>'dest', (e.payload->>'n')::int)
	$$;
	CREATE FUNCTION public.slow(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(2);
		INSERT INTO got VALUES ('slow', (e.payload->>'n')::int);
	END $$;
	SELECT outbox.create_destination('plain', 'function', '{"function": "public.rec"}');
	SELECT outbox.subscribe('plain', 'p');
});

# --- No dispatcher: the call takes the tick.
is(sql(q{SELECT outbox.dispatch_status() IS NOT NULL}), 't', 'not preloaded: dispatch is off');
sql(q{SELECT outbox.emit('p', 'e', '{"n": 1}', headers => '{"dest": "plain"}')});
is(sql(q{SELECT outbox.deliver_pending('plain')}), '1', 'delivered without a dispatcher');
is(sql(q{
	BEGIN;
	SELECT count(outbox.emit('p', 'e', '{"n": 2}', headers => '{"dest": "plain"}'));
	SELECT outbox.deliver_pending('plain');
	SELECT count(outbox.emit('p', 'e', '{"n": 3}', headers => '{"dest": "plain"}'));
	COMMIT;
}), "1\n0\n1", 'events of the open transaction are not delivered by its own call');
is(sql(q{SELECT outbox.deliver_pending('plain')}), '2',
	'after the commit, the events written before and after the call are delivered');
is(sql(q{SELECT string_agg(n::text, ',' ORDER BY n) FROM got WHERE dest = 'plain'}), '1,2,3',
	'each once');
is(sql(q{SELECT count(*) FROM outbox.pending('plain')}), '0', 'nothing pending');

# --- With the dispatcher.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'outbox_saga'\n");
$node->restart;
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');
sql(q{
	SELECT outbox.create_destination('slow', 'function', '{"function": "public.slow"}');
	SELECT outbox.subscribe('slow', 's');
	SELECT outbox.create_destination('other', 'function', '{"function": "public.rec"}');
	SELECT outbox.subscribe('other', 'o');
});

# The dispatcher's batch holds the destination: the call waits for it.
sql(q{SELECT outbox.emit('s', 'e', '{"n": 1}')});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND wait_event = 'PgSleep'}, 30),
	'the dispatcher runs the slow handler');
my $t0 = time;
is(sql(q{SELECT outbox.deliver_pending('slow')}), '0',
	'deliver_pending waited for the dispatcher\'s batch, then found nothing left');
ok(time - $t0 > 0.5, 'it waited for the batch (' . sprintf('%.1f', time - $t0) . ' s)');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'slow'}), '1', 'delivered once');

# A caller's open transaction holds the destination: the dispatcher skips
# it until the commit; other destinations flow meanwhile.
my $s = $node->background_psql('postgres');
$s->query_safe('BEGIN');
is($s->query_safe(q{SELECT outbox.deliver_pending('plain')}), '0', 'the caller holds plain');
sql(q{SELECT outbox.emit('p', 'e', '{"n": 4}', headers => '{"dest": "plain"}')});
sql(q{SELECT outbox.emit('o', 'e', '{"n": 1}', headers => '{"dest": "other"}')});
is(sql(q{SELECT outbox.wait_delivered('30 seconds', 'other')}), 't',
	'another destination is delivered while a caller holds plain');
is(sql(q{SELECT outbox.wait_delivered('1 second', 'plain')}), 'f',
	'plain waits for the caller');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'plain' AND n = 4}), '0', 'not delivered meanwhile');
$s->query_safe('COMMIT');
$s->quit;
is(sql(q{SELECT outbox.wait_delivered('30 seconds', 'plain')}), 't',
	'after the commit the dispatcher delivers it');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'plain' AND n = 4}), '1', 'once');

$node->stop;
done_testing();

# NATS JetStream destinations (SPEC 3.2 "nats") against a real nats-server
# -js on 127.0.0.1: a delivery in full (subject placeholders, Nats-Msg-Id,
# headers, data), order per aggregate, a missing stream visible in
# outbox.stats and then delivered once the stream exists, a payload over
# max_payload dead-lettered, and deduplication by Nats-Msg-Id when the
# dispatcher is killed after publishing but before recording the delivery.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use NatsServer;

# max_payload 64 kB, so that an event can be too large for the server.
my $ns = NatsServer->new(conf => qq{listen: 127.0.0.1:__PORT__
jetstream { store_dir: "__STORE__" }
max_payload: 65536
});
my $url = $ns->url;
NatsServer::tool($url, 'add-stream', 'SHOP', 'shop.>');

# Retention keeps delivered events in the log: the checks read them there.
my $node = new_node('nats_delivery',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n"
	  . "restart_after_crash = on\n"
	  . "log_min_messages = info\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_sql
{
	my ($query, $what) = @_;
	ok(wait_until($node, 'postgres', $query, 60), $what);
}

# --- A delivery, in full ---------------------------------------------------
sql(qq{SELECT outbox.create_destination('shop', 'nats',
	'{"url": "$url", "subject": "shop.{topic}.{event_type}", "timeout": "5s",
	  "backoff_base": "100ms", "backoff_max": "500ms"}');
	SELECT outbox.subscribe('shop', 'orders')});

sql(q{SELECT outbox.emit('orders', 'created', '{"n": 1, "s": "é \" \\\\"}', 'o-1',
        '{"trace": "abc", "Nats-Expected-Stream": "NOPE", "bad name": "x"}');
      SELECT outbox.emit('orders', 'paid', '{"n": 2}', 'o-1');
      SELECT outbox.emit('orders', 'noted', '[1, 2.5, null]', NULL)});
is(NatsServer::wait_count($url, 'SHOP', 3), 3, 'three messages in the stream');
wait_sql(q{SELECT delivered_total = 3 FROM outbox.stats WHERE destination = 'shop'},
	'outbox.stats counts three deliveries');

my @msgs = NatsServer::dump($url, 'SHOP');
my @ids = split /\n/, sql(q{SELECT event_id FROM outbox.events WHERE topic = 'orders' ORDER BY id});
my %by_id = map { $_->{headers}{'Nats-Msg-Id'} => $_ } @msgs;
is_deeply([ sort keys %by_id ], [ sort @ids ], 'Nats-Msg-Id is the event_id');
is_deeply([ map { $_->{headers}{'Nats-Msg-Id'} } grep { ($_->{headers}{aggregate_id} // '') eq 'o-1' } @msgs ],
	[ @ids[ 0, 1 ] ], 'the events of aggregate o-1 are stored in commit order');
my ($m1, $m2, $m3) = @by_id{@ids};
is($m1->{headers}{id}, $ids[0], 'header id is the event_id');
is_deeply([ map { $_->{subject} } $m1, $m2, $m3 ],
	[ 'shop.orders.created', 'shop.orders.paid', 'shop.orders.noted' ],
	'the subject has {topic} and {event_type} replaced');
is_deeply([ map { $_->{headers}{type} } $m1, $m2, $m3 ], [qw(created paid noted)], 'header type');
is($m1->{headers}{topic}, 'orders', 'header topic');
is($m1->{headers}{aggregate_id}, 'o-1', 'header aggregate_id');
ok(!exists $m3->{headers}{aggregate_id}, 'no aggregate_id header without an aggregate');
is($m1->{headers}{trace}, 'abc', "the event's headers are NATS headers");
ok(!exists $m1->{headers}{'Nats-Expected-Stream'}, 'event headers named Nats-* are left out');
ok(!exists $m1->{headers}{'bad name'}, 'event headers with blanks are left out');
is_deeply($m1->{data}, { n => 1, s => "\x{e9} \" \\" }, 'the data is the payload');
is_deeply($m3->{data}, [ 1, 2.5, undef ], 'a non-object payload');

# --- Order per aggregate, many aggregates interleaved --------------------------
sql(q{SELECT outbox.emit('orders', 'step', pg_catalog.jsonb_build_object('agg', a, 'seq', s), 'agg-' || a)
        FROM generate_series(1, 50) s, generate_series(1, 20) a ORDER BY s, a});
is(NatsServer::wait_count($url, 'SHOP', 1003), 1003, 'a thousand more messages');
@msgs = NatsServer::dump($url, 'SHOP');
my %last;
my $in_order = 1;
for my $m (grep { $_->{headers}{type} eq 'step' } @msgs)
{
	my ($a, $s) = ($m->{data}{agg}, $m->{data}{seq});
	$in_order = 0 if ($last{$a} // 0) != $s - 1;
	$last{$a} = $s;
}
ok($in_order, 'each aggregate arrives in commit order, without gaps');
is(scalar(keys %last), 20, 'every aggregate arrived');
wait_sql(q{SELECT delivered_total = 1003 AND dead = 0 AND retrying = 0
             FROM outbox.stats WHERE destination = 'shop'}, 'all recorded as delivered');

# --- A missing stream: a clear error, then delivery once it exists ---------
sql(qq{SELECT outbox.create_destination('audit', 'nats',
	'{"url": "$url", "subject": "audit.{topic}", "timeout": "2s",
	  "backoff_base": "100ms", "backoff_max": "300ms"}');
	SELECT outbox.subscribe('audit', 'ledger');
	SELECT outbox.emit('ledger', 'posted', '{"k": 1}', 'l-1');
	SELECT outbox.emit('ledger', 'posted', '{"k": 2}', 'l-1')});
wait_sql(q{SELECT last_error LIKE 'no JetStream stream for subject "audit.ledger"%'
             FROM outbox.stats WHERE destination = 'audit'},
	'a missing stream is named in outbox.stats');
NatsServer::tool($url, 'add-stream', 'AUDIT', 'audit.>');
is(NatsServer::wait_count($url, 'AUDIT', 2), 2, 'delivered once the stream exists');
wait_sql(q{SELECT delivered_total = 2 AND retrying = 0 FROM outbox.stats WHERE destination = 'audit'},
	'and recorded');
is_deeply([ map { $_->{data}{k} } NatsServer::dump($url, 'AUDIT') ], [ 1, 2 ],
	'still in order after retries');

# --- A payload over max_payload: a dead letter -----------------------------
sql(q{SELECT outbox.emit('ledger', 'huge', pg_catalog.jsonb_build_object('x', repeat('x', 100000)), NULL)});
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters
            WHERE destination = 'audit' AND last_error LIKE '%max_payload%'},
	'an event over max_payload is a dead letter');

# --- Dedup by Nats-Msg-Id after a forced redelivery --------------------------
# Hold the recording of the batch (a trigger on outbox.destination waits for
# an advisory lock the test holds, only when shop's delivered_total grows:
# the batch reads and publishes, its recording waits, every other update of
# a destination goes through), see the messages stored, kill the
# dispatcher: after the crash restart it publishes the batch again, and the
# stream keeps one message per event.  (A LOCK TABLE on outbox.destination
# held up every update, and a pass that first moved a cursor over an empty
# window never reached the publish: a flaky failure under load.)
sql(q{CREATE FUNCTION public.hold_shop_recording() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.name = 'shop' AND NEW.delivered_total > OLD.delivered_total THEN
			PERFORM pg_catalog.pg_advisory_lock(30030);
			PERFORM pg_catalog.pg_advisory_unlock(30030);
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER hold_shop_recording BEFORE UPDATE ON outbox.destination
		FOR EACH ROW EXECUTE FUNCTION public.hold_shop_recording()});
my $before = NatsServer::tool($url, 'count', 'SHOP') + 0;
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{SELECT pg_catalog.pg_advisory_lock(30030)});
sql(q{SELECT outbox.emit('orders', 'again', pg_catalog.jsonb_build_object('i', i), 'r-' || (i % 3))
        FROM generate_series(1, 30) i});
is(NatsServer::wait_count($url, 'SHOP', $before + 30), $before + 30,
	'published while the recording waits');
my $pid = dispatcher_pid($node, 'postgres');
ok($pid, 'the dispatcher runs');
my $log_offset = -s $node->logfile;
ok(kill('KILL', $pid), 'the dispatcher is killed with SIGKILL before it records');
ok(wait_for_log_match($node,
		qr/all server processes terminated; reinitializing/, $log_offset),
	'the postmaster reinitialized (crash recovery)');
eval { $locker->quit; };
ok(wait_for_dispatcher($node, 'postgres'), 'a new dispatcher runs');
ok($node->poll_query_until('postgres', q{SELECT outbox.wait_idle('30 seconds')}),
	'the batch is delivered again');
sql(q{DROP TRIGGER hold_shop_recording ON outbox.destination;
	DROP FUNCTION public.hold_shop_recording()});
is(NatsServer::tool($url, 'count', 'SHOP') + 0, $before + 30,
	'the stream dropped the duplicates (Nats-Msg-Id)');
my %seen;
$seen{ $_->{headers}{'Nats-Msg-Id'} }++ for NatsServer::dump($url, 'SHOP');
is(scalar(grep { $_ > 1 } values %seen), 0, 'one message per event_id');

# --- Secrets are write-only ----------------------------------------------------
sql(qq{SELECT outbox.create_destination('secure', 'nats',
	'{"url": "$url", "subject": "x.y", "user": "u", "password": "pw-s3cret"}')});
is(sql(q{SELECT config->>'password' FROM outbox.destinations WHERE name = 'secure'}),
	'********', 'the password is masked in outbox.destinations');

$node->stop;
$ns->stop;
unlike(slurp_file($node->logfile), qr/pw-s3cret/, 'the password never reaches the server log');
done_testing();

# A nats destination while its server goes away mid-stream: the error is
# visible in outbox.stats, events are retried with backoff, and after the
# server comes back (same port, same JetStream store) every event is in the
# stream exactly once, each aggregate in commit order.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use NatsServer;

my $ns = NatsServer->new;
my $url = $ns->url;
NatsServer::tool($url, 'add-stream', 'FLOW', 'flow.>');

my $node = new_node('nats_outage',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(qq{SELECT outbox.create_destination('flow', 'nats',
	'{"url": "$url", "subject": "flow.{topic}", "timeout": "2s",
	  "backoff_base": "100ms", "backoff_max": "1s", "max_attempts": 1000}');
	SELECT outbox.subscribe('flow', 'ticks')});

# 3000 events of 30 aggregates; the server is killed once some arrived.
sql(q{SELECT outbox.emit('ticks', 'tick', pg_catalog.jsonb_build_object('a', a, 's', s), 'a' || a)
        FROM generate_series(1, 100) s, generate_series(1, 30) a ORDER BY s, a});
ok(NatsServer::wait_count($url, 'FLOW', 1) >= 1, 'delivery started');
$ns->stop(kill9 => 1);
sql(q{SELECT outbox.emit('ticks', 'tick', pg_catalog.jsonb_build_object('a', a, 's', s), 'a' || a)
        FROM generate_series(101, 200) s, generate_series(1, 30) a ORDER BY s, a});
ok(wait_until($node, 'postgres', q{SELECT last_error LIKE '%not connected to the NATS server%'
                                     FROM outbox.stats WHERE destination = 'flow'}, 60),
	'outbox.stats shows that the server is gone');
ok(wait_until($node, 'postgres', q{SELECT pending > 0 FROM outbox.stats WHERE destination = 'flow'}, 30),
	'events wait');
is(sql(q{SELECT dead FROM outbox.stats WHERE destination = 'flow'}), '0', 'nothing is dead');

$ns->start;
is(NatsServer::wait_count($url, 'FLOW', 6000, 120), 6000, 'every event arrives after the restart');
ok(wait_until($node, 'postgres', q{SELECT pending = 0 AND retrying = 0 FROM outbox.stats WHERE destination = 'flow'}, 60),
	'and is recorded as delivered');
is(NatsServer::tool($url, 'count', 'FLOW') + 0, 6000, 'exactly once in the stream');

my (%last, %seen);
my $in_order = 1;
for my $m (NatsServer::dump($url, 'FLOW'))
{
	$seen{ $m->{headers}{'Nats-Msg-Id'} }++;
	my ($a, $s) = ($m->{data}{a}, $m->{data}{s});
	$in_order = 0 if ($last{$a} // 0) != $s - 1;
	$last{$a} = $s;
}
is(scalar(keys %seen), 6000, 'one message per event_id');
ok($in_order, 'each aggregate in commit order, without gaps');

$node->stop;
$ns->stop;
done_testing();

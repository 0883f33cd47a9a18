# A nats destination on a 3-node JetStream cluster on loopback, with a
# stream of 3 replicas: deliveries go on while one node is down, with every
# event stored once and each aggregate in order.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OutboxTest;
use NatsServer;

# The cluster needs a meta leader before a stream can be created.  A
# cluster that has none after 60 s (once in CI: the servers' logs were gone
# with the test's directory) is said so, with the tails of its logs, and
# replaced by a new one on new ports, once.
my (@nodes, $urls, $created);
for my $attempt (1, 2)
{
	@nodes = NatsServer->cluster(3);
	$urls = join(',', map { $_->url } @nodes);
	my $deadline = time() + 60;
	while (!defined($created = NatsServer::try_tool($urls, 'add-stream', 'CL', 'cl.>', 3))
		&& time() < $deadline)
	{
		usleep(200_000);
	}
	last if defined $created;
	diag("attempt $attempt: no stream of 3 replicas after 60 s\n"
		  . join("\n", map { $_->log_tail } @nodes));
	$_->stop for @nodes;
}
ok(defined $created, 'a stream with 3 replicas exists');

my $node = new_node('nats_cluster',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(qq{SELECT outbox.create_destination('cl', 'nats',
	'{"url": "$urls", "subject": "cl.{event_type}", "stream": "CL", "timeout": "3s",
	  "backoff_base": "100ms", "backoff_max": "1s", "max_attempts": 1000}');
	SELECT outbox.subscribe('cl', 'jobs')});
sql(q{SELECT outbox.emit('jobs', 'run', pg_catalog.jsonb_build_object('a', a, 's', s), 'j' || a)
        FROM generate_series(1, 50) s, generate_series(1, 10) a ORDER BY s, a});
is(NatsServer::wait_count($urls, 'CL', 500), 500, 'delivered to the cluster');

$nodes[0]->stop;
my $rest = join(',', map { $_->url } @nodes[ 1, 2 ]);
sql(q{SELECT outbox.emit('jobs', 'run', pg_catalog.jsonb_build_object('a', a, 's', s), 'j' || a)
        FROM generate_series(51, 100) s, generate_series(1, 10) a ORDER BY s, a});
is(NatsServer::wait_count($rest, 'CL', 1000, 120), 1000, 'delivered with one node down');
ok(wait_until($node, 'postgres', q{SELECT pending = 0 AND retrying = 0 AND dead = 0
                                     FROM outbox.stats WHERE destination = 'cl'}, 60),
	'all recorded as delivered');
my (%last, %seen);
my $in_order = 1;
for my $m (NatsServer::dump($rest, 'CL'))
{
	$seen{ $m->{headers}{'Nats-Msg-Id'} }++;
	my ($a, $s) = ($m->{data}{a}, $m->{data}{s});
	$in_order = 0 if ($last{$a} // 0) != $s - 1;
	$last{$a} = $s;
}
is(scalar(keys %seen), 1000, 'one message per event_id');
ok($in_order, 'each aggregate in commit order, without gaps');

$node->stop;
$_->stop for @nodes;
done_testing();

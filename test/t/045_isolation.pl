# One slow endpoint must never stall a database (G3, G4, G8; issue 11).
#
# Two dispatchers per database (outbox_saga.workers_per_database = 2).  An
# http destination points at a listener of this test that accepts every
# connection and never answers (the destination's timeout is longer than
# the test), and a nats destination at a nats-server that was stopped.
# Next to them, on the same topic, a function destination and sagas:
#   - every function delivery and every saga completes while the hung
#     request is still open (asserted on that ordering: the listener still
#     holds the dispatcher's unanswered request when they are done);
#   - outbox.workers shows which worker serves the hung destination and
#     that worker 0 is free;
#   - once the endpoint and the server recover, the hung destinations
#     deliver everything: nothing lost, each aggregate in order.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;
use NatsServer;

my $ns = NatsServer->new;
my $nats_url = $ns->url;
NatsServer::tool($nats_url, 'add-stream', 'ISO', 'iso.>');
$ns->stop;

# The hung endpoint: accepts, reads, never answers.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1)
  or die "listen: $!";
my @held;					# accepted connections, kept open

# Accept what is waiting and read what arrived; returns how many
# connections hold a request that was never answered.
sub pump_hung
{
	my $sel = IO::Select->new($listener);
	while ($sel->can_read(0))
	{
		my $c = $listener->accept or last;
		push @held, { sock => $c, data => '' };
	}
	for my $h (@held)
	{
		my $s = IO::Select->new($h->{sock});
		while ($s->can_read(0))
		{
			my $n = sysread($h->{sock}, my $buf, 65536);
			if (!$n) { $h->{closed} = 1; last; }
			$h->{data} .= $buf;
		}
	}
	return scalar grep { !$_->{closed} && $_->{data} =~ /^POST /m } @held;
}

my $node = new_node('isolation', workers => 2,
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'the dispatchers run');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(qq{
	CREATE TABLE got (id bigserial, agg text, n int, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION handle(e outbox.events) RETURNS void LANGUAGE sql AS
	  \$\$ INSERT INTO public.got (agg, n) VALUES (e.aggregate_id, (e.payload->>'n')::int) \$\$;
	CREATE TABLE steps (k int);
	CREATE FUNCTION step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
	  \$\$ INSERT INTO public.steps VALUES ((ctx->'input'->>'k')::int) RETURNING '{}'::jsonb \$\$;
	SELECT outbox.create_destination('hung', 'http',
	  '{"url": "http://127.0.0.1:$port/hook", "timeout": "10min",
	    "backoff_base": "100ms", "backoff_max": "500ms", "max_attempts": 1000}');
	SELECT outbox.subscribe('hung', 'orders');
	SELECT outbox.create_destination('bus', 'nats',
	  '{"url": "$nats_url", "subject": "iso.{topic}", "timeout": "5s",
	    "backoff_base": "100ms", "backoff_max": "500ms", "max_attempts": 1000}');
	SELECT outbox.subscribe('bus', 'orders');
	SELECT outbox.create_destination('fn', 'function', '{"function": "public.handle"}');
	SELECT outbox.subscribe('fn', 'orders');
	SELECT saga.define('iso', '[{"name": "one", "action": {"function": "public.step"}},
	                            {"name": "two", "action": {"function": "public.step"}}]');
});

# The hung request goes out first.
sql(q{SELECT outbox.emit('orders', 'Placed', '{"n": 0}', 'first')});
ok(wait_until_perl(sub { pump_hung() >= 1 }, 60), 'the hung endpoint holds a request');

# Then the work that must not wait for it.
sql(q{SELECT outbox.emit('orders', 'Placed', jsonb_build_object('n', g), 'agg-' || (g % 5))
        FROM generate_series(1, 200) g});
sql(q{SELECT saga.start('iso', jsonb_build_object('k', g)) FROM generate_series(1, 20) g});
ok(wait_until($node, 'postgres', q{SELECT count(*) = 201 FROM got}, 60),
	'every function delivery completes');
ok(wait_until($node, 'postgres',
	q{SELECT count(*) = 20 FROM saga.instances WHERE definition = 'iso' AND status = 'completed'}, 60),
	'every saga completes');
is(pump_hung(), 1, 'while the hung request is still open');
is(scalar(grep { $_->{closed} } @held), 0, 'and the dispatcher has not given up on it');

like(sql(q{SELECT string_agg(worker || ':' || coalesce(destination, '-'), ',' ORDER BY worker)
             FROM outbox.workers WHERE kind = 'dispatcher'}),
	qr/^0:-,1:hung$/, 'outbox.workers: worker 1 serves the hung destination, worker 0 is free');
is(sql(q{SELECT doing FROM outbox.workers WHERE kind = 'dispatcher' AND worker = 1}),
	'delivering', 'outbox.workers says what worker 1 does');

# In order per aggregate at the function destination.
is(sql(q{SELECT count(*) FROM (SELECT agg, n, lag(n) OVER (PARTITION BY agg ORDER BY id) p
                                 FROM got WHERE agg LIKE 'agg-%') x WHERE p > n}),
	'0', 'function deliveries in order per aggregate');

# --- Recovery: the endpoint answers, the server is back ------------------
$_->{sock}->close for @held;
$listener->close;
my $receiver = WebhookReceiver->new(port => $port);
$ns->start;
ok($receiver->wait_for(sub { (grep { $_->{path} eq '/hook' } @_) >= 201 }, 120),
	'the hung destination delivers everything once its endpoint answers');
is(NatsServer::wait_count($nats_url, 'ISO', 201, 120), 201,
	'the nats destination delivers everything once its server is back');
ok(wait_until($node, 'postgres', q{SELECT bool_and(pending = 0 AND retrying = 0 AND dead = 0)
                                     FROM outbox.stats}, 60),
	'nothing pending, retrying or dead');

my (%last, %ids);
my $in_order = 1;
for my $r (grep { $_->{path} eq "/hook" } $receiver->requests)
{
	my $body = JSON::PP::decode_json($r->{body});
	$ids{ $r->{webhook_id} }++;
	my $agg = $body->{aggregate_id} // '';
	next unless $agg =~ /^agg-/;
	my $n = $body->{data}{n};
	$in_order = 0 if defined $last{$agg} && $last{$agg} > $n;
	$last{$agg} = $n;
}
is(scalar(keys %ids), 201, 'every event reached the endpoint');
ok($in_order, 'the hung destination delivered each aggregate in order');

$receiver->stop;
$node->stop;
$ns->stop;
done_testing();

# Poll a Perl condition (never a bare sleep without a condition).
sub wait_until_perl
{
	my ($cond, $seconds) = @_;
	my $end = time() + $seconds;
	while (time() < $end)
	{
		return 1 if $cond->();
		select(undef, undef, undef, 0.05);
	}
	return 0;
}

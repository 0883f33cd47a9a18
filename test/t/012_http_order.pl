# Order per aggregate with many requests in flight (G4): an http
# destination with concurrency 32 delivers 20 aggregates of 10 events each
# and one slow aggregate whose every request the receiver answers after
# 300 ms.  Events of the other aggregates overtake the slow one; the slow
# aggregate's events arrive one at a time (never two in flight) and in
# commit order; so do every other aggregate's.  Nothing is lost or sent
# twice.  An unordered destination lets events of one aggregate overlap.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;

my $node = new_node('http_order',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;
my $receiver = WebhookReceiver->new;
$receiver->rules([ { aggregate_id => 'slow', delay => 0.3 } ]);

$node->safe_psql('postgres', sprintf(q{
	CREATE EXTENSION outbox_saga;
	SELECT outbox.create_destination('ordered', 'http', '{"url": "%s", "concurrency": 32}');
	SELECT outbox.subscribe('ordered', 'ordered');
	SELECT outbox.create_destination('unordered', 'http',
	       '{"url": "%s", "concurrency": 32, "ordered": false}');
	SELECT outbox.subscribe('unordered', 'unordered');
}, $receiver->url('/ordered'), $receiver->url('/unordered')));
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# One transaction: 210 events, the slow aggregate's spread among the others.
$node->safe_psql('postgres', q{
	SELECT outbox.emit('ordered', 'step', jsonb_build_object('n', g),
	                   CASE WHEN g % 21 = 0 THEN 'slow' ELSE 'agg-' || (g % 20) END)
	  FROM generate_series(1, 210) g});
ok($receiver->wait_for(sub { (grep { $_->{path} eq '/ordered' } @_) >= 210 }, 60),
	'210 webhooks arrive');
ok($node->poll_query_until('postgres', q{
	SELECT delivered_total = 210 FROM outbox.stats WHERE destination = 'ordered'}),
	'outbox.stats counts 210 delivered');

my @reqs = grep { $_->{path} eq '/ordered' } $receiver->requests;
is(scalar(@reqs), 210, 'no webhook was sent twice');
is(scalar(keys %{ { map { $_->{webhook_id} => 1 } @reqs } }), 210, '210 distinct webhook-ids');

my (%by_agg, %n_of);
for my $r (@reqs)
{
	my $body = JSON::PP->new->decode($r->{body});
	$n_of{ $r->{webhook_id} } = $body->{data}{n};
	push @{ $by_agg{ $body->{aggregate_id} } }, $r;
}
is(scalar(keys %by_agg), 21, '21 aggregates');
my $ordered = 1;
for my $agg (sort keys %by_agg)
{
	my @n = map { $n_of{ $_->{webhook_id} } } sort { $a->{seq} <=> $b->{seq} } @{ $by_agg{$agg} };
	$ordered = 0 unless join(',', @n) eq join(',', sort { $a <=> $b } @n);
}
ok($ordered, 'every aggregate arrived in commit order');

# The slow aggregate: ten requests, each sent after the previous answer.
my @slow = sort { $a->{seq} <=> $b->{seq} } @{ $by_agg{slow} };
is(scalar(@slow), 10, 'the slow aggregate has ten events');
my $min_gap = 1e9;
for my $k (1 .. $#slow)
{
	my $gap = $slow[$k]{time} - $slow[ $k - 1 ]{time};
	$min_gap = $gap if $gap < $min_gap;
}
cmp_ok($min_gap, '>=', 0.29, sprintf('never two slow requests in flight (smallest gap %.3fs)', $min_gap));

# The others overtook it: all 200 arrived before the slow aggregate's last
# few.
my $last_fast = (sort { $b <=> $a } map { $_->{seq} } grep { $_->{aggregate_id} ne 'slow' } @reqs)[0];
cmp_ok($last_fast, '<', $slow[-1]{seq}, 'the other aggregates overtake the slow one');
my $fast_done_at = (grep { $_->{seq} == $last_fast } @reqs)[0]{time};
cmp_ok(scalar(grep { $_->{time} > $fast_done_at } @slow), '>=', 5,
	'at least half of the slow aggregate arrives after all the others');

# Requests ran in parallel, on several kept-alive connections.
my %ports = map { $_->{client_port} => 1 } @reqs;
cmp_ok(scalar(keys %ports), '>', 1, scalar(keys %ports) . ' connections were used');
cmp_ok(scalar(keys %ports), '<=', 32, 'at most concurrency (32) connections');
cmp_ok(scalar(keys %ports), '<', 50, 'connections are kept alive and reused');

# An unordered destination: the slow aggregate's events overlap.
$node->safe_psql('postgres', q{
	SELECT outbox.emit('unordered', 'step', jsonb_build_object('n', g), 'slow')
	  FROM generate_series(1, 10) g});
ok($receiver->wait_for(sub { (grep { $_->{path} eq '/unordered' } @_) >= 10 }, 30),
	'unordered: ten webhooks arrive');
my @un = sort { $a->{time} <=> $b->{time} } grep { $_->{path} eq '/unordered' } $receiver->requests;
cmp_ok($un[-1]{time} - $un[0]{time}, '<', 1.5,
	'unordered: ten slow requests of one aggregate overlap (not 10 x 300 ms)');

$receiver->stop;
$node->stop;
done_testing();

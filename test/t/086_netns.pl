# The link between the dispatcher and its peer goes down mid-stream and
# comes back (ip link set ... down / up on a veth pair between two network
# namespaces, test/lib/NetNs.pm): the node in one namespace, the webhook
# receiver and nats-server in the other, on a private /30.  No RST, no
# FIN: packets just stop, as when a cable or a route goes away.
#   - http, the peer's side goes down: connections in flight hang and new
#     ones cannot connect; the per-attempt timeout fires, outbox.workers
#     answers, pg_terminate_backend ends the dispatcher within seconds;
#   - nats, the node's side goes down: publishes wait for acknowledgements
#     that cannot come; `pg_ctl stop -m fast` completes within seconds;
#   - a blip shorter than the timeout: TCP carries on, nothing fails;
# after each heal nothing is lost (nothing dead), duplicates are bounded by
# the failed attempts, and each aggregate arrives in order.
# Skipped only where this machine cannot make the namespaces.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;
use NetNs;

my $why = NetNs::unavailable();
plan skip_all => "network namespaces are unavailable here: $why" if $why;

require WebhookReceiver;
require NatsServer;
require FaultCheck;

my $ns = NetNs->new;
# The veth subnet 10.85.0.0/30 is a private network, which the SSRF guard
# denies by default: new_node's deny list (link-local only) allows it, as it
# allows loopback for the other tests.
my $node = new_node('netns',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$ns->start_node($node);
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs in its own network namespace');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub stat_of
{
	my ($dest, $col) = @_;
	return sql("SELECT $col FROM outbox.stats WHERE destination = '$dest'");
}

my %last;
sub emit_round
{
	my ($topic, $tag, $naggs, $per) = @_;
	my $base = $last{$tag} // 0;
	sql(qq{SELECT outbox.emit('$topic', 'step',
	         pg_catalog.jsonb_build_object('a', '$tag-' || a, 's', $base + s), '$tag-' || a)
	         FROM generate_series(1, $per) s, generate_series(1, $naggs) a ORDER BY s, a});
	$last{$tag} = $base + $per;
	return;
}

sub expect_of
{
	my ($tag, $naggs) = @_;
	return { map { ("$tag-$_" => $last{$tag}) } 1 .. $naggs };
}

my $receiver = WebhookReceiver->new(host => NetNs::PEER_ADDR, prefix => [ $ns->peer_prefix ]);
my $nats = NatsServer->new(host => NetNs::PEER_ADDR, prefix => [ $ns->peer_prefix ]);
{
	no warnings 'once';    # NatsServer is loaded at run time (require)
	@NatsServer::TOOL_PREFIX = $ns->peer_prefix;
}
my $url = $nats->url;
NatsServer::tool($url, 'add-stream', 'CUT', 'cut.>');

sql(sprintf(q{SELECT outbox.create_destination('hook', 'http', '{"url": "%s",
                "timeout": "2 s", "backoff_base": "100 ms", "backoff_max": "500 ms",
                "max_attempts": 100000}');
              SELECT outbox.subscribe('hook', 'web');
              SELECT outbox.create_destination('js', 'nats', '{"url": "%s",
                "subject": "cut.{topic}", "timeout": "2 s", "backoff_base": "100 ms",
                "backoff_max": "500 ms", "max_attempts": 100000}');
              SELECT outbox.subscribe('js', 'bus')},
	$receiver->url('/hook'), $url));

my $json = JSON::PP->new;
sub http_arrivals
{
	my ($tag) = @_;
	my @out;
	for my $r (sort { $a->{seq} <=> $b->{seq} } $receiver->requests)
	{
		next unless ($r->{aggregate_id} // '') =~ /^\Q$tag\E-/;
		my $b = $json->decode($r->{body});
		push @out, [ $b->{data}{a}, $b->{data}{s} ];
	}
	return @out;
}

sub nats_arrivals
{
	my ($tag, $ids) = @_;
	my @out;
	for my $m (NatsServer::dump($url, 'CUT'))
	{
		next unless $m->{data}{a} =~ /^\Q$tag\E-/;
		$ids->{ $m->{headers}{'Nats-Msg-Id'} }++;
		push @out, [ $m->{data}{a}, $m->{data}{s} ];
	}
	return @out;
}

# Events flow to DEST, the link of SIDE goes down, more events, DURING runs
# once attempts fail, the link comes up; then the verdict.
# INTERRUPTED: attempts DURING may cut short by ending the dispatcher (at
# most one in flight per aggregate); each may be a duplicate too, as each
# failed attempt may (its request can still reach the peer once the link is
# back: TCP retransmits what the closed socket had sent).
sub cut_link
{
	my ($dest, $topic, $tag, $side, $interrupted, $during) = @_;
	my $naggs = 6;
	my $failed0 = stat_of($dest, 'failed_attempts_total');
	my $done0 = stat_of($dest, 'delivered_total');
	emit_round($topic, $tag, $naggs, 10);
	ok(wait_until($node, 'postgres', qq{SELECT delivered_total > $done0
	                 FROM outbox.stats WHERE destination = '$dest'}, 30),
		"$tag: events flow");
	my $t0 = time();
	$ns->link($side, 'down');
	emit_round($topic, $tag, $naggs, 10);
	ok(wait_until($node, 'postgres', qq{SELECT failed_attempts_total > $failed0
	                 FROM outbox.stats WHERE destination = '$dest'}, 30),
		"$tag: the link is down, attempts fail");
	# Nothing answers: the 2 s timeout ends the attempts (a batch within 4 s).
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('%s: ... within %.1fs', $tag, $took));
	$during->() if $during;
	emit_round($topic, $tag, $naggs, 5);
	$ns->link($side, 'up');
	ok(wait_until($node, 'postgres', qq{SELECT pending = 0 AND retrying = 0
	                 FROM outbox.stats WHERE destination = '$dest'}, 60),
		"$tag: the link is up, everything is delivered");
	is(stat_of($dest, 'dead'), '0', "$tag: nothing is dead");
	my $failed = stat_of($dest, 'failed_attempts_total') - $failed0;
	my %ids;
	my @arr = $dest eq 'hook' ? http_arrivals($tag) : nats_arrivals($tag, \%ids);
	my $v = FaultCheck::verdict(\@arr, expect_of($tag, $naggs));
	note("$tag: " . FaultCheck::summary($v) . ", $failed failed attempts");
	is_deeply($v->{missing}, [], "$tag: nothing lost");
	is_deeply($v->{disorder}, [], "$tag: order per aggregate kept");
	if ($dest eq 'hook')
	{
		cmp_ok($v->{duplicates}, '<=', $failed + $interrupted,
			"$tag: $v->{duplicates} duplicates, bounded by the $failed failed attempts"
			  . " and $interrupted interrupted ones");
	}
	else
	{
		is($v->{duplicates}, 0, "$tag: the stream holds each event once (Nats-Msg-Id)");
		is(scalar(grep { $_ > 1 } values %ids), 0, "$tag: one message per event_id");
	}
	return;
}

# --- http: the peer's side goes down ----------------------------------------
cut_link('hook', 'web', 'hcut', 'peer', 6, sub {
	ok(wait_until($node, 'postgres', q{SELECT last_error ~* 'timed out|timeout'
	                 FROM outbox.stats WHERE destination = 'hook'}, 10),
		'hcut: the per-attempt timeout fires');
	my $t0 = time();
	my ($ret) = $node->psql('postgres', 'SELECT count(*) FROM outbox.workers');
	cmp_ok(time() - $t0, '<', 3, 'hcut: outbox.workers answers');
	my $pid = dispatcher_pid($node, 'postgres');
	$t0 = time();
	sql("SELECT pg_terminate_backend($pid)");
	ok(wait_until($node, 'postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid", 10),
		'hcut: pg_terminate_backend ends the dispatcher');
	my $took = time() - $t0;
	cmp_ok($took, '<', 5, sprintf('hcut: ... in %.1fs', $took));
	ok(wait_for_dispatcher($node, 'postgres', $pid), 'hcut: a new dispatcher runs');
});

# --- nats: the node's side goes down, and a fast shutdown meanwhile ----------
cut_link('js', 'bus', 'ncut', 'node', 6, sub {
	my $t0 = time();
	$node->stop('fast');
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('ncut: pg_ctl stop -m fast completes in %.1fs', $took));
	$ns->start_node($node);
	ok(wait_for_dispatcher($node, 'postgres'), 'ncut: a dispatcher runs after the restart');
});

# --- a blip shorter than the timeout, both kinds at once --------------------
# The link is down for a moment while events flow; TCP retransmits once it
# is back and every event arrives, in order.
{
	my $naggs = 6;
	emit_round('web', 'hblip', $naggs, 10);
	emit_round('bus', 'nblip', $naggs, 10);
	$ns->link('peer', 'down');
	emit_round('web', 'hblip', $naggs, 10);
	emit_round('bus', 'nblip', $naggs, 10);
	$ns->link('peer', 'up');
	ok(wait_until($node, 'postgres', q{SELECT bool_and(pending = 0 AND retrying = 0)
	                 FROM outbox.stats}, 60), 'blip: everything is delivered');
	my $v = FaultCheck::verdict([ http_arrivals('hblip') ], expect_of('hblip', $naggs));
	note('hblip: ' . FaultCheck::summary($v));
	is_deeply([ @{ $v->{missing} }, @{ $v->{disorder} } ], [], 'hblip: nothing lost, in order');
	$v = FaultCheck::verdict([ nats_arrivals('nblip', {}) ], expect_of('nblip', $naggs));
	note('nblip: ' . FaultCheck::summary($v));
	is_deeply([ @{ $v->{missing} }, @{ $v->{disorder} } ], [], 'nblip: nothing lost, in order');
	is($v->{duplicates}, 0, 'nblip: each event once in the stream');
	is(sql(q{SELECT sum(dead) FROM outbox.stats}), '0', 'blip: nothing is dead');
}

$node->stop;
$receiver->stop;
$nats->stop;
$ns->stop;
done_testing();

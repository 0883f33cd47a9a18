# Network faults between the dispatcher and its peer, injected by a TCP
# proxy of the test suite (test/lib/fault_proxy.py): the proxy stalls (holds
# every byte), drops the connection mid-response, trickles the answer a byte
# at a time, or resets (RST) — while events flow, for an http destination
# (the webhook receiver behind the proxy) and a nats destination
# (nats-server -js behind the proxy).  After each fault heals:
#   - nothing is lost: every event arrived, none is dead;
#   - duplicates are bounded: never more than the attempts the dispatcher
#     counted as failed (each redelivery follows one), and counted;
#   - order per aggregate is kept: a new seq is always the next one, a
#     redelivery only repeats what the peer already has;
#   - the dispatcher stays responsive: during a stall outbox.workers
#     answers, the per-attempt timeout fires (also against a trickle that
#     never stops sending), pg_terminate_backend ends the dispatcher within
#     seconds, and `pg_ctl stop -m fast` completes within seconds.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../nats';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;
use WebhookReceiver;
use NatsServer;
use FaultProxy;
use FaultCheck;

# The http destination has no "timeout" key: outbox_saga.http_timeout is its
# per-attempt timeout (the nats one sets its own).
my $node = new_node('fault_proxy',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\noutbox_saga.http_timeout = '2s'\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub stat_of
{
	my ($dest, $col) = @_;
	return sql("SELECT $col FROM outbox.stats WHERE destination = '$dest'");
}

# Emit PER events to each of NAGGS aggregates "TAG-1" ... of TOPIC,
# interleaved, continuing each aggregate's sequence.
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

# Time SQL: true if it answered within SECONDS.
sub answers_within
{
	my ($query, $seconds) = @_;
	my $t0 = time();
	my ($ret) = $node->psql('postgres', $query, timeout => $seconds + 5);
	return $ret == 0 && time() - $t0 < $seconds;
}

# ===========================================================================
# HTTP: the webhook receiver behind the proxy
# ===========================================================================
my $receiver = WebhookReceiver->new;
my $hproxy = FaultProxy->new(target => '127.0.0.1:' . $receiver->port);
sql(sprintf(q{SELECT outbox.create_destination('hook', 'http', '{"url": "%s",
                "backoff_base": "100 ms", "backoff_max": "500 ms",
                "max_attempts": 100000}');
              SELECT outbox.subscribe('hook', 'web')},
	"http://127.0.0.1:" . $hproxy->port . "/hook"));

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

# One fault against the http destination: events flow, FAULT is injected,
# more events are emitted, DURING runs once the fault shows as failed
# attempts, then the proxy heals and the verdict is checked.  Each failed
# attempt may leave up to PER_FAILURE copies at the peer (default 1).
sub http_fault
{
	my ($tag, $fault, $during, $per_failure) = @_;
	$per_failure //= 1;
	my $naggs = 6;
	my $failed0 = stat_of('hook', 'failed_attempts_total');
	emit_round('web', $tag, $naggs, 10);
	ok($receiver->wait_for(sub { grep { ($_->{aggregate_id} // '') =~ /^$tag-/ } @_ }),
		"$tag: events flow");
	my $t0 = time();
	$fault->();
	emit_round('web', $tag, $naggs, 10);
	ok(wait_until($node, 'postgres', qq{SELECT failed_attempts_total > $failed0
	                   FROM outbox.stats WHERE destination = 'hook'}, 30),
		"$tag: the fault makes attempts fail");
	# A hung attempt ends at the 2 s timeout (a batch within twice that).
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('%s: ... within %.1fs', $tag, $took));
	$during->() if $during;
	emit_round('web', $tag, $naggs, 5);
	$hproxy->mode('pass');
	ok(wait_until($node, 'postgres', q{SELECT pending = 0 AND retrying = 0
	                   FROM outbox.stats WHERE destination = 'hook'}, 60),
		"$tag: healed, everything is delivered");
	is(stat_of('hook', 'dead'), '0', "$tag: nothing is dead");
	my $failed = stat_of('hook', 'failed_attempts_total') - $failed0;
	my $v = FaultCheck::verdict([ http_arrivals($tag) ], expect_of($tag, $naggs));
	note("$tag: " . FaultCheck::summary($v) . ", $failed failed attempts");
	is_deeply($v->{missing}, [], "$tag: nothing lost");
	is_deeply($v->{disorder}, [], "$tag: order per aggregate kept");
	is_deeply($v->{unexpected}, [], "$tag: nothing unexpected");
	cmp_ok($v->{duplicates}, '<=', $per_failure * $failed,
		"$tag: $v->{duplicates} duplicates, bounded by the $failed failed attempts"
		  . ($per_failure > 1 ? " (x$per_failure)" : ''));
	return $v;
}

# --- stall ------------------------------------------------------------------
http_fault('hstall', sub { $hproxy->mode('stall') }, sub {
	like(stat_of('hook', 'last_error'), qr/timed out|Timeout/i,
		'hstall: the per-attempt timeout fires');
	ok(answers_within(q{SELECT count(*) FROM outbox.workers}, 3),
		'hstall: outbox.workers answers during the stall');
	my $pid = dispatcher_pid($node, 'postgres');
	my $t0 = time();
	sql("SELECT pg_terminate_backend($pid)");
	ok(wait_until($node, 'postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid", 10),
		'hstall: pg_terminate_backend ends the dispatcher');
	my $took = time() - $t0;
	cmp_ok($took, '<', 5, sprintf('hstall: ... in %.1fs', $took));
	ok(wait_for_dispatcher($node, 'postgres', $pid), 'hstall: a new dispatcher runs');
	cmp_ok($hproxy->stats->{stalled}, '>', 0, 'hstall: the proxy held connections');
});

# --- drop mid-response ------------------------------------------------------
# The receiver took the request and answers, the answer is cut inside its
# status line: the attempt fails, the redelivery is a duplicate.  libcurl
# itself sends a request again, on another connection, when a reused
# connection died before any complete header line came back (it cannot
# tell that from an idle connection the server had closed), at most 5
# times: so up to 1 + 5 copies per failed attempt, none of them counted by
# the dispatcher; the receiver deduplicates by webhook-id.  (libcurl also
# takes an answer cut right after a complete status line, such as
# "HTTP/1.1 200 OK\r\n", as complete - read-until-close, as HTTP/1.0
# allows; the peer did answer 200 then, so nothing is lost either way.)
http_fault('hdrop', sub { $hproxy->mode('drop', 8) }, sub {
	cmp_ok($hproxy->stats->{dropped}, '>', 0, 'hdrop: responses were cut');
}, 6);

# --- slow trickle: a byte every 40 ms never finishes within 2 s -----------
http_fault('htrickle', sub { $hproxy->mode('trickle', 40) }, sub {
	ok(wait_until($node, 'postgres', q{SELECT last_error ~* 'timed out|timeout'
	                 FROM outbox.stats WHERE destination = 'hook'}, 10),
		'htrickle: the total timeout fires although bytes keep coming');
	cmp_ok($hproxy->stats->{trickled}, '>', 0, 'htrickle: bytes trickled');
});

# --- reset ------------------------------------------------------------------
http_fault('hreset', sub { $hproxy->mode('reset') }, sub {
	cmp_ok($hproxy->stats->{reset}, '>', 0, 'hreset: connections were reset');
});

# --- a black hole: the open connections freeze for good ----------------
# Nothing flows on them ever again and nobody closes them (a NAT or firewall
# on the way forgot them); new connections work.  The dispatcher must give
# up on the dead connection by itself.
http_fault('hfreeze', sub { $hproxy->freeze }, sub {
	cmp_ok($hproxy->stats->{frozen}, '>', 0, 'hfreeze: connections were frozen');
});

$hproxy->stop;
$receiver->stop;

# ===========================================================================
# NATS JetStream: nats-server behind the proxy
# ===========================================================================
my $ns = NatsServer->new;
my $url = $ns->url;
NatsServer::tool($url, 'add-stream', 'FAULT', 'fault.>');
my $nproxy = FaultProxy->new(target => '127.0.0.1:' . $ns->port);
sql(sprintf(q{SELECT outbox.create_destination('js', 'nats', '{"url": "%s",
                "subject": "fault.{topic}", "timeout": "2 s", "backoff_base": "100 ms",
                "backoff_max": "500 ms", "max_attempts": 100000}');
              SELECT outbox.subscribe('js', 'bus')},
	'nats://127.0.0.1:' . $nproxy->port));

my $stored = 0;
sub nats_fault
{
	my ($tag, $fault, $during) = @_;
	my $naggs = 6;
	my $failed0 = stat_of('js', 'failed_attempts_total');
	emit_round('bus', $tag, $naggs, 10);
	cmp_ok(NatsServer::wait_count($url, 'FAULT', $stored + 1), '>', $stored,
		"$tag: events flow");
	my $t0 = time();
	$fault->();
	emit_round('bus', $tag, $naggs, 10);
	ok(wait_until($node, 'postgres', qq{SELECT failed_attempts_total > $failed0
	                   FROM outbox.stats WHERE destination = 'js'}, 30),
		"$tag: the fault makes attempts fail");
	# A publish waits at most its 2 s timeout (a batch: timeout + 1 s).
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('%s: ... within %.1fs', $tag, $took));
	$during->() if $during;
	emit_round('bus', $tag, $naggs, 5);
	$nproxy->mode('pass');
	my $owed = $stored + $naggs * $last{$tag};
	is(NatsServer::wait_count($url, 'FAULT', $owed, 60), $owed, "$tag: healed, every event is stored");
	ok(wait_until($node, 'postgres', q{SELECT pending = 0 AND retrying = 0
	                   FROM outbox.stats WHERE destination = 'js'}, 60),
		"$tag: and recorded as delivered");
	is(stat_of('js', 'dead'), '0', "$tag: nothing is dead");
	my (@arr, %ids);
	for my $m (NatsServer::dump($url, 'FAULT'))
	{
		next unless $m->{data}{a} =~ /^\Q$tag\E-/;
		$ids{ $m->{headers}{'Nats-Msg-Id'} }++;
		push @arr, [ $m->{data}{a}, $m->{data}{s} ];
	}
	my $failed = stat_of('js', 'failed_attempts_total') - $failed0;
	my $v = FaultCheck::verdict(\@arr, expect_of($tag, $naggs));
	note("$tag: " . FaultCheck::summary($v) . ", $failed failed attempts");
	is_deeply($v->{missing}, [], "$tag: nothing lost");
	is_deeply($v->{disorder}, [], "$tag: order per aggregate kept");
	is($v->{duplicates}, 0, "$tag: the stream holds each event once (Nats-Msg-Id)");
	is(scalar(grep { $_ > 1 } values %ids), 0, "$tag: one message per event_id");
	$stored = NatsServer::tool($url, 'count', 'FAULT') + 0;
	return $v;
}

# --- stall, and a fast shutdown during it ---------------------------------
nats_fault('nstall', sub { $nproxy->mode('stall') }, sub {
	ok(answers_within(q{SELECT count(*) FROM outbox.workers}, 3),
		'nstall: outbox.workers answers during the stall');
	my $t0 = time();
	$node->stop('fast');
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('nstall: pg_ctl stop -m fast completes in %.1fs', $took));
	$node->start;
	ok(wait_for_dispatcher($node, 'postgres'), 'nstall: a dispatcher runs after the restart');
});

nats_fault('ndrop', sub { $nproxy->mode('drop', 20) }, sub {
	cmp_ok($nproxy->stats->{dropped}, '>', 0, 'ndrop: answers were cut');
});

nats_fault('ntrickle', sub { $nproxy->mode('trickle', 40) }, sub {
	cmp_ok($nproxy->stats->{trickled}, '>', 0, 'ntrickle: bytes trickled');
});

nats_fault('nreset', sub { $nproxy->mode('reset') }, sub {
	cmp_ok($nproxy->stats->{reset}, '>', 0, 'nreset: connections were reset');
});

nats_fault('nfreeze', sub { $nproxy->freeze }, sub {
	cmp_ok($nproxy->stats->{frozen}, '>', 0, 'nfreeze: the connection was frozen');
});

$nproxy->stop;
$node->stop;
$ns->stop;
done_testing();

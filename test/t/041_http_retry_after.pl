# A 429 (or 503) with Retry-After backs off the whole http destination, not
# only the event it answered (src/sink/http.c OUTCOMES, src/dispatch/
# delivery.c OUTAGES): after the answer, no request at all reaches the
# receiver before the Retry-After time - neither the rest of the batch nor
# events emitted meanwhile - and then everything is delivered, in order per
# aggregate.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;

# Retention keeps delivered events in the log: the checks read them there.
my $node = new_node('http_retry_after',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $receiver = WebhookReceiver->new;

sub on_path
{
	my $path = shift;
	return grep { $_->{path} eq $path } @_;
}

# One request at a time, a short backoff: without the destination backoff
# the next event would be sent a few milliseconds after the 429.
sub destination
{
	my ($name, $path) = @_;
	sql(sprintf(q{SELECT outbox.create_destination('%s', 'http', '{"url": "%s",
	                "concurrency": 1, "backoff_base": "50 ms", "backoff_max": "10 s"}');
	              SELECT outbox.subscribe('%s', '%s')},
		$name, $receiver->url($path), $name, $name));
}

# Check one destination whose first request got STATUS with Retry-After:
# RETRY_AFTER seconds.
sub check_pause
{
	my ($name, $status, $retry_after) = @_;
	my $path = "/$name";

	$receiver->rules([ { path => $path, times => 1, status => $status,
		retry_after => "$retry_after" } ]);
	destination($name, $path);
	sql(qq{SELECT outbox.emit('$name', 'first', jsonb_build_object('n', g), 'a' || (g % 4))
	         FROM generate_series(1, 8) g});
	ok($receiver->wait_for(sub { on_path($path, @_) >= 1 }), "$name: the first request arrives");
	# Emitted while the destination is paused: must wait as well.
	sql(qq{SELECT outbox.emit('$name', 'later', jsonb_build_object('n', g), 'a' || (g % 4))
	         FROM generate_series(9, 12) g});
	ok($node->poll_query_until('postgres', qq{
		SELECT delivered_total = 12 AND retrying = 0 FROM outbox.stats WHERE destination = '$name'}),
		"$name: every event is delivered in the end");

	my @reqs = on_path($path, $receiver->requests);
	is($reqs[0]{status}, $status, "$name: the first request was answered $status");
	my $paused_until = $reqs[0]{time} + $retry_after;
	my @early = grep { $_->{time} < $paused_until } @reqs[ 1 .. $#reqs ];
	is(scalar(@early), 0,
		"$name: no request reached the receiver before the Retry-After time");
	is(scalar(@reqs), 13, "$name: 12 events, one of them sent twice");

	# Per aggregate, the accepted requests follow the order of the log.
	my %want;
	for my $row (split /\n/, sql(qq{SELECT aggregate_id || ' ' || event_id FROM outbox.events
	                                 WHERE topic = '$name' ORDER BY id}))
	{
		my ($agg, $id) = split / /, $row;
		push @{ $want{$agg} }, $id;
	}
	my %got;
	push @{ $got{ $_->{aggregate_id} } }, $_->{webhook_id}
	  for grep { $_->{status} == 200 } @reqs;
	is_deeply(\%got, \%want, "$name: each event accepted once, in order per aggregate");
	like(sql(qq{SELECT last_error FROM outbox.stats WHERE destination = '$name'}),
		qr/^HTTP $status\b.*Retry-After: $retry_after s/,
		"$name: last_error shows the status and the Retry-After");
	return;
}

check_pause('limited', 429, 2);
check_pause('unavailable', 503, 2);

$receiver->stop;
$node->stop;
done_testing();

# HTTP destinations through outages and crashes (G3, G4, G6):
#   - the receiver is down, then up again: every event arrives, in order per
#     aggregate, and while it is down only a few attempts are made;
#   - the dispatcher is killed with SIGKILL while requests are in flight:
#     they are delivered again after the restart, with the same webhook-id;
#   - a request the receiver holds for a minute never holds up SIGTERM of
#     the dispatcher, a configuration reload or DROP DATABASE: the worker
#     waits on its latch together with libcurl's sockets.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;
use WebhookReceiver;

my $node = new_node('http_outage',
	conf => "outbox_saga.poll_interval = '100ms'\nrestart_after_crash = on\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# --- Receiver down, then up ------------------------------------------------
my $receiver = WebhookReceiver->new;
my $port = $receiver->port;
$receiver->stop;

sql(sprintf(q{SELECT outbox.create_destination('down', 'http', '{"url": "%s",
                "backoff_base": "100 ms", "backoff_max": "300 ms", "max_attempts": 1000}');
              SELECT outbox.subscribe('down', 'down')}, $receiver->url('/down')));
sql(q{SELECT outbox.emit('down', 'step', jsonb_build_object('n', g), 'agg-' || (g % 5))
        FROM generate_series(1, 100) g});
ok($node->poll_query_until('postgres', q{
	SELECT failed_attempts_total >= 6 FROM outbox.stats WHERE destination = 'down'}),
	'the receiver is down: attempts fail');
# (libcurl's wording varies between versions)
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'down'}),
	qr/^network error: .*(Couldn't connect|Could not connect|Connection refused)/i,
	'the error says the connection was refused');
# Each batch makes at most three attempts before it stops; with 100 events
# waiting the failures stay far below the number of events.
# Only the first event of an aggregate is ever tried (the others wait in
# order), and a batch stops after three failures.
my $tried = sql(q{SELECT count(*) FROM outbox.delivery_retry r
                   JOIN outbox.destination d ON d.id = r.destination_id
                  WHERE d.name = 'down' AND r.attempts > 0});
cmp_ok($tried, '<=', 5, "only the heads of the five aggregates were tried ($tried)");
is(sql(q{SELECT delivered_total FROM outbox.stats WHERE destination = 'down'}), '0',
	'nothing delivered while down');

$receiver->start;
ok($node->poll_query_until('postgres', q{
	SELECT delivered_total = 100 AND retrying = 0 FROM outbox.stats WHERE destination = 'down'}),
	'the receiver is up: every event is delivered');
my @reqs = grep { $_->{path} eq '/down' } $receiver->requests;
my %first;
for my $r (@reqs) { $first{ $r->{webhook_id} } //= $r; }
is(scalar(keys %first), 100, 'all 100 events arrived');
my $in_order = 1;
my %last_n;
for my $r (sort { $a->{seq} <=> $b->{seq} } values %first)
{
	my $body = JSON::PP->new->decode($r->{body});
	my $agg = $body->{aggregate_id};
	$in_order = 0 if defined $last_n{$agg} && $body->{data}{n} < $last_n{$agg};
	$last_n{$agg} = $body->{data}{n};
}
ok($in_order, 'each aggregate arrived in commit order');

# --- SIGKILL with requests in flight ---------------------------------------
# The receiver holds the first request of aggregate 'held' for a minute; the
# destination's timeout is longer.  The other aggregates are delivered.
$receiver->rules([ { aggregate_id => 'held', delay => 60, times => 1 } ]);
sql(sprintf(q{SELECT outbox.create_destination('crash', 'http', '{"url": "%s",
                "timeout": "120 s", "backoff_base": "100 ms", "backoff_max": "100 ms"}');
              SELECT outbox.subscribe('crash', 'crash')}, $receiver->url('/crash')));
sql(q{SELECT outbox.emit('crash', 'step', jsonb_build_object('n', g),
                         CASE WHEN g = 1 THEN 'held' ELSE 'free-' || g END)
        FROM generate_series(1, 10) g});
my $held_id = sql(q{SELECT event_id FROM outbox.events
                     WHERE topic = 'crash' AND aggregate_id = 'held'});
ok($receiver->wait_for(sub {
		grep { $_->{path} eq '/crash' && $_->{webhook_id} eq $held_id } @_ }),
	'the request of "held" is in flight');
$pid = dispatcher_pid($node, 'postgres');
ok($node->poll_query_until('postgres', q{
	SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher'}, 'Extension:Extension'),
	'the dispatcher waits on its sockets and latch (wait event Extension)');
my $offset = -s $node->logfile;
ok(kill('KILL', $pid), "dispatcher $pid killed with SIGKILL");
ok(wait_for_log_match($node, qr/all server processes terminated; reinitializing/, $offset),
	'the postmaster reinitializes');
my $new = wait_for_dispatcher($node, 'postgres', $pid);
ok($new && $new ne $pid, 'a new dispatcher runs');
ok($receiver->wait_for(sub {
		(grep { $_->{path} eq '/crash' && $_->{webhook_id} eq $held_id } @_) >= 2 }),
	'the request in flight is sent again');
my @held = grep { $_->{path} eq '/crash' && $_->{webhook_id} eq $held_id } $receiver->requests;
is($held[-1]{body}, $held[0]{body}, 'with the same body');
ok($node->poll_query_until('postgres', q{SELECT outbox.wait_idle('30 s')}),
	'everything is delivered after the crash');
my %crash_ids = map { $_->{webhook_id} => 1 } grep { $_->{path} eq '/crash' } $receiver->requests;
is(scalar(keys %crash_ids), 10, 'all ten events arrived (at least once)');

# --- A held request never holds up the worker ------------------------------
# SIGTERM: the dispatcher ends at once, even with a request in flight for
# another minute.
$receiver->rules([ { path => '/hang', delay => 60 } ]);
sql(sprintf(q{SELECT outbox.create_destination('hang', 'http', '{"url": "%s", "timeout": "120 s"}');
              SELECT outbox.subscribe('hang', 'hang');
              SELECT outbox.emit('hang', 'x', '{}', 'h')}, $receiver->url('/hang')));
ok($receiver->wait_for(sub { grep { $_->{path} eq '/hang' } @_ }), 'a request hangs');
$pid = dispatcher_pid($node, 'postgres');

# A reload is handled at once too (the worker keeps waiting).
sql(q{SELECT pg_reload_conf()});
is(dispatcher_pid($node, 'postgres'), $pid, 'a reload does not end the worker');

my $t0 = time();
sql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'SIGTERM ends the dispatcher');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5,
	sprintf('... in %.1fs, with a request held for 60s', $elapsed));
$new = wait_for_dispatcher($node, 'postgres', $pid);
ok($new, 'the launcher starts a new dispatcher');

# DROP DATABASE of a database whose dispatcher has a request in flight.
$node->safe_psql('postgres', 'CREATE DATABASE doomed');
$node->safe_psql('doomed', sprintf(q{CREATE EXTENSION outbox_saga;
	SELECT outbox.create_destination('hang', 'http', '{"url": "%s", "timeout": "120 s"}');
	SELECT outbox.subscribe('hang', 'hang');
	SELECT outbox.emit('hang', 'x', '{}', 'd')}, $receiver->url('/hang')));
my $doomed_event = $node->safe_psql('doomed', q{SELECT event_id FROM outbox.events});
ok($receiver->wait_for(sub { grep { $_->{webhook_id} eq $doomed_event } @_ }),
	'the dispatcher of "doomed" has a request in flight');
$t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE doomed');
$elapsed = time() - $t0;
is($ret, 0, 'DROP DATABASE succeeds') or diag($err);
cmp_ok($elapsed, '<', 10, sprintf('... in %.1fs', $elapsed));

$receiver->stop;
$node->stop;
done_testing();

# HTTP destinations (SPEC 3.2 "http"), against a real receiver on 127.0.0.1
# that checks Standard Webhooks signatures with its own HMAC code: the body
# and headers of a delivery, signatures during a key rotation, config
# headers and methods, and what every class of answer does - 2xx delivered,
# 410 dead letter and pause, 429/502/503/504 honour Retry-After (seconds and
# HTTP date, capped at backoff_max), 3xx never followed, other statuses
# retried with the status and the start of the body as the error,
# per-attempt timeouts (the destination's key, else outbox_saga.http_timeout).
# Secrets never reach the server log.
use strict;
use warnings;

use POSIX qw(strftime);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;
use WebhookReceiver;

my $KEY_OLD = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $KEY_NEW = 'whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX';
my $KEY_OTHER = 'whsec_ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4';

my $node = new_node('http_delivery',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n"
	  . "outbox_saga.http_timeout = '2s'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$node->start;
my $receiver = WebhookReceiver->new(secrets => [$KEY_NEW]);

$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Create destination NAME with CONFIG (a JSON text), subscribed to topic NAME.
sub destination
{
	my ($name, $config) = @_;
	sql(qq{SELECT outbox.create_destination('$name', 'http', \$cfg\$$config\$cfg\$);
	       SELECT outbox.subscribe('$name', '$name');});
}

# The requests the receiver got on PATH.
sub on_path
{
	my ($path, @reqs) = @_;
	return grep { $_->{path} eq $path } @reqs;
}

sub wait_sql
{
	my ($query, $what) = @_;
	ok($node->poll_query_until('postgres', $query), $what);
}

# --- A delivery, in full ---------------------------------------------------
destination('orders', sprintf(q{{"url": "%s",
	"headers": {"X-Tenant": "7", "Authorization": "Bearer b3arer"},
	"secret": ["%s", "%s"]}}, $receiver->url('/hook'), $KEY_OLD, $KEY_NEW));

sql(q{SELECT outbox.emit('orders', 'order.created',
        '{"n": 1, "text": "quote \" backslash \\\\ unicode é€😀"}', 'o-1',
        '{"trace": "abc"}');
      SELECT outbox.emit('orders', 'order.paid', '{"n": 2}', 'o-1');
      SELECT outbox.emit('orders', 'order.noted', '[1, 2.5, null]', NULL)});
ok($receiver->wait_for(sub { on_path('/hook', @_) >= 3 }), 'three webhooks arrive');
my @got = on_path('/hook', $receiver->requests);
is(scalar(@got), 3, 'each once');

my @ids = split /\n/, sql(q{SELECT event_id FROM outbox.events
                           WHERE topic = 'orders' ORDER BY id});
is_deeply([ sort map { $_->{webhook_id} } @got ], [ sort @ids ],
	'webhook-id is the event_id');
is_deeply([ map { $_->{webhook_id} } grep { ($_->{aggregate_id} // '') eq 'o-1' } @got ],
	[ @ids[ 0, 1 ] ], 'the events of aggregate o-1 arrive in commit order');
my $i = 0;
for my $r (@got)
{
	my $h = $r->{headers};
	is($r->{method}, 'POST', "webhook $i: POST");
	is($h->{'content-type'}, 'application/json', "webhook $i: content-type");
	like($h->{'user-agent'}, qr{^outbox_saga/}, "webhook $i: user-agent");
	is($h->{'x-tenant'}, '7', "webhook $i: a config header is sent");
	is($h->{'authorization'}, 'Bearer b3arer', "webhook $i: so is Authorization");
	ok(!exists $h->{expect}, "webhook $i: no Expect: 100-continue");
	like($h->{'webhook-timestamp'}, qr/^\d+$/, "webhook $i: webhook-timestamp is Unix seconds");
	ok(abs($h->{'webhook-timestamp'} - time()) < 60, "webhook $i: ... of the attempt");
	like($h->{'webhook-signature'}, qr{^v1,[A-Za-z0-9+/]{43}= v1,[A-Za-z0-9+/]{43}=$},
		"webhook $i: one v1 signature per secret");
	is($r->{signature_valid}, JSON::PP::true, "webhook $i: the receiver verifies the signature");
	my $body = $r->{body} =~ s/'/''/gr;
	is(sql(qq{SELECT '$body'::jsonb = jsonb_build_object(
	            'id', event_id, 'type', event_type, 'topic', topic,
	            'aggregate_id', aggregate_id,
	            'timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
	            'data', payload, 'headers', headers)
	          FROM outbox.events WHERE event_id = '$r->{webhook_id}'}),
		't', "webhook $i: the body is {id, type, topic, aggregate_id, timestamp, data, headers}");
	$i++;
}
is(sql(q{SELECT delivered_total || '/' || failed_attempts_total || '/' || retrying
           FROM outbox.stats WHERE destination = 'orders'}),
	'3/0/0', 'outbox.stats: three delivered, no failure');

# Key rotation: either key alone verifies; a third does not.
for my $case ([ 'old key', [$KEY_OLD], 1 ], [ 'new key', [$KEY_NEW], 1 ],
	[ 'unrelated key', [$KEY_OTHER], 0 ])
{
	my ($what, $keys, $valid) = @$case;
	$receiver->secrets($keys);
	my $before = () = on_path('/hook', $receiver->requests);
	sql(q{SELECT outbox.emit('orders', 'order.rotated', '{}', 'o-2')});
	ok($receiver->wait_for(sub { on_path('/hook', @_) > $before }), "rotation, $what: delivered");
	my @now = on_path('/hook', $receiver->requests);
	is($now[-1]{signature_valid}, $valid ? JSON::PP::true : JSON::PP::false,
		"rotation, receiver with the $what: signature " . ($valid ? 'valid' : 'invalid'));
}
$receiver->secrets([$KEY_NEW]);

# PUT and PATCH; the body is the same.
for my $method (qw(PUT PATCH))
{
	sql(qq{SELECT outbox.alter_destination('orders', '{"method": "$method"}')});
	my $before = () = on_path('/hook', $receiver->requests);
	sql(q{SELECT outbox.emit('orders', 'order.method', '{}', 'o-3')});
	ok($receiver->wait_for(sub { on_path('/hook', @_) > $before }), "$method: delivered");
	my @now = on_path('/hook', $receiver->requests);
	is($now[-1]{method}, $method, "method $method is used");
	is($now[-1]{signature_valid}, JSON::PP::true, "$method: signed");
}

# A destination without a secret sends no signature.
destination('unsigned', sprintf('{"url": "%s"}', $receiver->url('/unsigned')));
sql(q{SELECT outbox.emit('unsigned', 'x', '{}')});
ok($receiver->wait_for(sub { on_path('/unsigned', @_) >= 1 }), 'unsigned: delivered');
my @unsigned = on_path('/unsigned', $receiver->requests);
ok(!exists $unsigned[0]{headers}{'webhook-signature'}, 'no secret, no webhook-signature header');

# --- Every class of answer -------------------------------------------------
# Each destination has its own topic and path; the query string scripts the
# receiver's answer.
my $retry_date = strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time() + 60));
(my $retry_date_q = $retry_date) =~ s/([^A-Za-z0-9])/sprintf('%%%02X', ord($1))/ge;
my %cases = (
	created      => '/created?status=201',
	no_content   => '/no_content?status=204',
	gone         => '/gone?status=410',
	throttled    => '/throttled?status=429&retry_after=30',
	dated        => "/dated?status=503&retry_after=$retry_date_q",
	capped       => '/capped?status=429&retry_after=7200',
	bad_gateway  => '/bad_gateway?status=502&retry_after=20',
	unavailable  => '/unavailable?status=503',
	redirect     => '/redirect?status=302&location=/landed',
	bad_request  => '/bad_request?status=400&body=' . ('x' x 300) . 'END',
	server_error => '/server_error?status=500&body=%7B%22error%22%3A%22boom%22%7D',
	slow_key     => '/slow_key?delay=3',
	slow_default => '/slow_default?delay=3',
);
my %extra = (
	throttled => '"backoff_base": "10 ms", "backoff_max": "1 hour"',
	dated => '"backoff_base": "10 ms", "backoff_max": "1 hour"',
	capped => '"backoff_base": "10 ms", "backoff_max": "10 seconds"',
	bad_gateway => '"backoff_base": "10 ms", "backoff_max": "1 hour"',
	unavailable => '"backoff_base": "50 ms", "backoff_max": "50 ms", "max_attempts": 3',
	redirect => '"backoff_base": "50 ms", "backoff_max": "50 ms", "max_attempts": 2',
	bad_request => '"backoff_base": "50 ms", "backoff_max": "50 ms", "max_attempts": 2',
	server_error => '"backoff_base": "50 ms", "backoff_max": "50 ms", "max_attempts": 2',
	slow_key => '"timeout": "500 ms", "max_attempts": 1',
	slow_default => '"max_attempts": 1',
);
for my $name (sort keys %cases)
{
	destination($name, sprintf('{"url": "%s"%s}', $receiver->url($cases{$name}),
			$extra{$name} ? ", $extra{$name}" : ''));
}
# gone: two events of one aggregate in one transaction (so in one batch);
# the second is never sent.
sql(join(';', map { "SELECT outbox.emit('$_', 'test.$_', '{\"case\": \"$_\"}', 'agg')" }
	  grep { $_ ne 'gone' } sort keys %cases));
sql(q{BEGIN;
      SELECT outbox.emit('gone', 'test.gone', '{"case": "gone"}', 'agg');
      SELECT outbox.emit('gone', 'test.gone.second', '{}', 'agg');
      COMMIT});

wait_sql(q{SELECT delivered_total = 1 FROM outbox.stats WHERE destination = 'created'},
	'201: delivered');
wait_sql(q{SELECT delivered_total = 1 FROM outbox.stats WHERE destination = 'no_content'},
	'204: delivered');

wait_sql(q{SELECT paused FROM outbox.destinations WHERE name = 'gone'},
	'410: the destination is paused');
is(sql(q{SELECT attempts || ' ' || last_error FROM outbox.dead_letters WHERE destination = 'gone'}),
	'1 HTTP 410: status 410 from the receiver', '410: the event is a dead letter after one attempt');
is(sql(q{SELECT count(*) FILTER (WHERE r.attempts = 0) || '/' || count(*)
           FROM outbox.delivery_retry r JOIN outbox.destination d ON d.id = r.destination_id
          WHERE d.name = 'gone'}),
	'1/1', '410: the next event of the aggregate was not attempted; it waits for resume');
is(scalar(on_path('/gone', $receiver->requests)), 1, '410: nothing more was sent');

# Retry-After: the next attempt is no earlier than asked (at most backoff_max).
for my $case ([ 'throttled', 28, 31 ], [ 'dated', 50, 61 ], [ 'capped', 9.5, 10.5 ],
	[ 'bad_gateway', 18, 21 ])
{
	my ($name, $lo, $hi) = @$case;
	wait_sql(qq{SELECT count(*) = 1 FROM outbox.delivery_retry r
	             JOIN outbox.destination d ON d.id = r.destination_id
	            WHERE d.name = '$name' AND r.attempts >= 1},
		"$name: a failed attempt");
	my $wait = sql(qq{SELECT extract(epoch FROM r.next_attempt_at - r.last_attempt_at)
	                   FROM outbox.delivery_retry r JOIN outbox.destination d ON d.id = r.destination_id
	                  WHERE d.name = '$name'});
	ok($wait >= $lo && $wait <= $hi,
		"$name: next attempt after ${wait}s (expected $lo..$hi)");
}
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'throttled'}),
	qr/^HTTP 429 \(Retry-After: 30 s\)/, '429: the error says status and Retry-After');
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'capped'}),
	qr/^HTTP 429 \(Retry-After: 7200 s\)/, 'capped: the error shows what the receiver asked');

# 503 without Retry-After: plain backoff, dead after max_attempts, the same
# webhook-id every time.
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'unavailable'},
	'503: dead letter after max_attempts');
my @unavail = on_path('/unavailable', $receiver->requests);
is(scalar(@unavail), 3, '503: three attempts');
is(scalar(keys %{ { map { $_->{webhook_id} => 1 } @unavail } }), 1,
	'503: every attempt has the same webhook-id');
is(sql(q{SELECT attempts FROM outbox.dead_letters WHERE destination = 'unavailable'}),
	'3', '503: the dead letter counts three attempts');

# 3xx: never followed, a failed attempt.
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'redirect'},
	'302: failed until dead');
like(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'redirect'}),
	qr{^HTTP 302 \(redirect to /landed, not followed\)},
	'302: the error names the redirect');
is(scalar(on_path('/landed', $receiver->requests)), 0, '302: the redirect was not followed');
is(scalar(on_path('/redirect', $receiver->requests)), 2, '302: retried');

# 400 and 500: retried; the error has the status and at most 200 bytes of
# the body.
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'bad_request'},
	'400: retried until dead');
is(scalar(on_path('/bad_request', $receiver->requests)), 2, '400: two attempts');
is(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'bad_request'}),
	'HTTP 400: ' . ('x' x 200) . '...', '400: status and the first 200 bytes of the body');
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'server_error'},
	'500: retried until dead');
is(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'server_error'}),
	'HTTP 500: {"error":"boom"}', '500: status and body');

# Timeouts: the destination's key, else outbox_saga.http_timeout (2s here).
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'slow_key'},
	'timeout key: the attempt fails');
like(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'slow_key'}),
	qr/^timeout after 500 ms: /, 'timeout key: 500 ms');
wait_sql(q{SELECT count(*) = 1 FROM outbox.dead_letters WHERE destination = 'slow_default'},
	'default timeout: the attempt fails');
like(sql(q{SELECT last_error FROM outbox.dead_letters WHERE destination = 'slow_default'}),
	qr/^timeout after 2000 ms: /, 'default timeout: outbox_saga.http_timeout');

# Resuming the 410 destination delivers the waiting event (the receiver
# answers 200 now).
sql(sprintf(q{SELECT outbox.alter_destination('gone', '{"url": "%s"}');
              SELECT outbox.resume_destination('gone')}, $receiver->url('/gone_again')));
wait_sql(q{SELECT delivered_total = 1 FROM outbox.stats WHERE destination = 'gone'},
	'410: after resume the waiting event is delivered');

# --- Secrets stay out of the server log ------------------------------------
# (log_statement is off: statements are the client's; this is about what
# outbox_saga itself writes.)
my $log = slurp_file($node->logfile);
unlike($log, qr/whsec_|b3arer|MfKQ9r8G|AAECAwQF/, 'no secret in the server log');

$receiver->stop;
$node->stop;
done_testing();

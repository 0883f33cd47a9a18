# Saga steps of call kind "http" (SPEC 3.5; design in src/saga/saga_http.c,
# sent through HttpClientSend in src/http/http_client.c), against a real receiver on
# 127.0.0.1: the request (method, Idempotency-Key = <saga_id>:<step>:<phase>,
# body = ctx, the call's headers), a 2xx JSON body stored as the result, a
# non-JSON body stored as a JSON string, 400 fails the step for good (one
# attempt, the saga compensates), 503 and 409 are retried with the step's
# backoff, an http compensation, a timeout, and headers (Authorization)
# never reaching the server log or the errors.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;

my $node = new_node('saga_http',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$node->start;
my $receiver = WebhookReceiver->new;
my $json = JSON::PP->new->utf8->canonical;

$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.effects (seq bigint GENERATED ALWAYS AS IDENTITY,
	                             saga_id text, call text);
	CREATE FUNCTION public.reserve(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.effects (saga_id, call) VALUES (ctx->>'saga_id', 'reserve');
		SELECT '{"reserved": true}'::jsonb $$;
	CREATE FUNCTION public.release(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.effects (saga_id, call) VALUES (ctx->>'saga_id', 'release');
		SELECT '{}'::jsonb $$;
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub on_path
{
	my ($path, @reqs) = @_;
	return grep { $_->{path} eq $path } @reqs;
}

# Define saga NAME with STEPS (JSON text with %URL(path)% placeholders).
sub define
{
	my ($name, $steps) = @_;
	$steps =~ s/%URL\(([^)]*)\)%/$receiver->url($1)/ge;
	sql(qq{SELECT saga.define('$name', \$s\$$steps\$s\$)});
}

sub start_saga
{
	my ($name, $input) = @_;
	return sql(qq{SELECT saga.start('$name', '$input')});
}

sub wait_status
{
	my ($id, $status, $what) = @_;
	ok($node->poll_query_until('postgres',
			qq{SELECT status FROM saga.instances WHERE id = '$id'}, $status),
		$what)
	  or diag(sql(qq{SELECT status, error FROM saga.instances WHERE id = '$id'}) . "\n"
		  . sql(qq{SELECT step, phase, status, attempts, error FROM saga.step_runs
		           WHERE saga_id = '$id'}));
}

# --- Success: the request, the result ---------------------------------------
define('pay_ok', q{[
	{"name": "charge",
	 "action": {"http": {"url": "%URL(/charge)%?body=%7B%22charge%22%3A%22c-1%22%7D",
	            "headers": {"X-Tenant": "7", "Authorization": "Bearer s3cr3t-t0ken"}}}},
	{"name": "notify",
	 "action": {"http": {"url": "%URL(/notify)%", "method": "PUT"}}}
]});
my $id = start_saga('pay_ok', '{"amount": 42}');
wait_status($id, 'completed', 'an http saga completes');

my @charge = on_path('/charge', $receiver->requests);
is(scalar(@charge), 1, 'one request for the step');
my $req = $charge[0];
is($req->{method}, 'POST', 'POST by default');
is($req->{headers}{'idempotency-key'}, "$id:charge:action",
	'Idempotency-Key is <saga_id>:<step>:action');
is($req->{headers}{'content-type'}, 'application/json', 'the body is JSON');
is($req->{headers}{'x-tenant'}, '7', 'the call\'s headers are sent');
is($req->{headers}{authorization}, 'Bearer s3cr3t-t0ken', 'Authorization too');
my $ctx = $json->decode($req->{body});
is($ctx->{saga_id}, $id, 'ctx.saga_id');
is($ctx->{step}, 'charge', 'ctx.step');
is($ctx->{phase}, 'action', 'ctx.phase');
is($ctx->{idempotency_key}, "$id:charge:action", 'ctx.idempotency_key');
is_deeply($ctx->{input}, { amount => 42 }, 'ctx.input');
is($ctx->{attempt}, 1, 'ctx.attempt');

my @notify = on_path('/notify', $receiver->requests);
is(scalar(@notify), 1, 'the second step runs once');
is($notify[0]{method}, 'PUT', 'the call\'s method');
is($json->decode($notify[0]{body})->{results}{charge}{charge}, 'c-1',
	'the next step sees the result in ctx.results');

is(sql(qq{SELECT result FROM saga.step_runs WHERE saga_id = '$id' AND step = 'charge'}),
	'{"charge": "c-1"}', 'a JSON body is the step\'s result');
is(sql(qq{SELECT result FROM saga.step_runs WHERE saga_id = '$id' AND step = 'notify'}),
	'"ok"', 'a body that is not JSON is stored as a JSON string');
is(sql(qq{SELECT results FROM saga.instances WHERE id = '$id'}),
	'{"charge": {"charge": "c-1"}, "notify": "ok"}', 'instances.results');

# --- 400: no retry, the saga compensates -----------------------------------
define('pay_400', q{[
	{"name": "reserve", "action": {"function": "public.reserve"},
	 "compensation": {"function": "public.release"}},
	{"name": "charge", "max_attempts": 5, "backoff_base": "10 milliseconds",
	 "action": {"http": {"url": "%URL(/bad)%?status=400"}}}
]});
$id = start_saga('pay_400', '{}');
wait_status($id, 'compensated', '400: the saga compensates');
is(sql(qq{SELECT status || ' ' || attempts FROM saga.step_runs
          WHERE saga_id = '$id' AND step = 'charge'}), 'failed 1',
	'400: the step failed after one attempt (not retried)');
like(sql(qq{SELECT error FROM saga.step_runs WHERE saga_id = '$id' AND step = 'charge'}),
	qr/^HTTP 400: status 400 from the receiver \(a client error: not retried\)/,
	'400: the error has the status and the body');
is(scalar(on_path('/bad', $receiver->requests)), 1, '400: one request');
is(sql(qq{SELECT string_agg(call, ',' ORDER BY seq) FROM public.effects
          WHERE saga_id = '$id'}), 'reserve,release', '400: the earlier step is compensated');

# --- 503 and 409: retried with the step's backoff --------------------------
$receiver->rules([ { path => '/flaky', status => 503, times => 2 },
	{ path => '/conflict', status => 409, times => 1 } ]);
define('pay_retry', q{[
	{"name": "charge", "max_attempts": 5, "backoff_base": "10 milliseconds",
	 "action": {"http": {"url": "%URL(/flaky)%"}}},
	{"name": "book", "max_attempts": 5, "backoff_base": "10 milliseconds",
	 "action": {"http": {"url": "%URL(/conflict)%"}}}
]});
$id = start_saga('pay_retry', '{}');
wait_status($id, 'completed', '503 and 409: the saga completes after retries');
is(sql(qq{SELECT string_agg(step || ' ' || status || ' ' || attempts, ', ' ORDER BY step)
          FROM saga.step_runs WHERE saga_id = '$id'}),
	'book succeeded 2, charge succeeded 3', '503 retried twice, 409 once');
my @flaky = on_path('/flaky', $receiver->requests);
is(scalar(@flaky), 3, '503: three requests');
is_deeply([ map { $_->{headers}{'idempotency-key'} } @flaky ],
	[ ("$id:charge:action") x 3 ], 'the same Idempotency-Key on every attempt');
is_deeply([ map { $json->decode($_->{body})->{attempt} } @flaky ], [ 1, 2, 3 ],
	'ctx.attempt counts');

# --- Retries used up, an http compensation, a timeout ----------------------
$receiver->rules([ { path => '/slow', delay => 2 } ]);
define('pay_down', q{[
	{"name": "hold", "action": {"function": "public.reserve"},
	 "compensation": {"http": {"url": "%URL(/unhold)%", "method": "DELETE"}}},
	{"name": "charge", "max_attempts": 2, "backoff_base": "10 milliseconds",
	 "action": {"http": {"url": "%URL(/down)%?status=503"}}},
	{"name": "never", "action": {"http": {"url": "%URL(/never)%"}}}
]});
$id = start_saga('pay_down', '{}');
wait_status($id, 'compensated', 'a step that keeps failing compensates');
is(sql(qq{SELECT status || ' ' || attempts FROM saga.step_runs
          WHERE saga_id = '$id' AND step = 'charge'}), 'failed 2',
	'503: max_attempts used up');
is(scalar(on_path('/down', $receiver->requests)), 2, '503: two requests');
my @unhold = on_path('/unhold', $receiver->requests);
is(scalar(@unhold), 1, 'the http compensation is sent once');
is($unhold[0]{method}, 'DELETE', 'with its method');
is($unhold[0]{headers}{'idempotency-key'}, "$id:hold:compensation",
	'Idempotency-Key is <saga_id>:<step>:compensation');
is(scalar(on_path('/never', $receiver->requests)), 0, 'later steps never run');

define('pay_slow', q{[
	{"name": "charge", "max_attempts": 1, "timeout": "300 milliseconds",
	 "action": {"http": {"url": "%URL(/slow)%"}}}
]});
$id = start_saga('pay_slow', '{}');
wait_status($id, 'compensated', 'a request slower than the step\'s timeout fails');
like(sql(qq{SELECT error FROM saga.step_runs WHERE saga_id = '$id' AND step = 'charge'}),
	qr/^timeout after 300 ms/, 'the step\'s timeout is the request\'s');

# --- Refused addresses, secrets --------------------------------------------
# A literal address in outbox_saga.http_deny_networks is refused when the
# saga is defined (the worker would refuse it at every run); a host name
# that resolves into a denied network is refused when the request is made,
# by the same guard as destinations (013_http_guard).
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT saga.define('pay_denied', $s$[
	{"name": "charge", "max_attempts": 1,
	 "action": {"http": {"url": "http://169.254.169.254/latest",
	            "headers": {"Authorization": "Bearer s3cr3t-t0ken"}}}}
]$s$)});
isnt($ret, 0, 'saga.define refuses a denied literal address');
like($err, qr/ERROR:  .*http_deny_networks/, 'naming outbox_saga.http_deny_networks');
unlike($err, qr/s3cr3t/, 'without quoting a header value');

unlike(slurp_file($node->logfile), qr/s3cr3t-t0ken/, 'no header value in the server log');
is(sql(q{SELECT count(*) FROM saga.step_runs WHERE error LIKE '%s3cr3t%'}), '0',
	'no header value in an error');

$receiver->stop;
$node->stop;
done_testing();

# W3C trace context end to end (issue 17 item 4; src/base/trace_context.c):
# the traceparent and tracestate of the transaction that wrote an event -
# from outbox_saga.traceparent / .tracestate (SET LOCAL) or from emit()'s
# headers - arrive as HTTP request headers (a real receiver on 127.0.0.1),
# Kafka message headers (librdkafka's mock cluster) and NATS headers (a
# real nats-server with JetStream); an event without one carries none; an
# invalid one stored by other means (a 0.1.0 event, a restored row) is never
# passed on.  A saga started in a transaction with a trace context sends it
# with its http calls (headers and the ctx in the body).
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../kafka';
use lib dirname(__FILE__) . '/../nats';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;
use KafkaMock;
use NatsServer;

my $tp1 = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
my $ts1 = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
my $tp2 = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
my $tp3 = '00-11111111111111111111111111111111-2222222222222222-01';
my $json = JSON::PP->new->utf8;

my $receiver = WebhookReceiver->new;
my $k = KafkaMock->new(brokers => 1);
is($k->cmd('topic traced 1'), 'ok', 'a Kafka topic');
my $ns = NatsServer->new(conf => qq{listen: 127.0.0.1:__PORT__
jetstream { store_dir: "__STORE__" }
});
my $nats_url = $ns->url;
NatsServer::tool($nats_url, 'add-stream', 'TRACED', 'traced.>');

my $node = new_node('trace_context',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_min_messages = info\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $hook = $receiver->url('/hook');
my $hook2 = $receiver->url('/hook2');
my $brokers = $k->bootstrap;
sql(qq{
	SELECT outbox.create_destination('hook', 'http', '{"url": "$hook", "headers": {"X-Tenant": "7"}}');
	SELECT outbox.subscribe('hook', 'traced');
	SELECT outbox.create_destination('hook2', 'http',
		'{"url": "$hook2", "headers": {"traceparent": "$tp3", "tracestate": "Not Valid"}}');
	SELECT outbox.subscribe('hook2', 'traced');
	SELECT outbox.create_destination('kafka', 'kafka',
		'{"brokers": "$brokers", "topic": "traced", "timeout": "5s", "backoff_base": "100ms",
		  "properties": {"linger.ms": 2}}');
	SELECT outbox.subscribe('kafka', 'traced');
	SELECT outbox.create_destination('nats', 'nats',
		'{"url": "$nats_url", "subject": "traced.{event_type}", "timeout": "5s", "backoff_base": "100ms"}');
	SELECT outbox.subscribe('nats', 'traced');
});

# A: the transaction's settings; B: emit()'s headers (they win);
# C: none; D, E: invalid contexts written past emit()'s checks.
sql(qq{
	BEGIN;
	SET LOCAL outbox_saga.traceparent = '$tp1';
	SET LOCAL outbox_saga.tracestate = '$ts1';
	SELECT outbox.emit('traced', 'a', '{}', 'agg');
	SELECT outbox.emit('traced', 'b', '{}', 'agg', '{"traceparent": "$tp2", "x-other": "1"}');
	COMMIT;
	SELECT outbox.emit('traced', 'c', '{}', 'agg');
	WITH tx AS (SELECT pg_catalog.pg_current_xact_id() AS txid)
	INSERT INTO outbox.events (id, event_id, topic, aggregate_id, event_type, payload, headers, created_at, txid)
	SELECT nextval('outbox.events_id_seq'), gen_random_uuid(), 'traced', 'agg', v.type, '{}', v.headers, now(), tx.txid
	  FROM tx, (VALUES
		('d', '{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "tracestate": "congo=1"}'::jsonb),
		('e', '{"Traceparent": "$tp1", "traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}')) v(type, headers);
});
ok(wait_until($node, 'postgres',
		q{SELECT bool_and(delivered_total = 5) FROM outbox.stats}, 60),
	'every destination delivered the five events')
  or diag(sql(q{SELECT destination, delivered_total, last_error FROM outbox.stats}));

# What each peer received, by event type: [traceparent, tracestate].
my %http;
for my $r (grep { $_->{path} eq '/hook' } $receiver->requests)
{
	my $body = $json->decode($r->{body});
	$http{ $body->{type} } = [ $r->{headers}{traceparent}, $r->{headers}{tracestate}, $body->{headers} ];
}
my @kmsgs = $k->consume('traced', 5);
my %kafka = map { $_->{headers}{type} => [ $_->{headers}{traceparent}, $_->{headers}{tracestate} ] } @kmsgs;
my %nats = map { $_->{headers}{type} => [ $_->{headers}{traceparent}, $_->{headers}{tracestate} ] }
  NatsServer::dump($nats_url, 'TRACED');

for my $peer ([ 'HTTP', \%http ], [ 'Kafka', \%kafka ], [ 'NATS', \%nats ])
{
	my ($name, $got) = @$peer;
	is_deeply([ sort keys %$got ], [qw(a b c d e)], "$name: five events");
	is($got->{a}[0], $tp1, "$name: traceparent from the transaction setting");
	is($got->{a}[1], $ts1, "$name: tracestate from the transaction setting");
	is($got->{b}[0], $tp2, "$name: traceparent from emit's headers");
	ok(!defined $got->{b}[1], "$name: emit's headers win as a whole (no tracestate of the setting)");
	ok(!defined $got->{c}[0] && !defined $got->{c}[1], "$name: no trace context, none sent");
	ok(!defined $got->{d}[0] && !defined $got->{d}[1], "$name: an invalid traceparent (and its tracestate) is not passed on");
	ok(!defined $got->{e}[0], "$name: version ff is not passed on");
}
my %hook2;
for my $r (grep { $_->{path} eq '/hook2' } $receiver->requests)
{
	my $body = $json->decode($r->{body});
	$hook2{ $body->{type} } = [ $r->{headers}{traceparent}, $r->{headers}{tracestate} ];
}
is_deeply($hook2{a}, [ $tp1, $ts1 ], "HTTP: the event's trace context replaces the config's headers");
is($hook2{c}[0], $tp3, "HTTP: without one, the config's valid traceparent is sent");
ok(!defined $hook2{c}[1], "HTTP: the config's invalid tracestate is never sent");
is($http{a}[2]{traceparent}, $tp1, 'HTTP: the body has the event headers with the trace context');
is_deeply($http{d}[2], {}, 'HTTP: the body has no invalid trace context either');
ok(!exists $http{e}[2]{Traceparent}, 'HTTP: a trace key spelled in another case is dropped');
my ($kb) = grep { $_->{headers}{type} eq 'b' } @kmsgs;
is($kb->{headers}{'x-other'}, '1', "Kafka: the event's other headers are kept");

# --- A saga's http call ---------------------------------------------------------
my $saga_url = $receiver->url('/saga');
sql(qq{SELECT saga.define('traced', '[{"name": "call", "action": {"http": {"url": "$saga_url",
	"headers": {"traceparent": "$tp3", "X-Tenant": "7"}}}}]')});
my $traced = sql(qq{
	BEGIN;
	SET LOCAL outbox_saga.traceparent = '$tp1';
	SET LOCAL outbox_saga.tracestate = '$ts1';
	SELECT saga.start('traced', '{"n": 1}');
	COMMIT;
});
my $plain = sql(q{SELECT saga.start('traced', '{"n": 2}')});
ok($node->poll_query_until('postgres',
		qq{SELECT count(*) FROM saga.instances WHERE id IN ('$traced', '$plain') AND status = 'completed'}, '2'),
	'both sagas completed');
my %saga;
for my $r (grep { $_->{path} eq '/saga' } $receiver->requests)
{
	my $ctx = $json->decode($r->{body});
	$saga{ $ctx->{saga_id} } = [ $r->{headers}{traceparent}, $r->{headers}{tracestate}, $ctx ];
}
is($saga{$traced}[0], $tp1, "saga http call: the saga's traceparent replaces the call's");
is($saga{$traced}[1], $ts1, 'saga http call: tracestate');
is($saga{$traced}[2]{traceparent}, $tp1, 'saga http call: in the ctx of the body too');
is($saga{$plain}[0], $tp3, "a saga started without one sends the call's own header");
ok(!exists $saga{$plain}[2]{traceparent}, 'and has none in its ctx');

$node->stop;
done_testing();

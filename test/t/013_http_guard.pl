# outbox_saga.http_deny_networks is enforced on the address a host name
# resolves to, when the connection is made - not only on the URL's text -
# so a name that resolves (or is rebound) into a denied network is refused
# at delivery, with the reason in outbox.stats, and nothing is sent.  Here
# the denied network is loopback and the name "localhost" (the default,
# link-local only, allows loopback).  A reload that lifts the restriction
# lets the waiting events through (connections made under the old rules are
# dropped).  An invalid setting refuses every address (fail closed).  A
# host that does not resolve is a retried failure with libcurl's reason.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;
use WebhookReceiver;

my $node = new_node('http_guard',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n"
	  . "outbox_saga.http_deny_networks = '127.0.0.0/8, ::1/128'\n");
$node->start;
my $receiver = WebhookReceiver->new;
my $port = $receiver->port;

sub sql { return $node->safe_psql('postgres', $_[0]); }

$node->safe_psql('postgres', qq{
	CREATE EXTENSION outbox_saga;
	SELECT outbox.create_destination('by_name', 'http',
	       '{"url": "http://localhost:$port/guard", "backoff_base": "100 ms",
	         "backoff_max": "200 ms", "max_attempts": 1000}');
	SELECT outbox.subscribe('by_name', 'guard');
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# A literal address in a denied network is refused when the destination is
# created; a name cannot be checked before it is resolved.
is(sqlstate_of($node, 'postgres', qq{SELECT outbox.create_destination('by_address', 'http',
	'{"url": "http://127.0.0.1:$port/guard"}')}), '22023',
	'a literal loopback address is refused at create_destination');

sql(q{SELECT outbox.emit('guard', 'x', jsonb_build_object('n', g), 'a')
        FROM generate_series(1, 3) g});
ok($node->poll_query_until('postgres', q{
	SELECT failed_attempts_total > 0 FROM outbox.stats WHERE destination = 'by_name'}),
	'delivery to a name that resolves to loopback fails');
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'by_name'}),
	qr/^address (127\.0\.0\.1|::1) is in outbox_saga\.http_deny_networks$/,
	'the error names the resolved address and the setting');
is(scalar(grep { $_->{path} eq '/guard' } $receiver->requests), 0,
	'no request reached the receiver');

# Lift the restriction: the waiting events are delivered, in order.
sql(q{ALTER SYSTEM SET outbox_saga.http_deny_networks = '169.254.0.0/16, fe80::/10';
      SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{
	SELECT delivered_total = 3 FROM outbox.stats WHERE destination = 'by_name'}),
	'after a reload that allows loopback the events are delivered');
my @n = map { JSON::PP->new->decode($_->{body})->{data}{n} }
  grep { $_->{path} eq '/guard' } $receiver->requests;
is(join(',', @n), '1,2,3', 'in order');

# An invalid setting.  With the check hook it cannot be set at all; without
# it every address is refused (fail closed) and the log says why.
my $offset = -s $node->logfile;
my ($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET outbox_saga.http_deny_networks = '10.0.0.0/8, not-a-network'},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
if ($ret != 0)
{
	like($err, qr/22023.*not-a-network/s, 'an invalid network is refused by the setting\'s check');
}
else
{
	my $before = sql(q{SELECT failed_attempts_total FROM outbox.stats WHERE destination = 'by_name'});
	sql(q{SELECT pg_reload_conf()});
	# Until the dispatcher has reloaded, events still go through: emit one
	# per poll (another aggregate each time) until an attempt fails.
	ok($node->poll_query_until('postgres', qq{
		SELECT outbox.emit('guard', 'x', '{"n": 0}', 'c' || pg_catalog.clock_timestamp()) IS NOT NULL
		   AND failed_attempts_total > $before
		  FROM outbox.stats WHERE destination = 'by_name'}),
		'with an invalid setting delivery fails');
	is(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'by_name'}),
		'outbox_saga.http_deny_networks is invalid: every address is refused',
		'the error says the setting is invalid');
	ok(wait_for_log_match($node, qr/WARNING:  outbox_saga\.http_deny_networks is invalid: every HTTP destination is refused\n.*DETAIL:  "not-a-network" is not an IPv4 or IPv6 network/,
			$offset), 'the server log says which item is invalid');
	sql(q{ALTER SYSTEM SET outbox_saga.http_deny_networks = '169.254.0.0/16, fe80::/10';
	      SELECT pg_reload_conf()});
	ok($node->poll_query_until('postgres', q{
		SELECT retrying = 0 AND ready = 0 FROM outbox.stats WHERE destination = 'by_name'}),
		'fixed: the failed events are delivered');
}
sql(q{ALTER SYSTEM SET outbox_saga.http_deny_networks = '169.254.0.0/16, fe80::/10';
      SELECT pg_reload_conf()});

# A name that does not resolve: a retried failure; other destinations are
# not affected.
sql(q{SELECT outbox.create_destination('nowhere', 'http',
        '{"url": "http://no-such-host.invalid/hook", "backoff_base": "1 hour"}');
      SELECT outbox.subscribe('nowhere', 'nowhere');
      SELECT outbox.emit('nowhere', 'x', '{}')});
ok($node->poll_query_until('postgres', q{
	SELECT failed_attempts_total = 1 FROM outbox.stats WHERE destination = 'nowhere'}),
	'an unresolvable host fails');
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'nowhere'}),
	qr/^network error: Could not resolve host: no-such-host\.invalid/,
	'with libcurl\'s reason');
sql(q{SELECT outbox.emit('guard', 'x', '{"n": 5}', 'b')});
ok($receiver->wait_for(sub { grep { $_->{path} eq '/guard' && $_->{body} =~ /"n": 5/ } @_ }),
	'other destinations keep delivering');

$receiver->stop;
$node->stop;
done_testing();

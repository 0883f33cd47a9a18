# SSRF (issue 12 item 5).  By default outbox_saga.http_deny_networks denies
# every internal network (loopback, private, CGNAT, link-local,
# unique-local), so a non-superuser's http destination or saga http step
# cannot reach 127.0.0.1, whether the URL names the address, an IPv4-mapped
# or -compatible IPv6 form of it, or a host name that resolves to it.
# 0.0.0.0/8 and :: (which connect() takes as this host) are denied whatever
# the setting says, also after a superuser allowed loopback.  The receivers
# (HTTP on 127.0.0.1, a TCP listener on ::1) must log nothing; a control
# destination allowed by the setting shows they would have.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OutboxTest;
use WebhookReceiver;

my $node = new_node('ssrf', default_deny => 1,
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;
my $receiver = WebhookReceiver->new;
my $port = $receiver->port;

# A TCP listener on [::1] that records every connection it accepts.
my $dir = PostgreSQL::Test::Utils::tempdir('v6');
my $v6_py = q{
import os, socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::1", 0))
s.listen(16)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(600)
while True:
    c, a = s.accept()
    with open(sys.argv[2], "a") as f:
        f.write("conn\n")
    c.close()
};
my $v6 = IPC::Run::start([ 'python3', '-c', $v6_py, "$dir/port", "$dir/conns" ]);
for (1 .. 100) { last if -e "$dir/port"; usleep(50_000); }
my $port6 = slurp_file("$dir/port");
sub v6_connections { return -e "$dir/conns" ? scalar(() = slurp_file("$dir/conns") =~ /conn/g) : 0 }

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub as_mallory { return sqlstate_of($node, 'postgres', "SET ROLE mallory; $_[0]"); }

sql(q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE mallory;
	GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb),
	                          outbox.subscribe(text, text, text[]),
	                          outbox.emit(text, text, jsonb, text, jsonb, timestamptz),
	                          saga.define(text, jsonb, jsonb),
	                          saga.start(text, jsonb, text) TO mallory;
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');
is(sql('SHOW outbox_saga.http_deny_networks'),
	'127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,169.254.0.0/16,::1/128,fc00::/7,fe80::/10',
	'the default denies every internal network');

# Literal internal addresses: refused at create_destination and saga.define.
my @literal = ("http://0.0.0.0:$port/", "http://0.0.0.1:$port/", "http://[::]:$port6/",
	"http://127.0.0.1:$port/", "http://[::1]:$port6/",
	"http://[::ffff:127.0.0.1]:$port/", "http://[::ffff:0.0.0.0]:$port/",
	"http://[::127.0.0.1]:$port/", "http://[64:ff9b::127.0.0.1]:$port/",
	"http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
	"http://100.64.0.1/", "http://169.254.169.254/", "http://[fd00::1]/");
for my $url (@literal)
{
	is(as_mallory(qq{SELECT outbox.create_destination('d', 'http', '{"url": "$url"}')}),
		'22023', "create_destination refuses $url");
	is(as_mallory(qq{SELECT saga.define('s', '[{"name": "peek",
		"action": {"http": {"url": "$url", "method": "GET"}}}]')}),
		'22023', "saga.define refuses an http step to $url");
}
is(sql('SELECT count(*) FROM outbox.destination'), '0', 'no destination was created');
is(sql('SELECT count(*) FROM saga.definition'), '0', 'no saga definition was created');

# A name that resolves to loopback: accepted, refused when connecting.
is(as_mallory(qq{
	SELECT outbox.create_destination('by_name', 'http',
	       '{"url": "http://localhost:$port/by_name", "backoff_base": "100 ms",
	         "backoff_max": "200 ms", "max_attempts": 1000}');
	SELECT outbox.subscribe('by_name', 'ssrf');
	SELECT saga.define('peek', '[{"name": "peek", "max_attempts": 1,
		"action": {"http": {"url": "http://localhost:$port/internal/secret", "method": "GET"}}}]');
	SELECT saga.start('peek', '{}');
	SELECT outbox.emit('ssrf', 'x', '{}', 'a');
}), '', 'a destination and a saga step by host name are accepted');
ok($node->poll_query_until('postgres', q{
	SELECT failed_attempts_total > 0 FROM outbox.stats WHERE destination = 'by_name'}),
	'delivery to a name that resolves to loopback fails');
like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'by_name'}),
	qr/^address (127\.0\.0\.1|::1) is in outbox_saga\.http_deny_networks$/,
	'the error names the resolved address and the setting');
ok($node->poll_query_until('postgres', q{
	SELECT status IN ('compensated', 'failed') FROM saga.instances WHERE definition = 'peek'}),
	'the saga http step to a name that resolves to loopback fails');
like(sql(q{SELECT string_agg(error, ' ') FROM saga.step_runs WHERE step = 'peek'}),
	qr/http_deny_networks/, 'its error names the setting');

# A superuser allows loopback: 0.0.0.0 and :: stay denied.  (by_name would
# now reach the receiver: it goes first.)
sql(q{SELECT outbox.drop_destination('by_name')});
sql(q{ALTER SYSTEM SET outbox_saga.http_deny_networks = '169.254.0.0/16, fe80::/10';
      SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{
	SELECT setting = '169.254.0.0/16, fe80::/10' FROM pg_settings
	 WHERE name = 'outbox_saga.http_deny_networks'}), 'the new setting is in effect');
for my $url ("http://0.0.0.0:$port/", "http://[::]:$port6/", "http://[::ffff:0.0.0.0]:$port/",
	"http://[::0.0.0.0]:$port/")
{
	is(as_mallory(qq{SELECT outbox.create_destination('d', 'http', '{"url": "$url"}')}),
		'22023', "with loopback allowed, create_destination still refuses $url");
	is(as_mallory(qq{SELECT saga.define('s', '[{"name": "peek",
		"action": {"http": {"url": "$url", "method": "GET"}}}]')}),
		'22023', "with loopback allowed, saga.define still refuses $url");
}
# "0" is a host name that resolves to 0.0.0.0 (unless libcurl normalizes it
# to the literal, which is refused at once): refused when connecting.
my $zero = as_mallory(qq{
	SELECT outbox.create_destination('by_zero', 'http',
	       '{"url": "http://0:$port/by_zero", "backoff_base": "100 ms",
	         "backoff_max": "200 ms", "max_attempts": 1000}');
	SELECT outbox.subscribe('by_zero', 'ssrf');});
ok($zero eq '' || $zero eq '22023', "http://0:port/ is refused or accepted as a name ($zero)");
# The control: an allowed address is reached.
is(as_mallory(qq{
	SELECT outbox.create_destination('control', 'http', '{"url": "http://127.0.0.1:$port/control"}');
	SELECT outbox.subscribe('control', 'ssrf');}), '', 'loopback is allowed now');
sql(q{SELECT outbox.emit('ssrf', 'x', '{}', 'b')});
ok($receiver->wait_for(sub { grep { $_->{path} eq '/control' } @_ }, 60),
	'the control destination reaches the receiver');
if ($zero eq '')
{
	ok($node->poll_query_until('postgres', q{
		SELECT failed_attempts_total > 0 FROM outbox.stats WHERE destination = 'by_zero'}),
		'delivery to http://0:port/ fails');
	like(sql(q{SELECT last_error FROM outbox.stats WHERE destination = 'by_zero'}),
		qr/^address 0\.0\.0\.0 /,
		'the resolved 0.0.0.0 is refused');
}

my @reached = grep { $_->{path} ne '/control' } $receiver->requests;
is(scalar(@reached), 0, 'no request but the control reached the HTTP receiver')
  or diag(join(', ', map { $_->{path} } @reached));
is(v6_connections(), 0, 'nothing connected to the [::1] listener');

$v6->kill_kill;
$receiver->stop;
$node->stop;
done_testing();

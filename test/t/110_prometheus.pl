# Prometheus metrics (issue 17 items 1-3): the Debian exporter
# (prometheus-postgres-exporter) runs on loopback with the shipped
# contrib/prometheus/queries.yaml, connected as a pg_monitor role that is
# not a superuser, and /metrics is scraped over HTTP after a known workload:
# events delivered, a dead letter, an http endpoint that answers 410 Gone,
# a completed, a failed and an overdue saga, a destination whose topic is
# quiet while others are busy, a database whose SQL is still 0.1.0, and
# dispatch switched off and on.  Then promtool checks the alert rules
# (contrib/prometheus/alerts.yaml), runs their unit tests
# (alerts_test.yaml), and every metric that the rules and the Grafana
# dashboard use is one the exporter serves.
use strict;
use warnings;

use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OutboxTest;
use WebhookReceiver;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $promtool = '/usr/bin/promtool';
plan skip_all => "$exporter and $promtool are needed (scripts/deps.sh installs them)"
  unless -x $exporter && -x $promtool;

my $root = dirname(__FILE__) . '/../..';
my $contrib = "$root/contrib";

my $node = new_node('prometheus',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n"
	  . "outbox_saga.http_timeout = '2s'\n");
$node->start;
my $receiver = WebhookReceiver->new;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# The exporter's role: pg_monitor, nothing else.
sql(q{CREATE ROLE prom LOGIN IN ROLE pg_monitor; CREATE ROLE nobody LOGIN});
is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'prom'}), 'f', 'the exporter role is not a superuser');
for my $view (qw(outbox.stats outbox.database_stats saga.stats))
{
	is(sqlstate_of($node, 'postgres', "SET ROLE prom; SELECT * FROM $view"), '',
		"pg_monitor reads $view");
	is(sqlstate_of($node, 'postgres', "SET ROLE nobody; SELECT * FROM $view"), '42501',
		"a role without grants does not read $view");
}

# A database whose SQL is still 0.1.0: the dispatcher waits there.
sql(q{CREATE DATABASE legacy});
$node->safe_psql('legacy', q{CREATE EXTENSION outbox_saga VERSION '0.1.0'});

# --- the workload ----------------------------------------------------------
sql(q{
	CREATE TABLE seen (event_type text);
	CREATE FUNCTION record_event(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF e->>'event_type' = 'bad' THEN
			RAISE EXCEPTION 'refused %', e->>'event_id';
		END IF;
		INSERT INTO seen VALUES (e->>'event_type');
	END $$;
	SELECT outbox.create_destination('ledger', 'function',
		'{"function": "public.record_event", "max_attempts": 1}');
	SELECT outbox.subscribe('ledger', 'orders');
	SELECT outbox.create_destination('quiet', 'function', '{"function": "public.record_event"}');
	SELECT outbox.subscribe('quiet', 'quiet');
});
sql(sprintf(q{SELECT outbox.create_destination('partner', 'http', '{"url": "%s"}');
	SELECT outbox.subscribe('partner', 'partner');}, $receiver->url('/gone?status=410')));

# The quiet destination gets one event, then only other topics flow.
sql(q{SELECT outbox.emit('quiet', 'hello', '{}')});
ok(sql(q{SELECT outbox.wait_delivered('30 seconds', 'quiet')}) eq 't', 'quiet: its event is delivered');
sql(q{SELECT outbox.emit('orders', 'created', jsonb_build_object('n', g), 'o-' || g)
        FROM generate_series(1, 5) g});
sql(q{SELECT outbox.emit('orders', 'bad', '{}', 'poison')});
sql(q{SELECT outbox.emit('partner', 'ping', '{}')});
ok(sql(q{SELECT outbox.wait_delivered('30 seconds', 'ledger')}) eq 't', 'ledger: done');
ok($node->poll_query_until('postgres', q{SELECT paused FROM outbox.stats WHERE destination = 'partner'}),
	'partner: paused by the 410');

# Sagas: checkout completes (fail = false) or fails (its compensation gives
# up); hold runs past its 1 s deadline and keeps compensating (the
# compensation fails, with a long backoff and many attempts left).
sql(q{
	CREATE FUNCTION step_ok(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	CREATE FUNCTION step_maybe(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (ctx->'input'->>'fail')::boolean THEN RAISE EXCEPTION 'card declined'; END IF;
		RETURN '{}';
	END $$;
	CREATE FUNCTION undo_fails(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN RAISE EXCEPTION 'cannot undo'; END $$;
	SELECT saga.define('checkout', $$[
		{"name": "reserve", "action": {"function": "public.step_ok"},
		 "compensation": {"function": "public.undo_fails"}, "compensation_max_attempts": 1},
		{"name": "charge", "action": {"function": "public.step_maybe"}, "max_attempts": 1}]$$);
	SELECT saga.define('hold', $$[
		{"name": "reserve", "action": {"function": "public.step_ok"},
		 "compensation": {"function": "public.undo_fails"},
		 "compensation_max_attempts": 1000, "backoff_base": "1 hour", "backoff_max": "1 hour"},
		{"name": "wait", "action": {"emit": {"topic": "cmd", "event_type": "wait", "await": true}},
		 "timeout": "1 hour"}]$$, '{"deadline": "1 second"}');
	SELECT saga.start('checkout', '{"fail": false}');
	SELECT saga.start('checkout', '{"fail": true}');
	SELECT saga.start('hold');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'completed') = 1
	   AND count(*) FILTER (WHERE status = 'failed') = 1
	  FROM saga.instances WHERE definition = 'checkout'}), 'checkout: one completed, one failed');
ok($node->poll_query_until('postgres', q{
	SELECT status = 'compensating' AND deadline < now()
	  FROM saga.instances WHERE definition = 'hold'}), 'hold: compensating past its deadline');

# --- the exporter ------------------------------------------------------------
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = $node->basedir . '/exporter.log';

# Start the exporter on PORT for database DB, logging to LOG.
sub start_exporter
{
	my ($port, $dbname, $log) = @_;
	my $dsn = sprintf('host=%s port=%d user=prom dbname=%s sslmode=disable',
		$node->host, $node->port, $dbname);
	return IPC::Run::start(
		[ $exporter, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$contrib/prometheus/queries.yaml",
			'--disable-settings-metrics', '--log.level=warn' ],
		'<', \undef, '>', $log, '2>', $log,
		init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });
}
my $h = start_exporter($port, 'postgres', $log);

my $http = HTTP::Tiny->new(timeout => 10);

# One scrape (of the exporter on PORT, default $port): { 'name{label="v",
# ...}' => value } with labels sorted and the exporter's server label left
# out, and the raw text.
sub scrape
{
	my $res = $http->get("http://127.0.0.1:" . ($_[0] // $port) . "/metrics");
	return ({}, '') unless $res->{success};
	my %m;
	for my $line (split /\n/, $res->{content})
	{
		next if $line =~ /^#/ || $line !~ /^(\w+)(?:\{(.*)\})?\s+(\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		my @l = grep { !/^server=/ } ($labels =~ /(\w+="(?:[^"\\]|\\.)*")/g);
		$m{ $name . '{' . join(',', sort @l) . '}' } = $value;
	}
	return (\%m, $res->{content});
}

# Scrape (PORT, default $port) until every key of WANT has its value
# (numbers compared as numbers; a code ref tests the value); true if so.
# Diagnoses the misses.
sub scrape_until
{
	my ($want, $what, $on_port) = @_;
	my $deadline = time() + 60;
	my $m;
	while (1)
	{
		($m) = scrape($on_port);
		my @miss = grep {
			my $v = $m->{$_};
			!defined $v
			  || (ref $want->{$_} ? !$want->{$_}->($v) : $v != $want->{$_})
		} sort keys %$want;
		return pass($what) unless @miss;
		if (time() > $deadline)
		{
			diag("$_: " . ($m->{$_} // 'missing')) for @miss;
			return fail($what);
		}
		usleep(250_000);
	}
}

my $db = 'database="postgres"';
sub dest { return "$_[0]" . '{' . qq{$db,destination="$_[1]",kind="$_[2]"} . '}'; }
sub saga_m { return "outbox_saga_sagas_$_[0]" . '{' . qq{$db,definition="$_[1]"} . '}'; }
my $positive = sub { $_[0] > 0 };

scrape_until({
	'pg_up{}' => 1,
	'pg_exporter_last_scrape_error{}' => 0,
	qq{outbox_saga_extension_version_mismatch{available_version="0.2.0",$db,installed_version="0.2.0"}} => 0,
	qq{outbox_saga_database_dispatching{$db}} => 1,
	qq{outbox_saga_database_dispatchers{$db}} => 1,
	qq{outbox_saga_database_dispatchers_configured{$db}} => 1,
	qq{outbox_saga_database_log_bytes{$db}} => $positive,
	dest('outbox_saga_destination_delivered_total', 'ledger', 'function') => 5,
	dest('outbox_saga_destination_failed_attempts_total', 'ledger', 'function') => 1,
	dest('outbox_saga_destination_dead', 'ledger', 'function') => 1,
	dest('outbox_saga_destination_retrying', 'ledger', 'function') => 0,
	dest('outbox_saga_destination_pending', 'ledger', 'function') => 0,
	dest('outbox_saga_destination_paused', 'ledger', 'function') => 0,
	dest('outbox_saga_destination_paused_by_410', 'ledger', 'function') => 0,
	dest('outbox_saga_destination_last_delivered_time_seconds', 'ledger', 'function') =>
	  sub { abs($_[0] - time()) < 300 },
	dest('outbox_saga_destination_last_error_time_seconds', 'ledger', 'function') => $positive,
	dest('outbox_saga_destination_paused', 'partner', 'http') => 1,
	dest('outbox_saga_destination_paused_by_410', 'partner', 'http') => 1,
	dest('outbox_saga_destination_dead', 'partner', 'http') => 1,
	dest('outbox_saga_destination_delivered_total', 'partner', 'http') => 0,
	dest('outbox_saga_destination_delivered_total', 'quiet', 'function') => 1,
	dest('outbox_saga_destination_pending', 'quiet', 'function') => 0,
	dest('outbox_saga_destination_ready', 'quiet', 'function') => 0,
	dest('outbox_saga_destination_oldest_ready_age_seconds', 'quiet', 'function') => 0,
	dest('outbox_saga_destination_last_delivered_time_seconds', 'quiet', 'function') => $positive,
	saga_m('completed_total', 'checkout') => 1,
	saga_m('failed', 'checkout') => 1,
	saga_m('running', 'checkout') => 0,
	saga_m('compensated_total', 'checkout') => 0,
	saga_m('overdue', 'checkout') => 0,
	saga_m('compensating', 'hold') => 1,
	saga_m('overdue', 'hold') => 1,
	saga_m('oldest_overdue_seconds', 'hold') => $positive,
	saga_m('oldest_active_age_seconds', 'hold') => $positive,
}, 'the exporter serves the workload, as a pg_monitor role');

# A backlog: dispatch off, events wait and age; dispatching goes to 0.
$node->append_conf('postgresql.conf', "outbox_saga.enabled = off\n");
$node->reload;
ok(wait_no_dispatcher($node, 'postgres'), 'dispatch off');
sql(q{SELECT outbox.emit('orders', 'created', '{}', 'late')});
scrape_until({
	qq{outbox_saga_database_dispatching{$db}} => 0,
	qq{outbox_saga_database_dispatchers{$db}} => 0,
	dest('outbox_saga_destination_pending', 'ledger', 'function') => $positive,
	dest('outbox_saga_destination_ready', 'ledger', 'function') => $positive,
	dest('outbox_saga_destination_oldest_ready_age_seconds', 'ledger', 'function') =>
	  sub { $_[0] >= 1 },
}, 'dispatch off: dispatching 0, the ledger has a backlog that ages');

# Dispatch on again: the backlog is delivered; the counters went on from
# where they were (they are columns written with each batch).
$node->append_conf('postgresql.conf', "outbox_saga.enabled = on\n");
$node->reload;
ok(wait_for_dispatcher($node, 'postgres'), 'dispatch on');
scrape_until({
	qq{outbox_saga_database_dispatching{$db}} => 1,
	dest('outbox_saga_destination_delivered_total', 'ledger', 'function') => 6,
	dest('outbox_saga_destination_failed_attempts_total', 'ledger', 'function') => 1,
	dest('outbox_saga_destination_pending', 'ledger', 'function') => 0,
	dest('outbox_saga_destination_oldest_ready_age_seconds', 'ledger', 'function') => 0,
	saga_m('completed_total', 'checkout') => 1,
}, 'dispatch on: delivered, counters carried on');

unlike(slurp_file($log), qr/level=error/, 'the exporter logged no error (every query worked)')
  or diag(slurp_file($log));

# A restart of the server (and so of every dispatcher): counters stay.  The
# exporter reconnects (it logs the lost connection).
$node->restart;
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs after the restart');
scrape_until({
	'pg_up{}' => 1,
	dest('outbox_saga_destination_delivered_total', 'ledger', 'function') => 6,
	dest('outbox_saga_destination_failed_attempts_total', 'ledger', 'function') => 1,
	saga_m('completed_total', 'checkout') => 1,
}, 'after a restart the counters are where they were');

# The scrape itself: every metric of the queries file is served, with its
# help text, and nothing failed.
my ($m, $text) = scrape();
like($text, qr/^# HELP outbox_saga_destination_delivered_total Events delivered$/m,
	'the descriptions come through as HELP');
like($text, qr/^# TYPE outbox_saga_destination_delivered_total counter$/m, 'counters are typed counter');
like($text, qr/^# TYPE outbox_saga_destination_pending gauge$/m, 'gauges are typed gauge');
my %served = map { /^(\w+)\{/ ? ($1 => 1) : () } keys %$m;

# What the rules and the dashboard use is served.
my @used;
for my $file ("$contrib/prometheus/alerts.yaml", "$contrib/grafana/outbox_saga.json")
{
	my $content = slurp_file($file);
	my %names = map { $_ => 1 } ($content =~ /\b(outbox_saga_[a-z0-9_]+)/g);
	my @missing = grep { !$served{$_} } sort keys %names;
	ok(scalar(keys %names) > 5, "$file uses outbox_saga metrics");
	is_deeply(\@missing, [], "every metric $file uses is served");
}
my $dash = decode_json(slurp_file("$contrib/grafana/outbox_saga.json"));
my @exprs = map { $_->{expr} } map { @{ $_->{targets} // [] } } @{ $dash->{panels} };
ok(scalar(@exprs) >= 10, 'the dashboard has its panels');

$h->kill_kill;
$h->finish;

# The database still on 0.1.0: only the version check works there (the
# views are 0.2.0's), and it says so.
my $legacy_port = PostgreSQL::Test::Cluster::get_free_port();
my $hl = start_exporter($legacy_port, 'legacy', $node->basedir . '/exporter-legacy.log');
scrape_until({
	'pg_up{}' => 1,
	qq{outbox_saga_extension_version_mismatch{available_version="0.2.0",database="legacy",installed_version="0.1.0"}} => 1,
}, 'a database whose SQL is 0.1.0: version_mismatch 1', $legacy_port);
$hl->kill_kill;
$hl->finish;

# --- promtool ------------------------------------------------------------------
for my $cmd ([ 'check', 'rules', "$contrib/prometheus/alerts.yaml" ],
	[ 'test', 'rules', "$contrib/prometheus/alerts_test.yaml" ])
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, @$cmd ], '>', \$out, '2>', \$err);
	ok($ok, "promtool @$cmd[0..1]") or diag("$out$err");
}

# The dashboard's queries parse as PromQL: promtool checks them as
# recording rules (the dashboard's variables replaced by a match-all).
my $rules = $node->basedir . '/dashboard_rules.yaml';
open(my $fh, '>', $rules) or die "$rules: $!";
print $fh "groups:\n  - name: dashboard\n    rules:\n";
my $i = 0;
for my $expr (@exprs)
{
	(my $e = $expr) =~ s/\$(database|destination|definition)\b/.*/g;
	$e =~ s/'/''/g;
	print $fh "      - record: dashboard_query_" . $i++ . "\n        expr: '$e'\n";
}
close $fh;
my ($out, $err) = ('', '');
ok(IPC::Run::run([ $promtool, 'check', 'rules', $rules ], '>', \$out, '2>', \$err),
	"the dashboard's $i queries are valid PromQL") or diag("$out$err");

$receiver->stop;
$node->stop;
done_testing();

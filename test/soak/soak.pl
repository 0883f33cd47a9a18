# make soak: SOAK_MINUTES (default 30) of mixed load against one throwaway
# cluster, with faults, then checks.  Not part of make test or CI; run by
# scripts/soak.sh as the cluster user.  A TAP script: "ok"/"not ok" lines,
# exit status nonzero on any failed check; the figures are printed as notes
# and written to $SOAK_REPORT.  scripts/soak.sh builds the module into a private copy of
# the PostgreSQL installation and runs this script with that copy first in
# PATH.
#
# LOAD (both databases soak_a and soak_b, the same setup in each)
#   pgbench (-R SOAK_RATE transactions/s per database, 3 clients, rerun in
#   chunks of at most 60 s, restarted whenever a crash ends it):
#     emit.sql     UPDATE agg SET seq = seq + 1 ... RETURNING, then
#                  outbox.emit('orders', ..., {"a": id, "s": seq}, 'ord-'||id)
#                  in the same statement: the per-aggregate sequence number
#                  comes from a row the transaction updates, so the table is
#                  the truth of what committed, whatever a crash cut off,
#                  and two writers of one aggregate are ordered by its row
#                  lock (issue 14 item 1 is not what this soak measures).
#     capture.sql  UPDATE account SET v = v + 1 (capture trigger, topic
#                  'accounts', key id): new.v is the sequence number.
#     mixed.sql    both in one transaction (two aggregates, two topics).
#     saga.sql     saga.start('order', {"fail": random() < 0.2}): a three-step
#                  saga whose 'charge' step fails for good when fail is true,
#                  so that 'reserve' is compensated.
#   Destinations, each subscribed to 'orders' and 'accounts':
#     fn      function, writes every delivery into the table sink
#     flaky   function, fails for good on every 50th sequence number (dead
#             letters after 3 attempts) and 3% of the time otherwise
#     ntf     notify, with a LISTENing psql per database (reconnects after
#             crashes: notify is at most once to whoever listens)
#     wh      http, to test/lib/webhook_receiver.py (path /soak_a, /soak_b)
#     kf      kafka, librdkafka's mock cluster (test/kafka/kafka_mock.c)
#     nt      nats, a real nats-server -js
# FAULTS, in every period of SOAK_PERIOD seconds (default: a tenth of the run,
# at least 60 s), at fixed fractions of it:
#     1/6  kill -9 of a dispatcher (a random one of outbox.workers)
#     2/6  webhook receiver down for a ninth of the period, then up again
#     3/6  nats-server down (SIGTERM) for as long, then up again
#     4/6  the Kafka broker down for as long (mock cluster), then up again
#     5/6  kill -9 of a random client backend (a producer or a listener)
#   A kill -9 of any server process makes the postmaster restart every
#   process (crash restart).  Kills stop at two thirds of the run: the last
#   third measures dispatchers that live ten minutes, so that a leak shows as
#   growth over the middle third (with kills every 90 s no process would
#   live long enough to show one).  Outages go on until the end.
# SAMPLES every SOAK_SAMPLE seconds (default 30): per dispatcher slot
#   (database, worker number; the pid changes after a crash) VmRSS and
#   RssAnon from /proc/PID/status, and pg_total_relation_size of the outbox
#   and saga tables of each database.
# CHECKS after the load (receivers all back, everything drained):
#   - per destination: every event emitted after the subscriptions was
#     delivered or dead-lettered, never both on a function destination, and
#     nothing else arrived; no duplicate on function destinations (they
#     deliver in the recording transaction: exactly once); the first arrival
#     of every event is in sequence order per aggregate on every destination;
#     notify (at most once) got no event twice outside a crash and kept the
#     order; outbox.stats delivered_total + dead equals what was emitted.
#   - sagas: all terminal; fail=true ones compensated, the others completed;
#     every step function's write exactly once.
#   - the server log: no process ended by a signal other than our kill -9.
#   - flat after warm-up: the last third's maximum of a figure is at most
#     the middle third's maximum times (1 + tolerance) plus a slack:
#     RssAnon of every slot 10% + 2 MB; delivery_retry, tick and
#     generation 25% + 1 MB.  The log (outbox.events partitions) is judged
#     after the drain instead: retired to at most 1 MB within two minutes
#     (under steady writes its partition being written may hold up to a
#     generation, 65,536 events, which at the soak's rate outlasts the run).  RssAnon, not VmRSS:
#     VmRSS counts the shared buffers a process has touched, which grows
#     with a process's age without any leak (VmRSS is printed too).  Dead
#     letters and finished sagas are kept by design (until discard_dead /
#     drop_definition), so their tables grow with the run: printed, not
#     judged.
use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../lib';
use lib dirname(__FILE__) . '/../kafka';
use lib dirname(__FILE__) . '/../nats';
use IPC::Run;
use JSON::PP;
use List::Util qw(max min sum0 shuffle);
use POSIX qw(strftime WNOHANG);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OutboxTest;
use KafkaMock;
use NatsServer;
use WebhookReceiver;

my $minutes = $ENV{SOAK_MINUTES} // 30;
my $duration = $minutes * 60;
my $period = $ENV{SOAK_PERIOD} // max(60, int($duration / 10));
my $outage = int($period / 9) || 1;
my $sample_every = $ENV{SOAK_SAMPLE} // 30;
my $rate = $ENV{SOAK_RATE} // 40;
my $report_file = $ENV{SOAK_REPORT};
my $do_kills = $ENV{SOAK_KILLS} // 1;
my $do_outages = $ENV{SOAK_OUTAGES} // 1;
my @dbs = qw(soak_a soak_b);
my @dests = qw(fn flaky ntf wh kf nt);
my $json = JSON::PP->new->utf8->canonical;
my $t0;
my @report;

sub say_
{
	my ($msg) = @_;
	my $line = sprintf('[soak %s +%4ds] %s', strftime('%H:%M:%S', gmtime), $t0 ? time() - $t0 : 0, $msg);
	note($line);
}

sub out
{
	my ($line) = @_;
	note($line);
	push @report, $line;
}

# --- Peers ------------------------------------------------------------------
my $kafka = KafkaMock->new(brokers => 1);
my $brokers = $kafka->bootstrap;
for my $db (@dbs)
{
	is($kafka->cmd("topic $db.events 4"), 'ok', "kafka topic $db.events");
}
my $ns = NatsServer->new;
my $nats_url = $ns->url;
for my $db (@dbs)
{
	NatsServer::tool($nats_url, 'add-stream', uc($db), "$db.>");
}
my $wh = WebhookReceiver->new(lifetime => $duration + 3600);

# --- The cluster ------------------------------------------------------------
my $node = new_node('soak', workers => 2,
	conf => "outbox_saga.poll_interval = '200ms'\n"
	  . "restart_after_crash = on\nlog_statement = none\n"
	  . "log_min_messages = warning\nmax_connections = 60\n");
$node->start;
my ($host, $port) = ($node->host, $node->port);

sub sql
{
	my ($db, $q) = @_;
	return $node->safe_psql($db, $q);
}

# try_sql: the output, or undef when the server is away (crash restart).
sub try_sql
{
	my ($db, $q) = @_;
	my ($ret, $out, $err) = $node->psql($db, $q, timeout => 60);
	return $ret == 0 ? $out : undef;
}

my $setup = <<'SQL';
CREATE EXTENSION outbox_saga;
CREATE TABLE agg (id int PRIMARY KEY, seq int NOT NULL DEFAULT 0);
INSERT INTO agg SELECT g FROM generate_series(1, 50) g;
CREATE TABLE account (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, note text NOT NULL DEFAULT '');
INSERT INTO account SELECT g FROM generate_series(1, 50) g;
SELECT outbox.capture_table('account', topic => 'accounts');
CREATE TABLE sink (pos bigserial PRIMARY KEY, dest text, event_id uuid, topic text,
                   agg text, seq int, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.seq_of(e outbox.events) RETURNS int LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE e.topic WHEN 'orders' THEN (e.payload->>'s')::int
	                    ELSE (e.payload->'new'->>'v')::int END $$;
CREATE FUNCTION public.fn_sink(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.sink (dest, event_id, topic, agg, seq)
	VALUES ('fn', e.event_id, e.topic, e.aggregate_id, public.seq_of(e));
END $$;
CREATE FUNCTION public.flaky_sink(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF public.seq_of(e) % 50 = 0 THEN
		RAISE EXCEPTION 'poison event % %', e.aggregate_id, public.seq_of(e);
	END IF;
	IF random() < 0.03 THEN
		RAISE EXCEPTION 'transient failure';
	END IF;
	INSERT INTO public.sink (dest, event_id, topic, agg, seq)
	VALUES ('flaky', e.event_id, e.topic, e.aggregate_id, public.seq_of(e));
END $$;
CREATE TABLE saga_log (saga_id uuid, step text, phase text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.step_ok(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.saga_log (saga_id, step, phase)
	VALUES ((ctx->>'saga_id')::uuid, ctx->>'step', ctx->>'phase');
	RETURN '{"ok": true}';
END $$;
CREATE FUNCTION public.step_charge(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (ctx->'input'->>'fail')::boolean THEN
		RAISE EXCEPTION 'card declined';
	END IF;
	RETURN public.step_ok(ctx);
END $$;
SELECT saga.define('order', '[
  {"name": "reserve", "action": {"function": "public.step_ok"},
   "compensation": {"function": "public.step_ok"}},
  {"name": "charge", "action": {"function": "public.step_charge"},
   "compensation": {"function": "public.step_ok"},
   "max_attempts": 2, "backoff_base": "10ms", "backoff_max": "50ms"},
  {"name": "ship", "action": {"emit": {"topic": "shipping", "event_type": "ship"}}}]');
SQL

my $net = q{"max_attempts": 1000000, "backoff_base": "100ms", "backoff_max": "2s", "timeout": "5s"};
for my $db (@dbs)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	sql($db, $setup);
	my $wh_url = $wh->url("/$db");
	sql($db, qq{
		SELECT outbox.create_destination('fn', 'function', '{"function": "public.fn_sink"}');
		SELECT outbox.create_destination('flaky', 'function',
			'{"function": "public.flaky_sink", "max_attempts": 3, "backoff_base": "10ms", "backoff_max": "50ms"}');
		SELECT outbox.create_destination('ntf', 'notify', '{"channel": "soak_ch"}');
		SELECT outbox.create_destination('wh', 'http', '{"url": "$wh_url", $net}');
		SELECT outbox.create_destination('kf', 'kafka', '{"brokers": "$brokers", "topic": "$db.events",
			"properties": {"linger.ms": 5}, $net}');
		SELECT outbox.create_destination('nt', 'nats', '{"url": "$nats_url", "subject": "$db.{topic}", $net}');
		SELECT outbox.subscribe(d, t) FROM unnest('{fn,flaky,ntf,wh,kf,nt}'::text[]) d,
		       unnest('{orders,accounts}'::text[]) t;
	});
	ok(wait_for_dispatcher($node, $db), "$db: its dispatchers run");
}

# --- Producers: pgbench, rerun in chunks ---------------------------------------
my $bench_dir = PostgreSQL::Test::Utils::tempdir('pgbench');
my %scripts = (
	'emit.sql' => q{\set a random(1, 50)
WITH u AS (UPDATE agg SET seq = seq + 1 WHERE id = :a RETURNING id, seq)
SELECT outbox.emit('orders', 'step', jsonb_build_object('a', id, 's', seq), 'ord-' || id) FROM u;
},
	'capture.sql' => q{\set a random(1, 50)
UPDATE account SET v = v + 1 WHERE id = :a;
},
	'mixed.sql' => q{\set a random(1, 50)
\set b random(1, 50)
BEGIN;
UPDATE account SET v = v + 1 WHERE id = :a;
WITH u AS (UPDATE agg SET seq = seq + 1 WHERE id = :b RETURNING id, seq)
SELECT outbox.emit('orders', 'step', jsonb_build_object('a', id, 's', seq), 'ord-' || id) FROM u;
COMMIT;
},
	'saga.sql' => q{SELECT saga.start('order', jsonb_build_object('fail', random() < 0.2));
},);
while (my ($f, $text) = each %scripts)
{
	open my $fh, '>', "$bench_dir/$f" or die;
	print $fh $text;
	close $fh;
}

my %bench;    # db -> pid of its pgbench
my $bench_runs = 0;
my $bench_log = "$PostgreSQL::Test::Utils::tmp_check/log/soak_pgbench.log";

sub bench_start
{
	my ($db, $seconds) = @_;
	my @cmd = ('pgbench', '-n', '-h', $host, '-p', $port, '-c', 3, '-j', 1,
		'-R', $rate, '-T', $seconds,
		'-f', "$bench_dir/emit.sql\@4", '-f', "$bench_dir/capture.sql\@3",
		'-f', "$bench_dir/mixed.sql\@1", '-f', "$bench_dir/saga.sql\@1", $db);
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', $bench_log;
		open STDERR, '>&', \*STDOUT;
		exec(@cmd) or POSIX::_exit(127);
	}
	$bench{$db} = $pid;
	$bench_runs++;
}

# Whether DB's pgbench still runs (reaps it once it ended).
sub bench_running
{
	my ($db) = @_;
	return 0 unless $bench{$db};
	return 1 if waitpid($bench{$db}, WNOHANG) == 0;
	delete $bench{$db};
	return 0;
}

# --- NOTIFY listeners: psql reading notifications after each SELECT 1 ---------
my %listen;    # db -> {h, in, out, err}
my %notes;     # db -> [[event_id, topic, agg, seq, crash_epoch], ...]
my $crash_epoch = 0;

sub listener_start
{
	my ($db) = @_;
	my $l = { in => "LISTEN soak_ch;\nSELECT 'listening';\n", out => '', err => '' };
	$l->{h} = IPC::Run::start([ 'psql', '-XAtq', '-h', $host, '-p', $port, '-d', $db, '-f', '-' ],
		'<', \$l->{in}, '>', \$l->{out}, '2>', \$l->{err});
	$listen{$db} = $l;
}

sub listener_pump
{
	my ($db, $send) = @_;
	my $l = $listen{$db};
	if (!$l)
	{
		listener_start($db);
		return;
	}
	$l->{in} .= "SELECT 1;\n" if $send;
	# Read whatever psql has printed (several reads: a busy second fills
	# more than one pipe buffer).
	for (1 .. 50)
	{
		my $before = length($l->{out});
		eval { $l->{h}->pump_nb };
		last if length($l->{out}) == $before;
	}
	while ($l->{out} =~ s/^([^\n]*)\n//)
	{
		my $line = $1;
		next unless $line =~ /^Asynchronous notification "soak_ch" with payload "(.*)" received from server process with PID \d+\.$/;
		my $e = $json->decode($1);
		my $seq = $e->{topic} eq 'orders' ? $e->{payload}{s} : $e->{payload}{new}{v};
		push @{ $notes{$db} }, [ $e->{event_id}, $e->{topic}, $e->{aggregate_id}, $seq, $crash_epoch ];
	}
	unless ($l->{h}->pumpable)
	{
		eval { $l->{h}->finish };
		delete $listen{$db};
	}
}

# (Re)start DB's listener and wait until it listens; true if it does.  After
# a crash restart its psql has lost its connection.
sub listener_restart
{
	my ($db) = @_;
	if (my $old = delete $listen{$db})
	{
		eval { $old->{h}->kill_kill };
	}
	listener_start($db);
	my $l = $listen{$db};
	my $deadline = time() + 60;
	until ($l->{out} =~ /^listening$/m || time() > $deadline)
	{
		eval { $l->{h}->pump_nb };
		unless ($l->{h}->pumpable)
		{
			# Not connected yet (the server is still recovering): again.
			eval { $l->{h}->finish };
			usleep(200_000);
			listener_start($db);
			$l = $listen{$db};
		}
		usleep(50_000);
	}
	return $l->{out} =~ /^listening$/m;
}

# --- Samples --------------------------------------------------------------------
my @samples;    # {t, rss => {slot => [vmrss_kb, anon_kb, pid]}, rel => {db => {name => bytes}}, emitted}
my %rel_sql = (
	events => q{SELECT sum(pg_total_relation_size(c)) FROM unnest('{outbox.events_p0,outbox.events_p1,outbox.events_p2,outbox.events_p3}'::regclass[]) c},
	retry => q{SELECT pg_total_relation_size('outbox.delivery_retry')},
	dead => q{SELECT pg_total_relation_size('outbox.dead_letter')},
	tick => q{SELECT pg_total_relation_size('outbox.tick') + pg_total_relation_size('outbox.generation')},
	saga => q{SELECT pg_total_relation_size('saga.instance') + pg_total_relation_size('saga.step_run')},
	ticks => q{SELECT count(*) FROM outbox.tick},
);
my @rel_names = qw(events retry tick dead saga);    # sizes; ticks is a row count

sub proc_status
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return;
	my ($rss, $anon);
	while (<$fh>)
	{
		$rss = $1 if /^VmRSS:\s+(\d+)/;
		$anon = $1 if /^RssAnon:\s+(\d+)/;
	}
	return ($rss, $anon);
}

sub emitted_sql
{
	return q{SELECT (SELECT sum(seq) FROM agg) + (SELECT sum(v) FROM account)};
}

sub take_sample
{
	my %s = (t => int(time() - $t0), rss => {}, rel => {}, emitted => 0);
	my $w = try_sql('soak_a', q{SELECT coalesce(database, 'launcher') || '/' || coalesce(worker::text, ''), pid
	                                FROM outbox.workers ORDER BY 1});
	return unless defined $w;
	for my $line (split /\n/, $w)
	{
		my ($slot, $pid) = split /\|/, $line;
		$slot =~ s{/$}{};
		my ($rss, $anon) = proc_status($pid);
		$s{rss}{$slot} = [ $rss, $anon, $pid ] if defined $rss;
	}
	for my $db (@dbs)
	{
		my $q = join(' UNION ALL ', map { "SELECT '$_', ($rel_sql{$_})" } @rel_names, 'ticks')
		  . ' UNION ALL SELECT \'emitted\', (' . emitted_sql() . ')';
		my $out = try_sql($db, $q);
		return unless defined $out;
		for my $line (split /\n/, $out)
		{
			my ($k, $v) = split /\|/, $line;
			if ($k eq 'emitted') { $s{emitted} += $v; }
			else { $s{rel}{$db}{$k} = $v; }
		}
	}
	push @samples, \%s;
	my $a = $s{rel}{soak_a};
	say_(sprintf('sample: emitted %d, soak_a events %d kB, retry %d kB, tick %d kB (%d rows); dispatchers %s',
		$s{emitted}, $a->{events} / 1024, $a->{retry} / 1024, $a->{tick} / 1024, $a->{ticks},
		join(' ', map { "$_=" . int($s{rss}{$_}[1] / 1024) . 'MB' } sort keys %{ $s{rss} })));
}

# --- Faults ---------------------------------------------------------------------
my @kills;    # [t, what, pid]

sub wait_back
{
	for my $db (@dbs)
	{
		wait_for_dispatcher($node, $db) or say_("$db: dispatchers not back");
	}
}

sub kill_one
{
	my ($what) = @_;
	my $q = $what eq 'dispatcher'
	  ? q{SELECT pid FROM outbox.workers WHERE kind = 'dispatcher'}
	  : q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()};
	my $out = try_sql('soak_a', $q);
	my @pids = grep { /^\d+$/ } split /\n/, $out // '';
	unless (@pids)
	{
		say_("no $what to kill");
		return;
	}
	my $pid = (shuffle @pids)[0];
	say_("kill -9 $what $pid");
	kill 'KILL', $pid;
	$crash_epoch++;
	push @kills, [ int(time() - $t0), $what, $pid, strftime('%H:%M:%S', gmtime) ];
	# The postmaster restarts everything; wait until it serves again.
	$node->poll_query_until('postgres', 'SELECT true') or die 'the server did not come back';
	wait_back();
	# What the listeners had read before the crash, then new sessions.
	for my $db (@dbs)
	{
		listener_pump($db, 0);
		listener_restart($db) or say_("$db: the listener did not come back");
	}
}

my %outage_fn = (
	webhook => [ sub { $wh->stop }, sub { $wh->start } ],
	nats => [ sub { $ns->stop }, sub { $ns->start } ],
	kafka => [ sub { $kafka->cmd('down 1') }, sub { $kafka->cmd('up 1') } ],
);
my %down;     # what -> t when it comes back
my @outages;  # [t, what]

# The schedule of one period: [fraction, action].
my @plan = ([ 1 / 6, 'kill dispatcher' ], [ 2 / 6, 'down webhook' ], [ 3 / 6, 'down nats' ],
	[ 4 / 6, 'down kafka' ], [ 5 / 6, 'kill backend' ]);
my %fired;

# --- The run ------------------------------------------------------------------------
for my $db (@dbs)
{
	ok(listener_restart($db), "$db: a session LISTENs on the notify destination's channel");
}
$t0 = time();
say_("load for $minutes min: rate $rate tx/s per database, period $period s, outages $outage s, samples every $sample_every s");
my $next_sample = 0;
my $tick = 0;
while (1)
{
	my $now = time() - $t0;
	last if $now >= $duration;

	for my $db (@dbs)
	{
		if (!bench_running($db))
		{
			my $left = int($duration - $now);
			bench_start($db, min(60, $left)) if $left >= 2;
		}
		listener_pump($db, 1);
	}

	my $p = int($now / $period);
	for my $step (@plan)
	{
		my ($frac, $action) = @$step;
		next if $fired{"$p $action"} || $now < $p * $period + $frac * $period;
		$fired{"$p $action"} = 1;
		if ($action =~ /^kill (\w+)/)
		{
			kill_one($1) if $do_kills && $now < 2 * $duration / 3;
		}
		elsif ($do_outages && $action =~ /^down (\w+)/ && !$down{$1} && $now + $outage < $duration)
		{
			say_("$1 down for $outage s");
			$outage_fn{$1}[0]->();
			$down{$1} = $now + $outage;
			push @outages, [ int($now), $1 ];
		}
	}
	for my $what (sort keys %down)
	{
		next if $now < $down{$what};
		$outage_fn{$what}[1]->();
		delete $down{$what};
		say_("$what up");
	}

	if ($now >= $next_sample)
	{
		take_sample();
		$next_sample += $sample_every;
	}
	$tick++;
	my $rest = 1 - (time() - $t0 - $now);
	usleep(int($rest * 1_000_000)) if $rest > 0;
}

# --- Drain --------------------------------------------------------------------------
say_('load over: stopping the producers, every peer up');
for my $db (@dbs)
{
	waitpid($bench{$db}, 0) if $bench{$db};
}
$outage_fn{$_}[1]->() for keys %down;
%down = ();
take_sample();
my $drained = 1;
for my $db (@dbs)
{
	my $ok = wait_until($node, $db, q{SELECT outbox.wait_delivered('10s')}, 600);
	ok($ok, "$db: every destination drained (outbox.wait_delivered)");
	$drained &&= $ok;
	ok(wait_until($node, $db, q{SELECT count(*) = 0 FROM saga.instances WHERE status IN ('running', 'compensating')}, 300),
		"$db: every saga finished");
}
# The listeners read what is still on their way: until three rounds of
# SELECT 1 bring nothing new (at most two minutes).
{
	my ($quiet, $deadline) = (0, time() + 120);
	while ($quiet < 3 && time() < $deadline)
	{
		my $before = sum0(map { scalar(@{ $notes{$_} // [] }) } @dbs);
		listener_pump($_, 1) for @dbs;
		usleep(500_000);
		listener_pump($_, 0) for @dbs;
		my $after = sum0(map { scalar(@{ $notes{$_} // [] }) } @dbs);
		$quiet = $after == $before ? $quiet + 1 : 0;
	}
}
take_sample();
my $elapsed = int(time() - $t0);

# --- Checks: deliveries ----------------------------------------------------------------
# check_dest(db, dest, arrivals, %opts): arrivals are [event_id, topic, agg,
# seq, epoch] in arrival order.
my %figures;    # "db dest" -> {...}
my %id_of;      # "db topic agg seq" -> event_id, from any destination

# The time in a UUIDv7 (its first 48 bits: Unix milliseconds).
sub uuid_time
{
	my ($id) = @_;
	return '?' unless $id && $id =~ /^([0-9a-f]{8})-([0-9a-f]{4})/;
	my $ms = hex($1 . $2);
	return strftime('%H:%M:%S', gmtime(int($ms / 1000))) . sprintf('.%03d', $ms % 1000);
}

sub check_dest
{
	my ($db, $dest, $arr, %o) = @_;
	my $label = "$db/$dest";
	my %expect = %{ $o{expect} };    # "topic agg" -> N
	my %dead = %{ $o{dead} };        # "topic agg seq" -> 1
	my (%seen, %first_last, $dups, $dups_same_epoch, $order_breaks, $unexpected, %epoch_of);
	$dups = $dups_same_epoch = $order_breaks = $unexpected = 0;
	my @examples;
	for my $a (@$arr)
	{
		my ($id, $topic, $agg, $seq, $epoch) = @$a;
		my $key = "$topic $agg $seq";
		$id_of{"$db $key"} //= $id;
		if ($seen{$key}++)
		{
			$dups++;
			$dups_same_epoch++ if defined $epoch && $epoch_of{$key} == $epoch;
			next;
		}
		$epoch_of{$key} = $epoch // 0;
		if (!defined $expect{"$topic $agg"} || $seq < 1 || $seq > $expect{"$topic $agg"})
		{
			$unexpected++;
			push @examples, "unexpected $key" if @examples < 5;
			next;
		}
		my $last = $first_last{"$topic $agg"} // 0;
		if ($seq <= $last)
		{
			$order_breaks++;
			push @examples, "order: $topic $agg $seq after $last" if @examples < 5;
		}
		$first_last{"$topic $agg"} = $seq;
	}
	my ($missing, $both, $total) = (0, 0, 0);
	for my $ta (keys %expect)
	{
		for my $s (1 .. $expect{$ta})
		{
			$total++;
			my $k = "$ta $s";
			if ($dead{$k})
			{
				$both++ if $seen{$k};
			}
			elsif (!$seen{$k})
			{
				$missing++;
				my $id = $id_of{"$db $k"};
				push @examples, "missing $k (" . ($id // '?') . ' written ' . uuid_time($id) . ')'
				  if @examples < 10;
			}
		}
	}
	my $f = $figures{"$db $dest"} = {
		emitted => $total, arrivals => scalar(@$arr), distinct => scalar(keys %seen) - $unexpected,
		dead => scalar(keys %dead), missing => $missing, dups => $dups, order => $order_breaks,
		unexpected => $unexpected, both => $both,
	};
	note("$label: " . join(', ', map { "$_ $f->{$_}" } sort keys %$f));
	note("$label: $_") for @examples;
	if ($o{at_most_once})
	{
		is($order_breaks + $unexpected, 0, "$label: in order per aggregate, nothing unexpected");
		is($dups_same_epoch, 0, "$label: no notification twice between two crashes");
		return;
	}
	is($missing, 0, "$label: every event delivered or dead-lettered");
	is($unexpected, 0, "$label: nothing delivered that was not emitted");
	is($order_breaks, 0, "$label: first arrivals in order per aggregate");
	if ($o{exactly_once})
	{
		is($dups, 0, "$label: no duplicate (delivered in the recording transaction)");
		is($both, 0, "$label: nothing both delivered and dead-lettered");
	}
}

# The webhook receiver's log, read once (it holds both databases).
my %wh_arrivals;
for my $r ($wh->requests)
{
	next unless $r->{path} =~ m{^/(soak_[ab])$};
	my $b = $json->decode($r->{body});
	my $seq = $b->{topic} eq 'orders' ? $b->{data}{s} : $b->{data}{new}{v};
	push @{ $wh_arrivals{$1} }, [ $b->{id}, $b->{topic}, $b->{aggregate_id}, $seq ];
}

for my $db (@dbs)
{
	my %expect;
	for my $line (split /\n/, sql($db, q{SELECT 'orders', 'ord-' || id, seq FROM agg WHERE seq > 0
	                                      UNION ALL SELECT 'accounts', id::text, v FROM account WHERE v > 0}))
	{
		my ($t, $a, $n) = split /\|/, $line;
		$expect{"$t $a"} = $n;
	}
	my %dead = map { $_ => {} } @dests;
	for my $line (split /\n/, sql($db, q{SELECT destination, topic, aggregate_id,
	        CASE topic WHEN 'orders' THEN payload->>'s' ELSE payload->'new'->>'v' END
	      FROM outbox.dead_letters}))
	{
		my ($d, $t, $a, $s) = split /\|/, $line;
		$dead{$d}{"$t $a $s"} = 1;
	}
	my %stats = map { my @f = split /\|/; ($f[0] => [ $f[1], $f[2] ]) }
	  split /\n/, sql($db, q{SELECT destination, delivered_total, dead FROM outbox.stats});

	# Every destination's arrivals, [event_id, topic, aggregate, seq(, crash
	# epoch)] in arrival order.
	my %arr;
	for my $dest (qw(fn flaky))
	{
		$arr{$dest} = [ map { [ split /\|/ ] } split /\n/,
		  sql($db, qq{SELECT event_id, topic, agg, seq FROM sink WHERE dest = '$dest' ORDER BY pos}) ];
	}
	$arr{ntf} = $notes{$db} // [];
	$arr{wh} = $wh_arrivals{$db} // [];
	for my $m (sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} }
		$kafka->consume("$db.events", 0, 120))
	{
		my $topic = $m->{headers}{topic};
		my $seq = $topic eq 'orders' ? $m->{value}{s} : $m->{value}{new}{v};
		push @{ $arr{kf} }, [ $m->{headers}{id}, $topic, $m->{key}, $seq ];
	}
	for my $m (NatsServer::dump($nats_url, uc($db)))
	{
		my $topic = $m->{headers}{topic};
		my $seq = $topic eq 'orders' ? $m->{data}{s} : $m->{data}{new}{v};
		push @{ $arr{nt} }, [ $m->{headers}{id}, $topic, $m->{headers}{aggregate_id}, $seq ];
	}
	for my $dest (@dests)
	{
		$id_of{"$db $_->[1] $_->[2] $_->[3]"} //= $_->[0] for @{ $arr{$dest} // [] };
	}
	for my $dest (@dests)
	{
		check_dest($db, $dest, $arr{$dest} // [], expect => \%expect, dead => $dead{$dest},
			exactly_once => ($dest =~ /^(fn|flaky)$/ ? 1 : 0), at_most_once => ($dest eq 'ntf' ? 1 : 0));
	}

	for my $dest (@dests)
	{
		my $f = $figures{"$db $dest"};
		$f->{delivered_total} = $stats{$dest}[0];
		is($stats{$dest}[0] + $stats{$dest}[1], $f->{emitted},
			"$db/$dest: outbox.stats delivered_total + dead = emitted");
	}

	# Sagas.
	my $bad = sql($db, q{
		SELECT count(*) FILTER (WHERE status NOT IN ('completed', 'compensated')
		                        OR ((input->>'fail')::boolean AND status <> 'compensated')
		                        OR (NOT (input->>'fail')::boolean AND status <> 'completed'))
		  FROM saga.instances});
	is($bad, 0, "$db: every saga terminal: failing ones compensated, the others completed");
	my $log_bad = sql($db, q{
		WITH want AS (
			SELECT i.id, s.step, s.phase
			  FROM saga.instances i,
			       LATERAL (VALUES ('reserve', 'action', true),
			                       ('charge', 'action', NOT (i.input->>'fail')::boolean),
			                       ('reserve', 'compensation', (i.input->>'fail')::boolean)) s(step, phase, yes)
			 WHERE s.yes),
		got AS (SELECT saga_id AS id, step, phase, count(*) AS n FROM saga_log GROUP BY 1, 2, 3)
		SELECT count(*) FROM want FULL JOIN got USING (id, step, phase) WHERE got.n IS DISTINCT FROM 1});
	is($log_bad, 0, "$db: every saga step function's write exactly once");
	my $saga_fig = sql($db, q{SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
	                            FROM (SELECT status, count(*) n FROM saga.instances GROUP BY 1) s});
	$figures{"$db sagas"} = $saga_fig;
	note("$db sagas: $saga_fig");
}

# --- Checks: the server log ---------------------------------------------------------------
my $log = slurp_file($node->logfile);
my @signals = ($log =~ /terminated by signal (\d+)/g);
my @other = grep { $_ != 9 } @signals;
is(scalar(@other), 0, 'no server process ended by a signal other than our kill -9')
  or note('signals: ' . join(',', @signals));
my $our_kills = grep { $_ == 9 } @signals;
is($our_kills, scalar(@kills), 'one crash restart per kill -9');

# --- Flat after warm-up ------------------------------------------------------------------------
my @mid = grep { $_->{t} >= $duration / 3 && $_->{t} < 2 * $duration / 3 } @samples;
my @last = grep { $_->{t} >= 2 * $duration / 3 && $_->{t} <= $duration } @samples;

sub flat
{
	my ($what, $get, $tol, $slack) = @_;
	my @m = grep { defined } map { $get->($_) } @mid;
	my @l = grep { defined } map { $get->($_) } @last;
	return unless @m && @l;
	my ($mm, $lm) = (max(@m), max(@l));
	my $limit = $mm * (1 + $tol) + $slack;
	ok($lm <= $limit, sprintf('%s flat: last third max %.1f MB <= middle third max %.1f MB * %.2f + %.1f MB',
		$what, $lm / 1048576, $mm / 1048576, 1 + $tol, $slack / 1048576));
}
my %slots;
$slots{$_} = 1 for map { keys %{ $_->{rss} } } @samples;
for my $slot (sort keys %slots)
{
	flat("RssAnon of $slot", sub { my $r = $_[0]{rss}{$slot}; $r ? $r->[1] * 1024 : undef }, 0.10, 2 * 1048576);
}
for my $db (@dbs)
{
	for my $rel (qw(retry tick))
	{
		flat("$db $rel", sub { $_[0]{rel}{$db}{$rel} }, 0.25, 1048576);
	}
	# The log is not judged by thirds: under steady writes the partition
	# being written retires only at a moment when everything in it is
	# consumed, so it may hold up to a generation (65,536 events), which at
	# the soak's rate is longer than the run.  Bounded means: once the load
	# stops and everything is consumed, the log is retired.
	ok(wait_until($node, $db, "SELECT ($rel_sql{events}) <= 1048576", 120),
		"$db events: the log is retired once everything is consumed (<= 1 MB after the drain)");
}

# --- The figures ----------------------------------------------------------------------------------
out(sprintf('soak: %d min of load (%d s in all with the drain), %d pgbench runs, rate %d tx/s per database',
	$minutes, $elapsed, $bench_runs, $rate));
out('kills: ' . join(', ', map { "+$_->[0]s ($_->[3]) $_->[1]" } @kills));
out('outages: ' . join(', ', map { "+$_->[0]s $_->[1]" } @outages) . " ($outage s each)");
out('');
out('Deliveries per destination (both databases):');
out('| destination | emitted | arrivals | distinct | dead letters | missing | duplicates | order breaks | delivered_total |');
out('|---|---|---|---|---|---|---|---|---|');
for my $dest (@dests)
{
	my @f = map { $figures{"$_ $dest"} } @dbs;
	my $s = sub { my $k = shift; sum0(map { $_->{$k} // 0 } @f) };
	out(sprintf('| %s | %d | %d | %d | %d | %d | %d | %d | %d |', $dest, $s->('emitted'), $s->('arrivals'),
		$s->('distinct'), $s->('dead'), $s->('missing'), $s->('dups'), $s->('order'), $s->('delivered_total')));
}
out('sagas: ' . join('; ', map { "$_: " . ($figures{"$_ sagas"} // '') } @dbs));
out('');
my @slot_list = sort keys %slots;
out('Memory: RssAnon MB (VmRSS MB) per dispatcher slot (database/worker; a new pid after each crash restart):');
out('| t (s) | ' . join(' | ', @slot_list) . ' |');
out('|---' x (1 + @slot_list) . '|');
for my $s (@samples)
{
	out(sprintf('| %d | %s |', $s->{t}, join(' | ', map {
		my $r = $s->{rss}{$_};
		$r ? sprintf('%.1f (%.1f)', $r->[1] / 1024, $r->[0] / 1024) : '-'
	} @slot_list)));
}
out('');
out('Storage: kB, soak_a / soak_b (events = the four outbox.events partitions; tick = tick + generation; saga = instance + step_run):');
out('| t (s) | emitted | ' . join(' | ', @rel_names) . ' | tick rows |');
out('|---' x (3 + @rel_names) . '|');
for my $s (@samples)
{
	out(sprintf('| %d | %d | %s | %s |', $s->{t}, $s->{emitted}, join(' | ', map {
		my $r = $_;
		join(' / ', map { int(($s->{rel}{$_}{$r} // 0) / 1024) } @dbs)
	} @rel_names), join(' / ', map { $s->{rel}{$_}{ticks} // 0 } @dbs)));
}

if ($report_file)
{
	open my $fh, '>', $report_file or die "cannot write $report_file: $!";
	print $fh "$_\n" for @report;
	close $fh;
}

$node->stop('fast');
$ns->stop;
$kafka->stop;
$wh->stop;
done_testing();

# The life of the background workers (SPEC 4, 3.3): one dispatcher per
# database with the extension, several at once, each delivering its own
# database's events; CREATE / DROP EXTENSION start and stop them; DROP
# DATABASE, ALTER DATABASE RENAME and CREATE DATABASE ... TEMPLATE are not
# blocked by them; a terminated dispatcher or launcher comes back and
# delivery goes on (pg_cancel_backend does not end a dispatcher at all);
# SIGHUP applies outbox_saga.enabled and outbox_saga.databases; a SQL
# version that does not match the library makes the dispatcher wait (and
# say so, in the log, outbox.stats and wait_idle) without delivering;
# handler errors, a handler past its timeout and a dropped handler do not
# kill the dispatcher, show in outbox.stats and heal once fixed; DROP and
# CREATE EXTENSION while the launcher is descheduled still end with a
# dispatcher; without shared_preload_libraries events are still written and
# outbox.stats / wait_idle say that dispatch is off.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OutboxTest;

my $node = new_node('life',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;

my $handler_sql = q{
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT s.fail FROM public.switch s) THEN
			RAISE EXCEPTION 'handler refuses event %', e.payload->>'tag';
		END IF;
		INSERT INTO public.got (tag, db) VALUES (e.payload->>'tag', current_database());
	END $$;
};

# The extension with a function destination that records the events' tags.
# A failing handler is retried quickly.
sub setup_db
{
	my ($db) = @_;
	$node->safe_psql($db, qq{
		CREATE EXTENSION outbox_saga;
		CREATE TABLE public.got (tag text, db text);
		CREATE TABLE public.switch (fail boolean NOT NULL);
		INSERT INTO public.switch VALUES (false);
		$handler_sql
		SELECT outbox.create_destination('sink', 'function',
			'{"function": "public.handler", "backoff_base": "10 milliseconds",
			  "backoff_max": "200 milliseconds", "max_attempts": 100000}');
		SELECT outbox.subscribe('sink');
	});
}

sub emit
{
	my ($db, $tag) = @_;
	$node->safe_psql($db,
		"SELECT outbox.emit('t', 'e', jsonb_build_object('tag', '$tag'), '$tag')");
}

sub got
{
	my ($db, $tag) = @_;
	return $node->safe_psql($db, "SELECT count(*) FROM public.got WHERE tag = '$tag'");
}

# Emit an event tagged 'tag' in 'db' and wait until it is delivered there.
sub delivers
{
	my ($db, $tag, $name) = @_;
	emit($db, $tag);
	ok($node->poll_query_until($db,
			"SELECT count(*) = 1 FROM public.got WHERE tag = '$tag'"),
		$name);
}

# Wait until the dispatcher of 'db' has finished two passes (as seen in
# pg_stat_activity: each pass is 'active' then 'idle'), the second of which
# started after this call.
sub two_passes
{
	my ($db) = @_;
	for (1 .. 2)
	{
		my $since = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
		return 0 unless wait_until($node, 'postgres', qq{
			SELECT count(*) = 1 FROM pg_stat_activity
			 WHERE backend_type = 'outbox_saga dispatcher' AND datname = '$db'
			   AND state = 'idle' AND state_change > '$since'}, 30);
	}
	return 1;
}

sub last_error
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(last_error, '') FROM outbox.stats WHERE destination = 'sink'});
}

# --- Two databases served at once.
$node->safe_psql('postgres', 'CREATE DATABASE db1');
$node->safe_psql('postgres', 'CREATE DATABASE db2');
setup_db('db1');
setup_db('db2');
my $pid1 = wait_for_dispatcher($node, 'db1');
my $pid2 = wait_for_dispatcher($node, 'db2');
ok($pid1 && $pid2 && $pid1 ne $pid2, 'db1 and db2 each have their own dispatcher');
is($node->safe_psql('db1', q{
	SELECT string_agg(kind || ':' || coalesce(database, '-'), ',' ORDER BY kind, database)
	  FROM outbox.workers}),
	'dispatcher:db1,dispatcher:db2,launcher:-',
	'outbox.workers lists the launcher and both dispatchers, not the database without the extension');
is($node->safe_psql('db1',
		"SELECT count(*) FROM outbox.workers WHERE pid = $pid1 AND database = 'db1'"
		  . " AND started_at IS NOT NULL AND state IS NOT NULL"),
	'1', 'outbox.workers shows the dispatcher pid, state and start time');
is($node->safe_psql('postgres', qq{
	SELECT backend_type || '|' || application_name || '|' || datname
	  FROM pg_stat_activity WHERE pid = $pid1}),
	'outbox_saga dispatcher|outbox_saga dispatcher|db1',
	'pg_stat_activity: backend_type and application_name of the dispatcher');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga launcher' AND application_name = 'outbox_saga launcher'}),
	'1', 'pg_stat_activity: the launcher');

delivers('db1', 'one-1', 'db1 delivers');
delivers('db2', 'two-1', 'db2 delivers');
is(got('db2', 'one-1') + got('db1', 'two-1'), 0,
	'each database delivers only its own events');
is($node->safe_psql('db1', q{SELECT db FROM public.got WHERE tag = 'one-1'}), 'db1',
	'the handler ran in its database');

# --- CREATE EXTENSION in a new database, then DROP EXTENSION, again CREATE.
$node->safe_psql('postgres', 'CREATE DATABASE db3');
ok(wait_no_dispatcher($node, 'db3'), 'a database without the extension has no dispatcher');
setup_db('db3');
my $pid3 = wait_for_dispatcher($node, 'db3');
ok($pid3, 'CREATE EXTENSION after the start: the new database gets a dispatcher');
delivers('db3', 'three-1', 'and it delivers');

my $t0 = time();
$node->safe_psql('db3', 'DROP EXTENSION outbox_saga CASCADE');
cmp_ok(time() - $t0, '<', 5, 'DROP EXTENSION is not blocked by the dispatcher');
ok(wait_no_dispatcher($node, 'db3'), 'DROP EXTENSION: the dispatcher stops');
$node->safe_psql('db3', q{
	DROP TABLE public.got, public.switch;
});
setup_db('db3');
ok(wait_for_dispatcher($node, 'db3'), 'CREATE EXTENSION again: the dispatcher comes back');
delivers('db3', 'three-2', 'and delivers');

# --- DROP DATABASE of a served database.
my $log_offset = -s $node->logfile;
$t0 = time();
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db3');
my $took = time() - $t0;
is($ret, 0, 'DROP DATABASE of a served database succeeds');
unlike($err, qr/being accessed by other users/, 'not "being accessed by other users"');
cmp_ok($took, '<', 5, sprintf('DROP DATABASE completes quickly (%.2fs)', $took));
ok(wait_no_dispatcher($node, 'db3'), 'no dispatcher for the dropped database');
delivers('db1', 'one-after-drop', 'db1 still delivers after DROP DATABASE db3');

# --- CREATE DATABASE ... TEMPLATE a served database.
$t0 = time();
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE db1copy TEMPLATE db1');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE a served database succeeds')
  or diag($err);
cmp_ok(time() - $t0, '<', 5, 'and is not blocked for long');
$pid1 = wait_for_dispatcher($node, 'db1');
ok($pid1, 'the template database gets its dispatcher back');
ok(wait_for_dispatcher($node, 'db1copy'), 'the copy gets its own dispatcher');
# A copy talks to nobody until resumed (README, "Backups and upgrades").
ok($node->poll_query_until('db1copy', q{SELECT paused FROM outbox.stats WHERE destination = 'sink'}),
	'the copy\'s destination waits paused');
$node->safe_psql('db1copy', q{SELECT outbox.resume_destination('sink')});
delivers('db1copy', 'copy-1', 'the copy, resumed, delivers its own events');
is(got('db1', 'copy-1'), 0, 'not into the template');
delivers('db1', 'one-after-copy', 'the template delivers again');
$node->safe_psql('postgres', 'DROP DATABASE db1copy');

# --- ALTER DATABASE ... RENAME of a served database.
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE db2 RENAME TO db2r');
is($ret, 0, 'ALTER DATABASE RENAME of a served database succeeds') or diag($err);
$pid2 = wait_for_dispatcher($node, 'db2r');
ok($pid2, 'the renamed database has a dispatcher');
delivers('db2r', 'two-after-rename', 'the renamed database delivers');

# --- A DROP DATABASE that fails (a user is connected) does not leave the
# database without its dispatcher.
my $user = $node->background_psql('db2r');
$user->query_safe('SELECT 1');
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db2r');
like($err, qr/being accessed by other users/,
	'DROP DATABASE with a user connected fails as usual');
$user->quit;
ok(wait_for_dispatcher($node, 'db2r'), 'after the failed DROP DATABASE the dispatcher is back');
delivers('db2r', 'two-after-failed-drop', 'and delivers');
$pid2 = dispatcher_pid($node, 'db2r');

# --- pg_terminate_backend (SIGTERM) of a dispatcher.
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid1)");
my $new1 = wait_for_dispatcher($node, 'db1', $pid1);
ok($new1 && $new1 ne $pid1, "a terminated dispatcher is replaced ($pid1 -> $new1)");
$pid1 = $new1;
delivers('db1', 'one-after-terminate', 'delivery goes on after pg_terminate_backend');

# --- pg_cancel_backend (SIGINT) of an idle dispatcher: it cancels at most
# the statement running, never the process; delivery goes on.
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
delivers('db1', 'one-after-cancel', 'delivery goes on after pg_cancel_backend');
is(dispatcher_pid($node, 'db1'), $pid1, 'pg_cancel_backend does not end the dispatcher');

# ... nor while it works: thirty cancels, each right after a commit of an
# event, land in handlers, batches, between batches and in its sleep alike.
for my $round (1 .. 30)
{
	emit('db1', "one-cancel-storm-$round");
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
}
ok($node->poll_query_until('db1', q{
	SELECT outbox.wait_idle('1 second')
	   AND NOT EXISTS (SELECT FROM generate_series(1, 30) r
	                    WHERE NOT EXISTS (SELECT FROM public.got
	                                       WHERE tag = 'one-cancel-storm-' || r))}),
	'thirty cancels while delivering: every event is delivered');
is(dispatcher_pid($node, 'db1'), $pid1, 'and the dispatcher is the same process');
$pid1 = dispatcher_pid($node, 'db1');

# --- SIGHUP: outbox_saga.enabled.
$node->safe_psql('postgres', 'ALTER SYSTEM SET outbox_saga.enabled = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_no_dispatcher($node, 'db1') && wait_no_dispatcher($node, 'db2r'),
	'enabled = off: the dispatchers stop');
emit('db1', 'one-while-off');
like(last_error('db1'), qr/outbox_saga\.enabled is off/,
	'outbox.stats.last_error says why nothing is dispatched');
is($node->safe_psql('db1', q{SELECT outbox.wait_idle('1 second')}), 'f',
	'wait_idle returns false while dispatch is off');
is(got('db1', 'one-while-off'), 0, 'nothing delivered while off');
$node->safe_psql('postgres', 'ALTER SYSTEM SET outbox_saga.enabled = on');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_for_dispatcher($node, 'db1') && wait_for_dispatcher($node, 'db2r'),
	'enabled = on: the dispatchers come back');
ok($node->poll_query_until('db1',
		"SELECT count(*) = 1 FROM public.got WHERE tag = 'one-while-off'"),
	'the event written while off is delivered');
$pid1 = dispatcher_pid($node, 'db1');
# The status line is gone.  Not "last_error is empty": a cancel of the
# storm above that lands in a handler records 57014 as the destination's
# last error, which stays (last_error is the last error, not a state; CI
# of f753fe6 on 18 showed it here).
unlike(last_error('db1'), qr/outbox_saga\.enabled is off/,
	'outbox.stats.last_error no longer says dispatch is off');

# --- SIGHUP: outbox_saga.databases restricts.
$node->safe_psql('postgres', q{ALTER SYSTEM SET outbox_saga.databases = 'db1'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_no_dispatcher($node, 'db2r'), 'databases = db1: db2r loses its dispatcher');
is(dispatcher_pid($node, 'db1'), $pid1, 'db1 keeps its dispatcher (same pid)');
emit('db2r', 'two-while-excluded');
like(last_error('db2r'), qr/no dispatcher is running/,
	'outbox.stats.last_error of the excluded database says so');
delivers('db1', 'one-while-restricted', 'db1 still delivers');
is(got('db2r', 'two-while-excluded'), 0, 'db2r does not');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET outbox_saga.databases');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_for_dispatcher($node, 'db2r'), 'databases reset: db2r gets its dispatcher back');
ok($node->poll_query_until('db2r',
		"SELECT count(*) = 1 FROM public.got WHERE tag = 'two-while-excluded'"),
	'and delivers what waited');

# --- A SQL version that does not match the library.
my $version = $node->safe_psql('db1',
	q{SELECT extversion FROM pg_extension WHERE extname = 'outbox_saga'});
$log_offset = -s $node->logfile;
$node->safe_psql('db1',
	q{UPDATE pg_extension SET extversion = '0.0.9' WHERE extname = 'outbox_saga'});
ok(wait_for_log_match($node,
		qr/outbox_saga dispatcher is waiting: the extension's SQL version is 0\.0\.9, the library's is \Q$version\E/,
		$log_offset),
	'version mismatch: the dispatcher logs that it is waiting and why');
emit('db1', 'one-mismatch');
my $idle = $node->safe_psql('db1', q{SELECT outbox.wait_idle('2 seconds')});
ok(two_passes('db1'), 'the waiting dispatcher goes on making passes');
is(got('db1', 'one-mismatch'), 0, 'version mismatch: nothing is delivered');
is($idle, 'f', 'wait_idle does not report idle while an event waits for the version to match');
like(last_error('db1'), qr/version/,
	'outbox.stats.last_error says that dispatch waits for the extension version');
is(dispatcher_pid($node, 'db1'), $pid1, 'the dispatcher waits, it does not exit');
$log_offset = -s $node->logfile;
$node->safe_psql('db1',
	qq{UPDATE pg_extension SET extversion = '$version' WHERE extname = 'outbox_saga'});
ok($node->poll_query_until('db1',
		"SELECT count(*) = 1 FROM public.got WHERE tag = 'one-mismatch'"),
	'version fixed: the waiting event is delivered');
ok(wait_for_log_match($node, qr/extension version \Q$version\E matches the library again/,
		$log_offset),
	'and the dispatcher says that the versions match again');

# --- A handler that raises an error.
$node->safe_psql('db1', 'UPDATE public.switch SET fail = true');
emit('db1', 'one-refused');
ok($node->poll_query_until('db1', q{
	SELECT last_error LIKE '%handler refuses event one-refused%' FROM outbox.stats
	 WHERE destination = 'sink'}),
	'a failing handler: its error shows in outbox.stats.last_error');
ok($node->poll_query_until('db1', q{
	SELECT failed_attempts_total >= 3 FROM outbox.stats WHERE destination = 'sink'}),
	'and it is retried');
is(dispatcher_pid($node, 'db1'), $pid1, 'the dispatcher survives failing handlers (same pid)');
is(got('db1', 'one-refused'), 0, 'the refused event is not recorded');
$node->safe_psql('db1', 'UPDATE public.switch SET fail = false');
ok($node->poll_query_until('db1',
		"SELECT count(*) = 1 FROM public.got WHERE tag = 'one-refused'"),
	'fixed: the event is delivered');
is($node->safe_psql('db1', q{SELECT outbox.wait_idle('30 seconds')}), 't', 'idle again');
is($node->safe_psql('db1',
		q{SELECT retrying || '/' || dead FROM outbox.stats WHERE destination = 'sink'}),
	'0/0', 'nothing left retrying, nothing dead');

# --- A handler dropped while events are pending.
$node->safe_psql('db1', 'DROP FUNCTION public.handler(outbox.events)');
emit('db1', 'one-no-handler');
ok($node->poll_query_until('db1', q{
	SELECT last_error LIKE '%42883%' AND last_error LIKE '%public.handler%'
	  FROM outbox.stats WHERE destination = 'sink'}),
	'a dropped handler: "does not exist" (42883) shows in outbox.stats.last_error');
is(dispatcher_pid($node, 'db1'), $pid1, 'the dispatcher survives a dropped handler (same pid)');
$node->safe_psql('db1', $handler_sql);
ok($node->poll_query_until('db1',
		"SELECT count(*) = 1 FROM public.got WHERE tag = 'one-no-handler'"),
	'handler created again: the pending event is delivered');
delivers('db1', 'one-after-recreate', 'and new events too');
is(dispatcher_pid($node, 'db1'), $pid1, 'still the same dispatcher');

# --- A handler that runs past the destination's timeout is cancelled.
$node->safe_psql('db1', q{
	CREATE FUNCTION public.slow(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(60);
	END $$;
	SELECT outbox.create_destination('slow', 'function',
		'{"function": "public.slow", "timeout": "200 milliseconds", "max_attempts": 1}');
	SELECT outbox.subscribe('slow', 'slow');
	SELECT outbox.emit('slow', 'e', '{"tag": "one-slow"}');
});
ok(wait_until($node, 'db1', q{
	SELECT count(*) = 1 FROM outbox.dead_letters
	 WHERE destination = 'slow' AND last_error LIKE '57014:%'}, 20),
	'a handler past its timeout is cancelled (57014) and, with max_attempts 1, dead');
is(dispatcher_pid($node, 'db1'), $pid1, 'the dispatcher survives the timeout (same pid)');
delivers('db1', 'one-after-timeout', 'and delivers to the other destination');

# --- pg_cancel_backend again, a cancel every half millisecond for two
# seconds while 200 commits wake the dispatcher: cancels then also land
# while a pass starts (its first transaction: the tick, the destinations)
# and while a cancelled step's WARNING is written, where they ended the
# process (CI, PostgreSQL 17).  Here, after the checks of a clear
# last_error: a cancelled handler is a failed attempt, and its 57014 stays
# the destination's last error.
my $storm = $node->background_psql('postgres');
$storm->query_until(qr/storm/, qq{\\echo storm
DO \$\$
DECLARE t timestamptz := clock_timestamp();
BEGIN
	WHILE clock_timestamp() < t + interval '2 seconds' LOOP
		PERFORM pg_cancel_backend($pid1);
		PERFORM pg_sleep(0.0005);
	END LOOP;
END \$\$;
});
$node->safe_psql('db1', q{
	DO $$
	BEGIN
		FOR r IN 1 .. 200 LOOP
			PERFORM outbox.emit('t', 'e', jsonb_build_object('tag', 'one-storm-' || r), 'storm');
			COMMIT;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END $$;
});
$storm->quit;
ok($node->poll_query_until('db1', q{
	SELECT outbox.wait_idle('1 second')
	   AND (SELECT count(DISTINCT tag) FROM public.got WHERE tag LIKE 'one-storm-%') = 200}),
	'a cancel every half millisecond while 200 commits are delivered: every event is delivered');
is(dispatcher_pid($node, 'db1'), $pid1, 'and the dispatcher is still the same process');

# --- DROP EXTENSION and CREATE EXTENSION while the launcher is slow: the
# dispatcher stops when it finds the extension gone, CREATE EXTENSION asks
# the launcher for a rescan, and the launcher (descheduled meanwhile,
# simulated with SIGSTOP) handles the rescan and the dispatcher's exit in
# one round.  The database must get its dispatcher back.
my $launcher = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'outbox_saga launcher'});
ok(wait_for_dispatcher($node, 'db2r'), 'db2r is served');
kill('STOP', $launcher);
my $resumed = 0;
END { kill('CONT', $launcher) if $launcher && !$resumed; }
$node->safe_psql('db2r', 'DROP EXTENSION outbox_saga CASCADE; DROP TABLE public.got, public.switch');
ok(wait_no_dispatcher($node, 'db2r'), 'DROP EXTENSION: the dispatcher of db2r stops');
setup_db('db2r');
kill('CONT', $launcher);
$resumed = 1;
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga dispatcher' AND datname = 'db2r'}, 15),
	'CREATE EXTENSION while the launcher was busy: db2r gets its dispatcher back');

# --- The launcher terminated: the postmaster restarts it, it takes over
# the dispatchers, delivery goes on.
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'outbox_saga launcher' AND pid <> $launcher}),
	'a terminated launcher is restarted');
delivers('db1', 'one-after-launcher', 'db1 delivers after the launcher restart');
delivers('db2r', 'two-after-launcher', 'db2r delivers after the launcher restart');
ok(wait_for_dispatcher($node, 'db1') && wait_for_dispatcher($node, 'db2r'),
	'one dispatcher per database after the launcher restart');

# Every event delivered exactly once in each database.
for my $db ('db1', 'db2r')
{
	is($node->safe_psql($db, 'SELECT count(*) - count(DISTINCT tag) FROM public.got'),
		'0', "$db: no event delivered twice");
}

# A clean shutdown with dispatchers running.
$node->stop('fast');
ok(!$node->log_contains(qr/TRAP|PANIC|server process .* was terminated by signal/),
	'no crash in the server log');
ok(!$node->log_contains(qr/FATAL:\s+database "[^"]*" does not exist/),
	'no dispatcher was started for a database that no longer exists');

# --- Without shared_preload_libraries.
my $plain = new_node('life_plain', preload => 0);
$plain->start;
$plain->safe_psql('postgres', qq{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (tag text, db text);
	CREATE TABLE public.switch (fail boolean NOT NULL);
	INSERT INTO public.switch VALUES (false);
	$handler_sql
	SELECT outbox.create_destination('sink', 'function', '{"function": "public.handler"}');
	SELECT outbox.subscribe('sink');
	SELECT outbox.emit('t', 'e', '{"tag": "plain"}');
});
is($plain->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'), '1',
	'not preloaded: emit works');
like($plain->safe_psql('postgres',
		q{SELECT last_error FROM outbox.stats WHERE destination = 'sink'}),
	qr/dispatch is off: outbox_saga is not in shared_preload_libraries/,
	'not preloaded: outbox.stats.last_error says dispatch is off');
($ret, $out, $err) = $plain->psql('postgres', q{SELECT outbox.wait_idle('1 second')});
is($out, 'f', 'not preloaded: wait_idle returns false');
like($err, qr/WARNING:.*shared_preload_libraries/, 'with a WARNING that says why');
$plain->stop;

done_testing();

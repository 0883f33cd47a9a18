# pg_dump / pg_restore (SPEC G13, issue 13 items 2 and 3): a dump keeps what
# users configured and are owed - destinations (owner by role name, secrets,
# paused state), subscriptions, the retry queue, sagas, idempotency keys and
# the events not yet delivered - in plain and custom format, restored into
# a new database of the same cluster and into a second cluster.  A restored
# copy talks to nobody by itself: its destinations wait paused, marked in
# outbox.stats, and its sagas in flight are held, marked in saga.instances,
# with a LOG line; resumed, they deliver every owed event once, never one
# delivered before the dump; create_destination and saga.define work
# afterwards.  A restore into a cluster without a destination's owner role
# fails with an error naming the role and delivers nothing.  A copy made
# with CREATE DATABASE ... TEMPLATE is paused the same way.  --schema-only
# then --data-only is a full restore.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $conf = "outbox_saga.poll_interval = '100ms'\nlog_statement = none\nlog_min_messages = log\n";
my $node = new_node('source', conf => $conf);
$node->start;
my $other = new_node('other', conf => $conf);
$other->start;

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE app_owner LOGIN;
	CREATE TABLE public.got (dest text, tag text);
	CREATE TABLE public.failing (tag text);
	GRANT INSERT ON public.got TO app_owner;
	GRANT SELECT ON public.failing TO app_owner;
	CREATE FUNCTION public.to_fn(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.failing f WHERE f.tag = e.payload->>'tag') THEN
			RAISE EXCEPTION 'refused %', e.payload->>'tag';
		END IF;
		INSERT INTO public.got VALUES ('fn', e.payload->>'tag');
	END $$;
	CREATE FUNCTION public.to_slow(e outbox.events) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.got VALUES ('slow', e.payload->>'tag') $$;
	CREATE FUNCTION public.to_new(e outbox.events) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.got VALUES ('new', e.payload->>'tag') $$;
	CREATE FUNCTION public.step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF EXISTS (SELECT 1 FROM public.failing f WHERE f.tag = ctx->'input'->>'tag') THEN
			RAISE EXCEPTION 'step refused';
		END IF;
		RETURN jsonb_build_object('done', ctx->>'step');
	END $$;
	GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb),
		outbox.subscribe(text, text, text[]) TO app_owner;
	GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) TO postgres;
});
$node->safe_psql('app', q{
	SET ROLE app_owner;
	SELECT outbox.create_destination('fn', 'function',
		'{"function": "public.to_fn", "backoff_base": "10 milliseconds", "backoff_max": "50 milliseconds", "max_attempts": 100000}');
	SELECT outbox.subscribe('fn', 'orders');
	RESET ROLE;
	SELECT outbox.create_destination('slow', 'function', '{"function": "public.to_slow"}');
	SELECT outbox.subscribe('slow', 'orders');
	SELECT outbox.pause_destination('slow');
	SELECT outbox.create_destination('hook', 'http',
		'{"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}');
	SELECT outbox.subscribe('hook', 'nothing');
	SELECT saga.define('order', '[
		{"name": "reserve", "action": {"function": "public.step"}, "compensation": null},
		{"name": "confirm", "action": {"emit": {"topic": "cmd", "event_type": "confirm", "await": true}},
		 "timeout": "1 hour"}]', '{"backoff_base": "1 hour"}');
	SELECT outbox.idempotency_complete('api', 'k1', '{"order": 42}')
	  FROM outbox.idempotency_key('api', 'k1');
});
sub emit
{
	my ($n, $db, @tags) = @_;
	$n->safe_psql($db, join ';',
		map { "SELECT outbox.emit('orders', 'created', '{\"tag\": \"$_\"}', 'agg-' || length('$_'))" } @tags);
}
# e1..e3 delivered to fn before the dump.
emit($node, 'app', qw(e1 e2 e3));
ok($node->poll_query_until('app', q{SELECT count(*) = 3 FROM public.got WHERE dest = 'fn'}),
	'fn received e1..e3 before the dump');
# r1 fails (in the retry queue at dump time); e4..e6 wait behind fn's pause.
$node->safe_psql('app', q{INSERT INTO public.failing VALUES ('r1'), ('held')});
emit($node, 'app', qw(r1));
ok($node->poll_query_until('app', q{SELECT retrying = 1 FROM outbox.stats WHERE destination = 'fn'}),
	'r1 is in the retry queue');
$node->safe_psql('app', q{SELECT outbox.pause_destination('fn')});
emit($node, 'app', qw(e4 e5 e6));
# Sagas: 'waits' waits for complete_step, 'held' retries its first step in
# an hour, 'done' completed.
my $waits = $node->safe_psql('app', q{SELECT saga.start('order', '{"tag": "w"}')});
my $held = $node->safe_psql('app', q{SELECT saga.start('order', '{"tag": "held"}')});
ok($node->poll_query_until('app', qq{
	SELECT (SELECT status FROM saga.step_runs WHERE saga_id = '$waits' AND step = 'confirm') = 'waiting'
	   AND (SELECT attempts FROM saga.step_runs WHERE saga_id = '$held' AND step = 'reserve') = 1}),
	'one saga waits for complete_step, one retries later');
my $done = $node->safe_psql('app', q{SELECT saga.start('order', '{"tag": "d"}')});
ok($node->poll_query_until('app', qq{SELECT status = 'waiting' FROM saga.step_runs WHERE saga_id = '$done' AND step = 'confirm'}));
$node->safe_psql('app', qq{SELECT saga.complete_step('$done', 'confirm', true)});
ok($node->poll_query_until('app', qq{SELECT status = 'completed' FROM saga.instances WHERE id = '$done'}),
	'a third saga completed');
my $config_sql = q{SELECT string_agg(format('%s %s %s %s', name, kind, config, owner::regrole), E'\n' ORDER BY name) FROM outbox.destination};
my $config = $node->safe_psql('app', $config_sql);

# --- The dumps.
my $dir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '-Fp', '-f', "$dir/app.sql", '-d', $node->connstr('app') ], 'pg_dump, plain');
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/app.dump", '-d', $node->connstr('app') ], 'pg_dump, custom');
like(slurp_file("$dir/app.sql"), qr/whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/,
	'a dump contains destination secrets (README says so)');

# --- A restore into a cluster without the owner role: a clear error.
$other->safe_psql('postgres', 'CREATE DATABASE norole');
my ($out, $err) = run_command([ 'pg_restore', '-d', $other->connstr('norole'), "$dir/app.dump" ]);
like($err, qr/role "app_owner" does not exist/, 'restoring without the owner role names the role');
is($other->safe_psql('norole', 'SELECT count(*) FROM outbox.destination'), '0',
	'and no destination is restored under another identity');
$other->safe_psql('postgres', 'DROP DATABASE norole');
$other->safe_psql('postgres', 'CREATE ROLE app_owner LOGIN');

# --- Restores: plain and custom, same cluster and the second one.
my @restores = (
	[ $node, 'plain_here', sub { $node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/app.sql", '-d', $node->connstr($_[0]) ]) } ],
	[ $node, 'custom_here', sub { $node->command_ok([ 'pg_restore', '-e', '-d', $node->connstr($_[0]), "$dir/app.dump" ]) } ],
	[ $other, 'plain_there', sub { $other->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/app.sql", '-d', $other->connstr($_[0]) ]) } ],
	[ $other, 'split_there', sub {
		$other->command_ok([ 'pg_restore', '-e', '--schema-only', '-d', $other->connstr($_[0]), "$dir/app.dump" ]);
		is($other->safe_psql($_[0], 'SELECT count(*) FROM outbox.destination'), '0',
			'--schema-only restores the extension without its data');
		$other->command_ok([ 'pg_restore', '-e', '--data-only', '-d', $other->connstr($_[0]), "$dir/app.dump" ]) } ],
);
for my $r (@restores)
{
	my ($n, $db, $restore) = @$r;
	note "restore $db";
	$n->safe_psql('postgres', "CREATE DATABASE $db");
	my $log_offset = -s $n->logfile;
	$restore->($db);
	is($n->safe_psql($db, $config_sql), $config, "$db: destinations with config, secrets and owner");
	is($n->safe_psql($db, q{SELECT string_agg(destination || ':' || paused || ':' || (last_error LIKE 'restored%'), ',' ORDER BY destination) FROM outbox.stats}),
		'fn:true:true,hook:true:true,slow:true:true', "$db: every destination is paused, marked restored in outbox.stats");
	ok(wait_for_log_match($n, qr/destination "fn" was restored from a dump/, $log_offset),
		"$db: a LOG line says so");
	is($n->safe_psql($db, q{SELECT string_agg(status || ':' || restored, ',' ORDER BY input->>'tag') FROM saga.instances}),
		'completed:false,running:true,running:true', "$db: sagas in flight are held, marked restored");
	is($n->safe_psql($db, q{SELECT string_agg(destination || ' ' || topic, ',' ORDER BY destination) FROM outbox.subscriptions}),
		'fn orders,hook nothing,slow orders', "$db: subscriptions are kept");
	is($n->safe_psql($db, q{SELECT status || ' ' || response FROM outbox.idempotency_key('api', 'k1')}),
		'completed {"order": 42}', "$db: completed idempotency keys answer");

	# Paused: nothing goes out, but new destinations and definitions work.
	ok($n->poll_query_until($db, q{SELECT outbox.wait_idle()}), "$db: the dispatcher runs");
	is($n->safe_psql($db, q{SELECT string_agg(dest || tag, ',' ORDER BY dest, tag) FROM public.got}),
		'fne1,fne2,fne3', "$db: nothing is delivered while paused");
	is($n->safe_psql($db, qq{SELECT string_agg(status || ':' || attempts, ',') FROM saga.step_runs WHERE saga_id = '$held' AND step = 'reserve'}),
		'pending:1', "$db: the held saga's step does not run");
	$n->safe_psql($db, q{
		SELECT outbox.create_destination('new', 'function', '{"function": "public.to_new"}');
		SELECT outbox.subscribe('new', 'orders')});
	emit($n, $db, 'n1');
	ok($n->poll_query_until($db, q{SELECT count(*) = 1 FROM public.got WHERE dest = 'new'}),
		"$db: create_destination works, and the new destination receives new events");
	is($n->safe_psql($db, q{SELECT saga.define('other', '[{"name": "a", "action": {"function": "public.step"}}]')}),
		'1', "$db: saga.define works");

	# Resumed: every owed event once, nothing delivered before the dump again.
	$n->safe_psql($db, q{
		DELETE FROM public.failing;
		SELECT outbox.resume_destination('fn');
		SELECT outbox.resume_destination('slow');
	});
	ok($n->poll_query_until($db, q{SELECT count(*) = 17 FROM public.got}), "$db: owed events are delivered");
	ok($n->poll_query_until($db, q{SELECT outbox.wait_idle()}), "$db: idle");
	is($n->safe_psql($db, q{SELECT string_agg(dest || tag, ',' ORDER BY dest, tag) FROM public.got}),
		'fne1,fne2,fne3,fne4,fne5,fne6,fnn1,fnr1,newn1,slowe1,slowe2,slowe3,slowe4,slowe5,slowe6,slown1,slowr1',
		"$db: each owed event once; none delivered before the dump again");
	is($n->safe_psql($db, q{SELECT string_agg(destination || ':' || paused || ':' || coalesce(last_error, '-'), ',' ORDER BY destination)
	                          FROM outbox.stats WHERE destination IN ('fn', 'slow')}),
		'fn:false:-,slow:false:-', "$db: resumed destinations are no longer marked restored");

	is($n->safe_psql($db, 'SELECT saga.resume()'), '2', "$db: saga.resume() releases the held sagas");
	ok($n->poll_query_until($db, qq{SELECT status = 'waiting' FROM saga.step_runs WHERE saga_id = '$held' AND step = 'confirm'}),
		"$db: the held saga runs its step again");
	$n->safe_psql($db, qq{SELECT saga.complete_step('$waits', 'confirm', true); SELECT saga.complete_step('$held', 'confirm', true)});
	ok($n->poll_query_until($db, q{SELECT count(*) = 3 FROM saga.instances WHERE status = 'completed' AND NOT restored}),
		"$db: both sagas complete");
}

# --- A copy without a dump: CREATE DATABASE ... TEMPLATE.
$node->safe_psql('plain_here', q{SELECT outbox.pause_destination('fn');
	SELECT outbox.emit('orders', 'created', '{"tag": "c1"}')});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE DATABASE copied TEMPLATE plain_here');
ok(wait_for_dispatcher($node, 'copied'), 'the copy gets a dispatcher');
ok(wait_for_log_match($node, qr/database "copied" is a copy of another database/, $log_offset),
	'a template copy is detected, with a LOG line');
is($node->safe_psql('copied', q{SELECT string_agg(destination || ':' || paused, ',' ORDER BY destination) FROM outbox.stats}),
	'fn:true,hook:true,new:true,slow:true', 'and its destinations wait paused');
is($node->safe_psql('copied', q{SELECT string_agg(destination || ':' || split_part(last_error, ' ', 1), ',' ORDER BY destination) FROM outbox.stats}),
	'fn:copied,hook:restored,new:copied,slow:copied', 'marked as a copy in outbox.stats (hook, never resumed, as restored still)');
$node->safe_psql('copied', q{SELECT outbox.resume_destination('fn')});
ok($node->poll_query_until('copied', q{SELECT count(*) = 1 FROM public.got WHERE dest = 'fn' AND tag = 'c1'}),
	'resumed, the copy delivers what its template owed at the copy');
is($node->safe_psql('plain_here', q{SELECT count(*) FROM public.got WHERE dest = 'fn' AND tag = 'c1'}), '0',
	'(the template, where fn is paused, did not)');
done_testing();

# The pool of dispatchers (outbox_saga.workers_per_database; issue 11 and
# issue 12 item 7):
#   - three workers drain four function destinations together (more than
#     one process delivers), while workers are terminated again and again
#     in the middle of their batches: every destination gets every event
#     exactly once (function handlers commit with the record, G5) and each
#     aggregate in order (G4) - two workers never deliver one destination
#     at once;
#   - session state of user code does not leak into the dispatcher: an
#     advisory lock a saga step or handler takes is released after it, and
#     pg_advisory_unlock_all() in a step releases nothing of the
#     dispatcher's own (its claims live in shared memory);
#   - lowering workers_per_database with a reload stops the extra workers.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OutboxTest;

my $node = new_node('pool', workers => 3,
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n"
	  . "outbox_saga.batch_size = 50\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
my $pids = wait_for_dispatcher($node, 'postgres');
is(scalar(split /,/, $pids), 3, 'three dispatchers run');

sub sql { return $node->safe_psql('postgres', $_[0]); }

for my $d (1 .. 4)
{
	sql(qq{
		CREATE TABLE got_$d (id bigserial, event_id uuid, agg text, n int, pid int);
		CREATE FUNCTION handle_$d(e outbox.events) RETURNS void LANGUAGE plpgsql AS \$\$
		BEGIN
			PERFORM pg_sleep(0.001);
			INSERT INTO public.got_$d (event_id, agg, n, pid)
			VALUES (e.event_id, e.aggregate_id, (e.payload->>'n')::int, pg_backend_pid());
		END \$\$;
		SELECT outbox.create_destination('d$d', 'function', '{"function": "public.handle_$d"}');
		SELECT outbox.subscribe('d$d', 'work');
	});
}
sql(q{SELECT outbox.emit('work', 'w', jsonb_build_object('n', g), 'agg-' || (g % 20))
        FROM generate_series(1, 2000) g});

# Terminate a delivering worker again and again while they drain.
my $kills = 0;
for my $i (1 .. 100)
{
	last if $kills >= 6;
	my $victim = sql(q{SELECT pid FROM outbox.workers
	                    WHERE kind = 'dispatcher' AND doing = 'delivering'
	                    ORDER BY random() LIMIT 1});
	next unless $victim;
	$kills++ if sql("SELECT pg_terminate_backend($victim)") eq 't';
	usleep(100_000);
}
ok($kills >= 4, "workers were terminated mid-batch ($kills times)");
ok(wait_until($node, 'postgres', q{SELECT bool_and(pending = 0 AND retrying = 0) FROM outbox.stats}, 120),
	'every destination drains');
ok(wait_for_dispatcher($node, 'postgres'), 'the pool is whole again');

for my $d (1 .. 4)
{
	is(sql("SELECT count(*) || '/' || count(DISTINCT event_id) FROM got_$d"), '2000/2000',
		"d$d: every event exactly once");
	is(sql(qq{SELECT count(*) FROM (SELECT n, lag(n) OVER (PARTITION BY agg ORDER BY id) p
	                                 FROM got_$d) x WHERE p > n}), '0',
		"d$d: each aggregate in order");
}
cmp_ok(sql(q{SELECT count(DISTINCT pid) FROM (SELECT pid FROM got_1 UNION ALL SELECT pid FROM got_2
              UNION ALL SELECT pid FROM got_3 UNION ALL SELECT pid FROM got_4) x}),
	'>=', 2, 'more than one process delivered');

# --- Session state of saga steps and handlers ------------------------------
sql(q{
	CREATE FUNCTION lock_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
	  $$ SELECT pg_advisory_lock(4242); SELECT '{}'::jsonb $$;
	CREATE FUNCTION unlock_all_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
	  $$ SELECT pg_advisory_unlock_all(); SELECT '{}'::jsonb $$;
	SELECT saga.define('locky', '[{"name": "lock", "action": {"function": "public.lock_step"}},
	                              {"name": "unlock", "action": {"function": "public.unlock_all_step"}}]');
	SELECT saga.define('lock_only', '[{"name": "lock", "action": {"function": "public.lock_step"}}]');
});
sql(q{SELECT saga.start('lock_only', '{}')});
ok(wait_until($node, 'postgres',
	q{SELECT count(*) = 1 FROM saga.instances WHERE definition = 'lock_only' AND status = 'completed'}, 60),
	'a saga whose step takes a session advisory lock completes');
is(sql(q{SELECT pg_try_advisory_lock(4242)}), 't',
	'the step\'s advisory lock was released after it');
sql(q{SELECT pg_advisory_unlock_all()});
sql(q{SELECT saga.start('locky', '{}')});
ok(wait_until($node, 'postgres',
	q{SELECT count(*) = 1 FROM saga.instances WHERE definition = 'locky' AND status = 'completed'}, 60),
	'a saga whose step calls pg_advisory_unlock_all() completes');
sql(q{SELECT outbox.emit('work', 'w', jsonb_build_object('n', g), 'agg-' || (g % 20))
        FROM generate_series(2001, 2100) g});
ok(wait_until($node, 'postgres', q{SELECT bool_and(pending = 0 AND retrying = 0) FROM outbox.stats}, 60),
	'and the dispatchers go on delivering');
is(sql(q{SELECT count(*) || '/' || count(DISTINCT event_id) FROM got_1}), '2100/2100',
	'still exactly once');

# --- Fewer workers after a reload ------------------------------------------
$node->append_conf('postgresql.conf', "outbox_saga.workers_per_database = 1\n");
$node->reload;
ok(wait_until($node, 'postgres', q{SELECT count(*) = 1 FROM outbox.workers WHERE kind = 'dispatcher'}, 60),
	'a reload to one worker stops the others');
sql(q{SELECT outbox.emit('work', 'w', jsonb_build_object('n', g), 'agg-' || (g % 20))
        FROM generate_series(2101, 2200) g});
ok(wait_until($node, 'postgres', q{SELECT bool_and(pending = 0 AND retrying = 0) FROM outbox.stats}, 60),
	'the one worker left serves every destination');
is(sql(q{SELECT count(*) || '/' || count(DISTINCT event_id) FROM got_4}), '2200/2200',
	'every event once');

$node->stop;
done_testing();

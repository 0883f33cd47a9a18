# At-least-once through crashes (G3), exactly-once for function
# destinations (G5), order per aggregate across crashes (G4).
#
# 20,000 events, written in four big transactions, go to a function
# destination whose handler records each event in a table without a unique
# constraint (and counts its calls in a sequence, which no rollback undoes).
# Three "gate" events hold the dispatcher in the middle of a batch - the
# handler waits until the test opens the gate - and while it is held:
#   (a) the dispatcher is killed with SIGKILL (the postmaster reinitializes:
#       crash recovery),
#   (b) an ordinary backend with an open transaction that wrote events is
#       killed with SIGKILL (crash recovery again),
#   (c) the server is stopped in immediate mode and started again.
# After each crash the batch that was in flight is delivered again, and at
# the end every emitted event is in the handler's table exactly once,
# the first deliveries of each aggregate are in id order, the events of the
# killed transaction never arrive, and outbox.stats counts 20,000.  A
# prepared transaction that wrote events survives the crash: committed
# after the restart its events are delivered, rolled back they never are.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $N = 20000;
my %gate_at = (1 => 4000, 2 => 10000, 3 => 16000);

my $node = new_node('crash',
	conf => "outbox_saga.poll_interval = '100ms'\nrestart_after_crash = on\n"
	  . "max_prepared_transactions = 5\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (
		seq          bigint GENERATED ALWAYS AS IDENTITY,
		event_id     uuid NOT NULL,
		aggregate_id text,
		id           bigint
	);
	CREATE SEQUENCE public.calls;
	CREATE TABLE public.gates (gate int PRIMARY KEY, open boolean NOT NULL DEFAULT false);
	INSERT INTO public.gates VALUES (1), (2), (3);
	CREATE TABLE public.emitted (k int PRIMARY KEY, event_id uuid NOT NULL, aggregate_id text);

	-- A gate event waits (polling, so that the wait survives nothing but
	-- the test opening the gate) before it is recorded.
	CREATE FUNCTION public.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('public.calls');
		IF e.payload ? 'gate' THEN
			WHILE NOT (SELECT g.open FROM public.gates g
			            WHERE g.gate = (e.payload->>'gate')::int) LOOP
				PERFORM pg_sleep(0.01);
			END LOOP;
		END IF;
		INSERT INTO public.got (event_id, aggregate_id, id)
		VALUES (e.event_id, e.aggregate_id, e.id);
	END $$;
	SELECT outbox.create_destination('sink', 'function',
		'{"function": "public.handler", "batch_size": 500}');
	SELECT outbox.subscribe('sink');
});
my $pid = wait_for_dispatcher($node, 'postgres');
ok($pid, 'a dispatcher runs');

# Four transactions of 5,000 events, over 97 aggregates.
my $gates_sql = join(' ', map { "WHEN $gate_at{$_} THEN $_" } sort keys %gate_at);
for my $t (0 .. 3)
{
	my ($lo, $hi) = ($t * 5000 + 1, ($t + 1) * 5000);
	$node->safe_psql('postgres', qq{
		INSERT INTO public.emitted (k, event_id, aggregate_id)
		SELECT k,
		       outbox.emit('orders', 'order.step',
		                   CASE WHEN (CASE k $gates_sql END) IS NOT NULL
		                        THEN jsonb_build_object('k', k, 'gate', CASE k $gates_sql END)
		                        ELSE jsonb_build_object('k', k) END,
		                   'agg-' || (k % 97)),
		       'agg-' || (k % 97)
		  FROM generate_series($lo, $hi) k});
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE e.payload ? 'gate') || '/' || count(*)
	  FROM outbox.events e JOIN public.emitted m USING (event_id)}),
	"3/$N", "$N events emitted, three of them gates");

# Wait until the dispatcher is held at gate 'g'; returns its pid.
sub held_at_gate
{
	my ($g) = @_;
	my $ok = $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'outbox_saga dispatcher' AND wait_event = 'PgSleep'});
	ok($ok, "the dispatcher is held at gate $g, in the middle of a batch");
	my $got = $node->safe_psql('postgres', 'SELECT count(*) FROM public.got');
	cmp_ok($got, '<', $gate_at{$g}, "gate $g: the events of the open batch are not recorded yet ($got)");
	return dispatcher_pid($node, 'postgres');
}

sub open_gate
{
	my ($g) = @_;
	$node->safe_psql('postgres', "UPDATE public.gates SET open = true WHERE gate = $g");
}

# Wait for the server to have come back from a crash.
sub wait_restarted
{
	my ($old_pid, $what) = @_;
	my $new = wait_for_dispatcher($node, 'postgres', $old_pid);
	ok($new && $new ne $old_pid, "$what: a new dispatcher runs after the crash");
	return $new;
}

# (a) SIGKILL the dispatcher.
$pid = held_at_gate(1);
my $log_offset = -s $node->logfile;
ok(kill('KILL', $pid), "(a) dispatcher $pid killed with SIGKILL");
ok(wait_for_log_match($node,
		qr/terminated by signal 9.*\n(?:.*\n)*.*all server processes terminated; reinitializing/,
		$log_offset),
	'(a) the postmaster reinitialized (crash recovery)');
$pid = wait_restarted($pid, '(a)');
$pid = held_at_gate(1);
is($node->safe_psql('postgres',
		'SELECT count(*) - count(DISTINCT event_id) FROM public.got'),
	'0', '(a) the batch cut by the crash left nothing behind');
open_gate(1);

# (b) SIGKILL an ordinary backend that has written events in an open
# transaction.
$pid = held_at_gate(2);
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $victim_pid = $victim->query_safe(q{
	BEGIN;
	SELECT count(outbox.emit('orders', 'never.committed', '{}', 'agg-1'))
	  FROM generate_series(1, 100);
	SELECT pg_backend_pid();});
($victim_pid) = $victim_pid =~ /(\d+)\s*$/;
$log_offset = -s $node->logfile;
ok(kill('KILL', $victim_pid), "(b) backend $victim_pid killed with SIGKILL");
ok(wait_for_log_match($node,
		qr/terminated by signal 9.*\n(?:.*\n)*.*all server processes terminated; reinitializing/,
		$log_offset),
	'(b) the postmaster reinitialized (crash recovery)');
eval { $victim->quit };
$pid = wait_restarted($pid, '(b)');
$pid = held_at_gate(2);
open_gate(2);

# (c) Immediate shutdown and start, with two prepared transactions that
# wrote events: they survive the crash; the one committed after the restart
# is delivered, the one rolled back never.
$pid = held_at_gate(3);
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO public.emitted (k, event_id, aggregate_id)
	SELECT k, outbox.emit('orders', 'order.prepared', jsonb_build_object('k', k), 'agg-2pc'),
	       'agg-2pc'
	  FROM generate_series(100001, 100010) k;
	PREPARE TRANSACTION 'outbox_commit_later';
	BEGIN;
	SELECT count(outbox.emit('orders', 'never.committed', '{}', 'agg-2pc'))
	  FROM generate_series(1, 10);
	PREPARE TRANSACTION 'outbox_roll_back_later';
});
$node->stop('immediate');
$node->start;
$pid = wait_restarted($pid, '(c)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '2',
	'(c) the prepared transactions survived the crash');
$node->safe_psql('postgres', q{
	COMMIT PREPARED 'outbox_commit_later';
	ROLLBACK PREPARED 'outbox_roll_back_later';
});
$pid = held_at_gate(3);
open_gate(3);
$N += 10;

# Everything arrives.
ok($node->poll_query_until('postgres',
		"SELECT count(DISTINCT event_id) >= $N FROM public.got"),
	'every event was delivered in the end');
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('60 seconds')}),
	't', 'the dispatcher is idle');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.emitted m
	 WHERE NOT EXISTS (SELECT 1 FROM public.got g WHERE g.event_id = m.event_id)}),
	'0', 'G3: no emitted event is missing');
my $dups = $node->safe_psql('postgres', q{
	SELECT count(*) - count(DISTINCT event_id) FROM public.got});
note("duplicate deliveries recorded by the handler: $dups");
is($dups, '0', 'G5: a function destination records every event exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.got g
	 WHERE NOT EXISTS (SELECT 1 FROM public.emitted m WHERE m.event_id = g.event_id)}),
	'0', 'G1: the killed transaction\'s events never arrived');

# Ids follow emission order, and per aggregate the first deliveries follow
# the ids.
is($node->safe_psql('postgres', q{
	WITH first AS (SELECT event_id, min(id) AS id FROM public.got GROUP BY event_id)
	SELECT count(*) FROM (
		SELECT row_number() OVER (ORDER BY m.k) AS by_k,
		       row_number() OVER (ORDER BY f.id) AS by_id
		  FROM public.emitted m JOIN first f USING (event_id)) x
	 WHERE by_k <> by_id}),
	'0', 'ids follow the order of emission');
is($node->safe_psql('postgres', q{
	WITH first AS (
		SELECT event_id, min(seq) AS seq, min(id) AS id, min(aggregate_id) AS aggregate_id
		  FROM public.got GROUP BY event_id)
	SELECT count(*) FROM (
		SELECT row_number() OVER (PARTITION BY aggregate_id ORDER BY seq) AS by_arrival,
		       row_number() OVER (PARTITION BY aggregate_id ORDER BY id) AS by_id
		  FROM first) x
	 WHERE by_arrival <> by_id}),
	'0', 'G4: per aggregate, first deliveries are in id order across the crashes');

my $calls = $node->safe_psql('postgres', 'SELECT last_value FROM public.calls');
note("handler calls counted: $calls for $N events (the sequence may also skip "
	  . "up to 32 values per crash); calls of batches cut by a crash were rolled back");
cmp_ok($calls, '>=', $N, 'the handler ran at least once per event');

is($node->safe_psql('postgres', q{
	SELECT delivered_total || '/' || dead || '/' || retrying || '/' || failed_attempts_total
	  FROM outbox.stats WHERE destination = 'sink'}),
	"$N/0/0/0", 'outbox.stats: every event counted once as delivered, none failed');

$node->stop;
done_testing();

# A batch locks its destination's row without the executor
# (src/dispatch/destination_rows.c); here other sessions change that row
# all the time while events flow: pause and resume, alter_destination.  A
# batch whose snapshot saw an older version of the row follows it to the
# latest one, locks it and checks it again (paused?); a row locked by a
# pause or an alter in progress is skipped, never waited for.  Expected:
# every event delivered exactly once, each aggregate in write order, no
# batch error, and the pass's reading of the destinations (also without
# the executor) sees each pause and resume.  Last, a server whose default
# isolation is SERIALIZABLE: the dispatcher's transactions stay READ
# COMMITTED.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $EVENTS = 3000;
my $CHURN = 600;

my $node = new_node('row_churn');
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (seq bigserial, n int, agg text);
	CREATE FUNCTION public.rec(e outbox.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO got (n, agg) VALUES ((e.payload->>'n')::int, e.aggregate_id)
	$$;
	SELECT outbox.create_destination('churn', 'function',
		'{"function": "public.rec", "batch_size": 7}');
	SELECT outbox.subscribe('churn', 'c');
	CREATE PROCEDURE public.churn(rounds int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. rounds LOOP
			IF i % 3 = 0 THEN
				PERFORM outbox.pause_destination('churn');
				COMMIT;
				PERFORM outbox.resume_destination('churn');
			ELSE
				PERFORM outbox.alter_destination('churn',
					jsonb_build_object('batch_size', 5 + i % 4));
			END IF;
			COMMIT;
		END LOOP;
	END $$;
	CREATE PROCEDURE public.write(events int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. events LOOP
			PERFORM outbox.emit('c', 'e', jsonb_build_object('n', i), 'agg-' || i % 20);
			IF i % 3 = 0 THEN
				COMMIT;
			END IF;
		END LOOP;
	END $$;
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');
my $log_offset = -s $node->logfile;

# The churn runs in the background while the events are written.
my $churn = $node->background_psql('postgres');
$churn->query_until(qr/churning/, "\\echo churning\nCALL public.churn($CHURN);\n");
sql("CALL public.write($EVENTS)");
$churn->query_safe('SELECT 1');
$churn->quit;

is(sql(q{SELECT paused FROM outbox.stats WHERE destination = 'churn'}), 'f',
	'the churn ends resumed');
is(sql(q{SELECT outbox.wait_delivered('120 seconds', 'churn')}), 't', 'everything delivered');
is(sql(q{SELECT count(*) || ' ' || count(DISTINCT n) FROM got}), "$EVENTS $EVENTS",
	'each event exactly once');
is(sql(q{
	SELECT count(*) FROM (
		SELECT n, lag(n) OVER (PARTITION BY agg ORDER BY seq) AS before FROM got) s
	 WHERE before > n}), '0', 'each aggregate in write order');
is(sql(q{SELECT coalesce(last_error, '') FROM outbox.stats WHERE destination = 'churn'}), '',
	'no batch failed');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/unexpected result|while running a batch of destination "churn"/,
	'no batch error in the server log');

# A paused destination gets nothing, however often it was paused before.
sql(q{SELECT outbox.pause_destination('churn')});
sql(q{SELECT outbox.emit('c', 'e', '{"n": -1}', 'agg-x')});
sql(q{SELECT outbox.emit('other', 'e', '{}')});
is(sql(q{SELECT outbox.wait_idle('30 seconds')}), 't', 'the dispatchers are idle');
is(sql(q{SELECT count(*) FROM got WHERE n = -1}), '0', 'nothing delivered while paused');
sql(q{SELECT outbox.resume_destination('churn')});
is(sql(q{SELECT outbox.wait_delivered('30 seconds', 'churn')}), 't', 'resumed: delivered');
is(sql(q{SELECT count(*) FROM got WHERE n = -1}), '1', 'once');

# The server's default isolation does not reach the dispatcher: its
# transactions, and the handlers in them, are READ COMMITTED.
sql(q{
	CREATE TABLE public.iso (level text);
	CREATE FUNCTION public.rec_iso(e outbox.events) RETURNS void LANGUAGE sql AS $$
		INSERT INTO iso VALUES (current_setting('transaction_isolation'))
	$$;
	SELECT outbox.create_destination('iso', 'function', '{"function": "public.rec_iso"}');
	SELECT outbox.subscribe('iso', 'i');
});
sql(q{ALTER SYSTEM SET default_transaction_isolation = 'serializable'});
sql(q{SELECT pg_reload_conf()});
ok(wait_until($node, 'postgres', q{SELECT current_setting('default_transaction_isolation') = 'serializable'}, 30),
	'the server defaults to serializable');
sql(q{SELECT outbox.emit('i', 'e', '{}')});
sql(q{SELECT count(outbox.emit('c', 'e', jsonb_build_object('n', 100000 + g), 'agg-s')) FROM generate_series(1, 50) g});
is(sql(q{SELECT outbox.wait_delivered('30 seconds')}), 't', 'delivered with a serializable default');
is(sql(q{SELECT string_agg(level, ',') FROM iso}), 'read committed', 'the handler ran in READ COMMITTED');
is(sql(q{SELECT count(*) FROM got WHERE n > 100000}), '50', 'the churned destination too');

$node->stop;
done_testing();

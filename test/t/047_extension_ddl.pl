# DROP EXTENSION outbox_saga and the dispatchers (issue 13 item 4): the
# dispatchers step aside for the extension's own DDL once its privilege
# check has passed, and come back when its transaction ends.
#   - DROP EXTENSION ... CASCADE while a destination is in the middle of
#     its batches never deadlocks (it did about one try in three);
#   - a role that does not own the extension gets PostgreSQL's error
#     (42501) and the dispatchers are not touched;
#   - without CASCADE a capture trigger on a user table is a dependency
#     error (2BP01): nothing is dropped and delivery goes on; with CASCADE
#     the triggers go with the extension and the table stays.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('extension_ddl', workers => 2,
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n"
	  . "outbox_saga.batch_size = 20\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{CREATE TABLE got (id bigserial, n int);
      CREATE TABLE orders (id int PRIMARY KEY, customer text);
      CREATE ROLE mallory LOGIN});

# Install, subscribe a slow handler, and start a long drain.
sub install_and_load
{
	sql(q{
		CREATE EXTENSION outbox_saga;
		CREATE OR REPLACE FUNCTION handle(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_sleep(0.002);
			INSERT INTO public.got (n) VALUES ((e.payload->>'n')::int);
		END $$;
		SELECT outbox.create_destination('fn', 'function', '{"function": "public.handle"}');
		SELECT outbox.subscribe('fn', 't');
		SELECT outbox.emit('t', 'e', jsonb_build_object('n', g), 'a' || (g % 7))
		  FROM generate_series(1, 3000) g;
	});
	my $before = sql(q{SELECT count(*) FROM got});
	return wait_until($node, 'postgres', "SELECT count(*) > $before + 40 FROM got", 60);
}

for my $round (1 .. 4)
{
	ok(install_and_load(), "round $round: the dispatchers are delivering");
	my ($ret, $out, $err) = $node->psql('postgres', 'DROP EXTENSION outbox_saga CASCADE');
	is($ret, 0, "round $round: DROP EXTENSION ... CASCADE in the middle of a batch succeeds")
	  or diag($err);
	ok(wait_no_dispatcher($node, 'postgres'), "round $round: and the dispatchers are gone");
}

# A role that does not own the extension.
ok(install_and_load(), 'installed again, delivering');
my $pids = wait_for_dispatcher($node, 'postgres');
is(sqlstate_of($node, 'postgres', 'SET ROLE mallory; DROP EXTENSION outbox_saga'), '42501',
	'a role that does not own the extension: permission denied');
is(dispatcher_pid($node, 'postgres'), $pids, 'and the dispatchers were not touched');

# A capture trigger depends on the extension.
sql(q{SELECT outbox.capture_table('public.orders')});
is(sqlstate_of($node, 'postgres', 'DROP EXTENSION outbox_saga'), '2BP01',
	'without CASCADE a capture trigger is a dependency error');
ok(wait_for_dispatcher($node, 'postgres'), 'the dispatchers come back after the failed DROP');
my $before = sql(q{SELECT count(*) FROM got});
ok(wait_until($node, 'postgres', "SELECT count(*) > $before FROM got", 60),
	'and go on delivering');
sql(q{INSERT INTO orders VALUES (1, 'c1')});
sql(q{DROP EXTENSION outbox_saga CASCADE});
is(sql(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal}),
	'0', 'with CASCADE the capture triggers go with the extension');
is(sql(q{SELECT count(*) FROM orders}), '1', 'and the table stays');
sql(q{INSERT INTO orders VALUES (2, 'c2')});
ok(wait_no_dispatcher($node, 'postgres'), 'no dispatcher without the extension');

# Inside a transaction block: the dispatchers wait until it ends.
ok(install_and_load(), 'installed again, delivering');
sql(q{BEGIN; DROP EXTENSION outbox_saga CASCADE; ROLLBACK;});
ok(wait_for_dispatcher($node, 'postgres'), 'a rolled-back DROP brings the dispatchers back');
$before = sql(q{SELECT count(*) FROM got});
ok(wait_until($node, 'postgres', "SELECT count(*) > $before FROM got", 60),
	'and they go on delivering');

$node->stop;
done_testing();

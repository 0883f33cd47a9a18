# Topic-level access control (G14, issue 12 item 3).
#
# Topics have an owner (the first role that uses them) and two privileges,
# read and write.  Reading a captured table's events takes the topic's read
# privilege, not SELECT on the table: a role that may not read an RLS table
# can neither subscribe to its topic (42501) nor receive its rows through a
# '*' subscription.  A table captured with the default topic name cannot take
# over another team's topic; emit, saga emit steps and captures write only
# topics their role may write.  Grants and revokes take effect at once, also
# for events already pending (they go to the dead letters with a 42501
# error) and for a capture defined before the revoke.  outbox.dead_letters
# shows a role the dead letters of the topics it may read only.  An update
# from 0.1.0 keeps existing subscriptions and writers working.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('topic_acl', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	CREATE ROLE carol LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO alice, bob, carol;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA saga TO alice, bob, carol;
	GRANT SELECT ON outbox.dead_letters, outbox.subscriptions, saga.step_runs
		TO alice, bob, carol;
	CREATE SCHEMA alice AUTHORIZATION alice;
	CREATE SCHEMA bob AUTHORIZATION bob;
	CREATE SCHEMA carol AUTHORIZATION carol;
});
run('postgres', q{GRANT SELECT ON outbox.topics TO alice, bob, carol});

# Run SQL in DB as ROLE (a login of that role; the superuser if undef).
# Returns its output, or the error: never dies, so that on a build without
# topic privileges each check below fails on its own.
sub run
{
	my ($db, $sql, $role) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql,
		extra_params => [ '-v', 'ON_ERROR_STOP=1', defined $role ? ('-U', $role) : () ]);
	return $ret == 0 ? $out : "ERROR: $err";
}

sub as
{
	my ($role, $sql) = @_;
	return run('postgres', $sql, $role);
}

sub state_as
{
	my ($role, $sql) = @_;
	return sqlstate_of($node, 'postgres', "SET ROLE $role; $sql");
}

sub idle
{
	return run('postgres', q{SELECT outbox.wait_idle('30 seconds')}) eq 't';
}

# Alice's salaries: row-level security, bob may not read a row.
as('alice', q{
	CREATE TABLE alice.salaries (id int PRIMARY KEY, who text, amount int);
	ALTER TABLE alice.salaries ENABLE ROW LEVEL SECURITY;
	CREATE POLICY own ON alice.salaries USING (who = current_user);
	SELECT outbox.capture_table('alice.salaries');
	CREATE TABLE alice.got (topic text, payload jsonb);
	CREATE FUNCTION alice.sink(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF e.event_type = 'fail' THEN RAISE EXCEPTION 'alice fails'; END IF;
		INSERT INTO alice.got VALUES (e.topic, e.payload);
	END $$;
	SELECT outbox.create_destination('alice_dest', 'function',
		'{"function": "alice.sink", "max_attempts": 1}');
	SELECT outbox.subscribe('alice_dest', 'salaries');
});
is(as('alice', q{SELECT owner FROM outbox.topics WHERE name = 'salaries'}), 'alice',
	'capture_table made alice the owner of topic salaries');

as('bob', q{
	CREATE TABLE bob.got (topic text, payload jsonb);
	CREATE FUNCTION bob.sink(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF e.event_type = 'fail' THEN RAISE EXCEPTION 'bob fails'; END IF;
		INSERT INTO bob.got VALUES (e.topic, e.payload);
	END $$;
	SELECT outbox.create_destination('bob_dest', 'function',
		'{"function": "bob.sink", "max_attempts": 1}');
	SELECT outbox.create_destination('bob_all', 'function',
		'{"function": "bob.sink", "max_attempts": 1}');
	SELECT outbox.subscribe('bob_all', '*');
	SELECT outbox.subscribe('bob_dest', 'bobs');
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# 1. The RLS case: SELECT on nothing, so no subscription.
is(state_as('bob', q{SELECT outbox.subscribe('bob_dest', 'salaries')}), '42501',
	'bob may not subscribe to the topic of a table he may not read');
is(state_as('bob', q{SELECT outbox.subscribe('alice_dest', 'bobs')}), '42501',
	'nor touch alice\'s destination');

run('postgres', q{
	SET ROLE alice;
	INSERT INTO alice.salaries VALUES (1, 'alice', 100), (2, 'carol', 200);
	RESET ROLE;
	SET ROLE bob;
	SELECT outbox.emit('bobs', 'hello', '{"n": 1}');
});
ok(idle(), 'idle after the inserts');
is(as('alice', q{SELECT count(*) FROM alice.got WHERE topic = 'salaries'}), '2',
	'alice receives her table\'s events');
is(as('bob', q{SELECT count(*) FROM bob.got WHERE topic = 'bobs'}), '2',
	'bob receives his own topic (by name and through \'*\')');
is(as('bob', q{SELECT count(*) FROM bob.got WHERE topic = 'salaries'}), '0',
	'bob\'s \'*\' subscription does not receive the salaries');

# 2. The takeover: bob.salaries with the default topic name.
as('bob', q{CREATE TABLE bob.salaries (id int PRIMARY KEY, amount int)});
is(state_as('bob', q{SELECT outbox.capture_table('bob.salaries')}), '42501',
	'capturing bob.salaries into alice\'s topic "salaries" is refused');
is(as('bob', q{SELECT outbox.capture_table('bob.salaries', topic => 'bob.salaries')}),
	'outbox_capture', 'with a topic of his own it works');
is(run('postgres', q{SELECT owner FROM outbox.topics WHERE name = 'salaries'}),
	'alice', 'topic salaries still belongs to alice');
is(state_as('bob', q{CREATE TRIGGER sneak AFTER INSERT ON bob.salaries FOR EACH ROW
		EXECUTE FUNCTION outbox.capture('topic=salaries');
	INSERT INTO bob.salaries VALUES (7, 1)}), '42501',
	'a hand-made capture trigger into alice\'s topic fails when it fires');

# 3. Writes into another team's topic.
is(state_as('bob', q{SELECT outbox.emit('salaries', 'fake', '{"who": "bob"}')}), '42501',
	'bob may not emit into alice\'s topic');
as('bob', q{
	SELECT saga.define('bob_saga',
		'[{"name": "a", "action": {"emit": {"topic": "salaries", "event_type": "fake", "await": false}}}]',
		'{"max_attempts": 1}');
	SELECT saga.start('bob_saga', '{}');
});
ok(wait_until($node, 'postgres', q{
	SELECT EXISTS (SELECT 1 FROM saga.step_runs WHERE error LIKE '42501%')}, 60),
	'a saga emit step of bob\'s into alice\'s topic fails with 42501');
ok(idle(), 'idle after the saga');
is(as('alice', q{SELECT count(*) FROM alice.got WHERE payload->>'who' = 'bob'}), '0',
	'no fake salary reached alice');

# 4. Grants: read for bob, then a revoke while events are pending.
is(state_as('bob', q{SELECT outbox.grant_topic('salaries', 'bob', 'read')}), '42501',
	'only the owner grants');
as('alice', q{SELECT outbox.grant_topic('salaries', 'bob', 'read')});
as('bob', q{SELECT outbox.subscribe('bob_dest', 'salaries')});
as('alice', q{INSERT INTO alice.salaries VALUES (3, 'alice', 300)});
ok(idle(), 'idle after the grant');
is(as('bob', q{SELECT count(*) FROM bob.got WHERE topic = 'salaries'}), '2',
	'with read granted bob receives the salaries (by name and through \'*\')');

as('bob', q{SELECT outbox.pause_destination('bob_dest'); SELECT outbox.pause_destination('bob_all')});
as('alice', q{INSERT INTO alice.salaries VALUES (4, 'alice', 400)});
as('alice', q{SELECT outbox.revoke_topic('salaries', 'bob', 'read')});
as('bob', q{SELECT outbox.resume_destination('bob_dest'); SELECT outbox.resume_destination('bob_all')});
ok(idle(), 'idle after the revoke');
is(as('bob', q{SELECT count(*) FROM bob.got WHERE topic = 'salaries'}), '2',
	'after the revoke the pending salary is not delivered');
is(run('postgres', q{
	SELECT string_agg(destination || ' ' || split_part(last_error, ':', 1), ',')
	  FROM outbox.dead_letters WHERE topic = 'salaries'}),
	'bob_dest 42501', 'it is a dead letter of bob_dest with a 42501 error (\'*\' skips it)');
is(as('bob', q{SELECT count(*) FROM outbox.dead_letters WHERE topic = 'salaries'}), '0',
	'bob does not see it in outbox.dead_letters');
is(as('alice', q{SELECT count(*) FROM outbox.dead_letters WHERE topic = 'salaries'}), '1',
	'alice, who owns the topic, does');

as('alice', q{SELECT outbox.grant_topic('salaries', 'bob', 'read')});
is(as('bob', q{SELECT outbox.replay_dead('bob_dest')}), '1', 'after a new grant bob replays it');
ok(idle(), 'idle after the replay');
is(as('bob', q{SELECT count(*) FROM bob.got WHERE payload->'new'->>'id' = '4'}), '1',
	'and receives it');

# Write grants, and a revoke that a capture defined before must obey; one
# session, so that the session's cached decisions must follow the revoke.
as('carol', q{CREATE TABLE carol.pay (id int PRIMARY KEY)});
is(state_as('carol', q{SELECT outbox.capture_table('carol.pay', topic => 'salaries')}), '42501',
	'carol may not capture into salaries');
as('alice', q{SELECT outbox.grant_topic('salaries', 'carol', 'write')});
my ($ret, $out, $err) = $node->psql('postgres', q{
	SET ROLE carol;
	SELECT outbox.capture_table('carol.pay', topic => 'salaries');
	INSERT INTO carol.pay VALUES (1);
	SELECT outbox.emit('salaries', 'carol', '{}') IS NOT NULL;
	RESET ROLE;
	SET ROLE alice;
	SELECT outbox.revoke_topic('salaries', 'carol', 'write');
	RESET ROLE;
	SET ROLE carol;
	\set ON_ERROR_STOP 0
	INSERT INTO carol.pay VALUES (2);
	SELECT outbox.emit('salaries', 'carol', '{}');
}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
my @denied = ($err =~ /ERROR:\s+42501: permission denied for topic "salaries"/g);
is(scalar(@denied), 2, 'after the revoke the captured insert and the emit fail with 42501')
  or diag($err);
is(run('postgres', q{SELECT count(*) FROM carol.pay}), '1',
	'the refused insert left nothing');

# 5. Dead letters: each role sees its own topics' only.
as('alice', q{SELECT outbox.revoke_topic('salaries', 'bob', 'read')});
as('bob', q{SELECT outbox.emit('bobs', 'fail', '{"secret": "bob"}')});
as('alice', q{SELECT outbox.emit('salaries', 'fail', '{"secret": "alice"}')});
ok(idle(), 'idle after the failures');
is(as('bob', q{SELECT string_agg(DISTINCT payload->>'secret', ',') FROM outbox.dead_letters}),
	'bob', 'bob\'s dead letters: his topic only');
is(as('alice', q{SELECT string_agg(DISTINCT payload->>'secret', ',') FROM outbox.dead_letters
	WHERE payload ? 'secret'}),
	'alice', 'alice\'s dead letters: her topic only');
is(run('postgres', q{SELECT string_agg(DISTINCT payload->>'secret', ',' ORDER BY payload->>'secret')
	FROM outbox.dead_letters WHERE payload ? 'secret'}),
	'alice,bob', 'a superuser sees all');

# 6. An update from 0.1.0 keeps what worked working.
run('postgres', q{CREATE DATABASE old});
run('old', q{
	CREATE EXTENSION outbox_saga VERSION '0.1.0';
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO alice, bob;
	CREATE SCHEMA alice AUTHORIZATION alice;
});
run('old', q{
	CREATE TABLE alice.got (topic text);
	CREATE FUNCTION alice.sink(e outbox.events) RETURNS void LANGUAGE sql
		AS $$ INSERT INTO alice.got VALUES (e.topic) $$;
	SELECT outbox.create_destination('alice_old', 'function', '{"function": "alice.sink"}');
	SELECT outbox.subscribe('alice_old', 'orders');
	SELECT outbox.create_destination('alice_any', 'function', '{"function": "alice.sink"}');
	SELECT outbox.subscribe('alice_any', '*');
}, 'alice');
run('old', q{SELECT outbox.emit('orders', 'placed', '{}')}, 'bob');
is(run('old', q{ALTER EXTENSION outbox_saga UPDATE}), '', 'ALTER EXTENSION UPDATE works');
like(run('old', q{SELECT outbox.emit('orders', 'placed', '{}')}, 'bob'), qr/^[0-9a-f-]{36}$/,
	'after the update bob, who could emit before, still emits into orders');
ok(wait_until($node, 'old', q{SELECT outbox.wait_idle('1 second')}, 60), 'the old database is idle');
is(run('old', q{SELECT count(*) FROM alice.got}), '4',
	'after the update both events reached both of alice\'s destinations');
my $su = run('old', q{SELECT current_user});
is(run('old', q{SELECT owner || ' ' || array_to_string(readers, ',') || ' '
	|| array_to_string(writers, ',') FROM outbox.topics}),
	"$su alice alice,bob",
	'orders: owned by the extension owner, read by alice, written by the roles that could emit');

$node->stop;
done_testing();

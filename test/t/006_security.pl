# Privileges of handlers and destinations (G10, G11).
#
# A destination created by an unprivileged role runs its handler as that
# role (also when a superuser created it under SET ROLE), with the
# search_path recorded for it (its creator's; pg_temp last) - so a function
# planted in a schema outside that path (public here) that would capture an
# unqualified call is never called - and with no more
# rights than that role: reading a table it may not read fails with 42501,
# the event ends in the dead letters and nothing leaks.  Another role can
# neither change, pause, drop, (un)subscribe, replay nor discard that
# destination's dead letters (42501), nor see it, nor point a destination of
# its own at a function in a schema it may not use.  Settings a handler
# changes for the session (set_config(..., false)) and session advisory
# locks it takes do not outlive its delivery, so it cannot plant its own
# functions under the dispatcher's statements, which run as the bootstrap
# superuser.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('security', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	CREATE ROLE mallory LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO alice, bob;
	GRANT SELECT ON outbox.destinations, outbox.subscriptions TO alice, bob;
	CREATE SCHEMA app AUTHORIZATION alice;
	CREATE TABLE public.secrets (s text);
	INSERT INTO public.secrets VALUES ('top secret');
	GRANT CREATE ON SCHEMA public TO mallory;
});

# Run SQL as a role (a login of that role).
sub as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

as('alice', q{
	CREATE TABLE app.received (
		seq    bigint GENERATED ALWAYS AS IDENTITY,
		tag    text,
		run_as text,
		search text,
		lowered text,
		secret text
	);
	CREATE FUNCTION app.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF e.event_type = 'peek' THEN
			INSERT INTO app.received (tag, secret)
			SELECT e.payload->>'tag', s.s FROM public.secrets s;
		ELSE
			-- lower() unqualified, on a varchar: the classic capture target.
			INSERT INTO app.received (tag, run_as, search, lowered)
			VALUES (e.payload->>'tag', current_user, current_setting('search_path'),
			        lower((e.payload->>'tag')::varchar));
		END IF;
	END $$;
	-- The handler's search_path is alice's current one: her own schema only.
	SET search_path = app;
	SELECT outbox.create_destination('alice_dest', 'function',
		'{"function": "app.handler", "max_attempts": 1}');
	SELECT outbox.subscribe('alice_dest', 'greetings');
	SELECT outbox.subscribe('alice_dest', 'spy');
});
is($node->safe_psql('postgres',
		q{SELECT owner FROM outbox.destinations WHERE name = 'alice_dest'}),
	'alice', 'the destination is owned by the role that created it');

# Mallory plants public.lower(varchar).  With public in the search_path it
# captures an unqualified lower() of a varchar even behind pg_catalog.
as('mallory', q{
	CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql
	AS $$ SELECT 'PWNED'::text $$;
});
is(as('alice', q{SET search_path = pg_catalog, public; SELECT lower('ABC'::varchar)}),
	'PWNED', 'control: the planted function captures lower(varchar) when public is in the path');

ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');
$node->safe_psql('postgres', q{
	SELECT outbox.emit('greetings', 'hello', '{"tag": "Hello-1"}', 'g1');
	SELECT outbox.emit('spy', 'peek', '{"tag": "peek-1"}', 'p1');
});
is($node->safe_psql('postgres', q{SELECT outbox.wait_idle('30 seconds')}), 't',
	'the dispatcher is idle');

is($node->safe_psql('postgres', q{
	SELECT run_as || '|' || search || '|' || lowered FROM app.received WHERE tag = 'Hello-1'}),
	'alice|app, pg_temp|hello-1',
	'the handler ran as alice, with her search_path (app, pg_temp last); the planted lower() was not called');

# The peek: alice may not read public.secrets.
is($node->safe_psql('postgres', q{
	SELECT destination || '|' || attempts || '|' || split_part(last_error, ':', 1)
	  FROM outbox.dead_letters WHERE payload->>'tag' = 'peek-1'}),
	'alice_dest|1|42501',
	'reading a table the owner may not read fails with 42501 and ends in the dead letters');
like($node->safe_psql('postgres', q{
	SELECT last_error FROM outbox.dead_letters WHERE payload->>'tag' = 'peek-1'}),
	qr/permission denied for table secrets/, 'the dead letter keeps the error');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM app.received WHERE tag = 'peek-1' OR secret IS NOT NULL}),
	'0', 'nothing leaked');
unlike($node->safe_psql('postgres', q{
	SELECT string_agg(coalesce(last_error, ''), ' ') FROM outbox.dead_letters}),
	qr/top secret/, 'not even through the error text');

# A superuser who creates a destination under SET ROLE creates it as that
# role: its handler runs without superuser rights.
$node->safe_psql('postgres', q{
	SET ROLE alice;
	SELECT outbox.create_destination('alice_via_set_role', 'function',
		'{"function": "app.handler", "max_attempts": 1}');
	SELECT outbox.subscribe('alice_via_set_role', 'spy2');
	RESET ROLE;
	SELECT outbox.emit('spy2', 'peek', '{"tag": "peek-2"}', 'p2');
});
is($node->safe_psql('postgres',
		q{SELECT owner FROM outbox.destinations WHERE name = 'alice_via_set_role'}),
	'alice', 'SET ROLE alice, then create_destination: owned by alice');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM outbox.dead_letters
	 WHERE destination = 'alice_via_set_role' AND last_error LIKE '42501:%'}),
	'its handler runs as alice too (42501 reading the secret)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM app.received WHERE secret IS NOT NULL}),
	'0', 'still nothing leaked');

# Bob may not touch alice's destinations.
my $sub_id = $node->safe_psql('postgres',
	q{SELECT id FROM outbox.subscriptions WHERE destination = 'alice_dest' AND topic = 'spy'});
my %attempts = (
	'alter_destination' => q{SELECT outbox.alter_destination('alice_dest', '{"max_attempts": 5}')},
	'drop_destination' => q{SELECT outbox.drop_destination('alice_dest')},
	'pause_destination' => q{SELECT outbox.pause_destination('alice_dest')},
	'resume_destination' => q{SELECT outbox.resume_destination('alice_dest')},
	'subscribe' => q{SELECT outbox.subscribe('alice_dest', 'more')},
	'unsubscribe' => "SELECT outbox.unsubscribe($sub_id)",
	'replay_dead' => q{SELECT outbox.replay_dead('alice_dest')},
	'discard_dead' => q{SELECT outbox.discard_dead('alice_dest')},
	'replay_dead by event id' => q{SELECT outbox.replay_dead('alice_dest',
		(SELECT array_agg(event_id) FROM outbox.events))},
);
for my $what (sort keys %attempts)
{
	is(sqlstate_of($node, 'postgres', "SET ROLE bob; $attempts{$what}"), '42501',
		"bob: $what of alice's destination fails with 42501");
}
is(as('bob', q{SELECT outbox.replay_dead()}) . '/' . as('bob', q{SELECT outbox.discard_dead()}),
	'0/0', "bob: replay_dead() and discard_dead() without a name leave alice's dead letters alone");
is(as('bob', q{SELECT count(*) FROM outbox.destinations}) . '/'
	  . as('bob', q{SELECT count(*) FROM outbox.subscriptions}),
	'0/0', "bob sees neither alice's destinations nor their subscriptions");
is(as('alice', q{SELECT count(*) FROM outbox.destinations}), '2',
	'alice sees her own');
is($node->safe_psql('postgres', q{
	SELECT d.paused || '|' || (d.config->>'max_attempts') || '|'
	       || (SELECT count(*) FROM outbox.subscriptions s WHERE s.destination = d.name) || '|'
	       || (SELECT count(*) FROM outbox.dead_letters l WHERE l.destination = d.name)
	  FROM outbox.destinations d WHERE d.name = 'alice_dest'}),
	'false|1|2|1', "alice's destination is unchanged after bob's attempts");

# Bob may not aim a destination of his own at a function in alice's schema,
# which he may not use.
is(sqlstate_of($node, 'postgres', q{SET ROLE bob;
	SELECT outbox.create_destination('bob_dest', 'function', '{"function": "app.handler"}')}),
	'42501', 'bob: a handler in a schema he may not use is refused (42501)');

# Alice may replay her own dead letters; the replay runs as alice again.
is(as('alice', q{SELECT outbox.replay_dead('alice_dest')}), '1',
	'alice replays her dead letter');
ok($node->poll_query_until('postgres', q{
	SELECT attempts = 1 AND last_error LIKE '42501:%' FROM outbox.dead_letters
	 WHERE destination = 'alice_dest'}),
	'the replayed event fails the same way and is dead again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM app.received WHERE secret IS NOT NULL}),
	'0', 'nothing leaked after the replay');

# Revoking EXECUTE on a handler from the owner stops deliveries to it
# (42501), even though the dispatcher itself could run it.
$node->safe_psql('postgres', q{
	CREATE TABLE public.su_log (tag text);
	GRANT INSERT ON public.su_log TO alice;
	CREATE FUNCTION public.su_handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.su_log VALUES (e.payload->>'tag');
	END $$;
	REVOKE EXECUTE ON FUNCTION public.su_handler(outbox.events) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION public.su_handler(outbox.events) TO alice;
});
as('alice', q{
	SELECT outbox.create_destination('alice_su', 'function',
		'{"function": "public.su_handler", "max_attempts": 1}');
	SELECT outbox.subscribe('alice_su', 'su');
});
$node->safe_psql('postgres', q{SELECT outbox.emit('su', 'x', '{"tag": "su-1"}', 's1')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.su_log}),
	'a granted handler runs');
$node->safe_psql('postgres', q{
	REVOKE EXECUTE ON FUNCTION public.su_handler(outbox.events) FROM alice;
	SELECT outbox.emit('su', 'x', '{"tag": "su-2"}', 's2');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM outbox.dead_letters
	 WHERE destination = 'alice_su' AND last_error LIKE '42501:%'}),
	'after REVOKE EXECUTE from the owner, the handler is refused with 42501');
is($node->safe_psql('postgres', q{SELECT string_agg(tag, ',') FROM public.su_log}), 'su-1',
	'and did not run');

# A handler's session-level settings must not outlive its delivery: the
# dispatcher runs its own statements as the bootstrap superuser, so a
# search_path left behind by a handler would let the destination's owner
# put her own functions (here an aggregate max(bigint), which the
# dispatcher's statements call unqualified) under them and run code as the
# superuser.
$node->safe_psql('postgres', q{
	CREATE ROLE eve LOGIN;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO eve;
	CREATE SCHEMA eve AUTHORIZATION eve;
});
as('eve', q{
	CREATE TABLE eve.log (who text, su boolean);
	CREATE FUNCTION eve.sf(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE
		su boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
	BEGIN
		INSERT INTO eve.log VALUES (current_user, su);
		IF su THEN
			EXECUTE 'ALTER ROLE eve SUPERUSER';
		END IF;
		RETURN GREATEST(s, v);
	END $$;
	CREATE AGGREGATE eve.max(bigint) (sfunc = eve.sf, stype = bigint);
	CREATE TABLE eve.seen (marker text, search text);
	CREATE FUNCTION eve.handler(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		-- What an earlier delivery left behind, if anything.
		INSERT INTO eve.seen VALUES (pg_catalog.current_setting('eve.marker', true),
		                             pg_catalog.current_setting('search_path'));
		PERFORM pg_catalog.set_config('eve.marker', 'left behind', false);
		PERFORM pg_catalog.set_config('search_path', 'eve, pg_catalog', false);
		PERFORM pg_catalog.set_config('application_name', 'eve was here', false);
		PERFORM pg_catalog.pg_advisory_lock(4242);
	END $$;
	SELECT outbox.create_destination('eve_dest', 'function', '{"function": "eve.handler"}');
	SELECT outbox.subscribe('eve_dest', 'eve');
});
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', q{SELECT outbox.emit('eve', 'e')});
	$node->safe_psql('postgres', q{SELECT outbox.wait_idle('10 seconds')});
}
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM outbox.stats WHERE destination = 'eve_dest' AND delivered_total = 3}),
	'1', "eve's handler ran");
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE marker = 'left behind'
	                          OR search <> (SELECT search_path FROM outbox.destinations
	                                         WHERE name = 'eve_dest'))
	       || '/' || count(*) FROM eve.seen}),
	'0/3', "a handler's session-level set_config() does not outlive its delivery");
is($node->safe_psql('postgres', q{
	SELECT application_name FROM pg_stat_activity WHERE backend_type = 'outbox_saga dispatcher'}),
	'outbox_saga dispatcher',
	"the dispatcher's application_name survives a handler that changed it");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE a.backend_type = 'outbox_saga dispatcher'
	   AND l.locktype = 'advisory' AND l.objid = 4242}),
	'0', "a handler's session advisory lock does not outlive its delivery");
is($node->safe_psql('postgres', q{SELECT pg_try_advisory_lock(4242)}), 't',
	'so others can take it');
is($node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE su) || '/' || count(*) FROM eve.log}),
	'0/0', "none of eve's functions ran inside the dispatcher's own statements");
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'eve'}),
	'f', 'G10: a destination owner cannot make herself superuser through the dispatcher');

# A create_destination or alter_destination that fails, whatever the reason,
# keeps its statement - and with it the config's secrets - out of the server
# log; the error itself is logged.  (The test clusters log every statement
# before it runs; the calls turn that off, as it is off by default.)
my $log_offset = -s $node->logfile;
for my $call (
	q{SELECT outbox.create_destination('', 'notify', '{"password": "hunter2-leak-1"}')},
	q{SELECT outbox.create_destination('no_such_kind', 'nokind', '{"password": "hunter2-leak-2"}')},
	q{SELECT outbox.create_destination('bad_key', 'notify', '{"password": "hunter2-leak-3"}')},
	q{SELECT outbox.alter_destination('no_such_destination', '{"password": "hunter2-leak-4"}')})
{
	my ($ret) = $node->psql('postgres', "SET log_statement = 'none'; $call");
	isnt($ret, 0, 'the call fails');
}
my $failed_log = slurp_file($node->logfile, $log_offset);
like($failed_log, qr/destination name must not be empty/, 'the errors are logged');
unlike($failed_log, qr/hunter2-leak/, 'the statements with their config secrets are not');

$node->stop;
done_testing();

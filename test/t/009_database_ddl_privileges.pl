# Database-level DDL by roles without the rights for it leaves the
# dispatcher alone (G3, G11).  DROP DATABASE, ALTER DATABASE ... RENAME /
# SET TABLESPACE and CREATE DATABASE ... TEMPLATE need the database to
# themselves, so the extension stops the database's dispatcher first - but
# only for a role that passes PostgreSQL's own privilege checks for the
# command.  Any other role gets PostgreSQL's error (42501) while the
# dispatcher keeps running (same pid) and keeps delivering.  The privileged
# case (the dispatcher stops, the command succeeds, the dispatcher comes
# back) is 004_lifecycle's.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('ddl_privileges', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE ROLE maker LOGIN CREATEDB;
	CREATE DATABASE rt;
});
$node->safe_psql('rt', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE public.got (n int);
	CREATE FUNCTION public.take(e outbox.events) RETURNS void
		LANGUAGE sql AS $$ INSERT INTO public.got VALUES ((e.payload->>'n')::int) $$;
	SELECT outbox.create_destination('taker', 'function', '{"function": "public.take"}');
	SELECT outbox.subscribe('taker', 'ddl');
});
my $pid = wait_for_dispatcher($node, 'rt');
isnt($pid, '', 'rt has a dispatcher');

# The SQLSTATE of SQL run by ROLE, '' if it succeeds.
sub sqlstate_as
{
	my ($role, $sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $sql,
		extra_params => [ '-U', $role, '-v', 'VERBOSITY=verbose' ]);
	return '' if $ret == 0;
	return $1 if $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return "no SQLSTATE in: $stderr";
}

my $n = 0;
for my $case (
	[ 'mallory', 'DROP DATABASE rt' ],
	[ 'mallory', 'DROP DATABASE rt WITH (FORCE)' ],
	[ 'mallory', 'ALTER DATABASE rt RENAME TO rt2' ],
	[ 'mallory', 'ALTER DATABASE rt SET TABLESPACE pg_default' ],
	[ 'mallory', 'CREATE DATABASE rtcopy TEMPLATE rt' ],
	[ 'maker',   'CREATE DATABASE rtcopy TEMPLATE rt' ])
{
	my ($role, $sql) = @$case;
	is(sqlstate_as($role, $sql), '42501', "$role: $sql is refused by PostgreSQL");
	is(dispatcher_pid($node, 'rt'), $pid, "$role: $sql left the dispatcher running");

	# ... and it still delivers.
	$n++;
	$node->safe_psql('rt', qq{SELECT outbox.emit('ddl', 'e', '{"n": $n}')});
	ok($node->poll_query_until('rt', "SELECT count(*) = $n FROM public.got"),
		"$role: $sql: delivery goes on");
}
is(dispatcher_pid($node, 'rt'), $pid, 'the same dispatcher served every event');

$node->stop;
done_testing();

# The privileges matrix (issue 12): five roles - a superuser, the
# database's owner, an application role and an operator role with exactly
# the grants of the README's Privileges section, and a role with nothing -
# times every function, view and table of the schemas outbox and saga, read
# from the catalog.  Each cell is checked by calling the function (with
# NULL arguments: every function refuses or ignores them without changing
# anything, and the call is rolled back anyway) or reading the relation,
# and compared with the README's table: allowed, or refused with 42501.  A
# function or relation missing from the table, a row for one that does not
# exist, or a wrong cell fails the test, so the table and the extension
# cannot drift apart.
use strict;
use warnings;

use File::Basename qw(dirname);
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('privileges');
$node->start;

# The README's Privileges section: its SQL block and its table.
my $readme = slurp_file(dirname(__FILE__) . '/../../README.md');
my ($section) = $readme =~ /^### Privileges\n(.*?)^\*\*Owners and DROP ROLE/ms;
ok(defined $section, 'the README has a Privileges section');
my ($grants) = $section =~ /^```sql\n(.*?)^```/ms;
ok(defined $grants, 'it has the grants');
my @roles = ('superuser', 'dbo', 'app', 'ops', 'nobody');
my %expected;
for my $line (split /\n/, $section)
{
	next unless $line =~ /^\| `([^`]+)` \| (.*) \|$/;
	my ($key, $cells) = ($1, $2);
	my @cells = split / \| /, $cells;
	is(scalar(@cells), scalar(@roles), "the README row of $key has a cell per role");
	ok(!exists $expected{$key}, "the README has one row for $key");
	$expected{$key} = { map { $roles[$_] => ($cells[$_] eq 'yes' ? 'allowed' : 'denied') } 0 .. $#roles };
	ok(($cells[$_] eq 'yes' || $cells[$_] eq '–'), "cell $key/$roles[$_] is yes or –")
	  for 0 .. $#roles;
}
ok(scalar(keys %expected) > 40, 'the README table has rows (' . scalar(keys %expected) . ')');

$node->safe_psql('postgres', q{
	CREATE ROLE dbo LOGIN;
	CREATE ROLE app;
	CREATE ROLE ops;
	CREATE ROLE nobody;
	CREATE DATABASE m OWNER dbo;
});
$node->safe_psql('m', 'CREATE EXTENSION outbox_saga');
$node->safe_psql('m', $grants);

# Every function, view and table of the two schemas, with the statement
# that uses it.  Trigger functions are used by CREATE TRIGGER on a
# temporary table.
my $objects = $node->safe_psql('m', q{
	SELECT n.nspname || '.' || p.proname || '()',
	       CASE WHEN p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
	            THEN format('CREATE TRIGGER matrix AFTER INSERT ON pg_temp.matrix_t FOR EACH ROW EXECUTE FUNCTION %I.%I()',
	                        n.nspname, p.proname)
	            ELSE format('SELECT %I.%I(%s)', n.nspname, p.proname,
	                        (SELECT coalesce(string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o), '')
	                           FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o)))
	       END
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('outbox', 'saga')
	UNION ALL
	SELECT n.nspname || '.' || c.relname,
	       format('SELECT count(*) FROM (SELECT * FROM %I.%I) s', n.nspname, c.relname)
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname IN ('outbox', 'saga') AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	 ORDER BY 1});
my @objects = map { [ split /\|/, $_, 2 ] } split /\n/, $objects;
my %in_catalog;
for my $o (@objects)
{
	ok(!$in_catalog{ $o->[0] }, "$o->[0] is not overloaded (the table names functions without arguments)");
	$in_catalog{ $o->[0] } = 1;
	ok(exists $expected{ $o->[0] }, "$o->[0] has a row in the README's Privileges table");
}
ok($in_catalog{$_}, "the README row $_ names an object of the extension") for sort keys %expected;

# One session per role: each statement in a subtransaction that is always
# rolled back; its SQLSTATE (P0999 = it succeeded) as a NOTICE.
my $values = join(",\n", map {
		my ($k, $call) = @$_;
		$call =~ s/'/''/g;
		"('$k', '$call')"
	} @objects);
for my $role (@roles)
{
	my $set = $role eq 'superuser' ? '' : "SET ROLE $role;";
	my ($ret, $out, $err) = $node->psql('m', qq{
		SET statement_timeout = '60s';
		$set
		CREATE TEMP TABLE matrix_t (id int);
		DO \$do\$
		DECLARE r record;
		BEGIN
			FOR r IN SELECT * FROM (VALUES $values) v(key, call) LOOP
				BEGIN
					EXECUTE r.call;
					RAISE EXCEPTION USING ERRCODE = 'P0999';
				EXCEPTION WHEN OTHERS THEN
					RAISE NOTICE 'cell %=%', r.key, SQLSTATE;
				END;
			END LOOP;
		END \$do\$;
	});
	is($ret, 0, "the calls as $role ran") or diag($err);
	my %got = $err =~ /NOTICE:  cell (\S+)=(\w{5})/g;
	for my $o (@objects)
	{
		my $key = $o->[0];
		next unless exists $expected{$key};
		my $state = $got{$key} // 'none';
		is($state eq '42501' ? 'denied' : 'allowed', $expected{$key}{$role},
			"$role on $key (SQLSTATE $state)");
	}
}

# The README's operator grants work for the monitoring views, also with
# destinations of another role.
$node->safe_psql('m', q{
	SET ROLE app;
	SELECT outbox.create_destination('app_dest', 'notify', '{"channel": "c"}');
});
is($node->safe_psql('m', 'SET ROLE ops; SELECT destination FROM outbox.stats'), 'app_dest',
	'ops reads outbox.stats with every destination');
is($node->safe_psql('m', 'SET ROLE app; SELECT destination FROM outbox.stats'), 'app_dest',
	'app reads its own destinations in outbox.stats');
ok($node->safe_psql('m', 'SET ROLE ops; SELECT count(*) > 0 FROM outbox.workers') eq 't',
	'ops reads outbox.workers');

$node->stop;
done_testing();

# Helpers shared by the TAP tests of outbox_saga.
#
# new_node(NAME, %opts) makes a PostgreSQL::Test::Cluster with the library
# preloaded (unless preload => 0) and extra settings from conf => '...'.
# It pins outbox_saga.workers_per_database to workers => N (default 1):
# most files reason about one dispatcher process (kill it, count its
# attempts); the pool of dispatchers is tested by the files that ask for
# more (045-047), and the pg_regress and isolation suites run with the
# default.
# Test receivers listen on loopback, which outbox_saga.http_deny_networks
# denies by default: new_node allows it (link-local stays denied) unless
# default_deny => 1 asks for the default.
#
# Waiting (never bare sleeps):
#   wait_for_dispatcher(NODE, DB)     pid of DB's dispatcher once it runs
#   wait_no_dispatcher(NODE, DB)      true once DB has no dispatcher
#   dispatcher_pid(NODE, DB)          pid of DB's dispatcher now, or ''
#   wait_until(NODE, DB, SQL, SECONDS) true once SQL returns 't' (like
#                                     poll_query_until, with a time limit)
#   wait_for_log_match(NODE, RE, OFFSET, SECONDS)
#                                     true once the server log after OFFSET
#                                     matches RE (false on timeout, never dies)
# Under make test SANITIZE=address, loading this module puts the sanitizer
# wrappers first in PATH (scripts/sanitize.sh).
# Errors:
#   sqlstate_of(NODE, DB, SQL)        the SQLSTATE SQL fails with, or '' if
#                                     it succeeds (psql with VERBOSITY verbose)
# Windows of concurrent writers:
#   ids_before_next_generation(NODE, N)
#                                     the next event id drawn is N before the
#                                     next generation (partition) of the log
#   interleaved_writers(NODE, %opts)  writers interleave events in one
#                                     window, commit in a random order; what
#                                     each topic got committed, in commit order
package OutboxTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);
use List::Util ();
use Exporter 'import';

our @EXPORT = qw(new_node sqlstate_of dispatcher_pid wait_for_dispatcher
  wait_no_dispatcher wait_until wait_for_log_match ids_before_next_generation
  interleaved_writers);

# make test SANITIZE=address: the wrappers of scripts/sanitize.sh come first
# in PATH, so that every cluster's pg_ctl starts the server with the
# sanitizer runtimes preloaded (prove's PATH begins with the real bindir).
$ENV{PATH} = "$ENV{OUTBOX_SANITIZER_BIN}:$ENV{PATH}"
  if $ENV{OUTBOX_SANITIZER_BIN};

sub new_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $preload = $opts{preload} // 1;
	$node->append_conf('postgresql.conf',
		($preload ? "shared_preload_libraries = 'outbox_saga'\n" : '')
		  . "max_worker_processes = 16\n"
		  . "outbox_saga.workers_per_database = " . ($opts{workers} // 1) . "\n"
		  . "track_commit_timestamp = " . (($opts{commit_ts} // 1) ? 'on' : 'off') . "\n"
		  . ($opts{default_deny} ? ''
			: "outbox_saga.http_deny_networks = '169.254.0.0/16, fe80::/10'\n")
		  . ($opts{conf} // ''));
	return $node;
}

# The SQLSTATE of the first error SQL raises in DB, '' if it succeeds.
sub sqlstate_of
{
	my ($node, $db, $sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql($db, $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return '' if $ret == 0;
	return $1 if $stderr =~ /(?:ERROR|FATAL):\s+([0-9A-Z]{5}):/;
	return "no SQLSTATE in: $stderr";
}

# The pid of the dispatcher connected to DB, '' if there is none.
sub dispatcher_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(pid::text, ',') FROM pg_catalog.pg_stat_activity
		 WHERE backend_type = 'outbox_saga dispatcher' AND datname = '$db'});
}

# Wait until DB has all its dispatchers (outbox_saga.workers_per_database,
# none of them $not_pid if given); returns their pids ("a,b" when more than
# one), or '' on timeout.
sub wait_for_dispatcher
{
	my ($node, $db, $not_pid) = @_;
	my $extra = defined $not_pid ? "AND pid <> $not_pid" : '';
	return ''
	  unless $node->poll_query_until('postgres', qq{
		SELECT count(*) = current_setting('outbox_saga.workers_per_database')::int
		  FROM pg_catalog.pg_stat_activity
		 WHERE backend_type = 'outbox_saga dispatcher' AND datname = '$db' $extra});
	return dispatcher_pid($node, $db);
}

# Wait until DB has no dispatcher; true if so.
sub wait_no_dispatcher
{
	my ($node, $db) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT count(*) = 0 FROM pg_catalog.pg_stat_activity
		 WHERE backend_type = 'outbox_saga dispatcher' AND datname = '$db'});
}

# Wait (at most SECONDS) until SQL in DB returns 't'; true if it did.  For
# waits whose failure is expected to be a known bug: poll_query_until would
# spend three minutes on it.
sub wait_until
{
	my ($node, $db, $sql, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (1)
	{
		my ($ret, $out) = $node->psql($db, $sql);
		return 1 if $ret == 0 && $out eq 't';
		return 0 if time() > $deadline;
		usleep(100_000);
	}
}

# Wait (at most SECONDS, default 30) until the server log after OFFSET
# matches RE.  Returns true or false; unlike Cluster::wait_for_log it does
# not die, so that a missing line is one failed test, not an aborted file.
sub wait_for_log_match
{
	my ($node, $re, $offset, $seconds) = @_;
	my $deadline = time() + ($seconds // 30);
	$offset //= 0;
	while (1)
	{
		my $log = slurp_file($node->logfile, $offset);
		return 1 if $log =~ $re;
		return 0 if time() > $deadline;
		usleep(50_000);
	}
}

# The next event id drawn (in database postgres) is N before the start of
# the next generation of the log (65536 ids, the next partition).
sub ids_before_next_generation
{
	my ($node, $n) = @_;
	$node->safe_psql('postgres', qq{SELECT setval('outbox.events_id_seq',
		((SELECT last_value FROM outbox.events_id_seq) / 65536 + 1) * 65536 - $n)});
}

# interleaved_writers(NODE, writers => W, steps => S, first_n => N,
#                     burst_every => B, other_topic => P, aggregate => A)
# W sessions of database postgres BEGIN; for S steps a random one emits
# an event of aggregate A with payload {"n": n}, n counting up from N + 1
# in the order the ids are drawn (so id order is n order).  The topic is
# 't', or 'u' with probability P (default 0).  Every B-th step (those
# with step % B == 2) is a burst of 71-130 events in one statement, larger
# than a page and than what a window's order reads of one transaction entry
# by entry; otherwise the event is rolled back to a savepoint with
# probability 0.15.  Then, in a random order, each writer commits, or rolls
# back with probability 0.15.  Uses rand() (the caller seeds it) in one
# fixed sequence, so a seed replays the same window.  Returns a hash
# reference: topic => [n of the committed events, in commit order, each
# transaction's in write order].
sub interleaved_writers
{
	my ($node, %o) = @_;
	my @w = map { $node->background_psql('postgres') } 1 .. $o{writers};
	my (@written, %committed);
	my $n = $o{first_n};
	my $agg = $o{aggregate};
	$_->query_safe('BEGIN') for @w;
	for my $step (1 .. $o{steps})
	{
		my $k = int(rand($o{writers}));
		my $topic = ($o{other_topic} && rand() < $o{other_topic}) ? 'u' : 't';
		$n++;
		if ($step % $o{burst_every} == 2)
		{
			my $last = $n + 70 + int(rand(60));
			$w[$k]->query_safe(qq{SELECT count(outbox.emit('$topic', 'step', jsonb_build_object('n', g), '$agg'))
				FROM generate_series($n, $last) g});
			push @{ $written[$k]{$topic} }, $n .. $last;
			$n = $last;
			next;
		}
		if (rand() < 0.15)
		{
			$w[$k]->query_safe(qq{SAVEPOINT s; SELECT outbox.emit('$topic', 'step', '{"n": $n}', '$agg');
				ROLLBACK TO SAVEPOINT s});
			next;
		}
		$w[$k]->query_safe(qq{SELECT outbox.emit('$topic', 'step', '{"n": $n}', '$agg')});
		push @{ $written[$k]{$topic} }, $n;
	}
	for my $k (List::Util::shuffle(0 .. $o{writers} - 1))
	{
		if (rand() < 0.15)
		{
			$w[$k]->query_safe('ROLLBACK');
			next;
		}
		$w[$k]->query_safe('COMMIT');
		push @{ $committed{$_} }, @{ $written[$k]{$_} } for keys %{ $written[$k] // {} };
	}
	$_->quit for @w;
	return \%committed;
}

1;

# Pull destinations (issue 16 item 1, src/dispatch/pull.c) with real
# consumers: two Node processes (the `pg` client from npm,
# test/t/pull_consumer/consumer.js) pull 100,000 events while four
# producers write them; one consumer is killed (SIGKILL) in the middle of a
# batch and a third one takes its place.  Each consumer records a batch's
# events in the transaction that finishes it, so:
#   - every event is recorded, exactly once (none lost; the killed
#     consumer's batch is handed on when its lease ends, and a batch whose
#     lease ended cannot be finished by a late consumer);
#   - per aggregate, events are recorded in commit order (each producer
#     writes its own aggregates, seq rising with its commits);
#   - the killed consumer's batch was handed on and finished by another;
#   - nothing is left: no unfinished batch, nothing pending, and
#     outbox.stats counts every event delivered.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Copy qw(copy);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OutboxTest;

for my $tool (qw(node npm))
{
	plan skip_all => "$tool is missing (scripts/deps.sh installs it)"
	  unless system("command -v $tool >/dev/null 2>&1") == 0;
}

my $src = dirname(__FILE__);
my $dir = PostgreSQL::Test::Utils::tempdir;
copy("$src/../../examples/node/package.json", "$dir/package.json") or die $!;
copy("$src/../../examples/node/package-lock.json", "$dir/package-lock.json") or die $!;
copy("$src/pull_consumer/consumer.js", "$dir/consumer.js") or die $!;
my $npm = system("cd '$dir' && npm ci --no-audit --no-fund --prefer-offline --loglevel=error"
	  . " >'$dir/npm.log' 2>&1");
plan skip_all => 'npm ci failed: ' . slurp_file("$dir/npm.log") if $npm != 0;

my $TOTAL = 100_000;
my $PRODUCERS = 4;
my $PER_TX = 250;
my $TXS = $TOTAL / $PRODUCERS / $PER_TX;

my $node = new_node('pull', conf => "outbox_saga.poll_interval = '100ms'\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION outbox_saga});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	SELECT outbox.create_destination('pc', 'pull');
	SELECT outbox.subscribe('pc', 'pc');
	CREATE TABLE public.pull_acked (ack_id bigserial PRIMARY KEY, event_id uuid NOT NULL,
		aggregate_id text, seq int, consumer text, batch_id bigint);
	CREATE PROCEDURE public.produce(p int, txs int, per_tx int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR t IN 1 .. txs LOOP
			PERFORM outbox.emit('pc', 'e', jsonb_build_object('seq', t * per_tx + i),
			                    'p' || p || '-' || (i % 500))
			   FROM generate_series(1, per_tx) i;
			COMMIT;
		END LOOP;
	END $$;
});

$ENV{PGHOST} = $node->host;
$ENV{PGPORT} = $node->port;
$ENV{PGDATABASE} = 'postgres';
$ENV{PGUSER} = sql('SELECT current_user');

my $timeout = IPC::Run::timeout(180);
my @producers;
for my $p (1 .. $PRODUCERS)
{
	my ($out, $err) = ('', '');
	push @producers,
	  IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c',
			"CALL public.produce($p, $TXS, $PER_TX)" ], '>', \$out, '2>', \$err, $timeout);
}

sub consumer
{
	my ($name, $stall) = @_;
	my %c = (out => '', err => '');
	$c{h} = IPC::Run::start([ 'node', "$dir/consumer.js", $name, 'pc', $TOTAL, $stall, 500,
			'2 seconds' ], '>', \$c{out}, '2>', \$c{err}, $timeout);
	return \%c;
}

my $a = consumer('a', 0);
my $b = consumer('b', 5);

# b takes its fifth batch and stalls: kill it there, mid-batch.
my $deadline = time() + 120;
while ($b->{out} !~ /stalled (\d+)/ && time() < $deadline)
{
	$b->{h}->pump_nb;
	usleep(20_000);
}
my ($stalled) = $b->{out} =~ /stalled (\d+)/;
ok(defined $stalled, 'consumer b took a batch and stalled in it') or diag($b->{out} . $b->{err});
$stalled //= 0;
my $stalled_events = sql(qq{
	SELECT string_agg(quote_literal((e).event_id), ',')
	  FROM outbox.pull_batch b, unnest(b.events) e WHERE b.id = $stalled});
ok($stalled_events ne '', 'the stalled batch is unfinished, with its events');
$b->{h}->signal('KILL');
eval { $b->{h}->finish };
my $c = consumer('c', 0);

for my $h (@producers) { $h->finish or diag('a producer failed') }
is(sql('SELECT count(*) FROM outbox.events'), $TOTAL, 'the producers wrote every event');

ok($a->{h}->finish, 'consumer a ended') or diag($a->{out} . $a->{err});
ok($c->{h}->finish, 'consumer c ended') or diag($c->{out} . $c->{err});
note($a->{out});
note($c->{out});

is(sql('SELECT count(*) FROM public.pull_acked'), $TOTAL, 'every event was acknowledged once');
is(sql('SELECT count(DISTINCT event_id) FROM public.pull_acked'), $TOTAL, 'no event twice, none lost');
is(sql(q{SELECT count(*) FROM outbox.events e
          WHERE NOT EXISTS (SELECT 1 FROM public.pull_acked k WHERE k.event_id = e.event_id)}),
	'0', 'every event of the log was acknowledged');
is(sql(q{SELECT count(*) FROM (
           SELECT seq < lag(seq) OVER (PARTITION BY aggregate_id ORDER BY ack_id) AS back
             FROM public.pull_acked) s WHERE back}),
	'0', 'every aggregate in commit order');
is(sql(qq{SELECT count(DISTINCT consumer) = 1 AND bool_and(consumer <> 'b')
                   AND bool_and(batch_id <> $stalled)
            FROM public.pull_acked WHERE event_id IN ($stalled_events)}),
	't', "the killed consumer's batch was handed on and finished by another under a new id");
is(sql(q{SELECT string_agg(DISTINCT consumer, ',' ORDER BY consumer) FROM public.pull_acked}),
	'a,b,c', 'every consumer finished batches (b before it stalled)');
is(sql(q{SELECT count(*) FROM outbox.pull_batch}), '0', 'no unfinished batch is left');
is(sql(q{SELECT count(*) FROM outbox.pending('pc')}), '0', 'nothing is pending');
is(sql(q{SELECT delivered_total FROM outbox.stats WHERE destination = 'pc'}), $TOTAL,
	'outbox.stats counts every event delivered');

$node->stop;
done_testing();

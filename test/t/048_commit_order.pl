# Commit order for concurrent writers of one aggregate (G4; issue 14 item 1).
#
# Event A comes before event B when A's transaction committed before B's
# began to commit.  Ids do not say that: a transaction that drew its id
# first can commit last.  Each case below makes exactly that happen while
# the destinations are paused (so both transactions land in one window, the
# case id order got wrong), then resumes them and checks what arrived:
#   (a) two emit()s of one aggregate, the first one committed last;
#   (b) a capture trigger keyed on a column that is not unique;
#   (c) four transactions interleaving their events, committed in reverse,
#       read in pages of three (batch_size), by a function destination and
#       an http one, with events of another topic among them;
#   (d) a retry: the event that committed first fails once; the one that
#       drew the lower id waits behind it (retry rows follow commit order);
#   (f) writers that commit in the order they began (the common case: a
#       page is one run of the (txid, id) index), in pages of three;
#   (g) rolled-back events in such a window (a savepoint rolled back, a
#       transaction rolled back, a committed one with nothing left): none
#       delivered, and the window stays in commit order;
#   (l) a transaction larger than what the window's order reads entry by
#       entry, and one that goes on into the next partition;
#   (h) a txid index of 0.1.0's shape, (txid) alone: an error that names
#       it, nothing delivered until the (txid, id) index is back;
#   (i) twenty writers committing in the reverse order of their txids (the
#       window's order sorted past the insertion sort's budget), half of
#       them with events in two partitions;
#   (o) two transactions that commit in txid order (one run) with ids
#       interleaved across two partitions;
#   (e) outbox.stats says which order each destination gets: 'commit',
#       'unordered', and 'id' on a server without track_commit_timestamp,
#       where (a) comes out in id order, as the README says;
#   (j) on that server, rolled-back work at the lowest ids of a window:
#       the window starts at its lowest visible id;
#   (m) on that server, a large transaction whose ids all lie above the
#       window's first id, drawn by a later transaction;
#   (n) on that server, a large transaction in the txid range of a later
#       window it is not in;
#   (k) random windows: interleaved writers committing in a random order,
#       with rolled-back savepoints and transactions, read in pages of
#       three (run before (e)).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use OutboxTest;
use WebhookReceiver;

my $receiver = WebhookReceiver->new;
# Retention keeps delivered events in the log: the checks read them there.
my $node = new_node('commit_order',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n"
	  . "log_statement = none\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(sprintf(q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE got (seq bigserial, dest text, agg text, n int);
	CREATE TABLE fail_once (n int PRIMARY KEY);
	CREATE FUNCTION handle(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
	  v_n int := COALESCE(e.payload->>'n', e.payload->'new'->>'n')::int;
	BEGIN
	  IF EXISTS (SELECT 1 FROM public.fail_once f WHERE f.n = v_n) THEN
	    RAISE EXCEPTION 'failing % while fail_once has it', v_n;
	  END IF;
	  INSERT INTO public.got (dest, agg, n) VALUES ('fn', e.aggregate_id, v_n);
	END $$;
	SELECT outbox.create_destination('fn', 'function',
	  '{"function": "public.handle", "batch_size": 3,
	    "backoff_base": "100ms", "backoff_max": "200ms"}');
	SELECT outbox.subscribe('fn', 't');
	SELECT outbox.create_destination('hook', 'http', '{"url": "%s", "batch_size": 3}');
	SELECT outbox.subscribe('hook', 't');
	SELECT outbox.create_destination('loose', 'function',
	  '{"function": "public.handle", "ordered": false}');
	CREATE TABLE orders (id serial PRIMARY KEY, customer text, n int);
	SELECT outbox.capture_table('public.orders', topic => 't', key_columns => '{customer}');
}, $receiver->url('/hook')));
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

sub pause_all  { sql(q{SELECT outbox.pause_destination('fn'), outbox.pause_destination('hook')}); }
sub resume_all { sql(q{SELECT outbox.resume_destination('fn'), outbox.resume_destination('hook')}); }

# The n of one aggregate as the function destination got them, in order.
sub fn_got
{
	my ($agg) = @_;
	return sql(qq{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got
	               WHERE dest = 'fn' AND agg = '$agg'});
}

# The n of one aggregate as the webhook receiver got them, in order.
sub hook_got
{
	my ($agg) = @_;
	my @n;
	for my $r (sort { $a->{seq} <=> $b->{seq} } $receiver->requests)
	{
		next unless $r->{path} eq '/hook';
		my $body = JSON::PP->new->decode($r->{body});
		push @n, $body->{data}{n} if ($body->{aggregate_id} // '') eq $agg;
	}
	return join(',', @n);
}

sub drained
{
	ok(sql(q{SELECT outbox.wait_delivered('60 seconds')}) eq 't', $_[0]);
}

# The webhook receiver gets EXPECTED for aggregate AGG, as the function
# destination did (checked before): one test named NAME.
sub hook_agrees
{
	my ($agg, $expected, $name) = @_;
	ok($receiver->wait_for(sub { hook_got($agg) eq $expected }, 30), $name)
	  or diag(hook_got($agg));
}

# Replace the log's txid index (the partitioned one and its partitions',
# under the names the library looks up) by one on COLUMNS.
sub txid_index_on
{
	my ($columns) = @_;
	sql(join("\n", 'DROP INDEX outbox.events_txid_idx;',
		(map { "CREATE INDEX events_p${_}_txid_idx ON outbox.events_p$_ ($columns);" } 0 .. 3),
		"CREATE INDEX events_txid_idx ON outbox.events ($columns);"));
}

# (a) Two emits of one aggregate: A draws the lower id, B commits first.
pause_all();
my $a = $node->background_psql('postgres');
$a->query_safe(q{BEGIN; SELECT outbox.emit('t', 'OrderPaid', '{"n": 1}', 'order-1')});
sql(q{SELECT outbox.emit('t', 'OrderShipped', '{"n": 2}', 'order-1')});
$a->query_safe('COMMIT');
is(sql(q{SELECT string_agg((payload->>'n'), ',' ORDER BY id) FROM outbox.events
         WHERE aggregate_id = 'order-1'}), '1,2', '(a) A drew the lower id');
resume_all();
drained('(a) delivered');
is(fn_got('order-1'), '2,1', '(a) function destination: commit order, not id order');
hook_agrees('order-1', '2,1', '(a) http destination: commit order');

# (b) A capture trigger keyed on customer (not unique): two rows of one
# customer, the first inserted committed last.
pause_all();
$a->query_safe(q{BEGIN; INSERT INTO orders (customer, n) VALUES ('cust-1', 1)});
sql(q{INSERT INTO orders (customer, n) VALUES ('cust-1', 2)});
$a->query_safe('COMMIT');
resume_all();
drained('(b) delivered');
is(fn_got('cust-1'), '2,1', '(b) capture keyed on a column that is not unique: commit order');

# (c) Four writers interleave two events each on aggregate 'multi', with
# events of another topic and another aggregate among them, and commit in
# reverse order of their first writes.  batch_size 3: several pages.
pause_all();
my @w = map { $node->background_psql('postgres') } 1 .. 4;
$_->query_safe('BEGIN') for @w;
for my $round (1 .. 2)
{
	for my $k (1 .. 4)
	{
		my $n = $k * 10 + $round;
		$w[ $k - 1 ]->query_safe(qq{
			SELECT outbox.emit('t', 'step', '{"n": $n}', 'multi');
			SELECT outbox.emit('other', 'noise', '{"n": $n}', 'multi');
			SELECT outbox.emit('t', 'step', '{"n": $n}', 'side-$k')});
	}
}
$w[$_]->query_safe('COMMIT') for reverse 0 .. 3;
$_->quit for @w;
resume_all();
drained('(c) delivered');
is(fn_got('multi'), '41,42,31,32,21,22,11,12',
	'(c) function destination, pages of three: writers in commit order, each in write order');
hook_agrees('multi', '41,42,31,32,21,22,11,12', '(c) http destination: the same');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'fn' AND agg LIKE 'side-%'}), '8',
	'(c) the other aggregates are all there');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'fn'}),
	sql(q{SELECT count(DISTINCT (agg, n)) FROM got WHERE dest = 'fn'}),
	'(c) nothing delivered twice');

# (f) The common case: writers that commit in the order they began.  A
# page's transactions are one run of the (txid, id) index (logscan.c,
# LogWindowCommitPage), read in one range scan: across
# pages of three, a transaction cut by a page's end, events of another
# topic and another aggregate among them, every event once, in order.
pause_all();
sql(q{SELECT outbox.emit('t', 'step', '{"n": 1}', 'mono'), outbox.emit('t', 'step', '{"n": 2}', 'mono'),
             outbox.emit('other', 'noise', '{"n": 0}', 'mono')});
sql(q{SELECT outbox.emit('t', 'step', '{"n": 3}', 'mono')});
sql(q{SELECT outbox.emit('t', 'step', '{"n": 4}', 'mono'), outbox.emit('t', 'step', '{"n": 70}', 'side-m'),
             outbox.emit('t', 'step', '{"n": 5}', 'mono'), outbox.emit('t', 'step', '{"n": 6}', 'mono'),
             outbox.emit('t', 'step', '{"n": 7}', 'mono')});
sql(q{SELECT outbox.emit('other', 'noise', '{"n": 0}', 'mono'), outbox.emit('t', 'step', '{"n": 8}', 'mono')});
resume_all();
drained('(f) delivered');
is(fn_got('mono'), '1,2,3,4,5,6,7,8', '(f) function destination, pages of three: commit order = id order');
hook_agrees('mono', '1,2,3,4,5,6,7,8', '(f) http destination: the same');
is(fn_got('side-m'), '70', '(f) the other aggregate is there');
is(sql(q{SELECT count(*) FROM got WHERE dest = 'fn'}),
	sql(q{SELECT count(DISTINCT (agg, n)) FROM got WHERE dest = 'fn'}),
	'(f) nothing delivered twice');

# (d) A retry: B (committed first) fails once; A (lower id) is held behind
# it, and must still come after it once B succeeds.  The handler fails for
# n = 102 while fail_once has it; the test removes it once B has failed.
pause_all();
sql(q{INSERT INTO fail_once VALUES (102)});
$a->query_safe(q{BEGIN; SELECT outbox.emit('t', 'OrderPaid', '{"n": 101}', 'order-2')});
sql(q{SELECT outbox.emit('t', 'OrderShipped', '{"n": 102}', 'order-2')});
$a->query_safe('COMMIT');
sql(q{SELECT outbox.resume_destination('fn')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM outbox.delivery_retry r
	  JOIN outbox.destination d ON d.id = r.destination_id
	 WHERE d.name = 'fn' AND r.aggregate_id = 'order-2'}),
	'(d) B failed, A is held behind it');
is(sql(q{SELECT string_agg((payload->>'n') || ':' || (attempts > 0), ',' ORDER BY committed_at)
           FROM outbox.delivery_retry WHERE aggregate_id = 'order-2'}),
	'102:true,101:false', '(d) the retry rows carry the commit times');
sql(q{DELETE FROM fail_once});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM got WHERE dest = 'fn' AND agg = 'order-2'}),
	'(d) both delivered after the retry')
  or diag(sql(q{SELECT string_agg(id || ':' || attempts || ':' || next_attempt_at || ':' || coalesce(last_error, ''), E'\n')
                  FROM outbox.delivery_retry}) . "\n" . sql(q{SELECT * FROM outbox.stats}));
is(fn_got('order-2'), '102,101', '(d) still in commit order after a retry');
sql(q{SELECT outbox.resume_destination('hook')});
drained('(d) the webhook caught up');

# (g) Rolled-back work inside a window read in commit order.  The window's
# transactions come from the (txid, id) index alone (logscan.c,
# window_order_build), whose entries include rows nobody may see: A's
# rolled-back subtransaction, C's rolled-back transaction, D's committed
# transaction whose only event was rolled back with its savepoint.  None of
# them may be delivered, and C (no commit time) must not turn the window to
# id order: B, committed first, still comes before A, which drew lower ids.
pause_all();
my ($wa, $wc, $wd) = map { $node->background_psql('postgres') } 1 .. 3;
$wa->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 201}', 'rb');
	SAVEPOINT s; SELECT outbox.emit('t', 'step', '{"n": 299}', 'rb'); ROLLBACK TO SAVEPOINT s;
	SELECT outbox.emit('t', 'step', '{"n": 202}', 'rb')});
$wc->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 298}', 'rb')});
$wd->query_safe(q{BEGIN; SAVEPOINT s; SELECT outbox.emit('t', 'step', '{"n": 297}', 'rb');
	ROLLBACK TO SAVEPOINT s; COMMIT});
sql(q{SELECT outbox.emit('t', 'step', '{"n": 203}', 'rb')});
$wc->query_safe('ROLLBACK');
$wa->query_safe('COMMIT');
$_->quit for ($wa, $wc, $wd);
is(sql(q{SELECT string_agg(payload->>'n', ',' ORDER BY id) FROM outbox.events WHERE aggregate_id = 'rb'}),
	'201,202,203', '(g) A drew the lower ids; the rolled-back events are not visible');
resume_all();
drained('(g) delivered');
is(fn_got('rb'), '203,201,202',
	'(g) function destination: commit order, none of the rolled-back events');
hook_agrees('rb', '203,201,202', '(g) http destination: the same');

# (l) Large transactions: window_order reads SKIP_TXN_AFTER (64) of a
# transaction's index entries in a partition and then searches for its
# last one there (logscan.c, window_entries_skip_txn).  A writes 150
# events, B commits one meanwhile, A writes one more and commits: B's event
# first, then all of A's in write order, the last included.  Then the same
# with A's events going on into the next partition (the merge of the
# partitions' runs joins A's two).
for my $case (['big', 300], ['big-split', 100])
{
	my ($agg, $before_boundary) = @$case;
	pause_all();
	ids_before_next_generation($node, $before_boundary);
	my $w = $node->background_psql('postgres');
	$w->query_safe(qq{BEGIN; SELECT count(outbox.emit('t', 'step', jsonb_build_object('n', g), '$agg'))
		FROM generate_series(1, 150) g});
	sql(qq{SELECT outbox.emit('t', 'step', '{"n": 500}', '$agg')});
	$w->query_safe(qq{SELECT outbox.emit('t', 'step', '{"n": 151}', '$agg'); COMMIT});
	$w->quit;
	resume_all();
	drained("(l) $agg delivered");
	my $expected = join(',', 500, 1 .. 151);
	is(fn_got($agg), $expected,
		"(l) $agg: function destination: a large transaction whole, after the one committed first");
	hook_agrees($agg, $expected, "(l) $agg: http destination: the same");
}

# (h) The log's txid index of 0.1.0's shape, (txid) alone.  No database
# is dispatched with it (the dispatcher waits while the SQL is 0.1.0's,
# and the update replaces the index), so this is an index rebuilt that way
# by hand.  The log has no other index to read by (0.2.0 dropped the (id)
# index): every read of a window fails, with an error that names the index
# (the destinations' last_error), and nothing is delivered until the index
# of 0.2.0 is back; then the window comes in commit order, none of the
# rolled-back events.
txid_index_on('txid');
pause_all();
($wa, $wc) = map { $node->background_psql('postgres') } 1 .. 2;
$wa->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 301}', 'old-idx');
	SAVEPOINT s; SELECT outbox.emit('t', 'step', '{"n": 399}', 'old-idx'); ROLLBACK TO SAVEPOINT s;
	SELECT outbox.emit('t', 'step', '{"n": 302}', 'old-idx')});
$wc->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 398}', 'old-idx')});
sql(q{SELECT outbox.emit('t', 'step', '{"n": 303}', 'old-idx')});
$wc->query_safe('ROLLBACK');
$wa->query_safe('COMMIT');
$_->quit for ($wa, $wc);
resume_all();
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM outbox.stats
	 WHERE destination IN ('fn', 'hook')
	   AND last_error LIKE '%_txid_idx" of the event log is not on (txid, id)%'}),
	'(h) index of 0.1.0: both destinations fail with an error naming it');
is(fn_got('old-idx') . '|' . hook_got('old-idx'), '|', '(h) and deliver nothing');
txid_index_on('txid, id');
drained('(h) delivered once the (txid, id) index is back');
is(fn_got('old-idx'), '303,301,302',
	'(h) in commit order, none of the rolled-back events');
hook_agrees('old-idx', '303,301,302', '(h) http destination: the same');

# (i) Twenty writers that commit in the reverse order of their txids: the
# window's commit order is its txid order reversed, more displacement than
# the insertion sort of window_order_build takes (logscan.c,
# sort_by_commit_key), which then leaves the sort to qsort.
# Each writes two events, a round apart, with the ids crossing into the
# next generation (the next partition) ten events in: the first ten writers
# span two partitions, which the merge of the partitions' runs combines.
pause_all();
ids_before_next_generation($node, 10);
my @rev = map { $node->background_psql('postgres') } 1 .. 20;
for my $round (0, 1)
{
	for my $k (1 .. 20)
	{
		my $n = $round * 100 + $k;
		$rev[ $k - 1 ]->query_safe(($round ? '' : 'BEGIN; ')
			  . qq{SELECT outbox.emit('t', 'step', '{"n": $n}', 'reverse')});
	}
}
$rev[$_]->query_safe('COMMIT') for reverse 0 .. 19;
$_->quit for @rev;
is(sql(q{SELECT count(DISTINCT (id >> 16) & 3) FROM outbox.events WHERE aggregate_id = 'reverse'}),
	'2', '(i) the events lie in two partitions');
my $reverse_order = join(',', map { ($_, 100 + $_) } reverse 1 .. 20);
resume_all();
drained('(i) delivered');
is(fn_got('reverse'), $reverse_order,
	'(i) twenty transactions committed in reverse: commit order, each in write order');
hook_agrees('reverse', $reverse_order, '(i) http destination: the same');

# (o) Two transactions that commit in txid order, one run of a page
# (logscan.c, LogWindowCommitPage), whose ids interleave across a
# generation boundary: A writes n=1 below it, B n=2 below it, A n=3 above
# it (the next partition); A commits, then B.  The run's range scans of
# both partitions are merged on (txid, id): A's 1 and 3, then B's 2.
pause_all();
ids_before_next_generation($node, 3);
($wa, $wc) = map { $node->background_psql('postgres') } 1 .. 2;
$wa->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 1}', 'run-merge')});
$wc->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 2}', 'run-merge')});
$wa->query_safe(q{SELECT outbox.emit('t', 'step', '{"n": 3}', 'run-merge'); COMMIT});
$wc->query_safe('COMMIT');
$_->quit for ($wa, $wc);
is(sql(q{SELECT count(DISTINCT (id >> 16) & 3) FROM outbox.events WHERE aggregate_id = 'run-merge'}),
	'2', '(o) the events lie in two partitions');
resume_all();
drained('(o) delivered');
is(fn_got('run-merge'), '1,3,2',
	'(o) a run of two transactions over two partitions: commit order, each in write order');
hook_agrees('run-merge', '1,3,2', '(o) http destination: the same');

# outbox.committed_at(): the first part of the commit-order key.
sql(q{SELECT outbox.emit('u', 'x')});
is(sql(q{SELECT outbox.committed_at(txid) BETWEEN now() - interval '1 minute' AND now()
           FROM outbox.events WHERE topic = 'u'}),
	't', 'outbox.committed_at() knows the commit times of the log');
is(sql(q{SELECT outbox.committed_at(pg_current_xact_id())}), '',
	'outbox.committed_at() of a transaction still open is NULL');

# (k) Random windows: writers interleave their events (ids), some roll
# back a savepoint or the whole transaction, and they commit in a random
# order; the function destination reads pages of three, each of them in id
# order when it can be, sorted otherwise, and cut anywhere (logscan.c,
# LogWindowCommitPage): the events of one aggregate must come out exactly
# in commit order, each transaction's in write order, none rolled back.
# Seeded (COMMIT_ORDER_SEED); one round crosses into the next partition.
# Every seventh step is a burst of 71-130 events, so some transactions are
# larger than what the window's order reads entry by entry.
my $seed = $ENV{COMMIT_ORDER_SEED} // 20261205;
note "commit order seed $seed";
srand($seed);
for my $round (1 .. 6)
{
	my $agg = "rand-$round";
	my $writers = 4 + int(rand(9));
	pause_all();
	if ($round == 3)
	{
		ids_before_next_generation($node, 7);
	}
	my $committed = interleaved_writers($node, writers => $writers,
		steps => $writers * 3, burst_every => 7, first_n => $round * 1000,
		aggregate => $agg);
	my @expected = @{ $committed->{t} // [] };
	resume_all();
	drained("(k) round $round delivered");
	is(fn_got($agg), join(',', @expected),
		"(k) round $round: $writers writers, commit order, each in write order");
}

# (e) What outbox.stats says.
is(sql(q{SELECT string_agg(destination || '=' || delivery_order, ',' ORDER BY destination)
           FROM outbox.stats}),
	'fn=commit,hook=commit,loose=unordered', '(e) stats: commit order where ordered');
$a->quit;
$node->stop;

# Without track_commit_timestamp: id order, and stats says so.
my $off = new_node('commit_order_off', commit_ts => 0,
	conf => "outbox_saga.poll_interval = '100ms'\n");
$off->start;
$off->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE got (seq bigserial, n int);
	CREATE FUNCTION handle(e outbox.events) RETURNS void LANGUAGE sql AS
	  $$ INSERT INTO public.got (n) VALUES ((e.payload->>'n')::int) $$;
	SELECT outbox.create_destination('fn', 'function', '{"function": "public.handle"}');
	SELECT outbox.subscribe('fn', 't');
	SELECT outbox.pause_destination('fn');});
my $b = $off->background_psql('postgres');
$b->query_safe(q{BEGIN; SELECT outbox.emit('t', 'OrderPaid', '{"n": 1}', 'order-1')});
$off->safe_psql('postgres', q{SELECT outbox.emit('t', 'OrderShipped', '{"n": 2}', 'order-1')});
$b->query_safe('COMMIT');
$b->quit;
$off->safe_psql('postgres', q{SELECT outbox.resume_destination('fn')});
is($off->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'(e) delivered without commit times');
is($off->safe_psql('postgres', q{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got}),
	'1,2', '(e) without track_commit_timestamp: id order');
is($off->safe_psql('postgres', q{SELECT delivery_order FROM outbox.stats}), 'id',
	'(e) and outbox.stats says so');
is($off->safe_psql('postgres', q{SELECT outbox.committed_at(txid) FROM outbox.events LIMIT 1}),
	'', '(e) outbox.committed_at() is NULL');

# (j) Rolled-back work at the lowest ids of a window read in id order,
# without commit times: the window's first id comes from the (txid, id)
# index entries, and a transaction without a commit time is decided by its
# rows (logscan.c, LogWindowFirstId).  A's first row was rolled back with
# its savepoint, its second is the window's lowest visible id; C rolled
# back.  A row of A that is not visible must not make A count as rolled
# back: its event 501 would be skipped.
$off->safe_psql('postgres', q{SELECT outbox.pause_destination('fn')});
my ($ja, $jc) = map { $off->background_psql('postgres') } 1 .. 2;
$ja->query_safe(q{BEGIN; SAVEPOINT s; SELECT outbox.emit('t', 'step', '{"n": 597}', 'j');
	ROLLBACK TO SAVEPOINT s; SELECT outbox.emit('t', 'step', '{"n": 501}', 'j')});
$jc->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 598}', 'j')});
$off->safe_psql('postgres', q{SELECT outbox.emit('t', 'step', '{"n": 502}', 'j')});
$jc->query_safe('ROLLBACK');
$ja->query_safe('COMMIT');
$_->quit for ($ja, $jc);
$off->safe_psql('postgres', q{SELECT outbox.resume_destination('fn')});
is($off->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'(j) delivered');
is($off->safe_psql('postgres', q{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got WHERE n > 500}),
	'501,502', '(j) id order from the lowest visible id, none of the rolled-back events');

# (m) A large transaction at the low txid and a small one at the high txid
# with the lowest id: LogWindowFirstId reads SKIP_TXN_AFTER (64) entries of
# A that cannot lower the result and then searches past the rest of A
# (logscan.c, window_entries_next); B's entry after them is the window's
# first id.  Expected: every event, in id order.
$off->safe_psql('postgres', q{SELECT outbox.pause_destination('fn')});
my ($ma, $mb) = map { $off->background_psql('postgres') } 1 .. 2;
$ma->query_safe(q{BEGIN; SELECT pg_current_xact_id()});
$mb->query_safe(q{BEGIN; SELECT outbox.emit('t', 'step', '{"n": 700}', 'm')});
$ma->query_safe(q{SELECT count(outbox.emit('t', 'step', jsonb_build_object('n', g), 'm'))
	FROM generate_series(701, 850) g});
$mb->query_safe('COMMIT');
$ma->query_safe('COMMIT');
$_->quit for ($ma, $mb);
$off->safe_psql('postgres', q{SELECT outbox.resume_destination('fn')});
is($off->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'(m) delivered');
is($off->safe_psql('postgres', q{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got WHERE n >= 700}),
	join(',', 700 .. 850), '(m) from the first id of the small transaction, in id order');

# (n) A large transaction in the txid range of a window it is not in: O
# holds the xmin back while B writes 150 events and commits, and they are
# delivered; then C commits one event.  C's window's range starts at O's
# txid, so B's 150 entries lie in it, outside the window: 64 are read, then
# a search moves past them (window_entries_next), to C's.
my $no = $off->background_psql('postgres');
$no->query_safe(q{BEGIN; SELECT pg_current_xact_id()});
$off->safe_psql('postgres', q{SELECT count(outbox.emit('t', 'step', jsonb_build_object('n', g), 'n'))
	FROM generate_series(901, 1050) g});
is($off->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'(n) the large transaction delivered');
$off->safe_psql('postgres', q{SELECT outbox.emit('t', 'step', '{"n": 1051}', 'n')});
is($off->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'(n) the next transaction delivered');
$no->query_safe('COMMIT');
$no->quit;
is($off->safe_psql('postgres', q{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got WHERE n > 900}),
	join(',', 901 .. 1051), '(n) every event, the one after the large transaction included');
$off->stop;

done_testing();

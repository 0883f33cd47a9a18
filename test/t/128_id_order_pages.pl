# Windows read in id order, from the (txid, id) index (logscan.c,
# LogWindowPage and read_id_page; issue 18: the log's (id) index is
# going away, and this read no longer uses it).
#
# A server without track_commit_timestamp reads every window in id order.
# Each round pauses the destinations, has writers interleave their events
# (ids) in one window - some in bursts of 71-130 events, larger than a
# page, some rolled back with a savepoint or with the whole transaction,
# some of another topic the destinations do not take - commits them in a
# random order, resumes, and checks that each destination got exactly the
# committed events of its topic, in id order, each once:
#   'page3' reads pages of three: a burst that straddles other writers'
#           ids is cut after three of its events per read (the read is
#           complete only up to the cut) and searched past;
#   'page1000' reads the whole window in one page;
#   'other' takes the other topic only: most of each read is refused by
#           the subscription, and the page reads again until it has its
#           limit or the window ends.
# Ids start at 2^50, as in a log that has lived long: a window's first page
# reads from its transactions' ids, not from id 0 (a read that went through
# every generation from 0 would not end).  One round starts seven ids before
# the next generation (partition), so transactions cross from one partition
# into the next.  Seeded (ID_ORDER_SEED).
#
# Then a server with commit times and a destination with "ordered": false
# (its windows are read in id order too): every event arrives once.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('id_order', commit_ts => 0,
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE got (seq bigserial, dest text, agg text, id bigint, n int);
	CREATE FUNCTION handle_page3(e outbox.events) RETURNS void LANGUAGE sql AS
	  $$ INSERT INTO public.got (dest, agg, id, n)
	     VALUES ('page3', e.aggregate_id, e.id, (e.payload->>'n')::int) $$;
	CREATE FUNCTION handle_page1000(e outbox.events) RETURNS void LANGUAGE sql AS
	  $$ INSERT INTO public.got (dest, agg, id, n)
	     VALUES ('page1000', e.aggregate_id, e.id, (e.payload->>'n')::int) $$;
	CREATE FUNCTION handle_other(e outbox.events) RETURNS void LANGUAGE sql AS
	  $$ INSERT INTO public.got (dest, agg, id, n)
	     VALUES ('other', e.aggregate_id, e.id, (e.payload->>'n')::int) $$;
	SELECT outbox.create_destination('page3', 'function',
	  '{"function": "public.handle_page3", "batch_size": 3}');
	SELECT outbox.subscribe('page3', 't');
	SELECT outbox.create_destination('page1000', 'function',
	  '{"function": "public.handle_page1000", "batch_size": 1000}');
	SELECT outbox.subscribe('page1000', 't');
	SELECT outbox.create_destination('other', 'function',
	  '{"function": "public.handle_other", "batch_size": 2}');
	SELECT outbox.subscribe('other', 'u');
});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');
is(sql(q{SELECT string_agg(DISTINCT delivery_order, ',') FROM outbox.stats}), 'id',
	'without commit times the windows are read in id order');

my @dests = qw(page3 page1000 other);
sub pause_all  { sql(join(';', map { "SELECT outbox.pause_destination('$_')" } @dests)); }
sub resume_all { sql(join(';', map { "SELECT outbox.resume_destination('$_')" } @dests)); }

# What DEST got of aggregate AGG, in the order it got them.
sub got
{
	my ($dest, $agg) = @_;
	return sql(qq{SELECT string_agg(n::text, ',' ORDER BY seq) FROM got
	               WHERE dest = '$dest' AND agg = '$agg'});
}

sql(q{SELECT setval('outbox.events_id_seq', 1::bigint << 50)});
my $seed = $ENV{ID_ORDER_SEED} // 20261206;
note "id order seed $seed";
srand($seed);
for my $round (1 .. 5)
{
	my $agg = "r$round";
	my $writers = 3 + int(rand(8));
	pause_all();
	if ($round == 3)
	{
		ids_before_next_generation($node, 7);
	}
	# n follows the order the ids are drawn in: id order is n order.
	my $committed = interleaved_writers($node, writers => $writers,
		steps => $writers * 4, burst_every => 5, first_n => $round * 10000,
		other_topic => 0.3, aggregate => $agg);
	resume_all();
	is(sql(q{SELECT outbox.wait_delivered('60 seconds')}), 't', "round $round delivered");
	my %expected = map { $_ => join(',', sort { $a <=> $b } @{ $committed->{$_} // [] }) } qw(t u);
	is(got('page3', $agg), $expected{t}, "round $round: $writers writers, pages of three, id order");
	is(got('page1000', $agg), $expected{t}, "round $round: one page, id order");
	is(got('other', $agg), $expected{u}, "round $round: the other topic, id order");
}
is(sql(q{SELECT count(*) FROM (SELECT dest, id FROM got GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'no event delivered twice');
$node->stop;

# With commit times, a destination that does not keep order reads its
# windows in id order.
my $on = new_node('id_order_on',
	conf => "outbox_saga.poll_interval = '100ms'\nlog_statement = none\n");
$on->start;
$on->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	CREATE TABLE got (id bigint);
	CREATE FUNCTION handle(e outbox.events) RETURNS void LANGUAGE sql AS
	  $$ INSERT INTO public.got VALUES (e.id) $$;
	SELECT outbox.create_destination('loose', 'function',
	  '{"function": "public.handle", "ordered": false, "batch_size": 5}');
	SELECT outbox.subscribe('loose', 't');
	SELECT outbox.pause_destination('loose');
});
my @l = map { $on->background_psql('postgres') } 1 .. 3;
$_->query_safe('BEGIN') for @l;
for my $i (1 .. 30)
{
	$l[ $i % 3 ]->query_safe(qq{SELECT outbox.emit('t', 'step', '{"n": $i}', 'a$i')});
}
$l[2]->query_safe(q{SELECT count(outbox.emit('t', 'step', jsonb_build_object('n', g), 'big'))
	FROM generate_series(1, 40) g});
$_->query_safe('COMMIT') for reverse @l;
$_->quit for @l;
$on->safe_psql('postgres', q{SELECT outbox.resume_destination('loose')});
is($on->safe_psql('postgres', q{SELECT outbox.wait_delivered('60 seconds')}), 't',
	'unordered: delivered');
is($on->safe_psql('postgres', q{SELECT delivery_order FROM outbox.stats}), 'unordered',
	'unordered: outbox.stats says so');
is($on->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(DISTINCT id) FROM got}),
	'70 70', 'unordered: every event once');
$on->stop;

done_testing();

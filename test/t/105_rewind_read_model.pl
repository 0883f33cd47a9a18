# CQRS read models rebuilt from retained history (issue 16 items 2, 3):
#   - two producers write the events of the same orders concurrently (each
#     event its own transaction, so one aggregate's commits interleave),
#     each locking its order's row first as an application updating it
#     would: so two commits of one order never overlap in time, and G4
#     defines their order for every destination alike (commits that
#     overlap are unordered: two destinations whose windows split them
#     differently may get them in either order, README, rewind());
#     a read model is maintained live by a function destination, and a
#     second one is truncated and rebuilt by outbox.rewind in the middle
#     of it: once idle, the rebuilt model equals the live one, fold for
#     fold (the fold is order-sensitive: every order keeps the list of its
#     events in the order applied);
#   - outbox.aggregate_events gives each order's history in that same
#     order, with increasing positions;
#   - retention survives the log's retirement: with outbox_saga.retention
#     0 housekeeping empties the log, the history keeps every event, and a
#     destination started from history (outbox.subscribe_since) rebuilds a
#     third model equal to the live one; keep then deletes old history
#     through housekeeping.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $PER_PRODUCER = 3000;
my $ORDERS = 20;

my $node = new_node('rewind_read_model',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = 0\n"
	  . "log_statement = none\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	-- A read model per destination: the orders, folded from their events.
	CREATE TABLE public.orders_rm (
		model text, order_id text, total int NOT NULL, status text NOT NULL,
		applied int[] NOT NULL, PRIMARY KEY (model, order_id));
	CREATE FUNCTION public.fold(model text, e outbox.events) RETURNS void
	LANGUAGE sql AS $$
		INSERT INTO public.orders_rm AS o VALUES
		       (model, e.aggregate_id, (e.payload->>'amount')::int, e.event_type,
		        ARRAY[(e.payload->>'n')::int])
		ON CONFLICT (model, order_id) DO UPDATE
		   SET total = o.total + (e.payload->>'amount')::int,
		       status = e.event_type,
		       applied = o.applied || (e.payload->>'n')::int
	$$;
	CREATE FUNCTION public.to_live(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ SELECT public.fold('live', e) $$;
	CREATE FUNCTION public.to_rebuilt(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ SELECT public.fold('rebuilt', e) $$;
	CREATE FUNCTION public.to_late(e outbox.events) RETURNS void LANGUAGE sql
	AS $$ SELECT public.fold('late', e) $$;
	SELECT outbox.retain_topic('orders');
	SELECT outbox.create_destination('live', 'function', '{"function": "public.to_live"}');
	SELECT outbox.subscribe('live', 'orders');
	SELECT outbox.create_destination('rebuilt', 'function', '{"function": "public.to_rebuilt"}');
	SELECT outbox.subscribe('rebuilt', 'orders');
});
# The orders the producers lock, one row each.
$node->safe_psql('postgres', qq{
	CREATE TABLE public.orders (order_id text PRIMARY KEY);
	INSERT INTO public.orders SELECT 'order-' || i FROM generate_series(0, $ORDERS - 1) i;});
ok(wait_for_dispatcher($node, 'postgres'), 'a dispatcher runs');

# Two producers, each event in its own transaction, on the same orders.
my @producers;
for my $p (0, 1)
{
	my $sql = qq{
		DO \$\$
		BEGIN
			FOR i IN 1 .. $PER_PRODUCER LOOP
				PERFORM 1 FROM public.orders WHERE order_id = 'order-' || (i % $ORDERS) FOR UPDATE;
				PERFORM outbox.emit('orders',
					(ARRAY['order.placed', 'order.paid', 'order.shipped'])[1 + i % 3],
					jsonb_build_object('n', $p * 100000 + i, 'amount', i % 7),
					'order-' || (i % $ORDERS));
				COMMIT;
			END LOOP;
		END \$\$;};
	push @producers,
	  IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
			$node->connstr('postgres'), '-c', $sql ],
		'>', \my $out, '2>', \my $err);
}

# Mid-way, rebuild one model: rewind first (it locks the destination, so
# no batch of it runs until commit), then empty the model, in one
# transaction.
ok(wait_until($node, 'postgres',
	"SELECT COALESCE(sum(cardinality(applied)), 0) >= $PER_PRODUCER / 10"
	  . " FROM public.orders_rm WHERE model = 'rebuilt'", 60),
	'the read models fill while the producers write');
my $queued = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT outbox.rewind('rebuilt', '-infinity');
	DELETE FROM public.orders_rm WHERE model = 'rebuilt';
	COMMIT;});
ok($queued > 0 && $queued < 2 * $PER_PRODUCER,
	"rewind queued $queued events while the producers write");

ok($_->finish, 'a producer wrote all its events') for @producers;
my $total = 2 * $PER_PRODUCER;
ok(wait_until($node, 'postgres', qq{
	SELECT outbox.wait_idle('1 second')
	   AND (SELECT count(*) FROM outbox.history) = $total}, 120),
	'idle, every event archived');

my $diff = q{
	SELECT count(*) FROM (
	  (SELECT order_id, total, status, applied FROM public.orders_rm WHERE model = 'live'
	   EXCEPT ALL
	   SELECT order_id, total, status, applied FROM public.orders_rm WHERE model = '%1$s')
	  UNION ALL
	  (SELECT order_id, total, status, applied FROM public.orders_rm WHERE model = '%1$s'
	   EXCEPT ALL
	   SELECT order_id, total, status, applied FROM public.orders_rm WHERE model = 'live')) d};
# On a failure: the orders whose folds differ, where they part, and the
# events there with their commit-order keys and positions.
sub model_diff
{
	my ($model) = @_;
	return $node->safe_psql('postgres', qq{
		WITH d AS (
		  SELECT l.order_id, l.applied AS live, m.applied AS other,
		         (SELECT min(i) FROM generate_subscripts(l.applied, 1) i
		           WHERE l.applied[i] IS DISTINCT FROM m.applied[i]) AS at
		    FROM public.orders_rm l JOIN public.orders_rm m USING (order_id)
		   WHERE l.model = 'live' AND m.model = '$model' AND l.applied IS DISTINCT FROM m.applied)
		SELECT d.order_id || ' parts at ' || d.at || ': live ' || d.live[d.at - 1 : d.at + 2]::text
		       || ' $model ' || d.other[d.at - 1 : d.at + 2]::text || E'\n'
		       || (SELECT string_agg(format('  n=%s position=%s txid=%s id=%s committed_at=%s',
		                   h.payload->>'n', h.position, h.txid, h.id, h.committed_at), E'\n' ORDER BY h.position)
		             FROM outbox.history h
		            WHERE h.aggregate_id = d.order_id
		              AND (h.payload->>'n')::int = ANY (d.live[d.at - 1 : d.at + 2] || d.other[d.at - 1 : d.at + 2]))
		  FROM d});
}

is($node->safe_psql('postgres',
	q{SELECT sum(cardinality(applied)) FROM public.orders_rm WHERE model = 'live'}),
	$total, 'the live model applied every event once');
is($node->safe_psql('postgres', sprintf($diff, 'rebuilt')), 0,
	'the rebuilt model equals the live one, order of every fold included')
  or diag(model_diff('rebuilt'));
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.orders_rm o
	 WHERE model = 'live'
	   AND o.applied IS DISTINCT FROM (
	       SELECT array_agg((a.payload->>'n')::int ORDER BY a.position)
	         FROM outbox.aggregate_events('orders', o.order_id) a)}),
	0, 'aggregate_events gives every order in the order it was applied live');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM outbox.aggregate_events('orders', 'order-1') WHERE position IS NULL}),
	0, 'nothing is left in the tail');
is($node->safe_psql('postgres', q{
	SELECT replay_pending FROM outbox.stats WHERE destination = 'rebuilt'}),
	0, 'the replay is over');

# Housekeeping retires the log (retention 0); the history stays.
ok(wait_until($node, 'postgres', 'SELECT count(*) = 0 FROM outbox.events', 60),
	'housekeeping retired the log');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.history'), $total,
	'the history keeps every retained event');

# A destination started from history rebuilds the same model.
$node->safe_psql('postgres', q{
	SELECT outbox.create_destination('late', 'function', '{"function": "public.to_late"}');
	SELECT outbox.subscribe_since('late', '-infinity', 'orders');});
ok(wait_until($node, 'postgres', qq{
	SELECT outbox.wait_idle('1 second')
	   AND (SELECT sum(cardinality(applied)) FROM public.orders_rm WHERE model = 'late') = $total},
	120), 'the late destination got the whole history');
is($node->safe_psql('postgres', sprintf($diff, 'late')), 0,
	'a destination started from history builds the same model')
  or diag(model_diff('late'));

# keep: housekeeping deletes what is older (the events are made older here).
$node->safe_psql('postgres', q{
	SELECT outbox.retain_topic('orders', '1 hour');
	UPDATE outbox.history SET committed_at = committed_at - interval '2 hours'
	 WHERE aggregate_id = 'order-1';});
ok(wait_until($node, 'postgres', q{
	SELECT count(*) = 0 FROM outbox.history WHERE aggregate_id = 'order-1'}, 60),
	'housekeeping deletes the history older than keep');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.history'),
	$total - 2 * $PER_PRODUCER / $ORDERS, 'and only that');

$node->stop;
done_testing();

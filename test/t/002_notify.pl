# Notify destinations (SPEC 3.2, G1, G4, G6): a LISTENing session hears
# every committed event once, in commit order, sent by the dispatcher (not
# by the emitting backend), with the event as JSON - to_jsonb of the
# outbox.events row, every column - as the payload; an event too large for
# a notification arrives as {"event_id", "id", "truncated": true}, and the
# limit is exactly the server's (7999 bytes fit, 8000 do not).  Events of
# open or rolled-back transactions are never announced.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use OutboxTest;

# Events stay in the log after delivery, so that what was heard can be
# compared with the rows.
my $node = new_node('notify',
	conf => "outbox_saga.poll_interval = '100ms'\noutbox_saga.retention = '1h'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION outbox_saga;
	SELECT outbox.create_destination('announce', 'notify', '{"channel": "outbox_events"}');
	SELECT outbox.subscribe('announce', 'orders');
});
my $dispatcher = wait_for_dispatcher($node, 'postgres');
ok($dispatcher, 'a dispatcher serves the database');

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN outbox_events');

# Everything the listener has been told so far: a list of [channel, payload,
# pid].  psql prints notifications after the next query it runs; poll with a
# trivial query until 'want' notifications came (or 30 seconds passed).
my @heard;
sub listen_until
{
	my ($want) = @_;
	my $deadline = time() + 30;
	while (1)
	{
		my $out = $listener->query_safe('SELECT 1');
		while ($out =~
			/^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.$/mg)
		{
			push @heard, [ $1, $2, $3 ];
		}
		return scalar(@heard) if @heard >= $want || time() > $deadline;
		usleep(20_000);
	}
}

# Is the text 'json' equal, as jsonb, to 'sql' (a jsonb expression)?
sub json_is
{
	my ($json, $sql, $name) = @_;
	is($node->safe_psql('postgres',
			"SELECT \$outbox_json\$$json\$outbox_json\$::jsonb = ($sql)"),
		't', $name)
	  or diag("heard: $json\nexpected: "
		  . $node->safe_psql('postgres', "SELECT ($sql)::text"));
}

# Three transactions; odd characters, NULL aggregate, headers and a
# deliver_after in the past all survive the trip.  A rolled-back event, an
# event of another topic and a rolled-back savepoint are never announced.
$node->safe_psql('postgres', q{
	SELECT outbox.emit('orders', 'order.created',
	       '{"n": 1, "text": "quote \" backslash \\\\ apostrophe '' unicode é€😀 newline \n end"}',
	       'o-1', '{"trace": "abc"}');
	BEGIN;
	SELECT outbox.emit('orders', 'order.rolled_back', '{}', 'o-1');
	ROLLBACK;
	BEGIN;
	SELECT outbox.emit('orders', 'order.paid', '{"n": 2, "nested": {"a": [1, 2.5, null, true]}}', 'o-1');
	SAVEPOINT s;
	SELECT outbox.emit('orders', 'order.savepoint', '{}', 'o-1');
	ROLLBACK TO SAVEPOINT s;
	SELECT outbox.emit('other', 'not.subscribed', '{}', 'o-1');
	SELECT outbox.emit('orders', 'order.noted', '{"n": 3}', NULL);
	COMMIT;
	SELECT outbox.emit('orders', 'order.shipped', '{"n": 4}', 'o-1',
	       deliver_after => now() - interval '1 minute');
});
is($node->safe_psql('postgres', 'SELECT outbox.wait_idle(\'30 seconds\')'),
	't', 'the dispatcher becomes idle');
is(listen_until(4), 4, 'four notifications heard');

my @ids = split /\n/, $node->safe_psql('postgres',
	q{SELECT id FROM outbox.events WHERE topic = 'orders' ORDER BY id});
is(scalar(@ids), 4, 'four events of the subscribed topic were committed');

my $i = 0;
for my $n (@heard[ 0 .. 3 ])
{
	my ($channel, $payload, $pid) = @$n;
	is($channel, 'outbox_events', "notification $i: on the configured channel");
	is($pid, $dispatcher, "notification $i: sent by the dispatcher");
	json_is($payload,
		"SELECT to_jsonb(e) FROM outbox.events e WHERE e.id = $ids[$i]",
		"notification $i: the payload is to_jsonb of the event row, in commit order");
	is($node->safe_psql('postgres',
			"SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys("
			  . "\$outbox_json\$$payload\$outbox_json\$::jsonb) k"),
		'aggregate_id,created_at,deliver_after,event_id,event_type,headers,id,payload,topic,txid',
		"notification $i: exactly the keys of outbox.events");
	$i++;
}

# An open transaction's event is not announced until it commits.
my $writer = $node->background_psql('postgres');
$writer->query_safe(q{BEGIN; SELECT outbox.emit('orders', 'order.late', '{"n": 5}', 'o-2')});
$node->safe_psql('postgres', q{SELECT outbox.emit('orders', 'order.early', '{"n": 6}', 'o-3')});
is($node->safe_psql('postgres', 'SELECT outbox.wait_idle(\'30 seconds\')'),
	't', 'idle while a transaction with an event is open');
listen_until(5);
is(scalar(@heard), 5, 'only the committed event was announced');
like($heard[4][1], qr/"order\.early"/, 'it is the committed one');
$writer->query_safe('COMMIT');
$writer->quit;
is($node->safe_psql('postgres', 'SELECT outbox.wait_idle(\'30 seconds\')'),
	't', 'idle after the late commit');
listen_until(6);
is(scalar(@heard), 6, 'the late transaction is announced once it commits (G2)');
like($heard[5][1], qr/"order\.late"/, 'with its own event');

# Payload size: the JSON of the event is announced whole up to 7999 bytes;
# from 8000 bytes on it is cut down to a reference.  The length of an
# event's JSON depends on its id, txid and created_at (whose text drops
# trailing zeros), so each test event is emitted in a block that keeps it
# only if its JSON has exactly the wanted length, and otherwise rolls it back
# and tries again with the padding corrected.
$node->safe_psql('postgres', q{
	CREATE TABLE public.sizes (label text, event_id uuid);
	DO $$
	DECLARE
		r record;
		pad int;
		ev uuid;
		len int;
		tries int;
	BEGIN
		FOR r IN SELECT * FROM (VALUES ('fits', 7999), ('too_big', 8000)) v(label, target) LOOP
			pad := r.target - 300;
			tries := 0;
			LOOP
				tries := tries + 1;
				IF tries > 50 THEN
					RAISE EXCEPTION 'could not make an event of % bytes', r.target;
				END IF;
				BEGIN
					ev := outbox.emit('orders', 'size.' || r.label,
					                  jsonb_build_object('pad', repeat('x', pad)), 'big');
					SELECT octet_length(to_jsonb(e)::text) INTO STRICT len
					  FROM outbox.events e WHERE e.event_id = ev;
					IF len <> r.target THEN
						pad := pad + (r.target - len);
						RAISE EXCEPTION USING ERRCODE = 'OB001', MESSAGE = 'wrong size, again';
					END IF;
					INSERT INTO public.sizes VALUES (r.label, ev);
					EXIT;
				EXCEPTION WHEN SQLSTATE 'OB001' THEN
					NULL;
				END;
			END LOOP;
		END LOOP;
		INSERT INTO public.sizes VALUES
		  ('huge', outbox.emit('orders', 'size.huge',
		           jsonb_build_object('pad', repeat('é', 100000)), 'big'));
	END $$;
	SELECT outbox.emit('orders', 'after.huge', '{}', 'big');
});
is($node->safe_psql('postgres', q{
	SELECT string_agg(s.label || '=' || octet_length(to_jsonb(e)::text), ',' ORDER BY e.id)
	  FROM public.sizes s JOIN outbox.events e USING (event_id)}),
	'fits=7999,too_big=8000,huge=' . $node->safe_psql('postgres', q{
	SELECT octet_length(to_jsonb(e)::text) FROM public.sizes s JOIN outbox.events e
	 USING (event_id) WHERE s.label = 'huge'}),
	'the test events have the sizes around the limit');
is($node->safe_psql('postgres', 'SELECT outbox.wait_idle(\'30 seconds\')'),
	't', 'idle after the large events');
listen_until(10);
is(scalar(@heard), 10, 'four more notifications: large events do not stop the destination');

json_is($heard[6][1],
	q{SELECT to_jsonb(e) FROM outbox.events e JOIN public.sizes s USING (event_id)
	   WHERE s.label = 'fits'},
	'7999 bytes of JSON: announced whole');
for my $k ([ 7, 'too_big' ], [ 8, 'huge' ])
{
	json_is($heard[ $k->[0] ][1],
		qq{SELECT jsonb_build_object('event_id', e.event_id, 'id', e.id, 'truncated', true)
		     FROM outbox.events e JOIN public.sizes s USING (event_id)
		    WHERE s.label = '$k->[1]'},
		"$k->[1]: announced as {event_id, id, truncated: true}");
}
like($heard[9][1], qr/"after\.huge"/, 'the next event follows, in order');
is($node->safe_psql('postgres',
		q{SELECT delivered_total || '/' || dead || '/' || retrying FROM outbox.stats
		   WHERE destination = 'announce'}),
	'10/0/0', 'outbox.stats: ten delivered, nothing dead or retrying');

# No notification was heard twice.
my %seen;
$seen{ $_->[1] }++ for @heard;
is(scalar(grep { $_ > 1 } values %seen), 0, 'no event was announced twice');

$listener->quit;
$node->stop;
done_testing();

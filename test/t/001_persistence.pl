# The event log survives restarts and crashes: committed events are still
# there after a clean restart and after an immediate (crash) stop, rolled
# back ones never appear, and emit works with and without preloading.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use OutboxTest;

my $node = new_node('persist');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox_saga');

is($node->safe_psql('postgres', 'SHOW outbox_saga.max_payload_size'),
	'1MB', 'library preloaded: its settings exist');

$node->safe_psql('postgres', q{
	SELECT outbox.emit('orders', 'order.created', '{"n": 1}', '1');
	BEGIN;
	SELECT outbox.emit('orders', 'order.created', '{"n": 2}', '2');
	ROLLBACK;
	BEGIN;
	SELECT outbox.emit('orders', 'order.paid', '{"n": 1}', '1');
	SELECT outbox.emit('orders', 'order.created', '{"n": 3}', '3');
	COMMIT;
});
my $before = $node->safe_psql('postgres',
	q{SELECT string_agg(event_type || ':' || aggregate_id, ',' ORDER BY id) FROM outbox.events});
is($before, 'order.created:1,order.paid:1,order.created:3',
	'committed events are in the log, the rolled-back one is not');
my $ids_before = $node->safe_psql('postgres',
	'SELECT string_agg(event_id::text, \',\' ORDER BY id) FROM outbox.events');

$node->restart;
is($node->safe_psql('postgres',
	'SELECT string_agg(event_id::text, \',\' ORDER BY id) FROM outbox.events'),
	$ids_before, 'events and their event ids survive a restart');

# A crash: committed events are durable, an open transaction's are not.
my $open = $node->background_psql('postgres');
$open->query_safe(q{BEGIN; SELECT outbox.emit('orders', 'never.committed')});
$node->safe_psql('postgres', q{SELECT outbox.emit('orders', 'order.shipped', '{}', '1')});
$node->stop('immediate');
$open->quit;
$node->start;
is($node->safe_psql('postgres',
	q{SELECT string_agg(event_type, ',' ORDER BY id) FROM outbox.events}),
	'order.created,order.paid,order.created,order.shipped',
	'after a crash: committed events kept, the open transaction left nothing');

# New events after the crash get higher ids than every event before it.
$node->safe_psql('postgres', q{SELECT outbox.emit('orders', 'after.crash')});
is($node->safe_psql('postgres',
	q{SELECT bool_and(id < (SELECT id FROM outbox.events WHERE event_type = 'after.crash'))
	    FROM outbox.events WHERE event_type <> 'after.crash'}),
	't', 'ids keep growing across a crash');
$node->stop;

# Without preloading, emitting still works (dispatch waits for preloading).
my $plain = new_node('no_preload', preload => 0);
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION outbox_saga');
$plain->safe_psql('postgres', q{SELECT outbox.emit('t', 'x')});
is($plain->safe_psql('postgres', 'SELECT count(*) FROM outbox.events'),
	'1', 'emit works without shared_preload_libraries');
$plain->stop;

done_testing();

-- ======================================================================
-- outbox_saga demo
-- ======================================================================
\pset footer off
SET timezone = 'UTC';
CREATE EXTENSION outbox_saga;

-- An application table.
CREATE TABLE orders (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer    text    NOT NULL,
	status      text    NOT NULL DEFAULT 'new',
	total       numeric(12,2) NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now()
);

-- 1. Capture it: every committed INSERT/UPDATE/DELETE becomes an event in
--    the same transaction.  updated_at-only changes are not worth an event.
SELECT outbox.capture_table('orders', topic => 'orders',
                            ignore_columns => '{updated_at}') AS trigger_name;

INSERT INTO orders (customer, total) VALUES ('alice', 42.50), ('bob', 17.00);
UPDATE orders SET status = 'paid' WHERE customer = 'alice';
UPDATE orders SET updated_at = now() WHERE customer = 'bob';   -- ignored
DELETE FROM orders WHERE customer = 'bob';

-- 2. Emit an event by hand, in the same transaction as the business write.
BEGIN;
UPDATE orders SET status = 'shipped' WHERE customer = 'alice';
SELECT outbox.emit('shipping', 'parcel.handed_over',
                   '{"carrier": "DHL", "order_id": 1}', aggregate_id => '1') IS NOT NULL AS emitted;
COMMIT;

-- 3. A rolled-back transaction leaves no event.
BEGIN;
INSERT INTO orders (customer, total) VALUES ('mallory', 1.00);
ROLLBACK;

-- The events, in the order they were written:
SELECT id, topic, aggregate_id, event_type,
       coalesce(payload->'new'->>'status', payload->>'carrier') AS status_or_carrier
  FROM outbox.events ORDER BY id;

-- One event in full (every event carries a stable UUIDv7 event_id):
SELECT jsonb_pretty(payload) AS payload_of_first_event
  FROM outbox.events ORDER BY id LIMIT 1;

-- 4. Deliver them.  A handler function receives every committed event of
--    its subscriptions, inside the transaction that records the delivery,
--    as the role that created the destination.
CREATE TABLE mailbox (event_id uuid, event_type text, aggregate_id text, received_at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.send_mail(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.mailbox (event_id, event_type, aggregate_id)
	VALUES (e.event_id, e.event_type, e.aggregate_id)
$$;
SELECT outbox.create_destination('mailer', 'function', '{"function": "public.send_mail"}');
-- Events committed from now on, every topic:
SELECT outbox.subscribe('mailer') AS subscription;

INSERT INTO orders (customer, total) VALUES ('carol', 99.90);
UPDATE orders SET status = 'paid' WHERE customer = 'carol';
SELECT outbox.emit('shipping', 'parcel.handed_over', '{"carrier": "UPS"}', aggregate_id => '3') IS NOT NULL AS emitted;

-- Wait until the dispatcher has delivered everything that is ready:
SELECT outbox.wait_idle() AS idle;
SELECT event_type, aggregate_id FROM mailbox ORDER BY received_at;
SELECT destination, kind, pending, ready, delivered_total, failed_attempts_total, last_error
  FROM outbox.stats;
SELECT kind, database, state FROM outbox.workers ORDER BY kind DESC;

-- 5. Webhooks: every committed order event is POSTed to an HTTP endpoint,
--    signed per Standard Webhooks; the secret is write-only.
SELECT outbox.create_destination('order_webhook', 'http', jsonb_build_object(
	'url', 'http://127.0.0.1:' || :'port' || '/webhooks/orders',
	'secret', :'secret', 'headers', '{"X-Tenant": "demo"}'::jsonb));
SELECT outbox.subscribe('order_webhook', 'orders') AS subscription;
SELECT name, kind, config FROM outbox.destinations WHERE name = 'order_webhook';
INSERT INTO orders (customer, total) VALUES ('dave', 12.34);
SELECT outbox.wait_idle() AS idle;
SELECT destination, kind, delivered_total, last_error FROM outbox.stats ORDER BY destination;

-- 6. Idempotency keys: the first request claims the key ...
BEGIN;
SELECT * FROM outbox.idempotency_key('payments', 'req-001', fingerprint => 'sha256:abc');
SELECT outbox.idempotency_complete('payments', 'req-001', '{"charge_id": "ch_1"}');
COMMIT;
-- ... a retry of the same request gets the stored response ...
SELECT * FROM outbox.idempotency_key('payments', 'req-001', fingerprint => 'sha256:abc');
-- ... and the same key with a different request body is refused.
SELECT * FROM outbox.idempotency_key('payments', 'req-001', fingerprint => 'sha256:xyz');

-- The inbox pattern for consumers: true the first time only.
SELECT outbox.once('billing', 'evt-1') AS first, outbox.once('billing', 'evt-1') AS second;

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

-- Wait until every committed event is delivered (or dead-lettered):
SELECT outbox.wait_delivered() AS delivered;
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
SELECT outbox.wait_delivered() AS delivered;
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

-- ======================================================================
-- 7. A saga: place an order in three steps, each with a compensation.
--    If a step fails for good, the completed steps are undone in reverse.
-- ======================================================================
CREATE TABLE stock (item text PRIMARY KEY, qty integer NOT NULL CHECK (qty >= 0));
CREATE TABLE shop_orders (order_id text PRIMARY KEY, status text NOT NULL);
CREATE TABLE payments (order_id text PRIMARY KEY, amount numeric NOT NULL, status text NOT NULL);
INSERT INTO stock VALUES ('apple', 10);

CREATE FUNCTION public.create_order(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.shop_orders VALUES (ctx->'input'->>'order_id', 'pending')
	RETURNING jsonb_build_object('order_id', order_id)
$$;
CREATE FUNCTION public.cancel_order(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	UPDATE public.shop_orders SET status = 'cancelled' WHERE order_id = ctx->'input'->>'order_id'
	RETURNING jsonb_build_object('cancelled', order_id)
$$;
CREATE FUNCTION public.reserve_inventory(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	UPDATE public.stock SET qty = qty - (ctx->'input'->>'qty')::int WHERE item = ctx->'input'->>'item'
	RETURNING jsonb_build_object('left', qty)
$$;
CREATE FUNCTION public.release_inventory(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	UPDATE public.stock SET qty = qty + (ctx->'input'->>'qty')::int WHERE item = ctx->'input'->>'item'
	RETURNING jsonb_build_object('left', qty)
$$;
CREATE FUNCTION public.process_payment(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF ctx->'input'->>'card' = 'declined' THEN
		RAISE EXCEPTION 'card declined';
	END IF;
	INSERT INTO public.payments VALUES (ctx->'input'->>'order_id', (ctx->'input'->>'amount')::numeric, 'captured');
	RETURN jsonb_build_object('captured', ctx->'input'->>'amount');
END $$;
CREATE FUNCTION public.refund_payment(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	UPDATE public.payments SET status = 'refunded' WHERE order_id = ctx->'input'->>'order_id'
	RETURNING jsonb_build_object('refunded', amount)
$$;

SELECT saga.define('place_order', '[
  {"name": "create_order",      "action": {"function": "public.create_order"},
                                "compensation": {"function": "public.cancel_order"}},
  {"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
                                "compensation": {"function": "public.release_inventory"}},
  {"name": "process_payment",   "action": {"function": "public.process_payment"},
                                "compensation": {"function": "public.refund_payment"},
                                "max_attempts": 2, "backoff_base": "10 milliseconds"}
]') AS version;

-- Started in the caller's transaction (it runs only if that commits); the
-- idempotency key makes a retried request return the same saga.
SELECT saga.start('place_order', '{"order_id": "A-1", "item": "apple", "qty": 3, "amount": 9.90}',
                  idempotency_key => 'order-A-1') AS saga_a \gset
SELECT saga.start('place_order', '{"order_id": "A-1", "item": "apple", "qty": 3, "amount": 9.90}',
                  idempotency_key => 'order-A-1') = :'saga_a' AS same_saga_on_retry;
SELECT saga.start('place_order', '{"order_id": "B-2", "item": "apple", "qty": 4, "amount": 5.00,
                                   "card": "declined"}') AS saga_b \gset

-- Wait until both sagas have finished (no blind sleep: the dispatcher says when).
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN NOT EXISTS (SELECT 1 FROM saga.instances
		                       WHERE status IN ('running', 'compensating'));
		PERFORM outbox.wait_idle('1 second');
	END LOOP;
END $$;

SELECT input->>'order_id' AS order_id, status, error FROM saga.instances ORDER BY created_at;
-- The timeline of each saga (saga.timeline: every step run and compensation, in order):
SELECT i.input->>'order_id' AS order_id, t.step, t.phase, t.status, t.attempts, t.error
  FROM saga.instances i, saga.timeline(i.id) t
 ORDER BY i.created_at, t.seq;
-- Order A went through; order B was undone: stock back, order cancelled.
SELECT * FROM shop_orders ORDER BY order_id;
SELECT * FROM stock;
SELECT * FROM payments;
SELECT definition, running, completed, compensated, failed FROM saga.stats;

-- 8. Event sourcing and CQRS (issue 16): a retained topic keeps its events
--    after the log retires them; a read model maintained by a function
--    destination is truncated and rebuilt from that history by rewind.
SELECT outbox.retain_topic('carts');
CREATE TABLE cart_view (cart_id text PRIMARY KEY, items int NOT NULL, total numeric(12,2) NOT NULL,
                        status text NOT NULL, events int NOT NULL);
CREATE FUNCTION public.project_cart(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.cart_view AS v VALUES
	       (e.aggregate_id, coalesce((e.payload->>'qty')::int, 0),
	        coalesce((e.payload->>'price')::numeric * (e.payload->>'qty')::int, 0), e.event_type, 1)
	ON CONFLICT (cart_id) DO UPDATE
	   SET items = v.items + coalesce((e.payload->>'qty')::int, 0),
	       total = v.total + coalesce((e.payload->>'price')::numeric * (e.payload->>'qty')::int, 0),
	       status = e.event_type, events = v.events + 1
$$;
SELECT outbox.create_destination('cart_view', 'function', '{"function": "public.project_cart"}');
SELECT outbox.subscribe('cart_view', 'carts') AS subscription;

SELECT count(outbox.emit('carts', 'cart.item_added',
                         jsonb_build_object('qty', 1 + n % 3, 'price', 2.50), 'cart-' || n % 4))
  FROM generate_series(1, 12) n;
SELECT outbox.emit('carts', 'cart.checked_out', '{}', 'cart-1') IS NOT NULL AS checked_out;

-- Wait for the projection (and the archiver) to catch up.
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT sum(events) FROM public.cart_view) = 13
		      AND (SELECT count(*) FROM outbox.aggregate_events('carts', 'cart-1')
		            WHERE position IS NOT NULL) = 4;
		PERFORM outbox.wait_idle('1 second');
	END LOOP;
END $$;
CREATE TABLE cart_view_before AS SELECT * FROM cart_view;
SELECT * FROM cart_view ORDER BY cart_id;

-- One aggregate's history, in commit order, with positions to page by:
SELECT position, event_type, payload FROM outbox.aggregate_events('carts', 'cart-1');

-- Rebuild the read model: rewind first (it locks the destination until
-- commit, so no delivery runs in between), then empty the table.
BEGIN;
SELECT outbox.rewind('cart_view', '-infinity') AS replayed;
TRUNCATE cart_view;
COMMIT;
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT replay_pending FROM outbox.stats WHERE destination = 'cart_view') = 0;
		PERFORM outbox.wait_idle('1 second');
	END LOOP;
END $$;
-- The rebuilt read model equals the one before (no row differs):
SELECT count(*) AS differing_rows FROM (
	(TABLE cart_view EXCEPT TABLE cart_view_before)
	UNION ALL
	(TABLE cart_view_before EXCEPT TABLE cart_view)) d;

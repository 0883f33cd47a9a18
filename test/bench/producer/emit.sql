-- pgbench: what an application does to publish "order created" with
-- outbox.emit(): the INSERT and the emit in one explicit transaction.
\set customer_id random(1, 100000)
\set total_cents random(100, 99999)
\set item_count random(1, 9)
BEGIN;
INSERT INTO public.orders_emit (customer_id, total, item_count, shipping_country)
	VALUES (:customer_id, :total_cents::numeric / 100, :item_count, 'DE')
	RETURNING id \gset
SELECT outbox.emit('orders', 'order.created',
	jsonb_build_object('id', :id::bigint, 'customer_id', :customer_id::bigint,
		'status', 'new', 'total', :total_cents::numeric / 100, 'currency', 'EUR',
		'item_count', :item_count::integer, 'shipping_country', 'DE'),
	:id::text);
COMMIT;

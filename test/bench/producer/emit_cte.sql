-- pgbench: the INSERT and outbox.emit() in one statement (a data-modifying
-- CTE, autocommit): the same work as emit.sql without the three extra round
-- trips of BEGIN, a second statement and COMMIT.
\set customer_id random(1, 100000)
\set total_cents random(100, 99999)
\set item_count random(1, 9)
WITH o AS (
	INSERT INTO public.orders_emit (customer_id, total, item_count, shipping_country)
		VALUES (:customer_id, :total_cents::numeric / 100, :item_count, 'DE')
		RETURNING *
)
SELECT o.id, outbox.emit('orders', 'order.created',
	jsonb_build_object('id', o.id, 'customer_id', o.customer_id,
		'status', o.status, 'total', o.total, 'currency', o.currency,
		'item_count', o.item_count, 'shipping_country', o.shipping_country),
	o.id::text)
FROM o;

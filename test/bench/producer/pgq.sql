-- pgbench: one order INSERT per transaction into orders_pgq (autocommit).
\set customer_id random(1, 100000)
\set total_cents random(100, 99999)
\set item_count random(1, 9)
INSERT INTO public.orders_pgq (customer_id, total, item_count, shipping_country)
	VALUES (:customer_id, :total_cents::numeric / 100, :item_count, 'DE')
	RETURNING id;

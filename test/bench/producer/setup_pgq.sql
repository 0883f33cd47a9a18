-- The PgQ variant: an orders table like the others, with PgQ's C trigger
-- pgq.jsontriga writing each new row as JSON into the queue "orders" (the
-- way PgQ users capture changes).  Separate from setup.sql: PgQ
-- (postgresql-15-pgq3) may be missing, then only this variant is skipped.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION pgq;
SELECT pgq.create_queue('orders');
CREATE TABLE public.orders_pgq (
	id               bigserial PRIMARY KEY,
	customer_id      bigint        NOT NULL,
	status           text          NOT NULL DEFAULT 'new',
	total            numeric(12,2) NOT NULL,
	currency         char(3)       NOT NULL DEFAULT 'EUR',
	item_count       integer       NOT NULL,
	shipping_country text          NOT NULL,
	created_at       timestamptz   NOT NULL DEFAULT now(),
	updated_at       timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX ON public.orders_pgq (customer_id);
CREATE TRIGGER orders_pgq_queue AFTER INSERT ON public.orders_pgq
	FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('orders');

-- Producer section: four identical orders tables, one per variant, and the
-- hand-written outbox of the PL/pgSQL variant.  Run once per cluster.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION outbox_saga;

-- The same orders table four times (only the triggers differ): bigserial
-- key, the columns of a typical order, and the index on customer_id that a
-- real orders table has.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['orders_plain', 'orders_capture', 'orders_emit', 'orders_plpgsql']
	LOOP
		EXECUTE format($sql$
			CREATE TABLE public.%I (
				id               bigserial PRIMARY KEY,
				customer_id      bigint        NOT NULL,
				status           text          NOT NULL DEFAULT 'new',
				total            numeric(12,2) NOT NULL,
				currency         char(3)       NOT NULL DEFAULT 'EUR',
				item_count       integer       NOT NULL,
				shipping_country text          NOT NULL,
				created_at       timestamptz   NOT NULL DEFAULT now(),
				updated_at       timestamptz   NOT NULL DEFAULT now()
			)$sql$, t);
		EXECUTE format('CREATE INDEX ON public.%I (customer_id)', t);
	END LOOP;
END
$$;

-- A typical hand-written outbox: a serial key, the event's fields, a
-- published_at the relay sets, and the partial index the relay polls.
CREATE TABLE public.naive_outbox (
	id           bigserial   PRIMARY KEY,
	event_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
	topic        text        NOT NULL,
	aggregate_id text,
	event_type   text        NOT NULL,
	payload      jsonb       NOT NULL,
	headers      jsonb       NOT NULL DEFAULT '{}',
	created_at   timestamptz NOT NULL DEFAULT now(),
	published_at timestamptz
);
CREATE INDEX naive_outbox_unpublished ON public.naive_outbox (id)
	WHERE published_at IS NULL;

-- The naive trigger: the whole new row as JSON into the outbox table.
CREATE FUNCTION public.naive_outbox_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.naive_outbox (topic, aggregate_id, event_type, payload, headers, created_at)
	VALUES ('orders', NEW.id::text, TG_TABLE_NAME || '.inserted', to_jsonb(NEW), '{}', now());
	RETURN NULL;
END
$$;

CREATE TRIGGER orders_plpgsql_outbox AFTER INSERT ON public.orders_plpgsql
	FOR EACH ROW EXECUTE FUNCTION public.naive_outbox_trigger();

-- Before every run: empty tables and a fresh checkpoint, so every run
-- starts alike (same table sizes, same full-page-write pattern).
\set ON_ERROR_STOP 1
TRUNCATE public.orders_plain, public.orders_capture, public.orders_emit,
	public.orders_plpgsql, public.naive_outbox, outbox.events;
CHECKPOINT;

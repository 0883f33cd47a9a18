-- Before every run, with the PgQ variant set up: its table and queue too
-- (TRUNCATE of pgq.event_template empties the queue's event tables, which
-- inherit from it).
\set ON_ERROR_STOP 1
TRUNCATE public.orders_pgq, pgq.event_template;

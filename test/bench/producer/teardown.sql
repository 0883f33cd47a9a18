-- After the producer section: nothing of it may hold later sections back
-- (paused destinations of "orders" would keep the log from being retired;
-- a later section may create PgQ itself).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT outbox.drop_destination(name) FROM outbox.destinations
 WHERE name IN ('resting_1', 'resting_2');
DROP TABLE IF EXISTS public.orders_pgq;
DROP EXTENSION IF EXISTS pgq CASCADE;

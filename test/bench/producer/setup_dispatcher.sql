-- The conditions with the dispatcher running: destinations, none of them
-- active for what the producers write: two paused destinations of the topic
-- "orders" that capture and emit write (what issue 18 measured: every
-- commit woke the dispatcher for them).  An active destination of another
-- topic would add the cost of its batches reading past these events in the
-- log (see README, Performance), which is not a wake-up.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE FUNCTION public.producer_noop(e outbox.events) RETURNS void
	LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT outbox.create_destination('resting_1', 'function', '{"function": "public.producer_noop"}');
SELECT outbox.subscribe('resting_1', 'orders');
SELECT outbox.pause_destination('resting_1');
SELECT outbox.create_destination('resting_2', 'function', '{"function": "public.producer_noop"}');
SELECT outbox.subscribe('resting_2', 'orders');
SELECT outbox.pause_destination('resting_2');

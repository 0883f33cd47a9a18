-- Sagas driven by the dispatcher (SPEC 3.5, G9, G10): the order placement
-- example - create_order, reserve_inventory, process_payment with the
-- compensations cancel_order, release_inventory, refund_payment, as SQL
-- functions on real tables.  A happy path; a payment that fails (stock and
-- order restored, in reverse order); a compensation that fails twice and
-- then succeeds; one that never succeeds (failed, then saga.retry); an
-- awaited command event completed by saga.complete_step; an ad-hoc
-- compensation; cancel; a timed-out step; a deadline; idempotent start.
\set VERBOSITY terse
SET timezone = 'UTC';

CREATE FUNCTION pg_temp.wait_for(cond text, timeout interval DEFAULT '30 seconds')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	ok boolean;
BEGIN
	LOOP
		EXECUTE cond INTO ok;
		IF ok THEN RETURN true; END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM outbox.wait_idle('1 second');
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;

-- The saga of an order, and its status.
CREATE FUNCTION pg_temp.saga_of(order_id text) RETURNS uuid LANGUAGE sql AS $$
	SELECT id FROM saga.instances WHERE input->>'order_id' = order_id
$$;
CREATE FUNCTION pg_temp.status_is(order_id text, wanted text) RETURNS boolean LANGUAGE sql AS $$
	SELECT status = wanted FROM saga.instances WHERE input->>'order_id' = order_id
$$;
CREATE FUNCTION pg_temp.wait_status(order_id text, wanted text) RETURNS boolean LANGUAGE sql AS $$
	SELECT pg_temp.wait_for(format('SELECT pg_temp.status_is(%L, %L)', order_id, wanted))
$$;
CREATE FUNCTION pg_temp.wait_run(order_id text, step text, wanted text) RETURNS boolean LANGUAGE sql AS $$
	SELECT pg_temp.wait_for(format(
		'SELECT bool_or(r.status = %L) FROM saga.step_runs r WHERE r.saga_id = pg_temp.saga_of(%L) AND r.step = %L',
		wanted, order_id, step))
$$;
-- Every run of an order's saga, in the order they were scheduled; a
-- compensation record that has not run is listed where it was recorded
-- (when its action succeeded).
CREATE FUNCTION pg_temp.timeline(order_id text)
RETURNS TABLE (step text, phase text, status text, attempts integer, error text)
LANGUAGE sql AS $$
	SELECT r.step, r.phase, r.status, r.attempts, r.error
	  FROM saga.step_runs r WHERE r.saga_id = pg_temp.saga_of(order_id)
	 ORDER BY r.seq
$$;
CREATE FUNCTION pg_temp.try(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>', 'g');
END $$;

-- The shop, owned by the application's role; the saga's steps run as it.
CREATE ROLE regress_saga_shop;
CREATE TABLE public.shop_orders (
	order_id text PRIMARY KEY,
	customer text NOT NULL,
	status   text NOT NULL
);
CREATE TABLE public.shop_stock (
	item  text PRIMARY KEY,
	stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE public.shop_payments (
	payment_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id   text NOT NULL,
	amount     numeric NOT NULL,
	status     text NOT NULL
);
-- Every call that committed, in order, and as whom it ran.
CREATE TABLE public.shop_journal (
	seq         bigint GENERATED ALWAYS AS IDENTITY,
	order_id    text,
	call        text,
	run_as      text,
	search_path text
);
-- Fault injection: 'release:<order>' makes release_inventory of that order fail.
CREATE TABLE public.shop_faults (fault text PRIMARY KEY);
INSERT INTO public.shop_stock VALUES ('apple', 10);
GRANT SELECT, INSERT, UPDATE ON public.shop_orders, public.shop_stock, public.shop_payments,
	public.shop_journal TO regress_saga_shop;
GRANT SELECT ON public.shop_faults TO regress_saga_shop;

CREATE FUNCTION public.shop_log(ctx jsonb, call text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.shop_journal (order_id, call, run_as, search_path)
	VALUES (ctx->'input'->>'order_id', call, current_user, current_setting('search_path'))
$$;
CREATE FUNCTION public.create_order(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.shop_log(ctx, 'create_order');
	INSERT INTO public.shop_orders
	VALUES (ctx->'input'->>'order_id', ctx->'input'->>'customer', 'pending');
	RETURN jsonb_build_object('order_id', ctx->'input'->>'order_id');
END $$;
CREATE FUNCTION public.reserve_inventory(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.shop_log(ctx, 'reserve_inventory');
	UPDATE public.shop_stock SET stock = stock - (ctx->'input'->>'qty')::integer
	 WHERE item = ctx->'input'->>'item';
	RETURN jsonb_build_object('item', ctx->'input'->>'item', 'qty', (ctx->'input'->>'qty')::integer);
END $$;
CREATE FUNCTION public.process_payment(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	id integer;
BEGIN
	IF ctx->'input'->>'card' = 'declined' THEN
		RAISE EXCEPTION 'card declined (attempt %)', ctx->>'attempt' USING ERRCODE = 'P0001';
	END IF;
	PERFORM public.shop_log(ctx, 'process_payment');
	INSERT INTO public.shop_payments (order_id, amount, status)
	VALUES (ctx->'input'->>'order_id', (ctx->'input'->>'amount')::numeric, 'captured')
	RETURNING payment_id INTO id;
	UPDATE public.shop_orders SET status = 'paid' WHERE order_id = ctx->'input'->>'order_id';
	RETURN jsonb_build_object('payment_id', id);
END $$;
CREATE FUNCTION public.cancel_order(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.shop_log(ctx, 'cancel_order');
	UPDATE public.shop_orders SET status = 'cancelled' WHERE order_id = ctx->'input'->>'order_id';
	RETURN NULL;
END $$;
-- Uses the result of reserve_inventory; fails while the attempt number is
-- at most input.release_failures, or while a fault is injected.
CREATE FUNCTION public.release_inventory(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (ctx->>'attempt')::integer <= COALESCE((ctx->'input'->>'release_failures')::integer, 0)
	   OR EXISTS (SELECT FROM public.shop_faults
	               WHERE fault = 'release:' || (ctx->'input'->>'order_id')) THEN
		RAISE EXCEPTION 'warehouse unavailable (attempt %)', ctx->>'attempt' USING ERRCODE = 'P0001';
	END IF;
	PERFORM public.shop_log(ctx, 'release_inventory');
	UPDATE public.shop_stock
	   SET stock = stock + (ctx->'results'->'reserve_inventory'->>'qty')::integer
	 WHERE item = ctx->'results'->'reserve_inventory'->>'item';
	RETURN jsonb_build_object('released', ctx->'results'->'reserve_inventory'->'qty');
END $$;
CREATE FUNCTION public.refund_payment(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.shop_log(ctx, 'refund_payment');
	UPDATE public.shop_payments SET status = 'refunded'
	 WHERE payment_id = (ctx->'results'->'process_payment'->>'payment_id')::integer;
	RETURN NULL;
END $$;
CREATE FUNCTION public.notify_customer(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.shop_log(ctx, 'notify_customer');
	RETURN jsonb_build_object('mailed', ctx->'input'->>'customer');
END $$;

GRANT EXECUTE ON FUNCTION saga.define(text, jsonb, jsonb) TO regress_saga_shop;
SET ROLE regress_saga_shop;
SELECT saga.define('place_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
	 "compensation": {"function": "public.release_inventory"}},
	{"name": "process_payment", "action": {"function": "public.process_payment"},
	 "compensation": {"function": "public.refund_payment"}, "max_attempts": 2}
]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "40 milliseconds",
       "compensation_max_attempts": 3}') AS version;
RESET ROLE;

-- G9: a saga exists, and runs, only once its starting transaction commits.
BEGIN;
SELECT saga.start('place_order', '{"order_id": "o0", "customer": "zoe", "item": "apple", "qty": 1, "amount": 5}')
	IS NOT NULL AS started;
ROLLBACK;
BEGIN;
SELECT saga.start('place_order', '{"order_id": "o1", "customer": "ann", "item": "apple", "qty": 2, "amount": 20}')
	IS NOT NULL AS started;
SELECT outbox.wait_idle();
SELECT count(*) AS o1_orders_before_commit FROM public.shop_orders;
COMMIT;

-- The happy path: every step ran once, as the definition's owner.
SELECT pg_temp.wait_status('o1', 'completed');
SELECT definition, version, status, current_step, error, results
  FROM saga.instances WHERE input->>'order_id' = 'o1';
SELECT * FROM pg_temp.timeline('o1');
SELECT * FROM public.shop_orders ORDER BY order_id;
SELECT * FROM public.shop_stock;
SELECT * FROM public.shop_payments ORDER BY payment_id;
SELECT count(*) AS rolled_back_saga FROM saga.instances WHERE input->>'order_id' = 'o0';

-- A payment that fails: its two attempts are used up, then the completed
-- steps are compensated in reverse order; stock and order are restored.
SELECT saga.start('place_order', '{"order_id": "o2", "customer": "bob", "item": "apple", "qty": 3, "amount": 30, "card": "declined"}')
	IS NOT NULL AS started;
SELECT pg_temp.wait_status('o2', 'compensated');
SELECT status, current_step, error, results FROM saga.instances WHERE input->>'order_id' = 'o2';
SELECT * FROM pg_temp.timeline('o2');
SELECT call FROM public.shop_journal WHERE order_id = 'o2' ORDER BY seq;
SELECT * FROM public.shop_orders WHERE order_id = 'o2';
SELECT * FROM public.shop_stock;
SELECT count(*) AS o2_payments FROM public.shop_payments WHERE order_id = 'o2';

-- A compensation that fails twice and then succeeds: retried with backoff.
SELECT saga.start('place_order', '{"order_id": "o3", "customer": "cid", "item": "apple", "qty": 1, "amount": 10, "card": "declined", "release_failures": 2}')
	IS NOT NULL AS started;
SELECT pg_temp.wait_status('o3', 'compensated');
SELECT * FROM pg_temp.timeline('o3');
SELECT call FROM public.shop_journal WHERE order_id = 'o3' ORDER BY seq;
SELECT * FROM public.shop_stock;

-- A compensation that never succeeds: after compensation_max_attempts the
-- saga is failed (never compensated), the later compensations wait, and
-- saga.stats counts it.  Once the cause is fixed, saga.retry() resumes.
INSERT INTO public.shop_faults VALUES ('release:o4');
SELECT saga.start('place_order', '{"order_id": "o4", "customer": "dan", "item": "apple", "qty": 4, "amount": 40, "card": "declined"}')
	IS NOT NULL AS started;
SELECT pg_temp.wait_status('o4', 'failed');
SELECT status, current_step, error FROM saga.instances WHERE input->>'order_id' = 'o4';
SELECT * FROM pg_temp.timeline('o4');
SELECT * FROM public.shop_orders WHERE order_id = 'o4';
SELECT * FROM public.shop_stock;
SELECT definition, running, compensating, completed, compensated, failed FROM saga.stats
 WHERE definition = 'place_order';
SELECT pg_temp.try(format('SELECT saga.retry(%L)', pg_temp.saga_of('o1'))) AS retry_completed;
SELECT pg_temp.try(format('SELECT saga.cancel(%L)', pg_temp.saga_of('o4'))) AS cancel_failed;
DELETE FROM public.shop_faults;
SELECT saga.retry(pg_temp.saga_of('o4'));
SELECT pg_temp.wait_status('o4', 'compensated');
SELECT status, current_step, error FROM saga.instances WHERE input->>'order_id' = 'o4';
SELECT * FROM pg_temp.timeline('o4');
SELECT call FROM public.shop_journal WHERE order_id = 'o4' ORDER BY seq;
SELECT * FROM public.shop_orders WHERE order_id = 'o4';
SELECT * FROM public.shop_stock;

-- Idempotent start: the same key returns the same saga, also in another
-- transaction; a key whose transaction rolled back is free again.
SELECT saga.start('place_order', '{"order_id": "o5", "customer": "eve", "item": "apple", "qty": 1, "amount": 10}',
                  'order-o5') AS o5 \gset
SELECT saga.start('place_order', '{"order_id": "o5", "customer": "eve", "item": "apple", "qty": 1, "amount": 10}',
                  'order-o5') = :'o5' AS same_saga;
BEGIN;
SELECT saga.start('place_order', '{"order_id": "o6", "customer": "fay", "item": "apple", "qty": 1, "amount": 10}',
                  'order-o6') IS NOT NULL AS started;
SELECT saga.start('place_order', '{"order_id": "o6", "customer": "fay", "item": "apple", "qty": 1, "amount": 10}',
                  'order-o6') = pg_temp.saga_of('o6') AS same_in_transaction;
ROLLBACK;
SELECT saga.start('place_order', '{"order_id": "o6", "customer": "fay", "item": "apple", "qty": 1, "amount": 10}',
                  'order-o6') = pg_temp.saga_of('o6') AS started_after_rollback;
SELECT pg_temp.wait_status('o5', 'completed') AND pg_temp.wait_status('o6', 'completed') AS both_completed;
SELECT input->>'order_id' AS order_id, idempotency_key, status FROM saga.instances
 WHERE idempotency_key IS NOT NULL ORDER BY 1;
SELECT order_id, count(*) AS payments FROM public.shop_payments
 WHERE order_id IN ('o5', 'o6') GROUP BY 1 ORDER BY 1;

-- Version 2 ships the order through a command event that a shipping
-- service answers with saga.complete_step() (the owner needs EXECUTE on
-- outbox.emit for that).  Finished sagas keep version 1.
SET ROLE regress_saga_shop;
SELECT saga.define('place_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
	 "compensation": {"function": "public.release_inventory"}},
	{"name": "process_payment", "action": {"function": "public.process_payment"},
	 "compensation": {"function": "public.refund_payment"}, "max_attempts": 2},
	{"name": "ship_order",
	 "action": {"emit": {"topic": "shipping", "event_type": "shipment.requested", "await": true,
	                     "headers": {"source": "shop"}}},
	 "timeout": "1 hour", "max_attempts": 1}
]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "40 milliseconds",
       "compensation_max_attempts": 3}') AS version;
RESET ROLE;
GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) TO regress_saga_shop;
SET ROLE regress_saga_shop;
SELECT saga.define('place_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
	 "compensation": {"function": "public.release_inventory"}},
	{"name": "process_payment", "action": {"function": "public.process_payment"},
	 "compensation": {"function": "public.refund_payment"}, "max_attempts": 2},
	{"name": "ship_order",
	 "action": {"emit": {"topic": "shipping", "event_type": "shipment.requested", "await": true,
	                     "headers": {"source": "shop"}}},
	 "timeout": "1 hour", "max_attempts": 1}
]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "40 milliseconds",
       "compensation_max_attempts": 3}') AS version;
RESET ROLE;

SELECT saga.start('place_order', '{"order_id": "o7", "customer": "gus", "item": "apple", "qty": 1, "amount": 10}')
	AS o7 \gset
SELECT pg_temp.wait_run('o7', 'ship_order', 'waiting');
SELECT status, current_step FROM saga.instances WHERE id = :'o7';
-- The command event: payload = ctx, aggregate = the saga, the step's
-- idempotency key in the headers.
SELECT e.topic, e.event_type, e.aggregate_id = :'o7' AS aggregate_is_saga,
       e.payload->>'step' AS step, e.payload->>'phase' AS phase, e.payload->'input'->>'order_id' AS order_id,
       e.payload->'results'->'reserve_inventory' AS reserved,
       e.payload->>'idempotency_key' = :'o7' || ':ship_order:action' AS payload_key,
       e.headers->>'idempotency_key' = :'o7' || ':ship_order:action' AS header_key,
       e.headers->>'source' AS source, e.headers->>'saga_step' AS saga_step
  FROM outbox.events e WHERE e.topic = 'shipping' AND e.aggregate_id = :'o7';
-- Version 3, defined while o7 waits, thanks the customer after shipping;
-- o7 keeps version 2 and completes after shipping.
SET ROLE regress_saga_shop;
SELECT saga.define('place_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
	 "compensation": {"function": "public.release_inventory"}},
	{"name": "process_payment", "action": {"function": "public.process_payment"},
	 "compensation": {"function": "public.refund_payment"}, "max_attempts": 2},
	{"name": "ship_order",
	 "action": {"emit": {"topic": "shipping", "event_type": "shipment.requested", "await": true,
	                     "headers": {"source": "shop"}}},
	 "timeout": "1 hour", "max_attempts": 1},
	{"name": "thank_customer", "action": {"function": "public.notify_customer"}}
]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "40 milliseconds",
       "compensation_max_attempts": 3}') AS version;
RESET ROLE;
SELECT saga.complete_step(:'o7', 'ship_order', true, '{"tracking": "TRK-7"}');
SELECT pg_temp.wait_status('o7', 'completed');
SELECT status, version, results->'ship_order' AS shipped FROM saga.instances WHERE id = :'o7';
SELECT * FROM pg_temp.timeline('o7');
SELECT definition, version, count(*) FROM saga.instances GROUP BY 1, 2 ORDER BY 1, 2;
-- Completing it again, or another step, is refused and changes nothing.
SELECT saga.complete_step(:'o7', 'ship_order', true);
SELECT pg_temp.try(format('SELECT saga.complete_step(%L, %L, true)', :'o7', 'process_payment')) AS running_step;
SELECT pg_temp.try(format('SELECT saga.complete_step(%L, %L, true)', :'o7', 'gift_wrap')) AS unknown_step;

-- The shipping service reports a failure (version 3): the step fails
-- (max_attempts 1) and the saga compensates; an ad-hoc compensation
-- registered while the saga ran was recorded last, so it runs first.
SELECT saga.start('place_order', '{"order_id": "o8", "customer": "hal", "item": "apple", "qty": 2, "amount": 20}')
	AS o8 \gset
SELECT pg_temp.wait_run('o8', 'ship_order', 'waiting');
SELECT saga.register_compensation(:'o8', 'notify_customer', '{"function": "public.notify_customer"}');
SELECT saga.register_compensation(:'o8', 'notify_customer', '{"function": "public.notify_customer"}');
SELECT pg_temp.try(format('SELECT saga.register_compensation(%L, %L, %L)', :'o8', 'notify_customer',
	'{"function": "public.cancel_order"}')) AS other_call;
SELECT pg_temp.try(format('SELECT saga.register_compensation(%L, %L, %L)', :'o8', 'create_order',
	'{"function": "public.cancel_order"}')) AS step_name;
SELECT pg_temp.try(format('SELECT saga.register_compensation(%L, %L, %L)', :'o8', 'x',
	'{"function": "public.nothing_here"}')) AS missing_function;
SELECT pg_temp.try(format('SELECT saga.register_compensation(%L, %L, %L)', :'o8', 'x', '"public.cancel_order"'))
	AS not_a_call;
SELECT saga.complete_step(:'o8', 'ship_order', false, '{"reason": "address unknown"}');
SELECT pg_temp.wait_status('o8', 'compensated');
SELECT status, error FROM saga.instances WHERE id = :'o8';
SELECT * FROM pg_temp.timeline('o8');
SELECT call FROM public.shop_journal WHERE order_id = 'o8' ORDER BY seq;
SELECT result FROM saga.step_runs WHERE saga_id = :'o8' AND step IN ('ship_order', 'notify_customer')
 ORDER BY seq;
SELECT o.status AS order_status, p.status AS payment_status
  FROM public.shop_orders o JOIN public.shop_payments p USING (order_id) WHERE order_id = 'o8';
SELECT * FROM public.shop_stock;

-- Cancel: the waiting step is abandoned, the completed steps are
-- compensated in reverse order, and the saga ends cancelled.
SELECT saga.start('place_order', '{"order_id": "o9", "customer": "ida", "item": "apple", "qty": 1, "amount": 10}')
	AS o9 \gset
SELECT pg_temp.wait_run('o9', 'ship_order', 'waiting');
SELECT saga.cancel(:'o9', 'customer changed their mind');
SELECT pg_temp.wait_status('o9', 'cancelled');
SELECT status, current_step, error FROM saga.instances WHERE id = :'o9';
SELECT * FROM pg_temp.timeline('o9');
SELECT call FROM public.shop_journal WHERE order_id = 'o9' ORDER BY seq;
SELECT saga.cancel(:'o9');
SELECT saga.complete_step(:'o9', 'ship_order', true);
SELECT pg_temp.try(format('SELECT saga.register_compensation(%L, %L, %L)', :'o9', 'late',
	'{"function": "public.notify_customer"}')) AS register_on_cancelled;

-- Version 4 gives the shipping service 300 milliseconds and two attempts:
-- the command is emitted again with the same idempotency key, then the
-- step fails and the saga compensates.  A late completion is refused and
-- changes nothing.
SET ROLE regress_saga_shop;
SELECT saga.define('place_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "reserve_inventory", "action": {"function": "public.reserve_inventory"},
	 "compensation": {"function": "public.release_inventory"}},
	{"name": "process_payment", "action": {"function": "public.process_payment"},
	 "compensation": {"function": "public.refund_payment"}, "max_attempts": 2},
	{"name": "ship_order",
	 "action": {"emit": {"topic": "shipping", "event_type": "shipment.requested", "await": true}},
	 "timeout": "300 milliseconds", "max_attempts": 2}
]$$, '{"backoff_base": "10 milliseconds", "backoff_max": "40 milliseconds",
       "compensation_max_attempts": 3}') AS version;
RESET ROLE;
SELECT saga.start('place_order', '{"order_id": "o10", "customer": "jim", "item": "apple", "qty": 1, "amount": 10}')
	AS o10 \gset
SELECT pg_temp.wait_status('o10', 'compensated');
SELECT status, version, error FROM saga.instances WHERE id = :'o10';
SELECT * FROM pg_temp.timeline('o10');
SELECT count(*) AS commands, count(DISTINCT headers->>'idempotency_key') AS keys
  FROM outbox.events WHERE topic = 'shipping' AND aggregate_id = :'o10';
SELECT saga.complete_step(:'o10', 'ship_order', true, '{"tracking": "TRK-10"}');
SELECT status, results ? 'ship_order' AS shipped FROM saga.instances WHERE id = :'o10';
SELECT * FROM pg_temp.timeline('o10');

-- A deadline for the whole saga: when it passes, the saga stops waiting
-- and compensates.
SET ROLE regress_saga_shop;
SELECT saga.define('express_order', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "ship_order",
	 "action": {"emit": {"topic": "shipping", "event_type": "shipment.requested", "await": true}},
	 "timeout": "1 hour"}
]$$, '{"deadline": "2 seconds"}') AS version;
RESET ROLE;
SELECT saga.start('express_order', '{"order_id": "o11", "customer": "kim"}') AS o11 \gset
SELECT deadline - created_at AS deadline_after FROM saga.instances WHERE id = :'o11';
SELECT pg_temp.wait_status('o11', 'compensated');
SELECT status, error FROM saga.instances WHERE id = :'o11';
SELECT * FROM pg_temp.timeline('o11');
SELECT saga.complete_step(:'o11', 'ship_order', true);

-- A function step is cancelled when it exceeds its timeout (a failed
-- attempt, here the only one).
CREATE FUNCTION public.slow_quote(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(10);
	RETURN '{}';
END $$;
SET ROLE regress_saga_shop;
SELECT saga.define('quote', $$[
	{"name": "create_order", "action": {"function": "public.create_order"},
	 "compensation": {"function": "public.cancel_order"}},
	{"name": "quote", "action": {"function": "public.slow_quote"},
	 "timeout": "200 milliseconds", "max_attempts": 1}
]$$) AS version;
RESET ROLE;
SELECT saga.start('quote', '{"order_id": "o13", "customer": "max"}') IS NOT NULL AS started;
SELECT pg_temp.wait_status('o13', 'compensated');
SELECT * FROM pg_temp.timeline('o13');
SELECT timed_out_at IS NOT NULL AS timed_out FROM saga.step_run
 WHERE saga_id = pg_temp.saga_of('o13') AND step = 'quote';

-- G10: every call ran as the definition's owner with the search_path of its
-- definer (pg_temp last).
SELECT run_as, search_path, count(*) > 0 AS calls FROM public.shop_journal GROUP BY 1, 2;
SELECT order_id, count(*) AS duplicate_calls FROM public.shop_journal
 GROUP BY order_id, call HAVING count(*) > 1;

-- Only a role with the owner's privileges registers compensations (they
-- run as the owner).
CREATE ROLE regress_saga_clerk;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA saga TO regress_saga_clerk;
SELECT saga.start('express_order', '{"order_id": "o12", "customer": "lea"}') AS o12 \gset
-- The owner of a definition with sagas in flight cannot be dropped.
DROP ROLE regress_saga_shop;
SET ROLE regress_saga_clerk;
SELECT saga.register_compensation(:'o12', 'x', '{"function": "public.notify_customer"}');
-- EXECUTE on saga.cancel alone does not let a role act on sagas of another
-- owner or starter; membership in the owner's role does.
SELECT saga.cancel(:'o12', 'by the clerk');
RESET ROLE;
GRANT regress_saga_shop TO regress_saga_clerk;
SET ROLE regress_saga_clerk;
SELECT saga.cancel(:'o12', 'by the clerk');
RESET ROLE;
SELECT pg_temp.wait_status('o12', 'cancelled');
SELECT status, error FROM saga.instances WHERE id = :'o12';

SELECT definition, version, running, waiting, retrying, compensating, completed, compensated,
       cancelled, failed
  FROM saga.stats ORDER BY definition;

DROP OWNED BY regress_saga_shop, regress_saga_clerk;
-- Topics the roles own or were granted name them by OID: give them back first.
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_saga_shop', 'regress_saga_clerk'))) x;
SELECT count(*) AS topic_privileges_revoked FROM (
  SELECT outbox.revoke_topic(g.topic, g.grantee, g.privilege) FROM outbox.topic_grant g
   WHERE g.grantee::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_saga_shop', 'regress_saga_clerk'))) x;
DROP ROLE regress_saga_shop, regress_saga_clerk;

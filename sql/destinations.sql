-- Destinations and subscriptions (SPEC 3.2): the SQL API, config checks and
-- merging, secrets masked in the view, owners (G10), and every bad input as
-- an error with an SQLSTATE that changes nothing (G11).
\set VERBOSITY terse
SET timezone = 'UTC';

-- The SQLSTATE of a call, for the tables of bad calls below.
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

-- Handlers for the function kind.
CREATE FUNCTION public.dest_noop_handler(e outbox.events) RETURNS void
  LANGUAGE sql AS '';
CREATE FUNCTION public.dest_jsonb_handler(e jsonb) RETURNS void
  LANGUAGE sql AS '';
CREATE FUNCTION public.dest_not_void(e outbox.events) RETURNS integer
  LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.dest_private_handler(e outbox.events) RETURNS void
  LANGUAGE sql AS '';
REVOKE EXECUTE ON FUNCTION public.dest_private_handler(outbox.events) FROM PUBLIC;

-- Create: the config is checked and stored as given (top-level nulls, which
-- mean "the default", are dropped).  The owner is the current role and
-- dispatch starts at the newest tick.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT outbox.create_destination('dest_fn', 'function',
                                 '{"function": "public.dest_noop_handler"}');
SELECT outbox.create_destination('dest_json', 'function',
                                 '{"function": "public.dest_jsonb_handler", "batch_size": null}');
SELECT outbox.create_destination('dest_notify', 'notify',
  '{"channel": "dest_events", "max_attempts": 3, "backoff_base": "500 milliseconds",
    "backoff_max": 60, "batch_size": 10000, "ordered": false, "timeout": 0.25}');
SELECT name, kind, owner = current_user::regrole AS owned_by_me,
       tick_from = (SELECT max(id) FROM outbox.tick) AS starts_at_newest_tick,
       tick_to IS NULL AS no_window, last_id, delivered_total
  FROM outbox.destination WHERE name LIKE 'dest\_%' ORDER BY name;
COMMIT;
SELECT name, kind, config, paused, owner = current_user::regrole AS owned_by_me
  FROM outbox.destinations WHERE name LIKE 'dest\_%' ORDER BY name;

-- The common keys: every form and bound that is accepted...
SELECT outbox.create_destination('dest_ok_' || n, 'notify', c::jsonb)
  FROM (VALUES (1, '{"channel": "c", "max_attempts": 1, "batch_size": 1}'),
               (2, '{"channel": "c", "max_attempts": 2147483647, "ordered": true}'),
               (3, '{"channel": "c", "max_attempts": 5.0}'),
               (4, '{"channel": "c", "backoff_base": "2 hours"}'),
               (5, '{"channel": "c", "backoff_base": 1, "backoff_max": 1}'),
               (6, '{"channel": "c", "backoff_base": "1 ms", "backoff_max": "365 days"}'),
               (7, '{"channel": "c", "timeout": "24 days", "backoff_max": "1 mon"}'),
               (8, '{"channel": "c", "timeout": "00:01:30", "backoff_base": 0.001}')) v(n, c);
SELECT count(*) AS accepted FROM outbox.destinations WHERE name LIKE 'dest\_ok\_%';
SELECT outbox.drop_destination(name)
  FROM outbox.destinations WHERE name LIKE 'dest\_ok\_%';

-- ... and plain errors for what is not.  A message names the key, never its
-- value.
SELECT count(*) AS destinations_before FROM outbox.destination \gset
SELECT outbox.create_destination(NULL, 'notify', '{"channel": "c"}');
SELECT outbox.create_destination('', 'notify', '{"channel": "c"}');
SELECT outbox.create_destination(repeat('n', 64), 'notify', '{"channel": "c"}');
SELECT outbox.create_destination(E'bad\tname', 'notify', '{"channel": "c"}');
SELECT outbox.create_destination('x', NULL, '{"channel": "c"}');
SELECT outbox.create_destination('x', 'carrier_pigeon', '{}');
SELECT outbox.create_destination('x', 'notify', NULL);
SELECT outbox.create_destination('x', 'notify', '["channel", "c"]');
SELECT outbox.create_destination('x', 'notify', '"c"');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "api_secret": "hunter2"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "max_attempts": 0}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "max_attempts": 2.5}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "max_attempts": "3"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "max_attempts": 1e10}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "batch_size": 10001}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "ordered": "yes"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_base": "soon"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_base": true}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_base": "-1 second"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_base": 0}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_base": "1 minute", "backoff_max": "1 second"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "backoff_max": "366 days"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "timeout": "25 days"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "timeout": "100 microseconds"}');
SELECT outbox.create_destination('x', 'function', '{}');
SELECT outbox.create_destination('x', 'function', '{"function": "public.dest_no_such_handler"}');
SELECT outbox.create_destination('x', 'function', '{"function": "public.dest_not_void"}');
SELECT outbox.create_destination('x', 'notify', '{}');
SELECT outbox.create_destination('dest_fn', 'notify', '{"channel": "c"}');
-- In full: the key is named, its value (here a secret) is not.
\set VERBOSITY default
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "api_secret": "hunter2"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "timeout": "hunter2"}');
SELECT outbox.create_destination('x', 'notify', '{"channel": "c", "batch_size": 0}');
SELECT outbox.create_destination(repeat('n', 64), 'notify', '{"channel": "c"}');
SELECT outbox.create_destination('dest_fn', 'notify', '{"channel": "c"}');
\set VERBOSITY terse
SELECT count(*) - :destinations_before AS created_by_bad_calls FROM outbox.destination;

-- Alter merges top-level keys: a new value replaces the old one, null
-- removes the key, and the merged config is checked as a whole.
SELECT outbox.alter_destination('dest_notify',
  '{"max_attempts": 10, "ordered": null, "timeout": null, "batch_size": 50}');
SELECT config FROM outbox.destinations WHERE name = 'dest_notify';
SELECT outbox.alter_destination('dest_notify', '{}');
SELECT outbox.alter_destination('dest_notify', '{"channel": "dest_other", "no_such_key": null}');
SELECT config FROM outbox.destinations WHERE name = 'dest_notify';
SELECT outbox.alter_destination('dest_notify', '{"backoff_max": "100 milliseconds"}');
SELECT outbox.alter_destination('dest_notify', '{"channel": null}');
SELECT outbox.alter_destination('dest_notify', '{"no_such_key": 1}');
SELECT outbox.alter_destination('dest_notify', '[]');
SELECT outbox.alter_destination('dest_notify', NULL);
SELECT outbox.alter_destination('dest_fn', '{"function": "public.dest_not_void"}');
SELECT outbox.alter_destination('dest_missing', '{}');
SELECT config FROM outbox.destinations WHERE name = 'dest_notify';

-- Pause and resume (each change is one LOG line in the server log); doing it
-- twice is a notice.
SELECT outbox.pause_destination('dest_notify');
SELECT outbox.pause_destination('dest_notify');
SELECT name, paused FROM outbox.destinations WHERE name LIKE 'dest\_%' ORDER BY name;
SELECT outbox.resume_destination('dest_notify');
SELECT outbox.resume_destination('dest_notify');
SELECT paused FROM outbox.destinations WHERE name = 'dest_notify';
SELECT outbox.pause_destination('dest_missing');
SELECT outbox.resume_destination(NULL);

-- Subscriptions: topic '*' is every topic, event_types NULL every type;
-- event types are kept sorted and without duplicates, so the same set is the
-- same subscription.
SELECT outbox.subscribe('dest_fn') AS sub_all \gset
SELECT outbox.subscribe('dest_fn', 'orders') AS sub_orders \gset
SELECT outbox.subscribe('dest_fn', 'orders', '{order.shipped,order.created,order.shipped}') AS sub_types \gset
SELECT outbox.subscribe('dest_notify', '*', '{order.created}') AS sub_notify \gset
SELECT :sub_all > 0 AS has_id, :sub_orders > :sub_all AS ids_grow;
SELECT destination, topic, event_types, id = :sub_types AS is_sub_types
  FROM outbox.subscriptions WHERE destination LIKE 'dest\_%'
 ORDER BY destination, topic, event_types NULLS FIRST;
SELECT pg_snapshot_xmax(s.since) <= pg_snapshot_xmax(pg_current_snapshot())
         AS since_is_a_snapshot
  FROM outbox.subscription s WHERE s.id = :sub_all;
SELECT count(*) AS subscriptions_before FROM outbox.subscription \gset
SELECT outbox.subscribe('dest_fn');
SELECT outbox.subscribe('dest_fn', 'orders', '{order.created,order.shipped}');
SELECT outbox.subscribe('dest_missing');
SELECT outbox.subscribe(NULL);
SELECT outbox.subscribe('dest_fn', NULL);
SELECT outbox.subscribe('dest_fn', '');
SELECT outbox.subscribe('dest_fn', 'orders.*');
SELECT outbox.subscribe('dest_fn', 'has space');
SELECT outbox.subscribe('dest_fn', repeat('t', 256));
SELECT outbox.subscribe('dest_fn', 'orders', '{}');
SELECT outbox.subscribe('dest_fn', 'orders', '{order.created,NULL}');
SELECT outbox.subscribe('dest_fn', 'orders', '{""}');
SELECT outbox.subscribe('dest_fn', 'orders', ARRAY[E'line\nbreak']);
SELECT outbox.subscribe('dest_fn', 'orders', '{{a},{b}}');
SELECT count(*) - :subscriptions_before AS subscribed_by_bad_calls FROM outbox.subscription;
SELECT outbox.unsubscribe(:sub_orders);
SELECT pg_temp.sqlstate_of('SELECT outbox.unsubscribe(' || :sub_orders || ')') AS unsubscribe_again;
SELECT outbox.unsubscribe(-1);
SELECT outbox.unsubscribe(NULL);
SELECT count(*) AS subscriptions_of_dest_fn FROM outbox.subscriptions WHERE destination = 'dest_fn';

-- The SQLSTATE of each kind of bad call.
SELECT call, pg_temp.sqlstate_of('SELECT outbox.' || call) AS sqlstate
  FROM (VALUES ($$create_destination(NULL, 'notify')$$),
               ($$create_destination('', 'notify')$$),
               ($$create_destination(repeat('n', 64), 'notify')$$),
               ($$create_destination(E'a\nb', 'notify')$$),
               ($$create_destination('x', 'smoke_signal')$$),
               ($$create_destination('x', 'notify', '[]')$$),
               ($$create_destination('x', 'notify', '{"channel": "c", "colour": "red"}')$$),
               ($$create_destination('x', 'notify', '{"channel": "c", "max_attempts": "many"}')$$),
               ($$create_destination('x', 'notify', '{"channel": "c", "batch_size": 0}')$$),
               ($$create_destination('x', 'notify', '{"channel": "c", "timeout": "whenever"}')$$),
               ($$create_destination('x', 'function', '{"function": "public.dest_nope"}')$$),
               ($$create_destination('dest_fn', 'function', '{"function": "public.dest_noop_handler"}')$$),
               ($$alter_destination('dest_missing', '{}')$$),
               ($$alter_destination('dest_fn', '{"max_attempts": -1}')$$),
               ($$drop_destination('dest_missing')$$),
               ($$pause_destination(NULL)$$),
               ($$subscribe('dest_missing')$$),
               ($$subscribe('dest_fn')$$),
               ($$subscribe('dest_fn', 'a*b')$$),
               ($$subscribe('dest_fn', 'orders', '{}')$$),
               ($$subscribe('dest_fn', 'orders', '{NULL}')$$),
               ($$unsubscribe(-1)$$)) v(call);

-- Secrets are write-only: outbox.mask_config() masks, at any depth, every
-- key that looks secret, credential headers, and credentials in URLs.
SELECT key, value FROM jsonb_each(outbox.mask_config($${
  "url": "https://hook:pa55@hooks.example.com/in?a=1&access_token=t0k&b=2#top",
  "secret": "whsec_abc", "Private_Key": {"pem": "..."}, "db_password": 7,
  "headers": {"Authorization": "Bearer x", "Cookie": "id=1", "X-API-Key": "k",
              "Proxy-Authorization": "Basic y", "X-Trace": "visible"},
  "properties": {"sasl.password": "p", "ssl.key.pem": "k", "client.id": "app"},
  "servers": ["nats://tok3n@n1:4222", "nats://n2:4222", {"apiKey": "z"}],
  "nested": {"headers": {"authorization": "x"}, "Authorization": "kept"},
  "plain": "https://example.com/?page=2"}$$))
 ORDER BY key;
-- A list of URLs in one string (NATS "url"): every one is masked; a comma
-- inside a query does not split a URL.
SELECT outbox.mask_config($${"url": "nats://u:p1@h1:4222,nats://u:p2@h2:4222, tls://tok@h3",
                            "hook": "https://h/x?ids=1,2&token=t"}$$) AS url_lists;
SELECT outbox.mask_config($${"url": "nats://u:pa/ss@h1:4222,nats://u:p?w#x@h2, tls://tok/en@h3",
                            "hook": "https://h/users/@me?x=1"}$$) AS userinfo_past_the_authority;
SELECT outbox.mask_config('{}') AS empty, outbox.mask_config('[{"token": 1}]') AS array_root,
       outbox.mask_config('"password"') AS scalar_root, outbox.mask_config(NULL) AS null_in;

-- Roles.  Nothing is granted to PUBLIC; an administrator grants EXECUTE on
-- the API and SELECT on the views.  A destination belongs to the role that
-- created it; only that role, its members and superusers may change it or
-- its subscriptions, and the views show a role only what it may see.
CREATE ROLE regress_dest_alice;
CREATE ROLE regress_dest_bob;
CREATE ROLE regress_dest_monitor IN ROLE pg_read_all_settings;
CREATE SCHEMA regress_dest_bob_schema AUTHORIZATION regress_dest_bob;
GRANT EXECUTE ON FUNCTION
    outbox.create_destination(text, text, jsonb), outbox.alter_destination(text, jsonb),
    outbox.drop_destination(text), outbox.pause_destination(text),
    outbox.resume_destination(text), outbox.subscribe(text, text, text[]),
    outbox.unsubscribe(bigint), outbox.mask_config(jsonb)
  TO regress_dest_alice, regress_dest_bob, regress_dest_monitor;
GRANT SELECT ON outbox.destinations, outbox.subscriptions
  TO regress_dest_alice, regress_dest_bob, regress_dest_monitor;

SET ROLE regress_dest_alice;
SELECT outbox.create_destination('dest_alice', 'function',
                                 '{"function": "public.dest_noop_handler"}');
SELECT outbox.subscribe('dest_alice', 'orders') AS sub_alice \gset
RESET ROLE;
-- A config holding secrets (as an http destination's would; written
-- directly here, paused, since only the function and notify kinds exist yet).
INSERT INTO outbox.destination (name, kind, config, owner, tick_from, paused)
VALUES ('dest_alice_secret', 'notify',
        '{"channel": "c", "secret": "whsec_abc", "headers": {"Authorization": "Bearer xyz"},
          "url": "https://alice:pa55@hooks.example.com/in"}',
        'regress_dest_alice'::regrole, 0, true);

SET ROLE regress_dest_alice;
SELECT name, kind, config, paused, owner FROM outbox.destinations ORDER BY name;
SELECT destination, topic, event_types FROM outbox.subscriptions ORDER BY destination, topic;
SELECT config FROM outbox.destination;
SELECT count(*) FROM outbox.subscription;
SELECT outbox.alter_destination('dest_alice', '{"max_attempts": 5}');
SELECT outbox.pause_destination('dest_alice');
SELECT outbox.resume_destination('dest_alice');
-- A handler alice may not execute.
SELECT outbox.create_destination('dest_alice_private', 'function',
                                 '{"function": "public.dest_private_handler"}');
-- not alice's
SELECT outbox.pause_destination('dest_fn');
SELECT outbox.subscribe('dest_fn', 'alice');
SELECT outbox.unsubscribe(:sub_notify);
RESET ROLE;
-- Alice's subscription made her the owner of topic orders (G14): bob
-- subscribes to it below with her grant.
SELECT name, owner FROM outbox.topics WHERE name = 'orders';
SELECT outbox.grant_topic('orders', 'regress_dest_bob', 'read');

SET ROLE regress_dest_bob;
SELECT name FROM outbox.destinations ORDER BY name;
SELECT destination FROM outbox.subscriptions ORDER BY destination;
-- security_barrier: bob's own function in WHERE never sees alice's rows.
CREATE FUNCTION pg_temp.dest_peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
	RAISE NOTICE 'peeked at %', $1;
	RETURN true;
END $$;
SELECT count(*) FROM outbox.destinations WHERE pg_temp.dest_peek(name);
SELECT count(*) FROM outbox.destinations WHERE pg_temp.dest_peek(config::text);
SELECT outbox.alter_destination('dest_alice', '{"max_attempts": 1}');
SELECT outbox.drop_destination('dest_alice');
SELECT outbox.pause_destination('dest_alice');
SELECT outbox.resume_destination('dest_alice');
SELECT outbox.subscribe('dest_alice', 'bob');
SELECT outbox.unsubscribe(:sub_alice);
SELECT call, pg_temp.sqlstate_of('SELECT outbox.' || replace(call, ':sub_alice', :'sub_alice'))
         AS sqlstate
  FROM (VALUES ($$alter_destination('dest_alice', '{}')$$),
               ($$drop_destination('dest_alice')$$),
               ($$pause_destination('dest_alice')$$),
               ($$resume_destination('dest_alice')$$),
               ($$subscribe('dest_alice', 'bob')$$),
               ($$unsubscribe(:sub_alice)$$),
               ($$create_destination('dest_alice', 'notify', '{"channel": "c"}')$$)) v(call);
-- After errors caught inside the API, bob is still bob.
SELECT current_user;
SELECT count(*) FROM outbox.destination;
-- bob's operator on his search_path is never used by the API (it would
-- announce itself); it is, by his own plain query.
CREATE FUNCTION regress_dest_bob_schema.text_eq(a text, b text) RETURNS boolean
  LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'bob''s operator ran as %', current_user;
	RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE OPERATOR regress_dest_bob_schema.= (LEFTARG = text, RIGHTARG = text,
                                           FUNCTION = regress_dest_bob_schema.text_eq);
SET search_path = regress_dest_bob_schema, pg_catalog;
SELECT outbox.create_destination('dest_bob', 'notify', '{"channel": "bob"}');
SELECT outbox.subscribe('dest_bob', 'orders', '{a}') > 0 AS subscribed;
SELECT outbox.pause_destination('dest_bob');
SELECT outbox.alter_destination('dest_bob', '{"timeout": 5}');
SELECT 'a'::text = 'a'::text AS bobs_own_query;
RESET search_path;
RESET ROLE;

-- A member of the owner role may manage the owner's destinations.
GRANT regress_dest_alice TO regress_dest_bob;
SET ROLE regress_dest_bob;
SELECT name FROM outbox.destinations ORDER BY name;
SELECT outbox.pause_destination('dest_alice');
RESET ROLE;
REVOKE regress_dest_alice FROM regress_dest_bob;

-- pg_read_all_settings sees every destination, masked, and changes only its
-- own.
SET ROLE regress_dest_monitor;
SELECT name, config, paused,
       CASE WHEN owner = session_user::text::regrole THEN 'the superuser'
            ELSE owner::text END AS owner
  FROM outbox.destinations
 WHERE name LIKE 'dest\_%' ORDER BY name;
SELECT destination, topic FROM outbox.subscriptions
 WHERE destination LIKE 'dest\_%' ORDER BY destination, topic, event_types NULLS FIRST;
SELECT outbox.resume_destination('dest_alice');
SELECT outbox.create_destination('dest_monitor', 'function', '{"function": "public.dest_noop_handler"}');
SELECT outbox.drop_destination('dest_monitor');
RESET ROLE;

-- A superuser may manage any destination; the owner stays, and the config is
-- checked for the owner: the superuser cannot give alice a handler she may not
-- execute (G10).
SELECT outbox.alter_destination('dest_alice', '{"batch_size": 7}');
SELECT outbox.alter_destination('dest_alice', '{"function": "public.dest_private_handler"}');
SELECT outbox.resume_destination('dest_alice');
SELECT name, config, paused, owner FROM outbox.destinations
 WHERE name IN ('dest_alice', 'dest_bob') ORDER BY name;

-- Drop removes a destination with its subscriptions.
SELECT id AS dest_fn_id FROM outbox.destination WHERE name = 'dest_fn' \gset
SELECT count(*) AS subscriptions_before_drop FROM outbox.subscription WHERE destination_id = :dest_fn_id;
SELECT outbox.drop_destination('dest_fn');
SELECT count(*) AS subscriptions_after_drop FROM outbox.subscription WHERE destination_id = :dest_fn_id;
SELECT outbox.drop_destination('dest_fn');
SELECT outbox.drop_destination(NULL);
SELECT destination, topic FROM outbox.subscriptions
 WHERE destination LIKE 'dest\_%' ORDER BY destination, topic;

-- Clean up.
SELECT outbox.drop_destination(name) FROM outbox.destinations
 WHERE name LIKE 'dest\_%' ORDER BY name;
SELECT count(*) AS left_over FROM outbox.destination WHERE name LIKE 'dest\_%';
DELETE FROM outbox.topic WHERE owner IN ('regress_dest_alice', 'regress_dest_bob');
DROP OWNED BY regress_dest_alice, regress_dest_bob, regress_dest_monitor;
DROP ROLE regress_dest_alice, regress_dest_bob, regress_dest_monitor;
DROP FUNCTION public.dest_noop_handler(outbox.events), public.dest_jsonb_handler(jsonb),
              public.dest_not_void(outbox.events), public.dest_private_handler(outbox.events);

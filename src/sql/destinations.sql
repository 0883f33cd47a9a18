
-- ---------------------------------------------------------------------------
-- Destinations and subscriptions (design: src/dispatch/destination.c).  The
-- functions are C, SECURITY INVOKER: EXECUTE decides who may call them, and
-- they let a role change only the destinations it has the privileges of the
-- owner of.  They write outbox.destination and outbox.subscription
-- (dispatch.sql) with pinned search_path and extension privileges.
-- ---------------------------------------------------------------------------

-- One subscription per destination, topic and set of event types (the
-- functions store event types sorted and without duplicates; NULL, every
-- type, is never an empty array, which subscribe() refuses).
CREATE UNIQUE INDEX subscription_unique_idx ON outbox.subscription
	(destination_id, topic, COALESCE(event_types, '{}'::text[]));

CREATE FUNCTION outbox.create_destination(
	name   text,
	kind   text,
	config jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_create_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.create_destination(text, text, jsonb) IS
	'Create a destination of a kind (function, notify, ...) owned by the current role; its handler runs with that role''s privileges and the current search_path (pg_temp last), or the config key search_path. Config keys: those of the kind plus max_attempts, backoff_base, backoff_max, batch_size, ordered, timeout, search_path.';

CREATE FUNCTION outbox.alter_destination(
	name   text,
	config jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_alter_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.alter_destination(text, jsonb) IS
	'Merge keys into a destination''s config (a key set to null is removed) and check the result as a whole; the key search_path replaces the handler''s search_path. Owner or superuser only.';

CREATE FUNCTION outbox.drop_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_drop_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.drop_destination(text) IS
	'Drop a destination with its subscriptions, retry queue and dead letters. Owner or superuser only.';

CREATE FUNCTION outbox.pause_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_pause_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.pause_destination(text) IS
	'Stop delivering to a destination; its events wait until it is resumed. Owner or superuser only.';

CREATE FUNCTION outbox.resume_destination(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_resume_destination'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.resume_destination(text) IS
	'Resume delivering to a paused destination, starting with the events that waited. Owner or superuser only.';

CREATE FUNCTION outbox.subscribe(
	destination text,
	topic       text   DEFAULT '*',
	event_types text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_subscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.subscribe(text, text, text[]) IS
	'Subscribe a destination to a topic (''*'': every topic) and event types (NULL: every type); it receives such events committed after this transaction. Returns the subscription id. Owner or superuser only.';

CREATE FUNCTION outbox.unsubscribe(subscription_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_unsubscribe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.unsubscribe(bigint) IS
	'Remove a subscription by id. Owner of its destination or superuser only.';

CREATE FUNCTION outbox.mask_config(config jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'outbox_saga_mask_config'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION outbox.mask_config(jsonb) IS
	'A config with its secrets replaced by "********": the value of every key or header whose name suggests a credential (auth, token, secret, password, key, signature, cookie, session, ...), and in URLs the user information, every query parameter''s value and the fragment. Used by the views outbox.destinations and saga.definitions.';

-- Rows: the destinations whose owner the current role has the privileges
-- of (every one for a superuser or a member of pg_read_all_settings).
-- security_barrier: a caller's own functions in WHERE never see other rows.
CREATE VIEW outbox.destinations WITH (security_barrier) AS
SELECT d.name,
       d.kind,
       outbox.mask_config(d.config) AS config,
       d.paused,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at,
       d.search_path
  FROM outbox.destination d
 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE');

COMMENT ON VIEW outbox.destinations IS
	'Destinations visible to the current role (its own, or all for superusers and pg_read_all_settings), secrets in config masked; search_path is the one its handler runs with.';

CREATE VIEW outbox.subscriptions WITH (security_barrier) AS
SELECT s.id,
       d.name AS destination,
       s.topic,
       s.event_types,
       s.created_at
  FROM outbox.subscription s
  JOIN outbox.destination d ON d.id = s.destination_id
 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE');

COMMENT ON VIEW outbox.subscriptions IS
	'Subscriptions of the destinations visible to the current role; topic ''*'' is every topic, event_types NULL every type.';

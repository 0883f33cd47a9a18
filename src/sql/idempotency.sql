
-- ---------------------------------------------------------------------------
-- Idempotency keys (design, locking and concurrency: src/idempotency.c).
-- ---------------------------------------------------------------------------

-- One row per (scope, key).  status is 'in_progress' from the claim until
-- outbox.idempotency_complete(), then 'completed'; from expires_at on the
-- row counts as absent and outbox.purge_idempotency_keys() may delete it.
-- claimed_by is the top-level transaction that made the current claim.
-- fillfactor 90 leaves room for the completing UPDATE to stay HOT.
CREATE TABLE outbox.idempotency_keys (
	scope        text        NOT NULL,
	key          text        NOT NULL,
	fingerprint  text,
	status       text        NOT NULL,
	response     jsonb,
	claimed_by   xid8        NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL,
	completed_at timestamptz,
	CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
	CONSTRAINT idempotency_keys_status_check
		CHECK (status IN ('in_progress', 'completed')),
	CONSTRAINT idempotency_keys_completed_at_check
		CHECK ((status = 'completed') = (completed_at IS NOT NULL))
) WITH (fillfactor = 90);

-- The purge deletes oldest expiry first.
CREATE INDEX idempotency_keys_expires_at_idx ON outbox.idempotency_keys (expires_at);

COMMENT ON TABLE outbox.idempotency_keys IS
	'Idempotency keys. Written only by outbox.idempotency_key(), outbox.idempotency_complete(), outbox.once() and outbox.purge_idempotency_keys().';

SELECT pg_catalog.pg_extension_config_dump('outbox.idempotency_keys', '');

-- The functions are SECURITY DEFINER so that a role needs EXECUTE on them,
-- never privileges on the table; their statements are fixed, take every
-- value as a parameter, and run with search_path pinned.

CREATE FUNCTION outbox.idempotency_key(
	scope       text,
	key         text,
	fingerprint text     DEFAULT NULL,
	ttl         interval DEFAULT '24 hours')
RETURNS TABLE (status text, response jsonb)
AS 'MODULE_PATHNAME', 'outbox_saga_idempotency_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER ROWS 1
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.idempotency_key(text, text, text, interval) IS
	'Claim an idempotency key for the current transaction. One row: status new (claimed: do the work, then call outbox.idempotency_complete), completed (response is the stored one), in_progress (another committed claim, younger than outbox_saga.idempotency_lock_timeout) or mismatch (the key was used with a different non-NULL fingerprint). Waits for a concurrent transaction holding the key. Expired keys count as absent.';

CREATE FUNCTION outbox.idempotency_complete(
	scope    text,
	key      text,
	response jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_idempotency_complete'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.idempotency_complete(text, text, jsonb) IS
	'Mark the key''s claim in progress completed and store the response (may be NULL) that replays will get. A key with no claim in progress (absent, expired or already completed) is an error (SQLSTATE 55000).';

CREATE FUNCTION outbox.once(
	scope text,
	key   text,
	ttl   interval DEFAULT '24 hours')
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_once'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.once(text, text, interval) IS
	'True the first time (scope, key) is seen within ttl, false afterwards: the inbox pattern for consumers. A concurrent duplicate waits for the first caller''s transaction: false if it commits, true if it rolls back.';

CREATE FUNCTION outbox.purge_idempotency_keys(max_rows integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_purge_idempotency_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox.purge_idempotency_keys(integer) IS
	'Delete at most max_rows expired idempotency keys, oldest first, skipping keys locked by open transactions; returns how many were deleted.';

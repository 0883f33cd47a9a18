-- Idempotency keys (SPEC 3.4; the rules are in src/idempotency.c): every
-- answer of outbox.idempotency_key(), completion, outbox.once(), expiry, the
-- lock-timeout takeover, the purge, and every bad input with its SQLSTATE,
-- which changes nothing (G11).  Races between sessions are in
-- test/specs/idempotency_*.spec.  Expiry and staleness are made
-- deterministic by moving a key's timestamps into the past in the table
-- (as superuser), never by sleeping.  Every scope used here starts with
-- 'idem-' and is deleted at the end.
\set VERBOSITY terse
SET timezone = 'UTC';
DELETE FROM outbox.idempotency_keys WHERE scope LIKE 'idem-%';

-- A view of the keys without times.
CREATE FUNCTION pg_temp.keys() RETURNS TABLE (scope text, key text, status text,
	fingerprint text, response jsonb, completed boolean, live boolean,
	ttl interval) LANGUAGE sql AS $$
	SELECT scope, key, status, fingerprint, response, completed_at IS NOT NULL,
	       expires_at > now(), expires_at - created_at
	  FROM outbox.idempotency_keys WHERE scope LIKE 'idem-%' ORDER BY scope, key
$$;

--
-- The life of a request: new, in_progress while it works, completed with
-- its response once it is done.
--
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:aaa');
-- The claim committed; a retry of the same request arrives meanwhile.
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:aaa');
-- The work was done outside the database; a later transaction completes.
SELECT outbox.idempotency_complete('idem-api', 'req-1', '{"status": 201, "id": 7}');
-- Replays get the stored response.
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:aaa');
-- ... also without a fingerprint: a NULL fingerprint matches any.
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1');
-- The same key with another fingerprint: mismatch, and no response leaks.
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:bbb');
-- A completed key keeps its ttl (default 24 hours, counted from the claim).
SELECT * FROM pg_temp.keys();

-- Scopes are independent.
SELECT * FROM outbox.idempotency_key('idem-other', 'req-1', 'sha256:bbb');

-- A claim stored without a fingerprint: a request with one is not a mismatch.
SELECT * FROM outbox.idempotency_key('idem-api', 'req-nofp', NULL);
SELECT * FROM outbox.idempotency_key('idem-api', 'req-nofp', 'sha256:ccc');
-- A NULL response is stored and replayed as NULL.
SELECT outbox.idempotency_complete('idem-api', 'req-nofp', NULL);
SELECT status, response IS NULL AS no_response
  FROM outbox.idempotency_key('idem-api', 'req-nofp', 'sha256:ccc');

-- The ttl argument sets the expiry.
SELECT status FROM outbox.idempotency_key('idem-api', 'req-ttl', ttl => '90 minutes');
SELECT key, ttl FROM pg_temp.keys() WHERE key = 'req-ttl';

--
-- One transaction: its own claim answers new again (or mismatch for another
-- fingerprint), completed once it completed it.
--
BEGIN;
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-1');
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-1');
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-2');
SELECT * FROM outbox.idempotency_key('idem-tx', 'k');
SELECT outbox.idempotency_complete('idem-tx', 'k', '"done"');
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-1');
COMMIT;
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-1');

-- A rolled-back claim is as if it never happened, even with another
-- fingerprint; so is a claim in a rolled-back savepoint, and a completion
-- that rolled back leaves the claim in progress.
BEGIN;
SELECT * FROM outbox.idempotency_key('idem-tx', 'rb', 'fp-1');
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM pg_temp.keys() WHERE key = 'rb';
BEGIN;
SAVEPOINT sp;
SELECT * FROM outbox.idempotency_key('idem-tx', 'rb', 'fp-1');
ROLLBACK TO SAVEPOINT sp;
SELECT * FROM outbox.idempotency_key('idem-tx', 'rb', 'fp-2');
-- A claim made in a released savepoint is still this transaction's own.
SAVEPOINT sp2;
SELECT * FROM outbox.idempotency_key('idem-tx', 'rb2', 'fp-1');
RELEASE SAVEPOINT sp2;
SELECT * FROM outbox.idempotency_key('idem-tx', 'rb2', 'fp-1');
COMMIT;
BEGIN;
SELECT outbox.idempotency_complete('idem-tx', 'rb', '"never"');
ROLLBACK;
-- A key is completed once, also within one transaction.
BEGIN;
SELECT status FROM outbox.idempotency_key('idem-tx', 'twice');
SELECT outbox.idempotency_complete('idem-tx', 'twice', '1');
SELECT outbox.idempotency_complete('idem-tx', 'twice', '2');
ROLLBACK;
-- A key whose claim rolled back cannot be completed, nor can the claim of
-- idem-tx/rb be completed through another scope.
SELECT outbox.idempotency_complete('idem-tx', 'twice', '1');
SELECT outbox.idempotency_complete('idem-other', 'rb', '1');
SELECT key, status, fingerprint, response FROM pg_temp.keys() WHERE scope = 'idem-tx';

--
-- The lock timeout: an uncompleted claim older than
-- outbox_saga.idempotency_lock_timeout (default 300 s) is taken over.
--
SHOW outbox_saga.idempotency_lock_timeout;
SELECT status FROM outbox.idempotency_key('idem-lock', 'k', 'fp-1');
UPDATE outbox.idempotency_keys SET created_at = created_at - interval '10 minutes'
 WHERE scope = 'idem-lock';
-- With a longer timeout it is still in progress ...
SET outbox_saga.idempotency_lock_timeout = '1h';
SELECT * FROM outbox.idempotency_key('idem-lock', 'k', 'fp-1');
RESET outbox_saga.idempotency_lock_timeout;
-- ... a request with another fingerprint is a mismatch, not a takeover ...
SELECT * FROM outbox.idempotency_key('idem-lock', 'k', 'fp-2');
-- ... and the same request takes the claim over: a fresh claim.
SELECT * FROM outbox.idempotency_key('idem-lock', 'k', 'fp-1');
SELECT * FROM outbox.idempotency_key('idem-lock', 'k', 'fp-1');
SELECT key, status, live, ttl FROM pg_temp.keys() WHERE scope = 'idem-lock';
-- A claim without fingerprint is taken over by a request with one.
SELECT status FROM outbox.idempotency_key('idem-lock', 'nofp');
UPDATE outbox.idempotency_keys SET created_at = created_at - interval '10 minutes'
 WHERE scope = 'idem-lock' AND key = 'nofp';
SELECT * FROM outbox.idempotency_key('idem-lock', 'nofp', 'fp-3');
SELECT key, fingerprint FROM pg_temp.keys() WHERE key = 'nofp';
-- Completed keys never time out; only their ttl ends them.
UPDATE outbox.idempotency_keys SET created_at = created_at - interval '10 minutes',
       completed_at = completed_at - interval '10 minutes'
 WHERE scope = 'idem-api' AND key = 'req-1';
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:aaa');
-- A stale claim can still be completed by its late request.
UPDATE outbox.idempotency_keys SET created_at = created_at - interval '10 minutes'
 WHERE scope = 'idem-lock' AND key = 'k';
SELECT outbox.idempotency_complete('idem-lock', 'k', '"late"');
SELECT * FROM outbox.idempotency_key('idem-lock', 'k', 'fp-1');

--
-- Expiry: past expires_at a key counts as absent, whatever it holds; the
-- next request takes it over with its own fingerprint, ttl and no response.
--
UPDATE outbox.idempotency_keys
   SET created_at = created_at - interval '2 days', expires_at = expires_at - interval '2 days',
       completed_at = completed_at - interval '2 days'
 WHERE scope = 'idem-api' AND key = 'req-1';
SELECT key, status, live FROM pg_temp.keys() WHERE scope = 'idem-api' AND key = 'req-1';
SELECT * FROM outbox.idempotency_key('idem-api', 'req-1', 'sha256:new', '1 hour');
SELECT key, status, fingerprint, response, completed, live, ttl
  FROM pg_temp.keys() WHERE scope = 'idem-api' AND key = 'req-1';
-- An expired claim can no longer be completed.
UPDATE outbox.idempotency_keys SET expires_at = now() - interval '1 second'
 WHERE scope = 'idem-api' AND key = 'req-1';
\set VERBOSITY default
SELECT outbox.idempotency_complete('idem-api', 'req-1', '{}');
-- Nor can a key that was never claimed, or one already completed.
SELECT outbox.idempotency_complete('idem-api', 'no-such-request', '{}');
SELECT outbox.idempotency_complete('idem-api', 'req-nofp', '{}');
\set VERBOSITY terse
-- The failed completion changed nothing.
SELECT key, status, response, live FROM pg_temp.keys()
 WHERE scope = 'idem-api' AND key IN ('req-1', 'req-nofp');

--
-- outbox.once(): true the first time within the ttl.
--
SELECT outbox.once('idem-inbox', 'evt-1') AS first,
       outbox.once('idem-inbox', 'evt-1') AS second,
       outbox.once('idem-inbox', 'evt-2') AS other_key,
       outbox.once('idem-billing', 'evt-1') AS other_scope;
-- A consumer's transaction that rolls back leaves the message unseen.
BEGIN;
SELECT outbox.once('idem-inbox', 'evt-3') AS first;
SELECT outbox.once('idem-inbox', 'evt-3') AS duplicate_in_same_transaction;
ROLLBACK;
SELECT outbox.once('idem-inbox', 'evt-3') AS first_again;
-- once() is idempotency_key(scope, key, NULL, ttl) plus, on new, completion.
SELECT key, status, response, completed, ttl FROM pg_temp.keys()
 WHERE scope = 'idem-inbox';
SELECT * FROM outbox.idempotency_key('idem-inbox', 'evt-1', 'any-fingerprint');
SELECT outbox.once('idem-api', 'req-ttl') AS while_in_progress;
BEGIN;
SELECT status FROM outbox.idempotency_key('idem-inbox', 'evt-4');
SELECT outbox.once('idem-inbox', 'evt-4') AS own_claim, outbox.once('idem-inbox', 'evt-4') AS again;
COMMIT;
-- After the ttl, the same message counts as new.
SELECT outbox.once('idem-inbox', 'evt-5', '1 minute') AS first;
UPDATE outbox.idempotency_keys SET expires_at = now() - interval '1 second'
 WHERE scope = 'idem-inbox' AND key = 'evt-5';
SELECT outbox.once('idem-inbox', 'evt-5', '1 minute') AS after_ttl;

--
-- The purge: at most max_rows expired keys, and never a live one.
--
SELECT outbox.purge_idempotency_keys() >= 0 AS purged_leftovers;
SELECT count(*) AS keys FROM pg_temp.keys();
UPDATE outbox.idempotency_keys SET expires_at = now() - interval '1 second'
 WHERE scope = 'idem-inbox';
SELECT outbox.purge_idempotency_keys(2) AS purged;
SELECT outbox.purge_idempotency_keys(2) AS purged;
SELECT outbox.purge_idempotency_keys() AS purged;
SELECT outbox.purge_idempotency_keys() AS purged;
SELECT count(*) FILTER (WHERE scope = 'idem-inbox') AS inbox_keys,
       count(*) FILTER (WHERE NOT live) AS expired_keys, count(*) AS keys
  FROM pg_temp.keys();
-- The purged keys are new again.
SELECT outbox.once('idem-inbox', 'evt-1') AS first;

--
-- Bad input: an error with an SQLSTATE, and nothing written.
--
SELECT count(*) AS before, coalesce(sum(hashtext(k::text)), 0) AS hash
  FROM outbox.idempotency_keys k \gset
\set VERBOSITY default
SELECT * FROM outbox.idempotency_key(NULL, 'k');
SELECT * FROM outbox.idempotency_key('idem-bad', NULL);
SELECT * FROM outbox.idempotency_key('', 'k');
SELECT * FROM outbox.idempotency_key('idem-bad', '');
SELECT * FROM outbox.idempotency_key(repeat('s', 256), 'k');
SELECT * FROM outbox.idempotency_key(repeat('é', 128), 'k');
SELECT * FROM outbox.idempotency_key('idem-bad', repeat('k', 513));
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', repeat('f', 513));
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', '');
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', NULL);
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', '0');
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', '-1 hour');
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', '1 month -40 days');
SELECT * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', '1000000 years');
-- An infinite ttl is refused: by the interval input up to 16, by the
-- function itself from 17 (which has infinite intervals).
DO $$
BEGIN
	PERFORM * FROM outbox.idempotency_key('idem-bad', 'k', 'fp', 'infinity');
	RAISE EXCEPTION 'an infinite ttl was accepted';
EXCEPTION WHEN invalid_datetime_format OR invalid_parameter_value THEN
	NULL;
END $$;
SELECT outbox.once(NULL, 'k');
SELECT outbox.once('idem-bad', NULL);
SELECT outbox.once('', 'k');
SELECT outbox.once(repeat('s', 256), 'k');
SELECT outbox.once('idem-bad', repeat('k', 513));
SELECT outbox.once('idem-bad', 'k', NULL);
SELECT outbox.once('idem-bad', 'k', '0 seconds');
SELECT outbox.once('idem-bad', 'k', '-1 day');
SELECT outbox.idempotency_complete(NULL, 'k', '{}');
SELECT outbox.idempotency_complete('idem-bad', NULL, '{}');
SELECT outbox.idempotency_complete('idem-bad', '', '{}');
SELECT outbox.idempotency_complete('', 'k', '{}');
SELECT outbox.idempotency_complete(repeat('s', 256), 'k', '{}');
SELECT outbox.idempotency_complete('idem-bad', repeat('k', 513), '{}');
SELECT outbox.idempotency_complete('idem-bad', 'k', '{bad json');
SELECT outbox.purge_idempotency_keys(NULL);
SELECT outbox.purge_idempotency_keys(0);
SELECT outbox.purge_idempotency_keys(-5);
-- A claim is a write: a read-only transaction (or a hot standby) cannot
-- make one, not even to learn that a key was completed.
BEGIN READ ONLY;
SELECT outbox.once('idem-inbox', 'evt-1');
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM outbox.idempotency_key('idem-tx', 'k', 'fp-1');
ROLLBACK;
BEGIN READ ONLY;
SELECT outbox.idempotency_complete('idem-tx', 'rb', '{}');
ROLLBACK;
BEGIN READ ONLY;
SELECT outbox.purge_idempotency_keys();
ROLLBACK;
-- Limits are inclusive.
SELECT status FROM outbox.idempotency_key(repeat('s', 255), repeat('k', 512), repeat('f', 512));
DELETE FROM outbox.idempotency_keys WHERE scope = repeat('s', 255);
-- An error inside a transaction takes the transaction's claims with it.
BEGIN;
SELECT status FROM outbox.idempotency_key('idem-bad', 'doomed');
SELECT outbox.once('idem-bad', '');
SELECT status FROM outbox.idempotency_key('idem-bad', 'after-error');
COMMIT;
\set VERBOSITY terse
SELECT count(*) - :before AS written_by_bad_calls,
       coalesce(sum(hashtext(k::text)), 0) = :hash AS unchanged
  FROM outbox.idempotency_keys k;

-- The SQLSTATE of each kind of bad input.
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SELECT call, pg_temp.sqlstate_of('SELECT outbox.' || call) AS sqlstate
  FROM (VALUES ($$idempotency_key(NULL, 'k')$$),
               ($$idempotency_key('s', NULL)$$),
               ($$idempotency_key('', 'k')$$),
               ($$idempotency_key(repeat('s', 256), 'k')$$),
               ($$idempotency_key('s', repeat('k', 513))$$),
               ($$idempotency_key('s', 'k', repeat('f', 513))$$),
               ($$idempotency_key('s', 'k', '')$$),
               ($$idempotency_key('s', 'k', NULL, NULL)$$),
               ($$idempotency_key('s', 'k', NULL, '-1 second')$$),
               ($$idempotency_key('s', 'k', NULL, '1000000 years')$$),
               ($$once('s', NULL)$$),
               ($$once('s', 'k', '0')$$),
               ($$idempotency_complete('s', NULL, '{}')$$),
               ($$idempotency_complete('idem-bad', 'never-claimed', '{}')$$),
               ($$idempotency_complete('idem-api', 'req-nofp', '{}')$$),
               ($$purge_idempotency_keys(NULL)$$),
               ($$purge_idempotency_keys(0)$$)) v(call);

--
-- The catalog: every function documented, SECURITY DEFINER with a pinned
-- search_path, and nothing granted to PUBLIC.
--
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       p.proconfig, obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'outbox'::regnamespace
   AND p.proname IN ('idempotency_key', 'idempotency_complete', 'once',
                     'purge_idempotency_keys')
 ORDER BY p.proname;

-- Privileges: a role needs EXECUTE on the functions, never privileges on the
-- table, which it can neither read nor write.
CREATE ROLE regress_idem_app;
SET ROLE regress_idem_app;
SELECT outbox.once('idem-priv', 'm-1');
SELECT * FROM outbox.idempotency_key('idem-priv', 'r-1');
SELECT outbox.idempotency_complete('idem-priv', 'r-1', '{}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION outbox.idempotency_key(text, text, text, interval),
	outbox.idempotency_complete(text, text, jsonb), outbox.once(text, text, interval)
	TO regress_idem_app;
SET ROLE regress_idem_app;
SELECT outbox.once('idem-priv', 'm-1') AS first;
SELECT status FROM outbox.idempotency_key('idem-priv', 'r-1', 'fp');
SELECT outbox.idempotency_complete('idem-priv', 'r-1', '{"ok": true}');
SELECT * FROM outbox.idempotency_key('idem-priv', 'r-1', 'fp');
SELECT count(*) FROM outbox.idempotency_keys;
UPDATE outbox.idempotency_keys SET response = '"forged"';
SELECT outbox.purge_idempotency_keys();
RESET ROLE;
SELECT key, status, response FROM pg_temp.keys() WHERE scope = 'idem-priv';
DROP OWNED BY regress_idem_app;
DROP ROLE regress_idem_app;

-- Clean up.
DELETE FROM outbox.idempotency_keys WHERE scope LIKE 'idem-%';

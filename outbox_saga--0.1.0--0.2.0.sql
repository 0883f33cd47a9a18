-- outbox_saga upgrade script 0.1.0 -> 0.2.0.
--
-- Every SQL change made after release 0.1.0 goes here as well as into the
-- src/sql/ parts that the full 0.2.0 script is assembled from, so that
-- ALTER EXTENSION outbox_saga UPDATE brings a 0.1.0 database to exactly
-- what CREATE EXTENSION makes.  Same conventions as the full script: every
-- object schema-qualified, search_path pinned in every function.

\echo Use "ALTER EXTENSION outbox_saga UPDATE TO '0.2.0'" to load this file. \quit

-- issue 11 items 1, 3, 5: a pool of dispatchers per database; outbox.workers
-- shows each worker, what it does, the destination it serves and what it
-- waits on.
DROP VIEW outbox.workers;
DROP FUNCTION outbox.worker_status();
CREATE FUNCTION outbox.worker_status(
	OUT database text, OUT pid integer, OUT state text,
	OUT started_at timestamptz, OUT last_activity timestamptz, OUT kind text,
	OUT worker integer, OUT doing text, OUT doing_since timestamptz,
	OUT destination_id integer, OUT wait_event text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_saga_worker_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.worker_status() IS
	'The launcher and the running dispatchers (backs the view outbox.workers).';
REVOKE ALL ON FUNCTION outbox.worker_status() FROM PUBLIC;

CREATE VIEW outbox.workers AS
	SELECT w.database, w.pid, w.state, w.started_at, w.last_activity, w.kind,
	       w.worker, w.doing, w.doing_since, d.name AS destination, w.wait_event
	  FROM outbox.worker_status() w
	  LEFT JOIN outbox.destination d
	    ON d.id = w.destination_id AND w.database = pg_catalog.current_database();
COMMENT ON VIEW outbox.workers IS
	'The outbox_saga background workers: the launcher and the dispatchers of every served database (outbox_saga.workers_per_database each), what each does, the destination it serves now (named for the current database) and what it waits on.';

-- issue 15 item 2: outbox.wait_delivered() waits until every committed event
-- is delivered or dead-lettered (wait_idle() only until nothing is ready).
CREATE FUNCTION outbox.wait_delivered(timeout interval DEFAULT '10 seconds',
	destination text DEFAULT NULL) RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_wait_delivered' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.wait_delivered(interval, text) IS
	'Wait until every committed event owed to the destination (NULL: every destination that is not paused) is delivered or dead-lettered, retries, backoffs and deliver_after included; false on timeout.';
REVOKE ALL ON FUNCTION outbox.wait_delivered(interval, text) FROM PUBLIC;

-- issue 12 items 5, 6, 8, 9: privileges (monitoring grants, stats rows of
-- one's own destinations, saga starters, saga.drop_definition)
ALTER TABLE saga.instance ADD COLUMN started_by oid;

CREATE FUNCTION saga.drop_definition(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_drop_definition'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION saga.drop_definition(text) IS
	'Delete a saga definition (every version), its finished sagas and its name, which can then be defined anew by anyone allowed to call saga.define. Only the owner of the name, a member of it or a superuser (42501); refused while a saga of it is running, compensating or failed (55006).';
REVOKE ALL ON FUNCTION saga.drop_definition(text) FROM PUBLIC;

CREATE OR REPLACE VIEW outbox.stats WITH (security_barrier) AS
	SELECT d.name AS destination,
	       d.kind,
	       d.paused,
	       GREATEST(seq.last_value - d.done_id, 0) + COALESCE(r.total, 0) AS pending,
	       CASE WHEN d.paused OR d.retry_at > pg_catalog.now() THEN 0
	            ELSE GREATEST(seq.last_value - d.done_id, 0) + COALESCE(r.due, 0)
	       END AS ready,
	       CASE WHEN d.paused THEN NULL
	            ELSE pg_catalog.now() - LEAST(r.oldest_due, head.created_at)
	       END AS oldest_ready_age,
	       COALESCE(r.retrying, 0) AS retrying,
	       COALESCE(dl.dead, 0) AS dead,
	       d.delivered_total,
	       d.failed_attempts_total,
	       d.last_delivered_at,
	       COALESCE(outbox.dispatch_status(), d.last_error) AS last_error,
	       d.last_error_at
	  FROM outbox.destination d
	 CROSS JOIN (SELECT COALESCE(max(id), 0) AS last_value FROM outbox.events) seq
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS total,
	              count(*) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS due,
	              count(*) FILTER (WHERE rr.attempts > 0) AS retrying,
	              min(rr.created_at) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS oldest_due
	         FROM outbox.delivery_retry rr WHERE rr.destination_id = d.id) r ON true
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS dead FROM outbox.dead_letter x WHERE x.destination_id = d.id) dl ON true
	  LEFT JOIN LATERAL (
	       SELECT e.created_at FROM outbox.events e
	        WHERE e.id > d.done_id ORDER BY e.id LIMIT 1) head ON true
	 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
	    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW outbox.stats IS
	'One row per destination the current role owns (every one for superusers and pg_monitor / pg_read_all_stats): backlog, retries, dead letters, counters and the last error.';

GRANT EXECUTE ON FUNCTION outbox.dispatch_status(), outbox.worker_status() TO PUBLIC;
GRANT SELECT ON outbox.stats, outbox.workers TO pg_monitor;

COMMENT ON FUNCTION outbox.mask_config(jsonb) IS
	'A config with its secrets replaced by "********": the value of every key or header whose name suggests a credential (auth, token, secret, password, key, signature, cookie, session, ...), and in URLs the user information, every query parameter''s value and the fragment. Used by the views outbox.destinations and saga.definitions.';

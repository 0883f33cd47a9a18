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

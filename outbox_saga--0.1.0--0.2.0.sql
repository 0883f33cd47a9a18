-- outbox_saga upgrade script 0.1.0 -> 0.2.0.
--
-- Every SQL change made after release 0.1.0 goes here as well as into the
-- src/sql/ parts that the full 0.2.0 script is assembled from, so that
-- ALTER EXTENSION outbox_saga UPDATE brings a 0.1.0 database to exactly
-- what CREATE EXTENSION makes.  Same conventions as the full script: every
-- object schema-qualified, search_path pinned in every function.
--
-- test/t/050_upgrade.pl updates a filled 0.1.0 database and compares every
-- member object of the extension (definitions, columns, constraints,
-- indexes, triggers, sequences, ACLs, initial privileges, comments, what
-- pg_dump keeps) with a fresh CREATE EXTENSION: run it after every change
-- here.  What privileges.sql does for the full script must be done here for
-- each new object: REVOKE ALL ... FROM PUBLIC on new tables, views,
-- functions and outbox sequences (a view that is dropped and created again
-- included), and COMMENT ON what is new.

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

-- ---------------------------------------------------------------------------
-- issue 13 items 2 and 3: dump and restore keep what users configured and
-- are owed; a restored copy waits paused (src/sql/lifecycle.sql, README
-- "Backups and upgrades").
-- ---------------------------------------------------------------------------

-- Ids from member sequences (which pg_dump keeps), not identities (which it
-- does not): each new sequence continues where the identity was.
DO $$
DECLARE
	t record;
	v bigint;
BEGIN
	FOR t IN SELECT * FROM (VALUES ('outbox', 'destination', 'integer'),
	                               ('outbox', 'subscription', 'bigint'),
	                               ('saga', 'definition', 'integer')) x(nsp, tbl, typ)
	LOOP
		EXECUTE format('SELECT CASE WHEN is_called THEN last_value END FROM %I.%I',
		               t.nsp, t.tbl || '_id_seq') INTO v;
		EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN id DROP IDENTITY', t.nsp, t.tbl);
		EXECUTE format('CREATE SEQUENCE %I.%I AS %s', t.nsp, t.tbl || '_id_seq', t.typ);
		EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN id SET DEFAULT pg_catalog.nextval(%L)',
		               t.nsp, t.tbl, t.nsp || '.' || t.tbl || '_id_seq');
		EXECUTE format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.id',
		               t.nsp, t.tbl || '_id_seq', t.nsp, t.tbl);
		IF v IS NOT NULL THEN
			PERFORM pg_catalog.setval(format('%I.%I', t.nsp, t.tbl || '_id_seq'), v);
		END IF;
	END LOOP;
END $$;
REVOKE ALL ON SEQUENCE outbox.destination_id_seq, outbox.subscription_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('saga.definition_id_seq', '');

-- Owners by role name in a dump: regrole (the views that read them first).
DROP VIEW outbox.destinations;
DROP VIEW outbox.subscriptions;
DROP VIEW saga.definitions;
ALTER TABLE outbox.destination ALTER COLUMN owner TYPE regrole;
ALTER TABLE saga.definition_name ALTER COLUMN owner TYPE regrole;
ALTER TABLE saga.definition ALTER COLUMN owner TYPE regrole;
CREATE VIEW outbox.destinations WITH (security_barrier) AS
SELECT d.name,
       d.kind,
       outbox.mask_config(d.config) AS config,
       d.paused,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at
  FROM outbox.destination d
 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE');

COMMENT ON VIEW outbox.destinations IS
	'Destinations visible to the current role (its own, or all for superusers and pg_read_all_settings), secrets in config masked.';

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

CREATE VIEW saga.definitions AS
SELECT d.name,
       d.version,
       d.version = n.latest_version AS latest,
       outbox.mask_config(d.steps) AS steps,
       d.options,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at
  FROM saga.definition d
  JOIN saga.definition_name n ON n.name = d.name;

COMMENT ON VIEW saga.definitions IS
	'Every version of every saga definition, normalized: each step with all its keys, durations in seconds; credentials in http calls (Authorization and similar headers, user:password in URLs) masked as in outbox.destinations.';

REVOKE ALL ON outbox.destinations, outbox.subscriptions, saga.definitions FROM PUBLIC;

-- Restored destinations and sagas.
ALTER TABLE outbox.destination ADD COLUMN restored_at timestamptz;
CREATE TABLE saga.restored_hold (
	saga_id      uuid        PRIMARY KEY,
	deadline     timestamptz,
	restored_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW saga.instances AS
SELECT i.id,
       i.definition,
       i.version,
       i.status,
       i.input,
       i.results,
       i.current_step,
       COALESCE(i.compensation_error, i.error) AS error,
       i.created_at,
       i.updated_at,
       i.deadline,
       i.idempotency_key,
       EXISTS (SELECT 1 FROM saga.restored_hold h WHERE h.saga_id = i.id) AS restored
  FROM saga.instance i;

COMMENT ON VIEW saga.instances IS
	'Sagas: status (running, completed, compensating, compensated, failed, cancelled), results by step name, the step being run or compensated, and why the saga compensates or failed. restored: restored from a dump of another database, held until saga.resume().';


-- ---------------------------------------------------------------------------
-- A database's life: pg_dump / pg_restore and copies (SPEC G13, README
-- "Backups and upgrades").
--
-- WHAT pg_dump KEEPS (pg_extension_config_dump): everything a user
-- configured or is owed - destinations (owner by role name, secrets, paused
-- state), subscriptions, the retry queue, dead letters, idempotency keys
-- that have not expired, saga definitions, instances, step runs, and the
-- sequences of all of them - and the events of the log that a destination
-- may still owe, with the ticks the destinations' positions refer to.
-- Never kept: generations, other ticks, the identity of this database.
--
-- WHAT A RESTORE DOES.  Positions are snapshots of the dumped cluster's
-- transaction ids; in another cluster (or after transaction ids moved on)
-- they mean nothing.  Restored rows are translated as they arrive: row
-- triggers that fire only when the top-level statement is a COPY or INSERT
-- into a table of the extension (what pg_restore and a plain dump run;
-- the extension's own writers run no such statement) move the restored
-- log, ticks and subscription snapshots aside into outbox.restored_*
-- tables, give each restored destination a position of this database (the
-- latest tick) and pause it (restored_at, last_error), and hold restored
-- sagas that were in flight (saga.restored_hold: their due times and
-- deadline set aside).  Nothing restored talks to the outside by itself:
-- teams clone production into staging every day.
--   outbox.resume_destination() of a restored destination computes, from
-- the dumped position, ticks and subscription snapshots, every restored
-- event it still owes (subscribed, not consumed before the dump, not
-- already queued or dead) and queues them in outbox.delivery_retry, ahead
-- of the events written since the restore (same aggregate: in id order);
-- events it had consumed before the dump are not delivered again.
-- saga.resume() releases the held sagas.  drop_destination() drops what
-- was set aside for it.
--
-- COPIES WITHOUT A DUMP (CREATE DATABASE ... TEMPLATE, pg_upgrade, a
-- cluster with a new system identifier): positions stay valid (the
-- transaction ids came along), but the copy must not talk to production
-- by itself either.  outbox.local_identity (never dumped) records the
-- system identifier and database OID; the dispatcher checks it once when
-- it starts (outbox.check_identity(), called by src/dispatch/restore.c)
-- and on a mismatch pauses every destination and holds every saga in
-- flight, the same way, with a LOG line.
--
-- The restored_* tables are not dumped: resume (or drop) the restored
-- destinations of a restored copy before dumping it in turn.
--
-- INVARIANTS: the restored_* tables are empty except between a restore and
-- the resume (or drop) of its last restored destination; a destination
-- with restored_at set is paused; every statement here runs as the
-- extension's owner with search_path pinned.
-- ---------------------------------------------------------------------------

-- The database this extension's positions belong to.  Never dumped.
CREATE TABLE outbox.local_identity (
	system_identifier  bigint      NOT NULL,
	database_oid       oid         NOT NULL,
	recorded_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO outbox.local_identity (system_identifier, database_oid)
SELECT s.system_identifier, d.oid
  FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
 WHERE d.datname = pg_catalog.current_database();

-- What a restore set aside, until the restored destinations are resumed.
CREATE TABLE outbox.restored_position (
	destination_id  integer     PRIMARY KEY
	                REFERENCES outbox.destination ON DELETE CASCADE
	                DEFERRABLE INITIALLY DEFERRED,
	tick_from       bigint      NOT NULL,
	tick_to         bigint,
	last_id         bigint      NOT NULL
);
CREATE TABLE outbox.restored_subscription (
	subscription_id  bigint      PRIMARY KEY
	                 REFERENCES outbox.subscription ON DELETE CASCADE
	                 DEFERRABLE INITIALLY DEFERRED,
	since            pg_snapshot NOT NULL
);
CREATE TABLE outbox.restored_tick (
	id        bigint      PRIMARY KEY,
	snapshot  pg_snapshot NOT NULL
);
CREATE TABLE outbox.restored_event (LIKE outbox.events);
CREATE INDEX restored_event_id_idx ON outbox.restored_event (id);

COMMENT ON TABLE outbox.local_identity IS
	'The system identifier and database OID the dispatch positions belong to; not dumped.';
COMMENT ON TABLE outbox.restored_event IS
	'Events restored from a dump, set aside until the restored destinations that owe them are resumed.';

-- Whether the statement being run is a client's COPY or INSERT into a
-- table of the extension: a restore (the extension writes its tables only
-- from its functions): the client's statement matches, ignoring case,
-- ^\s*(copy|insert\s+into)\s+(only\s+)?"?(outbox|saga)"?\.  In C
-- (dispatch/restore.c): the triggers' WHEN clauses are prepared at every
-- INSERT, and a SQL function was planned there every time.
CREATE FUNCTION outbox.restoring() RETURNS boolean
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'outbox_restoring';
COMMENT ON FUNCTION outbox.restoring() IS
	'Internal: true while a client restores rows into the extension''s tables (COPY or INSERT, as pg_restore does).';

-- outbox.events (every partition): a restored event goes aside.
CREATE FUNCTION outbox.restore_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO outbox.restored_event VALUES (NEW.*);
	RETURN NULL;
END $$;
CREATE TRIGGER restore_event BEFORE INSERT ON outbox.events
	FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION outbox.restore_event();
COMMENT ON FUNCTION outbox.restore_event() IS
	'Internal trigger: sets a restored event aside in outbox.restored_event (see README, Backups and upgrades).';

-- outbox.tick: a restored tick goes aside.
CREATE FUNCTION outbox.restore_tick() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO outbox.restored_tick VALUES (NEW.id, NEW.snapshot)
	    ON CONFLICT (id) DO NOTHING;
	RETURN NULL;
END $$;
CREATE TRIGGER restore_tick BEFORE INSERT ON outbox.tick
	FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION outbox.restore_tick();
COMMENT ON FUNCTION outbox.restore_tick() IS
	'Internal trigger: sets a restored tick aside in outbox.restored_tick.';

-- outbox.destination: a restored destination keeps its dumped position
-- aside, starts from the latest tick of this database, and is paused.
CREATE FUNCTION outbox.restore_destination() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	latest bigint;
BEGIN
	-- As create_destination: housekeeping cannot prune the tick read here.
	LOCK TABLE outbox.tick IN ROW EXCLUSIVE MODE;
	SELECT max(id) INTO latest FROM outbox.tick;
	IF latest IS NULL THEN
		INSERT INTO outbox.tick (id, snapshot) VALUES (0, pg_current_snapshot());
		latest := 0;
	END IF;
	-- A window read in commit order (last_txid set) counts as not begun:
	-- the commit times of the dumped transactions are not this server's,
	-- so the window is owed again in full (at least once).
	INSERT INTO outbox.restored_position (destination_id, tick_from, tick_to, last_id)
	VALUES (NEW.id, NEW.tick_from, NEW.tick_to,
	        CASE WHEN NEW.last_txid IS NULL THEN NEW.last_id ELSE 0 END)
	ON CONFLICT (destination_id) DO NOTHING;
	NEW.tick_from := latest;
	NEW.tick_to := NULL;
	NEW.last_id := 0;
	NEW.last_txid := NULL;
	NEW.consecutive_failures := 0;
	NEW.retry_at := NULL;
	NEW.paused := true;
	NEW.restored_at := now();
	NEW.last_error := 'restored from a dump: paused until outbox.resume_destination() (or drop_destination())';
	NEW.last_error_at := now();
	RAISE LOG 'outbox_saga: destination "%" was restored from a dump of another database; it is paused until outbox.resume_destination(%) is called',
		NEW.name, quote_literal(NEW.name);
	RETURN NEW;
END $$;
CREATE TRIGGER restore_destination BEFORE INSERT ON outbox.destination
	FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION outbox.restore_destination();
COMMENT ON FUNCTION outbox.restore_destination() IS
	'Internal trigger: a restored destination gets a position of this database and waits paused until resumed.';

-- outbox.subscription: a restored subscription keeps its dumped snapshot
-- aside and covers, in this database, what commits from now on.
CREATE FUNCTION outbox.restore_subscription() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO outbox.restored_subscription (subscription_id, since)
	VALUES (NEW.id, NEW.since) ON CONFLICT (subscription_id) DO NOTHING;
	NEW.since := pg_current_snapshot();
	RETURN NEW;
END $$;
CREATE TRIGGER restore_subscription BEFORE INSERT ON outbox.subscription
	FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION outbox.restore_subscription();
COMMENT ON FUNCTION outbox.restore_subscription() IS
	'Internal trigger: a restored subscription keeps its dumped snapshot aside and covers what commits from now on.';

-- saga.instance: a restored saga in flight is held (its deadline aside).
CREATE FUNCTION saga.restore_instance() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO saga.restored_hold AS h (saga_id, deadline) VALUES (NEW.id, NEW.deadline)
	    ON CONFLICT (saga_id) DO UPDATE SET deadline = COALESCE(h.deadline, EXCLUDED.deadline);
	NEW.deadline := NULL;
	RAISE LOG 'outbox_saga: saga % was restored from a dump of another database; it is held until saga.resume()', NEW.id;
	RETURN NEW;
END $$;
CREATE TRIGGER restore_instance BEFORE INSERT ON saga.instance
	FOR EACH ROW WHEN (NEW.status IN ('running', 'compensating') AND pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION saga.restore_instance();
COMMENT ON FUNCTION saga.restore_instance() IS
	'Internal trigger: a restored saga in flight is held until saga.resume().';

-- saga.step_run: a restored run that was due, under way or waiting is held
-- (an attempt under way at dump time runs again on resume: at least once).
CREATE FUNCTION saga.restore_step_run() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	INSERT INTO saga.restored_hold (saga_id) VALUES (NEW.saga_id)
	    ON CONFLICT (saga_id) DO NOTHING;
	IF NEW.status = 'waiting' THEN
		NEW.timeout_at := 'infinity';
	ELSE
		NEW.status := 'pending';
		NEW.next_attempt_at := 'infinity';
		NEW.timeout_at := NULL;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER restore_step_run BEFORE INSERT ON saga.step_run
	FOR EACH ROW WHEN (NEW.status IN ('pending', 'running', 'waiting') AND pg_catalog.pg_trigger_depth() = 0 AND outbox.restoring())
	EXECUTE FUNCTION saga.restore_step_run();
COMMENT ON FUNCTION saga.restore_step_run() IS
	'Internal trigger: a restored step run that was due, under way or waiting is held until saga.resume().';

-- outbox.destination, when a restored destination is resumed: queue what
-- it still owes of the restored log, then forget what was set aside.
CREATE FUNCTION outbox.resume_restored() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	owed bigint;
BEGIN
	INSERT INTO outbox.delivery_retry AS r (destination_id, id, event_id, topic, aggregate_id,
	       event_type, payload, headers, created_at, deliver_after, txid, attempts, next_attempt_at)
	SELECT NEW.id, e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload,
	       e.headers, e.created_at, e.deliver_after, e.txid, 0,
	       GREATEST(now(), COALESCE(e.deliver_after, now()))
	  FROM outbox.restored_position p
	  LEFT JOIN outbox.restored_tick tf ON tf.id = p.tick_from
	  LEFT JOIN outbox.restored_tick tt ON tt.id = p.tick_to
	  JOIN outbox.restored_event e ON true
	 WHERE p.destination_id = NEW.id
	   -- subscribed before the dump
	   AND EXISTS (SELECT 1 FROM outbox.subscription s
	                 JOIN outbox.restored_subscription rs ON rs.subscription_id = s.id
	                WHERE s.destination_id = NEW.id
	                  AND (s.topic = '*' OR s.topic = e.topic)
	                  AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
	                  AND NOT pg_visible_in_snapshot(e.txid, rs.since))
	   -- not consumed before the dump (a position whose tick is missing
	   -- consumed nothing: at least once)
	   AND NOT COALESCE(pg_visible_in_snapshot(e.txid, tf.snapshot), false)
	   AND NOT COALESCE(pg_visible_in_snapshot(e.txid, tt.snapshot) AND e.id <= p.last_id, false)
	   AND NOT EXISTS (SELECT 1 FROM outbox.dead_letter x
	                    WHERE x.destination_id = NEW.id AND x.id = e.id)
	ON CONFLICT (destination_id, id) DO NOTHING;
	GET DIAGNOSTICS owed = ROW_COUNT;

	-- New events must sort after the restored ones (G4).
	PERFORM setval('outbox.events_id_seq', m)
	   FROM (SELECT max(id) AS m FROM outbox.restored_event) x, outbox.events_id_seq s
	  WHERE x.m > s.last_value;

	DELETE FROM outbox.restored_position WHERE destination_id = NEW.id;
	DELETE FROM outbox.restored_subscription rs USING outbox.subscription s
	 WHERE s.id = rs.subscription_id AND s.destination_id = NEW.id;
	IF NOT EXISTS (SELECT 1 FROM outbox.restored_position) THEN
		DELETE FROM outbox.restored_event;
		DELETE FROM outbox.restored_tick;
		DELETE FROM outbox.restored_subscription;
	END IF;
	NEW.restored_at := NULL;
	NEW.last_error := NULL;
	NEW.last_error_at := NULL;
	RAISE LOG 'outbox_saga: restored destination "%" resumed with % restored events owed', NEW.name, owed;
	RETURN NEW;
END $$;
CREATE TRIGGER resume_restored BEFORE UPDATE OF paused ON outbox.destination
	FOR EACH ROW WHEN (OLD.paused AND NOT NEW.paused AND NEW.restored_at IS NOT NULL)
	EXECUTE FUNCTION outbox.resume_restored();
COMMENT ON FUNCTION outbox.resume_restored() IS
	'Internal trigger: resuming a restored destination queues the restored events it still owes.';

-- The dispatcher, once when it starts: pause and hold everything if this
-- database is a copy (another system identifier or database OID).
-- Returns how many destinations and sagas it paused or held.
CREATE FUNCTION outbox.check_identity() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	sysid bigint := (SELECT system_identifier FROM pg_control_system());
	dboid oid := (SELECT oid FROM pg_database WHERE datname = current_database());
	n_dest bigint;
	n_saga bigint;
BEGIN
	IF EXISTS (SELECT 1 FROM outbox.local_identity
	            WHERE system_identifier = sysid AND database_oid = dboid)
	   AND NOT EXISTS (SELECT 1 FROM outbox.local_identity
	                    WHERE system_identifier <> sysid OR database_oid <> dboid) THEN
		RETURN 0;
	END IF;
	LOCK TABLE outbox.local_identity IN EXCLUSIVE MODE;
	-- Another dispatcher of the pool may have handled it meanwhile.
	IF EXISTS (SELECT 1 FROM outbox.local_identity
	            WHERE system_identifier = sysid AND database_oid = dboid)
	   AND NOT EXISTS (SELECT 1 FROM outbox.local_identity
	                    WHERE system_identifier <> sysid OR database_oid <> dboid) THEN
		RETURN 0;
	END IF;

	UPDATE outbox.destination
	   SET paused = true, restored_at = now(), last_error_at = now(),
	       last_error = 'copied from another database: paused until outbox.resume_destination() (or drop_destination())'
	 WHERE restored_at IS NULL;
	GET DIAGNOSTICS n_dest = ROW_COUNT;

	WITH held AS (
		INSERT INTO saga.restored_hold (saga_id, deadline)
		SELECT i.id, i.deadline FROM saga.instance i
		 WHERE i.status IN ('running', 'compensating')
		ON CONFLICT (saga_id) DO NOTHING
		RETURNING saga_id)
	UPDATE saga.instance i SET deadline = NULL FROM held WHERE i.id = held.saga_id;
	GET DIAGNOSTICS n_saga = ROW_COUNT;
	UPDATE saga.step_run r
	   SET status = CASE WHEN r.status = 'waiting' THEN 'waiting' ELSE 'pending' END,
	       next_attempt_at = CASE WHEN r.status = 'waiting' THEN r.next_attempt_at ELSE 'infinity'::timestamptz END,
	       timeout_at = CASE WHEN r.status = 'waiting' THEN 'infinity'::timestamptz END
	  FROM saga.restored_hold h
	 WHERE r.saga_id = h.saga_id AND r.status IN ('pending', 'running', 'waiting');

	DELETE FROM outbox.local_identity;
	INSERT INTO outbox.local_identity (system_identifier, database_oid) VALUES (sysid, dboid);
	IF n_dest + n_saga > 0 THEN
		RAISE LOG 'outbox_saga: database "%" is a copy of another database (system identifier or OID changed): % destinations paused and % sagas held until outbox.resume_destination() and saga.resume()',
			current_database(), n_dest, n_saga;
	END IF;
	RETURN n_dest + n_saga;
END $$;
COMMENT ON FUNCTION outbox.check_identity() IS
	'Internal, called by the dispatcher when it starts: in a copy of a database (new system identifier or database OID), pause every destination and hold every saga in flight until an operator resumes them.';

-- saga.resume: release held sagas (restored or copied).
CREATE FUNCTION saga.resume(saga_id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	IF saga_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM saga.instance i WHERE i.id = resume.saga_id) THEN
		RAISE EXCEPTION 'saga % does not exist', saga_id USING ERRCODE = 'undefined_object';
	END IF;
	WITH h AS (
		DELETE FROM saga.restored_hold h
		 WHERE resume.saga_id IS NULL OR h.saga_id = resume.saga_id
		RETURNING h.saga_id, h.deadline),
	i AS (
		UPDATE saga.instance i SET deadline = COALESCE(h.deadline, i.deadline), updated_at = now()
		  FROM h WHERE i.id = h.saga_id
		RETURNING i.id),
	r AS (
		UPDATE saga.step_run r
		   SET next_attempt_at = CASE WHEN r.status = 'pending' THEN now() ELSE r.next_attempt_at END,
		       timeout_at = CASE WHEN r.status = 'waiting' THEN now() + r.timeout ELSE r.timeout_at END
		  FROM h
		 WHERE r.saga_id = h.saga_id
		   AND ((r.status = 'pending' AND r.next_attempt_at = 'infinity')
		        OR (r.status = 'waiting' AND r.timeout_at = 'infinity')))
	SELECT count(*) INTO n FROM i;
	-- The dispatcher's next saga round runs at this commit.
	IF n > 0 THEN
		PERFORM outbox.saga_work_changed();
	END IF;
	RETURN n;
END $$;
COMMENT ON FUNCTION saga.resume(uuid) IS
	'Release sagas held after a restore or a copy of the database (saga.instances.restored): one, or every one (NULL). Their waiting steps and deadline start again. Returns how many.';

-- What pg_dump keeps beyond dispatch.sql and saga.sql, and with what
-- filter: the log's events a destination may still owe (its transaction
-- not below the oldest position), the ticks positions refer to, keys not
-- expired.
SELECT pg_catalog.pg_extension_config_dump('outbox.destination_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.subscription_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.delivery_retry', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.events_p0',
	'WHERE txid >= (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(t.snapshot))'
	'  FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from)');
SELECT pg_catalog.pg_extension_config_dump('outbox.events_p1',
	'WHERE txid >= (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(t.snapshot))'
	'  FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from)');
SELECT pg_catalog.pg_extension_config_dump('outbox.events_p2',
	'WHERE txid >= (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(t.snapshot))'
	'  FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from)');
SELECT pg_catalog.pg_extension_config_dump('outbox.events_p3',
	'WHERE txid >= (SELECT pg_catalog.min(pg_catalog.pg_snapshot_xmin(t.snapshot))'
	'  FROM outbox.destination d JOIN outbox.tick t ON t.id = d.tick_from)');
SELECT pg_catalog.pg_extension_config_dump('outbox.tick',
	'WHERE id IN (SELECT tick_from FROM outbox.destination'
	' UNION ALL SELECT tick_to FROM outbox.destination)');
SELECT pg_catalog.pg_extension_config_dump('outbox.idempotency_keys',
	'WHERE expires_at > pg_catalog.now()');

REVOKE ALL ON outbox.local_identity, outbox.restored_position, outbox.restored_subscription,
	outbox.restored_tick, outbox.restored_event, saga.restored_hold FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.restoring(), outbox.restore_event(), outbox.restore_tick(),
	outbox.restore_destination(), outbox.restore_subscription(), saga.restore_instance(),
	saga.restore_step_run(), outbox.resume_restored(), outbox.check_identity(),
	saga.resume(uuid) FROM PUBLIC;
-- end of issue 13 items 2 and 3

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
	       d.last_error_at,
	       w.worker AS served_by,
	       w.wait_event
	  FROM outbox.destination d
	 CROSS JOIN (SELECT COALESCE(max(id), 0) AS last_value FROM outbox.events) seq
	  LEFT JOIN (
	       SELECT ws.destination_id, ws.worker, ws.wait_event FROM outbox.worker_status() ws
	        WHERE ws.database = pg_catalog.current_database()
	          AND ws.destination_id IS NOT NULL) w ON w.destination_id = d.id
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

-- issue 12 item 3: topic owners and the read and write privileges (G14);
-- see src/sql/topics.sql and README, "Topics and their privileges".
-- ---------------------------------------------------------------------------
-- Topics: owners and the read and write privileges (design:
-- src/events/topic_acl.c, G14).  Written by the functions below and by the
-- first use of a topic (emit, capture, subscribe) only.
-- ---------------------------------------------------------------------------

-- A topic belongs to the first role (not a superuser) that used it.
CREATE TABLE outbox.topic (
	name        text                 PRIMARY KEY,
	owner       pg_catalog.regrole   NOT NULL,
	created_at  timestamptz          NOT NULL DEFAULT now()
);

-- Grants: a grantee (and its members) may read or write the topic.
CREATE TABLE outbox.topic_grant (
	topic       text                 NOT NULL
	            REFERENCES outbox.topic (name) ON DELETE CASCADE ON UPDATE CASCADE,
	grantee     pg_catalog.regrole   NOT NULL,
	privilege   text                 NOT NULL CHECK (privilege IN ('read', 'write')),
	granted_by  pg_catalog.regrole   NOT NULL,
	PRIMARY KEY (topic, grantee, privilege)
);

SELECT pg_catalog.pg_extension_config_dump('outbox.topic', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.topic_grant', '');

-- Every change of either table invalidates every backend's cached
-- decisions (also a hand-made one, or pg_restore's).
CREATE FUNCTION outbox.topic_acl_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'outbox_saga_topic_acl_changed' LANGUAGE C;
COMMENT ON FUNCTION outbox.topic_acl_changed() IS
	'Internal: statement trigger of outbox.topic and outbox.topic_grant that invalidates the cached topic privileges of every session.';

CREATE TRIGGER topic_acl_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON outbox.topic
	FOR EACH STATEMENT EXECUTE FUNCTION outbox.topic_acl_changed();
CREATE TRIGGER topic_acl_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON outbox.topic_grant
	FOR EACH STATEMENT EXECUTE FUNCTION outbox.topic_acl_changed();

CREATE FUNCTION outbox.create_topic(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_create_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.create_topic(text) IS
	'Create a topic owned by the current role (a topic is otherwise created by its first emit, capture or subscription). Its owner may read and write it and grant both.';

CREATE FUNCTION outbox.alter_topic_owner(topic text, new_owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_alter_topic_owner'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.alter_topic_owner(text, regrole) IS
	'Give a topic to another role. The caller needs the privileges of the current owner and of the new one.';

CREATE FUNCTION outbox.grant_topic(topic text, role regrole, privilege text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_grant_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.grant_topic(text, regrole, text) IS
	'Let a role (and its members) read (subscribe, receive, see dead letters) or write (emit, capture, saga emit) a topic. Owner or superuser only.';

CREATE FUNCTION outbox.revoke_topic(topic text, role regrole, privilege text)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_revoke_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.revoke_topic(text, regrole, text) IS
	'Take back a privilege granted with outbox.grant_topic(); effective for events already pending. Owner or superuser only.';

CREATE FUNCTION outbox.has_topic_privilege(topic text, privilege text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_has_topic_privilege'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION outbox.has_topic_privilege(text, text) IS
	'Whether the current role may read or write a topic (owner, grantee, a member of either, or a superuser).';

-- Rows: the topics the current role owns, may read or may write (every one
-- for a superuser or a member of pg_read_all_settings).
CREATE VIEW outbox.topics WITH (security_barrier) AS
SELECT t.name,
       t.owner,
       ARRAY(SELECT g.grantee FROM outbox.topic_grant g
              WHERE g.topic = t.name AND g.privilege = 'read'
              ORDER BY g.grantee::text) AS readers,
       ARRAY(SELECT g.grantee FROM outbox.topic_grant g
              WHERE g.topic = t.name AND g.privilege = 'write'
              ORDER BY g.grantee::text) AS writers,
       t.created_at
  FROM outbox.topic t
 WHERE pg_catalog.pg_has_role(t.owner, 'USAGE')
    OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE')
    OR EXISTS (SELECT 1 FROM outbox.topic_grant g
                WHERE g.topic = t.name AND pg_catalog.pg_has_role(g.grantee, 'USAGE'));
COMMENT ON VIEW outbox.topics IS
	'Topics with their owner and the roles granted read and write: those the current role owns or was granted (all for superusers and pg_read_all_settings).';

REVOKE ALL ON FUNCTION outbox.topic_acl_changed(), outbox.create_topic(text),
	outbox.alter_topic_owner(text, regrole), outbox.grant_topic(text, regrole, text),
	outbox.revoke_topic(text, regrole, text), outbox.has_topic_privilege(text, text)
	FROM PUBLIC;
REVOKE ALL ON outbox.topic, outbox.topic_grant, outbox.topics FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox.has_topic_privilege(text, text) TO PUBLIC;

-- The dead letters of the topics the current role may read only.
CREATE OR REPLACE VIEW outbox.dead_letters WITH (security_barrier) AS
	SELECT dl.event_id, d.name AS destination, dl.attempts, dl.last_error, dl.failed_at,
	       dl.id, dl.topic, dl.aggregate_id, dl.event_type, dl.payload, dl.headers,
	       dl.created_at, dl.deliver_after, dl.txid
	  FROM outbox.dead_letter dl
	  JOIN outbox.destination d ON d.id = dl.destination_id
	 WHERE outbox.has_topic_privilege(dl.topic, 'read');
COMMENT ON VIEW outbox.dead_letters IS
	'Events a destination gave up on, with their last error, of the topics the current role may read; see replay_dead() and discard_dead().';

-- Topics in use keep flowing as before.  Every topic found in the log, the
-- retry queue, the dead letters, the subscriptions and the capture triggers
-- gets a row owned by the extension's owner, with grants that reproduce
-- 0.1.0's access to it: read for the owner of every destination subscribed
-- to it (by name or '*'), write for every role granted EXECUTE on
-- outbox.emit() and for the owner of every table captured into it.
-- Superusers need no grant.  Topics used for the first time after the
-- update follow the new rules.
WITH captures AS (
	SELECT c.relowner AS owner,
	       COALESCE((SELECT pg_catalog.substr(a, 7)
	                   FROM pg_catalog.unnest(pg_catalog.string_to_array(
	                            pg_catalog.encode(tg.tgargs, 'escape'), '\000')) AS e(raw),
	                        LATERAL (SELECT pg_catalog.convert_from(
	                                          pg_catalog.decode(e.raw, 'escape'), 'UTF8')) AS x(a)
	                  WHERE a LIKE 'topic=%' LIMIT 1),
	                c.relname::text) AS topic
	  FROM pg_catalog.pg_trigger tg
	  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
	 WHERE tg.tgfoid = 'outbox.capture()'::pg_catalog.regprocedure
	   AND tg.tgparentid = 0)
INSERT INTO outbox.topic (name, owner)
SELECT n.topic, x.extowner::pg_catalog.regrole
  FROM (SELECT topic FROM outbox.events
        UNION SELECT topic FROM outbox.delivery_retry
        UNION SELECT topic FROM outbox.dead_letter
        UNION SELECT topic FROM outbox.subscription WHERE topic <> '*'
        UNION SELECT topic FROM captures) n
 CROSS JOIN (SELECT extowner FROM pg_catalog.pg_extension
              WHERE extname = 'outbox_saga') x
    ON CONFLICT (name) DO NOTHING;

WITH captures AS (
	SELECT c.relowner AS owner,
	       COALESCE((SELECT pg_catalog.substr(a, 7)
	                   FROM pg_catalog.unnest(pg_catalog.string_to_array(
	                            pg_catalog.encode(tg.tgargs, 'escape'), '\000')) AS e(raw),
	                        LATERAL (SELECT pg_catalog.convert_from(
	                                          pg_catalog.decode(e.raw, 'escape'), 'UTF8')) AS x(a)
	                  WHERE a LIKE 'topic=%' LIMIT 1),
	                c.relname::text) AS topic
	  FROM pg_catalog.pg_trigger tg
	  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
	 WHERE tg.tgfoid = 'outbox.capture()'::pg_catalog.regprocedure
	   AND tg.tgparentid = 0)
INSERT INTO outbox.topic_grant (topic, grantee, privilege, granted_by)
SELECT DISTINCT g.topic, g.grantee::pg_catalog.regrole, g.privilege, t.owner
  FROM (SELECT s.topic, d.owner AS grantee, 'read' AS privilege
          FROM outbox.subscription s
          JOIN outbox.destination d ON d.id = s.destination_id
         WHERE s.topic <> '*'
        UNION
        SELECT t.name, d.owner, 'read'
          FROM outbox.subscription s
          JOIN outbox.destination d ON d.id = s.destination_id
         CROSS JOIN outbox.topic t
         WHERE s.topic = '*'
        UNION
        SELECT t.name, a.grantee, 'write'
          FROM pg_catalog.pg_proc p
         CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
         CROSS JOIN outbox.topic t
         WHERE p.oid = 'outbox.emit(text, text, jsonb, text, jsonb, timestamptz)'::pg_catalog.regprocedure
           AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0
        UNION
        SELECT c.topic, c.owner, 'write' FROM captures c) g
  JOIN outbox.topic t ON t.name = g.topic
 WHERE g.grantee <> t.owner::pg_catalog.oid
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE r.oid = g.grantee AND NOT r.rolsuper)
    ON CONFLICT DO NOTHING;

-- issue 15 items 1 and 3: handlers and saga steps run with the search_path
-- recorded for them (their creator's, or the config key / option
-- search_path); destinations and definitions of 0.1.0 keep 0.1.0's
-- pg_catalog, pg_temp.  outbox.deliver_pending() and outbox.pending(), test
-- helpers that deliver and list what a destination owes in the calling
-- session.
ALTER TABLE outbox.destination ADD COLUMN search_path text NOT NULL DEFAULT 'pg_catalog, pg_temp';
ALTER TABLE saga.definition ADD COLUMN search_path text NOT NULL DEFAULT 'pg_catalog, pg_temp';

CREATE OR REPLACE VIEW outbox.destinations WITH (security_barrier) AS
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

CREATE OR REPLACE VIEW saga.definitions AS
SELECT d.name,
       d.version,
       d.version = n.latest_version AS latest,
       outbox.mask_config(d.steps) AS steps,
       d.options,
       d.owner::pg_catalog.regrole AS owner,
       d.created_at,
       d.search_path
  FROM saga.definition d
  JOIN saga.definition_name n ON n.name = d.name;

COMMENT ON VIEW saga.definitions IS
	'Every version of every saga definition, normalized: each step with all its keys, durations in seconds; credentials in http calls (Authorization and similar headers, user:password in URLs) masked as in outbox.destinations.';

COMMENT ON FUNCTION outbox.create_destination(text, text, jsonb) IS
	'Create a destination of a kind (function, notify, ...) owned by the current role; its handler runs with that role''s privileges and the current search_path (pg_temp last), or the config key search_path. Config keys: those of the kind plus max_attempts, backoff_base, backoff_max, batch_size, ordered, timeout, search_path.';

COMMENT ON FUNCTION outbox.alter_destination(text, jsonb) IS
	'Merge keys into a destination''s config (a key set to null is removed) and check the result as a whole; the key search_path replaces the handler''s search_path. Owner or superuser only.';

COMMENT ON FUNCTION saga.define(text, jsonb, jsonb) IS
	'Create or replace a saga definition and return its version (the latest version again if nothing changed). Steps: [{"name", "action": CALL, "compensation": CALL|null, "timeout", "max_attempts", "backoff_base", "backoff_max", "compensation_max_attempts"}]; a CALL is {"function": "schema.name"}, {"emit": {"topic", "event_type", "await", "headers"}} or {"http": {"url", "method", "headers"}}. Options: deadline, defaults for the step keys, and search_path (default: the current one, pg_temp last). The steps run as the definition''s owner (the role that first defined it) with that search_path; only the owner, a member of it or a superuser may redefine it. Running sagas keep their version.';

-- Test helpers (issue 15 item 3, src/dispatch/sync_delivery.c).
CREATE FUNCTION outbox.deliver_pending(destination text,
	include_backoff boolean DEFAULT false, max_events integer DEFAULT 1000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_deliver_pending' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.deliver_pending(text, boolean, integer) IS
	'Deliver what a function or notify destination owes now, in the calling transaction, as the dispatcher would (attempts, backoff, dead letters, the handler''s owner and search_path), and return how many events were delivered; paused destinations too. include_backoff: also events whose retry backoff has not ended. For tests; owner or superuser only.';

CREATE FUNCTION outbox.pending(destination text,
	OUT id bigint, OUT event_id uuid, OUT topic text, OUT aggregate_id text,
	OUT event_type text, OUT payload jsonb, OUT headers jsonb,
	OUT created_at timestamptz, OUT deliver_after timestamptz,
	OUT attempts integer, OUT next_attempt_at timestamptz, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_saga_pending' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.pending(text) IS
	'The events a destination still owes, in id order: its retry rows (attempts, next_attempt_at, last_error) and the committed events of its subscriptions it has not reached yet (attempts 0). For tests; owner or superuser only.';

REVOKE ALL ON FUNCTION outbox.deliver_pending(text, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.pending(text) FROM PUBLIC;
-- issue 14 item 1: commit order for concurrent writers of one aggregate
-- (src/events/logscan.c): a destination's cursor within a window in commit
-- order, and the commit time of the event a retry row or dead letter copies.
ALTER TABLE outbox.destination ADD COLUMN last_txid xid8;
ALTER TABLE outbox.delivery_retry ADD COLUMN committed_at timestamptz;
ALTER TABLE outbox.dead_letter ADD COLUMN committed_at timestamptz;
CREATE FUNCTION outbox.committed_at(txid xid8)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'outbox_saga_committed_at' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION outbox.committed_at(xid8) IS
	'The commit time of a transaction that wrote events, or NULL if unknown (track_commit_timestamp off, not committed, or past the commit-time horizon); the first part of the commit-order key (committed_at, txid, id).';
REVOKE ALL ON FUNCTION outbox.committed_at(xid8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox.committed_at(xid8) TO PUBLIC;
CREATE OR REPLACE VIEW outbox.dead_letters WITH (security_barrier) AS
	SELECT dl.event_id, d.name AS destination, dl.attempts, dl.last_error, dl.failed_at,
	       dl.id, dl.topic, dl.aggregate_id, dl.event_type, dl.payload, dl.headers,
	       dl.created_at, dl.deliver_after, dl.txid, dl.committed_at
	  FROM outbox.dead_letter dl
	  JOIN outbox.destination d ON d.id = dl.destination_id
	 WHERE outbox.has_topic_privilege(dl.topic, 'read');
COMMENT ON VIEW outbox.dead_letters IS
	'Events a destination gave up on, with their last error, of the topics the current role may read; see replay_dead() and discard_dead().';

-- issue 14 item 2: one paused or lagging destination no longer holds the
-- log (outbox_saga.max_destination_lag, src/dispatch/skip.c); outbox.stats
-- shows what each destination holds of it, and (item 1) which order it
-- gets (new columns at the end: delivery_order, holds_log_since,
-- pinned_events, pinned_bytes).
CREATE OR REPLACE VIEW outbox.stats WITH (security_barrier) AS
	WITH part AS MATERIALIZED (
	       SELECT p.rel, p.max_txid,
	              pg_catalog.pg_stat_get_live_tuples(p.rel) AS live,
	              pg_catalog.pg_total_relation_size(p.rel) AS bytes
	         FROM (VALUES ('outbox.events_p0'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p0)),
	                      ('outbox.events_p1'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p1)),
	                      ('outbox.events_p2'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p2)),
	                      ('outbox.events_p3'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p3))) p(rel, max_txid)
	        WHERE p.max_txid IS NOT NULL)
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
	       d.last_error_at,
	       w.worker AS served_by,
	       w.wait_event,
	       CASE WHEN d.config -> 'ordered' = 'false'::jsonb THEN 'unordered'
	            WHEN pg_catalog.current_setting('track_commit_timestamp')::boolean THEN 'commit'
	            ELSE 'id'
	       END AS delivery_order,
	       pin.since AS holds_log_since,
	       pin.events AS pinned_events,
	       pin.bytes AS pinned_bytes
	  FROM outbox.destination d
	 CROSS JOIN (SELECT COALESCE(max(id), 0) AS last_value FROM outbox.events) seq
	  LEFT JOIN (
	       SELECT ws.destination_id, ws.worker, ws.wait_event FROM outbox.worker_status() ws
	        WHERE ws.database = pg_catalog.current_database()
	          AND ws.destination_id IS NOT NULL) w ON w.destination_id = d.id
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
	  LEFT JOIN LATERAL (
	       SELECT t.created_at AS since,
	              COALESCE(sum(p.live), 0)::bigint AS events,
	              COALESCE(sum(p.bytes), 0)::bigint AS bytes
	         FROM outbox.tick t
	         LEFT JOIN part p ON p.max_txid >= pg_catalog.pg_snapshot_xmin(t.snapshot)
	        WHERE t.id = d.tick_from
	        GROUP BY t.created_at) pin ON true
	 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
	    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW outbox.stats IS
	'One row per destination the current role owns (every one for superusers and pg_monitor / pg_read_all_stats): backlog, retries, dead letters, counters, the last error, and what it holds of the log (holds_log_since, pinned_events, pinned_bytes: estimates per partition).';
-- end of issue 14 item 2

-- issue 17 items 4 and 5: W3C trace context (a saga keeps the one of the
-- transaction that started it), saga.timeline()
ALTER TABLE saga.instance ADD COLUMN trace jsonb;

CREATE FUNCTION saga.timeline(saga_id uuid)
RETURNS TABLE(seq bigint, step text, phase text, status text, attempts integer,
              started_at timestamptz, finished_at timestamptz, duration interval,
              error text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
	IF timeline.saga_id IS NULL THEN
		RAISE EXCEPTION 'saga_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	RETURN QUERY
	SELECT r.seq, r.step, r.phase, r.status, r.attempts, r.started_at, r.finished_at,
	       r.finished_at - r.started_at, r.error
	  FROM saga.step_runs r
	 WHERE r.saga_id = timeline.saga_id AND r.status <> 'recorded'
	 ORDER BY r.seq;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'saga % does not exist', timeline.saga_id
			USING ERRCODE = 'undefined_object';
	END IF;
END $$;
REVOKE ALL ON FUNCTION saga.timeline(uuid) FROM PUBLIC;

COMMENT ON FUNCTION saga.timeline(uuid) IS
	'A saga''s history, one row per step run and compensation in the order they were scheduled (seq): status (pending, running, waiting, succeeded, failed, cancelled), attempts, times, duration and last error. Compensation records that never had to run are left out. Reads saga.step_runs as the caller: needs SELECT on it.';
-- end of issue 17 items 4 and 5

-- issue 17 item 1: Prometheus metrics (contrib/prometheus/queries.yaml).
-- outbox.stats: oldest_ready_age from what the destination's position has
-- not consumed (no false backlog for quiet topics), pending/ready 0 when it
-- consumed the whole log, new columns at the end: oldest_ready_age_seconds,
-- paused_by_410.  saga.stats: new columns at the end (ages in seconds,
-- overdue sagas).  New view outbox.database_stats.  pg_monitor reads all
-- three.
CREATE OR REPLACE VIEW outbox.stats WITH (security_barrier) AS
	WITH part AS MATERIALIZED (
	       SELECT p.rel, p.max_txid,
	              pg_catalog.pg_stat_get_live_tuples(p.rel) AS live,
	              pg_catalog.pg_total_relation_size(p.rel) AS bytes
	         FROM (VALUES ('outbox.events_p0'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p0)),
	                      ('outbox.events_p1'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p1)),
	                      ('outbox.events_p2'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p2)),
	                      ('outbox.events_p3'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p3))) p(rel, max_txid)
	        WHERE p.max_txid IS NOT NULL)
	SELECT d.name AS destination,
	       d.kind,
	       d.paused,
	       log.n + COALESCE(r.total, 0) AS pending,
	       CASE WHEN d.paused OR d.retry_at > pg_catalog.now() THEN 0
	            ELSE log.n + COALESCE(r.due, 0)
	       END AS ready,
	       ready_age.age AS oldest_ready_age,
	       COALESCE(r.retrying, 0) AS retrying,
	       COALESCE(dl.dead, 0) AS dead,
	       d.delivered_total,
	       d.failed_attempts_total,
	       d.last_delivered_at,
	       COALESCE(outbox.dispatch_status(), d.last_error) AS last_error,
	       d.last_error_at,
	       w.worker AS served_by,
	       w.wait_event,
	       CASE WHEN d.config -> 'ordered' = 'false'::jsonb THEN 'unordered'
	            WHEN pg_catalog.current_setting('track_commit_timestamp')::boolean THEN 'commit'
	            ELSE 'id'
	       END AS delivery_order,
	       pin.since AS holds_log_since,
	       pin.events AS pinned_events,
	       pin.bytes AS pinned_bytes,
	       COALESCE(pg_catalog.date_part('epoch', ready_age.age), 0) AS oldest_ready_age_seconds,
	       d.paused AND EXISTS (
	           SELECT 1 FROM outbox.dead_letter x
	            WHERE x.destination_id = d.id AND x.attempts > 0
	              AND x.last_error LIKE 'HTTP 410%') AS paused_by_410
	  FROM outbox.destination d
	 CROSS JOIN (SELECT COALESCE(max(id), 0) AS last_value FROM outbox.events) seq
	  LEFT JOIN (
	       SELECT ws.destination_id, ws.worker, ws.wait_event FROM outbox.worker_status() ws
	        WHERE ws.database = pg_catalog.current_database()
	          AND ws.destination_id IS NOT NULL) w ON w.destination_id = d.id
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS total,
	              count(*) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS due,
	              count(*) FILTER (WHERE rr.attempts > 0) AS retrying,
	              min(rr.created_at) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS oldest_due
	         FROM outbox.delivery_retry rr WHERE rr.destination_id = d.id) r ON true
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS dead FROM outbox.dead_letter x WHERE x.destination_id = d.id) dl ON true
	  LEFT JOIN LATERAL (
	       SELECT t.id AS tick,
	              (SELECT pg_catalog.min(o.created_at) FROM (
	                     (SELECT e.created_at FROM outbox.events e
	                       WHERE e.txid >= pg_catalog.pg_snapshot_xmax(t.snapshot)
	                       ORDER BY e.txid LIMIT 1)
	                     UNION ALL
	                     SELECT (SELECT e.created_at FROM outbox.events e
	                              WHERE e.txid = x.txid LIMIT 1)
	                       FROM pg_catalog.pg_snapshot_xip(t.snapshot) x(txid)) o)
	                  AS created_at
	         FROM outbox.tick t
	        WHERE t.id = d.tick_from) owed ON true
	  LEFT JOIN LATERAL (
	       SELECT e.created_at FROM outbox.events e
	        WHERE owed.tick IS NULL AND e.id > d.done_id ORDER BY e.id LIMIT 1) head ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN owed.tick IS NOT NULL AND owed.created_at IS NULL THEN 0
	                   ELSE GREATEST(seq.last_value - d.done_id, 0)
	              END AS n) log ON true
	  LEFT JOIN LATERAL (
	       SELECT t.created_at AS since,
	              COALESCE(sum(p.live), 0)::bigint AS events,
	              COALESCE(sum(p.bytes), 0)::bigint AS bytes
	         FROM outbox.tick t
	         LEFT JOIN part p ON p.max_txid >= pg_catalog.pg_snapshot_xmin(t.snapshot)
	        WHERE t.id = d.tick_from
	        GROUP BY t.created_at) pin ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN d.paused THEN NULL
	                   ELSE pg_catalog.now() - LEAST(r.oldest_due, owed.created_at, head.created_at)
	              END AS age) ready_age ON true
	 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
	    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW outbox.stats IS
	'One row per destination the current role owns (every one for superusers and pg_monitor / pg_read_all_stats): backlog, retries, dead letters, counters, the last error, what it holds of the log (holds_log_since, pinned_events, pinned_bytes: estimates per partition), the oldest ready age in seconds and whether an http 410 paused it (for contrib/prometheus/queries.yaml).';
CREATE VIEW outbox.database_stats AS
	SELECT pg_catalog.current_database()::text AS database,
	       x.extversion::text AS extension_version,
	       st.status AS dispatch_status,
	       st.status IS NULL AS dispatching,
	       COALESCE(st.status LIKE 'dispatch waits: the extension''s SQL version differs%', false)
	           OR x.extversion <> (SELECT a.default_version FROM pg_catalog.pg_available_extensions a
	                                WHERE a.name = 'outbox_saga') AS version_mismatch,
	       (SELECT count(*) FROM outbox.worker_status() w
	         WHERE w.database = pg_catalog.current_database()
	           AND w.kind = 'dispatcher')::integer AS dispatchers,
	       pg_catalog.current_setting('outbox_saga.workers_per_database', true)::integer
	           AS dispatchers_configured,
	       (SELECT COALESCE(sum(pg_catalog.pg_stat_get_live_tuples(p.relid)), 0)::bigint
	          FROM pg_catalog.pg_partition_tree('outbox.events'::pg_catalog.regclass) p
	         WHERE p.isleaf) AS log_events,
	       (SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(p.relid)), 0)::bigint
	          FROM pg_catalog.pg_partition_tree('outbox.events'::pg_catalog.regclass) p) AS log_bytes,
	       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() -
	           (SELECT e.created_at FROM outbox.events e ORDER BY e.txid, e.id LIMIT 1)), 0)
	           AS oldest_event_age_seconds
	  FROM pg_catalog.pg_extension x
	 CROSS JOIN (SELECT outbox.dispatch_status() AS status) st
	 WHERE x.extname = 'outbox_saga';
COMMENT ON VIEW outbox.database_stats IS
	'One row for this database: whether a dispatcher serves it (dispatching; dispatch_status says why not), how many run, whether the extension''s SQL version differs from the library''s, and the size of the log (live-row estimate, bytes, age of the oldest event); readable by pg_monitor (contrib/prometheus/queries.yaml).';
REVOKE ALL ON outbox.database_stats FROM PUBLIC;
CREATE OR REPLACE VIEW saga.stats AS
SELECT n.name AS definition,
       n.latest_version AS version,
       COALESCE(c.running, 0) AS running,
       COALESCE(a.waiting, 0) AS waiting,
       COALESCE(a.retrying, 0) AS retrying,
       COALESCE(c.compensating, 0) AS compensating,
       COALESCE(c.completed, 0) AS completed,
       COALESCE(c.compensated, 0) AS compensated,
       COALESCE(c.cancelled, 0) AS cancelled,
       COALESCE(c.failed, 0) AS failed,
       pg_catalog.now() - c.oldest_active AS oldest_active_age,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - c.oldest_active), 0)
           AS oldest_active_age_seconds,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - o.oldest_running), 0)
           AS oldest_running_age_seconds,
       COALESCE(o.overdue, 0) AS overdue,
       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() - o.oldest_deadline), 0)
           AS oldest_overdue_seconds
  FROM saga.definition_name n
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE i.status = 'running') AS running,
              count(*) FILTER (WHERE i.status = 'compensating') AS compensating,
              count(*) FILTER (WHERE i.status = 'completed') AS completed,
              count(*) FILTER (WHERE i.status = 'compensated') AS compensated,
              count(*) FILTER (WHERE i.status = 'cancelled') AS cancelled,
              count(*) FILTER (WHERE i.status = 'failed') AS failed,
              min(i.created_at) FILTER (WHERE i.status IN ('running', 'compensating')) AS oldest_active
         FROM saga.instance i WHERE i.definition = n.name) c ON true
  LEFT JOIN LATERAL (
       SELECT count(*) FILTER (WHERE r.status = 'waiting') AS waiting,
              count(*) FILTER (WHERE r.status = 'pending' AND r.attempts > 0) AS retrying
         FROM saga.step_run r
         JOIN saga.instance i ON i.id = r.saga_id
        WHERE i.definition = n.name AND r.status IN ('pending', 'waiting')) a ON true
  LEFT JOIN LATERAL (
       SELECT min(i.created_at) FILTER (WHERE i.status = 'running') AS oldest_running,
              count(*) FILTER (WHERE i.deadline < pg_catalog.now()) AS overdue,
              min(i.deadline) FILTER (WHERE i.deadline < pg_catalog.now()) AS oldest_deadline
         FROM saga.instance i
        WHERE i.definition = n.name AND i.status IN ('running', 'compensating')) o ON true;

COMMENT ON VIEW saga.stats IS
	'One row per saga definition: sagas by status (failed ones need an operator: see saga.retry), steps waiting for saga.complete_step, steps retrying after a failed attempt, the age of the oldest unfinished saga (also in seconds), of the oldest running one, and the sagas still running or compensating past their deadline (overdue, oldest_overdue_seconds: how long past it the earliest is). Readable by pg_monitor.';
GRANT SELECT ON outbox.database_stats, saga.stats TO pg_monitor;
-- end of issue 17 item 1

-- issue 18 item 1: outbox.workers counts each dispatcher's passes (a commit
-- of a topic no destination wants wakes no dispatcher: no pass).
CREATE FUNCTION outbox.worker_passes(pid integer) RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_worker_passes' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION outbox.worker_passes(integer) IS
	'How many passes the dispatcher with this pid has completed since it started (NULL: no dispatcher); backs outbox.workers.passes.';
REVOKE ALL ON FUNCTION outbox.worker_passes(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox.worker_passes(integer) TO PUBLIC;
CREATE OR REPLACE VIEW outbox.workers AS
	SELECT w.database, w.pid, w.state, w.started_at, w.last_activity, w.kind,
	       w.worker, w.doing, w.doing_since, d.name AS destination, w.wait_event,
	       outbox.worker_passes(w.pid) AS passes
	  FROM outbox.worker_status() w
	  LEFT JOIN outbox.destination d
	    ON d.id = w.destination_id AND w.database = pg_catalog.current_database();
COMMENT ON VIEW outbox.workers IS
	'The outbox_saga background workers: the launcher and the dispatchers of every served database (outbox_saga.workers_per_database each), what each does, the destination it serves now (named for the current database), what it waits on and how many passes it has made (a commit no destination wants makes none).';
-- end of issue 18 item 1

-- issue 16 item 1: pull destinations (outbox.pull_event, outbox.pull_batch, next_batch, finish_batch, retry_event)
-- One event of an unfinished batch: the columns of outbox.events, the
-- failed attempts so far and the commit time of its transaction (NULL:
-- unknown), as a retry row keeps them (src/dispatch/delivery.c).
CREATE TYPE outbox.pull_event AS (
	id             bigint,
	event_id       uuid,
	topic          text,
	aggregate_id   text,
	event_type     text,
	payload        jsonb,
	headers        jsonb,
	created_at     timestamptz,
	deliver_after  timestamptz,
	txid           xid8,
	attempts       integer,
	committed_at   timestamptz
);

-- Unfinished batches: one row per batch, with a copy of its events (the
-- destination's position has moved past them when the batch was handed
-- out, so the log may be retired under it) and the aggregates it holds.
-- A batch whose lease_until has passed is handed out again under a new id.
CREATE SEQUENCE outbox.pull_batch_id_seq AS bigint;
CREATE TABLE outbox.pull_batch (
	id              bigint      NOT NULL DEFAULT pg_catalog.nextval('outbox.pull_batch_id_seq') PRIMARY KEY,
	destination_id  integer     NOT NULL REFERENCES outbox.destination ON DELETE CASCADE,
	lease_until     timestamptz NOT NULL,
	handed_out      integer     NOT NULL DEFAULT 1,
	aggregates      text[]      NOT NULL,
	events          outbox.pull_event[] NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE outbox.pull_batch_id_seq OWNED BY outbox.pull_batch.id;
-- A batch row lives from next_batch to finish_batch, written once and read
-- once or twice: lz4 compresses its copy of the events at little CPU, so
-- less is written (TOAST pages and WAL: the pull drain's largest cost
-- uncompressed); pglz cost more than it saved.  A server built without
-- lz4 stores them uncompressed.
DO $$
BEGIN
	ALTER TABLE outbox.pull_batch ALTER COLUMN events SET COMPRESSION lz4,
		ALTER COLUMN aggregates SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	ALTER TABLE outbox.pull_batch ALTER COLUMN events SET STORAGE EXTERNAL,
		ALTER COLUMN aggregates SET STORAGE EXTERNAL;
END $$;
CREATE INDEX pull_batch_destination_idx ON outbox.pull_batch (destination_id, lease_until);
SELECT pg_catalog.pg_extension_config_dump('outbox.pull_batch', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.pull_batch_id_seq', '');

CREATE FUNCTION outbox.next_batch(
	destination text,
	max_events  integer  DEFAULT 1000,
	lease       interval DEFAULT NULL)
RETURNS TABLE (batch_id bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, attempts integer)
AS 'MODULE_PATHNAME', 'outbox_saga_next_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

COMMENT ON FUNCTION outbox.next_batch(text, integer, interval) IS
	'Take the next batch of a pull destination: at most max_events events, gap-free and in commit order per aggregate, every row with the batch id; no rows when nothing is ready. An aggregate''s events are never in two unfinished batches. Finish the batch with outbox.finish_batch() within the lease (NULL: the destination''s timeout, 30 seconds by default) or it is handed out again. Owner of the destination (or a member) only; call it in its own transaction.';

CREATE FUNCTION outbox.finish_batch(batch_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_finish_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.finish_batch(bigint) IS
	'Acknowledge an unfinished batch of a pull destination: its events (but those failed with outbox.retry_event()) are delivered. Returns their number. Owner of the destination (or a member) only.';

CREATE FUNCTION outbox.retry_event(
	batch_id bigint,
	event_id uuid,
	delay    interval DEFAULT NULL,
	error    text     DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_retry_event'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.retry_event(bigint, uuid, interval, text) IS
	'Fail one event of an unfinished batch: a failed attempt, retried after delay (NULL: the destination''s backoff) or moved to the dead letters after max_attempts; the later events of its aggregate in the batch are taken out of it too and come again after it, other aggregates are not held. Owner of the destination (or a member) only.';
REVOKE ALL ON TABLE outbox.pull_batch FROM PUBLIC;
REVOKE ALL ON SEQUENCE outbox.pull_batch_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.next_batch(text, integer, interval),
                       outbox.finish_batch(bigint),
                       outbox.retry_event(bigint, uuid, interval, text) FROM PUBLIC;
-- end of issue 16 item 1

-- issue 16 items 2, 3, 4: retained history and replay (src/sql/history.sql
-- as it is, then outbox.stats of src/sql/observability.sql with the replay
-- columns at its end, then src/sql/privileges.sql for the new objects).

-- ---------------------------------------------------------------------------
-- Retained history and replay (issue 16; design: src/events/history.c and
-- src/dispatch/replay.c).  A retained topic's events are archived, in
-- commit order, by an internal function destination named
-- 'outbox.history' into outbox.history, where they stay (insert-only)
-- until their topic's keep interval has passed.  outbox.rewind() queues a
-- destination's retained events again as retry rows marked replay.
-- ---------------------------------------------------------------------------

-- The topics whose events are kept; keep NULL: forever.
CREATE TABLE outbox.retained_topic (
	topic       text        PRIMARY KEY,
	keep        interval    CHECK (keep > '0'::interval),
	created_at  timestamptz NOT NULL DEFAULT now()
);

-- Positions in commit order: drawn by the archiver, one batch after the
-- other (its destination row lock serializes them).
CREATE SEQUENCE outbox.history_position_seq AS bigint;

-- The history store: the events of the retained topics, insert-only
-- (housekeeping deletes those older than their topic's keep).
-- committed_at: the commit time of the event's transaction
-- (track_commit_timestamp), or its created_at when that is unknown.
CREATE TABLE outbox.history (
	position      bigint      NOT NULL,
	id            bigint      NOT NULL,
	event_id      uuid        NOT NULL,
	topic         text        NOT NULL,
	aggregate_id  text,
	event_type    text        NOT NULL,
	payload       jsonb       NOT NULL,
	headers       jsonb       NOT NULL,
	created_at    timestamptz NOT NULL,
	deliver_after timestamptz,
	txid          xid8        NOT NULL,
	committed_at  timestamptz NOT NULL
);
CREATE INDEX history_aggregate_idx ON outbox.history (topic, aggregate_id, position);
CREATE INDEX history_committed_idx ON outbox.history (topic, committed_at);
ALTER SEQUENCE outbox.history_position_seq OWNED BY outbox.history.position;

COMMENT ON TABLE outbox.history IS
	'Retained events (outbox.retain_topic), with their position in commit order. Written only by the archiver destination outbox.history; read with outbox.aggregate_events().';

-- Retry rows queued by outbox.rewind() (outbox.stats: replay_pending).
ALTER TABLE outbox.delivery_retry ADD COLUMN replay boolean NOT NULL DEFAULT false;
-- A replay row's place in the history (outbox.history.position; NULL: not
-- replayed from the store).  Rows with a position come first and in
-- position order, so a replay repeats the history's order, which is the
-- order the archiver was delivered (RETRY_PRECEDES_SQL,
-- src/dispatch/delivery.h).
ALTER TABLE outbox.delivery_retry ADD COLUMN "position" bigint;
-- The failed retry rows of a destination in id order: with the primary key,
-- a batch reads the due heads by two index scans that stop at its limit
-- (Q_DUE_RETRIES, src/dispatch/delivery.c), also with a large replay queued.
CREATE INDEX delivery_retry_failed_idx ON outbox.delivery_retry (destination_id, id)
	WHERE attempts > 0;
-- A destination's retry rows in due order: the dispatcher's next due time
-- stops at the first head (DS_NEXT_DUE, src/worker/dispatcher.c).
CREATE INDEX delivery_retry_dest_due_idx ON outbox.delivery_retry (destination_id, next_attempt_at);

-- The latest rewind of each destination.
CREATE TABLE outbox.replay (
	destination_id  integer     PRIMARY KEY REFERENCES outbox.destination ON DELETE CASCADE,
	since           timestamptz NOT NULL,
	started_at      timestamptz NOT NULL DEFAULT now(),
	events          bigint      NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('outbox.retained_topic', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.history', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.history_position_seq', '');

-- The archiver's handler: runs as the archiver's owner (the bootstrap
-- superuser), in the batch's transaction (G5: archived exactly once).
CREATE FUNCTION outbox.history_archive(event outbox.events)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO outbox.history (position, id, event_id, topic, aggregate_id, event_type,
	       payload, headers, created_at, deliver_after, txid, committed_at)
	VALUES (nextval('outbox.history_position_seq'), event.id, event.event_id, event.topic,
	        event.aggregate_id, event.event_type, event.payload, event.headers,
	        event.created_at, event.deliver_after, event.txid,
	        COALESCE(outbox.committed_at(event.txid), event.created_at))
$$;
COMMENT ON FUNCTION outbox.history_archive(outbox.events) IS
	'Internal: the handler of the archiver destination outbox.history.';

-- Internal: whether a role may read a topic (events/topic_acl.c), for the
-- filter of a rewind by the destination's owner.  Not STRICT: the planner
-- folds a strict call with a NULL constant before EXECUTE is checked.
CREATE FUNCTION outbox.role_may_read_topic(role oid, topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_role_may_read_topic'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION outbox.role_may_read_topic(oid, text) IS
	'Internal: whether a role may read a topic.';

-- Internal: whether the position of destination 'dest' is past the event
-- (txid, id): its transaction is visible in the tick the destination
-- starts from, or it is in the window being consumed and behind the
-- cursor (CURSOR_PASSED_SQL of src/dispatch/delivery.h).
CREATE FUNCTION outbox.position_passed(dest outbox.destination, txid xid8, id bigint)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE((SELECT pg_visible_in_snapshot(txid, t.snapshot)
	                   FROM outbox.tick t WHERE t.id = dest.tick_from), false)
	    OR COALESCE((SELECT pg_visible_in_snapshot(txid, t.snapshot)
	                        AND CASE WHEN dest.last_txid IS NULL THEN id <= dest.last_id
	                                 ELSE (outbox.committed_at(txid), txid, id)
	                                      <= (outbox.committed_at(dest.last_txid), dest.last_txid, dest.last_id)
	                            END
	                   FROM outbox.tick t WHERE t.id = dest.tick_to), false)
$$;
COMMENT ON FUNCTION outbox.position_passed(outbox.destination, xid8, bigint) IS
	'Internal: whether a destination''s position is past an event of the log.';

-- Internal: the committed events of retained topics (topic NULL: all) and
-- an aggregate (NULL: all) that the archiver has not archived yet: those
-- of the log ahead of its position that its subscriptions take, and its
-- retry rows (delayed or held back).  In one snapshot with outbox.history
-- they are exactly the retained events not in it (the archiver records
-- its position and the rows it archived in one transaction).
CREATE FUNCTION outbox.history_tail(p_topic text, p_aggregate text)
RETURNS TABLE (id bigint, event_id uuid, topic text, aggregate_id text, event_type text,
               payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload, e.headers,
	       e.created_at, e.deliver_after, e.txid,
	       COALESCE(outbox.committed_at(e.txid), e.created_at)
	  FROM outbox.destination a
	  JOIN outbox.events e
	    ON (p_topic IS NULL OR e.topic = p_topic)
	   AND (p_aggregate IS NULL OR e.aggregate_id = p_aggregate)
	 WHERE a.name = 'outbox.history'
	   AND EXISTS (SELECT 1 FROM outbox.subscription s
	                WHERE s.destination_id = a.id AND s.topic = e.topic
	                  AND NOT pg_visible_in_snapshot(e.txid, s.since))
	   AND NOT outbox.position_passed(a, e.txid, e.id)
	UNION ALL
	SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload, r.headers,
	       r.created_at, r.deliver_after, r.txid, COALESCE(r.committed_at, r.created_at)
	  FROM outbox.destination a
	  JOIN outbox.delivery_retry r ON r.destination_id = a.id
	 WHERE a.name = 'outbox.history'
	   AND (p_topic IS NULL OR r.topic = p_topic)
	   AND (p_aggregate IS NULL OR r.aggregate_id = p_aggregate)
$$;
COMMENT ON FUNCTION outbox.history_tail(text, text) IS
	'Internal: the committed events of retained topics not archived yet.';

-- Internal (src/events/history.c calls it with the extension's rights
-- after its checks): start or change the retention of a topic.
CREATE FUNCTION outbox.history_retain(p_topic text, p_keep interval)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	archiver outbox.destination;
BEGIN
	SELECT * INTO archiver FROM outbox.destination WHERE name = 'outbox.history';
	IF NOT FOUND THEN
		PERFORM outbox.create_destination('outbox.history', 'function',
			'{"function": "outbox.history_archive", "max_attempts": 2147483647}');
	ELSIF archiver.kind <> 'function'
	   OR archiver.config ->> 'function' <> 'outbox.history_archive' THEN
		RAISE EXCEPTION 'destination "outbox.history" is not the history archiver'
		      USING ERRCODE = 'duplicate_object',
		            HINT = 'The name outbox.history is reserved for the archiver of retained topics; rename or drop that destination.';
	END IF;
	INSERT INTO outbox.retained_topic (topic, keep) VALUES (p_topic, p_keep)
	    ON CONFLICT (topic) DO UPDATE SET keep = EXCLUDED.keep;
	IF NOT EXISTS (SELECT 1 FROM outbox.subscription s
	                 JOIN outbox.destination a ON a.id = s.destination_id
	                WHERE a.name = 'outbox.history' AND s.topic = p_topic) THEN
		PERFORM outbox.subscribe('outbox.history', p_topic);
	END IF;
END $$;
COMMENT ON FUNCTION outbox.history_retain(text, interval) IS
	'Internal: the body of outbox.retain_topic().';

-- Internal: stop retaining a topic and delete its history.
CREATE FUNCTION outbox.history_unretain(p_topic text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM outbox.retained_topic WHERE topic = p_topic;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'topic "%" is not retained', p_topic
		      USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM outbox.subscription s USING outbox.destination a
	 WHERE a.id = s.destination_id AND a.name = 'outbox.history' AND s.topic = p_topic;
	DELETE FROM outbox.delivery_retry r USING outbox.destination a
	 WHERE a.id = r.destination_id AND a.name = 'outbox.history' AND r.topic = p_topic;
	DELETE FROM outbox.history WHERE topic = p_topic;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_unretain(text) IS
	'Internal: the body of outbox.unretain_topic().';

-- Internal: an aggregate's history after a position, then its committed
-- events not archived yet (position NULL), in one snapshot (STABLE).
CREATE FUNCTION outbox.history_aggregate(p_topic text, p_aggregate text, p_after bigint)
RETURNS TABLE ("position" bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM outbox.retained_topic r WHERE r.topic = p_topic) THEN
		RAISE EXCEPTION 'topic "%" is not retained', p_topic
		      USING ERRCODE = 'object_not_in_prerequisite_state',
		            HINT = 'Call outbox.retain_topic() first; events committed after it are kept.';
	END IF;
	RETURN QUERY
	SELECT h.position, h.id, h.event_id, h.topic, h.aggregate_id, h.event_type, h.payload,
	       h.headers, h.created_at, h.deliver_after, h.txid, h.committed_at
	  FROM outbox.history h
	 WHERE h.topic = p_topic AND h.aggregate_id = p_aggregate AND h.position > p_after
	 ORDER BY h.position;
	RETURN QUERY
	SELECT NULL::bigint, t.*
	  FROM outbox.history_tail(p_topic, p_aggregate) t
	 ORDER BY t.committed_at, t.txid, t.id;
END $$;
COMMENT ON FUNCTION outbox.history_aggregate(text, text, bigint) IS
	'Internal: the body of outbox.aggregate_events().';

-- Internal (src/dispatch/replay.c, after its checks): queue the retained
-- events of a destination's subscriptions (or of one of them) committed at
-- or after 'since' as replay retry rows: those its position is past, or
-- that it would not take live; the events it will still take live come
-- live.  Not those it already has as a retry row or dead letter.
CREATE FUNCTION outbox.history_rewind(dest_id integer, since timestamptz, only_subscription bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	d outbox.destination;
	n bigint;
BEGIN
	SELECT * INTO d FROM outbox.destination WHERE id = dest_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination does not exist' USING ERRCODE = 'undefined_object';
	END IF;
	IF d.name = 'outbox.history' THEN
		RAISE EXCEPTION 'the history archiver cannot be rewound'
		      USING ERRCODE = 'wrong_object_type';
	END IF;
	WITH ev AS (
	       SELECT h.id, h.event_id, h.topic, h.aggregate_id, h.event_type, h.payload, h.headers,
	              h.created_at, h.deliver_after, h.txid, h.committed_at, h.position
	         FROM outbox.history h
	        WHERE h.committed_at >= since
	       UNION ALL
	       SELECT t.*, NULL::bigint FROM outbox.history_tail(NULL, NULL) t WHERE t.committed_at >= since)
	INSERT INTO outbox.delivery_retry AS r (destination_id, id, event_id, topic, aggregate_id,
	       event_type, payload, headers, created_at, deliver_after, txid, attempts,
	       next_attempt_at, committed_at, replay, "position")
	SELECT d.id, e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload,
	       e.headers, e.created_at, e.deliver_after, e.txid, 0,
	       GREATEST(now(), COALESCE(e.deliver_after, now())), e.committed_at, true, e.position
	  FROM ev e
	 WHERE EXISTS (SELECT 1 FROM outbox.subscription s
	                WHERE s.destination_id = d.id
	                  AND (only_subscription IS NULL OR s.id = only_subscription)
	                  AND (s.topic = '*' OR s.topic = e.topic)
	                  AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types)))
	   -- not an event the destination will still take live
	   AND (outbox.position_passed(d, e.txid, e.id)
	        OR NOT EXISTS (SELECT 1 FROM outbox.subscription s
	                        WHERE s.destination_id = d.id
	                          AND (s.topic = '*' OR s.topic = e.topic)
	                          AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
	                          AND NOT pg_visible_in_snapshot(e.txid, s.since)))
	   AND NOT EXISTS (SELECT 1 FROM outbox.dead_letter x
	                    WHERE x.destination_id = d.id AND x.id = e.id)
	   AND outbox.role_may_read_topic(d.owner, e.topic)
	ON CONFLICT (destination_id, id) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;

	INSERT INTO outbox.replay (destination_id, since, started_at, events)
	VALUES (d.id, since, now(), n)
	ON CONFLICT (destination_id) DO UPDATE
	   SET since = EXCLUDED.since, started_at = EXCLUDED.started_at, events = EXCLUDED.events;
	-- a destination backing off after failures starts the replay now
	UPDATE outbox.destination SET retry_at = NULL, consecutive_failures = 0 WHERE id = d.id AND n > 0;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_rewind(integer, timestamptz, bigint) IS
	'Internal: the body of outbox.rewind().';

-- Internal (housekeeping, src/worker/housekeeping.c): delete at most
-- max_rows events of retained topics older than their keep.
CREATE FUNCTION outbox.history_prune(max_rows integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM outbox.history
	 WHERE ctid = ANY (ARRAY(
	       SELECT x.ctid
	         FROM outbox.retained_topic r
	        CROSS JOIN LATERAL (
	              SELECT h.ctid FROM outbox.history h
	               WHERE h.topic = r.topic AND h.committed_at < now() - r.keep
	               LIMIT max_rows) x
	        WHERE r.keep IS NOT NULL
	        LIMIT max_rows));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_prune(integer) IS
	'Internal: delete retained events older than their topic''s keep (housekeeping).';

-- The version of event-sourced aggregates: the number of events appended
-- to each with outbox.append() (src/events/history.c, EXPECTED VERSION).
CREATE TABLE outbox.aggregate_version (
	topic         text   NOT NULL,
	aggregate_id  text   NOT NULL,
	version       bigint NOT NULL,
	PRIMARY KEY (topic, aggregate_id)
);
SELECT pg_catalog.pg_extension_config_dump('outbox.aggregate_version', '');

-- The API (C: the checks as the caller, then the bodies above with the
-- extension's rights).
CREATE FUNCTION outbox.retain_topic(topic text, keep interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_retain_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.retain_topic(text, interval) IS
	'Keep the events of a topic committed from now on in the history store (outbox.aggregate_events, outbox.rewind), for keep (NULL: forever); called again, changes keep. Topic owner or superuser only.';

CREATE FUNCTION outbox.unretain_topic(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_unretain_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.unretain_topic(text) IS
	'Stop retaining a topic and delete its history; returns the number of events deleted. Topic owner or superuser only.';

CREATE FUNCTION outbox.aggregate_events(topic text, aggregate_id text, after bigint DEFAULT 0)
RETURNS TABLE ("position" bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
AS 'MODULE_PATHNAME', 'outbox_saga_aggregate_events'
LANGUAGE C STABLE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION outbox.aggregate_events(text, text, bigint) IS
	'The retained events of an aggregate in commit order with their position (page with after => the last position seen), then its committed events not archived yet, with position NULL. Needs read on the topic.';

CREATE FUNCTION outbox.rewind(destination text, since timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_rewind'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.rewind(text, timestamptz) IS
	'Deliver again the retained events of a destination''s subscriptions committed at or after since (commit time), in commit order per aggregate, ahead of the live events of their aggregates; returns how many were queued. Owner or superuser only.';

-- subscribe() with a since: a function of its own, since subscribe() is
-- not overloaded (the Privileges table names functions without arguments,
-- and replacing it would drop the grants on it at ALTER EXTENSION UPDATE).
CREATE FUNCTION outbox.subscribe_since(
	destination text,
	since       timestamptz,
	topic       text   DEFAULT '*',
	event_types text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_subscribe_since'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.subscribe_since(text, timestamptz, text, text[]) IS
	'outbox.subscribe(destination, topic, event_types), and the delivery, ahead of the live events of their aggregates, of the retained events of that subscription committed at or after since (commit time). Returns the subscription id. Owner or superuser only.';

CREATE FUNCTION outbox.append(
	topic            text,
	aggregate_id     text,
	expected_version bigint,
	event_type       text,
	payload          jsonb DEFAULT '{}',
	headers          jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.append(text, text, bigint, text, jsonb, jsonb) IS
	'Write an event of an aggregate as outbox.emit() does, if the aggregate''s version (events appended with outbox.append) is expected_version (0: new); returns the new version. Otherwise, or when a concurrent append with the same expected version commits first, SQLSTATE 40001. Needs write on the topic.';

CREATE OR REPLACE VIEW outbox.stats WITH (security_barrier) AS
	WITH part AS MATERIALIZED (
	       SELECT p.rel, p.max_txid,
	              pg_catalog.pg_stat_get_live_tuples(p.rel) AS live,
	              pg_catalog.pg_total_relation_size(p.rel) AS bytes
	         FROM (VALUES ('outbox.events_p0'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p0)),
	                      ('outbox.events_p1'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p1)),
	                      ('outbox.events_p2'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p2)),
	                      ('outbox.events_p3'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p3))) p(rel, max_txid)
	        WHERE p.max_txid IS NOT NULL)
	SELECT d.name AS destination,
	       d.kind,
	       d.paused,
	       log.n + COALESCE(r.total, 0) AS pending,
	       CASE WHEN d.paused OR d.retry_at > pg_catalog.now() THEN 0
	            ELSE log.n + COALESCE(r.due, 0)
	       END AS ready,
	       ready_age.age AS oldest_ready_age,
	       COALESCE(r.retrying, 0) AS retrying,
	       COALESCE(dl.dead, 0) AS dead,
	       d.delivered_total,
	       d.failed_attempts_total,
	       d.last_delivered_at,
	       COALESCE(outbox.dispatch_status(), d.last_error) AS last_error,
	       d.last_error_at,
	       w.worker AS served_by,
	       w.wait_event,
	       CASE WHEN d.config -> 'ordered' = 'false'::jsonb THEN 'unordered'
	            WHEN pg_catalog.current_setting('track_commit_timestamp')::boolean THEN 'commit'
	            ELSE 'id'
	       END AS delivery_order,
	       pin.since AS holds_log_since,
	       pin.events AS pinned_events,
	       pin.bytes AS pinned_bytes,
	       COALESCE(pg_catalog.date_part('epoch', ready_age.age), 0) AS oldest_ready_age_seconds,
	       d.paused AND EXISTS (
	           SELECT 1 FROM outbox.dead_letter x
	            WHERE x.destination_id = d.id AND x.attempts > 0
	              AND x.last_error LIKE 'HTTP 410%') AS paused_by_410,
	       COALESCE(r.replay, 0) AS replay_pending,
	       CASE WHEN r.replay > 0 THEN rp.since END AS replay_since
	  FROM outbox.destination d
	  LEFT JOIN outbox.replay rp ON rp.destination_id = d.id
	 CROSS JOIN (SELECT last_value FROM outbox.events_id_seq) seq
	  LEFT JOIN (
	       SELECT ws.destination_id, ws.worker, ws.wait_event FROM outbox.worker_status() ws
	        WHERE ws.database = pg_catalog.current_database()
	          AND ws.destination_id IS NOT NULL) w ON w.destination_id = d.id
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS total,
	              count(*) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS due,
	              count(*) FILTER (WHERE rr.attempts > 0) AS retrying,
	              min(rr.created_at) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS oldest_due,
	              count(*) FILTER (WHERE rr.replay) AS replay
	         FROM outbox.delivery_retry rr WHERE rr.destination_id = d.id) r ON true
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS dead FROM outbox.dead_letter x WHERE x.destination_id = d.id) dl ON true
	  LEFT JOIN LATERAL (
	       SELECT t.id AS tick,
	              (SELECT pg_catalog.min(o.created_at) FROM (
	                     (SELECT e.created_at FROM outbox.events e
	                       WHERE e.txid >= pg_catalog.pg_snapshot_xmax(t.snapshot)
	                       ORDER BY e.txid LIMIT 1)
	                     UNION ALL
	                     SELECT (SELECT e.created_at FROM outbox.events e
	                              WHERE e.txid = x.txid LIMIT 1)
	                       FROM pg_catalog.pg_snapshot_xip(t.snapshot) x(txid)) o)
	                  AS created_at
	         FROM outbox.tick t
	        WHERE t.id = d.tick_from) owed ON true
	  LEFT JOIN LATERAL (
	       SELECT e.created_at FROM outbox.events e
	        WHERE owed.tick IS NULL AND e.id > d.done_id ORDER BY e.txid, e.id LIMIT 1) head ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN owed.tick IS NOT NULL AND owed.created_at IS NULL THEN 0
	                   ELSE GREATEST(seq.last_value - d.done_id, 0)
	              END AS n) log ON true
	  LEFT JOIN LATERAL (
	       SELECT t.created_at AS since,
	              COALESCE(sum(p.live), 0)::bigint AS events,
	              COALESCE(sum(p.bytes), 0)::bigint AS bytes
	         FROM outbox.tick t
	         LEFT JOIN part p ON p.max_txid >= pg_catalog.pg_snapshot_xmin(t.snapshot)
	        WHERE t.id = d.tick_from
	        GROUP BY t.created_at) pin ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN d.paused THEN NULL
	                   ELSE pg_catalog.now() - LEAST(r.oldest_due, owed.created_at, head.created_at)
	              END AS age) ready_age ON true
	 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
	    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW outbox.stats IS
	'One row per destination the current role owns (every one for superusers and pg_monitor / pg_read_all_stats): backlog, retries, dead letters, counters, the last error, what it holds of the log (holds_log_since, pinned_events, pinned_bytes: estimates per partition), the oldest ready age in seconds and whether an http 410 paused it (for contrib/prometheus/queries.yaml), and a replay in progress (replay_pending: events outbox.rewind queued and not yet delivered; replay_since: its since).';

REVOKE ALL ON FUNCTION
	outbox.history_archive(outbox.events),
	outbox.role_may_read_topic(oid, text),
	outbox.position_passed(outbox.destination, xid8, bigint),
	outbox.history_tail(text, text),
	outbox.history_retain(text, interval),
	outbox.history_unretain(text),
	outbox.history_aggregate(text, text, bigint),
	outbox.history_rewind(integer, timestamptz, bigint),
	outbox.history_prune(integer),
	outbox.retain_topic(text, interval),
	outbox.unretain_topic(text),
	outbox.aggregate_events(text, text, bigint),
	outbox.rewind(text, timestamptz),
	outbox.subscribe_since(text, timestamptz, text, text[]),
	outbox.append(text, text, bigint, text, jsonb, jsonb)
  FROM PUBLIC;
REVOKE ALL ON outbox.retained_topic, outbox.history, outbox.replay, outbox.aggregate_version
  FROM PUBLIC;
REVOKE ALL ON SEQUENCE outbox.history_position_seq FROM PUBLIC;
-- end of issue 16 items 2, 3, 4

-- issue 18: saga rounds (item 3: a pass's fixed cost).  Dispatcher 0 runs
-- its saga round only when saga work was committed (a counter in shared
-- memory that saga.start, complete_step, cancel, retry,
-- register_compensation and saga.resume bump at commit), fell due or was
-- left over, and at the poll interval (src/saga/saga_driver.c).
-- saga.resume (issue 13 block above), written in SQL, counts its work
-- through outbox.saga_work_changed().
CREATE FUNCTION outbox.saga_work_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_saga_work_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION outbox.saga_work_changed() IS
	'Internal: when the transaction commits, tells the dispatcher that saga state changed, so that its next saga round runs (called by saga.resume).';
REVOKE ALL ON FUNCTION outbox.saga_work_changed() FROM PUBLIC;
-- end of issue 18: saga rounds

-- issue 18: the drain (item 4).  The log's txid index also holds the id, so
-- that the dispatcher reads a window's transactions and the ids they span
-- from the index alone (src/events/logscan.c, window_order_build) instead of
-- fetching every event's row once more before its page reads it.  The
-- partitions' indexes keep their names (created first, then attached); the
-- rebuild holds the log's writers for as long as it takes (the log holds
-- only the events not yet retired).
DROP INDEX outbox.events_txid_idx;
CREATE INDEX events_p0_txid_idx ON outbox.events_p0 (txid, id);
CREATE INDEX events_p1_txid_idx ON outbox.events_p1 (txid, id);
CREATE INDEX events_p2_txid_idx ON outbox.events_p2 (txid, id);
CREATE INDEX events_p3_txid_idx ON outbox.events_p3 (txid, id);
CREATE INDEX events_txid_idx ON outbox.events (txid, id);
-- end of issue 18: the drain

-- issue 18: capture at the limit.  The log loses its index on id alone:
-- every write paid for it (a tenth of a captured INSERT), and nothing reads
-- by it any more - the dispatcher reads windows, in commit order and in id
-- order, through the (txid, id) index (src/events/logscan.c), and
-- housekeeping finds a partition's newest event and a generation's events
-- through it (src/worker/housekeeping.c).  Windows a destination began
-- under 0.1.0 in id order go on from the same position.  The two views
-- that read the log by id are changed where this script defines them last
-- (0.2.0 is not released): outbox.stats (issue 16 block) counts the backlog
-- in ids from the id sequence and takes a lost position's oldest event by
-- (txid, id), outbox.database_stats (issue 17 item 1) takes the oldest
-- event as the first of the oldest transaction.
DROP INDEX outbox.events_id_idx;
-- end of issue 18: capture at the limit

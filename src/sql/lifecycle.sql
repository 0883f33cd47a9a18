
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

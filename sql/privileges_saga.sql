-- Sagas and their roles (issue 12 item 9): saga.complete_step, saga.cancel
-- and saga.retry act only on sagas whose definition owner or starter the
-- caller has the privileges of; saga.start's input and complete_step's
-- result are at most 1 MB (54000); saga.drop_definition frees a name (its
-- owner only, never while a saga of it is unfinished).
\set VERBOSITY terse
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_of(text) TO PUBLIC;
CREATE FUNCTION pg_temp.wait_status(id uuid, wanted text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	LOOP
		IF (SELECT status = wanted FROM saga.instances WHERE instances.id = wait_status.id) THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM outbox.wait_idle('1 second');
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
CREATE FUNCTION pg_temp.wait_step(id uuid, wanted text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	LOOP
		IF EXISTS (SELECT 1 FROM saga.step_run r WHERE r.saga_id = wait_step.id
		            AND r.phase = 'action' AND r.status = wanted) THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;

CREATE ROLE regress_sp_owner;
CREATE ROLE regress_sp_starter;
CREATE ROLE regress_sp_other;
GRANT EXECUTE ON FUNCTION saga.define(text, jsonb, jsonb), saga.drop_definition(text),
                          outbox.emit(text, text, jsonb, text, jsonb, timestamptz)
   TO regress_sp_owner, regress_sp_other;
GRANT EXECUTE ON FUNCTION saga.start(text, jsonb, text), saga.complete_step(uuid, text, boolean, jsonb),
                          saga.cancel(uuid, text), saga.retry(uuid)
   TO regress_sp_starter, regress_sp_other;

SET ROLE regress_sp_owner;
SELECT saga.define('sp_flow', '[{"name": "wait", "timeout": "1 hour",
	"action": {"emit": {"topic": "sp", "event_type": "sp.cmd", "await": true}}}]');
SET ROLE regress_sp_starter;
-- input size
SELECT pg_temp.sqlstate_of($$SELECT saga.start('sp_flow',
	jsonb_build_object('blob', repeat('x', 1100000)))$$) AS start_2mb;
SELECT saga.start('sp_flow', jsonb_build_object('blob', repeat('x', 1100000)));
SELECT saga.start('sp_flow', '{"n": 1}') AS s1 \gset
-- its step has emitted (the topic "sp" is the definition owner's from
-- now on) before the other roles try their hands on it
RESET ROLE;
SELECT pg_temp.wait_step(:'s1', 'waiting');
SET ROLE regress_sp_starter;
SELECT pg_temp.sqlstate_of(format($$SELECT saga.complete_step(%L, 'wait', true,
	jsonb_build_object('blob', repeat('x', 1100000)))$$, :'s1')) AS result_2mb;

-- another role with EXECUTE on everything cannot act on it
SET ROLE regress_sp_other;
SELECT saga.cancel(:'s1', 'not mine');
SELECT saga.complete_step(:'s1', 'wait', true);
SELECT saga.retry(:'s1');
-- nor drop the definition, nor redefine it
SELECT saga.drop_definition('sp_flow');
SELECT pg_temp.sqlstate_of($$SELECT saga.define('sp_flow', '[{"name": "x",
	"action": {"emit": {"topic": "sp", "event_type": "x"}}}]')$$) AS squat;
-- the owner cannot drop it while a saga of it runs
SET ROLE regress_sp_owner;
SELECT saga.drop_definition('sp_flow');
-- the starter may cancel it
SET ROLE regress_sp_starter;
SELECT saga.cancel(:'s1', 'by the starter');
RESET ROLE;
SELECT pg_temp.wait_status(:'s1', 'cancelled');
SELECT status, started_by::regrole FROM saga.instance WHERE id = :'s1';

-- now the owner drops it; the name is free for another role
SET ROLE regress_sp_owner;
SELECT saga.drop_definition('sp_flow');
SELECT saga.drop_definition('sp_flow');
SELECT saga.drop_definition(NULL);
RESET ROLE;
SELECT count(*) AS left_behind FROM (
	SELECT 1 FROM saga.definition WHERE name = 'sp_flow' UNION ALL
	SELECT 1 FROM saga.definition_name WHERE name = 'sp_flow' UNION ALL
	SELECT 1 FROM saga.instance WHERE definition = 'sp_flow' UNION ALL
	SELECT 1 FROM saga.step_run WHERE saga_id = :'s1') x;
SET ROLE regress_sp_other;
SELECT saga.define('sp_flow', '[{"name": "x",
	"action": {"emit": {"topic": "sp", "event_type": "x"}}}]') AS version;
RESET ROLE;
SELECT name, version, owner FROM saga.definitions WHERE name = 'sp_flow';
SET ROLE regress_sp_other;
SELECT saga.drop_definition('sp_flow');
RESET ROLE;

REVOKE ALL ON FUNCTION saga.define(text, jsonb, jsonb), saga.drop_definition(text),
                       outbox.emit(text, text, jsonb, text, jsonb, timestamptz),
                       saga.start(text, jsonb, text), saga.complete_step(uuid, text, boolean, jsonb),
                       saga.cancel(uuid, text), saga.retry(uuid)
  FROM regress_sp_owner, regress_sp_starter, regress_sp_other;
-- Topics the roles own or were granted name them by OID: give them back first.
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_sp_owner', 'regress_sp_starter', 'regress_sp_other'))) x;
SELECT count(*) AS topic_privileges_revoked FROM (
  SELECT outbox.revoke_topic(g.topic, g.grantee, g.privilege) FROM outbox.topic_grant g
   WHERE g.grantee::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_sp_owner', 'regress_sp_starter', 'regress_sp_other'))) x;
DROP ROLE regress_sp_owner, regress_sp_starter, regress_sp_other;

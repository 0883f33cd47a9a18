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

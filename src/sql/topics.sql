
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

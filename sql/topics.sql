--
-- Topics: owners, read and write privileges (G14), and bad input (G11).
--
CREATE ROLE regress_topic_owner;
CREATE ROLE regress_topic_other;
CREATE ROLE regress_topic_group;
GRANT EXECUTE ON FUNCTION outbox.create_topic(text), outbox.alter_topic_owner(text, regrole),
	outbox.grant_topic(text, regrole, text), outbox.revoke_topic(text, regrole, text),
	outbox.emit(text, text, jsonb, text, jsonb, timestamptz)
  TO regress_topic_owner, regress_topic_other;
GRANT SELECT ON outbox.topics TO regress_topic_owner, regress_topic_other;

-- A superuser's emit into a topic nobody owns creates no topic.
SELECT outbox.emit('topic_su', 'x') IS NOT NULL AS emitted;
SELECT count(*) FROM outbox.topic WHERE name = 'topic_su';

SET ROLE regress_topic_owner;
SELECT outbox.create_topic('topic_a');
SELECT outbox.create_topic('topic_a');
SELECT outbox.create_topic(NULL);
SELECT outbox.create_topic('two words');
SELECT outbox.create_topic('*');
SELECT outbox.create_topic('');
-- The first emit into a new topic makes the emitting role its owner.
SELECT outbox.emit('topic_b', 'x') IS NOT NULL AS emitted;
SELECT name, owner, readers, writers FROM outbox.topics ORDER BY name;
RESET ROLE;

-- Another role may neither write, nor grant, nor take the topic.
SET ROLE regress_topic_other;
SELECT outbox.emit('topic_a', 'x');
SELECT outbox.grant_topic('topic_a', 'regress_topic_other', 'write');
SELECT outbox.alter_topic_owner('topic_a', 'regress_topic_other');
SELECT name FROM outbox.topics ORDER BY name;
SELECT outbox.has_topic_privilege('topic_a', 'read') AS r,
       outbox.has_topic_privilege('topic_a', 'write') AS w,
       outbox.has_topic_privilege('topic_none', 'read') AS none;
RESET ROLE;

-- Grants: bad input first, nothing changes.
SET ROLE regress_topic_owner;
SELECT outbox.grant_topic('topic_a', 'regress_topic_other', 'delete');
SELECT outbox.grant_topic('topic_a', 'regress_topic_other', NULL);
SELECT outbox.grant_topic('topic_a', NULL, 'read');
SELECT outbox.grant_topic('topic_none', 'regress_topic_other', 'read');
SELECT outbox.grant_topic('topic_a', 4000000000::oid::regrole, 'read');
SELECT outbox.grant_topic('topic_a', 'regress_topic_other', 'WRITE');
SELECT outbox.grant_topic('topic_a', 'regress_topic_other', 'write');
SELECT outbox.grant_topic('topic_a', 'regress_topic_group', 'read');
SELECT name, owner, readers, writers FROM outbox.topics ORDER BY name;
RESET ROLE;

SET ROLE regress_topic_other;
SELECT outbox.emit('topic_a', 'x') IS NOT NULL AS emitted;
SELECT outbox.has_topic_privilege('topic_a', 'read') AS r,
       outbox.has_topic_privilege('topic_a', 'write') AS w;
SELECT outbox.has_topic_privilege('topic_a', 'own');
RESET ROLE;
-- Read through membership of a grantee.
GRANT regress_topic_group TO regress_topic_other;
SET ROLE regress_topic_other;
SELECT outbox.has_topic_privilege('topic_a', 'read') AS r;
RESET ROLE;
REVOKE regress_topic_group FROM regress_topic_other;
SET ROLE regress_topic_other;
SELECT outbox.has_topic_privilege('topic_a', 'read') AS r;
RESET ROLE;

-- A revoke takes effect in the same session.
SET ROLE regress_topic_owner;
SELECT outbox.revoke_topic('topic_a', 'regress_topic_other', 'write');
SELECT outbox.revoke_topic('topic_a', 'regress_topic_other', 'write');
RESET ROLE;
SET ROLE regress_topic_other;
SELECT outbox.emit('topic_a', 'x');
RESET ROLE;

-- A new owner: the caller must be able to act as both.
SET ROLE regress_topic_owner;
SELECT outbox.alter_topic_owner('topic_a', 'regress_topic_other');
RESET ROLE;
SELECT outbox.alter_topic_owner('topic_a', 'regress_topic_other');
SELECT outbox.alter_topic_owner('topic_a', NULL);
SELECT name, owner FROM outbox.topics WHERE name = 'topic_a';
SET ROLE regress_topic_other;
SELECT outbox.emit('topic_a', 'x') IS NOT NULL AS emitted;
RESET ROLE;

-- Clean up.
DELETE FROM outbox.topic WHERE name IN ('topic_a', 'topic_b');
TRUNCATE outbox.events;
REVOKE ALL ON FUNCTION outbox.create_topic(text), outbox.alter_topic_owner(text, regrole),
	outbox.grant_topic(text, regrole, text), outbox.revoke_topic(text, regrole, text),
	outbox.emit(text, text, jsonb, text, jsonb, timestamptz)
  FROM regress_topic_owner, regress_topic_other;
REVOKE ALL ON outbox.topics FROM regress_topic_owner, regress_topic_other;
DROP ROLE regress_topic_owner, regress_topic_other, regress_topic_group;

-- Guards of issue 12 item 9: the DROP ROLE guard tells destination names
-- only to a role that may drop the role; capture_table refuses the
-- extension's own tables; wait_idle accepts at most one day, without
-- overflow.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.error_text(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text; m text; d text;
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
	RETURN concat_ws(' | ', s, m, d);
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.error_text(text) TO PUBLIC;

-- DROP ROLE guard
CREATE ROLE regress_guard_owner;
CREATE ROLE regress_guard_plain;
CREATE ROLE regress_guard_admin CREATEROLE;
-- From 16 a CREATEROLE role may drop only the roles it has ADMIN OPTION on.
GRANT regress_guard_owner TO regress_guard_admin WITH ADMIN OPTION;
GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb) TO regress_guard_owner;
SET ROLE regress_guard_owner;
SELECT outbox.create_destination('guarded_secret_name', 'notify', '{"channel": "g"}');
SET ROLE regress_guard_plain;
-- (core's refusal, whose detail differs between majors: left out)
SELECT regexp_replace(pg_temp.error_text('DROP ROLE regress_guard_owner'), ' \| [^|]*$', '')
  AS plain_role;
SET ROLE regress_guard_admin;
SELECT pg_temp.error_text('DROP ROLE regress_guard_owner') AS createrole_role;
RESET ROLE;
SELECT pg_temp.error_text('DROP ROLE regress_guard_owner') AS superuser;
SELECT outbox.drop_destination('guarded_secret_name');
REVOKE ALL ON FUNCTION outbox.create_destination(text, text, jsonb) FROM regress_guard_owner;
DROP ROLE regress_guard_owner, regress_guard_plain, regress_guard_admin;

-- A topic's owner and grantees are role OIDs too: DROP ROLE is refused
-- until the topic has another owner and the privilege is revoked.
CREATE ROLE regress_topic_owner;
CREATE ROLE regress_topic_reader;
SELECT outbox.create_topic('guarded_topic');
SELECT outbox.alter_topic_owner('guarded_topic', 'regress_topic_owner');
SELECT outbox.grant_topic('guarded_topic', 'regress_topic_reader', 'read');
SELECT pg_temp.error_text('DROP ROLE regress_topic_owner') AS topic_owner;
SELECT pg_temp.error_text('DROP ROLE regress_topic_reader') AS topic_reader;
SELECT outbox.revoke_topic('guarded_topic', 'regress_topic_reader', 'read');
SELECT outbox.alter_topic_owner('guarded_topic', current_user::regrole);
DROP ROLE regress_topic_owner, regress_topic_reader;

-- capture_table refuses the extension's own tables, even for a superuser
SELECT t, pg_temp.error_text(format('SELECT outbox.capture_table(%L)', t)) AS refused
  FROM (VALUES ('outbox.destination'), ('outbox.subscription'), ('outbox.dead_letter'),
               ('saga.instance'), ('saga.definition'), ('outbox.events')) v(t)
 ORDER BY t;
SELECT count(*) AS capture_triggers FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace IN ('outbox'::regnamespace, 'saga'::regnamespace)
   AND t.tgfoid = 'outbox.capture()'::regprocedure;
-- an ordinary table still works
CREATE TABLE public.guard_t (id int PRIMARY KEY);
SELECT outbox.capture_table('public.guard_t');
SELECT outbox.uncapture_table('public.guard_t');
DROP TABLE public.guard_t;

-- wait_idle: positive, at most one day
SELECT i, pg_temp.error_text(format('SELECT outbox.wait_idle(%L)', i)) AS result
  FROM (VALUES ('1000 hours'), ('25 hours'), ('24 hours 1 microsecond'),
               ('1 day 1 second'), ('2 days'), ('1 mon'), ('-1 second'), ('0'),
               ('2562047788 hours'), ('-2562047788 hours'), ('1 day -1 hours 30 minutes'),
               ('106751991 days')) v(i)
 ORDER BY i;
SELECT outbox.wait_idle('0.5 seconds') IS NOT NULL AS short_ok;

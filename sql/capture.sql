--
-- capture: the outbox.capture() trigger, outbox.capture_table() and
-- outbox.uncapture_table(): what is captured, with which topic, type, key
-- and headers, and every way to misuse them (an error that changes nothing).
--
TRUNCATE outbox.events;
CREATE TEMP VIEW ev AS
	SELECT topic, aggregate_id, event_type, headers, payload
	FROM outbox.events ORDER BY id;

--
-- capture_table() with its defaults: every operation, the primary key as
-- aggregate_id, the table name as topic.
--
CREATE TABLE orders (id integer PRIMARY KEY, status text, amount numeric(10,2));
SELECT outbox.capture_table('orders');
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = 'orders'::regclass;
INSERT INTO orders VALUES (1, 'new', 10.00), (2, 'new', 20.50);
UPDATE orders SET status = 'paid' WHERE id = 1;
-- An UPDATE that changes nothing is still captured (no ignore= given).
UPDATE orders SET status = status WHERE id = 2;
DELETE FROM orders WHERE id = 2;
SELECT * FROM ev;
TRUNCATE outbox.events;

-- An UPDATE of the key: aggregate_id is the new key, the old one is a header.
UPDATE orders SET id = 10 WHERE id = 1;
SELECT aggregate_id, headers, payload->'new'->'id' AS new_id,
	   payload->'old'->'id' AS old_id FROM ev;
TRUNCATE outbox.events;

-- Events exist iff the change commits (G1).
BEGIN;
INSERT INTO orders VALUES (3, 'new', 1);
ROLLBACK;
BEGIN;
INSERT INTO orders VALUES (4, 'new', 1);
SAVEPOINT s;
INSERT INTO orders VALUES (5, 'new', 1);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT aggregate_id, event_type FROM ev;
TRUNCATE outbox.events;

-- A second capture is refused, and changes nothing.
SELECT outbox.capture_table('orders', topic => 'other');
SELECT count(*) AS capture_triggers FROM pg_trigger
WHERE tgrelid = 'orders'::regclass;
SELECT outbox.uncapture_table('orders');
SELECT count(*) AS capture_triggers FROM pg_trigger
WHERE tgrelid = 'orders'::regclass;
INSERT INTO orders VALUES (6, 'new', 1);
SELECT count(*) FROM outbox.events;
SELECT outbox.uncapture_table('orders');

-- operations, topic and ignore_columns.
SELECT outbox.capture_table('orders', topic => 'shop.orders',
							operations => '{insert,Delete}');
INSERT INTO orders VALUES (7, 'new', 1);
UPDATE orders SET status = 'paid' WHERE id = 7;
DELETE FROM orders WHERE id = 7;
SELECT topic, aggregate_id, event_type FROM ev;
SELECT outbox.uncapture_table('orders');
TRUNCATE outbox.events;
ALTER TABLE orders ADD COLUMN touched_at integer DEFAULT 0;
SELECT outbox.capture_table('orders', operations => '{UPDATE}',
							ignore_columns => '{touched_at}');
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
UPDATE orders SET touched_at = 1;
SELECT count(*) FROM outbox.events;
UPDATE orders SET touched_at = 2, status = 'shipped' WHERE id = 10;
-- NULL to value and value to NULL are changes.
UPDATE orders SET amount = NULL WHERE id = 4;
SELECT aggregate_id, payload->'new'->>'status' AS status,
	   payload->'new'->'amount' AS amount FROM ev;
SELECT outbox.uncapture_table('orders');
DROP TABLE orders;
TRUNCATE outbox.events;

--
-- The trigger's arguments, written by hand.
--
CREATE TABLE accounts (
	tenant    text,
	num       integer,
	"Owner"   text,
	"a,b"     integer,
	secret    text,
	PRIMARY KEY (tenant, num)
);
CREATE TRIGGER capture_accounts AFTER INSERT OR UPDATE OR DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture(
		'topic=billing.accounts', 'type_insert=AccountOpened',
		'type_update=AccountChanged', 'type_delete=AccountClosed',
		'columns=num, "Owner", "a,b"', 'ignore=secret');
-- Composite primary key: values joined with ':' in key order.
INSERT INTO accounts VALUES ('acme', 1, 'Ann', 5, 'pw1');
UPDATE accounts SET secret = 'pw2';
UPDATE accounts SET "Owner" = 'Bob';
DELETE FROM accounts;
SELECT * FROM ev;
TRUNCATE outbox.events;
-- CREATE OR REPLACE TRIGGER keeps the trigger's OID; its new arguments apply.
CREATE OR REPLACE TRIGGER capture_accounts AFTER INSERT OR UPDATE OR DELETE
	ON accounts FOR EACH ROW EXECUTE FUNCTION outbox.capture('topic=billing.v2');
INSERT INTO accounts VALUES ('acme', 1, 'Ann', 5, 'pw1');
SELECT topic, aggregate_id, event_type, payload->'new' AS new FROM ev;
-- A table captured by hand is captured: capture_table() would double events.
SELECT outbox.capture_table('accounts');
DELETE FROM accounts;
TRUNCATE outbox.events;
DROP TRIGGER capture_accounts ON accounts;

-- key= overrides the primary key; its order is the order of the values.
CREATE TRIGGER capture_accounts AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key="Owner",num,tenant');
INSERT INTO accounts VALUES ('acme', 2, 'Cy', NULL, NULL);
-- A NULL key component: the event belongs to no aggregate.
INSERT INTO accounts VALUES ('acme', 3, NULL, NULL, NULL);
-- So does an empty one-column key (aggregate ids are never empty).
DROP TRIGGER capture_accounts ON accounts;
CREATE TRIGGER capture_accounts AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key="Owner"');
INSERT INTO accounts VALUES ('acme', 4, '', NULL, NULL);
SELECT topic, aggregate_id, aggregate_id IS NULL AS no_aggregate, event_type
FROM ev;
TRUNCATE outbox.events;
DROP TRIGGER capture_accounts ON accounts;

-- A key value over 1024 bytes (the limit of aggregate_id) fails the write.
CREATE TRIGGER capture_accounts AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key="Owner"');
INSERT INTO accounts VALUES ('acme', 5, repeat('x', 1025), NULL, NULL);
SELECT count(*) FROM accounts WHERE num = 5;
-- So does a payload over outbox_saga.max_payload_size.
SET outbox_saga.max_payload_size = 1024;
INSERT INTO accounts VALUES ('acme', 5, 'Dee', NULL, repeat('y', 2000));
RESET outbox_saga.max_payload_size;
SELECT count(*) FROM outbox.events;
DROP TRIGGER capture_accounts ON accounts;

--
-- Misuse of the trigger: errors when it fires, and the write is undone.
--
-- Not AFTER ... FOR EACH ROW.
CREATE TRIGGER bad BEFORE INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture();
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH STATEMENT EXECUTE FUNCTION outbox.capture();
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE VIEW accounts_v AS SELECT * FROM accounts;
CREATE TRIGGER bad INSTEAD OF INSERT ON accounts_v
	FOR EACH ROW EXECUTE FUNCTION outbox.capture();
INSERT INTO accounts_v VALUES ('acme', 6);
DROP VIEW accounts_v;
CREATE TRIGGER bad AFTER TRUNCATE ON accounts
	FOR EACH STATEMENT EXECUTE FUNCTION outbox.capture();
TRUNCATE accounts;
DROP TRIGGER bad ON accounts;
-- Bad arguments.
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('topic');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('colour=red');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('topic=a', 'topic=b');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('topic=');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('topic=has space');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('type_insert=');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture(E'type_update=a\tb');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
-- Bad column lists.
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key=nope');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
-- Unquoted names are folded to lower case, as in SQL.
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('columns=Owner');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('ignore=num,ctid');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key=');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('columns=num,"unterminated');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
CREATE TRIGGER bad AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('key=num,NUM');
INSERT INTO accounts VALUES ('acme', 6);
DROP TRIGGER bad ON accounts;
-- None of these wrote a row or an event.
SELECT count(*) AS rows FROM accounts WHERE num >= 5;
SELECT count(*) AS events FROM outbox.events;
DROP TABLE accounts;

--
-- Tables without a primary key need a key.
--
CREATE TABLE audit_log (at integer, who text, what text);
SELECT outbox.capture_table('audit_log');
CREATE TRIGGER bad AFTER INSERT ON audit_log
	FOR EACH ROW EXECUTE FUNCTION outbox.capture();
INSERT INTO audit_log VALUES (1, 'ann', 'login');
DROP TRIGGER bad ON audit_log;
SELECT outbox.capture_table('audit_log', key_columns => '{who}');
INSERT INTO audit_log VALUES (1, 'ann', 'login');
SELECT aggregate_id, event_type, payload->'new' AS new FROM ev;
SELECT outbox.uncapture_table('audit_log');
DROP TABLE audit_log;
TRUNCATE outbox.events;

--
-- capture_table() validates everything before it creates anything.
--
CREATE TABLE items (id integer PRIMARY KEY, name text);
SELECT outbox.capture_table(NULL);
SELECT outbox.capture_table('no_such_table');
SELECT outbox.capture_table('items', operations => NULL);
SELECT outbox.capture_table('items', operations => '{}');
SELECT outbox.capture_table('items', operations => '{INSERT,TRUNCATE}');
SELECT outbox.capture_table('items', operations => '{INSERT,NULL}');
SELECT outbox.capture_table('items', topic => '');
SELECT outbox.capture_table('items', topic => 'a*b');
SELECT outbox.capture_table('items', key_columns => '{}');
SELECT outbox.capture_table('items', key_columns => '{id,nope}');
SELECT outbox.capture_table('items', key_columns => '{""}');
SELECT outbox.capture_table('items', key_columns => '{id,NULL}');
SELECT outbox.capture_table('items', key_columns => '{id,id}');
SELECT outbox.capture_table('items', ignore_columns => '{}');
SELECT outbox.capture_table('items', ignore_columns => '{Name}');
CREATE VIEW items_v AS SELECT * FROM items;
SELECT outbox.capture_table('items_v');
DROP VIEW items_v;
-- The default topic is the table name, which must be a valid topic.
CREATE TABLE "line items" (id integer PRIMARY KEY);
SELECT outbox.capture_table('"line items"');
SELECT outbox.capture_table('"line items"', topic => 'line-items');
INSERT INTO "line items" VALUES (1);
SELECT topic, event_type FROM ev;
DROP TABLE "line items";
TRUNCATE outbox.events;
-- Nothing was created by the failed calls.
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'items'::regclass;
INSERT INTO items VALUES (1, 'x');
SELECT count(*) AS events FROM outbox.events;
-- uncapture_table() of what is not captured.
SELECT outbox.uncapture_table('items');
SELECT outbox.uncapture_table(NULL);
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql
	AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER outbox_capture AFTER INSERT ON items
	FOR EACH ROW EXECUTE FUNCTION pg_temp.noop();
SELECT outbox.capture_table('items');
SELECT outbox.uncapture_table('items');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'items'::regclass;
DROP TABLE items;

--
-- Hostile names are quoted: nothing is injected into the trigger.
--
CREATE TABLE "odd ""table""; drop table x" (
	"key'); drop table x; --" integer PRIMARY KEY,
	"b,c" text,
	"D" text
);
SELECT outbox.capture_table('"odd ""table""; drop table x"',
							topic => 'it''s\a.topic',
							key_columns => ARRAY['key''); drop table x; --', 'b,c'],
							ignore_columns => '{D}');
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'outbox_capture';
INSERT INTO "odd ""table""; drop table x" VALUES (1, 'x:y', 'd');
UPDATE "odd ""table""; drop table x" SET "D" = 'e';
SELECT topic, aggregate_id, event_type, payload->>'table' AS "table" FROM ev;
SELECT outbox.uncapture_table('"odd ""table""; drop table x"');
DROP TABLE "odd ""table""; drop table x";
TRUNCATE outbox.events;

--
-- Privileges: capture_table() needs the TRIGGER privilege on the table and
-- EXECUTE on outbox.capture(); writing to a captured table needs nothing
-- from the outbox, and the event is written as the writing role.
--
CREATE ROLE regress_capture_owner;
CREATE ROLE regress_capture_writer;
GRANT USAGE, CREATE ON SCHEMA public TO regress_capture_owner;
GRANT EXECUTE ON FUNCTION outbox.capture_table(regclass, text, text[], text[], text[]),
	outbox.uncapture_table(regclass)
	TO regress_capture_owner, regress_capture_writer;
SET ROLE regress_capture_owner;
CREATE TABLE owned (id integer PRIMARY KEY);
GRANT INSERT ON owned TO regress_capture_writer;
SELECT outbox.capture_table('owned');
RESET ROLE;
GRANT EXECUTE ON FUNCTION outbox.capture() TO regress_capture_owner;
SET ROLE regress_capture_writer;
SELECT outbox.capture_table('owned');
RESET ROLE;
SET ROLE regress_capture_owner;
SELECT outbox.capture_table('owned');
RESET ROLE;
SET ROLE regress_capture_writer;
INSERT INTO owned VALUES (1);
SELECT outbox.uncapture_table('owned');
RESET ROLE;
SELECT aggregate_id, event_type FROM ev;
SET ROLE regress_capture_owner;
SELECT outbox.uncapture_table('owned');
DROP TABLE owned;
RESET ROLE;
REVOKE ALL ON SCHEMA public FROM regress_capture_owner;
REVOKE ALL ON FUNCTION outbox.capture_table(regclass, text, text[], text[], text[]),
	outbox.uncapture_table(regclass), outbox.capture()
	FROM regress_capture_owner, regress_capture_writer;
-- Topics the roles own or were granted name them by OID: give them back first.
SELECT count(*) AS topics_given_back FROM (
  SELECT outbox.alter_topic_owner(t.name, current_user::regrole) FROM outbox.topic t
   WHERE t.owner::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_capture_owner', 'regress_capture_writer'))) x;
SELECT count(*) AS topic_privileges_revoked FROM (
  SELECT outbox.revoke_topic(g.topic, g.grantee, g.privilege) FROM outbox.topic_grant g
   WHERE g.grantee::oid IN (SELECT oid FROM pg_roles WHERE rolname IN ('regress_capture_owner', 'regress_capture_writer'))) x;
DROP ROLE regress_capture_owner;
DROP ROLE regress_capture_writer;
DROP VIEW ev;
TRUNCATE outbox.events;

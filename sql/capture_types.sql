--
-- capture_types: the capture trigger types every column exactly as
-- to_jsonb() does, and stays right through TOAST, generated, dropped and
-- renamed columns, and partitioned tables.
--
SET timezone = 'UTC';
SET datestyle = 'ISO, MDY';
SET intervalstyle = 'postgres';
SET extra_float_digits = 0;
TRUNCATE outbox.events;

CREATE TYPE capture_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN capture_posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN capture_tags AS text[];
CREATE TYPE capture_money AS (amount numeric(12,2), currency text);

CREATE TABLE typed (
	id          integer PRIMARY KEY,
	i2          smallint,
	i8          bigint,
	num         numeric(12,3),
	num_free    numeric,
	f4          real,
	f8          double precision,
	flag        boolean,
	body        text,
	code        varchar(20),
	fixed       char(5),
	raw         bytea,
	day         date,
	at          timestamp,
	at_tz       timestamptz,
	clock       time,
	span        interval,
	uid         uuid,
	doc_json    json,
	doc_jsonb   jsonb,
	ints        integer[],
	words       text[],
	grid        integer[][],
	price       capture_money,
	prices      capture_money[],
	mood        capture_mood,
	moods       capture_mood[],
	qty         capture_posint,
	labels      capture_tags,
	addr        inet,
	pt          point,
	period      int4range,
	nm          name,
	ch          "char",
	bits        bit varying(8),
	ts_vec      tsvector
);
SELECT outbox.capture_table('typed');

INSERT INTO typed VALUES (
	1, -32768, 9223372036854775807, 12345.500, 0.000100, 1.5, 3.141592653589793,
	true, E'line\nbreak "quoted" \\ back', 'abc', 'ab', '\x00ff10', '2024-02-29',
	'2024-01-02 03:04:05.678', '2024-01-02 03:04:05.678+02', '23:59:59.5',
	'1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'{"b": 1, "a": [true, null, 2.50]}', '{"z": {"y": [1, "two", 3.0]}}',
	'{1,NULL,3}', '{"a b",c,NULL}', '{{1,2},{3,4}}', '(19.99,EUR)',
	ARRAY['(1.00,USD)', NULL]::capture_money[], 'happy', '{sad,ok}', 7,
	'{x,y}', '192.168.0.1/24', '(1.5,-2)', '[1,10)', 'nm', 'c', B'1011',
	'fat cats'
);
-- Every column NULL but the key.
INSERT INTO typed (id) VALUES (2);
-- Special values: NaN and infinities are strings in to_jsonb, numbers are not.
INSERT INTO typed (id, num_free, f4, f8, day, at, at_tz, doc_jsonb, ints)
VALUES (3, 'NaN', '-Infinity', 'NaN', 'infinity', '-infinity', 'infinity',
		'"just a string"', '{}');
INSERT INTO typed (id, num_free, f4, f8, doc_jsonb)
VALUES (4, '-0.0000000001e-20', '1e-30', '-1.7976931348623157e308', '42');
INSERT INTO typed (id, f8, doc_jsonb, doc_json) VALUES (5, '-0', 'null', '"s"');

-- The payload's "new" is to_jsonb of the row, for every row.
SELECT t.id, e.payload->'new' = to_jsonb(t) AS same_as_to_jsonb
FROM outbox.events e JOIN typed t ON e.aggregate_id = t.id::text
ORDER BY e.id;
-- (jsonb equality is typed: the number 1 does not equal the string "1".)
SELECT payload->'new' FROM outbox.events ORDER BY id;

-- A cast to json on an enum is honoured, as to_jsonb honours it, even when
-- created after the trigger first fired in this session.
CREATE FUNCTION capture_mood_json(capture_mood) RETURNS json
LANGUAGE sql IMMUTABLE AS $$ SELECT json_build_object('mood', $1::text) $$;
CREATE CAST (capture_mood AS json) WITH FUNCTION capture_mood_json(capture_mood);
UPDATE typed SET mood = 'ok' WHERE id = 1;
SELECT payload->'new'->'mood' AS new_mood, payload->'old'->'mood' AS old_mood,
	   payload->'new' = (SELECT to_jsonb(t) FROM typed t WHERE id = 1) AS same
FROM outbox.events WHERE event_type = 'typed.updated';
DROP CAST (capture_mood AS json);
DROP FUNCTION capture_mood_json(capture_mood);

-- "old" of a DELETE is to_jsonb of the deleted row.
CREATE TEMP TABLE typed_before AS SELECT id, to_jsonb(t) AS j FROM typed t;
DELETE FROM typed;
SELECT b.id, e.payload->'old' = b.j AS same_as_to_jsonb, e.payload->'new' AS new
FROM outbox.events e JOIN typed_before b ON e.aggregate_id = b.id::text
WHERE e.event_type = 'typed.deleted'
ORDER BY b.id;

-- A table whose columns are all scalars gets its payload built as a tree
-- (capture.c, payload_flat), the others with pushJsonbValue: both give
-- to_jsonb's text, with the display scale of numerics and the padding of
-- char(n) (compared as text here: jsonb equality does not see either).
CREATE DOMAIN capture_code AS varchar(8);
CREATE DOMAIN capture_amount AS numeric(10,2);
CREATE TABLE scalars (
	id      bigint PRIMARY KEY,
	n2      numeric(12,2),
	n_free  numeric,
	amount  capture_amount,
	f8      double precision,
	ok      boolean,
	body    text,
	code    capture_code,
	fixed   char(5),
	day     date,
	at_tz   timestamptz,
	uid     uuid,
	raw     bytea,
	ch      "char",
	nm      name
);
SELECT outbox.capture_table('scalars');
INSERT INTO scalars VALUES
	(1, 12.50, 0.000100, 7, 1.5, true, E'tab\tquote" back\\ ünï €', 'ab', 'xy',
	 '2024-02-29', '2024-01-02 03:04:05.678+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	 '\x00ff', 'c', 'nm'),
	(2, -0.00, 'NaN', -12345678.9, 'NaN', false, '', '', '', 'infinity', '-infinity',
	 NULL, '', 'z', ''),
	(3, NULL, 'Infinity', NULL, '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL),
	(4, 9999999999.99, '-Infinity', 0, '-0', true, repeat('x', 3000), 'abcdefgh',
	 'abcde', '0001-01-01 BC', 'epoch', NULL, NULL, NULL, NULL),
	(5, 1, 12345678901234567890.12345678901234567890, 1.5, 1e-3,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TEMP TABLE scalars_before AS SELECT id, to_jsonb(t)::text AS j FROM scalars t;
UPDATE scalars SET n_free = n_free * 2, body = upper(body) WHERE id IN (1, 4, 5);
DELETE FROM scalars WHERE id = 2;
-- inserted: "new" is the row as inserted, "old" null; updated: "new" the
-- row now, "old" as inserted; deleted: "new" null, "old" as inserted.
SELECT e.event_type, e.aggregate_id,
	   (e.payload->'new')::text = CASE e.event_type
		   WHEN 'scalars.inserted' THEN b.j
		   WHEN 'scalars.updated' THEN (SELECT to_jsonb(t)::text FROM scalars t
										WHERE t.id = b.id)
		   ELSE 'null' END AS new_same_text,
	   (e.payload->'old')::text = CASE e.event_type
		   WHEN 'scalars.inserted' THEN 'null' ELSE b.j END AS old_same_text,
	   e.payload->>'op' AS op, e.payload->>'table' AS "table",
	   e.payload->>'schema' AS schema
FROM outbox.events e JOIN scalars_before b ON b.id::text = e.aggregate_id
WHERE e.topic = 'scalars'
ORDER BY e.id;
SELECT payload->'new' AS new
FROM outbox.events WHERE topic = 'scalars' AND event_type = 'scalars.inserted'
  AND aggregate_id IN ('1', '2') ORDER BY id;
-- One timestamptz value in two time zones (and under another DateStyle),
-- beside a date and a timestamp: each in the zone of its transaction, in
-- ISO 8601 (capture.c reuses its last rendering only for the same value,
-- type and zone).
CREATE TABLE stamps (id integer PRIMARY KEY, d date, t timestamp,
					 x timestamptz, y timestamptz);
SELECT outbox.capture_table('stamps');
SET TimeZone = 'UTC';
INSERT INTO stamps VALUES (1, '2024-01-02', '2024-01-02 03:04:05',
						   '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00');
SET TimeZone = 'Asia/Kolkata';
INSERT INTO stamps VALUES (2, NULL, NULL,
						   '2024-01-02 03:04:05+00', '2024-01-02 03:04:05+00');
SET DateStyle = 'SQL, DMY';
INSERT INTO stamps VALUES (3, '2024-01-02', NULL, '2024-01-02 03:04:05+00', 'infinity');
SELECT aggregate_id, payload->'new' AS new
FROM outbox.events WHERE topic = 'stamps' ORDER BY id;
RESET DateStyle;
RESET TimeZone;
-- The flat payload is written by jsonb_write.c, not by jsonb's own
-- converter: its layout must be jsonb's to the byte.  A table of 40 columns
-- (80 entries in "new", past the offset stride of 32) whose numerics sit at
-- every alignment after strings of 0 to 3 bytes, with booleans and nulls:
-- the payload is as large as jsonb's encoding of its own text, equal to it,
-- contains the row, and every key is found (a lookup by binary search over
-- the entries' offsets).
DO $$
BEGIN
	EXECUTE 'CREATE TABLE wide (id integer PRIMARY KEY, '
		|| (SELECT string_agg(format('c%s %s', lpad(g::text, 2, '0'),
									 (ARRAY['numeric', 'text', 'boolean', 'bigint'])[g % 4 + 1]), ', ')
			  FROM generate_series(1, 39) g)
		|| ')';
END $$;
SELECT outbox.capture_table('wide');
DO $$
DECLARE
	r integer;
BEGIN
	FOR r IN 1 .. 4 LOOP
		EXECUTE 'INSERT INTO wide VALUES (' || r || ', '
			|| (SELECT string_agg(CASE WHEN (g + r) % 7 = 0 THEN 'NULL'
									   WHEN g % 4 = 0 THEN (g * r * 1.25)::text
									   WHEN g % 4 = 1 THEN quote_literal(repeat('x', (g + r) % 4))
									   WHEN g % 4 = 2 THEN ((g + r) % 2 = 0)::text
									   ELSE (g * 1000003 * r)::text END, ', ')
				  FROM generate_series(1, 39) g)
			|| ')';
	END LOOP;
END $$;
UPDATE wide SET c04 = c04 * 3, c05 = c05 || 'yz' WHERE id = 2;
SELECT e.aggregate_id, e.event_type,
	   pg_column_size(e.payload) = pg_column_size(e.payload::text::jsonb) AS same_size,
	   e.payload = e.payload::text::jsonb AS same_value,
	   e.payload->'new' = to_jsonb(w) AS new_is_row,
	   e.payload @> jsonb_build_object('new', to_jsonb(w)) AS contains_row,
	   (SELECT bool_and(e.payload->'new'->k = to_jsonb(w)->k)
		  FROM jsonb_object_keys(to_jsonb(w)) k) AS every_key_found,
	   (SELECT count(*) FROM jsonb_object_keys(e.payload->'new')) AS keys
FROM outbox.events e JOIN wide w ON w.id::text = e.aggregate_id
WHERE e.topic = 'wide' AND (e.event_type = 'wide.inserted' AND w.id <> 2
							OR e.event_type = 'wide.updated')
ORDER BY e.id;
SELECT pg_column_size(payload) = pg_column_size(payload::text::jsonb) AS same_size,
	   payload = payload::text::jsonb AS same_value,
	   payload->'old' = (SELECT payload->'new' FROM outbox.events
						  WHERE topic = 'wide' AND aggregate_id = '2'
							AND event_type = 'wide.inserted') AS old_as_inserted
FROM outbox.events WHERE topic = 'wide' AND event_type = 'wide.updated';
-- The same for the table of scalars, but for row 4, whose 3,000-byte text
-- is stored compressed.
SELECT aggregate_id, event_type,
	   pg_column_size(payload) = pg_column_size(payload::text::jsonb) AS same_size,
	   payload = payload::text::jsonb AS same_value
FROM outbox.events WHERE topic = 'scalars' AND aggregate_id <> '4' ORDER BY id;
DROP TABLE wide;
DROP TABLE stamps;
DROP TABLE scalars;
DROP TABLE scalars_before;
DROP DOMAIN capture_code;
DROP DOMAIN capture_amount;

DROP TABLE typed;
DROP TABLE typed_before;
DROP TYPE capture_money;
DROP DOMAIN capture_tags;
DROP DOMAIN capture_posint;
DROP TYPE capture_mood;
TRUNCATE outbox.events;

--
-- TOAST: a ~100 kB value stored out of line is captured whole, and an UPDATE
-- that does not touch it still carries it in "new" and "old".
--
CREATE FUNCTION pg_temp.toast_rows(r regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s',
				   (SELECT reltoastrelid::regclass FROM pg_class WHERE oid = r))
	INTO n;
	RETURN n;
END
$$;
CREATE TABLE docs (id integer PRIMARY KEY, title text, big text, seen integer DEFAULT 0);
SELECT outbox.capture_table('docs', ignore_columns => '{seen}');
INSERT INTO docs (id, title, big)
SELECT 1, 'first', string_agg(md5(i::text), '') FROM generate_series(1, 3200) i;
SELECT pg_temp.toast_rows('docs') > 0 AS stored_out_of_line,
	   octet_length(big) FROM docs;
UPDATE docs SET title = 'renamed';
SELECT e.payload->>'op' AS op,
	   e.payload->'new'->>'big' = d.big AS new_big_whole,
	   e.payload->'old'->>'big' = d.big AS old_big_whole,
	   e.payload->'new'->>'title' AS new_title,
	   e.payload->'old'->>'title' AS old_title
FROM outbox.events e, docs d ORDER BY e.id;
SELECT payload->'new' = (SELECT to_jsonb(d) FROM docs d) AS same_as_to_jsonb
FROM outbox.events ORDER BY id DESC LIMIT 1;
-- Only the ignored column changes: nothing is captured (the unchanged
-- TOASTed value compares equal by its stored image).
UPDATE docs SET seen = seen + 1;
SELECT count(*) FROM outbox.events;
-- A payload over outbox_saga.max_payload_size fails the write ...
SET outbox_saga.max_payload_size = '64kB';
UPDATE docs SET title = 'too big';
DELETE FROM docs;
SELECT title, (SELECT count(*) FROM outbox.events) AS events FROM docs;
-- ... so leave such columns out of the payload with columns=.
CREATE OR REPLACE TRIGGER outbox_capture AFTER INSERT OR UPDATE OR DELETE ON docs
	FOR EACH ROW EXECUTE FUNCTION outbox.capture('columns=id,title', 'ignore=seen');
UPDATE docs SET title = 'small';
SELECT payload FROM outbox.events ORDER BY id DESC LIMIT 1;
RESET outbox_saga.max_payload_size;
DROP TABLE docs;
TRUNCATE outbox.events;

--
-- Generated, dropped, added and renamed columns.
--
CREATE TABLE lines (
	id      integer PRIMARY KEY,
	gone    text,
	qty     integer,
	price   numeric(10,2),
	total   numeric GENERATED ALWAYS AS (qty * price) STORED
);
SELECT outbox.capture_table('lines', key_columns => '{id}');
INSERT INTO lines (id, gone, qty, price) VALUES (1, 'x', 3, 2.50);
ALTER TABLE lines DROP COLUMN gone;
INSERT INTO lines (id, qty, price) VALUES (2, 4, 1.25);
ALTER TABLE lines ADD COLUMN note text DEFAULT 'n/a';
INSERT INTO lines (id, qty, price) VALUES (3, 1, 9.99);
ALTER TABLE lines RENAME COLUMN qty TO quantity;
-- The payload uses the new name.
UPDATE lines SET quantity = quantity + 1 WHERE id = 3;
-- key_columns named "id": once it is renamed, writes fail until the capture
-- is recreated with the new name.
ALTER TABLE lines RENAME COLUMN id TO line_id;
UPDATE lines SET quantity = quantity + 1 WHERE line_id = 3;
SELECT outbox.uncapture_table('lines');
SELECT outbox.capture_table('lines');
UPDATE lines SET quantity = quantity + 1 WHERE line_id = 3;
-- With the default key (the primary key) a renamed key column is followed.
ALTER TABLE lines RENAME COLUMN line_id TO id;
DELETE FROM lines WHERE id = 2;
ALTER TABLE lines RENAME COLUMN id TO line_id;
SELECT aggregate_id, event_type, payload->'new' AS new, payload->'old' AS old
FROM outbox.events ORDER BY id;
-- After all that, an event still matches to_jsonb of the row.
UPDATE lines SET price = price + 1;
SELECT l.line_id, e.payload->'new' = to_jsonb(l) AS same_as_to_jsonb
FROM lines l, LATERAL (SELECT payload FROM outbox.events
					   WHERE aggregate_id = l.line_id::text
					   ORDER BY id DESC LIMIT 1) e
ORDER BY l.line_id;
DROP TABLE lines;
TRUNCATE outbox.events;

--
-- Partitioned tables: the trigger is cloned onto every partition (also
-- ones attached later); payload, topic and key name the partitioned table.
--
CREATE TABLE readings (
	region  text,
	id      integer,
	value   numeric,
	PRIMARY KEY (region, id)
) PARTITION BY LIST (region);
CREATE TABLE readings_eu PARTITION OF readings FOR VALUES IN ('eu');
-- A partition whose columns sit at other positions than the parent's.
CREATE TABLE readings_us (junk integer, value numeric, id integer NOT NULL,
						  region text NOT NULL);
ALTER TABLE readings_us DROP COLUMN junk;
ALTER TABLE readings ATTACH PARTITION readings_us FOR VALUES IN ('us');
SELECT outbox.capture_table('readings');
INSERT INTO readings VALUES ('eu', 1, 1.5), ('us', 1, 2.5);
INSERT INTO readings_us (region, id, value) VALUES ('us', 2, 3.5);
UPDATE readings SET value = value * 2 WHERE id = 1;
-- Moving a row to another partition is a delete and an insert.
UPDATE readings SET region = 'us', id = 3 WHERE region = 'eu';
-- A partition attached after the capture is captured too.
CREATE TABLE readings_ap (LIKE readings);
ALTER TABLE readings ATTACH PARTITION readings_ap FOR VALUES IN ('ap');
INSERT INTO readings VALUES ('ap', 1, 0.5);
-- A renamed parent is named by its new name from the next event on.
ALTER TABLE readings RENAME TO meter_readings;
DELETE FROM readings_ap;
SELECT topic, aggregate_id, event_type, headers, payload->>'op' AS op,
	   payload->>'schema' AS schema, payload->>'table' AS "table",
	   payload->'new' AS new, payload->'old' AS old
FROM outbox.events ORDER BY id;
SELECT count(*) FILTER (WHERE payload->'new' = to_jsonb(r)) AS same_as_to_jsonb,
	   count(*) AS rows
FROM meter_readings r
JOIN outbox.events e ON e.aggregate_id = r.region || ':' || r.id
WHERE e.id = (SELECT max(id) FROM outbox.events e2
			  WHERE e2.aggregate_id = e.aggregate_id AND e2.payload->>'op' <> 'delete');
-- The partitions are captured through their parent.
SELECT outbox.capture_table('readings_eu');
SELECT outbox.uncapture_table('readings_eu');
-- A detached partition is no longer captured.
ALTER TABLE meter_readings DETACH PARTITION readings_ap;
SELECT count(*) AS before FROM outbox.events;
INSERT INTO readings_ap VALUES ('ap', 2, 1);
SELECT count(*) AS after FROM outbox.events;
SELECT outbox.uncapture_table('meter_readings');
SELECT count(*) AS triggers_left FROM pg_trigger
WHERE tgrelid IN ('meter_readings'::regclass, 'readings_eu'::regclass,
				  'readings_us'::regclass, 'readings_ap'::regclass);
DROP TABLE meter_readings;
DROP TABLE readings_ap;
TRUNCATE outbox.events;

-- A partitioned table without a primary key needs key_columns.
CREATE TABLE logs (at integer, src text, msg text) PARTITION BY RANGE (at);
CREATE TABLE logs_1 PARTITION OF logs FOR VALUES FROM (0) TO (100);
SELECT outbox.capture_table('logs');
-- A partition captured on its own blocks capturing its parent.
SELECT outbox.capture_table('logs_1', key_columns => '{src}');
SELECT outbox.capture_table('logs', key_columns => '{src,at}');
SELECT outbox.uncapture_table('logs_1');
SELECT outbox.capture_table('logs', key_columns => '{src,at}');
INSERT INTO logs VALUES (1, 'web', 'hi');
-- A key column named in key= and renamed on the parent is renamed on every
-- partition: writes fail until the capture is recreated.
ALTER TABLE logs RENAME COLUMN src TO source;
INSERT INTO logs VALUES (2, 'db', 'hello');
SELECT topic, aggregate_id, event_type, payload->>'table' AS "table",
	   payload->'new' AS new FROM outbox.events ORDER BY id;
DROP TABLE logs;

--
-- Schema names, also after a schema is renamed.
--
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Order Lines" ("Line ID" integer PRIMARY KEY, "Qty" integer);
SELECT outbox.capture_table('"Sales Data"."Order Lines"', topic => 'sales.order-lines');
INSERT INTO "Sales Data"."Order Lines" VALUES (1, 2);
ALTER SCHEMA "Sales Data" RENAME TO sales;
UPDATE sales."Order Lines" SET "Qty" = 3;
SELECT topic, aggregate_id, event_type, payload->>'schema' AS schema,
	   payload->>'table' AS "table", payload->'new' AS new
FROM outbox.events WHERE topic = 'sales.order-lines' ORDER BY id;
DROP SCHEMA sales CASCADE;
TRUNCATE outbox.events;

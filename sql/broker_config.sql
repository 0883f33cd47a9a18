-- Broker destinations (SPEC 3.2 "kafka" and "nats", issue 6): the config
-- keys and their checks, librdkafka properties validated at
-- create_destination (unknown ones named, secret values never quoted),
-- properties that would run code or read server files refused, subjects and
-- topics with placeholders, and credentials that are write-only (masked in
-- outbox.destinations).  Every bad config is an error with an SQLSTATE that
-- changes nothing (G11).  Delivery is tested by test/t/03*_*.pl against a
-- real nats-server and librdkafka's mock cluster.
\set VERBOSITY terse

-- Every text an error of 'call' shows (SQLSTATE, message, detail, hint).
CREATE FUNCTION pg_temp.error_text(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text; m text; d text; h text;
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT,
	                        d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', s, m, d, h);
END $$;

-- kafka: valid configs
SELECT outbox.create_destination('k1', 'kafka',
	'{"brokers": "127.0.0.1:9092", "topic": "orders"}');
SELECT outbox.create_destination('k2', 'kafka',
	'{"brokers": "b1:9092,b2:9092", "topic": "ev.{topic}.{event_type}",
	  "timeout": "5 seconds",
	  "properties": {"compression.type": "zstd", "linger.ms": 10,
	                 "acks": "all", "security.protocol": "sasl_ssl",
	                 "sasl.mechanisms": "PLAIN", "sasl.username": "app",
	                 "sasl.password": "kafka-pw-123", "socket.keepalive.enable": true}}');
SELECT name, kind, config FROM outbox.destinations WHERE name LIKE 'k%' ORDER BY name;

-- kafka: config errors
SELECT outbox.create_destination('kx', 'kafka', '{"topic": "orders"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "", "topic": "orders"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "b:9092"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": 9092, "topic": "orders"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "b:9092", "topic": "a topic"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "b:9092", "topic": "x.{aggregate}"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "b:9092", "topic": "t", "subject": "s"}');
SELECT outbox.create_destination('kx', 'kafka', '{"brokers": "b:9092", "topic": "t", "properties": "linger.ms=5"}');
-- (the hint names the librdkafka version the module runs with)
SELECT regexp_replace(pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"no.such.property": "1"}}')$$),
	'librdkafka [0-9][0-9.]*[0-9]', 'librdkafka N.N.N') AS error_text;
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"linger.ms": "soon"}}')$$);
-- an invalid value of a secret-looking property is never quoted
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"sasl.password": {"v": "hunter2"}}}')$$);
-- the value of another property is quoted
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.key.password": "x", "builtin.features": "nope"}}')$$);
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"bootstrap.servers": "evil:9092"}}')$$);
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"enable.idempotence": "false"}}')$$);
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"acks": "1"}}')$$);
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"plugin.library.paths": "/tmp/x.so"}}')$$);
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"sasl.kerberos.kinit.cmd": "rm -rf /"}}')$$);
-- files on the server need a superuser owner
CREATE ROLE broker_user;
GRANT USAGE ON SCHEMA outbox TO broker_user;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO broker_user;
SET ROLE broker_user;
SELECT pg_temp.error_text($$SELECT outbox.create_destination('kx', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.ca.location": "/etc/ssl/certs"}}')$$);
RESET ROLE;
SELECT outbox.create_destination('k3', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.ca.location": "/etc/ssl/certs"}}');
-- alter_destination checks the merged config
SELECT outbox.alter_destination('k1', '{"properties": {"linger.ms": "x"}}');
SELECT outbox.alter_destination('k1', '{"topic": "renamed"}');
SELECT config->>'topic' FROM outbox.destinations WHERE name = 'k1';
SELECT name FROM outbox.destinations WHERE name = 'kx';

-- nats: valid configs
SELECT outbox.create_destination('n1', 'nats',
	'{"url": "nats://127.0.0.1:4222", "subject": "orders.{topic}.{event_type}"}');
SELECT outbox.create_destination('n2', 'nats',
	'{"url": "nats://a:4222, tls://b:4222", "subject": "audit", "stream": "AUDIT",
	  "user": "app", "password": "nats-pw-123", "timeout": "2s"}');
SELECT outbox.create_destination('n3', 'nats',
	'{"url": "nats://127.0.0.1:4222", "subject": "x", "token": "nats-tok-123", "tls": true}');
SELECT outbox.create_destination('n4', 'nats',
	'{"url": "nats://u:url-pw-123@127.0.0.1:4222", "subject": "x",
	  "tls_ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	  "tls_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	  "tls_private_key": "-----BEGIN PRIVATE KEY-----\nsecret-key-123\n-----END PRIVATE KEY-----\n"}');
SELECT name, kind, config FROM outbox.destinations WHERE name LIKE 'n%' ORDER BY name;

-- nats: config errors
SELECT outbox.create_destination('nx', 'nats', '{"subject": "x"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "http://127.0.0.1:4222", "subject": "x"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://", "subject": "x"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": ",", "subject": "x"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": ""}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "a..b"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "a.*"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "orders.>"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "a b"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "a.{aggregate_id}"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "{topic}."}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "stream": "A.B"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "password": "p"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "user": "u", "token": "t"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "tls": "yes"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "tls_ca": "/etc/ssl/ca.pem"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "tls_cert": "-----BEGIN CERTIFICATE-----"}');
SELECT outbox.create_destination('nx', 'nats', '{"url": "nats://h:4222", "subject": "x", "creds": "/x"}');
-- a URL with credentials is never quoted
SELECT pg_temp.error_text($$SELECT outbox.create_destination('nx', 'nats',
	'{"url": "http://u:quoted-pw@h:4222", "subject": "x"}')$$);
SELECT outbox.alter_destination('n1', '{"subject": "bad subject"}');
SELECT outbox.alter_destination('n1', '{"subject": "renamed.{topic}"}');
SELECT config->>'subject' FROM outbox.destinations WHERE name = 'n1';
SELECT name FROM outbox.destinations WHERE name = 'nx';

SELECT outbox.drop_destination(name) FROM outbox.destinations WHERE kind IN ('kafka', 'nats') ORDER BY name;
DROP OWNED BY broker_user;
DROP ROLE broker_user;

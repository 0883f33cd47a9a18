-- Kafka properties of a non-superuser's destination (issue 12 item 2): an
-- allow-list.  Every librdkafka property that can name a file, a library,
-- a command, an OpenSSL provider or engine, a plugin or an HTTP endpoint,
-- writes the server log, or changes the producer's semantics is refused
-- with 42501 and nothing is created.  Superusers may still name server
-- files (a CA file); code loaders and commands are refused for everyone.
-- NATS accepts only its own keys, with inline PEM.
\set VERBOSITY terse

CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_of(text) TO PUBLIC;

CREATE ROLE regress_kafka_user;
GRANT EXECUTE ON FUNCTION outbox.create_destination(text, text, jsonb),
                          outbox.alter_destination(text, jsonb) TO regress_kafka_user;
SET ROLE regress_kafka_user;

-- Each dangerous property, as a non-superuser: refused, nothing created.
SELECT prop, value,
       pg_temp.sqlstate_of(format('SELECT outbox.create_destination(%L, %L, %L)',
           'k_' || md5(prop), 'kafka',
           jsonb_build_object('brokers', 'b:9092', 'topic', 't',
                              'properties', jsonb_build_object(prop, value)))) AS sqlstate
  FROM (VALUES ('ssl.providers', '/tmp/evil.so'),
               ('ssl.providers', 'default,legacy'),
               ('ssl.engine.location', '/tmp/evil.so'),
               ('ssl.engine.id', 'evil'),
               ('plugin.library.paths', '/tmp/evil.so'),
               ('interceptors', 'x'),
               ('sasl.kerberos.kinit.cmd', 'touch /tmp/pwned'),
               ('sasl.kerberos.keytab', '/etc/krb5.keytab'),
               ('sasl.kerberos.principal', 'kafka'),
               ('sasl.kerberos.service.name', 'kafka'),
               ('ssl.ca.location', '/etc/ssl/certs'),
               ('ssl.ca.location', 'probe'),
               ('ssl.key.location', '/etc/ssl/private/key.pem'),
               ('ssl.certificate.location', '/etc/passwd'),
               ('ssl.crl.location', '/etc/passwd'),
               ('ssl.keystore.location', '/etc/passwd'),
               ('ssl.keystore.password', 'x'),
               ('ssl.ca.certificate.stores', 'Root'),
               ('sasl.oauthbearer.method', 'oidc'),
               ('sasl.oauthbearer.token.endpoint.url', 'http://169.254.169.254/'),
               ('sasl.oauthbearer.client.id', 'x'),
               ('sasl.oauthbearer.client.secret', 'x'),
               ('debug', 'all'),
               ('log_level', '7'),
               ('log.queue', 'true'),
               ('internal.termination.signal', '15'),
               ('transactional.id', 'x'),
               ('delivery.report.only.error', 'true'),
               ('statistics.interval.ms', '1000'),
               ('partitioner', 'random'),
               ('enable.random.seed', 'false'),
               ('no.such.property', '1')) v(prop, value)
 ORDER BY prop, value;
-- the same through alter_destination of an existing destination
SELECT outbox.create_destination('k_ok', 'kafka',
	'{"brokers": "b:9092", "topic": "t",
	  "properties": {"linger.ms": "5", "compression.type": "zstd", "acks": "all",
	                 "security.protocol": "sasl_ssl", "sasl.mechanisms": "PLAIN",
	                 "sasl.username": "u", "sasl.password": "p", "client.id": "app",
	                 "ssl.ca.pem": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
	                 "enable.ssl.certificate.verification": "true",
	                 "message.timeout.ms": "30000", "socket.keepalive.enable": true}}');
SELECT pg_temp.sqlstate_of($$SELECT outbox.alter_destination('k_ok',
	'{"properties": {"ssl.providers": "/tmp/evil.so"}}')$$) AS alter_providers;
SELECT pg_temp.sqlstate_of($$SELECT outbox.alter_destination('k_ok',
	'{"properties": {"plugin.library.paths": "/tmp/evil.so"}}')$$) AS alter_plugin;
-- the message
SELECT outbox.create_destination('k_x', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.providers": "/tmp/evil.so"}}');
SELECT outbox.create_destination('k_x', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"sasl.kerberos.kinit.cmd": "id"}}');
RESET ROLE;
SELECT name, config->'properties' AS properties FROM outbox.destinations ORDER BY name;

-- A superuser's destination may name a CA file; code loaders stay refused.
SELECT outbox.create_destination('k_su', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.ca.location": "/etc/ssl/certs", "debug": "broker"}}');
SELECT pg_temp.sqlstate_of($$SELECT outbox.create_destination('k_su2', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"plugin.library.paths": "/tmp/evil.so"}}')$$) AS su_plugin;
SELECT pg_temp.sqlstate_of($$SELECT outbox.create_destination('k_su2', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"sasl.kerberos.kinit.cmd": "id"}}')$$) AS su_kinit;
SELECT pg_temp.sqlstate_of($$SELECT outbox.create_destination('k_su2', 'kafka',
	'{"brokers": "b:9092", "topic": "t", "properties": {"ssl.engine.location": "/tmp/evil.so"}}')$$) AS su_engine;

-- NATS: only its own keys; no key names a file.
SET ROLE regress_kafka_user;
SELECT key, pg_temp.sqlstate_of(format('SELECT outbox.create_destination(%L, %L, %L)',
           'n_' || key, 'nats',
           jsonb_build_object('url', 'nats://127.0.0.1:4222', 'subject', 's', key, value))) AS sqlstate
  FROM (VALUES ('creds', '/etc/passwd'), ('credentials_file', '/etc/passwd'),
               ('nkey_seed_file', '/etc/passwd'), ('tls_ca_file', '/etc/ssl/certs/ca.pem'),
               ('tls_ca', '/etc/ssl/certs/ca-certificates.crt'),
               ('tls_cert', '/etc/ssl/certs/x.pem'),
               ('tls_private_key', '/etc/ssl/private/x.key')) v(key, value)
 ORDER BY key;
RESET ROLE;
SELECT count(*) AS nats_destinations FROM outbox.destinations WHERE kind = 'nats';

SELECT outbox.drop_destination(name) FROM outbox.destinations ORDER BY name;
REVOKE ALL ON FUNCTION outbox.create_destination(text, text, jsonb),
                       outbox.alter_destination(text, jsonb) FROM regress_kafka_user;
DROP ROLE regress_kafka_user;

-- HTTP destinations (SPEC 3.2 "http", issue 4): the config keys and their
-- checks, secrets that are write-only (masked in outbox.destinations, never
-- in an error message), URLs that must be http:// or https:// without
-- credentials, and literal addresses in outbox_saga.http_deny_networks.
-- Every bad config is an error with SQLSTATE 22023 that changes nothing
-- (G11).  Delivery itself is tested by test/t/010_http_*.pl with a real
-- receiver.
\set VERBOSITY terse
SET timezone = 'UTC';

CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

-- Every text an error of 'call' shows (message, detail, hint).
CREATE FUNCTION pg_temp.error_text(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	m text; d text; h text;
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
	                        h = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', m, d, h);
END $$;

-- The server default denies link-local networks (cloud metadata) only.
SHOW outbox_saga.http_deny_networks;
SHOW outbox_saga.http_timeout;
SHOW outbox_saga.max_inflight;

-- Accepted configs: every key, every form.
SELECT outbox.create_destination('hook_min', 'http', '{"url": "http://127.0.0.1:9/hook"}');
SELECT outbox.create_destination('hook_full', 'http', $${
  "url": "https://hooks.example.com/in?tenant=7&access_token=t0ps3cret",
  "method": "put",
  "headers": {"Authorization": "Bearer b3arer", "X-Tenant": "7", "X-Empty": ""},
  "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  "concurrency": 32, "timeout": "5 seconds", "max_attempts": 10,
  "backoff_base": "100 ms", "backoff_max": "10 minutes", "ordered": false}$$);
SELECT outbox.create_destination('hook_rotation', 'http', $${
  "url": "HTTPS://[::1]:8443/rotate",
  "method": "PATCH",
  "secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
             "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"],
  "concurrency": 1000.0}$$);
SELECT outbox.create_destination('hook_localhost', 'http',
  '{"url": "http://localhost:8080/", "secret": "whsec_AAECAwQFBgcICQoLDA0ODw", "concurrency": 1}');

-- Secrets never show: not the signing secrets, not the Authorization
-- header, not the token in the URL's query.
SELECT name, kind, config FROM outbox.destinations
 WHERE name LIKE 'hook\_%' ORDER BY name;
SELECT count(*) AS configs_showing_a_secret FROM outbox.destinations
 WHERE config::text ~ '(whsec_|b3arer|t0ps3cret)';
-- The stored config is unchanged (the dispatcher needs the secrets).
SELECT config->'secret' = '"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"' AS secret_stored
  FROM outbox.destination WHERE name = 'hook_full';

-- Bad configs.  The messages name keys and headers, never values.
SELECT count(*) AS destinations_before FROM outbox.destination \gset
SELECT outbox.create_destination('x', 'http', '{}');
SELECT outbox.create_destination('x', 'http', '{"url": null}');
SELECT outbox.create_destination('x', 'http', '{"url": 42}');
SELECT outbox.create_destination('x', 'http', '{"url": ""}');
SELECT outbox.create_destination('x', 'http', '{"url": "ftp://example.com/in"}');
SELECT outbox.create_destination('x', 'http', '{"url": "file:///etc/passwd"}');
SELECT outbox.create_destination('x', 'http', '{"url": "example.com/in"}');
SELECT outbox.create_destination('x', 'http', '{"url": "//example.com/in"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http:///path"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://example.com:99999/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://exa mple.com/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://example.com/\n"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://example.com\\@evil.example/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://user:pa55w0rd@example.com/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://good.example@evil.example/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://:@example.com/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://@example.com/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://[::1/"}');
SELECT outbox.create_destination('x', 'http', jsonb_build_object('url', 'http://example.com/' || repeat('a', 4100)));
SELECT outbox.create_destination('x', 'http', '{"url": "http://169.254.169.254/latest/meta-data/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://[fe80::1]/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://[::ffff:169.254.169.254]/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "method": "GET"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "method": 1}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": ["a"]}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": "X-A: 1"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"X-A": 1}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"Content-Type": "text/plain"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"webhook-id": "spoof"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"Webhook-Signature": "v1,x"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"Host": "other"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"X A": "1"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"": "1"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"X-A": "1\r\nX-Injected: 1"}}');
SELECT outbox.create_destination('x', 'http', jsonb_build_object('url', 'http://localhost/', 'headers', jsonb_build_object('X-Big', repeat('v', 8193))));
SELECT outbox.create_destination('x', 'http', jsonb_build_object('url', 'http://localhost/', 'headers',
  (SELECT jsonb_object_agg('X-H' || g, 'v') FROM generate_series(1, 65) g)));
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_not base64!"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_c2hvcnQ="}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_A"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_AAAAAAAAAAAAAAAAAAAAAA==AAAA"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": []}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 7]}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_bad"]}');
SELECT outbox.create_destination('x', 'http', jsonb_build_object('url', 'http://localhost/', 'secret',
  (SELECT jsonb_agg('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'::text) FROM generate_series(1, 11))));
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": {"key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": 0}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": 1001}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": 2.5}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": "8"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": -3}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "timeout": "0 seconds"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "uri": "http://localhost/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}');
SELECT count(*) - :destinations_before AS created_by_bad_calls FROM outbox.destination;

-- In full: what is wrong, and how to fix it.
\set VERBOSITY default
SELECT outbox.create_destination('x', 'http', '{"url": "ftp://example.com/in"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://user:pa55w0rd@example.com/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://169.254.169.254/"}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "secret": "whsec_c2hvcnQ="}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "headers": {"webhook-id": "spoof"}}');
SELECT outbox.create_destination('x', 'http', '{"url": "http://localhost/", "concurrency": 1001}');
\set VERBOSITY terse

-- No error text, in any of its parts, shows a secret, a header value or
-- the URL's credentials.
SELECT call, pg_temp.error_text('SELECT outbox.create_destination(''x'', ''http'', '
                                || quote_literal(call) || ')')
             ~ '(S3KR1T|pa55w0rd|t0ps3cret|b3arer)' AS shows_a_secret,
       pg_temp.error_text('SELECT outbox.create_destination(''x'', ''http'', '
                          || quote_literal(call) || ')') AS error
  FROM (VALUES ('{"url": "http://localhost/", "secret": "S3KR1T"}'),
               ('{"url": "http://localhost/", "secret": "whsec_S3KR1T"}'),
               ('{"url": "http://localhost/", "secret": "whsec_S3KR1T!"}'),
               ('{"url": "http://localhost/", "secret": ["whsec_S3KR1T"]}'),
               ('{"url": "http://localhost/", "secret": "whsec_S3KR1T", "method": "GET"}'),
               ('{"url": "http://localhost/", "headers": {"Authorization": "b3arer\nS3KR1T"}}'),
               ('{"url": "http://localhost/", "headers": {"webhook-id": "S3KR1T"}}'),
               ('{"url": "ftp://user:pa55w0rd@example.com/?access_token=t0ps3cret"}'),
               ('{"url": "http://user:pa55w0rd@example.com/?access_token=t0ps3cret"}'),
               ('{"url": "http://169.254.169.254/?access_token=t0ps3cret"}'),
               ('{"url": "http://example.com/ ?access_token=t0ps3cret"}'),
               ('{"url": "http://localhost/", "timeout": "S3KR1T"}')) v(call)
 ORDER BY call;

-- alter_destination merges and checks the result; a bad change changes
-- nothing.
SELECT outbox.alter_destination('hook_min', $${"method": "PATCH", "concurrency": 4,
  "secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"]}$$);
SELECT config FROM outbox.destinations WHERE name = 'hook_min';
SELECT outbox.alter_destination('hook_min', '{"url": "gopher://example.com/"}');
SELECT outbox.alter_destination('hook_min', '{"url": null}');
SELECT outbox.alter_destination('hook_min', '{"secret": "whsec_short"}');
SELECT outbox.alter_destination('hook_min', '{"headers": {"Content-Length": "0"}}');
SELECT outbox.alter_destination('hook_min', '{"secret": null, "method": null, "concurrency": null}');
SELECT config FROM outbox.destinations WHERE name = 'hook_min';

-- The SQLSTATE of each kind of bad config.
SELECT config, pg_temp.sqlstate_of('SELECT outbox.create_destination(''x'', ''http'', '
                                   || quote_literal(config) || ')') AS sqlstate
  FROM (VALUES ('{}'),
               ('{"url": "ftp://example.com/"}'),
               ('{"url": "http://u:p@example.com/"}'),
               ('{"url": "http://169.254.169.254/"}'),
               ('{"url": "http://localhost/", "method": "DELETE"}'),
               ('{"url": "http://localhost/", "headers": {"content-type": "x"}}'),
               ('{"url": "http://localhost/", "secret": "nope"}'),
               ('{"url": "http://localhost/", "concurrency": 0}'),
               ('{"url": "http://localhost/", "colour": "red"}')) v(config)
 ORDER BY config;

-- outbox_saga.http_deny_networks is a server setting (reload), not one a
-- session can change.
SELECT pg_temp.sqlstate_of($$SET outbox_saga.http_deny_networks = ''$$) AS set_deny_networks;
SELECT pg_temp.sqlstate_of($$SET outbox_saga.http_timeout = '1s'$$) AS set_http_timeout;

SELECT outbox.drop_destination(name) FROM outbox.destinations
 WHERE name LIKE 'hook\_%' ORDER BY name;
SELECT count(*) AS http_destinations_left FROM outbox.destinations WHERE kind = 'http';

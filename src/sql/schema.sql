-- outbox_saga extension script (assembled from src/sql/*.sql by the Makefile).
--
-- Conventions of every part:
--   * every object is schema-qualified; SQL and PL/pgSQL functions pin
--     search_path = pg_catalog, pg_temp; C functions resolve every name by
--     schema themselves and need no search_path;
--   * every public function has a COMMENT, so \df+ documents the API;
--   * state tables are registered with pg_extension_config_dump;
--   * privileges are set in privileges.sql, last.

\echo Use "CREATE EXTENSION outbox_saga" to load this file. \quit

CREATE SCHEMA outbox;
COMMENT ON SCHEMA outbox IS 'outbox_saga: transactional outbox, destinations and idempotency keys';

CREATE SCHEMA saga;
COMMENT ON SCHEMA saga IS 'outbox_saga: saga definitions and instances';

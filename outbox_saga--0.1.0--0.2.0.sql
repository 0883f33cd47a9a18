-- outbox_saga upgrade script 0.1.0 -> 0.2.0.
--
-- Every SQL change made after release 0.1.0 goes here as well as into the
-- src/sql/ parts that the full 0.2.0 script is assembled from, so that
-- ALTER EXTENSION outbox_saga UPDATE brings a 0.1.0 database to exactly
-- what CREATE EXTENSION makes.  Same conventions as the full script: every
-- object schema-qualified, search_path pinned in every function.

\echo Use "ALTER EXTENSION outbox_saga UPDATE TO '0.2.0'" to load this file. \quit

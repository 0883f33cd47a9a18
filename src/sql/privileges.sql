
-- ---------------------------------------------------------------------------
-- Privileges.  Nothing is callable by PUBLIC: an administrator grants
-- EXECUTE on the functions a role needs (README, "Privileges").  The log and
-- every state table are readable and writable only through the functions.
-- ---------------------------------------------------------------------------

GRANT USAGE ON SCHEMA outbox, saga TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA saga FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA saga FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA outbox FROM PUBLIC;

-- Masking is harmless and is called by the view outbox.destinations as the
-- reading role.
GRANT EXECUTE ON FUNCTION outbox.mask_config(jsonb) TO PUBLIC;

-- Monitoring (issue 12 item 6).  The views outbox.stats and outbox.workers
-- call these as the reading role; they show what pg_stat_activity shows
-- every role (that the workers exist, their state) and why dispatch is off.
GRANT EXECUTE ON FUNCTION outbox.dispatch_status(), outbox.worker_status(),
	outbox.worker_passes(integer) TO PUBLIC;
-- pg_monitor reads every row of both views; a role granted SELECT on
-- outbox.stats sees the rows of its own destinations only.
GRANT SELECT ON outbox.stats, outbox.workers TO pg_monitor;
-- Prometheus metrics (issue 17 item 1, contrib/prometheus/queries.yaml):
-- counts and ages only, no payload, input or error text of a saga.
GRANT SELECT ON outbox.database_stats, saga.stats TO pg_monitor;

-- Like pg_xact_commit_timestamp(): the commit-order key of the log.
GRANT EXECUTE ON FUNCTION outbox.committed_at(xid8) TO PUBLIC;

-- Like has_table_privilege(): about the caller only; the view
-- outbox.dead_letters calls it as the reading role.
GRANT EXECUTE ON FUNCTION outbox.has_topic_privilege(text, text) TO PUBLIC;

-- Wake the launcher when this CREATE EXTENSION commits: this database now
-- needs a dispatcher.
SELECT outbox.extension_changed();

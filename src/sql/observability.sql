
-- ---------------------------------------------------------------------------
-- Operations and observability (src/dispatch/observability.c, SPEC 3.3).
-- ---------------------------------------------------------------------------

CREATE FUNCTION outbox.extension_changed() RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_extension_changed' LANGUAGE C;
COMMENT ON FUNCTION outbox.extension_changed() IS
	'Internal: wakes the launcher when the transaction commits (called by the extension scripts).';

CREATE FUNCTION outbox.dispatch_status() RETURNS text
AS 'MODULE_PATHNAME', 'outbox_saga_dispatch_status' LANGUAGE C STABLE;
COMMENT ON FUNCTION outbox.dispatch_status() IS
	'NULL while a dispatcher serves this database; otherwise why dispatch is off.';

CREATE FUNCTION outbox.wait_idle(timeout interval DEFAULT '10 seconds') RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_wait_idle' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.wait_idle(interval) IS
	'Wait until nothing committed is ready to deliver in this database; false on timeout or when dispatch is off.';

CREATE FUNCTION outbox.wait_delivered(timeout interval DEFAULT '10 seconds',
	destination text DEFAULT NULL) RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_wait_delivered' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.wait_delivered(interval, text) IS
	'Wait until every committed event owed to the destination (NULL: every destination that is not paused) is delivered or dead-lettered, retries, backoffs and deliver_after included; false on timeout.';

-- Test helpers (issue 15 item 3, src/dispatch/sync_delivery.c).
CREATE FUNCTION outbox.deliver_pending(destination text,
	include_backoff boolean DEFAULT false, max_events integer DEFAULT 1000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_deliver_pending' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.deliver_pending(text, boolean, integer) IS
	'Deliver what a function or notify destination owes now, in the calling transaction, as the dispatcher would (attempts, backoff, dead letters, the handler''s owner and search_path), and return how many events were delivered; paused destinations too. include_backoff: also events whose retry backoff has not ended. For tests; owner or superuser only.';

CREATE FUNCTION outbox.pending(destination text,
	OUT id bigint, OUT event_id uuid, OUT topic text, OUT aggregate_id text,
	OUT event_type text, OUT payload jsonb, OUT headers jsonb,
	OUT created_at timestamptz, OUT deliver_after timestamptz,
	OUT attempts integer, OUT next_attempt_at timestamptz, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_saga_pending' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.pending(text) IS
	'The events a destination still owes, in id order: its retry rows (attempts, next_attempt_at, last_error) and the committed events of its subscriptions it has not reached yet (attempts 0). For tests; owner or superuser only.';

CREATE FUNCTION outbox.worker_status(
	OUT database text, OUT pid integer, OUT state text,
	OUT started_at timestamptz, OUT last_activity timestamptz, OUT kind text,
	OUT worker integer, OUT doing text, OUT doing_since timestamptz,
	OUT destination_id integer, OUT wait_event text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_saga_worker_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.worker_status() IS
	'The launcher and the running dispatchers (backs the view outbox.workers).';

CREATE FUNCTION outbox.worker_passes(pid integer) RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_worker_passes' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION outbox.worker_passes(integer) IS
	'How many passes the dispatcher with this pid has completed since it started (NULL: no dispatcher); backs outbox.workers.passes.';

CREATE VIEW outbox.workers AS
	SELECT w.database, w.pid, w.state, w.started_at, w.last_activity, w.kind,
	       w.worker, w.doing, w.doing_since, d.name AS destination, w.wait_event,
	       outbox.worker_passes(w.pid) AS passes
	  FROM outbox.worker_status() w
	  LEFT JOIN outbox.destination d
	    ON d.id = w.destination_id AND w.database = pg_catalog.current_database();
COMMENT ON VIEW outbox.workers IS
	'The outbox_saga background workers: the launcher and the dispatchers of every served database (outbox_saga.workers_per_database each), what each does, the destination it serves now (named for the current database), what it waits on and how many passes it has made (a commit no destination wants makes none).';

CREATE FUNCTION outbox.replay_dead(destination text DEFAULT NULL, event_ids uuid[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_replay_dead' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.replay_dead(text, uuid[]) IS
	'Requeue dead letters (of one destination, or every destination the caller owns; optionally only these event ids); returns how many.';

CREATE FUNCTION outbox.discard_dead(destination text DEFAULT NULL, event_ids uuid[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_discard_dead' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION outbox.discard_dead(text, uuid[]) IS
	'Delete dead letters (of one destination, or every destination the caller owns; optionally only these event ids); returns how many.';

-- Rows: the dead letters of the topics the current role may read (G14);
-- security_barrier: a caller's own functions in WHERE never see other rows.
CREATE VIEW outbox.dead_letters WITH (security_barrier) AS
	SELECT dl.event_id, d.name AS destination, dl.attempts, dl.last_error, dl.failed_at,
	       dl.id, dl.topic, dl.aggregate_id, dl.event_type, dl.payload, dl.headers,
	       dl.created_at, dl.deliver_after, dl.txid, dl.committed_at
	  FROM outbox.dead_letter dl
	  JOIN outbox.destination d ON d.id = dl.destination_id
	 WHERE outbox.has_topic_privilege(dl.topic, 'read');
COMMENT ON VIEW outbox.dead_letters IS
	'Events a destination gave up on, with their last error, of the topics the current role may read; see replay_dead() and discard_dead().';

-- One row per destination.  Fast with millions of pending events: the log
-- is never counted; "pending" in the log is the distance in ids between the
-- destination's position and the last id handed out (an upper bound: it
-- includes events of topics the destination does not subscribe to, and ids
-- of rolled-back or uncommitted transactions), or 0
-- when its position has consumed every transaction in the log (see owed
-- below).
-- Rows: the destinations whose owner the current role has the privileges
-- of; every one for superusers and members of pg_read_all_stats (so of
-- pg_monitor).  last_error texts of other roles' destinations stay hidden.
-- What a destination holds of the log (holds_log_since, pinned_events,
-- pinned_bytes) is counted a partition at a time, as the log is retired:
-- the partitions whose newest transaction is not below the xmin of the
-- destination's position, their size and their live-row estimate from the
-- statistics system (no scan of the log; max(txid) is one index probe).
-- oldest_ready_age (issue 17 item 1): the age of the oldest event whose
-- transaction the destination's position (tick_from) has not consumed -
-- the first event at or past the xmax of that tick's snapshot, by the txid
-- index, and one event of each transaction it saw running (its xip list;
-- any event of a transaction is as old as the transaction, give or take
-- its duration): a few index probes - or of its oldest due retry row,
-- whichever is older.
-- A destination whose topics are quiet while others are busy is not behind
-- (no false backlog), and an open transaction elsewhere does not age it.
-- Only a position without its tick (lost) falls back to the first event
-- of the oldest transaction with events after done_id, by the (txid, id)
-- index (the id a condition inside the index: the log has no index on id,
-- and ordering by id would put a sort of the whole log in the plan - never
-- run, but its estimated cost set off JIT for every scrape of a large log).
-- oldest_ready_age_seconds is the same in seconds (0 when nothing is
-- ready); paused_by_410: paused, and a dead letter that an http
-- endpoint refused with 410 Gone (the refusal that pauses) is still there
-- - not last_error, which a move past max_destination_lag overwrites.  The
-- refused event comes before those skipped after it, so the scan of the
-- destination's dead letters in id order stops early.
CREATE VIEW outbox.stats WITH (security_barrier) AS
	WITH part AS MATERIALIZED (
	       SELECT p.rel, p.max_txid,
	              pg_catalog.pg_stat_get_live_tuples(p.rel) AS live,
	              pg_catalog.pg_total_relation_size(p.rel) AS bytes
	         FROM (VALUES ('outbox.events_p0'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p0)),
	                      ('outbox.events_p1'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p1)),
	                      ('outbox.events_p2'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p2)),
	                      ('outbox.events_p3'::pg_catalog.regclass,
	                       (SELECT pg_catalog.max(txid) FROM outbox.events_p3))) p(rel, max_txid)
	        WHERE p.max_txid IS NOT NULL)
	SELECT d.name AS destination,
	       d.kind,
	       d.paused,
	       log.n + COALESCE(r.total, 0) AS pending,
	       CASE WHEN d.paused OR d.retry_at > pg_catalog.now() THEN 0
	            ELSE log.n + COALESCE(r.due, 0)
	       END AS ready,
	       ready_age.age AS oldest_ready_age,
	       COALESCE(r.retrying, 0) AS retrying,
	       COALESCE(dl.dead, 0) AS dead,
	       d.delivered_total,
	       d.failed_attempts_total,
	       d.last_delivered_at,
	       COALESCE(outbox.dispatch_status(), d.last_error) AS last_error,
	       d.last_error_at,
	       w.worker AS served_by,
	       w.wait_event,
	       CASE WHEN d.config -> 'ordered' = 'false'::jsonb THEN 'unordered'
	            WHEN pg_catalog.current_setting('track_commit_timestamp')::boolean THEN 'commit'
	            ELSE 'id'
	       END AS delivery_order,
	       pin.since AS holds_log_since,
	       pin.events AS pinned_events,
	       pin.bytes AS pinned_bytes,
	       COALESCE(pg_catalog.date_part('epoch', ready_age.age), 0) AS oldest_ready_age_seconds,
	       d.paused AND EXISTS (
	           SELECT 1 FROM outbox.dead_letter x
	            WHERE x.destination_id = d.id AND x.attempts > 0
	              AND x.last_error LIKE 'HTTP 410%') AS paused_by_410,
	       COALESCE(r.replay, 0) AS replay_pending,
	       CASE WHEN r.replay > 0 THEN rp.since END AS replay_since
	  FROM outbox.destination d
	  LEFT JOIN outbox.replay rp ON rp.destination_id = d.id
	 CROSS JOIN (SELECT last_value FROM outbox.events_id_seq) seq
	  LEFT JOIN (
	       SELECT ws.destination_id, ws.worker, ws.wait_event FROM outbox.worker_status() ws
	        WHERE ws.database = pg_catalog.current_database()
	          AND ws.destination_id IS NOT NULL) w ON w.destination_id = d.id
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS total,
	              count(*) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS due,
	              count(*) FILTER (WHERE rr.attempts > 0) AS retrying,
	              min(rr.created_at) FILTER (WHERE rr.next_attempt_at <= pg_catalog.now()) AS oldest_due,
	              count(*) FILTER (WHERE rr.replay) AS replay
	         FROM outbox.delivery_retry rr WHERE rr.destination_id = d.id) r ON true
	  LEFT JOIN LATERAL (
	       SELECT count(*) AS dead FROM outbox.dead_letter x WHERE x.destination_id = d.id) dl ON true
	  LEFT JOIN LATERAL (
	       SELECT t.id AS tick,
	              (SELECT pg_catalog.min(o.created_at) FROM (
	                     (SELECT e.created_at FROM outbox.events e
	                       WHERE e.txid >= pg_catalog.pg_snapshot_xmax(t.snapshot)
	                       ORDER BY e.txid LIMIT 1)
	                     UNION ALL
	                     SELECT (SELECT e.created_at FROM outbox.events e
	                              WHERE e.txid = x.txid LIMIT 1)
	                       FROM pg_catalog.pg_snapshot_xip(t.snapshot) x(txid)) o)
	                  AS created_at
	         FROM outbox.tick t
	        WHERE t.id = d.tick_from) owed ON true
	  LEFT JOIN LATERAL (
	       SELECT e.created_at FROM outbox.events e
	        WHERE owed.tick IS NULL AND e.id > d.done_id ORDER BY e.txid, e.id LIMIT 1) head ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN owed.tick IS NOT NULL AND owed.created_at IS NULL THEN 0
	                   ELSE GREATEST(seq.last_value - d.done_id, 0)
	              END AS n) log ON true
	  LEFT JOIN LATERAL (
	       SELECT t.created_at AS since,
	              COALESCE(sum(p.live), 0)::bigint AS events,
	              COALESCE(sum(p.bytes), 0)::bigint AS bytes
	         FROM outbox.tick t
	         LEFT JOIN part p ON p.max_txid >= pg_catalog.pg_snapshot_xmin(t.snapshot)
	        WHERE t.id = d.tick_from
	        GROUP BY t.created_at) pin ON true
	  LEFT JOIN LATERAL (
	       SELECT CASE WHEN d.paused THEN NULL
	                   ELSE pg_catalog.now() - LEAST(r.oldest_due, owed.created_at, head.created_at)
	              END AS age) ready_age ON true
	 WHERE pg_catalog.pg_has_role(d.owner, 'USAGE')
	    OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');
COMMENT ON VIEW outbox.stats IS
	'One row per destination the current role owns (every one for superusers and pg_monitor / pg_read_all_stats): backlog, retries, dead letters, counters, the last error, what it holds of the log (holds_log_since, pinned_events, pinned_bytes: estimates per partition), the oldest ready age in seconds and whether an http 410 paused it (for contrib/prometheus/queries.yaml), and a replay in progress (replay_pending: events outbox.rewind queued and not yet delivered; replay_since: its since).';

-- One row for this database (issue 17 item 1, contrib/prometheus): whether
-- it is dispatched, how many dispatchers run, whether the SQL version
-- differs from the library's (the dispatcher's check, read from
-- dispatch_status(): it waits then; or from the installed control file's
-- default_version, which comes with the library, when no dispatcher ran
-- the check), and the log's size.  No scan of the
-- log: the size and live-row estimate of its partitions come from the
-- catalogs and the statistics system, the oldest event as the first of the
-- oldest transaction, from the (txid, id) index (one probe per partition).
-- Readable by pg_monitor.
CREATE VIEW outbox.database_stats AS
	SELECT pg_catalog.current_database()::text AS database,
	       x.extversion::text AS extension_version,
	       st.status AS dispatch_status,
	       st.status IS NULL AS dispatching,
	       COALESCE(st.status LIKE 'dispatch waits: the extension''s SQL version differs%', false)
	           OR x.extversion <> (SELECT a.default_version FROM pg_catalog.pg_available_extensions a
	                                WHERE a.name = 'outbox_saga') AS version_mismatch,
	       (SELECT count(*) FROM outbox.worker_status() w
	         WHERE w.database = pg_catalog.current_database()
	           AND w.kind = 'dispatcher')::integer AS dispatchers,
	       pg_catalog.current_setting('outbox_saga.workers_per_database', true)::integer
	           AS dispatchers_configured,
	       (SELECT COALESCE(sum(pg_catalog.pg_stat_get_live_tuples(p.relid)), 0)::bigint
	          FROM pg_catalog.pg_partition_tree('outbox.events'::pg_catalog.regclass) p
	         WHERE p.isleaf) AS log_events,
	       (SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(p.relid)), 0)::bigint
	          FROM pg_catalog.pg_partition_tree('outbox.events'::pg_catalog.regclass) p) AS log_bytes,
	       COALESCE(pg_catalog.date_part('epoch', pg_catalog.now() -
	           (SELECT e.created_at FROM outbox.events e ORDER BY e.txid, e.id LIMIT 1)), 0)
	           AS oldest_event_age_seconds
	  FROM pg_catalog.pg_extension x
	 CROSS JOIN (SELECT outbox.dispatch_status() AS status) st
	 WHERE x.extname = 'outbox_saga';
COMMENT ON VIEW outbox.database_stats IS
	'One row for this database: whether a dispatcher serves it (dispatching; dispatch_status says why not), how many run, whether the extension''s SQL version differs from the library''s, and the size of the log (live-row estimate, bytes, age of the oldest event); readable by pg_monitor (contrib/prometheus/queries.yaml).';

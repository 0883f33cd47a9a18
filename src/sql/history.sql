
-- ---------------------------------------------------------------------------
-- Retained history and replay (issue 16; design: src/events/history.c and
-- src/dispatch/replay.c).  A retained topic's events are archived, in
-- commit order, by an internal function destination named
-- 'outbox.history' into outbox.history, where they stay (insert-only)
-- until their topic's keep interval has passed.  outbox.rewind() queues a
-- destination's retained events again as retry rows marked replay.
-- ---------------------------------------------------------------------------

-- The topics whose events are kept; keep NULL: forever.
CREATE TABLE outbox.retained_topic (
	topic       text        PRIMARY KEY,
	keep        interval    CHECK (keep > '0'::interval),
	created_at  timestamptz NOT NULL DEFAULT now()
);

-- Positions in commit order: drawn by the archiver, one batch after the
-- other (its destination row lock serializes them).
CREATE SEQUENCE outbox.history_position_seq AS bigint;

-- The history store: the events of the retained topics, insert-only
-- (housekeeping deletes those older than their topic's keep).
-- committed_at: the commit time of the event's transaction
-- (track_commit_timestamp), or its created_at when that is unknown.
CREATE TABLE outbox.history (
	position      bigint      NOT NULL,
	id            bigint      NOT NULL,
	event_id      uuid        NOT NULL,
	topic         text        NOT NULL,
	aggregate_id  text,
	event_type    text        NOT NULL,
	payload       jsonb       NOT NULL,
	headers       jsonb       NOT NULL,
	created_at    timestamptz NOT NULL,
	deliver_after timestamptz,
	txid          xid8        NOT NULL,
	committed_at  timestamptz NOT NULL
);
CREATE INDEX history_aggregate_idx ON outbox.history (topic, aggregate_id, position);
CREATE INDEX history_committed_idx ON outbox.history (topic, committed_at);
ALTER SEQUENCE outbox.history_position_seq OWNED BY outbox.history.position;

COMMENT ON TABLE outbox.history IS
	'Retained events (outbox.retain_topic), with their position in commit order. Written only by the archiver destination outbox.history; read with outbox.aggregate_events().';

-- Retry rows queued by outbox.rewind() (outbox.stats: replay_pending).
ALTER TABLE outbox.delivery_retry ADD COLUMN replay boolean NOT NULL DEFAULT false;
-- A replay row's place in the history (outbox.history.position; NULL: not
-- replayed from the store).  Rows with a position come first and in
-- position order, so a replay repeats the history's order, which is the
-- order the archiver was delivered (RETRY_PRECEDES_SQL,
-- src/dispatch/delivery.h).
ALTER TABLE outbox.delivery_retry ADD COLUMN "position" bigint;
-- The failed retry rows of a destination in id order: with the primary key,
-- a batch reads the due heads by two index scans that stop at its limit
-- (Q_DUE_RETRIES, src/dispatch/delivery.c), also with a large replay queued.
CREATE INDEX delivery_retry_failed_idx ON outbox.delivery_retry (destination_id, id)
	WHERE attempts > 0;
-- A destination's retry rows in due order: the dispatcher's next due time
-- stops at the first head (DS_NEXT_DUE, src/worker/dispatcher.c).
CREATE INDEX delivery_retry_dest_due_idx ON outbox.delivery_retry (destination_id, next_attempt_at);

-- The latest rewind of each destination.
CREATE TABLE outbox.replay (
	destination_id  integer     PRIMARY KEY REFERENCES outbox.destination ON DELETE CASCADE,
	since           timestamptz NOT NULL,
	started_at      timestamptz NOT NULL DEFAULT now(),
	events          bigint      NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('outbox.retained_topic', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.history', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.history_position_seq', '');

-- The archiver's handler: runs as the archiver's owner (the bootstrap
-- superuser), in the batch's transaction (G5: archived exactly once).
CREATE FUNCTION outbox.history_archive(event outbox.events)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO outbox.history (position, id, event_id, topic, aggregate_id, event_type,
	       payload, headers, created_at, deliver_after, txid, committed_at)
	VALUES (nextval('outbox.history_position_seq'), event.id, event.event_id, event.topic,
	        event.aggregate_id, event.event_type, event.payload, event.headers,
	        event.created_at, event.deliver_after, event.txid,
	        COALESCE(outbox.committed_at(event.txid), event.created_at))
$$;
COMMENT ON FUNCTION outbox.history_archive(outbox.events) IS
	'Internal: the handler of the archiver destination outbox.history.';

-- Internal: whether a role may read a topic (events/topic_acl.c), for the
-- filter of a rewind by the destination's owner.  Not STRICT: the planner
-- folds a strict call with a NULL constant before EXECUTE is checked.
CREATE FUNCTION outbox.role_may_read_topic(role oid, topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_saga_role_may_read_topic'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION outbox.role_may_read_topic(oid, text) IS
	'Internal: whether a role may read a topic.';

-- Internal: whether the position of destination 'dest' is past the event
-- (txid, id): its transaction is visible in the tick the destination
-- starts from, or it is in the window being consumed and behind the
-- cursor (CURSOR_PASSED_SQL of src/dispatch/delivery.h).
CREATE FUNCTION outbox.position_passed(dest outbox.destination, txid xid8, id bigint)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE((SELECT pg_visible_in_snapshot(txid, t.snapshot)
	                   FROM outbox.tick t WHERE t.id = dest.tick_from), false)
	    OR COALESCE((SELECT pg_visible_in_snapshot(txid, t.snapshot)
	                        AND CASE WHEN dest.last_txid IS NULL THEN id <= dest.last_id
	                                 ELSE (outbox.committed_at(txid), txid, id)
	                                      <= (outbox.committed_at(dest.last_txid), dest.last_txid, dest.last_id)
	                            END
	                   FROM outbox.tick t WHERE t.id = dest.tick_to), false)
$$;
COMMENT ON FUNCTION outbox.position_passed(outbox.destination, xid8, bigint) IS
	'Internal: whether a destination''s position is past an event of the log.';

-- Internal: the committed events of retained topics (topic NULL: all) and
-- an aggregate (NULL: all) that the archiver has not archived yet: those
-- of the log ahead of its position that its subscriptions take, and its
-- retry rows (delayed or held back).  In one snapshot with outbox.history
-- they are exactly the retained events not in it (the archiver records
-- its position and the rows it archived in one transaction).
CREATE FUNCTION outbox.history_tail(p_topic text, p_aggregate text)
RETURNS TABLE (id bigint, event_id uuid, topic text, aggregate_id text, event_type text,
               payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload, e.headers,
	       e.created_at, e.deliver_after, e.txid,
	       COALESCE(outbox.committed_at(e.txid), e.created_at)
	  FROM outbox.destination a
	  JOIN outbox.events e
	    ON (p_topic IS NULL OR e.topic = p_topic)
	   AND (p_aggregate IS NULL OR e.aggregate_id = p_aggregate)
	 WHERE a.name = 'outbox.history'
	   AND EXISTS (SELECT 1 FROM outbox.subscription s
	                WHERE s.destination_id = a.id AND s.topic = e.topic
	                  AND NOT pg_visible_in_snapshot(e.txid, s.since))
	   AND NOT outbox.position_passed(a, e.txid, e.id)
	UNION ALL
	SELECT r.id, r.event_id, r.topic, r.aggregate_id, r.event_type, r.payload, r.headers,
	       r.created_at, r.deliver_after, r.txid, COALESCE(r.committed_at, r.created_at)
	  FROM outbox.destination a
	  JOIN outbox.delivery_retry r ON r.destination_id = a.id
	 WHERE a.name = 'outbox.history'
	   AND (p_topic IS NULL OR r.topic = p_topic)
	   AND (p_aggregate IS NULL OR r.aggregate_id = p_aggregate)
$$;
COMMENT ON FUNCTION outbox.history_tail(text, text) IS
	'Internal: the committed events of retained topics not archived yet.';

-- Internal (src/events/history.c calls it with the extension's rights
-- after its checks): start or change the retention of a topic.
CREATE FUNCTION outbox.history_retain(p_topic text, p_keep interval)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	archiver outbox.destination;
BEGIN
	SELECT * INTO archiver FROM outbox.destination WHERE name = 'outbox.history';
	IF NOT FOUND THEN
		PERFORM outbox.create_destination('outbox.history', 'function',
			'{"function": "outbox.history_archive", "max_attempts": 2147483647}');
	ELSIF archiver.kind <> 'function'
	   OR archiver.config ->> 'function' <> 'outbox.history_archive' THEN
		RAISE EXCEPTION 'destination "outbox.history" is not the history archiver'
		      USING ERRCODE = 'duplicate_object',
		            HINT = 'The name outbox.history is reserved for the archiver of retained topics; rename or drop that destination.';
	END IF;
	INSERT INTO outbox.retained_topic (topic, keep) VALUES (p_topic, p_keep)
	    ON CONFLICT (topic) DO UPDATE SET keep = EXCLUDED.keep;
	IF NOT EXISTS (SELECT 1 FROM outbox.subscription s
	                 JOIN outbox.destination a ON a.id = s.destination_id
	                WHERE a.name = 'outbox.history' AND s.topic = p_topic) THEN
		PERFORM outbox.subscribe('outbox.history', p_topic);
	END IF;
END $$;
COMMENT ON FUNCTION outbox.history_retain(text, interval) IS
	'Internal: the body of outbox.retain_topic().';

-- Internal: stop retaining a topic and delete its history.
CREATE FUNCTION outbox.history_unretain(p_topic text)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM outbox.retained_topic WHERE topic = p_topic;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'topic "%" is not retained', p_topic
		      USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM outbox.subscription s USING outbox.destination a
	 WHERE a.id = s.destination_id AND a.name = 'outbox.history' AND s.topic = p_topic;
	DELETE FROM outbox.delivery_retry r USING outbox.destination a
	 WHERE a.id = r.destination_id AND a.name = 'outbox.history' AND r.topic = p_topic;
	DELETE FROM outbox.history WHERE topic = p_topic;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_unretain(text) IS
	'Internal: the body of outbox.unretain_topic().';

-- Internal: an aggregate's history after a position, then its committed
-- events not archived yet (position NULL), in one snapshot (STABLE).
CREATE FUNCTION outbox.history_aggregate(p_topic text, p_aggregate text, p_after bigint)
RETURNS TABLE ("position" bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM outbox.retained_topic r WHERE r.topic = p_topic) THEN
		RAISE EXCEPTION 'topic "%" is not retained', p_topic
		      USING ERRCODE = 'object_not_in_prerequisite_state',
		            HINT = 'Call outbox.retain_topic() first; events committed after it are kept.';
	END IF;
	RETURN QUERY
	SELECT h.position, h.id, h.event_id, h.topic, h.aggregate_id, h.event_type, h.payload,
	       h.headers, h.created_at, h.deliver_after, h.txid, h.committed_at
	  FROM outbox.history h
	 WHERE h.topic = p_topic AND h.aggregate_id = p_aggregate AND h.position > p_after
	 ORDER BY h.position;
	RETURN QUERY
	SELECT NULL::bigint, t.*
	  FROM outbox.history_tail(p_topic, p_aggregate) t
	 ORDER BY t.committed_at, t.txid, t.id;
END $$;
COMMENT ON FUNCTION outbox.history_aggregate(text, text, bigint) IS
	'Internal: the body of outbox.aggregate_events().';

-- Internal (src/dispatch/replay.c, after its checks): queue the retained
-- events of a destination's subscriptions (or of one of them) committed at
-- or after 'since' as replay retry rows: those its position is past, or
-- that it would not take live; the events it will still take live come
-- live.  Not those it already has as a retry row or dead letter.
CREATE FUNCTION outbox.history_rewind(dest_id integer, since timestamptz, only_subscription bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	d outbox.destination;
	n bigint;
BEGIN
	SELECT * INTO d FROM outbox.destination WHERE id = dest_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination does not exist' USING ERRCODE = 'undefined_object';
	END IF;
	IF d.name = 'outbox.history' THEN
		RAISE EXCEPTION 'the history archiver cannot be rewound'
		      USING ERRCODE = 'wrong_object_type';
	END IF;
	WITH ev AS (
	       SELECT h.id, h.event_id, h.topic, h.aggregate_id, h.event_type, h.payload, h.headers,
	              h.created_at, h.deliver_after, h.txid, h.committed_at, h.position
	         FROM outbox.history h
	        WHERE h.committed_at >= since
	       UNION ALL
	       SELECT t.*, NULL::bigint FROM outbox.history_tail(NULL, NULL) t WHERE t.committed_at >= since)
	INSERT INTO outbox.delivery_retry AS r (destination_id, id, event_id, topic, aggregate_id,
	       event_type, payload, headers, created_at, deliver_after, txid, attempts,
	       next_attempt_at, committed_at, replay, "position")
	SELECT d.id, e.id, e.event_id, e.topic, e.aggregate_id, e.event_type, e.payload,
	       e.headers, e.created_at, e.deliver_after, e.txid, 0,
	       GREATEST(now(), COALESCE(e.deliver_after, now())), e.committed_at, true, e.position
	  FROM ev e
	 WHERE EXISTS (SELECT 1 FROM outbox.subscription s
	                WHERE s.destination_id = d.id
	                  AND (only_subscription IS NULL OR s.id = only_subscription)
	                  AND (s.topic = '*' OR s.topic = e.topic)
	                  AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types)))
	   -- not an event the destination will still take live
	   AND (outbox.position_passed(d, e.txid, e.id)
	        OR NOT EXISTS (SELECT 1 FROM outbox.subscription s
	                        WHERE s.destination_id = d.id
	                          AND (s.topic = '*' OR s.topic = e.topic)
	                          AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
	                          AND NOT pg_visible_in_snapshot(e.txid, s.since)))
	   AND NOT EXISTS (SELECT 1 FROM outbox.dead_letter x
	                    WHERE x.destination_id = d.id AND x.id = e.id)
	   AND outbox.role_may_read_topic(d.owner, e.topic)
	ON CONFLICT (destination_id, id) DO NOTHING;
	GET DIAGNOSTICS n = ROW_COUNT;

	INSERT INTO outbox.replay (destination_id, since, started_at, events)
	VALUES (d.id, since, now(), n)
	ON CONFLICT (destination_id) DO UPDATE
	   SET since = EXCLUDED.since, started_at = EXCLUDED.started_at, events = EXCLUDED.events;
	-- a destination backing off after failures starts the replay now
	UPDATE outbox.destination SET retry_at = NULL, consecutive_failures = 0 WHERE id = d.id AND n > 0;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_rewind(integer, timestamptz, bigint) IS
	'Internal: the body of outbox.rewind().';

-- Internal (housekeeping, src/worker/housekeeping.c): delete at most
-- max_rows events of retained topics older than their keep.
CREATE FUNCTION outbox.history_prune(max_rows integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM outbox.history
	 WHERE ctid = ANY (ARRAY(
	       SELECT x.ctid
	         FROM outbox.retained_topic r
	        CROSS JOIN LATERAL (
	              SELECT h.ctid FROM outbox.history h
	               WHERE h.topic = r.topic AND h.committed_at < now() - r.keep
	               LIMIT max_rows) x
	        WHERE r.keep IS NOT NULL
	        LIMIT max_rows));
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;
COMMENT ON FUNCTION outbox.history_prune(integer) IS
	'Internal: delete retained events older than their topic''s keep (housekeeping).';

-- The version of event-sourced aggregates: the number of events appended
-- to each with outbox.append() (src/events/history.c, EXPECTED VERSION).
CREATE TABLE outbox.aggregate_version (
	topic         text   NOT NULL,
	aggregate_id  text   NOT NULL,
	version       bigint NOT NULL,
	PRIMARY KEY (topic, aggregate_id)
);
SELECT pg_catalog.pg_extension_config_dump('outbox.aggregate_version', '');

-- The API (C: the checks as the caller, then the bodies above with the
-- extension's rights).
CREATE FUNCTION outbox.retain_topic(topic text, keep interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_saga_retain_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.retain_topic(text, interval) IS
	'Keep the events of a topic committed from now on in the history store (outbox.aggregate_events, outbox.rewind), for keep (NULL: forever); called again, changes keep. Topic owner or superuser only.';

CREATE FUNCTION outbox.unretain_topic(topic text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_unretain_topic'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.unretain_topic(text) IS
	'Stop retaining a topic and delete its history; returns the number of events deleted. Topic owner or superuser only.';

CREATE FUNCTION outbox.aggregate_events(topic text, aggregate_id text, after bigint DEFAULT 0)
RETURNS TABLE ("position" bigint, id bigint, event_id uuid, topic text, aggregate_id text,
               event_type text, payload jsonb, headers jsonb, created_at timestamptz,
               deliver_after timestamptz, txid xid8, committed_at timestamptz)
AS 'MODULE_PATHNAME', 'outbox_saga_aggregate_events'
LANGUAGE C STABLE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION outbox.aggregate_events(text, text, bigint) IS
	'The retained events of an aggregate in commit order with their position (page with after => the last position seen), then its committed events not archived yet, with position NULL. Needs read on the topic.';

CREATE FUNCTION outbox.rewind(destination text, since timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_rewind'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.rewind(text, timestamptz) IS
	'Deliver again the retained events of a destination''s subscriptions committed at or after since (commit time), in commit order per aggregate, ahead of the live events of their aggregates; returns how many were queued. Owner or superuser only.';

-- subscribe() with a since: a function of its own, since subscribe() is
-- not overloaded (the Privileges table names functions without arguments,
-- and replacing it would drop the grants on it at ALTER EXTENSION UPDATE).
CREATE FUNCTION outbox.subscribe_since(
	destination text,
	since       timestamptz,
	topic       text   DEFAULT '*',
	event_types text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_subscribe_since'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.subscribe_since(text, timestamptz, text, text[]) IS
	'outbox.subscribe(destination, topic, event_types), and the delivery, ahead of the live events of their aggregates, of the retained events of that subscription committed at or after since (commit time). Returns the subscription id. Owner or superuser only.';

CREATE FUNCTION outbox.append(
	topic            text,
	aggregate_id     text,
	expected_version bigint,
	event_type       text,
	payload          jsonb DEFAULT '{}',
	headers          jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_saga_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION outbox.append(text, text, bigint, text, jsonb, jsonb) IS
	'Write an event of an aggregate as outbox.emit() does, if the aggregate''s version (events appended with outbox.append) is expected_version (0: new); returns the new version. Otherwise, or when a concurrent append with the same expected version commits first, SQLSTATE 40001. Needs write on the topic.';

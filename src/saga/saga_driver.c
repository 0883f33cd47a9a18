/*-------------------------------------------------------------------------
 *
 * saga_driver.c
 *		The dispatcher's part of sagas: running steps and compensations,
 *		enforcing timeouts and deadlines, recovering after a crash; and the
 *		state machine shared with the API (saga_internal.h).
 *
 * STATE
 *	All of it lives in tables (src/sql/saga.sql): saga.instance (one row per
 *	saga, its status) and saga.step_run (one row per step action or
 *	compensation record, its status, attempts and policy).  A saga has at
 *	most one *active* run - pending, running or waiting - at any time
 *	(a unique partial index enforces it): actions run one after another, and
 *	so do compensations.
 *
 *	Saga status:
 *	  running -----> completed                 (the last action succeeded)
 *	     |
 *	     | an action gave up (max_attempts), the deadline passed, cancel
 *	     v
 *	  compensating -> compensated              (every record succeeded)
 *	     |        \--> cancelled               (same, after saga.cancel)
 *	     v
 *	  failed  (a compensation gave up; saga.retry goes back to compensating)
 *
 *	Run status: recorded (a compensation record, not needed yet), pending
 *	(at next_attempt_at), running, waiting (for saga.complete_step, until
 *	timeout_at), succeeded, failed (gave up), cancelled (never ran).
 *
 *	When an action succeeds: its result goes into instance.results, its
 *	compensation (if the step has one) becomes a 'recorded' run, and the
 *	next action is inserted as pending (or the saga completes).  When an
 *	attempt fails: the run goes back to pending with a backoff (full
 *	jitter over min(backoff_max, backoff_base * 2^(attempts-1))) while
 *	attempts < max_attempts, else it fails for good.  When a saga
 *	compensates and has no active run, the record with the highest seq
 *	(recorded last: reverse order) becomes pending; with none left the
 *	saga ends compensated (cancelled after saga.cancel).  A compensation
 *	that gives up makes the saga failed; saga.retry() makes it pending again
 *	with attempts starting over.  An action that is still running when the
 *	saga starts compensating (cancel, deadline) holds compensation back
 *	until its outcome is known; if it succeeded, its own compensation runs
 *	first.
 *
 * TRANSACTIONS (what "recorded as running before its action runs" means)
 *	The requirement is that the record "this attempt is running" is
 *	committed before the attempt can have any effect, in a transaction
 *	other than the one the attempt runs in, so that a crash during the
 *	attempt leaves a visible trace and the run is attempted again, with the
 *	same idempotency key.  It does not require one transaction per step, so
 *	the driver batches.  One pass of SagaRunPass is a few *rounds*; one
 *	round is one transaction that
 *	  1. sweeps: sagas past their deadline start compensating; waiting runs
 *		 past timeout_at fail an attempt (in a subtransaction, like the
 *		 recovery below, so that a problem there never blocks the rest);
 *	  2. runs the runs claimed by the previous round (committed 'running'
 *		 there): each in its own subtransaction through RunAsOwner, as
 *		 the definition's owner with SECURITY_RESTRICTED_OPERATION, pinned
 *		 search_path and the step's timeout as statement timeout;
 *	  3. records their outcomes and advances the sagas (set-based
 *		 statements over the whole batch: SagaApplyOutcomes);
 *	  4. claims the next batch of due pending runs: status 'running',
 *		 attempts + 1 (the claim of batch k+1 commits with the outcomes of
 *		 batch k), and reads what to send for the http runs among them.
 *	So every action runs in the round after the one whose commit made it
 *	'running'.  http runs are sent between the two rounds, with no
 *	transaction open: after the claiming round committed (and flushed),
 *	before the next one starts; that round records their outcomes in step
 *	3 like the others.  A function step's effects, an emitted event and the
 *	recorded outcome commit together (exactly once, like G5); compensations
 *	likewise, so none runs twice.  The last round of a pass claims nothing,
 *	so that claims do not sit across passes.
 *
 *	Durability: the dispatcher commits asynchronously (dispatcher.c).  A
 *	round that claimed runs flushes its commit record (XLogFlush) before the
 *	next round runs them, so "running" is on disk before any attempt can
 *	have an effect - also an effect outside the database (http) - and a
 *	crash always leaves it visible.  The outcomes need no flush: a crash
 *	that loses a round loses its outcomes and the effects of its runs
 *	together (WAL is replayed in order), and those runs are attempted
 *	again.  One flush per round, not per step.
 *
 *	Locks: every change of a saga happens under its instance row lock (FOR
 *	NO KEY UPDATE).  The driver takes it with SKIP LOCKED only: a saga that
 *	a user's transaction holds (saga.cancel, complete_step, ...) is left for
 *	a later round, and the dispatcher never waits for a user.  A claimed run
 *	of such a saga stays in the driver's list (process memory) until it can
 *	be run.  The claim itself locks only the run rows (SKIP LOCKED).
 *
 * CALLS
 *	The ctx passed to a call is {saga_id, definition, step, phase, attempt,
 *	idempotency_key, input, results}; idempotency_key is
 *	saga_id:step:phase, the same for every attempt and after a crash.
 *	  function  fn(ctx) in a subtransaction (RunAsOwner); its result is
 *				stored.  An error, or the step's timeout (statement
 *				timeout), is a failed attempt.
 *	  emit		an event (OutboxAppendEvent) in the round's transaction:
 *				payload ctx, aggregate_id the saga, headers saga_id,
 *				saga_step, saga_phase, idempotency_key; it exists iff the
 *				outcome is recorded.  Result {"event_id": ...}; with await the
 *				run waits for saga.complete_step until timeout_at, and a
 *				timeout is a failed attempt (the command is emitted again).
 *	  http		a request through the http destinations' machinery
 *				(SinkHttpSend in sink/http.c: the libcurl multi loop waiting
 *				on the latch and the sockets, connection reuse,
 *				outbox_saga.http_deny_networks on the resolved address), all
 *				the http runs of a round at once, between two rounds (see
 *				TRANSACTIONS).  Method and headers from the call; body ctx
 *				(application/json, whatever the method); Idempotency-Key:
 *				the ctx's idempotency_key (a call may not set it itself);
 *				timeout: the step's, for the whole request; redirects are
 *				not followed.  2xx succeeds: the body is the result - jsonb
 *				if it is JSON, else a JSON string (an empty body: null;
 *				at most 1 MB, a larger body is a failed attempt).  4xx other
 *				than 408, 409, 425, 429 fails the run for good, no retry
 *				(the saga compensates; a compensation gives up); so does a
 *				call that cannot be sent (bad header, refused URL form).
 *				Anything else - other statuses, timeouts, network errors,
 *				refused addresses - is a failed attempt, retried with the
 *				step's backoff (Retry-After is not used).  Errors carry the
 *				status and the start of the body, or libcurl's message;
 *				never a header value, the path or the query of the URL.
 *				A request whose answer is lost in a crash is sent again
 *				with the same Idempotency-Key (at least once).
 *
 * CRASH
 *	A crash (or SIGTERM) during a round rolls back that round: the runs it
 *	was running stay 'running' (claimed in the previous, committed round),
 *	and their effects are gone.  The first pass of a new dispatcher process
 *	finds every 'running' run (no other process claims runs: one dispatcher
 *	per database) and puts it back to pending at once: the attempt is not
 *	counted, the run's error says it was interrupted, and it runs again
 *	with the same idempotency key.  A run interrupted SAGA_MAX_INTERRUPTIONS
 *	times (a step that crashes the server) counts that attempt as failed, so
 *	a crash loop ends.  Timeouts (timeout_at) and deadlines are columns, so
 *	they are enforced after a restart as before.
 *
 * ERRORS
 *	A step's error is a failed attempt (RunAsOwner rolls back its
 *	subtransaction).  Any other error in a round aborts it; the claimed runs
 *	are then run again one saga per transaction, and a saga whose run
 *	still fails that way gets the error recorded as a failed attempt, so
 *	one bad saga never stops the others or the dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "base/run_as.h"
#include "events/eventlog.h"
#include "mb/pg_wchar.h"
#include "sink/http.h"
#include "base/guc.h"
#include "saga/saga.h"
#include "saga/saga_driver.h"
#include "saga/saga_internal.h"
#include "base/spi_util.h"

/* A pass stops claiming after this many rounds or this much time. */
#define SAGA_MAX_ROUNDS				16
#define SAGA_PASS_BUDGET_MS			250
/* Runs claimed per round, at most. */
#define SAGA_MAX_BATCH				1000
/* Deadlines and timeouts handled per round, at most. */
#define SAGA_SWEEP_LIMIT			1000
/* Interruptions of one run before an interrupted attempt counts. */
#define SAGA_MAX_INTERRUPTIONS		3
/* How long recovery or the sweep waits after it failed. */
#define SAGA_GUARD_BACKOFF_MS		10000

/* The statements of the state machine; planned once per process, kept. */
enum
{
	Q_RECORD,
	Q_ACTION_DONE,
	Q_ACTION_GAVE_UP,
	Q_COMP_GAVE_UP,
	Q_ADVANCE,
	Q_DEADLINES,
	Q_TIMEOUTS,
	Q_LOCK_CLAIMED,
	Q_CLAIM,
	Q_READY,
	Q_ORPHANS,
	Q_ORPHANS_LEFT,
	Q_EXISTING,
	Q_NEXT_DUE,
	Q_HTTP_CALLS,
	Q_COUNT
};

/* A step run's policy columns, from a normalized step object 's'. */
#define POLICY_COLUMNS "max_attempts, timeout, backoff_base, backoff_max"
#define POLICY_VALUES(s, attempts_key) \
	"(" s "->>'" attempts_key "')::integer," \
	" pg_catalog.make_interval(secs => (" s "->>'timeout')::float8)," \
	" pg_catalog.make_interval(secs => (" s "->>'backoff_base')::float8)," \
	" pg_catalog.make_interval(secs => (" s "->>'backoff_max')::float8)"

static const char *const query_text[Q_COUNT] = {
	/*
	 * $1 saga ids, $2 steps, $3 phases, $4 outcome kinds, $5 results,
	 * $6 errors, $7 now.  Each run, addressed by its primary key, ends its
	 * attempt; see SagaApplyOutcomes.
	 */
	[Q_RECORD] =
	"UPDATE saga.step_run r"
	"   SET status = CASE o.kind"
	"                  WHEN 'ok' THEN 'succeeded'"
	"                  WHEN 'wait' THEN 'waiting'"
	"                  WHEN 'skip' THEN 'cancelled'"
	"                  WHEN 'requeue' THEN 'pending'"
	"                  WHEN 'abort' THEN 'failed'"
	"                  ELSE CASE WHEN r.attempts < r.max_attempts THEN 'pending' ELSE 'failed' END"
	"                END,"
	"       attempts = r.attempts - CASE WHEN o.kind = 'requeue' THEN 1 ELSE 0 END,"
	"       interruptions = r.interruptions + CASE WHEN o.kind = 'requeue' THEN 1 ELSE 0 END,"
	"       result = CASE WHEN o.kind IN ('ok', 'wait') OR o.result IS NOT NULL"
	"                     THEN o.result ELSE r.result END,"
	"       error = COALESCE(o.error, r.error),"
	"       next_attempt_at = CASE"
	"           WHEN o.kind = 'requeue' THEN $7"
	"           WHEN o.kind IN ('fail', 'timeout') AND r.attempts < r.max_attempts THEN"
	"                $7 + pg_catalog.random() * LEAST(r.backoff_max,"
	"                     r.backoff_base * pg_catalog.power(2, LEAST(r.attempts - 1, 40)))"
	"           END,"
	"       timeout_at = CASE WHEN o.kind = 'wait' THEN r.timeout_at END,"
	"       timed_out_at = CASE WHEN o.kind = 'timeout' THEN $7 ELSE r.timed_out_at END,"
	"       finished_at = CASE"
	"           WHEN o.kind IN ('ok', 'skip', 'abort') THEN $7"
	"           WHEN o.kind IN ('fail', 'timeout') AND r.attempts >= r.max_attempts THEN $7"
	"           END"
	"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]),"
	"                  pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[]),"
	"                  pg_catalog.unnest($5::jsonb[]), pg_catalog.unnest($6::text[]))"
	"       AS o(saga_id, step, phase, kind, result, error)"
	" WHERE r.saga_id = o.saga_id AND r.step = o.step AND r.phase = o.phase"
	"   AND r.status IN ('pending', 'running', 'waiting')"
	" RETURNING r.saga_id, r.step, r.phase, r.status",

	/*
	 * $1 saga ids, $2 steps, $3 now: these actions succeeded.  Store the
	 * result, record the compensation, schedule the next action or complete
	 * the saga.  Returns each saga's status (compensating: the action ended
	 * after the saga had started compensating).
	 */
	[Q_ACTION_DONE] =
	"WITH done AS ("
	"  SELECT u.saga_id, u.step, r.step_index, r.result, i.status,"
	"         d.steps -> r.step_index AS def,"
	"         d.steps -> (r.step_index + 1) AS next"
	"    FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
	"         AS u(saga_id, step)"
	"    JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
	"                        AND r.phase = 'action'"
	"    JOIN saga.instance i ON i.id = u.saga_id"
	"    JOIN saga.definition d ON d.id = i.definition_id"
	"), comp AS ("
	"  INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status, "
	POLICY_COLUMNS ")"
	"  SELECT saga_id, step, 'compensation', step_index,"
	"         pg_catalog.nextval('saga.run_seq'), def->'compensation', 'recorded', "
	POLICY_VALUES("def", "compensation_max_attempts")
	"    FROM done WHERE pg_catalog.jsonb_typeof(def->'compensation') = 'object'"
	"), nxt AS ("
	"  INSERT INTO saga.step_run (saga_id, step, phase, step_index, seq, call, status,"
	"                             next_attempt_at, " POLICY_COLUMNS ")"
	"  SELECT saga_id, next->>'name', 'action', step_index + 1,"
	"         pg_catalog.nextval('saga.run_seq'), next->'action', 'pending', $3, "
	POLICY_VALUES("next", "max_attempts")
	"    FROM done WHERE status = 'running' AND next IS NOT NULL"
	")"
	"UPDATE saga.instance i"
	"   SET results = i.results || pg_catalog.jsonb_build_object(done.step, done.result),"
	"       status = CASE WHEN i.status = 'running' AND done.next IS NULL"
	"                     THEN 'completed' ELSE i.status END,"
	"       current_step = CASE WHEN i.status = 'running' THEN done.next->>'name'"
	"                           ELSE i.current_step END,"
	"       updated_at = $3"
	"  FROM done WHERE i.id = done.saga_id"
	" RETURNING i.id, i.status",

	/* $1 saga ids, $2 steps, $3 now: these actions gave up. */
	[Q_ACTION_GAVE_UP] =
	"UPDATE saga.instance i"
	"   SET status = 'compensating',"
	"       error = pg_catalog.format('step \"%s\" failed after %s attempt(s): %s',"
	"                                 r.step, r.attempts, r.error),"
	"       updated_at = $3"
	"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
	"         AS u(saga_id, step)"
	"  JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
	"                      AND r.phase = 'action'"
	" WHERE i.id = u.saga_id AND i.status = 'running'",

	/* $1 saga ids, $2 steps, $3 now: these compensations gave up. */
	[Q_COMP_GAVE_UP] =
	"UPDATE saga.instance i"
	"   SET status = 'failed', current_step = r.step,"
	"       compensation_error = pg_catalog.format("
	"           'compensation \"%s\" failed after %s attempt(s): %s',"
	"           r.step, r.attempts, r.error),"
	"       updated_at = $3"
	"  FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::text[]))"
	"         AS u(saga_id, step)"
	"  JOIN saga.step_run r ON r.saga_id = u.saga_id AND r.step = u.step"
	"                      AND r.phase = 'compensation'"
	" WHERE i.id = u.saga_id",

	/* $1 saga ids, $2 now: see SagaAdvanceCompensation. */
	[Q_ADVANCE] =
	"WITH s AS ("
	"  SELECT i.id FROM saga.instance i"
	"   WHERE i.id = ANY ($1) AND i.status = 'compensating'"
	"     AND (SELECT count(*) FROM saga.step_run a WHERE a.saga_id = i.id"
	"             AND a.status IN ('pending', 'running', 'waiting')) = 0"
	"), nxt AS ("
	"  SELECT s.id AS saga_id, n.step"
	"    FROM s CROSS JOIN LATERAL ("
	"         SELECT r.step FROM saga.step_run r"
	"          WHERE r.saga_id = s.id AND r.phase = 'compensation' AND r.status = 'recorded'"
	"          ORDER BY r.seq DESC LIMIT 1) n"
	"), promoted AS ("
	"  UPDATE saga.step_run r"
	"     SET status = 'pending', seq = pg_catalog.nextval('saga.run_seq'),"
	"         next_attempt_at = $2"
	"    FROM nxt"
	"   WHERE r.saga_id = nxt.saga_id AND r.step = nxt.step AND r.phase = 'compensation'"
	"  RETURNING r.saga_id, r.step"
	")"
	"UPDATE saga.instance i"
	"   SET status = CASE WHEN p.saga_id IS NOT NULL THEN i.status"
	"                     WHEN i.cancelled THEN 'cancelled' ELSE 'compensated' END,"
	"       current_step = p.step,"
	"       updated_at = $2"
	"  FROM s LEFT JOIN promoted p ON p.saga_id = s.id"
	" WHERE i.id = s.id",

	/*
	 * $1 now, $2 limit: running sagas past their deadline start
	 * compensating; their pending or waiting action fails for good (a
	 * running one is left to its round).  Returns the sagas.
	 */
	[Q_DEADLINES] =
	"WITH s AS ("
	"  SELECT i.id, a.step, a.phase FROM saga.instance i"
	"    LEFT JOIN LATERAL ("
	"         SELECT r.step, r.phase FROM saga.step_run r"
	"          WHERE r.saga_id = i.id AND r.status IN ('pending', 'running', 'waiting')"
	"          LIMIT 1) a ON true"
	"   WHERE i.status = 'running' AND i.deadline <= $1"
	"   ORDER BY i.deadline LIMIT $2"
	"     FOR NO KEY UPDATE OF i SKIP LOCKED"
	"), a AS ("
	"  UPDATE saga.step_run r"
	"     SET status = 'failed', error = 'the saga''s deadline passed',"
	"         next_attempt_at = NULL, timeout_at = NULL, finished_at = $1"
	"    FROM s WHERE r.saga_id = s.id AND r.step = s.step AND r.phase = s.phase"
	"     AND r.status IN ('pending', 'waiting')"
	")"
	"UPDATE saga.instance i"
	"   SET status = 'compensating',"
	"       error = pg_catalog.format('deadline exceeded while running step \"%s\"',"
	"                                 i.current_step),"
	"       updated_at = $1"
	"  FROM s WHERE i.id = s.id"
	" RETURNING i.id",

	/* $1 now, $2 limit: waiting runs past their timeout. */
	[Q_TIMEOUTS] =
	"SELECT r.saga_id, r.step, r.phase,"
	"       'timed out after ' || r.timeout || ' waiting for saga.complete_step'"
	"  FROM saga.step_run r JOIN saga.instance i ON i.id = r.saga_id"
	" WHERE r.status = 'waiting' AND r.timeout_at <= $1"
	" ORDER BY r.timeout_at LIMIT $2"
	"   FOR NO KEY UPDATE OF i SKIP LOCKED",

	/*
	 * $1 saga ids: lock these sagas (skipping those a user holds) and read
	 * their running run, with the ctx to pass to it.  step is NULL for a
	 * saga that has no running run any more.
	 */
	[Q_LOCK_CLAIMED] =
	"SELECT i.id, i.status, d.owner, r.step, r.phase,"
	"       CASE WHEN r.call ? 'function' THEN 'function'"
	"            WHEN r.call ? 'emit' THEN 'emit'"
	"            WHEN r.call ? 'http' THEN 'http' END,"
	"       r.call->>'function',"
	"       r.call->'emit'->>'topic',"
	"       r.call->'emit'->>'event_type',"
	"       COALESCE((r.call->'emit'->>'await')::boolean, false),"
	"       CASE WHEN r.call ? 'emit' THEN"
	"            COALESCE(r.call->'emit'->'headers', '{}'::jsonb)"
	"            || pg_catalog.jsonb_build_object('saga_id', i.id::text, 'saga_step', r.step,"
	"                 'saga_phase', r.phase,"
	"                 'idempotency_key', i.id::text || ':' || r.step || ':' || r.phase)"
	"       END,"
	"       (pg_catalog.date_part('epoch', r.timeout) * 1000)::bigint,"
	"       pg_catalog.jsonb_build_object("
	"           'saga_id', i.id, 'definition', i.definition, 'step', r.step,"
	"           'phase', r.phase, 'attempt', r.attempts,"
	"           'idempotency_key', i.id::text || ':' || r.step || ':' || r.phase,"
	"           'input', i.input, 'results', i.results)"
	"  FROM pg_catalog.unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)"
	"  JOIN saga.instance i ON i.id = u.id"
	"  JOIN saga.definition d ON d.id = i.definition_id"
	"  LEFT JOIN LATERAL ("
	"       SELECT a.* FROM saga.step_run a"
	"        WHERE a.saga_id = i.id AND a.status IN ('pending', 'running', 'waiting')"
	"        LIMIT 1) r ON r.status = 'running'"
	" ORDER BY u.n"
	"   FOR NO KEY UPDATE OF i SKIP LOCKED",

	/* $1 limit, $2 now: claim due pending runs. */
	[Q_CLAIM] =
	"UPDATE saga.step_run r"
	"   SET status = 'running', attempts = r.attempts + 1,"
	"       started_at = COALESCE(r.started_at, $2), timeout_at = $2 + r.timeout,"
	"       next_attempt_at = NULL"
	"  FROM (SELECT c.saga_id, c.step, c.phase FROM saga.step_run c"
	"         WHERE c.status = 'pending' AND c.next_attempt_at <= $2"
	"         ORDER BY c.next_attempt_at LIMIT $1"
	"           FOR UPDATE SKIP LOCKED) c"
	" WHERE r.saga_id = c.saga_id AND r.step = c.step AND r.phase = c.phase"
	" RETURNING r.saga_id",

	/* $1 now: is a pending run due? */
	[Q_READY] =
	"SELECT EXISTS (SELECT 1 FROM saga.step_run"
	"                WHERE status = 'pending' AND next_attempt_at <= $1)",

	/*
	 * $1 saga ids this process has claimed: every other running run was
	 * interrupted (no other process claims).  Locks their sagas.
	 */
	[Q_ORPHANS] =
	"SELECT r.saga_id, r.step, r.phase, r.interruptions"
	"  FROM saga.step_run r JOIN saga.instance i ON i.id = r.saga_id"
	" WHERE r.status = 'running' AND NOT (r.saga_id = ANY ($1))"
	"   FOR NO KEY UPDATE OF i SKIP LOCKED",

	[Q_ORPHANS_LEFT] =
	"SELECT count(*) FROM saga.step_run"
	" WHERE status = 'running' AND NOT (saga_id = ANY ($1))",

	/* $1 saga ids: those that still exist. */
	[Q_EXISTING] =
	"SELECT i.id FROM pg_catalog.unnest($1::uuid[]) AS u(id)"
	"  JOIN saga.instance i ON i.id = u.id",

	/* When the next saga work falls due (see SagaNextDue). */
	[Q_NEXT_DUE] =
	"SELECT LEAST("
	"  (SELECT min(next_attempt_at) FROM saga.step_run WHERE status = 'pending'),"
	"  (SELECT min(timeout_at) FROM saga.step_run WHERE status = 'waiting'),"
	"  (SELECT min(deadline) FROM saga.instance"
	"    WHERE status = 'running' AND deadline IS NOT NULL))",

	/*
	 * $1 saga ids just claimed: their running http runs (not the actions
	 * of sagas that stopped running: those are skipped), with what to send.
	 * The ctx is built as in Q_LOCK_CLAIMED.
	 */
	[Q_HTTP_CALLS] =
	"SELECT r.saga_id, r.step, r.phase,"
	"       r.call->'http'->>'url', COALESCE(r.call->'http'->>'method', 'POST'),"
	"       r.call->'http'->'headers',"
	"       (pg_catalog.date_part('epoch', r.timeout) * 1000)::bigint,"
	"       i.id::text || ':' || r.step || ':' || r.phase,"
	"       pg_catalog.jsonb_build_object("
	"           'saga_id', i.id, 'definition', i.definition, 'step', r.step,"
	"           'phase', r.phase, 'attempt', r.attempts,"
	"           'idempotency_key', i.id::text || ':' || r.step || ':' || r.phase,"
	"           'input', i.input, 'results', i.results)::text"
	"  FROM pg_catalog.unnest($1::uuid[]) AS u(id)"
	"  JOIN saga.instance i ON i.id = u.id"
	"  JOIN saga.step_run r ON r.saga_id = i.id AND r.status = 'running'"
	" WHERE r.call ? 'http' AND (r.phase = 'compensation' OR i.status = 'running')",
};

static const Oid query_types[Q_COUNT][8] = {
	[Q_RECORD] = {UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZOID},
	[Q_ACTION_DONE] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID},
	[Q_ACTION_GAVE_UP] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID},
	[Q_COMP_GAVE_UP] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID},
	[Q_ADVANCE] = {UUIDARRAYOID, TIMESTAMPTZOID},
	[Q_DEADLINES] = {TIMESTAMPTZOID, INT4OID},
	[Q_TIMEOUTS] = {TIMESTAMPTZOID, INT4OID},
	[Q_LOCK_CLAIMED] = {UUIDARRAYOID},
	[Q_CLAIM] = {INT4OID, TIMESTAMPTZOID},
	[Q_READY] = {TIMESTAMPTZOID},
	[Q_ORPHANS] = {UUIDARRAYOID},
	[Q_ORPHANS_LEFT] = {UUIDARRAYOID},
	[Q_EXISTING] = {UUIDARRAYOID},
	[Q_NEXT_DUE] = {0},
	[Q_HTTP_CALLS] = {UUIDARRAYOID},
};

static SPIPlanPtr plans[Q_COUNT];

static const char *const outcome_kind_names[] = {
	[SAGA_OK] = "ok",
	[SAGA_WAIT] = "wait",
	[SAGA_FAIL] = "fail",
	[SAGA_TIMEOUT] = "timeout",
	[SAGA_ABORT] = "abort",
	[SAGA_SKIP] = "skip",
	[SAGA_REQUEUE] = "requeue",
};

/* One claimed run, as read under the saga's lock by Q_LOCK_CLAIMED. */
typedef struct StepRun
{
	pg_uuid_t	saga_id;
	char	   *saga_status;
	Oid			owner;
	char	   *step;
	char	   *phase;
	char	   *kind;			/* function, emit, http; NULL: unknown */
	char	   *function;
	char	   *topic;
	char	   *event_type;
	bool		await;
	Jsonb	   *headers;
	int64		timeout_ms;
	Jsonb	   *ctx;
	Jsonb	   *result;			/* set by the call */
} StepRun;

/*
 * Claimed runs (committed 'running' by this process) waiting to be run:
 * their saga ids, in 'claimed_cxt'.  A round builds the next list in
 * 'next_cxt' and the two are swapped when the round commits.
 */
static MemoryContext claimed_cxt = NULL;
static MemoryContext next_cxt = NULL;
static pg_uuid_t *claimed = NULL;
static int	nclaimed = 0;
static pg_uuid_t *next_claimed = NULL;
static int	next_nclaimed = 0;

/*
 * Claimed http runs: what to send (read in the round that claimed them),
 * and once sent (between that round and the next, no transaction open)
 * what came back.  'http_runs' belong to the claimed list (in
 * claimed_cxt), 'next_http_runs' to the next list (in next_cxt); they are
 * swapped with the lists.
 */
typedef struct HttpRun
{
	pg_uuid_t	saga_id;
	char	   *step;
	char	   *phase;
	HttpCall	call;
	bool		sent;			/* res is the outcome */
	HttpCallResult res;
} HttpRun;

static HttpRun *http_runs = NULL;
static int	nhttp_runs = 0;
static HttpRun *next_http_runs = NULL;
static int	next_nhttp_runs = 0;
static int	next_http_capacity = 0;

/* Interrupted runs may exist (a new process, or some were locked). */
static bool recovery_needed = true;

/* After a failure, recovery and sweeps wait until then (0: no wait). */
static TimestampTz recovery_retry_at = 0;
static TimestampTz sweep_retry_at = 0;

/* Resolved step functions, by owner and name; forgotten on pg_proc changes. */
typedef struct StepFunctionKey
{
	Oid			owner;
	char		name[2 * NAMEDATALEN + 8];
} StepFunctionKey;

typedef struct StepFunction
{
	StepFunctionKey key;
	Oid			fn;
	FmgrInfo	flinfo;
} StepFunction;

static HTAB *step_functions = NULL;
static MemoryContext step_function_cxt = NULL;
static bool step_functions_valid = false;
static bool step_function_callback = false;


/* ------------------------------------------------------------------------
 * SPI helpers
 * ------------------------------------------------------------------------
 */

/*
 * run_plan
 *		Execute statement 'q' (parsed and kept on first use) and check that
 *		SPI answered 'expect'.
 *
 * The statements are planned at every execution (custom plans): each one
 * works on a whole batch, so planning costs little per step, and a generic
 * plan cached while the tables were small (a fresh installation) would
 * scan them whole until autovacuum analyzed them.
 */
static void
run_plan(int q, Datum *values, const char *nulls, int expect)
{
	SpiRunKept(&plans[q], query_text[q], query_types[q], CURSOR_OPT_CUSTOM_PLAN,
			   values, nulls, expect, "a saga statement");
}

/*
 * uuid_array / text_array
 *		One-dimensional arrays for statement parameters; NULL elements where
 *		'isnull' says so (may be NULL).
 */
static Datum
uuid_array(const pg_uuid_t *ids, int n)
{
	Datum	   *elems;
	int			i;

	if (n == 0)
		return PointerGetDatum(construct_empty_array(UUIDOID));
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = UUIDPGetDatum(&ids[i]);
	return PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false,
										   TYPALIGN_CHAR));
}

static Datum
varlena_array(Datum *elems, bool *isnull, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return PointerGetDatum(construct_empty_array(type));
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs, type,
											  -1, false, TYPALIGN_INT));
}

static Datum
text_array(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *isnull = palloc(sizeof(bool) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		isnull[i] = (strings[i] == NULL);
		elems[i] = isnull[i] ? (Datum) 0 : CStringGetTextDatum(strings[i]);
	}
	return varlena_array(elems, isnull, n, TEXTOID);
}

/*
 * column helpers: the value of column 'col' of row 'i' of the last result.
 */
static char *
col_text(SPITupleTable *tt, uint64 i, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[i], tt->tupdesc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static void
col_uuid(SPITupleTable *tt, uint64 i, int col, pg_uuid_t *out)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[i], tt->tupdesc, col, &isnull);

	if (isnull)
		elog(ERROR, "unexpected null saga id");
	memcpy(out, DatumGetUUIDP(d), sizeof(pg_uuid_t));
}

/*
 * pin_search_path
 *		search_path = pg_catalog, pg_temp until AtEOXact_GUC(true, level).
 */
static int
pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}


/* ------------------------------------------------------------------------
 * The state machine (saga_internal.h)
 * ------------------------------------------------------------------------
 */

/*
 * SagaAdvanceCompensation
 *		Compensating sagas among 'saga_ids' that have no active run: the
 *		compensation record with the highest seq becomes pending; a saga with
 *		none left ends compensated, or cancelled if saga.cancel() started
 *		its compensation.  The caller holds the sagas' row locks.
 */
void
SagaAdvanceCompensation(const pg_uuid_t *saga_ids, int n, TimestampTz now)
{
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = uuid_array(saga_ids, n);
	values[1] = TimestampTzGetDatum(now);
	run_plan(Q_ADVANCE, values, NULL, SPI_OK_UPDATE);
}

/*
 * SagaApplyOutcomes
 *		Record how the attempt of the active run of each saga ended, then
 *		advance the sagas (see the file header).  The caller holds the
 *		sagas' row locks and has checked that each has an active run in the
 *		state the outcome is for (running, or waiting for complete_step and
 *		timeouts).  Every statement is set-based over the whole batch.
 */
int
SagaApplyOutcomes(const SagaOutcome *outcomes, int n, TimestampTz now)
{
	Datum	   *kinds;
	Datum	   *results;
	bool	   *results_null;
	char	  **errors;
	char	  **steps;
	char	  **phases;
	pg_uuid_t  *ids;
	Datum		values[7];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	pg_uuid_t  *done_ids,
			   *gave_up_ids,
			   *comp_gave_up_ids,
			   *advance_ids;
	char	  **done_steps,
			  **gave_up_steps,
			  **comp_gave_up_steps;
	int			ndone = 0,
				ngave_up = 0,
				ncomp_gave_up = 0,
				nadvance = 0;

	if (n == 0)
		return 0;

	ids = palloc(sizeof(pg_uuid_t) * n);
	kinds = palloc(sizeof(Datum) * n);
	results = palloc(sizeof(Datum) * n);
	results_null = palloc(sizeof(bool) * n);
	errors = palloc(sizeof(char *) * n);
	steps = palloc(sizeof(char *) * n);
	phases = palloc(sizeof(char *) * n);
	for (i = 0; i < (uint64) n; i++)
	{
		ids[i] = outcomes[i].saga_id;
		steps[i] = outcomes[i].step;
		phases[i] = outcomes[i].phase;
		kinds[i] = CStringGetTextDatum(outcome_kind_names[outcomes[i].kind]);
		results_null[i] = (outcomes[i].result == NULL);
		results[i] = results_null[i] ? (Datum) 0 : JsonbPGetDatum(outcomes[i].result);
		errors[i] = outcomes[i].error;
	}
	values[0] = uuid_array(ids, n);
	values[1] = text_array(steps, n);
	values[2] = text_array(phases, n);
	values[3] = varlena_array(kinds, NULL, n, TEXTOID);
	values[4] = varlena_array(results, results_null, n, JSONBOID);
	values[5] = text_array(errors, n);
	values[6] = TimestampTzGetDatum(now);
	run_plan(Q_RECORD, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;

	done_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	gave_up_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	comp_gave_up_ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	advance_ids = palloc(sizeof(pg_uuid_t) * (2 * nrows + 1));
	done_steps = palloc(sizeof(char *) * (nrows + 1));
	gave_up_steps = palloc(sizeof(char *) * (nrows + 1));
	comp_gave_up_steps = palloc(sizeof(char *) * (nrows + 1));

	for (i = 0; i < nrows; i++)
	{
		pg_uuid_t	id;
		char	   *step = col_text(rows, i, 2);
		bool		action = strcmp(col_text(rows, i, 3), "action") == 0;
		char	   *status = col_text(rows, i, 4);

		col_uuid(rows, i, 1, &id);
		if (strcmp(status, "succeeded") == 0)
		{
			if (action)
			{
				done_ids[ndone] = id;
				done_steps[ndone++] = step;
			}
			else
				advance_ids[nadvance++] = id;
		}
		else if (strcmp(status, "failed") == 0)
		{
			if (action)
			{
				gave_up_ids[ngave_up] = id;
				gave_up_steps[ngave_up++] = step;
				advance_ids[nadvance++] = id;
			}
			else
			{
				comp_gave_up_ids[ncomp_gave_up] = id;
				comp_gave_up_steps[ncomp_gave_up++] = step;
			}
		}
		else if (strcmp(status, "cancelled") == 0)
			advance_ids[nadvance++] = id;
	}
	SPI_freetuptable(rows);

	if (ndone > 0)
	{
		values[0] = uuid_array(done_ids, ndone);
		values[1] = text_array(done_steps, ndone);
		values[2] = TimestampTzGetDatum(now);
		run_plan(Q_ACTION_DONE, values, NULL, SPI_OK_UPDATE_RETURNING);
		rows = SPI_tuptable;
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *status = col_text(rows, i, 2);

			/* An action that ended after compensation began (cancel). */
			if (strcmp(status, "compensating") == 0)
				col_uuid(rows, i, 1, &advance_ids[nadvance++]);
		}
		SPI_freetuptable(rows);
	}
	if (ngave_up > 0)
	{
		values[0] = uuid_array(gave_up_ids, ngave_up);
		values[1] = text_array(gave_up_steps, ngave_up);
		values[2] = TimestampTzGetDatum(now);
		run_plan(Q_ACTION_GAVE_UP, values, NULL, SPI_OK_UPDATE);
	}
	if (ncomp_gave_up > 0)
	{
		values[0] = uuid_array(comp_gave_up_ids, ncomp_gave_up);
		values[1] = text_array(comp_gave_up_steps, ncomp_gave_up);
		values[2] = TimestampTzGetDatum(now);
		run_plan(Q_COMP_GAVE_UP, values, NULL, SPI_OK_UPDATE);
	}
	SagaAdvanceCompensation(advance_ids, nadvance, now);
	return (int) nrows;
}


/* ------------------------------------------------------------------------
 * Running one step: the calls
 * ------------------------------------------------------------------------
 */

/*
 * invalidate_step_functions
 *		Syscache callback: any change to pg_proc (a function dropped,
 *		replaced, EXECUTE revoked) forgets every resolved step function.
 */
static void
invalidate_step_functions(Datum arg, int cacheid, uint32 hashvalue)
{
	step_functions_valid = false;
}

/*
 * resolve_step_function
 *		The function 'name' (schema-qualified) taking jsonb and returning
 *		jsonb that 'owner' may execute; errors say what is wrong (the
 *		definition was checked when it was defined, but the function may
 *		have changed since).  Runs inside the step's subtransaction.
 */
static StepFunction *
resolve_step_function(const char *name, Oid owner)
{
	StepFunctionKey key;
	StepFunction *entry;
	bool		found;
	Oid			argtype = JSONBOID;
	Oid			fn;
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		usable;

	if (!step_function_callback)
	{
		CacheRegisterSyscacheCallback(PROCOID, invalidate_step_functions, (Datum) 0);
		step_function_callback = true;
	}
	if (!step_functions_valid || step_functions == NULL)
	{
		HASHCTL		ctl;

		if (step_function_cxt == NULL)
			step_function_cxt = AllocSetContextCreate(TopMemoryContext,
													  "outbox_saga step functions",
													  ALLOCSET_SMALL_SIZES);
		MemoryContextReset(step_function_cxt);
		ctl.keysize = sizeof(StepFunctionKey);
		ctl.entrysize = sizeof(StepFunction);
		ctl.hcxt = step_function_cxt;
		step_functions = hash_create("outbox_saga step functions", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		step_functions_valid = true;
	}

	memset(&key, 0, sizeof(key));
	key.owner = owner;
	strlcpy(key.name, name, sizeof(key.name));
	entry = hash_search(step_functions, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	fn = LookupFuncName(stringToQualifiedNameList(name), 1, &argtype, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(jsonb) does not exist", name)));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	usable = (proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
			  proc->prorettype == JSONBOID);
	ReleaseSysCache(tup);
	if (!usable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s(jsonb) must return jsonb", name)));
	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute function %s(jsonb)",
						GetUserNameFromId(owner, false), name)));

	entry = hash_search(step_functions, &key, HASH_ENTER, &found);
	entry->fn = fn;
	fmgr_info_cxt(fn, &entry->flinfo, step_function_cxt);
	return entry;
}

/*
 * call_function
 *		RunAsOwner callback of a "function" call: fn(ctx).
 */
static void
call_function(void *arg)
{
	StepRun    *run = arg;
	StepFunction *sf = resolve_step_function(run->function, run->owner);
	LOCAL_FCINFO(fcinfo, 1);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, &sf->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(run->ctx);
	fcinfo->args[0].isnull = false;
	d = FunctionCallInvoke(fcinfo);
	run->result = fcinfo->isnull ? NULL : DatumGetJsonbPCopy(d);
}

/*
 * call_emit
 *		RunAsOwner callback of an "emit" call: one command event whose
 *		payload is the ctx, aggregate_id the saga id (events of a saga are
 *		ordered), headers the configured ones plus saga_id, saga_step,
 *		saga_phase and idempotency_key.  The result is {"event_id": ...}.
 */
static void
call_emit(void *arg)
{
	StepRun    *run = arg;
	OutboxEventData ev;
	pg_uuid_t	event_id;
	char	   *saga_id;
	char	   *id_text;

	if (run->topic == NULL || run->event_type == NULL || run->headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("emit call of step \"%s\" lacks a topic or an event type", run->step)));
	saga_id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&run->saga_id)));
	ev.topic = cstring_to_text(run->topic);
	ev.event_type = cstring_to_text(run->event_type);
	ev.payload = run->ctx;
	ev.aggregate_id = cstring_to_text(saga_id);
	ev.headers = run->headers;
	ev.has_deliver_after = false;
	ev.deliver_after = 0;
	OutboxCheckTopic("topic", ev.topic);
	OutboxCheckEventType("event_type", ev.event_type);
	OutboxCheckPayload(ev.payload);
	OutboxCheckHeaders(ev.headers);
	OutboxAppendEvent(&ev, &event_id);

	id_text = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&event_id)));
	run->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													 CStringGetDatum(psprintf("{\"event_id\": \"%s\"}",
																			  id_text))));
}

/*
 * find_http_run
 *		The http run of the claimed list for this run, or NULL.
 */
static HttpRun *
find_http_run(const StepRun *run)
{
	int			i;

	for (i = 0; i < nhttp_runs; i++)
	{
		HttpRun    *h = &http_runs[i];

		if (memcmp(&h->saga_id, &run->saga_id, sizeof(pg_uuid_t)) == 0 &&
			strcmp(h->step, run->step) == 0 && strcmp(h->phase, run->phase) == 0)
			return h;
	}
	return NULL;
}

typedef struct JsonParse
{
	const char *text;
	Jsonb	   *result;
} JsonParse;

/* jsonb_in of a response body, run in a subtransaction by http_result. */
static void
parse_json_body(void *arg)
{
	JsonParse  *parse = arg;

	parse->result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													   CStringGetDatum(parse->text)));
}

/*
 * http_result
 *		The result of a 2xx answer: its body as jsonb if it is JSON (parsed
 *		in a subtransaction, so that a bad body is no error), else the body
 *		as a JSON string (bytes that are not valid in the database encoding
 *		become '?'); NULL for an empty body.
 */
static Jsonb *
http_result(const char *body, int len)
{
	StringInfoData buf;
	JsonbValue	v;
	int			enc = GetDatabaseEncoding();
	int			i;

	if (body == NULL || len == 0)
		return NULL;
	if ((int) strlen(body) == len)
	{
		JsonParse	parse = {body, NULL};

		if (SpiTryInSubtransaction(parse_json_body, &parse, NULL))
			return parse.result;
	}

	initStringInfo(&buf);
	for (i = 0; i < len;)
	{
		int			l = pg_encoding_verifymbchar(enc, body + i, len - i);

		if (l <= 0)
		{
			appendStringInfoChar(&buf, '?');
			i++;
		}
		else
		{
			appendBinaryStringInfo(&buf, body + i, l);
			i += l;
		}
	}
	v.type = jbvString;
	v.val.string.val = buf.data;
	v.val.string.len = buf.len;
	return JsonbValueToJsonb(&v);
}

/*
 * http_outcome
 *		The outcome of a sent http run (SPEC 3.5): 2xx succeeded with the
 *		body as result; 4xx other than 408, 409, 425 and 429 - and a call
 *		that cannot be sent at all - failed for good, not retried; a
 *		timeout, a network error, a refused address and any other status
 *		are a failed attempt, retried with the step's backoff.
 */
static void
http_outcome(const HttpRun *h, SagaOutcome *out)
{
	const HttpCallResult *res = &h->res;
	long		status = res->status;

	if (res->invalid)
	{
		out->kind = SAGA_ABORT;
		out->error = psprintf("22023: %s (not retried)", res->error);
	}
	else if (status >= 200 && status < 300 && !res->body_too_large)
	{
		out->kind = SAGA_OK;
		out->result = http_result(res->body, res->body_len);
	}
	else if (status >= 400 && status < 500 &&
			 status != 408 && status != 409 && status != 425 && status != 429)
	{
		out->kind = SAGA_ABORT;
		out->error = psprintf("%s (a client error: not retried)", res->error);
	}
	else
	{
		out->kind = res->timed_out ? SAGA_TIMEOUT : SAGA_FAIL;
		out->error = pstrdup(res->error != NULL ? res->error : "the request was not sent");
	}
}

/*
 * run_step
 *		One attempt of a claimed run; its outcome in *out.  Errors of the
 *		call are caught (the call's subtransaction is rolled back): they are
 *		failed attempts.
 */
static void
run_step(StepRun *run, SagaOutcome *out)
{
	char	   *error = NULL;

	out->saga_id = run->saga_id;
	out->step = run->step;
	out->phase = run->phase;
	out->result = NULL;
	out->error = NULL;

	/*
	 * An http run was sent between the previous round and this one: its
	 * answer is recorded whatever happened to the saga meanwhile (an
	 * action that succeeded after a cancel has its compensation run).
	 */
	if (run->kind != NULL && strcmp(run->kind, "http") == 0)
	{
		HttpRun    *h = find_http_run(run);

		if (h != NULL && h->sent)
		{
			http_outcome(h, out);
			return;
		}
	}

	/* An action of a saga that has started compensating never runs. */
	if (strcmp(run->phase, "action") == 0 && strcmp(run->saga_status, "running") != 0)
	{
		out->kind = SAGA_SKIP;
		out->error = psprintf("not run: the saga is %s", run->saga_status);
		return;
	}

	if (run->kind != NULL && strcmp(run->kind, "function") == 0)
	{
		if (RunAsOwner(run->owner, run->timeout_ms, call_function, run, &error))
		{
			out->kind = SAGA_OK;
			out->result = run->result;
		}
		else
		{
			out->kind = strstr(error, "statement timeout") != NULL ? SAGA_TIMEOUT : SAGA_FAIL;
			out->error = error;
		}
	}
	else if (run->kind != NULL && strcmp(run->kind, "emit") == 0)
	{
		if (RunAsOwner(run->owner, run->timeout_ms, call_emit, run, &error))
		{
			out->kind = run->await ? SAGA_WAIT : SAGA_OK;
			out->result = run->result;
		}
		else
		{
			out->kind = SAGA_FAIL;
			out->error = error;
		}
	}
	else if (run->kind != NULL && strcmp(run->kind, "http") == 0)
	{
		/*
		 * Claimed but not sent (it was claimed while its saga was not
		 * running, or reading the call failed): a failed attempt.
		 */
		out->kind = SAGA_FAIL;
		out->error = pstrdup("the http request was not sent: it was not prepared when the step was claimed");
	}
	else
	{
		out->kind = SAGA_FAIL;
		out->error = pstrdup("22023: unknown call kind in the step run");
	}
}

/*
 * lock_claimed
 *		Lock the sagas of 'ids' (SKIP LOCKED) and read their running runs
 *		into *runs.  The ids of sagas a user holds go to 'deferred'
 *		(*ndeferred); a saga with no running run any more, or that no longer
 *		exists, is dropped.
 *		Returns the number of runs.
 */
static int
lock_claimed(const pg_uuid_t *ids, int n, StepRun **runs,
			 pg_uuid_t *deferred, int *ndeferred)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	int			nruns = 0;
	bool	   *seen = palloc0(sizeof(bool) * Max(n, 1));
	int			j;

	values[0] = uuid_array(ids, n);
	run_plan(Q_LOCK_CLAIMED, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	*runs = palloc0(sizeof(StepRun) * (nrows + 1));

	for (i = 0; i < nrows; i++)
	{
		StepRun    *run = &(*runs)[nruns];
		bool		isnull;
		Datum		d;

		col_uuid(rows, i, 1, &run->saga_id);
		for (j = 0; j < n; j++)
			if (memcmp(&ids[j], &run->saga_id, sizeof(pg_uuid_t)) == 0)
				seen[j] = true;
		run->step = col_text(rows, i, 4);
		if (run->step == NULL)
			continue;			/* locked, but nothing is running */
		run->saga_status = col_text(rows, i, 2);
		run->owner = DatumGetObjectId(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
		run->phase = col_text(rows, i, 5);
		run->kind = col_text(rows, i, 6);
		run->function = col_text(rows, i, 7);
		run->topic = col_text(rows, i, 8);
		run->event_type = col_text(rows, i, 9);
		run->await = DatumGetBool(SPI_getbinval(rows->vals[i], rows->tupdesc, 10, &isnull));
		d = SPI_getbinval(rows->vals[i], rows->tupdesc, 11, &isnull);
		run->headers = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(rows->vals[i], rows->tupdesc, 12, &isnull);
		run->timeout_ms = isnull ? 0 : DatumGetInt64(d);
		d = SPI_getbinval(rows->vals[i], rows->tupdesc, 13, &isnull);
		run->ctx = DatumGetJsonbPCopy(d);
		nruns++;
	}
	SPI_freetuptable(rows);

	/* Not locked: a user holds the saga, or it was deleted. */
	*ndeferred = 0;
	for (j = 0; j < n; j++)
		if (!seen[j])
			deferred[(*ndeferred)++] = ids[j];
	if (*ndeferred > 0)
	{
		values[0] = uuid_array(deferred, *ndeferred);
		run_plan(Q_EXISTING, values, NULL, SPI_OK_SELECT);
		*ndeferred = 0;
		for (i = 0; i < SPI_processed; i++)
			col_uuid(SPI_tuptable, i, 1, &deferred[(*ndeferred)++]);
		SPI_freetuptable(SPI_tuptable);
	}
	return nruns;
}

/*
 * execute_claimed
 *		Run the claimed runs of the sagas 'ids' that can be locked and record
 *		their outcomes.  Returns how many ran; 'deferred' gets the rest.
 */
static int
execute_claimed(const pg_uuid_t *ids, int n, pg_uuid_t *deferred, int *ndeferred)
{
	StepRun    *runs;
	SagaOutcome *outcomes;
	int			nruns;
	int			i;

	*ndeferred = 0;
	if (n == 0)
		return 0;
	nruns = lock_claimed(ids, n, &runs, deferred, ndeferred);
	if (nruns == 0)
		return 0;
	outcomes = palloc0(sizeof(SagaOutcome) * nruns);
	for (i = 0; i < nruns; i++)
	{
		run_step(&runs[i], &outcomes[i]);
		CHECK_FOR_INTERRUPTS();
	}
	(void) SagaApplyOutcomes(outcomes, nruns, GetCurrentTimestamp());
	return nruns;
}


/* ------------------------------------------------------------------------
 * Rounds
 * ------------------------------------------------------------------------
 */

/*
 * recover_orphans
 *		Put every running run that this process did not claim back to
 *		pending (see CRASH in the file header).  Runs whose sagas a user
 *		holds are left for the next pass.  Returns how many were recovered.
 */
static int
recover_orphans(TimestampTz now)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	SagaOutcome *outcomes;
	bool		isnull;
	int64		left;

	values[0] = uuid_array(claimed, nclaimed);
	run_plan(Q_ORPHANS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	outcomes = palloc0(sizeof(SagaOutcome) * (nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		int			interruptions = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc,
																4, &isnull));

		col_uuid(rows, i, 1, &outcomes[i].saga_id);
		outcomes[i].step = col_text(rows, i, 2);
		outcomes[i].phase = col_text(rows, i, 3);
		if (interruptions + 1 >= SAGA_MAX_INTERRUPTIONS)
		{
			outcomes[i].kind = SAGA_FAIL;
			outcomes[i].error = psprintf("interrupted %d times by a crash or restart while running; this attempt counts as failed",
										 interruptions + 1);
		}
		else
		{
			outcomes[i].kind = SAGA_REQUEUE;
			outcomes[i].error = pstrdup("interrupted by a crash or restart while running; it runs again");
		}
	}
	SPI_freetuptable(rows);
	if (nrows > 0)
	{
		(void) SagaApplyOutcomes(outcomes, (int) nrows, now);
		ereport(LOG,
				(errmsg("outbox_saga: %d saga step run(s) interrupted by a crash or restart run again",
						(int) nrows)));
	}

	run_plan(Q_ORPHANS_LEFT, values, NULL, SPI_OK_SELECT);
	left = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
	recovery_needed = (left > 0);
	return (int) nrows;
}

/*
 * sweep
 *		Deadlines and wait timeouts that are due.  Returns how many sagas
 *		were affected.
 */
static int
sweep(TimestampTz now)
{
	Datum		values[2];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	pg_uuid_t  *ids;
	SagaOutcome *outcomes;
	int			swept = 0;

	/* Deadlines. */
	values[0] = TimestampTzGetDatum(now);
	values[1] = Int32GetDatum(SAGA_SWEEP_LIMIT);
	run_plan(Q_DEADLINES, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	ids = palloc(sizeof(pg_uuid_t) * (nrows + 1));
	for (i = 0; i < nrows; i++)
		col_uuid(rows, i, 1, &ids[i]);
	SPI_freetuptable(rows);
	SagaAdvanceCompensation(ids, (int) nrows, now);
	swept += (int) nrows;

	/* Wait timeouts. */
	run_plan(Q_TIMEOUTS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	outcomes = palloc0(sizeof(SagaOutcome) * (nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		col_uuid(rows, i, 1, &outcomes[i].saga_id);
		outcomes[i].step = col_text(rows, i, 2);
		outcomes[i].phase = col_text(rows, i, 3);
		outcomes[i].kind = SAGA_TIMEOUT;
		outcomes[i].error = col_text(rows, i, 4);
	}
	SPI_freetuptable(rows);
	(void) SagaApplyOutcomes(outcomes, (int) nrows, now);
	swept += (int) nrows;
	return swept;
}

typedef struct GuardedCall
{
	int			(*fn) (TimestampTz);
	TimestampTz now;
	int			result;
} GuardedCall;

/* The body of guarded, run in its subtransaction. */
static void
call_guarded(void *arg)
{
	GuardedCall *g = arg;

	g->result = g->fn(g->now);
}

/*
 * guarded
 *		Run fn(now) in a subtransaction of the round: an error is reported
 *		(what failed), rolled back, and the round goes on; the same work is
 *		then not tried again for SAGA_GUARD_BACKOFF_MS (*retry_at), so that
 *		a lasting problem does not flood the log.  Returns fn's result, or 0.
 */
static int
guarded(int (*fn) (TimestampTz), TimestampTz now, const char *what,
		TimestampTz *retry_at)
{
	GuardedCall g = {fn, now, 0};
	ErrorData  *edata;

	if (*retry_at != 0 && now < *retry_at)
		return 0;
	if (SpiTryInSubtransaction(call_guarded, &g, &edata))
	{
		*retry_at = 0;
		return g.result;
	}
	ereport(WARNING,
			(errmsg("outbox_saga: %s failed: %s", what, edata->message),
			 errdetail("It is tried again in %d seconds.", SAGA_GUARD_BACKOFF_MS / 1000)));
	FreeErrorData(edata);
	*retry_at = TimestampTzPlusMilliseconds(now, SAGA_GUARD_BACKOFF_MS);
	return 0;
}

/*
 * claim
 *		Mark up to 'limit' due pending runs running; their saga ids are
 *		appended to the next list.  Returns how many.
 */
static int
claim(int limit, TimestampTz now)
{
	Datum		values[2];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	MemoryContext old;

	values[0] = Int32GetDatum(limit);
	values[1] = TimestampTzGetDatum(now);
	run_plan(Q_CLAIM, values, NULL, SPI_OK_UPDATE_RETURNING);
	rows = SPI_tuptable;
	nrows = SPI_processed;

	old = MemoryContextSwitchTo(next_cxt);
	next_claimed = repalloc(next_claimed, sizeof(pg_uuid_t) * (next_nclaimed + nrows + 1));
	MemoryContextSwitchTo(old);
	for (i = 0; i < nrows; i++)
		col_uuid(rows, i, 1, &next_claimed[next_nclaimed++]);
	SPI_freetuptable(rows);
	return (int) nrows;
}

/*
 * ready_now
 *		Whether a pending run is due.
 */
static bool
ready_now(TimestampTz now)
{
	Datum		values[1];
	bool		isnull;

	values[0] = TimestampTzGetDatum(now);
	run_plan(Q_READY, values, NULL, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
}

/*
 * reset_next
 *		Start an empty next list.
 */
static void
reset_next(void)
{
	MemoryContextReset(next_cxt);
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t));
	next_nclaimed = 0;
	next_http_runs = NULL;
	next_nhttp_runs = 0;
	next_http_capacity = 0;
}

/*
 * swap_lists
 *		After a commit: the next list becomes the claimed list.
 */
static void
swap_lists(void)
{
	MemoryContext tmp = claimed_cxt;

	claimed_cxt = next_cxt;
	claimed = next_claimed;
	nclaimed = next_nclaimed;
	http_runs = next_http_runs;
	nhttp_runs = next_nhttp_runs;
	next_cxt = tmp;
	reset_next();
}

/*
 * next_http_slot
 *		A new, zeroed entry of the next list's http runs.
 */
static HttpRun *
next_http_slot(void)
{
	HttpRun    *h;

	if (next_nhttp_runs == next_http_capacity)
	{
		int			capacity = Max(16, next_http_capacity * 2);
		HttpRun    *grown = MemoryContextAllocZero(next_cxt, sizeof(HttpRun) * capacity);

		if (next_nhttp_runs > 0)
			memcpy(grown, next_http_runs, sizeof(HttpRun) * next_nhttp_runs);
		next_http_runs = grown;
		next_http_capacity = capacity;
	}
	h = &next_http_runs[next_nhttp_runs++];
	memset(h, 0, sizeof(HttpRun));
	return h;
}

static char *
copy_or_null(const char *text, int len)
{
	if (text == NULL)
		return NULL;
	return pnstrdup(text, len);
}

/*
 * carry_http
 *		The http runs of the sagas 'ids' (still claimed, not recorded yet)
 *		go from the claimed list to the next list (copied into next_cxt).
 */
static void
carry_http(const pg_uuid_t *ids, int n)
{
	MemoryContext old;
	int			i;
	int			j;

	if (nhttp_runs == 0 || n == 0)
		return;
	old = MemoryContextSwitchTo(next_cxt);
	for (i = 0; i < nhttp_runs; i++)
	{
		const HttpRun *src = &http_runs[i];
		HttpRun    *dst;
		char	  **names;
		char	  **values;
		int			k;

		for (j = 0; j < n; j++)
			if (memcmp(&ids[j], &src->saga_id, sizeof(pg_uuid_t)) == 0)
				break;
		if (j == n)
			continue;
		dst = next_http_slot();
		*dst = *src;
		dst->step = pstrdup(src->step);
		dst->phase = pstrdup(src->phase);
		dst->call.url = copy_or_null(src->call.url, src->call.url ? strlen(src->call.url) : 0);
		dst->call.method = copy_or_null(src->call.method, src->call.method ? strlen(src->call.method) : 0);
		dst->call.idempotency_key = copy_or_null(src->call.idempotency_key,
												 src->call.idempotency_key ? strlen(src->call.idempotency_key) : 0);
		dst->call.body = copy_or_null(src->call.body, src->call.body_len);
		names = palloc(sizeof(char *) * (src->call.nheaders + 1));
		values = palloc(sizeof(char *) * (src->call.nheaders + 1));
		for (k = 0; k < src->call.nheaders; k++)
		{
			names[k] = pstrdup(src->call.header_names[k]);
			values[k] = pstrdup(src->call.header_values[k]);
		}
		dst->call.header_names = (const char *const *) names;
		dst->call.header_values = (const char *const *) values;
		dst->res.body = copy_or_null(src->res.body, src->res.body_len);
		dst->res.error = copy_or_null(src->res.error, src->res.error ? strlen(src->res.error) : 0);
	}
	MemoryContextSwitchTo(old);
}

/*
 * prepare_http
 *		Read what to send for the http runs among the sagas just claimed
 *		(next_claimed[from..]), in the claiming transaction, into the next
 *		list.
 */
static void
prepare_http(int from)
{
	Datum		values[1];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	MemoryContext old;

	if (next_nclaimed <= from)
		return;
	values[0] = uuid_array(next_claimed + from, next_nclaimed - from);
	run_plan(Q_HTTP_CALLS, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	old = MemoryContextSwitchTo(next_cxt);
	for (i = 0; i < nrows; i++)
	{
		HttpRun    *h = next_http_slot();
		bool		isnull;
		Datum		d;
		char	  **names;
		char	  **hvalues;
		int			nheaders = 0;

		col_uuid(rows, i, 1, &h->saga_id);
		h->step = col_text(rows, i, 2);
		h->phase = col_text(rows, i, 3);
		h->call.url = col_text(rows, i, 4);
		h->call.method = col_text(rows, i, 5);
		/* Every header (SinkHttpSend refuses too many). */
		d = SPI_getbinval(rows->vals[i], rows->tupdesc, 6, &isnull);
		names = NULL;
		hvalues = NULL;
		if (!isnull)
		{
			Jsonb	   *headers = DatumGetJsonbP(d);
			JsonbIterator *it;
			JsonbValue	v;
			JsonbIteratorToken tok;

			if (JB_ROOT_IS_OBJECT(headers))
			{
				int			size = JsonContainerSize(&headers->root) + 1;

				names = palloc0(sizeof(char *) * size);
				hvalues = palloc0(sizeof(char *) * size);
				it = JsonbIteratorInit(&headers->root);
				while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
				{
					if (tok == WJB_KEY && nheaders < size)
						names[nheaders] = pnstrdup(v.val.string.val, v.val.string.len);
					else if (tok == WJB_VALUE && nheaders < size)
						hvalues[nheaders++] = v.type == jbvString ?
							pnstrdup(v.val.string.val, v.val.string.len) : pstrdup("");
				}
			}
		}
		h->call.nheaders = nheaders;
		h->call.header_names = (const char *const *) names;
		h->call.header_values = (const char *const *) hvalues;
		d = SPI_getbinval(rows->vals[i], rows->tupdesc, 7, &isnull);
		h->call.timeout_ms = isnull ? 0 : DatumGetInt64(d);
		h->call.idempotency_key = col_text(rows, i, 8);
		h->call.body = col_text(rows, i, 9);
		h->call.body_len = h->call.body ? strlen(h->call.body) : 0;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(rows);
}

/*
 * send_http
 *		Send the claimed http runs not sent yet, with no transaction open
 *		(after the round that claimed them committed and flushed).  An error
 *		of the sending machinery itself is every such run's failed attempt.
 */
static void
send_http(void)
{
	MemoryContext old;
	HttpCall   *calls;
	HttpCallResult *results;
	int		   *which;
	int			n = 0;
	int			i;

	Assert(!IsTransactionState());
	for (i = 0; i < nhttp_runs; i++)
		if (!http_runs[i].sent)
			n++;
	if (n == 0)
		return;

	/* Results (and scratch) live with the claimed list. */
	old = MemoryContextSwitchTo(claimed_cxt);
	calls = palloc(sizeof(HttpCall) * n);
	results = palloc0(sizeof(HttpCallResult) * n);
	which = palloc(sizeof(int) * n);
	n = 0;
	for (i = 0; i < nhttp_runs; i++)
		if (!http_runs[i].sent)
		{
			which[n] = i;
			calls[n++] = http_runs[i].call;
		}
	PG_TRY();
	{
		SinkHttpSend(calls, n, results);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(claimed_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		for (i = 0; i < n; i++)
		{
			memset(&results[i], 0, sizeof(HttpCallResult));
			results[i].error = psprintf("could not send the request: %s", edata->message);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(claimed_cxt);
	for (i = 0; i < n; i++)
	{
		http_runs[which[i]].res = results[i];
		http_runs[which[i]].sent = true;
	}
	MemoryContextSwitchTo(old);
}

typedef struct RoundResult
{
	int			work;			/* runs run, swept, recovered */
	int			claimed;		/* newly claimed */
	bool		ready;			/* (last round) more is due now */
} RoundResult;

/*
 * begin_round / end_round
 *		The transaction of a round, with SPI and search_path pinned.
 */
static int
begin_round(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	return pin_search_path();
}

static void
end_round(int guc_level)
{
	AtEOXact_GUC(true, guc_level);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * saga_round
 *		One round (see TRANSACTIONS in the file header): sweep, run what the
 *		previous round claimed, claim up to 'limit' more (0: check only
 *		whether more is due).
 */
static void
saga_round(int limit, RoundResult *res)
{
	int			level;
	int			ndeferred;
	TimestampTz now;

	memset(res, 0, sizeof(*res));
	reset_next();

	level = begin_round();
	now = GetCurrentTimestamp();
	if (recovery_needed)
		res->work += guarded(recover_orphans, now, "recovering interrupted saga steps",
							 &recovery_retry_at);
	res->work += guarded(sweep, now, "enforcing saga deadlines and timeouts",
						 &sweep_retry_at);

	/* Deferred runs stay in the next list (allocated to fit every one). */
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t) * (nclaimed + 1));
	res->work += execute_claimed(claimed, nclaimed, next_claimed, &ndeferred);
	next_nclaimed = ndeferred;
	carry_http(next_claimed, ndeferred);

	now = GetCurrentTimestamp();
	if (limit > 0)
	{
		res->claimed = claim(limit, now);
		prepare_http(ndeferred);
	}
	else
		res->ready = ready_now(now);
	end_round(level);

	/*
	 * The dispatcher commits asynchronously; the claims must be durable
	 * before their runs start (see TRANSACTIONS in the file header).
	 */
	if (res->claimed > 0)
		XLogFlush(XactLastCommitEnd);
	swap_lists();

	/* The http runs just claimed go out now, between two transactions. */
	send_http();
}

/*
 * run_one_alone
 *		After a round failed: run the claimed run of one saga in a
 *		transaction of its own.  If that fails too, record the error as a
 *		failed attempt (in yet another transaction) so that the run neither
 *		blocks the others nor loops.  Returns false if the saga must stay in
 *		the claimed list (a user holds it).
 */
static bool
run_one_alone(const pg_uuid_t *id, MemoryContext cxt)
{
	volatile bool keep = false;
	char	   *volatile message = NULL;

	PG_TRY();
	{
		int			level = begin_round();
		pg_uuid_t	deferred[1];
		int			ndeferred;

		(void) execute_claimed(id, 1, deferred, &ndeferred);
		keep = (ndeferred > 0);
		end_round(level);
	}
	PG_CATCH();
	{
		ErrorData  *edata = SpiAbortKeepingError(cxt);

		message = pstrdup(edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (message == NULL)
		return !keep;

	PG_TRY();
	{
		int			level = begin_round();
		StepRun    *runs;
		pg_uuid_t	deferred[1];
		int			ndeferred;

		if (lock_claimed(id, 1, &runs, deferred, &ndeferred) == 1)
		{
			SagaOutcome outcome;

			outcome.saga_id = *id;
			outcome.step = runs[0].step;
			outcome.phase = runs[0].phase;
			outcome.kind = SAGA_FAIL;
			outcome.result = NULL;
			outcome.error = psprintf("could not run or record the step: %s", message);
			(void) SagaApplyOutcomes(&outcome, 1, GetCurrentTimestamp());
		}
		keep = (ndeferred > 0);
		end_round(level);
		ereport(WARNING,
				(errmsg("outbox_saga: a step of saga %s failed outside its call: %s",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))),
						message)));
	}
	PG_CATCH();
	{
		ErrorData  *edata = SpiAbortKeepingError(cxt);

		ereport(WARNING,
				(errmsg("outbox_saga: saga %s is stuck: %s",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id))),
						edata->message),
				 errhint("Its running step is run again when the dispatcher restarts.")));
		FreeErrorData(edata);
		keep = false;
	}
	PG_END_TRY();
	return !keep;
}

/*
 * fall_back
 *		A round failed (its transaction is aborted): run the claimed runs one
 *		saga at a time.
 */
static void
fall_back(MemoryContext cxt)
{
	pg_uuid_t  *ids;
	int			n = nclaimed;
	int			i;
	int			kept = 0;

	ids = MemoryContextAlloc(cxt, sizeof(pg_uuid_t) * (n + 1));
	memcpy(ids, claimed, sizeof(pg_uuid_t) * n);
	for (i = 0; i < n; i++)
	{
		if (!run_one_alone(&ids[i], cxt))
			ids[kept++] = ids[i];
		CHECK_FOR_INTERRUPTS();
	}
	reset_next();
	next_claimed = MemoryContextAlloc(next_cxt, sizeof(pg_uuid_t) * (kept + 1));
	memcpy(next_claimed, ids, sizeof(pg_uuid_t) * kept);
	next_nclaimed = kept;
	carry_http(ids, kept);
	swap_lists();
}

/*
 * SagaNextDue
 *		See saga_driver.h.
 */
TimestampTz
SagaNextDue(void)
{
	bool		isnull;
	Datum		d;
	int			level = pin_search_path();

	run_plan(Q_NEXT_DUE, NULL, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	AtEOXact_GUC(true, level);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * SagaRunPass
 *		Rounds until nothing is claimed, SAGA_MAX_ROUNDS or the time budget;
 *		the last round claims nothing.  See saga.h.
 */
bool
SagaRunPass(int64 *activity)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	int			batch = Min(OutboxBatchSize, SAGA_MAX_BATCH);
	int			round;

	if (claimed_cxt == NULL)
	{
		claimed_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga claimed runs",
											ALLOCSET_SMALL_SIZES);
		next_cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga claimed runs",
										 ALLOCSET_SMALL_SIZES);
		claimed = MemoryContextAlloc(claimed_cxt, sizeof(pg_uuid_t));
		nclaimed = 0;
		reset_next();
	}

	for (round = 0;; round++)
	{
		RoundResult res;
		bool		last = (round + 1 >= SAGA_MAX_ROUNDS ||
							TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
													   SAGA_PASS_BUDGET_MS));

		PG_TRY();
		{
			saga_round(last ? 0 : Max(batch, 1), &res);
		}
		PG_CATCH();
		{
			ErrorData  *edata = SpiAbortKeepingError(cxt);

			ereport(WARNING,
					(errmsg("outbox_saga: driving sagas failed: %s", edata->message),
					 errdetail("The claimed steps run again one saga at a time.")));
			FreeErrorData(edata);
			fall_back(cxt);
			return false;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);

		*activity += res.work;
		if (last)
			return res.ready;
		if (res.claimed == 0)
			return false;
		CHECK_FOR_INTERRUPTS();
	}
}

/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Definition of the outbox_saga.* settings.
 *
 * The settings used across the extension are defined here, once, when the
 * library is loaded (preloaded or not).  A setting that belongs to one
 * subsystem is defined by that subsystem's init function
 * (outbox_saga.http_deny_networks: http/http_guard.c).  _PG_init reserves
 * the outbox_saga. prefix after all of them, so that a typo such as
 * outbox_saga.max_paylod_size is reported instead of ignored.
 *
 * Settings that protect the server (payload limits) are superuser-only;
 * settings that only change how the caller's own session behaves are
 * user-settable.  outbox_saga.traceparent and outbox_saga.tracestate are
 * meant for SET LOCAL: the trace context of the events the transaction
 * writes (base/trace_context.c, whose check hooks refuse invalid values).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "base/guc.h"
#include "base/trace_context.h"

int			OutboxMaxPayloadSize = 1024 * 1024;
int			OutboxIdempotencyLockTimeout = 300;
bool		OutboxEnabled = true;
char	   *OutboxDatabases = NULL;
int			OutboxPollInterval = 1000;
int			OutboxBatchSize = 1000;
int			OutboxRetention = 0;
int			OutboxMaxDestinationLag = 3600;
int			OutboxMaxDatabases = 32;
int			OutboxWorkersPerDatabase = 2;
int			OutboxMaxInflight = 64;
int			OutboxHttpTimeout = 30000;

/*
 * GucInit
 *		Define the settings of this file.  _PG_init reserves the
 *		outbox_saga. prefix after this and the subsystems' own settings.
 */
void
GucInit(void)
{
	DefineCustomIntVariable("outbox_saga.max_payload_size",
							"Largest payload, and largest headers object, one event may carry.",
							"Larger events are refused with SQLSTATE 54000.",
							&OutboxMaxPayloadSize,
							1024 * 1024,
							1024,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.idempotency_lock_timeout",
							"How long a committed idempotency claim that was never completed answers in_progress.",
							"After this time a new request with the same key takes the claim over.",
							&OutboxIdempotencyLockTimeout,
							300,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("outbox_saga.enabled",
							 "Whether the background workers dispatch events.",
							 "Off stops every dispatcher; events are still written.",
							 &OutboxEnabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("outbox_saga.databases",
							   "Databases served by a dispatcher (comma-separated names); empty: every database with the extension.",
							   NULL,
							   &OutboxDatabases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.poll_interval",
							"How long a dispatcher sleeps when no commit wakes it.",
							"Commits that write events wake the dispatcher at once; this poll covers delayed events and retries.",
							&OutboxPollInterval,
							1000,
							10,
							3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.batch_size",
							"Events a dispatcher delivers to one destination per transaction.",
							"A destination's batch_size config key overrides it.",
							&OutboxBatchSize,
							1000,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.retention",
							"How long delivered events are kept in outbox.events before they are retired.",
							"0 retires them as soon as every destination has consumed them.",
							&OutboxRetention,
							0,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.max_destination_lag",
							"How long the log's retirement waits for one paused or lagging destination.",
							"Past it, the events the destination is owed in the part of the log to retire "
							"move to its dead letters and its position moves on; 0 waits forever.",
							&OutboxMaxDestinationLag,
							3600,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.workers_per_database",
							"Dispatcher processes per database.",
							"Worker 0 drives sagas, housekeeping and in-database destinations; "
							"the others serve any destination.  A destination is served by one "
							"worker at a time, so a slow one occupies one worker.  Each needs a "
							"slot of max_worker_processes.",
							&OutboxWorkersPerDatabase,
							2,
							1,
							OUTBOX_MAX_WORKERS_PER_DATABASE,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.max_inflight",
							"Network requests (HTTP, broker) a dispatcher keeps in flight at once.",
							"A destination's concurrency config key limits it further.",
							&OutboxMaxInflight,
							64,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.http_timeout",
							"Default per-attempt timeout of HTTP deliveries.",
							"A destination's timeout config key overrides it.",
							&OutboxHttpTimeout,
							30000,
							1,
							24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("outbox_saga.traceparent",
							   "W3C traceparent of the events this transaction writes (SET LOCAL).",
							   "Used by outbox.emit() without a traceparent in its headers and by the capture trigger; empty: none.",
							   &OutboxTraceparent,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   TraceCheckParentSetting, NULL, NULL);

	DefineCustomStringVariable("outbox_saga.tracestate",
							   "W3C tracestate that goes with outbox_saga.traceparent (SET LOCAL).",
							   "Ignored while outbox_saga.traceparent is empty.",
							   &OutboxTracestate,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   TraceCheckStateSetting, NULL, NULL);

	/*
	 * Shared memory is sized by this one; it can only exist when preloaded
	 * (a PGC_POSTMASTER setting defined later would be a FATAL error).
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("outbox_saga.max_databases",
								"How many databases can have a dispatcher at once.",
								NULL,
								&OutboxMaxDatabases,
								32,
								1,
								1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
}

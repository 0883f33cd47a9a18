/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *		Waking the dispatcher at commit, without pg_notify (G8).
 *
 * Writing an event sets a backend-local flag.  A transaction callback sees
 * the flag at COMMIT and sets the latch of this database's dispatcher
 * through shared memory (ShmemWakeDispatcher: an atomic exchange, so many
 * commits between two passes cost one SetLatch).  ABORT only clears the
 * flag.  Nothing is written and no lock is taken on the write path.  A
 * savepoint rolled back after writing leaves the flag set: the dispatcher
 * then makes one pass that finds nothing, which is harmless.  A wakeup
 * that is lost (a backend that dies between its commit and the callback)
 * only delays delivery until the dispatcher's next poll
 * (outbox_saga.poll_interval): the wakeup is a hint, the log is the truth.
 *
 * CREATE EXTENSION and ALTER EXTENSION UPDATE call
 * outbox.extension_changed(), which wakes the launcher at commit so that a
 * database where the extension has just appeared gets its dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "base/shmem.h"
#include "events/wakeup.h"

static bool events_written = false;
static bool extension_changed = false;

/*
 * wakeup_xact_callback
 *		At commit, wake whom this transaction's writes concern.
 */
static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (events_written)
				ShmemWakeDispatcher(MyDatabaseId);
			if (extension_changed)
				ShmemWakeLauncher(true);
			events_written = false;
			extension_changed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction wakes at COMMIT PREPARED (utility_hook.c) */
			events_written = false;
			extension_changed = false;
			break;
		default:
			break;
	}
}

/*
 * WakeupInit
 *		Register the transaction callback (every process that loads us).
 */
void
WakeupInit(void)
{
	RegisterXactCallback(wakeup_xact_callback, NULL);
}

/*
 * WakeupNoteEventWritten
 *		The current transaction wrote an event.
 */
void
WakeupNoteEventWritten(void)
{
	events_written = true;
}

PG_FUNCTION_INFO_V1(outbox_saga_extension_changed);

/*
 * outbox.extension_changed() RETURNS void
 *		Called by the extension scripts: wake the launcher at commit.
 */
Datum
outbox_saga_extension_changed(PG_FUNCTION_ARGS)
{
	extension_changed = true;
	PG_RETURN_VOID();
}

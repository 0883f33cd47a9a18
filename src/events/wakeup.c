/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *		Waking the dispatcher at commit, without pg_notify (G8).
 *
 * Writing an event sets the bit of its topic in a backend-local set
 * (WakeupNoteEventTopic).  A transaction callback sees the set at COMMIT,
 * after the commit is visible to other transactions, and wakes this
 * database's dispatchers through shared memory only if a destination that
 * is not paused subscribes to one of those topics (or to '*'), by the
 * topic summary of base/shmem.c (ShmemWakeDispatcherFor; its header has
 * the protocol and why no wake-up an active destination needs is lost).
 * A wake-up is a flag and a SetLatch of one dispatcher (base/shmem.c, WHOM
 * A COMMIT WAKES; a change of destinations wakes them all): many commits
 * between two passes cost one SetLatch, and a commit that finds the flag
 * set writes nothing shared.  ABORT only clears the set.  Nothing is written
 * and no lock is taken on the write path.
 *
 * (The callback runs after ProcArrayEndTransaction: that order is what
 * the protocol relies on.)  Other writers wake the dispatchers
 * unconditionally (WakeupNoteEventWritten: replayed dead letters), and
 * the API that changes destinations and subscriptions
 * invalidates the summary at commit (WakeupNoteDestinationsChanged),
 * before it wakes them, so that the next pass reads it again.  A
 * savepoint rolled back after writing leaves its topics noted: the
 * dispatcher may then make one pass that finds nothing, which is harmless.  A wakeup
 * that is lost (a backend that dies between its commit and the callback)
 * only delays delivery until the dispatcher's next poll
 * (outbox_saga.poll_interval): the wakeup is a hint, the log is the truth.
 *
 * Saga state (WakeupNoteSagaWork: saga.start, complete_step, cancel,
 * retry, register_compensation, and saga.resume through
 * outbox.saga_work_changed()) also bumps the database's saga work counter
 * at commit, before the wake-up (base/shmem.c, THE SAGA WORK COUNTER):
 * dispatcher 0 runs its saga round only when that counter moved, something
 * fell due or the last round had work (saga_driver.c).  COMMIT PREPARED
 * bumps it whatever the prepared transaction did (utility_hook.c).
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
static bool saga_work = false;
static bool topics_noted = false;
static bool destinations_changed = false;
static bool extension_changed = false;

/* The topics (ShmemTopicBit) of the events this transaction wrote. */
static uint64 topic_bits[TOPIC_SUMMARY_WORDS];

/*
 * forget
 *		The transaction ended: forget what it wrote.
 */
static void
forget(void)
{
	if (topics_noted)
		memset(topic_bits, 0, sizeof(topic_bits));
	topics_noted = false;
	events_written = false;
	saga_work = false;
	destinations_changed = false;
	extension_changed = false;
}

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
			/* The summary first: the wake-up's pass must read it again. */
			if (destinations_changed)
				ShmemTopicsInvalidate(MyDatabaseId);
			/* The count first: the wake-up's pass must see it. */
			if (saga_work)
				ShmemSagaWorkBump(MyDatabaseId);
			if (destinations_changed)
				ShmemWakeDispatcher(MyDatabaseId);
			else if (events_written || saga_work)
				ShmemWakeDispatcherForWork(MyDatabaseId);
			else if (topics_noted)
				ShmemWakeDispatcherFor(MyDatabaseId, topic_bits);
			if (extension_changed)
				ShmemWakeLauncher(true);
			forget();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction wakes at COMMIT PREPARED, and
			 * invalidates the summary then (utility_hook.c).
			 */
			forget();
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
 * WakeupNoteEventTopic
 *		The current transaction wrote an event of 'topic': wake the
 *		dispatchers at commit if a destination may want it.
 */
void
WakeupNoteEventTopic(const text *topic)
{
	int			bit = ShmemTopicBit(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic));

	topic_bits[bit / 64] |= UINT64CONST(1) << (bit % 64);
	topics_noted = true;
}

/*
 * WakeupNoteDestinationsChanged
 *		The current transaction changed destinations or subscriptions: at
 *		commit, make the dispatchers read them again, and wake them.
 */
void
WakeupNoteDestinationsChanged(void)
{
	destinations_changed = true;
}

/*
 * WakeupNoteEventWritten
 *		The current transaction wrote something the dispatchers must see
 *		whatever its topic (replayed dead letters): wake them at commit.
 */
void
WakeupNoteEventWritten(void)
{
	events_written = true;
}

/*
 * WakeupNoteSagaWork
 *		The current transaction changed saga state that the saga driver must
 *		act on (a saga started, a step completed, cancelled, retried,
 *		resumed, a compensation registered): at commit, bump the saga work
 *		counter, then wake the dispatchers.  Never on abort.
 */
void
WakeupNoteSagaWork(void)
{
	saga_work = true;
}

PG_FUNCTION_INFO_V1(outbox_saga_extension_changed);
PG_FUNCTION_INFO_V1(outbox_saga_saga_work_changed);

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

/*
 * outbox.saga_work_changed() RETURNS void
 *		Internal, for saga functions written in SQL (saga.resume): this
 *		transaction changed saga state; WakeupNoteSagaWork.
 */
Datum
outbox_saga_saga_work_changed(PG_FUNCTION_ARGS)
{
	WakeupNoteSagaWork();
	PG_RETURN_VOID();
}

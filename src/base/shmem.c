/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared memory of outbox_saga: the launcher's latch and one slot per
 *		served database.
 *
 * Requested through shmem_request_hook and created in shmem_startup_hook,
 * only when the library is in shared_preload_libraries; otherwise
 * OutboxShared stays NULL and everything that would wake a worker does
 * nothing (events are still written; dispatch waits for preloading).
 *
 * One slot per served database, with one DispatcherWorker per dispatcher
 * process of it (outbox_saga.workers_per_database of them, at most
 * OUTBOX_MAX_WORKERS_PER_DATABASE).  Atomics almost everywhere: process
 * numbers (to reach latches), pids, flags and counters.  The launcher is
 * the only writer of a slot's dboid; a dispatcher writes its own worker's
 * pid/procno, counters and state; committing backends only read slots,
 * set wake_pending and bump the saga work counter.  The exception is the
 * workers' claims (which destination each one serves now): read and
 * written under the slot's spinlock, a few instructions at a time, so that
 * a check-and-claim is atomic.
 *
 * THE TOPIC SUMMARY (issue 18: no wasted dispatcher work)
 *	Each slot holds a TopicSummary (shmem.h): the hashes of the topics that
 *	destinations not paused subscribe to, so that a commit whose events no
 *	such destination wants does not wake the dispatchers at all.  The log
 *	stays the truth: a commit that does not wake anyone is still read by
 *	the next pass, whatever wakes it (another commit, a timer, the poll).
 *	What must never happen is that a commit an active destination wants
 *	neither wakes a dispatcher nor is covered by a pass that starts after
 *	it.  The protocol:
 *	- Whatever may make a destination want a topic it did not want (a
 *	  subscribe, resume, create, alter, a COMMIT PREPARED, a dispatcher's
 *	  start) invalidates the summary AFTER its transaction has committed
 *	  (ShmemTopicsInvalidate: generation + 1, all = 1, under the mutex), then
 *	  wakes the dispatchers.
 *	- A dispatcher computes a summary (dispatcher.c): it reads the
 *	  generation, THEN reads the subscriptions with a new snapshot, and
 *	  publishes only if the generation has not moved meanwhile
 *	  (ShmemTopicsPublish); it publishes before it takes the tick of its
 *	  pass.  So an accepted summary is never older than a change that was
 *	  announced before it; a change announced later sets 'all' again.
 *	- Backoffs end by time, not by a commit: their topics are published as
 *	  'later' with the earliest end, and from then on a commit on them wakes
 *	  the dispatchers until a pass moves them to 'now'.
 *	- A committing backend checks its transaction's topics AFTER its commit
 *	  is visible (wakeup.c's commit callback) against a consistent copy of
 *	  the summary (a sequence lock: a summary being written counts as
 *	  "wake").  If the summary it sees lacks a topic that an active
 *	  destination wants, the change that made it want it was announced after
 *	  this commit became visible, and the pass that change wakes takes its
 *	  tick later: this commit is in that tick.
 *	Pausing, a backoff starting, unsubscribing or dropping only ever make
 *	the summary too wide until the next pass narrows it, which costs at most
 *	a wake-up.  Paused and backing-off destinations cost nothing per commit.
 *
 * WHOM A COMMIT WAKES (issue 18: one pass per interval, not per worker)
 *	A commit that wrote events some destination wants, or saga work, wakes
 *	ONE dispatcher: the first running one, worker 0 (wake_one), or, while
 *	it is stuck in one batch or saga round for more than WORKER_STUCK_MS,
 *	or is in a housekeeping round at all, the next one as well, and so on.
 *	A worker whose step lasts WORKER_STUCK_MS wakes the others itself (a
 *	timeout of the dispatcher), for the commits that woke only it before or
 *	early in that step: a slow destination delays another by at most that
 *	(G12).  Housekeeping (worker 0, every few seconds; 2-20 ms where
 *	system calls are dear) is known not to deliver: worker 0 hands the
 *	wake-ups it holds on when it begins a round, and commits during the
 *	round wake the next worker, so that it delays no delivery.
 *	Waking every worker made each of them run a pass (a transaction,
 *	destination loading, a tick) per commit, although one destination is
 *	served by one worker at a time.  What the woken worker cannot serve it
 *	hands on, so that no wake-up is lost (G8): a destination another
 *	worker has claimed wakes that worker (its batch may have read an older
 *	window; it runs another pass after it, with a newer tick), network
 *	destinations that worker 0 leaves to the others wake the others, and a
 *	pass that leaves work ready wakes the others to share it
 *	(dispatcher.c).  A change every worker must see (destinations,
 *	subscriptions, wait_idle) still wakes them all (ShmemWakeDispatcher),
 *	and every worker polls.
 *
 * THE SAGA WORK COUNTER (issue 18 item 3)
 *	Each slot counts the commits that changed saga state in ways the driver
 *	must see (saga.start, complete_step, cancel, retry,
 *	register_compensation, resume, COMMIT PREPARED): the committing backend
 *	bumps it AFTER its commit is visible (wakeup.c's commit callback), then
 *	wakes the dispatchers.  Worker 0 reads it BEFORE the snapshot of its
 *	saga round (saga_driver.c): a count it has already served, with nothing
 *	due and nothing left over from the last round, means the round would
 *	find nothing, and it is skipped.  A bump it did not see came after that
 *	read, and the wake-up that follows it asks for another pass.  The
 *	counter only ever grows; a new dispatcher serves it from scratch (its
 *	first round always runs), so a slot reassigned to another database, or
 *	a bump that found no slot, costs nothing but that first round.
 *
 * Nothing here outlives the postmaster's shared memory: after a crash
 * restart every slot starts empty and the launcher starts the dispatchers
 * again; their positions live in tables, not here.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "base/shmem.h"

OutboxShmem *OutboxShared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
outbox_shmem_size(void)
{
	return add_size(offsetof(OutboxShmem, slots),
					mul_size(sizeof(DispatcherSlot), OutboxMaxDatabases));
}

static void
outbox_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(outbox_shmem_size());
}

static void
outbox_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	OutboxShared = ShmemInitStruct("outbox_saga", outbox_shmem_size(), &found);
	if (!found)
	{
		int			i;

		pg_atomic_init_u32(&OutboxShared->launcher_procno, 0);
		pg_atomic_init_u32(&OutboxShared->rescan_generation, 0);
		OutboxShared->max_databases = OutboxMaxDatabases;
		for (i = 0; i < OutboxMaxDatabases; i++)
		{
			DispatcherSlot *slot = &OutboxShared->slots[i];
			int			w;

			pg_atomic_init_u32(&slot->dboid, InvalidOid);
			pg_atomic_init_u32(&slot->ready, 0);
			pg_atomic_init_u32(&slot->version_mismatch, 0);
			pg_atomic_init_u64(&slot->blocked_until, 0);
			SpinLockInit(&slot->mutex);
			pg_atomic_init_u64(&slot->saga_work, 0);
			pg_atomic_init_u32(&slot->topics.seq, 0);
			pg_atomic_init_u32(&slot->topics.all, 1);
			pg_atomic_init_u64(&slot->topics.later_from, 0);
			for (w = 0; w < TOPIC_SUMMARY_WORDS; w++)
			{
				pg_atomic_init_u64(&slot->topics.now[w], 0);
				pg_atomic_init_u64(&slot->topics.later[w], 0);
			}
			SpinLockInit(&slot->topics.mutex);
			slot->topics.generation = 0;
			for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
			{
				DispatcherWorker *wk = &slot->workers[w];

				pg_atomic_init_u32(&wk->pid, 0);
				pg_atomic_init_u32(&wk->procno, 0);
				pg_atomic_init_u32(&wk->wake_pending, 0);
				pg_atomic_init_u32(&wk->exit_reason, DISPATCHER_EXIT_UNKNOWN);
				pg_atomic_init_u32(&wk->doing, DOING_STARTING);
				pg_atomic_init_u64(&wk->doing_since, 0);
				pg_atomic_init_u64(&wk->passes, 0);
				pg_atomic_init_u64(&wk->idle_pass, 0);
				wk->claim = CLAIM_NONE;
			}
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * ShmemInit
 *		Install the hooks; called from _PG_init while preloading.
 */
void
ShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = outbox_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = outbox_shmem_startup;
}

/*
 * ShmemFindSlot
 *		The slot serving 'dboid', or NULL.
 */
DispatcherSlot *
ShmemFindSlot(Oid dboid)
{
	int			i;

	if (OutboxShared == NULL)
		return NULL;
	for (i = 0; i < OutboxShared->max_databases; i++)
		if (pg_atomic_read_u32(&OutboxShared->slots[i].dboid) == dboid)
			return &OutboxShared->slots[i];
	return NULL;
}

/*
 * ShmemSetLatchOf
 *		Set the latch of the process whose procno (+1) is stored there.
 */
void
ShmemSetLatchOf(pg_atomic_uint32 *procno)
{
	uint32		n = pg_atomic_read_u32(procno);

	if (n > 0 && n <= ProcGlobal->allProcCount)
		SetLatch(&ProcGlobal->allProcs[n - 1].procLatch);
}

/*
 * wake_worker
 *		Ask worker 'wk' for a pass: set its latch unless a pass is asked for
 *		already.  Reads wake_pending first: under load most commits find it
 *		set and write nothing shared.
 */
static void
wake_worker(DispatcherWorker *wk)
{
	if (pg_atomic_read_u32(&wk->procno) != 0 &&
		pg_atomic_read_u32(&wk->wake_pending) == 0 &&
		pg_atomic_exchange_u32(&wk->wake_pending, 1) == 0)
		ShmemSetLatchOf(&wk->procno);
}

/*
 * worker_stuck
 *		Whether worker 'wk' will not start the pass a commit asks for soon:
 *		it is in a housekeeping round, or has been inside one batch or saga
 *		round for more than WORKER_STUCK_MS.
 */
static bool
worker_stuck(DispatcherWorker *wk)
{
	uint32		doing = pg_atomic_read_u32(&wk->doing);
	TimestampTz since;

	if (!WorkerDoingIsBusy(doing))
		return false;
	if (doing == DOING_HOUSEKEEPING)
		return true;
	since = (TimestampTz) pg_atomic_read_u64(&wk->doing_since);
	return GetCurrentTimestamp() - since > WORKER_STUCK_MS * INT64CONST(1000);
}

/*
 * wake_one
 *		Ask the first running dispatcher of 'slot' that is not stuck for a
 *		pass (see WHOM A COMMIT WAKES), and the stuck ones before it.
 */
static void
wake_one(DispatcherSlot *slot)
{
	int			w;

	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
	{
		DispatcherWorker *wk = &slot->workers[w];

		if (pg_atomic_read_u32(&wk->procno) == 0)
			continue;
		wake_worker(wk);
		if (!worker_stuck(wk))
			return;
	}
}

/*
 * ShmemWakeDispatcher
 *		Ask every dispatcher of 'dboid' for a pass: for changes every worker
 *		must see (destinations, subscriptions, outbox.wait_idle()).  Many
 *		commits between two passes set a worker's latch once: wake_pending
 *		is cleared by the worker when it starts a pass.
 */
void
ShmemWakeDispatcher(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot == NULL)
		return;
	ShmemWakeOtherWorkers(slot, -1);
}

/*
 * ShmemWakeDispatcherForWork
 *		Ask one dispatcher of 'dboid' for a pass (WHOM A COMMIT WAKES): new
 *		events, saga work.
 */
void
ShmemWakeDispatcherForWork(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot == NULL)
		return;
	wake_one(slot);
}

/*
 * ShmemWakeWorker
 *		Ask worker 'worker' of 'slot' for a pass (a dispatcher handing on a
 *		wake-up it cannot serve).
 */
void
ShmemWakeWorker(DispatcherSlot *slot, int worker)
{
	wake_worker(&slot->workers[worker]);
}

/*
 * ShmemWakeOtherWorkers
 *		Ask every dispatcher of 'slot' but 'worker' (-1: every one) for a
 *		pass.  Only atomics and SetLatch: safe in a signal handler (the
 *		dispatcher's stuck timeout).
 */
void
ShmemWakeOtherWorkers(DispatcherSlot *slot, int worker)
{
	int			w;

	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (w != worker)
			wake_worker(&slot->workers[w]);
}

/*
 * ShmemTopicBit
 *		The bit of the topic summary that stands for a topic.
 */
int
ShmemTopicBit(const char *topic, int len)
{
	return (int) (hash_bytes((const unsigned char *) topic, len) %
				  TOPIC_SUMMARY_BITS);
}

/*
 * ShmemTopicsInvalidate
 *		The destinations of 'dboid' may want topics the summary lacks: wake
 *		for every topic until a dispatcher has read them again.  Called
 *		after the change is visible (committed).
 */
void
ShmemTopicsInvalidate(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->topics.mutex);
	slot->topics.generation++;
	pg_atomic_write_u32(&slot->topics.all, 1);
	SpinLockRelease(&slot->topics.mutex);
}

/*
 * ShmemTopicsGeneration
 *		The summary's generation, read before the subscriptions are.
 */
uint64
ShmemTopicsGeneration(DispatcherSlot *slot)
{
	uint64		g;

	SpinLockAcquire(&slot->topics.mutex);
	g = slot->topics.generation;
	SpinLockRelease(&slot->topics.mutex);
	return g;
}

/*
 * ShmemTopicsPublish
 *		Publish a summary read after the generation was 'generation';
 *		refused (false) if an invalidation came in between.
 */
bool
ShmemTopicsPublish(DispatcherSlot *slot, uint64 generation,
				   const TopicSummaryDraft *draft)
{
	TopicSummary *ts = &slot->topics;
	int			i;

	SpinLockAcquire(&ts->mutex);
	if (ts->generation != generation)
	{
		SpinLockRelease(&ts->mutex);
		return false;
	}
	pg_atomic_fetch_add_u32(&ts->seq, 1);	/* odd: being written */
	pg_write_barrier();
	for (i = 0; i < TOPIC_SUMMARY_WORDS; i++)
	{
		pg_atomic_write_u64(&ts->now[i], draft->now[i]);
		pg_atomic_write_u64(&ts->later[i], draft->later[i]);
	}
	pg_atomic_write_u64(&ts->later_from, (uint64) draft->later_from);
	pg_atomic_write_u32(&ts->all, draft->all ? 1 : 0);
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&ts->seq, 1);	/* even: done */
	SpinLockRelease(&ts->mutex);
	return true;
}

/*
 * topics_wanted
 *		Whether a transaction that wrote events of the topics 'bits' must
 *		wake the dispatchers of 'slot'.  Lock-free: a summary being written
 *		while it is read counts as "yes".
 */
static bool
topics_wanted(DispatcherSlot *slot, const uint64 *bits)
{
	TopicSummary *ts = &slot->topics;
	uint32		seq = pg_atomic_read_u32(&ts->seq);
	bool		now = false;
	bool		later = false;
	TimestampTz later_from;
	int			i;

	if (seq & 1)
		return true;
	pg_read_barrier();
	if (pg_atomic_read_u32(&ts->all) != 0)
		return true;
	for (i = 0; i < TOPIC_SUMMARY_WORDS; i++)
	{
		if (bits[i] == 0)
			continue;
		if (bits[i] & pg_atomic_read_u64(&ts->now[i]))
			now = true;
		if (bits[i] & pg_atomic_read_u64(&ts->later[i]))
			later = true;
	}
	later_from = (TimestampTz) pg_atomic_read_u64(&ts->later_from);
	pg_read_barrier();
	if (pg_atomic_read_u32(&ts->seq) != seq)
		return true;
	if (now)
		return true;
	return later && later_from != 0 && GetCurrentTimestamp() >= later_from;
}

/*
 * ShmemWakeDispatcherFor
 *		ShmemWakeDispatcherForWork, if a destination that is not paused wants one
 *		of the topics 'topic_bits' (ShmemTopicBit) or may do so by now.
 */
void
ShmemWakeDispatcherFor(Oid dboid, const uint64 *topic_bits)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot != NULL && topics_wanted(slot, topic_bits))
		wake_one(slot);
}

/*
 * ShmemResetWorker
 *		Forget what a worker's previous process left (the launcher, before
 *		it starts one).
 */
void
ShmemResetWorker(DispatcherWorker *w)
{
	pg_atomic_write_u32(&w->exit_reason, DISPATCHER_EXIT_UNKNOWN);
	pg_atomic_write_u32(&w->doing, DOING_STARTING);
	pg_atomic_write_u64(&w->doing_since, 0);
	pg_atomic_write_u64(&w->passes, 0);
	pg_atomic_write_u64(&w->idle_pass, 0);
}

/*
 * ShmemSlotRunning
 *		Whether any dispatcher process of 'slot' is running.
 */
bool
ShmemSlotRunning(DispatcherSlot *slot)
{
	int			w;

	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (pg_atomic_read_u32(&slot->workers[w].pid) != 0)
			return true;
	return false;
}

/*
 * ShmemClaim
 *		Let worker 'worker' of 'slot' claim destination 'claim' (replacing
 *		its previous claim), unless another worker of the slot has it.
 *		Returns whether it got it; if not, *holder is the worker that has
 *		it.  The claim is what keeps two workers
 *		from delivering one destination at once (G3, G4): it spans the
 *		transactions of a batch and the network I/O between them.  It lives
 *		in shared memory, not in a lock a handler could release, and dies
 *		with the process (dispatcher.c releases it on exit).
 */
bool
ShmemClaim(DispatcherSlot *slot, int worker, int32 claim, int *holder)
{
	int			w;
	bool		got = true;

	SpinLockAcquire(&slot->mutex);
	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (w != worker && slot->workers[w].claim == claim)
		{
			got = false;
			*holder = w;
		}
	if (got)
		slot->workers[worker].claim = claim;
	SpinLockRelease(&slot->mutex);
	return got;
}

/*
 * ShmemRelease
 *		Drop worker 'worker''s claim.
 */
void
ShmemRelease(DispatcherSlot *slot, int worker)
{
	SpinLockAcquire(&slot->mutex);
	slot->workers[worker].claim = CLAIM_NONE;
	SpinLockRelease(&slot->mutex);
}

/*
 * ShmemClaimOf
 *		What worker 'worker' of 'slot' claims now (CLAIM_NONE: nothing).
 */
int32
ShmemClaimOf(DispatcherSlot *slot, int worker)
{
	int32		claim;

	SpinLockAcquire(&slot->mutex);
	claim = slot->workers[worker].claim;
	SpinLockRelease(&slot->mutex);
	return claim;
}

/*
 * ShmemSetDoing
 *		Record what a worker does now, and since when.
 */
void
ShmemSetDoing(DispatcherWorker *w, WorkerDoing doing)
{
	if (pg_atomic_read_u32(&w->doing) == (uint32) doing)
		return;
	pg_atomic_write_u32(&w->doing, (uint32) doing);
	pg_atomic_write_u64(&w->doing_since, (uint64) GetCurrentTimestamp());
}

/*
 * ShmemWakeLauncher
 *		Wake the launcher; with 'rescan', make it probe again the databases
 *		where it found no extension.
 */
void
ShmemWakeLauncher(bool rescan)
{
	if (OutboxShared == NULL)
		return;
	if (rescan)
		pg_atomic_fetch_add_u32(&OutboxShared->rescan_generation, 1);
	ShmemSetLatchOf(&OutboxShared->launcher_procno);
}

/*
 * ShmemSagaWorkBump
 *		After a commit that changed saga state in 'dboid': count it (see THE
 *		SAGA WORK COUNTER in the file header).  The caller wakes the
 *		dispatchers afterwards; the atomic add is a full barrier, so a
 *		dispatcher that sees the wake-up sees the count.
 */
void
ShmemSagaWorkBump(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot != NULL)
		(void) pg_atomic_fetch_add_u64(&slot->saga_work, 1);
}

/*
 * ShmemSagaWorkRead
 *		The saga work counter of 'dboid' (0 if it has no slot).  The
 *		barrier orders the read before whatever the caller does next (the
 *		snapshot of a saga round).
 */
uint64
ShmemSagaWorkRead(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);
	uint64		work;

	if (slot == NULL)
		return 0;
	work = pg_atomic_read_u64(&slot->saga_work);
	pg_memory_barrier();
	return work;
}

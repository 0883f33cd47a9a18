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
 * pid/procno, counters and state; committing backends only read slots and
 * set wake_pending.  The exception is the workers' claims (which
 * destination each one serves now): read and written under the slot's
 * spinlock, a few instructions at a time, so that a check-and-claim is
 * atomic.
 *
 * Nothing here outlives the postmaster's shared memory: after a crash
 * restart every slot starts empty and the launcher starts the dispatchers
 * again; their positions live in tables, not here.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

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
 * ShmemWakeDispatcher
 *		Ask every dispatcher of 'dboid' for a pass.  Many commits between two
 *		passes set a worker's latch once: wake_pending is cleared by the
 *		worker when it starts a pass.
 */
void
ShmemWakeDispatcher(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);
	int			w;

	if (slot == NULL)
		return;
	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
	{
		DispatcherWorker *wk = &slot->workers[w];

		if (pg_atomic_read_u32(&wk->procno) != 0 &&
			pg_atomic_exchange_u32(&wk->wake_pending, 1) == 0)
			ShmemSetLatchOf(&wk->procno);
	}
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
 *		Returns whether it got it.  The claim is what keeps two workers
 *		from delivering one destination at once (G3, G4): it spans the
 *		transactions of a batch and the network I/O between them.  It lives
 *		in shared memory, not in a lock a handler could release, and dies
 *		with the process (dispatcher.c releases it on exit).
 */
bool
ShmemClaim(DispatcherSlot *slot, int worker, int32 claim)
{
	int			w;
	bool		got = true;

	SpinLockAcquire(&slot->mutex);
	for (w = 0; w < OUTBOX_MAX_WORKERS_PER_DATABASE; w++)
		if (w != worker && slot->workers[w].claim == claim)
			got = false;
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

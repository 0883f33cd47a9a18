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
 * Only atomics live here: process numbers (to reach latches), pids, flags
 * and counters.  The launcher is the only writer of a slot's dboid; a
 * dispatcher writes its own pid/procno and counters; committing backends
 * only read slots and set wake_pending.
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

			pg_atomic_init_u32(&slot->dboid, InvalidOid);
			pg_atomic_init_u32(&slot->pid, 0);
			pg_atomic_init_u32(&slot->procno, 0);
			pg_atomic_init_u32(&slot->wake_pending, 0);
			pg_atomic_init_u32(&slot->exit_reason, DISPATCHER_EXIT_UNKNOWN);
			pg_atomic_init_u32(&slot->version_mismatch, 0);
			pg_atomic_init_u64(&slot->blocked_until, 0);
			pg_atomic_init_u64(&slot->passes, 0);
			pg_atomic_init_u64(&slot->idle_pass, 0);
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
 *		Ask the dispatcher of 'dboid' for a pass.  Many commits between two
 *		passes set the latch once: wake_pending is cleared by the dispatcher
 *		when it starts a pass.
 */
void
ShmemWakeDispatcher(Oid dboid)
{
	DispatcherSlot *slot = ShmemFindSlot(dboid);

	if (slot == NULL)
		return;
	if (pg_atomic_exchange_u32(&slot->wake_pending, 1) == 0)
		ShmemSetLatchOf(&slot->procno);
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

/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		Shared state of the launcher and the dispatchers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SHMEM_H
#define OUTBOX_SAGA_SHMEM_H

#include "port/atomics.h"

#include "storage/spin.h"

#include "base/guc.h"

/* Why a dispatcher stopped by itself (DispatcherWorker.exit_reason). */
typedef enum DispatcherExit
{
	DISPATCHER_EXIT_UNKNOWN = 0,	/* crash, terminate: restart it */
	DISPATCHER_EXIT_NO_EXTENSION,	/* not installed: start again on CREATE
									 * EXTENSION */
} DispatcherExit;

/*
 * A dispatcher's bgw_main_arg: its slot and its worker number in the
 * slot.
 */
#define DISPATCHER_ARG(slot, worker)	((slot) * 64 + (worker))
#define DISPATCHER_ARG_SLOT(arg)		((arg) / 64)
#define DISPATCHER_ARG_WORKER(arg)		((arg) % 64)

StaticAssertDecl(OUTBOX_MAX_WORKERS_PER_DATABASE <= 64,
				 "DISPATCHER_ARG cannot encode the worker number");

/* What a worker claims besides destinations (DispatcherWorker.claim). */
#define CLAIM_NONE			0	/* > 0: the id of a destination */

/* What a worker is doing (DispatcherWorker.doing), for outbox.workers. */
typedef enum WorkerDoing
{
	DOING_STARTING = 0,
	DOING_WAITING,				/* on its latch, for work */
	DOING_PASS,					/* ticking, reading destinations */
	DOING_DELIVERING,			/* a batch of the claimed destination */
	DOING_SAGAS,
	DOING_HOUSEKEEPING,
} WorkerDoing;

/*
 * One dispatcher process of a database: worker 0, 1, ... of its slot.
 * The process writes pid/procno on start and clears them on exit;
 * committing backends set wake_pending; 'claim' is read and written only
 * under the slot's mutex.
 */
typedef struct DispatcherWorker
{
	pg_atomic_uint32 pid;		/* 0: no process */
	pg_atomic_uint32 procno;	/* pgprocno + 1 of the process; 0: none */
	pg_atomic_uint32 wake_pending;	/* a commit asked for a pass */
	pg_atomic_uint32 exit_reason;	/* DispatcherExit */
	pg_atomic_uint32 doing;		/* WorkerDoing */
	pg_atomic_uint64 doing_since;	/* TimestampTz */
	pg_atomic_uint64 passes;	/* passes completed */
	pg_atomic_uint64 idle_pass; /* number of the last pass that found nothing
								 * ready */
	int32		claim;			/* CLAIM_NONE or a destination id */
} DispatcherWorker;

/*
 * One database's dispatchers.  Only the launcher assigns and frees slots
 * (writes dboid); everything but the claims is an atomic so that
 * committing backends can read it without a lock.
 */
typedef struct DispatcherSlot
{
	pg_atomic_uint32 dboid;		/* InvalidOid: slot free */
	pg_atomic_uint32 ready;		/* worker 0 found the extension: start the
								 * others */
	pg_atomic_uint32 version_mismatch;	/* waits for the SQL version to match */
	pg_atomic_uint64 blocked_until; /* TimestampTz: do not (re)start before */
	slock_t		mutex;			/* protects every worker's claim */
	DispatcherWorker workers[OUTBOX_MAX_WORKERS_PER_DATABASE];
} DispatcherSlot;

typedef struct OutboxShmem
{
	pg_atomic_uint32 launcher_procno;	/* pgprocno + 1; 0: none */
	pg_atomic_uint32 rescan_generation; /* bumped by CREATE/ALTER EXTENSION */
	int			max_databases;
	DispatcherSlot slots[FLEXIBLE_ARRAY_MEMBER];
} OutboxShmem;

/* NULL unless the library was preloaded. */
extern OutboxShmem *OutboxShared;

extern void ShmemInit(void);
extern DispatcherSlot *ShmemFindSlot(Oid dboid);
extern void ShmemWakeDispatcher(Oid dboid);
extern void ShmemWakeLauncher(bool rescan);
extern void ShmemSetLatchOf(pg_atomic_uint32 *procno);
extern void ShmemResetWorker(DispatcherWorker *w);
extern bool ShmemSlotRunning(DispatcherSlot *slot);
extern bool ShmemClaim(DispatcherSlot *slot, int worker, int32 claim);
extern void ShmemRelease(DispatcherSlot *slot, int worker);
extern int32 ShmemClaimOf(DispatcherSlot *slot, int worker);
extern void ShmemSetDoing(DispatcherWorker *w, WorkerDoing doing);

#endif							/* OUTBOX_SAGA_SHMEM_H */

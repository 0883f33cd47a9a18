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
#include "datatype/timestamp.h"

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
 * A worker inside one batch or saga round for longer than this hands a
 * commit's wake-up on to the other workers (base/shmem.c, WHOM A COMMIT
 * WAKES): a normal batch takes a few ms.  A housekeeping round hands it on
 * at once.
 */
#define WORKER_STUCK_MS		20

/* Whether 'doing' is a step that can keep a worker from its next pass. */
static inline bool
WorkerDoingIsBusy(uint32 doing)
{
	return doing == DOING_DELIVERING || doing == DOING_SAGAS ||
		doing == DOING_HOUSEKEEPING;
}

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
 * Which topics a commit must wake a database's dispatchers for (issue 18):
 * a Bloom-like summary of the topics that destinations not paused
 * subscribe to, one bit per hash of a topic (TOPIC_SUMMARY_BITS of them).
 * 'now' holds the topics of destinations that may be delivered to now,
 * 'later' those of destinations backing off, which count from 'later_from'
 * on (the earliest end of their backoffs).  'all' says "wake for every
 * topic": the summary is not known (after a start, or a change of the
 * destinations not yet read by a dispatcher) or a '*' subscription is
 * active.  An over-approximation: a hash collision or a stale 'now' bit
 * costs a wake-up, never an event.  See base/shmem.c (the protocol) and
 * events/wakeup.c (the reader).
 */
#define TOPIC_SUMMARY_BITS		1024
#define TOPIC_SUMMARY_WORDS		(TOPIC_SUMMARY_BITS / 64)

typedef struct TopicSummary
{
	pg_atomic_uint32 seq;		/* odd while a dispatcher publishes */
	pg_atomic_uint32 all;		/* 1: wake for every topic */
	pg_atomic_uint64 later_from;	/* TimestampTz; 0: no 'later' bits */
	pg_atomic_uint64 now[TOPIC_SUMMARY_WORDS];
	pg_atomic_uint64 later[TOPIC_SUMMARY_WORDS];
	slock_t		mutex;			/* serializes invalidations and publishing */
	uint64		generation;		/* bumped by every invalidation */
} TopicSummary;

/* A summary being computed by a dispatcher (ShmemTopicsPublish). */
typedef struct TopicSummaryDraft
{
	bool		all;
	TimestampTz later_from;
	uint64		now[TOPIC_SUMMARY_WORDS];
	uint64		later[TOPIC_SUMMARY_WORDS];
} TopicSummaryDraft;

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
	pg_atomic_uint64 saga_work; /* bumped after every commit that changed
								 * saga state (wakeup.c): worker 0 skips the
								 * saga round while it stands still */
	TopicSummary topics;		/* which commits wake the dispatchers */
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
extern void ShmemWakeDispatcherForWork(Oid dboid);
extern void ShmemWakeWorker(DispatcherSlot *slot, int worker);
extern void ShmemWakeOtherWorkers(DispatcherSlot *slot, int worker);
extern void ShmemWakeLauncher(bool rescan);
extern void ShmemSetLatchOf(pg_atomic_uint32 *procno);
extern void ShmemResetWorker(DispatcherWorker *w);
extern bool ShmemSlotRunning(DispatcherSlot *slot);
extern bool ShmemClaim(DispatcherSlot *slot, int worker, int32 claim,
					   int *holder);
extern void ShmemRelease(DispatcherSlot *slot, int worker);
extern int32 ShmemClaimOf(DispatcherSlot *slot, int worker);
extern void ShmemSetDoing(DispatcherWorker *w, WorkerDoing doing);
extern int	ShmemTopicBit(const char *topic, int len);
extern void ShmemTopicsInvalidate(Oid dboid);
extern uint64 ShmemTopicsGeneration(DispatcherSlot *slot);
extern bool ShmemTopicsPublish(DispatcherSlot *slot, uint64 generation,
							   const TopicSummaryDraft *draft);
extern void ShmemWakeDispatcherFor(Oid dboid, const uint64 *topic_bits);
extern void ShmemSagaWorkBump(Oid dboid);
extern uint64 ShmemSagaWorkRead(Oid dboid);

#endif							/* OUTBOX_SAGA_SHMEM_H */

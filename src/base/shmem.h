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

/* Why a dispatcher stopped by itself (DispatcherSlot.exit_reason). */
typedef enum DispatcherExit
{
	DISPATCHER_EXIT_UNKNOWN = 0,	/* crash, terminate: restart it */
	DISPATCHER_EXIT_NO_EXTENSION,	/* not installed: start again on CREATE
									 * EXTENSION */
} DispatcherExit;

/*
 * One database's dispatcher.  Only the launcher assigns and frees slots
 * (writes dboid); everything here is an atomic so that committing backends
 * can read it without a lock.
 */
typedef struct DispatcherSlot
{
	pg_atomic_uint32 dboid;		/* InvalidOid: slot free */
	pg_atomic_uint32 pid;		/* 0: no process */
	pg_atomic_uint32 procno;	/* pgprocno + 1 of the process; 0: none */
	pg_atomic_uint32 wake_pending;	/* a commit asked for a pass */
	pg_atomic_uint32 exit_reason;	/* DispatcherExit */
	pg_atomic_uint32 version_mismatch;	/* waits for the SQL version to match */
	pg_atomic_uint64 blocked_until; /* TimestampTz: do not (re)start before */
	pg_atomic_uint64 passes;	/* passes completed */
	pg_atomic_uint64 idle_pass; /* number of the last pass that found nothing
								 * ready */
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

#endif							/* OUTBOX_SAGA_SHMEM_H */

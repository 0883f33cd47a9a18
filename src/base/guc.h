/*-------------------------------------------------------------------------
 *
 * guc.h
 *		The outbox_saga.* settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_GUC_H
#define OUTBOX_SAGA_GUC_H

#include "utils/guc.h"

/* Largest payload (and headers) one event may carry, in bytes. */
extern int	OutboxMaxPayloadSize;

/* How long a committed, uncompleted idempotency claim blocks others (s). */
extern int	OutboxIdempotencyLockTimeout;

/* Dispatch (reloadable unless noted). */
extern bool OutboxEnabled;
extern char *OutboxDatabases;
extern int	OutboxPollInterval;		/* ms */
extern int	OutboxBatchSize;
extern int	OutboxRetention;		/* s */
extern int	OutboxMaxDestinationLag;	/* s, 0: no limit */
extern int	OutboxMaxDatabases;		/* postmaster start only */
extern int	OutboxWorkersPerDatabase;

/* The most dispatcher processes one database can have (shared memory). */
#define OUTBOX_MAX_WORKERS_PER_DATABASE	16

/* Network destinations. */
extern int	OutboxMaxInflight;		/* requests in flight per dispatcher */
extern int	OutboxHttpTimeout;		/* ms, default per-attempt HTTP timeout */

extern void GucInit(void);

#endif							/* OUTBOX_SAGA_GUC_H */

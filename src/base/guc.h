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
extern int	OutboxMaxDatabases;		/* postmaster start only */

/* Network destinations. */
extern int	OutboxMaxInflight;		/* requests in flight per dispatcher */
extern int	OutboxHttpTimeout;		/* ms, default per-attempt HTTP timeout */
extern char *OutboxHttpDenyNetworks;	/* CIDR list refused after DNS */

extern void GucInit(void);

/* Check hook of outbox_saga.http_deny_networks (src/http/http_guard.c). */
extern bool HttpGuardCheckDenyNetworks(char **newval, void **extra, GucSource source);

#endif							/* OUTBOX_SAGA_GUC_H */

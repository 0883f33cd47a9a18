/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *		Idempotency keys (outbox.idempotency_keys).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_IDEMPOTENCY_H
#define OUTBOX_SAGA_IDEMPOTENCY_H

/* Limits on the text arguments, in bytes. */
#define OUTBOX_MAX_SCOPE_BYTES			255
#define OUTBOX_MAX_IDEMPOTENCY_KEY_BYTES	512
#define OUTBOX_MAX_FINGERPRINT_BYTES	512

/*
 * Delete at most max_rows expired keys, skipping rows locked by open
 * transactions; returns how many were deleted.  Runs in the caller's
 * transaction (the caller need not be connected to SPI).
 */
extern int64 OutboxPurgeIdempotencyKeys(int64 max_rows);

#endif							/* OUTBOX_SAGA_IDEMPOTENCY_H */

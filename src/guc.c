/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Definition of the outbox_saga.* settings.
 *
 * Every setting of the extension is defined here, once, when the library
 * is loaded (preloaded or not), and the prefix is reserved so that a typo
 * such as outbox_saga.max_paylod_size is reported instead of ignored.
 *
 * Settings that protect the server (payload limits) are superuser-only;
 * settings that only change how the caller's own session behaves are
 * user-settable.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "utils/guc.h"

#include "guc.h"

int			OutboxMaxPayloadSize = 1024 * 1024;
int			OutboxIdempotencyLockTimeout = 300;

/*
 * GucInit
 *		Define every setting and reserve the outbox_saga. prefix.
 */
void
GucInit(void)
{
	DefineCustomIntVariable("outbox_saga.max_payload_size",
							"Largest payload, and largest headers object, one event may carry.",
							"Larger events are refused with SQLSTATE 54000.",
							&OutboxMaxPayloadSize,
							1024 * 1024,
							1024,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox_saga.idempotency_lock_timeout",
							"How long a committed idempotency claim that was never completed answers in_progress.",
							"After this time a new request with the same key takes the claim over.",
							&OutboxIdempotencyLockTimeout,
							300,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("outbox_saga");
}

/*-------------------------------------------------------------------------
 *
 * uuidv7.h
 *		UUID version 7 (RFC 9562) generation for event ids.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_UUIDV7_H
#define OUTBOX_SAGA_UUIDV7_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

extern void OutboxUuidV7(TimestampTz now, pg_uuid_t *out);

#endif							/* OUTBOX_SAGA_UUIDV7_H */

/*-------------------------------------------------------------------------
 *
 * uuidv7.c
 *		UUID version 7 (RFC 9562) for the stable event_id of every event.
 *
 * Layout: 48 bits of Unix time in milliseconds, the version nibble 7,
 * 12 bits of sub-millisecond time (RFC 9562 section 6.2, method 3), the
 * variant bits 10, and 62 random bits from pg_strong_random() (buffered per
 * backend; a backend's buffer is never shared, as the postmaster never
 * generates ids).  Ids made by
 * one backend therefore sort by creation time to the microsecond, and ids
 * of different backends collide only if 62 random bits do.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "port.h"

#include "base/uuidv7.h"

/* Microseconds between the Unix epoch and the PostgreSQL epoch. */
#define UNIX_TO_POSTGRES_EPOCH_USEC \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

static uint8 random_bytes[512];
static Size random_used = sizeof(random_bytes);

/*
 * OutboxUuidV7
 *		Fill *out with a version 7 UUID for the time 'now'.
 */
void
OutboxUuidV7(TimestampTz now, pg_uuid_t *out)
{
	int64		unix_usec = now + UNIX_TO_POSTGRES_EPOCH_USEC;
	uint64		unix_ms = (uint64) (unix_usec / 1000);
	uint32		sub_ms = (uint32) (((unix_usec % 1000) * 4096) / 1000);
	uint8	   *b = out->data;

	/* Strong random bytes, fetched 512 at a time (one call per 64 ids). */
	if (random_used + 8 > sizeof(random_bytes))
	{
		if (!pg_strong_random(random_bytes, sizeof(random_bytes)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bits for an event id")));
		random_used = 0;
	}
	memcpy(b + 8, random_bytes + random_used, 8);
	random_used += 8;

	b[0] = (uint8) (unix_ms >> 40);
	b[1] = (uint8) (unix_ms >> 32);
	b[2] = (uint8) (unix_ms >> 24);
	b[3] = (uint8) (unix_ms >> 16);
	b[4] = (uint8) (unix_ms >> 8);
	b[5] = (uint8) unix_ms;
	b[6] = (uint8) (0x70 | ((sub_ms >> 8) & 0x0F));
	b[7] = (uint8) (sub_ms & 0xFF);
	b[8] = (uint8) (0x80 | (b[8] & 0x3F));
}

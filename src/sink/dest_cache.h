/*-------------------------------------------------------------------------
 *
 * dest_cache.h
 *		Per-destination state that a network sink keeps across batches
 *		(parsed config, connection, producer); see dest_cache.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DEST_CACHE_H
#define OUTBOX_SAGA_DEST_CACHE_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "sink/dest_config.h"

typedef struct SinkDestEntry
{
	int32		dest_id;
	Jsonb	   *config;			/* the config bytes the state was made from */
	MemoryContext cxt;			/* the entry's allocations, state included */
	TimestampTz last_used;
	void	   *state;			/* the kind's */
	struct SinkDestEntry *next;
} SinkDestEntry;

typedef struct SinkDestCache
{
	/* Set by the kind (a static initializer). */
	const char *name;			/* "http", "kafka", ...: memory context names */

	/*
	 * Make the state of a config in CurrentMemoryContext (the entry's);
	 * may raise an error (a config that no longer parses).
	 */
	void	   *(*make) (Jsonb *config);

	/*
	 * Close what the state holds open and wipe its secrets; never raises.
	 * Its memory is freed by the cache afterwards.  May be NULL.
	 */
	void		(*release) (void *state);

	/* Entries of other destinations unused this long are dropped; 0: never. */
	int			idle_close_ms;

	/* The cache's own. */
	MemoryContext cxt;
	SinkDestEntry *entries;
} SinkDestCache;

extern void *SinkDestLookup(SinkDestCache *cache, const DestinationConfig *dest,
							char **error);
extern void SinkDestForget(SinkDestCache *cache, int32 dest_id);

#endif							/* OUTBOX_SAGA_DEST_CACHE_H */

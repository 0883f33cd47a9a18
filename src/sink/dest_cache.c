/*-------------------------------------------------------------------------
 *
 * dest_cache.c
 *		The per-destination state of a network sink, kept across batches.
 *
 * A kind (http, kafka, nats) declares one static SinkDestCache with a
 * make() that parses a destination's config into its state (and may open
 * nothing yet) and a release() that closes connections and wipes secrets.
 *
 * INVARIANTS
 *	- An entry is found by destination id and the exact config bytes: an
 *	  altered config makes a new entry and releases the old one, so a
 *	  connection never outlives the config it was opened with.
 *	- Each entry owns one memory context under the cache's (itself under
 *	  TopMemoryContext) that holds the entry, its config copy and its
 *	  state; releasing an entry deletes it, so no allocation of a dropped
 *	  destination survives.
 *	- Lookups run outside any transaction (deliver_batch); a config that
 *	  fails to parse is reported as a string, never raised, so a batch
 *	  fails its events with the reason instead of aborting the worker.
 *	- Entries of other destinations unused for idle_close_ms are released
 *	  at the next lookup (dropped destinations, for one: the dispatcher's
 *	  forget() covers the rest).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "utils/memutils.h"

#include "sink/dest_cache.h"

/*
 * release_entry
 *		Close and free one entry (the entry itself lives in its context).
 */
static void
release_entry(SinkDestCache *cache, SinkDestEntry *entry)
{
	if (cache->release != NULL && entry->state != NULL)
		cache->release(entry->state);
	/* The raw config holds every secret of the destination too. */
	explicit_bzero(entry->config, VARSIZE(entry->config));
	MemoryContextDelete(entry->cxt);
}

/*
 * SinkDestForget
 *		Release the entry of destination 'dest_id' (dropped or changed).
 */
void
SinkDestForget(SinkDestCache *cache, int32 dest_id)
{
	SinkDestEntry **link = &cache->entries;

	while (*link != NULL)
	{
		SinkDestEntry *entry = *link;

		if (entry->dest_id == dest_id)
		{
			*link = entry->next;
			release_entry(cache, entry);
			continue;
		}
		link = &entry->next;
	}
}

/*
 * close_idle
 *		Release the entries of other destinations unused for a while.
 */
static void
close_idle(SinkDestCache *cache, int32 current_id)
{
	SinkDestEntry **link = &cache->entries;
	TimestampTz limit;

	if (cache->idle_close_ms <= 0)
		return;
	limit = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -cache->idle_close_ms);
	while (*link != NULL)
	{
		SinkDestEntry *entry = *link;

		if (entry->dest_id != current_id && entry->last_used < limit)
		{
			*link = entry->next;
			release_entry(cache, entry);
			continue;
		}
		link = &entry->next;
	}
}

/*
 * make_entry
 *		A new entry for 'dest'; errors propagate, leaving nothing behind.
 */
static SinkDestEntry *
make_entry(SinkDestCache *cache, const DestinationConfig *dest)
{
	MemoryContext cxt;
	MemoryContext old;
	SinkDestEntry *entry;

	cxt = AllocSetContextCreate(cache->cxt, "outbox_saga destination state",
								ALLOCSET_SMALL_SIZES);
	MemoryContextSetIdentifier(cxt, cache->name);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		entry = palloc0(sizeof(SinkDestEntry));
		entry->config = palloc(VARSIZE(dest->config));
		memcpy(entry->config, dest->config, VARSIZE(dest->config));
		entry->state = cache->make(dest->config);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);

	entry->dest_id = dest->id;
	entry->cxt = cxt;
	return entry;
}

/*
 * SinkDestLookup
 *		The state of 'dest', made anew if its config changed or it is not
 *		cached.  NULL with *error set ("invalid configuration: ...", in the
 *		caller's memory context) when the config does not parse.
 */
void *
SinkDestLookup(SinkDestCache *cache, const DestinationConfig *dest, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	SinkDestEntry *volatile entry = NULL;
	SinkDestEntry *e;

	*error = NULL;
	if (cache->cxt == NULL)
		cache->cxt = AllocSetContextCreate(TopMemoryContext, "outbox_saga sink cache",
										   ALLOCSET_DEFAULT_SIZES);
	close_idle(cache, dest->id);

	for (e = cache->entries; e != NULL; e = e->next)
	{
		if (e->dest_id == dest->id &&
			VARSIZE(e->config) == VARSIZE(dest->config) &&
			memcmp(e->config, dest->config, VARSIZE(dest->config)) == 0)
		{
			e->last_used = GetCurrentTimestamp();
			return e->state;
		}
	}
	SinkDestForget(cache, dest->id);

	PG_TRY();
	{
		entry = make_entry(cache, dest);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		*error = psprintf("invalid configuration: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (entry == NULL)
		return NULL;

	entry->last_used = GetCurrentTimestamp();
	entry->next = cache->entries;
	cache->entries = entry;
	return entry->state;
}

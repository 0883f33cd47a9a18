/*-------------------------------------------------------------------------
 *
 * eventlog.c
 *		The outbox log: how events are stored, read without gaps and retired.
 *
 * Every event, whether written by outbox.emit() or by the outbox.capture()
 * trigger, goes through OutboxAppendEvent() in the writer's transaction, so
 * it exists if and only if that transaction (and every enclosing savepoint)
 * commits (G1).
 *
 * STORAGE
 *	outbox.events is LIST-partitioned on the generation slot
 *	((id >> 16) & 3) into outbox.events_p0 .. events_p3.  Ids come from the
 *	sequence outbox.events_id_seq (CACHE 1, so ids follow the order in which
 *	sessions write rows); 65,536 consecutive ids form a generation, and
 *	generation g lives in partition g % 4.  A writer finds its partition from
 *	the id alone: no lookup, no shared state, no lock but the row-exclusive
 *	lock on the one partition it writes.  The row is written directly with
 *	heap_insert() and index_insert() (no executor, no SPI), so triggers and
 *	rules on the log are never fired by this path and only plain column
 *	indexes may exist on it.  (The log's one trigger, restore_event, is for
 *	rows a client restores with COPY or INSERT: src/sql/lifecycle.sql sets
 *	them aside, their txids belonging to another database.)
 *
 *	The write path is insert-only (G7): one heap tuple and one entry in the
 *	log's one index, (txid, id) (an index on id alone cost a tenth of a
 *	captured INSERT and was dropped in 0.2.0; logscan.c reads every window
 *	through (txid, id)).  No event row is ever updated.
 *	Delivery state lives with the destinations (a cursor per destination);
 *	only an event that failed gets a row of its own, which copies the event
 *	so that retiring the log never depends on it.
 *
 * INVARIANT: XID BEFORE ID
 *	A writer assigns its top-level transaction id before it draws an event
 *	id.  So once a snapshot S has been taken, a transaction that is not in S
 *	(its xid is >= S.xmax) draws all its event ids after S was taken.
 *
 * READING WITHOUT GAPS (G2)
 *	"id > last id seen" would skip a transaction that drew a lower id and
 *	committed later.  The dispatcher instead records ticks: snapshots
 *	(pg_current_snapshot()) taken one after another.  The batch between
 *	ticks a and b is every event whose txid is visible in S_b and not in S_a:
 *		txid >= S_a.xmin AND txid < S_b.xmax
 *		AND pg_visible_in_snapshot(txid, S_b)
 *		AND NOT pg_visible_in_snapshot(txid, S_a)
 *	Every committed transaction becomes visible in exactly one tick, so
 *	every event is in exactly one batch: none skipped, none read twice, and
 *	a long transaction holds back only its own events.  Aborted transactions
 *	and rolled-back savepoints leave no visible rows, so their events are
 *	never read (G1).  Within a batch events are taken in commit order, or
 *	without commit times in id order (logscan.c).  A capture
 *	trigger draws its id after the row change it reports, while holding that
 *	row's lock, so two transactions that change one row draw their ids, and
 *	are delivered, in commit order (G4).
 *
 * RETIRING (G7)
 *	A partition can be emptied with TRUNCATE as soon as the newest
 *	transaction that wrote into it is below the xmin of the oldest tick any
 *	destination still starts from: every transaction that wrote into it has
 *	ended, and its events are consumed.  Under the ACCESS EXCLUSIVE lock the
 *	TRUNCATE takes, no row can be added, and a writer that drew an id but
 *	has not inserted yet inserts afterwards into the empty partition.  This
 *	retires the generation being written too, so the log holds what is not
 *	yet consumed plus what arrived since the last housekeeping.  If a
 *	destination lags so far that a partition holds an old generation and a
 *	new, unconsumed one, the old generation goes by DELETE once it is closed
 *	(the sequence is past it: every writer still holding one of its ids has
 *	an xid below the xmax of a snapshot taken after that - "xid before id")
 *	and that closing xmax is consumed.  No destination holds a part of the
 *	log for long: housekeeping moves on the positions that hold one, at
 *	once if they are owed nothing in it, past outbox_saga.max_destination_lag
 *	with what they are owed going to their dead letters (dispatch/skip.c).
 *
 * CRASH
 *	The log is an ordinary WAL-logged table written in the writer's
 *	transaction: after a crash, the events of committed transactions are
 *	there and those of the others are not.  The sequence may have skipped
 *	ids (nextval is not transactional), which the reading never relies on.
 *	This file keeps nothing else but a per-backend cache of relation OIDs
 *	and index descriptions, rebuilt on any relcache invalidation of them.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "commands/sequence.h"
#include "mb/pg_wchar.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "base/guc.h"
#include "base/sql_args.h"
#include "base/trace_context.h"
#include "base/uuidv7.h"
#include "events/eventlog.h"
#include "events/wakeup.h"

/*
 * What the write path looks up once per backend: the outbox schema, the id
 * sequence, the partitions, and the IndexInfo of each partition's indexes.
 * Any relcache invalidation of one of these relations (or of all) forgets
 * it, so DDL on the log and DROP/CREATE EXTENSION are noticed at the next
 * event.
 */
typedef struct LogPartition
{
	Oid			relid;
	LogIndexes	indexes;
} LogPartition;

typedef struct LogCache
{
	bool		valid;
	Oid			seqid;
	LogPartition parts[OUTBOX_PARTITIONS];
	MemoryContext cxt;
} LogCache;

static LogCache log_cache;
static bool log_cache_callback_registered = false;

/*
 * log_cache_invalidate
 *		Relcache callback: forget the cache if 'relid' is one of its
 *		relations (InvalidOid: any relation).  Only sets a flag; the next
 *		OutboxAppendEvent() reloads.
 */
static void
log_cache_invalidate(Datum arg, Oid relid)
{
	int			i;

	if (!log_cache.valid)
		return;
	if (OidIsValid(relid) && relid != log_cache.seqid)
	{
		for (i = 0; i < OUTBOX_PARTITIONS; i++)
			if (log_cache.parts[i].relid == relid)
				break;
		if (i == OUTBOX_PARTITIONS)
			return;
	}
	log_cache.valid = false;
}

/*
 * OutboxCheckTopic / OutboxCheckEventType
 *		Raise a clear error if a topic or event type is unusable.  'field'
 *		names the value in the message ("topic", "type_insert", ...).
 */
void
OutboxCheckTopic(const char *field, text *value)
{
	SqlCheckText(field, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
				 OUTBOX_MAX_NAME_BYTES, SQL_TEXT_VALUE, " *",
				 "A topic may not contain control characters, spaces or \"*\".");
}

void
OutboxCheckEventType(const char *field, text *value)
{
	SqlCheckText(field, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
				 OUTBOX_MAX_NAME_BYTES, SQL_TEXT_VALUE, NULL,
				 "An event type may not contain control characters.");
}

/*
 * OutboxCheckAggregateId
 *		An aggregate id is NULL or 1..OUTBOX_MAX_AGGREGATE_BYTES bytes.
 */
void
OutboxCheckAggregateId(text *value)
{
	int			len;

	if (value == NULL)
		return;
	len = VARSIZE_ANY_EXHDR(value);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate_id must not be empty"),
				 errhint("Pass NULL for an event that belongs to no aggregate.")));
	if (len > OUTBOX_MAX_AGGREGATE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("aggregate_id is too long"),
				 errdetail("It has %d bytes; the limit is %d.",
						   len, OUTBOX_MAX_AGGREGATE_BYTES)));
}

/*
 * check_size
 *		A payload or headers value may not exceed outbox_saga.max_payload_size.
 */
static void
check_size(bool is_headers, Jsonb *value)
{
	Size		size = VARSIZE(value) - VARHDRSZ;

	if (size > (Size) OutboxMaxPayloadSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 is_headers ? errmsg("event headers are too large") :
				 errmsg("event payload is too large"),
				 errdetail("It has %zu bytes; outbox_saga.max_payload_size is %d bytes.",
						   size, OutboxMaxPayloadSize)));
}

/*
 * OutboxCheckPayload
 *		Any JSON value is a payload, within the size limit.
 */
void
OutboxCheckPayload(Jsonb *payload)
{
	check_size(false, payload);
}

/*
 * OutboxCheckHeaders
 *		Headers are a JSON object whose values are strings (they become HTTP,
 *		Kafka and NATS headers), within the size limit; their W3C trace
 *		context keys, if any, are valid (base/trace_context.c).
 */
void
OutboxCheckHeaders(Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		is_key = true;

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event headers must be a JSON object"),
				 errhint("Pass an object such as '{\"trace-id\": \"abc\"}'.")));
	check_size(true, headers);

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			is_key = false;
		else if (tok == WJB_VALUE && !is_key)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event header values must be strings"),
						 errhint("Convert numbers and booleans to strings, for example '{\"attempt\": \"1\"}'.")));
			is_key = true;
		}
	}
	TraceCheckHeaders(headers);
}

/*
 * OutboxLogRelid
 *		OID of a relation of the outbox schema, or an error saying the
 *		extension is not installed in this database.
 */
Oid
OutboxLogRelid(Oid nspid, const char *relname)
{
	Oid			relid = get_relname_relid(relname, nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"outbox.%s\" does not exist", relname),
				 errhint("Run CREATE EXTENSION outbox_saga in this database.")));
	return relid;
}

/*
 * OutboxPrimaryKey
 *		The primary key index of 'rel', a table of the outbox schema, or an
 *		error saying the installation is damaged.
 */
Oid
OutboxPrimaryKey(Relation rel)
{
	Oid			pk = CompatRelationGetPrimaryKeyIndex(rel);

	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the table outbox.%s has no primary key",
						RelationGetRelationName(rel)),
				 errhint("Reinstall the extension.")));
	return pk;
}

/*
 * LogIndexesLoad
 *		The indexes of 'heap' that are ready for inserts, and their IndexInfo,
 *		in 'cxt': what LogIndexesInsert maintains.
 *
 * The tables the extension writes directly (the log, the ticks) may only
 * have plain column indexes; an expression, partial or exclusion index
 * would need the executor, which these paths avoid on purpose, so such an
 * index is refused with a clear error.
 */
void
LogIndexesLoad(Relation heap, MemoryContext cxt, LogIndexes *out)
{
	List	   *indexoids = RelationGetIndexList(heap);
	ListCell   *lc;
	int			n = 0;

	out->oids = MemoryContextAlloc(cxt, sizeof(Oid) * (list_length(indexoids) + 1));
	out->infos = MemoryContextAlloc(cxt, sizeof(IndexInfo *) * (list_length(indexoids) + 1));
	foreach(lc, indexoids)
	{
		Relation	irel = index_open(lfirst_oid(lc), AccessShareLock);
		MemoryContext old;
		IndexInfo  *ii;

		if (!irel->rd_index->indisready)
		{
			index_close(irel, AccessShareLock);
			continue;
		}
		old = MemoryContextSwitchTo(cxt);
		ii = BuildIndexInfo(irel);
		MemoryContextSwitchTo(old);
		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL ||
			ii->ii_ExclusionOps != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" on the outbox log is not supported",
							RelationGetRelationName(irel)),
					 errdetail("outbox_saga writes the log directly and maintains only plain column indexes."),
					 errhint("Drop the index, or replace it by an index on plain columns.")));
		out->oids[n] = lfirst_oid(lc);
		out->infos[n] = ii;
		n++;
		index_close(irel, AccessShareLock);
	}
	out->n = n;
	list_free(indexoids);
}

/*
 * load_partition
 *		Fill the cache entry of partition 'part' (relation 'relid'): its
 *		indexes and their IndexInfo, in the cache's memory context.
 */
static void
load_partition(int part, Oid relid)
{
	LogPartition *lp = &log_cache.parts[part];
	Relation	heap = table_open(relid, AccessShareLock);

	lp->relid = relid;
	LogIndexesLoad(heap, log_cache.cxt, &lp->indexes);
	table_close(heap, AccessShareLock);
}

/*
 * load_log_cache
 *		Look up the log's relations (an error if the extension is missing).
 */
static void
load_log_cache(void)
{
	Oid			nspid = get_namespace_oid("outbox", false);
	int			part;

	if (!log_cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(log_cache_invalidate, (Datum) 0);
		log_cache.cxt = AllocSetContextCreate(CacheMemoryContext,
											  "outbox_saga log cache",
											  ALLOCSET_SMALL_SIZES);
		log_cache_callback_registered = true;
	}
	MemoryContextReset(log_cache.cxt);
	memset(log_cache.parts, 0, sizeof(log_cache.parts));
	log_cache.seqid = OutboxLogRelid(nspid, "events_id_seq");
	for (part = 0; part < OUTBOX_PARTITIONS; part++)
	{
		char		partname[NAMEDATALEN];

		snprintf(partname, sizeof(partname), "events_p%d", part);
		load_partition(part, OutboxLogRelid(nspid, partname));
	}
	log_cache.valid = true;
}

/*
 * LogIndexesInsert
 *		Add the heap tuple 'tup' of 'heap', whose columns are values/nulls,
 *		to every index of 'ix' (LogIndexesLoad), under ROW EXCLUSIVE held to
 *		the end of the transaction, as the executor holds the locks of the
 *		indexes it inserts into (and as the caller holds the heap's):
 *		releasing it per row cost a lock release and a new acquisition for
 *		every event of a transaction.
 */
void
LogIndexesInsert(Relation heap, const LogIndexes *ix, HeapTuple tup,
				 Datum *values, bool *nulls)
{
	int			n;

	for (n = 0; n < ix->n; n++)
	{
		Relation	irel = index_open(ix->oids[n], RowExclusiveLock);
		IndexInfo  *ii = ix->infos[n];
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];
		int			i;

		for (i = 0; i < ii->ii_NumIndexAttrs; i++)
		{
			AttrNumber	attno = ii->ii_IndexAttrNumbers[i];

			Assert(attno > 0 && attno <= RelationGetDescr(heap)->natts);
			ivalues[i] = values[attno - 1];
			inulls[i] = nulls[attno - 1];
		}
		/*
		 * The IndexInfo may be cached across statements, but its AM cache is
		 * per-statement state in core (GIN, GiST and BRIN keep pointers into
		 * this Relation there): start it afresh, in the caller's context.
		 */
		ii->ii_AmCache = NULL;
		ii->ii_Context = CurrentMemoryContext;
		index_insert(irel, ivalues, inulls, &tup->t_self, heap,
					 irel->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, ii);
		index_close(irel, NoLock);
	}
}

/*
 * OutboxAppendEvent
 *		Append one validated event to the log in the current transaction and
 *		return its event_id in *event_id.
 *
 * Takes ROW EXCLUSIVE on one partition of outbox.events and its indexes,
 * held to the end of the transaction.  Follows "xid before id" (see the
 * file header): the transaction id is assigned before the sequence is read.
 * The caller has validated every field with the OutboxCheck* functions.
 */
void
OutboxAppendEvent(const OutboxEventData *ev, pg_uuid_t *event_id)
{
	FullTransactionId fxid;
	int64		id;
	int			part;
	LogPartition *lp;
	Relation	rel;
	TupleDesc	desc;
	Datum		values[EV_NATTS];
	bool		nulls[EV_NATTS];
	HeapTuple	tup;
	TimestampTz now = GetCurrentTimestamp();

	if (!log_cache.valid)
		load_log_cache();

	fxid = GetTopFullTransactionId();
	id = nextval_internal(log_cache.seqid, false);

	part = (int) ((id >> OUTBOX_GENERATION_BITS) & (OUTBOX_PARTITIONS - 1));
	rel = table_open(log_cache.parts[part].relid, RowExclusiveLock);
	/* Opening may have processed invalidations: reload under the lock. */
	if (!log_cache.valid)
	{
		table_close(rel, RowExclusiveLock);
		load_log_cache();
		rel = table_open(log_cache.parts[part].relid, RowExclusiveLock);
	}
	lp = &log_cache.parts[part];
	desc = RelationGetDescr(rel);
	if (desc->natts != EV_NATTS || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox log \"%s\" has been altered",
						RelationGetRelationName(rel)),
				 errdetail("outbox_saga expects the columns of the installed extension script in a heap table."),
				 errhint("Reinstall the extension.")));

	OutboxUuidV7(now, event_id);

	memset(nulls, false, sizeof(nulls));
	values[EV_ID] = Int64GetDatum(id);
	values[EV_EVENT_ID] = UUIDPGetDatum(event_id);
	values[EV_TOPIC] = PointerGetDatum(ev->topic);
	values[EV_AGGREGATE_ID] = PointerGetDatum(ev->aggregate_id);
	nulls[EV_AGGREGATE_ID] = (ev->aggregate_id == NULL);
	values[EV_EVENT_TYPE] = PointerGetDatum(ev->event_type);
	values[EV_PAYLOAD] = JsonbPGetDatum(ev->payload);
	values[EV_HEADERS] = JsonbPGetDatum(ev->headers);
	values[EV_CREATED_AT] = TimestampTzGetDatum(now);
	values[EV_DELIVER_AFTER] = TimestampTzGetDatum(ev->deliver_after);
	nulls[EV_DELIVER_AFTER] = !ev->has_deliver_after;
	values[EV_TXID] = FullTransactionIdGetDatum(fxid);

	tup = heap_form_tuple(desc, values, nulls);
	simple_heap_insert(rel, tup);
	LogIndexesInsert(rel, &lp->indexes, tup, values, nulls);

	heap_freetuple(tup);
	table_close(rel, NoLock);
	WakeupNoteEventTopic(ev->topic);
}

/*-------------------------------------------------------------------------
 *
 * capture.c
 *		outbox.capture(): the C trigger that turns row changes into events.
 *
 * THE TRIGGER
 *	outbox.capture() is an AFTER ... FOR EACH ROW trigger.  For every
 *	inserted, updated or deleted row it appends one event to the log with
 *	OutboxAppendEvent(), in the transaction of the statement that changed
 *	the row, as the role that changed it; so the event exists iff that
 *	change commits (G1).  Per row it reads no table, runs no SQL and takes
 *	no lock but the ones OutboxAppendEvent() takes on the log; the first
 *	call after a cache miss (see THE CACHE) reads pg_constraint and, for a
 *	trigger cloned onto a partition, pg_trigger, under AccessShareLock.
 *	Any error aborts the statement that changed the row: a capture that
 *	cannot write its event never lets the change through without it.
 *
 *	An AFTER ROW trigger fires at the end of the statement, while the
 *	transaction still holds the lock on the row it changed (the row is new,
 *	or its old version is locked by the UPDATE or DELETE).  So the trigger
 *	draws its event id (in OutboxAppendEvent()) while holding the changed
 *	row's lock: of two transactions that change one row, the second draws
 *	its id after the first has committed or aborted, and their events are
 *	delivered in commit order (G4, see eventlog.c).
 *
 *	The topic: the table's owner must have the write privilege on it
 *	(topic_acl.c).  That is checked when the capture is defined
 *	(capture_table.c) and, so that a revoke takes effect and hand-made
 *	triggers are covered, when the cached state is first used and after
 *	every change of topic privileges (one integer comparison per row;
 *	check_topic_write()).
 *
 *	Headers: {} (built once), plus "old_aggregate_id" for an UPDATE that
 *	moved the row to another aggregate, plus the transaction's trace
 *	context (outbox_saga.traceparent/.tracestate, checked when they were
 *	set) when one is set; when none is, the only cost is one pointer and
 *	one byte per row (TraceCurrentIsSet).
 *
 *	Crash: the event is a row of the log written in the changing
 *	transaction; after a crash it exists iff that transaction committed.
 *	The trigger keeps nothing but the per-backend cache below and the
 *	last rendering of a date or timestamp (render_datetime()), both
 *	per process and lost with it.
 *
 *	Its arguments are "name=value" strings, split by capture_args.c.  The
 *	payload is {"op", "schema", "table", "new", "old"}; "new" and "old" hold the
 *	row's columns typed exactly as to_jsonb() types them.  "schema",
 *	"table", the default topic, the default event types and the default key
 *	(the primary key) come from the table the trigger was created on: for a
 *	trigger that PostgreSQL cloned onto a partition, that is the
 *	partitioned table the user captured, found by following
 *	pg_trigger.tgparentid up to the top.  Column names given in key=,
 *	ignore= and columns= are looked up in the table's current columns.
 *
 * THE CACHE
 *	Everything that does not depend on the row (parsed arguments, column
 *	numbers, how to convert each column, output functions, names, topic,
 *	event types) lives in a CaptureState, built the first time a trigger
 *	fires in a backend and kept for the life of the backend in a hash
 *	table keyed by (trigger OID, relation OID).  The trigger's FmgrInfo
 *	(and so fn_extra) lives only as long as one statement, so a cache hung
 *	there would be rebuilt by every one-row INSERT; the backend-wide cache
 *	keeps the per-row path free of catalog lookups for every column whose
 *	type is built in.
 *
 *	Invalidation: a relcache invalidation of the firing relation or of the
 *	captured (root) table marks the entry stale.  ALTER TABLE of any kind
 *	(rename, new or dropped columns, type changes, a new primary key),
 *	CREATE [OR REPLACE] TRIGGER, DROP TRIGGER and ATTACH/DETACH PARTITION
 *	all send one.  A pg_namespace invalidation (a renamed schema) marks
 *	every entry stale.  The callbacks only set a flag: a stale state may
 *	still be in use further up the stack, so it is never freed there.  The
 *	next lookup that finds stale entries drops them and moves their memory
 *	under TopTransactionContext, so it is freed when the transaction ends,
 *	after every trigger call that could be using it has returned.  A state
 *	is built in a fresh context under the caller's context and moved under
 *	CacheMemoryContext only once complete, so an error while building
 *	leaves nothing behind; an invalidation that arrives while it is being
 *	built makes the new state serve this one call only.
 *
 * CONVERTING VALUES
 *	to_jsonb() classifies a type on every call (several syscache lookups
 *	per column per row).  For built-in scalar types, whose rendering is
 *	fixed (booleans, numbers, date and timestamps, jsonb, and everything
 *	else built in that to_jsonb renders through its output function as a
 *	string), the classification is done once here and the value is
 *	rendered the same way to_jsonb renders it.  Every other type (json,
 *	arrays, composites, enums, types from extensions and types with a cast
 *	to json) is converted by calling the real to_jsonb (ToJsonbPrepare()
 *	and ToJsonbInvoke() of base/tojsonb.h), so it is exact by
 *	construction.  Two shortcuts give to_jsonb's result without its
 *	detours: text, varchar and char(n) are used as they are (their output
 *	functions return their bytes), and a numeric that is a number is used
 *	as it is (to_jsonb prints it and reads it back).  The regression test
 *	capture_types compares the payload with to_jsonb(row) for every kind of
 *	column, as jsonb and, for scalar columns, as text.
 *
 * BUILDING THE PAYLOAD
 *	Keys are put in jsonb's order once, when the state is built
 *	(column_key_cmp()).  When every column is of a scalar kind (st->flat,
 *	the common case), the payload is built as a JsonbValue tree and
 *	written out in one pass (payload_flat(), base/jsonb_write.c);
 *	otherwise with pushJsonbValue() (payload_pushed()), which is needed to
 *	embed a jsonb container and costs a call per key and value and a sort
 *	per object.
 *
 * MEMORY
 *	Per-row work allocates in the caller's context (the trigger manager's
 *	per-tuple context).  Cached states live in their own contexts under
 *	CacheMemoryContext.
 *
 * capture_table.c holds outbox.capture_table() and outbox.uncapture_table(),
 * which attach and remove the trigger; they check its arguments with
 * CaptureCheckArgs(), the code the trigger runs when it fires.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "base/jsonb_write.h"
#include "base/tojsonb.h"
#include "base/trace_context.h"
#include "events/capture.h"
#include "events/capture_args.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"

PG_FUNCTION_INFO_V1(outbox_saga_capture);

/* How the value of one payload column becomes JSON. */
typedef enum CaptureValueKind
{
	CV_BOOL,					/* JSON boolean */
	CV_INT,						/* int2/int4/int8: JSON number */
	CV_NUMBER,					/* float4/float8/numeric: number, or string
								 * for NaN and infinities */
	CV_DATETIME,				/* date/timestamp/timestamptz: ISO string */
	CV_JSONB,					/* jsonb: embedded as is */
	CV_TEXT,					/* text, varchar, char(n): its bytes as string */
	CV_STRING,					/* other built-in scalar: output as string */
	CV_TO_JSONB					/* anything else: the real to_jsonb() */
} CaptureValueKind;

/* One column of the payload. */
typedef struct CaptureColumn
{
	AttrNumber	attnum;			/* in the firing relation */
	char	   *name;			/* current column name: the JSON key */
	int			namelen;
	CaptureValueKind kind;
	Oid			basetype;		/* type after looking through domains */
	union
	{
		FmgrInfo	output;		/* CV_NUMBER, CV_STRING: output function */
		ToJsonbCall to_jsonb;	/* CV_TO_JSONB */
	}			conv;
} CaptureColumn;

/* One column of the aggregate key. */
typedef struct CaptureKeyColumn
{
	AttrNumber	attnum;			/* in the firing relation */
	FmgrInfo	output;			/* the type's output function */
} CaptureKeyColumn;

/* Everything about one trigger on one relation that no row changes. */
typedef struct CaptureState
{
	MemoryContext cxt;			/* holds this struct and all it points to */
	Oid			rootid;			/* the captured table (the firing relation
								 * unless the trigger is a clone on a
								 * partition) */
	text	   *topic;
	text	   *event_type[3];	/* insert, update, delete */
	char	   *schema;			/* payload "schema": the captured table's */
	char	   *table;			/* payload "table" */
	int			ncolumns;
	CaptureColumn *columns;
	int			nkeys;
	CaptureKeyColumn *keys;
	bool		flat;			/* every column a scalar kind (not CV_JSONB,
								 * CV_TO_JSONB): the payload is built as a
								 * JsonbValue tree (payload_flat()) */
	bool		has_ignore;		/* ignore= given: compare before emitting */
	int			ncompare;
	AttrNumber *compare;		/* the columns not ignored */
	uint64		acl_generation; /* TopicAclGeneration under which the table
								 * owner's write privilege on 'topic' was
								 * last checked; 0: never */
} CaptureState;

/* Cache entry: one per (trigger, firing relation). */
typedef struct CaptureCacheKey
{
	Oid			tgoid;
	Oid			relid;
} CaptureCacheKey;

typedef struct CaptureCacheEntry
{
	CaptureCacheKey key;
	CaptureState *state;
	bool		valid;
} CaptureCacheEntry;

static HTAB *capture_cache = NULL;

/* Counts invalidations seen, to notice one that arrives during a build. */
static uint64 capture_inval_count = 0;

/* Where an error while building a state came from, for errcontext. */
typedef struct BuildContext
{
	bool		for_table;		/* called by capture_table(), not the trigger */
	const char *trigname;
	const char *relname;
	bool		default_topic;	/* checking the table name as topic */
} BuildContext;

/* Event kinds, indexes into CaptureState.event_type. */
#define OP_INSERT	0
#define OP_UPDATE	1
#define OP_DELETE	2

static const char *const op_names[3] = {"insert", "update", "delete"};
static const char *const op_suffixes[3] = {".inserted", ".updated", ".deleted"};

/*
 * capture_relcache_callback
 *		Mark stale every entry for the invalidated relation, whether it
 *		fires on it or names it as the captured table.  InvalidOid means
 *		"every relation".
 */
static void
capture_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	CaptureCacheEntry *entry;

	capture_inval_count++;
	if (capture_cache == NULL)
		return;
	hash_seq_init(&seq, capture_cache);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (!OidIsValid(relid) || entry->key.relid == relid ||
			(entry->state != NULL && entry->state->rootid == relid))
			entry->valid = false;
	}
}

/*
 * capture_namespace_callback
 *		A schema changed (perhaps renamed): every cached schema name may be
 *		stale.  Schemas change rarely, so drop them all.
 */
static void
capture_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	capture_relcache_callback(arg, InvalidOid);
}

/*
 * init_cache
 *		Create the backend's cache and register its invalidation callbacks,
 *		once per backend.
 */
static void
init_cache(void)
{
	HASHCTL		ctl;

	if (capture_cache != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(CaptureCacheKey);
	ctl.entrysize = sizeof(CaptureCacheEntry);
	ctl.hcxt = CacheMemoryContext;
	capture_cache = hash_create("outbox capture trigger cache", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, capture_namespace_callback,
								  (Datum) 0);
}

/*
 * build_error_context
 *		errcontext for errors in a trigger's arguments found while the
 *		trigger fires.
 */
static void
build_error_context(void *arg)
{
	BuildContext *bc = (BuildContext *) arg;

	if (bc->default_topic)
		errcontext("the topic defaults to the name of the captured table \"%s\"; pass a topic",
				   bc->relname);
	else if (!bc->for_table)
		errcontext("arguments of outbox.capture() trigger \"%s\" on table \"%s\"",
				   bc->trigname, bc->relname);
}

/*
 * arg_label
 *		How an error message names a column list: "key=" for the trigger's
 *		argument, "key_columns" for capture_table()'s parameter.
 */
static const char *
arg_label(BuildContext *bc, CaptureArg arg)
{
	if (bc->for_table)
		return arg == CAPTURE_ARG_KEY ? "key_columns" :
			arg == CAPTURE_ARG_IGNORE ? "ignore_columns" : CaptureArgNames[arg];
	return psprintf("%s=", CaptureArgNames[arg]);
}

/*
 * find_column
 *		The attribute number of the live column 'name' of 'desc', or an error
 *		naming the argument that listed it.
 */
static AttrNumber
find_column(BuildContext *bc, TupleDesc desc, const char *name, CaptureArg arg)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" named in %s does not exist in table \"%s\"",
					name, arg_label(bc, arg), bc->relname),
			 bc->for_table ? 0 :
			 errhint("If the column was renamed or dropped, recreate the capture trigger with the current column names (outbox.uncapture_table(), then outbox.capture_table()).")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/*
 * parse_column_list
 *		Resolve the identifier list 'value' (as SplitIdentifierString parses
 *		it: unquoted names down-cased, "quoted" names kept) to attribute
 *		numbers of 'desc'.  An empty list, a syntax error, an unknown column
 *		and a column named twice are errors.  Returns the count; the numbers
 *		are palloc'd into *attnums.
 */
static int
parse_column_list(BuildContext *bc, TupleDesc desc, const char *value,
				  CaptureArg arg, AttrNumber **attnums)
{
	List	   *names = CaptureSplitColumnList(value, arg_label(bc, arg));
	ListCell   *lc;
	int			n = 0;

	*attnums = palloc(sizeof(AttrNumber) * list_length(names));
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		AttrNumber	attnum = find_column(bc, desc, name, arg);
		int			i;

		for (i = 0; i < n; i++)
			if ((*attnums)[i] == attnum)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" is named more than once in %s",
								name, arg_label(bc, arg))));
		(*attnums)[n++] = attnum;
	}
	return n;
}

/*
 * primary_key_names
 *		The column names of the primary key of 'relid', in key order, or NIL
 *		if it has none.  Reads pg_constraint (no lock on the table, so this
 *		works for the captured parent of a partition without locking it).
 */
static List *
primary_key_names(Oid relid)
{
	Relation	conrel;
	SysScanDesc scan;
	ScanKeyData skey;
	HeapTuple	tup;
	List	   *result = NIL;

	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&skey, Anum_pg_constraint_conrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true,
							  NULL, 1, &skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		Datum		d;
		bool		isnull;
		ArrayType  *arr;
		int16	   *keys;
		int			nkeys;
		int			i;

		if (con->contype != CONSTRAINT_PRIMARY)
			continue;
		d = heap_getattr(tup, Anum_pg_constraint_conkey,
						 RelationGetDescr(conrel), &isnull);
		if (isnull)
			elog(ERROR, "null conkey for constraint %u", con->oid);
		arr = DatumGetArrayTypeP(d);
		if (ARR_NDIM(arr) != 1 || ARR_HASNULL(arr) ||
			ARR_ELEMTYPE(arr) != INT2OID)
			elog(ERROR, "conkey is not a 1-D smallint array");
		nkeys = ARR_DIMS(arr)[0];
		keys = (int16 *) ARR_DATA_PTR(arr);
		for (i = 0; i < nkeys; i++)
			result = lappend(result, get_attname(relid, keys[i], false));
		break;
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	return result;
}

/*
 * CaptureTriggerRoot
 *		The relation the user created trigger 'tgoid' on: follow tgparentid
 *		(set on the copies PostgreSQL clones onto partitions) to the top.
 *		If 'parent_tgoid' is not NULL it receives the trigger's own parent
 *		(InvalidOid for a trigger that is not a clone), and '*tgfoid' its
 *		function.
 */
Oid
CaptureTriggerRoot(Oid tgoid, Oid *parent_tgoid, Oid *tgfoid)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	Oid			relid = InvalidOid;
	bool		first = true;

	while (OidIsValid(tgoid))
	{
		ScanKeyData skey;
		SysScanDesc scan;
		HeapTuple	tup;
		Form_pg_trigger trig;

		ScanKeyInit(&skey, Anum_pg_trigger_oid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(tgoid));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1,
								  &skey);
		tup = systable_getnext(scan);
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "could not find trigger %u", tgoid);
		trig = (Form_pg_trigger) GETSTRUCT(tup);
		relid = trig->tgrelid;
		if (first)
		{
			if (parent_tgoid)
				*parent_tgoid = trig->tgparentid;
			if (tgfoid)
				*tgfoid = trig->tgfoid;
			first = false;
		}
		tgoid = trig->tgparentid;
		systable_endscan(scan);
	}
	table_close(tgrel, AccessShareLock);
	return relid;
}

/*
 * init_column
 *		Decide how to convert column 'att' to JSON and look up what that
 *		needs, allocating in the current context (the state's).
 *
 * The built-in kinds reproduce to_jsonb()'s rendering of built-in types:
 * it looks through domains, then renders booleans, numbers, dates,
 * timestamps and jsonb specially, arrays and composites recursively, json
 * and types with a cast to json (only looked for on types that are not
 * built in) by parsing, and all else as the string from the output
 * function.  Every kind that is not rendered here goes to to_jsonb itself.
 */
static void
init_column(CaptureColumn *col, Form_pg_attribute att)
{
	Oid			outfunc;
	bool		isvarlena;

	col->attnum = att->attnum;
	col->name = pstrdup(NameStr(att->attname));
	col->namelen = strlen(col->name);
	col->basetype = getBaseType(att->atttypid);

	switch (col->basetype)
	{
		case BOOLOID:
			col->kind = CV_BOOL;
			return;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			col->kind = CV_INT;
			return;
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			col->kind = CV_NUMBER;
			break;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			col->kind = CV_DATETIME;
			return;
		case JSONBOID:
			col->kind = CV_JSONB;
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			/* their output functions return their bytes as they are */
			col->kind = CV_TEXT;
			return;
		default:
			if (col->basetype < FirstNormalObjectId &&
				col->basetype != JSONOID &&
				!OidIsValid(get_element_type(col->basetype)) &&
				!type_is_rowtype(col->basetype))
				col->kind = CV_STRING;
			else
			{
				/* to_jsonb() looks at the declared type, domain and all */
				col->kind = CV_TO_JSONB;
				ToJsonbPrepare(&col->conv.to_jsonb, att->atttypid,
							   CurrentMemoryContext);
				return;
			}
			break;
	}
	getTypeOutputInfo(col->basetype, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &col->conv.output, CurrentMemoryContext);
}

/*
 * column_key_cmp
 *		qsort comparator putting columns in the order jsonb stores object
 *		keys (shorter first, then bytewise), so that building the payload
 *		finds its keys already sorted.
 */
static int
column_key_cmp(const void *a, const void *b)
{
	const CaptureColumn *ca = (const CaptureColumn *) a;
	const CaptureColumn *cb = (const CaptureColumn *) b;

	if (ca->namelen != cb->namelen)
		return ca->namelen < cb->namelen ? -1 : 1;
	return memcmp(ca->name, cb->name, ca->namelen);
}

/*
 * init_keys
 *		The aggregate key of 'st': the columns of key= ('value'), or of the
 *		captured table's primary key when it is NULL, with their output
 *		functions.  Allocates in the current context (the state's).
 */
static void
init_keys(CaptureState *st, BuildContext *bc, TupleDesc desc, const char *value)
{
	AttrNumber *attnums;
	int			n;
	int			i;

	if (value != NULL)
		n = parse_column_list(bc, desc, value, CAPTURE_ARG_KEY, &attnums);
	else
	{
		List	   *pk = primary_key_names(st->rootid);
		ListCell   *lc;

		if (pk == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s.%s\" has no primary key", st->schema,
							st->table),
					 errdetail("The values of the key columns, joined with \":\", are the aggregate_id of the events."),
					 bc->for_table ?
					 errhint("Name the key columns with key_columns, for example key_columns => '{order_id}'.") :
					 errhint("Name the key columns with the argument key=col[,col].")));
		attnums = palloc(sizeof(AttrNumber) * list_length(pk));
		n = 0;
		foreach(lc, pk)
			attnums[n++] = find_column(bc, desc, (char *) lfirst(lc), CAPTURE_ARG_KEY);
	}
	st->nkeys = n;
	st->keys = palloc0(sizeof(CaptureKeyColumn) * n);
	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnums[i] - 1);
		Oid			outfunc;
		bool		isvarlena;

		st->keys[i].attnum = attnums[i];
		getTypeOutputInfo(att->atttypid, &outfunc, &isvarlena);
		fmgr_info_cxt(outfunc, &st->keys[i].output, CurrentMemoryContext);
	}
}

/*
 * init_compare
 *		ignore= ('value'): the columns an UPDATE must change to be captured,
 *		every live column not in the list.
 */
static void
init_compare(CaptureState *st, BuildContext *bc, TupleDesc desc,
			 const char *value)
{
	AttrNumber *attnums;
	int			n = parse_column_list(bc, desc, value, CAPTURE_ARG_IGNORE, &attnums);
	int			i;

	st->has_ignore = true;
	st->compare = palloc(sizeof(AttrNumber) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		ignored = false;
		int			j;

		if (att->attisdropped)
			continue;
		for (j = 0; j < n; j++)
			if (attnums[j] == att->attnum)
				ignored = true;
		if (!ignored)
			st->compare[st->ncompare++] = att->attnum;
	}
}

/*
 * build_state
 *		Validate the arguments of a capture trigger on 'rel' whose captured
 *		table is 'rootid', and build everything the trigger needs per row.
 *
 * The result is allocated in a new memory context that is a child of the
 * current one; the caller moves it under CacheMemoryContext to keep it or
 * deletes it.  Every mistake in the arguments is an error here, so both
 * the trigger and capture_table() find them the same way.
 */
static CaptureState *
build_state(Relation rel, Oid rootid, const char *trigname,
			int nargs, char **args, bool for_table)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	CaptureState *st;
	TupleDesc	desc = RelationGetDescr(rel);
	const char *values[CAPTURE_ARG_COUNT];
	BuildContext bc;
	ErrorContextCallback errcb;
	char	   *rootname;
	Oid			rootnsp;
	AttrNumber *attnums;
	int			n;
	int			i;
	int			op;

	cxt = AllocSetContextCreate(CurrentMemoryContext,
								"outbox capture trigger state",
								ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);

	st = palloc0(sizeof(CaptureState));
	st->cxt = cxt;
	st->rootid = rootid;

	rootname = get_rel_name(rootid);
	rootnsp = get_rel_namespace(rootid);
	if (rootname == NULL || !OidIsValid(rootnsp))
		elog(ERROR, "cache lookup failed for relation %u", rootid);
	st->table = rootname;
	st->schema = get_namespace_name(rootnsp);
	if (st->schema == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", rootnsp);

	bc.for_table = for_table;
	bc.trigname = trigname;
	bc.relname = rootname;
	bc.default_topic = false;
	errcb.callback = build_error_context;
	errcb.arg = &bc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	CaptureParseArgs(nargs, args, values);

	/* Topic and event types. */
	if (values[CAPTURE_ARG_TOPIC] != NULL)
		st->topic = cstring_to_text(values[CAPTURE_ARG_TOPIC]);
	else
	{
		st->topic = cstring_to_text(rootname);
		bc.default_topic = true;
	}
	OutboxCheckTopic("topic", st->topic);
	bc.default_topic = false;
	for (op = 0; op < 3; op++)
	{
		const char *v = values[CAPTURE_ARG_TYPE_INSERT + op];

		if (v != NULL)
			st->event_type[op] = cstring_to_text(v);
		else
			st->event_type[op] = cstring_to_text(psprintf("%s%s", rootname,
														  op_suffixes[op]));
		OutboxCheckEventType(CaptureArgNames[CAPTURE_ARG_TYPE_INSERT + op],
							 st->event_type[op]);
	}

	/* Aggregate key: key= or the captured table's primary key. */
	init_keys(st, &bc, desc, values[CAPTURE_ARG_KEY]);

	/* Columns of the payload: columns= or every live column. */
	if (values[CAPTURE_ARG_COLUMNS] != NULL)
	{
		n = parse_column_list(&bc, desc, values[CAPTURE_ARG_COLUMNS], CAPTURE_ARG_COLUMNS,
							  &attnums);
		st->columns = palloc0(sizeof(CaptureColumn) * n);
		for (i = 0; i < n; i++)
			init_column(&st->columns[i], TupleDescAttr(desc, attnums[i] - 1));
		st->ncolumns = n;
	}
	else
	{
		st->columns = palloc0(sizeof(CaptureColumn) * desc->natts);
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				init_column(&st->columns[st->ncolumns++], att);
		}
	}

	qsort(st->columns, st->ncolumns, sizeof(CaptureColumn), column_key_cmp);
	st->flat = true;
	for (i = 0; i < st->ncolumns; i++)
		if (st->columns[i].kind == CV_JSONB || st->columns[i].kind == CV_TO_JSONB)
			st->flat = false;

	/* ignore=: the columns an UPDATE must change to be captured. */
	if (values[CAPTURE_ARG_IGNORE] != NULL)
		init_compare(st, &bc, desc, values[CAPTURE_ARG_IGNORE]);

	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(oldcxt);
	return st;
}

/*
 * CaptureCheckArgs
 *		For capture_table(): raise the error the capture trigger 'trigname'
 *		with these arguments would raise when it fires on 'rel' (which must
 *		be the table it is created on), or return if it would fire.
 */
void
CaptureCheckArgs(Relation rel, const char *trigname, int nargs, char **args)
{
	CaptureState *st = build_state(rel, RelationGetRelid(rel), trigname,
								   nargs, args, true);

	MemoryContextDelete(st->cxt);
}

/*
 * get_state
 *		The cached state of the trigger firing in 'td', built if needed.
 */
static CaptureState *
get_state(TriggerData *td)
{
	CaptureCacheKey key;
	CaptureCacheEntry *entry;
	CaptureState *st;
	HASH_SEQ_STATUS seq;
	uint64		inval_before;
	Oid			rootid;

	init_cache();
	memset(&key, 0, sizeof(key));
	key.tgoid = td->tg_trigger->tgoid;
	key.relid = RelationGetRelid(td->tg_relation);

	entry = hash_search(capture_cache, &key, HASH_FIND, NULL);
	if (entry != NULL && entry->valid)
		return entry->state;

	/*
	 * Slow path.  Drop every stale entry; its state may still be used by a
	 * call further up the stack, so it is freed at the end of the
	 * transaction rather than now.
	 */
	hash_seq_init(&seq, capture_cache);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (entry->valid)
			continue;
		if (entry->state != NULL)
			MemoryContextSetParent(entry->state->cxt, TopTransactionContext);
		hash_search(capture_cache, &entry->key, HASH_REMOVE, NULL);
	}

	inval_before = capture_inval_count;
	rootid = td->tg_trigger->tgisclone ?
		CaptureTriggerRoot(key.tgoid, NULL, NULL) : key.relid;
	st = build_state(td->tg_relation, rootid, td->tg_trigger->tgname,
					 td->tg_trigger->tgnargs, td->tg_trigger->tgargs, false);
	MemoryContextSetParent(st->cxt, CacheMemoryContext);

	entry = hash_search(capture_cache, &key, HASH_ENTER, NULL);
	entry->state = st;
	/* An invalidation during the build: use the state for this call only. */
	entry->valid = (capture_inval_count == inval_before);
	return st;
}

/*
 * push_key / push_null
 *		Add an object key; add a JSON null as the value of the current key.
 */
static void
push_key(JsonbParseState **ps, const char *key, int len)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = len;
	pushJsonbValue(ps, WJB_KEY, &k);
}

static void
push_null(JsonbParseState **ps)
{
	JsonbValue	v;

	v.type = jbvNull;
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/*
 * push_jsonb
 *		Add the jsonb value 'jb' as the value of the current key.
 */
static void
push_jsonb(JsonbParseState **ps, Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, &v))
			elog(ERROR, "could not extract jsonb scalar");
	}
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/*
 * check_string_length
 *		jsonb's limit on one string (to_jsonb raises the same error).
 */
static void
check_string_length(int len)
{
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("string too long to represent as jsonb string"),
				 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
						   JENTRY_OFFLENMASK)));
}

/*
 * render_datetime
 *		JsonEncodeDateTime() of a date, timestamp or timestamptz, in the
 *		caller's context.  A row's timestamps are often one value
 *		(created_at and updated_at both DEFAULT now(), and every row of a
 *		transaction gets the same now()), so the last rendering is kept and
 *		copied when the value, its type and the session's time zone are the
 *		same: the text depends on nothing else (always ISO 8601, whatever
 *		DateStyle says).
 */
static char *
render_datetime(Datum value, Oid typid)
{
	static Oid	last_type = InvalidOid;
	static Datum last_value;
	static pg_tz *last_zone;
	static char last_text[MAXDATELEN + 1];

	if (typid != last_type || value != last_value || session_timezone != last_zone)
	{
		/* invalid until the rendering below has succeeded */
		last_type = InvalidOid;
		JsonEncodeDateTime(last_text, value, typid, NULL);
		last_value = value;
		last_zone = session_timezone;
		last_type = typid;
	}
	return pstrdup(last_text);
}

/*
 * column_scalar
 *		Set *v to the value of one column of a scalar kind (every kind but
 *		CV_JSONB and CV_TO_JSONB), typed as to_jsonb() types it (see
 *		init_column()).  Strings may point into 'value' (a text value is
 *		used in place, not copied).
 */
static void
column_scalar(CaptureColumn *col, Datum value, bool isnull, JsonbValue *v)
{
	char	   *str;
	int64		i;

	if (isnull)
	{
		v->type = jbvNull;
		return;
	}

	switch (col->kind)
	{
		case CV_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(value);
			return;
		case CV_INT:
			if (col->basetype == INT2OID)
				i = DatumGetInt16(value);
			else if (col->basetype == INT4OID)
				i = DatumGetInt32(value);
			else
				i = DatumGetInt64(value);
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(i);
			return;
		case CV_NUMBER:
			/*
			 * As to_jsonb: a number unless it is NaN or an infinity.
			 * to_jsonb reads a numeric back from its output, which gives
			 * the value it started from, display scale and all; so a
			 * numeric that is a number is used as it is.
			 */
			if (col->basetype == NUMERICOID)
			{
				Numeric		num = DatumGetNumeric(value);

				if (!numeric_is_nan(num) && !numeric_is_inf(num))
				{
					v->type = jbvNumeric;
					v->val.numeric = num;
					return;
				}
			}
			str = OutputFunctionCall(&col->conv.output, value);
			if (strchr(str, 'N') == NULL && strchr(str, 'n') == NULL)
			{
				v->type = jbvNumeric;
				v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																	 CStringGetDatum(str),
																	 ObjectIdGetDatum(InvalidOid),
																	 Int32GetDatum(-1)));
			}
			else
			{
				v->type = jbvString;
				v->val.string.val = str;
				v->val.string.len = strlen(str);
			}
			return;
		case CV_DATETIME:
			v->type = jbvString;
			v->val.string.val = render_datetime(value, col->basetype);
			v->val.string.len = strlen(v->val.string.val);
			return;
		case CV_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
				check_string_length(v->val.string.len);
				return;
			}
		case CV_STRING:
			str = OutputFunctionCall(&col->conv.output, value);
			v->type = jbvString;
			v->val.string.val = str;
			v->val.string.len = strlen(str);
			check_string_length(v->val.string.len);
			return;
		default:
			elog(ERROR, "capture value kind %d is not a scalar kind", (int) col->kind);
	}
}

/*
 * push_column
 *		Add the value of one column, typed as to_jsonb() types it.
 */
static void
push_column(JsonbParseState **ps, CaptureColumn *col, Datum value, bool isnull)
{
	JsonbValue	v;

	if (!isnull && col->kind == CV_JSONB)
		push_jsonb(ps, DatumGetJsonbP(value));
	else if (!isnull && col->kind == CV_TO_JSONB)
		push_jsonb(ps, DatumGetJsonbP(ToJsonbInvoke(&col->conv.to_jsonb, value)));
	else
	{
		column_scalar(col, value, isnull, &v);
		pushJsonbValue(ps, WJB_VALUE, &v);
	}
}

/*
 * push_string_pair
 *		Add "key": "value" (or "key": null when 'value' is NULL).
 */
static void
push_string_pair(JsonbParseState **ps, const char *key, const char *value)
{
	JsonbValue	v;

	push_key(ps, key, strlen(key));
	if (value == NULL)
	{
		push_null(ps);
		return;
	}
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/*
 * push_row
 *		Add "name": {column: value, ...} for the row in 'slot', or
 *		"name": null when there is no such row.
 */
static void
push_row(JsonbParseState **ps, CaptureState *st, const char *name,
		 TupleTableSlot *slot)
{
	int			i;

	push_key(ps, name, strlen(name));
	if (slot == NULL)
	{
		push_null(ps);
		return;
	}

	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < st->ncolumns; i++)
	{
		CaptureColumn *col = &st->columns[i];

		push_key(ps, col->name, col->namelen);
		push_column(ps, col, slot->tts_values[col->attnum - 1],
					slot->tts_isnull[col->attnum - 1]);
	}
	pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/*
 * set_key / set_string_pair
 *		Fill a JsonbPair of a payload built as a tree (payload_flat()):
 *		its key, or its key and a string value (null when NULL).
 */
static void
set_key(JsonbPair *pair, const char *key, int order)
{
	pair->key.type = jbvString;
	pair->key.val.string.val = (char *) key;
	pair->key.val.string.len = strlen(key);
	pair->order = order;
}

static void
set_string_pair(JsonbPair *pair, const char *key, int order, const char *value)
{
	set_key(pair, key, order);
	if (value == NULL)
		pair->value.type = jbvNull;
	else
	{
		pair->value.type = jbvString;
		pair->value.val.string.val = (char *) value;
		pair->value.val.string.len = strlen(value);
	}
}

/*
 * flat_row
 *		*v: the object {column: value, ...} of the row in 'slot', or JSON
 *		null when there is no such row; for a state whose columns are all
 *		of scalar kinds (st->flat).
 */
static void
flat_row(CaptureState *st, TupleTableSlot *slot, JsonbValue *v)
{
	JsonbPair  *pairs;
	int			i;

	if (slot == NULL)
	{
		v->type = jbvNull;
		return;
	}
	pairs = palloc(sizeof(JsonbPair) * st->ncolumns);
	for (i = 0; i < st->ncolumns; i++)
	{
		CaptureColumn *col = &st->columns[i];

		pairs[i].key.type = jbvString;
		pairs[i].key.val.string.val = col->name;
		pairs[i].key.val.string.len = col->namelen;
		pairs[i].order = i;
		column_scalar(col, slot->tts_values[col->attnum - 1],
					  slot->tts_isnull[col->attnum - 1], &pairs[i].value);
	}
	v->type = jbvObject;
	v->val.object.nPairs = st->ncolumns;
	v->val.object.pairs = pairs;
}

/*
 * payload_flat
 *		The payload of a state whose columns are all of scalar kinds, built
 *		as a JsonbValue tree and written out once (JsonbWriteSortedObject):
 *		no pushJsonbValue() per key and value, and no sort, because the tree
 *		is built in jsonb's key order (column_key_cmp(); column names are
 *		unique).  A jsonb column may hold a container, which only
 *		pushJsonbValue() unpacks into a tree, so such states use
 *		payload_pushed().
 */
static Jsonb *
payload_flat(CaptureState *st, int op, TupleTableSlot *oldslot,
			 TupleTableSlot *newslot)
{
	JsonbPair	pairs[5];
	JsonbValue	root;

	set_string_pair(&pairs[0], "op", 0, op_names[op]);
	set_key(&pairs[1], "new", 1);
	flat_row(st, newslot, &pairs[1].value);
	set_key(&pairs[2], "old", 2);
	flat_row(st, oldslot, &pairs[2].value);
	set_string_pair(&pairs[3], "table", 3, st->table);
	set_string_pair(&pairs[4], "schema", 4, st->schema);
	root.type = jbvObject;
	root.val.object.nPairs = lengthof(pairs);
	root.val.object.pairs = pairs;
	return JsonbWriteSortedObject(&root);
}

/*
 * payload_pushed
 *		The payload of any state, built with pushJsonbValue(), which embeds
 *		jsonb containers.  The keys come in jsonb's order here too.
 */
static Jsonb *
payload_pushed(CaptureState *st, int op, TupleTableSlot *oldslot,
			   TupleTableSlot *newslot)
{
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_string_pair(&ps, "op", op_names[op]);
	push_row(&ps, st, "new", newslot);
	push_row(&ps, st, "old", oldslot);
	push_string_pair(&ps, "table", st->table);
	push_string_pair(&ps, "schema", st->schema);
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * aggregate_id
 *		The key columns' values of the row in 'slot' (their output functions'
 *		text), joined with ':'.  NULL if any of them is NULL, or if the
 *		result is empty (a one-column key whose value is ''): the event then
 *		belongs to no aggregate.
 */
static char *
aggregate_id(CaptureState *st, TupleTableSlot *slot)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < st->nkeys; i++)
	{
		AttrNumber	attnum = st->keys[i].attnum;

		if (slot->tts_isnull[attnum - 1])
			return NULL;
		if (i > 0)
			appendStringInfoChar(&buf, ':');
		appendStringInfoString(&buf,
							   OutputFunctionCall(&st->keys[i].output,
												  slot->tts_values[attnum - 1]));
	}
	return buf.len > 0 ? buf.data : NULL;
}

/*
 * empty_headers
 *		The headers of nearly every captured event, '{}', built once per
 *		backend.  They need no OutboxCheckHeaders(): an empty object has no
 *		value to check, and outbox_saga.max_payload_size is at least 1 kB.
 */
static Jsonb *
empty_headers(void)
{
	static Jsonb *headers = NULL;

	if (headers == NULL)
	{
		JsonbParseState *ps = NULL;
		Jsonb	   *jb;

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		jb = JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
		headers = MemoryContextAlloc(TopMemoryContext, VARSIZE(jb));
		memcpy(headers, jb, VARSIZE(jb));
	}
	return headers;
}

/*
 * old_aggregate_headers
 *		{"old_aggregate_id": old_agg}: the headers of an UPDATE that moved
 *		the row to another aggregate.
 */
static Jsonb *
old_aggregate_headers(const char *old_agg)
{
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_string_pair(&ps, "old_aggregate_id", old_agg);
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * update_is_captured
 *		With ignore=: does the UPDATE from 'oldslot' to 'newslot' change any
 *		column that is not ignored?  Values are compared by their stored
 *		image (datum_image_eq), so an unchanged TOASTed value compares equal
 *		without being rendered.
 */
static bool
update_is_captured(CaptureState *st, TupleDesc desc,
				   TupleTableSlot *oldslot, TupleTableSlot *newslot)
{
	int			i;

	for (i = 0; i < st->ncompare; i++)
	{
		int			off = st->compare[i] - 1;
		Form_pg_attribute att = TupleDescAttr(desc, off);
		bool		oldnull = oldslot->tts_isnull[off];
		bool		newnull = newslot->tts_isnull[off];

		if (oldnull != newnull)
			return true;
		if (!oldnull &&
			!datum_image_eq(oldslot->tts_values[off], newslot->tts_values[off],
							att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/*
 * check_topic_write
 *		The events of a captured table are written for its owner, who must
 *		have the write privilege on the topic (topic_acl.c).  Checked when
 *		the state is new and after every change of topics, grants or roles
 *		(TopicAclGeneration), never per row otherwise: a revoke makes the
 *		table's changes fail (42501) instead of filling a topic the owner may
 *		no longer write.  A trigger made by hand, not by capture_table(),
 *		is checked here first.
 */
static void
check_topic_write(CaptureState *st, Relation rel)
{
	uint64		generation = TopicAclGeneration;

	TopicAclRequire(rel->rd_rel->relowner, st->topic, TOPIC_WRITE,
					"Changes of a captured table are written as events for the table's owner.");
	st->acl_generation = generation;
}

/*
 * outbox.capture() RETURNS trigger
 *		AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW: append one event
 *		describing the row change.  See the file header.
 */
Datum
outbox_saga_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	CaptureState *st;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	OutboxEventData ev;
	pg_uuid_t	event_id;
	char	   *agg;
	char	   *old_agg = NULL;
	int			op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox.capture() was not called by the trigger manager")));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox.capture() must be fired FOR EACH ROW"),
				 errdetail("Trigger \"%s\" on table \"%s\" is a statement-level trigger.",
						   td->tg_trigger->tgname,
						   RelationGetRelationName(td->tg_relation)),
				 errhint("Create the trigger with outbox.capture_table(), or as AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox.capture() must be fired AFTER the row change"),
				 TRIGGER_FIRED_BEFORE(td->tg_event) ?
				 errdetail("Trigger \"%s\" on \"%s\" is a BEFORE trigger.",
						   td->tg_trigger->tgname,
						   RelationGetRelationName(td->tg_relation)) :
				 errdetail("Trigger \"%s\" on \"%s\" is an INSTEAD OF trigger.",
						   td->tg_trigger->tgname,
						   RelationGetRelationName(td->tg_relation)),
				 errhint("Create the trigger with outbox.capture_table(), or as AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.")));

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		op = OP_INSERT;
		newslot = td->tg_trigslot;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		op = OP_UPDATE;
		oldslot = td->tg_trigslot;
		newslot = td->tg_newslot;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		op = OP_DELETE;
		oldslot = td->tg_trigslot;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox.capture() must be fired by INSERT, UPDATE or DELETE")));

	st = get_state(td);
	if (st->acl_generation != TopicAclGeneration)
		check_topic_write(st, td->tg_relation);

	if (oldslot)
		slot_getallattrs(oldslot);
	if (newslot)
		slot_getallattrs(newslot);

	if (op == OP_UPDATE && st->has_ignore &&
		!update_is_captured(st, RelationGetDescr(td->tg_relation),
							oldslot, newslot))
		return PointerGetDatum(NULL);

	/* The payload, its keys in jsonb's order (see column_key_cmp()). */
	ev.payload = st->flat ? payload_flat(st, op, oldslot, newslot) :
		payload_pushed(st, op, oldslot, newslot);

	/* The aggregate; an UPDATE that moves the row to another one says so. */
	agg = aggregate_id(st, newslot ? newslot : oldslot);
	if (op == OP_UPDATE)
	{
		old_agg = aggregate_id(st, oldslot);
		if (old_agg != NULL && agg != NULL && strcmp(old_agg, agg) == 0)
			old_agg = NULL;
	}

	ev.topic = st->topic;
	ev.event_type = st->event_type[op];
	ev.aggregate_id = agg ? cstring_to_text(agg) : NULL;
	/* The trace context: one pointer and one byte when none is set. */
	if (old_agg != NULL)
		ev.headers = TraceCurrentIsSet() ?
			TraceMerge(old_aggregate_headers(old_agg), TraceCurrentHeaders(), true) :
			old_aggregate_headers(old_agg);
	else
		ev.headers = TraceCurrentIsSet() ? TraceCurrentHeaders() : empty_headers();
	ev.has_deliver_after = false;
	ev.deliver_after = 0;

	OutboxCheckAggregateId(ev.aggregate_id);
	OutboxCheckPayload(ev.payload);
	if (old_agg != NULL)
		OutboxCheckHeaders(ev.headers);
	OutboxAppendEvent(&ev, &event_id);

	return PointerGetDatum(NULL);
}

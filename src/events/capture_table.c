/*-------------------------------------------------------------------------
 *
 * capture_table.c
 *		outbox.capture_table() and outbox.uncapture_table(): the SQL API that
 *		attaches the capture trigger (capture.c) to a table and removes it.
 *
 * Both run as the caller (SECURITY INVOKER), in the caller's transaction:
 * CREATE TRIGGER and DROP TRIGGER check their privileges.  They validate
 * everything before changing anything (the trigger's arguments with the
 * same code the trigger runs when it fires, CaptureCheckArgs()), build the
 * DDL with every identifier and literal quoted, and run it through SPI.
 * The extension's own tables (schemas outbox and saga, members of the
 * extension) are refused (0A000).
 *
 * TOPICS
 *	capture_table() checks that the table's owner, whose events the trigger
 *	writes, and the caller may write the topic (topic_acl.c), creating it
 *	for the table's owner if nobody owns it yet; a topic that another role
 *	owns is refused (42501), also when it is only the default (the table's
 *	name).  The trigger checks the owner's write privilege again when it
 *	first fires in a session and after every change of the topic grants
 *	(capture.c), so a later revoke makes writes to the table fail rather
 *	than go on filling the topic.
 *
 * LOCKS
 *	capture_table() takes SHARE ROW EXCLUSIVE on the table (and on every
 *	partition of a partitioned table), the lock CREATE TRIGGER takes, after
 *	checking the TRIGGER privilege, and holds it to the end of the
 *	transaction, so no concurrent capture_table() can slip a second capture
 *	trigger in between the checks and the CREATE TRIGGER.  uncapture_table()
 *	takes the locks of DROP TRIGGER.  The catalogs are read under ACCESS
 *	SHARE.
 *
 * CRASH
 *	The trigger exists iff the transaction that created it commits; there
 *	is no other state.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/relation.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/capture.h"
#include "events/topic_acl.h"

PG_FUNCTION_INFO_V1(outbox_saga_capture_table);
PG_FUNCTION_INFO_V1(outbox_saga_uncapture_table);

/* The name of the trigger capture_table() creates. */
#define CAPTURE_TRIGGER_NAME	"outbox_capture"

/* The operations a capture trigger can fire on, in CREATE TRIGGER's order. */
#define CAPTURE_NOPS	3
static const char *const op_keywords[CAPTURE_NOPS] = {"INSERT", "UPDATE", "DELETE"};

/*
 * text_array_elements
 *		The elements of a text[] argument as C strings; a NULL element is an
 *		error naming the parameter.
 */
static int
text_array_elements(ArrayType *arr, const char *param, char ***result)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*result = palloc(sizeof(char *) * (n > 0 ? n : 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", param)));
		(*result)[i] = TextDatumGetCString(elems[i]);
	}
	return n;
}

/*
 * column_list_arg
 *		Build "name=col,col" from a text[] of column names, quoting each as
 *		an identifier so the trigger parses back exactly these names.
 */
static char *
column_list_arg(const char *name, ArrayType *arr, const char *param)
{
	char	  **cols;
	int			n = text_array_elements(arr, param, &cols);
	StringInfoData buf;
	int			i;

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must name at least one column", param),
				 strcmp(param, "key_columns") == 0 ?
				 errhint("Pass NULL to use the primary key.") :
				 errhint("Pass NULL to ignore no column.")));
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s=", name);
	for (i = 0; i < n; i++)
	{
		if (cols[i][0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain empty names", param)));
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, quote_identifier(cols[i]));
	}
	return buf.data;
}

/*
 * capture_function_oid
 *		The OID of outbox.capture().
 */
static Oid
capture_function_oid(void)
{
	Oid			noargs[1] = {InvalidOid};

	return LookupFuncName(list_make2(makeString("outbox"),
									 makeString("capture")),
						  0, noargs, false);
}

/*
 * run_ddl
 *		Run one utility statement through SPI, as the caller: through the
 *		whole utility path (permission checks, event triggers, hooks), as if
 *		the caller had typed it.  Not an SpiStatement: a utility statement
 *		takes no parameters, so its text carries the (quoted) table name and
 *		changes from call to call; nothing would be gained by keeping it.
 */
static void
run_ddl(const char *sql)
{
	int			rc;

	SpiConnect();
	rc = SPI_execute(sql, false, 0);
	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
	SpiFinish();
}

/*
 * check_relkind
 *		Only tables, partitioned tables and foreign tables can carry an
 *		AFTER ... FOR EACH ROW trigger.
 */
static void
check_relkind(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("Only tables, partitioned tables and foreign tables can be captured.")));
}

/*
 * check_not_extension_table
 *		The extension's own tables (anything in the schemas outbox and saga,
 *		or a member of the extension) are never captured: capturing the log
 *		or the state tables feeds events back into themselves and copies
 *		unmasked destination configs into payloads.
 */
static void
check_not_extension_table(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *nspname = get_namespace_name(nsp);
	Oid			ext = get_extension_oid("outbox_saga", true);

	if ((nspname != NULL &&
		 (strcmp(nspname, "outbox") == 0 || strcmp(nspname, "saga") == 0)) ||
		(OidIsValid(ext) &&
		 getExtensionOfObject(RelationRelationId, relid) == ext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" belongs to outbox_saga and cannot be captured",
						get_rel_name(relid)),
				 errdetail("The tables of the schemas outbox and saga, and every table of the extension, are its own state.")));
}

/*
 * parse_operations
 *		The operations argument of capture_table(): a non-empty list of
 *		INSERT, UPDATE and DELETE in any case, each may be repeated.  Sets
 *		ops[i] for each op_keywords[i] named.
 */
static void
parse_operations(ArrayType *arr, bool *ops)
{
	char	  **names;
	int			n = text_array_elements(arr, "operations", &names);
	int			i;

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("operations must not be empty"),
				 errhint("Pass some of INSERT, UPDATE and DELETE.")));
	for (i = 0; i < n; i++)
	{
		int			op;

		for (op = 0; op < CAPTURE_NOPS; op++)
			if (pg_strcasecmp(names[i], op_keywords[op]) == 0)
				break;
		if (op == CAPTURE_NOPS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown operation \"%s\"", names[i]),
					 errhint("Operations are INSERT, UPDATE and DELETE.")));
		ops[op] = true;
	}
}

/*
 * check_not_captured
 *		Refuse to capture 'rel' (locked by the caller) a second time: a
 *		trigger of our name, any trigger executing outbox.capture() (one made
 *		by hand would write every event twice), or, on a partitioned table,
 *		a partition captured on its own (CREATE TRIGGER would refuse it too,
 *		without saying why).  Locks the partitions as CREATE TRIGGER does.
 */
static void
check_not_captured(Relation rel, Oid capture_oid)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			tgoid = get_trigger_oid(relid, CAPTURE_TRIGGER_NAME, true);
	int			i;

	if (OidIsValid(tgoid))
	{
		Oid			parent = InvalidOid;
		Oid			tgfoid = InvalidOid;
		Oid			root = CaptureTriggerRoot(tgoid, &parent, &tgfoid);

		if (tgfoid != capture_oid)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" already has a trigger named \"%s\"",
							RelationGetRelationName(rel), CAPTURE_TRIGGER_NAME),
					 errdetail("That trigger does not execute outbox.capture()."),
					 errhint("Rename or drop that trigger first.")));
		if (OidIsValid(parent))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" is already captured through its partitioned table \"%s\"",
							RelationGetRelationName(rel), get_rel_name(root)),
					 errhint("To change its capture, call outbox.uncapture_table() on \"%s\" first.",
							 get_rel_name(root))));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already captured",
						RelationGetRelationName(rel)),
				 errdetail("It has a trigger named \"%s\".", CAPTURE_TRIGGER_NAME),
				 errhint("To change its capture, call outbox.uncapture_table() first.")));
	}

	for (i = 0; rel->trigdesc != NULL && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *trig = &rel->trigdesc->triggers[i];

		if (trig->tgfoid == capture_oid)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" is already captured by trigger \"%s\"",
							RelationGetRelationName(rel), trig->tgname),
					 errdetail("A second capture trigger would write every event twice."),
					 errhint("Drop trigger \"%s\" first, or create further capture triggers with CREATE TRIGGER.",
							 trig->tgname)));
	}

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		List	   *children = find_all_inheritors(relid, ShareRowExclusiveLock,
												   NULL);
		ListCell   *lc;

		foreach(lc, children)
		{
			Oid			child = lfirst_oid(lc);

			if (child != relid &&
				OidIsValid(get_trigger_oid(child, CAPTURE_TRIGGER_NAME, true)))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("partition \"%s\" of table \"%s\" is already captured",
								get_rel_name(child), RelationGetRelationName(rel)),
						 errhint("Capturing a partitioned table captures all its partitions; call outbox.uncapture_table() on \"%s\" first.",
								 get_rel_name(child))));
		}
	}
}

/*
 * check_topic_writable
 *		The table's owner (the role whose events the trigger writes) and the
 *		caller must both have the write privilege on the capture's topic:
 *		'topic' (the topic= argument), or the table's name by default.  A
 *		topic nobody owns yet becomes the table owner's.
 */
static void
check_topic_writable(Relation rel, const char *topic)
{
	Oid			owner = rel->rd_rel->relowner;
	const char *relname = RelationGetRelationName(rel);
	text	   *t = cstring_to_text(topic ? topic : relname);
	char	   *hint = NULL;

	if (topic == NULL)
		hint = psprintf("The topic defaults to the name of the table; pass another one "
						"(e.g. topic => '%s.%s'), or ask the owner of topic \"%s\" to "
						"grant write with outbox.grant_topic().",
						get_namespace_name(RelationGetNamespace(rel)), relname, relname);
	TopicAclRequire(owner, t, TOPIC_WRITE, hint);
	if (GetUserId() != owner)
		TopicAclRequire(GetUserId(), t, TOPIC_WRITE, hint);
}

/*
 * create_trigger_sql
 *		CREATE TRIGGER outbox_capture AFTER <ops> ON <rel> FOR EACH ROW
 *		EXECUTE FUNCTION outbox.capture(<args>), every name and argument
 *		quoted.
 */
static char *
create_trigger_sql(Relation rel, const bool *ops, int nargs, char **args)
{
	StringInfoData sql;
	bool		first = true;
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TRIGGER %s AFTER ",
					 quote_identifier(CAPTURE_TRIGGER_NAME));
	for (i = 0; i < CAPTURE_NOPS; i++)
	{
		if (!ops[i])
			continue;
		if (!first)
			appendStringInfoString(&sql, " OR ");
		appendStringInfoString(&sql, op_keywords[i]);
		first = false;
	}
	appendStringInfo(&sql, " ON %s FOR EACH ROW EXECUTE FUNCTION outbox.capture(",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	for (i = 0; i < nargs; i++)
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "",
						 quote_literal_cstr(args[i]));
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * outbox.capture_table(tbl regclass, topic text, key_columns text[],
 *						operations text[], ignore_columns text[]) RETURNS text
 *		Create the capture trigger "outbox_capture" on 'tbl' and return its
 *		name.
 *
 * Every input is checked first, including the trigger arguments it builds
 * (with the same code the trigger runs when it fires), so a mistake is an
 * error and creates nothing.  Requires the TRIGGER privilege on the table
 * and EXECUTE on outbox.capture(), as CREATE TRIGGER does, and the write
 * privilege on the topic (check_topic_writable).
 */
Datum
outbox_saga_capture_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	AclResult	aclresult;
	char	   *args[3];		/* topic=, key=, ignore= */
	int			nargs = 0;
	bool		ops[CAPTURE_NOPS] = {false, false, false};
	char	   *sql;

	SqlRequireArg(fcinfo, 0, "tbl");
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operations must not be null"),
				 errhint("Pass some of INSERT, UPDATE and DELETE.")));
	relid = PG_GETARG_OID(0);
	parse_operations(PG_GETARG_ARRAYTYPE_P(3), ops);

	/* The trigger's arguments. */
	if (!PG_ARGISNULL(1))
		args[nargs++] = psprintf("topic=%s", TextDatumGetCString(PG_GETARG_DATUM(1)));
	if (!PG_ARGISNULL(2))
		args[nargs++] = column_list_arg("key", PG_GETARG_ARRAYTYPE_P(2),
										"key_columns");
	if (!PG_ARGISNULL(4))
		args[nargs++] = column_list_arg("ignore", PG_GETARG_ARRAYTYPE_P(4),
										"ignore_columns");

	/* Privilege first, so that nobody else can lock the table. */
	check_relkind(relid);
	check_not_extension_table(relid);
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_TRIGGER);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));

	/* The lock CREATE TRIGGER takes, held from here to the end. */
	rel = relation_open(relid, ShareRowExclusiveLock);
	check_not_captured(rel, capture_function_oid());

	/* Everything the trigger will check when it fires, checked now. */
	CaptureCheckArgs(rel, CAPTURE_TRIGGER_NAME, nargs, args);
	check_topic_writable(rel, PG_ARGISNULL(1) ? NULL :
						 TextDatumGetCString(PG_GETARG_DATUM(1)));

	sql = create_trigger_sql(rel, ops, nargs, args);
	relation_close(rel, NoLock);
	run_ddl(sql);

	PG_RETURN_TEXT_P(cstring_to_text(CAPTURE_TRIGGER_NAME));
}

/*
 * outbox.uncapture_table(tbl regclass) RETURNS void
 *		Drop the capture trigger that capture_table() created on 'tbl'.
 *
 * An error if the table has no such trigger, if its trigger was inherited
 * from a captured partitioned table (uncapture that one instead), or if a
 * trigger of that name is not a capture trigger.  DROP TRIGGER checks that
 * the caller owns the table.
 */
Datum
outbox_saga_uncapture_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			tgoid;
	Oid			parent = InvalidOid;
	Oid			tgfoid = InvalidOid;
	Oid			root;
	char	   *relname;

	SqlRequireArg(fcinfo, 0, "tbl");
	relid = PG_GETARG_OID(0);
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

	tgoid = get_trigger_oid(relid, CAPTURE_TRIGGER_NAME, true);
	if (!OidIsValid(tgoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not captured", relname),
				 errdetail("It has no trigger named \"%s\".", CAPTURE_TRIGGER_NAME)));
	root = CaptureTriggerRoot(tgoid, &parent, &tgfoid);
	if (tgfoid != capture_function_oid())
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("trigger \"%s\" on table \"%s\" is not a capture trigger",
						CAPTURE_TRIGGER_NAME, relname),
				 errdetail("It does not execute outbox.capture(), so outbox.uncapture_table() leaves it alone.")));
	if (OidIsValid(parent))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is captured through its partitioned table \"%s\"",
						relname, get_rel_name(root)),
				 errhint("Call outbox.uncapture_table() on \"%s\" to stop capturing all its partitions.",
						 get_rel_name(root))));

	run_ddl(psprintf("DROP TRIGGER %s ON %s",
					 quote_identifier(CAPTURE_TRIGGER_NAME),
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												relname)));
	PG_RETURN_VOID();
}

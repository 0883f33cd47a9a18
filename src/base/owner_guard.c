/*-------------------------------------------------------------------------
 *
 * owner_guard.c
 *		Refuse DROP ROLE of a role that, in the current database, owns an
 *		outbox_saga destination, a saga still running or a topic, or holds
 *		a privilege on a topic.
 *
 * Destinations and saga definitions record their owner as a role OID (the
 * role their handlers and steps run as, G10); PostgreSQL's own dependency
 * tracking (pg_shdepend) does not know these rows.  Without this guard a
 * dropped role would leave them running as nobody: RunAsOwner refuses
 * such a call (42704), so the events and steps wait, failing, until the
 * destination is re-created.  The guard turns that into an error at
 * DROP ROLE time, like "role cannot be dropped because some objects
 * depend on it".
 *
 * INVARIANTS
 *	- Runs from the ProcessUtility hook (so only when the library is
 *	  preloaded), before DROP ROLE, in the caller's transaction; reads the
 *	  state tables as the bootstrap superuser with a pinned search_path
 *	  (RunAsExtensionBegin) and changes nothing.
 *	- Runs only for a caller that passes DROP ROLE's own privilege check
 *	  (may_drop_role): anyone else gets PostgreSQL's error and learns
 *	  nothing about what the role owns here.
 *	- Sees the current database only: destinations in other databases are
 *	  covered by the 42704 failure above (README, Troubleshooting).
 *	- Saga definitions with no saga in flight do not block: a later
 *	  saga.start of one fails its steps with the same clear error, and
 *	  saga.drop_definition removes it.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type_d.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "base/owner_guard.h"
#include "base/run_as.h"
#include "base/spi_util.h"

/* At most this many objects are named in the error. */
#define OWNER_GUARD_MAX_NAMED	10

/* What every version of the extension has: destinations and sagas. */
#define OWNED_DESTINATIONS_AND_SAGAS \
	"  SELECT pg_catalog.format('destination \"%s\"', d.name) AS what" \
	"    FROM outbox.destination d WHERE d.owner = $1" \
	"  UNION ALL" \
	"  SELECT pg_catalog.format('sagas in flight of \"%s\" version %s'," \
	"                           i.definition, i.version)" \
	"    FROM saga.instance i" \
	"    JOIN saga.definition def ON def.id = i.definition_id" \
	"   WHERE def.owner = $1 AND i.status IN ('running', 'compensating')" \
	"   GROUP BY i.definition, i.version"

/*
 * outbox.destination, saga.instance, saga.definition (and, from 0.2.0,
 * outbox.topic and outbox.topic_grant): what role $1 owns or was granted
 * here, named, at most OWNER_GUARD_MAX_NAMED + 1 rows.  A topic's owner
 * and grantees are role OIDs too: a dropped role's OID given to a new role
 * would hand it the topic.
 */
static SpiStatement owned_objects = {"reading the owners",
	"SELECT what FROM (" OWNED_DESTINATIONS_AND_SAGAS
	"  UNION ALL"
	"  SELECT pg_catalog.format('topic \"%s\"', t.name)"
	"    FROM outbox.topic t WHERE t.owner = $1"
	"  UNION ALL"
	"  SELECT pg_catalog.format('%s privilege on topic \"%s\"', g.privilege, g.topic)"
	"    FROM outbox.topic_grant g WHERE g.grantee = $1"
	") o ORDER BY what LIMIT " CppAsString2(OWNER_GUARD_MAX_NAMED + 1),
{OIDOID, 0}};

/* The same in a database whose extension predates topics (0.1.0). */
static SpiStatement owned_objects_without_topics = {"reading the owners",
	"SELECT what FROM (" OWNED_DESTINATIONS_AND_SAGAS
	") o ORDER BY what LIMIT " CppAsString2(OWNER_GUARD_MAX_NAMED + 1),
{OIDOID, 0}};

/*
 * check_role
 *		Raise an error if role 'roleid' ('name') owns something here.
 */
static void
check_role(Oid roleid, const char *name)
{
	Datum		values[1] = {ObjectIdGetDatum(roleid)};
	StringInfoData list;
	uint64		n;
	uint64		i;

	SpiConnect();
	n = RunAsExtensionRun(OidIsValid(get_relname_relid("topic_grant",
													   get_namespace_oid("outbox", true))) ?
						  &owned_objects : &owned_objects_without_topics,
						  values, NULL, SPI_OK_SELECT);
	if (n == 0)
	{
		SpiFinish();
		return;
	}
	initStringInfo(&list);
	for (i = 0; i < n && i < OWNER_GUARD_MAX_NAMED; i++)
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	if (n > OWNER_GUARD_MAX_NAMED)
		appendStringInfoString(&list, ", ...");

	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("role \"%s\" cannot be dropped because outbox_saga runs work as it",
					name),
			 errdetail("In database \"%s\": %s.",
					   get_database_name(MyDatabaseId), list.data),
			 errhint("Drop those destinations (outbox.drop_destination) or re-create them "
					 "as another role, let the sagas finish or cancel them "
					 "(saga.cancel), give the topics another owner "
					 "(outbox.alter_topic_owner) and revoke the topic privileges "
					 "(outbox.revoke_topic).")));
}

/*
 * may_drop_role
 *		Whether the current user passes DROP ROLE's own privilege check for
 *		'roleid' (superuser; or CREATEROLE, the target no superuser, and from
 *		PostgreSQL 16 ADMIN OPTION on it).  A role that does not pass gets
 *		PostgreSQL's error and never sees what the target owns here.
 */
static bool
may_drop_role(Oid roleid)
{
	Oid			me = GetUserId();
	HeapTuple	tuple;
	bool		createrole;

	if (superuser())
		return true;
	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(me));
	if (!HeapTupleIsValid(tuple))
		return false;
	createrole = ((Form_pg_authid) GETSTRUCT(tuple))->rolcreaterole;
	ReleaseSysCache(tuple);
	return createrole && !superuser_arg(roleid) &&
		CompatCreateroleMayDrop(me, roleid);
}

/*
 * OwnerGuardCheckDropRole
 *		The check, for every existing role the statement names, when the
 *		extension is installed in this database.
 */
void
OwnerGuardCheckDropRole(DropRoleStmt *stmt)
{
	ListCell   *lc;

	if (!OidIsValid(get_extension_oid("outbox_saga", true)))
		return;
	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			roleid;

		/* CURRENT_USER and friends: DROP ROLE refuses them itself. */
		if (spec->roletype != ROLESPEC_CSTRING)
			continue;
		roleid = get_role_oid(spec->rolename, true);
		if (OidIsValid(roleid) && may_drop_role(roleid))
			check_role(roleid, spec->rolename);
	}
}

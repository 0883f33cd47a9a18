/*-------------------------------------------------------------------------
 *
 * topic_acl.c
 *		Topics: owners, the read and write privileges, and their SQL API
 *		(G14).
 *
 * THE MODEL
 *	A topic is a row of outbox.topic (name, owner) plus grants in
 *	outbox.topic_grant (topic, grantee, privilege 'read' or 'write').  A
 *	role may read a topic (subscribe to it, receive its events, see its dead
 *	letters) or write it (emit, capture into it, saga emit steps) if it has
 *	the privileges of the owner or of a grantee of that privilege
 *	(pg_has_role(..., 'USAGE'): membership with INHERIT, as for destination
 *	owners).  Superusers bypass every check, and their checks never create
 *	a topic.
 *
 *	A topic gets its owner when it is first used by a role that is not a
 *	superuser: outbox.create_topic(), or the first write (emit, capture,
 *	capture_table, a saga emit step) or subscription (the destination's
 *	owner) that names it; TopicAclCheck(..., create = true) inserts the row
 *	in the caller's transaction, so it exists iff that transaction commits.
 *	A topic that exists is never taken over: a capture of bob.salaries with
 *	the default topic "salaries" owned by alice is refused (42501).  A topic
 *	with no row (used by superusers only) is readable and writable by
 *	superusers only.
 *
 * THE CACHE
 *	Decisions are cached per backend, keyed by (role, topic), for both
 *	privileges at once, and are valid while TopicAclGeneration is the value
 *	they were made under.  The generation is bumped by a relcache
 *	invalidation of outbox.topic or outbox.topic_grant (every statement
 *	that changes them sends one, through the statement trigger
 *	outbox.topic_acl_changed(), so also a hand-made UPDATE by a superuser,
 *	the upgrade script or pg_restore), by any change of pg_authid (a role
 *	dropped, made superuser or not) or pg_auth_members (GRANT/REVOKE of a
 *	role), and by a reset of all caches.  Invalidations of other backends
 *	arrive at the next transaction start or lock, as for the catalogs; an
 *	aborted transaction's own changes are undone locally by the same
 *	message.  So a hit costs one hash lookup; a miss runs one or two kept
 *	SPI statements with the extension's rights (RunAsExtensionRun).
 *
 * LOCKS
 *	A miss reads outbox.topic and outbox.topic_grant (ACCESS SHARE); a
 *	creation inserts into outbox.topic with ON CONFLICT DO NOTHING, so two
 *	sessions creating one topic serialize on its key and the second one sees
 *	the first one's owner (in READ COMMITTED; a higher isolation level gets
 *	a serialization failure).  grant_topic, revoke_topic and
 *	alter_topic_owner lock the topic's row FOR UPDATE first.
 *
 * CRASH
 *	All state is in the two tables; the cache is rebuilt on demand.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "base/run_as.h"
#include "base/spi_util.h"
#include "base/sql_args.h"
#include "events/eventlog.h"
#include "events/topic_acl.h"

PG_FUNCTION_INFO_V1(outbox_saga_create_topic);
PG_FUNCTION_INFO_V1(outbox_saga_alter_topic_owner);
PG_FUNCTION_INFO_V1(outbox_saga_grant_topic);
PG_FUNCTION_INFO_V1(outbox_saga_revoke_topic);
PG_FUNCTION_INFO_V1(outbox_saga_has_topic_privilege);
PG_FUNCTION_INFO_V1(outbox_saga_topic_acl_changed);

uint64		TopicAclGeneration = 1;

/* More cached decisions than this: the cache starts over. */
#define TOPIC_ACL_CACHE_MAX		8192

static const char *const privilege_names[] = {"read", "write"};

enum
{
	Q_LOOKUP,
	Q_CREATE,
	Q_LOCK_TOPIC,
	Q_GRANT,
	Q_REVOKE,
	Q_SET_OWNER,
	Q_COUNT
};

static SpiStatement statements[Q_COUNT] = {
	/* outbox.topic, outbox.topic_grant: what a role may do with a topic */
	[Q_LOOKUP] = {
		"the read of a topic's privileges",
		"SELECT pg_catalog.pg_has_role($2, t.owner::pg_catalog.oid, 'USAGE'),"
		"       EXISTS (SELECT 1 FROM outbox.topic_grant g"
		"                WHERE g.topic = t.name AND g.privilege = 'read'"
		"                  AND pg_catalog.pg_has_role($2, g.grantee::pg_catalog.oid, 'USAGE')),"
		"       EXISTS (SELECT 1 FROM outbox.topic_grant g"
		"                WHERE g.topic = t.name AND g.privilege = 'write'"
		"                  AND pg_catalog.pg_has_role($2, g.grantee::pg_catalog.oid, 'USAGE'))"
		"  FROM outbox.topic t WHERE t.name = $1",
		{TEXTOID, OIDOID, 0}
	},
	/* outbox.topic: a new topic */
	[Q_CREATE] = {
		"the insert of a topic",
		"INSERT INTO outbox.topic (name, owner) VALUES ($1, $2::pg_catalog.regrole)"
		"    ON CONFLICT (name) DO NOTHING RETURNING 1",
		{TEXTOID, OIDOID, 0}
	},
	/* outbox.topic: the row of a topic whose privileges change */
	[Q_LOCK_TOPIC] = {
		"the lock of a topic",
		"SELECT owner::pg_catalog.oid FROM outbox.topic WHERE name = $1 FOR UPDATE",
		{TEXTOID, 0}
	},
	[Q_GRANT] = {
		"the insert of a topic grant",
		"INSERT INTO outbox.topic_grant (topic, grantee, privilege, granted_by)"
		" VALUES ($1, $2::pg_catalog.regrole, $3, $4::pg_catalog.regrole)"
		"    ON CONFLICT DO NOTHING",
		{TEXTOID, OIDOID, TEXTOID, OIDOID, 0}
	},
	[Q_REVOKE] = {
		"the delete of a topic grant",
		"DELETE FROM outbox.topic_grant"
		" WHERE topic = $1 AND grantee = $2::pg_catalog.regrole AND privilege = $3",
		{TEXTOID, OIDOID, TEXTOID, 0}
	},
	[Q_SET_OWNER] = {
		"the update of a topic's owner",
		"UPDATE outbox.topic SET owner = $2::pg_catalog.regrole WHERE name = $1",
		{TEXTOID, OIDOID, 0}
	},
};

/* Cache: one entry per (role, topic). */
typedef struct TopicAclKey
{
	Oid			role;
	char		topic[OUTBOX_MAX_NAME_BYTES + 1];
} TopicAclKey;

typedef struct TopicAclEntry
{
	TopicAclKey key;
	uint64		generation;		/* TopicAclGeneration it was decided under */
	bool		exists;			/* the topic has a row (or role is superuser) */
	bool		allowed[2];		/* by TopicPrivilege */
} TopicAclEntry;

static HTAB *acl_cache = NULL;
static Oid	topic_relid = InvalidOid;
static Oid	grant_relid = InvalidOid;

static void
topic_acl_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == topic_relid || relid == grant_relid)
		TopicAclGeneration++;
}

static void
topic_acl_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	TopicAclGeneration++;
}

/*
 * init_cache
 *		The backend's cache, created (or started over when it grew past
 *		TOPIC_ACL_CACHE_MAX) with its callbacks registered once.
 */
static void
init_cache(void)
{
	static bool registered = false;
	HASHCTL		ctl;

	if (acl_cache != NULL && hash_get_num_entries(acl_cache) < TOPIC_ACL_CACHE_MAX)
		return;
	if (acl_cache != NULL)
		hash_destroy(acl_cache);
	ctl.keysize = sizeof(TopicAclKey);
	ctl.entrysize = sizeof(TopicAclEntry);
	ctl.hcxt = CacheMemoryContext;
	acl_cache = hash_create("outbox topic privileges", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (!registered)
	{
		CacheRegisterRelcacheCallback(topic_acl_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, topic_acl_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, topic_acl_syscache_callback,
									  (Datum) 0);
		registered = true;
	}
}

/*
 * resolve_relids
 *		The OIDs of outbox.topic and outbox.topic_grant, for the relcache
 *		callback (looked up on every miss: the extension may have been
 *		dropped and created again).
 */
static void
resolve_relids(void)
{
	Oid			nsp = get_namespace_oid("outbox", false);

	topic_relid = get_relname_relid("topic", nsp);
	grant_relid = get_relname_relid("topic_grant", nsp);
}

static bool
result_bool(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, &isnull);

	return !isnull && DatumGetBool(d);
}

/*
 * decide
 *		What 'role' may do with 'topic', read from the tables; with 'create',
 *		a topic that has no row is created, owned by 'role'.  Returns
 *		whether the decision may be cached.
 */
static bool
decide(Oid role, text *topic, bool create, TopicAclEntry *e)
{
	Datum		values[2];

	e->exists = false;
	e->allowed[TOPIC_READ] = e->allowed[TOPIC_WRITE] = false;
	if (superuser_arg(role))
	{
		e->exists = true;
		e->allowed[TOPIC_READ] = e->allowed[TOPIC_WRITE] = true;
		return true;
	}

	/*
	 * The schema of release 0.1.0, before ALTER EXTENSION UPDATE: no topic
	 * privileges yet, everything is allowed as it was.  Not cached, so
	 * that the update is seen at once.
	 */
	resolve_relids();
	if (!OidIsValid(topic_relid) || !OidIsValid(grant_relid))
	{
		e->exists = true;
		e->allowed[TOPIC_READ] = e->allowed[TOPIC_WRITE] = true;
		return false;
	}
	values[0] = PointerGetDatum(topic);
	values[1] = ObjectIdGetDatum(role);
	SpiConnect();
	if (RunAsExtensionRun(&statements[Q_LOOKUP], values, NULL, SPI_OK_SELECT) == 0 &&
		create)
	{
		if (RunAsExtensionRun(&statements[Q_CREATE], values, NULL,
							  SPI_OK_INSERT_RETURNING) == 1)
		{
			SpiFinish();
			e->exists = true;
			e->allowed[TOPIC_READ] = e->allowed[TOPIC_WRITE] = true;
			return true;
		}
		/* Created meanwhile by a transaction that committed. */
		(void) RunAsExtensionRun(&statements[Q_LOOKUP], values, NULL, SPI_OK_SELECT);
	}
	if (SPI_processed > 0)
	{
		bool		own = result_bool(1);

		e->exists = true;
		e->allowed[TOPIC_READ] = own || result_bool(2);
		e->allowed[TOPIC_WRITE] = own || result_bool(3);
	}
	SpiFinish();
	return true;
}

/*
 * TopicAclCheck
 *		Whether 'role' has privilege 'priv' on 'topic' (a valid topic name).
 *		With 'create', a topic that does not exist yet is created, owned by
 *		'role' (unless 'role' is a superuser), in the current transaction.
 *		Cached: see THE CACHE.
 */
bool
TopicAclCheck(Oid role, text *topic, TopicPrivilege priv, bool create)
{
	TopicAclKey key;
	TopicAclEntry *entry;
	TopicAclEntry decided;
	uint64		generation;
	int			len = VARSIZE_ANY_EXHDR(topic);

	if (len > OUTBOX_MAX_NAME_BYTES)
		return superuser_arg(role);
	init_cache();
	memset(&key, 0, sizeof(key));
	key.role = role;
	memcpy(key.topic, VARDATA_ANY(topic), len);

	entry = hash_search(acl_cache, &key, HASH_FIND, NULL);
	if (entry != NULL && entry->generation == TopicAclGeneration &&
		(entry->exists || !create))
		return entry->allowed[priv];

	generation = TopicAclGeneration;
	if (!decide(role, topic, create, &decided))
		return decided.allowed[priv];
	entry = hash_search(acl_cache, &key, HASH_ENTER, NULL);
	entry->generation = generation;
	entry->exists = decided.exists;
	entry->allowed[TOPIC_READ] = decided.allowed[TOPIC_READ];
	entry->allowed[TOPIC_WRITE] = decided.allowed[TOPIC_WRITE];
	return decided.allowed[priv];
}

static const char *
role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("%u", role);
}

/*
 * TopicAclRequire
 *		Error 42501 unless 'role' has privilege 'priv' on 'topic'; creates a
 *		topic that does not exist yet (see TopicAclCheck).  'hint' replaces
 *		the default hint when not NULL.
 */
void
TopicAclRequire(Oid role, text *topic, TopicPrivilege priv, const char *hint)
{
	char	   *name;

	if (TopicAclCheck(role, topic, priv, true))
		return;
	name = text_to_cstring(topic);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for topic \"%s\"", name),
			 errdetail("Role \"%s\" may not %s topic \"%s\".",
					   role_name(role), privilege_names[priv], name),
			 hint ? errhint("%s", hint) :
			 errhint("The topic's owner can allow it with outbox.grant_topic('%s', '%s', '%s').",
					 name, role_name(role), privilege_names[priv])));
}

/* ------------------------------------------------------------------------
 * The SQL API
 * ------------------------------------------------------------------------
 */

static TopicPrivilege
parse_privilege(FunctionCallInfo fcinfo, int argno)
{
	char	   *p;

	SqlRequireArg(fcinfo, argno, "privilege");
	p = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (pg_strcasecmp(p, "read") == 0)
		return TOPIC_READ;
	if (pg_strcasecmp(p, "write") == 0)
		return TOPIC_WRITE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown topic privilege \"%s\"", p),
			 errhint("Topic privileges are read and write.")));
	return TOPIC_READ;			/* keep the compiler quiet */
}

static text *
topic_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *topic;

	SqlRequireArg(fcinfo, argno, "topic");
	topic = PG_GETARG_TEXT_PP(argno);
	OutboxCheckTopic("topic", topic);
	return topic;
}

static Oid
role_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	Oid			role;

	SqlRequireArg(fcinfo, argno, what);
	role = PG_GETARG_OID(argno);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", role)));
	return role;
}

/*
 * lock_own_topic
 *		Lock the row of 'topic' (connected to SPI) and check that the caller
 *		has the privileges of its owner.  Returns the owner.
 */
static Oid
lock_own_topic(text *topic)
{
	Datum		values[1];
	bool		isnull;
	Oid			owner;

	values[0] = PointerGetDatum(topic);
	if (RunAsExtensionRun(&statements[Q_LOCK_TOPIC], values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", text_to_cstring(topic)),
				 errhint("Create it with outbox.create_topic().")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of topic \"%s\"", text_to_cstring(topic)),
				 errdetail("Topic \"%s\" is owned by role \"%s\".",
						   text_to_cstring(topic), role_name(owner))));
	return owner;
}

/*
 * outbox.create_topic(topic text) RETURNS void
 *		A new topic owned by the current role.
 */
Datum
outbox_saga_create_topic(PG_FUNCTION_ARGS)
{
	text	   *topic = topic_arg(fcinfo, 0);
	Datum		values[2];

	resolve_relids();
	values[0] = PointerGetDatum(topic);
	values[1] = ObjectIdGetDatum(GetUserId());
	SpiConnect();
	if (RunAsExtensionRun(&statements[Q_CREATE], values, NULL,
						  SPI_OK_INSERT_RETURNING) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("topic \"%s\" already exists", text_to_cstring(topic)),
				 errhint("See outbox.topics for its owner.")));
	SpiFinish();
	PG_RETURN_VOID();
}

/*
 * outbox.alter_topic_owner(topic text, new_owner regrole) RETURNS void
 *		As ALTER ... OWNER TO: the caller needs the privileges of the
 *		current owner and of the new one.
 */
Datum
outbox_saga_alter_topic_owner(PG_FUNCTION_ARGS)
{
	text	   *topic = topic_arg(fcinfo, 0);
	Oid			new_owner = role_arg(fcinfo, 1, "new_owner");
	Datum		values[2];

	SpiConnect();
	(void) lock_own_topic(topic);
	if (!has_privs_of_role(GetUserId(), new_owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be able to act as role \"%s\" to give it topic \"%s\"",
						role_name(new_owner), text_to_cstring(topic))));
	values[0] = PointerGetDatum(topic);
	values[1] = ObjectIdGetDatum(new_owner);
	(void) RunAsExtensionRun(&statements[Q_SET_OWNER], values, NULL, SPI_OK_UPDATE);
	SpiFinish();
	PG_RETURN_VOID();
}

/*
 * grant_or_revoke
 *		outbox.grant_topic / outbox.revoke_topic(topic text, role regrole,
 *		privilege text): the topic's owner (or a member, or a superuser)
 *		gives or takes a privilege.  Granting what is granted, or revoking
 *		what is not, changes nothing.
 */
static Datum
grant_or_revoke(FunctionCallInfo fcinfo, bool grant)
{
	text	   *topic = topic_arg(fcinfo, 0);
	Oid			role = role_arg(fcinfo, 1, "role");
	TopicPrivilege priv = parse_privilege(fcinfo, 2);
	Datum		values[4];

	SpiConnect();
	(void) lock_own_topic(topic);
	values[0] = PointerGetDatum(topic);
	values[1] = ObjectIdGetDatum(role);
	values[2] = CStringGetTextDatum(privilege_names[priv]);
	values[3] = ObjectIdGetDatum(GetUserId());
	if (grant)
		(void) RunAsExtensionRun(&statements[Q_GRANT], values, NULL, SPI_OK_INSERT);
	else
		(void) RunAsExtensionRun(&statements[Q_REVOKE], values, NULL, SPI_OK_DELETE);
	SpiFinish();
	PG_RETURN_VOID();
}

Datum
outbox_saga_grant_topic(PG_FUNCTION_ARGS)
{
	return grant_or_revoke(fcinfo, true);
}

Datum
outbox_saga_revoke_topic(PG_FUNCTION_ARGS)
{
	return grant_or_revoke(fcinfo, false);
}

/*
 * outbox.has_topic_privilege(topic text, privilege text) RETURNS boolean
 *		Whether the current role has the privilege; never creates a topic.
 *		Used by the views that show events (outbox.dead_letters).
 */
Datum
outbox_saga_has_topic_privilege(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_GETARG_TEXT_PP(0);
	TopicPrivilege priv = parse_privilege(fcinfo, 1);

	PG_RETURN_BOOL(TopicAclCheck(GetUserId(), topic, priv, false));
}

/*
 * outbox.topic_acl_changed() RETURNS trigger
 *		AFTER ... FOR EACH STATEMENT on outbox.topic and outbox.topic_grant:
 *		a relcache invalidation of the table, which every backend's
 *		TopicAclGeneration follows (see THE CACHE).
 */
Datum
outbox_saga_topic_acl_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox.topic_acl_changed() was not called by the trigger manager")));
	td = (TriggerData *) fcinfo->context;
	CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
	return PointerGetDatum(NULL);
}

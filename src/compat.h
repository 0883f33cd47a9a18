/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PG_VERSION_NUM test of outbox_saga lives here.
 *
 * The supported server is PostgreSQL 15.  Code elsewhere includes this
 * header and uses the names below instead of testing versions itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_COMPAT_H
#define OUTBOX_SAGA_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "outbox_saga requires PostgreSQL 15 or later"
#endif

/*
 * Ownership and privilege checks of databases, tablespaces and extensions; PostgreSQL
 * 16 replaced the per-kind functions by generic ones.  The caller includes
 * utils/acl.h and the catalog headers that name the relation ids.
 */
#if PG_VERSION_NUM >= 160000
#define CompatDatabaseOwnercheck(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#define CompatTablespaceAclcheck(spc, role, mode) \
	object_aclcheck(TableSpaceRelationId, (spc), (role), (mode))
#define CompatExtensionOwnercheck(ext, role) \
	object_ownercheck(ExtensionRelationId, (ext), (role))
#else
#define CompatDatabaseOwnercheck(db, role) \
	pg_database_ownercheck((db), (role))
#define CompatTablespaceAclcheck(spc, role, mode) \
	pg_tablespace_aclcheck((spc), (role), (mode))
#define CompatExtensionOwnercheck(ext, role) \
	pg_extension_ownercheck((ext), (role))
#endif

#endif							/* OUTBOX_SAGA_COMPAT_H */

/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PG_VERSION_NUM test of outbox_saga lives here.
 *
 * The supported servers are PostgreSQL 15, 17 and 18 (each built with
 * -Werror and tested by make test / make test-matrix); 16 is expected to
 * work but is not tested.  Code elsewhere includes this header first and
 * uses the names below instead of testing versions itself: no
 * PG_VERSION_NUM test lives anywhere else.  Each name expands to the call of
 * the newest API where it exists, to the older one before; the version a
 * test names is the one whose headers changed (read from each major's
 * server headers, not guessed).
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

/*
 * Whether a role with CREATEROLE may drop role 'target': any non-superuser
 * role up to 15, only roles it has ADMIN OPTION on from 16.  The caller
 * includes utils/acl.h.
 */
#if PG_VERSION_NUM >= 160000
#define CompatCreateroleMayDrop(me, target) is_admin_of_role((me), (target))
#else
#define CompatCreateroleMayDrop(me, target) true
#endif

/*
 * The varlena macros (VARDATA_ANY, VARSIZE_ANY_EXHDR...) moved out of
 * postgres.h into varatt.h in 16.
 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * pg_attribute_noreturn() (after the declarator) is gone in 18, which has
 * pg_noreturn (before it) instead; our declarations keep the old form.
 */
#if PG_VERSION_NUM >= 180000 && !defined(pg_attribute_noreturn)
#if defined(__GNUC__) || defined(__SUNPRO_C)
#define pg_attribute_noreturn() __attribute__((noreturn))
#else
#define pg_attribute_noreturn()
#endif
#endif

/*
 * EXECUTE privilege on a function: pg_proc_aclcheck is gone in 16.  The
 * caller includes utils/acl.h.
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_proc_d.h"
#define CompatProcAclcheck(fn, role, mode) \
	object_aclcheck(ProcedureRelationId, (fn), (role), (mode))
#else
#define CompatProcAclcheck(fn, role, mode) \
	pg_proc_aclcheck((fn), (role), (mode))
#endif

/*
 * A qualified name list from a string, raising errors (no soft-error
 * context): stringToQualifiedNameList takes an escontext from 16.  The
 * caller includes utils/regproc.h (or utils/builtins.h before 16).
 */
#if PG_VERSION_NUM >= 160000
#define CompatStringToQualifiedNameList(s) stringToQualifiedNameList((s), NULL)
#else
#define CompatStringToQualifiedNameList(s) stringToQualifiedNameList(s)
#endif

/*
 * The index of a PGPROC in ProcGlobal->allProcs (what GetPGProcByNumber
 * takes): PGPROC.pgprocno is gone in 17.  The caller includes
 * storage/proc.h.
 */
#if PG_VERSION_NUM >= 170000
#define CompatProcNumberOf(proc) ((int) GetNumberFromPGProc(proc))
#else
#define CompatProcNumberOf(proc) ((proc)->pgprocno)
#endif

/*
 * The local copy of the status of backend 'i', 1 to
 * pgstat_fetch_stat_numbackends(): renamed in 17.  The caller includes
 * utils/backend_status.h.
 */
#if PG_VERSION_NUM >= 170000
#define CompatLocalBeentryByIndex(i) pgstat_get_local_beentry_by_index(i)
#else
#define CompatLocalBeentryByIndex(i) pgstat_fetch_stat_local_beentry(i)
#endif

/*
 * A wait event set that the caller frees itself with FreeWaitEventSet, on
 * the error path too.  Up to 16 it is allocated in CurrentMemoryContext;
 * from 17 CreateWaitEventSet takes a resource owner instead, and no owner
 * (NULL) keeps the set alive until freed, as the callers expect (an owner
 * would free it at the end of the transaction under them).  The caller
 * includes storage/latch.h.
 */
#if PG_VERSION_NUM >= 170000
#define CompatCreateWaitEventSet(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define CompatCreateWaitEventSet(nevents) \
	CreateWaitEventSet(CurrentMemoryContext, (nevents))
#endif

/*
 * An index scan without instrumentation: index_beginscan takes an
 * IndexScanInstrumentation pointer from 18.  The caller includes
 * access/genam.h.
 */
#if PG_VERSION_NUM >= 180000
#define CompatIndexBeginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define CompatIndexBeginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * The primary key of a table: 18 asks whether a deferrable one counts (it
 * does here: a table's own primary key, whatever its timing).  The caller
 * includes utils/relcache.h.
 */
#if PG_VERSION_NUM >= 180000
#define CompatRelationGetPrimaryKeyIndex(rel) RelationGetPrimaryKeyIndex((rel), true)
#else
#define CompatRelationGetPrimaryKeyIndex(rel) RelationGetPrimaryKeyIndex(rel)
#endif

/*
 * Base64 of common/base64.h: the binary side is uint8 from 18, char before.
 * The caller includes common/base64.h.
 */
#if PG_VERSION_NUM >= 180000
#define CompatB64Encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#define CompatB64Decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (uint8 *) (dst), (dstlen))
#else
#define CompatB64Encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (dst), (dstlen))
#define CompatB64Decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (char *) (dst), (dstlen))
#endif

#endif							/* OUTBOX_SAGA_COMPAT_H */

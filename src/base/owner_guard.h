/*-------------------------------------------------------------------------
 *
 * owner_guard.h
 *		DROP ROLE of a role that destinations or running sagas run as.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_OWNER_GUARD_H
#define OUTBOX_SAGA_OWNER_GUARD_H

#include "nodes/parsenodes.h"

extern void OwnerGuardCheckDropRole(DropRoleStmt *stmt);

#endif							/* OUTBOX_SAGA_OWNER_GUARD_H */

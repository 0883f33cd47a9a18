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

#endif							/* OUTBOX_SAGA_COMPAT_H */

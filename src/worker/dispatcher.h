/*-------------------------------------------------------------------------
 *
 * dispatcher.h
 *		The per-database dispatcher worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_DISPATCHER_H
#define OUTBOX_SAGA_DISPATCHER_H

#include "fmgr.h"

extern PGDLLEXPORT void OutboxDispatcherMain(Datum main_arg);

#endif							/* OUTBOX_SAGA_DISPATCHER_H */

/*-------------------------------------------------------------------------
 *
 * capture.h
 *		The capture trigger outbox.capture(): what capture_table.c, which
 *		attaches it to tables, needs to know of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_CAPTURE_H
#define OUTBOX_SAGA_CAPTURE_H

#include "utils/relcache.h"

extern void CaptureCheckArgs(Relation rel, const char *trigname,
							 int nargs, char **args);
extern Oid	CaptureTriggerRoot(Oid tgoid, Oid *parent_tgoid, Oid *tgfoid);

#endif							/* OUTBOX_SAGA_CAPTURE_H */

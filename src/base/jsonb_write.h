/*-------------------------------------------------------------------------
 *
 * jsonb_write.h
 *		Writing a jsonb datum in one pass from a JsonbValue object whose
 *		keys are already in jsonb's order (see jsonb_write.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_JSONB_WRITE_H
#define OUTBOX_SAGA_JSONB_WRITE_H

#include "utils/jsonb.h"

extern Jsonb *JsonbWriteSortedObject(const JsonbValue *object);

#endif							/* OUTBOX_SAGA_JSONB_WRITE_H */

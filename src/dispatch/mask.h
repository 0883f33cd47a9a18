/*-------------------------------------------------------------------------
 *
 * mask.h
 *		Secret masking of destination configs (outbox.mask_config).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_MASK_H
#define OUTBOX_SAGA_MASK_H

#include "utils/jsonb.h"

extern Jsonb *MaskConfig(Jsonb *config);

#endif							/* OUTBOX_SAGA_MASK_H */

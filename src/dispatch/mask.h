/*-------------------------------------------------------------------------
 *
 * mask.h
 *		Secret masking of destination configs (outbox.mask_config).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_MASK_H
#define OUTBOX_SAGA_MASK_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

extern Jsonb *MaskConfig(Jsonb *config);

/*
 * If 'len' bytes at 'str' are a URL, or URLs separated by commas, carrying
 * credentials, append them to 'out' masked and return true; else return
 * false and leave 'out' alone.  Pure: what test/fuzz's mask target feeds.
 */
extern bool MaskUrl(const char *str, int len, StringInfo out);

#endif							/* OUTBOX_SAGA_MASK_H */

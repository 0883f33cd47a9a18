/*-------------------------------------------------------------------------
 *
 * jsonb_util.h
 *		Reading and building jsonb values in C: key lookup, key checks, and
 *		a small builder over pushJsonbValue.  Generic: knows nothing of the
 *		objects (sagas, destinations) whose configs it reads.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_JSONB_UTIL_H
#define OUTBOX_SAGA_JSONB_UTIL_H

#include "utils/jsonb.h"

/* Reading */
extern bool JsonbGetKey(JsonbContainer *c, const char *key, JsonbValue *out);
extern bool JsonbValueIsObject(const JsonbValue *v);
extern void JsonbValueFromJsonb(Jsonb *jb, JsonbValue *out);
extern bool JsonbFindUnknownKey(JsonbContainer *c, const char *const *valid,
								const char *const *more, JsonbValue *key);
extern char *JsonbKeyList(const char *const *first, const char *const *second);
extern int32 JsonbIntValue(const JsonbValue *v, const char *what, int32 min,
						   int32 max);
extern int64 JsonbDurationMs(const JsonbValue *v, const char *what, int64 max_ms,
							 const char *max_text);
extern void JsonbCheckKeys(JsonbContainer *c, const char *const *valid,
						   const char *where);
extern char *JsonbGetString(JsonbContainer *c, const char *key, const char *what);
extern Jsonb *JsonbCheckStringObject(JsonbValue *v, const char *what);
extern int	JsonbObjectStrings(Jsonb *object, char ***names, char ***values);

/* Building an object: JsonbBeginObject, JsonbPut* per key, JsonbEndObject */
extern void JsonbBeginObject(JsonbParseState **st);
extern Jsonb *JsonbEndObject(JsonbParseState **st);
extern void JsonbPutString(JsonbParseState **st, const char *key, const char *value);
extern void JsonbPutInt(JsonbParseState **st, const char *key, int64 value);
extern void JsonbPutSeconds(JsonbParseState **st, const char *key, int64 ms);
extern void JsonbPutBool(JsonbParseState **st, const char *key, bool value);
extern void JsonbPutNull(JsonbParseState **st, const char *key);
extern void JsonbPutJsonb(JsonbParseState **st, const char *key, Jsonb *value);

#endif							/* OUTBOX_SAGA_JSONB_UTIL_H */

/*-------------------------------------------------------------------------
 *
 * jsonb_util.c
 *		Helpers to read and build jsonb values from C.
 *
 * Reading: look a key up in an object (JSON null counts as absent), check
 * an object's keys against a list, read a string key, read an object of
 * strings.  Errors are ERRCODE_INVALID_PARAMETER_VALUE, worded with the
 * caller's 'what' or 'where' ("\"url\" of the http call of step \"x\"").
 *
 * Building: JsonbBeginObject, one JsonbPut* per key, JsonbEndObject; the
 * result is allocated in the current memory context.  Pure functions: no
 * transaction, lock or catalog access beyond numeric_in.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "base/jsonb_util.h"
#include "base/sql_args.h"


/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------
 */

/*
 * JsonbGetKey
 *		The value of 'key' in object container 'c' in *out; false if absent
 *		or JSON null.
 */
bool
JsonbGetKey(JsonbContainer *c, const char *key, JsonbValue *out)
{
	if (getKeyJsonValueFromContainer(c, key, strlen(key), out) == NULL)
		return false;
	return out->type != jbvNull;
}

/*
 * JsonbValueIsObject
 *		Whether a value is a JSON object (a binary container of that kind).
 */
bool
JsonbValueIsObject(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * JsonbValueFromJsonb
 *		A whole Jsonb as a JsonbValue: its container, or jbvNull for a scalar
 *		(so that "must be an object" checks reject it).
 */
void
JsonbValueFromJsonb(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
		out->type = jbvNull;
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * key_in
 *		Whether the JSON string 'key' is one of the NULL-terminated 'words'
 *		('words' may be NULL: none).
 */
static bool
key_in(const JsonbValue *key, const char *const *words)
{
	int			i;

	for (i = 0; words != NULL && words[i] != NULL; i++)
		if (key->val.string.len == strlen(words[i]) &&
			memcmp(key->val.string.val, words[i], key->val.string.len) == 0)
			return true;
	return false;
}

/*
 * JsonbFindUnknownKey
 *		The first key of object 'c' that is in neither 'valid' nor 'more'
 *		(each NULL-terminated; 'more' may be NULL) into *key; false if every
 *		key is known.
 */
bool
JsonbFindUnknownKey(JsonbContainer *c, const char *const *valid,
					const char *const *more, JsonbValue *key)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, key, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && !key_in(key, valid) && !key_in(key, more))
			return true;
	}
	return false;
}

/*
 * JsonbKeyList
 *		"a, b, c": the words of 'first' and then of 'second' (each
 *		NULL-terminated, either may be NULL), for a hint listing valid keys.
 */
char *
JsonbKeyList(const char *const *first, const char *const *second)
{
	StringInfoData list;
	const char *const *lists[2] = {first, second};
	int			l;
	int			i;

	initStringInfo(&list);
	for (l = 0; l < 2; l++)
		for (i = 0; lists[l] != NULL && lists[l][i] != NULL; i++)
			appendStringInfo(&list, "%s%s", list.len > 0 ? ", " : "",
							 lists[l][i]);
	return list.data;
}

/*
 * JsonbCheckKeys
 *		Error out on a key of object 'c' that is not in 'valid' (NULL
 *		terminated); 'where' says whose keys these are ("step \"x\"", "the
 *		options").
 */
void
JsonbCheckKeys(JsonbContainer *c, const char *const *valid, const char *where)
{
	JsonbValue	v;

	if (JsonbFindUnknownKey(c, valid, NULL, &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized key \"%.*s\" in %s",
						Min(v.val.string.len, 63), v.val.string.val, where),
				 errhint("Valid keys are: %s.", JsonbKeyList(valid, NULL))));
}

/*
 * JsonbGetString
 *		The string value of 'key' in 'c', or NULL if absent; 'what' names
 *		the key in the error if it is not a string.
 */
char *
JsonbGetString(JsonbContainer *c, const char *key, const char *what)
{
	JsonbValue	v;

	if (!JsonbGetKey(c, key, &v))
		return NULL;
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a string", what)));
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * JsonbCheckStringObject
 *		'v' must be an object whose values are strings ('what' names it in
 *		the error).  Returns it as a Jsonb of its own.
 */
Jsonb *
JsonbCheckStringObject(JsonbValue *v, const char *what)
{
	Jsonb	   *object;
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;

	if (!JsonbValueIsObject(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object of strings", what)));
	object = JsonbValueToJsonb(v);
	it = JsonbIteratorInit(&object->root);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
		if (tok == WJB_VALUE && x.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON object of strings", what)));
	return object;
}

/*
 * JsonbObjectStrings
 *		The keys and values of 'object' as C strings (a value that is not a
 *		string becomes ""), in *names and *values (allocated with room for
 *		one more; NULL if 'object' is no object).  Returns their number.
 */
int
JsonbObjectStrings(Jsonb *object, char ***names, char ***values)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			size;
	int			n = 0;

	*names = NULL;
	*values = NULL;
	if (!JB_ROOT_IS_OBJECT(object))
		return 0;
	size = JsonContainerSize(&object->root) + 1;
	*names = palloc0(sizeof(char *) * size);
	*values = palloc0(sizeof(char *) * size);
	it = JsonbIteratorInit(&object->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && n < size)
			(*names)[n] = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && n < size)
			(*values)[n++] = v.type == jbvString ?
				pnstrdup(v.val.string.val, v.val.string.len) : pstrdup("");
	}
	return n;
}


/* ------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------
 */

/* Push 'key' and then 'value' into the object being built. */
static void
put_value(JsonbParseState **st, const char *key, JsonbValue *value)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(st, WJB_KEY, &k);
	(void) pushJsonbValue(st, WJB_VALUE, value);
}

void
JsonbBeginObject(JsonbParseState **st)
{
	(void) pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
}

Jsonb *
JsonbEndObject(JsonbParseState **st)
{
	return JsonbValueToJsonb(pushJsonbValue(st, WJB_END_OBJECT, NULL));
}

void
JsonbPutString(JsonbParseState **st, const char *key, const char *value)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	put_value(st, key, &v);
}

void
JsonbPutInt(JsonbParseState **st, const char *key, int64 value)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	put_value(st, key, &v);
}

/*
 * JsonbPutSeconds
 *		A duration in milliseconds, as a number of seconds (no trailing
 *		zeros: 1500 is 1.5, 2000 is 2).
 */
void
JsonbPutSeconds(JsonbParseState **st, const char *key, int64 ms)
{
	JsonbValue	v;
	char	   *text;

	if (ms % 1000 == 0)
		text = psprintf(INT64_FORMAT, ms / 1000);
	else
	{
		int			len;

		text = psprintf(INT64_FORMAT ".%03d", ms / 1000, (int) (ms % 1000));
		len = strlen(text);
		while (text[len - 1] == '0')
			text[--len] = '\0';
	}
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	put_value(st, key, &v);
}

void
JsonbPutBool(JsonbParseState **st, const char *key, bool value)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = value;
	put_value(st, key, &v);
}

void
JsonbPutNull(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvNull;
	put_value(st, key, &v);
}

/* A value that is itself a Jsonb (object or array). */
void
JsonbPutJsonb(JsonbParseState **st, const char *key, Jsonb *value)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	put_value(st, key, &v);
}

/*
 * JsonbIntValue
 *		The integer in 'v', which must be a whole JSON number between 'min'
 *		and 'max'; 'what' names the value in messages ("configuration key
 *		\"x\"", "\"max_attempts\" of step \"y\"").
 */
int32
JsonbIntValue(const JsonbValue *v, const char *what, int32 min, int32 max)
{
	Datum		num;
	Datum		whole;
	bool		overflow = false;
	int32		result;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an integer", what)));
	num = NumericGetDatum(v->val.numeric);
	whole = DirectFunctionCall2(numeric_trunc, num, Int32GetDatum(0));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num, whole)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an integer", what)));
	result = numeric_int4_opt_error(v->val.numeric, &overflow);
	if (overflow || result < min || result > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be an integer between %d and %d.", min, max)));
	return result;
}

/*
 * JsonbDurationMs
 *		The duration in 'v' in milliseconds: an interval string ('1 second',
 *		'500ms', '00:01:00'; months count as 30 days) or a number of seconds,
 *		between 1 millisecond and 'max_ms' ('max_text' says that bound in
 *		words).  Numbers are compared exactly (numeric), strings as the
 *		interval's microseconds.  'what' names the value in messages.
 */
int64
JsonbDurationMs(const JsonbValue *v, const char *what, int64 max_ms,
				const char *max_text)
{
	int64		ms = -1;

	if (v->type == jbvString)
	{
		char	   *str = pnstrdup(v->val.string.val, v->val.string.len);
		Interval   *iv = SqlParseInterval(what, str);
		double		usecs;

		usecs = (double) iv->time + (double) iv->day * USECS_PER_DAY +
			(double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
		if (usecs >= 1000.0 && usecs <= (double) max_ms * 1000.0)
			ms = (int64) (usecs / 1000.0);
	}
	else if (v->type == jbvNumeric)
	{
		Datum		millis;
		Datum		lo = NumericGetDatum(int64_to_numeric(1));
		Datum		hi = NumericGetDatum(int64_to_numeric(max_ms));

		millis = DirectFunctionCall2(numeric_mul,
									 NumericGetDatum(v->val.numeric),
									 NumericGetDatum(int64_to_numeric(1000)));
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, millis, lo)) >= 0 &&
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, millis, hi)) <= 0)
			ms = DatumGetInt64(DirectFunctionCall1(numeric_int8,
												   DirectFunctionCall2(numeric_trunc, millis,
																	   Int32GetDatum(0))));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an interval string or a number of seconds", what)));

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be between 1 millisecond and %s.", max_text)));
	return ms;
}

/*-------------------------------------------------------------------------
 *
 * dest_config.c
 *		A destination's config: the keys common to every kind, and the
 *		helpers every kind uses to read and check its own keys.
 *
 * A config is a JSON object of keys; JSON null is the same as an absent key
 * (its default).  The common keys (max_attempts, backoff_base, backoff_max,
 * batch_size, ordered, timeout) are parsed here into DestinationConfig, with
 * defaults; each kind checks its own keys in its validate() with the
 * helpers below.  Errors are 22023 and name the key, never its value: a
 * config may hold secrets.  Nothing here touches a table; everything runs
 * in the caller's transaction and memory context (create/alter_destination
 * in the caller's session, the dispatcher when it loads destinations).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <limits.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "base/sql_args.h"
#include "sink/dest_config.h"

/* Bounds of the interval keys, in milliseconds. */
#define DEST_MIN_INTERVAL_MS	INT64CONST(1)
#define DEST_MAX_BACKOFF_MS		(INT64CONST(365) * 24 * 3600 * 1000)
#define DEST_MAX_TIMEOUT_MS		(INT64CONST(24) * 24 * 3600 * 1000)

/* Config keys common to every kind. */
static const char *const common_keys[] = {
	"max_attempts",
	"backoff_base",
	"backoff_max",
	"batch_size",
	"ordered",
	"timeout",
	NULL
};

/*
 * DestConfigError
 *		Error 22023 with 'msg' and an optional 'detail' (NULL: none).  The
 *		texts are the caller's, already naming the key and never its value.
 */
void
DestConfigError(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg_internal("%s", msg),
			 detail ? errdetail_internal("%s", detail) : 0));
}

/*
 * DestConfigClipName
 *		At most 63 bytes of a key or name for a message (cut at a character
 *		boundary), with "..." if it was longer.
 */
char *
DestConfigClipName(const char *name, int len)
{
	int			clip = pg_mbcliplen(name, len, 63);

	return psprintf("%.*s%s", clip, name, clip < len ? "..." : "");
}

/*
 * key_is
 *		Whether a JSON string equals 'word' exactly.
 */
static bool
key_is(const JsonbValue *key, const char *word)
{
	return key->val.string.len == strlen(word) &&
		memcmp(key->val.string.val, word, key->val.string.len) == 0;
}

/*
 * DestConfigCheckObject
 *		A config is a JSON object.
 */
void
DestConfigCheckObject(Jsonb *config)
{
	if (JB_ROOT_IS_SCALAR(config) || !JB_ROOT_IS_OBJECT(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destination config must be a JSON object"),
				 errhint("Pass an object such as '{\"max_attempts\": 10}'.")));
}

/*
 * DestConfigFind
 *		The value of top-level key 'key' in *out; false if absent or JSON null
 *		(a null value is the same as an absent key).
 */
bool
DestConfigFind(Jsonb *config, const char *key, JsonbValue *out)
{
	if (getKeyJsonValueFromContainer(&config->root, key, strlen(key), out) == NULL)
		return false;
	return out->type != jbvNull;
}

/*
 * wrong_type
 *		Error: config key 'key' does not hold a value of the expected type.
 */
static void wrong_type(const char *key, const char *expected) pg_attribute_noreturn();

static void
wrong_type(const char *key, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("configuration key \"%s\" must be %s", key, expected)));
}

/*
 * parse_int_key
 *		An integer key in [min, max]; *out is left alone if the key is absent.
 */
static void
parse_int_key(Jsonb *config, const char *key, int32 min, int32 max, int *out)
{
	JsonbValue	v;
	Datum		num;
	Datum		whole;
	bool		overflow = false;
	int32		result;

	if (!DestConfigFind(config, key, &v))
		return;
	if (v.type != jbvNumeric)
		wrong_type(key, "an integer");
	num = NumericGetDatum(v.val.numeric);
	whole = DirectFunctionCall2(numeric_trunc, num, Int32GetDatum(0));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num, whole)))
		wrong_type(key, "an integer");
	result = numeric_int4_opt_error(v.val.numeric, &overflow);
	if (overflow || result < min || result > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"%s\" is out of range", key),
				 errdetail("It must be an integer between %d and %d.", min, max)));
	*out = result;
}

/*
 * parse_interval_key
 *		A duration key: an interval string ('1 second', '500ms', '00:01:00')
 *		or a number of seconds, between DEST_MIN_INTERVAL_MS and 'max_ms'
 *		('max_text' says that bound in words).  Returns false, leaving *out_ms
 *		alone, if the key is absent.  Months count as 30 days.
 */
static bool
parse_interval_key(Jsonb *config, const char *key, int64 max_ms,
				   const char *max_text, int64 *out_ms)
{
	JsonbValue	v;
	int64		ms;

	if (!DestConfigFind(config, key, &v))
		return false;

	if (v.type == jbvString)
	{
		char	   *str = pnstrdup(v.val.string.val, v.val.string.len);
		Interval   *iv = SqlParseInterval(psprintf("configuration key \"%s\"", key), str);
		double		usecs;

		usecs = (double) iv->time + (double) iv->day * USECS_PER_DAY +
			(double) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
		if (usecs < (double) DEST_MIN_INTERVAL_MS * 1000.0 ||
			usecs > (double) max_ms * 1000.0)
			ms = -1;
		else
			ms = (int64) (usecs / 1000.0);
	}
	else if (v.type == jbvNumeric)
	{
		Datum		millis;
		Datum		lo = NumericGetDatum(int64_to_numeric(DEST_MIN_INTERVAL_MS));
		Datum		hi = NumericGetDatum(int64_to_numeric(max_ms));

		millis = DirectFunctionCall2(numeric_mul,
									 NumericGetDatum(v.val.numeric),
									 NumericGetDatum(int64_to_numeric(1000)));
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, millis, lo)) < 0 ||
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, millis, hi)) > 0)
			ms = -1;
		else
			ms = DatumGetInt64(DirectFunctionCall1(numeric_int8,
												   DirectFunctionCall2(numeric_trunc, millis,
																	   Int32GetDatum(0))));
	}
	else
		wrong_type(key, "an interval string or a number of seconds");

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"%s\" is out of range", key),
				 errdetail("It must be between 1 millisecond and %s.", max_text)));
	*out_ms = ms;
	return true;
}

/*
 * DestConfigParseCommon
 *		Parse and check the common keys of 'config' into 'out', with defaults
 *		for absent (or JSON null) keys.  Other fields of 'out' are left alone.
 *		Errors name the key, never its value.
 */
void
DestConfigParseCommon(Jsonb *config, DestinationConfig *out)
{
	JsonbValue	v;
	bool		has_max;

	DestConfigCheckObject(config);

	out->max_attempts = DEST_DEFAULT_MAX_ATTEMPTS;
	parse_int_key(config, "max_attempts", 1, INT_MAX, &out->max_attempts);

	out->batch_size = 0;
	parse_int_key(config, "batch_size", 1, DEST_MAX_BATCH_SIZE, &out->batch_size);

	out->ordered = true;
	if (DestConfigFind(config, "ordered", &v))
	{
		if (v.type != jbvBool)
			wrong_type("ordered", "a boolean");
		out->ordered = v.val.boolean;
	}

	out->backoff_base_ms = DEST_DEFAULT_BACKOFF_BASE_MS;
	(void) parse_interval_key(config, "backoff_base", DEST_MAX_BACKOFF_MS,
							  "365 days", &out->backoff_base_ms);

	/* Without an explicit backoff_max, the default never undercuts the base. */
	out->backoff_max_ms = DEST_DEFAULT_BACKOFF_MAX_MS;
	has_max = parse_interval_key(config, "backoff_max", DEST_MAX_BACKOFF_MS,
								 "365 days", &out->backoff_max_ms);
	if (!has_max)
		out->backoff_max_ms = Max(out->backoff_max_ms, out->backoff_base_ms);
	else if (out->backoff_max_ms < out->backoff_base_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"backoff_max\" must not be less than \"backoff_base\"")));

	out->timeout_ms = DEST_DEFAULT_TIMEOUT_MS;
	(void) parse_interval_key(config, "timeout", DEST_MAX_TIMEOUT_MS,
							  "24 days", &out->timeout_ms);
}

/*
 * DestConfigCheckKeys
 *		Error out on a top-level key that is neither common nor one of
 *		'kind_keys' (NULL-terminated, may be NULL).  The message names the
 *		key (cut to 63 bytes) and lists the valid ones.
 */
void
DestConfigCheckKeys(Jsonb *config, const char *const *kind_keys)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	DestConfigCheckObject(config);

	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		int			i;

		if (tok != WJB_KEY)
			continue;
		for (i = 0; common_keys[i] != NULL && !known; i++)
			known = key_is(&v, common_keys[i]);
		for (i = 0; kind_keys != NULL && kind_keys[i] != NULL && !known; i++)
			known = key_is(&v, kind_keys[i]);
		if (!known)
		{
			StringInfoData valid;

			initStringInfo(&valid);
			for (i = 0; kind_keys != NULL && kind_keys[i] != NULL; i++)
				appendStringInfo(&valid, "%s, ", kind_keys[i]);
			for (i = 0; common_keys[i] != NULL; i++)
				appendStringInfo(&valid, "%s%s", common_keys[i],
								 common_keys[i + 1] != NULL ? ", " : "");
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized configuration key \"%s\"", DestConfigClipName(v.val.string.val, v.val.string.len)),
					 errhint("Valid keys are: %s.", valid.data)));
		}
	}
}

/*
 * DestConfigString
 *		The string value of top-level key 'key' (palloc'd), or NULL if the
 *		key is absent or JSON null; an error if it is not a string.
 */
char *
DestConfigString(Jsonb *config, const char *key)
{
	JsonbValue	v;

	if (!DestConfigFind(config, key, &v))
		return NULL;
	if (v.type != jbvString)
		wrong_type(key, "a string");
	return pnstrdup(v.val.string.val, v.val.string.len);
}

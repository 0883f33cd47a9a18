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

#include "base/jsonb_util.h"
#include "base/sql_args.h"
#include "sink/dest_config.h"

/* Bounds of the interval keys, in milliseconds. */
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
 * key_what
 *		How messages name config key 'key'.
 */
static char *
key_what(const char *key)
{
	return psprintf("configuration key \"%s\"", key);
}

/*
 * parse_int_key
 *		An integer key in [min, max]; *out is left alone if the key is absent.
 */
static void
parse_int_key(Jsonb *config, const char *key, int32 min, int32 max, int *out)
{
	JsonbValue	v;

	if (DestConfigFind(config, key, &v))
		*out = JsonbIntValue(&v, key_what(key), min, max);
}

/*
 * parse_interval_key
 *		A duration key (JsonbDurationMs) of at most 'max_ms' ('max_text' in
 *		words).  Returns false, leaving *out_ms alone, if the key is absent.
 */
static bool
parse_interval_key(Jsonb *config, const char *key, int64 max_ms,
				   const char *max_text, int64 *out_ms)
{
	JsonbValue	v;

	if (!DestConfigFind(config, key, &v))
		return false;
	*out_ms = JsonbDurationMs(&v, key_what(key), max_ms, max_text);
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
	JsonbValue	v;

	DestConfigCheckObject(config);
	if (JsonbFindUnknownKey(&config->root, kind_keys, common_keys, &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized configuration key \"%s\"",
						DestConfigClipName(v.val.string.val, v.val.string.len)),
				 errhint("Valid keys are: %s.", JsonbKeyList(kind_keys, common_keys))));
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

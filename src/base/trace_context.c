/*-------------------------------------------------------------------------
 *
 * trace_context.c
 *		W3C Trace Context: what an event carries and every delivery passes on.
 *
 * An event carries the trace context of the transaction that wrote it as two
 * keys of its headers, "traceparent" and "tracestate" (lowercase, the W3C
 * header names).  Where it comes from (README, "Trace context"):
 *	- the headers given to outbox.emit(), which win as a whole: when they
 *	  hold a traceparent, the settings below add nothing;
 *	- otherwise the transaction settings outbox_saga.traceparent and
 *	  outbox_saga.tracestate (SET LOCAL by the application), for emit() and
 *	  for the capture trigger.  A tracestate setting without a traceparent
 *	  setting is ignored (W3C: tracestate means nothing without it).
 *
 * VALIDATION (W3C Trace Context, level 1)
 *	traceparent: version "-" trace-id "-" parent-id "-" flags, lowercase
 *	hex: 2, 32, 16 and 2 digits.  Version ff is invalid; trace-id and
 *	parent-id may not be all zeros.  Version 00 is exactly 55 characters; a
 *	later version may be longer if a "-" follows the first 55.
 *	tracestate: a comma-separated list (blanks and tabs around the commas,
 *	empty members allowed) of at most 32 members key=value with unique
 *	keys; a key is lcalpha followed by up to 255 of [a-z0-9_*-/], or
 *	tenant@system (tenant: [a-z0-9] then up to 240, system: lcalpha then
 *	up to 13); a value is 1 to 256 printable ASCII characters other than
 *	"," and "=", not ending in a blank.  At most 512 characters in all (the
 *	length W3C asks every participant to pass on).
 *	An invalid value is refused with SQLSTATE 22023 wherever it enters:
 *	the settings (check hooks: SET fails), emit() and the headers of saga
 *	emit calls (TraceCheckHeaders), where a key that differs from the
 *	lowercase names in case only is refused too.  Values that entered some
 *	other way (headers written by 0.1.0, rows restored with COPY) are
 *	checked again before anything is sent (TraceSanitize: an invalid trace
 *	key is dropped from the event, never forwarded).
 *
 * COST
 *	Nothing here is looked up per row when no trace context is set:
 *	TraceCurrentIsSet() is one pointer and one byte.  When one is set, the
 *	headers object of the capture trigger is built once per value and
 *	cached (TraceCurrentHeaders: two string comparisons per row).
 *	Pure functions otherwise: no transaction, catalog or lock, except
 *	TraceSetForCall, which sets the two settings for a handler's or step
 *	function's call (inside RunAsOwner, which undoes them).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "utils/builtins.h"
#include "utils/memutils.h"

#include "base/trace_context.h"

char	   *OutboxTraceparent = NULL;
char	   *OutboxTracestate = NULL;

/* Which trace key a header name is, ignoring case. */
typedef enum TraceKey
{
	TRACE_NONE,
	TRACE_PARENT,
	TRACE_STATE,
} TraceKey;


/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------
 */

static bool
is_lchex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * hex_field
 *		Are s[0..n-1] lowercase hex digits?  *all_zero says whether they are
 *		all '0'.
 */
static bool
hex_field(const char *s, int n, bool *all_zero)
{
	int			i;

	*all_zero = true;
	for (i = 0; i < n; i++)
	{
		if (!is_lchex(s[i]))
			return false;
		if (s[i] != '0')
			*all_zero = false;
	}
	return true;
}

/*
 * TraceParentInvalid
 *		NULL if s[0..len-1] is a valid traceparent, else why not (a sentence
 *		for errdetail).
 */
const char *
TraceParentInvalid(const char *s, int len)
{
	bool		zero;

	if (len < TRACE_PARENT_LEN)
		return "A traceparent has 55 characters: version-trace_id-parent_id-flags, for example 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.";
	if (!hex_field(s, 2, &zero) || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return "A traceparent is version-trace_id-parent_id-flags in lowercase hex (2, 32, 16 and 2 digits).";
	if (s[0] == 'f' && s[1] == 'f')
		return "Version ff is invalid.";
	if (!hex_field(s + 3, 32, &zero))
		return "The trace-id must be 32 lowercase hex digits.";
	if (zero)
		return "The trace-id must not be all zeros.";
	if (!hex_field(s + 36, 16, &zero))
		return "The parent-id must be 16 lowercase hex digits.";
	if (zero)
		return "The parent-id must not be all zeros.";
	if (!hex_field(s + 53, 2, &zero))
		return "The trace-flags must be 2 lowercase hex digits.";
	if (s[0] == '0' && s[1] == '0')
	{
		if (len != TRACE_PARENT_LEN)
			return "A version 00 traceparent has exactly 55 characters.";
	}
	else if (len > TRACE_PARENT_LEN && s[TRACE_PARENT_LEN] != '-')
		return "A traceparent of a later version continues with \"-\" after 55 characters.";
	if (len > TRACE_STATE_MAX_LEN)
		return "The traceparent is too long.";
	return NULL;
}

static bool
is_lcalpha(char c)
{
	return c >= 'a' && c <= 'z';
}

/* lcalpha / DIGIT / "_" / "-" / "*" / "/" */
static bool
is_key_char(char c)
{
	return is_lcalpha(c) || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '*' || c == '/';
}

/* Printable ASCII except space, "," and "=". */
static bool
is_nblk_char(char c)
{
	return c >= 0x21 && c <= 0x7E && c != ',' && c != '=';
}

/*
 * member_invalid
 *		NULL if m[0..len-1] is a valid list-member key=value; its key's
 *		length in *keylen.
 */
static const char *
member_invalid(const char *m, int len, int *keylen)
{
	const char *eq = memchr(m, '=', len);
	const char *at;
	int			klen;
	int			vlen;
	int			i;

	if (eq == NULL)
		return "A tracestate member is key=value.";
	klen = eq - m;
	vlen = len - klen - 1;
	*keylen = klen;
	at = memchr(m, '@', klen);
	if (at == NULL)
	{
		if (klen < 1 || klen > 256 || !is_lcalpha(m[0]))
			return "A tracestate key starts with a lowercase letter and has at most 256 characters.";
		for (i = 1; i < klen; i++)
			if (!is_key_char(m[i]))
				return "A tracestate key has only lowercase letters, digits, and _ - * /.";
	}
	else
	{
		int			tlen = at - m;
		int			slen = klen - tlen - 1;

		if (tlen < 1 || tlen > 241 || slen < 1 || slen > 14 ||
			!(is_lcalpha(m[0]) || (m[0] >= '0' && m[0] <= '9')) ||
			!is_lcalpha(at[1]))
			return "A multi-tenant tracestate key is tenant@system (at most 241 and 14 characters).";
		for (i = 1; i < klen; i++)
			if (i != tlen && !is_key_char(m[i]))
				return "A tracestate key has only lowercase letters, digits, and _ - * /.";
	}
	if (vlen < 1 || vlen > 256)
		return "A tracestate value has 1 to 256 characters.";
	for (i = 0; i < vlen; i++)
	{
		char		c = eq[1 + i];

		if (!(is_nblk_char(c) || (c == ' ' && i < vlen - 1)))
			return "A tracestate value has printable ASCII characters other than \",\" and \"=\" and does not end in a blank.";
	}
	return NULL;
}

/*
 * TraceStateInvalid
 *		NULL if s[0..len-1] is a valid tracestate, else why not.
 */
const char *
TraceStateInvalid(const char *s, int len)
{
	int			pos = 0;
	int			nmembers = 0;
	const char *keys[TRACE_STATE_MAX_MEMBERS];
	int			keylens[TRACE_STATE_MAX_MEMBERS];

	if (len > TRACE_STATE_MAX_LEN)
		return "A tracestate has at most 512 characters.";
	while (pos <= len)
	{
		int			start;
		int			end;
		const char *why;
		int			klen;
		int			k;

		/* One member, blanks and tabs around it. */
		while (pos < len && (s[pos] == ' ' || s[pos] == '\t'))
			pos++;
		start = pos;
		while (pos < len && s[pos] != ',')
			pos++;
		end = pos;
		while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
			end--;
		if (end > start)
		{
			if (nmembers == TRACE_STATE_MAX_MEMBERS)
				return "A tracestate has at most 32 members.";
			why = member_invalid(s + start, end - start, &klen);
			if (why != NULL)
				return why;
			for (k = 0; k < nmembers; k++)
				if (keylens[k] == klen && memcmp(keys[k], s + start, klen) == 0)
					return "The keys of a tracestate must be unique.";
			keys[nmembers] = s + start;
			keylens[nmembers] = klen;
			nmembers++;
		}
		pos++;					/* past the comma (or the end) */
	}
	return NULL;
}

/*
 * Check hooks of outbox_saga.traceparent and outbox_saga.tracestate: an
 * invalid value is refused (SET fails with SQLSTATE 22023); "" unsets.
 */
bool
TraceCheckParentSetting(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	why = TraceParentInvalid(*newval, strlen(*newval));
	if (why == NULL)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid traceparent for outbox_saga.traceparent");
	GUC_check_errdetail("%s", why);
	return false;
}

bool
TraceCheckStateSetting(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	why = TraceStateInvalid(*newval, strlen(*newval));
	if (why == NULL)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid tracestate for outbox_saga.tracestate");
	GUC_check_errdetail("%s", why);
	return false;
}


/* ------------------------------------------------------------------------
 * Trace keys of a headers object
 * ------------------------------------------------------------------------
 */

/*
 * trace_key
 *		Which trace key a name is, ignoring case; *exact says whether it is
 *		spelled in lowercase.
 */
static TraceKey
trace_key(const char *name, int len, bool *exact)
{
	TraceKey	k = TRACE_NONE;
	const char *want = NULL;

	if (len == strlen(TRACE_PARENT_KEY) &&
		pg_strncasecmp(name, TRACE_PARENT_KEY, len) == 0)
	{
		k = TRACE_PARENT;
		want = TRACE_PARENT_KEY;
	}
	else if (len == strlen(TRACE_STATE_KEY) &&
			 pg_strncasecmp(name, TRACE_STATE_KEY, len) == 0)
	{
		k = TRACE_STATE;
		want = TRACE_STATE_KEY;
	}
	*exact = (want != NULL && memcmp(name, want, len) == 0);
	return k;
}

/*
 * TraceCheckHeaders
 *		Refuse (22023) headers whose trace keys are invalid: a trace key not
 *		in lowercase, an invalid traceparent or tracestate, a tracestate
 *		without a traceparent.  The caller has checked that 'headers' is an
 *		object of strings.
 */
void
TraceCheckHeaders(Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	TraceKey	key = TRACE_NONE;
	bool		has_parent = false;
	bool		has_state = false;

	if (JB_ROOT_COUNT(headers) == 0)
		return;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			bool		exact;

			key = trace_key(v.val.string.val, v.val.string.len, &exact);
			if (key != TRACE_NONE && !exact)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event header \"%.*s\" must be written \"%s\"",
								v.val.string.len, v.val.string.val,
								key == TRACE_PARENT ? TRACE_PARENT_KEY : TRACE_STATE_KEY),
						 errdetail("The W3C trace context headers are stored in lowercase.")));
		}
		else if (tok == WJB_VALUE && key != TRACE_NONE && v.type == jbvString)
		{
			const char *why;

			if (key == TRACE_PARENT)
			{
				has_parent = true;
				why = TraceParentInvalid(v.val.string.val, v.val.string.len);
			}
			else
			{
				has_state = true;
				why = TraceStateInvalid(v.val.string.val, v.val.string.len);
			}
			if (why != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid %s in event headers",
								key == TRACE_PARENT ? TRACE_PARENT_KEY : TRACE_STATE_KEY),
						 errdetail("%s", why)));
			key = TRACE_NONE;
		}
	}
	if (has_state && !has_parent)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event headers have a tracestate but no traceparent"),
				 errhint("Pass both, or set outbox_saga.traceparent and outbox_saga.tracestate.")));
}

/*
 * rebuild
 *		'object' (may be NULL) without its trace keys when drop_trace (any
 *		spelling), or only without those in 'drop' and those not spelled in
 *		lowercase; then the trace keys of 'extra' (an object, may be NULL)
 *		added.  Top level only; nested values are copied as they are.
 */
static Jsonb *
rebuild(Jsonb *object, bool drop_trace, const bool *drop, Jsonb *extra)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	int			pass;

	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (pass = 0; pass < 2; pass++)
	{
		Jsonb	   *src = pass == 0 ? object : extra;
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		bool		skip = false;

		if (src == NULL)
			continue;
		/* Top level only: nested values come as binary and are copied. */
		it = JsonbIteratorInit(&src->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				bool		exact;
				TraceKey	k = trace_key(v.val.string.val, v.val.string.len, &exact);

				if (pass == 0)
					skip = k != TRACE_NONE && (drop_trace || !exact || drop[k]);
				else
					skip = k == TRACE_NONE || !exact;
				if (!skip)
					(void) pushJsonbValue(&ps, WJB_KEY, &v);
			}
			else if (tok == WJB_VALUE)
			{
				if (!skip)
					(void) pushJsonbValue(&ps, WJB_VALUE, &v);
				skip = false;
			}
		}
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * TraceCurrentHeaders
 *		{"traceparent": ..., "tracestate": ...} of the settings (tracestate
 *		only if set), or NULL if no traceparent is set.  Built once per value
 *		and kept (in TopMemoryContext): the capture trigger calls it per row.
 *		The result must not be modified or freed.
 */
Jsonb *
TraceCurrentHeaders(void)
{
	static Jsonb *cached = NULL;
	static char *cached_parent = NULL;
	static char *cached_state = NULL;
	const char *state = OutboxTracestate ? OutboxTracestate : "";

	if (!TraceCurrentIsSet())
		return NULL;
	if (cached == NULL || strcmp(cached_parent, OutboxTraceparent) != 0 ||
		strcmp(cached_state, state) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		JsonbParseState *ps = NULL;
		JsonbValue	k;
		JsonbValue	v;
		Jsonb	   *jb;

		if (cached != NULL)
		{
			pfree(cached);
			pfree(cached_parent);
			pfree(cached_state);
			cached = NULL;
		}
		(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		k.type = v.type = jbvString;
		k.val.string.val = TRACE_PARENT_KEY;
		k.val.string.len = strlen(TRACE_PARENT_KEY);
		v.val.string.val = OutboxTraceparent;
		v.val.string.len = strlen(OutboxTraceparent);
		(void) pushJsonbValue(&ps, WJB_KEY, &k);
		(void) pushJsonbValue(&ps, WJB_VALUE, &v);
		if (state[0] != '\0')
		{
			k.val.string.val = TRACE_STATE_KEY;
			k.val.string.len = strlen(TRACE_STATE_KEY);
			v.val.string.val = (char *) state;
			v.val.string.len = strlen(state);
			(void) pushJsonbValue(&ps, WJB_KEY, &k);
			(void) pushJsonbValue(&ps, WJB_VALUE, &v);
		}
		jb = JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
		cached_parent = pstrdup(OutboxTraceparent);
		cached_state = pstrdup(state);
		cached = jb;
		MemoryContextSwitchTo(old);
	}
	return cached;
}

/*
 * has_key
 *		Does object 'jb' have the key 'key' (exact spelling)?
 */
static bool
has_key(Jsonb *jb, const char *key)
{
	return JB_ROOT_COUNT(jb) > 0 &&
		getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL) != NULL;
}

/*
 * TraceAddCurrent
 *		The headers of an event written now: 'headers' (checked with
 *		TraceCheckHeaders) as they are when they have a traceparent or no
 *		trace context is set, else with the settings' trace context added.
 */
Jsonb *
TraceAddCurrent(Jsonb *headers)
{
	Jsonb	   *current;

	if (!TraceCurrentIsSet() || has_key(headers, TRACE_PARENT_KEY))
		return headers;
	current = TraceCurrentHeaders();
	if (JB_ROOT_COUNT(headers) == 0)
		return current;
	return rebuild(headers, false, (bool[]) {false, false, false}, current);
}

/*
 * TraceSanitize
 *		'object' without the trace keys that may not be passed on: any not
 *		spelled in lowercase, an invalid traceparent, an invalid tracestate
 *		or one without a valid traceparent.  The object itself (not a copy)
 *		when nothing is dropped, which is the case of every event written
 *		by this version.  NULL and non-objects are returned as they are.
 */
Jsonb *
TraceSanitize(Jsonb *object)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	TraceKey	key = TRACE_NONE;
	bool		found[3] = {false, false, false};
	bool		drop[3] = {false, false, false};
	bool		any_drop = false;
	bool		exact;

	if (object == NULL || !JB_ROOT_IS_OBJECT(object) || JB_ROOT_IS_SCALAR(object) ||
		JB_ROOT_COUNT(object) == 0)
		return object;
	it = JsonbIteratorInit(&object->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = trace_key(v.val.string.val, v.val.string.len, &exact);
			if (key != TRACE_NONE && !exact)
			{
				any_drop = true;
				key = TRACE_NONE;
			}
		}
		else if (tok == WJB_VALUE && key != TRACE_NONE)
		{
			found[key] = true;
			if (v.type != jbvString ||
				(key == TRACE_PARENT ?
				 TraceParentInvalid(v.val.string.val, v.val.string.len) :
				 TraceStateInvalid(v.val.string.val, v.val.string.len)) != NULL)
				drop[key] = true;
			key = TRACE_NONE;
		}
	}
	if (found[TRACE_STATE] && (!found[TRACE_PARENT] || drop[TRACE_PARENT]))
		drop[TRACE_STATE] = true;
	if (!any_drop && !drop[TRACE_PARENT] && !drop[TRACE_STATE])
		return object;
	return rebuild(object, false, drop, NULL);
}

/*
 * TraceMerge
 *		'object' (NULL: an empty object) with the trace keys of 'trace' (an
 *		object holding a valid trace context, as TraceSanitize leaves it;
 *		NULL or without a traceparent: 'object' unchanged).  With 'replace', the
 *		trace keys 'object' had are dropped first (the trace context comes
 *		whole from 'trace'); without, 'object' keeps its own when it has a
 *		traceparent.
 */
Jsonb *
TraceMerge(Jsonb *object, Jsonb *trace, bool replace)
{
	if (trace == NULL || !JB_ROOT_IS_OBJECT(trace) || JB_ROOT_IS_SCALAR(trace) ||
		!has_key(trace, TRACE_PARENT_KEY))
		return object;
	if (object != NULL && (!JB_ROOT_IS_OBJECT(object) || JB_ROOT_IS_SCALAR(object)))
		return object;
	if (!replace && object != NULL && has_key(object, TRACE_PARENT_KEY))
		return object;
	return rebuild(object, true, (bool[]) {false, false, false}, trace);
}

/*
 * TraceGet
 *		The trace context of 'object' (headers or a saga's ctx), if it has a
 *		valid one: the traceparent in *traceparent, the tracestate (or NULL)
 *		in *tracestate, palloc'd.  Invalid values are never returned.
 */
bool
TraceGet(Jsonb *object, char **traceparent, char **tracestate)
{
	JsonbValue *v;

	*traceparent = NULL;
	*tracestate = NULL;
	if (object == NULL || !JB_ROOT_IS_OBJECT(object) || JB_ROOT_IS_SCALAR(object) ||
		JB_ROOT_COUNT(object) == 0)
		return false;
	v = getKeyJsonValueFromContainer(&object->root, TRACE_PARENT_KEY,
									 strlen(TRACE_PARENT_KEY), NULL);
	if (v == NULL || v->type != jbvString ||
		TraceParentInvalid(v->val.string.val, v->val.string.len) != NULL)
		return false;
	*traceparent = pnstrdup(v->val.string.val, v->val.string.len);
	v = getKeyJsonValueFromContainer(&object->root, TRACE_STATE_KEY,
									 strlen(TRACE_STATE_KEY), NULL);
	if (v != NULL && v->type == jbvString && v->val.string.len > 0 &&
		TraceStateInvalid(v->val.string.val, v->val.string.len) == NULL)
		*tracestate = pnstrdup(v->val.string.val, v->val.string.len);
	return true;
}

/*
 * TraceSetForCall
 *		Make the trace context of 'object' (an event's headers, a saga's
 *		ctx) the current one, so that what a handler or step function
 *		writes (emit, capture, saga.start) carries it: both settings are
 *		set (GUC_ACTION_SAVE), to '' when 'object' has none and some are
 *		set.  Only a valid context is ever set.  The caller runs inside a
 *		GUC nest level that is undone when the call ends (RunAsOwner).
 */
void
TraceSetForCall(Jsonb *object)
{
	char	   *traceparent;
	char	   *tracestate;

	if (!TraceGet(object, &traceparent, &tracestate))
	{
		if (!TraceCurrentIsSet() &&
			(OutboxTracestate == NULL || OutboxTracestate[0] == '\0'))
			return;
		traceparent = "";
	}
	(void) set_config_option("outbox_saga.traceparent", traceparent,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("outbox_saga.tracestate", tracestate ? tracestate : "",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

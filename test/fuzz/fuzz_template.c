/*-------------------------------------------------------------------------
 *
 * fuzz_template.c
 *		libFuzzer target: src/sink/template.c, the {topic}/{event_type}
 *		templates of kafka topics and nats subjects.
 *
 * Input: template, topic and event type separated by NUL bytes (missing
 * parts: "orders", "OrderPaid").  Properties: SinkExpandTemplate agrees
 * with a straightforward reference expansion (or fails exactly where the
 * reference finds an unknown placeholder, *bad being at most 32 bytes of
 * it); SinkCheckTemplate either accepts or raises a clean 22023 error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "sink/template.h"

#include "fuzz_shim.h"

/* A name checker like the kinds' (empty, blanks, '*', too long). */
static const char *
name_problem(const char *name)
{
	const char *p;

	if (*name == '\0')
		return "it is empty";
	if (strlen(name) > 255)
		return psprintf("it is longer than %d bytes", 255);
	for (p = name; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == '*')
			return "it contains a blank, a control character or a wildcard";
	return NULL;
}

/* The reference: NULL on an unknown placeholder, with *bad_at set. */
static char *
reference_expand(const char *t, const char *topic, const char *type,
				 const char **bad_at)
{
	StringInfoData out;
	size_t		i = 0;
	size_t		n = strlen(t);

	initStringInfo(&out);
	while (i < n)
	{
		if (t[i] != '{')
			appendStringInfoChar(&out, t[i++]);
		else if (n - i >= 7 && memcmp(t + i, "{topic}", 7) == 0)
		{
			appendStringInfoString(&out, topic);
			i += 7;
		}
		else if (n - i >= 12 && memcmp(t + i, "{event_type}", 12) == 0)
		{
			appendStringInfoString(&out, type);
			i += 12;
		}
		else
		{
			*bad_at = t + i;
			return NULL;
		}
	}
	return out.data;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf;
	const char *parts[3] = {"", "orders", "OrderPaid"};
	int			nparts = 1;
	size_t		i;
	char	   *bad = NULL;
	char	   *got;
	char	   *want;
	const char *bad_at = NULL;
	volatile bool raised = false;

	if (size > 4096)
		return 0;
	FuzzBeginInput();
	buf = FuzzCString(data, size);
	parts[0] = buf;
	for (i = 0; i < size && nparts < 3; i++)
		if (buf[i] == '\0')
			parts[nparts++] = buf + i + 1;

	got = SinkExpandTemplate(parts[0], parts[1], parts[2], &bad);
	want = reference_expand(parts[0], parts[1], parts[2], &bad_at);
	if ((got == NULL) != (want == NULL))
		FuzzFail("SinkExpandTemplate %s where the reference %s",
				 got ? "succeeded" : "failed", want ? "succeeded" : "failed");
	if (got != NULL && strcmp(got, want) != 0)
		FuzzFail("SinkExpandTemplate gave \"%s\", the reference \"%s\"", got, want);
	if (got == NULL)
	{
		if (bad == NULL || bad[0] != '{' || strlen(bad) > 32 ||
			strncmp(bad, bad_at, strlen(bad)) != 0)
			FuzzFail("*bad is not the start of the unknown placeholder");
	}
	else if (bad != NULL)
		FuzzFail("*bad set on success");

	PG_TRY();
	{
		SinkCheckTemplate("subject", parts[0], parts[1], parts[2],
						  name_problem, "NATS subject", "subject");
	}
	PG_CATCH();
	{
		raised = true;
	}
	PG_END_TRY();
	if (raised)
	{
		FuzzCheckError();
		if (FuzzLastError.sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
			FuzzFail("SinkCheckTemplate raised %s, not 22023",
					 unpack_sql_state(FuzzLastError.sqlerrcode));
	}
	else if (want == NULL || name_problem(want) != NULL)
		FuzzFail("SinkCheckTemplate accepted a template whose sample is unusable");

	FuzzEndInput();
	return 0;
}

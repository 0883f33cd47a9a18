/*-------------------------------------------------------------------------
 *
 * template.c
 *		Names made from a template with {topic} and {event_type}: a kafka
 *		destination's "topic", a nats destination's "subject".
 *
 * A template is checked once when the destination is created or altered
 * (SinkCheckTemplate: only known placeholders, and a sample expansion must
 * be a legal name of the kind), and expanded for every event at delivery
 * (SinkExpandTemplate), where the kind checks the result again: an event's
 * topic or type can make an illegal name, which is that event's dead
 * letter, not an error.  Pure functions: no transaction, no lock, nothing
 * kept across calls.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "lib/stringinfo.h"

#include "sink/template.h"

/*
 * SinkExpandTemplate
 *		See template.h.
 */
char *
SinkExpandTemplate(const char *tmpl, const char *topic, const char *event_type,
				   char **bad)
{
	StringInfoData buf;
	const char *p = tmpl;

	initStringInfo(&buf);
	*bad = NULL;
	while (*p)
	{
		if (*p == '{')
		{
			if (strncmp(p, "{topic}", 7) == 0)
			{
				appendStringInfoString(&buf, topic);
				p += 7;
				continue;
			}
			if (strncmp(p, "{event_type}", 12) == 0)
			{
				appendStringInfoString(&buf, event_type);
				p += 12;
				continue;
			}
			*bad = pnstrdup(p, Min(strcspn(p, "}") + 1, 32));
			pfree(buf.data);
			return NULL;
		}
		appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/*
 * SinkCheckTemplate
 *		See template.h.
 */
void
SinkCheckTemplate(const char *key, const char *tmpl, const char *sample_topic,
				  const char *sample_type, SinkNameProblem problem,
				  const char *what, const char *noun)
{
	char	   *bad;
	char	   *sample;
	const char *why;

	sample = SinkExpandTemplate(tmpl, sample_topic, sample_type, &bad);
	if (sample == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown placeholder \"%s\" in configuration key \"%s\"",
						bad, key),
				 errhint("The placeholders are {topic} and {event_type}.")));
	if ((why = problem(sample)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"%s\" is not a valid %s", key, what),
				 errdetail("The %s \"%s\" is unusable: %s.", noun, tmpl, why)));
	pfree(sample);
}

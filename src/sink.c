/*-------------------------------------------------------------------------
 *
 * sink.c
 *		The registry of destination kinds.
 *
 * Each kind lives in its own file under src/sink/ and is listed here once.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "lib/stringinfo.h"

#include "sink.h"

static const OutboxSink *const sinks[] = {
	&SinkFunction,
	&SinkNotify,
	&SinkHttp,
	&SinkKafka,
	&SinkNats,
};

/*
 * SinkLookup
 *		The sink of a kind; an error (or NULL if missing_ok) if unknown.
 */
const OutboxSink *
SinkLookup(const char *kind, bool missing_ok)
{
	int			i;

	for (i = 0; i < lengthof(sinks); i++)
		if (strcmp(sinks[i]->kind, kind) == 0)
			return sinks[i];
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown destination kind \"%s\"", kind),
				 errhint("Known kinds: %s.", SinkKindList())));
	return NULL;
}

/*
 * SinkKindList
 *		"function, notify, ..." for messages.
 */
const char *
SinkKindList(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < lengthof(sinks); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", sinks[i]->kind);
	return buf.data;
}

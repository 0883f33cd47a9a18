/*-------------------------------------------------------------------------
 *
 * sink.c
 *		The registry of destination kinds, and the event_id text every
 *		kind puts on the wire.
 *
 * Each kind lives in its own file under src/sink/ and is listed here once.
 * What several network kinds share lives beside them: dest_cache.c (state
 * kept across batches), lane_plan.c (start order within a batch) and
 * sink_wait.c (waiting for a broker library's threads with the latch).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "lib/stringinfo.h"

#include "sink/sink.h"

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

/*
 * SinkFormatUuid
 *		The canonical text of a UUID into 'out' (SINK_UUID_TEXT_LEN bytes).
 */
void
SinkFormatUuid(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			i;
	char	   *p = out;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid->data[i] >> 4];
		*p++ = hex[uuid->data[i] & 0x0F];
	}
	*p = '\0';
}

/*
 * SinkOutcomesFailAll
 *		Every one of outcomes[0..n-1] failed with 'error' (retried later).
 */
void
SinkOutcomesFailAll(SinkOutcome *outcomes, int n, char *error)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		outcomes[i].status = SINK_RETRY;
		outcomes[i].error = error;
	}
}

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
 * Kafka and NATS are optional at build time (make WITH_KAFKA=0 / WITH_NATS=0,
 * which leave kafka.c / nats.c and their libraries out and do not define
 * OUTBOX_SAGA_WITH_KAFKA / _NATS).  A kind left out is still a known name:
 * SinkLookup() raises feature_not_supported for it, so create_destination
 * says the build lacks it, and a destination of that kind already in a
 * database (restored from a full build) fails its batches with that message
 * in last_error and backs off, its events kept until a full build delivers
 * them.  SinkKindList() names only the kinds this build delivers.
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
	&SinkPull,
#ifdef OUTBOX_SAGA_WITH_KAFKA
	&SinkKafka,
#endif
#ifdef OUTBOX_SAGA_WITH_NATS
	&SinkNats,
#endif
};

/* Kinds this build was made without, and the make option that adds each. */
typedef struct MissingKind
{
	const char *kind;
	const char *library;
	const char *option;
} MissingKind;

static const MissingKind missing_kinds[] = {
#ifndef OUTBOX_SAGA_WITH_KAFKA
	{"kafka", "librdkafka", "WITH_KAFKA"},
#endif
#ifndef OUTBOX_SAGA_WITH_NATS
	{"nats", "cnats", "WITH_NATS"},
#endif
	{NULL, NULL, NULL}
};

/*
 * SinkLookup
 *		The sink of a kind; an error (or NULL if missing_ok) if unknown or
 *		left out of this build (feature_not_supported).
 */
const OutboxSink *
SinkLookup(const char *kind, bool missing_ok)
{
	int			i;

	for (i = 0; i < lengthof(sinks); i++)
		if (strcmp(sinks[i]->kind, kind) == 0)
			return sinks[i];
	for (i = 0; missing_kinds[i].kind != NULL; i++)
		if (strcmp(missing_kinds[i].kind, kind) == 0)
		{
			if (missing_ok)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("destination kind \"%s\" is not supported by this build of outbox_saga",
							kind),
					 errdetail("The library was built with %s=0, without %s.",
							   missing_kinds[i].option, missing_kinds[i].library),
					 errhint("Install a build with %s=1 (the default). Kinds of this build: %s.",
							 missing_kinds[i].option, SinkKindList())));
		}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown destination kind \"%s\"", kind),
				 errhint("Known kinds: %s.", SinkKindList())));
	return NULL;
}

/*
 * SinkKindList
 *		"function, notify, ..." for messages: the kinds this build delivers.
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

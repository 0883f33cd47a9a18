/*-------------------------------------------------------------------------
 *
 * kafka.c
 *		Destination kind "kafka": placeholder until the kafka sink lands.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "sink.h"

static const char *const kafka_keys[] = {NULL};

static void
kafka_validate(Jsonb *config, Oid owner)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("destination kind \"kafka\" is not available yet")));
}

const OutboxSink SinkKafka = {
	.kind = "kafka",
	.keys = kafka_keys,
	.validate = kafka_validate,
};

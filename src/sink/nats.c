/*-------------------------------------------------------------------------
 *
 * nats.c
 *		Destination kind "nats": placeholder until the nats sink lands.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "sink.h"

static const char *const nats_keys[] = {NULL};

static void
nats_validate(Jsonb *config, Oid owner)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("destination kind \"nats\" is not available yet")));
}

const OutboxSink SinkNats = {
	.kind = "nats",
	.keys = nats_keys,
	.validate = nats_validate,
};

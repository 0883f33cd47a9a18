/*-------------------------------------------------------------------------
 *
 * http.c
 *		Destination kind "http": placeholder until the HTTP sink lands.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "sink.h"

static const char *const http_keys[] = {NULL};

static void
http_validate(Jsonb *config, Oid owner)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("destination kind \"http\" is not available yet")));
}

const OutboxSink SinkHttp = {
	.kind = "http",
	.keys = http_keys,
	.validate = http_validate,
};

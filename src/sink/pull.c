/*-------------------------------------------------------------------------
 *
 * pull.c
 *		Destination kind "pull": consumed by application code over SQL.
 *
 * The dispatcher never delivers a pull destination (deliver and
 * deliver_batch are both NULL: worker/dispatcher.c leaves such kinds out of
 * its passes); sessions take its events with outbox.next_batch() and
 * acknowledge them with outbox.finish_batch() (dispatch/pull.c).  Its
 * config has no keys of its own: the common keys apply (max_attempts,
 * backoff_base, backoff_max for outbox.retry_event(); timeout is the
 * default lease of a batch; batch_size is not used, next_batch's max_events
 * is).  "ordered" cannot be false: an aggregate's events are never in two
 * unfinished batches, and come in commit order (G4).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "sink/sink.h"

static const char *const pull_keys[] = {NULL};

/*
 * pull_validate
 *		A pull destination is always ordered.
 */
static void
pull_validate(Jsonb *config, Oid owner)
{
	DestinationConfig parsed;

	DestConfigParseCommon(config, &parsed);
	if (!parsed.ordered)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a pull destination cannot be unordered"),
				 errdetail("An aggregate's events are never in two unfinished batches of a pull destination, and come in commit order."),
				 errhint("Remove the config key \"ordered\".")));
}

const OutboxSink SinkPull = {
	.kind = "pull",
	.keys = pull_keys,
	.validate = pull_validate,
};

/*
 * SinkIsPushed
 *		Whether the dispatcher delivers destinations of 'sink' (NULL: a kind
 *		this build lacks, which it tries and fails).
 */
bool
SinkIsPushed(const OutboxSink *sink)
{
	return sink == NULL || sink->deliver != NULL || sink->deliver_batch != NULL;
}

/*-------------------------------------------------------------------------
 *
 * notify.c
 *		Destination kind "notify": NOTIFY on a channel for each event.
 *
 * config: {"channel": "..."}.  The payload is the event as JSON (to_jsonb
 * of the outbox.events row); when that would not fit in a notification it
 * is {"event_id": ..., "id": ..., "truncated": true} and the listener reads
 * the rest from elsewhere.  The notification is queued in the transaction
 * that records the delivery and sent when it commits, so a listener hears
 * of each event once per delivery (G5).  Anyone who may connect to the
 * database may LISTEN: use notify destinations only for data every such role
 * may see.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/htup_details.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "sink/sink.h"
#include "base/tojsonb.h"

/* What Async_Notify accepts (the server's NOTIFY_PAYLOAD_MAX_LENGTH). */
#define NOTIFY_MAX_PAYLOAD	(BLCKSZ - NAMEDATALEN - 128)

static const char *const notify_keys[] = {"channel", NULL};

/*
 * notify_validate
 *		config must name a channel that NOTIFY accepts.
 */
static void
notify_validate(Jsonb *config, Oid owner)
{
	char	   *channel = DestConfigString(config, "channel");

	if (channel == NULL || channel[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a notify destination needs a non-empty config key \"channel\""),
				 errhint("For example '{\"channel\": \"order_events\"}'.")));
	if (strlen(channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("notify channel name is too long"),
				 errdetail("A channel name has at most %d bytes.", NAMEDATALEN - 1)));
}

/*
 * notify_deliver
 *		Queue the notification for this event.
 */
static void
notify_deliver(const DestinationConfig *dest, const DispatchEvent *ev)
{
	static ToJsonbCall to_jsonb;
	static bool prepared = false;
	char	   *channel = DestConfigString(dest->config, "channel");
	char	   *payload;

	if (channel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a notify destination needs the config key \"channel\"")));

	if (!prepared || to_jsonb.typid != HeapTupleHeaderGetTypeId(DatumGetHeapTupleHeader(ev->row)))
	{
		ToJsonbPrepare(&to_jsonb,
					   HeapTupleHeaderGetTypeId(DatumGetHeapTupleHeader(ev->row)),
					   TopMemoryContext);
		prepared = true;
	}
	payload = JsonbToCString(NULL,
							 &DatumGetJsonbP(ToJsonbInvoke(&to_jsonb, ev->row))->root,
							 0);
	if (strlen(payload) >= NOTIFY_MAX_PAYLOAD)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfo(&buf,
						 "{\"event_id\": \"%s\", \"id\": " INT64_FORMAT ", \"truncated\": true}",
						 DatumGetCString(DirectFunctionCall1(uuid_out,
															 UUIDPGetDatum(&ev->event_id))),
						 ev->id);
		payload = buf.data;
	}
	Async_Notify(channel, payload);
}

const OutboxSink SinkNotify = {
	.kind = "notify",
	.keys = notify_keys,
	.validate = notify_validate,
	.deliver = notify_deliver,
};

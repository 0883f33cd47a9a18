/*-------------------------------------------------------------------------
 *
 * http.h
 *		The "http" destination kind (http.c).  The kind itself is reached
 *		through sink.h (SinkHttp); this header only keeps the saga files
 *		building while they still use the old names of the HTTP client.
 *
 * TEMPORARY: until saga/saga_api.c and saga/saga_driver.c include
 * "http/http_client.h" and call HttpClientSend / HttpClientCallProblem,
 * the old names below map to the new ones.  Remove this header's body
 * then (and this header, if nothing else needs it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_HTTP_H
#define OUTBOX_SAGA_SINK_HTTP_H

#include "http/http_client.h"

/* TEMPORARY: old names, until the saga files use the new ones. */
#define SinkHttpSend HttpClientSend
#define SinkHttpCallProblem HttpClientCallProblem

#endif							/* OUTBOX_SAGA_SINK_HTTP_H */

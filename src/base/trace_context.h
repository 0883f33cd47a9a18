/*-------------------------------------------------------------------------
 *
 * trace_context.h
 *		W3C Trace Context (traceparent, tracestate): validation, the
 *		transaction settings, and the trace keys of an event's headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_TRACE_CONTEXT_H
#define OUTBOX_SAGA_TRACE_CONTEXT_H

#include "utils/guc.h"
#include "utils/jsonb.h"

/* The header names (and keys of an event's headers, of a saga's ctx). */
#define TRACE_PARENT_KEY	"traceparent"
#define TRACE_STATE_KEY		"tracestate"

/* W3C limits: a version-00 traceparent, the tracestate list. */
#define TRACE_PARENT_LEN		55
#define TRACE_STATE_MAX_LEN		512
#define TRACE_STATE_MAX_MEMBERS	32

/* outbox_saga.traceparent / .tracestate: "" when not set (never NULL). */
extern char *OutboxTraceparent;
extern char *OutboxTracestate;

extern const char *TraceParentInvalid(const char *s, int len);
extern const char *TraceStateInvalid(const char *s, int len);
extern bool TraceCheckParentSetting(char **newval, void **extra, GucSource source);
extern bool TraceCheckStateSetting(char **newval, void **extra, GucSource source);

extern void TraceCheckHeaders(Jsonb *headers);
extern Jsonb *TraceAddCurrent(Jsonb *headers);
extern Jsonb *TraceCurrentHeaders(void);
extern Jsonb *TraceSanitize(Jsonb *object);
extern Jsonb *TraceMerge(Jsonb *object, Jsonb *trace, bool replace);
extern bool TraceGet(Jsonb *object, char **traceparent, char **tracestate);
extern void TraceSetForCall(Jsonb *object);

/*
 * Is a trace context set for this transaction?  The capture trigger's only
 * per-row cost when none is: one pointer and one byte.
 */
#define TraceCurrentIsSet() \
	(OutboxTraceparent != NULL && OutboxTraceparent[0] != '\0')

#endif							/* OUTBOX_SAGA_TRACE_CONTEXT_H */

/*-------------------------------------------------------------------------
 *
 * capture_args.h
 *		The arguments of the capture trigger outbox.capture(), parsed
 *		without the catalog: "name=value" strings and column lists.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_CAPTURE_ARGS_H
#define OUTBOX_SAGA_CAPTURE_ARGS_H

#include "nodes/pg_list.h"

/* The trigger's arguments, in the order of CaptureArgNames[]. */
typedef enum CaptureArg
{
	CAPTURE_ARG_TOPIC,
	CAPTURE_ARG_KEY,
	CAPTURE_ARG_IGNORE,
	CAPTURE_ARG_COLUMNS,
	CAPTURE_ARG_TYPE_INSERT,
	CAPTURE_ARG_TYPE_UPDATE,
	CAPTURE_ARG_TYPE_DELETE,
	CAPTURE_ARG_COUNT
} CaptureArg;

/* "topic", "key", ...: the names of the arguments, by CaptureArg. */
extern const char *const CaptureArgNames[CAPTURE_ARG_COUNT];

/*
 * Split the trigger's "name=value" arguments into values[] (indexed by
 * CaptureArg, NULL when not given; each points into its argument).  An
 * argument without '=', an unknown name and a name given twice are errors
 * (22023).
 */
extern void CaptureParseArgs(int nargs, char **args, const char **values);

/*
 * The column names of list 'value' (as SplitIdentifierString parses it:
 * unquoted names down-cased, "quoted" names kept, each cut to 63 bytes),
 * palloc'd.  A syntax error and an empty list are errors (22023) naming
 * the list as 'label' ("key=", "key_columns").  Whether the names are
 * columns of the table is the caller's business.
 */
extern List *CaptureSplitColumnList(const char *value, const char *label);

#endif							/* OUTBOX_SAGA_CAPTURE_ARGS_H */

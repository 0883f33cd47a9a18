/*-------------------------------------------------------------------------
 *
 * capture_args.c
 *		The arguments of the capture trigger outbox.capture(), parsed
 *		without the catalog.
 *
 * A capture trigger's arguments are "name=value" strings (topic=, key=,
 * ignore=, columns=, type_insert=, type_update=, type_delete=); key=,
 * ignore= and columns= hold comma-separated column lists.  This file
 * splits them; capture.c checks the values against the table (columns
 * that exist, topic privileges) and builds the trigger's state.  Pure
 * functions: no catalog, no transaction state, no lock; results are
 * allocated in the caller's memory context and errors are 22023.  Being
 * pure, they are what test/fuzz's capture_args target feeds random input,
 * outside the server.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "utils/varlena.h"

#include "events/capture_args.h"

const char *const CaptureArgNames[CAPTURE_ARG_COUNT] = {
	"topic", "key", "ignore", "columns",
	"type_insert", "type_update", "type_delete"
};

/*
 * CaptureParseArgs
 *		See capture_args.h.
 */
void
CaptureParseArgs(int nargs, char **args, const char **values)
{
	int			i;

	for (i = 0; i < CAPTURE_ARG_COUNT; i++)
		values[i] = NULL;
	for (i = 0; i < nargs; i++)
	{
		const char *eq = strchr(args[i], '=');
		int			namelen;
		int			a;

		if (eq == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid argument \"%s\" of outbox.capture()", args[i]),
					 errdetail("Arguments have the form name=value."),
					 errhint("Valid names are topic, key, ignore, columns, type_insert, type_update and type_delete.")));
		namelen = eq - args[i];
		for (a = 0; a < CAPTURE_ARG_COUNT; a++)
			if (strlen(CaptureArgNames[a]) == namelen &&
				strncmp(CaptureArgNames[a], args[i], namelen) == 0)
				break;
		if (a == CAPTURE_ARG_COUNT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown argument \"%.*s\" of outbox.capture()",
							namelen, args[i]),
					 errhint("Valid names are topic, key, ignore, columns, type_insert, type_update and type_delete.")));
		if (values[a] != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("argument \"%s\" of outbox.capture() is given more than once",
							CaptureArgNames[a])));
		values[a] = eq + 1;
	}
}

/*
 * CaptureSplitColumnList
 *		See capture_args.h.
 */
List *
CaptureSplitColumnList(const char *value, const char *label)
{
	char	   *raw = pstrdup(value);
	List	   *names;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid column list in %s", label),
				 errdetail("The list \"%s\" is not a comma-separated list of column names.",
						   value),
				 errhint("Quote names that contain commas, spaces or capitals with double quotes.")));
	if (names == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must name at least one column", label)));
	return names;
}

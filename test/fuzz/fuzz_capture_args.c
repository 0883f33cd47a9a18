/*-------------------------------------------------------------------------
 *
 * fuzz_capture_args.c
 *		libFuzzer target: src/events/capture_args.c, the arguments of the
 *		capture trigger outbox.capture() ("name=value" strings and the
 *		column lists of key=, ignore= and columns=).
 *
 * Input: the trigger's arguments separated by NUL bytes (at most 16; an
 * argument that is not valid UTF-8 is skipped, as the server never stores
 * one).  Properties: CaptureParseArgs either raises a clean 22023 error or
 * gives each known name at most once, each value pointing just past the
 * '=' of its argument; CaptureSplitColumnList either raises a clean 22023
 * error or returns at least one name, each non-empty, at most 63 bytes
 * and valid UTF-8.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "events/capture_args.h"

#include "fuzz_shim.h"

static void
check_clean_22023(const char *what)
{
	FuzzCheckError();
	if (FuzzLastError.sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
		FuzzFail("%s raised %s, not 22023", what,
				 unpack_sql_state(FuzzLastError.sqlerrcode));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf;
	char	   *args[16];
	const char *values[CAPTURE_ARG_COUNT];
	int			nargs = 0;
	size_t		start = 0;
	size_t		i;
	int			a;
	volatile bool raised = false;

	if (size > 4096)
		return 0;
	FuzzBeginInput();
	buf = FuzzCString(data, size);
	for (i = 0; i <= size && nargs < 16; i++)
	{
		if (i == size || buf[i] == '\0')
		{
			if (FuzzValidUtf8(buf + start, i - start))
				args[nargs++] = buf + start;
			start = i + 1;
		}
	}

	PG_TRY();
	{
		CaptureParseArgs(nargs, args, values);
	}
	PG_CATCH();
	{
		raised = true;
	}
	PG_END_TRY();
	if (raised)
	{
		check_clean_22023("CaptureParseArgs");
		FuzzEndInput();
		return 0;
	}

	for (a = 0; a < CAPTURE_ARG_COUNT; a++)
	{
		int			found = 0;
		int			j;

		for (j = 0; j < nargs; j++)
		{
			size_t		nlen = strlen(CaptureArgNames[a]);

			if (strncmp(args[j], CaptureArgNames[a], nlen) == 0 &&
				args[j][nlen] == '=')
			{
				found++;
				if (values[a] != args[j] + nlen + 1)
					FuzzFail("value of %s does not follow its '='",
							 CaptureArgNames[a]);
			}
		}
		if (found > 1 || (found == 0) != (values[a] == NULL))
			FuzzFail("argument %s found %d times, value %s", CaptureArgNames[a],
					 found, values[a] ? "set" : "unset");
	}

	for (a = CAPTURE_ARG_KEY; a <= CAPTURE_ARG_COLUMNS; a++)
	{
		List	   *names = NIL;
		ListCell   *lc;

		if (values[a] == NULL)
			continue;
		raised = false;
		PG_TRY();
		{
			names = CaptureSplitColumnList(values[a], "key=");
		}
		PG_CATCH();
		{
			raised = true;
		}
		PG_END_TRY();
		if (raised)
		{
			check_clean_22023("CaptureSplitColumnList");
			continue;
		}
		if (names == NIL)
			FuzzFail("an empty column list was accepted");
		foreach(lc, names)
		{
			const char *name = lfirst(lc);
			int			len = strlen(name);

			if (len == 0 || len >= NAMEDATALEN)
				FuzzFail("a column name of %d bytes", len);
			if (!FuzzValidUtf8(name, len))
				FuzzFail("a column name that is not valid UTF-8");
		}
	}
	FuzzEndInput();
	return 0;
}

/*-------------------------------------------------------------------------
 *
 * sql_args.c
 *		Checks of the arguments of SQL-callable functions.
 *
 * Every SQL API of the extension checks its arguments with these, so that
 * the same mistake gets the same message and SQLSTATE wherever it is made:
 * a NULL where a value is required is 22004, an empty text 22023, a text
 * over its limit 42622 (object names) or 22001 (values stored with data),
 * a control character 22023.  Errors never quote the value (it may be
 * long, binary or a secret); they name the argument.  Nothing here touches
 * a table or holds a lock; everything runs in the caller's transaction and
 * memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "utils/builtins.h"

#include "base/sql_args.h"

/*
 * SqlRequireArg
 *		Error out if argument 'argno' (named 'name' in the message) is NULL.
 */
void
SqlRequireArg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/*
 * SqlCheckLength
 *		Error out if a text of 'len' bytes, named 'what', is empty or longer
 *		than 'max_bytes'.  Its bytes are not looked at (see SqlCheckText).
 */
void
SqlCheckLength(const char *what, int len, int max_bytes, SqlTextKind kind)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > max_bytes)
		ereport(ERROR,
				(errcode(kind == SQL_TEXT_NAME ? ERRCODE_NAME_TOO_LONG :
						 ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", what),
				 errdetail("It has %d bytes; the limit is %d.", len, max_bytes)));
}

/*
 * SqlCheckText
 *		Check the 'len' bytes at 'p', named 'what' in messages: not empty,
 *		at most 'max_bytes' bytes, no control characters and none of the
 *		characters in 'forbidden' (NULL: none more).  'invalid_detail' is
 *		the DETAIL of the invalid-character error (NULL: a generic one).
 */
void
SqlCheckText(const char *what, const char *p, int len, int max_bytes,
			 SqlTextKind kind, const char *forbidden,
			 const char *invalid_detail)
{
	int			i;

	SqlCheckLength(what, len, max_bytes, kind);
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) p[i];

		if (c < 0x20 || c == 0x7F ||
			(forbidden != NULL && c != '\0' && strchr(forbidden, c) != NULL))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s contains an invalid character", what),
					 errdetail("%s", invalid_detail != NULL ? invalid_detail :
							   "It may not contain control characters.")));
	}
}

/*
 * SqlNameText
 *		The C string of 'name', an object name (42622 when too long) named
 *		'what' in messages, after SqlCheckText's checks.
 */
char *
SqlNameText(text *name, const char *what, int max_bytes,
			const char *invalid_detail)
{
	SqlCheckText(what, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name), max_bytes,
				 SQL_TEXT_NAME, NULL, invalid_detail);
	return text_to_cstring(name);
}

/*
 * SqlParseInterval
 *		interval_in() of 'str'.  Its syntax errors quote the input; this one
 *		says "<what> is not a valid interval" instead, with the same SQLSTATE.
 *		Nothing runs between catching and raising, so no subtransaction is
 *		needed: the new error aborts the transaction exactly as the caught
 *		one would have.  Any other error is re-thrown as it is.
 */
Interval *
SqlParseInterval(const char *what, const char *str)
{
	MemoryContext cxt = CurrentMemoryContext;
	Interval   *result = NULL;

	PG_TRY();
	{
		result = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													   CStringGetDatum(str),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s is not a valid interval", what),
				 errhint("Write an interval such as \"30 seconds\" or \"00:05:00\", or a number of seconds.")));
	}
	PG_END_TRY();
	return result;
}

/*
 * SqlHideStatementCallback
 *		An error context callback: keep the statement text out of the server
 *		log of any error (for statements whose arguments may carry secrets,
 *		such as destination configs).
 */
void
SqlHideStatementCallback(void *arg)
{
	errhidestmt(true);
}

/*
 * SqlCallHidingStatement
 *		fn(fcinfo) with SqlHideStatementCallback in place: for SQL functions
 *		whose arguments may carry secrets (destination configs, the http
 *		headers of saga calls).
 */
Datum
SqlCallHidingStatement(PGFunction fn, FunctionCallInfo fcinfo)
{
	ErrorContextCallback errcb;
	Datum		result;

	errcb.callback = SqlHideStatementCallback;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	result = fn(fcinfo);
	error_context_stack = errcb.previous;
	return result;
}

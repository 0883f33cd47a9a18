/*-------------------------------------------------------------------------
 *
 * fuzz_shim.c
 *		A minimal stand-in for the PostgreSQL server, so that the project's
 *		pure parsers (compiled unchanged from src/) run in a libFuzzer
 *		target outside the server.
 *
 * What it provides, and how faithful it is:
 *	- Memory contexts and palloc/pfree/repalloc: every chunk is its own
 *	  malloc() (so AddressSanitizer sees every overflow and use after
 *	  free, which it cannot inside a real AllocSet block), linked into its
 *	  context so that a context can be freed whole.  Sizes above
 *	  MaxAllocSize raise the server's error.
 *	- ereport/elog: errstart/errfinish and the err*() functions record the
 *	  error in FuzzLastError (messages formatted with the server's own
 *	  printf, libpgport's), call the error context callbacks, and for
 *	  ERROR longjmp to the innermost PG_TRY, exactly as the server does.
 *	  Lower levels return.  FATAL and above, or an ERROR outside any
 *	  PG_TRY, abort (a finding).
 *	- Lists: lappend and list_free on the server's List layout.
 *	- SplitIdentifierString and SplitGUCList (server functions of
 *	  utils/adt/varlena.c), written here from their documented behaviour:
 *	  whitespace around items, "quoted" items with "" for a quote, an
 *	  empty unquoted item or unterminated quote is a syntax error; the
 *	  identifier variant down-cases unquoted ASCII letters and cuts every
 *	  name to NAMEDATALEN - 1 bytes at a UTF-8 character boundary (the
 *	  database encoding of the targets is UTF-8).  These are not the code
 *	  under test; they only have to hand the project's code what the
 *	  server would.
 *	- Custom settings: DefineCustomStringVariable records the variable
 *	  and its check hook; FuzzSetStringGuc sets it the way SET would.
 *	- StringInfo, psprintf, base64 and the UTF-8 tables are the real
 *	  ones, linked from libpgcommon/libpgport (their frontend builds,
 *	  which call palloc and so use this shim's contexts).
 *
 * Anything else the compiled files reference but the targets never reach
 * (the jsonb functions of mask.c's MaskConfig) is a stub that aborts, so
 * that reaching it is a visible finding rather than silent nonsense.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "mb/pg_wchar.h"
#include "nodes/memnodes.h"
#include "nodes/pg_list.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "fuzz_shim.h"

/* ------------------------------------------------------------------------
 * Memory contexts
 * ------------------------------------------------------------------------
 */

typedef struct ShimChunk
{
	struct ShimChunk *prev;
	struct ShimChunk *next;
	struct ShimContext *cxt;
	size_t		size;
} ShimChunk;

typedef struct ShimContext
{
	MemoryContextData base;		/* first: a MemoryContext points here */
	ShimChunk	head;			/* circular list of the chunks */
	const char *name;
} ShimContext;

MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext ErrorContext = NULL;
MemoryContext CacheMemoryContext = NULL;
MemoryContext TopTransactionContext = NULL;
MemoryContext CurTransactionContext = NULL;

static MemoryContext input_context = NULL;

static ShimContext *
shim_context_new(const char *name)
{
	ShimContext *c = calloc(1, sizeof(ShimContext));

	if (c == NULL)
		abort();
	c->head.prev = c->head.next = &c->head;
	c->name = name;
	c->base.name = name;
	return c;
}

static void
shim_context_reset(ShimContext *c)
{
	ShimChunk  *ch = c->head.next;

	while (ch != &c->head)
	{
		ShimChunk  *next = ch->next;

		free(ch);
		ch = next;
	}
	c->head.prev = c->head.next = &c->head;
}

static void
shim_init(void)
{
	if (TopMemoryContext != NULL)
		return;
	TopMemoryContext = (MemoryContext) shim_context_new("TopMemoryContext");
	ErrorContext = (MemoryContext) shim_context_new("ErrorContext");
	CacheMemoryContext = (MemoryContext) shim_context_new("CacheMemoryContext");
	input_context = (MemoryContext) shim_context_new("FuzzInput");
	TopTransactionContext = input_context;
	CurTransactionContext = input_context;
	CurrentMemoryContext = input_context;
}

static void *
shim_alloc(MemoryContext context, Size size, int flags)
{
	ShimContext *c = (ShimContext *) context;
	ShimChunk  *ch;

	shim_init();
	if (c == NULL)
		c = (ShimContext *) CurrentMemoryContext;
	if (!(flags & MCXT_ALLOC_HUGE) ? !AllocSizeIsValid(size) :
		!AllocHugeSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	ch = malloc(sizeof(ShimChunk) + size);
	if (ch == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	if (flags & MCXT_ALLOC_ZERO)
		memset(ch + 1, 0, size);
	ch->cxt = c;
	ch->size = size;
	ch->next = c->head.next;
	ch->prev = &c->head;
	c->head.next->prev = ch;
	c->head.next = ch;
	return ch + 1;
}

static ShimChunk *
shim_chunk(void *pointer)
{
	return ((ShimChunk *) pointer) - 1;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return shim_alloc(context, size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return shim_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return shim_alloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return shim_alloc(context, size, flags);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return shim_alloc(context, size, MCXT_ALLOC_HUGE);
}

void *
palloc(Size size)
{
	return shim_alloc(CurrentMemoryContext, size, 0);
}

void *
palloc0(Size size)
{
	return shim_alloc(CurrentMemoryContext, size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return shim_alloc(CurrentMemoryContext, size, flags);
}

void
pfree(void *pointer)
{
	ShimChunk  *ch = shim_chunk(pointer);

	ch->prev->next = ch->next;
	ch->next->prev = ch->prev;
	free(ch);
}

void *
repalloc(void *pointer, Size size)
{
	ShimChunk  *ch = shim_chunk(pointer);
	void	   *copy = shim_alloc((MemoryContext) ch->cxt, size, 0);

	memcpy(copy, pointer, Min(size, ch->size));
	pfree(pointer);
	return copy;
}

void *
repalloc_huge(void *pointer, Size size)
{
	ShimChunk  *ch = shim_chunk(pointer);
	void	   *copy = shim_alloc((MemoryContext) ch->cxt, size, MCXT_ALLOC_HUGE);

	memcpy(copy, pointer, Min(size, ch->size));
	pfree(pointer);
	return copy;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	size_t		len = strlen(string) + 1;
	char	   *copy = shim_alloc(context, len, 0);

	memcpy(copy, string, len);
	return copy;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize,
							  Size maxBlockSize)
{
	return (MemoryContext) shim_context_new(name);
}

int
FuzzContextChunks(MemoryContext context)
{
	ShimContext *c = (ShimContext *) context;
	ShimChunk  *ch;
	int			n = 0;

	for (ch = c->head.next; ch != &c->head; ch = ch->next)
		n++;
	return n;
}

void
MemoryContextReset(MemoryContext context)
{
	shim_context_reset((ShimContext *) context);
}

void
MemoryContextDelete(MemoryContext context)
{
	shim_context_reset((ShimContext *) context);
	free(context);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------
 */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

FuzzError	FuzzLastError;
int			FuzzErrorCount = 0;
int			FuzzWarningCount = 0;

static bool in_error = false;

bool
errstart(int elevel, const char *domain)
{
	if (in_error)
		FuzzFail("error raised while formatting another one (%s)",
				 FuzzLastError.message);
	in_error = true;
	memset(&FuzzLastError, 0, sizeof(FuzzLastError));
	FuzzLastError.elevel = elevel;
	if (elevel >= ERROR)
		FuzzLastError.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	else if (elevel >= WARNING)
		FuzzLastError.sqlerrcode = ERRCODE_WARNING;
	else
		FuzzLastError.sqlerrcode = ERRCODE_SUCCESSFUL_COMPLETION;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	ErrorContextCallback *cb;

	FuzzLastError.filename = filename;
	FuzzLastError.lineno = lineno;
	for (cb = error_context_stack; cb != NULL; cb = cb->previous)
		cb->callback(cb->arg);
	in_error = false;
	if (FuzzLastError.elevel < ERROR)
	{
		if (FuzzLastError.elevel >= WARNING)
			FuzzWarningCount++;
		return;
	}
	FuzzErrorCount++;
	if (FuzzLastError.elevel > ERROR)
		FuzzFail("%s at %s:%d: %s", FuzzLastError.elevel == FATAL ? "FATAL" : "PANIC",
				 filename, lineno, FuzzLastError.message);
	if (PG_exception_stack == NULL)
		FuzzFail("ERROR outside PG_TRY at %s:%d: %s", filename, lineno,
				 FuzzLastError.message);
	siglongjmp(*PG_exception_stack, 1);
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		FuzzFail("re-thrown ERROR outside PG_TRY: %s", FuzzLastError.message);
	siglongjmp(*PG_exception_stack, 1);
}

int
errcode(int sqlerrcode)
{
	FuzzLastError.sqlerrcode = sqlerrcode;
	return 0;
}

#define FORMAT_INTO(field, fmt) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf((field), sizeof(field), (fmt), ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FORMAT_INTO(FuzzLastError.message, fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FORMAT_INTO(FuzzLastError.message, fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_INTO(FuzzLastError.detail, fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_INTO(FuzzLastError.detail, fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_INTO(FuzzLastError.hint, fmt);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	char		line[2048];
	size_t		used = strlen(FuzzLastError.context);

	FORMAT_INTO(line, fmt);
	snprintf(FuzzLastError.context + used, sizeof(FuzzLastError.context) - used,
			 "%s%s", used > 0 ? "\n" : "", line);
	return 0;
}

int
errhidestmt(bool hide_stmt)
{
	return 0;
}

int
geterrcode(void)
{
	return FuzzLastError.sqlerrcode;
}

/* For GUC_check_errdetail. */
char	   *GUC_check_errmsg_string = NULL;
char	   *GUC_check_errdetail_string = NULL;
char	   *GUC_check_errhint_string = NULL;

void
pre_format_elog_string(int errnumber, const char *domain)
{
}

char *
format_elog_string(const char *fmt,...)
{
	static char buf[2048];

	FORMAT_INTO(buf, fmt);
	return buf;
}

void
FuzzFail(const char *fmt,...)
{
	char		buf[4096];

	FORMAT_INTO(buf, fmt);
	fprintf(stderr, "FUZZ FINDING: %s\n", buf);
	if (FuzzLastError.message[0] != '\0')
		fprintf(stderr, "  last error: SQLSTATE %s at %s:%d: %s\n  DETAIL: %s\n  HINT: %s\n  CONTEXT: %s\n",
				unpack_sql_state(FuzzLastError.sqlerrcode),
				FuzzLastError.filename ? FuzzLastError.filename : "?",
				FuzzLastError.lineno, FuzzLastError.message,
				FuzzLastError.detail, FuzzLastError.hint,
				FuzzLastError.context);
	abort();
}

void
FuzzCheckError(void)
{
	if (FuzzLastError.elevel != ERROR)
		FuzzFail("caught something that is not an ERROR");
	if (FuzzLastError.sqlerrcode == ERRCODE_INTERNAL_ERROR)
		FuzzFail("internal error (XX000): a user's input reached elog()");
	if (FuzzLastError.message[0] == '\0')
		FuzzFail("error without a message");
}

/*
 * unpack_sql_state: the server's (utils/error/elog.c), needed by FuzzFail.
 */
char *
unpack_sql_state(int sql_state)
{
	static char buf[12];
	int			i;

	for (i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sql_state);
		sql_state >>= 6;
	}
	buf[i] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------
 * Inputs
 * ------------------------------------------------------------------------
 */

void
FuzzBeginInput(void)
{
	shim_init();
	CurrentMemoryContext = input_context;
	PG_exception_stack = NULL;
	error_context_stack = NULL;
	FuzzErrorCount = 0;
	FuzzWarningCount = 0;
	memset(&FuzzLastError, 0, sizeof(FuzzLastError));
}

void
FuzzEndInput(void)
{
	if (error_context_stack != NULL)
		FuzzFail("error_context_stack not restored");
	if (CurrentMemoryContext != input_context)
		FuzzFail("CurrentMemoryContext not restored");
	shim_context_reset((ShimContext *) input_context);
}

char *
FuzzCString(const uint8_t *data, size_t len)
{
	char	   *s = palloc(len + 1);

	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

bool
FuzzValidUtf8(const char *s, int len)
{
	return pg_encoding_verifymbstr(PG_UTF8, s, len) == len;
}

/* ------------------------------------------------------------------------
 * Lists
 * ------------------------------------------------------------------------
 */

List *
lappend(List *list, void *datum)
{
	if (list == NIL)
	{
		list = palloc0(offsetof(List, initial_elements));
		list->type = T_List;
		list->max_length = 4;
		list->elements = palloc(sizeof(ListCell) * list->max_length);
	}
	else if (list->length == list->max_length)
	{
		list->max_length *= 2;
		list->elements = repalloc(list->elements,
								  sizeof(ListCell) * list->max_length);
	}
	list->elements[list->length++].ptr_value = datum;
	return list;
}

void
list_free(List *list)
{
	if (list == NIL)
		return;
	pfree(list->elements);
	pfree(list);
}

/* ------------------------------------------------------------------------
 * SplitIdentifierString, SplitGUCList
 * ------------------------------------------------------------------------
 */

/* The server's scanner_isspace (parser/scansup.c) of PostgreSQL 15. */
static bool
shim_isspace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Bytes of the longest prefix of 's' (len bytes) of at most 'limit' bytes
 * that ends at a UTF-8 character boundary. */
static int
shim_cliplen(const char *s, int len, int limit)
{
	int			clen = 0;

	while (len > 0 && *s)
	{
		int			l = pg_utf_mblen((const unsigned char *) s);

		if (clen + l > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		s += l;
	}
	return clen;
}

static void
shim_truncate(char *name)
{
	int			len = strlen(name);

	if (len >= NAMEDATALEN)
		name[shim_cliplen(name, len, NAMEDATALEN - 1)] = '\0';
}

static bool
split_list(char *rawstring, char separator, List **namelist, bool identifiers)
{
	char	   *p = rawstring;

	*namelist = NIL;
	while (shim_isspace(*p))
		p++;
	if (*p == '\0')
		return true;
	for (;;)
	{
		char	   *name;
		char	   *end;
		bool		done;

		if (*p == '"')
		{
			/* Quoted: up to the closing quote, "" standing for one. */
			char	   *out;

			name = out = ++p;
			for (;;)
			{
				if (*p == '\0')
					return false;
				if (*p == '"')
				{
					if (p[1] != '"')
						break;
					p++;
				}
				*out++ = *p++;
			}
			end = out;
			p++;				/* past the closing quote */
			if (end == name)
				return false;	/* "" is no name */
		}
		else
		{
			name = p;
			while (*p != '\0' && *p != separator && !shim_isspace(*p))
				p++;
			end = p;
			if (end == name)
				return false;
			if (identifiers)
			{
				char	   *c;

				for (c = name; c < end; c++)
					if (*c >= 'A' && *c <= 'Z')
						*c += 'a' - 'A';
			}
		}
		while (shim_isspace(*p))
			p++;
		if (*p == separator)
		{
			p++;
			while (shim_isspace(*p))
				p++;
			done = false;
		}
		else if (*p == '\0')
			done = true;
		else
			return false;		/* junk after a name */
		*end = '\0';
		if (identifiers)
			shim_truncate(name);
		*namelist = lappend(*namelist, name);
		if (done)
			return true;
	}
}

bool
SplitIdentifierString(char *rawstring, char separator, List **namelist)
{
	return split_list(rawstring, separator, namelist, true);
}

bool
SplitGUCList(char *rawstring, char separator, List **namelist)
{
	return split_list(rawstring, separator, namelist, false);
}

/* ------------------------------------------------------------------------
 * Custom settings
 * ------------------------------------------------------------------------
 */

typedef struct ShimGuc
{
	const char *name;
	char	  **variable;
	GucStringCheckHook check;
} ShimGuc;

static ShimGuc gucs[8];
static int	nguc = 0;

void
DefineCustomStringVariable(const char *name, const char *short_desc,
						   const char *long_desc, char **valueAddr,
						   const char *bootValue, GucContext context,
						   int flags, GucStringCheckHook check_hook,
						   GucStringAssignHook assign_hook,
						   GucShowHook show_hook)
{
	if (nguc == lengthof(gucs))
		abort();
	gucs[nguc].name = name;
	gucs[nguc].variable = valueAddr;
	gucs[nguc].check = check_hook;
	nguc++;
	*valueAddr = bootValue ? strdup(bootValue) : NULL;
}

bool
FuzzSetStringGuc(const char *name, const char *value, bool force)
{
	int			i;

	for (i = 0; i < nguc; i++)
	{
		char	   *newval;
		void	   *extra = NULL;
		bool		ok = true;

		if (strcmp(gucs[i].name, name) != 0)
			continue;
		newval = strdup(value);
		GUC_check_errdetail_string = NULL;
		if (gucs[i].check != NULL)
			ok = gucs[i].check(&newval, &extra, PGC_S_SESSION);
		if (!ok && GUC_check_errdetail_string == NULL)
			FuzzFail("check hook of %s refused a value without a detail", name);
		if (ok || force)
		{
			free(*gucs[i].variable);
			*gucs[i].variable = newval;
		}
		else
			free(newval);
		return ok;
	}
	FuzzFail("no setting %s", name);
	return false;
}

/* ------------------------------------------------------------------------
 * Stubs: server functions the compiled files name but the targets never
 * reach (jsonb building in mask.c's MaskConfig).  Reaching one aborts.
 * ------------------------------------------------------------------------
 */

#define SHIM_STUB(name) \
	FuzzFail("the server function %s is not part of the shim", name)

JsonbIterator *
JsonbIteratorInit(JsonbContainer *container)
{
	SHIM_STUB("JsonbIteratorInit");
	return NULL;
}

JsonbIteratorToken
JsonbIteratorNext(JsonbIterator **it, JsonbValue *val, bool skipNested)
{
	SHIM_STUB("JsonbIteratorNext");
	return WJB_DONE;
}

JsonbValue *
pushJsonbValue(JsonbParseState **pstate, JsonbIteratorToken seq,
			   JsonbValue *jbval)
{
	SHIM_STUB("pushJsonbValue");
	return NULL;
}

Jsonb *
JsonbValueToJsonb(JsonbValue *val)
{
	SHIM_STUB("JsonbValueToJsonb");
	return NULL;
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	SHIM_STUB("pg_detoast_datum");
	return NULL;
}

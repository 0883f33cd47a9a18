/*-------------------------------------------------------------------------
 *
 * fuzz_shim.h
 *		What the fuzz targets of test/fuzz use of the shim (fuzz_shim.c)
 *		that stands in for the server around the project's pure parsers.
 *
 * A target calls FuzzBeginInput() first and FuzzEndInput() last for every
 * input: in between, palloc allocates in a context that FuzzEndInput()
 * frees whole (so an error thrown half-way leaks nothing).  The code under
 * test runs inside PG_TRY(); an ERROR it raises lands in PG_CATCH() with
 * FuzzLastError filled in, and FuzzCheckError() aborts (a finding) unless
 * it is a clean user-facing error: an SQLSTATE other than XX000 (elog()'s
 * "can't happen") and a message.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_FUZZ_SHIM_H
#define OUTBOX_SAGA_FUZZ_SHIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct FuzzError
{
	int			elevel;
	int			sqlerrcode;
	char		message[2048];
	char		detail[2048];
	char		hint[2048];
	char		context[2048];
	const char *filename;
	int			lineno;
} FuzzError;

/* The last error raised (ERROR or a lower level) by the code under test. */
extern FuzzError FuzzLastError;

/* Errors and warnings raised since the start of the input. */
extern int	FuzzErrorCount;
extern int	FuzzWarningCount;

extern void FuzzBeginInput(void);
extern void FuzzEndInput(void);

/* How many chunks are allocated in 'context' (one of the shim's). */
extern int	FuzzContextChunks(MemoryContext context);

/* Abort unless FuzzLastError is a clean error (see the header comment). */
extern void FuzzCheckError(void);

/* Abort with a message: a property of the code under test does not hold. */
extern void FuzzFail(const char *fmt,...) pg_attribute_printf(1, 2);

/*
 * Set a string setting defined with DefineCustomStringVariable the way the
 * server does: its check hook first; returns whether it accepted the value
 * (the setting keeps its old value if not, unless 'force').
 */
extern bool FuzzSetStringGuc(const char *name, const char *value, bool force);

/*
 * A NUL-terminated palloc'd copy of the first 'len' bytes of 'data'
 * (the input of a target is not NUL-terminated).
 */
extern char *FuzzCString(const uint8_t *data, size_t len);

/* Whether 'len' bytes at 's' are valid UTF-8 without NUL bytes. */
extern bool FuzzValidUtf8(const char *s, int len);

#endif							/* OUTBOX_SAGA_FUZZ_SHIM_H */

/*-------------------------------------------------------------------------
 *
 * restore.c
 *		The dispatcher's side of a database's life (SPEC G13): noticing that
 *		the database it serves is a copy of another one.
 *
 * Rows restored by pg_restore or a plain dump are translated as they
 * arrive, by row triggers of the extension's SQL (src/sql/lifecycle.sql):
 * restored destinations get a position of this database and wait paused,
 * restored sagas in flight are held.  A copy made without a dump (CREATE
 * DATABASE ... TEMPLATE, pg_upgrade, a cluster given a new system
 * identifier) runs no trigger; its positions are still valid, but it must
 * not talk to the systems the original talks to by itself either.
 * RestoreCheckIdentity() runs outbox.check_identity(), which compares the
 * system identifier and database OID recorded in outbox.local_identity
 * with the live ones and, on a mismatch, pauses every destination and
 * holds every saga in flight, with a LOG line, then records the live
 * identity.
 *
 * WHICH INSERTS ARE RESTORES
 *	The triggers fire WHEN (pg_trigger_depth() = 0 AND outbox.restoring()):
 *	outbox.restoring() (outbox_restoring below) is true while the client's
 *	statement is a COPY or INSERT INTO a table of schema outbox or saga, as
 *	pg_restore and a plain dump write them.  It is C, not SQL: the WHEN
 *	clause is prepared at every execution of an INSERT into those tables,
 *	and a SQL function was planned there each time (the dispatcher's tick,
 *	every pass).  The extension's own writers never match: the dispatchers
 *	have no client statement, and the SQL API's inserts run under a client
 *	statement that calls a function (SELECT outbox.create_destination(...)).
 *
 * INVARIANTS
 *	- Called by the dispatcher in its pass's first transaction (SPI
 *	  connected), before it reads the destinations, and only once the
 *	  extension's SQL matches the library; the identity of a database
 *	  cannot change under a running process, so it runs once per process
 *	  (and again after the extension was dropped and created, which starts
 *	  a new dispatcher).
 *	- An error propagates: the pass fails and the process starts again,
 *	  delivering nothing meanwhile.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "tcop/tcopprot.h"

#include "base/spi_util.h"
#include "dispatch/restore.h"

static bool identity_checked = false;

/* outbox.local_identity, and on a mismatch every state table (SQL). */
static SpiStatement check_identity = {
	"checking whether this database is a copy",
	"SELECT outbox.check_identity()",
	{0}
};

/*
 * RestoreCheckIdentity
 *		Once per process: pause everything if this database is a copy.
 */
void
RestoreCheckIdentity(void)
{
	if (identity_checked)
		return;
	SpiRun(&check_identity, NULL, NULL, SPI_OK_SELECT);
	identity_checked = true;
}

/*
 * skip_space / skip_word
 *		The matcher of outbox_restoring: white space as the regular
 *		expression class \s takes it, and a keyword matched without regard
 *		to case.  skip_word returns NULL if 'word' is not next.
 */
static const char *
skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
		   *p == '\f' || *p == '\v')
		p++;
	return p;
}

static const char *
skip_word(const char *p, const char *word)
{
	size_t		n = strlen(word);

	return pg_strncasecmp(p, word, n) == 0 ? p + n : NULL;
}

/*
 * outbox_restoring
 *		outbox.restoring(): whether the client's statement (the top-level
 *		query text) begins, ignoring case, as
 *		^\s*(copy|insert\s+into)\s+(only\s+)?"?(outbox|saga)"?\.
 *		NULL without a client statement (a background worker).
 */
PG_FUNCTION_INFO_V1(outbox_restoring);

Datum
outbox_restoring(PG_FUNCTION_ARGS)
{
	const char *p = debug_query_string;
	const char *q;

	if (p == NULL)
		PG_RETURN_NULL();
	p = skip_space(p);
	if ((q = skip_word(p, "copy")) == NULL)
	{
		if ((q = skip_word(p, "insert")) == NULL || skip_space(q) == q)
			PG_RETURN_BOOL(false);
		if ((q = skip_word(skip_space(q), "into")) == NULL)
			PG_RETURN_BOOL(false);
	}
	p = skip_space(q);
	if (p == q)
		PG_RETURN_BOOL(false);
	/* (only\s+)? */
	if ((q = skip_word(p, "only")) != NULL && skip_space(q) != q)
		p = skip_space(q);
	if (*p == '"')
		p++;
	if ((q = skip_word(p, "outbox")) == NULL && (q = skip_word(p, "saga")) == NULL)
		PG_RETURN_BOOL(false);
	if (*q == '"')
		q++;
	PG_RETURN_BOOL(*q == '.');
}

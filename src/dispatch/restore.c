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

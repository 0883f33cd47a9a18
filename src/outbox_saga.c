/*-------------------------------------------------------------------------
 *
 * outbox_saga.c
 *		Module magic and _PG_init of the outbox_saga extension.
 *
 * _PG_init runs once per process that loads the library: the postmaster
 * when the library is in shared_preload_libraries, otherwise the first
 * backend that calls one of its functions.  It only calls one init
 * function per subsystem; what each registers is described there.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "fmgr.h"

#include "guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	GucInit();
}

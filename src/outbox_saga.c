/*-------------------------------------------------------------------------
 *
 * outbox_saga.c
 *		Module magic and _PG_init of the outbox_saga extension.
 *
 * _PG_init runs once per process that loads the library: the postmaster
 * when the library is in shared_preload_libraries, otherwise the first
 * backend that calls one of its functions.  It only calls one init
 * function per subsystem; what each registers is described there.  Every
 * subsystem defines its outbox_saga.* settings before the prefix is
 * reserved.  The shared memory, the background workers and the utility hook exist only
 * when preloading; settings and the commit wake-up always.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "utils/guc.h"

#include "base/guc.h"
#include "base/shmem.h"
#include "events/wakeup.h"
#include "http/http_guard.h"
#include "worker/launcher.h"
#include "worker/utility_hook.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	GucInit();
	HttpGuardInit();

	/*
	 * After every outbox_saga.* definition: reserving the prefix removes
	 * placeholders of settings not defined by then (losing their values).
	 */
	MarkGUCPrefixReserved("outbox_saga");

	WakeupInit();
	if (!process_shared_preload_libraries_in_progress)
		return;
	ShmemInit();
	UtilityHookInit();
	LauncherRegister();
}

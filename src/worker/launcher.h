/*-------------------------------------------------------------------------
 *
 * launcher.h
 *		The launcher: one dispatcher per database that has the extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_LAUNCHER_H
#define OUTBOX_SAGA_LAUNCHER_H

#include "fmgr.h"

extern void LauncherRegister(void);
extern PGDLLEXPORT void OutboxLauncherMain(Datum main_arg);

#endif							/* OUTBOX_SAGA_LAUNCHER_H */

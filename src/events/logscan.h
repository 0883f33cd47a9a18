/*-------------------------------------------------------------------------
 *
 * logscan.h
 *		Reading a window of the log with index scans.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_LOGSCAN_H
#define OUTBOX_SAGA_LOGSCAN_H

#include "fmgr.h"

/* The window (from, to] between two ticks: pg_snapshot datums. */
typedef struct LogWindow
{
	Datum		from_snap;
	Datum		to_snap;
} LogWindow;

extern int64 LogWindowFirstId(const LogWindow *w);
extern int	LogWindowPage(const LogWindow *w, int64 after, int64 max_id, int limit,
						  bool (*accept) (Datum *values, bool *nulls, void *arg),
						  void *arg, int64 *last_seen);
extern bool LogWindowScan(const LogWindow *w,
						  bool (*visit) (Datum *values, bool *nulls, void *arg),
						  void *arg);

#endif							/* OUTBOX_SAGA_LOGSCAN_H */

/*-------------------------------------------------------------------------
 *
 * sink_wait.c
 *		One wait for the dispatcher inside a broker sink's deliver_batch:
 *		a wake-up pipe written by the library's threads, MyLatch and
 *		postmaster death in one WaitEventSet.
 *
 * INVARIANTS
 *	- One pipe per process, non-blocking at both ends and close-on-exec.
 *	  SinkWaitWake is async-signal-safe and callable from any thread (it
 *	  only write()s one byte; a full pipe already means "wake up").  The
 *	  reader drains it completely on each wake-up, so a spurious byte (a
 *	  late callback of another destination) costs one extra loop turn.
 *	- A wait returns within max_ms, and CHECK_FOR_INTERRUPTS runs after
 *	  every wait, so SIGTERM and DROP DATABASE are never held up by a
 *	  broker for longer than that.
 *	- A latch set while a batch waits is remembered and set again by
 *	  SinkWaitEnd: the dispatcher's own wait must see the commit that set
 *	  it (G8).
 *	- The WaitEventSet holds a kernel descriptor: SinkWaitEnd must run on
 *	  every exit, the error path included (PG_TRY in the callers).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <fcntl.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/wait_event.h"

#include "sink/sink_wait.h"

static int	wake_pipe[2] = {-1, -1};

/*
 * SinkWaitEnsurePipe
 *		Create the wake-up pipe, once per process.
 */
void
SinkWaitEnsurePipe(void)
{
	if (wake_pipe[0] >= 0)
		return;
	if (pipe(wake_pipe) != 0)
		elog(ERROR, "outbox_saga: could not create a pipe: %m");
	fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
	fcntl(wake_pipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(wake_pipe[1], F_SETFD, FD_CLOEXEC);
}

/*
 * SinkWaitPipeWriteFd
 *		The write end, for libraries that signal a descriptor themselves
 *		(librdkafka's rd_kafka_queue_io_event_enable).
 */
int
SinkWaitPipeWriteFd(void)
{
	return wake_pipe[1];
}

/*
 * SinkWaitWake
 *		From any thread: make the current or next wait return.
 */
void
SinkWaitWake(void)
{
	if (wake_pipe[1] >= 0)
	{
		ssize_t		rc pg_attribute_unused();

		rc = write(wake_pipe[1], "x", 1);
	}
}

/*
 * drain_pipe
 *		Empty the wake-up pipe.
 */
static void
drain_pipe(void)
{
	char		buf[256];

	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * SinkWaitBegin
 *		The wait set for one batch, in CurrentMemoryContext.
 */
void
SinkWaitBegin(SinkWait *w)
{
	SinkWaitEnsurePipe();
	w->latch_seen = false;
	w->set = CompatCreateWaitEventSet(3);
	AddWaitEventToSet(w->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(w->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(w->set, WL_SOCKET_READABLE, wake_pipe[0], NULL, NULL);
}

/*
 * SinkWaitUntil
 *		Sleep until the pipe or the latch fires, 'until' passes, or max_ms
 *		passed; then serve interrupts.  Returns at once if 'until' passed.
 */
void
SinkWaitUntil(SinkWait *w, TimestampTz until, long max_ms)
{
	WaitEvent	occurred[3];
	long		secs;
	int			usecs;
	long		wait_ms;
	int			nevents;
	int			e;

	TimestampDifference(GetCurrentTimestamp(), until, &secs, &usecs);
	wait_ms = Min(max_ms, secs * 1000 + (usecs + 999) / 1000);
	if (wait_ms > 0)
	{
		nevents = WaitEventSetWait(w->set, wait_ms, occurred, lengthof(occurred),
								   PG_WAIT_EXTENSION);
		for (e = 0; e < nevents; e++)
		{
			if (occurred[e].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				w->latch_seen = true;
			}
			else if (occurred[e].events & WL_SOCKET_READABLE)
				drain_pipe();
		}
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * SinkWaitEnd
 *		Free the wait set; hand a consumed wake-up back to the dispatcher.
 */
void
SinkWaitEnd(SinkWait *w)
{
	if (w->set != NULL)
		FreeWaitEventSet(w->set);
	w->set = NULL;
	if (w->latch_seen)
		SetLatch(MyLatch);
}

/*-------------------------------------------------------------------------
 *
 * http_socket.h
 *		The HTTP client's sockets: opened under the deny list and the
 *		descriptor budget, and watched together with MyLatch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_HTTP_SOCKET_H
#define OUTBOX_SAGA_HTTP_SOCKET_H

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "storage/latch.h"

/*
 * What the open-socket callback found out about one request's connection
 * attempts (CURLOPT_OPENSOCKETDATA points to one).
 */
typedef struct HttpConnectReport
{
	bool		denied;			/* an address was refused */
	bool		invalid_setting;	/* ... because the deny list is invalid */
	bool		no_fd;			/* PostgreSQL's descriptor budget was
								 * exhausted */
	char		address[64];	/* the last refused address, as text */
} HttpConnectReport;

/*
 * Watch the sockets and the timer of a new multi handle (its
 * CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION); the socket tables
 * grow in 'cxt', which must outlive the handle.
 */
extern void HttpSocketWatchMulti(CURLM *multi, MemoryContext cxt);

/*
 * Make an easy handle open and close its sockets here: an address
 * http_guard.c refuses is never connected to, every descriptor counts
 * against max_files_per_process.  'report' is cleared and gets the news.
 */
extern void HttpSocketInstall(CURL *easy, HttpConnectReport *report);

/* The multi handle is gone: forget its sockets and its timer. */
extern void HttpSocketForgetAll(void);

/* The next HttpSocketSyncWaitSet makes a new set (a new batch). */
extern void HttpSocketRebuildWaitSet(void);

/*
 * Make 'set' (or a new one, allocated in CurrentMemoryContext; *capacity
 * is its size) watch MyLatch, postmaster death and the sockets libcurl
 * wants, as they are now.
 */
extern WaitEventSet *HttpSocketSyncWaitSet(WaitEventSet *set, int *capacity);

/*
 * How long to wait from now (the clock read inside): at most 'max_ms', at
 * most until the timer.
 */
extern long HttpSocketWaitMs(long max_ms);

/* Whether libcurl's timer has expired (it is then disarmed). */
extern bool HttpSocketTimerDue(void);

/*
 * An event on 'fd': whether libcurl must act on it (false: the socket is
 * no longer watched, or it was an idle connection the peer closed, which
 * is watched no more).
 */
extern bool HttpSocketEventWanted(curl_socket_t fd);

#endif							/* OUTBOX_SAGA_HTTP_SOCKET_H */

/*-------------------------------------------------------------------------
 *
 * http_socket.c
 *		The HTTP client's sockets: opened under the deny list and the
 *		descriptor budget, and watched together with MyLatch.
 *
 * OPENING: every socket libcurl opens goes through open_socket_callback
 *	(CURLOPT_OPENSOCKETFUNCTION), which asks http_guard.c whether the
 *	address is refused (outbox_saga.http_deny_networks, checked after DNS,
 *	before any packet is sent) and reports the descriptor to PostgreSQL's
 *	fd.c (AcquireExternalFD / ReleaseExternalFD), so that the process stays
 *	within max_files_per_process; when the budget is used up the connection
 *	attempt fails instead.  What was refused goes to the request's
 *	HttpConnectReport, for its error text.
 *
 * WATCHING: libcurl tells us which sockets to watch (socket_callback,
 *	CURLMOPT_SOCKETFUNCTION) and when to call it back (timer_callback,
 *	CURLMOPT_TIMERFUNCTION); HttpSocketSyncWaitSet keeps one WaitEventSet
 *	with those sockets, MyLatch and postmaster death.  The set is extended
 *	and modified in place (ModifyWaitEvent); an idle keep-alive connection
 *	stays in it, parked, watched only for the peer closing it, and a closed
 *	connection socket leaves epoll by itself (close_socket_callback sees
 *	every close), so steady keep-alive traffic never rebuilds the set; only
 *	other sockets going away (the resolver's) do.
 *
 * Every callback here runs inside libcurl: no errors, no allocation that
 * can fail (the tables grow with MCXT_ALLOC_NO_OOM in the client's
 * long-lived context).  No transaction is ever open; the tables are per
 * process and die with it.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http/http_guard.h"
#include "http/http_socket.h"

/* A socket libcurl asked us to watch. */
typedef struct HttpSocket
{
	curl_socket_t fd;
	uint32		events;			/* WL_SOCKET_* wanted */
	uint32		registered;		/* WL_SOCKET_* in the wait set */
	int			pos;			/* position in the wait set, -1 if none */
	bool		parked;			/* an idle connection in libcurl's cache */
} HttpSocket;

/* Process-wide state. */
static MemoryContext socket_cxt = NULL;
static HttpSocket *sockets = NULL;
static int	socket_count = 0;
static int	socket_capacity = 0;
static bool sockets_removed = false;	/* the wait set must be rebuilt */
static bool *connection_fd = NULL;	/* by fd: an open connection socket */
static int	connection_fd_size = 0;
static bool timer_armed = false;
static TimestampTz timer_at = 0;

/*
 * find_socket
 *		The index of 'fd' in the socket table, or socket_count.
 */
static int
find_socket(curl_socket_t fd)
{
	int			i;

	for (i = 0; i < socket_count; i++)
		if (sockets[i].fd == fd)
			break;
	return i;
}

/*
 * drop_socket
 *		Remove entry 'i' from the socket table.  If 'deregister', its fd is
 *		still open and in the wait set: the set must be rebuilt.
 */
static void
drop_socket(int i, bool deregister)
{
	if (deregister && sockets[i].pos >= 0)
		sockets_removed = true;
	sockets[i] = sockets[--socket_count];
}

/*
 * is_connection_fd
 *		Whether 'fd' is a connection socket that libcurl opened through
 *		open_socket_callback and has not closed yet.
 */
static bool
is_connection_fd(curl_socket_t fd)
{
	return fd >= 0 && fd < connection_fd_size && connection_fd[fd];
}

/*
 * connection_opened / connection_closed
 *		Called by the open and close socket callbacks for every connection
 *		socket libcurl opens and closes.  A closed socket leaves the epoll
 *		set by itself, so its entry goes without a rebuild.  Inside libcurl:
 *		no errors.
 */
static void
connection_opened(curl_socket_t fd)
{
	if (fd < 0)
		return;
	if (fd >= connection_fd_size)
	{
		int			size = Max(fd + 1, Max(1024, connection_fd_size * 2));
		bool	   *grown;

		grown = MemoryContextAllocExtended(socket_cxt, sizeof(bool) * size,
										   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
		if (grown == NULL)
			return;				/* treated as not ours: safe, slower */
		if (connection_fd != NULL)
		{
			memcpy(grown, connection_fd, sizeof(bool) * connection_fd_size);
			pfree(connection_fd);
		}
		connection_fd = grown;
		connection_fd_size = size;
	}
	connection_fd[fd] = true;
}

static void
connection_closed(curl_socket_t fd)
{
	int			i;

	if (is_connection_fd(fd))
		connection_fd[fd] = false;
	i = find_socket(fd);
	if (i < socket_count)
		drop_socket(i, false);
}

/*
 * open_socket_callback
 *		CURLOPT_OPENSOCKETFUNCTION: refuse an address http_guard.c refuses,
 *		account for the descriptor, then open the socket as libcurl would.
 *		Runs inside libcurl: no errors.
 */
static curl_socket_t
open_socket_callback(void *clientp, curlsocktype purpose,
					 struct curl_sockaddr *address)
{
	HttpConnectReport *report = (HttpConnectReport *) clientp;
	const unsigned char *bytes;
	bool		setting_invalid;
	int			fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;

	if (address->family == AF_INET)
		bytes = (const unsigned char *) &((struct sockaddr_in *) &address->addr)->sin_addr;
	else if (address->family == AF_INET6)
		bytes = (const unsigned char *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr;
	else
		return CURL_SOCKET_BAD;

	if (HttpGuardRefusesAddress(address->family, bytes, &setting_invalid))
	{
		report->denied = true;
		report->invalid_setting = setting_invalid;
		if (inet_ntop(address->family, bytes, report->address,
					  sizeof(report->address)) == NULL)
			strlcpy(report->address, "?", sizeof(report->address));
		return CURL_SOCKET_BAD;
	}

	if (!AcquireExternalFD())
	{
		report->no_fd = true;
		return CURL_SOCKET_BAD;
	}
	fd = socket(address->family, address->socktype | SOCK_CLOEXEC,
				address->protocol);
	if (fd < 0)
	{
		ReleaseExternalFD();
		return CURL_SOCKET_BAD;
	}
	connection_opened(fd);
	return fd;
}

/*
 * close_socket_callback
 *		CURLOPT_CLOSESOCKETFUNCTION: the counterpart of
 *		open_socket_callback.  Connections outlive requests in libcurl's
 *		cache, so this uses no per-request data.
 */
static int
close_socket_callback(void *clientp, curl_socket_t fd)
{
	int			rc;

	connection_closed(fd);
	rc = close(fd);
	ReleaseExternalFD();
	return rc;
}

/*
 * socket_callback
 *		CURLMOPT_SOCKETFUNCTION: note what libcurl wants to hear about a
 *		socket.  A connection going back to libcurl's cache (REMOVE of an
 *		open connection socket) is parked: it stays in the wait set, asking
 *		only to hear of the peer closing, so that keep-alive traffic costs
 *		no rebuild of the set.  Runs inside libcurl: no errors, no palloc
 *		that can fail.
 */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp,
				void *socketp)
{
	int			i = find_socket(fd);

	if (what == CURL_POLL_REMOVE)
	{
		if (i == socket_count)
			return 0;
		if (is_connection_fd(fd))
		{
			sockets[i].parked = true;
			sockets[i].events = WL_SOCKET_CLOSED;
		}
		else
			drop_socket(i, true);
		return 0;
	}

	if (i == socket_count)
	{
		if (socket_count == socket_capacity)
		{
			int			capacity = Max(16, socket_capacity * 2);
			HttpSocket *grown;

			grown = MemoryContextAllocExtended(socket_cxt, sizeof(HttpSocket) * capacity,
											   MCXT_ALLOC_NO_OOM);
			if (grown == NULL)
				return -1;
			if (sockets != NULL)
			{
				memcpy(grown, sockets, sizeof(HttpSocket) * socket_count);
				pfree(sockets);
			}
			sockets = grown;
			socket_capacity = capacity;
		}
		sockets[i].fd = fd;
		sockets[i].registered = 0;
		sockets[i].pos = -1;
		socket_count++;
	}
	sockets[i].parked = false;
	sockets[i].events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		sockets[i].events |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		sockets[i].events |= WL_SOCKET_WRITEABLE;
	return 0;
}

/*
 * timer_callback
 *		CURLMOPT_TIMERFUNCTION: when libcurl wants to be called with
 *		CURL_SOCKET_TIMEOUT (-1: never).
 */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_armed = false;
	else
	{
		timer_armed = true;
		timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/*
 * HttpSocketSyncWaitSet
 *		See http_socket.h.
 */
WaitEventSet *
HttpSocketSyncWaitSet(WaitEventSet *set, int *capacity)
{
	int			i;
	int			unregistered = 0;

	for (i = 0; i < socket_count; i++)
		if (sockets[i].pos < 0)
			unregistered++;

	if (set == NULL || sockets_removed ||
		GetNumRegisteredWaitEvents(set) + unregistered > *capacity)
	{
		if (set != NULL)
			FreeWaitEventSet(set);
		*capacity = 2 + socket_count * 2 + 8;
		set = CompatCreateWaitEventSet(*capacity);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < socket_count; i++)
			sockets[i].pos = -1;
		sockets_removed = false;
	}

	for (i = 0; i < socket_count; i++)
	{
		HttpSocket *sock = &sockets[i];

		if (sock->pos < 0)
		{
			sock->pos = AddWaitEventToSet(set, sock->events, sock->fd, NULL,
										  (void *) (intptr_t) sock->fd);
			sock->registered = sock->events;
		}
		else if (sock->registered != sock->events)
		{
			ModifyWaitEvent(set, sock->pos, sock->events, NULL);
			sock->registered = sock->events;
		}
	}
	return set;
}

/*
 * HttpSocketWatchMulti
 *		See http_socket.h.
 */
void
HttpSocketWatchMulti(CURLM *multi, MemoryContext cxt)
{
	socket_cxt = cxt;
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
}

/*
 * HttpSocketInstall
 *		See http_socket.h.
 */
void
HttpSocketInstall(CURL *easy, HttpConnectReport *report)
{
	memset(report, 0, sizeof(HttpConnectReport));
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_callback);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, report);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket_callback);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, NULL);
}

/*
 * HttpSocketForgetAll
 *		See http_socket.h.
 */
void
HttpSocketForgetAll(void)
{
	socket_count = 0;
	sockets_removed = true;
	timer_armed = false;
}

/*
 * HttpSocketRebuildWaitSet
 *		See http_socket.h.
 */
void
HttpSocketRebuildWaitSet(void)
{
	sockets_removed = true;
}

/*
 * HttpSocketWaitMs
 *		See http_socket.h.  The clock is read here, not taken from the
 *		caller: libcurl arms its timer while a request starts (0 ms: "act
 *		now"), and a timer microseconds ahead of a clock read before that
 *		rounds up to a 1 ms sleep - one per request sent one at a time,
 *		where a request to a near receiver takes a tenth of that.
 */
long
HttpSocketWaitMs(long max_ms)
{
	long		wait_ms = max_ms;

	if (timer_armed)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), timer_at, &secs, &usecs);
		wait_ms = Min(wait_ms, secs * 1000 + (usecs + 999) / 1000);
	}
	return wait_ms;
}

/*
 * HttpSocketTimerDue
 *		See http_socket.h.
 */
bool
HttpSocketTimerDue(void)
{
	if (timer_armed && GetCurrentTimestamp() >= timer_at)
	{
		timer_armed = false;
		return true;
	}
	return false;
}

/*
 * HttpSocketEventWanted
 *		See http_socket.h.
 */
bool
HttpSocketEventWanted(curl_socket_t fd)
{
	int			s = find_socket(fd);

	if (s == socket_count)
		return false;			/* gone while handling an earlier event */
	if (sockets[s].parked)
	{
		/* The peer closed an idle connection: stop watching. */
		drop_socket(s, true);
		return false;
	}
	return true;
}

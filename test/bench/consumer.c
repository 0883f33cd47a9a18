/*
 * consumer.c: the client-side consumer of the benchmark's peers (section
 * e2e, test/bench/e2e.sh).  Not part of the extension.
 *
 *   consumer CONNINFO SQL CHANNEL IDLE_MS
 *
 * Runs SQL (one statement, autocommit, returning one integer: how much it
 * did) again and again.  When it returns 0 (nothing to do) the consumer
 * waits: with a CHANNEL (not "-") for a NOTIFY on it (LISTEN), at most
 * IDLE_MS, which covers a notification sent before the LISTEN or lost
 * between two drains; without one it sleeps IDLE_MS (a polling consumer,
 * as PgQ's are).  On SIGTERM or SIGINT it finishes the statement it runs
 * and prints its own CPU time (user + system, microseconds) on stdout, so
 * that the benchmark can charge what a consumer outside the server costs.
 *
 * Invariants: it never runs SQL concurrently with itself; an error ends it
 * with exit status 1 (the benchmark then reports the variant as failed).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/time.h>

#include <libpq-fe.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static void
print_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	printf("%lld\n",
		   (long long) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
		   ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	const char *sql;
	const char *channel;
	long		idle_ms;
	struct sigaction sa;

	if (argc != 5)
	{
		fprintf(stderr, "usage: consumer CONNINFO SQL CHANNEL|- IDLE_MS\n");
		return 2;
	}
	sql = argv[2];
	channel = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
	idle_ms = atol(argv[4]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "consumer: %s", PQerrorMessage(conn));
		return 1;
	}
	if (channel)
	{
		char	   *id = PQescapeIdentifier(conn, channel, strlen(channel));
		char		listen[256];
		PGresult   *r;

		snprintf(listen, sizeof(listen), "LISTEN %s", id);
		PQfreemem(id);
		r = PQexec(conn, listen);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "consumer: %s", PQerrorMessage(conn));
			return 1;
		}
		PQclear(r);
	}

	while (!stop)
	{
		PGresult   *r = PQexec(conn, sql);
		long		done;
		PGnotify   *n;

		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		{
			fprintf(stderr, "consumer: %s", PQerrorMessage(conn));
			PQclear(r);
			return 1;
		}
		done = atol(PQgetvalue(r, 0, 0));
		PQclear(r);
		if (done > 0)
			continue;

		/* Nothing to do: wait for a notification, or sleep. */
		PQconsumeInput(conn);
		n = PQnotifies(conn);
		if (n)
		{
			/* Every notification so far is served by the next drain. */
			do
				PQfreemem(n);
			while ((n = PQnotifies(conn)) != NULL);
			continue;
		}
		{
			fd_set		fds;
			struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};
			int			sock = PQsocket(conn);

			FD_ZERO(&fds);
			if (channel)
				FD_SET(sock, &fds);
			if (select(channel ? sock + 1 : 0, &fds, NULL, NULL, &tv) < 0 &&
				errno != EINTR)
			{
				perror("consumer: select");
				return 1;
			}
			if (channel)
			{
				PQconsumeInput(conn);
				while ((n = PQnotifies(conn)) != NULL)
					PQfreemem(n);
			}
		}
	}
	PQfinish(conn);
	print_cpu();
	return 0;
}

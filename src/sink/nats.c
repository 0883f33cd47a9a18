/*-------------------------------------------------------------------------
 *
 * nats.c
 *		Destination kind "nats": NATS JetStream through cnats, many
 *		asynchronous publishes in flight, each delivered on its JetStream
 *		acknowledgement.
 *
 * CONFIG
 *	{"url": "nats://host:4222[,nats://...]", "subject": "orders.{topic}",
 *	 "stream": "ORDERS", "user": "...", "password": "...", "token": "...",
 *	 "tls": true, "tls_ca": "PEM", "tls_cert": "PEM", "tls_private_key": "PEM"}
 *	plus the common keys; "timeout" bounds the wait for each acknowledgement
 *	(default 30 s).  The subject may hold {topic} and {event_type}, replaced
 *	by the event's; the result must be a valid subject without wildcards.
 *	"stream" (optional) makes the server refuse a publish that would land in
 *	another stream (Nats-Expected-Stream).  Credentials are write-only:
 *	outbox.mask_config masks password, token and tls_private_key (and
 *	user:password@ in URLs); no message of this file quotes them.
 *	nats_keys is an allow-list (dest_config.c refuses any other key), the
 *	same for every owner: TLS material is inline PEM only and checked to be
 *	PEM, so no key can name a server file.  cnats's file-reading options
 *	(natsOptions_LoadCATrustedCertificates, LoadCertificatesChain,
 *	SetUserCredentialsFromFiles, nkey seed files), its callbacks and its
 *	custom dialers are never used.
 *
 * WIRE FORMAT (SPEC 3.2)
 *	Data: the payload as JSON text.  Headers: Nats-Msg-Id = event_id (the
 *	stream drops a duplicate within its duplicate window), id, type, topic,
 *	aggregate_id (if any), then the event's own headers (names with ':',
 *	blanks or control characters, and names starting with "Nats-", are
 *	left out; control characters in values become blanks), among them its
 *	W3C trace context (traceparent, tracestate) when it has a valid one
 *	(invalid ones are dropped before: dispatch/delivery.c).
 *
 * OUTCOMES
 *	JetStream ack (also a duplicate ack) = delivered.  No responders = no
 *	stream listens on the subject: retried, error "no JetStream stream for
 *	subject ...".  A payload larger than the server's max_payload or the
 *	stream's max_msg_size: dead letter.  Other JetStream errors, timeouts
 *	and a disconnected server: retried with backoff.
 *
 * THE LOOP (deliver_batch, outside any transaction)
 *	One connection and JetStream context per destination, created on first
 *	use and kept across batches in dest_cache.c (keyed by destination id
 *	and config bytes;
 *	a changed config or a connection cnats gave up on makes a new one; one
 *	unused for NATS_IDLE_CLOSE_MS is closed).  cnats connects and
 *	reconnects in its own threads (RetryOnFailedConnect, endless
 *	reconnects), so the only blocking call is the first connect attempt,
 *	bounded by min(timeout, 2 s).  A connection that went dead without a
 *	FIN or RST (a NAT or firewall on the way forgot it, a black hole) is
 *	found by PINGs: one every clamp(timeout, 1 s, 10 s), stale after
 *	NATS_MAX_PINGS_OUT unanswered, then reconnected; cnats's default (a
 *	PING every 2 minutes) left such a destination failing every publish
 *	for minutes while a new connection would have worked.  Acknowledgements arrive in a cnats
 *	thread: the handler (plain C, no PostgreSQL calls) appends them to a
 *	mutex-protected list and writes a byte to sink_wait.c's pipe.
 *	deliver_batch waits on that pipe, MyLatch and postmaster death
 *	(SinkWaitUntil), CHECK_FOR_INTERRUPTS on every wakeup.  Every signal is blocked while
 *	cnats may start threads, so they never run PostgreSQL's handlers.
 *
 *	Order (G4): lanes are honoured strictly, one publish in flight per lane
 *	(the next one is published when the previous one is acknowledged; the
 *	rest of a lane is skipped when one fails).  Different aggregates are
 *	published concurrently, up to outbox_saga.max_inflight.  Until one
 *	event of the batch succeeded, at most NATS_FAILURES_BEFORE_STOP
 *	publishes are attempted.  A batch ends when nothing is in flight, or at
 *	its deadline (timeout + 1 s): acknowledgements still missing are taken
 *	back from cnats and retried later; if the server stored them anyway,
 *	Nats-Msg-Id deduplicates the second copy.
 *
 *	Acknowledgements are matched to events by connection generation and
 *	Nats-Msg-Id.  A late success of an earlier attempt of the same event is
 *	a real success; a late failure costs at most one extra attempt.
 *
 * MEMORY: per-batch data in the caller's context; parsed configs and
 *	connection state in their dest_cache.c entry; acknowledgement records malloc'd by the
 *	cnats thread and freed by the dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <pthread.h>
#include <signal.h>

#include <nats/nats.h>

#include "lib/stringinfo.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/guc.h"
#include "sink/dest_cache.h"
#include "sink/dest_config.h"
#include "sink/lane_plan.h"
#include "sink/sink.h"
#include "sink/sink_wait.h"
#include "sink/template.h"

/* Until one event of a batch succeeds, at most this many are attempted. */
#define NATS_FAILURES_BEFORE_STOP	3

/* Longest single wait (the loop rechecks the connection and deadline). */
#define NATS_MAX_WAIT_MS			100

/*
 * Liveness of a connection (see THE LOOP): a PING every
 * clamp(timeout, NATS_PING_MIN_MS, NATS_PING_MAX_MS); a connection with more
 * than NATS_MAX_PINGS_OUT of them unanswered is stale and cnats reconnects.
 */
#define NATS_PING_MIN_MS			1000
#define NATS_PING_MAX_MS			10000
#define NATS_MAX_PINGS_OUT			2

/* A connection unused this long is closed at the next batch of any. */
#define NATS_IDLE_CLOSE_MS			(10 * 60 * 1000)

/* Longest subject and config strings accepted. */
#define NATS_MAX_SUBJECT			1024
#define NATS_MAX_PEM				(64 * 1024)

static const char *const nats_keys[] = {
	"url", "subject", "stream", "user", "password", "token",
	"tls", "tls_ca", "tls_cert", "tls_private_key", NULL
};

/* A config, parsed. */
typedef struct NatsConfig
{
	char	   *url;			/* comma-separated server URLs */
	char	   *subject;		/* template */
	char	   *stream;
	char	   *user;
	char	   *password;
	char	   *token;
	bool		tls;
	char	   *tls_ca;
	char	   *tls_cert;
	char	   *tls_private_key;
} NatsConfig;

/* A destination's connection, kept across batches (dest_cache.c). */
typedef struct NatsDest
{
	NatsConfig	conf;
	natsConnection *nc;			/* NULL until the first batch */
	jsCtx	   *js;
	uint64		gen;			/* tags this connection's acks */
} NatsDest;

/* One acknowledgement (or failure), handed over from a cnats thread. */
typedef struct NatsAck
{
	struct NatsAck *next;
	uint64		gen;
	char		id[SINK_UUID_TEXT_LEN];
	bool		ok;
	natsStatus	status;
	int			errcode;		/* jsErrCode, 0 if none */
	char		text[256];
} NatsAck;

/* Event index by Nats-Msg-Id, for one batch. */
typedef struct NatsIdEntry
{
	char		id[SINK_UUID_TEXT_LEN];
	int			index;
} NatsIdEntry;

/* The state of one deliver_batch() call. */
typedef struct NatsBatch
{
	const DestinationConfig *dest;
	NatsDest   *nd;
	DispatchEvent *const *events;
	SinkOutcome *outcomes;
	int			n;
	char	  (*ids)[SINK_UUID_TEXT_LEN];
	bool	   *inflight_flag;
	SinkLanePlan plan;
	HTAB	   *by_id;
	int			inflight;
	int			limit;
	int			ok;
	int			failed;
	bool		stop;
	int64		timeout_ms;
	TimestampTz deadline;
} NatsBatch;

/* Process-wide state. */
static void *make_dest(Jsonb *config);
static void release_dest(void *state);

static SinkDestCache nats_cache = {
	.name = "nats",
	.make = make_dest,
	.release = release_dest,
	.idle_close_ms = NATS_IDLE_CLOSE_MS,
};
static uint64 next_gen = 1;
static bool nats_opened = false;

/* Filled by cnats threads, drained by the dispatcher. */
static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static NatsAck *ack_head = NULL;
static NatsAck *ack_tail = NULL;

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------
 */

/*
 * block_signals / unblock_signals
 *		Around cnats calls that may start threads: they inherit the mask,
 *		so PostgreSQL's handlers only ever run in the main thread.
 */
static void
block_signals(sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, &BlockSig, saved);
}

static void
unblock_signals(sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/*
 * redact_urls
 *		A copy of 's' with the user information of every URL in it ("//x@")
 *		replaced by three stars, for cnats messages that might quote a URL.
 */
static char *
redact_urls(const char *s)
{
	StringInfoData buf;
	const char *p = s;

	initStringInfo(&buf);
	while (*p)
	{
		const char *slash = strstr(p, "//");
		const char *at;
		const char *end;

		if (slash == NULL)
			break;
		appendBinaryStringInfo(&buf, p, slash - p + 2);
		p = slash + 2;
		end = p + strcspn(p, "/ ,\"'");
		at = memchr(p, '@', end - p);
		if (at != NULL)
		{
			appendStringInfoString(&buf, "***");
			p = at;
		}
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/* ------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------
 */

/*
 * subject_problem
 *		Why 's' is not a subject one may publish to, or NULL if it is: at
 *		most NATS_MAX_SUBJECT bytes of non-empty dot-separated tokens, no
 *		blanks or control characters, no wildcards.
 */
static const char *
subject_problem(const char *s)
{
	const char *p;
	bool		token_empty = true;

	if (*s == '\0')
		return "it is empty";
	if (strlen(s) > NATS_MAX_SUBJECT)
		return psprintf("it is longer than %d bytes", NATS_MAX_SUBJECT);
	for (p = s; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= ' ' || c == 0x7F)
			return "it contains a blank or a control character";
		if (c == '*' || c == '>')
			return "it contains a wildcard (* or >)";
		if (c == '.')
		{
			if (token_empty)
				return "it has an empty token (a leading, trailing or doubled dot)";
			token_empty = true;
		}
		else
			token_empty = false;
	}
	if (token_empty)
		return "it has an empty token (a leading, trailing or doubled dot)";
	return NULL;
}

/*
 * config_string
 *		String key 'key' (NULL if absent); an error if empty or holding a
 *		NUL-free string longer than 'max'.
 */
static char *
config_string(Jsonb *config, const char *key, int max)
{
	char	   *s = DestConfigString(config, key);

	if (s == NULL)
		return NULL;
	if (s[0] == '\0')
		DestConfigError(psprintf("configuration key \"%s\" must not be empty", key), NULL);
	if (strlen(s) > max)
		DestConfigError(psprintf("configuration key \"%s\" is too long", key),
						psprintf("It has at most %d bytes.", max));
	return s;
}

/*
 * check_urls
 *		"url": a comma-separated list of nats:// or tls:// URLs.  Messages
 *		never quote it (it may hold user:password@).
 */
static void
check_urls(const char *url)
{
	char	   *copy = pstrdup(url);
	char	   *tok;
	char	   *save;
	int			count = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "nats://", 7) != 0 && strncmp(tok, "tls://", 6) != 0)
			DestConfigError("configuration key \"url\" must hold nats:// or tls:// URLs",
							"Give one URL such as \"nats://127.0.0.1:4222\", or several separated by commas.");
		if (tok[strncmp(tok, "tls://", 6) == 0 ? 6 : 7] == '\0')
			DestConfigError("a URL in configuration key \"url\" has no host", NULL);
		count++;
	}
	if (count == 0)
		DestConfigError("configuration key \"url\" holds no URL", NULL);
	pfree(copy);
}

/*
 * parse_config
 *		The kind's keys of 'config' into 'out', in CurrentMemoryContext;
 *		errors 22023.
 */
static void
parse_config(Jsonb *config, NatsConfig *out)
{
	JsonbValue	v;

	memset(out, 0, sizeof(*out));

	out->url = config_string(config, "url", 4096);
	if (out->url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a nats destination needs the config key \"url\""),
				 errhint("For example '{\"url\": \"nats://127.0.0.1:4222\", \"subject\": \"events.{topic}\"}'.")));
	check_urls(out->url);

	out->subject = config_string(config, "subject", NATS_MAX_SUBJECT);
	if (out->subject == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a nats destination needs the config key \"subject\""),
				 errhint("For example \"events.{topic}\": {topic} and {event_type} are replaced by the event's.")));
	SinkCheckTemplate("subject", out->subject, "topic", "type", subject_problem,
					  "NATS subject", "subject");

	out->stream = config_string(config, "stream", 255);
	if (out->stream != NULL && strpbrk(out->stream, " \t.*>/\\") != NULL)
		DestConfigError("configuration key \"stream\" is not a valid stream name",
						"A stream name has no blanks, dots, wildcards or slashes.");
	out->user = config_string(config, "user", 1024);
	out->password = DestConfigString(config, "password");
	out->token = DestConfigString(config, "token");
	if (out->password != NULL && out->user == NULL)
		DestConfigError("configuration key \"password\" needs \"user\"", NULL);
	if (out->token != NULL && out->user != NULL)
		DestConfigError("configuration keys \"token\" and \"user\" exclude each other",
						"Authenticate with a user and password, or with a token.");

	if (DestConfigFind(config, "tls", &v))
	{
		if (v.type != jbvBool)
			DestConfigError("configuration key \"tls\" must be a boolean", NULL);
		out->tls = v.val.boolean;
	}
	out->tls_ca = config_string(config, "tls_ca", NATS_MAX_PEM);
	out->tls_cert = config_string(config, "tls_cert", NATS_MAX_PEM);
	out->tls_private_key = DestConfigString(config, "tls_private_key");
	if ((out->tls_cert == NULL) != (out->tls_private_key == NULL))
		DestConfigError("configuration keys \"tls_cert\" and \"tls_private_key\" go together",
						"A client certificate needs its private key, and the other way round.");
	if (out->tls_ca && strstr(out->tls_ca, "-----BEGIN CERTIFICATE-----") == NULL)
		DestConfigError("configuration key \"tls_ca\" must hold PEM certificates",
						"Give the certificates themselves (\"-----BEGIN CERTIFICATE-----...\"), not a file name.");
	if (out->tls_cert && strstr(out->tls_cert, "-----BEGIN CERTIFICATE-----") == NULL)
		DestConfigError("configuration key \"tls_cert\" must hold a PEM certificate", NULL);
	if (out->tls_private_key && strstr(out->tls_private_key, "-----BEGIN") == NULL)
		DestConfigError("configuration key \"tls_private_key\" must hold a PEM private key", NULL);
	if (out->tls_ca || out->tls_cert || strstr(out->url, "tls://") != NULL)
		out->tls = true;
}

/*
 * nats_validate
 *		The kind's check at create_destination / alter_destination.
 */
static void
nats_validate(Jsonb *config, Oid owner)
{
	NatsConfig	parsed;

	parse_config(config, &parsed);
}

/* ------------------------------------------------------------------------
 * cnats callbacks (cnats threads: plain C only)
 * ------------------------------------------------------------------------
 */

/*
 * ack_handler
 *		jsPubAckHandler: queue the result for the dispatcher and wake it.
 */
static void
ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
			void *closure)
{
	NatsAck    *ack = malloc(sizeof(NatsAck));
	const char *id = NULL;

	if (ack != NULL)
	{
		memset(ack, 0, sizeof(*ack));
		ack->gen = (uint64) (uintptr_t) closure;
		if (msg != NULL && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id)
			strlcpy(ack->id, id, sizeof(ack->id));
		if (pa != NULL)
			ack->ok = true;
		else if (pae != NULL)
		{
			ack->status = pae->Err;
			ack->errcode = (int) pae->ErrCode;
			if (pae->ErrText)
				strlcpy(ack->text, pae->ErrText, sizeof(ack->text));
		}
		pthread_mutex_lock(&ack_lock);
		if (ack_tail)
			ack_tail->next = ack;
		else
			ack_head = ack;
		ack_tail = ack;
		pthread_mutex_unlock(&ack_lock);
	}
	natsMsg_Destroy(msg);
	SinkWaitWake();
}

/*
 * conn_handler
 *		Connected, disconnected, reconnected, closed: wake the dispatcher so
 *		that it looks at the connection's status.
 */
static void
conn_handler(natsConnection *nc, void *closure)
{
	SinkWaitWake();
}

/*
 * take_acks
 *		Detach the queued acknowledgements (a list the caller frees).
 */
static NatsAck *
take_acks(void)
{
	NatsAck    *list;

	pthread_mutex_lock(&ack_lock);
	list = ack_head;
	ack_head = ack_tail = NULL;
	pthread_mutex_unlock(&ack_lock);
	return list;
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------
 */

/*
 * ensure_process_state
 *		nats_Open and the wake-up pipe, once.
 */
static void
ensure_process_state(void)
{
	if (!nats_opened)
	{
		sigset_t	saved;
		natsStatus	s;

		block_signals(&saved);
		s = nats_Open(-1);
		unblock_signals(&saved);
		if (s != NATS_OK)
			elog(ERROR, "outbox_saga: could not initialize the NATS library: %s",
				 natsStatus_GetText(s));
		nats_opened = true;
	}
	SinkWaitEnsurePipe();
}

/*
 * close_connection
 *		Destroy a destination's JetStream context and connection (pending
 *		publishes are dropped; their events are retried by the dispatcher).
 */
static void
close_connection(NatsDest *nd)
{
	sigset_t	saved;

	block_signals(&saved);
	if (nd->js != NULL)
	{
		natsMsgList pending;

		if (js_PublishAsyncGetPendingList(&pending, nd->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
		jsCtx_Destroy(nd->js);
		nd->js = NULL;
	}
	if (nd->nc != NULL)
	{
		natsConnection_Destroy(nd->nc);
		nd->nc = NULL;
	}
	unblock_signals(&saved);
}

/*
 * make_dest
 *		A cache entry's state: the parsed config, no connection yet.
 */
static void *
make_dest(Jsonb *config)
{
	NatsDest   *nd = palloc0(sizeof(NatsDest));

	parse_config(config, &nd->conf);
	return nd;
}

/*
 * release_dest
 *		Close a cache entry's connection and wipe its credentials.
 */
static void
release_dest(void *state)
{
	NatsDest   *nd = state;

	close_connection(nd);
	if (nd->conf.password)
		explicit_bzero(nd->conf.password, strlen(nd->conf.password));
	if (nd->conf.token)
		explicit_bzero(nd->conf.token, strlen(nd->conf.token));
	if (nd->conf.tls_private_key)
		explicit_bzero(nd->conf.tls_private_key, strlen(nd->conf.tls_private_key));
}

/*
 * nats_forget
 *		Close the connection of destination 'dest_id'.
 */
static void
nats_forget(int32 dest_id)
{
	SinkDestForget(&nats_cache, dest_id);
}

/*
 * status_text
 *		natsStatus text plus cnats' last error of the connection, URLs
 *		redacted.
 */
static char *
status_text(natsConnection *nc, natsStatus s)
{
	const char *last = NULL;

	if (nc != NULL)
		(void) natsConnection_GetLastError(nc, &last);
	if (last != NULL && last[0] != '\0' && strcmp(last, natsStatus_GetText(s)) != 0)
		return redact_urls(psprintf("%s (%s)", natsStatus_GetText(s), last));
	return pstrdup(natsStatus_GetText(s));
}

/*
 * open_connection
 *		Start connecting destination 'nd' (cnats goes on in the background
 *		if the server is not there).  Returns NULL, or why it cannot start.
 */
static char *
open_connection(NatsDest *nd, const DestinationConfig *dest)
{
	natsOptions *opts = NULL;
	natsStatus	s;
	sigset_t	saved;
	jsOptions	jo;
	char	   *error = NULL;
	char	   *name = psprintf("outbox_saga %s", dest->name);
	char	  **urls;
	int			nurls = 0;
	char	   *copy = pstrdup(nd->conf.url);
	char	   *tok;
	char	   *save;

	urls = palloc(sizeof(char *) * (strlen(copy) / 2 + 2));
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		while (*tok == ' ')
			tok++;
		urls[nurls++] = tok;
	}

	nd->gen = next_gen++;
	block_signals(&saved);
	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char **) urls, nurls);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, name);
	if (s == NATS_OK && nd->conf.user)
		s = natsOptions_SetUserInfo(opts, nd->conf.user, nd->conf.password);
	if (s == NATS_OK && nd->conf.token)
		s = natsOptions_SetToken(opts, nd->conf.token);
	if (s == NATS_OK && nd->conf.tls)
		s = natsOptions_SetSecure(opts, true);
	if (s == NATS_OK && nd->conf.tls_ca)
		s = natsOptions_SetCATrustedCertificates(opts, nd->conf.tls_ca);
	if (s == NATS_OK && nd->conf.tls_cert)
		s = natsOptions_SetCertificatesChain(opts, nd->conf.tls_cert,
											 nd->conf.tls_private_key);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, Min(dest->timeout_ms, 2000));
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts,
										Max(NATS_PING_MIN_MS,
											Min(dest->timeout_ms, NATS_PING_MAX_MS)));
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, NATS_MAX_PINGS_OUT);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 500);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, conn_handler, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, conn_handler, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, conn_handler, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, conn_handler, NULL);
	if (s != NATS_OK)
		error = psprintf("invalid NATS options: %s", natsStatus_GetText(s));
	else
	{
		s = natsConnection_Connect(&nd->nc, opts);
		if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		{
			error = psprintf("cannot connect to the NATS server: %s",
							 status_text(NULL, s));
			nd->nc = NULL;
		}
	}
	if (error == NULL)
	{
		s = jsOptions_Init(&jo);
		jo.Wait = dest->timeout_ms;
		jo.PublishAsync.MaxPending = 2 * DEST_MAX_BATCH_SIZE;
		jo.PublishAsync.AckHandler = ack_handler;
		jo.PublishAsync.AckHandlerClosure = (void *) (uintptr_t) nd->gen;
		if (s == NATS_OK)
			s = natsConnection_JetStream(&nd->js, nd->nc, &jo);
		if (s != NATS_OK)
		{
			error = psprintf("cannot create a JetStream context: %s",
							 natsStatus_GetText(s));
			natsConnection_Destroy(nd->nc);
			nd->nc = NULL;
			nd->js = NULL;
		}
	}
	natsOptions_Destroy(opts);
	unblock_signals(&saved);
	return error;
}

/* ------------------------------------------------------------------------
 * deliver_batch
 * ------------------------------------------------------------------------
 */

/*
 * fail
 *		Event 'i' did not make it.
 */
static void
fail(NatsBatch *b, int i, SinkStatus status, char *error)
{
	b->outcomes[i].status = status;
	b->outcomes[i].error = error;
	b->failed++;
	if (b->ok == 0 && b->failed >= NATS_FAILURES_BEFORE_STOP)
		b->stop = true;
}

/*
 * add_headers
 *		The event's own headers onto 'msg' (see the file header).
 */
static natsStatus
add_headers(natsMsg *msg, Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	if (headers == NULL || !JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		return NATS_OK;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			const char *p;

			name = pnstrdup(v.val.string.val, v.val.string.len);
			for (p = name; *p; p++)
				if ((unsigned char) *p <= ' ' || *p == ':' || *p == 0x7F)
					break;
			if (*p != '\0' || name[0] == '\0' || pg_strncasecmp(name, "Nats-", 5) == 0)
				name = NULL;
		}
		else if (tok == WJB_VALUE && name != NULL && v.type == jbvString)
		{
			char	   *value = pnstrdup(v.val.string.val, v.val.string.len);
			char	   *p;
			natsStatus	s;

			for (p = value; *p; p++)
				if ((unsigned char) *p < ' ' || *p == 0x7F)
					*p = ' ';
			s = natsMsgHeader_Set(msg, name, value);
			if (s != NATS_OK)
				return s;
		}
	}
	return NATS_OK;
}

/*
 * build_message
 *		The NATS message of event 'i', or NULL with the outcome filled in.
 */
static natsMsg *
build_message(NatsBatch *b, int i)
{
	DispatchEvent *ev = b->events[i];
	char	   *topic = text_to_cstring(ev->topic);
	char	   *type = text_to_cstring(ev->event_type);
	char	   *bad;
	char	   *subject = SinkExpandTemplate(b->nd->conf.subject, topic, type, &bad);
	const char *why;
	char	   *data;
	natsMsg    *msg = NULL;
	natsStatus	s;

	if (subject == NULL || (why = subject_problem(subject)) != NULL)
	{
		fail(b, i, SINK_DEAD,
			 psprintf("subject \"%.200s\" is not a valid NATS subject: %s",
					  subject ? subject : b->nd->conf.subject,
					  subject ? why : "unknown placeholder"));
		return NULL;
	}
	data = JsonbToCString(NULL, &ev->payload->root, VARSIZE(ev->payload));

	s = natsMsg_Create(&msg, subject, NULL, data, (int) strlen(data));
	if (s == NATS_OK)
		s = add_headers(msg, ev->headers);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "id", b->ids[i]);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "type", type);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "topic", topic);
	if (s == NATS_OK && ev->aggregate_id != NULL)
	{
		char	   *agg = text_to_cstring(ev->aggregate_id);
		char	   *p;

		for (p = agg; *p; p++)
			if ((unsigned char) *p < ' ' || *p == 0x7F)
				*p = ' ';
		s = natsMsgHeader_Set(msg, "aggregate_id", agg);
	}
	if (s != NATS_OK)
	{
		natsMsg_Destroy(msg);
		fail(b, i, SINK_RETRY, psprintf("cannot build the NATS message: %s",
										natsStatus_GetText(s)));
		return NULL;
	}
	return msg;
}

/*
 * publish
 *		Publish event 'i' asynchronously.
 */
static void
publish(NatsBatch *b, int i)
{
	natsMsg    *msg = build_message(b, i);
	jsPubOptions po;
	natsStatus	s;
	sigset_t	saved;
	NatsIdEntry *entry;
	bool		found;

	if (msg == NULL)
		return;
	jsPubOptions_Init(&po);
	po.MsgId = b->ids[i];
	po.MaxWait = b->timeout_ms;
	if (b->nd->conf.stream)
		po.ExpectStream = b->nd->conf.stream;

	entry = hash_search(b->by_id, b->ids[i], HASH_ENTER, &found);
	entry->index = i;

	block_signals(&saved);
	s = js_PublishMsgAsync(b->nd->js, &msg, &po);
	unblock_signals(&saved);
	natsMsg_Destroy(msg);
	if (s == NATS_OK)
	{
		b->inflight_flag[i] = true;
		b->inflight++;
		return;
	}
	hash_search(b->by_id, b->ids[i], HASH_REMOVE, NULL);
	if (s == NATS_MAX_PAYLOAD)
		fail(b, i, SINK_DEAD,
			 psprintf("the event is larger than the NATS server's max_payload (%lld bytes)",
					  (long long) natsConnection_GetMaxPayload(b->nd->nc)));
	else
		fail(b, i, SINK_RETRY, psprintf("NATS publish failed: %s",
										status_text(b->nd->nc, s)));
}

/*
 * describe_ack_error
 *		The error text of a failed publish of event 'i'.
 */
static char *
describe_ack_error(NatsBatch *b, int i, const NatsAck *ack, SinkStatus *status)
{
	*status = SINK_RETRY;
	if (ack->status == NATS_NO_RESPONDERS)
	{
		char	   *bad;
		char	   *subject = SinkExpandTemplate(b->nd->conf.subject,
											 text_to_cstring(b->events[i]->topic),
											 text_to_cstring(b->events[i]->event_type),
											 &bad);

		return psprintf("no JetStream stream for subject \"%.200s\" (no responders)",
						subject ? subject : "?");
	}
	if (ack->status == NATS_TIMEOUT)
		return psprintf("no JetStream acknowledgement within %lld ms",
						(long long) b->timeout_ms);
	/* JSStreamMessageExceedsMaximumErr: refused for good. */
	if (ack->errcode == 10054)
		*status = SINK_DEAD;
	if (ack->errcode != 0)
		return psprintf("JetStream error %d: %s", ack->errcode,
						ack->text[0] ? ack->text : natsStatus_GetText(ack->status));
	return psprintf("JetStream publish failed: %s%s%s",
					natsStatus_GetText(ack->status),
					ack->text[0] ? ": " : "", ack->text);
}

/*
 * harvest
 *		Apply the queued acknowledgements to this batch.
 */
static void
harvest(NatsBatch *b)
{
	NatsAck    *ack = take_acks();

	while (ack != NULL)
	{
		NatsAck    *next = ack->next;
		NatsIdEntry *entry = NULL;

		if (ack->gen == b->nd->gen && ack->id[0] != '\0')
			entry = hash_search(b->by_id, ack->id, HASH_FIND, NULL);
		if (entry != NULL && b->inflight_flag[entry->index])
		{
			int			i = entry->index;

			b->inflight_flag[i] = false;
			b->inflight--;
			if (ack->ok)
			{
				b->outcomes[i].status = SINK_OK;
				b->outcomes[i].error = NULL;
				b->ok++;
				SinkLaneSucceeded(&b->plan, i);
			}
			else
			{
				SinkStatus	status;
				char	   *error = describe_ack_error(b, i, ack, &status);

				fail(b, i, status, error);
			}
		}
		free(ack);
		ack = next;
	}
}

/*
 * run_batch
 *		Wait for the connection, then publish and harvest until nothing is
 *		in flight and nothing more may start, or the deadline passed.
 */
static void
run_batch(NatsBatch *b, SinkWait *w)
{
	TimestampTz connect_until;
	int			i;

	/* A connection being (re)established gets a moment. */
	connect_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												Min(b->timeout_ms, 5000));
	while (natsConnection_Status(b->nd->nc) != NATS_CONN_STATUS_CONNECTED &&
		   natsConnection_Status(b->nd->nc) != NATS_CONN_STATUS_CLOSED &&
		   GetCurrentTimestamp() < connect_until)
		SinkWaitUntil(w, connect_until, NATS_MAX_WAIT_MS);
	if (natsConnection_Status(b->nd->nc) != NATS_CONN_STATUS_CONNECTED)
	{
		const char *last = NULL;
		char	   *error;

		(void) natsConnection_GetLastError(b->nd->nc, &last);
		error = redact_urls(psprintf("not connected to the NATS server%s%s",
									 last && last[0] ? ": " : "",
									 last ? last : ""));
		SinkOutcomesFailAll(b->outcomes, b->n, error);
		if (natsConnection_Status(b->nd->nc) == NATS_CONN_STATUS_CLOSED)
			close_connection(b->nd);
		return;
	}

	for (;;)
	{
		harvest(b);
		if (GetCurrentTimestamp() >= b->deadline)
			break;
		if (natsConnection_Status(b->nd->nc) != NATS_CONN_STATUS_CONNECTED)
			b->stop = true;
		while (!b->stop && b->inflight < b->limit && SinkLaneHasReady(&b->plan))
			publish(b, SinkLaneTakeReady(&b->plan));
		if (b->inflight == 0)
			break;
		SinkWaitUntil(w, b->deadline, NATS_MAX_WAIT_MS);
	}

	/* Deadline: take back what is still waiting for its ack. */
	if (b->inflight > 0)
	{
		natsMsgList pending;
		sigset_t	saved;
		char	   *error = psprintf("no JetStream acknowledgement within %lld ms",
									 (long long) b->timeout_ms);

		block_signals(&saved);
		if (js_PublishAsyncGetPendingList(&pending, b->nd->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
		unblock_signals(&saved);
		harvest(b);
		for (i = 0; i < b->n; i++)
			if (b->inflight_flag[i])
			{
				b->inflight_flag[i] = false;
				b->outcomes[i].status = SINK_RETRY;
				b->outcomes[i].error = error;
			}
		b->inflight = 0;
	}
}

/*
 * nats_deliver_batch
 *		Deliver events[0..n-1]; see sink.h and the file header.
 */
static void
nats_deliver_batch(const DestinationConfig *dest, DispatchEvent *const *events,
				   const int *lanes, int n, SinkOutcome *outcomes)
{
	NatsBatch	b;
	NatsDest   *nd;
	char	   *error = NULL;
	SinkWait	w;
	HASHCTL		ctl;
	int			i;

	if (n == 0)
		return;

	ensure_process_state();

	/* A config that no longer parses fails every event with its reason. */
	nd = SinkDestLookup(&nats_cache, dest, &error);
	if (nd != NULL && nd->nc == NULL)
		error = open_connection(nd, dest);
	if (error != NULL)
	{
		SinkOutcomesFailAll(outcomes, n, error);
		return;
	}
	memset(&b, 0, sizeof(b));
	b.dest = dest;
	b.nd = nd;
	b.events = events;
	b.outcomes = outcomes;
	b.n = n;
	b.timeout_ms = dest->timeout_ms;
	b.limit = Max(1, Min(OutboxMaxInflight, n));
	b.ids = palloc(sizeof(*b.ids) * n);
	b.inflight_flag = palloc0(sizeof(bool) * n);
	for (i = 0; i < n; i++)
		SinkFormatUuid(&events[i]->event_id, b.ids[i]);
	ctl.keysize = SINK_UUID_TEXT_LEN;
	ctl.entrysize = sizeof(NatsIdEntry);
	ctl.hcxt = CurrentMemoryContext;
	b.by_id = hash_create("outbox_saga nats ids", Max(n, 16), &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	SinkLanePlanInit(&b.plan, n);
	SinkLanePlanAddAll(&b.plan, lanes, n);
	b.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 b.timeout_ms + 1000);

	SinkWaitBegin(&w);
	PG_TRY();
	{
		run_batch(&b, &w);
	}
	PG_CATCH();
	{
		SinkWaitEnd(&w);
		/* Publishes in flight are dropped; the next batch starts clean. */
		close_connection(nd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SinkWaitEnd(&w);
}

const OutboxSink SinkNats = {
	.kind = "nats",
	.keys = nats_keys,
	.validate = nats_validate,
	.deliver_batch = nats_deliver_batch,
	.forget = nats_forget,
};

/*-------------------------------------------------------------------------
 *
 * kafka.c
 *		Destination kind "kafka": an idempotent librdkafka producer per
 *		destination; an event is delivered on its broker delivery report.
 *
 * CONFIG
 *	{"brokers": "host:9092,...", "topic": "orders" | "events.{topic}",
 *	 "properties": {"compression.type": "zstd", "sasl.password": "...", ...}}
 *	plus the common keys; "timeout" is librdkafka's message.timeout.ms
 *	unless "properties" sets it.  {topic} and {event_type} in "topic" are
 *	replaced by the event's; the result must be a legal Kafka topic name.
 *	Every property is checked with rd_kafka_conf_set on a scratch config at
 *	create_destination: an unknown one is error 22023 naming it; the value
 *	of a secret-looking property is never quoted.  outbox_saga owns
 *	bootstrap.servers, enable.idempotence (always true) and acks (all);
 *	properties that load code or run commands are refused, and a
 *	non-superuser owner may set only the properties of allowed_properties
 *	(an allow-list: files, providers, Kerberos, OIDC, logging and anything
 *	unreviewed are superuser-only).  The owner is checked at
 *	create_destination and alter_destination.
 *
 * WIRE FORMAT (SPEC 3.2)
 *	Key: aggregate_id (none if NULL).  Value: the payload as JSON text.
 *	Headers: id (event_id), type, topic, then the event's own headers, among
 *	them its W3C trace context (traceparent, tracestate) when it has a
 *	valid one (invalid ones are dropped before: dispatch/delivery.c).
 *
 * OUTCOMES
 *	Delivery report without error = delivered.  Message too large, invalid
 *	record: dead letter.  Everything else (timeouts, broker down, unknown
 *	topic, authorization, a fatal idempotence error): retried with backoff,
 *	the error text from librdkafka in outbox.stats.
 *
 * ORDER (G4)
 *	All events of a batch are produced at once, without waiting for the
 *	previous event of the same lane: one key maps to one partition, and the
 *	idempotent producer (max.in.flight <= 5, endless internal retries within
 *	message.timeout.ms, sequence numbers checked by the broker) keeps a
 *	partition's messages in production order.  A later message of a
 *	partition is never written before an earlier one that failed: failures
 *	in a partition come in order (timeouts expire oldest first; a fatal
 *	error fails all).  When produce() refuses an event at once, the rest of
 *	its lane is not produced (SKIPPED); so is the rest of a lane from its
 *	first event bound for another Kafka topic than its earlier ones (a
 *	"topic" template with {event_type}): order holds within a partition
 *	only.  This trades the one-in-flight-per-
 *	lane rule of sink.h, which would cost a broker round trip per event of
 *	a busy aggregate, for librdkafka's ordering guarantee.
 *
 * THE LOOP (deliver_batch, outside any transaction)
 *	The producer lives across batches in dest_cache.c (keyed by
 *	destination id and config bytes; recreated after a fatal error; closed
 *	when unused for KAFKA_IDLE_CLOSE_MS).  librdkafka's main queue
 *	(delivery reports, errors) signals sink_wait.c's pipe when it becomes
 *	non-empty (rd_kafka_queue_io_event_enable); deliver_batch waits on that
 *	pipe, MyLatch and postmaster death (SinkWaitUntil) and serves the queue
 *	with rd_kafka_poll(rk, 0), so callbacks run in this thread and never
 *	block.  CHECK_FOR_INTERRUPTS on every wakeup.  At the deadline (timeout
 *	+ 1 s) messages not yet sent are purged and, like those in flight,
 *	reported SINK_RETRY; their late reports are ignored (each message's
 *	opaque carries the batch number).  librdkafka's threads start with
 *	every signal blocked.
 *
 * MEMORY: per-batch data in the caller's context; producers and parsed
 *	configs in their dest_cache.c entry (secrets wiped when released).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <pthread.h>
#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "lib/stringinfo.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sink/dest_cache.h"
#include "sink/dest_config.h"
#include "sink/sink.h"
#include "sink/sink_wait.h"
#include "sink/template.h"

/* Longest single wait (the loop rechecks the deadline). */
#define KAFKA_MAX_WAIT_MS			100

/* A producer unused this long is closed at the next batch of any. */
#define KAFKA_IDLE_CLOSE_MS			(10 * 60 * 1000)

/* How long closing a producer may wait for its messages. */
#define KAFKA_CLOSE_FLUSH_MS		1000

#define KAFKA_MAX_PROPERTIES		100
#define KAFKA_MAX_TOPIC				249

/* Batch number and event index in a message's opaque. */
#define KAFKA_INDEX_BITS			20

static const char *const kafka_keys[] = {"brokers", "topic", "properties", NULL};

/* Properties outbox_saga sets itself. */
static const char *const owned_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "enable.idempotence",
	"dr_cb", "dr_msg_cb", "error_cb", "log_cb", "opaque", "background_event_cb",
	NULL
};

/*
 * Properties that load code or run commands in the server process: refused
 * for every owner (a superuser has LOAD and COPY ... PROGRAM for that).
 */
static const char *const refused_properties[] = {
	"plugin.library.paths", "sasl.kerberos.kinit.cmd", "ssl.engine.location",
	"ssl_engine_location", "interceptors", NULL
};

/*
 * The allow-list: the only properties a destination of a non-superuser
 * owner may set.  Reviewed against every global and topic property of
 * librdkafka 2.x (CONFIGURATION.md): producer tuning, timeouts, sockets,
 * compression, TLS and SASL with inline material.  Left out, hence
 * superuser-only, is everything that names a file or directory
 * (*.location, sasl.kerberos.keytab, ssl.ca.certificate.stores), loads an
 * OpenSSL provider or engine (ssl.providers, ssl.engine.id), runs Kerberos
 * (sasl.kerberos.*), makes librdkafka itself send HTTP requests
 * (sasl.oauthbearer.method=oidc and its token endpoint), writes the server
 * log (debug, log_level, log.*), signals threads
 * (internal.termination.signal), changes the producer's semantics
 * (transactional.id, delivery.report.only.error, partitioner), and every
 * consumer property.  A property librdkafka adds later is superuser-only
 * until it is reviewed and listed here.
 */
static const char *const allowed_properties[] = {
	/* identity and protocol */
	"client.id", "client.rack", "api.version.request",
	"api.version.request.timeout.ms", "api.version.fallback.ms",
	"broker.version.fallback",
	/* sizes and in-flight limits */
	"message.max.bytes", "message.copy.max.bytes", "receive.message.max.bytes",
	"max.in.flight.requests.per.connection", "max.in.flight",
	/* metadata */
	"topic.metadata.refresh.interval.ms", "metadata.max.age.ms",
	"topic.metadata.refresh.fast.interval.ms", "topic.metadata.refresh.sparse",
	"topic.metadata.propagation.max.ms",
	/* sockets and reconnects */
	"socket.timeout.ms", "socket.send.buffer.bytes",
	"socket.receive.buffer.bytes", "socket.keepalive.enable",
	"socket.nagle.disable", "socket.max.fails", "broker.address.ttl",
	"broker.address.family", "socket.connection.setup.timeout.ms",
	"connections.max.idle.ms", "reconnect.backoff.ms",
	"reconnect.backoff.max.ms",
	/* TLS with inline PEM */
	"security.protocol", "ssl.cipher.suites", "ssl.curves.list",
	"ssl.sigalgs.list", "ssl.key.pem", "ssl.key.password",
	"ssl.certificate.pem", "ssl.ca.pem",
	"enable.ssl.certificate.verification",
	"ssl.endpoint.identification.algorithm",
	/* SASL with inline credentials */
	"sasl.mechanisms", "sasl.mechanism", "sasl.username", "sasl.password",
	"sasl.oauthbearer.config", "enable.sasl.oauthbearer.unsecure.jwt",
	/* producer */
	"enable.gapless.guarantee", "queue.buffering.max.messages",
	"queue.buffering.max.kbytes", "queue.buffering.max.ms", "linger.ms",
	"message.send.max.retries", "retries", "retry.backoff.ms",
	"retry.backoff.max.ms", "queue.buffering.backpressure.threshold",
	"compression.codec", "compression.type", "compression.level",
	"batch.num.messages", "batch.size", "sticky.partitioning.linger.ms",
	"request.required.acks", "acks", "request.timeout.ms",
	"message.timeout.ms", "delivery.timeout.ms",
	NULL
};

/* Parts of property names whose values are secrets (never quoted). */
static const char *const secret_parts[] = {
	"password", "secret", "token", "credential", "private", "key", "jaas", NULL
};

/* A config, parsed. */
typedef struct KafkaConfig
{
	char	   *brokers;
	char	   *topic;			/* template */
	int			nprops;
	char	  **prop_names;
	char	  **prop_values;
	bool		has_message_timeout;
} KafkaConfig;

/* A destination's producer, kept across batches (dest_cache.c). */
typedef struct KafkaDest
{
	KafkaConfig conf;
	rd_kafka_t *rk;				/* NULL until the first batch */
} KafkaDest;

/* A lane's state while a batch is produced. */
typedef struct KafkaLane
{
	int			lane;			/* hash key */
	bool		stopped;		/* the rest of the lane waits */
	char	   *target;			/* the Kafka topic of its produced events */
} KafkaLane;

/* The state of one deliver_batch() call. */
typedef struct KafkaBatch
{
	uint64		seq;
	const DestinationConfig *dest;
	KafkaDest  *kd;
	DispatchEvent *const *events;
	SinkOutcome *outcomes;
	int			n;
	bool	   *produced;		/* handed to the producer */
	bool	   *pending;		/* produced, no report yet */
	rd_kafka_resp_err_t *errs;	/* report errors, by event */
	int			npending;
	rd_kafka_resp_err_t last_error;	/* from error_cb */
	char		last_error_text[256];
} KafkaBatch;

static void *make_dest(Jsonb *config);
static void release_dest(void *state);

static SinkDestCache kafka_cache = {
	.name = "kafka",
	.make = make_dest,
	.release = release_dest,
	.idle_close_ms = KAFKA_IDLE_CLOSE_MS,
};
static KafkaBatch *current = NULL;	/* the batch delivery reports go to */
static uint64 batch_seq = 0;

/* ------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------
 */

/*
 * is_secret_property
 *		Whether a property's value must never be quoted.
 */
static bool
is_secret_property(const char *name)
{
	int			i;

	for (i = 0; secret_parts[i]; i++)
		if (strstr(name, secret_parts[i]) != NULL)
			return true;
	return false;
}

/*
 * in_list
 *		Whether 'name' is one of 'list'.
 */
static bool
in_list(const char *name, const char *const *list)
{
	int			i;

	for (i = 0; list[i]; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

/*
 * topic_problem
 *		Why 's' is not a legal Kafka topic name, or NULL.
 */
static const char *
topic_problem(const char *s)
{
	const char *p;

	if (*s == '\0')
		return "it is empty";
	if (strlen(s) > KAFKA_MAX_TOPIC)
		return "it is longer than 249 bytes";
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return "it is \".\" or \"..\"";
	for (p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return "a topic name consists of letters, digits, '.', '_' and '-'";
	return NULL;
}

/*
 * property_value
 *		A property's value as text: strings as they are, numbers and
 *		booleans as JSON; NULL for anything else.
 */
static char *
property_value(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * check_property
 *		Refuse a property outbox_saga owns, one that runs code, one not on
 *		the allow-list for a non-superuser owner, or acks other than all.
 */
static void
check_property(const char *name, const char *value, Oid owner)
{
	if (in_list(name, owned_properties))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka property \"%s\" may not be set in \"properties\"", name),
				 errdetail("outbox_saga sets bootstrap.servers from \"brokers\", always enables the idempotent producer, and owns the callbacks.")));
	if (in_list(name, refused_properties))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("Kafka property \"%s\" is not allowed", name),
				 errdetail("It would load code or run a command inside the database server.")));
	if (!in_list(name, allowed_properties) &&
		OidIsValid(owner) && !superuser_arg(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set Kafka property \"%s\"", name),
				 errdetail("Other roles' destinations may set only the properties of the README's allow-list; the others may name server files, load code or make requests."),
				 errhint("Pass certificates and keys inline, e.g. \"ssl.ca.pem\" and \"ssl.key.pem\".")));
	if ((strcmp(name, "acks") == 0 || strcmp(name, "request.required.acks") == 0) &&
		strcmp(value, "all") != 0 && strcmp(value, "-1") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka property \"%s\" must be \"all\"", name),
				 errdetail("The idempotent producer that keeps events in order needs acknowledgement by all in-sync replicas.")));
}

/*
 * required_key
 *		The value of string key 'key', which a kafka destination must have
 *		and not empty; 'hint' shows what it looks like.
 */
static char *
required_key(Jsonb *config, const char *key, const char *hint)
{
	char	   *value = DestConfigString(config, key);

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a kafka destination needs a non-empty config key \"%s\"", key),
				 errhint("%s", hint)));
	return value;
}

/*
 * parse_config
 *		The kind's keys of 'config' into 'out' (CurrentMemoryContext),
 *		every property tried on a scratch librdkafka config.
 */
static void
parse_config(Jsonb *config, Oid owner, KafkaConfig *out)
{
	JsonbValue	v;
	rd_kafka_conf_t *scratch;

	memset(out, 0, sizeof(*out));
	out->brokers = required_key(config, "brokers",
								"For example '{\"brokers\": \"kafka1:9092,kafka2:9092\", \"topic\": \"orders\"}'.");
	out->topic = required_key(config, "topic",
							  "A topic name, which may hold {topic} and {event_type}.");
	SinkCheckTemplate("topic", out->topic, "t", "t", topic_problem,
					  "Kafka topic name", "topic");

	out->prop_names = palloc0(sizeof(char *) * KAFKA_MAX_PROPERTIES);
	out->prop_values = palloc0(sizeof(char *) * KAFKA_MAX_PROPERTIES);
	if (!DestConfigFind(config, "properties", &v))
		return;
	if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("configuration key \"properties\" must be an object"),
				 errhint("For example '{\"compression.type\": \"zstd\", \"linger.ms\": \"10\"}'.")));

	scratch = rd_kafka_conf_new();
	PG_TRY();
	{
		JsonbIterator *it = JsonbIteratorInit(v.val.binary.data);
		JsonbValue	item;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
		{
			char		errstr[512];
			char	   *value;
			rd_kafka_conf_res_t res;

			if (tok == WJB_KEY)
			{
				name = pnstrdup(item.val.string.val, Min(item.val.string.len, 256));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			value = property_value(&item);
			if (value == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the value of Kafka property \"%s\" must be a string, number or boolean", name)));
			check_property(name, value, owner);
			if (out->nprops >= KAFKA_MAX_PROPERTIES)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("configuration key \"properties\" has too many properties"),
						 errdetail("At most %d properties may be set.", KAFKA_MAX_PROPERTIES)));
			res = rd_kafka_conf_set(scratch, name, value, errstr, sizeof(errstr));
			if (res == RD_KAFKA_CONF_UNKNOWN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown Kafka property \"%s\"", name),
						 errhint("See the CONFIGURATION.md of librdkafka %s.", rd_kafka_version_str())));
			if (res != RD_KAFKA_CONF_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for Kafka property \"%s\"", name),
						 is_secret_property(name) ? 0 :
						 errdetail_internal("%s", errstr)));
			if (strcmp(name, "message.timeout.ms") == 0 ||
				strcmp(name, "delivery.timeout.ms") == 0)
				out->has_message_timeout = true;
			out->prop_names[out->nprops] = name;
			out->prop_values[out->nprops] = value;
			out->nprops++;
		}
	}
	PG_FINALLY();
	{
		rd_kafka_conf_destroy(scratch);
	}
	PG_END_TRY();
}

/*
 * kafka_validate
 *		The kind's check at create_destination / alter_destination.
 */
static void
kafka_validate(Jsonb *config, Oid owner)
{
	KafkaConfig parsed;

	parse_config(config, owner, &parsed);
}

/* ------------------------------------------------------------------------
 * Producers
 * ------------------------------------------------------------------------
 */

/*
 * dr_msg_cb
 *		A delivery report, served by rd_kafka_poll in this thread: note it
 *		in the current batch if it belongs to it.  No errors raised here.
 */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uintptr_t	tag = (uintptr_t) msg->_private;
	uint64		seq = tag >> KAFKA_INDEX_BITS;
	int			i = (int) (tag & ((1 << KAFKA_INDEX_BITS) - 1)) - 1;

	if (current == NULL || seq != current->seq ||
		i < 0 || i >= current->n || !current->pending[i])
		return;
	current->pending[i] = false;
	current->npending--;
	current->errs[i] = msg->err;
}

/*
 * error_cb
 *		Producer-level errors (all brokers down, authentication...): kept
 *		for the error text of events that then fail.
 */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (current != NULL)
	{
		current->last_error = err;
		strlcpy(current->last_error_text, reason, sizeof(current->last_error_text));
	}
}

/*
 * log_cb
 *		librdkafka's log lines (any thread): dropped; what matters reaches
 *		outbox.stats through error_cb and the delivery reports.
 */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

/*
 * close_producer
 *		Destroy a producer after a short flush (its undelivered events are
 *		retried by the dispatcher anyway).
 */
static void
close_producer(KafkaDest *kd)
{
	sigset_t	saved;

	if (kd->rk == NULL)
		return;
	pthread_sigmask(SIG_SETMASK, &BlockSig, &saved);
	rd_kafka_purge(kd->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
	(void) rd_kafka_flush(kd->rk, KAFKA_CLOSE_FLUSH_MS);
	rd_kafka_destroy_flags(kd->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	kd->rk = NULL;
}

/*
 * make_dest
 *		A cache entry's state: the parsed config, no producer yet.
 */
static void *
make_dest(Jsonb *config)
{
	KafkaDest  *kd = palloc0(sizeof(KafkaDest));

	/* No owner check here: it passed at create_destination. */
	parse_config(config, InvalidOid, &kd->conf);
	return kd;
}

/*
 * release_dest
 *		Close a cache entry's producer and wipe its property values.
 */
static void
release_dest(void *state)
{
	KafkaDest  *kd = state;
	int			i;

	close_producer(kd);
	for (i = 0; i < kd->conf.nprops; i++)
		explicit_bzero(kd->conf.prop_values[i], strlen(kd->conf.prop_values[i]));
}

/*
 * kafka_forget
 *		Close the producer of destination 'dest_id'.
 */
static void
kafka_forget(int32 dest_id)
{
	SinkDestForget(&kafka_cache, dest_id);
}

/*
 * open_producer
 *		Create destination 'kd's producer; NULL, or why it failed.
 */
static char *
open_producer(KafkaDest *kd, const DestinationConfig *dest)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	char	   *timeout = psprintf(INT64_FORMAT, Min(dest->timeout_ms, (int64) PG_INT32_MAX));
	sigset_t	saved;
	int			i;

#define SET(name, value) \
	do { \
		if (rd_kafka_conf_set(conf, (name), (value), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) \
		{ \
			rd_kafka_conf_destroy(conf); \
			return psprintf("invalid configuration: property \"%s\": %s", (name), \
							is_secret_property(name) ? "invalid value" : errstr); \
		} \
	} while (0)

	SET("bootstrap.servers", kd->conf.brokers);
	SET("client.id", "outbox_saga");
	SET("enable.idempotence", "true");
	if (!kd->conf.has_message_timeout)
		SET("message.timeout.ms", timeout);
	for (i = 0; i < kd->conf.nprops; i++)
		SET(kd->conf.prop_names[i], kd->conf.prop_values[i]);
#undef SET
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_log_cb(conf, log_cb);

	pthread_sigmask(SIG_SETMASK, &BlockSig, &saved);
	kd->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (kd->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return psprintf("cannot create the Kafka producer: %s", errstr);
	}
	{
		rd_kafka_queue_t *q = rd_kafka_queue_get_main(kd->rk);

		rd_kafka_queue_io_event_enable(q, SinkWaitPipeWriteFd(), "1", 1);
		rd_kafka_queue_destroy(q);
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * deliver_batch
 * ------------------------------------------------------------------------
 */

/*
 * build_headers
 *		id, type, topic and the event's headers.
 */
static rd_kafka_headers_t *
build_headers(const DispatchEvent *ev, const char *id, const char *type,
			  const char *topic)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);

	rd_kafka_header_add(h, "id", -1, id, -1);
	rd_kafka_header_add(h, "type", -1, type, -1);
	rd_kafka_header_add(h, "topic", -1, topic, -1);
	if (ev->headers != NULL && JB_ROOT_IS_OBJECT(ev->headers) &&
		!JB_ROOT_IS_SCALAR(ev->headers))
	{
		JsonbIterator *it = JsonbIteratorInit(&ev->headers->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				name = pnstrdup(v.val.string.val, v.val.string.len);
				if (strcmp(name, "id") == 0 || strcmp(name, "type") == 0 ||
					strcmp(name, "topic") == 0)
					name = NULL;
			}
			else if (tok == WJB_VALUE && name != NULL && v.type == jbvString)
				rd_kafka_header_add(h, name, -1, v.val.string.val,
									v.val.string.len);
		}
	}
	return h;
}

/*
 * is_dead_error
 *		Errors that no retry can fix.
 */
static bool
is_dead_error(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
		err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
		err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
		err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/*
 * produce_all
 *		Hand every event to the producer, in batch order; an event refused
 *		at once fails and the rest of its lane is skipped.
 */
static void
produce_all(KafkaBatch *b, const int *lanes)
{
	HASHCTL		ctl;
	HTAB	   *lane_state;
	bool		queue_full = false;
	int			i;

	ctl.keysize = sizeof(int);
	ctl.entrysize = sizeof(KafkaLane);
	ctl.hcxt = CurrentMemoryContext;
	lane_state = hash_create("outbox_saga kafka lanes", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (i = 0; i < b->n; i++)
	{
		DispatchEvent *ev = b->events[i];
		char		id[SINK_UUID_TEXT_LEN];
		char	   *type;
		char	   *topic;
		char	   *bad;
		char	   *target;
		char	   *value;
		rd_kafka_headers_t *h;
		rd_kafka_resp_err_t err;
		KafkaLane  *lane = NULL;
		bool		found;

		if (queue_full)
			break;				/* the rest waits for the next batch */
		if (lanes != NULL && lanes[i] >= 0)
		{
			lane = hash_search(lane_state, &lanes[i], HASH_ENTER, &found);
			if (!found)
			{
				lane->stopped = false;
				lane->target = NULL;
			}
			if (lane->stopped)
				continue;		/* SKIPPED */
		}

		type = text_to_cstring(ev->event_type);
		topic = text_to_cstring(ev->topic);
		target = SinkExpandTemplate(b->kd->conf.topic, topic, type, &bad);
		if (target == NULL || topic_problem(target) != NULL)
		{
			b->outcomes[i].status = SINK_DEAD;
			b->outcomes[i].error = psprintf("topic \"%.200s\" is not a valid Kafka topic name",
											target ? target : b->kd->conf.topic);
			if (lane != NULL)
				lane->stopped = true;
			continue;
		}

		/*
		 * A lane keeps its order only within one partition, so within one
		 * Kafka topic: an event bound for another topic than the lane's
		 * earlier ones in this batch waits for the next batch, after theirs
		 * are recorded (a template with {event_type} can do that).
		 */
		if (lane != NULL && lane->target != NULL && strcmp(lane->target, target) != 0)
		{
			lane->stopped = true;
			continue;			/* SKIPPED */
		}

		SinkFormatUuid(&ev->event_id, id);
		value = JsonbToCString(NULL, &ev->payload->root, VARSIZE(ev->payload));
		h = build_headers(ev, id, type, topic);

		b->pending[i] = true;
		b->npending++;
		err = rd_kafka_producev(b->kd->rk,
								RD_KAFKA_V_TOPIC(target),
								RD_KAFKA_V_KEY(ev->aggregate_id ? VARDATA_ANY(ev->aggregate_id) : NULL,
											   ev->aggregate_id ? VARSIZE_ANY_EXHDR(ev->aggregate_id) : 0),
								RD_KAFKA_V_VALUE(value, strlen(value)),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_HEADERS(h),
								RD_KAFKA_V_OPAQUE((void *) (uintptr_t) ((b->seq << KAFKA_INDEX_BITS) | (i + 1))),
								RD_KAFKA_V_END);
		pfree(value);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			b->produced[i] = true;
			if (lane != NULL && lane->target == NULL)
				lane->target = target;
			continue;
		}

		rd_kafka_headers_destroy(h);
		b->pending[i] = false;
		b->npending--;
		if (lane != NULL)
			lane->stopped = true;
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			queue_full = true;	/* the rest waits for the next batch */
			continue;
		}
		b->outcomes[i].status = is_dead_error(err) ? SINK_DEAD : SINK_RETRY;
		b->outcomes[i].error = psprintf("Kafka produce failed: %s", rd_kafka_err2str(err));
	}
	hash_destroy(lane_state);
}

/*
 * run_batch
 *		Serve delivery reports until none is pending or the deadline.
 */
static void
run_batch(KafkaBatch *b, SinkWait *w, TimestampTz deadline)
{
	for (;;)
	{
		(void) rd_kafka_poll(b->kd->rk, 0);
		if (b->npending == 0 || GetCurrentTimestamp() >= deadline)
			break;
		SinkWaitUntil(w, deadline, KAFKA_MAX_WAIT_MS);
	}
}

/*
 * produce_and_wait
 *		Produce the batch and serve its reports, with 'b' the batch that
 *		delivery reports go to meanwhile.
 */
static void
produce_and_wait(KafkaBatch *b, const int *lanes, TimestampTz deadline)
{
	SinkWait	w;

	SinkWaitBegin(&w);
	current = b;
	PG_TRY();
	{
		/* Reports of earlier batches still queued: served, ignored. */
		(void) rd_kafka_poll(b->kd->rk, 0);
		produce_all(b, lanes);
		run_batch(b, &w, deadline);
	}
	PG_CATCH();
	{
		current = NULL;
		SinkWaitEnd(&w);
		PG_RE_THROW();
	}
	PG_END_TRY();
	current = NULL;
	SinkWaitEnd(&w);
}

/*
 * kafka_deliver_batch
 *		Deliver events[0..n-1]; see sink.h and the file header.
 */
static void
kafka_deliver_batch(const DestinationConfig *dest, DispatchEvent *const *events,
					const int *lanes, int n, SinkOutcome *outcomes)
{
	KafkaBatch	b;
	KafkaDest  *kd;
	char	   *error = NULL;
	TimestampTz deadline;
	char		fatal[512];
	bool		is_fatal = false;
	int			i;

	if (n == 0)
		return;
	if (n >= (1 << KAFKA_INDEX_BITS) - 1)
		elog(ERROR, "outbox_saga: kafka batch of %d events is too large", n);

	SinkWaitEnsurePipe();
	kd = SinkDestLookup(&kafka_cache, dest, &error);
	if (kd != NULL && kd->rk == NULL)
		error = open_producer(kd, dest);
	if (error != NULL)
	{
		SinkOutcomesFailAll(outcomes, n, error);
		return;
	}
	memset(&b, 0, sizeof(b));
	b.seq = ++batch_seq;
	b.dest = dest;
	b.kd = kd;
	b.events = events;
	b.outcomes = outcomes;
	b.n = n;
	b.produced = palloc0(sizeof(bool) * n);
	b.pending = palloc0(sizeof(bool) * n);
	b.errs = palloc0(sizeof(rd_kafka_resp_err_t) * n);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   dest->timeout_ms + 1000);

	produce_and_wait(&b, lanes, deadline);

	if (rd_kafka_fatal_error(kd->rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		is_fatal = true;

	for (i = 0; i < n; i++)
	{
		rd_kafka_resp_err_t err = b.errs[i];

		if (!b.produced[i])
			continue;			/* failed at once, or SKIPPED */
		if (b.pending[i])
		{
			outcomes[i].status = SINK_RETRY;
			outcomes[i].error = is_fatal ?
				psprintf("Kafka producer failed: %s", fatal) :
				psprintf("no Kafka delivery report within " INT64_FORMAT " ms%s%s",
						 dest->timeout_ms + 1000,
						 b.last_error_text[0] ? ": " : "", b.last_error_text);
		}
		else if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			outcomes[i].status = SINK_OK;
		else
		{
			outcomes[i].status = is_dead_error(err) ? SINK_DEAD : SINK_RETRY;
			outcomes[i].error = psprintf("Kafka delivery failed: %s%s%s",
										 rd_kafka_err2str(err),
										 b.last_error_text[0] ? "; " : "",
										 b.last_error_text);
		}
	}

	/* Purge what was never sent, so that it is not sent after its retry. */
	if (b.npending > 0)
		rd_kafka_purge(kd->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
	if (is_fatal)
		close_producer(kd);
}

const OutboxSink SinkKafka = {
	.kind = "kafka",
	.keys = kafka_keys,
	.validate = kafka_validate,
	.deliver_batch = kafka_deliver_batch,
	.forget = kafka_forget,
};

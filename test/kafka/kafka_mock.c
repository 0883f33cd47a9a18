/*
 * kafka_mock.c
 *		librdkafka's mock cluster on 127.0.0.1 for the TAP tests of the
 *		"kafka" destination kind (no Kafka broker is packaged for Debian),
 *		driven by lines on stdin, answering on stdout (flushed per line).
 *
 *	kafka_mock BROKERS
 *		prints "bootstrap <host:port,...>" once the cluster runs, then reads:
 *	topic NAME PARTITIONS          create a topic; prints "ok"
 *	errors COUNT CODE              the next COUNT Produce requests fail with
 *	                               Kafka error CODE; prints "ok"
 *	down ID | up ID                take broker ID down or up; prints "ok"
 *	consume TOPIC COUNT SECONDS    read the topic from the beginning until
 *	                               COUNT messages (COUNT 0: until the end of
 *	                               every partition), or SECONDS passed; prints
 *	                               one JSON line per message, then "end N"
 *	quit
 *
 *	A message line: {"partition": P, "offset": O, "key": "..."|null,
 *	"headers": {"name": "value", ...}, "value": <the value, as is>}.
 *
 *	Built by the tests: cc -o kafka_mock kafka_mock.c -lrdkafka
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static rd_kafka_mock_cluster_t *mcluster;
static const char *bootstraps;

static void
json_string(const char *s, size_t len)
{
	size_t		i;

	putchar('"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
consume(const char *topic, int want, int seconds)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	rd_kafka_t *rk;
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_topic_t *rkt;
	int			got = 0;
	int			i;
	int			nparts;
	int			at_eof = 0;
	char		eof[1024] = {0};
	time_t		deadline = time(NULL) + seconds;

	rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", "kafka_mock_verify", errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		printf("error %s\nend 0\n", errstr);
		fflush(stdout);
		return;
	}
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		md->topic_cnt != 1)
	{
		printf("error no metadata\nend 0\n");
		fflush(stdout);
		rd_kafka_topic_destroy(rkt);
		rd_kafka_destroy(rk);
		return;
	}
	nparts = md->topics[0].partition_cnt;
	parts = rd_kafka_topic_partition_list_new(nparts);
	for (i = 0; i < md->topics[0].partition_cnt; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
			RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);

	while ((want > 0 ? got < want : at_eof < nparts) && time(NULL) <= deadline)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		rd_kafka_headers_t *hdrs = NULL;

		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition < 1024)
		{
			if (!eof[m->partition])
				at_eof++;
			eof[m->partition] = 1;
		}
		if (m->err)
		{
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->partition < 1024 && eof[m->partition])
		{
			eof[m->partition] = 0;
			at_eof--;
		}
		printf("{\"partition\": %d, \"offset\": %lld, \"key\": ",
			   (int) m->partition, (long long) m->offset);
		if (m->key)
			json_string(m->key, m->key_len);
		else
			printf("null");
		printf(", \"headers\": {");
		if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			const char *name;
			const void *val;
			size_t		size;
			size_t		idx;

			for (idx = 0; rd_kafka_header_get_all(hdrs, idx, &name, &val, &size) ==
				 RD_KAFKA_RESP_ERR_NO_ERROR; idx++)
			{
				printf("%s", idx ? ", " : "");
				json_string(name, strlen(name));
				printf(": ");
				json_string(val ? val : "", val ? size : 0);
			}
		}
		printf("}, \"value\": %.*s}\n", (int) m->len, (const char *) m->payload);
		got++;
		rd_kafka_message_destroy(m);
	}
	printf("end %d\n", got);
	fflush(stdout);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

int
main(int argc, char **argv)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	char		line[1024];
	rd_kafka_t *rk;
	int			brokers = argc > 1 ? atoi(argv[1]) : 1;

	rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "kafka_mock: %s\n", errstr);
		return 1;
	}
	mcluster = rd_kafka_mock_cluster_new(rk, brokers);
	if (mcluster == NULL)
	{
		fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
		return 1;
	}
	bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
	printf("bootstrap %s\n", bootstraps);
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		char		a[256];
		int			n1,
					n2;

		if (sscanf(line, "topic %255s %d", a, &n1) == 2)
		{
			rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mcluster, a, n1, 1);

			printf(err ? "error %s\n" : "ok\n", rd_kafka_err2str(err));
		}
		else if (sscanf(line, "errors %d %d", &n1, &n2) == 2)
		{
			rd_kafka_resp_err_t *errs = calloc(n1, sizeof(*errs));
			int			i;

			for (i = 0; i < n1; i++)
				errs[i] = (rd_kafka_resp_err_t) n2;
			rd_kafka_mock_push_request_errors_array(mcluster, 0 /* Produce */ , n1, errs);
			free(errs);
			printf("ok\n");
		}
		else if (sscanf(line, "down %d", &n1) == 1)
		{
			rd_kafka_mock_broker_set_down(mcluster, n1);
			printf("ok\n");
		}
		else if (sscanf(line, "up %d", &n1) == 1)
		{
			rd_kafka_mock_broker_set_up(mcluster, n1);
			printf("ok\n");
		}
		else if (sscanf(line, "consume %255s %d %d", a, &n1, &n2) == 3)
			consume(a, n1, n2);
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else
			printf("error unknown command\n");
		fflush(stdout);
	}
	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	return 0;
}

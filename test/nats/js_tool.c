/*
 * js_tool.c
 *		A small JetStream client for the TAP tests of the "nats" destination
 *		kind (no `nats` CLI is packaged for Debian).
 *
 *	js_tool URLS add-stream NAME SUBJECT [REPLICAS]
 *		create a file-backed stream (REPLICAS: 1 by default); prints "ok"
 *	js_tool URLS delete-stream NAME
 *	js_tool URLS count NAME
 *		prints the number of messages in the stream
 *	js_tool URLS dump NAME
 *		prints every message of the stream as one JSON line:
 *		{"seq": N, "subject": "...", "headers": {"k": "v", ...}, "data": ...}
 *		where data is the message body, inserted as is (the sink sends JSON)
 *
 *	URLS is a comma-separated list of nats:// URLs.  Exit status 0 on
 *	success, 1 with a message on stderr otherwise.
 *
 *	Built by the tests: cc -o js_tool js_tool.c -lnats
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

static void
die(const char *what, natsStatus s, jsErrCode jerr)
{
	fprintf(stderr, "js_tool: %s: %s (jetstream error %d)\n", what,
			natsStatus_GetText(s), (int) jerr);
	nats_PrintLastErrorStack(stderr);
	exit(1);
}

static void
json_string(const char *s, int len)
{
	int			i;

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
dump(jsCtx *js, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode	jerr = 0;
	natsStatus	s;
	uint64_t	seq;

	s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		die("stream info", s, jerr);
	for (seq = si->State.FirstSeq; seq > 0 && seq <= si->State.LastSeq; seq++)
	{
		natsMsg    *msg = NULL;
		const char **keys = NULL;
		int			nkeys = 0;
		int			k;

		s = js_GetMsg(&msg, js, stream, seq, NULL, &jerr);
		if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
			continue;
		if (s != NATS_OK)
			die("get message", s, jerr);
		printf("{\"seq\": %llu, \"subject\": ", (unsigned long long) seq);
		json_string(natsMsg_GetSubject(msg), strlen(natsMsg_GetSubject(msg)));
		printf(", \"headers\": {");
		if (natsMsgHeader_Keys(msg, &keys, &nkeys) == NATS_OK)
		{
			for (k = 0; k < nkeys; k++)
			{
				const char *v = NULL;

				(void) natsMsgHeader_Get(msg, keys[k], &v);
				printf("%s", k ? ", " : "");
				json_string(keys[k], strlen(keys[k]));
				printf(": ");
				json_string(v ? v : "", v ? strlen(v) : 0);
			}
			free((void *) keys);
		}
		printf("}, \"data\": %.*s}\n", natsMsg_GetDataLength(msg),
			   natsMsg_GetData(msg));
		natsMsg_Destroy(msg);
	}
	jsStreamInfo_Destroy(si);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsOptions *opts = NULL;
	jsCtx	   *js = NULL;
	jsOptions	jo;
	natsStatus	s;
	jsErrCode	jerr = 0;
	const char *servers[16];
	int			nservers = 0;
	char	   *tok;

	if (argc < 4)
	{
		fprintf(stderr, "usage: js_tool URLS add-stream|delete-stream|count|dump NAME [SUBJECT [REPLICAS]]\n");
		return 1;
	}
	for (tok = strtok(argv[1], ","); tok && nservers < 16; tok = strtok(NULL, ","))
		servers[nservers++] = tok;
	natsOptions_Create(&opts);
	natsOptions_SetServers(opts, servers, nservers);
	natsOptions_SetTimeout(opts, 5000);
	s = natsConnection_Connect(&nc, opts);
	if (s != NATS_OK)
		die("connect", s, 0);
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK)
		die("jetstream", s, 0);

	if (strcmp(argv[2], "add-stream") == 0 && argc >= 5)
	{
		jsStreamConfig cfg;
		jsStreamInfo *si = NULL;
		const char *subjects[1] = {argv[4]};

		jsStreamConfig_Init(&cfg);
		cfg.Name = argv[3];
		cfg.Subjects = subjects;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		cfg.Replicas = argc >= 6 ? atoi(argv[5]) : 1;
		cfg.Duplicates = (int64_t) 600 * 1000000000;	/* 10 minutes */
		s = js_AddStream(&si, js, &cfg, NULL, &jerr);
		if (s != NATS_OK)
			die("add stream", s, jerr);
		jsStreamInfo_Destroy(si);
		printf("ok\n");
	}
	else if (strcmp(argv[2], "delete-stream") == 0)
	{
		s = js_DeleteStream(js, argv[3], NULL, &jerr);
		if (s != NATS_OK)
			die("delete stream", s, jerr);
		printf("ok\n");
	}
	else if (strcmp(argv[2], "count") == 0)
	{
		jsStreamInfo *si = NULL;

		s = js_GetStreamInfo(&si, js, argv[3], NULL, &jerr);
		if (s != NATS_OK)
			die("stream info", s, jerr);
		printf("%llu\n", (unsigned long long) si->State.Msgs);
		jsStreamInfo_Destroy(si);
	}
	else if (strcmp(argv[2], "dump") == 0)
		dump(js, argv[3]);
	else
	{
		fprintf(stderr, "js_tool: unknown command %s\n", argv[2]);
		return 1;
	}
	fflush(stdout);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	return 0;
}

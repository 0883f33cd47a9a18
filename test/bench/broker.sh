# Section "broker": events/s delivered to NATS JetStream and to Kafka,
# next to the function destination, in the same run (sourced by bench.sh,
# which calls section_broker).
#
# A real nats-server -js on 127.0.0.1 with a file-backed stream, and
# librdkafka's mock cluster (test/kafka/kafka_mock.c, no Kafka broker is
# packaged for Debian) with a 4-partition topic.  Three destinations
# (function no-op, nats, kafka), each with its own topic, paused while
# BROKER_EVENTS events over 1000 aggregates are written, then resumed and
# timed until outbox.stats counts them delivered.  Variants alternate round
# by round; the result is the median events/s and the ratio to the function
# destination.
#
# Target: >= 20,000 events/s to JetStream.

BROKER_EVENTS=${BENCH_BROKER_EVENTS:-50000}
BROKER_ROUNDS=${BENCH_BROKER_ROUNDS:-3}
BROKER_PIDS=()

broker_cleanup() {
	local p
	for p in "${BROKER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	exec 7>&- 2>/dev/null || true
}

broker_setup() {
	local dir=$CLUSTER_DIR/broker nats_port i
	mkdir -p "$dir/js"
	[ -n "${RUN_AS:-}" ] && chown "$RUN_AS": "$dir" "$dir/js"
	cc -O2 -o "$dir/js_tool" "$WORK_DIR/test/nats/js_tool.c" -lnats || return 1
	cc -O2 -o "$dir/kafka_mock" "$WORK_DIR/test/kafka/kafka_mock.c" -lrdkafka || return 1

	nats_port=$(free_port)
	nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
	BROKER_PIDS+=($!)
	for i in $(seq 200); do
		"$dir/js_tool" "nats://127.0.0.1:$nats_port" add-stream BENCH 'bench.>' >/dev/null 2>&1 && break
		sleep 0.05
	done
	"$dir/js_tool" "nats://127.0.0.1:$nats_port" count BENCH >/dev/null || return 1

	mkfifo "$dir/kafka.in"
	"$dir/kafka_mock" 1 <"$dir/kafka.in" >"$dir/kafka.out" 2>&1 &
	BROKER_PIDS+=($!)
	exec 7>"$dir/kafka.in"
	for i in $(seq 200); do
		grep -q '^bootstrap ' "$dir/kafka.out" && break
		sleep 0.05
	done
	KAFKA_BOOTSTRAP=$(sed -n 's/^bootstrap //p' "$dir/kafka.out")
	[ -n "$KAFKA_BOOTSTRAP" ] || return 1
	echo "topic bench 4" >&7

	bench_psql <<SQL >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE OR REPLACE FUNCTION public.broker_noop(e outbox.events) RETURNS void
	LANGUAGE plpgsql AS \$\$ BEGIN END \$\$;
SELECT outbox.create_destination('broker_function', 'function', '{"function": "public.broker_noop"}');
SELECT outbox.create_destination('broker_nats', 'nats',
	'{"url": "nats://127.0.0.1:$nats_port", "subject": "bench.{topic}"}');
SELECT outbox.create_destination('broker_kafka', 'kafka',
	'{"brokers": "$KAFKA_BOOTSTRAP", "topic": "bench"}');
SELECT outbox.subscribe(d, d) FROM unnest(ARRAY['broker_function', 'broker_nats', 'broker_kafka']) d;
SELECT outbox.pause_destination(d) FROM unnest(ARRAY['broker_function', 'broker_nats', 'broker_kafka']) d;
SQL
}

# broker_run ROUND: every variant once, order rotated by ROUND.
broker_run() {
	local round=$1 variants=(broker_function broker_nats broker_kafka) n=3 i k v before secs rate
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		v=${variants[$k]}
		bench_psql -c "SELECT count(outbox.emit('$v', 'order.created',
				jsonb_build_object('order_id', g, 'status', 'created'), (g % 1000)::text))
			FROM generate_series(1, $BROKER_EVENTS) g" >/dev/null
		before=$(bench_psql -At -c "SELECT delivered_total FROM outbox.stats WHERE destination = '$v'")
		secs=$(bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('$v');
DO \$\$
BEGIN
	FOR i IN 1..60000 LOOP
		EXIT WHEN (SELECT delivered_total FROM outbox.stats WHERE destination = '$v')
		          >= $before + $BROKER_EVENTS;
		PERFORM pg_sleep(0.005);
	END LOOP;
END \$\$;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
		bench_psql -c "SELECT outbox.pause_destination('$v')" >/dev/null
		rate=$(awk -v n="$BROKER_EVENTS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
		TPS[broker|deliver|$v]+="$rate "
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' broker deliver $((round + 1)) $((i + 1)) "$v" "$rate" >>"$RAW_FILE"
		say "broker round $((round + 1))/$BROKER_ROUNDS: $v $rate events/s"
	done
}

section_broker() {
	local r
	say "broker: starting nats-server and the Kafka mock cluster"
	if ! broker_setup; then
		broker_cleanup
		FAILED[broker|all]="nats-server or the Kafka mock cluster did not start"
		return 0
	fi
	dispatcher_set on || { broker_cleanup; FAILED[broker|all]=$DISPATCHER_ERROR; return 0; }
	for ((r = 0; r < BROKER_ROUNDS; r++)); do
		broker_run "$r"
	done
	broker_cleanup

	report ""
	report "== Brokers: events/s to NATS JetStream and to Kafka (mock cluster), next to a function"
	report "   $BROKER_EVENTS events over 1000 aggregates, median of $BROKER_ROUNDS rounds, variants alternated"
	report ""
	LABEL[broker_function]="function destination (no-op)"
	LABEL[broker_nats]="nats (JetStream, local server)"
	LABEL[broker_kafka]="kafka (librdkafka mock cluster)"
	table_row 34 "variant" "events/s" "ratio to function"
	for v in broker_function broker_nats broker_kafka; do
		table_row 34 "${LABEL[$v]}" "$(printf '%.0f' "$(median_tps broker deliver "$v")")" \
			"$(ratio_of broker deliver "$v" broker_function)"
	done
	report ""
	report "   targets"
	report_target "events/s to JetStream" \
		"$(printf '%.0f' "$(median_tps broker deliver broker_nats)")" ">=" 20000
}

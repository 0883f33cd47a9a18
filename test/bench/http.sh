# Section "http": deliveries/s to a local webhook receiver (sourced by
# bench.sh, which calls section_http).
#
# The receiver is test/bench/http_receiver.js (Node.js) on 127.0.0.1
# (HTTP/1.1 keep-alive), answering 200 at once or after 5 ms (?delay=0.005
# in the destination's URL), and doing nothing else.  The Python receiver of
# the tests (test/lib/webhook_receiver.py: a thread per connection, every
# request parsed and logged) was what this section measured: 2,900-3,900
# deliveries/s with 64 in flight, as many with the 5 ms delay as without;
# with this one, on the same machine, 20,866.  Four
# destinations, each with its own topic, differ only in `concurrency` (1 or
# 64) and the receiver's delay; events go to 1000 aggregates, so ordering
# does not limit concurrency.  A variant: HTTP_EVENTS events (HTTP_EVENTS_SLOW
# for one-at-a-time with delay) written while its destination is paused,
# then timed from resume until outbox.wait_idle().  Variants alternate round
# by round; the result is the median deliveries/s and the ratio of 64 in
# flight to one at a time, measured in the same run.
#
# Targets: >= 5,000 deliveries/s with 64 in flight and no delay; >= 10x the
# one-at-a-time rate when the receiver adds 5 ms per request.

HTTP_EVENTS=${BENCH_HTTP_EVENTS:-5000}
HTTP_EVENTS_SLOW=${BENCH_HTTP_EVENTS_SLOW:-400}
HTTP_ROUNDS=${BENCH_HTTP_ROUNDS:-3}
HTTP_RECEIVER=
# The order payload of the dispatch section, or a small one without it.
HTTP_PAYLOAD=${DISPATCH_PAYLOAD:-"jsonb_build_object('order_id', g, 'status', 'created')"}

http_setup() {
	local portfile=$CLUSTER_DIR/receiver.port
	as_cluster_user node "$WORK_DIR/test/bench/http_receiver.js" \
		--port-file "$portfile" --lifetime 3600 >/dev/null 2>&1 &
	HTTP_RECEIVER=$!
	wait_until_file "$portfile" || return 1
	HTTP_PORT=$(cat "$portfile")
	bench_psql <<SQL >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
SELECT outbox.create_destination('http_1', 'http',
	'{"url": "http://127.0.0.1:$HTTP_PORT/a", "concurrency": 1}');
SELECT outbox.create_destination('http_64', 'http',
	'{"url": "http://127.0.0.1:$HTTP_PORT/b", "concurrency": 64}');
SELECT outbox.create_destination('http_1_5ms', 'http',
	'{"url": "http://127.0.0.1:$HTTP_PORT/c?delay=0.005", "concurrency": 1}');
SELECT outbox.create_destination('http_64_5ms', 'http',
	'{"url": "http://127.0.0.1:$HTTP_PORT/d?delay=0.005", "concurrency": 64}');
SELECT outbox.subscribe(d, d) FROM unnest(ARRAY['http_1', 'http_64', 'http_1_5ms', 'http_64_5ms']) d;
SELECT outbox.pause_destination(d) FROM unnest(ARRAY['http_1', 'http_64', 'http_1_5ms', 'http_64_5ms']) d;
SQL
}

# wait_until_file FILE: wait (at most 10 s) until FILE is not empty.
wait_until_file() {
	local i
	for i in $(seq 200); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# http_run ROUND: every variant once, order rotated by ROUND.
http_run() {
	local round=$1 variants=(http_1 http_64 http_1_5ms http_64_5ms) n=4 i k v events secs rate
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		v=${variants[$k]}
		events=$HTTP_EVENTS
		[ "$v" = http_1_5ms ] && events=$HTTP_EVENTS_SLOW
		bench_psql -c "SELECT count(outbox.emit('$v', 'order.created', $HTTP_PAYLOAD, (g % 1000)::text))
			FROM generate_series(1, $events) g" >/dev/null
		secs=$(bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('$v');
SELECT outbox.wait_idle('600 seconds');
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
		bench_psql -c "SELECT outbox.pause_destination('$v')" >/dev/null
		rate=$(awk -v n="$events" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
		TPS[http|deliver|$v]+="$rate "
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' http deliver $((round + 1)) $((i + 1)) "$v" "$rate" >>"$RAW_FILE"
		say "http round $((round + 1))/$HTTP_ROUNDS: $v $rate deliveries/s ($events in $secs s)"
	done
}

section_http() {
	local r errors
	say "http: starting the receiver"
	if ! http_setup; then
		FAILED[http|all]="the webhook receiver did not start"
		return 0
	fi
	dispatcher_set on || { FAILED[http|all]=$DISPATCHER_ERROR; return 0; }
	for ((r = 0; r < HTTP_ROUNDS; r++)); do
		http_run "$r"
	done
	errors=$(bench_psql -At -c "SELECT coalesce(sum(failed_attempts_total), 0) FROM outbox.stats
		WHERE destination LIKE 'http%'")
	# The receiver runs under runuser: stop its child too.
	pkill -TERM -P "$HTTP_RECEIVER" 2>/dev/null || true
	kill "$HTTP_RECEIVER" 2>/dev/null || true

	report ""
	report "== HTTP webhooks: deliveries/s to a local receiver (keep-alive)"
	report "   median of $HTTP_ROUNDS rounds, variants alternated; $errors failed attempts in all"
	report ""
	LABEL[http_1]="1 in flight, no delay"
	LABEL[http_64]="64 in flight, no delay"
	LABEL[http_1_5ms]="1 in flight, receiver +5 ms"
	LABEL[http_64_5ms]="64 in flight, receiver +5 ms"
	table_row 34 "variant" "deliveries/s"
	for v in http_1 http_64 http_1_5ms http_64_5ms; do
		table_row 34 "${LABEL[$v]}" "$(printf '%.0f' "$(median_tps http deliver "$v")")"
	done
	report ""
	report "   targets"
	report_target "64 in flight, no delay, deliveries/s" \
		"$(printf '%.0f' "$(median_tps http deliver http_64)")" ">=" 5000
	report_target "64 in flight / 1 in flight, receiver +5 ms" \
		"$(ratio_of http deliver http_64_5ms http_1_5ms)" ">=" 10
	report_target "64 in flight / 1 in flight, no delay (information)" \
		"$(ratio_of http deliver http_64 http_1)" ">=" 1
}

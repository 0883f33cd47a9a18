# Section "isolation": what the pool of dispatchers buys (sourced by
# bench.sh, which calls section_isolation; issue 11).
#
# latency   one event per transaction at ISO_LATENCY_RATE events/s to a
#           function destination (like section dispatch), twice in one
#           run: alone, and beside an http destination on the same topic
#           whose endpoint (a listener of this script) accepts and never
#           answers, with a timeout longer than the run.  Result: p50 and
#           p99 of both, and the ratios beside/alone.
# drain2    two busy function destinations (ISO_DRAIN_EVENTS events each,
#           written while they are paused, a handler costing a few
#           microseconds), resumed together and timed until wait_idle();
#           with outbox_saga.workers_per_database = 1 and = 2, alternated
#           over ISO_DRAIN_ROUNDS rounds.  Result: events/s of each and the
#           ratio 2 workers / 1 worker.
# drain1    one busy function destination, the same way: 2 workers / 1
#           worker (no regression: one destination is served by one worker).
#
# Targets: latency ratios <= 1.5, drain2 ratio >= 1.6, drain1 ratio >= 0.9.

ISO_LATENCY_RATE=${BENCH_ISO_LATENCY_RATE:-200}
ISO_LATENCY_SECONDS=${BENCH_ISO_LATENCY_SECONDS:-10}
ISO_DRAIN_EVENTS=${BENCH_ISO_DRAIN_EVENTS:-100000}
ISO_DRAIN_ROUNDS=${BENCH_ISO_DRAIN_ROUNDS:-3}
HUNG_PID=
ISO_PAYLOAD="jsonb_build_object('order_id', g, 'customer', 'customer-' || (g % 977), \
'status', 'created', 'total', (g % 10000) / 100.0, 'currency', 'EUR')"

# workers_set N: outbox_saga.workers_per_database = N, and wait for them.
workers_set() {
	bench_psql -c "ALTER SYSTEM SET outbox_saga.workers_per_database = $1" \
		-c "SELECT pg_catalog.pg_reload_conf()" >/dev/null
	wait_until 60 "SELECT count(*) = $1 FROM outbox.workers WHERE kind = 'dispatcher'
		AND database = current_database()" ||
		say "isolation: the pool did not reach $1 workers within 60 s"
}

# hung_start: a TCP listener on loopback that accepts and never answers;
# prints its port.
hung_start() {
	local port_file=$CLUSTER_DIR/hung.port
	rm -f "$port_file"
	python3 - "$port_file" <<'PY' >/dev/null 2>&1 &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
end = time.time() + 3600
while time.time() < end:
    s.settimeout(1.0)
    try:
        c, _ = s.accept(); held.append(c)
    except socket.timeout:
        pass
PY
	HUNG_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$port_file" ] && break
		sleep 0.05
	done
	cat "$port_file"
}

hung_stop() {
	[ -n "$HUNG_PID" ] && kill "$HUNG_PID" 2>/dev/null
	HUNG_PID=
ISO_PAYLOAD="jsonb_build_object('order_id', g, 'customer', 'customer-' || (g % 977), \
'status', 'created', 'total', (g % 10000) / 100.0, 'currency', 'EUR')"
}

# iso_latency LABEL: "p50 p99" in ms of the latency destination now.
iso_latency() {
	local script=$CLUSTER_DIR/iso_latency.sql
	bench_psql -c "TRUNCATE public.iso_latency" >/dev/null
	echo "SELECT outbox.emit('iso', 'tick', '{\"n\": 1}', NULL);" >"$script"
	chmod 644 "$script"
	as_cluster_user env PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared -c 1 -j 1 \
		-R "$ISO_LATENCY_RATE" -T "$ISO_LATENCY_SECONDS" -f "$script" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$CLUSTER_DIR/iso_latency.log" 2>&1 ||
		{ FAILED[isolation|latency-$1]=$(pgbench_error "$CLUSTER_DIR/iso_latency.log"); return 0; }
	wait_until 60 "SELECT pending = 0 FROM outbox.stats WHERE destination = 'iso_fn'" >/dev/null
	bench_psql -At -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM public.iso_latency"
}

# iso_drain NDEST WORKERS ROUND: events/s of draining NDEST destinations
# with WORKERS workers.
iso_drain() {
	local ndest=$1 workers=$2 round=$3 d secs rate
	workers_set "$workers"
	for ((d = 1; d <= ndest; d++)); do
		bench_psql -c "SELECT outbox.pause_destination('iso_drain$d')" \
			-c "SELECT count(outbox.emit('iso_drain$d', 'order.created', $ISO_PAYLOAD, (g % 1000)::text))
			      FROM generate_series(1, $ISO_DRAIN_EVENTS) g" >/dev/null
	done
	bench_psql -c "CHECKPOINT" >/dev/null
	secs=$(bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('iso_drain' || d) FROM generate_series(1, $ndest) d;
SELECT outbox.wait_idle('600 seconds');
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
	)
	rate=$(awk -v n="$((ISO_DRAIN_EVENTS * ndest))" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
	TPS[isolation|drain$ndest|w$workers]+="$rate "
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' isolation "drain$ndest" "$round" 1 "w$workers" "$rate" >>"$RAW_FILE"
	say "isolation drain of $ndest destination(s), $workers worker(s), round $round: $rate events/s"
}

section_isolation() {
	local port alone beside a50 a99 b50 b99 r
	say "isolation: setting up"
	bench_psql <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE TABLE public.iso_latency (ms float8 NOT NULL);
CREATE FUNCTION public.iso_record(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.iso_latency VALUES (extract(epoch FROM clock_timestamp() - e.created_at) * 1000)
$$;
CREATE FUNCTION public.iso_work(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE x numeric := 0;
BEGIN
	FOR i IN 1 .. 20 LOOP x := x + (e.payload->>'total')::numeric; END LOOP;
END $$;
SELECT outbox.create_destination('iso_fn', 'function', '{"function": "public.iso_record"}');
SELECT outbox.subscribe('iso_fn', 'iso');
SELECT outbox.create_destination('iso_drain1', 'function', '{"function": "public.iso_work"}');
SELECT outbox.subscribe('iso_drain1', 'iso_drain1');
SELECT outbox.create_destination('iso_drain2', 'function', '{"function": "public.iso_work"}');
SELECT outbox.subscribe('iso_drain2', 'iso_drain2');
SELECT outbox.pause_destination('iso_drain1');
SELECT outbox.pause_destination('iso_drain2');
SQL
	dispatcher_set on || { FAILED[isolation|all]=$DISPATCHER_ERROR; return 0; }
	workers_set 2

	say "isolation: latency alone"
	read -r a50 a99 < <(iso_latency alone)
	port=$(hung_start)
	bench_psql -c "SELECT outbox.create_destination('iso_hung', 'http',
		'{\"url\": \"http://127.0.0.1:$port/hook\", \"timeout\": \"1h\", \"max_attempts\": 1000}')" \
		-c "SELECT outbox.subscribe('iso_hung', 'iso')" >/dev/null
	say "isolation: latency beside a hung http destination (port $port)"
	read -r b50 b99 < <(iso_latency beside)
	bench_psql -c "SELECT outbox.drop_destination('iso_hung')" >/dev/null
	hung_stop
	bench_psql -c "SELECT outbox.drop_destination('iso_fn')" >/dev/null

	for ((r = 1; r <= ISO_DRAIN_ROUNDS; r++)); do
		if ((r % 2)); then iso_drain 2 1 "$r"; iso_drain 2 2 "$r"; else iso_drain 2 2 "$r"; iso_drain 2 1 "$r"; fi
		if ((r % 2)); then iso_drain 1 2 "$r"; iso_drain 1 1 "$r"; else iso_drain 1 1 "$r"; iso_drain 1 2 "$r"; fi
	done
	workers_set 2

	report ""
	report "== Isolation: a pool of dispatchers per database"
	report "   latency: emit() to a function handler at $ISO_LATENCY_RATE events/s, $ISO_LATENCY_SECONDS s each"
	report "     alone:                               p50 ${a50:-n/a} ms, p99 ${a99:-n/a} ms"
	report "     beside a hung http destination:      p50 ${b50:-n/a} ms, p99 ${b99:-n/a} ms"
	report "   drain: $ISO_DRAIN_EVENTS events per destination, median of $ISO_DRAIN_ROUNDS rounds (events/s)"
	table_row 34 "variant" "events/s" "ratio to 1 worker"
	table_row 34 "two destinations, 1 worker" "$(printf '%.0f' "$(median_tps isolation drain2 w1)")" "1.00"
	table_row 34 "two destinations, 2 workers" "$(printf '%.0f' "$(median_tps isolation drain2 w2)")" \
		"$(ratio_of isolation drain2 w2 w1)"
	table_row 34 "one destination, 1 worker" "$(printf '%.0f' "$(median_tps isolation drain1 w1)")" "1.00"
	table_row 34 "one destination, 2 workers" "$(printf '%.0f' "$(median_tps isolation drain1 w2)")" \
		"$(ratio_of isolation drain1 w2 w1)"
	report ""
	report "   targets"
	report_target "latency p50 beside a hung endpoint / alone <= 1.5 (reported as 1.5 - ratio)" \
		"$(awk -v a="$a50" -v b="$b50" 'BEGIN { if (a > 0 && b != "") printf "%.2f", 1.5 - b / a }')" ">=" 0
	report_target "latency p99 beside a hung endpoint / alone <= 1.5 (reported as 1.5 - ratio)" \
		"$(awk -v a="$a99" -v b="$b99" 'BEGIN { if (a > 0 && b != "") printf "%.2f", 1.5 - b / a }')" ">=" 0
	report_target "drain of two destinations, 2 workers / 1 worker" "$(ratio_of isolation drain2 w2 w1)" ">=" 1.6
	report_target "drain of one destination, 2 workers / 1 worker" "$(ratio_of isolation drain1 w2 w1)" ">=" 0.9
}

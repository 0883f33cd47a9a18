# Section "metrics": the time of one Prometheus scrape of outbox_saga's
# metrics with 1,000,000 pending events (sourced by bench.sh, which calls
# section_metrics).
#
# Three function destinations subscribe to a topic; with the dispatcher off,
# METRICS_EVENTS events are written in transactions of 1,000 (so the log has
# many transactions, as in life) and the tables are analyzed, as autovacuum
# would.
#
# One scrape is every query of contrib/prometheus/queries.yaml, run one
# after another by pgbench (one client, simple protocol: parsed and planned
# each time, as the exporter does) as a pg_monitor role that is not a
# superuser.  Reported: the median over METRICS_ROUNDS rounds of pgbench's
# average latency per scrape, with jit off (the benchmark cluster's
# setting) and with jit on (PostgreSQL's default: a plan whose estimated
# cost passes jit_above_cost would spend far more than the query in
# compiling).
# The destinations are dropped at the end, before the dispatcher is on
# again: delivering their backlog fell into the next section's first round
# (the pull section's: every variant slower, the function destination 15
# to 30 times).
#
# Target: a scrape <= 50 ms with 1,000,000 pending events.

METRICS_EVENTS=${BENCH_METRICS_EVENTS:-1000000}
METRICS_ROUNDS=${BENCH_METRICS_ROUNDS:-3}

metrics_setup() {
	say "metrics: writing $METRICS_EVENTS pending events"
	dispatcher_set off || return 1
	bench_psql <<SQL >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE ROLE metrics_bench_monitor LOGIN IN ROLE pg_monitor;
CREATE FUNCTION public.metrics_bench_sink(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT outbox.create_destination('metrics_' || n, 'function',
                                 '{"function": "public.metrics_bench_sink"}'),
       outbox.subscribe('metrics_' || n, 'metrics_bench')
  FROM generate_series(1, 3) n;
DO \$\$
BEGIN
	FOR t IN 1..ceil($METRICS_EVENTS / 1000.0) LOOP
		PERFORM outbox.emit('metrics_bench', 'tick', jsonb_build_object('n', g), (g % 1000)::text)
		   FROM generate_series(1, 1000) g;
		COMMIT;
	END LOOP;
END \$\$;
ANALYZE;
SQL
	# The queries of the shipped file, one statement each.
	python3 - "$SRC_DIR/contrib/prometheus/queries.yaml" >"$CLUSTER_DIR/scrape.sql" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r'^  query: \|\n((?:    .*\n)+)', text, re.M):
    print(re.sub(r'^    ', '', block, flags=re.M).rstrip() + ';')
PY
	[ -n "${RUN_AS:-}" ] && chown "$RUN_AS": "$CLUSTER_DIR/scrape.sql"
	return 0
}

# metrics_round ROUND JIT: one pgbench run of scrapes; records the latency.
metrics_round() {
	local round=$1 jit=$2 log="$CLUSTER_DIR/metrics-pgbench.log" ms
	if ! as_cluster_user env PGOPTIONS="-c jit=$jit" pgbench -n -M simple -c 1 -j 1 \
		-T "$BENCH_SECONDS" -f "$CLUSTER_DIR/scrape.sql" \
		-h "$SOCK_DIR" -p "$PORT" -U metrics_bench_monitor bench >"$log" 2>&1; then
		FAILED[metrics|jit_$jit]=$(tail -n 3 "$log")
		return 1
	fi
	ms=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$log")
	TPS[metrics|scrape|jit_$jit]+="$ms "
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' metrics scrape_ms $((round + 1)) 1 "jit_$jit" "$ms" >>"$RAW_FILE"
	say "metrics round $((round + 1))/$METRICS_ROUNDS, jit $jit: $ms ms per scrape"
}

# metrics_target DESC MS: a PASS/MISS line as report_target prints, for a
# time that must stay at or under 50 ms.
metrics_target() {
	local verdict=MISS
	if [ -n "$2" ] && awk -v v="$2" 'BEGIN { exit !(v <= 50) }'; then
		verdict=PASS
	fi
	report "$(printf '%-4s  %s (measured %s, target <= %s)' "$verdict" "$1" "${2:-n/a}" 50)"
}

section_metrics() {
	local r jit pending off on
	metrics_setup || { FAILED[metrics|all]=${DISPATCHER_ERROR:-setup failed}; return 0; }
	pending=$(bench_psql -At -c "SELECT min(pending) FROM outbox.stats WHERE destination LIKE 'metrics_%'")
	for ((r = 0; r < METRICS_ROUNDS; r++)); do
		for jit in off on; do
			metrics_round "$r" "$jit" || break 2
		done
	done
	off=$(median_tps metrics scrape jit_off)
	on=$(median_tps metrics scrape jit_on)

	report ""
	report "== Metrics: one scrape of contrib/prometheus/queries.yaml (every query, as pg_monitor)"
	report "   $pending pending events per destination, 3 destinations; median of $METRICS_ROUNDS rounds"
	report "   of pgbench -c 1 -M simple -T $BENCH_SECONDS (average latency per scrape)"
	report ""
	report "   ms per scrape, jit off: ${off:-n/a}"
	report "   ms per scrape, jit on:  ${on:-n/a}"
	report ""
	report "   targets"
	metrics_target "scrape <= 50 ms (jit off)" "$off"
	metrics_target "scrape <= 50 ms (jit on)" "$on"
	# Its backlog is not for the dispatchers: delivered, its 3 x 1,000,000
	# events would fall into the next section's timed runs.
	bench_psql -c "SELECT outbox.drop_destination('metrics_' || n) FROM generate_series(1, 3) n" >/dev/null
	dispatcher_set on || true
}

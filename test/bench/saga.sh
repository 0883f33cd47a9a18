# Section "saga": sagas per second (sourced by bench.sh, which calls
# section_saga).
#
# A three-step saga whose steps are function calls that write one row each
# (and have compensations that are never needed).  SAGA_COUNT sagas are
# started in one transaction; the time from its commit until saga.stats
# shows them all completed gives sagas/s, end to end (every step recorded as
# running and flushed before it runs, its outcome committed with its
# effects).  Rounds alternate nothing (one variant), so the median over
# SAGA_ROUNDS rounds is reported, and, when the dispatch section ran in the
# same run, the ratio to the function destination's drain rate in events/s
# (a saga is three steps, so 1/3 would be "a step costs an event").
#
# Target: >= 2,000 sagas/s.

SAGA_COUNT=${BENCH_SAGA_COUNT:-10000}
SAGA_ROUNDS=${BENCH_SAGA_ROUNDS:-3}

saga_setup() {
	bench_psql <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE TABLE public.saga_bench_log (saga_id uuid, step text);
CREATE FUNCTION public.saga_bench_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	INSERT INTO public.saga_bench_log VALUES ((ctx->>'saga_id')::uuid, ctx->>'step')
	RETURNING jsonb_build_object('ok', true)
$$;
CREATE FUNCTION public.saga_bench_undo(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('undone', ctx->>'step')
$$;
SELECT saga.define('bench3', '[
  {"name": "reserve", "action": {"function": "public.saga_bench_step"},
                      "compensation": {"function": "public.saga_bench_undo"}},
  {"name": "charge",  "action": {"function": "public.saga_bench_step"},
                      "compensation": {"function": "public.saga_bench_undo"}},
  {"name": "ship",    "action": {"function": "public.saga_bench_step"}}
]');
SQL
}

# saga_round ROUND: start SAGA_COUNT sagas, time until all completed.
saga_round() {
	local round=$1 done_before secs rate
	done_before=$(bench_psql -At -c "SELECT coalesce(sum(completed), 0) FROM saga.stats")
	secs=$(bench_psql -At <<SQL | tail -n 1
SELECT count(saga.start('bench3', jsonb_build_object('n', g))) FROM generate_series(1, $SAGA_COUNT) g;
SELECT clock_timestamp() AS t0 \gset
DO \$\$
BEGIN
	FOR i IN 1..6000 LOOP
		EXIT WHEN (SELECT coalesce(sum(completed), 0) FROM saga.stats) >= $done_before + $SAGA_COUNT;
		PERFORM outbox.wait_idle('1 second');
		PERFORM pg_sleep(0.005);
	END LOOP;
END \$\$;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
	rate=$(awk -v n="$SAGA_COUNT" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
	TPS[saga|run|bench3]+="$rate "
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' saga run $((round + 1)) 1 bench3 "$rate" >>"$RAW_FILE"
	say "saga round $((round + 1))/$SAGA_ROUNDS: $rate sagas/s ($SAGA_COUNT in $secs s)"
}

section_saga() {
	local r rate drain ratio
	say "saga: setting up"
	saga_setup
	dispatcher_set on || { FAILED[saga|all]=$DISPATCHER_ERROR; return 0; }
	for ((r = 0; r < SAGA_ROUNDS; r++)); do
		saga_round "$r"
	done
	rate=$(median_tps saga run bench3)
	drain=$(median_tps dispatch drain function)
	ratio=$(awk -v a="$rate" -v b="$drain" 'BEGIN { if (b > 0) printf "%.3f", a / b }')

	report ""
	report "== Sagas: three-step function sagas, started in one transaction, run to completion"
	report "   median of $SAGA_ROUNDS rounds of $SAGA_COUNT sagas"
	report ""
	report "   sagas/s: $(printf '%.0f' "$rate")"
	[ -n "$ratio" ] && report "   ratio to the function destination's drain rate (events/s): $ratio"
	report ""
	report "   targets"
	report_target "three-step sagas/s" "$(printf '%.0f' "$rate")" ">=" 2000
}

# Section "producer": what writing an event costs the transaction that
# writes the business row (sourced by bench.sh, which calls
# section_producer).
#
# Workload: one order INSERT per transaction (INSERT ... RETURNING id, as an
# application does), into four identical orders tables (producer/setup.sql):
#
#   plain     orders_plain, no trigger                          the baseline
#   capture   orders_capture + outbox.capture (C trigger, via
#             outbox.capture_table)
#   emit      orders_emit; BEGIN; INSERT; SELECT outbox.emit(...); COMMIT
#             (what an application does: four round trips instead of one)
#   emit_cte  the same INSERT and emit in one statement (a data-modifying
#             CTE): the cost of the emit itself, without the round trips
#   plpgsql   orders_plpgsql + a naive PL/pgSQL AFTER trigger inserting
#             to_jsonb(NEW) into a hand-written outbox table
#
# under two conditions: synchronous_commit=off (no WAL flush wait, so the
# TPS is bound by CPU and the ratio is the CPU cost of the event) and
# synchronous_commit=on (durable commits, as most production runs).
# Targets (sync off): capture >= 0.85 of plain; capture clearly (>= 5%)
# faster than the PL/pgSQL trigger.

PRODUCER_DIR=$WORK_DIR/test/bench/producer
PRODUCER_CONDS="sync_commit=off sync_commit=on"
PRODUCER_VARIANTS="plain capture emit emit_cte plpgsql"

# producer_reset: empty every table, checkpoint (before every run).
producer_reset() {
	bench_psql -f "$PRODUCER_DIR/reset.sql"
}

section_producer() {
	local variants=() v cap plp
	LABEL[plain]="plain INSERT"
	LABEL[capture]="INSERT + outbox.capture"
	LABEL[emit]="INSERT + outbox.emit()"
	LABEL[emit_cte]="  same, as one statement (CTE)"
	LABEL[plpgsql]="INSERT + PL/pgSQL trigger"

	bench_psql -f "$PRODUCER_DIR/setup.sql"
	if ! bench_psql -f "$PRODUCER_DIR/setup_capture.sql" >/dev/null 2>"$CLUSTER_DIR/capture.err"; then
		FAILED[producer|capture]="setup: $(head -n 1 "$CLUSTER_DIR/capture.err")"
		say "capture variant unavailable: ${FAILED[producer|capture]}"
	fi
	for v in $PRODUCER_VARIANTS; do
		variants+=("$v=$PRODUCER_DIR/$v.sql")
	done

	# Warm-up, not counted: fills the caches and shows a broken variant
	# before the rounds.
	say "producer: warm-up (${BENCH_WARMUP}s per variant)"
	for v in "${variants[@]}"; do
		[ "${FAILED[producer|${v%%=*}]:-}" ] && continue
		producer_reset
		if ! run_pgbench "-c synchronous_commit=off" "${v#*=}" "$BENCH_WARMUP" \
			"$CLUSTER_DIR/pgbench.log" >/dev/null; then
			FAILED[producer|${v%%=*}]=$(pgbench_error "$CLUSTER_DIR/pgbench.log")
			say "producer: ${v%%=*} FAILED: ${FAILED[producer|${v%%=*}]}"
		fi
	done

	# The two conditions take turns round by round as well, so both see the
	# same stretches of the machine.
	local r
	for ((r = 0; r < BENCH_ROUNDS; r++)); do
		bench_round producer sync_commit=off "-c synchronous_commit=off" \
			producer_reset "$r" "${variants[@]}"
		bench_round producer sync_commit=on "-c synchronous_commit=on" \
			producer_reset "$r" "${variants[@]}"
	done

	report ""
	report "== Producer overhead: one order INSERT per transaction"
	report "   TPS ratio to plain INSERT (median of $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s," \
		"$BENCH_CLIENTS clients; higher is better)"
	report ""
	print_ratio_table producer plain "$PRODUCER_CONDS" $PRODUCER_VARIANTS
	report ""
	report "   absolute TPS (secondary: depends on the machine and its neighbours)"
	report ""
	print_tps_table producer "$PRODUCER_CONDS" $PRODUCER_VARIANTS
	for v in $PRODUCER_VARIANTS; do
		[ "${FAILED[producer|$v]:-}" ] && report "   $v failed: ${FAILED[producer|$v]}"
	done
	report ""
	report "   targets (sync_commit=off)"
	cap=$(ratio_of producer sync_commit=off capture plain)
	report_target "capture trigger >= 0.85 x plain INSERT" "$cap" ">=" 0.85
	cap=$(median_tps producer sync_commit=off capture)
	plp=$(median_tps producer sync_commit=off plpgsql)
	if [ -n "$cap" ] && [ -n "$plp" ]; then
		report_target "capture trigger clearly faster than PL/pgSQL trigger (TPS capture / PL/pgSQL)" \
			"$(awk -v a="$cap" -v b="$plp" 'BEGIN { printf "%.2f", a / b }')" ">=" 1.05
	else
		report_target "capture trigger clearly faster than PL/pgSQL trigger (TPS capture / PL/pgSQL)" "" ">=" 1.05
	fi
}

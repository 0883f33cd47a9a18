# Section "producer": what writing an event costs the transaction that
# writes the business row (sourced by bench.sh, which calls
# section_producer).
# shellcheck shell=bash disable=SC2034,SC2154
#
# Workload: one order INSERT per transaction (INSERT ... RETURNING id, as an
# application does), into identical orders tables (producer/setup.sql):
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
# Conditions (columns):
#   sync_commit=off  no WAL flush wait: TPS is bound by CPU, so the ratio is
#                    the CPU cost of writing the event
#   sync_commit=on   durable commits, as most production runs
#   off+dispatcher   sync_commit=off with outbox_saga's dispatcher running
#                    (no destinations): what the woken dispatcher costs the
#                    producers on a machine with few cores
# In the first two the dispatcher is stopped (outbox_saga.enabled = off):
# the hand-written outbox has no relay running either, so they compare the
# write paths alone.
#
# Targets (sync_commit=off): capture >= 0.85 of plain; capture clearly
# (>= 5%) faster than the PL/pgSQL trigger.

PRODUCER_DIR=$WORK_DIR/test/bench/producer
PRODUCER_CONDS="sync_commit=off sync_commit=on off+dispatcher"
PRODUCER_VARIANTS="plain capture emit emit_cte plpgsql"
# The dispatcher condition: the baseline, the trigger and the alternative.
PRODUCER_DISPATCHER_VARIANTS="plain capture plpgsql"

# producer_reset: empty every table, checkpoint (before every run).
producer_reset() {
	bench_psql -f "$PRODUCER_DIR/reset.sql"
}

# producer_variants NAME...: "name=script" for bench_round.
producer_variants() {
	local v
	for v in "$@"; do
		printf '%s\n' "$v=$PRODUCER_DIR/$v.sql"
	done
}

section_producer() {
	local all=() disp=() v r spread dispatcher=yes
	LABEL[plain]="plain INSERT"
	LABEL[capture]="INSERT + outbox.capture"
	LABEL[emit]="INSERT + outbox.emit()"
	LABEL[emit_cte]="  same, as one statement (CTE)"
	LABEL[plpgsql]="INSERT + PL/pgSQL trigger"
	mapfile -t all < <(producer_variants $PRODUCER_VARIANTS)
	mapfile -t disp < <(producer_variants $PRODUCER_DISPATCHER_VARIANTS)

	bench_psql -f "$PRODUCER_DIR/setup.sql"
	if ! bench_psql -f "$PRODUCER_DIR/setup_capture.sql" >/dev/null 2>"$CLUSTER_DIR/capture.err"; then
		FAILED[producer|capture]="setup: $(head -n 1 "$CLUSTER_DIR/capture.err")"
		say "capture variant unavailable: ${FAILED[producer|capture]}"
	fi
	if ! dispatcher_set off; then
		say "producer: cannot stop the dispatcher ($DISPATCHER_ERROR); measuring with it running"
		dispatcher=
	fi

	# Warm-up, not counted: fills the caches and shows a broken variant
	# before the rounds.
	say "producer: warm-up (${BENCH_WARMUP}s per variant)"
	for v in "${all[@]}"; do
		[ "${FAILED[producer|${v%%=*}]:-}" ] && continue
		producer_reset
		if ! run_pgbench "-c synchronous_commit=off" "${v#*=}" "$BENCH_WARMUP" \
			"$CLUSTER_DIR/pgbench.log" >/dev/null; then
			FAILED[producer|${v%%=*}]=$(pgbench_error "$CLUSTER_DIR/pgbench.log")
			say "producer: ${v%%=*} FAILED: ${FAILED[producer|${v%%=*}]}"
		fi
	done

	# The conditions take turns round by round as well, so all of them see
	# the same stretches of a noisy machine.
	for ((r = 0; r < BENCH_ROUNDS; r++)); do
		bench_round producer sync_commit=off "-c synchronous_commit=off" \
			producer_reset "$r" "${all[@]}"
		bench_round producer sync_commit=on "-c synchronous_commit=on" \
			producer_reset "$r" "${all[@]}"
		if [ -n "$dispatcher" ]; then
			if dispatcher_set on; then
				bench_round producer off+dispatcher "-c synchronous_commit=off" \
					producer_reset "$r" "${disp[@]}"
			fi
			dispatcher_set off || say "producer: cannot stop the dispatcher: $DISPATCHER_ERROR"
		fi
	done

	report ""
	report "== Producer overhead: one order INSERT per transaction"
	report "   TPS ratio to plain INSERT (median TPS of $BENCH_ROUNDS rounds x" \
		"${BENCH_SECONDS}s, $BENCH_CLIENTS clients; higher is better)"
	report ""
	print_ratio_table producer plain "$PRODUCER_CONDS" $PRODUCER_VARIANTS
	report ""
	report "   in parentheses: the lowest and highest ratio within one round"
	report ""
	report "   server CPU time per transaction (all server processes; in parentheses"
	report "   plain's over the variant's: the TPS ratio of a CPU-bound server)"
	report ""
	print_cpu_table producer plain "$PRODUCER_CONDS" $PRODUCER_VARIANTS
	report ""
	report "   absolute TPS (secondary: depends on the machine and its neighbours)"
	report ""
	print_tps_table producer "$PRODUCER_CONDS" $PRODUCER_VARIANTS
	for v in $PRODUCER_VARIANTS; do
		if [ "${FAILED[producer|$v]:-}" ]; then
			report "   $v failed: ${FAILED[producer|$v]}"
		fi
	done
	if [ -n "$dispatcher" ]; then
		report "   sync_commit=off and =on: dispatcher stopped (outbox_saga.enabled = off);"
		report "   off+dispatcher: sync_commit=off, dispatcher running, no destinations."
	else
		report "   the dispatcher could not be stopped: every column ran with it ($DISPATCHER_ERROR)."
	fi
	report ""
	report "   targets (sync_commit=off), by TPS and by server CPU per transaction"
	report_target "capture >= 0.85 x plain INSERT, TPS" \
		"$(ratio_of producer sync_commit=off capture plain)" ">=" 0.85
	report_target "capture >= 0.85 x plain INSERT, CPU" \
		"$(cpu_ratio_of producer sync_commit=off capture plain)" ">=" 0.85
	report_target "capture clearly faster than the PL/pgSQL trigger, TPS" \
		"$(ratio_of producer sync_commit=off capture plpgsql)" ">=" 1.05
	report_target "capture clearly faster than the PL/pgSQL trigger, CPU" \
		"$(cpu_ratio_of producer sync_commit=off capture plpgsql)" ">=" 1.05
	spread=$(paired_range producer sync_commit=off capture plain)
	if [ -n "$spread" ] && awk -v r="$spread" 'BEGIN { split(r, a, "-"); exit !(a[2] - a[1] > 0.25) }'; then
		report "   NOTE: a noisy run (capture/plain within one round ranged $spread):"
		report "   the CPU ratios are the better measure this time."
	fi
}

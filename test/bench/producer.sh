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
#   pgq       orders_pgq + PgQ's C trigger pgq.jsontriga into the queue
#             "orders" (producer/setup_pgq.sql; Debian postgresql-15-pgq3)
#
# Conditions (columns):
#   sync_commit=off  no WAL flush wait: TPS is bound by CPU, so the ratio is
#                    the CPU cost of writing the event
#   sync_commit=on   durable commits, as most production runs
#   off+dispatcher   sync_commit=off with outbox_saga's dispatcher running
#                    and no active destination of "orders", two paused ones
#                    (producer/setup_dispatcher.sql).  A commit no active
#                    destination wants must not wake the dispatcher (issue
#                    18): its CPU is counted here.
#   on+dispatcher    the same with sync_commit=on
# In the first two the dispatcher is stopped (outbox_saga.enabled = off):
# the hand-written outbox has no relay running either, so they compare the
# write paths alone.
#
# Targets (sync_commit=off): capture >= 0.85 of plain; capture clearly
# (>= 5%) faster than the PL/pgSQL trigger.  Issue 18 item 1: server CPU
# per transaction of capture with the dispatcher running and no active
# destination <= 1.05 x with it stopped (sync off and on); capture alone
# (sync on, dispatcher stopped) <= the cheaper of the PL/pgSQL trigger and
# PgQ's trigger.
#
# Issue 18 item 1 compares the dispatcher running with it stopped: the
# medians of the two columns.  Next to it, the report gives plain INSERT's
# own running / stopped quotient (plain writes no event, so what moves it
# is the machine, not the dispatcher) and the CPU the dispatchers' own
# processes spent per transaction: what the running half adds that no
# other process does.  (Stopped runs put right next to the running half, to
# pair them round by round, were tried: they came out 10-20% slower than
# both the running runs beside them and the stopped column, for plain as
# for capture, in two full runs, for no reason found; so they were left
# out.)

PRODUCER_DIR=$WORK_DIR/test/bench/producer
PRODUCER_CONDS="sync_commit=off sync_commit=on off+dispatcher on+dispatcher"
PRODUCER_VARIANTS="plain capture emit emit_cte plpgsql pgq"
# The dispatcher condition: the baseline, the trigger and the alternative.
PRODUCER_DISPATCHER_VARIANTS="plain capture plpgsql"

# producer_reset: empty every table, checkpoint (before every run).
producer_reset() {
	if [ -z "${FAILED[producer|pgq]:-}" ]; then
		bench_psql -f "$PRODUCER_DIR/reset_pgq.sql"
	fi
	bench_psql -f "$PRODUCER_DIR/reset.sql"
}

# producer_cpu_of CONDITION VARIANT: median server CPU us/tx, or nothing.
producer_cpu_of() {
	local v=${CPU[producer|$1|$2]:-}
	[ -n "$v" ] || return 0
	# shellcheck disable=SC2086
	median $v
}

# producer_target_max DESCRIPTION VALUE LIMIT: PASS if VALUE <= LIMIT (the
# line of report_target, for an upper bound).
producer_target_max() {
	local verdict=MISS
	if [ -n "$2" ] && awk -v v="$2" -v l="$3" 'BEGIN { exit !(v <= l) }'; then
		verdict=PASS
	fi
	report "$(printf '%-4s  %s (measured %s, target <= %s)' "$verdict" "$1" "${2:-n/a}" "$3")"
}

# producer_quotient A B: A / B, two decimals, or nothing if either is missing.
producer_quotient() {
	[ -n "$1" ] && [ -n "$2" ] || return 0
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b }'
}

# producer_variants NAME...: "name=script" for bench_round.
producer_variants() {
	local v
	for v in "$@"; do
		printf '%s\n' "$v=$PRODUCER_DIR/$v.sql"
	done
}

# producer_running_round ROUND VARIANT...: the conditions with the
# dispatchers running.  They are started, then left to finish their start
# (a first housekeeping round, caches, plans: 100 to 200 ms of CPU) before
# anything is measured, and stopped after.
producer_running_round() {
	local round=$1
	shift
	if ! dispatcher_set on; then
		say "producer: cannot start the dispatcher: $DISPATCHER_ERROR"
	elif [ "$(bench_psql -At -c "SELECT outbox.wait_idle('30 seconds')")" != t ]; then
		say "producer: the dispatchers did not settle within 30 s; no running half in round $((round + 1))"
	else
		bench_round producer off+dispatcher "-c synchronous_commit=off" \
			producer_reset "$round" "$@"
		bench_round producer on+dispatcher "-c synchronous_commit=on" \
			producer_reset "$round" "$@"
	fi
	dispatcher_set off || say "producer: cannot stop the dispatcher: $DISPATCHER_ERROR"
}

# producer_item1 SYNC STOPPED_CONDITION: the issue 18 item 1 target line for
# sync_commit=SYNC and its information lines.
producer_item1() {
	local sync=$1 running="$1+dispatcher" stopped=$2 w c
	c=$(producer_cpu_of "$running" capture)
	producer_target_max "capture, dispatcher running / stopped, no active destination, sync $sync" \
		"$(producer_quotient "$c" "$(producer_cpu_of "$stopped" capture)")" 1.05
	# plain INSERT as the control: everything the two columns differ in
	# besides the dispatcher (their place in the round, the disk's state
	# after the run before) moves plain as much as capture.
	report "$(printf '      information: (capture / plain) running over (capture / plain) stopped: %s (plain alone: %s)' \
		"$(producer_quotient "$(producer_quotient "$c" "$(producer_cpu_of "$running" plain)")" \
			"$(producer_quotient "$(producer_cpu_of "$stopped" capture)" "$(producer_cpu_of "$stopped" plain)")")" \
		"$(producer_quotient "$(producer_cpu_of "$running" plain)" "$(producer_cpu_of "$stopped" plain)")")"
	w=${WORKER_CPU[producer|$running|capture]:-}
	if [ -n "$w" ] && [ -n "$c" ]; then
		# shellcheck disable=SC2086
		w=$(median $w)
		report "$(printf '      information: the dispatchers'"'"' own CPU per transaction of capture: %.3f us (%.2f%% of the %.1f us)' \
			"$w" "$(awk -v w="$w" -v c="$c" 'BEGIN { print 100 * w / c }')" "$c")"
	fi
}

section_producer() {
	local all=() disp=() v r spread cheaper dispatcher=yes
	LABEL[plain]="plain INSERT"
	LABEL[capture]="INSERT + outbox.capture"
	LABEL[emit]="INSERT + outbox.emit()"
	LABEL[emit_cte]="  same, as one statement (CTE)"
	LABEL[plpgsql]="INSERT + PL/pgSQL trigger"
	LABEL[pgq]="INSERT + PgQ trigger (C)"
	mapfile -t all < <(producer_variants $PRODUCER_VARIANTS)
	mapfile -t disp < <(producer_variants $PRODUCER_DISPATCHER_VARIANTS)

	bench_psql -f "$PRODUCER_DIR/setup.sql"
	if ! bench_psql -f "$PRODUCER_DIR/setup_capture.sql" >/dev/null 2>"$CLUSTER_DIR/capture.err"; then
		FAILED[producer|capture]="setup: $(head -n 1 "$CLUSTER_DIR/capture.err")"
		say "capture variant unavailable: ${FAILED[producer|capture]}"
	fi
	if ! bench_psql -f "$PRODUCER_DIR/setup_pgq.sql" >/dev/null 2>"$CLUSTER_DIR/pgq.err"; then
		FAILED[producer|pgq]="setup: $(head -n 1 "$CLUSTER_DIR/pgq.err")"
		say "pgq variant unavailable: ${FAILED[producer|pgq]}"
	fi
	bench_psql -f "$PRODUCER_DIR/setup_dispatcher.sql" >/dev/null
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
	# the same stretches of a noisy machine; the dispatchers run in the
	# second half of even rounds and the first half of odd ones, so that
	# neither state always follows the other.
	for ((r = 0; r < BENCH_ROUNDS; r++)); do
		if [ -n "$dispatcher" ] && ((r % 2 == 1)); then
			producer_running_round "$r" "${disp[@]}"
		fi
		bench_round producer sync_commit=off "-c synchronous_commit=off" \
			producer_reset "$r" "${all[@]}"
		bench_round producer sync_commit=on "-c synchronous_commit=on" \
			producer_reset "$r" "${all[@]}"
		if [ -n "$dispatcher" ] && ((r % 2 == 0)); then
			producer_running_round "$r" "${disp[@]}"
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
		report "   off+dispatcher, on+dispatcher: the dispatcher running, no active destination"
		report "   of the topic written, two paused ones."
	else
		report "   the dispatcher could not be stopped: every column ran with it ($DISPATCHER_ERROR)."
	fi
	report ""
	report "   targets (sync_commit=off), by TPS and by server CPU per transaction"
	report_target "capture >= 0.85 x plain INSERT, TPS" \
		"$(ratio_of producer sync_commit=off capture plain)" ">=" 0.85
	report_target "capture >= 0.85 x plain INSERT, CPU" \
		"$(cpu_ratio_of producer sync_commit=off capture plain)" ">=" 0.85
	report "$(printf '      information: the median of the per-round ratios (plain and capture seconds apart): %s' \
		"$(paired_cpu_median producer sync_commit=off capture plain)")"
	report_target "capture clearly faster than the PL/pgSQL trigger, TPS" \
		"$(ratio_of producer sync_commit=off capture plpgsql)" ">=" 1.05
	report_target "capture clearly faster than the PL/pgSQL trigger, CPU" \
		"$(cpu_ratio_of producer sync_commit=off capture plpgsql)" ">=" 1.05
	report ""
	report "   targets (issue 18 item 1), by server CPU per transaction"
	producer_item1 off sync_commit=off
	producer_item1 on sync_commit=on
	cheaper=$(printf '%s\n' "$(producer_cpu_of sync_commit=on plpgsql)" \
		"$(producer_cpu_of sync_commit=on pgq)" | awk 'NF && (m == "" || $1 < m) { m = $1 } END { print m }')
	producer_target_max "capture / the cheaper of PL/pgSQL and PgQ triggers, sync on, CPU" \
		"$(producer_quotient "$(producer_cpu_of sync_commit=on capture)" "$cheaper")" 1.00
	bench_psql -f "$PRODUCER_DIR/teardown.sql" >/dev/null
	spread=$(paired_range producer sync_commit=off capture plain)
	if [ -n "$spread" ] && awk -v r="$spread" 'BEGIN { split(r, a, "-"); exit !(a[2] - a[1] > 0.25) }'; then
		report "   NOTE: a noisy run (capture/plain within one round ranged $spread):"
		report "   the CPU ratios are the better measure this time."
	fi
}

# Section "order": what reading in commit order costs (sourced by bench.sh,
# which calls section_order; issue 14 item 1).
#
# drain     ORDER_DRAIN_EVENTS events written by BENCH_CLIENTS pgbench
#           clients, one event per transaction (many small concurrent
#           transactions: the case commit order sorts), while a function
#           destination is paused; resumed and timed until wait_idle().
#           Each fill starts once the log is retired (log_retired, lib.sh).
#           Two variants on one cluster with track_commit_timestamp = on:
#           "commit", an ordered destination (windows read by commit time,
#           events/logscan.c), and "id", the same destination with
#           "ordered": false (windows read in id order, as without commit
#           times).  Alternated over ORDER_DRAIN_ROUNDS rounds (five: a
#           drain takes 0.1-0.2 s, and one round's ratio moved from 0.61
#           to 0.92 within a run of three).  Result:
#           events/s of each and the ratio commit / id.
#
# Target: ratio >= 0.9 (reading in commit order costs at most a tenth of the
# drain rate).

ORDER_DRAIN_EVENTS=${BENCH_ORDER_DRAIN_EVENTS:-60000}
ORDER_DRAIN_ROUNDS=${BENCH_ORDER_DRAIN_ROUNDS:-5}

# order_drain VARIANT ROUND: events/s of one drain.
order_drain() {
	local variant=$1 round=$2 ordered secs rate script=$CLUSTER_DIR/order_emit.sql
	if [ "$variant" = commit ]; then ordered=true; else ordered=false; fi
	bench_psql -c "SELECT outbox.alter_destination('order_fn', '{\"ordered\": $ordered}')" \
		-c "SELECT outbox.pause_destination('order_fn')" >/dev/null
	log_retired "order"
	echo "SELECT outbox.emit('order', 'order.created', jsonb_build_object('n', :client_id::int), 'agg-' || (random() * 100)::int);" >"$script"
	chmod 644 "$script"
	as_cluster_user env PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared \
		-c "$BENCH_CLIENTS" -j "$BENCH_JOBS" -t $((ORDER_DRAIN_EVENTS / BENCH_CLIENTS)) -f "$script" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$CLUSTER_DIR/order_emit.log" 2>&1 ||
		{ FAILED[order|$variant]=$(pgbench_error "$CLUSTER_DIR/order_emit.log"); say "order: ${FAILED[order|$variant]}"; return 0; }
	bench_psql -c "CHECKPOINT" >/dev/null
	secs=$(bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('order_fn');
SELECT outbox.wait_idle('600 seconds');
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
	)
	rate=$(awk -v n="$ORDER_DRAIN_EVENTS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
	TPS[order|drain|$variant]+="$rate "
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' order drain "$round" 1 "$variant" "$rate" >>"$RAW_FILE"
	say "order: drain in $variant order, round $round: $rate events/s"
}

section_order() {
	local r
	say "order: setting up"
	bench_psql <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE FUNCTION public.order_work(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE x int;
BEGIN
	x := (e.payload->>'n')::int;
END $$;
SELECT outbox.create_destination('order_fn', 'function', '{"function": "public.order_work"}');
SELECT outbox.subscribe('order_fn', 'order');
SQL
	dispatcher_set on || { FAILED[order|all]=$DISPATCHER_ERROR; say "order: $DISPATCHER_ERROR"; return 0; }
	for ((r = 1; r <= ORDER_DRAIN_ROUNDS; r++)); do
		if ((r % 2)); then order_drain commit "$r"; order_drain id "$r"; else order_drain id "$r"; order_drain commit "$r"; fi
	done
	bench_psql -c "SELECT outbox.drop_destination('order_fn')" >/dev/null

	report ""
	report "== Order: reading windows in commit order (track_commit_timestamp = on)"
	report "   drain: $ORDER_DRAIN_EVENTS events, one per transaction from $BENCH_CLIENTS clients,"
	report "   median of $ORDER_DRAIN_ROUNDS rounds (events/s)"
	table_row 34 "variant" "events/s" "ratio to id order"
	table_row 34 "id order (\"ordered\": false)" "$(printf '%.0f' "$(median_tps order drain id)")" "1.00"
	table_row 34 "commit order (ordered)" "$(printf '%.0f' "$(median_tps order drain commit)")" \
		"$(ratio_of order drain commit id)"
	report ""
	report "   targets"
	report_target "drain in commit order / in id order" "$(ratio_of order drain commit id)" ">=" 0.9
}

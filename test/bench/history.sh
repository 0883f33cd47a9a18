# Section "history": the storage of retained history (sourced by bench.sh,
# which calls section_history; issue 16).
#
# storage   HISTORY_EVENTS events of a retained topic are written (1000 per
#           transaction) and archived; then as many of a topic that is not
#           retained; then HISTORY_EVENTS more of the retained one.  After
#           each step, once the archiver is idle and housekeeping has
#           retired the log (outbox_saga.retention = 0 for the section), the
#           size of outbox.history (heap and indexes, after VACUUM) and of
#           the log.  Result: bytes per retained event in the first and in
#           the second step (linear growth: about equal), and the growth of
#           the history and of the log over the step that wrote only events
#           of the other topic (none: the history keeps only what it is
#           asked to, and the log is retired as before).
#
# Targets: second step's bytes per event / first step's >= 0.8 and first /
# second >= 0.8 (linear within 20%); growth over the unretained step: the
# history not at all (ratio of sizes after / before >= 1 and before / after
# >= 1, i.e. equal), the log back to its size before.

HISTORY_EVENTS=${BENCH_HISTORY_EVENTS:-50000}

# history_write TOPIC: HISTORY_EVENTS events of TOPIC, 1000 per transaction.
history_write() {
	bench_psql <<SQL >/dev/null
DO \$\$
BEGIN
	FOR b IN 0 .. $HISTORY_EVENTS / 1000 - 1 LOOP
		PERFORM outbox.emit('$1', 'order.updated',
		        jsonb_build_object('n', b * 1000 + i, 'sku', 'sku-' || i % 100, 'qty', i % 5),
		        'order-' || (b * 1000 + i) % 5000)
		   FROM generate_series(1, 1000) i;
		COMMIT;
	END LOOP;
END \$\$;
SQL
}

# history_settle: wait until the archiver is idle and the log retired.
history_settle() {
	wait_until 600 "SELECT outbox.wait_idle('1 second')" &&
		wait_until 120 "SELECT count(*) = 0 FROM outbox.events" &&
		bench_psql -c "VACUUM outbox.history" >/dev/null
}

history_sizes() {
	bench_psql -At -F ' ' -c "SELECT pg_total_relation_size('outbox.history'),
		(SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
		  WHERE c.relname IN ('events_p0', 'events_p1', 'events_p2', 'events_p3')
		    AND c.relnamespace = 'outbox'::regnamespace)"
}

section_history() {
	local h0 l0 h1 l1 h2 l2 h3 l3 b1 b3
	say "history: setting up"
	bench_psql <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS outbox_saga;
ALTER SYSTEM SET outbox_saga.retention = 0;
SELECT pg_catalog.pg_reload_conf();
SELECT outbox.retain_topic('hist_kept');
SQL
	dispatcher_set on || { FAILED[history|all]=$DISPATCHER_ERROR; say "history: $DISPATCHER_ERROR"; return 0; }
	history_settle || { FAILED[history|settle]="did not settle"; say "history: did not settle"; return 0; }
	read -r h0 l0 < <(history_sizes)
	say "history: writing $HISTORY_EVENTS retained events"
	history_write hist_kept
	history_settle || { FAILED[history|settle]="did not settle"; say "history: did not settle"; return 0; }
	read -r h1 l1 < <(history_sizes)
	say "history: writing $HISTORY_EVENTS events of a topic that is not retained"
	history_write hist_other
	history_settle || { FAILED[history|settle]="did not settle"; say "history: did not settle"; return 0; }
	read -r h2 l2 < <(history_sizes)
	say "history: writing $HISTORY_EVENTS more retained events"
	history_write hist_kept
	history_settle || { FAILED[history|settle]="did not settle"; say "history: did not settle"; return 0; }
	read -r h3 l3 < <(history_sizes)
	bench_psql -c "SELECT outbox.unretain_topic('hist_kept')" -c "ALTER SYSTEM RESET outbox_saga.retention" \
		-c "SELECT pg_catalog.pg_reload_conf()" >/dev/null

	b1=$(awk -v a="$h0" -v b="$h1" -v n="$HISTORY_EVENTS" 'BEGIN { printf "%.1f", (b - a) / n }')
	b3=$(awk -v a="$h2" -v b="$h3" -v n="$HISTORY_EVENTS" 'BEGIN { printf "%.1f", (b - a) / n }')
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' history storage 1 1 bytes_per_event_1 "$b1" >>"$RAW_FILE"
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' history storage 1 2 bytes_per_event_2 "$b3" >>"$RAW_FILE"

	report ""
	report "== History: storage of a retained topic ($HISTORY_EVENTS events a step, 1000 per transaction)"
	table_row 44 "step" "history bytes" "log bytes"
	table_row 44 "start" "$h0" "$l0"
	table_row 44 "after $HISTORY_EVENTS retained events" "$h1" "$l1"
	table_row 44 "after $HISTORY_EVENTS events not retained" "$h2" "$l2"
	table_row 44 "after $HISTORY_EVENTS more retained events" "$h3" "$l3"
	report "   bytes per retained event: $b1 (first step), $b3 (second step)"
	report ""
	report "   targets"
	report_target "bytes per retained event, second step / first" \
		"$(awk -v a="$b1" -v b="$b3" 'BEGIN { if (a > 0) printf "%.2f", b / a }')" ">=" 0.8
	report_target "bytes per retained event, first step / second" \
		"$(awk -v a="$b1" -v b="$b3" 'BEGIN { if (b > 0) printf "%.2f", a / b }')" ">=" 0.8
	report_target "history size after / before the unretained step" \
		"$(awk -v a="$h1" -v b="$h2" 'BEGIN { if (a > 0) printf "%.2f", b / a }')" ">=" 1
	report_target "history size before / after the unretained step" \
		"$(awk -v a="$h1" -v b="$h2" 'BEGIN { if (b > 0) printf "%.2f", a / b }')" ">=" 1
	report_target "log size before / after the unretained step" \
		"$(awk -v a="$l1" -v b="$l2" 'BEGIN { if (b > 0) printf "%.2f", a / b }')" ">=" 1
}

# Section "dispatch": what the dispatcher delivers (sourced by bench.sh,
# which calls section_dispatch).
#
# drain     DRAIN_EVENTS events are written while their destination is
#           paused; the destination is resumed and timed until
#           outbox.wait_idle() says nothing is ready.  Variants, alternated
#           round by round:
#             function   a no-op PL/pgSQL handler (event outbox.events)
#             notify     NOTIFY on a channel nobody listens to
#             reference  a consumer in plain SQL on the same number of
#                        rows: a procedure that repeats
#                        DELETE ... WHERE id IN (SELECT id ... ORDER BY id
#                        FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING *,
#                        calls the same kind of no-op function per row and
#                        commits per batch.
#           Result: events/s (median over the rounds) and the ratio to the
#           reference.
# latency   one event per transaction at LATENCY_RATE events/s (pgbench -R,
#           synchronous_commit=off for the writer) for LATENCY_SECONDS to a
#           handler that records clock_timestamp() - created_at: the time
#           from emit() to the handler, which includes the writer's commit.
#           Result: p50 and p99 in ms.
# storage   STORAGE_ROUNDS rounds of STORAGE_EVENTS events each, written and
#           delivered, with the log retired after each round (housekeeping
#           runs every 5 s): the total size of every relation of schema
#           outbox (tables, partitions, indexes, TOAST) after the last round
#           over the size after the first.  Result: that ratio (bounded
#           storage, G7).
#
# Targets: function drain >= 50,000 events/s and >= 0.5 x reference;
# latency p50 <= 2 ms, p99 <= 10 ms; storage last/first <= 1.5.

DRAIN_EVENTS=${BENCH_DRAIN_EVENTS:-200000}
DRAIN_ROUNDS=${BENCH_DRAIN_ROUNDS:-3}
LATENCY_RATE=${BENCH_LATENCY_RATE:-200}
LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-10}
STORAGE_ROUNDS=${BENCH_STORAGE_ROUNDS:-10}
STORAGE_EVENTS=${BENCH_STORAGE_EVENTS:-100000}

# A payload of a realistic size (an order, about 200 bytes of JSON).
DISPATCH_PAYLOAD="jsonb_build_object('order_id', g, 'customer', 'customer-' || (g % 977), \
'status', 'created', 'total', (g % 10000) / 100.0, 'currency', 'EUR', \
'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 313), 'qty', 1 + g % 3)))"

dispatch_setup() {
	bench_psql <<'SQL'
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE FUNCTION public.noop(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION public.noop_json(e jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT outbox.create_destination('drain_function', 'function', '{"function": "public.noop"}');
SELECT outbox.create_destination('drain_notify', 'notify', '{"channel": "bench_drain"}');
SELECT outbox.subscribe('drain_function', 'drain_function');
SELECT outbox.subscribe('drain_notify', 'drain_notify');
SELECT outbox.pause_destination('drain_function');
SELECT outbox.pause_destination('drain_notify');
CREATE TABLE public.ref_queue (
	id bigserial PRIMARY KEY, event_id uuid NOT NULL, topic text NOT NULL,
	aggregate_id text, event_type text NOT NULL, payload jsonb NOT NULL,
	headers jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE PROCEDURE public.ref_drain() LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n bigint;
BEGIN
	LOOP
		n := 0;
		FOR r IN DELETE FROM public.ref_queue WHERE id IN (
				SELECT id FROM public.ref_queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1000)
			RETURNING * LOOP
			PERFORM public.noop_json(r.payload);
			n := n + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END $$;
SQL
}

# drain_fill VARIANT: write DRAIN_EVENTS events (or reference rows).
drain_fill() {
	if [ "$1" = reference ]; then
		bench_psql -c "INSERT INTO public.ref_queue (event_id, topic, aggregate_id, event_type, payload, headers)
			SELECT gen_random_uuid(), 'ref', (g % 1000)::text, 'order.created', $DISPATCH_PAYLOAD, '{}'
			  FROM generate_series(1, $DRAIN_EVENTS) g" >/dev/null
	else
		bench_psql -c "SELECT count(outbox.emit('drain_$1', 'order.created', $DISPATCH_PAYLOAD, (g % 1000)::text))
			  FROM generate_series(1, $DRAIN_EVENTS) g" >/dev/null
	fi
	bench_psql -c "CHECKPOINT" >/dev/null
}

# drain_time VARIANT: seconds to drain what drain_fill wrote.
drain_time() {
	if [ "$1" = reference ]; then
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
CALL public.ref_drain();
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
	else
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('drain_$1');
SELECT outbox.wait_idle('600 seconds');
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
		bench_psql -c "SELECT outbox.pause_destination('drain_$1')" >/dev/null
	fi
}

# drain_run ROUND: every variant once, order rotated by ROUND.
drain_run() {
	local round=$1 variants=(function notify reference) n=3 i k v secs rate
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		v=${variants[$k]}
		drain_fill "$v"
		secs=$(drain_time "$v")
		rate=$(awk -v n="$DRAIN_EVENTS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
		TPS[dispatch|drain|$v]+="$rate "
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' dispatch drain $((round + 1)) $((i + 1)) "$v" "$rate" >>"$RAW_FILE"
		say "dispatch drain round $((round + 1))/$DRAIN_ROUNDS: $v $rate events/s ($secs s)"
	done
}

# latency_run: p50 and p99 in ms, "p50 p99".
latency_run() {
	local script=$CLUSTER_DIR/latency.sql
	bench_psql <<'SQL' >/dev/null
CREATE TABLE public.latency (ms float8 NOT NULL);
CREATE FUNCTION public.record_latency(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.latency VALUES (extract(epoch FROM clock_timestamp() - e.created_at) * 1000)
$$;
SELECT outbox.create_destination('latency', 'function', '{"function": "public.record_latency"}');
SELECT outbox.subscribe('latency', 'latency');
SQL
	echo "SELECT outbox.emit('latency', 'tick', '{\"n\": 1}', NULL);" >"$script"
	chmod 644 "$script"
	as_cluster_user env PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared -c 1 -j 1 \
		-R "$LATENCY_RATE" -T "$LATENCY_SECONDS" -f "$script" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$CLUSTER_DIR/latency.log" 2>&1 ||
		{ FAILED[dispatch|latency]=$(pgbench_error "$CLUSTER_DIR/latency.log"); return 0; }
	bench_psql -At -c "SELECT outbox.wait_idle('60 seconds')" >/dev/null
	bench_psql -At -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2), count(*) FROM public.latency"
	bench_psql -c "SELECT outbox.drop_destination('latency')" >/dev/null
}

# storage_size: bytes of every relation of schema outbox, with indexes and
# TOAST.
storage_size() {
	bench_psql -At -c "SELECT sum(pg_total_relation_size(c.oid))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'outbox' AND c.relkind IN ('r', 'm')"
}

# storage_run: "first last" sizes over STORAGE_ROUNDS rounds.
storage_run() {
	local r first= last= per_tx=$((STORAGE_EVENTS / 10))
	bench_psql <<'SQL' >/dev/null
SELECT outbox.create_destination('storage', 'function', '{"function": "public.noop"}');
SELECT outbox.subscribe('storage', 'storage');
SQL
	for ((r = 1; r <= STORAGE_ROUNDS; r++)); do
		for ((t = 0; t < 10; t++)); do
			bench_psql -c "SELECT count(outbox.emit('storage', 'order.created', $DISPATCH_PAYLOAD, (g % 1000)::text))
				FROM generate_series(1, $per_tx) g" >/dev/null
		done
		bench_psql -At -c "SELECT outbox.wait_idle('300 seconds')" >/dev/null
		# Housekeeping (every 5 s) retires every consumed event.
		wait_until 60 "SELECT count(*) = 0 FROM outbox.events" ||
			say "storage round $r: retirement did not finish within 60 s"
		last=$(storage_size)
		[ -n "$first" ] || first=$last
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' dispatch storage "$r" 1 bytes "$last" >>"$RAW_FILE"
		say "dispatch storage round $r/$STORAGE_ROUNDS: $last bytes"
	done
	echo "$first $last"
}

section_dispatch() {
	local r p50 p99 n first last ratio fn ref nt
	say "dispatch: setting up"
	dispatch_setup >/dev/null
	dispatcher_set on || { FAILED[dispatch|all]=$DISPATCHER_ERROR; return 0; }

	for ((r = 0; r < DRAIN_ROUNDS; r++)); do
		drain_run "$r"
	done
	bench_psql -c "SELECT outbox.drop_destination('drain_function')" \
		-c "SELECT outbox.drop_destination('drain_notify')" >/dev/null

	say "dispatch: latency at $LATENCY_RATE events/s for $LATENCY_SECONDS s"
	read -r p50 p99 n < <(latency_run)
	say "dispatch: storage, $STORAGE_ROUNDS rounds of $STORAGE_EVENTS events"
	read -r first last < <(storage_run)
	ratio=$(awk -v a="$last" -v b="$first" 'BEGIN { if (b > 0) printf "%.2f", a / b }')

	report ""
	report "== Dispatcher: drain, latency, storage"
	report "   drain: $DRAIN_EVENTS events written while the destination is paused, then delivered"
	report "   (median of $DRAIN_ROUNDS rounds, variants alternated; higher is better)"
	report ""
	LABEL[function]="function destination (no-op)"
	LABEL[notify]="notify destination"
	LABEL[reference]="SQL consumer (SKIP LOCKED+DELETE)"
	table_row 34 "variant" "events/s" "ratio to reference"
	for v in function notify reference; do
		table_row 34 "${LABEL[$v]}" "$(printf '%.0f' "$(median_tps dispatch drain "$v")")" \
			"$(ratio_of dispatch drain "$v" reference)"
	done
	report ""
	report "   latency: emit() to handler at $LATENCY_RATE events/s ($n events): p50 ${p50:-n/a} ms, p99 ${p99:-n/a} ms"
	report "   storage: outbox relations after round 1: $first bytes, after round $STORAGE_ROUNDS: $last bytes (ratio $ratio)"
	report ""
	report "   targets"
	fn=$(median_tps dispatch drain function)
	report_target "function destination drain, events/s" "$(printf '%.0f' "$fn")" ">=" 50000
	report_target "function destination drain / SQL consumer" "$(ratio_of dispatch drain function reference)" ">=" 0.5
	report_target "latency p50 <= 2 ms (reported as 2 - p50)" \
		"$(awk -v p="$p50" 'BEGIN { if (p != "") printf "%.2f", 2 - p }')" ">=" 0
	report_target "latency p99 <= 10 ms (reported as 10 - p99)" \
		"$(awk -v p="$p99" 'BEGIN { if (p != "") printf "%.2f", 10 - p }')" ">=" 0
	report_target "storage last/first <= 1.5 (reported as 1.5 - ratio)" \
		"$(awk -v r="$ratio" 'BEGIN { if (r != "") printf "%.2f", 1.5 - r }')" ">=" 0
}

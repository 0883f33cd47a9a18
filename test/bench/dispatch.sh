# Section "dispatch": what the dispatcher delivers (sourced by bench.sh,
# which calls section_dispatch).
#
# drain     DRAIN_EVENTS events are written while their destination is
#           paused; the destination is resumed and timed until
#           outbox.wait_idle() says nothing is ready.  Variants, alternated
#           round by round:
#             function   a PL/pgSQL handler (event outbox.events) that
#                        reads the payload as text
#             notify     NOTIFY on a channel nobody listens to
#             reference  a consumer in plain SQL on the same number of
#                        rows: a procedure that repeats
#                        DELETE ... WHERE id IN (SELECT id ... ORDER BY id
#                        FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING *,
#                        calls a handler with the same body per row and
#                        commits per batch.
#             pgq        PgQ (Debian postgresql-N-pgq3), the same events
#                        written with pgq.insert_event() and ticked every
#                        PGQ_BATCH events; a procedure that repeats
#                        next_batch / get_batch_events / the same handler
#                        per event / finish_batch / COMMIT until no batch is
#                        left.
#           Result: events/s (median over the rounds) and the ratio to the
#           reference and to PgQ.
# latency   one event per transaction at LATENCY_RATE events/s (pgbench -R,
#           synchronous_commit=off for the writer) for LATENCY_SECONDS to a
#           handler that records clock_timestamp() - created_at: the time
#           from emit() to the handler, which includes the writer's commit.
#           Once more at LATENCY_HIGH_RATE events/s.  Result: p50 and p99
#           in ms.  (PgQ's latency, bound by its ticks, is in section e2e.)
#           Each run, like each drain's fill, starts once housekeeping has
#           retired the log (log_retired): the drains leave 1.2 million
#           consumed events (about 500 MB), and retiring them - TRUNCATE,
#           whose commit removes the files while readers and writers of the
#           log wait for the partition's lock - would otherwise fall into the
#           10 s measured (stalls of 15-45 ms in one or two housekeeping
#           rounds: the p99 of 2,000 events).  In a steady state the log
#           holds the few seconds of events since the last round; see the
#           README's Performance section.  Then a CHECKPOINT, as before every
#           run of sections producer and e2e: the drains leave their buffers
#           dirty (the bench's checkpoint_timeout is 1 h), and the background
#           writer's writes of them fell into the 10 s measured (on a machine
#           where I/O is dear, three pairs of runs after one drain round:
#           p99 7.09 / 3.83 / 5.64 ms without, 3.95 / 4.05 / 4.19 ms with).
# storage   STORAGE_ROUNDS rounds of STORAGE_EVENTS events each, written and
#           delivered, with the log retired after each round (housekeeping
#           runs every 5 s): the total size of every relation of schema
#           outbox (tables, partitions, indexes, TOAST) after the last round
#           over the size after the first.  Result: that ratio (bounded
#           storage, G7).
#
# Targets: function drain >= 50,000 events/s, >= 0.5 x reference and
# >= 1.5 x the PgQ consumer; latency p50 <= 1 ms, p99 <= 5 ms at
# LATENCY_RATE (200) events/s and p99 <= 20 ms at LATENCY_HIGH_RATE (5,000);
# storage last/first <= 1.5.

DRAIN_EVENTS=${BENCH_DRAIN_EVENTS:-200000}
DRAIN_ROUNDS=${BENCH_DRAIN_ROUNDS:-3}
LATENCY_RATE=${BENCH_LATENCY_RATE:-200}
LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-10}
LATENCY_HIGH_RATE=${BENCH_LATENCY_HIGH_RATE:-5000}
PGQ_BATCH=${BENCH_PGQ_BATCH:-1000}
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
-- The drain's handler, the same body for every consumer: it reads the
-- payload as text.
CREATE FUNCTION public.drain_handle(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF length(e.payload::text) = 0 THEN
		RAISE EXCEPTION 'empty payload';
	END IF;
END $$;
CREATE FUNCTION public.drain_handle_text(p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF length(p) = 0 THEN
		RAISE EXCEPTION 'empty payload';
	END IF;
END $$;
SELECT outbox.create_destination('drain_function', 'function', '{"function": "public.drain_handle"}');
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
			PERFORM public.drain_handle_text(r.payload::text);
			n := n + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END $$;
SQL
	# PgQ: a queue ticked by the fill (every PGQ_BATCH events), one consumer.
	if ! bench_psql >/dev/null 2>"$CLUSTER_DIR/pgq_drain.err" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgq;
SELECT pgq.create_queue('drain');
-- The fill ticks after every PGQ_BATCH events: a tick whenever it asks.
SELECT pgq.set_queue_config('drain', 'ticker_max_lag', '0');
SELECT pgq.register_consumer('drain', 'drain');
CREATE PROCEDURE public.pgq_fill(n integer, batch integer) LANGUAGE plpgsql AS \$\$
BEGIN
	FOR i IN 0 .. (n - 1) / batch LOOP
		PERFORM pgq.insert_event('drain', 'order.created', ($DISPATCH_PAYLOAD)::text)
		  FROM generate_series(i * batch + 1, least((i + 1) * batch, n)) g;
		COMMIT;
		PERFORM pgq.ticker('drain');
		COMMIT;
	END LOOP;
END \$\$;
CREATE PROCEDURE public.pgq_drain() LANGUAGE plpgsql AS \$\$
DECLARE
	b bigint;
	ev record;
BEGIN
	LOOP
		b := pgq.next_batch('drain', 'drain');
		EXIT WHEN b IS NULL;
		FOR ev IN SELECT ev_data FROM pgq.get_batch_events(b) LOOP
			PERFORM public.drain_handle_text(ev.ev_data);
		END LOOP;
		PERFORM pgq.finish_batch(b);
		COMMIT;
	END LOOP;
END \$\$;
SQL
	then
		FAILED[dispatch|pgq]="PgQ: $(grep -m1 ERROR "$CLUSTER_DIR/pgq_drain.err" || head -n 1 "$CLUSTER_DIR/pgq_drain.err")"
		say "dispatch: PgQ unavailable: ${FAILED[dispatch|pgq]}"
	fi
}

# drain_fill VARIANT: write DRAIN_EVENTS events (or reference rows).
drain_fill() {
	log_retired "dispatch drain"
	if [ "$1" = pgq ]; then
		bench_psql -c "CALL public.pgq_fill($DRAIN_EVENTS, $PGQ_BATCH)" >/dev/null
	elif [ "$1" = reference ]; then
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
	if [ "$1" = reference ] || [ "$1" = pgq ]; then
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
CALL public.${1/reference/ref}_drain();
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
	local round=$1 variants=(function notify reference pgq) n=4 i k v secs rate
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		v=${variants[$k]}
		[ "${FAILED[dispatch|$v]:-}" ] && continue
		drain_fill "$v"
		secs=$(drain_time "$v")
		rate=$(awk -v n="$DRAIN_EVENTS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
		TPS[dispatch|drain|$v]+="$rate "
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' dispatch drain $((round + 1)) $((i + 1)) "$v" "$rate" >>"$RAW_FILE"
		say "dispatch drain round $((round + 1))/$DRAIN_ROUNDS: $v $rate events/s ($secs s)"
	done
}

# latency_run RATE: p50 and p99 in ms and the number of events,
# "p50 p99 n".  Printed last, after the destination is dropped: the caller
# reads the line from a process substitution and starts the next run as
# soon as it has it, whose create_destination would otherwise race this
# run's drop.
latency_run() {
	local rate=$1 clients=1 script=$CLUSTER_DIR/latency.sql result
	# One client cannot keep a high rate on a slow machine.
	[ "$rate" -le 1000 ] || clients=2
	bench_psql <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS public.latency (ms float8 NOT NULL);
TRUNCATE public.latency;
CREATE OR REPLACE FUNCTION public.record_latency(e outbox.events) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.latency VALUES (extract(epoch FROM clock_timestamp() - e.created_at) * 1000)
$$;
SELECT outbox.create_destination('latency', 'function', '{"function": "public.record_latency"}');
SELECT outbox.subscribe('latency', 'latency');
SQL
	echo "SELECT outbox.emit('latency', 'tick', '{\"n\": 1}', NULL);" >"$script"
	chmod 644 "$script"
	log_retired "dispatch latency"
	bench_psql -c "CHECKPOINT" >/dev/null
	as_cluster_user env PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared \
		-c "$clients" -j "$clients" -R "$rate" -T "$LATENCY_SECONDS" -f "$script" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$CLUSTER_DIR/latency.log" 2>&1 ||
		{
			FAILED[dispatch|latency]=$(pgbench_error "$CLUSTER_DIR/latency.log")
			bench_psql -c "SELECT outbox.drop_destination('latency')" >/dev/null
			return 0
		}
	bench_psql -At -c "SELECT outbox.wait_idle('60 seconds')" >/dev/null
	result=$(bench_psql -At -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2), count(*) FROM public.latency")
	bench_psql -c "SELECT outbox.drop_destination('latency')" >/dev/null
	printf '%s\n' "$result"
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
	local r p50 p99 n hp50 hp99 hn first last ratio fn ref nt pq
	say "dispatch: setting up"
	dispatch_setup >/dev/null
	dispatcher_set on || { FAILED[dispatch|all]=$DISPATCHER_ERROR; return 0; }

	for ((r = 0; r < DRAIN_ROUNDS; r++)); do
		drain_run "$r"
	done
	bench_psql -c "SELECT outbox.drop_destination('drain_function')" \
		-c "SELECT outbox.drop_destination('drain_notify')" >/dev/null

	say "dispatch: latency at $LATENCY_RATE events/s for $LATENCY_SECONDS s"
	read -r p50 p99 n < <(latency_run "$LATENCY_RATE")
	say "dispatch: latency at $LATENCY_HIGH_RATE events/s for $LATENCY_SECONDS s"
	read -r hp50 hp99 hn < <(latency_run "$LATENCY_HIGH_RATE")
	say "dispatch: storage, $STORAGE_ROUNDS rounds of $STORAGE_EVENTS events"
	read -r first last < <(storage_run)
	ratio=$(awk -v a="$last" -v b="$first" 'BEGIN { if (b > 0) printf "%.2f", a / b }')

	report ""
	report "== Dispatcher: drain, latency, storage"
	report "   drain: $DRAIN_EVENTS events written while the destination is paused, then delivered"
	report "   (median of $DRAIN_ROUNDS rounds, variants alternated; higher is better)"
	report ""
	LABEL[function]="function destination"
	LABEL[notify]="notify destination"
	LABEL[reference]="SQL consumer (SKIP LOCKED+DELETE)"
	LABEL[pgq]="PgQ consumer (batches of $PGQ_BATCH)"
	table_row 34 "variant" "events/s" "ratio to reference" "ratio to PgQ"
	for v in function notify reference pgq; do
		if [ "${FAILED[dispatch|$v]:-}" ]; then
			table_row 34 "${LABEL[$v]}" "failed: ${FAILED[dispatch|$v]}"
			continue
		fi
		nt=$(median_tps dispatch drain "$v")
		table_row 34 "${LABEL[$v]}" "$([ -n "$nt" ] && printf '%.0f' "$nt")" \
			"$(ratio_of dispatch drain "$v" reference)" "$(ratio_of dispatch drain "$v" pgq)"
	done
	report "   the handler reads the payload as text (function, reference and PgQ alike)"
	report ""
	report "   latency: emit() to handler at $LATENCY_RATE events/s ($n events): p50 ${p50:-n/a} ms, p99 ${p99:-n/a} ms"
	report "   latency: emit() to handler at $LATENCY_HIGH_RATE events/s ($hn events): p50 ${hp50:-n/a} ms, p99 ${hp99:-n/a} ms"
	report "   (PgQ's latency, bound by its 0.1 s ticks, is in the end-to-end section)"
	report "   storage: outbox relations after round 1: $first bytes, after round $STORAGE_ROUNDS: $last bytes (ratio $ratio)"
	report ""
	report "   targets"
	fn=$(median_tps dispatch drain function)
	report_target "function destination drain, events/s" "$(printf '%.0f' "$fn")" ">=" 50000
	report_target "function destination drain / SQL consumer" "$(ratio_of dispatch drain function reference)" ">=" 0.5
	report_target "function destination drain >= 1.5 x PgQ consumer, same handler" \
		"$(ratio_of dispatch drain function pgq)" ">=" 1.5
	report_target "latency at $LATENCY_RATE/s: p50 <= 1 ms (reported as 1 - p50)" \
		"$(awk -v p="$p50" 'BEGIN { if (p != "") printf "%.2f", 1 - p }')" ">=" 0
	report_target "latency at $LATENCY_RATE/s: p99 <= 5 ms (reported as 5 - p99)" \
		"$(awk -v p="$p99" 'BEGIN { if (p != "") printf "%.2f", 5 - p }')" ">=" 0
	report_target "latency at $LATENCY_HIGH_RATE/s: p99 <= 20 ms (reported as 20 - p99)" \
		"$(awk -v p="$hp99" 'BEGIN { if (p != "") printf "%.2f", 20 - p }')" ">=" 0
	report_target "storage last/first <= 1.5 (reported as 1.5 - ratio)" \
		"$(awk -v r="$ratio" 'BEGIN { if (r != "") printf "%.2f", 1.5 - r }')" ">=" 0
}

# Section "pull": pull destinations (issue 16 item 1, src/dispatch/pull.c),
# sourced by bench.sh, which calls section_pull.
#
# drain     PULL_EVENTS events (the dispatch section's order payload, 1000
#           aggregates) are written, then consumed and timed.  Variants,
#           alternated round by round, on the same number of events:
#             pull1      one consumer: a procedure that repeats
#                        next_batch(1000), COMMIT, a no-op PL/pgSQL
#                        function per event, finish_batch (committed with
#                        the next next_batch)
#             pull2      two such consumers at once (two sessions)
#             function   a function destination with the same no-op
#                        handler, drained by the dispatcher
#             reference  the dispatch section's SQL consumer: DELETE ...
#                        WHERE id IN (SELECT id ... ORDER BY id FOR UPDATE
#                        SKIP LOCKED LIMIT 1000) RETURNING *, the no-op per
#                        row, COMMIT per batch
#           Result: events/s (median over the rounds) and the ratio to the
#           reference.  After each pull run nothing may be pending.  The
#           rounds start once the log is retired (log_retired, lib.sh).
#
# Target: pull drain (one consumer) >= 1.0 x the SKIP LOCKED + DELETE
# consumer: a pull batch writes one row, the reference one delete per event.

PULL_EVENTS=${BENCH_PULL_EVENTS:-100000}
PULL_ROUNDS=${BENCH_PULL_ROUNDS:-3}

PULL_PAYLOAD="jsonb_build_object('order_id', g, 'customer', 'customer-' || (g % 977), \
'status', 'created', 'total', (g % 10000) / 100.0, 'currency', 'EUR', \
'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 313), 'qty', 1 + g % 3)))"

pull_setup() {
	bench_psql <<'SQL'
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE FUNCTION public.pull_noop(e outbox.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION public.pull_noop_json(e jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT outbox.create_destination('pull_drain', 'pull');
SELECT outbox.subscribe('pull_drain', 'pull_drain');
SELECT outbox.create_destination('pull_function', 'function', '{"function": "public.pull_noop"}');
SELECT outbox.subscribe('pull_function', 'pull_function');
SELECT outbox.pause_destination('pull_function');
CREATE TABLE public.pull_ref_queue (
	id bigserial PRIMARY KEY, event_id uuid NOT NULL, topic text NOT NULL,
	aggregate_id text, event_type text NOT NULL, payload jsonb NOT NULL,
	headers jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE PROCEDURE public.pull_ref_drain() LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n bigint;
BEGIN
	LOOP
		n := 0;
		FOR r IN DELETE FROM public.pull_ref_queue WHERE id IN (
				SELECT id FROM public.pull_ref_queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1000)
			RETURNING * LOOP
			PERFORM public.pull_noop_json(r.payload);
			n := n + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN n = 0;
	END LOOP;
END $$;
-- A pull consumer: until a batch comes back empty.  A batch is finished
-- in the transaction that takes the next one (one commit per batch, as the
-- reference); that transaction ends right after next_batch, which holds
-- the destination until then (see outbox.next_batch).
CREATE PROCEDURE public.pull_consume() LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n bigint;
	b bigint;
BEGIN
	LOOP
		n := 0;
		FOR r IN SELECT * FROM outbox.next_batch('pull_drain', 1000) LOOP
			PERFORM public.pull_noop_json(r.payload);
			b := r.batch_id;
			n := n + 1;
		END LOOP;
		COMMIT;
		EXIT WHEN n = 0;
		PERFORM outbox.finish_batch(b);
	END LOOP;
END $$;
SQL
}

# pull_fill VARIANT: write PULL_EVENTS events (or reference rows).
pull_fill() {
	case $1 in
	reference)
		bench_psql -c "INSERT INTO public.pull_ref_queue (event_id, topic, aggregate_id, event_type, payload, headers)
			SELECT gen_random_uuid(), 'ref', (g % 1000)::text, 'order.created', $PULL_PAYLOAD, '{}'
			  FROM generate_series(1, $PULL_EVENTS) g" >/dev/null ;;
	function)
		bench_psql -c "SELECT count(outbox.emit('pull_function', 'order.created', $PULL_PAYLOAD, (g % 1000)::text))
			  FROM generate_series(1, $PULL_EVENTS) g" >/dev/null ;;
	*)
		bench_psql -c "SELECT count(outbox.emit('pull_drain', 'order.created', $PULL_PAYLOAD, (g % 1000)::text))
			  FROM generate_series(1, $PULL_EVENTS) g" >/dev/null ;;
	esac
	bench_psql -c "CHECKPOINT" >/dev/null
}

# pull_time VARIANT: seconds to drain what pull_fill wrote.
pull_time() {
	local t0 t1 p1 p2
	case $1 in
	reference)
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
CALL public.pull_ref_drain();
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
		;;
	function)
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
SELECT outbox.resume_destination('pull_function');
SELECT outbox.wait_idle('600 seconds');
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
		bench_psql -c "SELECT outbox.pause_destination('pull_function')" >/dev/null
		;;
	pull1)
		bench_psql -At <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
CALL public.pull_consume();
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
		;;
	pull2)
		t0=$(date +%s.%N)
		bench_psql -c "CALL public.pull_consume()" & p1=$!
		bench_psql -c "CALL public.pull_consume()" & p2=$!
		wait "$p1" "$p2"
		# The last one stops once nothing is left (no batch of the other
		# is unfinished then); whatever an earlier stop left is drained here.
		bench_psql -c "CALL public.pull_consume()"
		t1=$(date +%s.%N)
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
		;;
	esac
}

# pull_run ROUND: every variant once, order rotated by ROUND.
pull_run() {
	local round=$1 variants=(pull1 pull2 function reference) n=4 i k v secs rate
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		v=${variants[$k]}
		pull_fill "$v"
		secs=$(pull_time "$v")
		case $v in pull*)
			[ "$(bench_psql -At -c "SELECT count(*) FROM outbox.pending('pull_drain')")" = 0 ] ||
				{ FAILED[pull|$v]="events were left pending"; say "pull: $v left events pending"; } ;;
		esac
		rate=$(awk -v n="$PULL_EVENTS" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
		TPS[pull|drain|$v]+="$rate "
		printf '%s\t%s\t%d\t%d\t%s\t%s\n' pull drain $((round + 1)) $((i + 1)) "$v" "$rate" >>"$RAW_FILE"
		say "pull drain round $((round + 1))/$PULL_ROUNDS: $v $rate events/s ($secs s)"
	done
}

section_pull() {
	local r
	say "pull: setting up"
	pull_setup >/dev/null
	dispatcher_set on || { FAILED[pull|all]=$DISPATCHER_ERROR; return 0; }
	# What the sections before left in the log is retired first: its
	# retirement (or its delivery) must not fall into the timed runs.
	log_retired "pull"

	for ((r = 0; r < PULL_ROUNDS; r++)); do
		pull_run "$r"
	done
	bench_psql -c "SELECT outbox.drop_destination('pull_drain')" \
		-c "SELECT outbox.drop_destination('pull_function')" >/dev/null

	report ""
	report "== Pull destinations: drain"
	report "   $PULL_EVENTS events written, then consumed: by sessions calling next_batch(1000) and"
	report "   finish_batch, by the dispatcher (function destination), by a SKIP LOCKED+DELETE consumer"
	report "   (median of $PULL_ROUNDS rounds, variants alternated; higher is better)"
	report ""
	LABEL[pull1]="pull destination, one consumer"
	LABEL[pull2]="pull destination, two consumers"
	LABEL[function]="function destination (no-op)"
	LABEL[reference]="SQL consumer (SKIP LOCKED+DELETE)"
	table_row 34 "variant" "events/s" "ratio to reference"
	for v in pull1 pull2 function reference; do
		table_row 34 "${LABEL[$v]}" "$(printf '%.0f' "$(median_tps pull drain "$v")")" \
			"$(ratio_of pull drain "$v" reference)"
	done
	report ""
	report "   targets"
	report_target "pull drain / SKIP LOCKED+DELETE" "$(ratio_of pull drain pull1 reference)" ">=" 1.0
}

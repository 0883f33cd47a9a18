# Section "e2e": what an outbox costs end to end, next to its peers
# (sourced by bench.sh, which calls section_e2e; issue 18 item 3).
# shellcheck shell=bash disable=SC2034,SC2154
#
# Producers write orders (one INSERT per transaction, durable commits:
# synchronous_commit=on, fsync on) while a consumer delivers every event to
# the same PL/pgSQL handler, which reads the payload as text (parses it and
# keeps the latency of one event in 16).  Variants (rows), all on one
# cluster, rotated round by round:
#   plain    plain INSERT, no outbox and no consumer: the baseline
#   plpgsql  a PL/pgSQL trigger writes to_jsonb(NEW) into a queue table and
#            pg_notify()s; a client consumer (consumer.c) LISTENs and, per
#            wake-up, repeats DELETE ... FOR UPDATE SKIP LOCKED LIMIT 1000
#            RETURNING, calling the handler per row, until the queue is empty
#   pgq      PgQ (Debian postgresql-N-pgq3): its C trigger pgq.jsontriga,
#            pgqd ticking every 0.1 s (ticker_period and ticker_max_lag), and
#            a client consumer running next_batch / get_batch_events /
#            handler per event / finish_batch, one transaction per batch,
#            polling every E2E_PGQ_POLL_MS when no batch is ready
#   outbox   outbox.capture (outbox.capture_table) and a function
#            destination whose handler has the same body, delivered by the
#            dispatcher (the only variant that runs it)
# Loads (columns): "full" (BENCH_CLIENTS clients at full speed) and "rate"
# (E2E_RATE events/s in all, pgbench --rate, the same for every variant).
#
# A run: empty tables and a checkpoint; the consumer (and pgqd) started;
# pgbench for E2E_SECONDS; then the run waits until the consumer has
# delivered every event (at most 300 s) and stops the consumer.  CPU per
# event DELIVERED = (CPU of every server process over the run, measured from
# /proc like the other sections, + the client consumer's own CPU + pgqd's)
# / events written.  The producers' pgbench is not counted (it is the same
# for all).  Latency: from the order row's created_at (its transaction's
# start) to the handler, p50/p99 over the sampled events of the rate runs.
#
# Targets, on the CPU an outbox ADDS per event over plain (variant - plain):
# outbox_saga's addition <= the best peer's, at both loads (reported as
# best peer's / outbox_saga's >= 1); its ratio to PgQ's is printed.  At the
# fixed rate: outbox_saga's p99 <= 20 ms.

E2E_SECONDS=${BENCH_E2E_SECONDS:-10}
E2E_ROUNDS=${BENCH_E2E_ROUNDS:-3}
E2E_RATE=${BENCH_E2E_RATE:-3000}
E2E_PGQ_POLL_MS=${BENCH_E2E_PGQ_POLL_MS:-20}
E2E_VARIANTS="plain plpgsql pgq outbox"
# The client programs of a run (e2e_start, e2e_stop): none yet.  Set here
# so that bench.sh's cleanup can call e2e_stop when a section before this
# one failed.
E2E_CONSUMER_JOB=
E2E_PGQD_JOB=
E2E_PGQD_PID=
E2E_LOADS="full rate"

# The handler's body: p is the payload as text.  Parsing it is the
# handler's reading; one event in 16 (by order id) records its latency.
# The row is the payload (PgQ's jsontriga, to_jsonb(NEW)) or its key "new"
# (outbox.capture).
E2E_HANDLER_BODY='
	j := p::jsonb;
	IF j ? '"'new'"' THEN
		j := j->'"'new'"';
	END IF;
	IF (j->>'"'id'"')::bigint % 16 = 0 THEN
		INSERT INTO public.e2e_latency
		VALUES (extract(epoch FROM clock_timestamp() - (j->>'"'created_at'"')::timestamptz) * 1000);
	END IF;'

e2e_setup() {
	local t
	bench_psql <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS outbox_saga;
CREATE UNLOGGED TABLE public.e2e_latency (ms float8 NOT NULL);
CREATE FUNCTION public.e2e_handle(p text) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	j jsonb;
BEGIN $E2E_HANDLER_BODY
END \$\$;
CREATE FUNCTION public.e2e_outbox_handle(e outbox.events) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	p text := e.payload::text;
	j jsonb;
BEGIN $E2E_HANDLER_BODY
END \$\$;
SQL
	for t in plain plpgsql pgq outbox; do
		bench_psql <<SQL
CREATE TABLE public.e2e_$t (
	id               bigserial PRIMARY KEY,
	customer_id      bigint        NOT NULL,
	status           text          NOT NULL DEFAULT 'new',
	total            numeric(12,2) NOT NULL,
	currency         char(3)       NOT NULL DEFAULT 'EUR',
	item_count       integer       NOT NULL,
	shipping_country text          NOT NULL,
	created_at       timestamptz   NOT NULL DEFAULT now(),
	updated_at       timestamptz   NOT NULL DEFAULT now());
CREATE INDEX ON public.e2e_$t (customer_id);
SQL
		printf '%s\n' '\set customer_id random(1, 100000)' \
			'\set total_cents random(100, 99999)' '\set item_count random(1, 9)' \
			"INSERT INTO public.e2e_$t (customer_id, total, item_count, shipping_country)" \
			"	VALUES (:customer_id, :total_cents::numeric / 100, :item_count, 'DE') RETURNING id;" \
			>"$CLUSTER_DIR/e2e_$t.sql"
		chmod 644 "$CLUSTER_DIR/e2e_$t.sql"
	done

	# The PL/pgSQL peer: trigger, queue, NOTIFY; the consumer's drain.
	bench_psql <<'SQL'
CREATE TABLE public.e2e_queue (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
CREATE FUNCTION public.e2e_queue_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.e2e_queue (payload) VALUES (to_jsonb(NEW));
	PERFORM pg_notify('e2e_queue', '');
	RETURN NULL;
END $$;
CREATE TRIGGER e2e_plpgsql_queue AFTER INSERT ON public.e2e_plpgsql
	FOR EACH ROW EXECUTE FUNCTION public.e2e_queue_trigger();
CREATE FUNCTION public.e2e_queue_drain() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n integer := 0;
BEGIN
	FOR r IN DELETE FROM public.e2e_queue WHERE id IN (
			SELECT id FROM public.e2e_queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1000)
		RETURNING payload LOOP
		PERFORM public.e2e_handle(r.payload::text);
		n := n + 1;
	END LOOP;
	RETURN n;
END $$;
SQL

	# outbox_saga: the capture trigger and a function destination.
	bench_psql <<'SQL' >/dev/null
SELECT outbox.capture_table('public.e2e_outbox', topic => 'e2e');
SELECT outbox.create_destination('e2e', 'function', '{"function": "public.e2e_outbox_handle"}');
SELECT outbox.subscribe('e2e', 'e2e');
SQL

	# PgQ: the queue, 0.1 s ticks, its C trigger, a consumer; one batch per
	# call (0: no batch ready).
	if ! bench_psql >/dev/null 2>"$CLUSTER_DIR/pgq.err" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgq;
SELECT pgq.create_queue('e2e');
SELECT pgq.set_queue_config('e2e', 'ticker_max_lag', '0.1 seconds');
SELECT pgq.register_consumer('e2e', 'e2e');
CREATE TRIGGER e2e_pgq_queue AFTER INSERT ON public.e2e_pgq
	FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('e2e');
CREATE FUNCTION public.e2e_pgq_batch() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	b bigint;
	ev record;
BEGIN
	b := pgq.next_batch('e2e', 'e2e');
	IF b IS NULL THEN
		RETURN 0;
	END IF;
	FOR ev IN SELECT ev_data FROM pgq.get_batch_events(b) LOOP
		PERFORM public.e2e_handle(ev.ev_data);
	END LOOP;
	PERFORM pgq.finish_batch(b);
	RETURN 1;
END $$;
SQL
	then
		FAILED[e2e|pgq]="PgQ: $(grep -m1 ERROR "$CLUSTER_DIR/pgq.err" || head -n 1 "$CLUSTER_DIR/pgq.err")"
		say "e2e: pgq unavailable: ${FAILED[e2e|pgq]}"
	fi
	command -v pgqd >/dev/null || FAILED[e2e|pgq]="pgqd is not installed"
	cat >"$CLUSTER_DIR/pgqd.ini" <<EOF
[pgqd]
logfile = $CLUSTER_DIR/pgqd.log
pidfile = $CLUSTER_DIR/pgqd.pid
base_connstr = host=$SOCK_DIR port=$PORT user=postgres
initial_database = bench
database_list = bench
ticker_period = 0.1
EOF
	chmod 644 "$CLUSTER_DIR/pgqd.ini"

	# The client consumer, built against libpq.
	if ! gcc -O2 -o "$CLUSTER_DIR/e2e_consumer" "$BENCH_DIR/consumer.c" \
		-I"$("$PG_CONFIG" --includedir)" -I/usr/include/postgresql -lpq 2>"$CLUSTER_DIR/cc.err"; then
		FAILED[e2e|plpgsql]="consumer.c: $(head -n 1 "$CLUSTER_DIR/cc.err")"
		FAILED[e2e|pgq]=${FAILED[e2e|pgq]:-${FAILED[e2e|plpgsql]}}
	fi
	chmod 755 "$CLUSTER_DIR/e2e_consumer"
}

e2e_reset() {
	bench_psql -c "TRUNCATE public.e2e_plain, public.e2e_plpgsql, public.e2e_pgq, public.e2e_outbox,
		public.e2e_queue, public.e2e_latency, outbox.events" -c "CHECKPOINT" >/dev/null
}

# cluster_cpu_now: the cluster's CPU time so far, in clock ticks, now
# (live children included; cluster_cpu_ticks waits for clients to go).
cluster_cpu_now() {
	local pm c
	pm=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
	{
		cat "/proc/$pm/stat"
		for c in $(pgrep -P "$pm"); do cat "/proc/$c/stat" 2>/dev/null || true; done
	} | awk -v pm="$pm" '{ pid = $1; sub(/^.*\) /, ""); t += $12 + $13;
		if (pid == pm) t += $14 + $15 } END { print t }'
}

# proc_cpu_us PID: user + system CPU of process PID so far, microseconds.
proc_cpu_us() {
	awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.0f\n", ($12 + $13) / hz * 1e6 }' \
		"/proc/$1/stat" 2>/dev/null || echo 0
}

# child_pid PID: PID's child (the program runuser started), or PID itself
# when nothing runs in between.
child_pid() {
	local c deadline=$((SECONDS + 10))
	[ -n "${RUN_AS:-}" ] || { echo "$1"; return 0; }
	until c=$(pgrep -P "$1"); do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.01
	done
	echo "$c"
}

# e2e_start VARIANT: start the variant's consumer (and pgqd).  Sets
# E2E_CONSUMER_JOB, E2E_PGQD_JOB (the background jobs: runuser's, or the
# programs themselves) and E2E_PGQD_PID.
e2e_start() {
	local sql='' channel=- idle=100
	E2E_CONSUMER_JOB=
	E2E_PGQD_JOB=
	E2E_PGQD_PID=
	case $1 in
	plpgsql) sql="SELECT public.e2e_queue_drain()"; channel=e2e_queue ;;
	pgq) sql="SELECT public.e2e_pgq_batch()"; idle=$E2E_PGQ_POLL_MS ;;
	esac
	if [ "$1" = pgq ]; then
		as_cluster_user pgqd "$CLUSTER_DIR/pgqd.ini" >>"$CLUSTER_DIR/pgqd.out" 2>&1 &
		E2E_PGQD_JOB=$!
		E2E_PGQD_PID=$(child_pid "$E2E_PGQD_JOB") || return 1
	fi
	if [ -n "$sql" ]; then
		: >"$CLUSTER_DIR/consumer.out"
		as_cluster_user "$CLUSTER_DIR/e2e_consumer" \
			"host=$SOCK_DIR port=$PORT user=postgres dbname=bench application_name=e2e_consumer" \
			"$sql" "$channel" "$idle" >"$CLUSTER_DIR/consumer.out" 2>"$CLUSTER_DIR/consumer.err" &
		E2E_CONSUMER_JOB=$!
		wait_until 10 "SELECT count(*) > 0 FROM pg_catalog.pg_stat_activity
			WHERE application_name = 'e2e_consumer'" || return 1
	fi
}

# e2e_stop: stop the consumer and pgqd and wait for them; sets
# E2E_CLIENT_US to their CPU time, microseconds.
e2e_stop() {
	local c
	E2E_CLIENT_US=0
	if [ -n "$E2E_PGQD_PID" ]; then
		E2E_CLIENT_US=$(proc_cpu_us "$E2E_PGQD_PID")
		kill -TERM "$E2E_PGQD_PID" 2>/dev/null || true
	fi
	if [ -n "$E2E_CONSUMER_JOB" ]; then
		if c=$(child_pid "$E2E_CONSUMER_JOB"); then
			kill -TERM "$c" 2>/dev/null || true
		fi
		wait "$E2E_CONSUMER_JOB" 2>/dev/null || true
		c=$(tail -n 1 "$CLUSTER_DIR/consumer.out" 2>/dev/null)
		[[ "$c" =~ ^[0-9]+$ ]] && E2E_CLIENT_US=$((E2E_CLIENT_US + c))
	fi
	[ -z "$E2E_PGQD_JOB" ] || wait "$E2E_PGQD_JOB" 2>/dev/null || true
	E2E_CONSUMER_JOB=
	E2E_PGQD_JOB=
	E2E_PGQD_PID=
}

# e2e_delivered VARIANT: SQL that is true once every event was delivered.
e2e_delivered() {
	case $1 in
	plain) echo "SELECT true" ;;
	plpgsql) echo "SELECT NOT EXISTS (SELECT 1 FROM public.e2e_queue)" ;;
	pgq) echo "SELECT c.pending_events = 0 AND c.current_batch IS NULL
			AND (SELECT t.tick_event_seq FROM pgq.tick t WHERE t.tick_queue = q.queue_id
				ORDER BY t.tick_id DESC LIMIT 1) = pgq.seq_getval(q.queue_event_seq)
		FROM pgq.get_consumer_info('e2e', 'e2e') c, pgq.queue q WHERE q.queue_name = 'e2e'" ;;
	outbox) echo "SELECT outbox.wait_idle('300 seconds')" ;;
	esac
}

# e2e_run LOAD ROUND VARIANT: one run; records CPU us per event delivered.
e2e_run() {
	local load=$1 round=$2 v=$3 log=$CLUSTER_DIR/e2e_pgbench.log rate=() clients=$BENCH_CLIENTS
	local c0 c1 client_us tps ntx cpu lat p50 p99
	[ "$load" = rate ] && rate=(-R "$E2E_RATE")
	if [ "$v" = outbox ]; then
		dispatcher_set on || { FAILED[e2e|$v]=$DISPATCHER_ERROR; return 0; }
	else
		dispatcher_set off || { FAILED[e2e|$v]=$DISPATCHER_ERROR; return 0; }
	fi
	e2e_reset
	if ! e2e_start "$v"; then
		FAILED[e2e|$v]="the consumer did not start: $(head -n 1 "$CLUSTER_DIR/consumer.err" 2>/dev/null)"
		e2e_stop
		return 0
	fi
	c0=$(cluster_cpu_now)
	if ! as_cluster_user env PGOPTIONS="-c synchronous_commit=on" pgbench -n -M prepared \
		-c "$clients" -j "$BENCH_JOBS" -T "$E2E_SECONDS" "${rate[@]}" -f "$CLUSTER_DIR/e2e_$v.sql" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$log" 2>&1; then
		FAILED[e2e|$v]=$(pgbench_error "$log")
		e2e_stop
		return 0
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
	ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	if ! wait_until 300 "$(e2e_delivered "$v")"; then
		FAILED[e2e|$v]="not everything was delivered within 300 s"
		e2e_stop
		return 0
	fi
	e2e_stop
	client_us=$E2E_CLIENT_US
	c1=$(cluster_cpu_ticks)
	cpu=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v c="${client_us:-0}" -v n="$ntx" \
		'BEGIN { printf "%.2f", (t / hz * 1e6 + c) / n }')
	CPU[e2e|$load|$v]+="$cpu "
	TPS[e2e|$load|$v]+="$tps "
	read -r p50 p99 lat < <(bench_psql -At -F ' ' -c "SELECT
		round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2), count(*)
		FROM public.e2e_latency")
	if [ "$load" = rate ] && [ "$v" != plain ]; then
		E2E_P50[$v]+="$p50 "
		E2E_P99[$v]+="$p99 "
	fi
	printf '%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n' e2e "$load" $((round + 1)) 0 "$v" "$tps" "$ntx" "$cpu" >>"$RAW_FILE"
	say "e2e $load round $((round + 1))/$E2E_ROUNDS: $v $ntx events, $tps tps, $cpu us CPU/event" \
		"(client ${client_us:-0} us), latency p50 ${p50:-n/a} p99 ${p99:-n/a} ms ($lat samples)"
}

declare -A E2E_P50=() E2E_P99=()

# e2e_median_cpu LOAD VARIANT
e2e_median_cpu() {
	local v=${CPU[e2e|$1|$2]:-}
	[ -n "$v" ] || return 0
	# shellcheck disable=SC2086
	median $v
}

# e2e_added LOAD VARIANT: median CPU/event minus plain's.
e2e_added() {
	local a b
	a=$(e2e_median_cpu "$1" "$2")
	b=$(e2e_median_cpu "$1" plain)
	[ -n "$a" ] && [ -n "$b" ] || return 0
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f\n", a - b }'
}

section_e2e() {
	local r i k n v load vs cells best bestv a o pg p50 p99 short
	read -ra vs <<<"$E2E_VARIANTS"
	say "e2e: setting up"
	e2e_setup
	for ((r = 0; r < E2E_ROUNDS; r++)); do
		for load in $E2E_LOADS; do
			n=${#vs[@]}
			for ((i = 0; i < n; i++)); do
				k=$(((r + i) % n))
				v=${vs[$k]}
				[ "${FAILED[e2e|$v]:-}" ] && continue
				e2e_run "$load" "$r" "$v"
				[ "${FAILED[e2e|$v]:-}" ] && say "e2e: $v FAILED: ${FAILED[e2e|$v]}"
			done
		done
	done
	dispatcher_set on || true

	LABEL[plain]="plain INSERT, no outbox"
	LABEL[plpgsql]="PL/pgSQL trigger+LISTEN/SKIP LOCKED"
	LABEL[pgq]="PgQ + pgqd (0.1 s) + consumer"
	LABEL[outbox]="outbox_saga capture + function"
	report ""
	report "== End to end: producers write while a consumer delivers to a PL/pgSQL handler"
	report "   CPU per event delivered, microseconds: every server process + client-side"
	report "   consumer and ticker (median of $E2E_ROUNDS rounds x ${E2E_SECONDS}s; synchronous_commit=on;"
	report "   full = $BENCH_CLIENTS clients at full speed, rate = $E2E_RATE events/s for every variant);"
	report "   in parentheses: the CPU added over plain.  Lower is better."
	report ""
	table_row 36 "variant" "full" "rate $E2E_RATE/s" "latency p50/p99 ms"
	for v in $E2E_VARIANTS; do
		cells=()
		for load in $E2E_LOADS; do
			if [ "${FAILED[e2e|$v]:-}" ]; then
				cells+=("failed")
			elif [ -n "$(e2e_median_cpu "$load" "$v")" ]; then
				a=$(printf '%.1f' "$(e2e_median_cpu "$load" "$v")")
				[ "$v" = plain ] || a+=" (+$(e2e_added "$load" "$v"))"
				cells+=("$a")
			else
				cells+=("-")
			fi
		done
		if [ -n "${E2E_P50[$v]:-}" ]; then
			# shellcheck disable=SC2086
			cells+=("$(median ${E2E_P50[$v]}) / $(median ${E2E_P99[$v]})")
		else
			cells+=("-")
		fi
		table_row 36 "${LABEL[$v]}" "${cells[@]}"
	done
	for v in $E2E_VARIANTS; do
		[ "${FAILED[e2e|$v]:-}" ] && report "   $v failed: ${FAILED[e2e|$v]}"
	done
	# The fixed rate is the same for all only if every variant kept it.
	o=
	short=
	for v in $E2E_VARIANTS; do
		a=$(median_tps e2e rate "$v")
		[ -n "$a" ] || continue
		o+="${o:+, }$v $(printf '%.0f' "$a")"
		awk -v a="$a" -v r="$E2E_RATE" 'BEGIN { exit !(a < 0.9 * r) }' && short=yes
	done
	report "   events/s written at the fixed rate (median): $o"
	if [ -n "$short" ]; then
		report "   NOTE: not every variant kept $E2E_RATE events/s (a busy machine, or the CPU"
		report "   they cost): compare the rate column with care."
	fi
	report ""
	report "   targets: the CPU outbox_saga adds over plain <= the best peer's (reported as"
	report "   best peer's addition / outbox_saga's); latency at the fixed rate"
	for load in $E2E_LOADS; do
		best=
		bestv=
		for v in plpgsql pgq; do
			a=$(e2e_added "$load" "$v")
			[ -n "$a" ] || continue
			if [ -z "$best" ] || awk -v a="$a" -v b="$best" 'BEGIN { exit !(a < b) }'; then
				best=$a
				bestv=$v
			fi
		done
		o=$(e2e_added "$load" outbox)
		report_target "$load: outbox_saga's added CPU/event <= best peer's ($bestv)" \
			"$(awk -v b="$best" -v o="$o" 'BEGIN { if (b != "" && o != "" && o > 0) printf "%.2f", b / o; else if (o != "" && o <= 0) print "inf" }')" \
			">=" 1.00
		pg=$(e2e_added "$load" pgq)
		if [ -n "$pg" ] && [ -n "$o" ]; then
			report "        $load: outbox_saga adds $o us/event, PgQ $pg: $(awk -v o="$o" -v p="$pg" \
				'BEGIN { if (p > 0) printf "%.2f", o / p; else print "n/a" }') x PgQ's addition"
		fi
	done
	p99=
	# shellcheck disable=SC2086
	[ -n "${E2E_P99[outbox]:-}" ] && p99=$(median ${E2E_P99[outbox]})
	report_target "rate $E2E_RATE/s: outbox_saga p99 <= 20 ms (reported as 20 - p99)" \
		"$(awk -v p="$p99" 'BEGIN { if (p != "") printf "%.2f", 20 - p }')" ">=" 0
}

# Helpers of the benchmark (sourced by bench.sh, not run).
# shellcheck shell=bash disable=SC2034
#
#   cluster_start / cluster_stop   one throwaway cluster for the whole run
#   bench_psql ARGS...             psql against it, as the cluster user
#   bench_round ...                run every variant once, in an order that
#                                  rotates round by round; record the TPS
#                                  and server CPU time of each run
#   print_ratio_table ...          median TPS of each variant over the
#                                  median TPS of the baseline, per condition
#   print_cpu_table ...            server CPU time per transaction
#   print_tps_table ...            the absolute medians (secondary)
#   report_target ...              one PASS/MISS line
#
# A section (one file per section, e.g. producer.sh) sets up its tables,
# calls bench_round for every round and condition it measures, then prints
# its tables with the printers below.  Results go into the associative
# array TPS: "section|condition|variant" holds the TPS of every round,
# space-separated, and "section|condition|variant|round" the one of that
# round.  CPU holds the server's CPU time per transaction (microseconds)
# of every round the same way.  Every run is also appended to $RAW_FILE.

declare -A TPS=()
declare -A CPU=()
declare -A WORKER_CPU=()	# "section|condition|variant": outbox_saga's processes
declare -A FAILED=()	# "section|variant": why it could not run
declare -A LABEL=()	# variant: its name in the tables

# say MSG...: progress, on stderr so that stdout holds only the report.
say() {
	printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# report LINE...: one line of the report (stdout and the saved report).
report() {
	printf '%s\n' "$*" | tee -a "$REPORT_FILE"
}

# free_port: a TCP port nothing listens on at 127.0.0.1.  The cluster only
# listens on a private Unix socket directory, so a clash there is not
# possible anyway; the port still names the socket and the SysV key.
free_port() {
	local p
	for p in $(seq 54400 54999); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			[ ! -e "/tmp/.s.PGSQL.$p" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# cluster_start: initdb a cluster in a new temporary directory, configured
# for a benchmark on a small machine (see the settings below), with the
# extension preloaded, and start it.  Sets PGDATA_DIR, SOCK_DIR, PORT.
cluster_start() {
	CLUSTER_DIR=$(mktemp -d /tmp/outbox_saga-bench-pg.XXXXXX)
	[ -n "${RUN_AS:-}" ] && chown "$RUN_AS": "$CLUSTER_DIR"
	PGDATA_DIR=$CLUSTER_DIR/data
	SOCK_DIR=$CLUSTER_DIR
	PORT=$(free_port)
	as_cluster_user initdb -D "$PGDATA_DIR" -U postgres -A trust \
		--no-sync -E UTF8 --locale=C >"$CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/initdb.log" >&2; return 1; }
	as_cluster_user tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<EOF

# --- outbox_saga benchmark ---
shared_preload_libraries = 'outbox_saga'
track_commit_timestamp = on
max_worker_processes = 16
# The receivers listen on loopback, which the default denies.
outbox_saga.http_deny_networks = '169.254.0.0/16,fe80::/10'
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK_DIR'
max_connections = $((BENCH_CLIENTS + 20))
# Memory: the working set (a few hundred MB per run) stays in shared buffers,
# in huge pages when there are any (huge_pages_reserve).
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
huge_pages = ${BENCH_HUGE_PAGES:-try}
wal_buffers = 64MB
work_mem = 16MB
maintenance_work_mem = 256MB
# Checkpoints only when the benchmark asks for one (between runs).
max_wal_size = 16GB
min_wal_size = 2GB
checkpoint_timeout = 1h
checkpoint_completion_target = 0.9
# Durable commits stay possible: fsync is on, synchronous_commit is chosen
# per run (PGOPTIONS), wal_level is the default (replica).
fsync = on
full_page_writes = on
# Less noise: tables are truncated before every run, nothing to vacuum.
autovacuum = off
jit = off
log_min_messages = warning
log_checkpoints = off
EOF
	huge_pages_reserve
	say "starting a cluster in $PGDATA_DIR (socket $SOCK_DIR, port $PORT)"
	as_cluster_user pg_ctl -D "$PGDATA_DIR" -l "$CLUSTER_DIR/server.log" -w -t 60 \
		start >/dev/null ||
		{ cat "$CLUSTER_DIR/server.log" >&2; return 1; }
	huge_pages_check
	as_cluster_user pg_isready -q -h "$SOCK_DIR" -p "$PORT" -t 30
	as_cluster_user createdb -h "$SOCK_DIR" -p "$PORT" -U postgres bench
}

# Huge pages.  The cluster's shared memory (1 GB of shared buffers) is in
# huge pages when the machine has them free, as PostgreSQL's documentation
# advises for large shared buffers: with 4 kB pages, every server process
# takes a page fault at the first touch of each page of shared buffers, and
# each pgbench run starts new processes, so a run pays them again for every
# buffer it touches - for a log that grows by a page every 16 events, most
# of capture's cost where page faults are dear (a virtual machine: capture
# at 0.52 of a plain INSERT's CPU with 4 kB pages, 0.86 with huge pages,
# plain itself 88.6 against 59.2 us).  Run as root, the benchmark adds the
# huge pages the cluster needs to vm.nr_hugepages for the run (PostgreSQL's
# shared_memory_size_in_huge_pages) and gives them back in cluster_stop;
# otherwise it uses the free ones, if any.  BENCH_HUGE_PAGES=off measures
# with 4 kB pages (on: fail without them).  HUGE_PAGES says which it was,
# for the report's header.
HUGE_PAGES_ADDED=0
HUGE_PAGES="off"

# huge_pages_reserve: before the cluster's start.
huge_pages_reserve() {
	local need free total
	[ "${BENCH_HUGE_PAGES:-try}" != off ] || return 0
	[ -r /proc/sys/vm/nr_hugepages ] || return 0
	need=$(as_cluster_user postgres -D "$PGDATA_DIR" -C shared_memory_size_in_huge_pages \
		2>/dev/null) || return 0
	[[ "$need" =~ ^[0-9]+$ ]] && [ "$need" -gt 0 ] || return 0
	free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
	[ "${free:-0}" -lt "$need" ] || return 0
	[ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/nr_hugepages ] || return 0
	total=$(cat /proc/sys/vm/nr_hugepages)
	echo $((total + need - free)) >/proc/sys/vm/nr_hugepages 2>/dev/null || return 0
	HUGE_PAGES_ADDED=$(($(cat /proc/sys/vm/nr_hugepages) - total))
	say "huge pages: added $HUGE_PAGES_ADDED to vm.nr_hugepages for the run ($need needed)"
}

# huge_pages_check: after the cluster's start, whether the postmaster's
# shared memory is in huge pages.
huge_pages_check() {
	local pm
	pm=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
	if grep -q 'anon_hugepage' "/proc/$pm/maps" 2>/dev/null; then
		HUGE_PAGES="on"
	else
		HUGE_PAGES="off (none free; as root the benchmark reserves them)"
		[ "${BENCH_HUGE_PAGES:-try}" != off ] || HUGE_PAGES="off (BENCH_HUGE_PAGES=off)"
	fi
}

# cluster_stop: stop the cluster (fast) and remove it; give back the huge
# pages huge_pages_reserve added.  Safe to call twice and before
# cluster_start.
cluster_stop() {
	if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
		as_cluster_user pg_ctl -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "$HUGE_PAGES_ADDED" -gt 0 ]; then
		echo $(($(cat /proc/sys/vm/nr_hugepages) - HUGE_PAGES_ADDED)) \
			>/proc/sys/vm/nr_hugepages 2>/dev/null || true
		HUGE_PAGES_ADDED=0
	fi
	if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR" ]; then
		if [ -n "${BENCH_KEEP_LOG:-}" ] && [ -f "$CLUSTER_DIR/server.log" ]; then
			cp "$CLUSTER_DIR/server.log" "$RESULTS_DIR/$RUN_ID-server.log" || true
		fi
		rm -rf "$CLUSTER_DIR"
	fi
	PGDATA_DIR=
	CLUSTER_DIR=
}

# bench_psql ARGS...: psql on the bench database, stop at the first error.
bench_psql() {
	as_cluster_user psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PORT" \
		-U postgres -d bench "$@"
}

# wait_until SECONDS SQL: poll until the query SQL returns 't', at most
# SECONDS; fails on timeout.
wait_until() {
	local deadline=$((SECONDS + $1))
	until [ "$(bench_psql -At -c "$2")" = t ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.05
	done
}

# log_retired WHAT: wait until housekeeping (every 5 s) has retired every
# event of the log, so that a timed run does not pay for the TRUNCATE of
# what an earlier run left (its commit removes the partition's files while
# readers and writers of the log wait for its lock: tens of ms for the
# hundreds of MB a drain leaves).  Says so if it takes over 120 s.
log_retired() {
	wait_until 120 "SELECT NOT EXISTS (SELECT FROM outbox.events)" ||
		say "$1: the log was not retired within 120 s"
}

# dispatcher_set on|off: switch the dispatchers (outbox_saga.enabled) and
# wait until the bench database has one, or none.  Fails (leaving the
# reason in DISPATCHER_ERROR) if the setting cannot be changed.
dispatcher_set() {
	local want=$1 cmp
	[ "$want" = on ] && cmp="> 0" || cmp="= 0"
	if ! DISPATCHER_ERROR=$(bench_psql -c "ALTER SYSTEM SET outbox_saga.enabled = $want" \
		-c "SELECT pg_catalog.pg_reload_conf()" 2>&1 >/dev/null); then
		return 1
	fi
	if ! wait_until 30 "SELECT count(*) $cmp FROM pg_catalog.pg_stat_activity
			WHERE backend_type LIKE 'outbox_saga%dispatcher%' AND datname = 'bench'"; then
		DISPATCHER_ERROR="the dispatcher did not turn $want within 30 s"
		return 1
	fi
}

# run_pgbench PGOPTIONS SCRIPT SECONDS LOG: one pgbench run; prints its TPS
# (without initial connection time) and its number of transactions, or
# fails, leaving its output in LOG.
run_pgbench() {
	local opts=$1 script=$2 seconds=$3 log=$4 tps ntx
	if ! as_cluster_user env PGOPTIONS="$opts" pgbench -n -M prepared \
		-c "$BENCH_CLIENTS" -j "$BENCH_JOBS" -T "$seconds" -f "$script" \
		-h "$SOCK_DIR" -p "$PORT" -U postgres bench >"$log" 2>&1; then
		return 1
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
	ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	[ -n "$tps" ] && [ -n "$ntx" ] || return 1
	echo "$tps $ntx"
}

# Server CPU time.  Every process of the cluster is a child of the
# postmaster, and the kernel adds the CPU time of a child that has ended
# to its parent's (cutime, cstime), so the postmaster's own time, its
# children's so far and its live children's is all the cluster has used.
# Taken when no client backend is left, the difference between two
# readings is the CPU the server spent on what ran in between: backends,
# WAL writer, checkpointer, dispatcher.  It depends much less on the other
# tenants of a shared machine than TPS does.

# server_children: the pids of the postmaster's live children.
server_children() {
	pgrep -P "$(head -n 1 "$PGDATA_DIR/postmaster.pid")"
}

# clients_alive: whether a client backend of the cluster still exists
# (also one that has exited but is not yet reaped).
clients_alive() {
	local c
	for c in $(server_children); do
		if grep -q '\[local\]' "/proc/$c/cmdline" 2>/dev/null ||
			awk '{ sub(/^.*\) /, ""); exit !($1 == "Z") }' "/proc/$c/stat" 2>/dev/null; then
			return 0
		fi
	done
	return 1
}

# cluster_cpu_ticks: the cluster's CPU time so far, in clock ticks, once
# every client backend has gone (at most 10 s).
cluster_cpu_ticks() {
	local pm c deadline=$((SECONDS + 10))
	pm=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
	while clients_alive && [ $SECONDS -lt $deadline ]; do
		sleep 0.01
	done
	{
		cat "/proc/$pm/stat"
		for c in $(server_children); do cat "/proc/$c/stat" 2>/dev/null || true; done
	} | awk -v pm="$pm" '{ pid = $1; sub(/^.*\) /, ""); t += $12 + $13;
		if (pid == pm) t += $14 + $15 } END { print t }'
}
CLK_TCK=$(getconf CLK_TCK)

# outbox_worker_ns: the CPU time so far of the live processes of
# outbox_saga (launcher, dispatchers), in nanoseconds: the part of a run's
# server CPU that they spent, while they run through it.  Read from
# /proc/<pid>/schedstat (time on a CPU, ns), not from the clock ticks of
# /proc/<pid>/stat: a tick is 10 ms, about 0.2 us per transaction of a 3 s
# run, as much as the dispatchers spend.
outbox_worker_ns() {
	local c
	for c in $(server_children); do
		if grep -q '^postgres: outbox_saga ' "/proc/$c/cmdline" 2>/dev/null; then
			cat "/proc/$c/schedstat" 2>/dev/null || true
		fi
	done | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

# bench_round SECTION CONDITION PGOPTIONS RESET_FN ROUND VARIANT...
#	VARIANT is name=script.  Runs every variant once for BENCH_SECONDS, in
#	the order rotated by ROUND (0: ABCD, 1: BCDA, 2: CDAB, ...), so that
#	over the rounds a slow or fast stretch of a noisy machine is spread over
#	all variants.  RESET_FN runs before every run, so that every run starts
#	alike.  Records the TPS and the server CPU per transaction of each run,
#	and the part of that CPU outbox_saga's own processes spent (WORKER_CPU).
#	A variant whose run fails is marked failed (FAILED) and skipped from
#	then on.
bench_round() {
	local section=$1 cond=$2 opts=$3 reset=$4 round=$5
	shift 5
	local variants=("$@") n=$# i k name script out tps ntx c0 c1 w0 w1 cpu wcpu
	local log=$CLUSTER_DIR/pgbench.log
	for ((i = 0; i < n; i++)); do
		k=$(((round + i) % n))
		name=${variants[$k]%%=*}
		script=${variants[$k]#*=}
		[ "${FAILED[$section|$name]:-}" ] && continue
		"$reset"
		c0=$(cluster_cpu_ticks)
		w0=$(outbox_worker_ns)
		if out=$(run_pgbench "$opts" "$script" "$BENCH_SECONDS" "$log"); then
			c1=$(cluster_cpu_ticks)
			w1=$(outbox_worker_ns)
			read -r tps ntx <<<"$out"
			cpu=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$ntx" \
				'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
			# A worker that ended during the run took its time with it: none
			# counted then, rather than a negative share.
			wcpu=$(awk -v t=$((w1 - w0)) -v n="$ntx" \
				'BEGIN { printf "%.3f", (t > 0 ? t : 0) / 1e3 / n }')
			TPS[$section|$cond|$name]+="$tps "
			TPS[$section|$cond|$name|$((round + 1))]=$tps
			CPU[$section|$cond|$name]+="$cpu "
			CPU[$section|$cond|$name|$((round + 1))]=$cpu
			WORKER_CPU[$section|$cond|$name]+="$wcpu "
			printf '%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n' "$section" "$cond" $((round + 1)) \
				$((i + 1)) "$name" "$tps" "$ntx" "$cpu" >>"$RAW_FILE"
			say "$section $cond round $((round + 1))/$BENCH_ROUNDS: $name $tps tps, $cpu us CPU/tx"
		else
			FAILED[$section|$name]=$(pgbench_error "$log")
			say "$section $cond: $name FAILED: ${FAILED[$section|$name]}"
		fi
	done
}

# pgbench_error LOG: the first error line of a failed pgbench run.
pgbench_error() {
	grep -m1 -E 'ERROR|FATAL|error' "$1" || tail -n 1 "$1"
}

# median NUMBERS...: the median (mean of the middle two for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR == 0) exit 1;
			  if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2];
			  else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# median_tps SECTION CONDITION VARIANT: median over the rounds, or nothing.
median_tps() {
	local v=${TPS[$1|$2|$3]:-}
	[ -n "$v" ] || return 0
	# shellcheck disable=SC2086
	median $v
}

# ratio_of SECTION CONDITION VARIANT BASELINE: median TPS of VARIANT over the
# median TPS of BASELINE, two decimals, or nothing if either is missing.
ratio_of() {
	local a b
	a=$(median_tps "$1" "$2" "$3")
	b=$(median_tps "$1" "$2" "$4")
	[ -n "$a" ] && [ -n "$b" ] || return 0
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f\n", a / b }'
}

# round_ratios ARRAY SECTION CONDITION NUMERATOR DENOMINATOR: one line per
# round that has both, ARRAY's (TPS or CPU) value of NUMERATOR over that of
# DENOMINATOR within the round (runs seconds apart).
round_ratios() {
	local -n values=$1
	local r a b
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		a=${values[$2|$3|$4|$r]:-}
		b=${values[$2|$3|$5|$r]:-}
		[ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { print a / b }'
	done
	return 0
}

# paired_range SECTION CONDITION VARIANT BASELINE: "min-max" of the TPS
# ratios VARIANT / BASELINE within one round, over the rounds.
paired_range() {
	round_ratios TPS "$@" | awk '{ if (NR == 1 || $1 < lo) lo = $1;
		if (NR == 1 || $1 > hi) hi = $1 } END { if (NR) printf "%.2f-%.2f\n", lo, hi }'
}

# paired_cpu_median SECTION CONDITION VARIANT BASELINE: the median over the
# rounds of BASELINE's CPU per transaction over VARIANT's within one round,
# two decimals, or nothing.  Beside cpu_ratio_of (the ratio of the
# medians): a stretch of a noisy machine that slows one round moves both
# runs of the pair.
paired_cpu_median() {
	local out
	mapfile -t out < <(round_ratios CPU "$1" "$2" "$4" "$3")
	[ ${#out[@]} -gt 0 ] || return 0
	awk -v m="$(median "${out[@]}")" 'BEGIN { printf "%.2f\n", m }'
}

# range_of SECTION CONDITION VARIANT: "min-max" of the per-round TPS.
range_of() {
	local v=${TPS[$1|$2|$3]:-}
	[ -n "$v" ] || return 0
	# shellcheck disable=SC2086
	printf '%s\n' $v | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf "%.0f-%.0f\n", lo, hi }'
}

# table_row WIDTH FIRST CELL...: one row, first column WIDTH wide.
table_row() {
	local w=$1 first=$2 line
	shift 2
	line=$(printf "%-${w}s" "$first")
	for c in "$@"; do line+=$(printf '  %-22s' "$c"); done
	report "${line%"${line##*[! ]}"}"
}

# print_ratio_table SECTION BASELINE "COND..." VARIANT...: rows = variants,
# columns = conditions, cells = ratio of median TPS to the baseline's, and
# in parentheses the lowest and highest ratio within one round.
print_ratio_table() {
	local section=$1 base=$2 conds v c cells m
	read -ra conds <<<"$3"
	shift 3
	table_row 30 "variant" "${conds[@]}"
	for v in "$@"; do
		cells=()
		for c in "${conds[@]}"; do
			if [ "${FAILED[$section|$v]:-}" ]; then
				cells+=("failed")
			else
				m=$(ratio_of "$section" "$c" "$v" "$base")
				if [ -z "$m" ]; then
					cells+=("-")
				elif [ "$v" = "$base" ]; then
					cells+=("$m")
				else
					cells+=("$m ($(paired_range "$section" "$c" "$v" "$base"))")
				fi
			fi
		done
		table_row 30 "${LABEL[$v]:-$v}" "${cells[@]}"
	done
}

# print_tps_table SECTION "COND..." VARIANT...: median TPS (min-max over
# the rounds) per variant and condition.
print_tps_table() {
	local section=$1 conds v c cells m
	read -ra conds <<<"$2"
	shift 2
	table_row 30 "median TPS (min-max)" "${conds[@]}"
	for v in "$@"; do
		cells=()
		for c in "${conds[@]}"; do
			m=$(median_tps "$section" "$c" "$v")
			if [ -n "$m" ]; then
				cells+=("$(printf '%.0f' "$m") ($(range_of "$section" "$c" "$v"))")
			else
				cells+=("-")
			fi
		done
		table_row 30 "${LABEL[$v]:-$v}" "${cells[@]}"
	done
}

# print_cpu_table SECTION BASELINE "COND..." VARIANT...: median server CPU
# time per transaction in microseconds, and the baseline's over it: the
# TPS ratio a server that only this workload keeps busy would show.
print_cpu_table() {
	local section=$1 base=$2 conds v c cells m b
	read -ra conds <<<"$3"
	shift 3
	table_row 30 "server CPU us/tx (ratio)" "${conds[@]}"
	for v in "$@"; do
		cells=()
		for c in "${conds[@]}"; do
			m=${CPU[$section|$c|$v]:-}
			b=${CPU[$section|$c|$base]:-}
			if [ -n "$m" ] && [ -n "$b" ]; then
				# shellcheck disable=SC2086
				m=$(median $m)
				# shellcheck disable=SC2086
				b=$(median $b)
				cells+=("$(awk -v m="$m" -v b="$b" 'BEGIN { printf "%.1f (%.2f)", m, b / m }')")
			else
				cells+=("-")
			fi
		done
		table_row 30 "${LABEL[$v]:-$v}" "${cells[@]}"
	done
}

# cpu_ratio_of SECTION CONDITION VARIANT BASELINE: median CPU/tx of the
# baseline over that of VARIANT, two decimals, or nothing.
cpu_ratio_of() {
	local a=${CPU[$1|$2|$3]:-} b=${CPU[$1|$2|$4]:-}
	[ -n "$a" ] && [ -n "$b" ] || return 0
	# shellcheck disable=SC2086
	awk -v a="$(median $a)" -v b="$(median $b)" 'BEGIN { printf "%.2f\n", b / a }'
}

# report_target DESCRIPTION VALUE OP LIMIT: "PASS"/"MISS" if VALUE OP LIMIT
# (OP is >= or >); a missing value is a MISS.  Never fails the run.
report_target() {
	local desc=$1 value=$2 op=$3 limit=$4 verdict=MISS
	if [ -n "$value" ] &&
		awk -v v="$value" -v l="$limit" -v op="$op" \
			'BEGIN { exit !((op == ">=") ? v >= l : v > l) }'; then
		verdict=PASS
	fi
	report "$(printf '%-4s  %s (measured %s, target %s %s)' \
		"$verdict" "$desc" "${value:-n/a}" "$op" "$limit")"
}

#!/usr/bin/env bash
# make bench: the outbox_saga benchmark.
#
# WHAT IT MEASURES
#   producer   The cost of writing an event in the transaction that writes
#              the business row: one order INSERT per transaction, plain
#              (the baseline, 1.00), with the outbox.capture trigger, with
#              outbox.emit() in the same transaction, and with a naive
#              PL/pgSQL trigger writing to_jsonb(NEW) into a hand-written
#              outbox table (and emit() once more, in one statement); with
#              synchronous_commit=off (the CPU cost), =on (durable commits),
#              and off with the dispatcher running.  See producer.sh.
#   instructions  The producer's plain, capture, PL/pgSQL and PgQ INSERTs
#              counted in CPU instructions by callgrind (one backend in
#              single-user mode): exact from run to run where the producer
#              section's times move by 10-15%, but not time.  See
#              instructions.sh.
#   isolation  The pool of dispatchers: latency beside a hung endpoint, the
#              drain of two busy destinations with one and two workers.
#              See isolation.sh.
#   order      Reading windows in commit order (G4): the drain of many small
#              concurrent transactions, commit order against id order.  See
#              order.sh.
#   dispatch   The dispatcher: drain rate against a SQL consumer and a PgQ
#              consumer calling the same handler, latency at 200 and 5,000
#              events/s, bounded storage.  See dispatch.sh.
#   e2e        End to end: producers write while a consumer delivers to a
#              PL/pgSQL handler; CPU per event delivered (server + client
#              consumers and tickers) at full speed and at a fixed rate,
#              next to plain INSERT, a PL/pgSQL trigger + LISTEN/SKIP LOCKED
#              consumer and PgQ (pgqd + consumer).  See e2e.sh.
#   pull       Pull destinations: next_batch/finish_batch drain with one and
#              two consumers, next to a function destination and a SKIP
#              LOCKED + DELETE consumer on the same events.  See pull.sh.
#   history    Storage of retained history (issue 16): linear in the retained
#              events, nothing for other topics.  See history.sh.
#   (Later sections: dispatcher drain rate, latency, storage.  A section is
#   a file NAME.sh here defining section_NAME; add NAME to SECTIONS.)
#
# HOW IT MEASURES
#   One throwaway cluster (temporary directory, private Unix socket, the
#   extension preloaded, tuned for a benchmark: lib.sh, cluster_start) runs
#   as the unprivileged cluster user.  Variants are pgbench scripts (-n -M
#   prepared, BENCH_CLIENTS clients, BENCH_SECONDS per run) run one after
#   another in rounds; the order of the variants rotates from round to round
#   (ABCD, BCDA, ...) and every run starts from empty tables after a
#   CHECKPOINT.  A variant's result is its median TPS over the rounds.
#
# HOW TO READ IT
#   The result is the RATIO of a variant's median TPS to the baseline's,
#   measured in the same run: machines are shared and noisy, so absolute TPS
#   (printed second, with the min-max over the rounds) move from run to run
#   while ratios move much less.  1.00 = as fast as a plain INSERT; 0.85 =
#   15% fewer transactions per second.  In parentheses: the lowest and the
#   highest ratio of two runs of one round; a wide range means a noisy run.
#   A second table gives the server's CPU time per transaction (every
#   process of the cluster, measured from /proc): it is what TPS costs in
#   CPU, and it depends far less on the machine's other tenants than TPS.  Targets are printed with PASS or
#   MISS; a MISS does not fail the command (exit status 0), a variant that
#   cannot run at all does (exit status 1, after the report).
#
# SETTINGS (environment)
#   BENCH_ROUNDS=9 BENCH_SECONDS=3 BENCH_WARMUP=3 BENCH_CLIENTS=2*cores
#   BENCH_JOBS=cores BENCH_SECTIONS="producer" BENCH_SHARED_BUFFERS=1GB
#   BENCH_HUGE_PAGES=try (on, off; run as root the benchmark reserves the
#   huge pages for the run, see lib.sh)
#   BENCH_KEEP_LOG=1 (keep the server log in the results directory)
#   The defaults take about 7-8 minutes.  Quick look:
#     BENCH_ROUNDS=1 BENCH_SECONDS=2 make bench
#
# OUTPUT
#   The report on stdout (progress on stderr); the report and every run's
#   numbers (section, condition, round, position in the round, variant,
#   TPS, transactions, server CPU microseconds per transaction) in
#   test/bench/results/<timestamp>-report.txt and -raw.tsv.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_DIR=$SRC_DIR/test/bench
# shellcheck source=../../scripts/common.sh
. "$SRC_DIR/scripts/common.sh"
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

# Many short rounds rather than a few long ones: the load of a shared
# machine changes over tens of seconds, and short runs keep the variants of
# one round close together in time.  3 s is >= 50,000 transactions at
# synchronous_commit=off; an odd count of rounds has a true median.
BENCH_ROUNDS=${BENCH_ROUNDS:-9}
BENCH_SECONDS=${BENCH_SECONDS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-3}
# Two clients per core (4 on the project's 2-core machines): with one per
# core each backend waits for its client's next statement much of the time
# and the server is not CPU-bound even on an idle machine (a plain INSERT at
# synchronous_commit=off costs ~23 us of server CPU and ~7 us of pgbench
# CPU; two clients reached ~40k TPS, 1.2 of 2 cores), so the ratios would
# understate the CPU cost.  With two per core the TPS ratio matches the CPU
# ratio; more clients only add contention and context switches.
BENCH_CLIENTS=${BENCH_CLIENTS:-$((2 * $(nproc)))}
BENCH_JOBS=${BENCH_JOBS:-$(nproc)}
SECTIONS=${BENCH_SECTIONS:-producer instructions dispatch e2e isolation order http saga broker metrics pull history}

RESULTS_DIR=$BENCH_DIR/results
RUN_ID=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
RAW_FILE=$RESULTS_DIR/$RUN_ID-raw.tsv
REPORT_FILE=$RESULTS_DIR/$RUN_ID-report.txt
printf 'section\tcondition\tround\tposition\tvariant\ttps\ttransactions\tserver_cpu_us_per_tx\n' >"$RAW_FILE"
: >"$REPORT_FILE"

# Installed first, so that a failure anywhere (even while copying the
# tree) leaves no cluster and no scratch directory behind.
cleanup() {
	# Every step runs, whatever an earlier one does: one that failed under
	# set -eu would leave the cluster running and its huge pages reserved.
	set +eu
	# A section's background helper (isolation.sh's hung listener).
	if declare -F hung_stop >/dev/null && [ -n "${CLUSTER_DIR:-}" ]; then hung_stop; fi
	# e2e.sh's client consumer and pgqd.
	if declare -F e2e_stop >/dev/null && [ -n "${CLUSTER_DIR:-}" ]; then e2e_stop; fi
	cluster_stop
	if [ -n "${RUN_AS:-}" ] && [ -n "${WORK_DIR:-}" ]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

OUTBOX_SAGA_BENCH=1 bash "$SRC_DIR/scripts/deps.sh"
say "building and installing the extension"
build_and_install
make_workdir bench

for s in $SECTIONS; do
	# shellcheck source=producer.sh
	. "$BENCH_DIR/$s.sh"
done

cluster_start

report "outbox_saga benchmark $RUN_ID"
report "  $(bench_psql -At -c 'SELECT version()')"
report "  $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1))," \
	"$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;" \
	"commit $(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
		git -C "$SRC_DIR" diff --quiet HEAD 2>/dev/null || echo " with local changes")"
report "  pgbench -n -M prepared -c $BENCH_CLIENTS -j $BENCH_JOBS -T $BENCH_SECONDS," \
	"$BENCH_ROUNDS rounds, shared_buffers=$(bench_psql -At -c 'SHOW shared_buffers')," \
	"huge pages $HUGE_PAGES"

for s in $SECTIONS; do
	"section_$s"
done

report ""
report "raw numbers: $RAW_FILE"
if [ ${#FAILED[@]} -gt 0 ]; then
	say "some variants could not run: ${!FAILED[*]}"
	exit 1
fi

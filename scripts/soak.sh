#!/usr/bin/env bash
# make soak: build, install, then test/soak/soak.pl (SOAK_MINUTES of mixed
# load with faults, then checks; see its header) against a throwaway cluster
# of its own.  Not part of make test or CI.  Exit status: soak.pl's (0 only
# if every check passed).  The figures go to stdout and to
# test/soak/results/<timestamp>-report.txt.
#
# THE SHARED INSTALLATION.  The module is installed into the one global
# PostgreSQL installation, which other `make test` runs reinstall
# (`flock /tmp/outbox_saga-test.lock make test`).  Holding that lock for the
# whole soak would block them for half an hour, so this script takes the
# lock itself, only for the build, the install and the start of the soak's
# cluster (up to CREATE EXTENSION in both databases: soak.pl then writes
# SOAK_STARTED_FILE), and releases it for the load.  Do not wrap `make soak`
# in flock (it would wait for itself).  A reinstall during the load does not
# reach the soak's cluster:
#   - shared_preload_libraries is loaded once, by the postmaster, at start;
#     every process is forked from it, crash restarts included (a kill -9
#     makes the postmaster reset shared memory and fork new processes, not
#     reload libraries), and `install` replaces the file (a new inode), so
#     the mapped library stays the one installed under the lock;
#   - C functions and background workers name '$libdir/outbox_saga', which
#     dfmgr.c finds among the loaded libraries by file name, so no process
#     ever loads the new file;
#   - the extension scripts are read only by CREATE EXTENSION, done under
#     the lock.
# What a reinstall could change is nothing the soak runs after the lock.
#
#   SOAK_MINUTES=30   length of the load (the checks and the drain add a few
#                     minutes)
#   SOAK_RATE=40      pgbench transactions/s per database (an event each,
#                     two in one of nine, a saga in one of nine)
#   SOAK_PERIOD       seconds between two rounds of faults (default: a tenth
#                     of the run, at least 60)
#   SOAK_SAMPLE=30    seconds between samples of memory and storage
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

LOCK=/tmp/outbox_saga-test.lock
exec 9>>"$LOCK"
if ! flock -n 9; then
	echo "soak: waiting for $LOCK (a make test is installing or running)" >&2
	flock 9
fi
build_and_install || { echo "soak: build failed"; exit 1; }
make_workdir soak
if [ -n "${RUN_AS:-}" ]; then trap 'rm -rf "$WORK_DIR"' EXIT; fi

RESULTS=$SRC_DIR/test/soak/results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%d-%H%M%S)
STARTED=$WORK_DIR/soak.started
PGXS_DIR=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)
rm -f "$STARTED"

(
	cd "$WORK_DIR" || exit 1
	as_cluster_user env TESTDIR="$WORK_DIR" PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		PERL5LIB="$PGXS_DIR/src/test/perl:$WORK_DIR/test/lib:$WORK_DIR/test/kafka:$WORK_DIR/test/nats" \
		SOAK_STARTED_FILE="$STARTED" SOAK_REPORT="$WORK_DIR/soak-report.txt" \
		SOAK_MINUTES="${SOAK_MINUTES:-30}" ${SOAK_RATE:+SOAK_RATE=$SOAK_RATE} \
		${SOAK_PERIOD:+SOAK_PERIOD=$SOAK_PERIOD} ${SOAK_SAMPLE:+SOAK_SAMPLE=$SOAK_SAMPLE} \
		perl test/soak/soak.pl 9>&-
) &
soak_pid=$!

# Hold the lock until the cluster runs with the module loaded, or soak.pl
# ended early.
while [ ! -e "$STARTED" ] && kill -0 "$soak_pid" 2>/dev/null; do
	sleep 1
done
flock -u 9
exec 9>&-
[ -e "$STARTED" ] && echo "soak: cluster started, $LOCK released" >&2

wait "$soak_pid"
rc=$?
if [ -s "$WORK_DIR/soak-report.txt" ]; then
	cp "$WORK_DIR/soak-report.txt" "$RESULTS/$STAMP-report.txt"
	echo "soak: figures in $RESULTS/$STAMP-report.txt"
fi
log=$WORK_DIR/tmp_check/log/regress_log_soak
if [ $rc -ne 0 ] && [ -f "$log" ]; then
	cp "$log" "$RESULTS/$STAMP-log.txt"
	cp "$WORK_DIR"/tmp_check/log/*soak*.log "$RESULTS/" 2>/dev/null || true
	echo "soak: FAILED (exit $rc); log in $RESULTS/$STAMP-log.txt"
fi
exit $rc

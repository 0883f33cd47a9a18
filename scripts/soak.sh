#!/usr/bin/env bash
# make soak: build, install, then test/soak/soak.pl (SOAK_MINUTES of mixed
# load with faults, then checks; see its header) against a throwaway cluster
# of its own.  Not part of make test or CI.  Exit status: soak.pl's (0 only
# if every check passed).  The figures go to stdout and to
# test/soak/results/<timestamp>-report.txt.
#
# A PRIVATE INSTALLATION.  The module is built and installed into a copy of
# the PostgreSQL installation in a scratch directory, never into the shared
# one that `make test` runs (flock /tmp/outbox_saga-test.lock) install into:
# so the soak needs no lock (holding it for half an hour would block every
# other test run) and nobody's reinstall can reach it.  A PostgreSQL
# installation is relocatable: pg_config, initdb and the server find their
# library, share and include directories relative to their own binary, so
# the copy keeps the same layout under the scratch directory (include files
# are a symlink to the real ones), and its pg_config answers with the copy's
# directories (checked below).  The alternative - install into the shared
# installation under the lock, start the cluster, release the lock - works
# too, since the postmaster maps shared_preload_libraries once and every
# process (crash restarts included) is forked from it, but the lock is often
# queued behind several test runs, and a copy is simpler to reason about.
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

# The private installation.
PRIV=$(mktemp -d /tmp/outbox_saga-soak-pg.XXXXXX)
make_workdir soak
cleanup() {
	rm -rf "$PRIV"
	if [ -n "${RUN_AS:-}" ]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
INCLUDEDIR=$("$PG_CONFIG" --includedir-server)
for d in "$BINDIR" "$PKGLIBDIR" "$SHAREDIR"; do
	mkdir -p "$PRIV$(dirname "$d")"
	[ -e "$PRIV$d" ] || cp -a "$d" "$PRIV$d"
done
mkdir -p "$PRIV$(dirname "$INCLUDEDIR")"
ln -s "$INCLUDEDIR" "$PRIV$INCLUDEDIR"
PRIV_PG_CONFIG=$PRIV$BINDIR/pg_config
if [ "$("$PRIV_PG_CONFIG" --pkglibdir)" != "$PRIV$PKGLIBDIR" ] ||
	[ "$("$PRIV_PG_CONFIG" --sharedir)" != "$PRIV$SHAREDIR" ]; then
	echo "soak: the copy of the installation in $PRIV is not relocatable" >&2
	exit 1
fi
chmod -R a+rX "$PRIV"
{ make -s -C "$WORK_DIR" PG_CONFIG="$PRIV_PG_CONFIG" WERROR=1 &&
	make -s -C "$WORK_DIR" PG_CONFIG="$PRIV_PG_CONFIG" install; } >"$PRIV/build.log" 2>&1 ||
	{ cat "$PRIV/build.log"; echo "soak: build failed"; exit 1; }
PGXS_DIR=$(cd "$(dirname "$("$PRIV_PG_CONFIG" --pgxs)")/../.." && pwd)

RESULTS=$SRC_DIR/test/soak/results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%d-%H%M%S)

(
	cd "$WORK_DIR" || exit 1
	RUN_AS=${RUN_AS:-} PG_BINDIR=$PRIV$BINDIR as_cluster_user env TESTDIR="$WORK_DIR" \
		PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
		PERL5LIB="$PGXS_DIR/src/test/perl:$WORK_DIR/test/lib:$WORK_DIR/test/kafka:$WORK_DIR/test/nats" \
		SOAK_REPORT="$WORK_DIR/soak-report.txt" \
		SOAK_MINUTES="${SOAK_MINUTES:-30}" ${SOAK_RATE:+SOAK_RATE=$SOAK_RATE} \
		${SOAK_PERIOD:+SOAK_PERIOD=$SOAK_PERIOD} ${SOAK_SAMPLE:+SOAK_SAMPLE=$SOAK_SAMPLE} \
		${SOAK_KILLS:+SOAK_KILLS=$SOAK_KILLS} ${SOAK_OUTAGES:+SOAK_OUTAGES=$SOAK_OUTAGES} \
		perl test/soak/soak.pl
)
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

#!/usr/bin/env bash
# make valgrind: the pg_regress suite with the server under valgrind
# (memcheck), not part of make test (slow).  It builds the ordinary module in
# a scratch copy of the tree and installs it into a scratch DESTDIR, loaded
# from there (extension_destdir and dynamic_library_path, as the buildopts
# suite does), so the shared installation is not touched and no lock is
# needed.  `check-regress` then runs with pg_regress's --bindir pointing at
# a directory whose `postgres` is a script that execs the real server under
#   valgrind --trace-children=yes --track-origins=yes
#            --suppressions=test/valgrind.supp --log-file=.../vg.%p
# (every other program there is a link to the real one).  The postmaster and
# every process it forks (backends, dispatchers) write their own log.
#
# Verdict: each error valgrind reports is ours when the first frame of one
# of its stacks (where it happened, where an uninitialised value was
# created, where the block was allocated or freed; valgrind's replacements
# of memcpy and the like skipped) lies in the module (outbox_saga.so or a
# file of src/): an error inside the server reached through a call of the
# module is the server's.  The others are the stock server's noise
# (it is not built with USE_VALGRIND, so for instance the padding bytes of
# WAL records and statistics messages are reported as uninitialised) and are
# counted, not failed; test/valgrind.supp silences the known ones.  Exit
# status 1 when any error is ours (each printed) or when the suite could not
# run; test failures alone (timeouts of a slowed server) are printed but do
# not fail the target.  Figures: the suite's result, processes, errors (ours,
# the server's, suppressed), the time taken.
#
# What valgrind cannot see with a stock server: palloc chunks are carved out
# of larger malloc'd blocks of a memory context and are not marked
# (VALGRIND_MAKE_MEM_NOACCESS) on pfree or at their end, so a use after pfree
# or an overrun inside a live context is invisible; see README, Contributing.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 1; }
bash "$SRC_DIR/scripts/deps.sh" || exit 1
grep -q extension_destdir "$("$PG_CONFIG" --sharedir)/postgresql.conf.sample" ||
	{ echo "valgrind: this PostgreSQL has no extension_destdir (a Debian patch)"; exit 1; }

BUILD_ROOT=$(mktemp -d /tmp/outbox_saga-valgrind.XXXXXX)
chmod 755 "$BUILD_ROOT"		# the cluster user loads the library from here
if [ -z "${KEEP_WORKDIR:-}" ]; then
	trap 'rm -rf "$BUILD_ROOT"' EXIT
else
	echo "valgrind: the suite runs in $BUILD_ROOT"
fi
WORK_DIR="$BUILD_ROOT/src"
copy_tree "$WORK_DIR"
make -s -C "$WORK_DIR" -j2 PG_CONFIG="$PG_CONFIG" WERROR=1 SANITIZE= >"$BUILD_ROOT/build.log" 2>&1 ||
	{ cat "$BUILD_ROOT/build.log"; echo "valgrind: build failed"; exit 1; }
destdir="$BUILD_ROOT/dest"
make -s -C "$WORK_DIR" PG_CONFIG="$PG_CONFIG" SANITIZE= install DESTDIR="$destdir" >/dev/null ||
	{ echo "valgrind: make install DESTDIR=... failed"; exit 1; }
if [ "$(id -u)" -eq 0 ]; then RUN_AS=postgres; else RUN_AS=; fi

VG_DIR="$BUILD_ROOT/valgrind"
mkdir -p "$VG_DIR/bin" "$VG_DIR/logs"
cat >"$VG_DIR/destdir.conf" <<CONF
# The scratch build, not the shared installation.
extension_destdir = '$destdir'
dynamic_library_path = '$destdir$("$PG_CONFIG" --pkglibdir):\$libdir'
CONF
for name in "$PG_BINDIR"/*; do
	ln -s "$name" "$VG_DIR/bin/$(basename "$name")"
done
rm "$VG_DIR/bin/postgres"
cat >"$VG_DIR/bin/postgres" <<WRAPPER
#!/bin/sh
# scripts/valgrind.sh: the real postgres under valgrind.
exec valgrind --trace-children=yes --track-origins=yes --leak-check=no \\
	--num-callers=30 --fullpath-after= --error-limit=no \\
	--suppressions="$WORK_DIR/test/valgrind.supp" \\
	--log-file="$VG_DIR/logs/vg.%p" "$PG_BINDIR/postgres" "\$@"
WRAPPER
chmod 755 "$VG_DIR/bin/postgres"
[ -n "${RUN_AS:-}" ] && chown -R "$RUN_AS": "$BUILD_ROOT"

start=$(date +%s)
# The slowed server needs longer to start; the suite's own waits
# (wait_idle's timeout) may still time out, which fails a test, not this run.
as_cluster_user env PGCTLTIMEOUT=600 timeout 5400 make -C "$WORK_DIR" -s check-regress \
	EXTRA_REGRESS_OPTS="--bindir=$VG_DIR/bin --temp-config=$VG_DIR/destdir.conf" >"$VG_DIR/suite.log" 2>&1
suite_rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$VG_DIR/suite.log"
[ -s "$WORK_DIR/regression.diffs" ] && { echo "--- regression.diffs (first 100 lines)"; head -n 100 "$WORK_DIR/regression.diffs"; }
ok=$(grep -cE '^(test|    ) +[A-Za-z0-9_]+ +\.\.\. ok' "$VG_DIR/suite.log")
bad=$(grep -cE '\.\.\. FAILED' "$VG_DIR/suite.log")

# Split every log into error blocks (from an error's first line to the blank
# line that ends it) and classify them.
ours_pat="outbox_saga\\.so|$WORK_DIR/src/"
read -r nlogs nours nserver < <(
	awk -v pat="$ours_pat" -v out="$VG_DIR/ours.txt" '
		FNR == 1 { nlogs++ }
		!inblock && /^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|Argument .* of function|Jump to the invalid|Process terminating)/ {
			inblock = 1; block = ""; mine = 0
		}
		inblock {
			block = block FILENAME ": " $0 "\n"
			# The first frame of each stack (the error, the origin of an
			# uninitialised value, where a block was allocated or freed),
			# past valgrind'"'"'s own replacements (memcpy...): the code that did it.
			if ($0 ~ /^==[0-9]+== +at 0x/) want = 1
			if (want && $0 ~ /^==[0-9]+== +(at|by) 0x/ && $0 !~ /vgpreload/) {
				want = 0
				if ($0 ~ pat) mine = 1
			}
			if ($0 ~ /^==[0-9]+== *$/) {
				inblock = 0
				if (mine) { nours++; printf "%s\n", block > out } else nserver++
			}
		}
		END { print nlogs + 0, nours + 0, nserver + 0 }' "$VG_DIR"/logs/vg.* /dev/null)
suppressed=$(grep -h 'ERROR SUMMARY' "$VG_DIR"/logs/vg.* 2>/dev/null |
	sed -E 's/.*suppressed: ([0-9,]+) from.*/\1/' | tr -d , | awk '{ s += $1 } END { print s + 0 }')

status=0
if [ "$nours" -gt 0 ]; then
	echo "--- valgrind errors in outbox_saga"
	cat "$VG_DIR/ours.txt"
	status=1
fi
if [ "$nlogs" -eq 0 ] || [ "$ok" -eq 0 ]; then
	echo "valgrind: the suite did not run under valgrind (see above)"
	status=1
fi
echo "valgrind: pg_regress $ok passed, $bad failed (exit $suite_rc) in ${elapsed}s;" \
	"$nlogs processes; errors: $nours in outbox_saga, $nserver in the server, $suppressed suppressed"
exit $status

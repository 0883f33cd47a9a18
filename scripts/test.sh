#!/usr/bin/env bash
# make test: dependencies, a -Werror build, install, then every suite
# (pg_regress, isolation, TAP) against throwaway clusters the suites start
# themselves, the documentation suites (the README's Getting started, the
# client examples), and the release suites (META.json, the Debian package, the
# build without Kafka and NATS), each of which counts as one test, and the
# fuzz suite (scripts/fuzz.sh check: the regression inputs and a few seconds
# of each libFuzzer target), which counts as one test too.  It never
# touches a cluster it did not start.  It goes on after a failing suite,
# prints regression.diffs and TAP logs of failures, and ends with one line:
# "N passed, N failed".  Exit status 0 only if all passed.
#
# While working on one part, two variables narrow the run (CI sets neither):
#   SUITES="regress tap"            which suites (default: all:
#                                   symbols regress isolation tap
#                                   fuzz readme examples
#                                   meta package buildopts)
#   PROVE_TESTS="test/t/020_*.pl"   which TAP files (default: all)
#
# SANITIZE=address (make test SANITIZE=address) builds the module with ASan
# and UBSan and runs the suites that start a server (default: regress
# isolation tap readme examples) with it loaded into the stock server (see
# scripts/sanitize.sh); the sanitizer verdict counts as one more test, failed
# when any sanitizer report was written.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

bash "$SRC_DIR/scripts/deps.sh" || exit 1
SANITIZE=${SANITIZE:-}
case $SANITIZE in
'' | address) ;;
*) echo "SANITIZE must be empty or address, not \"$SANITIZE\""; exit 1 ;;
esac
build_and_install SANITIZE="$SANITIZE" || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
make_workdir test
# KEEP_WORKDIR=1 keeps the scratch copy (results/, logs) for inspection.
if [ -n "${RUN_AS:-}" ] && [ -z "${KEEP_WORKDIR:-}" ]; then
	trap 'rm -rf "$WORK_DIR"' EXIT
else
	echo "suites run in $WORK_DIR"
fi

passed=0
failed=0
skipped=0

if [ -n "$SANITIZE" ]; then
	. "$SRC_DIR/scripts/sanitize.sh"
	sanitize_setup || { echo "0 passed, 1 failed"; exit 1; }
	SUITES=${SUITES:-regress isolation tap readme examples}
fi

# run_suite NAME TARGET TIMEOUT: run one suite, count its tests.
run_suite() {
	local name=$1 target=$2 limit=$3 log="$WORK_DIR/$1.log" ok bad
	echo "=== $name"
	as_cluster_user timeout "$limit" make -C "$WORK_DIR" -s "$target" \
		${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} >"$log" 2>&1
	local rc=$?
	cat "$log"
	case $name in
	tap)
		ok=$(grep -cE '^test/t/[^ ]+\.pl \.+ ok' "$log")
		# A file that skips says why (086 where network namespaces cannot
		# be made, e.g. in a chroot): counted apart, never as passed.
		skip=$(grep -cE '^test/t/[^ ]+\.pl \.+ skipped' "$log")
		skipped=$((skipped + skip))
		bad=$(( $(cd "$WORK_DIR" && ls ${PROVE_TESTS:-test/t/*.pl} | wc -l) - ok - skip ))
		if [ "$bad" -gt 0 ]; then
			for f in "$WORK_DIR"/tmp_check/log/regress_log_*; do
				[ -f "$f" ] || continue
				echo "--- $f (last 80 lines)"; tail -n 80 "$f"
			done
		fi
		;;
	*)
		# pg_regress up to 15 ("test emit ... ok", "... FAILED") and
		# from 16 (TAP: "ok 1 - emit", "not ok 1 - emit", "+" in groups).
		ok=$(grep -cE '^((test|    ) +[A-Za-z0-9_]+ +\.\.\. ok|ok [0-9]+ +[-+] +[A-Za-z0-9_]+)' "$log")
		bad=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ +[-+] ' "$log")
		for d in "$WORK_DIR/regression.diffs" "$WORK_DIR/output_iso/regression.diffs"; do
			[ -s "$d" ] && { echo "--- $d"; cat "$d"; }
		done
		;;
	esac
	# A suite that failed without reporting a failed test (crash, timeout).
	if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	passed=$((passed + ok))
	failed=$((failed + bad))
}

# run_script NAME SCRIPT TIMEOUT: a suite that is one script, one test.
run_script() {
	echo "=== $1"
	if timeout "$3" bash "$SRC_DIR/scripts/$2"; then
		passed=$((passed + 1))
	else
		echo "$1: FAILED"
		failed=$((failed + 1))
	fi
}

SUITES=${SUITES:-symbols regress isolation tap fuzz readme examples meta package buildopts}
for suite in $SUITES; do
	case $suite in
	# Release: META.json and versions; dpkg-buildpackage (with installcheck)
	# in a scratch copy; the module built without Kafka and NATS.
	meta) run_script meta check_meta.sh 60 ;;
	package) run_script package package.sh 900 ;;
	buildopts) run_script buildopts build_options.sh 600 ;;
	symbols)
		# Released scripts keep naming their C symbols (none is ever removed).
		echo "=== symbols"
		if bash "$SRC_DIR/scripts/check_symbols.sh"; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
		fi
		;;
	regress) run_suite regress check-regress 600 ;;
	isolation) run_suite isolation check-isolation 600 ;;
	tap) run_suite tap check-tap 900 ;;
	# The libFuzzer targets of test/fuzz: every regression input, then a
	# few seconds of fuzzing each (outside the server; no cluster).
	fuzz) run_script fuzz fuzz.sh 180 ;;
	# Documentation: the README's Getting started pasted into psql, and the
	# client programs of examples/, each against a throwaway cluster.
	readme) run_script readme check_readme.sh 120 ;;
	examples) run_script examples check_examples.sh 300 ;;
	*) echo "unknown suite $suite"; failed=$((failed + 1)) ;;
	esac
done

if [ -n "$SANITIZE" ]; then
	echo "=== sanitizer"
	if sanitize_verdict; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
fi

[ "$skipped" -eq 0 ] || echo "$skipped test file(s) skipped (the reason is printed above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

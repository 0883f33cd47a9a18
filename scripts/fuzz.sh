#!/usr/bin/env bash
# The libFuzzer targets of test/fuzz: the project's pure parsers, compiled
# unchanged from src/ with clang (-fsanitize=fuzzer,address,undefined) and
# linked with a shim of the server (test/fuzz/fuzz_shim.c), outside the
# server.  Built into test/fuzz/build/.
#
#   scripts/fuzz.sh check   (suite "fuzz" of make test) every input of
#                           test/fuzz/corpus/<target>/ (seeds and every
#                           crash ever found: the regression tests), then
#                           FUZZ_QUICK_SECONDS (default 2) of fuzzing per
#                           target from a scratch copy of the corpus
#   scripts/fuzz.sh long    (make fuzz) FUZZ_SECONDS (default 300) per
#                           target at nice 10, the corpus growing in
#                           test/fuzz/build/corpus/<target>/; crashes are
#                           written to test/fuzz/build/crashes/<target>/
#   scripts/fuzz.sh build   only build
#
# FUZZ_TARGETS="url cidr" narrows to some targets.  Exit status 0 only if
# no target crashed.  A crash is a bug: fix it in src/, then add the input
# to test/fuzz/corpus/<target>/ (named crash-<what>) so that "check" runs it
# forever after.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
FUZZ_DIR=$SRC_DIR/test/fuzz
BUILD=$FUZZ_DIR/build
MODE=${1:-check}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config)
CC=${FUZZ_CC:-clang}
# make fuzz on its own: the compiler and runtimes (make test installed them).
if [ "$MODE" = long ] && [ -z "${FUZZ_CC:-}" ]; then
	SUITES=fuzz bash "$(dirname "$0")/deps.sh" || exit 1
fi

ALL_TARGETS="template url cidr capture_args secret mask"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}

# The project's source files and libraries each target is made of.
target_sources() {
	case $1 in
	template) echo src/sink/template.c ;;
	url | cidr) echo src/http/http_guard.c ;;
	capture_args) echo src/events/capture_args.c ;;
	secret) echo src/sink/http_sign.c ;;
	mask) echo src/dispatch/mask.c ;;
	*) return 1 ;;
	esac
}
target_libs() {
	case $1 in
	url | cidr) echo -lcurl ;;
	secret) echo -lcrypto ;;
	esac
}

if ! command -v "$CC" >/dev/null; then
	echo "fuzz: $CC not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
	exit 1
fi

PKGLIB=$("$PG_CONFIG" --pkglibdir)
INCLUDES="-I$SRC_DIR/src -I$FUZZ_DIR -I$("$PG_CONFIG" --includedir-server)"
CFLAGS="-g -O1 -fno-omit-frame-pointer -Wall -Wno-unused-parameter -Wno-ignored-attributes -Werror"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"

build() {
	mkdir -p "$BUILD/obj"
	# The shim is not instrumented for coverage: cov/ft count the
	# project's code and the targets' checks only.
	$CC $CFLAGS $SAN $INCLUDES -c "$FUZZ_DIR/fuzz_shim.c" -o "$BUILD/obj/fuzz_shim.o" || return 1
	local t src obj objs
	for t in $TARGETS; do
		objs=()
		for src in $(target_sources "$t") "test/fuzz/fuzz_$t.c"; do
			obj=$BUILD/obj/$(echo "$src" | tr / _).o
			$CC $CFLAGS $SAN -fsanitize=fuzzer-no-link $INCLUDES \
				-c "$SRC_DIR/$src" -o "$obj" || return 1
			objs+=("$obj")
		done
		$CC $SAN -fsanitize=fuzzer "${objs[@]}" "$BUILD/obj/fuzz_shim.o" \
			"$PKGLIB/libpgcommon.a" "$PKGLIB/libpgport.a" $(target_libs "$t") \
			-o "$BUILD/fuzz_$t" || return 1
	done
}

# fuzz_args TARGET: the options every run of TARGET gets.
fuzz_args() {
	local args=(-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
	[ -f "$FUZZ_DIR/$1.dict" ] && args+=(-dict="$FUZZ_DIR/$1.dict")
	echo "${args[@]}"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# summary LOG: the last status line of a libFuzzer log (execs, cov, ft).
summary() {
	local execs line
	execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$1" | grep -oE '[0-9]+$' | tail -1)
	line=$(grep -E '^#[0-9]+' "$1" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*')
	echo "execs: ${execs:-?} ${line:-}"
}

run_check() {
	local t failed=0 work log
	work=$(mktemp -d /tmp/outbox_saga-fuzz.XXXXXX)
	trap 'rm -rf "$work"' RETURN
	for t in $TARGETS; do
		log=$work/$t.log
		# 1. Every input of the corpus once (seeds and regressions).
		if ! "$BUILD/fuzz_$t" $(fuzz_args "$t") -runs=0 -artifact_prefix="$work/" \
			"$FUZZ_DIR/corpus/$t" >"$log" 2>&1; then
			echo "fuzz $t: an input of test/fuzz/corpus/$t fails"
			tail -n 40 "$log"
			failed=1
			continue
		fi
		# 2. A few seconds of fuzzing from a scratch copy of the corpus.
		mkdir -p "$work/corpus-$t" "$work/crash-$t"
		cp "$FUZZ_DIR/corpus/$t"/* "$work/corpus-$t/"
		if ! "$BUILD/fuzz_$t" $(fuzz_args "$t") -max_total_time="${FUZZ_QUICK_SECONDS:-2}" \
			-artifact_prefix="$work/crash-$t/" "$work/corpus-$t" >"$log" 2>&1; then
			echo "fuzz $t: FAILED (a crash; the input is below)"
			tail -n 40 "$log"
			for f in "$work/crash-$t"/*; do
				[ -f "$f" ] && { echo "--- $f (base64)"; base64 "$f"; }
			done
			failed=1
			continue
		fi
		echo "fuzz $t ... ok ($(ls "$FUZZ_DIR/corpus/$t" | wc -l) corpus inputs, $(summary "$log"))"
	done
	return $failed
}

run_long() {
	local t failed=0 log
	for t in $TARGETS; do
		mkdir -p "$BUILD/corpus/$t" "$BUILD/crashes/$t"
		cp -n "$FUZZ_DIR/corpus/$t"/* "$BUILD/corpus/$t/"
		log=$BUILD/$t.log
		echo "=== fuzz $t: ${FUZZ_SECONDS:-300} s (log $log)"
		if nice -n 10 "$BUILD/fuzz_$t" $(fuzz_args "$t") -max_total_time="${FUZZ_SECONDS:-300}" \
			-artifact_prefix="$BUILD/crashes/$t/" "$BUILD/corpus/$t" >"$log" 2>&1; then
			echo "fuzz $t: $(summary "$log"), no crash"
		else
			echo "fuzz $t: CRASH ($(summary "$log"))"
			grep -E 'FUZZ FINDING|ERROR: AddressSanitizer|runtime error|Test unit written' "$log" | head -5
			failed=1
		fi
	done
	return $failed
}

build || { echo "fuzz: build failed" >&2; exit 1; }
case $MODE in
build) ;;
check) run_check ;;
long) run_long ;;
*) echo "usage: $0 check|long|build" >&2; exit 2 ;;
esac

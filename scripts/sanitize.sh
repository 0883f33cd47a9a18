# make test SANITIZE=address (sourced by test.sh, not run): the module is
# built with AddressSanitizer and UndefinedBehaviorSanitizer and loaded into
# the stock server, which is not instrumented itself.
#
# The instrumented library needs the ASan runtime first in the process's
# library list, so the server must start with LD_PRELOAD of libasan (and
# libubsan, which the library needs beside it), and the runtime must
# initialise before other libraries' constructors (scripts/asan_initfirst.c,
# built here, preloaded too).  Only the server gets them: a
# directory of wrappers, $OUTBOX_SANITIZER_BIN, holds `postgres` and
# `pg_ctl` scripts that set LD_PRELOAD and the sanitizer options and exec the
# real program (every other program of the PostgreSQL bindir is a symbolic
# link), and each suite is pointed at it:
#   pg_regress, isolation  EXTRA_REGRESS_OPTS=--bindir=WRAPPERS (their
#                          temporary instance starts WRAPPERS/postgres)
#   TAP                    test/lib/OutboxTest.pm puts WRAPPERS first in
#                          PATH (PostgreSQL::Test::Cluster runs `pg_ctl`)
#   readme, examples       as_cluster_user puts WRAPPERS first in PATH
# The real pg_ctl finds the real postgres beside itself and hands it its
# environment; psql, perl and the test programs run without the runtime.
#
# A backend that trips ASan aborts (abort_on_error=1: the postmaster logs
# "terminated by signal 6" and restarts the cluster); UBSan reports and goes
# on.  A crash-restart may go unnoticed by a test, so sanitize_verdict reads
# every server log the suites leave (pg_regress's and isolation's
# postmaster.log, the TAP nodes' logs, the scratch clusters' logs, which
# stop_scratch_cluster copies to $SANITIZER_DIR/logs) and fails the run when
# any holds a sanitizer report, printing each.  Reports go to the server's
# stderr, its log: the sanitizers' log_path is not honoured in the server's
# processes (the files never appear), so it is not used.  detect_leaks=0:
# the server never frees its memory contexts at exit.

# sanitize_setup: the wrappers and the report directory under $WORK_DIR
# (owned by the cluster user); exports OUTBOX_SANITIZER_BIN and
# EXTRA_REGRESS_OPTS.
sanitize_setup() {
	local asan ubsan name
	asan=$(readlink -f "$(gcc -print-file-name=libasan.so)")
	ubsan=$(readlink -f "$(gcc -print-file-name=libubsan.so)")
	[ -f "$asan" ] && [ -f "$ubsan" ] || { echo "sanitize: libasan or libubsan not found (gcc)"; return 1; }
	SANITIZER_DIR="$WORK_DIR/sanitizer"
	OUTBOX_SANITIZER_BIN="$SANITIZER_DIR/bin"
	rm -rf "$SANITIZER_DIR"
	mkdir -p "$OUTBOX_SANITIZER_BIN" "$SANITIZER_DIR/logs"
	gcc -shared -fPIC -Wl,-z,initfirst -o "$SANITIZER_DIR/asan_initfirst.so" \
		"$SRC_DIR/scripts/asan_initfirst.c" || return 1
	for name in "$PG_BINDIR"/*; do
		ln -s "$name" "$OUTBOX_SANITIZER_BIN/$(basename "$name")"
	done
	for name in postgres pg_ctl; do
		rm -f "$OUTBOX_SANITIZER_BIN/$name"
		cat >"$OUTBOX_SANITIZER_BIN/$name" <<WRAPPER
#!/bin/sh
# scripts/sanitize.sh: the real $name with the sanitizer runtimes preloaded.
LD_PRELOAD="$asan $ubsan $SANITIZER_DIR/asan_initfirst.so\${LD_PRELOAD:+ \$LD_PRELOAD}"
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
UBSAN_OPTIONS="print_stacktrace=1"
export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
exec "$PG_BINDIR/$name" "\$@"
WRAPPER
		chmod 755 "$OUTBOX_SANITIZER_BIN/$name"
	done
	[ -n "${RUN_AS:-}" ] && chown -R "$RUN_AS": "$SANITIZER_DIR"
	# Not the sanitized server with a non-sanitized build, or the reverse.
	if ! nm -D "$("$PG_CONFIG" --pkglibdir)/outbox_saga.so" | grep __asan_init >/dev/null; then
		echo "sanitize: the installed outbox_saga.so is not instrumented"
		return 1
	fi
	EXTRA_REGRESS_OPTS="--bindir=$OUTBOX_SANITIZER_BIN"
	export OUTBOX_SANITIZER_BIN EXTRA_REGRESS_OPTS
	echo "sanitize: ASan+UBSan module; the server logs are checked for reports at the end"
}

# sanitize_verdict: one line; false (and every report printed) when a
# server log of the run holds a sanitizer report.
sanitize_verdict() {
	local logs=() f found=() pat
	pat='^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|runtime error: |^SUMMARY: [A-Za-z]+Sanitizer|Sanitizer:DEADLYSIGNAL'
	for f in "$WORK_DIR"/log/*.log "$WORK_DIR"/output_iso/log/*.log \
		"$WORK_DIR"/tmp_check/log/* "$SANITIZER_DIR"/logs/*; do
		[ -f "$f" ] && logs+=("$f")
	done
	for f in "${logs[@]}"; do
		if grep -qE "$pat" "$f"; then
			found+=("$f")
			echo "--- $f"
			grep -nE -A40 "$pat" "$f" | head -n 120
		fi
	done
	if [ ${#found[@]} -eq 0 ]; then
		echo "sanitizer: clean (ASan+UBSan, ${#logs[@]} server logs, 0 reports)"
		return 0
	fi
	echo "sanitizer: reports in ${#found[@]} of ${#logs[@]} server logs: ${found[*]##*/}"
	return 1
}

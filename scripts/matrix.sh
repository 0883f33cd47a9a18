#!/usr/bin/env bash
# make test-matrix: the suites of `make test` on the other supported majors,
# each in a Debian chroot that ships it: PostgreSQL 17 in Debian 13 (trixie),
# 18 in Debian unstable (sid).  15 is what `make test` covers on the host.
#
# A chroot is made on first use with debootstrap (from the Debian mirror of
# the host's own apt sources), with a policy-rc.d that keeps every service
# from starting, and kept in $OUTBOX_SAGA_CHROOTS (default
# /var/cache/outbox_saga/chroots, outside the checkout); later runs reuse
# it.  A chroot is only kept once its packages are in: a half-made one is
# made again.  For each major the checkout is copied into the chroot and
# scripts/test.sh runs there as root (it installs what is missing with
# scripts/deps.sh, builds with -Werror against that major's pg_config,
# installs, runs the suites as the chroot's postgres user).  proc and /dev
# are mounted only while a chroot is in use and unmounted on every exit,
# failure and interrupt included; processes left in a chroot (a suite that
# timed out) are ended first.  The host's apt configuration is never
# touched: apt options (Acquire::Check-Valid-Until=false, since unstable's
# Release files expire within days and a mirror snapshot can be older) are
# given to the chroot's own apt calls only.  Everything in a chroot runs
# niced.  Two runs on one machine take turns per chroot (a lock file beside
# it): a chroot's mounts and processes belong to one run at a time.  The
# runs do not use the host's PostgreSQL installation, so they do not take
# make test's lock.
#
# Clusters of the suites listen on unix sockets in their own directories
# (no clash with the host's clusters); TCP listeners of the tests (HTTP
# receivers, nats-server, the Kafka mock) take a port that is free at the
# time, in the network the host and the chroots share.
#
# Output: per major the suites' output into $LOG_DIR/pgN.log, one summary
# line per major, then "N passed, N failed" over all majors.  Exit status 0
# only if all passed.  A major is skipped, with a message saying why, only
# where a chroot cannot work (not root, no debootstrap, no mount); the run
# then exits 0 but says so on the line above the totals.
#
#   MAJORS="17 18"        the majors (default both)
#   MATRIX_SUITES="..."   the suites run in a chroot (default below; the
#                         Debian package, the client examples and META.json
#                         do not depend on the server major and run on the
#                         host only)
#   PROVE_TESTS="..."     narrow the TAP files, as for make test
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

MAJORS=${MAJORS:-17 18}
CACHE=${OUTBOX_SAGA_CHROOTS:-/var/cache/outbox_saga/chroots}
MATRIX_SUITES=${MATRIX_SUITES:-symbols regress isolation tap readme buildopts}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/outbox_saga-matrix.XXXXXX)}
mkdir -p "$LOG_DIR"
MAJOR_TIMEOUT=${MAJOR_TIMEOUT:-2400}

# The Debian suite that ships a major, and the apt options its chroot needs.
suite_of() {
	case $1 in
	17) echo trixie ;;
	18) echo sid ;;
	*) return 1 ;;
	esac
}
apt_opts_of() {
	case $1 in
	sid) echo "-o Acquire::Check-Valid-Until=false" ;;
	*) echo "" ;;
	esac
}

# host_mirror: the Debian archive the host's apt sources name (not its
# security archive), else deb.debian.org.
host_mirror() {
	local m
	m=$({
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } print $i }'
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }'
	} | grep -E '^https?://[^ ]*/debian/?$' | head -n 1)
	echo "${m:-http://deb.debian.org/debian}"
}

# Mounts and processes of the chroot in use, undone by cleanup.
ROOT=
mount_root() {
	ROOT=$(realpath "$1")	# as /proc/PID/root reads it
	mount -t proc proc "$ROOT/proc" || return 1
	mount --rbind /dev "$ROOT/dev" || return 1
	# Unmounting the chroot's /dev must not unmount anything of the host's.
	mount --make-rslave "$ROOT/dev" || return 1
	cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}
cleanup_root() {
	[ -n "$ROOT" ] || return 0
	local p pids=() i
	# Processes still running inside (a suite that timed out): ours.
	for i in 1 2 3 4 5; do
		pids=()
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && pids+=("${p#/proc/}")
		done
		[ ${#pids[@]} -eq 0 ] && break
		kill $([ "$i" -ge 3 ] && echo -9) "${pids[@]}" 2>/dev/null
		sleep 1
	done
	mountpoint -q "$ROOT/dev" && { umount -R "$ROOT/dev" || umount -R -l "$ROOT/dev"; }
	mountpoint -q "$ROOT/proc" && { umount "$ROOT/proc" || umount -l "$ROOT/proc"; }
	ROOT=
}
trap cleanup_root EXIT
trap 'exit 130' INT TERM

# in_root CMD...: run CMD in the mounted chroot, niced, with a clean
# environment.
in_root() {
	nice -n 10 chroot "$ROOT" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# ensure_chroot MAJOR: the chroot of MAJOR with its packages, made if
# missing.  Prints the reason and returns 2 where chroots cannot work here.
ensure_chroot() {
	local major=$1 suite dir tmp opts mirror
	suite=$(suite_of "$major") || { echo "no Debian suite known for PostgreSQL $major"; return 2; }
	dir=$CACHE/$suite
	opts=$(apt_opts_of "$suite")
	if [ ! -f "$dir/.outbox_saga-ready" ]; then
		if ! command -v debootstrap >/dev/null; then
			echo "installing debootstrap on the host"
			{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				debootstrap debian-archive-keyring >/dev/null 2>&1 ||
				{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
					--no-install-recommends debootstrap debian-archive-keyring >/dev/null; }; } ||
				{ echo "debootstrap is missing and cannot be installed"; return 2; }
		fi
		mirror=$(host_mirror)
		tmp=$dir.new
		# A half-made chroot of an earlier run: nothing may be mounted in it.
		if [ -d "$tmp" ]; then
			if grep -q " $tmp/" /proc/mounts; then echo "$tmp has mounts left, not removing it"; return 1; fi
			rm -rf "$tmp"
		fi
		mkdir -p "$CACHE"
		echo "making the $suite chroot in $dir from $mirror"
		nice -n 10 debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$LOG_DIR/debootstrap-$suite.log" 2>&1 ||
			{ echo "debootstrap $suite failed (see $LOG_DIR/debootstrap-$suite.log)"; tail -n 5 "$LOG_DIR/debootstrap-$suite.log"; return 1; }
		printf '#!/bin/sh\n# outbox_saga matrix chroot: no service starts\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
		chmod 755 "$tmp/usr/sbin/policy-rc.d"
		mkdir -p "$tmp/build"
		cp "$SRC_DIR/scripts/deps.sh" "$tmp/build/deps.sh"
		mount_root "$tmp" || { cleanup_root; echo "cannot mount proc or /dev in $tmp"; return 2; }
		in_root env PG_MAJOR="$major" SUITES="$MATRIX_SUITES" OUTBOX_SAGA_APT_OPTS="$opts" \
			bash /build/deps.sh >"$LOG_DIR/packages-$suite.log" 2>&1
		local rc=$?
		cleanup_root
		[ $rc -eq 0 ] || { echo "installing packages in $suite failed (see $LOG_DIR/packages-$suite.log)"; tail -n 5 "$LOG_DIR/packages-$suite.log"; return 1; }
		touch "$tmp/.outbox_saga-ready"
		mv "$tmp" "$dir"
	fi
	CHROOT_DIR=$dir
	APT_OPTS=$opts
}

# run_major MAJOR: the suites in MAJOR's chroot; sets MAJOR_PASSED,
# MAJOR_FAILED, MAJOR_LINE.
run_major() {
	local major=$1 log=$LOG_DIR/pg$1.log rc counts version start=$SECONDS
	MAJOR_PASSED=0
	MAJOR_FAILED=0
	: >"$log"
	# One run at a time per chroot (another make test-matrix waits here).
	mkdir -p "$CACHE"
	exec 9>"$CACHE/pg$major.lock"
	if ! flock -n 9; then
		echo "waiting for another make test-matrix using the chroot of $major"
		flock 9
	fi
	ensure_chroot "$major" >>"$log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		if [ $rc -eq 2 ]; then
			MAJOR_LINE="PostgreSQL $major: SKIPPED: $(tail -n 1 "$log")"
			SKIPPED+=("$major")
		else
			MAJOR_LINE="PostgreSQL $major: chroot FAILED: $(tail -n 1 "$log")"
			MAJOR_FAILED=1
		fi
		return
	fi
	mount_root "$CHROOT_DIR" >>"$log" 2>&1 || {
		cleanup_root
		MAJOR_LINE="PostgreSQL $major: SKIPPED: cannot mount proc or /dev in $CHROOT_DIR"
		SKIPPED+=("$major")
		return
	}
	rm -rf "$CHROOT_DIR/build/outbox_saga"
	copy_tree "$CHROOT_DIR/build/outbox_saga"
	rm -f "$CHROOT_DIR"/build/outbox_saga/outbox_saga--"$(sed -n 's/^EXTVERSION *= *//p' "$SRC_DIR/Makefile")".sql
	in_root timeout -k 30 "$MAJOR_TIMEOUT" env \
		PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" \
		SUITES="$MATRIX_SUITES" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} \
		OUTBOX_SAGA_APT_OPTS="$APT_OPTS" \
		bash /build/outbox_saga/scripts/test.sh >>"$log" 2>&1
	rc=$?
	version=$(in_root "/usr/lib/postgresql/$major/bin/pg_config" --version 2>/dev/null)
	cleanup_root
	exec 9>&-
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	if [ -n "$counts" ]; then
		MAJOR_PASSED=${counts%% passed*}
		MAJOR_FAILED=${counts#*passed, }
		MAJOR_FAILED=${MAJOR_FAILED%% failed}
	fi
	# test.sh failed without counting a failure (killed, timed out).
	if [ $rc -ne 0 ] && [ "$MAJOR_FAILED" -eq 0 ]; then MAJOR_FAILED=1; fi
	MAJOR_LINE="PostgreSQL $major (${version:-?}, Debian $(suite_of "$major")): $MAJOR_PASSED passed, $MAJOR_FAILED failed in $((SECONDS - start)) s"
}

SKIPPED=()
total_passed=0
total_failed=0
lines=()
if [ "$(id -u)" -ne 0 ]; then
	for major in $MAJORS; do lines+=("PostgreSQL $major: SKIPPED: the chroots need root (run make test-matrix as root)"); SKIPPED+=("$major"); done
else
	echo "matrix logs in $LOG_DIR"
	for major in $MAJORS; do
		echo "=== PostgreSQL $major"
		run_major "$major"
		[ "$MAJOR_FAILED" -ne 0 ] && tail -n 120 "$LOG_DIR/pg$major.log"
		echo "$MAJOR_LINE"
		lines+=("$MAJOR_LINE")
		total_passed=$((total_passed + MAJOR_PASSED))
		total_failed=$((total_failed + MAJOR_FAILED))
	done
fi
echo "=== matrix"
printf '%s\n' "${lines[@]}"
[ ${#SKIPPED[@]} -gt 0 ] && echo "majors skipped: ${SKIPPED[*]} (see above why; they were not tested)"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]

#!/usr/bin/env bash
# Install the Debian packages that building, testing, the demo and the
# benchmark need, when they are missing: on Debian 12 for PostgreSQL 15 (the
# host of `make test`), and in the Debian 13 / unstable chroots of
# `make test-matrix` for 17 and 18.  The major comes from PG_MAJOR, else from
# a PG_CONFIG of Debian's layout (/usr/lib/postgresql/N/bin/pg_config), else
# 15.  When SUITES (see scripts/test.sh) is set and leaves out the Debian
# package or the client examples, their packages are not needed.  As root it
# runs apt-get itself (one `apt-get update` first, with the options of
# OUTBOX_SAGA_APT_OPTS, which the matrix sets for its own chroots only); as
# another user it names what is missing and fails.  With OUTBOX_SAGA_BENCH
# set (make bench) it adds the benchmark's peers (PgQ).  Idempotent: with
# everything present it does nothing.
set -euo pipefail

major=${PG_MAJOR:-}
if [ -z "$major" ] && [[ "${PG_CONFIG:-}" =~ /usr/lib/postgresql/([0-9]+)/bin/pg_config$ ]]; then
	major=${BASH_REMATCH[1]}
fi
if [ -z "$major" ] && [ -n "${PG_CONFIG:-}" ] && [ -x "$PG_CONFIG" ]; then
	# Any other layout (a relocated copy, a source build): ask pg_config.
	major=$("$PG_CONFIG" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
fi
major=${major:-15}
[[ "$major" =~ ^[0-9]+$ ]] || { echo "outbox_saga: PG_MAJOR must be a number, not '$major'" >&2; exit 1; }

# wants SUITE: whether the run includes SUITE (all suites when SUITES is unset).
wants() { [ -z "${SUITES:-}" ] || [[ " $SUITES " == *" $1 "* ]]; }

packages=(
	build-essential          # gcc, make
	"postgresql-$major"      # server, pg_regress, isolation tester, pgbench
	"postgresql-server-dev-$major" # PGXS, headers, PostgreSQL::Test::Cluster
	libipc-run-perl          # TAP tests
	libcurl4-openssl-dev     # http destinations
	libssl-dev               # HMAC signatures
	librdkafka-dev           # kafka destinations (and the mock cluster of the tests)
	libnats-dev              # nats destinations
	nats-server              # NATS JetStream server for the tests
	iproute2                 # ip: veth pairs and links down/up of the network fault tests
	util-linux               # unshare, nsenter: their (unprivileged) network namespaces
	perl
	procps                   # pkill: the demo and the benchmark stop what they started
	python3                  # test helpers (HTTP receiver)
	rsync
)
if wants fuzz; then
	# the fuzz targets (suite "fuzz", make fuzz; on the host only: Debian 12's
	# clang 14 and its runtimes, which later releases name differently)
	packages+=(
		clang                    # the compiler of the fuzz targets
		libclang-rt-14-dev       # libFuzzer, ASan and UBSan runtimes of clang 14
	)
fi
if [ -n "${OUTBOX_SAGA_BENCH:-}" ]; then
	# make bench only (test/bench/bench.sh sets OUTBOX_SAGA_BENCH): PgQ, the
	# peer of the drain, latency and end-to-end sections
	packages+=(
		"postgresql-$major-pgq3" # PgQ: the extension and its C triggers
		pgqd                     # PgQ's ticker daemon
		libpq-dev                # the benchmark's client consumer (test/bench/consumer.c)
		valgrind                 # callgrind: the instructions section
	)
fi
if wants tap; then
	# test/t/110_prometheus.pl: the exporter scraped over loopback with
	# contrib/prometheus/queries.yaml, and promtool (from prometheus) checks
	# and unit-tests contrib/prometheus/alerts.yaml.  Their daemons are not
	# wanted: see stop_daemons below.
	packages+=(
		prometheus-postgres-exporter
		prometheus               # promtool
	)
fi
if wants package; then
	packages+=(
		debhelper                # the Debian package (dh --with pgxs)
		dpkg-dev                 # dpkg-buildpackage, dpkg-parsechangelog
		fakeroot                 # dpkg-buildpackage as a user other than root
		postgresql-server-dev-all # pg_buildext, pg_virtualenv, dh pgxs sequence
	)
fi
if wants bench; then
	# make bench: PgQ, a peer the producer section compares capture with
	# (its C trigger pgq.jsontriga)
	packages+=(
		"postgresql-$major-pgq3"
	)
fi
if wants examples; then
	# the client examples (examples/, suite "examples" of make test)
	packages+=(
		python3-psycopg2         # Python example
		golang-go                # Go example
		golang-github-lib-pq-dev # Go example: lib/pq
	)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

# Node and npm for the Node example and the pull consumers of
# test/t/100_pull_consumers.pl: Debian's, unless a node with npm is
# installed already (for example NodeSource's nodejs, which bundles npm and
# conflicts with Debian's npm package).
if { wants examples || wants tap; } && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
	for p in nodejs npm; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "outbox_saga: missing Debian packages: ${missing[*]}" >&2
	echo "outbox_saga: run as root, or: apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "outbox_saga: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # options are words
apt-get ${OUTBOX_SAGA_APT_OPTS:-} update -qq
# shellcheck disable=SC2086
apt-get ${OUTBOX_SAGA_APT_OPTS:-} install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The packages of the Prometheus test start their services on install where
# an init system runs (prometheus on :9090, the exporter on :9187): the tests
# start their own on other ports, so stop and disable what was just installed.
for p in "${missing[@]}"; do
	case $p in
	prometheus | prometheus-postgres-exporter)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$p" >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$p" ]; then
			"/etc/init.d/$p" stop >/dev/null 2>&1 || true
			update-rc.d "$p" disable >/dev/null 2>&1 || true
		fi
		;;
	esac
done

#!/usr/bin/env bash
# Install the Debian 12 packages that building, testing, the demo and the
# benchmark need, when they are missing.  As root it runs apt-get itself
# (one `apt-get update` first); as another user it names what is missing and
# fails.  Idempotent: with everything present it does nothing.
set -euo pipefail

packages=(
	build-essential          # gcc, make
	debhelper                # the Debian package (dh --with pgxs)
	dpkg-dev                 # dpkg-buildpackage, dpkg-parsechangelog
	fakeroot                 # dpkg-buildpackage as a user other than root
	postgresql-server-dev-all # pg_buildext, pg_virtualenv, dh pgxs sequence
	postgresql-15            # server, pg_regress, isolation tester, pgbench
	postgresql-server-dev-15 # PGXS, headers, PostgreSQL::Test::Cluster
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
	# the client examples (examples/, suite "examples" of make test)
	python3-psycopg2         # Python example
	golang-go                # Go example
	golang-github-lib-pq-dev # Go example: lib/pq
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

# Node and npm for the Node example: Debian's, unless a node with npm is
# installed already (for example NodeSource's nodejs, which bundles npm and
# conflicts with Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

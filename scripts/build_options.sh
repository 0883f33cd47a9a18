#!/usr/bin/env bash
# make test's "buildopts" suite: the module built with WITH_KAFKA=0
# WITH_NATS=0, in a scratch copy of the tree (the shared installation is
# not touched), needs neither librdkafka nor cnats (readelf, ldd, nm) and
# still exports every C symbol the released scripts name.  Installed into a
# scratch DESTDIR and loaded from there by a throwaway cluster
# (dynamic_library_path, and extension_destdir, Debian's way to load an
# extension that is not installed, or extension_control_path from
# PostgreSQL 18), it passes `make installcheck` (the
# pg_regress suite without broker_config), and create_destination of kind
# kafka or nats fails with SQLSTATE 0A000 saying what the build lacks.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

fail() { echo "buildopts: $*"; exit 1; }

BUILD_ROOT=$(mktemp -d /tmp/outbox_saga-buildopts.XXXXXX)
cleanup() { stop_scratch_cluster; [ -n "${KEEP_WORKDIR:-}" ] || rm -rf "$BUILD_ROOT"; }
trap cleanup EXIT
trap 'exit 1' INT TERM	# make test's timeout: still stop the cluster
chmod 755 "$BUILD_ROOT"		# the cluster user loads the library from here
tree="$BUILD_ROOT/src"
copy_tree "$tree"
opts=(PG_CONFIG="$PG_CONFIG" WITH_KAFKA=0 WITH_NATS=0)

make -s -C "$tree" -j2 WERROR=1 "${opts[@]}" >"$BUILD_ROOT/build.log" 2>&1 ||
	{ cat "$BUILD_ROOT/build.log"; fail "the build with WITH_KAFKA=0 WITH_NATS=0 failed"; }
lib="$tree/outbox_saga.so"

status=0
needed=$(readelf -d "$lib" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p')
echo "buildopts: NEEDED: $(echo $needed)"
grep -qE 'rdkafka|nats' <<<"$needed" && { echo "buildopts: the library needs librdkafka or cnats"; status=1; }
ldd "$lib" | grep -E 'rdkafka|nats' && { echo "buildopts: ldd resolves librdkafka or cnats"; status=1; }
nm -D --undefined-only "$lib" | grep -E ' (rd_kafka_|nats|js_)' &&
	{ echo "buildopts: the library references librdkafka or cnats symbols"; status=1; }
bash "$tree/scripts/check_symbols.sh" || status=1
[ $status -eq 0 ] || fail "the build still depends on Kafka or NATS"

# Into a DESTDIR, loaded from there.
destdir="$BUILD_ROOT/dest"
make -s -C "$tree" "${opts[@]}" install DESTDIR="$destdir" >/dev/null ||
	fail "make install DESTDIR=... failed"
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
# Debian's extension_destdir (its patch up to 17), else the
# extension_control_path of PostgreSQL 18 (which appends "extension").
if grep -q extension_destdir "$sharedir/postgresql.conf.sample"; then
	control="extension_destdir = '$destdir'"
elif grep -q extension_control_path "$sharedir/postgresql.conf.sample"; then
	control="extension_control_path = '$destdir$sharedir:\$system'"
else
	fail "this PostgreSQL has neither extension_destdir nor extension_control_path"
fi
start_scratch_cluster buildopts "$control
dynamic_library_path = '$destdir$pkglibdir:\$libdir'" || fail "the scratch cluster did not start"

# The suite as Debian's pg_buildext runs it: make installcheck against a
# running server.  pg_regress writes its results into the copy.
chown -R "${RUN_AS:-$(id -u)}" "$tree" 2>/dev/null || true
as_cluster_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
	make -C "$tree" -s "${opts[@]}" installcheck >"$BUILD_ROOT/installcheck.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
	cat "$BUILD_ROOT/installcheck.log"
	[ -s "$tree/regression.diffs" ] && cat "$tree/regression.diffs"
	fail "make installcheck of the build without Kafka and NATS failed"
fi
echo "buildopts: make installcheck:$(grep -E 'tests passed' "$BUILD_ROOT/installcheck.log")"

psql_q() { as_cluster_user psql -X -v ON_ERROR_STOP=1 -U postgres -d postgres "$@"; }
psql_q -qc "CREATE EXTENSION outbox_saga" || fail "CREATE EXTENSION failed"
# The library loaded is the scratch build: the shared one has Kafka.
for kind in kafka nats; do
	out=$(psql_q -At 2>&1 <<SQL
\set VERBOSITY verbose
SELECT outbox.create_destination('d_$kind', '$kind', '{"brokers": "localhost:9", "topic": "t", "url": "nats://localhost:9", "subject": "s"}');
SQL
)
	echo "buildopts: create_destination of kind $kind: $(head -n 3 <<<"$out" | tr '\n' ' ')"
	grep -q "ERROR:  0A000: destination kind \"$kind\" is not supported by this build of outbox_saga" <<<"$out" ||
		{ echo "buildopts: kind $kind did not fail with 0A000"; status=1; }
	grep -q "^DETAIL:  The library was built with WITH_$(tr a-z A-Z <<<"$kind")=0" <<<"$out" ||
		{ echo "buildopts: kind $kind: no detail naming the build option"; status=1; }
done
[ "$(psql_q -Atc "SELECT count(*) FROM outbox.destination")" = 0 ] ||
	{ echo "buildopts: a refused destination was stored"; status=1; }
psql_q -Atc "SELECT outbox.create_destination('d_notify', 'notify', '{\"channel\": \"c\"}')" >/dev/null ||
	{ echo "buildopts: a notify destination cannot be created"; status=1; }

# A kafka destination already in the database (as after a restore of a
# dump of a full build): its batches fail with the same message, backing
# off, and its event waits (not delivered, not dead).
psql_q -q >/dev/null <<'SQL' || { echo "buildopts: setting up a kafka destination failed"; status=1; }
SELECT outbox.subscribe('d_notify', 't');
UPDATE outbox.destination
   SET kind = 'kafka', config = '{"brokers": "localhost:9", "topic": "t"}'
 WHERE name = 'd_notify';
SELECT outbox.emit('t', 'e', '{}');
SQL
q="SELECT last_error FROM outbox.stats WHERE destination = 'd_notify'"
for _ in $(seq 1 150); do
	err=$(psql_q -Atc "$q")
	[ -n "$err" ] && break
	sleep 0.2
done
echo "buildopts: the kafka destination's last_error: $err"
grep -q 'destination kind "kafka" is not supported by this build' <<<"$err" ||
	{ echo "buildopts: the kafka destination did not fail for the missing kind"; status=1; }
row=$(psql_q -Atc "SELECT delivered_total, dead, pending > 0 FROM outbox.stats WHERE destination = 'd_notify'")
[ "$row" = "0|0|t" ] || { echo "buildopts: the kafka destination's event: $row (want 0|0|t)"; status=1; }

[ $status -eq 0 ] && echo "buildopts: the build without Kafka and NATS works and refuses both kinds"
exit $status

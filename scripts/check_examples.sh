#!/usr/bin/env bash
# The client examples of examples/, run against a throwaway cluster that
# preloads the library (suite "examples" of `make test`): a table
# public.orders, an application role with exactly the grants the README's
# "Grants for your application role" names, and an http destination whose
# receiver is examples/node/webhook_consumer.js.  The Node, Python and Go
# programs each commit an order and its event as that role; the consumer
# must verify all three signed webhooks (their webhook-id being the event ids
# the programs printed) and reject a forged one.  The programs are built in a
# scratch copy (npm ci from the committed package-lock.json, go build against
# Debian's lib/pq): the checkout is left as it is.  Exit status 0 if all hold.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

fail=0
failed() { echo "examples: FAILED: $*"; fail=1; }
PY=/usr/bin/python3     # Debian's, where python3-psycopg2 installs
LIBPQ_GO=/usr/share/gocode/src/github.com/lib/pq
for tool in node npm go; do
	command -v "$tool" >/dev/null || { echo "examples: $tool is missing (scripts/deps.sh installs it)"; exit 1; }
done
"$PY" -c 'import psycopg2' 2>/dev/null || { echo "examples: python3-psycopg2 is missing"; exit 1; }
[ -d "$LIBPQ_GO" ] || { echo "examples: golang-github-lib-pq-dev is missing"; exit 1; }

T=$(mktemp -d /tmp/outbox_saga-examples.XXXXXX)
CONSUMER=
cleanup() {
	if [ -n "$CONSUMER" ]; then
		kill "$CONSUMER" 2>/dev/null
		wait "$CONSUMER" 2>/dev/null
	fi
	stop_scratch_cluster
	rm -rf "$T"
}
trap cleanup EXIT

# Build the programs in a scratch copy.
cp -r "$SRC_DIR/examples/node" "$SRC_DIR/examples/python" "$SRC_DIR/examples/go" "$T/"
rm -rf "$T/node/node_modules"
(cd "$T/node" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error >"$T/npm.log" 2>&1) ||
	{ cat "$T/npm.log"; echo "examples: npm ci failed"; exit 1; }
(cd "$T/go" && export GOFLAGS=-mod=mod GOPROXY=off &&
	go mod edit -replace "github.com/lib/pq=$LIBPQ_GO" && go build -o emit . ) ||
	{ echo "examples: go build failed"; exit 1; }

start_scratch_cluster examples || exit 1
export PGUSER=postgres PGDATABASE=shop
psql -X -q -d postgres -c 'CREATE DATABASE shop' || exit 1
SECRET=whsec_$(head -c 32 /dev/urandom | base64)

# The consumer, on any free port.
WEBHOOK_SECRET=$SECRET node "$T/node/webhook_consumer.js" 0 >"$T/consumer.log" 2>&1 &
CONSUMER=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^listening on //p' "$T/consumer.log")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || { cat "$T/consumer.log"; echo "examples: the consumer did not start"; exit 1; }

psql -X -q -v ON_ERROR_STOP=1 -v url="http://127.0.0.1:$port/hooks" -v secret="$SECRET" <<'SQL' || exit 1
CREATE EXTENSION outbox_saga;
CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            customer text NOT NULL, total numeric(12,2) NOT NULL);
SELECT outbox.create_destination('order_webhooks', 'http',
       jsonb_build_object('url', :'url', 'secret', :'secret')) \gset
SELECT outbox.subscribe('order_webhooks', 'orders') \gset
-- The application role: its table, and the grant the README names.
CREATE ROLE app LOGIN;
GRANT SELECT, INSERT ON public.orders TO app;   -- SELECT for RETURNING id
GRANT EXECUTE ON FUNCTION outbox.emit(text, text, jsonb, text, jsonb, timestamptz) TO app;
SQL

# Each program commits an order and its event as the application role.
ids=()
run() {
	local name=$1 out
	shift
	if out=$(PGUSER=app "$@" 2>&1) &&
		[[ $out =~ ^$name:\ order\ [0-9]+\ committed\ with\ event\ ([0-9a-f-]{36})$ ]]; then
		echo "$out"
		ids+=("${BASH_REMATCH[1]} $name")
	else
		failed "$name printed: $out"
	fi
}
run node node "$T/node/emit.js" alice 42.00
run python "$PY" "$T/python/emit.py" bob 17.50
run go "$T/go/emit" carol 99.90

ok=$(psql -X -At -c "SELECT outbox.wait_delivered('60 seconds', 'order_webhooks')")
[ "$ok" = t ] || failed "wait_delivered: '$ok'"

# Every event arrived, signed, and the consumer verified it.
for entry in "${ids[@]}"; do
	read -r id name <<<"$entry"
	grep -q "^verified $id order.created .*\"client\":\"$name\"" "$T/consumer.log" ||
		failed "the consumer did not verify the event $id of $name"
done
# A forged request is rejected.
code=$("$PY" - "$port" <<'PY'
import sys, time, urllib.request, urllib.error
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/hooks", data=b'{"type":"order.created","data":{}}',
    headers={"webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())),
             "webhook-signature": "v1,Zm9yZ2Vk", "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
[ "$code" = 400 ] || failed "a forged webhook was answered $code"
grep -q '^rejected: No matching signature' "$T/consumer.log" || failed "the consumer did not report the forged webhook"

echo "--- consumer output"
cat "$T/consumer.log"
if [ $fail -ne 0 ]; then
	exit 1
fi
echo "examples: node, python and go emitted; the node consumer verified every webhook"

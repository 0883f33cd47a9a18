#!/usr/bin/env bash
# make demo: a throwaway cluster with outbox_saga preloaded and a worked
# example (scripts/demo.sql) printed statement by statement.  The cluster
# lives in a temporary directory and is stopped and removed at the end.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

bash "$SRC_DIR/scripts/deps.sh"
build_and_install
RECEIVER=
cleanup() {
	# As root the receiver runs under runuser inside a subshell: stop every
	# process of it by its command line, which names this demo's own
	# scratch directory, then the subshell.
	if [ -n "$RECEIVER" ]; then
		pkill -TERM -f "webhook_receiver.py --log $SCRATCH/" 2>/dev/null || true
		kill "$RECEIVER" 2>/dev/null || true
		wait "$RECEIVER" 2>/dev/null || true
		# runuser closes its session after the receiver has gone: wait (at
		# most 5 s) until nothing of it is left.
		for _ in $(seq 50); do
			pgrep -f "webhook_receiver.py --log $SCRATCH/" >/dev/null || break
			sleep 0.1
		done
	fi
	stop_scratch_cluster
}
trap cleanup EXIT
start_scratch_cluster demo
echo "outbox_saga demo: a throwaway cluster in $SCRATCH"

# A webhook receiver on 127.0.0.1 that checks Standard Webhooks signatures.
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
as_cluster_user python3 "$SRC_DIR/test/lib/webhook_receiver.py" --log "$SCRATCH/webhooks.jsonl" \
	--port-file "$SCRATCH/port" --secret "$SECRET" --lifetime 600 >/dev/null 2>&1 &
RECEIVER=$!
for _ in $(seq 100); do [ -s "$SCRATCH/port" ] && break; sleep 0.05; done
echo "outbox_saga demo: a webhook receiver listens on 127.0.0.1:$(cat "$SCRATCH/port")"
echo
as_cluster_user psql -X -q -v ON_ERROR_STOP=1 --echo-all -U postgres \
	-v port="$(cat "$SCRATCH/port")" -v secret="$SECRET" \
	-h "$PGHOST" -p "$PGPORT" -d postgres -f "$SRC_DIR/scripts/demo.sql"
echo
echo "-- The last request the webhook receiver got:"
tail -n 1 "$SCRATCH/webhooks.jsonl" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(r["method"], r["path"], "- signature valid:", r["signature_valid"])
print("webhook-id:", {k.lower(): v for k, v in r["headers"].items()}.get("webhook-id"))
print(json.dumps(json.loads(r["body"]), indent=2))'
echo
echo "outbox_saga demo: done; the cluster is stopped and removed."

#!/usr/bin/env bash
# make demo: a throwaway cluster with outbox_saga preloaded and a worked
# example (scripts/demo.sql) printed statement by statement.  The cluster
# lives in a temporary directory and is stopped and removed at the end,
# together with every process the demo started.
#
# It works from any checkout the caller can read.  As root, the cluster and
# the webhook receiver run as the unprivileged cluster user, who may not be
# able to read the checkout (root's home directory is mode 700): like make
# test, the demo then works in a copy of the tree owned by that user
# (make_workdir) and runs everything from there.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

bash "$SRC_DIR/scripts/deps.sh"
build_and_install
make_workdir demo
# Nothing below runs in a directory the cluster user cannot enter.
cd "$WORK_DIR"

RECEIVER=
cleanup() {
	# The receiver is this shell's own child (setpriv execs it, no wrapper
	# process in between): stop it by its process id.
	if [ -n "$RECEIVER" ]; then
		kill -TERM "$RECEIVER" 2>/dev/null || true
		wait "$RECEIVER" 2>/dev/null || true
	fi
	stop_scratch_cluster
	cd /
	if [ -n "${RUN_AS:-}" ]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT
start_scratch_cluster demo
echo "outbox_saga demo: a throwaway cluster in $SCRATCH"

# A webhook receiver on 127.0.0.1 that checks Standard Webhooks signatures,
# run as the cluster user.
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
receiver=(/usr/bin/python3 "$WORK_DIR/test/lib/webhook_receiver.py" --log "$SCRATCH/webhooks.jsonl"
	--port-file "$SCRATCH/port" --secret "$SECRET" --lifetime 600)
if [ -n "${RUN_AS:-}" ]; then
	setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "${receiver[@]}" >/dev/null 2>&1 &
else
	"${receiver[@]}" >/dev/null 2>&1 &
fi
RECEIVER=$!
for _ in $(seq 100); do [ -s "$SCRATCH/port" ] && break; sleep 0.05; done
[ -s "$SCRATCH/port" ] || { echo "outbox_saga demo: the webhook receiver did not start" >&2; exit 1; }
echo "outbox_saga demo: a webhook receiver listens on 127.0.0.1:$(cat "$SCRATCH/port")"
echo
as_cluster_user psql -X -q -v ON_ERROR_STOP=1 --echo-all -U postgres \
	-v port="$(cat "$SCRATCH/port")" -v secret="$SECRET" \
	-h "$PGHOST" -p "$PGPORT" -d postgres -f "$WORK_DIR/scripts/demo.sql"
echo
echo "-- The last request the webhook receiver got:"
tail -n 1 "$SCRATCH/webhooks.jsonl" | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(r["method"], r["path"], "- signature valid:", r["signature_valid"])
print("webhook-id:", {k.lower(): v for k, v in r["headers"].items()}.get("webhook-id"))
print(json.dumps(json.loads(r["body"]), indent=2))'
echo
cleanup
trap - EXIT
echo "outbox_saga demo: done; the cluster is stopped and removed, the receiver stopped."

#!/usr/bin/env bash
# make demo: a throwaway cluster with outbox_saga preloaded and a worked
# example (scripts/demo.sql) printed statement by statement.  The cluster
# lives in a temporary directory and is stopped and removed at the end.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

bash "$SRC_DIR/scripts/deps.sh"
build_and_install
trap stop_scratch_cluster EXIT
start_scratch_cluster demo
echo "outbox_saga demo: a throwaway cluster in $SCRATCH"
echo
as_cluster_user psql -X -q -v ON_ERROR_STOP=1 --echo-all -U postgres \
	-h "$PGHOST" -p "$PGPORT" -d postgres -f "$SRC_DIR/scripts/demo.sql"
echo
echo "outbox_saga demo: done; the cluster is stopped and removed."

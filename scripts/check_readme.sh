#!/usr/bin/env bash
# The README's "Getting started", run as a reader would paste it: the ```sql
# blocks between <!-- getting-started:begin --> and <!-- getting-started:end -->
# go, in order and unchanged, through psql into a fresh database of a
# throwaway cluster that preloads the library; the output must contain the
# ```text block that follows them (trailing blanks aside), and the handler's
# table must hold the deliveries it promises.  Run by `make test` (suite
# "readme") against the installed build; exit status 0 if all holds.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

section=$(sed -n '/<!-- getting-started:begin -->/,/<!-- getting-started:end -->/p' "$SRC_DIR/README.md")
sql=$(printf '%s\n' "$section" | awk '/^```sql/ {f = 1; next} /^```/ {f = 0} f')
expected=$(printf '%s\n' "$section" | awk '/^```text/ {f = 1; next} /^```/ {f = 0} f' | sed 's/[[:space:]]*$//')
if [ -z "$sql" ] || [ -z "$expected" ]; then
	echo "readme: no Getting started SQL or expected output between the markers"
	exit 1
fi

trap stop_scratch_cluster EXIT
start_scratch_cluster readme || exit 1
psql_() { psql -X -U postgres -h "$PGHOST" -p "$PGPORT" "$@"; }
psql_ -q -d postgres -c 'CREATE DATABASE getting_started' || exit 1

out=$(printf '%s\n' "$sql" | psql_ -d getting_started -v ON_ERROR_STOP=1 2>&1)
rc=$?
fail=0
if [ $rc -ne 0 ]; then
	echo "readme: psql failed ($rc) on the Getting started SQL:"
	fail=1
fi
# The expected block, line for line, somewhere in the output.
if ! printf '%s\n' "$out" | sed 's/[[:space:]]*$//' |
	python3 -c 'import sys; out = sys.stdin.read(); sys.exit(0 if sys.argv[1] + "\n" in out else 1)' \
		"$expected"; then
	echo "readme: the output does not show what the README promises:"
	printf '%s\n' "$expected"
	fail=1
fi
# The deliveries themselves, independently of how psql prints them.
got=$(psql_ -d getting_started -XAtc \
	"SELECT string_agg(event_type, ',' ORDER BY event_type) FROM public.order_log")
if [ "$got" != "order.paid,orders.inserted,orders.updated" ]; then
	echo "readme: public.order_log holds '$got'"
	fail=1
fi
if [ $fail -ne 0 ]; then
	echo "--- psql output"
	printf '%s\n' "$out"
	exit 1
fi
echo "readme: Getting started delivers what it promises"

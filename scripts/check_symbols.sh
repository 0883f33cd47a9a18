#!/usr/bin/env bash
# Every C symbol that an extension script names (AS 'MODULE_PATHNAME',
# 'symbol') must be exported by the built library: a database still on an
# older release loads the new library, so no symbol a released or upgrade
# script names may ever be removed.  Prints one line per missing symbol and
# exits 1 if there is any.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
lib="$SRC_DIR/outbox_saga.so"
[ -f "$lib" ] || { echo "check_symbols: $lib not built"; exit 1; }
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort -u)
missing=0
checked=0
for script in "$SRC_DIR"/outbox_saga--*.sql; do
	for sym in $(grep -oE "'MODULE_PATHNAME', *'[A-Za-z0-9_]+'" "$script" |
		sed -E "s/.*'([A-Za-z0-9_]+)'$/\1/" | sort -u); do
		checked=$((checked + 1))
		if ! grep -qx "$sym" <<<"$exported"; then
			echo "check_symbols: $(basename "$script") names $sym, which outbox_saga.so does not export"
			missing=$((missing + 1))
		fi
	done
done
[ "$checked" -gt 0 ] || { echo "check_symbols: no script names a symbol"; exit 1; }
echo "check_symbols: $checked symbol references checked, $missing missing"
[ "$missing" -eq 0 ]

#!/usr/bin/env bash
# make test's "package" suite: `dpkg-buildpackage -us -uc` of a copy of the
# tree in a scratch directory (the checkout stays as it is), which builds
# the source package and postgresql-<v>-outbox-saga for every version of
# debian/pgversions the host supports, and runs `make installcheck` (the
# pg_regress suite) against the built package in pg_virtualenv, as
# debian/rules says.  Then it checks the .deb of every version: the library,
# the control file, the full script of the version being built, and every
# released and upgrade script of the tree, byte for byte.
#
# DEB_BUILD_OPTIONS=nocheck in the environment skips the installcheck.
# Exits 0 if the package is good; prints the build log's tail otherwise.
set -uo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC_DIR/scripts/common.sh"

fail() { echo "package: $*"; exit 1; }

version=$(dpkg-parsechangelog -l "$SRC_DIR/debian/changelog" -S Version) || fail "cannot read debian/changelog"
extversion=$(sed -nE 's/^EXTVERSION *= *([^ ]+)$/\1/p' "$SRC_DIR/Makefile")

BUILD_ROOT=$(mktemp -d /tmp/outbox_saga-package.XXXXXX)
[ -n "${KEEP_WORKDIR:-}" ] && echo "package: built in $BUILD_ROOT" || trap 'rm -rf "$BUILD_ROOT"' EXIT
# pg_virtualenv's cluster runs as postgres and loads the built files.
chmod 755 "$BUILD_ROOT"
tree="$BUILD_ROOT/outbox-saga-${version%%-*}"
copy_tree "$tree"

log="$BUILD_ROOT/build.log"
start=$(date +%s)
# The throwaway cluster must not be pointed at an existing server.
if ! (cd "$tree" && unset PGHOST PGPORT PGDATABASE PGUSER PGDATA PGSERVICE &&
	timeout 600 dpkg-buildpackage -us -uc) >"$log" 2>&1; then
	tail -n 100 "$log"
	fail "dpkg-buildpackage failed (log above)"
fi
echo "package: dpkg-buildpackage -us -uc took $(( $(date +%s) - start )) s"

case " ${DEB_BUILD_OPTIONS:-} " in
*" nocheck "*) echo "package: installcheck skipped (DEB_BUILD_OPTIONS=nocheck)" ;;
*)
	grep -E '^ *All [0-9]+ tests passed' "$log" || {
		tail -n 100 "$log"
		fail "the build ran no passing installcheck"
	}
	;;
esac

[ -f "$BUILD_ROOT/outbox-saga_${version}.dsc" ] || fail "no source package outbox-saga_${version}.dsc"

pgversions=$(cd "$tree" && pg_buildext supported-versions) || fail "pg_buildext supported-versions failed"
[ -n "$pgversions" ] || fail "no supported PostgreSQL version"
status=0
for v in $pgversions; do
	deb=$(ls "$BUILD_ROOT"/postgresql-"$v"-outbox-saga_"$version"_*.deb 2>/dev/null | head -n 1)
	[ -n "$deb" ] || { echo "package: no postgresql-$v-outbox-saga .deb"; status=1; continue; }
	files=$(dpkg-deb -c "$deb" | awk '{print $6}')
	want="./usr/lib/postgresql/$v/lib/outbox_saga.so
./usr/share/postgresql/$v/extension/outbox_saga.control
./usr/share/postgresql/$v/extension/outbox_saga--$extversion.sql"
	for f in "$SRC_DIR"/outbox_saga--*.sql; do
		want+=$'\n'"./usr/share/postgresql/$v/extension/$(basename "$f")"
	done
	while read -r f; do
		grep -qxF "$f" <<<"$files" || { echo "package: $(basename "$deb") lacks $f"; status=1; }
	done <<<"$want"
	# The packaged released and upgrade scripts are the tree's, byte for byte.
	unpacked="$BUILD_ROOT/unpacked-$v"
	dpkg-deb -x "$deb" "$unpacked"
	for f in "$SRC_DIR"/outbox_saga--*.sql; do
		p="$unpacked/usr/share/postgresql/$v/extension/$(basename "$f")"
		[ -f "$p" ] && ! cmp -s "$f" "$p" && { echo "package: $(basename "$f") differs from the tree's"; status=1; }
	done
	dpkg-deb -f "$deb" Depends | grep -q "postgresql-$v" ||
		{ echo "package: $(basename "$deb") does not depend on postgresql-$v"; status=1; }
	[ $status -eq 0 ] && echo "package: $(basename "$deb"): $(wc -l <<<"$want") files checked"
done
[ -z "$(ls -A "$SRC_DIR"/build-* "$SRC_DIR"/debian/postgresql-* 2>/dev/null)" ] ||
	{ echo "package: the checkout has build outputs of a package build"; status=1; }
exit $status

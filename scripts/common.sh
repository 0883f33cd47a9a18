# Helpers shared by test.sh, demo.sh and the benchmark (sourced, not run).
#
# PostgreSQL refuses to run as root.  When these scripts run as root they
# copy the source tree into a scratch directory owned by an unprivileged
# user (the `postgres` account the Debian packages create) and run the
# clusters as that user; otherwise they run in place as the caller.

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config || echo pg_config)
export PG_CONFIG
PG_BINDIR=$("$PG_CONFIG" --bindir 2>/dev/null || true)

# build_and_install [extra make args]: build with -Werror and install.
build_and_install() {
	make -s -C "$SRC_DIR" PG_CONFIG="$PG_CONFIG" WERROR=1 "$@" >/dev/null || return 1
	if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
		make -s -C "$SRC_DIR" PG_CONFIG="$PG_CONFIG" "$@" install >/dev/null
	else
		sudo make -s -C "$SRC_DIR" PG_CONFIG="$PG_CONFIG" "$@" install >/dev/null
	fi
}

# make_workdir NAME: sets WORK_DIR to a tree the cluster user may write.
make_workdir() {
	if [ "$(id -u)" -eq 0 ]; then
		RUN_AS=postgres
		WORK_DIR=$(mktemp -d "/tmp/outbox_saga-$1.XXXXXX")
		# A file edited meanwhile is copied as it is (tar exits 1 then).
		{ tar -C "$SRC_DIR" --exclude=.git --exclude='tmp_check*' --exclude=./test/fuzz/build \
			--warning=no-file-changed -cf - . || [ $? -eq 1 ]; } |
			tar -C "$WORK_DIR" -xf -
		chown -R "$RUN_AS": "$WORK_DIR"
	else
		RUN_AS=
		WORK_DIR=$SRC_DIR
	fi
}

# copy_tree DEST: the source tree into DEST (made if missing), without the
# git directory and without build and test outputs, for a build that must
# leave the checkout as it is.
copy_tree() {
	mkdir -p "$1"
	# A file edited meanwhile is copied as it is (tar exits 1 then).
	{ tar -C "$SRC_DIR" --exclude=.git --exclude='tmp_check*' --exclude=./test/fuzz/build --exclude='*.o' \
		--exclude='*.so' --exclude='*.bc' --exclude='*.d' --exclude=./results --exclude=./output_iso \
		--exclude='./build-*' --exclude=./.build_options \
		--warning=no-file-changed -cf - . || [ $? -eq 1 ]; } |
		tar -C "$1" -xf -
}

# as_cluster_user CMD...: run CMD as the unprivileged cluster user.
# Under make test SANITIZE=address the sanitizer wrappers come first in PATH
# and reach the suites (scripts/sanitize.sh).
as_cluster_user() {
	local path="$PG_BINDIR:$PATH" san=()
	if [ -n "${OUTBOX_SANITIZER_BIN:-}" ]; then
		path="$OUTBOX_SANITIZER_BIN:$path"
		san=(OUTBOX_SANITIZER_BIN="$OUTBOX_SANITIZER_BIN" EXTRA_REGRESS_OPTS="${EXTRA_REGRESS_OPTS:-}")
	fi
	if [ -n "${RUN_AS:-}" ]; then
		runuser -u "$RUN_AS" -- env PATH="$path" PG_CONFIG="$PG_CONFIG" "${san[@]}" "$@"
	else
		env PATH="$path" "${san[@]}" "$@"
	fi
}

# start_scratch_cluster NAME [extra postgresql.conf lines]: initdb and start
# a throwaway cluster with the library preloaded, listening only on a unix
# socket in its own directory.  Sets SCRATCH, PGHOST, PGPORT, PGDATA.
# stop_scratch_cluster stops it and removes the directory.
start_scratch_cluster() {
	SCRATCH=$(mktemp -d "/tmp/outbox_saga-$1.XXXXXX")
	if [ "$(id -u)" -eq 0 ]; then RUN_AS=postgres; chown "$RUN_AS": "$SCRATCH"; else RUN_AS=; fi
	export PGDATA="$SCRATCH/data" PGHOST="$SCRATCH" PGPORT=5432 PGDATABASE=postgres
	as_cluster_user initdb -D "$PGDATA" -A trust -U postgres --no-sync >/dev/null
	cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$SCRATCH'
shared_preload_libraries = 'outbox_saga'
track_commit_timestamp = on
max_worker_processes = 16
# Webhook receivers of the demo and the documentation suites listen on
# loopback, which the default denies.
outbox_saga.http_deny_networks = '169.254.0.0/16,fe80::/10'
${2:-}
CONF
	as_cluster_user pg_ctl -D "$PGDATA" -l "$SCRATCH/server.log" -w start >/dev/null
}

stop_scratch_cluster() {
	[ -n "${SCRATCH:-}" ] && [ -d "$SCRATCH" ] || return 0
	as_cluster_user pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	# make test SANITIZE=address reads the log for reports (sanitize.sh).
	[ -n "${OUTBOX_SANITIZER_BIN:-}" ] &&
		cp "$SCRATCH/server.log" "$OUTBOX_SANITIZER_BIN/../logs/${SCRATCH##*/}.log" 2>/dev/null
	rm -rf "$SCRATCH"
}

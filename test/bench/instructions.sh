# Section "instructions": what writing an event costs, counted in CPU
# instructions (sourced by bench.sh, which calls section_instructions).
# shellcheck shell=bash disable=SC2034,SC2154
#
# WHY
#   The producer section measures time, which is what issue 18's targets
#   are about; on a shared 2-core machine its ratios move by 10-15% from
#   one full run to the next, so a change of a few percent in what capture
#   costs cannot be seen there.  Instructions counted by callgrind do not
#   move: the same build and the same input give the same count, so a
#   change of 1% shows.  They are not time: no kernel work (system calls,
#   page faults), no other process (the WAL writer), no cache misses and
#   no lock waits.  This section tells where a change moved the work; the
#   producer section says what it is worth.
#
# HOW
#   A scratch cluster of its own (scripts/common.sh, with the producer's
#   tables and triggers: producer/setup*.sql), stopped, is copied for every
#   count, so that each starts alike.  One backend in single-user mode (postgres
#   --single) runs under valgrind --tool=callgrind: SET
#   synchronous_commit = off, PREPARE of the producer's order INSERT, then
#   N EXECUTEs (one transaction each, fixed arguments), for N = 1,000 and
#   3,000.  The difference of the two counts over 2,000 is the count per
#   INSERT without the backend's start, its exit and the first calls'
#   cache loading.  Every INSERT must return its row (counted in the
#   backend's output), or the variant is reported as failed.
#
# Variants: the producer's plain, capture, plpgsql and pgq (the INSERT
# into the table of each; pgq when PgQ is installed).

INSTRUCTIONS_VARIANTS="plain capture plpgsql pgq"
INSTRUCTIONS_SETUP=$WORK_DIR/test/bench/producer
INSTRUCTIONS_SHORT=1000
INSTRUCTIONS_LONG=3000

# instructions_input VARIANT N: the backend's input for N INSERTs.
instructions_input() {
	printf 'SET synchronous_commit = off;\n'
	printf 'PREPARE ins(bigint, int, int) AS INSERT INTO public.orders_%s %s;\n' "$1" \
		"(customer_id, total, item_count, shipping_country) VALUES (\$1, \$2::numeric / 100, \$3, 'DE') RETURNING id"
	awk -v n="$2" 'BEGIN {
		for (i = 1; i <= n; i++)
			printf "EXECUTE ins(%d, %d, %d);\n", (i * 7919) % 100000 + 1,
				(i * 104729) % 99900 + 100, i % 9 + 1
	}'
}

# instructions_count VARIANT N: the instructions of one backend running
# N INSERTs of VARIANT, on a fresh copy of the section's cluster; fails if
# an INSERT did not return its row.
instructions_count() {
	local dir=$CLUSTER_DIR/instructions run=$CLUSTER_DIR/instructions/$1.$2 rows
	rm -rf "$dir/data"
	as_cluster_user cp -a "$dir/template" "$dir/data"
	instructions_input "$1" "$2" >"$run.sql"
	as_cluster_user valgrind --tool=callgrind --callgrind-out-file="$run.callgrind" \
		postgres --single -D "$dir/data" -c huge_pages=off postgres \
		<"$run.sql" >"$run.out" 2>"$run.log" || return 1
	# The single-user backend prints each returned row as "1: id = ...".
	rows=$(grep -c '^[[:space:]]*1: id = ' "$run.out" || true)
	if [ "$rows" != "$2" ]; then
		say "instructions: $1 returned $rows rows of $2: $(grep -m 1 ERROR "$run.out" "$run.log")"
		return 1
	fi
	sed -n 's/^summary: //p' "$run.callgrind"
}

section_instructions() {
	local dir=$CLUSTER_DIR/instructions v short long plain_per per
	local -A PER=()
	say "instructions: a cluster for single-user counts"
	as_cluster_user mkdir -p "$dir"
	# The producer's tables in a scratch cluster of the test suites
	# (scripts/common.sh), in a subshell so that its settings stay there and
	# its trap removes it whatever happens; stopped, it becomes the template
	# every count copies.
	(
		trap stop_scratch_cluster EXIT
		start_scratch_cluster bench-instructions "autovacuum = off"
		for f in setup.sql setup_capture.sql; do
			as_cluster_user psql -X -q -v ON_ERROR_STOP=1 -f "$INSTRUCTIONS_SETUP/$f" >/dev/null
		done
		as_cluster_user psql -X -q -v ON_ERROR_STOP=1 -f "$INSTRUCTIONS_SETUP/setup_pgq.sql" \
			>/dev/null 2>"$dir/pgq.err" || true
		as_cluster_user pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
		as_cluster_user cp -a "$PGDATA" "$dir/template"
	) || return 1
	if [ -s "$dir/pgq.err" ]; then
		FAILED[instructions|pgq]="setup: $(head -n 1 "$dir/pgq.err")"
	fi

	for v in $INSTRUCTIONS_VARIANTS; do
		[ -n "${FAILED[instructions|$v]:-}" ] && continue
		say "instructions: $v ($INSTRUCTIONS_SHORT and $INSTRUCTIONS_LONG INSERTs under callgrind)"
		if short=$(instructions_count "$v" $INSTRUCTIONS_SHORT) &&
			long=$(instructions_count "$v" $INSTRUCTIONS_LONG) &&
			[ -n "$short" ] && [ -n "$long" ]; then
			PER[$v]=$(((long - short) / (INSTRUCTIONS_LONG - INSTRUCTIONS_SHORT)))
		else
			FAILED[instructions|$v]="the callgrind run failed (see $dir/$v.*)"
		fi
	done
	rm -rf "$dir/data"

	report ""
	report "Instructions per order INSERT (callgrind: one backend in single-user mode, a"
	report "prepared INSERT per transaction, synchronous_commit=off; exact from run to run,"
	report "but not time: no kernel, no WAL writer, no cache misses - see instructions.sh)"
	report "$(printf '  %-28s %12s  %13s  %13s' variant instructions 'plain/variant' 'added/plain')"
	plain_per=${PER[plain]:-}
	for v in $INSTRUCTIONS_VARIANTS; do
		per=${PER[$v]:-}
		if [ -z "$per" ]; then
			report "$(printf '  %-28s %12s' "${LABEL[$v]:-$v}" "n/a (${FAILED[instructions|$v]:-not run})")"
			continue
		fi
		if [ -n "$plain_per" ]; then
			report "$(printf '  %-28s %12s  %13s  %13s' "${LABEL[$v]:-$v}" \
				"$per" \
				"$(awk -v a="$plain_per" -v b="$per" 'BEGIN { printf "%.3f", a / b }')" \
				"$(awk -v a="$plain_per" -v b="$per" 'BEGIN { printf "+%.1f%%", (b - a) * 100 / a }')")"
		else
			report "$(printf '  %-28s %12s' "${LABEL[$v]:-$v}" "$per")"
		fi
	done
	# The capture trigger's instructions beside its peers': what it adds to
	# a plain INSERT over what they add.
	if [ -n "$plain_per" ] && [ -n "${PER[capture]:-}" ]; then
		for v in plpgsql pgq; do
			[ -n "${PER[$v]:-}" ] || continue
			report "  capture adds $(awk -v c="${PER[capture]}" -v p="${PER[$v]}" -v b="$plain_per" \
				'BEGIN { printf "%.2f", (c - b) / (p - b) }')x the instructions the $v trigger adds"
		done
	fi
	return 0
}

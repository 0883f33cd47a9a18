# outbox_saga: PGXS build.
#
#   make            build the module and the extension script
#   make install    install into the PostgreSQL found by $(PG_CONFIG)
#   make test       install Debian dependencies if missing, build with -Werror,
#                   install, run every suite (pg_regress, isolation, TAP) in
#                   throwaway clusters, print "N passed, N failed"
#   make test-matrix  the same suites on PostgreSQL 17 and 18, each in a
#                   Debian chroot made on first use (root; scripts/matrix.sh)
#   make installcheck  the pg_regress suite against a running server that
#                   preloads the library (what Debian's pg_buildext runs)
#   make demo       a throwaway cluster with the extension preloaded and a
#                   worked example
#   make bench      the benchmark (ratios measured in one run)
#   make fuzz       the libFuzzer targets of test/fuzz, FUZZ_SECONDS (default
#                   300) each (scripts/fuzz.sh; a few seconds of each are
#                   the suite "fuzz" of make test)
#   make soak       SOAK_MINUTES (default 30) of mixed load with crashes and
#                   outages, then checks (scripts/soak.sh; not in make test)
#   make test SANITIZE=address
#                   the same with the module built with AddressSanitizer and
#                   UndefinedBehaviorSanitizer, loaded into the stock server
#                   (scripts/sanitize.sh); fails on any sanitizer report
#   make valgrind   the pg_regress suite with the server under valgrind
#                   (slow; not part of make test)
#
# Released extension scripts are committed and frozen: outbox_saga--0.1.0.sql
# is the assembled script of release 0.1.0 and is never edited again.  Later
# SQL changes go into the src/sql/ parts (the full script of the next
# version is assembled from them, in the order of SQL_PARTS) and into the
# upgrade script outbox_saga--A--B.sql.

EXTENSION  = outbox_saga
EXTVERSION = 0.2.0

MODULE_big = outbox_saga
OBJS = \
	src/outbox_saga.o \
	src/idempotency.o \
	src/base/guc.o \
	src/base/trace_context.o \
	src/base/shmem.o \
	src/base/uuidv7.o \
	src/base/tojsonb.o \
	src/base/spi_util.o \
	src/base/run_as.o \
	src/base/sql_args.o \
	src/base/jsonb_util.o \
	src/base/jsonb_write.o \
	src/base/owner_guard.o \
	src/events/eventlog.o \
	src/events/logscan.o \
	src/events/tick.o \
	src/events/emit.o \
	src/events/wakeup.o \
	src/events/capture.o \
	src/events/capture_args.o \
	src/events/capture_table.o \
	src/events/topic_acl.o \
	src/events/history.o \
	src/http/http_guard.o \
	src/http/http_client.o \
	src/http/http_socket.o \
	src/sink/sink.o \
	src/sink/dest_config.o \
	src/sink/dest_cache.o \
	src/sink/lane_plan.o \
	src/sink/sink_wait.o \
	src/sink/function.o \
	src/sink/notify.o \
	src/sink/http.o \
	src/sink/http_sign.o \
	src/sink/template.o \
	src/sink/pull.o \
	src/dispatch/destination.o \
	src/dispatch/destination_rows.o \
	src/dispatch/mask.o \
	src/dispatch/delivery.o \
	src/dispatch/sync_delivery.o \
	src/dispatch/observability.o \
	src/dispatch/restore.o \
	src/dispatch/skip.o \
	src/dispatch/pull.o \
	src/dispatch/replay.o \
	src/saga/saga_state.o \
	src/saga/saga_define.o \
	src/saga/saga_api.o \
	src/saga/saga_call.o \
	src/saga/saga_http.o \
	src/saga/saga_driver.o \
	src/worker/launcher.o \
	src/worker/dispatcher.o \
	src/worker/housekeeping.o \
	src/worker/utility_hook.o

SQL_PARTS = \
	src/sql/schema.sql \
	src/sql/events.sql \
	src/sql/capture.sql \
	src/sql/idempotency.sql \
	src/sql/dispatch.sql \
	src/sql/topics.sql \
	src/sql/destinations.sql \
	src/sql/history.sql \
	src/sql/observability.sql \
	src/sql/pull.sql \
	src/sql/saga.sql \
	src/sql/lifecycle.sql \
	src/sql/privileges.sql

# The full script of the version being built, assembled from src/sql/.
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# Frozen release scripts and the upgrade scripts between versions.
DATA = $(EXTENSION)--0.1.0.sql $(EXTENSION)--0.1.0--0.2.0.sql

# pg_regress: one file per concept, in dependency order.
REGRESS = emit capture capture_types idempotency destinations topics dispatch_function \
	dispatch_retry wait_delivered http_config broker_config saga_define saga_run \
	privileges_kafka privileges_mask privileges_monitor privileges_guards privileges_saga \
	handler_search_path deliver_pending trace_context pull history rewind
REGRESS_OPTS = --temp-instance=./tmp_check_regress \
	--temp-config=$(srcdir)/test/outbox_saga.conf \
	--load-extension=$(EXTENSION)

# Isolation specs live in test/specs, their expected output in test/expected.
ISOLATION = emit_visibility idempotency_same_key idempotency_rollback \
	dispatch_late_commit destination_start_tick saga_complete_race saga_start_race pull_consumers \
	append_expected_version
ISOLATION_OPTS = --inputdir=$(srcdir)/test --outputdir=output_iso \
	--temp-instance=./tmp_check_iso \
	--temp-config=$(srcdir)/test/outbox_saga.conf \
	--load-extension=$(EXTENSION)

TAP_TESTS = 1
PROVE_TESTS ?= test/t/*.pl

EXTRA_CLEAN = $(DATA_built) output_iso tmp_check_regress tmp_check_iso tmp_check sanitizer \
	test/bench/results test/fuzz/build test/soak/results

SHLIB_LINK = -lcurl -lcrypto

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -DOUTBOX_SAGA_VERSION='"$(EXTVERSION)"'
# Warnings that PostgreSQL's own headers trip under -Wextra stay off.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers $(if $(WERROR),-Werror)

# --- Build options ----------------------------------------------------------
# WITH_KAFKA=0 / WITH_NATS=0 build the module without librdkafka / cnats
# (no link dependency, no header needed): src/sink/kafka.c / nats.c are left
# out and src/sink/sink.c answers the kind with feature_not_supported.  Both
# default to 1.  The options are recorded in .build_options, so that changing
# them rebuilds what depends on them.
WITH_KAFKA ?= 1
WITH_NATS ?= 1
$(foreach o,WITH_KAFKA WITH_NATS,$(if $(filter-out 0 1,$($(o))),$(error $(o) must be 0 or 1, not "$($(o))")))
ifeq ($(WITH_KAFKA),1)
OBJS += src/sink/kafka.o
SHLIB_LINK += -lrdkafka
PG_CPPFLAGS += -DOUTBOX_SAGA_WITH_KAFKA
endif
ifeq ($(WITH_NATS),1)
OBJS += src/sink/nats.o
SHLIB_LINK += -lnats
PG_CPPFLAGS += -DOUTBOX_SAGA_WITH_NATS
endif
BUILD_OPTIONS := kafka=$(WITH_KAFKA) nats=$(WITH_NATS)
ifneq ($(BUILD_OPTIONS),$(shell cat .build_options 2>/dev/null))
$(shell echo '$(BUILD_OPTIONS)' > .build_options)
endif
EXTRA_CLEAN += .build_options

# SANITIZE=address builds the module with AddressSanitizer and
# UndefinedBehaviorSanitizer (gcc; the library then needs libasan, which the
# stock server gets through LD_PRELOAD: `make test SANITIZE=address` sets
# that up, see scripts/sanitize.sh).  UBSan recovers, so that one run shows
# every report; the run fails on any report in a server log.  Recorded in
# .build_sanitize, so that switching rebuilds every object.
SANITIZE ?=
$(if $(filter-out address,$(SANITIZE)),$(error SANITIZE must be empty or address, not "$(SANITIZE)"))
# The instrumentation changes register allocation, and gcc's -Wclobbered
# (of -Wextra) then warns of variables that are set before a PG_TRY and
# never changed inside it, which C defines; the ordinary build keeps it.
ifeq ($(SANITIZE),address)
PG_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -Wno-clobbered
SHLIB_LINK += -fsanitize=address,undefined
endif
ifneq (sanitize=$(SANITIZE),$(shell cat .build_sanitize 2>/dev/null))
$(shell echo 'sanitize=$(SANITIZE)' > .build_sanitize)
endif
EXTRA_CLEAN += .build_sanitize

# A build in another directory (make -f SRC/Makefile VPATH=SRC, as Debian's
# pg_buildext does in build-<version>) needs the object folders there.
ifdef VPATH
$(shell mkdir -p $(sort $(dir $(OBJS))))
endif

# --- make installcheck -----------------------------------------------------
# The pg_regress suite against a running server (PGHOST, PGPORT, PGUSER as
# libpq reads them; a superuser), which must preload the library
# (shared_preload_libraries = 'outbox_saga').  This is what Debian's
# `pg_buildext installcheck` runs inside pg_virtualenv (debian/rules).  The
# suite leaves its database (contrib_regression) behind, as
# pg_regress does.  `make check-regress` runs the same suite in a temporary
# instance instead.  A build without Kafka or NATS leaves out broker_config
# and privileges_kafka, whose cases need both kinds.
NO_INSTALLCHECK = 1
INSTALLCHECK_OPTS = --load-extension=$(EXTENSION) --dbname=$(CONTRIB_TESTDB)
INSTALLCHECK_REGRESS = $(if $(filter 0,$(WITH_KAFKA) $(WITH_NATS)),$(filter-out broker_config privileges_kafka,$(REGRESS)),$(REGRESS))

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Header dependencies (Debian's PGXS has autodepend off): each object writes
# the headers it included into a .d file next to it, so an object is rebuilt
# when one of them changes.  Without this, an incremental build after a
# change of a struct in a header mixes old and new layouts.
override CPPFLAGS += -MMD -MP
# Not for the bitcode (with_llvm) of the same file: it would write the same
# .d naming the .bc, and the .o would lose its header dependencies.
%.bc: override CPPFLAGS := $(filter-out -MMD -MP,$(CPPFLAGS))
-include $(OBJS:.o=.d)
EXTRA_CLEAN += $(OBJS:.o=.d)

src/sink/sink.o src/sink/sink.bc: .build_options
$(OBJS): .build_sanitize

.PHONY: installcheck
installcheck:
	@preload=$$('$(bindir)/psql' -XAtq -d postgres -c 'SHOW shared_preload_libraries') || { \
		echo "installcheck: cannot reach a server (set PGHOST, PGPORT, PGUSER)" >&2; exit 1; }; \
	case ",$$(echo "$$preload" | tr -d ' \"')," in *,outbox_saga,*) ;; *) \
		echo "installcheck: the server must have shared_preload_libraries = 'outbox_saga' (it has '$$preload')" >&2; \
		exit 1;; esac
	$(pg_regress_installcheck) $(INSTALLCHECK_OPTS) $(INSTALLCHECK_REGRESS)

# After PGXS, which resets it.
PROVE_FLAGS = -I $(srcdir)/test/lib

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# The suites one by one, so that the runner can go on after a failure and
# count the results.  They run against the installed build.
.PHONY: check-regress check-isolation check-tap test test-matrix demo bench fuzz soak valgrind pgindent

check-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

check-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

check-tap:
	$(prove_installcheck)

test:
	@bash $(srcdir)/scripts/test.sh

test-matrix:
	@bash $(srcdir)/scripts/matrix.sh

demo:
	@bash $(srcdir)/scripts/demo.sh

# Builds and installs into a scratch directory: the shared installation is
# not touched (scripts/valgrind.sh).
valgrind:
	@bash $(srcdir)/scripts/valgrind.sh

bench:
	@bash $(srcdir)/test/bench/bench.sh

fuzz:
	@bash $(srcdir)/scripts/fuzz.sh long

soak:
	@bash $(srcdir)/scripts/soak.sh

pgindent:
	pgindent --typedefs=$(srcdir)/src/typedefs.list $(srcdir)/src/*.[ch] $(srcdir)/src/*/*.[ch]

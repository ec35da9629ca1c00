# kindling — top-level build.  `make` builds tools, guests and man pages into $(O).
#   make V=1        show commands
#   make O=dir      build somewhere else (default: build, or build-san with SAN=)
#   make SAN=address,undefined
#                   sanitizer build (any -fsanitize= list) of the tools, helpers and
#                   unit tests, with frame pointers, into build-san unless O= is given
#   make WERROR=1   warnings are errors (a change of flags recompiles what it affects)
#   make check      install deps, build, run every test, and the unit tests plus a
#                   subset of the CLI tests (SAN_TESTS) under CHECK_SAN (address,undefined)
#   make fuzz       build the libFuzzer targets (tests/fuzz) with clang into build-fuzz
#                   and run each for FUZZ_SECONDS (default 60); FUZZ=NAME for one
#   make demo       install deps, build, run the end-to-end demo
#   make bench      run benchmarks (figures only, never pass/fail)
#   make deps       install the packages the build and the tests need
#
# Layering: each lib/NAME folder is one archive and declares below (deps.NAME) the
# modules it may use.  `make` fails if a file in lib/NAME #includes a header of a
# module not declared there, and the archives are linked in the order the
# declarations give (users before what they use, no --start-group), so a call into
# an undeclared module does not link either.

.DEFAULT_GOAL := all
SAN ?=
WERROR ?= 0
O ?= $(if $(SAN),build-san,build)
V ?= 0
ifeq ($(V),0)
Q := @
say = @printf '  %-7s %s\n' $(1) $(2);
else
Q :=
say :=
endif

CXX ?= g++
CC ?= gcc

# pkg-config packages.  A missing one fails the build at once with its name, except
# for the targets that install them first (deps, check, demo) and clean.
PKGS := libcrypto libcurl libzstd libseccomp fuse3 libmemcached
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null || echo PKG-MISSING)
ifeq ($(filter PKG-MISSING,$(PKG_CFLAGS)),)
PKG_LIBS := $(shell pkg-config --libs $(PKGS))
else
PKG_MISSING := $(shell command -v pkg-config >/dev/null || { echo pkg-config; exit; }; \
	for p in $(PKGS); do pkg-config --exists $$p || echo $$p; done)
PKG_CFLAGS :=
ifneq ($(filter-out deps check demo clean,$(or $(MAKECMDGOALS),all)),)
$(error missing pkg-config package(s): $(PKG_MISSING); run `make deps` (scripts/install-deps.sh) to install them)
endif
endif

WERROR_FLAG := $(if $(filter 1,$(WERROR)),-Werror)
WARN := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(WERROR_FLAG)
# Sanitizer builds default to -O1 -g1 (line tables: reports still name file:line):
# -O2 -g took 2.3x as long to compile with ASan+UBSan (lib/route/router.cpp: 32 s vs 14 s).
CXXFLAGS ?= $(if $(SAN),-O1 -g1,-O2 -g)
CXXFLAGS += -std=c++20 $(WARN) -fno-plt -I. -Ilib -Iguest/nano/include $(PKG_CFLAGS) -MMD -MP -pthread
LDFLAGS += -pthread -static-libgcc -Wl,--as-needed -Wl,-O1
ifneq ($(SAN),)
# The sanitizers' checks confuse GCC's flow-based warnings into false positives
# (found: std::fill after resize, boost::beast's optional); the plain build keeps them.
# Every report is fatal (-fno-sanitize-recover): a test that trips UBSan fails.
CXXFLAGS += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer \
	$(if $(findstring clang,$(CXX)),,-Wno-maybe-uninitialized -Wno-stringop-overflow)
LDFLAGS += -fsanitize=$(SAN)
else
# libstdc++ linked statically: dynamic symbol binding of libstdc++ costs ~0.45 ms
# per process start, a fifth of the nano cold-start budget (measured, bench/boot).
# (Not with sanitizers: their runtimes replace operator new and want it shared.)
LDFLAGS += -static-libstdc++
# fc-launch fully static (static-pie keeps ASLR): no ld.so, libc and libm to map
# and bind per start, and none of their pages in each VMM's RSS (bench/boot).
# It resolves no host names (no NSS) and links none of $(PKGS).  --gc-sections drops
# unused library sections: 0.5 MiB less text faulted in around what runs.
# (GCC 12's driver links dynamically when -static-libstdc++ comes with -static-pie.)
$(O)/bin/fc-launch: LDFLAGS := $(filter-out -static-libstdc++,$(LDFLAGS)) -static-pie -Wl,--gc-sections
$(O)/bin/fc-launch: PKG_LIBS :=
endif

# Every object depends on $(FLAGS_STAMP), which changes (and so recompiles them) only
# when the compilers or their flags change, e.g. WERROR=1 or SAN= into the same O.
# A missing stamp is created old, so a build dir from before it is not rebuilt.
# Neither a dry run (-n) nor a parse without the packages touches it.
FLAGS_STAMP := $(O)/.flags
FLAGS_NOW := $(strip $(CXX) $(CXXFLAGS) / $(CC) $(WERROR_FLAG))
ifeq ($(PKG_MISSING)$(findstring n,$(firstword -$(MAKEFLAGS))),)
ifneq ($(shell cat $(FLAGS_STAMP) 2>/dev/null),$(FLAGS_NOW))
$(shell mkdir -p $(O) && { [ -e $(FLAGS_STAMP) ] && new=1; \
	printf '%s\n' '$(FLAGS_NOW)' > $(FLAGS_STAMP); [ -n "$$new" ] || touch -d @0 $(FLAGS_STAMP); })
endif
endif
$(FLAGS_STAMP): ;

# Library modules: one static archive per lib/ folder (subfolders included), and the
# modules each one may #include and call.  Header-only modules (cli) make no archive.
LIB_MODULES := base hash seccomp kvm devices snapshot vmm jail chunk http store fuse assign route cli
deps.base :=
deps.hash :=
deps.seccomp := base
deps.kvm := seccomp base
deps.devices := kvm base
deps.snapshot := devices kvm seccomp hash base
deps.vmm := snapshot devices kvm seccomp http base
deps.jail := base
deps.chunk := hash base
deps.http := hash base
deps.store := chunk http hash base
deps.fuse := store snapshot chunk hash base
deps.assign := http hash base
deps.route := assign http base
deps.cli := base

LIB_UNDECLARED := $(filter-out $(LIB_MODULES),$(notdir $(wildcard lib/*)))
ifneq ($(LIB_UNDECLARED),)
$(error lib/$(firstword $(LIB_UNDECLARED)) is not a declared module: add it to LIB_MODULES with its deps.NAME in the Makefile)
endif
$(foreach m,$(LIB_MODULES),$(eval srcs.$(m) := $(shell find lib/$(m) -name '*.cpp' 2>/dev/null)))
lib_objs = $(patsubst %.cpp,$(O)/obj/%.o,$(srcs.$(1))) $(gen_objs.$(1))
# lib/seccomp's BPF is compiled at build time: bpf_gen (a build tool, not in the
# archive) runs libseccomp over allow_list.cpp and writes filter_program.cpp, so
# fc-launch neither links libseccomp nor spends ~250 us per filter compiling it.
srcs.seccomp := $(filter-out lib/seccomp/bpf_gen/%,$(srcs.seccomp))
gen_objs.seccomp := $(O)/obj/gen/seccomp/filter_program.o
SECCOMP_BPF_GEN := $(O)/build-tools/seccomp-bpf-gen
$(SECCOMP_BPF_GEN): $(O)/obj/lib/seccomp/bpf_gen/main.o $(O)/obj/lib/seccomp/allow_list.o
	$(call say,LD,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CXX) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
$(O)/gen/seccomp/filter_program.cpp: $(SECCOMP_BPF_GEN)
	$(call say,GEN,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$< > $@.tmp && mv $@.tmp $@
$(O)/obj/gen/seccomp/filter_program.o: $(O)/gen/seccomp/filter_program.cpp $(FLAGS_STAMP)
	$(call say,CXX,$<)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CXX) $(CXXFLAGS) -c -o $@ $<
# Users before the modules they use (tsort of the deps.* edges); a cycle is an error.
LIB_ORDER := $(shell printf '%s\n' $(foreach m,$(LIB_MODULES),'$(m) $(m)' \
	$(foreach d,$(deps.$(m)),'$(m) $(d)')) | tsort 2>/dev/null || echo CYCLE)
ifneq ($(filter CYCLE,$(LIB_ORDER)),)
$(error the deps.* declarations in the Makefile form a cycle among: $(shell printf '%s\n' \
	$(foreach m,$(LIB_MODULES),$(foreach d,$(deps.$(m)),'$(m) $(d)')) | tsort 2>&1 >/dev/null | \
	awk '/loop/ { if (n++) exit; next } { print $$2 }'))
endif
# Every archive in link order, and $(call lib_archives,MODULE...): those MODULEs and
# what they use, in link order (for a program that needs only part of lib/).
LIB_ARCHIVES := $(strip $(foreach m,$(LIB_ORDER),$(if $(srcs.$(m)),$(O)/lib/libk$(m).a)))
lib_closure = $(sort $(1) $(foreach m,$(1),$(call lib_closure,$(deps.$(m)))))
lib_archives = $(filter $(patsubst %,$(O)/lib/libk%.a,$(call lib_closure,$(1))),$(LIB_ARCHIVES))

TOOLS := $(notdir $(wildcard tools/*))
TOOL_BINS := $(addprefix $(O)/bin/,$(TOOLS))

UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_BIN := $(O)/tests/unit-tests

MAN_SRCS := $(wildcard man/*.scd)
MAN_PAGES := $(patsubst man/%.scd,$(O)/man/%,$(MAN_SRCS))

.PHONY: all tools guests man unit check demo bench clean deps
all: tools guests man $(UNIT_BIN)
tools: $(TOOL_BINS)
man: $(MAN_PAGES)
unit: $(UNIT_BIN)

# link OBJS...: one program from its objects and the archives in dependency order.
link = $(CXX) $(LDFLAGS) -o $@ $(1) $(LIB_ARCHIVES) $(PKG_LIBS)

$(O)/obj/%.o: %.cpp $(FLAGS_STAMP)
	$(call say,CXX,$<)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CXX) $(CXXFLAGS) -c -o $@ $<

# The layering check: every #include "X/..." in lib/M names M, a module in deps.M,
# or something that is not a lib/ module (e.g. kindling/ of guest/nano/include).
comma := ,
space := $(empty) $(empty)
LAYERING_STAMP := $(O)/.layering-ok
$(LAYERING_STAMP): $(shell find lib -name '*.h' -o -name '*.cpp') Makefile
	$(call say,CHECK,layering)
	$(Q)scripts/check-layering.sh $(foreach m,$(LIB_MODULES),$(m):$(subst $(space),$(comma),$(strip $(deps.$(m)))))
	$(Q)mkdir -p $(dir $@) && touch $@

define lib_rule
$(O)/lib/libk$(1).a: $(call lib_objs,$(1)) | $(LAYERING_STAMP)
	$$(call say,AR,$$@)
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(LIB_MODULES),$(if $(srcs.$(m)),$(eval $(call lib_rule,$(m)))))

define tool_rule
$(O)/bin/$(1): $(patsubst %.cpp,$(O)/obj/%.o,$(wildcard tools/$(1)/*.cpp)) $(LIB_ARCHIVES)
	$$(call say,LD,$$@)
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(call link,$(patsubst %.cpp,$(O)/obj/%.o,$(wildcard tools/$(1)/*.cpp)))
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rule,$(t))))

$(UNIT_BIN): $(patsubst %.cpp,$(O)/obj/%.o,$(UNIT_SRCS)) $(LIB_ARCHIVES)
	$(call say,LD,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call link,$(patsubst %.cpp,$(O)/obj/%.o,$(UNIT_SRCS)))

$(O)/man/%: man/%.scd
	$(call say,SCDOC,$<)
	$(Q)mkdir -p $(dir $@)
	$(Q)scdoc < $< > $@.tmp && mv $@.tmp $@

# Nano guests: freestanding, own flags and linker script (guest/nano/Makefile.inc).
include guest/nano/Makefile.inc
include guest/linux/Makefile.inc

deps:
	scripts/install-deps.sh

# make check, after the plain build: the nested-Linux tests (TCG: one core) run
# while the sanitizer build (CHECK_SAN, build-san; nice 19: it takes only the CPU
# they leave) uses the rest; then the other tests; then the unit tests and SAN_TESTS
# (CLI tests: nano boot + invoke, snapshot + restore, snap-chunk, snap-fetch, snapfs,
# routerd, assignd, every fuzz input) under the sanitizers.  Reports go to build-san/san-reports (a daemon's report
# at exit counts even when its test passed); any report fails the check.  CHECK_SAN=
# skips the sanitizer part.
CHECK_SAN ?= address,undefined
SAN_O := build-san
SAN_TESTS := ^\(unit\|fuzz_corpus\|nano_hello_invoke\|fc_launch_api\|fc_launch_hostile\|snapshot_restore_exact\|snapshot_layers\|snapshot_prefetch\|snap_chunk_roundtrip\|snap_chunk_tamper\|snap_fetch_tiers\|snapfs_files\|snapfs_restore\|routerd_invoke\|assignd_basic\)$$
check: deps
	$(MAKE) all
	@# The guest kernel builds once per machine (cached); build it before the tests
	@# so no test's time limit has to cover a kernel build.
	guest/linux/build.sh >/dev/null || echo "check: guest kernel build failed; linux tests will skip" >&2
	@set +e; start=$$(date +%s); \
	KINDLING_TALLY=$(CURDIR)/$(O)/check-tally; export KINDLING_TALLY; rm -f $$KINDLING_TALLY; \
	if [ -n "$(CHECK_SAN)" ]; then \
		( nice -n 19 $(MAKE) -j2 O=$(SAN_O) SAN=$(CHECK_SAN) all >$(O)/check-san-build.log 2>&1; \
		  echo $$? >$(O)/check-san-build.rc ) & \
	fi; \
	tests/run.sh $(O) '^linux_'; linux=$$?; \
	wait; echo "check: nested-Linux tests and the sanitizer build: $$(( $$(date +%s) - start )) s"; \
	tests/run.sh -x '^linux_' $(O); rest=$$?; \
	san=0; if [ -n "$(CHECK_SAN)" ]; then \
		if [ "$$(cat $(O)/check-san-build.rc)" != 0 ]; then \
			tail -n 30 $(O)/check-san-build.log; echo "check: sanitizer build failed" >&2; san=1; \
			echo "0 1 0" >>$$KINDLING_TALLY; \
		else \
			r=$(CURDIR)/$(SAN_O)/san-reports; rm -rf $$r; mkdir -p $$r; s=$$(date +%s); \
			ASAN_OPTIONS=log_path=$$r/asan UBSAN_OPTIONS=log_path=$$r/ubsan:print_stacktrace=1:halt_on_error=1 \
				tests/run.sh $(SAN_O) '$(SAN_TESTS)'; san=$$?; \
			echo "check: tests under $(CHECK_SAN): $$(( $$(date +%s) - s )) s"; \
			if [ -n "$$(ls $$r)" ]; then head -n 40 $$r/*; echo "check: sanitizer reports above ($$r)" >&2; san=1; \
				echo "0 1 0" >>$$KINDLING_TALLY; fi; \
		fi; \
	fi; \
	echo "check: $$(( $$(date +%s) - start )) s of tests (the runs above, summed below; a failed sanitizer build or a report counts as a failure)"; \
	awk '{ p += $$1; f += $$2; s += $$3 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' $$KINDLING_TALLY; \
	[ $$linux = 0 ] && [ $$rest = 0 ] && [ $$san = 0 ]

demo: deps
	$(MAKE) all bench-bins
	scripts/demo.sh $(O)

bench: all bench-bins
	bench/run.sh $(O)

clean:
	rm -rf $(O)

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)

# Benchmark programs: bench/*_bench.cpp -> $(O)/bench/NAME-bench
BENCH_SRCS := $(wildcard bench/*_bench.cpp)
BENCH_BINS := $(patsubst bench/%_bench.cpp,$(O)/bench/%-bench,$(BENCH_SRCS))
$(O)/bench/%-bench: $(O)/obj/bench/%_bench.o $(LIB_ARCHIVES)
	$(call say,LD,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call link,$<)
bench-bins: $(BENCH_BINS)

# Test helper programs: tests/helpers/NAME.cpp -> $(O)/tests/helpers/NAME (run by tests)
HELPER_BINS := $(patsubst tests/helpers/%.cpp,$(O)/tests/helpers/%,$(wildcard tests/helpers/*.cpp))
all: $(HELPER_BINS)
$(HELPER_BINS): $(O)/tests/helpers/%: $(O)/obj/tests/helpers/%.o $(LIB_ARCHIVES)
	$(call say,LD,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call link,$<)

# Fuzz targets: tests/fuzz/NAME.cpp defines LLVMFuzzerTestOneInput (README "Fuzzing").
# Every build links each with tests/fuzz/replay/main.cpp into $(O)/fuzz/NAME-replay,
# which tests/cli/fuzz_corpus.sh runs over tests/fuzz/corpus/NAME (under ASan+UBSan
# in build-san, on every make check).  `make fuzz` builds them with clang and libFuzzer
# into build-fuzz and runs each for FUZZ_SECONDS (FUZZ=NAME: that target only).
FUZZ_TARGETS := $(basename $(notdir $(wildcard tests/fuzz/*.cpp)))
FUZZ_REPLAY_BINS := $(patsubst %,$(O)/fuzz/%-replay,$(FUZZ_TARGETS))
FUZZ_BINS := $(addprefix $(O)/fuzz/,$(FUZZ_TARGETS))
FUZZ_SECONDS ?= 60
FUZZ_O := build-fuzz
FUZZ_SAN := fuzzer-no-link,address,undefined
.PHONY: fuzz fuzz-bins fuzz-replay
all: $(FUZZ_REPLAY_BINS)
fuzz-replay: $(FUZZ_REPLAY_BINS)
fuzz-bins: $(FUZZ_BINS)
$(FUZZ_REPLAY_BINS): $(O)/fuzz/%-replay: $(O)/obj/tests/fuzz/%.o $(O)/obj/tests/fuzz/replay/main.o $(LIB_ARCHIVES)
	$(call say,LD,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call link,$< $(O)/obj/tests/fuzz/replay/main.o)
# The lib/ modules each libFuzzer target links (and, with what they use, compiles:
# `make fuzz` compiles only those with clang).
fuzz_libs.access_log := fuse
fuzz_libs.fc_api := vmm
fuzz_libs.http_sigv4 := http
fuzz_libs.journal := assign
fuzz_libs.lambda_api := route
fuzz_libs.layer_info := snapshot
fuzz_libs.manifest := chunk
fuzz_libs.virtio_blk := devices
fuzz_libs.virtio_vsock := devices
fuzz_libs.virtqueue := devices
fuzz_libs.vmstate := snapshot
define fuzz_rule
$(O)/fuzz/$(1): $(O)/obj/tests/fuzz/$(1).o $(call lib_archives,$(or $(fuzz_libs.$(1)),$(LIB_MODULES)))
	$$(call say,LD,$$@)
	$$(Q)mkdir -p $$(dir $$@)
	$$(Q)$$(CXX) $$(LDFLAGS) -fsanitize=fuzzer -o $$@ $$< $$(call lib_archives,$(or $(fuzz_libs.$(1)),$(LIB_MODULES))) $$(PKG_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rule,$(t))))
fuzz:
	$(MAKE) O=$(FUZZ_O) CXX=clang++ CC=clang SAN=$(FUZZ_SAN) fuzz-bins
	tests/fuzz/run.sh $(FUZZ_O) $(FUZZ_SECONDS) $(FUZZ)

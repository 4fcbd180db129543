# searchlight: make builds ./run and ./export; make run builds them and generates from the
# default model (models/kjv.slm); make test runs the suites (also under AddressSanitizer +
# UndefinedBehaviorSanitizer, the threaded code under ThreadSanitizer) and a valgrind generation.
# make fuzz replays the libFuzzer corpora and fuzzes each target FUZZ_TIME seconds (fuzz/).
SHELL = /bin/bash
CC ?= cc
CFLAGS ?= -O3 -march=native
WARN = -std=c11 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -I.
LDLIBS = -lm -lpthread
MODELS ?= ../shared/models

# sources by folder (README "Where things are"); includes are written from the root: -I.
BASE = base/pool.c base/clock.c
RUNTIME = runtime/transformer.c runtime/sampler.c runtime/session.c
KERNELS = kernels/types.c kernels/kernels.c kernels/matmul.c kernels/matmul_float.c \
	kernels/matmul_int8.c kernels/matmul_kquant.c kernels/attention.c kernels/quant.c \
	kernels/blocks.c
APP = app/bench.c app/ppl.c app/attnmap.c app/term.c
IO = io/fileio.c io/json.c io/strbuf.c
CONVERT = convert/writer.c convert/llama2c.c convert/synth.c convert/convert.c convert/gguf.c \
	convert/safetensors.c convert/hf.c convert/pieces.c convert/quantize.c
TOKENIZER = tokenizer.c tokenizer/unicode.c tokenizer/pretok.c tokenizer/bytelevel.c
SERVER_PARSE = server/http.c server/openai.c  # the parsers, which the fuzz targets link alone
SERVER = $(SERVER_PARSE) server/engine.c server/serve.c
CORE = model.c $(TOKENIZER) $(RUNTIME) $(KERNELS) $(BASE) $(IO) app/ppl.c app/attnmap.c app/template.c app/chat.c app/term.c \
	$(SERVER)
EXPORT_SRC = $(CONVERT)
TESTS = tests/test_kernels.c tests/test_tokenizer.c tests/test_model.c tests/test_cli.c \
	tests/test_forward.c tests/test_matmul.c tests/test_attention.c tests/test_export.c \
	tests/test_gguf.c tests/test_hf.c tests/test_default.c tests/test_reliability.c \
	tests/test_attnmap.c tests/test_serve_page.c tests/test_deps.c tests/test_layout.c \
	tests/test_template.c tests/test_chat.c tests/test_server.c \
	tests/test_pretok.c tests/test_bpe.c tests/test_nfc.c tests/test_blocks.c \
	tests/test_quantize.c tests/test_sampler.c tests/test_real.c tests/test_types.c \
	tests/test_session.c tests/test_server_lib.c
HEADERS = $(wildcard *.h */*.h)

# build variants: release (./run, ./export), test (-Werror), asan
REL = build/release
TST = build/test
ASAN = build/asan
VG = build/valgrind
AVX2 = build/avx2
PLAIN = build/plain
EMU = build/avx512emu
TSAN = build/tsan
ARM = build/arm64
TEST_FLAGS = -O2 -g -march=native -Werror
VG_FLAGS = -O2 -g -Werror -march=native -mno-avx512f -mno-avxvnni  # valgrind 3.19 decodes neither AVX-512 nor AVX-VNNI
AVX2_FLAGS = -O2 -g -Werror -march=native -mno-avx512f  # the AVX2 (+F16C) kernels
PLAIN_FLAGS = -O2 -g -Werror -march=x86-64              # the plain C kernels
# the AVX-512 kernels on any AVX2 host, emulated through SIMDe (kernels/simd.h)
EMU_FLAGS = -O2 -g -Werror -march=native -mno-avx512f -DSL_SIMDE_AVX512 -Wno-psabi
TSAN_FLAGS = -O1 -g -Werror -march=native -fsanitize=thread
ASAN_FLAGS = -O1 -g -Werror -march=native -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ARM_FLAGS = -O2 -g -Werror -march=armv8.2-a+dotprod   # ARM64 NEON + sdot, cross-compiled
ARM_CC ?= aarch64-linux-gnu-gcc
# runs the (static) arm64 binaries on this machine
ARM_RUN ?= qemu-aarch64

DEFAULT_MODEL = models/kjv.slm
RUN_ARGS ?= -n 200 -i "And God said"

# The binaries are ./run and ./export, named by absolute path so that `run` can be the phony
# target that generates (GNU make treats ./run and run as one target).
.PHONY: all run export test test-all test-isa-dump test-unit test-asan test-tsan test-valgrind test-isa test-builds bench clean fuzz fuzz-all \
	fuzz-build
all: $(CURDIR)/run $(CURDIR)/export

$(CURDIR)/run: $(REL)/run
	cp $< $@
$(CURDIR)/export: $(REL)/export
	cp $< $@

# make run: build everything, then generate from the default model
run: all
	./run $(RUN_ARGS)
export: $(CURDIR)/export

define variant
$(1)/%.o: %.c $(HEADERS)
	@mkdir -p $$(@D)
	$$(CC) $(2) $$(WARN) -c $$< -o $$@
$(1)/attnmap_page.o: build/attnmap_page.c
	@mkdir -p $$(@D)
	$$(CC) $(2) $$(WARN) -c $$< -o $$@
$(1)/serve_page.o: build/serve_page.c
	@mkdir -p $$(@D)
	$$(CC) $(2) $$(WARN) -c $$< -o $$@
$(1)/run: $(1)/run.o $(1)/app/bench.o $(CORE:%.c=$(1)/%.o) $(1)/attnmap_page.o $(1)/serve_page.o
	$$(CC) $(2) $$^ -o $$@ $$(LDLIBS)
$(1)/export: $(1)/export.o $(EXPORT_SRC:%.c=$(1)/%.o) $(1)/model.o $(TOKENIZER:%.c=$(1)/%.o) \
		$(1)/kernels/types.o $(1)/kernels/kernels.o $(1)/kernels/quant.o $(1)/kernels/blocks.o \
		$(1)/app/template.o $(IO:%.c=$(1)/%.o)
	$$(CC) $(2) $$^ -o $$@ $$(LDLIBS)
$(1)/test_searchlight: $(TESTS:%.c=$(1)/%.o) $(CORE:%.c=$(1)/%.o) $(EXPORT_SRC:%.c=$(1)/%.o) \
		$(1)/attnmap_page.o $(1)/serve_page.o $(1)/tests/helpers.o
	$$(CC) $(2) $$^ -o $$@ -lcriterion -lpng $$(LDLIBS)
endef
$(eval $(call variant,$(REL),$(CFLAGS)))
$(eval $(call variant,$(TST),$(TEST_FLAGS)))
$(eval $(call variant,$(ASAN),$(ASAN_FLAGS)))
$(eval $(call variant,$(VG),$(VG_FLAGS)))
$(eval $(call variant,$(AVX2),$(AVX2_FLAGS)))
$(eval $(call variant,$(PLAIN),$(PLAIN_FLAGS)))
$(eval $(call variant,$(EMU),$(EMU_FLAGS)))
$(eval $(call variant,$(TSAN),$(TSAN_FLAGS)))
$(ARM)/%: CC = $(ARM_CC)
$(eval $(call variant,$(ARM),$(ARM_FLAGS)))
# static: qemu-aarch64 then needs no ARM64 libc (nor -L, whose loader and a multiarch libc6:arm64
# in the host's ld.so.cache do not mix: pthread_create hangs)
$(ARM)/run $(ARM)/export $(ARM)/isa_main: LDLIBS += -static

# The attention map page (app/attnmap.html) as C: one string literal per line (\, " and ?
# escaped, the last against trigraphs), then NULL.
build/attnmap_page.c: app/attnmap.html
	@mkdir -p build
	{ echo '// generated from app/attnmap.html by the Makefile: edit that file'; \
	  echo 'const char *const attnmap_page[] = {'; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$$/\\n",/' $<; \
	  echo '    0,'; echo '};'; } > $@

# The page that run -m serve serves at / (server/page.html), the same way: serve_page[]
# (server/page.h).
build/serve_page.c: server/page.html
	@mkdir -p build
	{ echo '// generated from server/page.html by the Makefile: edit that file'; \
	  echo 'const char *const serve_page[] = {'; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$$/\\n",/' $<; \
	  echo '    0,'; echo '};'; } > $@

# Each suite runs the binaries of its own variant (SL_BIN) on the files in $(MODELS).
# make test first checks (and, as root or with sudo -n, installs) the packages the suites use,
# before it builds anything: scripts/deps.sh prints the apt-get line and stops it otherwise.
test:
	@bash scripts/deps.sh build test arm
	@$(MAKE) --no-print-directory test-all
test-all: test-unit test-asan test-tsan test-valgrind test-isa test-isa-dump test-builds test-arm-run

# --verbose so that each skipped test prints its reason (a file missing from $(MODELS));
# the lines of running and passing tests are left out.
test-unit: $(TST)/test_searchlight $(TST)/run $(TST)/export
	set -o pipefail; SL_BIN=$(TST) SL_MODELS=$(MODELS) $(TST)/test_searchlight --verbose 2>&1 | \
		grep -v '^\[\(RUN \|PASS\)\]'

# The real model's suite (tests/test_real.c: SmolLM2-135M as published, and in f32) takes 2 to 3
# minutes under ASan or in plain C, so it runs in test-unit only; its code (the block kernels,
# the tokenizer, chat) runs in every variant through the tiny fixtures, and test-isa-dump and
# test-builds check that the variants compute the same bits.
NOT_REAL = --filter '!(real)/*'

# Criterion does not fail a test whose process reports a leak at exit: the log is checked for
# every report (tests/asan_check.sh), which lets pass only a leak of Criterion's own runner
# (tests/helpers.c turns LSan's exit status off in the suite's processes, so that those 48
# bytes alone do not fail the run; run and export keep it).
test-asan: $(ASAN)/test_searchlight $(ASAN)/run $(ASAN)/export
	set -o pipefail; SL_BIN=$(ASAN) SL_MODELS=$(MODELS) ASAN_OPTIONS=detect_leaks=1 \
		$(ASAN)/test_searchlight $(NOT_REAL) 2>&1 | tee $(ASAN)/test.log
	@bash tests/asan_check.sh $(ASAN)/test.log

# The thread pool and the threaded kernels under ThreadSanitizer: Criterion cannot run under
# TSan (its fixed-address arena), so tests/tsan_main.c drives the pool and the forward pass
# of the default model on 1 to 4 threads, and tests/tsan_server.sh the server's threads with
# curl (requests at once, a disconnect, a stop); any report fails.
$(TSAN)/tsan_main: $(TSAN)/tests/tsan_main.o $(CORE:%.c=$(TSAN)/%.o) $(TSAN)/attnmap_page.o $(TSAN)/serve_page.o
	$(CC) $(TSAN_FLAGS) $^ -o $@ $(LDLIBS)
test-tsan: $(TSAN)/tsan_main $(TSAN)/run
	set -o pipefail; TSAN_OPTIONS=halt_on_error=1 $(TSAN)/tsan_main $(DEFAULT_MODEL) 2>&1 | \
		tee $(TSAN)/test.log
	@! grep -n "WARNING: ThreadSanitizer" $(TSAN)/test.log
	bash tests/tsan_server.sh $(TSAN)/run $(DEFAULT_MODEL)

# Under memcheck (no errors, no leaks): an export of the committed Hugging Face fixture, and
# one greedy generation of the default model recording its attention, whose text and weights
# must equal the same binary's without valgrind. Needs nothing outside the repository.
VG_CMD = valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all
test-valgrind: $(VG)/run $(VG)/export
	$(VG_CMD) $(VG)/export --dtype q8_0 tests/fixtures/tiny-f32 $(VG)/tiny.slm > /dev/null
	$(VG)/run $(DEFAULT_MODEL) -t 0 -n 100 -i "And God said" --attn-dump $(VG)/attn.bin > $(VG)/greedy.txt
	$(VG_CMD) $(VG)/run $(DEFAULT_MODEL) -t 0 -n 100 -i "And God said" --attn-dump $(VG)/attn-vg.bin \
		--attn-map $(VG)/map.html | cmp - $(VG)/greedy.txt
	cmp $(VG)/attn.bin $(VG)/attn-vg.bin

# The other instruction sets, whatever this machine is: the whole suite on the plain C build
# and, where the native build is AVX-512, on the AVX2 build (-mno-avx512f); where it is not,
# the kernel suites (matmul, attention, quant, kernels: each fast kernel against its plain
# twin) on the AVX-512 build emulated through SIMDe (kernels/simd.h), which says so. Then
# test-builds: each build's generations, attention weights and perplexities on every weight
# type against the native build's, bit for bit (tests/compare_builds.sh says what it runs, and
# the one stated exception).
NATIVE_AVX512 := $(shell $(CC) -march=native -dM -E -x c /dev/null 2>/dev/null | grep -c '__AVX512F__ ')
ifeq ($(NATIVE_AVX512),1)
ISA_WHOLE = $(AVX2) $(PLAIN)
ISA_TWINS =
else
ISA_WHOLE = $(PLAIN)
ISA_TWINS = $(EMU)
endif
ISA_SUITE = SL_BIN=$$b SL_MODELS=$(MODELS) $$b/test_searchlight
test-isa: $(foreach b,$(ISA_WHOLE) $(ISA_TWINS),$(b)/test_searchlight $(b)/run $(b)/export)
	@set -o pipefail; for b in $(ISA_WHOLE); do echo "== the whole suite but real/* on $$b"; \
		$(ISA_SUITE) $(NOT_REAL) > $$b/test.log 2>&1 || \
			{ grep -v '^\[\(RUN \|PASS\)\]' $$b/test.log | tail -60; exit 1; }; \
		tail -1 $$b/test.log; done
	@for b in $(ISA_TWINS); do \
		echo "== the kernel suites on $$b: the AVX-512 kernels, emulated by SIMDe on this machine"; \
		for s in matmul attention quant kernels; do $(ISA_SUITE) --filter "$$s/*" || exit 1; done; done
test-builds: $(TST)/run $(TST)/export $(AVX2)/run $(PLAIN)/run $(EMU)/run
	bash tests/compare_builds.sh $(TST)/run plain=$(PLAIN)/run emu=$(EMU)/run \
		$(if $(filter 1,$(NATIVE_AVX512)),avx2=$(AVX2)/run)

# tests/isa_main.c: the fast kernels against the reference without Criterion; --dump writes
# every output, for cmp between builds (make test-arm).
$(TST)/isa_main: $(TST)/tests/isa_main.o $(CORE:%.c=$(TST)/%.o) $(TST)/attnmap_page.o $(TST)/serve_page.o
	$(CC) $(TEST_FLAGS) $^ -o $@ $(LDLIBS)
$(AVX2)/isa_main: $(AVX2)/tests/isa_main.o $(CORE:%.c=$(AVX2)/%.o) $(AVX2)/attnmap_page.o $(AVX2)/serve_page.o
	$(CC) $(AVX2_FLAGS) $^ -o $@ $(LDLIBS)
$(ARM)/isa_main: $(ARM)/tests/isa_main.o $(CORE:%.c=$(ARM)/%.o) $(ARM)/attnmap_page.o $(ARM)/serve_page.o
	$(CC) $(ARM_FLAGS) $^ -o $@ $(LDLIBS)
$(PLAIN)/isa_main: $(PLAIN)/tests/isa_main.o $(CORE:%.c=$(PLAIN)/%.o) $(PLAIN)/attnmap_page.o $(PLAIN)/serve_page.o
	$(CC) $(PLAIN_FLAGS) $^ -o $@ $(LDLIBS)
$(EMU)/isa_main: $(EMU)/tests/isa_main.o $(CORE:%.c=$(EMU)/%.o) $(EMU)/attnmap_page.o $(EMU)/serve_page.o
	$(CC) $(EMU_FLAGS) $^ -o $@ $(LDLIBS)

# The same dump comparison on this x86 host: emulated AVX-512 against AVX2, every output; plain
# C against AVX2 without the f32/f16/bf16 matmuls (rounded per product there: matmul.h).
test-isa-dump: $(TST)/isa_main $(AVX2)/isa_main $(PLAIN)/isa_main $(EMU)/isa_main
	$(AVX2)/isa_main --dump $(AVX2)/isa.dump > /dev/null
	$(TST)/isa_main --dump $(TST)/isa.dump > /dev/null
	@cmp $(AVX2)/isa.dump $(TST)/isa.dump && echo "same      isa_main --dump: every kernel output of the native build ($(TST)) and avx2"
	$(EMU)/isa_main --dump $(EMU)/isa.dump > /dev/null
	@cmp $(AVX2)/isa.dump $(EMU)/isa.dump && echo "same      isa_main --dump: every kernel output of $(EMU) and avx2"
	$(AVX2)/isa_main --no-dense --dump $(AVX2)/isa-blocks.dump > /dev/null
	$(PLAIN)/isa_main --no-dense --dump $(PLAIN)/isa-blocks.dump > /dev/null
	@cmp $(AVX2)/isa-blocks.dump $(PLAIN)/isa-blocks.dump && \
		echo "same      isa_main --no-dense --dump: every block-type and attention output of $(PLAIN) and avx2"

# ARM64 (make test-arm; scripts/deps.sh arm installs the cross compiler and qemu-user): the
# build/arm64 variant, cross-compiled and run under qemu-aarch64: (a) its kernels against the
# reference (tests/isa_main.c); (b) the same bits as the x86 AVX2 build: isa_main's dump of
# every kernel output, then generations, --ppl and --attn-dump of every weight type
# (scripts/arm-compare.sh). Any difference fails.
.PHONY: test-arm test-arm-run
test-arm:
	@bash scripts/deps.sh build arm
	@$(MAKE) --no-print-directory test-arm-run
test-arm-run: $(ARM)/isa_main $(ARM)/run $(AVX2)/isa_main $(AVX2)/run $(AVX2)/export
	$(ARM_RUN) $(ARM)/isa_main --dump $(ARM)/isa.dump
	$(AVX2)/isa_main --dump $(AVX2)/isa.dump > /dev/null
	@cmp $(AVX2)/isa.dump $(ARM)/isa.dump && \
		echo "same      isa_main --dump: every kernel output of arm64 and avx2 ($$(wc -c < $(ARM)/isa.dump) bytes)"
	bash scripts/arm-compare.sh $(AVX2) $(ARM) "$(ARM_RUN)"

# The standard benchmark set: every synthetic shape in every weight type, 1 and 2 threads
# (BENCH_SHAPES, BENCH_DTYPES, BENCH_T and BENCH_REPS to change).
BENCH_SHAPES ?= stories15M stories42M stories110M tinyllama-1.1B
BENCH_DTYPES ?= f32 f16 bf16 q8_0
BENCH_T ?= 1,2
BENCH_REPS ?= 5
bench: all
	@mkdir -p build/bench
	@for s in $(BENCH_SHAPES); do for d in $(BENCH_DTYPES); do \
		m=build/bench/$$s-$$d.slm; \
		[ -f $$m ] || ./export --dtype $$d --random $$s $$m > /dev/null || exit 1; \
		echo "## $$s $$d"; echo; \
		./run $$m --bench -T $(BENCH_T) --reps $(BENCH_REPS) || exit 1; echo; \
	done; done

# libFuzzer targets (fuzz/, Debian's clang and libclang-rt-14-dev): `make fuzz` replays each
# committed corpus (fuzz/corpus/<target>), then fuzzes each target for FUZZ_TIME seconds
# on a scratch copy of its corpus under build/fuzz/corpus, so the committed one is untouched.
FUZZ = build/fuzz
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_TARGETS = model tokenizer llama2c gguf safetensors json hf_tokenizer hf_config pretok nfc \
	http openai
FUZZ_FLAGS = -g -O1 -march=native -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=all
FUZZ_LIB = model.c kernels/types.c kernels/kernels.c kernels/quant.c kernels/blocks.c \
	$(TOKENIZER) $(IO) $(EXPORT_SRC) $(SERVER_PARSE)
FUZZ_RUN = ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
$(FUZZ)/%.o: %.c $(HEADERS) fuzz/fuzz.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(WARN) -c $< -o $@
$(FUZZ)/fuzz_%: $(FUZZ)/fuzz/fuzz_%.o $(FUZZ_LIB:%.c=$(FUZZ)/%.o)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $^ -o $@ $(LDLIBS)
.PRECIOUS: $(FUZZ)/%.o
fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ)/fuzz_%)
fuzz:
	@bash scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory fuzz-all
fuzz-all: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz_$$t: replaying fuzz/corpus/$$t"; \
		$(FUZZ_RUN) $(FUZZ)/fuzz_$$t -runs=0 -timeout=10 -close_fd_mask=2 fuzz/corpus/$$t \
			> $(FUZZ)/$$t-replay.log 2>&1 || { tail -60 $(FUZZ)/$$t-replay.log; exit 1; }; \
		tail -n1 $(FUZZ)/$$t-replay.log; \
	done
	@for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ)/corpus/$$t && mkdir -p $(FUZZ)/corpus/$$t && \
		cp fuzz/corpus/$$t/* $(FUZZ)/corpus/$$t/ && \
		echo "== fuzz_$$t: $(FUZZ_TIME) s" && \
		$(FUZZ_RUN) $(FUZZ)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=10 -close_fd_mask=2 \
			-print_final_stats=1 -artifact_prefix=$(FUZZ)/$$t- $(FUZZ)/corpus/$$t \
			> $(FUZZ)/$$t.log 2>&1 || { tail -60 $(FUZZ)/$$t.log; exit 1; }; \
		grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units' $(FUZZ)/$$t.log; \
	done

clean:
	rm -rf build run export

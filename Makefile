# searchlight: make builds ./run and ./export; make test runs the suites (also under
# AddressSanitizer + UndefinedBehaviorSanitizer) and a valgrind generation.
CC ?= cc
CFLAGS ?= -O3 -march=native
WARN = -std=c11 -Wall -Wextra -D_POSIX_C_SOURCE=200809L
LDLIBS = -lm -lpthread
MODELS ?= ../shared/models

CORE = model.c tokenizer.c kernels.c transformer.c sampler.c
EXPORT_SRC = writer.c llama2c.c
TESTS = $(wildcard tests/test_*.c)
HEADERS = $(wildcard *.h tests/*.h)

# build variants: release (./run, ./export), test (-Werror), asan
REL = build/release
TST = build/test
ASAN = build/asan
TEST_FLAGS = -O2 -g -march=native -Werror
ASAN_FLAGS = -O1 -g -Werror -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all test test-unit test-asan test-valgrind clean
all: run export

run: $(REL)/run
	cp $< $@
export: $(REL)/export
	cp $< $@

define variant
$(1)/%.o: %.c $(HEADERS) | $(1)/tests
	$$(CC) $(2) $$(WARN) -c $$< -o $$@
$(1)/run: $(1)/run.o $(CORE:%.c=$(1)/%.o)
	$$(CC) $(2) $$^ -o $$@ $$(LDLIBS)
$(1)/export: $(1)/export.o $(EXPORT_SRC:%.c=$(1)/%.o) $(1)/model.o $(1)/tokenizer.o
	$$(CC) $(2) $$^ -o $$@ $$(LDLIBS)
$(1)/test_searchlight: $(TESTS:%.c=$(1)/%.o) $(CORE:%.c=$(1)/%.o) $(EXPORT_SRC:%.c=$(1)/%.o) $(1)/tests/helpers.o
	$$(CC) $(2) $$^ -o $$@ -lcriterion $$(LDLIBS)
$(1)/tests:
	mkdir -p $$@
endef
$(eval $(call variant,$(REL),$(CFLAGS)))
$(eval $(call variant,$(TST),$(TEST_FLAGS)))
$(eval $(call variant,$(ASAN),$(ASAN_FLAGS)))

# Each suite runs the binaries of its own variant (SL_BIN) on the files in $(MODELS).
test: test-unit test-asan test-valgrind

test-unit: $(TST)/test_searchlight $(TST)/run $(TST)/export
	SL_BIN=$(TST) SL_MODELS=$(MODELS) $(TST)/test_searchlight

test-asan: $(ASAN)/test_searchlight $(ASAN)/run $(ASAN)/export
	SL_BIN=$(ASAN) SL_MODELS=$(MODELS) ASAN_OPTIONS=detect_leaks=1 $(ASAN)/test_searchlight

# One full generation of stories260K under memcheck: no errors, no leaks.
test-valgrind: $(TST)/run $(TST)/export
	$(TST)/export --tokenizer $(MODELS)/tok512.bin $(MODELS)/stories260K.bin $(TST)/stories260K.slm > /dev/null
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all \
		$(TST)/run $(TST)/stories260K.slm -t 0 -n 200 > /dev/null

clean:
	rm -rf build run export

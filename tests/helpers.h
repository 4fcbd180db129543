// tests/helpers.h: shared helpers for the Criterion suites.
//
// The suites read real model files from $SL_MODELS (default ../shared/models) and run
// the binaries in $SL_BIN (default .). A missing model file skips a test with a reason,
// except under CI=true, where it fails: CI must never skip.
#ifndef SEARCHLIGHT_TESTS_HELPERS_H
#define SEARCHLIGHT_TESTS_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

// Path of a file under $SL_MODELS; skips (or, in CI, fails) the test if it is missing.
const char *model_file(const char *name);

// Whether a program is on PATH; if not, skips the test (or, in CI, fails it) saying why.
void need_program(const char *name, const char *package);

// Path of a binary under $SL_BIN.
const char *bin_path(const char *name);

// This test process's temporary directory (created on first use), and a path in it.
// Paths come from a small ring of buffers: strdup one that must live long.
const char *tmp_dir(void);
const char *tmp_file(const char *name);

// Runs a shell command; captures stdout and stderr (NUL-terminated, caller frees).
// Returns the exit status, or -1 if the command died from a signal.
int run_cmd(char **out, char **err, const char *fmt, ...);

// Reads a whole file (caller frees); NULL if it cannot. *n receives its size.
char *read_all(const char *path, size_t *n);

// The path of a committed fixture: $SL_FIXTURES/name, or tests/fixtures/name (one of 8
// rotating buffers).
const char *fixture(const char *name);
int write_all_file(const char *path, const void *data, size_t n);
int file_exists(const char *path);

// Deterministic xorshift64* random numbers for tests.
uint64_t test_rand(uint64_t *s);
float test_randf(uint64_t *s);  // uniform in [-1, 1)

// Exports stories260K (from $SL_MODELS) with the export binary into this test's temporary
// directory; returns the path (caller frees).
char *export_stories260k(void);

// The same with export --dtype (f32, f16, bf16 or q8_0), exported once per test process
// and type; the path stays valid for the whole process.
const char *export_stories260k_as(const char *dtype);

// Writes a small llama2.c-style tokenizer.bin with `vocab` tokens: <unk>, <s>, </s>,
// the 256 byte tokens, then merges of letters (vocab must be >= 259).
void write_test_tokenizer_bin(const char *path, int vocab);

// The header of the small test shape: dim 16, hidden 40, 2 layers, 4 heads, 2 kv heads,
// vocab 300, context 32, f32 (tokenizer_bytes a placeholder).
SlHeader test_model_header(int shared_classifier);

// Writes a small valid model of that shape with random weights. Returns its header.
SlHeader write_test_model(const char *path, int shared_classifier);

// The random strings of tests/fixtures/make_pretok.py, and a checker of the fixtures made from
// them (pretok.txt, bpe-ids.txt): a header line "seed S strings N block B shown K atoms A",
// then per kind a line "kind NAME ...", a line "hashes H1 H2 ..." (FNV-1a over each block of B
// strings' values, uint32 little-endian, 0xFFFFFFFF after each string) and K lines "i v,v,...".
// For each kind, setup(ctx, line) readies ctx from the kind line (0 = ok) and values(ctx, text,
// n, out, cap) gives a string's values; any difference fails the test. Returns the kinds seen.
typedef int (*corpus_setup_fn)(void *ctx, const char *kind_line);
typedef size_t (*corpus_values_fn)(void *ctx, const char *text, size_t n, uint32_t *out,
                                   size_t cap);
int check_corpus_fixture(const char *fixture, corpus_setup_fn setup, corpus_values_fn values,
                         void *ctx);

// Writes a copy of model file bytes b (n long, cut to keep) with byte `at` set to v (at < 0:
// none), runs it, and expects one line of stderr mentioning want and exit status 1.
void refuse_patched_model(const char *b, size_t n, size_t keep, long at, uint8_t v,
                          const char *want);

// The token ids of an attention dump (app/attnmap.h): the positions that ran; *n receives
// their count. The caller frees them.
int32_t *attn_dump_ids(const char *path, size_t *n);

#endif

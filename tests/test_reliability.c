// tests/test_reliability.c: hostile inputs, soak and determinism (issue 7).
//
// badinput: every bad input the CLI can meet gives one specific message and exit status,
// never a crash or a hang (cases already covered elsewhere: test_cli.c's bad_flags_exit_2
// for -n 0, -n -5, -n beyond the context and the other flags; test_model.c for the loader's
// error codes). soak: one process generates to the full context many times; memory stays
// flat and every repetition prints the same bytes. determinism: the same seed gives the
// same tokens for 1 to 4 threads, batched and one-token-at-a-time prompts, f32 and q8_0
// weights, f32 and f16 caches, and across runs.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model.h"
#include "base/pool.h"
#include "runtime/sampler.h"
#include "runtime/transformer.h"
#include "helpers.h"

// ----------------------------------------------------------------------------
// badinput

// Runs `run ARGS`; asserts the exit status, a message on stderr and nothing on stdout.
static void expect_run(int status, const char *needle, const char *fmt, ...) {
    char args[6000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s %s", bin_path("run"), args);
    cr_assert_eq(rc, status, "'run %s' exited %d, want %d; stderr: %s", args, rc, status, err);
    cr_assert(strstr(err, needle), "'run %s': stderr lacks \"%s\": %s", args, needle, err);
    if (status) cr_assert_str_eq(out, "", "'run %s' printed to stdout", args);
    free(out), free(err);
}

// No file in the test directory whose name contains `part`.
static int no_file_containing(const char *part) {
    DIR *d = opendir(tmp_dir());
    cr_assert(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) found |= strstr(e->d_name, part) != NULL;
    closedir(d);
    return !found;
}

static char *model_bytes(size_t *n) {
    const char *path = tmp_file("rel-valid.slm");
    write_test_model(path, 0);
    char *b = read_all(path, n);
    cr_assert(b);
    return b;
}

Test(badinput, missing_directory_empty_unreadable) {
    expect_run(1, "/nonexistent/m.slm: cannot open: No such file or directory", "/nonexistent/m.slm");
    expect_run(1, ": is a directory, expected a model file", "%s", tmp_dir());
    const char *empty = tmp_file("rel-empty.slm");
    cr_assert_eq(write_all_file(empty, "", 0), 0);
    expect_run(1, "rel-empty.slm: empty file (0 bytes)", "%s", empty);
    expect_run(1, "/dev/null: not a regular file", "/dev/null");
    // chmod 000: refused with EACCES, except for root, whom permissions do not stop: then
    // the file is read like any other (asserted, so the case is never silently skipped)
    char *path = strdup(tmp_file("rel-unreadable.slm"));
    write_test_model(path, 1);
    cr_assert_eq(chmod(path, 0), 0);
    if (geteuid() == 0) {
        cr_assert_eq(access(path, R_OK), 0, "root reads a mode-000 file");
        char *out, *err;
        cr_assert_eq(run_cmd(&out, &err, "%s %s -t 0 -n 8", bin_path("run"), path), 0, "%s", err);
        cr_assert(strlen(out) > 1, "root generates from it");
        free(out), free(err);
    } else {
        expect_run(1, "rel-unreadable.slm: cannot open: Permission denied", "%s", path);
    }
    chmod(path, 0644);
    free(path);
}

// The file cut at every section boundary: inside and at the end of the header, the
// tokenizer section, and the start, first byte and end of every tensor.
Test(badinput, truncated_at_every_section_boundary) {
    size_t n;
    char *b = model_bytes(&n);
    SlHeader h;
    memcpy(&h, b, sizeof h);
    SlLayout lay;
    cr_assert_eq(model_layout(&h, NULL, &lay, "valid"), MODEL_OK);
    cr_assert_eq(lay.file_bytes, n);
    char *path = strdup(tmp_file("rel-cut.slm"));
    size_t short_cuts[] = {1, 8, 12, SL_HEADER_BYTES - 1};
    for (size_t i = 0; i < sizeof short_cuts / sizeof short_cuts[0]; i++) {
        cr_assert_eq(write_all_file(path, b, short_cuts[i]), 0);
        expect_run(1, "shorter than the 256-byte header (truncated?)", "%s", path);
    }
    size_t cuts[4 * SL_T_COUNT + 4], nc = 0;
    size_t tok_end = SL_HEADER_BYTES + h.tokenizer_bytes;
    cuts[nc++] = SL_HEADER_BYTES;
    cuts[nc++] = SL_HEADER_BYTES + 4;
    cuts[nc++] = tok_end - 1;
    cuts[nc++] = tok_end;
    int tensors = 0;
    for (int t = 0; t < SL_T_COUNT; t++) {
        if (!lay.bytes[t]) continue;
        tensors++;
        cuts[nc++] = lay.offset[t];
        cuts[nc++] = lay.offset[t] + 1;
        cuts[nc++] = lay.offset[t] + lay.bytes[t] - 1;
        if (lay.offset[t] + lay.bytes[t] < n) cuts[nc++] = lay.offset[t] + lay.bytes[t];
    }
    cr_assert_eq(tensors, SL_T_COUNT_V1, "version 1 with a separate classifier: all 12 tensors");
    for (size_t i = 0; i < nc; i++) {
        cr_assert_eq(write_all_file(path, b, cuts[i]), 0);
        char want[96];
        snprintf(want, sizeof want, ": %zu bytes, header implies %zu", cuts[i], n);
        expect_run(1, want, "%s", path);
    }
    free(b), free(path);
}

static void write_mutated(const char *path, const char *b, size_t n, void (*mutate)(SlHeader *)) {
    char *c = malloc(n);
    memcpy(c, b, n);
    mutate((SlHeader *)c);
    cr_assert_eq(write_all_file(path, c, n), 0);
    free(c);
}

static void bad_magic(SlHeader *h) { memcpy(h->magic, "GGUF\3\0\0\0", 8); }
static void future_version(SlHeader *h) { h->version = SL_VERSION + 1; }
static void zero_dim(SlHeader *h) { h->dim = 0; }
static void negative_hidden(SlHeader *h) { h->hidden_dim = -40; }
static void negative_vocab(SlHeader *h) { h->vocab_size = -1; }
static void zero_seq_len(SlHeader *h) { h->seq_len = 0; }
static void heads_not_dividing(SlHeader *h) { h->n_heads = 3; }
static void size_t_overflow(SlHeader *h) {
    // w1: 2^31-1 layers x hidden 2^31-1 x dim 16, past 2^64 elements
    h->n_layers = INT32_MAX, h->hidden_dim = INT32_MAX;
}
static void head_product_overflow(SlHeader *h) { h->n_heads = 1 << 20, h->dim = 1 << 20, h->n_kv_heads = 1, h->head_dim = 1 << 12; }

Test(badinput, magic_version_and_absurd_dimensions) {
    size_t n;
    char *b = model_bytes(&n);
    char *path = strdup(tmp_file("rel-mut.slm"));
    const struct { void (*mutate)(SlHeader *); const char *needle; } cases[] = {
        {bad_magic, "expected \"SRCHLGHT\" (not a searchlight model: convert it with export)"},
        {future_version, "format version 4, this build reads versions 1 to 3"},
        {zero_dim, "dim 0, expected > 0"},
        {negative_hidden, "hidden_dim -40, expected > 0"},
        {negative_vocab, "vocab_size -1, expected > 0"},
        {zero_seq_len, "seq_len 0, expected > 0"},
        {heads_not_dividing, "n_heads 3 does not divide dim 16"},
        {size_t_overflow, "tensor w1: 2147483647 x 2147483647 x 16 elements overflow"},
        {head_product_overflow, "n_heads 1048576 x head_dim 4096 overflows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_mutated(path, b, n, cases[i].mutate);
        expect_run(1, cases[i].needle, "%s", path);
        expect_run(1, cases[i].needle, "%s -m tokenize -i x", path);  // the same checks
    }
    free(b), free(path);
}

Test(badinput, vocab_mismatch_with_tokenizer_bin) {
    char *model = strdup(tmp_file("rel-vocab.slm"));
    write_test_model(model, 1);  // vocab 300
    const char *tok = tmp_file("rel-tok400.bin");
    write_test_tokenizer_bin(tok, 400);
    expect_run(1, "rel-tok400.bin: 400 tokens, the model's vocab_size is 300", "%s -z %s", model, tok);
    expect_run(1, "rel-tok400.bin: 400 tokens, the model's vocab_size is 300",
               "%s -z %s -m tokenize -i hi", model, tok);
    tok = tmp_file("rel-tok300.bin");
    write_test_tokenizer_bin(tok, 300);  // the right size is accepted
    char *out;
    cr_assert_eq(run_cmd(&out, NULL, "%s %s -z %s -m tokenize -i ''", bin_path("run"), model, tok), 0);
    cr_assert_str_eq(out, "1\n");
    free(out), free(model);
}

Test(badinput, prompts) {
    char *model = strdup(tmp_file("rel-prompt.slm"));
    write_test_model(model, 1);  // context 32, byte tokens for every byte
    // longer than the context: BOS, the dummy-prefix space and 40 digits
    expect_run(1, "the prompt is 42 tokens, longer than the context of 32",
               "%s -i 0123456789012345678901234567890123456789", model);
    // invalid UTF-8 (a lone continuation byte, a truncated sequence, 0xff): byte fallback,
    // echoed back byte for byte
    char *out, *err;
    cr_assert_eq(run_cmd(&out, &err, "%s %s -t 0 -n 24 -i \"$(printf 'a\\200b\\303\\377')\"",
                         bin_path("run"), model), 0, "%s", err);
    cr_assert(strncmp(out, "a\x80" "b\xc3\xff", 5) == 0, "the prompt is echoed: %s", out);
    free(out), free(err);
    // the empty prompt: BOS alone, then generation
    cr_assert_eq(run_cmd(&out, NULL, "%s %s -m tokenize -i ''", bin_path("run"), model), 0);
    cr_assert_str_eq(out, "1\n");
    free(out);
    cr_assert_eq(run_cmd(&out, &err, "%s %s -s 3 -n 32 -i ''", bin_path("run"), model), 0, "%s", err);
    free(out), free(err);
    free(model);
}

// argv cannot carry a NUL byte, so NUL is tested at the tokenizer API: it encodes through
// its byte token and decodes back, the bytes after it included.
Test(badinput, nul_bytes_through_the_tokenizer) {
    const char *path = tmp_file("rel-nul.slm");
    write_test_model(path, 1);
    Model m;
    cr_assert_eq(model_open(&m, path, 0), MODEL_OK);
    const char text[] = "ab\0c\0\0d\xff";
    size_t len = sizeof text - 1, n;
    int ids[32];
    cr_assert_eq(tokenizer_encode(&m.tokenizer, text, len, 1, 0, ids, 32, &n), TOK_OK);
    char back[32];
    size_t got = 0;
    for (size_t i = 1; i < n; i++) {
        size_t l;
        const char *p = tokenizer_decode(&m.tokenizer, ids[i - 1], ids[i], &l);
        cr_assert(got + l <= sizeof back);
        memcpy(back + got, p, l);
        got += l;
    }
    cr_assert_eq(got, len, "decoded %zu bytes of %zu", got, len);
    cr_assert(memcmp(back, text, len) == 0);
    cr_assert_eq(tokenizer_encode(&m.tokenizer, text, len, 1, 0, ids, 3, &n), TOK_ERR_SPACE);
    model_close(&m);
}

Test(badinput, more_bad_flags) {
    char *model = strdup(tmp_file("rel-flags.slm"));
    write_test_model(model, 1);
    expect_run(2, "-n: 33 is beyond the context of 32 positions", "%s -n 33", model);
    expect_run(2, "-n: 2147483648 is out of range", "%s -n 2147483648", model);
    expect_run(2, "-k: 99999999999 is out of range", "%s -k 99999999999", model);
    expect_run(2, "-T: 5000 is out of range", "%s -T 5000", model);
    expect_run(2, "-p: nan is out of range", "%s -p nan", model);
    expect_run(2, "-t: -inf is out of range", "%s -t -inf", model);
    expect_run(2, "-s: 99999999999999999999 is out of range for 64 bits", "%s -s 99999999999999999999", model);
    expect_run(2, "-s: '' is not an integer", "%s -s ''", model);
    expect_run(2, "-n: '' is not an integer", "%s -n ''", model);
    free(model);
}

Test(badinput, export_to_an_unwritable_path) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s --random stories15M /nonexistent/dir/x.slm", bin_path("export"));
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "cannot create a temporary file beside it: No such file or directory"), "%s", err);
    free(out), free(err);
    const char *file = tmp_file("rel-plain");
    cr_assert_eq(write_all_file(file, "x", 1), 0);
    rc = run_cmd(&out, &err, "%s --random stories15M %s/x.slm", bin_path("export"), file);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "cannot create a temporary file beside it: Not a directory"), "%s", err);
    free(out), free(err);
    cr_assert(no_file_containing(".tmp-"));
}

// A full disk, simulated with RLIMIT_FSIZE (ulimit -f, in KiB): write() fails with EFBIG.
// Both with SIGXFSZ ignored by the caller and with its default action (export ignores it
// itself, so that the failed write is reported and the temporary file removed).
Test(badinput, export_on_a_full_disk) {
    const char *dst = tmp_file("rel-full.slm");
    for (int trap = 0; trap <= 1; trap++) {
        cr_assert_eq(write_all_file(dst, "old bytes", 9), 0);
        char *out, *err;
        int rc = run_cmd(&out, &err, "(%s ulimit -f 1024; exec %s --random stories15M %s)",
                         trap ? "trap '' XFSZ;" : "", bin_path("export"), dst);
        cr_assert_eq(rc, 1, "trap %d: exit %d: %s", trap, rc, err);
        cr_assert(strstr(err, "rel-full.slm: write failed: File too large (left as it was)"), "%s", err);
        size_t n;
        char *old = read_all(dst, &n);
        cr_assert(n == 9 && memcmp(old, "old bytes", 9) == 0, "the old file was changed");
        cr_assert(no_file_containing("rel-full.slm.tmp-"), "a temporary file remains");
        free(old), free(out), free(err);
    }
}

// A really full disk where mounting is permitted: a 512 KiB tmpfs in a private mount
// namespace (unshare -m), so nothing outlives the command. write() fails with ENOSPC.
Test(badinput, export_on_a_full_tmpfs) {
    char *dir = strdup(tmp_file("rel-tmpfs"));
    cr_assert_eq(mkdir(dir, 0755), 0);
    char *out, *err;
    int rc = run_cmd(&out, &err,
                     "unshare -m sh -c 'mount -t tmpfs -o size=512k tmpfs %s || exit 77; "
                     "printf \"old bytes\" > %s/x.slm; %s --random stories15M %s/x.slm; "
                     "echo \"rc=$?\"; cat %s/x.slm; echo; ls -a %s'",
                     dir, dir, bin_path("export"), dir, dir, dir);
    if (rc != 0) {
        free(out), free(err), free(dir);
        cr_skip_test("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); "
                     "export_on_a_full_disk covers the failed write with RLIMIT_FSIZE");
    }
    cr_assert(strstr(err, "x.slm: write failed: No space left on device (left as it was)"), "%s", err);
    cr_assert(strstr(out, "rc=1\nold bytes\n"), "the old file was changed: %s", out);
    cr_assert(!strstr(out, ".tmp-"), "a temporary file remains: %s", out);
    free(out), free(err), free(dir);
}

// SIGINT in the middle of writing: the old file stays, the temporary file goes.
Test(badinput, export_interrupted_by_sigint) {
    char *dst = strdup(tmp_file("rel-int.slm"));
    cr_assert_eq(write_all_file(dst, "old bytes", 9), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(bin_path("export"), "export", "--dtype", "q8_0", "--random", "stories110M", dst,
              (char *)NULL);
        _exit(127);
    }
    // wait until the temporary file exists and has some bytes, then interrupt
    int signalled = 0, status = 0;
    for (int i = 0; i < 20000 && !signalled; i++) {
        DIR *d = opendir(tmp_dir());
        for (struct dirent *e; d && (e = readdir(d));) {
            if (!strstr(e->d_name, "rel-int.slm.tmp-")) continue;
            struct stat st;
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", tmp_dir(), e->d_name);
            if (stat(p, &st) == 0 && st.st_size > 0) signalled = kill(pid, SIGINT) == 0;
        }
        if (d) closedir(d);
        if (!signalled) {
            cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "export ended before the signal");
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    }
    cr_assert(signalled, "the temporary file never appeared");
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "export died of SIGINT (status %d)", status);
    size_t n;
    char *old = read_all(dst, &n);
    cr_assert(n == 9 && memcmp(old, "old bytes", 9) == 0, "the old file was changed");
    cr_assert(no_file_containing("rel-int.slm.tmp-"), "a temporary file remains");
    free(old), free(dst);
}

// ----------------------------------------------------------------------------
// generation at the library level: the prompt batched or one token at a time

// Generates from `prompt` up to `positions` positions with a fresh sampler of `seed`;
// writes the tokens to out (positions of them: the prompt, then the samples; no stop at
// BOS or EOS). Returns the count.
static size_t generate_tokens(Transformer *t, const char *prompt, int batched, uint64_t seed,
                              size_t positions, int *out) {
    const Tokenizer *tok = &t->model.tokenizer;
    size_t n;
    cr_assert_eq(tokenizer_encode(tok, prompt, strlen(prompt), 1, 0, out, positions, &n), TOK_OK);
    cr_assert(n < positions);
    float *logits = NULL;
    if (batched) {
        logits = transformer_forward(t, out, n, 0);
    } else {
        for (size_t i = 0; i < n; i++) logits = transformer_forward(t, &out[i], 1, i);
    }
    Sampler s;
    cr_assert_eq(sampler_build(&s, t->model.header.vocab_size, 0.9f, 0.9f, 0, seed), 0);
    for (size_t pos = n; pos < positions; pos++) {
        out[pos] = sampler_sample(&s, logits);
        if (pos + 1 < positions) logits = transformer_forward(t, &out[pos], 1, pos);
    }
    sampler_free(&s);
    return positions;
}

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

// Under AddressSanitizer freed memory sits in its quarantine (up to 256 MiB), so resident
// memory grows by design: there LeakSanitizer, at exit, checks that every allocation was
// freed, and the RSS bound applies to the other builds.
#if defined(__SANITIZE_ADDRESS__)
#define SOAK_REPS 6
#define RSS_BOUND_KIB LONG_MAX
#else
#define SOAK_REPS 12
#define RSS_BOUND_KIB 1024
#endif

// The default model (context 256) generates to its full context SOAK_REPS times in one
// process: the same bytes each time, and the resident memory after the second repetition
// and after the last differ by less than 1 MiB (see RSS_BOUND_KIB).
Test(soak, full_context_many_times) {
    cr_assert(file_exists("models/kjv.slm"), "run the tests from the repository root");
    Pool *pool = pool_create(2);
    Transformer t;
    cr_assert_eq(transformer_build(&t, "models/kjv.slm", pool, ATTN_KV_F32), MODEL_OK);
    size_t ctx = (size_t)t.model.header.seq_len;
    cr_assert_eq(ctx, 256);
    int *ref = malloc(ctx * sizeof(int)), *got = malloc(ctx * sizeof(int));
    generate_tokens(&t, "And God said", 1, 42, ctx, ref);
    long rss2 = 0;
    for (int rep = 2; rep <= SOAK_REPS; rep++) {
        generate_tokens(&t, "And God said", 1, 42, ctx, got);
        cr_assert(memcmp(got, ref, ctx * sizeof(int)) == 0, "repetition %d differs", rep);
        if (rep == 2) rss2 = vm_rss_kib();
    }
    long rss_n = vm_rss_kib();
    cr_assert(rss_n - rss2 < RSS_BOUND_KIB, "VmRSS grew from %ld to %ld KiB over %d repetitions", rss2,
              rss_n, SOAK_REPS - 2);
    // another seed gives another text
    generate_tokens(&t, "And God said", 1, 43, ctx, got);
    cr_assert(memcmp(got, ref, ctx * sizeof(int)) != 0);
    free(ref), free(got);
    transformer_free(&t);
    pool_destroy(pool);
}

// Building and freeing the whole runtime over and over leaks nothing either.
Test(soak, build_and_free_repeatedly) {
    long rss2 = 0;
    for (int rep = 1; rep <= 2 * SOAK_REPS; rep++) {
        Pool *pool = pool_create(2);
        Transformer t;
        cr_assert_eq(transformer_build(&t, "models/kjv.slm", pool, rep % 2 ? ATTN_KV_F16 : ATTN_KV_F32), MODEL_OK);
        int tok[3] = {1, 5, 6};
        transformer_forward(&t, tok, 3, 0);
        transformer_free(&t);
        pool_destroy(pool);
        if (rep == 2) rss2 = vm_rss_kib();
    }
    long rss_n = vm_rss_kib();
    cr_assert(rss_n - rss2 < RSS_BOUND_KIB, "VmRSS grew from %ld to %ld KiB", rss2, rss_n);
}

// The same seed gives the same tokens for 1 to 4 threads and both prompt paths, for f32 and
// q8_0 weights and f32 and f16 caches (stories260K: its tokenizer merges a real prompt).
Test(determinism, threads_prompt_paths_dtypes_caches) {
    enum { POS = 48 };
    const char *dtypes[] = {"f32", "q8_0"};
    for (int d = 0; d < 2; d++) {
        const char *path = export_stories260k_as(dtypes[d]);
        for (int kv = ATTN_KV_F32; kv <= ATTN_KV_F16; kv++) {
            int ref[POS], got[POS];
            for (int threads = 1; threads <= 4; threads++) {
                Pool *pool = pool_create(threads);
                Transformer t;
                cr_assert_eq(transformer_build(&t, path, pool, kv), MODEL_OK);
                for (int batched = 1; batched >= 0; batched--) {
                    int *dst = threads == 1 && batched ? ref : got;
                    generate_tokens(&t, "Once upon a time, there was a little dog", batched, 9,
                                    POS, dst);
                    cr_assert(memcmp(dst, ref, sizeof ref) == 0, "%s, kv %d, %d threads, %s prompt",
                              dtypes[d], kv, threads, batched ? "batched" : "one-token");
                }
                transformer_free(&t);
                pool_destroy(pool);
            }
        }
    }
}

// Across runs of the binary: the same bytes for -T 1 to 4 and a second run of each.
Test(determinism, across_runs_and_threads) {
    const char *cases[][2] = {{"f32", ""}, {"q8_0", "--kv f16"}};
    for (int c = 0; c < 2; c++) {
        const char *path = export_stories260k_as(cases[c][0]);
        char *ref = NULL;
        for (int threads = 1; threads <= 4; threads++) {
            for (int again = 0; again < (threads == 1 ? 2 : 1); again++) {
                char *out, *err;
                int rc = run_cmd(&out, &err, "%s %s %s -s 11 -n 64 -i 'Once upon a time' -T %d",
                                 bin_path("run"), path, cases[c][1], threads);
                cr_assert_eq(rc, 0, "%s", err);
                free(err);
                if (!ref) {
                    ref = out;
                    cr_assert(strlen(ref) > 40, "%s", ref);
                    continue;
                }
                cr_assert_str_eq(out, ref, "%s %s, -T %d differs", cases[c][0], cases[c][1], threads);
                free(out);
            }
        }
        free(ref);
    }
}

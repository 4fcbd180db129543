// tests/helpers.c: see helpers.h.
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "convert/writer.h"

static char path_buf[8][4096];
static int path_next;

static char *next_buf(void) {
    path_next = (path_next + 1) % 8;
    return path_buf[path_next];
}

const char *model_file(const char *name) {
    const char *dir = getenv("SL_MODELS");
    char *p = next_buf();
    snprintf(p, 4096, "%s/%s", dir ? dir : "../shared/models", name);
    if (!file_exists(p)) {
        const char *ci = getenv("CI");
        if (ci && strcmp(ci, "true") == 0) cr_assert_fail("%s is missing, and CI requires it", p);
        cr_skip_test("%s not found: this test needs ../shared/models (set SL_MODELS)", p);
    }
    return p;
}

void need_program(const char *name, const char *package) {
    char *out = NULL, *err = NULL;
    int rc = run_cmd(&out, &err, "command -v %s", name);
    free(out), free(err);
    if (rc == 0) return;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) cr_assert_fail("%s is not installed, and CI requires it", name);
    cr_skip_test("%s not found: this test needs it (apt-get install %s)", name, package);
}

const char *bin_path(const char *name) {
    const char *dir = getenv("SL_BIN");
    char *p = next_buf();
    snprintf(p, 4096, "%s/%s", dir ? dir : ".", name);
    return p;
}

static char dir_buf[256];

const char *tmp_dir(void) {
    if (!dir_buf[0]) {
        snprintf(dir_buf, sizeof dir_buf, "/tmp/searchlight-test-XXXXXX");
        cr_assert(mkdtemp(dir_buf) != NULL, "mkdtemp failed");
    }
    return dir_buf;
}

const char *tmp_file(const char *name) {
    tmp_dir();
    char *p = next_buf();
    snprintf(p, 4096, "%s/%s", dir_buf, name);
    return p;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap + 1);
    size_t got;
    while ((got = fread(b + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    b[len] = '\0';
    if (n) *n = len;
    return b;
}

int write_all_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int run_cmd(char **out, char **err, const char *fmt, ...) {
    char cmd[8192], full[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    const char *o = tmp_file("cmd.out"), *e = tmp_file("cmd.err");
    snprintf(full, sizeof full, "%s > %s 2> %s", cmd, o, e);
    int st = system(full);
    if (out) *out = read_all(o, NULL);
    if (err) *err = read_all(e, NULL);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return -1;
}

uint64_t test_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

float test_randf(uint64_t *s) {
    return (float)(test_rand(s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

char *export_stories260k(void) {
    char *path = strdup(tmp_file("stories260K.slm")), *out, *err;
    int rc = run_cmd(&out, &err, "%s --tokenizer %s %s %s", bin_path("export"),
                     model_file("tok512.bin"), model_file("stories260K.bin"), path);
    cr_assert_eq(rc, 0, "export failed: %s", err);
    cr_assert(strstr(out, "260032 parameters"), "summary: %s", out);
    cr_assert(strstr(out, "heads 8, kv heads 4"), "summary: %s", out);
    free(out), free(err);
    return path;
}

const char *export_stories260k_as(const char *dtype) {
    static char paths[4][512];
    static const char *const names[4] = {"f32", "f16", "bf16", "q8_0"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(dtype, names[i]) != 0) continue;
        if (!paths[i][0]) {
            snprintf(paths[i], sizeof paths[i], "%s", tmp_file(dtype));
            char *out, *err;
            int rc = run_cmd(&out, &err, "%s --dtype %s --tokenizer %s %s %s", bin_path("export"),
                             dtype, model_file("tok512.bin"), model_file("stories260K.bin"),
                             paths[i]);
            cr_assert_eq(rc, 0, "export --dtype %s failed: %s", dtype, err);
            free(out), free(err);
        }
        return paths[i];
    }
    cr_assert_fail("unknown dtype %s", dtype);
    return NULL;
}

void write_test_tokenizer_bin(const char *path, int vocab) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    uint32_t max_len = 16;
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < vocab; i++) {
        char piece[32];
        float score = 0.0f;
        if (i == 0) strcpy(piece, "<unk>");
        else if (i == 1) strcpy(piece, "<s>");
        else if (i == 2) strcpy(piece, "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else {  // single letters, then pairs: "a".."z", then " a", "ab", ...
            int k = i - 259;
            if (k < 26) snprintf(piece, sizeof piece, "%c", 'a' + k);
            else if (k == 26) strcpy(piece, " ");
            else snprintf(piece, sizeof piece, "%c%c", k % 2 ? ' ' : 'a' + k % 26, 'a' + (k / 2) % 26);
            score = -(float)k;
        }
        int32_t len = (int32_t)strlen(piece);
        fwrite(&score, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(piece, 1, (size_t)len, f);
    }
    fclose(f);
}

SlHeader test_model_header(int shared_classifier) {
    SlHeader h;
    memset(&h, 0, sizeof h);
    h.dim = 16, h.hidden_dim = 40, h.n_layers = 2, h.n_heads = 4, h.n_kv_heads = 2;
    h.head_dim = 4, h.vocab_size = 300, h.seq_len = 32;
    h.rope_theta = 10000.0f, h.norm_eps = 1e-5f;
    h.flags = shared_classifier ? SL_FLAG_SHARED_CLASSIFIER : 0;
    h.bos_id = 1, h.eos_id = 2, h.n_tensors = SL_T_COUNT, h.tokenizer_bytes = 8;
    return h;
}

SlHeader write_test_model(const char *path, int shared_classifier) {
    SlHeader h = test_model_header(shared_classifier);
    const char *tokpath = tmp_file("test-tokenizer.bin");
    write_test_tokenizer_bin(tokpath, h.vocab_size);
    Tokenizer tok;
    cr_assert_eq(tokenizer_read_bin(&tok, tokpath, h.vocab_size, 1, 2), TOK_OK);
    SlLayout lay;
    cr_assert_eq(model_layout(&h, NULL, &lay, path), MODEL_OK);
    TensorData td = {0};
    float *bufs[SL_T_COUNT];
    uint64_t seed = 12345;
    for (int t = 0; t < SL_T_COUNT; t++) {
        size_t n = lay.bytes[t] / sizeof(float);
        bufs[t] = n ? malloc(n * sizeof(float)) : NULL;
        for (size_t i = 0; i < n; i++) bufs[t][i] = test_randf(&seed) * 0.5f;
        td.data[t] = bufs[t];
    }
    size_t written;
    cr_assert_eq(model_write(path, h, &tok, &td, &written), 0);
    for (int t = 0; t < SL_T_COUNT; t++) free(bufs[t]);
    tokenizer_free(&tok);
    Model m;
    cr_assert_eq(model_open(&m, path, 1), MODEL_OK);
    h = m.header;
    model_close(&m);
    return h;
}

// ----------------------------------------------------------------------------
// the random strings of tests/fixtures/make_pretok.py

#define CORPUS_MAX_ATOMS 256
#define CORPUS_MAX_TEXT 4096
#define CORPUS_MAX_VALUES 4096

typedef struct {
    char *atom[CORPUS_MAX_ATOMS];
    size_t atom_len[CORPUS_MAX_ATOMS];
    int n;
} Atoms;

static void load_atoms(Atoms *a) {
    FILE *f = fopen("tests/fixtures/pretok-atoms.txt", "r");
    cr_assert(f, "tests/fixtures/pretok-atoms.txt not readable");
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        size_t hex = strcspn(line, " \n");
        cr_assert(hex % 2 == 0 && a->n < CORPUS_MAX_ATOMS);
        char *s = malloc(hex / 2 + 1);
        for (size_t i = 0; i < hex / 2; i++) {
            unsigned v;
            cr_assert(sscanf(line + 2 * i, "%2x", &v) == 1);
            s[i] = (char)v;
        }
        a->atom_len[a->n] = hex / 2;
        a->atom[a->n++] = s;
    }
    fclose(f);
}

// The next random string, as make_pretok.py builds it.
static size_t next_text(const Atoms *a, uint64_t *rng, char *out) {
    size_t n = 1 + (test_rand(rng) >> 33) % 24, len = 0;
    for (size_t k = 0; k < n; k++) {
        int i = (int)((test_rand(rng) >> 33) % (uint64_t)a->n);
        cr_assert(len + a->atom_len[i] < CORPUS_MAX_TEXT);
        memcpy(out + len, a->atom[i], a->atom_len[i]);
        len += a->atom_len[i];
    }
    return len;
}

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

int check_corpus_fixture(const char *fixture, corpus_setup_fn setup, corpus_values_fn values,
                         void *ctx) {
    static Atoms atoms;
    if (atoms.n == 0) load_atoms(&atoms);
    char *fx = read_all(fixture, NULL);
    cr_assert(fx, "%s not readable", fixture);
    char *head = strstr(fx, "\nseed ");
    unsigned long long seed;
    int count, block, shown, n_atoms;
    cr_assert(head && sscanf(head, "\nseed %llu strings %d block %d shown %d atoms %d", &seed,
                             &count, &block, &shown, &n_atoms) == 5, "%s: no header", fixture);
    cr_assert_eq(n_atoms, atoms.n, "%s was made from %d atoms, the atoms file has %d", fixture,
                 n_atoms, atoms.n);
    static char text[CORPUS_MAX_TEXT], got[16 * CORPUS_MAX_VALUES];
    static uint32_t v[CORPUS_MAX_VALUES];
    int kinds = 0;
    for (char *k = strstr(fx, "\nkind "); k; k = strstr(k + 1, "\nkind "), kinds++) {
        char *eol = strchr(k + 1, '\n');
        cr_assert(eol);
        *eol = '\0';
        cr_assert_eq(setup(ctx, k + 1), 0, "%s: %s", fixture, k + 1);
        *eol = '\n';
        char *hashes = strstr(k, "\nhashes ") + 8, *line = strchr(hashes, '\n') + 1;
        uint64_t rng = (uint64_t)seed, h = 0xCBF29CE484222325ull;
        for (int i = 0; i < count; i++) {
            size_t n = next_text(&atoms, &rng, text);
            size_t m = values(ctx, text, n, v, CORPUS_MAX_VALUES);
            if (i < shown) {  // the values in full: a readable failure
                size_t used = 0;
                got[0] = '\0';
                for (size_t j = 0; j < m; j++)
                    used += (size_t)snprintf(got + used, sizeof got - used, "%s%u", j ? "," : "",
                                             v[j]);
                char *want = strchr(line, ' ') + 1, *end = strchr(line, '\n');
                *end = '\0';
                cr_assert_str_eq(got, want, "%s, %.40s, string %d \"%.*s\":\n got  %s\n want %s",
                                 fixture, k + 1, i, (int)n, text, got, want);
                *end = '\n';
                line = end + 1;
            }
            for (size_t j = 0; j < m; j++) {
                unsigned char le[4] = {v[j] & 255, v[j] >> 8 & 255, v[j] >> 16 & 255, v[j] >> 24};
                h = fnv_bytes(h, le, 4);
            }
            h = fnv_bytes(h, "\xff\xff\xff\xff", 4);
            if ((i + 1) % block == 0) {
                unsigned long long want;
                cr_assert(sscanf(hashes, "%llx", &want) == 1);
                hashes += 17;
                cr_assert_eq(h, (uint64_t)want, "%s, %.40s: strings %d..%d differ from the "
                             "reference (rerun its script with more shown strings to see which)",
                             fixture, k + 1, i + 1 - block, i);
                h = 0xCBF29CE484222325ull;
            }
        }
    }
    free(fx);
    return kinds;
}

const char *fixture(const char *name) {
    static char buf[8][1024];
    static int k;
    const char *dir = getenv("SL_FIXTURES");
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    return p;
}

void refuse_patched_model(const char *b, size_t n, size_t keep, long at, uint8_t v,
                          const char *want) {
    char *c = malloc(n);
    memcpy(c, b, n);
    if (at >= 0) c[at] = (char)v;
    const char *path = tmp_file("patched.slm");
    cr_assert_eq(write_all_file(path, c, keep), 0);
    free(c);
    char *o, *e;
    int rc = run_cmd(&o, &e, "%s %s -n 4 -i hi", bin_path("run"), path);
    cr_assert_eq(rc, 1, "%s: exit %d, stderr %s", want, rc, e);
    cr_assert(strstr(e, want) && strchr(e, '\n') == e + strlen(e) - 1, "want one line with "
              "\"%s\", got: %s", want, e);
    free(o), free(e);
}

// The token ids of an attention dump (app/attnmap.h); *n receives their count.
int32_t *attn_dump_ids(const char *path, size_t *n) {
    size_t len;
    char *b = read_all(path, &len);
    cr_assert(b && len >= 32 && memcmp(b, "SLAT", 4) == 0, "no dump at %s", path);
    uint32_t N;
    memcpy(&N, b + 16, 4);
    cr_assert(len >= 32 + 4 * (size_t)N);
    int32_t *ids = malloc(4 * (size_t)N + 4);
    memcpy(ids, b + 32, 4 * (size_t)N);
    free(b);
    *n = N;
    return ids;
}

// LeakSanitizer's options in the suite's own processes (the Criterion runner and its test
// workers; not run or export, which the tests start): leaks are reported but do not change the
// exit status, so that the 48 bytes Criterion's runner leaks now and then at its exit do not
// fail make test-asan; tests/asan_check.sh fails on every report in the log but that one.
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "exitcode=0"; }

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
    cr_assert_eq(model_layout(&h, &lay, path), MODEL_OK);
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

// tests/isa_main.c: the fast kernels of a build against kernels.c's reference, without
// Criterion, for builds that have none (the cross-compiled ARM64 build, run under qemu by
// `make test-arm`); with --dump FILE, every output also goes raw to FILE, so that two builds
// (x86 AVX2 and ARM64 NEON) can be compared bit for bit with cmp.
//
// Checks, on fixed-seed random inputs (xorshift, never rand()): matmul of every weight type
// (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k) for m = 1 and batches, ragged n and d: each
// batch row equals the matvec of its token bitwise, on 1 to 3 threads; the rows are close to
// matvec_tensor (the K types: equal bitwise); the q8_0 input form equals q8_quantize_row
// bitwise. Attention, f32 and f16 caches: decode at chosen positions close to attention_head
// (relative error <= 1e-5, test_attention.c's bound), bitwise the same on 1 and 3 threads;
// prefill equals decode bitwise; with recording, the same output and weights close to the
// reference softmax. Prints one line per group of checks; exits 1 on any failure. --seed N
// draws other inputs (and shapes).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "model.h"
#include "base/pool.h"

static int failures;
static FILE *dump;  // --dump: every output, raw
static int no_dense;  // --no-dense: leave f32, f16 and bf16 matmuls out of the dump (the plain
                      // build rounds their products separately: within rounding, not bitwise)

#define CHECK(c, ...)                                         \
    do {                                                      \
        if (!(c)) {                                           \
            if (failures++ < 20) {                            \
                fprintf(stderr, "isa_main: FAIL: " __VA_ARGS__); \
                fputc('\n', stderr);                          \
            }                                                 \
        }                                                     \
    } while (0)

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "isa_main: out of memory\n");
        exit(2);
    }
    return p;
}

static void put(const void *p, size_t bytes) {
    if (dump && fwrite(p, 1, bytes, dump) != bytes) {
        fprintf(stderr, "isa_main: cannot write the dump\n");
        exit(2);
    }
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint32_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)next() / 2147483648.0f - 1.0f; }  // [-1, 1)
static float *rand_floats(size_t n) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = uniform();
    return p;
}

// ---- matmul ----

// A d x n tensor of type ty from the floats w (f32, f16, bf16, q8_0), or random blocks with
// moderate f16 scales (the block types), malloc'd.
static Tensor make_tensor(int ty, const float *w, size_t n, size_t d) {
    size_t bytes = tensor_bytes(ty, d, n), G = q8_groups(n);
    uint8_t *p = xmalloc(bytes);
    Tensor t = {ty, d, n, p, NULL, NULL};
    if (ty == SL_F32) {
        memcpy(p, w, d * n * sizeof(float));
    } else if (ty == SL_F16 || ty == SL_BF16) {
        for (size_t i = 0; i < d * n; i++)
            ((uint16_t *)p)[i] = ty == SL_F16 ? f32_to_fp16(w[i]) : f32_to_bf16(w[i]);
    } else if (ty == SL_Q8_0) {
        t.scales = (const uint16_t *)(p + d * G * Q8_GROUP);
        for (size_t r = 0; r < d; r++)
            q8_quantize_row_f16(w + r * n, n, (int8_t *)p + r * G * Q8_GROUP,
                                (uint16_t *)t.scales + r * G);
    } else {  // ggml blocks: random bytes, then d (and dmin) in (-0.05, 0.05)
        size_t be = 0, bb = 0;
        ggml_block_info(dtype_ggml(ty), &be, &bb);
        for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)next();
        size_t off[2] = {0, 2}, n_off = 2;  // d, dmin or m at the block's start, or:
        if (ty == SL_Q4_0 || ty == SL_Q5_0 || ty == SL_IQ4_NL || ty == SL_IQ4_XS) n_off = 1;
        if (ty == SL_Q6_K) off[0] = 208, n_off = 1;
        if (ty == SL_Q3_K) off[0] = 108, n_off = 1;
        if (ty == SL_Q2_K) off[0] = 80, off[1] = 82;
        for (size_t b = 0; b < bytes / bb; b++)
            for (size_t k = 0; k < n_off; k++) {
                uint16_t h = f32_to_fp16(((float)(next() % 20001) - 10000.0f) * 5e-6f);
                memcpy(p + b * bb + off[k], &h, 2);
            }
    }
    return t;
}

static MatIn make_input(const float *x, size_t n, size_t m, void **q8) {
    MatIn in;
    *q8 = xmalloc(matmul_q8_bytes(n, m));
    matmul_input(&in, x, n, m, *q8, MATMUL_Q8_0 | MATMUL_Q8_K);
    return in;
}

// One shape of one type: the batch (dumped), each token's matvec on a pool, the reference.
static void check_matmul(int ty, size_t n, size_t d, size_t m, Pool **pools) {
    const char *nm = dtype_name(ty);
    float *wf = rand_floats(d * n), *x = rand_floats(m * n);
    Tensor w = make_tensor(ty, wf, n, d);
    float *y = xmalloc(m * d * sizeof(float)), *y1 = xmalloc(m * d * sizeof(float));
    float *ref = xmalloc(d * sizeof(float)), *row = xmalloc(n * sizeof(float));
    void *q8, *q8t;
    MatIn in = make_input(x, n, m, &q8);
    matmul(NULL, y, &in, &w);
    if (!no_dense || !(ty == SL_F32 || ty == SL_F16 || ty == SL_BF16)) put(y, m * d * sizeof(float));
    for (size_t t = 0; t < m; t++) {
        MatIn one = make_input(x + t * n, n, 1, &q8t);
        matmul(pools[t % 3], y1, &one, &w);
        free(q8t);
        CHECK(!memcmp(y1, y + t * d, d * sizeof(float)), "%s n=%zu d=%zu m=%zu: token %zu's "
              "matvec differs from its batch row", nm, n, d, m, t);
        matvec_tensor(ref, x + t * n, &w);
        int kq = kquant_type(ty);
        if (kq) {
            CHECK(!memcmp(ref, y + t * d, d * sizeof(float)), "%s n=%zu d=%zu: token %zu not "
                  "the plain twin's bits", nm, n, d, t);
            continue;
        }
        for (size_t r = 0; r < d; r++) {  // within 2e-5 of sum |w x| (test_matmul.c's bound)
            tensor_row(&w, r, row);
            double scale = 0.0;
            for (size_t j = 0; j < n; j++) scale += fabs((double)row[j] * x[t * n + j]);
            // q8_0 and the 32-weight block types quantize x: their error is the quantization's,
            // not the order's
            if (ty != SL_F32 && ty != SL_F16 && ty != SL_BF16) scale *= 50.0;
            double err = fabs((double)y[t * d + r] - ref[r]);
            CHECK(err <= 2e-5 * scale + 1e-30, "%s n=%zu d=%zu token %zu row %zu: %.9g vs "
                  "reference %.9g", nm, n, d, t, r, y[t * d + r], ref[r]);
        }
    }
    matmul(pools[2], y1, &in, &w);  // the whole batch on 3 threads
    CHECK(!memcmp(y1, y, m * d * sizeof(float)), "%s n=%zu d=%zu m=%zu: the batch on 3 threads "
          "differs", nm, n, d, m);
    // the q8_0 form of x against quant.h's quantizer
    for (size_t t = 0; t < m; t++) {
        size_t G = q8_groups(n);
        int8_t *q = xmalloc(G * Q8_GROUP);
        float *s = xmalloc(G * sizeof(float));
        memset(q, 0, G * Q8_GROUP);
        q8_quantize_row(x + t * n, n, q, s);
        CHECK(!memcmp(q, in.q + t * in.groups * Q8_GROUP, G * Q8_GROUP) &&
                  !memcmp(s, in.qd + t * in.groups, G * sizeof(float)),
              "n=%zu token %zu: q8_0 input form differs from q8_quantize_row", n, t);
        put(in.q + t * in.groups * Q8_GROUP, G * Q8_GROUP);
        put(in.qd + t * in.groups, G * sizeof(float));
        free(q), free(s);
    }
    free(wf), free(x), free((void *)w.data), free(y), free(y1), free(ref), free(row), free(q8);
}

static void matmul_suite(Pool **pools) {
    static const int dense[] = {SL_F32, SL_F16, SL_BF16, SL_Q8_0};
    static const size_t ns[] = {1, 3, 8, 15, 17, 31, 32, 33, 64, 100, 288, 513};
    static const size_t ms[] = {1, 2, 3, 5, 8, 19};
    int before = failures, cases = 0;
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++, cases++)
            check_matmul(dense[ti], ns[i], 1 + next() % 37, ms[(i + ti) % 6], pools);
    static const int g32[] = {SL_Q4_0, SL_Q4_1, SL_Q5_0, SL_Q5_1, SL_IQ4_NL};
    static const size_t n40[] = {32, 96, 288, 512};
    for (size_t ti = 0; ti < 5; ti++)
        for (size_t i = 0; i < 4; i++, cases++)
            check_matmul(g32[ti], n40[i], 1 + next() % 37, ms[(i + ti) % 6], pools);
    static const int kt[] = {SL_Q4_K, SL_Q5_K, SL_Q6_K, SL_Q2_K, SL_Q3_K, SL_IQ4_XS};
    static const size_t nk[] = {256, 512, 1280};
    for (size_t ti = 0; ti < 6; ti++)
        for (size_t i = 0; i < 3; i++, cases++)
            check_matmul(kt[ti], nk[i], 1 + next() % 21, ms[(i + 2 * ti) % 6], pools);
    printf("isa_main: matmul, %d shapes of 15 weight types: %s\n", cases,
           failures == before ? "ok" : "FAILED");
}

// ---- attention ----

typedef struct {
    AttnShape s;
    float *kc, *vc;   // f32 caches (the reference reads these; for f16, the widened values)
    void *kh, *vh;    // the caches the kernel reads (kv_type)
} Cache;

static Cache make_cache(size_t nh, size_t nkv, size_t hd, size_t seq, int ty, size_t window) {
    Cache c = {{nh, nkv, hd, seq, ty, window}, NULL, NULL, NULL, NULL};
    size_t n = nkv * seq * hd;
    c.kc = rand_floats(n), c.vc = rand_floats(n);
    for (size_t i = 0; i < n; i++) c.kc[i] *= 3.0f;  // scores of a few units
    c.kh = xmalloc(n * attention_kv_bytes(ty)), c.vh = xmalloc(n * attention_kv_bytes(ty));
    attention_kv_store(ty, c.kh, c.kc, n);
    attention_kv_store(ty, c.vh, c.vc, n);
    if (ty == ATTN_KV_F16)
        for (size_t i = 0; i < n; i++)
            c.kc[i] = fp16_to_f32(((uint16_t *)c.kh)[i]), c.vc[i] = fp16_to_f32(((uint16_t *)c.vh)[i]);
    put(c.kh, n * attention_kv_bytes(ty));
    return c;
}

// Head by head with attention_head over keys lo..pos; the largest relative error of out.
static double attn_error(const Cache *c, const float *q, const float *out, size_t pos, float *att) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads, seq = c->s.seq_len;
    size_t w = c->s.window, lo = w && pos + 1 > w ? pos + 1 - w : 0;
    float ref[ATTN_MAX_HEAD_DIM];
    double worst = 0.0;
    for (size_t h = 0; h < c->s.n_heads; h++) {
        size_t g = h / group;
        attention_head(ref, att, q + h * hd, c->kc + (g * seq + lo) * hd,
                       c->vc + (g * seq + lo) * hd, pos - lo, hd);
        double d = 0.0, mag = 0.0;
        for (size_t i = 0; i < hd; i++) {
            d = fmax(d, fabs((double)out[h * hd + i] - ref[i]));
            mag = fmax(mag, fabs((double)ref[i]));
        }
        worst = fmax(worst, d / mag);
    }
    return worst;
}

static void check_attention(size_t nh, size_t nkv, size_t hd, size_t seq, int ty, size_t window,
                            Pool **pools) {
    Cache c = make_cache(nh, nkv, hd, seq, ty, window);
    size_t qn = nh * hd, m = seq < 40 ? seq : 40, pos0 = seq - m;
    float *q = rand_floats(seq * qn), *out = xmalloc(seq * qn * sizeof(float));
    float *o1 = xmalloc(qn * sizeof(float)), *att = xmalloc(seq * sizeof(float));
    float *rec = xmalloc(nh * seq * sizeof(float)), *scratch = xmalloc(attention_scratch_bytes(&c.s));
    const char *kv = ty == ATTN_KV_F16 ? "f16" : "f32";
    // decode at every position (small caches) or at chunk and tile edges
    size_t picks[] = {0, 1, 7, 8, 9, 255, 256, 257, seq - 1};
    size_t np = sizeof picks / sizeof picks[0];
    for (size_t i = 0; i < (seq <= 64 ? seq : np); i++) {
        size_t pos = seq <= 64 ? i : picks[i];
        if (pos >= seq) continue;
        attention_decode(NULL, &c.s, out, q + pos * qn, c.kh, c.vh, pos, scratch);
        put(out, qn * sizeof(float));
        double e = attn_error(&c, q + pos * qn, out, pos, att);
        CHECK(e <= 1e-5, "attention %zu/%zu hd %zu %s window %zu pos %zu: rel err %g", nh, nkv,
              hd, kv, window, pos, e);
        attention_decode(pools[2], &c.s, o1, q + pos * qn, c.kh, c.vh, pos, scratch);
        CHECK(!memcmp(o1, out, qn * sizeof(float)), "attention %zu/%zu hd %zu %s pos %zu: "
              "3 threads differ from 1", nh, nkv, hd, kv, pos);
        attention_decode_rec(pools[1], &c.s, o1, q + pos * qn, c.kh, c.vh, pos, scratch, rec, seq);
        CHECK(!memcmp(o1, out, qn * sizeof(float)), "attention %zu/%zu hd %zu %s pos %zu: "
              "recording changes the output", nh, nkv, hd, kv, pos);
        for (size_t h = 0; h < nh; h++) {
            put(rec + h * seq, (pos + 1) * sizeof(float));
            double sum = 0.0;
            for (size_t t = 0; t <= pos; t++) sum += rec[h * seq + t];
            CHECK(fabs(sum - 1.0) <= 1e-5, "attention %s pos %zu head %zu: weights sum to %.9g",
                  kv, pos, h, sum);
        }
    }
    // prefill of the last m positions (one call, 1 and 2 threads) equals decode bitwise
    for (int p = 0; p < 2; p++) {
        attention_prefill(pools[p], &c.s, out + pos0 * qn, q + pos0 * qn, c.kh, c.vh, pos0, m,
                          scratch);
        if (p == 0) put(out + pos0 * qn, m * qn * sizeof(float));
        for (size_t i = 0; i < m; i++) {
            attention_decode(NULL, &c.s, o1, q + (pos0 + i) * qn, c.kh, c.vh, pos0 + i, scratch);
            CHECK(!memcmp(o1, out + (pos0 + i) * qn, qn * sizeof(float)), "attention %zu/%zu "
                  "hd %zu %s: prefill query %zu differs from decode", nh, nkv, hd, kv, pos0 + i);
        }
    }
    free(c.kc), free(c.vc), free(c.kh), free(c.vh), free(q), free(out), free(o1), free(att);
    free(rec), free(scratch);
}

static void attention_suite(Pool **pools) {
    static const size_t shapes[][5] = {  // heads, KV heads, head_dim, seq_len, window
        {8, 4, 32, 300, 0}, {6, 6, 64, 70, 0}, {4, 1, 16, 40, 0}, {4, 2, 20, 33, 0},
        {32, 4, 128, 260, 0}, {2, 1, 8, 20, 0}, {4, 2, 64, 300, 100}, {3, 3, 5, 17, 0}};
    int before = failures, cases = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int ty = 0; ty < 2; ty++, cases++)
            check_attention(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], ty,
                            shapes[i][4], pools);
    // attention_kv_store against quant.h's f32_to_fp16 on awkward values
    float v[64];
    uint16_t h[64];
    for (size_t i = 0; i < 64; i++)
        v[i] = i % 4 == 0 ? uniform() * 7e4f : i % 4 == 1 ? uniform() * 1e-6f : uniform();
    attention_kv_store(ATTN_KV_F16, h, v, 64);
    for (size_t i = 0; i < 64; i++)
        CHECK(h[i] == f32_to_fp16(v[i]), "kv_store f16 of %.9g: %04x, expected %04x", v[i], h[i],
              f32_to_fp16(v[i]));
    put(h, sizeof h);
    printf("isa_main: attention, %d shapes and caches: %s\n", cases,
           failures == before ? "ok" : "FAILED");
}

int main(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--dump")) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--no-dense")) {
            no_dense = 1;
        } else if (i + 1 < argc && !strcmp(argv[i], "--seed")) {  // other random inputs
            rng = strtoull(argv[++i], NULL, 0) * 0x9E3779B97F4A7C15u | 1u;
        } else {
            fprintf(stderr, "usage: isa_main [--seed N] [--dump FILE] [--no-dense]\n");
            return 2;
        }
    }
    if (path && !(dump = fopen(path, "wb"))) {
        perror(path);
        return 2;
    }
    Pool *pools[3] = {NULL, pool_create(2), pool_create(3)};
    if (!pools[1] || !pools[2]) return 2;
    matmul_suite(pools);
    attention_suite(pools);
    pool_destroy(pools[1]), pool_destroy(pools[2]);
    if (dump && fclose(dump) != 0) {
        perror(path);
        return 2;
    }
    printf("isa_main: %s (%d failures)\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}

// test_matmul.c: the fast matmuls of every weight type against kernels.h's references,
// and their determinism.
//
// Contract: Criterion, libc and POSIX mmap; a fixed-seed xorshift RNG, so every run
// checks the same shapes and values.
#include <criterion/criterion.h>

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/blocks.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

static uint64_t rng_state;

static uint32_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static size_t rand_size(size_t lo, size_t hi) {  // in [lo, hi]
    return lo + xorshift() % (hi - lo + 1);
}

static float *rand_floats(size_t count) {
    float *p = malloc((count ? count : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (size_t i = 0; i < count; i++) p[i] = (float)xorshift() / 2147483648.0f - 1.0f;
    return p;
}

// Shapes named in the brief, then random ones.
static const size_t EDGE[] = {1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 64, 100, 288};
#define N_EDGE (sizeof EDGE / sizeof EDGE[0])

static void pick_shape(size_t i, size_t *n, size_t *d, size_t *m) {
    *n = i < N_EDGE ? EDGE[i] : rand_size(1, 300);
    *d = i < N_EDGE ? EDGE[(i * 5 + 3) % N_EDGE] : rand_size(1, 300);
    *m = rand_size(1, 20);
}

static const int TYPES[] = {SL_F32, SL_F16, SL_BF16, SL_Q8_0};
#define N_TYPES 4

// Bytes of a d x n matrix of a type, laid out as model.h says, at dst (or malloc'd if
// dst is NULL); returned as a Tensor.
static Tensor make_tensor(int type, const float *w, size_t n, size_t d, void *dst) {
    size_t bytes = tensor_bytes(type, d, n);
    uint8_t *p = dst ? dst : malloc(bytes ? bytes : 1);
    cr_assert_not_null(p);
    Tensor t = {type, d, n, p, NULL, NULL};
    size_t G = q8_groups(n);
    for (size_t r = 0; r < d; r++) {
        const float *row = w + r * n;
        switch (type) {
        case SL_F32: memcpy(p + r * n * 4, row, n * 4); break;
        case SL_F16:
            for (size_t i = 0; i < n; i++) ((uint16_t *)p)[r * n + i] = f32_to_fp16(row[i]);
            break;
        case SL_BF16:
            for (size_t i = 0; i < n; i++) ((uint16_t *)p)[r * n + i] = f32_to_bf16(row[i]);
            break;
        default:
            t.scales = (const uint16_t *)(p + d * G * Q8_GROUP);
            q8_quantize_row_f16(row, n, (int8_t *)p + r * G * Q8_GROUP,
                                (uint16_t *)t.scales + r * G);
        }
    }
    return t;
}

// A matmul input with both quantized forms (always prepared: it must not matter for the types
// that read neither).
static MatIn make_input(const float *x, size_t n, size_t m, void **q8) {
    *q8 = malloc(matmul_q8_bytes(n, m));
    cr_assert_not_null(*q8);
    MatIn in;
    matmul_input(&in, x, n, m, *q8, MATMUL_Q8_0 | MATMUL_Q8_K);
    return in;
}

// |y - ref| within 2e-5 of sum_j |w_ij x_j| (w as stored), the scale of the rounding error.
static void check_close(const float *y, const float *ref, const float *x, const Tensor *w,
                        const char *what) {
    size_t n = w->cols, d = w->rows;
    float *row = malloc(n * sizeof(float));
    cr_assert_not_null(row);
    for (size_t i = 0; i < d; i++) {
        tensor_row(w, i, row);
        double scale = 0.0;
        for (size_t j = 0; j < n; j++) scale += fabs((double)row[j] * x[j]);
        double err = fabs((double)y[i] - ref[i]);
        cr_assert(err <= 2e-5 * scale + 1e-30, "%s %s: n=%zu d=%zu row %zu: %.9g vs %.9g", what,
                  dtype_name(w->type), n, d, i, y[i], ref[i]);
    }
    free(row);
}

Test(matmul, matches_reference) {
    rng_state = 0x9E3779B97F4A7C15u;
    Pool *pool = pool_create(2);
    cr_assert_not_null(pool);
    for (size_t s = 0; s < 60; s++) {
        size_t n, d, m;
        pick_shape(s, &n, &d, &m);
        float *x = rand_floats(m * n), *wf = rand_floats(d * n);
        float *ref = rand_floats(m * d), *y = rand_floats(d), *yb = rand_floats(m * d);
        void *q8, *q8t;
        MatIn in = make_input(x, n, m, &q8);
        for (int ti = 0; ti < N_TYPES; ti++) {
            Tensor w = make_tensor(TYPES[ti], wf, n, d, NULL);
            matmul(pool, yb, &in, &w);
            for (size_t t = 0; t < m; t++) {
                matvec_tensor(ref + t * d, x + t * n, &w);
                MatIn one = make_input(x + t * n, n, 1, &q8t);
                matmul(s % 2 ? pool : NULL, y, &one, &w);
                check_close(y, ref + t * d, x + t * n, &w, "matvec");
                check_close(yb + t * d, ref + t * d, x + t * n, &w, "batch");
                free(q8t);
            }
            free((void *)w.data);
        }
        free(x), free(wf), free(ref), free(y), free(yb), free(q8);
    }
    pool_destroy(pool);
}

// The reference itself: f16/bf16 are exact conversions of the weights; q8_0 stays within
// its quantization error of the f32 product (per element |x - d q| <= d / 2 for both sides).
Test(matmul, reference_types_track_f32) {
    rng_state = 99;
    size_t n = 288, d = 64;
    float *x = rand_floats(n), *wf = rand_floats(d * n), *y32 = malloc(d * 4), *y = malloc(d * 4);
    cr_assert(y32 && y);
    matvec(y32, x, wf, n, d);
    const double tol[N_TYPES] = {1e-6, 2e-3, 1.6e-2, 1.5e-2};  // x sum_j |w_j x_j|
    for (int ti = 0; ti < N_TYPES; ti++) {
        Tensor w = make_tensor(TYPES[ti], wf, n, d, NULL);
        matvec_tensor(y, x, &w);
        for (size_t i = 0; i < d; i++) {
            double scale = 0;
            for (size_t j = 0; j < n; j++) scale += fabs((double)wf[i * n + j] * x[j]);
            cr_assert(fabs((double)y[i] - y32[i]) <= tol[ti] * scale, "%s row %zu: %g vs %g",
                      dtype_name(TYPES[ti]), i, y[i], y32[i]);
        }
        free((void *)w.data);
    }
    free(x), free(wf), free(y32), free(y);
}

// Every element bitwise equal across thread counts, entry points, and tile groupings.
Test(matmul, bitwise_deterministic) {
    rng_state = 0xD1B54A32D192ED03u;
    Pool *pools[4] = {NULL, pool_create(2), pool_create(3), pool_create(4)};
    for (int p = 1; p < 4; p++) cr_assert_not_null(pools[p]);
    for (size_t s = 0; s < 40; s++) {
        size_t n, d, m;
        pick_shape(s, &n, &d, &m);
        if (s >= N_EDGE) n |= 1, d |= 1;  // odd: tails in k and in rows
        m += 1;                           // at least 2, so tokens can be shifted below
        float *x = rand_floats(m * n), *wf = rand_floats(d * n);
        float *base = rand_floats(m * d), *y = rand_floats(m * d);
        void *q8, *q8s, *q8t;
        MatIn in = make_input(x, n, m, &q8), shifted = make_input(x + n, n, m - 1, &q8s);
        for (int ti = 0; ti < N_TYPES; ti++) {
            Tensor w = make_tensor(TYPES[ti], wf, n, d, NULL);
            const char *ty = dtype_name(w.type);
            matmul(NULL, base, &in, &w);
            for (int p = 0; p < 4; p++) {
                matmul(pools[p], y, &in, &w);
                cr_assert(!memcmp(y, base, m * d * sizeof(float)), "%s batch, %d threads, n=%zu d=%zu",
                          ty, pool_size(pools[p]), n, d);
                for (size_t t = 0; t < m; t++) {
                    MatIn one = make_input(x + t * n, n, 1, &q8t);
                    matmul(pools[p], y, &one, &w);
                    free(q8t);
                    cr_assert(!memcmp(y, base + t * d, d * sizeof(float)),
                              "%s matvec token %zu, %d threads, n=%zu d=%zu", ty, t,
                              pool_size(pools[p]), n, d);
                }
            }
            // Tokens 1.. of the batch land in other token tiles when run as their own batch.
            matmul(pools[1], y, &shifted, &w);
            cr_assert(!memcmp(y, base + d, (m - 1) * d * sizeof(float)), "%s shifted batch n=%zu",
                      ty, n);
            // Rows split at an odd point fall into other row tiles.
            size_t split = rand_size(0, d);
            MatIn one = make_input(x, n, 1, &q8t);
            matmul_rows(y, &one, &w, 0, split);
            matmul_rows(y, &one, &w, split, d);
            free(q8t);
            cr_assert(!memcmp(y, base, d * sizeof(float)), "%s rows split at %zu of %zu", ty,
                      split, d);
            free((void *)w.data);
        }
        free(x), free(wf), free(base), free(y), free(q8), free(q8s);
    }
    for (int p = 1; p < 4; p++) pool_destroy(pools[p]);
}

// Rows longer than L1 holds in a 4-row panel (up to 16 KB each), ragged in n, with token
// counts over the cache blocks and odd ones over: the batch equals the matvec of each token
// bitwise, for 1-4 threads, and both the reference.
Test(matmul, long_rows_bitwise_and_close) {
    rng_state = 0x51;
    Pool *pools[4] = {NULL, pool_create(2), pool_create(3), pool_create(4)};
    for (int p = 1; p < 4; p++) cr_assert_not_null(pools[p]);
    static const size_t shapes[][3] = {{513, 9, 3}, {1000, 17, 67}, {1100, 5, 130}, {2049, 6, 5},
                                       {4096, 4, 66}};  // n, d, m
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        size_t n = shapes[si][0], d = shapes[si][1], m = shapes[si][2];
        float *x = rand_floats(m * n), *wf = rand_floats(d * n);
        float *base = rand_floats(m * d), *y = rand_floats(m * d), *ref = rand_floats(d);
        void *q8, *q8t;
        MatIn in = make_input(x, n, m, &q8);
        for (int ti = 0; ti < 3; ti++) {  // the float types
            Tensor w = make_tensor(TYPES[ti], wf, n, d, NULL);
            matmul(NULL, base, &in, &w);
            for (int p = 0; p < 4; p++) {
                matmul(pools[p], y, &in, &w);
                cr_assert(!memcmp(y, base, m * d * sizeof(float)), "%s n=%zu m=%zu, %d threads",
                          dtype_name(w.type), n, m, pool_size(pools[p]));
            }
            for (size_t t = 0; t < m; t += 7) {
                MatIn one = make_input(x + t * n, n, 1, &q8t);
                matmul(pools[t % 4], y, &one, &w);
                free(q8t);
                cr_assert(!memcmp(y, base + t * d, d * sizeof(float)), "%s n=%zu token %zu",
                          dtype_name(w.type), n, t);
                matvec_tensor(ref, x + t * n, &w);
                check_close(base + t * d, ref, x + t * n, &w, "long rows");
            }
            free((void *)w.data);
        }
        free(x), free(wf), free(base), free(y), free(ref), free(q8);
    }
    for (int p = 1; p < 4; p++) pool_destroy(pools[p]);
}

Test(matmul, rows_writes_only_its_range) {
    rng_state = 42;
    size_t n = 33, d = 37;
    float *x = rand_floats(n), *wf = rand_floats(d * n), *y = malloc(d * sizeof(float)),
          *ref = malloc(d * sizeof(float));
    cr_assert(y && ref);
    void *q8;
    MatIn in = make_input(x, n, 1, &q8);
    for (int ti = 0; ti < N_TYPES; ti++) {
        Tensor w = make_tensor(TYPES[ti], wf, n, d, NULL);
        matvec_tensor(ref, x, &w);
        for (size_t b = 0; b <= d; b += 5) {
            size_t e = b + 7 < d ? b + 7 : d;
            for (size_t i = 0; i < d; i++) y[i] = -1234.5f;
            matmul_rows(y, &in, &w, b, e);
            for (size_t i = 0; i < d; i++) {
                if (i >= b && i < e) cr_assert_float_eq(y[i], ref[i], 1e-4, "row %zu", i);
                else cr_assert_eq(y[i], -1234.5f, "row %zu outside [%zu, %zu) written", i, b, e);
            }
        }
        free((void *)w.data);
    }
    free(x), free(wf), free(y), free(ref), free(q8);
}

// 64 writable pages followed by as many inaccessible ones: *bytes is the writable size, and
// mem + *bytes the first byte that faults. munmap(mem, 2 * *bytes) when done.
static char *guarded(size_t *bytes) {
    long page = sysconf(_SC_PAGESIZE);
    int fd = open("/dev/zero", O_RDWR);
    cr_assert(page > 0 && fd >= 0);
    *bytes = 64 * (size_t)page;
    char *mem = mmap(NULL, 2 * *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    cr_assert(mem != MAP_FAILED);
    cr_assert_eq(mprotect(mem + *bytes, *bytes, PROT_NONE), 0);
    return mem;
}

// Weights ending right at an inaccessible page: the tails must not read past the end.
// Small integer values make every type exact, and every sum exact in any order.
Test(matmul, tails_stay_in_bounds) {
    size_t bytes;
    char *mem = guarded(&bytes);
    rng_state = 7;
    static const size_t shapes[][3] = {{1, 1, 1}, {17, 5, 3}, {33, 9, 6}, {255, 7, 9}, {31, 4, 4},
                                       {96, 3, 5}, {40, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], d = shapes[s][1], m = shapes[s][2];
        float *wf = malloc(d * n * sizeof(float)), *xf = malloc(m * n * sizeof(float));
        cr_assert(wf && xf);
        for (size_t i = 0; i < d * n; i++) wf[i] = (float)(xorshift() % 7) - 3.0f;
        for (size_t i = 0; i < m * n; i++) xf[i] = (float)(xorshift() % 5) - 2.0f;
        // X ends where the largest W begins (f32, or q8_0 with its padding); W ends at the guard
        size_t wmax = tensor_bytes(SL_F32, d, n);
        if (tensor_bytes(SL_Q8_0, d, n) > wmax) wmax = tensor_bytes(SL_Q8_0, d, n);
        float *x = (float *)(mem + bytes - (wmax + 3) / 4 * 4) - m * n;
        memcpy(x, xf, m * n * sizeof(float));
        float *y = malloc(m * d * sizeof(float)), *ref = malloc(d * sizeof(float));
        cr_assert(y && ref);
        void *q8;
        MatIn in = make_input(x, n, m, &q8);
        for (int ti = 0; ti < N_TYPES; ti++) {
            size_t wb = tensor_bytes(TYPES[ti], d, n);
            Tensor w = make_tensor(TYPES[ti], wf, n, d, mem + bytes - wb);  // W ends at the guard
            matmul(NULL, y, &in, &w);
            for (size_t t = 0; t < m; t++) {
                matvec_tensor(ref, x + t * n, &w);
                for (size_t i = 0; i < d; i++)  // q8_0: scales of 3/127, 2/127: near-exact
                    cr_assert(fabsf(y[t * d + i] - ref[i]) <= 1e-4f * (1 + fabsf(ref[i])),
                              "%s n=%zu d=%zu token %zu row %zu: %g vs %g",
                              dtype_name(w.type), n, d, t, i, y[t * d + i], ref[i]);
            }
        }
        free(y), free(ref), free(q8), free(wf), free(xf);
    }
    munmap(mem, 2 * bytes);
}

// matmul_input's q8_0 form equals quant.h's reference quantizer bitwise, on lengths with
// and without a partial last group, with zeros, ties and large values.
Test(matmul, input_quantization_matches_reference) {
    rng_state = 5;
    static const size_t lens[] = {1, 7, 31, 32, 33, 64, 95, 288, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li], m = 3, G = q8_groups(n);
        float *x = rand_floats(m * n);
        for (size_t i = 0; i < m * n; i += 5) x[i] *= 1000.0f;
        for (size_t i = 0; i < n && i < 32; i++) x[n + i] = 0.0f;         // an all-zero group
        for (size_t i = 0; i < n; i += 3) x[2 * n + i] = (float)(i % 7) * 0.5f;  // ties
        void *q8;
        MatIn in = make_input(x, n, m, &q8);
        cr_assert_eq(in.groups % 2, 0);
        cr_assert(in.groups >= G);
        for (size_t t = 0; t < m; t++) {
            int8_t q[1024];
            float d[32];
            q8_quantize_row(x + t * n, n, q, d);
            const int8_t *got = in.q + t * in.groups * Q8_GROUP;
            cr_assert(!memcmp(got, q, G * Q8_GROUP), "n=%zu token %zu: quants", n, t);
            for (size_t i = G * Q8_GROUP; i < in.groups * Q8_GROUP; i++)
                cr_assert_eq(got[i], 0, "padding");
            for (size_t g = 0; g < in.groups; g++) {
                for (size_t l = 0; l < 8; l++) {
                    size_t at = (t * in.groups + g) * 8 + l;
                    cr_assert(in.qscale[at] == (g < G ? d[g] : 0.0f), "n=%zu scale %zu", n, g);
                    const int8_t *p = got + g * Q8_GROUP + 4 * l;
                    cr_assert_eq(in.qcorr[at], -128 * (p[0] + p[1] + p[2] + p[3]));
                }
            }
        }
        free(x), free(q8);
    }
}

// The q8k form (q4_k, q5_k and q6_k's activations) equals quant.h's q8k_quantize_block bit
// for bit: quants, scales and 16-quant sums, with zeros, ties and large values.
Test(matmul, input_q8k_matches_reference) {
    rng_state = 6;
    size_t n = 3 * Q8K_BLOCK, m = 3, nb = n / Q8K_BLOCK;
    float *x = rand_floats(m * n);
    for (size_t i = 0; i < m * n; i += 7) x[i] *= 1000.0f;
    for (size_t i = 0; i < Q8K_BLOCK; i++) x[n + i] = 0.0f;  // an all-zero block
    for (size_t i = 0; i < n; i += 3) x[2 * n + i] = (float)(i % 7) * 0.5f;  // ties
    void *q8;
    MatIn in = make_input(x, n, m, &q8);
    for (size_t t = 0; t < m; t++)
        for (size_t b = 0; b < nb; b++) {
            int8_t q[Q8K_BLOCK];
            int16_t sums[Q8K_BLOCK / 16];
            float d = q8k_quantize_block(x + t * n + b * Q8K_BLOCK, q, sums);
            cr_assert(in.kd[t * nb + b] == d, "token %zu block %zu: scale", t, b);
            cr_assert(!memcmp(in.kq + t * n + b * Q8K_BLOCK, q, Q8K_BLOCK), "quants");
            cr_assert(!memcmp(in.kbs + t * (n / 16) + b * 16, sums, sizeof sums), "sums");
        }
    free(x), free(q8);
}

// ----------------------------------------------------------------------------
// ggml's block types: random blocks whose f16 scales are moderate

static const int BLOCK_TYPES[] = {SL_Q4_0, SL_Q4_K, SL_Q5_K,  SL_Q6_K,   SL_Q4_1,  SL_Q5_0,
                                  SL_Q5_1, SL_Q2_K, SL_Q3_K, SL_IQ4_NL, SL_IQ4_XS};
#define N_BLOCK_TYPES (sizeof BLOCK_TYPES / sizeof BLOCK_TYPES[0])

// A d x n tensor of a block type at dst (or malloc'd): random bytes, then each f16 scale (d,
// and dmin where the type has one) set to a random value in (-0.05, 0.05).
static Tensor make_block_tensor(int type, size_t n, size_t d, void *dst) {
    size_t be = 0, bb = 0, bytes = tensor_bytes(type, d, n);
    cr_assert(ggml_block_info(dtype_ggml(type), &be, &bb) && bytes);
    uint8_t *p = dst ? dst : malloc(bytes);
    cr_assert_not_null(p);
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)xorshift();
    size_t off[2] = {0, 2}, n_off = 2;  // d, dmin or m at the block's start, or:
    if (type == SL_Q4_0 || type == SL_Q5_0 || type == SL_IQ4_NL || type == SL_IQ4_XS) n_off = 1;
    if (type == SL_Q6_K) off[0] = 208, n_off = 1;
    if (type == SL_Q3_K) off[0] = 108, n_off = 1;
    if (type == SL_Q2_K) off[0] = 80, off[1] = 82;
    for (size_t b = 0; b < bytes / bb; b++)
        for (size_t k = 0; k < n_off; k++) {
            uint16_t h = f32_to_fp16(((float)(xorshift() % 20001) - 10000.0f) * 5e-6f);
            memcpy(p + b * bb + off[k], &h, 2);
        }
    return (Tensor){type, d, n, p, NULL, NULL};
}

// The tuned path against the plain reference: the 32-weight types (as q8_0: integer sums per
// block against the q8_0 activations, scaled in float lanes: the same products, summed in
// another order) within check_close's bound; the K-pattern types (integer sums per block, then
// the same float operations) bit for bit; and
// bitwise the same for 1-4 threads, for a matvec and for a batch's row, on row lengths of
// one block to several blocks and batches past one tile of tokens.
Test(matmul, block_types_match_reference_and_are_deterministic) {
    rng_state = 0xB10C5;
    Pool *pools[4] = {NULL, pool_create(2), pool_create(3), pool_create(4)};
    static const size_t ns[] = {256, 512, 1280, 2304, 32, 96};
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
        for (size_t ti = 0; ti < N_BLOCK_TYPES; ti++) {
            size_t n = ns[s], d = rand_size(1, 40), m = rand_size(1, 37), be, bb;
            ggml_block_info(dtype_ggml(BLOCK_TYPES[ti]), &be, &bb);
            if (n % be) continue;  // K types and iq4_xs: 256 per block
            Tensor w = make_block_tensor(BLOCK_TYPES[ti], n, d, NULL);
            float *x = rand_floats(m * n), *ref = rand_floats(d), *base = rand_floats(m * d);
            float *y = rand_floats(m * d);
            void *q8, *q8t;
            MatIn in = make_input(x, n, m, &q8);
            matmul(NULL, base, &in, &w);
            for (int p = 0; p < 4; p++) {
                matmul(pools[p], y, &in, &w);
                cr_assert(!memcmp(y, base, m * d * sizeof(float)), "%s batch, pool %d, n=%zu",
                          dtype_name(w.type), p, n);
            }
            for (size_t t = 0; t < m; t++) {
                matvec_tensor(ref, x + t * n, &w);
                check_close(base + t * d, ref, x + t * n, &w, "batch");
                if (kquant_type(w.type))  // the K types: integer sums, one scaling per block
                    cr_assert(!memcmp(base + t * d, ref, d * sizeof(float)),
                              "%s token %zu: the twin's bits", dtype_name(w.type), t);
                MatIn one = make_input(x + t * n, n, 1, &q8t);
                matmul(pools[t % 4], y, &one, &w);
                free(q8t);
                cr_assert(!memcmp(y, base + t * d, d * sizeof(float)), "%s matvec token %zu",
                          dtype_name(w.type), t);
            }
            free((void *)w.data), free(x), free(ref), free(base), free(y), free(q8);
        }
    }
    for (int p = 1; p < 4; p++) pool_destroy(pools[p]);
}

// A block tensor ending at an inaccessible page: no read past its last block.
Test(matmul, block_types_stay_in_bounds) {
    size_t bytes;
    char *mem = guarded(&bytes);
    rng_state = 77;
    for (size_t ti = 0; ti < N_BLOCK_TYPES; ti++) {
        size_t n = 512, d = 3, m = 2, wb = tensor_bytes(BLOCK_TYPES[ti], d, n);
        Tensor w = make_block_tensor(BLOCK_TYPES[ti], n, d, mem + bytes - wb);
        float *x = rand_floats(m * n), *y = malloc(m * d * sizeof(float)), *ref = malloc(d * 4);
        void *q8;
        MatIn in = make_input(x, n, m, &q8);
        matmul(NULL, y, &in, &w);
        for (size_t t = 0; t < m; t++) {
            matvec_tensor(ref, x + t * n, &w);
            check_close(y + t * d, ref, x + t * n, &w, "guarded");
        }
        free(x), free(y), free(ref), free(q8);
    }
    munmap(mem, 2 * bytes);
}

// What the kernels compute means what it should: each output within float rounding (1e-5 of
// sum |w x|) of the exact sum, in double, of gguf's dequantized weights (ggml_dequantize, which
// test_blocks checks against the gguf package) times the dequantized activation quants the
// type reads (q8_0 groups: d_x q_x; q8k blocks: d_x q_x). A wrong level, scale, min or bit
// plane in any kernel (fast or twin) breaks it.
Test(matmul, block_types_compute_dequantized_dot) {
    rng_state = 0xDE0;
    for (size_t ti = 0; ti < N_BLOCK_TYPES; ti++) {
        size_t n = 768, d = 9, m = 5;
        Tensor w = make_block_tensor(BLOCK_TYPES[ti], n, d, NULL);
        float *x = rand_floats(m * n), *y = malloc(m * d * sizeof(float)), *row = malloc(n * 4);
        cr_assert(y && row);
        void *q8;
        MatIn in = make_input(x, n, m, &q8);
        matmul(NULL, y, &in, &w);
        const int k = kquant_type(w.type);
        for (size_t r = 0; r < d; r++) {
            tensor_row(&w, r, row);
            for (size_t t = 0; t < m; t++) {
                double ref = 0, scale = 0;
                for (size_t j = 0; j < n; j++) {
                    double xj = k ? (double)in.kd[t * (n / 256) + j / 256] * in.kq[t * n + j]
                                  : (double)in.qd[t * in.groups + j / 32] * in.q[t * in.groups * 32 + j];
                    ref += (double)row[j] * xj, scale += fabs((double)row[j] * xj);
                }
                cr_assert(fabs(y[t * d + r] - ref) <= 1e-5 * scale + 1e-30,
                          "%s row %zu token %zu: %.9g, dequantized %.9g", dtype_name(w.type), r, t,
                          y[t * d + r], ref);
            }
        }
        free((void *)w.data), free(x), free(y), free(row), free(q8);
    }
}

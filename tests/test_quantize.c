// test_quantize.c: our quantizers (convert/quantize.c) against llama.cpp's own, byte for byte,
// for Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS
// (tests/fixtures/quantize.bin, made by make_quantize.py with ggml-base's
// ggml_quantize_chunk and no importance matrix: zeros, constants, one-signed rows, outliers,
// tiny and subnormal values, scales at and past f16's largest, mixed magnitudes, sparse rows,
// rounding ties and typical weights), the round trip through ggml_dequantize, and refusals.
//
// Every block must match: ggml-base, where llama-quantize's quantizers live, is built for
// plain x86-64 (no FMA), and we compile without contraction, so the f32 arithmetic is the same
// operation for operation. (Had ggml-quants.c been built with -march=native, GCC's default
// -ffp-contract=fast would fuse its multiply-adds: make_quantize.py counts 18 of the 84 Q2_K
// blocks, 6 of the 84 Q4_K, 28 of the 84 Q5_K, 4 of the 672 IQ4_NL and 1 of the 84 IQ4_XS that
// such a build writes differently; none with -ffp-contract=off.)
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "convert/quantize.h"
#include "kernels/blocks.h"
#include "tests/helpers.h"

#define N_TYPES 11
enum { T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K, T_IQ4_NL, T_IQ4_XS };
static const uint32_t types[N_TYPES] = {
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
static const char *const type_names[N_TYPES] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K",
                                                "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};

static void block_info(uint32_t type, size_t *elems, size_t *bytes) {
    cr_assert(ggml_block_info(type, elems, bytes), "type %u", type);
}

// One case of the fixture: its rows and ggml's blocks of them per type (pointers into buf).
typedef struct {
    char name[17];
    uint32_t rows, cols, flags;
    const float *x;  // aligned copy
    const uint8_t *ggml[N_TYPES];
    uint32_t ggml_bytes[N_TYPES];
} QuantCase;

#define MAX_CASES 32
static uint8_t *buf;
static QuantCase cases[MAX_CASES];
static size_t n_cases;

static void load(void) {
    size_t n = 0, at = 12;
    buf = (uint8_t *)read_all(fixture("quantize.bin"), &n);
    cr_assert(buf && n >= 12 && memcmp(buf, "SLQUANT2", 8) == 0, "quantize.bin: SLQUANT2 header");
    uint32_t count;
    memcpy(&count, buf + 8, 4);
    cr_assert(count <= MAX_CASES);
    for (n_cases = 0; n_cases < count; n_cases++) {
        QuantCase *c = &cases[n_cases];
        cr_assert(at + 28 <= n);
        memcpy(c->name, buf + at, 16), c->name[16] = 0;
        memcpy(&c->rows, buf + at + 16, 4), memcpy(&c->cols, buf + at + 20, 4);
        memcpy(&c->flags, buf + at + 24, 4);
        at += 28;
        size_t nx = (size_t)c->rows * c->cols;
        cr_assert(at + 4 * nx <= n);
        float *x = malloc(4 * nx);
        memcpy(x, buf + at, 4 * nx);
        c->x = x;
        at += 4 * nx;
        for (int t = 0; t < N_TYPES; t++) {
            uint32_t h[2];
            cr_assert(at + 8 <= n);
            memcpy(h, buf + at, 8);
            cr_assert_eq(h[0], types[t], "%s: type %u, want %u", c->name, h[0], types[t]);
            cr_assert(at + 8 + h[1] <= n);
            c->ggml[t] = buf + at + 8, c->ggml_bytes[t] = h[1];
            at += 8 + h[1];
        }
    }
    cr_assert_eq(at, n, "quantize.bin: %zu bytes left over", n - at);
}

static void unload(void) {
    for (size_t i = 0; i < n_cases; i++) free((void *)cases[i].x);
    free(buf);
}

TestSuite(quantize, .init = load, .fini = unload);

Test(quantize, blocks_match_llama_cpp_bytewise) {
    size_t matched[N_TYPES] = {0};
    for (size_t i = 0; i < n_cases; i++) {
        const QuantCase *c = &cases[i];
        for (int t = 0; t < N_TYPES; t++) {
            size_t elems, bytes;
            block_info(types[t], &elems, &bytes);
            size_t nb = (size_t)c->rows * c->cols / elems;
            cr_assert_eq(c->ggml_bytes[t], nb * bytes, "%s %s: size", c->name, type_names[t]);
            uint8_t *got = malloc(nb * bytes);
            cr_assert_eq(quantize_blocks(types[t], c->x, c->rows, c->cols, got), 0);
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *g = got + b * bytes, *w = c->ggml[t] + b * bytes;
                size_t k = 0;
                while (k < bytes && g[k] == w[k]) k++;
                cr_assert(k == bytes, "%s, %s: block %zu (row %zu) differs first at byte %zu: "
                          "%02x, ggml %02x", c->name, type_names[t], b, b / (c->cols / elems),
                          k, g[k], w[k]);
                matched[t]++;
            }
            free(got);
        }
    }
    // all of the fixture's blocks (make_quantize.py prints the same counts)
    for (int t = 0; t < N_TYPES; t++) {
        size_t elems, bytes;
        block_info(types[t], &elems, &bytes);
        cr_assert_eq(matched[t], elems == 32 ? 672u : 84u, "%s: %zu blocks", type_names[t], matched[t]);
    }
}

// RMS(dequantize(quantize(x)) - x) / RMS(x) over a case's rows.
static double round_trip_error(uint32_t type, const float *x, size_t rows, size_t cols) {
    size_t elems, bytes;
    block_info(type, &elems, &bytes);
    size_t n = rows * cols, nb = n / elems;
    uint8_t *q = malloc(nb * bytes);
    float *y = malloc(n * sizeof *y);
    cr_assert_eq(quantize_blocks(type, x, rows, cols, q), 0);
    ggml_dequantize(type, q, nb, y);
    double e2 = 0, x2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)x[i];
        e2 += d * d, x2 += (double)x[i] * (double)x[i];
    }
    free(q), free(y);
    return sqrt(e2 / x2);
}

// Rounding to a grid of step s leaves an RMS error near s / sqrt(12). Uniform x in [-1, 1]
// (RMS 0.577): Q4_0's step is max|x| / 8 ~ 1/8, so about 0.036 / 0.577 = 0.063 (measured
// 0.066); Q4_1 spans [min, max] in 15 steps (0.067 * 15/16: 0.059); Q4_K fits 16 levels to each
// sub-block's [min, max] (step ~ 2/15: 0.067 before the fit's gain; measured 0.054); Q5_K 32
// levels (0.032; 0.027); Q6_K 64 levels around each 16's largest |x| (step <= 1/32: <= 0.016;
// 0.013); Q2_K 4 levels per 16 (step ~ 2/3: 0.33 before the fit's gain; 0.234). Gaussian rows
// (N(0, 0.02)) and heavy-tailed ones (Student's t, 3 degrees of freedom) spend more of the grid
// on their tails: the worst of the three typical cases is the t rows, Q4_0 0.1332, Q4_1 0.1006,
// Q5_0 0.0623, Q5_1 0.0482, Q2_K 0.3539, Q3_K 0.1943, Q4_K 0.0926, Q5_K 0.0474, Q6_K 0.0261,
// IQ4_NL 0.1024, IQ4_XS 0.1039. The fixture is fixed, so these figures are exact; the bounds sit
// 10% above them. On every typical case: each extra bit of the K types at least nearly halves
// the error (a ratio above 1.7), and so does Q5_0's over Q4_0 and Q5_1's over Q4_1; a min
// (Q4_1, Q5_1) does better than none (Q4_0, Q5_0), and IQ4_NL's non-linear levels better than
// Q4_0's.
Test(quantize, round_trip_error_is_bounded) {
    const double bound[N_TYPES] = {0.147, 0.111, 0.069, 0.053, 0.390, 0.214,
                                   0.102, 0.052, 0.029, 0.113, 0.115};
    int typical = 0;
    for (size_t i = 0; i < n_cases; i++) {
        const QuantCase *c = &cases[i];
        if (!(c->flags & 1)) continue;
        typical++;
        double e[N_TYPES];
        for (int t = 0; t < N_TYPES; t++) {
            e[t] = round_trip_error(types[t], c->x, c->rows, c->cols);
            cr_log_info("%s %s: relative RMS error %.4f", c->name, type_names[t], e[t]);
            cr_assert(e[t] < bound[t], "%s %s: relative RMS error %.4f, bound %.4f", c->name,
                      type_names[t], e[t], bound[t]);
        }
        // (fewer bits, more bits) and (worse, better) pairs
        const int halves[][2] = {{T_Q2_K, T_Q3_K}, {T_Q3_K, T_Q4_K}, {T_Q4_K, T_Q5_K},
                                 {T_Q5_K, T_Q6_K}, {T_Q4_0, T_Q5_0}, {T_Q4_1, T_Q5_1}};
        const int better[][2] = {{T_Q4_0, T_Q4_1}, {T_Q5_0, T_Q5_1}, {T_Q4_0, T_IQ4_NL}};
        for (size_t k = 0; k < sizeof halves / sizeof halves[0]; k++) {
            int a = halves[k][0], b = halves[k][1];
            cr_assert(e[b] * 1.7 < e[a], "%s: %s error %.4f, %s %.4f", c->name, type_names[a], e[a],
                      type_names[b], e[b]);
        }
        for (size_t k = 0; k < sizeof better / sizeof better[0]; k++) {
            int a = better[k][0], b = better[k][1];
            cr_assert(e[b] < e[a], "%s: %s error %.4f, %s %.4f", c->name, type_names[a], e[a],
                      type_names[b], e[b]);
        }
    }
    cr_assert_eq(typical, 3);
}

Test(quantize, zero_rows_come_back_zero) {
    float x[512] = {0}, y[512];
    uint8_t q[2 * 210];  // the largest: two Q6_K blocks
    for (int t = 0; t < N_TYPES; t++) {
        size_t elems, bytes;
        block_info(types[t], &elems, &bytes);
        memset(q, 0xAA, sizeof q);
        cr_assert_eq(quantize_blocks(types[t], x, 2, 256, q), 0);
        ggml_dequantize(types[t], q, 512 / elems, y);
        for (int i = 0; i < 512; i++)
            cr_assert(y[i] == 0.0f, "%s: weight %d is %g", type_names[t], i, (double)y[i]);
    }
}

Test(quantize, refuses_other_types_and_partial_blocks) {
    float x[288] = {0};
    uint8_t q[400];
    // Q8_0 has its own quantizer (kernels/quant.c); the codebook types (IQ2_XXS 16 .. IQ1_M
    // 29 but IQ4_NL 20 and IQ4_XS 23) are not made
    const uint32_t others[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, 9, 15, 16, 17, 18,
                               19, 21, 22, 24, 29, GGML_TYPE_BF16, 1000};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        cr_assert_eq(quantize_blocks(others[i], x, 1, 256, q), -1, "type %u", others[i]);
    for (int t = 0; t < N_TYPES; t++) {
        memset(q, 0xAA, sizeof q);
        cr_assert_eq(quantize_blocks(types[t], x, 1, 100, q), -1, "%s, 100 columns", type_names[t]);
        int ok = quantize_blocks(types[t], x, 1, 288, q);  // 9 blocks of 32, not of 256
        size_t elems, bytes;
        block_info(types[t], &elems, &bytes);
        cr_assert_eq(ok, elems == 32 ? 0 : -1, "%s, 288 columns", type_names[t]);
        if (ok < 0)
            for (size_t k = 0; k < sizeof q; k++) cr_assert_eq(q[k], 0xAA, "%s: out untouched", type_names[t]);
    }
}

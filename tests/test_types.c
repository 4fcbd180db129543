// test_types.c: the type table (kernels/types.h) against what the rest of the code does with
// each type: ggml's ids and block layouts (blocks.h), the matmul's activation forms
// (matmul.h), the bytes of a row as the quantizer writes it and the loader lays it out, and the
// round trip of a random row through its quantizer and the table's to_float, within the type's
// error; its plain dot against the dequantized row, within what quantizing the activations to
// the type's input form may cost.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/types.h"
#include "model.h"
#include "tests/helpers.h"

_Static_assert(TYPE_IN_Q8_0 == MATMUL_Q8_0 && TYPE_IN_Q8_K == MATMUL_Q8_K,
               "types.h's input forms are matmul.h's");

// What each type is, from its definition: ggml's type ids (ggml.h) and the sizes of its blocks
// as the sums of their fields (ggml-common.h's structs, blocks.h's layouts).
static const struct {
    int type;
    const char *name;
    uint32_t ggml;
    int ggml_blocks;
    size_t elems, bytes;
    int input;
    double bound;  // the round trip's relative RMS error on uniform values, at most: 20% above
                   // the measure (f16 0.00019, bf16 0.0015; the others as test_export's)
} expect[] = {
    {SL_F32, "f32", 0, 0, 1, 4, TYPE_IN_F32, 0},
    {SL_F16, "f16", 1, 0, 1, 2, TYPE_IN_F32, 2.3e-4},
    {SL_BF16, "bf16", 30, 0, 1, 2, TYPE_IN_F32, 1.8e-3},
    {SL_Q8_0, "q8_0", 8, 0, 32, 2 + 32, TYPE_IN_Q8_0, 0.0046},       // d, qs[32]
    {SL_Q4_0, "q4_0", 2, 1, 32, 2 + 16, TYPE_IN_Q8_0, 0.078},        // d, qs[16]
    {SL_Q4_1, "q4_1", 3, 1, 32, 2 + 2 + 16, TYPE_IN_Q8_0, 0.073},    // d, m, qs[16]
    {SL_Q5_0, "q5_0", 6, 1, 32, 2 + 4 + 16, TYPE_IN_Q8_0, 0.038},    // d, qh[4], qs[16]
    {SL_Q5_1, "q5_1", 7, 1, 32, 2 + 2 + 4 + 16, TYPE_IN_Q8_0, 0.036},  // d, m, qh[4], qs[16]
    {SL_IQ4_NL, "iq4_nl", 20, 1, 32, 2 + 16, TYPE_IN_Q8_0, 0.077},   // d, qs[16]
    {SL_Q2_K, "q2_k", 10, 1, 256, 16 + 64 + 2 + 2, TYPE_IN_Q8_K, 0.281},  // scales, qs, d, dmin
    {SL_Q3_K, "q3_k", 11, 1, 256, 32 + 64 + 12 + 2, TYPE_IN_Q8_K, 0.151},  // hmask, qs, scales, d
    {SL_Q4_K, "q4_k", 12, 1, 256, 2 + 2 + 12 + 128, TYPE_IN_Q8_K, 0.066},  // d, dmin, scales, qs
    {SL_Q5_K, "q5_k", 13, 1, 256, 2 + 2 + 12 + 32 + 128, TYPE_IN_Q8_K, 0.034},  // + qh[32]
    {SL_Q6_K, "q6_k", 14, 1, 256, 128 + 64 + 16 + 2, TYPE_IN_Q8_K, 0.016},  // ql, qh, scales, d
    {SL_IQ4_XS, "iq4_xs", 23, 1, 256, 2 + 2 + 4 + 128, TYPE_IN_Q8_K, 0.078},  // d, sh, sl, qs
};
#define N_EXPECT (sizeof expect / sizeof expect[0])

Test(types, every_row_is_what_its_type_is) {
    cr_assert_eq(N_EXPECT, SL_DTYPE_COUNT, "a type without its expectations here");
    for (size_t i = 0; i < N_EXPECT; i++) {
        const int d = expect[i].type;
        const TypeInfo *t = type_info(d);
        cr_assert(t, "no row for type %d", d);
        cr_assert_str_eq(t->name, expect[i].name);
        cr_assert_str_eq(dtype_name(d), expect[i].name);
        cr_assert_eq(t->ggml, expect[i].ggml, "%s: ggml id %u", t->name, t->ggml);
        cr_assert_eq(type_of_ggml(t->ggml), d, "%s", t->name);
        cr_assert_eq(t->ggml_blocks, expect[i].ggml_blocks, "%s", t->name);
        cr_assert_eq(dtype_ggml(d), t->ggml_blocks ? t->ggml : 0, "%s", t->name);
        cr_assert(t->block_elems == expect[i].elems && t->block_bytes == expect[i].bytes,
                  "%s: %zu weights in %zu bytes, expected %zu in %zu", t->name, t->block_elems,
                  t->block_bytes, expect[i].elems, expect[i].bytes);
        size_t be = 0, bb = 0;  // blocks.h's view: the block types and GGUF's Q8_0 have blocks
        cr_assert_eq(ggml_block_info(t->ggml, &be, &bb), t->block_elems > 1, "%s", t->name);
        if (t->block_elems > 1) cr_assert(be == t->block_elems && bb == t->block_bytes);
        cr_assert_eq(t->input, expect[i].input, "%s", t->name);
        cr_assert_eq(t->input, matmul_input_forms(d), "%s: the matmul reads form %d", t->name,
                     matmul_input_forms(d));
        cr_assert_eq(kquant_type(d), t->input == TYPE_IN_Q8_K, "%s", t->name);
        cr_assert(t->to_float && t->dot, "%s", t->name);
    }
    const uint32_t ggml_names[] = {
        GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,   GGML_TYPE_Q4_0,
        GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_IQ4_NL, GGML_TYPE_Q2_K,
        GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,   GGML_TYPE_IQ4_XS,
    };  // blocks.h's names for the ids above, in the same order
    for (size_t i = 0; i < N_EXPECT; i++) cr_assert_eq(ggml_names[i], expect[i].ggml);
    cr_assert_null(type_info(-1));
    cr_assert_null(type_info(SL_DTYPE_COUNT));
    cr_assert_null(type_info(SL_TYPE_PER_LAYER));
    cr_assert_str_eq(dtype_name(SL_TYPE_PER_LAYER), "unknown");
    cr_assert_eq(type_of_ggml(9), -1, "Q8_1 is no type of ours");
    cr_assert_eq(type_of_ggml(1000), -1);
    cr_assert_eq(tensor_bytes(SL_DTYPE_COUNT, 1, 32), 0);
}

// The bytes of a row: the table's, the loader's (model_layout, tensor_bytes, tensor_layer) and,
// for the block types, the quantizer's.
Test(types, row_bytes_are_the_loaders_and_the_quantizers) {
    const size_t cols = 512, rows = 3;
    uint64_t seed = 7;
    float *x = malloc(2 * cols * sizeof(float));
    for (size_t i = 0; i < 2 * cols; i++) x[i] = test_randf(&seed);
    uint8_t *two = malloc(4 * cols + 64), *one = malloc(2 * cols);
    uint8_t *mem = malloc(2 * cols * cols * 4);  // two layers of wq in f32: the largest
    for (int d = 0; d < SL_DTYPE_COUNT; d++) {
        const TypeInfo *t = type_info(d);
        const size_t row = cols / t->block_elems * t->block_bytes;
        cr_assert_eq(type_row_bytes(d, cols), row, "%s", t->name);
        cr_assert_eq(tensor_bytes(d, rows, cols), rows * row, "%s", t->name);
        // a row that is not whole blocks: q8_0 pads its last group, the block types refuse it
        size_t odd = t->block_elems == 256 ? 288 : 40;
        size_t want = !t->ggml_blocks ? (odd + t->block_elems - 1) / t->block_elems * t->block_bytes
                                      : 0;
        cr_assert_eq(type_row_bytes(d, odd), want, "%s: %zu weights", t->name, odd);

        // the loader: wq of a model whose matrices are of this type
        SlHeader h = test_model_header(0);
        h.dim = (int32_t)cols, h.hidden_dim = 1024, h.n_heads = 4, h.n_kv_heads = 2;
        h.head_dim = (int32_t)cols / 4;
        for (int k = 0; k < SL_T_COUNT; k++) h.tensor_type[k] = tensor_is_f32(k) ? SL_F32 : d;
        SlLayout lay;
        cr_assert_eq(model_layout(&h, NULL, &lay, "types"), MODEL_OK, "%s", t->name);
        size_t L = (size_t)h.n_layers;
        cr_assert_eq(lay.bytes[SL_T_WQ], L * cols * row, "%s", t->name);
        cr_assert_eq(lay.bytes[SL_T_W2], L * cols * (1024 / t->block_elems * t->block_bytes));
        Tensor w = {d, L * cols, cols, mem, NULL, NULL};  // wq, stacked
        if (d == SL_Q8_0) w.scales = (const uint16_t *)(void *)(mem + L * cols * cols);
        Tensor l1 = tensor_layer(&w, 1, L);
        size_t data_row = d == SL_Q8_0 ? cols : row;  // q8_0's quants, its scales apart
        cr_assert_eq(l1.data, mem + cols * data_row, "%s", t->name);
        if (d == SL_Q8_0) cr_assert_eq(l1.scales, w.scales + cols * cols / 32);

        // the quantizer: two rows at once are row 0's bytes, then row 1's alone, and no more
        if (!t->ggml_blocks) continue;
        memset(two, 0xA5, 2 * row + 64);
        cr_assert_eq(quantize_blocks(t->ggml, x, 2, cols, two), 0, "%s", t->name);
        cr_assert_eq(quantize_blocks(t->ggml, x + cols, 1, cols, one), 0, "%s", t->name);
        cr_assert(!memcmp(two + row, one, row), "%s: row 1 is not at byte %zu", t->name, row);
        for (size_t i = 2 * row; i < 2 * row + 64; i++)
            cr_assert_eq(two[i], 0xA5, "%s: wrote past its rows", t->name);
        cr_assert_eq(quantize_blocks(t->ggml, x, 1, cols + t->block_elems / 2, one), -1);
    }
    free(x), free(two), free(one), free(mem);
}

// A row of n uniform values in the type's storage: w (the model file's layout, data and
// scales) and, for to_float, ggml's (q8_0's blocks interleave scale and quants).
typedef struct {
    void *data, *ggml;
    uint16_t *scales;
} Stored;

static Stored store(int d, const float *x, size_t rows, size_t n) {
    const TypeInfo *t = type_info(d);
    Stored s = {malloc(rows * n * 4), NULL, NULL};
    s.ggml = s.data;
    switch (d) {  // the reference of each storage, independent of the table
    case SL_F32: memcpy(s.data, x, rows * n * 4); break;
    case SL_F16:
        for (size_t i = 0; i < rows * n; i++) ((uint16_t *)s.data)[i] = f32_to_fp16(x[i]);
        break;
    case SL_BF16:
        for (size_t i = 0; i < rows * n; i++) ((uint16_t *)s.data)[i] = f32_to_bf16(x[i]);
        break;
    case SL_Q8_0: {
        size_t G = n / 32;
        s.scales = malloc(rows * G * 2);
        s.ggml = malloc(rows * G * 34);
        for (size_t r = 0; r < rows; r++) {
            int8_t *q = (int8_t *)s.data + r * n;
            q8_quantize_row_f16(x + r * n, n, q, s.scales + r * G);
            for (size_t g = 0; g < G; g++) {
                uint8_t *b = (uint8_t *)s.ggml + (r * G + g) * 34;
                memcpy(b, s.scales + r * G + g, 2);
                memcpy(b + 2, q + 32 * g, 32);
            }
        }
        break;
    }
    default: cr_assert_eq(quantize_blocks(t->ggml, x, rows, n, s.data), 0, "%s", t->name);
    }
    return s;
}

static void stored_free(Stored *s) {
    if (s->ggml != s->data) free(s->ggml);
    free(s->data), free(s->scales);
}

Test(types, to_float_undoes_each_quantizer_within_its_error) {
    const size_t n = 4096;
    uint64_t seed = 11;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *z = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = test_randf(&seed);
    for (size_t i = 0; i < N_EXPECT; i++) {
        const int d = expect[i].type;
        const TypeInfo *t = type_info(d);
        Stored s = store(d, x, 1, n);
        t->to_float(s.ggml, y, n);
        Tensor w = {d, 1, n, s.data, s.scales, NULL};
        tensor_row(&w, 0, z);  // the loader's view: the same floats
        cr_assert(!memcmp(y, z, n * sizeof(float)), "%s: tensor_row differs from to_float",
                  t->name);
        if (t->block_elems > 1) {  // blocks.h's entry point for GGUF's blocks
            ggml_dequantize(t->ggml, s.ggml, n / t->block_elems, z);
            cr_assert(!memcmp(y, z, n * sizeof(float)), "%s: ggml_dequantize differs", t->name);
        }
        double err = 0, norm = 0;
        for (size_t k = 0; k < n; k++)
            err += ((double)y[k] - x[k]) * ((double)y[k] - x[k]), norm += (double)x[k] * x[k];
        double rel = sqrt(err / norm);
        cr_log_info("%s: relative RMS error %.5f", t->name, rel);
        cr_assert(rel <= expect[i].bound, "%s: relative RMS error %.5f > %.5f", t->name, rel,
                  expect[i].bound);
        if (d != SL_F32) cr_assert(rel > expect[i].bound / 2, "%s: %.5f, far below its bound %.5f",
                                   t->name, rel, expect[i].bound);
        stored_free(&s);
    }
    free(x), free(y), free(z);
}

// The plain dot of each row against the dequantized row times x: they differ by what
// quantizing x to the type's input form costs, at most half a step of its group or block
// (max |x| / 127 / 2) per weight, and the float sums' rounding.
Test(types, dot_is_the_dequantized_row_times_x) {
    const size_t n = 512, rows = 4;
    uint64_t seed = 13;
    float *w = malloc(rows * n * sizeof(float)), *x = malloc(n * sizeof(float));
    float *row = malloc(n * sizeof(float)), *y = malloc(rows * sizeof(float));
    for (size_t i = 0; i < rows * n; i++) w[i] = test_randf(&seed);
    for (size_t i = 0; i < n; i++) x[i] = test_randf(&seed) * (i % 7 == 0 ? 8.0f : 1.0f);
    for (int d = 0; d < SL_DTYPE_COUNT; d++) {
        const TypeInfo *t = type_info(d);
        size_t group = t->input == TYPE_IN_Q8_0 ? 32 : t->input == TYPE_IN_Q8_K ? 256 : 0;
        Stored s = store(d, w, rows, n);
        Tensor W = {d, rows, n, s.data, s.scales, NULL};
        matvec_tensor(y, x, &W);
        for (size_t r = 0; r < rows; r++) {
            tensor_row(&W, r, row);
            double ref = 0, mag = 0, slack = 0;
            for (size_t i = 0; i < n; i++) {
                ref += (double)row[i] * x[i], mag += fabs((double)row[i] * x[i]);
                if (!group) continue;
                float amax = 0;
                for (size_t k = i / group * group; k < (i / group + 1) * group; k++)
                    amax = fmaxf(amax, fabsf(x[k]));
                slack += fabs((double)row[i]) * amax / 127 / 2;
            }
            float got = t->dot(&W, r, x);
            cr_assert_eq(got, y[r], "%s row %zu: matvec_tensor is the dot of each row", t->name,
                         r);
            double bound = slack * 1.001 + 4e-5 * mag;  // 4e-5: 512 roundings of 2^-24
            cr_assert(fabs(got - ref) <= bound, "%s row %zu: dot %g, dequantized row . x %g "
                      "(bound %g)", t->name, r, (double)got, ref, bound);
            if (group) cr_assert(got != (float)ref, "%s: x is not quantized?", t->name);
        }
        stored_free(&s);
    }
    free(w), free(x), free(row), free(y);
}

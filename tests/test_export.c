// tests/test_export.c: the number formats (quant.c), the f32 -> f16/bf16/q8_0 converter
// (convert.c) and `export --dtype` end to end.
//
// Bounds that an exported tensor must meet against the f32 export of the same input, per
// element x (f32) and y (the stored value, read back with tensor_row):
//   f16:  |y - x| <= 2^-11 |x| for normal values (|x| >= 2^-14), <= 2^-25 below (subnormals);
//   bf16: |y - x| <= 2^-8 |x|;
//   q8_0: per group with d = max|x| / 127 (f32) and d16 = d rounded to f16,
//         |y - x| <= d / 2 + 127 |d - d16| + 2^-20 max|x|
//         (half a quantization step, the scale's f16 rounding times the largest quant, and
//         the f32 rounding of x * (1/d) and of d16 * q).
// Beyond the bounds, the stored bits must equal quant.c's conversion of the f32 values.
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/convert.h"
#include "convert/quantize.h"
#include "kernels/blocks.h"
#include "model.h"
#include "kernels/quant.h"
#include "convert/synth.h"
#include "helpers.h"

static int f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu); }

// ----------------------------------------------------------------------------
// quant.c

Test(quant, f16_all_patterns_round_trip) {
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = fp16_to_f32(h);
        unsigned exp = (h >> 10) & 0x1f, man = h & 0x3ff;
        float mag = exp == 0x1f ? (man ? NAN : INFINITY)
                    : exp == 0  ? ldexpf((float)man, -24)
                                : ldexpf(1.0f + (float)man / 1024.0f, (int)exp - 15);
        if (f16_is_nan(h)) {
            cr_assert(isnan(f), "0x%04x must decode to NaN", h);
            uint16_t back = f32_to_fp16(f);
            cr_assert(f16_is_nan(back) && (back & 0x8000u) == (h & 0x8000u),
                      "NaN 0x%04x came back as 0x%04x", h, back);
            continue;
        }
        cr_assert((signbit(f) != 0) == ((h & 0x8000u) != 0) && fabsf(f) == mag,
                  "0x%04x decodes to %a, expected %s%a", h, f, h & 0x8000u ? "-" : "", mag);
        cr_assert_eq(f32_to_fp16(f), h, "0x%04x -> %a -> 0x%04x", h, f, f32_to_fp16(f));
    }
}

Test(quant, f16_rounds_to_nearest_even) {
    // every pair of neighbours, subnormals included: the midpoint (exact in f32) goes to the
    // even one, a hair either side goes to the nearer one
    for (uint16_t h = 0; h < 0x7bff; h++) {
        float a = fp16_to_f32(h), b = fp16_to_f32((uint16_t)(h + 1)), mid = (a + b) / 2;
        cr_assert(mid > a && mid < b);
        uint16_t even = h % 2 ? (uint16_t)(h + 1) : h;
        cr_assert_eq(f32_to_fp16(mid), even, "midpoint %a of 0x%04x", mid, h);
        cr_assert_eq(f32_to_fp16(-mid), even | 0x8000u, "midpoint %a of 0x%04x", -mid, h);
        cr_assert_eq(f32_to_fp16(nextafterf(mid, 0)), h, "just below %a", mid);
        cr_assert_eq(f32_to_fp16(nextafterf(mid, 1e9f)), h + 1, "just above %a", mid);
    }
}

Test(quant, f16_subnormals_and_zero) {
    cr_assert_eq(f32_to_fp16(0x1p-24f), 0x0001);       // smallest subnormal
    cr_assert_eq(f32_to_fp16(0x1p-25f), 0x0000);       // half of it: tie to even (zero)
    cr_assert_eq(f32_to_fp16(nextafterf(0x1p-25f, 1)), 0x0001);
    cr_assert_eq(f32_to_fp16(0x1.8p-24f), 0x0002);     // 1.5 units: tie to even (2)
    cr_assert_eq(f32_to_fp16(0x1p-14f - 0x1p-24f), 0x03ff);  // largest subnormal
    cr_assert_eq(f32_to_fp16(0x1p-14f - 0x1p-25f), 0x0400);  // tie: to the smallest normal
    cr_assert_eq(f32_to_fp16(0x1p-14f), 0x0400);
    cr_assert_eq(f32_to_fp16(1e-30f), 0x0000);
    cr_assert_eq(f32_to_fp16(-1e-30f), 0x8000);        // the sign survives underflow
    cr_assert_eq(f32_to_fp16(-0.0f), 0x8000);
    cr_assert_eq(f32_to_fp16(FLT_TRUE_MIN), 0x0000);   // an f32 subnormal
    cr_assert(fp16_to_f32(0x0001) == 0x1p-24f && fp16_to_f32(0x83ff) == -(0x1p-14f - 0x1p-24f));
}

Test(quant, f16_overflow_and_nan) {
    cr_assert_eq(f32_to_fp16(65504.0f), 0x7bff);
    cr_assert_eq(f32_to_fp16(nextafterf(65520.0f, 0)), 0x7bff);  // below the midpoint
    cr_assert_eq(f32_to_fp16(65520.0f), 0x7c00);  // the midpoint to 2^16 rounds to infinity
    cr_assert_eq(f32_to_fp16(1e6f), 0x7c00);
    cr_assert_eq(f32_to_fp16(-1e6f), 0xfc00);
    cr_assert_eq(f32_to_fp16(FLT_MAX), 0x7c00);
    cr_assert_eq(f32_to_fp16(INFINITY), 0x7c00);
    cr_assert_eq(f32_to_fp16(-INFINITY), 0xfc00);
    cr_assert(isinf(fp16_to_f32(0x7c00)) && fp16_to_f32(0xfc00) < 0);
    // NaNs stay NaN whatever their payload, even one only in the low bits that f16 drops
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                             0x7f802000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = f32_to_fp16(f32_from_bits(nans[i]));
        cr_assert(f16_is_nan(h), "NaN 0x%08x -> 0x%04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31, "NaN 0x%08x lost its sign", nans[i]);
    }
}

Test(quant, bf16_all_patterns_round_trip) {
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = bf16_to_f32(h);
        cr_assert_eq(f32_bits(f), i << 16, "0x%04x is the top half of an f32", h);
        uint16_t back = f32_to_bf16(f);
        if (bf16_is_nan(h))
            cr_assert(bf16_is_nan(back) && (back >> 15) == (h >> 15), "NaN 0x%04x -> 0x%04x", h,
                      back);
        else
            cr_assert_eq(back, h, "0x%04x -> 0x%04x", h, back);
    }
}

Test(quant, bf16_rounds_to_nearest_even) {
    // every finite pair of neighbours of both signs, f32 subnormals included
    for (uint32_t h = 0; h < 0x7f7f; h++) {
        for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
            uint32_t lo = (sign | h) << 16, mid = lo | 0x8000u;
            uint16_t even = (uint16_t)(sign | (h % 2 ? h + 1 : h));
            cr_assert_eq(f32_to_bf16(f32_from_bits(mid)), even, "midpoint 0x%08x", mid);
            cr_assert_eq(f32_to_bf16(f32_from_bits(mid - 1)), sign | h, "below 0x%08x", mid);
            cr_assert_eq(f32_to_bf16(f32_from_bits(mid + 1)), sign | (h + 1), "above 0x%08x", mid);
        }
    }
    cr_assert_eq(f32_to_bf16(f32_from_bits(0x00008000u)), 0x0000);  // tie between subnormals: even
    cr_assert_eq(f32_to_bf16(f32_from_bits(0x00018000u)), 0x0002);
    cr_assert_eq(f32_to_bf16(FLT_TRUE_MIN), 0x0000);
    cr_assert_eq(f32_to_bf16(-FLT_TRUE_MIN), 0x8000);
}

Test(quant, bf16_overflow_and_nan) {
    cr_assert_eq(f32_to_bf16(f32_from_bits(0x7f7f7fffu)), 0x7f7f);  // largest finite
    cr_assert_eq(f32_to_bf16(f32_from_bits(0x7f7f8000u)), 0x7f80);  // tie to even: infinity
    cr_assert_eq(f32_to_bf16(FLT_MAX), 0x7f80);
    cr_assert_eq(f32_to_bf16(-FLT_MAX), 0xff80);
    cr_assert_eq(f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(f32_to_bf16(-INFINITY), 0xff80);
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                             0x7f80ffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = f32_to_bf16(f32_from_bits(nans[i]));
        cr_assert(bf16_is_nan(h), "NaN 0x%08x -> 0x%04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31, "NaN 0x%08x lost its sign", nans[i]);
    }
}

// Checks a q8_0 row of n values against its source: quants in range, zero padding, the
// error bound, and that nothing past the row's groups was written (0x55 sentinels).
static void check_q8_row(const float *x, size_t n, const int8_t *q, const float *d32,
                         const uint16_t *d16) {
    size_t G = q8_groups(n);
    for (size_t i = 0; i < G * Q8_GROUP; i++) {
        cr_assert(q[i] >= -127 && q[i] <= 127, "quant %zu is %d", i, q[i]);
        if (i >= n) cr_assert_eq(q[i], 0, "padding quant %zu is %d", i, q[i]);
    }
    cr_assert_eq((uint8_t)q[G * Q8_GROUP], 0x55, "wrote past the last group");
    for (size_t g = 0; g < G; g++) {
        float amax = 0;
        size_t end = (g + 1) * Q8_GROUP < n ? (g + 1) * Q8_GROUP : n;
        for (size_t i = g * Q8_GROUP; i < end; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f;
        if (d32) cr_assert(d32[g] == d, "group %zu: scale %a, expected %a", g, d32[g], d);
        float s = d32 ? d32[g] : fp16_to_f32(d16[g]);
        if (d16) cr_assert_eq(d16[g], f32_to_fp16(d), "group %zu: f16 scale", g);
        if (amax == 0) {
            cr_assert(s == 0 && !signbit(s), "group %zu of zeros: scale %a", g, s);
            if (d16) cr_assert_eq(d16[g], 0);
        }
        float bound = d / 2 + 127 * fabsf(d - s) + 0x1p-20f * amax;
        for (size_t i = g * Q8_GROUP; i < end; i++)
            cr_assert(fabsf(x[i] - s * q[i]) <= bound, "x[%zu] %a, d %a, q %d: error %a > %a", i,
                      x[i], s, q[i], fabsf(x[i] - s * q[i]), bound);
    }
}

Test(quant, q8_quantize_rows) {
    uint64_t seed = 7;
    const size_t sizes[] = {1, 5, 31, 32, 33, 64, 70, 100, 288};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k], G = q8_groups(n);
        float *x = malloc(n * sizeof(float));
        int8_t *q = malloc(G * Q8_GROUP + 1);
        float *d32 = malloc(G * sizeof(float));
        uint16_t *d16 = malloc(G * sizeof(uint16_t));
        for (int variant = 0; variant < 4; variant++) {
            for (size_t i = 0; i < n; i++) {
                float v = test_randf(&seed);
                x[i] = variant == 0 ? v                      // plain
                       : variant == 1 ? v * 3e4f            // large
                       : variant == 2 ? v * 1e-6f           // scales in f16's subnormal range
                                      : (i / Q8_GROUP) % 2 ? v : 0.0f;  // groups of zeros
            }
            if (variant == 0 && n > 3) x[2] = -1.0f;  // the group's -amax: quant -127
            memset(q, 0x55, G * Q8_GROUP + 1);
            q8_quantize_row(x, n, q, d32);
            check_q8_row(x, n, q, d32, NULL);
            memset(q, 0x55, G * Q8_GROUP + 1);
            q8_quantize_row_f16(x, n, q, d16);
            check_q8_row(x, n, q, NULL, d16);
        }
        free(x), free(q), free(d32), free(d16);
    }
    // the largest magnitude of a group maps to +-127
    float x[3] = {0.5f, -2.0f, 1.0f};
    int8_t q[Q8_GROUP + 1];
    uint16_t d;
    q8_quantize_row_f16(x, 3, q, &d);
    cr_assert(q[0] == 32 && q[1] == -127 && q[2] == 64, "%d %d %d", q[0], q[1], q[2]);
}

// ----------------------------------------------------------------------------
// convert.c in process

// Bytes of tensor t converted in one call.
static uint8_t *convert_whole(Converter *c, int t, size_t bytes) {
    uint8_t *out = malloc(bytes);
    cr_assert_eq(convert_fill(c, t, 0, out, bytes), 0);
    return out;
}

Test(quant, converter_any_byte_range) {
    // the writer asks in order, 1 MiB at a time; any other order and any split must give the
    // same bytes (odd offsets, scales before quants, tensors interleaved)
    SlHeader h = test_model_header(0);
    SynthCtx sc = {.seed = 3};
    cr_assert_eq(model_layout(&h, NULL, &sc.layout, "test"), MODEL_OK);
    for (int dtype = 0; dtype < EXPORT_DTYPES; dtype++) {
        SlHeader ht = h;
        cr_assert_eq(convert_set_types(&ht, dtype, NULL, "test"), 0);
        TensorData src = {.fill = synth_fill, .ctx = &sc};
        Converter a, b;
        cr_assert_eq(converter_init(&a, &ht, &src, "test"), 0);
        cr_assert_eq(converter_init(&b, &ht, &src, "test"), 0);
        uint64_t seed = 99 + (uint64_t)dtype;
        for (int t = 0; t < SL_T_COUNT; t++) {
            size_t bytes = a.layout.bytes[t];
            if (!bytes) continue;
            uint8_t *whole = convert_whole(&a, t, bytes), *pieces = malloc(bytes);
            memset(pieces, 0xAA, bytes);
            // pieces of random sizes, taken from the end backwards (so scales come first)
            for (size_t end = bytes; end > 0;) {
                size_t len = 1 + test_rand(&seed) % 97;
                if (len > end) len = end;
                if (test_rand(&seed) % 3 == 0) {  // another tensor in between
                    uint8_t tmp[8];
                    int u = t == SL_T_EMBED ? SL_T_W2 : SL_T_EMBED;
                    cr_assert_eq(convert_fill(&b, u, 0, tmp, sizeof tmp), 0);
                }
                cr_assert_eq(convert_fill(&b, t, end - len, pieces + end - len, len), 0);
                end -= len;
            }
            cr_assert(memcmp(whole, pieces, bytes) == 0, "%s %s: pieces differ",
                      dtype_name(dtype), tensor_name(t));
            free(whole), free(pieces);
        }
        converter_free(&a), converter_free(&b);
    }
}

Test(quant, converter_memory_source_equals_producer) {
    // the same values from arrays in memory and from a producer give the same bytes
    SlHeader h = test_model_header(0);
    SynthCtx sc = {.seed = 5};
    cr_assert_eq(model_layout(&h, NULL, &sc.layout, "test"), MODEL_OK);
    TensorData mem = {0}, prod = {.fill = synth_fill, .ctx = &sc};
    float *arrays[SL_T_COUNT] = {0};
    for (int t = 0; t < SL_T_COUNT; t++) {
        size_t bytes = sc.layout.bytes[t];
        if (!bytes) continue;
        arrays[t] = malloc(bytes);
        synth_fill(&sc, t, 0, arrays[t], bytes);
        mem.data[t] = arrays[t];
    }
    for (int dtype = 0; dtype < EXPORT_DTYPES; dtype++) {
        SlHeader ht = h;
        cr_assert_eq(convert_set_types(&ht, dtype, NULL, "test"), 0);
        cr_assert_eq(ht.weight_type, (uint32_t)dtype);
        Converter a, b;
        cr_assert_eq(converter_init(&a, &ht, &mem, "mem"), 0);
        cr_assert_eq(converter_init(&b, &ht, &prod, "prod"), 0);
        for (int t = 0; t < SL_T_COUNT; t++) {
            size_t bytes = a.layout.bytes[t];
            if (!bytes) continue;
            uint8_t *x = convert_whole(&a, t, bytes), *y = convert_whole(&b, t, bytes);
            cr_assert(memcmp(x, y, bytes) == 0, "%s %s", dtype_name(dtype), tensor_name(t));
            free(x), free(y);
        }
        converter_free(&a), converter_free(&b);
    }
    for (int t = 0; t < SL_T_COUNT; t++) free(arrays[t]);
}

Test(quant, dtype_names) {
    cr_assert_eq(dtype_parse("f32"), SL_F32);
    cr_assert_eq(dtype_parse("f16"), SL_F16);
    cr_assert_eq(dtype_parse("bf16"), SL_BF16);
    cr_assert_eq(dtype_parse("q8_0"), SL_Q8_0);
    cr_assert_eq(dtype_parse("fp16"), -1);
    cr_assert_eq(dtype_parse("Q8_0"), -1);
    cr_assert_eq(dtype_parse(""), -1);
    // a block type parses exactly when quantize.c writes it (the others run, but --dtype
    // cannot make them: refused on the command line, not midway through the file)
    for (int d = SL_Q4_0; d < SL_DTYPE_COUNT; d++) {
        size_t be = 0, bb;
        cr_assert(ggml_block_info(dtype_ggml(d), &be, &bb), "%s", dtype_name(d));
        int writes = quantize_blocks(dtype_ggml(d), NULL, 0, be, NULL) == 0;
        cr_assert_eq(dtype_parse(dtype_name(d)), writes ? d : -1, "%s", dtype_name(d));
    }
    cr_assert_eq(dtype_parse("q4_k"), SL_Q4_K);
}

// ----------------------------------------------------------------------------
// export --dtype end to end

static const char *const DTYPES[EXPORT_DTYPES] = {"f32", "f16", "bf16", "q8_0"};

static int is_norm(int t) {
    return t == SL_T_RMS_ATT || t == SL_T_RMS_FFN || t == SL_T_RMS_FINAL;
}

// Tensor t of an open model, as the loader describes it.
static Tensor model_tensor(const Model *m, int t) {
    const Weights *w = &m->w;
    const SlLayout *lay = &m->layout;
    switch (t) {
    case SL_T_EMBED: return w->token_embedding;
    case SL_T_WQ: return w->wq;
    case SL_T_WK: return w->wk;
    case SL_T_WV: return w->wv;
    case SL_T_WO: return w->wo;
    case SL_T_W1: return w->w1;
    case SL_T_W2: return w->w2;
    case SL_T_W3: return w->w3;
    case SL_T_CLS: return w->wcls;
    case SL_T_RMS_ATT: return (Tensor){SL_F32, lay->rows[t], lay->cols[t], w->rms_att, NULL, NULL};
    case SL_T_RMS_FFN: return (Tensor){SL_F32, lay->rows[t], lay->cols[t], w->rms_ffn, NULL, NULL};
    default: return (Tensor){SL_F32, lay->rows[t], lay->cols[t], w->rms_final, NULL, NULL};
    }
}

// Where the reference f32 rows come from: an open f32 model, or the synthetic weights.
typedef struct {
    const Model *f32;
    SynthCtx *synth;
} RefRows;

static void ref_row(const RefRows *ref, int t, size_t r, size_t cols, float *x) {
    if (ref->f32) {
        Tensor T = model_tensor(ref->f32, t);
        cr_assert_eq(T.type, SL_F32);
        tensor_row(&T, r, x);
    } else {
        cr_assert_eq(synth_fill(ref->synth, t, r * cols * 4, x, cols * 4), 0);
    }
}

// Checks every tensor of an open model exported as dtype against the reference rows: the
// header's types, the stored bits at the offsets docs/format.md gives, tensor_row's values,
// and the error bounds at the top of this file.
static void check_model(const Model *m, int dtype, const RefRows *ref) {
    const SlHeader *h = &m->header;
    const SlLayout *lay = &m->layout;
    cr_assert_eq(h->weight_type, (uint32_t)dtype, "weight_type %u", h->weight_type);
    size_t maxc = 0;
    for (int t = 0; t < SL_T_COUNT; t++) maxc = lay->cols[t] > maxc ? lay->cols[t] : maxc;
    maxc = q8_groups(maxc) * Q8_GROUP;
    float *x = malloc(maxc * 4), *y = malloc(maxc * 4);
    int8_t *q = malloc(maxc);
    uint16_t *s = malloc(maxc * 2);
    for (int t = 0; t < SL_T_COUNT; t++) {
        if (!lay->bytes[t]) continue;
        int want = is_norm(t) ? SL_F32 : dtype;
        cr_assert_eq(h->tensor_type[t], want, "%s is %s", tensor_name(t),
                     dtype_name(h->tensor_type[t]));
        Tensor T = model_tensor(m, t);
        size_t R = lay->rows[t], C = lay->cols[t], G = q8_groups(C);
        const uint8_t *base = m->map + lay->offset[t];  // raw storage, from the layout alone
        cr_assert_eq(T.type, want);
        cr_assert(T.rows == R && T.cols == C && T.data == base, "%s: loader view", tensor_name(t));
        for (size_t r = 0; r < R; r++) {
            ref_row(ref, t, r, C, x);
            tensor_row(&T, r, y);
            if (want == SL_F32) {
                cr_assert(memcmp(x, y, C * 4) == 0 && memcmp(base + r * C * 4, x, C * 4) == 0,
                          "%s row %zu differs from f32", tensor_name(t), r);
                continue;
            }
            if (want == SL_Q8_0) {
                const int8_t *sq = (const int8_t *)base + r * G * Q8_GROUP;
                const uint8_t *ss = base + R * G * Q8_GROUP + r * G * 2;
                cr_assert_eq((const void *)T.scales, (const void *)(base + R * G * Q8_GROUP));
                q8_quantize_row_f16(x, C, q, s);
                cr_assert(memcmp(sq, q, G * Q8_GROUP) == 0, "%s row %zu: quants",
                          tensor_name(t), r);
                cr_assert(memcmp(ss, s, G * 2) == 0, "%s row %zu: scales", tensor_name(t), r);
                for (size_t i = C; i < G * Q8_GROUP; i++) cr_assert_eq(sq[i], 0, "padding");
                for (size_t g = 0; g < G; g++) {
                    size_t end = (g + 1) * Q8_GROUP < C ? (g + 1) * Q8_GROUP : C;
                    float amax = 0;
                    for (size_t i = g * Q8_GROUP; i < end; i++) amax = fmaxf(amax, fabsf(x[i]));
                    float d = amax / 127.0f, d16 = fp16_to_f32(f32_to_fp16(d));
                    float bound = d / 2 + 127 * fabsf(d - d16) + 0x1p-20f * amax;
                    for (size_t i = g * Q8_GROUP; i < end; i++) {
                        cr_assert(sq[i] >= -127, "%s: quant -128", tensor_name(t));
                        cr_assert(fabsf(y[i] - x[i]) <= bound, "%s [%zu, %zu]: %a vs %a > %a",
                                  tensor_name(t), r, i, y[i], x[i], bound);
                    }
                }
                continue;
            }
            const uint16_t *raw = (const uint16_t *)(const void *)base + r * C;
            for (size_t i = 0; i < C; i++) {
                uint16_t bits = dtype == SL_F16 ? f32_to_fp16(x[i]) : f32_to_bf16(x[i]);
                cr_assert_eq(raw[i], bits, "%s [%zu, %zu]: stored 0x%04x, expected 0x%04x",
                             tensor_name(t), r, i, raw[i], bits);
                float ax = fabsf(x[i]);
                float bound = dtype == SL_F16 ? (ax >= 0x1p-14f ? ax * 0x1p-11f : 0x1p-25f)
                                              : ax * 0x1p-8f;
                cr_assert(fabsf(y[i] - x[i]) <= bound, "%s [%zu, %zu]: %a vs %a",
                          tensor_name(t), r, i, y[i], x[i]);
            }
        }
    }
    free(x), free(y), free(q), free(s);
}

static size_t file_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s is missing", path);
    return (size_t)st.st_size;
}

// Opens path, checks its size against model_layout and its tensors against the reference.
static void check_export(const char *path, int dtype, const RefRows *ref) {
    Model m;
    cr_assert_eq(model_open(&m, path, 1), MODEL_OK, "%s does not open", path);
    SlLayout lay;
    cr_assert_eq(model_layout(&m.header, m.layer_types, &lay, path), MODEL_OK);
    cr_assert_eq(file_size(path), lay.file_bytes, "%s: size differs from the layout", path);
    check_model(&m, dtype, ref);
    model_close(&m);
}

// Exports a llama2.c checkpoint with --dtype; returns export's status and its stderr.
static int export_ckpt(const char *ckpt, const char *tok, const char *dtype, const char *out,
                       char **err) {
    char *o;
    int rc = run_cmd(&o, err, "%s --dtype %s --tokenizer %s %s %s", bin_path("export"), dtype,
                     tok, ckpt, out);
    if (rc == 0) {
        char want[64];
        snprintf(want, sizeof want, "%s weights, f32 norms", dtype);
        cr_assert(strstr(o, want), "summary without the dtype: %s", o);
        snprintf(want, sizeof want, " bytes (%s)", dtype);
        cr_assert(strstr(o, want), "summary without the bytes: %s", o);
    }
    free(o);
    return rc;
}

Test(export, stories260k_every_dtype) {
    char *ref_path = export_stories260k();  // f32, skipped (or failed in CI) without the files
    const char *tok = model_file("tok512.bin"), *ck = model_file("stories260K.bin");
    char *tokp = strdup(tok), *ckp = strdup(ck);
    Model ref;
    cr_assert_eq(model_open(&ref, ref_path, 1), MODEL_OK);
    RefRows rr = {.f32 = &ref};
    for (int d = 0; d < EXPORT_DTYPES; d++) {
        char name[64];
        snprintf(name, sizeof name, "stories260K-%s.slm", DTYPES[d]);
        char *out = strdup(tmp_file(name)), *err;
        cr_assert_eq(export_ckpt(ckp, tokp, DTYPES[d], out, &err), 0, "%s: %s", DTYPES[d], err);
        free(err);
        check_export(out, d, &rr);
        if (d == SL_F32) {  // --dtype f32 is the default, byte for byte
            size_t a, b;
            char *x = read_all(out, &a), *y = read_all(ref_path, &b);
            cr_assert(a == b && memcmp(x, y, a) == 0, "--dtype f32 differs from the default");
            free(x), free(y);
        }
        remove(out);
        free(out);
    }
    model_close(&ref);
    remove(ref_path);
    free(ref_path), free(tokp), free(ckp);
}

// Writes a llama2.c legacy checkpoint of the small test shape (llama2c.h): random weights,
// with a row of zeros, values down in f16's subnormal range and up to 60000, and value v
// at element i of tensor poke (none if poke < 0).
static void write_ckpt_shape(const char *path, SlHeader h, int shared, int poke, size_t i, float v);
static void write_ckpt(const char *path, int shared, int poke, size_t i, float v) {
    write_ckpt_shape(path, test_model_header(shared), shared, poke, i, v);
}

// The same for header h's shape.
static void write_ckpt_shape(const char *path, SlHeader h, int shared, int poke, size_t i, float v) {
    SlLayout lay;
    cr_assert_eq(model_layout(&h, NULL, &lay, path), MODEL_OK);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    int32_t cfg[7] = {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
                      shared ? h.vocab_size : -h.vocab_size, h.seq_len};
    fwrite(cfg, 4, 7, f);
    uint64_t seed = 4242;
    for (int t = 0; t < SL_T_COUNT; t++) {
        size_t n = lay.rows[t] * lay.cols[t];
        if (t == SL_T_CLS) {  // freq_cis_real and _imag come before the classifier
            size_t nf = (size_t)h.seq_len * (size_t)h.head_dim;
            float *fc = calloc(nf, 4);
            fwrite(fc, 4, nf, f);
            free(fc);
        }
        if (!lay.bytes[t]) continue;
        float *w = malloc(n * 4);
        for (size_t k = 0; k < n; k++) {
            float u = test_randf(&seed);
            w[k] = is_norm(t) ? 1.0f + 0.1f * u : 0.5f * u;
        }
        if (t == SL_T_WQ) memset(w, 0, lay.cols[t] * 4);             // row 0: zeros
        if (t == SL_T_WK) for (size_t k = 0; k < 40; k++) w[k] *= 1e-6f;  // tiny values
        if (t == SL_T_W2) w[3] = 60000.0f, w[50] = -1e-7f;          // large, and subnormal f16
        if (t == SL_T_W1) w[7] = 3e-8f;                               // below f16's smallest / 2
        if (t == poke) w[i] = v;
        fwrite(w, 4, n, f);
        free(w);
    }
    cr_assert_eq(fclose(f), 0);
}

Test(export, small_model_every_dtype) {
    // separate classifier; rows of 16 and 40 values: q8_0 pads every row's last group
    for (int shared = 0; shared <= 1; shared++) {
        char *ck = strdup(tmp_file("small.bin")), *tok = strdup(tmp_file("small-tok.bin"));
        char *ref_path = strdup(tmp_file("small-f32.slm"));
        write_ckpt(ck, shared, -1, 0, 0);
        write_test_tokenizer_bin(tok, 300);
        char *err;
        cr_assert_eq(export_ckpt(ck, tok, "f32", ref_path, &err), 0, "%s", err);
        free(err);
        Model ref;
        cr_assert_eq(model_open(&ref, ref_path, 1), MODEL_OK);
        cr_assert_eq(ref.layout.bytes[SL_T_CLS] != 0, !shared);
        RefRows rr = {.f32 = &ref};
        for (int d = 0; d < EXPORT_DTYPES; d++) {
            char *out = strdup(tmp_file("small-out.slm"));
            cr_assert_eq(export_ckpt(ck, tok, DTYPES[d], out, &err), 0, "%s: %s", DTYPES[d], err);
            free(err);
            check_export(out, d, &rr);
            remove(out);
            free(out);
        }
        model_close(&ref);
        remove(ref_path), remove(ck), remove(tok);
        free(ref_path), free(ck), free(tok);
    }
}

Test(export, random_stories15m_q8_0, .timeout = 120) {
    char *out = strdup(tmp_file("stories15M-q8_0.slm")), *o, *err;
    int rc = run_cmd(&o, &err, "%s --dtype q8_0 --random stories15M --seed 1 %s",
                     bin_path("export"), out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(o, "q8_0 weights, f32 norms"), "%s", o);
    free(o), free(err);
    SynthCtx sc = {.seed = 1};
    SlHeader h;
    cr_assert_eq(synth_header(&h, "stories15M"), 0);
    h.tokenizer_bytes = 8;
    cr_assert_eq(model_layout(&h, NULL, &sc.layout, "stories15M"), MODEL_OK);
    RefRows rr = {.synth = &sc};
    check_export(out, SL_Q8_0, &rr);
    size_t n = file_size(out);
    cr_assert(n > 16000000 && n < 18000000, "%zu bytes, expected about 17 MB", n);
    remove(out);
    free(out);
}

Test(export, bad_dtype_exits_2) {
    char *out = strdup(tmp_file("bad-dtype.slm"));
    const char *bad[] = {"f8", "fp16", "Q8_0", "int8", "q4_k_s", "Q4_K_M", "''"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err;
        int rc = run_cmd(NULL, &err, "%s --dtype %s --random stories15M %s", bin_path("export"),
                         bad[i], out);
        cr_assert_eq(rc, 2, "--dtype %s: status %d", bad[i], rc);
        cr_assert(strstr(err, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, "
                              "q5_k, q6_k, iq4_xs or q4_k_m"), "--dtype %s: %s", bad[i], err);
        cr_assert(strstr(err, "Usage:"), "%s", err);
        free(err);
    }
    char *err;
    cr_assert_eq(run_cmd(NULL, &err, "%s --random stories15M %s --dtype", bin_path("export"), out),
                 2);
    cr_assert(strstr(err, "--dtype needs a value"), "%s", err);
    free(err);
    cr_assert(!file_exists(out));
    free(out);
}

// Exports a checkpoint with value v at element i of tensor t as dtype: must fail with one
// line holding every string in want, and leave neither the output nor a temporary file.
static void expect_refused(int t, size_t i, float v, const char *dtype, const char *const *want,
                           size_t nwant) {
    char *ck = strdup(tmp_file("bad.bin")), *tok = strdup(tmp_file("bad-tok.bin"));
    char *out = strdup(tmp_file("bad.slm")), *err;
    write_ckpt(ck, 0, t, i, v);
    write_test_tokenizer_bin(tok, 300);
    int rc = export_ckpt(ck, tok, dtype, out, &err);
    cr_assert_eq(rc, 1, "%s with %g in %s: status %d, %s", dtype, v, tensor_name(t), rc, err);
    for (size_t k = 0; k < nwant; k++)
        cr_assert(strstr(err, want[k]), "%s: '%s' is not in: %s", dtype, want[k], err);
    char *nl = strchr(err, '\n');
    cr_assert(nl && nl[1] == '\0', "%s: expected one line, got: %s", dtype, err);
    cr_assert(!file_exists(out), "a failed export left %s", out);
    char *ls;
    cr_assert_eq(run_cmd(&ls, NULL, "ls -a %s", tmp_dir()), 0);
    cr_assert(!strstr(ls, ".tmp-"), "a temporary file remains: %s", ls);
    free(ls), free(err), free(ck), free(tok), free(out);
}

// Exports the same kind of checkpoint as dtype and expects success.
static void expect_accepted(int t, size_t i, float v, const char *dtype) {
    char *ck = strdup(tmp_file("ok.bin")), *tok = strdup(tmp_file("ok-tok.bin"));
    char *out = strdup(tmp_file("ok.slm")), *err;
    write_ckpt(ck, 0, t, i, v);
    write_test_tokenizer_bin(tok, 300);
    cr_assert_eq(export_ckpt(ck, tok, dtype, out, &err), 0, "%s with %g: %s", dtype, v, err);
    cr_assert(file_exists(out));
    remove(out);
    free(err), free(ck), free(tok), free(out);
}

Test(export, f16_refuses_values_beyond_its_range) {
    // w2 is (2 x 16, 40): element 85 is row 2, column 5
    const char *const want[] = {"tensor w2", "element 85 (row 2, column 5)", "1e+06", "f16",
                                "bf16 or f32"};
    expect_refused(SL_T_W2, 85, 1e6f, "f16", want, 5);
    const char *const want_neg[] = {"tensor token_embedding", "-65505", "f16"};
    expect_refused(SL_T_EMBED, 0, -65505.0f, "f16", want_neg, 3);
    expect_accepted(SL_T_W2, 85, 65504.0f, "f16");  // the largest f16 is fine
    expect_accepted(SL_T_W2, 85, 1e6f, "bf16");
    expect_accepted(SL_T_W2, 85, 1e6f, "q8_0");
    expect_accepted(SL_T_W2, 85, 1e6f, "f32");
}

Test(export, nan_and_inf_refused_for_every_non_f32_type) {
    for (int d = SL_F16; d < EXPORT_DTYPES; d++) {
        const char *const want_nan[] = {"tensor wv", "element 17 (row 1, column 1)", "nan",
                                        "not a finite number", DTYPES[d]};
        expect_refused(SL_T_WV, 17, NAN, DTYPES[d], want_nan, 5);
        const char *const want_inf[] = {"tensor classifier", "element 4799", "inf",
                                        "not a finite number"};
        expect_refused(SL_T_CLS, 4799, -INFINITY, DTYPES[d], want_inf, 4);
    }
    expect_accepted(SL_T_WV, 17, NAN, "f32");  // f32 keeps what it is given
}

Test(export, overflow_of_bf16_and_q8_0_scales_refused) {
    const char *const want_bf16[] = {"tensor w3", "rounds to infinity in bf16"};
    expect_refused(SL_T_W3, 3, FLT_MAX, "bf16", want_bf16, 2);
    // a q8_0 scale of 1e7 / 127 > 65504 does not fit f16
    const char *const want_q8[] = {"tensor w1", "element 33 (row 2, column 1)", "1e+07",
                                   "q8_0"};
    expect_refused(SL_T_W1, 33, 1e7f, "q8_0", want_q8, 4);
    expect_accepted(SL_T_W1, 33, 8e6f, "q8_0");  // 8e6 / 127 = 62992 fits
}

// export --dtype q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl | q2_k | q3_k | q4_k | q5_k | q6_k | iq4_xs
// | q4_k_m from f32 (a llama2.c checkpoint with rows of 256 and, in w2, 320 weights): the types
// (q8_0 where rows are not whole blocks, per layer for q4_k_m), every stored block is
// quantize.h's from the f32 value (whose bytes equal llama.cpp's: test_quantize.c), each row
// within its type's error, and the model runs.
Test(export, block_dtypes_from_f32) {
    SlHeader h = test_model_header(0);
    h.dim = 256, h.hidden_dim = 320, h.n_layers = 3, h.n_heads = 4, h.n_kv_heads = 2;
    h.head_dim = 64;
    char *ck = strdup(tmp_file("blocks.bin")), *tok = strdup(tmp_file("blocks-tok.bin"));
    char *f32 = strdup(tmp_file("blocks-f32.slm")), *out = strdup(tmp_file("blocks-out.slm"));
    write_ckpt_shape(ck, h, 0, -1, 0, 0);
    write_test_tokenizer_bin(tok, h.vocab_size);
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s --tokenizer %s %s %s", bin_path("export"), tok, ck, f32), 0);
    free(o), free(e);
    Model ref;
    cr_assert_eq(model_open(&ref, f32, 1), MODEL_OK);
    const char *names[] = {"q4_0", "q4_1",  "q5_0", "q5_1", "iq4_nl", "q2_k",  "q3_k",
                           "q4_k", "q5_k", "q6_k", "iq4_xs", "q4_k_m"};
    const int n_names = (int)(sizeof names / sizeof names[0]);
    // RMS error / RMS of each layer of uniform values, at most, by type (measured: q8_0 0.0038,
    // q4_0 0.065, q4_k 0.055, q5_k 0.028, q6_k 0.013, q4_1 0.061, q5_0 0.031, q5_1 0.030, q2_k
    // 0.234, q3_k 0.126, iq4_nl 0.064, iq4_xs 0.065; a grid step s leaves about s / sqrt(12),
    // and each bit halves s): 20% above, so that a wrong scale or a lost bit fails
    double bound[SL_DTYPE_COUNT] = {0}, worst[SL_DTYPE_COUNT] = {0};
    bound[SL_Q8_0] = 0.0046, bound[SL_Q4_0] = 0.078, bound[SL_Q4_K] = 0.066;
    bound[SL_Q5_K] = 0.034, bound[SL_Q6_K] = 0.016, bound[SL_Q4_1] = 0.073;
    bound[SL_Q5_0] = 0.038, bound[SL_Q5_1] = 0.036, bound[SL_Q2_K] = 0.281;
    bound[SL_Q3_K] = 0.151, bound[SL_IQ4_NL] = 0.077, bound[SL_IQ4_XS] = 0.078;
    for (int d = 0; d < n_names; d++) {
        cr_assert_eq(run_cmd(&o, &e, "%s --dtype %s --tokenizer %s %s %s", bin_path("export"),
                             names[d], tok, ck, out), 0, "%s: %s", names[d], e);
        int preset = d == n_names - 1;
        int base = preset ? SL_Q4_K : dtype_parse(names[d]);
        size_t be, bb;
        cr_assert(ggml_block_info(dtype_ggml(base), &be, &bb), "%s", names[d]);
        int q4_0 = be == 32;  // blocks of 32 (q4_0, q4_1, q5_0, q5_1, iq4_nl), not of 256
        // w2's rows of 320 are whole blocks of 32, not of 256
        cr_assert_eq(strstr(e, "note: w2 stored as q8_0: their rows are not whole blocks") != NULL,
                     !q4_0, "%s: %s", names[d], e);
        free(o), free(e);
        Model m;
        cr_assert_eq(model_open(&m, out, 1), MODEL_OK);
        for (int t = 0; t < SL_T_COUNT; t++) {
            if (!m.layout.bytes[t] || is_norm(t)) continue;
            int want = t == SL_T_W2 && !q4_0 ? SL_Q8_0
                       : preset && t == SL_T_CLS ? SL_Q6_K
                       : preset && t == SL_T_WV ? SL_TYPE_PER_LAYER : base;
            cr_assert_eq(m.header.tensor_type[t], want, "%s %s", names[d], tensor_name(t));
            Tensor T = model_tensor(&m, t), R = model_tensor(&ref, t);
            size_t L = t == SL_T_EMBED || t == SL_T_CLS ? 1 : (size_t)h.n_layers;
            for (size_t l = 0; l < L; l++) {
                Tensor v = tensor_layer(&T, l, L), r = tensor_layer(&R, l, L);
                if (want == SL_TYPE_PER_LAYER)  // llama.cpp's use_more_bits for 3 layers
                    cr_assert_eq(v.type, l == 2 ? SL_Q6_K : SL_Q4_K, "wv layer %zu", l);
                double err = 0, norm = 0;
                float *x = malloc(v.cols * 4), *y = malloc(v.cols * 4);
                uint8_t *blk = malloc(v.cols);
                size_t rb = tensor_bytes(v.type, 1, v.cols);
                for (size_t i = 0; i < v.rows; i++) {
                    tensor_row(&r, i, x);
                    tensor_row(&v, i, y);
                    for (size_t c = 0; c < v.cols; c++)
                        err += ((double)y[c] - x[c]) * ((double)y[c] - x[c]), norm += (double)x[c] * x[c];
                    if (!dtype_ggml(v.type)) continue;
                    cr_assert_eq(quantize_blocks(dtype_ggml(v.type), x, 1, v.cols, blk), 0);
                    cr_assert(!memcmp(blk, (const uint8_t *)v.data + i * rb, rb),
                              "%s %s layer %zu row %zu: not quantize_blocks' bytes", names[d],
                              tensor_name(t), l, i);
                }
                double rel = sqrt(err / norm);
                int k = v.type;
                cr_assert(bound[k] > 0, "%s: no bound for %s", names[d], dtype_name(k));
                if (rel > worst[k]) worst[k] = rel;
                cr_assert(rel <= bound[k], "%s %s layer %zu (%s): relative RMS error %.4f > %.3f",
                          names[d], tensor_name(t), l, dtype_name(v.type), rel, bound[k]);
                free(x), free(y), free(blk);
            }
        }
        model_close(&m);
        cr_assert_eq(run_cmd(&o, &e, "%s %s -t 0 -n 8 -i ab", bin_path("run"), out), 0, "%s", e);
        free(o), free(e);
    }
    fprintf(stderr, "block dtypes: worst relative RMS error");
    for (int k = 0; k < SL_DTYPE_COUNT; k++) {
        if (bound[k] > 0) fprintf(stderr, " %s %.4f", dtype_name(k), worst[k]);
        cr_assert(bound[k] == 0 || worst[k] > 0, "%s: never written", dtype_name(k));
    }
    fprintf(stderr, "\n");
    model_close(&ref);
    free(ck), free(tok), free(f32), free(out);
}

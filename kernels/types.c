// types.c: the table of weight types (see types.h), and reading a Tensor's layers and rows
// through it.
//
// Contract: libc only. Sizes are computed in size_t with overflow checks. The table names
// functions of blocks.c (to_float) and kernels.c (dot), so whatever links it links those.
#include "kernels/types.h"

#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

#include <assert.h>
#include <string.h>

// f32, f16 and bf16 as floats (src may be unaligned: a GGUF's tensor data).
static void f32_to_float(const void *src, float *out, size_t n) { memcpy(out, src, 4 * n); }

static void f16_to_float(const void *src, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)src + 2 * i, 2);
        out[i] = fp16_to_f32(h);
    }
}

static void bf16_to_float(const void *src, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)src + 2 * i, 2);
        out[i] = bf16_to_f32(h);
    }
}

// One row per weight type: name, ggml id, ggml's blocks?, weights and bytes per block, the
// activations' form, to_float, the plain dot.
static const TypeInfo types[SL_DTYPE_COUNT] = {
    [SL_F32] = {"f32", GGML_TYPE_F32, 0, 1, 4, TYPE_IN_F32, f32_to_float, matvec_row_f32},
    [SL_F16] = {"f16", GGML_TYPE_F16, 0, 1, 2, TYPE_IN_F32, f16_to_float, matvec_row_f16},
    [SL_BF16] = {"bf16", GGML_TYPE_BF16, 0, 1, 2, TYPE_IN_F32, bf16_to_float, matvec_row_bf16},
    [SL_Q8_0] = {"q8_0", GGML_TYPE_Q8_0, 0, 32, 34, TYPE_IN_Q8_0, ggml_dequantize_q8_0,
                 matvec_row_q8_0},
    [SL_Q4_0] = {"q4_0", GGML_TYPE_Q4_0, 1, 32, 18, TYPE_IN_Q8_0, ggml_dequantize_q4_0,
                 matvec_row_blocks32},
    [SL_Q4_1] = {"q4_1", GGML_TYPE_Q4_1, 1, 32, 20, TYPE_IN_Q8_0, ggml_dequantize_q4_1,
                 matvec_row_blocks32},
    [SL_Q5_0] = {"q5_0", GGML_TYPE_Q5_0, 1, 32, 22, TYPE_IN_Q8_0, ggml_dequantize_q5_0,
                 matvec_row_blocks32},
    [SL_Q5_1] = {"q5_1", GGML_TYPE_Q5_1, 1, 32, 24, TYPE_IN_Q8_0, ggml_dequantize_q5_1,
                 matvec_row_blocks32},
    [SL_IQ4_NL] = {"iq4_nl", GGML_TYPE_IQ4_NL, 1, 32, 18, TYPE_IN_Q8_0, ggml_dequantize_iq4_nl,
                   matvec_row_blocks32},
    [SL_Q2_K] = {"q2_k", GGML_TYPE_Q2_K, 1, 256, 84, TYPE_IN_Q8_K, ggml_dequantize_q2_k,
                 matvec_row_kquant},
    [SL_Q3_K] = {"q3_k", GGML_TYPE_Q3_K, 1, 256, 110, TYPE_IN_Q8_K, ggml_dequantize_q3_k,
                 matvec_row_kquant},
    [SL_Q4_K] = {"q4_k", GGML_TYPE_Q4_K, 1, 256, 144, TYPE_IN_Q8_K, ggml_dequantize_q4_k,
                 matvec_row_kquant},
    [SL_Q5_K] = {"q5_k", GGML_TYPE_Q5_K, 1, 256, 176, TYPE_IN_Q8_K, ggml_dequantize_q5_k,
                 matvec_row_kquant},
    [SL_Q6_K] = {"q6_k", GGML_TYPE_Q6_K, 1, 256, 210, TYPE_IN_Q8_K, ggml_dequantize_q6_k,
                 matvec_row_kquant},
    [SL_IQ4_XS] = {"iq4_xs", GGML_TYPE_IQ4_XS, 1, 256, 136, TYPE_IN_Q8_K, ggml_dequantize_iq4_xs,
                   matvec_row_kquant},
};

const TypeInfo *type_info(int dtype) {
    return dtype >= 0 && dtype < SL_DTYPE_COUNT ? &types[dtype] : NULL;
}

int type_of_ggml(uint32_t ggml) {
    for (int d = 0; d < SL_DTYPE_COUNT; d++)
        if (types[d].ggml == ggml) return d;
    return -1;
}

size_t type_row_bytes(int dtype, size_t cols) {
    const TypeInfo *t = type_info(dtype);
    if (!t || (t->ggml_blocks && cols % t->block_elems)) return 0;
    size_t blocks = cols / t->block_elems + (cols % t->block_elems != 0), bytes;
    return __builtin_mul_overflow(blocks, t->block_bytes, &bytes) ? 0 : bytes;
}

uint32_t dtype_ggml(int dtype) {
    const TypeInfo *t = type_info(dtype);
    return t && t->ggml_blocks ? t->ggml : 0;
}

const char *dtype_name(int dtype) {
    const TypeInfo *t = type_info(dtype);
    return t ? t->name : "unknown";
}

size_t tensor_bytes(int dtype, size_t rows, size_t cols) {
    size_t row = type_row_bytes(dtype, cols), bytes;
    return row && !__builtin_mul_overflow(rows, row, &bytes) ? bytes : 0;
}

// The bytes of layer l of an n_layers-stacked tensor, each layer `rows` rows, start here.
static size_t layer_start(const Tensor *t, size_t l, size_t rows) {
    if (!t->layer_type) {  // one type: l layers before it (q8_0: their quants; the scales follow)
        size_t row = t->type == SL_Q8_0 ? q8_groups(t->cols) * Q8_GROUP
                                        : type_row_bytes(t->type, t->cols);
        return l * rows * row;
    }
    size_t at = 0;  // per-layer types: each earlier layer whole
    for (size_t k = 0; k < l; k++) at += tensor_bytes(t->layer_type[k], rows, t->cols);
    return at;
}

Tensor tensor_layer(const Tensor *t, size_t l, size_t n_layers) {
    Tensor v = *t;
    v.rows = t->rows / n_layers;
    v.data = (const uint8_t *)t->data + layer_start(t, l, v.rows);
    if (t->layer_type) v.type = t->layer_type[l], v.layer_type = NULL;
    if (v.type == SL_Q8_0) v.scales = t->scales + l * v.rows * q8_groups(t->cols);
    return v;
}

void tensor_row(const Tensor *t, size_t r, float *out) {
    size_t n = t->cols;
    assert(!t->layer_type);  // a caller's bug: take tensor_layer first
    if (t->type == SL_Q8_0) {  // the model file's own layout: the row's quants, its scales apart
        size_t G = q8_groups(n);
        const int8_t *q = (const int8_t *)t->data + r * G * Q8_GROUP;
        for (size_t i = 0; i < n; i++) out[i] = fp16_to_f32(t->scales[r * G + i / Q8_GROUP]) * q[i];
        return;
    }
    type_info(t->type)->to_float((const uint8_t *)t->data + r * type_row_bytes(t->type, n), out, n);
}

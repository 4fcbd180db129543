// types.c: the weight types' names and sizes, and reading a Tensor's layers and rows (see
// types.h).
//
// Contract: libc only. Sizes are computed in size_t with overflow checks.
#include "kernels/types.h"

#include "kernels/blocks.h"
#include "kernels/quant.h"

#include <assert.h>
#include <string.h>

static int mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

// What each type is: its name and, for a block type, its ggml type id (blocks.h says the rest).
static const struct {
    const char *name;
    uint32_t ggml;  // 0: not a block type
} dtypes[SL_DTYPE_COUNT] = {
    [SL_F32] = {"f32", 0},  [SL_F16] = {"f16", 0},  [SL_BF16] = {"bf16", 0},
    [SL_Q8_0] = {"q8_0", 0}, [SL_Q4_0] = {"q4_0", GGML_TYPE_Q4_0},
    [SL_Q4_K] = {"q4_k", GGML_TYPE_Q4_K}, [SL_Q5_K] = {"q5_k", GGML_TYPE_Q5_K},
    [SL_Q6_K] = {"q6_k", GGML_TYPE_Q6_K}, [SL_Q4_1] = {"q4_1", GGML_TYPE_Q4_1},
    [SL_Q5_0] = {"q5_0", GGML_TYPE_Q5_0}, [SL_Q5_1] = {"q5_1", GGML_TYPE_Q5_1},
    [SL_Q2_K] = {"q2_k", GGML_TYPE_Q2_K}, [SL_Q3_K] = {"q3_k", GGML_TYPE_Q3_K},
    [SL_IQ4_NL] = {"iq4_nl", GGML_TYPE_IQ4_NL}, [SL_IQ4_XS] = {"iq4_xs", GGML_TYPE_IQ4_XS},
};

uint32_t dtype_ggml(int dtype) {
    return dtype >= 0 && dtype < SL_DTYPE_COUNT ? dtypes[dtype].ggml : 0;
}

// Bytes of one row of cols weights of a block dtype; 0 if cols is not whole blocks.
static size_t block_row_bytes(int dtype, size_t cols) {
    size_t be, bb;
    if (!ggml_block_info(dtype_ggml(dtype), &be, &bb) || cols % be) return 0;
    return cols / be * bb;
}

const char *dtype_name(int dtype) {
    return dtype >= 0 && dtype < SL_DTYPE_COUNT ? dtypes[dtype].name : "unknown";
}

size_t tensor_bytes(int dtype, size_t rows, size_t cols) {
    size_t n, out;
    switch (dtype) {
    case SL_F32: return mul_ok(rows, cols, &n) && mul_ok(n, 4, &out) ? out : 0;
    case SL_F16:
    case SL_BF16: return mul_ok(rows, cols, &n) && mul_ok(n, 2, &out) ? out : 0;
    case SL_Q8_0:  // per group: 32 int8 quants and an f16 scale
        return mul_ok(rows, q8_groups(cols), &n) && mul_ok(n, Q8_GROUP + 2, &out) ? out : 0;
    default:  // the block types
        return dtype_ggml(dtype) && mul_ok(rows, block_row_bytes(dtype, cols), &out) ? out : 0;
    }
}

// The bytes of layer l of an n_layers-stacked tensor of (layer) type `type` start here.
static size_t layer_start(const Tensor *t, size_t l, size_t rows) {
    if (!t->layer_type) {  // one type: l layers before it
        switch (t->type) {
        case SL_F32: return l * rows * t->cols * 4;
        case SL_F16: case SL_BF16: return l * rows * t->cols * 2;
        case SL_Q8_0: return l * rows * q8_groups(t->cols) * Q8_GROUP;  // the quants
        default: return l * rows * block_row_bytes(t->type, t->cols);
        }
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
    switch (t->type) {
    case SL_F32: memcpy(out, (const float *)t->data + r * n, n * sizeof(float)); break;
    case SL_F16:
        for (size_t i = 0; i < n; i++) out[i] = fp16_to_f32(((const uint16_t *)t->data)[r * n + i]);
        break;
    case SL_BF16:
        for (size_t i = 0; i < n; i++) out[i] = bf16_to_f32(((const uint16_t *)t->data)[r * n + i]);
        break;
    case SL_Q8_0: {
        size_t G = q8_groups(n);
        const int8_t *q = (const int8_t *)t->data + r * G * Q8_GROUP;
        for (size_t i = 0; i < n; i++) out[i] = fp16_to_f32(t->scales[r * G + i / Q8_GROUP]) * q[i];
        break;
    }
    default: {  // the block types
        size_t be = 0, bb = 0;
        ggml_block_info(dtype_ggml(t->type), &be, &bb);
        ggml_dequantize(dtype_ggml(t->type), (const uint8_t *)t->data + r * (n / be) * bb,
                        n / be, out);
    }
    }
}


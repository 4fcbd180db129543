// kernels.c: the plain fp32 kernels (see kernels.h), kept as the algorithmic reference.
//
// The arithmetic follows llama2.c's run.c operation for operation, so that greedy
// decoding prints byte-identical text: same summation order, same float functions.
#include "kernels/kernels.h"

#include "kernels/blocks.h"
#include "kernels/quant.h"

#include <assert.h>
#include <math.h>

void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps) {
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (size_t i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

void matvec(float *y, const float *x, const float *w, size_t n, size_t d) {
    for (size_t i = 0; i < d; i++) {
        const float *row = w + i * n;
        float sum = 0.0f;
        for (size_t j = 0; j < n; j++) sum += row[j] * x[j];
        y[i] = sum;
    }
}

void softmax(float *x, size_t n) {
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++) x[i] /= sum;
}

float rope_freq(const RopeParams *r, size_t i, size_t head_dim) {
    float f = 1.0f / powf(r->theta, (float)i / (float)head_dim);
    if (r->scaling == SL_ROPE_LINEAR) return f / r->factor;
    if (r->scaling == SL_ROPE_FREQS) return f / r->divisors[i / 2];
    if (r->scaling != SL_ROPE_LLAMA3) return f;
    float wavelen = 2.0f * 3.14159265358979323846f / f, ctx = (float)r->orig_ctx;
    if (wavelen > ctx / r->low_freq) return f / r->factor;
    if (wavelen < ctx / r->high_freq) return f;
    float s = (ctx / wavelen - r->low_freq) / (r->high_freq - r->low_freq);
    return (1.0f - s) * f / r->factor + s * f;
}

void rope(float *v, size_t n_heads, size_t head_dim, size_t pos, const RopeParams *r) {
    for (size_t h = 0; h < n_heads; h++) {
        float *vh = v + h * head_dim;
        for (size_t i = 0; i < head_dim; i += 2) {
            float freq = rope_freq(r, i, head_dim);
            float angle = (float)pos * freq;
            float c = cosf(angle), s = sinf(angle);
            float v0 = vh[i], v1 = vh[i + 1];
            vh[i] = v0 * c - v1 * s;
            vh[i + 1] = v0 * s + v1 * c;
        }
    }
}

void attention_head(float *out, float *att, const float *q, const float *k, const float *v,
                    size_t pos, size_t head_dim) {
    for (size_t t = 0; t <= pos; t++) {
        const float *kt = k + t * head_dim;
        float score = 0.0f;
        for (size_t i = 0; i < head_dim; i++) score += q[i] * kt[i];
        att[t] = score / sqrtf((float)head_dim);
    }
    softmax(att, pos + 1);
    for (size_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (size_t t = 0; t <= pos; t++) {
        const float *vt = v + t * head_dim;
        for (size_t i = 0; i < head_dim; i++) out[i] += att[t] * vt[i];
    }
}

void swiglu(float *h, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        h[i] = x * (1.0f / (1.0f + expf(-x))) * u[i];
    }
}

void geglu(float *h, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        float y = 0.7978845608f * (x + 0.044715f * x * x * x);  // sqrt(2 / pi) (x + 0.044715 x^3)
        float t = 1.0f - 2.0f / (expf(2.0f * y) + 1.0f);        // tanh(y), through expf
        h[i] = 0.5f * x * (1.0f + t) * u[i];
    }
}

// The 16 6-bit scales of a Q3_K block (scales[12] at s), before their - 32.
static int q3k_scale(const uint8_t *s, int i) {
    int lo = i < 8 ? s[i] & 0x0F : s[i - 8] >> 4, hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return lo | hi << 4;
}

float kquant_block(int type, const uint8_t *bp, const int8_t *xq, float dx,
                   const int16_t *bsums) {
    int32_t isum = 0, corr = 0;
    if (type == SL_Q4_K || type == SL_Q5_K) {  // Q5_K: 32 bytes of high bits before the nibbles
        const int five = type == SL_Q5_K;
        const uint8_t *qh = bp + 16, *qs = bp + 16 + 32 * five;
        for (int j = 0; j < 8; j++) {  // sub-block j: weights 32 j .. 32 j + 31
            int sc, mn;
            ggml_scale_min_k4(bp + 4, j, &sc, &mn);
            int32_t dot = 0;
            for (int i = 0; i < 32; i++) {
                int q = (qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0x0F;
                if (five) q |= ((qh[i] >> j) & 1) << 4;
                dot += q * xq[32 * j + i];
            }
            isum += sc * dot;
            corr += mn * (bsums[2 * j] + bsums[2 * j + 1]);
        }
        float d = ggml_f16(bp), dmin = ggml_f16(bp + 2);
        return (d * dx) * (float)isum - (dmin * dx) * (float)corr;
    }
    if (type == SL_Q2_K || type == SL_Q3_K) {  // 16 sub-blocks of 16; q as blocks.c's q2_k
        for (int k = 0; k < 16; k++) {
            int32_t dot = 0;
            for (int i = 16 * k; i < 16 * k + 16; i++) {
                int q = (bp[(type == SL_Q2_K ? 16 : 32) + 32 * (i / 128) + i % 32] >>
                         (2 * ((i % 128) / 32))) & 3;
                if (type == SL_Q3_K) q -= (((bp[i % 32] >> (i / 32)) & 1) ^ 1) << 2;
                dot += q * xq[i];
            }
            if (type == SL_Q2_K) {
                isum += (bp[k] & 0x0F) * dot;
                corr += (bp[k] >> 4) * bsums[k];
            } else {
                isum += (q3k_scale(bp + 96, k) - 32) * dot;
            }
        }
        if (type == SL_Q3_K) return (ggml_f16(bp + 108) * dx) * (float)isum;
        return (ggml_f16(bp + 80) * dx) * (float)isum - (ggml_f16(bp + 82) * dx) * (float)corr;
    }
    if (type == SL_IQ4_XS) {  // 8 sub-blocks of 32, levels kvalues[q], scales ls - 32
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = bp + 8 + 16 * j;
            int32_t dot = 0;
            for (int i = 0; i < 16; i++)
                dot += ggml_iq4_kvalues[qs[i] & 0x0F] * xq[32 * j + i] +
                       ggml_iq4_kvalues[qs[i] >> 4] * xq[32 * j + 16 + i];
            isum += (ggml_iq4xs_scale(bp, j) - 32) * dot;
        }
        return (ggml_f16(bp) * dx) * (float)isum;
    }
    for (int k = 0; k < 16; k++) {  // q6_k, 16 weights 16 k .. per scale; q + 32 in 0..63
        int h = k / 8, s = (k % 8) / 2;
        int32_t dot = 0;
        for (int l = 16 * (k % 2); l < 16 * (k % 2) + 16; l++) {
            int lo = (bp[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
            int hi = (bp[128 + 32 * h + l] >> (2 * s)) & 3;
            dot += (lo | hi << 4) * xq[128 * h + 32 * s + l];
        }
        int sc = (int8_t)bp[192 + k];
        isum += sc * dot;
        corr += sc * bsums[k];
    }
    return (ggml_f16(bp + 208) * dx) * (float)(isum - 32 * corr);
}

int kquant_type(int type) {
    const TypeInfo *t = type_info(type);
    return t && t->input == TYPE_IN_Q8_K;
}

// The plain row kernels (the type table's dot). Each sums in order with one running sum.

// f32, f16, bf16: each weight widened to f32, then as matvec.
float matvec_row_f32(const Tensor *w, size_t r, const float *x) {
    const float *wf = (const float *)w->data + r * w->cols;
    float acc = 0.0f;
    for (size_t i = 0; i < w->cols; i++) acc += wf[i] * x[i];
    return acc;
}

float matvec_row_f16(const Tensor *w, size_t r, const float *x) {
    const uint16_t *wh = (const uint16_t *)w->data + r * w->cols;
    float acc = 0.0f;
    for (size_t i = 0; i < w->cols; i++) acc += fp16_to_f32(wh[i]) * x[i];
    return acc;
}

float matvec_row_bf16(const Tensor *w, size_t r, const float *x) {
    const uint16_t *wh = (const uint16_t *)w->data + r * w->cols;
    float acc = 0.0f;
    for (size_t i = 0; i < w->cols; i++) acc += bf16_to_f32(wh[i]) * x[i];
    return acc;
}

// q8_0: quantize each group of x (again for every row: plain, not fast).
float matvec_row_q8_0(const Tensor *w, size_t r, const float *x) {
    size_t n = w->cols, G = q8_groups(n);
    const int8_t *wq = (const int8_t *)w->data + r * G * Q8_GROUP;
    float acc = 0.0f;
    for (size_t g = 0; g < G; g++) {
        int8_t xq[Q8_GROUP];
        float xd;
        size_t len = n - g * Q8_GROUP < Q8_GROUP ? n - g * Q8_GROUP : Q8_GROUP;
        q8_quantize_row(x + g * Q8_GROUP, len, xq, &xd);
        int32_t dot = 0;
        for (size_t i = 0; i < Q8_GROUP; i++) dot += wq[g * Q8_GROUP + i] * xq[i];
        acc += (fp16_to_f32(w->scales[r * G + g]) * xd) * (float)dot;
    }
    return acc;
}

// The 32-weight blocks (q4_0, q4_1, q5_0, q5_1, iq4_nl): each block's integer levels against x
// quantized per group of 32 as for q8_0, and the block's min times the quants' sum.
float matvec_row_blocks32(const Tensor *w, size_t r, const float *x) {
    const uint32_t gt = dtype_ggml(w->type);
    const size_t n = w->cols, bb = type_info(w->type)->block_bytes;
    const uint8_t *p = (const uint8_t *)w->data + r * (n / 32) * bb;
    float acc = 0.0f;
    for (size_t g = 0; g < n / 32; g++) {
        int8_t q[32], xq[Q8_GROUP];
        float xd;
        int has_min = ggml_levels32(gt, p + g * bb, q);
        q8_quantize_row(x + g * 32, 32, xq, &xd);
        int32_t dot = 0, sx = 0;
        for (size_t i = 0; i < 32; i++) dot += q[i] * xq[i], sx += xq[i];
        acc += (ggml_f16(p + g * bb) * xd) * (float)dot;
        if (has_min) acc += (ggml_f16(p + g * bb + 2) * xd) * (float)sx;
    }
    return acc;
}

// The K-pattern types (kquant_type): x quantized block by block as q8k does, each block's
// kquant_block.
float matvec_row_kquant(const Tensor *w, size_t r, const float *x) {
    size_t nb = w->cols / Q8K_BLOCK, bb = type_info(w->type)->block_bytes;
    const uint8_t *row = (const uint8_t *)w->data + r * nb * bb;
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        int8_t xq[Q8K_BLOCK];
        int16_t bsums[Q8K_BLOCK / 16];
        float dx = q8k_quantize_block(x + b * Q8K_BLOCK, xq, bsums);
        acc += kquant_block(w->type, row + b * bb, xq, dx, bsums);
    }
    return acc;
}

void matvec_tensor(float *y, const float *x, const Tensor *w) {
    const TypeInfo *t = type_info(w->type);
    assert(t);  // a matrix of one known type (take tensor_layer first)
    for (size_t r = 0; r < w->rows; r++) y[r] = t->dot(w, r, x);
}

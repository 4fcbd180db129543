// blocks.c: ggml's block types and their dequantization (see blocks.h), written from the
// layouts, one function per type, each the formula of blocks.h in the gguf package's order
// of f32 operations.
#include "kernels/blocks.h"

#include "kernels/types.h"

const int8_t ggml_iq4_kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

int ggml_block_info(uint32_t type, size_t *elems, size_t *bytes) {
    const TypeInfo *t = type_info(type_of_ggml(type));
    if (!t || t->block_elems == 1) return 0;  // f32, f16, bf16: no blocks
    *elems = t->block_elems, *bytes = t->block_bytes;
    return 1;
}

// Q4_0, Q4_1, Q5_0, Q5_1: weight j < 16 is the low nibble of qs[j], weight j + 16 the high
// one; Q5's fifth bit of weight j is bit j of the 32-bit qh.
static void legacy(const uint8_t *b, float *y, int has_min, int five) {
    float d = ggml_f16(b), m = has_min ? ggml_f16(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh = 0;
    if (five) memcpy(&qh, p, 4), p += 4;
    for (int j = 0; j < 32; j++) {
        int q = (j < 16 ? p[j] & 0x0F : p[j - 16] >> 4) | (five ? (int)((qh >> j) & 1) << 4 : 0);
        if (has_min) y[j] = d * (float)q + m;
        else y[j] = d * (float)(q - (five ? 16 : 8));
    }
}

// Q2_K: scales[16], qs[64], d, dmin. Weight k: half h = k / 128, plane s = (k % 128) / 32,
// l = k % 32: q = (qs[32 h + l] >> 2 s) & 3; sub-block k / 16.
static void q2_k(const uint8_t *b, float *y) {
    float d = ggml_f16(b + 80), dmin = ggml_f16(b + 82);
    for (int k = 0; k < 256; k++) {
        int sc = b[k / 16], q = (b[16 + 32 * (k / 128) + k % 32] >> (2 * ((k % 128) / 32))) & 3;
        float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
        y[k] = dl * (float)q - ml;
    }
}

// Q3_K: hmask[32], qs[64], scales[12], d. Scale i (0..15): low 4 bits from scales[i % 8]
// (high nibble for i >= 8), high 2 bits from scales[8 + i % 4] >> 2 (i / 4); minus 32.
// Weight k: q as Q2_K's, minus 4 where bit k / 32 of hmask[k % 32] is clear.
static void q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
    float d = ggml_f16(b + 108);
    for (int k = 0; k < 256; k++) {
        int i = k / 16;
        int lo = i < 8 ? s[i] & 0x0F : s[i - 8] >> 4, hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        float dl = d * (float)((lo | hi << 4) - 32);
        int q = (qs[32 * (k / 128) + k % 32] >> (2 * ((k % 128) / 32))) & 3;
        int h = (hm[k % 32] >> (k / 32)) & 1;
        y[k] = dl * (float)(q - ((h ^ 1) << 2));
    }
}

// Q4_K (five 0) and Q5_K: d, dmin, scales[12], [qh[32],] qs[128]. Sub-block j = k / 32 of
// chunk c = j / 2: q = (qs[32 c + k % 32] >> 4 (j % 2)) & 15, Q5_K's bit (qh[k % 32] >> j) & 1.
// (Loops with constant strides, so that the compiler vectorizes them.)
static void q45_k(const uint8_t *b, float *y, int five) {
    float d = ggml_f16(b), dmin = ggml_f16(b + 2);
    const uint8_t *s = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        ggml_scale_min_k4(s, j, &sc, &mn);
        const float dl = d * (float)sc, ml = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        float *out = y + 32 * j;
        if (five)
            for (int l = 0; l < 32; l++)
                out[l] = dl * (float)(((q[l] >> shift) & 0x0F) | ((qh[l] >> j) & 1) << 4) - ml;
        else
            for (int l = 0; l < 32; l++) out[l] = dl * (float)((q[l] >> shift) & 0x0F) - ml;
    }
}

// Q6_K: ql[128], qh[64], scales[16] (int8), d. Weight k = 128 h + 32 s + l (h < 2, s < 4,
// l < 32): low 4 bits (ql[64 h + 32 (s % 2) + l] >> 4 (s / 2)) & 15, high 2 bits
// (qh[32 h + l] >> 2 s) & 3; minus 32; scale k / 16.
static void q6_k(const uint8_t *b, float *y) {
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = ggml_f16(b + 208);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++) {
            const uint8_t *ql = b + 64 * h + 32 * (s % 2), *qh = b + 128 + 32 * h;
            const int lo_shift = 4 * (s / 2), hi_shift = 2 * s;
            for (int half = 0; half < 2; half++) {  // 16 weights per scale
                int k0 = 128 * h + 32 * s + 16 * half;
                const float dl = d * (float)sc[k0 / 16];
                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    int q = ((ql[l] >> lo_shift) & 0x0F) | ((qh[l] >> hi_shift) & 3) << 4;
                    y[128 * h + 32 * s + l] = dl * (float)(q - 32);
                }
            }
        }
}

// IQ4_NL: d, qs[16]: weight j < 16 the low nibble of qs[j], j + 16 the high one, as Q4_0.
static void iq4_nl(const uint8_t *b, float *y) {
    float d = ggml_f16(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)ggml_iq4_kvalues[b[2 + j] & 0x0F];
        y[j + 16] = d * (float)ggml_iq4_kvalues[b[2 + j] >> 4];
    }
}

// IQ4_XS: d, scales_h, scales_l[4], qs[128]: sub-block j (32 weights) has its 16 bytes at
// qs[16 j], low nibbles first, as IQ4_NL's.
static void iq4_xs(const uint8_t *b, float *y) {
    float d = ggml_f16(b);
    for (int j = 0; j < 8; j++) {
        const float dl = d * (float)(ggml_iq4xs_scale(b, j) - 32);
        const uint8_t *qs = b + 8 + 16 * j;
        for (int i = 0; i < 16; i++) {
            y[32 * j + i] = dl * (float)ggml_iq4_kvalues[qs[i] & 0x0F];
            y[32 * j + i + 16] = dl * (float)ggml_iq4_kvalues[qs[i] >> 4];
        }
    }
}

// Q8_0 (ggml's, as GGUF files hold it): d, then 32 int8.
static void q8_0(const uint8_t *b, float *y) {
    float d = ggml_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void q4_0(const uint8_t *b, float *y) { legacy(b, y, 0, 0); }
static void q4_1(const uint8_t *b, float *y) { legacy(b, y, 1, 0); }
static void q5_0(const uint8_t *b, float *y) { legacy(b, y, 0, 1); }
static void q5_1(const uint8_t *b, float *y) { legacy(b, y, 1, 1); }
static void q4_k(const uint8_t *b, float *y) { q45_k(b, y, 0); }
static void q5_k(const uint8_t *b, float *y) { q45_k(b, y, 1); }

// The n / elems blocks of weight type dtype at src, one after the other, by `block`.
static void each_block(int dtype, const void *src, float *out, size_t n,
                       void (*block)(const uint8_t *, float *)) {
    const TypeInfo *t = type_info(dtype);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / t->block_elems; i++, b += t->block_bytes, out += t->block_elems)
        block(b, out);
}

void ggml_dequantize_q4_0(const void *src, float *out, size_t n) {
    each_block(SL_Q4_0, src, out, n, q4_0);
}
void ggml_dequantize_q4_1(const void *src, float *out, size_t n) {
    each_block(SL_Q4_1, src, out, n, q4_1);
}
void ggml_dequantize_q5_0(const void *src, float *out, size_t n) {
    each_block(SL_Q5_0, src, out, n, q5_0);
}
void ggml_dequantize_q5_1(const void *src, float *out, size_t n) {
    each_block(SL_Q5_1, src, out, n, q5_1);
}
void ggml_dequantize_q8_0(const void *src, float *out, size_t n) {
    each_block(SL_Q8_0, src, out, n, q8_0);
}
void ggml_dequantize_q2_k(const void *src, float *out, size_t n) {
    each_block(SL_Q2_K, src, out, n, q2_k);
}
void ggml_dequantize_q3_k(const void *src, float *out, size_t n) {
    each_block(SL_Q3_K, src, out, n, q3_k);
}
void ggml_dequantize_q4_k(const void *src, float *out, size_t n) {
    each_block(SL_Q4_K, src, out, n, q4_k);
}
void ggml_dequantize_q5_k(const void *src, float *out, size_t n) {
    each_block(SL_Q5_K, src, out, n, q5_k);
}
void ggml_dequantize_q6_k(const void *src, float *out, size_t n) {
    each_block(SL_Q6_K, src, out, n, q6_k);
}
void ggml_dequantize_iq4_nl(const void *src, float *out, size_t n) {
    each_block(SL_IQ4_NL, src, out, n, iq4_nl);
}
void ggml_dequantize_iq4_xs(const void *src, float *out, size_t n) {
    each_block(SL_IQ4_XS, src, out, n, iq4_xs);
}

void ggml_dequantize(uint32_t type, const uint8_t *src, size_t n_blocks, float *out) {
    const TypeInfo *t = type_info(type_of_ggml(type));
    if (t && t->block_elems > 1) t->to_float(src, out, n_blocks * t->block_elems);
}

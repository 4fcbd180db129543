// quantize.c: f32 to ggml's Q4_0, Q4_K, Q5_K and Q6_K blocks (see quantize.h), written from
// the algorithms of ggml's reference quantizers (ggml-quants.c: quantize_row_q4_0_ref,
// quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref, and their helpers
// nearest_int, make_qkx2_quants, make_qx_quants), which are what llama-quantize runs when it
// has no importance matrix. To give the same bytes, every f32 expression below is ggml's, in
// its order of operations; conversions that C leaves undefined (a float out of range to an
// integer) are spelled out as the x86-64 build of ggml does them.
#include "convert/quantize.h"

#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/quant.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF  // clang fuses a * b + c by default even under -std=c11; GCC does not
#endif

#define QUANTIZE_EPS 1e-15f  // ggml's GROUP_MAX_EPS: a group whose largest |x| is below is zero

// Round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low mantissa bits
// (ggml's nearest_int). Exact for |v| < 2^22; beyond, the same bits as ggml's, whatever they
// mean, which is what matters where a quotient by a tiny scale is clamped afterwards.
static int quantize_nearest(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// An f32 converted to int8_t as x86-64 does it: truncated to int32 (0x80000000 for NaN and
// values out of range, cvttss2si), then its low byte.
static int quantize_trunc_int8(float v) {
    uint32_t i = v >= -2147483648.0f && v < 2147483648.0f ? (uint32_t)(int32_t)v : 0x80000000u;
    int b = (int)(i & 0xFF);
    return b > 127 ? b - 256 : b;
}

static void quantize_put_f16(uint8_t *p, float v) {
    uint16_t h = f32_to_fp16(v);  // round to nearest even, as GGML_FP32_TO_FP16
    memcpy(p, &h, 2);
}

// Q4_0, 32 weights: d = m / -8 with m the value of largest |x| (the first if tied), so m
// itself maps to q = 0; q = min(15, trunc(x / d + 8.5)) (x * (1/d)), x ~ d * (q - 8).
static void quantize_q4_0(const float *x, uint8_t *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    quantize_put_f16(b, d);
    for (int j = 0; j < 16; j++) {
        int lo = quantize_trunc_int8(x[j] * id + 8.5f), hi = quantize_trunc_int8(x[j + 16] * id + 8.5f);
        uint8_t q0 = (uint8_t)(lo < 15 ? lo : 15), q1 = (uint8_t)(hi < 15 ? hi : 15);
        b[2 + j] = (uint8_t)(q0 | q1 << 4);
    }
}

// Asymmetric fit of 32 weights (ggml's make_qkx2_quants without MAD): x ~ scale * L + min with
// L in 0..nmax, min <= 0, minimizing sum w * (scale * L + min - x)^2. Starts from the range
// [min(x, 0), max(x)] split in nmax steps, then tries nstep + 1 other step counts
// (rmin + rdelta * is + nmax), each time solving the weighted least squares for scale and
// min given L, and keeps the best. Writes L, *neg_min = -min; returns scale.
static float quantize_fit_min(int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                              uint8_t *aux, float rmin, float rdelta, int nstep) {
    const int n = 32;
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = quantize_nearest(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * (float)L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = quantize_nearest(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            aux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)aux[i] + this_min - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < best_error) {
            memcpy(L, aux, (size_t)n);
            best_error = error, scale = this_scale, min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

// Symmetric fit of 16 weights (ggml's make_qx_quants, rmse_type 1): x ~ scale * l with l in
// -nmax..nmax-1, weighted by x^2. Starts from the value of largest |x| mapped to -nmax, then
// tries the 18 step counts nmax + 0.1 is (is = -9..9), keeping the one that maximizes
// (sum w x l)^2 / (sum w l^2), with scale = sum w x l / sum w l^2. Writes L = l + nmax (0 for
// a group below QUANTIZE_EPS); returns scale.
static float quantize_fit_sym(int nmax, const float *x, uint8_t *L) {
    const int n = 16;
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < QUANTIZE_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = quantize_nearest(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (uint8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = quantize_nearest(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = quantize_nearest(iscale * x[i]);
                L[i] = (uint8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2, best = scale * sumlx;
        }
    }
    return scale;
}

// Q4_K (nmax 15) and Q5_K (nmax 31), 256 weights: per sub-block j of 32,
// x ~ (d * sc_j) * q - (dmin * m_j) with q in 0..nmax; sc_j, m_j 6-bit; d, dmin f16.
// Each sub-block is fitted on its own (quantize_fit_min, weights sqrt(mean x^2) + |x|); the
// largest scale and min become 63 * d and 63 * dmin, the others are rounded to 6 bits of
// those, and q is recomputed against the rounded scales: q = round((x + dmin m) / (d sc)).
// Packing: d, dmin, 12 scale bytes (sc_j, m_j in the low 6 bits of bytes j, j + 4 for j < 4;
// for j >= 4 the low nibbles in byte j + 4 and the high 2 bits in the top of bytes j - 4, j),
// [Q5_K: 32 bytes, bit j of byte l the fifth bit of q of weight 32 j + l], then 128 bytes,
// weight 64 c + l (l < 32) in the low nibble of byte 32 c + l, 64 c + 32 + l in its high one.
static void quantize_q45_k(const float *x, uint8_t *b, int five) {
    const int nmax = five ? 31 : 15;
    uint8_t L[256], aux[32];
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xj[l]);
        scales[j] = five ? quantize_fit_min(31, xj, w, L + 32 * j, &mins[j], aux, -0.5f, 0.1f, 15)
                         : quantize_fit_min(15, xj, w, L + 32 * j, &mins[j], aux, -1.f, 0.1f, 20);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)quantize_nearest(inv_scale * scales[j]);  // wraps as ggml's uint8_t
        uint8_t lm = (uint8_t)quantize_nearest(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63, lm = lm < 63 ? lm : 63;
        if (j < 4) {
            s[j] = ls, s[j + 4] = lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            s[j - 4] |= (uint8_t)(ls >> 4 << 6);
            s[j] |= (uint8_t)(lm >> 4 << 6);
        }
    }
    quantize_put_f16(b, max_scale / 63.f);
    quantize_put_f16(b + 2, max_min / 63.f);
    const float d16 = ggml_f16(b), dmin16 = ggml_f16(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        ggml_scale_min_k4(s, j, &sc, &m);
        const float d = d16 * (float)sc;
        if (d == 0) continue;  // keeps the fit's L, as ggml does
        const float dm = dmin16 * (float)m;
        for (int i = 0; i < 32; i++) {
            int l = quantize_nearest((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
    uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
    if (five) memset(qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
            if (five) qh[l] |= (uint8_t)((l1 >> 4) << (2 * c) | (l2 >> 4) << (2 * c + 1));
            qs[32 * c + l] = (uint8_t)((l1 & 0xF) | (l2 & 0xF) << 4);
        }
}

// Q6_K, 256 weights: per sub-block j of 16, x ~ (d * sc_j) * (q - 32) with q in 0..63, sc_j
// int8, d f16. Each sub-block is fitted symmetrically (quantize_fit_sym, nmax 32); the scale
// of largest |scale| maps to -128: d = max_scale / -128, sc_j = min(127, round(-128 scale_j /
// max_scale)); then q = round(x / (d sc_j)) + 32, clamped to 0..63. A block whose scales are
// all below QUANTIZE_EPS is all zero bytes. Packing: ql[128] (weights 128 h + l, + 32, + 64,
// + 96 in the low/high nibbles of ql[64 h + l] and ql[64 h + 32 + l]), qh[64] (their top 2 bits
// in bits 0-1, 2-3, 4-5, 6-7 of qh[32 h + l]), scales[16], d.
static void quantize_q6_k(const float *x, uint8_t *b) {
    uint8_t L[256];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = quantize_fit_sym(32, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > max_abs_scale) max_abs_scale = fabsf(scales[j]), max_scale = scales[j];
    }
    memset(b, 0, 210);
    if (max_abs_scale < QUANTIZE_EPS) {
        quantize_put_f16(b + 208, 0.f);
        return;
    }
    const float iscale = -128.f / max_scale;
    quantize_put_f16(b + 208, 1 / iscale);
    const float d16 = ggml_f16(b + 208);
    for (int j = 0; j < 16; j++) {
        int sc = quantize_nearest(iscale * scales[j]);
        b[192 + j] = (uint8_t)(sc < 127 ? sc : 127);  // int8, two's complement
    }
    for (int j = 0; j < 16; j++) {
        int sc = b[192 + j] > 127 ? b[192 + j] - 256 : b[192 + j];
        const float d = d16 * (float)sc;
        if (d == 0) continue;  // keeps the fit's L, as ggml does
        for (int i = 0; i < 16; i++) {
            int l = quantize_nearest(x[16 * j + i] / d);
            L[16 * j + i] = (uint8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
        }
    }
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const uint8_t *Lh = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

int quantize_blocks(uint32_t type, const float *x, size_t n_rows, size_t n_cols, void *out) {
    size_t elems, bytes;
    if (type != GGML_TYPE_Q4_0 && type != GGML_TYPE_Q4_K && type != GGML_TYPE_Q5_K &&
        type != GGML_TYPE_Q6_K)
        return -1;
    if (!ggml_block_info(type, &elems, &bytes) || n_cols % elems != 0) return -1;
    // Rows hold whole blocks, so the rows are one run of blocks, as ggml quantizes them.
    size_t n_blocks = n_rows * (n_cols / elems);
    uint8_t *b = out;
    for (size_t i = 0; i < n_blocks; i++, x += elems, b += bytes) {
        switch (type) {
        case GGML_TYPE_Q4_0: quantize_q4_0(x, b); break;
        case GGML_TYPE_Q4_K: quantize_q45_k(x, b, 0); break;
        case GGML_TYPE_Q5_K: quantize_q45_k(x, b, 1); break;
        default: quantize_q6_k(x, b); break;
        }
    }
    return 0;
}

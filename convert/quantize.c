// quantize.c: f32 to ggml's Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and
// IQ4_XS blocks (see quantize.h), written from the algorithms of ggml's quantizers
// (ggml-quants.c: quantize_row_<type>_ref for the first nine, quantize_iq4_nl and
// quantize_iq4_xs, i.e. quantize_row_iq4_nl_impl with ntry 7, for the IQ4 types, and their
// helpers nearest_int, best_index_int8, make_qkx2_quants, make_q3_quants, make_qx_quants),
// which are what llama-quantize runs when it has no importance matrix. To give the same bytes,
// every f32 expression below is ggml's, in its order of operations, never fused into a
// multiply-add (-std=c11 turns GCC's contraction off; the pragma below, clang's); conversions
// that C leaves undefined or implementation-defined (a float out of range to an integer, an int
// to int8_t) are spelled out as the x86-64 build of ggml does them.
#include "convert/quantize.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/quant.h"
#include "kernels/types.h"

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

// Q4_0 (five 0, 18 bytes) and Q5_0 (five 1, 22 bytes), 32 weights: d = m / -8 (Q5_0: -16)
// with m the value of largest |x| (the first if tied), so m itself maps to q = 0;
// q = min(15, trunc(x / d + 8.5)) (Q5_0: min(31, trunc(x / d + 16.5))), x * (1/d), and
// x ~ d * (q - 8) (q - 16). Layout: f16 d [, u32: bit j the fifth bit of weight j], 16 bytes:
// weight j in the low nibble of byte j, j + 16 in its high one.
static void quantize_q_0(const float *x, uint8_t *b, int five) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    const float half = five ? 16.0f : 8.0f, d = max / -half, id = d != 0.0f ? 1.0f / d : 0.0f;
    const int top = five ? 31 : 15;
    quantize_put_f16(b, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = quantize_trunc_int8(x[j] * id + (half + 0.5f));
        int hi = quantize_trunc_int8(x[j + 16] * id + (half + 0.5f));
        uint8_t q0 = (uint8_t)(lo < top ? lo : top), q1 = (uint8_t)(hi < top ? hi : top);
        b[(five ? 6 : 2) + j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
        qh |= (uint32_t)(q0 >> 4 & 1) << j | (uint32_t)(q1 >> 4 & 1) << (j + 16);
    }
    if (five) memcpy(b + 2, &qh, 4);  // little-endian hosts only, as blocks.c
}

static void quantize_q4_0(const float *x, uint8_t *b) { quantize_q_0(x, b, 0); }
static void quantize_q5_0(const float *x, uint8_t *b) { quantize_q_0(x, b, 1); }

// Q4_1 (nbits 4, 32 weights in 20 bytes) and Q5_1 (nbits 5, in 24): d = (max - min) / (2^nbits
// - 1), q = trunc((x - min) * (1/d) + 0.5) (Q4_1: at most 15), x ~ d * q + min. Layout: d [, f16 min]
// [, u32: bit j the fifth bit of weight j], 16 bytes: weight j in the low nibble of byte j, j +
// 16 in its high one. (Q5_1's q is converted to uint8_t without a clamp: the same low byte.)
static void quantize_q451(const float *x, uint8_t *b, int five) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (float)(five ? 31 : 15), id = d != 0.0f ? 1.0f / d : 0.0f;
    quantize_put_f16(b, d);
    quantize_put_f16(b + 2, min);
    uint8_t *qs = b + (five ? 8 : 4);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = quantize_trunc_int8((x[j] - min) * id + 0.5f) & 0xFF;
        int hi = quantize_trunc_int8((x[j + 16] - min) * id + 0.5f) & 0xFF;
        if (!five) {  // MIN(15, (int8_t)v) as an int, then uint8_t
            lo = (lo > 127 ? lo - 256 : lo) < 15 ? lo : 15;
            hi = (hi > 127 ? hi - 256 : hi) < 15 ? hi : 15;
        }
        qs[j] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
        qh |= (uint32_t)(lo >> 4 & 1) << j | (uint32_t)(hi >> 4 & 1) << (j + 16);
    }
    if (five) memcpy(b + 4, &qh, 4);  // little-endian hosts only, as blocks.c
}

static void quantize_q4_1(const float *x, uint8_t *b) { quantize_q451(x, b, 0); }
static void quantize_q5_1(const float *x, uint8_t *b) { quantize_q451(x, b, 1); }


// Asymmetric fit of n weights (ggml's make_qkx2_quants): x ~ scale * L + min with L in 0..nmax,
// min <= 0, minimizing sum w * err with err = (scale * L + min - x)^2, or its absolute value
// where mad is set (Q2_K). Starts from the range [min(x, 0), max(x)] split in nmax steps, then
// tries nstep + 1 other step counts (rmin + rdelta * is + nmax), each time solving the weighted
// least squares for scale and min given L, and keeps the best. Writes L, *neg_min = -min;
// returns scale.
static float quantize_fit_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *neg_min, uint8_t *aux, float rmin, float rdelta, int nstep,
                              int mad) {
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
        diff = mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
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
            diff = mad ? fabsf(diff) : diff * diff;
            error += w[i] * diff;
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
        scales[j] = five ? quantize_fit_min(32, 31, xj, w, L + 32 * j, &mins[j], aux, -0.5f, 0.1f, 15, 0)
                         : quantize_fit_min(32, 15, xj, w, L + 32 * j, &mins[j], aux, -1.f, 0.1f, 20, 0);
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

static void quantize_q4_k(const float *x, uint8_t *b) { quantize_q45_k(x, b, 0); }
static void quantize_q5_k(const float *x, uint8_t *b) { quantize_q45_k(x, b, 1); }

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

// Symmetric fit of 16 weights to l in -4..3 for Q3_K (ggml's make_q3_quants with do_rmse):
// l = round(x * -4 / m) (m the value of largest |x|), then up to 5 sweeps that move one l at a
// time to round(x * sum w l^2 / sum w x l) (the sums without that weight) where that raises
// (sum w x l)^2 / sum w l^2, w = x^2. Writes L = l + 4 (0 for a group below QUANTIZE_EPS);
// returns scale = sum w x l / sum w l^2.
static float quantize_fit_q3(const float *x, uint8_t *L) {
    const int n = 16, nmax = 4;
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < QUANTIZE_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    int l8[16];
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = quantize_nearest(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        l8[i] = l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)l8[i];
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * (float)l8[i] * (float)l8[i];
            int l = quantize_nearest(x[i] * sl2 / slx);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            if (l == l8[i]) continue;
            slx += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                l8[i] = l, sumlx = slx, suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(l8[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// 2-bit quants of 256 weights, 4 to a byte: weight 128 h + 32 k + l in bits 2k of byte 32 h + l.
static void quantize_pack2(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *Lh = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(Lh[0] | Lh[32] << 2 | Lh[64] << 4 | Lh[96] << 6);
        }
}

// Q2_K, 256 weights in 84 bytes: per sub-block j of 16, x ~ (d * sc_j) * q - (dmin * m_j) with
// q in 0..3, sc_j and m_j 4 bits. Each sub-block is fitted on its own (quantize_fit_min, weights
// |x|, absolute error); d = max scale / 15, dmin = max min / 15, sc_j = round(15 scale_j / max
// scale), m_j = round(15 min_j / max min) (stored unclamped, as ggml does), then q = round((x +
// dmin m_j) / (d sc_j)). Layout: scales[16] (sc_j | m_j << 4), qs[64] (quantize_pack2), d, dmin.
static void quantize_q2_k(const float *x, uint8_t *b) {
    uint8_t L[256], aux[16];
    float w[16], scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
        scales[j] = quantize_fit_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], aux, -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t *sc = b;
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++) sc[j] = (uint8_t)quantize_nearest(iscale * scales[j]);
        quantize_put_f16(b + 80, max_scale / 15.f);
    } else {
        memset(sc, 0, 16);
        quantize_put_f16(b + 80, 0.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)((unsigned)quantize_nearest(iscale * mins[j]) << 4);
        quantize_put_f16(b + 82, max_min / 15.f);
    } else {
        quantize_put_f16(b + 82, 0.f);
    }
    const float d16 = ggml_f16(b + 80), dmin16 = ggml_f16(b + 82);
    for (int j = 0; j < 16; j++) {
        const float d = d16 * (float)(sc[j] & 0xF);
        if (d == 0) continue;  // keeps the fit's L, as ggml does
        const float dm = dmin16 * (float)(sc[j] >> 4);
        for (int i = 0; i < 16; i++) {
            int l = quantize_nearest((x[16 * j + i] + dm) / d);
            L[16 * j + i] = (uint8_t)(l < 0 ? 0 : l > 3 ? 3 : l);
        }
    }
    quantize_pack2(L, b + 16);
}

// Q3_K, 256 weights in 110 bytes: per sub-block j of 16, x ~ (d * (sc_j - 32)) * (q - 4) with q
// in 0..7 and sc_j 6 bits. Each sub-block is fitted on its own (quantize_fit_q3); the scale of
// largest |scale| maps to -32: d = max_scale / -32, sc_j = clamp(round(-32 scale_j / max_scale),
// -32, 31) + 32 (the rounded value taken as int8_t first, as ggml does); then q = clamp(round(x /
// (d (sc_j - 32))), -4, 3) + 4. Layout: hmask[32] (bit k of byte l: q >= 4 for weight 32 k + l),
// qs[64] (q & 3, quantize_pack2), scales[12] (low nibbles of sc_j, j < 8, in bytes j, of j >= 8
// in the high nibbles of bytes j - 8; the top 2 bits in bits 2 (j / 4) of byte 8 + j % 4), d.
static void quantize_q3_k(const float *x, uint8_t *b) {
    uint8_t L[256];
    float scales[16], max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = quantize_fit_q3(x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) amax = fabsf(scales[j]), max_scale = scales[j];
    }
    uint8_t *sc = b + 96;
    memset(sc, 0, 12);
    if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int l = quantize_nearest(iscale * scales[j]) & 0xFF;  // int8_t l = nearest_int(...)
            l = l > 127 ? l - 256 : l;
            l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
            if (j < 8) sc[j] = (uint8_t)(l & 0xF);
            else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
            sc[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        quantize_put_f16(b + 108, 1 / iscale);
    } else {
        quantize_put_f16(b + 108, 0.f);
    }
    const float d16 = ggml_f16(b + 108);
    for (int j = 0; j < 16; j++) {
        int s = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        s = (s | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const float d = d16 * (float)s;
        if (d == 0) continue;  // keeps the fit's L, as ggml does
        for (int i = 0; i < 16; i++) {
            int l = quantize_nearest(x[16 * j + i] / d);
            L[16 * j + i] = (uint8_t)((l < -4 ? -4 : l > 3 ? 3 : l) + 4);
        }
    }
    memset(b, 0, 32);
    for (int j = 0; j < 256; j++)
        if (L[j] > 3) b[j % 32] |= (uint8_t)(1 << (j / 32)), L[j] -= 4;
    quantize_pack2(L, b + 32);
}

// The index of the IQ4 level (ggml_iq4_kvalues, ascending) nearest v (ggml's best_index_int8: a
// binary search; the upper one on a tie; the last for NaN).
static int quantize_iq4_index(float v) {
    const int8_t *val = ggml_iq4_kvalues;
    if (v <= (float)val[0]) return 0;
    if (v >= (float)val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (v < (float)val[mav]) mu = mav;
        else ml = mav;
    }
    return v - (float)val[mu - 1] < (float)val[mu] - v ? mu - 1 : mu;
}

// IQ4 scale of 32 weights (ggml's quantize_row_iq4_nl_impl without an importance matrix,
// ntry 7): weights w = x^2; d = m / 127 (m the value of largest |x|), levels by
// quantize_iq4_index(x / d) and d = sum w q x / sum w q^2; then for the 15 scales m / (t - 127),
// t = -7..7, the levels and that least-squares d, keeping the d of largest (sum w q x)^2 / sum w
// q^2. Only d is kept: the levels are chosen again from the final scale. 0 below QUANTIZE_EPS.
static float quantize_iq4_scale(const float *x) {
    const int8_t *val = ggml_iq4_kvalues;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    if (amax < QUANTIZE_EPS) return 0;
    float d = -max / (float)val[0], id = 1 / d, sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        float q = (float)val[quantize_iq4_index(id * x[j])], w = x[j] * x[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -7; itry <= 7; itry++) {
        id = (float)(itry + val[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float q = (float)val[quantize_iq4_index(id * x[j])], w = x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
    }
    return d;
}

// 32 levels from x * id into 16 bytes: weight j in the low nibble of byte j, j + 16 in the high.
static void quantize_iq4_pack(const float *x, float id, uint8_t *qs) {
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(quantize_iq4_index(id * x[j]) | quantize_iq4_index(id * x[j + 16]) << 4);
}

// IQ4_NL, 32 weights in 18 bytes: x ~ d * ggml_iq4_kvalues[q], d f16 (quantize_iq4_scale), q =
// quantize_iq4_index(x / d) with the unrounded d. Layout: d, 16 bytes of nibbles.
static void quantize_iq4_nl(const float *x, uint8_t *b) {
    const float d = quantize_iq4_scale(x);
    quantize_put_f16(b, d);
    quantize_iq4_pack(x, d != 0 ? 1 / d : 0, b + 2);
}

// IQ4_XS, 256 weights in 136 bytes: per sub-block j of 32, x ~ (D * (s_j - 32)) * level[q], s_j
// 6 bits. Each sub-block's scale is quantize_iq4_scale's; the one of largest |scale| maps to
// -32: D = max_scale / -32 (stored f16, used unrounded), s_j - 32 = clamp(round(scale_j / D),
// -32, 31), q = quantize_iq4_index(x / (D (s_j - 32))). Layout: D, u16 scales_h (top 2 bits of
// s_j in bits 2 j), scales_l[4] (low nibbles, j even in the low half of byte j / 2), qs[128]
// (quantize_iq4_pack per sub-block).
static void quantize_iq4_xs(const float *x, uint8_t *b) {
    float scales[8], max_scale = 0, amax_scale = 0;
    for (int j = 0; j < 8; j++) {
        scales[j] = quantize_iq4_scale(x + 32 * j);
        if (fabsf(scales[j]) > amax_scale) amax_scale = fabsf(scales[j]), max_scale = scales[j];
    }
    const float d = -max_scale / 32, id = d != 0 ? 1 / d : 0.f;  // -0 for an all-zero block
    quantize_put_f16(b, d);
    uint16_t sh = 0;
    memset(b + 4, 0, 4);
    for (int j = 0; j < 8; j++) {
        int l = quantize_nearest(id * scales[j]);
        l = l < -32 ? -32 : l > 31 ? 31 : l;
        const float dl = d * (float)l, idl = dl != 0 ? 1 / dl : 0.f;
        quantize_iq4_pack(x + 32 * j, idl, b + 8 + 16 * j);
        l += 32;
        b[4 + j / 2] |= (uint8_t)((l & 0xF) << 4 * (j % 2));
        sh |= (uint16_t)((l >> 4) << 2 * j);
    }
    memcpy(b + 2, &sh, 2);
}

// Each block type's quantizer, by weight type (kernels/types.h): one block of x into b.
static void (*const quantizers[SL_DTYPE_COUNT])(const float *x, uint8_t *b) = {
    [SL_Q4_0] = quantize_q4_0,     [SL_Q4_1] = quantize_q4_1,     [SL_Q5_0] = quantize_q5_0,
    [SL_Q5_1] = quantize_q5_1,     [SL_Q2_K] = quantize_q2_k,     [SL_Q3_K] = quantize_q3_k,
    [SL_Q4_K] = quantize_q4_k,     [SL_Q5_K] = quantize_q5_k,     [SL_Q6_K] = quantize_q6_k,
    [SL_IQ4_NL] = quantize_iq4_nl, [SL_IQ4_XS] = quantize_iq4_xs,
};

int quantize_blocks(uint32_t type, const float *x, size_t n_rows, size_t n_cols, void *out) {
    const int d = type_of_ggml(type);
    const TypeInfo *t = type_info(d);
    if (!t || !quantizers[d] || n_cols % t->block_elems != 0) return -1;
    // Rows hold whole blocks, so the rows are one run of blocks, as ggml quantizes them.
    size_t elems = t->block_elems, bytes = t->block_bytes, n_blocks = n_rows * (n_cols / elems);
    uint8_t *b = out;
    for (size_t i = 0; i < n_blocks; i++, x += elems, b += bytes) quantizers[d](x, b);
    return 0;
}

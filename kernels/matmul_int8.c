// matmul_int8.c: the products of the 32-weight block types, q8_0, q4_0, q4_1, q5_0, q5_1 and
// iq4_nl (matmul_impl.h's int8 family), against the activations' q8_0 form.
//
// Contract: libc and simd.h; no allocation. Instruction-set sections in the order AVX-512,
// AVX2, NEON, plain C; kernels.c's matvec_tensor is the reference twin.
//
// Order per output y = W row . x, on every machine: per group g of 32 in order, the block's 32
// integer levels (blocks.h's ggml_levels32) meet the activations' quants of group g, and lane l
// (quants 4l .. 4l+3) takes
//   acc_l = fma(dot_l, d_w,g * d_x,g, acc_l)       dot_l the exact integer dot product
// and for q4_1, q5_1 (levels 0..31 and a min) one scalar per output besides:
//   accm = fma(m_w,g, s_x,g, accm)                  s_x,g = d_x,g * sum of its quants (qsum)
// y = vhsum(acc) (+ accm), as ggml adds its Q8_1 sums separately. The integer part is exact,
// so only the float steps have an order, the same for every tile shape and thread count: a
// matvec equals its row of a batch bitwise, and every ISA gives the same bits.
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/matmul_impl.h"

#if SL_AVX2
// Group g of R rows' 32 int8 weights (wv, their scales wsv) against tokens t0 .. t0+T of the
// activations' q8_0 form: acc[r][t] += float(sum w x) * (d_w d_x), the integer dot product by
// vpmaddubsw on |w| and x with w's sign, in pairs by vpmaddwd. Quants are within [-127, 127]
// except a stored -128, which still fits: 2 x 128 x 127. Shared by the AVX2 tiles of q8_0 and
// q4_0.
#ifndef I8_TT
#define I8_TT 2  // tokens of an AVX2 int8 tile (4 rows x 2 tokens: ~1.2x over x 1 in prefill)
#endif
INLINE void i8_group_tokens(__m256 acc[][I8_TT], const __m256i *wv, const __m256 *wsv,
                            const MatIn *in, size_t t0, size_t g, size_t R, size_t T) {

    for (size_t t = 0; t < T; t++) {
        size_t at = (t0 + t) * in->groups + g;
        __m256i xv = _mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP));
        __m256 xs = _mm256_loadu_ps(in->qscale + at * 8);
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            __m256i d = dot4_u8s8(_mm256_sign_epi8(wv[r], wv[r]), _mm256_sign_epi8(xv, wv[r]));
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(wsv[r], xs),
                                        acc[r][t]);
        }
    }
}
#endif

#if !SL_AVX2
// The plain build's lanes: acc[l] = fma(dot of quants 4l .. 4l+3, s, acc[l]) for l < 8 (then
// hsum adds them by hsum8's tree).
static inline void lanes_group(float acc[8], const int8_t *w, const int8_t *x, float s) {
    for (size_t l = 0; l < 8; l++) {
        int32_t dot = 0;
        for (size_t i = 4 * l; i < 4 * l + 4; i++) dot += w[i] * x[i];
        acc[l] = fma32((float)dot, s, acc[l]);
    }
}
#endif

// ----------------------------------------------------------------------------
// q8_0 tiles. Per group g of a row: the exact integer dot product of the weight quants
// with the activation quants, then  acc += (float)dot * (d_w,g * d_x,g)  in float lanes;
// y = hsum(acc) as above. The integer part is exact, so only the float steps have an order,
// and it is the same for every tile shape: a matvec equals its row of a batch bitwise.
#if SL_AVX2
// One group per step: 32 quants in a ymm (i8_group_tokens), R <= 4 rows x T <= I8_TT tokens.
#ifndef Q8L_PF_TILES  // how many tiles ahead a matvec prefetches its rows
#define Q8L_PF_TILES 8
#endif
INLINE void tile_q8_lanes(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                    size_t r0, size_t R, size_t T) {
    size_t G = q8_groups(w->cols);
    const int8_t *wq = (const int8_t *)w->data + r0 * G * Q8_GROUP;
    const uint16_t *ws = w->scales + r0 * G;
    __m256 acc[4][I8_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        __m256i wv[4];
        __m256 wsv[4];
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            wv[r] = _mm256_loadu_si256((const __m256i *)(wq + (r * G + g) * Q8_GROUP));
            if (T == 1 || t0 == 0) PREFETCH_L2(wq + (r * G + g) * Q8_GROUP, Q8L_PF_TILES * R * G * Q8_GROUP);
#if defined(__F16C__)
            wsv[r] = _mm256_set1_ps(_cvtsh_ss(ws[r * G + g]));
#else
            wsv[r] = _mm256_set1_ps(fp16_to_f32(ws[r * G + g]));
#endif
        }
        i8_group_tokens(acc, wv, wsv, in, t0, g, R, T);
    }
    TILE_STORE(acc, y, ldy, R, T);
}

#endif

#if SL_AVX512 && SL_VNNI
// AVX-512 VNNI: rows in pairs, group g of row r in lanes 0-7 and of row r + 1 in lanes 8-15
// (32 quants each), against the activations' group g broadcast to both halves. vpdpbusd
// multiplies unsigned by signed bytes, so the weights go in as w + 128 (w xor 0x80) and the
// activations' qcorr lanes (-128 x the sum of each 4 quants) cancel the offset: each lane
// holds the exact dot of its 4 quants, the integer an AVX2 lane holds. Scales: 16 groups' d_w
// of each row are converted at once; step g permutes group g's into the pair's halves. A
// matvec has multiplied them by d_x first, a batch tile multiplies per token: the same
// product d_w * d_x either way, so every lane runs tile_q8_lanes' operations.
#ifndef Q8_TR
#define Q8_TR 8  // 4 pairs x 2 tokens
#endif
#define Q8_TRV Q8_TR
#ifndef Q8_TT
#define Q8_TT 4  // tokens of a batch tile: 4 pairs x 4 tokens = 16 zmm accumulators
#endif
#ifndef Q8_PF_TILES  // how many tiles ahead a matvec prefetches its rows
#define Q8_PF_TILES 8
#endif

// ng (1..16) f16 scales, or floats, as 16 float lanes (zeros past ng, never read).
static inline __m512 scales16(const uint16_t *p, size_t ng) {
    uint16_t tmp[16] = {0};
    if (ng < 16) p = memcpy(tmp, p, ng * sizeof *p);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline __m512 floats16(const float *p, size_t ng) {
    float tmp[16] = {0};
    if (ng < 16) p = memcpy(tmp, p, ng * sizeof *p);
    return _mm512_loadu_ps(p);
}

// P row pairs (rows r0 .. r0 + 2P) x T tokens.
INLINE void tile_q8_pairs(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                          size_t r0, size_t P, size_t T) {
    size_t G = q8_groups(w->cols), row_bytes = G * Q8_GROUP;
    const int8_t *wq = (const int8_t *)w->data + r0 * row_bytes;
    const uint16_t *ws = w->scales + r0 * G;
    const __m512i flip = _mm512_set1_epi8((char)0x80), one = _mm512_set1_epi32(1);
    __m512 acc[Q8_TR / 2][Q8_TT];
#pragma GCC unroll 4
    for (size_t p = 0; p < P; p++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[p][t] = _mm512_setzero_ps();
    for (size_t g0 = 0; g0 < G; g0 += 16) {  // 16 groups share one load of the scales
        size_t ng = G - g0 < 16 ? G - g0 : 16;
        __m512 sc[Q8_TR];
        __m512 xd = T == 1 ? floats16(in->qd + t0 * in->groups + g0, ng) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (size_t r = 0; r < 2 * P; r++) {
            sc[r] = scales16(ws + r * G + g0, ng);
            if (T == 1) sc[r] = _mm512_mul_ps(sc[r], xd);
        }
        // lanes 0-7 take the scale of group g of the pair's first row, lanes 8-15 the second's
        __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
        for (size_t g = g0; g < g0 + ng; g++, idx = _mm512_add_epi32(idx, one)) {
            __m512i wv[Q8_TR / 2];
            __m512 wsv[Q8_TR / 2];
#pragma GCC unroll 4
            for (size_t p = 0; p < P; p++) {
                const int8_t *a = wq + (2 * p * G + g) * Q8_GROUP;
                __m256i lo = _mm256_loadu_si256((const __m256i *)a);
                __m256i hi = _mm256_loadu_si256((const __m256i *)(a + row_bytes));
                wv[p] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), flip);
                wsv[p] = _mm512_permutex2var_ps(sc[2 * p], idx, sc[2 * p + 1]);
                if (T == 1 || t0 == 0) {  // a matvec, or a batch's first tokens: stream the rows ahead
                    PREFETCH_L2(a, Q8_PF_TILES * 2 * P * row_bytes);
                    PREFETCH_L2(a + row_bytes, Q8_PF_TILES * 2 * P * row_bytes);
                }
            }
#pragma GCC unroll 4
            for (size_t t = 0; t < T; t++) {
                size_t at = (t0 + t) * in->groups + g;  // group index into the activation arrays
                __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP)));
                __m512i xc = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(in->qcorr + at * 8)));
                __m512 xs = T == 1 ? _mm512_setzero_ps() : _mm512_set1_ps(in->qd[at]);
#pragma GCC unroll 4
                for (size_t p = 0; p < P; p++) {
                    __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(xc, wv[p], xv));
                    __m512 s = T == 1 ? wsv[p] : _mm512_mul_ps(wsv[p], xs);
                    acc[p][t] = _mm512_fmadd_ps(d, s, acc[p][t]);
                }
            }
        }
    }
    PAIRS_STORE(acc, y, ldy, P, T);
}

// Even R in pairs; a single row (a tail) as the 8-lane tile.
INLINE void tile_q8(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                    size_t r0, size_t R, size_t T) {
    if (R % 2 == 0) tile_q8_pairs(y, ldy, in, t0, w, r0, R / 2, T);
    else if (T <= I8_TT) tile_q8_lanes(y, ldy, in, t0, w, r0, R, T);
    else  // an odd tail row of a wider batch tile: token by token
        for (size_t t = 0; t < T; t++) tile_q8_lanes(y + t * ldy, ldy, in, t0 + t, w, r0, R, 1);
}

#elif SL_AVX2
#define Q8_TR 4
#define Q8_TRV 4
#define Q8_TT I8_TT
INLINE void tile_q8(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                    size_t r0, size_t R, size_t T) {
    tile_q8_lanes(y, ldy, in, t0, w, r0, R, T);
}

#elif SL_NEON && SL_SDOT
// NEON with sdot (armv8.2-a+dotprod): i8_group_tokens' arithmetic, bit for bit. A group's 32
// weight quants are two int8x16_t; sdot of the first with the activation's first 16 quants
// gives lanes 0-3 (lane l: the exact dot of quants 4l .. 4l+3), of the second lanes 4-7, as
// vpmaddubsw + vpmaddwd do; then acc = fma((float)lane, d_w * d_x, acc), the scale one
// rounded product, the accumulation fused (vfmaq_n_f32, as vfmadd231ps).
#define Q8_TR 4
#define Q8_TRV 4
#define Q8_TT 2
#define SDOT_TR 4  // the most rows of an sdot tile (Q8_TRV, Q40_TR)

// An f16 scale widened to f32 (exact, the fcvt instruction).
static inline float f16_scale(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

// Group g of R rows (wv[r]: its 32 quants, ws[r]: its scale d_w) against tokens t0 .. t0+T of
// the activations' q8_0 form.
INLINE void sdot_group_tokens(vf acc[][Q8_TT], const int8x16_t wv[][2], const float *ws,
                              const MatIn *in, size_t t0, size_t g, size_t R, size_t T) {
    for (size_t t = 0; t < T; t++) {
        size_t at = (t0 + t) * in->groups + g;
        int8x16_t x0 = vld1q_s8(in->q + at * Q8_GROUP), x1 = vld1q_s8(in->q + at * Q8_GROUP + 16);
        const float dx = in->qd[at];
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            int32x4_t d0 = vdotq_s32(vdupq_n_s32(0), wv[r][0], x0);
            int32x4_t d1 = vdotq_s32(vdupq_n_s32(0), wv[r][1], x1);
            const float s = ws[r] * dx;
            acc[r][t].lo = vfmaq_n_f32(acc[r][t].lo, vcvtq_f32_s32(d0), s);
            acc[r][t].hi = vfmaq_n_f32(acc[r][t].hi, vcvtq_f32_s32(d1), s);
        }
    }
}

INLINE void tile_q8(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                    size_t r0, size_t R, size_t T) {
    size_t G = q8_groups(w->cols);
    const int8_t *wq = (const int8_t *)w->data + r0 * G * Q8_GROUP;
    const uint16_t *ws = w->scales + r0 * G;
    vf acc[Q8_TRV][Q8_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = vzero();
    for (size_t g = 0; g < G; g++) {
        int8x16_t wv[SDOT_TR][2];
        float wsv[SDOT_TR];
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            const int8_t *p = wq + (r * G + g) * Q8_GROUP;
            wv[r][0] = vld1q_s8(p), wv[r][1] = vld1q_s8(p + 16);
            wsv[r] = f16_scale(ws[r * G + g]);
        }
        sdot_group_tokens(acc, wv, wsv, in, t0, g, R, T);
    }
    TILE_STORE(acc, y, ldy, R, T);
}

#else
#define Q8_TR 4
#define Q8_TRV 4
#define Q8_TT 1
// Plain C, the lanes one by one: lane l of group g adds the exact dot of quants 4l .. 4l+3,
// fused (fma32), as the SIMD lanes do.
INLINE void tile_q8(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                    size_t r0, size_t R, size_t T) {
    size_t G = q8_groups(w->cols), GP = in->groups;
    for (size_t r = 0; r < R; r++) {
        for (size_t t = 0; t < T; t++) {
            const int8_t *wq = (const int8_t *)w->data + (r0 + r) * G * Q8_GROUP;
            const int8_t *xq = in->q + (t0 + t) * GP * Q8_GROUP;
            float acc[8] = {0};
            for (size_t g = 0; g < G; g++) {
                float s = fp16_to_f32(w->scales[(r0 + r) * G + g]) * in->qd[(t0 + t) * GP + g];
                lanes_group(acc, wq + g * Q8_GROUP, xq + g * Q8_GROUP, s);
            }
            y[t * ldy + r] = vhsum(vload(acc));
        }
    }
}
#endif

// ----------------------------------------------------------------------------
// q4_0 tiles, as q8_0's: per block g of a row (32 weights, q - 8 with q a nibble), the exact
// integer dot product with the activation quants of group g (the q8_0 form), then
//   acc += (float)dot * (d_w,g * d_x,g)
// in float lanes, and y = hsum(acc): the same arithmetic for every tile shape.
#define Q40_TR 4
#if SL_AVX2
// AVX2 runs q4_0 as the other 32-weight block types (tile_g32): the same operations.
#elif SL_NEON && SL_SDOT
// NEON: low nibbles (weights 0-15) against the group's first 16 quants, high nibbles
// (16-31) against the rest, as the AVX2 tile's two 128-bit halves; y = hsum(acc) (the AVX2
// tile's explicit reduction is hsum8's additions).
#define Q40_TT Q8_TT
INLINE void tile_q40(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                     size_t r0, size_t R, size_t T) {
    const size_t G = w->cols / 32;
    const uint8_t *wb = (const uint8_t *)w->data + r0 * G * 18;
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    vf acc[Q40_TR][Q40_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = vzero();
    for (size_t g = 0; g < G; g++) {
        int8x16_t wv[SDOT_TR][2];
        float wsv[SDOT_TR];
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            const uint8_t *bp = wb + (r * G + g) * 18;
            uint8x16_t q = vld1q_u8(bp + 2);
            wv[r][0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low4)), eight);
            wv[r][1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
            wsv[r] = ggml_f16(bp);
        }
        sdot_group_tokens(acc, wv, wsv, in, t0, g, R, T);
    }
    TILE_STORE(acc, y, ldy, R, T);
}
#else
#define Q40_TT 1
INLINE void tile_q40(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                     size_t r0, size_t R, size_t T) {
    const size_t G = w->cols / 32, GP = in->groups;
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) {
            const uint8_t *wb = (const uint8_t *)w->data + (r0 + r) * G * 18;
            const int8_t *xq = in->q + (t0 + t) * GP * Q8_GROUP;
            float acc[8] = {0};
            for (size_t g = 0; g < G; g++) {
                int8_t q[32];  // weights 0-15: low nibbles, 16-31: high nibbles
                for (size_t i = 0; i < 16; i++) {
                    q[i] = (int8_t)((wb[g * 18 + 2 + i] & 0x0F) - 8);
                    q[16 + i] = (int8_t)((wb[g * 18 + 2 + i] >> 4) - 8);
                }
                lanes_group(acc, q, xq + g * 32, ggml_f16(wb + g * 18) * in->qd[(t0 + t) * GP + g]);
            }
            y[t * ldy + r] = vhsum(vload(acc));
        }
}
#endif

// ----------------------------------------------------------------------------
// q5_0, iq4_nl, q4_1, q5_1 tiles: 32-weight blocks as q4_0's. A block's 32 integer levels q
// (blocks.h's ggml_levels32: q5_0 q - 16, iq4_nl kvalues[q], both within [-127, 127]; q4_1 and
// q5_1 q itself, 0..31) meet the activations' q8_0 group g, per lane l (quants 4l .. 4l+3):
//   q5_0, iq4_nl: acc_l = fma(dot_l, d_w,g * d_x,g, acc_l)
//   q4_1, q5_1:   the same lanes, and one scalar per output for the mins:
//                 accm = fma(m_w,g, s_x,g, accm), s_x,g = d_x,g * (float)sum_i q_x,i (MatIn's qsum)
// with dot_l exact integers; y = hsum(acc) (+ accm), as ggml adds its Q8_1 sums separately.
static inline size_t g32_bytes(int wt) {
    return wt == SL_Q5_1 ? 24 : wt == SL_Q5_0 ? 22 : wt == SL_Q4_1 ? 20 : 18;
}
#define G32_TR 4
#ifndef G32_PF_TILES  // how many tiles ahead a matvec prefetches its rows (as q8_0's)
#define G32_PF_TILES 8
#endif
#if SL_AVX2
#define G32_TT I8_TT
// 0xFF in byte j where bit j of the 32 bits at p is set (ggml's bytes_from_bits_32).
static inline __m256i bytes_from_bits32(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

// The block at bp's 32 levels as int8, in order (ggml_levels32's, in a ymm).
INLINE __m256i g32_levels(const uint8_t *bp, int wt) {
    const int has_min = wt == SL_Q4_1 || wt == SL_Q5_1, five = wt == SL_Q5_0 || wt == SL_Q5_1;
    const uint8_t *qs = bp + (has_min ? 4 : 2) + (five ? 4 : 0);
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
    if (wt == SL_IQ4_NL)
        return _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ggml_iq4_kvalues)), nib);
    if (wt == SL_Q4_0) return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
    if (!five) return nib;  // q4_1
    __m256i bits = bytes_from_bits32(qs - 4);
    if (wt == SL_Q5_1) return _mm256_or_si256(nib, _mm256_and_si256(bits, _mm256_set1_epi8(0x10)));
    return _mm256_or_si256(nib, _mm256_andnot_si256(bits, _mm256_set1_epi8((char)0xF0)));  // q - 16
}

// Group g of rows r0 .. r0+R against tokens t0 .. t0+T, one row at a time (its levels and
// scales live only while its tokens run). Signed levels (q5_0, iq4_nl): i8_group_tokens'
// products; unsigned ones (q4_1, q5_1): vpmaddubsw takes them as they are, and the min's term
// goes to the row's scalar accm.
INLINE void g32_group(__m256 acc[][G32_TT], float accm[][G32_TT], const uint8_t *wb, size_t G,
                      size_t bb, const MatIn *in, size_t t0, size_t g, size_t R, size_t T, int wt) {
    const int has_min = wt == SL_Q4_1 || wt == SL_Q5_1;

    __m256 xs[G32_TT];
    for (size_t t = 0; t < T; t++) xs[t] = _mm256_loadu_ps(in->qscale + ((t0 + t) * in->groups + g) * 8);
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++) {
        const uint8_t *bp = wb + (r * G + g) * bb;
        const __m256i wv = g32_levels(bp, wt);
        if (T == 1 || t0 == 0) PREFETCH_L2(bp, G32_PF_TILES * R * G * bb);  // the same blocks, tiles ahead
        const __m256 ws = _mm256_set1_ps(ggml_f16(bp));
        const float wm = has_min ? ggml_f16(bp + 2) : 0.0f;
        for (size_t t = 0; t < T; t++) {
            const size_t at = (t0 + t) * in->groups + g;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP));
            __m256i p = has_min ? dot4_u8s8(wv, xv)
                                : dot4_u8s8(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            __m256 d = _mm256_cvtepi32_ps(p);
            acc[r][t] = _mm256_fmadd_ps(d, _mm256_mul_ps(ws, xs[t]), acc[r][t]);
            if (has_min) accm[r][t] = fma32(wm, in->qsum[at], accm[r][t]);
        }
    }
}

INLINE void tile_g32(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                     size_t r0, size_t R, size_t T, int wt) {
    const size_t G = w->cols / 32, bb = g32_bytes(wt);
    const uint8_t *wb = (const uint8_t *)w->data + r0 * G * bb;
    __m256 acc[G32_TR][G32_TT];
    float accm[G32_TR][G32_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps(), accm[r][t] = 0.0f;
    for (size_t g = 0; g < G; g++) g32_group(acc, accm, wb, G, bb, in, t0, g, R, T, wt);
    TILE_STORE(acc, y, ldy, R, T);
    if (wt == SL_Q4_1 || wt == SL_Q5_1)
        for (size_t r = 0; r < R; r++)
            for (size_t t = 0; t < T; t++) y[t * ldy + r] = y[t * ldy + r] + accm[r][t];
}
#else
// Plain C (and NEON): lanes_group on the levels, and the min's scalar, fused (fma32).
#define G32_TT 1
INLINE void tile_g32(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                     size_t r0, size_t R, size_t T, int wt) {
    const size_t G = w->cols / 32, GP = in->groups, bb = g32_bytes(wt);
    const uint32_t gt = dtype_ggml(wt);
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) {
            const uint8_t *wb = (const uint8_t *)w->data + (r0 + r) * G * bb;
            const int8_t *xq = in->q + (t0 + t) * GP * Q8_GROUP;
            float acc[8] = {0}, accm = 0.0f;
            for (size_t g = 0; g < G; g++) {
                int8_t q[32];
                const uint8_t *bp = wb + g * bb;
                const size_t at = (t0 + t) * GP + g;
                const int has_min = ggml_levels32(gt, bp, q);
                lanes_group(acc, q, xq + g * 32, ggml_f16(bp) * in->qd[at]);
                if (has_min) accm = fma32(ggml_f16(bp + 2), in->qsum[at], accm);
            }
            y[t * ldy + r] = vhsum(vload(acc)) + accm;
        }
}
#endif

#if SL_AVX512 && SL_VNNI
// ---- AVX-512 VNNI: the 32-weight block types in row pairs (tile_q8_pairs' scheme) ----
// A zmm holds block g of row r (lanes 0-7) and of row r + 1 (lanes 8-15) as the unsigned bytes
// vpdpbusd takes: q4_0's and q5_0's stored q (level + 8, + 16), iq4_nl's level + 128, whose
// offsets each lane's start cancels (g32_pair_init, from the activations' qcorr); q4_1's and
// q5_1's q as they are, from zero. Each lane then holds the exact dot_l of its 4 quants, the integer an AVX2 lane holds,
// and takes the same fma with the same d_w * d_x: the same bits.
#ifndef G32P_TT
#define G32P_TT 4  // tokens of a batch tile: 4 pairs x 4 tokens = 16 zmm accumulators
#endif
#ifndef G32P_PF_TILES
#define G32P_PF_TILES 8  // how many tiles ahead a matvec prefetches its rows
#endif

static inline __m128i load16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

// The 32 levels of the blocks at a and b (a's in bytes 0-31, b's in 32-63) as vpdpbusd's bytes.
INLINE __m512i g32_pair_u8(const uint8_t *a, const uint8_t *b, int wt) {
    const int has_min = wt == SL_Q4_1 || wt == SL_Q5_1, five = wt == SL_Q5_0 || wt == SL_Q5_1;
    const size_t qs = (has_min ? 4 : 2) + (five ? 4 : 0);  // where the nibbles start
    // [qs_a, qs_a, qs_b, qs_b], the second copy of each shifted: low nibbles are weights 0-15,
    // high nibbles 16-31
    __m512i z = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(load16(a + qs)), 0xFF00, load16(b + qs));
    z = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);
    __m512i nib = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    if (wt == SL_IQ4_NL) {  // kvalues[q] + 128
        __m128i kv = _mm_xor_si128(load16((const uint8_t *)ggml_iq4_kvalues), _mm_set1_epi8((char)0x80));
        return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(kv), nib);
    }
    if (!five) return nib;  // q4_0 (level q - 8), q4_1
    uint32_t ha, hb;        // bit j: weight j's fifth bit
    memcpy(&ha, a + qs - 4, 4), memcpy(&hb, b + qs - 4, 4);
    __mmask64 hi = (__mmask64)ha | (__mmask64)hb << 32;
    return _mm512_mask_add_epi8(nib, hi, nib, _mm512_set1_epi8(16));  // q5_0 (level q - 16), q5_1
}

// Where a lane's vpdpbusd starts, from -128 x its 4 activation quants' sum (qcorr): the
// levels' offset from g32_pair_u8's bytes times that sum, exactly (-8 s for q4_0, -16 s for
// q5_0, -128 s for iq4_nl's table), or zero for the unsigned levels of q4_1 and q5_1.
INLINE __m512i g32_pair_init(const int32_t *qcorr, int wt) {
    if (wt == SL_Q4_1 || wt == SL_Q5_1) return _mm512_setzero_si512();
    __m256i c = _mm256_loadu_si256((const __m256i *)qcorr);
    if (wt == SL_Q4_0) c = _mm256_srai_epi32(c, 4);
    if (wt == SL_Q5_0) c = _mm256_srai_epi32(c, 3);
    return _mm512_broadcast_i64x4(c);
}

// P row pairs (rows r0 .. r0 + 2P) x T tokens.
INLINE void tile_g32_pairs(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                           size_t r0, size_t P, size_t T, int wt) {
    const int has_min = wt == SL_Q4_1 || wt == SL_Q5_1;
    const size_t G = w->cols / 32, bb = g32_bytes(wt), row_bytes = G * bb;
    const uint8_t *wb = (const uint8_t *)w->data + r0 * row_bytes;
    __m512 acc[4][G32P_TT];
    __m256 accm[G32P_TT];  // q4_1, q5_1: lane r the min's term of row r, per token
#pragma GCC unroll 4
    for (size_t p = 0; p < P; p++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[p][t] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) accm[t] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        __m512i wv[4];
        __m512 ws[4];
        // the first 4 bytes of each row's block: d, then m (q4_1, q5_1) or bytes of no use,
        // as 16 halves converted at once: dm = [d_0, m_0, d_1, m_1, ...]
        uint32_t dm32[8] = {0};
#pragma GCC unroll 8
        for (size_t r = 0; r < 2 * P; r++) memcpy(&dm32[r], wb + r * row_bytes + g * bb, 4);
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dm32));
#pragma GCC unroll 4
        for (size_t p = 0; p < P; p++) {
            const uint8_t *a = wb + 2 * p * row_bytes + g * bb, *b = a + row_bytes;
            wv[p] = g32_pair_u8(a, b, wt);
            // [d_2p x 8 | d_2p+1 x 8]
            ws[p] = _mm512_permutexvar_ps(_mm512_setr_epi32(
                (int)(4 * p), (int)(4 * p), (int)(4 * p), (int)(4 * p), (int)(4 * p), (int)(4 * p),
                (int)(4 * p), (int)(4 * p), (int)(4 * p + 2), (int)(4 * p + 2), (int)(4 * p + 2),
                (int)(4 * p + 2), (int)(4 * p + 2), (int)(4 * p + 2), (int)(4 * p + 2),
                (int)(4 * p + 2)), dm);
            if (T == 1) ws[p] = _mm512_mul_ps(ws[p], _mm512_set1_ps(in->qd[t0 * in->groups + g]));
            if (T == 1 || t0 == 0) {  // a matvec, or a batch's first tokens: stream the rows ahead
                PREFETCH_L2(a, G32P_PF_TILES * 2 * P * row_bytes);
                PREFETCH_L2(b, G32P_PF_TILES * 2 * P * row_bytes);
            }
        }
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) {
            const size_t at = (t0 + t) * in->groups + g;
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP)));
            const __m512i x0 = g32_pair_init(in->qcorr + at * 8, wt);
#pragma GCC unroll 4
            for (size_t p = 0; p < P; p++) {
                __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(x0, wv[p], xv));
                __m512 s = T == 1 ? ws[p] : _mm512_mul_ps(ws[p], _mm512_set1_ps(in->qd[at]));
                acc[p][t] = _mm512_fmadd_ps(d, s, acc[p][t]);
            }
        }
        if (has_min) {  // accm_r += m_r * sum_x, one fma per (row, token) as the 8-lane tile's
            const __m256 m = _mm512_castps512_ps256(_mm512_permutexvar_ps(
                _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0), dm));
#pragma GCC unroll 4
            for (size_t t = 0; t < T; t++)
                accm[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(in->qsum[(t0 + t) * in->groups + g]), accm[t]);
        }
    }
    PAIRS_STORE(acc, y, ldy, P, T);
    if (has_min)
        for (size_t t = 0; t < T; t++) {
            float am[8];
            _mm256_storeu_ps(am, accm[t]);
            for (size_t r = 0; r < 2 * P; r++) y[t * ldy + r] = y[t * ldy + r] + am[r];
        }
}
#define G32_PAIRS 1
#else
#define G32_PAIRS 0
#endif

// ---- the family's tiles and rows ----

INLINE void tile_int8(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                      size_t r0, size_t R, size_t T, int wt) {
    if (wt == SL_Q8_0) {
        tile_q8(y, ldy, in, t0, w, r0, R, T);
        return;
    }
#if G32_PAIRS
    if (R % 2 == 0) {
        tile_g32_pairs(y, ldy, in, t0, w, r0, R / 2, T, wt);
        return;
    }
    if (T > G32_TT) {  // an odd tail row of a wider batch tile: token by token
        for (size_t t = 0; t < T; t++) {
            tile_g32(y + t * ldy, ldy, in, t0 + t, w, r0, R, 1, wt);
        }
        return;
    }
#endif
#if SL_AVX2
    tile_g32(y, ldy, in, t0, w, r0, R, T, wt);
#else
    if (wt == SL_Q4_0) tile_q40(y, ldy, in, t0, w, r0, R, T);
    else tile_g32(y, ldy, in, t0, w, r0, R, T, wt);
#endif
}

void mm_rows_q8_0(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, Q8_TR, Q8_TRV, Q8_TT, y, ldy, in, w, b, e, SL_Q8_0);
}

#if G32_PAIRS
#define B32_TR 8  // 4 pairs
#define B32_TT G32P_TT
#else
#define B32_TR 4
#define B32_TT G32_TT
#endif

void mm_rows_q4_0(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, B32_TR, B32_TR, B32_TT, y, ldy, in, w, b, e, SL_Q4_0);
}
void mm_rows_q5_0(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, B32_TR, B32_TR, B32_TT, y, ldy, in, w, b, e, SL_Q5_0);
}
void mm_rows_iq4_nl(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, B32_TR, B32_TR, B32_TT, y, ldy, in, w, b, e, SL_IQ4_NL);
}
void mm_rows_q4_1(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, B32_TR, B32_TR, B32_TT, y, ldy, in, w, b, e, SL_Q4_1);
}
void mm_rows_q5_1(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_int8, B32_TR, B32_TR, B32_TT, y, ldy, in, w, b, e, SL_Q5_1);
}

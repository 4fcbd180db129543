// matmul_kquant.c: the products of the 256-weight K-pattern types, q2_k, q3_k, q4_k, q5_k,
// q6_k and iq4_xs (matmul_impl.h's K family), against the activations' q8_k form.
//
// Contract: libc and simd.h; no allocation. Instruction-set sections in the order AVX-512,
// AVX2, plain C; kernels.c's kquant_block is the reference twin.
//
// Order per output: one float, per block of 256 in order: exact integer sums of the block
// (sub-block dot products times their integer scales), then
//   acc += (d d_x) isum [- (dmin d_x) corr]
// in kernels.c's kquant_block order, so every ISA gives the plain twin's bits.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/matmul_impl.h"

#if SL_AVX2
// Q4_K, Q5_K and Q6_K fused with the dot product, AVX2 (AVX-512 machines run it too), no
// dequantized copy: the activations are quantized per block of 256 (quant.h's q8k, as ggml's
// Q8_K), and each block's sub-block dot products and scales are summed in integers
// (vpmaddubsw, then vpmaddwd by the 6-bit scales); one float scaling per block, in
// kernels.c's kquant_block order, so the result equals the plain twin's bit for bit. The
// same operations for a (row, token) whatever the tokens beside it.

#define KQ_TOKENS 4  // tokens that share one unpacked block

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// The sums of the 8 lanes of a and of b: out[0], out[1].
static inline void hsum2_i32(__m256i a, __m256i b, int32_t out[2]) {
    __m256i h = _mm256_hadd_epi32(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_hadd_epi32(s, s);              // a b a b
    out[0] = _mm_cvtsi128_si32(s);
    out[1] = _mm_extract_epi32(s, 1);
}

// The 8 scales and 8 mins of a Q4_K block as 16 int16 lanes (scales, then mins): ggml's 12-byte
// packing (blocks.h's ggml_scale_min_k4) undone four bytes at a time.
static inline __m256i q4k_scales_mins(const uint8_t *packed) {
    uint32_t u[3];
    memcpy(u, packed, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    uint32_t sc_lo = u[0] & m6, mn_lo = u[1] & m6;  // j < 4: the low 6 bits
    uint32_t sc_hi = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);  // j >= 4: 4 bits + 2 bits
    uint32_t mn_hi = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)mn_hi, (int)mn_lo, (int)sc_hi, (int)sc_lo));
}

// Lane pairs (2j, 2j + 1) of v, as a shuffle mask that broadcasts int16 lane j of a 128-bit half.
static inline __m256i bcast16_mask(int j) {
    return _mm256_set1_epi16((int16_t)(0x0100 + 0x0202 * j));
}

// Tokens t0 .. t0+T of row r of Q4_K, or of Q5_K when five (T and five constant after
// inlining: the sums stay in registers).
static inline __attribute__((always_inline)) void q45k_tokens(float *y, size_t ldy, const MatIn *in,
                                                              const uint8_t *row, size_t nb,
                                                              size_t r, size_t t0, size_t T,
                                                              int five) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    const size_t n = in->n;
    float acc[KQ_TOKENS] = {0};
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * (five ? 176 : 144), *qs = bp + 16 + 32 * five;
        const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(bp + 16)) : low4;
        const __m256i sm = q4k_scales_mins(bp + 4);
        const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);  // both halves: scales
        const __m256i mins = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sm, 1));
        __m256i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            __m256i qw = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));
            if (j % 2) qw = _mm256_srli_epi16(qw, 4);
            qw = _mm256_and_si256(qw, low4);
            if (five)  // bit j of each high-bit byte, as 16
                qw = _mm256_or_si256(qw, _mm256_and_si256(
                    j < 4 ? _mm256_slli_epi16(qh, 4 - j) : _mm256_srli_epi16(qh, j - 4), bit4));
            const __m256i scv = _mm256_shuffle_epi8(scales, bcast16_mask(j));
            for (size_t t = 0; t < T; t++) {
                const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 32 * (size_t)j;
                __m256i p = _mm256_maddubs_epi16(qw, _mm256_loadu_si256((const __m256i *)xq));
                isum[t] = dot2_add(isum[t], p, scv);
            }
        }
        const float d = ggml_f16(bp), dmin = ggml_f16(bp + 2);
        for (size_t t = 0; t < T; t++) {
            // corr = sum_j min_j (bsum_2j + bsum_2j+1): pairs summed by vpmaddwd, then by mins
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            const __m256i corr = _mm256_mullo_epi32(_mm256_madd_epi16(bs, ones), mins);
            int32_t sums[2];  // the sums of isum's lanes and of corr's, both at once
            hsum2_i32(isum[t], corr, sums);
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[t] += (d * dx) * (float)sums[0] - (dmin * dx) * (float)sums[1];
        }
    }
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[t];
}

static inline __attribute__((always_inline)) void q6k_tokens(float *y, size_t ldy, const MatIn *in,
                                                             const uint8_t *row, size_t nb,
                                                             size_t r, size_t t0, size_t T) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
    const size_t n = in->n;
    float acc[KQ_TOKENS] = {0};
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * 210;
        // the 16 int8 scales as int16 lanes: 0..7 in the low half, 8..15 in the high one
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + 192)));
        const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        __m256i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++)
            for (int s4 = 0; s4 < 4; s4++) {  // weights 128 h + 32 s4 .. + 31: scales k, k + 1
                __m256i ql = _mm256_loadu_si256((const __m256i *)(bp + 64 * h + 32 * (s4 % 2)));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(bp + 128 + 32 * h));
                if (s4 / 2) ql = _mm256_srli_epi16(ql, 4);
                qh = _mm256_srli_epi16(qh, 2 * s4);
                __m256i qu = _mm256_or_si256(_mm256_and_si256(ql, low4),
                                             _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
                // scale 2 s4 of half h in the low 128 bits, 2 s4 + 1 in the high ones
                const __m256i scv = _mm256_shuffle_epi8(
                    h ? sc_hi : sc_lo, _mm256_setr_m128i(_mm256_castsi256_si128(bcast16_mask(2 * s4)),
                                                         _mm256_castsi256_si128(bcast16_mask(2 * s4 + 1))));
                for (size_t t = 0; t < T; t++) {
                    const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 128 * (size_t)h + 32 * (size_t)s4;
                    __m256i p = _mm256_maddubs_epi16(qu, _mm256_loadu_si256((const __m256i *)xq));
                    isum[t] = dot2_add(isum[t], p, scv);
                }
            }
        const float d = ggml_f16(bp + 208);
        for (size_t t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            const __m256i corr = _mm256_madd_epi16(bs, sc16);  // sum_k sc_k bsum_k, in lanes
            const int32_t sum = hsum_i32(_mm256_sub_epi32(isum[t], _mm256_slli_epi32(corr, 5)));
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[t] += (d * dx) * (float)sum;  // isum - 32 corr, exact in integers
        }
    }
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[t];
}

// Q2_K: 16 sub-blocks of 16 weights, 2-bit q (0..3), 4-bit scale and min each (kquant_block's
// q2_k sums). Weights 128 h + 32 s + l are bits 2 s of byte 32 h + l; sub-blocks 8 h + 2 s
// (l < 16) and 8 h + 2 s + 1, in the ymm's two halves as q6k_tokens has them.
static inline __attribute__((always_inline)) void q2k_tokens(float *y, size_t ldy, const MatIn *in,
                                                             const uint8_t *row, size_t nb,
                                                             size_t r, size_t t0, size_t T) {
    const __m256i low2 = _mm256_set1_epi8(0x03);
    const size_t n = in->n;
    float acc[KQ_TOKENS] = {0};
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * 84;
        const __m128i sb = _mm_loadu_si128((const __m128i *)bp);
        const __m128i m4 = _mm_set1_epi8(0x0F);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sb, m4));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
        const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        __m256i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(bp + 16 + 32 * h));
            for (int s4 = 0; s4 < 4; s4++) {
                const __m256i qu = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s4), low2);
                const __m256i scv = _mm256_shuffle_epi8(
                    h ? sc_hi : sc_lo, _mm256_setr_m128i(_mm256_castsi256_si128(bcast16_mask(2 * s4)),
                                                         _mm256_castsi256_si128(bcast16_mask(2 * s4 + 1))));
                for (size_t t = 0; t < T; t++) {
                    const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 128 * (size_t)h + 32 * (size_t)s4;
                    __m256i p = _mm256_maddubs_epi16(qu, _mm256_loadu_si256((const __m256i *)xq));
                    isum[t] = dot2_add(isum[t], p, scv);
                }
            }
        }
        const float d = ggml_f16(bp + 80), dmin = ggml_f16(bp + 82);
        for (size_t t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            int32_t sums[2];
            hsum2_i32(isum[t], _mm256_madd_epi16(bs, mn16), sums);
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[t] += (d * dx) * (float)sums[0] - (dmin * dx) * (float)sums[1];
        }
    }
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[t];
}

// Q3_K: as Q2_K's planes, plus the high bit (bit 4 h + s of hmask[l]): u = q + 4 hbit in 0..7
// is the level + 4, so sum_k sc_k (level . xq)_k = sum_k sc_k (u . xq)_k - 4 sum_k sc_k bsum_k
// (sc_k = 6-bit scale - 32), the integer of kquant_block's q3_k.
static inline __attribute__((always_inline)) void q3k_tokens(float *y, size_t ldy, const MatIn *in,
                                                             const uint8_t *row, size_t nb,
                                                             size_t r, size_t t0, size_t T) {
    const __m256i low2 = _mm256_set1_epi8(0x03), one = _mm256_set1_epi8(0x01);
    const size_t n = in->n;
    float acc[KQ_TOKENS] = {0};
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * 110;
        uint32_t a[3], u[4];  // the 16 6-bit scales unpacked to bytes (ggml's kmask trick)
        memcpy(a, bp + 96, 12);
        const uint32_t k1 = 0x03030303u, k2 = 0x0f0f0f0fu;
        u[0] = (a[0] & k2) | (((a[2] >> 0) & k1) << 4);
        u[1] = (a[1] & k2) | (((a[2] >> 2) & k1) << 4);
        u[2] = ((a[0] >> 4) & k2) | (((a[2] >> 4) & k1) << 4);
        u[3] = ((a[1] >> 4) & k2) | (((a[2] >> 6) & k1) << 4);
        const __m256i sc16 = _mm256_sub_epi16(
            _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)u)), _mm256_set1_epi16(32));
        const __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
        const __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)bp);
        __m256i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(bp + 32 + 32 * h));
            for (int s4 = 0; s4 < 4; s4++) {
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + s4), one);
                const __m256i qu = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * s4), low2),
                                                   _mm256_slli_epi16(hb, 2));
                const __m256i scv = _mm256_shuffle_epi8(
                    h ? sc_hi : sc_lo, _mm256_setr_m128i(_mm256_castsi256_si128(bcast16_mask(2 * s4)),
                                                         _mm256_castsi256_si128(bcast16_mask(2 * s4 + 1))));
                for (size_t t = 0; t < T; t++) {
                    const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 128 * (size_t)h + 32 * (size_t)s4;
                    __m256i p = _mm256_maddubs_epi16(qu, _mm256_loadu_si256((const __m256i *)xq));
                    isum[t] = dot2_add(isum[t], p, scv);
                }
            }
        }
        const float d = ggml_f16(bp + 108);
        for (size_t t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            const __m256i corr = _mm256_madd_epi16(bs, sc16);  // sum_k sc_k bsum_k, in lanes
            const int32_t sum = hsum_i32(_mm256_sub_epi32(isum[t], _mm256_slli_epi32(corr, 2)));
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[t] += (d * dx) * (float)sum;
        }
    }
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[t];
}

// IQ4_XS: 8 sub-blocks of 32, levels kvalues[q] (signed: vpmaddubsw on |w| and x with w's
// sign, as i8_group_tokens), each sub-block's sum scaled by ls - 32 in vpmaddwd.
static inline __attribute__((always_inline)) void iq4xs_tokens(float *y, size_t ldy, const MatIn *in,
                                                               const uint8_t *row, size_t nb,
                                                               size_t r, size_t t0, size_t T) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i kv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ggml_iq4_kvalues));
    const size_t n = in->n;
    float acc[KQ_TOKENS] = {0};
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * 136;
        __m256i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            const __m128i q = _mm_loadu_si128((const __m128i *)(bp + 8 + 16 * j));
            const __m256i wv = _mm256_shuffle_epi8(
                kv, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low4));
            const __m256i aw = _mm256_sign_epi8(wv, wv);
            const __m256i scv = _mm256_set1_epi16((int16_t)(ggml_iq4xs_scale(bp, j) - 32));
            for (size_t t = 0; t < T; t++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(in->kq + (t0 + t) * n + blk * 256 + 32 * (size_t)j));
                __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv));
                isum[t] = dot2_add(isum[t], p, scv);
            }
        }
        const float d = ggml_f16(bp);
        for (size_t t = 0; t < T; t++) {
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[t] += (d * dx) * (float)hsum_i32(isum[t]);
        }
    }
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[t];
}

// Tokens t0 .. t0+T of row r of a K-pattern type (type and T constant after inlining).
static inline __attribute__((always_inline)) void kq_tokens(float *y, size_t ldy, const MatIn *in,
                                                            const uint8_t *row, size_t nb, size_t r,
                                                            size_t t0, size_t T, int type) {
    switch (type) {
    case SL_Q4_K: q45k_tokens(y, ldy, in, row, nb, r, t0, T, 0); break;
    case SL_Q5_K: q45k_tokens(y, ldy, in, row, nb, r, t0, T, 1); break;
    case SL_Q6_K: q6k_tokens(y, ldy, in, row, nb, r, t0, T); break;
    case SL_Q2_K: q2k_tokens(y, ldy, in, row, nb, r, t0, T); break;
    case SL_Q3_K: q3k_tokens(y, ldy, in, row, nb, r, t0, T); break;
    default: iq4xs_tokens(y, ldy, in, row, nb, r, t0, T); break;
    }
}

// Rows b .. e of a K-pattern matrix (type constant after inlining), KQ_TOKENS tokens at a
// time, then one at a time.
#ifndef SL_KQ_PAIRS
#define SL_KQ_PAIRS 1  // -DSL_KQ_PAIRS=0: the AVX2 kernels, one row at a time, on AVX-512 too
#endif
#if SL_AVX512 && SL_KQ_PAIRS
// ---- AVX-512: two rows at once ----
// A zmm holds sub-block j of row r (bytes 0-31) and of row r + 1 (bytes 32-63) against the
// token's quants broadcast to both halves; vpmaddubsw, then vpdpwssd (vpmaddwd + vpaddd without
// VNNI) by each half's integer scales. The integer sums are the AVX2 kernels' exactly, and each
// row's float steps are theirs: the same bits.

INLINE __m512i dp16(__m512i acc, __m512i p, __m512i s) {  // acc + pairs of p * s, in int32
#if SL_VNNI
    return _mm512_dpwssd_epi32(acc, p, s);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p, s));
#endif
}
INLINE __m512i load_pair256(const uint8_t *a, const uint8_t *b) {
    return v_pair_i(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}
INLINE __m512i x_bcast(const int8_t *p) {  // 32 quants in both halves
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}
// The lane sums of each half of v (rows r, r + 1) and of each half of c: out[row][0 v, 1 c].
INLINE void hsum_halves(__m512i v, __m512i c, int32_t out[2][2]) {
    hsum2_i32(_mm512_castsi512_si256(v), _mm512_castsi512_si256(c), out[0]);
    hsum2_i32(_mm512_extracti64x4_epi64(v, 1), _mm512_extracti64x4_epi64(c, 1), out[1]);
}

// The sums of the 8 lanes of each half of v0 .. v7 (half 0: row r, half 1: row r + 1), as
// [v0..v3 half 0 | v0..v3 half 1 | v4..v7 half 0 | v4..v7 half 1]: exact integers, in any order.
INLINE __m512i hsum_halves8(const __m512i v[8]) {
    __m512i p[4], q[2];
    for (int i = 0; i < 4; i++)  // per 128 bits: [a0+a2, b0+b2, a1+a3, b1+b3]
        p[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; i++)  // per 128 bits: the sums of v[4i] .. v[4i+3] there
        q[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(p[2 * i], p[2 * i + 1]),
                                _mm512_unpackhi_epi64(p[2 * i], p[2 * i + 1]));
    // 128-bit lanes [q0.0 + q0.1, q0.2 + q0.3, q1.0 + q1.1, q1.2 + q1.3]
    return _mm512_add_epi32(
        _mm512_permutex2var_epi64(q[0], _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13), q[1]),
        _mm512_permutex2var_epi64(q[0], _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15), q[1]));
}

// The KQ_TOKENS block scales of tokens t0 .. t0+4 at block blk, twice: [dx t0..t0+3 x 2].
INLINE __m256 dx_tokens(const MatIn *in, size_t nb, size_t t0, size_t blk) {
    const float *kd = in->kd + t0 * nb + blk;
    __m128 d = _mm_setr_ps(kd[0], kd[nb], kd[2 * nb], kd[3 * nb]);
    return _mm256_set_m128(d, d);
}

// Q4_K / Q5_K (five): rows at a and a + rstep, tokens t0 .. t0+T.
INLINE void q45k_pair(float *y, size_t ldy, const MatIn *in, const uint8_t *ra, size_t rstep,
                      size_t nb, size_t r, size_t t0, size_t T, int five) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi16(1);
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    const size_t n = in->n, bb = five ? 176 : 144;
    float acc[2][KQ_TOKENS] = {{0}};
    __m256 acc8 = _mm256_setzero_ps();  // T = KQ_TOKENS: [row r tokens 0..3 | row r + 1 tokens 0..3]
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *a = ra + blk * bb, *b = a + rstep, *qa = a + 16 + 32 * five, *qb = b + 16 + 32 * five;
        const __m512i qh = five ? load_pair256(a + 16, b + 16) : low4;
        // [scales a, scales a | scales b, scales b] (int16, each 128-bit lane), mins as int32
        const __m512i sm = v_pair_i(q4k_scales_mins(a + 4), q4k_scales_mins(b + 4));
        const __m512i scales = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 4, 5, 4, 5), sm);
        const __m512i mins = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(
            _mm512_permutexvar_epi64(_mm512_setr_epi64(2, 3, 6, 7, 2, 3, 6, 7), sm)));
        __m512i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            __m512i qw = load_pair256(qa + 32 * (j / 2), qb + 32 * (j / 2));
            if (j % 2) qw = _mm512_srli_epi16(qw, 4);
            qw = _mm512_and_si512(qw, low4);
            if (five)
                qw = _mm512_or_si512(qw, _mm512_and_si512(
                    j < 4 ? _mm512_slli_epi16(qh, 4 - j) : _mm512_srli_epi16(qh, j - 4), bit4));
            const __m512i scv = _mm512_shuffle_epi8(scales, _mm512_set1_epi16((int16_t)(0x0100 + 0x0202 * j)));
            for (size_t t = 0; t < T; t++) {
                const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 32 * (size_t)j;
                isum[t] = dp16(isum[t], _mm512_maddubs_epi16(qw, x_bcast(xq)), scv);
            }
        }
        const float d[2] = {ggml_f16(a), ggml_f16(b)}, dmin[2] = {ggml_f16(a + 2), ggml_f16(b + 2)};
        if (T == KQ_TOKENS) {  // the 16 sums at once, and the float steps in 8 lanes, each its own
            // corr = sum_k mn_(k/2) bsum_k, pairs by vpmaddwd: the mins duplicated per 16 quants
            const __m128i ma = _mm512_extracti32x4_epi32(sm, 1), mb = _mm512_extracti32x4_epi32(sm, 3);
            const __m512i mins2 = v_pair_i(_mm256_setr_m128i(_mm_unpacklo_epi16(ma, ma), _mm_unpackhi_epi16(ma, ma)),
                                           _mm256_setr_m128i(_mm_unpacklo_epi16(mb, mb), _mm_unpackhi_epi16(mb, mb)));
            __m512i v[8];
            for (size_t t = 0; t < KQ_TOKENS; t++) {
                v[t] = isum[t];
                v[4 + t] = _mm512_madd_epi16(x_bcast((const int8_t *)(in->kbs + (t0 + t) * (n / 16) + blk * 16)), mins2);
            }
            const __m512 s = _mm512_cvtepi32_ps(hsum_halves8(v));
            const __m256 dx = dx_tokens(in, nb, t0, blk);
            const __m256 dd = _mm256_set_m128(_mm_set1_ps(d[1]), _mm_set1_ps(d[0]));
            const __m256 dm = _mm256_set_m128(_mm_set1_ps(dmin[1]), _mm_set1_ps(dmin[0]));
            acc8 = _mm256_add_ps(acc8, _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(dd, dx), v_lo(s)),
                                                     _mm256_mul_ps(_mm256_mul_ps(dm, dx), v_hi(s))));
            continue;
        }
        for (size_t t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            const __m256i bs2 = _mm256_madd_epi16(bs, _mm512_castsi512_si256(ones));  // pairs summed
            const __m512i corr = _mm512_mullo_epi32(_mm512_broadcast_i64x4(bs2), mins);
            int32_t sums[2][2];
            hsum_halves(isum[t], corr, sums);
            const float dx = in->kd[(t0 + t) * nb + blk];
            for (int h = 0; h < 2; h++)
                acc[h][t] += (d[h] * dx) * (float)sums[h][0] - (dmin[h] * dx) * (float)sums[h][1];
        }
    }
    if (T == KQ_TOKENS) _mm256_storeu_ps(acc[0], acc8);  // acc[0][0..3], acc[1][0..3]: contiguous
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[0][t], y[(t0 + t) * ldy + r + 1] = acc[1][t];
}

// Q6_K: rows at a and a + rstep, tokens t0 .. t0+T (q6k_tokens' sums, two rows at once).
INLINE void q6k_pair(float *y, size_t ldy, const MatIn *in, const uint8_t *ra, size_t rstep,
                     size_t nb, size_t r, size_t t0, size_t T) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
    const size_t n = in->n;
    float acc[2][KQ_TOKENS] = {{0}};
    __m256 acc8 = _mm256_setzero_ps();  // T = KQ_TOKENS: [row r tokens 0..3 | row r + 1 tokens 0..3]
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *a = ra + blk * 210, *b = a + rstep;
        // 16 int8 scales of each row as int16: [a 0..15 | b 0..15]
        const __m512i sc16 = v_pair_i(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + 192))),
                                      _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192))));
        // scales 0..7 (h = 0) or 8..15 (h = 1) of each row in both of its 128-bit lanes
        const __m512i sc_h[2] = {
            _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 4, 5, 4, 5), sc16),
            _mm512_permutexvar_epi64(_mm512_setr_epi64(2, 3, 2, 3, 6, 7, 6, 7), sc16)};
        __m512i isum[KQ_TOKENS];
        for (size_t t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i qh0 = load_pair256(a + 128 + 32 * h, b + 128 + 32 * h);
            for (int s4 = 0; s4 < 4; s4++) {
                __m512i ql = load_pair256(a + 64 * h + 32 * (s4 % 2), b + 64 * h + 32 * (s4 % 2));
                if (s4 / 2) ql = _mm512_srli_epi16(ql, 4);
                const __m512i qh = _mm512_srli_epi16(qh0, 2 * s4);
                const __m512i qu = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                                   _mm512_slli_epi16(_mm512_and_si512(qh, low2), 4));
                // scale 2 s4 in each row's low 128 bits, 2 s4 + 1 in its high ones
                const __m128i m0 = _mm_set1_epi16((int16_t)(0x0100 + 0x0202 * (2 * s4)));
                const __m128i m1 = _mm_set1_epi16((int16_t)(0x0100 + 0x0202 * (2 * s4 + 1)));
                const __m256i m01 = _mm256_setr_m128i(m0, m1);
                const __m512i scv = _mm512_shuffle_epi8(sc_h[h], v_pair_i(m01, m01));
                for (size_t t = 0; t < T; t++) {
                    const int8_t *xq = in->kq + (t0 + t) * n + blk * 256 + 128 * (size_t)h + 32 * (size_t)s4;
                    isum[t] = dp16(isum[t], _mm512_maddubs_epi16(qu, x_bcast(xq)), scv);
                }
            }
        }
        const float d[2] = {ggml_f16(a + 208), ggml_f16(b + 208)};
        if (T == KQ_TOKENS) {  // the 8 sums at once, the float steps in 8 lanes
            __m512i v[8];
            for (size_t t = 0; t < KQ_TOKENS; t++) {
                const __m512i bs = x_bcast((const int8_t *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
                v[t] = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(_mm512_madd_epi16(bs, sc16), 5));
                v[4 + t] = _mm512_setzero_si512();
            }
            const __m512 s = _mm512_cvtepi32_ps(hsum_halves8(v));
            const __m256 dd = _mm256_set_m128(_mm_set1_ps(d[1]), _mm_set1_ps(d[0]));
            acc8 = _mm256_add_ps(acc8, _mm256_mul_ps(_mm256_mul_ps(dd, dx_tokens(in, nb, t0, blk)), v_lo(s)));
            continue;
        }
        for (size_t t = 0; t < T; t++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + (t0 + t) * (n / 16) + blk * 16));
            const __m512i corr = _mm512_madd_epi16(v_pair_i(bs, bs), sc16);  // sum_k sc_k bsum_k
            const __m512i v = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(corr, 5));
            const float dx = in->kd[(t0 + t) * nb + blk];
            acc[0][t] += (d[0] * dx) * (float)hsum_i32(_mm512_castsi512_si256(v));
            acc[1][t] += (d[1] * dx) * (float)hsum_i32(_mm512_extracti64x4_epi64(v, 1));
        }
    }
    if (T == KQ_TOKENS) _mm256_storeu_ps(acc[0], acc8);
    for (size_t t = 0; t < T; t++) y[(t0 + t) * ldy + r] = acc[0][t], y[(t0 + t) * ldy + r + 1] = acc[1][t];
}

// ---- AVX-512, one row against one token (a matvec): 64 weights per zmm ----
// Chunk c of a Q4_K/Q5_K block's nibbles holds sub-blocks 2c (low nibbles: bytes 0-31 of the
// zmm) and 2c + 1 (high nibbles: bytes 32-63), against the token's 64 quants there; the
// rows stream one after another. The same integer sums as the AVX2 kernel, the same floats.
INLINE __m512i halves_mask(int lo, int hi) {  // vpshufb picking int16 lane lo, then lane hi
    return _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16((int16_t)(0x0100 + 0x0202 * lo)),
                                   _mm512_set1_epi16((int16_t)(0x0100 + 0x0202 * hi)));
}

INLINE void q45k_row(float *y, const MatIn *in, const uint8_t *row, size_t nb, size_t r, size_t t,
                     int five) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    const size_t n = in->n, bb = five ? 176 : 144;
    const int8_t *xq = in->kq + t * n;
    float acc = 0.0f;
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * bb, *qs = bp + 16 + 32 * five;
        const __m256i sm = q4k_scales_mins(bp + 4);  // int16: 8 scales, 8 mins
        const __m512i sc = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
        const __m512i qh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(bp + 16)))
                                : low4;
        __m512i isum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
            q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF0000u, q, 4), low4);
            if (five) {  // bit j = 2c (low half) or 2c + 1 (high half) of each byte, as 16
                const int j = 2 * c;
                __m512i hl = j < 4 ? _mm512_slli_epi16(qh, 4 - j) : _mm512_srli_epi16(qh, j - 4);
                __m512i hh = j + 1 < 4 ? _mm512_slli_epi16(qh, 3 - j) : _mm512_srli_epi16(qh, j - 3);
                q = _mm512_or_si512(q, _mm512_and_si512(_mm512_mask_blend_epi64(0xF0, hl, hh), bit4));
            }
            const __m512i x = _mm512_loadu_si512((const void *)(xq + blk * 256 + 64 * (size_t)c));
            isum[c % 2] = dp16(isum[c % 2], _mm512_maddubs_epi16(q, x),
                               _mm512_shuffle_epi8(sc, halves_mask(2 * c, 2 * c + 1)));
        }
        const __m512i v = _mm512_add_epi32(isum[0], isum[1]);
        const __m256i v8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        const __m128i mn = _mm256_extracti128_si256(sm, 1);  // the mins, each for 2 x 16 quants
        const __m256i mn2 = _mm256_setr_m128i(_mm_unpacklo_epi16(mn, mn), _mm_unpackhi_epi16(mn, mn));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + t * (n / 16) + blk * 16));
        int32_t sums[2];
        hsum2_i32(v8, _mm256_madd_epi16(bs, mn2), sums);
        const float d = ggml_f16(bp), dmin = ggml_f16(bp + 2), dx = in->kd[t * nb + blk];
        acc += (d * dx) * (float)sums[0] - (dmin * dx) * (float)sums[1];
    }
    y[r] = acc;
}

// Q6_K, one row against one token: per half h of a block, 64 weights at a time (p = 0, 1:
// q6k_tokens' s4 = 2p and 2p + 1), each 128-bit lane of the zmm a sub-block of 16 with its
// own scale.
INLINE void q6k_row(float *y, const MatIn *in, const uint8_t *row, size_t nb, size_t r, size_t t) {
    const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
    const size_t n = in->n;
    const int8_t *xq = in->kq + t * n;
    float acc = 0.0f;
    for (size_t blk = 0; blk < nb; blk++) {
        const uint8_t *bp = row + blk * 210;
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + 192)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i isum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(bp + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(bp + 128 + 32 * h)));
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                const __m512i lo = _mm512_and_si512(p ? _mm512_srli_epi16(ql, 4) : ql, low4);
                const __m512i hb = _mm512_mask_blend_epi64(0xF0, _mm512_srli_epi16(qh, 4 * p),
                                                           _mm512_srli_epi16(qh, 4 * p + 2));
                const __m512i qu = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(hb, low2), 4));
                const int k = 8 * h + 4 * p;  // the scales of the zmm's four 128-bit lanes: k .. k+3
                const __m512i idx = _mm512_setr_epi64(
                    0x0001000100010001LL * k, 0x0001000100010001LL * k,
                    0x0001000100010001LL * (k + 1), 0x0001000100010001LL * (k + 1),
                    0x0001000100010001LL * (k + 2), 0x0001000100010001LL * (k + 2),
                    0x0001000100010001LL * (k + 3), 0x0001000100010001LL * (k + 3));
                const __m512i x = _mm512_loadu_si512((const void *)(xq + blk * 256 + 128 * (size_t)h + 64 * (size_t)p));
                isum[p] = dp16(isum[p], _mm512_maddubs_epi16(qu, x), _mm512_permutexvar_epi16(idx, sc));
            }
        }
        const __m512i v = _mm512_add_epi32(isum[0], isum[1]);
        const __m256i v8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(in->kbs + t * (n / 16) + blk * 16));
        const __m256i corr = _mm256_madd_epi16(bs, sc16);  // sum_k sc_k bsum_k, in lanes
        const int32_t sum = hsum_i32(_mm256_sub_epi32(v8, _mm256_slli_epi32(corr, 5)));
        acc += (ggml_f16(bp + 208) * in->kd[t * nb + blk]) * (float)sum;
    }
    y[r] = acc;
}

// Tokens t0 .. t0+T of rows r, r + 1, where the type has a pair kernel.
INLINE int kq_pair(float *y, size_t ldy, const MatIn *in, const uint8_t *row, size_t rstep,
                   size_t nb, size_t r, size_t t0, size_t T, int type) {
    switch (type) {
    case SL_Q4_K: q45k_pair(y, ldy, in, row, rstep, nb, r, t0, T, 0); return 1;
    case SL_Q5_K: q45k_pair(y, ldy, in, row, rstep, nb, r, t0, T, 1); return 1;
    case SL_Q6_K: q6k_pair(y, ldy, in, row, rstep, nb, r, t0, T); return 1;
    default: return 0;
    }
}
#define KQ_PAIRS(type) ((type) == SL_Q4_K || (type) == SL_Q5_K || (type) == SL_Q6_K)
#else
#define KQ_PAIRS(type) 0
INLINE int kq_pair(float *y, size_t ldy, const MatIn *in, const uint8_t *row, size_t rstep,
                   size_t nb, size_t r, size_t t0, size_t T, int type) {
    (void)y, (void)ldy, (void)in, (void)row, (void)rstep, (void)nb, (void)r, (void)t0, (void)T, (void)type;
    return 0;
}
#endif

// Rows b .. e of a K-pattern matrix (type constant after inlining): rows in pairs where the
// type has an AVX-512 pair kernel and there are several tokens, else one at a time; KQ_TOKENS
// tokens at a time, then one. (A matvec runs the AVX2 kernel on AVX-512 too: streaming two rows
// at once, the pair kernel decoded at 0.4-0.7x its speed on Zen 5, stalled on loads.)
static inline __attribute__((always_inline)) void rows_kq(float *y, size_t ldy, const MatIn *in,
                                                          const Tensor *w, size_t b, size_t e,
                                                          int type) {
    size_t be = 0, bb = 0;
    ggml_block_info(dtype_ggml(type), &be, &bb);
    const size_t nb = w->cols / 256, rstep = nb * bb;
    for (size_t r = b; r < e;) {
        const uint8_t *row = (const uint8_t *)w->data + r * rstep;
        const int pair = KQ_PAIRS(type) && r + 1 < e && in->m > 1;
#if SL_AVX512 && SL_KQ_PAIRS
        if (in->m == 1 && KQ_PAIRS(type)) {  // a matvec: the 64-weight row kernels
            if (type == SL_Q6_K) q6k_row(y, in, row, nb, r, 0);
            else q45k_row(y, in, row, nb, r, 0, type == SL_Q5_K);
            r++;
            continue;
        }
#endif
        for (size_t t0 = 0; t0 < in->m;) {
            size_t T = in->m - t0 >= KQ_TOKENS ? KQ_TOKENS : 1;
            if (pair) {
                if (T == KQ_TOKENS) kq_pair(y, ldy, in, row, rstep, nb, r, t0, KQ_TOKENS, type);
                else kq_pair(y, ldy, in, row, rstep, nb, r, t0, 1, type);
            } else {
                if (T == KQ_TOKENS) kq_tokens(y, ldy, in, row, nb, r, t0, KQ_TOKENS, type);
                else kq_tokens(y, ldy, in, row, nb, r, t0, 1, type);
            }
            t0 += T;
        }
        r += pair ? 2 : 1;
    }
}

void mm_rows_q4_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q4_K);
}
void mm_rows_q5_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q5_K);
}
void mm_rows_q6_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q6_K);
}
void mm_rows_q2_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q2_K);
}
void mm_rows_q3_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q3_K);
}
void mm_rows_iq4_xs(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_IQ4_XS);
}
#endif

#if !SL_AVX2
// The K-pattern types without AVX2: the plain twin's kquant_block on the prepared q8k form of x.
static void rows_kq_plain(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b,
                          size_t e) {
    const size_t n = w->cols, nb = n / 256;
    size_t be = 0, bb = 0;
    ggml_block_info(dtype_ggml(w->type), &be, &bb);
    for (size_t r = b; r < e; r++)
        for (size_t t = 0; t < in->m; t++) {
            const uint8_t *row = (const uint8_t *)w->data + r * nb * bb;
            float acc = 0.0f;
            for (size_t blk = 0; blk < nb; blk++)
                acc += kquant_block(w->type, row + blk * bb, in->kq + t * n + blk * 256,
                                    in->kd[t * nb + blk], in->kbs + t * (n / 16) + blk * 16);
            y[t * ldy + r] = acc;
        }
}
#endif

#if !SL_AVX2
void mm_rows_q4_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
void mm_rows_q5_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
void mm_rows_q6_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
void mm_rows_q2_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
void mm_rows_q3_k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
void mm_rows_iq4_xs(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq_plain(y, ldy, in, w, b, e);
}
#endif

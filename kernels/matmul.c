// matmul.c: the fast matrix products, for every weight type (see matmul.h).
//
// Contract: libc, pthreads through pool.h, and intrinsics picked at compile time through
// simd.h (AVX-512, else AVX2+FMA, else plain C; AVX512-VNNI or AVX2 for q8_0). No OpenMP,
// no BLAS, no allocation, no runtime CPU dispatch: the binary runs where its -march allows.
//
// One structure serves all types: threads take chunks of W rows (job_chunks), a chunk walks
// tiles of R rows x T tokens (rows_block, panel), and only the innermost step of a tile
// depends on the type: f32 loads, f16/bf16 loads converted to f32 in registers, or an
// integer dot product of q8_0 groups (the q8 layer below).
//
// ONE order per output, on every machine. Each output y[t][r] = W row r . X row t is 8
// partial sums (lanes), lane l taking the elements k = l (mod 8) in ascending order:
//   f32, f16, bf16:  acc_l = fma(w[k], x[k], acc_l), k = l, l + 8, ...; the last partial
//                    stretch through zero-filled loads (masked; never past the end)
//   q8_0, q4_0,      acc_l = fma(dot_l(g), d_w,g * d_x,g, acc_l) per group g of 32 in order,
//   q5_0, iq4_nl:    dot_l(g) the exact integer sum of the products of quants 4l .. 4l+3
//   q4_1, q5_1:      the same lanes, and accm = fma(m_w,g, d_x,g * sum(q_x,g), accm) per group in
//                    order: y = hsum8(acc) + accm
//   K-pattern types  (q2_k .. q6_k, iq4_xs) one float per output: per block of 256, exact integer
//                    sums, then acc += (d d_x) isum [- (dmin d_x) corr] (kernels.c's kquant_block)
//   y = hsum8(acc) = ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))
// An AVX2 ymm holds the 8 lanes of one output; an AVX-512 zmm the lanes of two rows side by
// side (lanes 0-7 row r, 8-15 row r + 1, against the token broadcast to both halves), so each
// lane runs the same operations on both; the plain build runs them with fma32 for the block
// types (bitwise the same) and with unfused a * b + c for f32/f16/bf16 (within rounding:
// the tests state the bound). store4 and the row-pair stores reduce several accumulators at
// once by exactly hsum8's additions, so multi-row tiles, tail rows, thread counts and a
// matvec against its row of a batch all agree, bit for bit.
// Tiles: TR rows of W x TT tokens of accumulators in registers (8 x 4 as 4 x 4 zmm on AVX-512).
// X is reused from L2 in blocks of tokens.
//
// ARM64 (SL_NEON): the same lanes in two float32x4_t, fused by vfmaq_f32; q8_0 and q4_0 on
// sdot (+dotprod, else plain C); the other block types plain C: the same bits as x86 (make
// test-arm).
#include "kernels/matmul.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

#include "kernels/simd.h"

#if SL_AVX2
// Shared 8-lane tail of the trees. hsum8: (v0+v4 + v2+v6) + (v1+v5 + v3+v7).
static inline float hsum8(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

// Four hsum8 at once: {hsum8(a), hsum8(b), hsum8(c), hsum8(d)}, the same additions.
static inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d) {
    // [a.s4 c.s4], [b.s4 d.s4] with s4 = lanes i + i+4; then per 128-bit lane
    // [a.s2 b.s2], [c.s2 d.s2] with s2 = s4 lanes i + i+2; then lanes 0 + 1.
    __m256 ac = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20),
                              _mm256_permute2f128_ps(a, c, 0x31));
    __m256 bd = _mm256_add_ps(_mm256_permute2f128_ps(b, d, 0x20),
                              _mm256_permute2f128_ps(b, d, 0x31));
    __m256 s2 = _mm256_add_ps(_mm256_shuffle_ps(ac, bd, 0x44), _mm256_shuffle_ps(ac, bd, 0xEE));
    __m128 lo = _mm256_castps256_ps128(s2), hi = _mm256_extractf128_ps(s2, 1);
    return _mm_add_ps(_mm_shuffle_ps(lo, hi, 0x88), _mm_shuffle_ps(lo, hi, 0xDD));
}

// The 8-lane layer, on AVX2 and on AVX-512 machines alike (where the 512-bit tiles below
// put two of these rows side by side in one zmm).
#define VW 8
#define TR 4
#ifndef TT
#define TT 2 // 8 ymm accumulators + 4 rows + 1 token fit the 16 registers
#endif
#define TRV 4
typedef __m256 vec;
static inline vec v_zero(void) { return _mm256_setzero_ps(); }
static inline vec v_load(const float *p, size_t len) {
    if (len == VW) return _mm256_loadu_ps(p);
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)len), lanes));
}
static inline vec v_cvt_h(const uint16_t *p, int bf) {  // VW values at p
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#if defined(__F16C__)
    return _mm256_cvtph_ps(h);
#else
    float f[VW];
    for (int i = 0; i < VW; i++) f[i] = fp16_to_f32(p[i]);
    return _mm256_loadu_ps(f);
#endif
}
static inline vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float hsum(vec v) { return hsum8(v); }
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    _mm_storeu_ps(y, hsum8x4(a, b, c, d));
}

#elif SL_NEON
// ARM64 NEON: the AVX2 path's arithmetic, bit for bit. A vec is the 8 lanes of a ymm as two
// float32x4_t (lo: lanes 0-3, hi: 4-7); vfmaq_f32 is fused like vfmadd; f16 and bf16 widen
// exactly (fcvtl, a shift), as F16C does: no fp16 arithmetic, which would change the bits.
#define VW 8
#define TR 4
#define TT 2
#define TRV 4
typedef struct {
    float32x4_t lo, hi;
} vec;
static inline vec v_zero(void) { return (vec){vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
static inline vec v_load(const float *p, size_t len) {  // zero-filled past len (1..VW)
    if (len == VW) return (vec){vld1q_f32(p), vld1q_f32(p + 4)};
    float tmp[VW] = {0};
    memcpy(tmp, p, len * sizeof *p);
    return (vec){vld1q_f32(tmp), vld1q_f32(tmp + 4)};
}
static inline float32x4_t h4_to_f32(const uint16_t *p, int bf) {
    uint16x4_t h = vld1_u16(p);
    if (bf) return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}
static inline vec v_load_h(const uint16_t *p, size_t len, int bf) {
    uint16_t tmp[VW] = {0};
    if (len < VW) memcpy(tmp, p, len * sizeof *p), p = tmp;
    return (vec){h4_to_f32(p, bf), h4_to_f32(p + 4, bf)};
}
static inline vec v_fma(vec a, vec b, vec c) {
    return (vec){vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)};
}
// hsum8's additions: s = lanes i + i+4, then (s0 + s2) + (s1 + s3).
static inline float32x2_t half_pairs(vec v) {  // {s0 + s2, s1 + s3}
    float32x4_t s = vaddq_f32(v.lo, v.hi);
    return vadd_f32(vget_low_f32(s), vget_high_f32(s));
}
static inline float hsum(vec v) { return vpadds_f32(half_pairs(v)); }
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    vst1q_f32(y, vpaddq_f32(vcombine_f32(half_pairs(a), half_pairs(b)),
                            vcombine_f32(half_pairs(c), half_pairs(d))));
}

#else
// Plain C with the same structure. Relies on no fp contraction (gcc's -std=c11 default),
// so that every acc += w * x rounds twice, everywhere alike.
#define VW 8
#define TR 4
#define TT 2
#define TRV 4
typedef struct {
    float f[VW];
} vec;
static inline vec v_zero(void) {
    vec v = {{0}};
    return v;
}
static inline vec v_load(const float *p, size_t len) {
    vec v = {{0}};
    for (size_t i = 0; i < len; i++) v.f[i] = p[i];
    return v;
}
static inline vec v_load_h(const uint16_t *p, size_t len, int bf) {
    vec v = {{0}};
    for (size_t i = 0; i < len; i++) v.f[i] = bf ? bf16_to_f32(p[i]) : fp16_to_f32(p[i]);
    return v;
}
static inline vec v_fma(vec a, vec b, vec c) {
    for (size_t i = 0; i < VW; i++) c.f[i] += a.f[i] * b.f[i];
    return c;
}
static inline float hsum(vec v) {
    for (size_t w = VW / 2; w > 0; w /= 2)
        for (size_t i = 0; i < w; i++) v.f[i] += v.f[i + w];
    return v.f[0];
}
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    y[0] = hsum(a), y[1] = hsum(b), y[2] = hsum(c), y[3] = hsum(d);
}
#endif

#if SL_AVX2
// len (1..VW) f16 or bf16 values, converted to floats; zero-filled past len (through a
// zero-padded copy: never read past the end).
static inline vec v_load_h(const uint16_t *p, size_t len, int bf) {
    uint16_t tmp[VW];
    if (len < VW) {
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, p, len * sizeof *p);
        p = tmp;
    }
    return v_cvt_h(p, bf);
}
#endif

#define INLINE static inline __attribute__((always_inline))

// The f32/f16/bf16 tile: F_TR rows x F_TT tokens, F_TRV rows for a matvec.
#if SL_AVX512
#define F_TR 8   // 4 row pairs ...
#define F_TT 4   // ... x 4 tokens: 16 zmm accumulators
#define F_TRV 8  // a matvec: 4 pairs
#else
#define F_TR TR
#define F_TT TT
#define F_TRV TRV
#endif

// Pins a loaded vector in a register. Without it gcc folds the loads into the FMAs as
// memory operands, re-loading each for every use (20 loads per 16 FMAs, ~25% slower).
#if SL_AVX2
#define KEEP(v) __asm__("" : "+v"(v))
#else
#define KEEP(v) (void)0
#endif

#ifndef MATMUL_PREFETCH // -DMATMUL_PREFETCH=0 turns the matvec prefetch off
#define MATMUL_PREFETCH 1
#endif
#if MATMUL_PREFETCH && SL_AVX2
// Address arithmetic on integers: the target may lie past the end of W (prefetch never faults).
#define PREFETCH_L2(p, bytes) \
    _mm_prefetch((const char *)((uintptr_t)(p) + (bytes)), _MM_HINT_T1)
#else
#define PREFETCH_L2(p, bytes) (void)0
#endif

// ----------------------------------------------------------------------------
// f32, f16 and bf16 tiles: f16/bf16 weights become floats in registers, then the same FMAs

static inline size_t wt_bytes(int wt) { return wt == SL_F32 ? 4 : 2; }

INLINE vec w_load(const void *w, size_t i, size_t len, int wt) {
    if (wt == SL_F32) return v_load((const float *)w + i, len);
    return v_load_h((const uint16_t *)w + i, len, wt == SL_BF16);
}

// One stretch k .. k+len of an R x T tile (R, T, wt constant after inlining). A matvec tile
// (T = 1) streams its rows from memory once: it prefetches the next tile's rows into L2,
// which lifts cold-weight GB/s by 15-35% (at a 10-25% cost when W is already in cache).
INLINE void tile_step(vec acc[TRV][F_TT], const void *w, const float *x, size_t n, size_t k,
                      size_t len, size_t R, size_t T, int wt) {
    vec wv[TRV];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++) {
        wv[r] = w_load(w, r * n + k, len, wt);
        KEEP(wv[r]);
        if (T == 1) PREFETCH_L2(w, ((R + r) * n + k) * wt_bytes(wt));
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) {
        vec xv = v_load(x + t * n + k, len);
        KEEP(xv);
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) acc[r][t] = v_fma(wv[r], xv, acc[r][t]);
    }
}

// Reduces an R x T tile of accumulators into y[t * ldy + r].
#define TILE_STORE(acc, y, ldy, R, T)                                                      \
    do {                                                                                   \
        _Pragma("GCC unroll 4") for (size_t t = 0; t < (T); t++) {                         \
            if ((R) == 4 || (R) == 8) {                                                    \
                store4((y) + t * (ldy), acc[0][t], acc[1][t], acc[2][t], acc[3][t]);       \
                if ((R) == 8)                                                              \
                    store4((y) + t * (ldy) + 4, acc[4][t], acc[5][t], acc[6][t], acc[7][t]); \
            } else {                                                                       \
                _Pragma("GCC unroll 4") for (size_t r = 0; r < (R); r++)                   \
                    (y)[t * (ldy) + r] = hsum(acc[r][t]);                                  \
            }                                                                              \
        }                                                                                  \
    } while (0)

// y[t * ldy + r] = W row r . X row t for r < R, t < T; rows and tokens are n apart.
INLINE void tile_f(float *y, size_t ldy, const float *x, const void *w, size_t n, size_t R,
                   size_t T, int wt) {
    vec acc[TRV][F_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[r][t] = v_zero();
    size_t k = 0;
    for (; k + VW <= n; k += VW) tile_step(acc, w, x, n, k, VW, R, T, wt);
    if (k < n) tile_step(acc, w, x, n, k, n - k, R, T, wt);
    TILE_STORE(acc, y, ldy, R, T);
}

#if SL_AVX512
// AVX-512: rows in pairs, lanes 0-7 of a zmm row r and lanes 8-15 row r + 1, against the
// token's 8 floats broadcast to both halves, so each lane runs exactly what a lane of the
// 8-lane layer runs (the same loads, zero fill and fused multiply-adds, in the same order).
#if defined(SL_SIMDE_AVX512)
#define KEEP512(v) (void)0  // SIMDe's __m512 is not a register type
#else
#define KEEP512(v) __asm__("" : "+v"(v))
#endif
static inline __m512 v_pair(__m256 a, __m256 b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
}
static inline __m256 v_lo(__m512 v) { return _mm512_castps512_ps256(v); }
static inline __m256 v_hi(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// Rows at element i and i + n, elements i .. i+len of each, widened to floats.
INLINE __m512 w_load_pair(const void *w, size_t i, size_t n, size_t len, int wt) {
    if (wt != SL_F32 && len == VW) {  // both rows' 16 halves in one conversion
        const uint16_t *h = (const uint16_t *)w + i;
        __m256i hh = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)h)),
            _mm_loadu_si128((const __m128i *)(h + n)), 1);
        if (wt == SL_BF16)
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hh), 16));
        return _mm512_cvtph_ps(hh);
    }
    return v_pair(w_load(w, i, len, wt), w_load(w, i + n, len, wt));
}

// One stretch k .. k+len of P row pairs x T tokens (tile_step's twin).
INLINE void tile_step2(__m512 acc[F_TR / 2][F_TT], const void *w, const float *x, size_t n,
                       size_t k, size_t len, size_t P, size_t T, int wt) {
    __m512 wv[F_TR / 2];
#pragma GCC unroll 4
    for (size_t p = 0; p < P; p++) {
        wv[p] = w_load_pair(w, 2 * p * n + k, n, len, wt);
        KEEP512(wv[p]);
        if (T == 1) {
            PREFETCH_L2(w, ((2 * P + 2 * p) * n + k) * wt_bytes(wt));
            PREFETCH_L2(w, ((2 * P + 2 * p + 1) * n + k) * wt_bytes(wt));
        }
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) {
        __m256 x8 = v_load(x + t * n + k, len);
        __m512 xv = v_pair(x8, x8);
        KEEP512(xv);
#pragma GCC unroll 4
        for (size_t p = 0; p < P; p++) acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
    }
}

// Reduces P pairs x T tokens of accumulators into y[t * ldy + r] by hsum8's additions.
#define PAIRS_STORE(acc, y, ldy, P, T)                                                     \
    do {                                                                                   \
        _Pragma("GCC unroll 4") for (size_t t = 0; t < (T); t++) {                         \
            size_t p = 0;                                                                  \
            for (; p + 2 <= (P); p += 2)                                                   \
                store4((y) + t * (ldy) + 2 * p, v_lo(acc[p][t]), v_hi(acc[p][t]),          \
                       v_lo(acc[p + 1][t]), v_hi(acc[p + 1][t]));                          \
            if (p < (P)) {                                                                 \
                (y)[t * (ldy) + 2 * p] = hsum8(v_lo(acc[p][t]));                           \
                (y)[t * (ldy) + 2 * p + 1] = hsum8(v_hi(acc[p][t]));                       \
            }                                                                              \
        }                                                                                  \
    } while (0)

// tile_f for R = 2 P rows.
INLINE void tile_f2(float *y, size_t ldy, const float *x, const void *w, size_t n, size_t P,
                    size_t T, int wt) {
    __m512 acc[F_TR / 2][F_TT];
#pragma GCC unroll 4
    for (size_t p = 0; p < P; p++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[p][t] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + VW <= n; k += VW) tile_step2(acc, w, x, n, k, VW, P, T, wt);
    if (k < n) tile_step2(acc, w, x, n, k, n - k, P, T, wt);
    PAIRS_STORE(acc, y, ldy, P, T);
}
#endif

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
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t t = 0; t < T; t++) {
        size_t at = (t0 + t) * in->groups + g;
        __m256i xv = _mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP));
        __m256 xs = _mm256_loadu_ps(in->qscale + at * 8);
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv[r], wv[r]),
                                             _mm256_sign_epi8(xv, wv[r]));
            __m256i d = _mm256_madd_epi16(p, ones);
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
#define Q8_TT I8_TT
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
                if (T == 1) {
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
    else tile_q8_lanes(y, ldy, in, t0, w, r0, R, T);
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
INLINE void sdot_group_tokens(vec acc[][Q8_TT], const int8x16_t wv[][2], const float *ws,
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
    vec acc[Q8_TRV][Q8_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = v_zero();
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
            y[t * ldy + r] = hsum(v_load(acc, VW));
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
#define Q40_TT I8_TT
INLINE void tile_q40(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                     size_t r0, size_t R, size_t T) {
    const size_t G = w->cols / 32;
    const uint8_t *wb = (const uint8_t *)w->data + r0 * G * 18;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc[Q40_TR][Q40_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (size_t g = 0; g < G; g++) {
        __m256i wv[Q40_TR];
        __m256 wsv[Q40_TR];
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) {  // weights 0-15: low nibbles, 16-31: high nibbles
            const uint8_t *bp = wb + (r * G + g) * 18;
            __m128i q = _mm_loadu_si128((const __m128i *)(bp + 2));
            __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low4);
            wv[r] = _mm256_sub_epi8(nib, eight);
            wsv[r] = _mm256_set1_ps(ggml_f16(bp));
        }
        i8_group_tokens(acc, wv, wsv, in, t0, g, R, T);
    }
    TILE_STORE(acc, y, ldy, R, T);  // hsum8's additions, whatever the tile
}
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
    vec acc[Q40_TR][Q40_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
        for (size_t t = 0; t < T; t++) acc[r][t] = v_zero();
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
            y[t * ldy + r] = hsum(v_load(acc, VW));
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
static inline int g32_type(int wt) {
    return wt == SL_Q5_0 || wt == SL_IQ4_NL || wt == SL_Q4_1 || wt == SL_Q5_1;
}
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
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 xs[G32_TT];
    for (size_t t = 0; t < T; t++) xs[t] = _mm256_loadu_ps(in->qscale + ((t0 + t) * in->groups + g) * 8);
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++) {
        const uint8_t *bp = wb + (r * G + g) * bb;
        const __m256i wv = g32_levels(bp, wt);
        if (T == 1) PREFETCH_L2(bp, G32_PF_TILES * R * G * bb);  // the same blocks, tiles ahead
        const __m256 ws = _mm256_set1_ps(ggml_f16(bp));
        const float wm = has_min ? ggml_f16(bp + 2) : 0.0f;
        for (size_t t = 0; t < T; t++) {
            const size_t at = (t0 + t) * in->groups + g;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(in->q + at * Q8_GROUP));
            __m256i p = has_min ? _mm256_maddubs_epi16(wv, xv)
                                : _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            __m256 d = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
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
            y[t * ldy + r] = hsum(v_load(acc, VW)) + accm;
        }
}
#endif

// ----------------------------------------------------------------------------
// the shared structure: tiles -> panels -> row blocks -> threads

// Tokens t .. t+T of rows r .. r+R (R, T, wt constant after inlining).
INLINE void tile(float *y, size_t ldy, const MatIn *in, size_t t, const Tensor *w, size_t r,
                 size_t R, size_t T, int wt) {
    if (wt == SL_Q8_0) {
        tile_q8(y + t * ldy + r, ldy, in, t, w, r, R, T);
    } else if (wt == SL_Q4_0) {
        tile_q40(y + t * ldy + r, ldy, in, t, w, r, R, T);
    } else if (g32_type(wt)) {
        tile_g32(y + t * ldy + r, ldy, in, t, w, r, R, T, wt);
    } else {
        const void *wr = (const uint8_t *)w->data + r * w->cols * wt_bytes(wt);
#if SL_AVX512
        if (R % 2 == 0) {
            tile_f2(y + t * ldy + r, ldy, in->x + t * in->n, wr, in->n, R / 2, T, wt);
            return;
        }
#endif
        tile_f(y + t * ldy + r, ldy, in->x + t * in->n, wr, in->n, R, T, wt);
    }
}

// Rows r .. r+R of W against tokens t0 .. t1, TTw tokens at a time.
INLINE void panel(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t r, size_t R,
                  size_t t0, size_t t1, int wt) {
    const size_t TTw = wt == SL_Q8_0 ? Q8_TT : wt == SL_Q4_0 ? Q40_TT : g32_type(wt) ? G32_TT : F_TT;
    size_t t = t0;
    for (; t + TTw <= t1; t += TTw) tile(y, ldy, in, t, w, r, R, TTw, wt);
    for (; t < t1; t++) tile(y, ldy, in, t, w, r, R, 1, wt);
}

// Tokens per cache block: every W panel of a thread reuses this block of X from L2.
// Sized to ~512 KB of X (half of this CPU's L2): 64 tokens at n = 2048, 168 at n = 768.
#define X_BLOCK_FLOATS (128 * 1024)

// Y[t][r] for rows rb .. re of W and all m tokens; Y rows are ldy apart.
INLINE void rows_block(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t rb,
                       size_t re, int wt) {
    const size_t Rw = wt == SL_Q8_0 ? Q8_TR : wt == SL_Q4_0 ? Q40_TR : g32_type(wt) ? G32_TR : F_TR;
    const size_t RVw = wt == SL_Q8_0 ? Q8_TRV : wt == SL_Q4_0 ? Q40_TR : g32_type(wt) ? G32_TR : F_TRV;
    size_t tb = X_BLOCK_FLOATS / (in->n ? in->n : 1) / F_TT * F_TT;
    if (tb < F_TT) tb = F_TT;
    for (size_t t0 = 0; t0 < in->m; t0 += tb) {
        size_t t1 = in->m - t0 < tb ? in->m : t0 + tb;
        size_t r = rb;
        if (in->m == 1)  // a matvec: its own tile height (RVw), the same per-element arithmetic
            for (; r + RVw <= re; r += RVw) panel(y, ldy, in, w, r, RVw, t0, t1, wt);
        for (; r + Rw <= re; r += Rw) panel(y, ldy, in, w, r, Rw, t0, t1, wt);
        for (; r < re; r++) panel(y, ldy, in, w, r, 1, t0, t1, wt);
    }
}

// One compiled copy per type.
static void rows_f32(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_F32);
}
static void rows_f16(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_F16);
}
static void rows_bf16(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_BF16);
}
static void rows_q8(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_Q8_0);
}
static void rows_q40(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_Q4_0);
}
static void rows_q50(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_Q5_0);
}
static void rows_iq4nl(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_IQ4_NL);
}
static void rows_q41(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_Q4_1);
}
static void rows_q51(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_block(y, ldy, in, w, b, e, SL_Q5_1);
}

// ----------------------------------------------------------------------------
// ggml's K types

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
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
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
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
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
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
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
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
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
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scv));
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
static inline __attribute__((always_inline)) void rows_kq(float *y, size_t ldy, const MatIn *in,
                                                          const Tensor *w, size_t b, size_t e,
                                                          int type) {
    size_t be = 0, bb = 0;
    ggml_block_info(dtype_ggml(type), &be, &bb);
    const size_t nb = w->cols / 256;
    for (size_t r = b; r < e; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * nb * bb;
        for (size_t t0 = 0; t0 < in->m;) {
            size_t T = in->m - t0 >= KQ_TOKENS ? KQ_TOKENS : 1;
            if (T == KQ_TOKENS) kq_tokens(y, ldy, in, row, nb, r, t0, KQ_TOKENS, type);
            else kq_tokens(y, ldy, in, row, nb, r, t0, 1, type);
            t0 += T;
        }
    }
}

static void rows_q4k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q4_K);
}
static void rows_q5k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q5_K);
}
static void rows_q6k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q6_K);
}
static void rows_q2k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q2_K);
}
static void rows_q3k(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    rows_kq(y, ldy, in, w, b, e, SL_Q3_K);
}
static void rows_iq4xs(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
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

typedef void (*RowsFn)(float *, size_t, const MatIn *, const Tensor *, size_t, size_t);

static RowsFn rows_fn(int type) {
    switch (type) {
    case SL_F32: return rows_f32;
    case SL_F16: return rows_f16;
    case SL_BF16: return rows_bf16;
    case SL_Q8_0: return rows_q8;
    case SL_Q4_0: return rows_q40;
    case SL_Q5_0: return rows_q50;
    case SL_IQ4_NL: return rows_iq4nl;
    case SL_Q4_1: return rows_q41;
    case SL_Q5_1: return rows_q51;
#if SL_AVX2
    case SL_Q4_K: return rows_q4k;
    case SL_Q5_K: return rows_q5k;
    case SL_Q6_K: return rows_q6k;
    case SL_Q2_K: return rows_q2k;
    case SL_Q3_K: return rows_q3k;
    case SL_IQ4_XS: return rows_iq4xs;
#else
    case SL_Q4_K:
    case SL_Q5_K:
    case SL_Q6_K:
    case SL_Q2_K:
    case SL_Q3_K:
    case SL_IQ4_XS: return rows_kq_plain;
#endif
    default: return NULL;  // no other type reaches matmul (model.c validates)
    }
}

// ----------------------------------------------------------------------------
// inputs

static size_t padded_groups(size_t n) { return (q8_groups(n) + 1) / 2 * 2; }

int matmul_input_forms(int type) {
    return type == SL_Q8_0 || type == SL_Q4_0 || g32_type(type) ? MATMUL_Q8_0
           : kquant_type(type)                                  ? MATMUL_Q8_K
                                                                : 0;
}

size_t matmul_q8_bytes(size_t n, size_t m) {
    // per group: 32 quants, its scale, 8 copies of it, 8 correction lanes, its scaled sum; then room for the
    // q8k form of any n' <= n: quants, a scale per 256 and a sum per 16
    size_t k = m * (n / Q8K_BLOCK * sizeof(float) + n / 16 * sizeof(int16_t) + n);
    return m * padded_groups(n) * (Q8_GROUP + 10 * sizeof(float) + 8 * sizeof(int32_t)) + k;
}

#if SL_AVX2
// The largest of 8 lanes (exact in any order).
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// 32 floats (v[0..3]) times id, rounded to the nearest integer (ties to even, as lrintf in
// the default mode) and packed to int8 in order. The products lie within [-127, 127].
static inline __m256i quants32(const __m256 v[4], __m256 id) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id)), b = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id)), d = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
    // per 128-bit lane: a b c d lo halves, then hi halves; permute back to order
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// quant.h's q8k_quantize_block, the same operations in SIMD (tests/test_matmul.c checks the
// bits): amax = max |x|, d = amax / 127, q = round(x * (1/d)), and each 16 quants' sum.
static float q8k_block(const float *x, int8_t *q, int16_t *bsums) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    for (size_t i = 0; i < Q8K_BLOCK; i += 8)
        mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    float amax = hmax8(mx);
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    for (size_t i = 0; i < Q8K_BLOCK; i += 32) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + i + 8 * k);
        __m256i qq = quants32(v, vid);
        _mm256_storeu_si256((__m256i *)(q + i), qq);
        // 16-quant sums: pairs of bytes to int16, then pairs, then hadd within each 16
        __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qq),
                                        _mm256_set1_epi16(1));  // 8 sums of 4
        __m128i s = _mm_hadd_epi32(_mm256_castsi256_si128(s16), _mm256_extracti128_si256(s16, 1));
        s = _mm_hadd_epi32(s, s);  // sums of 16: lanes 0, 1
        bsums[i / 16] = (int16_t)_mm_cvtsi128_si32(s);
        bsums[i / 16 + 1] = (int16_t)_mm_extract_epi32(s, 1);
    }
    return d;
}
#else
static float q8k_block(const float *x, int8_t *q, int16_t *bsums) {
    return q8k_quantize_block(x, q, bsums);
}
#endif

#if SL_AVX2
// Group g's forms from its quants qq and scale d: the quants, the scale, the scale spread over
// 8 lanes, and -128 x each 4 quants' sum.
static inline void store_group(__m256i qq, float d, size_t g, int8_t *q, float *qd, float *s,
                               int32_t *c) {
    _mm256_storeu_si256((__m256i *)(q + g * Q8_GROUP), qq);
    qd[g] = d;
    _mm256_storeu_ps(s + g * 8, _mm256_set1_ps(d));
    __m256i sum4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qq),
                                     _mm256_set1_epi16(1));  // each 4 quants' sum
    _mm256_storeu_si256((__m256i *)(c + g * 8), _mm256_mullo_epi32(sum4, _mm256_set1_epi32(-128)));
}
#endif

// One row of x into q8_0 form: quants (GP groups, zero padded), each scale spread over 8
// lanes, and -128 x each 4 quants' sum. The quants and scales are bitwise those of
// quant.h's q8_quantize_row (the same operations: max |x|, d = amax / 127, round(x / d)
// to nearest even), which tests/test_matmul.c checks.
static void quantize_row(const float *x, size_t n, size_t GP, int8_t *q, float *qd, float *s,
                         int32_t *c) {
    size_t g = 0;
#if SL_AVX512
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 2 x 16 floats
        __m512 a = _mm512_loadu_ps(x + g * Q8_GROUP), b = _mm512_loadu_ps(x + g * Q8_GROUP + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b));
        float amax = hmax8(_mm256_max_ps(_mm512_castps512_ps256(m), v_hi(m)));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m128i qa = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid)));
        __m128i qb = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid)));
        __m256i qq = _mm256_inserti128_si256(_mm256_castsi128_si256(qa), qb, 1);
        store_group(qq, d, g, q, qd, s, c);
    }
#elif SL_AVX2
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 4 x 8 floats
        __m256 v[4], mx = _mm256_setzero_ps();
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + g * Q8_GROUP + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], abs_mask));
        }
        float amax = hmax8(mx);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m256i qq = quants32(v, _mm256_set1_ps(id));
        store_group(qq, d, g, q, qd, s, c);
    }
#elif SL_NEON
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 8 x 4 floats
        float32x4_t v[8], mx = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(x + g * Q8_GROUP + 4 * i);
            mx = vmaxq_f32(mx, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(mx);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int16x8_t h[4];  // round(x * id), ties to even (fcvtns, as lrintf), narrowed in order
        for (int i = 0; i < 4; i++)
            h[i] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * i], id))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * i + 1], id))));
        int8x16_t q0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
        int8x16_t q1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
        vst1q_s8(q + g * Q8_GROUP, q0), vst1q_s8(q + g * Q8_GROUP + 16, q1);
        qd[g] = d;
        vst1q_f32(s + g * 8, vdupq_n_f32(d)), vst1q_f32(s + g * 8 + 4, vdupq_n_f32(d));
        // -128 x each 4 quants' sum
        vst1q_s32(c + g * 8, vmulq_n_s32(vpaddlq_s16(vpaddlq_s8(q0)), -128));
        vst1q_s32(c + g * 8 + 4, vmulq_n_s32(vpaddlq_s16(vpaddlq_s8(q1)), -128));
    }
#endif
    for (; g < GP; g++) {  // the partial last group and the padding: plain C
        int8_t *qg = q + g * Q8_GROUP;
        float d = 0.0f;
        memset(qg, 0, Q8_GROUP);
        if (g * Q8_GROUP < n) {
            size_t len = n - g * Q8_GROUP < Q8_GROUP ? n - g * Q8_GROUP : Q8_GROUP;
            q8_quantize_row(x + g * Q8_GROUP, len, qg, &d);
        }
        qd[g] = d;
        for (size_t i = 0; i < 8; i++) {
            s[g * 8 + i] = d;
            c[g * 8 + i] = -128 * (qg[4 * i] + qg[4 * i + 1] + qg[4 * i + 2] + qg[4 * i + 3]);
        }
    }
}

void matmul_input(MatIn *in, const float *x, size_t n, size_t m, void *q8, int forms) {
    size_t GP = padded_groups(n);
    *in = (MatIn){.x = x, .n = n, .m = m, .groups = GP};
    if (!forms) return;
    assert(q8);
    int8_t *q = q8;
    float *qscale = (float *)(q + m * GP * Q8_GROUP);
    int32_t *qcorr = (int32_t *)(qscale + m * GP * 8);
    float *qd = (float *)(qcorr + m * GP * 8);
    float *qsum = qd + m * GP;
    if (forms & MATMUL_Q8_0) {
        in->q = q, in->qscale = qscale, in->qcorr = qcorr, in->qd = qd, in->qsum = qsum;
        for (size_t t = 0; t < m; t++) {
            quantize_row(x + t * n, n, GP, in->q + t * GP * Q8_GROUP, in->qd + t * GP,
                         in->qscale + t * GP * 8, in->qcorr + t * GP * 8);
            for (size_t g = 0; g < GP; g++) {  // d_x,g * (float)(the exact sum of its quants)
                const int8_t *qg = in->q + (t * GP + g) * Q8_GROUP;
                int32_t sum = 0;
                for (size_t i = 0; i < Q8_GROUP; i++) sum += qg[i];
                qsum[t * GP + g] = qd[t * GP + g] * (float)sum;
            }
        }
    }
    if (!(forms & MATMUL_Q8_K) || n % Q8K_BLOCK) return;
    size_t nb = n / Q8K_BLOCK;
    in->kd = qsum + m * GP;
    in->kbs = (int16_t *)(in->kd + m * nb);
    in->kq = (int8_t *)(in->kbs + m * (n / 16));
    for (size_t t = 0; t < m; t++)
        for (size_t b = 0; b < nb; b++)
            in->kd[t * nb + b] = q8k_block(x + t * n + b * Q8K_BLOCK,
                                           in->kq + t * n + b * Q8K_BLOCK,
                                           in->kbs + t * (n / 16) + b * 16);
}

// ----------------------------------------------------------------------------
// threads

const char *matmul_isa(void) {
#if defined(SL_EMULATED)
    return "AVX-512 VNNI, " SL_EMULATED;
#elif SL_AVX512 && SL_VNNI
    return "AVX-512 VNNI";
#elif SL_AVX512
    return "AVX-512";
#elif SL_AVX2
    return "AVX2";
#else
    return "plain C";
#endif
}

void matmul_rows(float *y, const MatIn *in, const Tensor *w, size_t row_begin, size_t row_end) {
    rows_fn(w->type)(y, 0, in, w, row_begin, row_end);
}

typedef struct {
    float *y;
    const MatIn *in;
    const Tensor *w;
    RowsFn fn;
    size_t rows;  // per chunk: a multiple of ROW_ALIGN
} Job;

// Chunks start on multiples of 16 rows: whole tiles, and a 64-byte line of y each.
#define ROW_ALIGN 16
// Chunk sizes. Threads start on equal shares of the chunks and steal at the end (pool.h), so
// small chunks cost little (one compare-and-swap on a line of the thread's own) and balance
// well: a chunk holds as few whole units of ROW_ALIGN rows as make CHUNK_MIN multiply-adds
// per token (0.5-1 us of work), and a job at most MAX_CHUNKS chunks (MAX_CHUNKS_BATCH for a
// batch of tokens, whose chunks each read all of X again).
#define CHUNK_MIN 4096
#define MAX_CHUNKS 64
#define MAX_CHUNKS_BATCH 16

// Rows per chunk for a (rows, cols) matrix and m tokens: it depends on the shape alone, never
// on the thread count, so every output is computed by the same code over the same rows for any
// thread count. units = ceil(rows / ROW_ALIGN);
// rows per chunk = ROW_ALIGN max(ceil(CHUNK_MIN / (ROW_ALIGN cols)), ceil(units / max chunks)).
static size_t chunk_rows(size_t rows, size_t cols, size_t m) {
    size_t units = pool_chunks(rows, ROW_ALIGN);
    size_t per = pool_chunks(CHUNK_MIN, ROW_ALIGN * (cols ? cols : 1));
    size_t most = pool_chunks(units, m > 1 ? MAX_CHUNKS_BATCH : MAX_CHUNKS);
    return (per > most ? per : most) * ROW_ALIGN;
}

// Chunks c0 .. c1 - 1: rows c0 rows .. min(c1 rows, all rows).
static void job_chunks(void *arg, size_t c0, size_t c1) {
    const Job *j = arg;
    size_t b, e, unused;
    pool_chunk(j->w->rows, j->rows, c0, &b, &unused);
    pool_chunk(j->w->rows, j->rows, c1 - 1, &unused, &e);
    j->fn(j->y, j->w->rows, j->in, j->w, b, e);
}

void matmul(Pool *pool, float *y, const MatIn *in, const Tensor *w) {
    assert(w->cols == in->n);
    assert(!(matmul_input_forms(w->type) & MATMUL_Q8_0) || in->q);
    assert(!(matmul_input_forms(w->type) & MATMUL_Q8_K) || in->kq);
    if (w->rows == 0 || in->m == 0) return;
    Job j = {y, in, w, rows_fn(w->type), chunk_rows(w->rows, w->cols, in->m)};
    pool_for(pool, pool_chunks(w->rows, j.rows), job_chunks, &j);
}

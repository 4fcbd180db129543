// matmul_float.c: the f32, f16 and bf16 matrix products (matmul_impl.h's float family).
//
// Contract: libc and simd.h's 8-lane layer; no allocation. f16/bf16 weights become floats in
// registers (exact), then the same fused multiply-adds as f32 weights.
//
// Order per output y = W row . x: 8 partial sums, lane l taking elements k = l (mod 8) in
// ascending order, acc_l = fma(w[k], x[k], acc_l); the last partial stretch through zero-filled
// loads (masked, never past the end); y = vhsum(acc). AVX-512 puts two rows side by side in a
// zmm (lanes 0-7 row r, 8-15 row r + 1) against the token broadcast to both halves, so each lane
// runs what an AVX2 lane runs: the same bits. The plain build rounds each product separately
// (vmuladd): within rounding of the others, a bound the tests state.
#include <stddef.h>
#include <stdint.h>

#include "kernels/matmul_impl.h"

// Tiles: F_TR rows x F_TT tokens, F_TRV rows for a matvec.
#if SL_AVX512
#define F_TR 8   // 4 row pairs ...
#define F_TT 4   // ... x 4 tokens: 16 zmm accumulators
#define F_TRV 8  // a matvec: 4 pairs
#else
#define F_TR 4
#define F_TT 2  // 8 ymm accumulators + 4 rows + 1 token fit the 16 registers
#define F_TRV 4
#endif

static inline size_t wt_bytes(int wt) { return wt == SL_F32 ? 4 : 2; }

// Elements i .. i+len (1..VW) of a weight row, as floats; zeros past len.
INLINE vf w_load(const void *w, size_t i, size_t len, int wt) {
    if (wt == SL_F32) return len == VW ? vload((const float *)w + i) : vloadn((const float *)w + i, len);
    if (len == VW) return vload_hb((const uint16_t *)w + i, wt == SL_BF16);
    return vloadn_hb((const uint16_t *)w + i, len, wt == SL_BF16);
}
INLINE vf x_load(const float *x, size_t len) { return len == VW ? vload(x) : vloadn(x, len); }

#if SL_AVX512
// ---- AVX-512: row pairs ----

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
        __m256 x8 = x_load(x + t * n + k, len);
        __m512 xv = v_pair(x8, x8);
        KEEP512(xv);
#pragma GCC unroll 4
        for (size_t p = 0; p < P; p++) acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
    }
}

// R = 2 P rows x T tokens.
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

// ---- the 8-lane tile (AVX2, NEON, plain C; an odd row on AVX-512) ----

// One stretch k .. k+len of an R x T tile. A matvec tile (T = 1) streams its rows from memory
// once: it prefetches the next tile's rows into L2, which lifts cold-weight GB/s by 15-35% (at
// a 10-25% cost when W is already in cache).
INLINE void tile_step(vf acc[F_TRV][F_TT], const void *w, const float *x, size_t n, size_t k,
                      size_t len, size_t R, size_t T, int wt) {
    vf wv[F_TRV];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++) {
        wv[r] = w_load(w, r * n + k, len, wt);
        KEEP(wv[r]);
        if (T == 1) PREFETCH_L2(w, ((R + r) * n + k) * wt_bytes(wt));
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) {
        vf xv = x_load(x + t * n + k, len);
        KEEP(xv);
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) acc[r][t] = vmuladd(wv[r], xv, acc[r][t]);
    }
}

// y[t * ldy + r] = W row r . X row t for r < R, t < T; rows and tokens are n apart.
INLINE void tile_f(float *y, size_t ldy, const float *x, const void *w, size_t n, size_t R,
                   size_t T, int wt) {
    vf acc[F_TRV][F_TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[r][t] = vzero();
    size_t k = 0;
    for (; k + VW <= n; k += VW) tile_step(acc, w, x, n, k, VW, R, T, wt);
    if (k < n) tile_step(acc, w, x, n, k, n - k, R, T, wt);
    TILE_STORE(acc, y, ldy, R, T);
}

INLINE void tile_float(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w,
                       size_t r0, size_t R, size_t T, int wt) {
    const void *wr = (const uint8_t *)w->data + r0 * w->cols * wt_bytes(wt);
    const float *x = in->x + t0 * in->n;
#if SL_AVX512
    if (R % 2 == 0) {
        tile_f2(y, ldy, x, wr, in->n, R / 2, T, wt);
        return;
    }
#endif
    tile_f(y, ldy, x, wr, in->n, R, T, wt);
}

void mm_rows_f32(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_float, F_TR, F_TRV, F_TT, y, ldy, in, w, b, e, SL_F32);
}
void mm_rows_f16(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_float, F_TR, F_TRV, F_TT, y, ldy, in, w, b, e, SL_F16);
}
void mm_rows_bf16(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e) {
    mm_rows_tiled(tile_float, F_TR, F_TRV, F_TT, y, ldy, in, w, b, e, SL_BF16);
}

// matmul_impl.h: what the matmul families share, private to kernels/matmul*.c.
//
// Contract: header only. matmul.c prepares inputs, splits a product into chunks of rows for
// the pool and calls a family's rows function on each chunk; the families are
//   matmul_float.c   f32, f16, bf16         (floats in registers, FMAs)
//   matmul_int8.c    q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl: blocks of 32 against the
//                    activations' q8_0 form, exact integer dot products per group
//   matmul_kquant.c  q2_k .. q6_k, iq4_xs: blocks of 256 against the q8_k form
// Each family file has its instruction-set sections in one order: AVX-512, AVX2, NEON, plain
// C; kernels.c holds the plain reference twin of every kernel, which the tests compare them to.
//
// The structure every tiled family shares: a chunk of rows walks blocks of tokens (X reused
// from L2), each block walks panels of R rows, each panel tiles of R rows x T tokens whose
// accumulators live in registers. Only the tile depends on the type.
#ifndef SEARCHLIGHT_MATMUL_IMPL_H
#define SEARCHLIGHT_MATMUL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/matmul.h"
#include "kernels/simd.h"

// y[t * ldy + r] = W row r . X row t for rows b .. e of W and all in->m tokens.
typedef void RowsFn(float *y, size_t ldy, const MatIn *in, const Tensor *w, size_t b, size_t e);

RowsFn mm_rows_f32, mm_rows_f16, mm_rows_bf16;                          // matmul_float.c
RowsFn mm_rows_q8_0, mm_rows_q4_0, mm_rows_q4_1, mm_rows_q5_0,          // matmul_int8.c
    mm_rows_q5_1, mm_rows_iq4_nl;
RowsFn mm_rows_q2_k, mm_rows_q3_k, mm_rows_q4_k, mm_rows_q5_k,          // matmul_kquant.c
    mm_rows_q6_k, mm_rows_iq4_xs;

// A tile: y (already at token t0, row r0) [t * ldy + r] = W row r0 + r . X row t0 + t, for
// r < R, t < T (R, T, wt constant after inlining).
typedef void TileFn(float *y, size_t ldy, const MatIn *in, size_t t0, const Tensor *w, size_t r0,
                    size_t R, size_t T, int wt);

// Reduces an R x T tile of 8-lane accumulators into y[t * ldy + r], each by vhsum's additions.
#define TILE_STORE(acc, y, ldy, R, T)                                                      \
    do {                                                                                   \
        _Pragma("GCC unroll 4") for (size_t t = 0; t < (T); t++) {                         \
            if ((R) == 4 || (R) == 8) {                                                    \
                vhsum4((y) + t * (ldy), acc[0][t], acc[1][t], acc[2][t], acc[3][t]);       \
                if ((R) == 8)                                                              \
                    vhsum4((y) + t * (ldy) + 4, acc[4][t], acc[5][t], acc[6][t], acc[7][t]); \
            } else {                                                                       \
                _Pragma("GCC unroll 4") for (size_t r = 0; r < (R); r++)                   \
                    (y)[t * (ldy) + r] = vhsum(acc[r][t]);                                 \
            }                                                                              \
        }                                                                                  \
    } while (0)

#if SL_AVX512
// Reduces P row pairs (zmm: lanes 0-7 row 2p, 8-15 row 2p + 1) x T tokens into y[t * ldy + r]
// by vhsum's additions.
#define PAIRS_STORE(acc, y, ldy, P, T)                                                     \
    do {                                                                                   \
        _Pragma("GCC unroll 4") for (size_t t = 0; t < (T); t++) {                         \
            size_t p = 0;                                                                  \
            for (; p + 2 <= (P); p += 2)                                                   \
                vhsum4((y) + t * (ldy) + 2 * p, v_lo(acc[p][t]), v_hi(acc[p][t]),          \
                       v_lo(acc[p + 1][t]), v_hi(acc[p + 1][t]));                          \
            if (p < (P)) {                                                                 \
                (y)[t * (ldy) + 2 * p] = vhsum(v_lo(acc[p][t]));                           \
                (y)[t * (ldy) + 2 * p + 1] = vhsum(v_hi(acc[p][t]));                       \
            }                                                                              \
        }                                                                                  \
    } while (0)
#endif

// Tokens per cache block: every W panel of a thread reuses this block of X from L2.
// Sized to ~512 KB of X (half of a typical L2): 64 tokens at n = 2048, 168 at n = 768.
#define X_BLOCK_FLOATS (128 * 1024)

// Rows r .. r+R of W against tokens t0 .. t1, TT tokens at a time.
INLINE void mm_panel(TileFn *tile, size_t TT, float *y, size_t ldy, const MatIn *in,
                     const Tensor *w, size_t r, size_t R, size_t t0, size_t t1, int wt) {
    size_t t = t0;
    for (; t + TT <= t1; t += TT) tile(y + t * ldy + r, ldy, in, t, w, r, R, TT, wt);
    for (; t < t1; t++) tile(y + t * ldy + r, ldy, in, t, w, r, R, 1, wt);
}

// Y[t][r] for rows rb .. re of W and all m tokens, in tiles of TR rows x TT tokens (TRV rows
// for a matvec: the same per-element arithmetic, only the grouping differs).
INLINE void mm_rows_tiled(TileFn *tile, size_t TR, size_t TRV, size_t TT, float *y, size_t ldy,
                          const MatIn *in, const Tensor *w, size_t rb, size_t re, int wt) {
    size_t tb = X_BLOCK_FLOATS / (in->n ? in->n : 1) / TT * TT;
    if (tb < TT) tb = TT;
    for (size_t t0 = 0; t0 < in->m; t0 += tb) {
        size_t t1 = in->m - t0 < tb ? in->m : t0 + tb;
        size_t r = rb;
        if (in->m == 1)
            for (; r + TRV <= re; r += TRV) mm_panel(tile, TT, y, ldy, in, w, r, TRV, t0, t1, wt);
        for (; r + TR <= re; r += TR) mm_panel(tile, TT, y, ldy, in, w, r, TR, t0, t1, wt);
        for (; r < re; r++) mm_panel(tile, TT, y, ldy, in, w, r, 1, t0, t1, wt);
    }
}

#endif

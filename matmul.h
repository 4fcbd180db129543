// matmul.h: the fast fp32 matrix products of the forward pass.
//
// Contract: libc and pthreads (through pool.h); SIMD through <immintrin.h>, chosen at
// compile time (AVX-512F, else AVX2+FMA, else plain C); no OpenMP, no BLAS, no allocation.
// Inputs and outputs must not overlap. kernels.h's matmul is the algorithmic reference;
// these kernels sum in a different order, so results differ from it by rounding only.
//
// Determinism: within one build, every output element is computed by one fixed sequence
// of float operations, so it is bitwise the same whatever the thread count, however the
// rows and tokens were grouped into tiles, and whether it came from matmul_f32 or from
// matmul_f32_batch (row i of a batch equals the matvec of token i).
#ifndef SEARCHLIGHT_MATMUL_H
#define SEARCHLIGHT_MATMUL_H

#include <stddef.h>

#include "pool.h"

// y (d) = W (d, n) @ x (n); W row-major, rows split across the pool's threads in
// contiguous blocks. pool may be NULL (runs on the calling thread).
void matmul_f32(Pool *pool, float *y, const float *x, const float *w, size_t n, size_t d);

// Y (m, d) = X (m, n) @ W (d, n)^T: m input rows (the tokens of a prompt) at once, for
// prefill. Row i of Y is the matvec of row i of X. Tiled for registers and cache,
// threaded over rows of W. pool may be NULL.
void matmul_f32_batch(Pool *pool, float *y, const float *x, const float *w, size_t n, size_t d,
                      size_t m);

// Single-threaded building block, exposed for tests: y[i] = W row i . x for
// row_begin <= i < row_end; the rest of y is left untouched.
void matmul_f32_rows(float *y, const float *x, const float *w, size_t n, size_t row_begin,
                     size_t row_end);

#endif

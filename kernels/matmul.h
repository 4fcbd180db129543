// matmul.h: the fast matrix products of the forward pass, for every weight type.
//
// Contract: libc and pthreads (through pool.h); SIMD chosen at compile time through
// simd.h (AVX-512, with VNNI for the block types; else AVX2+FMA, with AVX-VNNI where the CPU
// has it; else NEON; else plain C); no OpenMP, no BLAS, no allocation. Inputs and outputs must
// not overlap. The kernels live by family: matmul_impl.h.
// kernels.h's matvec and matvec_tensor are the algorithmic reference; these kernels sum in a
// different order, so results differ from them by rounding only.
//
// Weights are used where they lie (the read-only mapping): f16 and bf16 are converted to
// f32 in registers; q8_0 weights meet activations quantized to q8_0 at run time (per group
// of 32, one f32 scale each), in exact integer dot products scaled per group.
//
// Determinism: every output element is computed by one fixed sequence of operations, so it
// is bitwise the same whatever the thread count, however rows and tokens were grouped into
// tiles, and whether it came from a matvec (m = 1) or a batch (row i of a batch equals the
// matvec of token i). The sequence is the same on AVX-512 and AVX2 machines for every type,
// and in plain C for the block types (matmul.c says how); plain f32/f16/bf16 round each
// product separately, so they differ from the FMA builds by rounding only.
#ifndef SEARCHLIGHT_MATMUL_H
#define SEARCHLIGHT_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/types.h"
#include "base/pool.h"

// The input of matmuls: m rows of n floats and, for q8_0 weights, their quantized form.
// Prepared once by matmul_input, then read (never written) by any number of matmuls.
typedef struct {
    const float *x;  // (m, n)
    size_t n, m;
    size_t groups;   // q8_0 groups per row, padded to an even count (zeros)
    int8_t *q;       // (m, groups, 32) quants, or NULL when not prepared for q8_0
    float *qd;       // (m, groups) each group's scale
    float *qsum;     // (m, groups) each group's scale times the sum of its quants (q4_1, q5_1)
    float *qscale;   // (m, groups, 8) the same, each repeated for 8 SIMD lanes
    int32_t *qcorr;  // (m, groups, 8) -128 x the sum of each 4 quants (VNNI's u8 offset)
    // for the K-pattern types (n a multiple of 256): quant.h's q8k form, or NULL
    int8_t *kq;      // (m, n) quants
    float *kd;       // (m, n / 256) each block's scale
    int16_t *kbs;    // (m, n / 16) each 16 quants' sum
} MatIn;

// The quantized forms of its input that a weight of this type reads: MATMUL_Q8_0 (q8_0 and the
// 32-weight block types q4_0, q4_1, q5_0, q5_1, iq4_nl), MATMUL_Q8_K (kernels.h's kquant_type:
// q2_k .. q6_k and iq4_xs, which quantize activations per block of 256 as ggml does), or 0.
#define MATMUL_Q8_0 1
#define MATMUL_Q8_K 2
int matmul_input_forms(int type);

// Scratch bytes for the q8_0 form of m rows of n floats.
size_t matmul_q8_bytes(size_t n, size_t m);

// Describes x (m, n) as a matmul input, quantized into the forms asked for (the OR of
// matmul_input_forms of the weights it meets; 0: none) in q8: matmul_q8_bytes(n, m) bytes,
// or NULL when forms is 0.
void matmul_input(MatIn *in, const float *x, size_t n, size_t m, void *q8, int forms);

// Y (m, d) = X (m, n) @ W (d, n)^T for a weight matrix of any type (w->cols == n,
// d = w->rows): row i of Y is the matvec of row i of X. Threaded over rows of W, tiled
// for registers and cache. pool may be NULL (runs on the calling thread).
void matmul(Pool *pool, float *y, const MatIn *in, const Tensor *w);

// The instruction set the kernels were compiled for, e.g. "AVX2", "AVX-512 VNNI", "plain C",
// or "AVX-512 VNNI, emulated by SIMDe" (a test build: slow). --bench prints it.
const char *matmul_isa(void);

// Single-threaded building block, exposed for tests: for a one-row input, y[i] = W row i
// . x for row_begin <= i < row_end; the rest of y is left untouched.
void matmul_rows(float *y, const MatIn *in, const Tensor *w, size_t row_begin, size_t row_end);

#endif

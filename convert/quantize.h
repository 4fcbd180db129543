// quantize.h: f32 rows to ggml's block types, byte for byte what llama.cpp's llama-quantize
// writes without an importance matrix (ggml_quantize_chunk with no imatrix: ggml's reference
// quantizers quantize_row_*_ref, and for IQ4_NL and IQ4_XS quantize_iq4_nl / quantize_iq4_xs).
//
// Contract: libc and libm only; no allocation, no global state. Blocks are laid out as
// kernels/blocks.h describes them (and ggml_dequantize reads them back). The bytes equal
// ggml's for every finite input, as tests/test_quantize.c checks against llama.cpp itself
// (tests/fixtures/quantize.bin): the f32 operations are ggml's, in ggml's order, with no
// contraction into fused multiply-adds (ggml-base, where llama-quantize's quantizers live, is
// built for plain x86-64, which has none).
#ifndef SEARCHLIGHT_QUANTIZE_H
#define SEARCHLIGHT_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

// Quantizes n_rows rows of n_cols f32 values (row-major) to ggml blocks of type `type`
// (GGML_TYPE_Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL or IQ4_XS from
// kernels/blocks.h),
// written row after row into out (n_rows * n_cols / E blocks, E the block's weights).
// n_cols must be a multiple of E; values must be finite (the caller checks). Returns 0, or -1
// for a type it does not make or n_cols not a multiple of E (then out is untouched).
int quantize_blocks(uint32_t type, const float *x, size_t n_rows, size_t n_cols, void *out);

#endif

// quant.h: the number formats of weights and caches: f16, bf16 and q8_0, with plain
// scalar conversions that every faster path is tested against.
//
// Contract: libc and libm only; no SIMD, no allocation, no global state. Conversions round
// to nearest, ties to even, as the hardware does (F16C's vcvtps2ph with rounding mode 0,
// AVX512-BF16's vcvtneps2bf16); NaN stays NaN, infinities stay infinite.
//
// q8_0: a row of n values is cut into groups of Q8_GROUP along the row; the last group is
// padded with zeros. Each group g holds int8 q[32] and one scale d_g, with
//   d_g = max_i |x_i| / 127,  q_i = round(x_i / d_g) in [-127, 127],  x_i ~ d_g * q_i.
// Weights keep d_g as f16 (as ggml's Q8_0 does); activations, quantized at run time, keep
// it as f32.
#ifndef SEARCHLIGHT_QUANT_H
#define SEARCHLIGHT_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define Q8_GROUP 32

// The bits of a float and back, through memcpy (well defined in C11, unlike a union pun).
static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

// Groups in a row of n values: ceil(n / Q8_GROUP).
static inline size_t q8_groups(size_t n) { return (n + Q8_GROUP - 1) / Q8_GROUP; }

// Quantizes x (n) into q (q8_groups(n) * Q8_GROUP, zero padded) and scale (q8_groups(n)).
void q8_quantize_row(const float *x, size_t n, int8_t *q, float *scale);
// The same with f16 scales: how weights are stored. The quants use the unrounded scale.
void q8_quantize_row_f16(const float *x, size_t n, int8_t *q, uint16_t *scale);

// The activations of q4_k, q5_k and q6_k weights, as ggml's Q8_K: a block of Q8K_BLOCK values
// quantized with one scale d = max|x| / 127 to q = round(x / d) (x * (1/d), ties to even),
// and bsums[k] = the sum of quants 16 k .. 16 k + 15. Returns d.
#define Q8K_BLOCK 256
float q8k_quantize_block(const float *x, int8_t *q, int16_t *bsums);

#endif

// blocks.h: ggml's quantized block types, as GGUF files store them, and their dequantization.
//
// Contract: libc only. Each type packs a run of `elems` consecutive weights of a row into
// `bytes` bytes; a row holds whole blocks. The layouts are ggml's, bit for bit (ggml-common.h),
// and dequantization computes, operation for operation in f32, what the gguf package's numpy
// reference (gguf.quants.dequantize) computes, so the two agree bit for bit:
//
//   Q4_0 (32 in 18 B): f16 d, 16 B of nibbles       x = d * (q - 8)
//   Q4_1 (32 in 20 B): f16 d, f16 m, 16 B nibbles    x = d * q + m
//   Q5_0 (32 in 22 B): f16 d, u32 high bits, nibbles x = d * (q - 16)          q = nibble | bit << 4
//   Q5_1 (32 in 24 B): f16 d, f16 m, u32, nibbles    x = d * q + m
//   Q8_0 (32 in 34 B): f16 d, 32 int8                x = q * d
//   Q2_K (256 in 84 B): 16 (4-bit scale, 4-bit min), 2-bit q, f16 d, f16 dmin
//                        x = (d * sc) * q - (dmin * mn)            per 16 weights
//   Q3_K (256 in 110 B): high-bit mask, 2-bit q, 16 6-bit scales, f16 d
//                        x = (d * (sc - 32)) * (q - 4 * !hbit)     per 16 weights
//   Q4_K (256 in 144 B): f16 d, f16 dmin, 8 6-bit (scale, min) pairs, 4-bit q
//                        x = (d * sc) * q - (dmin * mn)            per 32 weights
//   Q5_K (256 in 176 B): as Q4_K plus a high-bit plane               q = nibble | bit << 4
//   Q6_K (256 in 210 B): 4-bit low q, 2-bit high q, 16 int8 scales, f16 d
//                        x = (d * sc) * (q - 32)                   per 16 weights
//   IQ4_NL (32 in 18 B): f16 d, 16 B of nibbles (as Q4_0)  x = d * kvalues[q]
//   IQ4_XS (256 in 136 B): f16 d, u16 scales_h, u8 scales_l[4], 128 B of nibbles
//                        x = (d * (ls - 32)) * kvalues[q]          per 32 weights
//                        ls = 4 bits of scales_l | 2 bits of scales_h << 4
// kvalues (IQ4's non-linear levels): ggml_iq4_kvalues below.
// The plain reference of every kernel that computes with these types dequantizes this way.
#ifndef SEARCHLIGHT_BLOCKS_H
#define SEARCHLIGHT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/quant.h"
#if defined(__F16C__)
#include <immintrin.h>
#endif

// ggml type ids (GGUF tensor infos).
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13, GGML_TYPE_Q6_K = 14,
    GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ4_XS = 23, GGML_TYPE_BF16 = 30,
};

// IQ4_NL's and IQ4_XS's 16 levels, indexed by a weight's nibble.
extern const int8_t ggml_iq4_kvalues[16];

// Is type one of the block types above (Q4_0 .. Q6_K, IQ4_NL, IQ4_XS)? If so, sets its weights
// per block and bytes per block (the type table's, kernels/types.h).
int ggml_block_info(uint32_t type, size_t *elems, size_t *bytes);

// The f16 (a block's d, dmin) at p, unaligned, as f32: exact either way.
static inline float ggml_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return fp16_to_f32(h);
#endif
}

// Q4_K and Q5_K: the 6-bit scale and min of sub-block j (0..7) from a block's 12 packed
// scale bytes.
static inline void ggml_scale_min_k4(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63, *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// IQ4_XS: the 6-bit scale of sub-block j (0..7), before its - 32, from a block at b.
static inline int ggml_iq4xs_scale(const uint8_t *b, int j) {
    uint16_t h;
    memcpy(&h, b + 2, 2);
    return ((b[4 + j / 2] >> (4 * (j % 2))) & 0x0F) | ((h >> (2 * j)) & 3) << 4;
}

// The 32-weight types with integer levels (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): the block at b's
// 32 levels as int8 (Q4_0 q - 8, Q5_0 q - 16, IQ4_NL kvalues[q], Q4_1 and Q5_1 q itself, whose
// block adds its min m), so that x_i = d * q_i (+ m). Returns whether the type has a min.
static inline int ggml_levels32(uint32_t type, const uint8_t *b, int8_t q[32]) {
    const int has_min = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1;
    const int five = type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh = 0;
    if (five) memcpy(&qh, p, 4), p += 4;
    for (int j = 0; j < 32; j++) {
        int v = (j < 16 ? p[j] & 0x0F : p[j - 16] >> 4);
        if (type == GGML_TYPE_IQ4_NL) v = ggml_iq4_kvalues[v];
        else v = (v | (five ? (int)((qh >> j) & 1) << 4 : 0)) - (has_min ? 0 : five ? 16 : 8);
        q[j] = (int8_t)v;
    }
    return has_min;
}

// Dequantizes n_blocks consecutive blocks of a block type into out (n_blocks * elems floats).
void ggml_dequantize(uint32_t type, const uint8_t *src, size_t n_blocks, float *out);

// The same for one type each: n weights (whole blocks) at src into out. The type table's
// to_float (kernels/types.h), through which ggml_dequantize goes.
void ggml_dequantize_q4_0(const void *src, float *out, size_t n);
void ggml_dequantize_q4_1(const void *src, float *out, size_t n);
void ggml_dequantize_q5_0(const void *src, float *out, size_t n);
void ggml_dequantize_q5_1(const void *src, float *out, size_t n);
void ggml_dequantize_q8_0(const void *src, float *out, size_t n);
void ggml_dequantize_q2_k(const void *src, float *out, size_t n);
void ggml_dequantize_q3_k(const void *src, float *out, size_t n);
void ggml_dequantize_q4_k(const void *src, float *out, size_t n);
void ggml_dequantize_q5_k(const void *src, float *out, size_t n);
void ggml_dequantize_q6_k(const void *src, float *out, size_t n);
void ggml_dequantize_iq4_nl(const void *src, float *out, size_t n);
void ggml_dequantize_iq4_xs(const void *src, float *out, size_t n);

#endif

// quant.c: scalar f16/bf16 conversions and the q8_0 quantizer (see quant.h).
//
// Contract: libc and libm only. Bit manipulation through memcpy (no type punning through
// unions or pointer casts), so it is well defined C11.
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

// f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));  // inf, NaN
    if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in f32
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);  // NaN, quiet
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
    if (a < 0x38800000u) {  // below 2^-14: an f16 subnormal, or zero
        // value = a_float; in units of 2^-24, rounded to nearest even by the FPU
        float v = f32_from_bits(a) * 0x1p24f;
        return sign | (uint16_t)lrintf(v);  // 0 .. 1024 (1024 is the smallest normal)
    }
    // normal: drop 13 mantissa bits, round to nearest, ties to even (may carry into exp)
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return sign | (uint16_t)((r - (112u << 23)) >> 13);
}

// bf16: the top 16 bits of an f32.
float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // NaN, quiet
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even; overflow gives infinity
    return (uint16_t)(u >> 16);
}

// One group: returns d = amax / 127 and writes round(x / d) (x * (1/d), as ggml does).
static float quantize_group(const float *x, size_t n, int8_t *q) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (size_t i = 0; i < Q8_GROUP; i++) q[i] = i < n ? (int8_t)lrintf(x[i] * id) : 0;
    return d;
}

void q8_quantize_row(const float *x, size_t n, int8_t *q, float *scale) {
    for (size_t g = 0; g * Q8_GROUP < n; g++) {
        size_t len = n - g * Q8_GROUP < Q8_GROUP ? n - g * Q8_GROUP : Q8_GROUP;
        scale[g] = quantize_group(x + g * Q8_GROUP, len, q + g * Q8_GROUP);
    }
}

void q8_quantize_row_f16(const float *x, size_t n, int8_t *q, uint16_t *scale) {
    for (size_t g = 0; g * Q8_GROUP < n; g++) {
        size_t len = n - g * Q8_GROUP < Q8_GROUP ? n - g * Q8_GROUP : Q8_GROUP;
        scale[g] = f32_to_fp16(quantize_group(x + g * Q8_GROUP, len, q + g * Q8_GROUP));
    }
}

float q8k_quantize_block(const float *x, int8_t *q, int16_t *bsums) {
    float amax = 0.0f;
    for (size_t i = 0; i < Q8K_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (size_t i = 0; i < Q8K_BLOCK; i++) q[i] = (int8_t)lrintf(x[i] * id);
    for (size_t k = 0; k < Q8K_BLOCK / 16; k++) {
        int s = 0;
        for (size_t i = 0; i < 16; i++) s += q[16 * k + i];
        bsums[k] = (int16_t)s;
    }
    return d;
}

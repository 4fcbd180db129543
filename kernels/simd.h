// simd.h: which instruction set the fast kernels are compiled for, and the one fused
// multiply-add that every build shares.
//
// Contract: header only; libc. The kernels (matmul.c, attention.c) test these macros, never
// the compiler's __AVX512F__ and friends, so that one switch changes every kernel:
//   SL_AVX512   AVX-512 F, BW, VL and DQ: the 512-bit paths
//   SL_VNNI     AVX512-VNNI as well (vpdpbusd: q8_0's integer dot products)
//   SL_AVX2     AVX2 and FMA (true on every AVX-512 machine too); F16C where __F16C__
//   SL_NEON     aarch64 with NEON; SL_SDOT with its dot product (armv8.2-a+dotprod)
// -DSL_SIMDE_AVX512 compiles the AVX-512 paths on a machine without AVX-512, through SIMDe
// (Debian's libsimde-dev), so that their twin tests run on any x86 host (make test-isa); such
// a binary names itself so (matmul_isa, which --bench prints). SIMDe 0.7.4 lacks a few
// AVX-512 intrinsics: the kernels avoid the _mm512_reduce_* family and the bf16 conversions,
// and the conversions below get portable forms in the emulated build only.
//
// Determinism across machines: the AVX-512, AVX2 and NEON builds give the same bits for every
// weight type and for attention, and the plain build does for the block types (q8_0 and every
// ggml block type) and attention, because each kernel follows one order of operations whatever
// the vector width: 8 partial sums per output, combined by one fixed tree (see matmul.c), with
// fused multiply-adds. The plain build gets its fused multiply-add from fma32 below, exactly
// rounded without an FMA unit (its f32/f16/bf16 matmuls round each product instead).
#ifndef SEARCHLIGHT_SIMD_H
#define SEARCHLIGHT_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(SL_SIMDE_AVX512)
#if !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "SL_SIMDE_AVX512 emulates AVX-512 on top of native AVX2, FMA and F16C"
#endif
#include <immintrin.h>  // first: the compat macros below must not rename its declarations
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define SL_AVX512 1
#define SL_VNNI 1
#define SL_EMULATED "emulated by SIMDe"
// What SIMDe 0.7.4 lacks, lane for lane from two native AVX2 halves.
static inline __m256 sl_lo_f(__m512 v) { return _mm512_castps512_ps256(v); }
static inline __m256 sl_hi_f(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
static inline __m512 sl_pair_f(__m256 a, __m256 b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
}
static inline __m512i sl_pair_i(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
static inline __m512 sl_cvtepi32_ps(__m512i v) {
    return sl_pair_f(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v)),
                     _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1)));
}
static inline __m512i sl_cvtps_epi32(__m512 v) {
    return sl_pair_i(_mm256_cvtps_epi32(sl_lo_f(v)), _mm256_cvtps_epi32(sl_hi_f(v)));
}
static inline __m512 sl_cvtph_ps(__m256i h) {
    return sl_pair_f(_mm256_cvtph_ps(_mm256_castsi256_si128(h)),
                     _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
static inline __m512i sl_cvtepu16_epi32(__m256i h) {
    return sl_pair_i(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)),
                     _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)));
}
static inline __m128i sl_cvtepi32_epi8(__m512i v) {  // truncation to the low bytes
    int32_t a[16];
    int8_t b[16];
    _mm512_storeu_si512(a, v);
    for (int i = 0; i < 16; i++) b[i] = (int8_t)a[i];
    return _mm_loadu_si128((const __m128i *)b);
}
#define _mm512_cvtepi32_ps sl_cvtepi32_ps
#define _mm512_cvtps_epi32 sl_cvtps_epi32
#define _mm512_cvtph_ps sl_cvtph_ps
#define _mm512_cvtepu16_epi32 sl_cvtepu16_epi32
#define _mm512_cvtepi32_epi8 sl_cvtepi32_epi8
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#include <immintrin.h>
#define SL_AVX512 1
#if defined(__AVX512VNNI__)
#define SL_VNNI 1
#endif
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SL_AVX2 1
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define SL_NEON 1
#if defined(__ARM_FEATURE_DOTPROD)
#define SL_SDOT 1  // sdot: q8_0's and q4_0's integer dot products
#endif
#endif

// fma32(a, b, c) = a * b + c rounded once, to nearest even: the hardware instruction where
// there is one (x86 FMA, every aarch64), else in double arithmetic. a * b is exact in double
// (24 + 24 bits), and s = a * b + c rounded to double rounds on to the right float unless s is
// exactly halfway between two floats (the exact sum lies within half a double's ulp of s, and
// only a float midpoint, itself a double, could separate the two) or below the normal floats
// (whose midpoints are spaced otherwise). Those rare cases redo the sum with round-to-odd,
// which then rounds to float correctly (53 >= 24 + 2 bits): the fused result, bit for bit.
// (tests/test_kernels.c checks fma32_soft against libm's fmaf in every build.)
static inline float fma32_soft(float a, float b, float c) {
    double p = (double)a * (double)b, s = p + (double)c;
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    if ((bits & 0x1fffffffu) != 0x10000000u && ((bits >> 52) & 0x7ff) >= 1023 - 126)
        return (float)s;  // not a float midpoint, a normal float (or inf/NaN): one rounding
    double bb = s - p, err = (p - (s - bb)) + ((double)c - bb);  // s + err = p + c exactly
    if (err != 0.0 && s - s == 0.0) {  // inexact and finite: make the last bit odd
        memcpy(&bits, &s, sizeof bits);
        if (!(bits & 1)) bits += ((err > 0) == (s > 0)) ? 1 : (uint64_t)-1;
        memcpy(&s, &bits, sizeof s);
    }
    return (float)s;
}

static inline float fma32(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__) || defined(__FP_FAST_FMAF)
    return __builtin_fmaf(a, b, c);
#else
    return fma32_soft(a, b, c);
#endif
}

#endif

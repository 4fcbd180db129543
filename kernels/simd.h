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

// ============================================================================
// bench.c's measurement vectors (issue 25). The kernels above do not use this section; bench
// (app/bench.c) measures the machine with it: the read bandwidth and the STREAM triad with
// SlVf loads, adds, multiply-adds and stores, the f32 peak with sl_vf_fma chains and the int8
// peak with sl_dot chains, each as wide as this build's kernels run (the same SL_* macros).
//
//   SlVf               SL_VF_LANES floats: zmm (SL_AVX512), ymm (SL_AVX2), float32x4_t
//                      (SL_NEON), else 8 floats in plain C
//   sl_vf_zero, sl_vf_set1(x), sl_vf_load(p), sl_vf_store(p, v)   p aligned to SL_VF_BYTES
//   sl_vf_add(a, b), sl_vf_fma(a, b, c) = a * b + c   fused where the build has an FMA
//                      unit; the plain build rounds the product (as its f32 kernels do)
//   sl_vf_sum(v)       the lanes' sum
//   SlVb, SlVi         SL_DOT_PRODUCTS int8s, and int32 lanes that each accumulate the
//                      products of 4 of them: vpdpbusd zmm (SL_VNNI), vpdpbusd ymm (AVX-VNNI,
//                      __AVXVNNI__, without SL_VNNI), vpmaddubsw + vpmaddwd + vpaddd ymm
//                      (SL_AVX2), sdot (SL_SDOT), else plain C. x86 multiplies unsigned by
//                      signed bytes, sdot signed by signed.
//   sl_vb_set1(x), sl_vi_set1(x), sl_dot(acc, a, b), sl_vi_sum(v) (wrapping)
//   SL_FMA_NAME, SL_DOT_NAME    the instructions, for --bench to print
//   SL_DOT_CHAINS      the independent sl_dot accumulators that cover its latency times its
//                      throughput (12; 6 for the AVX2 sequence, whose accumulation is one
//                      vpaddd and whose 16 registers hold no more)
//   sl_vf_hide(v), sl_vb_hide(v)   v, through an empty asm statement after which the
//                      compiler cannot know its value: it must neither fold, nor hoist, nor
//                      share what is computed from it
// GCC 12 copies every vpdpbusd accumulator at each step of a chain, and spills them where
// there are only 16 vector registers (which halved the rate measured by the AVX2 + AVX-VNNI
// build on Zen 5); the native builds therefore issue vpdpbusd in asm (AT&T syntax), the
// emulated one through SIMDe.
#define SL_HIDE_MEM(v) __asm__ volatile("" : "+m"(v))  // any type
#if defined(__x86_64__) && !defined(SL_SIMDE_AVX512) && (SL_AVX2 || SL_AVX512)
#define SL_HIDE_REG(v) __asm__ volatile("" : "+x"(v))  // a vector register's type
#elif SL_NEON
#define SL_HIDE_REG(v) __asm__ volatile("" : "+w"(v))
#else
#define SL_HIDE_REG(v) SL_HIDE_MEM(v)
#endif
#if defined(SL_EMULATED)
#define SL_EMULATED_NOTE ", " SL_EMULATED
#else
#define SL_EMULATED_NOTE ""
#endif

#if SL_AVX512
typedef __m512 SlVf;
#define SL_VF_LANES 16
#define SL_FMA_NAME "vfmadd231ps zmm" SL_EMULATED_NOTE
static inline SlVf sl_vf_zero(void) { return _mm512_setzero_ps(); }
static inline SlVf sl_vf_set1(float x) { return _mm512_set1_ps(x); }
static inline SlVf sl_vf_load(const float *p) { return _mm512_load_ps(p); }
static inline void sl_vf_store(float *p, SlVf v) { _mm512_store_ps(p, v); }
static inline SlVf sl_vf_add(SlVf a, SlVf b) { return _mm512_add_ps(a, b); }
static inline SlVf sl_vf_fma(SlVf a, SlVf b, SlVf c) { return _mm512_fmadd_ps(a, b, c); }
static inline SlVf sl_vf_hide(SlVf v) {
    SL_HIDE_REG(v);
    return v;
}
#elif SL_AVX2
typedef __m256 SlVf;
#define SL_VF_LANES 8
#define SL_FMA_NAME "vfmadd231ps ymm"
static inline SlVf sl_vf_zero(void) { return _mm256_setzero_ps(); }
static inline SlVf sl_vf_set1(float x) { return _mm256_set1_ps(x); }
static inline SlVf sl_vf_load(const float *p) { return _mm256_load_ps(p); }
static inline void sl_vf_store(float *p, SlVf v) { _mm256_store_ps(p, v); }
static inline SlVf sl_vf_add(SlVf a, SlVf b) { return _mm256_add_ps(a, b); }
static inline SlVf sl_vf_fma(SlVf a, SlVf b, SlVf c) { return _mm256_fmadd_ps(a, b, c); }
static inline SlVf sl_vf_hide(SlVf v) {
    SL_HIDE_REG(v);
    return v;
}
#elif SL_NEON
typedef float32x4_t SlVf;
#define SL_VF_LANES 4
#define SL_FMA_NAME "fmla v.4s"
static inline SlVf sl_vf_zero(void) { return vdupq_n_f32(0.0f); }
static inline SlVf sl_vf_set1(float x) { return vdupq_n_f32(x); }
static inline SlVf sl_vf_load(const float *p) { return vld1q_f32(p); }
static inline void sl_vf_store(float *p, SlVf v) { vst1q_f32(p, v); }
static inline SlVf sl_vf_add(SlVf a, SlVf b) { return vaddq_f32(a, b); }
static inline SlVf sl_vf_fma(SlVf a, SlVf b, SlVf c) { return vfmaq_f32(c, a, b); }
static inline SlVf sl_vf_hide(SlVf v) {
    SL_HIDE_REG(v);
    return v;
}
#else
typedef struct {
    float l[8];
} SlVf;
#define SL_VF_LANES 8
#define SL_FMA_NAME "f32 multiply and add (plain C)"
static inline SlVf sl_vf_set1(float x) {
    SlVf v;
    for (int i = 0; i < 8; i++) v.l[i] = x;
    return v;
}
static inline SlVf sl_vf_zero(void) { return sl_vf_set1(0.0f); }
static inline SlVf sl_vf_load(const float *p) {
    SlVf v;
    memcpy(v.l, p, sizeof v.l);
    return v;
}
static inline void sl_vf_store(float *p, SlVf v) { memcpy(p, v.l, sizeof v.l); }
static inline SlVf sl_vf_add(SlVf a, SlVf b) {
    for (int i = 0; i < 8; i++) a.l[i] += b.l[i];
    return a;
}
static inline SlVf sl_vf_fma(SlVf a, SlVf b, SlVf c) {
    for (int i = 0; i < 8; i++) c.l[i] += a.l[i] * b.l[i];
    return c;
}
static inline SlVf sl_vf_hide(SlVf v) {
    SL_HIDE_MEM(v);
    return v;
}
#endif
#define SL_VF_BYTES (SL_VF_LANES * (int)sizeof(float))

static inline float sl_vf_sum(SlVf v) {
    _Alignas(64) float l[SL_VF_LANES];
    sl_vf_store(l, v);
    float s = 0.0f;
    for (int i = 0; i < SL_VF_LANES; i++) s += l[i];
    return s;
}

#if SL_AVX512 && SL_VNNI
typedef __m512i SlVb;
typedef __m512i SlVi;
#define SL_DOT_PRODUCTS 64
#define SL_DOT_NAME "vpdpbusd zmm (AVX512-VNNI)" SL_EMULATED_NOTE
static inline SlVb sl_vb_set1(int8_t x) { return _mm512_set1_epi8((char)x); }
static inline SlVb sl_vb_hide(SlVb v) {
    SL_HIDE_REG(v);
    return v;
}
static inline SlVi sl_vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
static inline SlVi sl_dot(SlVi acc, SlVb a, SlVb b) {
#if defined(SL_EMULATED)
    return _mm512_dpbusd_epi32(acc, a, b);
#else
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
#endif
}
static inline void sl_vi_store(int32_t *p, SlVi v) { _mm512_storeu_si512((void *)p, v); }
#elif SL_AVX2 && defined(__AVXVNNI__)
typedef __m256i SlVb;
typedef __m256i SlVi;
#define SL_DOT_PRODUCTS 32
#define SL_DOT_NAME "vpdpbusd ymm (AVX-VNNI)"
static inline SlVb sl_vb_set1(int8_t x) { return _mm256_set1_epi8((char)x); }
static inline SlVb sl_vb_hide(SlVb v) {
    SL_HIDE_REG(v);
    return v;
}
static inline SlVi sl_vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
static inline SlVi sl_dot(SlVi acc, SlVb a, SlVb b) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b));
    return acc;
}
static inline void sl_vi_store(int32_t *p, SlVi v) { _mm256_storeu_si256((__m256i *)p, v); }
#elif SL_AVX2
typedef __m256i SlVb;
typedef __m256i SlVi;
#define SL_DOT_PRODUCTS 32
#define SL_DOT_NAME "vpmaddubsw + vpmaddwd + vpaddd ymm"
#define SL_DOT_CHAINS 6
static inline SlVb sl_vb_set1(int8_t x) { return _mm256_set1_epi8((char)x); }
static inline SlVb sl_vb_hide(SlVb v) {
    SL_HIDE_REG(v);
    return v;
}
static inline SlVi sl_vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
// a is hidden: a product that does not depend on acc must still be computed on every call
static inline SlVi sl_dot(SlVi acc, SlVb a, SlVb b) {
    SL_HIDE_REG(a);
    __m256i pairs = _mm256_maddubs_epi16(a, b);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
static inline void sl_vi_store(int32_t *p, SlVi v) { _mm256_storeu_si256((__m256i *)p, v); }
#elif SL_NEON && SL_SDOT
typedef int8x16_t SlVb;
typedef int32x4_t SlVi;
#define SL_DOT_PRODUCTS 16
#define SL_DOT_NAME "sdot v.4s"
static inline SlVb sl_vb_set1(int8_t x) { return vdupq_n_s8(x); }
static inline SlVb sl_vb_hide(SlVb v) {
    SL_HIDE_REG(v);
    return v;
}
static inline SlVi sl_vi_set1(int32_t x) { return vdupq_n_s32(x); }
static inline SlVi sl_dot(SlVi acc, SlVb a, SlVb b) { return vdotq_s32(acc, a, b); }
static inline void sl_vi_store(int32_t *p, SlVi v) { vst1q_s32(p, v); }
#else
typedef struct {
    uint8_t b[32];
} SlVb;
typedef struct {
    uint32_t l[8];  // wrapping: int32 lanes as the hardware's
} SlVi;
#define SL_DOT_PRODUCTS 32
#define SL_DOT_NAME "int8 multiply and add (plain C)"
static inline SlVb sl_vb_set1(int8_t x) {
    SlVb v;
    memset(v.b, (uint8_t)x, sizeof v.b);
    return v;
}
static inline SlVb sl_vb_hide(SlVb v) {
    SL_HIDE_MEM(v);
    return v;
}
static inline SlVi sl_vi_set1(int32_t x) {
    SlVi v;
    for (int i = 0; i < 8; i++) v.l[i] = (uint32_t)x;
    return v;
}
static inline SlVi sl_dot(SlVi acc, SlVb a, SlVb b) {
    SL_HIDE_MEM(a);
    for (int i = 0; i < 32; i++) acc.l[i / 4] += (uint32_t)(a.b[i] * (int8_t)b.b[i]);
    return acc;
}
static inline void sl_vi_store(int32_t *p, SlVi v) { memcpy(p, v.l, sizeof v.l); }
#endif
#define SL_VI_LANES (SL_DOT_PRODUCTS / 4)
#ifndef SL_DOT_CHAINS
#define SL_DOT_CHAINS 12
#endif

static inline int32_t sl_vi_sum(SlVi v) {
    int32_t l[SL_VI_LANES];
    sl_vi_store(l, v);
    uint32_t s = 0;
    for (int i = 0; i < SL_VI_LANES; i++) s += (uint32_t)l[i];
    return (int32_t)s;
}

#endif

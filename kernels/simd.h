// simd.h: which instruction set the fast kernels are compiled for, and the one fused
// multiply-add that every build shares.
//
// Contract: header only; libc. The kernels (matmul.c, attention.c) test these macros, never
// the compiler's __AVX512F__ and friends, so that one switch changes every kernel:
//   SL_AVX512   AVX-512 F, BW, VL and DQ: the 512-bit paths
//   SL_VNNI     AVX512-VNNI as well (vpdpbusd: q8_0's integer dot products)
//   SL_AVX2     AVX2 and FMA (true on every AVX-512 machine too); F16C where __F16C__
//   SL_VNNI256  the 256-bit vpdpbusd/vpdpwssd (AVX-VNNI, or AVX512-VNNI with VL): the 8-lane
//               integer dot products below (its name, a string)
//   SL_NEON     aarch64 with NEON; SL_SDOT with its dot product (armv8.2-a+dotprod)
// -DSL_SIMDE_AVX512 compiles the AVX-512 paths on a machine without AVX-512, through SIMDe
// (Debian's libsimde-dev), so that their twin tests run on any x86 host (make test-isa); such
// a binary names itself so (matmul_isa, which --bench prints). SIMDe 0.7.4 lacks a few
// AVX-512 intrinsics: the kernels avoid the _mm512_reduce_* family and the bf16 conversions,
// and the conversions below (and _mm512_madd_epi16, which SIMDe
// defines with the wrong arity, _mm512_cvtepi16_epi32 and _mm512_mask_srli_epi16) get portable
// forms in the emulated build only.
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
static inline __m512i sl_madd_epi16(__m512i a, __m512i b) {  // SIMDe's takes 4 arguments
    return sl_pair_i(_mm256_madd_epi16(_mm512_castsi512_si256(a), _mm512_castsi512_si256(b)),
                     _mm256_madd_epi16(_mm512_extracti64x4_epi64(a, 1), _mm512_extracti64x4_epi64(b, 1)));
}
static inline __m512i sl_cvtepi16_epi32(__m256i h) {
    return sl_pair_i(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(h)),
                     _mm256_cvtepi16_epi32(_mm256_extracti128_si256(h, 1)));
}
#define _mm512_cvtepi16_epi32 sl_cvtepi16_epi32
#undef _mm512_mask_srli_epi16
#define _mm512_mask_srli_epi16(src, k, a, imm) _mm512_mask_blend_epi16((k), (src), _mm512_srli_epi16((a), (imm)))
#undef _mm512_madd_epi16
#define _mm512_madd_epi16 sl_madd_epi16
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


// ---- the 8-lane layer, shared by every kernel (matmul, attention, bench) ----
// vf holds VW = 8 floats. One layer of 8 lanes for every build: AVX2 (on AVX-512 machines
// too, where the 512-bit kernels put two of these side by side), NEON as two float32x4_t, and
// plain C doing the same operations lane by lane (vfma through fma32: fused everywhere).
#include <math.h>
#include <stddef.h>

#include "kernels/quant.h"

#define INLINE static inline __attribute__((always_inline))
#if SL_AVX2
#define VW 8
typedef __m256 vf;
static inline __m256i lanes(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE vf vzero(void) { return _mm256_setzero_ps(); }
INLINE vf vset1(float x) { return _mm256_set1_ps(x); }
INLINE vf vload(const float *p) { return _mm256_loadu_ps(p); }
INLINE void vstore(float *p, vf x) { _mm256_storeu_ps(p, x); }
INLINE vf vloadn(const float *p, size_t n) { return _mm256_maskload_ps(p, lanes(n)); }
#if defined(__F16C__)
INLINE vf vload_h(const uint16_t *p) {  // VW halves, widened (exact)
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
#else
INLINE vf vload_h(const uint16_t *p) {
    float f[VW];
    for (size_t i = 0; i < VW; i++) f[i] = fp16_to_f32(p[i]);
    return vload(f);
}
#endif
INLINE void vstoren(float *p, vf x, size_t n) { _mm256_maskstore_ps(p, lanes(n), x); }
INLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
INLINE vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
INLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
INLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE float vhmax(vf x) {
    __m128 y = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    y = _mm_max_ps(y, _mm_movehl_ps(y, y));
    return _mm_cvtss_f32(_mm_max_ss(y, _mm_movehdup_ps(y)));
}
INLINE float vhsum(vf x) {
    __m128 y = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    y = _mm_add_ps(y, _mm_movehl_ps(y, y));
    return _mm_cvtss_f32(_mm_add_ss(y, _mm_movehdup_ps(y)));
}
INLINE vf vhead(vf x, size_t n) {
    return _mm256_blendv_ps(vset1(-INFINITY), x, _mm256_castsi256_ps(lanes(n)));
}
INLINE vf vsum_rows(const vf *a) {  // lane t = the sum of the lanes of a[t]
    vf b[4], c[2];
    for (int i = 0; i < 4; i++)
        b[i] = vadd(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                    _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; i++) {
        __m256d x = _mm256_castps_pd(b[2 * i]), y = _mm256_castps_pd(b[2 * i + 1]);
        c[i] = vadd(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)),
                    _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
    }
    return vadd(_mm256_permute2f128_ps(c[0], c[1], 0x20), _mm256_permute2f128_ps(c[0], c[1], 0x31));
}
#elif SL_NEON
// ARM64 NEON: the AVX2 layer above, bit for bit. A vf is the 8 lanes of a ymm as two
// float32x4_t (lo: lanes 0-3, hi: 4-7); vfmaq_f32 is fused like vfmadd; f16 widens exactly.
#define VW 8
typedef struct {
    float32x4_t lo, hi;
} vf;
INLINE vf vzero(void) { return (vf){vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
INLINE vf vset1(float x) { return (vf){vdupq_n_f32(x), vdupq_n_f32(x)}; }
INLINE vf vload(const float *p) { return (vf){vld1q_f32(p), vld1q_f32(p + 4)}; }
INLINE void vstore(float *p, vf x) { vst1q_f32(p, x.lo), vst1q_f32(p + 4, x.hi); }
INLINE vf vloadn(const float *p, size_t n) {  // zeros past n; never reads past p + n
    float f[VW] = {0};
    memcpy(f, p, n * sizeof(float));
    return vload(f);
}
INLINE vf vload_h(const uint16_t *p) {  // VW halves, widened (exact)
    return (vf){vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))),
                vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + 4)))};
}
INLINE void vstoren(float *p, vf x, size_t n) {
    float f[VW];
    vstore(f, x);
    memcpy(p, f, n * sizeof(float));
}
INLINE vf vadd(vf a, vf b) { return (vf){vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
INLINE vf vsub(vf a, vf b) { return (vf){vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
INLINE vf vmul(vf a, vf b) { return (vf){vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
INLINE vf vfma(vf a, vf b, vf c) {  // a * b + c, one rounding
    return (vf){vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)};
}
INLINE float vhmax(vf x) { return vmaxvq_f32(vmaxq_f32(x.lo, x.hi)); }
INLINE float vhsum(vf x) {  // ((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7)), as AVX2's
    float32x4_t y = vaddq_f32(x.lo, x.hi);
    return vpadds_f32(vadd_f32(vget_low_f32(y), vget_high_f32(y)));
}
INLINE vf vhead(vf x, size_t n) {  // lanes n .. VW-1 set to -inf
    const uint32_t idx[VW] = {0, 1, 2, 3, 4, 5, 6, 7};
    uint32x4_t nn = vdupq_n_u32((uint32_t)n);
    float32x4_t ninf = vdupq_n_f32(-INFINITY);
    return (vf){vbslq_f32(vcltq_u32(vld1q_u32(idx), nn), x.lo, ninf),
                vbslq_f32(vcltq_u32(vld1q_u32(idx + 4), nn), x.hi, ninf)};
}
// Lane t = the sum of the lanes of a[t], by the AVX2 tree's additions: per pair of rows A, B
// and per half (lanes 0-3, 4-7), [A0+A2, B0+B2, A1+A3, B1+B3] (unpacklo + unpackhi: zip1 +
// zip2), then per pair of those x, y the 64-bit halves [x0+x2, x1+x3, y0+y2, y1+y3], so that
// row t has ((a0+a2) + (a1+a3)) in the low half and ((a4+a6) + (a5+a7)) in the high half;
// then low + high (AVX2's permute2f128 of the two 128-bit halves).
INLINE float32x4_t zip_add(float32x4_t a, float32x4_t b) {
    return vaddq_f32(vzip1q_f32(a, b), vzip2q_f32(a, b));
}
INLINE float32x4_t zip64_add(float32x4_t x, float32x4_t y) {
    float64x2_t xd = vreinterpretq_f64_f32(x), yd = vreinterpretq_f64_f32(y);
    return vaddq_f32(vreinterpretq_f32_f64(vzip1q_f64(xd, yd)),
                     vreinterpretq_f32_f64(vzip2q_f64(xd, yd)));
}
INLINE vf vsum_rows(const vf *a) {
    float32x4_t c_lo[2], c_hi[2];
    for (int i = 0; i < 2; i++) {  // rows 4i .. 4i+3
        const vf *r = a + 4 * i;
        c_lo[i] = zip64_add(zip_add(r[0].lo, r[1].lo), zip_add(r[2].lo, r[3].lo));
        c_hi[i] = zip64_add(zip_add(r[0].hi, r[1].hi), zip_add(r[2].hi, r[3].hi));
    }
    return (vf){vaddq_f32(c_lo[0], c_hi[0]), vaddq_f32(c_lo[1], c_hi[1])};
}
#else  // portable C: the same operations on 8-float structs, lane by lane, bit for bit
#define VW 8
typedef struct {
    float f[VW];
} vf;
#define VMAP(expr) \
    vf r;          \
    for (size_t i = 0; i < VW; i++) r.f[i] = (expr); \
    return r
INLINE vf vzero(void) { VMAP(0.0f); }
INLINE vf vset1(float x) { VMAP(x); }
INLINE vf vload(const float *p) { VMAP(p[i]); }
INLINE void vstore(float *p, vf x) { memcpy(p, x.f, sizeof x.f); }
INLINE vf vloadn(const float *p, size_t n) { VMAP(i < n ? p[i] : 0.0f); }
INLINE vf vload_h(const uint16_t *p) { VMAP(fp16_to_f32(p[i])); }
INLINE void vstoren(float *p, vf x, size_t n) { memcpy(p, x.f, n * sizeof(float)); }
INLINE vf vadd(vf a, vf b) { VMAP(a.f[i] + b.f[i]); }
INLINE vf vsub(vf a, vf b) { VMAP(a.f[i] - b.f[i]); }
INLINE vf vmul(vf a, vf b) { VMAP(a.f[i] * b.f[i]); }
INLINE vf vfma(vf a, vf b, vf c) { VMAP(fma32(a.f[i], b.f[i], c.f[i])); }
INLINE vf vhead(vf x, size_t n) { VMAP(i < n ? x.f[i] : -INFINITY); }
INLINE float vhmax(vf x) {
    float m = x.f[0];
    for (size_t i = 1; i < VW; i++) m = x.f[i] > m ? x.f[i] : m;
    return m;
}
// The AVX2 trees: vhsum ((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7)); vsum_rows's lane t
// ((x0+x2) + (x1+x3)) + ((x4+x6) + (x5+x7)) of row t.
INLINE float vhsum(vf v) {
    const float *x = v.f;
    return ((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]));
}
INLINE vf vsum_rows(const vf *a) {
    VMAP(((a[i].f[0] + a[i].f[2]) + (a[i].f[1] + a[i].f[3])) +
         ((a[i].f[4] + a[i].f[6]) + (a[i].f[5] + a[i].f[7])));
}
#endif

// 2^f for |f| <= 1/2: Cephes' exp2f polynomial, relative error about 1e-7; 2^0 = 1 exactly.
INLINE vf vpow2_frac(vf f) {
    vf p = vfma(vset1(1.535336188319500e-4f), f, vset1(1.339887440266574e-3f));
    p = vfma(p, f, vset1(9.618437357674640e-3f));
    p = vfma(p, f, vset1(5.550332471162809e-2f));
    p = vfma(p, f, vset1(2.402264791363012e-1f));
    p = vfma(p, f, vset1(6.931472028550421e-1f));
    return vfma(p, f, vset1(1.0f));
}
// 2^x for x <= 0 = 2^f 2^n, n = x rounded to nearest (ties to even), f = x - n; exactly 0
// below -126 (so for -inf too), and for NaN.
#if SL_NEON
// The AVX2 vexp2 below, lane for lane: n = x rounded to nearest even (frintn), 2^n built in
// the exponent field from n + 127, zero where x < -126 (or NaN).
INLINE float32x4_t exp2_4(float32x4_t x, float32x4_t p) {  // p = vpow2_frac(x - n), a half
    float32x4_t n = vrndnq_f32(x);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t r = vmulq_f32(p, vreinterpretq_f32_s32(e));
    uint32x4_t ok = vcgeq_f32(x, vdupq_n_f32(-126.0f));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(r), ok));
}
INLINE vf vexp2(vf x) {
    vf n = {vrndnq_f32(x.lo), vrndnq_f32(x.hi)};
    vf p = vpow2_frac(vsub(x, n));
    return (vf){exp2_4(x.lo, p.lo), exp2_4(x.hi, p.hi)};
}
INLINE float sexp2(float x) { return vgetq_lane_f32(vexp2(vset1(x)).lo, 0); }  // no libm call
#elif SL_AVX2
INLINE vf vexp2(vf x) {
    vf n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    e = _mm256_slli_epi32(e, 23);  // 2^n
    vf r = vmul(vpow2_frac(vsub(x, n)), _mm256_castsi256_ps(e));
    return _mm256_and_ps(r, _mm256_cmp_ps(x, vset1(-126.0f), _CMP_GE_OQ));
}
INLINE float sexp2(float x) { return _mm256_cvtss_f32(vexp2(vset1(x))); }  // no libm call
#else
INLINE vf vexp2(vf x) {
    vf n, two_n;
    for (size_t i = 0; i < VW; i++) {
        float xi = x.f[i] >= -126.0f ? x.f[i] : 0.0f;  // the rest are zeroed below
        n.f[i] = nearbyintf(xi);
        two_n.f[i] = f32_from_bits((uint32_t)((int32_t)n.f[i] + 127) << 23);
    }
    vf r = vmul(vpow2_frac(vsub(x, n)), two_n);
    for (size_t i = 0; i < VW; i++) r.f[i] = x.f[i] >= -126.0f ? r.f[i] : 0.0f;
    return r;
}
INLINE float sexp2(float x) { return vexp2(vset1(x)).f[0]; }
#endif

// ---- what the matmuls add to the layer ----
// vmuladd(a, b, c) = a * b + c: fused where the ISA has an FMA (as vfma), and in plain C two
// roundings (the f32/f16/bf16 matmuls' one exception to the same bits: fma32_soft would make
// the plain build's float matmuls ~20x slower; the tests state the bound). vloadn_h: n (1..VW)
// f16 or bf16 values widened exactly, zeros past n, never read past p + n. vhsum4: vhsum of
// four vectors into y[0..3], by exactly vhsum's additions.
#if SL_AVX2
INLINE vf vmuladd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE vf vload_hb(const uint16_t *p, int bf) {  // VW f16 (bf = 0) or bf16 values, widened
    if (bf)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    return vload_h(p);
}
INLINE void vhsum4(float *y, vf a, vf b, vf c, vf d) {
    // [a.s4 c.s4], [b.s4 d.s4] with s4 = lanes i + i+4; then per 128-bit lane
    // [a.s2 b.s2], [c.s2 d.s2] with s2 = s4 lanes i + i+2; then lanes 0 + 1.
    __m256 ac = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20),
                              _mm256_permute2f128_ps(a, c, 0x31));
    __m256 bd = _mm256_add_ps(_mm256_permute2f128_ps(b, d, 0x20),
                              _mm256_permute2f128_ps(b, d, 0x31));
    __m256 s2 = _mm256_add_ps(_mm256_shuffle_ps(ac, bd, 0x44), _mm256_shuffle_ps(ac, bd, 0xEE));
    __m128 lo = _mm256_castps256_ps128(s2), hi = _mm256_extractf128_ps(s2, 1);
    _mm_storeu_ps(y, _mm_add_ps(_mm_shuffle_ps(lo, hi, 0x88), _mm_shuffle_ps(lo, hi, 0xDD)));
}
#elif SL_NEON
INLINE vf vmuladd(vf a, vf b, vf c) { return vfma(a, b, c); }
INLINE float32x4_t h4_to_f32(const uint16_t *p, int bf) {
    uint16x4_t h = vld1_u16(p);
    if (bf) return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}
INLINE vf vload_hb(const uint16_t *p, int bf) { return (vf){h4_to_f32(p, bf), h4_to_f32(p + 4, bf)}; }
INLINE float32x2_t half_pairs(vf v) {  // {s0 + s2, s1 + s3}, s = lanes i + i+4
    float32x4_t s = vaddq_f32(v.lo, v.hi);
    return vadd_f32(vget_low_f32(s), vget_high_f32(s));
}
INLINE void vhsum4(float *y, vf a, vf b, vf c, vf d) {
    vst1q_f32(y, vpaddq_f32(vcombine_f32(half_pairs(a), half_pairs(b)),
                            vcombine_f32(half_pairs(c), half_pairs(d))));
}
#else
INLINE vf vmuladd(vf a, vf b, vf c) { VMAP(a.f[i] * b.f[i] + c.f[i]); }
INLINE vf vload_hb(const uint16_t *p, int bf) { VMAP(bf ? bf16_to_f32(p[i]) : fp16_to_f32(p[i])); }
INLINE void vhsum4(float *y, vf a, vf b, vf c, vf d) {
    y[0] = vhsum(a), y[1] = vhsum(b), y[2] = vhsum(c), y[3] = vhsum(d);
}
#endif
INLINE vf vloadn_hb(const uint16_t *p, size_t n, int bf) {
    uint16_t tmp[VW] = {0};
    if (n < VW) memcpy(tmp, p, n * sizeof *p), p = tmp;
    return vload_hb(p, bf);
}

// Pins a loaded vector in a register. Without it gcc folds the loads into the FMAs as
// memory operands, re-loading each for every use (20 loads per 16 FMAs, ~25% slower).
#if SL_AVX2
#define KEEP(v) __asm__("" : "+v"(v))
#else
#define KEEP(v) (void)0
#endif

// Prefetch into L2, address arithmetic on integers: the target may lie past the end of the
// array (a prefetch never faults). -DSL_PREFETCH=0 turns it off.
#ifndef SL_PREFETCH
#define SL_PREFETCH 1
#endif
#if SL_PREFETCH && SL_AVX2
#define PREFETCH_L2(p, bytes) _mm_prefetch((const char *)((uintptr_t)(p) + (bytes)), _MM_HINT_T1)
#else
#define PREFETCH_L2(p, bytes) (void)0
#endif

#if SL_AVX2
// ---- 8-lane integer dot products (the int8 and K matmuls) ----
// dot4_u8s8(u, s): each int32 lane the exact sum of its 4 byte products u (unsigned) x s
// (signed), for operands whose adjacent pairs of products stay within int16 (vpmaddubsw's
// saturation; every caller's levels do); dot2_add(acc, p, s): acc + the sums of adjacent int16
// products p x s. VNNI's vpdpbusd / vpdpwssd on 256 bits where the CPU has them (AVX-VNNI, or
// AVX512-VNNI with VL), else vpmaddubsw + vpmaddwd: the same integers either way.
#if defined(__AVXVNNI__)
#define SL_VNNI256 "AVX-VNNI"
INLINE __m256i dot4_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}
INLINE __m256i dot2_add(__m256i acc, __m256i p, __m256i s) { return _mm256_dpwssd_avx_epi32(acc, p, s); }
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define SL_VNNI256 "AVX512-VNNI"
INLINE __m256i dot4_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}
INLINE __m256i dot2_add(__m256i acc, __m256i p, __m256i s) { return _mm256_dpwssd_epi32(acc, p, s); }
#else
INLINE __m256i dot4_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
INLINE __m256i dot2_add(__m256i acc, __m256i p, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
}
#endif
#endif

#if SL_AVX512
// ---- AVX-512: two 8-lane rows side by side in a zmm (lanes 0-7 and 8-15) ----
// so that each lane runs exactly what a lane of the 8-lane layer runs.
#if defined(SL_SIMDE_AVX512)
#define KEEP512(v) (void)0  // SIMDe's __m512 is not a register type
#else
#define KEEP512(v) __asm__("" : "+v"(v))
#endif
INLINE __m512 v_pair(__m256 a, __m256 b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
}
INLINE __m512i v_pair_i(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
INLINE __m256 v_lo(__m512 v) { return _mm512_castps512_ps256(v); }
INLINE __m256 v_hi(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
#endif

// ============================================================================
// bench.c's measurement vectors (issue 25). The kernels above do not use this section; bench
// (app/bench.c) measures the machine with it: the read bandwidth and the STREAM triad with
// SlVf loads, adds, multiply-adds and stores, the f32 peak with sl_vf_fma chains and the int8
// peak with sl_dot chains, each the widest of the build (the same SL_* macros): zmm where
// SL_AVX512, as the AVX-512 kernels use, where the 8-lane layer above has ymm.
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

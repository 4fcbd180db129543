// matmul.c: the fast fp32 matrix products (see matmul.h).
//
// Contract: libc, pthreads through pool.h, and <immintrin.h> intrinsics picked at compile
// time (AVX-512F, else AVX2+FMA, else plain C). No OpenMP, no BLAS, no allocation, no
// runtime CPU dispatch: the binary runs where its -march allows.
//
// Every output y[t][r] = W row r . X row t follows ONE sequence, whatever the tile:
//   acc (VW lanes) = 0
//   acc = fma(w[k : k+VW], x[k : k+VW], acc)   for k = 0, VW, 2 VW, ... in order,
//         the last partial stretch through zero-filled loads (masked; never past the end)
//   y = hsum(acc): lanes i + i+VW/2, then i + i+VW/4, ..., down to lane 0 + lane 1.
// store4 reduces four accumulators at once by exactly the same additions (float addition
// is commutative bitwise), so multi-row tiles, tail rows and thread splits all agree.
// Tiles: TR rows of W x TT tokens of accumulators in registers (4 x 4 zmm on AVX-512).
// Threads own contiguous blocks of W rows; X is reused from L2 in blocks of tokens.
#include "matmul.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>

// Shared 8-lane tail of the trees. hsum8: (v0+v4 + v2+v6) + (v1+v5 + v3+v7).
static inline float hsum8(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

// Four hsum8 at once: {hsum8(a), hsum8(b), hsum8(c), hsum8(d)}, the same additions.
static inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d) {
    // [a.s4 c.s4], [b.s4 d.s4] with s4 = lanes i + i+4; then per 128-bit lane
    // [a.s2 b.s2], [c.s2 d.s2] with s2 = s4 lanes i + i+2; then lanes 0 + 1.
    __m256 ac = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20),
                              _mm256_permute2f128_ps(a, c, 0x31));
    __m256 bd = _mm256_add_ps(_mm256_permute2f128_ps(b, d, 0x20),
                              _mm256_permute2f128_ps(b, d, 0x31));
    __m256 s2 = _mm256_add_ps(_mm256_shuffle_ps(ac, bd, 0x44), _mm256_shuffle_ps(ac, bd, 0xEE));
    __m128 lo = _mm256_castps256_ps128(s2), hi = _mm256_extractf128_ps(s2, 1);
    return _mm_add_ps(_mm_shuffle_ps(lo, hi, 0x88), _mm_shuffle_ps(lo, hi, 0xDD));
}
#endif

#if defined(__AVX512F__)
#define VW 16 // lanes
#define TR 4  // rows of W per register tile
#define TRV 8 // rows per tile of a matvec (one token): 8 accumulator chains hide FMA latency
#define TT 4  // tokens per register tile: 16 zmm accumulators
typedef __m512 vec;
static inline vec v_zero(void) { return _mm512_setzero_ps(); }
// Loads len (1..VW) floats, zero-filling the other lanes without touching their memory.
static inline vec v_load(const float *p, size_t len) {
    if (len == VW) return _mm512_loadu_ps(p);
    return _mm512_maskz_loadu_ps((__mmask16)((1u << len) - 1), p);
}
static inline vec v_fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline __m256 half_sum(vec v) { // lanes i + i+8
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return _mm256_add_ps(_mm512_castps512_ps256(v), hi);
}
static inline float hsum(vec v) { return hsum8(half_sum(v)); }
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    _mm_storeu_ps(y, hsum8x4(half_sum(a), half_sum(b), half_sum(c), half_sum(d)));
}

#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
#define TR 4
#define TT 2 // 8 ymm accumulators + 4 rows + 1 token fit the 16 registers
#define TRV 4
typedef __m256 vec;
static inline vec v_zero(void) { return _mm256_setzero_ps(); }
static inline vec v_load(const float *p, size_t len) {
    if (len == VW) return _mm256_loadu_ps(p);
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)len), lanes));
}
static inline vec v_fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float hsum(vec v) { return hsum8(v); }
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    _mm_storeu_ps(y, hsum8x4(a, b, c, d));
}

#else
// Plain C with the same structure. Relies on no fp contraction (gcc's -std=c11 default),
// so that every acc += w * x rounds twice, everywhere alike.
#define VW 8
#define TR 4
#define TT 2
#define TRV 4
typedef struct {
    float f[VW];
} vec;
static inline vec v_zero(void) {
    vec v = {{0}};
    return v;
}
static inline vec v_load(const float *p, size_t len) {
    vec v = {{0}};
    for (size_t i = 0; i < len; i++) v.f[i] = p[i];
    return v;
}
static inline vec v_fma(vec a, vec b, vec c) {
    for (size_t i = 0; i < VW; i++) c.f[i] += a.f[i] * b.f[i];
    return c;
}
static inline float hsum(vec v) {
    for (size_t w = VW / 2; w > 0; w /= 2)
        for (size_t i = 0; i < w; i++) v.f[i] += v.f[i + w];
    return v.f[0];
}
static inline void store4(float *y, vec a, vec b, vec c, vec d) {
    y[0] = hsum(a), y[1] = hsum(b), y[2] = hsum(c), y[3] = hsum(d);
}
#endif

#define INLINE static inline __attribute__((always_inline))

// Pins a loaded vector in a register. Without it gcc folds the loads into the FMAs as
// memory operands, re-loading each for every use (20 loads per 16 FMAs, ~25% slower).
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define KEEP(v) __asm__("" : "+v"(v))
#else
#define KEEP(v) (void)0
#endif

#ifndef MATMUL_PREFETCH // -DMATMUL_PREFETCH=0 turns the matvec prefetch off
#define MATMUL_PREFETCH 1
#endif
#if MATMUL_PREFETCH && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)))
// Address arithmetic on integers: the target may lie past the end of W (prefetch never faults).
#define PREFETCH_L2(p, floats) \
    _mm_prefetch((const char *)((uintptr_t)(p) + (floats) * sizeof(float)), _MM_HINT_T1)
#else
#define PREFETCH_L2(p, floats) (void)0
#endif

// One stretch k .. k+len of an R x T tile (R, T constant after inlining). A matvec tile
// (T = 1) streams its rows from memory once: it prefetches the next tile's rows into L2,
// which lifts cold-weight GB/s by 15-35% (at a 10-25% cost when W is already in cache).
INLINE void tile_step(vec acc[TRV][TT], const float *w, const float *x, size_t n, size_t k,
                      size_t len, size_t R, size_t T) {
    vec wv[TRV];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++) {
        wv[r] = v_load(w + r * n + k, len);
        KEEP(wv[r]);
        if (T == 1) PREFETCH_L2(w, (R + r) * n + k);
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) {
        vec xv = v_load(x + t * n + k, len);
        KEEP(xv);
#pragma GCC unroll 8
        for (size_t r = 0; r < R; r++) acc[r][t] = v_fma(wv[r], xv, acc[r][t]);
    }
}

// y[t * ldy + r] = W row r . X row t for r < R, t < T; rows and tokens are n apart.
INLINE void tile(float *y, size_t ldy, const float *x, const float *w, size_t n, size_t R,
                 size_t T) {
    vec acc[TRV][TT];
#pragma GCC unroll 8
    for (size_t r = 0; r < R; r++)
#pragma GCC unroll 4
        for (size_t t = 0; t < T; t++) acc[r][t] = v_zero();
    size_t k = 0;
    for (; k + VW <= n; k += VW) tile_step(acc, w, x, n, k, VW, R, T);
    if (k < n) tile_step(acc, w, x, n, k, n - k, R, T);
#pragma GCC unroll 4
    for (size_t t = 0; t < T; t++) {
        if (R == 4 || R == 8) {
            store4(y + t * ldy, acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
            if (R == 8) store4(y + t * ldy + 4, acc[4][t], acc[5][t], acc[6][t], acc[7][t]);
        } else {
#pragma GCC unroll 4
            for (size_t r = 0; r < R; r++) y[t * ldy + r] = hsum(acc[r][t]);
        }
    }
}

// Rows r .. r+R of W against tokens t0 .. t1, TT tokens at a time.
INLINE void panel(float *y, size_t ldy, const float *x, const float *w, size_t n, size_t R,
                  size_t t0, size_t t1) {
    size_t t = t0;
    for (; t + TT <= t1; t += TT) tile(y + t * ldy, ldy, x + t * n, w, n, R, TT);
    for (; t < t1; t++) tile(y + t * ldy, ldy, x + t * n, w, n, R, 1);
}

// Tokens per cache block: every W panel of a thread reuses this block of X from L2.
// Sized to ~512 KB of X (half of this CPU's L2): 64 tokens at n = 2048, 168 at n = 768.
#define X_BLOCK_FLOATS (128 * 1024)

// Y[t][r] for rows rb .. re of W and all m tokens; Y rows are ldy apart.
static void rows_block(float *y, size_t ldy, const float *x, const float *w, size_t n,
                       size_t m, size_t rb, size_t re) {
    size_t tb = X_BLOCK_FLOATS / (n ? n : 1) / TT * TT;
    if (tb < TT) tb = TT;
    for (size_t t0 = 0; t0 < m; t0 += tb) {
        size_t t1 = m - t0 < tb ? m : t0 + tb;
        size_t r = rb;
        if (m == 1)  // a matvec: wider tiles, the same per-element arithmetic
            for (; r + TRV <= re; r += TRV) panel(y + r, ldy, x, w + r * n, n, TRV, t0, t1);
        for (; r + TR <= re; r += TR) panel(y + r, ldy, x, w + r * n, n, TR, t0, t1);
        for (; r < re; r++) panel(y + r, ldy, x, w + r * n, n, 1, t0, t1);
    }
}

void matmul_f32_rows(float *y, const float *x, const float *w, size_t n, size_t row_begin,
                     size_t row_end) {
    rows_block(y, 0, x, w, n, 1, row_begin, row_end);
}

typedef struct {
    float *y;
    const float *x, *w;
    size_t n, d, m;
} Job;

// Thread blocks start on multiples of 16 rows: whole tiles, and a 64-byte line of y each.
#define ROW_ALIGN 16

static void job_run(void *arg, int thread, int n_threads) {
    const Job *j = arg;
    size_t b, e;
    pool_range(j->d, ROW_ALIGN, thread, n_threads, &b, &e);
    if (b < e) rows_block(j->y, j->d, j->x, j->w, j->n, j->m, b, e);
}

void matmul_f32_batch(Pool *pool, float *y, const float *x, const float *w, size_t n, size_t d,
                      size_t m) {
    if (d == 0 || m == 0) return;
    Job j = {y, x, w, n, d, m};
    pool_run(pool, job_run, &j);
}

void matmul_f32(Pool *pool, float *y, const float *x, const float *w, size_t n, size_t d) {
    matmul_f32_batch(pool, y, x, w, n, d, 1);
}

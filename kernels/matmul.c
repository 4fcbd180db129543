// matmul.c: the fast matrix products (see matmul.h): the inputs' quantized forms, the rows
// function of each weight type, and the split of a product among threads.
//
// Contract: libc, pthreads through pool.h, and intrinsics picked at compile time through
// simd.h (AVX-512, else AVX2+FMA, else NEON, else plain C). No OpenMP, no BLAS, no
// allocation, no runtime CPU dispatch: the binary runs where its -march allows.
//
// The kernels live by family (matmul_impl.h): matmul_float.c (f32, f16, bf16), matmul_int8.c
// (q8_0 and the 32-weight block types), matmul_kquant.c (the 256-weight K types). Each computes
// every output by one fixed order of operations, whatever the ISA, tile, thread count or batch
// (the family files state it), so a matvec equals its row of a batch bit for bit and every
// build gives the same bits (plain C's f32/f16/bf16 within rounding).
#include "kernels/matmul.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/matmul_impl.h"
#include "kernels/quant.h"

static RowsFn *rows_fn(int type) {
    switch (type) {
    case SL_F32: return mm_rows_f32;
    case SL_F16: return mm_rows_f16;
    case SL_BF16: return mm_rows_bf16;
    case SL_Q8_0: return mm_rows_q8_0;
    case SL_Q4_0: return mm_rows_q4_0;
    case SL_Q5_0: return mm_rows_q5_0;
    case SL_IQ4_NL: return mm_rows_iq4_nl;
    case SL_Q4_1: return mm_rows_q4_1;
    case SL_Q5_1: return mm_rows_q5_1;
    case SL_Q4_K: return mm_rows_q4_k;
    case SL_Q5_K: return mm_rows_q5_k;
    case SL_Q6_K: return mm_rows_q6_k;
    case SL_Q2_K: return mm_rows_q2_k;
    case SL_Q3_K: return mm_rows_q3_k;
    case SL_IQ4_XS: return mm_rows_iq4_xs;
    default: return NULL;  // no other type reaches matmul (model.c validates)
    }
}

// ----------------------------------------------------------------------------
// inputs

static size_t padded_groups(size_t n) { return (q8_groups(n) + 1) / 2 * 2; }

int matmul_input_forms(int type) {
    return type == SL_Q8_0 || type == SL_Q4_0 || type == SL_Q4_1 || type == SL_Q5_0 ||
                   type == SL_Q5_1 || type == SL_IQ4_NL
               ? MATMUL_Q8_0
           : kquant_type(type)                                  ? MATMUL_Q8_K
                                                                : 0;
}

size_t matmul_q8_bytes(size_t n, size_t m) {
    // per group: 32 quants, its scale, 8 copies of it, 8 correction lanes, its scaled sum; then room for the
    // q8k form of any n' <= n: quants, a scale per 256 and a sum per 16
    size_t k = m * (n / Q8K_BLOCK * sizeof(float) + n / 16 * sizeof(int16_t) + n);
    return m * padded_groups(n) * (Q8_GROUP + 10 * sizeof(float) + 8 * sizeof(int32_t)) + k;
}

#if SL_AVX2
// The largest of 8 lanes (exact in any order).
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// 32 floats (v[0..3]) times id, rounded to the nearest integer (ties to even, as lrintf in
// the default mode) and packed to int8 in order. The products lie within [-127, 127].
static inline __m256i quants32(const __m256 v[4], __m256 id) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id)), b = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id)), d = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
    // per 128-bit lane: a b c d lo halves, then hi halves; permute back to order
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// quant.h's q8k_quantize_block, the same operations in SIMD (tests/test_matmul.c checks the
// bits): amax = max |x|, d = amax / 127, q = round(x * (1/d)), and each 16 quants' sum.
static float q8k_block(const float *x, int8_t *q, int16_t *bsums) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    for (size_t i = 0; i < Q8K_BLOCK; i += 8)
        mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    float amax = hmax8(mx);
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    for (size_t i = 0; i < Q8K_BLOCK; i += 32) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + i + 8 * k);
        __m256i qq = quants32(v, vid);
        _mm256_storeu_si256((__m256i *)(q + i), qq);
        // 16-quant sums: pairs of bytes to int16, then pairs, then hadd within each 16
        __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qq),
                                        _mm256_set1_epi16(1));  // 8 sums of 4
        __m128i s = _mm_hadd_epi32(_mm256_castsi256_si128(s16), _mm256_extracti128_si256(s16, 1));
        s = _mm_hadd_epi32(s, s);  // sums of 16: lanes 0, 1
        bsums[i / 16] = (int16_t)_mm_cvtsi128_si32(s);
        bsums[i / 16 + 1] = (int16_t)_mm_extract_epi32(s, 1);
    }
    return d;
}
#elif SL_NEON
// The same on NEON: max |x|, round(x * id) to nearest even (fcvtns, as lrintf), narrowed in order.
static float q8k_block(const float *x, int8_t *q, int16_t *bsums) {
    float32x4_t mx = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < Q8K_BLOCK; i += 4) mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(x + i)));
    float amax = vmaxvq_f32(mx);
    float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (size_t i = 0; i < Q8K_BLOCK; i += 16) {
        int16x8_t h[2];
        for (int k = 0; k < 2; k++)
            h[k] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 8 * k), id))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 8 * k + 4), id))));
        int8x16_t qq = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
        vst1q_s8(q + i, qq);
        bsums[i / 16] = (int16_t)vaddlvq_s8(qq);
    }
    return d;
}
#else
static float q8k_block(const float *x, int8_t *q, int16_t *bsums) {
    return q8k_quantize_block(x, q, bsums);
}
#endif

#if SL_AVX2
// Group g's forms from its quants qq and scale d: the quants, the scale, the scale spread over
// 8 lanes, and -128 x each 4 quants' sum.
static inline void store_group(__m256i qq, float d, size_t g, int8_t *q, float *qd, float *s,
                               int32_t *c) {
    _mm256_storeu_si256((__m256i *)(q + g * Q8_GROUP), qq);
    qd[g] = d;
    _mm256_storeu_ps(s + g * 8, _mm256_set1_ps(d));
    __m256i sum4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qq),
                                     _mm256_set1_epi16(1));  // each 4 quants' sum
    _mm256_storeu_si256((__m256i *)(c + g * 8), _mm256_mullo_epi32(sum4, _mm256_set1_epi32(-128)));
}
#endif

// One row of x into q8_0 form: quants (GP groups, zero padded), each scale spread over 8
// lanes, and -128 x each 4 quants' sum. The quants and scales are bitwise those of
// quant.h's q8_quantize_row (the same operations: max |x|, d = amax / 127, round(x / d)
// to nearest even), which tests/test_matmul.c checks.
static void quantize_row(const float *x, size_t n, size_t GP, int8_t *q, float *qd, float *s,
                         int32_t *c) {
    size_t g = 0;
#if SL_AVX512
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 2 x 16 floats
        __m512 a = _mm512_loadu_ps(x + g * Q8_GROUP), b = _mm512_loadu_ps(x + g * Q8_GROUP + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b));
        float amax = hmax8(_mm256_max_ps(_mm512_castps512_ps256(m), v_hi(m)));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m128i qa = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid)));
        __m128i qb = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid)));
        __m256i qq = _mm256_inserti128_si256(_mm256_castsi128_si256(qa), qb, 1);
        store_group(qq, d, g, q, qd, s, c);
    }
#elif SL_AVX2
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 4 x 8 floats
        __m256 v[4], mx = _mm256_setzero_ps();
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + g * Q8_GROUP + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], abs_mask));
        }
        float amax = hmax8(mx);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m256i qq = quants32(v, _mm256_set1_ps(id));
        store_group(qq, d, g, q, qd, s, c);
    }
#elif SL_NEON
    for (; (g + 1) * Q8_GROUP <= n; g++) {  // whole groups: 8 x 4 floats
        float32x4_t v[8], mx = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(x + g * Q8_GROUP + 4 * i);
            mx = vmaxq_f32(mx, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(mx);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int16x8_t h[4];  // round(x * id), ties to even (fcvtns, as lrintf), narrowed in order
        for (int i = 0; i < 4; i++)
            h[i] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * i], id))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * i + 1], id))));
        int8x16_t q0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
        int8x16_t q1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
        vst1q_s8(q + g * Q8_GROUP, q0), vst1q_s8(q + g * Q8_GROUP + 16, q1);
        qd[g] = d;
        vst1q_f32(s + g * 8, vdupq_n_f32(d)), vst1q_f32(s + g * 8 + 4, vdupq_n_f32(d));
        // -128 x each 4 quants' sum
        vst1q_s32(c + g * 8, vmulq_n_s32(vpaddlq_s16(vpaddlq_s8(q0)), -128));
        vst1q_s32(c + g * 8 + 4, vmulq_n_s32(vpaddlq_s16(vpaddlq_s8(q1)), -128));
    }
#endif
    for (; g < GP; g++) {  // the partial last group and the padding: plain C
        int8_t *qg = q + g * Q8_GROUP;
        float d = 0.0f;
        memset(qg, 0, Q8_GROUP);
        if (g * Q8_GROUP < n) {
            size_t len = n - g * Q8_GROUP < Q8_GROUP ? n - g * Q8_GROUP : Q8_GROUP;
            q8_quantize_row(x + g * Q8_GROUP, len, qg, &d);
        }
        qd[g] = d;
        for (size_t i = 0; i < 8; i++) {
            s[g * 8 + i] = d;
            c[g * 8 + i] = -128 * (qg[4 * i] + qg[4 * i + 1] + qg[4 * i + 2] + qg[4 * i + 3]);
        }
    }
}

void matmul_input(MatIn *in, const float *x, size_t n, size_t m, void *q8, int forms) {
    size_t GP = padded_groups(n);
    *in = (MatIn){.x = x, .n = n, .m = m, .groups = GP};
    if (!forms) return;
    assert(q8);
    int8_t *q = q8;
    float *qscale = (float *)(q + m * GP * Q8_GROUP);
    int32_t *qcorr = (int32_t *)(qscale + m * GP * 8);
    float *qd = (float *)(qcorr + m * GP * 8);
    float *qsum = qd + m * GP;
    if (forms & MATMUL_Q8_0) {
        in->q = q, in->qscale = qscale, in->qcorr = qcorr, in->qd = qd, in->qsum = qsum;
        for (size_t t = 0; t < m; t++) {
            quantize_row(x + t * n, n, GP, in->q + t * GP * Q8_GROUP, in->qd + t * GP,
                         in->qscale + t * GP * 8, in->qcorr + t * GP * 8);
            for (size_t g = 0; g < GP; g++) {  // d_x,g * (float)(the exact sum of its quants)
                const int8_t *qg = in->q + (t * GP + g) * Q8_GROUP;
                int32_t sum = 0;
                for (size_t i = 0; i < Q8_GROUP; i++) sum += qg[i];
                qsum[t * GP + g] = qd[t * GP + g] * (float)sum;
            }
        }
    }
    if (!(forms & MATMUL_Q8_K) || n % Q8K_BLOCK) return;
    size_t nb = n / Q8K_BLOCK;
    in->kd = qsum + m * GP;
    in->kbs = (int16_t *)(in->kd + m * nb);
    in->kq = (int8_t *)(in->kbs + m * (n / 16));
    for (size_t t = 0; t < m; t++)
        for (size_t b = 0; b < nb; b++)
            in->kd[t * nb + b] = q8k_block(x + t * n + b * Q8K_BLOCK,
                                           in->kq + t * n + b * Q8K_BLOCK,
                                           in->kbs + t * (n / 16) + b * 16);
}

// ----------------------------------------------------------------------------
// threads

const char *matmul_isa(void) {
#if defined(SL_EMULATED)
    return "AVX-512 VNNI, " SL_EMULATED;
#elif SL_AVX512 && SL_VNNI
    return "AVX-512 VNNI";
#elif SL_AVX512
    return "AVX-512";
#elif SL_AVX2 && defined(SL_VNNI256)
    return "AVX2, " SL_VNNI256;
#elif SL_AVX2
    return "AVX2";
#else
    return "plain C";
#endif
}

void matmul_rows(float *y, const MatIn *in, const Tensor *w, size_t row_begin, size_t row_end) {
    rows_fn(w->type)(y, 0, in, w, row_begin, row_end);
}

typedef struct {
    float *y;
    const MatIn *in;
    const Tensor *w;
    RowsFn *fn;
    size_t rows;  // per chunk: a multiple of ROW_ALIGN
} Job;

// Chunks start on multiples of 16 rows: whole tiles, and a 64-byte line of y each.
#define ROW_ALIGN 16
// Chunk sizes. Threads start on equal shares of the chunks and steal at the end (pool.h), so
// small chunks cost little (one compare-and-swap on a line of the thread's own) and balance
// well: a chunk holds as few whole units of ROW_ALIGN rows as make CHUNK_MIN multiply-adds
// per token (0.5-1 us of work), and a job at most MAX_CHUNKS chunks (MAX_CHUNKS_BATCH for a
// batch of tokens, whose chunks each read all of X again).
#define CHUNK_MIN 4096
#define MAX_CHUNKS 64
#define MAX_CHUNKS_BATCH 16

// Rows per chunk for a (rows, cols) matrix and m tokens: it depends on the shape alone, never
// on the thread count, so every output is computed by the same code over the same rows for any
// thread count. units = ceil(rows / ROW_ALIGN);
// rows per chunk = ROW_ALIGN max(ceil(CHUNK_MIN / (ROW_ALIGN cols)), ceil(units / max chunks)).
static size_t chunk_rows(size_t rows, size_t cols, size_t m) {
    size_t units = pool_chunks(rows, ROW_ALIGN);
    size_t per = pool_chunks(CHUNK_MIN, ROW_ALIGN * (cols ? cols : 1));
    size_t most = pool_chunks(units, m > 1 ? MAX_CHUNKS_BATCH : MAX_CHUNKS);
    return (per > most ? per : most) * ROW_ALIGN;
}

// Chunks c0 .. c1 - 1: rows c0 rows .. min(c1 rows, all rows).
static void job_chunks(void *arg, size_t c0, size_t c1) {
    const Job *j = arg;
    size_t b, e, unused;
    pool_chunk(j->w->rows, j->rows, c0, &b, &unused);
    pool_chunk(j->w->rows, j->rows, c1 - 1, &unused, &e);
    j->fn(j->y, j->w->rows, j->in, j->w, b, e);
}

void matmul(Pool *pool, float *y, const MatIn *in, const Tensor *w) {
    assert(w->cols == in->n);
    assert(!(matmul_input_forms(w->type) & MATMUL_Q8_0) || in->q);
    assert(!(matmul_input_forms(w->type) & MATMUL_Q8_K) || in->kq);
    if (w->rows == 0 || in->m == 0) return;
    Job j = {y, in, w, rows_fn(w->type), chunk_rows(w->rows, w->cols, in->m)};
    pool_for(pool, pool_chunks(w->rows, j.rows), job_chunks, &j);
}
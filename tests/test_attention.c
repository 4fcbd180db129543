// test_attention.c: the tuned attention (attention.c) against the plain attention_head of
// kernels.c, and its bitwise determinism over thread counts, scratch and prefill/decode, for
// an f32 and an f16 KV cache; attention_kv_store against quant.h's f32_to_fp16.
//
// Contract: Criterion, libc, libm; a fixed-seed xorshift generator (never rand()). Every
// comparison with the reference is the per-head relative error max|o - r| / max|r| <= 1e-5
// (for f16, also the absolute error <= 1e-5); the reference reads an f16 cache widened to f32.
#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "base/pool.h"
#include "kernels/quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

typedef struct {
    unsigned long long s;
} Rng;

static unsigned long long next_u64(Rng *r) {
    r->s ^= r->s << 13, r->s ^= r->s >> 7, r->s ^= r->s << 17;
    return r->s;
}

static float uniform(Rng *r) {  // in [-1, 1)
    return (float)((double)(next_u64(r) >> 40) / 8388608.0 - 1.0);
}

static float small_int(Rng *r) {  // an integer in -10 .. 10
    return (float)(int)(next_u64(r) % 21) - 10.0f;
}

// One layer's cache and m queries. big: q and k are integers in -10..10, so scores reach
// about +-100 (e^100 overflows a float: only the running max keeps the softmax finite) while
// q . k stays exact in any summation order; otherwise q, k, v are uniform in [-1, 1).
typedef struct {
    AttnShape s;
    size_t m, kv_n, q_n;  // q_n: floats of one query (all heads)
    float *kc, *vc, *q, *out, *ref, *att, *scratch;
} Case;

static Case make_case(size_t n_heads, size_t n_kv, size_t hd, size_t seq, size_t m, int big,
                      unsigned long long seed) {
    Case c = {.s = {n_heads, n_kv, hd, seq, ATTN_KV_F32}, .m = m};
    c.kv_n = n_kv * seq * hd, c.q_n = n_heads * hd;
    c.kc = malloc(c.kv_n * sizeof(float)), c.vc = malloc(c.kv_n * sizeof(float));
    c.q = malloc(m * c.q_n * sizeof(float));
    c.out = malloc(m * c.q_n * sizeof(float)), c.ref = malloc(m * c.q_n * sizeof(float));
    c.att = malloc(seq * sizeof(float));
    c.scratch = malloc(attention_scratch_bytes(&c.s));
    cr_assert(c.kc && c.vc && c.q && c.out && c.ref && c.att && c.scratch);
    Rng r = {seed};
    for (size_t i = 0; i < c.kv_n; i++) {
        c.kc[i] = big ? small_int(&r) : uniform(&r);
        c.vc[i] = uniform(&r);
    }
    for (size_t i = 0; i < m * c.q_n; i++) c.q[i] = big ? small_int(&r) : uniform(&r);
    return c;
}

static void free_case(Case *c) {
    free(c->kc), free(c->vc), free(c->q), free(c->out), free(c->ref), free(c->att);
    free(c->scratch);
}

// The reference: attention_head per query head, with its KV head, over keys lo..pos (all of
// them, or the case's sliding window).
static void reference(Case *c, const float *q, float *out, size_t pos) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads, seq = c->s.seq_len;
    size_t w = c->s.window, lo = w && pos + 1 > w ? pos + 1 - w : 0;
    for (size_t h = 0; h < c->s.n_heads; h++) {
        size_t g = h / group;
        attention_head(out + h * hd, c->att, q + h * hd, c->kc + (g * seq + lo) * hd,
                       c->vc + (g * seq + lo) * hd, pos - lo, hd);
    }
}

static double rel_err(const float *o, const float *r, size_t n) {
    double d = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)o[i] - (double)r[i]));
        mag = fmax(mag, fabs((double)r[i]));
    }
    return d / mag;
}

// Decode at every position 0 .. seq_len-1 against the reference; returns the largest |score|.
static double check_every_position(Case *c, Pool *pool, float *scratch) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads;
    double max_score = 0.0;
    for (size_t pos = 0; pos < c->s.seq_len; pos++) {
        attention_decode(pool, &c->s, c->out, c->q, c->kc, c->vc, pos, scratch);
        reference(c, c->q, c->ref, pos);
        for (size_t h = 0; h < c->s.n_heads; h++) {
            double e = rel_err(c->out + h * hd, c->ref + h * hd, hd);
            cr_assert(e <= TOL, "%zu/%zu heads, head_dim %zu, pos %zu, head %zu: rel err %g",
                      c->s.n_heads, c->s.n_kv_heads, hd, pos, h, e);
            const float *k = c->kc + ((h / group) * c->s.seq_len + pos) * hd;
            double dot = 0.0;
            for (size_t i = 0; i < hd; i++) dot += (double)c->q[h * hd + i] * k[i];
            max_score = fmax(max_score, fabs(dot) / sqrt((double)hd));
        }
    }
    return max_score;
}

static const size_t SHAPES[][2] = {{8, 4}, {6, 6}, {32, 4}, {4, 1}};  // query heads, KV heads
static const size_t HEAD_DIMS[] = {32, 64, 128};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define N_HEAD_DIMS (sizeof HEAD_DIMS / sizeof HEAD_DIMS[0])

// seq_len 300 spans two chunks of positions and ends in a partial tile. Three threads split
// KV heads into chunks for 8/4, 32/4 and 4/1 (4 % 3 != 0), and not for 6/6.
Test(attention, decode_matches_reference_at_every_position) {
    Pool *pool = pool_create(3);
    cr_assert(pool);
    for (size_t si = 0; si < N_SHAPES; si++)
        for (size_t di = 0; di < N_HEAD_DIMS; di++) {
            Case c = make_case(SHAPES[si][0], SHAPES[si][1], HEAD_DIMS[di], 300, 1, 0,
                               7 + si * 10 + di);
            check_every_position(&c, pool, c.scratch);
            free_case(&c);
        }
    pool_destroy(pool);
}

// Sliding windows (Mistral, Phi-3): shorter than a tile, across the chunk boundary, and wider
// than the cache; decode at every position against the reference, with 3 threads that split
// long windows into chunks, and prefill equal to decode bit for bit, for 1 and 3 threads.
Test(attention, sliding_window_matches_reference) {
    const size_t windows[] = {1, 5, 16, 100, 257, 400};
    Pool *pools[2] = {pool_create(1), pool_create(3)};
    cr_assert(pools[0] && pools[1]);
    for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
        size_t si = wi % N_SHAPES;
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], 32, 300, 300, 0, 91 + wi);
        c.s.window = windows[wi];
        check_every_position(&c, pools[1], c.scratch);
        float *dec = malloc(c.q_n * sizeof(float));
        for (int t = 0; t < 2; t++) {
            attention_prefill(pools[t], &c.s, c.out, c.q, c.kc, c.vc, 0, 300, c.scratch);
            for (size_t i = 0; i < 300; i++) {
                attention_decode(NULL, &c.s, dec, c.q + i * c.q_n, c.kc, c.vc, i, NULL);
                cr_assert(memcmp(c.out + i * c.q_n, dec, c.q_n * sizeof(float)) == 0,
                          "window %zu: prefill query %zu differs from decode", windows[wi], i);
            }
        }
        // recording: zeros before the window, and the reference's weights within it
        size_t pos = 299, lo = pos + 1 > windows[wi] ? pos + 1 - windows[wi] : 0;
        float *w = malloc(c.s.n_heads * 300 * sizeof(float));
        attention_decode_rec(pools[1], &c.s, dec, c.q, c.kc, c.vc, pos, c.scratch, w, 300);
        for (size_t h = 0; h < c.s.n_heads; h++) {
            size_t g = h / (c.s.n_heads / c.s.n_kv_heads);
            attention_head(c.ref, c.att, c.q + h * 32, c.kc + (g * 300 + lo) * 32,
                           c.vc + (g * 300 + lo) * 32, pos - lo, 32);
            for (size_t t = 0; t <= pos; t++)
                cr_assert(t < lo ? w[h * 300 + t] == 0.0f
                                 : fabsf(w[h * 300 + t] - c.att[t - lo]) <= 2e-6f,
                          "window %zu, head %zu, key %zu: weight %g", windows[wi], h, t,
                          (double)w[h * 300 + t]);
        }
        free(w), free(dec);
        free_case(&c);
    }
    pool_destroy(pools[0]), pool_destroy(pools[1]);
}

Test(attention, large_scores_need_and_get_the_running_max) {
    for (size_t si = 0; si < N_SHAPES; si++)
        for (size_t di = 0; di < N_HEAD_DIMS; di++) {
            Case c = make_case(SHAPES[si][0], SHAPES[si][1], HEAD_DIMS[di], 300, 1, 1,
                               99 + si * 10 + di);
            double max_score = check_every_position(&c, NULL, NULL);
            cr_assert(max_score > 88.0, "scores up to %g would not overflow expf", max_score);
            free_case(&c);
        }
}

// Head sizes off the specialised 32/64/128: tails of a vector and the largest supported.
Test(attention, other_head_dims_match_reference) {
    const size_t hds[] = {8, 24, 48, 200, ATTN_MAX_HEAD_DIM};
    for (size_t di = 0; di < sizeof hds / sizeof hds[0]; di++) {
        Case c = make_case(4, 2, hds[di], 300, 1, 0, 555 + di);
        check_every_position(&c, NULL, NULL);
        free_case(&c);
    }
}

// Scores that rise with the position (the max grows at every tile, so the accumulator is
// rescaled each time) and that fall (the first tile holds the max).
Test(attention, monotone_scores_match_reference) {
    for (int rising = 0; rising < 2; rising++) {
        Case c = make_case(8, 2, 64, 300, 1, 0, 31 + (unsigned long long)rising);
        for (size_t g = 0; g < 2; g++)
            for (size_t t = 0; t < 300; t++) {
                float w = 30.0f * ((float)t / 299.0f - 0.5f) * (rising ? 1.0f : -1.0f);
                for (size_t i = 0; i < 64; i++)  // along query head 4g, the first of group g
                    c.kc[(g * 300 + t) * 64 + i] = w * c.q[g * 4 * 64 + i];
            }
        check_every_position(&c, NULL, NULL);
        free_case(&c);
    }
}

// Cache rows after pos may hold anything (here NaN): they must not be read, whatever the
// tile or chunk position of pos, and the last KV head's rows end exactly at pos.
Test(attention, never_reads_past_pos) {
    const size_t positions[] = {0, 1, 16, 17, 255, 256, 270};
    for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
        size_t pos = positions[pi];
        Case c = make_case(8, 2, 64, pos + 1, 1, 0, 77 + pi);
        Case d = make_case(8, 2, 64, 300, 1, 0, 77 + pi);  // same data, stride 300, NaN after pos
        for (size_t g = 0; g < 2; g++)
            for (size_t t = 0; t < 300; t++)
                for (size_t i = 0; i < 64; i++) {
                    size_t di = (g * 300 + t) * 64 + i, ci = (g * (pos + 1) + t) * 64 + i;
                    d.kc[di] = t <= pos ? c.kc[ci] : NAN;
                    d.vc[di] = t <= pos ? c.vc[ci] : NAN;
                }
        memcpy(d.q, c.q, c.q_n * sizeof(float));
        attention_decode(NULL, &c.s, c.out, c.q, c.kc, c.vc, pos, NULL);
        attention_decode(NULL, &d.s, d.out, d.q, d.kc, d.vc, pos, NULL);
        cr_assert(memcmp(c.out, d.out, c.q_n * sizeof(float)) == 0, "pos %zu", pos);
        reference(&c, c.q, c.ref, pos);
        cr_assert(rel_err(c.out, c.ref, c.q_n) <= TOL, "pos %zu", pos);
        if (pos >= 3) {  // a prefill block ending at pos: 4 queries, the same query rows
            float *q4 = malloc(4 * c.q_n * sizeof(float)), *o1 = malloc(4 * c.q_n * sizeof(float));
            float *o2 = malloc(4 * c.q_n * sizeof(float));
            for (size_t i = 0; i < 4; i++) memcpy(q4 + i * c.q_n, c.q, c.q_n * sizeof(float));
            attention_prefill(NULL, &c.s, o1, q4, c.kc, c.vc, pos - 3, 4, NULL);
            attention_prefill(NULL, &d.s, o2, q4, d.kc, d.vc, pos - 3, 4, NULL);
            cr_assert(memcmp(o1, o2, 4 * c.q_n * sizeof(float)) == 0, "prefill to pos %zu", pos);
            cr_assert(memcmp(o1 + 3 * c.q_n, c.out, c.q_n * sizeof(float)) == 0);
            free(q4), free(o1), free(o2);
        }
        free_case(&c), free_case(&d);
    }
}

// ---- the f16 cache ----

// A case's cache in f16 (attention_kv_store of its f32 cache) and that f16 cache widened back
// to f32: the reference and the f32 kernel read the widened one.
typedef struct {
    AttnShape s;  // the case's shape with kv_type f16
    uint16_t *kh, *vh;
    float *kw, *vw;
} Half;

static Half make_half(const Case *c) {
    Half h = {.s = c->s};
    h.s.kv_type = ATTN_KV_F16;
    h.kh = malloc(c->kv_n * sizeof(uint16_t)), h.vh = malloc(c->kv_n * sizeof(uint16_t));
    h.kw = malloc(c->kv_n * sizeof(float)), h.vw = malloc(c->kv_n * sizeof(float));
    cr_assert(h.kh && h.vh && h.kw && h.vw);
    attention_kv_store(ATTN_KV_F16, h.kh, c->kc, c->kv_n);
    attention_kv_store(ATTN_KV_F16, h.vh, c->vc, c->kv_n);
    for (size_t i = 0; i < c->kv_n; i++)
        h.kw[i] = fp16_to_f32(h.kh[i]), h.vw[i] = fp16_to_f32(h.vh[i]);
    return h;
}

static void free_half(Half *h) { free(h->kh), free(h->vh), free(h->kw), free(h->vw); }

// The reference over the widened f16 cache.
static void reference_half(Case *c, const Half *h, const float *q, float *out, size_t pos) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads, seq = c->s.seq_len;
    for (size_t i = 0; i < c->s.n_heads; i++) {
        size_t g = i / group;
        attention_head(out + i * hd, c->att, q + i * hd, h->kw + g * seq * hd, h->vw + g * seq * hd,
                       pos, hd);
    }
}

static double abs_err(const float *o, const float *r, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)o[i] - (double)r[i]));
    return d;
}

// Query heads, KV heads, head_dim: GQA and not, groups above SUBG (16), head_dims off the
// multiples of 16 and the largest.
static const size_t HALF_SHAPES[][3] = {{8, 4, 64}, {6, 6, 40}, {32, 4, 128}, {4, 1, 24},
                                        {20, 1, 72}, {12, 3, 8}, {2, 2, ATTN_MAX_HEAD_DIM},
                                        {10, 5, 200}, {8, 2, 32}};
#define N_HALF_SHAPES (sizeof HALF_SHAPES / sizeof HALF_SHAPES[0])
// On and around tile (16) and chunk (256) boundaries, and the last position of a 720 cache.
static const size_t HALF_POS[] = {0, 1, 15, 16, 17, 255, 256, 257, 511, 700, 719};
#define N_HALF_POS (sizeof HALF_POS / sizeof HALF_POS[0])

// The f16 kernel against attention_head on the widened cache: |o - r| <= 1e-5 (outputs are
// averages of v in [-1, 1); the f32 kernel meets the same bound on the same floats), and the
// per-head relative error <= 1e-5 as for f32. Also the large-score cases (integer q and k,
// exact in f16), with 3 threads and scratch (split chunks) and without a pool.
Test(attention, f16_matches_reference) {
    Pool *pool = pool_create(3);
    cr_assert(pool);
    for (int big = 0; big < 2; big++)
        for (size_t si = 0; si < N_HALF_SHAPES; si++) {
            size_t nh = HALF_SHAPES[si][0], nkv = HALF_SHAPES[si][1], hd = HALF_SHAPES[si][2];
            Case c = make_case(nh, nkv, hd, 720, 1, big, 2024 + si + 100 * (size_t)big);
            Half h = make_half(&c);
            for (size_t pi = 0; pi < N_HALF_POS; pi++) {
                size_t pos = HALF_POS[pi];
                attention_decode(si % 2 ? pool : NULL, &h.s, c.out, c.q, h.kh, h.vh, pos,
                                 si % 2 ? c.scratch : NULL);
                reference_half(&c, &h, c.q, c.ref, pos);
                for (size_t i = 0; i < nh; i++) {
                    double a = abs_err(c.out + i * hd, c.ref + i * hd, hd);
                    double e = rel_err(c.out + i * hd, c.ref + i * hd, hd);
                    cr_assert(a <= 1e-5 && e <= TOL,
                              "f16 %zu/%zu heads, head_dim %zu, big %d, pos %zu, head %zu: abs err "
                              "%g, rel err %g", nh, nkv, hd, big, pos, i, a, e);
                }
            }
            free_half(&h);
            free_case(&c);
        }
    pool_destroy(pool);
}

// Every position of a two-chunk cache ending in a partial tile, head_dim off a multiple of 16.
Test(attention, f16_matches_reference_at_every_position) {
    Case c = make_case(8, 2, 24, 300, 1, 0, 8080);
    Half h = make_half(&c);
    for (size_t pos = 0; pos < c.s.seq_len; pos++) {
        attention_decode(NULL, &h.s, c.out, c.q, h.kh, h.vh, pos, NULL);
        reference_half(&c, &h, c.q, c.ref, pos);
        double a = abs_err(c.out, c.ref, c.q_n);
        cr_assert(a <= 1e-5, "pos %zu: abs err %g", pos, a);
    }
    free_half(&h);
    free_case(&c);
}

// The f16 path widens exactly and then runs the f32 arithmetic: its output has the bits of
// the f32 kernel on the widened cache, at any position, thread count and head_dim.
Test(attention, f16_equals_f32_on_widened_cache_bitwise) {
    Pool *pool = pool_create(2);
    cr_assert(pool);
    for (size_t si = 0; si < N_HALF_SHAPES; si++) {
        size_t nh = HALF_SHAPES[si][0], nkv = HALF_SHAPES[si][1], hd = HALF_SHAPES[si][2];
        Case c = make_case(nh, nkv, hd, 720, 1, 0, 6060 + si);
        Half h = make_half(&c);
        for (size_t pi = 0; pi < N_HALF_POS; pi++) {
            size_t pos = HALF_POS[pi];
            attention_decode(pool, &h.s, c.out, c.q, h.kh, h.vh, pos, c.scratch);
            attention_decode(pool, &c.s, c.ref, c.q, h.kw, h.vw, pos, c.scratch);
            cr_assert(memcmp(c.out, c.ref, c.q_n * sizeof(float)) == 0,
                      "%zu/%zu heads, head_dim %zu, pos %zu", nh, nkv, hd, pos);
        }
        free_half(&h);
        free_case(&c);
    }
    pool_destroy(pool);
}

// f16 against f32 on the same inputs. Rounding to f16 changes each k and v element by at
// most u = 2^-11 of its magnitude (round to nearest, 11 significant bits), or by at most
// 2^-25 below 2^-14 (f16 subnormals). So score t of head h moves by at most
//   d_t = (u * sum_i |q_i k_t,i| + 2^-25 * sum_i |q_i|) / sqrt(head_dim),
// each softmax weight by a factor in [e^(-2 d), e^(2 d)] with d = max_t d_t, hence
//   |out16 - out32| <= (e^(2 d) - 1) max|v| + (u max|v| + 2^-25)
// (the weights' change, then v's own rounding under weights that sum to 1), plus each
// kernel's f32 error (<= 1e-5 against the reference, so 2e-5 for both). For q, k, v uniform
// in [-1, 1) at head_dim 64 this is at most about 8e-3 * max|v| (d <= 8u), typically far
// less; the test asserts the bound computed from the data, and that the error is not zero.
Test(attention, f16_close_to_f32_within_rounding_bound) {
    const double u = 0x1p-11, sub = 0x1p-25;
    for (size_t si = 0; si < N_HALF_SHAPES; si++) {
        size_t nh = HALF_SHAPES[si][0], nkv = HALF_SHAPES[si][1], hd = HALF_SHAPES[si][2];
        size_t group = nh / nkv;
        Case c = make_case(nh, nkv, hd, 720, 1, 0, 9090 + si);
        Half h = make_half(&c);
        double worst = 0.0, seen = 0.0;
        for (size_t pi = 0; pi < N_HALF_POS; pi++) {
            size_t pos = HALF_POS[pi];
            attention_decode(NULL, &h.s, c.out, c.q, h.kh, h.vh, pos, NULL);
            attention_decode(NULL, &c.s, c.ref, c.q, c.kc, c.vc, pos, NULL);
            for (size_t i = 0; i < nh; i++) {
                const float *q = c.q + i * hd;
                size_t base = (i / group) * c.s.seq_len * hd;
                double d = 0.0, vmax = 0.0, qsum = 0.0;
                for (size_t x = 0; x < hd; x++) qsum += fabs((double)q[x]);
                for (size_t t = 0; t <= pos; t++) {
                    double qk = 0.0;
                    for (size_t x = 0; x < hd; x++) {
                        qk += fabs((double)q[x] * c.kc[base + t * hd + x]);
                        vmax = fmax(vmax, fabs((double)c.vc[base + t * hd + x]));
                    }
                    d = fmax(d, (u * qk + sub * qsum) / sqrt((double)hd));
                }
                double bound = expm1(2.0 * d) * vmax + u * vmax + sub + 2e-5;
                double a = abs_err(c.out + i * hd, c.ref + i * hd, hd);
                cr_assert(a <= bound, "%zu/%zu heads, head_dim %zu, pos %zu, head %zu: |f16 - f32| "
                          "%g > bound %g", nh, nkv, hd, pos, i, a, bound);
                worst = fmax(worst, a / bound), seen = fmax(seen, a);
            }
        }
        cr_assert(seen > 0.0, "f16 rounding changed nothing: is the cache f16?");
        cr_log_info("f16 vs f32 %zu/%zu/%zu: max |diff| %.3g, at most %.2f of the bound", nh, nkv,
                    hd, seen, worst);
        free_half(&h);
        free_case(&c);
    }
}

// The cache a case's kernel reads: its f32 cache, or the f16 copy (h).
typedef struct {
    const AttnShape *s;
    const void *kc, *vc;
} Cache;

static Cache cache_of(const Case *c, const Half *h, int f16) {
    return f16 ? (Cache){&h->s, h->kh, h->vh} : (Cache){&c->s, c->kc, c->vc};
}

// The same bits for no pool and pools of 1..4 threads, with and without scratch, at
// positions on and around chunk boundaries of a 5-chunk cache; for f32, the result is also
// checked against the reference.
static void check_any_thread_count(int f16, size_t (*head_dim)(size_t si), unsigned long long seed) {
    const size_t positions[] = {0, 15, 255, 256, 511, 700, 1099};
    Pool *pools[5] = {NULL};
    for (int t = 1; t <= 4; t++) cr_assert((pools[t] = pool_create(t)));
    for (size_t si = 0; si < N_SHAPES; si++) {
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], head_dim(si), 1100, 1, 0, seed + si);
        Half h = make_half(&c);
        Cache k = cache_of(&c, &h, f16);
        size_t bytes = c.q_n * sizeof(float);
        float *base = malloc(bytes);
        for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
            size_t pos = positions[pi];
            attention_decode(NULL, k.s, base, c.q, k.kc, k.vc, pos, NULL);
            if (!f16) {
                reference(&c, c.q, c.ref, pos);
                cr_assert(rel_err(base, c.ref, c.q_n) <= TOL);
            }
            for (int t = 1; t <= 4; t++)
                for (int with_scratch = 0; with_scratch < 2; with_scratch++) {
                    memset(c.out, 0xff, bytes);
                    attention_decode(pools[t], k.s, c.out, c.q, k.kc, k.vc, pos,
                                     with_scratch ? c.scratch : NULL);
                    cr_assert(memcmp(c.out, base, bytes) == 0,
                              "%s %zu/%zu heads, pos %zu: %d threads (scratch %d) differ",
                              f16 ? "f16" : "f32", c.s.n_heads, c.s.n_kv_heads, pos, t, with_scratch);
                }
        }
        free(base);
        free_half(&h);
        free_case(&c);
    }
    for (int t = 1; t <= 4; t++) pool_destroy(pools[t]);
}

// Prefill's query i gives the bits of decode at pos0 + i, for any thread count: long and
// short batches, batches that cross chunk boundaries, and batches small enough (m * KV heads
// below the thread count) to split each query's positions across threads. The last query is
// also checked against the reference (for f16, on the widened cache).
static void check_prefill_equals_decode(int f16, size_t (*head_dim)(size_t si),
                                        unsigned long long seed) {
    const size_t batches[][2] = {{0, 300}, {250, 70}, {511, 2}, {600, 1}, {0, 1}};  // pos0, m
    Pool *pools[5] = {NULL};
    for (int t = 1; t <= 4; t++) cr_assert((pools[t] = pool_create(t)));
    for (size_t si = 0; si < N_SHAPES; si++) {
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], head_dim(si), 700, 300, 0, seed + si);
        Half h = make_half(&c);
        Cache k = cache_of(&c, &h, f16);
        float *dec = malloc(c.q_n * sizeof(float));
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            size_t pos0 = batches[bi][0], m = batches[bi][1];
            for (int t = 1; t <= 4; t++) {
                memset(c.out, 0xff, m * c.q_n * sizeof(float));
                attention_prefill(pools[t], k.s, c.out, c.q, k.kc, k.vc, pos0, m, c.scratch);
                for (size_t i = 0; i < m; i++) {
                    attention_decode(NULL, k.s, dec, c.q + i * c.q_n, k.kc, k.vc, pos0 + i, NULL);
                    cr_assert(memcmp(c.out + i * c.q_n, dec, c.q_n * sizeof(float)) == 0,
                              "%s %zu/%zu heads, %d threads: prefill(%zu, %zu) query %zu differs",
                              f16 ? "f16" : "f32", c.s.n_heads, c.s.n_kv_heads, t, pos0, m, i);
                }
                const float *last = c.q + (m - 1) * c.q_n, *got = c.out + (m - 1) * c.q_n;
                if (f16) {
                    reference_half(&c, &h, last, c.ref, pos0 + m - 1);
                    cr_assert(abs_err(got, c.ref, c.q_n) <= 1e-5);
                } else {
                    reference(&c, last, c.ref, pos0 + m - 1);  // and it is right
                    cr_assert(rel_err(got, c.ref, c.q_n) <= TOL);
                }
            }
        }
        free(dec);
        free_half(&h);
        free_case(&c);
    }
    for (int t = 1; t <= 4; t++) pool_destroy(pools[t]);
}

// Head sizes per shape: the f16 runs also take head_dims off the multiples of 16.
static size_t hd_64(size_t si) { return (void)si, 64; }
static size_t hd_32(size_t si) { return (void)si, 32; }
static size_t hd_f16_threads(size_t si) { return si == 1 ? 40 : 64; }
static size_t hd_f16_prefill(size_t si) { return si == 3 ? 24 : 32; }

Test(attention, bitwise_identical_for_any_thread_count) { check_any_thread_count(0, hd_64, 1234); }
Test(attention, f16_bitwise_identical_for_any_thread_count) {
    check_any_thread_count(1, hd_f16_threads, 4567);
}
Test(attention, prefill_equals_decode_bitwise) { check_prefill_equals_decode(0, hd_32, 4321); }
Test(attention, f16_prefill_equals_decode_bitwise) {
    check_prefill_equals_decode(1, hd_f16_prefill, 7654);
}

// As never_reads_past_pos, for f16: rows after pos hold f16 NaN (0x7e00), and a cache of
// exactly pos + 1 rows per KV head ends at pos (AddressSanitizer sees any read past it).
Test(attention, f16_never_reads_past_pos) {
    const size_t positions[] = {0, 1, 16, 17, 30, 31, 32, 33, 46, 254, 255, 256, 270};
    for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
        size_t pos = positions[pi];
        Case c = make_case(8, 2, 64, pos + 1, 1, 0, 97 + pi);
        Half hc = make_half(&c);
        AttnShape ds = hc.s;
        ds.seq_len = 300;
        uint16_t *dk = malloc(2 * 300 * 64 * sizeof(uint16_t));
        uint16_t *dv = malloc(2 * 300 * 64 * sizeof(uint16_t));
        cr_assert(dk && dv);
        for (size_t g = 0; g < 2; g++)
            for (size_t t = 0; t < 300; t++)
                for (size_t i = 0; i < 64; i++) {
                    size_t di = (g * 300 + t) * 64 + i, ci = (g * (pos + 1) + t) * 64 + i;
                    dk[di] = t <= pos ? hc.kh[ci] : 0x7e00;
                    dv[di] = t <= pos ? hc.vh[ci] : 0x7e00;
                }
        float *dout = malloc(c.q_n * sizeof(float));
        attention_decode(NULL, &hc.s, c.out, c.q, hc.kh, hc.vh, pos, NULL);
        attention_decode(NULL, &ds, dout, c.q, dk, dv, pos, NULL);
        cr_assert(memcmp(c.out, dout, c.q_n * sizeof(float)) == 0, "pos %zu", pos);
        reference_half(&c, &hc, c.q, c.ref, pos);
        cr_assert(abs_err(c.out, c.ref, c.q_n) <= 1e-5, "pos %zu", pos);
        free(dk), free(dv), free(dout);
        free_half(&hc);
        free_case(&c);
    }
}

// attention_kv_store: f32 copies; f16 gives f32_to_fp16's bits for every value (SIMD body
// and scalar tail alike): random bit patterns (all exponents: f32 subnormals, NaNs with
// payloads, infinities), values around f16's limits and rounding ties, at every length
// 0 .. 70 and every start offset 0 .. 15 (unaligned, across the vector widths).
Test(attention, kv_store_f16_matches_f32_to_fp16) {
    cr_assert(attention_kv_bytes(ATTN_KV_F32) == 4 && attention_kv_bytes(ATTN_KV_F16) == 2);
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t));
    cr_assert(x && y && h);
    const float special[] = {
        0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, -65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f,
        INFINITY, -INFINITY, NAN, -NAN, 0x1p-14f, 0x1.ff8p-15f, 0x1p-24f, 0x1p-25f, 0x1.0001p-25f,
        0x1.8p-24f, 0x1.4p-23f, 0x1p-26f, 0x1p-149f, -0x1p-149f, 0x1p-126f, 0x1.002p0f,
        0x1.006p0f, 0x1.001p0f, 0x1.003p0f, 2049.0f, 2051.0f, 1e-8f, -3e-5f, 6.1e-5f};
    const uint32_t nan_bits[] = {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7fbfffffu, 0x7fffe000u,
                                 0x7f802000u, 0xffffffffu};
    size_t ns = sizeof special / sizeof special[0], nn = sizeof nan_bits / sizeof nan_bits[0];
    Rng r = {0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < N; i++) {
        uint64_t b = next_u64(&r);
        if (i % 4 == 0) x[i] = f32_from_bits((uint32_t)b);  // any bits
        else if (i % 4 == 1)  // exponents around f16's range (2^-28 .. 2^17), any sign
            x[i] = ldexpf(1.0f + (float)(b >> 41) * 0x1p-23f, (int)((b >> 8) % 46) - 28) *
                   ((b & 1) ? -1.0f : 1.0f);
        else if (i % 4 == 2) x[i] = uniform(&r);  // what a cache holds
        else x[i] = i % 8 == 3 ? special[(b >> 20) % ns] : f32_from_bits(nan_bits[(b >> 20) % nn]);
    }
    for (size_t i = 0; i < ns && i < N; i++) x[i] = special[i];
    for (size_t i = 0; i < nn; i++) x[ns + i] = f32_from_bits(nan_bits[i]);

    attention_kv_store(ATTN_KV_F16, h, x, N);
    for (size_t i = 0; i < N; i++)
        cr_assert(h[i] == f32_to_fp16(x[i]), "x[%zu] = %a (bits %08x): %04x, f32_to_fp16 %04x", i,
                  (double)x[i], (unsigned)f32_bits(x[i]), h[i], f32_to_fp16(x[i]));
    for (size_t off = 0; off < 16; off++)
        for (size_t n = 0; n <= 70; n++) {
            memset(h, 0xab, (n + 32) * sizeof(uint16_t));
            attention_kv_store(ATTN_KV_F16, h + off, x + 100 + off * 7, n);
            for (size_t i = 0; i < off; i++) cr_assert(h[i] == 0xabab, "wrote before dst");
            for (size_t i = 0; i < n; i++)
                cr_assert(h[off + i] == f32_to_fp16(x[100 + off * 7 + i]), "off %zu, n %zu, i %zu",
                          off, n, i);
            for (size_t i = off + n; i < n + 32; i++) cr_assert(h[i] == 0xabab, "wrote past n");
        }
    attention_kv_store(ATTN_KV_F32, y, x, N);
    cr_assert(memcmp(x, y, N * sizeof(float)) == 0);
    free(x), free(y), free(h);
}

// ---- recording: the weights the kernel used (attention_*_rec) ----

#define W_TOL 2e-6   // |weight - reference weight|: two softmaxes of the same f32 scores
#define SUM_TOL 1e-5 // |sum of a row - 1|

// Reference weights of every head at pos: attention_head's att row, per query head. ref_w is
// (n_heads, seq_len); kc, vc are the f32 (or widened f16) cache.
static void reference_weights(Case *c, const float *kc, const float *vc, const float *q,
                              size_t pos, float *ref_w) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads, seq = c->s.seq_len;
    for (size_t h = 0; h < c->s.n_heads; h++) {
        size_t g = h / group;
        attention_head(c->ref + h * hd, ref_w + h * seq, q + h * hd, kc + g * seq * hd,
                       vc + g * seq * hd, pos, hd);
    }
}

// Checks recorded rows (n_heads, stride) at pos against the reference: each weight within
// W_TOL, each row's sum within SUM_TOL of 1, and the cells past pos untouched (NaN sentinels).
static void check_rows(const Case *c, const float *w, size_t stride, const float *ref_w,
                       size_t pos, const char *what) {
    for (size_t h = 0; h < c->s.n_heads; h++) {
        const float *row = w + h * stride, *ref = ref_w + h * c->s.seq_len;
        double sum = 0.0;
        for (size_t t = 0; t <= pos; t++) {
            cr_assert(fabs((double)row[t] - ref[t]) <= W_TOL,
                      "%s: %zu/%zu heads, hd %zu, pos %zu, head %zu, key %zu: %.9g vs %.9g", what,
                      c->s.n_heads, c->s.n_kv_heads, c->s.head_dim, pos, h, t, row[t], ref[t]);
            sum += row[t];
        }
        cr_assert(fabs(sum - 1.0) <= SUM_TOL, "%s: pos %zu head %zu sums to %.9g", what, pos, h,
                  sum);
        for (size_t t = pos + 1; t < stride; t++)
            cr_assert(isnan(row[t]), "%s: pos %zu head %zu: key %zu past pos written", what,
                      pos, h, t);
    }
}

// Decode with recording, f32 and f16 caches, at positions around tiles and chunks, on one
// thread, on 3 threads with scratch (positions split across threads, then folded) and
// without: the weights match attention_head's, and the output is bitwise the output without
// recording.
Test(attention, recorded_weights_match_reference) {
    const size_t positions[] = {0, 1, 15, 16, 17, 255, 256, 257, 600};
    Pool *pool = pool_create(3);
    cr_assert(pool);
    for (size_t si = 0; si < N_HALF_SHAPES; si++) {
        for (int big = 0; big < 2; big++) {
            Case c = make_case(HALF_SHAPES[si][0], HALF_SHAPES[si][1], HALF_SHAPES[si][2], 601, 1,
                               big, 99 + si * 2 + (size_t)big);
            Half hf = make_half(&c);
            size_t seq = c.s.seq_len, stride = seq + 3, qb = c.q_n * sizeof(float);
            float *w = malloc(c.s.n_heads * stride * sizeof(float));
            float *ref_w = malloc(c.s.n_heads * seq * sizeof(float)), *plain = malloc(qb);
            cr_assert(w && ref_w && plain);
            for (int f16 = 0; f16 < 2; f16++) {
                const AttnShape *s = f16 ? &hf.s : &c.s;
                const void *kc = f16 ? (const void *)hf.kh : c.kc, *vc = f16 ? (const void *)hf.vh : c.vc;
                for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
                    size_t pos = positions[pi];
                    reference_weights(&c, f16 ? hf.kw : c.kc, f16 ? hf.vw : c.vc, c.q, pos, ref_w);
                    for (int mode = 0; mode < 3; mode++) {  // no pool; 3 threads; 3 + scratch
                        Pool *p = mode ? pool : NULL;
                        float *scratch = mode == 2 ? c.scratch : NULL;
                        for (size_t i = 0; i < c.s.n_heads * stride; i++) w[i] = NAN;
                        attention_decode(p, s, plain, c.q, kc, vc, pos, scratch);
                        attention_decode_rec(p, s, c.out, c.q, kc, vc, pos, scratch, w, stride);
                        cr_assert(memcmp(c.out, plain, qb) == 0,
                                  "recording changed the output (pos %zu, mode %d)", pos, mode);
                        check_rows(&c, w, stride, ref_w, pos, f16 ? "f16" : "f32");
                    }
                }
            }
            free(w), free(ref_w), free(plain);
            free_half(&hf);
            free_case(&c);
        }
    }
    pool_destroy(pool);
}

// Prefill with recording gives the bits of decode with recording at pos0 + i, for batches
// that cross a chunk boundary and batches split per query (m * KV heads below the threads);
// the output is bitwise the output of prefill without recording.
Test(attention, recorded_prefill_equals_recorded_decode_bitwise) {
    const size_t batches[][2] = {{0, 40}, {250, 12}, {300, 1}, {5, 2}};  // pos0, m
    Pool *pools[2] = {pool_create(1), pool_create(4)};
    cr_assert(pools[0] && pools[1]);
    for (size_t si = 0; si < N_SHAPES; si++) {
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], 64, 320, 40, 0, 555 + si);
        size_t stride = c.s.seq_len, rowset = c.s.n_heads * stride, qb = c.q_n * sizeof(float);
        float *w = malloc(40 * rowset * sizeof(float)), *wd = malloc(rowset * sizeof(float));
        float *plain = malloc(40 * qb), *od = malloc(qb);
        cr_assert(w && wd && plain && od);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            size_t pos0 = batches[bi][0], m = batches[bi][1];
            for (int pi = 0; pi < 2; pi++) {
                memset(w, 0, 40 * rowset * sizeof(float));
                attention_prefill(pools[pi], &c.s, plain, c.q, c.kc, c.vc, pos0, m, c.scratch);
                attention_prefill_rec(pools[pi], &c.s, c.out, c.q, c.kc, c.vc, pos0, m, c.scratch,
                                      w, stride);
                cr_assert(memcmp(c.out, plain, m * qb) == 0, "recording changed prefill's output");
                for (size_t i = 0; i < m; i++) {
                    memset(wd, 0, rowset * sizeof(float));
                    attention_decode_rec(NULL, &c.s, od, c.q + i * c.q_n, c.kc, c.vc, pos0 + i,
                                         NULL, wd, stride);
                    cr_assert(memcmp(w + i * rowset, wd, rowset * sizeof(float)) == 0,
                              "%zu/%zu heads: prefill (pos0 %zu, m %zu) query %zu differs",
                              c.s.n_heads, c.s.n_kv_heads, pos0, m, i);
                }
            }
        }
        free(w), free(wd), free(plain), free(od);
        free_case(&c);
    }
    pool_destroy(pools[0]), pool_destroy(pools[1]);
}

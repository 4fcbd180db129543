// test_attention.c: the tuned attention (attention.c) against the plain attention_head of
// kernels.c, and its bitwise determinism over thread counts, scratch and prefill/decode.
//
// Contract: Criterion, libc, libm; a fixed-seed xorshift generator (never rand()). Every
// comparison with the reference is the per-head relative error max|o - r| / max|r| <= 1e-5.
#include "../attention.h"
#include "../kernels.h"
#include "../pool.h"

#include <criterion/criterion.h>
#include <math.h>
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
    Case c = {.s = {n_heads, n_kv, hd, seq}, .m = m};
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

// The reference: attention_head per query head, with its KV head.
static void reference(Case *c, const float *q, float *out, size_t pos) {
    size_t hd = c->s.head_dim, group = c->s.n_heads / c->s.n_kv_heads, seq = c->s.seq_len;
    for (size_t h = 0; h < c->s.n_heads; h++) {
        size_t g = h / group;
        attention_head(out + h * hd, c->att, q + h * hd, c->kc + g * seq * hd, c->vc + g * seq * hd,
                       pos, hd);
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

// The same bits for no pool and pools of 1..4 threads, with and without scratch, at
// positions on and around chunk boundaries of a 5-chunk cache.
Test(attention, bitwise_identical_for_any_thread_count) {
    const size_t positions[] = {0, 15, 255, 256, 511, 700, 1099};
    Pool *pools[5] = {NULL};
    for (int t = 1; t <= 4; t++) cr_assert((pools[t] = pool_create(t)));
    for (size_t si = 0; si < N_SHAPES; si++) {
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], 64, 1100, 1, 0, 1234 + si);
        size_t bytes = c.q_n * sizeof(float);
        float *base = malloc(bytes);
        for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
            size_t pos = positions[pi];
            attention_decode(NULL, &c.s, base, c.q, c.kc, c.vc, pos, NULL);
            reference(&c, c.q, c.ref, pos);
            cr_assert(rel_err(base, c.ref, c.q_n) <= TOL);
            for (int t = 1; t <= 4; t++)
                for (int with_scratch = 0; with_scratch < 2; with_scratch++) {
                    memset(c.out, 0xff, bytes);
                    attention_decode(pools[t], &c.s, c.out, c.q, c.kc, c.vc, pos,
                                     with_scratch ? c.scratch : NULL);
                    cr_assert(memcmp(c.out, base, bytes) == 0,
                              "%zu/%zu heads, pos %zu: %d threads (scratch %d) differ", c.s.n_heads,
                              c.s.n_kv_heads, pos, t, with_scratch);
                }
        }
        free(base);
        free_case(&c);
    }
    for (int t = 1; t <= 4; t++) pool_destroy(pools[t]);
}

// Prefill's query i gives the bits of decode at pos0 + i, for any thread count: long and
// short batches, batches that cross chunk boundaries, and batches small enough (m * KV heads
// below the thread count) to split each query's positions across threads.
Test(attention, prefill_equals_decode_bitwise) {
    const size_t batches[][2] = {{0, 300}, {250, 70}, {511, 2}, {600, 1}, {0, 1}};  // pos0, m
    Pool *pools[5] = {NULL};
    for (int t = 1; t <= 4; t++) cr_assert((pools[t] = pool_create(t)));
    for (size_t si = 0; si < N_SHAPES; si++) {
        Case c = make_case(SHAPES[si][0], SHAPES[si][1], 32, 700, 300, 0, 4321 + si);
        float *dec = malloc(c.q_n * sizeof(float));
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            size_t pos0 = batches[bi][0], m = batches[bi][1];
            for (int t = 1; t <= 4; t++) {
                memset(c.out, 0xff, m * c.q_n * sizeof(float));
                attention_prefill(pools[t], &c.s, c.out, c.q, c.kc, c.vc, pos0, m, c.scratch);
                for (size_t i = 0; i < m; i++) {
                    attention_decode(NULL, &c.s, dec, c.q + i * c.q_n, c.kc, c.vc, pos0 + i, NULL);
                    cr_assert(memcmp(c.out + i * c.q_n, dec, c.q_n * sizeof(float)) == 0,
                              "%zu/%zu heads, %d threads: prefill(%zu, %zu) query %zu differs",
                              c.s.n_heads, c.s.n_kv_heads, t, pos0, m, i);
                }
                reference(&c, c.q + (m - 1) * c.q_n, c.ref, pos0 + m - 1);  // and it is right
                cr_assert(rel_err(c.out + (m - 1) * c.q_n, c.ref, c.q_n) <= TOL);
            }
        }
        free(dec);
        free_case(&c);
    }
    for (int t = 1; t <= 4; t++) pool_destroy(pools[t]);
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
        free_case(&c), free_case(&d);
    }
}

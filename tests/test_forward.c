// tests/test_forward.c: the thread pool, and the fast forward pass against the plain one:
// prefill against one token at a time, and bitwise identical results for any thread count.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "base/pool.h"
#include "runtime/transformer.h"
#include "helpers.h"

// ----------------------------------------------------------------------------
// pool

typedef struct {
    atomic_int hits[8];
    atomic_int calls;
} Hits;

static void count_hit(void *arg, int thread, int n_threads) {
    Hits *h = arg;
    cr_assert(thread >= 0 && thread < n_threads && n_threads <= 8);
    atomic_fetch_add(&h->hits[thread], 1);
    atomic_fetch_add(&h->calls, 1);
}

Test(pool, runs_every_thread_once_per_call) {
    for (int nt = 1; nt <= 5; nt++) {
        Pool *p = pool_create(nt);
        cr_assert(p);
        cr_assert_eq(pool_size(p), nt);
        Hits h = {0};
        for (int i = 0; i < 2000; i++) pool_run(p, count_hit, &h);
        for (int t = 0; t < nt; t++) cr_assert_eq(atomic_load(&h.hits[t]), 2000, "thread %d", t);
        cr_assert_eq(atomic_load(&h.calls), 2000 * nt);
        pool_destroy(p);
    }
    Hits h = {0};
    pool_run(NULL, count_hit, &h);  // no pool: the caller runs it as thread 0 of 1
    cr_assert_eq(atomic_load(&h.hits[0]), 1);
}

Test(pool, range_partitions_in_aligned_blocks) {
    size_t sizes[] = {0, 1, 7, 16, 100, 1000, 32001};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int nt = 1; nt <= 7; nt++)
            for (size_t align = 1; align <= 16; align *= 4) {
                size_t next = 0;
                for (int t = 0; t < nt; t++) {
                    size_t b, e;
                    pool_range(sizes[si], align, t, nt, &b, &e);
                    cr_assert_eq(b, next, "blocks are contiguous");
                    cr_assert(e >= b);
                    cr_assert(b % align == 0 || b == sizes[si]);
                    next = e;
                }
                cr_assert_eq(next, sizes[si], "blocks cover everything");
            }
}

// pool_for over n items in chunks of `size`: every item is counted once.
typedef struct {
    size_t n, size;
    atomic_int *seen;      // (n) calls that covered each item
    atomic_int calls;
    size_t slow_chunk;     // this chunk sleeps (a thread that lost its core), or SIZE_MAX
    int *owner;            // or (chunks) which thread ran each chunk (see thread_id)
} Cover;

// A small number per thread, for telling threads apart.
static atomic_int thread_ids;
static _Thread_local int thread_id;

static void cover_one(Cover *cv, size_t c) {
    size_t b, e;
    pool_chunk(cv->n, cv->size, c, &b, &e);
    cr_assert(b < e, "chunk %zu of %zu items in %zu: empty", c, cv->n, cv->size);
    if (cv->owner) {
        if (!thread_id) thread_id = atomic_fetch_add(&thread_ids, 1) + 1;
        cv->owner[c] = thread_id;
    }
    if (c == cv->slow_chunk) {
        nanosleep(&(struct timespec){0, 250 * 1000 * 1000}, NULL);  // long enough for a loaded host
    }
    for (size_t i = b; i < e; i++) atomic_fetch_add(&cv->seen[i], 1);
    atomic_fetch_add(&cv->calls, 1);
}

static void cover_chunk(void *arg, size_t c0, size_t c1) {
    cr_assert(c0 < c1);
    for (size_t c = c0; c < c1; c++) cover_one(arg, c);
}

static void check_cover(Pool *p, size_t n, size_t size, size_t slow) {
    Cover cv = {.n = n, .size = size, .seen = calloc(n + 1, sizeof(atomic_int)),
                .slow_chunk = slow};
    cr_assert(cv.seen);
    size_t chunks = pool_chunks(n, size);
    pool_for(p, chunks, cover_chunk, &cv);
    cr_assert_eq((size_t)atomic_load(&cv.calls), chunks, "%zu items in %zu, %d threads", n, size,
                 pool_size(p));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&cv.seen[i]), 1, "item %zu of %zu in chunks of %zu, %d threads",
                     i, n, size, pool_size(p));
    free(cv.seen);
}

Test(pool, for_covers_every_item_once) {
    size_t sizes[] = {0, 1, 5, 16, 17, 100, 1000, 4097};
    size_t chunk[] = {1, 3, 16, 64, 1000, 5000};
    for (int nt = 1; nt <= 8; nt++) {
        Pool *p = pool_create(nt);
        cr_assert(p);
        pool_allow_solo(p, 0);  // every job offered to every thread, even on fewer cores
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (size_t ci = 0; ci < sizeof chunk / sizeof chunk[0]; ci++)
                check_cover(p, sizes[si], chunk[ci], SIZE_MAX);
        pool_destroy(p);
    }
    check_cover(NULL, 100, 7, SIZE_MAX);  // no pool: the caller runs every chunk
}

// pool_run and pool_for jobs in turns, many short ones: a worker that wakes late takes chunks of
// whatever job is in flight, and still runs every pool_run job once.
Test(pool, for_and_run_interleave) {
    for (int nt = 2; nt <= 5; nt++) {
        Pool *p = pool_create(nt);
        cr_assert(p);
        pool_allow_solo(p, 0);
        Hits h = {0};
        for (int i = 0; i < 3000; i++) {
            if (i % 3 == 0) pool_run(p, count_hit, &h);
            else check_cover(p, (size_t)(i % 7) * 5, 2, SIZE_MAX);
        }
        for (int t = 0; t < nt; t++) cr_assert_eq(atomic_load(&h.hits[t]), 1000, "thread %d", t);
        pool_destroy(p);
    }
}

// A thread that stalls inside a chunk (as one preempted by another process would) delays only
// that chunk: the others go on taking the rest, and each chunk still runs once. (On a host
// loaded by other processes a worker may get no core during the whole stall, so each thread
// count has three tries with a fresh pool; a pool that never lets the others in fails all.)
static size_t stalled_run(int nt) {
    Pool *p = pool_create(nt);
    cr_assert(p);
    size_t n = 400, others = 0;
    Cover cv = {.n = n, .size = 1, .seen = calloc(n, sizeof(atomic_int)), .slow_chunk = 0,
                .owner = calloc(n, sizeof(int))};
    cr_assert(cv.seen && cv.owner);
    pool_for(p, n, cover_chunk, &cv);  // chunk 0, the first taken, sleeps 250 ms
    cr_assert_eq(atomic_load(&cv.calls), (int)n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&cv.seen[i]), 1, "chunk %zu", i);
        others += cv.owner[i] != cv.owner[0];
    }
    free(cv.seen), free(cv.owner);
    check_cover(p, 64, 4, 3);  // again with another stalled chunk: the caller may now go solo
    for (int i = 0; i < 200; i++) check_cover(p, (size_t)i, 3, SIZE_MAX);
    pool_destroy(p);
    return others;
}

Test(pool, for_survives_a_stalled_thread) {
    for (int nt = 2; nt <= 4; nt++) {
        size_t others = 0;
        for (int try = 0; try < 3 && others == 0; try++) others = stalled_run(nt);
        cr_assert(others > 0, "%d threads: the others took no chunk, 3 times", nt);
    }
}

// ----------------------------------------------------------------------------
// forward

static float max_rel_err(const float *a, const float *b, size_t n) {
    float scale = 0.0f, err = 0.0f;
    for (size_t i = 0; i < n; i++) scale = fmaxf(scale, fabsf(b[i]));
    for (size_t i = 0; i < n; i++) err = fmaxf(err, fabsf(a[i] - b[i]));
    return err / fmaxf(scale, 1e-30f);
}

// Runs tokens one at a time through the fast and the plain pass; returns the worst
// relative error of the logits (relative to their largest magnitude).
static float fast_vs_plain(const char *path, const int *tokens, size_t n, int threads) {
    Pool *pool = pool_create(threads);
    Transformer fast, plain;
    cr_assert_eq(transformer_build(&fast, path, pool, ATTN_KV_F32), MODEL_OK);
    cr_assert_eq(transformer_build(&plain, path, NULL, ATTN_KV_F32), MODEL_OK);
    size_t vocab = (size_t)fast.model.header.vocab_size;
    float worst = 0.0f;
    for (size_t p = 0; p < n; p++) {
        float *a = transformer_forward(&fast, &tokens[p], 1, p);
        float *b = transformer_forward_plain(&plain, tokens[p], p);
        worst = fmaxf(worst, max_rel_err(a, b, vocab));
    }
    transformer_free(&fast);
    transformer_free(&plain);
    pool_destroy(pool);
    return worst;
}

static void some_tokens(int *t, size_t n, int vocab) {
    uint64_t s = 77;
    for (size_t i = 0; i < n; i++) t[i] = (int)(test_rand(&s) % (uint64_t)vocab);
}

Test(forward, fast_matches_plain_test_model) {
    const char *path = tmp_file("fwd.slm");
    write_test_model(path, 0);
    int tokens[32];
    some_tokens(tokens, 32, 300);
    float err = fast_vs_plain(path, tokens, 32, 2);
    cr_assert(err < 1e-4f, "logits differ by %g of their scale", err);
}

Test(forward, fast_matches_plain_stories260K) {
    char *path = export_stories260k();
    int tokens[100];
    some_tokens(tokens, 100, 512);
    float err = fast_vs_plain(path, tokens, 100, 3);
    cr_assert(err < 1e-4f, "logits differ by %g of their scale", err);
    free(path);
}

// Logits after each position, for a thread count and a prompt chunking.
static float *run_logits(const char *path, const int *tokens, size_t n, size_t prefill,
                         int threads) {
    Pool *pool = pool_create(threads);
    Transformer t;
    cr_assert_eq(transformer_build(&t, path, pool, ATTN_KV_F32), MODEL_OK);
    size_t vocab = (size_t)t.model.header.vocab_size;
    float *all = calloc(n * vocab, sizeof(float));
    // the first `prefill` tokens as one batch (only the last logits exist), then one by one
    float *l = transformer_forward(&t, tokens, prefill, 0);
    memcpy(all + (prefill - 1) * vocab, l, vocab * sizeof(float));
    for (size_t p = prefill; p < n; p++) {
        l = transformer_forward(&t, &tokens[p], 1, p);
        memcpy(all + p * vocab, l, vocab * sizeof(float));
    }
    transformer_free(&t);
    pool_destroy(pool);
    return all;
}

Test(forward, bitwise_same_for_1_2_3_threads_and_prefill) {
    const char *path = tmp_file("det.slm");
    write_test_model(path, 1);
    enum { N = 32, V = 300 };
    int tokens[N];
    some_tokens(tokens, N, V);
    float *ref = run_logits(path, tokens, N, 1, 1);
    for (int threads = 1; threads <= 3; threads++) {
        for (size_t prefill = 1; prefill <= 20; prefill += 6) {
            float *got = run_logits(path, tokens, N, prefill, threads);
            size_t from = (prefill - 1) * V;  // logits before the batch's last are not kept
            cr_assert(memcmp(got + from, ref + from, (N * V - from) * sizeof(float)) == 0,
                      "threads %d, prefill %zu: logits differ", threads, prefill);
            free(got);
        }
    }
    free(ref);
}

Test(forward, long_prompt_goes_through_in_chunks) {
    // 200 tokens, more than SL_MAX_BATCH: chunked prefill equals token by token
    char *path = export_stories260k();
    enum { N = 200, V = 512 };
    int tokens[N];
    some_tokens(tokens, N, V);
    float *a = run_logits(path, tokens, N, N, 2);
    float *b = run_logits(path, tokens, N, 1, 2);
    cr_assert(memcmp(a + (N - 1) * V, b + (N - 1) * V, V * sizeof(float)) == 0);
    free(a), free(b);
    free(path);
}

// ----------------------------------------------------------------------------
// weight types, the f16 KV cache, every token's logits

static const char *const DTYPES[] = {"f32", "f16", "bf16", "q8_0"};

// The fast pass of every type against the plain pass on the same weights (kernels.c's
// matvec_tensor). For q8_0 the two paths quantize activations that differ by float
// rounding (~1e-7); where one lands on the other side of a rounding boundary, that quant
// moves by a whole step (1/127 of its group's largest value) and the logits by ~1e-2 of
// their scale, and the difference then lives on in the KV cache. So q8_0 is checked over
// the first 16 positions: most must agree to float rounding, none beyond one such step.
// (tests/test_matmul.c checks the q8_0 kernels themselves to 2e-5.)
static void fast_vs_plain_each(const char *path, const int *tokens, size_t n, float *err) {
    Pool *pool = pool_create(2);
    Transformer fast, plain;
    cr_assert_eq(transformer_build(&fast, path, pool, ATTN_KV_F32), MODEL_OK);
    cr_assert_eq(transformer_build(&plain, path, NULL, ATTN_KV_F32), MODEL_OK);
    size_t vocab = (size_t)fast.model.header.vocab_size;
    for (size_t p = 0; p < n; p++) {
        float *a = transformer_forward(&fast, &tokens[p], 1, p);
        err[p] = max_rel_err(a, transformer_forward_plain(&plain, tokens[p], p), vocab);
    }
    transformer_free(&fast);
    transformer_free(&plain);
    pool_destroy(pool);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

Test(forward, every_dtype_fast_matches_plain) {
    int tokens[60];
    some_tokens(tokens, 60, 512);
    for (int d = 0; d < 3; d++) {
        float err = fast_vs_plain(export_stories260k_as(DTYPES[d]), tokens, 60, 2);
        cr_assert(err < 1e-4f, "%s: logits differ by %g of their scale", DTYPES[d], err);
    }
    float err[16];
    fast_vs_plain_each(export_stories260k_as("q8_0"), tokens, 16, err);
    qsort(err, 16, sizeof err[0], cmp_float);
    cr_assert(err[8] < 1e-5f, "q8_0: median difference %g of the logits' scale", err[8]);
    cr_assert(err[15] < 5e-2f, "q8_0: worst difference %g of the logits' scale", err[15]);
}

// Logits at every position (prefill of the first token, then one by one).
static float *dtype_logits(const char *dtype, const int *tokens, size_t n, int kv_type) {
    Pool *pool = pool_create(2);
    Transformer t;
    cr_assert_eq(transformer_build(&t, export_stories260k_as(dtype), pool, kv_type), MODEL_OK);
    size_t vocab = (size_t)t.model.header.vocab_size;
    float *all = malloc(n * vocab * sizeof(float));
    cr_assert_not_null(all);
    for (size_t p = 0; p < n; p++)
        memcpy(all + p * vocab, transformer_forward(&t, &tokens[p], 1, p), vocab * sizeof(float));
    transformer_free(&t);
    pool_destroy(pool);
    return all;
}

// Each type against the f32 model: the worst logit error over 100 positions, relative to
// the largest logit. Measured on stories260K (dim 64: two q8_0 groups per row, so each
// rounding weighs more than in larger models): f16 ~3e-4, bf16 ~3e-3, q8_0 ~4e-2.
// What each type costs in the model's predictions is --ppl's job (test_cli.c).
Test(forward, every_dtype_tracks_f32) {
    enum { N = 100, V = 512 };
    int tokens[N];
    some_tokens(tokens, N, V);
    float *ref = dtype_logits("f32", tokens, N, ATTN_KV_F32);
    const float bound[] = {0.0f, 1e-3f, 1e-2f, 6e-2f};
    for (int d = 1; d < 4; d++) {
        float *got = dtype_logits(DTYPES[d], tokens, N, ATTN_KV_F32);
        float err = 0.0f;
        for (size_t p = 0; p < N; p++) err = fmaxf(err, max_rel_err(got + p * V, ref + p * V, V));
        cr_assert(err < bound[d], "%s: logits differ from f32 by %g of their scale", DTYPES[d], err);
        free(got);
    }
    free(ref);
}

// The f16 KV cache: within its rounding of the f32 cache (K and V rounded to 11 bits).
// With q8_0 weights that rounding also flips activation quants now and then (see above):
// measured 3e-4 with f32 weights, 3e-2 with q8_0.
Test(forward, kv_f16_tracks_f32) {
    enum { N = 200, V = 512 };
    int tokens[N];
    some_tokens(tokens, N, V);
    for (int d = 0; d < 4; d += 3) {  // f32 and q8_0 weights
        float *ref = dtype_logits(DTYPES[d], tokens, N, ATTN_KV_F32);
        float *got = dtype_logits(DTYPES[d], tokens, N, ATTN_KV_F16);
        float err = 0.0f;
        for (size_t p = 0; p < N; p++) err = fmaxf(err, max_rel_err(got + p * V, ref + p * V, V));
        cr_assert(err < (d == 0 ? 2e-3f : 6e-2f),
                  "%s weights: f16 cache differs by %g of the logits' scale", DTYPES[d], err);
        free(ref), free(got);
    }
}

// transformer_forward_all (for --ppl) gives, bitwise, the logits of one token at a time,
// for every type and cache type, across chunk boundaries (200 > SL_MAX_BATCH).
Test(forward, all_logits_equal_one_at_a_time) {
    enum { N = 200, V = 512 };
    int tokens[N];
    some_tokens(tokens, N, V);
    float *all = malloc((size_t)N * V * sizeof(float));
    cr_assert_not_null(all);
    for (int d = 0; d < 4; d++) {
        for (int kv = ATTN_KV_F32; kv <= ATTN_KV_F16; kv++) {
            float *one = dtype_logits(DTYPES[d], tokens, N, kv);
            Pool *pool = pool_create(3);
            Transformer t;
            cr_assert_eq(transformer_build(&t, export_stories260k_as(DTYPES[d]), pool, kv), MODEL_OK);
            transformer_forward_all(&t, tokens, N, 0, all);
            cr_assert(memcmp(all, one, (size_t)N * V * sizeof(float)) == 0,
                      "%s, kv %d: batched logits differ", DTYPES[d], kv);
            transformer_free(&t);
            pool_destroy(pool);
            free(one);
        }
    }
    free(all);
}

// ----------------------------------------------------------------------------
// context shift (attention sinks)

// After a shift, the layer-0 keys of the moved positions are the keys their tokens would have
// at their new positions (layer 0's input is the embedding alone), the sinks and the values are
// untouched, moved bit for bit.
Test(forward, context_shift_rerotates_keys) {
    const char *path = tmp_file("shift.slm");
    write_test_model(path, 0);
    Transformer t;
    cr_assert_eq(transformer_build(&t, path, NULL, ATTN_KV_F32), MODEL_OK);
    const SlHeader *h = &t.model.header;
    size_t hd = (size_t)h->head_dim, n_kv = (size_t)h->n_kv_heads, seq = (size_t)h->seq_len;
    size_t dim = (size_t)h->dim, kv_dim = n_kv * hd, L = (size_t)h->n_layers;
    enum { N = 20, KEEP = 4, DROP = 8 };
    int tokens[N];
    some_tokens(tokens, N, h->vocab_size);
    transformer_forward(&t, tokens, N, 0);
    size_t bytes = L * kv_dim * seq * sizeof(float);
    float *k0 = malloc(bytes), *v0 = malloc(bytes);
    memcpy(k0, t.state.kv.key_cache, bytes), memcpy(v0, t.state.kv.value_cache, bytes);
    cr_assert_eq(transformer_shift(&t, N, KEEP, DROP), N - DROP);
    const float *kc = t.state.kv.key_cache, *vc = t.state.kv.value_cache;
    RopeParams rp = rope_params(h, NULL);
    Tensor wk = tensor_layer(&t.model.w.wk, 0, L);
    float *x = malloc(dim * 4), *xn = malloc(dim * 4), *k = malloc(kv_dim * 4);
    for (size_t l = 0; l < L; l++)
        for (size_t g = 0; g < n_kv; g++) {
            size_t base = (l * n_kv + g) * seq * hd;
            cr_assert(!memcmp(kc + base, k0 + base, KEEP * hd * 4), "sinks kept");
            cr_assert(!memcmp(vc + base + KEEP * hd, v0 + base + (KEEP + DROP) * hd,
                              (N - KEEP - DROP) * hd * 4), "values moved");
        }
    for (size_t p = KEEP; p < N - DROP; p++) {  // layer 0: the key of tokens[p + DROP] at p
        tensor_row(&t.model.w.token_embedding, (size_t)tokens[p + DROP], x);
        rmsnorm(xn, x, t.model.w.rms_att, dim, h->norm_eps);
        matvec_tensor(k, xn, &wk);
        rope(k, n_kv, hd, p, &rp);
        for (size_t g = 0; g < n_kv; g++) {
            float err = max_rel_err(kc + (g * seq + p) * hd, k + g * hd, hd);
            cr_assert(err < 1e-5f, "position %zu head %zu: %g of the key's scale", p, g, err);
        }
    }
    free(x), free(xn), free(k), free(k0), free(v0);
    transformer_free(&t);
}

// Logits of tokens run one at a time (the fast pass on `threads`, or the plain pass when
// threads is 0) with a shift (KEEP, DROP) whenever the cache is full: n tokens in all.
static float *run_shifted(const char *path, const int *tokens, size_t n, int threads, int kv) {
    Pool *pool = threads ? pool_create(threads) : NULL;
    Transformer t;
    cr_assert_eq(transformer_build(&t, path, pool, kv), MODEL_OK);
    size_t vocab = (size_t)t.model.header.vocab_size, seq = (size_t)t.model.header.seq_len;
    float *all = malloc(n * vocab * sizeof(float));
    for (size_t i = 0, pos = 0; i < n; i++) {
        if (pos == seq) pos = transformer_shift(&t, pos, 4, (seq - 4) / 2);
        float *l = threads ? transformer_forward(&t, &tokens[i], 1, pos)
                           : transformer_forward_plain(&t, tokens[i], pos);
        memcpy(all + i * vocab, l, vocab * sizeof(float));
        pos++;
    }
    transformer_free(&t);
    pool_destroy(pool);
    return all;
}

// Past two shifts: the fast pass tracks the plain one, and is bitwise the same for 1-3
// threads, with an f32 or an f16 cache.
Test(forward, context_shift_fast_matches_plain_and_threads) {
    const char *path = tmp_file("shift2.slm");
    write_test_model(path, 1);
    enum { N = 80, V = 300 };  // context 32: shifts at 32 and 46, ...
    int tokens[N];
    some_tokens(tokens, N, V);
    float *plain = run_shifted(path, tokens, N, 0, ATTN_KV_F32);
    float *ref = run_shifted(path, tokens, N, 1, ATTN_KV_F32);
    for (size_t i = 0; i < N; i++) {
        float err = max_rel_err(ref + i * V, plain + i * V, V);
        cr_assert(err < 1e-4f, "token %zu: fast and plain differ by %g", i, err);
    }
    for (int kv = ATTN_KV_F32; kv <= ATTN_KV_F16; kv++) {
        float *one = kv == ATTN_KV_F32 ? ref : run_shifted(path, tokens, N, 1, kv);
        for (int threads = 2; threads <= 3; threads++) {
            float *got = run_shifted(path, tokens, N, threads, kv);
            cr_assert(!memcmp(got, one, N * V * sizeof(float)), "kv %d, %d threads differ", kv,
                      threads);
            free(got);
        }
        if (one != ref) free(one);
    }
    free(plain), free(ref);
}

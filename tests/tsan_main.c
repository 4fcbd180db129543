// tests/tsan_main.c: the thread pool and the threaded kernels under ThreadSanitizer.
//
// Criterion cannot run under TSan (its inheritable arena is mapped at a fixed address that
// TSan reserves), so this driver stands alone: `make test-tsan` builds it with
// -fsanitize=thread and fails on any report. It runs the pool (pool_run and pool_for jobs),
// then the forward pass of the default model (every threaded matmul and attention kernel,
// batched and one token at a time, f32 and f16 caches, with and without recording the
// attention weights) on 2 to 4 threads, and checks the logits, and the recorded weights,
// bitwise against 1 thread.
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/attnmap.h"
#include "base/pool.h"
#include "runtime/transformer.h"

static int failures;
#define CHECK(c, ...)                                             \
    do {                                                          \
        if (!(c)) {                                               \
            fprintf(stderr, "tsan_main: FAIL: " __VA_ARGS__);     \
            fputc('\n', stderr);                                  \
            failures++;                                           \
        }                                                         \
    } while (0)

typedef struct {
    atomic_int hits[8];
    int plain[8];  // each written by its own thread only: a race here would be reported
} Hits;

static void hit(void *arg, int thread, int n_threads) {
    Hits *h = arg;
    (void)n_threads;
    atomic_fetch_add(&h->hits[thread], 1);
    h->plain[thread]++;
}

// pool_for: each chunk adds to its own plain counters (a race on one would be reported) and
// to the shared atomic count.
typedef struct {
    int plain[64];
    atomic_int calls;
} Chunks;

static void chunk_hit(void *arg, size_t c0, size_t c1) {
    Chunks *h = arg;
    for (size_t c = c0; c < c1; c++) {
        h->plain[c]++;
        atomic_fetch_add(&h->calls, 1);
    }
}

enum { PROMPT = 24, DECODE = 16 };

// The logits of every decode step after a batched (or token-by-token) prompt; with rec, the
// attention weights go there too (rec is built here; the caller frees it).
static float *logits_of(const char *path, int threads, int kv, int batched, AttnMap *rec) {
    Pool *pool = pool_create(threads);
    Transformer t;
    if (!pool || transformer_build(&t, path, pool, kv) != MODEL_OK) exit(1);
    pool_allow_solo(pool, 0);  // TSan slows threads down unevenly: keep them all in every job
    if (rec && (attnmap_build(rec, (size_t)t.model.header.n_layers,
                              (size_t)t.model.header.n_heads, PROMPT + DECODE) != 0 ||
                transformer_record(&t, attnmap_sink, rec) != MODEL_OK))
        exit(1);
    int V = t.model.header.vocab_size, tokens[PROMPT + DECODE];
    for (int i = 0; i < PROMPT + DECODE; i++) tokens[i] = (i * 7919 + 13) % V;
    float *out = malloc((size_t)(DECODE + 1) * V * sizeof(float)), *l = NULL;
    if (batched) l = transformer_forward(&t, tokens, PROMPT, 0);
    else for (int i = 0; i < PROMPT; i++) l = transformer_forward(&t, &tokens[i], 1, i);
    memcpy(out, l, V * sizeof(float));
    for (int i = 0; i < DECODE; i++) {
        l = transformer_forward(&t, &tokens[PROMPT + i], 1, PROMPT + i);
        memcpy(out + (size_t)(i + 1) * V, l, V * sizeof(float));
    }
    transformer_free(&t);
    pool_destroy(pool);
    return out;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/kjv.slm";
    for (int nt = 1; nt <= 4; nt++) {
        Pool *p = pool_create(nt);
        if (!p) return 1;
        pool_allow_solo(p, nt % 2);  // the caller may go solo with 1 and 3 threads
        Hits h = {0};
        for (int i = 0; i < 3000; i++) pool_run(p, hit, &h);
        for (int t = 0; t < nt; t++)
            CHECK(atomic_load(&h.hits[t]) == 3000 && h.plain[t] == 3000, "pool %d: thread %d", nt, t);
        Chunks c = {0};  // pool_for jobs of 0 to 63 chunks, and pool_run jobs between them
        int expect[64] = {0}, total = 0;
        for (int i = 0; i < 3000; i++) {
            size_t n = (size_t)(i * 7 % 64);
            pool_for(p, n, chunk_hit, &c);
            for (size_t k = 0; k < n; k++) expect[k]++;
            total += (int)n;
            if (i % 5 == 0) pool_run(p, hit, &h);
        }
        CHECK(atomic_load(&c.calls) == total && !memcmp(c.plain, expect, sizeof expect),
              "pool %d: pool_for chunks", nt);
        for (int t = 0; t < nt; t++)
            CHECK(h.plain[t] == 3600, "pool %d: thread %d after pool_for", nt, t);
        pool_destroy(p);
    }
    Model m;
    if (model_open(&m, path, 1) != MODEL_OK) return 1;
    size_t bytes = (size_t)(DECODE + 1) * m.header.vocab_size * sizeof(float);
    model_close(&m);
    for (int kv = ATTN_KV_F32; kv <= ATTN_KV_F16; kv++) {
        AttnMap ref_w;
        float *ref = logits_of(path, 1, kv, 1, &ref_w);
        size_t wbytes = ref_w.n_layers * ref_w.n_heads * ref_w.cap * (ref_w.cap + 1) / 2 * 4;
        for (int nt = 2; nt <= 4; nt++)
            for (int batched = 0; batched <= 1; batched++)
                for (int record = 0; record <= 1; record++) {
                    AttnMap w;
                    float *got = logits_of(path, nt, kv, batched, record ? &w : NULL);
                    CHECK(memcmp(got, ref, bytes) == 0,
                          "kv %d, %d threads, batched %d, recording %d: logits differ", kv, nt,
                          batched, record);
                    if (record) {
                        CHECK(memcmp(w.w, ref_w.w, wbytes) == 0,
                              "kv %d, %d threads, batched %d: recorded weights differ", kv, nt,
                              batched);
                        attnmap_free(&w);
                    }
                    free(got);
                }
        attnmap_free(&ref_w);
        free(ref);
    }
    printf("tsan_main: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}

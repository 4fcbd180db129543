// test_session.c: the session (runtime/session.h) and the batched pass under it
// (transformer_forward_seqs): several sequences in one pass give each sequence's logits bit for
// bit; a greedy generation is the same alone and batched with others that join mid-way; stop
// strings, max_tokens, a full cache, the longest common prefix.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/session.h"
#include "tests/helpers.h"

static void some_ids(int *ids, size_t n, int vocab, uint64_t seed) {
    for (size_t i = 0; i < n; i++) ids[i] = 1 + (int)(test_rand(&seed) % (uint64_t)(vocab - 1));
}

// The logits after tokens ids[0 .. n), run alone on the transformer's own cache.
static float *alone(Transformer *t, const int *ids, size_t n) {
    size_t V = (size_t)t->model.header.vocab_size;
    float *out = malloc(V * sizeof(float));
    memcpy(out, transformer_forward(t, ids, n, 0), V * sizeof(float));
    return out;
}

// Three sequences at different positions in one pass (a 3-token prefill, a decode, a 7-token
// chunk mid-way), on their own caches, equal to each run alone, for f32 and q8_0 weights, an f16
// cache, 1 and 2 threads.
Test(session, seqs_in_one_pass_equal_each_alone) {
    const char *dtypes[] = {"f32", "q8_0"};
    for (int d = 0; d < 2; d++)
        for (int kvt = 0; kvt < 2; kvt++)
            for (int threads = 1; threads <= 2; threads++) {
                Pool *pool = pool_create(threads);
                Transformer t;
                int kv_type = kvt ? ATTN_KV_F16 : ATTN_KV_F32;
                cr_assert_eq(transformer_build(&t, export_stories260k_as(dtypes[d]), pool, kv_type),
                             MODEL_OK);
                const SlHeader *h = &t.model.header;
                size_t V = (size_t)h->vocab_size;
                int a[3], b[20], c[27];
                some_ids(a, 3, h->vocab_size, 1), some_ids(b, 20, h->vocab_size, 2);
                some_ids(c, 27, h->vocab_size, 3);
                KvCache ka, kb, kc;
                cr_assert_eq(kvcache_build(&ka, h, kv_type, 0), MODEL_OK);
                cr_assert_eq(kvcache_build(&kb, h, kv_type, 0), MODEL_OK);
                cr_assert_eq(kvcache_build(&kc, h, kv_type, 0), MODEL_OK);
                float *la = malloc(V * 4), *lb = malloc(V * 4), *lc = malloc(V * 4);
                // b's first 19 and c's first 20 tokens first, each alone on its cache
                SeqBatch pre[2] = {{&kb, b, 19, 0, NULL, NULL, NULL}, {&kc, c, 20, 0, NULL, NULL, NULL}};
                transformer_forward_seqs(&t, &pre[0], 1);
                transformer_forward_seqs(&t, &pre[1], 1);
                SeqBatch all[3] = {{&ka, a, 3, 0, la, NULL, NULL}, {&kb, b + 19, 1, 19, lb, NULL, NULL},
                                   {&kc, c + 20, 7, 20, lc, NULL, NULL}};
                transformer_forward_seqs(&t, all, 3);
                float *ra = alone(&t, a, 3), *rb = alone(&t, b, 20), *rc = alone(&t, c, 27);
                cr_assert(memcmp(la, ra, V * 4) == 0, "%s kv %d threads %d: a differs", dtypes[d], kvt, threads);
                cr_assert(memcmp(lb, rb, V * 4) == 0, "%s kv %d threads %d: b differs", dtypes[d], kvt, threads);
                cr_assert(memcmp(lc, rc, V * 4) == 0, "%s kv %d threads %d: c differs", dtypes[d], kvt, threads);
                free(la), free(lb), free(lc), free(ra), free(rb), free(rc);
                kvcache_free(&ka), kvcache_free(&kb), kvcache_free(&kc);
                transformer_free(&t);
                pool_destroy(pool);
            }
}

typedef struct {
    Session s;
    KvCache kv;
    int ids[64];
    size_t n;
    int got[200];
    size_t n_got;
} Gen;

static void gen_start(Gen *g, Transformer *t, uint64_t seed, size_t n, long max_tokens) {
    const SlHeader *h = &t->model.header;
    cr_assert_eq(kvcache_build(&g->kv, h, ATTN_KV_F32, 0), MODEL_OK);
    cr_assert_eq(session_init(&g->s, t, &t->model.tokenizer, &g->kv), 0);
    g->n = n, g->n_got = 0;
    some_ids(g->ids, n, h->vocab_size, seed);
    g->ids[0] = h->bos_id;
    cr_assert_eq(session_feed(&g->s, g->ids, n), 0);
    SessionLimits lim = {.max_tokens = max_tokens};
    session_begin(&g->s, &lim);
}

static void gen_take(Gen *g) {
    if (g->s.token >= 0 && g->n_got < 200) g->got[g->n_got++] = g->s.token;
}

static void gen_free(Gen *g) {
    session_free(&g->s);
    kvcache_free(&g->kv);
}

// Continuous batching: four greedy generations, the second and third joining while the first
// decodes (with a budget that splits their prompts over steps), each equal to itself alone.
Test(session, greedy_reply_same_alone_and_batched) {
    Pool *pool = pool_create(2);
    Transformer t;
    cr_assert_eq(transformer_build(&t, export_stories260k_as("q8_0"), pool, ATTN_KV_F32), MODEL_OK);
    enum { G = 4 };
    size_t lens[G] = {5, 40, 17, 1};
    Gen *alone_g = calloc(G, sizeof(Gen)), *batch = calloc(G, sizeof(Gen));
    for (int i = 0; i < G; i++) {  // alone
        gen_start(&alone_g[i], &t, 10 + (uint64_t)i, lens[i], 30);
        Session *s = &alone_g[i].s;
        while (s->finish == SESSION_RUNNING) {
            session_step(&s, 1, 0);
            gen_take(&alone_g[i]);
        }
        cr_assert(alone_g[i].n_got > 0);
    }
    int started = 0, steps = 0;
    Session *ss[G];
    for (;;) {  // batched: one more generation joins every 3 steps, budgets of 8 tokens
        if (started < G && steps % 3 == 0) {
            gen_start(&batch[started], &t, 10 + (uint64_t)started, lens[started], 30);
            started++;
        }
        size_t n = 0;
        for (int i = 0; i < started; i++)
            if (batch[i].s.finish == SESSION_RUNNING) ss[n++] = &batch[i].s;
        if (n == 0 && started == G) break;
        session_step(ss, n, 8);
        for (int i = 0; i < started; i++)
            for (size_t j = 0; j < n; j++)
                if (ss[j] == &batch[i].s) gen_take(&batch[i]);
        steps++;
    }
    for (int i = 0; i < G; i++) {
        cr_assert_eq(batch[i].n_got, alone_g[i].n_got, "generation %d: %zu tokens batched, %zu alone",
                     i, batch[i].n_got, alone_g[i].n_got);
        cr_assert(memcmp(batch[i].got, alone_g[i].got, batch[i].n_got * sizeof(int)) == 0,
                  "generation %d differs batched", i);
        cr_assert_str_eq(batch[i].s.text, alone_g[i].s.text);
        gen_free(&batch[i]), gen_free(&alone_g[i]);
    }
    free(alone_g), free(batch);
    transformer_free(&t);
    pool_destroy(pool);
}

// Stop strings cut the text before them, and what was released is always a prefix of the final
// text; max_tokens ends with SESSION_LENGTH after exactly that many tokens.
Test(session, stop_strings_and_max_tokens) {
    Pool *pool = pool_create(1);
    Transformer t;
    cr_assert_eq(transformer_build(&t, export_stories260k_as("f32"), pool, ATTN_KV_F32), MODEL_OK);
    Gen g;
    gen_start(&g, &t, 5, 6, 60);
    Session *s = &g.s;
    while (s->finish == SESSION_RUNNING) session_step(&s, 1, 0);
    cr_assert_eq(s->finish, SESSION_LENGTH);
    cr_assert_eq(s->n_sampled, 60);
    cr_assert_eq(s->released, s->text_len);
    char *full = strdup(s->text);
    size_t len = strlen(full);
    cr_assert(len > 20, "the text is too short to cut: '%s'", full);
    gen_free(&g);
    // a stop string from the middle of that text (3 bytes), and one that never occurs
    char stop[4];
    memcpy(stop, full + len / 2, 3), stop[3] = '\0';
    size_t cut = (size_t)(strstr(full, stop) - full);
    gen_start(&g, &t, 5, 6, 60);
    SessionLimits lim = {.max_tokens = 60, .n_stop = 2, .stop = {"\x01never", stop}, .stop_len = {6, 3}};
    session_begin(&g.s, &lim);
    s = &g.s;
    size_t released = 0;
    char seen[1024] = "";
    while (s->finish == SESSION_RUNNING) {
        session_step(&s, 1, 0);
        cr_assert(s->released >= released && s->released <= s->text_len);
        memcpy(seen + released, s->text + released, s->released - released);
        released = s->released;
        seen[released] = '\0';
        cr_assert(strncmp(seen, full, released) == 0, "released text is not a prefix: '%s'", seen);
    }
    cr_assert_eq(s->finish, SESSION_STOP);
    cr_assert_eq(s->text_len, cut, "the text ends at %zu, the stop string starts at %zu", s->text_len, cut);
    cr_assert(strncmp(s->text, full, cut) == 0);
    cr_assert_eq(s->released, cut);
    gen_free(&g);
    free(full);
    transformer_free(&t);
    pool_destroy(pool);
}

// A full cache ends a generation (no shift) with SESSION_LENGTH; with context_shift it goes on.
Test(session, full_cache_ends_or_shifts) {
    Pool *pool = pool_create(1);
    Transformer t;
    cr_assert_eq(transformer_build_ctx(&t, export_stories260k_as("f32"), pool, ATTN_KV_F32, 24, 0),
                 MODEL_OK);
    for (int shift = 0; shift <= 1; shift++) {
        Gen g;
        gen_start(&g, &t, 7, 10, 100);
        g.s.context_shift = shift;
        Session *s = &g.s;
        while (s->finish == SESSION_RUNNING) session_step(&s, 1, 0);
        cr_assert_eq(s->finish, SESSION_LENGTH);
        if (shift) {
            cr_assert_eq(s->n_sampled, 100);
            cr_assert(s->n_shifts > 0);
        } else {
            cr_assert_eq(s->pos, 24);
            cr_assert_eq(s->n_sampled, 24 - 10 + 1, "%ld sampled", s->n_sampled);
        }
        gen_free(&g);
    }
    transformer_free(&t);
    pool_destroy(pool);
}

// A follow-up that repeats the start keeps it: the common prefix, a rewind, the rest fed, and the
// logits are those of a fresh run of the whole.
Test(session, common_prefix_reuses_the_cache) {
    Pool *pool = pool_create(2);
    Transformer t;
    cr_assert_eq(transformer_build(&t, export_stories260k_as("q8_0"), pool, ATTN_KV_F32), MODEL_OK);
    size_t V = (size_t)t.model.header.vocab_size;
    Gen g;
    gen_start(&g, &t, 9, 30, 5);
    Session *s = &g.s;
    while (s->finish == SESSION_RUNNING) session_step(&s, 1, 0);
    int next[50];
    memcpy(next, g.ids, 30 * sizeof(int));
    some_ids(next + 30, 20, (int)V, 99);
    cr_assert_eq(session_common_prefix(s, next, 50), 30);
    cr_assert_eq(session_common_prefix(s, next, 30), 29, "at least one token runs");
    next[12] ^= 1;
    cr_assert_eq(session_common_prefix(s, next, 50), 12);
    next[12] ^= 1;
    session_rewind(s, 30);
    cr_assert_eq(session_feed(s, next + 30, 20), 0);
    while (s->n_pending) session_step(&s, 1, 0);
    float *ref = alone(&t, next, 50);
    cr_assert(memcmp(s->logits, ref, V * sizeof(float)) == 0);
    free(ref);
    gen_free(&g);
    transformer_free(&t);
    pool_destroy(pool);
}

// Attention recorded per sequence in a batched pass: each sequence's sink gets the weights it
// gets alone (every layer, every query row over keys 0 .. its position).
typedef struct {
    size_t n_heads, cap;
    float *w;  // (layer, query i, head, key) with rows of cap
    size_t rows;
} Rec;

static void rec_sink(void *ctx, size_t layer, size_t pos0, size_t n, const float *w, size_t stride) {
    Rec *r = ctx;
    for (size_t i = 0; i < n; i++)
        for (size_t h = 0; h < r->n_heads; h++)
            memcpy(r->w + ((layer * 4 + i) * r->n_heads + h) * r->cap, w + (i * r->n_heads + h) * stride,
                   (pos0 + i + 1) * sizeof(float));
    r->rows = n;
}

Test(session, recording_batched_equals_alone) {
    Pool *pool = pool_create(2);
    Transformer t;
    cr_assert_eq(transformer_build(&t, export_stories260k_as("f32"), pool, ATTN_KV_F32), MODEL_OK);
    const SlHeader *h = &t.model.header;
    size_t L = (size_t)h->n_layers, H = (size_t)h->n_heads, cap = 32;
    cr_assert_eq(transformer_record_buffer(&t), MODEL_OK);
    int a[3], b[20];
    some_ids(a, 3, h->vocab_size, 21), some_ids(b, 20, h->vocab_size, 22);
    Rec ra = {H, cap, calloc(L * 4 * H * cap, 4), 0}, rb = {H, cap, calloc(L * 4 * H * cap, 4), 0};
    Rec xa = {H, cap, calloc(L * 4 * H * cap, 4), 0}, xb = {H, cap, calloc(L * 4 * H * cap, 4), 0};
    KvCache ka, kb;
    cr_assert_eq(kvcache_build(&ka, h, ATTN_KV_F32, 0), MODEL_OK);
    cr_assert_eq(kvcache_build(&kb, h, ATTN_KV_F32, 0), MODEL_OK);
    SeqBatch pre = {&kb, b, 19, 0, NULL, NULL, NULL};
    transformer_forward_seqs(&t, &pre, 1);
    SeqBatch both[2] = {{&ka, a, 3, 0, NULL, rec_sink, &ra}, {&kb, b + 19, 1, 19, NULL, rec_sink, &rb}};
    transformer_forward_seqs(&t, both, 2);
    SeqBatch sa = {&ka, a, 3, 0, NULL, rec_sink, &xa}, sb = {&kb, b + 19, 1, 19, NULL, rec_sink, &xb};
    transformer_forward_seqs(&t, &sa, 1);  // the same positions again, alone: the same weights
    transformer_forward_seqs(&t, &sb, 1);
    for (size_t l = 0; l < L; l++)
        for (size_t hh = 0; hh < H; hh++) {
            for (size_t i = 0; i < 3; i++)
                cr_assert(memcmp(ra.w + ((l * 4 + i) * H + hh) * cap, xa.w + ((l * 4 + i) * H + hh) * cap,
                                 (i + 1) * 4) == 0, "a: layer %zu head %zu query %zu", l, hh, i);
            cr_assert(memcmp(rb.w + (l * 4 * H + hh) * cap, xb.w + (l * 4 * H + hh) * cap, 20 * 4) == 0,
                      "b: layer %zu head %zu", l, hh);
        }
    float sum = 0;  // the rows are softmax weights: b's last row sums to 1
    for (size_t k = 0; k < 20; k++) sum += rb.w[k];
    cr_assert_float_eq(sum, 1.0f, 1e-4f);
    free(ra.w), free(rb.w), free(xa.w), free(xb.w);
    kvcache_free(&ka), kvcache_free(&kb);
    transformer_free(&t);
    pool_destroy(pool);
}

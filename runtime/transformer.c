// transformer.c: the Llama forward pass over a batch of tokens.
//
// Contract: libc, libm and the thread pool; the weights are read from the read-only
// mapping and never copied. Per layer: RMSNorm, q/k/v projections, RoPE, grouped-query
// attention over the KV cache, the output projection, RMSNorm, a SwiGLU feed-forward;
// residual adds. The families' few differences are branches on the header: biases and q/k
// norms (Qwen), and Gemma's embedding scale, query scale, norms after attention and after the
// feed-forward, GeGLU, and windowed layers with their own RoPE base (and caches of their
// window only). The matmuls (matmul.c) and attention (attention.c) are the tuned kernels;
// transformer_forward_plain runs the same pass on kernels.c, as the reference.
#include "runtime/transformer.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "base/clock.h"

// ----------------------------------------------------------------------------
// run state

RopeParams rope_params(const SlHeader *h, const float *divisors) {
    RopeParams r = {h->rope_theta, h->rope_scaling, h->rope_factor, h->rope_low_freq,
                    h->rope_high_freq, h->rope_orig_ctx, divisors};
    return r;
}

RopeParams rope_params_layer(const SlHeader *h, const float *divisors, size_t l) {
    // (model_layer_windowed's rule; a local base comes with a window period, model.c checks)
    if (h->rope_local_theta > 0 && h->window_period > 0 && (l + 1) % (size_t)h->window_period) {
        RopeParams r = {h->rope_local_theta, SL_ROPE_NONE, 0, 0, 0, 0, NULL};
        return r;
    }
    return rope_params(h, divisors);
}

size_t runstate_window_rows(const SlHeader *h) {
    size_t seq = (size_t)h->seq_len, B = seq < SL_MAX_BATCH ? seq : SL_MAX_BATCH;
    size_t w = (size_t)h->sliding_window, drop = seq > SHIFT_SINKS ? (seq - SHIFT_SINKS) / 2 : 0;
    if (w == 0 || h->n_layers <= 0 || w > seq) return 0;
    size_t rows = w - 1 + 2 * B;
    // run's shift at a full context leaves seq - drop positions; the next window must not reach
    // the sinks, which a windowed cache no longer holds
    return rows < seq && seq - drop >= w - 1 + SHIFT_SINKS ? rows : 0;
}

// Rows of layer l's cache: seq_len, or win_rows for a windowed layer.
static size_t layer_rows(const SlHeader *h, size_t win_rows, size_t l) {
    return win_rows && model_layer_windowed(h, l) ? win_rows : (size_t)h->seq_len;
}

size_t runstate_kv_bytes(const SlHeader *h, int kv_type, int full) {
    size_t win = full ? 0 : runstate_window_rows(h), rows = 0, n;
    for (size_t l = 0; l < (size_t)h->n_layers; l++) rows += layer_rows(h, win, l);
    if (__builtin_mul_overflow(rows, (size_t)h->n_kv_heads * (size_t)h->head_dim, &n) ||
        __builtin_mul_overflow(n, attention_kv_bytes(kv_type), &n))
        return 0;
    return n;
}

int kvcache_build(KvCache *c, const SlHeader *h, int kv_type, int full) {
    memset(c, 0, sizeof *c);
    c->kv_type = kv_type;
    c->win_rows = full ? 0 : runstate_window_rows(h);
    if (!(c->kv_bytes = runstate_kv_bytes(h, kv_type, full))) {
        fprintf(stderr, "the KV cache for %d layers x %d positions overflows\n", h->n_layers,
                h->seq_len);
        return MODEL_ERR_DIMS;
    }
    c->key_cache = calloc(c->kv_bytes, 1);
    c->value_cache = calloc(c->kv_bytes, 1);
    if (!c->key_cache || !c->value_cache) {
        fprintf(stderr, "cannot allocate a KV cache of 2 x %zu bytes\n", c->kv_bytes);
        kvcache_free(c);
        return MODEL_ERR_NOMEM;
    }
    return MODEL_OK;
}

void kvcache_free(KvCache *c) {
    free(c->key_cache), free(c->value_cache);
    memset(c, 0, sizeof *c);
}

int runstate_build(RunState *s, const Model *m, int kv_type) {
    return runstate_build_full(s, m, kv_type, 0);
}

int runstate_build_full(RunState *s, const Model *m, int kv_type, int full) {
    const SlHeader *h = &m->header;
    memset(s, 0, sizeof *s);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t q_dim = (size_t)h->n_heads * hd, kv_dim = (size_t)h->n_kv_heads * hd;
    size_t seq = (size_t)h->seq_len, B = seq < SL_MAX_BATCH ? seq : SL_MAX_BATCH;
    size_t cache, att, rope, tables = h->rope_local_theta > 0 ? 2 : 1;  // a local RoPE: two
    if (__builtin_mul_overflow((size_t)h->n_layers * kv_dim, seq, &cache) ||
        __builtin_mul_overflow((size_t)h->n_heads, seq, &att) ||
        __builtin_mul_overflow(seq, hd / 2 * tables, &rope) || cache > SIZE_MAX / sizeof(float) ||
        !runstate_kv_bytes(h, kv_type, full)) {
        fprintf(stderr, "the KV cache for %d layers x %d positions overflows\n", h->n_layers,
                h->seq_len);
        return MODEL_ERR_DIMS;
    }
    s->batch = B;
    s->x = calloc(B * dim, sizeof(float));
    s->xb = calloc(B * dim, sizeof(float));
    s->xb2 = calloc(B * dim, sizeof(float));
    s->q = calloc(B * q_dim, sizeof(float));
    s->k = calloc(B * kv_dim, sizeof(float));
    s->v = calloc(B * kv_dim, sizeof(float));
    s->ao = calloc(B * q_dim, sizeof(float));
    s->hb = calloc(B * hidden, sizeof(float));
    s->hb2 = calloc(B * hidden, sizeof(float));
    s->att = calloc(att, sizeof(float));
    s->logits = calloc((size_t)h->vocab_size, sizeof(float));
    AttnShape shape = {(size_t)h->n_heads, (size_t)h->n_kv_heads, hd, seq, kv_type, 0};
    s->attn_scratch = malloc(attention_scratch_bytes(&shape));
    size_t widest = dim > q_dim ? dim : q_dim;  // the widest matmul input
    if (hidden > widest) widest = hidden;
    int any_q8 = 0;
    for (int t = 0; t < SL_T_COUNT && h->n_tensors; t++) {
        const uint8_t *lt = m->layout.layer_type[t];  // per-layer types, or NULL
        for (int l = 0; l < (lt ? h->n_layers : 1); l++)
            any_q8 |= matmul_input_forms(lt ? lt[l] : h->tensor_type[t]);
    }
    s->q8 = any_q8 ? malloc(matmul_q8_bytes(widest, B)) : NULL;
    s->rope_cos = calloc(rope, sizeof(float));
    s->rope_sin = calloc(rope, sizeof(float));
    int kv_err = kvcache_build(&s->kv, h, kv_type, full);
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->ao || !s->hb || !s->hb2 ||
        !s->att || !s->logits || !s->attn_scratch || (any_q8 && !s->q8) || !s->rope_cos || !s->rope_sin || kv_err) {
        if (!kv_err) fprintf(stderr, "cannot allocate the run state\n");
        runstate_free(s);
        return MODEL_ERR_NOMEM;
    }
    // the same float operations as kernels.c's rope, done once per (position, pair): the global
    // layers' table, then with a local RoPE base the windowed layers' (those of layer 0, which
    // is windowed when there is a period)
    s->rope_local = tables == 2 ? seq * (hd / 2) : 0;
    for (size_t tb = 0; tb < tables; tb++) {
        RopeParams rp = tb ? rope_params_layer(h, m->w.rope_freqs, 0) : rope_params(h, m->w.rope_freqs);
        float *cs = s->rope_cos + tb * s->rope_local, *sn = s->rope_sin + tb * s->rope_local;
        for (size_t p = 0; p < seq; p++) {
            for (size_t i = 0; i < hd; i += 2) {
                float freq = rope_freq(&rp, i, hd);
                float angle = (float)p * freq;
                cs[p * (hd / 2) + i / 2] = cosf(angle);
                sn[p * (hd / 2) + i / 2] = sinf(angle);
            }
        }
    }
    return MODEL_OK;
}

void runstate_free(RunState *s) {
    free(s->x), free(s->xb), free(s->xb2), free(s->q), free(s->k), free(s->v), free(s->ao);
    free(s->hb), free(s->hb2), free(s->att), free(s->logits), free(s->attn_scratch);
    free(s->q8);
    free(s->rope_cos);
    free(s->rope_sin), free(s->att_rec), free(s->seq_logits);
    kvcache_free(&s->kv);
    memset(s, 0, sizeof *s);
}

int transformer_build(Transformer *t, const char *path, Pool *pool, int kv_type) {
    return transformer_build_ctx(t, path, pool, kv_type, 0, 0);
}

int transformer_build_full(Transformer *t, const char *path, Pool *pool, int kv_type, int full) {
    return transformer_build_ctx(t, path, pool, kv_type, 0, full);
}

int transformer_build_ctx(Transformer *t, const char *path, Pool *pool, int kv_type, int n_ctx,
                          int full) {
    memset(t, 0, sizeof *t);
    t->pool = pool;
    int err = model_open(&t->model, path, 1);
    if (err != MODEL_OK) return err;
    if (n_ctx > t->model.header.seq_len || n_ctx < 0) {
        fprintf(stderr, "%s: a context of %d positions, but the model's is %d\n", path, n_ctx,
                t->model.header.seq_len);
        model_close(&t->model);
        return MODEL_ERR_DIMS;
    }
    if (n_ctx) t->model.header.seq_len = n_ctx;
    if ((err = runstate_build_full(&t->state, &t->model, kv_type, full)) != MODEL_OK)
        model_close(&t->model);
    return err;
}

int transformer_record(Transformer *t, AttnSink sink, void *ctx) {
    int err = transformer_record_buffer(t);
    if (err == MODEL_OK) t->sink = sink, t->sink_ctx = ctx;
    return err;
}

void transformer_free(Transformer *t) {
    runstate_free(&t->state);
    model_close(&t->model);
}

// ----------------------------------------------------------------------------
// forward

// RoPE from the precomputed table: bitwise what kernels.c's rope computes.
static void rope_rotate(float *v, size_t n_heads, size_t hd, const float *cos_p,
                        const float *sin_p) {
    for (size_t h = 0; h < n_heads; h++) {
        float *vh = v + h * hd;
        for (size_t i = 0; i < hd; i += 2) {
            float c = cos_p[i / 2], s = sin_p[i / 2];
            float v0 = vh[i], v1 = vh[i + 1];
            vh[i] = v0 * c - v1 * s;
            vh[i + 1] = v0 * s + v1 * c;
        }
    }
}

// What some families add between the projections and RoPE, for one token of layer l:
//   q, k, v += their biases (Qwen2);  each head of q and of k <- RMSNorm(head) (Qwen3, Gemma 3);
//   q *= attn_scale sqrt(head_dim) (Gemma), so that the attention's 1 / sqrt(head_dim) makes
//   the scores q . k attn_scale (as llama.cpp scales Gemma's queries before attention).
static void qkv_adjust(const SlHeader *h, const Weights *w, size_t l, float *q, float *k,
                       float *v) {
    size_t hd = (size_t)h->head_dim, q_dim = (size_t)h->n_heads * hd;
    size_t kv_dim = (size_t)h->n_kv_heads * hd;
    if (w->bqkv) {
        const float *b = w->bqkv + l * (q_dim + 2 * kv_dim);  // (q, k, v) biases of layer l
        for (size_t i = 0; i < q_dim; i++) q[i] += b[i];
        for (size_t i = 0; i < kv_dim; i++) k[i] += b[q_dim + i];
        for (size_t i = 0; i < kv_dim; i++) v[i] += b[q_dim + kv_dim + i];
    }
    if (w->qk_norm) {
        const float *qn = w->qk_norm + l * 2 * hd, *kn = qn + hd;  // (q, k) weights of layer l
        for (size_t i = 0; i < q_dim; i += hd) rmsnorm(q + i, q + i, qn, hd, h->norm_eps);
        for (size_t i = 0; i < kv_dim; i += hd) rmsnorm(k + i, k + i, kn, hd, h->norm_eps);
    }
    if (h->attn_scale > 0) {
        float f = h->attn_scale * sqrtf((float)hd);
        for (size_t i = 0; i < q_dim; i++) q[i] *= f;
    }
}

// The token embedding's row, times embed_scale where the header has one (Gemma).
static void embed(const SlHeader *h, const Weights *w, int token, float *x) {
    tensor_row(&w->token_embedding, (size_t)token, x);
    if (h->embed_scale > 0)
        for (size_t i = 0; i < (size_t)h->dim; i++) x[i] *= h->embed_scale;
}

// A block's output o (n rows of dim) joins the residual x: x += o, or with post norms (Gemma)
// x += RMSNorm(o) with weights pw.
static void residual_add(const SlHeader *h, float *x, float *o, const float *pw, size_t n) {
    size_t dim = (size_t)h->dim;
    for (size_t r = 0; pw && r < n; r++) rmsnorm(o + r * dim, o + r * dim, pw, dim, h->norm_eps);
    for (size_t i = 0; i < n * dim; i++) x[i] += o[i];
}

// The post norms of layer l: after attention (which = 0) or after the feed-forward (1), or NULL.
static const float *post_norm(const SlHeader *h, const Weights *w, size_t l, int which) {
    return w->post_norms ? w->post_norms + (l * 2 + (size_t)which) * (size_t)h->dim : NULL;
}

// The gated activation: GeGLU (Gemma) or SwiGLU.
static void gate(const SlHeader *h, float *hb, const float *hb2, size_t n) {
    if (h->flags & SL_FLAG_GELU) geglu(hb, hb2, n);
    else swiglu(hb, hb2, n);
}

// The quantized forms of an input that the matrices reading it need (matmul_input_forms).
static int forms_of(const Tensor *a, const Tensor *b, const Tensor *c) {
    return matmul_input_forms(a->type) | (b ? matmul_input_forms(b->type) : 0) |
           (c ? matmul_input_forms(c->type) : 0);
}

// Windowed caches: makes room for positions pos0 .. pos0 + n - 1, whose queries see keys from
// pos0 - window + 1 on: when they would run past the rows, the positions from there move to
// row 0 (every windowed layer, keys and values).
static void window_room(const SlHeader *h, KvCache *c, size_t pos0, size_t n) {
    size_t w = (size_t)h->sliding_window, lo = pos0 + 1 > w ? pos0 + 1 - w : 0;
    if (pos0 == 0) c->win_base = 0;  // a new start needs no earlier key
    assert(lo >= c->win_base);  // a rewind past the window that the cache still holds
    if (pos0 + n <= c->win_base + c->win_rows) return;
    size_t hd = (size_t)h->head_dim, n_kv = (size_t)h->n_kv_heads, seq = (size_t)h->seq_len;
    size_t row = hd * attention_kv_bytes(c->kv_type), at = 0, keep = pos0 - lo;
    for (size_t l = 0; l < (size_t)h->n_layers; l++) {
        size_t rows = layer_rows(h, c->win_rows, l);
        for (size_t g = 0; rows != seq && g < n_kv; g++) {
            uint8_t *kc = (uint8_t *)c->key_cache + (at + g * rows) * row;
            uint8_t *vc = (uint8_t *)c->value_cache + (at + g * rows) * row;
            memmove(kc, kc + (lo - c->win_base) * row, keep * row);
            memmove(vc, vc + (lo - c->win_base) * row, keep * row);
        }
        at += n_kv * rows;
    }
    c->win_base = lo;
}

// Runs the sequences' tokens (at most batch in all) as one (tokens x dim) matrix: sequence i's
// rows follow sequence i - 1's. Writes the logits of every token to all_logits (n, vocab_size)
// when it is not NULL (one sequence only), else the last token's of each sequence to its logits.
static void forward_chunk(Transformer *t, const SeqBatch *sq, size_t n_seqs, float *all_logits) {
    const SlHeader *h = &t->model.header;
    const Weights *w = &t->model.w;
    RunState *s = &t->state;
    Pool *pool = t->pool;
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t n_heads = (size_t)h->n_heads, n_kv = (size_t)h->n_kv_heads;
    size_t q_dim = n_heads * hd, kv_dim = n_kv * hd, seq = (size_t)h->seq_len;
    size_t L = (size_t)h->n_layers, V = (size_t)h->vocab_size;
    float eps = h->norm_eps;
    MatIn in;
    size_t n = 0, at[SL_MAX_BATCH];  // all tokens; where layer l's cache starts, per sequence
    AttnShape shapes[SL_MAX_BATCH];  // each sequence's attention, this layer
    AttnSeq att[SL_MAX_BATCH];
    assert(n_seqs >= 1 && n_seqs <= s->batch && (!all_logits || n_seqs == 1));
    for (size_t i = 0; i < n_seqs; i++) {
        KvCache *kv = sq[i].kv ? sq[i].kv : &s->kv;
        if (kv->win_rows) window_room(h, kv, sq[i].pos0, sq[i].n);
        for (size_t j = 0; j < sq[i].n; j++) embed(h, w, sq[i].tokens[j], s->x + (n + j) * dim);
        n += sq[i].n;
        at[i] = 0;
    }
    assert(n <= s->batch);
    for (size_t l = 0; l < L; l++) {
        int windowed = model_layer_windowed(h, l);
        size_t rt = windowed ? s->rope_local : 0;  // this layer's RoPE table
        // attention block
        for (size_t i = 0; i < n; i++)
            rmsnorm(s->xb + i * dim, s->x + i * dim, w->rms_att + l * dim, dim, eps);
        Tensor wq = tensor_layer(&w->wq, l, L), wk = tensor_layer(&w->wk, l, L);
        Tensor wv = tensor_layer(&w->wv, l, L), wo = tensor_layer(&w->wo, l, L);
        matmul_input(&in, s->xb, dim, n, s->q8, forms_of(&wq, &wk, &wv));
        matmul(pool, s->q, &in, &wq);
        matmul(pool, s->k, &in, &wk);
        matmul(pool, s->v, &in, &wv);
        for (size_t i = 0; i < n; i++)
            qkv_adjust(h, w, l, s->q + i * q_dim, s->k + i * kv_dim, s->v + i * kv_dim);
        for (size_t i = 0, r0 = 0; i < n_seqs; r0 += sq[i].n, i++) {  // each sequence's cache
            KvCache *kv = sq[i].kv ? sq[i].kv : &s->kv;
            size_t es = attention_kv_bytes(kv->kv_type);  // bytes per cache element
            size_t rows = layer_rows(h, kv->win_rows, l), base = rows != seq ? kv->win_base : 0;
            size_t pos0 = sq[i].pos0, m = sq[i].n;
            // the kernel sees the cache's rows as positions: those of this layer, from base
            AttnShape shape = {n_heads, n_kv, hd, rows, kv->kv_type,
                               windowed ? (size_t)h->sliding_window : 0};
            uint8_t *kc = (uint8_t *)kv->key_cache + at[i] * es;  // (n_kv_heads, rows, hd)
            uint8_t *vc = (uint8_t *)kv->value_cache + at[i] * es;
            at[i] += kv_dim * rows;
            float *q = s->q + r0 * q_dim, *k = s->k + r0 * kv_dim, *v = s->v + r0 * kv_dim;
            for (size_t j = 0; j < m; j++) {
                size_t p = pos0 + j;
                const float *c = s->rope_cos + rt + p * (hd / 2), *sn = s->rope_sin + rt + p * (hd / 2);
                rope_rotate(q + j * q_dim, n_heads, hd, c, sn);
                rope_rotate(k + j * kv_dim, n_kv, hd, c, sn);
                for (size_t g = 0; g < n_kv; g++) {
                    size_t r = (g * rows + p - base) * hd * es;
                    attention_kv_store(kv->kv_type, kc + r, k + j * kv_dim + g * hd, hd);
                    attention_kv_store(kv->kv_type, vc + r, v + j * kv_dim + g * hd, hd);
                }
            }
            // recording: the kernel's weights, to the sequence's sink
            float *rec = sq[i].sink ? s->att_rec + r0 * n_heads * seq : NULL;
            for (size_t r = 0; rec && base && r < m * n_heads; r++)  // keys the cache no longer holds
                memset(rec + r * seq, 0, base * sizeof(float));
            shapes[i] = shape;
            att[i] = (AttnSeq){&shapes[i], s->ao + r0 * q_dim, q, kc, vc, pos0 - base, m,
                               rec ? rec + base : NULL, seq};
        }
        // every sequence's attention in one share-out over the threads (one alone may also
        // split a query's positions over them)
        double t0 = clock_now();
        if (n_seqs == 1)
            attention_prefill_rec(pool, att[0].s, att[0].out, att[0].q, att[0].kc, att[0].vc,
                                  att[0].pos0, att[0].m, s->attn_scratch, att[0].att, seq);
        else
            attention_prefill_seqs(pool, att, n_seqs);
        t->attention_seconds += clock_now() - t0;
        for (size_t i = 0; i < n_seqs; i++)  // (the rows from key 0: before the base, zeros)
            if (sq[i].sink)
                sq[i].sink(sq[i].sink_ctx, l, sq[i].pos0, sq[i].n,
                           att[i].att - (sq[i].pos0 - att[i].pos0), seq);
        matmul_input(&in, s->ao, q_dim, n, s->q8, forms_of(&wo, NULL, NULL));
        matmul(pool, s->xb2, &in, &wo);
        residual_add(h, s->x, s->xb2, post_norm(h, w, l, 0), n);

        // feed-forward block: w2 (silu(w1 x) * w3 x), or gelu for GeGLU
        for (size_t i = 0; i < n; i++)
            rmsnorm(s->xb + i * dim, s->x + i * dim, w->rms_ffn + l * dim, dim, eps);
        Tensor w1 = tensor_layer(&w->w1, l, L), w2 = tensor_layer(&w->w2, l, L);
        Tensor w3 = tensor_layer(&w->w3, l, L);
        matmul_input(&in, s->xb, dim, n, s->q8, forms_of(&w1, &w3, NULL));
        matmul(pool, s->hb, &in, &w1);
        matmul(pool, s->hb2, &in, &w3);
        gate(h, s->hb, s->hb2, n * hidden);
        matmul_input(&in, s->hb, hidden, n, s->q8, forms_of(&w2, NULL, NULL));
        matmul(pool, s->xb2, &in, &w2);
        residual_add(h, s->x, s->xb2, post_norm(h, w, l, 1), n);
    }
    // the classifier: every token's logits, or each sequence's last token's (those asked for),
    // normed into consecutive rows of xb
    if (all_logits) {
        for (size_t i = 0; i < n; i++) rmsnorm(s->x + i * dim, s->x + i * dim, w->rms_final, dim, eps);
        matmul_input(&in, s->x, dim, n, s->q8, forms_of(&w->wcls, NULL, NULL));
        matmul(pool, all_logits, &in, &w->wcls);
        return;
    }
    size_t k = 0;
    float *only = NULL;  // the one sequence's logits, when one asks
    for (size_t i = 0, r0 = 0; i < n_seqs; r0 += sq[i].n, i++)
        if (sq[i].logits) {
            rmsnorm(s->xb + k * dim, s->x + (r0 + sq[i].n - 1) * dim, w->rms_final, dim, eps);
            only = sq[i].logits, k++;
        }
    if (k == 0) return;
    matmul_input(&in, s->xb, dim, k, s->q8, forms_of(&w->wcls, NULL, NULL));
    matmul(pool, k == 1 ? only : s->seq_logits, &in, &w->wcls);
    for (size_t i = 0, j = 0; k > 1 && i < n_seqs; i++)
        if (sq[i].logits) memcpy(sq[i].logits, s->seq_logits + j++ * V, V * sizeof(float));
}

// Chunks of at most batch tokens; with all_logits, every token's logits land there.
static void forward(Transformer *t, const int *tokens, size_t n, size_t pos0, float *all_logits) {
    const SlHeader *h = &t->model.header;
    assert(n >= 1 && pos0 + n <= (size_t)h->seq_len);
    for (size_t i = 0; i < n; i++) assert(tokens[i] >= 0 && tokens[i] < h->vocab_size);
    for (size_t done = 0; done < n; done += t->state.batch) {
        size_t chunk = n - done < t->state.batch ? n - done : t->state.batch;
        float *lg = all_logits ? all_logits + done * (size_t)h->vocab_size : NULL;
        SeqBatch one = {NULL, tokens + done, chunk, pos0 + done, lg ? NULL : t->state.logits,
                        t->sink, t->sink_ctx};
        forward_chunk(t, &one, 1, lg);
    }
}

float *transformer_forward(Transformer *t, const int *tokens, size_t n, size_t pos0) {
    forward(t, tokens, n, pos0, NULL);
    return t->state.logits;
}

void transformer_forward_all(Transformer *t, const int *tokens, size_t n, size_t pos0,
                             float *logits) {
    forward(t, tokens, n, pos0, logits);
}

void transformer_forward_seqs(Transformer *t, const SeqBatch *seqs, size_t n_seqs) {
    const SlHeader *h = &t->model.header;
    RunState *s = &t->state;
    size_t asked = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        assert(seqs[i].n >= 1 && seqs[i].pos0 + seqs[i].n <= (size_t)h->seq_len);
        assert(!seqs[i].sink || s->att_rec);
        for (size_t j = 0; j < seqs[i].n; j++)
            assert(seqs[i].tokens[j] >= 0 && seqs[i].tokens[j] < h->vocab_size);
        asked += seqs[i].logits != NULL;
    }
    if (asked > 1 && asked > s->seq_logits_rows) {  // room for every sequence's logits
        float *p = realloc(s->seq_logits, asked * (size_t)h->vocab_size * sizeof(float));
        assert(p);  // (a few MB; the server sizes it at its start: transformer_reserve_seqs)
        s->seq_logits = p, s->seq_logits_rows = asked;
    }
    forward_chunk(t, seqs, n_seqs, NULL);
}

int transformer_reserve_seqs(Transformer *t, size_t n_seqs) {
    RunState *s = &t->state;
    if (n_seqs <= s->seq_logits_rows) return MODEL_OK;
    float *p = realloc(s->seq_logits, n_seqs * (size_t)t->model.header.vocab_size * sizeof(float));
    if (!p) {
        fprintf(stderr, "cannot allocate the logits of %zu sequences\n", n_seqs);
        return MODEL_ERR_NOMEM;
    }
    s->seq_logits = p, s->seq_logits_rows = n_seqs;
    return MODEL_OK;
}

int transformer_record_buffer(Transformer *t) {
    const SlHeader *h = &t->model.header;
    RunState *s = &t->state;
    size_t n;
    if (__builtin_mul_overflow(s->batch * (size_t)h->n_heads, (size_t)h->seq_len * sizeof(float), &n) ||
        (!s->att_rec && !(s->att_rec = malloc(n)))) {
        fprintf(stderr, "cannot allocate %d x %d x %d floats to record attention\n", (int)s->batch,
                h->n_heads, h->seq_len);
        return MODEL_ERR_NOMEM;
    }
    return MODEL_OK;
}

int transformer_can_shift_kv(const Transformer *t, const KvCache *kv, size_t n, size_t keep,
                             size_t drop) {
    size_t w = (size_t)t->model.header.sliding_window;
    return !kv->win_rows || n - drop + 1 >= w + keep;
}

int transformer_can_shift(const Transformer *t, size_t n, size_t keep, size_t drop) {
    return transformer_can_shift_kv(t, &t->state.kv, n, keep, drop);
}

size_t transformer_resume_kv(const Transformer *t, const KvCache *kv, size_t pos) {
    size_t w = (size_t)t->model.header.sliding_window, lo = pos + 1 > w ? pos + 1 - w : 0;
    return !kv->win_rows || lo >= kv->win_base ? pos : 0;
}

size_t transformer_resume(const Transformer *t, size_t pos) {
    return transformer_resume_kv(t, &t->state.kv, pos);
}

size_t transformer_shift(Transformer *t, size_t n, size_t keep, size_t drop) {
    return transformer_shift_kv(t, &t->state.kv, n, keep, drop);
}

size_t transformer_shift_kv(Transformer *t, KvCache *kv, size_t n, size_t keep, size_t drop) {
    const SlHeader *h = &t->model.header;
    RunState *s = &t->state;
    size_t hd = (size_t)h->head_dim, n_kv = (size_t)h->n_kv_heads, seq = (size_t)h->seq_len;
    size_t es = attention_kv_bytes(kv->kv_type), row = hd * es, L = (size_t)h->n_layers;
    assert(keep + drop <= n && n <= seq && drop < seq);
    // windowed caches: the next window (from n - drop - w + 1) lies past the kept positions
    assert(transformer_can_shift_kv(t, kv, n, keep, drop));
    if (drop == 0) return n;
    // the windowed layers' rows: positions from wb move down by drop, to row 0 when some
    // positions before them go (kept ones the next windows do not reach, or dropped ones)
    size_t wb = kv->win_base > keep + drop ? kv->win_base : keep + drop;
    // RoPE by -drop: the rotation by drop with its sine negated (each table's, where the
    // windowed layers have their own)
    float *nsin = s->q, *k = s->k;  // scratch between passes: 2 x head_dim / 2 and head_dim floats
    for (size_t tb = 0; tb < (s->rope_local ? 2u : 1u); tb++)
        for (size_t i = 0; i < hd / 2; i++)
            nsin[tb * (hd / 2) + i] = -s->rope_sin[tb * s->rope_local + drop * (hd / 2) + i];
    size_t at = 0;  // where layer l's cache starts, in rows
    for (size_t l = 0; l < L; l++) {
        size_t rows = layer_rows(h, kv->win_rows, l), win = rows != seq;
        for (size_t g = 0; g < n_kv; g++) {
            int local = s->rope_local && model_layer_windowed(h, l);
            const float *c = s->rope_cos + (local ? s->rope_local : 0) + drop * (hd / 2);
            const float *ns = nsin + (local ? hd / 2 : 0);
            size_t base = at + g * rows;  // (layer, kv head): rows of head_dim
            uint8_t *kc = (uint8_t *)kv->key_cache + base * row;
            uint8_t *vc = (uint8_t *)kv->value_cache + base * row;
            // position p at row p (full) or p - win_base (windowed), to row p - drop or, for a
            // windowed layer, p - wb
            size_t from = win ? kv->win_base : 0, to = win ? wb : drop;
            for (size_t p = win ? wb : keep + drop; p < n; p++) {
                if (kv->kv_type == ATTN_KV_F32) {
                    memcpy(k, kc + (p - from) * row, row);
                } else {
                    const uint16_t *src = (const uint16_t *)(const void *)(kc + (p - from) * row);
                    for (size_t i = 0; i < hd; i++) k[i] = fp16_to_f32(src[i]);
                }
                rope_rotate(k, 1, hd, c, ns);
                attention_kv_store(kv->kv_type, kc + (p - to) * row, k, hd);
                memmove(vc + (p - to) * row, vc + (p - from) * row, row);
            }
        }
        at += n_kv * rows;
    }
    if (kv->win_rows) kv->win_base = wb - drop;
    return n - drop;
}

float *transformer_forward_plain(Transformer *t, int token, size_t pos) {
    const SlHeader *h = &t->model.header;
    const Weights *w = &t->model.w;
    RunState *s = &t->state;
    assert(token >= 0 && token < h->vocab_size && pos < (size_t)h->seq_len);
    assert(s->kv.kv_type == ATTN_KV_F32 && !s->kv.win_rows);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t n_heads = (size_t)h->n_heads, n_kv = (size_t)h->n_kv_heads;
    size_t kv_dim = n_kv * hd, seq = (size_t)h->seq_len;
    size_t group = n_heads / n_kv;  // query heads per KV head

    size_t L = (size_t)h->n_layers;
    embed(h, w, token, s->x);
    for (size_t l = 0; l < L; l++) {
        RopeParams rp = rope_params_layer(h, w->rope_freqs, l);
        Tensor wq = tensor_layer(&w->wq, l, L), wk = tensor_layer(&w->wk, l, L);
        Tensor wv = tensor_layer(&w->wv, l, L), wo = tensor_layer(&w->wo, l, L);
        Tensor w1 = tensor_layer(&w->w1, l, L), w2 = tensor_layer(&w->w2, l, L);
        Tensor w3 = tensor_layer(&w->w3, l, L);
        rmsnorm(s->xb, s->x, w->rms_att + l * dim, dim, h->norm_eps);
        matvec_tensor(s->q, s->xb, &wq);
        matvec_tensor(s->k, s->xb, &wk);
        matvec_tensor(s->v, s->xb, &wv);
        qkv_adjust(h, w, l, s->q, s->k, s->v);
        rope(s->q, n_heads, hd, pos, &rp);
        rope(s->k, n_kv, hd, pos, &rp);
        float *kc = (float *)s->kv.key_cache + l * kv_dim * seq;
        float *vc = (float *)s->kv.value_cache + l * kv_dim * seq;
        for (size_t g = 0; g < n_kv; g++) {
            memcpy(kc + (g * seq + pos) * hd, s->k + g * hd, hd * sizeof(float));
            memcpy(vc + (g * seq + pos) * hd, s->v + g * hd, hd * sizeof(float));
        }
        // keys lo..pos: all of them, or the last sliding_window
        size_t win = model_layer_windowed(h, l) ? (size_t)h->sliding_window : 0;
        size_t lo = win && pos + 1 > win ? pos + 1 - win : 0;
        for (size_t qh = 0; qh < n_heads; qh++) {
            size_t g = qh / group;
            float *att = s->att + qh * seq;
            memset(att, 0, lo * sizeof(float));  // for the sink: keys outside the window
            attention_head(s->ao + qh * hd, att + lo, s->q + qh * hd, kc + (g * seq + lo) * hd,
                           vc + (g * seq + lo) * hd, pos - lo, hd);
        }
        if (t->sink) t->sink(t->sink_ctx, l, pos, 1, s->att, seq);
        matvec_tensor(s->xb2, s->ao, &wo);
        residual_add(h, s->x, s->xb2, post_norm(h, w, l, 0), 1);
        rmsnorm(s->xb, s->x, w->rms_ffn + l * dim, dim, h->norm_eps);
        matvec_tensor(s->hb, s->xb, &w1);
        matvec_tensor(s->hb2, s->xb, &w3);
        gate(h, s->hb, s->hb2, hidden);
        matvec_tensor(s->xb2, s->hb, &w2);
        residual_add(h, s->x, s->xb2, post_norm(h, w, l, 1), 1);
    }
    rmsnorm(s->x, s->x, w->rms_final, dim, h->norm_eps);
    matvec_tensor(s->logits, s->x, &w->wcls);
    return s->logits;
}

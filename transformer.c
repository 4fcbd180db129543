// transformer.c: the Llama forward pass over a batch of tokens.
//
// Contract: libc, libm and the thread pool; the weights are read from the read-only
// mapping and never copied. Per layer: RMSNorm, q/k/v projections, RoPE, grouped-query
// attention over the KV cache, the output projection, RMSNorm, a SwiGLU feed-forward;
// residual adds. The matmuls (matmul.c) and attention (attention.c) are the tuned
// kernels; transformer_forward_plain runs the same pass on kernels.c, as the reference.
#include "transformer.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "kernels.h"
#include "matmul.h"

// ----------------------------------------------------------------------------
// run state

int runstate_build(RunState *s, const SlHeader *h) {
    memset(s, 0, sizeof *s);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t q_dim = (size_t)h->n_heads * hd, kv_dim = (size_t)h->n_kv_heads * hd;
    size_t seq = (size_t)h->seq_len, B = seq < SL_MAX_BATCH ? seq : SL_MAX_BATCH;
    size_t cache, att, rope;
    if (__builtin_mul_overflow((size_t)h->n_layers * kv_dim, seq, &cache) ||
        __builtin_mul_overflow((size_t)h->n_heads, seq, &att) ||
        __builtin_mul_overflow(seq, hd / 2, &rope) || cache > SIZE_MAX / sizeof(float)) {
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
    AttnShape shape = {(size_t)h->n_heads, (size_t)h->n_kv_heads, hd, seq};
    s->attn_scratch = malloc(attention_scratch_bytes(&shape));
    s->rope_cos = calloc(rope, sizeof(float));
    s->rope_sin = calloc(rope, sizeof(float));
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->ao || !s->hb || !s->hb2 ||
        !s->att || !s->logits || !s->attn_scratch || !s->rope_cos || !s->rope_sin || !s->key_cache ||
        !s->value_cache) {
        fprintf(stderr, "cannot allocate the run state (KV cache: 2 x %zu bytes)\n",
                cache * sizeof(float));
        runstate_free(s);
        return MODEL_ERR_NOMEM;
    }
    // the same float operations as kernels.c's rope, done once per (position, pair)
    for (size_t p = 0; p < seq; p++) {
        for (size_t i = 0; i < hd; i += 2) {
            float freq = 1.0f / powf(h->rope_theta, (float)i / (float)hd);
            float angle = (float)p * freq;
            s->rope_cos[p * (hd / 2) + i / 2] = cosf(angle);
            s->rope_sin[p * (hd / 2) + i / 2] = sinf(angle);
        }
    }
    return MODEL_OK;
}

void runstate_free(RunState *s) {
    free(s->x), free(s->xb), free(s->xb2), free(s->q), free(s->k), free(s->v), free(s->ao);
    free(s->hb), free(s->hb2), free(s->att), free(s->logits), free(s->attn_scratch);
    free(s->rope_cos);
    free(s->rope_sin), free(s->key_cache), free(s->value_cache);
    memset(s, 0, sizeof *s);
}

int transformer_build(Transformer *t, const char *path, Pool *pool) {
    memset(t, 0, sizeof *t);
    t->pool = pool;
    int err = model_open(&t->model, path, 1);
    if (err != MODEL_OK) return err;
    if ((err = runstate_build(&t->state, &t->model.header)) != MODEL_OK) model_close(&t->model);
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

// Runs n <= batch tokens at pos0..; returns the last token's logits.
static float *forward_chunk(Transformer *t, const int *tokens, size_t n, size_t pos0) {
    const SlHeader *h = &t->model.header;
    const Weights *w = &t->model.w;
    RunState *s = &t->state;
    Pool *pool = t->pool;
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t n_heads = (size_t)h->n_heads, n_kv = (size_t)h->n_kv_heads;
    size_t q_dim = n_heads * hd, kv_dim = n_kv * hd, seq = (size_t)h->seq_len;
    float eps = h->norm_eps;
    AttnShape shape = {n_heads, n_kv, hd, seq};

    for (size_t i = 0; i < n; i++)
        memcpy(s->x + i * dim, w->token_embedding + (size_t)tokens[i] * dim, dim * sizeof(float));
    for (size_t l = 0; l < (size_t)h->n_layers; l++) {
        // attention block
        for (size_t i = 0; i < n; i++)
            rmsnorm(s->xb + i * dim, s->x + i * dim, w->rms_att + l * dim, dim, eps);
        matmul_f32_batch(pool, s->q, s->xb, w->wq + l * q_dim * dim, dim, q_dim, n);
        matmul_f32_batch(pool, s->k, s->xb, w->wk + l * kv_dim * dim, dim, kv_dim, n);
        matmul_f32_batch(pool, s->v, s->xb, w->wv + l * kv_dim * dim, dim, kv_dim, n);
        float *kc = s->key_cache + l * kv_dim * seq;  // (n_kv_heads, seq_len, head_dim)
        float *vc = s->value_cache + l * kv_dim * seq;
        for (size_t i = 0; i < n; i++) {
            size_t p = pos0 + i;
            const float *c = s->rope_cos + p * (hd / 2), *sn = s->rope_sin + p * (hd / 2);
            rope_rotate(s->q + i * q_dim, n_heads, hd, c, sn);
            rope_rotate(s->k + i * kv_dim, n_kv, hd, c, sn);
            for (size_t g = 0; g < n_kv; g++) {
                memcpy(kc + (g * seq + p) * hd, s->k + i * kv_dim + g * hd, hd * sizeof(float));
                memcpy(vc + (g * seq + p) * hd, s->v + i * kv_dim + g * hd, hd * sizeof(float));
            }
        }
        attention_prefill(pool, &shape, s->ao, s->q, kc, vc, pos0, n, s->attn_scratch);
        matmul_f32_batch(pool, s->xb2, s->ao, w->wo + l * dim * q_dim, q_dim, dim, n);
        for (size_t i = 0; i < n * dim; i++) s->x[i] += s->xb2[i];

        // feed-forward block: w2 (silu(w1 x) * w3 x)
        for (size_t i = 0; i < n; i++)
            rmsnorm(s->xb + i * dim, s->x + i * dim, w->rms_ffn + l * dim, dim, eps);
        matmul_f32_batch(pool, s->hb, s->xb, w->w1 + l * hidden * dim, dim, hidden, n);
        matmul_f32_batch(pool, s->hb2, s->xb, w->w3 + l * hidden * dim, dim, hidden, n);
        swiglu(s->hb, s->hb2, n * hidden);
        matmul_f32_batch(pool, s->xb2, s->hb, w->w2 + l * dim * hidden, hidden, dim, n);
        for (size_t i = 0; i < n * dim; i++) s->x[i] += s->xb2[i];
    }
    // logits for the last token only
    float *last = s->x + (n - 1) * dim;
    rmsnorm(last, last, w->rms_final, dim, eps);
    matmul_f32(pool, s->logits, last, w->wcls, dim, (size_t)h->vocab_size);
    return s->logits;
}

float *transformer_forward(Transformer *t, const int *tokens, size_t n, size_t pos0) {
    const SlHeader *h = &t->model.header;
    assert(n >= 1 && pos0 + n <= (size_t)h->seq_len);
    for (size_t i = 0; i < n; i++) assert(tokens[i] >= 0 && tokens[i] < h->vocab_size);
    float *logits = NULL;
    for (size_t done = 0; done < n; done += t->state.batch) {
        size_t chunk = n - done < t->state.batch ? n - done : t->state.batch;
        logits = forward_chunk(t, tokens + done, chunk, pos0 + done);
    }
    return logits;
}

float *transformer_forward_plain(Transformer *t, int token, size_t pos) {
    const SlHeader *h = &t->model.header;
    const Weights *w = &t->model.w;
    RunState *s = &t->state;
    assert(token >= 0 && token < h->vocab_size && pos < (size_t)h->seq_len);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t n_heads = (size_t)h->n_heads, n_kv = (size_t)h->n_kv_heads;
    size_t q_dim = n_heads * hd, kv_dim = n_kv * hd, seq = (size_t)h->seq_len;
    size_t group = n_heads / n_kv;  // query heads per KV head

    memcpy(s->x, w->token_embedding + (size_t)token * dim, dim * sizeof(float));
    for (size_t l = 0; l < (size_t)h->n_layers; l++) {
        rmsnorm(s->xb, s->x, w->rms_att + l * dim, dim, h->norm_eps);
        matmul(s->q, s->xb, w->wq + l * q_dim * dim, dim, q_dim);
        matmul(s->k, s->xb, w->wk + l * kv_dim * dim, dim, kv_dim);
        matmul(s->v, s->xb, w->wv + l * kv_dim * dim, dim, kv_dim);
        rope(s->q, n_heads, hd, pos, h->rope_theta);
        rope(s->k, n_kv, hd, pos, h->rope_theta);
        float *kc = s->key_cache + l * kv_dim * seq;
        float *vc = s->value_cache + l * kv_dim * seq;
        for (size_t g = 0; g < n_kv; g++) {
            memcpy(kc + (g * seq + pos) * hd, s->k + g * hd, hd * sizeof(float));
            memcpy(vc + (g * seq + pos) * hd, s->v + g * hd, hd * sizeof(float));
        }
        for (size_t qh = 0; qh < n_heads; qh++) {
            size_t g = qh / group;
            attention_head(s->ao + qh * hd, s->att + qh * seq, s->q + qh * hd, kc + g * seq * hd,
                           vc + g * seq * hd, pos, hd);
        }
        matmul(s->xb2, s->ao, w->wo + l * dim * q_dim, q_dim, dim);
        for (size_t i = 0; i < dim; i++) s->x[i] += s->xb2[i];
        rmsnorm(s->xb, s->x, w->rms_ffn + l * dim, dim, h->norm_eps);
        matmul(s->hb, s->xb, w->w1 + l * hidden * dim, dim, hidden);
        matmul(s->hb2, s->xb, w->w3 + l * hidden * dim, dim, hidden);
        swiglu(s->hb, s->hb2, hidden);
        matmul(s->xb2, s->hb, w->w2 + l * dim * hidden, hidden, dim);
        for (size_t i = 0; i < dim; i++) s->x[i] += s->xb2[i];
    }
    rmsnorm(s->x, s->x, w->rms_final, dim, h->norm_eps);
    matmul(s->logits, s->x, w->wcls, dim, (size_t)h->vocab_size);
    return s->logits;
}

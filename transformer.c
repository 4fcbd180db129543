// transformer.c: the Llama forward pass for one token, on the plain kernels.
//
// Contract: libc and libm; the weights are read from the read-only mapping and never
// copied. Per layer: RMSNorm, q/k/v projections, RoPE, grouped-query attention over
// the KV cache, the output projection, RMSNorm, a SwiGLU feed-forward; residual adds.
#include "transformer.h"

#include "kernels.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int runstate_build(RunState *s, const SlHeader *h) {
    memset(s, 0, sizeof *s);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim;
    size_t q_dim = (size_t)h->n_heads * (size_t)h->head_dim;
    size_t kv_dim = (size_t)h->n_kv_heads * (size_t)h->head_dim;
    size_t cache, att;
    if (__builtin_mul_overflow((size_t)h->n_layers * kv_dim, (size_t)h->seq_len, &cache) ||
        __builtin_mul_overflow((size_t)h->n_heads, (size_t)h->seq_len, &att)) {
        fprintf(stderr, "the KV cache for %d layers x %d positions overflows\n", h->n_layers,
                h->seq_len);
        return MODEL_ERR_DIMS;
    }
    s->x = calloc(dim, sizeof(float));
    s->xb = calloc(dim > q_dim ? dim : q_dim, sizeof(float));
    s->xb2 = calloc(dim, sizeof(float));
    s->q = calloc(q_dim, sizeof(float));
    s->k = calloc(kv_dim, sizeof(float));
    s->v = calloc(kv_dim, sizeof(float));
    s->att = calloc(att, sizeof(float));
    s->hb = calloc(hidden, sizeof(float));
    s->hb2 = calloc(hidden, sizeof(float));
    s->logits = calloc((size_t)h->vocab_size, sizeof(float));
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->logits || !s->key_cache || !s->value_cache) {
        fprintf(stderr, "cannot allocate the run state (KV cache: 2 x %zu bytes)\n",
                cache * sizeof(float));
        runstate_free(s);
        return MODEL_ERR_NOMEM;
    }
    return MODEL_OK;
}

void runstate_free(RunState *s) {
    free(s->x), free(s->xb), free(s->xb2), free(s->q), free(s->k), free(s->v);
    free(s->att), free(s->hb), free(s->hb2), free(s->logits);
    free(s->key_cache), free(s->value_cache);
    memset(s, 0, sizeof *s);
}

int transformer_build(Transformer *t, const char *path) {
    memset(t, 0, sizeof *t);
    int err = model_open(&t->model, path, 1);
    if (err != MODEL_OK) return err;
    if ((err = runstate_build(&t->state, &t->model.header)) != MODEL_OK) model_close(&t->model);
    return err;
}

void transformer_free(Transformer *t) {
    runstate_free(&t->state);
    model_close(&t->model);
}

float *transformer_forward(Transformer *t, int token, int pos) {
    const SlHeader *h = &t->model.header;
    const Weights *w = &t->model.w;
    RunState *s = &t->state;
    assert(token >= 0 && token < h->vocab_size && pos >= 0 && pos < h->seq_len);
    size_t dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim, hd = (size_t)h->head_dim;
    size_t n_heads = (size_t)h->n_heads, n_kv = (size_t)h->n_kv_heads;
    size_t q_dim = n_heads * hd, kv_dim = n_kv * hd, seq = (size_t)h->seq_len;
    size_t group = n_heads / n_kv;  // query heads per KV head
    size_t p = (size_t)pos;

    memcpy(s->x, w->token_embedding + (size_t)token * dim, dim * sizeof(float));
    for (size_t l = 0; l < (size_t)h->n_layers; l++) {
        // attention block
        rmsnorm(s->xb, s->x, w->rms_att + l * dim, dim, h->norm_eps);
        matmul(s->q, s->xb, w->wq + l * q_dim * dim, dim, q_dim);
        matmul(s->k, s->xb, w->wk + l * kv_dim * dim, dim, kv_dim);
        matmul(s->v, s->xb, w->wv + l * kv_dim * dim, dim, kv_dim);
        rope(s->q, n_heads, hd, p, h->rope_theta);
        rope(s->k, n_kv, hd, p, h->rope_theta);
        float *kc = s->key_cache + l * kv_dim * seq;  // (n_kv_heads, seq_len, head_dim)
        float *vc = s->value_cache + l * kv_dim * seq;
        for (size_t g = 0; g < n_kv; g++) {
            memcpy(kc + (g * seq + p) * hd, s->k + g * hd, hd * sizeof(float));
            memcpy(vc + (g * seq + p) * hd, s->v + g * hd, hd * sizeof(float));
        }
        for (size_t qh = 0; qh < n_heads; qh++) {
            size_t g = qh / group;
            attention_head(s->xb + qh * hd, s->att + qh * seq, s->q + qh * hd, kc + g * seq * hd,
                           vc + g * seq * hd, p, hd);
        }
        matmul(s->xb2, s->xb, w->wo + l * dim * q_dim, q_dim, dim);
        for (size_t i = 0; i < dim; i++) s->x[i] += s->xb2[i];

        // feed-forward block: w2 (silu(w1 x) * w3 x)
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

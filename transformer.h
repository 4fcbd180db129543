// transformer.h: the run state (activations and KV cache) and the forward pass.
//
// Contract: libc and libm. One Transformer owns its mapped Model and its RunState;
// transformer_build/transformer_free pair up. Nothing here exits.
#ifndef SEARCHLIGHT_TRANSFORMER_H
#define SEARCHLIGHT_TRANSFORMER_H

#include "model.h"

typedef struct {
    float *x;      // (dim) the residual stream
    float *xb;     // (max(dim, q_dim)) normed input, then attention output
    float *xb2;    // (dim) a branch's output before it joins the residual
    float *q;      // (n_heads * head_dim) query
    float *k;      // (n_kv_heads * head_dim) key of the current position
    float *v;      // (n_kv_heads * head_dim) value of the current position
    float *att;    // (n_heads, seq_len) attention weights
    float *hb;     // (hidden_dim) gate, then the gated hidden layer
    float *hb2;    // (hidden_dim) up projection
    float *logits; // (vocab_size)
    float *key_cache;   // (layer, n_kv_heads, seq_len, head_dim): positions stream in order
    float *value_cache; // (layer, n_kv_heads, seq_len, head_dim)
} RunState;

typedef struct {
    Model model;
    RunState state;
} Transformer;

// Opens and validates the model file, then allocates the run state.
// Returns MODEL_OK or an enum model_err, after printing one line.
int transformer_build(Transformer *t, const char *path);
void transformer_free(Transformer *t);

// Allocates / frees a run state for a validated header.
int runstate_build(RunState *s, const SlHeader *h);
void runstate_free(RunState *s);

// Runs token at position pos (0 <= pos < seq_len, the cache holding 0..pos-1) and
// returns the logits (vocab_size), valid until the next call.
float *transformer_forward(Transformer *t, int token, int pos);

#endif

// attention.h: the tuned grouped-query attention over the KV cache of one layer.
//
// Contract: libc, libm, the thread pool (pool.h) and, chosen at compile time, AVX-512F or
// AVX2+FMA intrinsics (plain C otherwise); no OpenMP, no allocation. For one query at
// position pos over the cached keys 0..pos (causal):
//   score_t = q . k_t / sqrt(head_dim);  out = sum_t softmax(score)_t * v_t
// The output is bitwise identical for any thread count (pool NULL, 1, 2, ... threads),
// with or without scratch, and prefill's query i equals decode at pos0 + i bitwise.
#ifndef SEARCHLIGHT_ATTENTION_H
#define SEARCHLIGHT_ATTENTION_H

#include "pool.h"

#include <stddef.h>

#define ATTN_MAX_HEAD_DIM 256  // head_dim must be 1 .. this; fast when a multiple of 16

typedef struct {
    size_t n_heads, n_kv_heads, head_dim, seq_len;  // seq_len = the cache's stride in positions
} AttnShape;

// Bytes of scratch that lets a call split the positions of a KV head across threads (used
// when the work items of whole KV heads would not balance over the pool). It depends on the
// shape only, so one buffer per layer shape serves every call; any float-aligned memory.
size_t attention_scratch_bytes(const AttnShape *s);

// Decode: one query per head at position pos over cached keys/values 0..pos of one layer.
// out, q: (n_heads, head_dim); kc, vc: (n_kv_heads, seq_len, head_dim). Needs
// n_heads % n_kv_heads == 0 and pos < seq_len. scratch: attention_scratch_bytes(s) bytes,
// or NULL (then each KV head runs on one thread: same result, less parallel).
void attention_decode(Pool *pool, const AttnShape *s, float *out, const float *q,
                      const float *kc, const float *vc, size_t pos, float *scratch);

// Prefill: m queries at positions pos0 .. pos0+m-1 (their keys/values already in the cache);
// query i attends to keys 0..pos0+i (causal within the batch). out, q: (m, n_heads * head_dim).
// scratch as for attention_decode (used only when m * n_kv_heads is below the thread count).
void attention_prefill(Pool *pool, const AttnShape *s, float *out, const float *q,
                       const float *kc, const float *vc, size_t pos0, size_t m, float *scratch);

#endif

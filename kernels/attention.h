// attention.h: the tuned grouped-query attention over the KV cache of one layer.
//
// Contract: libc, libm, the thread pool (pool.h), quant.h's scalar f16 conversions and,
// chosen at compile time, AVX-512F or AVX2+FMA (+F16C) intrinsics (plain C otherwise); no
// OpenMP, no allocation. For one query at position pos over the cached keys 0..pos (causal),
// or lo..pos with a sliding window (AttnShape.window, lo = pos - window + 1 when positive):
//   score_t = q . k_t / sqrt(head_dim);  out = sum_t softmax(score)_t * v_t
// The cache holds f32 or f16 (IEEE binary16) elements (AttnShape.kv_type). An f16 cache is
// widened to f32 exactly as it is read, and all arithmetic is f32: the output for an f16
// cache equals, bit for bit, the output for the f32 cache holding the widened values. For
// either type the output is bitwise identical for any thread count (pool NULL, 1, 2, ...
// threads), with or without scratch, and prefill's query i equals decode at pos0 + i bitwise.
#ifndef SEARCHLIGHT_ATTENTION_H
#define SEARCHLIGHT_ATTENTION_H

#include "base/pool.h"

#include <stddef.h>

#define ATTN_MAX_HEAD_DIM 256  // head_dim must be 1 .. this; fast when a multiple of 16

// Element types of the KV cache.
#define ATTN_KV_F32 0  // float
#define ATTN_KV_F16 1  // uint16_t holding IEEE binary16 (half the bytes to read)

typedef struct {
    size_t n_heads, n_kv_heads, head_dim, seq_len;  // seq_len = the cache's stride in positions
    int kv_type;    // ATTN_KV_F32 or ATTN_KV_F16
    size_t window;  // sliding window: a query at p attends to keys max(0, p - window + 1)..p;
                    // 0: keys 0..p
} AttnShape;  // {h, kv, hd, seq} still means f32 and no window (but -Wextra wants them named)

// Bytes of one cache element of kv_type: 4 for ATTN_KV_F32, 2 for ATTN_KV_F16.
size_t attention_kv_bytes(int kv_type);

// Writes n floats from src into a cache of kv_type at dst (a row of k or v, or several):
// a copy for f32; for f16 each value rounded to nearest even, bit for bit as quant.h's
// f32_to_fp16 (SIMD where available). dst: n * attention_kv_bytes(kv_type) bytes, aligned
// for its element type.
void attention_kv_store(int kv_type, void *dst, const float *src, size_t n);

// Bytes of scratch that lets a call split the positions of a KV head across threads (used
// when the work items of whole KV heads would not balance over the pool). It depends on the
// shape only, so one buffer per layer shape serves every call; any float-aligned memory.
size_t attention_scratch_bytes(const AttnShape *s);

// Decode: one query per head at position pos over cached keys/values 0..pos of one layer.
// out, q: (n_heads, head_dim); kc, vc: (n_kv_heads, seq_len, head_dim) elements of
// s->kv_type (float or uint16_t), aligned for that type. Needs
// n_heads % n_kv_heads == 0 and pos < seq_len. scratch: attention_scratch_bytes(s) bytes,
// or NULL (then each KV head runs on one thread: same result, less parallel).
void attention_decode(Pool *pool, const AttnShape *s, float *out, const float *q,
                      const void *kc, const void *vc, size_t pos, float *scratch);

// Prefill: m queries at positions pos0 .. pos0+m-1 (their keys/values already in the cache);
// query i attends to keys 0..pos0+i (causal within the batch). out, q: (m, n_heads * head_dim).
// scratch as for attention_decode (used only when m * n_kv_heads is below the thread count).
void attention_prefill(Pool *pool, const AttnShape *s, float *out, const float *q,
                       const void *kc, const void *vc, size_t pos0, size_t m, float *scratch);

// Recording (run --attn-map, --attn-dump): the same calls, which also write the attention
// weights their kernel used. att: (m, n_heads, att_stride) floats (m = 1 for decode),
// att_stride >= pos0 + m; row (i, h) receives softmax weights over keys 0 .. pos0 + i (zero
// for the keys before a sliding window), and the rest of the row is left alone. The kernel stores each score as it computes it, and at
// the end turns the scores into e^(s - m) / l with its own exponential and its final max m
// and sum l, the numbers that its output was divided by. out is bitwise the same as without
// recording, and with att NULL these are attention_decode and attention_prefill: the calls
// without recording run a separate instance of the kernel in which the score store is
// compiled out, so recording costs nothing when off.
void attention_decode_rec(Pool *pool, const AttnShape *s, float *out, const float *q,
                          const void *kc, const void *vc, size_t pos, float *scratch,
                          float *att, size_t att_stride);
void attention_prefill_rec(Pool *pool, const AttnShape *s, float *out, const float *q,
                           const void *kc, const void *vc, size_t pos0, size_t m,
                           float *scratch, float *att, size_t att_stride);

// Several sequences' prefills (each its own cache, shape and positions, as attention_prefill_rec
// takes them) in one share-out over the pool: the server's decoding step, where each sequence
// alone has only n_kv_heads items. Each query gets the kernel and the order of operations that
// attention_prefill_rec gives it, so the same bits. At most 128 sequences.
typedef struct {
    const AttnShape *s;
    float *out;
    const float *q;
    const void *kc, *vc;
    size_t pos0, m;
    float *att;          // recording, or NULL
    size_t att_stride;
} AttnSeq;
void attention_prefill_seqs(Pool *pool, const AttnSeq *seqs, size_t n);

#endif

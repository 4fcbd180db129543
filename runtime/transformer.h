// transformer.h: the run state (activations and KV cache) and the forward pass.
//
// Contract: libc, libm and the thread pool. One Transformer owns its mapped Model and
// its RunState; transformer_build/transformer_free pair up. Nothing here exits.
// One forward pass serves both uses: a prompt goes through as a (tokens x dim) matrix,
// and decoding is the same pass on one token.
#ifndef SEARCHLIGHT_TRANSFORMER_H
#define SEARCHLIGHT_TRANSFORMER_H

#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "model.h"
#include "base/pool.h"

// The most tokens one forward call takes; a longer prompt goes through in chunks.
#define SL_MAX_BATCH 128

// A KV cache: the keys and values of the positions a sequence has run. Each sequence (a
// session) has its own; the transformer holds one for its single-sequence calls.
typedef struct {
    int kv_type;        // ATTN_KV_F32 or ATTN_KV_F16: the element type of the caches
    void *key_cache;    // by layer, (n_kv_heads, rows, head_dim): positions stream in order;
                        // rows is seq_len, or win_rows for a windowed layer (see below)
    void *value_cache;  // likewise
    // The windowed layers' caches (model_layer_windowed) hold win_rows positions each, when
    // that is fewer than seq_len: positions win_base .. win_base + win_rows - 1, position p
    // at row p - win_base. win_rows = window - 1 + 2 batch: a chunk of up to batch tokens
    // finds every key its queries see (window - 1 before it) and itself; when the next chunk
    // would not fit, the last window - 1 positions move to the front (at most every batch
    // tokens). The attention kernel sees the rows as positions 0 .., the window's positions
    // relative to win_base: the same keys in the same order as a full cache, so the same bits.
    size_t win_rows;    // 0: every layer holds seq_len positions
    size_t win_base;
    size_t kv_bytes;    // the bytes of key_cache (and of value_cache)
} KvCache;

// Allocates a cache of kv_type for a model with header h (seq_len positions; windowed layers
// hold their window only unless full is 1). Returns MODEL_OK, or an error after one line.
int kvcache_build(KvCache *c, const SlHeader *h, int kv_type, int full);
void kvcache_free(KvCache *c);

typedef struct {
    size_t batch;  // rows of the activation buffers: min(SL_MAX_BATCH, seq_len)
    float *x;      // (batch, dim) the residual stream
    float *xb;     // (batch, dim) normed input of a block
    float *xb2;    // (batch, dim) a block's output before it joins the residual
    float *q;      // (batch, n_heads * head_dim) queries
    float *k;      // (batch, n_kv_heads * head_dim) keys of the new positions
    float *v;      // (batch, n_kv_heads * head_dim) values of the new positions
    float *ao;     // (batch, n_heads * head_dim) attention output
    float *hb;     // (batch, hidden_dim) gate, then the gated hidden layer
    float *hb2;    // (batch, hidden_dim) up projection
    float *att;    // (n_heads, seq_len) attention weights of the plain path
    float *logits; // (vocab_size)
    float *attn_scratch;  // attention_scratch_bytes: lets attention split positions over threads
    void *q8;           // matmul_q8_bytes(widest input, batch): activations as q8_0
    float *rope_cos;    // (seq_len, head_dim / 2) RoPE rotations, computed once; with a local
                        // RoPE base (header.rope_local_theta), the windowed layers' table follows
    float *rope_sin;    // (seq_len, head_dim / 2), likewise
    size_t rope_local;  // where the windowed layers' table starts in rope_cos and rope_sin (0:
                        // every layer uses the first)
    KvCache kv;         // the transformer's own cache (transformer_forward's)
    float *att_rec;     // (batch, n_heads, seq_len) recorded weights; only with a sink
    float *seq_logits;  // (seq_logits_rows, vocab_size) the logits of a batch of sequences
    size_t seq_logits_rows;
} RunState;

// Receives the attention weights of one layer for tokens at positions pos0 .. pos0 + n - 1:
// w is (n, n_heads, stride); row (i, h) holds head h's weights over keys 0 .. pos0 + i (the
// rest of the row is unspecified). Valid during the call only.
typedef void (*AttnSink)(void *ctx, size_t layer, size_t pos0, size_t n, const float *w,
                         size_t stride);

typedef struct {
    Model model;
    RunState state;
    Pool *pool;      // not owned; NULL runs on the calling thread
    AttnSink sink;   // set by transformer_record: attention recording is on
    void *sink_ctx;
    double attention_seconds;  // wall time spent in the attention kernel, summed over calls
                               // (--bench reports its share of prompt processing)
} Transformer;

// Opens and validates the model file, then allocates the run state with a KV cache of
// kv_type (ATTN_KV_F32 or ATTN_KV_F16, attention.h). Returns MODEL_OK or an enum
// model_err, after printing one line.
int transformer_build(Transformer *t, const char *path, Pool *pool, int kv_type);
// The same with a context of n_ctx positions instead of the model's (0: the model's): the KV
// cache, attention maps, context shifts and perplexity windows then use n_ctx, which may not
// exceed the model's context (MODEL_ERR_DIMS, after one line); and with full caches on
// windowed layers too when full is 1 (runstate_build_full).
int transformer_build_ctx(Transformer *t, const char *path, Pool *pool, int kv_type, int n_ctx,
                          int full);
// transformer_build_ctx with the model's context.
int transformer_build_full(Transformer *t, const char *path, Pool *pool, int kv_type, int full);
void transformer_free(Transformer *t);

// Allocates / frees a run state for an opened model (its header, and its RoPE divisors).
// runstate_build gives windowed layers caches of their window (KvCache.win_rows) where that
// is smaller and the context shift keeps them correct (runstate_window_rows);
// runstate_build_full gives every layer seq_len positions (full = 1).
int runstate_build(RunState *s, const Model *m, int kv_type);
int runstate_build_full(RunState *s, const Model *m, int kv_type, int full);

// The rows of a windowed layer's cache for header h: window - 1 + 2 min(seq_len, SL_MAX_BATCH)
// when the model has windowed layers, that is below seq_len, and the shift run does at a full
// context (SHIFT_SINKS, drop half the rest) leaves the next window past the sinks; else 0 (full
// caches). And the bytes of each of the key and value caches of kv_type, with full caches or not.
size_t runstate_window_rows(const SlHeader *h);

// RoPE's parameters (kernels.h) from a header; divisors: the model's rope_freqs tensor
// (SL_ROPE_FREQS) or NULL.
RopeParams rope_params(const SlHeader *h, const float *divisors);
// Those of layer l: a windowed layer's with a local RoPE base (header.rope_local_theta) are that
// base, unscaled; every other layer's are rope_params'.
RopeParams rope_params_layer(const SlHeader *h, const float *divisors, size_t l);
size_t runstate_kv_bytes(const SlHeader *h, int kv_type, int full);
void runstate_free(RunState *s);

// Turns attention recording on: from now on every forward pass hands each layer's weights,
// the ones its attention kernel used (attention.h's *_rec calls), to sink. Allocates the
// recording buffer; returns MODEL_OK or MODEL_ERR_NOMEM after printing one line.
int transformer_record(Transformer *t, AttnSink sink, void *ctx);

// Runs n >= 1 tokens at positions pos0 .. pos0 + n - 1 (pos0 + n <= seq_len; the cache
// holds 0 .. pos0 - 1) and returns the logits (vocab_size) of the last one, valid until
// the next call. Any n works: more than SL_MAX_BATCH tokens go through in chunks. With
// windowed caches, pos0 may go back (a rewind) only as far as the windowed layers still hold
// the window before it: pos0 - window + 1 >= win_base.
float *transformer_forward(Transformer *t, const int *tokens, size_t n, size_t pos0);

// One sequence's part of a batched pass (transformer_forward_seqs): n >= 1 tokens at positions
// pos0 .. pos0 + n - 1 of its own cache (which holds 0 .. pos0 - 1).
typedef struct {
    KvCache *kv;          // the sequence's cache (NULL: the transformer's own)
    const int *tokens;
    size_t n, pos0;
    float *logits;        // receives the last token's logits (vocab_size), or NULL
    AttnSink sink;        // receives this sequence's attention weights, or NULL
    void *sink_ctx;
} SeqBatch;

// Runs several sequences' tokens in one pass: the matmuls take every token at once, each
// attention reads its own sequence's cache. At most the transformer's batch tokens in all (and
// n_seqs >= 1). Each token's result is bitwise what it would be alone: no row of any kernel
// depends on the other rows of the batch. A sink here needs transformer_record_buffer first.
void transformer_forward_seqs(Transformer *t, const SeqBatch *seqs, size_t n_seqs);

// Makes room for the logits of n_seqs sequences in one transformer_forward_seqs (which grows it
// by itself otherwise). Returns MODEL_OK or MODEL_ERR_NOMEM after one line.
int transformer_reserve_seqs(Transformer *t, size_t n_seqs);

// Allocates the buffer that attention recording (transformer_record, SeqBatch.sink) fills.
// Returns MODEL_OK or MODEL_ERR_NOMEM after one line.
int transformer_record_buffer(Transformer *t);

// transformer_shift on another cache than the transformer's own.
size_t transformer_shift_kv(Transformer *t, KvCache *kv, size_t n, size_t keep, size_t drop);
int transformer_can_shift_kv(const Transformer *t, const KvCache *kv, size_t n, size_t keep,
                             size_t drop);
size_t transformer_resume_kv(const Transformer *t, const KvCache *kv, size_t pos);

// The same pass, with the logits of every token: logits is (n, vocab_size). For --ppl.
void transformer_forward_all(Transformer *t, const int *tokens, size_t n, size_t pos0,
                             float *logits);

// Context shift with attention sinks (StreamingLLM): the cache holds positions 0 .. n - 1;
// positions keep .. keep + drop - 1 are dropped and keep + drop .. n - 1 move down to keep ..
// n - drop - 1, each key rotated back by drop positions (RoPE by -drop, from the same table),
// so that the kept keys sit at the positions the next tokens see. Values move unchanged.
// Needs keep + drop <= n <= seq_len; with windowed caches also n - drop - window + 1 >= keep
// (the next window lies past the kept positions, as for run's shift at a full context).
// Returns the new length, n - drop: the next position.
size_t transformer_shift(Transformer *t, size_t n, size_t keep, size_t drop);

// Whether transformer_shift(t, n, keep, drop) can be done: always with full caches; with
// windowed ones when the next window lies past the kept positions.
int transformer_can_shift(const Transformer *t, size_t n, size_t keep, size_t drop);

// Where a caller that wants to run again from position pos (a rewind: the cache holds more)
// must start: pos, when the windowed caches still hold the window before it (or there are
// none); else 0, the whole sequence again.
size_t transformer_resume(const Transformer *t, size_t pos);

// What run shifts by when the cache is full (--context-shift, chat): the first SHIFT_SINKS
// positions stay, and half of the others go: drop = (seq_len - SHIFT_SINKS) / 2.
#define SHIFT_SINKS 4

// The same pass for one token, on the plain kernels of kernels.h only: the reference
// that the fast path is tested against. Needs an f32 KV cache, full (win_rows 0). With recording on, the sink
// receives attention_head's weights (n = 1).
float *transformer_forward_plain(Transformer *t, int token, size_t pos);

#endif

// model.h: the searchlight model file format, defined once, and the loader's API.
//
// Contract: the format is little-endian. One file holds the whole model: a fixed
// 256-byte header, the tokenizer, then the tensors. The loader (model.c) validates
// every byte count against the header before it maps the file; nothing here exits.
//
// File layout (offsets in bytes):
//
//   0                  SlHeader (256 bytes, below)
//   256                tokenizer section (tokenizer_bytes bytes, see tokenizer.h)
//   then               version 2: the chat template, chat_template_bytes of text (the model's
//                      Jinja template, as Hugging Face or GGUF carry it; no terminating NUL)
//   then               version 2, only when a tensor's type is SL_TYPE_PER_LAYER: the layer
//                      types, n_layers bytes (enum sl_dtype) for each such tensor in file order
//   align64(...)       tensor 0, then each further tensor at the next 64-byte boundary,
//                      in the order of enum sl_tensor; zero padding between them.
//   end of last tensor end of file: the size is exactly what the header implies.
//
// Each tensor stacks all layers, row-major, with rows along the output dimension:
//   W (rows, cols) computes y = W x with x of length cols and y of length rows.
// The type of each tensor is stated in header.tensor_type[], so new weight types fit
// without a format break. A stacked matrix whose layers differ in type (a GGUF Q4_K_M's wv and
// w2: Q6_K in some layers, Q4_K in the others) has type SL_TYPE_PER_LAYER, and its layers' types
// follow the tokenizer; each layer is then stored whole, one after the other, and every layer
// type must be a block type. A file with n_tensors == 0 holds a tokenizer only.
#ifndef SEARCHLIGHT_MODEL_H
#define SEARCHLIGHT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/types.h"  // the weight types, Tensor, the RoPE scalings
#include "tokenizer.h"

#define SL_MAGIC "SRCHLGHT"  // 8 bytes, no terminating NUL in the file
#define SL_VERSION 3  // the newest version this build reads; see the header's version field
#define SL_HEADER_BYTES 256
#define SL_ALIGN 64

// The weight types (enum sl_dtype, SL_TYPE_PER_LAYER), the weight matrix (Tensor) and the
// RoPE scalings (enum sl_rope) are kernels/types.h's.

// Header flags.
#define SL_FLAG_SHARED_CLASSIFIER 1u  // the classifier is the token embedding table
#define SL_FLAG_NO_BOS 2u             // version 2: a prompt does not start with BOS (Qwen's
                                      // tokenizers add none)
#define SL_FLAG_QKV_BIAS 4u           // version 2: q, k and v projections add a bias (Qwen2)
#define SL_FLAG_QK_NORM 8u            // version 2: per-head RMSNorm of q and k before RoPE (Qwen3)
#define SL_FLAG_POST_NORMS 16u        // version 3: RMSNorm of the attention output and of the
                                      // feed-forward output before their residual adds, with
                                      // the weights of SL_T_POST_NORMS (Gemma 2 and 3)
#define SL_FLAG_GELU 32u              // version 3: the feed-forward is GeGLU with gelu's tanh
                                      // approximation (kernels.h's geglu) instead of SwiGLU
#define SL_FLAGS_KNOWN 63u

// The tensors, in file order. The classifier is absent when it is shared. Version 1 files
// describe the first SL_T_COUNT_V1; version 2 files the first SL_T_COUNT_V2, the last three
// present only when the header asks for them; version 3 files all SL_T_COUNT. Rows of wq and wk, and their biases and norm weights, are in
// the order of our RoPE: within a head, element 2j and 2j+1 form pair j (export permutes
// Hugging Face's halves layout into it).
enum sl_tensor {
    SL_T_EMBED,      // (vocab_size, dim)
    SL_T_RMS_ATT,    // (n_layers, dim)
    SL_T_WQ,         // (n_layers, n_heads * head_dim, dim)
    SL_T_WK,         // (n_layers, n_kv_heads * head_dim, dim)
    SL_T_WV,         // (n_layers, n_kv_heads * head_dim, dim)
    SL_T_WO,         // (n_layers, dim, n_heads * head_dim)
    SL_T_RMS_FFN,    // (n_layers, dim)
    SL_T_W1,         // (n_layers, hidden_dim, dim)   gate
    SL_T_W2,         // (n_layers, dim, hidden_dim)   down
    SL_T_W3,         // (n_layers, hidden_dim, dim)   up
    SL_T_RMS_FINAL,  // (dim)
    SL_T_CLS,        // (vocab_size, dim), only without SL_FLAG_SHARED_CLASSIFIER
    SL_T_COUNT_V1,
    SL_T_BQKV = SL_T_COUNT_V1,  // (n_layers, (n_heads + 2 n_kv_heads) * head_dim): the biases
                                // of q, then k, then v; only with SL_FLAG_QKV_BIAS
    SL_T_QK_NORM,    // (n_layers, 2 * head_dim): the RMSNorm weights of q's heads, then k's;
                     // only with SL_FLAG_QK_NORM
    SL_T_ROPE_FREQS, // (head_dim / 2): RoPE's frequency divisors; only with SL_ROPE_FREQS
    SL_T_COUNT_V2,
    SL_T_POST_NORMS = SL_T_COUNT_V2,  // (n_layers, 2 * dim): the RMSNorm weights of the
                     // attention output, then of the feed-forward output; only with
                     // SL_FLAG_POST_NORMS (version 3)
    SL_T_COUNT
};
_Static_assert(SL_T_COUNT <= 16, "header.tensor_type holds 16 tensors");

// Tensors always stored as f32: the norm weights, the biases and the RoPE divisors. Norm
// weights are the factors RMSNorm multiplies by: Gemma's (1 + w) is stored as that sum.
int tensor_is_f32(int t);

typedef struct {
    char magic[8];           // SL_MAGIC
    uint32_t version;        // 1, or 2 when a version-2 field is used: the tokenizer section in
                             // format 2 (tokenizer.h), RoPE scaling, stop ids, a flag above
                             // SL_FLAG_SHARED_CLASSIFIER, or a sliding window
    uint32_t header_bytes;   // SL_HEADER_BYTES
    int32_t dim;             // width of the residual stream
    int32_t hidden_dim;      // width of the feed-forward layer
    int32_t n_layers;
    int32_t n_heads;         // query heads
    int32_t n_kv_heads;      // key/value heads (grouped-query attention when < n_heads)
    int32_t head_dim;        // even, for RoPE's pairs
    int32_t vocab_size;
    int32_t seq_len;         // context length
    float rope_theta;        // RoPE base, 10000 for Llama 2
    float norm_eps;          // RMSNorm epsilon
    uint32_t flags;          // SL_FLAG_*
    uint32_t weight_type;    // enum sl_dtype of the matrices (a summary of tensor_type)
    int32_t bos_id;          // beginning of sequence
    int32_t eos_id;          // end of sequence, -1 if none
    uint32_t tokenizer_bytes;  // size of the tokenizer section that follows the header
    uint32_t n_tensors;      // SL_T_COUNT_V1 (version 1), SL_T_COUNT_V1 or SL_T_COUNT_V2
                             // (version 2), SL_T_COUNT (version 3), or 0 for a tokenizer-only file
    uint8_t tensor_type[16]; // enum sl_dtype of each tensor, indexed by enum sl_tensor
    // version 2 (zero in version 1): RoPE scaling, applied to the frequencies (kernels.h)
    uint32_t rope_scaling;   // enum sl_rope
    float rope_factor;       // linear, llama3: frequencies divided by it (>= 1 for llama3)
    float rope_low_freq;     // llama3: low_freq_factor
    float rope_high_freq;    // llama3: high_freq_factor (> low_freq_factor)
    int32_t rope_orig_ctx;   // llama3: original_max_position_embeddings
    // version 2 (zero in version 1): more ids that end a generation, besides bos_id and eos_id
    // (Llama 3's <|eot_id|>, Qwen's <|im_end|>)
    uint32_t n_stop;         // at most SL_MAX_STOP
    int32_t stop_ids[8];     // the first n_stop are ids below vocab_size
    // version 2 (zero in version 1): sliding-window attention (Mistral v0.1, Phi-3): a query at
    // position p attends to keys p - window + 1 .. p; 0 means every earlier key
    int32_t sliding_window;
    uint32_t chat_template_bytes;  // version 2: the chat template's size (0: none), at most
                                   // SL_CHAT_TEMPLATE_MAX
    // version 3 (zero before): Gemma's
    float embed_scale;       // the token embedding is multiplied by it (Gemma: sqrt(dim) as
                             // float); 0: not scaled
    float attn_scale;        // attention scores are q . k times it (Gemma 3: query_pre_attn_scalar
                             // ^-1/2); 0: 1 / sqrt(head_dim)
    float rope_local_theta;  // with window_period: the windowed layers' RoPE base, unscaled (their
                             // RoPE ignores rope_scaling); 0: the same RoPE as the global layers
    int32_t window_period;   // 0: sliding_window applies to every layer; N >= 2: only to the
                             // windowed layers, layer l being global (every earlier key, RoPE
                             // of rope_theta and rope_scaling) when (l + 1) % N == 0 (Gemma 3: 6)
    uint8_t reserved[56];    // zero
    // version 2 (zero in version 1): the sampling the model's authors recommend (GGUF's
    // general.sampling.*, Hugging Face's generation_config.json); run uses each one it holds
    // where the command line gives none
    uint32_t sampling_set;   // SL_SAMPLE_* bits: which of the five below it holds
    float sample_temperature;     // >= 0
    float sample_top_p;           // (0, 1]
    float sample_min_p;           // [0, 1]
    float sample_repeat_penalty;  // > 0
    int32_t sample_top_k;         // >= 0 (0: off)
} SlHeader;

#define SL_SAMPLE_TEMPERATURE 1u
#define SL_SAMPLE_TOP_P 2u
#define SL_SAMPLE_TOP_K 4u
#define SL_SAMPLE_MIN_P 8u
#define SL_SAMPLE_REPEAT_PENALTY 16u
#define SL_SAMPLE_KNOWN 31u

// Stores one recommended sampling value (which: an SL_SAMPLE_* bit) if it is in the range
// above (finite; top_k whole and below 2^31). Returns 0, or -1 when it is not.
int model_set_sampling(SlHeader *h, uint32_t which, double v);

// Writes the recommended sampling held by h as "temperature 0.7, top_p 0.8, ..." into buf
// (cap bytes); "" when it holds none.
void model_sampling_text(const SlHeader *h, char *buf, size_t cap);

// Is layer l of a model with header h windowed (sliding_window applies to it)?
int model_layer_windowed(const SlHeader *h, size_t l);

#define SL_MAX_STOP 8
#define SL_CHAT_TEMPLATE_MAX (1u << 20)

_Static_assert(sizeof(SlHeader) == SL_HEADER_BYTES, "SlHeader must be 256 bytes");

// Loader errors. Each failure also prints one line to stderr naming the file.
enum model_err {
    MODEL_OK = 0,
    MODEL_ERR_IO = -1,        // cannot open, stat, read or map the file
    MODEL_ERR_EMPTY = -2,     // zero bytes
    MODEL_ERR_TRUNCATED = -3, // shorter than the header
    MODEL_ERR_MAGIC = -4,     // not a searchlight file
    MODEL_ERR_VERSION = -5,   // a version this build does not read
    MODEL_ERR_DIMS = -6,      // a size is non-positive, inconsistent or overflows
    MODEL_ERR_TYPE = -7,      // a weight type this build cannot compute with
    MODEL_ERR_SIZE = -8,      // file size differs from what the header implies
    MODEL_ERR_TOKENIZER = -9, // the tokenizer section is malformed
    MODEL_ERR_NO_WEIGHTS = -10, // a tokenizer-only file where weights are needed
    MODEL_ERR_NOMEM = -11,
};

// Byte offset and size of each tensor, computed from a header alone.
typedef struct {
    const uint8_t *layer_type[SL_T_COUNT];  // SL_TYPE_PER_LAYER tensors: their n_layers types
                                            // (in the table given to model_layout), else NULL
    size_t layer_types_bytes;   // the size of the layer types table (0: none)
    size_t layer_types_offset;  // where it starts: after the tokenizer and the chat template
    size_t offset[SL_T_COUNT];  // 0 for an absent tensor
    size_t bytes[SL_T_COUNT];   // 0 for an absent tensor
    size_t rows[SL_T_COUNT];    // rows of each tensor, all layers stacked
    size_t cols[SL_T_COUNT];    // elements per row
    size_t file_bytes;          // the exact size of the file
} SlLayout;

// Checks the header's sizes (positive, consistent, no overflow) and computes the layout.
// layer_types is the table of layer types (model_layer_types_bytes(h) bytes), or NULL when
// that is 0; out keeps pointers into it. Returns MODEL_OK, or an error after printing one line
// naming `path`.
int model_layout(const SlHeader *h, const uint8_t *layer_types, SlLayout *out, const char *path);

// The size of the layer types table a header announces: n_layers for each tensor of type
// SL_TYPE_PER_LAYER (0 if n_layers is not positive).
size_t model_layer_types_bytes(const SlHeader *h);

// Parameters in a layout: the elements of every tensor present.
size_t layout_params(const SlLayout *lay);

const char *tensor_name(int t);

// The weights: views into the read-only mapping.
typedef struct {
    Tensor token_embedding; // (vocab_size, dim)
    const float *rms_att;   // (layer, dim)
    Tensor wq;              // (layer, n_heads * head_dim, dim)
    Tensor wk;              // (layer, n_kv_heads * head_dim, dim)
    Tensor wv;              // (layer, n_kv_heads * head_dim, dim)
    Tensor wo;              // (layer, dim, n_heads * head_dim)
    const float *rms_ffn;   // (layer, dim)
    Tensor w1;              // (layer, hidden_dim, dim)
    Tensor w2;              // (layer, dim, hidden_dim)
    Tensor w3;              // (layer, hidden_dim, dim)
    const float *rms_final; // (dim)
    Tensor wcls;            // (vocab_size, dim), the token embedding when shared
    const float *bqkv;      // (layer, (n_heads + 2 * n_kv_heads) * head_dim) or NULL
    const float *qk_norm;   // (layer, 2, head_dim) or NULL
    const float *rope_freqs; // (head_dim / 2) or NULL
    const float *post_norms; // (layer, 2, dim) or NULL: after attention, after the feed-forward
} Weights;

typedef struct {
    SlHeader header;     // a validated copy
    SlLayout layout;
    Weights w;           // all empty for a tokenizer-only file
    Tokenizer tokenizer; // the embedded tokenizer
    const uint8_t *map;  // the read-only mapping of the whole file
    size_t map_bytes;
    uint8_t *layer_types; // a copy of the layer types table (layout.layer_type points in), or NULL
    const char *chat_template;  // the chat template in the mapping (not NUL-terminated), or NULL
    size_t chat_template_bytes;
} Model;

// Validates and maps `path`. With need_weights, a tokenizer-only file is refused.
// On failure prints one line and returns an enum model_err; `m` is left empty.
int model_open(Model *m, const char *path, int need_weights);
void model_close(Model *m);

// Does `id` end a generation: bos_id, eos_id or one of the stop ids?
int model_is_stop(const SlHeader *h, int id);

// Adds id to the stop ids unless it already ends a generation (bos_id, eos_id, a stop id). Returns 0, or -1 when
// SL_MAX_STOP are taken.
int model_add_stop(SlHeader *h, int id);

// The oldest version whose header holds h: 3 when a version-3 field is used (a flag of
// version 3, embed_scale, attn_scale, rope_local_theta, window_period); else 2 when a
// version-2 field is used (RoPE scaling, stop ids, a flag other than
// SL_FLAG_SHARED_CLASSIFIER, a sliding window, a block type, per-layer types, a chat
// template or recommended sampling); else 1. (The tokenizer section has its own,
// tokenizer_format.)
int model_header_version(const SlHeader *h);

// The tokenizer section's format (tokenizer.h) in a file of this version: 1 or 2 (version 3
// kept format 2).
#define SL_TOKENIZER_FORMAT(version) ((version) > 2 ? 2 : (int)(version))

#endif

// gguf.h: reads GGUF (versions 2 and 3): header, metadata, tensor infos, bounds-checked; and
// the model glue that turns a GGUF of a family export reads (llama, qwen2, qwen3, phi3) into
// our header, tokenizer and f32 rows.
//
// Contract: POSIX (mmap) and libc. gguf_open validates the whole file before anything is
// used: every length, count and offset is checked against the file size and for overflow
// in size_t, and no allocation is larger than the file implies. A malformed file gets one
// line on stderr saying what is wrong and where (the entry and the byte offset); nothing
// here exits.
//
// GGUF layout (little-endian): "GGUF", uint32 version, uint64 n_tensors, uint64 n_kv; n_kv
// metadata entries (string key, uint32 value type, value); n_tensors tensor infos (string
// name, uint32 n_dims, uint64 ne[n_dims] innermost first, uint32 ggml type, uint64 offset
// relative to the data section); then the data section, at the next multiple of
// general.alignment (default 32). A string is a uint64 length and that many bytes.
#ifndef SEARCHLIGHT_GGUF_H
#define SEARCHLIGHT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "convert/pieces.h"
#include "kernels/blocks.h"  // the ggml type ids and block layouts
#include "model.h"
#include "tokenizer.h"

#define GGUF_MAX_DIMS 4

enum gguf_vtype {
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_VTYPE_COUNT
};


typedef struct {
    const char *p;  // into the mapping, not NUL-terminated
    size_t len;
} GgufStr;

typedef struct {
    GgufStr key;
    uint32_t type;      // enum gguf_vtype
    uint32_t arr_type;  // arrays: the element type
    size_t arr_n;       // arrays: the element count
    size_t value;       // file offset of the value (arrays: of the first element)
} GgufKv;

typedef struct {
    GgufStr name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  // elements along each dimension, ne[0] innermost; 1 past n_dims
    uint32_t type;               // ggml type
    size_t offset;               // absolute file offset of the data
    size_t bytes;                // size of the data; 0 for a type export does not read
} GgufTensor;

typedef struct {
    const char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    size_t n_kv, n_tensors;
    GgufKv *kv;
    GgufTensor *tensors;
    size_t *by_name;  // tensor indices sorted by name
    size_t alignment, data_offset;
} Gguf;

// Does the file start with the GGUF magic?
int gguf_sniff(const uint8_t *head, size_t n);

// Maps and validates path. Returns 0, or -1 after one line on stderr.
int gguf_open(Gguf *g, const char *path);
void gguf_close(Gguf *g);

// Lookups; NULL when absent.
const GgufKv *gguf_find_kv(const Gguf *g, const char *key);
const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name);

// "F32", "Q4_K", ...; "type N" for an unknown id (in a static buffer).
const char *ggml_type_name(uint32_t type);

// The model glue: our header (tensor_type[] set to the GGUF's own types where we store them,
// SL_TYPE_PER_LAYER where a matrix's layers have different block types we store, q8_0 for other
// block types, f32 where other layers disagree), the tokenizer, and a TensorData producer
// yielding f32 bytes of our tensors (enum sl_tensor order, layers stacked, rows = outputs).
typedef struct {
    Gguf g;
    SlHeader header;  // n_tensors 0 for a vocabulary-only file
    Tokenizer tok;
    int arch;         // index of general.architecture among those export reads
    Pieces pieces;    // our tensors from the GGUF's (pieces.h)
    uint8_t *layer_types;  // the layer types table (model.h) of the header, or NULL
    GgufStr chat_template; // tokenizer.chat_template (len 0: none); header.chat_template_bytes
} GgufModel;

// Returns 0, or -1 after one line naming the file and the problem.
int gguf_model_open(GgufModel *m, const char *path);
void gguf_model_close(GgufModel *m);

// The architecture of an opened model with tensors: "llama", "qwen2", "qwen3" or "phi3".
const char *gguf_arch_name(const GgufModel *m);

// TensorData fill (writer.h) over f32 bytes; ctx is a GgufModel.
int gguf_model_fill(void *ctx, int t, size_t offset, void *buf, size_t n);

// TensorData raw (writer.h): the bytes of a tensor kept in its GGUF block type (q4_0, q4_k,
// q5_k, q6_k), ggml's blocks as the file has them, rows in our order.
int gguf_model_raw(void *ctx, int t, size_t offset, void *buf, size_t n);

#endif

// types.h: the weight types, one row of a table each (TypeInfo), the weight matrix (Tensor) that
// the kernels compute with, and the RoPE scalings; the bottom of kernels/, which model.h builds
// its file format on.
//
// Contract: libc only; no allocation, no global state but constant tables. Nothing in kernels/
// includes model.h or runtime/: the kernels know weights as Tensors, and a header's numbers
// reach them as parameters (runtime/transformer.h's rope_params makes a RopeParams).
#ifndef SEARCHLIGHT_TYPES_H
#define SEARCHLIGHT_TYPES_H

#include <stddef.h>
#include <stdint.h>

// Weight types (their numbers are the model file's, model.h). A tensor of R rows x C columns
// is stored as:
//   f32, f16, bf16  R x C elements, row-major (IEEE binary32 / binary16 / bfloat16);
//   q8_0            R x G x 32 int8 quants (G = ceil(C / 32) groups per row, the last group
//                   zero padded), then R x G f16 scales: 34 bytes per group.
//   q4_0, q4_1,     version 2: ggml's blocks bit for bit (kernels/blocks.h), R x C / E blocks
//   q5_0, q5_1,     row after row; C must be a multiple of the block's E weights (32, or 256
//   iq4_nl, q2_k,   for the K types and iq4_xs).
//   q3_k, q4_k,
//   q5_k, q6_k,
//   iq4_xs
// Norm weights are always f32.
enum sl_dtype {
    SL_F32 = 0, SL_F16 = 1, SL_BF16 = 2, SL_Q8_0 = 3,
    SL_Q4_0 = 4, SL_Q4_K = 5, SL_Q5_K = 6, SL_Q6_K = 7,
    SL_Q4_1 = 8, SL_Q5_0 = 9, SL_Q5_1 = 10, SL_Q2_K = 11, SL_Q3_K = 12,
    SL_IQ4_NL = 13, SL_IQ4_XS = 14,
    SL_DTYPE_COUNT
};

// A tensor's type in the model file (header.tensor_type[t]) when its layers differ in type:
// each layer's own type follows (model.h's layer types, Tensor.layer_type).
#define SL_TYPE_PER_LAYER 255

// A weight matrix in the mapping: W (rows, cols), y = W x. For a stacked tensor, rows
// counts all layers; tensor_layer gives one layer's matrix.
typedef struct {
    int type;               // enum sl_dtype, or SL_TYPE_PER_LAYER (see layer_type)
    size_t rows, cols;
    const void *data;       // rows x cols elements; q8_0: rows x groups x 32 int8 quants;
                            // block types: rows x cols / E blocks
    const uint16_t *scales; // q8_0 only: rows x groups f16 scales
    const uint8_t *layer_type; // SL_TYPE_PER_LAYER: each layer's type (block types), else NULL
} Tensor;

// Layer l of a tensor stacked from n_layers matrices of equal shape (a matrix of one type).
Tensor tensor_layer(const Tensor *t, size_t l, size_t n_layers);
// Row r of a matrix of one type as floats (dequantized): out has cols elements.
void tensor_row(const Tensor *t, size_t r, float *out);

// The form of its input (the activations) that a weight type's matmul reads. The values are
// matmul.h's: MATMUL_Q8_0 and MATMUL_Q8_K are TYPE_IN_Q8_0 and TYPE_IN_Q8_K, and
// matmul_input_forms(type) is type_info(type)->input (tests/test_types.c checks both).
#define TYPE_IN_F32 0   // the floats as they are: f32, f16, bf16
#define TYPE_IN_Q8_0 1  // per group of 32, as quant.h's q8_0: q8_0 and the 32-weight blocks
#define TYPE_IN_Q8_K 2  // per block of 256, as quant.h's q8k (ggml's Q8_K): the K types

// What a weight type is, one row per type (types.c): the role of ggml's type traits. A new type
// is a row here and its kernels: its to_float (blocks.c), its plain dot (kernels.c: a family's
// own, or one it shares), its quantizer (convert/quantize.c's table) and its fast kernels. The
// fast kernels are not in this table: kernels/matmul.c keeps its own, by type, beside MatIn
// (matmul.h), whose types this header does not know; and export, which links this table, links
// no matmul.
typedef struct {
    const char *name;    // "q4_k": export --dtype's and the messages'
    uint32_t ggml;       // ggml's type id (blocks.h's GGML_TYPE_*), as GGUF files name it
    int ggml_blocks;     // 1: stored as ggml's blocks, rows of whole blocks (the block types);
                         // 0: rows of any length (f32, f16, bf16 element by element; q8_0 in
                         // groups, the last zero padded, quants and scales apart)
    size_t block_elems;  // weights per block: 1 for f32, f16 and bf16; q8_0's group of 32
    size_t block_bytes;  // bytes per block (q8_0: 32 quants and an f16 scale)
    int input;           // TYPE_IN_*: the form of the activations its matmul reads
    // n weights (whole blocks) at src as floats, in ggml's layout (GGUF's, and the model
    // file's for every type but q8_0, whose quants and scales lie apart there: tensor_row
    // reads those); the block types as blocks.h's formulas say
    void (*to_float)(const void *src, float *out, size_t n);
    // The plain reference of the matmul (kernels.c): row r of w, a matrix of this type, times x
    // (w->cols floats), x quantized to `input` as the fast kernels quantize it
    float (*dot)(const Tensor *w, size_t r, const float *x);
} TypeInfo;

// The row of a weight type (enum sl_dtype); NULL for any other number (SL_TYPE_PER_LAYER too).
const TypeInfo *type_info(int dtype);

// The weight type whose ggml type id is ggml (GGML_TYPE_Q8_0: q8_0), or -1.
int type_of_ggml(uint32_t ggml);

// Bytes of one row of cols weights of a type (q8_0: its quants and scales); 0 if the type is
// unknown, a block type's row is not whole blocks, or it overflows.
size_t type_row_bytes(int dtype, size_t cols);

// The ggml type id of a block dtype (every type but f32, f16, bf16 and q8_0), else 0.
uint32_t dtype_ggml(int dtype);

// Bytes taken by a rows x cols tensor of a type; 0 if the type is unknown or it overflows.
size_t tensor_bytes(int dtype, size_t rows, size_t cols);
const char *dtype_name(int dtype);  // "unknown" for an unknown type

// RoPE scaling (the model file's header.rope_scaling, kernels.h's RopeParams.scaling), as
// transformers computes it for rope_type "linear" and "llama3", or as llama.cpp applies a
// GGUF's rope_freqs tensor (SL_ROPE_FREQS: each pair's frequency divided by its factor in
// tensor SL_T_ROPE_FREQS; its converter writes Llama 3's scaling this way); the formulas are
// above kernels.h's rope_freq.
enum sl_rope { SL_ROPE_NONE = 0, SL_ROPE_LINEAR = 1, SL_ROPE_LLAMA3 = 2, SL_ROPE_FREQS = 3,
               SL_ROPE_COUNT };

#endif

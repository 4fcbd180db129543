// convert.h: f32 source tensors -> the stored bytes of a target type (model.h, quant.h).
//
// Contract: libc and libm. A Converter is a TensorData producer (writer.h): it wraps an f32
// source, either arrays in memory or another producer (such as synth_fill) that yields f32
// bytes, and converts it in bounded chunks, so a model never has to fit in memory. For
// q8_0, whose quants of all rows come before all scales, it keeps the current tensor's f16
// scales (1/17 of the tensor) as the quants are made, and recomputes any it has not seen.
//
// Values the target cannot hold are refused with one line naming the source, the tensor,
// the element and the value, and the producer returns -1 (so the writer leaves no file):
//   every type but f32: NaN and infinities;
//   f16:  |x| > 65504 (it would become infinite);
//   bf16: values that round to infinity (|x| >= 2^128 * (1 - 2^-9));
//   q8_0: groups whose f16 scale max|x| / 127 would round to infinity (max|x| >~ 8.32e6).
//   block types (q4_0, q4_k, q5_k, q6_k): values whose block would not dequantize to finite
//   numbers (an f16 scale overflows: max|x| above about 5e5 for q4_0, more for the K types).
// f32 tensors are copied unchanged. Tensors of a block type come from the source's raw producer
// unchanged when it has one (export keeps a GGUF's blocks), else are quantized from the f32
// values by quantize.h, as llama-quantize does without an importance matrix.
#ifndef SEARCHLIGHT_CONVERT_H
#define SEARCHLIGHT_CONVERT_H

#include "convert/writer.h"

#define DTYPE_CHOICES \
    "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs or q4_k_m"
#define EXPORT_DTYPES (SL_Q8_0 + 1)  // the types of any row length: f32, f16, bf16, q8_0
#define CONVERT_Q4_K_M 100           // export --dtype q4_k_m, a preset (convert_set_types)

// The enum sl_dtype named s ("f32", ..., "q6_k"), CONVERT_Q4_K_M for "q4_k_m", or -1.
int dtype_parse(const char *s);

// Gives every matrix (embedding and classifier included) type dtype, or the preset's, and sets
// weight_type (wq's type); the norm weights stay f32. A block type on a matrix whose rows are
// not whole blocks falls back to q8_0, and one line says so. The preset q4_k_m is
// llama-quantize's Q4_K_M without an importance matrix: q4_k, except q6_k for the classifier
// (the embedding when shared) and for wv and w2 in the first and last eighth of the layers and
// every third layer between (llama.cpp's use_more_bits); wv and w2 then have per-layer types,
// whose table goes to layer_types (room for 7 n_layers bytes). Returns 0, or -1 after a
// message when h's sizes are invalid.
int convert_set_types(SlHeader *h, int dtype, uint8_t *layer_types, const char *name);

typedef struct {
    TensorData src;            // f32 tensors: data[t], or fill (byte offsets into f32 tensors)
    SlLayout layout;           // rows and cols of each tensor
    uint8_t type[SL_T_COUNT];  // target type of each tensor (SL_TYPE_PER_LAYER: see layout)
    size_t n_layers;
    const char *name;          // names the source in messages
    // scratch, owned
    float *x;                  // source values, x_cap of them
    uint8_t *y;                // converted bytes, 4 * x_cap
    size_t x_cap;
    uint16_t *scales;          // q8_0: the scales of rows [0, scale_rows) of tensor scale_t
    size_t scale_cap, scale_rows;
    int scale_t;
} Converter;

// Prepares a converter from the f32 source src to the tensor types of header h (whose sizes
// must be valid, with src->layer_types its layer types table when it has one). name is used in messages. Returns 0, or -1 after a message.
int converter_init(Converter *c, const SlHeader *h, const TensorData *src, const char *name);
void converter_free(Converter *c);

// The TensorData producer; ctx is a Converter. Any byte range of any tensor may be asked.
int convert_fill(void *ctx, int t, size_t offset, void *buf, size_t n);

#endif

// writer.h: writes a searchlight model file atomically.
//
// Contract: POSIX and libc. The file is written through fileio.h's OutFile: it appears whole or
// not at all, and an existing target is left untouched by any failure.
#ifndef SEARCHLIGHT_WRITER_H
#define SEARCHLIGHT_WRITER_H

#include "model.h"

// Where the tensors' bytes come from, laid out as the header's tensor_type says: either
// in memory, or produced piece by piece (so that a model need not fit in memory).
typedef struct {
    const void *data[SL_T_COUNT];  // each tensor's bytes; unused when fill is set
    // Writes bytes [offset, offset + n) of tensor t into buf; returns 0, or -1 after a message
    // (then model_write prints nothing more, removes the temporary file and returns -1).
    int (*fill)(void *ctx, int t, size_t offset, void *buf, size_t n);
    // For a Converter's source: the bytes of a tensor kept in the source's own block type
    // (a GGUF's Q4_K, ...), as fill does, or NULL when the source has none.
    int (*raw)(void *ctx, int t, size_t offset, void *buf, size_t n);
    void *ctx;
    // The layer types table (model.h), when the header gives a tensor SL_TYPE_PER_LAYER: written
    // after the tokenizer; tensor bytes of such a tensor are its layers, each whole, in turn.
    const uint8_t *layer_types;
    // The chat template's header.chat_template_bytes bytes, written after the tokenizer.
    const char *chat_template;
} TensorData;

// The version a model is written as: 2 when it uses a version-2 field (a byte-level
// tokenizer or Metaspace's rules, RoPE scaling, stop ids, no BOS), else 1, so that earlier models are
// written as before.
int model_version(const SlHeader *h, const Tokenizer *tok);

// Writes header h (its magic, version, sizes and tensor count are filled in here),
// the tokenizer and the tensors to path. Returns 0, or -1 after printing one line.
// *written receives the file size.
int model_write(const char *path, SlHeader h, const Tokenizer *tok, const TensorData *td,
                size_t *written);

#endif

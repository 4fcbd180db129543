// synth.h: models with deterministic pseudo-random weights, for benchmarks.
//
// Contract: libc and libm. Real checkpoints of the benchmark sizes cannot be used here,
// so export --random writes models of their shapes. Weight values depend only on the
// seed, the tensor and the element index (a counter-based generator), never on how the
// writer chunks them.
#ifndef SEARCHLIGHT_SYNTH_H
#define SEARCHLIGHT_SYNTH_H

#include "model.h"

// The shape names export --random knows, NULL-terminated.
extern const char *const synth_shapes[];

// Fills h for a named shape (f32, shared classifier, theta 10000). Returns 0, or -1
// after a message listing the known shapes.
int synth_header(SlHeader *h, const char *shape);

// A synthetic tokenizer of vocab tokens: <unk>, <s>, </s>, 256 byte tokens, then made-up
// words. Returns a TOK_* code.
int synth_tokenizer(Tokenizer *t, int vocab);

// A TensorData producer (writer.h) for the header's layout; ctx points to a SynthCtx.
typedef struct {
    SlLayout layout;
    uint64_t seed;
} SynthCtx;
int synth_fill(void *ctx, int t, size_t offset, void *buf, size_t n);

#endif

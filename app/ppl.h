// ppl.h: ./run MODEL --ppl FILE: the perplexity of a text under a model.
//
// Contract: libc and libm; the forward pass of transformer.h. The text is encoded with
// the model's tokenizer, cut into windows of the context length, each starting afresh at
// position 0 with BOS, and every text token is scored given the tokens before it in its
// window:  NLL = -mean_i log softmax(logits_i)[token_i],  perplexity = e^NLL.
#ifndef SEARCHLIGHT_PPL_H
#define SEARCHLIGHT_PPL_H

#include "runtime/transformer.h"

typedef struct {
    double nll;      // mean negative log-likelihood, in nats per token
    double ppl;      // e^nll
    size_t tokens;   // text tokens scored
    size_t windows;  // context windows used
} PplResult;

// Scores the text in `path`. Returns 0, or 1 after printing one line (unreadable file,
// a text of no tokens, out of memory).
int ppl_measure(Transformer *t, const Tokenizer *tok, const char *path, PplResult *out);

// The same text as one stream past the context (--ppl with --context-shift): BOS (where the
// model adds one) then every token, each scored given all the cache holds; whenever the cache
// is full it shifts (transformer_shift: the first SHIFT_SINKS positions kept, half of the rest
// dropped). within: the tokens scored before the first shift; past: those after it (tokens 0
// when the text fits in one context). Returns 0, or 1 after printing one line.
int ppl_measure_stream(Transformer *t, const Tokenizer *tok, const char *path,
                       PplResult *within, PplResult *past);

#endif

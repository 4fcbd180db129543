// ppl.c: perplexity of a text (see ppl.h).
//
// Contract: libc, libm and transformer.h. Logits come a batch at a time (the run state's
// batch x vocab), so memory does not grow with the context length.
#include "app/ppl.h"

#include "io/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PPL_TEXT_MAX ((size_t)1 << 30)  // the largest text scored (1 GiB)

// -log softmax(logits)[target], in double: log sum_j e^(l_j - max) + max - l_target.
static double nll_of(const float *logits, size_t vocab, int target) {
    float max = logits[0];
    for (size_t j = 1; j < vocab; j++) max = logits[j] > max ? logits[j] : max;
    double sum = 0.0;
    for (size_t j = 0; j < vocab; j++) sum += exp((double)logits[j] - max);
    return log(sum) + max - logits[target];
}

int ppl_measure(Transformer *t, const Tokenizer *tok, const char *path, PplResult *out) {
    const SlHeader *h = &t->model.header;
    size_t len, n_ids, vocab = (size_t)h->vocab_size, ctx = (size_t)h->seq_len;
    char *text;
    if (file_read(path, PPL_TEXT_MAX, &text, &len) != 0) return 1;
    size_t cap = tokenizer_max_tokens(tok, len);
    int *ids = malloc(cap * sizeof(int));
    float *logits = malloc(t->state.batch * vocab * sizeof(float));
    int rc = 1;
    int bos = !(h->flags & SL_FLAG_NO_BOS);  // as a prompt would start
    if (!ids || !logits || tokenizer_encode(tok, text, len, bos, 0, ids, cap, &n_ids) != TOK_OK) {
        fprintf(stderr, "%s: out of memory encoding %zu bytes\n", path, len);
        goto done;
    }
    if (n_ids < 2 || ctx < 2) {
        fprintf(stderr, "%s: no tokens to score (%zu bytes of text)\n", path, len);
        goto done;
    }
    // With BOS, ids[0] is BOS and each window is BOS + up to ctx - 1 text tokens, all scored.
    // Without (Qwen, SmolLM), ids[0] is the first text token, never scored, and each window
    // starts with the token before its first scored one.
    double total = 0.0;
    size_t scored = 0, windows = 0;
    int *win = malloc(ctx * sizeof(int));
    if (!win) {
        fprintf(stderr, "%s: out of memory\n", path);
        goto done;
    }
    for (size_t next = 1; next < n_ids; windows++) {
        size_t take = n_ids - next < ctx - 1 ? n_ids - next : ctx - 1;
        win[0] = bos ? ids[0] : ids[next - 1];
        memcpy(win + 1, ids + next, take * sizeof(int));
        // positions 0 .. take - 1 predict win[1 .. take]; the last token is input to none
        for (size_t p0 = 0; p0 < take; p0 += t->state.batch) {
            size_t n = take - p0 < t->state.batch ? take - p0 : t->state.batch;
            transformer_forward_all(t, win + p0, n, p0, logits);
            for (size_t i = 0; i < n; i++) total += nll_of(logits + i * vocab, vocab, win[p0 + i + 1]);
        }
        scored += take;
        next += take;
    }
    free(win);
    out->tokens = scored;
    out->windows = windows;
    out->nll = total / (double)scored;
    out->ppl = exp(out->nll);
    rc = 0;
done:
    free(text), free(ids), free(logits);
    return rc;
}

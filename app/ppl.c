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

// The text of `path` as ids (BOS first where the model adds one: as a prompt would start),
// and room for a batch of logits. Returns 0, or 1 after a message (nothing to free then).
static int read_ids(Transformer *t, const Tokenizer *tok, const char *path, int **ids,
                    size_t *n_ids, float **logits) {
    const SlHeader *h = &t->model.header;
    size_t len, vocab = (size_t)h->vocab_size;
    char *text;
    if (file_read(path, PPL_TEXT_MAX, &text, &len) != 0) return 1;
    size_t cap = tokenizer_max_tokens(tok, len);
    *ids = malloc(cap * sizeof(int));
    *logits = malloc(t->state.batch * vocab * sizeof(float));
    int bos = !(h->flags & SL_FLAG_NO_BOS);
    int rc = 1;
    if (!*ids || !*logits || tokenizer_encode(tok, text, len, bos, 0, *ids, cap, n_ids) != TOK_OK)
        fprintf(stderr, "%s: out of memory encoding %zu bytes\n", path, len);
    else if (*n_ids < 2 || h->seq_len < 2)
        fprintf(stderr, "%s: no tokens to score (%zu bytes of text)\n", path, len);
    else
        rc = 0;
    free(text);
    if (rc) free(*ids), free(*logits);
    return rc;
}

static void result_of(PplResult *r, double total, size_t scored, size_t windows) {
    r->tokens = scored;
    r->windows = windows;
    r->nll = scored ? total / (double)scored : 0.0;
    r->ppl = exp(r->nll);
}

int ppl_measure(Transformer *t, const Tokenizer *tok, const char *path, PplResult *out) {
    const SlHeader *h = &t->model.header;
    size_t n_ids, vocab = (size_t)h->vocab_size, ctx = (size_t)h->seq_len;
    int *ids;
    float *logits;
    if (read_ids(t, tok, path, &ids, &n_ids, &logits) != 0) return 1;
    int rc = 1, bos = !(h->flags & SL_FLAG_NO_BOS);
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
    result_of(out, total, scored, windows);
    rc = 0;
done:
    free(ids), free(logits);
    return rc;
}

int ppl_measure_stream(Transformer *t, const Tokenizer *tok, const char *path,
                       PplResult *within, PplResult *past) {
    const SlHeader *h = &t->model.header;
    size_t n_ids, vocab = (size_t)h->vocab_size, ctx = (size_t)h->seq_len;
    int *ids;
    float *logits;
    if (read_ids(t, tok, path, &ids, &n_ids, &logits) != 0) return 1;
    if (ctx <= SHIFT_SINKS + 1) {
        fprintf(stderr, "%s: a context of %zu positions is too short to shift\n", path, ctx);
        free(ids), free(logits);
        return 1;
    }
    double total[2] = {0.0, 0.0};
    size_t scored[2] = {0, 0}, shifts = 0;
    // ids[i] predicts ids[i + 1]: inputs 0 .. n_ids - 2, in batches that fit in the cache
    for (size_t i = 0, pos = 0; i + 1 < n_ids;) {
        if (pos == ctx) pos = transformer_shift(t, pos, SHIFT_SINKS, (ctx - SHIFT_SINKS) / 2), shifts++;
        size_t n = n_ids - 1 - i, room = ctx - pos;
        n = n < room ? n : room;
        n = n < t->state.batch ? n : t->state.batch;
        transformer_forward_all(t, ids + i, n, pos, logits);
        for (size_t j = 0; j < n; j++) total[shifts > 0] += nll_of(logits + j * vocab, vocab, ids[i + j + 1]);
        scored[shifts > 0] += n;
        i += n, pos += n;
    }
    result_of(within, total[0], scored[0], 1);
    result_of(past, total[1], scored[1], shifts);
    free(ids), free(logits);
    return 0;
}

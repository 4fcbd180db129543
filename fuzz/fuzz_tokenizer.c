// fuzz_tokenizer: encode arbitrary bytes with the committed model's tokenizer, then decode
// every resulting (prev, token) pair; also decode the ids the input's bytes name.
#include "model.h"
#include "fuzz.h"

static Model model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("SL_FUZZ_MODEL") ? getenv("SL_FUZZ_MODEL") : "models/kjv.slm";
    if (model_open(&model, path, 0) != MODEL_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const Tokenizer *t = &model.tokenizer;
    size_t max = size + 3, n = 0;
    int *tok = malloc(max * sizeof *tok);
    if (!tok) return 0;
    int bos = size > 0 && (data[0] & 1), eos = size > 0 && (data[0] & 2);
    if (tokenizer_encode(t, (const char *)data, size, bos, eos, tok, max, &n) == TOK_OK) {
        if (n > max) abort();
        int prev = t->bos_id;
        volatile size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (tok[i] < 0 || tok[i] >= t->vocab_size) abort();
            size_t len;
            const char *s = tokenizer_decode(t, prev, tok[i], &len);
            if (s && len) total += (unsigned char)s[0] + (unsigned char)s[len - 1];
            prev = tok[i];
        }
        (void)total;
    }
    free(tok);
    // the ids of the input read as int16 pairs, in and out of range
    for (size_t i = 0; i + 4 <= size && i < 64; i += 4) {
        int prev = (int16_t)(data[i] | data[i + 1] << 8), cur = (int16_t)(data[i + 2] | data[i + 3] << 8);
        size_t len;
        volatile const char *s = tokenizer_decode(t, prev, cur, &len);
        (void)s;
        tokenizer_lookup(t, (const char *)data, size < 64 ? size : 64);
    }
    return 0;
}

// fuzz_hf_tokenizer: tokenizer.json (hf_tokenizer: the pipeline checks, vocab, merges,
// added tokens), for the 352-token vocabulary of tests/fixtures/tiny-f32 (bos 1, eos 2).
#include "../hf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("tokenizer.json", data, size);
    Tokenizer t;
    if (hf_tokenizer(&t, fuzz_dir, 352, 1, 2) == 0) {
        int ids[64];
        size_t n;
        const char *text = "Hello world \xe4\xb8\x96 \x01";
        if (tokenizer_encode(&t, text, strlen(text), 1, 1, ids, 64, &n) == TOK_OK)
            for (size_t i = 0; i < n; i++) {
                size_t len;
                tokenizer_decode(&t, i ? ids[i - 1] : 1, ids[i], &len);
            }
        tokenizer_free(&t);
    }
    return 0;
}

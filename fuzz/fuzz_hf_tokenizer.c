// fuzz_hf_tokenizer: tokenizer.json (hf_tokenizer: the pipeline checks, vocab, merges,
// added tokens), for the 352-token vocabulary of tests/fixtures/tiny-f32 (bos 1, eos 2).
#include "convert/hf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("tokenizer.json", data, size);
    Tokenizer t;
    if (hf_tokenizer(&t, fuzz_dir, 352, 1, 2) == 0) {
        fuzz_use_tokenizer(&t, "Hello world \xe4\xb8\x96 \x01");
        tokenizer_free(&t);
    }
    return 0;
}

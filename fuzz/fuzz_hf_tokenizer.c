// fuzz_hf_tokenizer: tokenizer.json (hf_tokenizer: the pipeline checks, vocab, merges,
// added tokens), for the 352-token vocabulary of tests/fixtures/tiny-f32 (bos 1, eos 2) and
// the 800-token byte-level vocabularies of tests/fixtures/bpe-*.
#include "convert/hf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("tokenizer.json", data, size);
    static const int vocab[] = {352, 800};
    for (int i = 0; i < 2; i++) {
        Tokenizer t;
        int adds_bos;
        if (hf_tokenizer(&t, fuzz_dir, vocab[i], 1, 2, &adds_bos) == 0) {
            fuzz_use_tokenizer(&t, "Hello world \xe4\xb8\x96 \x01 I'LL 12345<|im_start|>");
            tokenizer_free(&t);
        }
    }
    return 0;
}

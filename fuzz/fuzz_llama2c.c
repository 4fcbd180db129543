// fuzz_llama2c: export's llama2.c readers. The first byte picks the reader: even, the rest is
// a legacy checkpoint (llama2c_open); odd, the next two bytes are the vocabulary size and the
// rest is a tokenizer.bin (tokenizer_read_bin).
#include "convert/llama2c.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        const char *path = fuzz_write("model.bin", data + 1, size - 1);
        llama2c_sniff(data + 1, size - 1);
        Llama2c c;
        if (llama2c_open(&c, path) == 0) {
            volatile float sink = 0;
            const SlHeader *h = &c.header;
            size_t last = (size_t)h->vocab_size * (size_t)h->dim - 1;
            sink += c.tensor[SL_T_EMBED][last];
            sink += c.tensor[SL_T_RMS_FINAL][h->dim - 1];
            if (c.tensor[SL_T_CLS]) sink += c.tensor[SL_T_CLS][last];
            (void)sink;
            llama2c_close(&c);
        }
        return 0;
    }
    if (size < 3) return 0;
    int vocab = (data[1] | data[2] << 8) % 2048;  // 0 included: it must be refused
    const char *path = fuzz_write("tokenizer.bin", data + 3, size - 3);
    Tokenizer t;
    if (tokenizer_read_bin(&t, path, vocab, 1, 2) == TOK_OK) {
        fuzz_use_tokenizer(&t, "And God said, let there be light\xe2\x80\x99 \xff");
        tokenizer_free(&t);
    }
    return 0;
}

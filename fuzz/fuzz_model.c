// fuzz_model: the model loader and its validation (model_open, with and without weights).
#include "model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.slm", data, size);
    for (int need = 0; need <= 1; need++) {
        Model m;
        if (model_open(&m, path, need) == MODEL_OK) {
            // touch what the loader vouches for: the tokenizer and a row of each tensor
            volatile int sink = 0;
            for (int i = 0; i < m.tokenizer.vocab_size; i++) sink += m.tokenizer.pieces[i][0];
            if (m.header.n_tensors) {
                float *row = malloc(m.w.token_embedding.cols * sizeof *row);
                if (row) {
                    tensor_row(&m.w.token_embedding, m.w.token_embedding.rows - 1, row);
                    tensor_row(&m.w.wcls, 0, row);
                    free(row);
                }
            }
            (void)sink;
            model_close(&m);
        }
    }
    return 0;
}

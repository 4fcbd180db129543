// fuzz_model: the model loader and its validation (model_open, with and without weights).
#include "model.h"
#include "kernels/quant.h"
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
                // each layer of each matrix (per-layer types included): its first and last byte
                const Tensor *mats[] = {&m.w.wq, &m.w.wk, &m.w.wv, &m.w.wo, &m.w.w1, &m.w.w2, &m.w.w3};
                size_t L = (size_t)m.header.n_layers;
                for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
                    for (size_t l = 0; l < L; l++) {
                        Tensor v = tensor_layer(mats[i], l, L);
                        size_t b = v.type == SL_Q8_0 ? v.rows * q8_groups(v.cols) * Q8_GROUP
                                                     : tensor_bytes(v.type, v.rows, v.cols);
                        if (b) sink += ((const uint8_t *)v.data)[0] + ((const uint8_t *)v.data)[b - 1];
                    }
            }
            (void)sink;
            model_close(&m);
        }
    }
    return 0;
}

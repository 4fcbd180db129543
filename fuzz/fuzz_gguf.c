// fuzz_gguf: the GGUF reader (gguf_open: header, metadata, tensor infos) and the model glue
// (gguf_model_open: each architecture's hyperparameters, tokenizer, tensor pieces and shapes),
// then reads each tensor's ends.
#include "convert/gguf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.gguf", data, size);
    gguf_sniff(data, size);
    Gguf g;
    if (gguf_open(&g, path) == 0) {
        gguf_find_kv(&g, "general.architecture");
        gguf_find_tensor(&g, "token_embd.weight");
        for (size_t i = 0; i < g.n_tensors; i++) ggml_type_name(g.tensors[i].type);
        gguf_close(&g);
    }
    GgufModel m;
    if (gguf_model_open(&m, path) == 0) {
        float buf[64];
        SlLayout lay;
        if (m.header.n_tensors && model_layout(&m.header, m.layer_types, &lay, path) == MODEL_OK) {
            for (int t = 0; t < SL_T_COUNT; t++) {
                if (!m.pieces.piece[t]) continue;
                size_t total = m.pieces.per_layer[t] * m.pieces.layers[t] * 4;
                size_t n = total < sizeof buf ? total : sizeof buf;
                gguf_model_fill(&m, t, 0, buf, n);
                gguf_model_fill(&m, t, total - n, buf, n);
                if (dtype_ggml(m.header.tensor_type[t]) && lay.bytes[t]) {  // blocks kept as they are
                    size_t rb = lay.bytes[t] < sizeof buf ? lay.bytes[t] : sizeof buf;
                    gguf_model_raw(&m, t, 0, buf, rb);
                    gguf_model_raw(&m, t, lay.bytes[t] - rb, buf, rb);
                }
            }
        }
        gguf_model_close(&m);
    }
    return 0;
}

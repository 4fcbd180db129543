// fuzz_safetensors: one safetensors file (st_open_file: the length prefix, the JSON header,
// every tensor's dtype, shape and offsets), then reads the ends of each tensor as f32.
#include "convert/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.safetensors", data, size);
    StModel m = {0};  // st_open_file appends to m (as st_open_dir calls it); st_close frees
    if (st_open_file(&m, path) == 0) {
        float buf[16];
        for (size_t i = 0; i < m.n_tensors; i++) {
            const StTensor *t = &m.tensors[i];
            st_find(&m, t->name);
            size_t n = t->numel < 16 ? (size_t)t->numel : 16;
            st_read_f32(&m, t, 0, n, buf);
            st_read_f32(&m, t, t->numel - n, n, buf);
        }
    }
    st_close(&m);
    return 0;
}

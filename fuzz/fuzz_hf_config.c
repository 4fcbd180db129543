// fuzz_hf_config: config.json and generation_config.json of a Hugging Face directory
// (hf_open's read_config: the architecture, its features, sizes, RoPE scaling, windows and
// stop ids). The directory holds no safetensors, so hf_open stops after the configuration.
#include "convert/hf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write("config.json", data, size);
    HfModel m;
    if (hf_open(&m, fuzz_dir) == 0) hf_close(&m);
    return 0;
}

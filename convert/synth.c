// synth.c: synthetic models for benchmarks (see synth.h).
#include "convert/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Real configs' shapes; the newer families with their features (rope: 0 plain, else
// llama3 scaling as Llama 3.2's: factor 32, low 1, high 4, original context 8192). Contexts
// are cut to 4096 where the real one is longer, to keep the KV cache of a benchmark small.
static const struct {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab, seq_len;
    float theta;
    int tied, llama3_rope;
    uint32_t flags;  // SL_FLAG_QKV_BIAS, SL_FLAG_QK_NORM
} shapes[] = {
    {"stories15M", 288, 768, 6, 6, 6, 48, 32000, 256, 10000.0f, 1, 0, 0},
    {"stories42M", 512, 1376, 8, 8, 8, 64, 32000, 1024, 10000.0f, 1, 0, 0},
    {"stories110M", 768, 2048, 12, 12, 12, 64, 32000, 1024, 10000.0f, 1, 0, 0},
    {"tinyllama-1.1B", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 10000.0f, 1, 0, 0},
    {"llama3.2-1B", 2048, 8192, 16, 32, 8, 64, 128256, 4096, 500000.0f, 1, 1, 0},
    {"qwen2.5-0.5B", 896, 4864, 24, 14, 2, 64, 151936, 4096, 1000000.0f, 1, 0, SL_FLAG_QKV_BIAS},
    {"qwen3-0.6B", 1024, 3072, 28, 16, 8, 128, 151936, 4096, 1000000.0f, 1, 0, SL_FLAG_QK_NORM},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

const char *const synth_shapes[] = {"stories15M", "stories42M", "stories110M", "tinyllama-1.1B",
                                    "llama3.2-1B", "qwen2.5-0.5B", "qwen3-0.6B", NULL};

int synth_header(SlHeader *h, const char *shape) {
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < N_SHAPES; i++) {
        if (strcmp(shape, shapes[i].name) != 0) continue;
        h->dim = shapes[i].dim;
        h->hidden_dim = shapes[i].hidden;
        h->n_layers = shapes[i].layers;
        h->n_heads = shapes[i].heads;
        h->n_kv_heads = shapes[i].kv_heads;
        h->head_dim = shapes[i].head_dim;
        h->vocab_size = shapes[i].vocab;
        h->seq_len = shapes[i].seq_len;
        h->rope_theta = shapes[i].theta;
        h->norm_eps = 1e-5f;
        h->flags = (shapes[i].tied ? SL_FLAG_SHARED_CLASSIFIER : 0) | shapes[i].flags;
        if (shapes[i].llama3_rope) {
            h->rope_scaling = SL_ROPE_LLAMA3;
            h->rope_factor = 32.0f, h->rope_low_freq = 1.0f, h->rope_high_freq = 4.0f;
            h->rope_orig_ctx = 8192;
        }
        h->weight_type = SL_F32;
        h->bos_id = 1;
        h->eos_id = 2;
        h->n_tensors = SL_T_COUNT;
        return 0;
    }
    fprintf(stderr, "export: unknown shape '%s', expected one of:", shape);
    for (size_t i = 0; i < N_SHAPES; i++) fprintf(stderr, " %s", shapes[i].name);
    fputc('\n', stderr);
    return -1;
}

int synth_tokenizer(Tokenizer *t, int vocab) {
    // serialize a section (see tokenizer.h), then parse it: one code path for both
    size_t cap = 8 + (size_t)vocab * (9 + 16), n = 8;
    uint8_t *buf = malloc(cap);
    if (!buf) return TOK_ERR_NOMEM;
    uint32_t max_len = 0;
    for (int i = 0; i < vocab; i++) {
        char piece[16];
        uint8_t type = TOK_NORMAL;
        float score = 0.0f;
        if (i == 0) strcpy(piece, "<unk>"), type = TOK_UNKNOWN;
        else if (i <= 2) strcpy(piece, i == 1 ? "<s>" : "</s>"), type = TOK_CONTROL;
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3), type = TOK_BYTE;
        else {  // " w" and "w" for every base-26 word w: all distinct
            int k = (i - 259) / 2, len = 0;
            char word[12];
            do word[len++] = (char)('a' + k % 26); while ((k /= 26) > 0);
            snprintf(piece, sizeof piece, "%s%.*s", (i - 259) % 2 ? "" : " ", len, word);
            score = -(float)(i - 259);
        }
        uint32_t len = (uint32_t)strlen(piece);
        if (len > max_len) max_len = len;
        memcpy(buf + n, &score, 4);
        memcpy(buf + n + 4, &len, 4);
        buf[n + 8] = type;
        memcpy(buf + n + 9, piece, len);
        n += 9 + len;
    }
    uint32_t count = (uint32_t)vocab;
    memcpy(buf, &count, 4);
    memcpy(buf + 4, &max_len, 4);
    int err = tokenizer_parse(t, buf, n, 1, vocab, 1, 2, "synthetic tokenizer");
    free(buf);
    return err;
}

// splitmix64: a good 64-bit mix of a counter.
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int synth_fill(void *ctx, int t, size_t offset, void *buf, size_t n) {
    const SynthCtx *c = ctx;
    float *out = buf;
    size_t first = offset / sizeof(float), count = n / sizeof(float);
    int norm = t == SL_T_RMS_ATT || t == SL_T_RMS_FFN || t == SL_T_RMS_FINAL || t == SL_T_QK_NORM;
    // uniform in +-1/sqrt(cols) keeps activations of a deep stack in a sane range
    float scale = 1.0f / sqrtf((float)c->layout.cols[t]);
    uint64_t base = c->seed * 0x100000001B3ull + ((uint64_t)t << 56);
    for (size_t i = 0; i < count; i++) {
        uint64_t r = mix(base + first + i);
        float u = (float)(r >> 40) / 16777216.0f * 2.0f - 1.0f;
        out[i] = norm ? 1.0f + 0.1f * u : u * scale;
    }
    return 0;
}

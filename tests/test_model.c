// tests/test_model.c: the loader accepts a valid file and refuses every broken one
// with its own error, before trusting any byte past the header.
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "runtime/transformer.h"
#include "helpers.h"

static char *valid;     // a valid model file's bytes
static size_t valid_n;

static void setup(void) {
    const char *path = tmp_file("valid.slm");
    write_test_model(path, 0);
    valid = read_all(path, &valid_n);
    cr_assert(valid);
}

static void teardown(void) {
    free(valid);
}

// Writes the valid file with a mutated header and/or another length, then opens it.
static int open_variant(void (*mutate)(SlHeader *), size_t len) {
    char *b = malloc(valid_n + 64);
    memcpy(b, valid, valid_n);
    memset(b + valid_n, 0, 64);
    if (mutate) mutate((SlHeader *)b);
    const char *path = tmp_file("variant.slm");
    cr_assert_eq(write_all_file(path, b, len), 0);
    free(b);
    Model m;
    int err = model_open(&m, path, 1);
    if (err == MODEL_OK) model_close(&m);
    return err;
}

TestSuite(loader, .init = setup, .fini = teardown);

Test(loader, valid_file_maps_aligned_weights) {
    Model m;
    cr_assert_eq(model_open(&m, tmp_file("valid.slm"), 1), MODEL_OK);
    const Weights *w = &m.w;
    const void *p[] = {w->token_embedding.data, w->rms_att, w->wq.data, w->wk.data, w->wv.data,
                       w->wo.data, w->rms_ffn, w->w1.data, w->w2.data, w->w3.data,
                       w->rms_final, w->wcls.data};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        cr_assert(p[i] != NULL, "tensor %zu is missing", i);
        cr_assert_eq((uintptr_t)p[i] % 64, 0, "tensor %zu is not 64-byte aligned", i);
    }
    cr_assert(w->wcls.data != w->token_embedding.data, "a separate classifier");
    cr_assert_eq(w->wq.rows, 2 * 16, "all layers stacked");
    cr_assert_eq(w->wq.cols, 16);
    cr_assert_eq(m.header.dim, 16);
    cr_assert_eq(m.tokenizer.vocab_size, 300);
    cr_assert_eq(m.map_bytes, valid_n);
    model_close(&m);
}

Test(loader, shared_classifier) {
    const char *path = tmp_file("shared.slm");
    write_test_model(path, 1);
    Model m;
    cr_assert_eq(model_open(&m, path, 1), MODEL_OK);
    cr_assert(m.w.wcls.data == m.w.token_embedding.data);
    model_close(&m);
}

Test(loader, missing_directory_and_empty) {
    Model m;
    cr_assert_eq(model_open(&m, "/nonexistent/model.slm", 1), MODEL_ERR_IO);
    cr_assert_eq(model_open(&m, tmp_dir(), 1), MODEL_ERR_IO);
    cr_assert_eq(open_variant(NULL, 0), MODEL_ERR_EMPTY);
}

Test(loader, truncated_anywhere) {
    cr_assert_eq(open_variant(NULL, 100), MODEL_ERR_TRUNCATED, "inside the header");
    cr_assert_eq(open_variant(NULL, SL_HEADER_BYTES), MODEL_ERR_SIZE, "header only");
    cr_assert_eq(open_variant(NULL, SL_HEADER_BYTES + 50), MODEL_ERR_SIZE, "in the tokenizer");
    cr_assert_eq(open_variant(NULL, valid_n - 1), MODEL_ERR_SIZE, "one byte short");
    cr_assert_eq(open_variant(NULL, valid_n + 1), MODEL_ERR_SIZE, "one byte too many");
    for (size_t cut = SL_HEADER_BYTES; cut < valid_n; cut += 997)
        cr_assert_eq(open_variant(NULL, cut), MODEL_ERR_SIZE, "cut at %zu", cut);
}

static void bad_magic(SlHeader *h) { h->magic[0] = 'X'; }
static void future_version(SlHeader *h) { h->version = SL_VERSION + 1; }

Test(loader, wrong_magic_and_future_version) {
    cr_assert_eq(open_variant(bad_magic, valid_n), MODEL_ERR_MAGIC);
    cr_assert_eq(open_variant(future_version, valid_n), MODEL_ERR_VERSION);
}

static void zero_dim(SlHeader *h) { h->dim = 0; }
static void negative_layers(SlHeader *h) { h->n_layers = -2; }
static void heads_not_dividing_dim(SlHeader *h) { h->n_heads = 3; }
static void kv_not_dividing_heads(SlHeader *h) { h->n_kv_heads = 3; }
static void odd_head_dim(SlHeader *h) { h->head_dim = 3; }
static void overflowing(SlHeader *h) { h->vocab_size = INT32_MAX, h->dim = INT32_MAX / 4 * 4; h->n_heads = 4; }
static void zero_seq(SlHeader *h) { h->seq_len = 0; }
static void nan_theta(SlHeader *h) { memset(&h->rope_theta, 0xff, 4); }
static void unknown_flag(SlHeader *h) { h->flags |= 0x80; }
static void bigger_vocab(SlHeader *h) { h->vocab_size = 301; }

Test(loader, inconsistent_dimensions) {
    cr_assert_eq(open_variant(zero_dim, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(negative_layers, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(heads_not_dividing_dim, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(kv_not_dividing_heads, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(odd_head_dim, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(overflowing, valid_n), MODEL_ERR_DIMS, "vocab x dim x 4 overflows");
    cr_assert_eq(open_variant(zero_seq, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(nan_theta, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(unknown_flag, valid_n), MODEL_ERR_DIMS);
    cr_assert_eq(open_variant(bigger_vocab, valid_n), MODEL_ERR_SIZE, "the tensors grow");
}

Test(loader, layout_overflow_is_caught) {
    SlHeader h;
    memcpy(&h, valid, sizeof h);
    SlLayout lay;
    h.n_layers = INT32_MAX, h.hidden_dim = INT32_MAX;  // 2^31 * 2^31 * 16 * 4 bytes
    h.dim = 1 << 30, h.n_heads = 1 << 28, h.head_dim = 4, h.n_kv_heads = 1;
    cr_assert_eq(model_layout(&h, NULL, &lay, "overflow"), MODEL_ERR_DIMS);
}

static void f16_matrix(SlHeader *h) { h->tensor_type[SL_T_WQ] = SL_F16; }
static void f16_norm(SlHeader *h) { h->tensor_type[SL_T_RMS_ATT] = SL_F16; }
static void unknown_type(SlHeader *h) { h->tensor_type[SL_T_W1] = 77; }

Test(loader, weight_types) {
    cr_assert_eq(open_variant(unknown_type, valid_n), MODEL_ERR_TYPE);
    cr_assert_eq(open_variant(f16_norm, valid_n), MODEL_ERR_TYPE);
    // an f16 wq is half the size: the file no longer matches, and f16 is not computable yet
    cr_assert_eq(open_variant(f16_matrix, valid_n), MODEL_ERR_SIZE);
}

static void tokenizer_only(SlHeader *h) { h->n_tensors = 0; }
static void bad_bos(SlHeader *h) { h->bos_id = 300; }

Test(loader, tokenizer_section) {
    SlHeader h;
    memcpy(&h, valid, sizeof h);
    cr_assert_eq(open_variant(bad_bos, valid_n), MODEL_ERR_TOKENIZER);
    // a tokenizer-only file: header and tokenizer, usable for tokenizing, not for running
    size_t n = SL_HEADER_BYTES + h.tokenizer_bytes;
    cr_assert_eq(open_variant(tokenizer_only, n), MODEL_ERR_NO_WEIGHTS);
    Model m;
    cr_assert_eq(model_open(&m, tmp_file("variant.slm"), 0), MODEL_OK);
    cr_assert_eq(m.tokenizer.vocab_size, 300);
    model_close(&m);
    // a corrupted piece length inside the tokenizer section
    char *b = malloc(valid_n);
    memcpy(b, valid, valid_n);
    uint32_t huge = 1u << 30;
    memcpy(b + SL_HEADER_BYTES + 8 + 4, &huge, 4);  // first token's length
    cr_assert_eq(write_all_file(tmp_file("tok.slm"), b, valid_n), 0);
    free(b);
    cr_assert_eq(model_open(&m, tmp_file("tok.slm"), 1), MODEL_ERR_TOKENIZER);
}

Test(loader, run_state_and_forward) {
    Transformer t;
    cr_assert_eq(transformer_build(&t, tmp_file("valid.slm"), NULL, ATTN_KV_F32), MODEL_OK);
    int token = 5;
    float *logits = transformer_forward(&t, &token, 1, 0);
    for (int i = 0; i < 300; i++) cr_assert(logits[i] == logits[i], "logit %d is NaN", i);
    transformer_free(&t);
}

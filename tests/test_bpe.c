// tests/test_bpe.c: byte-level BPE vocabularies (Llama 3, Qwen2) from GGUF, against llama.cpp's
// own test vectors: its vocabulary-only files, exported by ./export to tokenizer-only model
// files, must encode each of its 46 test strings to exactly its expected ids.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "model.h"

#define SEP "\n__ggml_vocab_test__\n"

// Exports ../shared/models/gguf/<name> to a tokenizer-only file and opens it.
static void open_vocab(Model *m, const char *name) {
    char gguf[256], *out, *err;
    snprintf(gguf, sizeof gguf, "gguf/%s", name);
    const char *src = model_file(gguf);
    char *dst = strdup(tmp_file(name));
    int rc = run_cmd(&out, &err, "%s %s %s", bin_path("export"), src, dst);
    cr_assert_eq(rc, 0, "export %s: %s", src, err);
    cr_assert(strstr(out, "tokenizer only"), "%s", out);
    cr_assert_eq(model_open(m, dst, 0), MODEL_OK, "%s", dst);
    cr_assert_eq(m->header.version, 2, "a byte-level vocabulary needs format version 2");
    cr_assert_eq(m->tokenizer.kind, TOK_BPE);
    free(out), free(err), free(dst);
}

// Runs llama.cpp's vectors for one vocabulary; returns how many strings matched.
static int check_vectors(const char *name, int want_strings) {
    Model m;
    open_vocab(&m, name);
    char path[256];
    snprintf(path, sizeof path, "gguf/%s.inp", name);
    char *inp = read_all(model_file(path), NULL);
    snprintf(path, sizeof path, "gguf/%s.out", name);
    char *outs = read_all(model_file(path), NULL);
    cr_assert(inp && outs);
    int matched = 0, strings = 0;
    char *text = inp, *line = outs;
    int *ids = malloc(sizeof(int) * 8192);
    for (char *end; (end = strstr(text, SEP)) != NULL; text = end + strlen(SEP), strings++) {
        char *nl = strchr(line, '\n');
        cr_assert(nl, "%s.out has fewer lines than inputs", name);
        *nl = '\0';
        size_t n;
        cr_assert_eq(tokenizer_encode(&m.tokenizer, text, (size_t)(end - text), 0, 0, ids, 8192, &n),
                     TOK_OK);
        char got[8192] = "";
        size_t used = 0;
        for (size_t i = 0; i < n; i++) used += (size_t)snprintf(got + used, sizeof got - used, " %d", ids[i]);
        if (strcmp(got, line) == 0) matched++;
        else cr_log_error("%s, string %d \"%.*s\":\n  got  %s\n  want %s", name, strings,
                          (int)(end - text), text, got, line);
        line = nl + 1;
        // decoding gives the text back, byte for byte
        char back[8192];
        size_t blen = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *p = tokenizer_decode(&m.tokenizer, i ? ids[i - 1] : -1, ids[i], &len);
            cr_assert(blen + len < sizeof back);
            memcpy(back + blen, p, len);
            blen += len;
        }
        cr_assert(blen == (size_t)(end - text) && memcmp(back, text, blen) == 0,
                  "%s, string %d does not decode to itself", name, strings);
    }
    cr_assert_eq(strings, want_strings, "%s.inp holds %d strings", name, strings);
    free(ids), free(inp), free(outs);
    model_close(&m);
    return matched;
}

Test(bpe, llama3_vocabulary_passes_llama_cpp_vectors) {
    cr_assert_eq(check_vectors("ggml-vocab-llama-bpe.gguf", 46), 46);
}

Test(bpe, qwen2_vocabulary_passes_llama_cpp_vectors) {
    cr_assert_eq(check_vectors("ggml-vocab-qwen2.gguf", 46), 46);
}

// Special tokens in the text become their one id; the text around them is encoded as usual.
Test(bpe, special_tokens_in_text) {
    Model m;
    open_vocab(&m, "ggml-vocab-qwen2.gguf");
    const char *text = "<|im_start|>user\nHi<|im_end|>";
    int ids[64];
    size_t n;
    cr_assert_eq(tokenizer_encode(&m.tokenizer, text, strlen(text), 0, 0, ids, 64, &n), TOK_OK);
    cr_assert_geq(n, 4);
    cr_assert_eq(ids[0], 151644, "<|im_start|> is one id: %d", ids[0]);
    cr_assert_eq(ids[n - 1], 151645, "<|im_end|> is one id: %d", ids[n - 1]);
    size_t len;
    tokenizer_decode(&m.tokenizer, -1, ids[0], &len);
    cr_assert_eq(len, 0, "a control token prints nothing");
    model_close(&m);
}

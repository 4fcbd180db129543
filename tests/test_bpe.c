// tests/test_bpe.c: tokenizers against their reference implementations. Byte-level BPE
// vocabularies (Llama 3, Qwen2) from GGUF against llama.cpp's own test vectors: its
// vocabulary-only files, exported by ./export to tokenizer-only model files, must encode each
// of its 46 test strings to exactly its expected ids. Tokenizers trained by the `tokenizers`
// library (byte-level, one per pre-tokenizer; sentencepiece-style, one per tokenizer.json
// layout) against its ids for 10,000 random strings.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "model.h"
#include "convert/hf.h"
#include "tokenizer/pretok.h"

#define SEP "\n__ggml_vocab_test__\n"

// Exports ../shared/models/gguf/<name> (a vocabulary-only file, or a model: then its weights
// too) and opens it.
static void open_vocab(Model *m, const char *name) {
    char gguf[256], *out, *err;
    snprintf(gguf, sizeof gguf, "gguf/%s", name);
    const char *src = model_file(gguf);
    char *dst = strdup(tmp_file(name));
    int rc = run_cmd(&out, &err, "%s %s %s", bin_path("export"), src, dst);
    cr_assert_eq(rc, 0, "export %s: %s", src, err);
    cr_assert(strstr(out, "tokenizer only") || !strstr(src, "vocab"), "%s", out);
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
        while (*line == ' ') line++;  // the lines start with a space, or (SmolLM2's) not
        if (strcmp(got + (n > 0), line) == 0) matched++;
        else cr_log_error("%s, string %d \"%.*s\":\n  got  %s\n  want %s", name, strings,
                          (int)(end - text), text, got, line);
        line = nl + 1;
        // decoding gives the text back, byte for byte, less the bytes without a token
        char want[8192];
        size_t wlen = 0;
        for (const char *c = text; c < end; c++)
            if (m.tokenizer.byte_id[(uint8_t)*c] >= 0) want[wlen++] = *c;
        char back[8192];
        size_t blen = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *p = tokenizer_decode(&m.tokenizer, i ? ids[i - 1] : -1, ids[i], &len);
            cr_assert(blen + len < sizeof back);
            memcpy(back + blen, p, len);
            blen += len;
        }
        cr_assert(blen == wlen && memcmp(back, want, blen) == 0,
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

// A real model's vocabulary, as published: SmolLM2-135M-Instruct has no token for 21 bytes.
// Its 49 vectors (4 of them with control bytes, one only such bytes) are llama.cpp's ids, which
// drop those bytes.
Test(bpe, smollm2_file_drops_bytes_without_a_token_as_llama_cpp_does) {
    cr_assert_eq(check_vectors("SmolLM2-135M-Instruct.Q4_1.gguf", 49), 49);
    Model m;
    open_vocab(&m, "SmolLM2-135M-Instruct.Q4_1.gguf");
    int missing = 0;
    for (int b = 0; b < 256; b++) missing += m.tokenizer.byte_id[b] < 0;
    cr_assert_eq(missing, 21);
    cr_assert_lt(m.tokenizer.byte_id[0x04], 0);
    cr_assert_lt(m.tokenizer.byte_id[0xff], 0);
    model_close(&m);
}

// The same vocabulary's byte set and first 3,000 merges as a tokenizer.json
// (make_real_vocab.py): our ids equal the `tokenizers` library's for 449 strings, most with
// bytes that have no token, which the library drops before merging.
Test(bpe, tokenizer_json_drops_bytes_without_a_token_as_tokenizers_does) {
    Tokenizer t = {0};
    int adds_bos = -1;
    cr_assert_eq(hf_tokenizer(&t, "tests/fixtures/bpe-smollm2-real", 3252, 0, 0, &adds_bos), 0);
    cr_assert_eq(t.kind, TOK_BPE);
    cr_assert_lt(t.byte_id[0x04], 0);
    char *all = read_all("tests/fixtures/bpe-real-ids.txt", NULL);
    cr_assert(all);
    int cases = 0, with_missing = 0;
    static char text[8192];
    static int ids[8192];
    for (char *line = all, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert(nl);
        *nl = '\0';
        if (line[0] == '#') continue;
        char *colon = strchr(line, ':');
        cr_assert(colon);
        size_t len = (size_t)(colon - line) / 2, n;
        int dropped = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned b;
            cr_assert_eq(sscanf(line + 2 * i, "%2x", &b), 1);
            text[i] = (char)b;
            dropped |= t.byte_id[b] < 0;
        }
        with_missing += dropped;
        cr_assert_eq(tokenizer_encode(&t, text, len, 0, 0, ids, 8192, &n), TOK_OK);
        char got[8192] = "";
        size_t used = 0;
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(got + used, sizeof got - used, "%s%d", i ? " " : "", ids[i]);
        cr_assert_str_eq(got, colon + 1, "string %d \"%.*s\"", cases, (int)len, text);
        cases++;
    }
    cr_assert_eq(cases, 449);
    cr_assert_gt(with_missing, 200);
    free(all);
    tokenizer_free(&t);
}

// check_corpus_fixture's callbacks: the tokenizer.json of the kind, and a text's ids.
// Reads tests/fixtures/<prefix><name>/tokenizer.json for a line "kind <name> vocab <n>" into
// the Tokenizer at ctx; returns the name (a static buffer) and whether it adds BOS.
static const char *open_kind(Tokenizer *t, const char *line, const char *prefix, int *adds_bos) {
    static char name[32];
    char dir[128];
    int vocab;
    cr_assert(sscanf(line, "kind %31s vocab %d", name, &vocab) == 2, "%s", line);
    if (t->vocab_size) tokenizer_free(t);
    snprintf(dir, sizeof dir, "tests/fixtures/%s%s", prefix, name);
    cr_assert_eq(hf_tokenizer(t, dir, vocab, 1, 2, adds_bos), 0, "%s/tokenizer.json", dir);
    return name;
}

static int load_kind(void *ctx, const char *line) {
    Tokenizer *t = ctx;
    int adds_bos = -1;
    const char *name = open_kind(t, line, "bpe-", &adds_bos);
    cr_assert_eq(adds_bos, 0, "no post_processor: no BOS");
    cr_assert_eq(t->kind, TOK_BPE);
    cr_assert_str_eq(pretok_name(t->pretok), name);
    return 0;
}

static size_t encode_ids(void *ctx, const char *text, size_t n, uint32_t *out, size_t cap) {
    const Tokenizer *t = ctx;
    static int ids[4096];
    size_t m;
    cr_assert_eq(tokenizer_encode(t, text, n, 0, 0, ids, 4096, &m), TOK_OK);
    cr_assert_leq(m, cap);
    for (size_t i = 0; i < m; i++) out[i] = (uint32_t)ids[i];
    return m;
}

// Tokenizers of each pre-tokenizer kind, trained by the `tokenizers` library (make_bpe.py), read
// from their tokenizer.json: the ids of 10,000 random strings equal the library's, id for id.
Test(bpe, tokenizer_json_matches_tokenizers_on_10000_strings) {
    Tokenizer t = {0};
    int kinds = check_corpus_fixture("tests/fixtures/bpe-ids.txt", load_kind, encode_ids, &t);
    cr_assert_eq(kinds, PRETOK_COUNT);
    tokenizer_free(&t);
}

// Sentencepiece-style BPE in each tokenizer.json layout (make_spm.py): Llama 2's normalizer,
// and Metaspace with prepend_scheme first or never, split or not. Ids equal the library's.
static int load_spm(void *ctx, const char *line) {
    Tokenizer *t = ctx;
    const char *name = open_kind(t, line, "spm-", NULL);
    cr_assert_eq(t->kind, TOK_SPM);
    uint32_t want = !strcmp(name, "legacy") ? 0
                    : !strcmp(name, "first") ? TOK_FLAG_PREFIX_FIRST
                    : !strcmp(name, "first-split") ? TOK_FLAG_PREFIX_FIRST | TOK_FLAG_SPLIT
                                                   : TOK_FLAG_PREFIX_NEVER | TOK_FLAG_SPLIT;
    cr_assert_eq(t->flags, want, "%s: flags %u", name, t->flags);
    return 0;
}

Test(spm, tokenizer_json_layouts_match_tokenizers_on_10000_strings) {
    Tokenizer t = {0};
    int kinds = check_corpus_fixture("tests/fixtures/spm-ids.txt", load_spm, encode_ids, &t);
    cr_assert_eq(kinds, 4);
    tokenizer_free(&t);
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

// ----------------------------------------------------------------------------
// bad byte-level vocabularies: one line naming the problem, status 1, no file written

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) b->p = realloc(b->p, b->cap = 2 * (b->n + n));
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s) { put_u64(b, strlen(s)), put(b, s, strlen(s)); }

// GPT-2's character for byte c, as UTF-8 (see tokenizer/pretok.h).
static void byte_char(int c, char *out) {
    int self = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174, k = 0;
    for (int b = 0; b < c; b++) k += !((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174);
    unsigned cp = self ? (unsigned)c : 256u + (unsigned)k;
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

// A vocabulary-only GGUF: the 256 bytes, then `extra` tokens (NULL-terminated), the merges
// (NULL-terminated), and tokenizer.ggml.pre (none if NULL).
static const char *write_vocab(const char *name, const char *const *extra,
                               const char *const *merges, const char *pre) {
    Buf b = {0};
    size_t n_extra = 0, n_merges = 0;
    while (extra[n_extra]) n_extra++;
    while (merges[n_merges]) n_merges++;
    put(&b, "GGUF", 4), put_u32(&b, 3), put_u64(&b, 0), put_u64(&b, pre ? 5 : 4);
    put_str(&b, "general.architecture"), put_u32(&b, 8), put_str(&b, "llama");
    put_str(&b, "tokenizer.ggml.model"), put_u32(&b, 8), put_str(&b, "gpt2");
    if (pre) put_str(&b, "tokenizer.ggml.pre"), put_u32(&b, 8), put_str(&b, pre);
    put_str(&b, "tokenizer.ggml.tokens"), put_u32(&b, 9), put_u32(&b, 8), put_u64(&b, 256 + n_extra);
    for (int c = 0; c < 256; c++) {
        char s[4];
        byte_char(c, s);
        put_str(&b, s);
    }
    for (size_t i = 0; i < n_extra; i++) put_str(&b, extra[i]);
    put_str(&b, "tokenizer.ggml.merges"), put_u32(&b, 9), put_u32(&b, 8), put_u64(&b, n_merges);
    for (size_t i = 0; i < n_merges; i++) put_str(&b, merges[i]);
    const char *path = tmp_file(name);
    cr_assert_eq(write_all_file(path, b.p, b.n), 0);
    free(b.p);
    return path;
}

static void refused(const char *gguf, const char *message) {
    char *out, *err, *dst = strdup(tmp_file("refused.slm"));
    int rc = run_cmd(&out, &err, "%s %s %s", bin_path("export"), gguf, dst);
    cr_assert_eq(rc, 1, "%s: status %d, stderr %s", gguf, rc, err);
    cr_assert(strstr(err, message), "%s: expected \"%s\" in: %s", gguf, message, err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    cr_assert(!file_exists(dst), "no file is written");
    free(out), free(err), free(dst);
}

Test(bpe, bad_vocabularies_are_refused) {
    static const char *const extra[] = {"\xc4\xa0" "a", "ab", NULL};  // "Ġa" (" a"), "ab"
    static const char *const merges[] = {"\xc4\xa0 a", "a b", NULL};
    char *out, *err;
    const char *ok = write_vocab("ok.gguf", extra, merges, "llama-bpe");
    int rc = run_cmd(&out, &err, "%s %s %s", bin_path("export"), ok, tmp_file("ok.slm"));
    cr_assert_eq(rc, 0, "the valid vocabulary: %s", err);
    free(out), free(err);

    static const char *const unknown[] = {"\xc4\xa0 a", "a zz", NULL};
    refused(write_vocab("unknown.gguf", extra, unknown, "llama-bpe"),
            "merge 1 \"a\" + \"zz\" names a piece that is no token");
    static const char *const no_space[] = {"\xc4\xa0 a", "ab", NULL};
    refused(write_vocab("nospace.gguf", extra, no_space, "llama-bpe"),
            "merge 1 \"ab\" is not two tokens separated by a space");
    static const char *const not_a_token[] = {"\xc4\xa0 a", "b a", NULL};  // "ba" is no token
    refused(write_vocab("nottoken.gguf", extra, not_a_token, "llama-bpe"),
            "merge 1 joins tokens 98 and 97 into a piece that is no token");
    refused(write_vocab("nopre.gguf", extra, merges, NULL), "tokenizer.ggml.pre is missing");
    refused(write_vocab("pre.gguf", extra, merges, "deepseek-llm"),
            "pre-tokenizer \"deepseek-llm\" is not supported");
    static const char *const cyrillic[] = {"\xd0\x96", NULL};  // U+0416 is no byte character
    refused(write_vocab("alphabet.gguf", cyrillic, merges + 2, "qwen2"),
            "token 256 \"\xd0\x96\" is not in GPT-2's byte-level alphabet");
}

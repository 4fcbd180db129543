// tests/test_hf.c: the JSON parser, and `export` of Hugging Face checkpoints (hf.c,
// safetensors.c) against the fixtures that tests/fixtures/make_fixtures.py made with
// transformers and tokenizers themselves (tests/fixtures/README.md).
//
// Bounds, absolute, on every logit of every position (the logits reach about 5.9):
//   tiny-f32 vs reference-f32.bin: 1e-4 (f32 weights, f32 arithmetic on both sides);
//   tiny-bf16 vs reference-bf16.bin (transformers on the same bf16 weights upcast to f32):
//     1e-4 exported as f32 and as bf16 (bf16 holds those weights exactly);
//   tiny-sharded (tied, bf16) vs reference-tied.bin: 1e-4.
// (Rounding tiny-f32's weights to bf16 moves its logits by up to 0.08, so a bf16 model is
// compared with the reference of its own weights, not with reference-f32.bin.)
#include <criterion/criterion.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat.h"
#include "app/template.h"
#include "convert/hf.h"
#include "io/json.h"
#include "runtime/transformer.h"
#include "tokenizer/pretok.h"
#include "helpers.h"


// ----------------------------------------------------------------------------
// json.c

static int parse_fails_at(const char *s, size_t want_offset) {
    JsonValue v;
    JsonError e;
    if (json_parse(s, strlen(s), &v, &e) == 0) {
        json_free(&v);
        return 0;
    }
    return e.offset == want_offset && e.msg[0];
}

Test(json, valid_documents) {
    const char *s = " {\"a\": [1, -2.5e3, 0, true, false, null, \"x\\ty\"], \"b\": {}, \"c\": []} ";
    JsonValue v;
    JsonError e;
    cr_assert_eq(json_parse(s, strlen(s), &v, &e), 0, "%s at %zu", e.msg, e.offset);
    cr_assert_eq(v.type, JSON_OBJECT);
    cr_assert_eq(v.n, 3);
    const JsonValue *a = json_get(&v, "a");
    cr_assert(a && a->type == JSON_ARRAY && a->n == 7);
    long long i;
    cr_assert(json_int(&a->items[0], 0, 10, &i) && i == 1);
    cr_assert_eq(a->items[1].num, -2500.0);
    cr_assert(json_int(&a->items[1], -10000, 10000, &i) && i == -2500);
    cr_assert(!json_int(&a->items[1], 0, 10000, &i), "out of range");
    cr_assert_eq(a->items[3].type, JSON_TRUE);
    cr_assert_eq(a->items[5].type, JSON_NULL);
    cr_assert(json_is_str(&a->items[6], "x\ty"));
    cr_assert_eq(a->items[6].offset, (size_t)(strstr(s, "\"x\\t") - s));
    cr_assert(json_get(&v, "b")->type == JSON_OBJECT && json_get(&v, "c")->n == 0);
    cr_assert_null(json_get(&v, "d"));
    json_free(&v);
    static const char *const ok[] = {"0", "-0", "1e5", "1E+5", "0.5e-3", "\"\"", "[]", "{}",
                                     "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "[[[]]]", "123456789012"};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        cr_assert_eq(json_parse(ok[k], strlen(ok[k]), &v, &e), 0, "%s: %s", ok[k], e.msg);
        json_free(&v);
    }
}

Test(json, errors_carry_offsets) {
    cr_assert(parse_fails_at("", 0));
    cr_assert(parse_fails_at("   ", 3));
    cr_assert(parse_fails_at("[1, 2,]", 6), "trailing comma");
    cr_assert(parse_fails_at("{\"a\" 1}", 5), "missing colon");
    cr_assert(parse_fails_at("{\"a\": 1,}", 8));
    cr_assert(parse_fails_at("{1: 2}", 1), "non-string key");
    cr_assert(parse_fails_at("[01]", 1), "leading zero");
    cr_assert(parse_fails_at("[1.]", 3));
    cr_assert(parse_fails_at("[1e]", 3));
    cr_assert(parse_fails_at("[-]", 1));
    cr_assert(parse_fails_at("[NaN]", 1));
    cr_assert(parse_fails_at("[tru]", 1));
    cr_assert(parse_fails_at("[1] x", 4), "trailing data");
    cr_assert(parse_fails_at("\"abc", 0), "unterminated string");
    cr_assert(parse_fails_at("[\"a\nb\"]", 3), "raw control byte");
    cr_assert(parse_fails_at("\"\\x\"", 1), "bad escape");
    cr_assert(parse_fails_at("\"\\u12G4\"", 5), "bad hex");
    cr_assert(parse_fails_at("[1e999]", 1), "overflows a double");
    cr_assert(parse_fails_at("\"\xC0\xAF\"", 1), "overlong UTF-8");
    cr_assert(parse_fails_at("\"\xED\xA0\x80\"", 1), "UTF-8 encoded surrogate");
    cr_assert(parse_fails_at("\"ab\xFF\"", 3), "invalid byte");
    cr_assert(parse_fails_at("{\"a\": [1, 2}", 11));
}

Test(json, surrogates) {
    JsonValue v;
    JsonError e;
    const char *s = "\"\\u00e9\\u65E5\\uD83D\\uDE00x\"";
    cr_assert_eq(json_parse(s, strlen(s), &v, &e), 0, "%s", e.msg);
    cr_assert_eq(v.len, 2 + 3 + 4 + 1);
    cr_assert(memcmp(v.str, "\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80x", v.len) == 0);
    json_free(&v);
    s = "\"a\\u0000b\"";
    cr_assert_eq(json_parse(s, strlen(s), &v, &e), 0);
    cr_assert(v.len == 3 && v.str[1] == '\0' && v.str[2] == 'b');
    json_free(&v);
    cr_assert(parse_fails_at("\"\\uD83D\"", 1), "lone high surrogate");
    cr_assert(parse_fails_at("\"\\uD83Dx\"", 1));
    cr_assert(parse_fails_at("\"\\uD83D\\u0041\"", 1), "high then not low");
    cr_assert(parse_fails_at("\"\\uDE00\"", 1), "lone low surrogate");
}

Test(json, nesting_limit) {
    char deep[2 * JSON_MAX_DEPTH + 4];
    size_t n = 0;
    for (int i = 0; i < JSON_MAX_DEPTH; i++) deep[n++] = '[';
    for (int i = 0; i < JSON_MAX_DEPTH; i++) deep[n++] = ']';
    JsonValue v;
    JsonError e;
    cr_assert_eq(json_parse(deep, n, &v, &e), 0, "%d levels are allowed: %s", JSON_MAX_DEPTH, e.msg);
    json_free(&v);
    n = 0;
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) deep[n++] = '[';
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) deep[n++] = ']';
    cr_assert_neq(json_parse(deep, n, &v, &e), 0);
    cr_assert_eq(e.offset, JSON_MAX_DEPTH, "at the first bracket too deep, not %zu", e.offset);
    // a million open brackets: refused at the limit, no deep recursion
    size_t big = 1000000;
    char *b = malloc(big);
    memset(b, '{', big);
    cr_assert_neq(json_parse(b, big, &v, &e), 0);
    free(b);
}

// ----------------------------------------------------------------------------
// export of the Hugging Face fixtures

typedef struct {
    int n_seqs;
    int n[8];
    int *ids[8];
    float *logits[8];
    int vocab;
} Ref;

static void read_ref(Ref *r, const char *path) {
    size_t n;
    char *b = read_all(path, &n);
    cr_assert_not_null(b, "cannot read %s", path);
    cr_assert(n >= 12 && !memcmp(b, "SLREF001", 8), "%s: bad magic", path);
    uint32_t u;
    memcpy(&u, b + 8, 4);
    cr_assert(u >= 1 && u <= 8);
    r->n_seqs = (int)u;
    size_t off = 12;
    for (int s = 0; s < r->n_seqs; s++) {
        uint32_t nt, v;
        cr_assert(off + 8 <= n);
        memcpy(&nt, b + off, 4);
        memcpy(&v, b + off + 4, 4);
        off += 8;
        size_t need = (size_t)nt * 4 + (size_t)nt * v * 4;
        cr_assert(nt > 0 && nt < 128 && v > 0 && v < 100000 && off + need <= n, "%s: bad sizes", path);
        r->n[s] = (int)nt;
        r->vocab = (int)v;
        r->ids[s] = malloc((size_t)nt * 4);
        r->logits[s] = malloc((size_t)nt * v * 4);
        memcpy(r->ids[s], b + off, (size_t)nt * 4);
        memcpy(r->logits[s], b + off + (size_t)nt * 4, (size_t)nt * v * 4);
        off += need;
    }
    cr_assert_eq(off, n, "%s: trailing bytes", path);
    free(b);
}

static void free_ref(Ref *r) {
    for (int s = 0; s < r->n_seqs; s++) free(r->ids[s]), free(r->logits[s]);
}

// Exports a fixture (with more export options) and returns the output path.
static const char *export_with(const char *dir, const char *opts, const char *dtype,
                               const char *out_name) {
    const char *out = tmp_file(out_name);
    char *o, *e;
    int rc = run_cmd(&o, &e, "%s %s --dtype %s %s %s", bin_path("export"), opts, dtype,
                     fixture(dir), out);
    cr_assert_eq(rc, 0, "export %s failed: %s", dir, e);
    cr_assert((strstr(o, ": Hugging Face ") || strstr(o, ": GGUF ")) && strstr(o, "  features:"),
              "summary: %s", o);
    free(o), free(e);
    return out;
}

static const char *export_fixture(const char *dir, const char *dtype, const char *out_name) {
    return export_with(dir, "", dtype, out_name);
}

// Max |ours - reference| over every logit of every sequence.
static double max_logit_error(const char *model, const char *ref_path) {
    Ref r;
    read_ref(&r, fixture(ref_path));
    Transformer t;
    cr_assert_eq(transformer_build(&t, model, NULL, ATTN_KV_F32), MODEL_OK);
    cr_assert_eq(t.model.header.vocab_size, r.vocab);
    double worst = 0;
    for (int s = 0; s < r.n_seqs; s++) {
        float *lg = malloc((size_t)r.n[s] * (size_t)r.vocab * sizeof(float));
        transformer_forward_all(&t, r.ids[s], (size_t)r.n[s], 0, lg);
        for (size_t i = 0; i < (size_t)r.n[s] * (size_t)r.vocab; i++) {
            double d = fabs((double)lg[i] - (double)r.logits[s][i]);
            cr_assert(!isnan(d), "NaN logit");
            if (d > worst) worst = d;
        }
        free(lg);
    }
    transformer_free(&t);
    free_ref(&r);
    return worst;
}

Test(hf, f32_logits_match_transformers) {
    const char *m = export_fixture("tiny-f32", "f32", "hf-f32.slm");
    double err = max_logit_error(m, "reference-f32.bin");
    cr_assert(err <= 1e-4, "max |logit error| %g > 1e-4", err);
}

Test(hf, bf16_logits_match_transformers) {
    const char *m = export_fixture("tiny-bf16", "f32", "hf-bf16-as-f32.slm");
    double err = max_logit_error(m, "reference-bf16.bin");
    cr_assert(err <= 1e-4, "as f32: max |logit error| %g > 1e-4", err);
    m = export_fixture("tiny-bf16", "bf16", "hf-bf16.slm");
    err = max_logit_error(m, "reference-bf16.bin");
    cr_assert(err <= 1e-4, "as bf16: max |logit error| %g > 1e-4", err);
}

Test(hf, sharded_tied_logits_match_transformers) {
    const char *m = export_fixture("tiny-sharded", "f32", "hf-sharded.slm");
    Model mm;
    cr_assert_eq(model_open(&mm, m, 1), MODEL_OK);
    cr_assert(mm.header.flags & SL_FLAG_SHARED_CLASSIFIER, "tied embeddings: shared classifier");
    model_close(&mm);
    double err = max_logit_error(m, "reference-tied.bin");
    cr_assert(err <= 1e-4, "max |logit error| %g > 1e-4", err);
}

Test(hf, header_from_config) {
    const char *m = export_fixture("tiny-f32", "f32", "hf-header.slm");
    Model mm;
    cr_assert_eq(model_open(&mm, m, 1), MODEL_OK);
    const SlHeader *h = &mm.header;
    cr_assert(h->dim == 64 && h->hidden_dim == 80 && h->n_layers == 2 && h->n_heads == 4 &&
              h->n_kv_heads == 2 && h->head_dim == 16 && h->vocab_size == 352 && h->seq_len == 128);
    cr_assert(h->rope_theta == 50000.0f && h->norm_eps == 1e-5f);
    cr_assert(!(h->flags & SL_FLAG_SHARED_CLASSIFIER));
    cr_assert(h->bos_id == 1 && h->eos_id == 2);
    cr_assert_eq(mm.tokenizer.types[0], TOK_UNKNOWN);
    cr_assert_eq(mm.tokenizer.types[1], TOK_CONTROL);
    cr_assert_eq(mm.tokenizer.types[3 + 'A'], TOK_BYTE);
    model_close(&mm);
}

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

Test(hf, tokenizer_encodes_as_hf_tokenizers) {
    const char *m = export_fixture("tiny-f32", "f32", "hf-tok.slm");
    Model mm;
    cr_assert_eq(model_open(&mm, m, 1), MODEL_OK);
    size_t n;
    char *txt = read_all(fixture("encode.txt"), &n);
    cr_assert_not_null(txt);
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        cr_assert_not_null(tab);
        size_t hl = (size_t)(tab - line), len = hl / 2;
        char text[512];
        cr_assert(len < sizeof text);
        for (size_t i = 0; i < len; i++)
            text[i] = (char)(hexval(line[2 * i]) * 16 + hexval(line[2 * i + 1]));
        int want[512], nw = 0;
        for (char *p = tab + 1; *p;) {
            char *end;
            want[nw++] = (int)strtol(p, &end, 10);
            cr_assert(end != p);
            p = end;
            while (*p == ' ') p++;
        }
        int got[600];
        size_t ng;
        cr_assert_eq(tokenizer_encode(&mm.tokenizer, text, len, 0, 0, got, 600, &ng), TOK_OK);
        int same = (int)ng == nw;
        for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
        if (!same) {
            char g[2048] = "";
            for (size_t i = 0; i < ng; i++) snprintf(g + strlen(g), 16, " %d", got[i]);
            cr_assert_fail("text %.*s: want %s, got%s", (int)len, text, tab + 1, g);
        }
        lines++;
    }
    cr_assert_geq(lines, 8);
    free(txt);
    model_close(&mm);
}

// ----------------------------------------------------------------------------
// malformed inputs: exit 1, one clear line, no output file

// Copies a fixture directory into the test's temporary directory.
static const char *copy_fixture(const char *dir, const char *name) {
    const char *dst = tmp_file(name);
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "rm -rf %s && cp -r %s %s", dst, fixture(dir), dst), 0, "%s", e);
    free(o), free(e);
    return strdup(dst);
}

static void expect_refused(const char *dir, const char *what) {
    const char *out = tmp_file("refused.slm");
    remove(out);
    char *o, *e;
    int rc = run_cmd(&o, &e, "%s %s %s", bin_path("export"), dir, out);
    cr_assert_eq(rc, 1, "exit %d for %s, stderr: %s", rc, what, e);
    cr_assert(strstr(e, what), "stderr should mention \"%s\": %s", what, e);
    cr_assert(strchr(e, '\n') == e + strlen(e) - 1, "one line: %s", e);
    cr_assert(!file_exists(out), "no output file");
    free(o), free(e);
}

static void write_str(const char *path, const char *s) {
    cr_assert_eq(write_all_file(path, s, strlen(s)), 0);
}

static char *path_in(const char *dir, const char *name) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

Test(hf, truncated_and_corrupted_safetensors_refused) {
    char *d = (char *)copy_fixture("tiny-f32", "trunc");
    const char *st = path_in(d, "model.safetensors");
    size_t n;
    char *b = read_all(st, &n);
    write_all_file(st, b, n - 100);
    expect_refused(d, "past the file");
    write_all_file(st, b, 4);
    expect_refused(d, "shorter than the 8-byte");
    uint64_t huge = 1ull << 40;
    memcpy(b, &huge, 8);
    write_all_file(st, b, n);
    expect_refused(d, "header length");
    memcpy(&huge, "\x40\x00\x00\x00\x00\x00\x00\x00", 8);  // a header cut short: bad JSON
    memcpy(b, &huge, 8);
    write_all_file(st, b, n);
    expect_refused(d, "bad JSON header at byte");
    free(b);
    char *dd = (char *)copy_fixture("tiny-sharded", "trunc-sharded");
    char *o, *e;
    run_cmd(&o, &e, "rm %s", path_in(dd, "model-00003-of-00009.safetensors"));
    free(o), free(e);
    expect_refused(dd, "model-00003-of-00009.safetensors: cannot open");
    free(d), free(dd);
}

Test(hf, wrong_dtype_and_shape_refused) {
    char *d = (char *)copy_fixture("tiny-f32", "dtype");
    const char *st = path_in(d, "model.safetensors");
    size_t n;
    char *b = read_all(st, &n);
    uint64_t hl;
    memcpy(&hl, b, 8);
    char *hdr = b + 8;
    // relabel a tensor as I32 (same size), then change a shape (same element count)
    char *p = strstr(hdr, "\"F32\"");
    cr_assert_not_null(p);
    memcpy(p, "\"I32\"", 5);
    write_all_file(st, b, n);
    expect_refused(d, "is I32; export reads F32, F16 and BF16");
    memcpy(p, "\"F32\"", 5);
    p = strstr(hdr, "\"model.norm.weight\"");
    cr_assert_not_null(p);
    char *sh = strstr(p, "[64]");
    cr_assert(sh && sh < hdr + hl);
    memcpy(sh, "[65]", 4);
    write_all_file(st, b, n);
    expect_refused(d, "model.norm.weight");
    free(b);
    free(d);
}

// Writes buf with the first occurrence of old replaced by new.
static void write_replaced(const char *path, const char *buf, size_t n, const char *old,
                           const char *new) {
    const char *p = NULL;  // the first occurrence in n bytes that may hold NULs (safetensors)
    for (size_t i = 0; !p && i + strlen(old) <= n; i++)
        if (memcmp(buf + i, old, strlen(old)) == 0) p = buf + i;
    cr_assert_not_null(p, "%s not in %s", old, path);
    size_t pre = (size_t)(p - buf), ol = strlen(old), nl = strlen(new);
    char *w = malloc(n + nl);
    memcpy(w, buf, pre);
    memcpy(w + pre, new, nl);
    memcpy(w + pre + nl, p + ol, n - pre - ol);
    cr_assert_eq(write_all_file(path, w, n - ol + nl), 0);
    free(w);
}

Test(hf, bad_config_refused) {
    char *d = (char *)copy_fixture("tiny-f32", "cfg");
    const char *cfg = path_in(d, "config.json");
    size_t n;
    char *b = read_all(cfg, &n);
    write_all_file(cfg, b, n / 2);
    expect_refused(d, "config.json: bad JSON at byte");
    write_replaced(cfg, b, n, "LlamaForCausalLM", "GemmaForCausalLM");
    expect_refused(d, "architectures \"GemmaForCausalLM\"; export reads LlamaForCausalLM");
    free(b);
    write_str(cfg, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}");
    expect_refused(d, "no \"intermediate_size\"");
    free(d);
}

// generation_config.json's sampling values are stored as the model's recommended sampling
// (null ones are not), whether or not do_sample is set, as llama.cpp's converter takes them.
Test(hf, generation_config_sampling_stored) {
    char *d = (char *)copy_fixture("tiny-f32", "gen");
    const char *gen = strdup(path_in(d, "generation_config.json"));
    write_str(gen, "{\"bos_token_id\": 1, \"eos_token_id\": 2, \"do_sample\": true, "
                   "\"temperature\": 0.7, \"top_p\": 0.8, \"top_k\": 20, \"min_p\": null, "
                   "\"repetition_penalty\": 1.05}");
    const char *out = tmp_file("gen.slm");
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, out), 0, "%s", e);
    cr_assert(strstr(o, "  recommended sampling: temperature 0.7, top_p 0.8, top_k 20, "
                        "repeat_penalty 1.05\n"), "%s", o);
    free(o), free(e);
    Model m;
    cr_assert_eq(model_open(&m, out, 0), MODEL_OK);
    cr_assert_eq(m.header.sampling_set, SL_SAMPLE_KNOWN & ~SL_SAMPLE_MIN_P);
    cr_assert(m.header.sample_temperature == 0.7f && m.header.sample_top_p == 0.8f &&
              m.header.sample_top_k == 20 && m.header.sample_repeat_penalty == 1.05f);
    model_close(&m);
    write_str(gen, "{\"temperature\": -1}");
    expect_refused(d, "generation_config.json: \"temperature\" (byte 16) is not a number in its range");
    write_str(gen, "{\"top_k\": 2.5}");
    expect_refused(d, "\"top_k\" (byte 10) is not a number in its range");
    free((void *)gen), free(d);
}

Test(hf, bad_tokenizer_refused) {
    char *d = (char *)copy_fixture("tiny-f32", "tok");
    const char *tj = path_in(d, "tokenizer.json");
    size_t n;
    char *b = read_all(tj, &n);
    write_all_file(tj, b, n - 10);
    expect_refused(d, "tokenizer.json: bad JSON at byte");
    write_replaced(tj, b, n, "\"BPE\"", "\"WordPiece\"");
    expect_refused(d, "tokenizer model WordPiece");
    write_replaced(tj, b, n, "\"byte_fallback\": true", "\"byte_fallback\": false");
    expect_refused(d, "BPE without byte_fallback");
    write_replaced(tj, b, n, "\"pre_tokenizer\": null", "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}");
    expect_refused(d, "pre_tokenizer ByteLevel");
    free(b);
    free(d);
}

Test(hf, missing_files_refused) {
    char *d = (char *)copy_fixture("tiny-f32", "missing");
    char *o, *e;
    run_cmd(&o, &e, "rm %s", path_in(d, "tokenizer.json"));
    free(o), free(e);
    expect_refused(d, "tokenizer.json: cannot open");
    run_cmd(&o, &e, "rm %s", path_in(d, "model.safetensors"));
    free(o), free(e);
    expect_refused(d, "neither model.safetensors nor model.safetensors.index.json");
    run_cmd(&o, &e, "rm %s", path_in(d, "config.json"));
    free(o), free(e);
    expect_refused(d, "a directory without config.json (not a Hugging Face model)");
    free(d);
}

// The f32 checkpoint exported with --dtype f16 and q8_0 against the f32 reference: the
// rounding of the weights (and, for q8_0, of the activations) on logits of about +-6.
// Measured: f16 0.011, q8_0 about 0.2 (as the GGUF Q8_0 fixture, tests/test_gguf.c).
Test(hf, f16_and_q8_0_exports_track_transformers) {
    double err = max_logit_error(export_fixture("tiny-f32", "f16", "hf-f16.slm"), "reference-f32.bin");
    cr_assert(err <= 2e-2, "f16: max |logit error| %g > 2e-2", err);
    err = max_logit_error(export_fixture("tiny-f32", "q8_0", "hf-q8.slm"), "reference-f32.bin");
    cr_assert(err <= 0.3, "q8_0: max |logit error| %g > 0.3", err);
    fprintf(stderr, "hf q8_0: max |logit error| %.3g\n", err);
}

// ----------------------------------------------------------------------------
// Current families (tests/fixtures/make_families.py), read from their Hugging Face directories:
// logits within 1e-4 of transformers' forward pass (f32), and `run -t 0` encodes the prompt
// and generates the ids of transformers' greedy generate(), stopping where it stops (read
// back from the ids at the head of --attn-dump: every position that ran). The same model
// converted by llama.cpp's convert_hf_to_gguf.py (tiny-<family>.gguf) and imported by export
// generates the same ids (export's options gguf_opts: Mistral's window, which the converter
// drops). The converter drops config.json's eos_token_id where it is a list (llama3, qwen2),
// so a GGUF may lack the id that stopped transformers: then run goes on past it.

// Runs `run -t 0` on model m for greedy.txt's prompt and positions; checks the ids of every
// position that ran against transformers', and that generation stopped where transformers'
// did, at a stop id of m (with may_go_on, m may lack that id and go on).
static void greedy_matches(const char *family, const char *m, const Model *info, int may_go_on) {
    char greedy[96];
    snprintf(greedy, sizeof greedy, "tiny-%s/greedy.txt", family);
    char *g = read_all(fixture(greedy), NULL), *out, *e;
    cr_assert(g);
    char *nl1 = strchr(g, '\n'), *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
    cr_assert(nl1 && nl2, "greedy.txt: prompt, n, ids");
    *nl1 = *nl2 = '\0';
    const char *dump = tmp_file("family.attn");
    int rc = run_cmd(&out, &e, "%s %s -t 0 -n %s -i \"%s\" --attn-dump %s", bin_path("run"), m,
                     nl1 + 1, g, dump);
    cr_assert_eq(rc, 0, "%s", e);
    size_t size;
    char *d = read_all(dump, &size);
    uint32_t hdr[8];
    cr_assert(d && size >= 32);
    memcpy(hdr, d, 32);
    // transformers stops after the stop id it generates; run stops before running it
    int n = atoi(nl1 + 1), hf_n = 0;
    long hf[1024];
    for (char *p = nl2 + 1; *p && *p != '\n' && hf_n < 1024;) hf[hf_n++] = strtol(p, &p, 10);
    cr_assert(hf_n <= n + 1, "transformers generated past -n");
    if (hf_n == n + 1) {  // transformers ran to the end: so does run, over the same ids
        cr_assert_eq(hdr[4], (uint32_t)n, "%s: positions that ran: %u, expected %d", m, hdr[4], n);
        hf_n = n;
    } else {  // transformers stopped at a stop id: run stops there too, if m has that id
        int stops = model_is_stop(&info->header, (int)hf[hf_n - 1]);
        cr_assert(stops || may_go_on, "%s: id %ld stopped transformers, not run", m, hf[hf_n - 1]);
        hf_n--;  // the stop id itself does not run
        if (stops)
            cr_assert_eq(hdr[4], (uint32_t)hf_n, "%s: positions that ran: %u, transformers %d", m,
                         hdr[4], hf_n);
    }
    cr_assert(hdr[4] >= (uint32_t)hf_n, "%s: %u positions ran", m, hdr[4]);
    for (int i = 0; i < hf_n; i++) {
        int32_t ours;
        memcpy(&ours, d + 32 + 4 * i, 4);
        cr_assert_eq(ours, hf[i], "%s (%s), position %d: id %d, transformers %ld", family, m, i,
                     ours, hf[i]);
    }
    free(d), free(g), free(out), free(e);
}

// Returns the model exported from the Hugging Face directory, opened, for the family's own
// checks.
static void family_matches_transformers(const char *family, Model *info, const char *gguf_opts) {
    char dir[64], ref[64], gguf[64];
    snprintf(dir, sizeof dir, "tiny-%s", family);
    snprintf(ref, sizeof ref, "reference-%s.bin", family);
    snprintf(gguf, sizeof gguf, "tiny-%s.gguf", family);
    const char *m = export_fixture(dir, "f32", "family.slm");
    double err = max_logit_error(m, ref);
    cr_log_info("%s: max |logit error| %.3g", family, err);
    cr_assert_leq(err, 1e-4, "%s: max |logit error| %g", family, err);
    cr_assert_eq(model_open(info, m, 0), MODEL_OK);
    cr_assert_eq(info->header.version, 2);
    greedy_matches(family, m, info, 0);
    Model g;
    const char *gm = export_with(gguf, gguf_opts, "f32", "family-gguf.slm");
    cr_assert_eq(model_open(&g, gm, 0), MODEL_OK);
    cr_assert_eq(g.header.flags, info->header.flags, "the GGUF road's features and BOS");
    cr_assert_eq(g.header.sliding_window, info->header.sliding_window);
    greedy_matches(family, gm, &g, 1);
    model_close(&g);
}

// Llama 3.2-style: RoPE scaling llama3, head_dim independent of the hidden size, an embedding
// padded beyond the tokenizer, eos_token_id a list, a tokenizer that adds BOS.
Test(hf, llama3_style_matches_transformers) {
    Model info;
    family_matches_transformers("llama3", &info, "");
    cr_assert_eq(info.tokenizer.kind, TOK_BPE);
    cr_assert_eq(info.header.rope_scaling, SL_ROPE_LLAMA3);
    cr_assert(!(info.header.flags & SL_FLAG_NO_BOS), "its post_processor starts a text with BOS");
    cr_assert_eq(info.header.vocab_size, 832, "the embedding's rows");
    for (int id = 800; id < 832; id++) {  // the padding decodes to nothing
        size_t len;
        tokenizer_decode(&info.tokenizer, 0, id, &len);
        cr_assert_eq(len, 0, "padded id %d", id);
        cr_assert_eq(info.tokenizer.types[id], TOK_UNUSED);
    }
    cr_assert_eq(info.header.n_stop, 1, "config.json's eos_token_id list: eos, then a stop id");
    model_close(&info);
}

// SmolLM2-style: digits one by one, no BOS (its tokenizer adds none), stops at eos.
Test(hf, smollm2_style_matches_transformers) {
    Model info;
    family_matches_transformers("smollm2", &info, "");
    cr_assert_eq(info.tokenizer.kind, TOK_BPE);
    cr_assert_eq(info.tokenizer.pretok, PRETOK_SMOLLM);
    cr_assert(info.header.flags & SL_FLAG_NO_BOS, "prompts start without BOS");
    cr_assert_eq(info.header.rope_scaling, SL_ROPE_NONE);
    model_close(&info);
}

// Qwen2.5-style: q, k and v biases, tied embeddings, a padded embedding, no BOS, two stop ids.
Test(hf, qwen2_style_matches_transformers) {
    Model info;
    family_matches_transformers("qwen2", &info, "");
    cr_assert_eq(info.tokenizer.pretok, PRETOK_QWEN2);
    cr_assert(info.header.flags & SL_FLAG_QKV_BIAS);
    cr_assert(info.header.flags & SL_FLAG_NO_BOS);
    cr_assert_eq(info.header.n_stop, 1);
    model_close(&info);
}

// Qwen3-style: per-head q and k norms, head_dim 16 with q wider than the hidden size.
Test(hf, qwen3_style_matches_transformers) {
    Model info;
    family_matches_transformers("qwen3", &info, "");
    cr_assert(info.header.flags & SL_FLAG_QK_NORM);
    cr_assert(!(info.header.flags & SL_FLAG_QKV_BIAS));
    cr_assert_eq(info.header.n_heads * info.header.head_dim, 64);
    model_close(&info);
}

// Mistral v0.1-style: a sliding window of 16 that binds within the run, and a sentencepiece
// tokenizer. llama.cpp's converter drops sliding_window (llama.cpp does not apply it to
// Mistral): export --sliding-window gives it back.
Test(hf, mistral_style_matches_transformers) {
    Model info;
    family_matches_transformers("mistral", &info, "--sliding-window 16");
    cr_assert_eq(info.header.sliding_window, 16);
    model_close(&info);
}

// Phi-3-style: fused qkv_proj and gate_up_proj split at export, a sliding window of 24
// (kept in the GGUF as phi3.attention.sliding_window), a padded embedding.
Test(hf, phi3_style_matches_transformers) {
    Model info;
    family_matches_transformers("phi3", &info, "");
    cr_assert_eq(info.header.sliding_window, 24);
    cr_assert_eq(info.header.vocab_size, 832);
    model_close(&info);
}

// The new families' own ways to be wrong: each refused with one line, nothing written.
Test(hf, new_family_inputs_refused) {
    size_t n;
    // config.json: a feature the format does not hold, or a bad value
    char *d = (char *)copy_fixture("tiny-qwen2", "q2cfg");
    const char *cfg = path_in(d, "config.json");
    char *b = read_all(cfg, &n);
    write_replaced(cfg, b, n, "\"use_sliding_window\": false", "\"use_sliding_window\": true");
    expect_refused(d, "use_sliding_window is true");
    write_replaced(cfg, b, n, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_refused(d, "num_key_value_heads 3 must divide it");
    free(b), free(d);
    d = (char *)copy_fixture("tiny-phi3", "p3cfg");
    cfg = path_in(d, "config.json");
    b = read_all(cfg, &n);
    write_replaced(cfg, b, n, "{", "{\"partial_rotary_factor\": 0.75, ");
    expect_refused(d, "partial_rotary_factor is not 1");
    write_replaced(cfg, b, n, "\"sliding_window\": 24", "\"sliding_window\": -1");
    expect_refused(d, "\"sliding_window\" (byte");
    cr_assert_eq(write_all_file(cfg, b, n), 0);
    free(b);
    // safetensors: the fused tensor missing (renamed), then truncated
    const char *st = path_in(d, "model.safetensors");
    b = read_all(st, &n);
    write_replaced(st, b, n, "layers.1.self_attn.qkv_proj", "layers.1.self_attn.qkx_proj");
    expect_refused(d, "no tensor model.layers.1.self_attn.qkv_proj.weight");
    write_all_file(st, b, n - 1000);
    expect_refused(d, "past the file");
    free(b), free(d);
    // Qwen2's biases and Qwen3's norms are required where the family has them
    static const char *const cases[][4] = {
        {"tiny-qwen2", "layers.0.self_attn.k_proj.bias", "layers.0.self_attn.k_proj.bia_",
         "no tensor model.layers.0.self_attn.k_proj.bias"},
        {"tiny-qwen3", "layers.1.self_attn.q_norm", "layers.1.self_attn.q_nurm",
         "no tensor model.layers.1.self_attn.q_norm.weight"},
    };
    for (int i = 0; i < 2; i++) {
        d = (char *)copy_fixture(cases[i][0], "fam");
        st = path_in(d, "model.safetensors");
        b = read_all(st, &n);
        write_replaced(st, b, n, cases[i][1], cases[i][2]);
        expect_refused(d, cases[i][3]);
        free(b), free(d);
    }
}

// --ppl scores a text as transformers does, with BOS where the tokenizer adds one (Llama 3)
// and without where it adds none (SmolLM2): every token after the first, each predicted from
// those before it. The reference: the mean NLL of the prompt's ids under transformers' logits.
static void ppl_matches_transformers(const char *family) {
    char dir[64], ref[64], greedy[96];
    snprintf(dir, sizeof dir, "tiny-%s", family);
    snprintf(ref, sizeof ref, "reference-%s.bin", family);
    snprintf(greedy, sizeof greedy, "tiny-%s/greedy.txt", family);
    Ref r;
    read_ref(&r, fixture(ref));
    const char *m = export_fixture(dir, "f32", "ppl.slm");
    char *g = read_all(fixture(greedy), NULL), *out, *e;
    cr_assert(g && strchr(g, '\n'));
    *strchr(g, '\n') = '\0';
    const char *text = tmp_file("prompt.txt");
    cr_assert_eq(write_all_file(text, g, strlen(g)), 0);
    cr_assert_eq(run_cmd(&out, &e, "%s %s --ppl %s", bin_path("run"), m, text), 0, "%s", e);
    double ppl, nll;
    size_t tokens;
    cr_assert_eq(sscanf(out, "perplexity %lf, mean NLL %lf nats over %zu tokens", &ppl, &nll,
                        &tokens), 3, "%s", out);
    int n = r.n[0];  // the prompt's ids, BOS first where the tokenizer adds it
    double want = 0;
    for (int i = 0; i + 1 < n; i++) {
        const float *l = r.logits[0] + (size_t)i * (size_t)r.vocab;
        double max = l[0], sum = 0;
        for (int j = 1; j < r.vocab; j++) max = l[j] > max ? l[j] : max;
        for (int j = 0; j < r.vocab; j++) sum += exp(l[j] - max);
        want += log(sum) + max - l[r.ids[0][i + 1]];
    }
    want /= n - 1;
    cr_assert_eq(tokens, (size_t)n - 1, "%s: %zu tokens scored, %d ids", family, tokens, n);
    cr_assert(fabs(nll - want) <= 1e-4, "%s: mean NLL %.6f, transformers %.6f", family, nll, want);
    free_ref(&r);
    free(g), free(out), free(e);
}

Test(hf, ppl_with_and_without_bos_matches_transformers) {
    ppl_matches_transformers("llama3");   // BOS first
    ppl_matches_transformers("smollm2");  // no BOS
}

// ----------------------------------------------------------------------------
// the chat template travels into the model file

// Exports dir and checks that the model file holds `want` (len bytes) as its chat template and
// that export named the family.
static void expect_chat_template(const char *dir, const char *want, size_t len, const char *family) {
    const char *out = tmp_file("chat.slm");
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), dir, out), 0, "%s", e);
    char line[128];
    snprintf(line, sizeof line, "chat template: %s (%zu bytes)", family, len);
    cr_assert(strstr(o, line), "want \"%s\" in: %s", line, o);
    free(o), free(e);
    Model m;
    cr_assert_eq(model_open(&m, out, 1), MODEL_OK);
    cr_assert_eq(m.header.version, 2);
    cr_assert(m.chat_template_bytes == len && !memcmp(m.chat_template, want, len),
              "the stored template differs");
    model_close(&m);
}

Test(hf, chat_template_stored) {
    size_t len;
    char *tpl = read_all(model_file("../templates/Qwen-Qwen2.5-7B-Instruct.jinja"), &len);
    cr_assert(tpl);
    char *d = (char *)copy_fixture("tiny-qwen2", "chat");
    // tokenizer_config.json's string
    FILE *f = fopen(path_in(d, "tokenizer_config.json"), "w");
    fputs("{\"chat_template\": ", f);
    json_write_string(f, tpl, len);
    fputs("}", f);
    fclose(f);
    expect_chat_template(d, tpl, len, "chatml");
    // a list of named templates: the "default" one
    f = fopen(path_in(d, "tokenizer_config.json"), "w");
    fputs("{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": "
          "\"default\", \"template\": ", f);
    json_write_string(f, tpl, len);
    fputs("}]}", f);
    fclose(f);
    expect_chat_template(d, tpl, len, "chatml");
    // chat_template.jinja, where tokenizer_config.json has none
    write_str(path_in(d, "tokenizer_config.json"), "{\"model_max_length\": 128}");
    cr_assert_eq(write_all_file(path_in(d, "chat_template.jinja"), tpl, len), 0);
    expect_chat_template(d, tpl, len, "chatml");
    // the loader checks the template's size: too large, or past the file's end
    size_t n;
    char *b = read_all(tmp_file("chat.slm"), &n);
    long at = (long)offsetof(SlHeader, chat_template_bytes);
    refuse_patched_model(b, n, n, at + 2, 0x10, "bytes, at most 1048576");  // + 2^20
    refuse_patched_model(b, n, n, at + 3, 0x01, "chat template of 167");  // + 2^24
    refuse_patched_model(b, n, n, at + 1, (uint8_t)((len >> 8) + 1), "header implies");  // + 256
    refuse_patched_model(b, n, SL_HEADER_BYTES + 100, -1, 0, "truncated?");
    free(b);
    // not a string
    write_str(path_in(d, "tokenizer_config.json"), "{\"chat_template\": 5}");
    expect_refused(d, "\"chat_template\" (byte 18) is not a string");
    free(tpl), free(d);
    // none: no template in the file
    Model m;
    const char *plain = export_fixture("tiny-qwen2", "f32", "nochat.slm");
    cr_assert_eq(model_open(&m, plain, 1), MODEL_OK);
    cr_assert(m.chat_template == NULL && m.chat_template_bytes == 0);
    model_close(&m);
}

// ----------------------------------------------------------------------------
// Gemma 3 (tests/fixtures/make_gemma.py): the embedding scaled by sqrt(dim), norms of (1 + w)
// before and after attention and the feed-forward, q/k norms, GeGLU, queries scaled by
// query_pre_attn_scalar^-1/2 (24, not head_dim 32), sliding-window layers (window 8) with
// RoPE base 10000 and a global layer 5 with base 1e6 and linear scaling 2.

Test(hf, gemma3_matches_transformers) {
    const char *m = export_fixture("tiny-gemma3", "f32", "gemma3.slm");
    double err = max_logit_error(m, "reference-gemma3.bin");
    cr_log_info("gemma3: max |logit error| %.3g", err);
    cr_assert_leq(err, 1e-4, "gemma3: max |logit error| %g", err);
    Model info;
    cr_assert_eq(model_open(&info, m, 0), MODEL_OK);
    const SlHeader *h = &info.header;
    cr_assert_eq(h->version, 3);
    cr_assert_eq(h->n_tensors, SL_T_COUNT);
    cr_assert_eq(h->flags & ~SL_FLAG_SHARED_CLASSIFIER,
                 SL_FLAG_QK_NORM | SL_FLAG_POST_NORMS | SL_FLAG_GELU);
    cr_assert_eq(h->embed_scale, sqrtf(32.0f), "sqrt(hidden_size) as a float");
    cr_assert_eq(h->attn_scale, (float)(1.0 / sqrt(24.0)));
    cr_assert_eq(h->sliding_window, 8);
    cr_assert_eq(h->window_period, 6);
    cr_assert_eq(h->rope_theta, 1e6f);
    cr_assert_eq(h->rope_local_theta, 1e4f);
    cr_assert_eq(h->rope_scaling, SL_ROPE_LINEAR);
    cr_assert_eq(h->rope_factor, 2.0f);
    for (size_t l = 0; l < 7; l++) cr_assert_eq(model_layer_windowed(h, l), l != 5, "layer %zu", l);
    cr_assert(model_is_stop(h, 6), "<end_of_turn> (generation_config's eos_token_id) stops");
    cr_assert(!(h->flags & SL_FLAG_NO_BOS));
    greedy_matches("gemma3", m, &info, 0);
    model_close(&info);
}

// transformers 4's form of the same config (rope_theta, rope_local_base_freq, rope_scaling,
// sliding_window_pattern, no layer_types) exports to the same bytes.
Test(hf, gemma3_old_config_form_same_file) {
    char *m = strdup(export_fixture("tiny-gemma3", "f32", "gemma3-new.slm"));
    char *d = (char *)copy_fixture("tiny-gemma3", "gemma-old");
    size_t n;
    char *cfg = read_all(fixture("tiny-gemma3-old/config.json"), &n);
    cr_assert(cfg && strstr(cfg, "rope_local_base_freq") && !strstr(cfg, "rope_parameters"));
    cr_assert_eq(write_all_file(path_in(d, "config.json"), cfg, n), 0);
    const char *old = tmp_file("gemma3-old.slm");
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, old), 0, "%s", e);
    size_t a, b;
    char *x = read_all(m, &a), *y = read_all(old, &b);
    cr_assert(x && y && a == b && !memcmp(x, y, a), "the two config forms give different files");
    free(x), free(y), free(o), free(e), free(cfg), free(d), free(m);
}

// Writes dst: the safetensors file src with every tensor name "model.X" renamed
// "model.language_model.X" (the header rewritten, the data as it is: offsets are relative to it).
static void prefix_safetensors(const char *src, const char *dst) {
    size_t n;
    char *b = read_all(src, &n);
    cr_assert(b && n > 8);
    uint64_t hl;
    memcpy(&hl, b, 8);
    cr_assert(hl <= n - 8);
    size_t cap = 2 * hl + 64, k = 0;
    char *h = malloc(cap);
    for (size_t i = 0; i < hl; i++) {
        if (hl - i > 7 && !memcmp(b + 8 + i, "\"model.", 7)) {
            memcpy(h + k, "\"model.language_model.", 22);
            k += 22, i += 6;
        } else {
            h[k++] = b[8 + i];
        }
    }
    while (k % 8) h[k++] = ' ';
    uint64_t nl = k;
    FILE *f = fopen(dst, "wb");
    cr_assert(f);
    fwrite(&nl, 8, 1, f);
    fwrite(h, 1, k, f);
    fwrite(b + 8 + hl, 1, n - 8 - hl, f);
    fclose(f);
    free(h), free(b);
}

// The text model of a Gemma3ForConditionalGeneration (text_config, model.language_model.*):
// the same model file as Gemma3ForCausalLM's.
Test(hf, gemma3_multimodal_text_model_same_file) {
    char *m = strdup(export_fixture("tiny-gemma3", "f32", "gemma3-causal.slm"));
    char *d = (char *)copy_fixture("tiny-gemma3", "gemma-mm");
    size_t n;
    char *cfg = read_all(fixture("tiny-gemma3-mm/config.json"), &n), *o, *e;
    cr_assert(cfg && strstr(cfg, "\"text_config\""));
    cr_assert_eq(write_all_file(path_in(d, "config.json"), cfg, n), 0);
    char *st = strdup(path_in(d, "model.safetensors"));
    prefix_safetensors(fixture("tiny-gemma3/model.safetensors"), st);
    const char *mm = tmp_file("gemma3-mm.slm");
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, mm), 0, "%s", e);
    cr_assert(strstr(o, "Gemma3ForConditionalGeneration"), "%s", o);
    size_t a, b;
    char *x = read_all(m, &a), *y = read_all(mm, &b);
    cr_assert(x && y && a == b && !memcmp(x, y, a), "the text model's file differs");
    free(x), free(y), free(o), free(e), free(cfg), free(d), free(m), free(st);
}

// The same model converted by llama.cpp's convert_hf_to_gguf.py (tiny-gemma3.gguf): a GGUF
// carries no query_pre_attn_scalar, and llama.cpp scales the queries by head_dim^-1/2, so its
// reference is transformers' with query_pre_attn_scalar = head_dim (reference-gemma3-gguf.bin).
// Everything else matches the Hugging Face road's header; the tokenizer (add_space_prefix
// false) encodes as tokenizer.json does.
Test(hf, gemma3_gguf_matches_transformers) {
    char *m = strdup(export_fixture("tiny-gemma3.gguf", "f32", "gemma3-gguf.slm"));
    double err = max_logit_error(m, "reference-gemma3-gguf.bin");
    cr_log_info("gemma3 GGUF: max |logit error| %.3g", err);
    cr_assert_leq(err, 1e-4, "gemma3 GGUF: max |logit error| %g", err);
    const char *hm = export_fixture("tiny-gemma3", "f32", "gemma3-hf.slm");
    Model g, hf;
    cr_assert_eq(model_open(&g, m, 0), MODEL_OK);
    cr_assert_eq(model_open(&hf, hm, 0), MODEL_OK);
    SlHeader a = g.header, b = hf.header;
    cr_assert_eq(a.attn_scale, 0.0f, "head_dim^-1/2, the attention's own");
    cr_assert_eq(b.attn_scale, (float)(1.0 / sqrt(24.0)));
    a.attn_scale = b.attn_scale = 0;
    a.tokenizer_bytes = b.tokenizer_bytes = 0;  // GGUF keeps sentencepiece's scores
    a.chat_template_bytes = b.chat_template_bytes = 0;
    cr_assert(!memcmp(&a, &b, sizeof a), "the GGUF road's header differs from the HF road's");
    cr_assert_eq(g.tokenizer.flags, hf.tokenizer.flags, "no dummy prefix on either road");
    char *txt = read_all(fixture("gemma3-encode.txt"), NULL);
    cr_assert(txt);
    int lines = 0;
    for (char *p = txt; *p;) {
        char *nl = strchr(p, '\n'), *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
        cr_assert(nl && nl2);
        *nl = *nl2 = '\0';
        JsonValue v;
        JsonError je;
        cr_assert_eq(json_parse(p, strlen(p), &v, &je), 0);
        int want[256], nw = 0, *got;
        for (char *q = nl + 1; *q && nw < 256;) want[nw++] = (int)strtol(q, &q, 10);
        cr_assert(nw >= 1 && want[0] == 2, "tokenizers starts the text with <bos>");
        for (int r = 0; r < 2; r++) {  // special tokens in the text: chat_encode's partition
            const Tokenizer *t = r ? &hf.tokenizer : &g.tokenizer;
            size_t ng = 0;
            cr_assert_eq(chat_encode(t, v.str, v.len, &got, &ng), 0);
            ng++;  // and <bos>, which want[0] is
            cr_assert_eq((int)ng, nw, "%s road, \"%s\": %zu ids, tokenizers %d", r ? "HF" : "GGUF",
                         v.str, ng, nw);
            for (int i = 1; i < nw; i++)
                cr_assert_eq(got[i - 1], want[i], "%s road, \"%s\", id %d", r ? "HF" : "GGUF",
                             v.str, i);
            free(got);
        }
        json_free(&v);
        lines++;
        p = nl2 + 1;
    }
    cr_assert_geq(lines, 8);
    free(txt), free(m);
    model_close(&g), model_close(&hf);
}

// Gemma 3's chat template, from the model file: recognised as gemma3, and each conversation of
// gemma3-chat.txt rendered with the generation prompt and encoded gives the ids of
// transformers' apply_chat_template(..., add_generation_prompt=True) (the system text starts
// the first user turn). <end_of_turn> ends a reply on both roads.
Test(hf, gemma3_chat_template_ids_match_transformers) {
    const char *paths[2] = {strdup(export_fixture("tiny-gemma3", "f32", "gemma3-chat.slm")),
                            strdup(export_fixture("tiny-gemma3.gguf", "f32", "gemma3-chat-g.slm"))};
    for (int r = 0; r < 2; r++) {
        Model m;
        cr_assert_eq(model_open(&m, paths[r], 0), MODEL_OK);
        cr_assert_eq(template_detect(m.chat_template, m.chat_template_bytes, NULL, 0), TPL_GEMMA3);
        int eot = tokenizer_lookup(&m.tokenizer, "<end_of_turn>", 13);
        cr_assert(eot >= 0 && model_is_stop(&m.header, eot), "<end_of_turn> stops a reply");
        char *txt = read_all(fixture("gemma3-chat.txt"), NULL);
        cr_assert(txt);
        int chats = 0;
        for (char *p = txt; *p; chats++) {
            char *nl = strchr(p, '\n'), *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
            cr_assert(nl && nl2);
            *nl = *nl2 = '\0';
            JsonValue v;
            JsonError je;
            cr_assert_eq(json_parse(p, strlen(p), &v, &je), 0);
            cr_assert(v.type == JSON_ARRAY && v.n <= 8);
            ChatMsg msgs[8];
            for (size_t i = 0; i < v.n; i++)
                msgs[i] = (ChatMsg){json_get(&v.items[i], "role")->str,
                                    json_get(&v.items[i], "content")->str};
            TplOptions o = {.add_generation_prompt = 1, .bos = "<bos>", .eos = "<eos>"};
            char *text, err[200];
            size_t len, n;
            cr_assert_eq(template_render(TPL_GEMMA3, msgs, v.n, &o, &text, &len, err, sizeof err),
                         0, "%s", err);
            int *ids;
            cr_assert_eq(chat_encode(&m.tokenizer, text, len, &ids, &n), 0);
            int want[512], nw = 0;
            for (char *q = nl + 1; *q && nw < 512;) want[nw++] = (int)strtol(q, &q, 10);
            cr_assert_eq((int)n, nw, "chat %d: %zu ids, transformers %d: %s", chats, n, nw, text);
            for (int i = 0; i < nw; i++)
                cr_assert_eq(ids[i], want[i], "chat %d, id %d", chats, i);
            free(ids), free(text);
            json_free(&v);
            p = nl2 + 1;
        }
        cr_assert_eq(chats, 3);
        free(txt);
        model_close(&m);
    }
    // the template raises as Gemma 3's does: roles must alternate after the system message
    ChatMsg bad[2] = {{"system", "x"}, {"assistant", "y"}};
    char *text, err[200];
    size_t len;
    cr_assert_neq(template_render(TPL_GEMMA3, bad, 2, NULL, &text, &len, err, sizeof err), 0);
    cr_assert(strstr(err, "must alternate"), "%s", err);
    free((void *)paths[0]), free((void *)paths[1]);
}

// ----------------------------------------------------------------------------
// Windowed caches: tiny-gemma3 with a context of 512 (transformers' logits do not depend on
// max_position_embeddings) keeps its 6 windowed layers' keys in 8 - 1 + 2 x 128 = 263 rows,
// its global layer in 512. The logits equal, bit for bit, those of full caches: a prefill of
// the whole context, token by token decoding, chunks that make the rows slide, and decoding
// on after run's context shift (keep 4, drop 254).

// Sink: the last call's weights of layer 0 (n = 1), for comparing recordings.
static float rec_w[2 * 512];
static void rec_sink(void *ctx, size_t layer, size_t pos0, size_t n, const float *w, size_t stride) {
    (void)ctx, (void)pos0;
    if (layer == 0 && n == 1) memcpy(rec_w, w, 2 * stride * sizeof(float));
}

Test(hf, gemma3_windowed_cache_same_bits_as_full) {
    char *d = (char *)copy_fixture("tiny-gemma3", "gemma-long");
    size_t n;
    char *cfg = read_all(path_in(d, "config.json"), &n), *at = strstr(cfg, "\"max_position_embeddings\": 256");
    cr_assert(at);
    memcpy(at + strlen("\"max_position_embeddings\": "), "512", 3);
    cr_assert_eq(write_all_file(path_in(d, "config.json"), cfg, n), 0);
    const char *m = tmp_file("gemma-long.slm");
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, m), 0, "%s", e);
    free(o), free(e), free(cfg), free(d);
    Transformer ring, full;
    cr_assert_eq(transformer_build_full(&ring, m, NULL, ATTN_KV_F32, 0), MODEL_OK);
    cr_assert_eq(transformer_build_full(&full, m, NULL, ATTN_KV_F32, 1), MODEL_OK);
    cr_assert_eq(ring.state.kv.win_rows, 263);
    cr_assert_eq(full.state.kv.win_rows, 0);
    size_t row = 16 * sizeof(float);  // one kv head of 16
    cr_assert_eq(ring.state.kv.kv_bytes, (6 * 263 + 512) * row, "windowed layers: their rows only");
    cr_assert_eq(full.state.kv.kv_bytes, 7 * 512 * row);
    enum { N = 512, V = 600 };
    int *ids = malloc(N * sizeof(int));
    uint64_t seed = 7;
    for (int i = 0; i < N; i++) ids[i] = 7 + (int)(test_rand(&seed) % (V - 7));
    float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)N * V * sizeof(float));
    // the whole context at once (chunks of 128), with full and windowed caches
    transformer_forward_all(&full, ids, N, 0, a);
    transformer_forward_all(&ring, ids, N, 0, b);
    cr_assert(!memcmp(a, b, (size_t)N * V * sizeof(float)), "prefill: windowed caches differ");
    // token by token, and in uneven chunks, on windowed caches: the same bits
    for (int i = 0; i < N; i++) {
        const float *lg = transformer_forward(&ring, ids + i, 1, (size_t)i);
        cr_assert(!memcmp(lg, a + (size_t)i * V, V * sizeof(float)), "decode at %d differs", i);
    }
    for (size_t p = 0, c = 1; p < N; p += c, c = c * 3 % 200 + 1) {
        size_t k = N - p < c ? N - p : c;
        const float *lg = transformer_forward(&ring, ids + p, k, p);
        cr_assert(!memcmp(lg, a + (p + k - 1) * V, V * sizeof(float)), "chunk at %zu differs", p);
    }
    // a rewind (chat's, when a template renders the history anew): to 400, whose window the
    // rows still hold, it runs on from there; to 100, whose window they no longer hold, from 0.
    // Either way the logits are full caches' again
    cr_assert_eq(transformer_resume(&full, 100), 100);
    cr_assert_eq(transformer_resume(&ring, 400), 400);
    cr_assert_eq(transformer_resume(&ring, 100), 0);
    for (size_t k = 400; k < N; k += 37) {
        const float *lg = transformer_forward(&ring, ids + k, N - k < 37 ? N - k : 37, k);
        size_t last = (N - k < 37 ? N : k + 37) - 1;
        cr_assert(!memcmp(lg, a + last * V, V * sizeof(float)), "after the rewind to 400, %zu", last);
    }
    for (size_t k = 0; k < N; k += 100) {
        size_t m = N - k < 100 ? N - k : 100;
        const float *lg = transformer_forward(&ring, ids + k, m, k);
        cr_assert(!memcmp(lg, a + (k + m - 1) * V, V * sizeof(float)), "from 0 again, %zu", k);
    }
    cr_assert(transformer_can_shift(&ring, N, SHIFT_SINKS, (N - SHIFT_SINKS) / 2));
    cr_assert(!transformer_can_shift(&ring, 262, SHIFT_SINKS, 254), "the next window reaches the sinks");
    cr_assert(transformer_can_shift(&full, 262, SHIFT_SINKS, 254));
    // run's shift at a full context, then decoding on; and the recorded weights of layer 0
    // (windowed): zero outside the window, the same as with full caches
    size_t drop = (N - SHIFT_SINKS) / 2;
    size_t pa = transformer_shift(&full, N, SHIFT_SINKS, drop);
    size_t pb = transformer_shift(&ring, N, SHIFT_SINKS, drop);
    cr_assert_eq(pa, pb);
    cr_assert_eq(transformer_record(&full, rec_sink, NULL), MODEL_OK);
    cr_assert_eq(transformer_record(&ring, rec_sink, NULL), MODEL_OK);
    static float wa[2 * 512];
    for (int i = 0; i < 40; i++, pa++) {
        const float *la = transformer_forward(&full, ids + i, 1, pa);
        memcpy(a, la, V * sizeof(float));
        memcpy(wa, rec_w, sizeof wa);
        const float *lb = transformer_forward(&ring, ids + i, 1, pa);
        cr_assert(!memcmp(a, lb, V * sizeof(float)), "after the shift, position %zu differs", pa);
        for (size_t hh = 0; hh < 2; hh++) {  // each head's row: keys 0 .. pa
            cr_assert(!memcmp(wa + hh * N, rec_w + hh * N, (pa + 1) * sizeof(float)),
                      "head %zu's weights at %zu differ", hh, pa);
            for (size_t k = 0; k + 8 <= pa; k++)
                cr_assert_eq(rec_w[hh * N + k], 0.0f, "key %zu is outside the window", k);
            cr_assert_gt(rec_w[hh * N + pa], 0.0f);
        }
    }
    free(ids), free(a), free(b);
    transformer_free(&ring), transformer_free(&full);
}

// The KV cache at the full context of the real Gemma 3 shapes (header fields only): 270M (18
// layers, 1 kv head of 256, window 512, context 32768: layers 5, 11 and 17 global) and 1B (26
// layers: 5, 11, 17 and 23 global). A windowed layer keeps 512 - 1 + 2 x 128 = 767 rows.
Test(hf, gemma3_real_shapes_kv_memory) {
    const struct { const char *name; int layers, globals; } shapes[] = {{"270M", 18, 3}, {"1B", 26, 4}};
    for (int i = 0; i < 2; i++) {
        SlHeader h = {.n_layers = shapes[i].layers, .n_heads = 4, .n_kv_heads = 1,
                      .head_dim = 256, .seq_len = 32768, .sliding_window = 512,
                      .window_period = 6};
        cr_assert_eq(runstate_window_rows(&h), 767);
        size_t row = 256 * sizeof(float), L = (size_t)shapes[i].layers, G = (size_t)shapes[i].globals;
        size_t full = runstate_kv_bytes(&h, ATTN_KV_F32, 1), win = runstate_kv_bytes(&h, ATTN_KV_F32, 0);
        cr_assert_eq(full, L * 32768 * row);
        cr_assert_eq(win, (G * 32768 + (L - G) * 767) * row);
        cr_assert_eq(runstate_kv_bytes(&h, ATTN_KV_F16, 0), win / 2);
        cr_log_info("Gemma 3 %s at 32768: K+V f32 %.1f MiB full, %.1f MiB windowed (f16: half)",
                    shapes[i].name, 2.0 * (double)full / (1 << 20), 2.0 * (double)win / (1 << 20));
    }
}

// Gemma 3's tokenizer on make_pretok.py's 10,000 random strings (gemma3-ids.txt, from
// `tokenizers` with tokenizer.json): the Hugging Face road's and the GGUF road's ids equal the
// library's, id for id (no dummy prefix, merges across spaces, byte fallback).
static int load_gemma_kind(void *ctx, const char *line) {
    Tokenizer *t = ctx;
    char name[32];
    int vocab;
    cr_assert(sscanf(line, "kind %31s vocab %d", name, &vocab) == 2, "%s", line);
    if (t->vocab_size) tokenizer_free(t);
    if (!strcmp(name, "gemma3")) {
        cr_assert_eq(hf_tokenizer(t, fixture("tiny-gemma3"), vocab, 2, 1, NULL), 0);
    } else {
        Model m;
        cr_assert_eq(model_open(&m, export_fixture("tiny-gemma3.gguf", "f32", "gemma-ids.slm"), 0),
                     MODEL_OK);
        size_t n = tokenizer_section_bytes(&m.tokenizer, 2);
        uint8_t *sec = malloc(n);
        tokenizer_write_section(&m.tokenizer, 2, sec);
        cr_assert_eq(tokenizer_parse(t, sec, n, 2, vocab, 2, 1, "gguf"), TOK_OK);
        free(sec);
        model_close(&m);
    }
    cr_assert_eq(t->kind, TOK_SPM);
    cr_assert_eq(t->flags, TOK_FLAG_PREFIX_NEVER, "%s: no dummy prefix", name);
    return 0;
}

static size_t encode_gemma_ids(void *ctx, const char *text, size_t n, uint32_t *out, size_t cap) {
    static int ids[4096];
    size_t m;
    cr_assert_eq(tokenizer_encode(ctx, text, n, 0, 0, ids, 4096, &m), TOK_OK);
    cr_assert_leq(m, cap);
    for (size_t i = 0; i < m; i++) out[i] = (uint32_t)ids[i];
    return m;
}

Test(hf, gemma3_tokenizer_matches_tokenizers_on_10000_strings) {
    Tokenizer t = {0};
    cr_assert_eq(check_corpus_fixture("tests/fixtures/gemma3-ids.txt", load_gemma_kind,
                                      encode_gemma_ids, &t), 2);
    tokenizer_free(&t);
}

// Writes dir/config.json as tiny-gemma3's with the first `from` replaced by `to`.
static void gemma_config_with(const char *dir, const char *from, const char *to) {
    size_t n;
    char *cfg = read_all(fixture("tiny-gemma3/config.json"), &n), *at = strstr(cfg, from);
    cr_assert(at, "no %s in the config", from);
    FILE *f = fopen(path_in(dir, "config.json"), "w");
    fwrite(cfg, 1, (size_t)(at - cfg), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
    free(cfg);
}

// What a Gemma 3 reader cannot take, each refused with one line; a special token past the
// embedding (Gemma 3 1B's <image_soft_token>, id 262144 of 262144 rows) is left out, noted.
Test(hf, gemma3_inputs_refused_or_noted) {
    char *d = (char *)copy_fixture("tiny-gemma3", "gemma-bad");
    gemma_config_with(d, "\"sliding_attention\",\n    \"sliding_attention\",",
                      "\"full_attention\",\n    \"sliding_attention\",");
    expect_refused(d, "do not repeat a sliding-window pattern");
    gemma_config_with(d, "\"rope_type\": \"default\"", "\"rope_type\": \"linear\", \"factor\": 2.0");
    expect_refused(d, "sliding_attention has rope_type linear");
    gemma_config_with(d, "\"final_logit_softcapping\": null", "\"final_logit_softcapping\": 30.0");
    expect_refused(d, "final_logit_softcapping is set");
    gemma_config_with(d, "\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"silu\"");
    expect_refused(d, "gelu_pytorch_tanh (GeGLU) for Gemma");
    gemma_config_with(d, "Gemma3ForCausalLM", "Gemma2ForCausalLM");
    expect_refused(d, "architectures \"Gemma2ForCausalLM\"");
    gemma_config_with(d, "\"layer_types\"", "\"layer_typos\"");  // none: sliding_window_pattern 6
    char *o, *e;
    const char *out = tmp_file("gemma-ok.slm");
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, out), 0, "%s", e);
    free(o), free(e);
    // a special added token past the embedding's rows: a note, not an error
    size_t n;
    char *tj = read_all(path_in(d, "tokenizer.json"), &n), *at = strstr(tj, "\"added_tokens\": [");
    cr_assert(at);
    at += strlen("\"added_tokens\": [");
    FILE *f = fopen(path_in(d, "tokenizer.json"), "w");
    fwrite(tj, 1, (size_t)(at - tj), f);
    fputs("{\"id\": 600, \"content\": \"<image_soft_token>\", \"single_word\": false, \"lstrip\": "
          "false, \"rstrip\": false, \"normalized\": false, \"special\": true}, ", f);
    fputs(at, f);
    fclose(f);
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, out), 0, "%s", e);
    cr_assert(strstr(e, "special token 600 \"<image_soft_token>\" is past the model's vocab_size 600"),
              "%s", e);
    free(o), free(e), free(tj), free(d);
}

// Every layer windowed (Mistral v0.1's window of 16 on tiny-mistral, its context raised to
// 1024): each layer keeps 16 - 1 + 256 = 271 rows, and the logits through a prefill, token by
// token decoding past the rows, and run's shift equal full caches' bit for bit.
Test(hf, windowed_cache_every_layer_same_bits_as_full) {
    char *d = (char *)copy_fixture("tiny-mistral", "mistral-long");
    size_t n;
    char *cfg = read_all(path_in(d, "config.json"), &n), *at = strstr(cfg, "\"max_position_embeddings\": 256");
    cr_assert(at);
    at[strlen("\"max_position_embeddings\": ") + 0] = '9';  // 256 -> 956
    cr_assert_eq(write_all_file(path_in(d, "config.json"), cfg, n), 0);
    const char *m = tmp_file("mistral-long.slm");
    char *o, *e;
    cr_assert_eq(run_cmd(&o, &e, "%s %s %s", bin_path("export"), d, m), 0, "%s", e);
    free(o), free(e), free(cfg), free(d);
    Transformer ring, full;
    cr_assert_eq(transformer_build_full(&ring, m, NULL, ATTN_KV_F16, 0), MODEL_OK);
    cr_assert_eq(transformer_build_full(&full, m, NULL, ATTN_KV_F16, 1), MODEL_OK);
    cr_assert_eq(ring.state.kv.win_rows, 271);
    cr_assert_eq(ring.state.kv.kv_bytes, 2 * 271 * 2 * 16 * 2, "2 layers x 271 rows x 2 kv heads x 16 x f16");
    enum { N = 956, V = 800 };
    int *ids = malloc(N * sizeof(int));
    uint64_t seed = 9;
    for (int i = 0; i < N; i++) ids[i] = 3 + (int)(test_rand(&seed) % (V - 3));
    float *a = malloc((size_t)N * V * sizeof(float));
    transformer_forward_all(&full, ids, N, 0, a);
    for (int i = 0; i < N; i++) {
        const float *lg = transformer_forward(&ring, ids + i, 1, (size_t)i);
        cr_assert(!memcmp(lg, a + (size_t)i * V, V * sizeof(float)), "position %d differs", i);
    }
    size_t drop = (N - SHIFT_SINKS) / 2, p = transformer_shift(&full, N, SHIFT_SINKS, drop);
    cr_assert_eq(transformer_shift(&ring, N, SHIFT_SINKS, drop), p);
    for (int i = 0; i < 30; i++, p++) {
        memcpy(a, transformer_forward(&full, ids + i, 1, p), V * sizeof(float));
        cr_assert(!memcmp(a, transformer_forward(&ring, ids + i, 1, p), V * sizeof(float)),
                  "after the shift, position %zu differs", p);
    }
    free(ids), free(a);
    transformer_free(&ring), transformer_free(&full);
}

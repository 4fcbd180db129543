// tests/test_nfc.c: the NFC normalizer (tokenizer/unicode.c's unicode_nfc) and byte-level BPE
// with tokenizer.json's "NFC" normalizer (TOK_FLAG_NFC), against the `tokenizers` library.
//
// tests/fixtures/make_nfc.py wrote what the library gives (its NFC uses Unicode 9.0.0's data,
// as unicode_data.h's NFC tables do):
//   nfc.txt          hashes of the NFC of every scalar value alone and among marks, of every
//                    two-part canonical mapping's parts, of every mark against every class
//                    value, of Hangul jamo and syllables, and of long runs of marks; the
//                    strings are built here by the same rules (the script's docstring)
//   nfc-ids.txt      the NFC and the ids of bpe-qwen2-nfc for the 10,000 random strings of
//                    pretok.txt (check_corpus_fixture)
//   bpe-qwen2-nfc/   bpe-qwen2's tokenizer.json with Qwen2's normalizer, and texts.txt: texts
//                    chosen not to be NFC (special tokens next to marks too) with their ids
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "convert/hf.h"
#include "tokenizer.h"
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

// Appends the UTF-8 of code point c at out[*n].
static void put_utf8(char *out, size_t *n, uint32_t c) {
    if (c < 0x80) out[(*n)++] = (char)c;
    else if (c < 0x800) out[(*n)++] = (char)(0xC0 | c >> 6), out[(*n)++] = (char)(0x80 | (c & 63));
    else if (c < 0x10000)
        out[(*n)++] = (char)(0xE0 | c >> 12), out[(*n)++] = (char)(0x80 | (c >> 6 & 63)),
        out[(*n)++] = (char)(0x80 | (c & 63));
    else
        out[(*n)++] = (char)(0xF0 | c >> 18), out[(*n)++] = (char)(0x80 | (c >> 12 & 63)),
        out[(*n)++] = (char)(0x80 | (c >> 6 & 63)), out[(*n)++] = (char)(0x80 | (c & 63));
}

// unicode_nfc of n bytes; the result (caller frees) and its length.
static char *nfc(const char *s, size_t n, size_t *out_n) {
    char *out;
    cr_assert_eq(unicode_nfc(s, n, &out, out_n), 0, "out of memory");
    cr_assert_not_null(out);
    cr_assert_eq(out[*out_n], '\0', "NUL-terminated");
    return out;
}

// ----------------------------------------------------------------------------
// a reader's guide: a few cases by hand (the fixtures below are the reference)

Test(nfc, examples) {
    static const struct {
        const char *in, *out, *why;
    } cases[] = {
        {"e\xcc\x81", "\xc3\xa9", "e + U+0301 composes to U+00E9"},
        {"\xc3\xa9", "\xc3\xa9", "already NFC"},
        {"\xe2\x84\xaa", "K", "Kelvin sign: a singleton, K"},
        {"\xe2\x84\xab", "\xc3\x85", "Angstrom sign: a singleton, U+00C5"},
        {"a\xcc\x82\xcc\xa3", "\xe1\xba\xad", "U+0323 (220) goes before U+0302 (230): U+1EAD"},
        {"x\xcc\x81", "x\xcc\x81", "no composite"},
        {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc", "U+0958 is excluded from composition"},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81", "Hangul L V T: U+AC01"},
        {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81", "Hangul LV + T"},
        {"\xcc\x81x", "\xcc\x81x", "a mark with no starter before it stays"},
        {">\xcc\xb8", "\xe2\x89\xaf", "> + U+0338: U+226F"},
        // U+07FD (class 220 since Unicode 11) is a starter to Unicode 9.0's data: it blocks
        // U+0301 from the a, and U+0301 U+0316 reorder after it
        {"a\xdf\xbd\xcc\x81\xcc\x96", "a\xdf\xbd\xcc\x96\xcc\x81", "Unicode 9.0's classes"},
        {"", "", "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *got = nfc(cases[i].in, strlen(cases[i].in), &n);
        cr_assert(n == strlen(cases[i].out) && memcmp(got, cases[i].out, n) == 0,
                  "%s: got \"%.*s\"", cases[i].why, (int)n, got);
        free(got);
    }
}

// ----------------------------------------------------------------------------
// nfc.txt: every character, every mapping, every class, Hangul, long runs

typedef struct {
    uint32_t *v;
    size_t n;
} List;

// Reads "<name> <count> <hex> <hex> ..." (pairs: "<hex>:<hex>", two values each).
static List read_list(const char *fx, const char *name, int two) {
    char key[32];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(fx, key);
    cr_assert(p, "nfc.txt: no %s line", name);
    p += strlen(key);
    char *end;
    size_t count = strtoul(p, &end, 10);
    List l = {malloc((two ? 2 : 1) * count * sizeof(uint32_t)), 0};
    for (p = end; l.n < (two ? 2 : 1) * count; p = end + (two && *end == ':')) {
        l.v[l.n++] = (uint32_t)strtoul(p, &end, 16);
        cr_assert(end != p, "nfc.txt: %s cut short", name);
    }
    cr_assert_eq(*p, '\n', "nfc.txt: %s has more than %zu", name, count);
    return l;
}

typedef struct {
    List marks, reps, pairs;
    uint64_t rng;  // the long group's generator
} Rules;

#define MAX_STRING 512

// String i of a group, as make_nfc.py's groups() builds it: its code points; returns how many.
static size_t group_string(Rules *r, const char *group, size_t i, uint32_t *s) {
    if (!strcmp(group, "alone") || !strcmp(group, "around")) {
        uint32_t c = (uint32_t)i < 0xD800 ? (uint32_t)i : (uint32_t)i + 0x800;  // no surrogates
        if (!strcmp(group, "alone")) return s[0] = c, 1;
        uint32_t a[6] = {0x345, c, 0x334, c, 0x301, 0x323};
        memcpy(s, a, sizeof a);
        return 6;
    }
    if (!strcmp(group, "pairs")) {
        const uint32_t *p = r->pairs.v + 2 * (i / 2);
        if (i % 2 == 0) return s[0] = p[0], s[1] = p[1], 2;
        return s[0] = p[0], s[1] = 0x5B0, s[2] = p[1], 3;
    }
    if (!strcmp(group, "marks")) {
        size_t k = i / 2;
        uint32_t m = r->marks.v[k / r->reps.n], rep = r->reps.v[k % r->reps.n];
        return s[0] = i % 2 ? rep : m, s[1] = i % 2 ? m : rep, 2;
    }
    if (!strcmp(group, "hangul")) {
        size_t jamo = 21 * 23 * 30;  // L 10FF..1113, V 1160..1176, T none or 11A7..11C3
        if (i < jamo) {
            size_t t = i % 30, lv = i / 30;
            s[0] = 0x10FF + (uint32_t)(lv / 23), s[1] = 0x1160 + (uint32_t)(lv % 23);
            return t == 0 ? 2 : (s[2] = 0x11A7 + (uint32_t)t - 1, 3);
        }
        static const uint32_t after[5] = {0x11A7, 0x11A8, 0x11C2, 0x11C3, 0x1161};
        return s[0] = 0xAC00 + (uint32_t)((i - jamo) / 5), s[1] = after[(i - jamo) % 5], 2;
    }
    cr_assert_str_eq(group, "long", "nfc.txt: unknown group %s", group);
    static const uint32_t starters[3] = {0x61, 0x1100, 0x915};
    s[0] = starters[test_rand(&r->rng) % 3];
    size_t k = 1 + test_rand(&r->rng) % 400;
    for (size_t j = 1; j <= k; j++) s[j] = r->marks.v[test_rand(&r->rng) % r->marks.n];
    return k + 1;
}

static uint64_t fnv(uint64_t h, uint32_t v) {
    for (int b = 0; b < 4; b++) h = (h ^ (v >> 8 * b & 255)) * 0x100000001B3ull;
    return h;
}

Test(nfc, matches_tokenizers_on_every_character_mapping_and_class) {
    char *fx = read_all("tests/fixtures/nfc.txt", NULL);
    cr_assert(fx, "tests/fixtures/nfc.txt not readable");
    Rules r = {read_list(fx, "marks", 0), read_list(fx, "reps", 0), read_list(fx, "pairs", 1),
               0x4E4643};
    cr_assert_eq(r.pairs.n % 2, 0);
    r.pairs.n /= 2;
    static const char *const want_groups[] = {"alone", "around", "pairs", "marks", "hangul",
                                              "long"};
    int groups = 0;
    uint32_t s[MAX_STRING];
    char text[4 * MAX_STRING];
    for (char *g = strstr(fx, "\ngroup "); g; g = strstr(g + 1, "\ngroup "), groups++) {
        char name[32];
        size_t count, block;
        cr_assert(sscanf(g, "\ngroup %31s strings %zu block %zu", name, &count, &block) == 3);
        cr_assert(groups < 6 && !strcmp(name, want_groups[groups]), "group %s", name);
        const char *hashes = strstr(g, "\nhashes ") + 8;
        uint64_t h = 0xCBF29CE484222325ull;
        for (size_t i = 0; i < count; i++) {
            size_t len = group_string(&r, name, i, s), n = 0, out_n;
            cr_assert_leq(len, MAX_STRING);
            for (size_t j = 0; j < len; j++) put_utf8(text, &n, s[j]);
            char *out = nfc(text, n, &out_n);
            for (size_t j = 0; j < out_n;) {
                uint32_t cp;
                j += utf8_decode(out + j, out_n - j, &cp);
                cr_assert_neq(cp, UNI_INVALID, "%s %zu: the NFC of valid text is valid", name, i);
                h = fnv(h, cp);
            }
            free(out);
            h = fnv(h, 0xFFFFFFFFu);
            if ((i + 1) % block == 0 || i + 1 == count) {
                unsigned long long want;
                cr_assert(sscanf(hashes, "%llx", &want) == 1, "%s: too few hashes", name);
                cr_assert_eq(h, (uint64_t)want, "group %s, strings %zu..%zu differ from the "
                             "tokenizers library's NFC", name, i / block * block, i);
                hashes += 17;
                h = 0xCBF29CE484222325ull;
            }
        }
    }
    cr_assert_eq(groups, 6);
    cr_assert_gt(r.marks.n, 900);
    cr_assert_gt(r.pairs.n, 1000);
    free(r.marks.v), free(r.reps.v), free(r.pairs.v), free(fx);
}

// ----------------------------------------------------------------------------
// nfc-ids.txt: the 10,000 random strings, normalized and tokenized

typedef struct {
    int nfc_only;  // kind nfc: the values are the NFC's code points
    Tokenizer tok;
} Corpus;

static void open_nfc_tokenizer(Tokenizer *t) {
    cr_assert_eq(hf_tokenizer(t, "tests/fixtures/bpe-qwen2-nfc", 800, 1, 2, NULL), 0,
                 "bpe-qwen2-nfc/tokenizer.json");
    cr_assert_eq(t->kind, TOK_BPE);
    cr_assert_eq(t->pretok, PRETOK_QWEN2);
    cr_assert_eq(t->flags, TOK_FLAG_NFC, "the NFC normalizer sets TOK_FLAG_NFC: %u", t->flags);
}

static int corpus_setup(void *ctx, const char *line) {
    Corpus *c = ctx;
    c->nfc_only = !strcmp(line, "kind nfc");
    if (!c->nfc_only) {
        cr_assert_str_eq(line, "kind qwen2-nfc vocab 800");
        open_nfc_tokenizer(&c->tok);
    }
    return 0;
}

static size_t corpus_values(void *ctx, const char *text, size_t n, uint32_t *out, size_t cap) {
    Corpus *c = ctx;
    size_t m = 0;
    if (c->nfc_only) {
        size_t out_n;
        char *s = nfc(text, n, &out_n);
        for (size_t j = 0; j < out_n; m++) {
            cr_assert_lt(m, cap);
            j += utf8_decode(s + j, out_n - j, &out[m]);
        }
        free(s);
        return m;
    }
    static int ids[4096];
    cr_assert_eq(tokenizer_encode(&c->tok, text, n, 0, 0, ids, 4096, &m), TOK_OK);
    cr_assert_leq(m, cap);
    for (size_t i = 0; i < m; i++) out[i] = (uint32_t)ids[i];
    return m;
}

Test(nfc, random_strings_match_tokenizers) {
    Corpus c = {0};
    cr_assert_eq(check_corpus_fixture("tests/fixtures/nfc-ids.txt", corpus_setup, corpus_values,
                                      &c), 2);
    tokenizer_free(&c.tok);
}

// ----------------------------------------------------------------------------
// bpe-qwen2-nfc/texts.txt: texts that are not NFC, special tokens next to marks

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

Test(nfc, texts_tokenize_as_tokenizers) {
    Tokenizer t;
    open_nfc_tokenizer(&t);
    char *txt = read_all("tests/fixtures/bpe-qwen2-nfc/texts.txt", NULL);
    cr_assert_not_null(txt);
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *tab = strchr(line, '\t'), text[1024];
        cr_assert_not_null(tab);
        size_t len = (size_t)(tab - line) / 2, ng;
        cr_assert(len < sizeof text);
        for (size_t i = 0; i < len; i++)
            text[i] = (char)(hexval(line[2 * i]) * 16 + hexval(line[2 * i + 1]));
        int got[1024], want[1024], nw = 0;
        for (char *p = tab + 1, *end; *p; p = end) {
            want[nw++] = (int)strtol(p, &end, 10);
            cr_assert(end != p);
        }
        cr_assert_eq(tokenizer_encode(&t, text, len, 0, 0, got, 1024, &ng), TOK_OK);
        int same = (int)ng == nw;
        for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
        char g[4096] = "";
        for (size_t i = 0; i < ng && strlen(g) < sizeof g - 16; i++)
            snprintf(g + strlen(g), 16, " %d", got[i]);
        cr_assert(same, "text \"%.*s\": want %s, got%s", (int)len, text, tab + 1, g);
        lines++;
    }
    cr_assert_geq(lines, 20);
    free(txt);
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// invalid UTF-8, lengths, the flag through the file format and export

// Invalid bytes are kept as they are, each a starter that composes with nothing (unicode.h).
Test(nfc, invalid_utf8_is_kept_and_blocks) {
    static const struct {
        const char *in, *out, *why;
    } cases[] = {
        {"e\xff\xcc\x81", "e\xff\xcc\x81", "a mark does not compose across an invalid byte"},
        {"e\xcc\x81\xff", "\xc3\xa9\xff", "before it, text composes"},
        {"\xcc", "\xcc", "a truncated sequence alone"},
        {"e\xcc", "e\xcc", "a truncated sequence after a letter"},
        {"a\xcc\x81\x80\xcc\x81\xcc\x96", "\xc3\xa1\x80\xcc\x96\xcc\x81",
         "marks reorder after a lone continuation byte, not across it"},
        {"\xed\xa0\x80\xcc\x81", "\xed\xa0\x80\xcc\x81", "a surrogate: three invalid bytes"},
        {"\xc0\xaf" "e\xcc\x81", "\xc0\xaf\xc3\xa9", "an overlong form, then NFC text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n, want = strlen(cases[i].out);
        char *got = nfc(cases[i].in, strlen(cases[i].in), &n);
        cr_assert(n == want && memcmp(got, cases[i].out, n) == 0, "%s", cases[i].why);
        free(got);
    }
    // any bytes: NFC is idempotent, keeps every invalid byte, and equals the NFC of the valid
    // runs between invalid bytes, joined by them; the tokenizer encodes the NFC losslessly
    Tokenizer t;
    open_nfc_tokenizer(&t);
    uint64_t rng = 7;
    static const char pick[] = "ae>\xcc\x81\xcc\x96\xcc\xb8\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"
                               "\xea\xb0\x80\xe0\xa5\x98\xe2\x84\xab\xff\x80\xc3";
    for (int k = 0; k < 20000; k++) {
        char s[48];
        size_t n = 1 + test_rand(&rng) % sizeof s, a, b;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = test_rand(&rng);
            s[i] = r & 1 ? pick[(r >> 8) % (sizeof pick - 1)] : (char)(r >> 16);
        }
        char *once = nfc(s, n, &a), *twice = nfc(once, a, &b);
        cr_assert(a == b && memcmp(once, twice, a) == 0, "idempotent");
        free(twice);
        cr_assert_leq(a, 3 * n);
        char joined[3 * sizeof s];
        size_t used = 0;
        for (size_t i = 0; i < n;) {  // the valid run from i, then the invalid byte after it
            size_t j = i, m, part_n;
            uint32_t cp;
            while (j < n && (m = utf8_decode(s + j, n - j, &cp), cp != UNI_INVALID)) j += m;
            char *part = nfc(s + i, j - i, &part_n);
            memcpy(joined + used, part, part_n);
            used += part_n;
            free(part);
            if (j < n) joined[used++] = s[j];
            i = j + 1;
        }
        cr_assert(used == a && memcmp(joined, once, a) == 0, "invalid bytes split the text");
        int ids[3 * sizeof s + 3];
        size_t n_ids, back = 0;
        cr_assert_eq(tokenizer_encode(&t, s, n, 0, 0, ids, tokenizer_max_tokens(&t, n), &n_ids),
                     TOK_OK);
        for (size_t i = 0; i < n_ids; i++) {
            size_t len;
            const char *p = tokenizer_decode(&t, i ? ids[i - 1] : -1, ids[i], &len);
            cr_assert(back + len <= a && memcmp(once + back, p, len) == 0, "decodes to the NFC");
            back += len;
        }
        cr_assert_eq(back, a);
        free(once);
    }
    tokenizer_free(&t);
}

// NFC may lengthen text up to three times: U+1D160 (4 bytes) is three characters of 4 bytes.
// tokenizer_max_tokens allows for it; len + 3 is too few.
Test(nfc, max_tokens_allows_for_longer_text) {
    Tokenizer t;
    open_nfc_tokenizer(&t);
    const char *text = "\xf0\x9d\x85\xa0\xf0\x9d\x85\xa0";  // U+1D160 twice
    size_t len = strlen(text), n, out_n;
    char *norm = nfc(text, len, &out_n);
    cr_assert_eq(out_n, 3 * len);
    free(norm);
    cr_assert_eq(tokenizer_max_tokens(&t, len), 3 * len + 3);
    int ids[64];
    cr_assert_eq(tokenizer_encode(&t, text, len, 1, 1, ids, len + 3, &n), TOK_ERR_SPACE);
    cr_assert_eq(tokenizer_encode(&t, text, len, 1, 1, ids, 3 * len + 3, &n), TOK_OK);
    cr_assert_gt(n, len + 3, "more tokens than bytes of text: %zu", n);
    Tokenizer plain;
    cr_assert_eq(hf_tokenizer(&plain, "tests/fixtures/bpe-qwen2", 800, 1, 2, NULL), 0);
    cr_assert_eq(plain.flags, 0);
    cr_assert_eq(tokenizer_max_tokens(&plain, len), len + 3);
    tokenizer_free(&plain);
    tokenizer_free(&t);
}

// The flag survives the tokenizer section; sentencepiece cannot carry it.
Test(nfc, flag_round_trips_through_the_section) {
    Tokenizer t, back;
    open_nfc_tokenizer(&t);
    size_t n = tokenizer_section_bytes(&t, 2);
    uint8_t *buf = malloc(n);
    tokenizer_write_section(&t, 2, buf);
    cr_assert_eq(tokenizer_parse(&back, buf, n, 2, 800, 1, 2, "nfc.slm"), TOK_OK);
    cr_assert_eq(back.flags, TOK_FLAG_NFC);
    const char *text = "Cafe\xcc\x81 \xe2\x84\xaa";
    int a[64], b[64];
    size_t na, nb;
    cr_assert_eq(tokenizer_encode(&t, text, strlen(text), 0, 0, a, 64, &na), TOK_OK);
    cr_assert_eq(tokenizer_encode(&back, text, strlen(text), 0, 0, b, 64, &nb), TOK_OK);
    cr_assert(na == nb && memcmp(a, b, na * sizeof *a) == 0);
    tokenizer_free(&back);
    tokenizer_free(&t);
    free(buf);
    // a sentencepiece section with the NFC bit is refused
    Tokenizer spm;
    cr_assert_eq(hf_tokenizer(&spm, "tests/fixtures/spm-legacy", 800, 1, 2, NULL), 0);
    spm.flags = TOK_FLAG_NFC;
    n = tokenizer_section_bytes(&spm, 2);
    buf = malloc(n);
    tokenizer_write_section(&spm, 2, buf);
    cr_assert_eq(tokenizer_parse(&back, buf, n, 2, 800, 1, 2, "spm.slm"), TOK_ERR_FORMAT);
    free(buf);
    tokenizer_free(&spm);
}

// The normalizer as tokenizer.json spells it: NFC alone or in a Sequence of NFC; any other
// refused with one line.
static int load_with_normalizer(const char *name, const char *normalizer, Tokenizer *t) {
    char *json = read_all("tests/fixtures/bpe-qwen2/tokenizer.json", NULL);
    cr_assert_not_null(json);
    const char *old = "\"normalizer\": null";
    char *at = strstr(json, old);
    cr_assert_not_null(at);
    const char *dir = tmp_file(name);
    char path[1024], *cmd_out, *cmd_err;
    cr_assert_eq(run_cmd(&cmd_out, &cmd_err, "mkdir -p %s", dir), 0);
    free(cmd_out), free(cmd_err);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%.*s\"normalizer\": %s%s", (int)(at - json), json, normalizer, at + strlen(old));
    fclose(f);
    free(json);
    char *d = strdup(dir);
    int rc = hf_tokenizer(t, d, 800, 1, 2, NULL);
    free(d);
    return rc;
}

Test(nfc, normalizers_read_from_tokenizer_json) {
    Tokenizer t;
    cr_assert_eq(load_with_normalizer("seq", "{\"type\": \"Sequence\", \"normalizers\": "
                                      "[{\"type\": \"NFC\"}]}", &t), 0);
    cr_assert_eq(t.flags, TOK_FLAG_NFC);
    tokenizer_free(&t);
    cr_assert_eq(load_with_normalizer("empty", "{\"type\": \"Sequence\", \"normalizers\": []}",
                                      &t), 0);
    cr_assert_eq(t.flags, 0);
    tokenizer_free(&t);
    cr_assert_eq(load_with_normalizer("nfkc", "{\"type\": \"NFKC\"}", &t), -1);
    cr_assert_eq(load_with_normalizer("lower", "{\"type\": \"Sequence\", \"normalizers\": "
                                      "[{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}", &t), -1);
}

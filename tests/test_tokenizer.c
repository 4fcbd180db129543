// tests/test_tokenizer.c: encoding against llama2.c's vectors and its own algorithm,
// decoding, round trips of arbitrary UTF-8 and bytes, and the embedded section format.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "helpers.h"

static Tokenizer llama;  // the Llama 2 vocabulary, 32000 tokens

static void load_llama(void) {
    cr_assert_eq(tokenizer_read_bin(&llama, model_file("tokenizer.bin"), 32000, 1, 2), TOK_OK);
}

static void free_llama(void) {
    tokenizer_free(&llama);
}

static size_t encode(const Tokenizer *t, const char *s, size_t len, int *ids) {
    size_t n;
    cr_assert_eq(tokenizer_encode(t, s, len, 1, 0, ids, len + 3, &n), TOK_OK);
    return n;
}

// llama2.c's encode(), transcribed: a linear scan for the best pair, per merge.
static size_t encode_reference(const Tokenizer *t, const char *text, size_t len, int *ids) {
    size_t n = 0;
    ids[n++] = t->bos_id;
    size_t first = n;
    char buf[64];
    if (len > 0) ids[n++] = tokenizer_lookup(t, " ", 1);
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && j - i < 4 && ((unsigned char)text[j] & 0xC0) == 0x80) j++;
        int id = tokenizer_lookup(t, text + i, j - i);
        if (id >= 0) ids[n++] = id;
        else
            for (size_t b = i; b < j; b++) ids[n++] = (unsigned char)text[b] + 3;
        i = j;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = first; i + 1 < n; i++) {
            size_t la = t->lens[ids[i]], lb = t->lens[ids[i + 1]];
            memcpy(buf, t->pieces[ids[i]], la);
            memcpy(buf + la, t->pieces[ids[i + 1]], lb);
            int id = tokenizer_lookup(t, buf, la + lb);
            if (id != -1 && t->scores[id] > best) best = t->scores[id], best_id = id, best_i = i;
        }
        if (best_id < 0) break;
        ids[best_i] = best_id;
        memmove(ids + best_i + 1, ids + best_i + 2, (n - best_i - 2) * sizeof(int));
        n--;
    }
    return n;
}

// Unescapes a C string literal body (the vectors file): \n \t \" \\ and \xHH.
static size_t unescape(const char *s, char *out) {
    size_t n = 0;
    for (; *s && *s != '"'; s++) {
        if (*s != '\\') {
            out[n++] = *s;
            continue;
        }
        s++;
        if (*s == 'n') out[n++] = '\n';
        else if (*s == 't') out[n++] = '\t';
        else if (*s == 'x') {
            unsigned v;
            sscanf(s + 1, "%2x", &v);
            out[n++] = (char)v;
            s += 2;
        } else out[n++] = *s;
    }
    out[n] = '\0';
    return n;
}

Test(tokenizer, llama2c_vectors, .init = load_llama, .fini = free_llama) {
    size_t size;
    char *file = read_all(model_file("expected/tokenizer_encode_vectors.txt"), &size);
    cr_assert(file);
    int cases = 0;
    char text[4096];
    size_t text_len = 0;
    for (char *line = strtok(file, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "TEXT \"", 6) == 0) {
            text_len = unescape(line + 6, text);
        } else if (strncmp(line, "IDS ", 4) == 0) {
            int want[1024], got[4096];
            size_t nw = 0;
            for (char *p = line + 4, *end; (want[nw] = (int)strtol(p, &end, 10)), end != p; p = end)
                nw++;
            size_t ng = encode(&llama, text, text_len, got);
            cr_assert_eq(ng, nw, "\"%s\": %zu tokens, want %zu", text, ng, nw);
            for (size_t i = 0; i < nw; i++)
                cr_assert_eq(got[i], want[i], "\"%s\": token %zu is %d, want %d", text, i, got[i],
                             want[i]);
            cases++;
        }
    }
    cr_assert_eq(cases, 5, "the vectors file holds five cases");
    free(file);
}

// Random text: ASCII words, accented letters, CJK, emoji, and (if raw) invalid bytes.
static size_t random_text(uint64_t *s, char *out, size_t max, int raw) {
    static const char *const pieces[] = {"the", " ", "cat", "é", "ß", "日本", "語", "😀", "\n",
                                         "  ", "ing", "Ω", "\t", "!", "42", "\xF0\x9F\xA6\x8A"};
    size_t n = 0;
    while (n + 8 < max && test_rand(s) % 16 != 0) {
        if (raw && test_rand(s) % 4 == 0) {
            out[n++] = (char)(test_rand(s) % 255 + 1);  // any byte but NUL
        } else {
            const char *p = pieces[test_rand(s) % (sizeof pieces / sizeof pieces[0])];
            memcpy(out + n, p, strlen(p));
            n += strlen(p);
        }
    }
    out[n] = '\0';
    return n;
}

static void check_round_trips(const Tokenizer *t, int raw) {
    uint64_t seed = 2024 + (uint64_t)raw;
    char text[512], back[2048];
    int ids[600], ref[600];
    for (int iter = 0; iter < 400; iter++) {
        size_t len = random_text(&seed, text, 200, raw);
        size_t n = encode(t, text, len, ids);
        size_t nr = encode_reference(t, text, len, ref);
        cr_assert_eq(n, nr, "heap and linear-scan encoders differ in length on iteration %d", iter);
        cr_assert(memcmp(ids, ref, n * sizeof(int)) == 0, "heap and linear-scan encoders differ");
        size_t m = 0;
        for (size_t i = 1; i < n; i++) {
            size_t pl;
            const char *p = tokenizer_decode(t, ids[i - 1], ids[i], &pl);
            memcpy(back + m, p, pl);
            m += pl;
        }
        cr_assert_eq(m, len, "round trip of %zu bytes gave %zu", len, m);
        cr_assert(memcmp(back, text, len) == 0, "round trip changed the text");
    }
}

Test(tokenizer, utf8_round_trip_llama, .init = load_llama, .fini = free_llama) {
    check_round_trips(&llama, 0);
}

Test(tokenizer, raw_bytes_round_trip_llama, .init = load_llama, .fini = free_llama) {
    check_round_trips(&llama, 1);
}

Test(tokenizer, round_trip_tok512) {
    Tokenizer t;
    cr_assert_eq(tokenizer_read_bin(&t, model_file("tok512.bin"), 512, 1, 2), TOK_OK);
    check_round_trips(&t, 0);
    check_round_trips(&t, 1);
    tokenizer_free(&t);
}

Test(tokenizer, empty_text_is_bos_only, .init = load_llama, .fini = free_llama) {
    int ids[3];
    size_t n;
    cr_assert_eq(tokenizer_encode(&llama, "", 0, 1, 1, ids, 3, &n), TOK_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 2);
}

Test(tokenizer, byte_fallback_and_decode, .init = load_llama, .fini = free_llama) {
    // U+10FFFF is in no vocabulary: four byte tokens, <0xF4> = id 0xF4 + 3
    int ids[16];
    size_t n = encode(&llama, "\xF4\x8F\xBF\xBF", 4, ids);
    cr_assert_eq(n, 6, "BOS, dummy prefix, four bytes");
    cr_assert_eq(ids[2], 0xF4 + 3);
    size_t len;
    const char *p = tokenizer_decode(&llama, ids[1], ids[2], &len);
    cr_assert_eq(len, 1);
    cr_assert_eq((unsigned char)p[0], 0xF4);
    // the space after BOS is stripped; elsewhere it stays
    int the = tokenizer_lookup(&llama, " the", 4);
    cr_assert(the >= 0);
    p = tokenizer_decode(&llama, 1, the, &len);
    cr_assert(len == 3 && memcmp(p, "the", 3) == 0);
    p = tokenizer_decode(&llama, the, the, &len);
    cr_assert(len == 4 && memcmp(p, " the", 4) == 0);
}

Test(tokenizer, buffer_too_small_is_an_error, .init = load_llama, .fini = free_llama) {
    int ids[4];
    size_t n;
    cr_assert_eq(tokenizer_encode(&llama, "hello", 5, 1, 0, ids, 4, &n), TOK_ERR_SPACE);
}

Test(tokenizer, section_round_trip, .init = load_llama, .fini = free_llama) {
    size_t n = tokenizer_section_bytes(&llama, 1);
    uint8_t *buf = malloc(n);
    tokenizer_write_section(&llama, 1, buf);
    Tokenizer t;
    cr_assert_eq(tokenizer_parse(&t, buf, n, 1, 32000, 1, 2, "section"), TOK_OK);
    for (int i = 0; i < 32000; i++) {
        cr_assert_eq(t.lens[i], llama.lens[i]);
        cr_assert(memcmp(t.pieces[i], llama.pieces[i], t.lens[i]) == 0);
        cr_assert_eq(t.scores[i], llama.scores[i]);
        cr_assert_eq(t.types[i], llama.types[i]);
    }
    cr_assert_eq(t.types[1], TOK_CONTROL);
    cr_assert_eq(t.types[3], TOK_BYTE);
    cr_assert_eq(t.types[0], TOK_UNKNOWN);
    tokenizer_free(&t);
    // a cut section, or one with a byte too many, is refused
    cr_assert_eq(tokenizer_parse(&t, buf, n - 1, 1, 32000, 1, 2, "section"), TOK_ERR_FORMAT);
    cr_assert_eq(tokenizer_parse(&t, buf, n, 1, 31999, 1, 2, "section"), TOK_ERR_VOCAB);
    free(buf);
    // in format 2 (a version-2 file, e.g. one with stop ids) it is the same tokenizer
    n = tokenizer_section_bytes(&llama, 2);
    buf = malloc(n);
    tokenizer_write_section(&llama, 2, buf);
    cr_assert_eq(tokenizer_parse(&t, buf, n, 2, 32000, 1, 2, "section"), TOK_OK);
    cr_assert_eq(t.kind, TOK_SPM);
    int a[64], b[64];
    size_t na, nb;
    const char *text = "Hello world, \xc3\xa9t\xc3\xa9 123";
    cr_assert_eq(tokenizer_encode(&t, text, strlen(text), 1, 0, a, 64, &na), TOK_OK);
    cr_assert_eq(tokenizer_encode(&llama, text, strlen(text), 1, 0, b, 64, &nb), TOK_OK);
    cr_assert(na == nb && memcmp(a, b, na * sizeof(int)) == 0);
    tokenizer_free(&t);
    free(buf);
}

Test(tokenizer, bin_vocab_mismatch) {
    Tokenizer t;
    cr_assert_eq(tokenizer_read_bin(&t, model_file("tok512.bin"), 32000, 1, 2), TOK_ERR_VOCAB);
    cr_assert_eq(tokenizer_read_bin(&t, model_file("tok512.bin"), 511, 1, 2), TOK_ERR_VOCAB);
    cr_assert_eq(tokenizer_read_bin(&t, "/nonexistent/tok.bin", 512, 1, 2), TOK_ERR_IO);
}

// tests/test_pretok.c: the byte-level BPE pre-tokenizers (tokenizer/pretok.c) against the
// `tokenizers` library, and the Unicode classes and UTF-8 decoding under them.
//
// tests/fixtures/pretok.txt holds what `tokenizers` made of 10,000 random strings (built by
// tests/fixtures/make_pretok.py from tests/fixtures/pretok-atoms.txt with the xorshift64*
// generator of helpers.c, which check_corpus_fixture runs too): a hash of the piece lengths per
// block of 500 strings, and the pieces of the first strings in full.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

// The piece lengths of text, as "2,1,3" (the fixture's form).
static void split_str(int kind, const char *text, size_t n, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n;) {
        size_t m = pretok_next(kind, text + i, n - i);
        cr_assert(m >= 1 && m <= n - i, "%s: piece of %zu bytes at %zu of %zu", pretok_name(kind),
                  m, i, n);
        used += (size_t)snprintf(out + used, cap - used, "%s%zu", i ? "," : "", m);
        cr_assert(used < cap);
        i += m;
    }
}

// check_corpus_fixture's callbacks: the kind from its line, the piece lengths of a text
static int kind_of(void *ctx, const char *line) {
    char name[32];
    if (sscanf(line, "kind %31s", name) != 1) return -1;
    return (*(int *)ctx = pretok_from_name(name)) < 0 ? -1 : 0;
}

static size_t piece_lengths(void *ctx, const char *text, size_t n, uint32_t *out, size_t cap) {
    int kind = *(int *)ctx;
    size_t m = 0;
    for (size_t i = 0; i < n; i += out[m++]) {
        cr_assert(m < cap);
        out[m] = (uint32_t)pretok_next(kind, text + i, n - i);
        cr_assert(out[m] >= 1 && out[m] <= n - i, "%s: a piece of %u bytes at %zu of %zu",
                  pretok_name(kind), out[m], i, n);
    }
    return m;
}

Test(pretok, matches_tokenizers_on_10000_strings) {
    int kind;
    int kinds = check_corpus_fixture("tests/fixtures/pretok.txt", kind_of, piece_lengths, &kind);
    cr_assert_eq(kinds, PRETOK_COUNT, "the fixture covers %d kinds", kinds);
}

// A few splits by hand, as a reader's guide to the regexes (the test above is the reference).
Test(pretok, examples) {
    static const struct {
        int kind;
        const char *text, *pieces;
    } cases[] = {
        {PRETOK_GPT2, "Hello world", "5,6"},                  // "Hello" " world"
        {PRETOK_GPT2, "I'll go  now", "1,3,3,1,4"},           // "I" "'ll" " go" " " " now"
        {PRETOK_GPT2, "x 123abc", "1,4,3"},                   // " 123": a space joins digits
        {PRETOK_LLAMA3, "I'LL see 12345", "1,3,4,1,3,2"},     // (?i) 'LL; digits by three
        {PRETOK_LLAMA3, "a\n\n  b", "1,2,1,2"},               // "\n\n" then " " " b"
        {PRETOK_LLAMA3, "!!\n\nok", "4,2"},                   // punctuation takes the newlines
        {PRETOK_LLAMA3, "\thello", "6"},                      // one non-letter joins the word
        {PRETOK_QWEN2, "x 2024", "1,1,1,1,1,1"},              // " " alone, then digit by digit
        {PRETOK_SMOLLM, "a 12b", "1,1,1,1,1"},                // "a" " " "1" "2" "b"
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split_str(cases[i].kind, cases[i].text, strlen(cases[i].text), got, sizeof got);
        cr_assert_str_eq(got, cases[i].pieces, "%s \"%s\": %s", pretok_name(cases[i].kind),
                         cases[i].text, got);
    }
    cr_assert_eq(pretok_from_name("llama-bpe"), PRETOK_LLAMA3);
    cr_assert_eq(pretok_from_name("deepseek-llm"), -1);
}

// Any bytes, valid UTF-8 or not: every piece is at least one byte and none runs past the end.
Test(pretok, pieces_cover_any_bytes) {
    uint64_t rng = 99;
    char text[64], got[1024];
    for (int t = 0; t < 20000; t++) {
        size_t n = 1 + test_rand(&rng) % sizeof text;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = test_rand(&rng);
            // mostly the bytes that matter: ASCII classes, lead and continuation bytes
            static const char pick[] = " \n\r\t'sSa1.\xc5\xbf\xe3\x80\x80\xf0\x9f\x98\x80\xff";
            text[i] = r & 1 ? pick[(r >> 8) % (sizeof pick - 1)] : (char)(r >> 16);
        }
        for (int k = 0; k < PRETOK_COUNT; k++) split_str(k, text, n, got, sizeof got);
    }
}

Test(unicode, classes) {
    cr_assert_str_eq(unicode_version(), "16.0.0");
    cr_assert_eq(unicode_class('a'), UNI_LETTER);
    cr_assert_eq(unicode_class(0x4E2D), UNI_LETTER);    // CJK
    cr_assert_eq(unicode_class(0x16100), UNI_LETTER);   // Gurung Khema, new in Unicode 16.0
    cr_assert_eq(unicode_class(0x10940), UNI_OTHER);    // Sidetic, only from Unicode 17.0
    cr_assert_eq(unicode_class('7'), UNI_NUMBER);
    cr_assert_eq(unicode_class(0xBD), UNI_NUMBER);      // ½ (No)
    cr_assert_eq(unicode_class(0x216B), UNI_NUMBER);    // Roman numeral twelve (Nl)
    cr_assert_eq(unicode_class(0x3000), UNI_SPACE);
    cr_assert_eq(unicode_class(0x85), UNI_SPACE);
    cr_assert_eq(unicode_class(0x200B), UNI_OTHER);     // zero width space is Cf, not \s
    cr_assert_eq(unicode_class(0x301), UNI_OTHER);      // a combining mark (Mn)
    cr_assert_eq(unicode_class(0x10FFFF), UNI_OTHER);
    cr_assert_eq(unicode_class(UNI_INVALID), UNI_OTHER);
}

Test(unicode, utf8_decode) {
    static const struct {
        const char *s;
        size_t n, len;
        uint32_t cp;
    } cases[] = {
        {"A", 1, 1, 'A'},
        {"\xc3\xa9", 2, 2, 0xE9},
        {"\xe4\xb8\xad", 3, 3, 0x4E2D},
        {"\xf0\x9f\x98\x80", 4, 4, 0x1F600},
        {"\xc3", 1, 1, UNI_INVALID},              // truncated
        {"\xe4\xb8", 2, 1, UNI_INVALID},          // truncated
        {"\x80", 1, 1, UNI_INVALID},              // a lone continuation byte
        {"\xc0\xaf", 2, 1, UNI_INVALID},          // overlong '/'
        {"\xed\xa0\x80", 3, 1, UNI_INVALID},      // a surrogate
        {"\xf4\x90\x80\x80", 4, 1, UNI_INVALID},  // above U+10FFFF
        {"\xc3(", 2, 1, UNI_INVALID},             // a bad continuation
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t cp;
        size_t len = utf8_decode(cases[i].s, cases[i].n, &cp);
        cr_assert_eq(len, cases[i].len, "case %zu: length %zu", i, len);
        cr_assert_eq(cp, cases[i].cp, "case %zu: U+%X", i, cp);
    }
}

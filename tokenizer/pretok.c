// pretok.c: the pre-tokenizers' regexes as hand-written matchers (pretok.h).
//
// Each matcher tries the regex's alternatives in order at the start of the text and returns
// the length of the first that matches, as a backtracking regex engine would. The comment
// above each step is the alternative it implements.
#include "tokenizer/pretok.h"

#include <string.h>

#include "tokenizer/unicode.h"

static const char *const names[PRETOK_COUNT] = {"gpt-2", "llama-bpe", "qwen2", "smollm"};

int pretok_from_name(const char *name) {
    for (int k = 0; k < PRETOK_COUNT; k++)
        if (strcmp(name, names[k]) == 0) return k;
    return -1;
}

// The regexes, as tokenizer.json files write them (smollm has none: Digits, then gpt-2's).
static const char *const regexes[PRETOK_COUNT] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};

int pretok_from_regex(const char *regex) {
    for (int k = 0; k < PRETOK_COUNT; k++)
        if (regexes[k] && strcmp(regex, regexes[k]) == 0) return k;
    return -1;
}

const char *pretok_name(int kind) {
    return kind >= 0 && kind < PRETOK_COUNT ? names[kind] : "?";
}

// One character of the text: where it starts, its length, code point and class.
typedef struct {
    size_t len;
    uint32_t cp;
    int cls;
} Char;

static Char char_at(const char *s, size_t n, size_t i) {
    Char c = {0, UNI_INVALID, -1};  // past the end: length 0, class -1 (matches nothing)
    if (i >= n) return c;
    c.len = utf8_decode(s + i, n - i, &c.cp);
    c.cls = unicode_class(c.cp);
    return c;
}

static int is_crlf(Char c) { return c.cp == '\r' || c.cp == '\n'; }

// The end of a run of characters of class cls starting at i, taking at most max characters.
static size_t run(const char *s, size_t n, size_t i, int cls, size_t max) {
    for (size_t k = 0; k < max; k++) {
        Char c = char_at(s, n, i);
        if (c.cls != cls) break;
        i += c.len;
    }
    return i;
}

// 's|'t|'re|'ve|'m|'ll|'d, case-sensitive or (?i:...): the match's length, or 0. Under (?i),
// ASCII letters match either case, and U+017F (long s) matches s, as in Unicode case folding.
static size_t contraction(const char *s, size_t n, int fold) {
    if (n < 2 || s[0] != '\'') return 0;
    char a = s[1], b = n >= 3 ? s[2] : 0;
    size_t one = 1;
    if (fold) {
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
        if (n >= 3 && (unsigned char)s[1] == 0xC5 && (unsigned char)s[2] == 0xBF) a = 's', one = 2;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 1 + one;
    if ((a == 'r' || a == 'v') && b == 'e') return 3;
    if (a == 'l' && b == 'l') return 3;
    return 0;
}

// \s+(?!\S)|\s+ at 0, s[0] being whitespace: the whole run if the text ends there, else the
// run less its last character (which the next piece takes), or one character at least.
static size_t spaces(const char *s, size_t n) {
    size_t i = 0, last = 0;
    for (;;) {
        Char c = char_at(s, n, i);
        if (c.cls != UNI_SPACE) break;
        last = i;
        i += c.len;
    }
    if (i == n || last == 0) return i;
    return last;
}

static size_t gpt2_next(const char *s, size_t n) {
    // 's|'t|'re|'ve|'m|'ll|'d
    size_t m = contraction(s, n, 0);
    if (m) return m;
    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': one optional space, then a run of one class
    size_t j = s[0] == ' ' ? 1 : 0;
    Char c = char_at(s, n, j);
    if (c.cls == UNI_LETTER || c.cls == UNI_NUMBER || c.cls == UNI_OTHER)
        return run(s, n, j, c.cls, (size_t)-1);
    // \s+(?!\S)|\s+
    return spaces(s, n);
}

static size_t llama3_next(const char *s, size_t n, size_t max_digits) {
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    size_t m = contraction(s, n, 1);
    if (m) return m;
    Char c0 = char_at(s, n, 0);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c0.cls == UNI_LETTER) return run(s, n, 0, UNI_LETTER, (size_t)-1);
    if (!is_crlf(c0) && c0.cls != UNI_NUMBER && char_at(s, n, c0.len).cls == UNI_LETTER)
        return run(s, n, c0.len, UNI_LETTER, (size_t)-1);
    // \p{N}{1,3}  (qwen2: \p{N})
    if (c0.cls == UNI_NUMBER) return run(s, n, 0, UNI_NUMBER, max_digits);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t j = s[0] == ' ' ? 1 : 0;
    if (char_at(s, n, j).cls == UNI_OTHER) {
        size_t i = run(s, n, j, UNI_OTHER, (size_t)-1);
        for (Char c; is_crlf(c = char_at(s, n, i));) i += c.len;
        return i;
    }
    // \s*[\r\n]+: the whitespace run up to and including its last \r or \n, if it has one
    size_t i = 0, end = 0;
    for (Char c; (c = char_at(s, n, i)).cls == UNI_SPACE;) {
        i += c.len;
        if (is_crlf(c)) end = i;
    }
    if (end) return end;
    // \s+(?!\S)|\s+
    return spaces(s, n);
}

size_t pretok_next(int kind, const char *s, size_t n) {
    switch (kind) {
    case PRETOK_LLAMA3: return llama3_next(s, n, 3);
    case PRETOK_QWEN2: return llama3_next(s, n, 1);
    case PRETOK_SMOLLM: {
        // each \p{N} alone; gpt-2 within the text up to the next one
        Char c = char_at(s, n, 0);
        if (c.cls == UNI_NUMBER) return c.len;
        size_t seg = c.len;
        for (Char d; seg < n && (d = char_at(s, n, seg)).cls != UNI_NUMBER;) seg += d.len;
        return gpt2_next(s, seg);
    }
    default: return gpt2_next(s, n);
    }
}


// unicode.c: character classes by binary search in the generated ranges, UTF-8 decoding, and
// the NFC normalizer (unicode.h).
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode_data.h"

int unicode_class(uint32_t cp) {
    size_t lo = 0, hi = UNICODE_N_RANGES;  // search [lo, hi)
    if (cp > 0x10FFFF) return UNI_OTHER;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < unicode_ranges[mid].lo) hi = mid;
        else if (cp > unicode_ranges[mid].hi) lo = mid + 1;
        else return unicode_ranges[mid].cls;
    }
    return UNI_OTHER;
}

const char *unicode_version(void) { return UNICODE_DATA_VERSION; }

size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    *cp = UNI_INVALID;
    if (u[0] < 0x80) return *cp = u[0], 1;
    size_t len = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 0;
    if (len == 0 || u[0] > 0xF4 || len > n) return 1;
    uint32_t c = u[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 1;
        c = c << 6 | (u[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};  // shortest form
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 1;
    *cp = c;
    return len;
}

// ----------------------------------------------------------------------------
// NFC (Unicode Standard Annex #15; the tables: unicode_data.h, Unicode 9.0.0's data as the
// `tokenizers` library has it)

// Hangul syllables (Unicode 3.12, Conjoining Jamo Behavior) need no table: the syllable of
// leading consonant L_BASE + l, vowel V_BASE + v and trailing consonant T_BASE + t (t = 0:
// none) is S_BASE + (l V_COUNT + v) T_COUNT + t, for l < 19, v < 21, t < 28.
enum {
    S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
    L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
    S_COUNT = L_COUNT * N_COUNT,
};

// An invalid byte b travels as RAW + b: beyond U+10FFFF, so of class 0, with no mapping and
// no composition. In the working buffer each character carries its class: class << 21 | cp
// (RAW + 0xFF < 2^21).
#define RAW 0x110000u
#define CP_OF(v) ((v) & 0x1FFFFFu)
#define CLASS_OF(v) ((v) >> 21)
#define NO_STARTER ((size_t)-1)

static uint32_t combining_class(uint32_t cp) {
    size_t lo = 0, hi = UNICODE_N_CCC;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < unicode_ccc[mid].lo) hi = mid;
        else if (cp > unicode_ccc[mid].hi) lo = mid + 1;
        else return unicode_ccc[mid].ccc;
    }
    return 0;
}

// Writes the full canonical decomposition of cp to out (unless out is NULL: counting only);
// returns its length. The table maps one step: both parts are decomposed again.
static size_t decompose(uint32_t cp, uint32_t *out) {
    if (cp - S_BASE < S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        if (out) {
            out[0] = L_BASE + s / N_COUNT;
            out[1] = V_BASE + s % N_COUNT / T_COUNT;
            if (t) out[2] = T_BASE + t;
        }
        return t ? 3 : 2;
    }
    size_t lo = 0, hi = UNICODE_N_DECOMP;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < unicode_decomp[mid].cp) hi = mid;
        else if (cp > unicode_decomp[mid].cp) lo = mid + 1;
        else {
            size_t k = decompose(unicode_decomp[mid].first, out);
            if (unicode_decomp[mid].second)
                k += decompose(unicode_decomp[mid].second, out ? out + k : NULL);
            return k;
        }
    }
    if (out) out[0] = cp;
    return 1;
}

// The primary composite of the pair (a, b), or 0 if none.
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a - L_BASE < L_COUNT && b - V_BASE < V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a - S_BASE < S_COUNT && (a - S_BASE) % T_COUNT == 0 && b - T_BASE - 1 < T_COUNT - 1)
        return a + (b - T_BASE);
    size_t lo = 0, hi = UNICODE_N_COMP;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t f = unicode_decomp[unicode_comp[mid]].first;
        uint32_t s = unicode_decomp[unicode_comp[mid]].second;
        if (a < f || (a == f && b < s)) hi = mid;
        else if (a > f || b > s) lo = mid + 1;
        else return unicode_decomp[unicode_comp[mid]].cp;
    }
    return 0;
}

// Sorts the k marks at v by class, stably: by insertion when few, else by counting (a run of
// thousands of marks stays linear), through tmp (room for k values).
static void sort_marks(uint32_t *v, size_t k, uint32_t *tmp) {
    if (k <= 16) {
        for (size_t i = 1; i < k; i++) {
            uint32_t x = v[i];
            size_t j = i;
            for (; j > 0 && CLASS_OF(v[j - 1]) > CLASS_OF(x); j--) v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < k; i++) start[CLASS_OF(v[i]) + 1]++;
    for (int c = 1; c < 257; c++) start[c] += start[c - 1];
    for (size_t i = 0; i < k; i++) tmp[start[CLASS_OF(v[i])]++] = v[i];
    memcpy(v, tmp, k * sizeof *v);
}

// NFC(s) = compose(reorder(decompose(s))):
//   1. decompose: every character becomes its full canonical decomposition (the table's
//      one-step mappings applied until none is left; Hangul syllables by the formula above);
//   2. reorder: each maximal run of non-starters (class > 0) is sorted by class, stably;
//   3. compose: left to right, a character C composes with the last starter S before it (the
//      character replaced by their primary composite, S by it) when C is not blocked from S:
//      C follows S directly, or every character between them has a class that is nonzero and
//      below C's. A starter that does not compose becomes the new S.
// The last step is the usual one-pass form: with `last` the class of the last character kept,
// C (class c) meets S when S was the last kept, or last < c.
int unicode_nfc(const char *in, size_t n, char **out, size_t *out_n) {
    *out = NULL, *out_n = 0;
    size_t m = 0, i, ascii = 1;
    for (i = 0; i < n && ascii; i++) ascii = (unsigned char)in[i] < 0x80;
    if (ascii) {  // nothing to do: ASCII is NFC
        if (!(*out = malloc(n + 1))) return -1;
        if (n) memcpy(*out, in, n);
        (*out)[n] = '\0', *out_n = n;
        return 0;
    }
    for (i = 0; i < n;) {  // count the decomposed characters: at most 1.5 per byte
        uint32_t cp;
        i += utf8_decode(in + i, n - i, &cp);
        m += cp == UNI_INVALID ? 1 : decompose(cp, NULL);
    }
    if (m > SIZE_MAX / 4 / sizeof(uint32_t)) return -1;
    uint32_t *v = malloc(m * sizeof *v), *tmp = NULL;
    if (!v) return -1;
    size_t k = 0;
    for (i = 0; i < n;) {  // 1. decompose, each character with its class
        uint32_t cp;
        size_t len = utf8_decode(in + i, n - i, &cp);
        if (cp == UNI_INVALID) v[k++] = RAW + (unsigned char)in[i];
        else
            for (size_t d = decompose(cp, v + k); d > 0; d--, k++)
                v[k] |= combining_class(v[k]) << 21;
        i += len;
    }
    for (i = 0; i < m;) {  // 2. reorder each run of non-starters
        size_t j = i;
        while (j < m && CLASS_OF(v[j]) != 0) j++;
        if (j - i > 16 && !tmp && !(tmp = malloc(m * sizeof *tmp))) {
            free(v);
            return -1;
        }
        if (j - i > 1) sort_marks(v + i, j - i, tmp);
        i = j + (j == i);
    }
    free(tmp);
    size_t w = 0, starter = NO_STARTER, bytes = 0;
    for (i = 0; i < m; i++) {  // 3. compose, in place
        uint32_t c = v[i], cc = CLASS_OF(c), composite;
        if (starter != NO_STARTER && (w == starter + 1 || CLASS_OF(v[w - 1]) < cc) &&
            (composite = compose(CP_OF(v[starter]), CP_OF(c))) != 0) {
            v[starter] = composite;  // a starter: class 0
            continue;
        }
        if (cc == 0) starter = w;
        v[w++] = c;
    }
    for (i = 0; i < w; i++) {
        uint32_t cp = CP_OF(v[i]);
        bytes += cp >= RAW || cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
    char *o = malloc(bytes + 1);
    if (!o) {
        free(v);
        return -1;
    }
    size_t p = 0;
    for (i = 0; i < w; i++) {  // UTF-8; an invalid byte as itself
        uint32_t cp = CP_OF(v[i]);
        if (cp >= RAW) o[p++] = (char)(cp - RAW);
        else if (cp < 0x80) o[p++] = (char)cp;
        else if (cp < 0x800) o[p++] = (char)(0xC0 | cp >> 6), o[p++] = (char)(0x80 | (cp & 63));
        else if (cp < 0x10000)
            o[p++] = (char)(0xE0 | cp >> 12), o[p++] = (char)(0x80 | (cp >> 6 & 63)),
            o[p++] = (char)(0x80 | (cp & 63));
        else
            o[p++] = (char)(0xF0 | cp >> 18), o[p++] = (char)(0x80 | (cp >> 12 & 63)),
            o[p++] = (char)(0x80 | (cp >> 6 & 63)), o[p++] = (char)(0x80 | (cp & 63));
    }
    o[p] = '\0';
    free(v);
    *out = o, *out_n = p;
    return 0;
}

// unicode.c: character classes by binary search in the generated ranges (unicode.h).
#include "tokenizer/unicode.h"

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

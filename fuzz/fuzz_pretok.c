// fuzz_pretok: the pre-tokenizers and the UTF-8 decoder on arbitrary bytes. Every piece must
// be at least one byte and end inside the text; every decoded character too, with a class.
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    for (int k = 0; k < PRETOK_COUNT; k++)
        for (size_t i = 0; i < size;) {
            size_t m = pretok_next(k, s + i, size - i);
            if (m < 1 || m > size - i) abort();
            i += m;
        }
    for (size_t i = 0; i < size;) {
        uint32_t cp;
        size_t m = utf8_decode(s + i, size - i, &cp);
        int c = unicode_class(cp);
        if (m < 1 || m > 4 || m > size - i || (cp == UNI_INVALID) != (m == 1 && data[i] >= 0x80) ||
            (c != UNI_OTHER && c != UNI_LETTER && c != UNI_NUMBER && c != UNI_SPACE))
            abort();
        i += m;
    }
    return 0;
}

// strbuf.h: a growable byte string, for building HTTP responses and JSON.
//
// Contract: libc only; nothing here exits or prints. A zeroed StrBuf ({0}) is empty and ready.
// Every append keeps p NUL-terminated (when p is non-NULL; the NUL is not counted in n). When an
// allocation fails (or the size would overflow) oom is set and stays set: later appends do
// nothing, so a caller builds the whole text and checks oom once at the end. sb_free releases p
// and zeroes the StrBuf.
#ifndef SEARCHLIGHT_STRBUF_H
#define SEARCHLIGHT_STRBUF_H

#include <stddef.h>

typedef struct {
    char *p;          // the bytes, NUL-terminated when non-NULL
    size_t n, cap;    // length (without the NUL), allocated size
    int oom;          // sticky: an append failed, the text is incomplete
} StrBuf;

// Appends n bytes (which may hold NULs).
void sb_add(StrBuf *b, const char *s, size_t n);
// Appends a NUL-terminated string.
void sb_adds(StrBuf *b, const char *s);
// Appends printf-formatted text (an encoding error of vsnprintf sets oom).
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Appends n bytes as a JSON string literal, quotes included, that is valid JSON (and valid
// UTF-8) whatever the bytes: ", \ and control bytes are escaped (\n \t \r \b \f, the others
// \u00XX), '<' is written \u003c (safe inside HTML <script>), and each byte that is not part
// of well-formed UTF-8 (tokenizer/unicode.h's utf8_decode) becomes \ufffd.
void sb_json_string(StrBuf *b, const char *s, size_t n);
void sb_free(StrBuf *b);

#endif

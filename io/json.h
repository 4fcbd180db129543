// json.h: a small strict JSON parser (RFC 8259), for Hugging Face config and tokenizer files,
// and a string writer (for the attention map page).
//
// Contract: libc only; nothing here exits or prints. The whole document is parsed into a tree
// of JsonValue nodes that json_free releases. Strict: exactly one value with optional
// whitespace around it; no comments, trailing commas, leading zeros, NaN or control bytes in
// strings; strings must be valid UTF-8 and \uXXXX escapes (surrogate pairs included) are
// decoded to UTF-8, a lone surrogate is an error. Nesting deeper than JSON_MAX_DEPTH is
// refused. Memory grows with the input only (every node takes at least one input byte).
// Every error carries the byte offset where it was found.
#ifndef SEARCHLIGHT_JSON_H
#define SEARCHLIGHT_JSON_H

#include <stddef.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY,
                 JSON_OBJECT };

typedef struct JsonValue {
    int type;                // enum json_type
    size_t offset;           // byte offset of the value in the input
    double num;              // JSON_NUMBER
    char *str;               // JSON_STRING: decoded UTF-8, NUL-terminated (may hold NULs: use len)
    size_t len;
    struct JsonValue *items; // JSON_ARRAY elements / JSON_OBJECT member values, n of them
    size_t n;
    char *key;               // set on an object's member values: the decoded name
    size_t key_len;
} JsonValue;

typedef struct {
    size_t offset;  // byte offset of the error
    char msg[96];   // what is wrong
} JsonError;

// Parses n bytes. Returns 0, or -1 with *err filled (out is then empty).
int json_parse(const char *buf, size_t n, JsonValue *out, JsonError *err);
void json_free(JsonValue *v);

// The member named key of an object (the first, if repeated), or NULL (also for a non-object).
const JsonValue *json_get(const JsonValue *obj, const char *key);
// A string value equal to s?
int json_is_str(const JsonValue *v, const char *s);
// An integral number in [lo, hi]? Then *out receives it.
int json_int(const JsonValue *v, long long lo, long long hi, long long *out);
const char *json_type_name(int type);

// Writes n bytes of text to f as a JSON string literal, quotes included, safe inside an HTML
// <script>: ", \\ and control bytes are escaped, < is written \u003c. A byte that is not part
// of valid UTF-8 (a byte token's piece, say) is written as the text <0xXX>. Returns 0, or -1
// if a write failed.
int json_write_string(FILE *f, const char *s, size_t n);

#endif

// json.c: the strict JSON parser (see json.h).
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n, pos;
    JsonError *err;
} Parser;

static int fail(Parser *p, size_t at, const char *fmt, ...) {
    if (p->err->msg[0]) return -1;  // keep the first error
    p->err->offset = at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(Parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

// Appends to a growable byte buffer.
typedef struct {
    char *b;
    size_t len, cap;
} Buf;

static int buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->b, cap);
        if (!nb) return -1;
        b->b = nb;
        b->cap = cap;
    }
    memcpy(b->b + b->len, s, n);
    b->len += n;
    b->b[b->len] = '\0';
    return 0;
}

static size_t utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid.
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static int hex4(Parser *p, size_t at, unsigned *out) {
    if (p->n - at < 4) return fail(p, at, "truncated \\u escape");
    unsigned v = 0;
    for (size_t i = 0; i < 4; i++) {
        char c = p->s[at + i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return fail(p, at + i, "bad hex digit in \\u escape");
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

// Parses a string at p->pos (the opening quote) into a new NUL-terminated buffer.
static int parse_string(Parser *p, char **out, size_t *out_len) {
    size_t start = p->pos++;
    Buf b = {0};
    if (buf_put(&b, "", 0) != 0) return fail(p, start, "out of memory");
    for (;;) {
        if (p->pos >= p->n) {
            free(b.b);
            return fail(p, start, "unterminated string");
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(b.b);
            return fail(p, p->pos, "control byte 0x%02x in a string", c);
        }
        if (c == '\\') {
            size_t at = p->pos;
            if (at + 1 >= p->n) {
                free(b.b);
                return fail(p, at, "unterminated string");
            }
            char e = p->s[at + 1], o[4];
            size_t k = 1;
            p->pos += 2;
            switch (e) {
            case '"': o[0] = '"'; break;
            case '\\': o[0] = '\\'; break;
            case '/': o[0] = '/'; break;
            case 'b': o[0] = '\b'; break;
            case 'f': o[0] = '\f'; break;
            case 'n': o[0] = '\n'; break;
            case 'r': o[0] = '\r'; break;
            case 't': o[0] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (hex4(p, p->pos, &cp) != 0) {
                    free(b.b);
                    return -1;
                }
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(b.b);
                    return fail(p, at, "lone low surrogate \\u%04X", cp);
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        free(b.b);
                        return fail(p, at, "high surrogate \\u%04X without a low one", cp);
                    }
                    if (hex4(p, p->pos + 2, &lo) != 0) {
                        free(b.b);
                        return -1;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(b.b);
                        return fail(p, at, "high surrogate \\u%04X without a low one", cp);
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                k = utf8_put(o, cp);
                break;
            }
            default:
                free(b.b);
                return fail(p, at, "bad escape \\%c", (e >= 0x20 && e < 0x7f) ? e : '?');
            }
            if (buf_put(&b, o, k) != 0) {
                free(b.b);
                return fail(p, at, "out of memory");
            }
            continue;
        }
        // a run of plain bytes, validated as UTF-8
        size_t run = p->pos;
        while (run < p->n) {
            unsigned char d = (unsigned char)p->s[run];
            if (d == '"' || d == '\\' || d < 0x20) break;
            size_t k = utf8_len((const unsigned char *)p->s + run, p->n - run);
            if (!k) {
                free(b.b);
                return fail(p, run, "invalid UTF-8 in a string");
            }
            run += k;
        }
        if (buf_put(&b, p->s + p->pos, run - p->pos) != 0) {
            free(b.b);
            return fail(p, p->pos, "out of memory");
        }
        p->pos = run;
    }
    *out = b.b;
    *out_len = b.len;
    return 0;
}

static int parse_number(Parser *p, JsonValue *v) {
    size_t i = p->pos, start = p->pos;
    const char *s = p->s;
    if (i < p->n && s[i] == '-') i++;
    if (i >= p->n || s[i] < '0' || s[i] > '9') return fail(p, start, "bad number");
    if (s[i] == '0') {
        i++;
        if (i < p->n && s[i] >= '0' && s[i] <= '9') return fail(p, start, "number with a leading zero");
    } else {
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && s[i] == '.') {
        i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return fail(p, i, "bad number: no digit after '.'");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return fail(p, i, "bad number: no exponent digit");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    char tmp[400];
    if (i - start >= sizeof tmp) return fail(p, start, "number longer than %zu characters", sizeof tmp - 1);
    memcpy(tmp, s + start, i - start);
    tmp[i - start] = '\0';
    errno = 0;
    double d = strtod(tmp, NULL);
    if (isinf(d)) return fail(p, start, "number out of range");
    v->type = JSON_NUMBER;
    v->num = d;
    p->pos = i;
    return 0;
}

static int parse_value(Parser *p, JsonValue *v, int depth);

// Parses the elements of an array or the members of an object, p->pos past the opener.
static int parse_container(Parser *p, JsonValue *v, int depth, int object) {
    char close = object ? '}' : ']';
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        if (v->n == cap) {
            size_t nc = cap ? 2 * cap : 4;
            JsonValue *ni = realloc(v->items, nc * sizeof *ni);
            if (!ni) return fail(p, p->pos, "out of memory");
            v->items = ni;
            cap = nc;
        }
        JsonValue *it = &v->items[v->n];
        memset(it, 0, sizeof *it);
        skip_ws(p);
        char *key = NULL;
        size_t key_len = 0;
        if (object) {
            if (p->pos >= p->n) return fail(p, p->pos, "unexpected end inside an object");
            if (p->s[p->pos] != '"') return fail(p, p->pos, "expected a member name (a string)");
            if (parse_string(p, &key, &key_len) != 0) return -1;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                free(key);
                return fail(p, p->pos, "expected ':' after a member name");
            }
            p->pos++;
            skip_ws(p);
        }
        int rc = parse_value(p, it, depth + 1);
        it->key = key;
        it->key_len = key_len;
        v->n++;  // counted even on failure, so that json_free releases it
        if (rc != 0) return -1;
        skip_ws(p);
        if (p->pos >= p->n)
            return fail(p, p->pos, "unexpected end inside an %s", object ? "object" : "array");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == close) return fail(p, p->pos, "trailing comma");
            continue;
        }
        if (c == close) {
            p->pos++;
            return 0;
        }
        return fail(p, p->pos, "expected ',' or '%c'", close);
    }
}

static int parse_value(Parser *p, JsonValue *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(p);
    v->offset = p->pos;
    if (p->pos >= p->n) return fail(p, p->pos, "unexpected end, expected a value");
    char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        if (depth >= JSON_MAX_DEPTH)
            return fail(p, p->pos, "nested deeper than %d levels", JSON_MAX_DEPTH);
        v->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
        p->pos++;
        return parse_container(p, v, depth, c == '{');
    case '"':
        v->type = JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
    case 'f':
    case 'n': {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t k = strlen(word);
        if (p->n - p->pos < k || memcmp(p->s + p->pos, word, k) != 0)
            return fail(p, p->pos, "unexpected '%c'", c);
        v->type = c == 't' ? JSON_TRUE : c == 'f' ? JSON_FALSE : JSON_NULL;
        p->pos += k;
        return 0;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            return fail(p, p->pos, "unexpected '%c'", c);
        return fail(p, p->pos, "unexpected byte 0x%02x", (unsigned char)c);
    }
}

int json_parse(const char *buf, size_t n, JsonValue *out, JsonError *err) {
    JsonError scratch;
    if (!err) err = &scratch;
    memset(err, 0, sizeof *err);
    Parser p = {buf, n, 0, err};
    if (parse_value(&p, out, 0) != 0) {
        json_free(out);
        return -1;
    }
    skip_ws(&p);
    if (p.pos != n) {
        fail(&p, p.pos, "unexpected data after the value");
        json_free(out);
        return -1;
    }
    return 0;
}

void json_free(JsonValue *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        char *key = v->items[i].key;
        json_free(&v->items[i]);
        free(key);
    }
    free(v->items);
    free(v->str);
    memset(v, 0, sizeof *v);
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t k = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->items[i].key_len == k && memcmp(obj->items[i].key, key, k) == 0)
            return &obj->items[i];
    return NULL;
}

int json_is_str(const JsonValue *v, const char *s) {
    return v && v->type == JSON_STRING && v->len == strlen(s) && memcmp(v->str, s, v->len) == 0;
}

int json_int(const JsonValue *v, long long lo, long long hi, long long *out) {
    if (!v || v->type != JSON_NUMBER || v->num != floor(v->num)) return 0;
    if (!(v->num >= (double)lo && v->num <= (double)hi)) return 0;
    *out = (long long)v->num;
    return 1;
}

const char *json_type_name(int type) {
    static const char *const names[] = {"null", "false", "true", "a number", "a string",
                                        "an array", "an object"};
    return type >= 0 && type <= JSON_OBJECT ? names[type] : "?";
}

int json_write_string(FILE *f, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    int ok = fputc('"', f) != EOF;
    for (size_t i = 0; i < n && ok;) {
        unsigned c = u[i];
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) ok = fprintf(f, "\\u003c0x%02X>", c) > 0, k = 1;  // <0xXX>
        else if (c == '"' || c == '\\') ok = fprintf(f, "\\%c", c) > 0;
        else if (c < 0x20 || c == '<' || c == 0x7f) ok = fprintf(f, "\\u%04x", c) > 0;
        else ok = fwrite(u + i, 1, k, f) == k;
        i += k;
    }
    return ok && fputc('"', f) != EOF ? 0 : -1;
}

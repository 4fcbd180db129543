// gguf.c: the GGUF reader and the model glue (see gguf.h).
#define _POSIX_C_SOURCE 200809L
#include "convert/gguf.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/pretok.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/fileio.h"
#include "kernels/quant.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF files are read as little-endian; this build targets a big-endian CPU"
#endif

// ----------------------------------------------------------------------------
// the reader

typedef struct {
    const uint8_t *base;
    size_t size, pos;
    const char *path;
    char where[96];  // the entry being read, for messages
} Cursor;

static void fail(const Cursor *c, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: %s: ", c->path, c->where);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static size_t left(const Cursor *c) { return c->size - c->pos; }

static int take(Cursor *c, void *dst, size_t n, const char *what) {
    if (left(c) < n) {
        fail(c, "the file ends inside the %s (offset %zu, %zu bytes left, %zu needed)", what,
             c->pos, left(c), n);
        return -1;
    }
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static int take_u32(Cursor *c, uint32_t *v, const char *what) { return take(c, v, 4, what); }
static int take_u64(Cursor *c, uint64_t *v, const char *what) { return take(c, v, 8, what); }

static int take_str(Cursor *c, GgufStr *s, const char *what) {
    uint64_t len;
    size_t at = c->pos;
    char w[64];
    snprintf(w, sizeof w, "%s length", what);
    if (take_u64(c, &len, w) != 0) return -1;
    if (len > left(c)) {
        fail(c, "%s length %llu runs past the end of the file (offset %zu)", what,
             (unsigned long long)len, at);
        return -1;
    }
    s->p = (const char *)c->base + c->pos;
    s->len = (size_t)len;
    c->pos += (size_t)len;
    return 0;
}

static const char *const vtype_names[GGUF_VTYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
    "string", "array", "uint64", "int64", "float64",
};

static size_t vtype_size(uint32_t t) {
    static const uint8_t sz[GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_VTYPE_COUNT ? sz[t] : 0;
}

// Skips one value of type t (not an array) at the cursor, checking it lies in the file.
static int skip_scalar(Cursor *c, uint32_t t) {
    if (t == GGUF_STRING) {
        GgufStr s;
        return take_str(c, &s, "string");
    }
    size_t n = vtype_size(t);
    if (left(c) < n) {
        fail(c, "the file ends inside a %s value (offset %zu)", vtype_names[t], c->pos);
        return -1;
    }
    c->pos += n;
    return 0;
}

static int read_kv(Cursor *c, GgufKv *kv, size_t i) {
    snprintf(c->where, sizeof c->where, "metadata key %zu", i);
    if (take_str(c, &kv->key, "key") != 0) return -1;
    int klen = kv->key.len > 48 ? 48 : (int)kv->key.len;
    snprintf(c->where, sizeof c->where, "metadata key %zu (%.*s%s)", i, klen, kv->key.p,
             kv->key.len > 48 ? "..." : "");
    size_t at = c->pos;
    if (take_u32(c, &kv->type, "value type") != 0) return -1;
    if (kv->type >= GGUF_VTYPE_COUNT) {
        fail(c, "unknown value type %u (offset %zu), expected 0..%d", kv->type, at,
             GGUF_VTYPE_COUNT - 1);
        return -1;
    }
    if (kv->type != GGUF_ARRAY) {
        kv->value = c->pos;
        return skip_scalar(c, kv->type);
    }
    at = c->pos;
    uint64_t n;
    if (take_u32(c, &kv->arr_type, "array type") != 0) return -1;
    if (kv->arr_type >= GGUF_VTYPE_COUNT || kv->arr_type == GGUF_ARRAY) {
        fail(c, "array of %s %u (offset %zu): export reads arrays of scalars and strings",
             kv->arr_type == GGUF_ARRAY ? "arrays, type" : "unknown type", kv->arr_type, at);
        return -1;
    }
    at = c->pos;
    if (take_u64(c, &n, "array count") != 0) return -1;
    kv->value = c->pos;
    // every element takes at least one byte (a string at least its 8-byte length)
    size_t min = kv->arr_type == GGUF_STRING ? 8 : vtype_size(kv->arr_type);
    if (n > left(c) / min) {
        fail(c, "array count %llu runs past the end of the file (offset %zu)",
             (unsigned long long)n, at);
        return -1;
    }
    kv->arr_n = (size_t)n;
    if (kv->arr_type != GGUF_STRING) {
        c->pos += kv->arr_n * min;
        return 0;
    }
    for (size_t k = 0; k < kv->arr_n; k++) {
        snprintf(c->where, sizeof c->where, "metadata key %zu (%.*s%s), element %zu", i, klen,
                 kv->key.p, kv->key.len > 48 ? "..." : "", k);
        GgufStr s;
        if (take_str(c, &s, "string") != 0) return -1;
    }
    return 0;
}

static const char *const ggml_names[] = {
    [0] = "F32",      [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",    [6] = "Q5_0",
    [7] = "Q5_1",     [8] = "Q8_0",     [9] = "Q8_1",     [10] = "Q2_K",   [11] = "Q3_K",
    [12] = "Q4_K",    [13] = "Q5_K",    [14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS",
    [17] = "IQ2_XS",  [18] = "IQ3_XXS", [19] = "IQ1_S",   [20] = "IQ4_NL", [21] = "IQ3_S",
    [22] = "IQ2_S",   [23] = "IQ4_XS",  [24] = "I8",      [25] = "I16",    [26] = "I32",
    [27] = "I64",     [28] = "F64",     [29] = "IQ1_M",   [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0",   [39] = "MXFP4",
};

const char *ggml_type_name(uint32_t type) {
    static char buf[32];
    if (type < sizeof ggml_names / sizeof ggml_names[0] && ggml_names[type])
        return ggml_names[type];
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

// Bytes of a tensor of a type export reads (0 for the others); -1 if it overflows or a row is
// not whole blocks of its block type.
static int data_bytes(const GgufTensor *t, size_t *out) {
    size_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(n, (size_t)t->ne[d], &n)) return -1;
    const TypeInfo *ti = type_info(type_of_ggml(t->type));
    if (!ti) {
        *out = 0;
        return 0;
    }
    if (t->ne[0] % ti->block_elems) return -1;  // n / elems blocks of block_bytes each
    return __builtin_mul_overflow(n / ti->block_elems, ti->block_bytes, out) ? -1 : 0;
}

// The weights per block of a block type; 0 for other types.
static size_t block_elems(uint32_t type) {
    size_t be = 0, bb;
    return ggml_block_info(type, &be, &bb) ? be : 0;
}

static int read_tensor_info(Cursor *c, GgufTensor *t, size_t i, size_t *rel) {
    snprintf(c->where, sizeof c->where, "tensor info %zu", i);
    if (take_str(c, &t->name, "name") != 0) return -1;
    int nlen = t->name.len > 64 ? 64 : (int)t->name.len;
    snprintf(c->where, sizeof c->where, "tensor info %zu (%.*s)", i, nlen, t->name.p);
    size_t at = c->pos;
    if (take_u32(c, &t->n_dims, "dimension count") != 0) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        fail(c, "%u dimensions (offset %zu), expected 1..%d", t->n_dims, at, GGUF_MAX_DIMS);
        return -1;
    }
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        if (take_u64(c, &t->ne[d], "dimensions") != 0) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX || t->ne[d] > SIZE_MAX) {
            fail(c, "dimension %u is %llu (offset %zu), expected 1..2^63-1", d,
                 (unsigned long long)t->ne[d], at);
            return -1;
        }
    }
    if (take_u32(c, &t->type, "type") != 0) return -1;
    uint64_t off;
    at = c->pos;
    if (take_u64(c, &off, "offset") != 0) return -1;
    if (off > c->size) {
        fail(c, "data offset %llu is past the end of the file (offset %zu)",
             (unsigned long long)off, at);
        return -1;
    }
    *rel = (size_t)off;
    if (data_bytes(t, &t->bytes) != 0) {
        fail(c, "shape %llu x %llu x %llu x %llu of type %s: %s", (unsigned long long)t->ne[0],
             (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
             (unsigned long long)t->ne[3], ggml_type_name(t->type),
             block_elems(t->type) && t->ne[0] % block_elems(t->type)
                 ? "rows are not whole blocks of its type"
                 : "its size overflows");
        return -1;
    }
    return 0;
}

static int cmp_name(const GgufStr *a, const GgufStr *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->p, b->p, n);
    return r ? r : (a->len > b->len) - (a->len < b->len);
}

static const Gguf *sort_ctx;  // qsort has no context argument; single-threaded use only
static int cmp_index(const void *a, const void *b) {
    const GgufTensor *t = sort_ctx->tensors;
    return cmp_name(&t[*(const size_t *)a].name, &t[*(const size_t *)b].name);
}

static int parse(Gguf *g) {
    Cursor c = {.base = g->map, .size = g->size, .path = g->path};
    snprintf(c.where, sizeof c.where, "header");
    char magic[4];
    uint64_t n_tensors, n_kv;
    if (take(&c, magic, 4, "magic") != 0) return -1;
    if (memcmp(magic, "GGUF", 4) != 0) {
        fail(&c, "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
             (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
        return -1;
    }
    if (take_u32(&c, &g->version, "version") != 0) return -1;
    if (g->version != 2 && g->version != 3) {
        fail(&c, "GGUF version %u, export reads versions 2 and 3", g->version);
        return -1;
    }
    if (take_u64(&c, &n_tensors, "tensor count") != 0 || take_u64(&c, &n_kv, "metadata count"))
        return -1;
    // a metadata entry takes at least 13 bytes, a tensor info at least 32
    if (n_kv > left(&c) / 13) {
        fail(&c, "%llu metadata entries cannot fit in the %zu bytes left (offset 16)",
             (unsigned long long)n_kv, left(&c));
        return -1;
    }
    if (n_tensors > left(&c) / 32) {
        fail(&c, "%llu tensors cannot fit in the %zu bytes left (offset 8)",
             (unsigned long long)n_tensors, left(&c));
        return -1;
    }
    g->n_kv = (size_t)n_kv, g->n_tensors = (size_t)n_tensors;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->by_name = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->by_name);
    size_t *rel = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *rel);
    int err = -1;
    if (!g->kv || !g->tensors || !g->by_name || !rel) {
        fprintf(stderr, "%s: out of memory for %zu metadata entries and %zu tensors\n", g->path,
                g->n_kv, g->n_tensors);
        goto out;
    }
    for (size_t i = 0; i < g->n_kv; i++)
        if (read_kv(&c, &g->kv[i], i) != 0) goto out;
    g->alignment = 32;
    const GgufKv *al = gguf_find_kv(g, "general.alignment");
    if (al) {
        uint32_t a = 0;
        if (al->type == GGUF_U32) memcpy(&a, g->map + al->value, 4);
        if (al->type != GGUF_U32 || a == 0 || (a & (a - 1))) {
            snprintf(c.where, sizeof c.where, "metadata general.alignment");
            fail(&c, "expected a uint32 power of two, found %s %u (offset %zu)",
                 vtype_names[al->type], a, al->value);
            goto out;
        }
        g->alignment = a;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        if (read_tensor_info(&c, &g->tensors[i], i, &rel[i]) != 0) goto out;
        g->by_name[i] = i;
    }
    size_t data = c.pos + (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = data;
    snprintf(c.where, sizeof c.where, "data section");
    if (g->n_tensors && data > g->size) {
        fail(&c, "starts at %zu, past the end of the file (%zu bytes)", data, g->size);
        goto out;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        snprintf(c.where, sizeof c.where, "tensor %.*s", t->name.len > 64 ? 64 : (int)t->name.len,
                 t->name.p);
        if (rel[i] % g->alignment) {
            fail(&c, "data offset %zu is not a multiple of the alignment %zu", rel[i],
                 g->alignment);
            goto out;
        }
        size_t room = g->size - data;
        if (rel[i] > room || t->bytes > room - rel[i]) {
            fail(&c, "data [%zu, +%zu) relative to the data section at %zu runs past the end of "
                     "the file (%zu bytes)",
                 rel[i], t->bytes, data, g->size);
            goto out;
        }
        t->offset = data + rel[i];
    }
    sort_ctx = g;
    qsort(g->by_name, g->n_tensors, sizeof *g->by_name, cmp_index);
    for (size_t i = 1; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[g->by_name[i]];
        if (cmp_name(&g->tensors[g->by_name[i - 1]].name, &t->name) == 0) {
            fprintf(stderr, "%s: tensor %.*s appears twice\n", g->path,
                    t->name.len > 64 ? 64 : (int)t->name.len, t->name.p);
            goto out;
        }
    }
    err = 0;
out:
    free(rel);
    return err;
}

int gguf_sniff(const uint8_t *head, size_t n) { return n >= 4 && memcmp(head, "GGUF", 4) == 0; }

int gguf_open(Gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->path = path;
    int fd = file_open_regular(path, "a GGUF file", &g->size);
    if (fd < 0) return -1;
    if (g->size < 24) {
        fprintf(stderr, "%s: %zu bytes, shorter than the 24-byte GGUF header\n", path, g->size);
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        fprintf(stderr, "%s: cannot map: %s\n", path, strerror(errno));
        return -1;
    }
    g->map = map;
    if (parse(g) != 0) {
        gguf_close(g);
        return -1;
    }
    return 0;
}

void gguf_close(Gguf *g) {
    if (g->map) munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->by_name);
    memset(g, 0, sizeof *g);
}

const GgufKv *gguf_find_kv(const Gguf *g, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == n && memcmp(g->kv[i].key.p, key, n) == 0) return &g->kv[i];
    return NULL;
}

const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name) {
    GgufStr s = {name, strlen(name)};
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_name(&g->tensors[g->by_name[mid]].name, &s);
        if (r == 0) return &g->tensors[g->by_name[mid]];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// typed metadata: each returns 1 if present, 0 if absent, -1 after a message

static int kv_wrong(const Gguf *g, const GgufKv *kv, const char *want) {
    fprintf(stderr, "%s: metadata %.*s is %s%s%s, expected %s\n", g->path, (int)kv->key.len,
            kv->key.p, kv->type == GGUF_ARRAY ? "an array of " : "a ",
            vtype_names[kv->type == GGUF_ARRAY ? kv->arr_type : kv->type],
            kv->type == GGUF_ARRAY ? "" : " value", want);
    return -1;
}

// An integer of any width; must lie in [lo, hi].
static int get_int(const Gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const GgufKv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    const uint8_t *p = g->map + kv->value;
    int64_t v;
    uint64_t u = 0;
    switch (kv->type) {
    case GGUF_U8: v = p[0]; break;
    case GGUF_I8: v = (int8_t)p[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); v = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); v = x; break; }
    case GGUF_I64: memcpy(&v, p, 8); break;
    case GGUF_U64:
        memcpy(&u, p, 8);
        v = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        break;
    default: return kv_wrong(g, kv, "an integer");
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "%s: metadata %s is %lld, expected %lld..%lld\n", g->path, key,
                (long long)v, (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 1;
}

static int get_float(const Gguf *g, const char *key, double *out) {
    const GgufKv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type == GGUF_F32) {
        float f;
        memcpy(&f, g->map + kv->value, 4);
        *out = f;
    } else if (kv->type == GGUF_F64) {
        memcpy(out, g->map + kv->value, 8);
    } else {
        return kv_wrong(g, kv, "a float");
    }
    return 1;
}

static int get_str(const Gguf *g, const char *key, GgufStr *out) {
    const GgufKv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_STRING) return kv_wrong(g, kv, "a string");
    uint64_t len;
    memcpy(&len, g->map + kv->value, 8);  // validated by the parser
    out->p = (const char *)g->map + kv->value + 8;
    out->len = (size_t)len;
    return 1;
}

static int str_is(GgufStr s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

// ----------------------------------------------------------------------------
// the tokenizer: tokenizer.ggml.* into our section format, then tokenizer_parse

static const GgufKv *get_array(const Gguf *g, const char *key, uint32_t type, const char *tname,
                               int required) {
    const GgufKv *kv = gguf_find_kv(g, key);
    if (!kv) {
        if (required) fprintf(stderr, "%s: metadata %s is missing\n", g->path, key);
        return NULL;
    }
    if (kv->type != GGUF_ARRAY || kv->arr_type != type) {
        kv_wrong(g, kv, tname);
        return NULL;
    }
    return kv;
}

// The string at *pos of a string array (gguf_open checked that it lies in the file); moves
// *pos past it.
static GgufStr array_str(const Gguf *g, size_t *pos) {
    uint64_t len;
    memcpy(&len, g->map + *pos, 8);
    GgufStr s = {(const char *)g->map + *pos + 8, (size_t)len};
    *pos += 8 + (size_t)len;
    return s;
}

// tokenizer.ggml.model "gpt2": byte-level BPE (tokenizer/bytelevel.h); tokenizer.ggml.pre
// names the pre-tokenizer, and Llama 3's ("llama-bpe") does not merge a piece that is a token.
static int load_bpe_tokenizer(GgufModel *m) {
    const Gguf *g = &m->g;
    GgufStr pre;
    int r = get_str(g, "tokenizer.ggml.pre", &pre);
    if (r <= 0) {
        if (r == 0) fprintf(stderr, "%s: metadata tokenizer.ggml.pre is missing: the "
                                    "pre-tokenizer of a byte-level BPE is unknown\n", g->path);
        return -1;
    }
    char name[65];
    snprintf(name, sizeof name, "%.*s", pre.len > 64 ? 64 : (int)pre.len, pre.p);
    int pretok = pretok_from_name(name);
    if (strcmp(name, "llama3") == 0 || strcmp(name, "llama-v3") == 0) pretok = PRETOK_LLAMA3;
    if (pretok < 0 || memchr(pre.p, 0, pre.len)) {
        fprintf(stderr, "%s: pre-tokenizer \"%s\" is not supported (gpt-2, llama-bpe, qwen2 and "
                        "smollm are)\n", g->path, name);
        return -1;
    }
    const GgufKv *tokens = get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, "an array of strings", 1);
    const GgufKv *merges = tokens ? get_array(g, "tokenizer.ggml.merges", GGUF_STRING,
                                              "an array of strings", 1) : NULL;
    if (!merges) return -1;
    const GgufKv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && !(types->type == GGUF_ARRAY &&
                   (types->arr_type == GGUF_I32 || types->arr_type == GGUF_U32)))
        return kv_wrong(g, types, "an array of int32");
    size_t n = tokens->arr_n, nm = merges->arr_n;
    if (n == 0 || n > INT32_MAX || (types && types->arr_n != n)) {
        fprintf(stderr, "%s: %zu tokens (expected 1..%d) and %zu token types\n", g->path, n,
                INT32_MAX, types ? types->arr_n : n);
        return -1;
    }
    int64_t bos = -1, eos = -1;
    if (get_int(g, "tokenizer.ggml.bos_token_id", 0, (int64_t)n - 1, &bos) < 0 ||
        get_int(g, "tokenizer.ggml.eos_token_id", 0, (int64_t)n - 1, &eos) < 0)
        return -1;
    BlStr *tok = malloc(n * sizeof *tok), *mer = malloc((2 * nm + 1) * sizeof *mer);
    uint8_t *ty = malloc(n);
    int err = -1;
    if (!tok || !mer || !ty) {
        fprintf(stderr, "%s: out of memory for the vocabulary\n", g->path);
        goto done;
    }
    size_t pos = tokens->value;
    for (size_t i = 0; i < n; i++) {
        GgufStr s = array_str(g, &pos);
        int32_t type = TOK_NORMAL;
        if (types) memcpy(&type, g->map + types->value + 4 * i, 4);
        tok[i] = (BlStr){s.p, s.len};
        ty[i] = type >= TOK_NORMAL && type <= TOK_BYTE ? (uint8_t)type : 0;  // 0: refused
    }
    pos = merges->value;
    for (size_t k = 0; k < nm; k++) {  // "a b": two tokens' strings, which hold no space
        GgufStr s = array_str(g, &pos);
        const char *sp = memchr(s.p, ' ', s.len);
        size_t la = sp ? (size_t)(sp - s.p) : 0;
        if (!sp || memchr(sp + 1, ' ', s.len - la - 1)) {
            fprintf(stderr, "%s: merge %zu \"%.*s\" is not two tokens separated by a space\n",
                    g->path, k, s.len > 64 ? 64 : (int)s.len, s.p);
            goto done;
        }
        mer[2 * k] = (BlStr){s.p, la};
        mer[2 * k + 1] = (BlStr){sp + 1, s.len - la - 1};
    }
    // never TOK_FLAG_NFC: GGUF carries no normalizer (convert_hf_to_gguf.py drops Qwen2's NFC),
    // and llama.cpp tokenizes qwen2 without one; this road does the same
    if (bytelevel_tokenizer(&m->tok, tok, ty, n, mer, nm, pretok,
                            pretok == PRETOK_LLAMA3 ? TOK_FLAG_IGNORE_MERGES : 0, (int)bos,
                            (int)eos, g->path) == TOK_OK)
        err = 0;
done:
    free(tok), free(mer), free(ty);
    return err;
}

static int load_tokenizer(GgufModel *m) {
    const Gguf *g = &m->g;
    GgufStr model;
    int r = get_str(g, "tokenizer.ggml.model", &model);
    if (r < 0) return -1;
    if (r == 0) {
        fprintf(stderr, "%s: metadata tokenizer.ggml.model is missing: no vocabulary\n", g->path);
        return -1;
    }
    if (str_is(model, "gpt2")) return load_bpe_tokenizer(m);
    if (!str_is(model, "llama")) {
        fprintf(stderr, "%s: tokenizer model \"%.*s\", export reads \"llama\" (sentencepiece "
                        "BPE) and \"gpt2\" (byte-level BPE)\n", g->path,
                model.len > 64 ? 64 : (int)model.len, model.p);
        return -1;
    }
    const GgufKv *tokens = get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, "an array of strings", 1);
    if (!tokens) return -1;
    const GgufKv *scores = get_array(g, "tokenizer.ggml.scores", GGUF_F32, "an array of float32", 1);
    if (!scores) return -1;
    const GgufKv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && !(types->type == GGUF_ARRAY && types->arr_type == GGUF_I32) &&
        !(types->type == GGUF_ARRAY && types->arr_type == GGUF_U32))
        return kv_wrong(g, types, "an array of int32");
    size_t n = tokens->arr_n;
    if (n == 0 || n > INT32_MAX) {
        fprintf(stderr, "%s: %zu tokens, expected 1..%d\n", g->path, n, INT32_MAX);
        return -1;
    }
    if (scores->arr_n != n || (types && types->arr_n != n)) {
        fprintf(stderr, "%s: %zu tokens but %zu scores and %zu token types\n", g->path, n,
                scores->arr_n, types ? types->arr_n : n);
        return -1;
    }
    int64_t bos = 1, eos = 2;
    if (get_int(g, "tokenizer.ggml.bos_token_id", 0, (int64_t)n - 1, &bos) < 0 ||
        get_int(g, "tokenizer.ggml.eos_token_id", 0, (int64_t)n - 1, &eos) < 0)
        return -1;
    if (bos >= (int64_t)n || eos >= (int64_t)n) {
        fprintf(stderr, "%s: default bos 1 / eos 2 are beyond the %zu tokens\n", g->path, n);
        return -1;
    }
    // section: 8 + per token 9 + len bytes; "\xe2\x96\x81" (U+2581) becomes a space, so no
    // piece grows and the strings' total bounds the size
    size_t cap = 8, pos = tokens->value;
    for (size_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, g->map + pos, 8);
        cap += 9 + (size_t)len;  // the strings lie in the file: no overflow
        pos += 8 + (size_t)len;
    }
    uint8_t *sec = malloc(cap);
    if (!sec) {
        fprintf(stderr, "%s: out of memory for the vocabulary\n", g->path);
        return -1;
    }
    uint8_t *w = sec + 8;
    uint32_t max_len = 0, count = (uint32_t)n;
    pos = tokens->value;
    for (size_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, g->map + pos, 8);
        const uint8_t *s = g->map + pos + 8;
        pos += 8 + (size_t)len;
        float score;
        memcpy(&score, g->map + scores->value + 4 * i, 4);
        int32_t type = TOK_NORMAL;
        if (types) memcpy(&type, g->map + types->value + 4 * i, 4);
        if (type < TOK_NORMAL || type > TOK_BYTE) {
            fprintf(stderr, "%s: token %zu has type %d, expected 1..6\n", g->path, i, type);
            free(sec);
            return -1;
        }
        if (len > TOK_MAX_PIECE) {
            fprintf(stderr, "%s: token %zu is %llu bytes long, at most %d expected\n", g->path, i,
                    (unsigned long long)len, TOK_MAX_PIECE);
            free(sec);
            return -1;
        }
        uint8_t *hdr = w;
        w += 9;
        uint32_t out = 0;
        for (size_t k = 0; k < len; k++) {
            if (k + 2 < len && s[k] == 0xe2 && s[k + 1] == 0x96 && s[k + 2] == 0x81) {
                w[out++] = ' ';
                k += 2;
            } else {
                w[out++] = s[k];
            }
        }
        memcpy(hdr, &score, 4);
        memcpy(hdr + 4, &out, 4);
        hdr[8] = (uint8_t)type;
        w += out;
        if (out > max_len) max_len = out;
    }
    memcpy(sec, &count, 4);
    memcpy(sec + 4, &max_len, 4);
    int err = tokenizer_parse(&m->tok, sec, (size_t)(w - sec), 1, (int)n, (int)bos, (int)eos,
                              g->path);
    free(sec);
    if (err != TOK_OK) return -1;
    // tokenizer.ggml.add_space_prefix false (Gemma's): no dummy prefix (llama.cpp's default: one)
    const GgufKv *asp = gguf_find_kv(g, "tokenizer.ggml.add_space_prefix");
    if (asp && asp->type != GGUF_BOOL) {
        tokenizer_free(&m->tok);
        return kv_wrong(g, asp, "a bool");
    }
    if (asp && !g->map[asp->value]) m->tok.flags |= TOK_FLAG_PREFIX_NEVER;
    return 0;
}

// ----------------------------------------------------------------------------
// the model glue: llama, qwen2, qwen3 and phi3

// The architectures export reads, and how each stores q and k: llama's converter reorders
// their rows into adjacent pairs (ours); the others keep Hugging Face's halves.
static const struct { const char *name; int halves; } archs[] = {
    {"llama", 0}, {"qwen2", 1}, {"qwen3", 1}, {"phi3", 1}, {"gemma3", 1},
};
#define ARCH_GEMMA3 4
#define N_ARCHS (sizeof archs / sizeof archs[0])

// Widens elements [k, k + n) of GGUF tensor x (of a type export reads) to f32: the whole
// blocks among them directly, a block cut at either end through a copy. Rows are whole
// blocks, so element e is in block e / elems.
static void widen(const Gguf *g, const GgufTensor *x, size_t k, size_t n, float *out) {
    const uint8_t *p = g->map + x->offset;
    const TypeInfo *ti = type_info(type_of_ggml(x->type));
    const size_t be = ti->block_elems, bb = ti->block_bytes;
    for (size_t e = k; e < k + n;) {
        size_t at = e % be, cnt = be - at < k + n - e ? be - at : k + n - e;
        if (at == 0 && cnt == be) {  // whole blocks
            cnt = (k + n - e) / be * be;
            ti->to_float(p + e / be * bb, out + (e - k), cnt);
        } else {
            float tmp[256];  // the most weights of a block (the K types')
            ti->to_float(p + e / be * bb, tmp, be);
            memcpy(out + (e - k), tmp + at, cnt * sizeof(float));
        }
        e += cnt;
    }
}

static int piece_read(void *ctx, const void *src, size_t first, size_t n, float *out) {
    widen(ctx, src, first, n, out);
    return 0;
}

// Sets pc to rows row0 .. row0 + rows - 1 of GGUF tensor `fmt` (layer l), checked for
// presence, type and shape: ne[0] = cols, ne[1] = total rows (a vector of total when cols is
// 0). halves as in Piece. Returns 0, or -1 after a message.
static int gguf_piece(void *ctx, Piece *pc, const char *fmt, size_t l, size_t total,
                      size_t cols, size_t row0, size_t rows, size_t halves) {
    const GgufModel *m = ctx;
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    const GgufTensor *x = gguf_find_tensor(&m->g, name);
    const char *path = m->g.path;
    if (!x) {
        fprintf(stderr, "%s: tensor %s is missing\n", path, name);
        return -1;
    }
    if (type_of_ggml(x->type) < 0) {
        fprintf(stderr, "%s: tensor %s has type %s, export reads F32, F16, BF16, Q8_0, Q4_0, "
                "Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS\n", path, name,
                ggml_type_name(x->type));
        return -1;
    }
    size_t c = cols ? cols : total, r = cols ? total : 1;
    if (x->ne[0] != c || x->ne[1] != r || x->ne[2] != 1 || x->ne[3] != 1) {
        if (!cols)
            fprintf(stderr, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%zu]\n",
                    path, name, (unsigned long long)x->ne[0], (unsigned long long)x->ne[1],
                    (unsigned long long)x->ne[2], (unsigned long long)x->ne[3], total);
        else
            fprintf(stderr,
                    "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%zu, %zu] "
                    "(ne[0] = input columns %zu, ne[1] = output rows %zu)\n",
                    path, name, (unsigned long long)x->ne[0], (unsigned long long)x->ne[1],
                    (unsigned long long)x->ne[2], (unsigned long long)x->ne[3], cols, total, cols,
                    total);
        return -1;
    }
    *pc = (Piece){x, row0, rows, cols ? cols : 1, halves};
    return 0;
}

#define ARCH_FAIL(...)                       \
    do {                                      \
        fprintf(stderr, "%s: ", path);        \
        fprintf(stderr, __VA_ARGS__);         \
        fputc('\n', stderr);                  \
        return -1;                            \
    } while (0)

// The metadata key "<arch>.<key>", in a static buffer.
static const char *akey(const GgufModel *m, const char *key) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s.%s", archs[m->arch].name, key);
    return buf;
}

// Gemma 3's fields, as llama.cpp reads a gemma3 GGUF (src/models/gemma3.cpp): the embedding
// times sqrtf(dim); queries scaled by head_dim^-1/2, but for the 27B model (62 layers) by
// (dim / n_heads)^-1/2 (a GGUF carries no query_pre_attn_scalar); with a sliding window, the
// windowed layers every attention.sliding_window_pattern (default 6) but the last of each
// period, with RoPE base rope.freq_base_swa (default 10000), unscaled; GeGLU; the norm weights
// already hold Gemma's 1 + w (convert_hf_to_gguf.py adds the 1).
static int gemma3_hparams(GgufModel *m) {
    const Gguf *g = &m->g;
    const char *path = g->path;
    SlHeader *h = &m->header;
    h->flags |= SL_FLAG_GELU;
    h->embed_scale = sqrtf((float)h->dim);
    if (h->n_layers == 62) h->attn_scale = 1.0f / sqrtf((float)(h->dim / h->n_heads));
    if (!h->sliding_window) return 0;
    const GgufKv *pk = gguf_find_kv(g, akey(m, "attention.sliding_window_pattern"));
    if (pk && pk->type == GGUF_ARRAY)
        ARCH_FAIL("%s is a per-layer array; export reads its integer form",
                  akey(m, "attention.sliding_window_pattern"));
    int64_t period = 6;
    if (get_int(g, akey(m, "attention.sliding_window_pattern"), 0, INT32_MAX, &period) < 0)
        return -1;
    double local = 10000.0;
    if (get_float(g, akey(m, "rope.freq_base_swa"), &local) < 0) return -1;
    if (!(local > 0 && local < 1e30)) ARCH_FAIL("%s must be > 0", akey(m, "rope.freq_base_swa"));
    if (period == 1) {  // every layer global
        h->sliding_window = 0;
        return 0;
    }
    h->window_period = period > h->n_layers ? 0 : (int32_t)period;  // 0: every layer windowed
    if (h->window_period) h->rope_local_theta = (float)local;
    else h->rope_theta = (float)local, h->rope_scaling = SL_ROPE_NONE;
    return 0;
}

// Header fields from <arch>.* metadata (when the file has tensors).
static int read_hparams(GgufModel *m) {
    const Gguf *g = &m->g;
    const char *path = g->path;
    SlHeader *h = &m->header;
    static const char *const need[] = {"context_length", "embedding_length", "block_count",
                                       "feed_forward_length", "attention.head_count"};
    int64_t v[6];
    for (size_t i = 0; i < 5; i++) {
        int r = get_int(g, akey(m, need[i]), 1, INT32_MAX, &v[i]);
        if (r < 0) return -1;
        if (r == 0) ARCH_FAIL("metadata %s is missing", akey(m, need[i]));
    }
    v[5] = v[4];
    if (get_int(g, akey(m, "attention.head_count_kv"), 1, INT32_MAX, &v[5]) < 0) return -1;
    h->seq_len = (int32_t)v[0];
    h->dim = (int32_t)v[1];
    h->n_layers = (int32_t)v[2];
    h->hidden_dim = (int32_t)v[3];
    h->n_heads = (int32_t)v[4];
    h->n_kv_heads = (int32_t)v[5];
    if (h->dim % h->n_heads)
        ARCH_FAIL("attention.head_count %d does not divide embedding_length %d", h->n_heads,
                   h->dim);
    if ((size_t)h->n_layers > g->n_tensors / 6)
        ARCH_FAIL("block_count %d, but the file holds only %zu tensors (at least 6 per block)",
                   h->n_layers, g->n_tensors);
    // head_dim: attention.key_length where given (Qwen3's is not embedding_length / head_count)
    int64_t hd = h->dim / h->n_heads;
    if (get_int(g, akey(m, "attention.key_length"), 1, 65536, &hd) < 0) return -1;
    h->head_dim = (int32_t)hd;
    static const char *const head_keys[] = {"rope.dimension_count", "attention.value_length"};
    for (int i = 0; i < 2; i++) {
        int64_t d;
        int r = get_int(g, akey(m, head_keys[i]), 0, INT32_MAX, &d);
        if (r < 0) return -1;
        if (r && d != h->head_dim)
            ARCH_FAIL("metadata %s is %lld, but head_dim is %d: export reads models whose "
                       "rotary and value dimensions equal head_dim", akey(m, head_keys[i]),
                       (long long)d, h->head_dim);
    }
    double theta = 10000.0, eps;
    if (get_float(g, akey(m, "rope.freq_base"), &theta) < 0) return -1;
    int r = get_float(g, akey(m, "attention.layer_norm_rms_epsilon"), &eps);
    if (r < 0) return -1;
    if (r == 0) ARCH_FAIL("metadata %s is missing", akey(m, "attention.layer_norm_rms_epsilon"));
    h->rope_theta = (float)theta;
    h->norm_eps = (float)eps;
    GgufStr scaling;
    if ((r = get_str(g, akey(m, "rope.scaling.type"), &scaling)) < 0) return -1;
    if (r && str_is(scaling, "linear")) {
        double f = 0;
        if (get_float(g, akey(m, "rope.scaling.factor"), &f) < 0) return -1;
        if (!(f > 0 && f < 1e9))
            ARCH_FAIL("linear rope scaling needs %s > 0", akey(m, "rope.scaling.factor"));
        h->rope_scaling = SL_ROPE_LINEAR;
        h->rope_factor = (float)f;
    } else if (r && !str_is(scaling, "none")) {
        ARCH_FAIL("rope scaling \"%.*s\": export reads none and linear (and rope_freqs)",
                   scaling.len > 32 ? 32 : (int)scaling.len, scaling.p);
    }
    if (gguf_find_tensor(g, "rope_freqs.weight")) {  // Llama 3's scaling, as divisors
        if (h->rope_scaling) ARCH_FAIL("both rope scaling and a rope_freqs tensor");
        h->rope_scaling = SL_ROPE_FREQS;
    }
    int64_t window = 0;  // Phi-3's; llama.cpp itself does not apply it (transformers does)
    if (get_int(g, akey(m, "attention.sliding_window"), 0, INT32_MAX, &window) < 0) return -1;
    h->sliding_window = (int32_t)window;
    if (m->arch == ARCH_GEMMA3 && gemma3_hparams(m) != 0) return -1;
    int64_t experts = 0;
    if (get_int(g, akey(m, "expert_count"), 0, INT32_MAX, &experts) < 0) return -1;
    if (experts > 0) ARCH_FAIL("a mixture of %lld experts: export reads dense models", (long long)experts);
    int64_t vocab;
    if ((r = get_int(g, akey(m, "vocab_size"), 1, INT32_MAX, &vocab)) < 0) return -1;
    if (r && vocab != m->tok.vocab_size)
        ARCH_FAIL("%s %lld, but the vocabulary holds %d tokens", akey(m, "vocab_size"),
                   (long long)vocab, m->tok.vocab_size);
    return 0;
}

// GGUF names of our tensors (%zu: the layer). Phi-3 fuses q, k and v into attn_qkv, and gate
// and up into ffn_up (gate rows first).
static const PieceNames gguf_names = {
    .tensor = {"token_embd.weight", "blk.%zu.attn_norm.weight", "blk.%zu.attn_q.weight",
               "blk.%zu.attn_k.weight", "blk.%zu.attn_v.weight", "blk.%zu.attn_output.weight",
               "blk.%zu.ffn_norm.weight", "blk.%zu.ffn_gate.weight", "blk.%zu.ffn_down.weight",
               "blk.%zu.ffn_up.weight", "output_norm.weight", "output.weight"},
    .qkv = "blk.%zu.attn_qkv.weight",
    .gate_up = "blk.%zu.ffn_up.weight",
    .bias = {"blk.%zu.attn_q.bias", "blk.%zu.attn_k.bias", "blk.%zu.attn_v.bias"},
    .qk_norm = {"blk.%zu.attn_q_norm.weight", "blk.%zu.attn_k_norm.weight"},
    .rope_freqs = "rope_freqs.weight",
    .post_norms = {"blk.%zu.post_attention_norm.weight", "blk.%zu.post_ffw_norm.weight"},
};

static int map_tensors(GgufModel *m) {
    SlHeader *h = &m->header;
    const char *path = m->g.path;
    if (!gguf_find_tensor(&m->g, "output.weight")) h->flags |= SL_FLAG_SHARED_CLASSIFIER;
    if (gguf_find_tensor(&m->g, "blk.0.attn_q.bias")) h->flags |= SL_FLAG_QKV_BIAS;
    if (gguf_find_tensor(&m->g, "blk.0.attn_q_norm.weight")) h->flags |= SL_FLAG_QK_NORM;
    if (gguf_find_tensor(&m->g, "blk.0.post_attention_norm.weight")) h->flags |= SL_FLAG_POST_NORMS;
    if (gguf_find_tensor(&m->g, "blk.0.attn_output.bias") ||
        gguf_find_tensor(&m->g, "blk.0.ffn_down.bias"))
        ARCH_FAIL("biases on the attention output or the feed-forward: export reads q, k and v "
                   "biases only");
    h->n_tensors = SL_T_COUNT;
    h->tokenizer_bytes = 8;  // placeholder so that model_layout can size the tensors
    for (int t = 0; t < SL_T_COUNT; t++) h->tensor_type[t] = SL_F32;
    SlLayout lay;
    if (model_layout(h, NULL, &lay, path) != MODEL_OK) return -1;
    m->pieces.read = piece_read;
    m->pieces.ctx = &m->g;
    PieceNames names = gguf_names;
    names.fused_qkv = gguf_find_tensor(&m->g, "blk.0.attn_qkv.weight") != NULL;
    names.fused_up = !gguf_find_tensor(&m->g, "blk.0.ffn_gate.weight");
    names.halves = archs[m->arch].halves ? (size_t)h->head_dim : 0;
    int wt = SL_F32;
    size_t L = (size_t)h->n_layers, n_types = 0;
    char mixed[160] = "";    // tensors stored as q8_0 from pieces of different types
    if (!(m->layer_types = malloc(7 * L))) {  // at most the 7 layered matrices
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    for (int t = 0; t < SL_T_COUNT; t++) {
        if (!lay.bytes[t]) continue;
        if (pieces_map(&m->pieces, t, h, &lay, &names, gguf_piece, m) != 0) return -1;
        // the GGUF type of every piece: kept where we store it (f32, f16, bf16, q8_0, and every
        // block type export reads), by layer where the layers' block types differ (Q4_K_M's);
        // q8_0 where a matrix's pieces (fused q, k, v) have different block types; f32 where
        // other types differ
        int type = -2, blocks = 0, by_layer = 1;  // by_layer: each layer one stored block type
        int conv = 0;  // values are converted: the pieces' types differ
        size_t np = m->pieces.n_pieces[t], nl = m->pieces.layers[t];
        for (size_t i = 0; i < nl * np; i++) {
            const uint32_t gt = ((const GgufTensor *)m->pieces.piece[t][i].src)->type;
            int ty = type_of_ggml(gt);
            blocks |= block_elems(gt) != 0;
            by_layer &= dtype_ggml(ty) != 0 && (i % np == 0 || ty == type_of_ggml(
                ((const GgufTensor *)m->pieces.piece[t][i - 1].src)->type));
            assert(ty >= 0);  // gguf_piece refused the types we do not store
            conv |= type != -2 && type != ty;
            type = type == -2 || type == ty ? ty : blocks ? SL_Q8_0 : SL_F32;
        }
        if (type == SL_Q8_0 && by_layer && nl == L && L > 1) {  // block types we store, by layer
            type = SL_TYPE_PER_LAYER;
            for (size_t l = 0; l < L; l++)
                m->layer_types[n_types++] = (uint8_t)type_of_ggml(
                    ((const GgufTensor *)m->pieces.piece[t][l * np].src)->type);
        }
        conv &= type == SL_Q8_0;  // (not where the layers' stored types are kept by layer)
        if (conv && !mixed[0]) snprintf(mixed, sizeof mixed, "%s", tensor_name(t));
        else if (conv && strlen(mixed) + strlen(tensor_name(t)) + 3 < sizeof mixed)
            strcat(strcat(mixed, ", "), tensor_name(t));
        h->tensor_type[t] = (uint8_t)(tensor_is_f32(t) ? SL_F32 : type);
        if (t == SL_T_WQ) wt = type == SL_TYPE_PER_LAYER ? m->layer_types[n_types - L] : type;
    }
    h->weight_type = (uint32_t)wt;
    if (mixed[0]) {  // one line: what is converted, why, and how to keep the values exactly
        fprintf(stderr, "%s: note: %s stored as q8_0: their GGUF tensors differ in type; --dtype "
                "f32 keeps every value exactly\n", path, mixed);
    }
    return 0;
}

const char *gguf_arch_name(const GgufModel *m) { return archs[m->arch].name; }

static int arch_of(GgufStr name) {
    for (size_t i = 0; i < N_ARCHS; i++)
        if (str_is(name, archs[i].name)) return (int)i;
    return -1;
}

int gguf_model_open(GgufModel *m, const char *path) {
    memset(m, 0, sizeof *m);
    if (gguf_open(&m->g, path) != 0) return -1;
    GgufStr arch;
    int r = get_str(&m->g, "general.architecture", &arch);
    if (r == 0) fprintf(stderr, "%s: metadata general.architecture is missing\n", path);
    else if (r > 0 && m->g.n_tensors > 0 && (m->arch = arch_of(arch)) < 0)  // vocabulary-only: any
        fprintf(stderr, "%s: architecture \"%.*s\", export reads llama (also Mistral's), qwen2, "
                "qwen3, phi3 and gemma3\n", path, arch.len > 64 ? 64 : (int)arch.len, arch.p);
    else if (r > 0 && load_tokenizer(m) == 0) {
        SlHeader *h = &m->header;
        h->vocab_size = m->tok.vocab_size;
        h->bos_id = m->tok.bos_id;
        h->eos_id = m->tok.eos_id;
        // end-of-turn and end-of-message ids also end a generation (Llama 3's <|eot_id|>)
        static const char *const stops[] = {"tokenizer.ggml.eot_token_id",
                                            "tokenizer.ggml.eom_token_id"};
        int bad = 0;
        for (int i = 0; i < 2 && !bad; i++) {
            int64_t id = -1;
            bad = get_int(&m->g, stops[i], 0, (int64_t)h->vocab_size - 1, &id) < 0;
            if (id >= 0) model_add_stop(h, (int)id);  // two ids: never more than SL_MAX_STOP
        }
        // Gemma's <end_of_turn>, which llama.cpp takes for an end-of-generation id by its text
        // (its GGUF names no eot_token_id)
        int eot = tokenizer_lookup(&m->tok, "<end_of_turn>", 13);
        if (eot >= 0 && m->tok.types[eot] == TOK_CONTROL) model_add_stop(h, eot);
        // tokenizer.ggml.add_bos_token false: prompts start without BOS (Qwen's files). Absent,
        // llama.cpp's default: BOS for sentencepiece and Llama 3's BPE, none for other BPEs
        const GgufKv *ab = gguf_find_kv(&m->g, "tokenizer.ggml.add_bos_token");
        if (!bad && ab && ab->type != GGUF_BOOL) bad = kv_wrong(&m->g, ab, "a bool") < 0;
        int adds_bos = m->tok.kind == TOK_SPM || m->tok.pretok == PRETOK_LLAMA3;
        if (!bad && ab) adds_bos = m->g.map[ab->value] != 0;
        if (!adds_bos) h->flags |= SL_FLAG_NO_BOS;
        if (!bad && get_str(&m->g, "tokenizer.chat_template", &m->chat_template) < 0) bad = 1;
        if (!bad && m->chat_template.len > SL_CHAT_TEMPLATE_MAX) {
            fprintf(stderr, "%s: tokenizer.chat_template of %zu bytes, at most %u\n", path,
                    m->chat_template.len, SL_CHAT_TEMPLATE_MAX);
            bad = 1;
        }
        h->chat_template_bytes = (uint32_t)m->chat_template.len;
        // the recommended sampling, as llama.cpp reads it (common_init_sampler_from_model)
        static const struct { const char *key; uint32_t bit; } samp[] = {
            {"general.sampling.temp", SL_SAMPLE_TEMPERATURE},
            {"general.sampling.top_p", SL_SAMPLE_TOP_P},
            {"general.sampling.top_k", SL_SAMPLE_TOP_K},
            {"general.sampling.min_p", SL_SAMPLE_MIN_P},
            {"general.sampling.penalty_repeat", SL_SAMPLE_REPEAT_PENALTY}};
        for (size_t i = 0; i < sizeof samp / sizeof samp[0] && !bad; i++) {
            double v;
            int64_t k;
            int got = samp[i].bit == SL_SAMPLE_TOP_K ? get_int(&m->g, samp[i].key, 0, INT32_MAX, &k)
                                                     : get_float(&m->g, samp[i].key, &v);
            if (got > 0 && samp[i].bit == SL_SAMPLE_TOP_K) v = (double)k;
            if (got < 0) bad = 1;
            else if (got > 0 && model_set_sampling(h, samp[i].bit, v) != 0) {
                fprintf(stderr, "%s: metadata %s is %g, out of its range\n", path, samp[i].key, v);
                bad = 1;
            }
        }
        if (bad) {
            gguf_model_close(m);
            return -1;
        }
        if (m->g.n_tensors == 0) return 0;  // a vocabulary-only file
        if (read_hparams(m) == 0 && map_tensors(m) == 0) return 0;
    }
    gguf_model_close(m);
    return -1;
}

void gguf_model_close(GgufModel *m) {
    pieces_free(&m->pieces);
    free(m->layer_types);
    tokenizer_free(&m->tok);
    gguf_close(&m->g);
    memset(m, 0, sizeof *m);
}

int gguf_model_fill(void *ctx, int t, size_t offset, void *buf, size_t n) {
    GgufModel *m = ctx;
    return pieces_fill(&m->pieces, t, offset, buf, n);
}

static int raw_read(void *ctx, const void *src, size_t first, size_t n, void *out) {
    const Gguf *g = ctx;
    memcpy(out, g->map + ((const GgufTensor *)src)->offset + first, n);
    return 0;
}

int gguf_model_raw(void *ctx, int t, size_t offset, void *buf, size_t n) {
    GgufModel *m = ctx;
    size_t L = m->pieces.layers[t], *row_bytes = calloc(L ? L : 1, sizeof(size_t));
    if (!row_bytes) {
        fprintf(stderr, "%s: out of memory\n", m->g.path);
        return -1;
    }
    for (size_t l = 0; l < L; l++) {  // each layer's blocks per row (the layers' types may differ)
        const Piece *pc = m->pieces.piece[t] + l * m->pieces.n_pieces[t];
        size_t be = 0, bb = 0;
        if (ggml_block_info(((const GgufTensor *)pc->src)->type, &be, &bb))
            row_bytes[l] = pc->cols / be * bb;
    }
    int rc = pieces_fill_raw(&m->pieces, t, offset, buf, n, row_bytes, raw_read);
    free(row_bytes);
    return rc;
}

// safetensors.c: the safetensors reader (see safetensors.h).
#define _POSIX_C_SOURCE 200809L
#include "convert/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fileio.h"
#include "io/json.h"
#include "kernels/quant.h"

static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int dtype_size(const char *d) {
    static const struct { const char *name; int size; } k[] = {
        {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4},
        {"U32", 4}, {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(d, k[i].name)) return k[i].size;
    return 0;
}

// Adds the tensors of one header (JSON) to m; data starts at data_start, the file is size bytes.
static int add_tensors(StModel *m, int file, const JsonValue *root, uint64_t data_start,
                       uint64_t size, const char *path) {
    if (root->type != JSON_OBJECT) {
        fprintf(stderr, "%s: the header is %s, expected an object\n", path,
                json_type_name(root->type));
        return -1;
    }
    uint64_t data_bytes = size - data_start;
    StTensor *nt = realloc(m->tensors, (m->n_tensors + root->n) * sizeof *nt);
    if (!nt) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    m->tensors = nt;
    for (size_t i = 0; i < root->n; i++) {
        const JsonValue *e = &root->items[i];
        if (!strcmp(e->key, "__metadata__")) continue;
        size_t hdr = 8 + e->offset;  // the value's byte offset in the file
        const JsonValue *dt = json_get(e, "dtype"), *sh = json_get(e, "shape"),
                        *off = json_get(e, "data_offsets");
        if (e->type != JSON_OBJECT || !dt || dt->type != JSON_STRING || !sh ||
            sh->type != JSON_ARRAY || !off || off->type != JSON_ARRAY || off->n != 2) {
            fprintf(stderr, "%s: tensor \"%s\" (header byte %zu): expected {\"dtype\": string, "
                    "\"shape\": [...], \"data_offsets\": [begin, end]}\n", path, e->key, hdr);
            return -1;
        }
        StTensor t = {0};
        int es = dt->len < sizeof t.dtype ? dtype_size(dt->str) : 0;
        if (!es) {
            fprintf(stderr, "%s: tensor \"%s\": unknown dtype \"%.16s\"\n", path, e->key, dt->str);
            return -1;
        }
        snprintf(t.dtype, sizeof t.dtype, "%s", dt->str);
        t.elsize = es;
        if (sh->n > ST_MAX_DIMS) {
            fprintf(stderr, "%s: tensor \"%s\": %zu dimensions, at most %d\n", path, e->key, sh->n,
                    ST_MAX_DIMS);
            return -1;
        }
        t.ndim = (int)sh->n;
        t.numel = 1;
        for (size_t d = 0; d < sh->n; d++) {
            long long v;
            if (!json_int(&sh->items[d], 0, (1LL << 53), &v)) {
                fprintf(stderr, "%s: tensor \"%s\": shape[%zu] is not a non-negative integer "
                        "(header byte %zu)\n", path, e->key, d, 8 + sh->items[d].offset);
                return -1;
            }
            t.shape[d] = (uint64_t)v;
            if (v && t.numel > UINT64_MAX / (uint64_t)v) {
                fprintf(stderr, "%s: tensor \"%s\": shape overflows\n", path, e->key);
                return -1;
            }
            t.numel *= (uint64_t)v;
        }
        long long b, en;
        if (!json_int(&off->items[0], 0, (1LL << 53), &b) ||
            !json_int(&off->items[1], 0, (1LL << 53), &en) || en < b) {
            fprintf(stderr, "%s: tensor \"%s\": bad data_offsets (header byte %zu)\n", path,
                    e->key, 8 + off->offset);
            return -1;
        }
        if ((uint64_t)en > data_bytes) {
            fprintf(stderr, "%s: tensor \"%s\": data ends at byte %llu of the data, past the "
                    "file's %llu data bytes (truncated?)\n", path, e->key, (unsigned long long)en,
                    (unsigned long long)data_bytes);
            return -1;
        }
        if (t.numel > UINT64_MAX / (uint64_t)es || t.numel * (uint64_t)es != (uint64_t)(en - b)) {
            fprintf(stderr, "%s: tensor \"%s\": %llu bytes of data, its shape and %s need %llu\n",
                    path, e->key, (unsigned long long)(en - b), t.dtype,
                    (unsigned long long)(t.numel * (uint64_t)es));
            return -1;
        }
        t.begin = data_start + (uint64_t)b;
        t.file = file;
        if (st_find(m, e->key)) {
            fprintf(stderr, "%s: tensor \"%s\" appears twice\n", path, e->key);
            return -1;
        }
        if (!(t.name = strdup(e->key))) {
            fprintf(stderr, "%s: out of memory\n", path);
            return -1;
        }
        m->tensors[m->n_tensors++] = t;
    }
    return 0;
}

int st_open_file(StModel *m, const char *path) {
    StFile *nf = realloc(m->files, (size_t)(m->n_files + 1) * sizeof *nf);
    if (!nf) return -1;
    m->files = nf;
    StFile *f = &m->files[m->n_files];
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) return -1;
    m->n_files++;
    size_t size;
    if ((f->fd = file_open_regular(path, "a safetensors file", &size)) < 0) return -1;
    f->size = size;
    uint8_t len8[8];
    if (f->size < 8 || pread_all(f->fd, len8, 8, 0) != 0) {
        fprintf(stderr, "%s: %llu bytes, shorter than the 8-byte safetensors header length\n",
                path, (unsigned long long)f->size);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > ST_MAX_HEADER || hlen > f->size - 8) {
        fprintf(stderr, "%s: header length %llu at byte 0 exceeds the file (%llu bytes) or the "
                "%u-byte limit: not a safetensors file, or truncated\n", path,
                (unsigned long long)hlen, (unsigned long long)f->size, ST_MAX_HEADER);
        return -1;
    }
    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr || pread_all(f->fd, hdr, (size_t)hlen, 8) != 0) {
        fprintf(stderr, "%s: cannot read the %llu-byte header\n", path, (unsigned long long)hlen);
        free(hdr);
        return -1;
    }
    // the format allows trailing spaces as padding
    size_t n = (size_t)hlen;
    while (n > 0 && hdr[n - 1] == ' ') n--;
    JsonValue root;
    JsonError err;
    if (json_parse(hdr, n, &root, &err) != 0) {
        fprintf(stderr, "%s: bad JSON header at byte %zu: %s\n", path, 8 + err.offset, err.msg);
        free(hdr);
        return -1;
    }
    free(hdr);
    int rc = add_tensors(m, m->n_files - 1, &root, 8 + hlen, f->size, path);
    json_free(&root);
    return rc;
}

// A shard name from the index must be a plain file name in the same directory.
static int plain_name(const char *s, size_t len) {
    if (len == 0 || len > 255 || memchr(s, '/', len) || memchr(s, '\0', len)) return 0;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int open_index(StModel *m, const char *dir, const char *index) {
    char *buf;
    size_t n;
    if (file_read(index, 64u << 20, &buf, &n) != 0) return -1;
    JsonValue root;
    JsonError err;
    if (json_parse(buf, n, &root, &err) != 0) {
        fprintf(stderr, "%s: bad JSON at byte %zu: %s\n", index, err.offset, err.msg);
        free(buf);
        return -1;
    }
    free(buf);
    int rc = -1;
    const JsonValue *map = json_get(&root, "weight_map");
    if (!map || map->type != JSON_OBJECT || map->n == 0) {
        fprintf(stderr, "%s: no \"weight_map\" object of tensor names to shard files\n", index);
        goto done;
    }
    for (size_t i = 0; i < map->n; i++) {
        const JsonValue *v = &map->items[i];
        if (v->type != JSON_STRING || !plain_name(v->str, v->len)) {
            fprintf(stderr, "%s: weight_map[\"%s\"] (byte %zu) is not a file name in the same "
                    "directory\n", index, map->items[i].key, v->offset);
            goto done;
        }
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = !strcmp(map->items[j].str, v->str);
        if (seen) continue;
        size_t plen = strlen(dir) + v->len + 2;
        char *path = malloc(plen);
        if (!path) goto done;
        snprintf(path, plen, "%s/%s", dir, v->str);
        int r = st_open_file(m, path);
        free(path);
        if (r != 0) goto done;
    }
    for (size_t i = 0; i < map->n; i++) {
        const StTensor *t = st_find(m, map->items[i].key);
        const char *file = t ? strrchr(m->files[t->file].path, '/') + 1 : NULL;
        if (!t || strcmp(file, map->items[i].str) != 0) {
            fprintf(stderr, "%s: tensor \"%s\" is not in %s, where weight_map puts it\n", index,
                    map->items[i].key, map->items[i].str);
            goto done;
        }
    }
    rc = 0;
done:
    json_free(&root);
    return rc;
}

int st_open_dir(StModel *m, const char *dir) {
    memset(m, 0, sizeof *m);
    size_t plen = strlen(dir) + 40;
    char *path = malloc(plen);
    if (!path) return -1;
    snprintf(path, plen, "%s/model.safetensors.index.json", dir);
    int rc;
    if (access(path, F_OK) == 0) {
        rc = open_index(m, dir, path);
    } else {
        snprintf(path, plen, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0) {
            fprintf(stderr, "%s: neither model.safetensors nor model.safetensors.index.json\n", dir);
            rc = -1;
        } else {
            rc = st_open_file(m, path);
        }
    }
    free(path);
    if (rc != 0) st_close(m);
    return rc;
}

void st_close(StModel *m) {
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].fd >= 0) close(m->files[i].fd);
        free(m->files[i].path);
    }
    for (size_t i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->files);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

const StTensor *st_find(const StModel *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

int st_read_f32(const StModel *m, const StTensor *t, uint64_t first, size_t count, float *out) {
    const StFile *f = &m->files[t->file];
    int kind = !strcmp(t->dtype, "F32") ? 0 : !strcmp(t->dtype, "F16") ? 1
               : !strcmp(t->dtype, "BF16") ? 2 : -1;
    if (kind < 0) {
        fprintf(stderr, "%s: tensor \"%s\" is %s; export reads F32, F16 and BF16\n", f->path,
                t->name, t->dtype);
        return -1;
    }
    if (first > t->numel || count > t->numel - first) {
        fprintf(stderr, "%s: tensor \"%s\": read past its end\n", f->path, t->name);
        return -1;
    }
    uint64_t off = t->begin + first * (uint64_t)t->elsize;
    errno = 0;
    if (kind == 0) {
        if (pread_all(f->fd, out, count * 4, off) != 0) goto io;
        return 0;
    }
    // 2-byte types: through a small buffer, widened to f32
    uint16_t h[2048];
    for (size_t done = 0; done < count;) {
        size_t k = count - done < 2048 ? count - done : 2048;
        if (pread_all(f->fd, h, k * 2, off + done * 2) != 0) goto io;
        for (size_t i = 0; i < k; i++) out[done + i] = kind == 1 ? fp16_to_f32(h[i]) : bf16_to_f32(h[i]);
        done += k;
    }
    return 0;
io:
    fprintf(stderr, "%s: cannot read tensor \"%s\": %s\n", f->path, t->name,
            errno ? strerror(errno) : "short read");
    return -1;
}

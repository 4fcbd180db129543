// writer.c: atomic writing of a model file (see writer.h).
#define _POSIX_C_SOURCE 200809L
#include "convert/writer.h"

#include "io/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(FILE *f, const void *p, size_t n) {
    return fwrite(p, 1, n, f) == n;
}

static int write_zeros(FILE *f, size_t n) {
    static const uint8_t zeros[SL_ALIGN];
    return write_all(f, zeros, n);
}

#define FILL_CHUNK ((size_t)1 << 20)

// A percentage on stderr, \r-updated at most once per percent, only when stderr is a terminal
// (total 0: off).
typedef struct {
    const char *path;
    size_t total, done;
    int shown;
} Progress;

static void progress_add(Progress *p, size_t n) {
    if (!p->total) return;
    p->done += n;
    int pct = (int)(100.0 * (double)p->done / (double)p->total);
    if (pct == p->shown) return;
    p->shown = pct;
    fprintf(stderr, "\rwriting %s: %d%%", p->path, pct);
    fflush(stderr);
}

// Writes one tensor's bytes, from memory or from the producer in 1 MiB pieces.
static int write_tensor(FILE *f, const TensorData *td, int t, size_t bytes, uint8_t *chunk,
                        Progress *pr) {
    if (!td->fill) {
        if (!write_all(f, td->data[t], bytes)) return -1;
        progress_add(pr, bytes);
        return 0;
    }
    for (size_t off = 0; off < bytes; off += FILL_CHUNK) {
        size_t n = bytes - off < FILL_CHUNK ? bytes - off : FILL_CHUNK;
        if (td->fill(td->ctx, t, off, chunk, n) != 0) return -2;  // the producer printed why
        if (!write_all(f, chunk, n)) return -1;
        progress_add(pr, n);
    }
    return 0;
}

// Writes everything to f; returns 0, -1 with errno set, or -2 if the producer failed.
static int write_body(FILE *f, const SlHeader *h, const SlLayout *lay, const uint8_t *toksec,
                      const TensorData *td, const char *path) {
    if (!write_all(f, h, sizeof *h) || !write_all(f, toksec, h->tokenizer_bytes) ||
        (h->chat_template_bytes && !write_all(f, td->chat_template, h->chat_template_bytes)) ||
        (lay->layer_types_bytes && !write_all(f, td->layer_types, lay->layer_types_bytes)))
        return -1;
    uint8_t *chunk = td->fill ? malloc(FILL_CHUNK) : NULL;
    if (td->fill && !chunk) return -1;
    size_t pos = lay->layer_types_offset + lay->layer_types_bytes;
    int err = 0;
    Progress pr = {path, isatty(STDERR_FILENO) && h->n_tensors ? lay->file_bytes - pos : 0, 0, -1};
    for (int t = 0; t < SL_T_COUNT && !err; t++) {
        if (!lay->bytes[t]) continue;
        size_t pad = lay->offset[t] - pos;
        err = write_zeros(f, pad) ? write_tensor(f, td, t, lay->bytes[t], chunk, &pr) : -1;
        progress_add(&pr, pad);
        pos = lay->offset[t] + lay->bytes[t];
    }
    if (pr.total) fputc('\n', stderr);
    free(chunk);
    return err;
}

int model_version(const SlHeader *h, const Tokenizer *tok) {
    int t = tokenizer_format(tok), v = model_header_version(h);
    return t > v ? t : v;
}

int model_write(const char *path, SlHeader h, const Tokenizer *tok, const TensorData *td,
                size_t *written) {
    memcpy(h.magic, SL_MAGIC, 8);
    h.version = (uint32_t)model_version(&h, tok);
    h.header_bytes = SL_HEADER_BYTES;
    if (h.n_tensors)
        h.n_tensors = h.version >= 3 ? SL_T_COUNT : h.version == 2 ? SL_T_COUNT_V2 : SL_T_COUNT_V1;
    size_t toksize = tokenizer_section_bytes(tok, SL_TOKENIZER_FORMAT(h.version));
    if (toksize > UINT32_MAX) {
        fprintf(stderr, "%s: tokenizer of %zu bytes is too large for the format\n", path, toksize);
        return -1;
    }
    h.tokenizer_bytes = (uint32_t)toksize;
    h.vocab_size = tok->vocab_size;
    SlLayout lay;
    if (model_layout(&h, td->layer_types, &lay, path) != MODEL_OK) return -1;  // same checks as the loader
    uint8_t *toksec = malloc(toksize);
    if (!toksec) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    tokenizer_write_section(tok, SL_TOKENIZER_FORMAT(h.version), toksec);

    OutFile o;
    if (!outfile_open(&o, path)) {
        free(toksec);
        return -1;
    }
    int body = write_body(o.f, &h, &lay, toksec, td, path);  // -2: the producer said why
    int err = errno;
    free(toksec);
    errno = err;
    if (outfile_close(&o, body) != 0) return -1;
    *written = lay.file_bytes;
    return 0;
}

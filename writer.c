// writer.c: atomic writing of a model file (see writer.h).
#define _POSIX_C_SOURCE 200809L
#include "writer.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The temporary file being written, for the signal handler (async-signal-safe use only).
static char tmp_path[PATH_MAX];
static volatile sig_atomic_t tmp_live;

static void on_signal(int sig) {
    if (tmp_live) unlink(tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

void writer_install_cleanup(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    // Past RLIMIT_FSIZE, write() raises SIGXFSZ, whose default action kills the process
    // and leaves the temporary file behind: ignored, the write fails with EFBIG instead,
    // which is reported and cleaned up like a full disk.
    signal(SIGXFSZ, SIG_IGN);
}

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
    if (!write_all(f, h, sizeof *h) || !write_all(f, toksec, h->tokenizer_bytes)) return -1;
    uint8_t *chunk = td->fill ? malloc(FILL_CHUNK) : NULL;
    if (td->fill && !chunk) return -1;
    size_t pos = SL_HEADER_BYTES + (size_t)h->tokenizer_bytes;
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

int model_write(const char *path, SlHeader h, const Tokenizer *tok, const TensorData *td,
                size_t *written) {
    memcpy(h.magic, SL_MAGIC, 8);
    h.version = SL_VERSION;
    h.header_bytes = SL_HEADER_BYTES;
    size_t toksize = tokenizer_section_bytes(tok);
    if (toksize > UINT32_MAX) {
        fprintf(stderr, "%s: tokenizer of %zu bytes is too large for the format\n", path, toksize);
        return -1;
    }
    h.tokenizer_bytes = (uint32_t)toksize;
    h.vocab_size = tok->vocab_size;
    SlLayout lay;
    if (model_layout(&h, &lay, path) != MODEL_OK) return -1;  // same checks as the loader
    uint8_t *toksec = malloc(toksize);
    if (!toksec) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    tokenizer_write_section(tok, toksec);

    if ((size_t)snprintf(tmp_path, sizeof tmp_path, "%s.tmp-XXXXXX", path) >= sizeof tmp_path) {
        fprintf(stderr, "%s: path too long\n", path);
        free(toksec);
        return -1;
    }
    int fd = mkstemp(tmp_path);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot create a temporary file beside it: %s\n", path,
                strerror(errno));
        free(toksec);
        return -1;
    }
    tmp_live = 1;
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);  // mkstemp makes 0600; give the usual permissions
    FILE *f = fdopen(fd, "wb");
    if (!f) close(fd);
    int body = f ? write_body(f, &h, &lay, toksec, td, path) : -1;
    int ok = body == 0 && fflush(f) == 0 && fsync(fd) == 0;
    int err = errno;
    free(toksec);
    if (f && fclose(f) != 0 && ok) ok = 0, err = errno;
    if (ok && rename(tmp_path, path) != 0) ok = 0, err = errno;
    if (!ok) {
        if (body != -2)  // a producer's failure is reported by the producer alone
            fprintf(stderr, "%s: write failed: %s (left as it was)\n", path, strerror(err));
        unlink(tmp_path);
        tmp_live = 0;
        return -1;
    }
    tmp_live = 0;
    *written = lay.file_bytes;
    return 0;
}

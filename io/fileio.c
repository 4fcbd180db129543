// fileio.c: whole files in and out (see fileio.h).
#define _POSIX_C_SOURCE 200809L
#include "io/fileio.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---- reading ----

int file_open_regular(const char *path, const char *what, size_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int ok = fstat(fd, &st) == 0;
    if (!ok) fprintf(stderr, "%s: cannot stat: %s\n", path, strerror(errno));
    else if (S_ISDIR(st.st_mode)) ok = 0, fprintf(stderr, "%s: is a directory, expected %s\n", path, what);
    else if (!S_ISREG(st.st_mode)) ok = 0, fprintf(stderr, "%s: not a regular file\n", path);
    if (!ok) {
        close(fd);
        return -1;
    }
    *size = (size_t)st.st_size;
    return fd;
}

int file_read(const char *path, size_t max, char **buf, size_t *n) {
    assert(max < SIZE_MAX / 2);
    *buf = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char *b = NULL;
    size_t cap = 0, len = 0;  // cap: bytes allocated; room is kept for max + 1 bytes and a NUL
    const char *why = NULL;
    for (;;) {
        if (cap - len < 2) {
            size_t want = cap ? cap * 2 : (size_t)1 << 16;
            if (want > max + 2) want = max + 2;
            char *grown = realloc(b, want);
            if (!grown) {
                why = "out of memory";
                break;
            }
            b = grown, cap = want;
        }
        ssize_t r = read(fd, b + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            why = strerror(errno);
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len > max) {
            fprintf(stderr, "%s: more than the %zu bytes this reader accepts\n", path, max);
            why = "";
            break;
        }
    }
    close(fd);
    if (why) {
        if (*why) fprintf(stderr, "%s: read failed: %s\n", path, why);
        free(b);
        return -1;
    }
    b[len] = '\0';
    *buf = b;
    *n = len;
    return 0;
}

// ---- writing ----

// The temporary file being written, for the signal handler (async-signal-safe use only).
static char tmp_path[PATH_MAX];
static volatile sig_atomic_t tmp_live;

static void on_signal(int sig) {
    if (tmp_live) unlink(tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

void outfile_install_cleanup(void) {
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

FILE *outfile_open(OutFile *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->path = path;
    o->fd = -1;
    if ((size_t)snprintf(tmp_path, sizeof tmp_path, "%s.tmp-XXXXXX", path) >= sizeof tmp_path) {
        fprintf(stderr, "%s: path too long\n", path);
        return NULL;
    }
    int fd = mkstemp(tmp_path);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot create a temporary file beside it: %s\n", path,
                strerror(errno));
        return NULL;
    }
    tmp_live = 1;
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);  // mkstemp makes 0600; give the usual permissions
    if (!(o->f = fdopen(fd, "wb"))) {
        fprintf(stderr, "%s: write failed: %s (left as it was)\n", path, strerror(errno));
        close(fd);
        unlink(tmp_path);
        tmp_live = 0;
        return NULL;
    }
    o->fd = fd;
    return o->f;
}

int outfile_close(OutFile *o, int status) {
    int ok = status == 0 && fflush(o->f) == 0 && fsync(o->fd) == 0;
    int err = errno;
    if (fclose(o->f) != 0 && ok) ok = 0, err = errno;
    if (ok && rename(tmp_path, o->path) != 0) ok = 0, err = errno;
    if (!ok) {
        if (status != -2)
            fprintf(stderr, "%s: write failed: %s (left as it was)\n", o->path, strerror(err));
        unlink(tmp_path);
    }
    tmp_live = 0;
    o->f = NULL;
    return ok ? 0 : -1;
}

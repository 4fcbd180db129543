// outfile.c: a file that appears whole or not at all (see outfile.h).
#define _POSIX_C_SOURCE 200809L
#include "outfile.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
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

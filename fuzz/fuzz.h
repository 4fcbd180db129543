// fuzz.h: helpers shared by the libFuzzer targets (one temp file per process).
#ifndef SEARCHLIGHT_FUZZ_H
#define SEARCHLIGHT_FUZZ_H
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer.h"

static char fuzz_dir[64], fuzz_path[128];

static inline void fuzz_cleanup(void) {
    unlink(fuzz_path);
    rmdir(fuzz_dir);
}

// Writes data to <per-process dir>/<name> and returns that path (the same one every call).
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/sl-fuzz-%d", (int)getpid());
        if (mkdir(fuzz_dir, 0700) != 0 && access(fuzz_dir, W_OK) != 0) abort();
        snprintf(fuzz_path, sizeof fuzz_path, "%s/%s", fuzz_dir, name);
        atexit(fuzz_cleanup);
    }
    int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    close(fd);
    return fuzz_path;
}

// Encodes text (with BOS and EOS) into at most 64 tokens and decodes each: a parsed
// tokenizer's tables in use.
static inline void fuzz_use_tokenizer(const Tokenizer *t, const char *text) {
    int ids[64];
    size_t n, len;
    if (tokenizer_encode(t, text, strlen(text), 1, 1, ids, 64, &n) == TOK_OK)
        for (size_t i = 0; i < n; i++) tokenizer_decode(t, i ? ids[i - 1] : 1, ids[i], &len);
}
#endif

// fileio.h: whole files in and out: opening a regular file, reading a file into memory,
// and writing a file that appears whole or not at all.
//
// Contract: POSIX and libc. Every error prints one line naming the file and returns -1 (or
// NULL); nothing here exits.
//
// Writing (OutFile): the file is written under a temporary name beside the target
// (path.tmp-XXXXXX), flushed to disk, and renamed over the target only when complete. On
// any error, or on SIGINT/SIGTERM/SIGHUP once outfile_install_cleanup() has run, the
// temporary file is removed and an existing target is left untouched. One file at a time.
#ifndef SEARCHLIGHT_FILEIO_H
#define SEARCHLIGHT_FILEIO_H

#include <stddef.h>
#include <stdio.h>

// Opens path read-only and checks that it is a regular file; `what` names what was expected
// ("a model file") in the message for a directory. Returns the descriptor, with the file's
// size in *size, or -1 after one line.
int file_open_regular(const char *path, const char *what, size_t *size);

// Reads the whole file (a regular file or a stream) into *buf, NUL-terminated (caller frees),
// *n bytes without the NUL. More than max bytes is refused, without reading past max + 1.
// Returns 0, or -1 after one line (*buf is then NULL).
int file_read(const char *path, size_t max, char **buf, size_t *n);

typedef struct {
    const char *path;  // the target
    FILE *f;           // write here, between outfile_open and outfile_close
    int fd;
} OutFile;

// Creates the temporary file; returns o->f, or NULL after printing one line.
FILE *outfile_open(OutFile *o, const char *path);

// Ends the file. status 0: everything was written; it is flushed, synced and renamed over
// the target. status -1: a write failed (errno says why), reported here. status -2: the
// caller failed and has said why. Returns 0 once the target is in place, else -1 after
// removing the temporary file (and one line, unless status was -2).
int outfile_close(OutFile *o, int status);

// Removes a half-written temporary file if the process is interrupted, and turns SIGXFSZ
// into a failed write (EFBIG) instead of death.
void outfile_install_cleanup(void);

#endif

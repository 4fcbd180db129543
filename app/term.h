// term.h: what run's modes (generate, chat, --bench, --ppl) share for output and timing.
//
// Contract: libc and POSIX clock_gettime only.
#ifndef SEARCHLIGHT_TERM_H
#define SEARCHLIGHT_TERM_H

#include <stddef.h>

// Seconds on the monotonic clock.
double term_now(void);

// Writes n bytes of a generated piece to stdout, dropping control bytes other than newline and
// tab: a model's output must not be able to move the cursor, clear the screen or ring the
// terminal.
void term_write_piece(const char *p, size_t n);

#endif

// term.h: what run's modes (generate, chat, --bench, --ppl) share for output.
//
// Contract: libc only.
#ifndef SEARCHLIGHT_TERM_H
#define SEARCHLIGHT_TERM_H

#include <stddef.h>

// Writes n bytes of a generated piece to stdout, dropping control bytes other than newline and
// tab: a model's output must not be able to move the cursor, clear the screen or ring the
// terminal.
void term_write_piece(const char *p, size_t n);

#endif

// term.c: output shared by run's modes (see term.h).
#include "app/term.h"

#include <stdio.h>

void term_write_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) continue;
        putchar(c);
    }
}

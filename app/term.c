// term.c: output and timing shared by run's modes (see term.h).
#include "app/term.h"

#include <stdio.h>
#include <time.h>

double term_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void term_write_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) continue;
        putchar(c);
    }
}

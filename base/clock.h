// clock.h: the monotonic clock, for timing work (tok/s, --bench, the pool's waiting policy).
//
// Contract: POSIX clock_gettime(CLOCK_MONOTONIC) only; never fails, never exits. Readings are
// only meaningful as differences within one process.
#ifndef SEARCHLIGHT_CLOCK_H
#define SEARCHLIGHT_CLOCK_H

#include <stdint.h>

// Seconds on the monotonic clock.
double clock_now(void);

// Nanoseconds on the monotonic clock.
uint64_t clock_ns(void);

#endif

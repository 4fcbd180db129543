// pool.h: a persistent pthread pool that runs one function on every thread.
//
// Contract: pthreads and C11 atomics; no OpenMP. Workers are created once and park
// between calls (they spin briefly, then sleep on a condition variable). The calling
// thread takes part as thread 0. The caller splits the work: with pool_range (the matmuls),
// which thread computes which element is fixed by the thread count alone; attention hands
// out whole items from a counter instead. Either way each number comes from one thread, in
// an order that does not depend on which thread it was.
#ifndef SEARCHLIGHT_POOL_H
#define SEARCHLIGHT_POOL_H

#include <stddef.h>

typedef struct Pool Pool;

// fn(arg, thread, n_threads) runs once on each thread, thread = 0 .. n_threads - 1.
typedef void (*pool_fn)(void *arg, int thread, int n_threads);

// Starts n_threads - 1 workers. Returns NULL after printing one line on failure.
Pool *pool_create(int n_threads);
void pool_destroy(Pool *p);  // NULL is fine

// Seconds on the monotonic clock (for timing work: --bench, tok/s).
double pool_now(void);
int pool_size(const Pool *p);

// Runs fn on all threads and returns when every one has finished. Not reentrant.
void pool_run(Pool *p, pool_fn fn, void *arg);

// Thread `thread` of n_threads owns [*begin, *end) of [0, n), in contiguous blocks whose
// boundaries are multiples of `align` (except the end of the last one).
static inline void pool_range(size_t n, size_t align, int thread, int n_threads, size_t *begin,
                              size_t *end) {
    size_t units = (n + align - 1) / align, t = (size_t)thread, nt = (size_t)n_threads;
    size_t b = units * t / nt * align, e = units * (t + 1) / nt * align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

#endif

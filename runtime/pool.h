// pool.h: a persistent pthread pool: jobs cut into chunks that threads take from a counter.
//
// Contract: pthreads and C11 atomics; no OpenMP. Workers are created once and wait between
// jobs. The calling thread takes part. Two kinds of job:
//   pool_for  (the kernels): n chunks, taken one at a time from one shared counter by every
//             thread, caller included, each as soon as it is free. A thread whose core is busy
//             with another process simply takes fewer chunks, and the caller never waits for a
//             thread that took none. Which thread computes a chunk depends on timing, so what a
//             chunk computes must depend on its index alone (never on the thread or the thread
//             count): then every output is bitwise the same for any number of threads.
//   pool_run  (bench.c's per-thread measurements): fn runs once on every thread; it waits for
//             all of them, so under load it waits for the slowest.
// Waiting (a worker for the next job, the caller for chunks still running elsewhere): a
// pause-spin, then sleep on a condition variable. The spin is long (a few hundred us) while
// the threads have their cores to themselves, so the short gaps between the jobs of one token
// cost no wake-up; it is cut to a few us once a wait shows a thread is being kept off its core
// (another process, or more threads than cores), so that a waiting thread hands its core
// to the one that has work. pool.c says how that is detected.
#ifndef SEARCHLIGHT_POOL_H
#define SEARCHLIGHT_POOL_H

#include <stddef.h>

typedef struct Pool Pool;

// fn(arg, thread, n_threads) runs once on each thread, thread = 0 .. n_threads - 1.
typedef void (*pool_fn)(void *arg, int thread, int n_threads);

// fn(arg, chunk) computes chunk `chunk` of a job, chunk = 0 .. n_chunks - 1.
typedef void (*pool_chunk_fn)(void *arg, size_t chunk);

// Starts n_threads - 1 workers. Returns NULL after printing one line on failure.
Pool *pool_create(int n_threads);
void pool_destroy(Pool *p);  // NULL is fine

// Seconds on the monotonic clock (for timing work: --bench, tok/s).
double pool_now(void);
int pool_size(const Pool *p);

// Calls fn(arg, c) once for every chunk c = 0 .. n_chunks - 1, on whichever threads are free,
// and returns when every call has returned. Chunks are handed out in increasing order (each
// thread's calls are in increasing order too). With no pool, one thread or one chunk, the
// caller runs them all itself, in order, and no worker wakes. Not reentrant: fn must not
// use the pool. Per chunk it costs one atomic compare-and-swap on a shared cache line (tens
// of ns), so a chunk should hold a microsecond of work or more.
void pool_for(Pool *p, size_t n_chunks, pool_chunk_fn fn, void *arg);

// Going solo (pool.c): when workers keep losing their cores to other processes, the caller
// runs the pool_for jobs of the next 50-800 ms alone, then tries the workers again. On by
// default; allow = 0 turns it off (every pool_for job is offered to all threads: the tests).
void pool_allow_solo(Pool *p, int allow);

// Runs fn on all threads and returns when every one has finished. Not reentrant.
void pool_run(Pool *p, pool_fn fn, void *arg);

// Chunks of `size` items that cover n items: ceil(n / size) (size >= 1).
static inline size_t pool_chunks(size_t n, size_t size) {
    return n / size + (n % size != 0);
}

// Chunk c of n items in chunks of `size`: [*begin, *end) = [c size, min((c + 1) size, n)).
static inline void pool_chunk(size_t n, size_t size, size_t c, size_t *begin, size_t *end) {
    size_t b = c * size, e = b + size;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

// Thread `thread` of n_threads owns [*begin, *end) of [0, n), in contiguous blocks whose
// boundaries are multiples of `align` (except the end of the last one). For pool_run jobs
// whose parts must be equal per thread (bench.c); kernels use pool_for.
static inline void pool_range(size_t n, size_t align, int thread, int n_threads, size_t *begin,
                              size_t *end) {
    size_t units = (n + align - 1) / align, t = (size_t)thread, nt = (size_t)n_threads;
    size_t b = units * t / nt * align, e = units * (t + 1) / nt * align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

#endif

// pool.h: a persistent pthread pool whose threads share out each job's chunks.
//
// Contract: pthreads and C11 atomics; no OpenMP. Workers are created once and wait between
// jobs. The calling thread takes part. Two kinds of job:
//   pool_for  (the kernels): n chunks, taken one at a time by every thread, caller included,
//             each as soon as it is free: its own share first, then what is left of the
//             others'. A thread whose core is busy with another process simply takes fewer
//             chunks, and the caller never waits for a thread that took none. Which thread
//             computes a chunk depends on timing, so what a chunk computes must depend on its
//             index alone (never on the thread or the thread count): then every output is
//             bitwise the same for any number of threads.
//   pool_run  (bench.c's per-thread measurements): fn runs once on every thread; it waits for
//             all of them, so under load it waits for the slowest.
// Waiting (a worker for the next job, the caller for chunks still running elsewhere): a
// pause-spin, then sleep on a condition variable. Workers spin up to 300 us, so that the short
// gaps between the jobs of a token cost no wake-up on a quiet host; the caller up to 50 us; both
// only 5 us with more threads than CPUs. Under load from other processes threads lose their
// cores in the middle of chunks, and the caller then "goes solo" for a while (pool_for jobs run
// on the caller alone, workers asleep): see pool_allow_solo and pool.c.
#ifndef SEARCHLIGHT_POOL_H
#define SEARCHLIGHT_POOL_H

#include <stddef.h>

typedef struct Pool Pool;

// fn(arg, thread, n_threads) runs once on each thread, thread = 0 .. n_threads - 1.
typedef void (*pool_fn)(void *arg, int thread, int n_threads);

// fn(arg, begin, end) computes chunks begin .. end - 1 of a job, in that order. What a chunk
// computes must depend on its index alone, and the same whether it comes alone or in a run.
typedef void (*pool_chunk_fn)(void *arg, size_t begin, size_t end);

// Starts n_threads - 1 workers. Returns NULL after printing one line on failure.
Pool *pool_create(int n_threads);
void pool_destroy(Pool *p);  // NULL is fine

int pool_size(const Pool *p);

// Computes every chunk 0 .. n_chunks - 1 once, on whichever threads are free, and returns when
// all are done. Shared out, fn gets one chunk per call: each thread starts on an equal share of
// the chunks (its own, in order) and then takes the others' that are still left, from their
// ends. Run alone (no pool, one thread, one chunk, or the caller gone solo: below), it is one
// call fn(arg, 0, n_chunks), and no worker wakes. Not reentrant: fn must not use the pool.
// A shared-out chunk costs a compare-and-swap on a cache line of the taking thread's (about
// 10 ns while threads keep their cores), so a chunk of half a microsecond of work is enough.
void pool_for(Pool *p, size_t n_chunks, pool_chunk_fn fn, void *arg);

// Going solo (pool.c): when, over the last 20 ms (and 256 jobs or more), the caller waited
// for the workers' last chunks longer than their chunks saved it (a worker lost its core in
// the middle of a chunk), or the workers took under a third of their share, the caller runs
// the pool_for jobs of the next 50-800 ms alone, then tries the workers again. So with another
// busy process on the host, T threads run at about one thread's speed instead of waiting on
// threads that have no core. On by default; allow = 0 turns it off (every pool_for job is then
// offered to all threads: the tests).
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

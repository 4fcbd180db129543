// pool.c: the persistent thread pool (see pool.h).
//
// Contract: pthreads, C11 atomics, the monotonic clock (clock.h); Linux's sched_getaffinity
// where there is one (the CPUs this process may use), sysconf elsewhere. Never exits;
// pool_create reports failure by returning NULL.
//
// The job in flight is one 64-bit word, the ticket:
//   bits 63..17  generation: bumped for every job, so a worker sees that a new one came
//   bit  16      RUN: a pool_run job (every worker runs it once)
//   bits 15..0   n: the chunks of a pool_for job (a batch of at most 65535)
// Thread u of T starts on its own range of the chunks, [n u / T, n (u + 1) / T), taken from
// the front; when that is empty it steals from the back of the others' ranges. (Which thread
// runs a chunk varies; the chunks do not.) Each range has a word on its own cache line:
//   bits 63..32  the low 32 bits of the generation of the job it was last taken from
//   bits 31..16  chunks taken from the front, bits 15..0 chunks taken from the back
// which counts as (0, 0) while it holds an older generation, so nobody resets it between
// jobs. A chunk is taken by a compare-and-swap of that word: while every thread keeps its
// core, a thread swaps its own word, a line that stays in its cache, and the threads meet only
// at the ends of their ranges. A successful swap proves that the job is still in flight (one
// of its chunks was not taken), so the job's fields (fn, arg, first), written before the
// ticket was published, are safe to read, and stay so until that chunk is done: a worker that
// wakes late, after its job and maybe several more have gone by, finds every range of its job
// empty or newer, and never touches a finished job. Each chunk a worker finishes adds one to
// `done`; the caller returns when `done` reaches the chunks it did not take itself.
#define _GNU_SOURCE       // sched_getaffinity, CPU_COUNT (Linux)
#define _DARWIN_C_SOURCE  // sysconf(_SC_NPROCESSORS_ONLN) next to _POSIX_C_SOURCE (macOS)
#include "base/pool.h"

#include "base/clock.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>  // __rdtsc
#endif

#define RUN_BIT ((uint64_t)1 << 16)
#define GEN_ONE ((uint64_t)1 << 17)
#define N_MASK (RUN_BIT - 1)  // also the most chunks of one batch
#define GEN(t) ((t) >> 17)

// The waiting policy (pool.h). A waiting thread pause-spins, then sleeps on a condition
// variable. Workers spin up to SPIN_NS for the next job: long enough to bridge the gaps
// between the jobs of a token and between tokens (sampling), so that a quiet host pays no
// wake-up there. The caller spins up to CALLER_SPIN_NS for the chunks still running elsewhere:
// while threads keep their cores that is at most one chunk (a few us in decoding); past that a
// thread holding a chunk has likely lost its core, and the caller's sleep leaves its own core
// free for it. With more threads than CPUs both spin only SPIN_SHARED_NS: a spinning thread
// would hold a core that a thread with work is waiting for.
#define SPIN_NS 300000
#define CALLER_SPIN_NS 50000
#define SPIN_SHARED_NS 5000

// Going solo. A worker that loses its core to another process in the middle of a chunk holds
// the job up until the scheduler gives it a core again (a time slice: milliseconds); one that
// finds no free core takes few chunks but still spins on CPU time the caller needs. No waiting
// policy helps with either. So the caller keeps accounts over windows of at least WINDOW jobs
// and WINDOW_NS: `busy`, the time it spent on its own `mine` chunks, and `wait`, the time it
// then waited for the workers'. Had it run the window's jobs alone they would have taken
// about busy * chunks / mine, against busy + wait with the workers. When the workers did not
// pay for the wait,
//   wait * mine >= busy * (chunks - mine),
// or took less than a third of their share, chunks - mine < chunks (T - 1) / T / 3, the
// caller runs the next jobs alone ("solo", the workers asleep) for SOLO_NS, doubling up to
// SOLO_MAX_NS while each try with the workers fails again within TRY_NS. While every thread
// keeps its core a worker takes its share within a microsecond of a job's start, the wait is
// about one cache-line transfer per job, and neither test fails.
#define WINDOW 256
#define WINDOW_NS 20000000
#define SOLO_NS 50000000
#define SOLO_MAX_NS 800000000
#define TRY_NS 1000000000

// The fields by who writes them, a cache line for each group, so that a worker reaching for
// a new job brings in one line (the ticket with the job) and shares no line with the caller's
// bookkeeping.
struct Pool {
    // set by pool_create, then only read
    int n_threads;
    pthread_t *workers;         // (n_threads - 1)
    struct Range { _Alignas(64) atomic_uint_least64_t w; } *ranges;  // (n_threads), see the top
    uint64_t spin, caller_spin; // SPIN_NS and CALLER_SPIN_NS, or SPIN_SHARED_NS for both
    // the job: written by the caller before it publishes the ticket (see the top)
    _Alignas(64) atomic_uint_least64_t ticket;
    pool_fn run_fn;
    pool_chunk_fn chunk_fn;
    void *arg;
    size_t first;               // pool_for: this batch's chunk 0 is the job's chunk `first`
    // written by the workers
    _Alignas(64) atomic_size_t done;  // chunks (pool_run: threads) that workers finished
    atomic_int sleepers;        // workers waiting on `wake`
    atomic_int caller_sleeps;   // the caller waits on `finished` (written by the caller)
    _Alignas(64) atomic_int stop;
    pthread_mutex_t lock;       // guards the condition variables' sleeps and signals
    pthread_cond_t wake, finished;
    // the caller's own
    _Alignas(64) uint64_t gen;  // jobs published
    // going solo: solo until this time (0: not solo), for this long the next time, with the
    // workers since this time
    int solo_allowed;
    uint64_t solo_until, solo_ns, joined;
    uint64_t win_start, win_busy, win_wait;  // this window with the workers (see above)
    size_t win_jobs, win_chunks, win_mine;
};

typedef struct {
    Pool *pool;
    int thread;
} WorkerArg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ volatile("yield");
#endif
}

// A cheap timestamp in units of its own, only ever compared with another (x86: the TSC, a few
// ns to read where clock_gettime takes ~40).
static inline uint64_t ticks(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#else
    return clock_ns();
#endif
}

// The online CPUs this process may run on.
static int cpus_available(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int)n : 1;
}

// A new window of accounts, from `now`.
static void new_window(Pool *p, uint64_t now) {
    p->win_start = now;
    p->win_busy = p->win_wait = 0;
    p->win_jobs = p->win_chunks = p->win_mine = 0;
}

// Spins until *ticket's generation differs from `seen`, for at most `ns`; returns the ticket
// (its generation is still `seen` on a timeout).
static uint64_t spin_for_job(Pool *p, uint64_t seen, uint64_t ns) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire), end = 0;
    for (unsigned i = 0; GEN(t) == seen; i++) {
        if (i % 16 == 0) {
            uint64_t now = clock_ns();
            if (!end) end = now + ns;
            else if (now >= end) break;
        }
        cpu_relax();
        t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    }
    return t;
}

// A worker's wait for the job after generation `seen`: spin, then sleep on `wake`.
// publish() reads `sleepers` after storing the ticket, the worker reads the ticket after
// counting itself in `sleepers` (both sequentially consistent): one of them sees the other.
static uint64_t wait_job(Pool *p, uint64_t seen) {
    uint64_t t = spin_for_job(p, seen, p->spin);
    if (GEN(t) != seen) return t;
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&p->sleepers, 1);
    while (GEN(t = atomic_load(&p->ticket)) == seen) pthread_cond_wait(&p->wake, &p->lock);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->lock);
    return t;
}

// Publishes ticket t and wakes any sleeping worker.
static void publish(Pool *p, uint64_t t) {
    atomic_store(&p->ticket, t);
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
}

// A worker finished a chunk (or its pool_run call): count it, and wake the caller if it
// sleeps (the same store-then-load pairing as publish and wait_job).
static void finish(Pool *p) {
    atomic_fetch_add(&p->done, 1);
    if (atomic_load(&p->caller_sleeps)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_signal(&p->finished);
        pthread_mutex_unlock(&p->lock);
    }
}

// The caller's wait until workers finished `target` chunks: spin, then sleep on `finished`.
// Returns whether there was anything to wait for.
static int wait_done(Pool *p, size_t target) {
    if (atomic_load_explicit(&p->done, memory_order_acquire) >= target) return 0;
    uint64_t start = clock_ns();
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < target; i++) {
        if (i % 16 == 0 && clock_ns() - start >= p->caller_spin) break;
        cpu_relax();
    }
    if (atomic_load_explicit(&p->done, memory_order_acquire) < target) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_sleeps, 1);
        while (atomic_load(&p->done) < target) pthread_cond_wait(&p->finished, &p->lock);
        atomic_store(&p->caller_sleeps, 0);
        pthread_mutex_unlock(&p->lock);
    }
    return 1;
}

// Takes a chunk of the batch of generation g (low 32 bits) from thread u's range (lo, size),
// from the front or the back, into *chunk. Returns 1 when it took one, 0 when the range is
// empty, -1 when it holds a later job (g is over).
static inline int take(Pool *p, int u, uint32_t g, size_t lo, size_t size, int front,
                       size_t *chunk) {
    atomic_uint_least64_t *w = &p->ranges[u].w;
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint32_t vg = (uint32_t)(v >> 32);
        size_t f = 0, b = 0;
        if (vg == g) f = (size_t)(v >> 16 & 0xffff), b = (size_t)(v & 0xffff);
        else if ((int32_t)(vg - g) > 0) return -1;
        if (f + b >= size) return 0;
        uint64_t nv = (uint64_t)g << 32 | (uint64_t)(front ? (f + 1) << 16 | b : f << 16 | (b + 1));
        if (atomic_compare_exchange_weak_explicit(w, &v, nv, memory_order_acquire,
                                                  memory_order_relaxed)) {
            *chunk = front ? lo + f : lo + size - 1 - b;
            return 1;
        }
    }
}

// Thread `self` works on the pool_for batch of ticket t: its own range from the front, then
// the others' from the back, until all are empty or a later job shows up. A worker reports
// each chunk to `done`; the caller (self 0) returns how many it ran.
static size_t work_on(Pool *p, int self, uint64_t t) {
    uint32_t g = (uint32_t)GEN(t);
    size_t n = (size_t)(t & N_MASK), T = (size_t)p->n_threads, mine = 0, c;
    for (size_t k = 0; k < T; k++) {
        size_t u = ((size_t)self + k) % T, lo = n * u / T, size = n * (u + 1) / T - lo;
        int r;
        while ((r = take(p, (int)u, g, lo, size, k == 0, &c)) == 1) {
            p->chunk_fn(p->arg, p->first + c, p->first + c + 1);
            if (self) finish(p);
            mine++;
        }
        if (r < 0) break;
    }
    return mine;
}

static void *worker_main(void *p_) {
    WorkerArg wa = *(WorkerArg *)p_;
    free(p_);
    Pool *p = wa.pool;
    uint64_t seen = 0;  // the generation of the last job this worker is through with
    for (;;) {
        uint64_t t = wait_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        if (t & RUN_BIT) {  // the job waits for this worker: its fields stay put
            p->run_fn(p->arg, wa.thread, p->n_threads);
            seen = GEN(t);
            finish(p);
            continue;
        }
        work_on(p, wa.thread, t);
        uint64_t now = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if (GEN(now) == GEN(t)) seen = GEN(t);  // else a later job: the next wait_job returns it
    }
    return NULL;
}

Pool *pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    Pool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);  // its lines as laid out
    if (p) memset(p, 0, sizeof *p);
    if (!p || !(p->workers = calloc((size_t)n_threads, sizeof(pthread_t))) ||
        !(p->ranges = aligned_alloc(64, (size_t)n_threads * sizeof *p->ranges))) {
        fprintf(stderr, "pool: out of memory for %d threads\n", n_threads);
        if (p) free(p->workers);
        free(p);
        return NULL;
    }
    for (int t = 0; t < n_threads; t++) atomic_init(&p->ranges[t].w, 0);
    p->n_threads = 1;  // grows as workers start, so a failure can tear down cleanly
    int shared = n_threads > cpus_available();
    p->spin = shared ? SPIN_SHARED_NS : SPIN_NS;
    p->caller_spin = shared ? SPIN_SHARED_NS : CALLER_SPIN_NS;
    p->solo_ns = SOLO_NS;
    p->solo_allowed = 1;
    p->joined = clock_ns();
    new_window(p, p->joined);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->caller_sleeps, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->finished, NULL);
    for (int t = 1; t < n_threads; t++) {
        WorkerArg *wa = malloc(sizeof *wa);
        int err = wa ? 0 : -1;
        if (wa) {
            *wa = (WorkerArg){p, t};
            err = pthread_create(&p->workers[t - 1], NULL, worker_main, wa);
        }
        if (err) {
            free(wa);
            fprintf(stderr, "pool: cannot start thread %d of %d: %s\n", t + 1, n_threads,
                    err > 0 ? strerror(err) : "out of memory");
            pool_destroy(p);
            return NULL;
        }
        p->n_threads = t + 1;
    }
    return p;
}

void pool_destroy(Pool *p) {
    if (!p) return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    publish(p, ++p->gen * GEN_ONE | RUN_BIT);
    for (int t = 1; t < p->n_threads; t++) pthread_join(p->workers[t - 1], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->finished);
    free(p->workers);
    free(p->ranges);
    free(p);
}

int pool_size(const Pool *p) {
    return p ? p->n_threads : 1;
}

void pool_allow_solo(Pool *p, int allow) {
    if (!p) return;
    p->solo_allowed = allow;
    if (!allow) p->solo_until = 0;
}

void pool_run(Pool *p, pool_fn fn, void *arg) {
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->run_fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    publish(p, ++p->gen * GEN_ONE | RUN_BIT);
    fn(arg, 0, p->n_threads);
    wait_done(p, (size_t)p->n_threads - 1);
}

// Whether the caller runs this job alone (see "Going solo"); when a solo period ends, the
// workers rejoin.
static int solo(Pool *p) {
    if (!p->solo_until) return 0;
    uint64_t now = clock_ns();
    if (now < p->solo_until) return 1;
    p->solo_until = 0;
    p->joined = now;
    new_window(p, now);
    return 0;
}

// After a job of n chunks with the workers, of which the caller took `mine` in `busy` ticks
// and then waited `wait` ticks for the rest: at the end of a window, go solo if the workers
// did not pay for the wait (see "Going solo").
static void account(Pool *p, size_t n, size_t mine, uint64_t busy, uint64_t wait) {
    p->win_jobs++, p->win_chunks += n, p->win_mine += mine;
    p->win_busy += busy, p->win_wait += wait;
    if (!p->solo_allowed || p->win_jobs % WINDOW) return;
    uint64_t now = clock_ns();
    if (now - p->win_start < WINDOW_NS) return;
    size_t T = (size_t)p->n_threads, theirs = p->win_chunks - p->win_mine;
    if ((double)p->win_wait * (double)p->win_mine >= (double)p->win_busy * (double)theirs ||
        3 * T * theirs < (T - 1) * p->win_chunks) {
        p->solo_ns = now - p->joined < TRY_NS ? p->solo_ns * 2 : SOLO_NS;
        if (p->solo_ns > SOLO_MAX_NS) p->solo_ns = SOLO_MAX_NS;
        p->solo_until = now + p->solo_ns;
    }
    new_window(p, now);
}

void pool_for(Pool *p, size_t n_chunks, pool_chunk_fn fn, void *arg) {
    if (!p || p->n_threads == 1 || n_chunks <= 1 || solo(p)) {
        if (n_chunks) fn(arg, 0, n_chunks);
        return;
    }
    for (size_t first = 0; first < n_chunks; first += N_MASK) {  // batches of 65535
        size_t n = n_chunks - first < N_MASK ? n_chunks - first : N_MASK;
        p->chunk_fn = fn;
        p->arg = arg;
        p->first = first;
        atomic_store_explicit(&p->done, 0, memory_order_relaxed);
        uint64_t t = ++p->gen * GEN_ONE | n, t0 = ticks();
        publish(p, t);
        size_t mine = work_on(p, 0, t);
        uint64_t t1 = ticks(), t2 = wait_done(p, n - mine) ? ticks() : t1;
        account(p, n, mine, t1 > t0 ? t1 - t0 : 0, t2 > t1 ? t2 - t1 : 0);
    }
}

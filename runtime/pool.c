// pool.c: the persistent thread pool (see pool.h).
//
// Contract: pthreads, C11 atomics, POSIX clocks; Linux's sched_getaffinity where there is
// one (the CPUs this process may use), sysconf elsewhere. Never exits; pool_create reports
// failure by returning NULL.
//
// The job in flight is one 64-bit word, the ticket:
//   bits 63..33  generation: bumped for every job, so a worker sees that a new one came
//   bit  32      RUN: a pool_run job (every worker runs it once)
//   bits 31..0   chunks of a pool_for job not yet taken ("left")
// A thread takes a chunk by a compare-and-swap of left -> left - 1: the chunk is
// first + n - left. A successful swap proves that the job is still in flight (a chunk of it is
// not done), so the job's fields (fn, arg, n), written before the ticket was published, are
// safe to read, and stay so until that chunk is done; a worker that wakes late, after its job
// and maybe several more have gone by, never touches a finished job. Each finished chunk adds
// one to `done`; the caller returns when `done` reaches the chunks it did not take itself.
#define _GNU_SOURCE       // sched_getaffinity, CPU_COUNT (Linux)
#define _DARWIN_C_SOURCE  // sysconf(_SC_NPROCESSORS_ONLN) next to _POSIX_C_SOURCE (macOS)
#include "runtime/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUN_BIT ((uint64_t)1 << 32)
#define GEN_ONE ((uint64_t)1 << 33)
#define LEFT_MASK (RUN_BIT - 1)
#define GEN(t) ((t) >> 33)

// The waiting policy (pool.h). A waiting thread pause-spins, then sleeps on a condition
// variable. Quiet (every thread keeps its core): workers spin up to SPIN_QUIET_NS for the next
// job, long enough to bridge the gaps between the jobs of a token (and between tokens), the
// caller up to the same for the chunks still running elsewhere (at most one chunk's time).
// Contended: a wait for the last chunks that overran OVERRUN_NS means that a thread holding a
// chunk lost its core; then for HOLD_NS all waits spin at most SPIN_BUSY_NS before they sleep,
// so that a waiting thread hands its core to one that has work (sleeping, unlike
// sched_yield, leaves the core idle, and the scheduler moves a waiting thread there). More
// threads than CPUs is contended for good.
#define SPIN_QUIET_NS 300000
#define SPIN_BUSY_NS 5000
#define OVERRUN_NS 200000
#define HOLD_NS 200000000

struct Pool {
    int n_threads;
    int always_busy;            // more threads than CPUs: the contended policy for good
    pthread_t *workers;         // (n_threads - 1)
    uint64_t gen;               // the caller's count of published jobs
    // the job: written by the caller before it publishes the ticket (see the top)
    pool_fn run_fn;
    pool_chunk_fn chunk_fn;
    void *arg;
    size_t first, n;            // pool_for: this batch's chunks are first .. first + n - 1
    _Alignas(64) atomic_uint_least64_t ticket;
    _Alignas(64) atomic_size_t done;  // chunks (pool_run: threads) that workers finished
    atomic_int caller_sleeps;   // the caller waits on `finished`
    _Alignas(64) atomic_int sleepers;  // workers waiting on `wake`
    atomic_int stop;
    atomic_uint_least64_t busy_until;  // contended policy until this time (ns), see above
    pthread_mutex_t lock;       // guards the condition variables' sleeps and signals
    pthread_cond_t wake, finished;
    uint64_t spin_quiet, spin_busy, overrun, hold;  // the policy's constants (see above)
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

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// How long a wait may spin before it sleeps, under the current policy.
static uint64_t spin_ns(Pool *p) {
    if (p->always_busy) return p->spin_busy;
    uint64_t until = atomic_load_explicit(&p->busy_until, memory_order_relaxed);
    return until && now_ns() < until ? p->spin_busy : p->spin_quiet;
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

// Spins until *ticket's generation differs from `seen`, for at most `ns`; returns the ticket
// (its generation is still `seen` on a timeout).
static uint64_t spin_for_job(Pool *p, uint64_t seen, uint64_t ns) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire), end = 0;
    for (unsigned i = 0; GEN(t) == seen; i++) {
        if (i % 16 == 0) {
            uint64_t now = now_ns();
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
    uint64_t t = spin_for_job(p, seen, spin_ns(p));
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
// With `detect` (pool_for: the wait is for at most one chunk unless a thread lost its core),
// a wait that overran p->overrun turns the contended policy on (see the top).
static void wait_done(Pool *p, size_t target, int detect) {
    if (atomic_load_explicit(&p->done, memory_order_acquire) >= target) return;
    uint64_t start = now_ns(), ns = spin_ns(p), now = start;
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < target; i++) {
        if (i % 16 == 0 && (now = now_ns()) - start >= ns) break;
        cpu_relax();
    }
    if (atomic_load_explicit(&p->done, memory_order_acquire) < target) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_sleeps, 1);
        while (atomic_load(&p->done) < target) pthread_cond_wait(&p->finished, &p->lock);
        atomic_store(&p->caller_sleeps, 0);
        pthread_mutex_unlock(&p->lock);
        now = now_ns();
    }
    if (detect && now - start >= p->overrun)
        atomic_store_explicit(&p->busy_until, now + p->hold, memory_order_relaxed);
}

// Takes the next chunk of the pool_for job in *t (the ticket as last read; reloaded when the
// swap fails). Returns 1 with *t the ticket before the swap, or 0 when no chunk is left.
static inline int claim(Pool *p, uint64_t *t) {
    uint64_t v = *t;
    while (!(v & RUN_BIT) && (v & LEFT_MASK)) {
        if (atomic_compare_exchange_weak_explicit(&p->ticket, &v, v - 1, memory_order_acquire,
                                                  memory_order_acquire)) {
            *t = v;
            return 1;
        }
    }
    *t = v;
    return 0;
}

// The chunk that the swap from ticket t took: first + n - left.
static inline void run_chunk(Pool *p, uint64_t t) {
    p->chunk_fn(p->arg, p->first + (p->n - (size_t)(t & LEFT_MASK)));
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
        while (claim(p, &t)) {  // from this job on into later ones, while chunks are left
            run_chunk(p, t);
            finish(p);
            t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        }
        if (!(t & RUN_BIT)) seen = GEN(t);  // a pool_run job: the next wait_job returns it
    }
    return NULL;
}

// An environment override of a policy constant (microseconds), for tuning.
static uint64_t knob(const char *name, uint64_t ns) {
    const char *s = getenv(name);
    return s && *s ? (uint64_t)strtoull(s, NULL, 10) * 1000u : ns;
}

Pool *pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    Pool *p = calloc(1, sizeof *p);
    if (!p || !(p->workers = calloc((size_t)n_threads, sizeof(pthread_t)))) {
        fprintf(stderr, "pool: out of memory for %d threads\n", n_threads);
        free(p);
        return NULL;
    }
    p->n_threads = 1;  // grows as workers start, so a failure can tear down cleanly
    p->always_busy = n_threads > cpus_available();
    p->spin_quiet = knob("SL_POOL_SPIN_QUIET", SPIN_QUIET_NS);
    p->spin_busy = knob("SL_POOL_SPIN_BUSY", SPIN_BUSY_NS);
    p->overrun = knob("SL_POOL_OVERRUN", OVERRUN_NS);
    p->hold = knob("SL_POOL_HOLD", HOLD_NS);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->caller_sleeps, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->busy_until, 0);
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
    free(p);
}

int pool_size(const Pool *p) {
    return p ? p->n_threads : 1;
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
    wait_done(p, (size_t)p->n_threads - 1, 0);
}

void pool_for(Pool *p, size_t n_chunks, pool_chunk_fn fn, void *arg) {
    if (!p || p->n_threads == 1 || n_chunks <= 1) {
        for (size_t c = 0; c < n_chunks; c++) fn(arg, c);
        return;
    }
    for (size_t first = 0; first < n_chunks; first += LEFT_MASK) {  // batches of 2^32 - 1
        size_t n = n_chunks - first < LEFT_MASK ? n_chunks - first : LEFT_MASK, mine = 0;
        p->chunk_fn = fn;
        p->arg = arg;
        p->first = first;
        p->n = n;
        atomic_store_explicit(&p->done, 0, memory_order_relaxed);
        uint64_t t = ++p->gen * GEN_ONE | n;
        publish(p, t);
        for (; claim(p, &t); mine++) {
            run_chunk(p, t);
            t = atomic_load_explicit(&p->ticket, memory_order_relaxed);
        }
        wait_done(p, n - mine, 1);
    }
}

double pool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

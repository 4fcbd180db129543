// pool.c: the persistent thread pool (see pool.h).
#define _GNU_SOURCE  // sched_getaffinity, CPU_COUNT: the CPUs this process may run on
#include "runtime/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// How a thread waits (a worker for the next job, the caller for the workers). With a core
// for every thread: SPIN_ROUNDS rounds of the pause instruction (about 0.5 ms at 27 ns a
// pause), long enough to bridge the gap between two matmuls of one token, short enough that
// an idle pool stops burning the CPU at once; then a worker sleeps, and the caller yields.
// With more threads than cores, a spinning thread would hold a core that a thread with work
// is waiting for, for a whole time slice, at every job: so the pause phase is cut to
// SPIN_ROUNDS_SHARED rounds (about 7 us) and followed by SPIN_YIELDS rounds of sched_yield,
// which hand the core over.
#define SPIN_ROUNDS 20000
#define SPIN_ROUNDS_SHARED 256
#define SPIN_YIELDS 2000

struct Pool {
    int n_threads;
    pthread_t *workers;         // (n_threads - 1)
    pool_fn fn;                 // the current job, published by `generation`
    void *arg;
    atomic_uint generation;     // bumped once per job; workers wait for a change
    atomic_int remaining;       // workers still running the current job
    atomic_int stop;
    pthread_mutex_t lock;       // guards sleepers and the condition variable
    pthread_cond_t wake;
    int sleepers;
    int spin_pause, spin_yield;  // the waiting policy above, chosen once by pool_create
};

typedef struct {
    Pool *pool;
    int thread;
} WorkerArg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    WorkerArg wa = *(WorkerArg *)p;
    free(p);
    Pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int i = 0; gen == seen && i < pool->spin_pause + pool->spin_yield; i++) {
            if (i < pool->spin_pause) cpu_relax();
            else sched_yield();
            gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->lock);
            pool->sleepers++;
            while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool->wake, &pool->lock);
            pool->sleepers--;
            pthread_mutex_unlock(&pool->lock);
        }
        seen = gen;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        pool->fn(pool->arg, wa.thread, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->remaining, 1, memory_order_release);
    }
    return NULL;
}

// Publishes a new generation and wakes any sleeping worker.
static void publish(Pool *p) {
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
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
    cpu_set_t cpus;
    int shared = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && n_threads > CPU_COUNT(&cpus);
    p->spin_pause = shared ? SPIN_ROUNDS_SHARED : SPIN_ROUNDS;
    p->spin_yield = shared ? SPIN_YIELDS : 0;
    atomic_init(&p->generation, 0);
    atomic_init(&p->remaining, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
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
    publish(p);
    for (int t = 1; t < p->n_threads; t++) pthread_join(p->workers[t - 1], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
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
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->remaining, p->n_threads - 1, memory_order_relaxed);
    publish(p);
    fn(arg, 0, p->n_threads);
    for (int i = 0; atomic_load_explicit(&p->remaining, memory_order_acquire) > 0; i++) {
        if (i < p->spin_pause) cpu_relax();
        else sched_yield();
    }
}

double pool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

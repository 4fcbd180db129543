// bench.h: ./run MODEL --bench: speed against the machine's physical limits.
//
// Contract: libc, libm, pthreads (through pool.h); its vector code through kernels/simd.h's
// last section. Reports prompt processing (pp) and generation (tg) in tokens per second as
// medians of repeated runs, like llama-bench; the weight bytes each generated token reads;
// and, measured in the same run on the same threads, the limits: the read bandwidth (every
// thread reading its own share of a buffer 8 times the last-level caches, at least 256 MiB,
// front to back; the fastest of several passes), a STREAM triad beside it, and the f32
// FMA and int8 dot-product peaks (the widest instructions of the build; the fastest of
// several runs), with the fraction of each limit reached: generation of the bandwidth, the
// prompt's matrix products (outside attention) of the matching peak, and the share of the
// prompt's time spent in attention; and an attention micro-benchmark of KV-cache read speed
// at contexts 256 to 4096. A limit that the run beats (generation's fastest run reading its
// weights faster than the read pass, the matrix products above their peak) prints a warning
// line: a limit that a program can beat is not a limit.
#ifndef SEARCHLIGHT_BENCH_H
#define SEARCHLIGHT_BENCH_H

#define BENCH_MAX_THREADS 16
#define BENCH_MAX_PP 8

typedef struct {
    int threads[BENCH_MAX_THREADS];  // thread counts to measure, in order
    int n_threads;
    long pp[BENCH_MAX_PP];  // prompt lengths, each processed as one prompt (in batches)
    int n_pp;
    int pp_default;  // pp is the default list: lengths beyond the context are left out
    long tg;    // tokens generated one at a time
    long reps;  // repetitions per figure; the median is reported
    int json;
    int kv_type;  // the KV cache type of the pp/tg runs (attention.h)
} BenchOptions;

// Runs the benchmark; returns a process exit status (0, or 1 after a message).
int bench_run(const char *model_path, const BenchOptions *o);

#endif

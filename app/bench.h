// bench.h: ./run MODEL --bench: speed against the machine's physical limit.
//
// Contract: libc, libm, pthreads (through pool.h). Reports prompt processing (pp) and
// generation (tg) in tokens per second as medians of repeated runs, like llama-bench;
// the machine's FMA and int8 peaks, measured in the same run, the fraction of the matching
// peak that the prompt's matrix products reach, and the share of the prompt's time spent in
// attention;
// the weight bytes each generated token reads; the read bandwidth of a STREAM-style
// pass measured in the same run, and the fraction of that roofline reached; and an
// attention micro-benchmark of KV-cache read speed at contexts 256 to 4096.
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

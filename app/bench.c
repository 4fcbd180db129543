// bench.c: the benchmark mode of ./run (see bench.h).
#include "app/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/term.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/simd.h"
#include "runtime/transformer.h"
#include "base/clock.h"
#include "base/pool.h"

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double least(const double *v, long n) {
    double m = v[0];
    for (long i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

// The limits are the best of several samples, the speeds of the model medians: another process
// on the host, a page fault or a migration can only slow a sample down, never speed it up, so
// the fastest sample is the closest to what the machine can do, and a limit that the model's
// own runs could beat is no limit. (The buffer is 8 times the last-level cache or more, so no
// pass can be served by the cache.) The samples are taken at BENCH_POINTS points of each
// thread count's run (before the prompts, after them, after generation, after attention),
// BENCH_PASSES at each: a burst of load on a busy host spans all of a few consecutive passes
// (on this 2-core Zen 5, 9 consecutive passes once read 15.8 GB/s, while the generation that
// followed read its weights at 31.6).
#define BENCH_POINTS 4
#define BENCH_PASSES 3
#define BENCH_SAMPLES (BENCH_POINTS * BENCH_PASSES)

// ----------------------------------------------------------------------------
// memory: read bandwidth and a STREAM triad over a buffer beyond the last-level caches

typedef struct {
    float *buf;  // aligned to 64 bytes
    size_t n;    // floats
    float sums[BENCH_MAX_THREADS * 16];  // one cache line per thread
} ReadCtx;

// A thread reads its share front to back, READ_CHAINS vectors per step into as many sums (the
// adds never wait for each other). Reading the share as 8 streams in step instead, as a matrix
// kernel reads 8 rows, made no difference on this Zen 5 (paired passes, 150 each: median ratio
// 0.93); what made the figure low was the median of passes on a busy host (see BENCH_POINTS).
#define READ_CHAINS 8

// The sum of n floats from p (aligned to SL_VF_BYTES).
static float sum_floats(const float *p, size_t n) {
    SlVf a[READ_CHAINS];
    for (int k = 0; k < READ_CHAINS; k++) a[k] = sl_vf_zero();
    size_t i = 0, step = READ_CHAINS * SL_VF_LANES;
    for (; i + step <= n; i += step)
#pragma GCC unroll 8
        for (int k = 0; k < READ_CHAINS; k++) a[k] = sl_vf_add(a[k], sl_vf_load(p + i + k * SL_VF_LANES));
    for (int k = 1; k < READ_CHAINS; k++) a[0] = sl_vf_add(a[0], a[k]);
    float s = sl_vf_sum(a[0]);
    for (; i < n; i++) s += p[i];
    return s;
}

// Each thread reads its own contiguous share (a multiple of 4 KiB).
static void read_task(void *arg, int thread, int n_threads) {
    ReadCtx *c = arg;
    size_t b, e;
    pool_range(c->n, 1024, thread, n_threads, &b, &e);
    c->sums[thread * 16] = sum_floats(c->buf + b, e - b);
}

// STREAM's triad, a[i] = b[i] + s c[i], over the buffer's three thirds.
static void triad_task(void *arg, int thread, int n_threads) {
    ReadCtx *c = arg;
    size_t third = c->n / 3 / 1024 * 1024, b, e;
    pool_range(third, 1024, thread, n_threads, &b, &e);
    float *x = c->buf, *y = c->buf + third, *z = c->buf + 2 * third;
    const SlVf s = sl_vf_set1(0.5f);
    for (size_t i = b; i < e; i += SL_VF_LANES)  // e - b: a multiple of 1024
        sl_vf_store(x + i, sl_vf_fma(sl_vf_load(z + i), s, sl_vf_load(y + i)));
}

static void fill_task(void *arg, int thread, int n_threads) {
    ReadCtx *c = arg;
    size_t b, e;
    pool_range(c->n, 1024, thread, n_threads, &b, &e);
    for (size_t i = b; i < e; i++) c->buf[i] = (float)(i & 7);
}

// The CPUs in a sysfs list such as "0-3,8,10-11".
static int count_cpus(const char *list) {
    int n = 0;
    for (const char *p = list; *p >= '0' && *p <= '9';) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (*end == '-') b = strtol(end + 1, &end, 10);
        n += b >= a ? (int)(b - a + 1) : 0;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

// The first line of a sysfs file, or "" (buf: size bytes).
static const char *read_line(char *buf, size_t size, const char *path) {
    FILE *f = fopen(path, "r");
    buf[0] = '\0';
    if (f) {
        if (!fgets(buf, (int)size, f)) buf[0] = '\0';
        fclose(f);
    }
    return buf;
}

// The bytes of the last-level caches together, from sysfs: cpu0's highest-level cache times
// the number of such caches (the online CPUs over the CPUs that share it). 0 if unknown.
static size_t llc_bytes(void) {
    size_t best = 0;
    int level = 0, sharing = 1;
    for (int i = 0; i < 16; i++) {
        char path[96], buf[256];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        int lv = atoi(read_line(buf, sizeof buf, path));
        if (lv <= 0 || lv < level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        char *end;
        size_t v = strtoul(read_line(buf, sizeof buf, path), &end, 10);
        v *= *end == 'K' ? 1024 : *end == 'M' ? 1024 * 1024 : 1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", i);
        int n = count_cpus(read_line(buf, sizeof buf, path));
        if (v > 0 && (lv > level || v > best)) best = v, level = lv, sharing = n > 0 ? n : 1;
    }
    long cpus = count_cpus(read_line((char[256]){0}, 256, "/sys/devices/system/cpu/online"));
    long caches = cpus > sharing ? (cpus + sharing - 1) / sharing : 1;
    return best * (size_t)caches;
}

// The buffer: 8 x the last-level caches, at least 256 MiB (a pass of a few ms at most DRAM
// speeds), at most 4 GiB; 512 MiB where the caches are unknown.
static size_t read_buffer_bytes(size_t llc) {
    size_t min = (size_t)256 << 20, max = (size_t)4 << 30;
    if (llc == 0) return (size_t)512 << 20;
    return 8 * llc < min ? min : 8 * llc > max ? max : 8 * llc;
}

// Seconds of one pass of fn over the buffer.
static double timed_pass(Pool *pool, pool_fn fn, ReadCtx *c) {
    double t0 = clock_now();
    pool_run(pool, fn, c);
    return clock_now() - t0;
}

// ----------------------------------------------------------------------------
// arithmetic peaks: every thread runs independent chains of the widest f32 multiply-add and
// int8 dot product of the build (kernels/simd.h), enough chains to cover the latency times the
// throughput of either (4-5 cycles x 2 per cycle on current x86 cores), from registers: no
// loads

#define PEAK_CHAINS 12  // f32 (int8: SL_DOT_CHAINS)

typedef struct {
    int int8;  // 0: f32 multiply-adds; 1: int8 dot products
    long iters;
    float sink[BENCH_MAX_THREADS * 16];
} PeakCtx;

static float fma_chains(long iters) {
    SlVf a[PEAK_CHAINS], x = sl_vf_set1(0.999f), y = sl_vf_set1(1e-3f);  // a -> 1: no overflow
    x = sl_vf_hide(x), y = sl_vf_hide(y);
    for (int k = 0; k < PEAK_CHAINS; k++) a[k] = sl_vf_set1((float)k);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = sl_vf_fma(a[k], x, y);
    float r = 0.0f;
    for (int k = 0; k < PEAK_CHAINS; k++) r += sl_vf_sum(a[k]);
    return r;
}

static float dot_chains(long iters) {
    SlVi a[SL_DOT_CHAINS];
    SlVb x = sl_vb_set1(3), y = sl_vb_set1(-2);
    x = sl_vb_hide(x), y = sl_vb_hide(y);
    for (int k = 0; k < SL_DOT_CHAINS; k++) a[k] = sl_vi_set1(k);  // distinct: no chain is another's
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int k = 0; k < SL_DOT_CHAINS; k++) a[k] = sl_dot(a[k], x, y);
    uint32_t r = 0;
    for (int k = 0; k < SL_DOT_CHAINS; k++) r += (uint32_t)sl_vi_sum(a[k]);
    return (float)r;
}

static void peak_task(void *arg, int thread, int n_threads) {
    (void)n_threads;
    PeakCtx *c = arg;
    c->sink[thread * 16] = c->int8 ? dot_chains(c->iters) : fma_chains(c->iters);
}

// G(FL)OP/s of all threads together, a multiply-add counted as 2 operations (so an int8 dot
// of 4 pairs is 8): the fastest of `runs` runs of *iters steps, which the first call (*iters
// 0) calibrates to at least 2 ms.
static double peak_gops(Pool *pool, int int8, long *iters, int runs) {
    PeakCtx c = {.int8 = int8, .iters = *iters ? *iters : 1024};
    for (; !*iters;) {  // calibrate (and bring the clock up)
        double t0 = clock_now();
        pool_run(pool, peak_task, &c);
        if (clock_now() - t0 > 2e-3 || c.iters >= (1L << 30)) *iters = c.iters;
        else c.iters *= 2;
    }
    double best = 0.0;
    for (int r = 0; r < runs; r++) {
        double t0 = clock_now();
        pool_run(pool, peak_task, &c);
        double t = clock_now() - t0;
        best = r == 0 || t < best ? t : best;
    }
    double per_thread = 2.0 * (double)c.iters *
                        (int8 ? SL_DOT_CHAINS * SL_DOT_PRODUCTS : PEAK_CHAINS * SL_VF_LANES);
    return per_thread * pool_size(pool) / best / 1e9;
}

// The samples of the limits of one thread count.
typedef struct {
    double read[BENCH_SAMPLES], triad[BENCH_SAMPLES];  // seconds of each pass
    int n;
    double fma, int8;  // the fastest of the peaks' runs so far
    long fma_iters, int8_iters;
} Limits;

// One point's samples: BENCH_PASSES passes of the read and of the triad, and as many runs of
// each peak.
static void sample_limits(Pool *pool, ReadCtx *rc, Limits *l) {
    for (int p = 0; p < BENCH_PASSES && l->n < BENCH_SAMPLES; p++, l->n++) {
        l->read[l->n] = timed_pass(pool, read_task, rc);
        l->triad[l->n] = timed_pass(pool, triad_task, rc);
    }
    double fma = peak_gops(pool, 0, &l->fma_iters, BENCH_PASSES);
    double int8 = peak_gops(pool, 1, &l->int8_iters, BENCH_PASSES);
    l->fma = fma > l->fma ? fma : l->fma;
    l->int8 = int8 > l->int8 ? int8 : l->int8;
}

// ----------------------------------------------------------------------------
// model: prompt processing and generation

// Multiply-adds of a prompt of P tokens from position 0, run as the forward pass runs it:
// *mm those of the matrix products (every layer's seven matrices for every token, the
// classifier for the last token of each batch), *att those of attention (q . k and p v over
// the keys each query sees).
static void prompt_macs(const Transformer *t, long P, double *mm, double *att) {
    const SlHeader *h = &t->model.header;
    double dim = h->dim, hid = h->hidden_dim, q = (double)h->n_heads * h->head_dim;
    double kv = (double)h->n_kv_heads * h->head_dim;
    double layer = dim * (q + 2 * kv) + q * dim + 3 * dim * hid;
    long batches = (P + (long)t->state.batch - 1) / (long)t->state.batch;
    *mm = (double)h->n_layers * layer * (double)P + (double)batches * h->vocab_size * dim;
    double keys = 0;
    for (long i = 0; i < P; i++)
        keys += h->sliding_window > 0 && i + 1 > h->sliding_window ? h->sliding_window : i + 1;
    *att = (double)h->n_layers * 2.0 * keys * q;
}

// Bytes read from the weights per generated token: every matrix and norm, the whole
// classifier, and one row of the embedding when the classifier is separate.
static size_t bytes_per_token(const Model *m) {
    size_t sum = 0;
    for (int t = 0; t < SL_T_COUNT; t++) sum += m->layout.bytes[t];
    if (!(m->header.flags & SL_FLAG_SHARED_CLASSIFIER))
        sum -= m->layout.bytes[SL_T_EMBED] - m->layout.bytes[SL_T_EMBED] / m->layout.rows[SL_T_EMBED];
    return sum;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// A pp-token prompt from position 0 (in batches of the run state's size): *seconds its
// median time of reps (after one warm-up run), *att_share the median fraction of it spent in
// attention (s: 2 reps doubles of scratch).
static void bench_pp(Transformer *t, const int *tokens, long pp, long reps, double *s,
                     double *seconds, double *att_share) {
    double *a = s + reps;
    transformer_forward(t, tokens, (size_t)pp, 0);
    for (long r = 0; r < reps; r++) {
        t->attention_seconds = 0.0;
        double t0 = clock_now();
        transformer_forward(t, tokens, (size_t)pp, 0);
        s[r] = clock_now() - t0;
        a[r] = t->attention_seconds / s[r];
    }
    *seconds = median(s, reps);
    *att_share = median(a, reps);
}

// tok/s generating tg tokens from an empty cache, greedily, median of reps; *best that of the
// fastest run (s: reps + 1 doubles of scratch).
static double bench_tg(Transformer *t, long tg, long reps, double *s, double *best) {
    int vocab = t->model.header.vocab_size;
    for (long r = 0; r <= reps; r++) {  // run 0 warms up
        int token = t->model.header.bos_id >= 0 ? t->model.header.bos_id : 0;
        double t0 = clock_now();
        for (long p = 0; p < tg; p++) token = argmax(transformer_forward(t, &token, 1, (size_t)p), vocab);
        s[r] = clock_now() - t0;
    }
    *best = (double)tg / least(s + 1, reps);
    return (double)tg / median(s + 1, reps);
}

// ----------------------------------------------------------------------------
// attention micro-benchmark: 32 query heads sharing 4 KV heads, head_dim 64

#define ATT_SEQ 4096
static AttnShape att_shape = {32, 4, 64, ATT_SEQ, ATTN_KV_F32, 0};  // kv_type from --kv

// GB/s of KV cache read at context ctx, median of reps samples of >= 2 ms each. With att
// (n_heads, ATT_SEQ floats), recording is on: the kernel also writes its weights there.
// s: reps doubles of scratch.
static double bench_attention(Pool *pool, const float *q, const void *kc, const void *vc,
                              float *out, float *scratch, float *att, size_t ctx, long reps,
                              double *s) {
    size_t calls = 1;
    for (;;) {  // calibrate the calls per sample
        double t0 = clock_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        if (clock_now() - t0 > 2e-3) break;
        calls *= 2;
    }
    for (long r = 0; r < reps; r++) {
        double t0 = clock_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        s[r] = (clock_now() - t0) / (double)calls;
    }
    double bytes = 2.0 * (double)(att_shape.n_kv_heads * ctx * att_shape.head_dim) *
                   (double)attention_kv_bytes(att_shape.kv_type);
    return bytes / median(s, reps) / 1e9;
}

// ----------------------------------------------------------------------------

typedef struct {
    int threads;
    double read_gbs, read_median_gbs, triad_gbs;  // the limit: read_gbs, the fastest pass
    double tg_tps, tg_best_tps;                   // median and fastest generation run
    double fma_gflops, int8_gops;                 // the peaks, fastest runs
    double pp_tps[BENCH_MAX_PP];
    double pp_gflops[BENCH_MAX_PP];  // matrix products and attention, over the whole time
    double pp_peak[BENCH_MAX_PP];    // the matrix products' rate outside attention / their peak
    double pp_att[BENCH_MAX_PP];     // the share of the time spent in attention
    double att_gbs[5], att_rec_gbs[5];  // attention without and with recording the weights
} Row;

typedef struct {
    size_t llc, bytes;  // the last-level caches together (0: unknown), the buffer
} Memory;

// Block types (q8_0, q4_0, the k-quants) meet int8 activations; the rest runs f32 FMAs.
static int uses_int8(const Model *m) { return matmul_input_forms((int)m->header.weight_type) != 0; }

static const size_t att_ctx[5] = {256, 512, 1024, 2048, 4096};

// One line for each limit that was beaten: generation's fastest run reading its weights
// faster than the read pass, the matrix products above their peak. None should print; one
// that does says which figure to distrust. (The triad is no limit on reading: its writes
// stream out beside its reads, and on this Zen 5 it counts 1.2-1.3x the read pass's bytes.)
static void print_warnings(FILE *f, const Model *m, const BenchOptions *o, const Row *rows,
                           const Memory *mem) {
    size_t bpt = bytes_per_token(m);
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double w = r->tg_best_tps * (double)bpt / 1e9;
        if (w > r->read_gbs) {
            fprintf(f, "warning: %d threads: generation read its weights at %.1f GB/s (its fastest run), "
                       "above the read bandwidth of %.1f GB/s", r->threads, w, r->read_gbs);
            if (mem->llc && bpt < 4 * mem->llc)
                fprintf(f, ": part of its %.1f MB of weights stays in the %.1f MB of last-level cache\n",
                        (double)bpt / 1e6, (double)mem->llc / 1e6);
            else
                fprintf(f, ": the read bandwidth is understated\n");
        }
        for (int k = 0; k < o->n_pp; k++)
            if (r->pp_peak[k] > 1.0)
                fprintf(f, "warning: %d threads: pp%ld's matrix products ran at %.0f%% of the %s peak: "
                           "the peak is understated\n", r->threads, o->pp[k], 100.0 * r->pp_peak[k],
                        uses_int8(m) ? "int8" : "FMA");
    }
}

static void print_text(const char *path, const Model *m, const BenchOptions *o, const Row *rows,
                       const Memory *mem) {
    size_t bpt = bytes_per_token(m);
    printf("model %s: %s weights, %.1f M parameters, %.1f MB of weights read per token; %s kernels\n",
           path, dtype_name((int)m->header.weight_type), (double)layout_params(&m->layout) / 1e6,
           (double)bpt / 1e6, matmul_isa());
    printf("memory: a %zu MiB buffer (", mem->bytes >> 20);
    if (mem->llc) printf("%.1fx the %zu KiB of last-level cache", (double)mem->bytes / (double)mem->llc, mem->llc >> 10);
    else printf("the last-level cache unknown");
    printf("), each thread its own share; read: %d-byte loads into %d sums, the fastest of %d passes, "
           "%d at each of %d points of the run (and their median); triad: a = b + s c over its "
           "thirds, counted as STREAM does (3 x 4 bytes per element, its writes included); tok/s: "
           "medians of %ld runs\n\n", SL_VF_BYTES, READ_CHAINS, BENCH_SAMPLES, BENCH_PASSES,
           BENCH_POINTS, o->reps);
    printf("| threads | read GB/s | median | triad GB/s | test | tok/s | weights GB/s | roofline tok/s | of roofline |\n");
    printf("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double roof = r->read_gbs * 1e9 / (double)bpt;
        printf("| %d | %.1f | %.1f | %.1f | tg%ld | %.1f | %.1f | %.1f | %.0f%% |\n", r->threads,
               r->read_gbs, r->read_median_gbs, r->triad_gbs, o->tg, r->tg_tps,
               r->tg_tps * (double)bpt / 1e9, roof, 100.0 * r->tg_tps / roof);
    }
    int i8 = uses_int8(m);
    printf("\nprompt processing: peaks measured here, the fastest of %d runs (as the passes above) of "
           "independent chains on "
           "every thread, a multiply-add counted as 2 operations (FMA: %d chains of %s, %d f32 lanes; "
           "int8: %d chains of %s, %d products); the matrix products' share of the %s peak is their "
           "rate outside attention\n\n", BENCH_SAMPLES, PEAK_CHAINS, SL_FMA_NAME, SL_VF_LANES,
           SL_DOT_CHAINS, SL_DOT_NAME, SL_DOT_PRODUCTS, i8 ? "int8" : "FMA");
    printf("| threads | FMA peak GFLOP/s | int8 peak GOP/s | test | tok/s | GFLOP/s | of peak | attention |\n");
    printf("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_threads; i++)
        for (int k = 0; k < o->n_pp; k++) {
            const Row *r = &rows[i];
            printf("| %d | %.0f | %.0f | pp%ld | %.1f | %.1f | %.0f%% | %.0f%% |\n", r->threads,
                   r->fma_gflops, r->int8_gops, o->pp[k], r->pp_tps[k], r->pp_gflops[k],
                   100.0 * r->pp_peak[k], 100.0 * r->pp_att[k]);
        }
    printf("\nattention: %zu query heads sharing %zu KV heads, head_dim %zu, %s cache\n\n",
           att_shape.n_heads, att_shape.n_kv_heads, att_shape.head_dim,
           att_shape.kv_type == ATTN_KV_F16 ? "f16" : "f32");
    printf("| threads | context | KV read GB/s | of read bandwidth | recording on: GB/s | on / off |\n"
           "| ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_threads; i++)
        for (int c = 0; c < 5; c++)
            printf("| %d | %zu | %.1f | %.0f%% | %.1f | %.2f |\n", rows[i].threads, att_ctx[c],
                   rows[i].att_gbs[c], 100.0 * rows[i].att_gbs[c] / rows[i].read_gbs,
                   rows[i].att_rec_gbs[c], rows[i].att_rec_gbs[c] / rows[i].att_gbs[c]);
    printf("\n");
    print_warnings(stdout, m, o, rows, mem);
}

static void print_json(const char *path, const Model *m, const BenchOptions *o, const Row *rows,
                       const Memory *mem) {
    size_t bpt = bytes_per_token(m);
    printf("{\"model\": \"%s\", \"weight_type\": \"%s\", \"kv_type\": \"%s\", \"params\": %zu, "
           "\"bytes_per_token\": %zu, \"read_buffer_bytes\": %zu, \"llc_bytes\": %zu, "
           "\"samples\": %d, \"fma_instruction\": \"%s\", \"int8_instruction\": \"%s\", "
           "\"kernels\": \"%s\", \"reps\": %ld, \"results\": [",
           path, dtype_name((int)m->header.weight_type), o->kv_type == ATTN_KV_F16 ? "f16" : "f32",
           layout_params(&m->layout), bpt, mem->bytes, mem->llc, BENCH_SAMPLES, SL_FMA_NAME,
           SL_DOT_NAME, matmul_isa(), o->reps);
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double roof = r->read_gbs * 1e9 / (double)bpt;
        printf("%s\n  {\"threads\": %d, \"read_gbs\": %.2f, \"read_median_gbs\": %.2f, "
               "\"triad_gbs\": %.2f, \"pp\": %ld, \"pp_tok_s\": %.2f, \"tg\": %ld, \"tg_tok_s\": %.2f, "
               "\"tg_best_tok_s\": %.2f, \"roofline_tok_s\": %.2f, \"roofline_fraction\": %.4f, "
               "\"fma_peak_gflops\": %.1f, \"int8_peak_gops\": %.1f, \"prompts\": [",
               i ? "," : "", r->threads, r->read_gbs, r->read_median_gbs, r->triad_gbs, o->pp[0],
               r->pp_tps[0], o->tg, r->tg_tps, r->tg_best_tps, roof, r->tg_tps / roof, r->fma_gflops,
               r->int8_gops);
        for (int k = 0; k < o->n_pp; k++)
            printf("%s{\"pp\": %ld, \"tok_s\": %.2f, \"gflops\": %.2f, \"peak_fraction\": %.4f, "
                   "\"attention_share\": %.4f}", k ? ", " : "", o->pp[k], r->pp_tps[k],
                   r->pp_gflops[k], r->pp_peak[k], r->pp_att[k]);
        printf("], \"attention_gbs\": {");
        for (int c = 0; c < 5; c++) printf("%s\"%zu\": %.2f", c ? ", " : "", att_ctx[c], r->att_gbs[c]);
        printf("}, \"attention_recording_gbs\": {");
        for (int c = 0; c < 5; c++)
            printf("%s\"%zu\": %.2f", c ? ", " : "", att_ctx[c], r->att_rec_gbs[c]);
        printf("}}");
    }
    printf("\n]}\n");
    print_warnings(stderr, m, o, rows, mem);
}

int bench_run(const char *path, const BenchOptions *o) {
    Transformer t;
    if (transformer_build(&t, path, NULL, o->kv_type) != MODEL_OK) return 1;
    const SlHeader *h = &t.model.header;
    BenchOptions opt = *o;  // the default prompt lengths that fit the context
    o = &opt;
    if (opt.pp_default) {
        int k = 0;
        for (int i = 0; i < opt.n_pp; i++)
            if (opt.pp[i] <= h->seq_len) opt.pp[k++] = opt.pp[i];
            else if (!o->json)
                fprintf(stderr, "pp%ld left out: the context holds %d positions\n", opt.pp[i], h->seq_len);
        opt.n_pp = k ? k : 1;
        if (!k) opt.pp[0] = h->seq_len;
    }
    long pp_max = 0;
    for (int i = 0; i < opt.n_pp; i++) pp_max = opt.pp[i] > pp_max ? opt.pp[i] : pp_max;
    if (pp_max > h->seq_len || o->tg > h->seq_len) {
        fprintf(stderr, "run: --pp %ld / --tg %ld: the context holds %d positions\n", pp_max, o->tg,
                h->seq_len);
        transformer_free(&t);
        return 2;
    }
    Memory mem = {.llc = llc_bytes()};
    mem.bytes = read_buffer_bytes(mem.llc);
    ReadCtx *rc = calloc(1, sizeof *rc);
    float *buf = aligned_alloc(64, mem.bytes);
    att_shape.kv_type = o->kv_type;
    size_t kv = att_shape.n_kv_heads * ATT_SEQ * att_shape.head_dim;
    size_t kv_bytes = attention_kv_bytes(o->kv_type);
    uint8_t *kc = malloc(kv * kv_bytes), *vc = malloc(kv * kv_bytes);
    float *q = malloc(att_shape.n_heads * att_shape.head_dim * sizeof(float));
    float *out = malloc(att_shape.n_heads * att_shape.head_dim * sizeof(float));
    float *scratch = malloc(attention_scratch_bytes(&att_shape));
    float *att = malloc(att_shape.n_heads * ATT_SEQ * sizeof(float));
    int *tokens = malloc((size_t)pp_max * sizeof(int));
    Row *rows = calloc((size_t)o->n_threads, sizeof *rows);
    double *times = malloc(2 * ((size_t)o->reps + 1) * sizeof *times);  // timing scratch
    int status = 0;
    if (!rc || !buf || !kc || !vc || !q || !out || !scratch || !att || !tokens || !rows || !times) {
        fprintf(stderr, "run: out of memory for the benchmark buffers\n");
        status = 1;
        goto done;
    }
    rc->buf = buf;
    rc->n = mem.bytes / sizeof(float);
    uint64_t seed = 0x5EED;
    for (size_t i = 0; i < kv; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        float k = (float)(seed >> 40) / 16777216.0f - 0.5f;
        float v = (float)(seed >> 16 & 0xFFFFFF) / 16777216.0f - 0.5f;
        attention_kv_store(o->kv_type, kc + i * kv_bytes, &k, 1);
        attention_kv_store(o->kv_type, vc + i * kv_bytes, &v, 1);
        if (i < att_shape.n_heads * att_shape.head_dim) q[i] = k;
    }
    for (long i = 0; i < pp_max; i++) tokens[i] = (int)((i * 7919 + 3) % h->vocab_size);

    for (int i = 0; i < o->n_threads; i++) {
        Pool *pool = pool_create(o->threads[i]);
        if (!pool) {
            status = 1;
            break;
        }
        t.pool = pool;
        Row *r = &rows[i];
        r->threads = o->threads[i];
        pool_run(pool, fill_task, rc);  // touch the pages before timing
        pool_run(pool, read_task, rc);
        Limits lim = {.n = 0};
        sample_limits(pool, rc, &lim);
        double mm_rate[BENCH_MAX_PP];  // GFLOP/s of the matrix products outside attention
        for (int k = 0; k < o->n_pp; k++) {
            double sec, share, mm, att;
            bench_pp(&t, tokens, o->pp[k], o->reps, times, &sec, &share);
            prompt_macs(&t, o->pp[k], &mm, &att);
            r->pp_tps[k] = (double)o->pp[k] / sec;
            r->pp_gflops[k] = 2.0 * (mm + att) / sec / 1e9;
            mm_rate[k] = 2.0 * mm / (sec * (1.0 - share)) / 1e9;
            r->pp_att[k] = share;
        }
        sample_limits(pool, rc, &lim);
        r->tg_tps = bench_tg(&t, o->tg, o->reps, times, &r->tg_best_tps);
        sample_limits(pool, rc, &lim);
        for (int c = 0; c < 5; c++) {
            r->att_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, NULL, att_ctx[c], o->reps, times);
            r->att_rec_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, att, att_ctx[c], o->reps, times);
        }
        sample_limits(pool, rc, &lim);
        double third = (double)(rc->n / 3 / 1024 * 1024) * sizeof(float);
        r->read_gbs = (double)mem.bytes / least(lim.read, lim.n) / 1e9;
        r->read_median_gbs = (double)mem.bytes / median(lim.read, lim.n) / 1e9;
        r->triad_gbs = 3 * third / least(lim.triad, lim.n) / 1e9;
        r->fma_gflops = lim.fma;
        r->int8_gops = lim.int8;
        double peak = uses_int8(&t.model) ? r->int8_gops : r->fma_gflops;
        for (int k = 0; k < o->n_pp; k++) r->pp_peak[k] = mm_rate[k] / peak;
        if (!o->json)
            fprintf(stderr, "threads %d: read %.1f GB/s, triad %.1f GB/s, pp%ld %.1f tok/s, tg %.1f tok/s\n",
                    r->threads, r->read_gbs, r->triad_gbs, o->pp[0], r->pp_tps[0], r->tg_tps);
        t.pool = NULL;
        pool_destroy(pool);
    }
    if (status == 0) (o->json ? print_json : print_text)(path, &t.model, o, rows, &mem);
done:
    free(times), free(rows), free(tokens), free(scratch), free(att), free(out), free(q), free(vc), free(kc), free(buf), free(rc);
    transformer_free(&t);
    return status;
}

// bench.c: the benchmark mode of ./run (see bench.h).
#include "app/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/term.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "runtime/transformer.h"
#include "base/clock.h"
#include "base/pool.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ----------------------------------------------------------------------------
// read bandwidth: every thread sums its contiguous slice of a buffer beyond the LLC

typedef struct {
    const float *buf;
    size_t n;
    float sums[BENCH_MAX_THREADS * 16];  // one cache line per thread
} ReadCtx;

static float sum_floats(const float *p, size_t n) {
    size_t i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int k = 0; k < 8; k++) s += lanes[k];
#endif
    for (; i < n; i++) s += p[i];
    return s;
}

static void read_task(void *arg, int thread, int n_threads) {
    ReadCtx *c = arg;
    size_t b, e;
    pool_range(c->n, 1024, thread, n_threads, &b, &e);
    c->sums[thread * 16] = sum_floats(c->buf + b, e - b);
}

static void fill_task(void *arg, int thread, int n_threads) {
    ReadCtx *c = arg;
    size_t b, e;
    pool_range(c->n, 1024, thread, n_threads, &b, &e);
    float *p = (float *)c->buf;
    for (size_t i = b; i < e; i++) p[i] = (float)(i & 7);
}

// Size of the last-level cache from sysfs, or 0 if unknown.
static size_t llc_bytes(void) {
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            size_t v = strtoul(buf, &end, 10);
            v *= *end == 'K' ? 1024 : *end == 'M' ? 1024 * 1024 : 1;
            if (v > best) best = v;
        }
        fclose(f);
    }
    return best;
}

// GB/s of one pass over the buffer, median of reps (t: reps doubles of scratch).
static double read_bandwidth(Pool *pool, ReadCtx *c, long reps, double *t) {
    pool_run(pool, read_task, c);  // warm up
    for (long r = 0; r < reps; r++) {
        double t0 = pool_now();
        pool_run(pool, read_task, c);
        t[r] = pool_now() - t0;
    }
    return (double)c->n * sizeof(float) / median(t, reps) / 1e9;
}

// ----------------------------------------------------------------------------
// arithmetic peaks: every thread runs independent chains of the multiply-add that the
// matmul kernels of this build use, enough chains to hide its latency

#define PEAK_CHAINS 12
#define PEAK_ITERS 200000

typedef struct {
    int int8;  // 0: f32 FMA; 1: int8 dot products
    float sink[BENCH_MAX_THREADS * 16];
} PeakCtx;

// Multiply-adds per chain step: f32 FMAs (lanes) or int8 products.
#if defined(__AVX512F__)
#define PEAK_F32_LANES 16
#else
#define PEAK_F32_LANES 8
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define PEAK_I8_PRODUCTS 64  // vpdpbusd on a zmm
#else
#define PEAK_I8_PRODUCTS 32  // vpmaddubsw + vpmaddwd + vpaddd on a ymm
#endif

#if defined(__AVX2__)
static void peak_task(void *arg, int thread, int n_threads) {
    (void)n_threads;
    PeakCtx *c = arg;
    float r = 0.0f;
#if defined(__AVX512F__)
    if (!c->int8) {
        __m512 a[PEAK_CHAINS], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_set1_ps((float)k);
        for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
            for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_fmadd_ps(a[k], x, y);
        for (int k = 0; k < PEAK_CHAINS; k++) r += _mm512_reduce_add_ps(a[k]);
    }
#elif defined(__AVX2__) && defined(__FMA__)
    if (!c->int8) {
        __m256 a[PEAK_CHAINS], x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm256_set1_ps((float)k);
        for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
            for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm256_fmadd_ps(a[k], x, y);
        float lanes[8];
        for (int k = 0; k < PEAK_CHAINS; k++) {
            _mm256_storeu_ps(lanes, a[k]);
            r += lanes[0];
        }
    }
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if (c->int8) {
        __m512i a[PEAK_CHAINS], x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_set1_epi32(k);
        for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
            for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm512_dpbusd_epi32(a[k], x, y);
        for (int k = 0; k < PEAK_CHAINS; k++) r += (float)_mm512_reduce_add_epi32(a[k]);
    }
#elif defined(__AVX2__)
    if (c->int8) {
        __m256i a[PEAK_CHAINS], x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(-2);
        const __m256i ones = _mm256_set1_epi16(1);
        for (int k = 0; k < PEAK_CHAINS; k++) a[k] = _mm256_set1_epi32(k);
        for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
            for (int k = 0; k < PEAK_CHAINS; k++)
                a[k] = _mm256_add_epi32(a[k], _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones));
        for (int k = 0; k < PEAK_CHAINS; k++) r += (float)_mm256_extract_epi32(a[k], 0);
    }
#endif
    c->sink[thread * 16] = r;
}
#endif

// G(FL)OP/s of all threads together (a multiply-add counts 2), median of reps (t: reps
// doubles of scratch); 0 where this build has no SIMD kernel for it.
static double peak_gops(Pool *pool, int int8, long reps, double *t) {
#if !defined(__AVX2__)
    (void)pool, (void)int8, (void)reps, (void)t;
    return 0.0;
#else
    PeakCtx c = {.int8 = int8};
    pool_run(pool, peak_task, &c);  // warm up (and bring the clock up)
    for (long r = 0; r < reps; r++) {
        double t0 = pool_now();
        pool_run(pool, peak_task, &c);
        t[r] = pool_now() - t0;
    }
    double per_thread = 2.0 * PEAK_ITERS * PEAK_CHAINS * (int8 ? PEAK_I8_PRODUCTS : PEAK_F32_LANES);
    return per_thread * pool_size(pool) / median(t, reps) / 1e9;
#endif
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
        double t0 = pool_now();
        transformer_forward(t, tokens, (size_t)pp, 0);
        s[r] = pool_now() - t0;
        a[r] = t->attention_seconds / s[r];
    }
    *seconds = median(s, reps);
    *att_share = median(a, reps);
}

// tok/s generating tg tokens from an empty cache, greedily, median of reps (s: reps + 1
// doubles of scratch).
static double bench_tg(Transformer *t, long tg, long reps, double *s) {
    int vocab = t->model.header.vocab_size;
    for (long r = 0; r <= reps; r++) {  // run 0 warms up
        int token = t->model.header.bos_id >= 0 ? t->model.header.bos_id : 0;
        double t0 = pool_now();
        for (long p = 0; p < tg; p++) token = argmax(transformer_forward(t, &token, 1, (size_t)p), vocab);
        s[r] = pool_now() - t0;
    }
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
        double t0 = pool_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        if (pool_now() - t0 > 2e-3) break;
        calls *= 2;
    }
    for (long r = 0; r < reps; r++) {
        double t0 = pool_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        s[r] = (pool_now() - t0) / (double)calls;
    }
    double bytes = 2.0 * (double)(att_shape.n_kv_heads * ctx * att_shape.head_dim) *
                   (double)attention_kv_bytes(att_shape.kv_type);
    return bytes / median(s, reps) / 1e9;
}

// ----------------------------------------------------------------------------

typedef struct {
    int threads;
    double read_gbs, tg_tps;
    double fma_gflops, int8_gops;  // the peaks (0: no SIMD kernel in this build)
    double pp_tps[BENCH_MAX_PP];
    double pp_gflops[BENCH_MAX_PP];  // matrix products and attention, over the whole time
    double pp_peak[BENCH_MAX_PP];    // the matrix products' rate outside attention / their peak
    double pp_att[BENCH_MAX_PP];     // the share of the time spent in attention
    double att_gbs[5], att_rec_gbs[5];  // attention without and with recording the weights
} Row;

// Block types (q8_0, q4_0, the k-quants) meet int8 activations; the rest runs f32 FMAs.
static int uses_int8(const Model *m) { return matmul_input_forms((int)m->header.weight_type) != 0; }

static const size_t att_ctx[5] = {256, 512, 1024, 2048, 4096};

static void print_text(const char *path, const Model *m, const BenchOptions *o, const Row *rows,
                       size_t read_bytes) {
    size_t bpt = bytes_per_token(m);
    printf("model %s: %s weights, %.1f M parameters, %.1f MB of weights read per token; %s kernels\n",
           path, dtype_name((int)m->header.weight_type), (double)layout_params(&m->layout) / 1e6,
           (double)bpt / 1e6, matmul_isa());
    printf("read bandwidth: one pass over a %zu MB buffer; each figure a median of %ld runs\n\n",
           read_bytes >> 20, o->reps);
    printf("| threads | read GB/s | test | tok/s | weights GB/s | roofline tok/s | of roofline |\n");
    printf("| ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double roof = r->read_gbs * 1e9 / (double)bpt;
        printf("| %d | %.1f | tg%ld | %.1f | %.1f | %.1f | %.0f%% |\n", r->threads, r->read_gbs,
               o->tg, r->tg_tps, r->tg_tps * (double)bpt / 1e9, roof, 100.0 * r->tg_tps / roof);
    }
    int i8 = uses_int8(m);
    printf("\nprompt processing: peaks measured here (FMA: f32 multiply-adds; int8: %s); the "
           "matrix products' share of the %s peak is their rate outside attention\n\n",
           PEAK_I8_PRODUCTS == 64 ? "vpdpbusd" : "vpmaddubsw + vpmaddwd", i8 ? "int8" : "FMA");
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
}

static void print_json(const char *path, const Model *m, const BenchOptions *o, const Row *rows,
                       size_t read_bytes) {
    size_t bpt = bytes_per_token(m);
    printf("{\"model\": \"%s\", \"weight_type\": \"%s\", \"kv_type\": \"%s\", \"params\": %zu, "
           "\"bytes_per_token\": %zu, \"read_buffer_bytes\": %zu, \"reps\": %ld, \"results\": [",
           path, dtype_name((int)m->header.weight_type), o->kv_type == ATTN_KV_F16 ? "f16" : "f32",
           layout_params(&m->layout), bpt, read_bytes, o->reps);
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double roof = r->read_gbs * 1e9 / (double)bpt;
        printf("%s\n  {\"threads\": %d, \"read_gbs\": %.2f, \"pp\": %ld, \"pp_tok_s\": %.2f, "
               "\"tg\": %ld, \"tg_tok_s\": %.2f, \"roofline_tok_s\": %.2f, \"roofline_fraction\": %.4f, "
               "\"fma_peak_gflops\": %.1f, \"int8_peak_gops\": %.1f, \"prompts\": [",
               i ? "," : "", r->threads, r->read_gbs, o->pp[0], r->pp_tps[0], o->tg, r->tg_tps, roof,
               r->tg_tps / roof, r->fma_gflops, r->int8_gops);
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
    size_t llc = llc_bytes(), read_bytes = (size_t)512 << 20;
    if (4 * llc > read_bytes) read_bytes = 4 * llc;
    ReadCtx *rc = calloc(1, sizeof *rc);
    float *buf = aligned_alloc(64, read_bytes);
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
    rc->n = read_bytes / sizeof(float);
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
        r->read_gbs = read_bandwidth(pool, rc, o->reps, times);
        r->fma_gflops = peak_gops(pool, 0, o->reps, times);
        r->int8_gops = peak_gops(pool, 1, o->reps, times);
        double peak = uses_int8(&t.model) ? r->int8_gops : r->fma_gflops;
        for (int k = 0; k < o->n_pp; k++) {
            double sec, share, mm, att;
            bench_pp(&t, tokens, o->pp[k], o->reps, times, &sec, &share);
            prompt_macs(&t, o->pp[k], &mm, &att);
            r->pp_tps[k] = (double)o->pp[k] / sec;
            r->pp_gflops[k] = 2.0 * (mm + att) / sec / 1e9;
            r->pp_peak[k] = peak > 0 ? 2.0 * mm / (sec * (1.0 - share)) / 1e9 / peak : 0.0;
            r->pp_att[k] = share;
        }
        r->tg_tps = bench_tg(&t, o->tg, o->reps, times);
        for (int c = 0; c < 5; c++) {
            r->att_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, NULL, att_ctx[c], o->reps, times);
            r->att_rec_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, att, att_ctx[c], o->reps, times);
        }
        if (!o->json)
            fprintf(stderr, "threads %d: read %.1f GB/s, pp%ld %.1f tok/s, tg %.1f tok/s\n",
                    r->threads, r->read_gbs, o->pp[0], r->pp_tps[0], r->tg_tps);
        t.pool = NULL;
        pool_destroy(pool);
    }
    if (status == 0) (o->json ? print_json : print_text)(path, &t.model, o, rows, read_bytes);
done:
    free(times), free(rows), free(tokens), free(scratch), free(att), free(out), free(q), free(vc), free(kc), free(buf), free(rc);
    transformer_free(&t);
    return status;
}

// bench.c: the benchmark mode of ./run (see bench.h).
#include "app/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/term.h"
#include "kernels/attention.h"
#include "runtime/pool.h"
#include "runtime/transformer.h"

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

// GB/s of one pass over the buffer, median of reps.
static double read_bandwidth(Pool *pool, ReadCtx *c, long reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    pool_run(pool, read_task, c);  // warm up
    for (long r = 0; r < reps; r++) {
        double t0 = term_now();
        pool_run(pool, read_task, c);
        t[r] = term_now() - t0;
    }
    double bw = (double)c->n * sizeof(float) / median(t, reps) / 1e9;
    free(t);
    return bw;
}

// ----------------------------------------------------------------------------
// model: prompt processing and generation

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

// tok/s of a pp-token prompt as one batch, median of reps (after one warm-up run).
static double bench_pp(Transformer *t, const int *tokens, long pp, long reps) {
    double *s = malloc((size_t)reps * sizeof *s);
    transformer_forward(t, tokens, (size_t)pp, 0);
    for (long r = 0; r < reps; r++) {
        double t0 = term_now();
        transformer_forward(t, tokens, (size_t)pp, 0);
        s[r] = term_now() - t0;
    }
    double tps = (double)pp / median(s, reps);
    free(s);
    return tps;
}

// tok/s generating tg tokens from an empty cache, greedily, median of reps.
static double bench_tg(Transformer *t, long tg, long reps) {
    double *s = malloc((size_t)(reps + 1) * sizeof *s);
    int vocab = t->model.header.vocab_size;
    for (long r = 0; r <= reps; r++) {  // run 0 warms up
        int token = t->model.header.bos_id >= 0 ? t->model.header.bos_id : 0;
        double t0 = term_now();
        for (long p = 0; p < tg; p++) token = argmax(transformer_forward(t, &token, 1, (size_t)p), vocab);
        s[r] = term_now() - t0;
    }
    double tps = (double)tg / median(s + 1, reps);
    free(s);
    return tps;
}

// ----------------------------------------------------------------------------
// attention micro-benchmark: 32 query heads sharing 4 KV heads, head_dim 64

#define ATT_SEQ 4096
static AttnShape att_shape = {32, 4, 64, ATT_SEQ, ATTN_KV_F32, 0};  // kv_type from --kv

// GB/s of KV cache read at context ctx, median of reps samples of >= 2 ms each. With att
// (n_heads, ATT_SEQ floats), recording is on: the kernel also writes its weights there.
static double bench_attention(Pool *pool, const float *q, const void *kc, const void *vc,
                              float *out, float *scratch, float *att, size_t ctx, long reps) {
    double *s = malloc((size_t)reps * sizeof *s);
    size_t calls = 1;
    for (;;) {  // calibrate the calls per sample
        double t0 = term_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        if (term_now() - t0 > 2e-3) break;
        calls *= 2;
    }
    for (long r = 0; r < reps; r++) {
        double t0 = term_now();
        for (size_t i = 0; i < calls; i++) attention_decode_rec(pool, &att_shape, out, q, kc, vc, ctx - 1, scratch, att, ATT_SEQ);
        s[r] = (term_now() - t0) / (double)calls;
    }
    double bytes = 2.0 * (double)(att_shape.n_kv_heads * ctx * att_shape.head_dim) *
                   (double)attention_kv_bytes(att_shape.kv_type);
    double gbs = bytes / median(s, reps) / 1e9;
    free(s);
    return gbs;
}

// ----------------------------------------------------------------------------

typedef struct {
    int threads;
    double read_gbs, pp_tps, tg_tps;
    double att_gbs[5], att_rec_gbs[5];  // attention without and with recording the weights
} Row;

static const size_t att_ctx[5] = {256, 512, 1024, 2048, 4096};

static void print_text(const char *path, const Model *m, const BenchOptions *o, const Row *rows,
                       size_t read_bytes) {
    size_t bpt = bytes_per_token(m);
    printf("model %s: %s weights, %.1f M parameters, %.1f MB of weights read per token\n", path,
           dtype_name((int)m->header.weight_type), (double)layout_params(&m->layout) / 1e6, (double)bpt / 1e6);
    printf("read bandwidth: one pass over a %zu MB buffer; each figure a median of %ld runs\n\n",
           read_bytes >> 20, o->reps);
    printf("| threads | read GB/s | test | tok/s | weights GB/s | roofline tok/s | of roofline |\n");
    printf("| ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_threads; i++) {
        const Row *r = &rows[i];
        double roof = r->read_gbs * 1e9 / (double)bpt;
        printf("| %d | %.1f | pp%ld | %.1f | | | |\n", r->threads, r->read_gbs, o->pp, r->pp_tps);
        printf("| %d | %.1f | tg%ld | %.1f | %.1f | %.1f | %.0f%% |\n", r->threads, r->read_gbs,
               o->tg, r->tg_tps, r->tg_tps * (double)bpt / 1e9, roof, 100.0 * r->tg_tps / roof);
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
               "\"attention_gbs\": {",
               i ? "," : "", r->threads, r->read_gbs, o->pp, r->pp_tps, o->tg, r->tg_tps, roof,
               r->tg_tps / roof);
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
    if (o->pp > h->seq_len || o->tg > h->seq_len) {
        fprintf(stderr, "run: --pp %ld / --tg %ld: the context holds %d positions\n", o->pp, o->tg,
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
    int *tokens = malloc((size_t)o->pp * sizeof(int));
    Row *rows = calloc((size_t)o->n_threads, sizeof *rows);
    int status = 0;
    if (!rc || !buf || !kc || !vc || !q || !out || !scratch || !att || !tokens || !rows) {
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
    for (long i = 0; i < o->pp; i++) tokens[i] = (int)((i * 7919 + 3) % h->vocab_size);

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
        r->read_gbs = read_bandwidth(pool, rc, o->reps);
        r->pp_tps = bench_pp(&t, tokens, o->pp, o->reps);
        r->tg_tps = bench_tg(&t, o->tg, o->reps);
        for (int c = 0; c < 5; c++) {
            r->att_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, NULL, att_ctx[c], o->reps);
            r->att_rec_gbs[c] = bench_attention(pool, q, kc, vc, out, scratch, att, att_ctx[c], o->reps);
        }
        if (!o->json)
            fprintf(stderr, "threads %d: read %.1f GB/s, pp %.1f tok/s, tg %.1f tok/s\n", r->threads,
                    r->read_gbs, r->pp_tps, r->tg_tps);
        t.pool = NULL;
        pool_destroy(pool);
    }
    if (status == 0) (o->json ? print_json : print_text)(path, &t.model, o, rows, read_bytes);
done:
    free(rows), free(tokens), free(scratch), free(att), free(out), free(q), free(vc), free(kc), free(buf), free(rc);
    transformer_free(&t);
    return status;
}

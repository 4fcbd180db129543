// sampler.c: greedy, temperature, top-k and top-p sampling (see sampler.h).
#include "runtime/sampler.h"

#include <stdlib.h>

#include "kernels/kernels.h"

int sampler_build(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                  uint64_t seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->top_k = top_k;
    s->rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;  // xorshift sticks at 0
    s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
    return s->candidates ? 0 : -1;
}

void sampler_free(Sampler *s) {
    free(s->candidates);
    s->candidates = NULL;
}

uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float random_f32(uint64_t *state) {
    return (float)(random_u32(state) >> 8) / 16777216.0f;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Draws from the whole distribution: the first index whose cdf exceeds coin.
static int sample_all(const float *probs, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf) return i;
    }
    return n - 1;  // rounding
}

static int by_prob_desc(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    return (x->prob < y->prob) - (x->prob > y->prob);
}

// Draws from candidates c[0..n) sorted by falling probability, keeping the smallest
// prefix whose mass exceeds `limit` (all n if none does), renormalized.
static int sample_sorted(const ProbIndex *c, int n, float limit, float coin) {
    float cum = 0.0f;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += c[i].prob;
        if (cum > limit) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += c[i].prob;
        if (r < cdf) return c[i].index;
    }
    return c[last].index;  // rounding
}

// Top-p as llama2.c does it: tokens below (1 - top_p) / (n - 1) cannot be in the
// nucleus, so only the rest are sorted.
static int sample_top_p(Sampler *s, const float *probs, float coin) {
    int n = s->vocab_size, n0 = 0;
    const float cutoff = (1.0f - s->top_p) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (probs[i] >= cutoff) s->candidates[n0++] = (ProbIndex){probs[i], i};
    if (n0 == 0) return argmax(probs, n);  // top_p below 1/n on a flat distribution
    qsort(s->candidates, (size_t)n0, sizeof(ProbIndex), by_prob_desc);
    // llama2.c compares the running sum with top_p itself, not with top_p * kept mass
    return sample_sorted(s->candidates, n0, s->top_p, coin);
}

// Keeps the k most probable in a min-heap, then sorts them and applies top-p.
static int sample_top_k(Sampler *s, const float *probs, float coin) {
    ProbIndex *h = s->candidates;
    int k = s->top_k, n = 0;
    for (int i = 0; i < s->vocab_size; i++) {
        ProbIndex e = {probs[i], i};
        if (n == k && !(e.prob > h[0].prob)) continue;
        int j;
        if (n < k) {  // sift up
            for (j = n++; j > 0 && e.prob < h[(j - 1) / 2].prob; j = (j - 1) / 2) h[j] = h[(j - 1) / 2];
        } else {      // replace the minimum, sift down
            for (j = 0;;) {
                int c = 2 * j + 1;
                if (c >= n) break;
                if (c + 1 < n && h[c + 1].prob < h[c].prob) c++;
                if (!(h[c].prob < e.prob)) break;
                h[j] = h[c];
                j = c;
            }
        }
        h[j] = e;
    }
    qsort(h, (size_t)n, sizeof(ProbIndex), by_prob_desc);
    float total = 0.0f;  // top-p applies to the mass of the k kept
    for (int i = 0; i < n; i++) total += h[i].prob;
    float top_p = (s->top_p > 0.0f && s->top_p < 1.0f) ? s->top_p : 1.0f;
    return sample_sorted(h, n, top_p * total, coin);
}

int sampler_sample(Sampler *s, float *logits) {
    int n = s->vocab_size;
    if (s->temperature == 0.0f || n == 1) return argmax(logits, n);
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, (size_t)n);
    float coin = random_f32(&s->rng_state);
    if (s->top_k > 0 && s->top_k < n) return sample_top_k(s, logits, coin);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) return sample_all(logits, n, coin);
    return sample_top_p(s, logits, coin);
}

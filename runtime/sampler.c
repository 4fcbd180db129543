// sampler.c: repetition penalty, greedy, temperature, top-k, top-p and min-p sampling
// (see sampler.h for the order of the steps).
#include "runtime/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

int sampler_build(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                  uint64_t seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->top_k = top_k;
    s->min_p = 0.0f;
    s->repeat_penalty = 1.0f;
    s->repeat_last_n = 0;
    s->recent = NULL;
    s->n_recent = s->head = 0;
    s->seen = s->keep = NULL;
    s->rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;  // xorshift sticks at 0
    s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
    return s->candidates ? 0 : -1;
}

void sampler_free(Sampler *s) {
    free(s->candidates);
    free(s->recent);
    free(s->seen);
    free(s->keep);
    s->candidates = NULL;
    s->recent = NULL;
    s->seen = s->keep = NULL;
}

// A zeroed vocab_size buffer in *b unless there is one. Returns 0, or -1 if out of memory.
static int need(const Sampler *s, unsigned char **b) {
    if (!*b) *b = calloc((size_t)s->vocab_size, 1);
    return *b ? 0 : -1;
}

int sampler_set_min_p(Sampler *s, float min_p) {
    s->min_p = min_p;
    return min_p > 0.0f ? need(s, &s->keep) : 0;
}

int sampler_set_penalty(Sampler *s, float penalty, int last_n) {
    free(s->recent);
    s->recent = NULL;
    s->n_recent = s->head = 0;
    s->repeat_penalty = penalty;
    s->repeat_last_n = last_n;
    if (last_n <= 0 || penalty == 1.0f) return 0;
    if (!(s->recent = malloc((size_t)last_n * sizeof *s->recent))) return -1;
    return need(s, &s->seen);
}

void sampler_accept(Sampler *s, int token) {
    if (!s->recent || token < 0 || token >= s->vocab_size) return;
    s->recent[s->head] = token;
    s->head = s->head + 1 == s->repeat_last_n ? 0 : s->head + 1;
    if (s->n_recent < s->repeat_last_n) s->n_recent++;
}

// llama.cpp's llama_sampler_penalties (penalty_repeat): each distinct id of the window once.
void sampler_penalize(Sampler *s, float *logits) {
    if (!s->recent) return;
    const float r = s->repeat_penalty;
    for (int i = 0; i < s->n_recent; i++) {
        int id = s->recent[i];
        if (s->seen[id]) continue;
        s->seen[id] = 1;
        float v = logits[id] > 0.0f ? logits[id] / r : logits[id] * r;
        logits[id] = isinf(v) ? copysignf(FLT_MAX, v) : v;  // only for an extreme r: no NaN later
    }
    for (int i = 0; i < s->n_recent; i++) s->seen[s->recent[i]] = 0;
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

// llama.cpp's min_p, in logits as it does it: p_i >= min_p * p_max <=> l_i >= l_max + ln min_p.
int sampler_min_p_set(const float *logits, int n, float min_p, unsigned char *keep) {
    const float threshold = logits[argmax(logits, n)] + logf(min_p);
    int kept = 0;
    for (int i = 0; i < n; i++) kept += keep[i] = logits[i] >= threshold;
    return kept;
}

// Draws from the whole distribution: the first index whose cdf exceeds coin. With keep,
// from the tokens it keeps, renormalized.
static int sample_all(const float *probs, int n, float coin, const unsigned char *keep) {
    float cdf = 0.0f;
    if (!keep) {
        for (int i = 0; i < n; i++) {
            cdf += probs[i];
            if (coin < cdf) return i;
        }
        return n - 1;  // rounding
    }
    float mass = 0.0f;
    int last = -1;
    for (int i = 0; i < n; i++)
        if (keep[i]) mass += probs[i], last = i;
    const float r = coin * mass;
    for (int i = 0; i < n; i++) {
        if (!keep[i]) continue;
        cdf += probs[i];
        if (r < cdf) return i;
    }
    return last;  // rounding (the most likely token is always kept)
}

static int by_prob_desc(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    return (x->prob < y->prob) - (x->prob > y->prob);
}

// Draws from candidates c[0..n) sorted by falling probability, keeping the smallest
// prefix whose mass exceeds `limit` (all n if none does), renormalized. With keep (min-p),
// only the prefix's tokens that it keeps; the prefix's first if it keeps none of them.
static int sample_sorted(const ProbIndex *c, int n, float limit, float coin,
                         const unsigned char *keep) {
    float cum = 0.0f;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += c[i].prob;
        if (cum > limit) {
            last = i;
            break;
        }
    }
    if (keep) {
        int found = 0;
        cum = 0.0f;
        for (int i = 0; i <= last; i++)
            if (keep[c[i].index]) cum += c[i].prob, found = i + 1;
        if (!found || !(cum > 0.0f)) return c[0].index;
        last = found - 1;
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        if (keep && !keep[c[i].index]) continue;
        cdf += c[i].prob;
        if (r < cdf) return c[i].index;
    }
    return c[last].index;  // rounding
}

// Top-p as llama2.c does it: tokens below (1 - top_p) / (n - 1) cannot be in the
// nucleus, so only the rest are sorted.
static int sample_top_p(Sampler *s, const float *probs, float coin, const unsigned char *keep) {
    int n = s->vocab_size, n0 = 0;
    const float cutoff = (1.0f - s->top_p) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (probs[i] >= cutoff) s->candidates[n0++] = (ProbIndex){probs[i], i};
    if (n0 == 0) return argmax(probs, n);  // top_p below 1/n on a flat distribution
    qsort(s->candidates, (size_t)n0, sizeof(ProbIndex), by_prob_desc);
    // llama2.c compares the running sum with top_p itself, not with top_p * kept mass
    return sample_sorted(s->candidates, n0, s->top_p, coin, keep);
}

// Keeps the k most probable in a min-heap, then sorts them and applies top-p.
static int sample_top_k(Sampler *s, const float *probs, float coin, const unsigned char *keep) {
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
    return sample_sorted(h, n, top_p * total, coin, keep);
}

int sampler_sample(Sampler *s, float *logits) {
    int n = s->vocab_size;
    sampler_penalize(s, logits);
    if (s->temperature == 0.0f || n == 1) return argmax(logits, n);
    // min-p's set before temperature, as llama.cpp; if it keeps every token it is a no-op
    const unsigned char *keep = NULL;
    if (s->min_p > 0.0f && sampler_min_p_set(logits, n, s->min_p, s->keep) < n) keep = s->keep;
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, (size_t)n);
    float coin = random_f32(&s->rng_state);
    if (s->top_k > 0 && s->top_k < n) return sample_top_k(s, logits, coin, keep);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) return sample_all(logits, n, coin, keep);
    return sample_top_p(s, logits, coin, keep);
}

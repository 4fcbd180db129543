// sampler.h: picks the next token from the logits.
//
// Contract: libc and libm; a sampler owns its buffers and its RNG state, so the same
// seed, settings and accepted tokens give the same tokens. With top_k == 0 and the
// llama.cpp-style steps off (min_p 0, repeat penalty 1 or window 0, their defaults) it
// draws exactly what llama2.c's sampler draws for the same seed.
//
// The steps of sampler_sample, in order:
//   1. repetition penalty (llama.cpp's penalty_repeat over penalty_last_n) on the raw
//      logits: each distinct id among the last `repeat_last_n` accepted tokens has its
//      logit divided by `repeat_penalty` if it is > 0, else multiplied by it;
//   2. temperature 0 (or a vocabulary of 1): the argmax of those logits, done;
//   3. min-p's set, from the same (pre-temperature) logits as llama.cpp's min_p, which runs
//      before its temperature: the ids with logit >= max + ln(min_p), i.e. whose
//      probability at temperature 1 is >= min_p times the largest;
//   4. temperature, softmax, then top-k and top-p on those probabilities as llama2.c
//      does them (llama.cpp would cut before temperature; the default output is kept);
//   5. min-p: of the tokens top-k/top-p kept, those in the set of step 3 (llama.cpp's
//      top_k, top_p, min_p order); one draw among them, renormalized.
#ifndef SEARCHLIGHT_SAMPLER_H
#define SEARCHLIGHT_SAMPLER_H

#include <stdint.h>

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex *candidates;  // (vocab_size) buffer for top-k / top-p
    float temperature;      // 0: greedy (argmax)
    float top_p;            // nucleus mass in (0, 1); 0 or 1 turn it off
    int top_k;              // keep the k most likely; 0 (or >= vocab_size) turns it off
    float min_p;            // keep p >= min_p * p_max (temperature 1); 0 turns it off
    float repeat_penalty;   // > 0; 1 turns it off
    int repeat_last_n;      // the window of accepted tokens penalized; 0 turns it off
    int *recent;            // (repeat_last_n) ring of the last accepted tokens
    int n_recent, head;     // how many the ring holds; where the next one goes
    unsigned char *seen;    // (vocab_size) the penalty's scratch: ids already penalized
    unsigned char *keep;    // (vocab_size) min-p's set
    uint64_t rng_state;     // xorshift64*, never 0
} Sampler;

// Returns 0, or -1 if the buffer cannot be allocated. min-p and the penalty start off.
int sampler_build(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                  uint64_t seed);
void sampler_free(Sampler *s);

// min_p in [0, 1]: 0 turns it off, 1 keeps only the most likely token(s). Returns 0, or -1
// if the scratch buffer cannot be allocated.
int sampler_set_min_p(Sampler *s, float min_p);

// The repetition penalty: penalty > 0 (1: off) over the last `last_n` >= 0 accepted tokens
// (0: off). Forgets the tokens accepted so far. Returns 0, or -1 if out of memory.
int sampler_set_penalty(Sampler *s, float penalty, int last_n);

// Adds a token of the context (each prompt token, then each one generated) to the window
// of the repetition penalty. Ids outside [0, vocab_size) are ignored.
void sampler_accept(Sampler *s, int token);

// Step 1 alone: applies the repetition penalty to logits in place.
void sampler_penalize(Sampler *s, float *logits);

// Step 3 alone: sets keep[i] to whether logits[i] >= max + ln(min_p), for min_p in (0, 1].
// Returns how many are kept (at least 1).
int sampler_min_p_set(const float *logits, int n, float min_p, unsigned char *keep);

// Samples a token id; modifies logits in place (penalty, temperature, softmax).
int sampler_sample(Sampler *s, float *logits);

// The RNG: 32 random bits, and a float in [0, 1).
uint32_t random_u32(uint64_t *state);
float random_f32(uint64_t *state);

#endif

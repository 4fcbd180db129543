// sampler.h: picks the next token from the logits.
//
// Contract: libc and libm; a sampler owns its buffer and its RNG state, so the same
// seed and settings give the same tokens. With top_k == 0 it draws exactly what
// llama2.c's sampler draws for the same seed.
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
    uint64_t rng_state;     // xorshift64*, never 0
} Sampler;

// Returns 0, or -1 if the buffer cannot be allocated.
int sampler_build(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                  uint64_t seed);
void sampler_free(Sampler *s);

// Samples a token id; modifies logits in place (temperature, softmax).
int sampler_sample(Sampler *s, float *logits);

// The RNG: 32 random bits, and a float in [0, 1).
uint32_t random_u32(uint64_t *state);
float random_f32(uint64_t *state);

#endif

// llama2c.h: reads a llama2.c legacy (version 0) fp32 checkpoint.
//
// Contract: POSIX (mmap) and libc. The file is validated (positive sizes, heads that
// divide dim, exact file size) before any tensor pointer is formed.
// Layout: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
// a negative vocab_size means a separate classifier), then fp32 tensors: embedding,
// rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real and _imag
// (unused: RoPE is computed), then the classifier if it is not shared.
#ifndef SEARCHLIGHT_LLAMA2C_H
#define SEARCHLIGHT_LLAMA2C_H

#include "model.h"

typedef struct {
    SlHeader header;                 // hyperparameters, f32 tensor types, bos 1, eos 2
    const float *tensor[SL_T_COUNT]; // into the mapping; NULL when absent
    void *map;
    size_t map_bytes;
} Llama2c;

// Returns 0, or -1 after printing one line naming the file.
int llama2c_open(Llama2c *c, const char *path);
void llama2c_close(Llama2c *c);

// Does the file start like a llama2.c legacy checkpoint (seven plausible int32)?
int llama2c_sniff(const uint8_t *head, size_t n);

#endif

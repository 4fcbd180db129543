// kernels.h: the plain kernels of the forward pass.
//
// Contract: libc and libm only, single-threaded, no SIMD. These are the algorithmic
// reference: each is written to be obviously correct, and every fast kernel added later
// is tested against the one here. Sizes are element counts; offsets are size_t.
#ifndef SEARCHLIGHT_KERNELS_H
#define SEARCHLIGHT_KERNELS_H

#include <stddef.h>

#include "kernels/types.h"

// RMSNorm: o_i = w_i * x_i / sqrt(mean_j(x_j^2) + eps). o may alias x.
void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps);

// Matrix-vector product: y (d) = W (d, n) @ x (n), W row-major.
void matvec(float *y, const float *x, const float *w, size_t n, size_t d);

// The same for a weight matrix of any type: y (w->rows) = W @ x (w->cols).
//   f16, bf16: each weight converted to f32, then as matvec.
//   q4_0, q5_0, iq4_nl: as q8_0 below, with the block's weights d_w,g q, q its integer levels
//         (blocks.h's ggml_levels32: q - 8, q - 16, kvalues[q]).
//   q4_1, q5_1: the same, and the block's min m_w,g adds (m_w,g * d_x,g) * sum_i q_x,i.
//   q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs (kquant_type): x quantized per block of 256 (quant.h's
//         q8k, ggml's Q8_K), then per block kquant_block's exact integer sums, scaled once.
//   q8_0: per group g of 32, x quantized as quant.h says (d_x,g, q_x), then
//         y_r = sum_g (d_w,g * d_x,g) * sum_i q_w,i * q_x,i   (an exact integer inner sum)
// Each row is its type's dot (types.h's TypeInfo), one of the plain row kernels below.
void matvec_tensor(float *y, const float *x, const Tensor *w);

// The plain row kernels, the type table's dot (types.h): row r of w, a matrix of one type,
// times x (w->cols floats), as matvec_tensor above says.
float matvec_row_f32(const Tensor *w, size_t r, const float *x);
float matvec_row_f16(const Tensor *w, size_t r, const float *x);
float matvec_row_bf16(const Tensor *w, size_t r, const float *x);
float matvec_row_q8_0(const Tensor *w, size_t r, const float *x);
float matvec_row_blocks32(const Tensor *w, size_t r, const float *x);  // q4_0 .. iq4_nl
float matvec_row_kquant(const Tensor *w, size_t r, const float *x);    // kquant_type

// The K-pattern types (q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs): blocks of 256 computed by
// kquant_block against the activations' q8k form (the type table's TYPE_IN_Q8_K).
int kquant_type(int type);

// A K-pattern block at bp (256 weights) times its activations quantized as q8k (xq, scale dx,
// bsums), with integer sums over the sub-blocks and one scaling:
//   q2_k: (d dx) sum_k sc_k (q . xq)_k - (dmin dx) sum_k mn_k (sum xq)_k  (k: 16 of 16, q 0..3)
//   q3_k: (d dx) sum_k (sc_k - 32) (q . xq)_k                     (k: 16 of 16, q -4..3)
//   q4_k, q5_k: (d dx) sum_j sc_j (q . xq)_j - (dmin dx) sum_j mn_j (sum xq)_j   (j: 8 of 32)
//   q6_k: (d dx) (sum_k sc_k ((q + 32) . xq)_k - 32 sum_k sc_k (sum xq)_k)   (k: 16 of 16)
//   iq4_xs: (d dx) sum_j (ls_j - 32) (kvalues[q] . xq)_j                     (j: 8 of 32)
float kquant_block(int type, const uint8_t *bp, const int8_t *xq, float dx, const int16_t *bsums);

// Softmax in place: x_i = exp(x_i - max x) / sum_j exp(x_j - max x).
void softmax(float *x, size_t n);

// RoPE on n_heads heads of head_dim each, rotating adjacent pairs as llama2.c does:
//   (v_2i, v_2i+1) <- rotation by angle pos * theta^(-2i / head_dim)
// RoPE: the frequency of the pair (i, i + 1), i even, of a head of head_dim:
//   f = theta^(-i / head_dim)                                  (no scaling)
//   linear: f / factor
//   divisors (a GGUF's rope_freqs, as llama.cpp applies it): f / divisors[i / 2]
//   llama3: with wavelength w = 2 pi / f, L = orig_ctx / low_freq, H = orig_ctx / high_freq:
//     w > L: f / factor;  w < H: f;  else (1 - s) f / factor + s f,
//     s = (orig_ctx / w - low_freq) / (high_freq - low_freq)
// and the rotation at position pos of each pair, phi = pos * f:
//   (v_i, v_i+1) <- (v_i cos phi - v_i+1 sin phi, v_i sin phi + v_i+1 cos phi)
typedef struct {
    float theta;
    uint32_t scaling;  // enum sl_rope
    float factor, low_freq, high_freq;
    int32_t orig_ctx;
    const float *divisors;  // SL_ROPE_FREQS: head_dim / 2 of them
} RopeParams;

// (runtime/transformer.h's rope_params makes them from a model's header.)
float rope_freq(const RopeParams *r, size_t i, size_t head_dim);
void rope(float *v, size_t n_heads, size_t head_dim, size_t pos, const RopeParams *r);

// Attention for one query head at position pos, keys 0..pos (causal):
//   score_t = q . k_t / sqrt(head_dim);  out = sum_t softmax(score)_t * v_t
// k and v are (pos + 1, head_dim), contiguous. att (pos + 1) receives the weights.
void attention_head(float *out, float *att, const float *q, const float *k, const float *v,
                    size_t pos, size_t head_dim);

// SwiGLU's gating: h_i = silu(h_i) * u_i, silu(x) = x / (1 + exp(-x)).
void swiglu(float *h, const float *u, size_t n);

// GeGLU with gelu's tanh approximation (transformers' gelu_pytorch_tanh, Gemma's), in place:
//   h_i = 0.5 h_i (1 + tanh(sqrt(2 / pi) (h_i + 0.044715 h_i^3))) u_i
// tanh(y) is computed as 1 - 2 / (e^(2y) + 1) with expf, as swiglu uses expf, so that every
// build gives the same bits.
void geglu(float *h, const float *u, size_t n);

#endif

// pieces.h: our tensors assembled from pieces of a source file's tensors.
//
// Contract: libc only; no I/O of its own (a reader callback fetches source elements). Hugging
// Face and GGUF checkpoints store some of our tensors fused (Phi-3's qkv_proj holds wq, wk and
// wv; its gate_up_proj w1 and w3), split (Qwen2's three biases are our one SL_T_BQKV per
// layer), or with q and k rows in RoPE's "halves" order (within a head, element j pairs with
// j + head_dim / 2; ours pairs 2j with 2j + 1). One layer of one of our tensors is a list of
// pieces, concatenated; a piece is a run of rows of one source tensor, optionally reordered
// from halves to pairs. A vector of n is a tensor of n rows of 1 column.
#ifndef SEARCHLIGHT_PIECES_H
#define SEARCHLIGHT_PIECES_H

#include <stddef.h>

#include "model.h"

#define PIECES_MAX 3  // pieces in one layer of a tensor (Qwen2's q, k and v biases)

typedef struct {
    const void *src;    // the reader's handle of the source tensor
    size_t row0, rows;  // source rows row0 .. row0 + rows - 1, each of cols elements
    size_t cols;
    size_t halves;      // non-zero: rows are heads of this many rows in halves order; our row
                        // (head, 2j + c) is the source's (head, c * halves / 2 + j)
} Piece;

// Reads elements [first, first + n) of source tensor src, row-major, as f32.
typedef int (*PieceRead)(void *ctx, const void *src, size_t first, size_t n, float *out);

typedef struct {
    Piece *piece[SL_T_COUNT];  // tensor t: layers[t] x n_pieces[t] pieces, by layer
    size_t layers[SL_T_COUNT], n_pieces[SL_T_COUNT];
    size_t per_layer[SL_T_COUNT];  // elements in one layer of tensor t
    PieceRead read;
    void *ctx;
} Pieces;

// A reader's names of the source tensors (format strings, %zu the layer) and its layout.
typedef struct {
    const char *tensor[SL_T_COUNT_V1];  // our tensors 0 .. 11, one source each
    const char *qkv, *gate_up;          // fused q, k, v rows and gate, up rows (or NULL)
    const char *bias[3], *qk_norm[2], *rope_freqs;
    const char *post_norms[2];          // after attention, after the feed-forward (Gemma)
    int fused_qkv, fused_up;            // does this model use the fused sources?
    size_t halves;                      // q and k (rows, biases, norms) in halves order of
                                        // this head_dim; 0: already in ours
} PieceNames;

// Finds source `fmt` of layer l, checks that it is (total, cols) (a vector of total when cols
// is 0) of a type the reader reads, and sets pc to its rows row0 .. row0 + rows - 1. Returns
// 0, or -1 after a message naming the file and the tensor.
typedef int (*PieceFind)(void *ctx, Piece *pc, const char *fmt, size_t l, size_t total,
                         size_t cols, size_t row0, size_t rows, size_t halves);

// The pieces of our tensor t (a layout lay of header h) from a reader's sources: the same for
// Hugging Face and GGUF, only the names differ. Returns 0, or -1 after a message.
int pieces_map(Pieces *p, int t, const SlHeader *h, const SlLayout *lay, const PieceNames *nm,
               PieceFind find, void *ctx);

// Room for tensor t: layers x n pieces, zeroed. Returns the array, or NULL out of memory.
Piece *pieces_alloc(Pieces *p, int t, size_t layers, size_t n);
void pieces_free(Pieces *p);

// The TensorData fill (writer.h) over f32 bytes [offset, offset + n) of tensor t; ctx is a
// Pieces whose per_layer[t] is set.
int pieces_fill(void *ctx, int t, size_t offset, void *buf, size_t n);

// Bytes [offset, offset + n) of tensor t with its rows in the sources' own encoding, read by
// read_raw (bytes [first, first + n) of src): each layer whole, in turn, its rows of
// row_bytes[l] bytes (the same for every piece of a layer).
typedef int (*PieceReadRaw)(void *ctx, const void *src, size_t first, size_t n, void *out);
int pieces_fill_raw(const Pieces *p, int t, size_t offset, void *buf, size_t n,
                    const size_t *row_bytes, PieceReadRaw read_raw);

#endif

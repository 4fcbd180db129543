// attnmap.h: the attention weights of one generation, kept and written out: as raw fp32
// rows (run --attn-dump) or as a self-contained HTML page of heatmaps (run --attn-map).
//
// Contract: libc, fileio.h (files appear whole or not at all), json.h's string writer,
// the tokenizer (for the page's token labels) and the page template attnmap.html, which the
// Makefile embeds as attnmap_page[]. Nothing here exits; errors print one line and return -1.
// The weights come from transformer_record's sink (attnmap_sink), that is from the attention
// kernel itself: nothing is recomputed here.
//
// Dump file (--attn-dump), little-endian:
//   offset 0   char[4] magic "SLAT"
//          4   uint32  version (1)
//          8   uint32  n_layers
//         12   uint32  n_heads
//         16   uint32  n_tokens (N: the positions that ran, 0 .. N-1)
//         20   uint32  n_prompt (positions 0 .. n_prompt-1 are BOS and the prompt)
//         24   uint32  header_bytes (32 + 4 N: where the weights start)
//         28   uint32  0 (reserved)
//         32   int32   token id at each position [N]
//   header_bytes float32 weights[n_layers][n_heads][N][N]: row i is the softmax of query
//                position i over key positions 0 .. N-1; keys past i (masked) hold 0, so each
//                row sums to 1. After a context shift, the keys the cache no longer held
//                (dropped) hold 0 too: a row holds the positions actually attended.
#ifndef SEARCHLIGHT_ATTNMAP_H
#define SEARCHLIGHT_ATTNMAP_H

#include <stddef.h>

#include "tokenizer.h"

#define ATTNMAP_MAX_BYTES ((size_t)1 << 31)  // the most memory a map may take (2 GiB)

typedef struct {
    size_t n_layers, n_heads, cap;  // cap: positions it has room for
    size_t n_rows;                  // rows 0 .. n_rows-1 are recorded in every layer
    size_t keep, dropped;           // context shifts (attnmap_shift): cache position p >= keep
                                    // holds the token of position p + dropped
    float *w;  // (layer, head, cap (cap + 1) / 2): row i of a lower triangle at i (i + 1) / 2
} AttnMap;

// Room for positions 0 .. cap-1. Returns 0, or -1 after one line (too large, or no memory).
int attnmap_build(AttnMap *m, size_t n_layers, size_t n_heads, size_t cap);
void attnmap_free(AttnMap *m);

// An AttnSink (transformer.h): ctx is the AttnMap. Cache positions are mapped to the positions
// that ran (see keep, dropped), which must stay below cap; a key dropped by a shift gets 0.
void attnmap_sink(void *ctx, size_t layer, size_t pos0, size_t n, const float *w,
                  size_t stride);

// Records a context shift (transformer_shift with the same keep and drop): from now on, cache
// positions keep .. are drop positions further on. Every shift must keep the same number.
void attnmap_shift(AttnMap *m, size_t keep, size_t drop);

// Row i (i + 1 weights over keys 0 .. i) of layer l, head h.
const float *attnmap_row(const AttnMap *m, size_t l, size_t h, size_t i);

// Writes the dump described above; ids holds the token at each recorded position.
int attnmap_write_dump(const AttnMap *m, const char *path, const int *ids, size_t n_prompt);

// What the page says besides the weights.
typedef struct {
    const char *model;      // the model's file name
    const char *prompt;
    size_t n_kv_heads;
    size_t n_prompt;        // ids[0 .. n_prompt) are BOS and the prompt
    const int *ids;         // n_ids >= n_rows tokens: one per recorded position, and the
    size_t n_ids;           // last one sampled, which never ran, if the generation ended on -n
    const Tokenizer *tok;   // for the tokens' text
} AttnPage;

// Writes the page: attnmap.html with the data in place of its /*SEARCHLIGHT_DATA*/ line.
int attnmap_write_page(const AttnMap *m, const char *path, const AttnPage *p);

#endif

// pieces.c: our tensors assembled from pieces of source tensors (see pieces.h).
#include "convert/pieces.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

Piece *pieces_alloc(Pieces *p, int t, size_t layers, size_t n) {
    free(p->piece[t]);
    p->piece[t] = calloc(layers * n, sizeof(Piece));
    p->layers[t] = p->piece[t] ? layers : 0;
    p->n_pieces[t] = p->piece[t] ? n : 0;
    return p->piece[t];
}

void pieces_free(Pieces *p) {
    for (int t = 0; t < SL_T_COUNT; t++) free(p->piece[t]);
    memset(p->piece, 0, sizeof p->piece);
}

// The source row of our row r of a piece.
static size_t source_row(const Piece *pc, size_t r) {
    if (!pc->halves) return pc->row0 + r;
    size_t hd = pc->halves, head = r / hd, i = r % hd;
    return pc->row0 + head * hd + (i % 2) * (hd / 2) + i / 2;
}

int pieces_fill(void *ctx, int t, size_t offset, void *buf, size_t n) {
    Pieces *p = ctx;
    if (offset % 4 || n % 4 || !p->piece[t]) {
        fprintf(stderr, "internal error: unaligned read of tensor %s\n", tensor_name(t));
        return -1;
    }
    size_t e = offset / 4, end = e + n / 4, per = p->per_layer[t];
    float *out = buf;
    while (e < end) {
        size_t l = e / per, k = e % per;  // layer l, element k of it
        const Piece *pc = p->piece[t] + l * p->n_pieces[t];
        while (k >= pc->rows * pc->cols) k -= pc->rows * pc->cols, pc++;  // the piece holding k
        size_t r = k / pc->cols, c = k % pc->cols;
        size_t cnt = pc->cols - c < end - e ? pc->cols - c : end - e;  // the rest of the row
        if (p->read(p->ctx, pc->src, source_row(pc, r) * pc->cols + c, cnt, out) != 0) return -1;
        out += cnt;
        e += cnt;
    }
    return 0;
}

int pieces_fill_raw(const Pieces *p, int t, size_t offset, void *buf, size_t n, size_t row_bytes,
                    PieceReadRaw read_raw) {
    const Piece *first = p->piece[t];
    if (!first || !row_bytes) {
        fprintf(stderr, "internal error: no raw rows for tensor %s\n", tensor_name(t));
        return -1;
    }
    size_t rows_per_layer = p->per_layer[t] / first->cols;  // every piece has the same cols
    uint8_t *out = buf;
    for (size_t e = offset, end = offset + n; e < end;) {
        size_t row = e / row_bytes, c = e % row_bytes;
        size_t l = row / rows_per_layer, k = row % rows_per_layer;  // layer l, its row k
        const Piece *pc = first + l * p->n_pieces[t];
        while (k >= pc->rows) k -= pc->rows, pc++;  // the piece holding row k
        size_t cnt = row_bytes - c < end - e ? row_bytes - c : end - e;
        if (read_raw(p->ctx, pc->src, source_row(pc, k) * row_bytes + c, cnt, out) != 0) return -1;
        out += cnt;
        e += cnt;
    }
    return 0;
}

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

int pieces_fill_raw(const Pieces *p, int t, size_t offset, void *buf, size_t n,
                    const size_t *row_bytes, PieceReadRaw read_raw) {
    const Piece *first = p->piece[t];
    if (!first) {
        fprintf(stderr, "internal error: no raw rows for tensor %s\n", tensor_name(t));
        return -1;
    }
    size_t rows_per_layer = p->per_layer[t] / first->cols;  // every piece has the same cols
    size_t l = 0, start = 0;  // layer l's bytes begin at start
    uint8_t *out = buf;
    for (size_t e = offset, end = offset + n; e < end;) {
        while (l < p->layers[t] && e >= start + rows_per_layer * row_bytes[l])
            start += rows_per_layer * row_bytes[l++];
        if (l == p->layers[t] || !row_bytes[l]) {
            fprintf(stderr, "internal error: read past tensor %s\n", tensor_name(t));
            return -1;
        }
        size_t rb = row_bytes[l], k = (e - start) / rb, c = (e - start) % rb;  // row k of layer l
        const Piece *pc = first + l * p->n_pieces[t];
        while (k >= pc->rows) k -= pc->rows, pc++;  // the piece holding row k
        size_t cnt = rb - c < end - e ? rb - c : end - e;
        if (read_raw(p->ctx, pc->src, source_row(pc, k) * rb + c, cnt, out) != 0) return -1;
        out += cnt;
        e += cnt;
    }
    return 0;
}

int pieces_map(Pieces *p, int t, const SlHeader *h, const SlLayout *lay, const PieceNames *nm,
               PieceFind find, void *ctx) {
    size_t L = t == SL_T_EMBED || t == SL_T_RMS_FINAL || t == SL_T_CLS || t == SL_T_ROPE_FREQS
                   ? 1 : (size_t)h->n_layers;
    size_t hd = (size_t)h->head_dim, qd = (size_t)h->n_heads * hd;
    size_t kvd = (size_t)h->n_kv_heads * hd, dim = (size_t)h->dim, ff = (size_t)h->hidden_dim;
    size_t hv = nm->halves;
    size_t np = t == SL_T_BQKV ? 3 : t == SL_T_QK_NORM || t == SL_T_POST_NORMS ? 2 : 1;
    Piece *pc = pieces_alloc(p, t, L, np);
    if (!pc) {
        fprintf(stderr, "out of memory for the pieces of tensor %s\n", tensor_name(t));
        return -1;
    }
    p->per_layer[t] = lay->rows[t] / L * lay->cols[t];
    for (size_t l = 0; l < L; l++, pc += np) {
        int r;
        switch (t) {
        case SL_T_RMS_ATT: case SL_T_RMS_FFN: case SL_T_RMS_FINAL:
            r = find(ctx, pc, nm->tensor[t], l, dim, 0, 0, dim, 0);
            break;
        case SL_T_WQ: case SL_T_WK: case SL_T_WV: {  // fused: rows of one q, k, v matrix
            size_t rows = t == SL_T_WQ ? qd : kvd, halves = t == SL_T_WV ? 0 : hv;
            size_t row0 = t == SL_T_WQ ? 0 : t == SL_T_WK ? qd : qd + kvd;
            r = nm->fused_qkv ? find(ctx, pc, nm->qkv, l, qd + 2 * kvd, dim, row0, rows, halves)
                              : find(ctx, pc, nm->tensor[t], l, rows, dim, 0, rows, halves);
            break;
        }
        case SL_T_W1: case SL_T_W3:  // fused: gate rows, then up rows
            r = nm->fused_up ? find(ctx, pc, nm->gate_up, l, 2 * ff, dim, t == SL_T_W1 ? 0 : ff, ff, 0)
                             : find(ctx, pc, nm->tensor[t], l, ff, dim, 0, ff, 0);
            break;
        case SL_T_BQKV:
            r = find(ctx, &pc[0], nm->bias[0], l, qd, 0, 0, qd, hv) ||
                find(ctx, &pc[1], nm->bias[1], l, kvd, 0, 0, kvd, hv) ||
                find(ctx, &pc[2], nm->bias[2], l, kvd, 0, 0, kvd, 0);
            break;
        case SL_T_QK_NORM:
            r = find(ctx, &pc[0], nm->qk_norm[0], l, hd, 0, 0, hd, hv) ||
                find(ctx, &pc[1], nm->qk_norm[1], l, hd, 0, 0, hd, hv);
            break;
        case SL_T_POST_NORMS:
            r = find(ctx, &pc[0], nm->post_norms[0], l, dim, 0, 0, dim, 0) ||
                find(ctx, &pc[1], nm->post_norms[1], l, dim, 0, 0, dim, 0);
            break;
        case SL_T_ROPE_FREQS:
            r = find(ctx, pc, nm->rope_freqs, l, hd / 2, 0, 0, hd / 2, 0);
            break;
        default: {  // embedding, wo, w2, classifier: (rows, cols) as they are
            size_t rows = lay->rows[t] / L, cols = lay->cols[t];
            r = find(ctx, pc, nm->tensor[t], l, rows, cols, 0, rows, 0);
        }
        }
        if (r) return -1;
    }
    return 0;
}

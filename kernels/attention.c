// attention.c: the tuned grouped-query attention (see attention.h).
//
// Contract: libc, libm, pool.h, quant.h (scalar f16 conversions), and AVX2+FMA intrinsics
// through simd.h (F16C for f16), else plain C; no OpenMP, no allocation (fixed stack
// buffers: about 100 KB at ATTN_MAX_HEAD_DIM). Does not use kernels.c; tests compare against
// its attention_head.
//
// One order of operations on every machine: tiles of 8 positions and 8-lane vectors, in AVX2
// on AVX2 and AVX-512 machines alike, and in plain C by the same operations lane by lane
// (fused multiply-adds through simd.h's fma32, the same exponential polynomial, the same
// trees of additions), so the weights and outputs are the same bits in every build. The
// 512-bit width is not used here: tiles of 16 would change the online softmax's steps.
//
// For one query at position pos, keys 0..pos (causal):
//   score_t = q . k_t / sqrt(head_dim);  out = sum_t softmax(score)_t * v_t
// in one pass with an online softmax. Positions are cut into fixed chunks of CHUNK (from 0)
// and chunks into tiles of VW. Per tile and query head: the VW scores at once (one SIMD
// dot product per key, then a transposing sum), m' = max(m, max_t s_t), then
//   acc = acc * e^(m - m') + sum_t e^(s_t - m') v_t,   l = l * e^(m - m') + sum_t e^(s_t - m')
// with e^x = 2^(x log2 e) from a vector polynomial. All query heads of a KV head go through
// a tile while it sits in L1, so K and V stream from memory once per group. A chunk gives a
// partial (m, l, acc); the partials of a query fold left to right in chunk order; out = acc/l.
//
// The cache element type (f32 or f16) is a compile-time constant of the inlined chunk code,
// instantiated once per type inside the one noinline chunk(); everything else is shared.
// f16 rows are widened to f32 (exactly) once per group, not per query head: each tile of K
// and V goes into an L1 buffer, the next tile being widened in shares by the heads' passes
// over the current one (two buffers, in turn), so that the conversion overlaps the
// arithmetic; every head then runs the f32 code on the buffer. So an f16 cache gives the
// bits an f32 cache of the widened values gives. Memory reads and prefetches are in bytes of
// the element type: half the lines for f16.
//
// Recording (attention_*_rec): chunk() holds a second instance of the chunk code, with a
// store of each tile's scores into the caller's row; once a query's partials are folded,
// finish() maps them to e^(s - m) / l in place with the same exponential (exp_shift) and the
// final m and l. The two instances run the same operations (the build contracts nothing:
// -std=c11), so the output is the same with recording on or off.
//
// ARM64: the vector layer in NEON (two float32x4_t per vf), every operation and its order
// the AVX2 layer's, so the same bits as the AVX2 build (make test-arm compares them).
//
// Determinism: chunks, tiles and the fold order depend on the position only, never on the
// thread count; threads just take (KV head, chunk) or (query, KV head) items, and the chunk
// and fold code is compiled once (noinline) for every path.
#include "kernels/attention.h"

#include "kernels/quant.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/simd.h"

#define CHUNK 256  // positions per chunk: the unit of thread work and of the fold
#define SUBG 16    // query heads that share one pass over a chunk (more take more passes)
#define LOG2E 1.4426950408889634


// ---- one chunk of one query for up to SUBG heads of a group ----

// a[t] += q[c .. c+w) * kt[t][c .. c+w) lane-wise, for the VW rows of a tile (w <= VW).
INLINE void dot_cols(vf *a, const float *q, const float *kt, size_t hd, size_t c, size_t w) {
    vf qc = w == VW ? vload(q + c) : vloadn(q + c, w);
    for (size_t t = 0; t < VW; t++)
        a[t] = vfma(qc, w == VW ? vload(kt + t * hd + c) : vloadn(kt + t * hd + c, w), a[t]);
}

// Lane t = q . kt[t] for the VW rows (stride hd) of a tile.
INLINE vf tile_dots(const float *q, const float *kt, size_t hd) {
    vf a[VW];
    for (size_t t = 0; t < VW; t++) a[t] = vzero();
    size_t c = 0;
    for (; c + VW <= hd; c += VW) dot_cols(a, q, kt, hd, c, VW);
    if (c < hd) dot_cols(a, q, kt, hd, c, hd - c);
    return vsum_rows(a);
}

// acc[c .. c+w) = acc * alpha + sum_t p_t vt[t][c .. c+w), in 4 interleaved sums for latency.
INLINE void pv_cols(float *acc, const float *vt, size_t hd, const float *p, vf alpha, size_t c,
                    size_t w) {
    vf a[4] = {vmul(w == VW ? vload(acc + c) : vloadn(acc + c, w), alpha), vzero(), vzero(),
               vzero()};
    for (size_t t = 0; t < VW; t++)
        a[t % 4] = vfma(vset1(p[t]), w == VW ? vload(vt + t * hd + c) : vloadn(vt + t * hd + c, w),
                        a[t % 4]);
    vf r = vadd(vadd(a[0], a[1]), vadd(a[2], a[3]));
    if (w == VW) vstore(acc + c, r);
    else vstoren(acc + c, r, w);
}

// e^(s - m) per lane, as 2^((s - m) log2 e): the one exponential of scores, in the chunk and
// in finish().
INLINE vf exp_shift(vf s, vf m) { return vexp2(vmul(vsub(s, m), vset1((float)LOG2E))); }

// Bytes of one cache element of type ty (a constant where ty is).
INLINE size_t kv_size(int ty) { return ty == ATTN_KV_F16 ? sizeof(uint16_t) : sizeof(float); }

// Element i of a cache of type ty, as an address.
INLINE const void *kv_at(const void *p, int ty, size_t i) {
    return (const char *)p + i * kv_size(ty);
}

// dst[i .. e) = the halves src[i .. e), widened: whole vectors (i, e multiples of VW).
INLINE void widen_part(float *dst, const uint16_t *src, size_t i, size_t e) {
    for (; i < e; i += VW) vstore(dst + i, vload_h(src + i));
}

// dst[0 .. VW * hd) = the nt rows of hd halves at src, widened, then zeros (nt <= VW).
INLINE void widen_tile(float *dst, const uint16_t *src, size_t nt, size_t hd) {
    size_t n = nt * hd, i = n / VW * VW;
    widen_part(dst, src, 0, i);
    if (i < n) {  // the tail through a zero-padded copy: never read past position pos
        uint16_t h[VW] = {0};
        memcpy(h, src + i, (n - i) * sizeof(uint16_t));
        vstore(dst + i, vload_h(h));  // zeros past n: dst has VW * hd >= i + VW floats
        i += VW;
    }
    if (i < VW * hd) memset(dst + i, 0, (VW * hd - i) * sizeof(float));
}

// Partials of G <= SUBG query rows (qr[j]: hd floats each; heads of one query, or of several
// queries) over the tiles tb, tb + VW, ... < te of the n >= te positions of k and v (rows of
// hd elements of type ty); a tile holds min(VW, n - t0) positions. Row j of part (stride
// hd + 2) receives m (the max score), l (the sum of e^(s - m)) and acc[hd] (the sum of
// e^(s - m) v), and lv[j * VW ..] l's lanes. With init the rows start empty; without, they go
// on from what part and lv hold, so that a row's tiles may come in several calls with the
// same result as one (prefill's query blocks share their common tiles, then each query runs
// its own). With rec (a constant 1), row j's scaled scores also go to rec[j * rs + t], for
// finish() to turn into the softmax.
INLINE void chunk_body(size_t G, size_t hd, int ty, const float *const *qr, const void *k,
                       const void *v, size_t tb, size_t te, size_t n, size_t avail, float *part,
                       float *lv, int init, int rec, float *rs_out, size_t rs) {
    const float scale = 1.0f / sqrtf((float)hd);  // exact for hd = 4^k, as the reference's /
    const size_t ps = hd + 2;
    float m[SUBG], pl[VW];
    vf l[SUBG];
    // f32: kb[0], vb[0] hold a partial last tile, zero padded. f16: every tile is widened into
    // kb[b], vb[b] (b alternates): the first, and a partial last tile, at the start of their
    // turn; any other during the heads' passes over the tile before it, each head widening
    // its share (ws vectors of K and of V), so that the conversion overlaps the arithmetic.
    float kb[2][VW * ATTN_MAX_HEAD_DIM], vb[2][VW * ATTN_MAX_HEAD_DIM];
    const size_t ws = (hd + G - 1) / G;  // a tile is VW * hd elements: hd vectors
    int b = 0, ready = 0;                // f16: the buffers of this tile; already widened?
    for (size_t j = 0; j < G; j++) {
        if (init) {
            m[j] = -INFINITY;
            l[j] = vzero();
            memset(part + j * ps + 2, 0, hd * sizeof(float));
        } else {
            m[j] = part[j * ps];
            l[j] = vload(lv + j * VW);
        }
    }
    // Each head's pass over a tile also prefetches its share of the 64-byte lines of the
    // next tile into L1 and of the one after into L2, where those positions exist, so that
    // memory streams under the arithmetic instead of in bursts at each tile's first head.
    const size_t lines = VW * hd * kv_size(ty) / 64, share = (lines + G - 1) / G;
    const char *kp = k, *vp = v;
    for (size_t t0 = tb; t0 < te; t0 += VW) {
        size_t nt = n - t0 < VW ? n - t0 : VW;
        const float *kt, *vt;
        int pf1 = t0 + 2 * VW <= avail, pf2 = t0 + 3 * VW <= avail;
        int ahead = ty == ATTN_KV_F16 && t0 + 2 * VW <= te;  // widen the next (full) tile now
        if (ty == ATTN_KV_F16) {
            if (!ready) {
                widen_tile(kb[b], kv_at(k, ty, t0 * hd), nt, hd);
                widen_tile(vb[b], kv_at(v, ty, t0 * hd), nt, hd);
            }
            kt = kb[b], vt = vb[b];
        } else if (nt < VW) {  // zero-padded copy: never read past position pos
            memcpy(kb[0], kv_at(k, ty, t0 * hd), nt * hd * sizeof(float));
            memcpy(vb[0], kv_at(v, ty, t0 * hd), nt * hd * sizeof(float));
            memset(kb[0] + nt * hd, 0, (VW - nt) * hd * sizeof(float));
            memset(vb[0] + nt * hd, 0, (VW - nt) * hd * sizeof(float));
            kt = kb[0], vt = vb[0];
        } else {
            kt = kv_at(k, ty, t0 * hd), vt = kv_at(v, ty, t0 * hd);
        }
        for (size_t j = 0; j < G; j++) {
            size_t o_end = ((j + 1) * share < lines ? (j + 1) * share : lines) * 64;
            size_t b1 = (t0 + VW) * hd * kv_size(ty), b2 = (t0 + 2 * VW) * hd * kv_size(ty);
            for (size_t o = j * share * 64; pf1 && o < o_end; o += 64) {
                __builtin_prefetch(kp + b1 + o, 0, 3);
                __builtin_prefetch(vp + b1 + o, 0, 3);
                if (pf2) __builtin_prefetch(kp + b2 + o, 0, 2);
                if (pf2) __builtin_prefetch(vp + b2 + o, 0, 2);
            }
            if (ahead) {
                size_t e = ((j + 1) * ws < hd ? (j + 1) * ws : hd) * VW;
                widen_part(kb[!b], kv_at(k, ty, (t0 + VW) * hd), j * ws * VW, e);
                widen_part(vb[!b], kv_at(v, ty, (t0 + VW) * hd), j * ws * VW, e);
            }
            vf s = vmul(tile_dots(qr[j], kt, hd), vset1(scale));
            if (nt < VW) s = vhead(s, nt);
            if (rec) vstoren(rs_out + j * rs + t0, s, nt);  // the scores this pass uses
            float mt = vhmax(s), alpha = 1.0f;
            if (mt > m[j]) alpha = sexp2((m[j] - mt) * (float)LOG2E), m[j] = mt;
            vf p = exp_shift(s, vset1(m[j])), va = vset1(alpha);
            l[j] = vfma(l[j], va, p);
            vstore(pl, p);
            float *acc = part + j * ps + 2;
            size_t c = 0;
            for (; c + VW <= hd; c += VW) pv_cols(acc, vt, hd, pl, va, c, VW);
            if (c < hd) pv_cols(acc, vt, hd, pl, va, c, hd - c);
        }
        b ^= ahead, ready = ahead;
    }
    for (size_t j = 0; j < G; j++) {
        part[j * ps] = m[j], part[j * ps + 1] = vhsum(l[j]);
        vstore(lv + j * VW, l[j]);
    }
}

// chunk_body with the common head sizes as constants, for element type ty and rec (constants).
#define CHUNK_ARGS qr, k, v, tb, te, n, avail, part, lv, init
INLINE void chunk_sizes(size_t G, size_t hd, int ty, const float *const *qr, const void *k,
                        const void *v, size_t tb, size_t te, size_t n, size_t avail,
                        float *part, float *lv, int init, int rec, float *rs_out, size_t rs) {
    switch (hd) {
    case 32: chunk_body(G, 32, ty, CHUNK_ARGS, rec, rs_out, rs); break;
    case 64: chunk_body(G, 64, ty, CHUNK_ARGS, rec, rs_out, rs); break;
    case 128: chunk_body(G, 128, ty, CHUNK_ARGS, rec, rs_out, rs); break;
    default: chunk_body(G, hd, ty, CHUNK_ARGS, rec, rs_out, rs); break;
    }
}

// The one compiled entry to chunk_body: each element type and common head size a constant,
// in two instances: recording off (the constant 0 removes its store, so the code every call
// runs without weights is unchanged by recording's existence) and on, storing each row's
// scores into rec (row j at rec + j * rs).
static __attribute__((noinline)) void chunk(size_t G, size_t hd, int ty, const float *const *qr,
                                            const void *k, const void *v, size_t tb, size_t te,
                                            size_t n, size_t avail, float *part, float *lv,
                                            int init, float *rec, size_t rs) {
    if (rec && ty == ATTN_KV_F16) chunk_sizes(G, hd, ATTN_KV_F16, CHUNK_ARGS, 1, rec, rs);
    else if (rec) chunk_sizes(G, hd, ATTN_KV_F32, CHUNK_ARGS, 1, rec, rs);
    else if (ty == ATTN_KV_F16) chunk_sizes(G, hd, ATTN_KV_F16, CHUNK_ARGS, 0, NULL, 0);
    else chunk_sizes(G, hd, ATTN_KV_F32, CHUNK_ARGS, 0, NULL, 0);
}

// One whole chunk of n positions for G heads whose queries lie hd apart from q.
static void chunk_whole(size_t G, size_t hd, int ty, const float *q, const void *k,
                        const void *v, size_t n, size_t avail, float *part, float *rec, size_t rs) {
    const float *qr[SUBG];
    float lv[SUBG * VW];
    for (size_t j = 0; j < G; j++) qr[j] = q + j * hd;
    chunk(G, hd, ty, qr, k, v, 0, n, n, avail, part, lv, 1, rec, rs);
}

// Folds partial b into a (rows of m, l, acc[hd]). Whole vectors from element 2 whatever the
// alignment, so no element's arithmetic depends on where the buffers lie.
static __attribute__((noinline)) void fold(float *a, const float *b, size_t hd) {
    float m = a[0] > b[0] ? a[0] : b[0];
    float sa = expf(a[0] - m), sb = expf(b[0] - m);
    a[0] = m;
    a[1] = a[1] * sa + b[1] * sb;
    for (size_t c = 0; c < hd; c += VW) {
        size_t w = hd - c < VW ? hd - c : VW;
        vf x = vfma(vloadn(a + 2 + c, w), vset1(sa), vmul(vloadn(b + 2 + c, w), vset1(sb)));
        vstoren(a + 2 + c, x, w);
    }
}

// out = acc / l from the folded partial a. Recording (w not NULL): the n recorded scores w[t]
// of the head become the weights its output was made with, w[t] = e^(s_t - m) / l, with the
// kernel's own exponential and the same 1 / l.
static __attribute__((noinline)) void finish(float *out, const float *a, size_t hd, float *w,
                                             size_t n) {
    float inv = 1.0f / a[1];
    for (size_t t = 0; w && t < n; t += VW) {
        size_t nt = n - t < VW ? n - t : VW;
        vstoren(w + t, vmul(exp_shift(vloadn(w + t, nt), vset1(a[0])), vset1(inv)), nt);
    }
    for (size_t i = 0; i < hd; i++) out[i] = a[2 + i] * inv;
}

// ---- work items ----

typedef struct {
    const AttnShape *s;
    float *out;
    const float *q;
    const void *kc, *vc;  // elements of s->kv_type
    size_t pos0, m;
    float *part;      // split mode: (n_chunks, n_heads, head_dim + 2) partials of one query
    size_t n_chunks;  // split mode: chunks of that query
    size_t qb;        // block mode: queries per block (run_block); 0: query by query
    float *att;       // recording: (m, n_heads, att_stride) weights, or NULL
    size_t att_stride;
    size_t n_items;
} Job;

// The first key a query at position p attends to: 0, or p + 1 - window with a sliding window.
static size_t first_key(const AttnShape *s, size_t p) {
    return s->window && p + 1 > s->window ? p + 1 - s->window : 0;
}

// Recording: head row w (keys 0..p) gets its weights from finish() over keys lo..p, and zeros
// before lo, where the window left keys out.
static void finish_rec(float *out, const float *a, size_t hd, float *w, size_t lo, size_t p) {
    if (w) memset(w, 0, lo * sizeof(float));
    finish(out, a, hd, w ? w + lo : NULL, p + 1 - lo);
}

// Query i with the heads of KV head g, whole: its chunks in order, folded as they come.
static void run_query(const Job *j, size_t i, size_t g) {
    const AttnShape *s = j->s;
    size_t hd = s->head_dim, ps = hd + 2, group = s->n_heads / s->n_kv_heads, p = j->pos0 + i;
    size_t row = (i * s->n_heads + g * group) * hd, lo = first_key(s, p);
    int ty = s->kv_type;
    const void *k = kv_at(j->kc, ty, g * s->seq_len * hd);
    const void *v = kv_at(j->vc, ty, g * s->seq_len * hd);
    float acc[SUBG * (ATTN_MAX_HEAD_DIM + 2)], tmp[SUBG * (ATTN_MAX_HEAD_DIM + 2)];
    for (size_t h0 = 0; h0 < group; h0 += SUBG) {
        size_t G = group - h0 < SUBG ? group - h0 : SUBG;
        size_t rs = j->att_stride;  // recording: the heads' rows of weights
        float *rec = j->att ? j->att + (i * s->n_heads + g * group + h0) * rs : NULL;
        for (size_t t0 = lo; t0 <= p; t0 += CHUNK) {
            size_t n = p + 1 - t0 < CHUNK ? p + 1 - t0 : CHUNK;
            chunk_whole(G, hd, ty, j->q + row + h0 * hd, kv_at(k, ty, t0 * hd),
                        kv_at(v, ty, t0 * hd), n, p + 1 - t0, t0 > lo ? tmp : acc,
                        rec ? rec + t0 : NULL, rs);
            for (size_t r = 0; t0 > lo && r < G; r++) fold(acc + r * ps, tmp + r * ps, hd);
        }
        for (size_t r = 0; r < G; r++)
            finish_rec(j->out + row + (h0 + r) * hd, acc + r * ps, hd, rec ? rec + r * rs : NULL,
                       lo, p);
    }
}

// Queries i0 .. i0+qn-1 with the heads of KV head g as one block (qn * group <= SUBG rows; no
// window, no recording): per chunk, one pass over the tiles that every query of the block
// sees, so that each tile of K and V is read once for the block and then from L1; then each
// query's own last tiles, going on from its state. A query gets the tiles, the order and the
// arithmetic that run_query gives it alone, so the same bits: decode at pos0 + i, bitwise.
static void run_block(const Job *j, size_t i0, size_t qn, size_t g) {
    const AttnShape *s = j->s;
    size_t hd = s->head_dim, ps = hd + 2, group = s->n_heads / s->n_kv_heads, rows = qn * group;
    size_t p0 = j->pos0 + i0;  // the first query's position
    int ty = s->kv_type;
    const void *k = kv_at(j->kc, ty, g * s->seq_len * hd);
    const void *v = kv_at(j->vc, ty, g * s->seq_len * hd);
    float acc[SUBG * (ATTN_MAX_HEAD_DIM + 2)], tmp[SUBG * (ATTN_MAX_HEAD_DIM + 2)], lv[SUBG * VW];
    const float *qr[SUBG];
    float *out[SUBG];
    for (size_t r = 0; r < rows; r++) {
        size_t at = ((i0 + r / group) * s->n_heads + g * group + r % group) * hd;
        qr[r] = j->q + at, out[r] = j->out + at;
    }
    for (size_t t0 = 0; t0 < p0 + qn; t0 += CHUNK) {
        size_t first = p0 >= t0 ? 0 : t0 - p0;  // the first query that sees this chunk
        size_t r0 = first * group, pf = p0 + first;
        size_t n_min = pf + 1 - t0 < CHUNK ? pf + 1 - t0 : CHUNK;
        size_t common = n_min / VW * VW;  // whole tiles that all its queries see
        const void *kt = kv_at(k, ty, t0 * hd), *vt = kv_at(v, ty, t0 * hd);
        float *dst = t0 > 0 ? tmp : acc;
        if (common)
            chunk(rows - r0, hd, ty, qr + r0, kt, vt, 0, common, n_min, pf + 1 - t0,
                  dst + r0 * ps, lv + r0 * VW, 1, NULL, 0);
        for (size_t r = r0; r < rows; r++) {
            size_t p = p0 + r / group, n = p + 1 - t0 < CHUNK ? p + 1 - t0 : CHUNK;
            if (n > common)
                chunk(1, hd, ty, qr + r, kt, vt, common, n, n, p + 1 - t0, dst + r * ps,
                      lv + r * VW, common == 0, NULL, 0);
            if (t0 > 0) fold(acc + r * ps, tmp + r * ps, hd);
        }
    }
    for (size_t r = 0; r < rows; r++) finish(out[r], acc + r * ps, hd, NULL, 0);
}

// Chunk c of the single query with the heads of KV head g, into the partials.
static void run_chunk(const Job *j, size_t g, size_t c) {
    const AttnShape *s = j->s;
    size_t hd = s->head_dim, ps = hd + 2, group = s->n_heads / s->n_kv_heads;
    size_t t0 = first_key(s, j->pos0) + c * CHUNK;
    size_t n = j->pos0 + 1 - t0 < CHUNK ? j->pos0 + 1 - t0 : CHUNK;
    int ty = s->kv_type;
    const void *k = kv_at(j->kc, ty, (g * s->seq_len + t0) * hd);
    const void *v = kv_at(j->vc, ty, (g * s->seq_len + t0) * hd);
    for (size_t h0 = 0; h0 < group; h0 += SUBG) {
        size_t G = group - h0 < SUBG ? group - h0 : SUBG, h = g * group + h0;
        float *rec = j->att ? j->att + h * j->att_stride + t0 : NULL;
        chunk_whole(G, hd, ty, j->q + h * hd, k, v, n, j->pos0 + 1 - t0,
                    j->part + (c * s->n_heads + h) * ps, rec, j->att_stride);
    }
}

// Items lo .. hi - 1 of the job (pool_for hands them out to the threads as they come free).
static void work(void *arg, size_t lo, size_t hi) {
    const Job *j = arg;
    size_t nkv = j->s->n_kv_heads;
    for (size_t it = lo; it < hi; it++) {
        if (j->part) {
            run_chunk(j, it % nkv, it / nkv);
        } else if (j->qb) {  // KV head by KV head (its K and V stay in cache), longest first
            size_t nb = (j->m + j->qb - 1) / j->qb, b = nb - 1 - it % nb, i0 = b * j->qb;
            run_block(j, i0, j->m - i0 < j->qb ? j->m - i0 : j->qb, it / nb);
        } else {
            run_query(j, j->m - 1 - it / nkv, it % nkv);  // the longest queries first
        }
    }
}

// Split mode's second step: heads h0 .. h1 - 1 fold their chunk partials in chunk order.
static void fold_work(void *arg, size_t h0, size_t h1) {
    const Job *j = arg;
    size_t nh = j->s->n_heads, hd = j->s->head_dim, ps = hd + 2;
    for (size_t h = h0; h < h1; h++) {
        float *a = j->part + h * ps;
        for (size_t c = 1; c < j->n_chunks; c++) fold(a, j->part + (c * nh + h) * ps, hd);
        finish_rec(j->out + h * hd, a, hd, j->att ? j->att + h * j->att_stride : NULL,
                   first_key(j->s, j->pos0), j->pos0);
    }
}

static void check(const AttnShape *s, size_t end) {
    (void)s, (void)end;
    assert(s->head_dim >= 1 && s->head_dim <= ATTN_MAX_HEAD_DIM);
    assert(s->n_kv_heads >= 1 && s->n_heads % s->n_kv_heads == 0);
    assert(s->kv_type == ATTN_KV_F32 || s->kv_type == ATTN_KV_F16);
    assert(end <= s->seq_len);
}

size_t attention_kv_bytes(int kv_type) { return kv_size(kv_type); }

void attention_kv_store(int kv_type, void *dst, const float *src, size_t n) {
    if (kv_type != ATTN_KV_F16) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    size_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
#if SL_NEON
    for (; i + 4 <= n; i += 4)  // fcvtn: to nearest, ties to even (FPCR's default), as F16C
        vst1_u16(d + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
#endif
    for (; i < n; i++) d[i] = f32_to_fp16(src[i]);
}

size_t attention_scratch_bytes(const AttnShape *s) {
    return (s->seq_len + CHUNK - 1) / CHUNK * s->n_heads * (s->head_dim + 2) * sizeof(float);
}

void attention_decode_rec(Pool *pool, const AttnShape *s, float *out, const float *q,
                          const void *kc, const void *vc, size_t pos, float *scratch,
                          float *att, size_t att_stride) {
    check(s, pos + 1);
    assert(!att || att_stride >= pos + 1);
    size_t nt = (size_t)pool_size(pool), n_chunks = (pos - first_key(s, pos)) / CHUNK + 1;
    Job j = {.s = s, .out = out, .q = q, .kc = kc, .vc = vc, .pos0 = pos, .m = 1,
             .att = att, .att_stride = att_stride};
    if (scratch && nt > 1 && n_chunks > 1 && s->n_kv_heads % nt) {  // KV heads do not balance
        j.part = scratch, j.n_chunks = n_chunks, j.n_items = n_chunks * s->n_kv_heads;
        pool_for(pool, j.n_items, work, &j);
        pool_for(pool, s->n_heads, fold_work, &j);
    } else {
        j.n_items = s->n_kv_heads;
        pool_for(pool, j.n_items, work, &j);
    }
}

void attention_decode(Pool *pool, const AttnShape *s, float *out, const float *q,
                      const void *kc, const void *vc, size_t pos, float *scratch) {
    attention_decode_rec(pool, s, out, q, kc, vc, pos, scratch, NULL, 0);
}

static Job prefill_job(const AttnSeq *q);

void attention_prefill_rec(Pool *pool, const AttnShape *s, float *out, const float *q,
                           const void *kc, const void *vc, size_t pos0, size_t m,
                           float *scratch, float *att, size_t att_stride) {
    check(s, pos0 + m);
    assert(!att || att_stride >= pos0 + m);
    size_t qd = s->n_heads * s->head_dim, ad = s->n_heads * att_stride;
    if (scratch && m * s->n_kv_heads < (size_t)pool_size(pool)) {  // too few items: split each
        for (size_t i = 0; i < m; i++)
            attention_decode_rec(pool, s, out + i * qd, q + i * qd, kc, vc, pos0 + i, scratch,
                                 att ? att + i * ad : NULL, att_stride);
        return;
    }
    AttnSeq one = {s, out, q, kc, vc, pos0, m, att, att_stride};
    Job j = prefill_job(&one);
    if (m) pool_for(pool, j.n_items, work, &j);
}

// Several sequences' prefills as one job list: item it of the whole is item it - first[k] of
// sequence k, whose jobs are those attention_prefill_rec would run without scratch.
typedef struct {
    Job *jobs;
    const size_t *first;  // (n + 1) where each sequence's items start
    size_t n;
} Multi;

static void work_multi(void *arg, size_t lo, size_t hi) {
    const Multi *mj = arg;
    size_t k = 0;
    while (k + 1 < mj->n && mj->first[k + 1] <= lo) k++;
    for (size_t it = lo; it < hi;) {
        while (mj->first[k + 1] <= it) k++;
        size_t end = hi < mj->first[k + 1] ? hi : mj->first[k + 1];
        work(&mj->jobs[k], it - mj->first[k], end - mj->first[k]);
        it = end;
    }
}

// The job attention_prefill_rec runs when the pool is not to split a query's positions.
static Job prefill_job(const AttnSeq *q) {
    const AttnShape *s = q->s;
    Job j = {.s = s, .out = q->out, .q = q->q, .kc = q->kc, .vc = q->vc, .pos0 = q->pos0,
             .m = q->m, .att = q->att, .att_stride = q->att_stride};
    size_t group = s->n_heads / s->n_kv_heads;
    j.n_items = q->m * s->n_kv_heads;
    if (!q->att && !s->window && q->m > 1 && 2 * group <= SUBG) {  // blocks of 2 or more queries
        j.qb = SUBG / group;
        j.n_items = (q->m + j.qb - 1) / j.qb * s->n_kv_heads;
    }
    return j;
}

void attention_prefill_seqs(Pool *pool, const AttnSeq *seqs, size_t n) {
    enum { MAX = 128 };
    Job jobs[MAX];
    size_t first[MAX + 1];
    assert(n <= MAX);
    first[0] = 0;
    for (size_t k = 0; k < n; k++) {
        check(seqs[k].s, seqs[k].pos0 + seqs[k].m);
        assert(!seqs[k].att || seqs[k].att_stride >= seqs[k].pos0 + seqs[k].m);
        jobs[k] = prefill_job(&seqs[k]);
        first[k + 1] = first[k] + jobs[k].n_items;
    }
    Multi mj = {jobs, first, n};
    if (first[n]) pool_for(pool, first[n], work_multi, &mj);
}

void attention_prefill(Pool *pool, const AttnShape *s, float *out, const float *q,
                       const void *kc, const void *vc, size_t pos0, size_t m, float *scratch) {
    attention_prefill_rec(pool, s, out, q, kc, vc, pos0, m, scratch, NULL, 0);
}

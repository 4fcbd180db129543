// convert.c: f32 tensors to f32, f16, bf16, q8_0 or block bytes, in bounded chunks (see convert.h).
#include "convert/convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize.h"
#include "kernels/quant.h"

#define CONVERT_CHUNK ((size_t)1 << 16)  // source values converted at a time

int dtype_parse(const char *s) {
    for (int d = 0; d < SL_DTYPE_COUNT; d++) {
        if (strcmp(s, dtype_name(d)) != 0) continue;
        // a block type: only those quantize.c writes (asked for no rows)
        if (dtype_ggml(d) &&
            quantize_blocks(dtype_ggml(d), NULL, 0, type_info(d)->block_elems, NULL) != 0)
            return -1;
        return d;
    }
    return strcmp(s, "q4_k_m") == 0 ? CONVERT_Q4_K_M : -1;
}

// llama.cpp's use_more_bits: the first and last eighth of n layers, and every third between.
static int more_bits(size_t l, size_t n) {
    return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

int convert_set_types(SlHeader *h, int dtype, uint8_t *layer_types, const char *name) {
    SlLayout lay;  // the shapes
    for (int t = 0; t < SL_T_COUNT; t++) h->tensor_type[t] = SL_F32;
    if (model_layout(h, NULL, &lay, name) != MODEL_OK) return -1;
    int preset = dtype == CONVERT_Q4_K_M, shared = (h->flags & SL_FLAG_SHARED_CLASSIFIER) != 0;
    size_t L = (size_t)h->n_layers, n_types = 0;
    char fell[128] = "";  // the tensors that fall back to q8_0
    for (int t = 0; t < SL_T_COUNT; t++) {
        int ty = !preset ? dtype
                 : t == SL_T_CLS || (t == SL_T_EMBED && shared) ? SL_Q6_K : SL_Q4_K;
        if (tensor_is_f32(t)) ty = SL_F32;
        else if (dtype_ggml(ty) && lay.cols[t] % type_info(ty)->block_elems) {
            ty = SL_Q8_0;
            if (strlen(fell) + strlen(tensor_name(t)) + 3 < sizeof fell)
                strcat(strcat(fell, fell[0] ? ", " : ""), tensor_name(t));
        }
        if (preset && ty == SL_Q4_K && (t == SL_T_WV || t == SL_T_W2)) {
            for (size_t l = 0; l < L; l++)
                layer_types[n_types++] = more_bits(l, L) ? SL_Q6_K : SL_Q4_K;
            ty = SL_TYPE_PER_LAYER;
        }
        h->tensor_type[t] = (uint8_t)ty;
    }
    h->weight_type = h->tensor_type[SL_T_WQ];
    if (fell[0])
        fprintf(stderr, "%s: note: %s stored as q8_0: their rows are not whole blocks of %s\n",
                name, fell, preset ? "q4_k" : dtype_name(dtype));
    return 0;
}

int converter_init(Converter *c, const SlHeader *h, const TensorData *src, const char *name) {
    memset(c, 0, sizeof *c);
    c->src = *src;
    c->name = name;
    c->scale_t = -1;
    c->n_layers = (size_t)h->n_layers;
    if (model_layout(h, src->layer_types, &c->layout, name) != MODEL_OK) return -1;
    c->x_cap = CONVERT_CHUNK;
    for (int t = 0; t < SL_T_COUNT; t++) {
        c->type[t] = h->tensor_type[t];
        size_t row = q8_groups(c->layout.cols[t]) * Q8_GROUP;  // at least one q8_0 row fits
        if (row > c->x_cap) c->x_cap = row;
    }
    c->x = malloc(c->x_cap * sizeof(float));
    c->y = malloc(c->x_cap * 4);
    if (!c->x || !c->y) {
        fprintf(stderr, "%s: out of memory for conversion buffers\n", name);
        converter_free(c);
        return -1;
    }
    return 0;
}

void converter_free(Converter *c) {
    free(c->x);
    free(c->y);
    free(c->scales);
    c->x = NULL, c->y = NULL, c->scales = NULL;
}

// Reads source values [first, first + count) of tensor t into x.
static int src_read(const Converter *c, int t, size_t first, size_t count, float *x) {
    if (c->src.fill)
        return c->src.fill(c->src.ctx, t, first * sizeof(float), x, count * sizeof(float));
    memcpy(x, (const float *)c->src.data[t] + first, count * sizeof(float));
    return 0;
}

// Prints why element i of tensor t (value v) cannot be stored; returns -1.
static int refuse(const Converter *c, int t, size_t i, float v, const char *why) {
    size_t cols = c->layout.cols[t];
    fprintf(stderr, "%s: tensor %s, element %zu (row %zu, column %zu): %g %s\n", c->name,
            tensor_name(t), i, i / cols, i % cols, (double)v, why);
    return -1;
}

static int refuse_nonfinite(const Converter *c, int t, size_t i, float v) {
    char why[128];
    snprintf(why, sizeof why, "is not a finite number: %s cannot store it (only f32 can)",
             c->type[t] == SL_TYPE_PER_LAYER ? "a block type" : dtype_name(c->type[t]));
    return refuse(c, t, i, v, why);
}

// Converts x[0..k) (source elements first..first+k) to f16 or bf16 in out.
static int to_16bit(const Converter *c, int t, size_t first, const float *x, size_t k,
                    uint16_t *out) {
    int f16 = c->type[t] == SL_F16;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(x[i])) return refuse_nonfinite(c, t, first + i, x[i]);
        if (f16 && fabsf(x[i]) > 65504.0f)
            return refuse(c, t, first + i, x[i],
                          "is beyond the f16 range (+-65504): export with --dtype bf16 or f32");
        out[i] = f16 ? f32_to_fp16(x[i]) : f32_to_bf16(x[i]);
        if (!f16 && (out[i] & 0x7fffu) == 0x7f80u)
            return refuse(c, t, first + i, x[i],
                          "rounds to infinity in bf16: export with --dtype f32");
    }
    return 0;
}

// f32, f16 and bf16: element by element.
static int fill_elements(Converter *c, int t, size_t offset, uint8_t *buf, size_t n) {
    size_t es = type_info(c->type[t])->block_bytes;  // bytes per element
    size_t end = offset + n;
    for (size_t i = offset / es; i * es < end;) {
        size_t k = (end - i * es + es - 1) / es;  // elements still touched
        if (k > c->x_cap) k = c->x_cap;
        if (src_read(c, t, i, k, c->x) != 0) return -1;
        if (es == 4) memcpy(c->y, c->x, k * 4);
        else if (to_16bit(c, t, i, c->x, k, (uint16_t *)(void *)c->y) != 0) return -1;
        size_t lo = i * es > offset ? i * es : offset;
        size_t hi = (i + k) * es < end ? (i + k) * es : end;
        memcpy(buf + (lo - offset), c->y + (lo - i * es), hi - lo);
        i += k;
    }
    return 0;
}

// q8_0: quantizes rows [r, r + k) of tensor t into q (k x G x 32) and s (k x G), and keeps
// the scales of the rows that extend the run of known ones.
static int quantize_rows(Converter *c, int t, size_t r, size_t k, int8_t *q, uint16_t *s) {
    size_t C = c->layout.cols[t], G = q8_groups(C);
    if (src_read(c, t, r * C, k * C, c->x) != 0) return -1;
    for (size_t i = 0; i < k * C; i++)
        if (!isfinite(c->x[i])) return refuse_nonfinite(c, t, r * C + i, c->x[i]);
    for (size_t j = 0; j < k; j++) {
        const float *x = c->x + j * C;
        q8_quantize_row_f16(x, C, q + j * G * Q8_GROUP, s + j * G);
        for (size_t g = 0; g < G; g++) {
            if ((s[j * G + g] & 0x7fffu) != 0x7c00u) continue;
            size_t at = g * Q8_GROUP, len = C - at < Q8_GROUP ? C - at : Q8_GROUP, big = at;
            for (size_t i = at; i < at + len; i++)
                if (fabsf(x[i]) > fabsf(x[big])) big = i;
            return refuse(c, t, (r + j) * C + big, x[big],
                          "is too large for q8_0 (its group's f16 scale max|x|/127 would "
                          "overflow): export with --dtype bf16 or f32");
        }
    }
    if (t == c->scale_t && r <= c->scale_rows && r + k > c->scale_rows) {
        memcpy(c->scales + c->scale_rows * G, s + (c->scale_rows - r) * G,
               (r + k - c->scale_rows) * G * sizeof(uint16_t));
        c->scale_rows = r + k;
    }
    return 0;
}

static int fill_q8(Converter *c, int t, size_t offset, uint8_t *buf, size_t n) {
    size_t R = c->layout.rows[t], G = q8_groups(c->layout.cols[t]);
    size_t row_q = G * Q8_GROUP, qbytes = R * row_q, end = offset + n;
    size_t batch = c->x_cap / row_q;  // rows per pass, >= 1 (see converter_init)
    int8_t *q = (int8_t *)c->y;
    uint16_t *s = (uint16_t *)(void *)(c->y + batch * row_q);  // y holds 4 * x_cap bytes
    if (t != c->scale_t) {  // a new tensor: room for all its scales
        if (R * G > c->scale_cap) {
            uint16_t *p = realloc(c->scales, R * G * sizeof(uint16_t));
            if (!p) {
                fprintf(stderr, "%s: out of memory for the q8_0 scales of %s\n", c->name,
                        tensor_name(t));
                return -1;
            }
            c->scales = p, c->scale_cap = R * G;
        }
        c->scale_t = t, c->scale_rows = 0;
    }
    // the quants: rows covering [offset, min(end, qbytes))
    for (size_t r = offset / row_q; r * row_q < end && r < R;) {
        size_t k = R - r < batch ? R - r : batch;
        if (quantize_rows(c, t, r, k, q, s) != 0) return -1;
        size_t lo = r * row_q > offset ? r * row_q : offset;
        size_t hi = (r + k) * row_q < end ? (r + k) * row_q : end;
        if (hi > lo) memcpy(buf + (lo - offset), q + (lo - r * row_q), hi - lo);
        r += k;
    }
    // the scales: compute any rows not yet seen, then copy
    if (end > qbytes) {
        size_t lo = offset > qbytes ? offset : qbytes;
        size_t need = ((end - qbytes + 1) / 2 + G - 1) / G;  // rows whose scales are asked
        while (c->scale_rows < need) {
            size_t r = c->scale_rows, k = R - r < batch ? R - r : batch;
            if (quantize_rows(c, t, r, k, q, s) != 0) return -1;
        }
        memcpy(buf + (lo - offset), (const uint8_t *)c->scales + (lo - qbytes), end - lo);
    }
    return 0;
}

// Block types: the rows covering bytes [offset, offset + n), quantized from the source's values
// (quantize.h), layer by layer where the layers have their own types (each layer stored whole).
static int fill_blocks(Converter *c, int t, size_t offset, uint8_t *buf, size_t n) {
    const uint8_t *lt = c->layout.layer_type[t];
    size_t C = c->layout.cols[t], segs = lt ? c->n_layers : 1, seg_rows = c->layout.rows[t] / segs;
    size_t batch = c->x_cap / C, end = offset + n, start = 0;  // start: segment l's first byte
    float *back = malloc(C * sizeof(float));
    if (!back) {
        fprintf(stderr, "%s: out of memory\n", c->name);
        return -1;
    }
    int err = 0;
    for (size_t l = 0; l < segs && start < end && !err; l++) {
        int type = lt ? lt[l] : c->type[t];
        const TypeInfo *ti = type_info(type);
        size_t rb = type_row_bytes(type, C);
        for (size_t r = offset > start ? (offset - start) / rb : 0;
             r < seg_rows && start + r * rb < end && !err;) {
            size_t k = seg_rows - r < batch ? seg_rows - r : batch, first = (l * seg_rows + r) * C;
            if ((err = src_read(c, t, first, k * C, c->x)) != 0) break;
            for (size_t i = 0; i < k * C && !err; i++)
                if (!isfinite(c->x[i])) err = refuse_nonfinite(c, t, first + i, c->x[i]);
            if (err || (err = quantize_blocks(ti->ggml, c->x, k, C, c->y)) != 0) break;
            for (size_t j = 0; j < k && !err; j++) {  // an f16 scale that overflowed
                ti->to_float(c->y + j * rb, back, C);
                for (size_t i = 0; i < C && !err; i++)
                    if (!isfinite(back[i])) {
                        char why[160];  // q8_0 holds what a 32-weight type's scale cannot
                        snprintf(why, sizeof why, "is too large for %s (its block's f16 scale "
                                 "would overflow): export with --dtype %sbf16 or f32",
                                 ti->name, ti->block_elems == 32 ? "q8_0, " : "");
                        err = refuse(c, t, first + j * C + i, c->x[j * C + i], why);
                    }
            }
            size_t lo = start + r * rb > offset ? start + r * rb : offset;
            size_t hi = start + (r + k) * rb < end ? start + (r + k) * rb : end;
            if (!err && hi > lo) memcpy(buf + (lo - offset), c->y + (lo - start - r * rb), hi - lo);
            r += k;
        }
        start += seg_rows * rb;
    }
    free(back);
    return err ? -1 : 0;
}

int convert_fill(void *ctx, int t, size_t offset, void *buf, size_t n) {
    Converter *c = ctx;
    if (dtype_ggml(c->type[t]) || c->type[t] == SL_TYPE_PER_LAYER)  // the source's own blocks
        return c->src.raw ? c->src.raw(c->src.ctx, t, offset, buf, n) : fill_blocks(c, t, offset, buf, n);
    if (c->type[t] == SL_Q8_0) return fill_q8(c, t, offset, buf, n);
    return fill_elements(c, t, offset, buf, n);
}

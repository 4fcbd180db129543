// model.c: the loader. Validates a model file completely, then maps it read-only.
//
// Contract: POSIX (open, fstat, pread, mmap) and libc. Every size is computed in size_t
// with overflow checks, and compared with the file before any byte past the header is
// trusted. Errors print one line naming the file and return an enum model_err.
#include "model.h"

#include "io/fileio.h"
#include "kernels/quant.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "searchlight model files are little-endian; this build targets a big-endian CPU"
#endif

static const char *const tensor_names[SL_T_COUNT] = {
    "token_embedding", "rms_att", "wq", "wk", "wv", "wo",
    "rms_ffn", "w1", "w2", "w3", "rms_final", "classifier", "qkv_bias", "qk_norm", "rope_freqs",
    "post_norms",
};

const char *tensor_name(int t) {
    return t >= 0 && t < SL_T_COUNT ? tensor_names[t] : "unknown";
}

static int mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

static int add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

int tensor_is_f32(int t) {
    return t == SL_T_RMS_ATT || t == SL_T_RMS_FFN || t == SL_T_RMS_FINAL || t >= SL_T_COUNT_V1;
}

// Is t a matrix stacked by layer (one that may have a type per layer)?
static int layered_matrix(int t) {
    return t == SL_T_WQ || t == SL_T_WK || t == SL_T_WV || t == SL_T_WO || t == SL_T_W1 ||
           t == SL_T_W2 || t == SL_T_W3;
}

// Is optional tensor t in a file with header h?
static int tensor_present(const SlHeader *h, int t) {
    if (t >= (int)h->n_tensors) return 0;
    switch (t) {
    case SL_T_CLS: return !(h->flags & SL_FLAG_SHARED_CLASSIFIER);
    case SL_T_BQKV: return (h->flags & SL_FLAG_QKV_BIAS) != 0;
    case SL_T_QK_NORM: return (h->flags & SL_FLAG_QK_NORM) != 0;
    case SL_T_ROPE_FREQS: return h->rope_scaling == SL_ROPE_FREQS;
    case SL_T_POST_NORMS: return (h->flags & SL_FLAG_POST_NORMS) != 0;
    default: return 1;
    }
}

// ----------------------------------------------------------------------------
// header validation and layout

#define DIMS_FAIL(...)                          \
    do {                                        \
        fprintf(stderr, "%s: ", path);          \
        fprintf(stderr, __VA_ARGS__);           \
        fputc('\n', stderr);                    \
        return MODEL_ERR_DIMS;                  \
    } while (0)

size_t model_layer_types_bytes(const SlHeader *h) {
    size_t n = 0;
    for (int t = 0; t < SL_T_COUNT && h->n_layers > 0; t++)
        if (t < (int)h->n_tensors && h->tensor_type[t] == SL_TYPE_PER_LAYER) n += (size_t)h->n_layers;
    return n;
}

int model_layout(const SlHeader *h, const uint8_t *layer_types, SlLayout *out, const char *path) {
    memset(out, 0, sizeof *out);
    if (h->vocab_size <= 0) DIMS_FAIL("vocab_size %d, expected > 0", h->vocab_size);
    if (h->tokenizer_bytes < 8)
        DIMS_FAIL("tokenizer section of %u bytes, expected at least 8", h->tokenizer_bytes);
    if (h->chat_template_bytes > SL_CHAT_TEMPLATE_MAX)
        DIMS_FAIL("chat template of %u bytes, at most %u", h->chat_template_bytes,
                  SL_CHAT_TEMPLATE_MAX);
    if (h->chat_template_bytes && h->version == 1)  // 0: a header not yet written
        DIMS_FAIL("a version 1 file has a chat template");
    if (h->n_tensors == 0) {  // a tokenizer-only file
        out->file_bytes = SL_HEADER_BYTES + (size_t)h->tokenizer_bytes + h->chat_template_bytes;
        return MODEL_OK;
    }
    // version 1: SL_T_COUNT_V1; 2: that or SL_T_COUNT_V2; 3: any of them or SL_T_COUNT (0: a
    // header not yet written, which may hold any)
    if (h->n_tensors != SL_T_COUNT_V1 && (h->version == 1 || h->n_tensors != SL_T_COUNT_V2) &&
        (h->version == 1 || h->version == 2 || h->n_tensors != SL_T_COUNT))
        DIMS_FAIL("n_tensors %u, expected %d (version 1), %d (version 2) or %d (version 3), or 0 "
                  "for a tokenizer-only file", h->n_tensors, SL_T_COUNT_V1, SL_T_COUNT_V2,
                  SL_T_COUNT);
    const struct { const char *name; int32_t v; } sizes[] = {
        {"dim", h->dim},         {"hidden_dim", h->hidden_dim}, {"n_layers", h->n_layers},
        {"n_heads", h->n_heads}, {"n_kv_heads", h->n_kv_heads}, {"head_dim", h->head_dim},
        {"seq_len", h->seq_len},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v <= 0) DIMS_FAIL("%s %d, expected > 0", sizes[i].name, sizes[i].v);
    if (h->dim % h->n_heads)
        DIMS_FAIL("n_heads %d does not divide dim %d", h->n_heads, h->dim);
    if (h->n_heads % h->n_kv_heads)
        DIMS_FAIL("n_kv_heads %d does not divide n_heads %d", h->n_kv_heads, h->n_heads);
    if (h->head_dim % 2) DIMS_FAIL("head_dim %d, expected an even number", h->head_dim);
    if ((int64_t)h->n_heads * h->head_dim > INT32_MAX)
        DIMS_FAIL("n_heads %d x head_dim %d overflows", h->n_heads, h->head_dim);
    if (!(isfinite(h->rope_theta) && h->rope_theta > 0))
        DIMS_FAIL("rope_theta %g, expected a finite value > 0", h->rope_theta);
    if (!(isfinite(h->norm_eps) && h->norm_eps > 0 && h->norm_eps < 1))
        DIMS_FAIL("norm_eps %g, expected 0 < eps < 1", h->norm_eps);
    if (h->version == 1 && model_header_version(h) > 1)  // 0: a header not yet written
        DIMS_FAIL("a version 1 file uses a version-2 field (RoPE scaling, stop ids, flags, a "
                  "sliding window, block or per-layer types)");
    if (h->n_tensors == SL_T_COUNT_V1 &&
        (h->flags & (SL_FLAG_QKV_BIAS | SL_FLAG_QK_NORM) || h->rope_scaling == SL_ROPE_FREQS))
        DIMS_FAIL("biases, q/k norms or RoPE divisors need n_tensors %d, found %d", SL_T_COUNT_V2,
                  SL_T_COUNT_V1);
    if (h->version && h->version < 3 && model_header_version(h) > 2)
        DIMS_FAIL("a version %u file uses a version-3 field (post norms, GeGLU, embed_scale, "
                  "attn_scale, rope_local_theta, window_period)", h->version);
    if (h->flags & SL_FLAG_POST_NORMS && h->n_tensors != SL_T_COUNT)
        DIMS_FAIL("post norms need n_tensors %d, found %u", SL_T_COUNT, h->n_tensors);
    if (!(isfinite(h->embed_scale) && h->embed_scale >= 0) ||
        !(isfinite(h->attn_scale) && h->attn_scale >= 0) ||
        !(isfinite(h->rope_local_theta) && h->rope_local_theta >= 0))
        DIMS_FAIL("embed_scale %g, attn_scale %g, rope_local_theta %g: expected finite values "
                  ">= 0 (0: none)", h->embed_scale, h->attn_scale, h->rope_local_theta);
    if (h->window_period < 0 || h->window_period == 1 ||
        (h->window_period && !h->sliding_window) || (h->rope_local_theta && !h->window_period))
        DIMS_FAIL("window_period %d with sliding_window %d and rope_local_theta %g: expected 0, "
                  "or >= 2 with a sliding window (a local RoPE base only with a period)",
                  h->window_period, h->sliding_window, h->rope_local_theta);
    if (h->sliding_window < 0)
        DIMS_FAIL("sliding_window %d, expected >= 0 (0: none)", h->sliding_window);
    if (h->sampling_set & ~SL_SAMPLE_KNOWN)
        DIMS_FAIL("sampling_set 0x%x has unknown bits (known: 0x%x)", h->sampling_set, SL_SAMPLE_KNOWN);
    {
        SlHeader c = {0};  // each value held, checked as model_set_sampling checks it
        const double v[5] = {h->sample_temperature, h->sample_top_p, h->sample_top_k,
                             h->sample_min_p, h->sample_repeat_penalty};
        for (int i = 0; i < 5; i++)
            if (h->sampling_set & (1u << i) && model_set_sampling(&c, 1u << i, v[i]) != 0)
                DIMS_FAIL("recommended %s %g, out of its range",
                          (const char *[]){"temperature", "top_p", "top_k", "min_p",
                                           "repeat_penalty"}[i], v[i]);
    }
    if (h->rope_scaling >= SL_ROPE_COUNT)
        DIMS_FAIL("RoPE scaling %u, expected 0 (none), 1 (linear), 2 (llama3) or 3 (divisors)",
                  h->rope_scaling);
    if ((h->rope_scaling == SL_ROPE_LINEAR || h->rope_scaling == SL_ROPE_LLAMA3) &&
        !(isfinite(h->rope_factor) && h->rope_factor > 0))
        DIMS_FAIL("RoPE scaling factor %g, expected a finite value > 0", h->rope_factor);
    if (h->rope_scaling == SL_ROPE_LLAMA3 &&
        !(h->rope_factor >= 1 && h->rope_low_freq > 0 && isfinite(h->rope_high_freq) &&
          h->rope_high_freq > h->rope_low_freq && h->rope_orig_ctx > 0))
        DIMS_FAIL("llama3 RoPE scaling: factor %g, low_freq_factor %g, high_freq_factor %g, "
                  "original context %d; expected factor >= 1, 0 < low < high, context > 0",
                  h->rope_factor, h->rope_low_freq, h->rope_high_freq, h->rope_orig_ctx);
    if (h->n_stop > SL_MAX_STOP) DIMS_FAIL("%u stop ids, at most %d", h->n_stop, SL_MAX_STOP);
    for (uint32_t i = 0; i < h->n_stop; i++)
        if (h->stop_ids[i] < 0 || h->stop_ids[i] >= h->vocab_size)
            DIMS_FAIL("stop id %d, expected an id below vocab_size %d", h->stop_ids[i],
                      h->vocab_size);
    if (h->flags & ~SL_FLAGS_KNOWN) DIMS_FAIL("unknown flags 0x%x", h->flags & ~SL_FLAGS_KNOWN);
    if (h->weight_type >= SL_DTYPE_COUNT) {
        fprintf(stderr, "%s: weight type %u is unknown, expected 0..%d\n", path, h->weight_type,
                SL_DTYPE_COUNT - 1);
        return MODEL_ERR_TYPE;
    }

    size_t L = (size_t)h->n_layers, dim = (size_t)h->dim, hidden = (size_t)h->hidden_dim;
    size_t q_dim = (size_t)h->n_heads * (size_t)h->head_dim;
    size_t kv_dim = (size_t)h->n_kv_heads * (size_t)h->head_dim;
    size_t vocab = (size_t)h->vocab_size;
    const size_t shape[SL_T_COUNT][3] = {  // layers, rows, cols
        [SL_T_EMBED] = {1, vocab, dim},    [SL_T_RMS_ATT] = {L, 1, dim},
        [SL_T_WQ] = {L, q_dim, dim},       [SL_T_WK] = {L, kv_dim, dim},
        [SL_T_WV] = {L, kv_dim, dim},      [SL_T_WO] = {L, dim, q_dim},
        [SL_T_RMS_FFN] = {L, 1, dim},      [SL_T_W1] = {L, hidden, dim},
        [SL_T_W2] = {L, dim, hidden},      [SL_T_W3] = {L, hidden, dim},
        [SL_T_RMS_FINAL] = {1, 1, dim},    [SL_T_CLS] = {1, vocab, dim},
        [SL_T_BQKV] = {L, 1, q_dim + 2 * kv_dim}, [SL_T_QK_NORM] = {L, 1, 2 * (size_t)h->head_dim},
        [SL_T_ROPE_FREQS] = {1, 1, (size_t)h->head_dim / 2},
        [SL_T_POST_NORMS] = {L, 1, 2 * dim},
    };
    out->layer_types_bytes = model_layer_types_bytes(h);
    out->layer_types_offset = SL_HEADER_BYTES + (size_t)h->tokenizer_bytes + h->chat_template_bytes;
    if (out->layer_types_bytes && !layer_types) {
        fprintf(stderr, "%s: internal error: no layer types table\n", path);
        return MODEL_ERR_DIMS;
    }
    size_t pos = out->layer_types_offset + out->layer_types_bytes;
    const uint8_t *next_types = layer_types;
    for (int t = 0; t < SL_T_COUNT; t++) {
        int type = h->tensor_type[t];
        if (!tensor_present(h, t)) continue;
        if (type == SL_TYPE_PER_LAYER) {
            if (!layered_matrix(t)) {
                fprintf(stderr, "%s: tensor %s has per-layer types, which only wq, wk, wv, wo, "
                        "w1, w2 and w3 can have\n", path, tensor_names[t]);
                return MODEL_ERR_TYPE;
            }
            out->layer_type[t] = next_types;
            next_types += L;
            size_t rows = shape[t][1], cols = shape[t][2], bytes = 0;
            for (size_t l = 0; l < L; l++) {
                int lt = out->layer_type[t][l];
                if (!dtype_ggml(lt)) {
                    fprintf(stderr, "%s: tensor %s, layer %zu: type %d (%s), expected a block "
                            "type in a tensor with per-layer types\n", path, tensor_names[t], l,
                            lt, dtype_name(lt));
                    return MODEL_ERR_TYPE;
                }
                size_t b = tensor_bytes(lt, rows, cols);
                if (!type_row_bytes(lt, cols))
                    DIMS_FAIL("tensor %s, layer %zu: rows of %zu weights are not whole %s "
                              "blocks", tensor_names[t], l, cols, dtype_name(lt));
                if (!b || !add_ok(bytes, b, &bytes))
                    DIMS_FAIL("tensor %s: its layers' sizes overflow", tensor_names[t]);
            }
            pos = (pos + SL_ALIGN - 1) / SL_ALIGN * SL_ALIGN;
            out->offset[t] = pos;
            out->bytes[t] = bytes;
            out->rows[t] = L * rows;
            out->cols[t] = cols;
            if (!add_ok(pos, bytes, &pos) || pos > SIZE_MAX / 2)
                DIMS_FAIL("tensor %s ends beyond any possible file size", tensor_names[t]);
            continue;
        }
        if (type >= SL_DTYPE_COUNT) {
            fprintf(stderr, "%s: tensor %s has type %d, expected 0..%d\n", path, tensor_names[t],
                    type, SL_DTYPE_COUNT - 1);
            return MODEL_ERR_TYPE;
        }
        if (tensor_is_f32(t) && type != SL_F32) {
            fprintf(stderr, "%s: tensor %s is %s, norm weights and biases must be f32\n", path,
                    tensor_names[t], dtype_name(type));
            return MODEL_ERR_TYPE;
        }
        size_t rows, n, bytes;
        if (!mul_ok(shape[t][0], shape[t][1], &rows) || !mul_ok(rows, shape[t][2], &n))
            DIMS_FAIL("tensor %s: %zu x %zu x %zu elements overflow", tensor_names[t],
                      shape[t][0], shape[t][1], shape[t][2]);
        if (dtype_ggml(type) && !type_row_bytes(type, shape[t][2]))
            DIMS_FAIL("tensor %s: rows of %zu weights are not whole %s blocks", tensor_names[t],
                      shape[t][2], dtype_name(type));
        if ((bytes = tensor_bytes(type, rows, shape[t][2])) == 0)
            DIMS_FAIL("tensor %s: %zu elements of type %s overflow", tensor_names[t], n,
                      dtype_name(type));
        pos = (pos + SL_ALIGN - 1) / SL_ALIGN * SL_ALIGN;  // pos is far below SIZE_MAX here
        out->offset[t] = pos;
        out->bytes[t] = bytes;
        out->rows[t] = rows;
        out->cols[t] = shape[t][2];
        if (!add_ok(pos, bytes, &pos) || pos > SIZE_MAX / 2)
            DIMS_FAIL("tensor %s ends beyond any possible file size", tensor_names[t]);
    }
    out->file_bytes = pos;
    return MODEL_OK;
}

size_t layout_params(const SlLayout *lay) {
    size_t n = 0;
    for (int t = 0; t < SL_T_COUNT; t++) n += lay->rows[t] * lay->cols[t];
    return n;
}

// ----------------------------------------------------------------------------
// open / close

static int read_exact(int fd, void *buf, size_t n, off_t at) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        p += got, n -= (size_t)got, at += got;
    }
    return 1;
}

static int check_header(const SlHeader *h, const char *path) {
    if (memcmp(h->magic, SL_MAGIC, 8) != 0) {
        char shown[8 * 4 + 1], *s = shown;  // printable bytes as they are, others as \xNN
        for (int i = 0; i < 8; i++) {
            unsigned char c = (unsigned char)h->magic[i];
            s += sprintf(s, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
        }
        fprintf(stderr, "%s: magic \"%s\", expected \"%s\" (not a searchlight model: convert it with export)\n",
                path, shown, SL_MAGIC);
        return MODEL_ERR_MAGIC;
    }
    if (h->version < 1 || h->version > SL_VERSION) {
        fprintf(stderr, "%s: format version %u, this build reads versions 1 to %d\n", path,
                h->version, SL_VERSION);
        return MODEL_ERR_VERSION;
    }
    if (h->header_bytes != SL_HEADER_BYTES) {
        fprintf(stderr, "%s: header of %u bytes, expected %d\n", path, h->header_bytes,
                SL_HEADER_BYTES);
        return MODEL_ERR_VERSION;
    }
    return MODEL_OK;
}

static int open_checked(Model *m, const char *path, int need_weights, int fd, size_t have) {
    if (have == 0) {
        fprintf(stderr, "%s: empty file (0 bytes)\n", path);
        return MODEL_ERR_EMPTY;
    }
    if (have < SL_HEADER_BYTES) {
        fprintf(stderr, "%s: %zu bytes, shorter than the %d-byte header (truncated?)\n", path,
                have, SL_HEADER_BYTES);
        return MODEL_ERR_TRUNCATED;
    }
    if (!read_exact(fd, &m->header, sizeof m->header, 0)) {
        fprintf(stderr, "%s: cannot read the header: %s\n", path, strerror(errno));
        return MODEL_ERR_IO;
    }
    int err;
    if ((err = check_header(&m->header, path)) != MODEL_OK) return err;
    size_t types_at = SL_HEADER_BYTES + (size_t)m->header.tokenizer_bytes +
                      m->header.chat_template_bytes;
    size_t types_bytes = m->header.n_tensors ? model_layer_types_bytes(&m->header) : 0;
    if (types_bytes) {  // the layer types table, read before the layout that needs it
        if (types_bytes > have || types_at > have - types_bytes) {
            fprintf(stderr, "%s: %zu bytes, shorter than its header, tokenizer and layer types "
                    "(truncated?)\n", path, have);
            return MODEL_ERR_SIZE;
        }
        if (!(m->layer_types = malloc(types_bytes))) {
            fprintf(stderr, "%s: out of memory for %zu layer types\n", path, types_bytes);
            return MODEL_ERR_NOMEM;
        }
        if (!read_exact(fd, m->layer_types, types_bytes, (off_t)types_at)) {
            fprintf(stderr, "%s: cannot read the layer types: %s\n", path, strerror(errno));
            return MODEL_ERR_IO;
        }
    }
    if ((err = model_layout(&m->header, m->layer_types, &m->layout, path)) != MODEL_OK) return err;
    size_t want = m->layout.file_bytes;
    if (have != want) {  // validate before trusting a single byte past the header
        fprintf(stderr, "%s: %zu bytes, header implies %zu (%s)\n", path, have, want,
                have < want ? "truncated?" : "trailing bytes");
        return MODEL_ERR_SIZE;
    }
    if (need_weights && m->header.n_tensors == 0) {
        fprintf(stderr, "%s: holds a tokenizer only, no weights to run\n", path);
        return MODEL_ERR_NO_WEIGHTS;
    }

    void *map = mmap(NULL, have, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "%s: cannot map %zu bytes: %s\n", path, have, strerror(errno));
        return MODEL_ERR_IO;
    }
    m->map = map;
    m->map_bytes = have;
    const SlHeader *h = &m->header;
    err = tokenizer_parse(&m->tokenizer, m->map + SL_HEADER_BYTES, h->tokenizer_bytes,
                          SL_TOKENIZER_FORMAT(h->version), h->vocab_size, h->bos_id, h->eos_id, path);
    if (err == TOK_ERR_NOMEM) return MODEL_ERR_NOMEM;
    if (err != TOK_OK) return MODEL_ERR_TOKENIZER;
    if (h->chat_template_bytes) {
        m->chat_template = (const char *)m->map + SL_HEADER_BYTES + h->tokenizer_bytes;
        m->chat_template_bytes = h->chat_template_bytes;
    }
    if (h->n_tensors == 0) return MODEL_OK;

    Tensor v[SL_T_COUNT];
    for (int t = 0; t < SL_T_COUNT; t++) {
        const SlLayout *lay = &m->layout;
        const uint8_t *p = lay->bytes[t] ? m->map + lay->offset[t] : NULL;
        int type = h->tensor_type[t];
        v[t] = (Tensor){type, lay->rows[t], lay->cols[t], p, NULL, lay->layer_type[t]};
        if (p && type == SL_Q8_0)  // the scales follow the quants
            v[t].scales = (const uint16_t *)(p + lay->rows[t] * q8_groups(lay->cols[t]) * Q8_GROUP);
    }
    Weights *w = &m->w;
    w->token_embedding = v[SL_T_EMBED];
    w->rms_att = v[SL_T_RMS_ATT].data;
    w->wq = v[SL_T_WQ];
    w->wk = v[SL_T_WK];
    w->wv = v[SL_T_WV];
    w->wo = v[SL_T_WO];
    w->rms_ffn = v[SL_T_RMS_FFN].data;
    w->w1 = v[SL_T_W1];
    w->w2 = v[SL_T_W2];
    w->w3 = v[SL_T_W3];
    w->rms_final = v[SL_T_RMS_FINAL].data;
    w->wcls = (h->flags & SL_FLAG_SHARED_CLASSIFIER) ? w->token_embedding : v[SL_T_CLS];
    w->bqkv = v[SL_T_BQKV].data;
    w->qk_norm = v[SL_T_QK_NORM].data;
    w->rope_freqs = v[SL_T_ROPE_FREQS].data;
    w->post_norms = v[SL_T_POST_NORMS].data;
    if (w->rope_freqs)
        for (int i = 0; i < h->head_dim / 2; i++)
            if (!(isfinite(w->rope_freqs[i]) && w->rope_freqs[i] > 0)) {
                fprintf(stderr, "%s: RoPE divisor %d is %g, expected a finite value > 0\n", path,
                        i, (double)w->rope_freqs[i]);
                return MODEL_ERR_DIMS;
            }
    return MODEL_OK;
}

int model_open(Model *m, const char *path, int need_weights) {
    memset(m, 0, sizeof *m);
    size_t have;
    int fd = file_open_regular(path, "a model file", &have);
    if (fd < 0) return MODEL_ERR_IO;
    int err = open_checked(m, path, need_weights, fd, have);
    close(fd);  // the mapping stays valid without the descriptor
    if (err != MODEL_OK) model_close(m);
    return err;
}

void model_close(Model *m) {
    if (m->map) munmap((void *)m->map, m->map_bytes);
    tokenizer_free(&m->tokenizer);
    free(m->layer_types);
    memset(m, 0, sizeof *m);
}

int model_header_version(const SlHeader *h) {
    int blocks = 0;  // a block type (version 2) in a file with tensors
    for (int t = 0; t < SL_T_COUNT && h->n_tensors; t++)
        blocks |= dtype_ggml(h->tensor_type[t]) != 0 || h->tensor_type[t] == SL_TYPE_PER_LAYER;
    if (h->flags & (SL_FLAG_POST_NORMS | SL_FLAG_GELU) || h->embed_scale != 0 ||
        h->attn_scale != 0 || h->rope_local_theta != 0 || h->window_period != 0)
        return 3;
    return blocks || h->rope_scaling || h->n_stop || (h->flags & ~SL_FLAG_SHARED_CLASSIFIER) ||
                   h->sliding_window || h->chat_template_bytes || h->sampling_set
               ? 2
               : 1;
}

int model_set_sampling(SlHeader *h, uint32_t which, double v) {
    if (!isfinite(v)) return -1;
    switch (which) {
    case SL_SAMPLE_TEMPERATURE: if (!(v >= 0)) return -1; h->sample_temperature = (float)v; break;
    case SL_SAMPLE_TOP_P: if (!(v > 0 && v <= 1)) return -1; h->sample_top_p = (float)v; break;
    case SL_SAMPLE_MIN_P: if (!(v >= 0 && v <= 1)) return -1; h->sample_min_p = (float)v; break;
    case SL_SAMPLE_REPEAT_PENALTY: if (!(v > 0)) return -1; h->sample_repeat_penalty = (float)v; break;
    case SL_SAMPLE_TOP_K:
        if (!(v >= 0 && v < 2147483648.0) || v != (double)(int32_t)v) return -1;
        h->sample_top_k = (int32_t)v;
        break;
    default: return -1;
    }
    h->sampling_set |= which;
    return 0;
}

void model_sampling_text(const SlHeader *h, char *buf, size_t cap) {
    static const char *const names[5] = {"temperature", "top_p", "top_k", "min_p",
                                         "repeat_penalty"};
    const double v[5] = {h->sample_temperature, h->sample_top_p, h->sample_top_k,
                         h->sample_min_p, h->sample_repeat_penalty};
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < 5; i++) {
        if (!(h->sampling_set & (1u << i)) || n >= cap) continue;
        int w = snprintf(buf + n, cap - n, "%s%s %g", n ? ", " : "", names[i], v[i]);
        n += w > 0 ? (size_t)w : 0;
    }
}

int model_layer_windowed(const SlHeader *h, size_t l) {
    return h->sliding_window > 0 &&
           (h->window_period == 0 || (l + 1) % (size_t)h->window_period != 0);
}

int model_add_stop(SlHeader *h, int id) {
    if (model_is_stop(h, id)) return 0;
    if (h->n_stop >= SL_MAX_STOP) return -1;
    h->stop_ids[h->n_stop++] = id;
    return 0;
}

int model_is_stop(const SlHeader *h, int id) {
    if (id == h->bos_id || id == h->eos_id) return 1;
    for (uint32_t i = 0; i < h->n_stop && i < SL_MAX_STOP; i++)
        if (id == h->stop_ids[i]) return 1;
    return 0;
}

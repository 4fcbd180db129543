// llama2c.c: the llama2.c legacy checkpoint reader (see llama2c.h).
#define _POSIX_C_SOURCE 200809L
#include "convert/llama2c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/fileio.h"

#define CONFIG_BYTES 28

int llama2c_sniff(const uint8_t *head, size_t n) {
    if (n < CONFIG_BYTES) return 0;
    int32_t v[7];
    memcpy(v, head, sizeof v);
    for (int i = 0; i < 7; i++)
        if (i != 5 && (v[i] <= 0 || v[i] > (1 << 24))) return 0;
    return v[5] != 0 && v[5] > -(1 << 24) && v[5] < (1 << 24);
}

// Fills the header from the seven config ints, or prints why they are unusable.
static int read_config(SlHeader *h, const int32_t v[7], const char *path) {
    memset(h, 0, sizeof *h);
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        if (v[i] == 0 || (i != 5 && v[i] < 0) || v[i] == INT32_MIN) {
            fprintf(stderr, "%s: %s %d, expected %s\n", path, names[i], v[i],
                    i == 5 ? "a non-zero value" : "> 0");
            return -1;
        }
    }
    if (v[0] % v[3]) {
        fprintf(stderr, "%s: n_heads %d does not divide dim %d\n", path, v[3], v[0]);
        return -1;
    }
    h->dim = v[0];
    h->hidden_dim = v[1];
    h->n_layers = v[2];
    h->n_heads = v[3];
    h->n_kv_heads = v[4];
    h->vocab_size = v[5] < 0 ? -v[5] : v[5];
    h->seq_len = v[6];
    h->head_dim = v[0] / v[3];
    h->rope_theta = 10000.0f;  // llama2.c's fixed RoPE base and RMSNorm epsilon
    h->norm_eps = 1e-5f;
    h->flags = v[5] > 0 ? SL_FLAG_SHARED_CLASSIFIER : 0;
    h->weight_type = SL_F32;
    h->bos_id = 1;
    h->eos_id = 2;
    h->n_tensors = SL_T_COUNT;
    h->tokenizer_bytes = 8;  // placeholder so that model_layout can size the tensors
    return 0;
}

static int open_checked(Llama2c *c, const char *path, int fd, size_t have) {
    int32_t v[7];
    if (have < CONFIG_BYTES || pread(fd, v, CONFIG_BYTES, 0) != CONFIG_BYTES) {
        fprintf(stderr, "%s: %zu bytes, shorter than the %d-byte llama2.c header\n", path, have,
                CONFIG_BYTES);
        return -1;
    }
    if (read_config(&c->header, v, path) != 0) return -1;
    SlLayout lay;
    if (model_layout(&c->header, NULL, &lay, path) != MODEL_OK) return -1;
    // sizes in floats, in file order; the layout has validated that none overflows
    size_t freq = (size_t)c->header.seq_len * (size_t)c->header.head_dim;  // real + imag
    size_t want = CONFIG_BYTES, off[SL_T_COUNT] = {0};
    for (int t = 0; t < SL_T_COUNT; t++) {
        if (!lay.bytes[t]) continue;
        if (t == SL_T_CLS) want += freq * sizeof(float);
        off[t] = want;
        want += lay.bytes[t];
    }
    if (!lay.bytes[SL_T_CLS]) want += freq * sizeof(float);
    if (have != want) {
        fprintf(stderr, "%s: %zu bytes, its llama2.c header implies %zu (%s)\n", path, have, want,
                have < want ? "truncated?" : "trailing bytes");
        return -1;
    }
    c->map = mmap(NULL, have, PROT_READ, MAP_PRIVATE, fd, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        fprintf(stderr, "%s: cannot map: %s\n", path, strerror(errno));
        return -1;
    }
    c->map_bytes = have;
    for (int t = 0; t < SL_T_COUNT; t++)
        c->tensor[t] = lay.bytes[t] ? (const float *)((const char *)c->map + off[t]) : NULL;
    return 0;
}

int llama2c_open(Llama2c *c, const char *path) {
    memset(c, 0, sizeof *c);
    size_t have;
    int fd = file_open_regular(path, "a llama2.c checkpoint", &have);
    if (fd < 0) return -1;
    int err = open_checked(c, path, fd, have);
    close(fd);
    if (err) llama2c_close(c);
    return err;
}

void llama2c_close(Llama2c *c) {
    if (c->map) munmap(c->map, c->map_bytes);
    memset(c, 0, sizeof *c);
}

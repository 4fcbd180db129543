// export.c: converts a model into a searchlight model file.
//
// Contract: libc and POSIX only. Recognises its input by content, not by name. Today:
// a llama2.c legacy checkpoint with its tokenizer.bin. Every input's f32 tensors go through
// convert.c to the --dtype asked for, in bounded chunks. Writes atomically (writer.c),
// so a failed or interrupted export leaves no partial file. Usage errors exit 2, input
// and output errors exit 1.
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "llama2c.h"
#include "synth.h"
#include "writer.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: export [--dtype <type>] --tokenizer <tokenizer.bin> <llama2.c checkpoint> <out.bin>\n"
            "       export [--dtype <type>] --random <shape> [--seed N] <out.bin>\n"
            "Converts a llama2.c legacy (v0) fp32 checkpoint and its tokenizer.bin into one\n"
            "searchlight model file (tokenizer embedded), or writes a model of a known shape with\n"
            "deterministic pseudo-random weights, for benchmarks.\n"
            "Options:\n"
            "  --dtype <type>      type of the matrices, embedding and classifier included:\n"
            "                      " DTYPE_CHOICES " (default f32); norm weights stay f32\n"
            "  --tokenizer <path>  the llama2.c tokenizer.bin that goes with the checkpoint\n"
            "  --random <shape>    stories15M, stories42M, stories110M or tinyllama-1.1B\n"
            "  --seed <int>        seed of the random weights, default 1\n"
            "  -h, --help          this message\n");
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "export: %s%s\n", msg, arg);
    usage(stderr);
    return 2;
}

// Reads the first bytes of a file, to recognise its format.
static int sniff(const char *path, uint8_t *buf, size_t cap, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    *n = fread(buf, 1, cap, f);
    fclose(f);
    return 0;
}

static void print_summary(const char *in, const char *kind, const char *out, const SlHeader *c,
                          size_t bytes) {
    SlLayout lay;
    model_layout(c, &lay, out);  // already validated by the writer
    printf("%s: %s\n", in, kind);
    printf("  dim %d, hidden %d, layers %d, heads %d, kv heads %d, head_dim %d\n", c->dim,
           c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  vocab %d, context %d, rope_theta %g, norm_eps %g, %s classifier\n", c->vocab_size,
           c->seq_len, c->rope_theta, c->norm_eps,
           (c->flags & SL_FLAG_SHARED_CLASSIFIER) ? "shared" : "separate");
    printf("  %zu parameters, %s weights, f32 norms\n", layout_params(&lay),
           dtype_name((int)c->weight_type));
    printf("wrote %s: %zu bytes (%s)\n", out, bytes, dtype_name((int)c->weight_type));
}

// Writes header h (f32 tensor types) with tensors of type dtype converted from the f32 source.
static int write_converted(const char *in, const char *kind, const char *out, SlHeader h,
                           int dtype, const Tokenizer *tok, const TensorData *src) {
    convert_set_types(&h, dtype);
    Converter cv;
    if (converter_init(&cv, &h, src, in) != 0) return 1;
    TensorData td = {.fill = convert_fill, .ctx = &cv};
    size_t written = 0;
    int rc = model_write(out, h, tok, &td, &written) == 0 ? 0 : 1;
    converter_free(&cv);
    if (rc == 0) {
        h.tokenizer_bytes = (uint32_t)tokenizer_section_bytes(tok);
        print_summary(in, kind, out, &h, written);
    }
    return rc;
}

static int export_llama2c(const char *in, const char *tok_path, int dtype, const char *out) {
    Llama2c ck;
    if (llama2c_open(&ck, in) != 0) return 1;
    SlHeader h = ck.header;
    Tokenizer tok;
    if (tokenizer_read_bin(&tok, tok_path, h.vocab_size, h.bos_id, h.eos_id) != TOK_OK) {
        llama2c_close(&ck);
        return 1;
    }
    TensorData src = {0};
    for (int t = 0; t < SL_T_COUNT; t++) src.data[t] = ck.tensor[t];
    int rc = write_converted(in, "llama2.c checkpoint", out, h, dtype, &tok, &src);
    tokenizer_free(&tok);
    llama2c_close(&ck);
    return rc;
}

static int export_random(const char *shape, uint64_t seed, int dtype, const char *out) {
    SlHeader h;
    if (synth_header(&h, shape) != 0) return 2;
    Tokenizer tok;
    if (synth_tokenizer(&tok, h.vocab_size) != TOK_OK) return 1;
    h.tokenizer_bytes = (uint32_t)tokenizer_section_bytes(&tok);
    SynthCtx ctx = {.seed = seed};
    model_layout(&h, &ctx.layout, out);  // a known shape: valid
    TensorData src = {.fill = synth_fill, .ctx = &ctx};
    int rc = write_converted(shape, "random weights", out, h, dtype, &tok, &src);
    tokenizer_free(&tok);
    return rc;
}

static int parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '-' || end == s || *end != '\0' || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *tok_path = NULL, *shape = NULL, *pos[2] = {NULL, NULL};
    uint64_t seed = 1;
    int npos = 0, dtype = SL_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc) return usage_error("--tokenizer needs a value", "");
            tok_path = argv[++i];
        } else if (!strcmp(a, "--random")) {
            if (i + 1 >= argc) return usage_error("--random needs a shape", "");
            shape = argv[++i];
        } else if (!strcmp(a, "--dtype")) {
            if (i + 1 >= argc) return usage_error("--dtype needs a value: ", DTYPE_CHOICES);
            if ((dtype = dtype_parse(argv[++i])) < 0)
                return usage_error("--dtype: expected " DTYPE_CHOICES ", not ", argv[i]);
        } else if (!strcmp(a, "--seed")) {
            if (i + 1 >= argc) return usage_error("--seed needs a value", "");
            if (parse_seed(argv[++i], &seed) != 0)
                return usage_error("--seed: not a non-negative integer: ", argv[i]);
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option ", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return usage_error("unexpected argument ", a);
        }
    }
    if (shape) {
        if (npos != 1) return usage_error("--random needs exactly one output path", "");
        if (tok_path) return usage_error("--random makes its own tokenizer: drop --tokenizer", "");
        writer_install_cleanup();
        int rc = export_random(shape, seed, dtype, pos[0]);
        if (rc == 2) usage(stderr);
        return rc;
    }
    if (npos < 2) return usage_error("needs an input and an output path", "");
    writer_install_cleanup();

    uint8_t head[64];
    size_t n;
    if (sniff(pos[0], head, sizeof head, &n) != 0) return 1;
    if (llama2c_sniff(head, n)) {
        if (!tok_path)
            return usage_error("a llama2.c checkpoint needs --tokenizer <tokenizer.bin>", "");
        return export_llama2c(pos[0], tok_path, dtype, pos[1]);
    }
    fprintf(stderr, "%s: not a format export reads (expected a llama2.c checkpoint)\n", pos[0]);
    return 1;
}

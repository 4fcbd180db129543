// export.c: converts a model into a searchlight model file.
//
// Contract: libc and POSIX only. Recognises its input by content, not by name. Today:
// a llama2.c legacy checkpoint with its tokenizer.bin; a GGUF of architecture llama, qwen2,
// qwen3, phi3 or gemma3 (magic "GGUF", gguf.c); a Hugging Face directory of LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma3ForCausalLM
// or Gemma3ForConditionalGeneration's text model (config.json, safetensors, tokenizer.json;
// hf.c).
// Every input's f32 tensors go through convert.c to the --dtype asked for (for GGUF, by
// default each matrix's own type), in bounded chunks. Writes atomically (writer.c),
// so a failed or interrupted export leaves no partial file. Usage errors exit 2, input
// and output errors exit 1.
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/template.h"
#include "convert/convert.h"
#include "convert/gguf.h"
#include "convert/hf.h"
#include "convert/llama2c.h"
#include "io/fileio.h"
#include "convert/synth.h"
#include "convert/writer.h"
#include "tokenizer/pretok.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: export [--dtype <type>] --tokenizer <tokenizer.bin> <llama2.c checkpoint> <out.bin>\n"
            "       export [--dtype <type>] <model.gguf> <out.bin>\n"
            "       export [--dtype <type>] <hugging-face-model-dir> <out.bin>\n"
            "       export [--dtype <type>] --random <shape> [--seed N] <out.bin>\n"
            "Converts a llama2.c legacy (v0) fp32 checkpoint and its tokenizer.bin into one\n"
            "searchlight model file (tokenizer embedded), or a GGUF of architecture llama, qwen2,\n"
            "qwen3, phi3 or gemma3 (v2/v3; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL,\n"
            "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS kept as they are; default --dtype: the GGUF's\n"
            "own types), or a Hugging Face directory of Llama, Mistral, Qwen2, Qwen3, Phi3 or\n"
            "Gemma3 ...ForCausalLM (or Gemma3ForConditionalGeneration: its text model)\n"
            "(safetensors F32/F16/BF16, tokenizer.json), or writes a model of a known shape with\n"
            "deterministic pseudo-random weights, for benchmarks.\n"
            "Options:\n"
            "  --dtype <type>      type of the matrices, embedding and classifier included:\n"
            "                      " DTYPE_CHOICES " (default f32); norm weights stay f32.\n"
            "                      The block types need rows of whole blocks (32 for q4_0,\n"
            "                      q4_1, q5_0, q5_1, iq4_nl; 256 for the K types and iq4_xs),\n"
            "                      else q8_0; q4_k_m: q4_k, with q6_k for the\n"
            "                      classifier and some layers' wv and w2 (llama.cpp's Q4_K_M)\n"
            "  --tokenizer <path>  the llama2.c tokenizer.bin that goes with the checkpoint\n"
            "  --random <shape>    stories15M, stories42M, stories110M, tinyllama-1.1B,\n"
            "                      llama3.2-1B, qwen2.5-0.5B or qwen3-0.6B\n"
            "  --seed <int>        seed of the random weights, default 1\n"
            "  --sliding-window N  GGUF: attend to the last N positions only (0: all); for\n"
            "                      Mistral v0.1 (4096), whose window llama.cpp's converter drops\n"
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

// One line naming the type of each matrix, when they are not all weight_type: for example
// "  types: q4_k (token_embedding, wq, ...), q6_k (classifier), by layer q4_k/q6_k (wv, w2)".
static void print_types(const SlHeader *c, const SlLayout *lay) {
    int differ = 0;
    for (int t = 0; t < SL_T_COUNT; t++)
        differ |= lay->bytes[t] && !tensor_is_f32(t) && c->tensor_type[t] != c->weight_type;
    if (!differ) return;
    printf("  types:");
    const char *sep = " ";
    for (int ty = 0; ty <= SL_TYPE_PER_LAYER; ty++) {
        int first = 1;
        for (int t = 0; t < SL_T_COUNT; t++) {
            if (!lay->bytes[t] || tensor_is_f32(t) || c->tensor_type[t] != ty) continue;
            if (first && ty == SL_TYPE_PER_LAYER) {  // the types its layers use
                printf("%sby layer ", sep);
                const char *slash = "";
                for (int d = 0; d < SL_DTYPE_COUNT; d++) {
                    int used = 0;
                    for (int u = 0; u < SL_T_COUNT; u++)
                        for (int l = 0; lay->layer_type[u] && l < c->n_layers; l++)
                            used |= lay->layer_type[u][l] == d;
                    if (used) printf("%s%s", slash, dtype_name(d)), slash = "/";
                }
                printf(" (");
            } else if (first) {
                printf("%s%s (", sep, dtype_name(ty));
            }
            printf("%s%s", first ? "" : ", ", tensor_name(t));
            first = 0;
        }
        if (!first) printf(")"), sep = ", ";
    }
    putchar('\n');
}

// What run -m chat will do with the model's chat template.
static void print_chat_template(const char *text, size_t len) {
    if (!len) {
        printf("  no chat template (run -m chat needs --chat-template NAME)\n");
        return;
    }
    int kind = template_detect(text, len, NULL, 0);
    if (kind >= 0)
        printf("  chat template: %s (%zu bytes)\n", template_name(kind), len);
    else
        printf("  chat template of %zu bytes, not one run recognises (run -m chat needs "
               "--chat-template NAME: " TPL_NAMES ")\n", len);
}

static void print_summary(const char *in, const char *kind, const char *out, const SlHeader *c,
                          const uint8_t *layer_types, const Tokenizer *tok, size_t bytes) {
    SlLayout lay;
    model_layout(c, layer_types, &lay, out);  // already validated by the writer
    printf("%s: %s\n", in, kind);
    printf("  dim %d, hidden %d, layers %d, heads %d, kv heads %d, head_dim %d\n", c->dim,
           c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  vocab %d, context %d, rope_theta %g, norm_eps %g, %s classifier\n", c->vocab_size,
           c->seq_len, c->rope_theta, c->norm_eps,
           (c->flags & SL_FLAG_SHARED_CLASSIFIER) ? "shared" : "separate");
    if (c->rope_scaling == SL_ROPE_LINEAR) printf("  RoPE scaling linear, factor %g\n", c->rope_factor);
    if (c->rope_scaling == SL_ROPE_LLAMA3)
        printf("  RoPE scaling llama3: factor %g, low_freq_factor %g, high_freq_factor %g, "
               "original context %d\n", c->rope_factor, c->rope_low_freq, c->rope_high_freq,
               c->rope_orig_ctx);
    // what the architecture adds to Llama's, and the tokenizer
    printf("  features:%s%s%s", c->flags & SL_FLAG_QKV_BIAS ? " q/k/v biases," : "",
           c->flags & SL_FLAG_QK_NORM ? " q/k RMSNorm," : "",
           c->rope_scaling == SL_ROPE_FREQS ? " RoPE frequency divisors (rope_freqs)," : "");
    if (c->sliding_window && c->window_period)
        printf(" sliding window %d, but every %dth layer global (windowed ones: RoPE base %g),",
               c->sliding_window, c->window_period, c->rope_local_theta);
    else if (c->sliding_window)
        printf(" sliding window %d,", c->sliding_window);
    if (c->flags & SL_FLAG_POST_NORMS) printf(" norms after attention and feed-forward,");
    if (c->flags & SL_FLAG_GELU) printf(" GeGLU (gelu tanh),");
    if (c->embed_scale > 0) printf(" embedding times %g,", c->embed_scale);
    if (c->attn_scale > 0) printf(" attention scale %g,", c->attn_scale);
    if (tok->kind == TOK_BPE)
        printf(" byte-level BPE tokenizer (pre-tokenizer %s)", pretok_name(tok->pretok));
    else
        printf(" sentencepiece-style tokenizer%s",
               tok->flags & TOK_FLAG_PREFIX_NEVER ? " (no dummy prefix)" : "");
    printf(", %s\n", c->flags & SL_FLAG_NO_BOS ? "no BOS" : "BOS first");
    if (c->n_stop) {
        printf("  generation also stops at");
        for (uint32_t i = 0; i < c->n_stop; i++) printf(" %d", c->stop_ids[i]);
        putchar('\n');
    }
    if (c->sampling_set) {
        char samp[160];
        model_sampling_text(c, samp, sizeof samp);
        printf("  recommended sampling: %s\n", samp);
    }
    printf("  %zu parameters, %s weights, f32 norms\n", layout_params(&lay),
           dtype_name((int)c->weight_type));
    print_types(c, &lay);
    printf("wrote %s: %zu bytes (%s)\n", out, bytes, dtype_name((int)c->weight_type));
}

// Writes header h with tensors of type dtype converted from the f32 source; dtype -1 keeps
// the tensor types that h already states. kind names the input's format and architecture.
static int write_converted(const char *in, const char *kind, const char *out, SlHeader h,
                           int dtype, const Tokenizer *tok, const TensorData *src) {
    TensorData from = *src;  // with --dtype, every value is converted from f32
    uint8_t *types = NULL;
    if (dtype >= 0) {
        types = malloc(7 * (size_t)(h.n_layers > 0 ? h.n_layers : 1));
        if (!types || convert_set_types(&h, dtype, types, in) != 0) {
            if (!types) fprintf(stderr, "%s: out of memory\n", in);
            free(types);
            return 1;
        }
        from.raw = NULL, from.layer_types = types;
    }
    Converter cv;
    if (converter_init(&cv, &h, &from, in) != 0) {
        free(types);
        return 1;
    }
    TensorData td = {.fill = convert_fill, .ctx = &cv, .layer_types = from.layer_types,
                     .chat_template = from.chat_template};
    size_t written = 0;
    int rc = model_write(out, h, tok, &td, &written) == 0 ? 0 : 1;
    converter_free(&cv);
    if (rc == 0) {
        h.tokenizer_bytes = (uint32_t)tokenizer_section_bytes(tok, SL_TOKENIZER_FORMAT(model_version(&h, tok)));
        print_summary(in, kind, out, &h, td.layer_types, tok, written);
        print_chat_template(td.chat_template, h.chat_template_bytes);
    }
    free(types);
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

// dtype -1: each matrix keeps its GGUF type (F32, F16, BF16, Q8_0, and the blocks of Q4_0, Q4_1,
// Q5_0, Q5_1, IQ4_NL, Q2_K .. Q6_K and IQ4_XS, by layer where they differ), so nothing is lost;
// a matrix whose GGUF pieces differ otherwise (a fused q, k, v of several types) becomes q8_0.
// window >= 0 sets the sliding window, which llama.cpp's converter drops for Mistral.
static int export_gguf(const char *in, int dtype, long window, const char *out) {
    GgufModel g;
    if (gguf_model_open(&g, in) != 0) return 1;
    int rc;
    if (g.header.n_tensors == 0) {  // vocabulary only: a tokenizer-only file
        TensorData none = {.chat_template = g.chat_template.p};
        size_t written = 0;
        rc = model_write(out, g.header, &g.tok, &none, &written) == 0 ? 0 : 1;
        if (rc == 0) {
            printf("%s: GGUF vocabulary only\n  vocab %d, bos %d, eos %d\n", in,
                   g.tok.vocab_size, g.tok.bos_id, g.tok.eos_id);
            printf("wrote %s: %zu bytes (tokenizer only)\n", out, written);
        }
    } else {
        TensorData src = {.fill = gguf_model_fill, .raw = gguf_model_raw, .ctx = &g,
                          .layer_types = g.layer_types, .chat_template = g.chat_template.p};
        if (window >= 0) g.header.sliding_window = (int32_t)window;
        char kind[64];
        snprintf(kind, sizeof kind, "GGUF %s", gguf_arch_name(&g));
        rc = write_converted(in, kind, out, g.header, dtype, &g.tok, &src);
    }
    gguf_model_close(&g);
    return rc;
}

// A Hugging Face directory: config.json, safetensors, tokenizer.json.
static int export_hf(const char *in, int dtype, const char *out) {
    HfModel m;
    if (hf_open(&m, in) != 0) return 1;
    char *chat;
    size_t chat_len;
    if (hf_chat_template(in, &chat, &chat_len) != 0) {
        hf_close(&m);
        return 1;
    }
    m.header.chat_template_bytes = (uint32_t)chat_len;
    Tokenizer tok;
    int adds_bos;
    if (hf_tokenizer(&tok, in, m.header.vocab_size, m.header.bos_id, m.header.eos_id,
                     &adds_bos) != 0) {
        free(chat);
        hf_close(&m);
        return 1;
    }
    if (!adds_bos) m.header.flags |= SL_FLAG_NO_BOS;  // Qwen, SmolLM: prompts start without BOS
    TensorData src = {.fill = hf_fill, .ctx = &m, .chat_template = chat};
    char kind[64];
    snprintf(kind, sizeof kind, "Hugging Face %s", hf_family_name(m.family));
    int rc = write_converted(in, kind, out, m.header, dtype, &tok, &src);
    free(chat);
    tokenizer_free(&tok);
    hf_close(&m);
    return rc;
}

static int export_random(const char *shape, uint64_t seed, int dtype, const char *out) {
    SlHeader h;
    if (synth_header(&h, shape) != 0) return 2;
    Tokenizer tok;
    if (synth_tokenizer(&tok, h.vocab_size) != TOK_OK) return 1;
    h.tokenizer_bytes = (uint32_t)tokenizer_section_bytes(&tok, SL_TOKENIZER_FORMAT(model_version(&h, &tok)));
    SynthCtx ctx = {.seed = seed};
    model_layout(&h, NULL, &ctx.layout, out);  // a known shape: valid
    TensorData src = {.fill = synth_fill, .ctx = &ctx};
    int rc = write_converted(shape, "random weights", out, h, dtype, &tok, &src);
    tokenizer_free(&tok);
    return rc;
}

static int parse_window(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < 0 || v > INT32_MAX) return -1;
    *out = v;
    return 0;
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
    int npos = 0, dtype = SL_F32, dtype_set = 0;
    long window = -1;
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
            dtype_set = 1;
        } else if (!strcmp(a, "--sliding-window")) {
            if (i + 1 >= argc) return usage_error("--sliding-window needs a value", "");
            if (parse_window(argv[++i], &window) != 0)
                return usage_error("--sliding-window: expected an integer 0..2147483647, not ",
                                   argv[i]);
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
    if (window >= 0 && shape) return usage_error("--sliding-window is for GGUF input", "");
    if (shape) {
        if (npos != 1) return usage_error("--random needs exactly one output path", "");
        if (tok_path) return usage_error("--random makes its own tokenizer: drop --tokenizer", "");
        outfile_install_cleanup();
        int rc = export_random(shape, seed, dtype, pos[0]);
        if (rc == 2) usage(stderr);
        return rc;
    }
    if (npos < 2) return usage_error("needs an input and an output path", "");
    outfile_install_cleanup();

    if (hf_sniff(pos[0])) {
        if (tok_path) return usage_error("a Hugging Face directory has tokenizer.json: drop --tokenizer", "");
        if (window >= 0)
            return usage_error("config.json gives the sliding window: drop --sliding-window", "");
        return export_hf(pos[0], dtype, pos[1]);
    }
    struct stat st;
    if (stat(pos[0], &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: a directory without config.json (not a Hugging Face model)\n", pos[0]);
        return 1;
    }
    uint8_t head[64];
    size_t n;
    if (sniff(pos[0], head, sizeof head, &n) != 0) return 1;
    if (gguf_sniff(head, n)) {
        if (tok_path)
            return usage_error("a GGUF file carries its own vocabulary: drop --tokenizer", "");
        return export_gguf(pos[0], dtype_set ? dtype : -1, window, pos[1]);
    }
    if (window >= 0) return usage_error("--sliding-window is for GGUF input", "");
    if (llama2c_sniff(head, n)) {
        if (!tok_path)
            return usage_error("a llama2.c checkpoint needs --tokenizer <tokenizer.bin>", "");
        return export_llama2c(pos[0], tok_path, dtype, pos[1]);
    }
    fprintf(stderr, "%s: not a format export reads (expected a llama2.c checkpoint, a GGUF file or a Hugging Face directory with config.json)\n", pos[0]);
    return 1;
}

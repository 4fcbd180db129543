// hf.c: the Hugging Face checkpoint reader (see hf.h).
#define _POSIX_C_SOURCE 200809L
#include "convert/hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fileio.h"
#include "io/json.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/pretok.h"

#define CONFIG_MAX (1u << 20)
#define TOKENIZER_MAX (64u << 20)

int hf_sniff(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(p, &st) == 0;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Reads and parses a JSON file; -1 after a message.
static int load_json(const char *path, size_t max, JsonValue *root) {
    char *buf;
    size_t n;
    if (file_read(path, max, &buf, &n) != 0) return -1;
    JsonError err;
    int rc = json_parse(buf, n, root, &err);
    free(buf);
    if (rc != 0) fprintf(stderr, "%s: bad JSON at byte %zu: %s\n", path, err.offset, err.msg);
    return rc;
}

// An integer member of config.json in [lo, hi]; absent: dflt (or an error if dflt < lo).
static int cfg_int(const JsonValue *cfg, const char *key, long long lo, long long hi,
                   long long dflt, long long *out, const char *path) {
    const JsonValue *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) {
        if (dflt < lo) {
            fprintf(stderr, "%s: no \"%s\"\n", path, key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (v->type == JSON_ARRAY && v->n > 0 && !strcmp(key, "eos_token_id")) v = &v->items[0];
    if (!json_int(v, lo, hi, out)) {
        fprintf(stderr, "%s: \"%s\" (byte %zu) must be an integer in [%lld, %lld]\n", path, key,
                v->offset, lo, hi);
        return -1;
    }
    return 0;
}

static int cfg_num(const JsonValue *v, double *out) {
    if (!v || v->type != JSON_NUMBER) return 0;
    *out = v->num;
    return 1;
}

// The ids of "eos_token_id" in obj (an integer or a list of them): each that is not already
// eos_id or a stop id joins the header's stop ids. Returns 0, or -1 after a message.
static int read_stops(SlHeader *h, const JsonValue *obj, const char *path) {
    const JsonValue *v = json_get(obj, "eos_token_id");
    if (!v || v->type == JSON_NULL) return 0;
    size_t n = v->type == JSON_ARRAY ? v->n : 1;
    for (size_t i = 0; i < n; i++) {
        const JsonValue *e = v->type == JSON_ARRAY ? &v->items[i] : v;
        long long id;
        if (!json_int(e, 0, (long long)h->vocab_size - 1, &id)) {
            fprintf(stderr, "%s: \"eos_token_id\" (byte %zu) must be an id below vocab_size %d, "
                    "or a list of them\n", path, e->offset, h->vocab_size);
            return -1;
        }
        if (model_add_stop(h, (int)id) != 0) {
            fprintf(stderr, "%s: more than %d end-of-generation ids\n", path, SL_MAX_STOP + 1);
            return -1;
        }
    }
    return 0;
}

static const char *const hf_families[HF_FAMILY_COUNT] = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "Phi3ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
};

const char *hf_family_name(int family) {
    return family >= 0 && family < HF_FAMILY_COUNT ? hf_families[family] : "unknown";
}

// Gemma 3's layer kinds into h: layer_types (transformers 5; and 4.5x), else
// sliding_window_pattern (older files; default 6): which layers are windowed must follow a
// period (layer l global when (l + 1) % period == 0), as every Gemma 3's does.
static int gemma_layers(SlHeader *h, const JsonValue *cfg, long long layers, const char *path) {
    const JsonValue *lt = json_get(cfg, "layer_types");
    long long period = 6;
    if (lt && lt->type == JSON_ARRAY) {
        if ((long long)lt->n != layers) {
            fprintf(stderr, "%s: layer_types has %zu entries for %lld layers\n", path, lt->n, layers);
            return -1;
        }
        period = 0;  // the first global layer gives the period; none: every layer windowed
        for (size_t i = 0; i < lt->n && !period; i++)
            if (json_is_str(&lt->items[i], "full_attention")) period = (long long)i + 1;
        for (size_t i = 0; i < lt->n; i++) {
            int full = period && (long long)(i + 1) % period == 0;
            if (!json_is_str(&lt->items[i], full ? "full_attention" : "sliding_attention")) {
                fprintf(stderr, "%s: layer_types (byte %zu) do not repeat a sliding-window "
                        "pattern (every Nth layer full_attention); export reads those that do\n",
                        path, lt->offset);
                return -1;
            }
        }
    } else {
        const JsonValue *p = json_get(cfg, "sliding_window_pattern");
        if (!p) p = json_get(cfg, "_sliding_window_pattern");
        if (p && !json_int(p, 1, 1 << 20, &period)) {
            fprintf(stderr, "%s: sliding_window_pattern (byte %zu) must be a positive integer\n",
                    path, p->offset);
            return -1;
        }
    }
    if (period == 1) h->sliding_window = 0;  // every layer global
    else if (period > layers) period = 0;    // every layer windowed
    h->window_period = (int32_t)(period == 1 ? 0 : period);
    return 0;
}

// Gemma 3's RoPE: the global layers' base and scaling in rope_parameters.full_attention
// (transformers 5) or rope_theta and rope_scaling (the generic code reads those), the windowed
// layers' base in rope_parameters.sliding_attention (unscaled) or rope_local_base_freq
// (default 10000). *rp becomes full_attention's object, for the generic code.
static int gemma_rope(SlHeader *h, const JsonValue *cfg, const JsonValue **rp, const char *path) {
    const JsonValue *full = json_get(*rp, "full_attention");
    const JsonValue *slide = json_get(*rp, "sliding_attention");
    double local = 10000.0;
    if (full) *rp = full;
    const JsonValue *lt = slide ? json_get(slide, "rope_theta") : json_get(cfg, "rope_local_base_freq");
    const JsonValue *ty = json_get(slide, "rope_type");
    if (ty && !json_is_str(ty, "default")) {
        fprintf(stderr, "%s: rope_parameters.sliding_attention has rope_type %.32s; export reads "
                "default (unscaled) RoPE on the sliding-window layers\n", path,
                ty->type == JSON_STRING ? ty->str : json_type_name(ty->type));
        return -1;
    }
    if (lt && !(cfg_num(lt, &local) && local > 0 && local < 1e30)) {
        fprintf(stderr, "%s: the sliding-window layers' rope_theta (byte %zu) must be a positive "
                "number\n", path, lt->offset);
        return -1;
    }
    if (h->window_period) h->rope_local_theta = (float)local;
    return 0;
}

// config.json into h, and the family it names.
// The recommended sampling of generation_config.json, as llama.cpp's converter takes it
// (gguf-py's Metadata: whether or not do_sample is set); null or absent values are not set.
static int read_sampling(SlHeader *h, const JsonValue *gen, const char *path) {
    static const struct { const char *key; uint32_t bit; } keys[] = {
        {"temperature", SL_SAMPLE_TEMPERATURE}, {"top_p", SL_SAMPLE_TOP_P},
        {"top_k", SL_SAMPLE_TOP_K}, {"min_p", SL_SAMPLE_MIN_P},
        {"repetition_penalty", SL_SAMPLE_REPEAT_PENALTY}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const JsonValue *v = json_get(gen, keys[i].key);
        double x;
        if (!v || v->type == JSON_NULL) continue;
        if (!cfg_num(v, &x) || model_set_sampling(h, keys[i].bit, x) != 0) {
            fprintf(stderr, "%s: \"%s\" (byte %zu) is not a number in its range\n", path,
                    keys[i].key, v->offset);
            return -1;
        }
    }
    return 0;
}

static int read_config(SlHeader *h, int *family, const char *dir) {
    char *path = join(dir, "config.json");
    if (!path) return -1;
    JsonValue root;
    int rc = -1;
    if (load_json(path, CONFIG_MAX, &root) != 0) {
        free(path);
        return -1;
    }
    const JsonValue *cfg = &root;  // the text model's config: text_config in a multimodal one
    memset(h, 0, sizeof *h);
    if (cfg->type != JSON_OBJECT) {
        fprintf(stderr, "%s: expected an object, found %s\n", path, json_type_name(cfg->type));
        goto done;
    }
    const JsonValue *arch = json_get(&root, "architectures");
    int fam = -1;
    for (size_t i = 0; arch && arch->type == JSON_ARRAY && i < arch->n && fam < 0; i++)
        for (int f = 0; f < HF_FAMILY_COUNT && fam < 0; f++)
            if (json_is_str(&arch->items[i], hf_families[f])) fam = f;
    if (fam < 0) {
        const JsonValue *a0 = arch && arch->type == JSON_ARRAY && arch->n ? &arch->items[0] : NULL;
        fprintf(stderr, "%s: architectures %s%.64s%s; export reads LlamaForCausalLM, "
                "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
                "Gemma3ForCausalLM and Gemma3ForConditionalGeneration\n",
                path, a0 && a0->type == JSON_STRING ? "\"" : "",
                a0 && a0->type == JSON_STRING ? a0->str : arch ? "without a name" : "missing",
                a0 && a0->type == JSON_STRING ? "\"" : "");
        goto done;
    }
    *family = fam;
    int gemma = fam == HF_GEMMA3 || fam == HF_GEMMA3_MM;
    if (fam == HF_GEMMA3_MM) {
        cfg = json_get(&root, "text_config");
        if (!cfg || cfg->type != JSON_OBJECT) {
            fprintf(stderr, "%s: Gemma3ForConditionalGeneration without a text_config object\n",
                    path);
            goto done;
        }
    }
    // the activation: silu (SwiGLU), or Gemma's gelu_pytorch_tanh (GeGLU), its default
    const JsonValue *act = json_get(cfg, gemma ? "hidden_activation" : "hidden_act");
    if (gemma && !act) act = json_get(cfg, "hidden_act");
    if (act && !json_is_str(act, gemma ? "gelu_pytorch_tanh" : "silu")) {
        fprintf(stderr, "%s: hidden_act %.32s; export reads %s\n", path,
                act->type == JSON_STRING ? act->str : json_type_name(act->type),
                gemma ? "gelu_pytorch_tanh (GeGLU) for Gemma" : "silu (SwiGLU)");
        goto done;
    }
    static const char *const gemma_no[] = {"attn_logit_softcapping", "final_logit_softcapping",
                                           "use_bidirectional_attention"};
    for (int i = 0; gemma && i < 3; i++) {
        const JsonValue *v = json_get(cfg, gemma_no[i]);
        if (v && v->type != JSON_NULL && v->type != JSON_FALSE) {
            fprintf(stderr, "%s: %s is set; export reads Gemma 3 models without it\n", path,
                    gemma_no[i]);
            goto done;
        }
    }
    // Qwen2 always has q, k and v biases (and none on o); elsewhere attention_bias would put
    // one on o_proj too, which the format does not hold
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        const JsonValue *b = json_get(cfg, biases[i]);
        if (b && b->type == JSON_TRUE) {
            fprintf(stderr, "%s: %s is true; export reads models without biases (but Qwen2's "
                    "q, k and v biases)\n", path, biases[i]);
            goto done;
        }
    }
    const JsonValue *prf = json_get(cfg, "partial_rotary_factor");
    if (!prf) prf = json_get(json_get(cfg, "rope_parameters"), "partial_rotary_factor");
    if (prf && !(prf->type == JSON_NUMBER && prf->num == 1.0)) {
        fprintf(stderr, "%s: partial_rotary_factor is not 1; export reads models that rotate "
                "every element of a head\n", path);
        goto done;
    }
    // the window: Mistral's and Phi-3's sliding_window; Qwen's only with use_sliding_window,
    // which applies it to some layers only, so it is refused
    long long window = 0;
    const JsonValue *usw = json_get(cfg, "use_sliding_window");
    if (fam == HF_QWEN2 || fam == HF_QWEN3) {
        if (usw && usw->type == JSON_TRUE) {
            fprintf(stderr, "%s: use_sliding_window is true; export reads Qwen models whose every "
                    "layer attends to the whole context\n", path);
            goto done;
        }
    } else if (cfg_int(cfg, "sliding_window", 0, INT32_MAX, gemma ? 4096 : 0, &window, path)) {
        goto done;
    }
    const JsonValue *lt = json_get(cfg, "layer_types");
    for (size_t i = 0; !gemma && lt && lt->type == JSON_ARRAY && i < lt->n; i++)
        if (!json_is_str(&lt->items[i], window ? "sliding_attention" : "full_attention")) {
            fprintf(stderr, "%s: layer_types mixes kinds of attention; export reads models "
                    "whose layers all attend alike\n", path);
            goto done;
        }
    long long dim, hidden, layers, heads, kv, ctx, vocab, bos, eos, hd;
    const long long big = 1LL << 24;
    if (cfg_int(cfg, "hidden_size", 1, big, -1, &dim, path) ||
        cfg_int(cfg, "intermediate_size", 1, big, -1, &hidden, path) ||
        cfg_int(cfg, "num_hidden_layers", 1, 4096, -1, &layers, path) ||
        // Gemma 3's defaults (Gemma3TextConfig's) where its files leave them out (gemma-3-4b's
        // text_config does)
        cfg_int(cfg, "num_attention_heads", 1, 4096, gemma ? 8 : -1, &heads, path) ||
        cfg_int(cfg, "num_key_value_heads", 1, 4096, gemma ? 4 : heads, &kv, path) ||
        cfg_int(cfg, "max_position_embeddings", 1, big, gemma ? 131072 : -1, &ctx, path) ||
        cfg_int(cfg, "vocab_size", 1, big, gemma ? 262208 : -1, &vocab, path) ||
        cfg_int(cfg, "bos_token_id", -1, vocab - 1, gemma ? 2 : 1, &bos, path) ||
        cfg_int(cfg, "eos_token_id", -1, vocab - 1, gemma ? 1 : 2 < vocab ? 2 : -1, &eos, path))
        goto done;
    if ((!gemma && dim % heads) || heads % kv) {
        fprintf(stderr, "%s: num_attention_heads %lld must divide hidden_size %lld, and "
                "num_key_value_heads %lld must divide it\n", path, heads, dim, kv);
        goto done;
    }
    if (cfg_int(cfg, "head_dim", 1, big, gemma ? 256 : dim / heads, &hd, path)) goto done;
    if (hd % 2) {  // head_dim may differ from hidden_size / num_attention_heads (Qwen3)
        fprintf(stderr, "%s: head_dim %lld, expected an even number (RoPE rotates pairs)\n",
                path, hd);
        goto done;
    }
    // rope: rope_theta at the top (transformers 4) or in rope_parameters (transformers 5); Gemma
    // 3's per layer kind (gemma_rope)
    double theta = gemma ? 1000000.0 : 10000.0, eps = gemma ? 1e-6 : 0;
    const JsonValue *rp = json_get(cfg, "rope_parameters"), *rs = json_get(cfg, "rope_scaling");
    h->sliding_window = (int32_t)window;
    if (gemma && (gemma_layers(h, cfg, layers, path) || gemma_rope(h, cfg, &rp, path)))
        goto done;
    const JsonValue *th = json_get(cfg, "rope_theta");
    if (!th) th = json_get(rp, "rope_theta");
    if (th && !cfg_num(th, &theta)) theta = -1;
    if (!(theta > 0 && theta < 1e30)) {
        fprintf(stderr, "%s: rope_theta must be a positive number\n", path);
        goto done;
    }
    // RoPE scaling, in rope_scaling (transformers 4) or rope_parameters (transformers 5):
    // linear and llama3 are applied to the frequencies; any other is refused
    uint32_t scaling = SL_ROPE_NONE;
    double factor = 0, low = 0, high = 0, orig = 0;
    for (int i = 0; i < 2; i++) {
        const JsonValue *r = i ? rs : rp, *type = json_get(r, "rope_type");
        if (!type) type = json_get(r, "type");
        if (!r || r->type == JSON_NULL || !type || json_is_str(type, "default")) continue;
        const char *what = i ? "rope_scaling" : "rope_parameters";
        int linear = json_is_str(type, "linear"), llama3 = json_is_str(type, "llama3");
        if (!linear && !llama3) {
            fprintf(stderr, "%s: %s of type %.32s; export reads linear and llama3 RoPE scaling\n",
                    path, what, type->type == JSON_STRING ? type->str : json_type_name(type->type));
            goto done;
        }
        if (!cfg_num(json_get(r, "factor"), &factor) ||
            (llama3 && (!cfg_num(json_get(r, "low_freq_factor"), &low) ||
                        !cfg_num(json_get(r, "high_freq_factor"), &high) ||
                        !cfg_num(json_get(r, "original_max_position_embeddings"), &orig) ||
                        !(factor >= 1 && low > 0 && high > low && orig >= 1 && orig < 1e9)))) {
            fprintf(stderr, "%s: %s %s needs %s\n", path, what, linear ? "linear" : "llama3",
                    linear ? "a factor > 0" : "factor >= 1, 0 < low_freq_factor < "
                    "high_freq_factor and original_max_position_embeddings >= 1");
            goto done;
        }
        if (!(factor > 0 && factor < 1e9)) {
            fprintf(stderr, "%s: %s factor must be a positive number\n", path, what);
            goto done;
        }
        scaling = linear ? SL_ROPE_LINEAR : SL_ROPE_LLAMA3;
    }
    const JsonValue *ev = json_get(cfg, "rms_norm_eps");
    if ((ev || !gemma) && !cfg_num(ev, &eps)) eps = -1;
    if (!(eps > 0 && eps < 1)) {
        fprintf(stderr, "%s: rms_norm_eps must be a number in (0, 1)\n", path);
        goto done;
    }
    const JsonValue *tie = json_get(cfg, "tie_word_embeddings");
    h->dim = (int32_t)dim;
    h->hidden_dim = (int32_t)hidden;
    h->n_layers = (int32_t)layers;
    h->n_heads = (int32_t)heads;
    h->n_kv_heads = (int32_t)kv;
    h->head_dim = (int32_t)hd;
    h->vocab_size = (int32_t)vocab;
    h->seq_len = (int32_t)ctx;
    h->rope_theta = (float)theta;
    h->rope_scaling = scaling;
    h->rope_factor = (float)factor;
    h->rope_low_freq = (float)low;
    h->rope_high_freq = (float)high;
    h->rope_orig_ctx = (int32_t)orig;
    h->norm_eps = (float)eps;
    h->flags = tie && tie->type == JSON_TRUE ? SL_FLAG_SHARED_CLASSIFIER : 0;
    if (fam == HF_QWEN2) h->flags |= SL_FLAG_QKV_BIAS;
    if (fam == HF_QWEN3) h->flags |= SL_FLAG_QK_NORM;
    if (gemma) {
        // the embedding times sqrt(hidden_size), as a float (Gemma3TextScaledWordEmbedding casts
        // it to the weights' dtype); queries scaled by query_pre_attn_scalar^-1/2
        long long qpas;
        if (cfg_int(cfg, "query_pre_attn_scalar", 1, big, 256, &qpas, path)) goto done;
        h->flags |= SL_FLAG_QK_NORM | SL_FLAG_POST_NORMS | SL_FLAG_GELU;
        if (!tie) h->flags |= SL_FLAG_SHARED_CLASSIFIER;  // Gemma's default: tied
        h->embed_scale = (float)sqrt((double)dim);
        h->attn_scale = (float)(1.0 / sqrt((double)qpas));
    }
    h->weight_type = SL_F32;
    h->bos_id = (int32_t)bos;
    h->eos_id = (int32_t)eos;
    h->n_tensors = SL_T_COUNT;
    h->tokenizer_bytes = 8;  // placeholder so that model_layout can size the tensors
    // every end-of-generation id: config.json's list, then generation_config.json's
    if (read_stops(h, cfg, path) != 0 || (cfg != &root && read_stops(h, &root, path) != 0))
        goto done;
    char *gpath = join(dir, "generation_config.json");
    struct stat st;
    int bad = !gpath;
    if (gpath && stat(gpath, &st) == 0) {
        JsonValue gen;
        bad = load_json(gpath, CONFIG_MAX, &gen) != 0;
        if (!bad) {
            bad = read_stops(h, &gen, gpath) != 0 || read_sampling(h, &gen, gpath) != 0;
            json_free(&gen);
        }
    }
    free(gpath);
    if (!bad) rc = 0;
done:
    json_free(&root);
    free(path);
    return rc;
}

// Hugging Face names of our tensors; %zu is the layer. Phi-3 fuses wq, wk and wv into
// qkv_proj, and w1 and w3 into gate_up_proj; Qwen2's biases and Qwen3's norms are per
// projection. Hugging Face keeps q and k in halves order.
static const PieceNames hf_names = {
    .tensor = {"model.embed_tokens.weight", "model.layers.%zu.input_layernorm.weight",
               "model.layers.%zu.self_attn.q_proj.weight", "model.layers.%zu.self_attn.k_proj.weight",
               "model.layers.%zu.self_attn.v_proj.weight", "model.layers.%zu.self_attn.o_proj.weight",
               "model.layers.%zu.post_attention_layernorm.weight",
               "model.layers.%zu.mlp.gate_proj.weight", "model.layers.%zu.mlp.down_proj.weight",
               "model.layers.%zu.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"},
    .qkv = "model.layers.%zu.self_attn.qkv_proj.weight",
    .gate_up = "model.layers.%zu.mlp.gate_up_proj.weight",
    .bias = {"model.layers.%zu.self_attn.q_proj.bias", "model.layers.%zu.self_attn.k_proj.bias",
             "model.layers.%zu.self_attn.v_proj.bias"},
    .qk_norm = {"model.layers.%zu.self_attn.q_norm.weight",
                "model.layers.%zu.self_attn.k_norm.weight"},
};

// Gemma 3's names, under a prefix: "model." (Gemma3ForCausalLM) or "model.language_model."
// (Gemma3ForConditionalGeneration's text model). Its post_attention_layernorm is the norm of
// the attention output; pre_feedforward_layernorm is our rms_ffn.
#define GEMMA_NAMES(P)                                                                         \
    {.tensor = {P "embed_tokens.weight", P "layers.%zu.input_layernorm.weight",                 \
                P "layers.%zu.self_attn.q_proj.weight", P "layers.%zu.self_attn.k_proj.weight", \
                P "layers.%zu.self_attn.v_proj.weight", P "layers.%zu.self_attn.o_proj.weight", \
                P "layers.%zu.pre_feedforward_layernorm.weight",                               \
                P "layers.%zu.mlp.gate_proj.weight", P "layers.%zu.mlp.down_proj.weight",       \
                P "layers.%zu.mlp.up_proj.weight", P "norm.weight", "lm_head.weight"},          \
     .qk_norm = {P "layers.%zu.self_attn.q_norm.weight", P "layers.%zu.self_attn.k_norm.weight"}, \
     .post_norms = {P "layers.%zu.post_attention_layernorm.weight",                           \
                    P "layers.%zu.post_feedforward_layernorm.weight"}}
static const PieceNames gemma_names = GEMMA_NAMES("model.");
static const PieceNames gemma_mm_names = GEMMA_NAMES("model.language_model.");

static int st_piece_read(void *ctx, const void *src, size_t first, size_t n, float *out) {
    return st_read_f32(ctx, src, first, n, out);
}

// PieceFind (pieces.h) over the safetensors files; ctx is an HfModel.
static int hf_piece(void *ctx, Piece *pc, const char *fmt, size_t l, size_t total, size_t cols,
                    size_t row0, size_t rows, size_t halves) {
    HfModel *m = ctx;
    char name[160];
    snprintf(name, sizeof name, fmt, l);
    const StTensor *s = st_find(&m->st, name);
    if (!s) {
        fprintf(stderr, "%s: no tensor %s\n", m->dir, name);
        return -1;
    }
    int ok = cols ? s->ndim == 2 && s->shape[0] == total && s->shape[1] == cols
                  : s->ndim == 1 && s->shape[0] == total;
    if (!ok) {
        fprintf(stderr, "%s: tensor %s has shape [%llu%s%llu], config.json implies "
                "[%zu%s%zu]\n", m->st.files[s->file].path, name,
                (unsigned long long)(s->ndim > 0 ? s->shape[0] : 0), s->ndim > 1 ? ", " : "",
                (unsigned long long)(s->ndim > 1 ? s->shape[1] : 0), total,
                cols ? ", " : "", cols);
        return -1;
    }
    if (strcmp(s->dtype, "F32") && strcmp(s->dtype, "F16") && strcmp(s->dtype, "BF16")) {
        fprintf(stderr, "%s: tensor %s is %s; export reads F32, F16 and BF16\n",
                m->st.files[s->file].path, name, s->dtype);
        return -1;
    }
    *pc = (Piece){s, row0, rows, cols ? cols : 1, halves};
    return 0;
}

int hf_open(HfModel *m, const char *dir) {
    memset(m, 0, sizeof *m);
    m->dir = dir;
    if (read_config(&m->header, &m->family, dir) != 0) return -1;
    if (st_open_dir(&m->st, dir) != 0) return -1;
    SlHeader *h = &m->header;
    const PieceNames *nm = m->family == HF_GEMMA3 ? &gemma_names
                           : m->family == HF_GEMMA3_MM ? &gemma_mm_names : &hf_names;
    if (!(h->flags & SL_FLAG_SHARED_CLASSIFIER) && !st_find(&m->st, nm->tensor[SL_T_CLS]))
        h->flags |= SL_FLAG_SHARED_CLASSIFIER;  // no lm_head: the embedding is the classifier
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    if (model_layout(h, NULL, &m->layout, cfg_path) != MODEL_OK) goto fail;
    m->pieces.read = st_piece_read;
    m->pieces.ctx = &m->st;
    PieceNames names = *nm;
    names.fused_qkv = names.fused_up = m->family == HF_PHI3;
    names.halves = (size_t)h->head_dim;
    for (int t = 0; t < SL_T_COUNT; t++)
        if (m->layout.bytes[t] &&
            pieces_map(&m->pieces, t, h, &m->layout, &names, hf_piece, m) != 0)
            goto fail;
    return 0;
fail:
    hf_close(m);
    return -1;
}

void hf_close(HfModel *m) {
    pieces_free(&m->pieces);
    st_close(&m->st);
    memset(m, 0, sizeof *m);
}

int hf_fill(void *ctx, int t, size_t offset, void *buf, size_t n) {
    HfModel *m = ctx;
    int rc = pieces_fill(&m->pieces, t, offset, buf, n);
    // Gemma's RMSNorm scales by (1 + w), computed in f32 as transformers does: stored as the sum
    int norm = t == SL_T_RMS_ATT || t == SL_T_RMS_FFN || t == SL_T_RMS_FINAL ||
               t == SL_T_QK_NORM || t == SL_T_POST_NORMS;
    if (rc == 0 && norm && (m->family == HF_GEMMA3 || m->family == HF_GEMMA3_MM)) {
        float *f = buf;  // norm tensors are f32, and the writer fills whole floats
        for (size_t i = 0; i < n / sizeof(float); i++) f[i] = 1.0f + f[i];
    }
    return rc;
}

// ----------------------------------------------------------------------------
// tokenizer.json

// Copies a piece with "▁" (U+2581) turned into spaces; returns its length.
static size_t unmeta(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 &&
            (uint8_t)s[i + 2] == 0x81) {
            out[k++] = ' ';
            i += 3;
        } else {
            out[k++] = s[i++];
        }
    }
    return k;
}

static int is_byte_piece(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && strchr(hex, s[3]) && strchr(hex, s[4]) &&
           s[3] && s[4];
}

// Gemma's pre-tokenizer: Split on the string " ", MergedWithPrevious, not inverted.
static int is_space_split(const JsonValue *pre) {
    const JsonValue *inv = json_get(pre, "invert");
    return json_is_str(json_get(pre, "type"), "Split") &&
           json_is_str(json_get(json_get(pre, "pattern"), "String"), " ") &&
           json_is_str(json_get(pre, "behavior"), "MergedWithPrevious") &&
           (!inv || inv->type == JSON_FALSE);
}

// The normalizer / pre-tokenizer pair of a sentencepiece-style BPE, as tokenizer.h's flags:
//   Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer (Llama 2's layout): flags 0, a space
//     always prepended and merges across spaces, as llama2.c;
//   Metaspace("▁", prepend_scheme, split) (transformers' legacy=False layout): first or always
//     (or add_prefix_space) prepend a space unless the text starts with one, never does not;
//     split true keeps merges within each space-led piece.
//   Replace(" ", "▁") alone (Gemma's: no dummy prefix), with no pre-tokenizer or Gemma's
//     Split(" ", MergedWithPrevious), which finds no space once they are all "▁": flags
//     TOK_FLAG_PREFIX_NEVER, merges across spaces.
// Returns 0, or -1 after naming what it found.
static int check_pipeline(const JsonValue *root, const char *path, uint32_t *flags) {
    const JsonValue *norm = json_get(root, "normalizer"), *pre = json_get(root, "pre_tokenizer");
    int prepend = 0, replace = 0;
    *flags = 0;
    if (norm && norm->type != JSON_NULL) {
        const JsonValue *list = norm, *type = json_get(norm, "type");
        size_t count = 1;
        if (json_is_str(type, "Sequence")) {
            list = json_get(norm, "normalizers");
            if (!list || list->type != JSON_ARRAY) goto bad_norm;
            count = list->n;
        }
        for (size_t i = 0; i < count; i++) {
            const JsonValue *nv = list == norm ? norm : &list->items[i];
            const JsonValue *ty = json_get(nv, "type");
            if (json_is_str(ty, "Prepend") && json_is_str(json_get(nv, "prepend"), "\xE2\x96\x81")) {
                prepend = 1;
            } else if (json_is_str(ty, "Replace") &&
                       json_is_str(json_get(json_get(nv, "pattern"), "String"), " ") &&
                       json_is_str(json_get(nv, "content"), "\xE2\x96\x81")) {
                replace = 1;
            } else {
                fprintf(stderr, "%s: normalizer %.32s (byte %zu); export reads the Llama 2 "
                        "Prepend(\"\xE2\x96\x81\") + Replace(\" \", \"\xE2\x96\x81\")\n", path,
                        ty && ty->type == JSON_STRING ? ty->str : "of no type", nv->offset);
                return -1;
            }
        }
    }
    if (replace && !prepend && is_space_split(pre)) pre = NULL;  // Gemma's: a no-op after Replace
    if (replace && !prepend && (!pre || pre->type == JSON_NULL)) {
        *flags = TOK_FLAG_PREFIX_NEVER;
        return 0;
    }
    if (pre && pre->type != JSON_NULL) {
        const JsonValue *ty = json_get(pre, "type"), *sch = json_get(pre, "prepend_scheme");
        if (!json_is_str(ty, "Metaspace") || !json_is_str(json_get(pre, "replacement"), "\xE2\x96\x81") ||
            prepend || (sch && !json_is_str(sch, "first") && !json_is_str(sch, "always") &&
                        !json_is_str(sch, "never"))) {
            fprintf(stderr, "%s: pre_tokenizer %.32s (byte %zu); export reads a sentencepiece-style "
                    "BPE (none after Llama 2's normalizer, or Metaspace with \"\xE2\x96\x81\" "
                    "and prepend_scheme first, always or never)\n", path,
                    ty && ty->type == JSON_STRING ? ty->str : "of no type", pre->offset);
            return -1;
        }
        const JsonValue *add = json_get(pre, "add_prefix_space"), *split = json_get(pre, "split");
        if (json_is_str(sch, "never") || (!sch && add && add->type == JSON_FALSE))
            *flags |= TOK_FLAG_PREFIX_NEVER;
        else
            *flags |= TOK_FLAG_PREFIX_FIRST;
        if (!split || split->type == JSON_TRUE) *flags |= TOK_FLAG_SPLIT;  // tokenizers' default
        return 0;
    }
    if (!prepend || !replace) {
        fprintf(stderr, "%s: no \"\xE2\x96\x81\" for spaces (a Prepend and Replace normalizer, or "
                "a Metaspace pre-tokenizer); export reads sentencepiece-style BPE with one\n", path);
        return -1;
    }
    return 0;
bad_norm:
    fprintf(stderr, "%s: malformed normalizer (byte %zu)\n", path, norm->offset);
    return -1;
}

// Looks up a merge part: a string, or the halves of "a b".
static int merge_parts(const JsonValue *mv, const char **a, size_t *al, const char **b, size_t *bl) {
    if (mv->type == JSON_ARRAY && mv->n == 2 && mv->items[0].type == JSON_STRING &&
        mv->items[1].type == JSON_STRING) {
        *a = mv->items[0].str, *al = mv->items[0].len;
        *b = mv->items[1].str, *bl = mv->items[1].len;
        return 0;
    }
    if (mv->type == JSON_STRING) {
        const char *sp = memchr(mv->str, ' ', mv->len);
        if (!sp || memchr(sp + 1, ' ', mv->len - (size_t)(sp + 1 - mv->str))) return -1;
        *a = mv->str, *al = (size_t)(sp - mv->str);
        *b = sp + 1, *bl = mv->len - *al - 1;
        return 0;
    }
    return -1;
}

// A ByteLevel pre-tokenizer object with add_prefix_space false and use_regex as given?
static int is_bytelevel(const JsonValue *v, int use_regex) {
    const JsonValue *aps = json_get(v, "add_prefix_space"), *ur = json_get(v, "use_regex");
    return json_is_str(json_get(v, "type"), "ByteLevel") && aps && aps->type == JSON_FALSE &&
           (use_regex ? !ur || ur->type == JSON_TRUE : ur && ur->type == JSON_FALSE);
}

// The pre-tokenizer of a byte-level BPE (enum pretok_kind), as the families write it:
//   gpt-2      ByteLevel(add_prefix_space false, use_regex true)
//   llama-bpe, qwen2 (and gpt-2)  Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)]
//   smollm     Sequence[Digits(individual_digits true), ByteLevel(use_regex true)]
// Returns the kind; -2 when the pre-tokenizer is not byte-level at all; -1 after one line
// naming what is byte-level but not supported.
static int bytelevel_pretok(const JsonValue *root, const char *path) {
    const JsonValue *pre = json_get(root, "pre_tokenizer"), *ty = json_get(pre, "type");
    if (is_bytelevel(pre, 1)) return PRETOK_GPT2;
    const JsonValue *list = json_get(pre, "pretokenizers");
    if (!json_is_str(ty, "Sequence") || !list || list->type != JSON_ARRAY || list->n != 2 ||
        !json_is_str(json_get(&list->items[1], "type"), "ByteLevel")) {
        if (json_is_str(ty, "ByteLevel")) {
            fprintf(stderr, "%s: ByteLevel pre-tokenizer with add_prefix_space or without its "
                            "regex (byte %zu); export reads add_prefix_space false\n", path,
                    pre->offset);
            return -1;
        }
        return -2;
    }
    const JsonValue *a = &list->items[0], *b = &list->items[1], *inv = json_get(a, "invert");
    const JsonValue *digits = json_get(a, "individual_digits");
    if (json_is_str(json_get(a, "type"), "Digits") && digits && digits->type == JSON_TRUE &&
        is_bytelevel(b, 1))
        return PRETOK_SMOLLM;
    const JsonValue *re = json_get(json_get(a, "pattern"), "Regex");
    if (json_is_str(json_get(a, "type"), "Split") && json_is_str(json_get(a, "behavior"), "Isolated") &&
        inv && inv->type == JSON_FALSE && re && re->type == JSON_STRING && is_bytelevel(b, 0)) {
        int k = pretok_from_regex(re->str);
        if (k >= 0) return k;
        fprintf(stderr, "%s: pre-tokenizer regex \"%.60s\" (byte %zu) is not supported (GPT-2's, "
                        "Llama 3's and Qwen2's are)\n", path, re->str, re->offset);
        return -1;
    }
    fprintf(stderr, "%s: byte-level pre-tokenizer Sequence at byte %zu is not one export reads "
                    "(Split(Regex, Isolated) or Digits(individual), then ByteLevel)\n", path,
            pre->offset);
    return -1;
}

// The normalizer before a byte-level BPE: none, or NFC (Qwen2's), alone or in a Sequence of
// NFC only, which sets TOK_FLAG_NFC in *flags; anything else is refused. Special tokens are
// found in the raw text and the text between them is normalized (tokenizer.h), as `tokenizers`
// does for added tokens with normalized false (all of Qwen's); one with normalized true it
// matches in the normalized text instead, a difference only next to text that is not NFC:
// noted. (GGUF carries no normalizer, and llama.cpp applies none: convert/gguf.c sets no NFC.)
static int bytelevel_normalizer(const JsonValue *root, const char *path, uint32_t *flags) {
    const JsonValue *norm = json_get(root, "normalizer"), *list = json_get(norm, "normalizers");
    if (!norm || norm->type == JSON_NULL) return 0;
    int seq = json_is_str(json_get(norm, "type"), "Sequence") && list && list->type == JSON_ARRAY;
    size_t n = seq ? list->n : 1;
    for (size_t i = 0; i < n; i++) {
        const JsonValue *one = seq ? &list->items[i] : norm, *type = json_get(one, "type");
        if (!json_is_str(type, "NFC")) {
            fprintf(stderr, "%s: normalizer %.32s (byte %zu) before a byte-level BPE; export "
                    "reads none or NFC\n", path,
                    type && type->type == JSON_STRING ? type->str : "?", one->offset);
            return -1;
        }
        *flags |= TOK_FLAG_NFC;
    }
    const JsonValue *added = json_get(root, "added_tokens");
    for (size_t i = 0; *flags & TOK_FLAG_NFC && added && added->type == JSON_ARRAY && i < added->n;
         i++) {
        const JsonValue *a = &added->items[i], *nz = json_get(a, "normalized");
        const JsonValue *c = json_get(a, "content");
        if (nz && nz->type == JSON_TRUE && c && c->type == JSON_STRING) {
            fprintf(stderr, "%s: note: added token \"%.32s\" has normalized true: it is matched "
                    "in the text before NFC, as all special tokens are (text next to it that is "
                    "not NFC may tokenize differently from transformers)\n", path, c->str);
            break;
        }
    }
    return 0;
}

// A byte-level BPE from the pieces (vocab keys or added tokens' contents) and types found by
// hf_tokenizer, and the merges; tokenizer/bytelevel.c does the rest.
static int hf_bytelevel(Tokenizer *tok, const JsonValue *const *piece, const uint8_t *type,
                        size_t V, const JsonValue *model, const JsonValue *merges, int pretok,
                        uint32_t flags, int bos_id, int eos_id, const char *path) {
    BlStr *toks = malloc(V * sizeof *toks), *mer = malloc((2 * merges->n + 1) * sizeof *mer);
    int rc = -1;
    if (!toks || !mer) {
        fprintf(stderr, "%s: out of memory for the vocabulary\n", path);
        goto done;
    }
    for (size_t id = 0; id < V; id++) {
        const JsonValue *p = piece[id];
        if (p->key) toks[id] = (BlStr){p->key, p->key_len};
        else toks[id] = (BlStr){json_get(p, "content")->str, json_get(p, "content")->len};
    }
    for (size_t r = 0; r < merges->n; r++) {
        const char *a, *b;
        size_t al, bl;
        if (merge_parts(&merges->items[r], &a, &al, &b, &bl) != 0) {
            fprintf(stderr, "%s: merge %zu (byte %zu) is not \"a b\" or [\"a\", \"b\"]\n", path, r,
                    merges->items[r].offset);
            goto done;
        }
        mer[2 * r] = (BlStr){a, al};
        mer[2 * r + 1] = (BlStr){b, bl};
    }
    const JsonValue *im = json_get(model, "ignore_merges");
    if (im && im->type == JSON_TRUE) flags |= TOK_FLAG_IGNORE_MERGES;
    if (bytelevel_tokenizer(tok, toks, type, V, mer, merges->n, pretok, flags, bos_id, eos_id,
                            path) == TOK_OK)
        rc = 0;
done:
    free(toks), free(mer);
    return rc;
}

// Does the post_processor (alone or in a Sequence) prepend a special token to a single text?
static int post_adds_bos(const JsonValue *root) {
    const JsonValue *pp = json_get(root, "post_processor"), *list = json_get(pp, "processors");
    int seq = json_is_str(json_get(pp, "type"), "Sequence") && list && list->type == JSON_ARRAY;
    size_t n = seq ? list->n : 1;
    for (size_t i = 0; pp && i < n; i++) {
        const JsonValue *p = seq ? &list->items[i] : pp, *single = json_get(p, "single");
        if (json_is_str(json_get(p, "type"), "TemplateProcessing") && single &&
            single->type == JSON_ARRAY && single->n > 0 && json_get(&single->items[0], "SpecialToken"))
            return 1;
    }
    return 0;
}

int hf_tokenizer(Tokenizer *tok, const char *dir, int vocab_size, int bos_id, int eos_id,
                 int *adds_bos) {
    char *path = join(dir, "tokenizer.json");
    if (!path) return -1;
    JsonValue root;
    if (load_json(path, TOKENIZER_MAX, &root) != 0) {
        free(path);
        return -1;
    }
    if (adds_bos) *adds_bos = post_adds_bos(&root);
    int rc = -1;
    size_t V = (size_t)vocab_size;
    const JsonValue **piece = calloc(V, sizeof *piece);
    uint8_t *type = calloc(V, 1);
    uint8_t *buf = NULL;
    char *merged = NULL;
    if (!piece || !type) goto done;
    const JsonValue *model = json_get(&root, "model"), *mtype = json_get(model, "type");
    if (!model || model->type != JSON_OBJECT) {
        fprintf(stderr, "%s: no \"model\" object\n", path);
        goto done;
    }
    if (!json_is_str(mtype, "BPE")) {
        fprintf(stderr, "%s: tokenizer model %.32s; export reads BPE with byte_fallback (Llama 2 / "
                "TinyLlama)\n", path, mtype && mtype->type == JSON_STRING ? mtype->str : "without a type");
        goto done;
    }
    const JsonValue *bf = json_get(model, "byte_fallback");
    int pretok = -3;  // -3: sentencepiece-style; else the byte-level pre-tokenizer
    uint32_t bl_flags = 0;  // byte-level: TOK_FLAG_NFC from the normalizer
    if (!bf || bf->type != JSON_TRUE) {
        pretok = bytelevel_pretok(&root, path);
        if (pretok == -1) goto done;
        if (pretok == -2) {
            fprintf(stderr, "%s: BPE without byte_fallback and without a byte-level "
                    "pre-tokenizer; export reads sentencepiece-style BPE (Llama 2) and byte-level "
                    "BPE (GPT-2, Llama 3, Qwen2, SmolLM)\n", path);
            goto done;
        }
        if (bytelevel_normalizer(&root, path, &bl_flags) != 0) goto done;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const JsonValue *a = json_get(model, affixes[i]);
        if (a && a->type != JSON_NULL && !(a->type == JSON_STRING && a->len == 0)) {
            fprintf(stderr, "%s: BPE with a %s; export reads none\n", path, affixes[i]);
            goto done;
        }
    }
    uint32_t spm_flags = 0;
    if (pretok == -3 && check_pipeline(&root, path, &spm_flags) != 0) goto done;
    const JsonValue *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    const JsonValue *added = json_get(&root, "added_tokens");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY) {
        fprintf(stderr, "%s: model needs a \"vocab\" object and a \"merges\" array\n", path);
        goto done;
    }
    // ids: the vocab, then added tokens (which may repeat a vocab entry with the same id)
    for (size_t i = 0; i < vocab->n; i++) {
        long long id;
        const JsonValue *v = &vocab->items[i];
        if (!json_int(v, 0, (long long)V - 1, &id)) {
            fprintf(stderr, "%s: vocab entry at byte %zu: id is not an integer below the model's "
                    "vocab_size %d\n", path, v->offset, vocab_size);
            goto done;
        }
        if (piece[id]) {
            fprintf(stderr, "%s: vocab id %lld at byte %zu is given twice\n", path, id, v->offset);
            goto done;
        }
        piece[id] = v;
        type[id] = is_byte_piece(v->key, v->key_len) ? TOK_BYTE : TOK_NORMAL;
    }
    const JsonValue *unk = json_get(model, "unk_token");
    size_t beyond = 0;  // added tokens past the embedding (Gemma 3 1B's <image_soft_token>)
    for (size_t i = 0; added && added->type == JSON_ARRAY && i < added->n; i++) {
        const JsonValue *a = &added->items[i], *c = json_get(a, "content");
        long long id;
        if (!json_int(json_get(a, "id"), 0, INT32_MAX, &id) || !c || c->type != JSON_STRING) {
            fprintf(stderr, "%s: added token at byte %zu needs an id below vocab_size %d and a "
                    "content string\n", path, a->offset, vocab_size);
            goto done;
        }
        // a special token the model has no row for (the vocab's ids are all below V): left out
        if (id >= (long long)V && json_get(a, "special") && json_get(a, "special")->type == JSON_TRUE) {
            if (!beyond++)
                fprintf(stderr, "%s: note: special token %lld \"%.32s\" is past the model's "
                        "vocab_size %d: left out (the model cannot read or write it)\n", path, id,
                        c->str, vocab_size);
            continue;
        }
        if (id >= (long long)V) {
            fprintf(stderr, "%s: added token at byte %zu needs an id below vocab_size %d and a "
                    "content string\n", path, a->offset, vocab_size);
            goto done;
        }
        if (piece[id] && (piece[id]->key_len != c->len || memcmp(piece[id]->key, c->str, c->len))) {
            fprintf(stderr, "%s: added token %lld (byte %zu) differs from the vocab's\n", path, id,
                    a->offset);
            goto done;
        }
        if (!piece[id]) {
            // give it the vocab entry's shape: the piece is the key
            piece[id] = a;
        }
        type[id] = json_get(a, "special") && json_get(a, "special")->type == JSON_TRUE ? TOK_CONTROL
                                                                                        : TOK_USER;
    }
    // the model's embedding may have more rows than the tokenizer has tokens (Qwen and Phi-3
    // pad it): ids past the last token become empty, unused tokens, which decode to nothing.
    // A hole among the tokens is an error.
    static char empty[1];
    static JsonValue padding = {.type = JSON_NULL, .key = empty};
    size_t defined = V;
    while (defined > 0 && !piece[defined - 1]) defined--;
    for (size_t id = 0; id < V; id++) {
        if (!piece[id] && id < defined) {
            fprintf(stderr, "%s: no token with id %zu; the model's vocab_size is %d\n", path, id,
                    vocab_size);
            goto done;
        }
        if (!piece[id]) piece[id] = &padding, type[id] = TOK_UNUSED;
    }
    if (defined < V)
        fprintf(stderr, "%s: note: the tokenizer has %zu tokens; ids %zu to %zu pad the "
                "embedding, as unused tokens that decode to nothing\n", path, defined, defined,
                V - 1);
    if (pretok >= 0) {
        rc = hf_bytelevel(tok, piece, type, V, model, merges, pretok, bl_flags, bos_id, eos_id,
                          path);
        goto done;
    }
    // serialize a section (tokenizer.h) and parse it, as synth_tokenizer does
    size_t cap = 8, max_len = 0;
    for (size_t id = 0; id < V; id++) {
        const JsonValue *p = piece[id];
        size_t len = p->key ? p->key_len : json_get(p, "content")->len;
        if (len > TOK_MAX_PIECE * 3) len = TOK_MAX_PIECE * 3;
        cap += 9 + len;
    }
    if (!(buf = malloc(cap))) goto done;
    size_t off = 8;
    for (size_t id = 0; id < V; id++) {
        const JsonValue *p = piece[id];
        const char *s = p->key ? p->key : json_get(p, "content")->str;
        size_t len = p->key ? p->key_len : json_get(p, "content")->len;
        if (len > TOK_MAX_PIECE * 3) len = TOK_MAX_PIECE * 3;  // the parser refuses it below
        uint8_t ty = type[id];
        if (unk && unk->type == JSON_STRING && unk->len == len && !memcmp(unk->str, s, len))
            ty = TOK_UNKNOWN;
        size_t k = unmeta(s, len, (char *)buf + off + 9);
        float score = -1e10f;  // not made by a merge: never merged into
        uint32_t l32 = (uint32_t)k;
        memcpy(buf + off, &score, 4);
        memcpy(buf + off + 4, &l32, 4);
        buf[off + 8] = ty;
        if (k > max_len) max_len = k;
        off += 9 + k;
    }
    uint32_t count = (uint32_t)V, ml = (uint32_t)max_len;
    memcpy(buf, &count, 4);
    memcpy(buf + 4, &ml, 4);
    if (tokenizer_parse(tok, buf, off, 1, vocab_size, bos_id, eos_id, path) != TOK_OK) goto done;
    // scores: a piece made by merge r (the first that makes it) scores -r
    if (!(merged = malloc(2 * (size_t)TOK_MAX_PIECE * 3 + 1))) goto fail_tok;
    for (size_t r = 0; r < merges->n; r++) {
        const char *a, *b;
        size_t al, bl;
        const JsonValue *mv = &merges->items[r];
        if (merge_parts(mv, &a, &al, &b, &bl) != 0 || al > TOK_MAX_PIECE * 3 ||
            bl > TOK_MAX_PIECE * 3) {
            fprintf(stderr, "%s: merge %zu (byte %zu) is not \"a b\" or [\"a\", \"b\"]\n", path, r,
                    mv->offset);
            goto fail_tok;
        }
        size_t k = unmeta(a, al, merged);
        size_t ka = k;
        k += unmeta(b, bl, merged + k);
        int ia = tokenizer_lookup(tok, merged, ka), ib = tokenizer_lookup(tok, merged + ka, k - ka);
        int id = tokenizer_lookup(tok, merged, k);
        if (ia < 0 || ib < 0 || id < 0) {
            fprintf(stderr, "%s: merge %zu (byte %zu) joins pieces that are not all in the "
                    "vocabulary\n", path, r, mv->offset);
            goto fail_tok;
        }
        if (tok->scores[id] == -1e10f) tok->scores[id] = -(float)r;
    }
    tok->flags = spm_flags;  // Metaspace's prefix and split (tokenizer.h)
    rc = 0;
    goto done;
fail_tok:
    tokenizer_free(tok);
done:
    free(merged);
    free(buf);
    free(piece);
    free(type);
    json_free(&root);
    free(path);
    return rc;
}

// ----------------------------------------------------------------------------
// chat template

int hf_chat_template(const char *dir, char **out, size_t *len) {
    *out = NULL, *len = 0;
    char *path = join(dir, "tokenizer_config.json"), *jpath = join(dir, "chat_template.jinja");
    struct stat st;
    int rc = path && jpath ? 0 : -1;
    if (rc == 0 && stat(path, &st) == 0) {
        JsonValue root;
        if (load_json(path, TOKENIZER_MAX, &root) != 0) {
            rc = -1;
        } else {
            // a string, or a list of {"name": ..., "template": ...} whose "default" is taken
            const JsonValue *ct = json_get(&root, "chat_template");
            for (size_t i = 0; ct && ct->type == JSON_ARRAY && i < ct->n; i++)
                if (json_is_str(json_get(&ct->items[i], "name"), "default"))
                    ct = json_get(&ct->items[i], "template");
            if (ct && ct->type == JSON_STRING && ct->len <= SL_CHAT_TEMPLATE_MAX) {
                if ((*out = malloc(ct->len + 1))) {
                    memcpy(*out, ct->str, ct->len + 1);
                    *len = ct->len;
                } else {
                    fprintf(stderr, "%s: out of memory\n", path);
                    rc = -1;
                }
            } else if (ct && ct->type != JSON_NULL) {
                fprintf(stderr, "%s: \"chat_template\" (byte %zu) is not a string of at most %u "
                        "bytes, nor a list holding a \"default\" one\n", path, ct->offset,
                        SL_CHAT_TEMPLATE_MAX);
                rc = -1;
            }
            json_free(&root);
        }
    }
    if (rc == 0 && !*out && stat(jpath, &st) == 0)  // newer transformers save it on its own
        rc = file_read(jpath, SL_CHAT_TEMPLATE_MAX, out, len);
    free(path), free(jpath);
    return rc;
}

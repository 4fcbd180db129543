// run.c: the searchlight command line: generate text from a model file, or tokenize.
//
// Contract: the only file that exits. stdout carries only text (the prompt, the
// generated text, a newline); timings and errors go to stderr. Usage errors exit 2,
// model and input errors exit 1. Flags follow llama2.c's run.c.
#define _POSIX_C_SOURCE 200809L
#define _DARWIN_C_SOURCE  // macOS: _SC_NPROCESSORS_ONLN and _NSGetExecutablePath's types too
#include <errno.h>
#include <signal.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <mach-o/dyld.h>  // _NSGetExecutablePath
#endif

#include "app/attnmap.h"
#include "app/bench.h"
#include "app/chat.h"
#include "app/template.h"
#include "app/term.h"
#include "io/fileio.h"
#include "app/ppl.h"
#include "runtime/session.h"
#include "server/serve.h"
#include "runtime/transformer.h"
#include "base/clock.h"
#include "base/pool.h"

#define EXIT_USAGE 2

typedef struct {
    const char *model_path;
    const char *tokenizer_path;  // -z: replaces the embedded tokenizer
    const char *prompt;
    const char *mode;            // "generate", "tokenize", "chat" or "serve"
    const char *system;          // -y: chat mode's system prompt
    const char *chat_template;   // --chat-template: the template family to chat in
    int think;                   // --think: qwen3's and smollm3's thinking on
    uint32_t sampling_given;     // SL_SAMPLE_* bits of the options on the command line
    const char *date;            // --date: the date a template renders as today's (NULL: today)
    float temperature;
    float top_p;
    int top_k;
    float min_p;                 // --min-p: 0 is off
    float repeat_penalty;        // --repeat-penalty: 1 is off
    long repeat_last_n;          // --repeat-last-n: 0 is off, -1 the whole context
    uint64_t seed;               // 0: from the clock
    long steps;                  // 0: min(256, seq_len)
    const char *ppl_path;        // --ppl: score this text instead of generating
    const char *attn_map;        // --attn-map: write the attention weights as an HTML page
    const char *attn_dump;       // --attn-dump: write them as raw fp32 rows
    int kv_type;                 // --kv: ATTN_KV_F32 or ATTN_KV_F16
    int context_shift;           // --context-shift: -n past the context, --ppl as one stream
    int n_ctx;                   // -c: the context length (0: the model's)
    int bench;                   // --bench: the threads list, pp, tg, reps, json below
    BenchOptions b;
    // -m serve: --host, --port, --parallel, --queue, --api-key, --timeout
    const char *host, *api_key;
    long port, parallel, queue, timeout;
    const char *serve_flag;      // the first of them given (for the error without -m serve)
} Options;

// The default model: models/kjv.slm beside the run binary, else under the current directory.
#define DEFAULT_MODEL "models/kjv.slm"

static void usage(FILE *f) {
    fprintf(f,
            "Usage:   run [model] [options]\n"
            "Example: run -n 200 -i \"And God said\"\n"
            "         run model.slm -n 256 -i \"Once upon a time\"\n"
            "The model defaults to " DEFAULT_MODEL " (beside run, else in the current directory).\n"
            "Options:\n"
            "  -t <float>  temperature in [0, inf), default 1.0; 0 is greedy\n"
            "  -p <float>  top-p (nucleus) in [0, 1], default 0.9; 0 or 1 turn it off\n"
            "  -k <int>    top-k, keep the k most likely tokens, default 0 (off)\n"
            "  --min-p <float>  min-p in [0, 1]: keep the tokens at least this times as likely\n"
            "              as the most likely one (at temperature 1), default 0 (off)\n"
            "  --repeat-penalty <float>  > 0, default 1.0 (off): the logit of each token seen\n"
            "              in the last --repeat-last-n is divided by it if > 0, else multiplied\n"
            "  --repeat-last-n <int>  tokens of the context (prompt included) penalized,\n"
            "              default 64; 0 is off, -1 the whole context\n"
            "  The order: the repeat penalty on the logits (-t 0: their argmax), then\n"
            "  temperature, top-k and top-p as llama2.c does them, then min-p (measured\n"
            "  before the temperature, as llama.cpp) among the tokens they keep\n"
            "  A model file may hold its authors' recommended sampling (export takes it from\n"
            "  GGUF's general.sampling.* or generation_config.json): it replaces the defaults\n"
            "  above, each value that is not given here, with one line on stderr\n"
            "  -s <int>    random seed, default 0: from the clock\n"
            "  -n <int>    positions to run, prompt included, default min(256, context)\n"
            "  -c <int>    context length, at most the model's (default: the model's); the KV\n"
            "              cache, attention maps, shifts and --ppl windows use it\n"
            "  --context-shift  when the context is full, keep its first 4 positions (attention\n"
            "              sinks), drop the older half of the rest and go on: -n may exceed the\n"
            "              context; with --ppl, the text is scored as one stream\n"
            "  -i <string> input prompt\n"
            "  -z <path>   a llama2.c tokenizer.bin to use instead of the embedded one\n"
            "  -T <int>    threads, default: the number of online CPUs\n"
            "  -m <mode>   generate (default), tokenize: print the prompt's token ids, chat:\n"
            "              a conversation, one user turn per line of stdin (a line ending in\n"
            "              '\\' goes on); -n is then the most tokens of one reply (default: the\n"
            "              context), -i a first turn; past the context it shifts by itself;\n"
            "              or serve: an OpenAI-compatible HTTP server (below)\n"
            "  -y <string> chat: the system prompt\n"
            "  --chat-template <name>  chat in this template (default: the model file's):\n"
            "              " TPL_NAMES "\n"
            "  --think     chat: thinking on (qwen3, smollm3)\n"
            "  --date <d>  chat: the date a template shows as today's, e.g. \"26 Jul 2024\"\n"
            "              (Llama 3.2's \"Today Date\"; default: today, as transformers renders it)\n"
            "  --kv <type> KV cache type: f32 (default) or f16 (half the memory and traffic)\n"
            "  --ppl <path> print the perplexity of a text file instead of generating\n"
            "  --attn-map <file.html>  also write the attention weights of the prompt and the\n"
            "              generated tokens as a self-contained page of heatmaps\n"
            "  --attn-dump <file>      also write them as raw fp32 rows (layout: app/attnmap.h)\n"
            "  -h, --help  this message\n"
            "Benchmark: run <model> --bench [-T list] [--pp list] [--tg N] [--reps R] [--json]\n"
            "  -T <list>   thread counts, comma-separated, e.g. 1,2 (default: online CPUs)\n"
            "  --pp <list> prompt lengths, comma-separated; default 128,512,2048 (those that fit\n"
            "              the context)\n"
            "  --tg <int>  tokens generated one at a time, default 128\n"
            "  --reps <int> repetitions; each figure is their median, default 5\n"
            "  --json      one JSON object instead of tables\n"
            "Server: run [model] -m serve [--host A] [--port N] [--parallel N] [--queue N]\n"
            "            [--api-key KEY] [--timeout S] [--chat-template NAME] [-c ctx] [-T threads]\n"
            "  POST /v1/chat/completions, POST /v1/completions (OpenAI's; stream with SSE),\n"
            "  GET /v1/models, GET /health, GET / (a chat page with attention maps)\n"
            "  --host <addr>    the address to listen on, default 127.0.0.1 (this machine only)\n"
            "  --port <int>     default 8080 (0: any free port)\n"
            "  --parallel <int> requests generated at once, each in its own slot, 1..64, default 4\n"
            "  --queue <int>    requests waiting for a slot at most (then 503), default 64\n"
            "  --api-key <key>  require Authorization: Bearer <key> on /v1/*\n"
            "  --timeout <s>    to read a request and to write each response, default 30\n"
            "  -c <int>         each slot's context, default min(the model's, 4096)\n"
            "  The sampling options above set the defaults of a request (after the model's\n"
            "  recommended sampling); a request's fields override them\n");
}

static void usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "run: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    usage(stderr);
    exit(EXIT_USAGE);
}

// Whole-string numeric parsing: no trailing junk, no silent wrap or clamp.
static long parse_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0') usage_error("%s: '%s' is not an integer", flag, s);
    if (errno == ERANGE || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "%ld..%ld", lo, hi);
        fprintf(stderr, "run: %s: %s is out of range, expected %s\n", flag, s, range);
        usage(stderr);
        exit(EXIT_USAGE);
    }
    return v;
}

static float parse_float(const char *flag, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0') usage_error("%s: '%s' is not a number", flag, s);
    if (errno == ERANGE || !(v >= lo && v <= hi)) {
        fprintf(stderr, "run: %s: %s is out of range, expected %g..%g\n", flag, s, lo, hi);
        usage(stderr);
        exit(EXIT_USAGE);
    }
    return v;
}

// A finite float > 0.
static float parse_positive(const char *flag, const char *s) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0') usage_error("%s: '%s' is not a number", flag, s);
    if (errno == ERANGE || !(v > 0.0f && v <= FLT_MAX))
        usage_error("%s: %s is out of range, expected a finite number > 0", flag, s);
    return v;
}

static uint64_t parse_u64(const char *flag, const char *s) {
    char *end;
    errno = 0;
    if (*s == '-') usage_error("%s: '%s' must not be negative", flag, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') usage_error("%s: '%s' is not an integer", flag, s);
    if (errno == ERANGE) usage_error("%s: %s is out of range for 64 bits", flag, s);
    return (uint64_t)v;
}

// A comma-separated list of at most max integers in lo .. hi (-T, --pp); returns the count.
static int parse_list(const char *flag, const char *v, long *out, int max, long lo, long hi) {
    char item[32];
    int n = 0;
    for (const char *p = v;; p++) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item) usage_error("%s: '%s' is not a list of integers", flag, v);
        if (n == max) usage_error("%s: too many values in '%s'", flag, v);
        memcpy(item, p, len);
        item[len] = '\0';
        out[n++] = parse_long(flag, item, lo, hi);
        p += len;
        if (*p == '\0') return n;
    }
}

// The running binary's path into buf (size bytes): /proc/self/exe on Linux,
// _NSGetExecutablePath on macOS, else argv[0] when it names a path (holds a '/'). 0 on success.
static int exe_path(char *buf, size_t size, const char *argv0) {
#if defined(__linux__)
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0) {
        buf[n] = '\0';
        return 0;
    }
#elif defined(__APPLE__)
    uint32_t n = (uint32_t)size;
    if (_NSGetExecutablePath(buf, &n) == 0) return 0;
#endif
    if (!argv0 || !strchr(argv0, '/') || strlen(argv0) >= size) return -1;
    memcpy(buf, argv0, strlen(argv0) + 1);
    return 0;
}

// DEFAULT_MODEL in the directory of the running binary (exe_path), else relative to the
// current directory; NULL if neither exists.
static const char *default_model(const char *argv0) {
    static char path[PATH_MAX];
    if (exe_path(path, sizeof path, argv0) == 0) {
        char *slash = strrchr(path, '/');
        if (slash && (size_t)(slash + 1 - path) + sizeof DEFAULT_MODEL <= sizeof path) {
            memcpy(slash + 1, DEFAULT_MODEL, sizeof DEFAULT_MODEL);
            if (access(path, F_OK) == 0) return path;
        }
    }
    return access(DEFAULT_MODEL, F_OK) == 0 ? DEFAULT_MODEL : NULL;
}

// The model's recommended sampling (export stores it from GGUF or generation_config.json) in
// place of the defaults, for each value the command line does not give; one line on stderr
// says what was taken.
static void take_recommended(Options *o, const SlHeader *h) {
    SlHeader used = *h;
    used.sampling_set &= ~o->sampling_given;
    if (!used.sampling_set) return;
    if (used.sampling_set & SL_SAMPLE_TEMPERATURE) o->temperature = h->sample_temperature;
    if (used.sampling_set & SL_SAMPLE_TOP_P) o->top_p = h->sample_top_p;
    if (used.sampling_set & SL_SAMPLE_TOP_K) o->top_k = h->sample_top_k;
    if (used.sampling_set & SL_SAMPLE_MIN_P) o->min_p = h->sample_min_p;
    if (used.sampling_set & SL_SAMPLE_REPEAT_PENALTY) o->repeat_penalty = h->sample_repeat_penalty;
    char text[160];
    model_sampling_text(&used, text, sizeof text);
    fprintf(stderr, "run: sampling as the model recommends: %s (options on the command line "
            "override it)\n", text);
}

static Options parse_args(int argc, char **argv) {
    Options o = {.mode = "generate", .temperature = 1.0f, .top_p = 0.9f, .prompt = "",
                 .repeat_penalty = 1.0f, .repeat_last_n = 64, .host = "127.0.0.1", .port = 8080,
                 .parallel = 4, .queue = 64, .timeout = 30};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o.b = (BenchOptions){.threads = {cpus > 0 && cpus <= 1024 ? (int)cpus : 1}, .n_threads = 1,
                         .pp = {128, 512, 2048}, .n_pp = 3, .pp_default = 1,
                         .tg = 128, .reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o.model_path) usage_error("unexpected argument '%s'%s", a, "");
            o.model_path = a;
            continue;
        }
        if (strcmp(a, "--bench") == 0 || strcmp(a, "--json") == 0) {
            *(a[2] == 'b' ? &o.bench : &o.b.json) = 1;
            continue;
        }
        if (strcmp(a, "--context-shift") == 0) {
            o.context_shift = 1;
            continue;
        }
        if (strcmp(a, "--think") == 0) {
            o.think = 1;
            continue;
        }
        int is_long = !strcmp(a, "--pp") || !strcmp(a, "--tg") || !strcmp(a, "--reps");
        int is_word = !strcmp(a, "--kv") || !strcmp(a, "--ppl") || !strcmp(a, "--attn-map") ||
                      !strcmp(a, "--attn-dump") || !strcmp(a, "--chat-template") ||
                      !strcmp(a, "--date");
        int is_sampling = !strcmp(a, "--min-p") || !strcmp(a, "--repeat-penalty") ||
                          !strcmp(a, "--repeat-last-n");
        int is_serve = !strcmp(a, "--host") || !strcmp(a, "--port") || !strcmp(a, "--parallel") ||
                       !strcmp(a, "--queue") || !strcmp(a, "--api-key") || !strcmp(a, "--timeout");
        if (!is_long && !is_word && !is_sampling && !is_serve &&
            (a[2] != '\0' || !strchr("tpksnizTmyc", a[1])))
            usage_error("unknown option '%s'%s", a, "");
        if (i + 1 >= argc) usage_error("%s needs a value%s", a, "");
        const char *v = argv[++i];
        if (is_serve) {
            if (!o.serve_flag) o.serve_flag = a;
            if (!strcmp(a, "--host") || !strcmp(a, "--api-key")) {
                if (*v == '\0') usage_error("%s needs a value, not ''%s", a, "");
                *(a[2] == 'h' ? &o.host : &o.api_key) = v;
            } else if (!strcmp(a, "--port")) {
                o.port = parse_long(a, v, 0, 65535);
            } else if (!strcmp(a, "--parallel")) {
                o.parallel = parse_long(a, v, 1, SERVE_MAX_PARALLEL);
            } else if (!strcmp(a, "--queue")) {
                o.queue = parse_long(a, v, 0, 65536);
            } else {
                o.timeout = parse_long(a, v, 1, 3600);
            }
            continue;
        }
        if (!strcmp(a, "--ppl") || !strcmp(a, "--attn-map") || !strcmp(a, "--attn-dump")) {
            if (*v == '\0') usage_error("%s needs a file name, not ''%s", a, "");
            *(a[2] == 'p' ? &o.ppl_path : a[7] == 'm' ? &o.attn_map : &o.attn_dump) = v;
            continue;
        }
        if (!strcmp(a, "--date")) {
            if (*v == '\0' || strlen(v) > 64) usage_error("--date: expected a date such as \"26 Jul 2024\", not '%s'%s", v, "");
            o.date = v;
            continue;
        }
        if (!strcmp(a, "--chat-template")) {
            if (template_by_name(v) < 0)
                usage_error("--chat-template: unknown template '%s', expected one of %s", v,
                            TPL_NAMES);
            o.chat_template = v;
            continue;
        }
        if (!strcmp(a, "--kv")) {
            if (strcmp(v, "f32") != 0 && strcmp(v, "f16") != 0)
                usage_error("--kv: unknown type '%s', expected f32 or f16%s", v, "");
            o.kv_type = v[1] == '3' ? ATTN_KV_F32 : ATTN_KV_F16;
            o.b.kv_type = o.kv_type;
            continue;
        }
        if (!strcmp(a, "--min-p")) {
            o.min_p = parse_float(a, v, 0.0f, 1.0f);
            o.sampling_given |= SL_SAMPLE_MIN_P;
            continue;
        }
        if (!strcmp(a, "--repeat-penalty")) {
            o.repeat_penalty = parse_positive(a, v);
            o.sampling_given |= SL_SAMPLE_REPEAT_PENALTY;
            continue;
        }
        if (!strcmp(a, "--repeat-last-n")) {
            o.repeat_last_n = parse_long(a, v, -1, INT_MAX);
            continue;
        }
        if (!strcmp(a, "--pp")) {
            o.b.n_pp = parse_list(a, v, o.b.pp, BENCH_MAX_PP, 1, 1 << 20);
            o.b.pp_default = 0;
            continue;
        }
        if (is_long) {
            long *dst = a[2] == 't' ? &o.b.tg : &o.b.reps;
            *dst = parse_long(a, v, 1, 1 << 20);
            continue;
        }
        switch (a[1]) {
        case 't':
            o.temperature = parse_float(a, v, 0.0f, INFINITY);
            o.sampling_given |= SL_SAMPLE_TEMPERATURE;
            break;
        case 'p':
            o.top_p = parse_float(a, v, 0.0f, 1.0f);
            o.sampling_given |= SL_SAMPLE_TOP_P;
            break;
        case 'k':
            o.top_k = (int)parse_long(a, v, 0, INT_MAX);
            o.sampling_given |= SL_SAMPLE_TOP_K;
            break;
        case 's': o.seed = parse_u64(a, v); break;
        case 'n': o.steps = parse_long(a, v, 1, INT_MAX); break;
        case 'c': o.n_ctx = (int)parse_long(a, v, 1, INT_MAX); break;
        case 'i': o.prompt = v; break;
        case 'z': o.tokenizer_path = v; break;
        case 'y': o.system = v; break;
        case 'T': {
            long th[BENCH_MAX_THREADS];
            o.b.n_threads = parse_list("-T", v, th, BENCH_MAX_THREADS, 1, 1024);
            for (int k = 0; k < o.b.n_threads; k++) o.b.threads[k] = (int)th[k];
            break;
        }
        case 'm':
            if (strcmp(v, "generate") != 0 && strcmp(v, "tokenize") != 0 && strcmp(v, "chat") != 0 &&
                strcmp(v, "serve") != 0)
                usage_error("-m: unknown mode '%s', expected generate, tokenize, chat or serve%s",
                            v, "");
            o.mode = v;
            break;
        }
    }
    if (!o.model_path && !(o.model_path = default_model(argv[0])))
        usage_error("no model file given, and the default model %s is in neither run's "
                    "directory nor the current one%s", DEFAULT_MODEL, "");
    if (!o.bench && o.b.n_threads > 1) usage_error("-T: a list of thread counts needs --bench%s%s", "", "");
    if (o.bench && o.ppl_path) usage_error("--bench and --ppl: pick one%s%s", "", "");
    if (o.bench && o.n_ctx) usage_error("-c is not for --bench (its --pp and --tg set the positions)%s%s", "", "");
    int chat = strcmp(o.mode, "chat") == 0, serve = strcmp(o.mode, "serve") == 0;
    if (!serve && o.serve_flag) usage_error("%s is for the server: add -m serve%s", o.serve_flag, "");
    if (serve && (o.bench || o.ppl_path || o.attn_map || o.attn_dump || o.system || o.think ||
                  o.date || o.tokenizer_path || o.steps || o.context_shift || *o.prompt))
        usage_error("-m serve: not with %s (a request says what it needs)%s",
                    o.bench ? "--bench" : o.ppl_path ? "--ppl" : o.attn_map ? "--attn-map"
                    : o.attn_dump ? "--attn-dump" : o.system ? "-y" : o.think ? "--think"
                    : o.date ? "--date" : o.tokenizer_path ? "-z" : o.steps ? "-n"
                    : o.context_shift ? "--context-shift" : "-i", "");
    if (!chat && !serve && (o.system || o.chat_template || o.think || o.date))
        usage_error("%s is for chat mode: add -m chat%s",
                    o.system ? "-y" : o.chat_template ? "--chat-template" : o.think ? "--think" : "--date", "");
    if (chat && (o.bench || o.ppl_path))
        usage_error("-m chat: not with %s%s", o.bench ? "--bench" : "--ppl", "");
    if ((o.attn_map || o.attn_dump) &&
        (o.bench || o.ppl_path || !(chat || strcmp(o.mode, "generate") == 0)))
        usage_error("%s records a generation: not with --bench, --ppl or -m tokenize%s",
                    o.attn_map ? "--attn-map" : "--attn-dump", "");
    if (o.attn_map && o.attn_dump && strcmp(o.attn_map, o.attn_dump) == 0)
        usage_error("--attn-map and --attn-dump name the same file '%s'%s", o.attn_map, "");
    return o;
}

// Encodes the prompt, with BOS first unless the model says its prompts start without one.
// Returns the ids (caller frees) or NULL after a message.
static int *encode_prompt(const SlHeader *h, const Tokenizer *tok, const char *prompt, size_t *n) {
    size_t len = strlen(prompt), cap = tokenizer_max_tokens(tok, len);
    int *ids = malloc(cap * sizeof(int));
    int bos = !(h->flags & SL_FLAG_NO_BOS);
    if (!ids || tokenizer_encode(tok, prompt, len, bos, 0, ids, cap, n) != TOK_OK) {
        fprintf(stderr, "run: out of memory encoding a %zu-byte prompt\n", len);
        free(ids);
        return NULL;
    }
    return ids;
}

static int tokenize(const SlHeader *h, const Tokenizer *tok, const char *prompt) {
    size_t n;
    int *ids = encode_prompt(h, tok, prompt, &n);
    if (!ids) return 1;
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

// --attn-map, --attn-dump: the weights of every position that ran, and every token.
typedef struct {
    AttnMap map;
    int *ids;  // the prompt's tokens (BOS first), then each one sampled
    size_t n_ids;
} Recording;

// Starts recording a generation of up to `steps` positions. Returns 0, or 1 after a message.
static int recording_start(Recording *r, Transformer *t, const int *prompt, size_t n_prompt,
                           long steps) {
    const SlHeader *h = &t->model.header;
    memset(r, 0, sizeof *r);
    if (attnmap_build(&r->map, (size_t)h->n_layers, (size_t)h->n_heads, (size_t)steps) != 0)
        return 1;
    if (!(r->ids = malloc(((size_t)steps + 1) * sizeof(int)))) {
        fprintf(stderr, "run: out of memory for the attention recording\n");
        return 1;
    }
    memcpy(r->ids, prompt, n_prompt * sizeof(int));
    r->n_ids = n_prompt;
    return transformer_record(t, attnmap_sink, &r->map) == MODEL_OK ? 0 : 1;
}

// Writes the files asked for. Returns 0, or 1 after a message.
static int recording_save(const Recording *r, const Transformer *t, const Tokenizer *tok,
                          const Options *o, size_t n_prompt) {
    const char *slash = strrchr(o->model_path, '/');
    AttnPage page = {.model = slash ? slash + 1 : o->model_path, .prompt = o->prompt,
                     .n_kv_heads = (size_t)t->model.header.n_kv_heads, .n_prompt = n_prompt,
                     .ids = r->ids, .n_ids = r->n_ids, .tok = tok};
    if (o->attn_dump && attnmap_write_dump(&r->map, o->attn_dump, r->ids, n_prompt) != 0) return 1;
    if (o->attn_map && attnmap_write_page(&r->map, o->attn_map, &page) != 0) return 1;
    fprintf(stderr, "attention: %zu positions x %zu layers x %zu heads written to %s%s%s\n",
            r->map.n_rows, r->map.n_layers, r->map.n_heads, o->attn_map ? o->attn_map : "",
            o->attn_map && o->attn_dump ? " and " : "", o->attn_dump ? o->attn_dump : "");
    return 0;
}

static void recording_free(Recording *r) {
    attnmap_free(&r->map);
    free(r->ids);
}

static void record_shift(void *ctx, size_t keep, size_t drop) {
    attnmap_shift(&((Recording *)ctx)->map, keep, drop);
}

// Generate mode: the prompt, then one token at a time through the session (runtime/session.h).
static int generate(Session *ss, const Options *o, long steps) {
    Transformer *t = ss->t;
    const Tokenizer *tok = ss->tok;
    const SlHeader *h = &t->model.header;
    const char *prompt = o->prompt;
    size_t n_prompt;
    int *ids = encode_prompt(h, tok, prompt, &n_prompt);
    if (!ids) return 1;
    if (n_prompt == 0) {
        fprintf(stderr, "run: the prompt is empty and this model's prompts start without BOS, so "
                        "there is nothing to run: give one with -i\n");
        free(ids);
        return EXIT_USAGE;
    }
    if (n_prompt > (size_t)h->seq_len) {
        fprintf(stderr, "run: the prompt is %zu tokens, longer than the context of %d\n",
                n_prompt, h->seq_len);
        free(ids);
        return 1;
    }
    if (n_prompt > (size_t)steps) {
        fprintf(stderr, "run: -n: the prompt is %zu tokens, more than the %ld positions of -n\n",
                n_prompt, steps);
        usage(stderr);
        free(ids);
        return EXIT_USAGE;
    }
    Recording rec, *r = o->attn_map || o->attn_dump ? &rec : NULL;
    if (r && recording_start(r, t, ids, n_prompt, steps) != 0) {
        recording_free(r);
        free(ids);
        return 1;
    }
    if (r) ss->sink = attnmap_sink, ss->sink_ctx = &r->map, ss->on_shift = record_shift, ss->hook_ctx = r;
    ss->context_shift = o->context_shift;  // --context-shift: keep the sinks, drop half the rest
    if (session_feed(ss, ids, n_prompt) != 0) {
        fprintf(stderr, "run: out of memory for the prompt\n");
        if (r) recording_free(r);
        free(ids);
        return 1;
    }
    // the prompt goes through as one batch (in chunks of the batch); its text is echoed as
    // llama2.c echoes it
    double t0 = clock_now();
    while (ss->n_pending) session_step(&ss, 1, 0);
    double t1 = clock_now();
    for (size_t i = h->flags & SL_FLAG_NO_BOS ? 0 : 1; i < n_prompt; i++) {  // BOS prints nothing
        size_t len;
        const char *piece = tokenizer_decode(tok, i ? ids[i - 1] : -1, ids[i], &len);
        term_write_piece(piece, len);
    }
    fflush(stdout);
    // then one token per step, up to `steps` positions in all: the last token sampled is
    // printed but never runs
    SessionLimits lim = {.max_tokens = steps - (long)n_prompt + 1};
    size_t decoded = 0;
    session_begin(ss, &lim);
    while (ss->finish == SESSION_RUNNING) {
        decoded += session_step(&ss, 1, 0);
        if (!ss->piece) continue;
        term_write_piece(ss->piece, ss->piece_len);
        fflush(stdout);
        if (r) r->ids[r->n_ids++] = ss->token;
    }
    putchar('\n');
    fflush(stdout);
    double t2 = clock_now();
    fprintf(stderr, "prompt: %zu tokens, %.1f tok/s | generation: %zu tokens, %.1f tok/s\n",
            n_prompt, (double)n_prompt / (t1 - t0), decoded,
            decoded ? (double)decoded / (t2 - t1) : 0.0);
    int rc = ss->oom ? (fprintf(stderr, "run: out of memory for the generated text\n"), 1) : 0;
    if (!rc && r) rc = recording_save(r, t, tok, o, n_prompt);
    if (r) recording_free(r);
    free(ids);
    return rc;
}

// -m chat: the template (--chat-template, else the model's), then the conversation on stdin.
static int chat(Session *ss, const Options *o) {
    Transformer *t = ss->t;
    char default_system[TPL_SYSTEM_MAX];
    int kind = chat_template_kind(&t->model, o->chat_template, default_system,
                                  sizeof default_system);
    if (kind < 0) return EXIT_USAGE;
    const char *slash = strrchr(o->model_path, '/');
    ChatOptions co = {.system = o->system, .first = o->prompt, .template_kind = kind,
                      .default_system = default_system, .think = o->think, .date = o->date,
                      .max_reply = o->steps ? o->steps : t->model.header.seq_len,
                      .model_name = slash ? slash + 1 : o->model_path,
                      .attn_map = o->attn_map, .attn_dump = o->attn_dump};
    chat_install_sigint();  // after outfile_install_cleanup: Ctrl-C stops a reply instead
    return chat_run(ss, &co, STDIN_FILENO);
}

// -m serve: SIGINT and SIGTERM stop the server; a client gone mid-write is an error, not a
// signal.
static volatile sig_atomic_t serve_stop;

static void on_stop_signal(int sig) {
    (void)sig;
    serve_stop = 1;
}

static int serve(const Options *o) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    ServeOptions so = {.model_path = o->model_path, .host = o->host, .port = (int)o->port,
                       .parallel = (size_t)o->parallel, .queue = (size_t)o->queue,
                       .api_key = o->api_key, .timeout_s = (int)o->timeout,
                       .chat_template = o->chat_template, .n_ctx = o->n_ctx,
                       .kv_type = o->kv_type, .sampling_given = o->sampling_given,
                       .sampling = {.temperature = o->temperature, .top_p = o->top_p,
                                    .top_k = o->top_k, .min_p = o->min_p,
                                    .repeat_penalty = o->repeat_penalty,
                                    .repeat_last_n = o->repeat_last_n > INT_MAX
                                                         ? INT_MAX : (int)o->repeat_last_n,
                                    .seed = o->seed}};
    Pool *pool = pool_create(o->b.threads[0]);
    if (!pool) return 1;
    int rc = serve_run(&so, pool, &serve_stop);
    pool_destroy(pool);
    return rc;
}

int main(int argc, char **argv) {
    Options o = parse_args(argc, argv);
    if (o.bench) return bench_run(o.model_path, &o.b);
    if (strcmp(o.mode, "serve") == 0) return serve(&o);
    int tokenize_only = strcmp(o.mode, "tokenize") == 0;
    Transformer t;
    Pool *pool = NULL;
    int err;
    if (tokenize_only) {
        err = model_open(&t.model, o.model_path, 0);
    } else {
        if (!(pool = pool_create(o.b.threads[0]))) return 1;
        err = transformer_build_ctx(&t, o.model_path, pool, o.kv_type, o.n_ctx, 0);
    }
    if (err != MODEL_OK) {
        pool_destroy(pool);
        return 1;
    }
    const SlHeader *h = &t.model.header;
    Tokenizer override, *tok = &t.model.tokenizer;
    int rc = 0;
    if (o.tokenizer_path) {
        if (tokenizer_read_bin(&override, o.tokenizer_path, h->vocab_size, h->bos_id, h->eos_id))
            rc = 1;
        tok = &override;
    }
    long steps = o.steps ? o.steps : (h->seq_len < 256 ? h->seq_len : 256);
    if (!rc && !tokenize_only && !o.ppl_path) take_recommended(&o, h);  // generate, chat
    if (rc) {
        // the tokenizer said why
    } else if (tokenize_only) {
        rc = tokenize(h, tok, o.prompt);
    } else if (o.ppl_path && o.context_shift) {
        PplResult in, past;
        if ((rc = ppl_measure_stream(&t, tok, o.ppl_path, &in, &past)) == 0) {
            printf("perplexity %.4f, mean NLL %.5f nats over the %zu tokens of the first context\n",
                   in.ppl, in.nll, in.tokens);
            if (past.tokens)
                printf("perplexity %.4f, mean NLL %.5f nats over the %zu tokens after it (%zu "
                       "context shifts)\n", past.ppl, past.nll, past.tokens, past.windows);
            else
                printf("the text fits in one context: no shift\n");
        }
    } else if (o.ppl_path) {
        PplResult r;
        double t0 = clock_now();
        if ((rc = ppl_measure(&t, tok, o.ppl_path, &r)) == 0) {
            printf("perplexity %.4f, mean NLL %.5f nats over %zu tokens (%zu windows of up to %d)\n",
                   r.ppl, r.nll, r.tokens, r.windows, h->seq_len);
            fprintf(stderr, "scored %zu tokens in %.2f s\n", r.tokens, clock_now() - t0);
        }
    } else if (o.steps > h->seq_len && !o.context_shift && strcmp(o.mode, "chat") != 0) {
        fprintf(stderr, "run: -n: %ld is beyond the context of %d positions (--context-shift "
                "goes on past it)\n", o.steps, h->seq_len);
        usage(stderr);
        rc = EXIT_USAGE;
    } else {
        // the context never holds more than seq_len tokens: -1 and larger windows are it
        SessionSampling sp = {o.temperature, o.top_p, o.top_k, o.min_p, o.repeat_penalty,
                              (int)o.repeat_last_n, o.seed ? o.seed : (uint64_t)time(NULL)};
        Session ss;
        if (session_init(&ss, &t, tok, NULL) != 0 || session_set_sampling(&ss, &sp) != 0) {
            fprintf(stderr, "run: out of memory for the sampler\n");
            rc = 1;
        } else {
            if (o.attn_map || o.attn_dump) outfile_install_cleanup();
            rc = strcmp(o.mode, "chat") == 0 ? chat(&ss, &o) : generate(&ss, &o, steps);
        }
        session_free(&ss);
    }
    if (o.tokenizer_path) tokenizer_free(&override);  // safe after a failed load too
    tokenize_only ? model_close(&t.model) : transformer_free(&t);
    pool_destroy(pool);
    return rc;
}

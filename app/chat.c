// chat.c: run -m chat (see chat.h).
#define _POSIX_C_SOURCE 200809L
#include "app/chat.h"

#include <sys/select.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/attnmap.h"
#include "app/template.h"
#include "app/term.h"
#include "base/clock.h"
#include "tokenizer/unicode.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

void chat_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a read blocked at the prompt returns EINTR
    sigaction(SIGINT, &sa, NULL);
}

int chat_template_kind(const Model *m, const char *name, char *default_system, size_t cap) {
    if (default_system && cap) default_system[0] = '\0';
    int found = m->chat_template && m->chat_template_bytes
                    ? template_detect(m->chat_template, m->chat_template_bytes, default_system, cap)
                    : -1;
    if (name) {
        int k = template_by_name(name);
        if (k < 0)
            fprintf(stderr, "run: --chat-template: unknown template '%s', expected one of "
                    TPL_NAMES "\n", name);
        else if (k != found && default_system && cap)
            default_system[0] = '\0';  // the default system text is the stored template's
        return k;
    }
    if (found < 0)
        fprintf(stderr, "run: %s: name one with --chat-template (" TPL_NAMES ")\n",
                m->chat_template && m->chat_template_bytes
                    ? "the model's chat template is of no family run knows"
                    : "the model file has no chat template");
    return found;
}

// Whether token id is one that chat_encode matches in the text: a control, user-defined or
// unknown token, as llama.cpp's special-token partition takes them.
static int is_special(const Tokenizer *t, int id) {
    return (t->types[id] == TOK_CONTROL || t->types[id] == TOK_USER ||
            t->types[id] == TOK_UNKNOWN) && t->lens[id] > 0;
}

int chat_encode(const Tokenizer *t, const char *text, size_t len, int **out, size_t *n) {
    *out = NULL, *n = 0;
    // sentencepiece: at most a token per byte, and a dummy prefix per piece between specials
    size_t cap = t->kind == TOK_BPE ? tokenizer_max_tokens(t, len) : 2 * len + 3;
    int *ids = malloc(cap * sizeof(int)), *sp_ids = NULL;
    if (!ids) return -1;
    if (t->kind == TOK_BPE) {  // it matches its special tokens itself
        if (tokenizer_encode(t, text, len, 0, 0, ids, cap, n) != TOK_OK) goto fail;
        *out = ids;
        return 0;
    }
    // sentencepiece: cut at the special tokens (the longest at a position), each piece between
    // them encoded on its own, as the `tokenizers` library encodes the text between added
    // tokens: the normalizer's dummy prefix (legacy: Llama 2's Prepend) on every piece, and
    // Metaspace's prepend_scheme "first" on the piece at the very start only (checked against
    // the library: tests/fixtures/spm-special.txt)
    Tokenizer later = *t;  // a shallow copy, read only: the flags of a piece after the first
    if (later.flags & TOK_FLAG_PREFIX_FIRST)
        later.flags = (later.flags & ~TOK_FLAG_PREFIX_FIRST) | TOK_FLAG_PREFIX_NEVER;
    size_t k = 0, n_sp = 0;
    if (!(sp_ids = malloc((size_t)t->vocab_size * sizeof(int)))) goto fail;
    for (int id = 0; id < t->vocab_size; id++)
        if (is_special(t, id)) sp_ids[n_sp++] = id;
    for (size_t start = 0, i = 0; start <= len;) {
        int sp = -1;
        for (; i < len && sp < 0; i++)
            for (size_t j = 0; j < n_sp; j++) {
                int id = sp_ids[j];
                if (t->lens[id] <= len - i && memcmp(t->pieces[id], text + i, t->lens[id]) == 0 &&
                    (sp < 0 || t->lens[id] > t->lens[sp]))
                    sp = id;
            }
        size_t end = sp >= 0 ? i - 1 : len, got = 0;
        if (end > start &&
            tokenizer_encode(start ? &later : t, text + start, end - start, 0, 0, ids + k,
                             cap - k, &got) != TOK_OK)
            goto fail;
        k += got;
        if (sp < 0) break;
        ids[k++] = sp;
        start = i = end + t->lens[sp];
    }
    free(sp_ids);
    *out = ids, *n = k;
    return 0;
fail:
    free(sp_ids);
    free(ids);
    return -1;
}

// The offset of the first byte that is not part of well-formed UTF-8 (no overlongs, no
// surrogates, nothing above U+10FFFF), or n.
static size_t utf8_bad(const unsigned char *s, size_t n) {
    for (size_t i = 0, k; i < n; i += k) {
        uint32_t cp;
        k = utf8_decode((const char *)s + i, n - i, &cp);
        if (cp == UNI_INVALID) return i;
    }
    return n;
}

// A growable byte string.
typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_add(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

// --attn-map, --attn-dump over the whole conversation: the map grows as it goes.
typedef struct {
    AttnMap map;
    int *ids;  // the token of every position that ran, in order
    size_t n_ids, cap_ids;
    size_t n_prompt;  // the first turn's tokens
    int on;
} Rec;

typedef struct {
    Session *ss;             // the cache, its length (ss->pos), its ids, the sampler
    Transformer *t;
    const Tokenizer *tok;
    const ChatOptions *o;
    size_t seq, drop;        // the context, what a shift drops
    Rec *rec;
    Buf fed;                 // the text in the cache: the last rendering, then its reply
    ChatMsg *msgs;
    size_t n_msgs, cap_msgs;
    int oom;
} Chat;

static void rec_stop(Chat *c, const char *why) {
    if (!c->rec || !c->rec->on) return;
    fprintf(stderr, "run: the attention recording stops at %zu positions: %s\n",
            c->rec->map.n_rows, why);
    c->ss->sink = NULL;
    c->rec->on = 0;
}

// Makes room to record n more positions with ids (the session's on_run).
static void rec_prepare(void *ctx, const int *ids, size_t n) {
    Chat *c = ctx;
    Rec *r = c->rec;
    if (!r || !r->on) return;
    size_t need = c->ss->pos + r->map.dropped + n;
    if (need > r->map.cap) {
        size_t cap = r->map.cap * 2 > need ? r->map.cap * 2 : need;
        AttnMap m;
        if (attnmap_build(&m, r->map.n_layers, r->map.n_heads, cap) != 0) {
            rec_stop(c, "no room for more");
            return;
        }
        size_t oldt = r->map.cap * (r->map.cap + 1) / 2, newt = cap * (cap + 1) / 2;
        size_t rows = r->map.n_rows * (r->map.n_rows + 1) / 2;
        for (size_t i = 0; i < r->map.n_layers * r->map.n_heads; i++)
            memcpy(m.w + i * newt, r->map.w + i * oldt, rows * sizeof(float));
        m.n_rows = r->map.n_rows, m.keep = r->map.keep, m.dropped = r->map.dropped;
        free(r->map.w);
        r->map = m;  // the sink's context is &r->map: the same address
    }
    if (r->n_ids + n > r->cap_ids) {
        size_t cap = r->cap_ids * 2 > r->n_ids + n ? r->cap_ids * 2 : r->n_ids + n;
        int *p = realloc(r->ids, cap * sizeof(int));
        if (!p) {
            rec_stop(c, "out of memory");
            return;
        }
        r->ids = p, r->cap_ids = cap;
    }
    memcpy(r->ids + r->n_ids, ids, n * sizeof(int));
    r->n_ids += n;
}

// Whether a shift can make room: the cache holds the sinks and at least what a shift drops
// (and, with windowed caches, the next window lies past the sinks): session_shift's test.
static int can_shift(const Chat *c, size_t cpos) {
    return c->drop > 0 && cpos >= SHIFT_SINKS + c->drop &&
           transformer_can_shift_kv(c->t, c->ss->kv, cpos, SHIFT_SINKS, c->drop);
}

// The session's on_shift: the recording follows the cache.
static void rec_shift(void *ctx, size_t keep, size_t drop) {
    Chat *c = ctx;
    if (c->rec && c->rec->on) attnmap_shift(&c->rec->map, keep, drop);
}

// Runs n tokens at the end of the cache (pos + n <= seq) and whatever was pending before them
// (a reply's last token); returns the last one's logits. The sampler's window takes them in.
static float *run_tokens(Chat *c, const int *ids, size_t n) {
    if (session_feed(c->ss, ids, n) != 0) return NULL;
    while (c->ss->n_pending) session_step(&c->ss, 1, 0);
    return c->ss->has_logits ? c->ss->logits : NULL;
}

static int push_msg(Chat *c, const char *role, const char *content, size_t len) {
    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? 2 * c->cap_msgs : 16;
        ChatMsg *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return -1;
        c->msgs = m, c->cap_msgs = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return -1;
    memcpy(s, content, len);
    s[len] = '\0';
    c->msgs[c->n_msgs++] = (ChatMsg){role, s};
    return 0;
}

static void pop_msg(Chat *c) {
    free((char *)c->msgs[--c->n_msgs].content);
}

// No BOS: the template writes it (bos_token) where the model expects it.
static int *encode(Chat *c, const char *text, size_t len, size_t *n) {
    int *ids;
    return chat_encode(c->tok, text, len, &ids, n) == 0 ? ids : NULL;
}

static const char *piece_text(const Tokenizer *tok, int id) {
    return id >= 0 && id < tok->vocab_size ? tok->pieces[id] : NULL;
}

// One turn: feeds its new tokens, streams the reply. Returns 0 (also when the turn is dropped,
// after a line), or -1 when out of memory.
static int turn(Chat *c, const char *user, size_t ulen, size_t no) {
    const SlHeader *h = &c->t->model.header;
    size_t bad = utf8_bad((const unsigned char *)user, ulen);
    if (bad < ulen) {
        fprintf(stderr, "run: turn %zu is not valid UTF-8 (byte %zu): dropped\n", no, bad + 1);
        return 0;
    }
    if (push_msg(c, "user", user, ulen) != 0) return -1;
    const Model *m = &c->t->model;
    char today[32];
    TplOptions to = {.add_generation_prompt = 1, .think = c->o->think,
                     .bos = piece_text(c->tok, h->bos_id), .eos = piece_text(c->tok, h->eos_id),
                     .default_system = c->o->system ? NULL : c->o->default_system,
                     .date = c->o->date ? c->o->date
                                        : template_today(m->chat_template, m->chat_template_bytes,
                                                         today, sizeof today)};
    char *text, err[256];
    size_t tlen;
    if (template_render(c->o->template_kind, c->msgs, c->n_msgs, &to, &text, &tlen, err,
                        sizeof err) != 0) {
        fprintf(stderr, "run: turn %zu: the chat template fails: %s: dropped\n", no, err);
        pop_msg(c);
        return 0;
    }
    double t0 = clock_now();
    size_t n = 0, fed_new = 0, from = SIZE_MAX;  // from: where a re-rendered history runs again
    int *ids = NULL;
    float *logits = NULL;
    int extends = c->fed.n <= tlen && (c->fed.n == 0 || memcmp(text, c->fed.p, c->fed.n) == 0);
    Session *ss = c->ss;
    if (extends) {  // the usual case: feed the text past what the cache holds
        if (!(ids = encode(c, text + c->fed.n, tlen - c->fed.n, &n))) goto oom;
        size_t cpos = ss->pos;
        while (cpos + n > c->seq && can_shift(c, cpos)) cpos -= c->drop;
        if (cpos + n > c->seq) {
            fprintf(stderr, "run: turn %zu is %zu tokens with the template's, more than the "
                    "context of %zu can take: dropped\n", no, n, c->seq);
            free(ids), free(text);
            pop_msg(c);
            return 0;
        }
        while (ss->pos + n > c->seq) session_shift(ss);
        if (n) logits = run_tokens(c, ids, n);
        fed_new = n;
    }
    if (!logits) {
        // The template renders the history differently from what the cache holds (Qwen3 drops
        // the think blocks of earlier replies; Llama 3 trims them): feed the whole rendering
        // again from the first token where it differs from the cache (from the start after a
        // shift, when the cache no longer holds the start). Correct, and slower.
        free(ids);
        if (!(ids = encode(c, text, tlen, &n))) goto oom;
        // (none after a shift; windowed caches may no longer hold what k needs)
        size_t k = session_common_prefix(ss, ids, n);
        if (k < ss->pos) rec_stop(c, "the template re-renders the history, which runs again");
        session_rewind(ss, k);
        from = k;
        for (size_t i = k; i < n;) {  // in pieces that fit, shifting as the reply does
            if (ss->pos == c->seq && !session_shift(ss)) break;
            size_t m = n - i < c->seq - ss->pos ? n - i : c->seq - ss->pos;
            logits = run_tokens(c, ids + i, m);
            i += m;
        }
        fed_new = n - k;
    }
    if (c->rec && c->rec->n_prompt == 0) c->rec->n_prompt = c->rec->n_ids;
    double t1 = clock_now();
    // the reply: each token runs as it comes, except the stop token (the next turn's text
    // brings it); the last one sampled runs before the turn ends
    size_t n_reply = 0;
    free(ids);
    if (logits) {
        SessionLimits lim = {.max_tokens = c->o->max_reply};
        session_begin(ss, &lim);
        while (ss->finish == SESSION_RUNNING && !interrupted) {
            n_reply += session_step(&ss, 1, 0);
            if (ss->piece) {
                term_write_piece(ss->piece, ss->piece_len);
                fflush(stdout);
            }
        }
        while (ss->n_pending) n_reply += session_step(&ss, 1, 0);
        if (ss->oom) {
            free(text);
            goto oom_popped;
        }
    }
    Buf reply = {ss->text, logits ? ss->text_len : 0, 0};  // not owned: the session's
    putchar('\n');
    fflush(stdout);
    double t2 = clock_now();
    if (interrupted) {
        interrupted = 0;
        fprintf(stderr, "[reply interrupted]\n");
    }
    char again[64] = "";
    if (from != SIZE_MAX) snprintf(again, sizeof again, " (the history again from %zu)", from);
    fprintf(stderr, "turn %zu: prompt %zu tokens%s, %.1f tok/s | reply %zu tokens, %.1f tok/s\n",
            no, fed_new, again, fed_new ? (double)fed_new / (t1 - t0) : 0.0, n_reply,
            n_reply ? (double)n_reply / (t2 - t1) : 0.0);
    // what the cache now holds, as text: this rendering, then the reply
    c->fed.n = 0;
    int rc = buf_add(&c->fed, text, tlen) | buf_add(&c->fed, reply.p ? reply.p : "", reply.n) |
             push_msg(c, "assistant", reply.p ? reply.p : "", reply.n);
    free(text);
    return rc ? -1 : 0;
oom:
    free(text);
    pop_msg(c);
oom_popped:
    return -1;
}

// The turns' input, read with read(2) so that Ctrl-C at the prompt is never lost: SIGINT stays
// blocked from the check of the flag until pselect waits (and unblocks it atomically).
typedef struct {
    int fd, eof;
    size_t at, n;
    char buf[4096];
} Input;

// The next byte, -1 at EOF (or a read error), -2 when Ctrl-C came.
static int input_byte(Input *in) {
    while (in->at == in->n) {
        if (in->eof) return -1;
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, &old);
        int hit = interrupted, ready = 1;
        if (!hit) {
            fd_set set;
            FD_ZERO(&set);
            FD_SET(in->fd, &set);
            sigset_t wait = old;
            sigdelset(&wait, SIGINT);
            ready = pselect(in->fd + 1, &set, NULL, NULL, NULL, &wait);
            hit = interrupted;
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (hit) return -2;
        if (ready < 0) {
            if (errno == EINTR) continue;  // another signal
            in->eof = 1;
            return -1;
        }
        ssize_t k = read(in->fd, in->buf, sizeof in->buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            in->eof = 1;
            return -1;
        }
        in->at = 0, in->n = (size_t)k;
    }
    return (unsigned char)in->buf[in->at++];
}

// Reads one turn. Returns 1 with the turn in *turn, 0 at EOF with nothing read (or out of
// memory), -1 after Ctrl-C at an empty prompt.
static int read_turn(Input *in, Buf *turn, Buf *line, int interactive) {
    FILE *ui = isatty(fileno(stdout)) ? stdout : stderr;  // the prompt: never into a pipe
    turn->n = 0;
    if (buf_add(turn, "", 0) != 0) return 0;
    for (;;) {
        if (interactive) {
            fputs(turn->n ? "... " : "> ", ui);
            fflush(ui);
        }
        line->n = 0;
        int ch;
        while ((ch = input_byte(in)) >= 0 && ch != '\n') {
            char b = (char)ch;
            if (buf_add(line, &b, 1) != 0) return 0;
        }
        if (ch == -2) {  // Ctrl-C: leave at an empty prompt, else drop the unfinished turn
            interrupted = 0;
            if (interactive) fputc('\n', ui);
            if (turn->n == 0) return -1;
            turn->n = 0;
            continue;
        }
        if (ch == -1 && line->n == 0) {  // EOF
            if (interactive) fputc('\n', ui);
            return turn->n ? 1 : 0;
        }
        size_t len = line->n;
        if (len && line->p[len - 1] == '\r') len--;
        int more = len && line->p[len - 1] == '\\' && ch != -1;
        if (buf_add(turn, line->p, len - (size_t)more) != 0 || (more && buf_add(turn, "\n", 1)))
            return 0;
        if (more) continue;
        if (turn->n == 0) continue;  // an empty line is no turn
        return 1;
    }
}

static int rec_save(Chat *c) {
    Rec *r = c->rec;
    const ChatOptions *o = c->o;
    AttnPage page = {.model = o->model_name, .prompt = o->system ? o->system : "",
                     .n_kv_heads = (size_t)c->t->model.header.n_kv_heads,
                     .n_prompt = r->n_prompt, .ids = r->ids, .n_ids = r->n_ids, .tok = c->tok};
    if (r->map.n_rows == 0) {
        fprintf(stderr, "run: nothing ran: no attention to write\n");
        return 0;
    }
    if (o->attn_dump && attnmap_write_dump(&r->map, o->attn_dump, r->ids, r->n_prompt) != 0)
        return 1;
    if (o->attn_map && attnmap_write_page(&r->map, o->attn_map, &page) != 0) return 1;
    fprintf(stderr, "attention: %zu positions x %zu layers x %zu heads written to %s%s%s\n",
            r->map.n_rows, r->map.n_layers, r->map.n_heads, o->attn_map ? o->attn_map : "",
            o->attn_map && o->attn_dump ? " and " : "", o->attn_dump ? o->attn_dump : "");
    return 0;
}

int chat_run(Session *ss, const ChatOptions *o, int fd) {
    Transformer *t = ss->t;
    const SlHeader *h = &t->model.header;
    Chat c = {.ss = ss, .t = t, .tok = ss->tok, .o = o, .seq = (size_t)h->seq_len};
    ss->context_shift = 1;  // past the context, chat shifts by itself
    ss->on_run = rec_prepare, ss->on_shift = rec_shift, ss->hook_ctx = &c;
    c.drop = c.seq > SHIFT_SINKS ? (c.seq - SHIFT_SINKS) / 2 : 0;
    Rec rec = {0};
    Input *in = calloc(1, sizeof *in);
    Buf line = {0}, raw = {0};
    size_t no = 0;
    int rc = 1;
    if (!in) goto oom;
    in->fd = fd;
    if (o->attn_map || o->attn_dump) {
        c.rec = &rec;
        if (attnmap_build(&rec.map, (size_t)h->n_layers, (size_t)h->n_heads, c.seq) != 0 ||
            transformer_record_buffer(t) != MODEL_OK)
            goto done;
        ss->sink = attnmap_sink, ss->sink_ctx = &rec.map;
        rec.on = 1;
    }
    if (o->system && push_msg(&c, "system", o->system, strlen(o->system)) != 0) goto oom;
    if (o->first && *o->first && turn(&c, o->first, strlen(o->first), ++no) != 0) goto oom;
    while (read_turn(in, &line, &raw, isatty(fd)) > 0)
        if (turn(&c, line.p, line.n, ++no) != 0) goto oom;
    rc = c.rec ? rec_save(&c) : 0;
    goto done;
oom:
    fprintf(stderr, "run: out of memory in the conversation\n");
    rc = 1;
done:
    ss->on_run = NULL, ss->on_shift = NULL;
    if (c.rec) {
        ss->sink = NULL;
        attnmap_free(&rec.map);
        free(rec.ids);
    }
    for (size_t i = 0; i < c.n_msgs; i++) free((char *)c.msgs[i].content);
    free(c.msgs);
    free(c.fed.p);
    free(line.p), free(raw.p), free(in);
    return rc;
}

// serve.c: run -m serve (see serve.h): the listening socket, the connection threads, routing,
// and the OpenAI response objects; the slots and the batching are engine.c's.
#define _POSIX_C_SOURCE 200809L
#include "server/serve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/chat.h"
#include "app/template.h"
#include "base/clock.h"
#include "io/strbuf.h"
#include "server/engine.h"
#include "server/http.h"
#include "server/openai.h"
#include "server/page.h"

typedef struct {
    const ServeOptions *o;
    Transformer t;
    const Tokenizer *tok;
    Engine *e;
    size_t ctx;                   // each slot's positions
    int tpl_kind;
    char default_system[TPL_SYSTEM_MAX];
    SessionSampling sampling;     // the defaults of a request
    HttpLimits lim;
    int wto;                      // write timeout, ms
    char model_name[256];
    time_t started;
    atomic_ullong counter;        // request ids and seeds
    uint64_t id_salt;
    pthread_mutex_t mu;           // guards n_conns
    pthread_cond_t cv;            // n_conns went down
    size_t n_conns, max_conns;
} Server;

typedef struct {
    Server *sv;
    int fd;
} Conn;

// What one request did, for its log line.
typedef struct {
    int status;
    size_t prompt, cached;
    long reply;
} Outcome;

// ---- responses ----

static void send_json(int fd, Server *sv, Outcome *out, int status, const StrBuf *b,
                      const char *extra) {
    out->status = status;
    if (b->oom) {
        const char *msg = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                          "\"param\":null,\"code\":500}}";
        out->status = 500;
        http_respond(fd, 500, "application/json", msg, strlen(msg), NULL, sv->wto);
        return;
    }
    http_respond(fd, status, "application/json", b->p ? b->p : "", b->n, extra, sv->wto);
}

static void send_error(int fd, Server *sv, Outcome *out, int status, const char *msg,
                       const char *extra) {
    StrBuf b = {0};
    oai_error(&b, status, msg);
    send_json(fd, sv, out, status, &b, extra);
    sb_free(&b);
}

static void send_page(int fd, Server *sv, Outcome *out) {
    StrBuf b = {0};
    for (size_t i = 0; serve_page[i]; i++) sb_adds(&b, serve_page[i]);
    out->status = b.oom ? 500 : 200;
    if (b.oom) send_error(fd, sv, out, 500, "out of memory", NULL);
    else http_respond(fd, 200, "text/html; charset=utf-8", b.p, b.n, NULL, sv->wto);
    sb_free(&b);
}

static void send_health(int fd, Server *sv, Outcome *out) {
    size_t idle, busy, queued;
    engine_stats(sv->e, &idle, &busy, &queued);
    StrBuf b = {0};
    sb_printf(&b, "{\"status\":\"ok\",\"slots_idle\":%zu,\"slots_processing\":%zu,\"queued\":%zu}",
              idle, busy, queued);
    send_json(fd, sv, out, 200, &b, NULL);
    sb_free(&b);
}

static void send_models(int fd, Server *sv, Outcome *out) {
    StrBuf b = {0};
    sb_adds(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sb_json_string(&b, sv->model_name, strlen(sv->model_name));
    sb_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"searchlight\","
                  "\"meta\":{\"n_ctx_slot\":%zu,\"n_slots\":%zu}}]}",
              (long long)sv->started, sv->ctx, sv->o->parallel);
    send_json(fd, sv, out, 200, &b, NULL);
    sb_free(&b);
}

// ---- a generation ----

static const char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void sb_base64(StrBuf *b, const unsigned char *p, size_t n) {
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        q[0] = base64_digits[v >> 18 & 63], q[1] = base64_digits[v >> 12 & 63];
        q[2] = i + 1 < n ? base64_digits[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? base64_digits[v & 63] : '=';
        sb_add(b, q, 4);
    }
}

// The attention object of a finished job.
static void attention_json(StrBuf *b, const Server *sv, const JobAttention *a) {
    sb_printf(b, "{\"object\":\"searchlight.attention\",\"n_layers\":%zu,\"n_heads\":%zu,"
                 "\"n_prompt\":%zu,\"tokens\":[", a->n_layers, a->n_heads, a->n_prompt);
    for (size_t i = 0; i < a->n; i++) {
        size_t len;
        const char *piece = tokenizer_decode(sv->tok, i ? a->ids[i - 1] : -1, a->ids[i], &len);
        if (i) sb_add(b, ",", 1);
        sb_json_string(b, piece ? piece : "", piece ? len : 0);
    }
    sb_printf(b, "],\"rows\":%zu,\"layers\":[", a->rows);
    for (size_t l = 0; l < a->n_layers; l++) {
        sb_adds(b, l ? ",\"" : "\"");
        sb_base64(b, a->map + l * a->rows * a->n, a->rows * a->n);
        sb_add(b, "\"", 1);
    }
    sb_adds(b, "]}");
}

typedef struct {
    int chat;
    char id[48];
    long long created;
    const char *model;
} Shape;

static void chunk_head(StrBuf *b, const Shape *sh) {
    sb_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", sh->id,
              sh->chat ? "chat.completion.chunk" : "text_completion", sh->created);
    sb_json_string(b, sh->model, strlen(sh->model));
}

// A streamed chunk: text (NULL: the role chunk) and a finish reason (NULL: none yet).
static void chunk_json(StrBuf *b, const Shape *sh, const char *text, size_t len,
                       const char *finish) {
    chunk_head(b, sh);
    sb_adds(b, ",\"choices\":[{\"index\":0,");
    if (sh->chat) {
        if (!text) sb_adds(b, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
        else if (finish && len == 0) sb_adds(b, "\"delta\":{}");
        else {
            sb_adds(b, "\"delta\":{\"content\":");
            sb_json_string(b, text, len);
            sb_add(b, "}", 1);
        }
    } else {
        sb_adds(b, "\"text\":");
        sb_json_string(b, text ? text : "", text ? len : 0);
        sb_adds(b, ",\"logprobs\":null");
    }
    if (finish) sb_printf(b, ",\"finish_reason\":\"%s\"}]}", finish);
    else sb_adds(b, ",\"finish_reason\":null}]}");
}

static void usage_json(StrBuf *b, size_t prompt, size_t cached, long reply) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%ld,\"total_tokens\":%ld,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%zu}}",
              prompt, reply, (long)prompt + reply, cached);
}

static const char *finish_name(int finish) {
    return finish == SESSION_STOP ? "stop" : "length";
}

static int sse(int fd, Server *sv, StrBuf *b) {
    int rc = b->oom ? -1 : http_sse_event(fd, b->p, b->n, sv->wto);
    b->n = 0;
    if (b->p) b->p[0] = '\0';
    return rc;
}

// Waits up to 50 ms for the job to end or (seen != SIZE_MAX) to hold more than `seen` bytes of
// text. Returns 0, or -1 when the client is gone (the job is then cancelled).
static int job_wait(Job *j, size_t seen, int fd) {
    pthread_mutex_lock(&j->mu);
    if (!j->done && (seen == SIZE_MAX || j->text_len == seen)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    int changed = j->done || (seen != SIZE_MAX && j->text_len != seen);
    pthread_mutex_unlock(&j->mu);
    if (!changed && http_peer_gone(fd)) {
        atomic_store(&j->cancel, 1);
        return -1;
    }
    return 0;
}

static void stream_reply(int fd, Server *sv, Job *j, const OaiRequest *r, const Shape *sh,
                         Outcome *out) {
    StrBuf b = {0}, text = {0};
    out->status = 200;
    if (http_sse_begin(fd, sv->wto) != 0) goto gone;
    if (sh->chat) {
        chunk_json(&b, sh, NULL, 0, NULL);
        if (sse(fd, sv, &b) != 0) goto gone;
    }
    size_t sent = 0;
    int done = 0, finish = 0;
    while (!done) {
        if (job_wait(j, sent, fd) != 0) goto gone;
        pthread_mutex_lock(&j->mu);
        text.n = 0;
        sb_add(&text, j->text + sent, j->text_len - sent);
        sent = j->text_len, done = j->done, finish = j->finish;
        out->cached = j->n_cached, out->reply = j->n_gen;
        pthread_mutex_unlock(&j->mu);
        if (text.n) {
            chunk_json(&b, sh, text.p, text.n, NULL);
            if (sse(fd, sv, &b) != 0) goto gone;
        }
    }
    if (finish < 0) {
        oai_error(&b, 500, "the generation failed (out of memory, or the server is stopping)");
        sse(fd, sv, &b);
        out->status = 500;
        goto end;
    }
    chunk_json(&b, sh, "", 0, finish_name(finish));
    if (sse(fd, sv, &b) != 0) goto gone;
    if (r->include_usage) {
        chunk_head(&b, sh);
        sb_adds(&b, ",\"choices\":[],");
        usage_json(&b, out->prompt, out->cached, out->reply);
        sb_add(&b, "}", 1);
        if (sse(fd, sv, &b) != 0) goto gone;
    }
    if (j->attn) {  // done: the engine no longer writes it
        attention_json(&b, sv, j->attn);
        if (sse(fd, sv, &b) != 0) goto gone;
    }
    http_sse_event(fd, "[DONE]", 6, sv->wto);
    goto end;
gone:
    atomic_store(&j->cancel, 1);
    out->status = 499;  // nginx's "client closed request", for the log line
end:
    sb_free(&b), sb_free(&text);
}

static void whole_reply(int fd, Server *sv, Job *j, const Shape *sh, Outcome *out) {
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int done = j->done;
        pthread_mutex_unlock(&j->mu);
        if (done) break;
        if (job_wait(j, SIZE_MAX, fd) != 0) {  // SIZE_MAX: wake on the end only
            out->status = 499;
            return;
        }
    }
    out->cached = j->n_cached, out->reply = j->n_gen;
    if (j->finish < 0) {
        send_error(fd, sv, out, 500, "the generation failed (out of memory, or the server is "
                   "stopping)", NULL);
        return;
    }
    StrBuf b = {0};
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", sh->id,
              sh->chat ? "chat.completion" : "text_completion", sh->created);
    sb_json_string(&b, sh->model, strlen(sh->model));
    sb_adds(&b, ",\"choices\":[{\"index\":0,");
    if (sh->chat) {
        sb_adds(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_string(&b, j->text ? j->text : "", j->text_len);
        sb_add(&b, "}", 1);
    } else {
        sb_adds(&b, "\"text\":");
        sb_json_string(&b, j->text ? j->text : "", j->text_len);
        sb_adds(&b, ",\"logprobs\":null");
    }
    sb_printf(&b, ",\"finish_reason\":\"%s\"}],", finish_name(j->finish));
    usage_json(&b, out->prompt, out->cached, out->reply);
    if (j->attn) {
        sb_adds(&b, ",\"attention\":");
        attention_json(&b, sv, j->attn);
    }
    sb_add(&b, "}", 1);
    send_json(fd, sv, out, 200, &b, NULL);
    sb_free(&b);
}

static const char *piece_text(const Tokenizer *tok, int id) {
    return id >= 0 && id < tok->vocab_size ? tok->pieces[id] : NULL;
}

// The prompt's tokens: a chat rendered in the template, or a completion's prompt with BOS
// (unless the model's prompts start without one). Returns 0, or an HTTP status with err.
static int prompt_tokens(Server *sv, const OaiRequest *r, int **ids, size_t *n, char *err,
                         size_t cap) {
    const Model *m = &sv->t.model;
    const SlHeader *h = &m->header;
    *ids = NULL, *n = 0;
    if (r->kind == OAI_CHAT) {
        char today[32], *text, terr[256];
        size_t tlen;
        int has_system = 0;
        for (size_t i = 0; i < r->n_msgs; i++) has_system |= !strcmp(r->msgs[i].role, "system");
        TplOptions to = {.add_generation_prompt = 1, .bos = piece_text(sv->tok, h->bos_id),
                         .eos = piece_text(sv->tok, h->eos_id),
                         .default_system = has_system ? NULL : sv->default_system,
                         .date = template_today(m->chat_template, m->chat_template_bytes, today,
                                                sizeof today)};
        if (template_render(sv->tpl_kind, r->msgs, r->n_msgs, &to, &text, &tlen, terr,
                            sizeof terr) != 0) {
            snprintf(err, cap, "messages: the chat template fails: %s", terr);
            return 400;
        }
        int rc = chat_encode(sv->tok, text, tlen, ids, n);
        free(text);
        if (rc != 0) {
            snprintf(err, cap, "out of memory tokenizing the messages");
            return 500;
        }
        return 0;
    }
    size_t len = r->prompt_len, cap_ids = tokenizer_max_tokens(sv->tok, len);
    if (!(*ids = malloc(cap_ids * sizeof(int))) ||
        tokenizer_encode(sv->tok, r->prompt ? r->prompt : "", len, !(h->flags & SL_FLAG_NO_BOS),
                         0, *ids, cap_ids, n) != TOK_OK) {
        free(*ids), *ids = NULL;
        snprintf(err, cap, "out of memory tokenizing the prompt");
        return 500;
    }
    return 0;
}

static void handle_generate(int fd, Server *sv, const HttpRequest *req, int kind, Outcome *out) {
    OaiRequest r;
    char err[512];
    if (oai_decode(req->body ? req->body : "", req->body_len, kind, &r, err, sizeof err) != 0) {
        send_error(fd, sv, out, 400, err, NULL);
        return;
    }
    int *ids;
    size_t n;
    int status = prompt_tokens(sv, &r, &ids, &n, err, sizeof err);
    long max_tokens = r.set & OAI_SET_MAX_TOKENS ? r.max_tokens : 0;
    const SlHeader *h = &sv->t.model.header;
    out->prompt = n;
    if (!status && n == 0)
        status = 400, snprintf(err, sizeof err, "the prompt is empty (and this model's prompts "
                               "start without BOS): there is nothing to run");
    if (!status && n >= sv->ctx)
        status = 400, snprintf(err, sizeof err, "the prompt is %zu tokens: it does not fit the "
                               "context of %zu positions", n, sv->ctx);
    if (!status && max_tokens > (long)sv->ctx)
        status = 400, snprintf(err, sizeof err, "max_tokens %ld is beyond the context of %zu "
                               "positions", max_tokens, sv->ctx);
    if (!status && !max_tokens) max_tokens = (long)(sv->ctx - n);
    if (!status && r.attention) {
        size_t rows = (size_t)max_tokens, cols = n + rows;
        if (cols > sv->ctx) cols = sv->ctx, rows = cols - n;
        if (cols > SERVE_ATTN_MAX_N ||
            (double)rows * (double)cols * (double)h->n_layers > (double)SERVE_ATTN_MAX_BYTES)
            status = 400, snprintf(err, sizeof err, "attention map too large: %zu rows x %zu "
                                   "positions x %d layers (at most %d positions and %u MiB: "
                                   "lower max_tokens)", rows, cols, h->n_layers,
                                   SERVE_ATTN_MAX_N, SERVE_ATTN_MAX_BYTES >> 20);
    }
    if (status) {
        free(ids);
        oai_free(&r);
        send_error(fd, sv, out, status, err, NULL);
        return;
    }
    Job *j = job_create(ids, n);
    unsigned long long no = atomic_fetch_add(&sv->counter, 1);
    if (!j || job_set_stops(j, (const char *const *)r.stop, r.stop_len, r.n_stop) != 0) {
        job_release(j);
        oai_free(&r);
        send_error(fd, sv, out, 500, "out of memory", NULL);
        return;
    }
    SessionSampling sp = sv->sampling;
    if (r.set & OAI_SET_TEMPERATURE) sp.temperature = r.temperature;
    if (r.set & OAI_SET_TOP_P) sp.top_p = r.top_p;
    if (r.set & OAI_SET_TOP_K) sp.top_k = r.top_k;
    if (r.set & OAI_SET_MIN_P) sp.min_p = r.min_p;
    if (r.set & OAI_SET_REPEAT_PENALTY) sp.repeat_penalty = r.repeat_penalty;
    if (r.set & OAI_SET_SEED) {
        sp.seed = r.seed;
    } else {  // splitmix64 of the clock and the request number
        uint64_t z = clock_ns() + (uint64_t)no * 0x9E3779B97F4A7C15ull + sv->id_salt;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        sp.seed = z ^ (z >> 31);
    }
    j->sampling = sp;
    j->lim.max_tokens = max_tokens;
    j->lim.ignore_eos = r.ignore_eos;
    j->attention = r.attention;
    Shape sh = {.chat = kind == OAI_CHAT, .created = (long long)time(NULL),
                .model = r.model[0] ? r.model : sv->model_name};
    snprintf(sh.id, sizeof sh.id, "%s-%016llx", sh.chat ? "chatcmpl" : "cmpl",
             (unsigned long long)(sv->id_salt ^ (no * 0x9E3779B97F4A7C15ull)));
    if (engine_submit(sv->e, j) != 0) {
        send_error(fd, sv, out, 503, "server busy: every slot is taken and the queue is full; "
                   "try again later", "Retry-After: 1\r\n");
    } else if (r.stream) {
        stream_reply(fd, sv, j, &r, &sh, out);
    } else {
        whole_reply(fd, sv, j, &sh, out);
    }
    job_release(j);
    oai_free(&r);
}

// ---- routing ----

// Whether the request carries "Bearer <key>", compared in time independent of the key's bytes.
static int authorized(const Server *sv, const HttpRequest *req) {
    const char *key = sv->o->api_key;
    if (!key) return 1;
    const char *a = req->authorization ? req->authorization : "";
    size_t alen = req->authorization ? req->authorization_len : 0, klen = strlen(key);
    unsigned diff = alen != klen + 7;
    for (size_t i = 0; i < klen + 7; i++) {
        char want = i < 7 ? "Bearer "[i] : key[i - 7];
        char got = i < alen ? a[i] : 0;
        diff |= (unsigned)(unsigned char)(want ^ got);
    }
    return diff == 0;
}

static void route(int fd, Server *sv, const HttpRequest *req, Outcome *out) {
    static const struct {
        const char *path, *method;
    } routes[] = {{"/", "GET"}, {"/health", "GET"}, {"/v1/models", "GET"},
                  {"/v1/chat/completions", "POST"}, {"/v1/completions", "POST"}};
    if (!strcmp(req->method, "OPTIONS")) {
        out->status = 204;
        http_respond(fd, 204, NULL, NULL, 0,
                     "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                     "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                     "Access-Control-Max-Age: 86400\r\n", sv->wto);
        return;
    }
    int v1 = !strncmp(req->path, "/v1/", 4);
    if (v1 && !authorized(sv, req)) {
        send_error(fd, sv, out, 401, "invalid or missing API key: send Authorization: Bearer "
                   "<key>", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    size_t k = 0, n_routes = sizeof routes / sizeof routes[0];
    while (k < n_routes && strcmp(routes[k].path, req->path) != 0) k++;
    if (k == n_routes) {
        char msg[HTTP_MAX_PATH + 64];
        snprintf(msg, sizeof msg, "no such endpoint: %s", req->path);
        send_error(fd, sv, out, 404, msg, NULL);
        return;
    }
    if (strcmp(req->method, routes[k].method) != 0) {
        char msg[128], allow[64];
        snprintf(msg, sizeof msg, "%s takes %s, not %s", routes[k].path, routes[k].method,
                 req->method);
        snprintf(allow, sizeof allow, "Allow: %s, OPTIONS\r\n", routes[k].method);
        send_error(fd, sv, out, 405, msg, allow);
        return;
    }
    switch (k) {
    case 0: send_page(fd, sv, out); break;
    case 1: send_health(fd, sv, out); break;
    case 2: send_models(fd, sv, out); break;
    case 3: handle_generate(fd, sv, req, OAI_CHAT, out); break;
    default: handle_generate(fd, sv, req, OAI_COMPLETION, out); break;
    }
}

static void *conn_main(void *arg) {
    Conn *c = arg;
    Server *sv = c->sv;
    double t0 = clock_now();
    HttpConn hc = {.fd = c->fd};
    HttpRequest req;
    char err[256];
    Outcome out = {0};
    int rc = http_read(&hc, &sv->lim, &req, err, sizeof err);
    if (rc == 0) {
        route(c->fd, sv, &req, &out);
    } else if (rc > 0) {
        send_error(c->fd, sv, &out, rc, err, NULL);
        snprintf(req.method, sizeof req.method, "-");
        snprintf(req.path, sizeof req.path, "(%s)", err);
    }
    if (rc >= 0) {
        char tokens[96] = "";
        if (out.prompt)
            snprintf(tokens, sizeof tokens, " prompt %zu (cached %zu) reply %ld tokens",
                     out.prompt, out.cached, out.reply);
        fprintf(stderr, "%s %s %d%s %.0f ms\n", req.method, req.path, out.status, tokens,
                (clock_now() - t0) * 1e3);
    }
    http_conn_free(&hc);
    close(c->fd);
    pthread_mutex_lock(&sv->mu);
    sv->n_conns--;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    free(c);
    return NULL;
}

// ---- startup ----

// A listening socket on host:port, or -1 after a line.
static int listen_on(const char *host, int port) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res, *ai;
    int rc = getaddrinfo(host, service, &hints, &res), fd = -1, e = 0;
    if (rc != 0) {
        fprintf(stderr, "run: --host %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
        e = errno;
        close(fd), fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) fprintf(stderr, "run: cannot listen on %s:%d: %s\n", host, port, strerror(e));
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

// The template (--chat-template, else the model's, else chatml with a warning).
static int pick_template(Server *sv) {
    const Model *m = &sv->t.model;
    const char *name = sv->o->chat_template;
    int found = !name && m->chat_template && m->chat_template_bytes
                    ? template_detect(m->chat_template, m->chat_template_bytes,
                                      sv->default_system, sizeof sv->default_system)
                    : -1;
    if (name) return chat_template_kind(m, name, sv->default_system, sizeof sv->default_system);
    if (found >= 0) return found;
    sv->default_system[0] = '\0';
    fprintf(stderr, "run: %s: /v1/chat/completions renders chatml (--chat-template names "
            "another)\n", m->chat_template && m->chat_template_bytes
                              ? "the model's chat template is of no family run knows"
                              : "the model file has no chat template");
    return TPL_CHATML;
}

// The model's recommended sampling in place of the defaults the command line left.
static void take_recommended(Server *sv) {
    const SlHeader *h = &sv->t.model.header;
    uint32_t use = h->sampling_set & ~sv->o->sampling_given;
    sv->sampling = sv->o->sampling;
    if (use & SL_SAMPLE_TEMPERATURE) sv->sampling.temperature = h->sample_temperature;
    if (use & SL_SAMPLE_TOP_P) sv->sampling.top_p = h->sample_top_p;
    if (use & SL_SAMPLE_TOP_K) sv->sampling.top_k = h->sample_top_k;
    if (use & SL_SAMPLE_MIN_P) sv->sampling.min_p = h->sample_min_p;
    if (use & SL_SAMPLE_REPEAT_PENALTY) sv->sampling.repeat_penalty = h->sample_repeat_penalty;
    if (sv->sampling.repeat_last_n < 0 || (size_t)sv->sampling.repeat_last_n > sv->ctx)
        sv->sampling.repeat_last_n = (int)sv->ctx;
}

int serve_run(const ServeOptions *o, Pool *pool, volatile sig_atomic_t *stop) {
    Server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        fprintf(stderr, "run: out of memory\n");
        return 1;
    }
    sv->o = o;
    int n_ctx = o->n_ctx, lfd = -1, rc = 1, built = 0;
    if (!n_ctx) {  // min(the model's, SERVE_DEFAULT_CTX): the header only, to know it
        Model m;
        if (model_open(&m, o->model_path, 0) != MODEL_OK) goto done;
        n_ctx = m.header.seq_len < SERVE_DEFAULT_CTX ? m.header.seq_len : SERVE_DEFAULT_CTX;
        model_close(&m);
    }
    if (transformer_build_ctx(&sv->t, o->model_path, pool, o->kv_type, n_ctx, 0) != MODEL_OK)
        goto done;
    built = 1;
    sv->tok = &sv->t.model.tokenizer;
    sv->ctx = (size_t)sv->t.model.header.seq_len;
    if ((sv->tpl_kind = pick_template(sv)) < 0) goto done;
    take_recommended(sv);
    sv->lim = (HttpLimits)HTTP_LIMITS_DEFAULT;
    sv->lim.read_timeout_ms = sv->lim.write_timeout_ms = sv->wto = o->timeout_s * 1000;
    const char *slash = strrchr(o->model_path, '/');
    snprintf(sv->model_name, sizeof sv->model_name, "%s", slash ? slash + 1 : o->model_path);
    sv->started = time(NULL);
    sv->id_salt = clock_ns() ^ ((uint64_t)getpid() << 32);
    atomic_init(&sv->counter, 1);
    sv->max_conns = o->parallel + o->queue + SERVE_EXTRA_CONNS;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    if ((lfd = listen_on(o->host, o->port)) < 0) goto done_sync;
    if (!(sv->e = engine_create(&sv->t, sv->tok, o->parallel, o->queue, o->kv_type)))
        goto done_sync;
    fprintf(stderr, "run: serving %s on http://%s%s%s:%d/ (%zu slots of %zu positions, queue "
            "%zu%s)\n", sv->model_name, strchr(o->host, ':') ? "[" : "", o->host,
            strchr(o->host, ':') ? "]" : "", bound_port(lfd), o->parallel, sv->ctx, o->queue,
            o->api_key ? ", API key required" : "");
    while (!*stop) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) poll(NULL, 0, 50);  // let connections end
            continue;
        }
        pthread_mutex_lock(&sv->mu);
        int full = sv->n_conns >= sv->max_conns;
        if (!full) sv->n_conns++;
        pthread_mutex_unlock(&sv->mu);
        Conn *c = full ? NULL : malloc(sizeof *c);
        pthread_t th;
        pthread_attr_t attr;
        int started = 0;
        if (c && pthread_attr_init(&attr) == 0) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            *c = (Conn){sv, fd};
            started = pthread_create(&th, &attr, conn_main, c) == 0;
            pthread_attr_destroy(&attr);
        }
        if (!started) {
            free(c);
            if (!full) {
                pthread_mutex_lock(&sv->mu);
                sv->n_conns--;
                pthread_mutex_unlock(&sv->mu);
            }
            StrBuf b = {0};
            oai_error(&b, 503, "server busy: too many connections");
            if (!b.oom) http_respond(fd, 503, "application/json", b.p, b.n, NULL, 100);
            sb_free(&b);
            fprintf(stderr, "- - 503 (too many connections)\n");
            close(fd);
        }
    }
    fprintf(stderr, "run: stopping\n");
    rc = 0;
done_sync:
    if (lfd >= 0) close(lfd);
    engine_stop(sv->e);  // every job in flight ends: their connections answer and close
    pthread_mutex_lock(&sv->mu);
    {
        struct timespec ts;  // a connection still reading takes up to the read timeout
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += o->timeout_s + 2;
        while (sv->n_conns && pthread_cond_timedwait(&sv->cv, &sv->mu, &ts) == 0) {}
    }
    size_t left = sv->n_conns;
    pthread_mutex_unlock(&sv->mu);
    if (left) {  // they still use sv and the engine: leave them be, the process ends
        fprintf(stderr, "run: %zu connections still open at exit\n", left);
        return rc;
    }
    engine_destroy(sv->e);
    pthread_cond_destroy(&sv->cv);
    pthread_mutex_destroy(&sv->mu);
done:
    if (built) transformer_free(&sv->t);
    free(sv);
    return rc;
}

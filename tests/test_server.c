// tests/test_server.c: run -m serve end to end, driven by curl (a real client) and raw sockets:
// every endpoint streamed and not, batching that changes no bit, the slot that keeps a
// conversation's cache, clients that disconnect, every kind of bad input, and a bounded load.
//
// Each test starts its own server (fork/exec of $SL_BIN/run on --port 0: the line it prints
// says the port), waits for /health, and stops it with SIGTERM at the end (exit status 0).
// stories260K answers fast; the tests that need a generation to take seconds run a random
// stories42M in q8_0 (export --random).
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "io/json.h"
#include "io/strbuf.h"

typedef struct {
    pid_t pid;
    int port;
    char log[512];
} Srv;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *model_260k(void) { return export_stories260k_as("f32"); }

// A random stories42M in q8_0: about 25 ms a token on one thread.
static const char *model_slow(void) {
    static char path[512];
    snprintf(path, sizeof path, "%s", tmp_file("r42.slm"));
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s --dtype q8_0 --random stories42M %s", bin_path("export"),
                     path);
    cr_assert_eq(rc, 0, "export --random stories42M: %s", err);
    free(out), free(err);
    return path;
}

// Starts run <model> -m serve --port 0 -T 1 <extra> (words split at spaces) and waits up to
// 10 s for /health.
static void srv_start(Srv *s, const char *model, const char *extra) {
    need_program("curl", "curl");
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s", tmp_file("server.log"));
    char words[512], *argv[40];
    int argc = 0;
    snprintf(words, sizeof words, "%s", extra ? extra : "");
    const char *run = bin_path("run");
    argv[argc++] = (char *)run, argv[argc++] = (char *)model;
    const char *fixed[] = {"-m", "serve", "--port", "0", "-T", "1"};
    for (size_t i = 0; i < 6; i++) argv[argc++] = (char *)fixed[i];
    for (char *w = strtok(words, " "); w && argc < 39; w = strtok(NULL, " ")) argv[argc++] = w;
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);  // a failed test never leaves a server behind
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644), nul = open("/dev/null", O_RDWR);
        dup2(fd, 2), dup2(nul, 1), dup2(nul, 0);
        execv(run, argv);
        _exit(127);
    }
    s->pid = pid;
    double t0 = now_s();
    while (now_s() - t0 < 10.0) {
        size_t n;
        char *log = read_all(s->log, &n);
        const char *at = log ? strstr(log, "serving ") : NULL;
        const char *colon = at ? strstr(at, "127.0.0.1:") : NULL;
        if (colon) s->port = atoi(colon + 10);
        free(log);
        if (s->port) {
            char *out, *err;
            int rc = run_cmd(&out, &err, "curl -s -o /dev/null -w '%%{http_code}' "
                             "http://127.0.0.1:%d/health", s->port);
            int ok = rc == 0 && out && !strcmp(out, "200");
            free(out), free(err);
            if (ok) return;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *log2 = read_all(s->log, NULL);
            cr_assert_fail("the server exited at startup: %s", log2 ? log2 : "");
        }
        sleep_ms(50);
    }
    cr_assert_fail("the server did not answer /health within 10 s");
}

// SIGTERM; the server must exit 0 within 10 s.
static void srv_stop(Srv *s) {
    kill(s->pid, SIGTERM);
    double t0 = now_s();
    int st = 0;
    pid_t got = 0;
    while ((got = waitpid(s->pid, &st, WNOHANG)) == 0 && now_s() - t0 < 10.0) sleep_ms(20);
    if (got == 0) kill(s->pid, SIGKILL), waitpid(s->pid, &st, 0);
    char *log = read_all(s->log, NULL);
    cr_assert(got == s->pid, "the server did not stop within 10 s of SIGTERM");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit: status %d; its log:\n%s",
              st, log ? log : "");
    free(log);
}

// curl's output for a request; *code gets the HTTP status (the last line of the output, which
// -w appends).
static char *curl(Srv *s, int *code, const char *opts, const char *path) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "curl -s %s -w '\\n%%{http_code}' http://127.0.0.1:%d%s", opts,
                     s->port, path);
    cr_assert_eq(rc, 0, "curl %s %s: exit %d %s", opts, path, rc, err);
    free(err);
    char *nl = strrchr(out, '\n');
    cr_assert(nl);
    *code = atoi(nl + 1);
    *nl = '\0';
    return out;
}

// POST a JSON body (no single quotes in it; "@path": the file's).
static char *post(Srv *s, int *code, const char *path, const char *body) {
    char opts[4096];
    snprintf(opts, sizeof opts, "-H 'Content-Type: application/json' -d '%s'", body);
    return curl(s, code, opts, path);
}

static void parse(JsonValue *v, const char *text) {
    JsonError e;
    cr_assert_eq(json_parse(text, strlen(text), v, &e), 0, "invalid JSON (%s at %zu): %s", e.msg,
                 e.offset, text);
}

static long get_int(const JsonValue *obj, const char *key) {
    long long v;
    cr_assert(json_int(json_get(obj, key), 0, 1LL << 40, &v), "no integer %s", key);
    return (long)v;
}

static const char *get_str(const JsonValue *obj, const char *key) {
    const JsonValue *v = json_get(obj, key);
    cr_assert(v && v->type == JSON_STRING, "no string %s", key);
    return v->str;
}

// Checks usage's fields: prompt + completion = total; returns prompt_tokens_details.cached_tokens.
static long check_usage(const JsonValue *root, long *prompt, long *completion) {
    const JsonValue *u = json_get(root, "usage");
    cr_assert(u && u->type == JSON_OBJECT, "no usage");
    long p = get_int(u, "prompt_tokens"), c = get_int(u, "completion_tokens");
    cr_assert_eq(get_int(u, "total_tokens"), p + c);
    if (prompt) *prompt = p;
    if (completion) *completion = c;
    return get_int(json_get(u, "prompt_tokens_details"), "cached_tokens");
}

// The first choice of a response object, checked for index 0.
static const JsonValue *choice0(const JsonValue *root) {
    const JsonValue *c = json_get(root, "choices");
    cr_assert(c && c->type == JSON_ARRAY && c->n == 1, "choices is not one choice");
    cr_assert_eq(get_int(&c->items[0], "index"), 0);
    return &c->items[0];
}

// A non-streamed reply's text (malloc'd), checking its shape; finish gets finish_reason.
static char *whole(Srv *s, const char *path, const char *body, char *finish, long *prompt,
                   long *cached) {
    int code;
    char *out = post(s, &code, path, body);
    cr_assert_eq(code, 200, "%s %s: %d %s", path, body, code, out);
    JsonValue v;
    parse(&v, out);
    int chat = strstr(path, "chat") != NULL;
    cr_assert(json_is_str(json_get(&v, "object"), chat ? "chat.completion" : "text_completion"));
    cr_assert(!strncmp(get_str(&v, "id"), chat ? "chatcmpl-" : "cmpl-", chat ? 9 : 5));
    get_int(&v, "created");
    get_str(&v, "model");
    const JsonValue *c = choice0(&v);
    const char *text;
    if (chat) {
        const JsonValue *m = json_get(c, "message");
        cr_assert(json_is_str(json_get(m, "role"), "assistant"));
        text = get_str(m, "content");
    } else {
        text = get_str(c, "text");
    }
    const char *f = get_str(c, "finish_reason");
    cr_assert(!strcmp(f, "stop") || !strcmp(f, "length"), "finish_reason %s", f);
    if (finish) snprintf(finish, 16, "%s", f);
    long c_cached = check_usage(&v, prompt, NULL);
    if (cached) *cached = c_cached;
    char *r = strdup(text);
    json_free(&v);
    free(out);
    return r;
}

// A streamed reply: checks the SSE events (role chunk first for chat, content chunks, one
// finish_reason, the usage chunk if asked, [DONE] last); returns the text (malloc'd).
static char *streamed(Srv *s, const char *path, const char *body, int usage, int attention) {
    int code;
    char *out = post(s, &code, path, body);
    cr_assert_eq(code, 200, "%s: %d %s", path, code, out);
    int chat = strstr(path, "chat") != NULL;
    size_t cap = strlen(out) + 1, n_text = 0, events = 0;
    char *text = calloc(1, cap);
    int finished = 0, saw_usage = 0, saw_attention = 0, done = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert(!done, "an event after [DONE]: %s", line);
        cr_assert(!strncmp(line, "data: ", 6), "not an SSE data line: %s", line);
        const char *data = line + 6;
        if (!strcmp(data, "[DONE]")) {
            done = 1;
            continue;
        }
        JsonValue v;
        parse(&v, data);
        if (json_is_str(json_get(&v, "object"), "searchlight.attention")) {
            cr_assert(finished && !saw_attention);
            saw_attention = 1;
            json_free(&v);
            continue;
        }
        cr_assert(json_is_str(json_get(&v, "object"),
                              chat ? "chat.completion.chunk" : "text_completion"));
        const JsonValue *cs = json_get(&v, "choices");
        cr_assert(cs && cs->type == JSON_ARRAY);
        if (cs->n == 0) {  // the usage chunk, after the finish
            cr_assert(usage && finished && !saw_usage);
            check_usage(&v, NULL, NULL);
            saw_usage = 1;
            json_free(&v);
            continue;
        }
        cr_assert(!finished, "a chunk after the finish");
        const JsonValue *c = choice0(&v), *fr = json_get(c, "finish_reason");
        const char *piece = "";
        if (chat) {
            const JsonValue *d = json_get(c, "delta");
            cr_assert(d && d->type == JSON_OBJECT);
            if (events == 0) {
                cr_assert(json_is_str(json_get(d, "role"), "assistant"), "the first delta");
                cr_assert(json_is_str(json_get(d, "content"), ""));
            } else if (json_get(d, "content")) {
                piece = get_str(d, "content");
            }
        } else {
            piece = get_str(c, "text");
        }
        memcpy(text + n_text, piece, strlen(piece));
        n_text += strlen(piece);
        if (fr && fr->type == JSON_STRING) {
            cr_assert(json_is_str(fr, "stop") || json_is_str(fr, "length"));
            finished = 1;
        }
        events++;
        json_free(&v);
    }
    cr_assert(finished, "no finish_reason");
    cr_assert(done, "no [DONE]");
    cr_assert_eq(saw_usage, usage);
    cr_assert_eq(saw_attention, attention);
    free(out);
    return text;
}

Test(server, endpoints) {
    Srv s;
    srv_start(&s, model_260k(), NULL);
    int code;
    char *out = curl(&s, &code, "", "/health");
    JsonValue v;
    parse(&v, out);
    cr_assert_eq(code, 200);
    cr_assert(json_is_str(json_get(&v, "status"), "ok"));
    cr_assert_eq(get_int(&v, "slots_idle"), 4);
    cr_assert_eq(get_int(&v, "slots_processing"), 0);
    cr_assert_eq(get_int(&v, "queued"), 0);
    json_free(&v), free(out);

    out = curl(&s, &code, "", "/v1/models");
    parse(&v, out);
    cr_assert_eq(code, 200);
    cr_assert(json_is_str(json_get(&v, "object"), "list"));
    const JsonValue *d = json_get(&v, "data");
    cr_assert(d && d->type == JSON_ARRAY && d->n == 1);
    cr_assert(json_is_str(json_get(&d->items[0], "object"), "model"));
    get_str(&d->items[0], "id");
    json_free(&v), free(out);

    out = curl(&s, &code, "-D -", "/");
    cr_assert_eq(code, 200);
    cr_assert(strstr(out, "Content-Type: text/html; charset=utf-8"), "%s", out);
    cr_assert(strstr(out, "</html>"));
    free(out);

    // the same greedy reply whole and streamed, both endpoints
    const char *comp = "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0}";
    const char *comp_s = "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,"
                         "\"stream\":true}";
    char finish[16];
    long prompt;
    char *a = whole(&s, "/v1/completions", comp, finish, &prompt, NULL);
    cr_assert_str_eq(finish, "length");
    cr_assert_gt(strlen(a), 20);
    char *b = streamed(&s, "/v1/completions", comp_s, 0, 0);
    cr_assert_str_eq(a, b);
    free(a), free(b);

    const char *chat = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":30,"
                       "\"temperature\":0}";
    const char *chat_s = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                         "{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":30,"
                         "\"temperature\":0,\"stream\":true,\"stream_options\":"
                         "{\"include_usage\":true}}";
    a = whole(&s, "/v1/chat/completions", chat, NULL, NULL, NULL);
    b = streamed(&s, "/v1/chat/completions", chat_s, 1, 0);
    cr_assert_str_eq(a, b);
    free(a), free(b);

    // a stop string ends the text before it
    a = whole(&s, "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
              "\"temperature\":0,\"stop\":[\"girl\"]}", finish, NULL, NULL);
    cr_assert_str_eq(finish, "stop");
    cr_assert(!strstr(a, "girl"), "%s", a);
    free(a);

    // attention, whole and streamed
    out = post(&s, &code, "/v1/completions", "{\"prompt\":\"Once upon\",\"max_tokens\":4,"
               "\"temperature\":0,\"attention\":true}");
    cr_assert_eq(code, 200, "%s", out);
    parse(&v, out);
    const JsonValue *at = json_get(&v, "attention");
    cr_assert(json_is_str(json_get(at, "object"), "searchlight.attention"));
    long L = get_int(at, "n_layers"), P = get_int(at, "n_prompt"), R = get_int(at, "rows");
    cr_assert_eq(L, 5);
    cr_assert_eq(get_int(at, "n_heads"), 8);
    cr_assert_eq(R, 3, "4 tokens sampled, the last one never runs");
    const JsonValue *toks = json_get(at, "tokens"), *layers = json_get(at, "layers");
    cr_assert_eq((long)toks->n, P + R);
    cr_assert_eq((long)layers->n, L);
    for (size_t l = 0; l < layers->n; l++)
        cr_assert_eq((long)layers->items[l].len, (R * (P + R) + 2) / 3 * 4, "base64 of R x N");
    json_free(&v), free(out);
    free(streamed(&s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":"
                  "\"Hi\"}],\"max_tokens\":5,\"stream\":true,\"attention\":true}", 0, 1));
    srv_stop(&s);
}

Test(server, batching_changes_no_bit) {
    Srv s;
    srv_start(&s, model_260k(), "--parallel 8");
    const char *req = "{\"prompt\":\"The little dog\",\"max_tokens\":60,\"temperature\":0,"
                      "\"ignore_eos\":true}";
    char *alone = whole(&s, "/v1/completions", req, NULL, NULL, NULL);
    // the same request with 7 others (other prompts, sampled, streamed) all at once
    char cmd[8192];
    int k = snprintf(cmd, sizeof cmd, "(cd %s; ", tmp_dir());
    for (int i = 0; i < 8; i++)
        k += snprintf(cmd + k, sizeof cmd - (size_t)k,
                      "curl -s -d '%s' http://127.0.0.1:%d/v1/completions > batch%d.json & ",
                      i == 3 ? req
                             : i % 2 ? "{\"prompt\":\"Once there was a cat named Tom\","
                                       "\"max_tokens\":80,\"stream\":true}"
                                     : "{\"prompt\":\"Lily\",\"max_tokens\":70,\"ignore_eos\":true}",
                      s.port, i);
    snprintf(cmd + k, sizeof cmd - (size_t)k, "wait)");
    char *out, *err;
    cr_assert_eq(run_cmd(&out, &err, "%s", cmd), 0, "%s: %s", cmd, err);
    char *b = read_all(tmp_file("batch3.json"), NULL);
    cr_assert(b, "no reply in batch3.json: %s: %s", cmd, err);
    free(out), free(err);
    JsonValue v;
    parse(&v, b);
    cr_assert_str_eq(get_str(choice0(&v), "text"), alone, "batched with 7 others");
    json_free(&v), free(b), free(alone);
    srv_stop(&s);
}

Test(server, slot_keeps_the_conversation) {
    Srv s;
    srv_start(&s, model_260k(), "--parallel 2");
    long p1, cached;
    char *r1 = whole(&s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"Tell me about the sun\"}],\"max_tokens\":20,\"temperature\":0}", NULL, &p1,
                     &cached);
    cr_assert_eq(cached, 0);
    // another conversation in between, on the other slot
    free(whole(&s, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":"
               "\"What is a cat\"}],\"max_tokens\":10}", NULL, NULL, NULL));
    // the follow-up: the first exchange, the reply as it came, then a new turn (in a file: the
    // reply may hold any character)
    StrBuf b = {0};
    sb_adds(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me about the sun\"},"
                "{\"role\":\"assistant\",\"content\":");
    sb_json_string(&b, r1, strlen(r1));
    sb_adds(&b, "},{\"role\":\"user\",\"content\":\"And the moon\"}],\"max_tokens\":10}");
    cr_assert(!b.oom);
    const char *file = tmp_file("followup.json");
    cr_assert_eq(write_all_file(file, b.p, b.n), 0);
    sb_free(&b);
    char at[600];
    snprintf(at, sizeof at, "@%s", file);
    long p2;
    free(whole(&s, "/v1/chat/completions", at, NULL, &p2, &cached));
    cr_assert_gt(p2, p1);
    cr_assert_geq(cached, p1, "the follow-up reuses the first exchange: cached %ld of %ld "
                  "(the first prompt: %ld)", cached, p2, p1);
    free(r1);
    srv_stop(&s);
}

static long health_field(Srv *s, const char *key) {
    int code;
    char *out = curl(s, &code, "", "/health");
    JsonValue v;
    parse(&v, out);
    long n = get_int(&v, key);
    json_free(&v), free(out);
    return n;
}

Test(server, disconnect_frees_the_slot, .timeout = 60) {
    Srv s;
    srv_start(&s, model_slow(), "--parallel 2");
    const char *body = "{\"prompt\":\"And God said\",\"max_tokens\":800,\"ignore_eos\":true,"
                       "\"stream\":true}";
    const char *whole_body = "{\"prompt\":\"And God said\",\"max_tokens\":800,\"ignore_eos\":true}";
    char *out, *err;
    // streamed and whole, each cut off by curl after 1 s of a generation of about 20 s
    int rc = run_cmd(&out, &err, "(curl -s --max-time 1 -d '%s' http://127.0.0.1:%d/v1/completions"
                     " & curl -s --max-time 1 -d '%s' http://127.0.0.1:%d/v1/completions; wait)",
                     body, s.port, whole_body, s.port);
    (void)rc;
    free(out), free(err);
    double t0 = now_s();
    long busy = 1;
    while ((busy = health_field(&s, "slots_processing")) != 0 && now_s() - t0 < 1.0) sleep_ms(50);
    cr_assert_eq(busy, 0, "a slot still generates for a client that left");
    cr_assert_eq(health_field(&s, "slots_idle"), 2);
    srv_stop(&s);
}

Test(server, queue_overflow_503) {
    Srv s;
    srv_start(&s, model_slow(), "--parallel 1 --queue 1");
    const char *body = "{\"prompt\":\"And God said\",\"max_tokens\":800,\"ignore_eos\":true}";
    char *out, *err;
    // one runs, one waits, the third is refused at once; the first two are cut off by curl
    int rc = run_cmd(&out, &err, "(cd %s; curl -s -o /dev/null -w '%%{http_code}' --max-time 3 -d '%s' "
                     "http://127.0.0.1:%d/v1/completions > q1 & sleep 0.3; "
                     "curl -s -o /dev/null -w '%%{http_code}' --max-time 3 -d '%s' "
                     "http://127.0.0.1:%d/v1/completions > q2 & sleep 0.3; "
                     "curl -s -D - -w '\\n%%{http_code}' --max-time 3 -d '%s' "
                     "http://127.0.0.1:%d/v1/completions > q3; wait)",
                     tmp_dir(), body, s.port, body, s.port, body, s.port);
    (void)rc;
    free(out), free(err);
    char *q1 = read_all(tmp_file("q1"), NULL), *q2 = read_all(tmp_file("q2"), NULL),
         *q3 = read_all(tmp_file("q3"), NULL);
    cr_assert(q3 && strstr(q3, "\n503"), "the third: %s", q3);
    cr_assert(strstr(q3, "server busy"));
    cr_assert(q1 && strcmp(q1, "503") != 0, "the first got %s", q1);
    cr_assert(q2 && strcmp(q2, "503") != 0, "the second got %s", q2);
    free(q1), free(q2), free(q3);
    double t0 = now_s();
    while (health_field(&s, "slots_processing") != 0 && now_s() - t0 < 2.0) sleep_ms(50);
    cr_assert_eq(health_field(&s, "queued"), 0);
    srv_stop(&s);
}

// A burst as large as the free slots is taken whole, even with no queue: the slots the engine
// has not handed out yet count as room (each of 4 requests at once gets 200, a fifth 503).
Test(server, burst_fills_the_free_slots) {
    Srv s;
    srv_start(&s, model_slow(), "--parallel 4 --queue 0");
    const char *body = "{\"prompt\":\"And God said\",\"max_tokens\":40}";
    char *out, *err;
    int rc = run_cmd(&out, &err, "cd %s; for i in 1 2 3 4; do curl -s -o /dev/null -w '%%{http_code}\\n' "
                     "-d '%s' http://127.0.0.1:%d/v1/completions > burst$i & done; wait",
                     tmp_dir(), body, s.port);
    cr_assert_eq(rc, 0, "%s", err);
    free(out), free(err);
    for (int i = 1; i <= 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "burst%d", i);
        char *code = read_all(tmp_file(name), NULL);
        cr_assert(code && !strcmp(code, "200\n"), "request %d of the burst: %s", i, code);
        free(code);
    }
    srv_stop(&s);
}

// The status of a response to a request sent raw (NULL: none within the wait).
static int raw_status(int port, const char *data, size_t n, int wait_ms, double *took) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    double t0 = now_s();
    for (size_t at = 0; at < n;) {
        ssize_t k = send(fd, data + at, n - at, MSG_NOSIGNAL);
        if (k <= 0) break;  // the server may answer and close before taking it all
        at += (size_t)k;
    }
    char buf[4096];
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = wait_ms - (int)((now_s() - t0) * 1e3);
        if (left <= 0 || poll(&p, 1, left) <= 0) break;
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        if (got == sizeof buf - 1) break;
    }
    if (took) *took = now_s() - t0;
    close(fd);
    buf[got] = '\0';
    return got > 9 && !strncmp(buf, "HTTP/1.1 ", 9) ? atoi(buf + 9) : got ? -1 : 0;
}

Test(server, bad_input, .timeout = 60) {
    Srv s;
    srv_start(&s, model_260k(), "--api-key sekret --timeout 1");
    int code;
    const char *key = "-H 'Authorization: Bearer sekret'";
    struct {
        const char *path, *body;
        int status;
        const char *says;
    } cases[] = {
        {"/v1/completions", "{\"prompt\": \"x\",", 400, "invalid JSON"},
        {"/v1/completions", "[1, 2]", 400, "object"},
        {"/v1/completions", "{\"prompt\": 5}", 400, "prompt"},
        {"/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages"},
        {"/v1/chat/completions", "{\"messages\": []}", 400, "messages"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                 "\"temperature\":\"hot\"}", 400, "temperature"},
        {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1.5}", 400, "max_tokens"},
        {"/v1/completions", "{\"prompt\": \"x\", \"stream\": 1}", 400, "stream"},
        {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 513}", 400, "context"},
        {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 500, \"attention\": true,"
                            "\"ignore_eos\": \"yes\"}", 400, "ignore_eos"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[1024];
        snprintf(opts, sizeof opts, "%s -d '%s'", key, cases[i].body);
        char *out = curl(&s, &code, opts, cases[i].path);
        cr_assert_eq(code, cases[i].status, "%s: %d %s", cases[i].body, code, out);
        JsonValue v;
        parse(&v, out);
        const JsonValue *e = json_get(&v, "error");
        cr_assert(e && strstr(get_str(e, "message"), cases[i].says), "%s: %s", cases[i].body, out);
        cr_assert_eq(get_int(e, "code"), cases[i].status);
        json_free(&v), free(out);
    }
    // a prompt longer than the context
    char *big = malloc(8192);
    size_t k = (size_t)snprintf(big, 8192, "%s -d '{\"prompt\":\"", key);
    for (int i = 0; i < 700; i++) k += (size_t)snprintf(big + k, 8192 - k, " cat");
    snprintf(big + k, 8192 - k, "\"}'");
    char *out = curl(&s, &code, big, "/v1/completions");
    cr_assert_eq(code, 400, "%s", out);
    cr_assert(strstr(out, "does not fit"), "%s", out);
    free(out), free(big);
    // paths, methods, CORS
    out = curl(&s, &code, key, "/v1/nothing");
    cr_assert_eq(code, 404, "%s", out);
    cr_assert(strstr(out, "not_found_error"));
    free(out);
    out = curl(&s, &code, "", "/nothing");
    cr_assert_eq(code, 404);
    free(out);
    out = curl(&s, &code, key, "/v1/completions");  // GET
    cr_assert_eq(code, 405, "%s", out);
    free(out);
    out = curl(&s, &code, "-X DELETE", "/health");
    cr_assert_eq(code, 405, "%s", out);
    free(out);
    out = curl(&s, &code, "-X OPTIONS -D -", "/v1/chat/completions");
    cr_assert_eq(code, 204);
    cr_assert(strstr(out, "Access-Control-Allow-Origin: *"), "%s", out);
    cr_assert(strstr(out, "Access-Control-Allow-Headers:"), "%s", out);
    free(out);
    // the API key: missing, wrong, right; /health and / stay open
    const char *ok = "{\"prompt\":\"x\",\"max_tokens\":2}";
    char opts[512];
    snprintf(opts, sizeof opts, "-D - -d '%s'", ok);
    out = curl(&s, &code, opts, "/v1/completions");
    cr_assert_eq(code, 401, "%s", out);
    cr_assert(strstr(out, "WWW-Authenticate: Bearer"), "%s", out);
    cr_assert(strstr(out, "authentication_error"), "%s", out);
    free(out);
    snprintf(opts, sizeof opts, "-H 'Authorization: Bearer sekreT' -d '%s'", ok);
    out = curl(&s, &code, opts, "/v1/completions");
    cr_assert_eq(code, 401, "%s", out);
    free(out);
    snprintf(opts, sizeof opts, "-H 'Authorization: Bearer sekret2' -d '%s'", ok);
    out = curl(&s, &code, opts, "/v1/completions");
    cr_assert_eq(code, 401, "%s", out);
    free(out);
    out = curl(&s, &code, "", "/v1/models");
    cr_assert_eq(code, 401, "%s", out);
    free(out);
    snprintf(opts, sizeof opts, "%s -d '%s'", key, ok);
    out = curl(&s, &code, opts, "/v1/completions");
    cr_assert_eq(code, 200, "%s", out);
    free(out);
    out = curl(&s, &code, "", "/health");
    cr_assert_eq(code, 200);
    free(out);
    out = curl(&s, &code, "", "/");
    cr_assert_eq(code, 200);
    free(out);
    // a body over the limit (1 MiB): 413, decided from Content-Length
    const char *file = tmp_file("big.json");
    size_t n = (1u << 20) + 100;
    char *body = malloc(n);
    memset(body, ' ', n);
    body[0] = '{', body[n - 1] = '}';
    cr_assert_eq(write_all_file(file, body, n), 0);
    free(body);
    snprintf(opts, sizeof opts, "%s --data-binary @%s", key, file);
    out = curl(&s, &code, opts, "/v1/completions");
    cr_assert_eq(code, 413, "%s", out);
    free(out);
    // headers over the limit (16 KiB): 431
    size_t hn = 20000;
    char *req = malloc(hn + 128);
    int hk = snprintf(req, hn + 128, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + hk, 'a', hn);
    memcpy(req + hk + hn, "\r\n\r\n", 4);
    cr_assert_eq(raw_status(s.port, req, (size_t)hk + hn + 4, 3000, NULL), 431);
    free(req);
    // a slow client: part of the headers, then silence: 408 (or closed) within --timeout 1
    const char *part = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le";
    double took;
    int st = raw_status(s.port, part, strlen(part), 4000, &took);
    cr_assert(st == 408 || st == 0, "a slow client got %d", st);
    cr_assert_lt(took, 2.5, "the slow client held on for %.2f s", took);
    // and a body that never comes
    const char *nobody = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{";
    st = raw_status(s.port, nobody, strlen(nobody), 4000, &took);
    cr_assert(st == 408 || st == 0, "a missing body got %d", st);
    cr_assert_lt(took, 2.5);
    // the server still answers
    out = curl(&s, &code, "", "/health");
    cr_assert_eq(code, 200);
    free(out);
    srv_stop(&s);
}

static long vm_rss_kb(pid_t pid) {
    char path[64], *status;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    cr_assert((status = read_all(path, NULL)));
    const char *at = strstr(status, "VmRSS:");
    cr_assert(at);
    long kb = atol(at + 6);
    free(status);
    return kb;
}

// n requests by 32 clients; every reply must be whole (valid JSON with a finish_reason).
static void load_round(Srv *s, int n, const char *dir) {
    char *out, *err;
    int rc = run_cmd(&out, &err,
                     "cd %s && rm -rf load && mkdir load && seq %d | xargs -P 32 -I{} sh -c "
                     "\"curl -s --max-time 30 -d '{\\\"prompt\\\":\\\"Once upon a time {}\\\","
                     "\\\"max_tokens\\\":8}' http://127.0.0.1:%d/v1/completions > load/{}.json\"",
                     dir, n, s->port);
    cr_assert_eq(rc, 0, "the load round: %s", err);
    free(out), free(err);
    for (int i = 1; i <= n; i++) {
        char name[64];
        snprintf(name, sizeof name, "load/%d.json", i);
        char *body = read_all(tmp_file(name), NULL);
        cr_assert(body && *body, "request %d got nothing", i);
        JsonValue v;
        parse(&v, body);
        const JsonValue *c = choice0(&v);
        get_str(c, "finish_reason");
        check_usage(&v, NULL, NULL);
        json_free(&v), free(body);
    }
}

Test(server, load_32_clients, .timeout = 120) {
    Srv s;
    srv_start(&s, model_260k(), NULL);
    load_round(&s, 96, tmp_dir());  // warm-up: the threads' arenas and the slots' buffers
    long before = vm_rss_kb(s.pid);
    double t0 = now_s();
    load_round(&s, 640, tmp_dir());
    long after = vm_rss_kb(s.pid);
#ifndef __SANITIZE_ADDRESS__  // ASan's quarantine holds freed memory; its leak check runs at exit
    cr_assert_lt(after - before, 4096, "VmRSS grew from %ld kB to %ld kB over 640 requests",
                 before, after);
#endif
    cr_assert_eq(health_field(&s, "slots_processing"), 0);
    fprintf(stderr, "server::load_32_clients: 640 requests in %.1f s; VmRSS %ld -> %ld kB\n",
            now_s() - t0, before, after);
    srv_stop(&s);
}

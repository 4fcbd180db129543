// test_serve_page.c: the page of `run model -m serve` (server/page.html, embedded as
// serve_page[]) chats with the server in headless Chromium. The test starts the server on
// stories260K, opens /?say=... (the page sends the message on load, streams the reply and opens
// its attention map) and checks: body[data-ready] becomes "ok", the assistant's message is not
// empty, the heatmap canvas is drawn, and a screenshot shows it in colour.
//
// Chromium's --dump-dom and --screenshot do not wait for a streamed fetch (neither
// --virtual-time-budget nor --timeout: the DOM comes out at load, with the reply not yet
// there), so the test drives Chromium over --remote-debugging-pipe (the DevTools protocol:
// NUL-terminated JSON on file descriptors 3 and 4): it polls data-ready, then reads the DOM
// and takes the screenshot in the same page.
//
// Contract: Criterion, libc, POSIX sockets, libpng, io/json.c, the run binary, Chromium
// (Debian's chromium package; elsewhere the test skips, in CI it fails).
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <png.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/json.h"
#include "server/page.h"
#include "helpers.h"

#define SAY "Hello%%20there"  // the message the page sends (URL-encoded; %% for printf)
#define MAX_TOKENS 16

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static void sleep_ms(long ms) { nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL); }

// A port nothing listens on now: bind port 0, read the number, close.
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    cr_assert(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &n) == 0);
    close(s);
    return ntohs(a.sin_port);
}

// GET path from 127.0.0.1:port; returns the HTTP status (0 if no answer) and the whole
// response, headers and body (caller frees; NULL without an answer).
static int http_get(int port, const char *path, char **response) {
    *response = NULL;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return close(s), 0;
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                     path, port);
    if (write(s, req, (size_t)n) != n) return close(s), 0;
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    cr_assert(buf);
    for (;;) {  // to EOF, 5 s at most between reads
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) break;
        if (len + 4096 + 1 > cap) cr_assert((buf = realloc(buf, cap *= 2)));
        ssize_t got = read(s, buf + len, cap - len - 1);
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(s);
    buf[len] = 0;
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = 0;
    *response = buf;
    return status;
}

// Starts argv[0] with argv, stdout and stderr to log; it gets SIGTERM if this process dies
// (a failed assertion ends the test's process).
static pid_t spawn(char *const argv[], const char *log, int fd3, int fd4) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0) _exit(126);
        dup2(out, 1), dup2(out, 2);
        if (fd3 >= 0) {  // move them above 4 first: either may be 3 or 4 already
            int a = fcntl(fd3, F_DUPFD, 10), b = fcntl(fd4, F_DUPFD, 10);
            dup2(a, 3), dup2(b, 4);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

// Ends a child: SIGTERM, then SIGKILL after 10 s. Returns its wait status.
static int stop(pid_t pid) {
    int st = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++, sleep_ms(100))
        if (waitpid(pid, &st, WNOHANG) == pid) return st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return st;
}

// ---- the DevTools protocol over a pipe ----

typedef struct {
    pid_t pid;
    int to, from;       // our ends: commands to Chromium's fd 3, replies from its fd 4
    char *buf;          // bytes read and not yet taken
    size_t len, cap;
    int next_id;
    char session[128];  // the page's session, once attached
} Cdp;

static void cdp_start(Cdp *c, const char *profile, const char *log) {
    int in[2], out[2];
    cr_assert(pipe(in) == 0 && pipe(out) == 0);
    char dir[4200];
    snprintf(dir, sizeof dir, "--user-data-dir=%s", profile);
    // As root (CI) Chromium needs --no-sandbox; a container's small /dev/shm needs the next flag.
    char *argv[] = {"timeout", "120", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", dir, "--remote-debugging-pipe", "--hide-scrollbars",
                    "--window-size=1280,900", "about:blank", NULL};
    *c = (Cdp){.pid = spawn(argv, log, in[0], out[1]), .to = in[1], .from = out[0], .next_id = 1};
    close(in[0]), close(out[1]);
    c->cap = 1 << 20;
    cr_assert((c->buf = malloc(c->cap)));
}

// Sends method(params) (params: a JSON object's text), in the page's session if it has one,
// and waits up to 30 s for its reply, skipping events; returns the reply's "result" in *root
// (json_free it). A protocol error fails the test.
static const JsonValue *cdp_call(Cdp *c, JsonValue *root, const char *method, const char *params) {
    int id = c->next_id++;
    char *msg = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&msg, &n);
    cr_assert(f);
    fprintf(f, "{\"id\":%d,", id);
    if (c->session[0]) fprintf(f, "\"sessionId\":\"%s\",", c->session);
    fprintf(f, "\"method\":\"%s\",\"params\":%s}", method, params);
    fputc(0, f);
    fclose(f);
    for (size_t done = 0; done < n;) {
        ssize_t w = write(c->to, msg + done, n - done);
        cr_assert(w > 0, "writing to Chromium: %s", strerror(errno));
        done += (size_t)w;
    }
    free(msg);
    double deadline = now_s() + 30;
    for (;;) {
        char *end = memchr(c->buf, 0, c->len);
        if (end) {
            size_t m = (size_t)(end - c->buf);
            JsonError err;
            cr_assert(json_parse(c->buf, m, root, &err) == 0, "a reply from Chromium: %s", err.msg);
            memmove(c->buf, end + 1, c->len - m - 1);
            c->len -= m + 1;
            long long got;
            if (json_int(json_get(root, "id"), 0, 1 << 30, &got) && got == id) {
                const JsonValue *e = json_get(root, "error"), *em = json_get(e, "message");
                cr_assert(!e, "%s: %s", method, em && em->type == JSON_STRING ? em->str : "error");
                const JsonValue *r = json_get(root, "result");
                cr_assert(r, "%s: no result", method);
                return r;
            }
            json_free(root);  // an event, or another reply
            continue;
        }
        struct pollfd p = {.fd = c->from, .events = POLLIN};
        int ms = (int)((deadline - now_s()) * 1000);
        cr_assert(ms > 0 && poll(&p, 1, ms) == 1, "%s: no reply from Chromium in 30 s", method);
        if (c->len + 65536 > c->cap) cr_assert((c->buf = realloc(c->buf, c->cap *= 2)));
        ssize_t got = read(c->from, c->buf + c->len, c->cap - c->len);
        cr_assert(got > 0, "%s: Chromium closed the pipe", method);
        c->len += (size_t)got;
    }
}

// Evaluates a JavaScript expression in the page; returns its value as a string (caller frees).
static char *cdp_eval(Cdp *c, const char *expr) {
    char *params = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&params, &n);
    cr_assert(f);
    fputs("{\"returnByValue\":true,\"expression\":", f);
    json_write_string(f, expr, strlen(expr));
    fputs("}", f);
    fclose(f);
    JsonValue root;
    const JsonValue *r = cdp_call(c, &root, "Runtime.evaluate", params);
    free(params);
    const JsonValue *ex = json_get(r, "exceptionDetails"), *v = json_get(json_get(r, "result"), "value");
    char *s = strdup(!ex && v && v->type == JSON_STRING ? v->str : "");
    cr_assert(s);
    json_free(&root);
    return s;
}

// Standard base64 (padding optional); returns the bytes (caller frees), *n their count.
static uint8_t *unbase64(const char *s, size_t *n) {
    size_t len = strlen(s), k = 0;
    uint8_t *out = malloc(len / 4 * 3 + 3);
    cr_assert(out);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && s[i] != '='; i++) {
        const char *p = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", s[i]);
        cr_assert(p && s[i], "not base64: byte %zu", i);
        acc = acc << 6 | (uint32_t)(p - "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
        if ((bits += 6) >= 8) out[k++] = (uint8_t)(acc >> (bits -= 8));
    }
    *n = k;
    return out;
}

// Saturated: not white, black or grey (the viridis colours of the map all are).
static int colored(const uint8_t *p) {
    int hi = p[0] > p[1] ? (p[0] > p[2] ? p[0] : p[2]) : (p[1] > p[2] ? p[1] : p[2]);
    int lo = p[0] < p[1] ? (p[0] < p[2] ? p[0] : p[2]) : (p[1] < p[2] ? p[1] : p[2]);
    return hi - lo > 40;
}

// Just past the first `open` after `from` (NULL without one, or without `from`).
static const char *after(const char *from, const char *open) {
    const char *p = from ? strstr(from, open) : NULL;
    return p ? p + strlen(open) : NULL;
}

Test(serve, page_chats_in_headless_chromium, .timeout = 240) {
    need_program("chromium", "chromium");
    // The embedded page is the one the Makefile built, and fetches nothing.
    size_t total = 0;
    for (size_t i = 0; serve_page[i]; i++) total += strlen(serve_page[i]);
    char *page = malloc(total + 1), *w = page;
    cr_assert(page);
    for (size_t i = 0; serve_page[i]; i++) w = stpcpy(w, serve_page[i]);
    const char *fetches[] = {"http://", "https://", "src=", "<link", "@import", "url("};
    for (size_t i = 0; i < sizeof fetches / sizeof fetches[0]; i++)
        cr_assert(!strstr(page, fetches[i]), "the page contains '%s': not self-contained", fetches[i]);
    cr_assert(strstr(page, "<title>searchlight chat</title>") && strstr(page, "</html>\n"));

    // The server, on a free port; up within 10 s.
    const char *model = export_stories260k_as("f32");
    int port = free_port();
    char port_s[16], server_log[4096];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(server_log, sizeof server_log, "%s", tmp_file("serve.log"));
    char *server_argv[] = {(char *)bin_path("run"), (char *)model, "-m", "serve", "--port", port_s,
                           "-T", "1", NULL};
    pid_t server = spawn(server_argv, server_log, -1, -1);
    char *resp = NULL;
    int status = 0;
    for (double t0 = now_s(); status != 200 && now_s() - t0 < 10; sleep_ms(100)) {
        int st;
        if (waitpid(server, &st, WNOHANG) == server) {
            size_t n;
            char *log = read_all(server_log, &n);
            cr_assert_fail("the server exited (status %d): %s", st, log ? log : "");
        }
        free(resp);
        status = http_get(port, "/health", &resp);
    }
    cr_assert_eq(status, 200, "GET /health did not answer 200 within 10 s: %s", resp ? resp : "");
    free(resp);
    status = http_get(port, "/", &resp);
    cr_assert_eq(status, 200, "GET /: %s", resp ? resp : "(no answer)");
    cr_assert(strstr(resp, "<title>searchlight chat</title>"), "GET / is not the page");
    free(resp), free(page);

    // Chromium opens /?say=..., polled until the page says it is done (60 s at most).
    Cdp c;
    char profile[4096], chrome_log[4096], url[256], params[512];
    snprintf(profile, sizeof profile, "%s", tmp_file("chromium-profile"));
    snprintf(chrome_log, sizeof chrome_log, "%s", tmp_file("chromium.log"));
    cdp_start(&c, profile, chrome_log);
    JsonValue root;
    const JsonValue *r = cdp_call(&c, &root, "Target.createTarget", "{\"url\":\"about:blank\"}");
    snprintf(params, sizeof params, "{\"targetId\":\"%s\",\"flatten\":true}", json_get(r, "targetId")->str);
    json_free(&root);
    r = cdp_call(&c, &root, "Target.attachToTarget", params);
    snprintf(c.session, sizeof c.session, "%s", json_get(r, "sessionId")->str);
    json_free(&root);
    cdp_call(&c, &root, "Emulation.setDeviceMetricsOverride",
             "{\"width\":1280,\"height\":900,\"deviceScaleFactor\":1,\"mobile\":false}");
    json_free(&root);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/?say=" SAY "&max_tokens=%d&temperature=0", port,
             MAX_TOKENS);
    snprintf(params, sizeof params, "{\"url\":\"%s\"}", url);
    cdp_call(&c, &root, "Page.navigate", params);
    json_free(&root);
    char *ready = NULL;
    for (double t0 = now_s(); now_s() - t0 < 60; sleep_ms(200)) {
        free(ready);
        ready = cdp_eval(&c, "location.port && document.body && document.body.dataset.ready || ''");
        if (ready[0]) break;
    }
    char *dom = cdp_eval(&c, "document.documentElement.outerHTML");
    cr_assert_str_eq(ready, "ok", "data-ready is '%s' after 60 s", ready);

    // The DOM: an assistant message with text, and the reply's map drawn.
    const char *text = after(after(dom, "<div class=\"msg assistant\">"), "<div class=\"content\">");
    cr_assert(text && *text && *text != '<', "no assistant reply in the DOM: %.2000s", dom);
    cr_log_info("the reply: %.*s", (int)strcspn(text, "<"), text);
    const char *map = strstr(dom, "id=\"heatmap-1\"");
    cr_assert(map, "no heatmap canvas in the DOM");
    const char *tag = map;
    while (tag > dom && strncmp(tag, "<canvas", 7) != 0) tag--;
    const char *width = strstr(tag, "width=\"");
    cr_assert(strncmp(tag, "<canvas", 7) == 0 && strstr(tag, "class=\"heatmap\"") < strchr(tag, '>') &&
                  width && width < strchr(tag, '>') && atoi(width + 7) > 0,
              "the heatmap canvas was not drawn: %.200s", tag);
    char *rect = cdp_eval(&c, "(b => [b.left, b.top, b.width, b.height].map(Math.round).join(' '))"
                              "(document.getElementById('heatmap-1').getBoundingClientRect())");
    int x0, y0, mw, mh;
    cr_assert(sscanf(rect, "%d %d %d %d", &x0, &y0, &mw, &mh) == 4 && mw > 0 && mh > 0, "rect %s", rect);

    // The screenshot: the map, in the window, mostly in colour (its masked cells are grey).
    r = cdp_call(&c, &root, "Page.captureScreenshot", "{\"format\":\"png\"}");
    size_t png_n;
    uint8_t *png = unbase64(json_get(r, "data")->str, &png_n);
    json_free(&root);
    cr_assert_eq(write_all_file(tmp_file("serve.png"), png, png_n), 0);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_memory(&img, png, png_n), "screenshot: %s", img.message);
    img.format = PNG_FORMAT_RGB;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    cr_assert(px && png_image_finish_read(&img, NULL, px, 0, NULL), "screenshot: %s", img.message);
    unsigned W = img.width, H = img.height;
    cr_assert(W == 1280 && H == 900, "screenshot of %ux%u", W, H);
    cr_assert(x0 >= 0 && y0 >= 0 && x0 + mw <= (int)W && y0 + mh <= (int)H,
              "the map (%s) is not inside the 1280x900 window", rect);
    size_t all = 0, in_map = 0, distinct = 0;
    uint8_t *seen = calloc(1 << 21, 1);  // a bit per 24-bit colour
    cr_assert(seen);
    for (unsigned y = 0; y < H; y++)
        for (unsigned x = 0; x < W; x++) {
            const uint8_t *p = px + 3 * ((size_t)y * W + x);
            int col = colored(p);
            all += col;
            in_map += col && (int)x >= x0 && (int)x < x0 + mw && (int)y >= y0 && (int)y < y0 + mh;
            uint32_t k = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            if (!(seen[k >> 3] & (1 << (k & 7)))) seen[k >> 3] |= (uint8_t)(1 << (k & 7)), distinct++;
        }
    cr_log_info("screenshot %s: map %s, %.1f%% of it coloured, %.1f%% of the window, %zu colours",
                tmp_file("serve.png"), rect, 100.0 * in_map / ((double)mw * mh), 100.0 * all / ((double)W * H),
                distinct);
    // Under the diagonal every cell is coloured; the masked cells above it are fewer than half.
    cr_assert(in_map >= (size_t)mw * mh * 2 / 5, "only %zu of the map's %d pixels are coloured", in_map, mw * mh);
    cr_assert(all >= (size_t)W * H / 100, "only %zu of %u pixels are coloured", all, W * H);
    cr_assert(distinct >= 32, "only %zu colours: no heatmap", distinct);
    free(seen), free(px), free(png), free(rect), free(dom), free(ready);

    c.session[0] = 0;  // the browser's own session
    cdp_call(&c, &root, "Browser.close", "{}");
    json_free(&root);
    close(c.to), close(c.from), free(c.buf);
    stop(c.pid);
    int st = stop(server);
    cr_assert(WIFEXITED(st) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM), "the server ended with %d", st);
}

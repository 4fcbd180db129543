// http.c: HTTP/1.1 requests and responses (see http.h).
#define _GNU_SOURCE  // MSG_NOSIGNAL, MSG_DONTWAIT, POLLRDHUP (Linux); fallbacks below
#include "server/http.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/strbuf.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  // then the server must ignore SIGPIPE itself
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

static int fail(char *err, size_t cap, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t cap, int status, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return status;
}

// RFC 9110 5.6.2 tchar
static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// p[0..n) equals the lower-case s, ignoring case?
static int eq_nocase(const char *p, size_t n, const char *s) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)s[i]) return 0;
    return 1;
}

// Does the comma-separated list p[0..n) hold the token s (lower-case), ignoring case?
static int list_has(const char *p, size_t n, const char *s) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ',')) i++;
        size_t j = i;
        while (j < n && p[j] != ',') j++;
        size_t e = j;
        while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t')) e--;
        if (e > i && eq_nocase(p + i, e - i, s)) return 1;
        i = j;
    }
    return 0;
}

// The request line, line[0..n): METHOD SP target SP HTTP/1.x.
static int parse_request_line(const char *line, size_t n, HttpRequest *req, char *err,
                              size_t cap) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)line[i])) i++;
    if (i == 0 || i >= n || line[i] != ' ') return fail(err, cap, 400, "malformed request line");
    if (i >= sizeof req->method) return fail(err, cap, 501, "method not implemented");
    memcpy(req->method, line, i);
    req->method[i] = '\0';
    size_t t = ++i;
    while (i < n && line[i] != ' ') {
        unsigned char c = (unsigned char)line[i];
        if (c <= 0x20 || c >= 0x7f) return fail(err, cap, 400, "malformed request target");
        i++;
    }
    if (i == t || i >= n) return fail(err, cap, 400, "malformed request line");
    const char *target = line + t;
    size_t tlen = i - t;
    if (!(target[0] == '/' || (tlen == 1 && target[0] == '*')))
        return fail(err, cap, 400, "request target must be a path");
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    if (plen >= sizeof req->path) return fail(err, cap, 414, "request target too long");
    memcpy(req->path, target, plen);
    req->path[plen] = '\0';
    if (q) {
        req->query = q + 1;
        req->query_len = tlen - plen - 1;
    }
    const char *v = line + i + 1;
    size_t vlen = n - i - 1;
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(err, cap, 400, "malformed HTTP version");
    if (v[5] != '1') return fail(err, cap, 505, "only HTTP/1.x is supported");
    req->minor = v[7] > '0';  // a later 1.x is answered as 1.1 (RFC 9110 2.5)
    return 0;
}

typedef struct {
    int cl_seen, te_seen, te_chunked, conn_close, conn_keep;
} HeaderState;

// One header line, line[0..n) (not empty).
static int parse_header(const char *line, size_t n, HttpRequest *req, HeaderState *h,
                        char *err, size_t cap) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)line[i])) i++;
    if (i == 0 || i >= n || line[i] != ':') {
        if (line[0] == ' ' || line[0] == '\t')
            return fail(err, cap, 400, "folded header lines are not accepted");
        return fail(err, cap, 400, "malformed header line");
    }
    const char *name = line;
    size_t name_len = i;
    i++;
    for (size_t k = i; k < n; k++) {
        unsigned char c = (unsigned char)line[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(err, cap, 400, "control byte in header %.*s", (int)(name_len > 40 ? 40 : name_len), name);
    }
    while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t e = n;
    while (e > i && (line[e - 1] == ' ' || line[e - 1] == '\t')) e--;
    const char *val = line + i;
    size_t vlen = e - i;

    if (eq_nocase(name, name_len, "content-length")) {
        if (vlen == 0) return fail(err, cap, 400, "invalid Content-Length");
        size_t v = 0;
        for (size_t k = 0; k < vlen; k++) {
            if (val[k] < '0' || val[k] > '9') return fail(err, cap, 400, "invalid Content-Length");
            size_t d = (size_t)(val[k] - '0');
            v = v > (SIZE_MAX - d) / 10 ? SIZE_MAX : v * 10 + d;  // saturates: then 413
        }
        if (h->cl_seen && v != req->content_length)
            return fail(err, cap, 400, "conflicting Content-Length headers");
        h->cl_seen = 1;
        req->content_length = v;
    } else if (eq_nocase(name, name_len, "transfer-encoding")) {
        h->te_seen = 1;
        h->te_chunked = eq_nocase(val, vlen, "chunked");
    } else if (eq_nocase(name, name_len, "authorization")) {
        if (req->authorization) return fail(err, cap, 400, "repeated Authorization header");
        req->authorization = val;
        req->authorization_len = vlen;
    } else if (eq_nocase(name, name_len, "content-type")) {
        if (req->content_type) return fail(err, cap, 400, "repeated Content-Type header");
        req->content_type = val;
        req->content_type_len = vlen;
    } else if (eq_nocase(name, name_len, "connection")) {
        if (list_has(val, vlen, "close")) h->conn_close = 1;
        if (list_has(val, vlen, "keep-alive")) h->conn_keep = 1;
    } else if (eq_nocase(name, name_len, "expect")) {
        if (!eq_nocase(val, vlen, "100-continue"))
            return fail(err, cap, 417, "only Expect: 100-continue is supported");
        req->expect_continue = 1;
    }
    return 0;
}

int http_parse(const char *buf, size_t n, const HttpLimits *lim, HttpRequest *req,
               size_t *consumed, char *err, size_t cap) {
    memset(req, 0, sizeof *req);
    *consumed = 0;
    if (err && cap) err[0] = '\0';
    size_t limit = n < lim->max_header ? n : lim->max_header;
    size_t pos = 0;
    // empty lines before the request line
    while (pos < limit && (buf[pos] == '\n' || (buf[pos] == '\r' && pos + 1 < limit && buf[pos + 1] == '\n')))
        pos += buf[pos] == '\n' ? 1 : 2;
    HeaderState h = {0};
    int first = 1;
    for (;;) {
        const char *nl = pos < limit ? memchr(buf + pos, '\n', limit - pos) : NULL;
        if (!nl) {
            if (n >= lim->max_header)
                return fail(err, cap, 431, "request headers over %zu bytes", lim->max_header);
            return 1;
        }
        size_t le = (size_t)(nl - buf), end = le;
        if (end > pos && buf[end - 1] == '\r') end--;
        int rc;
        if (first) {
            rc = parse_request_line(buf + pos, end - pos, req, err, cap);
            first = 0;
        } else if (end == pos) {
            pos = le + 1;
            break;
        } else {
            rc = parse_header(buf + pos, end - pos, req, &h, err, cap);
        }
        if (rc) return rc;
        pos = le + 1;
    }
    req->header_len = pos;
    req->keep_alive = req->minor == 1 ? !h.conn_close : h.conn_keep && !h.conn_close;
    if (h.te_seen && h.cl_seen)
        return fail(err, cap, 400, "both Content-Length and Transfer-Encoding");
    if (h.te_seen && h.te_chunked)
        return fail(err, cap, 411, "chunked request bodies are not supported: send Content-Length");
    if (h.te_seen) return fail(err, cap, 501, "unsupported Transfer-Encoding");
    if (req->content_length > lim->max_body)
        return fail(err, cap, 413, "request body over %zu bytes", lim->max_body);
    req->headers_done = 1;
    if (n - pos < req->content_length) return 1;
    req->body = buf + pos;
    req->body_len = req->content_length;
    *consumed = pos + req->content_length;
    return 0;
}

// ----------------------------------------------------------------------------
// reading off a socket

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int http_read(HttpConn *c, const HttpLimits *lim, HttpRequest *req, char *err, size_t cap) {
    if (err && cap) err[0] = '\0';
    if (c->used) {
        memmove(c->buf, c->buf + c->used, c->n - c->used);
        c->n -= c->used;
        c->used = 0;
    }
    // a request takes at most limit bytes: http_parse decides before n reaches it
    size_t limit = lim->max_header > SIZE_MAX / 2 || lim->max_body > SIZE_MAX / 2
                       ? SIZE_MAX / 2 : lim->max_header + lim->max_body;
    int64_t deadline = c->n ? now_ms() + lim->read_timeout_ms : 0;
    int sent_continue = 0;
    for (;;) {
        if (c->n) {
            size_t consumed;
            int rc = http_parse(c->buf, c->n, lim, req, &consumed, err, cap);
            if (rc == 0) {
                c->used = consumed;
                return 0;
            }
            if (rc != 1) return rc;
            if (req->headers_done && req->expect_continue && req->minor == 1 && !sent_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                int64_t left = deadline - now_ms();
                if (http_write_all(c->fd, cont, sizeof cont - 1, left > 0 ? (int)left : 0) != 0)
                    return -1;
                sent_continue = 1;
            }
        }
        if (c->n >= limit) return fail(err, cap, 400, "request too large");  // not reached
        size_t room = limit - c->n < 65536 ? limit - c->n : 65536;
        if (c->cap - c->n < room) {
            size_t ncap = c->cap ? c->cap : 4096;
            while (ncap - c->n < room) ncap *= 2;
            char *nb = realloc(c->buf, ncap);
            if (!nb) return fail(err, cap, 500, "out of memory");
            c->buf = nb;
            c->cap = ncap;
        }
        int wait = lim->read_timeout_ms;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return fail(err, cap, 408, "request not received within %d ms", lim->read_timeout_ms);
            wait = (int)left;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, wait);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (pr == 0) {
            if (!c->n) return -1;  // an idle connection: nothing to answer
            return fail(err, cap, 408, "request not received within %d ms", lim->read_timeout_ms);
        }
        ssize_t r = recv(c->fd, c->buf + c->n, room, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return -1;
        }
        if (r == 0) {
            if (!c->n) return -1;
            return fail(err, cap, 400, "connection closed mid-request");
        }
        if (!deadline) deadline = now_ms() + lim->read_timeout_ms;
        c->n += (size_t)r;
    }
}

void http_conn_free(HttpConn *c) {
    free(c->buf);
    c->buf = NULL;
    c->n = c->cap = c->used = 0;
}

// ----------------------------------------------------------------------------
// writing

int http_write_all(int fd, const void *p, size_t n, int timeout_ms) {
    const char *s = p;
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    while (n) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (pr == 0) return -1;  // timed out
        if ((pfd.revents & (POLLERR | POLLNVAL)) && !(pfd.revents & POLLOUT)) return -1;
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == ENOTSOCK) w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void head(StrBuf *b, int status) {
    sb_printf(b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
}

int http_respond(int fd, int status, const char *content_type, const char *body, size_t len,
                 const char *extra_headers, int timeout_ms) {
    StrBuf b = {0};
    head(&b, status);
    if (content_type) sb_printf(&b, "Content-Type: %s\r\n", content_type);
    sb_printf(&b, "Content-Length: %zu\r\nConnection: close\r\n"
                  "Access-Control-Allow-Origin: *\r\n", len);
    if (extra_headers) sb_adds(&b, extra_headers);
    sb_add(&b, "\r\n", 2);
    sb_add(&b, body, len);
    int rc = b.oom ? -1 : http_write_all(fd, b.p, b.n, timeout_ms);
    sb_free(&b);
    return rc;
}

int http_sse_begin(int fd, int timeout_ms) {
    static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                            "Cache-Control: no-cache\r\nConnection: close\r\n"
                            "Access-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\n\r\n";
    return http_write_all(fd, h, sizeof h - 1, timeout_ms);
}

int http_sse_event(int fd, const char *data, size_t len, int timeout_ms) {
    if (memchr(data, '\n', len) || memchr(data, '\r', len)) return -1;
    StrBuf b = {0};
    sb_add(&b, "data: ", 6);
    sb_add(&b, data, len);
    sb_add(&b, "\n\n", 2);
    int rc = b.oom ? -1 : http_write_all(fd, b.p, b.n, timeout_ms);
    sb_free(&b);
    return rc;
}

int http_peer_gone(int fd) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int pr = poll(&pfd, 1, 0);
    if (pr < 0) return errno == EINTR ? 0 : 1;
    if (pr == 0) return 0;
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return 1;
    if (pfd.revents & POLLIN) {
        char ch;
        ssize_t r = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0) return 1;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1;
    }
    return 0;
}

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

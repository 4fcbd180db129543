// http.h: HTTP/1.1 for the OpenAI-compatible server: parsing requests, reading them off a
// socket with timeouts, writing responses and server-sent events.
//
// Contract: libc and POSIX sockets only; nothing here exits or prints, nothing keeps state
// between calls but the caller's HttpConn. http_parse is a pure function over bytes. Errors
// come back as an HTTP status (>= 400) and a one-line reason in the caller's err buffer (err
// may be NULL when cap is 0).
//
// Strict against request smuggling: a request line of METHOD SP origin-form (or "*") SP
// HTTP/1.x, header lines "name: value" (name a token, no space before the colon, no obs-fold
// continuation lines, no NUL or other control bytes but tab in a value), CRLF or bare LF line
// endings. Content-Length is 1*DIGIT; repeated, it must be the same each time. A request with
// both Content-Length and Transfer-Encoding is refused (400). Chunked request bodies are NOT
// supported: Transfer-Encoding: chunked is refused with 411 Length Required (send
// Content-Length; curl, the OpenAI SDKs and browsers do), any other transfer coding with 501.
// Repeated Authorization or Content-Type headers are refused (400). Empty lines before the
// request line are skipped (RFC 9112 2.2).
#ifndef SEARCHLIGHT_HTTP_H
#define SEARCHLIGHT_HTTP_H

#include <stddef.h>

typedef struct {
    size_t max_header;      // request line + headers + the empty line, bytes (431 beyond)
    size_t max_body;        // Content-Length (413 beyond, decided before reading the body)
    int read_timeout_ms;    // a whole request must arrive within this of its first byte (408)
    int write_timeout_ms;   // for the server's writes
} HttpLimits;

#define HTTP_LIMITS_DEFAULT {16 * 1024, 1024 * 1024, 30000, 30000}

#define HTTP_MAX_PATH 1024  // a longer request target is refused with 414

typedef struct {
    char method[16];           // as sent, NUL-terminated: "GET", "POST", "OPTIONS", ...
    char path[HTTP_MAX_PATH];  // the target without its query, NUL-terminated ("/v1/models")
    const char *query;         // after '?' (not decoded), query_len bytes; NULL if none
    size_t query_len;
    int minor;                 // HTTP/1.<minor>: 0 or 1
    const char *authorization; // the whole value (e.g. "Bearer sk-..."), trimmed; NULL if absent
    size_t authorization_len;
    const char *content_type;  // the whole value, trimmed; NULL if absent
    size_t content_type_len;
    int keep_alive;            // 1.1 without "Connection: close", or 1.0 with "keep-alive"
    int expect_continue;       // "Expect: 100-continue" was sent
    int headers_done;          // the headers are complete (also when http_parse returns 1)
    size_t header_len;         // bytes of request line + headers + empty line
    size_t content_length;     // 0 without Content-Length
    const char *body;          // content_length bytes (set when http_parse returns 0)
    size_t body_len;
} HttpRequest;

// Parses the request at the start of buf[0..n). Returns 0 when the whole request (headers and
// body) is there: *req points into buf and *consumed is its length (the next pipelined request
// starts after it). Returns 1 when more bytes are needed (req->headers_done says whether the
// headers are complete and only body bytes are missing: then 100 Continue may be sent).
// Otherwise returns an HTTP status with a one-line reason in err: 400 malformed, 411 chunked
// body, 413 Content-Length over max_body, 414 target too long, 431 headers over max_header,
// 501 other transfer coding, 505 not HTTP/1.x. *consumed is 0 unless 0 is returned.
int http_parse(const char *buf, size_t n, const HttpLimits *lim, HttpRequest *req,
               size_t *consumed, char *err, size_t cap);

// One connection's read buffer. Start with HttpConn c = {.fd = fd}; free with http_conn_free.
typedef struct {
    int fd;
    char *buf;      // received bytes, n of them, cap allocated
    size_t n, cap;
    size_t used;    // bytes of buf the last request took: dropped by the next http_read
} HttpConn;

// Reads one request (keeping bytes past it for the next call: keep-alive, pipelining). Waits
// up to read_timeout_ms for its first byte; then the whole request must arrive within
// read_timeout_ms of that first byte (so a slow client cannot hold a thread), else 408. Sends
// "HTTP/1.1 100 Continue" when the headers asked for it and the body is still to come.
// Returns 0 with *req pointing into c->buf (valid until the next http_read or
// http_conn_free), an HTTP status >= 400 with a reason in err (400 also when the peer closed
// mid-request, 500 when out of memory), or -1 when there is nothing to answer: the peer closed
// or reset before sending a byte, or sent nothing within the timeout.
int http_read(HttpConn *c, const HttpLimits *lim, HttpRequest *req, char *err, size_t cap);
void http_conn_free(HttpConn *c);

// Writes n bytes to a socket (send with MSG_NOSIGNAL; write() on a non-socket), waiting at most
// timeout_ms in all for it to take them. Returns 0, or -1 on an error or the timeout.
int http_write_all(int fd, const void *p, size_t n, int timeout_ms);

// A whole response: status line with its reason phrase, Content-Type (if content_type is
// non-NULL), Content-Length, "Connection: close", "Access-Control-Allow-Origin: *", then
// extra_headers verbatim (NULL or lines each ending "\r\n", e.g. "WWW-Authenticate:
// Bearer\r\n"), the empty line and len bytes of body. Returns 0 or -1 (as http_write_all).
int http_respond(int fd, int status, const char *content_type, const char *body, size_t len,
                 const char *extra_headers, int timeout_ms);

// The head of a server-sent event stream: 200, "Content-Type: text/event-stream",
// "Cache-Control: no-cache", "Connection: close", CORS, "X-Accel-Buffering: no"; no
// Content-Length (the body ends when the connection closes). Returns 0 or -1.
int http_sse_begin(int fd, int timeout_ms);
// One event, "data: <data>\n\n". data must hold no CR or LF (JSON from sb_json_string never
// does): -1 without writing anything if it does. Returns 0 or -1.
int http_sse_event(int fd, const char *data, size_t len, int timeout_ms);

// Without blocking: 1 if the peer has closed (or half-closed its side) or reset the
// connection, else 0 (also when it has sent more bytes, which are left unread).
int http_peer_gone(int fd);

// The reason phrase of a status ("Not Found"); "Unknown" for one not in the table.
const char *http_reason(int status);

#endif

// tests/test_server_lib.c: the HTTP server's libraries: io/strbuf.c (JSON string literals
// for any bytes), server/http.c (parsing, strictness against smuggling, reads with timeouts
// over a socketpair, responses, server-sent events, a vanished peer) and server/openai.c
// (every request field, both spellings, every bad type; error objects that parse).
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/json.h"
#include "io/strbuf.h"
#include "server/http.h"
#include "server/openai.h"
#include "runtime/session.h"

static double ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// ----------------------------------------------------------------------------
// strbuf

// sb_json_string of n bytes, which must parse as JSON to a string; returns the literal
// (caller frees) and the decoded string in *dec (caller frees).
static char *json_lit(const char *s, size_t n, char **dec, size_t *dec_len) {
    StrBuf b = {0};
    sb_json_string(&b, s, n);
    cr_assert(!b.oom);
    cr_assert_eq(strlen(b.p), b.n, "no NUL inside the literal");
    JsonValue v;
    JsonError e;
    cr_assert_eq(json_parse(b.p, b.n, &v, &e), 0, "'%s' is not JSON: %s at %zu", b.p, e.msg, e.offset);
    cr_assert_eq(v.type, JSON_STRING);
    *dec = malloc(v.len + 1);
    memcpy(*dec, v.str, v.len + 1);
    if (dec_len) *dec_len = v.len;
    json_free(&v);
    return b.p;
}

Test(strbuf, add_printf_grow_and_stay_nul_terminated) {
    StrBuf b = {0};
    sb_adds(&b, "abc");
    sb_add(&b, "d\0e", 3);
    cr_assert_eq(b.n, 6);
    cr_assert_eq(memcmp(b.p, "abcd\0e", 7), 0);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[999] = '\0';
    sb_printf(&b, "[%s|%d]", big, 42);  // longer than sb_printf's stack buffer
    cr_assert_eq(b.n, 6 + 1 + 999 + 4);
    cr_assert_str_eq(b.p + 6 + 1 + 999, "|42]");
    cr_assert_eq(b.p[b.n], '\0');
    sb_free(&b);
    cr_assert_null(b.p);
    cr_assert_eq(b.n, 0);
}

Test(strbuf, oom_is_sticky) {
    StrBuf b = {0};
    sb_adds(&b, "ok");
    b.oom = 1;
    sb_adds(&b, "more");
    sb_printf(&b, "%d", 7);
    sb_json_string(&b, "x", 1);
    cr_assert_eq(b.n, 2);
    cr_assert_str_eq(b.p, "ok");
    sb_free(&b);
}

Test(strbuf, json_string_escapes_quotes_backslash_controls_and_lt) {
    const char in[] = "a\"b\\c\n\t\r\b\f\x01\x1f<script>\x7f/";
    char *dec;
    size_t dlen;
    char *lit = json_lit(in, sizeof in - 1, &dec, &dlen);
    cr_assert_str_eq(lit, "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u001f\\u003cscript>\x7f/\"");
    cr_assert_eq(dlen, sizeof in - 1);
    cr_assert_eq(memcmp(dec, in, dlen), 0, "decodes back to the input");
    free(lit), free(dec);
    StrBuf b = {0};
    sb_json_string(&b, "a\0b", 3);
    cr_assert_str_eq(b.p, "\"a\\u0000b\"", "a NUL byte is escaped, not an end");
    sb_free(&b);
}

Test(strbuf, json_string_replaces_each_invalid_utf8_byte_with_fffd) {
    struct { const char *in, *out; } cases[] = {
        {"\xff", "\"\\ufffd\""},
        {"a\xc3", "\"a\\ufffd\""},                         // truncated 2-byte sequence
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                // overlong '/'
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},     // a surrogate
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},  // beyond U+10FFFF
        {"\xe2\x82", "\"\\ufffd\\ufffd\""},                // truncated euro sign
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
        {"\x80x", "\"\\ufffdx\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dec;
        char *lit = json_lit(cases[i].in, strlen(cases[i].in), &dec, NULL);
        cr_assert_str_eq(lit, cases[i].out, "case %zu", i);
        free(lit), free(dec);
    }
}

Test(strbuf, json_string_is_valid_json_for_every_byte_and_random_bytes) {
    char s[1];
    for (int c = 0; c < 256; c++) {
        s[0] = (char)c;
        char *dec;
        free(json_lit(s, 1, &dec, NULL));
        free(dec);
    }
    uint64_t x = 12345;
    char buf[64];
    for (int t = 0; t < 2000; t++) {
        for (size_t i = 0; i < sizeof buf; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (char)(x & 0xff);
        }
        char *dec;
        free(json_lit(buf, (size_t)(x % sizeof buf), &dec, NULL));
        free(dec);
    }
}

// ----------------------------------------------------------------------------
// http_parse

static const HttpLimits lim_default = HTTP_LIMITS_DEFAULT;

static int parse(const char *s, HttpRequest *r, size_t *consumed, char *err) {
    return http_parse(s, strlen(s), &lim_default, r, consumed, err, 128);
}

Test(http, limits_default) {
    cr_assert_eq(lim_default.max_header, 16384);
    cr_assert_eq(lim_default.max_body, 1048576);
    cr_assert_eq(lim_default.read_timeout_ms, 30000);
    cr_assert_eq(lim_default.write_timeout_ms, 30000);
}

Test(http, parse_get_with_query) {
    const char *s = "GET /v1/models?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n";
    HttpRequest r;
    size_t used;
    char err[128];
    cr_assert_eq(parse(s, &r, &used, err), 0, "%s", err);
    cr_assert_str_eq(r.method, "GET");
    cr_assert_str_eq(r.path, "/v1/models");
    cr_assert_eq(r.query_len, 7);
    cr_assert_eq(memcmp(r.query, "a=1&b=2", 7), 0);
    cr_assert_eq(r.minor, 1);
    cr_assert(r.keep_alive);
    cr_assert_null(r.authorization);
    cr_assert_eq(r.body_len, 0);
    cr_assert_eq(used, strlen(s));
}

static const char curl_post[] =
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "authorization:   Bearer sk-123  \r\n"
    "CONTENT-type: application/json\r\n"
    "Content-Length: 17\r\n"
    "\r\n"
    "{\"messages\": [1]}";

Test(http, parse_post_headers_case_insensitive_and_trimmed) {
    HttpRequest r;
    size_t used;
    char err[128];
    cr_assert_eq(parse(curl_post, &r, &used, err), 0, "%s", err);
    cr_assert_str_eq(r.method, "POST");
    cr_assert_str_eq(r.path, "/v1/chat/completions");
    cr_assert_null(r.query);
    cr_assert_eq(r.authorization_len, 13);
    cr_assert_eq(memcmp(r.authorization, "Bearer sk-123", 13), 0);
    cr_assert_eq(r.content_type_len, 16);
    cr_assert_eq(memcmp(r.content_type, "application/json", 16), 0);
    cr_assert_eq(r.body_len, 17);
    cr_assert_eq(memcmp(r.body, "{\"messages\": [1]}", 17), 0);
    cr_assert_eq(r.body, curl_post + r.header_len, "the body points into the buffer");
    cr_assert_eq(used, strlen(curl_post));
}

Test(http, parse_split_at_every_byte_needs_more_until_the_last) {
    size_t n = strlen(curl_post);
    HttpRequest r;
    size_t used, header_len = strstr(curl_post, "\r\n\r\n") + 4 - curl_post;
    char err[128];
    for (size_t k = 0; k < n; k++) {
        int rc = http_parse(curl_post, k, &lim_default, &r, &used, err, sizeof err);
        cr_assert_eq(rc, 1, "prefix %zu: %d %s", k, rc, err);
        cr_assert_eq(used, 0);
        cr_assert_eq(r.headers_done, k >= header_len, "prefix %zu: headers_done %d", k, r.headers_done);
    }
    cr_assert_eq(http_parse(curl_post, n, &lim_default, &r, &used, err, sizeof err), 0);
    cr_assert_eq(used, n);
}

Test(http, parse_pipelined_requests_one_after_the_other) {
    const char *s = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n";
    HttpRequest r;
    size_t used, off = 0;
    char err[128];
    cr_assert_eq(http_parse(s, strlen(s), &lim_default, &r, &used, err, 128), 0);
    cr_assert_str_eq(r.path, "/a");
    cr_assert_eq(r.body_len, 3);
    off += used;
    cr_assert_eq(http_parse(s + off, strlen(s) - off, &lim_default, &r, &used, err, 128), 0);
    cr_assert_str_eq(r.path, "/b");
    cr_assert_str_eq(r.method, "GET");
    off += used;
    cr_assert_eq(http_parse(s + off, strlen(s) - off, &lim_default, &r, &used, err, 128), 1,
                 "the third is incomplete");
}

Test(http, parse_bare_lf_leading_blank_lines_and_connection) {
    HttpRequest r;
    size_t used;
    char err[128];
    cr_assert_eq(parse("\r\n\nGET / HTTP/1.1\nConnection: Close\n\n", &r, &used, err), 0, "%s", err);
    cr_assert_str_eq(r.path, "/");
    cr_assert_eq(r.keep_alive, 0);
    cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &r, &used, err), 0);
    cr_assert_eq(r.minor, 0);
    cr_assert_eq(r.keep_alive, 0, "1.0 closes by default");
    cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n", &r, &used, err), 0);
    cr_assert_eq(r.keep_alive, 1);
    cr_assert_eq(parse("OPTIONS * HTTP/1.1\r\n\r\n", &r, &used, err), 0);
    cr_assert_str_eq(r.path, "*");
    cr_assert_eq(parse("GET / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nhi", &r, &used, err), 0,
                 "the same Content-Length twice is fine");
    cr_assert_eq(r.body_len, 2);
}

Test(http, parse_expect_100_continue_reports_headers_done) {
    const char *s = "POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    HttpRequest r;
    size_t used;
    char err[128];
    cr_assert_eq(parse(s, &r, &used, err), 1);
    cr_assert(r.headers_done);
    cr_assert(r.expect_continue);
    cr_assert_eq(r.content_length, 5);
    cr_assert_eq(r.header_len, strlen(s));
}

// Each bad request gives its status, a reason, and consumes nothing.
Test(http, parse_each_error_status) {
    struct { const char *req; int status; } cases[] = {
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", 413},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.1x\r\n\r\n", 400},
        {"GET / http/1.1\r\n\r\n", 400},
        {"GET /\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"GET http://example.com/ HTTP/1.1\r\n\r\n", 400},
        {"GET /\x7f HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX-Folded: a\r\n  b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Type: a\r\ncontent-type: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nExpect: something-else\r\n\r\n", 417},
        {"AVERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        HttpRequest r;
        size_t used = 99;
        char err[128];
        memset(err, 'z', sizeof err);
        int rc = parse(cases[i].req, &r, &used, err);
        cr_assert_eq(rc, cases[i].status, "case %zu: got %d (%s), want %d", i, rc,
                     rc >= 400 ? err : "", cases[i].status);
        cr_assert_eq(used, 0, "case %zu", i);
        cr_assert(memchr(err, 0, sizeof err) && err[0] && !strchr(err, '\n'), "case %zu: a one-line reason", i);
    }
}

Test(http, parse_nul_in_header_is_400) {
    const char s[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    HttpRequest r;
    size_t used;
    char err[128];
    cr_assert_eq(http_parse(s, sizeof s - 1, &lim_default, &r, &used, err, sizeof err), 400);
    const char t[] = "GET /\0 HTTP/1.1\r\n\r\n";
    cr_assert_eq(http_parse(t, sizeof t - 1, &lim_default, &r, &used, err, sizeof err), 400);
}

Test(http, parse_431_and_414_and_413_before_the_body) {
    HttpLimits lim = {64, 10, 1000, 1000};
    HttpRequest r;
    size_t used;
    char err[128];
    char s[200];
    // no end of headers within 64 bytes
    memset(s, 'a', sizeof s);
    memcpy(s, "GET / HTTP/1.1\r\nX: ", 19);
    cr_assert_eq(http_parse(s, 63, &lim, &r, &used, err, sizeof err), 1);
    cr_assert_eq(http_parse(s, 64, &lim, &r, &used, err, sizeof err), 431, "%s", err);
    cr_assert_eq(http_parse(s, sizeof s, &lim, &r, &used, err, sizeof err), 431);
    // complete, but past 64 bytes
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nX: %060d\r\n\r\n", 0);
    cr_assert_eq(http_parse(s, strlen(s), &lim, &r, &used, err, sizeof err), 431);
    // exactly 64 bytes of headers is fine
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nX: %041d\r\n\r\n", 0);
    cr_assert_eq(strlen(s), 64);
    cr_assert_eq(http_parse(s, strlen(s), &lim, &r, &used, err, sizeof err), 0, "%s", err);
    // body: 10 is fine, 11 refused from the header alone
    cr_assert_eq(http_parse("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 39, &lim, &r, &used, err, sizeof err), 413);
    cr_assert_eq(http_parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", 39, &lim, &r, &used, err, sizeof err), 1);
    // a path of HTTP_MAX_PATH bytes
    static char big[HTTP_MAX_PATH + 64];
    memset(big, 'p', sizeof big);
    memcpy(big, "GET /", 5);
    snprintf(big + 5 + HTTP_MAX_PATH - 1, sizeof big - (5 + HTTP_MAX_PATH - 1), " HTTP/1.1\r\n\r\n");
    cr_assert_eq(parse(big, &r, &used, err), 414);
    big[5 + HTTP_MAX_PATH - 2] = '?';  // the path is shorter than that: fine
    cr_assert_eq(parse(big, &r, &used, err), 0, "%s", err);
}

// ----------------------------------------------------------------------------
// http_read over a socketpair

static void pair(int sv[2]) { cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0); }

static void put(int fd, const char *s) {
    cr_assert_eq(http_write_all(fd, s, strlen(s), 1000), 0);
}

Test(http, read_keep_alive_two_requests_then_the_peer_closes) {
    int sv[2];
    pair(sv);
    put(sv[1], "GET /one HTTP/1.1\r\n\r\nPOST /two HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    lim.read_timeout_ms = 500;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(r.path, "/one");
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(r.path, "/two");
    cr_assert_eq(r.body_len, 2);
    cr_assert_eq(memcmp(r.body, "hi", 2), 0);
    close(sv[1]);
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), -1, "closed before a byte: nothing to answer");
    http_conn_free(&c);
    close(sv[0]);
}

Test(http, read_stalled_client_gets_408_within_the_timeout) {
    int sv[2];
    pair(sv);
    put(sv[1], "POST / HTTP/1.1\r\nContent-Le");
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    lim.read_timeout_ms = 200;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    double t0 = ms_now();
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), 408);
    double dt = ms_now() - t0;
    cr_assert(dt >= 150 && dt < 1500, "408 after %.0f ms", dt);
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
}

Test(http, read_idle_connection_times_out_with_nothing_to_answer) {
    int sv[2];
    pair(sv);
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    lim.read_timeout_ms = 100;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), -1);
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
}

Test(http, read_peer_closing_mid_request_is_400) {
    int sv[2];
    pair(sv);
    put(sv[1], "GET / HTTP/1.1\r\n");
    close(sv[1]);
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), 400);
    cr_assert(strstr(err, "closed"), "%s", err);
    http_conn_free(&c);
    close(sv[0]);
}

// A slowloris client: one byte every 20 ms, forever (until the server stops reading).
typedef struct {
    int fd;
    volatile int stop;
} Drip;

static void *drip(void *arg) {
    Drip *d = arg;
    const char *s = "GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; s[i] && !d->stop; i++) {
        if (http_write_all(d->fd, s + i, 1, 200) != 0) break;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

Test(http, read_slowloris_gets_408_at_the_deadline_of_its_first_byte) {
    int sv[2];
    pair(sv);
    Drip d = {sv[1], 0};
    pthread_t th;
    pthread_create(&th, NULL, drip, &d);
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    lim.read_timeout_ms = 200;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    double t0 = ms_now();
    int rc = http_read(&c, &lim, &r, err, sizeof err);
    double dt = ms_now() - t0;
    d.stop = 1;
    pthread_join(th, NULL);
    cr_assert_eq(rc, 408, "%d %s", rc, err);
    cr_assert(dt < 1000, "a byte every 20 ms did not extend the deadline: %.0f ms", dt);
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
}

// A curl-like client: headers with Expect: 100-continue, waits for "100 Continue", then the body.
typedef struct {
    int fd, got_continue;
} Expecter;

static void *expect_client(void *arg) {
    Expecter *e = arg;
    const char *h = "POST /v1/completions HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    if (http_write_all(e->fd, h, strlen(h), 1000) != 0) return NULL;
    char buf[64] = {0};
    size_t n = 0;
    const char *want = "HTTP/1.1 100 Continue\r\n\r\n";
    while (n < strlen(want)) {
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1) return NULL;  // curl would wait 1 s, then send anyway
        ssize_t r = recv(e->fd, buf + n, strlen(want) - n, 0);
        if (r <= 0) return NULL;
        n += (size_t)r;
    }
    e->got_continue = strcmp(buf, want) == 0;
    http_write_all(e->fd, "body", 4, 1000);
    return NULL;
}

Test(http, read_answers_expect_100_continue_before_the_body) {
    int sv[2];
    pair(sv);
    Expecter e = {sv[1], 0};
    pthread_t th;
    pthread_create(&th, NULL, expect_client, &e);
    HttpLimits lim = HTTP_LIMITS_DEFAULT;
    lim.read_timeout_ms = 3000;
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    double t0 = ms_now();
    int rc = http_read(&c, &lim, &r, err, sizeof err);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(e.got_continue, "the client saw HTTP/1.1 100 Continue");
    cr_assert(ms_now() - t0 < 900, "no 1 s wait");
    cr_assert_eq(r.body_len, 4);
    cr_assert_eq(memcmp(r.body, "body", 4), 0);
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
}

Test(http, read_refuses_an_oversized_body_without_reading_it) {
    int sv[2];
    pair(sv);
    put(sv[1], "POST / HTTP/1.1\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n");
    HttpLimits lim = {1024, 99, 500, 500};
    HttpConn c = {.fd = sv[0]};
    HttpRequest r;
    char err[128];
    cr_assert_eq(http_read(&c, &lim, &r, err, sizeof err), 413);
    struct pollfd p = {.fd = sv[1], .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 0), 0, "no 100 Continue was sent for a refused body");
    http_conn_free(&c);
    close(sv[0]), close(sv[1]);
}

// ----------------------------------------------------------------------------
// writing

// Everything readable on fd within 200 ms of quiet (NUL-terminated; caller frees).
static char *slurp(int fd) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1) break;
        ssize_t r = recv(fd, b + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    b[n] = '\0';
    return b;
}

Test(http, respond_writes_status_headers_and_body) {
    int sv[2];
    pair(sv);
    cr_assert_eq(http_respond(sv[0], 401, "application/json", "{}", 2, "WWW-Authenticate: Bearer\r\n", 1000), 0);
    char *got = slurp(sv[1]);
    cr_assert_str_eq(got, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                          "Content-Length: 2\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
                          "WWW-Authenticate: Bearer\r\n\r\n{}");
    free(got);
    cr_assert_eq(http_respond(sv[0], 204, NULL, NULL, 0, NULL, 1000), 0);
    got = slurp(sv[1]);
    cr_assert_str_eq(got, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n"
                          "Access-Control-Allow-Origin: *\r\n\r\n");
    free(got);
    close(sv[0]), close(sv[1]);
}

Test(http, sse_head_and_events) {
    int sv[2];
    pair(sv);
    cr_assert_eq(http_sse_begin(sv[0], 1000), 0);
    cr_assert_eq(http_sse_event(sv[0], "{\"a\":1}", 7, 1000), 0);
    cr_assert_eq(http_sse_event(sv[0], "[DONE]", 6, 1000), 0);
    cr_assert_eq(http_sse_event(sv[0], "a\nb", 3, 1000), -1, "a newline would split the event");
    cr_assert_eq(http_sse_event(sv[0], "a\rb", 3, 1000), -1);
    char *got = slurp(sv[1]);
    const char *body = strstr(got, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_str_eq(body + 4, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    cr_assert(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
    cr_assert(strstr(got, "\r\nContent-Type: text/event-stream\r\n"));
    cr_assert(strstr(got, "\r\nCache-Control: no-cache\r\n"));
    cr_assert(strstr(got, "\r\nConnection: close\r\n"));
    cr_assert(strstr(got, "\r\nAccess-Control-Allow-Origin: *\r\n"));
    cr_assert_null(strstr(got, "Content-Length"));
    free(got);
    close(sv[0]), close(sv[1]);
}

Test(http, write_all_fails_on_a_closed_peer_and_on_timeout) {
    int sv[2];
    pair(sv);
    // nobody reads: the socket buffer fills, then the timeout
    size_t n = 16 << 20;
    char *big = calloc(n, 1);
    double t0 = ms_now();
    cr_assert_eq(http_write_all(sv[0], big, n, 100), -1);
    double dt = ms_now() - t0;
    cr_assert(dt >= 80 && dt < 1000, "gave up after %.0f ms", dt);
    close(sv[1]);
    cr_assert_eq(http_write_all(sv[0], "x", 1, 100), -1, "EPIPE, and no SIGPIPE killed us");
    free(big);
    close(sv[0]);
}

Test(http, peer_gone_after_close_not_before) {
    int sv[2];
    pair(sv);
    cr_assert_eq(http_peer_gone(sv[0]), 0);
    put(sv[1], "GET / HTTP/1.1\r\n\r\n");
    cr_assert_eq(http_peer_gone(sv[0]), 0, "unread bytes are not a hangup");
    char b[4];
    cr_assert_eq(recv(sv[0], b, 1, MSG_PEEK), 1, "the bytes are left unread");
    close(sv[1]);
    cr_assert_eq(http_peer_gone(sv[0]), 1);
    close(sv[0]);
}

Test(http, reason_phrases) {
    cr_assert_str_eq(http_reason(200), "OK");
    cr_assert_str_eq(http_reason(404), "Not Found");
    cr_assert_str_eq(http_reason(408), "Request Timeout");
    cr_assert_str_eq(http_reason(413), "Content Too Large");
    cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http_reason(503), "Service Unavailable");
    cr_assert_str_eq(http_reason(799), "Unknown");
}

// ----------------------------------------------------------------------------
// openai

static int dec(const char *body, int kind, OaiRequest *r, char *err) {
    return oai_decode(body, strlen(body), kind, r, err, 256);
}

Test(openai, chat_every_field) {
    const char *body =
        "{\"model\":\"kjv\",\"messages\":["
        "{\"role\":\"developer\",\"content\":\"Be brief.\"},"
        "{\"role\":\"system\",\"content\":\"S\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello, \"},{\"type\":\"text\",\"text\":\"world\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
        "{\"role\":\"user\",\"content\":\"caf\\u00e9\",\"name\":\"bob\"}],"
        "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"min_p\":0.05,\"repeat_penalty\":1.1,"
        "\"seed\":42,\"max_tokens\":100,\"stop\":[\"\\n\\n\",\"END\"],\"n\":1,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"attention\":true,"
        "\"frequency_penalty\":0.3,\"user\":\"u\",\"logit_bias\":{\"1\":2}}";
    OaiRequest r;
    char err[256];
    cr_assert_eq(dec(body, OAI_CHAT, &r, err), 0, "%s", err);
    cr_assert_eq(r.kind, OAI_CHAT);
    cr_assert_eq(r.n_msgs, 5);
    cr_assert_str_eq(r.msgs[0].role, "system");
    cr_assert_str_eq(r.msgs[0].content, "Be brief.");
    cr_assert_str_eq(r.msgs[1].role, "system");
    cr_assert_str_eq(r.msgs[2].role, "user");
    cr_assert_str_eq(r.msgs[2].content, "Hello, world");
    cr_assert_str_eq(r.msgs[3].role, "assistant");
    cr_assert_str_eq(r.msgs[3].content, "");
    cr_assert_str_eq(r.msgs[4].content, "caf\xc3\xa9");
    cr_assert_eq(r.set, OAI_SET_TEMPERATURE | OAI_SET_TOP_P | OAI_SET_TOP_K | OAI_SET_MIN_P |
                            OAI_SET_REPEAT_PENALTY | OAI_SET_SEED | OAI_SET_MAX_TOKENS);
    cr_assert_float_eq(r.temperature, 0.5f, 1e-7);
    cr_assert_float_eq(r.top_p, 0.9f, 1e-7);
    cr_assert_eq(r.top_k, 40);
    cr_assert_float_eq(r.min_p, 0.05f, 1e-7);
    cr_assert_float_eq(r.repeat_penalty, 1.1f, 1e-7);
    cr_assert_eq(r.seed, 42);
    cr_assert_eq(r.max_tokens, 100);
    cr_assert_eq(r.n_stop, 2);
    cr_assert_str_eq(r.stop[0], "\n\n");
    cr_assert_eq(r.stop_len[0], 2);
    cr_assert_str_eq(r.stop[1], "END");
    cr_assert_eq(r.stream, 1);
    cr_assert_eq(r.include_usage, 1);
    cr_assert_eq(r.attention, 1);
    cr_assert_str_eq(r.model, "kjv");
    cr_assert_null(r.prompt);
    oai_free(&r);
    cr_assert_null(r.msgs);
}

Test(openai, completion_and_the_other_spellings) {
    OaiRequest r;
    char err[256];
    cr_assert_eq(dec("{\"prompt\":\"In the beginning\",\"repetition_penalty\":1.3,\"n_predict\":7,"
                     "\"stop\":\"\\n\",\"seed\":-1}", OAI_COMPLETION, &r, err), 0, "%s", err);
    cr_assert_eq(r.kind, OAI_COMPLETION);
    cr_assert_str_eq(r.prompt, "In the beginning");
    cr_assert_eq(r.prompt_len, 16);
    cr_assert_eq(r.set, OAI_SET_REPEAT_PENALTY | OAI_SET_MAX_TOKENS, "a negative seed is unset");
    cr_assert_float_eq(r.repeat_penalty, 1.3f, 1e-7);
    cr_assert_eq(r.max_tokens, 7);
    cr_assert_eq(r.n_stop, 1);
    cr_assert_str_eq(r.stop[0], "\n");
    cr_assert_eq(r.stream, 0);
    cr_assert_str_eq(r.model, "");
    cr_assert_eq(r.n_msgs, 0);
    oai_free(&r);

    cr_assert_eq(dec("{\"prompt\":[\"one\"],\"max_completion_tokens\":9,\"max_tokens\":3}", OAI_COMPLETION, &r, err), 0);
    cr_assert_str_eq(r.prompt, "one");
    cr_assert_eq(r.max_tokens, 9, "max_completion_tokens first");
    oai_free(&r);

    cr_assert_eq(dec("{\"prompt\":\"x\",\"max_tokens\":-1,\"seed\":18446744073709549568,"
                     "\"temperature\":null,\"top_p\":null,\"stop\":null,\"n\":null,\"stream\":false,"
                     "\"stream_options\":null,\"model\":null,\"stop\":[]}",
                     OAI_COMPLETION, &r, err), 0, "%s", err);
    cr_assert_eq(r.set, OAI_SET_SEED, "-1 and null are unset");
    cr_assert_eq(r.seed, 18446744073709549568ull);
    cr_assert_eq(r.n_stop, 0);
    oai_free(&r);

    cr_assert_eq(dec("{\"prompt\":\"x\",\"temperature\":0,\"top_k\":0,\"top_p\":1,\"min_p\":0,\"seed\":0}",
                     OAI_COMPLETION, &r, err), 0, "the bounds are included");
    cr_assert_eq(r.set, OAI_SET_TEMPERATURE | OAI_SET_TOP_K | OAI_SET_TOP_P | OAI_SET_MIN_P | OAI_SET_SEED);
    cr_assert_eq(r.temperature, 0.0f);
    oai_free(&r);
}

// Each bad body fails with a message naming what is wrong, and leaves nothing allocated.
Test(openai, every_bad_type_names_the_field) {
    struct { int kind; const char *body, *want; } cases[] = {
        {OAI_CHAT, "[]", "JSON object"},
        {OAI_CHAT, "{\"messages\":", "invalid JSON"},
        {OAI_CHAT, "", "invalid JSON"},
        {OAI_CHAT, "{}", "messages must be a non-empty array"},
        {OAI_CHAT, "{\"messages\":[]}", "messages must be a non-empty array"},
        {OAI_CHAT, "{\"messages\":{}}", "messages must be a non-empty array"},
        {OAI_CHAT, "{\"messages\":[1]}", "messages[0] must be an object"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"b\"}]}", "messages[1].role"},
        {OAI_CHAT, "{\"messages\":[{\"content\":\"b\"}]}", "messages[0].role"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "NUL"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", "image_url"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0].text"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", "messages[0].content[0]"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", "messages[0].content[0]"},
        {OAI_COMPLETION, "{}", "prompt must be a string"},
        {OAI_COMPLETION, "{\"prompt\":[1,2,3]}", "prompt must be a string"},
        {OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt must be a string"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"temperature\":-0.1}", "temperature must be a number >= 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"temperature\":\"1\"}", "temperature must be a number >= 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"top_p\":1.5}", "top_p must be a number in [0, 1]"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"top_p\":true}", "top_p"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"min_p\":-1}", "min_p must be a number in [0, 1]"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"top_k\":1.5}", "top_k must be an integer >= 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"top_k\":-1}", "top_k must be an integer >= 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"repeat_penalty\":0}", "repeat_penalty must be a number > 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"repetition_penalty\":-1}", "repetition_penalty must be a number > 0"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"seed\":1.5}", "seed must be an integer"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"seed\":\"7\"}", "seed must be an integer"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"seed\":1e30}", "seed must be an integer"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens must be an integer >= 1"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":-2}", "max_tokens must be an integer >= 1"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":2.5}", "max_tokens"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"max_completion_tokens\":\"5\"}", "max_completion_tokens"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"n_predict\":0}", "n_predict"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":5}", "stop must be"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":\"\"}", "stop must be"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"a\",\"\"]}", "stop must be"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"a\",1]}", "stop must be"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "at most 4"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"n\":2}", "n must be 1"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stream\":\"yes\"}", "stream must be a boolean"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stream\":1}", "stream must be a boolean"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":true}", "stream_options must be an object"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":1}}", "stream_options.include_usage"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"attention\":\"on\"}", "attention must be a boolean"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"model\":5}", "model must be a string"},
        {OAI_COMPLETION, "{\"prompt\":\"a\",\"model\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "model must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        OaiRequest r;
        char err[256] = "";
        cr_assert_eq(dec(cases[i].body, cases[i].kind, &r, err), -1, "case %zu: %s accepted", i, cases[i].body);
        cr_assert(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        cr_assert_null(strchr(err, '\n'), "case %zu: one line", i);
        cr_assert(r.msgs == NULL && r.prompt == NULL && r.n_stop == 0 && r.n_msgs == 0, "case %zu: emptied", i);
    }
}

// A stop string longer than the session holds (SESSION_STOP_MAX) is a 400, not a server's abort.
Test(openai, stop_strings_of_256_bytes_at_most) {
    char body[700], err[256] = "";
    char stop[258];
    memset(stop, 'x', 257), stop[257] = '\0';
    snprintf(body, sizeof body, "{\"prompt\":\"a\",\"stop\":[\"b\",\"%s\"]}", stop);
    OaiRequest r;
    cr_assert_eq(dec(body, OAI_COMPLETION, &r, err), -1);
    cr_assert(strstr(err, "at most 256 bytes"), "%s", err);
    stop[256] = '\0';  // 256 bytes: accepted
    snprintf(body, sizeof body, "{\"prompt\":\"a\",\"stop\":\"%s\"}", stop);
    cr_assert_eq(dec(body, OAI_COMPLETION, &r, err), 0, "%s", err);
    cr_assert_eq(r.stop_len[0], 256);
    cr_assert_eq(OAI_STOP_MAX, SESSION_STOP_MAX);
    oai_free(&r);
}

Test(openai, error_objects_parse_and_carry_type_and_code) {
    struct { int status; const char *type; } cases[] = {
        {400, "invalid_request_error"}, {401, "authentication_error"}, {404, "not_found_error"},
        {413, "invalid_request_error"}, {422, "invalid_request_error"}, {431, "invalid_request_error"},
        {429, "rate_limit_error"}, {500, "server_error"}, {501, "not_supported_error"},
        {503, "unavailable_error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        StrBuf b = {0};
        const char *msg = "bad \"x\"\n\x01 <tag> \xff caf\xc3\xa9";
        oai_error(&b, cases[i].status, msg);
        cr_assert(!b.oom);
        JsonValue v;
        JsonError e;
        cr_assert_eq(json_parse(b.p, b.n, &v, &e), 0, "%s: %s", b.p, e.msg);
        const JsonValue *err = json_get(&v, "error");
        cr_assert_not_null(err);
        cr_assert(json_is_str(json_get(err, "type"), cases[i].type), "%d: %s", cases[i].status, b.p);
        long long code;
        cr_assert(json_int(json_get(err, "code"), 0, 999, &code) && code == cases[i].status, "%s", b.p);
        const JsonValue *m = json_get(err, "message");
        cr_assert(m && m->type == JSON_STRING);
        cr_assert_str_eq(m->str, "bad \"x\"\n\x01 <tag> \xef\xbf\xbd caf\xc3\xa9");
        cr_assert_not_null(json_get(err, "param"));
        json_free(&v);
        sb_free(&b);
    }
}

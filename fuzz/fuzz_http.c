// fuzz_http: http_parse on arbitrary bytes with two sets of small limits, then on the prefix
// and the rest that a complete request implies. Invariants: consumed <= n, a NUL-terminated
// one-line reason, a status in {0, 1, 400..505}, a complete request's pointers inside the
// input, a prefix of a complete request needing more bytes.
#include "server/http.h"
#include "fuzz.h"

static void check(const char *buf, size_t n, const HttpLimits *lim, HttpRequest *r, int *rc,
                  size_t *used) {
    char err[64];
    memset(err, 'z', sizeof err);
    *rc = http_parse(buf, n, lim, r, used, err, sizeof err);
    if (*used > n) abort();
    if (*rc == 0) {
        if (*used == 0 || r->header_len > *used || !r->headers_done) abort();
        if (r->body_len != r->content_length || r->body_len > lim->max_body) abort();
        if (r->body != buf + r->header_len || r->header_len + r->body_len != *used) abort();
        if (r->header_len > lim->max_header) abort();
        if (r->query && (r->query < buf || r->query + r->query_len > buf + r->header_len)) abort();
        if (r->authorization && r->authorization + r->authorization_len > buf + r->header_len) abort();
        if (!memchr(r->method, 0, sizeof r->method) || !memchr(r->path, 0, sizeof r->path)) abort();
    } else if (*rc == 1) {
        if (*used != 0) abort();
    } else {
        if (*rc < 400 || *rc > 505 || *used != 0) abort();
        if (!memchr(err, 0, sizeof err) || err[0] == '\0' || strchr(err, '\n')) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // roomy limits that the seeds fit, then tight ones that most inputs hit
    static const HttpLimits lims[2] = {{1024, 1024, 1000, 1000}, {64, 16, 1000, 1000}};
    const char *buf = (const char *)data;
    for (int l = 0; l < 2; l++) {
        HttpRequest r;
        int rc;
        size_t used;
        check(buf, size, &lims[l], &r, &rc, &used);
        if (rc == 0) {
            // every shorter prefix needs more bytes; the rest (pipelined) parses on its own
            int rc2;
            size_t used2;
            check(buf, used - 1, &lims[l], &r, &rc2, &used2);
            if (rc2 != 1) abort();
            check(buf + used, size - used, &lims[l], &r, &rc2, &used2);
        }
    }
    return 0;
}

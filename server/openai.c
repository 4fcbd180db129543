// openai.c: OpenAI request decoding and error objects (see openai.h).
#include "server/openai.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

static int bad(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t cap, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// The member key of o when it is given and not null, else NULL.
static const JsonValue *field(const JsonValue *o, const char *key) {
    const JsonValue *v = json_get(o, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static char *copy(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int is_bool(const JsonValue *v) { return v->type == JSON_TRUE || v->type == JSON_FALSE; }

// A number in [lo, hi] (lo excluded when lo_open)? Then *out receives it.
static int number_in(const JsonValue *v, double lo, double hi, int lo_open, float *out) {
    if (v->type != JSON_NUMBER || !isfinite(v->num)) return 0;
    if (v->num < lo || (lo_open && v->num == lo) || v->num > hi) return 0;
    *out = (float)v->num;
    return 1;
}

// A message's content: a string, or an array of {"type":"text","text":...} parts
// (concatenated). Sets *out (malloc'd, NUL-terminated, no NUL inside) or returns -1.
static int decode_content(const JsonValue *c, size_t i, char **out, char *err, size_t cap) {
    if (c->type == JSON_STRING) {
        if (memchr(c->str, 0, c->len)) return bad(err, cap, "messages[%zu].content holds a NUL character", i);
        *out = copy(c->str, c->len);
        return *out ? 0 : bad(err, cap, "out of memory");
    }
    if (c->type != JSON_ARRAY)
        return bad(err, cap, "messages[%zu].content must be a string or an array of text parts", i);
    StrBuf b = {0};
    sb_add(&b, "", 0);
    for (size_t j = 0; j < c->n; j++) {
        const JsonValue *part = &c->items[j], *type = json_get(part, "type");
        if (part->type != JSON_OBJECT || !type || type->type != JSON_STRING) {
            sb_free(&b);
            return bad(err, cap, "messages[%zu].content[%zu] must be an object with a string \"type\"", i, j);
        }
        if (!json_is_str(type, "text")) {
            sb_free(&b);
            return bad(err, cap, "messages[%zu].content[%zu]: content type \"%.40s\" is not supported (only \"text\")",
                       i, j, type->str);
        }
        const JsonValue *text = json_get(part, "text");
        if (!text || text->type != JSON_STRING) {
            sb_free(&b);
            return bad(err, cap, "messages[%zu].content[%zu].text must be a string", i, j);
        }
        if (memchr(text->str, 0, text->len)) {
            sb_free(&b);
            return bad(err, cap, "messages[%zu].content holds a NUL character", i);
        }
        sb_add(&b, text->str, text->len);
    }
    if (b.oom) {
        sb_free(&b);
        return bad(err, cap, "out of memory");
    }
    *out = b.p;  // owned now (StrBuf's buffer, NUL-terminated)
    return 0;
}

static int decode_messages(const JsonValue *root, OaiRequest *r, char *err, size_t cap) {
    const JsonValue *m = json_get(root, "messages");
    if (!m || m->type != JSON_ARRAY || m->n == 0)
        return bad(err, cap, "messages must be a non-empty array");
    r->msgs = calloc(m->n, sizeof *r->msgs);
    if (!r->msgs) return bad(err, cap, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        const JsonValue *msg = &m->items[i];
        if (msg->type != JSON_OBJECT) return bad(err, cap, "messages[%zu] must be an object", i);
        const JsonValue *role = json_get(msg, "role");
        const char *rname = NULL;
        if (json_is_str(role, "system") || json_is_str(role, "developer")) rname = "system";
        else if (json_is_str(role, "user")) rname = "user";
        else if (json_is_str(role, "assistant")) rname = "assistant";
        if (!rname)
            return bad(err, cap, "messages[%zu].role must be system, user, assistant or developer", i);
        const JsonValue *content = field(msg, "content");
        char *text = NULL;
        if (!content && rname[0] == 'a') {
            text = copy("", 0);
            if (!text) return bad(err, cap, "out of memory");
        } else if (!content) {
            return bad(err, cap, "messages[%zu].content must be a string or an array of text parts", i);
        } else if (decode_content(content, i, &text, err, cap) != 0) {
            return -1;
        }
        r->msgs[i].role = rname;
        r->msgs[i].content = text;
        r->n_msgs = i + 1;
    }
    return 0;
}

static int decode_prompt(const JsonValue *root, OaiRequest *r, char *err, size_t cap) {
    const JsonValue *p = json_get(root, "prompt");
    if (p && p->type == JSON_ARRAY && p->n == 1) p = &p->items[0];
    if (!p || p->type != JSON_STRING)
        return bad(err, cap, "prompt must be a string (or an array of one string)");
    r->prompt = copy(p->str, p->len);
    if (!r->prompt) return bad(err, cap, "out of memory");
    r->prompt_len = p->len;
    return 0;
}

static int decode_stop(const JsonValue *s, OaiRequest *r, char *err, size_t cap) {
    static const char msg[] = "stop must be a string or an array of at most 4 non-empty strings";
    const JsonValue *one = s->type == JSON_STRING ? s : NULL;
    size_t n = one ? 1 : s->n;
    if ((!one && s->type != JSON_ARRAY) || n > OAI_MAX_STOP) return bad(err, cap, "%s", msg);
    for (size_t i = 0; i < n; i++) {
        const JsonValue *v = one ? one : &s->items[i];
        if (v->type != JSON_STRING || v->len == 0) return bad(err, cap, "%s", msg);
        if (v->len > OAI_STOP_MAX)
            return bad(err, cap, "stop strings may be at most %d bytes long", OAI_STOP_MAX);
        r->stop[i] = copy(v->str, v->len);
        if (!r->stop[i]) return bad(err, cap, "out of memory");
        r->stop_len[i] = v->len;
        r->n_stop = (int)i + 1;
    }
    return 0;
}

// The sampling and streaming fields, common to both kinds.
static int decode_options(const JsonValue *root, OaiRequest *r, char *err, size_t cap) {
    const JsonValue *v;
    if ((v = field(root, "temperature"))) {
        if (!number_in(v, 0, HUGE_VAL, 0, &r->temperature))
            return bad(err, cap, "temperature must be a number >= 0");
        r->set |= OAI_SET_TEMPERATURE;
    }
    if ((v = field(root, "top_p"))) {
        if (!number_in(v, 0, 1, 0, &r->top_p)) return bad(err, cap, "top_p must be a number in [0, 1]");
        r->set |= OAI_SET_TOP_P;
    }
    if ((v = field(root, "min_p"))) {
        if (!number_in(v, 0, 1, 0, &r->min_p)) return bad(err, cap, "min_p must be a number in [0, 1]");
        r->set |= OAI_SET_MIN_P;
    }
    if ((v = field(root, "top_k"))) {
        long long k;
        if (!json_int(v, 0, INT_MAX, &k)) return bad(err, cap, "top_k must be an integer >= 0");
        r->top_k = (int)k;
        r->set |= OAI_SET_TOP_K;
    }
    const char *rp = "repeat_penalty";
    if (!(v = field(root, rp))) v = field(root, rp = "repetition_penalty");
    if (v) {
        if (!number_in(v, 0, HUGE_VAL, 1, &r->repeat_penalty))
            return bad(err, cap, "%s must be a number > 0", rp);
        r->set |= OAI_SET_REPEAT_PENALTY;
    }
    if ((v = field(root, "seed"))) {
        // integers up to 2^64 - 1 (a double holds those near 2^64 rounded); negative: random
        if (v->type != JSON_NUMBER || v->num != floor(v->num) || !(v->num < 18446744073709551616.0))
            return bad(err, cap, "seed must be an integer");
        if (v->num >= 0) {
            r->seed = (uint64_t)v->num;
            r->set |= OAI_SET_SEED;
        }
    }
    static const char *const max_names[] = {"max_completion_tokens", "max_tokens", "n_predict"};
    for (size_t i = 0; i < 3; i++) {
        if (!(v = field(root, max_names[i]))) continue;
        long long m;
        if (!json_int(v, -1, 1LL << 53, &m) || m == 0)
            return bad(err, cap, "%s must be an integer >= 1 (or -1: no limit)", max_names[i]);
        if (m > 0) {
            r->max_tokens = m > LONG_MAX ? LONG_MAX : (long)m;
            r->set |= OAI_SET_MAX_TOKENS;
        }
        break;
    }
    if ((v = field(root, "stop")) && decode_stop(v, r, err, cap) != 0) return -1;
    if ((v = field(root, "n"))) {
        long long n;
        if (!json_int(v, 1, 1, &n)) return bad(err, cap, "n must be 1 (one choice per request)");
    }
    if ((v = field(root, "stream"))) {
        if (!is_bool(v)) return bad(err, cap, "stream must be a boolean");
        r->stream = v->type == JSON_TRUE;
    }
    if ((v = field(root, "stream_options"))) {
        if (v->type != JSON_OBJECT) return bad(err, cap, "stream_options must be an object");
        const JsonValue *u = field(v, "include_usage");
        if (u && !is_bool(u)) return bad(err, cap, "stream_options.include_usage must be a boolean");
        r->include_usage = u && u->type == JSON_TRUE;
    }
    if ((v = field(root, "attention"))) {
        if (!is_bool(v)) return bad(err, cap, "attention must be a boolean");
        r->attention = v->type == JSON_TRUE;
    }
    if ((v = field(root, "ignore_eos"))) {
        if (!is_bool(v)) return bad(err, cap, "ignore_eos must be a boolean");
        r->ignore_eos = v->type == JSON_TRUE;
    }
    if ((v = field(root, "model"))) {
        if (v->type != JSON_STRING || v->len >= sizeof r->model || memchr(v->str, 0, v->len))
            return bad(err, cap, "model must be a string of at most %zu bytes", sizeof r->model - 1);
        memcpy(r->model, v->str, v->len + 1);
    }
    return 0;
}

int oai_decode(const char *body, size_t len, int kind, OaiRequest *r, char *err, size_t cap) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (err && cap) err[0] = '\0';
    JsonValue root;
    JsonError je;
    if (json_parse(body, len, &root, &je) != 0)
        return bad(err, cap, "invalid JSON at byte %zu: %s", je.offset, je.msg);
    int rc;
    if (root.type != JSON_OBJECT) rc = bad(err, cap, "the request body must be a JSON object");
    else if (kind == OAI_CHAT) rc = decode_messages(&root, r, err, cap);
    else rc = decode_prompt(&root, r, err, cap);
    if (rc == 0) rc = decode_options(&root, r, err, cap);
    json_free(&root);
    if (rc != 0) {
        oai_free(r);
        r->kind = kind;
    }
    return rc;
}

void oai_free(OaiRequest *r) {
    for (size_t i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

void oai_error(StrBuf *b, int status, const char *message) {
    const char *type = "invalid_request_error";
    switch (status) {
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 429: type = "rate_limit_error"; break;
    case 501: type = "not_supported_error"; break;
    case 503: type = "unavailable_error"; break;
    default: if (status >= 500) type = "server_error";
    }
    if (!message) message = "";
    sb_adds(b, "{\"error\":{\"message\":");
    sb_json_string(b, message, strlen(message));
    sb_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}}", type, status);
}

// fuzz_openai: oai_decode on arbitrary bytes as both kinds (the decoded request's invariants),
// then oai_error with the message it gave (or the input's bytes) into a StrBuf, whose output
// must parse with json_parse.
#include "io/json.h"
#include "io/strbuf.h"
#include "server/openai.h"
#include "fuzz.h"

static void check_error_object(int status, const char *msg) {
    StrBuf b = {0};
    oai_error(&b, status, msg);
    if (b.oom) abort();
    JsonValue v;
    JsonError e;
    if (json_parse(b.p, b.n, &v, &e) != 0) abort();
    const JsonValue *err = json_get(&v, "error"), *m = err ? json_get(err, "message") : NULL;
    if (!m || m->type != JSON_STRING) abort();
    json_free(&v);
    sb_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    for (int kind = OAI_CHAT; kind <= OAI_COMPLETION; kind++) {
        OaiRequest r;
        char err[160];
        memset(err, 'z', sizeof err);
        if (oai_decode(body, size, kind, &r, err, sizeof err) == 0) {
            if (kind == OAI_CHAT && (r.n_msgs == 0 || !r.msgs)) abort();
            if (kind == OAI_COMPLETION && !r.prompt) abort();
            for (size_t i = 0; i < r.n_msgs; i++) {  // decoded text is never longer than its JSON
                if (strlen(r.msgs[i].content) > size) abort();
                const char *role = r.msgs[i].role;
                if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) abort();
            }
            if (r.prompt && (r.prompt_len > size || r.prompt[r.prompt_len] != '\0')) abort();
            if (r.n_stop < 0 || r.n_stop > OAI_MAX_STOP) abort();
            for (int i = 0; i < r.n_stop; i++)
                if (r.stop_len[i] == 0 || r.stop[i][r.stop_len[i]] != '\0') abort();
            if (!memchr(r.model, 0, sizeof r.model)) abort();
            if ((r.set & OAI_SET_MAX_TOKENS) && r.max_tokens < 1) abort();
            oai_free(&r);
        } else {
            if (!memchr(err, 0, sizeof err) || err[0] == '\0' || strchr(err, '\n')) abort();
            if (r.msgs || r.prompt || r.n_stop) abort();
            check_error_object(400, err);
        }
    }
    // the raw bytes as a message (any bytes, NUL-terminated at the first NUL)
    char *msg = malloc(size + 1);
    if (!msg) return 0;
    memcpy(msg, data, size);
    msg[size] = '\0';
    check_error_object(size ? 400 + data[0] % 110 : 500, msg);
    free(msg);
    return 0;
}

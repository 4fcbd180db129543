// fuzz_json: the strict JSON parser on arbitrary bytes, then the lookups export uses.
#include "io/json.h"
#include "fuzz.h"

static void walk(const JsonValue *v) {
    json_type_name(v->type);
    long long x;
    json_int(v, -1000, 1000, &x);
    json_is_str(v, "BPE");
    json_get(v, "model");
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->n; i++) walk(&v->items[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    JsonValue v;
    JsonError err;
    if (json_parse((const char *)data, size, &v, &err) == 0) {
        walk(&v);
        json_free(&v);
    } else if (err.offset > size || !memchr(err.msg, 0, sizeof err.msg)) {
        abort();
    }
    return 0;
}

// bytelevel.c: byte-level BPE vocabularies into a Tokenizer (bytelevel.h).
#include "tokenizer/bytelevel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

long bytelevel_decode(const char *s, size_t n, char *out) {
    long k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) {
            out[k++] = (char)cp;
            continue;
        }
        if (cp < 256 || cp >= 256 + 68) return -1;
        // the (cp - 256)th byte that is not written as itself: 0..32, then 127..160, then 173
        uint32_t r = cp - 256;
        out[k++] = (char)(r <= 32 ? r : r <= 66 ? 127 + (r - 33) : 173);
    }
    return k;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

int bytelevel_tokenizer(Tokenizer *t, const BlStr *tokens, const uint8_t *types, size_t n,
                        const BlStr *merges, size_t n_merges, int pretok, uint32_t flags,
                        int bos_id, int eos_id, const char *path) {
    memset(t, 0, sizeof *t);
    if (n == 0 || n > INT32_MAX || n_merges > UINT32_MAX / 8) {
        fprintf(stderr, "%s: %zu tokens and %zu merges, expected 1..%d tokens\n", path, n,
                n_merges, INT32_MAX);
        return TOK_ERR_FORMAT;
    }
    // section format 2 (tokenizer.h): 24 bytes, per token 9 + at most its string's bytes,
    // 8 per merge
    size_t cap = 24 + 8 * n_merges;
    for (size_t i = 0; i < n; i++) cap += 9 + tokens[i].len;
    uint8_t *sec = malloc(cap);
    char *buf = malloc(2 * (size_t)TOK_MAX_PIECE);
    if (!sec || !buf) {
        free(sec), free(buf);
        fprintf(stderr, "%s: out of memory for the vocabulary\n", path);
        return TOK_ERR_NOMEM;
    }
    uint8_t *w = sec + 24;
    uint32_t max_len = 0;
    int err = TOK_OK;
    for (size_t i = 0; i < n && !err; i++) {
        long len = (long)tokens[i].len;
        if (types[i] < TOK_NORMAL || types[i] > TOK_BYTE || tokens[i].len > TOK_MAX_PIECE) {
            fprintf(stderr, "%s: token %zu has type %d and %zu bytes, expected 1..6 and at most "
                            "%d\n", path, i, types[i], tokens[i].len, TOK_MAX_PIECE);
            err = TOK_ERR_FORMAT;
            break;
        }
        if (types[i] == TOK_CONTROL || types[i] == TOK_USER)
            memcpy(w + 9, tokens[i].p, tokens[i].len);
        else if ((len = bytelevel_decode(tokens[i].p, tokens[i].len, (char *)w + 9)) < 0) {
            fprintf(stderr, "%s: token %zu \"%.*s\" is not in GPT-2's byte-level alphabet\n", path,
                    i, tokens[i].len > 64 ? 64 : (int)tokens[i].len, tokens[i].p);
            err = TOK_ERR_FORMAT;
            break;
        }
        memset(w, 0, 4);  // score: unused
        put32(w + 4, (uint32_t)len);
        w[8] = types[i];
        w += 9 + (size_t)len;
        if ((uint32_t)len > max_len) max_len = (uint32_t)len;
    }
    // the pieces' lookup table (a section without merges), to turn merges into ids
    uint32_t head[6] = {(uint32_t)n, max_len, TOK_BPE, (uint32_t)pretok, flags, 0};
    memcpy(sec, head, 24);
    Tokenizer ids;
    int have_ids = 0;
    if (!err) have_ids = (err = tokenizer_parse(&ids, sec, (size_t)(w - sec), 2, (int)n, -1, -1,
                                                path)) == TOK_OK;
    for (size_t k = 0; k < n_merges && !err; k++) {
        const BlStr *a = &merges[2 * k], *b = &merges[2 * k + 1];
        long la = -1, lb = -1;
        if (a->len <= TOK_MAX_PIECE && b->len <= TOK_MAX_PIECE) {
            la = bytelevel_decode(a->p, a->len, buf);
            lb = bytelevel_decode(b->p, b->len, buf + TOK_MAX_PIECE);
        }
        int l = la >= 0 ? tokenizer_lookup(&ids, buf, (size_t)la) : -1;
        int r = lb >= 0 ? tokenizer_lookup(&ids, buf + TOK_MAX_PIECE, (size_t)lb) : -1;
        if (l < 0 || r < 0) {
            fprintf(stderr, "%s: merge %zu \"%.*s\" + \"%.*s\" names a piece that is no token\n",
                    path, k, a->len > 32 ? 32 : (int)a->len, a->p, b->len > 32 ? 32 : (int)b->len,
                    b->p);
            err = TOK_ERR_FORMAT;
        }
        put32(w + 8 * k, (uint32_t)l);
        put32(w + 8 * k + 4, (uint32_t)r);
    }
    if (have_ids) tokenizer_free(&ids);
    if (!err) {
        head[5] = (uint32_t)n_merges;
        memcpy(sec, head, 24);
        err = tokenizer_parse(t, sec, (size_t)(w - sec) + 8 * n_merges, 2, (int)n, bos_id, eos_id,
                              path);
    }
    free(sec), free(buf);
    return err;
}

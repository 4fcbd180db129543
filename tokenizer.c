// tokenizer.c: sentencepiece-style BPE, as llama2.c models use it, and byte-level BPE (GPT-2
// style) for Llama 3, Qwen and SmolLM vocabularies (tokenizer.h).
//
// Contract: libc only; no globals, so several tokenizers can coexist. Sentencepiece encoding
// gives the same ids as llama2.c's encode() (including its tie-breaks); byte-level encoding
// the same ids as the `tokenizers` library. Both find merges with a hash table and a heap, so
// a prompt of n bytes costs O(n log n), not O(n^2).
#include "tokenizer.h"

#include "io/fileio.h"
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// llama2.c merges a pair only if its score beats this starting best; we keep that rule.
#define MERGE_SCORE_FLOOR (-1e10f)

// ----------------------------------------------------------------------------
// piece lookup: FNV-1a hash, open addressing with linear probing

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int tokenizer_lookup(const Tokenizer *t, const char *s, size_t len) {
    for (uint32_t slot = hash_bytes(s, len) & t->table_mask;; slot = (slot + 1) & t->table_mask) {
        uint32_t e = t->table[slot];
        if (e == 0) return -1;
        int id = (int)(e - 1);
        if (t->lens[id] == len && memcmp(t->pieces[id], s, len) == 0) return id;
    }
}

// Returns the byte XX if the piece is exactly "<0xXX>" (hex digits, any case), else -1.
static int byte_piece_value(const char *p, size_t len) {
    if (len != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// ----------------------------------------------------------------------------
// building: parse entries (score, len[, type], bytes) twice: count, then copy

typedef struct {
    const uint8_t *p, *end;
} Cursor;

static int take(Cursor *c, void *dst, size_t n) {
    if ((size_t)(c->end - c->p) < n) return 0;
    memcpy(dst, c->p, n);
    c->p += n;
    return 1;
}

// Walks the entries from `c` to its end. With t->pieces == NULL it only validates and
// counts (into *count, and arena bytes into *arena); otherwise it fills the arrays.
static int walk_entries(Tokenizer *t, Cursor c, int has_type, int *count, size_t *arena,
                        const char *path) {
    int i = 0;
    size_t used = 0;
    for (; c.p < c.end; i++) {
        float score;
        uint32_t len;
        uint8_t type = TOK_NORMAL;
        if (i == INT32_MAX) {  // each entry takes 8 bytes or more: only a 16 GiB file gets here
            fprintf(stderr, "%s: more than %d tokens\n", path, INT32_MAX);
            return TOK_ERR_FORMAT;
        }
        if (!take(&c, &score, 4) || !take(&c, &len, 4) || (has_type && !take(&c, &type, 1))) {
            fprintf(stderr, "%s: tokenizer truncated in the header of token %d\n", path, i);
            return TOK_ERR_FORMAT;
        }
        if (isnan(score)) {
            fprintf(stderr, "%s: token %d has a NaN score\n", path, i);
            return TOK_ERR_FORMAT;
        }
        if (len > TOK_MAX_PIECE) {
            fprintf(stderr, "%s: token %d is %u bytes long, at most %d expected\n", path, i, len,
                    TOK_MAX_PIECE);
            return TOK_ERR_FORMAT;
        }
        if ((size_t)(c.end - c.p) < len) {
            fprintf(stderr, "%s: tokenizer truncated in the text of token %d\n", path, i);
            return TOK_ERR_FORMAT;
        }
        if (has_type && (type < TOK_NORMAL || type > TOK_BYTE)) {
            fprintf(stderr, "%s: token %d has type %u, expected 1..6\n", path, i, type);
            return TOK_ERR_FORMAT;
        }
        if (t->pieces) {
            char *dst = t->arena + used;
            memcpy(dst, c.p, len);
            dst[len] = '\0';
            t->pieces[i] = dst;
            t->lens[i] = len;
            t->scores[i] = score;
            t->types[i] = type;
        }
        c.p += len;
        used += (size_t)len + 1;
    }
    *count = i;
    *arena = used;
    return TOK_OK;
}

// Derives what llama2.c's tokenizer.bin does not store: the token types.
static void infer_types(Tokenizer *t) {
    for (int i = 0; i < t->vocab_size; i++) {
        if (byte_piece_value(t->pieces[i], t->lens[i]) >= 0) t->types[i] = TOK_BYTE;
        else if (i == t->bos_id || i == t->eos_id) t->types[i] = TOK_CONTROL;
        else if (t->lens[i] == 5 && memcmp(t->pieces[i], "<unk>", 5) == 0) t->types[i] = TOK_UNKNOWN;
        else t->types[i] = TOK_NORMAL;
    }
}

// Builds the lookup table and the byte map once the arrays are filled.
static int finish(Tokenizer *t) {
    size_t cap = 16;
    while (cap < 2 * (size_t)t->vocab_size) cap *= 2;
    t->table = calloc(cap, sizeof(uint32_t));
    if (!t->table) return TOK_ERR_NOMEM;
    t->table_mask = (uint32_t)(cap - 1);
    t->max_token_len = 0;
    t->unk_id = -1;
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->byte_piece[b][0] = (char)b;
        t->byte_piece[b][1] = '\0';
    }
    for (int i = 0; i < t->vocab_size; i++) {
        if ((int)t->lens[i] > t->max_token_len) t->max_token_len = (int)t->lens[i];
        if (tokenizer_lookup(t, t->pieces[i], t->lens[i]) < 0) {  // first id wins
            uint32_t slot = hash_bytes(t->pieces[i], t->lens[i]) & t->table_mask;
            while (t->table[slot]) slot = (slot + 1) & t->table_mask;
            t->table[slot] = (uint32_t)i + 1;
        }
        if (t->types[i] == TOK_BYTE) {
            int b = byte_piece_value(t->pieces[i], t->lens[i]);
            if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = i;
        }
        if (t->types[i] == TOK_UNKNOWN && t->unk_id < 0) t->unk_id = i;
    }
    if (t->unk_id < 0) t->unk_id = 0;  // sentencepiece's convention: <unk> is id 0
    return TOK_OK;
}

static int build(Tokenizer *t, Cursor c, int has_type, int vocab_size, int bos_id, int eos_id,
                 const char *path) {
    memset(t, 0, sizeof *t);
    if (vocab_size <= 0) {
        fprintf(stderr, "%s: vocab_size %d, expected > 0\n", path, vocab_size);
        return TOK_ERR_VOCAB;
    }
    int count;
    size_t arena;
    int err = walk_entries(t, c, has_type, &count, &arena, path);
    if (err) return err;
    if (count != vocab_size) {
        fprintf(stderr, "%s: %d tokens, the model's vocab_size is %d\n", path, count, vocab_size);
        return TOK_ERR_VOCAB;
    }
    if (bos_id < -1 || bos_id >= vocab_size || eos_id < -1 || eos_id >= vocab_size) {
        fprintf(stderr, "%s: bos %d / eos %d, expected ids below vocab_size %d\n", path, bos_id,
                eos_id, vocab_size);
        return TOK_ERR_FORMAT;
    }
    t->vocab_size = vocab_size;
    t->bos_id = bos_id;
    t->eos_id = eos_id;
    size_t n = (size_t)vocab_size;
    t->pieces = malloc(n * sizeof *t->pieces);
    t->lens = malloc(n * sizeof *t->lens);
    t->scores = malloc(n * sizeof *t->scores);
    t->types = malloc(n);
    t->arena = malloc(arena ? arena : 1);
    if (!t->pieces || !t->lens || !t->scores || !t->types || !t->arena) {
        tokenizer_free(t);
        return TOK_ERR_NOMEM;
    }
    walk_entries(t, c, has_type, &count, &arena, path);  // validated above
    if (!has_type) infer_types(t);
    if ((err = finish(t)) != TOK_OK) tokenizer_free(t);
    return err;
}

#define TOK_BIN_MAX ((size_t)1 << 28)  // the largest tokenizer.bin read (256 MiB)

int tokenizer_read_bin(Tokenizer *t, const char *path, int vocab_size, int bos_id, int eos_id) {
    memset(t, 0, sizeof *t);
    char *text;
    size_t n;
    if (file_read(path, TOK_BIN_MAX, &text, &n) != 0) return TOK_ERR_IO;
    const uint8_t *buf = (const uint8_t *)text;
    if (n < 4) {
        fprintf(stderr, "%s: %zu bytes, a tokenizer.bin needs at least 4\n", path, n);
        free(text);
        return TOK_ERR_FORMAT;
    }
    // llama2.c's lengths are int32; a negative one reads as a huge uint32 and is refused.
    Cursor c = {buf + 4, buf + n};
    int err = build(t, c, 0, vocab_size, bos_id, eos_id, path);
    free(text);
    return err;
}

// ----------------------------------------------------------------------------
// byte-level BPE: the merge rules by (left, right), every byte's token, the special tokens

static uint32_t pair_hash(uint32_t l, uint32_t r) {
    uint64_t k = ((uint64_t)l << 32 | r) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32);
}

// The rank of the merge rule (l, r), or -1.
static int merge_rank(const Tokenizer *t, int l, int r) {
    for (uint32_t slot = pair_hash((uint32_t)l, (uint32_t)r) & t->merge_mask;;
         slot = (slot + 1) & t->merge_mask) {
        uint32_t e = t->merge_table[slot];
        if (e == 0) return -1;
        if (t->merges[2 * (e - 1)] == (uint32_t)l && t->merges[2 * (e - 1) + 1] == (uint32_t)r)
            return (int)(e - 1);
    }
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Loads n_merges rules (uint32 pairs at p) into a tokenizer whose pieces are built, and checks
// that every rule joins two tokens into a third. A byte without a token (real vocabularies lack
// some: SmolLM2's has none for 21 bytes, control bytes and ones UTF-8 never uses) keeps
// byte_id -1, and encoding drops it, as `tokenizers` and llama.cpp do.
static int build_bpe(Tokenizer *t, const uint8_t *p, uint32_t n_merges, const char *path) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n_merges) cap *= 2;
    t->n_merges = n_merges;
    t->merges = malloc(8 * (size_t)n_merges + 8);
    t->merged = malloc(sizeof(int) * (size_t)n_merges + 8);
    t->merge_table = calloc(cap, sizeof(uint32_t));
    t->specials = malloc(sizeof(int) * (size_t)t->vocab_size);
    char *buf = malloc(2 * (size_t)t->max_token_len + 1);
    if (!t->merges || !t->merged || !t->merge_table || !t->specials || !buf) {
        free(buf);
        return TOK_ERR_NOMEM;
    }
    t->merge_mask = (uint32_t)(cap - 1);
    if (n_merges) memcpy(t->merges, p, 8 * (size_t)n_merges);
    for (uint32_t m = 0; m < n_merges; m++) {
        uint32_t l = t->merges[2 * m], r = t->merges[2 * m + 1];
        if (l >= (uint32_t)t->vocab_size || r >= (uint32_t)t->vocab_size) {
            fprintf(stderr, "%s: merge %u names token %u, beyond the %d tokens\n", path, m,
                    l >= (uint32_t)t->vocab_size ? l : r, t->vocab_size);
            free(buf);
            return TOK_ERR_FORMAT;
        }
        memcpy(buf, t->pieces[l], t->lens[l]);
        memcpy(buf + t->lens[l], t->pieces[r], t->lens[r]);
        int id = tokenizer_lookup(t, buf, t->lens[l] + t->lens[r]);
        if (id < 0) {
            fprintf(stderr, "%s: merge %u joins tokens %u and %u into a piece that is no token\n",
                    path, m, l, r);
            free(buf);
            return TOK_ERR_FORMAT;
        }
        t->merged[m] = id;
        if (merge_rank(t, (int)l, (int)r) >= 0) continue;  // the first rank wins
        uint32_t slot = pair_hash(l, r) & t->merge_mask;
        while (t->merge_table[slot]) slot = (slot + 1) & t->merge_mask;
        t->merge_table[slot] = m + 1;
    }
    free(buf);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tokenizer_lookup(t, &c, 1);
    }
    // the special tokens, longest first, then by id: sorted as keys (~len << 32 | id)
    uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)t->vocab_size);
    if (!keys) return TOK_ERR_NOMEM;
    for (int i = 0; i < t->vocab_size; i++)
        if ((t->types[i] == TOK_CONTROL || t->types[i] == TOK_USER) && t->lens[i] > 0)
            keys[t->n_specials++] = (uint64_t)(UINT32_MAX - t->lens[i]) << 32 | (uint32_t)i;
    qsort(keys, (size_t)t->n_specials, sizeof *keys, compare_u64);
    for (int i = 0; i < t->n_specials; i++) t->specials[i] = (int)(uint32_t)keys[i];
    free(keys);
    return TOK_OK;
}

int tokenizer_parse(Tokenizer *t, const uint8_t *buf, size_t n, int format, int vocab_size,
                    int bos_id, int eos_id, const char *path) {
    memset(t, 0, sizeof *t);
    uint32_t count, max_len, kind = TOK_SPM, pretok = 0, flags = 0, n_merges = 0;
    size_t head = format == 2 ? 24 : 8;
    Cursor c = {buf, buf + n};
    if (format != 1 && format != 2) {
        fprintf(stderr, "%s: tokenizer section format %d, expected 1 or 2\n", path, format);
        return TOK_ERR_FORMAT;
    }
    if (!take(&c, &count, 4) || !take(&c, &max_len, 4) ||
        (format == 2 && (!take(&c, &kind, 4) || !take(&c, &pretok, 4) || !take(&c, &flags, 4) ||
                         !take(&c, &n_merges, 4)))) {
        fprintf(stderr, "%s: tokenizer section is %zu bytes, expected at least %zu\n", path, n,
                head);
        return TOK_ERR_FORMAT;
    }
    if (count != (uint32_t)vocab_size) {
        fprintf(stderr, "%s: tokenizer has %u tokens, the model's vocab_size is %d\n", path, count,
                vocab_size);
        return TOK_ERR_VOCAB;
    }
    uint32_t spm_flags = TOK_FLAG_PREFIX_FIRST | TOK_FLAG_PREFIX_NEVER | TOK_FLAG_SPLIT;
    uint32_t bpe_flags = TOK_FLAG_IGNORE_MERGES | TOK_FLAG_NFC;
    if (kind > TOK_BPE || (kind == TOK_BPE && (pretok >= PRETOK_COUNT || flags & ~bpe_flags)) ||
        (kind == TOK_SPM && (pretok || (flags & ~spm_flags) || n_merges ||
                             (flags & TOK_FLAG_PREFIX_FIRST && flags & TOK_FLAG_PREFIX_NEVER) ||
                             // Metaspace's split comes with its prefix rule, first or never
                             (flags & TOK_FLAG_SPLIT && !(flags & ~TOK_FLAG_SPLIT))))) {
        fprintf(stderr, "%s: tokenizer kind %u, pre-tokenizer %u, flags %u, %u merges: not a "
                        "valid combination\n", path, kind, pretok, flags, n_merges);
        return TOK_ERR_FORMAT;
    }
    if (n_merges > (n - head) / 8) {
        fprintf(stderr, "%s: tokenizer section of %zu bytes cannot hold %u merges\n", path, n,
                n_merges);
        return TOK_ERR_FORMAT;
    }
    c.end -= (size_t)n_merges * 8;  // the merges follow the entries
    int err = build(t, c, 1, vocab_size, bos_id, eos_id, path);
    if (err == TOK_OK && (uint32_t)t->max_token_len != max_len) {
        fprintf(stderr, "%s: tokenizer says its longest piece is %u bytes, found %d\n", path,
                max_len, t->max_token_len);
        tokenizer_free(t);
        return TOK_ERR_FORMAT;
    }
    if (err == TOK_OK) t->flags = flags;
    if (err == TOK_OK && kind == TOK_BPE) {
        t->kind = TOK_BPE;
        t->pretok = (int)pretok;
        t->flags = flags;
        err = build_bpe(t, c.end, n_merges, path);
        if (err) tokenizer_free(t);
    }
    return err;
}

int tokenizer_format(const Tokenizer *t) { return t->kind == TOK_BPE || t->flags ? 2 : 1; }

size_t tokenizer_section_bytes(const Tokenizer *t, int format) {
    assert(format >= tokenizer_format(t) && format <= 2);
    size_t n = format == 2 ? 24 + 8 * (size_t)t->n_merges : 8;
    for (int i = 0; i < t->vocab_size; i++) n += 9 + (size_t)t->lens[i];
    return n;
}

void tokenizer_write_section(const Tokenizer *t, int format, uint8_t *buf) {
    assert(format >= tokenizer_format(t) && format <= 2);
    uint32_t count = (uint32_t)t->vocab_size, max_len = (uint32_t)t->max_token_len;
    memcpy(buf, &count, 4);
    memcpy(buf + 4, &max_len, 4);
    buf += 8;
    if (format == 2) {
        uint32_t v2[4] = {(uint32_t)t->kind, (uint32_t)t->pretok, t->flags, t->n_merges};
        memcpy(buf, v2, 16);
        buf += 16;
    }
    for (int i = 0; i < t->vocab_size; i++) {
        memcpy(buf, &t->scores[i], 4);
        memcpy(buf + 4, &t->lens[i], 4);
        buf[8] = t->types[i];
        memcpy(buf + 9, t->pieces[i], t->lens[i]);
        buf += 9 + t->lens[i];
    }
    if (t->n_merges) memcpy(buf, t->merges, 8 * (size_t)t->n_merges);
}

void tokenizer_free(Tokenizer *t) {
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->types);
    free(t->arena);
    free(t->table);
    free(t->merges);
    free(t->merged);
    free(t->merge_table);
    free(t->specials);
    memset(t, 0, sizeof *t);
}

// ----------------------------------------------------------------------------
// encoding

typedef struct {
    int id;
    int prev, next;  // neighbours in the symbol list, -1 at the ends
    unsigned gen;    // bumped whenever the symbol changes, to spot stale heap entries
} Symbol;

typedef struct {
    float score;
    int left, right;       // symbol indices
    unsigned gen_l, gen_r; // their generations when the pair was pushed
    int merged;            // id of the merged piece
} Pair;

// Pair a comes out of the heap before b: higher score, then further left (as llama2.c).
static int pair_before(const Pair *a, const Pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(Pair *h, size_t *n, Pair p) {
    size_t i = (*n)++;
    while (i > 0 && pair_before(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static Pair heap_pop(Pair *h, size_t *n) {
    Pair top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

// Pushes the merge of symbols l and r: sentencepiece, if their concatenated pieces form a
// token (priority: its score); byte-level BPE, if a merge rule joins them (priority: -rank).
static void push_pair(const Tokenizer *t, const Symbol *sym, int l, int r, char *buf, Pair *heap,
                      size_t *n) {
    if (l < 0 || r < 0) return;
    if (t->kind == TOK_BPE) {
        int rank = merge_rank(t, sym[l].id, sym[r].id);
        if (rank < 0) return;
        Pair p = {-(float)rank, l, r, sym[l].gen, sym[r].gen, t->merged[rank]};  // exact below 2^24
        heap_push(heap, n, p);
        return;
    }
    size_t ll = t->lens[sym[l].id], lr = t->lens[sym[r].id];
    memcpy(buf, t->pieces[sym[l].id], ll);
    memcpy(buf + ll, t->pieces[sym[r].id], lr);
    int id = tokenizer_lookup(t, buf, ll + lr);
    if (id < 0 || !(t->scores[id] > MERGE_SCORE_FLOOR)) return;
    Pair p = {t->scores[id], l, r, sym[l].gen, sym[r].gen, id};
    heap_push(heap, n, p);
}

// Appends the token for one code point, or one token per byte if it has none.
static void add_codepoint(const Tokenizer *t, const char *s, size_t len, Symbol *sym, int *n) {
    int id = tokenizer_lookup(t, s, len);
    if (id >= 0) {
        sym[(*n)++].id = id;
        return;
    }
    for (size_t i = 0; i < len; i++) {
        int b = t->byte_id[(uint8_t)s[i]];
        sym[(*n)++].id = b >= 0 ? b : t->unk_id;
    }
}

// Links n symbols into a list and merges the best pair until none is left (stale pairs are
// skipped when popped); the survivors are the list from symbol 0 (n > 0).
static void merge_all(const Tokenizer *t, Symbol *sym, int n, char *buf, Pair *heap) {
    for (int i = 0; i < n; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < n ? i + 1 : -1;
        sym[i].gen = 0;
    }
    size_t nheap = 0;
    for (int i = 0; i + 1 < n; i++) push_pair(t, sym, i, i + 1, buf, heap, &nheap);
    while (nheap > 0) {
        Pair p = heap_pop(heap, &nheap);
        Symbol *l = &sym[p.left], *r = &sym[p.right];
        if (l->id < 0 || r->id < 0 || l->gen != p.gen_l || r->gen != p.gen_r || l->next != p.right)
            continue;
        l->id = p.merged;
        l->gen++;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        r->id = -1;  // dead
        r->gen++;
        push_pair(t, sym, l->prev, p.left, buf, heap, &nheap);
        push_pair(t, sym, p.left, l->next, buf, heap, &nheap);
    }
}

// The first special token in text[from, len): its position (len if none) and id (-1).
static size_t find_special(const Tokenizer *t, const char *text, size_t len, size_t from,
                           int *id) {
    *id = -1;
    if (t->n_specials == 0) return len;
    for (size_t i = from; i < len; i++)
        for (int s = 0; s < t->n_specials; s++) {
            int sp = t->specials[s];
            if (t->lens[sp] <= len - i && t->pieces[sp][0] == text[i] &&
                memcmp(t->pieces[sp], text + i, t->lens[sp]) == 0) {
                *id = sp;
                return i;
            }
        }
    return len;
}

// One pre-tokenized piece of n bytes: its token if ignore_merges and it is one, else its
// bytes' tokens merged by rank. A byte without a token is dropped before merging, as the
// `tokenizers` library's BPE drops a character missing from its vocabulary (no unk token), so
// the bytes on either side of it may merge. Appends to tokens at *k.
static void encode_piece(const Tokenizer *t, const char *s, size_t n, Symbol *sym, Pair *heap,
                         char *buf, int *tokens, size_t *k) {
    if (t->flags & TOK_FLAG_IGNORE_MERGES) {
        int id = tokenizer_lookup(t, s, n);
        if (id >= 0) {
            tokens[(*k)++] = id;
            return;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (t->byte_id[(uint8_t)s[i]] >= 0) sym[m++].id = t->byte_id[(uint8_t)s[i]];
    if (m == 0) return;
    merge_all(t, sym, (int)m, buf, heap);
    for (int i = 0; i >= 0; i = sym[i].next) tokens[(*k)++] = sym[i].id;
}

// Byte-level BPE: the text cut at its special tokens, found in the raw text; with
// TOK_FLAG_NFC each part between them is normalized on its own (into `own`), as the
// `tokenizers` library normalizes the text between added tokens with normalized false.
typedef struct {
    const char *s;  // the text before the special token: n bytes
    size_t n;
    int special;    // the special token's id, or -1 after the last part
    char *own;      // s when it was normalized, else NULL
} Part;

static void free_parts(Part *p, size_t n) {
    for (size_t i = 0; i < n; i++) free(p[i].own);
    free(p);
}

static int split_text(const Tokenizer *t, const char *text, size_t len, Part **parts,
                      size_t *n_parts) {
    size_t cap = 4, n = 0;
    Part *p = malloc(cap * sizeof *p);
    if (!p) return TOK_ERR_NOMEM;
    for (size_t i = 0;;) {
        int special;
        size_t at = find_special(t, text, len, i, &special);
        if (n == cap) {
            Part *q = realloc(p, 2 * cap * sizeof *p);
            if (!q) break;
            p = q, cap *= 2;
        }
        p[n] = (Part){text + i, at - i, special, NULL};
        if (t->flags & TOK_FLAG_NFC && unicode_nfc(text + i, at - i, &p[n].own, &p[n].n) != 0)
            break;
        if (p[n].own) p[n].s = p[n].own;
        n++;
        if (special < 0) {
            *parts = p, *n_parts = n;
            return TOK_OK;
        }
        i = at + t->lens[special];
    }
    free_parts(p, n);
    return TOK_ERR_NOMEM;
}

// Byte-level BPE: each part pre-tokenized, each piece's bytes merged by rank, then the special
// token's id. Appends to tokens at *k.
static void encode_bpe(const Tokenizer *t, const Part *parts, size_t n_parts, Symbol *sym,
                       Pair *heap, char *buf, int *tokens, size_t *k) {
    for (size_t p = 0; p < n_parts; p++) {
        const char *s = parts[p].s;
        for (size_t i = 0, m; i < parts[p].n; i += m) {
            m = pretok_next(t->pretok, s + i, parts[p].n - i);
            encode_piece(t, s + i, m, sym, heap, buf, tokens, k);
        }
        if (parts[p].special >= 0) tokens[(*k)++] = parts[p].special;
    }
}

// Does s (n bytes) start with "▁" (U+2581, sentencepiece's space)?
static int is_meta_space(const char *s, size_t n) {
    return n >= 3 && (uint8_t)s[0] == 0xE2 && (uint8_t)s[1] == 0x96 && (uint8_t)s[2] == 0x81;
}

// Sentencepiece: the dummy prefix, code points or their byte fallbacks, merges by score.
// Appends to tokens at *k.
static void encode_spm(const Tokenizer *t, const char *text, size_t len, Symbol *sym,
                       Pair *heap, char *buf, int *tokens, size_t *k) {
    // sentencepiece's dummy prefix: text starts with a space, as llama2.c does it (unless the
    // tokenizer.json's Metaspace says first or never)
    int prefix = len > 0 && !(t->flags & TOK_FLAG_PREFIX_NEVER) &&
                 !(t->flags & TOK_FLAG_PREFIX_FIRST && text[0] == ' ');
    // with TOK_FLAG_SPLIT each space starts a piece, and pieces merge separately. A "▁" in
    // the text is a space, as sentencepiece, `tokenizers` and llama.cpp see it (they turn spaces
    // into it before they look at the text)
    for (size_t a = 0; a < len;) {
        size_t b = len;
        if (t->flags & TOK_FLAG_SPLIT)
            for (b = a + 1; b < len && text[b] != ' ' && !is_meta_space(text + b, len - b); b++) {}
        int n = 0;
        if (a == 0 && prefix) add_codepoint(t, " ", 1, sym, &n);
        // split into UTF-8 code points: a lead byte and up to 3 continuation bytes
        for (size_t i = a; i < b;) {
            size_t j = i + 1;
            while (j < b && j - i < 4 && ((uint8_t)text[j] & 0xC0) == 0x80) j++;
            if (is_meta_space(text + i, j - i)) add_codepoint(t, " ", 1, sym, &n);
            else add_codepoint(t, text + i, j - i, sym, &n);
            i = j;
        }
        merge_all(t, sym, n, buf, heap);
        for (int i = n > 0 ? 0 : -1; i >= 0; i = sym[i].next) tokens[(*k)++] = sym[i].id;
        a = b;
    }
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int bos, int eos,
                     int *tokens, size_t max_tokens, size_t *n_tokens) {
    *n_tokens = 0;
    if (len >= INT32_MAX) return TOK_ERR_SPACE;
    // at most one token per byte of text (normalized, for byte-level BPE) and one per special
    // token, plus sentencepiece's dummy prefix, BOS and EOS
    Part *parts = NULL;
    size_t n_parts = 0, need = len + (t->kind == TOK_SPM && len > 0), longest = len;
    if (t->kind == TOK_BPE) {
        int err = split_text(t, text, len, &parts, &n_parts);
        if (err) return err;
        need = longest = 0;
        for (size_t p = 0; p < n_parts; p++) {
            need += parts[p].n + (parts[p].special >= 0);
            if (parts[p].n > longest) longest = parts[p].n;
        }
    }
    need += (bos != 0) + (eos != 0);
    if (max_tokens < need || longest >= INT32_MAX) {
        free_parts(parts, n_parts);
        return TOK_ERR_SPACE;
    }
    Symbol *sym = malloc((longest + 1) * sizeof *sym);
    Pair *heap = malloc(3 * (longest + 1) * sizeof *heap);
    char *buf = malloc(2 * (size_t)t->max_token_len + 1);
    if (!sym || !heap || !buf) {
        free(sym), free(heap), free(buf), free_parts(parts, n_parts);
        return TOK_ERR_NOMEM;
    }
    size_t k = 0;
    if (bos && t->bos_id >= 0) tokens[k++] = t->bos_id;
    if (t->kind == TOK_BPE) encode_bpe(t, parts, n_parts, sym, heap, buf, tokens, &k);
    else encode_spm(t, text, len, sym, heap, buf, tokens, &k);
    if (eos && t->eos_id >= 0) tokens[k++] = t->eos_id;
    *n_tokens = k;
    free(sym), free(heap), free(buf), free_parts(parts, n_parts);
    return TOK_OK;
}

size_t tokenizer_max_tokens(const Tokenizer *t, size_t len) {
    size_t grow = t->kind == TOK_BPE && t->flags & TOK_FLAG_NFC ? 3 : 1;
    return len > (SIZE_MAX - 3) / grow ? SIZE_MAX : grow * len + 3;
}

// ----------------------------------------------------------------------------
// decoding

const char *tokenizer_decode(const Tokenizer *t, int prev, int token, size_t *len) {
    if (token < 0 || token >= t->vocab_size) {
        *len = 0;
        return "";
    }
    const char *p = t->pieces[token];
    size_t n = t->lens[token];
    if (t->kind == TOK_BPE) {  // raw bytes; control tokens are not text
        *len = t->types[token] == TOK_CONTROL ? 0 : n;
        return t->types[token] == TOK_CONTROL ? "" : p;
    }
    if (t->types[token] == TOK_BYTE) {
        int b = byte_piece_value(p, n);
        if (b >= 0) {
            *len = 1;
            return t->byte_piece[b];
        }
    }
    // sentencepiece strips the dummy-prefix space of the first word, after BOS or at the start
    // of the text (prev < 0), unless none is added
    if ((prev == t->bos_id || prev < 0) && n > 0 && p[0] == ' ' &&
        !(t->flags & TOK_FLAG_PREFIX_NEVER))
        p++, n--;
    *len = n;
    return p;
}

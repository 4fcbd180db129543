// session.c: one generation with a model (see session.h).
//
// A step, for each session of the batch:
//   1. a full cache with tokens pending: shift (context_shift) or end the generation (length);
//   2. its pending tokens, or as many as the step's budget leaves, join the forward pass;
//   3. with none left pending and a generation running: sample the next token, then the stops:
//      a stop token, a stop string in the text, max_tokens; otherwise the token is pending.
#include "runtime/session.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

int session_init(Session *s, Transformer *t, const Tokenizer *tok, KvCache *kv) {
    const SlHeader *h = &t->model.header;
    memset(s, 0, sizeof *s);
    s->t = t, s->tok = tok, s->kv = kv ? kv : &t->state.kv;
    s->seq = (size_t)h->seq_len;
    s->token = s->prev = -1;
    s->ids = malloc(s->seq * sizeof(int));
    s->logits = malloc((size_t)h->vocab_size * sizeof(float));
    if (!s->ids || !s->logits ||
        sampler_build(&s->sampler, h->vocab_size, 0.0f, 0.0f, 0, 1) != 0) {
        session_free(s);
        return -1;
    }
    return 0;
}

void session_free(Session *s) {
    if (s->sampler.candidates || s->sampler.recent || s->sampler.seen || s->sampler.keep)
        sampler_free(&s->sampler);
    free(s->ids), free(s->logits), free(s->pending), free(s->text);
    memset(s, 0, sizeof *s);
}

int session_set_sampling(Session *s, const SessionSampling *p) {
    Sampler fresh;
    int vocab = s->t->model.header.vocab_size;
    size_t last = p->repeat_last_n < 0 || (size_t)p->repeat_last_n > s->seq ? s->seq
                                                                             : (size_t)p->repeat_last_n;
    if (sampler_build(&fresh, vocab, p->temperature, p->top_p, p->top_k, p->seed) != 0 ||
        sampler_set_min_p(&fresh, p->min_p) != 0 ||
        sampler_set_penalty(&fresh, p->repeat_penalty, (int)last) != 0) {
        sampler_free(&fresh);
        return -1;
    }
    sampler_free(&s->sampler);
    s->sampler = fresh;
    // the repetition window starts with the tokens the cache holds, as if they had just run
    size_t from = s->known > last ? s->known - last : 0;
    for (size_t i = from; i < s->known; i++) sampler_accept(&s->sampler, s->ids[i]);
    return 0;
}

size_t session_common_prefix(const Session *s, const int *ids, size_t n) {
    size_t k = 0;
    while (k < s->known && k + 1 < n && s->ids[k] == ids[k]) k++;
    return transformer_resume_kv(s->t, s->kv, k);
}

void session_rewind(Session *s, size_t k) {
    assert(k <= s->pos);
    if (k < s->pos) s->has_logits = 0;
    s->pos = k;
    if (s->known > k) s->known = k;
    s->n_pending = 0;
    s->finish = SESSION_IDLE;
}

int session_feed(Session *s, const int *ids, size_t n) {
    if (s->n_pending + n > s->cap_pending || s->cap_pending == 0) {
        size_t cap = s->cap_pending ? 2 * s->cap_pending : 64;
        while (cap < s->n_pending + n) cap *= 2;
        int *p = realloc(s->pending, cap * sizeof(int));
        if (!p) return -1;
        s->pending = p, s->cap_pending = cap;
    }
    if (n) memcpy(s->pending + s->n_pending, ids, n * sizeof(int)), s->prev = ids[n - 1];
    s->n_pending += n;
    s->finish = SESSION_IDLE;
    return 0;
}

int session_fits(const Session *s, size_t n) {
    return s->pos + s->n_pending + n <= s->seq;
}

int session_shift(Session *s) {
    size_t drop = s->seq > SHIFT_SINKS ? (s->seq - SHIFT_SINKS) / 2 : 0;
    if (drop == 0 || s->pos < SHIFT_SINKS + drop ||
        !transformer_can_shift_kv(s->t, s->kv, s->pos, SHIFT_SINKS, drop))
        return 0;
    s->pos = transformer_shift_kv(s->t, s->kv, s->pos, SHIFT_SINKS, drop);
    s->known = 0;  // the kept keys saw the dropped ones: no prefix of ids reproduces them
    s->n_shifts++;
    if (s->on_shift) s->on_shift(s->hook_ctx, SHIFT_SINKS, drop);
    return 1;
}

void session_begin(Session *s, const SessionLimits *lim) {
    assert(s->n_pending > 0 || s->has_logits);
    if (s->cap_pending == 0 && session_feed(s, NULL, 0) != 0) s->oom = 1;
    s->lim = *lim;
    assert(lim->n_stop >= 0 && lim->n_stop <= SESSION_MAX_STOP);
    for (int i = 0; i < lim->n_stop; i++) {
        assert(lim->stop_len[i] >= 1 && lim->stop_len[i] <= SESSION_STOP_MAX);
        memcpy(s->stop_text[i], lim->stop[i], lim->stop_len[i]);
        s->lim.stop[i] = s->stop_text[i];
    }
    s->finish = SESSION_RUNNING;
    s->n_sampled = 0;
    s->text_len = s->released = 0;
    if (s->text) s->text[0] = '\0';
    s->token = -1, s->piece = NULL, s->piece_len = 0;
}

// Appends a piece to the text; -1 when out of memory.
static int text_add(Session *s, const char *p, size_t n) {
    if (s->text_len + n + 1 > s->text_cap) {
        size_t cap = s->text_cap ? 2 * s->text_cap : 256;
        while (cap < s->text_len + n + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) return -1;
        s->text = t, s->text_cap = cap;
    }
    memcpy(s->text + s->text_len, p, n);
    s->text_len += n;
    s->text[s->text_len] = '\0';
    return 0;
}

// The end of the text that can be released now: before any suffix that may begin a stop
// string, and before an unfinished UTF-8 character at the end.
static size_t releasable(const Session *s) {
    size_t end = s->text_len;
    for (int i = 0; i < s->lim.n_stop; i++) {
        size_t L = s->lim.stop_len[i];
        for (size_t k = L - 1 < end ? L - 1 : end; k > 0; k--)  // longest suffix = a prefix
            if (memcmp(s->text + s->text_len - k, s->lim.stop[i], k) == 0) {
                if (s->text_len - k < end) end = s->text_len - k;
                break;
            }
    }
    // back over a UTF-8 character that has not ended: a lead byte whose continuations are missing
    for (size_t back = 1; back <= 3 && back <= end; back++) {
        unsigned char c = (unsigned char)s->text[end - back];
        if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > back) end -= back;
        break;
    }
    return end > s->released ? end : s->released;
}

// Where a stop string first occurs in the text from byte `from` on, or SIZE_MAX.
static size_t stop_at(const Session *s, size_t from) {
    size_t best = SIZE_MAX;
    for (int i = 0; i < s->lim.n_stop; i++) {
        size_t L = s->lim.stop_len[i];
        size_t start = from > L - 1 ? from - (L - 1) : 0;
        for (size_t p = start; p + L <= s->text_len && p < best; p++)
            if (memcmp(s->text + p, s->lim.stop[i], L) == 0) {
                best = p;
                break;
            }
    }
    return best;
}

static void sample(Session *s) {
    const SlHeader *h = &s->t->model.header;
    if (s->lim.ignore_eos) {  // the stop tokens (model_is_stop's) cannot be drawn: llama.cpp's
        int stops[2 + SL_MAX_STOP] = {h->bos_id, h->eos_id};
        for (uint32_t i = 0; i < h->n_stop && i < SL_MAX_STOP; i++) stops[2 + i] = h->stop_ids[i];
        for (uint32_t i = 0; i < 2 + h->n_stop && i < 2 + SL_MAX_STOP; i++)
            if (stops[i] >= 0 && stops[i] < h->vocab_size) s->logits[stops[i]] = -INFINITY;
    }
    int next = sampler_sample(&s->sampler, s->logits);
    s->has_logits = 0;  // the sampler changed them in place
    s->n_sampled++;
    s->token = next;
    if (model_is_stop(h, next)) {
        s->finish = SESSION_STOP;
        s->released = s->text_len;
        return;
    }
    size_t len, before = s->text_len;
    s->piece = tokenizer_decode(s->tok, s->prev, next, &len);
    s->piece_len = len;
    s->prev = next;
    if (text_add(s, s->piece, len) != 0) {
        s->oom = 1;
        s->finish = SESSION_STOP;
        s->released = s->text_len;
        return;
    }
    size_t at = stop_at(s, before);
    if (at != SIZE_MAX) {  // the text ends before the stop string; the token does not run
        s->text_len = at;
        s->text[at] = '\0';
        s->released = at;
        s->finish = SESSION_STOP;
        return;
    }
    if (s->oom) {  // session_begin found no room for a pending token
        s->finish = SESSION_STOP;
        s->released = s->text_len;
        return;
    }
    s->pending[0] = next;  // cap_pending >= 1 (session_begin)
    s->n_pending = 1;
    if (s->n_sampled >= s->lim.max_tokens) {
        s->finish = SESSION_LENGTH;
        s->released = s->text_len;
    } else {
        s->released = releasable(s);
    }
}

size_t session_step(Session **ss, size_t n, size_t budget) {
    Transformer *t = n ? ss[0]->t : NULL;
    size_t batch = t ? t->state.batch : 0;
    if (budget == 0 || budget > batch) budget = batch;
    SeqBatch sb[SL_MAX_BATCH];
    Session *who[SL_MAX_BATCH];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {  // 1. full caches; who runs
        Session *s = ss[i];
        assert(s->t == t);
        s->token = -1, s->piece = NULL, s->piece_len = 0;
        if (s->n_pending == 0) continue;
        if (s->pos == s->seq && !(s->context_shift && session_shift(s))) {
            s->n_pending = 0;  // nowhere to run them
            if (s->finish == SESSION_RUNNING) s->released = s->text_len;
            s->finish = SESSION_LENGTH;
            continue;
        }
        if (m < budget) who[m++] = s;
    }
    size_t left = budget - m, ran = 0;  // 2. one token each, then the rest in order
    for (size_t i = 0; i < m; i++) {
        Session *s = who[i];
        size_t room = s->seq - s->pos, take = s->n_pending < room ? s->n_pending : room;
        size_t more = take - 1 < left ? take - 1 : left;
        take = 1 + more, left -= more;
        sb[i] = (SeqBatch){s->kv, s->pending, take, s->pos,
                           take == s->n_pending ? s->logits : NULL, s->sink, s->sink_ctx};
        if (s->on_run) s->on_run(s->hook_ctx, s->pending, take);
        ran += take;
    }
    if (m) transformer_forward_seqs(t, sb, m);
    for (size_t i = 0; i < m; i++) {
        Session *s = who[i];
        size_t take = sb[i].n;
        for (size_t j = 0; j < take; j++) sampler_accept(&s->sampler, s->pending[j]);
        if (s->known == s->pos) {
            memcpy(s->ids + s->pos, s->pending, take * sizeof(int));
            s->known += take;
        }
        s->pos += take;
        s->n_pending -= take;
        memmove(s->pending, s->pending + take, s->n_pending * sizeof(int));
        if (s->n_pending == 0) s->has_logits = 1;
    }
    for (size_t i = 0; i < n; i++)  // 3. sample
        if (ss[i]->finish == SESSION_RUNNING && ss[i]->n_pending == 0 && ss[i]->has_logits)
            sample(ss[i]);
    return ran;
}

int session_run(Session *s, void (*emit)(void *ctx, const Session *s), void *ctx) {
    while (s->n_pending || s->finish == SESSION_RUNNING) {
        session_step(&s, 1, 0);
        if (s->token >= 0 && emit) emit(ctx, s);
        if (s->finish != SESSION_RUNNING && s->finish != SESSION_IDLE) break;
        if (s->finish == SESSION_IDLE && s->n_pending == 0) break;
    }
    return s->finish;
}

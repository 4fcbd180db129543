// engine.c: the server's slots and continuous batching (see engine.h).
//
// The engine thread holds e->mu except while session_step runs. Each round: drop the cancelled
// jobs (queued ones, and the slots of active ones), give each waiting job the free slot whose
// cache shares the longest prefix with its tokens (ties: the least recently used), then one
// session_step over every active slot (prompts join while the others decode), then hand each
// job its newly released text, and its end. A finished slot keeps its cache for the next job.
#define _POSIX_C_SOURCE 200809L
#include "server/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Session s;
    KvCache kv;
    int ready;             // s and kv built
    Job *job;              // the job it runs (the engine's reference), or NULL: idle
    size_t sent;           // s->text[0 .. sent) is in job->text
    size_t n_prompt;       // the job's prompt positions
    JobAttention *rec;     // the job's recording (NULL: none)
    uint64_t last_used;
} Slot;

struct Engine {
    Transformer *t;
    const Tokenizer *tok;
    Slot *slots;
    size_t n_slots;
    Job **queue;           // FIFO: at most queue_cap + the slots free at the next round
    size_t n_queued, queue_cap;
    pthread_mutex_t mu;
    pthread_cond_t cv;     // a job was queued, or stop
    int stop;
    int recording;         // transformer_record_buffer done
    uint64_t clock;
    pthread_t thread;
    int started;
};

Job *job_create(int *ids, size_t n_ids) {
    Job *j = calloc(1, sizeof *j);
    if (!j) {
        free(ids);
        return NULL;
    }
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j), free(ids);
        return NULL;
    }
    if (pthread_cond_init(&j->cv, NULL) != 0) {
        pthread_mutex_destroy(&j->mu);
        free(j), free(ids);
        return NULL;
    }
    j->ids = ids, j->n_ids = n_ids, j->refs = 1;
    atomic_init(&j->cancel, 0);
    return j;
}

int job_set_stops(Job *j, const char *const *stop, const size_t *len, int n) {
    for (int i = 0; i < n && i < SESSION_MAX_STOP; i++) {
        if (!(j->stop_copy[i] = malloc(len[i] + 1))) return -1;
        memcpy(j->stop_copy[i], stop[i], len[i]);
        j->stop_copy[i][len[i]] = '\0';
        j->lim.stop[i] = j->stop_copy[i];
        j->lim.stop_len[i] = len[i];
        j->lim.n_stop = i + 1;
    }
    return 0;
}

static void attention_free(JobAttention *a) {
    if (!a) return;
    free(a->ids), free(a->map), free(a);
}

void job_release(Job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    for (int i = 0; i < SESSION_MAX_STOP; i++) free(j->stop_copy[i]);
    attention_free(j->attn);
    free(j->ids), free(j->text);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

// Ends a job: done, with finish (SESSION_STOP, SESSION_LENGTH or -1), and the engine's
// reference dropped.
static void job_end(Job *j, int finish, JobAttention *attn) {
    pthread_mutex_lock(&j->mu);
    j->done = 1, j->finish = finish, j->attn = attn;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
}

// The attention sink of a recording slot: the rows of the reply's positions, averaged over the
// heads, as round(255 sqrt(w)).
static void slot_sink(void *ctx, size_t layer, size_t pos0, size_t n, const float *w,
                      size_t stride) {
    Slot *sl = ctx;
    JobAttention *a = sl->rec;
    if (!a || layer >= a->n_layers) return;
    size_t H = a->n_heads;
    for (size_t i = 0; i < n; i++) {
        size_t pos = pos0 + i;
        if (pos < a->n_prompt || pos - a->n_prompt >= a->cap_rows) continue;
        unsigned char *row = a->map + (layer * a->cap_rows + (pos - a->n_prompt)) * a->cap_n;
        size_t keys = pos + 1 < a->cap_n ? pos + 1 : a->cap_n;
        for (size_t k = 0; k < keys; k++) {
            float sum = 0.0f;
            for (size_t h = 0; h < H; h++) sum += w[(i * H + h) * stride + k];
            float v = sum / (float)H;
            v = v > 0.0f ? 255.0f * sqrtf(v < 1.0f ? v : 1.0f) : 0.0f;
            row[k] = (unsigned char)lrintf(v);
        }
    }
}

// The finished recording of a slot, compacted to rows x n per layer; NULL if there is none.
static JobAttention *slot_take_recording(Slot *sl) {
    JobAttention *a = sl->rec;
    sl->rec = NULL;
    sl->s.sink = NULL, sl->s.sink_ctx = NULL;
    if (!a) return NULL;
    size_t ran = sl->s.pos > a->n_prompt ? sl->s.pos - a->n_prompt : 0;
    a->rows = ran < a->cap_rows ? ran : a->cap_rows;
    a->n = a->n_prompt + a->rows;
    if (a->n > sl->s.known) a->n = sl->s.known;  // (no shifts in the server: known == pos)
    if (!(a->ids = malloc((a->n ? a->n : 1) * sizeof(int)))) {
        attention_free(a);
        return NULL;
    }
    memcpy(a->ids, sl->s.ids, a->n * sizeof(int));
    for (size_t l = 0; l < a->n_layers; l++)
        for (size_t r = 0; r < a->rows; r++)
            memmove(a->map + (l * a->rows + r) * a->n, a->map + (l * a->cap_rows + r) * a->cap_n,
                    a->n);
    return a;
}

// Starts job j on slot sl: keeps the cache's common prefix, feeds the rest. Returns 0, or -1
// (out of memory: the job is then ended as failed by the caller).
static int slot_start(Engine *e, Slot *sl, Job *j) {
    Session *s = &sl->s;
    size_t k = session_common_prefix(s, j->ids, j->n_ids);
    session_rewind(s, k);
    if (session_set_sampling(s, &j->sampling) != 0 || session_feed(s, j->ids + k, j->n_ids - k))
        goto fail;
    if (j->attention) {
        const SlHeader *h = &e->t->model.header;
        if (!e->recording) {
            if (transformer_record_buffer(e->t) != MODEL_OK) goto fail;
            e->recording = 1;
        }
        JobAttention *a = calloc(1, sizeof *a);
        if (!a) goto fail;
        a->n_layers = (size_t)h->n_layers, a->n_heads = (size_t)h->n_heads;
        a->n_prompt = j->n_ids;
        a->cap_rows = (size_t)j->lim.max_tokens;
        a->cap_n = j->n_ids + a->cap_rows;
        if (a->cap_n > s->seq) a->cap_n = s->seq;
        if (a->cap_rows > a->cap_n - j->n_ids) a->cap_rows = a->cap_n - j->n_ids;
        if (!(a->map = calloc(a->n_layers * (a->cap_rows ? a->cap_rows : 1) * a->cap_n, 1))) {
            free(a);
            goto fail;
        }
        sl->rec = a;
        s->sink = slot_sink, s->sink_ctx = sl;
    } else {
        s->sink = NULL, s->sink_ctx = NULL;
    }
    session_begin(s, &j->lim);
    pthread_mutex_lock(&j->mu);
    j->n_cached = k;
    pthread_mutex_unlock(&j->mu);
    sl->job = j, sl->sent = 0, sl->n_prompt = j->n_ids, sl->last_used = ++e->clock;
    return 0;
fail:
    session_rewind(s, 0);  // what the cache holds is no longer known to be whole
    return -1;
}

// Ends the job of slot sl (finish -1: failed, or cancelled) and frees the slot.
static void slot_end(Slot *sl, int finish) {
    Job *j = sl->job;
    JobAttention *a = slot_take_recording(sl);
    sl->job = NULL;
    if (finish < 0) attention_free(a), a = NULL;
    job_end(j, finish, a);
}

// Hands the job of slot sl its new released text, and its end.
static void slot_deliver(Slot *sl) {
    Session *s = &sl->s;
    Job *j = sl->job;
    int failed = 0;
    pthread_mutex_lock(&j->mu);
    if (s->released > sl->sent) {
        size_t add = s->released - sl->sent;
        if (j->text_len + add + 1 > j->text_cap) {
            size_t cap = j->text_cap ? j->text_cap : 256;
            while (cap < j->text_len + add + 1) cap *= 2;
            char *p = realloc(j->text, cap);
            if (p) j->text = p, j->text_cap = cap;
        }
        if (j->text_len + add + 1 <= j->text_cap) {
            memcpy(j->text + j->text_len, s->text + sl->sent, add);
            j->text_len += add;
            j->text[j->text_len] = '\0';
            sl->sent = s->released;
        } else {
            failed = 1;
        }
    }
    j->n_gen = s->n_sampled;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (failed || s->oom) {
        session_rewind(s, 0);
        slot_end(sl, -1);
    } else if (s->finish != SESSION_RUNNING) {
        slot_end(sl, s->finish);
    }
}

// Drops the cancelled jobs of the queue.
static void queue_prune(Engine *e) {
    size_t k = 0;
    for (size_t i = 0; i < e->n_queued; i++) {
        Job *j = e->queue[i];
        if (atomic_load(&j->cancel))
            job_end(j, -1, NULL);
        else
            e->queue[k++] = j;
    }
    e->n_queued = k;
}

// The free slot for job j: among the slots the job continues (it keeps at least half of what
// the cache holds: an empty slot, or a conversation's next turn), the one with the longest
// common prefix, ties to the least recently used; if none, the least recently used. So a
// template's shared header alone never evicts another conversation. NULL if none is free.
static Slot *slot_pick(Engine *e, const Job *j) {
    Slot *best = NULL, *lru = NULL;
    size_t best_k = 0;
    for (size_t i = 0; i < e->n_slots; i++) {
        Slot *sl = &e->slots[i];
        if (sl->job) continue;
        if (!lru || sl->last_used < lru->last_used) lru = sl;
        size_t k = session_common_prefix(&sl->s, j->ids, j->n_ids);
        if (2 * k < sl->s.pos) continue;
        if (!best || k > best_k || (k == best_k && sl->last_used < best->last_used))
            best = sl, best_k = k;
    }
    return best ? best : lru;
}

static void *engine_main(void *arg) {
    Engine *e = arg;
    Session **ss = malloc(e->n_slots * sizeof *ss);
    Slot **active = malloc(e->n_slots * sizeof *active);
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        if (!ss || !active) {  // no memory for the round's lists: fail whatever comes
            queue_prune(e);
            while (e->n_queued) job_end(e->queue[--e->n_queued], -1, NULL);
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        queue_prune(e);
        for (size_t i = 0; i < e->n_slots; i++)
            if (e->slots[i].job && atomic_load(&e->slots[i].job->cancel)) {
                session_rewind(&e->slots[i].s, e->slots[i].s.pos);  // keeps the cache
                slot_end(&e->slots[i], -1);
            }
        while (e->n_queued) {
            Slot *sl = slot_pick(e, e->queue[0]);
            if (!sl) break;
            Job *j = e->queue[0];
            memmove(e->queue, e->queue + 1, --e->n_queued * sizeof *e->queue);
            if (slot_start(e, sl, j) != 0) job_end(j, -1, NULL);
        }
        size_t n = 0;
        for (size_t i = 0; i < e->n_slots; i++)
            if (e->slots[i].job) active[n] = &e->slots[i], ss[n++] = &e->slots[i].s;
        if (!n) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        session_step(ss, n, 0);
        pthread_mutex_lock(&e->mu);
        for (size_t i = 0; i < n; i++) slot_deliver(active[i]);
    }
    // stopping: every job in flight ends as failed
    for (size_t i = 0; i < e->n_slots; i++)
        if (e->slots[i].job) slot_end(&e->slots[i], -1);
    while (e->n_queued) job_end(e->queue[--e->n_queued], -1, NULL);
    pthread_mutex_unlock(&e->mu);
    free(ss), free(active);
    return NULL;
}

Engine *engine_create(Transformer *t, const Tokenizer *tok, size_t n_slots, size_t queue_cap,
                      int kv_type) {
    Engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->t = t, e->tok = tok, e->n_slots = n_slots, e->queue_cap = queue_cap;
    if (pthread_mutex_init(&e->mu, NULL) != 0 || pthread_cond_init(&e->cv, NULL) != 0) {
        free(e);
        goto oom;
    }
    if (!(e->slots = calloc(n_slots, sizeof *e->slots)) ||
        !(e->queue = malloc((queue_cap + n_slots) * sizeof *e->queue)))
        goto fail_oom;
    for (size_t i = 0; i < n_slots; i++) {
        Slot *sl = &e->slots[i];
        if (kvcache_build(&sl->kv, &t->model.header, kv_type, 0) != MODEL_OK) goto fail;
        if (session_init(&sl->s, t, tok, &sl->kv) != 0) {
            session_free(&sl->s);
            kvcache_free(&sl->kv);
            goto fail_oom;
        }
        sl->ready = 1;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        fprintf(stderr, "run: cannot start the engine thread\n");
        goto fail;
    }
    e->started = 1;
    return e;
fail_oom:
    fprintf(stderr, "run: out of memory for %zu slots\n", n_slots);
fail:
    engine_destroy(e);
    return NULL;
oom:
    fprintf(stderr, "run: out of memory for the engine\n");
    return NULL;
}

int engine_submit(Engine *e, Job *j) {
    pthread_mutex_lock(&e->mu);
    // room: the free slots (the engine's next round hands them the first queued jobs), then
    // queue_cap jobs waiting
    size_t free_slots = 0;
    for (size_t i = 0; i < e->n_slots; i++) free_slots += e->slots[i].job == NULL;
    int full = e->n_queued >= e->queue_cap + free_slots || e->stop;
    if (!full) {
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        e->queue[e->n_queued++] = j;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return full ? -1 : 0;
}

void engine_stats(Engine *e, size_t *idle, size_t *processing, size_t *queued) {
    pthread_mutex_lock(&e->mu);
    size_t busy = 0;
    for (size_t i = 0; i < e->n_slots; i++) busy += e->slots[i].job != NULL;
    size_t waiting = 0;  // a cancelled job leaves the queue at the engine's next round
    for (size_t i = 0; i < e->n_queued; i++) waiting += !atomic_load(&e->queue[i]->cancel);
    *idle = e->n_slots - busy, *processing = busy, *queued = waiting;
    pthread_mutex_unlock(&e->mu);
}

void engine_stop(Engine *e) {
    if (!e || !e->started) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->started = 0;
}

void engine_destroy(Engine *e) {
    if (!e) return;
    engine_stop(e);
    for (size_t i = 0; e->slots && i < e->n_slots; i++)
        if (e->slots[i].ready) {
            session_free(&e->slots[i].s);
            kvcache_free(&e->slots[i].kv);
        }
    free(e->slots), free(e->queue);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

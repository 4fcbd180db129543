// engine.h: the server's slots and its continuous batching: one engine thread owns the
// Transformer and --parallel slots (each a Session with its own KV cache) and runs every
// generation the connection threads hand it, all active slots in one session_step per round.
//
// Contract: libc, pthreads and session.h. Nothing here exits or prints but engine_create's
// one line on a failure. A Job is shared by one connection thread and the engine, each holding
// a reference (job_release drops one; the last frees it); its fields below `mu` are read and
// written under mu only, and cv is signalled whenever they change. Everything a job asks for
// is checked before engine_submit (the prompt fits the slot context, max_tokens >= 1).
#ifndef SEARCHLIGHT_SERVER_ENGINE_H
#define SEARCHLIGHT_SERVER_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/session.h"

// A reply's attention (Job.attention): rows query positions n_prompt .. n_prompt + rows - 1
// over keys 0 .. n - 1 (n = n_prompt + rows), one byte each: round(255 sqrt(w)), w averaged
// over the heads; map[l] is layer l's rows x n bytes.
typedef struct {
    size_t n_layers, n_heads, n_prompt, rows, n;
    int *ids;            // (n) the token of each position
    unsigned char *map;  // (n_layers, rows, n)
    // while recording: the room allocated
    size_t cap_rows, cap_n;
} JobAttention;

typedef struct Job {
    // the request, fixed once submitted
    int *ids;                   // the prompt's tokens (owned)
    size_t n_ids;
    SessionSampling sampling;
    SessionLimits lim;          // its stop strings point into stop_copy
    char *stop_copy[SESSION_MAX_STOP];
    int attention;              // record the reply's attention (rows capped by lim.max_tokens)
    atomic_int cancel;          // set by the connection: the client is gone
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // under mu
    int refs;
    char *text;                 // the released text so far (text_len bytes, NUL-terminated)
    size_t text_len, text_cap;
    int done;                   // the engine is finished with it
    int finish;                 // SESSION_STOP or SESSION_LENGTH when done; -1: failed (memory)
    size_t n_cached;            // prompt tokens the slot's cache already held
    long n_gen;                 // tokens sampled
    JobAttention *attn;         // when done, with attention: the map (the job owns it)
} Job;

// A new job with one reference (the caller's) owning ids; NULL when out of memory (ids freed).
Job *job_create(int *ids, size_t n_ids);
// Sets its stop strings (copies). Returns 0, or -1 when out of memory.
int job_set_stops(Job *j, const char *const *stop, const size_t *len, int n);
void job_release(Job *j);

typedef struct Engine Engine;

// Starts the engine thread over t (built with the slot context as its seq_len) with n_slots
// slots and a queue of queue_cap jobs. Returns NULL after one line on stderr.
Engine *engine_create(Transformer *t, const Tokenizer *tok, size_t n_slots, size_t queue_cap,
                      int kv_type);
// Queues a job (the engine takes a reference). Returns 0, or -1 when the queue is full: it holds
// queue_cap jobs beyond the slots that are free (which its first jobs take at the next round).
int engine_submit(Engine *e, Job *j);
// The slots idle and processing, and the jobs queued, now.
void engine_stats(Engine *e, size_t *idle, size_t *processing, size_t *queued);
// Stops the engine thread: the jobs in flight and queued end as failed, later submits fail.
void engine_stop(Engine *e);
// Stops it (if not yet) and frees everything; no other thread may use e any more.
void engine_destroy(Engine *e);

#endif

// session.h: one generation with a model: its KV cache, its position, its sampler, its stop
// rules and its context shift, stepped one token (or one batch of sessions) at a time. Generate
// mode, chat and the server all run their generations through it; it is the seed of an
// embeddable searchlight.h.
//
// Contract: libc, the transformer, the sampler and the tokenizer. Nothing here exits or prints.
// A session does not own the Transformer (the weights, the scratch and the thread pool, shared by
// every session of a process); it owns its sampler and, unless it borrows the transformer's own,
// its KV cache. Sessions are stepped from one thread at a time.
//
// How a generation goes:
//   session_feed(s, prompt ids)        queue the tokens to run (after session_rewind to reuse
//                                      what the cache already holds: session_common_prefix)
//   session_begin(s, &limits)          generate after them: sample, check the stops, feed back
//   while (s->finish == SESSION_RUNNING) session_step(&s, 1);  // or many sessions per step
// Each step runs every session's pending tokens (a prompt in chunks, or the one token sampled
// last), all sessions' tokens in one forward pass, then samples one token for each generating
// session whose pending tokens have all run. The last token sampled stays pending (it has not
// run): a following session_feed runs it first, so the cache always holds the text so far.
//
// Batching never changes a result: every matmul row and every attention row is computed in the
// same order whatever else is in the batch (the prefill-equals-decode property), so a session's
// tokens at temperature 0 are the same bits alone or batched with others.
#ifndef SEARCHLIGHT_SESSION_H
#define SEARCHLIGHT_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/sampler.h"
#include "runtime/transformer.h"
#include "tokenizer.h"

#define SESSION_MAX_STOP 4      // stop strings of one generation
#define SESSION_STOP_MAX 256    // bytes of one stop string

// How tokens are drawn (sampler.h has each step).
typedef struct {
    float temperature;     // >= 0; 0 is greedy
    float top_p;           // [0, 1]; 0 or 1 off
    int top_k;             // >= 0; 0 off
    float min_p;           // [0, 1]; 0 off
    float repeat_penalty;  // > 0; 1 off
    int repeat_last_n;     // >= 0 (0 off), or -1: the whole context
    uint64_t seed;         // the RNG's seed (0 is taken as 1: xorshift's state is never 0)
} SessionSampling;

// When a generation ends.
typedef struct {
    long max_tokens;        // the most tokens sampled (>= 1); the last one is emitted but not run
    int n_stop;             // stop strings: the text ends before the first occurrence of any
    const char *stop[SESSION_MAX_STOP];
    size_t stop_len[SESSION_MAX_STOP];  // each 1 .. SESSION_STOP_MAX bytes
    int ignore_eos;         // 1: the model's stop tokens are never drawn (benchmarks)
} SessionLimits;

enum session_finish {
    SESSION_IDLE = 0,   // not generating (before session_begin, or fed since)
    SESSION_RUNNING,
    SESSION_STOP,       // a stop token or a stop string
    SESSION_LENGTH,     // max_tokens, or a full cache that could not shift
};

typedef struct Session {
    Transformer *t;         // shared, not owned
    const Tokenizer *tok;   // for the text: the model's or run -z's
    KvCache *kv;            // the cache: the transformer's own (session_init with kv NULL) or a
                            // caller's (kvcache_build)
    Sampler sampler;
    size_t seq;             // positions the cache holds at most
    size_t pos;             // positions it holds now
    int *ids;               // (seq) the token at each position, for the first `known` ones
    size_t known;           // positions whose ids are known: pos, or less after a shift
    int *pending;           // tokens queued to run at pos, pos + 1, ...
    size_t n_pending, cap_pending;
    float *logits;          // (vocab_size) the logits after the last token run
    int has_logits;         // logits are those of position pos - 1
    // the generation (session_begin)
    SessionLimits lim;
    char stop_text[SESSION_MAX_STOP][SESSION_STOP_MAX];
    int finish;             // enum session_finish
    long n_sampled;         // tokens sampled since session_begin
    int token;              // the last one sampled (-1: none this step)
    const char *piece;      // its decoded text (tokenizer_decode's), piece_len bytes; NULL for a
    size_t piece_len;       // stop token, or none this step
    char *text;             // the reply's text so far (text_len bytes, NUL-terminated): the
    size_t text_len, text_cap;  // pieces, cut at a stop string when one ends it
    size_t released;        // text[0 .. released) is final: no stop string can start in it,
                            // and it ends at a whole UTF-8 character (at the finish: all of it)
    int prev;               // the token before `token` (for tokenizer_decode's leading space)
    int context_shift;      // 1: a full cache with tokens pending shifts (keep SHIFT_SINKS, drop
                            // half the rest, as run does) and goes on; 0 (the default): the
                            // pending tokens are dropped and a generation ends (SESSION_LENGTH)
    size_t n_shifts;
    // attention recording, for callers that keep maps
    AttnSink sink;          // receives this session's attention weights (NULL: none; needs
    void *sink_ctx;         // transformer_record_buffer)
    void (*on_run)(void *ctx, const int *ids, size_t n);     // told of the tokens about to run
    void (*on_shift)(void *ctx, size_t keep, size_t drop);   // told of each shift
    void *hook_ctx;         // the context of on_run and on_shift (either may be NULL)
    int oom;                // the text could not grow: the generation ended (SESSION_STOP)
} Session;

// A session over t, with t's own KV cache (kv NULL) or kv (built for t's model). The sampler
// starts greedy. Returns 0, or -1 when out of memory (the session is then empty: free is safe).
int session_init(Session *s, Transformer *t, const Tokenizer *tok, KvCache *kv);
void session_free(Session *s);

// (Re)builds the sampler; its repetition window starts with the last repeat_last_n tokens the
// cache holds (session_rewind first, to keep only a prefix). Returns 0, or -1 when out of memory.
int session_set_sampling(Session *s, const SessionSampling *p);

// How many leading tokens of ids[0 .. n) the cache already holds and can keep (at most n - 1,
// so that at least one token runs and gives logits): 0 after a shift, or where the windowed
// caches no longer hold what a rewind needs (transformer_resume).
size_t session_common_prefix(const Session *s, const int *ids, size_t n);

// Forgets every position from k on (k <= pos) and every pending token; generation stops
// (SESSION_IDLE). session_rewind(s, 0) starts over.
void session_rewind(Session *s, size_t k);

// Queues n tokens to run after the pending ones; they are also accepted by the sampler's
// repetition window as they run. Ends a generation in progress (SESSION_IDLE). Returns 0, or -1
// when out of memory.
int session_feed(Session *s, const int *ids, size_t n);

// Whether n more tokens fit after the cache and the pending ones, without a shift.
int session_fits(const Session *s, size_t n);

// Shifts the cache now (keep SHIFT_SINKS, drop half of the rest, as run does at a full context)
// if it can: returns 1, or 0 when it cannot (too few positions, or windowed caches).
int session_shift(Session *s);

// Starts generating after the pending tokens (at least one must be pending, or the cache's last
// logits be current): the stop strings are copied. Resets n_sampled, text and finish.
void session_begin(Session *s, const SessionLimits *lim);

// One step of n sessions over the same transformer: runs up to budget tokens in one forward pass
// (every session with pending tokens gets at least one, in order; a prompt takes what is left, up
// to the transformer's batch), then samples a token for every generating session whose pending
// tokens have all run (s->token, s->piece; s->finish when it ends). budget 0 means the
// transformer's batch. Returns the tokens run (0: nothing was pending).
size_t session_step(Session **ss, size_t n, size_t budget);

// Runs one session until its generation ends (or nothing is pending), calling emit after each
// token sampled (NULL: none). Returns the finish.
int session_run(Session *s, void (*emit)(void *ctx, const Session *s), void *ctx);

#endif

// serve.h: run -m serve: an OpenAI-compatible HTTP server with continuous batching.
//
// Contract: libc, POSIX sockets and pthreads, the transformer, session.h, http.h, openai.h and
// the chat templates. Nothing here exits or installs signal handlers (run.c's main does: it
// ignores SIGPIPE and sets *stop on SIGINT and SIGTERM). Startup failures print one line.
//
// Threads: the accepting thread (serve_run's caller), one detached thread per connection (at
// most parallel + queue + SERVE_EXTRA_CONNS; beyond that a connection gets 503 at once) that
// reads, validates, renders and tokenizes a request and then streams or waits for its reply,
// and one engine thread (engine.h) that owns the model and the slots and steps every active
// generation together. Endpoints: POST /v1/chat/completions, POST /v1/completions, GET
// /v1/models, GET /health, GET / (the chat page), OPTIONS (CORS). One connection carries one
// request (Connection: close).
#ifndef SEARCHLIGHT_SERVER_SERVE_H
#define SEARCHLIGHT_SERVER_SERVE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "runtime/session.h"

#define SERVE_EXTRA_CONNS 8        // connections beyond parallel + queue (health checks, ...)
#define SERVE_MAX_PARALLEL 64
#define SERVE_DEFAULT_CTX 4096     // a slot's context unless -c: min(the model's, this)
#define SERVE_ATTN_MAX_N 4096      // an attention map covers at most this many positions
#define SERVE_ATTN_MAX_BYTES (64u << 20)  // and its rows x positions x layers at most this

typedef struct {
    const char *model_path;
    const char *host;            // the address to bind (default 127.0.0.1)
    int port;                    // 0: any free port (the line on stderr says which)
    size_t parallel;             // slots, 1 .. SERVE_MAX_PARALLEL
    size_t queue;                // jobs waiting for a slot at most
    const char *api_key;         // NULL: /v1/* is open
    int timeout_s;               // a request's reading and each response's writing
    const char *chat_template;   // NULL: the model's, else chatml
    int n_ctx;                   // each slot's context (0: min(the model's, SERVE_DEFAULT_CTX))
    int kv_type;
    SessionSampling sampling;    // run's defaults with the command line's values
    uint32_t sampling_given;     // SL_SAMPLE_* bits of those the command line gave
} ServeOptions;

// Loads the model, starts the engine, listens and serves until *stop is set (polled every
// 100 ms). Returns 0 after a clean stop, 1 after a line on stderr.
int serve_run(const ServeOptions *o, Pool *pool, volatile sig_atomic_t *stop);

#endif

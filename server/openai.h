// openai.h: decoding OpenAI API requests (/v1/chat/completions, /v1/completions) and encoding
// their errors.
//
// Contract: libc only (io/json.c parses, io/strbuf.c writes); nothing here exits or prints.
// oai_decode checks every field it knows and ignores the others (clients send many:
// frequency_penalty, user, logit_bias, tools, ...). A sampling field that is null counts as
// not given. Every string it keeps is a copy that oai_free releases.
#ifndef SEARCHLIGHT_OPENAI_H
#define SEARCHLIGHT_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "app/template.h"
#include "io/strbuf.h"

enum { OAI_CHAT, OAI_COMPLETION };

#define OAI_MAX_STOP 4
#define OAI_STOP_MAX 256  // bytes of one stop string (the session's SESSION_STOP_MAX)

// which sampling fields the request gave (the server fills the rest from the model's
// recommendations or its defaults)
#define OAI_SET_TEMPERATURE 1u
#define OAI_SET_TOP_P 2u
#define OAI_SET_TOP_K 4u
#define OAI_SET_MIN_P 8u
#define OAI_SET_REPEAT_PENALTY 16u
#define OAI_SET_SEED 32u
#define OAI_SET_MAX_TOKENS 64u

typedef struct {
    int kind;                          // OAI_CHAT or OAI_COMPLETION
    ChatMsg *msgs;                     // OAI_CHAT: n_msgs >= 1; role is "system", "user" or
    size_t n_msgs;                     // "assistant" ("developer" becomes "system"), content
                                       // NUL-terminated UTF-8 holding no NUL
    char *prompt;                      // OAI_COMPLETION: prompt_len bytes of UTF-8, NUL after
    size_t prompt_len;
    uint32_t set;                      // OAI_SET_* of the fields given
    float temperature, top_p, min_p, repeat_penalty;
    int top_k;
    uint64_t seed;
    long max_tokens;
    char *stop[OAI_MAX_STOP];          // non-empty, NUL-terminated (length stop_len[i])
    size_t stop_len[OAI_MAX_STOP];
    int n_stop;
    int stream, include_usage;         // include_usage: stream_options.include_usage
    int attention;                     // searchlight's "attention": true, the reply's attention map
    int ignore_eos;                    // llama-server's "ignore_eos": true, the model's stop
                                       // tokens do not end the reply (benchmarks)
    char model[128];                   // "model" if given (to echo back), else ""
} OaiRequest;

// Decodes a request body of the given kind into *r (zeroed first). Returns 0, or -1 with a
// one-line message naming the field (the server answers 400 with it) and *r empty. Fields:
// messages (chat: a non-empty array of {role, content}; content a string, an array of
// {"type":"text","text":...} parts concatenated, or null for an assistant), prompt
// (completion: a string or an array of one string), temperature (>= 0), top_p and min_p (in
// [0, 1]), top_k (an integer >= 0), repeat_penalty or repetition_penalty (> 0), seed (an
// integer; negative: unset), max_tokens, max_completion_tokens or n_predict (an integer >= 1;
// -1: unset), stop (a string or an array of up to 4 non-empty strings), n (1), stream,
// stream_options.include_usage, attention, ignore_eos (booleans), model (a string under 128
// bytes).
int oai_decode(const char *body, size_t len, int kind, OaiRequest *r, char *err, size_t cap);
void oai_free(OaiRequest *r);

// Appends OpenAI's error object for an HTTP status: {"error":{"message":...,"type":...,
// "param":null,"code":status}}, type by status: 401 authentication_error, 403
// permission_error, 404 not_found_error, 429 rate_limit_error, 501 not_supported_error, 503
// unavailable_error, other 5xx server_error, other 4xx invalid_request_error. The message may
// be any bytes (sb_json_string makes it valid JSON).
void oai_error(StrBuf *b, int status, const char *message);

#endif

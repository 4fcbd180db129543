// chat.h: run -m chat: a multi-turn conversation in the model's own chat template, with a KV
// cache that carries over from turn to turn and a context shift past the context.
//
// Contract: libc, the session (runtime/session.h), the tokenizer, template.h and attnmap.h.
// Reads the user's turns from a file descriptor (one per line; a line ending in '\' goes on on the
// next), streams each reply to stdout, and prints timings and one-line complaints to stderr.
// Nothing here exits: chat_run returns the exit status.
//
// Each turn feeds the model only its new tokens, as one batch (llama.cpp's way): the whole
// conversation is rendered with the new user turn and the generation prompt, and the text
// past what the cache already holds (the previous rendering up to its generation prompt,
// then the reply as decoded) is tokenized and fed. The reply's tokens are fed as they are
// generated; the stop token that ends a reply is not: the next turn's text brings it.
#ifndef SEARCHLIGHT_CHAT_H
#define SEARCHLIGHT_CHAT_H

#include <stdio.h>

#include "runtime/session.h"
#include "runtime/transformer.h"
#include "tokenizer.h"

typedef struct {
    const char *system;         // -y: the system prompt (NULL: none, or the template's default)
    const char *first;          // -i: a first user turn before the stream's (NULL or "": none)
    int template_kind;          // enum tpl_kind, from chat_template_kind
    const char *default_system; // chatml: template_detect's default system text (or NULL)
    int think;                  // --think: enable_thinking (qwen3, smollm3)
    const char *date;           // --date: a template's "today" (NULL: template_today's)
    long max_reply;             // -n: the most tokens of one reply
    const char *model_name;     // for the attention page
    const char *attn_map;       // --attn-map, --attn-dump: record the whole conversation
    const char *attn_dump;
} ChatOptions;

// The template to chat in: `name` (--chat-template) if given, else the family of the model's
// stored template (for chatml, its default system text goes to default_system, cap bytes).
// Returns an enum tpl_kind, or -1 after one line on stderr: an unknown name, or a model
// without a template (or with one of no known family) and no name, listing the names.
int chat_template_kind(const Model *m, const char *name, char *default_system, size_t cap);

// Encodes a rendered conversation, without BOS or EOS (the template writes them): its special
// tokens (<|im_start|>, <s>, [INST] where that is one) become their ids. The byte-level encoder
// matches them itself; for sentencepiece the text is cut at its control, user-defined and
// unknown tokens and the pieces between encoded on their own, as the `tokenizers` library
// does with added tokens. *ids is malloc'd (the caller frees). Returns 0, or -1 (no memory).
int chat_encode(const Tokenizer *tok, const char *text, size_t len, int **ids, size_t *n);

// Installs the SIGINT handler of chat mode (no SA_RESTART: a blocking read returns): Ctrl-C
// during a reply stops it, at the prompt it ends the conversation.
void chat_install_sigint(void);

// The conversation, turn by turn from the file descriptor fd (read with read(2)) until EOF or
// Ctrl-C at the prompt, in the session ss (its cache, sampler and tokenizer; chat turns its
// context shift on). Returns 0, or 1 after a message (out of memory, a file that cannot be
// written).
int chat_run(Session *ss, const ChatOptions *o, int fd);

#endif

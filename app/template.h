// template.h: chat templates rendered in C, for run -m chat: a conversation laid out as an
// instruct model's own Jinja chat template (tokenizer_config.json "chat_template", GGUF
// tokenizer.chat_template) lays it out, without a Jinja interpreter.
//
// Contract: libc only. template_detect recognises the family of a template from its text
// (any bytes, read only within len); template_render writes a conversation as that family's
// template renders it under transformers' apply_chat_template (jinja2, tokenize=False), byte
// for byte: tests/test_template.c checks it against tests/fixtures/templates.txt, which
// make_templates.py rendered with transformers from the real templates. Nothing here prints
// or exits: errors come back as -1 and one line in err.
//
// Families, and the template each one is (as in ../shared/templates):
//   llama2   Llama-2-chat        [INST] / <<SYS>>, bos and eos around each exchange
//   llama3   Llama 3.1 - 3.3     header ids, <|eot_id|>, a system turn with "Today Date"
//   chatml   Qwen2.5, SmolLM2    <|im_start|> / <|im_end|>, maybe a default system turn
//   qwen3    Qwen3               ChatML with <think> blocks and enable_thinking
//   mistral  Mistral Nemo        [INST]...[/INST] without spaces, the system text in the last
//                                user message
//   phi3     Phi-3.5-mini        <|system|> <|user|> <|assistant|> <|end|>
//   gemma    Gemma 2 (and 1)     <start_of_turn> / <end_of_turn>; no system role: a
//                                conversation that starts with one is an error, as the
//                                template raises (nothing is folded, unlike llama.cpp)
//   smollm3  SmolLM3             ChatML with a metadata system turn and /think, /no_think
//   gemma3   Gemma 3             Gemma's turns; a system message's text, then a blank line,
//                                starts the first user turn
// Only the roles system, user and assistant are rendered (no tools). Where the template
// raises (roles not alternating, say), render fails with the template's own message.
#ifndef SEARCHLIGHT_TEMPLATE_H
#define SEARCHLIGHT_TEMPLATE_H

#include <stddef.h>

enum tpl_kind { TPL_LLAMA2, TPL_LLAMA3, TPL_CHATML, TPL_QWEN3, TPL_MISTRAL, TPL_PHI3, TPL_GEMMA,
                TPL_SMOLLM3, TPL_GEMMA3, TPL_COUNT };
#define TPL_NAMES "llama2, llama3, chatml, qwen3, mistral, phi3, gemma, smollm3, gemma3"
#define TPL_SYSTEM_MAX 1024  // room enough for any default system text template_detect finds

// The name of a kind ("llama2" ...), NULL if kind is not one; the kind of a name, -1 if none.
const char *template_name(int kind);
int template_by_name(const char *name);

// The family of a model's template text (len bytes, any content), or -1 if it is none of
// them. For chatml, the system text the template adds when a conversation has no system
// message (Qwen2.5's "You are Qwen, ...") is copied NUL-terminated to default_system, ""
// if there is none; a text that does not fit in cap bytes makes the result -1.
// default_system may be NULL (cap 0) to ask for the family only.
int template_detect(const char *jinja, size_t len, char *default_system, size_t cap);

typedef struct {
    const char *role;     // "system", "user" or "assistant"
    const char *content;  // UTF-8
} ChatMsg;

typedef struct {
    int add_generation_prompt;   // end with the assistant's header, for the model to answer
    int think;                   // qwen3, smollm3: enable_thinking (0: false, as without --think)
    const char *bos, *eos;       // the texts of bos_token and eos_token (NULL: none, "")
    const char *default_system;  // chatml: template_detect's default system text (NULL: none)
    const char *date;            // llama3's "Today Date" (NULL: its default, "26 Jul 2024")
} TplOptions;

// The date a template renders as "Today Date" (llama3): today's, "%d %b %Y" in local time
// (e.g. "07 Dec 2026"), when the template text asks for it through strftime_now, as
// transformers and llama.cpp render it; NULL when it does not (the template's own default
// then). buf has cap bytes (16 are enough).
const char *template_today(const char *jinja, size_t len, char *buf, size_t cap);

// Renders msgs[0 .. n) as the family's template does into a malloc'd NUL-terminated string
// (*out, its length *out_len; the caller frees). Returns 0, or -1 with *out NULL and a
// one-line reason in err (err_cap bytes; err may be NULL): no messages, a role that is not
// system, user or assistant, the template's own error, out of memory.
int template_render(int kind, const ChatMsg *msgs, size_t n, const TplOptions *o, char **out,
                    size_t *out_len, char *err, size_t err_cap);

#endif

// template.c: chat templates rendered in C (see template.h).
//
// Contract: libc only. Each family is one function that follows its Jinja template statement
// by statement, for string contents and the roles system, user and assistant; the Jinja it
// mirrors is quoted above it. Python's string methods the templates call (strip, | trim,
// rstrip, lstrip('\n'), split) are done here on UTF-8 bytes with Python's semantics:
// whitespace is str.isspace()'s 29 code points, not only ASCII.
#include "app/template.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const tpl_names[TPL_COUNT] = {"llama2", "llama3", "chatml",  "qwen3",
                                                 "mistral", "phi3",  "gemma", "smollm3",
                                                 "gemma3"};

const char *template_name(int kind) {
    return kind >= 0 && kind < TPL_COUNT ? tpl_names[kind] : NULL;
}

int template_by_name(const char *name) {
    for (int k = 0; name && k < TPL_COUNT; k++)
        if (strcmp(name, tpl_names[k]) == 0) return k;
    return -1;
}

// ----------------------------------------------------------------------------
// strings: spans of bytes, and Python's str methods on them

typedef struct {
    const char *p;
    size_t n;
} Str;

static Str str_of(const char *s) { return (Str){s ? s : "", s ? strlen(s) : 0}; }

// Offset of the first (last, if last) occurrence of needle in s, or SIZE_MAX.
static size_t str_find(Str s, const char *needle, int last) {
    size_t m = strlen(needle), at = SIZE_MAX;
    for (size_t i = 0; m <= s.n && i <= s.n - m; i++)
        if (memcmp(s.p + i, needle, m) == 0) {
            at = i;
            if (!last) break;
        }
    return at;
}

static int str_has(Str s, const char *needle) { return str_find(s, needle, 0) != SIZE_MAX; }

static int str_starts(Str s, const char *prefix) {
    size_t m = strlen(prefix);
    return s.n >= m && memcmp(s.p, prefix, m) == 0;
}

static int str_ends(Str s, const char *suffix) {
    size_t m = strlen(suffix);
    return s.n >= m && memcmp(s.p + s.n - m, suffix, m) == 0;
}

// The UTF-8 of the code points beyond ASCII for which Python's str.isspace() is true
// (U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
static const char *const wide_spaces[] = {
    "\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81",
    "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86",
    "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8",
    "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80",
};

static int ascii_space(unsigned char c) { return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20); }

// Bytes of the whitespace character s starts (at_end 0) or ends (at_end 1) with, or 0. In
// valid UTF-8 a match at the end is a whole character: no sequence's tail is another's whole.
static size_t space_len(Str s, int at_end) {
    if (s.n == 0) return 0;
    if (ascii_space((unsigned char)s.p[at_end ? s.n - 1 : 0])) return 1;
    for (size_t i = 0; i < sizeof wide_spaces / sizeof *wide_spaces; i++)
        if (at_end ? str_ends(s, wide_spaces[i]) : str_starts(s, wide_spaces[i]))
            return strlen(wide_spaces[i]);
    return 0;
}

// Python's s.lstrip() / s.rstrip() (whitespace) and s.lstrip(c) / s.rstrip(c) (one byte).
static Str py_lstrip(Str s) {
    for (size_t k; (k = space_len(s, 0)) > 0;) s.p += k, s.n -= k;
    return s;
}
static Str py_rstrip(Str s) {
    for (size_t k; (k = space_len(s, 1)) > 0;) s.n -= k;
    return s;
}
static Str py_strip(Str s) { return py_rstrip(py_lstrip(s)); }
static Str lstrip_char(Str s, char c) {
    while (s.n > 0 && s.p[0] == c) s.p++, s.n--;
    return s;
}
static Str rstrip_char(Str s, char c) {
    while (s.n > 0 && s.p[s.n - 1] == c) s.n--;
    return s;
}

// s.split(sep)[0] and s.split(sep)[-1]: before the first sep, after the last one.
static Str split_first(Str s, const char *sep) {
    size_t at = str_find(s, sep, 0);
    return at == SIZE_MAX ? s : (Str){s.p, at};
}
static Str split_last(Str s, const char *sep) {
    size_t at = str_find(s, sep, 1), m = strlen(sep);
    return at == SIZE_MAX ? s : (Str){s.p + at + m, s.n - at - m};
}

// ----------------------------------------------------------------------------
// the output: a growing string; running out of memory is remembered and reported at the end

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} Out;

static void out_str(Out *o, Str s) {
    if (o->oom || s.n == 0) return;
    if (s.n > SIZE_MAX / 2 - o->n) {
        o->oom = 1;
        return;
    }
    if (o->n + s.n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + s.n + 1) cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->p = p, o->cap = cap;
    }
    memcpy(o->p + o->n, s.p, s.n);
    o->n += s.n;
    o->p[o->n] = '\0';
}

static void out_cstr(Out *o, const char *s) { out_str(o, str_of(s)); }

// Appends each of the strings, up to a NULL, in turn (so none of them may be NULL).
static void out_cat(Out *o, ...) {
    va_list ap;
    va_start(ap, o);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) out_cstr(o, s);
    va_end(ap);
}

// ----------------------------------------------------------------------------
// the families

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

typedef struct {
    const ChatMsg *m;
    size_t n;
    const int *role;  // ROLE_* of each message
    const TplOptions *o;
    Out *out;
    const char *raised;  // the template's raise_exception message, when it raises
} Conv;

static Str content(const Conv *c, size_t i) { return str_of(c->m[i].content); }

static const char *const MSG_ALTERNATE = "Conversation roles must alternate user/assistant/user/assistant/...";

// {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set
// system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set
// system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] ==
// 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate
// user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message !=
// false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}
// {% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}
// {{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] ==
// 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
static void render_llama2(Conv *c) {
    size_t first = c->role[0] == ROLE_SYSTEM;
    for (size_t i = first; i < c->n; i++) {
        size_t k = i - first;
        if ((c->role[i] == ROLE_USER) != (k % 2 == 0)) {
            c->raised = MSG_ALTERNATE;
            return;
        }
        Out joined = {0};
        Str text = content(c, i);
        if (k == 0 && first) {
            out_cat(&joined, "<<SYS>>\n", c->m[0].content, "\n<</SYS>>\n\n", c->m[i].content, NULL);
            if (joined.oom) {
                c->out->oom = 1;
                return;
            }
            text = (Str){joined.p, joined.n};
        }
        text = py_strip(text);
        if (c->role[i] == ROLE_USER) {
            out_cat(c->out, c->o->bos, "[INST] ", NULL);
            out_str(c->out, text);
            out_cstr(c->out, " [/INST]");
        } else if (c->role[i] == ROLE_ASSISTANT) {
            out_cstr(c->out, " ");
            out_str(c->out, text);
            out_cat(c->out, " ", c->o->eos, NULL);
        }  // a system message where an answer goes: the template renders nothing
        free(joined.p);
    }
}

// Llama 3.1 - 3.3 without tools:
//   {{- bos_token }} ... {%- set date_string = "26 Jul 2024" %} ...
//   {%- if messages[0]['role'] == 'system' %}
//       {%- set system_message = messages[0]['content']|trim %} {%- set messages = messages[1:] %}
//   {%- else %} {%- set system_message = "" %} {%- endif %}
//   {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
//   {{- "Cutting Knowledge Date: December 2023\n" }} {{- "Today Date: " + date_string + "\n\n" }}
//   {{- system_message }} {{- "<|eot_id|>" }}
//   {%- for message in messages %}
//       {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+
//           message['content'] | trim + '<|eot_id|>' }}
//   {%- endfor %}
//   {%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
static void render_llama3(Conv *c) {
    size_t first = c->role[0] == ROLE_SYSTEM;
    out_cat(c->out, c->o->bos, "<|start_header_id|>system<|end_header_id|>\n\n",
            "Cutting Knowledge Date: December 2023\nToday Date: ", c->o->date, "\n\n", NULL);
    if (first) out_str(c->out, py_strip(content(c, 0)));
    out_cstr(c->out, "<|eot_id|>");
    for (size_t i = first; i < c->n; i++) {
        out_cat(c->out, "<|start_header_id|>", c->m[i].role, "<|end_header_id|>\n\n", NULL);
        out_str(c->out, py_strip(content(c, i)));
        out_cstr(c->out, "<|eot_id|>");
    }
    if (c->o->add_generation_prompt) out_cstr(c->out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// ChatML, as Qwen2.5 (without tools) and SmolLM2:
//   {%- if messages[0]['role'] == 'system' %}
//       {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
//   {%- else %}
//       {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. ...<|im_end|>\n' }}
//   {%- endif %}
//   {%- for message in messages %} (the first, if a system message, is the one above)
//       {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
//   {%- endfor %}
//   {%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
static void render_chatml(Conv *c) {
    if (c->role[0] != ROLE_SYSTEM && c->o->default_system)
        out_cat(c->out, "<|im_start|>system\n", c->o->default_system, "<|im_end|>\n", NULL);
    for (size_t i = 0; i < c->n; i++)
        out_cat(c->out, "<|im_start|>", c->m[i].role, "\n", c->m[i].content, "<|im_end|>\n", NULL);
    if (c->o->add_generation_prompt) out_cstr(c->out, "<|im_start|>assistant\n");
}

// Qwen3 without tools (the ChatML of render_chatml, no default system message, and):
//   {%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
//   {%- for message in messages[::-1] %} {%- set index = (messages|length - 1) - loop.index0 %}
//       {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith(
//           '<tool_response>') and message.content.endswith('</tool_response>')) %}
//           {%- set ns.multi_step_tool = false %} {%- set ns.last_query_index = index %}
//   ...
//   {%- elif message.role == "assistant" %}
//       {%- set content = message.content %} {%- set reasoning_content = '' %}
//       {%- if '</think>' in message.content %}
//           {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
//           {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n')
//                                       .split('<think>')[-1].lstrip('\n') %}
//       {%- if loop.index0 > ns.last_query_index %}
//           {%- if loop.last or (not loop.last and reasoning_content) %}
//               {{- '<|im_start|>' + message.role + '\n<think>\n' +
//                   reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
//           {%- else %} {{- '<|im_start|>' + message.role + '\n' + content }}
//       {%- else %} {{- '<|im_start|>' + message.role + '\n' + content }}
//       {{- '<|im_end|>\n' }}
//   ...
//   {%- if add_generation_prompt %} {{- '<|im_start|>assistant\n' }}
//       {%- if enable_thinking is defined and enable_thinking is false %}
//           {{- '<think>\n\n</think>\n\n' }}
static void render_qwen3(Conv *c) {
    size_t last_query = c->n - 1;
    for (size_t i = c->n; i-- > 0;) {
        Str s = content(c, i);
        if (c->role[i] == ROLE_USER && !(str_starts(s, "<tool_response>") && str_ends(s, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->role[i] != ROLE_ASSISTANT) {  // the first system message's turn is the same
            out_cat(c->out, "<|im_start|>", c->m[i].role, "\n", c->m[i].content, "<|im_end|>\n", NULL);
            continue;
        }
        Str text = content(c, i), reasoning = {"", 0};
        if (str_has(text, "</think>")) {
            reasoning = lstrip_char(split_last(rstrip_char(split_first(text, "</think>"), '\n'), "<think>"), '\n');
            text = lstrip_char(split_last(text, "</think>"), '\n');
        }
        out_cstr(c->out, "<|im_start|>assistant\n");
        if (i > last_query && (i == c->n - 1 || reasoning.n > 0)) {
            out_cstr(c->out, "<think>\n");
            out_str(c->out, rstrip_char(lstrip_char(reasoning, '\n'), '\n'));
            out_cstr(c->out, "\n</think>\n\n");
            text = lstrip_char(text, '\n');
        }
        out_str(c->out, text);
        out_cstr(c->out, "<|im_end|>\n");
    }
    if (c->o->add_generation_prompt)
        out_cat(c->out, "<|im_start|>assistant\n", c->o->think ? "" : "<think>\n\n</think>\n\n", NULL);
}

// Mistral Nemo without tools:
//   {%- if messages[0]["role"] == "system" %} {%- set system_message = messages[0]["content"] %}
//       {%- set loop_messages = messages[1:] %} {%- else %} {%- set loop_messages = messages %}
//   {%- for message in loop_messages %} (ns.index counts them)
//       {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
//           {{- raise_exception("After the optional system message, conversation roles must
//               alternate user/assistant/user/assistant/...") }}
//   {{- bos_token }}
//   {%- for message in loop_messages %}
//       {%- if message["role"] == "user" %}
//           {%- if loop.last and system_message is defined %}
//               {{- "[INST]" + system_message + "\n\n" + message["content"] + "[/INST]" }}
//           {%- else %} {{- "[INST]" + message["content"] + "[/INST]" }}
//       {%- elif message["role"] == "assistant" %} {{- message["content"] + eos_token}}
//       {%- else %} {{- raise_exception("Only user and assistant roles are supported, with the
//           exception of an initial optional system message!") }}
static void render_mistral(Conv *c) {
    size_t first = c->role[0] == ROLE_SYSTEM;
    for (size_t i = first; i < c->n; i++)
        if ((c->role[i] == ROLE_USER) != ((i - first) % 2 == 0)) {
            c->raised = "After the optional system message, conversation roles must alternate "
                        "user/assistant/user/assistant/...";
            return;
        }
    out_cstr(c->out, c->o->bos);
    for (size_t i = first; i < c->n; i++) {
        if (c->role[i] == ROLE_USER) {
            out_cstr(c->out, "[INST]");
            if (i == c->n - 1 && first) out_cat(c->out, c->m[0].content, "\n\n", NULL);
            out_cat(c->out, c->m[i].content, "[/INST]", NULL);
        } else if (c->role[i] == ROLE_ASSISTANT) {
            out_cat(c->out, c->m[i].content, c->o->eos, NULL);
        } else {
            c->raised = "Only user and assistant roles are supported, with the exception of an "
                        "initial optional system message!";
            return;
        }
    }
}

// {% for message in messages %}{% if message['role'] == 'system' and message['content'] %}
// {{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}
// {{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}
// {{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}
// {% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
static void render_phi3(Conv *c) {
    for (size_t i = 0; i < c->n; i++)
        if (c->role[i] != ROLE_SYSTEM || c->m[i].content[0])
            out_cat(c->out, "<|", c->m[i].role, "|>\n", c->m[i].content, "<|end|>\n", NULL);
    out_cstr(c->out, c->o->add_generation_prompt ? "<|assistant|>\n" : c->o->eos);
}

// {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not
// supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') !=
// (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate
// user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}
// {% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}
// {{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}
// {% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}
static void render_gemma(Conv *c) {
    if (c->role[0] == ROLE_SYSTEM) {
        c->raised = "System role not supported";
        return;
    }
    out_cstr(c->out, c->o->bos);
    for (size_t i = 0; i < c->n; i++) {
        if ((c->role[i] == ROLE_USER) != (i % 2 == 0)) {
            c->raised = MSG_ALTERNATE;
            return;
        }
        const char *role = c->role[i] == ROLE_ASSISTANT ? "model" : c->m[i].role;
        out_cat(c->out, "<start_of_turn>", role, "\n", NULL);
        out_str(c->out, py_strip(content(c, i)));
        out_cstr(c->out, "<end_of_turn>\n");
    }
    if (c->o->add_generation_prompt) out_cstr(c->out, "<start_of_turn>model\n");
}

// Gemma 3 (google/gemma-3-4b-it's template; string contents only, so no image parts):
// {{ bos_token }}
// {%- if messages[0]['role'] == 'system' -%}
//     {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
//     {%- set loop_messages = messages[1:] -%}
// {%- else -%}
//     {%- set first_user_prefix = "" -%}
//     {%- set loop_messages = messages -%}
// {%- endif -%}
// {%- for message in loop_messages -%}
//     {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
//         {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
//     {%- endif -%}
//     {%- if (message['role'] == 'assistant') -%}{%- set role = "model" -%}
//     {%- else -%}{%- set role = message['role'] -%}{%- endif -%}
//     {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
//     {{ message['content'] | trim }}
//     {{ '<end_of_turn>\n' }}
// {%- endfor -%}
// {%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}
static void render_gemma3(Conv *c) {
    size_t first = c->role[0] == ROLE_SYSTEM ? 1 : 0;
    out_cstr(c->out, c->o->bos);
    for (size_t i = first; i < c->n; i++) {
        if ((c->role[i] == ROLE_USER) != ((i - first) % 2 == 0)) {
            c->raised = MSG_ALTERNATE;
            return;
        }
        const char *role = c->role[i] == ROLE_ASSISTANT ? "model" : c->m[i].role;
        out_cat(c->out, "<start_of_turn>", role, "\n", NULL);
        if (first && i == first) out_cat(c->out, c->m[0].content, "\n\n", NULL);
        out_str(c->out, py_strip(content(c, i)));
        out_cstr(c->out, "<end_of_turn>\n");
    }
    if (c->o->add_generation_prompt) out_cstr(c->out, "<start_of_turn>model\n");
}

static const char SMOLLM3_THINK[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an "
    "assistant involves thoroughly exploring questions through a systematic thinking process "
    "before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, "
    "backtracking, and iteration to develop well-considered thinking process. Please structure "
    "your response into two main sections: Thought and Solution using the specified format: "
    "<think> Thought section </think> Solution section. In the Thought section, detail your "
    "reasoning process in steps. Each step should include detailed considerations such as "
    "analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the "
    "accuracy of the current steps, refining any errors, and revisiting previous steps. In the "
    "Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The "
    "Solution section should be logical, accurate, and concise and detail necessary steps "
    "needed to reach the conclusion.\n\n";

// Python's s.replace(old, ""), appended to o.
static void out_without(Out *o, Str s, const char *old) {
    for (size_t at; (at = str_find(s, old, 0)) != SIZE_MAX;) {
        out_str(o, (Str){s.p, at});
        s.p += at + strlen(old), s.n -= at + strlen(old);
    }
    out_str(o, s);
}

// SmolLM3 (see its template): the reasoning mode is /think with enable_thinking, else
// /no_think, unless the system message names one ("/no_think" first); the system turn holds
// metadata and the system message without "/no_think" and "/think", rstripped, or a default.
// System messages are not rendered otherwise; answers lose leading newlines and, in /no_think,
// get an empty think block.
static void render_smollm3(Conv *c) {
    int think = c->o->think != 0;
    Out custom = {0};
    if (c->role[0] == ROLE_SYSTEM) {
        Str sys = content(c, 0);
        if (str_has(sys, "/no_think")) think = 0;
        else if (str_has(sys, "/think")) think = 1;
        Out once = {0};
        out_without(&once, sys, "/no_think");
        out_without(&custom, (Str){once.p ? once.p : "", once.n}, "/think");
        if (once.oom) custom.oom = 1;
        free(once.p);
        if (custom.oom) {
            c->out->oom = 1;
            free(custom.p);
            return;
        }
    }
    Str instructions = py_rstrip((Str){custom.p ? custom.p : "", custom.n});
    out_cat(c->out, "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nReasoning Mode: ",
            think ? "/think" : "/no_think", "\n\n## Custom Instructions\n\n", NULL);
    if (instructions.n) {
        out_str(c->out, instructions);
        out_cstr(c->out, "\n\n");
    } else {
        out_cstr(c->out, think ? SMOLLM3_THINK : "You are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n");
    }
    free(custom.p);
    out_cstr(c->out, "<|im_end|>\n");
    for (size_t i = 0; i < c->n; i++) {
        if (c->role[i] == ROLE_USER) {
            out_cat(c->out, "<|im_start|>user\n", c->m[i].content, "<|im_end|>\n", NULL);
        } else if (c->role[i] == ROLE_ASSISTANT) {
            out_cat(c->out, "<|im_start|>assistant\n", think ? "" : "<think>\n\n</think>\n", NULL);
            out_str(c->out, lstrip_char(content(c, i), '\n'));
            out_cstr(c->out, "<|im_end|>\n");
        }
    }
    if (c->o->add_generation_prompt)
        out_cat(c->out, "<|im_start|>assistant\n", think ? "" : "<think>\n\n</think>\n", NULL);
}

// ----------------------------------------------------------------------------

static int fail(char *err, size_t cap, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int template_render(int kind, const ChatMsg *msgs, size_t n, const TplOptions *o, char **out,
                    size_t *out_len, char *err, size_t err_cap) {
    static const TplOptions none = {0};
    static void (*const render[TPL_COUNT])(Conv *) = {
        render_llama2, render_llama3, render_chatml, render_qwen3,
        render_mistral, render_phi3, render_gemma, render_smollm3, render_gemma3,
    };
    static const char *const role_names[] = {"system", "user", "assistant"};
    *out = NULL;
    *out_len = 0;
    if (kind < 0 || kind >= TPL_COUNT) return fail(err, err_cap, "unknown chat template kind %d", kind);
    if (n == 0 || !msgs) return fail(err, err_cap, "no messages to render");
    if (n > SIZE_MAX / sizeof(int)) return fail(err, err_cap, "out of memory");
    int *role = malloc(n * sizeof(int));
    if (!role) return fail(err, err_cap, "out of memory");
    for (size_t i = 0; i < n; i++) {
        role[i] = -1;
        for (int r = 0; msgs[i].role && r < 3; r++)
            if (strcmp(msgs[i].role, role_names[r]) == 0) role[i] = r;
        if (role[i] < 0 || !msgs[i].content) {
            int known = role[i] >= 0;
            free(role);
            if (!msgs[i].role) return fail(err, err_cap, "message %zu has no role", i + 1);
            if (!known)
                return fail(err, err_cap, "message %zu: unknown role \"%.40s\" (system, user or assistant)", i + 1,
                            msgs[i].role);
            return fail(err, err_cap, "message %zu (%s) has no content", i + 1, msgs[i].role);
        }
    }
    TplOptions opt = o ? *o : none;  // no NULL strings past here: out_cat stops at NULL
    if (!opt.bos) opt.bos = "";
    if (!opt.eos) opt.eos = "";
    if (!opt.date) opt.date = "26 Jul 2024";  // the template's own default (no strftime_now)
    Out text = {0};
    Conv c = {msgs, n, role, &opt, &text, NULL};
    render[kind](&c);
    free(role);
    if (c.raised || text.oom) {
        free(text.p);
        return c.raised ? fail(err, err_cap, "%s", c.raised) : fail(err, err_cap, "out of memory");
    }
    if (!text.p && !(text.p = calloc(1, 1))) return fail(err, err_cap, "out of memory");
    *out = text.p;
    *out_len = text.n;
    return 0;
}

// ----------------------------------------------------------------------------
// detection

// The system text a ChatML template adds when a conversation has none: the rest of a string
// literal that starts '<|im_start|>system\n' and goes on with text (not the closing quote, as
// where the conversation's own system message follows), up to <|im_end|>, unescaped as Jinja
// reads a literal. Returns 1 and the text in buf, 0 if there is none, -1 if it does not fit
// or is not a plain literal.
static int chatml_default_system(Str t, char *buf, size_t cap) {
    static const char head[] = "<|im_start|>system";
    const size_t hn = sizeof head - 1;
    for (size_t at; (at = str_find(t, head, 0)) != SIZE_MAX; t.p += at + hn, t.n -= at + hn) {
        if (at == 0 || (t.p[at - 1] != '\'' && t.p[at - 1] != '"')) continue;
        char quote = t.p[at - 1];
        Str rest = {t.p + at + hn, t.n - at - hn};
        size_t nl = str_starts(rest, "\\n") ? 2 : str_starts(rest, "\n") ? 1 : 0;
        if (nl == 0 || rest.n == nl || rest.p[nl] == quote) continue;
        rest.p += nl, rest.n -= nl;
        size_t end = str_find(rest, "<|im_end|>", 0), len = 0;
        if (end == SIZE_MAX) return -1;
        for (size_t i = 0; i < end; i++) {
            char ch = rest.p[i];
            if (ch == quote) return -1;  // the literal ends before <|im_end|>
            if (ch == '\\') {
                if (++i == end) return -1;
                switch (rest.p[i]) {
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                case '\\': case '\'': case '"': ch = rest.p[i]; break;
                default: return -1;
                }
            }
            if (len + 1 >= cap) return -1;
            buf[len++] = ch;
        }
        buf[len] = '\0';
        return 1;
    }
    return 0;
}

const char *template_today(const char *jinja, size_t len, char *buf, size_t cap) {
    static const char key[] = "strftime_now";
    if (!jinja || cap == 0) return NULL;
    int asks = 0;
    for (size_t i = 0; !asks && i + sizeof key - 1 <= len; i++)
        asks = memcmp(jinja + i, key, sizeof key - 1) == 0;
    time_t now = time(NULL);
    struct tm tm;
    if (!asks || now == (time_t)-1 || !localtime_r(&now, &tm)) return NULL;
    return strftime(buf, cap, "%d %b %Y", &tm) > 0 ? buf : NULL;
}

int template_detect(const char *jinja, size_t len, char *default_system, size_t cap) {
    char dummy[TPL_SYSTEM_MAX];
    if (!default_system || cap == 0) default_system = dummy, cap = sizeof dummy;
    default_system[0] = '\0';
    if (!jinja) return -1;
    Str t = {jinja, len};
    if (str_has(t, "<|im_start|>") && str_has(t, "<|im_end|>")) {
        if (str_has(t, "Reasoning Mode: ") && str_has(t, "/no_think")) return TPL_SMOLLM3;
        if (str_has(t, "<think>"))
            return str_has(t, "enable_thinking") && str_has(t, "last_query_index") ? TPL_QWEN3 : -1;
        if (chatml_default_system(t, default_system, cap) >= 0) return TPL_CHATML;
        default_system[0] = '\0';
        return -1;
    }
    if (str_has(t, "<|start_header_id|>") && str_has(t, "<|eot_id|>"))
        return str_has(t, "Cutting Knowledge Date: December 2023") && str_has(t, "Today Date: ") &&
                       str_has(t, "date_string")
                   ? TPL_LLAMA3
                   : -1;  // Llama 3.0 (no system turn of its own), vision templates
    if (str_has(t, "<start_of_turn>") && str_has(t, "<end_of_turn>")) {
        if (str_has(t, "System role not supported")) return TPL_GEMMA;
        // Gemma 3's: the system text folded into the first user turn
        return str_has(t, "first_user_prefix") && str_has(t, "messages[0]['content'] + '\\n\\n'")
                   ? TPL_GEMMA3
                   : -1;
    }
    if (str_has(t, "[INST]") && str_has(t, "[/INST]")) {
        if (str_has(t, "<<SYS>>")) return TPL_LLAMA2;
        if (str_has(t, "[SYSTEM_PROMPT]") || str_has(t, "'[INST] ") || str_has(t, "\"[INST] ")) return -1;
        return str_has(t, "\"[INST]\" +") || str_has(t, "'[INST]' +") ? TPL_MISTRAL : -1;
    }
    // Phi-3.5: the headers are literals that end with the newline ('<|user|>\n' + ...)
    if (str_has(t, "<|end|>") && !str_has(t, "bos_token")) {
        static const char *const heads[] = {"<|user|>\\n'", "<|user|>\n'", "<|user|>\\n\"", "<|user|>\n\""};
        for (int i = 0; i < 4; i++)
            if (str_has(t, heads[i]) && str_has(t, "<|assistant|>")) return TPL_PHI3;
    }
    return -1;
}

// pretok.h: the pre-tokenizers of byte-level BPE vocabularies: the regexes that cut text into
// pieces before BPE merges within each piece.
//
// Contract: libc only, no allocation. Each kind is a hand-written matcher for one regex,
// written from the regex and checked against the `tokenizers` library (tests/test_pretok.c):
//
//   gpt-2      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama-bpe  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//              ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+              (Llama 3)
//   qwen2      as llama-bpe, with \p{N} one digit at a time instead of \p{N}{1,3}
//   smollm     each \p{N} character alone (tokenizers' Digits, individual_digits), then
//              gpt-2 within the text between them                                  (SmolLM)
//
// Names are GGUF's tokenizer.ggml.pre values. Classes are unicode.h's; an invalid UTF-8 byte
// is a character of class other.
#ifndef SEARCHLIGHT_PRETOK_H
#define SEARCHLIGHT_PRETOK_H

#include <stddef.h>

enum pretok_kind { PRETOK_GPT2, PRETOK_LLAMA3, PRETOK_QWEN2, PRETOK_SMOLLM, PRETOK_COUNT };

// The kind named `name` ("gpt-2", "llama-bpe", "qwen2", "smollm"), or -1.
int pretok_from_name(const char *name);
const char *pretok_name(int kind);

// The kind whose regex is exactly `regex` (as tokenizer.json's Split pre-tokenizer writes it:
// gpt-2, llama-bpe or qwen2), or -1.
int pretok_from_regex(const char *regex);

// The length in bytes of the first piece of s (n >= 1 bytes), between 1 and n: so a caller
// cuts text into pieces with `for (i = 0; i < n; i += pretok_next(kind, s + i, n - i))`.
size_t pretok_next(int kind, const char *s, size_t n);

#endif

// bytelevel.h: byte-level BPE vocabularies as GGUF and tokenizer.json write them, turned into a
// Tokenizer (tokenizer.h, kind TOK_BPE).
//
// Contract: libc only. Both formats write each normal token with GPT-2's byte-to-character
// mapping (a space is "Ġ"), control and user-defined tokens as plain text, and each merge rule
// as two such strings. The builder undoes the mapping, turns the merges into pairs of ids, and
// parses the result as a format-2 tokenizer section, so a vocabulary from either source meets
// the loader's checks. Errors print one line naming `path`; nothing here exits.
#ifndef SEARCHLIGHT_BYTELEVEL_H
#define SEARCHLIGHT_BYTELEVEL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct {
    const char *p;  // not NUL-terminated
    size_t len;
} BlStr;

// GPT-2's byte-to-character mapping, undone: bytes 33..126, 161..172 and 174..255 are written
// as themselves, the other 68 as U+0100..U+0143 in order. Converts the n bytes of UTF-8 at s
// to raw bytes at out (at most n). Returns their count, or -1 if s holds a character outside
// the mapping or is not valid UTF-8.
long bytelevel_decode(const char *s, size_t n, char *out);

// Builds t from n tokens (their strings and enum tok_type), n_merges merge rules (merges[2k]
// and merges[2k + 1], by rank), the pre-tokenizer (enum pretok_kind) and TOK_FLAG_* flags.
int bytelevel_tokenizer(Tokenizer *t, const BlStr *tokens, const uint8_t *types, size_t n,
                        const BlStr *merges, size_t n_merges, int pretok, uint32_t flags,
                        int bos_id, int eos_id, const char *path);

#endif

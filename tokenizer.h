// tokenizer.h: the two BPE tokenizers of the models we run.
//   - sentencepiece-style BPE (Llama 2, llama2.c models): merges by piece score, a dummy
//     prefix space, <0xXX> byte fallback;
//   - byte-level BPE (GPT-2 style: Llama 3, Qwen, SmolLM): a pre-tokenizer cuts the text
//     (tokenizer/pretok.h), then each piece's bytes merge by the rank of the merge rules.
//     Pieces are stored as raw bytes (export undoes GPT-2's byte-to-character mapping).
//
// Contract: libc only. Loads from llama2.c's tokenizer.bin or from the tokenizer section
// of a searchlight model file, and serializes to that section. Errors print one line
// naming the file and return a negative TOK_ERR_*; nothing here exits.
//
// Tokenizer section of a model file (little-endian), format 1 (sentencepiece only):
//   uint32 n_tokens                      (== the header's vocab_size)
//   uint32 max_token_len                 (longest piece, in bytes)
//   n_tokens times: float32 score, uint32 len, uint8 type, len bytes of the piece
// Format 2 (model files of version 2) adds, after max_token_len:
//   uint32 kind                          (enum tok_kind)
//   uint32 pretok                        (TOK_BPE: enum pretok_kind; else 0)
//   uint32 flags                         (TOK_FLAG_*: byte-level bits 0 and 4; sentencepiece
//                                         bits 1-3)
//   uint32 n_merges                      (TOK_BPE; else 0)
// then the n_tokens entries as in format 1, then n_merges times uint32 left, uint32 right:
// the merge rules in rank order, as token ids (left's piece + right's piece is a token).
#ifndef SEARCHLIGHT_TOKENIZER_H
#define SEARCHLIGHT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

// Token types, numbered as GGUF numbers them.
enum tok_type {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6,  // "<0xXX>": stands for one raw byte
};

enum tok_err {
    TOK_OK = 0,
    TOK_ERR_IO = -1,      // cannot open or read the file
    TOK_ERR_FORMAT = -2,  // malformed contents
    TOK_ERR_VOCAB = -3,   // token count differs from the model's vocab_size
    TOK_ERR_NOMEM = -4,
    TOK_ERR_SPACE = -5,   // the caller's token buffer is too small
};

// The longest piece we accept, in bytes. Real vocabularies stay under 64.
#define TOK_MAX_PIECE 4096

enum tok_kind { TOK_SPM = 0, TOK_BPE = 1 };
#define TOK_FLAG_IGNORE_MERGES 1u  // byte-level: a pre-tokenized piece that is a token is not merged
// byte-level: tokenizer.json's "NFC" normalizer (Qwen2's). The text between special tokens,
// which are found in the raw text first, is normalized to NFC (unicode_nfc) piece by piece,
// then pre-tokenized: as the `tokenizers` library does it for added tokens with normalized
// false (Qwen's). GGUF carries no normalizer and llama.cpp applies none: never set from GGUF.
#define TOK_FLAG_NFC 16u
// sentencepiece-style, as tokenizer.json's Metaspace pre-tokenizer does it (llama2.c's and the
// Llama 2 tokenizer.json's behaviour is none of these: a space always prepended, no split)
#define TOK_FLAG_PREFIX_FIRST 2u   // prepend a space unless the text starts with one
#define TOK_FLAG_PREFIX_NEVER 4u   // never prepend a space
#define TOK_FLAG_SPLIT 8u          // merges never cross a space: each space starts a piece
                                   // (with PREFIX_FIRST or PREFIX_NEVER, as Metaspace has it)

typedef struct {
    int vocab_size;
    int bos_id, eos_id;     // -1 when absent
    int max_token_len;
    char **pieces;          // (vocab_size) NUL-terminated, pointing into arena
    uint32_t *lens;         // (vocab_size) piece lengths in bytes
    float *scores;          // (vocab_size) merge priority: higher merges first
    uint8_t *types;         // (vocab_size) enum tok_type
    int byte_id[256];       // token whose piece is "<0xXX>" for byte XX, or -1
    int unk_id;             // fallback for a byte without a byte token (<unk>, else 0)
    uint32_t *table;        // open-addressing hash of pieces: slot -> id + 1, 0 empty
    uint32_t table_mask;
    char *arena;
    char byte_piece[256][2];  // decoded byte tokens, as 1-byte strings
    // byte-level BPE (kind TOK_BPE) only
    int kind;               // enum tok_kind
    int pretok;             // enum pretok_kind
    uint32_t flags;         // TOK_FLAG_*
    uint32_t n_merges;
    uint32_t *merges;       // (n_merges, 2) left and right token ids, by rank
    int *merged;            // (n_merges) id of left's piece + right's piece
    uint32_t *merge_table;  // open-addressing hash of (left, right): slot -> rank + 1, 0 empty
    uint32_t merge_mask;
    int *specials;          // control and user-defined tokens, matched in text as one id,
    int n_specials;         // longest first
} Tokenizer;

// Reads llama2.c's tokenizer.bin: uint32 max_token_len, then per token: float32 score,
// int32 len, bytes. The file must hold exactly vocab_size tokens.
int tokenizer_read_bin(Tokenizer *t, const char *path, int vocab_size, int bos_id, int eos_id);

// Parses the tokenizer section of a model file (buf of n bytes, from `path`), in section
// format 1 or 2 (the model file's version).
int tokenizer_parse(Tokenizer *t, const uint8_t *buf, size_t n, int format, int vocab_size,
                    int bos_id, int eos_id, const char *path);

// The oldest section format that can hold a tokenizer (1 for sentencepiece, 2 for byte-level
// BPE); the size of the serialized section in a format at least that (the model file's
// version), and the serializer (buf holds that many bytes).
int tokenizer_format(const Tokenizer *t);
size_t tokenizer_section_bytes(const Tokenizer *t, int format);
void tokenizer_write_section(const Tokenizer *t, int format, uint8_t *buf);

// Encodes len bytes of text into at most max_tokens ids (tokenizer_max_tokens(t, len) always
// suffice: len + 3, or 3 len + 3 with TOK_FLAG_NFC, as NFC may lengthen text up to three
// times), optional BOS, then
//   sentencepiece: the dummy-prefix space (for non-empty text; see TOK_FLAG_PREFIX_*), code
//     points or their byte fallbacks, merges by score (within each space-led piece with
//     TOK_FLAG_SPLIT);
//   byte-level BPE: control and user-defined tokens found in the text as their ids; the
//     text between them (normalized to NFC with TOK_FLAG_NFC) pre-tokenized, and each
//     piece's bytes merged by rank;
// then optional EOS. TOK_ERR_SPACE when max_tokens may be too few (checked before encoding,
// on the normalized length with TOK_FLAG_NFC).
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int bos, int eos,
                     int *tokens, size_t max_tokens, size_t *n_tokens);
size_t tokenizer_max_tokens(const Tokenizer *t, size_t len);

// The bytes of `token` as text follows `prev`: the space after BOS or at the start of the text
// (prev < 0) is stripped and a byte token becomes its byte (sentencepiece); a control token is
// empty (byte-level BPE).
// The result is not NUL-safe: use *len.
const char *tokenizer_decode(const Tokenizer *t, int prev, int token, size_t *len);

// Id of a piece, or -1.
int tokenizer_lookup(const Tokenizer *t, const char *s, size_t len);

void tokenizer_free(Tokenizer *t);

#endif

// fuzz_nfc: the NFC normalizer on arbitrary bytes, and byte-level BPE with TOK_FLAG_NFC
// (tests/fixtures/bpe-qwen2-nfc's tokenizer.json, Qwen2's layout). The normalized text is at
// most three times as long, NUL-terminated, keeps every invalid byte, and is its own NFC; the
// ids fit tokenizer_max_tokens and decode to the NFC of the input, byte for byte (when the input
// holds no special token).
#include "convert/hf.h"
#include "tokenizer/unicode.h"
#include "fuzz.h"

static Tokenizer tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (hf_tokenizer(&tok, "tests/fixtures/bpe-qwen2-nfc", 800, 1, 2, NULL) != 0 ||
        !(tok.flags & TOK_FLAG_NFC))
        abort();
    return 0;
}

static size_t invalid_bytes(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        k += cp == UNI_INVALID;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    char *once, *twice;
    size_t n1, n2;
    if (unicode_nfc(s, size, &once, &n1) != 0) return 0;  // out of memory
    if (n1 > 3 * size || once[n1] != '\0' || invalid_bytes(s, size) != invalid_bytes(once, n1))
        abort();
    if (unicode_nfc(once, n1, &twice, &n2) != 0) {
        free(once);
        return 0;
    }
    if (n2 != n1 || memcmp(once, twice, n1) != 0) abort();
    free(twice);
    size_t max = tokenizer_max_tokens(&tok, size), n = 0, got = 0;
    int *ids = malloc(max * sizeof *ids);
    int special = 0;  // "<|" starts both special tokens
    for (size_t i = 0; i + 1 < size && !special; i++) special = data[i] == '<' && data[i + 1] == '|';
    if (ids && tokenizer_encode(&tok, s, size, 0, 0, ids, max, &n) == TOK_OK) {
        if (n > max) abort();
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *p = tokenizer_decode(&tok, i ? ids[i - 1] : -1, ids[i], &len);
            if (!special && (got + len > n1 || memcmp(once + got, p, len) != 0)) abort();
            got += len;
        }
        if (!special && got != n1) abort();
    }
    free(ids);
    free(once);
    return 0;
}

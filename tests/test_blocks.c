// test_blocks.c: ggml's block types (kernels/blocks.c) against the gguf package's numpy
// dequantization, bit for bit (tests/fixtures/blocks.bin, made by make_blocks.py: random
// blocks with zero, extreme and subnormal f16 scales), and the GGUF reader's use of them.
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/blocks.h"
#include "tests/helpers.h"

Test(blocks, dequantize_matches_gguf_py_bitwise) {
    size_t n;
    uint8_t *b = (uint8_t *)read_all(fixture("blocks.bin"), &n);
    cr_assert(b);
    size_t at = 0;
    int types = 0;
    while (at < n) {
        uint32_t h[4];
        cr_assert(at + 16 <= n);
        memcpy(h, b + at, 16);
        at += 16;
        size_t elems = 0, bytes = 0;
        cr_assert(ggml_block_info(h[0], &elems, &bytes), "type %u is a block type", h[0]);
        cr_assert(elems == h[1] && bytes == h[2], "type %u: %zu weights in %zu bytes, gguf says "
                  "%u in %u", h[0], elems, bytes, h[1], h[2]);
        size_t nb = h[3], want_at = at + nb * bytes;
        cr_assert(want_at + nb * elems * 4 <= n);
        float *got = malloc(nb * elems * sizeof(float));
        ggml_dequantize(h[0], b + at, nb, got);
        for (size_t i = 0; i < nb * elems; i++) {
            uint32_t g, w;
            memcpy(&g, got + i, 4);
            memcpy(&w, b + want_at + 4 * i, 4);
            cr_assert_eq(g, w, "type %u, block %zu, weight %zu: %08x (%g), gguf.quants %08x",
                         h[0], i / elems, i % elems, g, (double)got[i], w);
        }
        free(got);
        at = want_at + nb * elems * 4;
        types++;
    }
    cr_assert_eq(types, 12, "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K, IQ4_NL, IQ4_XS");
    free(b);
}

Test(blocks, other_types_are_not_block_types) {
    size_t e, b;
    const uint32_t others[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, 9, 15, 16, 17, 18, 19, 21, 22, 29, 34, 35, 39, 1000};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        cr_assert(!ggml_block_info(others[i], &e, &b), "type %u", others[i]);
}

// ggml_levels32 (the integer levels the 32-weight kernels multiply) times the block's d, plus its
// min, is the dequantized weight, bit for bit, on every fixture block of those types.
Test(blocks, levels32_are_the_dequantized_weights) {
    size_t n;
    uint8_t *b = (uint8_t *)read_all(fixture("blocks.bin"), &n);
    cr_assert(b);
    int seen = 0;
    for (size_t at = 0; at < n;) {
        uint32_t h[4];
        memcpy(h, b + at, 16);
        at += 16;
        const uint8_t *blocks = b + at;
        at += (size_t)h[3] * h[2] + (size_t)h[3] * h[1] * 4;
        if (h[1] != 32 || h[0] == GGML_TYPE_Q8_0) continue;
        seen++;
        for (size_t k = 0; k < h[3]; k++) {
            const uint8_t *bp = blocks + k * h[2];
            float y[32];
            int8_t q[32];
            ggml_dequantize(h[0], bp, 1, y);
            int has_min = ggml_levels32(h[0], bp, q);
            for (int i = 0; i < 32; i++) {
                float v = has_min ? ggml_f16(bp) * (float)q[i] + ggml_f16(bp + 2)
                                  : ggml_f16(bp) * (float)q[i];
                cr_assert(memcmp(&v, &y[i], 4) == 0, "type %u block %zu weight %d: %g vs %g",
                          h[0], k, i, (double)v, (double)y[i]);
            }
        }
    }
    cr_assert_eq(seen, 5, "Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL");
    free(b);
}

// tests/test_kernels.c: the plain kernels and the sampler against hand-computed values.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/simd.h"
#include "runtime/sampler.h"
#include "helpers.h"

#define EPS 1e-5f

static void assert_near(const float *got, const float *want, size_t n, float eps) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(got[i] - want[i]) <= eps * fmaxf(1.0f, fabsf(want[i])),
                  "element %zu: got %.7g, want %.7g", i, got[i], want[i]);
}

Test(kernels, rmsnorm) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 2}, o[4];
    rmsnorm(o, x, w, 4, 0.0f);  // mean square 7.5
    float want[4] = {0.3651484f, 0.7302967f, 1.0954451f, 2.9211869f};
    assert_near(o, want, 4, EPS);
    rmsnorm(x, x, w, 4, 0.0f);  // in place
    assert_near(x, want, 4, EPS);
    float z[2] = {0, 0}, one[2] = {1, 1};
    rmsnorm(o, z, one, 2, 1e-5f);  // eps keeps a zero vector finite
    cr_assert(o[0] == 0.0f && o[1] == 0.0f);
}

Test(kernels, matvec) {
    float w[6] = {1, 2, 3, 4, 5, 6}, x[2] = {2, 0.5f}, y[3];
    matvec(y, x, w, 2, 3);
    float want[3] = {3, 8, 13};
    assert_near(y, want, 3, EPS);
}

Test(kernels, softmax) {
    float x[3] = {1, 2, 3};
    softmax(x, 3);
    float want[3] = {0.09003057f, 0.24472847f, 0.66524096f};
    assert_near(x, want, 3, EPS);
    float big[2] = {1000, 1001};  // no overflow: the max is subtracted
    softmax(big, 2);
    float want_big[2] = {0.26894142f, 0.73105858f};
    assert_near(big, want_big, 2, EPS);
}

Test(kernels, rope) {
    float v[4] = {1, 0, 0, 1};
    RopeParams r = {.theta = 10000.0f};
    rope(v, 1, 4, 0, &r);  // position 0: identity
    float id[4] = {1, 0, 0, 1};
    assert_near(v, id, 4, EPS);
    // position 3: pair 0 turns by 3 rad, pair 1 by 3 * 10000^(-1/2) = 0.03 rad
    rope(v, 1, 4, 3, &r);
    float want[4] = {cosf(3.0f), sinf(3.0f), -sinf(0.03f), cosf(0.03f)};
    assert_near(v, want, 4, EPS);
    // two heads rotate the same way; theta comes from the caller
    float two[4] = {1, 0, 1, 0};
    RopeParams r5 = {.theta = 500000.0f};
    rope(two, 2, 2, 1, &r5);
    float want2[4] = {cosf(1.0f), sinf(1.0f), cosf(1.0f), sinf(1.0f)};
    assert_near(two, want2, 4, EPS);
}

// RoPE scaling: transformers' linear and llama3 rules, by hand for head_dim 4 (pair
// frequencies 1 and 0.01, wavelengths 2 pi and 200 pi).
Test(kernels, rope_scaling) {
    RopeParams lin = {.theta = 10000.0f, .scaling = SL_ROPE_LINEAR, .factor = 4.0f};
    cr_assert_float_eq(rope_freq(&lin, 0, 4), 0.25f, 1e-7f);
    cr_assert_float_eq(rope_freq(&lin, 2, 4), 0.0025f, 1e-9f);
    // orig_ctx 100, low 1, high 4: long wavelengths > 100 are divided, short ones < 25 kept
    RopeParams l3 = {10000.0f, SL_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 100, NULL};
    cr_assert_float_eq(rope_freq(&l3, 0, 4), 1.0f, 1e-7f);
    cr_assert_float_eq(rope_freq(&l3, 2, 4), 0.00125f, 1e-9f);
    // orig_ctx 1000: 200 pi lies between 250 and 1000, so it is smoothed:
    // s = (1000 / (200 pi) - 1) / 3, f = (1 - s) 0.01 / 8 + s 0.01
    l3.orig_ctx = 1000;
    double s = (1000.0 / (200.0 * 3.14159265358979323846) - 1.0) / 3.0, want = (1 - s) * 0.01 / 8 + s * 0.01;
    cr_assert_float_eq(rope_freq(&l3, 2, 4), (float)want, 1e-8f, "%.9g", rope_freq(&l3, 2, 4));
    // divisors (a GGUF's rope_freqs): pair j's frequency divided by divisors[j]
    const float div[2] = {2.0f, 8.0f};
    RopeParams d = {.theta = 10000.0f, .scaling = SL_ROPE_FREQS, .divisors = div};
    cr_assert_float_eq(rope_freq(&d, 0, 4), 0.5f, 1e-7f);
    cr_assert_float_eq(rope_freq(&d, 2, 4), 0.00125f, 1e-9f);
    RopeParams none = {.theta = 10000.0f};
    cr_assert_eq(rope_freq(&none, 2, 4), 1.0f / powf(10000.0f, 0.5f), "no scaling: unchanged");
}

Test(kernels, attention_head) {
    // head_dim 2; scores 0 and 2 / sqrt(2)
    float q[2] = {1, 0}, k[4] = {0, 0, 2, 0}, v[4] = {1, 0, 0, 1}, out[2], att[2];
    attention_head(out, att, q, k, v, 0, 2);  // one position: out = v_0
    float v0[2] = {1, 0};
    assert_near(out, v0, 2, EPS);
    cr_assert_float_eq(att[0], 1.0f, EPS);
    attention_head(out, att, q, k, v, 1, 2);
    float want[2] = {0.1955703f, 0.8044297f};  // 1 / (1 + e^sqrt(2))
    assert_near(att, want, 2, EPS);
    assert_near(out, want, 2, EPS);
}

Test(kernels, swiglu) {
    float h[3] = {0, 1, -1}, u[3] = {2, 2, 2};
    swiglu(h, u, 3);
    float want[3] = {0, 1.4621172f, -0.5378828f};
    assert_near(h, want, 3, EPS);
}

// ----------------------------------------------------------------------------
// sampler

// simd.h's software fused multiply-add (the plain build's, for the block types and attention)
// against libm's fmaf, correctly rounded on every platform, bit for bit: random operands of
// every magnitude, products that cancel c, sums that land on float midpoints (where rounding
// the double sum again would err), subnormal results, infinities and NaN.
static uint64_t fma_rng = 88172645463325252ull;
static uint32_t fma_next(void) {
    fma_rng ^= fma_rng << 13, fma_rng ^= fma_rng >> 7, fma_rng ^= fma_rng << 17;
    return (uint32_t)(fma_rng >> 11);
}
static void fma_check(float a, float b, float c) {
    float want = fmaf(a, b, c), got = fma32_soft(a, b, c);
    int same = f32_bits(want) == f32_bits(got) || (isnan(want) && isnan(got));
    cr_assert(same, "fma32_soft(%a, %a, %a) = %a, fmaf %a", (double)a, (double)b, (double)c,
              (double)got, (double)want);
}
Test(kernels, fma32_soft_is_fused) {
    for (int i = 0; i < 2000000; i++) {
        float a, b, c;
        uint32_t r = fma_next();
        if (r % 4 == 0) {  // any bits at all
            a = f32_from_bits(fma_next()), b = f32_from_bits(fma_next()), c = f32_from_bits(fma_next());
        } else {  // like the kernels' operands: close magnitudes, so the sum often rounds
            a = (float)((int32_t)fma_next() % 65025), b = ldexpf((float)(fma_next() % 16777216), -30);
            c = ldexpf((float)(int32_t)fma_next(), -(int)(fma_next() % 40));
            if (r % 4 == 2) c = -a * b + ldexpf((float)(fma_next() % 8) - 4, -(int)(fma_next() % 150));
            if (r % 4 == 3) {  // a * b close to half an ulp of c: the double sum lands on a float
                int e = (int)(fma_next() % 60) - 30;  // midpoint in ~3% of these (~10^4 cases:
                c = ldexpf(1.0f + (float)(fma_next() % 8388608) * 0x1p-23f, e);  // rounding the
                a = 1.0f + (float)(fma_next() % 8388608) * 0x1p-23f;  // double sum again would
                b = (float)(ldexp(1.0, e - 24) / a) * (fma_next() % 2 ? 1.0f : -1.0f);  // err)
            }
        }
        fma_check(a, b, c);
    }
    fma_check(0x1p-30f, 0x1p-30f, 1.0f);
    fma_check(1.0f + 0x1p-23f, 1.0f + 0x1p-23f, -(1.0f + 0x1p-22f));
    fma_check(0x1p-100f, 0x1p-30f, 0x1p-126f);  // subnormal territory
    fma_check(0x1p-140f, 0x1p-10f, -0x1p-149f);
    fma_check(INFINITY, 0.0f, 1.0f), fma_check(1e38f, 10.0f, 0.0f), fma_check(NAN, 1.0f, 1.0f);
}

Test(sampler, greedy_is_argmax) {
    Sampler s;
    cr_assert_eq(sampler_build(&s, 5, 0.0f, 0.9f, 0, 7), 0);
    float logits[5] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f};
    cr_assert_eq(sampler_sample(&s, logits), 1, "first maximum wins");
    sampler_free(&s);
}

static void draw(int *out, int n, float temp, float topp, int topk, uint64_t seed) {
    Sampler s;
    cr_assert_eq(sampler_build(&s, 4, temp, topp, topk, seed), 0);
    for (int i = 0; i < n; i++) {
        float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
        out[i] = sampler_sample(&s, logits);
    }
    sampler_free(&s);
}

Test(sampler, same_seed_same_tokens) {
    int a[200], b[200], c[200];
    draw(a, 200, 1.0f, 0.0f, 0, 42);
    draw(b, 200, 1.0f, 0.0f, 0, 42);
    draw(c, 200, 1.0f, 0.0f, 0, 43);
    cr_assert(memcmp(a, b, sizeof a) == 0, "same seed, same draws");
    cr_assert(memcmp(a, c, sizeof a) != 0, "another seed, other draws");
}

Test(sampler, frequencies_follow_probabilities) {
    enum { N = 20000 };
    static int d[N];
    draw(d, N, 1.0f, 1.0f, 0, 1);
    int count[4] = {0};
    for (int i = 0; i < N; i++) count[d[i]]++;
    float want[4] = {0.5f, 0.3f, 0.15f, 0.05f};
    for (int k = 0; k < 4; k++)
        cr_assert(fabsf((float)count[k] / N - want[k]) < 0.015f, "token %d: %d of %d", k,
                  count[k], N);
}

Test(sampler, top_p_and_top_k_cut_the_tail) {
    enum { N = 5000 };
    static int d[N];
    draw(d, N, 1.0f, 0.75f, 0, 3);  // nucleus: 0.5 + 0.3 > 0.75 keeps tokens 0 and 1
    for (int i = 0; i < N; i++) cr_assert(d[i] <= 1, "top-p drew token %d", d[i]);
    draw(d, N, 1.0f, 0.0f, 3, 3);  // top-3
    int seen2 = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(d[i] <= 2, "top-k drew token %d", d[i]);
        seen2 += d[i] == 2;
    }
    cr_assert(seen2 > 0, "the third token is still drawn");
    draw(d, N, 5.0f, 0.0f, 1, 3);  // top-1 is greedy at any temperature
    for (int i = 0; i < N; i++) cr_assert_eq(d[i], 0);
    draw(d, N, 1.0f, 0.0001f, 0, 3);  // a tiny nucleus keeps the most likely token only
    for (int i = 0; i < N; i++) cr_assert_eq(d[i], 0);
}

Test(sampler, random_f32_in_unit_interval) {
    uint64_t st = 99;
    for (int i = 0; i < 100000; i++) {
        float r = random_f32(&st);
        cr_assert(r >= 0.0f && r < 1.0f);
    }
}

// tests/test_sampler.c: the llama.cpp-style sampling steps (min-p, the repetition penalty)
// on hand-made logits, and through `run` on the committed default model: the defaults give
// the text the sampler gave before these steps existed, byte for byte, and bad values of the
// new flags are usage errors. The suite runs from the repository root, as make test does.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "runtime/sampler.h"

#define DEFAULT "models/kjv.slm"

// ----------------------------------------------------------------------------
// min-p

// A hand-made distribution, its maximum not first; no ratio p_i / p_max lies near a P tried.
#define NP 8
static const float P8[NP] = {0.12f, 0.22f, 0.02f, 0.30f, 0.09f, 0.16f, 0.03f, 0.06f};

static void logits_of(float *l, const float *p, int n) {
    for (int i = 0; i < n; i++) l[i] = logf(p[i]) + 2.5f;  // unnormalized: any offset
}

Test(sampler, min_p_keeps_exactly_p_times_pmax) {
    const float ps[] = {0.05f, 0.15f, 0.25f, 0.35f, 0.5f, 0.6f, 0.75f, 0.9f, 0.99f};
    float l[NP];
    logits_of(l, P8, NP);
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        unsigned char keep[NP];
        int kept = sampler_min_p_set(l, NP, ps[k], keep), want_kept = 0;
        for (int i = 0; i < NP; i++) {
            int want = (double)P8[i] >= (double)ps[k] * 0.30;
            want_kept += want;
            cr_assert_eq(keep[i], want, "min-p %g: token %d (p %g) kept %d, want %d", ps[k], i,
                         P8[i], keep[i], want);
        }
        cr_assert_eq(kept, want_kept, "min-p %g", ps[k]);
    }
}

Test(sampler, min_p_one_keeps_only_the_argmax_ties) {
    float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, 2.999999f, 0.0f};
    unsigned char keep[6];
    cr_assert_eq(sampler_min_p_set(l, 6, 1.0f, keep), 2);
    for (int i = 0; i < 6; i++) cr_assert_eq(keep[i], i == 1 || i == 3, "token %d", i);
    // drawn: the two ties only, both of them, at any temperature
    for (int t = 0; t < 2; t++) {
        Sampler s;
        cr_assert_eq(sampler_build(&s, 6, t ? 10.0f : 1.0f, 0.9f, 0, 5), 0);
        cr_assert_eq(sampler_set_min_p(&s, 1.0f), 0);
        int seen[6] = {0};
        for (int d = 0; d < 2000; d++) {
            float x[6];
            memcpy(x, l, sizeof x);
            seen[sampler_sample(&s, x)]++;
        }
        cr_assert(seen[1] > 0 && seen[3] > 0 && seen[1] + seen[3] == 2000,
                  "temperature %s: draws %d %d %d %d %d %d", t ? "10" : "1", seen[0], seen[1],
                  seen[2], seen[3], seen[4], seen[5]);
        sampler_free(&s);
    }
}

// Draws n tokens from P8 with these settings; counts them per token.
static void draw_p8(int *count, int n, float temp, float top_p, int top_k, float min_p) {
    Sampler s;
    cr_assert_eq(sampler_build(&s, NP, temp, top_p, top_k, 11), 0);
    cr_assert_eq(sampler_set_min_p(&s, min_p), 0);
    memset(count, 0, NP * sizeof *count);
    for (int d = 0; d < n; d++) {
        float l[NP];
        logits_of(l, P8, NP);
        count[sampler_sample(&s, l)]++;
    }
    sampler_free(&s);
}

// Through sampler_sample: only the kept tokens are drawn, each in proportion to its
// probability renormalized over them; at another temperature the set is the same (min-p is
// measured before the temperature, as in llama.cpp).
Test(sampler, min_p_draws_renormalized) {
    enum { N = 40000 };
    int c[NP];
    draw_p8(c, N, 1.0f, 0.0f, 0, 0.35f);  // keeps 0.30, 0.22, 0.16, 0.12: mass 0.80
    for (int i = 0; i < NP; i++) {
        float want = P8[i] >= 0.35f * 0.30f ? P8[i] / 0.80f : 0.0f;
        cr_assert(fabsf((float)c[i] / N - want) < 0.01f, "token %d: %d of %d, want %.3f", i,
                  c[i], N, want);
        if (want == 0.0f) cr_assert_eq(c[i], 0, "token %d drawn", i);
    }
    draw_p8(c, N, 4.0f, 0.0f, 0, 0.35f);
    for (int i = 0; i < NP; i++)
        cr_assert_eq(c[i] > 0, P8[i] >= 0.35f * 0.30f, "temperature 4: token %d: %d", i, c[i]);
    draw_p8(c, N, 1.0f, 0.9f, 0, 0.35f);  // llama2.c's top-p path, then min-p
    for (int i = 0; i < NP; i++)
        cr_assert_eq(c[i] > 0, P8[i] >= 0.35f * 0.30f, "top-p 0.9: token %d: %d", i, c[i]);
}

// min-p comes after top-k and top-p (llama.cpp's order): the tokens drawn are those both keep.
Test(sampler, min_p_after_top_k_and_top_p) {
    enum { N = 5000 };
    int c[NP];
    draw_p8(c, N, 1.0f, 0.0f, 3, 0.6f);  // top-3 {3, 1, 5}; min-p 0.6 leaves {3, 1}
    for (int i = 0; i < NP; i++) cr_assert_eq(c[i] > 0, i == 3 || i == 1, "token %d: %d", i, c[i]);
    draw_p8(c, N, 1.0f, 0.0f, 2, 0.05f);  // top-2 {3, 1}; min-p 0.05 keeps all of them
    for (int i = 0; i < NP; i++) cr_assert_eq(c[i] > 0, i == 3 || i == 1, "token %d: %d", i, c[i]);
    draw_p8(c, N, 1.0f, 0.5f, 0, 0.75f);  // top-p {3, 1} (0.52 > 0.5); min-p 0.75 leaves {3}
    for (int i = 0; i < NP; i++) cr_assert_eq(c[i], i == 3 ? N : 0, "token %d: %d", i, c[i]);
    draw_p8(c, N, 1.0f, 0.5f, 0, 0.5f);  // top-p {3, 1}; min-p 0.5 keeps both
    for (int i = 0; i < NP; i++) cr_assert_eq(c[i] > 0, i == 3 || i == 1, "token %d: %d", i, c[i]);
}

// min-p 0 is off: the same draws as a sampler that never heard of it.
Test(sampler, min_p_zero_and_no_penalty_draw_as_before) {
    Sampler a, b;
    cr_assert_eq(sampler_build(&a, NP, 0.8f, 0.9f, 0, 21), 0);
    cr_assert_eq(sampler_build(&b, NP, 0.8f, 0.9f, 0, 21), 0);
    cr_assert_eq(sampler_set_min_p(&b, 0.0f), 0);
    cr_assert_eq(sampler_set_penalty(&b, 1.0f, 64), 0);
    for (int d = 0; d < 1000; d++) {
        float la[NP], lb[NP];
        logits_of(la, P8, NP);
        logits_of(lb, P8, NP);
        sampler_accept(&b, d % NP);
        cr_assert_eq(sampler_sample(&a, la), sampler_sample(&b, lb), "draw %d", d);
    }
    sampler_free(&a);
    sampler_free(&b);
}

// ----------------------------------------------------------------------------
// the repetition penalty

#define NV 10
static const float L10[NV] = {0.5f, 2.0f, 4.0f, -1.0f, 3.0f, 0.7f, -2.0f, 0.0f, 1.0f, -0.5f};

// The logits after accepting `ids` with penalty r over a window of last_n.
static void penalized(float *out, float r, int last_n, const int *ids, int n_ids) {
    Sampler s;
    cr_assert_eq(sampler_build(&s, NV, 1.0f, 0.9f, 0, 1), 0);
    cr_assert_eq(sampler_set_penalty(&s, r, last_n), 0);
    for (int i = 0; i < n_ids; i++) sampler_accept(&s, ids[i]);
    memcpy(out, L10, sizeof L10);
    sampler_penalize(&s, out);
    sampler_free(&s);
}

// Whether out is L10 with exactly the ids in `hit` penalized by r, once each.
static void expect_penalized(const float *out, float r, const char *hit, const char *what) {
    for (int i = 0; i < NV; i++) {
        float want = L10[i];
        if (strchr(hit, '0' + i)) want = want > 0.0f ? want / r : want * r;
        cr_assert(out[i] == want, "%s: logit %d is %.9g, want %.9g", what, i, out[i], want);
    }
}

Test(sampler, penalty_changes_exactly_the_window) {
    float out[NV];
    const float r = 1.3f;
    // last 4 of 1 2 3 3 5 1 are 3 3 5 1: 3 once (negative: times r), 5 and 1 (divided); 2
    // was seen before the window and stays as it is
    const int a[] = {1, 2, 3, 3, 5, 1};
    penalized(out, r, 4, a, 6);
    expect_penalized(out, r, "135", "window 4");
    cr_assert(out[3] == -1.0f * r && out[1] == 2.0f / r, "3 and 1 penalized once each");
    penalized(out, r, 6, a, 6);  // all of them
    expect_penalized(out, r, "1235", "window 6");
    penalized(out, r, 64, a, 6);  // a window longer than the context: all of it
    expect_penalized(out, r, "1235", "window 64");
    // 7 has logit 0: unchanged either way; 9 negative; the ring wraps many times
    const int b[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 2, 9, 7, 7};
    penalized(out, r, 3, b, 15);
    expect_penalized(out, r, "79", "window 3 after a wrap");
    penalized(out, 0.5f, 5, b, 15);  // r < 1 rewards repetition, same rule
    expect_penalized(out, 0.5f, "2479", "r 0.5");
    // off: window 0, or r 1; ids outside the vocabulary are ignored
    penalized(out, r, 0, a, 6);
    expect_penalized(out, r, "", "window 0");
    penalized(out, 1.0f, 4, a, 6);
    expect_penalized(out, 1.0f, "", "r 1");
    const int c[] = {-1, 3, NV, 1000};
    penalized(out, r, 4, c, 4);
    expect_penalized(out, r, "3", "ids out of range");
}

// Greedy takes the argmax of the penalized logits, and so does top-k 1 at any temperature.
Test(sampler, penalty_applies_to_greedy_and_sampling) {
    for (int mode = 0; mode < 2; mode++) {
        Sampler s;
        cr_assert_eq(sampler_build(&s, 4, mode ? 2.0f : 0.0f, 0.9f, mode ? 1 : 0, 3), 0);
        float l[4] = {3.0f, 2.9f, 1.0f, -4.0f};
        cr_assert_eq(sampler_sample(&s, l), 0, "no penalty yet");
        cr_assert_eq(sampler_set_penalty(&s, 1.1f, 8), 0);
        sampler_accept(&s, 0);
        float m[4] = {3.0f, 2.9f, 1.0f, -4.0f};  // 3 / 1.1 < 2.9
        cr_assert_eq(sampler_sample(&s, m), 1, "mode %d", mode);
        float n[4] = {-1.0f, -1.05f, -3.0f, -4.0f};  // -1 * 1.1 < -1.05
        cr_assert_eq(sampler_sample(&s, n), 1, "negative logits, mode %d", mode);
        sampler_free(&s);
    }
}

// ----------------------------------------------------------------------------
// run, on the committed default model

static void require_default(void) {
    cr_assert(file_exists(DEFAULT), DEFAULT " is missing: run the tests from the repository root");
}

// The output of `run` before --min-p and --repeat-penalty existed (commit f59bd9a).
static const struct {
    const char *args, *text;
} BEFORE[] = {
    {"-s 7 -n 60 -i 'And God said'",
     "And God said unto Saul, I pray thee, thou, and thine adversaries, to thy master. And David "
     "told David, saying, Thus saith the LORD unto a time.\n"
     "And Saul sent Nabth before Michael: and David maide it with Abash after king of Israel.\n"},
    {"-t 0 -n 60 -i 'And God said'",
     "And God said unto him, I pray thee, that thou mayest be a man of God, and thou shalt be a "
     "man of God, and thou shalt be a son of man, and thou shalt be a son of man, and thou shalt "
     "be a son of man, and thou shalt be a son of man:\nA\n"},
    {"-s 7 -n 60 -t 0.8 -p 0.95 -k 40 -i 'And God said'",
     "And God said unto David, I will not be upon my lord; but he shall take my wife as an oath "
     "of bread, and make my daughter upon his own head.\n"
     "And Jacob said to Jonah, Say unto thee, I pray you, I pray thee, and set the star in the\n"},
    {"-s 11 -n 60 -p 0 -t 1.2 -i 'In the beginning'",
     "In the beginning give judgment and glory.\n"
     "The LORD, from the LORD of hosts; is the sword of your idols; the God, and mine earth.\n"
     "O Jacob.\n"
     "Hear thine hand nor LORD, O Israel, my peace, thou hast laboured say, Praise me: turn "
     "back;\n"},
};

static char *run_kjv(const char *args) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s " DEFAULT " %s", bin_path("run"), args);
    cr_assert_eq(rc, 0, "run %s: exit %d: %s", args, rc, err);
    free(err);
    return out;
}

Test(sampler, cli_defaults_give_the_same_text_as_before, .init = require_default) {
    for (size_t i = 0; i < sizeof BEFORE / sizeof BEFORE[0]; i++) {
        char *out = run_kjv(BEFORE[i].args);
        cr_assert_str_eq(out, BEFORE[i].text, "run %s", BEFORE[i].args);
        free(out);
        char args[256];
        snprintf(args, sizeof args, "%s --min-p 0 --repeat-penalty 1 --repeat-last-n 64",
                 BEFORE[i].args);
        out = run_kjv(args);
        cr_assert_str_eq(out, BEFORE[i].text, "run %s", args);
        free(out);
    }
}

Test(sampler, cli_new_flags_take_effect, .init = require_default) {
    const char *greedy = BEFORE[1].text;
    // the penalty changes the greedy text; a window of 0 turns it off
    char *p = run_kjv("-t 0 -n 60 -i 'And God said' --repeat-penalty 1.3");
    cr_assert_str_neq(p, greedy, "the penalty changed nothing");
    cr_assert(strncmp(p, "And God said", 12) == 0, "%s", p);
    char *q = run_kjv("-t 0 -n 60 -i 'And God said' --repeat-penalty 1.3 --repeat-last-n 0");
    cr_assert_str_eq(q, greedy);
    free(q);
    // 60 positions: a window of the whole context (-1) is the same as 64
    q = run_kjv("-t 0 -n 60 -i 'And God said' --repeat-penalty 1.3 --repeat-last-n -1");
    cr_assert_str_eq(q, p);
    free(q), free(p);
    // min-p 1 keeps only the most likely token: greedy, at any temperature and seed
    p = run_kjv("-t 1.5 -s 3 -n 60 -i 'And God said' --min-p 1");
    cr_assert_str_eq(p, greedy);
    free(p);
    // min-p changes a sampled text
    p = run_kjv("-s 7 -n 60 -i 'And God said' --min-p 0.2");
    cr_assert_str_neq(p, BEFORE[0].text);
    free(p);
}

// Each bad value: exit 2, nothing on stdout, and one line saying what is wrong (the usage
// follows it, as for every flag).
Test(sampler, cli_bad_values_exit_2, .init = require_default) {
    static const char *const bad[][2] = {
        {"--min-p 1.5", "run: --min-p: 1.5 is out of range, expected 0..1"},
        {"--min-p -0.1", "run: --min-p: -0.1 is out of range, expected 0..1"},
        {"--min-p x", "run: --min-p: 'x' is not a number"},
        {"--min-p nan", "run: --min-p: nan is out of range, expected 0..1"},
        {"--min-p 0.5x", "run: --min-p: '0.5x' is not a number"},
        {"--min-p", "run: --min-p needs a value"},
        {"--repeat-penalty 0", "run: --repeat-penalty: 0 is out of range, expected a finite number > 0"},
        {"--repeat-penalty -1.1", "run: --repeat-penalty: -1.1 is out of range, expected a finite number > 0"},
        {"--repeat-penalty inf", "run: --repeat-penalty: inf is out of range, expected a finite number > 0"},
        {"--repeat-penalty nan", "run: --repeat-penalty: nan is out of range, expected a finite number > 0"},
        {"--repeat-penalty 1e-60", "run: --repeat-penalty: 1e-60 is out of range, expected a finite number > 0"},
        {"--repeat-penalty high", "run: --repeat-penalty: 'high' is not a number"},
        {"--repeat-last-n -5", "run: --repeat-last-n: -5 is out of range, expected -1..2147483647"},
        {"--repeat-last-n 2.5", "run: --repeat-last-n: '2.5' is not an integer"},
        {"--repeat-last-n 99999999999", "run: --repeat-last-n: 99999999999 is out of range, expected -1..2147483647"},
        {"--repeat-last-n", "run: --repeat-last-n needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out, *err;
        int rc = run_cmd(&out, &err, "%s " DEFAULT " -n 8 %s", bin_path("run"), bad[i][0]);
        cr_assert_eq(rc, 2, "'%s' exited %d: %s", bad[i][0], rc, err);
        cr_assert_str_eq(out, "", "'%s' printed to stdout", bad[i][0]);
        size_t len = strlen(bad[i][1]);
        cr_assert(strncmp(err, bad[i][1], len) == 0 && err[len] == '\n',
                  "'%s': the first line of stderr is not \"%s\": %s", bad[i][0], bad[i][1], err);
        int lines = 0;
        for (const char *s = err; (s = strstr(s, "run: ")); s++) lines += s == err || s[-1] == '\n';
        cr_assert_eq(lines, 1, "'%s': %d error lines: %s", bad[i][0], lines, err);
        free(out), free(err);
    }
    // the edges are accepted
    char *out = run_kjv("-n 8 --min-p 1 --repeat-penalty 0.01 --repeat-last-n -1");
    free(out);
    out = run_kjv("-n 8 --min-p 0 --repeat-penalty 3.4e38 --repeat-last-n 2147483647");
    free(out);
}

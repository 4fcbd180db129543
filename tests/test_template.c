// tests/test_template.c: chat templates rendered in C (app/template.c), against transformers.
//
// tests/fixtures/make_templates.py rendered conversations with the real templates of
// ../shared/templates through transformers' own renderer (apply_chat_template's jinja2) into
// templates.txt (its docstring gives the format): every case must come out byte for byte, or
// fail with the template's own message where it raises. The template files themselves are
// read from $SL_MODELS/../templates for template_detect (a missing one skips, or fails under
// CI=true, as model_file does).
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "app/template.h"

// The path of a real template file; skips the test (fails it in CI) when it is missing. A name
// with a "/" is a fixture's (tests/fixtures/tiny-gemma3/chat_template.jinja).
static const char *template_file(const char *name) {
    static char path[4096];
    if (strchr(name, '/')) return fixture(name);
    const char *models = getenv("SL_MODELS");
    snprintf(path, sizeof path, "%s/../templates/%s", models ? models : "../shared/models", name);
    if (!file_exists(path)) {
        const char *ci = getenv("CI");
        if (ci && strcmp(ci, "true") == 0) cr_assert_fail("%s is missing, and CI requires it", path);
        cr_skip_test("%s not found: this test needs ../shared/templates (set SL_MODELS)", path);
    }
    return path;
}

// ----------------------------------------------------------------------------
// the fixture: lines, and blobs written as "TAG LEN\n" + LEN bytes + "\n"

typedef struct {
    const char *p, *end;
} Cursor;

// The next line (without its newline) into line[cap]; 0 at the end.
static int next_line(Cursor *c, char *line, size_t cap) {
    if (c->p >= c->end) return 0;
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    cr_assert_not_null(nl, "templates.txt: a line without its newline");
    size_t n = (size_t)(nl - c->p);
    cr_assert_lt(n, cap, "templates.txt: a line too long: %.60s", c->p);
    memcpy(line, c->p, n);
    line[n] = '\0';
    c->p = nl + 1;
    return 1;
}

// The blob of LEN bytes after a "TAG ... LEN" line, as a NUL-terminated copy (caller frees).
static char *blob(Cursor *c, const char *line, size_t *len) {
    const char *sp = strrchr(line, ' ');
    cr_assert_not_null(sp, "templates.txt: no length in '%s'", line);
    size_t n = strtoul(sp + 1, NULL, 10);
    cr_assert(n < (size_t)(c->end - c->p) && c->p[n] == '\n', "templates.txt: bad blob in '%s'", line);
    char *b = malloc(n + 1);
    memcpy(b, c->p, n);
    b[n] = '\0';
    c->p += n + 1;
    if (len) *len = n;
    return b;
}

#define MAX_CONVS 32
#define MAX_MSGS 16
#define MAX_TEMPLATES 16

typedef struct {
    char name[32];
    size_t n;
    ChatMsg m[MAX_MSGS];
} Conv;

typedef struct {
    char file[128];
    int kind;
    char *bos, *eos, *system;  // system NULL: the template has no default system message
} Template;

typedef struct {
    Conv conv[MAX_CONVS];
    Template tpl[MAX_TEMPLATES];
    size_t n_conv, n_tpl;
    char *data;
    size_t len;
    Cursor cases;  // where the first case starts
} Fixture;

// Reads templates.txt up to its first case: the conversations and the templates (a template
// record's bos/eos/system come before its cases, so they are read as the cases go too).
static void fixture_open(Fixture *f) {
    memset(f, 0, sizeof *f);
    f->data = read_all(fixture("templates.txt"), &f->len);
    cr_assert_not_null(f->data, "tests/fixtures/templates.txt is missing (make_templates.py)");
    f->cases = (Cursor){f->data, f->data + f->len};
}

static void fixture_close(Fixture *f) {
    for (size_t i = 0; i < f->n_conv; i++)
        for (size_t j = 0; j < f->conv[i].n; j++) {
            free((char *)f->conv[i].m[j].role);
            free((char *)f->conv[i].m[j].content);
        }
    for (size_t i = 0; i < f->n_tpl; i++) free(f->tpl[i].bos), free(f->tpl[i].eos), free(f->tpl[i].system);
    free(f->data);
}

static const Conv *conv_named(const Fixture *f, const char *name) {
    for (size_t i = 0; i < f->n_conv; i++)
        if (strcmp(f->conv[i].name, name) == 0) return &f->conv[i];
    cr_assert_fail("templates.txt: no conversation %s", name);
    return NULL;
}

static const Template *template_named(const Fixture *f, const char *file) {
    for (size_t i = 0; i < f->n_tpl; i++)
        if (strcmp(f->tpl[i].file, file) == 0) return &f->tpl[i];
    cr_assert_fail("templates.txt: no template %s", file);
    return NULL;
}

// Called for each case of the fixture, with the template, conversation and options set.
typedef void (*case_fn)(const Template *t, const Conv *cv, const TplOptions *o, const char *what,
                        const char *want, size_t want_len, int want_err, void *ctx);

// Walks the whole fixture: conversations and templates are collected, cases handed to fn.
// Returns the number of cases.
static size_t fixture_walk(Fixture *f, case_fn fn, void *ctx) {
    Cursor c = f->cases;
    char line[512], tag[32], a[128], b[64], think[8];
    size_t cases = 0;
    Template *cur = NULL;
    while (next_line(&c, line, sizeof line)) {
        if (line[0] == '#' || line[0] == '\0') continue;
        cr_assert_eq(sscanf(line, "%31s", tag), 1);
        if (strcmp(tag, "conv") == 0) {
            cr_assert_lt(f->n_conv, MAX_CONVS);
            Conv *cv = &f->conv[f->n_conv++];
            cr_assert_eq(sscanf(line, "conv %31s %zu", cv->name, &cv->n), 2);
            cr_assert_leq(cv->n, MAX_MSGS);
            for (size_t i = 0; i < cv->n; i++) {
                char role[32];
                cr_assert(next_line(&c, line, sizeof line) && sscanf(line, "msg %31s", role) == 1,
                          "templates.txt: conv %s: a msg line expected", cv->name);
                cv->m[i].role = strdup(role);
                cv->m[i].content = blob(&c, line, NULL);
            }
        } else if (strcmp(tag, "template") == 0) {
            cr_assert_lt(f->n_tpl, MAX_TEMPLATES);
            cur = &f->tpl[f->n_tpl++];
            cr_assert_eq(sscanf(line, "template %127s %63s", cur->file, b), 2);
            cur->kind = template_by_name(b);
            cr_assert_geq(cur->kind, 0, "templates.txt: unknown family %s", b);
        } else if (strcmp(tag, "bos") == 0 || strcmp(tag, "eos") == 0 || strcmp(tag, "system") == 0) {
            cr_assert_not_null(cur, "templates.txt: %s before a template", tag);
            char **field = tag[0] == 'b' ? &cur->bos : tag[0] == 'e' ? &cur->eos : &cur->system;
            free(*field);
            *field = blob(&c, line, NULL);
        } else if (strcmp(tag, "case") == 0) {
            char conv[32];
            int gen, n_read = 0;
            cr_assert_eq(sscanf(line, "case %127s %31s %d %7s %n", a, conv, &gen, think, &n_read), 4);
            const char *date = line + n_read;
            const Template *t = template_named(f, a);
            const Conv *cv = conv_named(f, conv);
            TplOptions o = {.add_generation_prompt = gen, .think = think[0] == '1', .bos = t->bos,
                            .eos = t->eos, .default_system = t->system,
                            .date = strcmp(date, "-") == 0 ? NULL : date};
            cr_assert(next_line(&c, line, sizeof line), "templates.txt: a case without its result");
            size_t want_len;
            char *want = blob(&c, line, &want_len);
            char what[400];
            snprintf(what, sizeof what, "%s on %s, add_generation_prompt %d, enable_thinking %s, date %s",
                     t->file, conv, gen, think, date);
            fn(t, cv, &o, what, want, want_len, strncmp(line, "err ", 4) == 0, ctx);
            free(want);
            cases++;
        } else {
            cr_assert_fail("templates.txt: unknown record '%s'", line);
        }
    }
    return cases;
}

// ----------------------------------------------------------------------------

static void check_case(const Template *t, const Conv *cv, const TplOptions *o, const char *what,
                       const char *want, size_t want_len, int want_err, void *ctx) {
    size_t *failures = ctx;
    char *got = NULL, err[256] = "";
    size_t got_len = 0;
    int rc = template_render(t->kind, cv->m, cv->n, o, &got, &got_len, err, sizeof err);
    if (want_err) {
        cr_expect_eq(rc, -1, "%s: renders, where the template raises '%s'", what, want);
        cr_expect_null(got, "%s: no output on failure", what);
        cr_expect_str_eq(err, want, "%s: the template's message", what);
        if (rc != -1 || strcmp(err, want) != 0) ++*failures;
    } else if (rc != 0) {
        cr_expect_eq(rc, 0, "%s: fails: %s", what, err);
        ++*failures;
    } else {
        size_t i = 0;
        while (i < got_len && i < want_len && got[i] == want[i]) i++;
        int same = got_len == want_len && i == got_len;
        cr_expect(same, "%s: differs at byte %zu of %zu (got %zu bytes)\n  want ...%.80s\n  got  ...%.80s",
                  what, i, want_len, got_len, want + (i > 20 ? i - 20 : 0), got + (i > 20 ? i - 20 : 0));
        cr_expect_eq(got[got_len], '\0', "%s: NUL-terminated", what);
        if (!same) ++*failures;
    }
    free(got);
}

Test(template, fixture) {
    Fixture f;
    fixture_open(&f);
    size_t failures = 0, cases = fixture_walk(&f, check_case, &failures);
    cr_assert_gt(cases, 200, "templates.txt: %zu cases", cases);
    cr_assert_eq(failures, 0, "%zu of %zu cases differ", failures, cases);
    fixture_close(&f);
}

static void count_kinds(const Template *t, const Conv *cv, const TplOptions *o, const char *what,
                        const char *want, size_t want_len, int want_err, void *ctx) {
    (void)cv, (void)o, (void)what, (void)want, (void)want_len, (void)want_err;
    ((size_t *)ctx)[t->kind]++;
}

// Every family has cases (the fixture covers them all).
Test(template, fixture_covers_every_family) {
    Fixture f;
    fixture_open(&f);
    size_t per_kind[TPL_COUNT] = {0};
    fixture_walk(&f, count_kinds, per_kind);
    for (int k = 0; k < TPL_COUNT; k++) cr_expect_geq(per_kind[k], 20, "%s: %zu cases", template_name(k), per_kind[k]);
    fixture_close(&f);
}

// Each real template file is recognised as its family, with the default system text that its
// rendering shows (make_templates.py cut it from the template's output).
Test(template, detect_real_templates) {
    Fixture f;
    fixture_open(&f);
    fixture_walk(&f, count_kinds, (size_t[TPL_COUNT]){0});
    cr_assert_geq(f.n_tpl, 9);
    for (size_t i = 0; i < f.n_tpl; i++) {
        const Template *t = &f.tpl[i];
        size_t len;
        char *text = read_all(template_file(t->file), &len);
        cr_assert_not_null(text);
        char sys[TPL_SYSTEM_MAX];
        int kind = template_detect(text, len, sys, sizeof sys);
        cr_expect_eq(kind, t->kind, "%s: detected as %s, not %s", t->file, kind < 0 ? "none" : template_name(kind),
                     template_name(t->kind));
        cr_expect_str_eq(sys, t->system ? t->system : "", "%s: its default system text", t->file);
        cr_expect_eq(template_detect(text, len, NULL, 0), t->kind, "%s: without a buffer", t->file);
        if (t->system) {
            cr_expect_eq(template_detect(text, len, sys, strlen(t->system)), -1, "%s: too small a buffer", t->file);
            cr_expect_eq(template_detect(text, len, sys, strlen(t->system) + 1), t->kind, "%s: room", t->file);
        }
        // every prefix of it is read safely (under ASan: nothing past len)
        char *copy = malloc(len ? len : 1);
        for (size_t n = 0; n <= len; n += 1 + n / 64) {
            memcpy(copy, text, n);
            int k = template_detect(copy, n, sys, sizeof sys);
            cr_expect(k >= -1 && k < TPL_COUNT);
            cr_expect_lt(strlen(sys), sizeof sys);
        }
        free(copy), free(text);
    }
    fixture_close(&f);
}

Test(template, detect_made_up) {
    static const char *const made_up[] = {
        "",
        "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}",
        "<|im_start|>{{ x }}",                                             // half of ChatML
        "{{ '<|im_start|>' + m + '<|im_end|>' }}{{ '<think>' }}",          // a reasoning ChatML
        "{{ '<|start_header_id|>' + r + '<|end_header_id|>' + c + '<|eot_id|>' }}",  // Llama 3.0
        "{{ '[INST] ' + c + ' [/INST]' }}",                                // Mistral v0.1
        "{{ '[SYSTEM_PROMPT]' + s }}{{ '[INST]' + c + '[/INST]' }}",       // Mistral v7
        "<start_of_turn>{{ first_user_prefix }}<end_of_turn>",             // Gemma 3
        "{{ bos_token }}{{ '<|user|>\n' + c + '<|end|>\n<|assistant|>\n' }}",  // Phi-3 with bos
        "{{ '<|im_start|>system\\nBad \\x escape<|im_end|>' }}{{ '<|im_start|>' }}",
    };
    for (size_t i = 0; i < sizeof made_up / sizeof *made_up; i++) {
        char sys[64] = "x";
        cr_expect_eq(template_detect(made_up[i], strlen(made_up[i]), sys, sizeof sys), -1, "'%s'", made_up[i]);
        cr_expect_str_eq(sys, "", "'%s': no default system text", made_up[i]);
    }
    cr_expect_eq(template_detect(NULL, 0, NULL, 0), -1);
    // a plain ChatML template: no default system text
    const char *plain = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    char sys[64] = "x";
    cr_expect_eq(template_detect(plain, strlen(plain), sys, sizeof sys), TPL_CHATML);
    cr_expect_str_eq(sys, "");
    // escapes in the default system literal are read as Jinja reads them
    const char *esc = "{{ \"<|im_start|>system\\nSay \\\"hi\\\",\\tthen\\\\stop.<|im_end|>\\n\" }}";
    cr_expect_eq(template_detect(esc, strlen(esc), sys, sizeof sys), TPL_CHATML);
    cr_expect_str_eq(sys, "Say \"hi\",\tthen\\stop.");
    // random bytes, NULs included, and the markers among them
    uint64_t s = 0x7E3D;
    char buf[600];
    static const char *const marks[] = {"<|im_start|>", "<|im_end|>", "[INST]", "<|im_start|>system\\n",
                                        "'",            "\\",         "<|user|>\n'", "<start_of_turn>"};
    for (int round = 0; round < 2000; round++) {
        size_t n = test_rand(&s) % sizeof buf, at = 0;
        while (at < n) {
            if (test_rand(&s) % 4 == 0) {
                const char *m = marks[test_rand(&s) % 8];
                size_t k = strlen(m) < n - at ? strlen(m) : n - at;
                memcpy(buf + at, m, k), at += k;
            } else {
                buf[at++] = (char)test_rand(&s);
            }
        }
        char *exact = malloc(n ? n : 1);  // exactly n bytes: ASan sees any read past them
        memcpy(exact, buf, n);
        int k = template_detect(exact, n, sys, 1 + test_rand(&s) % sizeof sys);
        cr_expect(k >= -1 && k < TPL_COUNT);
        free(exact);
    }
}

Test(template, names) {
    for (int k = 0; k < TPL_COUNT; k++) {
        const char *name = template_name(k);
        cr_assert_not_null(name);
        cr_expect_eq(template_by_name(name), k, "%s", name);
        cr_expect_not_null(strstr(TPL_NAMES, name), "%s is in TPL_NAMES", name);
    }
    cr_expect_null(template_name(-1));
    cr_expect_null(template_name(TPL_COUNT));
    cr_expect_eq(template_by_name("llama"), -1);
    cr_expect_eq(template_by_name("Llama2"), -1);
    cr_expect_eq(template_by_name(""), -1);
    cr_expect_eq(template_by_name(NULL), -1);
}

// A failing render: -1, *out NULL, and a reason containing `want`.
static void expect_error(int kind, const ChatMsg *m, size_t n, const char *want) {
    char *out = (char *)1, err[160] = "";
    size_t len = 7;
    TplOptions o = {.add_generation_prompt = 1};
    int rc = template_render(kind, m, n, &o, &out, &len, err, sizeof err);
    cr_expect_eq(rc, -1, "%s: renders", template_name(kind));
    cr_expect_null(out);
    cr_expect_eq(len, 0);
    cr_expect_not_null(strstr(err, want), "%s: '%s' does not say '%s'", template_name(kind), err, want);
    cr_expect_null(strchr(err, '\n'), "one line");
}

Test(template, bad_input) {
    const ChatMsg one[] = {{"user", "Hi"}};
    for (int k = 0; k < TPL_COUNT; k++) {
        expect_error(k, one, 0, "no messages");
        expect_error(k, NULL, 0, "no messages");
        const ChatMsg tool[] = {{"user", "Hi"}, {"tool", "42"}};
        expect_error(k, tool, 2, "unknown role \"tool\"");
        const ChatMsg upper[] = {{"User", "Hi"}};
        expect_error(k, upper, 1, "unknown role \"User\"");
        const ChatMsg no_role[] = {{NULL, "Hi"}};
        expect_error(k, no_role, 1, "no role");
        const ChatMsg no_content[] = {{"user", "Hi"}, {"assistant", NULL}};
        expect_error(k, no_content, 2, "message 2 (assistant) has no content");
    }
    expect_error(-1, one, 1, "unknown chat template kind -1");
    expect_error(TPL_COUNT, one, 1, "unknown chat template kind");
    // where the templates raise
    const ChatMsg two_users[] = {{"user", "a"}, {"user", "b"}};
    expect_error(TPL_LLAMA2, two_users, 2, "Conversation roles must alternate");
    expect_error(TPL_GEMMA, two_users, 2, "Conversation roles must alternate");
    expect_error(TPL_MISTRAL, two_users, 2, "After the optional system message, conversation roles must alternate");
    const ChatMsg sys_first[] = {{"system", "s"}, {"user", "a"}};
    expect_error(TPL_GEMMA, sys_first, 2, "System role not supported");
    const ChatMsg sys_odd[] = {{"user", "a"}, {"system", "s"}, {"user", "b"}};
    expect_error(TPL_MISTRAL, sys_odd, 3, "Only user and assistant roles are supported");
    const ChatMsg assistant_first[] = {{"assistant", "a"}};
    expect_error(TPL_LLAMA2, assistant_first, 1, "Conversation roles must alternate");
    // err may be NULL, or too small: cut, NUL-terminated
    char *out = NULL, small[8];
    size_t len;
    cr_expect_eq(template_render(TPL_GEMMA, sys_first, 2, NULL, &out, &len, NULL, 0), -1);
    cr_expect_eq(template_render(TPL_GEMMA, sys_first, 2, NULL, &out, &len, small, sizeof small), -1);
    cr_expect_str_eq(small, "System ");
}

// By hand, as a reader's guide (the fixture is the reference): options NULL is all defaults,
// bos/eos NULL are empty, default_system NULL is plain ChatML, date NULL is Llama 3's default.
Test(template, examples) {
    const ChatMsg m[] = {{"system", "Be brief."}, {"user", "Hi"}};
    static const struct {
        int kind, gen;
        const char *want;
    } cases[] = {
        {TPL_CHATML, 1, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
        {TPL_LLAMA2, 0, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"},
        {TPL_LLAMA3, 1, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
                        "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                        "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {TPL_MISTRAL, 1, "[INST]Be brief.\n\nHi[/INST]"},
        {TPL_PHI3, 0, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n"},
        {TPL_QWEN3, 1, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                       "<|im_start|>assistant\n<think>\n\n</think>\n\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        TplOptions o = {.add_generation_prompt = cases[i].gen};
        char *out, err[128];
        size_t len;
        cr_assert_eq(template_render(cases[i].kind, m, 2, &o, &out, &len, err, sizeof err), 0, "%s", err);
        cr_expect_str_eq(out, cases[i].want, "%s", template_name(cases[i].kind));
        cr_expect_eq(len, strlen(cases[i].want));
        free(out);
    }
    // an empty rendering is still a string
    const ChatMsg empty_sys[] = {{"system", ""}};
    char *out;
    size_t len;
    cr_assert_eq(template_render(TPL_PHI3, empty_sys, 1, NULL, &out, &len, NULL, 0), 0);
    cr_expect_eq(len, 0);
    cr_expect_str_eq(out, "");
    free(out);
}

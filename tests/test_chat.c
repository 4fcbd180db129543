// tests/test_chat.c: run -m chat end to end: the ids a 3-turn conversation feeds the model
// against transformers' (tests/fixtures/chat.txt, from make_chat.py), a real terminal (a pty)
// through turns, Ctrl-C and EOF, the context shift, and bad input.
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/chat.h"
#include "convert/hf.h"
#include "helpers.h"

// Exports a fixture model directory into this test's temporary directory.
static const char *export_dir(const char *dir, const char *name) {
    char *out, *err;
    const char *path = tmp_file(name);
    int rc = run_cmd(&out, &err, "%s %s %s", bin_path("export"), fixture(dir), path);
    cr_assert_eq(rc, 0, "export %s: %s", dir, err);
    free(out), free(err);
    return path;
}

static size_t count(const char *s, const char *needle) {
    size_t k = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) k++;
    return k;
}

// One family of chat.txt: the conversation and the ids transformers fed.
typedef struct {
    char name[32], dir[64];
    int n_new, think;
    char system[256], users[3][256];
    int32_t ids[1024];
    size_t n_ids;
    long fed[3], from[3];  // each turn's ids fed, and where the history ran again (-1: no)
    int turns;
} Conv;

static int read_conv(FILE *f, Conv *c) {
    char line[16384];
    int users = 0;
    memset(c, 0, sizeof *c);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#') continue;
        if (!strncmp(line, "family ", 7)) {
            cr_assert_eq(sscanf(line + 7, "%31s %63s %d %d", c->name, c->dir, &c->n_new,
                                &c->think), 4);
        } else if (!strncmp(line, "system ", 7)) {
            cr_assert_lt(strlen(line + 7), sizeof c->system);
            strcpy(c->system, line + 7);
        } else if (!strncmp(line, "user ", 5)) {
            cr_assert_lt(users, 3);
            cr_assert_lt(strlen(line + 5), sizeof c->users[0]);
            strcpy(c->users[users++], line + 5);
        } else if (!strncmp(line, "turn ", 5)) {
            cr_assert_lt(c->turns, 3);
            cr_assert_eq(sscanf(line + 5, "%ld %ld", &c->fed[c->turns], &c->from[c->turns]), 2);
            c->turns++;
        } else if (!strncmp(line, "ids ", 4)) {
            char *p = line + 4, *end;
            for (long v; (v = strtol(p, &end, 10)), end != p; p = end) {
                cr_assert_lt(c->n_ids, 1024);
                c->ids[c->n_ids++] = (int32_t)v;
            }
        } else if (!strcmp(line, "end")) {
            cr_assert_eq(users, 3);
            cr_assert_eq(c->turns, 3);
            return 1;
        }
    }
    return 0;
}

// Runs the conversation of c through run -m chat (turns on a pipe) and checks that the
// positions that ran hold exactly transformers' ids.
// model: the model file to run, or NULL for the family's directory exported.
static void check_family_model(const char *file, const char *family, const char *model_path) {
    FILE *f = fopen(fixture(file), "r");
    cr_assert(f, "no tests/fixtures/%s", file);
    Conv c;
    int found = 0;
    while (!found && read_conv(f, &c)) found = !strcmp(c.name, family);
    fclose(f);
    cr_assert(found, "%s has no family %s", file, family);
    const char *model = strdup(model_path ? model_path : export_dir(c.dir, "chat.slm"));
    const char *turns = strdup(tmp_file("turns.txt")), *dump = strdup(tmp_file("chat.dump"));
    FILE *t = fopen(turns, "w");
    for (int i = 0; i < 3; i++) fprintf(t, "%s\n", c.users[i]);
    fclose(t);
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s %s -m chat -t 0 -n %d -T 1 -y '%s' --date '26 Jul 2024' "
                     "--attn-dump %s%s < %s",
                     bin_path("run"), model, c.n_new, c.system, dump,
                     c.think ? " --think" : "", turns);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(count(err, "turn "), 3, "a timing line per turn: %s", err);
    for (int i = 0; i < 3; i++) {  // what each turn fed, and from where
        char want[128];
        if (c.from[i] < 0)
            snprintf(want, sizeof want, "turn %d: prompt %ld tokens,", i + 1, c.fed[i]);
        else
            snprintf(want, sizeof want, "turn %d: prompt %ld tokens (the history again from %ld)",
                     i + 1, c.fed[i], c.from[i]);
        cr_assert(strstr(err, want), "%s: no \"%s\" in: %s", family, want, err);
    }
    size_t n;
    int32_t *ids = attn_dump_ids(dump, &n);
    cr_assert_eq(n, c.n_ids, "%s: %zu positions ran, transformers fed %zu", family, n, c.n_ids);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], c.ids[i], "%s: position %zu runs id %d, transformers %d", family, i,
                     ids[i], c.ids[i]);
    free(ids), free(out), free(err);
    free((void *)model), free((void *)turns), free((void *)dump);
}

static void check_family_in(const char *file, const char *family) {
    check_family_model(file, family, NULL);
}

static void check_family(const char *family) { check_family_in("chat.txt", family); }

Test(chat, chatml_qwen25_three_turns_feed_transformers_ids) {
    check_family("qwen2");
}

Test(chat, llama3_three_turns_feed_transformers_ids) {
    check_family("llama3");
}

// Llama 3.2's template asks for today's date (strftime_now): without --date, the system turn
// says today's date as transformers renders it, strftime("%d %b %Y").
Test(chat, llama3_template_renders_todays_date) {
    const char *model = strdup(export_dir("chat-llama3", "today.slm"));
    const char *dump = strdup(tmp_file("today.dump"));
    char *out, *err, today[2][32];
    time_t now = time(NULL);
    strftime(today[0], sizeof today[0], "%d %b %Y", localtime(&now));
    int rc = run_cmd(&out, &err, "echo Hi | %s %s -m chat -t 0 -n 1 -T 1 --attn-dump %s",
                     bin_path("run"), model, dump);
    now = time(NULL);
    strftime(today[1], sizeof today[1], "%d %b %Y", localtime(&now));  // past midnight
    cr_assert_eq(rc, 0, "%s", err);
    Model m;
    cr_assert_eq(model_open(&m, model, 0), MODEL_OK);
    size_t n, len;
    int32_t *ids = attn_dump_ids(dump, &n);
    char text[8192] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = tokenizer_decode(&m.tokenizer, i ? ids[i - 1] : -1, ids[i], &len);
        cr_assert_lt(used + len, sizeof text);
        memcpy(text + used, p, len);
        used += len;
    }
    text[used] = '\0';
    char want[2][64];
    for (int i = 0; i < 2; i++) snprintf(want[i], sizeof want[i], "Today Date: %s\n", today[i]);
    cr_assert(strstr(text, want[0]) || strstr(text, want[1]), "no \"%s\" in: %s", want[0], text);
    free(ids), free(out), free(err);
    model_close(&m);
    free((void *)model), free((void *)dump);
}

Test(chat, chatml_smollm2_three_turns_feed_transformers_ids) {
    check_family("smollm2");
}

Test(chat, qwen3_thinking_three_turns_feed_transformers_ids) {
    check_family("qwen3");
}

// Sentencepiece (tiny-mistral's tokenizer.json, as Llama 2's): <s> and </s> in the rendered
// text are matched as their ids, the text between encoded on its own with its dummy prefix.
Test(chat, llama2_sentencepiece_three_turns_feed_transformers_ids) {
    check_family("llama2");
}

// Mistral Nemo's template moves the system text to the last user message: the history runs
// again each turn from where it first differs.
Test(chat, mistral_sentencepiece_three_turns_feed_transformers_ids) {
    check_family("mistral");
}

// Sentencepiece with the role tokens (<|user|>, <|end|>) as special added tokens.
Test(chat, phi3_sentencepiece_three_turns_feed_transformers_ids) {
    check_family("phi3");
}

// Gemma 3 (tests/fixtures/make_gemma.py): the system text folded into the first user turn,
// no dummy prefix, <end_of_turn> ending each reply.
Test(chat, gemma3_three_turns_feed_transformers_ids) {
    check_family_in("gemma3-conv.txt", "gemma3");
}

// The same conversation on windowed caches: tiny-gemma3 with a context of 512 (its logits do
// not depend on it), whose windowed layers then keep 263 rows.
Test(chat, gemma3_windowed_caches_feed_transformers_ids) {
    char *out, *err;
    const char *d = tmp_file("gemma-512");
    cr_assert_eq(run_cmd(&out, &err, "rm -rf %s && cp -r %s %s && sed -i "
                         "'s/\"max_position_embeddings\": 256/\"max_position_embeddings\": 512/' "
                         "%s/config.json", d, fixture("tiny-gemma3"), d, d), 0, "%s", err);
    free(out), free(err);
    char *model = strdup(tmp_file("gemma-512.slm"));
    cr_assert_eq(run_cmd(&out, &err, "%s %s %s", bin_path("export"), d, model), 0, "%s", err);
    cr_assert(strstr(out, "context 512"), "%s", out);
    free(out), free(err);
    check_family_model("gemma3-conv.txt", "gemma3", model);
    free(model);
}

// Thinking off: Qwen3's template drops the (empty) think block of earlier replies, so each
// turn runs the history again from there; the dump stops where it first does.
Test(chat, qwen3_thinking_off_runs_the_history_again_from_the_think_block) {
    check_family("qwen3-nothink");
}

// On a pipe, stdout carries only the replies, each followed by a newline; a line ending in a
// backslash goes on on the next.
Test(chat, pipe_stdout_carries_only_the_replies) {
    const char *model = strdup(export_dir("chat-qwen2", "q.slm"));
    char *out, *err;
    int rc = run_cmd(&out, &err, "printf 'Hi\\n' | %s %s -m chat -t 0 -n 8 -T 1", bin_path("run"),
                     model);
    cr_assert_eq(rc, 0, "%s", err);
    size_t len = strlen(out);
    cr_assert(len >= 2 && out[len - 1] == '\n', "one reply then a newline: '%s'", out);
    cr_assert(strncmp(out, "> ", 2) != 0, "no prompt marker on a pipe: '%s'", out);
    cr_assert(!strstr(out, "turn 1"), "timings go to stderr");
    cr_assert(strstr(err, "turn 1: prompt "), "%s", err);
    // a continued line is one turn: two lines joined by a backslash
    free(out), free(err);
    rc = run_cmd(&out, &err, "printf 'Hi\\\\\\nthere\\nBye\\n' | %s %s -m chat -t 0 -n 4 -T 1",
                 bin_path("run"), model);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(count(err, "turn "), 2, "'Hi\\' + 'there' is one turn, 'Bye' another: %s", err);
    free(out), free(err);
    free((void *)model);
}

// Many turns on a context of 256: the cache shifts by itself, and the dump covers every
// position that ran, past the context.
Test(chat, shifts_past_the_context) {
    const char *model = strdup(export_dir("chat-qwen2", "q.slm"));
    const char *turns = strdup(tmp_file("many.txt")), *dump = strdup(tmp_file("many.dump"));
    FILE *t = fopen(turns, "w");
    for (int i = 0; i < 12; i++) fprintf(t, "Turn number %d, tell me more.\n", i);
    fclose(t);
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s %s -m chat -t 0 -n 40 -T 1 --attn-dump %s < %s",
                     bin_path("run"), model, dump, turns);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(count(err, "turn "), 12, "%s", err);
    size_t n;
    int32_t *ids = attn_dump_ids(dump, &n);
    cr_assert_gt(n, 256, "the conversation ran %zu positions, past the context of 256", n);
    free(ids), free(out), free(err);
    free((void *)model), free((void *)turns), free((void *)dump);
}

// Runs `run args` with stdin `input` (a printf format) and returns stderr; checks the status.
static char *chat_err(int want, const char *input, const char *args) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "printf '%s' | %s %s", input, bin_path("run"), args);
    cr_assert_eq(rc, want, "'run %s' exited %d, want %d: %s", args, rc, want, err);
    free(out);
    return err;
}

Test(chat, bad_input) {
    char args[1024];
    const char *model = strdup(export_dir("chat-qwen2", "q.slm"));
    const char *plain = strdup(export_dir("tiny-qwen2", "plain.slm"));
    // an unknown template name, -y without chat mode: usage errors
    snprintf(args, sizeof args, "%s -m chat --chat-template nope", model);
    char *err = chat_err(2, "", args);
    cr_assert(strstr(err, "unknown template 'nope'") && strstr(err, "chatml"), "%s", err);
    free(err);
    snprintf(args, sizeof args, "%s -y 'You are terse.'", model);
    err = chat_err(2, "", args);
    cr_assert(strstr(err, "-y is for chat mode"), "%s", err);
    free(err);
    // a model without a template, and no --chat-template: one line listing the names
    snprintf(args, sizeof args, "%s -m chat", plain);
    err = chat_err(2, "Hi\\n", args);
    cr_assert_eq(count(err, "\n"), 1, "one line: %s", err);
    cr_assert(strstr(err, "no chat template") && strstr(err, "--chat-template") &&
              strstr(err, "llama2, llama3, chatml, qwen3, mistral, phi3, gemma, smollm3"), "%s", err);
    free(err);
    // ... which --chat-template fixes
    snprintf(args, sizeof args, "%s -m chat --chat-template chatml -t 0 -n 3 -T 1", plain);
    err = chat_err(0, "Hi\\n", args);
    cr_assert(strstr(err, "turn 1: prompt"), "%s", err);
    free(err);
    // invalid UTF-8 in a turn: one line, and the conversation goes on
    snprintf(args, sizeof args, "%s -m chat -t 0 -n 3 -T 1", model);
    err = chat_err(0, "Hello\\nbad \\377\\376 bytes\\nAnd again\\n", args);
    cr_assert_eq(count(err, "not valid UTF-8"), 1, "%s", err);
    cr_assert(strstr(err, "turn 2 is not valid UTF-8 (byte 5): dropped"), "%s", err);
    cr_assert(strstr(err, "turn 1: prompt") && strstr(err, "turn 3: prompt"), "%s", err);
    free(err);
    // a turn longer than the context (256): one line, and the conversation goes on
    char input[8192] = "Hello\\n";
    for (int i = 0; i < 300; i++) strcat(input, "word ");
    strcat(input, "\\nAnd again\\n");
    err = chat_err(0, input, args);
    cr_assert_eq(count(err, "more than the context"), 1, "%s", err);
    cr_assert(strstr(err, "turn 2 is ") && strstr(err, "dropped"), "%s", err);
    cr_assert(strstr(err, "turn 1: prompt") && strstr(err, "turn 3: prompt"), "%s", err);
    free(err);
    free((void *)model), free((void *)plain);
}


// chat_encode on sentencepiece: the text cut at <unk>, <s>, </s> and the pieces between encoded
// on their own, as the `tokenizers` library does, for each tokenizer.json layout of make_spm.py
// (Llama 2's legacy normalizer; Metaspace first or never, split or not), with those three as
// special added tokens (tests/fixtures/spm-special.txt, from make_chat.py --special).
Test(chat, sentencepiece_special_tokens_match_tokenizers) {
    size_t len;
    char *fx = read_all(fixture("spm-special.txt"), &len);
    cr_assert(fx, "no tests/fixtures/spm-special.txt");
    Tokenizer t = {0};
    int kinds = 0, texts = 0;
    for (char *p = fx; p < fx + len;) {
        char *nl = strchr(p, '\n');
        cr_assert(nl);
        *nl = '\0';
        if (!strncmp(p, "kind ", 5)) {  // spm-KIND's tokenizer.json with the added tokens
            char src[256], *json, dir[512];
            snprintf(src, sizeof src, "spm-%s/tokenizer.json", p + 5);
            size_t n;
            cr_assert((json = read_all(fixture(src), &n)), "%s", src);
            char *at = strstr(json, "\"added_tokens\": ["), *end = at ? strchr(at, ']') : NULL;
            cr_assert(end, "%s has no added_tokens list", src);
            snprintf(dir, sizeof dir, "%s/spm-%s", tmp_dir(), p + 5);
            char *path = malloc(strlen(dir) + 32), *cmd_out;
            cr_assert_eq(run_cmd(&cmd_out, NULL, "mkdir -p %s", dir), 0);
            free(cmd_out);
            sprintf(path, "%s/tokenizer.json", dir);
            FILE *f = fopen(path, "w");
            fwrite(json, 1, (size_t)(at - json), f);
            fputs("\"added_tokens\": [", f);
            const char *names[] = {"<unk>", "<s>", "</s>"};
            for (int i = 0; i < 3; i++)
                fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, "
                        "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                        "\"special\": true}", i ? ", " : "", i, names[i]);
            fwrite(end, 1, n - (size_t)(end - json), f);
            fclose(f);
            free(path), free(json);
            if (t.vocab_size) tokenizer_free(&t);
            memset(&t, 0, sizeof t);
            cr_assert_eq(hf_tokenizer(&t, dir, 800, 1, 2, NULL), 0, "%s", dir);
            cr_assert_eq(t.kind, TOK_SPM);
            kinds++;
            p = nl + 1;
            continue;
        }
        size_t tl;
        cr_assert_eq(sscanf(p, "text %zu", &tl), 1, "%s", p);
        const char *text = nl + 1;
        char *ids_line = (char *)text + tl + 1;
        char *nl2 = strchr(ids_line, '\n');
        cr_assert(nl2 && !strncmp(ids_line, "ids", 3));
        *nl2 = '\0';
        int *got;
        size_t n;
        cr_assert_eq(chat_encode(&t, text, tl, &got, &n), 0);
        char *q = ids_line + 3, *e;
        size_t i = 0;
        for (long v; (v = strtol(q, &e, 10)), e != q; q = e, i++) {
            cr_assert_lt(i, n, "kind %d, text '%.*s': run gives %zu ids, fewer", kinds, (int)tl,
                         text, n);
            cr_assert_eq(got[i], v, "kind %d, text '%.*s': id %zu is %d, tokenizers %ld", kinds,
                         (int)tl, text, i, got[i], v);
        }
        cr_assert_eq(i, n, "kind %d, text '%.*s': run gives %zu ids, tokenizers %zu", kinds,
                     (int)tl, text, n, i);
        free(got);
        texts++;
        p = nl2 + 1;
    }
    cr_assert_eq(kinds, 4);
    cr_assert_eq(texts, 28);
    tokenizer_free(&t);
    free(fx);
}

// ---- a real terminal ----

typedef struct {
    int fd;
    pid_t pid;
    char buf[1 << 23];  // all it shows (more is read and dropped)
    size_t n;
} Pty;

static Pty pty;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Reads what the terminal shows for up to ms milliseconds.
static void pty_read(Pty *p, int ms) {
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    if (poll(&pf, 1, ms) <= 0) return;
    char drop[4096];
    int room = p->n + 1 < sizeof p->buf;
    ssize_t k = room ? read(p->fd, p->buf + p->n, sizeof p->buf - 1 - p->n)
                     : read(p->fd, drop, sizeof drop);
    if (k > 0 && room) p->n += (size_t)k;
    p->buf[p->n] = '\0';
}

// Reads what the terminal shows until `want` appears at or after offset `from` (returns its
// offset) or `timeout` seconds pass (fails the test).
static size_t pty_wait(Pty *p, size_t from, const char *want, double timeout) {
    double end = now_s() + timeout;
    for (;;) {
        p->buf[p->n] = '\0';
        char *hit = from <= p->n ? strstr(p->buf + from, want) : NULL;
        if (hit) return (size_t)(hit - p->buf);
        double left = end - now_s();
        cr_assert_gt(left, 0, "the terminal never showed \"%s\" after byte %zu; it shows: %s", want,
                     from, p->buf);
        pty_read(p, 50);
    }
}

// Reads until the terminal has shown more than n bytes.
static void pty_more_than(Pty *p, size_t n, double timeout) {
    double end = now_s() + timeout;
    while (p->n <= n) {
        cr_assert_lt(now_s(), end, "the reply never showed; the terminal shows: %s", p->buf);
        pty_read(p, 50);
    }
}

static void pty_send(Pty *p, const char *s) {
    cr_assert_eq(write(p->fd, s, strlen(s)), (ssize_t)strlen(s));
}

// Waits for the child's exit status (fails after timeout seconds), reading what it writes.
static int pty_exit(Pty *p, double timeout) {
    double end = now_s() + timeout;
    for (;;) {
        int st;
        pid_t w = waitpid(p->pid, &st, WNOHANG);
        if (w == p->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (now_s() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->buf[p->n] = '\0';
            cr_assert_fail("run did not exit; the terminal shows: %s", p->buf);
        }
        pty_read(p, 20);
    }
}

static void pty_start(Pty *p, const char *model, const char *n) {
    memset(p, 0, sizeof *p);
    const char *run = strdup(bin_path("run"));
    p->pid = forkpty(&p->fd, NULL, NULL, NULL);
    cr_assert_neq(p->pid, -1, "forkpty: %s", strerror(errno));
    if (p->pid == 0) {
        execl(run, run, model, "-m", "chat", "-t", "0", "-T", "1", "-n", n, (char *)NULL);
        _exit(127);
    }
    free((void *)run);
}

// Two turns, each stopped by Ctrl-C mid-reply (the tiny model's greedy replies never end by
// themselves within -n 1000000: they only stop on Ctrl-C), then EOF: status 0.
Test(chat, terminal_two_turns_ctrl_c_mid_reply_and_eof, .timeout = 60) {
    const char *model = strdup(export_dir("chat-qwen2", "q.slm"));
    Pty *p = &pty;
    pty_start(p, model, "1000000");
    size_t at = pty_wait(p, 0, "> ", 20);
    pty_send(p, "Hello there\r");
    at = pty_wait(p, at, "Hello there", 10);  // the terminal echoes the turn
    size_t reply = at + strlen("Hello there");
    // the reply streams: wait until it has shown some text, then interrupt it
    pty_more_than(p, reply + 64, 10);
    pty_send(p, "\003");
    at = pty_wait(p, reply, "[reply interrupted]", 10);
    at = pty_wait(p, at, "turn 1: prompt ", 10);
    at = pty_wait(p, at, "> ", 10);  // back at the prompt
    pty_send(p, "Second turn\r");
    at = pty_wait(p, at, "Second turn", 10);
    reply = at + strlen("Second turn");
    pty_more_than(p, reply + 64, 10);
    pty_send(p, "\003");
    at = pty_wait(p, reply, "[reply interrupted]", 10);
    at = pty_wait(p, at, "turn 2: prompt ", 10);
    at = pty_wait(p, at, "> ", 10);
    pty_send(p, "\004");  // EOF at the prompt
    cr_assert_eq(pty_exit(p, 10), 0, "EOF ends the conversation with status 0: %s", p->buf);
    close(p->fd);
    free((void *)model);
}

// Ctrl-C at an empty prompt ends the conversation, status 0.
Test(chat, terminal_ctrl_c_at_the_prompt_exits, .timeout = 60) {
    const char *model = strdup(export_dir("chat-qwen2", "q.slm"));
    Pty *p = &pty;
    pty_start(p, model, "4");
    size_t at = pty_wait(p, 0, "> ", 20);
    pty_send(p, "Hi\r");
    at = pty_wait(p, at, "turn 1: prompt ", 10);
    pty_wait(p, at, "> ", 10);
    pty_send(p, "\003");
    cr_assert_eq(pty_exit(p, 10), 0, "Ctrl-C at the prompt exits 0: %s", p->buf);
    close(p->fd);
    free((void *)model);
}

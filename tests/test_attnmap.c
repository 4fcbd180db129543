// test_attnmap.c: run --attn-dump and --attn-map on stories260K. The dumped rows are
// softmaxes (each sums to 1 within 1e-5, masked keys exactly 0) and match the weights of the
// plain path (kernels.c's attention_head, via transformer_forward_plain); the page is
// self-contained and renders in headless Chromium to a non-blank image; recording changes
// no output; bad flags and unwritable paths fail cleanly. The kernel-level comparison of the
// recorded weights with attention_head is in test_attention.c (attention/recorded_*).
//
// Contract: Criterion, libc, libm, libpng (to read Chromium's screenshot), the run binary,
// Chromium (Debian's chromium package; CI installs it, elsewhere the page test skips).
#include <criterion/criterion.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/attnmap.h"
#include "io/json.h"
#include "runtime/transformer.h"
#include "helpers.h"

#define PROMPT "Once upon a time, there was a little girl"
#define STEPS 72  // positions: a 13-token prompt (one batch) and 59 decoded one at a time

// ---- the dump ----

typedef struct {
    uint32_t n_layers, n_heads, n, n_prompt, header_bytes;
    const int32_t *ids;
    const float *w;  // (n_layers, n_heads, n, n)
    char *buf;
} Dump;

static Dump read_dump(const char *path) {
    size_t size;
    Dump d = {.buf = read_all(path, &size)};
    cr_assert(d.buf, "cannot read %s", path);
    cr_assert(size >= 32 && memcmp(d.buf, "SLAT", 4) == 0, "%s: no SLAT header", path);
    uint32_t f[8];
    memcpy(f, d.buf, sizeof f);
    cr_assert_eq(f[1], 1, "version");
    cr_assert_eq(f[7], 0, "reserved");
    d.n_layers = f[2], d.n_heads = f[3], d.n = f[4], d.n_prompt = f[5], d.header_bytes = f[6];
    cr_assert_eq(d.header_bytes, 32 + 4 * d.n);
    size_t want = d.header_bytes + (size_t)d.n_layers * d.n_heads * d.n * d.n * sizeof(float);
    cr_assert_eq(size, want, "%s: %zu bytes, header implies %zu", path, size, want);
    d.ids = (const int32_t *)(d.buf + 32);
    d.w = (const float *)(d.buf + d.header_bytes);
    return d;
}

static const float *dump_row(const Dump *d, size_t l, size_t h, size_t i) {
    return d->w + ((l * d->n_heads + h) * d->n + i) * d->n;
}

static const char *model_260k(void) { return export_stories260k_as("f32"); }

// Generates with recording; returns run's stdout (caller frees).
static char *run_recorded(const char *model, const char *flags) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s %s -t 0 -n %d -i '%s' %s", bin_path("run"), model, STEPS,
                     PROMPT, flags);
    cr_assert_eq(rc, 0, "run %s failed: %s", flags, err);
    free(err);
    return out;
}

// Every row is a softmax over keys 0..i with exact zeros after, and the layout is the one
// attnmap.h documents: 5 layers, 8 heads, STEPS positions, the prompt's 13 tokens (BOS first).
Test(attnmap, dump_rows_are_softmaxes_in_the_documented_layout) {
    char dump[4096], flags[4200];
    snprintf(dump, sizeof dump, "%s", tmp_file("rows.bin"));
    snprintf(flags, sizeof flags, "-T 2 --attn-dump %s", dump);
    free(run_recorded(model_260k(), flags));
    Dump d = read_dump(dump);
    cr_assert_eq(d.n_layers, 5);
    cr_assert_eq(d.n_heads, 8);
    cr_assert_eq(d.n, STEPS, "greedy stories260K runs all %d positions", STEPS);
    cr_assert_eq(d.n_prompt, 13);
    cr_assert_eq(d.ids[0], 1, "BOS first");
    for (size_t l = 0; l < d.n_layers; l++)
        for (size_t h = 0; h < d.n_heads; h++)
            for (size_t i = 0; i < d.n; i++) {
                const float *row = dump_row(&d, l, h, i);
                double sum = 0.0;
                for (size_t t = 0; t <= i; t++) {
                    cr_assert(row[t] >= 0.0f && row[t] <= 1.0f);
                    sum += row[t];
                }
                cr_assert(fabs(sum - 1.0) <= 1e-5, "L%zu H%zu row %zu sums to %.9g", l, h, i, sum);
                for (size_t t = i + 1; t < d.n; t++)
                    cr_assert(row[t] == 0.0f, "L%zu H%zu row %zu: masked key %zu is %g", l, h, i,
                              t, row[t]);
            }
    free(d.buf);
}

// The fast path's recorded weights (batched prompt, then one token at a time, on 1 to 3
// threads) against the plain path's attention_head weights for the same tokens. The two
// passes differ only in the rounding of the matmuls and of the exponential: the weights agree
// to 3.7e-6 (measured); 1e-4 leaves room, and any indexing or normalisation error is far
// larger. (An f16 cache moves weights by up to 5e-3 against the f32 plain path; its recorded
// weights are compared with attention_head on the widened cache in test_attention.c.)
Test(attnmap, dump_matches_the_plain_attention_kernel) {
    const char *model = model_260k();
    const char *variants[] = {"-T 1", "-T 2", "-T 3"};
    for (size_t vi = 0; vi < 3; vi++) {
        char dump[4096], flags[4200];
        snprintf(dump, sizeof dump, "%s", tmp_file("plain.bin"));
        snprintf(flags, sizeof flags, "%s --attn-dump %s", variants[vi], dump);
        free(run_recorded(model, flags));
        Dump d = read_dump(dump);

        Transformer t;
        cr_assert_eq(transformer_build(&t, model, NULL, ATTN_KV_F32), MODEL_OK);
        AttnMap m;
        cr_assert_eq(attnmap_build(&m, d.n_layers, d.n_heads, d.n), 0);
        cr_assert_eq(transformer_record(&t, attnmap_sink, &m), MODEL_OK);
        for (size_t pos = 0; pos < d.n; pos++) transformer_forward_plain(&t, d.ids[pos], pos);
        cr_assert_eq(m.n_rows, d.n);
        double worst = 0.0;
        for (size_t l = 0; l < d.n_layers; l++)
            for (size_t h = 0; h < d.n_heads; h++)
                for (size_t i = 0; i < d.n; i++) {
                    const float *got = dump_row(&d, l, h, i), *want = attnmap_row(&m, l, h, i);
                    for (size_t k = 0; k <= i; k++)
                        worst = fmax(worst, fabs((double)got[k] - want[k]));
                }
        cr_assert(worst <= 1e-4, "%s: largest weight difference %g", variants[vi], worst);
        cr_log_info("%s: largest difference from the plain path %.3g", variants[vi], worst);
        attnmap_free(&m);
        transformer_free(&t);
        free(d.buf);
    }
}

// Recording changes nothing that run prints, for any thread count.
Test(attnmap, recording_leaves_the_output_unchanged) {
    const char *model = model_260k();
    char *plain = run_recorded(model, "-T 1");
    for (int threads = 1; threads <= 3; threads++) {
        char flags[4200];
        snprintf(flags, sizeof flags, "-T %d --attn-map %s --attn-dump %s", threads,
                 tmp_file("same.html"), tmp_file("same.bin"));
        char *rec = run_recorded(model, flags);
        cr_assert_str_eq(rec, plain, "-T %d: recording changed the text", threads);
        free(rec);
    }
    free(plain);
}

// ---- the page ----

// Reads a PNG as 8-bit RGB; returns the pixels (caller frees).
static uint8_t *read_png(const char *path, unsigned *w, unsigned *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_file(&img, path), "%s: %s", path, img.message);
    img.format = PNG_FORMAT_RGB;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    cr_assert(px && png_image_finish_read(&img, NULL, px, 0, NULL), "%s: %s", path, img.message);
    *w = img.width, *h = img.height;
    return px;
}

// As root (CI) Chromium needs --no-sandbox; a container's small /dev/shm needs the last flag.
#define CHROMIUM \
    "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir=%s"

// Checks a page: self-contained (nothing fetched), its script runs to the end without an
// error, and a 1280x900 screenshot shows heatmaps: a good share of coloured pixels in many
// colours (an empty page, or one showing only text, is white, black and grey).
static void check_page_renders(const char *page) {
    size_t n;
    char *html = read_all(page, &n);
    cr_assert(html && n > 1000);
    const char *fetches[] = {"http://", "https://", "src=", "<link", "@import", "url("};
    for (size_t i = 0; i < sizeof fetches / sizeof fetches[0]; i++)
        cr_assert(!strstr(html, fetches[i]), "the page contains '%s': not self-contained",
                  fetches[i]);
    cr_assert(strstr(html, "const DATA = {") && !strstr(html, "SEARCHLIGHT_DATA"));
    free(html);

    char profile[4096], shot[4096], *out, *err;
    snprintf(profile, sizeof profile, "%s", tmp_file("chromium-profile"));
    snprintf(shot, sizeof shot, "%s", tmp_file("map.png"));
    int rc = run_cmd(&out, &err, CHROMIUM " --dump-dom file://%s", profile, page);
    cr_assert_eq(rc, 0, "chromium --dump-dom failed: %s", err);
    cr_assert(strstr(out, "data-ready=\"ok\""), "the page's script did not finish: %.300s",
              strstr(out, "data-ready") ? strstr(out, "data-ready") : "(no data-ready)");
    free(out), free(err);
    rc = run_cmd(&out, &err, CHROMIUM " --screenshot=%s --window-size=1280,900 file://%s",
                 profile, shot, page);
    cr_assert_eq(rc, 0, "chromium --screenshot failed: %s", err);
    free(out), free(err);

    unsigned w, h;
    uint8_t *px = read_png(shot, &w, &h);
    cr_assert_eq(w, 1280);
    cr_assert_eq(h, 900);
    size_t colored = 0, distinct = 0;
    uint8_t *seen = calloc(1 << 21, 1);  // a bit per 24-bit colour
    cr_assert(seen);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint8_t *p = px + 3 * i;
        int hi = p[0] > p[1] ? (p[0] > p[2] ? p[0] : p[2]) : (p[1] > p[2] ? p[1] : p[2]);
        int lo = p[0] < p[1] ? (p[0] < p[2] ? p[0] : p[2]) : (p[1] < p[2] ? p[1] : p[2]);
        colored += hi - lo > 40;  // saturated: not white, black or grey
        uint32_t c = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        if (!(seen[c >> 3] & (1 << (c & 7)))) seen[c >> 3] |= (uint8_t)(1 << (c & 7)), distinct++;
    }
    cr_log_info("%s: %.1f%% coloured pixels, %zu colours", page, 100.0 * colored / (w * h),
                distinct);
    cr_assert(colored >= (size_t)w * h / 10, "only %zu of %u pixels are coloured", colored, w * h);
    cr_assert(distinct >= 64, "only %zu colours: no heatmap", distinct);
    free(seen), free(px);
}

// stories260K on the fixed prompt: 72 positions, 5 layers, 8 heads.
Test(attnmap, page_renders_in_headless_chromium) {
    need_program("chromium", "chromium");
    char page[4096], flags[4200];
    snprintf(page, sizeof page, "%s", tmp_file("map.html"));
    snprintf(flags, sizeof flags, "-T 2 --attn-map %s", page);
    free(run_recorded(model_260k(), flags));
    check_page_renders(page);
}

// The size the page must stay usable at: 256 positions x 8 layers x 8 heads (an 11 MB page),
// from a model of stories42M's shape with random weights.
Test(attnmap, page_of_256_tokens_8_layers_8_heads_renders) {
    need_program("chromium", "chromium");
    char model[4096], page[4096], *out, *err;
    snprintf(model, sizeof model, "%s", tmp_file("r42.slm"));
    snprintf(page, sizeof page, "%s", tmp_file("map256.html"));
    int rc = run_cmd(&out, &err, "%s --dtype q8_0 --random stories42M %s", bin_path("export"),
                     model);
    cr_assert_eq(rc, 0, "export failed: %s", err);
    free(out), free(err);
    rc = run_cmd(&out, &err, "%s %s -n 256 -s 7 -i 'a' --attn-map %s", bin_path("run"), model,
                 page);
    cr_assert_eq(rc, 0, "run failed: %s", err);
    cr_assert(strstr(err, "attention: 256 positions x 8 layers x 8 heads"), "%s", err);
    free(out), free(err);
    check_page_renders(page);
    unlink(model);
}

// ---- bad input ----

Test(attnmap, bad_flags_and_paths_fail_cleanly) {
    const char *model = model_260k();
    struct {
        const char *flags, *msg;
        int rc;
    } cases[] = {
        {"--attn-map ''", "--attn-map needs a file name", 2},
        {"--attn-dump", "--attn-dump needs a value", 2},
        {"--attn-map x.html --bench", "--attn-map records a generation", 2},
        {"--attn-dump x.bin --ppl x.txt", "--attn-dump records a generation", 2},
        {"--attn-map x.html -m tokenize", "--attn-map records a generation", 2},
        {"--attn-map same --attn-dump same", "name the same file 'same'", 2},
        {"--attn-map /nonexistent-dir/map.html", "/nonexistent-dir/map.html: cannot create a "
                                                 "temporary file beside it", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = run_cmd(&out, &err, "%s %s -n 8 -i 'Once' %s", bin_path("run"), model,
                         cases[i].flags);
        cr_assert_eq(rc, cases[i].rc, "%s: exit %d, want %d (%s)", cases[i].flags, rc,
                     cases[i].rc, err);
        cr_assert(strstr(err, cases[i].msg), "%s: stderr lacks '%s': %s", cases[i].flags,
                  cases[i].msg, err);
        free(out), free(err);
    }
}

// A failed write leaves an existing file as it was, and no temporary file: a full disk is
// simulated with RLIMIT_FSIZE (run ignores SIGXFSZ while recording, so the write fails).
Test(attnmap, a_failed_write_leaves_the_old_file) {
    const char *model = model_260k();
    char page[4096];
    snprintf(page, sizeof page, "%s", tmp_file("keep.html"));
    cr_assert_eq(write_all_file(page, "old", 3), 0);
    char *out, *err;
    int rc = run_cmd(&out, &err, "ulimit -f 8; %s %s -n 32 -i 'Once' --attn-map %s",
                     bin_path("run"), model, page);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
    cr_assert(strstr(err, "write failed: File too large (left as it was)"), "%s", err);
    size_t n;
    char *kept = read_all(page, &n);
    cr_assert(kept && n == 3 && memcmp(kept, "old", 3) == 0, "the old file changed");
    free(kept), free(out), free(err);
    rc = run_cmd(&out, &err, "ls %s | grep -c 'keep.html.tmp-'", tmp_dir());
    cr_assert_str_eq(out, "0\n", "a temporary file was left: %s", out);
    free(out), free(err);
}

// json_write_string: what the page's token labels go through.
Test(attnmap, json_strings_are_safe_in_a_script) {
    const char in[] = "a\"b\\c\n<\x01\xe2\x82\xac\xff</script>";
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert(f);
    cr_assert_eq(json_write_string(f, in, sizeof in - 1), 0);
    fclose(f);
    cr_assert_str_eq(buf, "\"a\\\"b\\\\c\\u000a\\u003c\\u0001\xe2\x82\xac\\u003c0xFF>\\u003c/script>\"");
    free(buf);
}

// A map larger than ATTNMAP_MAX_BYTES is refused up front (not left to the allocator or
// the OOM killer), and a size that overflows size_t is refused the same way.
Test(attnmap, too_large_a_map_is_refused) {
    AttnMap m;
    cr_assert_eq(attnmap_build(&m, 32, 32, 8192), -1);  // 128 GiB
    cr_assert_eq(attnmap_build(&m, (size_t)1 << 40, (size_t)1 << 40, 4), -1);
    cr_assert_eq(attnmap_build(&m, 2, 2, 16), 0);
    cr_assert_eq(m.n_rows, 0);
    attnmap_free(&m);
}

// A context shift (keep 2, drop 3) maps the cache's positions to the positions that ran: rows
// after the shift hold the kept keys, zeros for the dropped ones, then the moved ones.
Test(attnmap, sink_maps_shifted_cache_positions) {
    AttnMap m;
    cr_assert_eq(attnmap_build(&m, 1, 1, 16), 0);
    float w[8 * 8];
    for (size_t p = 0; p < 8; p++) {  // positions 0 .. 7, as they come: row p is p + 1 values
        for (size_t k = 0; k < 8; k++) w[k] = 100.0f * (float)p + (float)k;
        attnmap_sink(&m, 0, p, 1, w, 8);
    }
    attnmap_shift(&m, 2, 3);  // cache 0 1 | 2 3 4 dropped | 5 6 7 -> 2 3 4
    for (size_t k = 0; k < 8; k++) w[k] = 1000.0f + (float)k;
    attnmap_sink(&m, 0, 5, 1, w, 8);  // cache position 5 is position 8: keys 0 1 (5 6 7) 8
    cr_assert_eq(m.n_rows, 9);
    const float *r = attnmap_row(&m, 0, 0, 8);
    const float want[9] = {1000, 1001, 0, 0, 0, 1002, 1003, 1004, 1005};
    for (size_t k = 0; k < 9; k++) cr_assert_eq(r[k], want[k], "key %zu: %g", k, (double)r[k]);
    cr_assert_eq(attnmap_row(&m, 0, 0, 7)[7], 707.0f, "rows before the shift untouched");
    attnmap_free(&m);
}

// Past the context with --context-shift (a test model of context 32, 80 positions): the dump has
// a row for every position that ran, each a softmax over the keys the cache still held, with
// exact zeros at the positions a shift dropped. Shifts at 32 (positions 4..17 dropped) and at
// 32 again (4 + 14 = 18 .. 31), and so on: position i >= 32 attends to 0..3 and to the kept run.
Test(attnmap, dump_after_context_shifts) {
    const char *model = tmp_file("shift-map.slm");
    write_test_model(model, 0);
    char dump[4096];
    snprintf(dump, sizeof dump, "%s", tmp_file("shift.bin"));
    char *out, *err;
    int rc = run_cmd(&out, &err, "%s %s -t 0 -n 80 --context-shift -i 'ab' -T 2 --attn-dump %s",
                     bin_path("run"), model, dump);
    cr_assert_eq(rc, 0, "%s", err);
    free(out), free(err);
    Dump d = read_dump(dump);
    cr_assert_eq(d.n, 80);
    for (size_t l = 0; l < d.n_layers; l++)
        for (size_t h = 0; h < d.n_heads; h++)
            for (size_t i = 0; i < d.n; i++) {
                const float *row = dump_row(&d, l, h, i);
                // the cache after the shifts: 4 sinks, then the newest positions up to i
                size_t shifts = i < 32 ? 0 : (i - 32) / 14 + 1, first = i < 32 ? 4 : 4 + 14 * shifts;
                double sum = 0.0;
                for (size_t t = 0; t < d.n; t++) {
                    int attended = t <= i && (t < 4 || t >= first);
                    if (!attended)
                        cr_assert(row[t] == 0.0f, "L%zu H%zu row %zu: key %zu is %g", l, h, i, t,
                                  row[t]);
                    else
                        cr_assert(row[t] > 0.0f, "L%zu H%zu row %zu: key %zu is 0", l, h, i, t);
                    sum += row[t];
                }
                cr_assert(fabs(sum - 1.0) <= 1e-5, "row %zu sums to %.9g", i, sum);
            }
    free(d.buf);
}

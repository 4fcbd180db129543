// test_matmul.c: the fast matmuls against kernels.h's matmul, and their determinism.
//
// Contract: Criterion, libc and POSIX mmap; a fixed-seed xorshift RNG, so every run
// checks the same shapes and values.
#include <criterion/criterion.h>

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../kernels.h"
#include "../matmul.h"

static uint64_t rng_state;

static uint32_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static size_t rand_size(size_t lo, size_t hi) {  // in [lo, hi]
    return lo + xorshift() % (hi - lo + 1);
}

static float *rand_floats(size_t count) {
    float *p = malloc((count ? count : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (size_t i = 0; i < count; i++) p[i] = (float)xorshift() / 2147483648.0f - 1.0f;
    return p;
}

// Shapes named in the brief, then random ones.
static const size_t EDGE[] = {1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 64, 100, 288};
#define N_EDGE (sizeof EDGE / sizeof EDGE[0])

static void pick_shape(size_t i, size_t *n, size_t *d, size_t *m) {
    *n = i < N_EDGE ? EDGE[i] : rand_size(1, 300);
    *d = i < N_EDGE ? EDGE[(i * 5 + 3) % N_EDGE] : rand_size(1, 300);
    *m = rand_size(1, 20);
}

// |y - ref| within 1e-5 of sum_j |w_ij x_j|, the scale of the rounding error.
static void check_close(const float *y, const float *ref, const float *x, const float *w,
                        size_t n, size_t d, const char *what) {
    for (size_t i = 0; i < d; i++) {
        double scale = 0.0;
        for (size_t j = 0; j < n; j++) scale += fabs((double)w[i * n + j] * x[j]);
        double err = fabs((double)y[i] - ref[i]);
        cr_assert(err <= 1e-5 * scale + 1e-30, "%s: n=%zu d=%zu row %zu: %.9g vs %.9g", what, n,
                  d, i, y[i], ref[i]);
    }
}

Test(matmul, matches_reference) {
    rng_state = 0x9E3779B97F4A7C15u;
    Pool *pool = pool_create(2);
    cr_assert_not_null(pool);
    for (size_t s = 0; s < 60; s++) {
        size_t n, d, m;
        pick_shape(s, &n, &d, &m);
        float *x = rand_floats(m * n), *w = rand_floats(d * n);
        float *ref = rand_floats(m * d), *y = rand_floats(d), *yb = rand_floats(m * d);
        matmul_f32_batch(pool, yb, x, w, n, d, m);
        for (size_t t = 0; t < m; t++) {
            matmul(ref + t * d, x + t * n, w, n, d);
            matmul_f32(s % 2 ? pool : NULL, y, x + t * n, w, n, d);
            check_close(y, ref + t * d, x + t * n, w, n, d, "matmul_f32");
            check_close(yb + t * d, ref + t * d, x + t * n, w, n, d, "matmul_f32_batch");
        }
        free(x), free(w), free(ref), free(y), free(yb);
    }
    pool_destroy(pool);
}

// Every element bitwise equal across thread counts, entry points, and tile groupings.
Test(matmul, bitwise_deterministic) {
    rng_state = 0xD1B54A32D192ED03u;
    Pool *pools[4] = {NULL, pool_create(2), pool_create(3), pool_create(4)};
    for (int p = 1; p < 4; p++) cr_assert_not_null(pools[p]);
    for (size_t s = 0; s < 40; s++) {
        size_t n, d, m;
        pick_shape(s, &n, &d, &m);
        if (s >= N_EDGE) n |= 1, d |= 1;  // odd: tails in k and in rows
        m += 1;                           // at least 2, so tokens can be shifted below
        float *x = rand_floats(m * n), *w = rand_floats(d * n);
        float *base = rand_floats(m * d), *y = rand_floats(m * d);
        matmul_f32_batch(NULL, base, x, w, n, d, m);
        for (int p = 0; p < 4; p++) {
            matmul_f32_batch(pools[p], y, x, w, n, d, m);
            cr_assert(!memcmp(y, base, m * d * sizeof(float)), "batch, %d threads, n=%zu d=%zu",
                      pool_size(pools[p]), n, d);
            for (size_t t = 0; t < m; t++) {
                matmul_f32(pools[p], y, x + t * n, w, n, d);
                cr_assert(!memcmp(y, base + t * d, d * sizeof(float)),
                          "matvec token %zu, %d threads, n=%zu d=%zu", t, pool_size(pools[p]), n,
                          d);
            }
        }
        // Tokens 1.. of the batch land in other token tiles when run as their own batch.
        matmul_f32_batch(pools[1], y, x + n, w, n, d, m - 1);
        cr_assert(!memcmp(y, base + d, (m - 1) * d * sizeof(float)), "shifted batch n=%zu", n);
        // Rows split at an odd point fall into other row tiles.
        size_t split = rand_size(0, d);
        matmul_f32_rows(y, x, w, n, 0, split);
        matmul_f32_rows(y, x, w, n, split, d);
        cr_assert(!memcmp(y, base, d * sizeof(float)), "rows split at %zu of %zu", split, d);
        free(x), free(w), free(base), free(y);
    }
    for (int p = 1; p < 4; p++) pool_destroy(pools[p]);
}

Test(matmul, rows_writes_only_its_range) {
    rng_state = 42;
    size_t n = 33, d = 37;
    float *x = rand_floats(n), *w = rand_floats(d * n), *y = malloc(d * sizeof(float)),
          *ref = malloc(d * sizeof(float));
    cr_assert(y && ref);
    matmul(ref, x, w, n, d);
    for (size_t b = 0; b <= d; b += 5) {
        size_t e = b + 7 < d ? b + 7 : d;
        for (size_t i = 0; i < d; i++) y[i] = -1234.5f;
        matmul_f32_rows(y, x, w, n, b, e);
        for (size_t i = 0; i < d; i++) {
            if (i >= b && i < e) cr_assert_float_eq(y[i], ref[i], 1e-4, "row %zu", i);
            else cr_assert_eq(y[i], -1234.5f, "row %zu outside [%zu, %zu) written", i, b, e);
        }
    }
    free(x), free(w), free(y), free(ref);
}

// Inputs ending right at an inaccessible page: the tails must not read past the end.
Test(matmul, tails_stay_in_bounds) {
    long page = sysconf(_SC_PAGESIZE);
    int fd = open("/dev/zero", O_RDWR);
    cr_assert(page > 0 && fd >= 0);
    size_t bytes = 64 * (size_t)page;
    char *mem = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    cr_assert(mem != MAP_FAILED);
    cr_assert_eq(mprotect(mem + bytes, bytes, PROT_NONE), 0);
    rng_state = 7;
    static const size_t shapes[][3] = {{1, 1, 1}, {17, 5, 3}, {33, 9, 6}, {255, 7, 9}, {31, 4, 4}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], d = shapes[s][1], m = shapes[s][2];
        float *w = (float *)(mem + bytes) - d * n;  // W ends at the guard
        float *x = w - m * n - 1;                   // X ends one float before W
        for (size_t i = 0; i < d * n; i++) w[i] = (float)(xorshift() % 7) - 3.0f;
        for (size_t i = 0; i < m * n; i++) x[i] = (float)(xorshift() % 5) - 2.0f;
        x[m * n] = NAN;  // must not leak into any sum
        float *y = malloc(m * d * sizeof(float)), *ref = malloc(d * sizeof(float));
        cr_assert(y && ref);
        matmul_f32_batch(NULL, y, x, w, n, d, m);
        for (size_t t = 0; t < m; t++) {
            matmul(ref, x + t * n, w, n, d);  // small integers: exact in any order
            cr_assert(!memcmp(y + t * d, ref, d * sizeof(float)), "n=%zu d=%zu token %zu", n, d,
                      t);
        }
        free(y), free(ref);
    }
    munmap(mem, 2 * bytes);
}

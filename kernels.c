// kernels.c: the plain fp32 kernels (see kernels.h), kept as the algorithmic reference.
//
// The arithmetic follows llama2.c's run.c operation for operation, so that greedy
// decoding prints byte-identical text: same summation order, same float functions.
#include "kernels.h"

#include <math.h>

void rmsnorm(float *o, const float *x, const float *w, size_t n, float eps) {
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (size_t i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

void matmul(float *y, const float *x, const float *w, size_t n, size_t d) {
    for (size_t i = 0; i < d; i++) {
        const float *row = w + i * n;
        float sum = 0.0f;
        for (size_t j = 0; j < n; j++) sum += row[j] * x[j];
        y[i] = sum;
    }
}

void softmax(float *x, size_t n) {
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++) x[i] /= sum;
}

void rope(float *v, size_t n_heads, size_t head_dim, size_t pos, float theta) {
    for (size_t h = 0; h < n_heads; h++) {
        float *vh = v + h * head_dim;
        for (size_t i = 0; i < head_dim; i += 2) {
            float freq = 1.0f / powf(theta, (float)i / (float)head_dim);
            float angle = (float)pos * freq;
            float c = cosf(angle), s = sinf(angle);
            float v0 = vh[i], v1 = vh[i + 1];
            vh[i] = v0 * c - v1 * s;
            vh[i + 1] = v0 * s + v1 * c;
        }
    }
}

void attention_head(float *out, float *att, const float *q, const float *k, const float *v,
                    size_t pos, size_t head_dim) {
    for (size_t t = 0; t <= pos; t++) {
        const float *kt = k + t * head_dim;
        float score = 0.0f;
        for (size_t i = 0; i < head_dim; i++) score += q[i] * kt[i];
        att[t] = score / sqrtf((float)head_dim);
    }
    softmax(att, pos + 1);
    for (size_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (size_t t = 0; t <= pos; t++) {
        const float *vt = v + t * head_dim;
        for (size_t i = 0; i < head_dim; i++) out[i] += att[t] * vt[i];
    }
}

void swiglu(float *h, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = h[i];
        h[i] = x * (1.0f / (1.0f + expf(-x))) * u[i];
    }
}

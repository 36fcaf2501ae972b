/* layernorm.c: LayerNorm forward and backward over rows of C channels.
 * Statistics are accumulated in float over a row that fits in cache; eps is
 * 1e-5 as in torch.nn.LayerNorm. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include "kernels.h"

void gpt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *x = inp + (long)i * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / C + 1e-5f);
        float *o = out + (long)i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        mean[i] = m;
        rstd[i] = r;
    }
}

/* Per row: dnorm = dout * w; dx = r * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)).
 * dw and db are sums over rows: each thread sums its rows into its own slot
 * and the slots are added in thread order, so results do not depend on which
 * thread finishes first (bitwise-reproducible runs). */
void gpt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C) {
    int nt = omp_get_max_threads();
    float *part = calloc((size_t)nt * 2 * C, sizeof(float));
    #pragma omp parallel
    {
        float *acc = part + (size_t)omp_get_thread_num() * 2 * C;
        #pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (long)i * C;
            const float *d = dout + (long)i * C;
            float m = mean[i], r = rstd[i];
            float sum_d = 0.0f, sum_dx = 0.0f;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * r;
                float dn = d[c] * w[c];
                sum_d += dn;
                sum_dx += dn * xhat;
                acc[c] += d[c] * xhat;
                acc[C + c] += d[c];
            }
            sum_d /= C;
            sum_dx /= C;
            float *dx = dinp + (long)i * C;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * r;
                dx[c] += r * (d[c] * w[c] - sum_d - xhat * sum_dx);
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        const float *acc = part + (size_t)t * 2 * C;
        for (int c = 0; c < C; c++) {
            dw[c] += acc[c];
            db[c] += acc[C + c];
        }
    }
    free(part);
}

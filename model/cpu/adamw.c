/* adamw.c: the fused AdamW update and the sum of squares for the global
 * gradient norm. The clip factor arrives as grad_scale so clipping costs no
 * extra pass over the gradients. */
#include <math.h>
#include <stdlib.h>
#include "kernels.h"

void gpt_adamw_kernel(float *params, const float *grads, float *m, float *v,
                      long n, int t, float lr, float b1, float b2, float eps,
                      float wd, float grad_scale) {
    float bc1 = 1.0f - powf(b1, (float)t);
    float bc2 = 1.0f - powf(b2, (float)t);
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) {
        float g = grads[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = params[i];
        params[i] = p - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p);
    }
}

/* Fixed-size chunks summed in chunk order: the result is the same bits for
 * any thread count and any scheduling. */
double gpt_sumsq(const float *x, long n) {
    enum { CHUNK = 1 << 16 };
    long nchunks = (n + CHUNK - 1) / CHUNK;
    double *part = malloc(sizeof(double) * (size_t)(nchunks > 0 ? nchunks : 1));
    #pragma omp parallel for schedule(static)
    for (long k = 0; k < nchunks; k++) {
        long end = (k + 1) * CHUNK < n ? (k + 1) * CHUNK : n;
        double s = 0.0;
        for (long i = k * CHUNK; i < end; i++) s += (double)x[i] * x[i];
        part[k] = s;
    }
    double s = 0.0;
    for (long k = 0; k < nchunks; k++) s += part[k];
    free(part);
    return s;
}

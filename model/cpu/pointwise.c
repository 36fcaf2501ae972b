/* pointwise.c: elementwise kernels: tanh-GELU and the residual add. */
#include <math.h>
#include "kernels.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

void gpt_gelu_forward(float *out, const float *inp, int N) {
    #pragma omp parallel for simd
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}

void gpt_gelu_backward(float *dinp, const float *inp, const float *dout, int N) {
    #pragma omp parallel for simd
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        dinp[i] += (0.5f * (1.0f + th) + 0.5f * x * sech2 * du) * dout[i];
    }
}

void gpt_residual_forward(float *out, const float *a, const float *b, int N) {
    #pragma omp parallel for simd
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
}

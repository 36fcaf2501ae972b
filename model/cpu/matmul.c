/* matmul.c: the linear layers, through CBLAS (OpenBLAS).
 * Weights are (OC, C) as in torch.nn.Linear, so the forward multiplies by the
 * transpose. The bias is written first and sgemm adds onto it (beta = 1),
 * which saves a pass over the output. */
#include <cblas.h>
#include <string.h>
#include "kernels.h"

void gpt_matmul_forward(float *out, const float *inp, const float *w,
                        const float *bias, int N, int C, int OC) {
    float beta = 0.0f;
    if (bias) {
        #pragma omp parallel for
        for (int i = 0; i < N; i++) memcpy(out + (long)i * OC, bias, sizeof(float) * OC);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C,
                w, C, beta, out, OC);
}

void gpt_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f,
                    dout, OC, w, C, 1.0f, dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC,
                inp, C, 1.0f, dw, C);
    if (dbias) {
        /* Column blocks keep the row walk contiguous and give each thread
         * its own slice of dbias. */
        #pragma omp parallel for
        for (int o0 = 0; o0 < OC; o0 += 64) {
            int o1 = o0 + 64 < OC ? o0 + 64 : OC;
            for (int i = 0; i < N; i++) {
                const float *d = dout + (long)i * OC;
                for (int o = o0; o < o1; o++) dbias[o] += d[o];
            }
        }
    }
}

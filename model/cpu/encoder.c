/* encoder.c: token + position embedding lookup and its backward.
 * The backward scatters into wte rows by token id; it runs serially over
 * positions because two positions may hold the same token. */
#include "kernels.h"

void gpt_encoder_forward(float *out, const int *tokens, const float *wte,
                         const float *wpe, int B, int T, int C) {
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((long)b * T + t) * C;
            const float *we = wte + (long)tokens[b * T + t] * C;
            const float *pe = wpe + (long)t * C;
            for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
        }
    }
}

void gpt_encoder_backward(float *dwte, float *dwpe, const float *dout,
                          const int *tokens, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((long)b * T + t) * C;
            float *dwe = dwte + (long)tokens[b * T + t] * C;
            float *dpe = dwpe + (long)t * C;
            for (int c = 0; c < C; c++) {
                dwe[c] += d[c];
                dpe[c] += d[c];
            }
        }
    }
}

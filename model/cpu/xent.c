/* xent.c: softmax cross-entropy over the real vocabulary.
 * The forward keeps only the per-row logsumexp, so the backward can form the
 * probabilities in one pass and write the logit gradient over the logits in
 * place: the (B*T, Vp) buffer is the largest activation of a GPT-2 step and is
 * never held twice. Padded vocabulary columns are outside the softmax. */
#include <math.h>
#include "kernels.h"

void gpt_softmax_xent_forward(float *losses, float *lse, const float *logits,
                              const int *targets, int N, int V, int Vp) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *x = logits + (long)i * Vp;
        float maxv = -INFINITY;
        for (int v = 0; v < V; v++) maxv = x[v] > maxv ? x[v] : maxv;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++) sum += expf(x[v] - maxv);
        lse[i] = maxv + logf(sum);
        losses[i] = lse[i] - x[targets[i]];
    }
}

void gpt_softmax_xent_backward(float *dlogits, const float *logits,
                               const float *lse, const int *targets, float dloss,
                               int N, int V, int Vp) {
    #pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *x = logits + (long)i * Vp;
        float *d = dlogits + (long)i * Vp;
        float l = lse[i];
        #pragma omp simd
        for (int v = 0; v < V; v++) d[v] = expf(x[v] - l) * dloss;
        for (int v = V; v < Vp; v++) d[v] = 0.0f;
        d[targets[i]] -= dloss;
    }
}

/* attention.c: causal multi-head self-attention, forward and backward.
 * Each query row only visits keys at or before it, so the work is half of the
 * full T x T square. The probabilities are kept for backward; the backward
 * parallelises over (batch, head) pairs because the key and value gradients
 * of one head receive contributions from every query row of that head.
 * gpt_attention_row is one query row against cached keys and values, for
 * decoding with a KV cache (decode.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

void gpt_attention_forward(float *out, float *att, const float *qkv, int B,
                           int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long C3 = 3L * C;
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((long)b * T + i) * C3 + h * hs;
                float *p = att + (((long)b * NH + h) * T + i) * T;
                float maxv = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((long)b * T + j) * C3 + C + h * hs;
                    float s = 0.0f;
                    for (int c = 0; c < hs; c++) s += q[c] * k[c];
                    s *= scale;
                    p[j] = s;
                    if (s > maxv) maxv = s;
                }
                float sum = 0.0f;
                for (int j = 0; j <= i; j++) {
                    p[j] = expf(p[j] - maxv);
                    sum += p[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j <= i; j++) p[j] *= inv;
                for (int j = i + 1; j < T; j++) p[j] = 0.0f;
                float *o = out + ((long)b * T + i) * C + h * hs;
                for (int c = 0; c < hs; c++) o[c] = 0.0f;
                for (int j = 0; j <= i; j++) {
                    const float *v = qkv + ((long)b * T + j) * C3 + 2 * C + h * hs;
                    for (int c = 0; c < hs; c++) o[c] += p[j] * v[c];
                }
            }
        }
    }
}

void gpt_attention_row(float *out, float *scratch, const float *q, const float *kv, int n,
                       int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for
    for (int h = 0; h < NH; h++) {
        float *p = scratch + (long)h * n, maxv = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *k = kv + (long)j * 2 * C + h * hs;
            float s = 0.0f;
            for (int c = 0; c < hs; c++) s += q[h * hs + c] * k[c];
            s *= scale;
            p[j] = s;
            if (s > maxv) maxv = s;
        }
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            p[j] = expf(p[j] - maxv);
            sum += p[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) p[j] *= inv;
        float *o = out + h * hs;
        for (int c = 0; c < hs; c++) o[c] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float *v = kv + (long)j * 2 * C + C + h * hs;
            for (int c = 0; c < hs; c++) o[c] += p[j] * v[c];
        }
    }
}

/* For query row i with probabilities p and upstream gradient dout_i:
 *   dp_j = dout_i . v_j,  ds_j = p_j (dp_j - sum_k p_k dp_k)
 *   dv_j += p_j dout_i,  dq_i += scale sum_j ds_j k_j,  dk_j += scale ds_j q_i */
void gpt_attention_backward(float *dqkv, const float *dout, const float *qkv,
                            const float *att, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long C3 = 3L * C;
    #pragma omp parallel
    {
        float *dp = malloc(sizeof(float) * (size_t)T);
        #pragma omp for collapse(2)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                for (int i = 0; i < T; i++) {
                    const float *p = att + (((long)b * NH + h) * T + i) * T;
                    const float *d = dout + ((long)b * T + i) * C + h * hs;
                    const float *q = qkv + ((long)b * T + i) * C3 + h * hs;
                    float *dq = dqkv + ((long)b * T + i) * C3 + h * hs;
                    float dot = 0.0f;
                    for (int j = 0; j <= i; j++) {
                        const float *v = qkv + ((long)b * T + j) * C3 + 2 * C + h * hs;
                        float *dv = dqkv + ((long)b * T + j) * C3 + 2 * C + h * hs;
                        float s = 0.0f;
                        for (int c = 0; c < hs; c++) {
                            s += d[c] * v[c];
                            dv[c] += p[j] * d[c];
                        }
                        dp[j] = s;
                        dot += p[j] * s;
                    }
                    for (int j = 0; j <= i; j++) {
                        float ds = p[j] * (dp[j] - dot) * scale;
                        const float *k = qkv + ((long)b * T + j) * C3 + C + h * hs;
                        float *dk = dqkv + ((long)b * T + j) * C3 + C + h * hs;
                        for (int c = 0; c < hs; c++) {
                            dq[c] += ds * k[c];
                            dk[c] += ds * q[c];
                        }
                    }
                }
            }
        }
        free(dp);
    }
}

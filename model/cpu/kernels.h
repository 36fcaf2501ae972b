/* kernels.h: the CPU kernels of the GPT-2 step, one small function each.
 *
 * These are the only pieces that the CUDA twin writes again; model/gpt.c
 * strings them together into forward and backward. Layout conventions:
 *  - activations are row-major (N, C) with N = B*T rows;
 *  - a linear layer's weight is (OC, C) like torch.nn.Linear, so out = inp W^T + b;
 *  - every backward kernel ADDS into its gradient outputs (+=), so gradients of
 *    tensors used twice (the tied wte) and of accumulated micro-steps just sum.
 * Parallelism is OpenMP over rows; matmuls go through CBLAS. */
#ifndef GPT_CPU_KERNELS_H
#define GPT_CPU_KERNELS_H

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. Tokens must be in range. */
void gpt_encoder_forward(float *out, const int *tokens, const float *wte,
                         const float *wpe, int B, int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]. */
void gpt_encoder_backward(float *dwte, float *dwpe, const float *dout,
                          const int *tokens, int B, int T, int C);

/* LayerNorm over the last dimension, eps 1e-5 (as torch.nn.LayerNorm).
 * Saves per-row mean and reciprocal std (N each) for backward. */
void gpt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C);
/* dinp += ..., dw += ..., db += ... */
void gpt_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C);

/* out (N, OC) = inp (N, C) * w (OC, C)^T + bias (OC); bias may be NULL. */
void gpt_matmul_forward(float *out, const float *inp, const float *w,
                        const float *bias, int N, int C, int OC);
/* dinp += dout w; dw += dout^T inp; dbias += column sums of dout.
 * dinp or dbias may be NULL to skip them. */
void gpt_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int N, int C, int OC);

/* Causal multi-head self-attention. qkv is (B, T, 3C) holding q, k, v side by
 * side; heads are contiguous slices of hs = C/NH channels. att (B, NH, T, T)
 * receives the softmax probabilities for key <= query and 0 above the
 * diagonal; out (B, T, C) is the attention-weighted sum of values, heads side
 * by side. The scale is 1/sqrt(hs). Work above the diagonal is skipped. */
void gpt_attention_forward(float *out, float *att, const float *qkv, int B,
                           int T, int C, int NH);
/* dqkv += gradient of out with respect to qkv, given dout and the saved att. */
void gpt_attention_backward(float *dqkv, const float *dout, const float *qkv,
                            const float *att, int B, int T, int C, int NH);

/* GELU, tanh approximation (torch gelu(approximate="tanh")). */
/* Attention of one query row q (C floats, NH heads) over n cached rows of
 * keys then values (kv: n x 2C). Same arithmetic, in the same order, as a
 * row of gpt_attention_forward. scratch: NH * n floats. */
void gpt_attention_row(float *out, float *scratch, const float *q, const float *kv, int n,
                       int C, int NH);

void gpt_gelu_forward(float *out, const float *inp, int N);
/* dinp += gelu'(inp) * dout */
void gpt_gelu_backward(float *dinp, const float *inp, const float *dout, int N);

/* out = a + b, elementwise over N values. */
void gpt_residual_forward(float *out, const float *a, const float *b, int N);

/* Softmax cross-entropy over the first V of Vp columns of each of N rows of
 * logits; padded columns [V, Vp) are ignored (they get no probability).
 * losses[i] = logsumexp(logits[i,:V]) - logits[i,targets[i]]; lse[i] keeps the
 * logsumexp for backward. */
void gpt_softmax_xent_forward(float *losses, float *lse, const float *logits,
                              const int *targets, int N, int V, int Vp);
/* dlogits[i,v] = (softmax(logits[i])[v] - [v == targets[i]]) * dloss for v < V
 * and 0 for padded columns. Overwrites (does not add); dlogits may alias
 * logits. dloss is the same for every row (1/N for a mean loss). */
void gpt_softmax_xent_backward(float *dlogits, const float *logits,
                               const float *lse, const int *targets, float dloss,
                               int N, int V, int Vp);

/* One AdamW step over n values with bias correction for step t (1-based):
 *   g = grad * grad_scale
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p
 * (decoupled weight decay, applied to the value before this step). */
void gpt_adamw_kernel(float *params, const float *grads, float *m, float *v,
                      long n, int t, float lr, float b1, float b2, float eps,
                      float wd, float grad_scale);

/* Sum of squares of n values, accumulated in double. */
double gpt_sumsq(const float *x, long n);

#endif

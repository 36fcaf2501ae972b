/* kernels_cuda.h: the CUDA twins of model/cpu/kernels.h, callable from C.
 *
 * Same kernels, same layouts, same tensor table as the CPU twin; the names
 * take a gpt_cu_ prefix so both can live in one binary (the tests compare
 * them). What differs is precision:
 *  - parameters, activations and gradients are bf16 (gpt_bf16 here, the raw
 *    16 bits; __nv_bfloat16 inside the .cu files);
 *  - master weights and AdamW moments are fp32, and so are the LayerNorm
 *    statistics, the attention's log-sum-exp and the per-row losses;
 *  - every reduction and every matmul accumulates in fp32.
 * Layouts: activations are row-major (N, C) with N = B*T rows; a linear
 * layer's weight is (OC, C) like torch.nn.Linear; every backward kernel ADDS
 * into its gradient outputs, like the CPU twin, so micro-steps accumulate.
 *
 * Determinism: no kernel here uses floating-point atomics. Results depend
 * only on the inputs and the shapes (and, for cuBLASLt, on the algorithm,
 * which matmul.cu picks once per shape and keeps), so two runs on the same
 * GPU give the same bits; that is what bitwise resume rests on.
 *
 * Errors: launchers return GPT_OK or GPT_ERR_DEVICE after writing a one-line
 * message ("layernorm_forward: invalid configuration argument"). They check
 * the launch (cudaGetLastError), not the kernel's completion: a fault inside
 * a kernel surfaces later, at a synchronising call or at a later launch's
 * check (such errors are sticky), so the kernel a message names may not be
 * the one that faulted; compute-sanitizer names it.
 * Unsupported shapes give GPT_ERR_CONFIG before anything is launched.
 * Everything is enqueued on ctx->stream and returns without synchronising. */
#ifndef GPT_KERNELS_CUDA_H
#define GPT_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cuda_runtime.h>
#include "gpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The raw bits of a bfloat16: the top half of an IEEE float. */
typedef uint16_t gpt_bf16;

/* Host-side conversions, round to nearest even (as __float2bfloat16_rn);
 * NaN stays NaN. The tests and the loaders use these. */
static inline gpt_bf16 gpt_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (gpt_bf16)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (gpt_bf16)(u >> 16);
}
static inline float gpt_bf16_to_float(gpt_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* What every launcher needs: the stream to enqueue on, cuBLASLt's handle and
 * workspace (matmul.cu), and an fp32 scratch area for the partial sums of
 * deterministic reductions (LayerNorm and bias gradients, norms). One per
 * stream; gpt_cu_ctx_create sizes scratch for the model it serves. */
typedef struct {
    cudaStream_t stream;
    void *lt;               /* cublasLtHandle_t */
    void *workspace;        /* cuBLASLt workspace */
    size_t workspace_bytes;
    float *scratch;         /* device fp32 scratch */
    size_t scratch_floats;
    int sm_count;           /* multiprocessors of the device */
    int device;
    int owns_stream;        /* 1 when gpt_cu_ctx_create made the stream */
} gpt_cu_ctx;

/* Creates a context on the current device: its own non-blocking stream
 * (or `stream` when non-NULL, which the context then does not own),
 * cuBLASLt's handle, a 32 MiB workspace and scratch_floats of fp32 scratch.
 * gpt_cu_scratch_floats says how many a model of this shape needs. */
gpt_status gpt_cu_ctx_create(gpt_cu_ctx *ctx, cudaStream_t stream, size_t scratch_floats,
                             gpt_error_t err);
void gpt_cu_ctx_free(gpt_cu_ctx *ctx);

/* Scratch floats for a model of C channels: GPT_CU_PARTIAL_ROWS rows of 8*C
 * floats (per-block partial sums of the LayerNorm and bias gradients, whose
 * widths are at most 2 x 4C), plus GPT_CU_PARTIAL_ROWS * 64 for norms. A
 * kernel that needs more partial rows than GPT_CU_PARTIAL_ROWS folds more
 * rows into each block instead. */
#define GPT_CU_PARTIAL_ROWS 512
size_t gpt_cu_scratch_floats(int C);

/* ---- conversions -------------------------------------------------------- */

/* dst[i] = bf16(src[i]), round to nearest even; and back. */
gpt_status gpt_cu_to_bf16(gpt_cu_ctx *ctx, gpt_bf16 *dst, const float *src, size_t n,
                          gpt_error_t err);
gpt_status gpt_cu_to_float(gpt_cu_ctx *ctx, float *dst, const gpt_bf16 *src, size_t n,
                           gpt_error_t err);

/* ---- encoder (encoder.cu) ------------------------------------------------ */

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. tokens (device) must be in range. */
gpt_status gpt_cu_encoder_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const int *tokens,
                                  const gpt_bf16 *wte, const gpt_bf16 *wpe, int B, int T,
                                  int C, gpt_error_t err);

/* Which rows of dout each vocabulary row of dwte receives, so that the
 * token-embedding gradient needs no atomics: positions grouped by token.
 * Built on the host from the host copy of the tokens (gpt_cu_encoder_plan),
 * then uploaded. For n_uniq distinct tokens: uniq[k] is the k-th distinct
 * token (ascending), and its positions are pos[start[k] .. start[k+1]),
 * ascending. uniq and start hold at most B*T (+1) entries, pos exactly B*T. */
typedef struct {
    int n_uniq;
    int *uniq, *start, *pos;
} gpt_cu_encoder_plan;

/* Host only: fills plan (arrays of B*T + 1 ints, caller-allocated) from
 * tokens[0 .. n). Deterministic: a counting sort by token. vocab bounds the
 * ids; counts is scratch of vocab + 1 ints. */
void gpt_cu_encoder_plan_build(gpt_cu_encoder_plan *plan, const int *tokens, int n,
                               int vocab, int *counts);

/* dwte[uniq[k],:] += sum of dout[pos,:] over its positions, summed in fp32 in
 * the plan's order; dwpe[t,:] += sum over b of dout[b,t,:]. plan's arrays
 * are device copies (n_uniq read from the struct). */
gpt_status gpt_cu_encoder_backward(gpt_cu_ctx *ctx, gpt_bf16 *dwte, gpt_bf16 *dwpe,
                                   const gpt_bf16 *dout, const gpt_cu_encoder_plan *dev_plan,
                                   int B, int T, int C, gpt_error_t err);

/* ---- LayerNorm and residual (layernorm.cu) ------------------------------ */

/* LayerNorm over C channels, eps 1e-5; mean and rstd (N floats each) saved. */
gpt_status gpt_cu_layernorm_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, float *mean, float *rstd,
                                    const gpt_bf16 *inp, const gpt_bf16 *w, const gpt_bf16 *b,
                                    int N, int C, gpt_error_t err);

/* Fused: resid = a + b (rounded to bf16), then out = LayerNorm(resid). */
gpt_status gpt_cu_residual_layernorm_forward(gpt_cu_ctx *ctx, gpt_bf16 *resid, gpt_bf16 *out,
                                             float *mean, float *rstd, const gpt_bf16 *a,
                                             const gpt_bf16 *b, const gpt_bf16 *w,
                                             const gpt_bf16 *bias, int N, int C,
                                             gpt_error_t err);

/* dinp += ..., dw += ..., db += ...; dw and db are reduced over the N rows
 * through ctx->scratch (per-block partials, then one pass that adds them in
 * a fixed order), never with atomics. */
gpt_status gpt_cu_layernorm_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, gpt_bf16 *dw,
                                     gpt_bf16 *db, const gpt_bf16 *dout, const gpt_bf16 *inp,
                                     const gpt_bf16 *w, const float *mean, const float *rstd,
                                     int N, int C, gpt_error_t err);

/* out = a + b over n values. */
gpt_status gpt_cu_residual_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const gpt_bf16 *a,
                                   const gpt_bf16 *b, size_t n, gpt_error_t err);

/* ---- pointwise (pointwise.cu) ------------------------------------------- */

/* GELU, tanh approximation. The matmuls fold it into their epilogue; these
 * stand-alone kernels are the fallback and the tests' reference. */
gpt_status gpt_cu_gelu_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const gpt_bf16 *inp, size_t n,
                               gpt_error_t err);
/* dinp = gelu'(inp) * dout (overwrites; dinp may alias dout). */
gpt_status gpt_cu_gelu_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, const gpt_bf16 *inp,
                                const gpt_bf16 *dout, size_t n, gpt_error_t err);

/* ---- matmuls (matmul.cu, cuBLASLt) -------------------------------------- */

/* out (N, OC) = inp (N, C) * w (OC, C)^T + bias (OC, or NULL). With
 * pre_gelu non-NULL the GELU is folded into the epilogue: pre_gelu receives
 * the value before the GELU (kept for backward) and out the value after.
 * bf16 in and out, fp32 accumulation. C and OC must be multiples of 8. */
gpt_status gpt_cu_matmul_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, gpt_bf16 *pre_gelu,
                                 const gpt_bf16 *inp, const gpt_bf16 *w, const gpt_bf16 *bias,
                                 int N, int C, int OC, gpt_error_t err);

/* Backward of gpt_cu_matmul_forward without GELU:
 *   dinp = dout w (OVERWRITES dinp; NULL to skip);
 *   dw += dout^T inp (accumulates into bf16 through fp32 math);
 *   dbias += column sums of dout (NULL to skip; deterministic, via scratch).
 * With pre_gelu non-NULL, dinp is additionally multiplied by gelu'(pre_gelu)
 * in the epilogue: the backward of the matmul that FOLLOWS a GELU'd matmul
 * hands over d(pre-GELU) directly (dinp then has pre_gelu's shape N x C). */
gpt_status gpt_cu_matmul_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, gpt_bf16 *dw,
                                  gpt_bf16 *dbias, const gpt_bf16 *dout, const gpt_bf16 *inp,
                                  const gpt_bf16 *w, const gpt_bf16 *pre_gelu, int N, int C,
                                  int OC, gpt_error_t err);

/* ---- attention (attention.cu) ------------------------------------------ */

/* Causal self-attention, flash-style: qkv (B, T, 3C) as on the CPU; out
 * (B, T, C); lse (B, NH, T) fp32 receives each query row's log-sum-exp of
 * the scaled scores, all that backward needs besides qkv and out. No T x T
 * matrix is materialised. Head size C/NH must be 64 or 128. */
gpt_status gpt_cu_attention_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, float *lse,
                                    const gpt_bf16 *qkv, int B, int T, int C, int NH,
                                    gpt_error_t err);
/* dqkv = gradient of out with respect to qkv (OVERWRITES dqkv), from dout,
 * the saved qkv, out and lse. delta is a (B, NH, T) fp32 workspace (it
 * receives each row's sum of dout * out). Deterministic: dK/dV and dQ come
 * from separate passes, each output element written by one thread block. */
gpt_status gpt_cu_attention_backward(gpt_cu_ctx *ctx, gpt_bf16 *dqkv, float *delta,
                                     const gpt_bf16 *dout, const gpt_bf16 *qkv,
                                     const gpt_bf16 *out, const float *lse, int B, int T,
                                     int C, int NH, gpt_error_t err);

/* GPT_OK when ctx's device has the shared memory per block that the
 * attention kernels need at head size hs (64 or 128); else GPT_ERR_CONFIG
 * naming the device's limit (compute capability 8.6 and 8.9 fall short). */
gpt_status gpt_cu_attention_fits(gpt_cu_ctx *ctx, int hs, gpt_error_t err);

/* ---- cuDNN's attention (attention_cudnn.c) ------------------------------ */

/* The same causal attention through cuDNN's fused flash-attention engine
 * (cuDNN 9): same layouts and contract as gpt_cu_attention_forward and
 * _backward above, so a model may use either (gpt_cuda_opts.attention).
 * Any head size cuDNN supports (up to 128 for backward). A handle bound to
 * ctx's stream, and a cache of execution plans per (B, T): the first pass at
 * a new shape builds its plans (up to about a second, cuDNN compiles the
 * kernels) and may grow the workspace, waiting for the stream. */
typedef struct gpt_cudnn_att gpt_cudnn_att;
gpt_status gpt_cudnn_att_create(gpt_cudnn_att **out, gpt_cu_ctx *ctx, gpt_error_t err);
void gpt_cudnn_att_free(gpt_cudnn_att *a); /* NULL is fine; waits for the stream */
gpt_status gpt_cudnn_attention_forward(gpt_cudnn_att *a, gpt_bf16 *out, float *lse,
                                       const gpt_bf16 *qkv, int B, int T, int C, int NH,
                                       gpt_error_t err);
/* OVERWRITES dqkv, like gpt_cu_attention_backward; no delta workspace (the
 * row sums live in the object's own workspace). Every pointer of both
 * passes must be 16-byte aligned (GPT_ERR_CONFIG otherwise), and T one that
 * gpt_cudnn_backward_ok accepts. */
gpt_status gpt_cudnn_attention_backward(gpt_cudnn_att *a, gpt_bf16 *dqkv, const gpt_bf16 *dout,
                                        const gpt_bf16 *qkv, const gpt_bf16 *out,
                                        const float *lse, int B, int T, int C, int NH,
                                        gpt_error_t err);
/* 1 when cuDNN `version` (CUDNN_VERSION's encoding, 91501 for 9.15.1; 0:
 * the one loaded at run time) can run the backward at sequence length T;
 * else 0 with the reason in err. cudnn-frontend refuses the
 * backward of cuDNN 9.10.0 and 9.10.1 (known bugs) and, up to 9.15.0, adds
 * a padding mask when the key length is not a multiple of 128 (NaN
 * otherwise, its issue 160); we build no such mask, so we refuse those. */
int gpt_cudnn_backward_ok(size_t version, int T, gpt_error_t err);
/* Builds the forward (backward = 0) or backward plan for the GPU that
 * device_json describes (cuDNN's device-properties JSON), without a device,
 * and gives its workspace bytes. Needs a libcuda.so.1 to load, even the
 * toolkit's stub: then the engine's kernel is compiled but cannot be loaded,
 * and the error names cuLibraryLoadData. For tests on machines with no GPU:
 * whether cuDNN accepts our graphs for that GPU. */
gpt_status gpt_cudnn_attention_check(const char *device_json, int backward, int B, int T,
                                     int C, int NH, size_t *workspace, gpt_error_t err);

/* ---- classifier (classifier.cu) ----------------------------------------- */

/* Fused softmax cross-entropy over the first V of Vp columns of N rows of
 * logits (bf16): losses[i] (fp32) = logsumexp - logit of targets[i]. With
 * dloss != 0 it then OVERWRITES logits in place with the gradient
 * (softmax - onehot) * dloss for v < V and 0 for the padded columns, in
 * the same kernel, so the probabilities are never stored. With dloss == 0
 * the logits are left alone (evaluation). targets on the device. */
gpt_status gpt_cu_classifier(gpt_cu_ctx *ctx, gpt_bf16 *logits, float *losses,
                             const int *targets, float dloss, int N, int V, int Vp,
                             gpt_error_t err);

/* ---- optimizer (adamw.cu) ----------------------------------------------- */

/* A stretch of elements that the update treats alike: n of them from
 * element `off` of the arrays gpt_cu_adamw is given, with the weight decay
 * (decay = 1) or without. */
typedef struct {
    uint64_t off;
    uint32_t n, decay;
} gpt_cu_span;

/* Elements of a span at most: pieces of a few thousand elements, one
 * thread block each, spread a big tensor over every SM. */
#define GPT_CU_SPAN_MAX 16384

/* The spans of the elements of t's tensors that lie in [lo, hi), offsets
 * counted from lo, each tensor cut into pieces of at most GPT_CU_SPAN_MAX
 * and decaying as the tensor does; the alignment gaps between tensors are
 * in no span. Writes the first `cap` of them to out (out may be NULL) and
 * returns how many there are. Host code. */
size_t gpt_cu_adamw_spans(const gpt_table *t, size_t lo, size_t hi, gpt_cu_span *out,
                          size_t cap);

/* AdamW, in one launch, over the elements of the nspans spans (device
 * memory), as gpt_adamw_kernel (kernels.h) on the fp32 master weights,
 * with g = bf16 grads[i] * grad_scale and weight decay wd in spans that
 * decay (0 in the others). Then params[i] = bf16 of the new master: round
 * to nearest even when sr_seed == 0, else stochastic rounding with random
 * bits from a counter-based hash of (sr_seed, t, the value's index
 * index0 + i), so it is deterministic given the seed. Elements in no span
 * are not touched. */
gpt_status gpt_cu_adamw(gpt_cu_ctx *ctx, gpt_bf16 *params, float *master,
                        const gpt_bf16 *grads, float *m, float *v, const gpt_cu_span *spans,
                        size_t nspans, size_t index0, int t, float lr, float b1, float b2,
                        float eps, float wd, float grad_scale, uint64_t sr_seed,
                        gpt_error_t err);

/* The stochastic rounding that gpt_cu_adamw applies, on the host, for the
 * tests: bf16 of x with the random bits of (seed, t, index). */
gpt_bf16 gpt_cu_sr_round_host(float x, uint64_t seed, int t, uint64_t index);

/* *out (device, one double) = sum of squares of x[0 .. n) accumulated in fp32
 * per block and fp64 across blocks, in a fixed order (deterministic). Uses
 * ctx->scratch. For the global gradient norm. */
gpt_status gpt_cu_sumsq(gpt_cu_ctx *ctx, double *out, const gpt_bf16 *x, size_t n,
                        gpt_error_t err);

#ifdef __cplusplus
}
#endif

#endif

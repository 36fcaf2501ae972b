// classifier.cu: the fused softmax cross-entropy at the top of the model.
// The (N, Vp) logits are the largest activation of a step, so one kernel does
// the loss and the gradient with the probabilities never stored: one block
// per row reads the row once for an online max and sum of exponentials
// (fp32), reduces them across the block in a fixed tree order, writes the
// row's loss, and, when a gradient is wanted, reads the row again and
// overwrites it in place with (softmax - onehot) * dloss, zeros in the padded
// columns [V, Vp). Same arithmetic as model/cpu/xent.c up to the bf16 output.
//
// Rows are read with 16-byte loads from the first 16-byte boundary of each
// row on, so any Vp >= V works: a row's few columns before that boundary and
// after the last full group of eight are done one by one.
//
// targets must be in [0, V) (the host checks the tokens). A row whose target
// is not gets a NaN loss and no onehot term, rather than a read out of bounds.
#include <float.h>
#include <stdint.h>
#include "cuda_common.cuh"

#define XENT_THREADS 512
#define XENT_WARPS (XENT_THREADS / 32)
// The "no value yet" maximum: finite, so exp(EMPTY - EMPTY) is 1 rather than
// NaN and a row starting with -inf logits still sums correctly.
#define EMPTY_MAX (-FLT_MAX)

// Columns [0, end) of a row: `head` single columns up to the first 16-byte
// boundary, `nvec` groups of eight, then single columns from `tail` to end.
struct Span {
    int head, nvec, tail, end;
};

static __device__ __forceinline__ Span split_row(const bf16 *row, int end) {
    int misaligned = (int)(((uintptr_t)row >> 1) & 7);  // in bf16 elements
    int head = min(end, (8 - misaligned) & 7);
    int nvec = (end - head) / 8;
    return {head, nvec, head + 8 * nvec, end};
}

// The k-th single column of a span (at most 14 of them), or -1.
static __device__ __forceinline__ int single_col(Span s, int k) {
    if (k < s.head) return k;
    k -= s.head;
    return k < s.end - s.tail ? s.tail + k : -1;
}

// Folds K values into a running maximum m and sum s of exp(x - m).
template <int K>
static __device__ __forceinline__ void fold(float &m, float &s, const float *x) {
    float mx = m;
#pragma unroll
    for (int k = 0; k < K; k++) mx = fmaxf(mx, x[k]);
    s *= __expf(m - mx);
#pragma unroll
    for (int k = 0; k < K; k++) s += __expf(x[k] - mx);
    m = mx;
}

// Merges another thread's (m2, s2) into (m, s).
static __device__ __forceinline__ void merge(float &m, float &s, float m2, float s2) {
    float mx = fmaxf(m, m2);
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

static __device__ __forceinline__ void warp_merge(float &m, float &s) {
    for (int o = 16; o > 0; o >>= 1)
        merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// Block-wide merge; every thread receives warp 0 lane 0's result, so all of
// them use the same bits even if the butterfly left lanes differing by an ulp.
static __device__ void block_merge(float &m, float &s) {
    __shared__ float wm[XENT_WARPS], ws[XENT_WARPS], tm, ts;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    warp_merge(m, s);
    if (lane == 0) {
        wm[warp] = m;
        ws[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < XENT_WARPS ? wm[lane] : EMPTY_MAX;
        s = lane < XENT_WARPS ? ws[lane] : 0.0f;
        warp_merge(m, s);
        if (lane == 0) {
            tm = m;
            ts = s;
        }
    }
    __syncthreads();
    m = tm;
    s = ts;
}

// This thread's share of the online max and sum over columns [0, V).
static __device__ void row_max_sum(const bf16 *row, int V, float &m, float &s) {
    Span sp = split_row(row, V);
    const bf16 *body = row + sp.head;
#pragma unroll 4
    for (int j = threadIdx.x; j < sp.nvec; j += XENT_THREADS) {
        bf16x8 x8 = load8(body + 8 * j);
        float x[8];
#pragma unroll
        for (int k = 0; k < 8; k++) x[k] = __bfloat162float(x8.v[k]);
        fold<8>(m, s, x);
    }
    int col = single_col(sp, threadIdx.x);
    if (col >= 0) {
        float x = __bfloat162float(row[col]);
        fold<1>(m, s, &x);
    }
}

// d logit for column col with value x: as xent.c, p * dloss, minus dloss at
// the target; 0 in the padding, whose values are never looked at.
static __device__ __forceinline__ bf16 grad_at(float x, int col, int V, int target, float lse,
                                               float dloss) {
    if (col >= V) return __float2bfloat16_rn(0.0f);
    float g = __expf(x - lse) * dloss;
    return __float2bfloat16_rn(col == target ? g - dloss : g);
}

// Overwrites columns [0, Vp) of the row with the gradient; every element is
// read and written by the same thread, so in place is safe.
static __device__ void row_grad(bf16 *row, int V, int Vp, int target, float lse, float dloss) {
    Span sp = split_row(row, Vp);
    bf16 *body = row + sp.head;
#pragma unroll 4
    for (int j = threadIdx.x; j < sp.nvec; j += XENT_THREADS) {
        int c0 = sp.head + 8 * j;
        bf16x8 x8 = load8(body + 8 * j), g8;
#pragma unroll
        for (int k = 0; k < 8; k++)
            g8.v[k] = grad_at(__bfloat162float(x8.v[k]), c0 + k, V, target, lse, dloss);
        store8(body + 8 * j, g8);
    }
    int col = single_col(sp, threadIdx.x);
    if (col >= 0) row[col] = grad_at(__bfloat162float(row[col]), col, V, target, lse, dloss);
}

__global__ void __launch_bounds__(XENT_THREADS)
    classifier_kernel(bf16 *logits, float *losses, const int *targets, float dloss, int V,
                      int Vp) {
    bf16 *row = logits + (size_t)blockIdx.x * Vp;
    int target = targets[blockIdx.x];
    bool valid = target >= 0 && target < V;
    // Read before block_merge's barriers, hence before anyone overwrites it.
    float x_target = threadIdx.x == 0 && valid ? __bfloat162float(row[target]) : 0.0f;

    float m = EMPTY_MAX, s = 0.0f;
    row_max_sum(row, V, m, s);
    block_merge(m, s);
    float lse = m + logf(s);
    if (threadIdx.x == 0) losses[blockIdx.x] = valid ? lse - x_target : __int_as_float(0x7fc00000);
    if (dloss != 0.0f) row_grad(row, V, Vp, target, lse, dloss);
}

extern "C" gpt_status gpt_cu_classifier(gpt_cu_ctx *ctx, gpt_bf16 *logits, float *losses,
                                        const int *targets, float dloss, int N, int V, int Vp,
                                        gpt_error_t err) {
    if (N < 0 || V < 1 || Vp < V) {
        snprintf(err, GPT_ERRLEN, "classifier: need N >= 0 and 1 <= V <= Vp, got N=%d V=%d Vp=%d",
                 N, V, Vp);
        return GPT_ERR_CONFIG;
    }
    if (N == 0) return GPT_OK;
    classifier_kernel<<<N, XENT_THREADS, 0, ctx->stream>>>(dev_bf16(logits), losses, targets,
                                                           dloss, V, Vp);
    return cu_launched("classifier", err);
}

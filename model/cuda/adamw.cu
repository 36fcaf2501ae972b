// adamw.cu: the optimizer's kernels. gpt_cu_adamw is the fused AdamW step of
// model/cpu/adamw.c on the fp32 master weights, which then hands the forward
// its bf16 copy. One launch updates every tensor: a thread block per span,
// the spans being the tensors cut into pieces (gpt_cu_adamw_spans), each
// with its tensor's weight decay; a launch per tensor would cost GPT-2 124M
// some 150 launches per step, with the GPU idle between the small ones.
// The bf16 copy is rounded to nearest even, or stochastically, so that updates
// far below a bf16 ulp still move the bf16 weights on average. The random
// bits come from a counter-based hash of (seed, step, element index), not
// from a stateful generator: the result depends on nothing but the inputs, so
// a resumed run reproduces it, and the host can recompute any element's
// rounding (gpt_cu_sr_round_host) with the very same integer code.
// gpt_cu_sumsq is the global gradient norm's deterministic sum of squares:
// fp32 per-block partials into ctx->scratch, then one block adds them in
// fixed order in fp64. Its grid depends on n alone, so its bits do too.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "cuda_common.cuh"

#define ADAMW_THREADS 256
#define SUMSQ_THREADS 256
#define SUMSQ_PER_BLOCK (SUMSQ_THREADS * 16)  // values per block before the cap
// The norms' share of the scratch, at its end (see gpt_cu_scratch_floats).
#define SUMSQ_PARTIALS (GPT_CU_PARTIAL_ROWS * 64)
#define GOLDEN 0x9E3779B97F4A7C15ull  // 2^64 / golden ratio, odd

// ceil(n / per), at most cap; in size_t, as n may exceed what cu_blocks's
// unsigned holds.
static size_t capped_blocks(size_t n, size_t per, size_t cap) {
    size_t blocks = n / per + (n % per != 0);
    return blocks < cap ? blocks : cap;
}

// ---- stochastic rounding, shared by device and host ----------------------

// splitmix64's finaliser: a bijection of 64-bit words that mixes every input
// bit into every output bit.
__host__ __device__ static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One key per (seed, step), computed once per launch on the host.
__host__ __device__ static inline uint64_t sr_key(uint64_t seed, int t) {
    return mix64(seed ^ mix64((uint64_t)(uint32_t)t + GOLDEN));
}

// 16 random bits for element `index`: splitmix64's output for counter
// index + 1 of the stream that starts at key (distinct indices, distinct
// states, since GOLDEN is odd).
__host__ __device__ static inline uint32_t sr_bits(uint64_t key, uint64_t index) {
    return (uint32_t)(mix64(key + (index + 1) * GOLDEN) >> 48);
}

__host__ __device__ static inline uint32_t float_bits(float x) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
#endif
}

// bf16 bits of x: add 16 random bits below the bf16 mantissa and truncate, so
// x rounds away from zero with probability (dropped bits) / 2^16: unbiased.
// The largest finite floats may round to infinity, as they should with that
// probability. Infinities stay, NaN stays NaN (quiet).
__host__ __device__ static inline uint16_t sr_round(float x, uint32_t r16) {
    uint32_t u = float_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7fffffffu) == 0x7f800000u) return (uint16_t)(u >> 16);
    return (uint16_t)((u + r16) >> 16);  // <= 0xff7fffff + 0xffff: no wrap
}

extern "C" gpt_bf16 gpt_cu_sr_round_host(float x, uint64_t seed, int t, uint64_t index) {
    return sr_round(x, sr_bits(sr_key(seed, t), index));
}

// ---- AdamW -----------------------------------------------------------------

struct AdamW {
    float lr, b1, b2, eps, wd, grad_scale, bc1, bc2;
};

// One element, in the order of gpt_adamw_kernel; returns the new master value.
static __device__ __forceinline__ float adamw_step(const AdamW &h, float wd, float grad,
                                                   float &m, float &v, float p) {
    float g = grad * h.grad_scale;
    m = h.b1 * m + (1.0f - h.b1) * g;
    v = h.b2 * v + (1.0f - h.b2) * g * g;
    return p - h.lr * ((m / h.bc1) / (sqrtf(v / h.bc2) + h.eps) + wd * p);
}

// Block b updates span b; element i of the arrays is element index0 + i of
// the table (the stochastic rounding's index).
template <bool STOCHASTIC>
__global__ void __launch_bounds__(ADAMW_THREADS)
    adamw_kernel(bf16 *params, float *master, const bf16 *grads, float *m, float *v,
                 const gpt_cu_span *spans, size_t index0, AdamW h, uint64_t key) {
    const gpt_cu_span sp = spans[blockIdx.x];
    const float wd = sp.decay ? h.wd : 0.0f;
    for (size_t i = sp.off + threadIdx.x; i < sp.off + sp.n; i += blockDim.x) {
        float mi = m[i], vi = v[i];
        float p = adamw_step(h, wd, __bfloat162float(grads[i]), mi, vi, master[i]);
        m[i] = mi;
        v[i] = vi;
        master[i] = p;
        params[i] = STOCHASTIC ? __ushort_as_bfloat16(sr_round(p, sr_bits(key, index0 + i)))
                               : __float2bfloat16_rn(p);
    }
}

extern "C" size_t gpt_cu_adamw_spans(const gpt_table *t, size_t lo, size_t hi,
                                     gpt_cu_span *out, size_t cap) {
    size_t count = 0;
    for (int k = 0; k < t->count; k++) {
        const gpt_tensor *x = &t->t[k];
        size_t a = x->offset > lo ? x->offset : lo;
        size_t b = x->offset + x->numel < hi ? x->offset + x->numel : hi;
        for (; a < b; a += GPT_CU_SPAN_MAX, count++) {
            size_t n = b - a < GPT_CU_SPAN_MAX ? b - a : GPT_CU_SPAN_MAX;
            if (out && count < cap)
                out[count] = (gpt_cu_span){(uint64_t)(a - lo), (uint32_t)n, (uint32_t)!!x->decay};
        }
    }
    return count;
}

extern "C" gpt_status gpt_cu_adamw(gpt_cu_ctx *ctx, gpt_bf16 *params, float *master,
                                   const gpt_bf16 *grads, float *m, float *v,
                                   const gpt_cu_span *spans, size_t nspans, size_t index0, int t,
                                   float lr, float b1, float b2, float eps, float wd,
                                   float grad_scale, uint64_t sr_seed, gpt_error_t err) {
    if (t < 1) {
        snprintf(err, GPT_ERRLEN, "adamw: the step t must be >= 1 (bias correction), got %d", t);
        return GPT_ERR_CONFIG;
    }
    if (nspans > 0x7fffffffu) {
        snprintf(err, GPT_ERRLEN, "adamw: %zu spans exceed one launch's grid", nspans);
        return GPT_ERR_CONFIG;
    }
    if (nspans == 0) return GPT_OK;
    // Bias corrections on the host with powf, exactly as the CPU twin.
    AdamW h = {lr, b1, b2, eps, wd, grad_scale, 1.0f - powf(b1, (float)t),
               1.0f - powf(b2, (float)t)};
    unsigned grid = (unsigned)nspans;
    if (sr_seed)
        adamw_kernel<true><<<grid, ADAMW_THREADS, 0, ctx->stream>>>(
            dev_bf16(params), master, dev_bf16(grads), m, v, spans, index0, h,
            sr_key(sr_seed, t));
    else
        adamw_kernel<false><<<grid, ADAMW_THREADS, 0, ctx->stream>>>(
            dev_bf16(params), master, dev_bf16(grads), m, v, spans, index0, h, 0);
    return cu_launched("adamw", err);
}

// ---- sum of squares ---------------------------------------------------------

// Block sum in a fixed order (butterfly within warps, then warps in order);
// the total is valid in thread 0. A template because the final pass is fp64.
template <typename T>
static __device__ T block_sum(T x) {
    __shared__ T warps[32];
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = x;
    __syncthreads();
    T total = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < (int)(blockDim.x / 32); w++) total += warps[w];
    return total;
}

static __device__ __forceinline__ float sq(bf16 x) {
    float f = __bfloat162float(x);
    return f * f;
}

// partials[blockIdx.x] = this block's share of the sum of squares. Groups of
// eight from x's first 16-byte boundary on; the at most 7 + 7 values before
// it and after the last group go to the first threads of the grid.
__global__ void __launch_bounds__(SUMSQ_THREADS)
    sumsq_partial_kernel(float *partials, const bf16 *x, size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t threads = (size_t)gridDim.x * blockDim.x;
    size_t head = (8 - (((uintptr_t)x >> 1) & 7)) & 7;
    if (head > n) head = n;
    size_t groups = (n - head) / 8, tail = head + 8 * groups;
    float acc = 0.0f;
    for (size_t j = tid; j < groups; j += threads) {
        bf16x8 g = load8(x + head + 8 * j);
#pragma unroll
        for (int k = 0; k < 8; k++) acc += sq(g.v[k]);
    }
    if (tid < head) acc += sq(x[tid]);
    if (tid < n - tail) acc += sq(x[tail + tid]);
    float total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(SUMSQ_THREADS)
    sumsq_final_kernel(double *out, const float *partials, int count) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    double total = block_sum(acc);
    if (threadIdx.x == 0) *out = total;
}

extern "C" gpt_status gpt_cu_sumsq(gpt_cu_ctx *ctx, double *out, const gpt_bf16 *x, size_t n,
                                   gpt_error_t err) {
    if (ctx->scratch_floats < SUMSQ_PARTIALS) {
        snprintf(err, GPT_ERRLEN, "sumsq: scratch of %zu floats, need at least %d",
                 ctx->scratch_floats, SUMSQ_PARTIALS);
        return GPT_ERR_CONFIG;
    }
    if (n == 0) {
        CU_TRY(cudaMemsetAsync(out, 0, sizeof *out, ctx->stream), "sumsq");
        return GPT_OK;
    }
    float *partials = ctx->scratch + (ctx->scratch_floats - SUMSQ_PARTIALS);
    int count = (int)capped_blocks(n, SUMSQ_PER_BLOCK, SUMSQ_PARTIALS);
    sumsq_partial_kernel<<<count, SUMSQ_THREADS, 0, ctx->stream>>>(partials, dev_bf16(x), n);
    gpt_status st = cu_launched("sumsq", err);
    if (st != GPT_OK) return st;
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, ctx->stream>>>(out, partials, count);
    return cu_launched("sumsq_final", err);
}

// pointwise.cu: the stand-alone tanh-GELU, forward and backward. The matmuls
// fold GELU into their epilogues; these kernels are the fallback and the
// reference the epilogues are tested against, so the arithmetic is that of
// model/cpu/pointwise.c, in fp32, with only the result rounded to bf16.
// Memory-bound: eight values per thread through 16-byte loads when n is a
// multiple of 8 and every pointer is 16-byte aligned, one value per thread
// otherwise. Grid-stride loops, so any size_t n works with a bounded grid.
#include <stdint.h>
#include "cuda_common.cuh"

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_A 0.044715f
#define THREADS 256
#define BLOCKS_PER_SM 32  // enough resident work to hide memory latency

static __device__ __forceinline__ float gelu(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static __device__ __forceinline__ float gelu_grad(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
}

static __device__ __forceinline__ size_t thread_index() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ size_t thread_count() { return (size_t)gridDim.x * blockDim.x; }

__global__ void gelu_forward_vec(bf16 *out, const bf16 *inp, size_t groups) {
    for (size_t g = thread_index(); g < groups; g += thread_count()) {
        bf16x8 x = load8(inp + 8 * g), y;
#pragma unroll
        for (int k = 0; k < 8; k++) y.v[k] = __float2bfloat16_rn(gelu(__bfloat162float(x.v[k])));
        store8(out + 8 * g, y);
    }
}

__global__ void gelu_forward_scalar(bf16 *out, const bf16 *inp, size_t n) {
    for (size_t i = thread_index(); i < n; i += thread_count())
        out[i] = __float2bfloat16_rn(gelu(__bfloat162float(inp[i])));
}

// dinp may alias dout: each element is read and then written by one thread.
__global__ void gelu_backward_vec(bf16 *dinp, const bf16 *inp, const bf16 *dout, size_t groups) {
    for (size_t g = thread_index(); g < groups; g += thread_count()) {
        bf16x8 x = load8(inp + 8 * g), d = load8(dout + 8 * g), y;
#pragma unroll
        for (int k = 0; k < 8; k++)
            y.v[k] = __float2bfloat16_rn(gelu_grad(__bfloat162float(x.v[k])) *
                                         __bfloat162float(d.v[k]));
        store8(dinp + 8 * g, y);
    }
}

__global__ void gelu_backward_scalar(bf16 *dinp, const bf16 *inp, const bf16 *dout, size_t n) {
    for (size_t i = thread_index(); i < n; i += thread_count())
        dinp[i] = __float2bfloat16_rn(gelu_grad(__bfloat162float(inp[i])) *
                                      __bfloat162float(dout[i]));
}

// Blocks for `items` work items (groups or values), capped so that the grid
// stays a few waves deep and the loops stride over the rest.
static unsigned grid_for(const gpt_cu_ctx *ctx, size_t items) {
    size_t cap = (size_t)(ctx->sm_count > 0 ? ctx->sm_count : 1) * BLOCKS_PER_SM;
    size_t blocks = items / THREADS + (items % THREADS != 0);  // size_t: items may be huge
    return (unsigned)(blocks < cap ? blocks : cap);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" gpt_status gpt_cu_gelu_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const gpt_bf16 *inp,
                                          size_t n, gpt_error_t err) {
    if (n == 0) return GPT_OK;
    if (n % 8 == 0 && aligned16(out) && aligned16(inp))
        gelu_forward_vec<<<grid_for(ctx, n / 8), THREADS, 0, ctx->stream>>>(
            dev_bf16(out), dev_bf16(inp), n / 8);
    else
        gelu_forward_scalar<<<grid_for(ctx, n), THREADS, 0, ctx->stream>>>(
            dev_bf16(out), dev_bf16(inp), n);
    return cu_launched("gelu_forward", err);
}

extern "C" gpt_status gpt_cu_gelu_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, const gpt_bf16 *inp,
                                           const gpt_bf16 *dout, size_t n, gpt_error_t err) {
    if (n == 0) return GPT_OK;
    if (n % 8 == 0 && aligned16(dinp) && aligned16(inp) && aligned16(dout))
        gelu_backward_vec<<<grid_for(ctx, n / 8), THREADS, 0, ctx->stream>>>(
            dev_bf16(dinp), dev_bf16(inp), dev_bf16(dout), n / 8);
    else
        gelu_backward_scalar<<<grid_for(ctx, n), THREADS, 0, ctx->stream>>>(
            dev_bf16(dinp), dev_bf16(inp), dev_bf16(dout), n);
    return cu_launched("gelu_backward", err);
}

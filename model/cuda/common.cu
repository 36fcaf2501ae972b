// common.cu: the kernel context (stream, cuBLASLt handle and workspace, fp32
// scratch) and the fp32 <-> bf16 conversions that loading and saving use.
#include <cublasLt.h>
#include "cuda_common.cuh"

#define WORKSPACE_BYTES ((size_t)32 << 20)  // cuBLASLt: 32 MiB suits Hopper

extern "C" size_t gpt_cu_scratch_floats(int C) {
    return (size_t)GPT_CU_PARTIAL_ROWS * 8 * (size_t)C + (size_t)GPT_CU_PARTIAL_ROWS * 64;
}

extern "C" gpt_status gpt_cu_ctx_create(gpt_cu_ctx *ctx, cudaStream_t stream,
                                        size_t scratch_floats, gpt_error_t err) {
    memset(ctx, 0, sizeof(*ctx));
    CU_TRY(cudaGetDevice(&ctx->device), "cudaGetDevice");
    CU_TRY(cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount,
                                  ctx->device), "cudaDeviceGetAttribute");
    if (stream) {
        ctx->stream = stream;
    } else {
        CU_TRY(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking),
               "cudaStreamCreate");
        ctx->owns_stream = 1;
    }
    cublasLtHandle_t lt = NULL;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        int device = ctx->device; /* the free clears ctx */
        gpt_cu_ctx_free(ctx);
        snprintf(err, GPT_ERRLEN, "cublasLtCreate failed on device %d", device);
        return GPT_ERR_DEVICE;
    }
    ctx->lt = lt;
    ctx->workspace_bytes = WORKSPACE_BYTES;
    cudaError_t e = cudaMalloc(&ctx->workspace, ctx->workspace_bytes);
    if (e == cudaSuccess) e = cudaMalloc((void **)&ctx->scratch, scratch_floats * sizeof(float));
    if (e != cudaSuccess) {
        gpt_cu_ctx_free(ctx);
        snprintf(err, GPT_ERRLEN, "allocating the kernel workspace (%zu MiB): %s",
                 (WORKSPACE_BYTES + scratch_floats * sizeof(float)) >> 20,
                 cudaGetErrorString(e));
        return GPT_ERR_DEVICE;
    }
    ctx->scratch_floats = scratch_floats;
    /* A launch is checked with cudaGetLastError, which would also report an
     * error some earlier call left behind: start clean. */
    cudaGetLastError();
    return GPT_OK;
}

extern "C" void gpt_cu_ctx_free(gpt_cu_ctx *ctx) {
    if (ctx->lt) cublasLtDestroy((cublasLtHandle_t)ctx->lt);
    cudaFree(ctx->workspace);
    cudaFree(ctx->scratch);
    if (ctx->owns_stream && ctx->stream) cudaStreamDestroy(ctx->stream);
    memset(ctx, 0, sizeof(*ctx));
}

__global__ void to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void to_float_kernel(float *dst, const bf16 *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}

extern "C" gpt_status gpt_cu_to_bf16(gpt_cu_ctx *ctx, gpt_bf16 *dst, const float *src,
                                     size_t n, gpt_error_t err) {
    if (n == 0) return GPT_OK;
    to_bf16_kernel<<<cu_blocks(n, 256), 256, 0, ctx->stream>>>(dev_bf16(dst), src, n);
    return cu_launched("to_bf16", err);
}

extern "C" gpt_status gpt_cu_to_float(gpt_cu_ctx *ctx, float *dst, const gpt_bf16 *src,
                                      size_t n, gpt_error_t err) {
    if (n == 0) return GPT_OK;
    to_float_kernel<<<cu_blocks(n, 256), 256, 0, ctx->stream>>>(dst, dev_bf16(src), n);
    return cu_launched("to_float", err);
}

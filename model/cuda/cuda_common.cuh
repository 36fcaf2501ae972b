// cuda_common.cuh: what the .cu files of model/cuda/ share: the bf16 type,
// error reporting into gpt_error_t, and vectorised 16-byte loads and stores.
// Not a public header; C callers see kernels_cuda.h only.
#ifndef GPT_CUDA_COMMON_CUH
#define GPT_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include "kernels_cuda.h"

typedef __nv_bfloat16 bf16;

// Device views of the C API's raw bf16 pointers.
static inline bf16 *dev_bf16(gpt_bf16 *p) { return reinterpret_cast<bf16 *>(p); }
static inline const bf16 *dev_bf16(const gpt_bf16 *p) {
    return reinterpret_cast<const bf16 *>(p);
}

// Checks the launch that just happened; on failure writes "what: CUDA's
// message" into err and returns GPT_ERR_DEVICE.
static inline gpt_status cu_launched(const char *what, gpt_error_t err) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s: %s", what, cudaGetErrorString(e));
    return GPT_ERR_DEVICE;
}

// For a CUDA runtime call: returns GPT_ERR_DEVICE with "what: message".
#define CU_TRY(call, what)                                                        \
    do {                                                                          \
        cudaError_t cu_e_ = (call);                                               \
        if (cu_e_ != cudaSuccess) {                                               \
            snprintf(err, GPT_ERRLEN, "%s: %s", (what), cudaGetErrorString(cu_e_)); \
            return GPT_ERR_DEVICE;                                                \
        }                                                                         \
    } while (0)

static inline unsigned cu_blocks(size_t n, unsigned threads) {
    return (unsigned)((n + threads - 1) / threads);
}

// Eight bf16 values moved as one 16-byte load or store (the pointer must be
// 16-byte aligned: row starts of C-channel rows are when C % 8 == 0).
struct __align__(16) bf16x8 {
    bf16 v[8];
};
__device__ __forceinline__ bf16x8 load8(const bf16 *p) {
    return *reinterpret_cast<const bf16x8 *>(p);
}
__device__ __forceinline__ void store8(bf16 *p, bf16x8 x) {
    *reinterpret_cast<bf16x8 *>(p) = x;
}

// Sum over a warp, every lane receiving the total (fixed butterfly order).
__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

#endif

// emu_cudart.cc: the CUDA runtime calls that model/cuda and its tests make,
// for the CPU emulation (emu_cuda.h). Linked instead of libcudart: one
// device (an H100's limits), "device" memory from the host heap, and every
// stream is the host thread, so each call is done when it returns.
//
// Device memory is checked as a GPU's driver would: a copy or memset whose
// device side is not inside one cudaMalloc allocation fails with "invalid
// argument", as does freeing a pointer cudaMalloc did not return. New
// device memory holds NaN bytes, as shared memory does (emu_sched.cc). Each
// allocation is exactly the size asked for, so AddressSanitizer (the emu
// tests build with it) catches a kernel reading or writing past its end.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <map>
#include "emu_internal.h"

namespace {

const int SM_COUNT = 132;                 // H100 SXM
const int SMEM_OPTIN = 227 * 1024;        // dynamic shared memory per block, opted in
const size_t GLOBAL_MEM = (size_t)80 << 30;

cudaError_t g_last = cudaSuccess;
int g_device = 0;
std::map<uintptr_t, size_t> g_allocs;  // device allocations: start -> bytes

cudaError_t fail(cudaError_t e) {
    g_last = e;
    return e;
}

}  // namespace

bool emu::on_device(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    std::map<uintptr_t, size_t>::const_iterator it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return false;
    --it;
    return a - it->first + bytes <= it->second;
}

namespace {
using emu::on_device;

cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) dst_dev = on_device(dst, 1), src_dev = on_device(src, 1);
    if ((dst_dev && !on_device(dst, bytes)) || (src_dev && !on_device(src, bytes)))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t check_memset(void *p, int value, size_t bytes) {
    if (bytes && !on_device(p, bytes)) return fail(cudaErrorInvalidValue);
    memset(p, value, bytes);
    return cudaSuccess;
}

}  // namespace

void emu::set_last_error(cudaError_t e) { g_last = e; }

extern "C" {

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error (emulated runtime)";
    }
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    g_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = g_device;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = SM_COUNT; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = SMEM_OPTIN; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    default: return fail(cudaErrorInvalidValue);
    }
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    strcpy(p->name, "CPU emulation (tests/emu) of an H100");
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = SM_COUNT;
    p->totalGlobalMem = GLOBAL_MEM;
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = SMEM_OPTIN;
    p->maxThreadsPerBlock = 1024;
    p->warpSize = 32;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || value > SMEM_OPTIN) return fail(cudaErrorInvalidValue);
    emu::set_smem_limit(func, value);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = nullptr;
    if (bytes > GLOBAL_MEM || posix_memalign(p, 256, bytes ? bytes : 1) != 0)
        return fail(cudaErrorMemoryAllocation);
    g_allocs[(uintptr_t)*p] = bytes ? bytes : 1;
    memset(*p, 0xFF, bytes);  // NaN in fp32 and bf16: a read before any write shows
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    if (!g_allocs.erase((uintptr_t)p)) return fail(cudaErrorInvalidValue);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    return check_copy(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
    (void)stream;
    return check_copy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) { return check_memset(p, value, bytes); }

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
    (void)stream;
    return check_memset(p, value, bytes);
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

// Streams and events are tokens: work is finished when its call returns.
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    free(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned flags, int priority) {
    (void)priority;
    return cudaStreamCreateWithFlags(s, flags);
}

cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) {
    *least = 0, *greatest = -5;  // an H100's range
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s, (void)e, (void)flags;
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = (cudaEvent_t)malloc(1);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free(e);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)e, (void)s;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}

}  // extern "C"

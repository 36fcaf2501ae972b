// emu_internal.h: what the emulator's runtime (emu_cudart.cc) and its
// scheduler (emu_sched.cc) tell each other. Not seen by the kernels.
#ifndef GPT_EMU_INTERNAL_H
#define GPT_EMU_INTERNAL_H

#include <cuda_runtime.h>

namespace emu {
// The error cudaGetLastError reports next (a failed launch sets it).
void set_last_error(cudaError_t e);
// 1 when [p, p + bytes) lies inside one cudaMalloc allocation.
bool on_device(const void *p, size_t bytes);
// cudaFuncSetAttribute(kernel, MaxDynamicSharedMemorySize, bytes).
void set_smem_limit(const void *kernel, int bytes);
}  // namespace emu

#endif

// emu_selftest.cu: kernels that show the CPU emulation (emu_cuda.h) finds
// what it claims to find; emu_selftest.sh runs each mode and checks the
// outcome. Written as CUDA, translated like model/cuda's files.
//   sum       a block sum through shuffles and shared memory: prints it
//   oob       a write one element past a cudaMalloc buffer (AddressSanitizer)
//   deadlock  half a warp at __syncwarp, the other half at __syncthreads
//   shuffle   a shuffle that reads a lane which has returned
//   smem      64 KiB of dynamic shared memory without, then with, the opt-in
//   cpasync   shared memory read before, then after, cp.async's wait
//   race      (race build) a block reads its neighbour's shared memory with
//             no barrier between the write and the read
//   warprace  (race build) the same within a warp, without __syncwarp
//   shflrace  (race build) the same within a warp, with only a shuffle
//             between (a shuffle orders no memory)
//   synced    (race build) both again, with the barriers: no race
#include <stdio.h>
#include <string.h>
#include <cuda_runtime.h>

__global__ void block_sum(float *out, const float *x, int n) {
    __shared__ float warps[32];
    float v = threadIdx.x < (unsigned)n ? x[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned w = 0; w < blockDim.x / 32; w++) s += warps[w];
        *out = s;
    }
}

__global__ void write_all(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) x[i] = 1.0f;  // the bug: one past the end
}

__global__ void split_barrier(float *x) {
    if (threadIdx.x % 32 < 16)
        __syncwarp();
    else
        __syncthreads();
    x[threadIdx.x] = 0.0f;
}

__global__ void early_return(float *x) {
    if (threadIdx.x >= 16) return;
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 16);
}

__global__ void big_smem(float *x) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = 1.0f;
    x[threadIdx.x] = dyn[threadIdx.x];
}

__global__ void stage(float *out, const float *x, int wait) {
    extern __shared__ __align__(16) float tile[];
    emu::cp_async(tile + 4 * threadIdx.x, x + 4 * threadIdx.x, 16, 1);
    emu::cp_async_commit();
    if (wait) emu::cp_async_wait(0);
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}

// Thread t writes slot t, then reads slot t + 1 (of its warp with
// warp_only): a race unless sync is 1, a barrier between (2: a shuffle).
__global__ void neighbour(float *out, int warp_only, int sync) {
    __shared__ float slot[64];
    slot[threadIdx.x] = (float)threadIdx.x;
    if (sync == 1 && warp_only) __syncwarp();
    if (sync == 1 && !warp_only) __syncthreads();
    if (sync == 2) slot[threadIdx.x] += __shfl_xor_sync(0xffffffffu, 0.0f, 1);
    unsigned next = warp_only ? (threadIdx.x & ~31u) | ((threadIdx.x + 1) & 31u)
                              : (threadIdx.x + 1) % blockDim.x;
    out[threadIdx.x] = slot[next];
}

static float *device_floats(int n, float value) {
    float *h = new float[n], *d = NULL;
    for (int i = 0; i < n; i++) h[i] = value;
    cudaMalloc((void **)&d, n * sizeof(float));
    cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice);
    delete[] h;
    return d;
}

static float first(const float *d) {
    float v = 0.0f;
    cudaMemcpy(&v, d, sizeof v, cudaMemcpyDeviceToHost);
    return v;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    float *x = device_floats(256, 0.5f), *out = device_floats(256, 0.0f);
    if (!strcmp(mode, "sum")) {
        block_sum<<<1, 256>>>(out, x, 200);
        printf("sum %g\n", first(out));
    } else if (!strcmp(mode, "oob")) {
        write_all<<<1, 256>>>(x, 200);  // x holds 256: in bounds
        float *y = device_floats(200, 0.0f);
        write_all<<<1, 256>>>(y, 200);
        printf("oob not caught\n");
    } else if (!strcmp(mode, "deadlock")) {
        split_barrier<<<1, 64>>>(x);
        printf("deadlock not caught\n");
    } else if (!strcmp(mode, "shuffle")) {
        early_return<<<1, 32>>>(x);
        printf("shuffle not caught\n");
    } else if (!strcmp(mode, "smem")) {
        big_smem<<<1, 32, 64 << 10>>>(x);
        printf("without opt-in: %s\n", cudaGetErrorString(cudaGetLastError()));
        cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10);
        big_smem<<<1, 32, 64 << 10>>>(x);
        printf("with opt-in: %s\n", cudaGetErrorString(cudaGetLastError()));
    } else if (!strcmp(mode, "cpasync")) {
        stage<<<1, 64, 1024>>>(out, x, 0);
        printf("before the wait %g\n", first(out));
        stage<<<1, 64, 1024>>>(out, x, 1);
        printf("after the wait %g\n", first(out));
    } else if (!strcmp(mode, "race") || !strcmp(mode, "warprace") || !strcmp(mode, "shflrace")) {
        neighbour<<<1, 64>>>(out, strcmp(mode, "race") != 0, !strcmp(mode, "shflrace") ? 2 : 0);
        printf("%s not caught\n", mode);
    } else if (!strcmp(mode, "synced")) {
        neighbour<<<2, 64>>>(out, 0, 1);
        float block_next = first(out);
        neighbour<<<2, 64>>>(out, 1, 1);
        printf("synced %g %g\n", block_next, first(out));
    } else {
        fprintf(stderr, "usage: emu_selftest sum|oob|deadlock|shuffle|smem|cpasync|"
                        "race|warprace|shflrace|synced\n");
        return 2;
    }
    return 0;
}

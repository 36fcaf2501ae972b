// emu_cuda.h: what lets model/cuda/*.cu compile as plain C++ and run on the
// CPU, so that CI machines without a GPU still execute every kernel against
// its CPU twin. Force-included (-include) into the copies that
// emu_translate.py makes of the .cu files, after which the kernels are
// ordinary functions:
//  - every CUDA thread of a block is a fiber (emu_sched.cc) on one OS thread;
//    blocks run one after another. __syncthreads, __syncwarp, the shuffles
//    and the WMMA calls are the points where a fiber yields: a barrier lets
//    its group go on only when every live member has arrived;
//  - __shared__ variables are static (one block at a time); dynamic shared
//    memory is a fresh buffer per block, filled with NaN bytes so that a
//    read before any write shows in the results;
//  - WMMA fragments hold the whole 16 x 16 tile in every lane, so element
//    i of a fragment is element i of the tile in every lane: code that is
//    correct for an opaque layout (as ours must be) is correct for this one;
//  - cp.async copies wait in a per-thread queue until cp.async.wait_group
//    retires their group, so a missing wait reads stale shared memory.
// It finds wrong indexing, wrong barriers that deadlock (reported), shuffles
// with absent lanes (reported), launches over the block or shared-memory
// limits (the launch fails as on a GPU), and, under AddressSanitizer,
// out-of-bounds accesses to device buffers. Races between the threads of a
// block (a barrier-free read of another thread's write, which here sees it
// or not depending on fiber order, not on timing) are for the race build,
// under ThreadSanitizer (emu_sched.cc says what orders what there). Neither
// finds stream-ordering bugs (everything runs at once, in order), races
// between blocks, or anything about speed.
#ifndef GPT_EMU_CUDA_H
#define GPT_EMU_CUDA_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define GPT_CU_EMU 1

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

// ---- the running thread -----------------------------------------------------

namespace emu {
extern uint3 g_thread_idx, g_block_idx;
extern dim3 g_block_dim, g_grid_dim;

void sync_block();
void sync_warp();
// A step of a warp-wide operation that, unlike __syncwarp, orders no memory
// (shuffles, WMMA): the warp's lanes meet, and the race build does not count
// it as synchronisation.
void warp_step();
unsigned long long shfl_xor(unsigned long long bits, int lane_mask, int width);
void *dyn_smem();
void cp_async(void *dst, const void *src, int bytes, int valid);
void cp_async_commit();
void cp_async_wait(int n);
// 1 in the lowest live lane of the calling thread's warp.
bool warp_leader();
// The calling thread's lane in its warp.
int lane_id();
// 256 floats shared by the calling thread's warp (WMMA results).
float *warp_tile();

// Runs the launch: body once per thread of every block. name names the
// kernel in messages; kernel is its address (for cudaFuncSetAttribute's
// shared-memory limit). Errors set the runtime's last error, as a GPU does.
void run(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
         cudaStream_t stream, const std::function<void()> &body);

template <typename... P>
struct Launch {
    const char *name;
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <typename... A>
    void operator()(A &&...a) const {
        std::tuple<P...> args(std::forward<A>(a)...);  // converted as a call would
        auto k = kernel;
        run(name, (const void *)k, grid, block, smem, stream, [&]() { std::apply(k, args); });
    }
};

template <typename... P>
Launch<P...> launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                    size_t smem = 0, cudaStream_t stream = 0) {
    return Launch<P...>{name, kernel, grid, block, smem, stream};
}

template <typename T>
T shfl_xor_value(T v, int lane_mask, int width) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = shfl_xor(bits, lane_mask, width);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}
}  // namespace emu

#define threadIdx (emu::g_thread_idx)
#define blockIdx (emu::g_block_idx)
#define blockDim (emu::g_block_dim)
#define gridDim (emu::g_grid_dim)

static inline void __syncthreads() { emu::sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    emu::sync_warp();
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    (void)mask;
    return emu::shfl_xor_value(v, lane_mask, width);
}

// ---- device intrinsics, with their host meanings -----------------------------
// The CUDA headers declare some of these for the host already: macros give
// ours other names.

static inline float emu_expf(float x) { return expf(x); }
static inline float emu_logf(float x) { return logf(x); }
static inline float emu_rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float emu_fdividef(float a, float b) { return a / b; }
static inline unsigned emu_float_as_uint(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    return u;
}
static inline float emu_int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
#define __expf emu_expf
#define __logf emu_logf
#define rsqrtf emu_rsqrtf
#define __fdividef emu_fdividef
#define __float_as_uint emu_float_as_uint
#define __int_as_float emu_int_as_float

// The runtime's template overload that takes a kernel, as nvcc's headers have.
template <typename... P>
static inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr,
                                               int value) {
    return cudaFuncSetAttribute((const void *)kernel, attr, value);
}

// ---- WMMA: whole tiles in every lane ------------------------------------------

// The race build (ThreadSanitizer) does not watch the WMMA functions' own
// accesses: every lane of the emulation copies whole tiles, where on the
// GPU each lane touches its share. Instead each lane reports its share of
// the tile in memory: lane l has the 8 elements at p + (l / 2) * ld +
// (l % 2) * 8 (half a row of a row-major tile, half a column of a
// column-major one).
#if defined(__SANITIZE_THREAD__)  // __tsan_*_range are the compiler's built-ins there
#define EMU_UNWATCHED __attribute__((no_sanitize_thread))
#define EMU_SHARE(p, ld, bytes, write)                                                 \
    do {                                                                               \
        int l_ = emu::lane_id();                                                       \
        void *s_ = (void *)((p) + (size_t)(l_ / 2) * (ld) + (l_ % 2) * 8);             \
        if (write)                                                                     \
            __tsan_write_range(s_, 8 * (long)(bytes));                                 \
        else                                                                           \
            __tsan_read_range(s_, 8 * (long)(bytes));                                  \
    } while (0)
#else
#define EMU_UNWATCHED
#define EMU_SHARE(p, ld, bytes, write) ((void)0)
#endif

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    enum { num_elements = 256 };
    T x[256];
};

template <typename T>
static inline float emu_f(T v) { return (float)v; }
static inline float emu_f(__nv_bfloat16 v) { return __bfloat162float(v); }

// Element i (row i / 16, column i % 16) of a tile at p.
template <typename T>
static inline T *emu_at(T *p, int i, unsigned ld, bool col) {
    return col ? p + (size_t)(i % 16) * ld + i / 16 : p + (size_t)(i / 16) * ld + i % 16;
}

// Every lane loads the whole tile; its share is reported to the race build.
template <typename T>
EMU_UNWATCHED static inline void emu_load(T *x, const T *p, unsigned ld, bool col) {
    emu::warp_step();
    for (int i = 0; i < 256; i++) x[i] = *emu_at(p, i, ld, col);
    EMU_SHARE(p, ld, sizeof(T), false);
    emu::warp_step();
}

// A or B tile from memory: element (r, c) of the 16 x 16 tile.
template <typename Use, typename T, typename L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ld) {
    emu_load(f.x, p, ld, std::is_same<L, col_major>::value);
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f,
                                    const float *p, unsigned ld, layout_t l) {
    emu_load(f.x, p, ld, l == mem_col_major);
}
// Each lane stores only its share, as on the GPU one lane writes each
// element: reading another lane's share needs a __syncwarp first, and the
// race build says so when it is missing.
EMU_UNWATCHED static inline void store_matrix_sync(
    float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ld, layout_t l) {
    emu::warp_step();
    int line = emu::lane_id() / 2, first = emu::lane_id() % 2 * 8;
    for (int j = first; j < first + 8; j++)  // memory position (line, j)
        p[(size_t)line * ld + j] = l == mem_col_major ? f.x[j * 16 + line] : f.x[line * 16 + j];
    EMU_SHARE(p, ld, sizeof *p, true);
    emu::warp_step();
}
template <typename Use, typename T, typename L>
EMU_UNWATCHED void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, T v) {
    for (int i = 0; i < 256; i++) f.x[i] = v;
}
// The warp's product into a lane's fragment: a loop the compiler keeps, not
// memcpy, which ThreadSanitizer intercepts (and watches, at a cost) even in
// unwatched functions.
EMU_UNWATCHED __attribute__((optimize("no-tree-loop-distribute-patterns"))) static inline void
emu_tile_copy(float *dst, const float *src) {
    for (int i = 0; i < 256; i++) dst[i] = src[i];
}
// d = a b + c, fp32 products and sums (the tensor cores' order differs),
// computed once per warp by its leader and copied into every lane.
template <typename T, typename LA, typename LB>
EMU_UNWATCHED void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                            const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c) {
    emu::warp_step();
    float *out = emu::warp_tile();
    if (emu::warp_leader()) {
        float fa[256], fb[256];
        for (int i = 0; i < 256; i++) fa[i] = emu_f(a.x[i]), fb[i] = emu_f(b.x[i]);
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) {
                float s = c.x[i * 16 + j];
                for (int k = 0; k < 16; k++) s += fa[i * 16 + k] * fb[k * 16 + j];
                out[i * 16 + j] = s;
            }
    }
    emu::warp_step();
    emu_tile_copy(d.x, out);
    emu::warp_step();  // the tile is not reused before every lane has its copy
}
}  // namespace wmma
}  // namespace nvcuda

#endif

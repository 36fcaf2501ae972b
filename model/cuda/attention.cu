// attention.cu: causal multi-head self-attention on tensor cores, forward and
// backward, the FlashAttention-2 way: the T x T matrix of scores never leaves
// the chip. Layout as the CPU twin (model/cpu/attention.c): qkv (B, T, 3C)
// with q, k, v side by side, head h the channels [h*hs, (h+1)*hs) of each;
// out (B, T, C); scale 1/sqrt(hs); lse (B, NH, T) the natural log-sum-exp of
// each query row's scaled scores, which is all backward needs to rebuild P.
//
// Tiles: a block of 4 warps takes 64 rows (queries in the forward and the dQ
// pass, keys in the dK/dV pass) and walks 64-row tiles of the other side.
// Each warp owns 16 consecutive rows of the block's 64: it alone computes
// their 16 x 64 strip of scores with WMMA (bf16 16x16x16, fp32 accumulate),
// keeps their 16 x hs output rows in accumulator fragments for the whole
// walk, and writes them out at the end. The tiles it reads (K and V, or Q
// and dO) are shared by the block and double-buffered in shared memory with
// cp.async, so the next tile loads while this one is computed. Causality:
// only tiles at or below the diagonal are visited; inside the diagonal tile
// keys after the query are masked. Rows past T are zero-filled on load and
// never written back, so any T >= 1 works.
//
// Softmax: WMMA's fragment layout is opaque, so a warp's scores go through
// its own shared strip (fp32), where two lanes own each of its 16 rows
// (lane = 2*row + half; half takes the column pairs 4c + 2*half, 4c + 2*half
// + 1, which makes the float2 reads conflict-free). Those lanes compute the
// row's max and sums (log2 domain, exp2f) and write P as bf16 for the next
// WMMA. The per-row rescaling of the accumulators uses each lane's row
// numbers of its fragment elements, learned once by loading a matrix of row
// indices into a fragment (load_matrix_sync and mma_sync agree on the layout).
//
// Backward (deterministic, no atomics; each output element written by one
// block, OVERWRITING dqkv): delta = rowsum(dout * out); then one pass per key
// tile that accumulates dV += P^T dO and dK += dS^T Q * scale over the query
// tiles at or below the diagonal, and one pass per query tile that
// accumulates dQ = dS K * scale over its key tiles, where P = exp(S*scale -
// lse) is rebuilt from the saved lse and dS = P * (dO V^T - delta).
#include <math.h>
#include <mma.h>
#include "cuda_common.cuh"

using namespace nvcuda;

#define ATT_TILE 64                  // rows of a tile: queries or keys
#define ATT_WARPS 4                  // warps of a block, 16 rows each
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_SLD (ATT_TILE + 4)       // fp32 stride of a warp's 16 x 64 strip
#define ATT_PLD (ATT_TILE + 8)       // bf16 stride of a warp's 16 x 64 strip
#define ATT_SMEM_SM80 166912         // the most dynamic shared memory sm_80 allows
#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f

typedef __nv_bfloat162 bf162;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBT;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Shared memory of the three kernels, in bytes. A tile is 64 rows of hs bf16
// padded to HS + 8 (16 bytes: consecutive rows start 4 banks apart, so the
// 8-row phases of WMMA loads do not collide). Every region is a multiple of
// 128 bytes, so every WMMA pointer below is 32-byte aligned.
template <int HS>
struct AttLayout {
    static constexpr int LD = HS + 8;   // bf16 stride of a shared tile
    static constexpr int OLD = HS + 4;  // fp32 stride of a warp's output staging
    static constexpr size_t TILE_B = (size_t)ATT_TILE * LD * sizeof(bf16);
    static constexpr size_t STRIP_F = 16 * ATT_SLD * sizeof(float);
    static constexpr size_t STRIP_H = 16 * ATT_PLD * sizeof(bf16);
    static constexpr size_t STATS_B = ATT_TILE * sizeof(float);
    // forward: Q, K x2, V x2; per warp scores, P and 16 row factors (padded)
    static constexpr size_t FWD_WARP = STRIP_F + STRIP_H + 128;
    static constexpr size_t FWD = 5 * TILE_B + ATT_WARPS * FWD_WARP;
    // dK/dV: K, V, Q x2, dO x2, lse x2, delta x2; per warp S^T, dP^T, P^T, dS^T
    static constexpr size_t KV_WARP = 2 * STRIP_F + 2 * STRIP_H;
    static constexpr size_t KV = 6 * TILE_B + 4 * STATS_B + ATT_WARPS * KV_WARP;
    // dQ: Q, dO, K x2, V x2, lse, delta; per warp S, dP, dS
    static constexpr size_t Q_WARP = 2 * STRIP_F + STRIP_H;
    static constexpr size_t Q = 6 * TILE_B + 2 * STATS_B + ATT_WARPS * Q_WARP;
    // the final 16 x hs fp32 rows of every warp are staged in two freed tiles
    static constexpr size_t STAGE = (size_t)ATT_WARPS * 16 * OLD * sizeof(float);
    static_assert(TILE_B % 128 == 0 && FWD_WARP % 128 == 0 && KV_WARP % 128 == 0 &&
                  Q_WARP % 128 == 0 && STATS_B % 128 == 0, "128-byte regions");
    static_assert(STAGE <= 2 * TILE_B, "output staging fits in two tiles");
    static_assert(FWD <= ATT_SMEM_SM80 && KV <= ATT_SMEM_SM80 && Q <= ATT_SMEM_SM80,
                  "fits sm_80's shared memory");
};
static_assert(ATT_THREADS == 2 * ATT_TILE, "load_stats: one thread per lse and delta");

// ---- cp.async (sm_80+): 16 bytes global -> shared, bypassing registers ----

#ifdef GPT_CU_EMU  // the CPU emulation of tests/emu: the same three steps, queued
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    emu::cp_async(dst, src, 16, valid);
}
__device__ __forceinline__ void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    emu::cp_async_wait(N);
}
#else
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    int bytes = valid ? 16 : 0;  // 0: read nothing, fill 16 zero bytes
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

// Rows row0 .. row0+63 of one head's slice (row t at src + t * stride) into a
// shared tile, 16 bytes per thread and step, consecutive threads along a row.
// Rows at or past T become zeros: padded keys and queries then give finite
// scores, and P = 0 times a padded V row stays 0 (garbage could be NaN).
template <int HS>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, long stride, int row0,
                                          int T) {
    constexpr int CHUNKS = HS / 8;
    for (int idx = threadIdx.x; idx < ATT_TILE * CHUNKS; idx += ATT_THREADS) {
        const int r = idx / CHUNKS, c = (idx % CHUNKS) * 8, t = row0 + r;
        const bool valid = t < T;
        cp_async16(dst + r * AttLayout<HS>::LD + c, src + (long)(valid ? t : 0) * stride + c,
                   valid);
    }
}

// lse (times log2 e, for exp2f) and delta of rows row0 .. row0+63 of one
// (b, h) into shared memory, 0 past T: threads 0..63 take lse, 64..127 delta.
__device__ __forceinline__ void load_stats(float *slse, float *sdelta, const float *lse,
                                           const float *delta, int row0, int T) {
    const int r = threadIdx.x % ATT_TILE, t = row0 + r;
    if (threadIdx.x < ATT_TILE)
        slse[r] = t < T ? lse[t] * ATT_LOG2E : 0.0f;
    else
        sdelta[r] = t < T ? delta[t] : 0.0f;
}

// ---- warp-level pieces: one warp, its 16 rows ----------------------------

// Which row (0..15) of its 16 x 16 tile each of this lane's accumulator
// elements holds: a matrix whose entries are their row numbers, loaded into a
// fragment. scratch: the warp's fp32 strip, free at this point.
__device__ void warp_row_ids(FragC &rows, float *scratch) {
    const int lane = threadIdx.x % 32;
    for (int idx = lane; idx < 256; idx += 32)
        scratch[(idx / 16) * ATT_SLD + idx % 16] = (float)(idx / 16);
    __syncwarp();
    wmma::load_matrix_sync(rows, scratch, ATT_SLD, wmma::mem_row_major);
    __syncwarp();
}

// out (16 x 64 fp32, stride ATT_SLD) = A B^T, A the warp's 16 rows (a) and B
// the 64 rows of a tile (b), both hs wide, bf16 with the tile stride: a
// strip of scores or of dP. B^T is B read column-major.
template <int HS>
__device__ __forceinline__ void warp_abt(float *out, const bf16 *a, const bf16 *b) {
    constexpr int LD = AttLayout<HS>::LD;
    FragC acc[ATT_TILE / 16];
#pragma unroll
    for (int n = 0; n < ATT_TILE / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
    for (int k = 0; k < HS / 16; k++) {
        FragA fa;
        wmma::load_matrix_sync(fa, a + k * 16, LD);
#pragma unroll
        for (int n = 0; n < ATT_TILE / 16; n++) {
            FragBT fb;
            wmma::load_matrix_sync(fb, b + n * 16 * LD + k * 16, LD);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
#pragma unroll
    for (int n = 0; n < ATT_TILE / 16; n++)
        wmma::store_matrix_sync(out + n * 16, acc[n], ATT_SLD, wmma::mem_row_major);
}

// acc (16 x hs) += P B: P the warp's 16 x 64 bf16 strip (stride ATT_PLD), B
// a 64 x hs tile.
template <int HS>
__device__ __forceinline__ void warp_ab_acc(FragC (&acc)[HS / 16], const bf16 *p,
                                            const bf16 *b) {
    constexpr int LD = AttLayout<HS>::LD;
#pragma unroll
    for (int k = 0; k < ATT_TILE / 16; k++) {
        FragA fa;
        wmma::load_matrix_sync(fa, p + k * 16, ATT_PLD);
#pragma unroll
        for (int n = 0; n < HS / 16; n++) {
            FragB fb;
            wmma::load_matrix_sync(fb, b + k * 16 * LD + n * 16, LD);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
}

// Multiplies each of the warp's 16 rows of acc by rowv[row].
template <int N>
__device__ __forceinline__ void warp_scale_rows(FragC (&acc)[N], const FragC &rows,
                                                const float *rowv) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < acc[n].num_elements; e++) acc[n].x[e] *= rowv[(int)rows.x[e]];
}

// Writes the warp's 16 x hs accumulators as bf16 rows t0 .. t0+15 (those
// before T) of dst (row t at dst + t * stride), staged through fp32 shared
// memory so that global stores are 16 bytes wide.
template <int HS>
__device__ void warp_store_rows(bf16 *dst, long stride, int t0, int T, FragC (&acc)[HS / 16],
                                float *stage) {
    constexpr int OLD = AttLayout<HS>::OLD, CHUNKS = HS / 8;
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < HS / 16; n++)
        wmma::store_matrix_sync(stage + n * 16, acc[n], OLD, wmma::mem_row_major);
    __syncwarp();
    for (int idx = lane; idx < 16 * CHUNKS; idx += 32) {
        const int r = idx / CHUNKS, c = (idx % CHUNKS) * 8;
        if (t0 + r >= T) continue;
        const float4 lo = *reinterpret_cast<const float4 *>(stage + r * OLD + c);
        const float4 hi = *reinterpret_cast<const float4 *>(stage + r * OLD + c + 4);
        bf16x8 v;
        v.v[0] = __float2bfloat16_rn(lo.x), v.v[1] = __float2bfloat16_rn(lo.y);
        v.v[2] = __float2bfloat16_rn(lo.z), v.v[3] = __float2bfloat16_rn(lo.w);
        v.v[4] = __float2bfloat16_rn(hi.x), v.v[5] = __float2bfloat16_rn(hi.y);
        v.v[6] = __float2bfloat16_rn(hi.z), v.v[7] = __float2bfloat16_rn(hi.w);
        store8(dst + (long)(t0 + r) * stride + c, v);
    }
    __syncwarp();
}

// ---- forward ---------------------------------------------------------------

// One key tile of the online softmax, for the lane's half of query row i:
// scores (srow, unscaled) times sc2 = scale * log2 e, keys j > i masked;
// updates the row's running max m and sum l (both lanes of the row agree),
// writes P = exp2(x - m) as bf16 and returns exp2(m_old - m), the factor by
// which the row's O must shrink. m starts at -inf, so the first factor is 0;
// key jbase <= i is always visible, so m is finite after the first tile.
__device__ __forceinline__ float softmax_tile(bf16 *prow, const float *srow, int half,
                                              int jbase, int i, float sc2, float &m,
                                              float &l) {
    float x[ATT_TILE / 2], mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < ATT_TILE / 4; c++) {
        const int col = 4 * c + 2 * half;
        const float2 s = *reinterpret_cast<const float2 *>(srow + col);
        x[2 * c] = jbase + col <= i ? s.x * sc2 : -INFINITY;
        x[2 * c + 1] = jbase + col + 1 <= i ? s.y * sc2 : -INFINITY;
        mx = fmaxf(mx, fmaxf(x[2 * c], x[2 * c + 1]));
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mnew = fmaxf(m, mx), alpha = exp2f(m - mnew);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < ATT_TILE / 4; c++) {
        const float p0 = exp2f(x[2 * c] - mnew), p1 = exp2f(x[2 * c + 1] - mnew);
        sum += p0 + p1;
        *reinterpret_cast<bf162 *>(prow + 4 * c + 2 * half) = __floats2bfloat162_rn(p0, p1);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = mnew;
    return alpha;
}

// Block (query tile, b*NH + h). Query tiles run in reverse order of blockIdx.x
// so that the longest rows (most key tiles) start first. Warp w owns queries
// qt*64 + 16w .. +15: their scores, softmax state and O accumulators.
template <int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_forward(bf16 *out, float *lse, const bf16 *qkv, int T, int C, int NH, float sc2) {
    using L = AttLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16 *sq = reinterpret_cast<bf16 *>(smem);
    bf16 *sk = reinterpret_cast<bf16 *>(smem + L::TILE_B);      // two buffers
    bf16 *sv = reinterpret_cast<bf16 *>(smem + 3 * L::TILE_B);  // two buffers
    unsigned char *wsm = smem + 5 * L::TILE_B + warp * L::FWD_WARP;
    float *ss = reinterpret_cast<float *>(wsm);
    bf16 *sp = reinterpret_cast<bf16 *>(wsm + L::STRIP_F);
    float *rowv = reinterpret_cast<float *>(wsm + L::STRIP_F + L::STRIP_H);

    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const long C3 = 3L * C;
    const bf16 *q_g = qkv + (long)b * T * C3 + h * HS, *k_g = q_g + C, *v_g = q_g + 2 * C;
    load_tile<HS>(sq, q_g, C3, qt * ATT_TILE, T);
    load_tile<HS>(sk, k_g, C3, 0, T);
    load_tile<HS>(sv, v_g, C3, 0, T);
    cp_async_commit();

    FragC rows, o[HS / 16];
    warp_row_ids(rows, ss);
#pragma unroll
    for (int n = 0; n < HS / 16; n++) wmma::fill_fragment(o[n], 0.0f);
    const int r = lane / 2, half = lane % 2, i = qt * ATT_TILE + warp * 16 + r;
    float m = -INFINITY, l = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        if (kt < qt) {  // prefetch the next key tile into the other buffer
            const int nb = (kt + 1) % 2;
            load_tile<HS>(sk + nb * ATT_TILE * L::LD, k_g, C3, (kt + 1) * ATT_TILE, T);
            load_tile<HS>(sv + nb * ATT_TILE * L::LD, v_g, C3, (kt + 1) * ATT_TILE, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *kb = sk + (kt % 2) * ATT_TILE * L::LD, *vb = sv + (kt % 2) * ATT_TILE * L::LD;
        warp_abt<HS>(ss, sq + warp * 16 * L::LD, kb);
        __syncwarp();
        const float alpha = softmax_tile(sp + r * ATT_PLD, ss + r * ATT_SLD, half,
                                         kt * ATT_TILE, i, sc2, m, l);
        if (half == 0) rowv[r] = alpha;
        __syncwarp();
        warp_scale_rows(o, rows, rowv);
        warp_ab_acc<HS>(o, sp, vb);
        __syncthreads();  // every warp is done with this buffer before it is refilled
    }
    if (half == 0) {
        rowv[r] = 1.0f / l;
        if (i < T) lse[(long)bh * T + i] = (m + log2f(l)) * ATT_LN2;
    }
    __syncwarp();
    warp_scale_rows(o, rows, rowv);
    // The K buffers are free since the loop's last __syncthreads.
    float *stage = reinterpret_cast<float *>(sk) + warp * 16 * L::OLD;
    warp_store_rows<HS>(out + (long)b * T * C + h * HS, C, qt * ATT_TILE + warp * 16, T, o,
                        stage);
}

// ---- backward --------------------------------------------------------------

// delta[b,h,t] = sum over the head's channels of dout * out. A group of HS/8
// lanes takes one (b, t, h) row of hs channels (row index (b*T + t)*NH + h,
// which is also its offset / hs in dout and out), 8 channels per lane.
template <int HS>
__global__ void attn_delta(float *delta, const bf16 *dout, const bf16 *out, int T, int NH,
                           long rows) {
    constexpr int G = HS / 8;
    const long g = (long)blockIdx.x * blockDim.x + threadIdx.x, row = g / G;
    const int part = (int)(g % G);
    float s = 0.0f;
    if (row < rows) {
        const bf16x8 a = load8(dout + row * HS + part * 8), o = load8(out + row * HS + part * 8);
#pragma unroll
        for (int e = 0; e < 8; e++) s += __bfloat162float(a.v[e]) * __bfloat162float(o.v[e]);
    }
#pragma unroll
    for (int off = G / 2; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (row < rows && part == 0) {
        const long bt = row / NH, b = bt / T;
        const int h = (int)(row % NH), t = (int)(bt % T);
        delta[(b * NH + h) * T + t] = s;
    }
}

// The lane's half of key row j of P^T and dS^T against the query tile at
// ibase: p = exp2(s * sc2 - lse2[i]) for T > i >= j, else 0; ds = p * (dp -
// delta[i]). lse2 and delta are the tile's 64 shared values.
__device__ __forceinline__ void ds_strip_kv(bf16 *prow, bf16 *dsrow, const float *srow,
                                            const float *dprow, const float *lse2,
                                            const float *delta, int half, int ibase, int j,
                                            int T, float sc2) {
#pragma unroll
    for (int c = 0; c < ATT_TILE / 4; c++) {
        const int col = 4 * c + 2 * half, i = ibase + col;
        const float2 s = *reinterpret_cast<const float2 *>(srow + col);
        const float2 dp = *reinterpret_cast<const float2 *>(dprow + col);
        const float p0 = (i < T && i >= j) ? exp2f(s.x * sc2 - lse2[col]) : 0.0f;
        const float p1 = (i + 1 < T && i + 1 >= j) ? exp2f(s.y * sc2 - lse2[col + 1]) : 0.0f;
        *reinterpret_cast<bf162 *>(prow + col) = __floats2bfloat162_rn(p0, p1);
        *reinterpret_cast<bf162 *>(dsrow + col) =
            __floats2bfloat162_rn(p0 * (dp.x - delta[col]), p1 * (dp.y - delta[col + 1]));
    }
}

// Block (key tile kt, b*NH + h): walks the query tiles kt .. last. Warp w
// owns keys kt*64 + 16w .. +15: it computes their strips S^T = K_w Q^T and
// dP^T = V_w dO^T, turns them into P^T and dS^T, and keeps dK_w and dV_w in
// accumulator fragments; at the end it writes its rows of the K and V slices
// of dqkv. Low kt has the most query tiles, and blockIdx.x runs low first.
template <int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_backward_kv(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                     const float *delta, int T, int C, int NH, float sc2, float scale) {
    using L = AttLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16 *sk = reinterpret_cast<bf16 *>(smem);
    bf16 *sv = reinterpret_cast<bf16 *>(smem + L::TILE_B);
    bf16 *sq = reinterpret_cast<bf16 *>(smem + 2 * L::TILE_B);   // two buffers
    bf16 *sdo = reinterpret_cast<bf16 *>(smem + 4 * L::TILE_B);  // two buffers
    float *slse = reinterpret_cast<float *>(smem + 6 * L::TILE_B);  // two buffers
    float *sdel = slse + 2 * ATT_TILE;                              // two buffers
    unsigned char *wsm = smem + 6 * L::TILE_B + 4 * L::STATS_B + warp * L::KV_WARP;
    float *ss = reinterpret_cast<float *>(wsm);
    float *sdp = reinterpret_cast<float *>(wsm + L::STRIP_F);
    bf16 *sp = reinterpret_cast<bf16 *>(wsm + 2 * L::STRIP_F);
    bf16 *sds = reinterpret_cast<bf16 *>(wsm + 2 * L::STRIP_F + L::STRIP_H);

    const int kt = blockIdx.x, nq = gridDim.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const long C3 = 3L * C;
    const bf16 *q_g = qkv + (long)b * T * C3 + h * HS, *do_g = dout + (long)b * T * C + h * HS;
    const float *lse_g = lse + (long)bh * T, *del_g = delta + (long)bh * T;
    load_tile<HS>(sk, q_g + C, C3, kt * ATT_TILE, T);
    load_tile<HS>(sv, q_g + 2 * C, C3, kt * ATT_TILE, T);
    load_tile<HS>(sq, q_g, C3, kt * ATT_TILE, T);
    load_tile<HS>(sdo, do_g, C, kt * ATT_TILE, T);
    load_stats(slse, sdel, lse_g, del_g, kt * ATT_TILE, T);
    cp_async_commit();

    FragC dk[HS / 16], dv[HS / 16];
#pragma unroll
    for (int n = 0; n < HS / 16; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }
    const int r = lane / 2, half = lane % 2, j = kt * ATT_TILE + warp * 16 + r;
    const bf16 *kw = sk + warp * 16 * L::LD, *vw = sv + warp * 16 * L::LD;
    for (int qt = kt; qt < nq; qt++) {
        const int buf = (qt - kt) % 2;
        if (qt + 1 < nq) {  // prefetch the next query tile into the other buffers
            const int nb = 1 - buf, row0 = (qt + 1) * ATT_TILE;
            load_tile<HS>(sq + nb * ATT_TILE * L::LD, q_g, C3, row0, T);
            load_tile<HS>(sdo + nb * ATT_TILE * L::LD, do_g, C, row0, T);
            load_stats(slse + nb * ATT_TILE, sdel + nb * ATT_TILE, lse_g, del_g, row0, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *qb = sq + buf * ATT_TILE * L::LD, *dob = sdo + buf * ATT_TILE * L::LD;
        warp_abt<HS>(ss, kw, qb);
        warp_abt<HS>(sdp, vw, dob);
        __syncwarp();
        ds_strip_kv(sp + r * ATT_PLD, sds + r * ATT_PLD, ss + r * ATT_SLD, sdp + r * ATT_SLD,
                    slse + buf * ATT_TILE, sdel + buf * ATT_TILE, half, qt * ATT_TILE, j, T,
                    sc2);
        __syncwarp();
        warp_ab_acc<HS>(dv, sp, dob);
        warp_ab_acc<HS>(dk, sds, qb);
        __syncthreads();  // every warp is done with these buffers before they are refilled
    }
#pragma unroll
    for (int n = 0; n < HS / 16; n++)
#pragma unroll
        for (int e = 0; e < dk[n].num_elements; e++) dk[n].x[e] *= scale;
    // The Q buffers are free since the loop's last __syncthreads.
    float *stage = reinterpret_cast<float *>(sq) + warp * 16 * L::OLD;
    bf16 *dk_g = dqkv + (long)b * T * C3 + C + h * HS;
    warp_store_rows<HS>(dk_g, C3, kt * ATT_TILE + warp * 16, T, dk, stage);
    warp_store_rows<HS>(dk_g + C, C3, kt * ATT_TILE + warp * 16, T, dv, stage);
}

// The lane's half of query row i of dS against the key tile at jbase:
// p = exp2(s * sc2 - lse2) for j <= i, else 0; ds = p * (dp - delta).
__device__ __forceinline__ void ds_strip_q(bf16 *dsrow, const float *srow, const float *dprow,
                                           float lse2, float delta, int half, int jbase, int i,
                                           float sc2) {
#pragma unroll
    for (int c = 0; c < ATT_TILE / 4; c++) {
        const int col = 4 * c + 2 * half, j = jbase + col;
        const float2 s = *reinterpret_cast<const float2 *>(srow + col);
        const float2 dp = *reinterpret_cast<const float2 *>(dprow + col);
        const float p0 = j <= i ? exp2f(s.x * sc2 - lse2) : 0.0f;
        const float p1 = j + 1 <= i ? exp2f(s.y * sc2 - lse2) : 0.0f;
        *reinterpret_cast<bf162 *>(dsrow + col) =
            __floats2bfloat162_rn(p0 * (dp.x - delta), p1 * (dp.y - delta));
    }
}

// Block (query tile, b*NH + h), longest rows first as in the forward: walks
// the key tiles 0 .. qt. Warp w owns queries qt*64 + 16w .. +15: it computes
// their strips S = Q_w K^T and dP = dO_w V^T, turns them into dS, keeps dQ_w
// in accumulator fragments, and writes its rows of the Q slice of dqkv.
template <int HS>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_backward_q(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                    const float *delta, int T, int C, int NH, float sc2, float scale) {
    using L = AttLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16 *sq = reinterpret_cast<bf16 *>(smem);
    bf16 *sdo = reinterpret_cast<bf16 *>(smem + L::TILE_B);
    bf16 *sk = reinterpret_cast<bf16 *>(smem + 2 * L::TILE_B);  // two buffers
    bf16 *sv = reinterpret_cast<bf16 *>(smem + 4 * L::TILE_B);  // two buffers
    float *slse = reinterpret_cast<float *>(smem + 6 * L::TILE_B);
    float *sdel = slse + ATT_TILE;
    unsigned char *wsm = smem + 6 * L::TILE_B + 2 * L::STATS_B + warp * L::Q_WARP;
    float *ss = reinterpret_cast<float *>(wsm);
    float *sdp = reinterpret_cast<float *>(wsm + L::STRIP_F);
    bf16 *sds = reinterpret_cast<bf16 *>(wsm + 2 * L::STRIP_F);

    const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const long C3 = 3L * C;
    const bf16 *q_g = qkv + (long)b * T * C3 + h * HS, *k_g = q_g + C, *v_g = q_g + 2 * C;
    load_tile<HS>(sq, q_g, C3, qt * ATT_TILE, T);
    load_tile<HS>(sdo, dout + (long)b * T * C + h * HS, C, qt * ATT_TILE, T);
    load_tile<HS>(sk, k_g, C3, 0, T);
    load_tile<HS>(sv, v_g, C3, 0, T);
    load_stats(slse, sdel, lse + (long)bh * T, delta + (long)bh * T, qt * ATT_TILE, T);
    cp_async_commit();

    FragC dq[HS / 16];
#pragma unroll
    for (int n = 0; n < HS / 16; n++) wmma::fill_fragment(dq[n], 0.0f);
    const int r = lane / 2, half = lane % 2, i = qt * ATT_TILE + warp * 16 + r;
    const bf16 *qw = sq + warp * 16 * L::LD, *dow = sdo + warp * 16 * L::LD;
    for (int kt = 0; kt <= qt; kt++) {
        if (kt < qt) {  // prefetch the next key tile into the other buffers
            const int nb = (kt + 1) % 2;
            load_tile<HS>(sk + nb * ATT_TILE * L::LD, k_g, C3, (kt + 1) * ATT_TILE, T);
            load_tile<HS>(sv + nb * ATT_TILE * L::LD, v_g, C3, (kt + 1) * ATT_TILE, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *kb = sk + (kt % 2) * ATT_TILE * L::LD, *vb = sv + (kt % 2) * ATT_TILE * L::LD;
        warp_abt<HS>(ss, qw, kb);
        warp_abt<HS>(sdp, dow, vb);
        __syncwarp();
        ds_strip_q(sds + r * ATT_PLD, ss + r * ATT_SLD, sdp + r * ATT_SLD,
                   slse[warp * 16 + r], sdel[warp * 16 + r], half, kt * ATT_TILE, i, sc2);
        __syncwarp();
        warp_ab_acc<HS>(dq, sds, kb);
        __syncthreads();  // every warp is done with these buffers before they are refilled
    }
#pragma unroll
    for (int n = 0; n < HS / 16; n++)
#pragma unroll
        for (int e = 0; e < dq[n].num_elements; e++) dq[n].x[e] *= scale;
    // The K buffers are free since the loop's last __syncthreads.
    float *stage = reinterpret_cast<float *>(sk) + warp * 16 * L::OLD;
    warp_store_rows<HS>(dqkv + (long)b * T * C3 + h * HS, C3, qt * ATT_TILE + warp * 16, T, dq,
                        stage);
}

// ---- launchers -------------------------------------------------------------

static gpt_status att_check(const char *fn, int B, int T, int C, int NH, gpt_error_t err) {
    if (B < 1 || T < 1 || C < 1 || NH < 1 || C % NH != 0) {
        snprintf(err, GPT_ERRLEN, "%s: bad shape B=%d T=%d C=%d NH=%d (C must split into NH heads)",
                 fn, B, T, C, NH);
        return GPT_ERR_CONFIG;
    }
    if (C / NH != 64 && C / NH != 128) {
        snprintf(err, GPT_ERRLEN, "%s: head size %d (C=%d / NH=%d) is not supported (64 or 128)",
                 fn, C / NH, C, NH);
        return GPT_ERR_CONFIG;
    }
    if ((long)B * NH > 65535) {
        snprintf(err, GPT_ERRLEN, "%s: B*NH = %ld exceeds the grid limit of 65535", fn,
                 (long)B * NH);
        return GPT_ERR_CONFIG;
    }
    return GPT_OK;
}

// The 16-byte loads and stores need 16-byte aligned base pointers.
static gpt_status att_aligned(const char *fn, const char *name, const void *p, gpt_error_t err) {
    if (((uintptr_t)p & 15u) == 0) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s: %s (%p) is not 16-byte aligned", fn, name, p);
    return GPT_ERR_CONFIG;
}

// The kernels' tiles need up to 155 KiB of shared memory per block: A100,
// H100 and H200 (compute capability 8.0 and 9.x) have it; 8.6 and 8.9 cards
// (RTX 30/40, A10, L4, L40S) allow 99 KiB, which is a clear error here.
static gpt_status att_room(gpt_cu_ctx *ctx, size_t bytes, const char *fn, gpt_error_t err) {
    int most = 0;
    CU_TRY(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx->device),
           fn);
    if (bytes <= (size_t)most) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s needs %zu KiB of shared memory per block and device %d "
             "allows %d KiB: the CUDA backend supports compute capability 8.0 and 9.x "
             "(A100, H100, H200)", fn, bytes / 1024, ctx->device, most / 1024);
    return GPT_ERR_CONFIG;
}

template <typename K>
static gpt_status att_smem(gpt_cu_ctx *ctx, K kernel, size_t bytes, const char *fn,
                           gpt_error_t err) {
    gpt_status st = att_room(ctx, bytes, fn, err);
    if (st != GPT_OK) return st;
    CU_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
           fn);
    return GPT_OK;
}

// The largest of the three kernels' shared memory, checked up front.
template <int HS>
static gpt_status att_fits(gpt_cu_ctx *ctx, gpt_error_t err) {
    typedef AttLayout<HS> L;
    size_t most = L::FWD > L::KV ? L::FWD : L::KV;
    return att_room(ctx, most > L::Q ? most : L::Q, "attention", err);
}

extern "C" gpt_status gpt_cu_attention_fits(gpt_cu_ctx *ctx, int hs, gpt_error_t err) {
    return hs == 64 ? att_fits<64>(ctx, err) : att_fits<128>(ctx, err);
}

static int att_tiles(int T) { return (T + ATT_TILE - 1) / ATT_TILE; }

template <int HS>
static gpt_status att_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, float *lse, const gpt_bf16 *qkv,
                              int B, int T, int C, int NH, gpt_error_t err) {
    const char *fn = "attention_forward";
    const size_t smem = AttLayout<HS>::FWD;
    gpt_status st = att_smem(ctx, attn_forward<HS>, smem, fn, err);
    if (st != GPT_OK) return st;
    const float sc2 = ATT_LOG2E / sqrtf((float)HS);
    attn_forward<HS><<<dim3(att_tiles(T), B * NH), ATT_THREADS, smem, ctx->stream>>>(
        dev_bf16(out), lse, dev_bf16(qkv), T, C, NH, sc2);
    return cu_launched(fn, err);
}

extern "C" gpt_status gpt_cu_attention_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, float *lse,
                                               const gpt_bf16 *qkv, int B, int T, int C, int NH,
                                               gpt_error_t err) {
    const char *fn = "attention_forward";
    gpt_status st = att_check(fn, B, T, C, NH, err);
    if (st == GPT_OK) st = att_aligned(fn, "qkv", qkv, err);
    if (st == GPT_OK) st = att_aligned(fn, "out", out, err);
    if (st != GPT_OK) return st;
    return C / NH == 64 ? att_forward<64>(ctx, out, lse, qkv, B, T, C, NH, err)
                        : att_forward<128>(ctx, out, lse, qkv, B, T, C, NH, err);
}

template <int HS>
static gpt_status att_backward(gpt_cu_ctx *ctx, gpt_bf16 *dqkv, float *delta,
                               const gpt_bf16 *dout, const gpt_bf16 *qkv, const gpt_bf16 *out,
                               const float *lse, int B, int T, int C, int NH, gpt_error_t err) {
    const long rows = (long)B * T * NH;
    const size_t threads = (size_t)rows * (HS / 8);
    attn_delta<HS><<<cu_blocks(threads, 256), 256, 0, ctx->stream>>>(
        delta, dev_bf16(dout), dev_bf16(out), T, NH, rows);
    gpt_status st = cu_launched("attention_backward (delta)", err);
    if (st == GPT_OK)
        st = att_smem(ctx, attn_backward_kv<HS>, AttLayout<HS>::KV,
                      "attention_backward (dk, dv)", err);
    if (st == GPT_OK)
        st = att_smem(ctx, attn_backward_q<HS>, AttLayout<HS>::Q, "attention_backward (dq)", err);
    if (st != GPT_OK) return st;
    const float scale = 1.0f / sqrtf((float)HS), sc2 = scale * ATT_LOG2E;
    const dim3 grid(att_tiles(T), B * NH);
    attn_backward_kv<HS><<<grid, ATT_THREADS, AttLayout<HS>::KV, ctx->stream>>>(
        dev_bf16(dqkv), dev_bf16(dout), dev_bf16(qkv), lse, delta, T, C, NH, sc2, scale);
    st = cu_launched("attention_backward (dk, dv)", err);
    if (st != GPT_OK) return st;
    attn_backward_q<HS><<<grid, ATT_THREADS, AttLayout<HS>::Q, ctx->stream>>>(
        dev_bf16(dqkv), dev_bf16(dout), dev_bf16(qkv), lse, delta, T, C, NH, sc2, scale);
    return cu_launched("attention_backward (dq)", err);
}

extern "C" gpt_status gpt_cu_attention_backward(gpt_cu_ctx *ctx, gpt_bf16 *dqkv, float *delta,
                                                const gpt_bf16 *dout, const gpt_bf16 *qkv,
                                                const gpt_bf16 *out, const float *lse, int B,
                                                int T, int C, int NH, gpt_error_t err) {
    const char *fn = "attention_backward";
    gpt_status st = att_check(fn, B, T, C, NH, err);
    if (st == GPT_OK) st = att_aligned(fn, "dqkv", dqkv, err);
    if (st == GPT_OK) st = att_aligned(fn, "dout", dout, err);
    if (st == GPT_OK) st = att_aligned(fn, "qkv", qkv, err);
    if (st == GPT_OK) st = att_aligned(fn, "out", out, err);
    if (st != GPT_OK) return st;
    return C / NH == 64
               ? att_backward<64>(ctx, dqkv, delta, dout, qkv, out, lse, B, T, C, NH, err)
               : att_backward<128>(ctx, dqkv, delta, dout, qkv, out, lse, B, T, C, NH, err);
}

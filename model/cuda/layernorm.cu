// layernorm.cu: LayerNorm forward (alone and fused with the residual add
// before it), its backward, and the residual add.
//
// Geometry, shared by every LayerNorm kernel here: a row of C channels is a
// "slot" of U = C/8 threads rounded up to whole warps, each thread holding
// 8 consecutive channels in registers (one 16-byte load per tensor), so any
// C up to 8192 is read from memory once. A block stacks R slots (R rows in
// flight) so that blocks of narrow rows still have ~256 threads. Row sums go
// through warp shuffles and then the slot's warps in a fixed order, so every
// thread of a row sees the same bits and results do not depend on timing.
// Statistics are two-pass in fp32 on the register copy (no E[x^2] - E[x]^2
// cancellation), with torch's biased variance and eps 1e-5.
//
// The backward's dw and db are sums over all N rows. Without atomics: each
// of at most GPT_CU_PARTIAL_ROWS blocks owns a fixed range of rows, its
// threads keep their channels' sums in registers, and the block leaves one
// fp32 partial row (dw then db, 2C floats) in ctx->scratch; a second kernel
// adds the partials in block order into the bf16 dw and db.
#include "cuda_common.cuh"

#define LN_MAX_C 8192
#define LN_EPS 1e-5f
#define LN_SLOT_THREADS 256  // a block holds R rows of U threads, R*U ~ this when U is small
#define PSUM_LANES 16        // partial-sum kernel: threads summing one channel's partials

static gpt_status ln_check(const char *fn, int N, int C, gpt_error_t err) {
    if (C < 8 || C > LN_MAX_C || C % 8 != 0) {
        snprintf(err, GPT_ERRLEN, "%s: C = %d unsupported (a multiple of 8 in [8, %d])", fn,
                 C, LN_MAX_C);
        return GPT_ERR_CONFIG;
    }
    if (N < 1) {
        snprintf(err, GPT_ERRLEN, "%s: N = %d rows (must be >= 1)", fn, N);
        return GPT_ERR_CONFIG;
    }
    return GPT_OK;
}

// The 16-byte loads and stores need 16-byte aligned base pointers.
static gpt_status ln_aligned(const char *fn, const char *name, const void *p, gpt_error_t err) {
    if (((uintptr_t)p & 15u) == 0) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s: %s (%p) is not 16-byte aligned", fn, name, p);
    return GPT_ERR_CONFIG;
}

// Block shape for rows of C channels: x = the slot (U threads), y = R rows.
static dim3 ln_block(int C) {
    const int u = (C / 8 + 31) / 32 * 32;
    const int r = u >= LN_SLOT_THREADS ? 1 : LN_SLOT_THREADS / u;
    return dim3(u, r);
}

__device__ __forceinline__ void load8f(float *x, const bf16 *p) {
    bf16x8 v = load8(p);
#pragma unroll
    for (int k = 0; k < 8; k++) x[k] = __bfloat162float(v.v[k]);
}

__device__ __forceinline__ float2 operator+(float2 a, float2 b) {
    return make_float2(a.x + b.x, a.y + b.y);
}
__device__ __forceinline__ float warp_reduce(float v) { return warp_sum(v); }
__device__ __forceinline__ float2 warp_reduce(float2 v) {
    return make_float2(warp_sum(v.x), warp_sum(v.y));
}

// Sum of v over the threads of this slot (threadIdx.y); every thread of the
// slot receives the same bits: warp butterflies, then the slot's warps in
// order. buf (32 entries of shared memory) must not be written again until
// every thread has passed a later __syncthreads.
template <typename V>
__device__ __forceinline__ V slot_sum(V v, V *buf) {
    const int wpr = blockDim.x / 32;
    V *mine = buf + threadIdx.y * wpr;
    v = warp_reduce(v);
    if (threadIdx.x % 32 == 0) mine[threadIdx.x / 32] = v;
    __syncthreads();
    V s = mine[0];
    for (int i = 1; i < wpr; i++) s = s + mine[i];
    return s;
}

// LayerNorm forward, one row per slot. With b2 == NULL the row is a; else the
// row is resid = bf16(a + b2), stored, and normalised from its rounded value,
// so the fused kernel runs exactly the unfused arithmetic (one kernel for
// both keeps the statistics code identical too).
__global__ void __launch_bounds__(1024)
    layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, bf16 *resid, const bf16 *a,
                             const bf16 *b2, const bf16 *__restrict__ w,
                             const bf16 *__restrict__ bias, int N, int C) {
    __shared__ float sum_buf[32], var_buf[32];
    const int c = threadIdx.x * 8;
    const long row = (long)blockIdx.x * blockDim.y + threadIdx.y;
    const bool on = c < C && row < N;
    const size_t at = (size_t)row * C + c;
    float x[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (on && b2) {
        bf16x8 va = load8(a + at), vb = load8(b2 + at), r;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            r.v[k] = __float2bfloat16_rn(__bfloat162float(va.v[k]) + __bfloat162float(vb.v[k]));
            x[k] = __bfloat162float(r.v[k]);
        }
        store8(resid + at, r);
    } else if (on) {
        load8f(x, a + at);
    }
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) s += x[k];
    const float m = slot_sum(s, sum_buf) / C;
    float v = 0.0f;
    if (on) {
#pragma unroll
        for (int k = 0; k < 8; k++) v += (x[k] - m) * (x[k] - m);
    }
    const float r = 1.0f / sqrtf(slot_sum(v, var_buf) / C + LN_EPS);
    if (on) {
        float wv[8], bv[8];
        load8f(wv, w + c);
        load8f(bv, bias + c);
        bf16x8 o;
#pragma unroll
        for (int k = 0; k < 8; k++) o.v[k] = __float2bfloat16_rn((x[k] - m) * r * wv[k] + bv[k]);
        store8(out + at, o);
    }
    if (threadIdx.x == 0 && row < N) {
        mean[row] = m;
        rstd[row] = r;
    }
}

static gpt_status ln_forward_launch(const char *fn, gpt_cu_ctx *ctx, gpt_bf16 *resid,
                                    gpt_bf16 *out, float *mean, float *rstd, const gpt_bf16 *a,
                                    const gpt_bf16 *b2, const gpt_bf16 *w,
                                    const gpt_bf16 *bias, int N, int C, gpt_error_t err) {
    if (ln_check(fn, N, C, err) || ln_aligned(fn, "out", out, err) ||
        ln_aligned(fn, b2 ? "a" : "inp", a, err) || ln_aligned(fn, "w", w, err) ||
        ln_aligned(fn, b2 ? "bias" : "b", bias, err))
        return GPT_ERR_CONFIG;
    if (b2 && (ln_aligned(fn, "resid", resid, err) || ln_aligned(fn, "b", b2, err)))
        return GPT_ERR_CONFIG;
    const dim3 block = ln_block(C);
    layernorm_forward_kernel<<<cu_blocks(N, block.y), block, 0, ctx->stream>>>(
        dev_bf16(out), mean, rstd, dev_bf16(resid), dev_bf16(a), dev_bf16(b2), dev_bf16(w),
        dev_bf16(bias), N, C);
    return cu_launched(fn, err);
}

extern "C" gpt_status gpt_cu_layernorm_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, float *mean,
                                               float *rstd, const gpt_bf16 *inp,
                                               const gpt_bf16 *w, const gpt_bf16 *b, int N,
                                               int C, gpt_error_t err) {
    return ln_forward_launch("layernorm_forward", ctx, NULL, out, mean, rstd, inp, NULL, w, b,
                             N, C, err);
}

extern "C" gpt_status gpt_cu_residual_layernorm_forward(gpt_cu_ctx *ctx, gpt_bf16 *resid,
                                                        gpt_bf16 *out, float *mean,
                                                        float *rstd, const gpt_bf16 *a,
                                                        const gpt_bf16 *b, const gpt_bf16 *w,
                                                        const gpt_bf16 *bias, int N, int C,
                                                        gpt_error_t err) {
    return ln_forward_launch("residual_layernorm_forward", ctx, resid, out, mean, rstd, a, b,
                             w, bias, N, C, err);
}

// LayerNorm backward over the rows [g*N/G, (g+1)*N/G) of block g, slot y
// taking every R-th of them. Per row (as the CPU twin):
//   dinp += r * (dout*w - mean(dout*w) - xhat * mean(dout*w*xhat)),
// and each thread keeps its 8 channels' sums of dout*xhat (dw) and dout (db).
// At the end the slots add their sums into the block's partial row in slot
// order, one slot at a time.
__global__ void __launch_bounds__(1024)
    layernorm_backward_kernel(bf16 *__restrict__ dinp, float *__restrict__ partial,
                              const bf16 *__restrict__ dout, const bf16 *__restrict__ inp,
                              const bf16 *__restrict__ w, const float *__restrict__ mean,
                              const float *__restrict__ rstd, int N, int C, int G) {
    __shared__ float2 red[2][32];  // double-buffered: one __syncthreads per row
    const int c = threadIdx.x * 8, R = blockDim.y;
    const bool on = c < C;
    const int r0 = (int)((long)blockIdx.x * N / G), r1 = (int)((long)(blockIdx.x + 1) * N / G);
    float dw[8] = {0, 0, 0, 0, 0, 0, 0, 0}, db[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    bf16x8 wv = {};  // kept as bf16 to spare registers
    if (on) wv = load8(w + c);
    const int iters = (r1 - r0 + R - 1) / R;
    for (int it = 0; it < iters; it++) {
        const int row = r0 + it * R + threadIdx.y;
        const bool live = on && row < r1;
        const size_t at = (size_t)row * C + c;
        float d[8] = {0, 0, 0, 0, 0, 0, 0, 0}, xh[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        float m = 0.0f, r = 0.0f;
        float2 sums = make_float2(0.0f, 0.0f);
        if (live) {
            m = mean[row];
            r = rstd[row];
            load8f(d, dout + at);
            load8f(xh, inp + at);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                xh[k] = (xh[k] - m) * r;
                const float dn = d[k] * __bfloat162float(wv.v[k]);
                sums.x += dn;
                sums.y += dn * xh[k];
                dw[k] += d[k] * xh[k];
                db[k] += d[k];
            }
        }
        sums = slot_sum(sums, red[it & 1]);
        if (live) {
            const float sd = sums.x / C, sdx = sums.y / C;
            bf16x8 g = load8(dinp + at);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float dx = r * (d[k] * __bfloat162float(wv.v[k]) - sd - xh[k] * sdx);
                g.v[k] = __float2bfloat16_rn(__bfloat162float(g.v[k]) + dx);
            }
            store8(dinp + at, g);
        }
    }
    // __syncthreads makes each slot's global writes visible to the next slot.
    float *p = partial + (size_t)blockIdx.x * 2 * C + c;
    for (int s = 0; s < R; s++) {
        if (threadIdx.y == s && on) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                p[k] = s ? p[k] + dw[k] : dw[k];
                p[C + k] = s ? p[C + k] + db[k] : db[k];
            }
        }
        __syncthreads();
    }
}

// dw[c] += sum over g of partial[g][c], db[c] += ... [C + c]. Block: 32
// channels x PSUM_LANES lanes; lane y sums a contiguous range of the G
// partials in order, then lane 0 adds the lanes' sums in order.
__global__ void layernorm_param_grads_kernel(bf16 *__restrict__ dw, bf16 *__restrict__ db,
                                             const float *__restrict__ partial, int C, int G) {
    __shared__ float lanes[PSUM_LANES][32];
    const int ch = blockIdx.x * 32 + threadIdx.x;
    const bool on = ch < 2 * C;
    const int g0 = threadIdx.y * G / PSUM_LANES, g1 = (threadIdx.y + 1) * G / PSUM_LANES;
    float s = 0.0f;
    if (on) {
        for (int g = g0; g < g1; g++) s += partial[(size_t)g * 2 * C + ch];
    }
    lanes[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || !on) return;
    s = lanes[0][threadIdx.x];
    for (int y = 1; y < PSUM_LANES; y++) s += lanes[y][threadIdx.x];
    bf16 *dst = ch < C ? dw + ch : db + (ch - C);
    *dst = __float2bfloat16_rn(__bfloat162float(*dst) + s);
}

extern "C" gpt_status gpt_cu_layernorm_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, gpt_bf16 *dw,
                                                gpt_bf16 *db, const gpt_bf16 *dout,
                                                const gpt_bf16 *inp, const gpt_bf16 *w,
                                                const float *mean, const float *rstd, int N,
                                                int C, gpt_error_t err) {
    const char *fn = "layernorm_backward";
    if (ln_check(fn, N, C, err) || ln_aligned(fn, "dinp", dinp, err) ||
        ln_aligned(fn, "dout", dout, err) || ln_aligned(fn, "inp", inp, err) ||
        ln_aligned(fn, "w", w, err))
        return GPT_ERR_CONFIG;
    const dim3 block = ln_block(C);
    // Partial rows: one per block, at most GPT_CU_PARTIAL_ROWS, and no more
    // blocks than it takes to give every slot a row. Depends on N and C only.
    const long slots = ((long)N + block.y - 1) / block.y;
    const int G = slots < GPT_CU_PARTIAL_ROWS ? (int)slots : GPT_CU_PARTIAL_ROWS;
    const size_t need = (size_t)G * 2 * C;
    if (!ctx->scratch || ctx->scratch_floats < need) {
        snprintf(err, GPT_ERRLEN, "%s: scratch holds %zu floats, C = %d needs %zu", fn,
                 ctx->scratch_floats, C, need);
        return GPT_ERR_CONFIG;
    }
    layernorm_backward_kernel<<<G, block, 0, ctx->stream>>>(
        dev_bf16(dinp), ctx->scratch, dev_bf16(dout), dev_bf16(inp), dev_bf16(w), mean, rstd, N,
        C, G);
    gpt_status st = cu_launched(fn, err);
    if (st != GPT_OK) return st;
    layernorm_param_grads_kernel<<<cu_blocks(2 * (size_t)C, 32), dim3(32, PSUM_LANES), 0,
                                   ctx->stream>>>(dev_bf16(dw), dev_bf16(db), ctx->scratch, C,
                                                  G);
    return cu_launched("layernorm_backward (dw, db)", err);
}

// out = a + b, 8 values per thread; the thread holding the last partial
// group of 8 finishes the tail one value at a time. out may alias a or b.
__global__ void residual_forward_kernel(bf16 *out, const bf16 *a, const bf16 *b, size_t n) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i + 8 <= n) {
        bf16x8 va = load8(a + i), vb = load8(b + i), o;
#pragma unroll
        for (int k = 0; k < 8; k++)
            o.v[k] = __float2bfloat16_rn(__bfloat162float(va.v[k]) + __bfloat162float(vb.v[k]));
        store8(out + i, o);
    } else {
        for (size_t j = i; j < n; j++)
            out[j] = __float2bfloat16_rn(__bfloat162float(a[j]) + __bfloat162float(b[j]));
    }
}

extern "C" gpt_status gpt_cu_residual_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const gpt_bf16 *a,
                                              const gpt_bf16 *b, size_t n, gpt_error_t err) {
    const char *fn = "residual_forward";
    if (ln_aligned(fn, "out", out, err) || ln_aligned(fn, "a", a, err) ||
        ln_aligned(fn, "b", b, err))
        return GPT_ERR_CONFIG;
    if (n == 0) return GPT_OK;
    residual_forward_kernel<<<cu_blocks((n + 7) / 8, 256), 256, 0, ctx->stream>>>(
        dev_bf16(out), dev_bf16(a), dev_bf16(b), n);
    return cu_launched(fn, err);
}

// encoder.cu: the token + position embedding (forward and backward) and the
// host-built plan that lets the backward run without atomics.
//
// The forward is a gather: one thread per 8 channels of an output row, 16-byte
// loads from the wte and wpe rows. The backward of a gather is a scatter-add,
// and several positions may hold the same token; instead of floating-point
// atomics (whose order, hence bits, varies from run to run) the positions are
// grouped by token on the host (gpt_cu_encoder_plan_build), so each dwte row
// is owned by one warp that sums its positions in a fixed order. dwpe needs no
// plan: row t of dwpe sums the rows (b, t) over b.
#include "cuda_common.cuh"

#define ENC_WARPS 4  // warps per block of the dwte kernel, one (token, 256 channels) task each

// C must be a multiple of 8 (16-byte rows) and at most 8192 (as layernorm.cu).
static gpt_status enc_check(const char *fn, int B, int T, int C, gpt_error_t err) {
    if (C < 8 || C > 8192 || C % 8 != 0) {
        snprintf(err, GPT_ERRLEN, "%s: C = %d unsupported (a multiple of 8 in [8, 8192])", fn,
                 C);
        return GPT_ERR_CONFIG;
    }
    if (B < 1 || T < 1) {
        snprintf(err, GPT_ERRLEN, "%s: B = %d, T = %d (both must be >= 1)", fn, B, T);
        return GPT_ERR_CONFIG;
    }
    return GPT_OK;
}

// The 16-byte loads and stores need 16-byte aligned base pointers.
static gpt_status enc_aligned(const char *fn, const char *name, const void *p, gpt_error_t err) {
    if (((uintptr_t)p & 15u) == 0) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s: %s (%p) is not 16-byte aligned", fn, name, p);
    return GPT_ERR_CONFIG;
}

__device__ __forceinline__ void add8(float *acc, bf16x8 x) {
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] += __bfloat162float(x.v[k]);
}

// dst (8 bf16) += acc, in fp32, rounded once.
__device__ __forceinline__ void accumulate8(bf16 *dst, const float *acc) {
    bf16x8 g = load8(dst);
#pragma unroll
    for (int k = 0; k < 8; k++) g.v[k] = __float2bfloat16_rn(__bfloat162float(g.v[k]) + acc[k]);
    store8(dst, g);
}

// One thread per 8 channels of one of the N = B*T output rows.
__global__ void encoder_forward_kernel(bf16 *__restrict__ out, const int *__restrict__ tokens,
                                       const bf16 *__restrict__ wte,
                                       const bf16 *__restrict__ wpe, int T, int C,
                                       size_t n8) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    const int c8 = C / 8;
    const size_t row = i / c8;
    const int c = (int)(i % c8) * 8;
    const int t = (int)(row % T);
    bf16x8 e = load8(wte + (size_t)tokens[row] * C + c);
    bf16x8 p = load8(wpe + (size_t)t * C + c);
    bf16x8 o;
#pragma unroll
    for (int k = 0; k < 8; k++)
        o.v[k] = __float2bfloat16_rn(__bfloat162float(e.v[k]) + __bfloat162float(p.v[k]));
    store8(out + row * C + c, o);
}

extern "C" gpt_status gpt_cu_encoder_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, const int *tokens,
                                             const gpt_bf16 *wte, const gpt_bf16 *wpe, int B,
                                             int T, int C, gpt_error_t err) {
    const char *fn = "encoder_forward";
    if (enc_check(fn, B, T, C, err) || enc_aligned(fn, "out", out, err) ||
        enc_aligned(fn, "wte", wte, err) || enc_aligned(fn, "wpe", wpe, err))
        return GPT_ERR_CONFIG;
    const size_t n8 = (size_t)B * T * (C / 8);
    encoder_forward_kernel<<<cu_blocks(n8, 256), 256, 0, ctx->stream>>>(
        dev_bf16(out), tokens, dev_bf16(wte), dev_bf16(wpe), T, C, n8);
    return cu_launched(fn, err);
}

// Counting sort of the positions by token: after the prefix sum counts[v]
// is where token v's positions begin in pos and counts[v + 1] where they
// end; the scatter then walks the positions in ascending order, so each
// token's positions come out ascending.
extern "C" void gpt_cu_encoder_plan_build(gpt_cu_encoder_plan *plan, const int *tokens, int n,
                                          int vocab, int *counts) {
    memset(counts, 0, (size_t)(vocab + 1) * sizeof *counts);
    for (int i = 0; i < n; i++) counts[tokens[i] + 1]++;
    for (int v = 0; v < vocab; v++) counts[v + 1] += counts[v];
    int k = 0;
    for (int v = 0; v < vocab; v++) {
        if (counts[v + 1] == counts[v]) continue;
        plan->uniq[k] = v;
        plan->start[k++] = counts[v];
    }
    plan->start[k] = n;
    plan->n_uniq = k;
    for (int i = 0; i < n; i++) plan->pos[counts[tokens[i]]++] = i;
}

// One warp per (distinct token k, group of 256 channels): each lane owns 8
// channels, sums dout over the token's positions in the plan's order, and
// adds the total into dwte once. No other thread writes those channels.
__global__ void encoder_dwte_kernel(bf16 *__restrict__ dwte, const bf16 *__restrict__ dout,
                                    const int *__restrict__ uniq,
                                    const int *__restrict__ start,
                                    const int *__restrict__ pos, int n_uniq, int C) {
    const int c8 = C / 8, groups = (c8 + 31) / 32;
    const long task = (long)blockIdx.x * ENC_WARPS + threadIdx.x / 32;
    const int k = (int)(task / groups);
    const int u = (int)(task % groups) * 32 + threadIdx.x % 32;
    if (k >= n_uniq || u >= c8) return;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int end = start[k + 1];
#pragma unroll 8  // eight rows' loads in flight; the adds stay in order
    for (int j = start[k]; j < end; j++) add8(acc, load8(dout + (size_t)pos[j] * C + u * 8));
    accumulate8(dwte + (size_t)uniq[k] * C + u * 8, acc);
}

// One thread per 8 channels of a row t of dwpe: sums dout[b, t] over b in order.
__global__ void encoder_dwpe_kernel(bf16 *__restrict__ dwpe, const bf16 *__restrict__ dout,
                                    int B, int T, int C) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int c8 = C / 8;
    if (i >= (size_t)T * c8) return;
    const size_t t = i / c8;
    const int c = (int)(i % c8) * 8;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll 4
    for (int b = 0; b < B; b++) add8(acc, load8(dout + ((size_t)b * T + t) * C + c));
    accumulate8(dwpe + t * C + c, acc);
}

extern "C" gpt_status gpt_cu_encoder_backward(gpt_cu_ctx *ctx, gpt_bf16 *dwte, gpt_bf16 *dwpe,
                                              const gpt_bf16 *dout,
                                              const gpt_cu_encoder_plan *dev_plan, int B,
                                              int T, int C, gpt_error_t err) {
    const char *fn = "encoder_backward";
    if (enc_check(fn, B, T, C, err) || enc_aligned(fn, "dwte", dwte, err) ||
        enc_aligned(fn, "dwpe", dwpe, err) || enc_aligned(fn, "dout", dout, err))
        return GPT_ERR_CONFIG;
    const int n_uniq = dev_plan->n_uniq;
    if (n_uniq < 1 || n_uniq > B * T) {
        snprintf(err, GPT_ERRLEN, "%s: plan has n_uniq = %d, expected 1 .. B*T = %d", fn,
                 n_uniq, B * T);
        return GPT_ERR_CONFIG;
    }
    const long tasks = (long)n_uniq * ((C / 8 + 31) / 32);
    encoder_dwte_kernel<<<(unsigned)((tasks + ENC_WARPS - 1) / ENC_WARPS), 32 * ENC_WARPS, 0,
                          ctx->stream>>>(dev_bf16(dwte), dev_bf16(dout), dev_plan->uniq,
                                         dev_plan->start, dev_plan->pos, n_uniq, C);
    gpt_status st = cu_launched("encoder_backward (dwte)", err);
    if (st != GPT_OK) return st;
    const size_t n8 = (size_t)T * (C / 8);
    encoder_dwpe_kernel<<<cu_blocks(n8, 256), 256, 0, ctx->stream>>>(dev_bf16(dwpe),
                                                                     dev_bf16(dout), B, T, C);
    return cu_launched("encoder_backward (dwpe)", err);
}

// matmul.cu: the linear layers (gpt_cu_matmul_forward / _backward) through
// cuBLASLt, bf16 in and out with fp32 accumulation, plus the bias gradient as
// a deterministic two-pass column sum of our own.
//
// Row-major onto cuBLASLt's column-major: a row-major (R, K) buffer read
// column-major with ld = K is the K x R matrix X^T, so every product below is
// written for the transposes of our row-major tensors:
//   forward  out = inp W^T      ->  out^T (OC x N) = W (OC x C) . inp^T (C x N)
//            A = w    (stored C x OC, ld C) with transa = T gives W,
//            B = inp  (stored C x N,  ld C) with transb = N;  m = OC, n = N, k = C.
//   dinp     dinp = dout W      ->  dinp^T (C x N) = W^T (C x OC) . dout^T (OC x N)
//            A = w    (stored C x OC, ld C) with transa = N,
//            B = dout (stored OC x N, ld OC) with transb = N; m = C, n = N, k = OC.
//   dW       dW += dout^T inp   ->  dW^T (C x OC) += inp^T (C x N) . dout (N x OC)
//            A = inp  (stored C x N,  ld C) with transa = N,
//            B = dout (stored OC x N, ld OC) with transb = T; m = C, n = OC, k = N.
// D's rows are then the output's channels, which is what the epilogues want:
// the bias is a vector of D's rows (OC), and the GELU aux matrix (pre_gelu,
// row-major like out) is column-major with ld = D's rows (OC forward, C for
// dinp). cuBLASLt documents that ld as a multiple of 8 and >= D's rows, and
// the bias as packed with D's row count: C % 8 == 0 and OC % 8 == 0 give all
// of it, and also make every ld a multiple of 16 bytes.
//
// Alignment: every pointer must be 16-byte aligned (checked; cudaMalloc gives
// 256 and row offsets of C-channel rows keep 16). The heuristic is told so
// (MIN_ALIGNMENT_*_BYTES = 16 instead of the default 256), and for the bias
// and aux pointers, whose alignment it reads off the pointer values, it is
// shown an address aligned to exactly 16 bytes (see alignment_probe), so the
// algorithm chosen once is valid for every later call of that shape.
//
// Determinism: the algorithm is the heuristic's first answer, chosen once
// per (device, workspace, shape, transposes, epilogue, beta) and cached with
// its descriptors in a static table that lives as long as the process, so
// all calls of one shape run the same kernel. The table is NOT thread-safe:
// use the matmuls from one host thread at a time (the training loop does).
#include <cublasLt.h>
#include <stdint.h>
#include "cuda_common.cuh"

// ---- cached cuBLASLt plans ------------------------------------------------

// Everything the chosen algorithm depends on.
struct GemmSpec {
    int device;
    size_t workspace_bytes;
    cublasOperation_t ta, tb;
    uint64_t m, n, k;
    int64_t lda, ldb, ldd;
    cublasLtEpilogue_t epilogue;
    int accumulate;  // beta = 1 (D += A B) instead of 0
};

struct GemmPlan {
    GemmSpec spec;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;  // C shares D's layout (C == D in place)
    cublasLtMatmulAlgo_t algo;
};

// GPT-2 training uses about 20 distinct matmuls (5 forward, 10 backward,
// evaluation's other N); the table never evicts, so a plan stays fixed.
#define MAX_PLANS 64
static GemmPlan g_plans[MAX_PLANS];
static int g_nplans;

// Names the caller's shape in error messages.
struct Call {
    const char *op;
    int N, C, OC;
};

static bool same_spec(const GemmSpec &x, const GemmSpec &y) {
    return x.device == y.device && x.workspace_bytes == y.workspace_bytes && x.ta == y.ta &&
           x.tb == y.tb && x.m == y.m && x.n == y.n && x.k == y.k && x.lda == y.lda &&
           x.ldb == y.ldb && x.ldd == y.ldd && x.epilogue == y.epilogue &&
           x.accumulate == y.accumulate;
}

static bool has_bias(cublasLtEpilogue_t e) {
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}
static bool has_aux(cublasLtEpilogue_t e) {
    return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
           e == CUBLASLT_EPILOGUE_DGELU;
}

// The heuristic never dereferences the bias and aux pointers but takes their
// alignment from the address: show it one aligned to exactly 16 bytes (p or
// p + 16 for a 16-aligned p), the least any call is allowed to pass.
static const void *alignment_probe(const void *p) {
    return (const void *)((uintptr_t)p | (uintptr_t)16);
}

static gpt_status lt_failed(const Call &c, const char *step, cublasStatus_t st,
                            gpt_error_t err) {
    snprintf(err, GPT_ERRLEN, "%s (N=%d, C=%d, OC=%d): %s: %s (%d, %s)", c.op, c.N, c.C, c.OC,
             step, cublasLtGetStatusName(st), (int)st, cublasLtGetStatusString(st));
    return GPT_ERR_DEVICE;
}

// Records the failing step's name and returns its status from make_plan.
#define LT_STEP(name, call)                                   \
    do {                                                      \
        *step = (name);                                       \
        cublasStatus_t st_ = (call);                          \
        if (st_ != CUBLAS_STATUS_SUCCESS) return st_;         \
    } while (0)

static cublasStatus_t set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                               const void *value, size_t bytes) {
    return cublasLtMatmulDescSetAttribute(desc, attr, value, bytes);
}

// Descriptors of p->spec: bf16 A/B/C/D, fp32 compute and scale.
static cublasStatus_t make_descriptors(GemmPlan *p, const void *bias, const void *aux,
                                       const char **step) {
    const GemmSpec &s = p->spec;
    int32_t ta = s.ta, tb = s.tb;
    uint32_t epilogue = s.epilogue;
    LT_STEP("cublasLtMatmulDescCreate",
            cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_STEP("setting TRANSA", set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_STEP("setting TRANSB", set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_STEP("setting EPILOGUE",
            set_desc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    // Bias and aux types default to D's (bf16), which is what we pass.
    if (has_bias(s.epilogue)) {
        const void *probe = alignment_probe(bias);
        LT_STEP("setting BIAS_POINTER",
                set_desc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &probe, sizeof probe));
    }
    if (has_aux(s.epilogue)) {
        const void *probe = alignment_probe(aux);
        int64_t ld = s.ldd;
        LT_STEP("setting EPILOGUE_AUX_POINTER",
                set_desc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &probe,
                         sizeof probe));
        LT_STEP("setting EPILOGUE_AUX_LD",
                set_desc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
    }
    // Layouts describe the stored matrices, before transa / transb.
    bool an = s.ta == CUBLAS_OP_N, bn = s.tb == CUBLAS_OP_N;
    LT_STEP("cublasLtMatrixLayoutCreate(A)",
            cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, an ? s.m : s.k, an ? s.k : s.m,
                                       s.lda));
    LT_STEP("cublasLtMatrixLayoutCreate(B)",
            cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, bn ? s.k : s.n, bn ? s.n : s.k,
                                       s.ldb));
    LT_STEP("cublasLtMatrixLayoutCreate(D)",
            cublasLtMatrixLayoutCreate(&p->d, CUDA_R_16BF, s.m, s.n, s.ldd));
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t set_pref(cublasLtMatmulPreference_t pref,
                               cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
    return cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof v);
}

// The heuristic's first algorithm for the descriptors, within the workspace,
// for 16-byte-aligned matrices.
static cublasStatus_t choose_algo(GemmPlan *p, cublasLtHandle_t lt,
                                  cublasLtMatmulPreference_t pref, const char **step) {
    uint64_t ws = p->spec.workspace_bytes;
    LT_STEP("setting MAX_WORKSPACE_BYTES",
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &ws, sizeof ws));
    LT_STEP("setting MIN_ALIGNMENT_A_BYTES",
            set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, 16));
    LT_STEP("setting MIN_ALIGNMENT_B_BYTES",
            set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, 16));
    LT_STEP("setting MIN_ALIGNMENT_C_BYTES",
            set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, 16));
    LT_STEP("setting MIN_ALIGNMENT_D_BYTES",
            set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, 16));
    // A split-K reduction in place or in the output type would add partial
    // sums in bf16; only fp32 partials (or none) keep "accumulate in fp32".
    LT_STEP("setting REDUCTION_SCHEME_MASK",
            set_pref(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                     CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    LT_STEP("cublasLtMatmulAlgoGetHeuristic",
            cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->a, p->b, p->d, p->d, pref, 1,
                                           &result, &found));
    *step = "cublasLtMatmulAlgoGetHeuristic (no algorithm found)";
    if (found < 1) return CUBLAS_STATUS_NOT_SUPPORTED;
    p->algo = result.algo;
    return CUBLAS_STATUS_SUCCESS;
}

static void destroy_plan(GemmPlan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

// The cached plan of spec, made (and kept) on first use.
static gpt_status get_plan(GemmPlan **out, gpt_cu_ctx *ctx, const GemmSpec &spec,
                           const void *bias, const void *aux, const Call &call,
                           gpt_error_t err) {
    for (int i = 0; i < g_nplans; i++)
        if (same_spec(g_plans[i].spec, spec)) {
            *out = &g_plans[i];
            return GPT_OK;
        }
    if (g_nplans == MAX_PLANS) {
        snprintf(err, GPT_ERRLEN, "%s (N=%d, C=%d, OC=%d): more than %d distinct matmul "
                 "shapes (MAX_PLANS in matmul.cu)", call.op, call.N, call.C, call.OC,
                 MAX_PLANS);
        return GPT_ERR_CONFIG;
    }
    GemmPlan *p = &g_plans[g_nplans];
    memset(p, 0, sizeof *p);
    p->spec = spec;
    const char *step = "";
    cublasStatus_t st = make_descriptors(p, bias, aux, &step);
    if (st == CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreference_t pref = NULL;
        step = "cublasLtMatmulPreferenceCreate";
        st = cublasLtMatmulPreferenceCreate(&pref);
        if (st == CUBLAS_STATUS_SUCCESS)
            st = choose_algo(p, (cublasLtHandle_t)ctx->lt, pref, &step);
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
        destroy_plan(p);
        return lt_failed(call, step, st, err);
    }
    g_nplans++;
    *out = p;
    return GPT_OK;
}

// D = op(A) op(B) (+ D when spec.accumulate) with spec's epilogue, on the
// cached plan; bias and aux are set on the cached descriptor for this call.
static gpt_status gemm(gpt_cu_ctx *ctx, const GemmSpec &spec, const void *A, const void *B,
                       void *D, const void *bias, const void *aux, const Call &call,
                       gpt_error_t err) {
    GemmPlan *p = NULL;
    gpt_status s = get_plan(&p, ctx, spec, bias, aux, call, err);
    if (s != GPT_OK) return s;
    cublasStatus_t st;
    if (has_bias(spec.epilogue)) {
        st = set_desc(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (st != CUBLAS_STATUS_SUCCESS) return lt_failed(call, "setting BIAS_POINTER", st, err);
    }
    if (has_aux(spec.epilogue)) {
        st = set_desc(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
        if (st != CUBLAS_STATUS_SUCCESS)
            return lt_failed(call, "setting EPILOGUE_AUX_POINTER", st, err);
    }
    const float alpha = 1.0f, beta = spec.accumulate ? 1.0f : 0.0f;
    st = cublasLtMatmul((cublasLtHandle_t)ctx->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D,
                        p->d, D, p->d, &p->algo, ctx->workspace, ctx->workspace_bytes,
                        ctx->stream);
    if (st != CUBLAS_STATUS_SUCCESS) return lt_failed(call, "cublasLtMatmul", st, err);
    return GPT_OK;
}

static GemmSpec make_spec(const gpt_cu_ctx *ctx, cublasOperation_t ta, cublasOperation_t tb,
                          int m, int n, int k, int lda, int ldb, int ldd,
                          cublasLtEpilogue_t epilogue, int accumulate) {
    GemmSpec s;
    memset(&s, 0, sizeof s);
    s.device = ctx->device;
    s.workspace_bytes = ctx->workspace_bytes;
    s.ta = ta;
    s.tb = tb;
    s.m = (uint64_t)m;
    s.n = (uint64_t)n;
    s.k = (uint64_t)k;
    s.lda = lda;
    s.ldb = ldb;
    s.ldd = ldd;
    s.epilogue = epilogue;
    s.accumulate = accumulate;
    return s;
}

// ---- validation -------------------------------------------------------------

static gpt_status check_shape(const char *op, int N, int C, int OC, gpt_error_t err) {
    if (N < 1) {
        snprintf(err, GPT_ERRLEN, "%s: N = %d rows, need at least 1", op, N);
        return GPT_ERR_CONFIG;
    }
    if (C < 8 || C % 8 != 0) {
        snprintf(err, GPT_ERRLEN, "%s: C = %d is not a positive multiple of 8", op, C);
        return GPT_ERR_CONFIG;
    }
    if (OC < 8 || OC % 8 != 0) {
        snprintf(err, GPT_ERRLEN, "%s: OC = %d is not a positive multiple of 8", op, OC);
        return GPT_ERR_CONFIG;
    }
    return GPT_OK;
}

// NULL is allowed here (callers check the required pointers separately).
static gpt_status check_aligned(const char *op, const char *name, const void *p,
                                gpt_error_t err) {
    if (((uintptr_t)p & 15u) == 0) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s: %s = %p is not 16-byte aligned", op, name, p);
    return GPT_ERR_CONFIG;
}

static gpt_status check_required(const char *op, const char *name, const void *p,
                                 gpt_error_t err) {
    if (p) return check_aligned(op, name, p, err);
    snprintf(err, GPT_ERRLEN, "%s: %s is NULL", op, name);
    return GPT_ERR_CONFIG;
}

// ---- bias gradient: deterministic column sums ------------------------------

#define BIAS_COLS 256    // columns per block of the first pass: 32 lanes x 8
#define BIAS_LANES 8     // row lanes per block (blockDim.y)
#define BIAS_MIN_ROWS 32 // rows per partial at least, so a block has work

// partial[p, c] = sum of dout[r, c] over the rows r of block p, in fp32.
// Thread (x, y) sums 8 columns (one 16-byte load per row) over rows
// y, y + 8, ...; the 8 lanes are then added in order through shared memory.
static __global__ void __launch_bounds__(BIAS_LANES * 32)
    bias_partials_kernel(float *partial, const bf16 *dout, int N, int OC, int rows_per) {
    __shared__ float sums[BIAS_LANES][BIAS_COLS];
    int col = blockIdx.x * BIAS_COLS + threadIdx.x * 8;
    int r0 = blockIdx.y * rows_per;
    int r1 = min(N, r0 + rows_per);
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (col < OC)  // OC % 8 == 0: the 8 columns are all in or all out
        for (int r = r0 + (int)threadIdx.y; r < r1; r += BIAS_LANES) {
            bf16x8 v = load8(dout + (size_t)r * OC + col);
#pragma unroll
            for (int j = 0; j < 8; j++) acc[j] += __bfloat162float(v.v[j]);
        }
#pragma unroll
    for (int j = 0; j < 8; j++) sums[threadIdx.y][threadIdx.x * 8 + j] = acc[j];
    __syncthreads();
    int t = threadIdx.y * 32 + threadIdx.x;  // one column per thread now
    int c = blockIdx.x * BIAS_COLS + t;
    if (c < OC) {
        float s = 0.0f;
#pragma unroll
        for (int l = 0; l < BIAS_LANES; l++) s += sums[l][t];
        partial[(size_t)blockIdx.y * OC + c] = s;
    }
}

// dbias[c] += sum over p of partial[p, c]: lane y takes p = y, y + 8, ...,
// then lane 0 adds the 8 lanes in order and rounds once to bf16.
static __global__ void __launch_bounds__(BIAS_LANES * 32)
    bias_finish_kernel(bf16 *dbias, const float *partial, int P, int OC) {
    __shared__ float sums[BIAS_LANES][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < OC)
        for (int p = threadIdx.y; p < P; p += BIAS_LANES) s += partial[(size_t)p * OC + c];
    sums[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < OC) {
        float t = 0.0f;
#pragma unroll
        for (int l = 0; l < BIAS_LANES; l++) t += sums[l][threadIdx.x];
        dbias[c] = __float2bfloat16_rn(__bfloat162float(dbias[c]) + t);
    }
}

// The number of partial rows depends only on N, OC and the scratch size, so
// the summation order (and the bits) is the same on every call.
static gpt_status bias_backward(gpt_cu_ctx *ctx, bf16 *dbias, const bf16 *dout, int N, int OC,
                                gpt_error_t err) {
    size_t cap = ctx->scratch_floats / (size_t)OC;
    if (!ctx->scratch || cap < 1) {
        snprintf(err, GPT_ERRLEN, "matmul_backward: scratch of %zu floats is less than one "
                 "row of OC = %d bias partial sums", ctx->scratch_floats, OC);
        return GPT_ERR_CONFIG;
    }
    int P = (N + BIAS_MIN_ROWS - 1) / BIAS_MIN_ROWS;
    if (P > GPT_CU_PARTIAL_ROWS) P = GPT_CU_PARTIAL_ROWS;
    if ((size_t)P > cap) P = (int)cap;
    int rows_per = (N + P - 1) / P;
    P = (N + rows_per - 1) / rows_per;  // no empty partial rows
    dim3 block(32, BIAS_LANES);
    dim3 grid1((OC + BIAS_COLS - 1) / BIAS_COLS, P);
    bias_partials_kernel<<<grid1, block, 0, ctx->stream>>>(ctx->scratch, dout, N, OC, rows_per);
    gpt_status s = cu_launched("matmul_backward: bias partial sums", err);
    if (s != GPT_OK) return s;
    bias_finish_kernel<<<(OC + 31) / 32, block, 0, ctx->stream>>>(dbias, ctx->scratch, P, OC);
    return cu_launched("matmul_backward: bias sum", err);
}

// ---- the C API ----------------------------------------------------------------

extern "C" gpt_status gpt_cu_matmul_forward(gpt_cu_ctx *ctx, gpt_bf16 *out, gpt_bf16 *pre_gelu,
                                            const gpt_bf16 *inp, const gpt_bf16 *w,
                                            const gpt_bf16 *bias, int N, int C, int OC,
                                            gpt_error_t err) {
    const char *op = "matmul_forward";
    gpt_status s = check_shape(op, N, C, OC, err);
    if (s == GPT_OK) s = check_required(op, "out", out, err);
    if (s == GPT_OK) s = check_required(op, "inp", inp, err);
    if (s == GPT_OK) s = check_required(op, "w", w, err);
    if (s == GPT_OK) s = check_aligned(op, "bias", bias, err);
    if (s == GPT_OK) s = check_aligned(op, "pre_gelu", pre_gelu, err);
    if (s != GPT_OK) return s;
    cublasLtEpilogue_t epi = pre_gelu ? (bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                              : CUBLASLT_EPILOGUE_GELU_AUX)
                                      : (bias ? CUBLASLT_EPILOGUE_BIAS
                                              : CUBLASLT_EPILOGUE_DEFAULT);
    // out^T (OC x N) = W . inp^T: see the top of the file.
    GemmSpec spec = make_spec(ctx, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, C, C, OC, epi, 0);
    Call call = {op, N, C, OC};
    return gemm(ctx, spec, w, inp, out, bias, pre_gelu, call, err);
}

extern "C" gpt_status gpt_cu_matmul_backward(gpt_cu_ctx *ctx, gpt_bf16 *dinp, gpt_bf16 *dw,
                                             gpt_bf16 *dbias, const gpt_bf16 *dout,
                                             const gpt_bf16 *inp, const gpt_bf16 *w,
                                             const gpt_bf16 *pre_gelu, int N, int C, int OC,
                                             gpt_error_t err) {
    const char *op = "matmul_backward";
    gpt_status s = check_shape(op, N, C, OC, err);
    if (s == GPT_OK) s = check_required(op, "dw", dw, err);
    if (s == GPT_OK) s = check_required(op, "dout", dout, err);
    if (s == GPT_OK) s = check_required(op, "inp", inp, err);
    if (s == GPT_OK) s = check_required(op, "w", w, err);
    if (s == GPT_OK) s = check_aligned(op, "dinp", dinp, err);
    if (s == GPT_OK) s = check_aligned(op, "dbias", dbias, err);
    if (s == GPT_OK) s = check_aligned(op, "pre_gelu", pre_gelu, err);
    if (s != GPT_OK) return s;
    if (dinp) {
        // dinp^T (C x N) = W^T . dout^T, overwritten (beta 0); DGELU then
        // multiplies by gelu'(pre_gelu) before the bf16 rounding.
        cublasLtEpilogue_t epi = pre_gelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT;
        GemmSpec spec = make_spec(ctx, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, C, OC, C, epi, 0);
        Call call = {"matmul_backward dinp", N, C, OC};
        s = gemm(ctx, spec, w, dout, dinp, NULL, pre_gelu, call, err);
        if (s != GPT_OK) return s;
    }
    // dW^T (C x OC) += inp^T . dout, accumulated in fp32 onto the bf16 dw.
    GemmSpec spec = make_spec(ctx, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, C, OC, C,
                              CUBLASLT_EPILOGUE_DEFAULT, 1);
    Call call = {"matmul_backward dw", N, C, OC};
    s = gemm(ctx, spec, inp, dout, dw, NULL, NULL, call, err);
    if (s != GPT_OK || !dbias) return s;
    // Not the BGRAD epilogues: they overwrite the bias gradient, we add.
    return bias_backward(ctx, dev_bf16(dbias), dev_bf16(dout), N, OC, err);
}

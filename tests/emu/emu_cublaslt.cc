// emu_cublaslt.cc: the part of cuBLASLt that model/cuda/matmul.cu uses, for
// the CPU emulation: bf16 matrices, fp32 compute and scale, column-major,
// with the epilogues DEFAULT, BIAS, GELU_AUX, GELU_AUX_BIAS and DGELU.
//
// It is written from cuBLASLt's documentation, not from matmul.cu: D =
// alpha op(A) op(B) + beta C in fp32, then the epilogue (bias: a vector of
// D's rows added to every column; GELU_AUX: the pre-activation stored to the
// aux matrix, column-major with EPILOGUE_AUX_LD, and GELU, tanh form, into D;
// DGELU: the product times GELU's derivative at aux), rounded to bf16 once.
// It also checks what cuBLASLt leaves undefined or refuses: layouts that do
// not match m, n, k and the transposes, ld below the rows, aux ld not a
// multiple of 8, pointers below the promised 16-byte alignment, and every
// matrix inside one device allocation (emu_cudart.cc); any of these returns
// CUBLAS_STATUS_INVALID_VALUE, which matmul.cu must turn into an error.
#include <cblas.h>
#include <cublasLt.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include "emu_internal.h"

namespace {

struct Desc {
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr, *aux = nullptr;
    int64_t aux_ld = 0;
};

struct Layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};

struct Pref {
    uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default
};

float to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t to_bf16(float f) {  // round to nearest even, NaN kept
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

const float GELU_K = 0.7978845608028654f;  // sqrt(2 / pi)

float gelu(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

float gelu_grad(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3 * 0.044715f * x * x);
}

// The bytes a column-major rows x cols matrix with leading dimension ld spans.
size_t span(uint64_t rows, uint64_t cols, int64_t ld) {
    return ((size_t)(cols - 1) * (size_t)ld + rows) * 2;
}

bool layout_ok(const Layout *l, uint64_t rows, uint64_t cols, const void *p, uint32_t align) {
    return l->type == CUDA_R_16BF && l->rows == rows && l->cols == cols &&
           l->ld >= (int64_t)rows && ((uintptr_t)p % align) == 0 &&
           emu::on_device(p, span(rows, cols, l->ld));
}

std::vector<float> widen(const void *p, const Layout *l) {
    std::vector<float> out((size_t)l->ld * l->cols);
    const uint16_t *h = (const uint16_t *)p;
    for (uint64_t c = 0; c < l->cols; c++)
        for (uint64_t r = 0; r < l->rows; r++)
            out[c * l->ld + r] = to_f(h[c * l->ld + r]);
    return out;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = (cublasLtHandle_t)malloc(1);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasLtGetStatusName(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                                              : "CUBLAS_STATUS_NOT_SUPPORTED";
}

const char *cublasLtGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "success" : "refused by the emulated cuBLASLt";
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = (cublasLtMatmulDesc_t) new Desc();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete (Desc *)d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t dd,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t bytes) {
    Desc *d = (Desc *)dd;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        int32_t v;
        memcpy(&v, buf, 4);
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = (cublasOperation_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        uint32_t v;
        memcpy(&v, buf, 4);
        d->epilogue = (cublasLtEpilogue_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
        if (bytes != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(attr == CUBLASLT_MATMUL_DESC_BIAS_POINTER ? &d->bias : &d->aux, buf, bytes);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
        if (bytes != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->aux_ld, buf, bytes);
        return CUBLAS_STATUS_SUCCESS;
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (rows == 0 || cols == 0 || ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;
    *l = (cublasLtMatrixLayout_t) new Layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete (Layout *)l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = (cublasLtMatmulPreference_t) new Pref();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete (Pref *)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pp,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t bytes) {
    Pref *p = (Pref *)pp;
    int which = attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES   ? 0
                : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES ? 1
                : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES ? 2
                : attr == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES ? 3
                                                                     : -1;
    if (which < 0) return CUBLAS_STATUS_SUCCESS;  // workspace, reduction: no effect here
    if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->align[which], buf, 4);
    return CUBLAS_STATUS_SUCCESS;
}

// One algorithm always; the alignment promised is kept in it for the call.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found) {
    (void)h, (void)d, (void)a, (void)b, (void)c, (void)dd;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memset(results, 0, sizeof *results);
    memcpy(results[0].algo.data, ((Pref *)pref)->align, sizeof(((Pref *)pref)->align));
    results[0].state = CUBLAS_STATUS_SUCCESS;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t dd, const void *alpha_p,
                              const void *A, cublasLtMatrixLayout_t al, const void *B,
                              cublasLtMatrixLayout_t bl, const void *beta_p, const void *C,
                              cublasLtMatrixLayout_t cl, void *D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                              cudaStream_t stream) {
    (void)h, (void)ws, (void)ws_bytes, (void)stream;
    const Desc *d = (const Desc *)dd;
    const Layout *la = (const Layout *)al, *lb = (const Layout *)bl, *lc = (const Layout *)cl,
                 *ld = (const Layout *)dl;
    if (!algo) return CUBLAS_STATUS_INVALID_VALUE;
    uint32_t align[4];
    memcpy(align, algo->data, sizeof align);
    const uint64_t m = ld->rows, n = ld->cols;
    const bool an = d->ta == CUBLAS_OP_N, bn = d->tb == CUBLAS_OP_N;
    const uint64_t k = an ? la->cols : la->rows;
    const float alpha = *(const float *)alpha_p, beta = *(const float *)beta_p;
    if (!layout_ok(la, an ? m : k, an ? k : m, A, align[0]) ||
        !layout_ok(lb, bn ? k : n, bn ? n : k, B, align[1]) ||
        !layout_ok(ld, m, n, D, align[3]) ||
        (beta != 0.0f && !layout_ok(lc, m, n, C, align[2])))
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasLtEpilogue_t e = d->epilogue;
    const bool bias = e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    const bool aux_out = e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    const bool dgelu = e == CUBLASLT_EPILOGUE_DGELU;
    if (!bias && !aux_out && !dgelu && e != CUBLASLT_EPILOGUE_DEFAULT)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (bias && (!d->bias || (uintptr_t)d->bias % 16 || !emu::on_device(d->bias, m * 2)))
        return CUBLAS_STATUS_INVALID_VALUE;
    if ((aux_out || dgelu) && (!d->aux || (uintptr_t)d->aux % 16 || d->aux_ld < (int64_t)m ||
                               d->aux_ld % 8 || !emu::on_device(d->aux, span(m, n, d->aux_ld))))
        return CUBLAS_STATUS_INVALID_VALUE;
    std::vector<float> fa = widen(A, la), fb = widen(B, lb), prod((size_t)m * n);
    cblas_sgemm(CblasColMajor, an ? CblasNoTrans : CblasTrans, bn ? CblasNoTrans : CblasTrans,
                (int)m, (int)n, (int)k, alpha, fa.data(), (int)la->ld, fb.data(), (int)lb->ld,
                0.0f, prod.data(), (int)m);
    const uint16_t *c16 = (const uint16_t *)C, *b16 = (const uint16_t *)d->bias;
    uint16_t *d16 = (uint16_t *)D, *aux = (uint16_t *)d->aux;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            float v = prod[j * m + i];
            if (beta != 0.0f) v += beta * to_f(c16[j * lc->ld + i]);
            if (bias) v += to_f(b16[i]);
            if (aux_out) aux[j * d->aux_ld + i] = to_bf16(v), v = gelu(v);
            if (dgelu) v *= gelu_grad(to_f(aux[j * d->aux_ld + i]));
            d16[j * ld->ld + i] = to_bf16(v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"

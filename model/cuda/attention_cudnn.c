/* attention_cudnn.c: causal attention through cuDNN's fused flash-attention
 * engine, the alternative to our own kernels (attention.cu) that the CUDA
 * issue asks us to measure against them. Same layouts, same contract: qkv
 * (B, T, 3C) with q, k and v side by side, out (B, T, C), lse (B, NH, T) the
 * natural log-sum-exp of each query row's scaled scores; backward OVERWRITES
 * dqkv. So the model can swap one for the other per run (--attention).
 *
 * cuDNN's C API has no "attention" call: its fused engine recognises a graph
 * of primitive operations (matmul, pointwise, reduction, reshape) that
 * spells out scaled, causally masked softmax attention, and compiles one
 * kernel for it. This file builds those two graphs (forward with the
 * log-sum-exp, backward from it) with cuDNN's backend descriptors, asks the
 * heuristics for engine configurations and keeps the first execution plan
 * that finalises. Plans depend on the shape, so a small cache keeps one per
 * (B, T); building one can take a second (runtime compilation), which
 * happens once per shape.
 *
 * Plans are built against a device-properties descriptor, not a live
 * device: on a GPU it comes from the cuDNN handle, and without one from a
 * JSON description of a GPU (cuDNN 9.8+). That is what lets the CPU-only CI
 * check that cuDNN accepts both graphs for an H100 (tests/cuda/test_cudnn_plan.c),
 * although it cannot run them.
 *
 * Workspace: besides the plan's own, the backward graph needs two fp32
 * tensors of ours: the per-row sum of dout * out (B, NH, T) and dQ's
 * accumulator (B, NH, T, hs), which cuDNN's Hopper kernels add into and
 * which is zeroed before each backward. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include "kernels_cuda.h"

#if GPTRAIN_CUDNN
#include <cudnn.h>

/* ---- a minimal graph builder over cuDNN's backend descriptors ----------- */

#define CG_MAX_DESC 160
#define CG_MAX_OPS 40

/* Every descriptor a graph makes (freed together), its operations in order,
 * and the first failure: helpers do nothing once one has failed, so the graph
 * code reads straight through and the error names the first step that broke. */
typedef struct {
    cudnnBackendDescriptor_t desc[CG_MAX_DESC];
    int n_desc;
    cudnnBackendDescriptor_t ops[CG_MAX_OPS];
    int n_ops;
    int64_t next_uid; /* for virtual tensors */
    cudnnStatus_t st;
    const char *what;
} cg;

static void cg_init(cg *g) {
    memset(g, 0, sizeof(*g));
    g->next_uid = 1000;
}

static void cg_free(cg *g) {
    for (int i = 0; i < g->n_desc; i++) cudnnBackendDestroyDescriptor(g->desc[i]);
    g->n_desc = g->n_ops = 0;
}

/* cuDNN's last error message, on one line. */
static void last_error(char *why, size_t n) {
    why[0] = 0;
    cudnnGetLastErrorString(why, n);
    for (char *c = why; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

static int cg_fail(cg *g, cudnnStatus_t s, const char *what) {
    if (s != CUDNN_STATUS_SUCCESS && g->st == CUDNN_STATUS_SUCCESS) {
        g->st = s;
        g->what = what;
    }
    return g->st != CUDNN_STATUS_SUCCESS;
}

static cudnnBackendDescriptor_t cg_new(cg *g, cudnnBackendDescriptorType_t type,
                                       const char *what) {
    cudnnBackendDescriptor_t d = NULL;
    if (g->st || g->n_desc == CG_MAX_DESC) {
        cg_fail(g, CUDNN_STATUS_INTERNAL_ERROR, what);
        return NULL;
    }
    if (cg_fail(g, cudnnBackendCreateDescriptor(type, &d), what)) return NULL;
    g->desc[g->n_desc++] = d;
    return d;
}

static void cg_set(cg *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                   cudnnBackendAttributeType_t type, int64_t n, const void *value,
                   const char *what) {
    if (!g->st) cg_fail(g, cudnnBackendSetAttribute(d, name, type, n, value), what);
}

static void cg_finalize(cg *g, cudnnBackendDescriptor_t d, const char *what) {
    if (!g->st) cg_fail(g, cudnnBackendFinalize(d), what);
}

/* A 4-d tensor. by_value: a host scalar passed in the variant pack. */
static cudnnBackendDescriptor_t cg_tensor(cg *g, int64_t uid, cudnnDataType_t dt,
                                          const int64_t dim[4], const int64_t stride[4],
                                          int is_virtual, int by_value, const char *what) {
    cudnnBackendDescriptor_t t = cg_new(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, what);
    int64_t align = 16;
    bool virt = is_virtual != 0, byv = by_value != 0;
    cg_set(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt, what);
    cg_set(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byv, what);
    cg_finalize(g, t, what);
    return t;
}

/* A virtual (on-chip) tensor of dims d0 x d1 x d2 x d3, packed. */
static cudnnBackendDescriptor_t cg_virtual(cg *g, cudnnDataType_t dt, int64_t d0, int64_t d1,
                                           int64_t d2, int64_t d3, const char *what) {
    const int64_t dim[4] = {d0, d1, d2, d3};
    const int64_t stride[4] = {d1 * d2 * d3, d2 * d3, d3, 1};
    return cg_tensor(g, g->next_uid++, dt, dim, stride, 1, 0, what);
}

static void cg_op(cg *g, cudnnBackendDescriptor_t op, const char *what) {
    cg_finalize(g, op, what);
    if (g->st) return;
    if (g->n_ops == CG_MAX_OPS) {
        cg_fail(g, CUDNN_STATUS_INTERNAL_ERROR, what);
        return;
    }
    g->ops[g->n_ops++] = op;
}

/* y = mode(x[, b[, t]]), computed in `prec`. axis >= 0 for GEN_INDEX. */
static void cg_pointwise(cg *g, cudnnPointwiseMode_t mode, cudnnDataType_t prec,
                         cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                         cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y, int64_t axis,
                         const char *what) {
    cudnnBackendDescriptor_t pw = cg_new(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what);
    cg_set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, what);
    cg_set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, what);
    if (axis >= 0) cg_set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, what);
    cg_finalize(g, pw, what);
    cudnnBackendDescriptor_t op = cg_new(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
           &pw, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x,
           what);
    if (b)
        cg_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b,
               what);
    if (t)
        cg_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t,
               what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y,
           what);
    cg_op(g, op, what);
}

/* c = a @ b over the last two dimensions, batched over the first two. */
static void cg_matmul(cg *g, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                      cudnnBackendDescriptor_t c, const char *what) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = cg_new(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, what);
    cg_set(g, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, what);
    cg_finalize(g, mm, what);
    cudnnBackendDescriptor_t op = cg_new(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm, what);
    cg_op(g, op, what);
}

/* y = reduce(x) over the dimensions where y has extent 1. */
static void cg_reduce(cg *g, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                      cudnnBackendDescriptor_t y, const char *what) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t rd = cg_new(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, what);
    cg_set(g, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode,
           what);
    cg_set(g, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, what);
    cg_finalize(g, rd, what);
    cudnnBackendDescriptor_t op = cg_new(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x,
           what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y,
           what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd,
           what);
    cg_op(g, op, what);
}

/* y = x seen with other dimensions and strides (a transpose, here). */
static void cg_reshape(cg *g, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y,
                       const char *what) {
    cudnnBackendDescriptor_t op = cg_new(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, what);
    cg_set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, what);
    cg_op(g, op, what);
}

/* ---- the two graphs ------------------------------------------------------ */

typedef struct {
    int64_t B, T, NH, HS, C;
} att_shape;

/* Tensor ids in the variant packs. */
enum {
    UID_Q = 1, UID_K, UID_V, UID_O, UID_LSE, UID_SCALE, UID_NEG, UID_DO, UID_DQ, UID_DK, UID_DV,
    UID_ONE, UID_ROWSUM, UID_DQACC
};

/* The inputs both graphs share: Q as (B, NH, T, hs) and K transposed as
 * (B, NH, hs, T), read in place from qkv (row stride 3C, head stride hs; the
 * pointers differ by C); V as (B, NH, T, hs) for forward and transposed for
 * backward (the layouts cuDNN's patterns expect); the log-sum-exp
 * (B, NH, T, 1); the scale and the masking value as host scalars. */
typedef struct {
    cudnnBackendDescriptor_t q, kt, v, lse, scale, neg;
} att_inputs;

static void qkv_view(const att_shape *s, int transposed, int64_t dim[4], int64_t stride[4]) {
    int64_t row = 3 * s->C;
    dim[0] = s->B, dim[1] = s->NH, dim[2] = s->T, dim[3] = s->HS;
    stride[0] = s->T * row, stride[1] = s->HS, stride[2] = row, stride[3] = 1;
    if (transposed) {
        dim[2] = s->HS, dim[3] = s->T;
        stride[2] = 1, stride[3] = row;
    }
}

/* out and dout: (B, NH, T, hs) inside (B, T, C). */
static cudnnBackendDescriptor_t out_view(cg *g, const att_shape *s, int64_t uid,
                                         const char *what) {
    const int64_t dim[4] = {s->B, s->NH, s->T, s->HS};
    const int64_t stride[4] = {s->T * s->C, s->HS, s->C, 1};
    return cg_tensor(g, uid, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, what);
}

static att_inputs shared_inputs(cg *g, const att_shape *s, int v_transposed) {
    att_inputs in;
    int64_t dim[4], stride[4];
    const int64_t one[4] = {1, 1, 1, 1};
    const int64_t ldim[4] = {s->B, s->NH, s->T, 1};
    const int64_t lstride[4] = {s->NH * s->T, s->T, 1, 1};
    qkv_view(s, 0, dim, stride);
    in.q = cg_tensor(g, UID_Q, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor Q");
    if (!v_transposed)
        in.v = cg_tensor(g, UID_V, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor V");
    qkv_view(s, 1, dim, stride);
    if (v_transposed)
        in.v = cg_tensor(g, UID_V, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor V^T");
    in.kt = cg_tensor(g, UID_K, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor K^T");
    in.lse = cg_tensor(g, UID_LSE, CUDNN_DATA_FLOAT, ldim, lstride, 0, 0, "tensor lse");
    in.scale = cg_tensor(g, UID_SCALE, CUDNN_DATA_FLOAT, one, one, 0, 1, "scalar scale");
    in.neg = cg_tensor(g, UID_NEG, CUDNN_DATA_FLOAT, one, one, 0, 1, "scalar mask value");
    return in;
}

/* The scores of the graph, scaled and causally masked: key positions after
 * the query's get the mask value (mask_value). Returns the masked
 * (B, NH, T, T) fp32 tensor. */
static cudnnBackendDescriptor_t masked_scores(cg *g, const att_shape *s, const att_inputs *in) {
    int64_t B = s->B, NH = s->NH, T = s->T;
    cudnnBackendDescriptor_t S = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "S");
    cg_matmul(g, in->q, in->kt, S, "S = Q K^T");
    cudnnBackendDescriptor_t Ss = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "S*scale");
    cg_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, S, in->scale, NULL, Ss, -1,
                 "S * scale");
    cudnnBackendDescriptor_t row = cg_virtual(g, CUDNN_DATA_INT32, B, NH, T, T, "row index");
    cudnnBackendDescriptor_t col = cg_virtual(g, CUDNN_DATA_INT32, B, NH, T, T, "col index");
    cudnnBackendDescriptor_t keep = cg_virtual(g, CUDNN_DATA_BOOLEAN, B, NH, T, T, "mask");
    cg_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, Ss, NULL, NULL, row, 2,
                 "row index");
    cg_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, Ss, NULL, NULL, col, 3,
                 "column index");
    cg_pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, keep, -1,
                 "row >= column");
    cudnnBackendDescriptor_t Sm = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "masked S");
    cg_pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, Ss, in->neg, keep, Sm, -1,
                 "causal mask");
    return Sm;
}

/* Forward: P = softmax(mask(Q K^T * scale)), out = P V, and the log-sum-exp
 * max + log(sum(exp(S - max))) of each row for backward. */
static void graph_forward(cg *g, const att_shape *s) {
    int64_t B = s->B, NH = s->NH, T = s->T;
    att_inputs in = shared_inputs(g, s, 0);
    cudnnBackendDescriptor_t o = out_view(g, s, UID_O, "tensor out");
    cudnnBackendDescriptor_t Sm = masked_scores(g, s, &in);
    cudnnBackendDescriptor_t mx = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, 1, "row max");
    cg_reduce(g, CUDNN_REDUCE_TENSOR_MAX, Sm, mx, "row max");
    cudnnBackendDescriptor_t Sc = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "S - max");
    cg_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, Sm, mx, NULL, Sc, -1, "S - max");
    cudnnBackendDescriptor_t E = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "exp");
    cg_pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, Sc, NULL, NULL, E, -1, "exp");
    cudnnBackendDescriptor_t sum = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, 1, "row sum");
    cg_reduce(g, CUDNN_REDUCE_TENSOR_ADD, E, sum, "row sum");
    cudnnBackendDescriptor_t lg = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, 1, "log sum");
    cg_pointwise(g, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, sum, NULL, NULL, lg, -1, "log sum");
    cg_pointwise(g, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, mx, lg, NULL, in.lse, -1,
                 "lse = max + log sum");
    cudnnBackendDescriptor_t P = cg_virtual(g, CUDNN_DATA_BFLOAT16, B, NH, T, T, "P");
    cg_pointwise(g, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, E, sum, NULL, P, -1, "P = exp / sum");
    cg_matmul(g, P, in.v, o, "out = P V");
}

/* (B, NH, T, T) seen transposed as (B, NH, T, T) with the last two swapped. */
static cudnnBackendDescriptor_t transposed(cg *g, const att_shape *s, cudnnDataType_t dt,
                                           cudnnBackendDescriptor_t x, const char *what) {
    int64_t B = s->B, NH = s->NH, T = s->T;
    const int64_t dim[4] = {B, NH, T, T};
    const int64_t stride[4] = {NH * T * T, T * T, 1, T};
    cudnnBackendDescriptor_t y = cg_tensor(g, g->next_uid++, dt, dim, stride, 1, 0, what);
    cg_reshape(g, x, y, what);
    return y;
}

/* Backward, from the saved lse: P = exp(mask(S) - lse); dV = P^T dO;
 * dP = dO V^T; dS = P * (dP - rowsum(dO * out)) * scale; dK = dS^T Q;
 * dQ = dS K, accumulated in fp32 (UID_DQACC) and then converted. The row
 * sums (UID_ROWSUM) and the accumulator live in our workspace. */
static void graph_backward(cg *g, const att_shape *s) {
    int64_t B = s->B, NH = s->NH, T = s->T, HS = s->HS;
    int64_t dim[4], stride[4];
    const int64_t one[4] = {1, 1, 1, 1};
    const int64_t rdim[4] = {B, NH, T, 1}, rstride[4] = {NH * T, T, 1, 1};
    const int64_t adim[4] = {B, NH, T, HS}, astride[4] = {NH * T * HS, T * HS, HS, 1};
    att_inputs in = shared_inputs(g, s, 1);
    cudnnBackendDescriptor_t o = out_view(g, s, UID_O, "tensor out");
    cudnnBackendDescriptor_t dO = out_view(g, s, UID_DO, "tensor dout");
    qkv_view(s, 0, dim, stride);
    cudnnBackendDescriptor_t dQ =
        cg_tensor(g, UID_DQ, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor dQ");
    cudnnBackendDescriptor_t dK =
        cg_tensor(g, UID_DK, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor dK");
    cudnnBackendDescriptor_t dV =
        cg_tensor(g, UID_DV, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, "tensor dV");
    cudnnBackendDescriptor_t unit =
        cg_tensor(g, UID_ONE, CUDNN_DATA_FLOAT, one, one, 0, 1, "scalar one");
    cudnnBackendDescriptor_t rowsum =
        cg_tensor(g, UID_ROWSUM, CUDNN_DATA_FLOAT, rdim, rstride, 0, 0, "tensor rowsum");
    cudnnBackendDescriptor_t dQacc =
        cg_tensor(g, UID_DQACC, CUDNN_DATA_FLOAT, adim, astride, 0, 0, "tensor dQ accumulator");

    /* rowsum = sum over hs of dO * out (times 1: the pattern has a dropout
     * scale there, which is 1 without dropout) */
    cudnnBackendDescriptor_t prod = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, HS, "dO*out");
    cg_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dO, o, NULL, prod, -1, "dO * out");
    cudnnBackendDescriptor_t rs = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, 1, "sum dO*out");
    cg_reduce(g, CUDNN_REDUCE_TENSOR_ADD, prod, rs, "sum dO * out");
    cg_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, rs, unit, NULL, rowsum, -1,
                 "rowsum");

    /* P, rebuilt */
    cudnnBackendDescriptor_t Sm = masked_scores(g, s, &in);
    cudnnBackendDescriptor_t Sc = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "S - lse");
    cg_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, Sm, in.lse, NULL, Sc, -1, "S - lse");
    cudnnBackendDescriptor_t P = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "P");
    cg_pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, Sc, NULL, NULL, P, -1, "P = exp");

    /* dV = P^T dO */
    cudnnBackendDescriptor_t PT = transposed(g, s, CUDNN_DATA_BFLOAT16, P, "P^T");
    cg_matmul(g, PT, dO, dV, "dV = P^T dO");

    /* dS = P * (dO V^T - rowsum) * scale */
    cudnnBackendDescriptor_t dP = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "dP");
    cg_matmul(g, dO, in.v, dP, "dP = dO V^T");
    cudnnBackendDescriptor_t d1 = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "dP - rowsum");
    cg_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, dP, rowsum, NULL, d1, -1,
                 "dP - rowsum");
    cudnnBackendDescriptor_t d2 = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "P * (..)");
    cg_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, d1, P, NULL, d2, -1, "P * (dP - rs)");
    cudnnBackendDescriptor_t dS = cg_virtual(g, CUDNN_DATA_FLOAT, B, NH, T, T, "dS");
    cg_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, d2, in.scale, NULL, dS, -1,
                 "dS = .. * scale");

    /* dK = dS^T Q */
    cudnnBackendDescriptor_t dST = transposed(g, s, CUDNN_DATA_BFLOAT16, dS, "dS^T");
    cg_matmul(g, dST, in.q, dK, "dK = dS^T Q");

    /* dQ = dS K, through the fp32 accumulator */
    qkv_view(s, 0, dim, stride);
    cudnnBackendDescriptor_t k = cg_tensor(g, g->next_uid++, CUDNN_DATA_BFLOAT16, dim, stride,
                                           1, 0, "K");
    cg_reshape(g, in.kt, k, "K from K^T");
    cg_matmul(g, dS, k, dQacc, "dQ = dS K");
    cg_pointwise(g, CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, dQacc, NULL, NULL, dQ, -1,
                 "dQ to bf16");
}

/* ---- plans --------------------------------------------------------------- */

/* A graph's execution plan for the device `prop` describes: the operation
 * graph, the heuristics' engine configurations in their order of preference,
 * and the first whose plan finalises. Owns its descriptors. */
typedef struct {
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
    cg g; /* the graph's descriptors, kept alive with the plan */
} att_plan;

static void plan_free(att_plan *p) {
    if (p->plan) cudnnBackendDestroyDescriptor(p->plan);
    p->plan = NULL;
    cg_free(&p->g);
}

#define MAX_CFGS 16

static gpt_status plan_build(att_plan *p, int backward, const att_shape *s,
                             cudnnBackendDescriptor_t prop, gpt_error_t err) {
    cg *g = &p->g;
    cg_init(g);
    p->plan = NULL;
    if (backward) graph_backward(g, s);
    else graph_forward(g, s);
    cudnnBackendDescriptor_t graph = cg_new(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "graph");
    cg_set(g, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->n_ops,
           g->ops, "graph");
    cg_finalize(g, graph, "graph");
    cudnnBackendDescriptor_t heur = cg_new(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    cg_set(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
           &graph, "heuristics");
    cg_set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics");
    cg_set(g, heur, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &prop,
           "heuristics");
    cg_finalize(g, heur, "heuristics");
    cudnnBackendDescriptor_t cfgs[MAX_CFGS];
    int64_t n = 0;
    for (int i = 0; i < MAX_CFGS; i++) cfgs[i] = cg_new(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR,
                                                        "engine configurations");
    if (!g->st)
        cg_fail(g, cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, MAX_CFGS, &n, cfgs),
                "engine configurations");
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    for (int64_t i = 0; !g->st && i < n && !p->plan; i++) {
        cudnnBackendDescriptor_t plan = NULL;
        if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan)) break;
        last = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                        CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
        if (!last)
            last = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &prop);
        if (!last) last = cudnnBackendFinalize(plan);
        if (last) cudnnBackendDestroyDescriptor(plan);
        else p->plan = plan;
    }
    if (!g->st && !p->plan) cg_fail(g, last, n ? "execution plan" : "heuristics: no engine");
    if (!g->st) {
        int64_t got = 0;
        cg_fail(g, cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                            CUDNN_TYPE_INT64, 1, &got, &p->workspace),
                "workspace size");
    }
    if (!g->st) return GPT_OK;
    char why[256];
    last_error(why, sizeof(why));
    snprintf(err, GPT_ERRLEN, "cuDNN attention %s (B=%lld T=%lld NH=%lld hs=%lld): %s at %s%s%s",
             backward ? "backward" : "forward", (long long)s->B, (long long)s->T,
             (long long)s->NH, (long long)s->HS, cudnnGetErrorString(g->st), g->what,
             why[0] ? ": " : "", why);
    plan_free(p);
    return GPT_ERR_DEVICE;
}

/* The device properties from a JSON description, for building plans without
 * a device. */
static gpt_status prop_from_json(cudnnBackendDescriptor_t *prop, const char *json,
                                 gpt_error_t err) {
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, prop);
    if (!st)
        st = cudnnBackendSetAttribute(*prop, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION,
                                      CUDNN_TYPE_CHAR, (int64_t)strlen(json), json);
    if (!st) st = cudnnBackendFinalize(*prop);
    if (!st) return GPT_OK;
    char why[256];
    last_error(why, sizeof(why));
    snprintf(err, GPT_ERRLEN, "cuDNN device properties from JSON: %s: %s",
             cudnnGetErrorString(st), why);
    if (*prop) cudnnBackendDestroyDescriptor(*prop);
    *prop = NULL;
    return GPT_ERR_DEVICE;
}

gpt_status gpt_cudnn_attention_check(const char *device_json, int backward, int B, int T,
                                     int C, int NH, size_t *workspace, gpt_error_t err) {
    cudnnBackendDescriptor_t prop = NULL;
    if (C % NH) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: C=%d is not a multiple of NH=%d", C, NH);
        return GPT_ERR_CONFIG;
    }
    gpt_status st = prop_from_json(&prop, device_json, err);
    att_shape s = {B, T, NH, C / NH, C};
    att_plan p;
    if (!st) st = plan_build(&p, backward, &s, prop, err);
    if (!st) {
        *workspace = (size_t)p.workspace;
        plan_free(&p);
    }
    if (prop) cudnnBackendDestroyDescriptor(prop);
    return st;
}

/* ---- running them --------------------------------------------------------- */

#define ATT_CACHE 4
#define ALIGN256(x) (((x) + 255) & ~(size_t)255)

struct gpt_cudnn_att {
    cudnnHandle_t handle;
    cudnnBackendDescriptor_t prop;
    cudaStream_t stream;
    struct {
        att_shape s;
        att_plan fwd, bwd;
        int used;
    } cache[ATT_CACHE];
    int evict; /* the slot a new shape replaces when all are used */
    void *ws;  /* device workspace, grown to the largest shape's need */
    size_t ws_bytes;
};

/* Our part of backward's workspace, after the plan's: row sums, then the dQ
 * accumulator. */
static size_t rowsum_offset(const att_plan *bwd) { return ALIGN256((size_t)bwd->workspace); }
static size_t dqacc_offset(const att_plan *bwd, const att_shape *s) {
    return rowsum_offset(bwd) + ALIGN256((size_t)(s->B * s->NH * s->T) * sizeof(float));
}
static size_t ws_need(const att_plan *fwd, const att_plan *bwd, const att_shape *s) {
    size_t b = dqacc_offset(bwd, s) + (size_t)(s->B * s->NH * s->T * s->HS) * sizeof(float);
    return b > (size_t)fwd->workspace ? b : (size_t)fwd->workspace;
}

/* The masked scores' value, as cudnn-frontend passes it: -inf from cuDNN
 * 9.10 on, the lowest float for the releases before, which prefer it. */
static float mask_value(void) { return cudnnGetVersion() >= 91000 ? -INFINITY : -FLT_MAX; }

int gpt_cudnn_backward_ok(size_t v, int T, gpt_error_t err) {
    if (!v) v = cudnnGetVersion();
    int major = (int)(v / 10000), minor = (int)(v / 100 % 100), patch = (int)(v % 100);
    if (v == 91000 || v == 91001) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: the backward of cuDNN %d.%d.%d has known "
                 "bugs; use cuDNN 9.10.2 or newer, or --attention gptrain", major, minor, patch);
        return 0;
    }
    if (v <= 91500 && T % 128) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: cuDNN %d.%d.%d's backward needs a sequence "
                 "length that is a multiple of 128, not %d (fixed in 9.15.1); use such a "
                 "--seq, a newer cuDNN, or --attention gptrain", major, minor, patch, T);
        return 0;
    }
    return 1;
}

/* cuDNN was told every tensor is 16-byte aligned (cg_tensor). */
static gpt_status aligned(const void *const *p, int n, gpt_error_t err) {
    for (int i = 0; i < n; i++)
        if ((uintptr_t)p[i] % 16) {
            snprintf(err, GPT_ERRLEN, "cuDNN attention: device pointer %p is not 16-byte "
                     "aligned", p[i]);
            return GPT_ERR_CONFIG;
        }
    return GPT_OK;
}

static gpt_status cudnn_fail(cudnnStatus_t st, const char *what, gpt_error_t err) {
    char why[256];
    last_error(why, sizeof(why));
    snprintf(err, GPT_ERRLEN, "cuDNN attention: %s: %s%s%s", what, cudnnGetErrorString(st),
             why[0] ? ": " : "", why);
    return GPT_ERR_DEVICE;
}

gpt_status gpt_cudnn_att_create(gpt_cudnn_att **out, gpt_cu_ctx *ctx, gpt_error_t err) {
    gpt_cudnn_att *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: out of host memory");
        return GPT_ERR_NOMEM;
    }
    a->stream = ctx->stream;
    cudnnStatus_t st = cudnnCreate(&a->handle);
    const char *what = "cudnnCreate";
    if (!st) st = cudnnSetStream(a->handle, ctx->stream), what = "cudnnSetStream";
    if (!st)
        st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &a->prop),
        what = "device properties";
    if (!st)
        st = cudnnBackendSetAttribute(a->prop, CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                      &a->handle);
    if (!st) st = cudnnBackendFinalize(a->prop);
    if (st) {
        gpt_status r = cudnn_fail(st, what, err);
        gpt_cudnn_att_free(a);
        return r;
    }
    *out = a;
    return GPT_OK;
}

void gpt_cudnn_att_free(gpt_cudnn_att *a) {
    if (!a) return;
    if (a->stream) cudaStreamSynchronize(a->stream);
    for (int i = 0; i < ATT_CACHE; i++) {
        plan_free(&a->cache[i].fwd);
        plan_free(&a->cache[i].bwd);
    }
    cudaFree(a->ws);
    if (a->prop) cudnnBackendDestroyDescriptor(a->prop);
    if (a->handle) cudnnDestroy(a->handle);
    free(a);
}

/* The cached plans for shape s, built (and the workspace grown) on first
 * use. Building waits for the stream: the workspace may move, and an
 * evicted plan may still have work queued. */
static gpt_status plans_for(gpt_cudnn_att *a, const att_shape *s, int *slot, gpt_error_t err) {
    for (int i = 0; i < ATT_CACHE; i++)
        if (a->cache[i].used && !memcmp(&a->cache[i].s, s, sizeof(*s))) {
            *slot = i;
            return GPT_OK;
        }
    cudaError_t e = cudaStreamSynchronize(a->stream);
    if (e != cudaSuccess) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: %s", cudaGetErrorString(e));
        return GPT_ERR_DEVICE;
    }
    int i = a->evict;
    a->evict = (a->evict + 1) % ATT_CACHE;
    plan_free(&a->cache[i].fwd);
    plan_free(&a->cache[i].bwd);
    a->cache[i].used = 0;
    if (plan_build(&a->cache[i].fwd, 0, s, a->prop, err)) return GPT_ERR_DEVICE;
    if (plan_build(&a->cache[i].bwd, 1, s, a->prop, err)) {
        plan_free(&a->cache[i].fwd);
        return GPT_ERR_DEVICE;
    }
    /* The new workspace first: the cached plans keep the old one if it fails. */
    size_t need = ws_need(&a->cache[i].fwd, &a->cache[i].bwd, s);
    if (need > a->ws_bytes) {
        void *ws = NULL;
        e = cudaMalloc(&ws, need);
        if (e != cudaSuccess) {
            snprintf(err, GPT_ERRLEN, "cuDNN attention: %zu bytes of workspace: %s", need,
                     cudaGetErrorString(e));
            plan_free(&a->cache[i].fwd);
            plan_free(&a->cache[i].bwd);
            return GPT_ERR_NOMEM;
        }
        cudaFree(a->ws); /* idle: the stream was synchronised above */
        a->ws = ws;
        a->ws_bytes = need;
    }
    a->cache[i].s = *s;
    a->cache[i].used = 1;
    *slot = i;
    return GPT_OK;
}

static gpt_status execute(gpt_cudnn_att *a, const att_plan *p, int n, const int64_t *uids,
                          void **ptrs, const char *what, gpt_error_t err) {
    cudnnBackendDescriptor_t vp = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (!st)
        st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n,
                                      uids);
    if (!st)
        st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                      CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (!st)
        st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR,
                                      1, &a->ws);
    if (!st) st = cudnnBackendFinalize(vp);
    if (!st) st = cudnnBackendExecute(a->handle, p->plan, vp);
    if (vp) cudnnBackendDestroyDescriptor(vp);
    return st ? cudnn_fail(st, what, err) : GPT_OK;
}

static gpt_status shape_of(att_shape *s, int B, int T, int C, int NH, gpt_error_t err) {
    if (B < 1 || T < 1 || NH < 1 || C % NH || C % 8) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: unsupported shape B=%d T=%d C=%d NH=%d", B,
                 T, C, NH);
        return GPT_ERR_CONFIG;
    }
    *s = (att_shape){B, T, NH, C / NH, C};
    return GPT_OK;
}

gpt_status gpt_cudnn_attention_forward(gpt_cudnn_att *a, gpt_bf16 *out, float *lse,
                                       const gpt_bf16 *qkv, int B, int T, int C, int NH,
                                       gpt_error_t err) {
    att_shape s;
    int i;
    const void *p[] = {out, lse, qkv};
    gpt_status r;
    if ((r = shape_of(&s, B, T, C, NH, err)) || (r = aligned(p, 3, err)) ||
        (r = plans_for(a, &s, &i, err)))
        return r;
    float scale = 1.0f / sqrtf((float)s.HS), neg = mask_value();
    const int64_t uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_LSE, UID_SCALE, UID_NEG};
    void *ptrs[] = {(void *)qkv, (void *)(qkv + C), (void *)(qkv + 2 * C), out, lse, &scale,
                    &neg};
    return execute(a, &a->cache[i].fwd, 7, uids, ptrs, "forward", err);
}

gpt_status gpt_cudnn_attention_backward(gpt_cudnn_att *a, gpt_bf16 *dqkv, const gpt_bf16 *dout,
                                        const gpt_bf16 *qkv, const gpt_bf16 *out,
                                        const float *lse, int B, int T, int C, int NH,
                                        gpt_error_t err) {
    att_shape s;
    int i;
    const void *p[] = {dqkv, dout, qkv, out, lse};
    gpt_status r;
    if ((r = shape_of(&s, B, T, C, NH, err)) || (r = aligned(p, 5, err)))
        return r;
    if (!gpt_cudnn_backward_ok(0, T, err)) return GPT_ERR_CONFIG;
    if ((r = plans_for(a, &s, &i, err))) return r;
    const att_plan *plan = &a->cache[i].bwd;
    char *ws = a->ws;
    float *rowsum = (float *)(ws + rowsum_offset(plan));
    float *dqacc = (float *)(ws + dqacc_offset(plan, &s));
    cudaError_t e = cudaMemsetAsync(dqacc, 0, (size_t)(s.B * s.NH * s.T * s.HS) * sizeof(float),
                                    a->stream);
    if (e != cudaSuccess) {
        snprintf(err, GPT_ERRLEN, "cuDNN attention: clearing dQ: %s", cudaGetErrorString(e));
        return GPT_ERR_DEVICE;
    }
    float scale = 1.0f / sqrtf((float)s.HS), neg = mask_value(), one = 1.0f;
    const int64_t uids[] = {UID_Q,  UID_K,  UID_V,  UID_O,   UID_LSE,    UID_SCALE, UID_NEG,
                            UID_DO, UID_DQ, UID_DK, UID_DV, UID_ONE, UID_ROWSUM, UID_DQACC};
    void *ptrs[] = {(void *)qkv, (void *)(qkv + C), (void *)(qkv + 2 * C), (void *)out,
                    (void *)lse, &scale, &neg, (void *)dout, dqkv, dqkv + C, dqkv + 2 * C,
                    &one, rowsum, dqacc};
    return execute(a, plan, 14, uids, ptrs, "backward", err);
}

#else /* built without cuDNN: every entry point refuses */

static gpt_status no_cudnn(gpt_error_t err) {
    snprintf(err, GPT_ERRLEN, "cuDNN attention: this build has no cuDNN >= 9.8 (configure with "
             "CUDNN_INCLUDE_DIR and CUDNN_LIBRARY)");
    return GPT_ERR_CONFIG;
}
gpt_status gpt_cudnn_att_create(gpt_cudnn_att **out, gpt_cu_ctx *ctx, gpt_error_t err) {
    return no_cudnn(err);
}
void gpt_cudnn_att_free(gpt_cudnn_att *a) {}
gpt_status gpt_cudnn_attention_forward(gpt_cudnn_att *a, gpt_bf16 *out, float *lse,
                                       const gpt_bf16 *qkv, int B, int T, int C, int NH,
                                       gpt_error_t err) {
    return no_cudnn(err);
}
gpt_status gpt_cudnn_attention_backward(gpt_cudnn_att *a, gpt_bf16 *dqkv, const gpt_bf16 *dout,
                                        const gpt_bf16 *qkv, const gpt_bf16 *out,
                                        const float *lse, int B, int T, int C, int NH,
                                        gpt_error_t err) {
    return no_cudnn(err);
}
gpt_status gpt_cudnn_attention_check(const char *device_json, int backward, int B, int T,
                                     int C, int NH, size_t *workspace, gpt_error_t err) {
    return no_cudnn(err);
}
int gpt_cudnn_backward_ok(size_t version, int T, gpt_error_t err) {
    no_cudnn(err);
    return 0;
}
#endif

/* gpt_cuda_internal.h: the CUDA model's state, shared by gpt_cuda.c (buffers,
 * host copies) and gpt_cuda_step.c (forward, backward, update). Not a
 * public API; see gpt_cuda.h. */
#ifndef GPT_CUDA_INTERNAL_H
#define GPT_CUDA_INTERNAL_H

#include <stdio.h>
#include <cuda_runtime.h>
#include "gpt_cuda.h"
#include "kernels_cuda.h"

/* A CUDA runtime call inside a function with an err buffer: on failure,
 * "what: CUDA's message" and GPT_ERR_DEVICE. */
#define CUDA_TRY(call, what)                                                          \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess) {                                                      \
            snprintf(err, GPT_ERRLEN, "%s: %s", (what), cudaGetErrorString(e_));     \
            return GPT_ERR_DEVICE;                                                    \
        }                                                                             \
    } while (0)

/* Device activations. Per-layer arrays hold n_layer slices of the current
 * micro-batch's size, as the CPU model's do; fch_gelu holds one slice only
 * under --recompute (backward recomputes it from fch). */
typedef struct {
    gpt_bf16 *encoded;                       /* (BT, C) */
    gpt_bf16 *ln1, *qkv, *atty, *resid2;     /* (L, BT, C|3C|C|C) */
    gpt_bf16 *ln2, *fch, *fch_gelu, *resid3; /* (L, BT, C|4C|4C|C) */
    gpt_bf16 *lnf;                           /* (BT, C) */
    gpt_bf16 *logits;                        /* (BT, Vp); the gradient after a training forward */
    gpt_bf16 *tmp;                           /* (BT, C): a projection before its residual add */
    gpt_bf16 *dres, *dln, *datty, *dqkv, *dfch; /* backward, one layer at a time */
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd; /* (L, BT) */
    float *lse;                              /* (L, B, NH, T), layers gpt_cuda_lse_stride apart */
    float *lnf_mean, *lnf_rstd, *losses;     /* (BT) */
    float *delta;                            /* (B, NH, T): attention backward's workspace */
    double *sumsq;                           /* one double: the norm's sum of squares */
    int *tokens, *targets;                   /* (BT) */
    int *plan;                               /* the encoder plan: uniq, start, pos */
} gpt_cuda_acts;

struct gpt_cuda {
    gpt_config cfg;
    gpt_table table;
    gpt_cuda_opts o;
    gpt_cu_ctx ctx;
    gpt_cudnn_att *cudnn;     /* NULL unless opts.attention is GPT_CUDA_ATT_CUDNN */
    /* cap each: the table, then zero padding; or the shard's hi - lo
     * elements under opts.shard_params (params) and opts.shard_grads
     * (grads), element i of the table then at i - poff (i - goff). */
    gpt_bf16 *params, *grads;
    size_t poff, goff;
    float *master, *m, *v;    /* hi - lo each: the shard [lo, hi) */
    gpt_cu_span *spans;       /* device: the update's spans of [lo, hi) */
    size_t nspans;
    size_t lo, hi, cap;       /* resolved from opts */
    size_t *ulo;              /* the units' first elements, and the total */
    gpt_bf16 **up, **ug;      /* per unit: where its parameters and gradients are */
    gpt_cuda_unit_fn hook;    /* gpt_cuda_set_unit_hook */
    void *hook_ctx;
    gpt_cuda_acts a;
    void *blocks[3];          /* the device allocations behind a: bf16, fp32, int */
    /* Pinned host staging for the uploads and the losses. */
    int *h_tokens, *h_targets, *h_plan, *h_counts;
    float *h_losses;
    gpt_cu_encoder_plan plan;  /* host plan over h_plan */
    gpt_cu_encoder_plan dplan; /* the same, pointing at a.plan */
    void *staged;              /* cudaEvent_t: the last upload from staging is done */
    void *lossed;              /* cudaEvent_t: the last forward's losses are in h_losses */
    int loss_n;                /* positions behind lossed; 0 before a forward with targets */
    int cur_B, cur_T;
    int grad_ready; /* the logits hold their gradient: backward may run */
    int logits_grad; /* the logits buffer holds no readable logits (a training
                      * forward's gradient, or a pass that failed), backward or not */
    int adam_step;
};

/* The unit tables (gpt_cuda_units.c), once the buffers exist. */
gpt_status gpt_cuda_units_init(gpt_cuda *g, gpt_error_t err);
void gpt_cuda_units_free(gpt_cuda *g);

/* Tells the unit hook; GPT_ERR_HOOK when it fails, or when a NEED event
 * leaves the unit without the memory the pass is about to use. */
gpt_status gpt_cuda_tell(gpt_cuda *g, gpt_unit_event ev, int unit, int backward,
                         gpt_error_t err);

/* Device elements of each kind that the activations take at capacity (B,T);
 * gpt_cuda.c lays them out, gpt_cuda_bytes counts them. */
typedef struct {
    size_t bf16, f32, ints;
} gpt_cuda_sizes;
gpt_cuda_sizes gpt_cuda_acts_layout(gpt_cuda_acts *a, void *const blocks[3],
                                    const gpt_config *c, int B, int T, int recompute);

/* Floats from one layer's lse to the next at micro-batch B and length T:
 * B * NH * T rounded up to a multiple of 4, so every layer's slice starts
 * 16-byte aligned, as cuDNN's attention asks (B * NH * T may be odd). */
static inline size_t gpt_cuda_lse_stride(int B, int NH, int T) {
    return ((size_t)B * NH * T + 3) / 4 * 4;
}

#endif

/* gpt_cuda.h: the public API of the model's CUDA twin (model/cuda/).
 *
 * The same GPT-2 as gpt.h, on one GPU, in mixed precision: bf16 parameters,
 * activations and gradients; fp32 master weights and AdamW moments; fp32
 * accumulation everywhere. It shares gpt.h's config and tensor table: the
 * device buffers are laid out by the same table, so a tensor sits at the
 * same offset (in elements) in the bf16 parameters, the bf16 gradients, the
 * fp32 master weights and the moments as in the CPU model's flat buffers,
 * and the host copies that checkpoints read and write are the CPU model's
 * layout exactly.
 *
 * No CUDA type appears here: C callers need no CUDA header. Every function
 * that can fail returns a gpt_status with a one-line message in err; a
 * CUDA failure is GPT_ERR_DEVICE and leaves the model unusable (free it).
 * Work is enqueued on the model's stream; the functions that return numbers
 * to the host (losses, norms, copies) wait for it. */
#ifndef GPT_CUDA_H
#define GPT_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include "gpt.h"

typedef struct gpt_cuda gpt_cuda;

/* Which attention kernels the passes use: ours (model/cuda/attention.cu,
 * the default) or cuDNN's fused flash-attention engine (attention_cudnn.c).
 * Same inputs and outputs, so either can train a run; they differ in speed
 * and in the bits (bench/gpu/run.sh attention compares them). */
enum { GPT_CUDA_ATT_OURS = 0, GPT_CUDA_ATT_CUDNN = 1 };

/* What gpt_cuda_create needs beyond the config. */
typedef struct {
    int B, T;          /* activation capacity: micro-batch and sequence length */
    int device;        /* CUDA device ordinal (the local rank, usually) */
    int recompute;     /* 1: keep no GELU outputs; backward recomputes them */
    int attention;     /* GPT_CUDA_ATT_OURS (attention.cu) or _CUDNN (cuDNN's engine) */
    uint64_t sr_seed;  /* != 0: stochastic rounding of the bf16 weights */
    /* ZeRO-1: the fp32 master weights and the moments exist for elements
     * [shard_lo, shard_hi) of the table only, and the update steps only
     * those; 0, 0 means the whole table. */
    size_t shard_lo, shard_hi;
    /* Elements allocated for the bf16 parameters and gradients, at least
     * the table's total (0: the total): room for an allgather of equal
     * shards in place. The excess is zero and never read by the passes. */
    size_t capacity;
    /* ZeRO-2 (shard_grads): the bf16 gradient buffer holds the shard's
     * elements only, the reduced gradient the update reads; backward writes
     * each unit's gradients wherever the unit hook binds them on NEED_GRADS.
     * ZeRO-3 (shard_params): the bf16 parameters too are the shard only, and
     * the hook binds each unit's parameters on NEED_PARAMS. */
    int shard_grads, shard_params;
} gpt_cuda_opts;

/* The shapes the CUDA kernels support: n_embd a multiple of 8 and a head
 * size (n_embd / n_head) of 64 or 128, as every GPT-2 size and every dN
 * preset has. GPT_ERR_CONFIG with the reason otherwise. */
gpt_status gpt_cuda_check_config(const gpt_config *cfg, gpt_error_t err);

/* Device bytes gpt_cuda_create will allocate for this config and options
 * (parameters, gradients, master weights, moments, activations, logits,
 * workspaces), so a run can say up front that it will not fit. */
size_t gpt_cuda_bytes(const gpt_config *cfg, const gpt_cuda_opts *o);

/* Selects o->device, allocates everything (zeroed) and creates the stream
 * and the kernel context. Load weights with gpt_cuda_set_params. */
gpt_status gpt_cuda_create(gpt_cuda **out, const gpt_config *cfg, const gpt_cuda_opts *o,
                           gpt_error_t err);
void gpt_cuda_free(gpt_cuda *g);

/* The tensor table of the model (gpt.h): offsets in elements. */
const gpt_table *gpt_cuda_table(const gpt_cuda *g);

/* From host floats laid out by the table (a CPU model's params, whole): the
 * bf16 working copy, rounded to nearest even (of the shard only under
 * shard_params), and the master weights of the shard. Waits. */
gpt_status gpt_cuda_set_params(gpt_cuda *g, const float *host, gpt_error_t err);

/* The same from the shard's floats alone, shard_hi - shard_lo of them (a
 * ZeRO-3 host keeps no more): the master weights and the bf16 copy of the
 * shard; the rest of the bf16 copy is left for an allgather. Waits. */
gpt_status gpt_cuda_set_shard(gpt_cuda *g, const float *shard, gpt_error_t err);

/* Host copies, laid out by the table, for checkpoints and tests. Each waits
 * for the stream. get_params writes the fp32 master weights of the shard
 * into host[shard_lo, shard_hi) and leaves the rest of host alone
 * (get_shard writes them to shard[0, shard_hi - shard_lo) instead);
 * get_weights writes the bf16 working copy widened to float, and get_grads
 * the bf16 gradient buffer, each whole, or into [shard_lo, shard_hi) only
 * under shard_params (shard_grads). The moments are the shard's: m and v
 * hold shard_hi - shard_lo floats (like a sharded CPU model's m and v). */
gpt_status gpt_cuda_get_params(gpt_cuda *g, float *host, gpt_error_t err);
gpt_status gpt_cuda_get_shard(gpt_cuda *g, float *shard, gpt_error_t err);
gpt_status gpt_cuda_get_weights(gpt_cuda *g, float *host, gpt_error_t err);
gpt_status gpt_cuda_get_grads(gpt_cuda *g, float *host, gpt_error_t err);
gpt_status gpt_cuda_get_moments(gpt_cuda *g, float *m, float *v, gpt_error_t err);
gpt_status gpt_cuda_set_moments(gpt_cuda *g, const float *m, const float *v, int adam_step,
                                gpt_error_t err);
int gpt_cuda_adam_step(const gpt_cuda *g);

/* Forward over host tokens (B, T), B <= opts.B, T <= opts.T; ids are checked
 * on the host (GPT_ERR_INPUT names the first bad one). With targets, the
 * per-position losses are computed and, when mean_loss is not NULL,
 * *mean_loss set (it waits for them). With mean_loss NULL the host does
 * not wait: gpt_cuda_mean_loss reads the loss later, for instance after
 * the backward pass is queued, so the device never idles between the two.
 * grad_scale > 0 says a gpt_cuda_backward with that scale follows: the
 * fused classifier then leaves the logits' gradient in place of the logits
 * in the same pass. grad_scale == 0 is evaluation. */
gpt_status gpt_cuda_forward(gpt_cuda *g, const int *tokens, const int *targets, int B,
                            int T, float grad_scale, float *mean_loss, gpt_error_t err);

/* The mean loss of the last forward with targets; waits until the device
 * has computed it. GPT_ERR_CONFIG before any such forward, and after one
 * that failed. */
gpt_status gpt_cuda_mean_loss(gpt_cuda *g, float *mean_loss, gpt_error_t err);

/* Host copy of the (B, T, padded_vocab) logits of the last forward made
 * with grad_scale == 0 (or without targets), widened to float. */
gpt_status gpt_cuda_get_logits(gpt_cuda *g, float *host, gpt_error_t err);

/* Sets the gradients to zero (before a step's first micro-step). */
gpt_status gpt_cuda_zero_grad(gpt_cuda *g, gpt_error_t err);

/* Backward of the last forward, which must have had targets and
 * grad_scale > 0. Gradients are ADDED into the bf16 gradient buffer. */
gpt_status gpt_cuda_backward(gpt_cuda *g, gpt_error_t err);

/* The unit hook: the CPU model's protocol (gpt.h, "units") with the same
 * units, events and order, told as the passes queue their kernels. A unit's
 * kernels read its parameters and add into its gradients where they are
 * bound: by default inside the model's buffers, else where the hook bound
 * them (gpt_cuda_bind_*) on NEED_PARAMS / NEED_GRADS. When the hook returns
 * from GRADS_READY, the kernels that finish the unit's gradients are
 * queued on the model's stream but may not have run; the hook may queue
 * work on other streams behind them (the gradient reduction), and must
 * order any reuse of memory it bound against the model's stream itself.
 * Non-zero stops the pass with GPT_ERR_HOOK and the hook's message in err.
 * A pass that needs a unit nobody bound stops with GPT_ERR_HOOK too. NULL
 * turns the hook off. */
typedef int (*gpt_cuda_unit_fn)(void *ctx, gpt_cuda *g, gpt_unit_event ev, int unit,
                                int backward, gpt_error_t err);
void gpt_cuda_set_unit_hook(gpt_cuda *g, gpt_cuda_unit_fn fn, void *ctx);

/* Points unit u's bf16 parameters (gradients) at dev, device memory of the
 * unit's length laid out as the unit's range of the table; NULL unbinds. */
void gpt_cuda_bind_params(gpt_cuda *g, int unit, void *dev);
void gpt_cuda_bind_grads(gpt_cuda *g, int unit, void *dev);

/* The number of units (gpt_num_units), and the elements [lo, hi) of the
 * table that unit u covers (gpt_unit_range). */
int gpt_cuda_num_units(const gpt_cuda *g);
void gpt_cuda_unit_range(const gpt_cuda *g, int unit, size_t *lo, size_t *hi);

/* dst[0..n) += src[0..n), bf16 device arrays 16-byte aligned, summed in
 * fp32 and rounded to nearest, queued on the model's stream: how a
 * reduced part of a unit's gradient joins the ZeRO-2 shard. */
gpt_status gpt_cuda_accumulate(gpt_cuda *g, void *dst, const void *src, size_t n,
                               gpt_error_t err);

/* The model's stream (a cudaStream_t) and its device buffers: the bf16
 * parameters and gradients (opts.capacity elements each, or the shard's
 * under shard_params / shard_grads), for the collectives that move them. */
void *gpt_cuda_stream(gpt_cuda *g);
void *gpt_cuda_dev_params(gpt_cuda *g);
void *gpt_cuda_dev_grads(gpt_cuda *g);

/* L2 norm of the gradient buffer, whole or the shard's (fp64 sum of
 * squares). Waits. */
gpt_status gpt_cuda_grad_norm(gpt_cuda *g, float *norm, gpt_error_t err);

/* Sum of squares of the gradient elements [lo, hi) of the table, in fp64
 * (a shard's part of the global norm); under shard_grads the range must lie
 * in the shard. Waits. */
gpt_status gpt_cuda_grad_sumsq(gpt_cuda *g, size_t lo, size_t hi, double *sumsq,
                               gpt_error_t err);

/* Clipping (as gpt_update: min(1, clip / (norm + 1e-6))) and one AdamW step
 * on the master weights of the shard, then their bf16 copy (stochastically
 * rounded when opts.sr_seed != 0); the rest of the bf16 copy is left for an
 * allgather. */
gpt_status gpt_cuda_update(gpt_cuda *g, const gpt_adamw *opt, float grad_norm,
                           gpt_error_t err);

/* One line naming device ordinal, model, memory and compute capability, or
 * why there is none ("no CUDA device: ..."). Needs no model. */
void gpt_cuda_describe(int device, char *out, size_t len);

/* Peak dense bf16 TFLOP/s of a GPU by the name CUDA reports ("NVIDIA H100
 * 80GB HBM3"), from the table in devices.c; 0 for an unknown GPU (report
 * MFU as unknown then). gpt_cuda_peak_source names where the numbers come
 * from, for benchmark tables. */
double gpt_cuda_peak_tflops(const char *device_name);
const char *gpt_cuda_peak_source(void);

/* The name CUDA reports for the device ("NVIDIA H100 80GB HBM3"), or "" when
 * there is none. */
void gpt_cuda_device_name(int device, char *out, size_t len);

#endif

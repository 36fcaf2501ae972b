/* train_gpu.c: `gptrain train --device cuda`: the trainer's steps on the
 * CUDA model (model/gpt_cuda.h) instead of the CPU one.
 *
 * The CPU model stays the host side of the run: it holds the weights that
 * initialisation, --init-from and --resume produce, and it receives the fp32
 * master weights, the AdamW moments and the step count back from the GPU
 * before every checkpoint and sample (tr_gpu_pull), so checkpoints are the
 * same files as a CPU run's, resumable on either device. Its activations are
 * sized for one sequence only (sampling).
 *
 * Several ranks: one GPU each, chosen by comm_nccl_init. The bf16 gradients
 * are reduced by NCCL on its own stream in buckets that start while
 * backward still runs (comm_nccl.h). At ZeRO stage 1 the host model and the
 * GPU keep the master weights and moments of this rank's shard only: the
 * buckets are reduced onto the shards, each rank steps its shard and the
 * bf16 weights are allgathered in place. Stages 2 and 3 keep the bf16
 * gradients (and at 3 the bf16 weights) as the shard too, and each unit
 * borrows a device slot while a pass uses it (units_nccl.c); they always
 * run through NCCL, on one rank too. At stage 3 the host keeps the fp32
 * shard (comm_zero's pshard) instead of the whole weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train_internal.h"
#include "comm_nccl.h"
#include "gpt_cuda.h"

static rt_status gpu_fail(gpt_status gs, const char *gerr, rt_error_t err) {
    snprintf(err, RT_ERRLEN, "%s", gerr);
    return gs == GPT_ERR_INPUT || gs == GPT_ERR_CONFIG ? RT_ERR_USAGE : RT_ERR_RUN;
}
/* For a model call whose error buffer is the caller's local `ge`. */
#define GTRY(call) do { gpt_status gs_ = (call); \
        if (gs_) return gpu_fail(gs_, ge, err); } while (0)

int tr_gpu_host_batch(const trainer *tr) { return tr->o.device_cuda ? 1 : tr->o.batch; }

static rt_status comm_fail(const char *cerr, rt_error_t err) {
    snprintf(err, RT_ERRLEN, "%s", cerr);
    return RT_ERR_RUN;
}

/* The CUDA model's options: at stage 1 the shard of the host model's
 * sharding (comm_zero), with room for the in-place allgather of equal
 * shards. */
static gpt_cuda_opts gpu_opts(const trainer *tr, int device) {
    const train_opts *o = &tr->o;
    const comm_zero *z = &tr->zero;
    /* sr_seed 0 means "off", and --seed 0 is a fine seed: it gets a fixed
     * non-zero stand-in, so --seed 0 --stochastic-rounding still rounds. */
    const uint64_t seed = o->seed ? (uint64_t)o->seed : 0x9E3779B97F4A7C15ull;
    gpt_cuda_opts go = {.B = o->batch, .T = o->seq, .device = device,
                        .recompute = o->recompute,
                        .attention = strcmp(o->attention, "cudnn") ? GPT_CUDA_ATT_OURS
                                                                    : GPT_CUDA_ATT_CUDNN,
                        .sr_seed = o->stochastic_rounding ? seed : 0};
    if (z->stage >= 1) {
        go.shard_lo = z->lo;
        go.shard_hi = z->hi;
        go.capacity = (size_t)z->world * z->shard;
    }
    go.shard_grads = z->stage >= 2;
    go.shard_params = z->stage >= 3;
    return go;
}

/* NCCL for several ranks and for the stages whose shards need it;
 * GPTRAIN_FORCE_NCCL=1 uses it for one rank at stages 0-1 too, so that a
 * one-GPU machine runs the whole reduction path (tests). */
static int use_nccl(const trainer *tr) {
    const char *force = getenv("GPTRAIN_FORCE_NCCL");
    return tr->comm.world > 1 || tr->zero.stage >= 2 || (force && strcmp(force, "1") == 0);
}

/* The CUDA model's unit hook at stages 0-1: unit u's gradients are queued. */
static int on_unit(void *ctx, gpt_cuda *g, gpt_unit_event ev, int u, int backward,
                   gpt_error_t gerr) {
    trainer *tr = ctx;
    size_t lo, hi;
    comm_error_t cerr;
    (void)backward;
    if (ev != GPT_GRADS_READY) return 0;
    gpt_cuda_unit_range(g, u, &lo, &hi);
    if (comm_nccl_bucketer_ready(tr->gbuckets, lo, hi, cerr) == COMM_OK) return 0;
    snprintf(gerr, GPT_ERRLEN, "%s", cerr);
    return 1;
}

static rt_status open_nccl(trainer *tr, rt_error_t err) {
    comm_error_t cerr;
    comm_ctx *c = &tr->comm;
    if (comm_nccl_init(&tr->nccl, c->rank, c->world, c->local_rank, tr->o.comm_timeout, cerr))
        return comm_fail(cerr, err);
    return RT_OK;
}

/* The collectives that reduce (and at stage 3 gather) on the device. */
static rt_status open_reduction(trainer *tr, rt_error_t err) {
    comm_error_t cerr;
    comm_status cs;
    if (tr->zero.stage >= 2) {
        cs = comm_nccl_units_new(&tr->gunits, tr->nccl, &tr->zero, tr->gpu, cerr);
    } else {
        cs = comm_nccl_bucketer_new(&tr->gbuckets, tr->nccl, &tr->zero,
                                    gpt_cuda_dev_grads(tr->gpu), COMM_NCCL_BF16,
                                    (size_t)(tr->o.bucket_mb * 1048576.0f),
                                    gpt_cuda_stream(tr->gpu), cerr);
        if (!cs) gpt_cuda_set_unit_hook(tr->gpu, on_unit, tr);
    }
    return cs ? comm_fail(cerr, err) : RT_OK;
}

rt_status tr_gpu_open(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    const train_opts *o = &tr->o;
    GTRY(gpt_cuda_check_config(&tr->cfg, ge));
    if (o->dry_run) return RT_OK; /* print_plan describes the device */
    rt_status st = use_nccl(tr) ? open_nccl(tr, err) : RT_OK;
    if (st) return st;
    gpt_cuda_opts go = gpu_opts(tr, tr->nccl ? comm_nccl_device(tr->nccl) : tr->comm.local_rank);
    GTRY(gpt_cuda_create(&tr->gpu, &tr->cfg, &go, ge));
    if (tr->nccl && (st = open_reduction(tr, err))) return st;
    return tr_gpu_push(tr, err);
}

int tr_gpu_overlaps(const trainer *tr) { return tr->gbuckets || tr->gunits; }

/* At stage 3 the unit slots forget the weights they gathered first. */
rt_status tr_gpu_push(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    gpt_model *m = &tr->model;
    if (tr->zero.pshard && comm_nccl_units_drop_params(tr->gunits, cerr))
        return comm_fail(cerr, err);
    if (tr->zero.pshard) GTRY(gpt_cuda_set_shard(tr->gpu, tr->zero.pshard, ge));
    else GTRY(gpt_cuda_set_params(tr->gpu, m->params, ge));
    GTRY(gpt_cuda_set_moments(tr->gpu, m->m, m->v, m->adam_step, ge));
    return RT_OK;
}

/* With a shard, the bf16 weights fill in what the master weights of other
 * ranks would: a sample then uses this rank's whole working model, and
 * checkpoints write only the shard's range of the parameters. At stage 3
 * the host holds the shard alone (a sample gathers it, as on the CPU). */
rt_status tr_gpu_pull(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    gpt_model *m = &tr->model;
    if (tr->zero.pshard) {
        GTRY(gpt_cuda_get_shard(tr->gpu, tr->zero.pshard, ge));
        if (comm_zero_params_changed(&tr->zero, m, cerr)) return comm_fail(cerr, err);
    } else {
        if (tr->zero.hi - tr->zero.lo < tr->zero.total && tr->zero.stage >= 1)
            GTRY(gpt_cuda_get_weights(tr->gpu, m->params, ge));
        GTRY(gpt_cuda_get_params(tr->gpu, m->params, ge));
    }
    GTRY(gpt_cuda_get_moments(tr->gpu, m->m, m->v, ge));
    m->adam_step = gpt_cuda_adam_step(tr->gpu);
    return RT_OK;
}

/* The loss of the pass just queued. At stages 2-3 the compute stream waits
 * for the unit collectives (stage 3's gathers, the reductions), so the
 * watchdog waits for them first: a peer that died then ends in an error
 * after --comm-timeout, not in a wait for the loss that never ends. */
static rt_status read_loss(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    if (tr->gunits && comm_nccl_wait(tr->nccl, tr->o.comm_timeout, "ZeRO unit collectives",
                                     comm_get_step(), cerr))
        return comm_fail(cerr, err);
    GTRY(gpt_cuda_mean_loss(tr->gpu, &tr->model.mean_loss, ge));
    return RT_OK;
}

/* A training forward's loss is read once its backward is queued too. */
rt_status tr_gpu_forward(trainer *tr, int training, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_forward(tr->gpu, tr->inputs, tr->targets, tr->o.batch, tr->o.seq,
                          training ? 1.0f / tr->accum : 0.0f, NULL, ge));
    return training ? RT_OK : read_loss(tr, err);
}

/* At stages 2-3 every micro-step's backward reduces its units; their
 * parts join the gradient shard on the device. */
rt_status tr_gpu_backward(trainer *tr, int last, rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    if (last && tr->gbuckets) comm_nccl_bucketer_arm(tr->gbuckets);
    GTRY(gpt_cuda_backward(tr->gpu, ge));
    if (tr->gunits && comm_nccl_units_micro_done(tr->gunits, cerr))
        return comm_fail(cerr, err);
    return read_loss(tr, err);
}

rt_status tr_gpu_zero_grad(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_zero_grad(tr->gpu, ge));
    return RT_OK;
}

/* The buckets' last reduction, the watchdog's wait for all of the step's
 * collectives, and the global norm: of the whole buffer at stage 0, of the
 * shards summed over ranks at stages 1-3. */
rt_status tr_gpu_reduce(trainer *tr, long step, float *norm, rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    if (tr->gbuckets && comm_nccl_bucketer_finish(tr->gbuckets, cerr))
        return comm_fail(cerr, err);
    if (tr->nccl &&
        comm_nccl_wait(tr->nccl, tr->o.comm_timeout, "gradient reduction", step, cerr))
        return comm_fail(cerr, err);
    if (tr->zero.stage == 0) {
        GTRY(gpt_cuda_grad_norm(tr->gpu, norm, ge));
        return RT_OK;
    }
    double s = 0.0;
    GTRY(gpt_cuda_grad_sumsq(tr->gpu, tr->zero.lo, tr->zero.hi, &s, ge));
    *norm = (float)sqrt(comm_sum_double(s));
    return RT_OK;
}

/* The update of this rank's shard, then at stages 1-2 the allgather of the
 * bf16 weights: rank r's block of S elements sits at r * S already, so it is
 * gathered in place. The host waits for it under the watchdog, since the
 * next forward needs the weights at once. At stage 3 no gather may still
 * read the shard the update writes, and the next pass gathers unit by unit. */
rt_status tr_gpu_apply(trainer *tr, const gpt_adamw *opt, float norm, long step,
                       rt_error_t err) {
    gpt_error_t ge;
    comm_error_t cerr;
    if (tr->zero.stage >= 3 && comm_nccl_units_drop_params(tr->gunits, cerr))
        return comm_fail(cerr, err);
    if (!opt) return RT_OK; /* a skipped step leaves every rank as it was */
    GTRY(gpt_cuda_update(tr->gpu, opt, norm, ge));
    if (tr->zero.stage == 0 || tr->zero.stage >= 3 || !tr->nccl) return RT_OK;
    comm_nccl *c = tr->nccl;
    void *stream = gpt_cuda_stream(tr->gpu);
    char *w = gpt_cuda_dev_params(tr->gpu);
    size_t S = tr->zero.shard, mine = (size_t)tr->comm.rank * S * 2; /* bf16 bytes */
    if (comm_nccl_after(c, stream, cerr) ||
        comm_nccl_allgather(c, w + mine, w, S, COMM_NCCL_BF16, cerr) ||
        comm_nccl_before(c, stream, cerr) ||
        comm_nccl_wait(c, tr->o.comm_timeout, "weight allgather", step, cerr))
        return comm_fail(cerr, err);
    return RT_OK;
}

/* The model's bytes and, at stages 2-3, the unit slots'. */
void tr_gpu_describe(const trainer *tr, char *out, size_t len) {
    gpt_cuda_opts go = gpu_opts(tr, tr->comm.local_rank);
    char dev[256];
    gpt_cuda_describe(tr->comm.local_rank, dev, sizeof dev);
    size_t bytes = gpt_cuda_bytes(&tr->cfg, &go) +
                   comm_nccl_units_bytes(&tr->zero, tr->model.unit_lo,
                                         gpt_num_units(&tr->cfg));
    snprintf(out, len, "%s; the model needs %.3f GiB of device memory", dev,
             (double)bytes / (1 << 30));
}

/* After a failure the communicator is aborted first: a collective still
 * waiting for a peer would otherwise hold every free below forever. */
void tr_gpu_close(trainer *tr, int failed) {
    if (failed) comm_nccl_abort(tr->nccl);
    comm_nccl_units_free(tr->gunits);
    comm_nccl_bucketer_free(tr->gbuckets);
    gpt_cuda_free(tr->gpu);
    comm_nccl_free(tr->nccl);
    tr->gbuckets = NULL;
    tr->gunits = NULL;
    tr->gpu = NULL;
    tr->nccl = NULL;
}

/* train_gpu.c: `gptrain train --device cuda`: the trainer's steps on the
 * CUDA model (model/gpt_cuda.h) instead of the CPU one.
 *
 * The CPU model stays the host side of the run: it holds the weights that
 * initialisation, --init-from and --resume produce, and it receives the fp32
 * master weights, the AdamW moments and the step count back from the GPU
 * before every checkpoint and sample (tr_gpu_pull), so checkpoints are the
 * same files as a CPU run's, resumable on either device. Its activations are
 * sized for one sequence only (sampling). For now one rank, ZeRO stage 0:
 * the NCCL reduction of GPU gradients is not wired into training yet. */
#include <stdio.h>
#include "train_internal.h"
#include "gpt_cuda.h"

static rt_status gpu_fail(gpt_status gs, const char *gerr, rt_error_t err) {
    snprintf(err, RT_ERRLEN, "%s", gerr);
    return gs == GPT_ERR_INPUT || gs == GPT_ERR_CONFIG ? RT_ERR_USAGE : RT_ERR_RUN;
}
/* For a model call whose error buffer is the caller's local `ge`. */
#define GTRY(call) do { gpt_status gs_ = (call); \
        if (gs_) return gpu_fail(gs_, ge, err); } while (0)

int tr_gpu_host_batch(const trainer *tr) { return tr->o.device_cuda ? 1 : tr->o.batch; }

rt_status tr_gpu_open(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    const train_opts *o = &tr->o;
    if (tr->comm.world > 1 || o->zero != 0) {
        snprintf(err, RT_ERRLEN, "--device cuda runs one rank at ZeRO stage 0 for now (this "
                 "job: %d ranks, --zero %d): the NCCL gradient reduction is not wired into "
                 "training yet", tr->comm.world, o->zero);
        return RT_ERR_USAGE;
    }
    gpt_cuda_opts go = {.B = o->batch, .T = o->seq, .device = tr->comm.local_rank,
                        .recompute = o->recompute,
                        .sr_seed = o->stochastic_rounding ? (uint64_t)o->seed : 0};
    GTRY(gpt_cuda_check_config(&tr->cfg, ge));
    if (o->dry_run) return RT_OK; /* print_plan describes the device */
    GTRY(gpt_cuda_create(&tr->gpu, &tr->cfg, &go, ge));
    return tr_gpu_push(tr, err);
}

rt_status tr_gpu_push(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    gpt_model *m = &tr->model;
    GTRY(gpt_cuda_set_params(tr->gpu, m->params, ge));
    GTRY(gpt_cuda_set_moments(tr->gpu, m->m, m->v, m->adam_step, ge));
    return RT_OK;
}

rt_status tr_gpu_pull(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    gpt_model *m = &tr->model;
    GTRY(gpt_cuda_get_params(tr->gpu, m->params, ge));
    GTRY(gpt_cuda_get_moments(tr->gpu, m->m, m->v, ge));
    m->adam_step = gpt_cuda_adam_step(tr->gpu);
    return RT_OK;
}

rt_status tr_gpu_forward(trainer *tr, int training, rt_error_t err) {
    gpt_error_t ge;
    float loss = 0.0f;
    GTRY(gpt_cuda_forward(tr->gpu, tr->inputs, tr->targets, tr->o.batch, tr->o.seq,
                          training ? 1.0f / tr->accum : 0.0f, &loss, ge));
    tr->model.mean_loss = loss;
    return RT_OK;
}

rt_status tr_gpu_backward(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_backward(tr->gpu, ge));
    return RT_OK;
}

rt_status tr_gpu_zero_grad(trainer *tr, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_zero_grad(tr->gpu, ge));
    return RT_OK;
}

rt_status tr_gpu_norm(trainer *tr, float *norm, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_grad_norm(tr->gpu, norm, ge));
    return RT_OK;
}

rt_status tr_gpu_update(trainer *tr, const gpt_adamw *opt, float norm, rt_error_t err) {
    gpt_error_t ge;
    GTRY(gpt_cuda_update(tr->gpu, opt, norm, ge));
    return RT_OK;
}

void tr_gpu_describe(const trainer *tr, char *out, size_t len) {
    gpt_cuda_opts go = {.B = tr->o.batch, .T = tr->o.seq, .recompute = tr->o.recompute};
    char dev[256];
    gpt_cuda_describe(tr->comm.local_rank, dev, sizeof dev);
    snprintf(out, len, "%s; the model needs %.2f GiB of device memory", dev,
             (double)gpt_cuda_bytes(&tr->cfg, &go) / (1 << 30));
}

void tr_gpu_close(trainer *tr) {
    gpt_cuda_free(tr->gpu);
    tr->gpu = NULL;
}

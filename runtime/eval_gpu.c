/* eval_gpu.c: `gptrain eval --device cuda`: the evaluator's forward passes
 * on this rank's GPU (the CUDA model of model/gpt_cuda.h) instead of the
 * CPU. A model of the size a GPU trains takes hours to score on a host; on
 * the GPU it takes what a validation pass of training takes. The weights
 * go up once, from the CPU model the checkpoint was loaded into, rounded to
 * bf16 as in training; each batch comes back as its mean loss, so the
 * result is the bf16 model's loss, as a GPU run's validation reports it,
 * not bit for bit the CPU's. nogpu.c stands in without CUDA. */
#include <stdio.h>
#include "runtime.h"
#include "gpt_cuda.h"

/* An ordinal past the visible GPUs is the likely mistake of a job with
 * more ranks per node than GPUs: name the rank and the count. */
rt_status rt_eval_gpu_open(struct gpt_cuda **out, const gpt_model *m, int B, int T,
                           int local_rank, rt_error_t err) {
    gpt_error_t ge;
    char name[256];
    *out = NULL;
    if (gpt_cuda_check_config(&m->cfg, ge)) {
        snprintf(err, RT_ERRLEN, "--device cuda: %s", ge);
        return RT_ERR_USAGE;
    }
    gpt_cuda_device_name(local_rank, name, sizeof name);
    if (!name[0]) {
        char first[256];
        gpt_cuda_device_name(0, first, sizeof first);
        gpt_cuda_describe(local_rank, name, sizeof name);
        if (first[0])
            snprintf(err, RT_ERRLEN, "--device cuda: local rank %d has no GPU of its own (%s); "
                     "run at most one rank per GPU on a node", local_rank, name);
        else
            snprintf(err, RT_ERRLEN, "--device cuda: %s", name);
        return RT_ERR_RUN;
    }
    gpt_cuda_opts go = {.B = B, .T = T, .device = local_rank};
    gpt_status gs = gpt_cuda_create(out, &m->cfg, &go, ge);
    if (!gs) gs = gpt_cuda_set_params(*out, m->params, ge);
    if (!gs) return RT_OK;
    snprintf(err, RT_ERRLEN, "%s", ge);
    rt_eval_gpu_free(*out);
    *out = NULL;
    return gs == GPT_ERR_INPUT || gs == GPT_ERR_CONFIG ? RT_ERR_USAGE : RT_ERR_RUN;
}

rt_status rt_eval_gpu_score(struct gpt_cuda *g, const int *inputs, const int *targets, int n,
                            int T, double *sum, rt_error_t err) {
    gpt_error_t ge;
    float mean;
    gpt_status gs = gpt_cuda_forward(g, inputs, targets, n, T, 0.0f, &mean, ge);
    if (!gs) {
        *sum += (double)mean * n * T;
        return RT_OK;
    }
    snprintf(err, RT_ERRLEN, "%s", ge);
    return gs == GPT_ERR_INPUT ? RT_ERR_USAGE : RT_ERR_RUN;
}

void rt_eval_gpu_free(struct gpt_cuda *g) { gpt_cuda_free(g); }

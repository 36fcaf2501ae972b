/* nogpu.c: the --device cuda entry points of train and eval in a build
 * without CUDA (train_gpu.c and eval_gpu.c replace this file when nvcc was
 * found): asking for the GPU is a clear error, and nothing else is ever
 * reached (tr->gpu and the evaluator's GPU model stay NULL). */
#include <stdio.h>
#include "train_internal.h"

#define NO_CUDA "--device cuda: this gptrain was built without CUDA (nvcc was not found " \
                "when it was configured; see docs/cuda.md)"

int tr_gpu_host_batch(const trainer *tr) { return tr->o.batch; }

rt_status tr_gpu_open(trainer *tr, rt_error_t err) {
    (void)tr;
    snprintf(err, RT_ERRLEN, NO_CUDA);
    return RT_ERR_USAGE;
}

static rt_status unreachable(rt_error_t err) {
    snprintf(err, RT_ERRLEN, "internal error: a GPU step in a build without CUDA");
    return RT_ERR_RUN;
}

rt_status tr_gpu_push(trainer *tr, rt_error_t err) { (void)tr; return unreachable(err); }
rt_status tr_gpu_pull(trainer *tr, rt_error_t err) { (void)tr; return unreachable(err); }
rt_status tr_gpu_forward(trainer *tr, int training, rt_error_t err) {
    (void)tr; (void)training; return unreachable(err);
}
rt_status tr_gpu_backward(trainer *tr, int last, rt_error_t err) {
    (void)tr; (void)last; return unreachable(err);
}
rt_status tr_gpu_zero_grad(trainer *tr, rt_error_t err) { (void)tr; return unreachable(err); }
rt_status tr_gpu_reduce(trainer *tr, long step, float *norm, rt_error_t err) {
    (void)tr; (void)step; (void)norm; return unreachable(err);
}
rt_status tr_gpu_apply(trainer *tr, const gpt_adamw *opt, float norm, long step,
                       rt_error_t err) {
    (void)tr; (void)opt; (void)norm; (void)step; return unreachable(err);
}
int tr_gpu_overlaps(const trainer *tr) { (void)tr; return 0; }
void tr_gpu_describe(const trainer *tr, char *out, size_t len) {
    (void)tr;
    snprintf(out, len, "no CUDA in this build");
}
void tr_gpu_close(trainer *tr, int failed) { (void)tr; (void)failed; }

rt_status rt_eval_gpu_open(struct gpt_cuda **out, const gpt_model *m, int B, int T,
                           int local_rank, rt_error_t err) {
    (void)m; (void)B; (void)T; (void)local_rank;
    *out = NULL;
    snprintf(err, RT_ERRLEN, NO_CUDA);
    return RT_ERR_USAGE;
}
rt_status rt_eval_gpu_score(struct gpt_cuda *g, const int *inputs, const int *targets, int n,
                            int T, double *sum, rt_error_t err) {
    (void)g; (void)inputs; (void)targets; (void)n; (void)T; (void)sum;
    return unreachable(err);
}
void rt_eval_gpu_free(struct gpt_cuda *g) { (void)g; }

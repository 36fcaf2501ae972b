/* optimizer.c: global gradient norm, clipping and the AdamW step over the
 * tensor table, on the whole buffer or on the range this rank owns (ZeRO). Clipping folds into the AdamW pass as a gradient scale, with
 * the coefficient torch.nn.utils.clip_grad_norm_ uses, min(1, clip/(norm+1e-6)). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "gpt.h"
#include "kernels.h"

float gpt_grad_norm(const gpt_model *m) {
    return (float)sqrt(gpt_sumsq(m->grads, (long)m->table.total));
}

void gpt_update_shard(gpt_model *m, const gpt_adamw *opt, float grad_norm, float *params,
                      const float *grads) {
    float scale = 1.0f;
    if (opt->grad_clip > 0.0f) {
        float coef = opt->grad_clip / (grad_norm + 1e-6f);
        scale = coef < 1.0f ? coef : 1.0f;
    }
    m->adam_step++;
    /* Each tensor's part inside the owned range; params, grads and moments
     * are all indexed from opt_lo. Alignment gaps are never touched. */
    size_t lo = m->opt_lo;
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        size_t a = t->offset > lo ? t->offset : lo;
        size_t b = t->offset + t->numel < m->opt_hi ? t->offset + t->numel : m->opt_hi;
        if (a >= b) continue;
        gpt_adamw_kernel(params + (a - lo), grads + (a - lo), m->m + (a - lo), m->v + (a - lo),
                         (long)(b - a), m->adam_step, opt->lr, opt->beta1, opt->beta2,
                         opt->eps, t->decay ? opt->weight_decay : 0.0f, scale);
    }
}

void gpt_update(gpt_model *m, const gpt_adamw *opt, float grad_norm) {
    gpt_update_shard(m, opt, grad_norm, m->params + m->opt_lo, m->grads + m->opt_lo);
}

gpt_status gpt_shard_optimizer(gpt_model *m, size_t lo, size_t hi, gpt_error_t err) {
    if (lo > hi || hi > m->table.total) {
        snprintf(err, GPT_ERRLEN, "optimizer shard [%zu, %zu) is outside the %zu-float buffer",
                 lo, hi, m->table.total);
        return GPT_ERR_CONFIG;
    }
    float *mm = calloc(hi - lo + 1, sizeof(float)), *vv = calloc(hi - lo + 1, sizeof(float));
    if (!mm || !vv) {
        free(mm);
        free(vv);
        snprintf(err, GPT_ERRLEN, "out of memory for the optimizer shard");
        return GPT_ERR_NOMEM;
    }
    free(m->m);
    free(m->v);
    m->m = mm;
    m->v = vv;
    m->opt_lo = lo;
    m->opt_hi = hi;
    return GPT_OK;
}

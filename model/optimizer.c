/* optimizer.c: global gradient norm, clipping and the AdamW step over the
 * tensor table. Clipping folds into the AdamW pass as a gradient scale, with
 * the coefficient torch.nn.utils.clip_grad_norm_ uses, min(1, clip/(norm+1e-6)). */
#include <math.h>
#include "gpt.h"
#include "kernels.h"

float gpt_grad_norm(const gpt_model *m) {
    return (float)sqrt(gpt_sumsq(m->grads, (long)m->table.total));
}

void gpt_update(gpt_model *m, const gpt_adamw *opt, float grad_norm) {
    float scale = 1.0f;
    if (opt->grad_clip > 0.0f) {
        float coef = opt->grad_clip / (grad_norm + 1e-6f);
        scale = coef < 1.0f ? coef : 1.0f;
    }
    m->adam_step++;
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        gpt_adamw_kernel(m->params + t->offset, m->grads + t->offset,
                         m->m + t->offset, m->v + t->offset, (long)t->numel,
                         m->adam_step, opt->lr, opt->beta1, opt->beta2, opt->eps,
                         t->decay ? opt->weight_decay : 0.0f, scale);
    }
}

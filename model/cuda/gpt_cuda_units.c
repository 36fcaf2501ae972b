/* gpt_cuda_units.c: the CUDA model's units (gpt.h), the pieces ZeRO-2 and
 * ZeRO-3 reduce and gather. Each unit's parameters and gradients are
 * reached through a per-unit device pointer, as in the CPU model, so that a
 * unit hook can move them into slots of its own: by default the pointers
 * lead into the model's whole buffers; under shard_params / shard_grads
 * those buffers hold the shard only and the pointers stay NULL until the
 * hook binds them. The passes tell the hook the same events in the same
 * order as the CPU model's. */
#include <stdio.h>
#include <stdlib.h>
#include "gpt_cuda_internal.h"
#include "gpt_internal.h"

gpt_status gpt_cuda_units_init(gpt_cuda *g, gpt_error_t err) {
    int U = gpt_num_units(&g->cfg);
    g->ulo = calloc((size_t)U + 1, sizeof(size_t));
    g->up = calloc((size_t)U, sizeof(gpt_bf16 *));
    g->ug = calloc((size_t)U, sizeof(gpt_bf16 *));
    if (!g->ulo || !g->up || !g->ug) {
        snprintf(err, GPT_ERRLEN, "out of host memory for the unit table");
        return GPT_ERR_NOMEM;
    }
    gpt_unit_starts(&g->cfg, &g->table, g->ulo);
    for (int u = 0; u < U; u++) {
        g->up[u] = g->o.shard_params ? NULL : g->params + g->ulo[u];
        g->ug[u] = g->o.shard_grads ? NULL : g->grads + g->ulo[u];
    }
    return GPT_OK;
}

void gpt_cuda_units_free(gpt_cuda *g) {
    free(g->ulo);
    free(g->up);
    free(g->ug);
}

void gpt_cuda_set_unit_hook(gpt_cuda *g, gpt_cuda_unit_fn fn, void *ctx) {
    g->hook = fn;
    g->hook_ctx = ctx;
}

void gpt_cuda_bind_params(gpt_cuda *g, int unit, void *dev) { g->up[unit] = dev; }
void gpt_cuda_bind_grads(gpt_cuda *g, int unit, void *dev) { g->ug[unit] = dev; }

int gpt_cuda_num_units(const gpt_cuda *g) { return gpt_num_units(&g->cfg); }

void gpt_cuda_unit_range(const gpt_cuda *g, int unit, size_t *lo, size_t *hi) {
    *lo = g->ulo[unit];
    *hi = g->ulo[unit + 1];
}

gpt_status gpt_cuda_tell(gpt_cuda *g, gpt_unit_event ev, int unit, int backward,
                         gpt_error_t err) {
    if (g->hook && g->hook(g->hook_ctx, g, ev, unit, backward, err)) return GPT_ERR_HOOK;
    const char *what = ev == GPT_NEED_PARAMS && !g->up[unit] ? "parameters"
                     : ev == GPT_NEED_GRADS && !g->ug[unit] ? "gradients" : NULL;
    if (!what) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "unit %d's %s are not bound (the ZeRO unit hook is missing)",
             unit, what);
    return GPT_ERR_HOOK;
}

gpt_status gpt_cuda_accumulate(gpt_cuda *g, void *dst, const void *src, size_t n,
                               gpt_error_t err) {
    return gpt_cu_residual_forward(&g->ctx, dst, dst, src, n, err);
}

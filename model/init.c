/* init.c: the seeded random generator and GPT-2 weight initialisation.
 * Each tensor draws from its own stream, seeded from (seed, tensor index), so
 * a tensor's initial values do not depend on how many tensors precede it or
 * on which rank initialises it. */
#include <math.h>
#include <string.h>
#include "gpt.h"

void gpt_rng_seed(gpt_rng *r, uint64_t seed) { r->s = seed; }

uint64_t gpt_rng_u64(gpt_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float gpt_rng_uniform(gpt_rng *r) {
    return (float)(gpt_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

/* Box-Muller on two 53-bit uniforms; 1 - u keeps the log argument above 0. */
float gpt_rng_normal(gpt_rng *r) {
    double u1 = 1.0 - (double)(gpt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(gpt_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static int is_residual_proj(const char *name) {
    size_t n = strlen(name);
    const char *s1 = "attn.c_proj.weight", *s2 = "mlp.c_proj.weight";
    return (n >= strlen(s1) && strcmp(name + n - strlen(s1), s1) == 0) ||
           (n >= strlen(s2) && strcmp(name + n - strlen(s2), s2) == 0);
}

static int is_layernorm_weight(const char *name) {
    return strstr(name, "ln_") != NULL && strstr(name, ".weight") != NULL;
}

void gpt_init_weights(gpt_model *m, uint64_t seed) {
    const gpt_config *cfg = &m->cfg;
    float proj_std = 0.02f / sqrtf(2.0f * cfg->n_layer);
    memset(m->params, 0, m->table.total * sizeof(float));
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        float *p = m->params + t->offset;
        if (t->ndim == 1) {
            if (is_layernorm_weight(t->name))
                for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
            continue; /* biases stay zero */
        }
        gpt_rng r;
        gpt_rng_seed(&r, seed * 0x100000001B3ULL + (uint64_t)i);
        float std = is_residual_proj(t->name) ? proj_std : 0.02f;
        /* Padded vocabulary rows stay zero: they never see a token or a
         * probability, so they must not drift. */
        size_t n = i == GPT_T_WTE ? (size_t)cfg->vocab * cfg->n_embd : t->numel;
        for (size_t k = 0; k < n; k++) p[k] = std * gpt_rng_normal(&r);
    }
}

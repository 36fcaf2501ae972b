/* config.c: model presets and validation of a model configuration.
 * Presets follow llm.c's naming: dN is a depth-N model with 64*N channels and
 * N heads; the gpt2-* presets are the four published GPT-2 sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"

typedef struct {
    const char *name;
    int n_layer, n_head, n_embd;
} gpt_preset;

static const gpt_preset gpt2_presets[] = {
    {"gpt2-124M", 12, 12, 768},
    {"gpt2-350M", 24, 16, 1024},
    {"gpt2-774M", 36, 20, 1280},
    {"gpt2-1558M", 48, 25, 1600},
};

gpt_status gpt_config_preset(const char *name, gpt_config *cfg, gpt_error_t err) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_seq = 1024;
    for (size_t i = 0; i < sizeof(gpt2_presets) / sizeof(gpt2_presets[0]); i++) {
        if (strcmp(name, gpt2_presets[i].name) == 0) {
            cfg->n_layer = gpt2_presets[i].n_layer;
            cfg->n_head = gpt2_presets[i].n_head;
            cfg->n_embd = gpt2_presets[i].n_embd;
            cfg->vocab = 50257;
            return GPT_OK;
        }
    }
    char *end = NULL;
    long depth = name[0] == 'd' ? strtol(name + 1, &end, 10) : 0;
    if (depth >= 1 && depth <= 48 && end && *end == '\0' && name[1] != '+') {
        cfg->n_layer = (int)depth;
        cfg->n_head = (int)depth;
        cfg->n_embd = 64 * (int)depth;
        cfg->vocab = 256;
        return GPT_OK;
    }
    snprintf(err, GPT_ERRLEN,
             "unknown model preset '%s' (use d1..d48, gpt2-124M, gpt2-350M, "
             "gpt2-774M or gpt2-1558M)", name);
    return GPT_ERR_CONFIG;
}

/* Limits keep every buffer index inside a signed 64-bit range and every
 * per-dimension size inside int, with room to spare. */
static gpt_status check_range(const char *what, int v, int lo, int hi, gpt_error_t err) {
    if (v >= lo && v <= hi) return GPT_OK;
    snprintf(err, GPT_ERRLEN, "%s %d is out of range [%d, %d]", what, v, lo, hi);
    return GPT_ERR_CONFIG;
}

gpt_status gpt_config_finish(gpt_config *cfg, gpt_error_t err) {
    gpt_status st;
    if ((st = check_range("layers", cfg->n_layer, 1, 1024, err))) return st;
    if ((st = check_range("heads", cfg->n_head, 1, 1024, err))) return st;
    if ((st = check_range("channels", cfg->n_embd, 1, 65536, err))) return st;
    if ((st = check_range("max sequence length", cfg->max_seq, 1, 1 << 20, err))) return st;
    if ((st = check_range("vocab size", cfg->vocab, 1, 1 << 24, err))) return st;
    if (cfg->n_embd % cfg->n_head != 0) {
        snprintf(err, GPT_ERRLEN, "heads %d do not divide channels %d",
                 cfg->n_head, cfg->n_embd);
        return GPT_ERR_CONFIG;
    }
    /* A multiple of 64 keeps LM-head rows aligned for the matmul; the extra
     * rows are zero and outside the softmax. */
    cfg->padded_vocab = (cfg->vocab + 63) / 64 * 64;
    return GPT_OK;
}

size_t gpt_num_params(const gpt_config *c) {
    size_t C = (size_t)c->n_embd;
    size_t per_layer = 12 * C * C + 13 * C;
    return (size_t)c->vocab * C + (size_t)c->max_seq * C + c->n_layer * per_layer + 2 * C;
}

double gpt_flops_per_step(const gpt_config *c, int T, long tokens) {
    double n = (double)gpt_num_params(c) - (double)c->max_seq * c->n_embd;
    double attn = 6.0 * c->n_layer * (double)c->n_embd * T;
    return (6.0 * n + attn) * (double)tokens;
}

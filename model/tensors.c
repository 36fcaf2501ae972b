/* tensors.c: the tensor table shared by the parameter, gradient and moment
 * buffers. One layer's tensors are one contiguous range, so later work can
 * gather, shard or save a layer as a single slice of the flat buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"

#define GPT_ALIGN 16 /* floats: 64 bytes, one cache line / AVX-512 vector */

static const struct {
    const char *suffix;
    int rows_mul; /* rows in units of C (0: a 1-D tensor of cols_mul * C) */
    int cols_mul;
    int decay;
} layer_spec[GPT_LAYER_TENSORS] = {
    [GPT_LN1_W] = {"ln_1.weight", 0, 1, 0},
    [GPT_LN1_B] = {"ln_1.bias", 0, 1, 0},
    [GPT_QKV_W] = {"attn.c_attn.weight", 3, 1, 1},
    [GPT_QKV_B] = {"attn.c_attn.bias", 0, 3, 0},
    [GPT_ATTPROJ_W] = {"attn.c_proj.weight", 1, 1, 1},
    [GPT_ATTPROJ_B] = {"attn.c_proj.bias", 0, 1, 0},
    [GPT_LN2_W] = {"ln_2.weight", 0, 1, 0},
    [GPT_LN2_B] = {"ln_2.bias", 0, 1, 0},
    [GPT_FC_W] = {"mlp.c_fc.weight", 4, 1, 1},
    [GPT_FC_B] = {"mlp.c_fc.bias", 0, 4, 0},
    [GPT_FCPROJ_W] = {"mlp.c_proj.weight", 1, 4, 1},
    [GPT_FCPROJ_B] = {"mlp.c_proj.bias", 0, 1, 0},
};

static void add_tensor(gpt_table *tab, const char *name, int rows, int cols,
                       int decay) {
    gpt_tensor *t = &tab->t[tab->count++];
    snprintf(t->name, GPT_NAME_MAX, "%s", name);
    t->ndim = rows > 0 ? 2 : 1;
    t->shape[0] = rows > 0 ? rows : cols;
    t->shape[1] = rows > 0 ? cols : 1;
    t->numel = rows > 0 ? (size_t)rows * cols : (size_t)cols;
    t->offset = tab->total;
    t->decay = decay;
    tab->total += (t->numel + GPT_ALIGN - 1) / GPT_ALIGN * GPT_ALIGN;
}

gpt_status gpt_table_build(gpt_table *tab, const gpt_config *cfg, gpt_error_t err) {
    int C = cfg->n_embd;
    memset(tab, 0, sizeof(*tab));
    tab->t = calloc(4 + (size_t)cfg->n_layer * GPT_LAYER_TENSORS, sizeof(gpt_tensor));
    if (!tab->t) {
        snprintf(err, GPT_ERRLEN, "out of memory for the tensor table");
        return GPT_ERR_NOMEM;
    }
    add_tensor(tab, "wte", cfg->padded_vocab, C, 1);
    add_tensor(tab, "wpe", cfg->max_seq, C, 1);
    for (int l = 0; l < cfg->n_layer; l++) {
        for (int k = 0; k < GPT_LAYER_TENSORS; k++) {
            char name[GPT_NAME_MAX];
            snprintf(name, sizeof(name), "h.%d.%s", l, layer_spec[k].suffix);
            int rows = layer_spec[k].rows_mul * C;
            add_tensor(tab, name, rows, layer_spec[k].cols_mul * C, layer_spec[k].decay);
        }
    }
    add_tensor(tab, "ln_f.weight", 0, C, 0);
    add_tensor(tab, "ln_f.bias", 0, C, 0);
    return GPT_OK;
}

void gpt_table_free(gpt_table *tab) {
    free(tab->t);
    memset(tab, 0, sizeof(*tab));
}

const gpt_tensor *gpt_table_find(const gpt_table *tab, const char *name) {
    for (int i = 0; i < tab->count; i++)
        if (strcmp(tab->t[i].name, name) == 0) return &tab->t[i];
    return NULL;
}

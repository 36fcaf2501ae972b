/* decode.c: generation with a KV cache. gpt_forward over T tokens costs
 * O(T^2) in attention and O(T) in everything else, so sampling token after
 * token by running it over the whole context costs O(T^2) per token. Here
 * each layer's keys and values stay in a cache: a new token runs the model
 * on one position, whose attention reads the n cached rows, O(n) per token.
 * The prompt is run in one gpt_forward (matmuls over all its rows) and its
 * keys and values copied from the activations. The unit hook hears the same
 * NEED/DONE_PARAMS events as in gpt_forward, so ZeRO-3 can gather. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt_internal.h"
#include "kernels.h"

struct gpt_kv {
    int cap, len;     /* positions the cache can hold, and holds */
    float *kv;        /* (n_layer, cap, 2C): keys, then values, per position */
    float *x, *x2, *h, *qkv, *att, *fch; /* one position's activations */
    float *scratch;   /* attention probabilities, NH * cap */
    float *logits;    /* padded_vocab */
    float stat[2];    /* LayerNorm mean and rstd of the one row */
};

void gpt_kv_free(gpt_kv *kv) {
    if (!kv) return;
    free(kv->kv); free(kv->x); free(kv->x2); free(kv->h); free(kv->qkv);
    free(kv->att); free(kv->fch); free(kv->scratch); free(kv->logits);
    free(kv);
}

gpt_status gpt_kv_create(gpt_kv **out, const gpt_model *m, int cap, gpt_error_t err) {
    const gpt_config *c = &m->cfg;
    size_t C = c->n_embd;
    *out = NULL;
    if (cap < 1 || cap > c->max_seq) {
        snprintf(err, GPT_ERRLEN, "KV cache of %d positions: must be in [1, %d]", cap,
                 c->max_seq);
        return GPT_ERR_CONFIG;
    }
    gpt_kv *kv = calloc(1, sizeof *kv);
    if (kv) {
        kv->cap = cap;
        kv->kv = malloc(sizeof(float) * c->n_layer * (size_t)cap * 2 * C);
        kv->x = malloc(sizeof(float) * C);
        kv->x2 = malloc(sizeof(float) * C);
        kv->h = malloc(sizeof(float) * C);
        kv->qkv = malloc(sizeof(float) * 3 * C);
        kv->att = malloc(sizeof(float) * C);
        kv->fch = malloc(sizeof(float) * 8 * C);
        kv->scratch = malloc(sizeof(float) * c->n_head * (size_t)cap);
        kv->logits = malloc(sizeof(float) * c->padded_vocab);
    }
    if (!kv || !kv->kv || !kv->x || !kv->x2 || !kv->h || !kv->qkv || !kv->att || !kv->fch ||
        !kv->scratch || !kv->logits) {
        gpt_kv_free(kv);
        snprintf(err, GPT_ERRLEN, "out of memory for a KV cache of %d positions", cap);
        return GPT_ERR_NOMEM;
    }
    *out = kv;
    return GPT_OK;
}

int gpt_kv_len(const gpt_kv *kv) { return kv->len; }

const float *gpt_kv_logits(const gpt_kv *kv) { return kv->logits; }

static float *cache_row(const gpt_kv *kv, int C, int l, int pos) {
    return kv->kv + ((size_t)l * kv->cap + pos) * 2 * C;
}

gpt_status gpt_kv_prefill(gpt_model *m, gpt_kv *kv, const int *tokens, int n,
                          gpt_error_t err) {
    int C = m->cfg.n_embd, Vp = m->cfg.padded_vocab;
    if (n > kv->cap) {
        snprintf(err, GPT_ERRLEN, "a prompt of %d tokens exceeds the KV cache's %d", n, kv->cap);
        return GPT_ERR_CONFIG;
    }
    gpt_status st = gpt_forward(m, tokens, NULL, 1, n, err);
    if (st) return st;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const float *qkv = gpt_last_qkv(m, l);
        for (int t = 0; t < n; t++)
            memcpy(cache_row(kv, C, l, t), qkv + (size_t)t * 3 * C + C, sizeof(float) * 2 * C);
    }
    memcpy(kv->logits, m->logits + (size_t)(n - 1) * Vp, sizeof(float) * Vp);
    kv->len = n;
    return GPT_OK;
}

/* One block on the row kv->x at position pos: attention over the cache
 * (which gains this position's keys and values), then the MLP. */
static void block_row(gpt_model *m, gpt_kv *kv, int l, int pos) {
    int C = m->cfg.n_embd, NH = m->cfg.n_head;
    float *x = kv->x, *x2 = kv->x2, *h = kv->h, *row = cache_row(kv, C, l, pos);
#define W(which) gpt_param(m, GPT_T_LAYER(l, which))
    gpt_layernorm_forward(h, kv->stat, kv->stat + 1, x, W(GPT_LN1_W), W(GPT_LN1_B), 1, C);
    gpt_matmul_forward(kv->qkv, h, W(GPT_QKV_W), W(GPT_QKV_B), 1, C, 3 * C);
    memcpy(row, kv->qkv + C, sizeof(float) * 2 * C);
    gpt_attention_row(kv->att, kv->scratch, kv->qkv, cache_row(kv, C, l, 0), pos + 1, C, NH);
    gpt_matmul_forward(x2, kv->att, W(GPT_ATTPROJ_W), W(GPT_ATTPROJ_B), 1, C, C);
    gpt_residual_forward(x2, x2, x, C);
    gpt_layernorm_forward(h, kv->stat, kv->stat + 1, x2, W(GPT_LN2_W), W(GPT_LN2_B), 1, C);
    gpt_matmul_forward(kv->fch, h, W(GPT_FC_W), W(GPT_FC_B), 1, C, 4 * C);
    gpt_gelu_forward(kv->fch + 4 * C, kv->fch, 4 * C);
    gpt_matmul_forward(x, kv->fch + 4 * C, W(GPT_FCPROJ_W), W(GPT_FCPROJ_B), 1, 4 * C, C);
    gpt_residual_forward(x, x, x2, C);
#undef W
}

gpt_status gpt_kv_step(gpt_model *m, gpt_kv *kv, int token, gpt_error_t err) {
    const gpt_config *c = &m->cfg;
    int C = c->n_embd, pos = kv->len;
    gpt_status st;
    if (pos >= kv->cap) {
        snprintf(err, GPT_ERRLEN, "the KV cache is full (%d positions)", kv->cap);
        return GPT_ERR_CONFIG;
    }
    if (token < 0 || token >= c->vocab) {
        snprintf(err, GPT_ERRLEN, "token id %d is outside the vocabulary [0, %d)", token,
                 c->vocab);
        return GPT_ERR_INPUT;
    }
    if ((st = gpt_tell(m, GPT_NEED_PARAMS, GPT_UNIT_EMB, 0, err))) return st;
    gpt_encoder_forward(kv->x, &token, gpt_param(m, GPT_T_WTE),
                        gpt_param(m, GPT_T_WPE) + (size_t)pos * C, 1, 1, C);
    for (int l = 0; l < c->n_layer; l++) {
        if ((st = gpt_tell(m, GPT_NEED_PARAMS, GPT_UNIT_LAYER(l), 0, err))) return st;
        block_row(m, kv, l, pos);
        if ((st = gpt_tell(m, GPT_DONE_PARAMS, GPT_UNIT_LAYER(l), 0, err))) return st;
    }
    if ((st = gpt_tell(m, GPT_NEED_PARAMS, GPT_UNIT_LNF(c), 0, err))) return st;
    gpt_layernorm_forward(kv->h, kv->stat, kv->stat + 1, kv->x, gpt_param(m, GPT_T_LNF_W(c)),
                          gpt_param(m, GPT_T_LNF_B(c)), 1, C);
    if ((st = gpt_tell(m, GPT_DONE_PARAMS, GPT_UNIT_LNF(c), 0, err))) return st;
    gpt_matmul_forward(kv->logits, kv->h, gpt_param(m, GPT_T_WTE), NULL, 1, C, c->padded_vocab);
    kv->len = pos + 1;
    return gpt_tell(m, GPT_DONE_PARAMS, GPT_UNIT_EMB, 0, err);
}

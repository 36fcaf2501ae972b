/* gpt.c: the GPT-2 model: buffers, forward pass and backward pass.
 * It strings the kernels of kernels.h together; the CUDA twin will reuse this
 * orchestration with its own kernels. Activations are kept per layer for the
 * backward pass; the backward carries one running residual gradient and a few
 * per-layer scratch buffers that are reused for every layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "gpt_internal.h"
#include "kernels.h"

struct gpt_acts {
    float *encoded;                 /* (B,T,C) */
    float *ln1, *ln1_mean, *ln1_rstd; /* (L,B,T,C), (L,B,T) x2 */
    float *qkv;                     /* (L,B,T,3C) */
    float *atty;                    /* (L,B,T,C) */
    float *att;                     /* (L,B,NH,T,T) */
    float *resid2;                  /* (L,B,T,C) */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;          /* (L,B,T,4C) */
    float *resid3;                  /* (L,B,T,C) */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *lse;                     /* (B,T) */
    int *tokens, *targets;          /* (B,T) copies for backward */
    /* backward scratch, one layer at a time */
    float *dres, *dln, *datty, *dqkv, *dfch, *dfch_gelu;
    float *block; /* the single allocation behind all of the above */
};

/* Lays the activation arrays out in one block; with base NULL it only counts. */
static size_t acts_layout(gpt_acts *a, float *base, const gpt_config *c, int B, int T) {
    size_t L = c->n_layer, BT = (size_t)B * T, C = c->n_embd, NH = c->n_head;
    size_t off = 0;
#define TAKE(field, n) do { if (base) a->field = base + off; off += (n); } while (0)
    TAKE(encoded, BT * C);
    TAKE(ln1, L * BT * C); TAKE(ln1_mean, L * BT); TAKE(ln1_rstd, L * BT);
    TAKE(qkv, L * BT * 3 * C);
    TAKE(atty, L * BT * C);
    TAKE(att, L * B * NH * T * T);
    TAKE(resid2, L * BT * C);
    TAKE(ln2, L * BT * C); TAKE(ln2_mean, L * BT); TAKE(ln2_rstd, L * BT);
    TAKE(fch, L * BT * 4 * C); TAKE(fch_gelu, L * BT * 4 * C);
    TAKE(resid3, L * BT * C);
    TAKE(lnf, BT * C); TAKE(lnf_mean, BT); TAKE(lnf_rstd, BT);
    TAKE(lse, BT);
    TAKE(dres, BT * C); TAKE(dln, BT * C); TAKE(datty, BT * C);
    TAKE(dqkv, BT * 3 * C); TAKE(dfch, BT * 4 * C); TAKE(dfch_gelu, BT * 4 * C);
#undef TAKE
    return off;
}

static float *alloc_floats(size_t n) {
    /* 64-byte alignment for vector loads; calloc-like zeroing so padded
     * rows and alignment gaps start (and stay) zero. */
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

int gpt_num_units(const gpt_config *cfg) { return cfg->n_layer + 2; }

void gpt_unit_range(const gpt_model *m, int u, size_t *lo, size_t *hi) {
    *lo = m->unit_lo[u];
    *hi = m->unit_lo[u + 1];
}

/* Unit u starts at its first tensor's offset; the next unit's start (or the
 * buffer's end) closes it, so alignment gaps belong to the unit before. */
void gpt_unit_starts(const gpt_config *c, const gpt_table *tab, size_t *lo) {
    const gpt_tensor *t = tab->t;
    lo[GPT_UNIT_EMB] = 0;
    for (int l = 0; l < c->n_layer; l++) lo[GPT_UNIT_LAYER(l)] = t[GPT_T_LAYER(l, 0)].offset;
    lo[GPT_UNIT_LNF(c)] = t[GPT_T_LNF_W(c)].offset;
    lo[gpt_num_units(c)] = tab->total;
}

int gpt_tensor_unit(const gpt_config *c, int idx) {
    if (idx < GPT_T_LAYER(0, 0)) return GPT_UNIT_EMB;
    if (idx >= GPT_T_LNF_W(c)) return GPT_UNIT_LNF(c);
    return GPT_UNIT_LAYER((idx - GPT_T_LAYER(0, 0)) / GPT_LAYER_TENSORS);
}

static gpt_status units_create(gpt_model *m, gpt_error_t err) {
    int U = gpt_num_units(&m->cfg);
    m->unit_params = calloc((size_t)U, sizeof(float *));
    m->unit_grads = calloc((size_t)U, sizeof(float *));
    m->unit_lo = calloc((size_t)U + 1, sizeof(size_t));
    if (!m->unit_params || !m->unit_grads || !m->unit_lo) {
        gpt_model_free(m);
        snprintf(err, GPT_ERRLEN, "out of memory for the unit table");
        return GPT_ERR_NOMEM;
    }
    gpt_unit_starts(&m->cfg, &m->table, m->unit_lo);
    for (int u = 0; u < U; u++) {
        m->unit_params[u] = m->params + m->unit_lo[u];
        m->unit_grads[u] = m->grads + m->unit_lo[u];
    }
    return GPT_OK;
}

void gpt_release_grads(gpt_model *m) {
    free(m->grads);
    m->grads = NULL;
    for (int u = 0; u < gpt_num_units(&m->cfg); u++) m->unit_grads[u] = NULL;
}

void gpt_release_params(gpt_model *m) {
    free(m->params);
    m->params = NULL;
    for (int u = 0; u < gpt_num_units(&m->cfg); u++) m->unit_params[u] = NULL;
}

void gpt_set_unit_hook(gpt_model *m, gpt_unit_fn fn, void *ctx) {
    m->unit_hook = fn;
    m->unit_hook_ctx = ctx;
}

gpt_status gpt_model_create(gpt_model *m, const gpt_config *cfg, int B, int T,
                            gpt_error_t err) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    gpt_status st = gpt_config_finish(&m->cfg, err);
    if (st) return st;
    if (B < 1 || T < 1 || T > m->cfg.max_seq) {
        snprintf(err, GPT_ERRLEN, "sequence length %d must be in [1, max sequence "
                 "length %d] and batch %d at least 1", T, m->cfg.max_seq, B);
        return GPT_ERR_CONFIG;
    }
    if ((st = gpt_table_build(&m->table, &m->cfg, err))) return st;
    m->B = B;
    m->T = T;
    size_t n = m->table.total, BT = (size_t)B * T;
    m->params = alloc_floats(n);
    m->grads = alloc_floats(n);
    m->m = alloc_floats(n);
    m->v = alloc_floats(n);
    m->acts = calloc(1, sizeof(gpt_acts));
    m->logits = alloc_floats(BT * m->cfg.padded_vocab);
    m->losses = alloc_floats(BT);
    if (m->acts) {
        m->acts->block = alloc_floats(acts_layout(m->acts, NULL, &m->cfg, B, T));
        m->acts->tokens = calloc(BT, sizeof(int));
        m->acts->targets = calloc(BT, sizeof(int));
    }
    if (!m->params || !m->grads || !m->m || !m->v || !m->acts || !m->logits ||
        !m->losses || !m->acts->block || !m->acts->tokens || !m->acts->targets) {
        gpt_model_free(m);
        snprintf(err, GPT_ERRLEN, "out of memory for a %zu-parameter model at B=%d T=%d",
                 gpt_num_params(cfg), B, T);
        return GPT_ERR_NOMEM;
    }
    acts_layout(m->acts, m->acts->block, &m->cfg, B, T);
    m->opt_hi = n;
    return units_create(m, err);
}

void gpt_model_free(gpt_model *m) {
    free(m->params); free(m->grads); free(m->m); free(m->v);
    free(m->logits); free(m->losses);
    free(m->unit_params); free(m->unit_grads); free(m->unit_lo);
    if (m->acts) {
        free(m->acts->block); free(m->acts->tokens); free(m->acts->targets);
        free(m->acts);
    }
    gpt_table_free(&m->table);
    memset(m, 0, sizeof(*m));
}

gpt_status gpt_check_tokens(const int *x, size_t n, int V, const char *what,
                            gpt_error_t err) {
    for (size_t i = 0; i < n; i++) {
        if (x[i] < 0 || x[i] >= V) {
            snprintf(err, GPT_ERRLEN, "%s id %d at position %zu is outside the "
                     "vocabulary [0, %d)", what, x[i], i, V);
            return GPT_ERR_INPUT;
        }
    }
    return GPT_OK;
}

/* Where tensor idx's parameters (gradients) are now: inside its unit's
 * current memory, at the tensor's offset within the unit. */
float *gpt_param(const gpt_model *m, int idx) {
    int u = gpt_tensor_unit(&m->cfg, idx);
    return m->unit_params[u] + (m->table.t[idx].offset - m->unit_lo[u]);
}

static float *grad(const gpt_model *m, int idx) {
    int u = gpt_tensor_unit(&m->cfg, idx);
    return m->unit_grads[u] + (m->table.t[idx].offset - m->unit_lo[u]);
}

#define P(m, idx) gpt_param(m, idx)
#define G(m, idx) grad(m, idx)

gpt_status gpt_tell(gpt_model *m, gpt_unit_event ev, int unit, int backward,
                       gpt_error_t err) {
    if (!m->unit_hook || m->unit_hook(m->unit_hook_ctx, m, ev, unit, backward, err) == 0)
        return GPT_OK;
    return GPT_ERR_HOOK;
}
#define TELL(ev, unit, bwd) do { \
        gpt_status tell_st_ = gpt_tell(m, ev, unit, bwd, err); \
        if (tell_st_) return tell_st_; \
    } while (0)

gpt_status gpt_forward(gpt_model *m, const int *tokens, const int *targets,
                       int B, int T, gpt_error_t err) {
    const gpt_config *c = &m->cfg;
    int C = c->n_embd, NH = c->n_head, L = c->n_layer, Vp = c->padded_vocab;
    if (B < 1 || T < 1 || B > m->B || T > m->T) {
        snprintf(err, GPT_ERRLEN, "batch %dx%d exceeds the model's capacity %dx%d",
                 B, T, m->B, m->T);
        return GPT_ERR_CONFIG;
    }
    size_t BT = (size_t)B * T;
    gpt_status st = gpt_check_tokens(tokens, BT, c->vocab, "token", err);
    if (!st && targets) st = gpt_check_tokens(targets, BT, c->vocab, "target", err);
    if (st) return st;
    gpt_acts *a = m->acts;
    m->cur_B = B;
    m->cur_T = T;
    memcpy(a->tokens, tokens, BT * sizeof(int));

    TELL(GPT_NEED_PARAMS, GPT_UNIT_EMB, 0);
    gpt_encoder_forward(a->encoded, tokens, P(m, GPT_T_WTE), P(m, GPT_T_WPE), B, T, C);
    const float *resid = a->encoded;
    for (int l = 0; l < L; l++) {
        TELL(GPT_NEED_PARAMS, GPT_UNIT_LAYER(l), 0);
        size_t o = l * BT * C, os = l * BT;
        float *ln1 = a->ln1 + o, *qkv = a->qkv + 3 * o, *atty = a->atty + o;
        float *att = a->att + (size_t)l * B * NH * T * T;
        float *resid2 = a->resid2 + o, *ln2 = a->ln2 + o, *resid3 = a->resid3 + o;
        float *fch = a->fch + 4 * o, *fch_gelu = a->fch_gelu + 4 * o;
        gpt_layernorm_forward(ln1, a->ln1_mean + os, a->ln1_rstd + os, resid,
                              P(m, GPT_T_LAYER(l, GPT_LN1_W)),
                              P(m, GPT_T_LAYER(l, GPT_LN1_B)), BT, C);
        gpt_matmul_forward(qkv, ln1, P(m, GPT_T_LAYER(l, GPT_QKV_W)),
                           P(m, GPT_T_LAYER(l, GPT_QKV_B)), BT, C, 3 * C);
        gpt_attention_forward(atty, att, qkv, B, T, C, NH);
        /* The projection output goes straight into resid2, then the residual
         * is added in place: one fewer (B,T,C) buffer per layer. */
        gpt_matmul_forward(resid2, atty, P(m, GPT_T_LAYER(l, GPT_ATTPROJ_W)),
                           P(m, GPT_T_LAYER(l, GPT_ATTPROJ_B)), BT, C, C);
        gpt_residual_forward(resid2, resid2, resid, BT * C);
        gpt_layernorm_forward(ln2, a->ln2_mean + os, a->ln2_rstd + os, resid2,
                              P(m, GPT_T_LAYER(l, GPT_LN2_W)),
                              P(m, GPT_T_LAYER(l, GPT_LN2_B)), BT, C);
        gpt_matmul_forward(fch, ln2, P(m, GPT_T_LAYER(l, GPT_FC_W)),
                           P(m, GPT_T_LAYER(l, GPT_FC_B)), BT, C, 4 * C);
        gpt_gelu_forward(fch_gelu, fch, BT * 4 * C);
        gpt_matmul_forward(resid3, fch_gelu, P(m, GPT_T_LAYER(l, GPT_FCPROJ_W)),
                           P(m, GPT_T_LAYER(l, GPT_FCPROJ_B)), BT, 4 * C, C);
        gpt_residual_forward(resid3, resid3, resid2, BT * C);
        resid = resid3;
        TELL(GPT_DONE_PARAMS, GPT_UNIT_LAYER(l), 0);
    }
    TELL(GPT_NEED_PARAMS, GPT_UNIT_LNF(c), 0);
    gpt_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, resid,
                          P(m, GPT_T_LNF_W(c)), P(m, GPT_T_LNF_B(c)), BT, C);
    TELL(GPT_DONE_PARAMS, GPT_UNIT_LNF(c), 0);
    gpt_matmul_forward(m->logits, a->lnf, P(m, GPT_T_WTE), NULL, BT, C, Vp);
    TELL(GPT_DONE_PARAMS, GPT_UNIT_EMB, 0);
    if (!targets) return GPT_OK;

    memcpy(a->targets, targets, BT * sizeof(int));
    gpt_softmax_xent_forward(m->losses, a->lse, m->logits, targets, BT, c->vocab, Vp);
    double sum = 0.0;
    for (size_t i = 0; i < BT; i++) sum += m->losses[i];
    m->mean_loss = (float)(sum / BT);
    return GPT_OK;
}

const float *gpt_last_qkv(const gpt_model *m, int l) {
    return m->acts->qkv + (size_t)l * m->cur_B * m->cur_T * 3 * m->cfg.n_embd;
}

void gpt_zero_grad(gpt_model *m) {
    if (m->grads) memset(m->grads, 0, m->table.total * sizeof(float));
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

/* Backward through one block. On entry a->dres holds d(resid3 of layer l);
 * on exit it holds d(the block's input residual). */
static void block_backward(gpt_model *m, int l, const float *resid_in) {
    const gpt_config *c = &m->cfg;
    gpt_acts *a = m->acts;
    int B = m->cur_B, T = m->cur_T, C = c->n_embd, NH = c->n_head;
    size_t BT = (size_t)B * T, o = l * BT * C, os = l * BT;
    /* resid3 = resid2 + mlp(ln2(resid2)): dres flows to resid2 unchanged and
     * into the MLP; the LayerNorm backward adds the MLP path back onto it. */
    zero(a->dfch_gelu, BT * 4 * C);
    gpt_matmul_backward(a->dfch_gelu, G(m, GPT_T_LAYER(l, GPT_FCPROJ_W)),
                        G(m, GPT_T_LAYER(l, GPT_FCPROJ_B)), a->dres,
                        a->fch_gelu + 4 * o, P(m, GPT_T_LAYER(l, GPT_FCPROJ_W)),
                        BT, 4 * C, C);
    zero(a->dfch, BT * 4 * C);
    gpt_gelu_backward(a->dfch, a->fch + 4 * o, a->dfch_gelu, BT * 4 * C);
    zero(a->dln, BT * C);
    gpt_matmul_backward(a->dln, G(m, GPT_T_LAYER(l, GPT_FC_W)),
                        G(m, GPT_T_LAYER(l, GPT_FC_B)), a->dfch, a->ln2 + o,
                        P(m, GPT_T_LAYER(l, GPT_FC_W)), BT, C, 4 * C);
    gpt_layernorm_backward(a->dres, G(m, GPT_T_LAYER(l, GPT_LN2_W)),
                           G(m, GPT_T_LAYER(l, GPT_LN2_B)), a->dln, a->resid2 + o,
                           P(m, GPT_T_LAYER(l, GPT_LN2_W)), a->ln2_mean + os,
                           a->ln2_rstd + os, BT, C);
    /* resid2 = resid_in + attn(ln1(resid_in)): the same pattern. */
    zero(a->datty, BT * C);
    gpt_matmul_backward(a->datty, G(m, GPT_T_LAYER(l, GPT_ATTPROJ_W)),
                        G(m, GPT_T_LAYER(l, GPT_ATTPROJ_B)), a->dres, a->atty + o,
                        P(m, GPT_T_LAYER(l, GPT_ATTPROJ_W)), BT, C, C);
    zero(a->dqkv, BT * 3 * C);
    gpt_attention_backward(a->dqkv, a->datty, a->qkv + 3 * o,
                           a->att + (size_t)l * B * NH * T * T, B, T, C, NH);
    zero(a->dln, BT * C);
    gpt_matmul_backward(a->dln, G(m, GPT_T_LAYER(l, GPT_QKV_W)),
                        G(m, GPT_T_LAYER(l, GPT_QKV_B)), a->dqkv, a->ln1 + o,
                        P(m, GPT_T_LAYER(l, GPT_QKV_W)), BT, C, 3 * C);
    gpt_layernorm_backward(a->dres, G(m, GPT_T_LAYER(l, GPT_LN1_W)),
                           G(m, GPT_T_LAYER(l, GPT_LN1_B)), a->dln, resid_in,
                           P(m, GPT_T_LAYER(l, GPT_LN1_W)), a->ln1_mean + os,
                           a->ln1_rstd + os, BT, C);
}

/* Both NEED events of a unit in backward. */
static gpt_status need_unit(gpt_model *m, int unit, gpt_error_t err) {
    TELL(GPT_NEED_PARAMS, unit, 1);
    TELL(GPT_NEED_GRADS, unit, 1);
    return GPT_OK;
}

gpt_status gpt_backward(gpt_model *m, float grad_scale, gpt_error_t err) {
    const gpt_config *c = &m->cfg;
    gpt_acts *a = m->acts;
    int B = m->cur_B, T = m->cur_T, C = c->n_embd, L = c->n_layer;
    int Vp = c->padded_vocab;
    size_t BT = (size_t)B * T;
    gpt_status st;
    /* Mean loss over B*T positions, times the accumulation scale. */
    gpt_softmax_xent_backward(m->logits, m->logits, a->lse, a->targets,
                              grad_scale / (float)BT, BT, c->vocab, Vp);
    if ((st = need_unit(m, GPT_UNIT_EMB, err))) return st;
    zero(a->dln, BT * C);
    gpt_matmul_backward(a->dln, G(m, GPT_T_WTE), NULL, m->logits, a->lnf,
                        P(m, GPT_T_WTE), BT, C, Vp);
    TELL(GPT_DONE_PARAMS, GPT_UNIT_EMB, 1);
    if ((st = need_unit(m, GPT_UNIT_LNF(c), err))) return st;
    zero(a->dres, BT * C);
    const float *last = L > 0 ? a->resid3 + (size_t)(L - 1) * BT * C : a->encoded;
    gpt_layernorm_backward(a->dres, G(m, GPT_T_LNF_W(c)), G(m, GPT_T_LNF_B(c)),
                           a->dln, last, P(m, GPT_T_LNF_W(c)), a->lnf_mean,
                           a->lnf_rstd, BT, C);
    TELL(GPT_DONE_PARAMS, GPT_UNIT_LNF(c), 1);
    TELL(GPT_GRADS_READY, GPT_UNIT_LNF(c), 1);
    for (int l = L - 1; l >= 0; l--) {
        const float *resid_in = l > 0 ? a->resid3 + (size_t)(l - 1) * BT * C : a->encoded;
        if ((st = need_unit(m, GPT_UNIT_LAYER(l), err))) return st;
        block_backward(m, l, resid_in);
        TELL(GPT_DONE_PARAMS, GPT_UNIT_LAYER(l), 1);
        TELL(GPT_GRADS_READY, GPT_UNIT_LAYER(l), 1);
    }
    gpt_encoder_backward(G(m, GPT_T_WTE), G(m, GPT_T_WPE), a->dres, a->tokens, B, T, C);
    TELL(GPT_GRADS_READY, GPT_UNIT_EMB, 1);
    return GPT_OK;
}

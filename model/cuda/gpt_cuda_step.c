/* gpt_cuda_step.c: forward, backward and the AdamW update of the CUDA model.
 *
 * The same sequence of layers as model/gpt.c, on the CUDA kernels. It is not
 * shared with gpt.c because the GPU sequence differs where speed needs it:
 * the GELU rides in the matmul's epilogue, the residual add is fused with
 * the next LayerNorm, the classifier writes the logits' gradient during the
 * forward pass, attention keeps a log-sum-exp instead of its T x T matrix,
 * and --recompute rebuilds GELU outputs in backward. Every kernel call is
 * enqueued on the model's stream; only the loss and the norm wait. The unit
 * hook hears the CPU model's events in its order (gpt.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cuda_runtime.h>
#include "gpt_cuda_internal.h"
#include "gpt_internal.h"

#define TRY(call) do { gpt_status st_ = (call); if (st_) return st_; } while (0)

/* Tensor idx's bf16 parameters and gradients, where its unit's are bound. */
static gpt_bf16 *P(const gpt_cuda *g, int idx) {
    int u = gpt_tensor_unit(&g->cfg, idx);
    return g->up[u] + (g->table.t[idx].offset - g->ulo[u]);
}
static gpt_bf16 *G(const gpt_cuda *g, int idx) {
    int u = gpt_tensor_unit(&g->cfg, idx);
    return g->ug[u] + (g->table.t[idx].offset - g->ulo[u]);
}
#define TELL(ev, unit, bwd) TRY(gpt_cuda_tell(g, ev, unit, bwd, err))
#define LP(l, w) P(g, GPT_T_LAYER(l, w))
#define LG(l, w) G(g, GPT_T_LAYER(l, w))

/* Tokens, targets and the encoder's plan into pinned staging, then onto the
 * device. The staging is reused, so wait until the last upload from it is
 * done (by then the device has long moved on). */
static gpt_status upload_batch(gpt_cuda *g, const int *tokens, const int *targets, int BT,
                               gpt_error_t err) {
    CUDA_TRY(cudaEventSynchronize((cudaEvent_t)g->staged), "waiting for the last upload");
    memcpy(g->h_tokens, tokens, (size_t)BT * sizeof(int));
    /* The plan's three arrays are laid out for this batch's BT, not the
     * capacity, so that one copy of 3 BT + 2 ints moves all of them. */
    g->plan = (gpt_cu_encoder_plan){0, g->h_plan, g->h_plan + BT + 1, g->h_plan + 2 * BT + 2};
    g->dplan = (gpt_cu_encoder_plan){0, g->a.plan, g->a.plan + BT + 1, g->a.plan + 2 * BT + 2};
    gpt_cu_encoder_plan_build(&g->plan, tokens, BT, g->cfg.vocab, g->h_counts);
    g->dplan.n_uniq = g->plan.n_uniq;
    cudaStream_t s = g->ctx.stream;
    CUDA_TRY(cudaMemcpyAsync(g->a.tokens, g->h_tokens, (size_t)BT * sizeof(int),
                             cudaMemcpyHostToDevice, s), "uploading tokens");
    CUDA_TRY(cudaMemcpyAsync(g->a.plan, g->h_plan, (3 * (size_t)BT + 2) * sizeof(int),
                             cudaMemcpyHostToDevice, s), "uploading the encoder plan");
    if (targets) {
        memcpy(g->h_targets, targets, (size_t)BT * sizeof(int));
        CUDA_TRY(cudaMemcpyAsync(g->a.targets, g->h_targets, (size_t)BT * sizeof(int),
                                 cudaMemcpyHostToDevice, s), "uploading targets");
    }
    CUDA_TRY(cudaEventRecord((cudaEvent_t)g->staged, s), "cudaEventRecord");
    return GPT_OK;
}

/* One transformer block: resid_in -> resid3 of layer l. */
static gpt_status block_forward(gpt_cuda *g, int l, const gpt_bf16 *resid_in, gpt_error_t err) {
    gpt_cuda_acts *a = &g->a;
    gpt_cu_ctx *x = &g->ctx;
    int B = g->cur_B, T = g->cur_T, C = g->cfg.n_embd, NH = g->cfg.n_head, BT = B * T;
    size_t o = (size_t)l * BT * C, os = (size_t)l * BT;
    gpt_bf16 *ln1 = a->ln1 + o, *qkv = a->qkv + 3 * o, *atty = a->atty + o;
    gpt_bf16 *resid2 = a->resid2 + o, *ln2 = a->ln2 + o, *resid3 = a->resid3 + o;
    gpt_bf16 *fch = a->fch + 4 * o, *fch_gelu = a->fch_gelu + (g->o.recompute ? 0 : 4 * o);
    TRY(gpt_cu_layernorm_forward(x, ln1, a->ln1_mean + os, a->ln1_rstd + os, resid_in,
                                 LP(l, GPT_LN1_W), LP(l, GPT_LN1_B), BT, C, err));
    TRY(gpt_cu_matmul_forward(x, qkv, NULL, ln1, LP(l, GPT_QKV_W), LP(l, GPT_QKV_B), BT, C,
                              3 * C, err));
    float *lse = a->lse + l * gpt_cuda_lse_stride(B, NH, T);
    if (g->cudnn) TRY(gpt_cudnn_attention_forward(g->cudnn, atty, lse, qkv, B, T, C, NH, err));
    else TRY(gpt_cu_attention_forward(x, atty, lse, qkv, B, T, C, NH, err));
    TRY(gpt_cu_matmul_forward(x, a->tmp, NULL, atty, LP(l, GPT_ATTPROJ_W),
                              LP(l, GPT_ATTPROJ_B), BT, C, C, err));
    TRY(gpt_cu_residual_layernorm_forward(x, resid2, ln2, a->ln2_mean + os, a->ln2_rstd + os,
                                          resid_in, a->tmp, LP(l, GPT_LN2_W), LP(l, GPT_LN2_B),
                                          BT, C, err));
    TRY(gpt_cu_matmul_forward(x, fch_gelu, fch, ln2, LP(l, GPT_FC_W), LP(l, GPT_FC_B), BT, C,
                              4 * C, err));
    TRY(gpt_cu_matmul_forward(x, a->tmp, NULL, fch_gelu, LP(l, GPT_FCPROJ_W),
                              LP(l, GPT_FCPROJ_B), BT, 4 * C, C, err));
    return gpt_cu_residual_forward(x, resid3, resid2, a->tmp, (size_t)BT * C, err);
}

/* Queues the per-position losses' download behind the forward pass. */
static gpt_status download_losses(gpt_cuda *g, int BT, gpt_error_t err) {
    CUDA_TRY(cudaMemcpyAsync(g->h_losses, g->a.losses, (size_t)BT * sizeof(float),
                             cudaMemcpyDeviceToHost, g->ctx.stream), "downloading losses");
    CUDA_TRY(cudaEventRecord((cudaEvent_t)g->lossed, g->ctx.stream), "cudaEventRecord");
    g->loss_n = BT;
    return GPT_OK;
}

/* The losses summed in double, once their download is done. */
gpt_status gpt_cuda_mean_loss(gpt_cuda *g, float *out, gpt_error_t err) {
    if (!g->loss_n) {
        snprintf(err, GPT_ERRLEN, "no forward pass with targets has run");
        return GPT_ERR_CONFIG;
    }
    CUDA_TRY(cudaEventSynchronize((cudaEvent_t)g->lossed), "forward pass");
    double sum = 0.0;
    for (int i = 0; i < g->loss_n; i++) sum += g->h_losses[i];
    *out = (float)(sum / g->loss_n);
    return GPT_OK;
}

gpt_status gpt_cuda_forward(gpt_cuda *g, const int *tokens, const int *targets, int B,
                            int T, float grad_scale, float *loss, gpt_error_t err) {
    const gpt_config *c = &g->cfg;
    int C = c->n_embd, L = c->n_layer, Vp = c->padded_vocab, BT = B * T;
    g->grad_ready = 0;
    g->logits_grad = 1; /* until this pass has written logits */
    if (targets) g->loss_n = 0; /* no stale loss if this pass fails */
    if (B < 1 || T < 1 || B > g->o.B || T > g->o.T) {
        snprintf(err, GPT_ERRLEN, "batch %dx%d exceeds the model's capacity %dx%d", B, T,
                 g->o.B, g->o.T);
        return GPT_ERR_CONFIG;
    }
    TRY(gpt_check_tokens(tokens, (size_t)BT, c->vocab, "token", err));
    if (targets) TRY(gpt_check_tokens(targets, (size_t)BT, c->vocab, "target", err));
    g->cur_B = B;
    g->cur_T = T;
    TRY(upload_batch(g, tokens, targets, BT, err));
    gpt_cuda_acts *a = &g->a;
    TELL(GPT_NEED_PARAMS, GPT_UNIT_EMB, 0);
    TRY(gpt_cu_encoder_forward(&g->ctx, a->encoded, a->tokens, P(g, GPT_T_WTE),
                               P(g, GPT_T_WPE), B, T, C, err));
    const gpt_bf16 *resid = a->encoded;
    for (int l = 0; l < L; l++) {
        TELL(GPT_NEED_PARAMS, GPT_UNIT_LAYER(l), 0);
        TRY(block_forward(g, l, resid, err));
        TELL(GPT_DONE_PARAMS, GPT_UNIT_LAYER(l), 0);
        resid = a->resid3 + (size_t)l * BT * C;
    }
    TELL(GPT_NEED_PARAMS, GPT_UNIT_LNF(c), 0);
    TRY(gpt_cu_layernorm_forward(&g->ctx, a->lnf, a->lnf_mean, a->lnf_rstd, resid,
                                 P(g, GPT_T_LNF_W(c)), P(g, GPT_T_LNF_B(c)), BT, C, err));
    TELL(GPT_DONE_PARAMS, GPT_UNIT_LNF(c), 0);
    TRY(gpt_cu_matmul_forward(&g->ctx, a->logits, NULL, a->lnf, P(g, GPT_T_WTE), NULL, BT, C,
                              Vp, err));
    g->logits_grad = 0;
    TELL(GPT_DONE_PARAMS, GPT_UNIT_EMB, 0);
    if (!targets) return GPT_OK;
    /* Mean over the B*T positions, times the caller's accumulation scale. */
    float dloss = grad_scale > 0.0f ? grad_scale / (float)BT : 0.0f;
    TRY(gpt_cu_classifier(&g->ctx, a->logits, a->losses, a->targets, dloss, BT, c->vocab, Vp,
                          err));
    g->grad_ready = g->logits_grad = dloss != 0.0f;
    TRY(download_losses(g, BT, err));
    return loss ? gpt_cuda_mean_loss(g, loss, err) : GPT_OK;
}

gpt_status gpt_cuda_zero_grad(gpt_cuda *g, gpt_error_t err) {
    size_t n = (g->o.shard_grads ? g->hi : g->table.total) - g->goff;
    CUDA_TRY(cudaMemsetAsync(g->grads, 0, n * sizeof(gpt_bf16), g->ctx.stream),
             "zeroing the gradients");
    return GPT_OK;
}

/* Backward through one block. On entry a->dres holds d(resid3 of layer l);
 * on exit d(the block's input residual). The matmuls overwrite their dinp
 * and LayerNorm backward adds into dres: the residual path's gradient. */
static gpt_status block_backward(gpt_cuda *g, int l, const gpt_bf16 *resid_in,
                                 gpt_error_t err) {
    gpt_cuda_acts *a = &g->a;
    gpt_cu_ctx *x = &g->ctx;
    int B = g->cur_B, T = g->cur_T, C = g->cfg.n_embd, NH = g->cfg.n_head, BT = B * T;
    size_t o = (size_t)l * BT * C, os = (size_t)l * BT;
    gpt_bf16 *fch = a->fch + 4 * o, *fch_gelu = a->fch_gelu + (g->o.recompute ? 0 : 4 * o);
    if (g->o.recompute) TRY(gpt_cu_gelu_forward(x, fch_gelu, fch, (size_t)BT * 4 * C, err));
    /* mlp.c_proj, handing back d(pre-GELU) through the DGELU epilogue. */
    TRY(gpt_cu_matmul_backward(x, a->dfch, LG(l, GPT_FCPROJ_W), LG(l, GPT_FCPROJ_B), a->dres,
                               fch_gelu, LP(l, GPT_FCPROJ_W), fch, BT, 4 * C, C, err));
    TRY(gpt_cu_matmul_backward(x, a->dln, LG(l, GPT_FC_W), LG(l, GPT_FC_B), a->dfch,
                               a->ln2 + o, LP(l, GPT_FC_W), NULL, BT, C, 4 * C, err));
    TRY(gpt_cu_layernorm_backward(x, a->dres, LG(l, GPT_LN2_W), LG(l, GPT_LN2_B), a->dln,
                                  a->resid2 + o, LP(l, GPT_LN2_W), a->ln2_mean + os,
                                  a->ln2_rstd + os, BT, C, err));
    TRY(gpt_cu_matmul_backward(x, a->datty, LG(l, GPT_ATTPROJ_W), LG(l, GPT_ATTPROJ_B),
                               a->dres, a->atty + o, LP(l, GPT_ATTPROJ_W), NULL, BT, C, C,
                               err));
    const float *lse = a->lse + l * gpt_cuda_lse_stride(B, NH, T);
    if (g->cudnn)
        TRY(gpt_cudnn_attention_backward(g->cudnn, a->dqkv, a->datty, a->qkv + 3 * o,
                                         a->atty + o, lse, B, T, C, NH, err));
    else
        TRY(gpt_cu_attention_backward(x, a->dqkv, a->delta, a->datty, a->qkv + 3 * o,
                                      a->atty + o, lse, B, T, C, NH, err));
    TRY(gpt_cu_matmul_backward(x, a->dln, LG(l, GPT_QKV_W), LG(l, GPT_QKV_B), a->dqkv,
                               a->ln1 + o, LP(l, GPT_QKV_W), NULL, BT, C, 3 * C, err));
    return gpt_cu_layernorm_backward(x, a->dres, LG(l, GPT_LN1_W), LG(l, GPT_LN1_B), a->dln,
                                     resid_in, LP(l, GPT_LN1_W), a->ln1_mean + os,
                                     a->ln1_rstd + os, BT, C, err);
}

/* Both NEED events of a unit in backward. */
static gpt_status need_unit(gpt_cuda *g, int unit, gpt_error_t err) {
    TELL(GPT_NEED_PARAMS, unit, 1);
    TELL(GPT_NEED_GRADS, unit, 1);
    return GPT_OK;
}

gpt_status gpt_cuda_backward(gpt_cuda *g, gpt_error_t err) {
    const gpt_config *c = &g->cfg;
    gpt_cuda_acts *a = &g->a;
    int B = g->cur_B, T = g->cur_T, C = c->n_embd, L = c->n_layer, BT = B * T;
    if (!g->grad_ready) {
        snprintf(err, GPT_ERRLEN, "backward needs a forward with targets and grad_scale > 0");
        return GPT_ERR_CONFIG;
    }
    g->grad_ready = 0;
    /* The tied LM head: the logits already hold their gradient. */
    TRY(need_unit(g, GPT_UNIT_EMB, err));
    TRY(gpt_cu_matmul_backward(&g->ctx, a->dln, G(g, GPT_T_WTE), NULL, a->logits, a->lnf,
                               P(g, GPT_T_WTE), NULL, BT, C, c->padded_vocab, err));
    TELL(GPT_DONE_PARAMS, GPT_UNIT_EMB, 1);
    TRY(need_unit(g, GPT_UNIT_LNF(c), err));
    CUDA_TRY(cudaMemsetAsync(a->dres, 0, (size_t)BT * C * sizeof(gpt_bf16), g->ctx.stream),
             "cudaMemsetAsync");
    const gpt_bf16 *last = L > 0 ? a->resid3 + (size_t)(L - 1) * BT * C : a->encoded;
    TRY(gpt_cu_layernorm_backward(&g->ctx, a->dres, G(g, GPT_T_LNF_W(c)), G(g, GPT_T_LNF_B(c)),
                                  a->dln, last, P(g, GPT_T_LNF_W(c)), a->lnf_mean, a->lnf_rstd,
                                  BT, C, err));
    TELL(GPT_DONE_PARAMS, GPT_UNIT_LNF(c), 1);
    TELL(GPT_GRADS_READY, GPT_UNIT_LNF(c), 1);
    for (int l = L - 1; l >= 0; l--) {
        const gpt_bf16 *resid_in = l > 0 ? a->resid3 + (size_t)(l - 1) * BT * C : a->encoded;
        TRY(need_unit(g, GPT_UNIT_LAYER(l), err));
        TRY(block_backward(g, l, resid_in, err));
        TELL(GPT_DONE_PARAMS, GPT_UNIT_LAYER(l), 1);
        TELL(GPT_GRADS_READY, GPT_UNIT_LAYER(l), 1);
    }
    TRY(gpt_cu_encoder_backward(&g->ctx, G(g, GPT_T_WTE), G(g, GPT_T_WPE), a->dres, &g->dplan,
                                B, T, C, err));
    TELL(GPT_GRADS_READY, GPT_UNIT_EMB, 1);
    return GPT_OK;
}

gpt_status gpt_cuda_grad_sumsq(gpt_cuda *g, size_t lo, size_t hi, double *sumsq,
                               gpt_error_t err) {
    size_t end = g->o.shard_grads ? g->hi : g->table.total;
    if (lo > hi || lo < g->goff || hi > end) {
        snprintf(err, GPT_ERRLEN, "gradient range [%zu, %zu) outside the gradients held, "
                 "[%zu, %zu)", lo, hi, g->goff, end);
        return GPT_ERR_CONFIG;
    }
    TRY(gpt_cu_sumsq(&g->ctx, g->a.sumsq, g->grads + (lo - g->goff), hi - lo, err));
    CUDA_TRY(cudaMemcpyAsync(sumsq, g->a.sumsq, sizeof(*sumsq), cudaMemcpyDeviceToHost,
                             g->ctx.stream), "gradient norm");
    CUDA_TRY(cudaStreamSynchronize(g->ctx.stream), "gradient norm");
    return GPT_OK;
}

gpt_status gpt_cuda_grad_norm(gpt_cuda *g, float *norm, gpt_error_t err) {
    double s = 0.0;
    TRY(gpt_cuda_grad_sumsq(g, g->goff, g->o.shard_grads ? g->hi : g->table.total, &s, err));
    *norm = (float)sqrt(s);
    return GPT_OK;
}

gpt_status gpt_cuda_update(gpt_cuda *g, const gpt_adamw *opt, float grad_norm,
                           gpt_error_t err) {
    float scale = 1.0f;
    if (opt->grad_clip > 0.0f) {
        float coef = opt->grad_clip / (grad_norm + 1e-6f);
        scale = coef < 1.0f ? coef : 1.0f;
    }
    g->adam_step++;
    /* One launch over the shard's spans (built at creation): each tensor's
     * part inside the shard with its own weight decay; alignment gaps are
     * never touched, as on the CPU. Every array is passed from element lo
     * of the table on, and the rounding's index is the element's place in
     * the table, so a shard rounds exactly as the whole model would. */
    return gpt_cu_adamw(&g->ctx, g->params + (g->lo - g->poff), g->master,
                        g->grads + (g->lo - g->goff), g->m, g->v, g->spans, g->nspans, g->lo,
                        g->adam_step, opt->lr, opt->beta1, opt->beta2, opt->eps,
                        opt->weight_decay, scale, g->o.sr_seed, err);
}

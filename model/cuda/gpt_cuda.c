/* gpt_cuda.c: the CUDA model's buffers: creation, the activation layout,
 * host copies in the tensor table's layout, and the device description.
 * The passes themselves are in gpt_cuda_step.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>
#include "gpt_cuda_internal.h"

#define ALIGN 64 /* elements: every array starts 128-byte aligned or better */


gpt_status gpt_cuda_check_config(const gpt_config *cfg, gpt_error_t err) {
    int C = cfg->n_embd, hs = cfg->n_head > 0 ? C / cfg->n_head : 0;
    if (C % 8 != 0 || C > 8192) {
        snprintf(err, GPT_ERRLEN, "the CUDA backend needs channels divisible by 8 and at "
                 "most 8192 (the LayerNorm and encoder kernels' limit), not %d", C);
        return GPT_ERR_CONFIG;
    }
    if (hs != 64 && hs != 128) {
        snprintf(err, GPT_ERRLEN, "the CUDA backend needs a head size (channels / heads) "
                 "of 64 or 128, not %d / %d = %d", C, cfg->n_head, hs);
        return GPT_ERR_CONFIG;
    }
    return GPT_OK;
}

static size_t up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Takes n elements of a kind from its block; with blocks NULL it only counts. */
#define TAKE(kind, field, n) do {                                                   \
        if (blocks) a->field = (void *)((char *)blocks[kind] + s.sz[kind] * esz[kind]); \
        s.sz[kind] += up(n);                                                        \
    } while (0)

gpt_cuda_sizes gpt_cuda_acts_layout(gpt_cuda_acts *a, void *const blocks[3],
                                    const gpt_config *c, int B, int T, int recompute) {
    size_t L = c->n_layer, BT = (size_t)B * T, C = c->n_embd, NH = c->n_head;
    size_t Vp = c->padded_vocab, esz[3] = {sizeof(gpt_bf16), sizeof(float), sizeof(int)};
    struct { size_t sz[3]; } s = {{0, 0, 0}};
    enum { H, F, I };
    TAKE(H, encoded, BT * C);
    TAKE(H, ln1, L * BT * C); TAKE(H, qkv, L * BT * 3 * C);
    TAKE(H, atty, L * BT * C); TAKE(H, resid2, L * BT * C);
    TAKE(H, ln2, L * BT * C); TAKE(H, fch, L * BT * 4 * C);
    TAKE(H, fch_gelu, (recompute ? 1 : L) * BT * 4 * C); TAKE(H, resid3, L * BT * C);
    TAKE(H, lnf, BT * C); TAKE(H, logits, BT * Vp); TAKE(H, tmp, BT * C);
    TAKE(H, dres, BT * C); TAKE(H, dln, BT * C); TAKE(H, datty, BT * C);
    TAKE(H, dqkv, BT * 3 * C); TAKE(H, dfch, BT * 4 * C);
    TAKE(F, ln1_mean, L * BT); TAKE(F, ln1_rstd, L * BT);
    TAKE(F, ln2_mean, L * BT); TAKE(F, ln2_rstd, L * BT);
    TAKE(F, lse, L * gpt_cuda_lse_stride(B, (int)NH, T)); TAKE(F, lnf_mean, BT); TAKE(F, lnf_rstd, BT);
    TAKE(F, losses, BT); TAKE(F, delta, B * NH * T);
    TAKE(F, sumsq, 2); /* one double */
    TAKE(I, tokens, BT); TAKE(I, targets, BT); TAKE(I, plan, 3 * BT + 2);
    return (gpt_cuda_sizes){s.sz[H], s.sz[F], s.sz[I]};
}
#undef TAKE

/* The shard and the capacity that opts ask for, over a table of total
 * elements; 0 when they do not fit it. */
static int resolve_shard(const gpt_cuda_opts *o, size_t total, size_t *lo, size_t *hi,
                         size_t *cap) {
    *lo = o->shard_lo;
    *hi = o->shard_lo == 0 && o->shard_hi == 0 ? total : o->shard_hi;
    *cap = o->capacity > total ? o->capacity : total;
    return *lo <= *hi && *hi <= total;
}

/* Elements of the bf16 parameter and gradient buffers. */
static size_t param_elems(const gpt_cuda_opts *o, size_t lo, size_t hi, size_t cap) {
    return o->shard_params ? hi - lo : cap;
}
static size_t grad_elems(const gpt_cuda_opts *o, size_t lo, size_t hi, size_t cap) {
    return o->shard_grads ? hi - lo : cap;
}

size_t gpt_cuda_bytes(const gpt_config *cfg, const gpt_cuda_opts *o) {
    gpt_config c = *cfg;
    gpt_error_t err;
    gpt_table tab;
    if (gpt_config_finish(&c, err) || gpt_table_build(&tab, &c, err)) return 0;
    size_t lo, hi, cap, spans = 0;
    int ok = resolve_shard(o, tab.total, &lo, &hi, &cap);
    if (ok) spans = gpt_cu_adamw_spans(&tab, lo, hi, NULL, 0);
    gpt_table_free(&tab);
    if (!ok) return 0;
    gpt_cuda_acts a;
    gpt_cuda_sizes s = gpt_cuda_acts_layout(&a, NULL, &c, o->B, o->T, o->recompute);
    size_t bf16 = param_elems(o, lo, hi, cap) + grad_elems(o, lo, hi, cap);
    /* cuDNN's attention: our fp32 dQ accumulator and row sums (its plans'
     * own workspace is not known before they are built) */
    size_t att = o->attention == GPT_CUDA_ATT_CUDNN
                     ? (size_t)o->B * o->T * (c.n_embd + c.n_head) * sizeof(float)
                     : 0;
    return att + spans * sizeof(gpt_cu_span) + bf16 * sizeof(gpt_bf16) +
           (hi - lo) * 3 * sizeof(float) +
           s.bf16 * sizeof(gpt_bf16) +
           s.f32 * sizeof(float) + s.ints * sizeof(int) +
           gpt_cu_scratch_floats(c.n_embd) * sizeof(float) + ((size_t)32 << 20);
}

const gpt_table *gpt_cuda_table(const gpt_cuda *g) { return &g->table; }
void *gpt_cuda_stream(gpt_cuda *g) { return (void *)g->ctx.stream; }
void *gpt_cuda_dev_params(gpt_cuda *g) { return g->params; }
void *gpt_cuda_dev_grads(gpt_cuda *g) { return g->grads; }
int gpt_cuda_adam_step(const gpt_cuda *g) { return g->adam_step; }

/* The update's spans over the shard, built once: the shard never moves. */
static gpt_status upload_spans(gpt_cuda *g, gpt_error_t err) {
    g->nspans = gpt_cu_adamw_spans(&g->table, g->lo, g->hi, NULL, 0);
    size_t bytes = (g->nspans ? g->nspans : 1) * sizeof(gpt_cu_span);
    gpt_cu_span *h = malloc(bytes);
    if (!h) {
        snprintf(err, GPT_ERRLEN, "out of host memory");
        return GPT_ERR_NOMEM;
    }
    gpt_cu_adamw_spans(&g->table, g->lo, g->hi, h, g->nspans);
    cudaError_t e = cudaMalloc((void **)&g->spans, bytes);
    if (e == cudaSuccess) e = cudaMemcpy(g->spans, h, bytes, cudaMemcpyHostToDevice);
    free(h);
    CUDA_TRY(e, "uploading the update's spans");
    return GPT_OK;
}

/* Every device and pinned allocation of the model, zeroed. */
static gpt_status cuda_alloc(gpt_cuda *g, gpt_error_t err) {
    size_t n = g->hi - g->lo + 1, cap = g->cap, BT = (size_t)g->o.B * g->o.T;
    gpt_cuda_sizes s = gpt_cuda_acts_layout(&g->a, NULL, &g->cfg, g->o.B, g->o.T,
                                            g->o.recompute);
    size_t bytes[3] = {s.bf16 * sizeof(gpt_bf16), s.f32 * sizeof(float), s.ints * sizeof(int)};
    void **dev[5] = {(void **)&g->params, (void **)&g->grads, (void **)&g->master,
                     (void **)&g->m, (void **)&g->v};
    size_t dev_bytes[5] = {param_elems(&g->o, g->lo, g->hi, cap) * 2 + 2,
                           grad_elems(&g->o, g->lo, g->hi, cap) * 2 + 2, n * 4, n * 4, n * 4};
    for (int i = 0; i < 5; i++) {
        CUDA_TRY(cudaMalloc(dev[i], dev_bytes[i]), "allocating the model's weights");
        CUDA_TRY(cudaMemset(*dev[i], 0, dev_bytes[i]), "cudaMemset");
    }
    for (int k = 0; k < 3; k++) {
        CUDA_TRY(cudaMalloc(&g->blocks[k], bytes[k]), "allocating the activations");
        CUDA_TRY(cudaMemset(g->blocks[k], 0, bytes[k]), "cudaMemset");
    }
    gpt_cuda_acts_layout(&g->a, g->blocks, &g->cfg, g->o.B, g->o.T, g->o.recompute);
    CUDA_TRY(cudaMallocHost((void **)&g->h_tokens, BT * sizeof(int)), "cudaMallocHost");
    CUDA_TRY(cudaMallocHost((void **)&g->h_targets, BT * sizeof(int)), "cudaMallocHost");
    CUDA_TRY(cudaMallocHost((void **)&g->h_plan, (3 * BT + 2) * sizeof(int)), "cudaMallocHost");
    CUDA_TRY(cudaMallocHost((void **)&g->h_losses, BT * sizeof(float)), "cudaMallocHost");
    g->h_counts = calloc((size_t)g->cfg.vocab + 1, sizeof(int));
    if (!g->h_counts) {
        snprintf(err, GPT_ERRLEN, "out of host memory");
        return GPT_ERR_NOMEM;
    }
    cudaEvent_t ev;
    CUDA_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    g->staged = ev;
    CUDA_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    g->lossed = ev;
    gpt_status st = upload_spans(g, err);
    if (st) return st;
    /* The memsets and the spans' copy ran on the legacy stream, which the
     * model's non-blocking stream does not wait for. */
    CUDA_TRY(cudaDeviceSynchronize(), "clearing the model's memory");
    return GPT_OK;
}

gpt_status gpt_cuda_create(gpt_cuda **out, const gpt_config *cfg, const gpt_cuda_opts *o,
                           gpt_error_t err) {
    *out = NULL;
    gpt_cuda *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, GPT_ERRLEN, "out of host memory");
        return GPT_ERR_NOMEM;
    }
    g->cfg = *cfg;
    g->o = *o;
    gpt_status st = gpt_config_finish(&g->cfg, err);
    if (!st) st = gpt_cuda_check_config(&g->cfg, err);
    if (!st && o->attention != GPT_CUDA_ATT_OURS && o->attention != GPT_CUDA_ATT_CUDNN) {
        snprintf(err, GPT_ERRLEN, "unknown attention kernels %d", o->attention);
        st = GPT_ERR_CONFIG;
    }
    if (!st && (o->B < 1 || o->T < 1 || o->T > g->cfg.max_seq)) {
        snprintf(err, GPT_ERRLEN, "sequence length %d must be in [1, max sequence length %d] "
                 "and batch %d at least 1", o->T, g->cfg.max_seq, o->B);
        st = GPT_ERR_CONFIG;
    }
    if (!st) st = gpt_table_build(&g->table, &g->cfg, err);
    if (!st && !resolve_shard(o, g->table.total, &g->lo, &g->hi, &g->cap)) {
        snprintf(err, GPT_ERRLEN, "shard [%zu, %zu) is not inside the model's %zu parameters",
                 o->shard_lo, o->shard_hi, g->table.total);
        st = GPT_ERR_CONFIG;
    }
    g->poff = o->shard_params ? g->lo : 0;
    g->goff = o->shard_grads ? g->lo : 0;
    if (!st) {
        cudaError_t e = cudaSetDevice(o->device);
        if (e != cudaSuccess) {
            snprintf(err, GPT_ERRLEN, "cannot use CUDA device %d: %s", o->device,
                     cudaGetErrorString(e));
            st = GPT_ERR_DEVICE;
        }
    }
    if (!st) st = gpt_cu_ctx_create(&g->ctx, NULL, gpt_cu_scratch_floats(g->cfg.n_embd), err);
    if (!st && o->attention == GPT_CUDA_ATT_CUDNN)
        st = gpt_cudnn_att_create(&g->cudnn, &g->ctx, err);
    else if (!st)
        st = gpt_cu_attention_fits(&g->ctx, g->cfg.n_embd / g->cfg.n_head, err);
    if (!st) st = cuda_alloc(g, err);
    if (!st) st = gpt_cuda_units_init(g, err);
    g->logits_grad = 1; /* no forward yet */
    if (st) {
        gpt_cuda_free(g);
        return st;
    }
    *out = g;
    return GPT_OK;
}

void gpt_cuda_free(gpt_cuda *g) {
    if (!g) return;
    /* Everything on the device comes after the context's stream. Without it
     * no CUDA call is made: even cudaFree(NULL) would start a CUDA context
     * (hundreds of MiB) on a device that a refused config never used. */
    if (g->ctx.stream) {
        cudaStreamSynchronize(g->ctx.stream);
        gpt_cudnn_att_free(g->cudnn);
        cudaFree(g->params); cudaFree(g->grads);
        cudaFree(g->master); cudaFree(g->m); cudaFree(g->v); cudaFree(g->spans);
        for (int k = 0; k < 3; k++) cudaFree(g->blocks[k]);
        cudaFreeHost(g->h_tokens); cudaFreeHost(g->h_targets);
        cudaFreeHost(g->h_plan); cudaFreeHost(g->h_losses);
        if (g->staged) cudaEventDestroy((cudaEvent_t)g->staged);
        if (g->lossed) cudaEventDestroy((cudaEvent_t)g->lossed);
        gpt_cu_ctx_free(&g->ctx);
    }
    free(g->h_counts);
    gpt_cuda_units_free(g);
    gpt_table_free(&g->table);
    free(g);
}

/* The bf16 copy is rounded on the host: the master weights on the device
 * may be only a shard, and the conversion runs once per run or resume. The
 * copies go on the model's stream, so that its kernels see them (a plain
 * cudaMemcpy from pageable memory may return before its DMA is done).
 * from[a, b) of the table goes into the bf16 copy; shard holds the master
 * weights' hi - lo floats. */
static gpt_status upload(gpt_cuda *g, const float *from, size_t a, size_t b,
                         const float *shard, gpt_error_t err) {
    size_t n = b - a;
    gpt_bf16 *h = malloc((n ? n : 1) * sizeof(*h));
    if (!h) {
        snprintf(err, GPT_ERRLEN, "out of host memory");
        return GPT_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) h[i] = gpt_bf16_from_float(from[i]);
    cudaStream_t s = g->ctx.stream;
    cudaError_t e = cudaMemcpyAsync(g->params + (a - g->poff), h, n * sizeof(*h),
                                    cudaMemcpyHostToDevice, s);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(g->master, shard, (g->hi - g->lo) * sizeof(float),
                            cudaMemcpyHostToDevice, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    free(h);
    CUDA_TRY(e, "uploading the weights");
    return GPT_OK;
}

gpt_status gpt_cuda_set_params(gpt_cuda *g, const float *host, gpt_error_t err) {
    size_t a = g->poff, b = g->o.shard_params ? g->hi : g->table.total;
    return upload(g, host + a, a, b, host + g->lo, err);
}

gpt_status gpt_cuda_set_shard(gpt_cuda *g, const float *shard, gpt_error_t err) {
    return upload(g, shard, g->lo, g->hi, shard, err);
}

/* Waits for the stream, then copies n elements of `bytes_each` to the host. */
static gpt_status fetch(gpt_cuda *g, void *host, const void *dev, size_t bytes,
                        const char *what, gpt_error_t err) {
    CUDA_TRY(cudaStreamSynchronize(g->ctx.stream), what);
    CUDA_TRY(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), what);
    return GPT_OK;
}

/* n bf16 device values into host floats, through a temporary. */
static gpt_status fetch_bf16(gpt_cuda *g, float *host, const gpt_bf16 *dev, size_t n,
                             const char *what, gpt_error_t err) {
    gpt_bf16 *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!tmp) {
        snprintf(err, GPT_ERRLEN, "out of host memory");
        return GPT_ERR_NOMEM;
    }
    gpt_status st = fetch(g, tmp, dev, n * sizeof(*tmp), what, err);
    for (size_t i = 0; !st && i < n; i++) host[i] = gpt_bf16_to_float(tmp[i]);
    free(tmp);
    return st;
}

gpt_status gpt_cuda_get_shard(gpt_cuda *g, float *shard, gpt_error_t err) {
    return fetch(g, shard, g->master, (g->hi - g->lo) * sizeof(float),
                 "downloading the weights", err);
}

gpt_status gpt_cuda_get_params(gpt_cuda *g, float *host, gpt_error_t err) {
    return gpt_cuda_get_shard(g, host + g->lo, err);
}

gpt_status gpt_cuda_get_weights(gpt_cuda *g, float *host, gpt_error_t err) {
    size_t b = g->o.shard_params ? g->hi : g->table.total;
    return fetch_bf16(g, host + g->poff, g->params, b - g->poff, "downloading the weights",
                      err);
}

gpt_status gpt_cuda_get_grads(gpt_cuda *g, float *host, gpt_error_t err) {
    size_t b = g->o.shard_grads ? g->hi : g->table.total;
    return fetch_bf16(g, host + g->goff, g->grads, b - g->goff, "downloading the gradients",
                      err);
}

gpt_status gpt_cuda_get_logits(gpt_cuda *g, float *host, gpt_error_t err) {
    if (g->logits_grad) {
        snprintf(err, GPT_ERRLEN, "no logits to read: a training forward replaces them by "
                 "their gradient (and a failed forward leaves none); run the forward with "
                 "grad_scale 0 to read them");
        return GPT_ERR_CONFIG;
    }
    return fetch_bf16(g, host, g->a.logits,
                      (size_t)g->cur_B * g->cur_T * g->cfg.padded_vocab,
                      "downloading the logits", err);
}

gpt_status gpt_cuda_get_moments(gpt_cuda *g, float *m, float *v, gpt_error_t err) {
    size_t bytes = (g->hi - g->lo) * sizeof(float);
    gpt_status st = fetch(g, m, g->m, bytes, "downloading the AdamW moments", err);
    return st ? st : fetch(g, v, g->v, bytes, "downloading the AdamW moments", err);
}

gpt_status gpt_cuda_set_moments(gpt_cuda *g, const float *m, const float *v, int adam_step,
                                gpt_error_t err) {
    size_t bytes = (g->hi - g->lo) * sizeof(float);
    /* On the model's stream, so the next update sees them; then wait, since
     * the host buffers are the caller's. */
    CUDA_TRY(cudaMemcpyAsync(g->m, m, bytes, cudaMemcpyHostToDevice, g->ctx.stream),
             "uploading the AdamW moments");
    CUDA_TRY(cudaMemcpyAsync(g->v, v, bytes, cudaMemcpyHostToDevice, g->ctx.stream),
             "uploading the AdamW moments");
    CUDA_TRY(cudaStreamSynchronize(g->ctx.stream), "uploading the AdamW moments");
    g->adam_step = adam_step;
    return GPT_OK;
}

void gpt_cuda_describe(int device, char *out, size_t len) {
    int n = 0; /* left unset by a missing driver */
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(out, len, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
        return;
    }
    if (device < 0 || device >= n) {
        snprintf(out, len, "no CUDA device %d: %d visible", device, n);
        return;
    }
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        snprintf(out, len, "CUDA device %d: properties unavailable", device);
        return;
    }
    snprintf(out, len, "CUDA device %d of %d: %s, %.1f GiB, compute capability %d.%d, %d SMs",
             device, n, p.name, (double)p.totalGlobalMem / (1 << 30), p.major, p.minor,
             p.multiProcessorCount);
}

void gpt_cuda_device_name(int device, char *out, size_t len) {
    int n = 0;
    struct cudaDeviceProp p;
    out[0] = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && device >= 0 && device < n &&
        cudaGetDeviceProperties(&p, device) == cudaSuccess)
        snprintf(out, len, "%s", p.name);
}

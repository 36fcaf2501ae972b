/* test_cu_model.c: the whole CUDA training step against the CPU model, which
 * itself matches the PyTorch fixture to 1e-4 (test_reference). Same weights
 * (the CPU model's, rounded to bf16, so both start from identical values),
 * same tokens. Tolerances, relative errors by norm unless said otherwise:
 *  - loss, gradient norm, logits: 1e-2 (TOL);
 *  - gradients: the whole vector 1e-2, as the CUDA issue asks (GRAD_TOL),
 *    each tensor 2e-2 (GRAD_TENSOR_TOL); wte's real vocabulary rows only;
 *  - one AdamW step taken by both from the GPU's gradients and norm: master
 *    weights and moments per tensor 1e-6 (STATE_TOL, as test_cu_adamw);
 *  - a 30-step training run over 4 batches: |gpu - cpu| loss <= 1e-2 nats at
 *    every step (CURVE_TOL), and the loss falls below 0.7 of the first.
 * A CPU emulation of the GPU's bf16 roundings (flash attention's included)
 * puts the errors here at 6.0e-3 (whole gradient), 7.3e-3 (worst tensor),
 * 5e-8 (masters), 8e-8 (moments) and 2.9e-3 nats (curve), and at most
 * 6.1e-3, 8.8e-3 and 4.3e-3 nats over eight perturbed starting weights; a
 * learning rate 10% off moves the curve by 7e-2 nats.
 * Also: runs repeat bit for bit, --recompute and stochastic rounding stay
 * within tolerance, a ZeRO-1 shard steps exactly as the whole model does on
 * its range, units bound elsewhere by a ZeRO-2/3 unit hook step exactly as
 * the plain model and hear the CPU model's events, bad tokens are refused.
 * Exits 77 (Skipped) without a GPU. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cu_test.h"
#include "gpt.h"
#include "gpt_cuda.h"

#define TOL 1e-2             /* loss, norm and logits */
/* Gradients differ by bf16 rounding of activations and gradients: the whole
 * vector by the 1e-2, a tensor (fewer elements, noisier) by twice. */
#define GRAD_TOL 1e-2
#define GRAD_TENSOR_TOL 2e-2
/* The same update of the same inputs differs only by the device's FMA
 * contractions, about an ulp: 1e-6 still sees a missing weight decay. */
#define STATE_TOL 1e-6
/* Loss curve, absolute in nats: the two runs drift apart slowly, by bf16
 * noise, while the loss stays above 2.5 (test_loss_curve_follows_cpu). */
#define CURVE_TOL 1e-2f
enum { B = 3, T = 37 }; /* B*T = 111: no tile divides it */

/* Two layers, head size 64, an awkward vocabulary (131, padded to 192). */
static gpt_config small_config(void) {
    gpt_config c = {2, 2, 128, 64, 131, 0};
    gpt_error_t err;
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    return c;
}

static void random_tokens(int *x, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (int)((seed >> 8) % (unsigned)V);
    }
}

/* A (B, T) batch of inputs and targets. */
static void random_batch(int *in, int *tg, int V, unsigned seed_in, unsigned seed_tg) {
    random_tokens(in, B * T, V, seed_in);
    random_tokens(tg, B * T, V, seed_tg);
}

/* Elements of tensor i compared: wte's real vocabulary rows only. */
static size_t compared(const gpt_tensor *t, int i, const gpt_config *c) {
    return i == GPT_T_WTE ? (size_t)c->vocab * c->n_embd : t->numel;
}

/* Relative error of each tensor; returns the worst and names any above tol. */
static double per_tensor(const gpt_table *tab, const gpt_config *c, const float *got,
                         const float *want, const char *what, int step, double tol) {
    double worst = 0;
    for (int i = 0; i < tab->count; i++) {
        const gpt_tensor *t = &tab->t[i];
        char label[96];
        snprintf(label, sizeof label, "step %d %s %s", step, what, t->name);
        worst = fmax(worst, cu_rel_err(label, got + t->offset, want + t->offset,
                                       compared(t, i, c), tol));
    }
    return worst;
}

/* Relative error of all the tensors' compared elements as one vector. */
static double whole(const gpt_table *tab, const gpt_config *c, const float *got,
                    const float *want) {
    double num = 0, den = 0;
    for (int i = 0; i < tab->count; i++) {
        const gpt_tensor *t = &tab->t[i];
        for (size_t k = t->offset; k < t->offset + compared(t, i, c); k++) {
            double d = (double)got[k] - want[k];
            num += d * d;
            den += (double)want[k] * want[k];
        }
    }
    return sqrt(num / den);
}

/* x rounded to bf16 in place, to nearest even as gpt_cuda_set_params does. */
static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = gpt_bf16_to_float(gpt_bf16_from_float(x[i]));
}

typedef struct {
    gpt_config cfg;
    gpt_model cpu;
    gpt_cuda *gpu;
    float *host; /* table.total floats for downloads */
} pair;

static void pair_create(pair *p, int recompute, uint64_t sr_seed) {
    gpt_error_t err = "";
    p->cfg = small_config();
    assert_int_equal(gpt_model_create(&p->cpu, &p->cfg, B, T, err), GPT_OK);
    gpt_init_weights(&p->cpu, 7);
    /* The GPU computes with bf16 weights: give the CPU model the same ones. */
    round_bf16(p->cpu.params, p->cpu.table.total);
    gpt_cuda_opts o = {.B = B, .T = T, .recompute = recompute, .sr_seed = sr_seed};
    if (gpt_cuda_create(&p->gpu, &p->cfg, &o, err)) fail_msg("%s", err);
    if (gpt_cuda_set_params(p->gpu, p->cpu.params, err)) fail_msg("%s", err);
    p->host = cu_host(p->cpu.table.total);
}

static void pair_free(pair *p) {
    gpt_cuda_free(p->gpu);
    gpt_model_free(&p->cpu);
    free(p->host);
}

/* One training step on both; returns the GPU loss and sets *cpu_loss. */
static float gpu_step(gpt_cuda *g, const int *in, const int *tg, const gpt_adamw *opt) {
    gpt_error_t err = "";
    float loss = 0, norm = 0;
    if (gpt_cuda_zero_grad(g, err) || gpt_cuda_forward(g, in, tg, B, T, 1.0f, &loss, err) ||
        gpt_cuda_backward(g, err) || gpt_cuda_grad_norm(g, &norm, err) ||
        gpt_cuda_update(g, opt, norm, err))
        fail_msg("%s", err);
    return loss;
}

static float cpu_step(gpt_model *m, const int *in, const int *tg, const gpt_adamw *opt) {
    gpt_error_t err = "";
    gpt_zero_grad(m);
    assert_int_equal(gpt_forward(m, in, tg, B, T, err), GPT_OK);
    assert_int_equal(gpt_backward(m, 1.0f, err), GPT_OK);
    gpt_update(m, opt, gpt_grad_norm(m));
    return m->mean_loss;
}

static const gpt_adamw OPT = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};

/* The GPU's gradients (got) against the CPU model's. */
static void check_grads(const pair *p, const float *got, int step) {
    const gpt_table *tab = &p->cpu.table;
    double all = whole(tab, &p->cfg, got, p->cpu.grads);
    double worst = per_tensor(tab, &p->cfg, got, p->cpu.grads, "grad", step, GRAD_TENSOR_TOL);
    print_message("step %d: gradients off by %.2e whole (tol %.0e), %.2e worst tensor "
                  "(tol %.0e)\n", step, all, GRAD_TOL, worst, GRAD_TENSOR_TOL);
    assert_true(all <= GRAD_TOL);
    assert_true(worst <= GRAD_TENSOR_TOL);
}

/* The update alone: both models step from the same gradients (the GPU's,
 * in p->host) and norm, so that bf16 noise in the gradients cannot flip
 * the sign of an update (a zero bias moves by lr times its gradient's sign,
 * and the keys' bias has a gradient of pure noise). Both saw the same
 * gradients at every step, so their moments stay equal too. Afterwards the
 * CPU's weights, rounded to bf16, become both models' weights again
 * (set_params resets the masters and leaves the moments): the next step
 * starts from identical weights. */
static void update_from_gpu_grads(pair *p, float gpu_norm, int step) {
    gpt_error_t err = "";
    const gpt_table *tab = &p->cpu.table;
    size_t n = tab->total;
    float *m = cu_host(n), *v = cu_host(n);
    memcpy(p->cpu.grads, p->host, n * sizeof(float));
    gpt_update(&p->cpu, &OPT, gpu_norm);
    if (gpt_cuda_update(p->gpu, &OPT, gpu_norm, err) ||
        gpt_cuda_get_params(p->gpu, p->host, err) || gpt_cuda_get_moments(p->gpu, m, v, err))
        fail_msg("%s", err);
    assert_true(per_tensor(tab, &p->cfg, p->host, p->cpu.params, "master", step, STATE_TOL) <=
                STATE_TOL);
    assert_true(per_tensor(tab, &p->cfg, m, p->cpu.m, "m", step, STATE_TOL) <= STATE_TOL);
    assert_true(per_tensor(tab, &p->cfg, v, p->cpu.v, "v", step, STATE_TOL) <= STATE_TOL);
    round_bf16(p->cpu.params, n);
    if (gpt_cuda_set_params(p->gpu, p->cpu.params, err)) fail_msg("%s", err);
    free(m);
    free(v);
}

/* Three steps, each from identical bf16 weights on both: logits, loss,
 * norm and gradients, then the update from the same gradients. */
static void test_step_matches_cpu(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    gpt_error_t err = "";
    int in[B * T], tg[B * T];
    size_t BT = (size_t)B * T, Vp = p.cfg.padded_vocab;
    for (int s = 0; s < 3; s++) {
        random_batch(in, tg, p.cfg.vocab, 100 + s, 200 + s);
        /* Evaluation forward: logits and loss. */
        float eval_loss = 0;
        float *logits = cu_host(BT * Vp);
        if (gpt_cuda_forward(p.gpu, in, tg, B, T, 0.0f, &eval_loss, err) ||
            gpt_cuda_get_logits(p.gpu, logits, err))
            fail_msg("%s", err);
        assert_int_equal(gpt_forward(&p.cpu, in, tg, B, T, err), GPT_OK);
        assert_true(cu_rel_err("logits", logits, p.cpu.logits, BT * Vp, TOL) <= TOL);
        free(logits);
        /* Training step: the gradients, then the update on its own. */
        gpt_zero_grad(&p.cpu);
        assert_int_equal(gpt_forward(&p.cpu, in, tg, B, T, err), GPT_OK);
        assert_int_equal(gpt_backward(&p.cpu, 1.0f, err), GPT_OK);
        float cpu_norm = gpt_grad_norm(&p.cpu), gpu_loss = 0, gpu_norm = 0;
        if (gpt_cuda_zero_grad(p.gpu, err) ||
            gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, &gpu_loss, err) ||
            gpt_cuda_backward(p.gpu, err) || gpt_cuda_grad_norm(p.gpu, &gpu_norm, err) ||
            gpt_cuda_get_grads(p.gpu, p.host, err))
            fail_msg("%s", err);
        print_message("step %d: loss cpu %.6f gpu %.6f (eval %.6f), norm cpu %.5f gpu %.5f\n",
                      s, p.cpu.mean_loss, gpu_loss, eval_loss, cpu_norm, gpu_norm);
        assert_true(fabsf(gpu_loss - p.cpu.mean_loss) <= TOL * p.cpu.mean_loss);
        assert_true(fabsf(eval_loss - gpu_loss) <= 1e-6f * gpu_loss);
        assert_true(fabsf(gpu_norm - cpu_norm) <= TOL * cpu_norm);
        check_grads(&p, p.host, s);
        update_from_gpu_grads(&p, gpu_norm, s);
    }
    pair_free(&p);
}

/* A short training run, each model on its own: the loss falls on both, and
 * the GPU's curve stays within bf16 noise of the CPU's at every step. Four
 * batches in turn keep the loss from collapsing to where one repeated batch
 * takes it (~0.004, where no bound on the difference means much); at lr
 * 1e-3 it falls from 4.9 to about 2.9 over the 30 steps. A learning rate 10%
 * off, or 5% of the last step's gradient leaking into this one, moves the
 * curve by more than CURVE_TOL; a uniform scale of the gradients does not
 * (AdamW cancels it), which the gradient checks catch. */
enum { CURVE_BATCHES = 4, CURVE_STEPS = 30 };

static void test_loss_curve_follows_cpu(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    int in[CURVE_BATCHES][B * T], tg[CURVE_BATCHES][B * T];
    for (int k = 0; k < CURVE_BATCHES; k++)
        random_batch(in[k], tg[k], p.cfg.vocab, 500 + 2 * k, 501 + 2 * k);
    gpt_adamw opt = OPT;
    opt.lr = 1e-3f;
    float first = 0, gl = 0, cl = 0, worst = 0;
    for (int s = 0; s < CURVE_STEPS; s++) {
        const int *x = in[s % CURVE_BATCHES], *y = tg[s % CURVE_BATCHES];
        cl = cpu_step(&p.cpu, x, y, &opt);
        gl = gpu_step(p.gpu, x, y, &opt);
        if (s == 0) first = cl;
        worst = fmaxf(worst, fabsf(gl - cl));
        if (s % 10 == 0 || !(fabsf(gl - cl) <= CURVE_TOL))
            print_message("step %d: loss cpu %.5f gpu %.5f\n", s, cl, gl);
        assert_true(fabsf(gl - cl) <= CURVE_TOL);
    }
    print_message("last loss cpu %.5f gpu %.5f; worst |gpu - cpu| %.2e (tol %.0e)\n", cl, gl,
                  worst, CURVE_TOL);
    assert_true(cl < 0.7f * first && gl < 0.7f * first);
    pair_free(&p);
}

/* Two runs from the same weights and tokens give the same bits. */
static void run_steps(int recompute, uint64_t sr, float *out_params, size_t n) {
    pair p;
    pair_create(&p, recompute, sr);
    int in[B * T], tg[B * T];
    for (int s = 0; s < 3; s++) {
        random_batch(in, tg, p.cfg.vocab, 300 + s, 400 + s);
        gpu_step(p.gpu, in, tg, &OPT);
    }
    gpt_error_t err = "";
    if (gpt_cuda_get_params(p.gpu, out_params, err)) fail_msg("%s", err);
    assert_int_equal(p.cpu.table.total, n);
    pair_free(&p);
}

static void test_runs_repeat_bitwise(void **state) {
    (void)state;
    gpt_config c = small_config();
    gpt_table tab;
    gpt_error_t err;
    assert_int_equal(gpt_table_build(&tab, &c, err), GPT_OK);
    size_t n = tab.total;
    float *a = cu_host(n), *b = cu_host(n), *r = cu_host(n), *s1 = cu_host(n), *s2 = cu_host(n);
    run_steps(0, 0, a, n);
    run_steps(0, 0, b, n);
    assert_memory_equal(a, b, n * sizeof(float));
    /* --recompute rebuilds the GELU outside the matmul epilogue: close, not equal. */
    run_steps(1, 0, r, n);
    assert_true(cu_rel_err("recompute params", r, a, n, 1e-3) <= 1e-3);
    /* Stochastic rounding: reproducible from its seed. */
    run_steps(0, 99, s1, n);
    run_steps(0, 99, s2, n);
    assert_memory_equal(s1, s2, n * sizeof(float));
    assert_true(cu_rel_err("sr params", s1, a, n, 1e-3) <= 1e-3);
    gpt_table_free(&tab);
    free(a); free(b); free(r); free(s1); free(s2);
}

/* A model that keeps master weights and moments for [lo, hi) only (cut
 * inside tensors) takes the same step there, bit for bit, as the whole
 * model, stochastic rounding included; its other bf16 weights stay as they
 * were (an allgather's job), and get_params leaves the host outside alone. */
static void test_shard_steps_like_whole(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 5);
    size_t n = p.cpu.table.total, lo = n / 3 + 5, hi = 2 * n / 3 + 3;
    gpt_cuda *sh = NULL;
    gpt_error_t err = "";
    gpt_cuda_opts o = {.B = B, .T = T, .sr_seed = 5, .shard_lo = lo, .shard_hi = hi,
                       .capacity = n + 100};
    if (gpt_cuda_create(&sh, &p.cfg, &o, err) || gpt_cuda_set_params(sh, p.cpu.params, err))
        fail_msg("%s", err);
    float *before = cu_host(n), *w_sh = cu_host(n), *w_all = cu_host(n);
    float *m_all = cu_host(n), *v_all = cu_host(n), *m_sh = cu_host(n), *v_sh = cu_host(n);
    if (gpt_cuda_get_weights(sh, before, err)) fail_msg("%s", err);
    int in[B * T], tg[B * T];
    random_batch(in, tg, p.cfg.vocab, 51, 52);
    float norm = 0, loss = 0;
    double s_all = 0, s_sh = 0;
    if (gpt_cuda_zero_grad(p.gpu, err) || gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, &loss, err) ||
        gpt_cuda_backward(p.gpu, err) || gpt_cuda_grad_norm(p.gpu, &norm, err) ||
        gpt_cuda_grad_sumsq(p.gpu, lo, hi, &s_all, err) || gpt_cuda_update(p.gpu, &OPT, norm, err))
        fail_msg("%s", err);
    if (gpt_cuda_zero_grad(sh, err) || gpt_cuda_forward(sh, in, tg, B, T, 1.0f, &loss, err) ||
        gpt_cuda_backward(sh, err) || gpt_cuda_grad_sumsq(sh, lo, hi, &s_sh, err) ||
        gpt_cuda_update(sh, &OPT, norm, err))
        fail_msg("%s", err);
    assert_true(s_all == s_sh && s_all > 0);
    for (size_t i = 0; i < n; i++) p.host[i] = w_sh[i] = -7.0f;
    if (gpt_cuda_get_params(sh, w_sh, err) || gpt_cuda_get_params(p.gpu, p.host, err))
        fail_msg("%s", err);
    for (size_t i = 0; i < n; i++) assert_true(i >= lo && i < hi ? w_sh[i] == p.host[i]
                                                                : w_sh[i] == -7.0f);
    if (gpt_cuda_get_weights(sh, w_sh, err) || gpt_cuda_get_weights(p.gpu, w_all, err))
        fail_msg("%s", err);
    for (size_t i = 0; i < n; i++) assert_true(w_sh[i] == (i >= lo && i < hi ? w_all[i]
                                                                            : before[i]));
    if (gpt_cuda_get_moments(p.gpu, m_all, v_all, err) ||
        gpt_cuda_get_moments(sh, m_sh, v_sh, err))
        fail_msg("%s", err);
    assert_memory_equal(m_sh, m_all + lo, (hi - lo) * sizeof(float));
    assert_memory_equal(v_sh, v_all + lo, (hi - lo) * sizeof(float));
    o.shard_hi = n + 1;
    gpt_cuda *bad = NULL;
    assert_int_equal(gpt_cuda_create(&bad, &p.cfg, &o, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "is not inside the model's"));
    gpt_cuda_free(sh);
    pair_free(&p);
    free(before); free(w_sh); free(w_all); free(m_all); free(v_all); free(m_sh); free(v_sh);
}

/* The unit protocol of ZeRO-2/3 (gpt_cuda_set_unit_hook). */
typedef struct {
    int ev[256][3], n;  /* (event, unit, backward) as told */
    char *weights;      /* the whole bf16 weights, test-owned */
    char *pslots;       /* a weight slot per unit, at the unit's offset */
    char *slots;        /* a gradient slot per unit, at the unit's offset */
    size_t lo, hi;      /* the model's shard */
} recorder;

static void record(recorder *r, gpt_unit_event ev, int unit, int backward) {
    assert_true(r->n < 256);
    r->ev[r->n][0] = ev;
    r->ev[r->n][1] = unit;
    r->ev[r->n][2] = backward;
    r->n++;
}

static int cpu_recorder(void *ctx, gpt_model *m, gpt_unit_event ev, int unit, int backward,
                        gpt_error_t err) {
    (void)m; (void)err;
    record(ctx, ev, unit, backward);
    return 0;
}

/* Lends each unit a weight slot (a copy, poisoned with NaN once released)
 * and a gradient slot, whose part in the shard joins the model's gradient
 * shard on GRADS_READY: ZeRO-3's protocol without the collectives. */
static int gpu_binder(void *ctx, gpt_cuda *g, gpt_unit_event ev, int unit, int backward,
                      gpt_error_t err) {
    recorder *r = ctx;
    size_t lo, hi;
    gpt_cuda_unit_range(g, unit, &lo, &hi);
    record(r, ev, unit, backward);
    cudaStream_t s = gpt_cuda_stream(g);
    char *w = r->pslots + lo * 2, *slot = r->slots + lo * 2;
    size_t a = lo > r->lo ? lo : r->lo, b = hi < r->hi ? hi : r->hi;
    cudaError_t e = cudaSuccess;
    switch (ev) {
    case GPT_NEED_PARAMS:
        e = cudaMemcpyAsync(w, r->weights + lo * 2, (hi - lo) * 2, cudaMemcpyDeviceToDevice, s);
        gpt_cuda_bind_params(g, unit, w);
        break;
    case GPT_DONE_PARAMS:
        gpt_cuda_bind_params(g, unit, NULL);
        e = cudaMemsetAsync(w, 0xff, (hi - lo) * 2, s);
        break;
    case GPT_NEED_GRADS:
        e = cudaMemsetAsync(slot, 0, (hi - lo) * 2, s);
        gpt_cuda_bind_grads(g, unit, slot);
        break;
    case GPT_GRADS_READY:
        gpt_cuda_bind_grads(g, unit, NULL);
        if (a < b)
            return gpt_cuda_accumulate(g, (char *)gpt_cuda_dev_grads(g) + (a - r->lo) * 2,
                                       r->slots + a * 2, b - a, err) != GPT_OK;
        break;
    }
    if (e == cudaSuccess) return 0;
    snprintf(err, GPT_ERRLEN, "%s", cudaGetErrorString(e));
    return 1;
}

/* One step with a given norm (the shard's own would clip differently). */
static void step_with_norm(gpt_cuda *g, const int *in, const int *tg, float norm, float *loss) {
    gpt_error_t err = "";
    if (gpt_cuda_zero_grad(g, err) || gpt_cuda_forward(g, in, tg, B, T, 1.0f, loss, err) ||
        gpt_cuda_backward(g, err) || gpt_cuda_update(g, &OPT, norm, err))
        fail_msg("%s", err);
}

/* A model that keeps only a shard [lo, total) of its bf16 weights and
 * gradients needs a unit hook (without one it stops); with one that lends
 * every unit slots elsewhere it computes the plain model's loss, writes the
 * plain model's gradients into the slots, and steps its shard bit for bit
 * as the plain model does. It tells the CPU model's events in their order. */
static void test_units_bind_like_whole(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    size_t n = p.cpu.table.total, lo = n / 3 / 16 * 16;
    gpt_cuda *sh = NULL;
    gpt_error_t err = "";
    gpt_cuda_opts o = {.B = B, .T = T, .shard_lo = lo, .shard_hi = n, .shard_grads = 1,
                       .shard_params = 1};
    if (gpt_cuda_create(&sh, &p.cfg, &o, err) || gpt_cuda_set_params(sh, p.cpu.params, err))
        fail_msg("%s", err);
    int in[B * T], tg[B * T];
    random_batch(in, tg, p.cfg.vocab, 61, 62);
    float loss = 0, want = 0, norm = 0;
    assert_int_equal(gpt_cuda_forward(sh, in, tg, B, T, 1.0f, &loss, err), GPT_ERR_HOOK);
    assert_non_null(strstr(err, "unit 0's parameters are not bound"));
    static recorder rg, rc;
    rg.lo = lo;
    rg.hi = n;
    rg.weights = (char *)cu_upload_bf16(p.cpu.params, n);
    CU_CHECK(cudaMalloc((void **)&rg.pslots, n * 2));
    CU_CHECK(cudaMalloc((void **)&rg.slots, n * 2));
    gpt_cuda_set_unit_hook(sh, gpu_binder, &rg);
    gpt_set_unit_hook(&p.cpu, cpu_recorder, &rc);
    if (gpt_cuda_zero_grad(p.gpu, err) || gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, &want, err) ||
        gpt_cuda_backward(p.gpu, err) || gpt_cuda_grad_norm(p.gpu, &norm, err) ||
        gpt_cuda_update(p.gpu, &OPT, norm, err))
        fail_msg("%s", err);
    step_with_norm(sh, in, tg, norm, &loss);
    assert_true(loss == want);
    cpu_step(&p.cpu, in, tg, &OPT);
    assert_int_equal(rg.n, rc.n);
    assert_memory_equal(rg.ev, rc.ev, sizeof(rg.ev[0]) * (size_t)rc.n);
    float *a = cu_host(n), *b = cu_host(n);
    if (gpt_cuda_get_grads(p.gpu, b, err)) fail_msg("%s", err);
    cu_download_bf16(a, (const gpt_bf16 *)rg.slots, n);
    assert_memory_equal(a, b, n * sizeof(float));
    if (gpt_cuda_get_grads(sh, a, err)) fail_msg("%s", err);
    assert_memory_equal(a + lo, b + lo, (n - lo) * sizeof(float));
    if (gpt_cuda_get_weights(sh, a, err) || gpt_cuda_get_weights(p.gpu, b, err))
        fail_msg("%s", err);
    assert_memory_equal(a + lo, b + lo, (n - lo) * sizeof(float));
    if (gpt_cuda_get_params(sh, a, err) || gpt_cuda_get_params(p.gpu, b, err))
        fail_msg("%s", err);
    assert_memory_equal(a + lo, b + lo, (n - lo) * sizeof(float));
    cudaFree(rg.weights);
    cudaFree(rg.pslots);
    cudaFree(rg.slots);
    gpt_cuda_free(sh);
    pair_free(&p);
    free(a); free(b);
}

static void test_bad_tokens_refused(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    int in[B * T], tg[B * T];
    random_batch(in, tg, p.cfg.vocab, 1, 2);
    in[17] = p.cfg.vocab;
    gpt_error_t err = "";
    float loss;
    assert_int_equal(gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, &loss, err), GPT_ERR_INPUT);
    assert_non_null(strstr(err, "position 17"));
    assert_int_equal(gpt_cuda_backward(p.gpu, err), GPT_ERR_CONFIG);
    assert_int_equal(gpt_cuda_forward(p.gpu, in, tg, B + 1, T, 1.0f, &loss, err),
                     GPT_ERR_CONFIG);
    pair_free(&p);
}

/* A forward without a loss pointer does not wait: the loss read after its
 * backward is queued is the forward's own; before any forward, and after
 * a refused one, there is none to read. */
static void test_loss_read_later(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    int in[B * T], tg[B * T];
    random_batch(in, tg, p.cfg.vocab, 3, 4);
    gpt_error_t err = "";
    float want = 0.0f, got = -1.0f;
    assert_int_equal(gpt_cuda_mean_loss(p.gpu, &got, err), GPT_ERR_CONFIG);
    if (gpt_cuda_forward(p.gpu, in, tg, B, T, 0.0f, &want, err) ||
        gpt_cuda_zero_grad(p.gpu, err) ||
        gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, NULL, err) ||
        gpt_cuda_backward(p.gpu, err) || gpt_cuda_mean_loss(p.gpu, &got, err))
        fail_msg("%s", err);
    assert_float_equal(got, want, 1e-6f * want);
    in[5] = -1; /* a refused pass leaves no loss behind */
    assert_int_equal(gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, NULL, err), GPT_ERR_INPUT);
    assert_int_equal(gpt_cuda_mean_loss(p.gpu, &got, err), GPT_ERR_CONFIG);
    pair_free(&p);
}

/* Batches smaller than the model's capacity, (1, T - 5) after a (B, T)
 * one: the gradients (wte's through the encoder's plan among them) match
 * the CPU model's; after a training pass there are no logits to read. */
static void test_smaller_batch_like_cpu(void **state) {
    (void)state;
    pair p;
    pair_create(&p, 0, 0);
    int in[B * T], tg[B * T];
    random_batch(in, tg, p.cfg.vocab, 71, 72);
    gpt_error_t err = "";
    float loss = 0;
    enum { T2 = T - 5 };
    if (gpt_cuda_zero_grad(p.gpu, err) || gpt_cuda_forward(p.gpu, in, tg, B, T, 1.0f, &loss, err) ||
        gpt_cuda_backward(p.gpu, err) || gpt_cuda_zero_grad(p.gpu, err) ||
        gpt_cuda_forward(p.gpu, in, tg, 1, T2, 1.0f, &loss, err) ||
        gpt_cuda_backward(p.gpu, err) || gpt_cuda_get_grads(p.gpu, p.host, err))
        fail_msg("%s", err);
    gpt_zero_grad(&p.cpu);
    assert_int_equal(gpt_forward(&p.cpu, in, tg, 1, T2, err), GPT_OK);
    assert_int_equal(gpt_backward(&p.cpu, 1.0f, err), GPT_OK);
    assert_true(fabsf(loss - p.cpu.mean_loss) <= TOL * p.cpu.mean_loss);
    check_grads(&p, p.host, 0);
    assert_int_equal(gpt_cuda_get_logits(p.gpu, p.host, err), GPT_ERR_CONFIG);
    pair_free(&p);
}

int main(int argc, char **argv) {
    (void)argc;
    cu_test_require_gpu(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_matches_cpu),
        cmocka_unit_test(test_loss_curve_follows_cpu),
        cmocka_unit_test(test_runs_repeat_bitwise),
        cmocka_unit_test(test_shard_steps_like_whole),
        cmocka_unit_test(test_units_bind_like_whole),
        cmocka_unit_test(test_bad_tokens_refused),
        cmocka_unit_test(test_loss_read_later),
        cmocka_unit_test(test_smaller_batch_like_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_model.c: the model module's host-side logic: presets and config
 * validation, the tensor table, GPT-2 initialisation, token checks, gradient
 * accumulation, the unit hook, KV-cache decoding and the FLOP count. The math of a step is covered by
 * test_kernels (per kernel) and test_reference (whole step vs PyTorch). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"

static void test_presets(void **state) {
    (void)state;
    gpt_config c;
    gpt_error_t err;
    assert_int_equal(gpt_config_preset("gpt2-124M", &c, err), GPT_OK);
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    assert_int_equal(c.padded_vocab, 50304);
    /* 124,439,808 is GPT-2 small's published parameter count. */
    assert_int_equal(gpt_num_params(&c), 124439808);
    assert_int_equal(gpt_config_preset("gpt2-1558M", &c, err), GPT_OK);
    assert_int_equal(c.n_head, 25);
    assert_int_equal(gpt_config_preset("d12", &c, err), GPT_OK);
    assert_int_equal(c.n_embd, 768);
    assert_int_equal(c.vocab, 256);
    assert_int_equal(gpt_config_preset("d2", &c, err), GPT_OK);
    assert_int_equal(c.n_layer, 2);
    assert_int_not_equal(gpt_config_preset("d49", &c, err), GPT_OK);
    assert_non_null(strstr(err, "d49"));
    assert_int_not_equal(gpt_config_preset("d4x", &c, err), GPT_OK);
    assert_int_not_equal(gpt_config_preset("gpt3", &c, err), GPT_OK);
}

static void test_config_validation(void **state) {
    (void)state;
    gpt_error_t err;
    gpt_config c = {3, 5, 96, 16, 131, 0};
    assert_int_equal(gpt_config_finish(&c, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "heads 5 do not divide channels 96"));
    c = (gpt_config){3, 6, 96, 16, 0, 0};
    assert_int_equal(gpt_config_finish(&c, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "vocab"));
    c = (gpt_config){3, 6, 96, 16, 131, 0};
    assert_int_equal(gpt_config_finish(&c, err), GPT_OK);
    assert_int_equal(c.padded_vocab, 192);
    gpt_model m;
    assert_int_equal(gpt_model_create(&m, &c, 2, 17, err), GPT_ERR_CONFIG);
    assert_non_null(strstr(err, "17"));
}

static void test_tensor_table(void **state) {
    (void)state;
    gpt_config c = {3, 3, 30, 16, 131, 0};
    gpt_error_t err;
    gpt_model m;
    assert_int_equal(gpt_model_create(&m, &c, 2, 8, err), GPT_OK);
    const gpt_table *t = &m.table;
    assert_int_equal(t->count, 2 + 3 * GPT_LAYER_TENSORS + 2);
    size_t real = 0;
    for (int i = 0; i < t->count; i++) {
        assert_int_equal(t->t[i].offset % 16, 0);
        if (i > 0) assert_true(t->t[i].offset >= t->t[i - 1].offset + t->t[i - 1].numel);
        real += i == GPT_T_WTE ? (size_t)131 * 30 : t->t[i].numel;
    }
    assert_int_equal(real, gpt_num_params(&m.cfg));
    assert_true(t->total >= t->t[t->count - 1].offset + t->t[t->count - 1].numel);
    const gpt_tensor *q = gpt_table_find(t, "h.2.attn.c_attn.weight");
    assert_ptr_equal(q, &t->t[GPT_T_LAYER(2, GPT_QKV_W)]);
    assert_int_equal(q->shape[0], 90);
    assert_int_equal(q->shape[1], 30);
    assert_true(q->decay);
    assert_false(gpt_table_find(t, "h.2.ln_1.bias")->decay);
    assert_null(gpt_table_find(t, "h.3.ln_1.bias"));
    assert_int_equal(t->t[GPT_T_WTE].shape[0], 192);
    gpt_model_free(&m);
}

static double stddev(const float *x, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) { s += x[i]; s2 += (double)x[i] * x[i]; }
    return sqrt(s2 / n - (s / n) * (s / n));
}

static void test_init(void **state) {
    (void)state;
    gpt_config c = {4, 4, 128, 64, 300, 0};
    gpt_error_t err;
    gpt_model a, b;
    assert_int_equal(gpt_model_create(&a, &c, 1, 8, err), GPT_OK);
    assert_int_equal(gpt_model_create(&b, &c, 1, 8, err), GPT_OK);
    gpt_init_weights(&a, 7);
    gpt_init_weights(&b, 7);
    assert_memory_equal(a.params, b.params, a.table.total * sizeof(float));
    gpt_init_weights(&b, 8);
    assert_memory_not_equal(a.params, b.params, a.table.total * sizeof(float));
    const gpt_tensor *t = a.table.t;
    const float *P = a.params;
    assert_true(fabs(stddev(P + t[GPT_T_LAYER(0, GPT_FC_W)].offset, t[GPT_T_LAYER(0, GPT_FC_W)].numel) - 0.02) < 0.001);
    double proj = 0.02 / sqrt(8.0);
    assert_true(fabs(stddev(P + t[GPT_T_LAYER(1, GPT_FCPROJ_W)].offset, t[GPT_T_LAYER(1, GPT_FCPROJ_W)].numel) - proj) < 0.0005);
    assert_true(fabs(stddev(P + t[GPT_T_LAYER(3, GPT_ATTPROJ_W)].offset, t[GPT_T_LAYER(3, GPT_ATTPROJ_W)].numel) - proj) < 0.0005);
    const float *ln = P + t[GPT_T_LAYER(2, GPT_LN2_W)].offset, *bias = P + t[GPT_T_LAYER(2, GPT_FC_B)].offset;
    for (int i = 0; i < 128; i++) assert_true(ln[i] == 1.0f);
    for (int i = 0; i < 512; i++) assert_true(bias[i] == 0.0f);
    for (size_t i = 300 * 128; i < t[GPT_T_WTE].numel; i++) assert_true(P[i] == 0.0f);
    gpt_model_free(&a);
    gpt_model_free(&b);
}

static void test_bad_tokens(void **state) {
    (void)state;
    gpt_config c = {1, 1, 16, 8, 10, 0};
    gpt_error_t err;
    gpt_model m;
    assert_int_equal(gpt_model_create(&m, &c, 1, 4, err), GPT_OK);
    int tok[4] = {1, 2, 10, 3}, tgt[4] = {2, 3, 4, -1};
    assert_int_equal(gpt_forward(&m, tok, NULL, 1, 4, err), GPT_ERR_INPUT);
    assert_non_null(strstr(err, "token id 10"));
    tok[2] = 9;
    assert_int_equal(gpt_forward(&m, tok, tgt, 1, 4, err), GPT_ERR_INPUT);
    assert_non_null(strstr(err, "target id -1"));
    assert_int_equal(gpt_forward(&m, tok, NULL, 1, 5, err), GPT_ERR_CONFIG);
    gpt_model_free(&m);
}

/* Two micro-steps of B=1 with grad_scale 1/2 equal one step of B=2. */
static void test_grad_accumulation(void **state) {
    (void)state;
    gpt_config c = {2, 2, 24, 8, 37, 0};
    gpt_error_t err;
    gpt_model a, b;
    assert_int_equal(gpt_model_create(&a, &c, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_model_create(&b, &c, 1, 6, err), GPT_OK);
    gpt_init_weights(&a, 3);
    gpt_init_weights(&b, 3);
    int tok[13];
    for (int i = 0; i < 13; i++) tok[i] = (i * 7 + 3) % 37;
    gpt_zero_grad(&a);
    assert_int_equal(gpt_forward(&a, tok, tok + 1, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_backward(&a, 1.0f, err), GPT_OK);
    int in[2][6], tg[2][6];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 6; t++) { in[r][t] = tok[r * 6 + t]; tg[r][t] = tok[r * 6 + t + 1]; }
    gpt_zero_grad(&b);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(gpt_forward(&b, in[r], tg[r], 1, 6, err), GPT_OK);
        assert_int_equal(gpt_backward(&b, 0.5f, err), GPT_OK);
    }
    double d = 0, n = 0;
    for (size_t i = 0; i < a.table.total; i++) {
        d += (a.grads[i] - b.grads[i]) * (double)(a.grads[i] - b.grads[i]);
        n += (double)a.grads[i] * a.grads[i];
    }
    assert_true(n > 0);
    assert_true(sqrt(d / n) < 1e-5);
    gpt_model_free(&a);
    gpt_model_free(&b);
}

/* A unit hook that does what ZeRO-3 does, without MPI: the model has no
 * parameter or gradient buffer of its own; each unit's parameters are copied
 * into a fresh slot on NEED_PARAMS (and the slot poisoned and freed on
 * DONE_PARAMS), and its gradients are written into a fresh zeroed slot that
 * is added into a store on GRADS_READY. */
typedef struct {
    float *pstore, *gstore;
    char log[512];   /* one letter per event: N D G R, then the unit */
    int fail_on;     /* fail the n-th event (1-based); 0 never */
    int events;
} pager;

static int pager_hook(void *ctx, gpt_model *m, gpt_unit_event ev, int unit, int backward,
                      gpt_error_t err) {
    pager *p = ctx;
    size_t lo, hi;
    gpt_unit_range(m, unit, &lo, &hi);
    size_t n = hi - lo, len = strlen(p->log);
    snprintf(p->log + len, sizeof p->log - len, "%c%c%d ", "NDGR"[ev], backward ? 'b' : 'f',
             unit);
    if (++p->events == p->fail_on) {
        snprintf(err, GPT_ERRLEN, "pager refused event %d", p->events);
        return 1;
    }
    switch (ev) {
    case GPT_NEED_PARAMS:
        m->unit_params[unit] = malloc(n * sizeof(float));
        memcpy(m->unit_params[unit], p->pstore + lo, n * sizeof(float));
        break;
    case GPT_DONE_PARAMS:
        for (size_t i = 0; i < n; i++) m->unit_params[unit][i] = NAN;
        free(m->unit_params[unit]);
        m->unit_params[unit] = NULL;
        break;
    case GPT_NEED_GRADS:
        m->unit_grads[unit] = calloc(n, sizeof(float));
        break;
    case GPT_GRADS_READY:
        for (size_t i = 0; i < n; i++) p->gstore[lo + i] += m->unit_grads[unit][i];
        free(m->unit_grads[unit]);
        m->unit_grads[unit] = NULL;
        break;
    }
    return 0;
}

static void test_unit_hook(void **state) {
    (void)state;
    gpt_config c = {2, 2, 24, 8, 37, 0};
    gpt_error_t err;
    gpt_model a, b;
    assert_int_equal(gpt_model_create(&a, &c, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_model_create(&b, &c, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_num_units(&a.cfg), 4);
    size_t lo, hi, prev = 0;
    for (int u = 0; u < 4; u++) {
        gpt_unit_range(&a, u, &lo, &hi);
        assert_true(lo == prev && hi > lo);
        prev = hi;
    }
    assert_true(prev == a.table.total);
    gpt_init_weights(&a, 5);
    gpt_init_weights(&b, 5);
    pager p = {malloc(b.table.total * sizeof(float)), calloc(b.table.total, sizeof(float)),
               "", 0, 0};
    memcpy(p.pstore, b.params, b.table.total * sizeof(float));
    gpt_release_params(&b);
    gpt_release_grads(&b);
    gpt_set_unit_hook(&b, pager_hook, &p);
    int tok[13];
    for (int i = 0; i < 13; i++) tok[i] = (i * 5 + 1) % 37;
    gpt_zero_grad(&a);
    gpt_zero_grad(&b);
    assert_int_equal(gpt_forward(&a, tok, tok + 1, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_backward(&a, 1.0f, err), GPT_OK);
    assert_int_equal(gpt_forward(&b, tok, tok + 1, 2, 6, err), GPT_OK);
    assert_int_equal(gpt_backward(&b, 1.0f, err), GPT_OK);
    assert_string_equal(p.log, "Nf0 Nf1 Df1 Nf2 Df2 Nf3 Df3 Df0 "
                        "Nb0 Gb0 Db0 Nb3 Gb3 Db3 Rb3 Nb2 Gb2 Db2 Rb2 Nb1 Gb1 Db1 Rb1 Rb0 ");
    assert_true(a.mean_loss == b.mean_loss);
    for (size_t i = 0; i < a.table.total; i++) assert_true(a.grads[i] == p.gstore[i]);
    /* A refusing hook stops the pass with its message. */
    p.log[0] = '\0';
    p.events = 0;
    p.fail_on = 3;
    assert_int_equal(gpt_forward(&b, tok, tok + 1, 2, 6, err), GPT_ERR_HOOK);
    assert_string_equal(err, "pager refused event 3");
    free(p.pstore);
    free(p.gstore);
    gpt_model_free(&a);
    gpt_model_free(&b);
}

/* The KV cache: a prefilled prompt then one token at a time gives, at every
 * position, the logits of a full gpt_forward over the same prefix (to
 * rounding: the matmuls run over other row counts), also through the
 * paging hook; a full cache and bad tokens are errors. */
static void test_kv_cache(void **state) {
    (void)state;
    gpt_config c = {3, 4, 32, 16, 41, 0};
    gpt_error_t err;
    gpt_model a, b;
    int T = 12, tok[12];
    assert_int_equal(gpt_model_create(&a, &c, 1, T, err), GPT_OK);
    assert_int_equal(gpt_model_create(&b, &c, 1, T, err), GPT_OK);
    gpt_init_weights(&a, 11);
    for (int i = 0; i < T; i++) tok[i] = (i * 7 + 3) % 41;
    pager p = {malloc(a.table.total * sizeof(float)), NULL, "", 0, 0};
    memcpy(p.pstore, a.params, a.table.total * sizeof(float));
    gpt_release_params(&b);
    gpt_set_unit_hook(&b, pager_hook, &p);
    gpt_model *models[2] = {&a, &b};
    int Vp = a.cfg.padded_vocab;
    float *want = malloc(sizeof(float) * (size_t)T * Vp);
    assert_int_equal(gpt_forward(&a, tok, NULL, 1, T, err), GPT_OK);
    memcpy(want, a.logits, sizeof(float) * (size_t)T * Vp);
    for (int k = 0; k < 2; k++) {
        gpt_kv *kv;
        assert_int_equal(gpt_kv_create(&kv, models[k], T, err), GPT_OK);
        assert_int_equal(gpt_kv_prefill(models[k], kv, tok, 5, err), GPT_OK);
        for (int pos = 4; pos < T; pos++) {
            if (pos > 4) assert_int_equal(gpt_kv_step(models[k], kv, tok[pos], err), GPT_OK);
            assert_int_equal(gpt_kv_len(kv), pos + 1);
            const float *got = gpt_kv_logits(kv), *ref = want + (size_t)pos * Vp;
            double d = 0, n = 0;
            for (int v = 0; v < c.vocab; v++) {
                d += (got[v] - ref[v]) * (double)(got[v] - ref[v]);
                n += (double)ref[v] * ref[v];
            }
            assert_true(n > 0 && sqrt(d / n) < 1e-5);
        }
        assert_int_equal(gpt_kv_step(models[k], kv, tok[0], err), GPT_ERR_CONFIG);
        assert_non_null(strstr(err, "full"));
        gpt_kv_free(kv);
    }
    gpt_kv *kv;
    assert_int_equal(gpt_kv_create(&kv, &a, 4, err), GPT_OK);
    assert_int_equal(gpt_kv_prefill(&a, kv, tok, 2, err), GPT_OK);
    assert_int_equal(gpt_kv_step(&a, kv, 41, err), GPT_ERR_INPUT);
    assert_int_equal(gpt_kv_prefill(&a, kv, tok, 5, err), GPT_ERR_CONFIG);
    gpt_kv_free(kv);
    assert_int_equal(gpt_kv_create(&kv, &a, 17, err), GPT_ERR_CONFIG);
    free(want);
    free(p.pstore);
    gpt_model_free(&a);
    gpt_model_free(&b);
}

static void test_flops(void **state) {
    (void)state;
    gpt_config c;
    gpt_error_t err;
    assert_int_equal(gpt_config_preset("gpt2-124M", &c, err), GPT_OK);
    double f = gpt_flops_per_step(&c, 64, 256);
    /* 6 * (124.4M - 0.79M wpe) * 256 + attention: about 190 GFLOP. */
    assert_true(f > 189e9 && f < 191e9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_bad_tokens),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_unit_hook),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_flops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

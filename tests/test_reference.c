/* test_reference.c: the whole training step against an independent PyTorch
 * oracle. reference/fixture.bin (made by reference/gpt2_reference.py, layout
 * in reference/README.md) holds a tiny awkward GPT-2's initial weights and,
 * for 5 steps, the logits, loss, gradient norm, every gradient and every
 * updated parameter. We load the same weights, feed the same tokens, and
 * compare each of those at every step with relative error <= 1e-4 per tensor
 * (by L2 norm). */
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

#define TOL 1e-4

typedef struct {
    int32_t hdr[16];
    float hyper[8];
    float *lr;
    int32_t *inputs, *targets;
    float *body; /* initial params, then per-step records */
    size_t nparam, step_len;
} fixture;

static void *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*len);
    if (buf && fread(buf, 1, *len, f) != *len) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

static char *raw;

/* Reads the whole fixture, takes the model config from its header and points
 * the fields at the sections that follow; the size must match exactly. */
static void load_fixture(fixture *fx, gpt_config *cfg) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/reference/fixture.bin", getenv("GPTRAIN_TEST_DIR"));
    size_t len = 0;
    raw = read_all(path, &len);
    assert_non_null(raw);
    memcpy(fx->hdr, raw, sizeof(fx->hdr));
    assert_int_equal(fx->hdr[0], 20261122);
    *cfg = (gpt_config){fx->hdr[2], fx->hdr[3], fx->hdr[4], fx->hdr[5], fx->hdr[6], 0};
    gpt_error_t err;
    assert_int_equal(gpt_config_finish(cfg, err), GPT_OK);
    memcpy(fx->hyper, raw + 64, sizeof(fx->hyper));
    int steps = fx->hdr[9], BT = fx->hdr[7] * fx->hdr[8];
    fx->lr = (float *)(raw + 96);
    fx->inputs = (int32_t *)(fx->lr + steps);
    fx->targets = fx->inputs + (size_t)steps * BT;
    fx->body = (float *)(fx->targets + (size_t)steps * BT);
    fx->nparam = gpt_num_params(cfg);
    fx->step_len = (size_t)BT * cfg->vocab + 2 + 2 * fx->nparam;
    size_t want = (size_t)((char *)fx->body - raw) +
                  sizeof(float) * (fx->nparam + steps * fx->step_len);
    assert_int_equal(len, want);
}

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d) / fmax(sqrt(r), 1e-12);
}

/* Walks the table in fixture order (which is table order) and either copies
 * fixture values into buf, or compares buf against them tensor by tensor.
 * wte is stored as (V, C): only the real vocabulary rows. */
static double tensors(const gpt_model *m, float *buf, const float *ref, int copy,
                      const char *what, int step) {
    double worst = 0.0;
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        size_t n = i == GPT_T_WTE ? (size_t)m->cfg.vocab * m->cfg.n_embd : t->numel;
        if (copy) {
            memcpy(buf + t->offset, ref, n * sizeof(float));
        } else {
            double e = rel_err(buf + t->offset, ref, n);
            if (e > TOL) print_error("step %d %s %s: rel err %.3g\n", step, what, t->name, e);
            worst = fmax(worst, e);
        }
        ref += n;
    }
    return worst;
}

static void test_five_steps_match_pytorch(void **state) {
    (void)state;
    fixture fx;
    gpt_config cfg;
    gpt_error_t err;
    load_fixture(&fx, &cfg);
    int B = fx.hdr[7], T = fx.hdr[8], steps = fx.hdr[9], V = cfg.vocab;
    assert_true(T < cfg.max_seq);
    gpt_model m;
    assert_int_equal(gpt_model_create(&m, &cfg, B, T, err), GPT_OK);
    tensors(&m, m.params, fx.body, 1, "init", -1);
    gpt_adamw opt = {0, fx.hyper[0], fx.hyper[1], fx.hyper[2], fx.hyper[3], fx.hyper[4]};
    float *logits = malloc(sizeof(float) * B * T * V);
    for (int s = 0; s < steps; s++) {
        const float *rec = fx.body + fx.nparam + s * fx.step_len;
        const int *in = fx.inputs + s * B * T, *tg = fx.targets + s * B * T;
        gpt_zero_grad(&m);
        assert_int_equal(gpt_forward(&m, in, tg, B, T, err), GPT_OK);
        for (int i = 0; i < B * T; i++) {
            memcpy(logits + i * V, m.logits + (size_t)i * cfg.padded_vocab, sizeof(float) * V);
            for (int v = V; v < cfg.padded_vocab; v++)
                assert_true(m.logits[(size_t)i * cfg.padded_vocab + v] == 0.0f);
        }
        double e_logits = rel_err(logits, rec, (size_t)B * T * V);
        double e_loss = fabs(m.mean_loss - rec[B * T * V]) / fabs(rec[B * T * V]);
        assert_int_equal(gpt_backward(&m, 1.0f, err), GPT_OK);
        float norm = gpt_grad_norm(&m);
        double e_norm = fabs(norm - rec[B * T * V + 1]) / rec[B * T * V + 1];
        double e_grad = tensors(&m, m.grads, rec + B * T * V + 2, 0, "grad", s);
        opt.lr = fx.lr[s];
        gpt_update(&m, &opt, norm);
        double e_param = tensors(&m, m.params, rec + B * T * V + 2 + fx.nparam, 0, "param", s);
        print_message("step %d loss %.6f (ref %.6f) errors: logits %.2g loss %.2g "
                      "norm %.2g grads %.2g params %.2g\n", s, m.mean_loss,
                      rec[B * T * V], e_logits, e_loss, e_norm, e_grad, e_param);
        assert_true(e_logits <= TOL);
        assert_true(e_loss <= TOL);
        assert_true(e_norm <= TOL);
        assert_true(e_grad <= TOL);
        assert_true(e_param <= TOL);
    }
    /* Padded vocabulary rows of wte never move. */
    const float *wte = m.params + m.table.t[GPT_T_WTE].offset;
    for (size_t i = (size_t)V * cfg.n_embd; i < m.table.t[GPT_T_WTE].numel; i++)
        assert_true(wte[i] == 0.0f);
    free(logits);
    gpt_model_free(&m);
    free(raw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_five_steps_match_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cu_adamw.c: the CUDA kernels of pointwise.cu, classifier.cu and
 * adamw.cu against their CPU twins in model/cpu/ (kernels.h), on the same
 * bf16-rounded inputs:
 *  - GELU forward and backward, on the 16-byte path (n % 8 == 0, aligned),
 *    with n not a multiple of 8, with every pointer one element off 16-byte
 *    alignment, and in place (dinp == dout); the values around the range
 *    must be left alone;
 *  - the fused classifier: losses, and in place the gradient (all of it, and
 *    the non-target entries alone, which the -dloss at the targets would
 *    otherwise drown), padded columns exactly 0, logits bitwise untouched
 *    when dloss == 0, the same bits on a second run; at GPT-2's V = 50257 of
 *    Vp = 50304, at a small V, at Vp = 45 whose rows start at every
 *    alignment, and at V = 1; a target outside [0, V) gives a NaN loss;
 *  - AdamW over 3 steps: master, m and v as the CPU twin's to 1e-6, and the
 *    bf16 params exactly bf16(master): round to nearest even without a seed,
 *    else bitwise gpt_cu_sr_round_host of the master, reproducible, really
 *    stochastic (differs from nearest even, from another seed, from another
 *    step) and unbiased (the mean over 2^19 copies of one value);
 *  - the sum of squares against a double host sum, for n = 0, 1, 1000,
 *    10^7 + 3, a misaligned start, and 2^27 + 5 values (more blocks than the
 *    scratch has partials), the same bits on a second call;
 *  - the launchers' refusals (GPT_ERR_CONFIG) of shapes they do not support.
 * Without a GPU the program exits 77 (ctest: Skipped). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_test.h"
#include "kernels.h"

static gpt_cu_ctx ctx;
static gpt_error_t err;

#define OK(call)                                               \
    do {                                                       \
        gpt_status st_ = (call);                               \
        if (st_ != GPT_OK) print_error("%s\n", err);           \
        assert_int_equal(st_, GPT_OK);                         \
    } while (0)

static void check(const char *what, double e, double tol) {
    print_message("    %-44s %.2e (tol %.0e)\n", what, e, tol);
    assert_true(e <= tol); /* also fails on NaN */
}
static void check_rel(const char *what, const float *got, const float *want, size_t n,
                      double tol) {
    check(what, cu_rel_err(what, got, want, n, tol), tol);
}

/* cudaMemcpy from pageable memory may return before its DMA lands, and the
 * context's stream does not wait for the legacy stream: sync after uploads. */
static void wait_uploads(void) { CU_CHECK(cudaDeviceSynchronize()); }

/* Seeded uniform fp32 in [-1, 1), not rounded to bf16 (master weights). */
static float urand(unsigned *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    return (float)(*seed >> 8) / 8388608.0f - 1.0f;
}

static gpt_bf16 *raw_bf16(const float *x, size_t n) {
    gpt_bf16 *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) h[i] = gpt_bf16_from_float(x[i]);
    return h;
}
static gpt_bf16 *download_raw(const gpt_bf16 *d, size_t n) {
    gpt_bf16 *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    cu_download(h, d, n * sizeof *h);
    return h;
}
static void *dev_alloc(size_t bytes) {
    void *d = NULL;
    CU_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    return d;
}

static int setup(void **state) {
    (void)state;
    if (gpt_cu_ctx_create(&ctx, NULL, gpt_cu_scratch_floats(768), err) != GPT_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}
static int teardown(void **state) {
    (void)state;
    gpt_cu_ctx_free(&ctx);
    return 0;
}

/* ================= GELU ================= */

#define GELU_TOL 5e-3 /* bf16 rounding of the output: <= 2^-9 per element */
#define SENTINEL 7.0f /* what must stay outside [off, off + n) */

static void check_guards(const char *what, const float *got, size_t off, size_t n) {
    for (size_t i = 0; i < off; i++) assert_true(got[i] == SENTINEL);
    if (got[off + n] != SENTINEL) print_error("%s: wrote past the end\n", what);
    assert_true(got[off + n] == SENTINEL);
}

/* GELU of n values starting `off` elements into every buffer. */
static void gelu_case(size_t n, size_t off, unsigned seed) {
    size_t tot = off + n + 1;
    float *x = cu_host(tot), *dout = cu_host(tot), *fill = cu_host(tot);
    float *want = cu_host(n), *got = cu_host(tot), *alias = cu_host(tot);
    cu_fill(x, tot, 6.0f, &seed);
    cu_fill(dout, tot, 1.0f, &seed);
    if (n >= 3) { /* the tails: gelu ~ 0 and ~ x, and the origin */
        x[off] = -9.0f;
        x[off + 1] = 9.0f;
        x[off + 2] = 0.0f;
    }
    for (size_t i = 0; i < tot; i++) fill[i] = SENTINEL;
    for (size_t i = off; i < off + n; i++) fill[i] = -3.0f; /* garbage: overwritten */
    gpt_bf16 *dx = cu_upload_bf16(x, tot), *ddout = cu_upload_bf16(dout, tot);
    gpt_bf16 *dres = cu_upload_bf16(fill, tot);
    wait_uploads();
    print_message("  n=%zu offset=%zu\n", n, off);

    OK(gpt_cu_gelu_forward(&ctx, dres + off, dx + off, n, err));
    cu_download_bf16(got, dres, tot);
    gpt_gelu_forward(want, x + off, (int)n);
    check_rel("gelu forward", got + off, want, n, GELU_TOL);
    check_guards("gelu forward", got, off, n);

    gpt_bf16 *fill_raw = raw_bf16(fill, tot);
    CU_CHECK(cudaMemcpy(dres, fill_raw, tot * sizeof(gpt_bf16), cudaMemcpyHostToDevice));
    free(fill_raw);
    wait_uploads();
    OK(gpt_cu_gelu_backward(&ctx, dres + off, dx + off, ddout + off, n, err));
    cu_download_bf16(got, dres, tot);
    memset(want, 0, n * sizeof *want); /* the CPU twin adds; the GPU overwrites */
    gpt_gelu_backward(want, x + off, dout + off, (int)n);
    check_rel("gelu backward", got + off, want, n, GELU_TOL);
    check_guards("gelu backward", got, off, n);

    /* in place: dinp == dout, the same bits as into a separate buffer */
    OK(gpt_cu_gelu_backward(&ctx, ddout + off, dx + off, ddout + off, n, err));
    cu_download_bf16(alias, ddout, tot);
    assert_memory_equal(alias + off, got + off, n * sizeof(float));

    CU_CHECK(cudaFree(dx));
    CU_CHECK(cudaFree(ddout));
    CU_CHECK(cudaFree(dres));
    free(x), free(dout), free(fill), free(want), free(got), free(alias);
}

static void test_gelu(void **state) {
    (void)state;
    gelu_case((size_t)1 << 20, 0, 11u); /* 16-byte path */
    gelu_case(1000003, 0, 12u);         /* n % 8 != 0: one value per thread */
    gelu_case(4096, 1, 13u);            /* every pointer misaligned */
    gelu_case(3, 0, 14u);
    OK(gpt_cu_gelu_forward(&ctx, NULL, NULL, 0, err));
    OK(gpt_cu_gelu_backward(&ctx, NULL, NULL, NULL, 0, err));
}

/* ================= classifier ================= */

#define LOSS_TOL 1e-3
#define GRAD_TOL 2e-2

/* Gradient rows of got and want with the target entries zeroed in both. */
static void zero_targets(float *g, const int *tgt, int N, int Vp) {
    for (int i = 0; i < N; i++) g[(size_t)i * Vp + tgt[i]] = 0.0f;
}

static void classifier_case(int N, int V, int Vp, unsigned seed) {
    size_t n = (size_t)N * Vp;
    print_message("  N=%d V=%d Vp=%d\n", N, V, Vp);
    float *x = cu_host(n), *got = cu_host(n), *want = cu_host(n);
    float *loss_want = cu_host(N), *lse = cu_host(N), *loss_got = cu_host(N);
    float pad = gpt_bf16_to_float(gpt_bf16_from_float(1e4f)); /* must get no probability */
    cu_fill(x, n, 4.0f, &seed);
    int *tgt = malloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        tgt[i] = (int)((seed >> 8) % (unsigned)V);
        for (int v = V; v < Vp; v++) x[(size_t)i * Vp + v] = pad;
    }
    tgt[0] = V - 1;
    tgt[N - 1] = 0;
    if (N > 1) x[(size_t)Vp + tgt[1]] = 30.0f; /* a confident row: p ~ 1 at the target */
    gpt_bf16 *raw = raw_bf16(x, n);
    gpt_bf16 *dlogits = cu_upload_bf16(x, n);
    int *dtgt = cu_upload(tgt, sizeof(int) * (size_t)N);
    float *dlosses = dev_alloc(sizeof(float) * (size_t)N);
    CU_CHECK(cudaMemset(dlosses, 0xff, sizeof(float) * (size_t)N)); /* NaN until written */
    wait_uploads();
    gpt_softmax_xent_forward(loss_want, lse, x, tgt, N, V, Vp);

    /* evaluation: losses only, logits untouched */
    OK(gpt_cu_classifier(&ctx, dlogits, dlosses, dtgt, 0.0f, N, V, Vp, err));
    cu_download(loss_got, dlosses, sizeof(float) * (size_t)N);
    check_rel("classifier losses (dloss = 0)", loss_got, loss_want, N, LOSS_TOL);
    gpt_bf16 *after = download_raw(dlogits, n);
    assert_memory_equal(after, raw, n * sizeof *raw);
    free(after);

    /* training: losses again, and the gradient in place */
    float dloss = 1.0f / (float)N;
    CU_CHECK(cudaMemset(dlosses, 0xff, sizeof(float) * (size_t)N));
    wait_uploads();
    OK(gpt_cu_classifier(&ctx, dlogits, dlosses, dtgt, dloss, N, V, Vp, err));
    cu_download(loss_got, dlosses, sizeof(float) * (size_t)N);
    check_rel("classifier losses (dloss = 1/N)", loss_got, loss_want, N, LOSS_TOL);
    gpt_bf16 *grad = download_raw(dlogits, n);
    for (size_t i = 0; i < n; i++) got[i] = gpt_bf16_to_float(grad[i]);
    gpt_softmax_xent_backward(want, x, lse, tgt, dloss, N, V, Vp);
    check_rel("classifier dlogits", got, want, n, GRAD_TOL);
    zero_targets(got, tgt, N, Vp);
    zero_targets(want, tgt, N, Vp);
    check_rel("classifier dlogits off the targets", got, want, n, GRAD_TOL);
    size_t pad_nonzero = 0;
    for (size_t i = 0; i < n; i++) pad_nonzero += (int)(i % (size_t)Vp) >= V && grad[i] != 0;
    assert_int_equal(pad_nonzero, 0);

    /* the same bits on a second run */
    float *loss_again = cu_host(N);
    CU_CHECK(cudaMemcpy(dlogits, raw, n * sizeof *raw, cudaMemcpyHostToDevice));
    wait_uploads();
    OK(gpt_cu_classifier(&ctx, dlogits, dlosses, dtgt, dloss, N, V, Vp, err));
    cu_download(loss_again, dlosses, sizeof(float) * (size_t)N);
    gpt_bf16 *grad_again = download_raw(dlogits, n);
    assert_memory_equal(loss_again, loss_got, sizeof(float) * (size_t)N);
    assert_memory_equal(grad_again, grad, n * sizeof *grad);

    CU_CHECK(cudaFree(dlogits));
    CU_CHECK(cudaFree(dtgt));
    CU_CHECK(cudaFree(dlosses));
    free(x), free(got), free(want), free(loss_want), free(lse), free(loss_got);
    free(loss_again), free(tgt), free(raw), free(grad), free(grad_again);
}

/* A target outside [0, V) (the host checks tokens, so a bug) gives a NaN
 * loss and a gradient without the onehot term, and no read out of bounds. */
static void classifier_bad_targets(void) {
    enum { N = 2, V = 10, Vp = 16 };
    float x[N * Vp], loss[N], got[N * Vp];
    unsigned seed = 25u;
    cu_fill(x, N * Vp, 1.0f, &seed);
    int tgt[N] = {-1, V};
    gpt_bf16 *dlogits = cu_upload_bf16(x, N * Vp);
    int *dtgt = cu_upload(tgt, sizeof tgt);
    float *dlosses = dev_alloc(sizeof loss);
    wait_uploads();
    OK(gpt_cu_classifier(&ctx, dlogits, dlosses, dtgt, 1.0f, N, V, Vp, err));
    cu_download(loss, dlosses, sizeof loss);
    cu_download_bf16(got, dlogits, N * Vp);
    for (int i = 0; i < N; i++) {
        assert_true(isnan(loss[i]));
        double row = 0.0;
        for (int v = 0; v < V; v++) {
            assert_true(got[i * Vp + v] > 0.0f);
            row += got[i * Vp + v];
        }
        check("classifier bad target: probabilities sum", fabs(row - 1.0), 1e-2);
    }
    CU_CHECK(cudaFree(dlogits));
    CU_CHECK(cudaFree(dtgt));
    CU_CHECK(cudaFree(dlosses));
}

static void test_classifier(void **state) {
    (void)state;
    classifier_case(64, 50257, 50304, 21u); /* GPT-2 */
    classifier_case(7, 100, 128, 22u);
    classifier_case(5, 37, 45, 23u); /* rows start at every alignment */
    classifier_case(2, 1, 1, 24u);   /* loss 0, gradient 0 */
    classifier_bad_targets();
    OK(gpt_cu_classifier(&ctx, NULL, NULL, NULL, 1.0f, 0, 10, 16, err));
    assert_int_equal(gpt_cu_classifier(&ctx, NULL, NULL, NULL, 1.0f, 4, 0, 16, err),
                     GPT_ERR_CONFIG);
    assert_int_equal(gpt_cu_classifier(&ctx, NULL, NULL, NULL, 1.0f, 4, 17, 16, err),
                     GPT_ERR_CONFIG);
}

/* ================= AdamW ================= */

#define ADAMW_N 100003
#define ADAMW_STEPS 3
#define STATE_TOL 1e-6
static const float LR = 1e-2f, B1 = 0.9f, B2 = 0.95f, EPS = 1e-8f, WD = 0.1f, GS = 0.7f;

typedef struct {
    size_t n;
    float *master, *m, *v, **grads; /* host: initial state, grads per step */
} adamw_problem;

static adamw_problem adamw_problem_make(size_t n, unsigned seed) {
    adamw_problem p = {n, cu_host(n), cu_host(n), cu_host(n),
                       malloc(sizeof(float *) * ADAMW_STEPS)};
    for (size_t i = 0; i < n; i++) {
        p.master[i] = urand(&seed);
        p.m[i] = 0.01f * urand(&seed);
        p.v[i] = 1e-4f * fabsf(urand(&seed));
    }
    for (int t = 0; t < ADAMW_STEPS; t++) {
        p.grads[t] = cu_host(n);
        cu_fill(p.grads[t], n, 0.1f, &seed);
    }
    return p;
}
static void adamw_problem_free(adamw_problem *p) {
    for (int t = 0; t < ADAMW_STEPS; t++) free(p->grads[t]);
    free(p->master), free(p->m), free(p->v), free(p->grads);
}

/* The update's spans (gpt_cu_adamw_spans) of the tensors of tab inside
 * [lo, hi), on the device; *count is set. */
static gpt_cu_span *dev_spans(const gpt_table *tab, size_t lo, size_t hi, size_t *count) {
    *count = gpt_cu_adamw_spans(tab, lo, hi, NULL, 0);
    gpt_cu_span *h = malloc((*count + 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(gpt_cu_adamw_spans(tab, lo, hi, h, *count), *count);
    gpt_cu_span *d = cu_upload(h, (*count + 1) * sizeof *h);
    free(h);
    wait_uploads();
    return d;
}

/* The spans of n elements of one decaying tensor. */
static gpt_cu_span *dev_spans_all(size_t n, size_t *count) {
    gpt_tensor t = {.offset = 0, .numel = n, .decay = 1};
    gpt_table tab = {.t = &t, .count = 1, .total = n};
    return dev_spans(&tab, 0, n, count);
}

/* Runs the problem's steps on the GPU (index0, sr_seed) and on the CPU,
 * checking after each step master/m/v against the CPU and the params
 * against the rounding of the GPU's own master. Returns the final params'
 * bits and (in *master_out) the final master, for the caller's comparisons. */
static gpt_bf16 *adamw_run(const adamw_problem *p, size_t index0, uint64_t sr_seed,
                           float **master_out, size_t *stochastic_diffs) {
    size_t n = p->n, bytes = n * sizeof(float);
    float *cm = cu_host(n), *cmm = cu_host(n), *cv = cu_host(n);
    memcpy(cm, p->master, bytes), memcpy(cmm, p->m, bytes), memcpy(cv, p->v, bytes);
    float *dmaster = cu_upload(p->master, bytes), *dm = cu_upload(p->m, bytes);
    float *dv = cu_upload(p->v, bytes);
    gpt_bf16 *dparams = dev_alloc(n * sizeof(gpt_bf16)), *params = NULL;
    float *gm = cu_host(n), *gmm = cu_host(n), *gv = cu_host(n);
    size_t nspans;
    gpt_cu_span *spans = dev_spans_all(n, &nspans);
    assert_true(nspans > 1); /* a tensor cut into several blocks' spans */
    *stochastic_diffs = 0;
    for (int t = 1; t <= ADAMW_STEPS; t++) {
        gpt_bf16 *dgrads = cu_upload_bf16(p->grads[t - 1], n);
        wait_uploads();
        OK(gpt_cu_adamw(&ctx, dparams, dmaster, dgrads, dm, dv, spans, nspans, index0, t, LR,
                        B1, B2, EPS, WD, GS, sr_seed, err));
        gpt_adamw_kernel(cm, p->grads[t - 1], cmm, cv, (long)n, t, LR, B1, B2, EPS, WD, GS);
        cu_download(gm, dmaster, bytes), cu_download(gmm, dm, bytes), cu_download(gv, dv, bytes);
        check_rel("adamw master", gm, cm, n, STATE_TOL);
        check_rel("adamw m", gmm, cmm, n, STATE_TOL);
        check_rel("adamw v", gv, cv, n, STATE_TOL);
        free(params);
        params = download_raw(dparams, n);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) {
            gpt_bf16 rne = gpt_bf16_from_float(gm[i]);
            gpt_bf16 want = sr_seed ? gpt_cu_sr_round_host(gm[i], sr_seed, t, index0 + i) : rne;
            wrong += params[i] != want;
            *stochastic_diffs += params[i] != rne;
        }
        if (wrong) print_error("adamw step %d: %zu params are not the rounded master\n", t, wrong);
        assert_int_equal(wrong, 0);
        CU_CHECK(cudaFree(dgrads));
    }
    CU_CHECK(cudaFree(dmaster));
    CU_CHECK(cudaFree(dm));
    CU_CHECK(cudaFree(dv));
    CU_CHECK(cudaFree(dparams));
    CU_CHECK(cudaFree(spans));
    free(cm), free(cmm), free(cv), free(gmm), free(gv);
    *master_out = gm;
    return params;
}

static void test_adamw_nearest(void **state) {
    (void)state;
    adamw_problem p = adamw_problem_make(ADAMW_N, 31u);
    float *master;
    size_t diffs;
    gpt_bf16 *params = adamw_run(&p, 0, 0, &master, &diffs);
    assert_int_equal(diffs, 0);
    free(params), free(master);
    adamw_problem_free(&p);
    OK(gpt_cu_adamw(&ctx, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 1, LR, B1, B2, EPS, WD, GS,
                    0, err));
    assert_int_equal(gpt_cu_adamw(&ctx, NULL, NULL, NULL, NULL, NULL, NULL, 1, 0, 0, LR, B1, B2,
                                  EPS, WD, GS, 0, err),
                     GPT_ERR_CONFIG);
}

/* One launch over three tensors of a shard: a decaying one cut by the
 * shard's start, a bias without decay, and a decaying one cut by its end,
 * with alignment gaps between them. Each tensor steps as the CPU does with
 * its own weight decay; the gaps and what lies outside the shard keep
 * their NaN poison. */
static void test_adamw_spans(void **state) {
    (void)state;
    gpt_tensor ts[3] = {{.offset = 0, .numel = 40000, .decay = 1},
                        {.offset = 40016, .numel = 777, .decay = 0},
                        {.offset = 40800, .numel = 30000, .decay = 1}};
    gpt_table tab = {.t = ts, .count = 3, .total = 70800};
    const size_t lo = 1000, hi = 60000, n = hi - lo;
    size_t nspans;
    gpt_cu_span *spans = dev_spans(&tab, lo, hi, &nspans);
    adamw_problem p = adamw_problem_make(n, 33u);
    float *poison = cu_host(n);
    for (size_t i = 0; i < n; i++) poison[i] = NAN;
    float *dmaster = cu_upload(p.master, n * 4), *dm = cu_upload(p.m, n * 4);
    float *dv = cu_upload(p.v, n * 4);
    gpt_bf16 *dgrads = cu_upload_bf16(p.grads[0], n), *dparams = cu_upload_bf16(poison, n);
    wait_uploads();
    OK(gpt_cu_adamw(&ctx, dparams, dmaster, dgrads, dm, dv, spans, nspans, lo, 1, LR, B1, B2,
                    EPS, WD, GS, 0, err));
    float *gm = cu_host(n), *gparams = cu_host(n);
    cu_download(gm, dmaster, n * 4);
    cu_download_bf16(gparams, dparams, n);
    size_t in_spans = 0;
    for (int k = 0; k < 3; k++) {
        size_t a = ts[k].offset > lo ? ts[k].offset : lo;
        size_t b = ts[k].offset + ts[k].numel < hi ? ts[k].offset + ts[k].numel : hi;
        size_t len = b - a, s = a - lo;
        float *cm = cu_host(len), *cmm = cu_host(len), *cv = cu_host(len);
        memcpy(cm, p.master + s, len * 4), memcpy(cmm, p.m + s, len * 4);
        memcpy(cv, p.v + s, len * 4);
        gpt_adamw_kernel(cm, p.grads[0] + s, cmm, cv, (long)len, 1, LR, B1, B2, EPS,
                         ts[k].decay ? WD : 0.0f, GS);
        char what[64];
        snprintf(what, sizeof what, "adamw spans: tensor %d master", k);
        check_rel(what, gm + s, cm, len, STATE_TOL);
        in_spans += len;
        free(cm), free(cmm), free(cv);
    }
    size_t untouched = 0; /* the gaps: the master as it was, the params still NaN */
    for (size_t i = 0; i < n; i++)
        if (isnan(gparams[i])) untouched += gm[i] == p.master[i];
    assert_int_equal(untouched, n - in_spans);
    void *bufs[] = {dmaster, dm, dv, dgrads, dparams, spans};
    for (int i = 0; i < 6; i++) CU_CHECK(cudaFree(bufs[i]));
    free(poison), free(gm), free(gparams);
    adamw_problem_free(&p);
}

static void test_adamw_stochastic(void **state) {
    (void)state;
    const uint64_t seed = 0x5eed1234abcdull;
    const size_t index0 = 1000;
    adamw_problem p = adamw_problem_make(ADAMW_N, 32u);
    float *master1, *master2, *master3;
    size_t diffs, diffs2, diffs3;
    gpt_bf16 *params1 = adamw_run(&p, index0, seed, &master1, &diffs);
    /* about 1 in 4 values round the other way than to nearest */
    print_message("    %zu of %d params differ from round-to-nearest\n", diffs,
                  ADAMW_N * ADAMW_STEPS);
    assert_true(diffs > (size_t)ADAMW_N * ADAMW_STEPS / 10);
    gpt_bf16 *params2 = adamw_run(&p, index0, seed, &master2, &diffs2);
    assert_memory_equal(params2, params1, ADAMW_N * sizeof(gpt_bf16));
    assert_memory_equal(master2, master1, ADAMW_N * sizeof(float));
    gpt_bf16 *params3 = adamw_run(&p, index0, seed + 1, &master3, &diffs3);
    assert_memory_not_equal(params3, params1, ADAMW_N * sizeof(gpt_bf16));
    free(params1), free(params2), free(params3), free(master1), free(master2), free(master3);
    adamw_problem_free(&p);
}

/* With lr = wd = 0 and zero gradients the master stays put and the params are
 * its stochastic rounding: over 2^19 copies of one value the mean must be the
 * value. Truncating or rounding to nearest would be off by ~2e-3 relative. */
#define SR_COPIES ((size_t)1 << 19)
#define SR_TOL 1e-4 /* about 20 standard errors of the mean */

static void sr_mean_check(const gpt_bf16 *params, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    gpt_bf16 lo = (gpt_bf16)(u >> 16); /* truncation: the neighbour toward zero */
    double sum = 0.0;
    for (size_t i = 0; i < SR_COPIES; i++) {
        assert_true(params[i] == lo || params[i] == lo + 1);
        sum += gpt_bf16_to_float(params[i]);
    }
    double mean = sum / (double)SR_COPIES;
    char what[64];
    snprintf(what, sizeof what, "stochastic rounding mean of %.9g", x);
    check(what, fabs(mean - x) / fabs(x), SR_TOL);
}

static void test_sr_unbiased(void **state) {
    (void)state;
    const float xs[2] = {1.0f + 0.3f * 0x1p-7f, -(3.0f + 0.7f * 0x1p-6f)};
    size_t n = 2 * SR_COPIES;
    float *master = cu_host(n), *zero = cu_host(n), *after = cu_host(n);
    for (size_t i = 0; i < n; i++) master[i] = xs[i / SR_COPIES];
    float *dmaster = cu_upload(master, n * sizeof(float));
    float *dm = cu_upload(zero, n * sizeof(float)), *dv = cu_upload(zero, n * sizeof(float));
    gpt_bf16 *dgrads = cu_upload_bf16(zero, n), *dparams = dev_alloc(n * sizeof(gpt_bf16));
    wait_uploads();
    size_t nspans;
    gpt_cu_span *spans = dev_spans_all(n, &nspans);
    OK(gpt_cu_adamw(&ctx, dparams, dmaster, dgrads, dm, dv, spans, nspans, 0, 1, 0.0f, B1, B2,
                    EPS, 0.0f, 1.0f, 77, err));
    gpt_bf16 *p1 = download_raw(dparams, n);
    OK(gpt_cu_adamw(&ctx, dparams, dmaster, dgrads, dm, dv, spans, nspans, 0, 2, 0.0f, B1, B2,
                    EPS, 0.0f, 1.0f, 77, err));
    gpt_bf16 *p2 = download_raw(dparams, n);
    cu_download(after, dmaster, n * sizeof(float));
    assert_memory_equal(after, master, n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        sr_mean_check(p1 + k * SR_COPIES, xs[k]);
        sr_mean_check(p2 + k * SR_COPIES, xs[k]);
    }
    /* another step, other bits: expected 2 p (1 - p) = 42% differ */
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += p1[i] != p2[i];
    print_message("    %zu of %zu differ between steps 1 and 2\n", differ, n);
    assert_true(differ > n / 5);

    /* the host rounding: exact bf16 values, infinities and NaN stay */
    const float exact[4] = {0.0f, 1.0f, -2.5f, 0x1p-120f};
    for (uint64_t i = 0; i < 1000; i++)
        for (int k = 0; k < 4; k++)
            assert_int_equal(gpt_cu_sr_round_host(exact[k], 5, 1, i),
                             gpt_bf16_from_float(exact[k]));
    assert_int_equal(gpt_cu_sr_round_host(INFINITY, 5, 1, 3), 0x7f80);
    assert_int_equal(gpt_cu_sr_round_host(-INFINITY, 5, 1, 3), 0xff80);
    gpt_bf16 nan_bits = gpt_cu_sr_round_host(NAN, 5, 1, 3);
    assert_true((nan_bits & 0x7f80) == 0x7f80 && (nan_bits & 0x7f) != 0);

    CU_CHECK(cudaFree(spans));
    CU_CHECK(cudaFree(dmaster));
    CU_CHECK(cudaFree(dm));
    CU_CHECK(cudaFree(dv));
    CU_CHECK(cudaFree(dgrads));
    CU_CHECK(cudaFree(dparams));
    free(master), free(zero), free(after), free(p1), free(p2);
}

/* ================= sum of squares ================= */

#define SUMSQ_TOL 1e-5

/* gpt_cu_sumsq of the device values x (n of them) twice: against want, and
 * the two results bitwise equal. */
static void sumsq_check(const char *what, const gpt_bf16 *dx, size_t n, double want) {
    double *dout = dev_alloc(sizeof(double)), got[2], poison = 123.0;
    for (int r = 0; r < 2; r++) {
        CU_CHECK(cudaMemcpy(dout, &poison, sizeof poison, cudaMemcpyHostToDevice));
        wait_uploads();
        OK(gpt_cu_sumsq(&ctx, dout, dx, n, err));
        cu_download(&got[r], dout, sizeof(double));
    }
    double rel = want != 0.0 ? fabs(got[0] - want) / want : fabs(got[0]);
    char label[96];
    snprintf(label, sizeof label, "sumsq %s (n=%zu)", what, n);
    check(label, rel, SUMSQ_TOL);
    assert_memory_equal(&got[0], &got[1], sizeof(double));
    CU_CHECK(cudaFree(dout));
}

static void sumsq_case(size_t n, size_t off, unsigned seed) {
    float *x = cu_host(n + off);
    cu_fill(x, n + off, 2.0f, &seed);
    double want = 0.0;
    for (size_t i = off; i < off + n; i++) want += (double)x[i] * x[i];
    gpt_bf16 *dx = cu_upload_bf16(x, n + off);
    sumsq_check(off ? "misaligned" : "random", dx + off, n, want);
    CU_CHECK(cudaFree(dx));
    free(x);
}

static void test_sumsq(void **state) {
    (void)state;
    sumsq_case(0, 0, 41u);
    sumsq_case(1, 0, 42u);
    sumsq_case(1000, 0, 43u);
    sumsq_case(1001, 1, 44u);
    sumsq_case(10000003, 0, 45u);

    /* more values than blocks with a partial each: all bytes 0x3f, so every
     * value is the bf16 0x3f3f = 0.74609375 */
    size_t n = ((size_t)1 << 27) + 5;
    gpt_bf16 *dx = dev_alloc(n * sizeof(gpt_bf16));
    CU_CHECK(cudaMemset(dx, 0x3f, n * sizeof(gpt_bf16)));
    double val = gpt_bf16_to_float(0x3f3f);
    sumsq_check("constant", dx, n, (double)n * val * val);
    CU_CHECK(cudaFree(dx));

    gpt_cu_ctx small;
    OK(gpt_cu_ctx_create(&small, NULL, 16, err));
    assert_int_equal(gpt_cu_sumsq(&small, NULL, NULL, 10, err), GPT_ERR_CONFIG);
    gpt_cu_ctx_free(&small);
}

int main(int argc, char **argv) {
    (void)argc;
    cu_test_require_gpu(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu),          cmocka_unit_test(test_classifier),
        cmocka_unit_test(test_adamw_nearest), cmocka_unit_test(test_adamw_stochastic),
        cmocka_unit_test(test_adamw_spans),
        cmocka_unit_test(test_sr_unbiased),   cmocka_unit_test(test_sumsq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

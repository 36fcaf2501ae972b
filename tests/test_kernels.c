/* test_kernels.c: unit tests of the CPU kernels declared in model/cpu/kernels.h.
 *
 * The kernels are the numerical core of a training step and the reference the
 * CUDA twin is held to, so each one is checked here on its own, against the
 * header as the contract:
 *  - every forward against a naive double-precision loop written below;
 *  - every backward against central finite differences, taken in double
 *    through those naive forwards, of L = sum(out * R) for a fixed random R;
 *  - the "backward ADDS into gradients" contract, by running each backward
 *    once into zeroed buffers and once into pre-filled ones (old + new);
 *  - the header's edge cases: exact zeros above the causal diagonal, padded
 *    vocabulary columns holding 1e4, dlogits aliasing logits, NULL dinp and
 *    dbias, two consecutive AdamW steps with weight decay and grad_scale,
 *    and a sum of squares whose bits do not depend on the thread count (as
 *    adamw.c promises).
 * Every test runs twice: on awkward small sizes (N=7, C=30, OC=45, NH=3 so
 * hs=10, B=2, T=5, V=13 of Vp=16) and on sizes that take the OpenMP and BLAS
 * paths (N=130, C=96, OC=130, NH=4, T=65, V=1000 of Vp=1024). Inputs come from
 * a seeded splitmix64 generator, so a failure reproduces.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define FWD_TOL 1e-5   /* float kernel vs double reference */
#define BWD_TOL 1e-4   /* float backward vs double finite differences */
#define ADD_TOL 1e-6   /* pre-filled backward vs old + backward into zeros */
#define FD_H 1e-4      /* central difference step, in double */
#define FD_FULL 8192   /* tensors up to this size are differenced entry by entry */
#define FD_SAMPLES 128 /* larger ones at this many random entries */

typedef struct { int B, T, C, NH, OC, V, Vp, N; } shape;
static shape SMALL = {.B = 2, .T = 5, .C = 30, .NH = 3, .OC = 45, .V = 13, .Vp = 16, .N = 7};
static shape LARGE = {.B = 2, .T = 65, .C = 96, .NH = 4, .OC = 130, .V = 1000, .Vp = 1024, .N = 130};

/* ---- seeded PRNG (splitmix64) ---- */
static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [-1, 1), exactly representable in float. */
static float urand(void) { return (float)(rng_next() >> 40) * 0x1p-23f - 1.0f; }
static int irand(int n) { return (int)(rng_next() % (uint64_t)n); }

/* ---- scratch memory, freed after each test ---- */
#define MAX_ALLOCS 64
static void *allocs[MAX_ALLOCS];
static int nallocs;
static void *alloc(size_t bytes) {
    assert_true(nallocs < MAX_ALLOCS);
    void *p = calloc(1, bytes ? bytes : 1);
    assert_non_null(p);
    return allocs[nallocs++] = p;
}
static float *fbuf(long n) { return alloc(sizeof(float) * (size_t)n); }
static double *dbuf(long n) { return alloc(sizeof(double) * (size_t)n); }
static float *frand(long n, float scale) {
    float *x = fbuf(n);
    for (long i = 0; i < n; i++) x[i] = scale * urand();
    return x;
}
static float *fcopy(const float *x, long n) {
    return memcpy(fbuf(n), x, sizeof(float) * (size_t)n);
}
static double *to_d(const float *x, long n) {
    double *y = dbuf(n);
    for (long i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static double dot(const double *a, const double *b, long n) {
    double s = 0.0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static int setup(void **state) { (void)state; rng_state = 20240611u; return 0; }
static int teardown(void **state) {
    (void)state;
    while (nallocs > 0) free(allocs[--nallocs]);
    return 0;
}

/* ---- comparisons ---- */
/* ||a - b|| / max(||b||, 1e-12) */
static double rel_err(const float *a, const double *b, long n) {
    double num = 0.0, den = 0.0;
    for (long i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}
static void check(const char *what, double err, double tol) {
    print_message("    %-34s rel err %.2e (tol %.0e)\n", what, err, tol);
    assert_true(err <= tol); /* also fails on NaN */
}
/* got came from a backward into a buffer holding old; fresh from the same
 * backward into zeros. The contract says got = old + fresh. */
static void check_adds(const char *what, const float *got, const float *old,
                       const float *fresh, long n) {
    double *want = dbuf(n);
    for (long i = 0; i < n; i++) want[i] = (double)old[i] + fresh[i];
    check(what, rel_err(got, want, n), ADD_TOL);
}

/* Central differences of loss(ctx) with respect to x[idx[k]] (x is what loss
 * reads) against the analytic gradient g: relative error by norm. */
typedef double (*loss_fn)(void *ctx);
static double fd_err_at(loss_fn loss, void *ctx, double *x, const float *g,
                        const long *idx, long count) {
    double num = 0.0, den = 0.0;
    for (long k = 0; k < count; k++) {
        long i = idx[k];
        double xi = x[i];
        x[i] = xi + FD_H;
        double lp = loss(ctx);
        x[i] = xi - FD_H;
        double lm = loss(ctx);
        x[i] = xi;
        double fd = (lp - lm) / (2.0 * FD_H), d = g[i] - fd;
        num += d * d;
        den += fd * fd;
    }
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}
/* The same over every entry of x, or FD_SAMPLES random ones when x is large. */
static double fd_err(loss_fn loss, void *ctx, double *x, const float *g, long n) {
    long count = n <= FD_FULL ? n : FD_SAMPLES;
    long *idx = alloc(sizeof(long) * (size_t)count);
    for (long k = 0; k < count; k++) idx[k] = n <= FD_FULL ? k : (long)(rng_next() % (uint64_t)n);
    return fd_err_at(loss, ctx, x, g, idx, count);
}

/* ================= encoder ================= */
typedef struct { int B, T, C; const int *tok; double *wte, *wpe, *out; const double *R; } enc_ctx;
static void enc_ref(double *out, const int *tok, const double *wte, const double *wpe,
                    int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                out[((long)b * T + t) * C + c] = wte[(long)tok[b * T + t] * C + c] + wpe[(long)t * C + c];
}
static double enc_loss(void *p) {
    enc_ctx *e = p;
    enc_ref(e->out, e->tok, e->wte, e->wpe, e->B, e->T, e->C);
    return dot(e->out, e->R, (long)e->B * e->T * e->C);
}

static void test_encoder(void **state) {
    const shape *s = *state;
    int B = s->B, T = s->T, C = s->C, V = s->V < 50 ? s->V : 50; /* small table: full FD */
    long n = (long)B * T * C;
    int *tok = alloc(sizeof(int) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++) tok[i] = irand(V);
    tok[2] = tok[0];     /* repeated token within a sequence ... */
    tok[T + 1] = tok[0]; /* ... and across the batch: scatter-add */
    tok[T - 1] = V - 1;  /* last row of the table */
    float *wte = frand((long)V * C, 1.0f), *wpe = frand((long)T * C, 1.0f);
    float *out = frand(n, 9.0f); /* garbage: must be overwritten */
    gpt_encoder_forward(out, tok, wte, wpe, B, T, C);
    enc_ctx e = {B, T, C, tok, to_d(wte, (long)V * C), to_d(wpe, (long)T * C), dbuf(n), NULL};
    enc_ref(e.out, tok, e.wte, e.wpe, B, T, C);
    check("encoder fwd out", rel_err(out, e.out, n), FWD_TOL);

    float *R = frand(n, 1.0f);
    e.R = to_d(R, n);
    float *dwte = fbuf((long)V * C), *dwpe = fbuf((long)T * C);
    gpt_encoder_backward(dwte, dwpe, R, tok, B, T, C);
    check("encoder bwd dwte (FD)", fd_err(enc_loss, &e, e.wte, dwte, (long)V * C), BWD_TOL);
    check("encoder bwd dwpe (FD)", fd_err(enc_loss, &e, e.wpe, dwpe, (long)T * C), BWD_TOL);

    float *ote = frand((long)V * C, 1.0f), *ope = frand((long)T * C, 1.0f);
    float *gte = fcopy(ote, (long)V * C), *gpe = fcopy(ope, (long)T * C);
    gpt_encoder_backward(gte, gpe, R, tok, B, T, C);
    check_adds("encoder bwd adds dwte", gte, ote, dwte, (long)V * C);
    check_adds("encoder bwd adds dwpe", gpe, ope, dwpe, (long)T * C);
}

/* ================= layernorm ================= */
typedef struct { int N, C; double *x, *w, *b, *out, *mean, *rstd; const double *R; } ln_ctx;
static void ln_ref(ln_ctx *l) {
    int C = l->C;
    for (int i = 0; i < l->N; i++) {
        const double *x = l->x + (long)i * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        double r = 1.0 / sqrt(v / C + 1e-5); /* biased variance */
        for (int c = 0; c < C; c++) l->out[(long)i * C + c] = (x[c] - m) * r * l->w[c] + l->b[c];
        l->mean[i] = m;
        l->rstd[i] = r;
    }
}
static double ln_loss(void *p) {
    ln_ctx *l = p;
    ln_ref(l);
    return dot(l->out, l->R, (long)l->N * l->C);
}

static void test_layernorm(void **state) {
    const shape *s = *state;
    int N = s->N, C = s->C;
    long n = (long)N * C;
    float *x = frand(n, 2.0f), *w = frand(C, 0.5f), *b = frand(C, 0.5f);
    for (long i = 0; i < n; i++) x[i] += 0.5f + (float)(i / C % 3); /* nonzero row means */
    for (int c = 0; c < C; c++) x[C + c] = 0.01f * urand(); /* row 1: variance ~ eps */
    for (int c = 0; c < C; c++) w[c] += 1.0f;
    float *out = frand(n, 9.0f), *mean = fbuf(N), *rstd = fbuf(N);
    gpt_layernorm_forward(out, mean, rstd, x, w, b, N, C);
    ln_ctx l = {N, C, to_d(x, n), to_d(w, C), to_d(b, C), dbuf(n), dbuf(N), dbuf(N), NULL};
    ln_ref(&l);
    check("layernorm fwd out", rel_err(out, l.out, n), FWD_TOL);
    check("layernorm fwd mean", rel_err(mean, l.mean, N), FWD_TOL);
    check("layernorm fwd rstd", rel_err(rstd, l.rstd, N), FWD_TOL);

    float *R = frand(n, 1.0f);
    l.R = to_d(R, n);
    float *dx = fbuf(n), *dw = fbuf(C), *db = fbuf(C);
    gpt_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C);
    check("layernorm bwd dinp (FD)", fd_err(ln_loss, &l, l.x, dx, n), BWD_TOL);
    check("layernorm bwd dw (FD)", fd_err(ln_loss, &l, l.w, dw, C), BWD_TOL);
    check("layernorm bwd db (FD)", fd_err(ln_loss, &l, l.b, db, C), BWD_TOL);

    float *ox = frand(n, 1.0f), *ow = frand(C, 1.0f), *ob = frand(C, 1.0f);
    float *gx = fcopy(ox, n), *gw = fcopy(ow, C), *gb = fcopy(ob, C);
    gpt_layernorm_backward(gx, gw, gb, R, x, w, mean, rstd, N, C);
    check_adds("layernorm bwd adds dinp", gx, ox, dx, n);
    check_adds("layernorm bwd adds dw", gw, ow, dw, C);
    check_adds("layernorm bwd adds db", gb, ob, db, C);
}

/* ================= matmul ================= */
typedef struct { int N, C, OC; double *x, *w, *bias, *out; const double *R; } mm_ctx;
static void mm_ref(mm_ctx *m) {
    for (int i = 0; i < m->N; i++)
        for (int o = 0; o < m->OC; o++) {
            const double *x = m->x + (long)i * m->C, *w = m->w + (long)o * m->C;
            double s = m->bias ? m->bias[o] : 0.0;
            for (int c = 0; c < m->C; c++) s += x[c] * w[c];
            m->out[(long)i * m->OC + o] = s;
        }
}
static double mm_loss(void *p) {
    mm_ctx *m = p;
    mm_ref(m);
    return dot(m->out, m->R, (long)m->N * m->OC);
}

static void test_matmul(void **state) {
    const shape *s = *state;
    int N = s->N, C = s->C, OC = s->OC;
    long nx = (long)N * C, nw = (long)OC * C, no = (long)N * OC;
    float *x = frand(nx, 1.0f), *w = frand(nw, 0.5f), *bias = frand(OC, 1.0f);
    mm_ctx m = {N, C, OC, to_d(x, nx), to_d(w, nw), NULL, dbuf(no), NULL};
    float *out = frand(no, 9.0f);
    gpt_matmul_forward(out, x, w, NULL, N, C, OC);
    mm_ref(&m);
    check("matmul fwd no bias", rel_err(out, m.out, no), FWD_TOL);
    m.bias = to_d(bias, OC);
    out = frand(no, 9.0f);
    gpt_matmul_forward(out, x, w, bias, N, C, OC);
    mm_ref(&m);
    check("matmul fwd bias", rel_err(out, m.out, no), FWD_TOL);

    float *R = frand(no, 1.0f);
    m.R = to_d(R, no);
    float *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf(OC);
    gpt_matmul_backward(dx, dw, db, R, x, w, N, C, OC);
    check("matmul bwd dinp (FD)", fd_err(mm_loss, &m, m.x, dx, nx), BWD_TOL);
    check("matmul bwd dw (FD)", fd_err(mm_loss, &m, m.w, dw, nw), BWD_TOL);
    check("matmul bwd dbias (FD)", fd_err(mm_loss, &m, m.bias, db, OC), BWD_TOL);

    float *ox = frand(nx, 1.0f), *ow = frand(nw, 1.0f), *ob = frand(OC, 1.0f);
    float *gx = fcopy(ox, nx), *gw = fcopy(ow, nw), *gb = fcopy(ob, OC);
    gpt_matmul_backward(gx, gw, gb, R, x, w, N, C, OC);
    check_adds("matmul bwd adds dinp", gx, ox, dx, nx);
    check_adds("matmul bwd adds dw", gw, ow, dw, nw);
    check_adds("matmul bwd adds dbias", gb, ob, db, OC);

    /* NULL dinp: dw and dbias as before. NULL dbias: dinp and dw as before. */
    gw = fcopy(ow, nw);
    gb = fcopy(ob, OC);
    gpt_matmul_backward(NULL, gw, gb, R, x, w, N, C, OC);
    check_adds("matmul bwd dinp=NULL dw", gw, ow, dw, nw);
    check_adds("matmul bwd dinp=NULL dbias", gb, ob, db, OC);
    gx = fcopy(ox, nx);
    gw = fcopy(ow, nw);
    gpt_matmul_backward(gx, gw, NULL, R, x, w, N, C, OC);
    check_adds("matmul bwd dbias=NULL dinp", gx, ox, dx, nx);
    check_adds("matmul bwd dbias=NULL dw", gw, ow, dw, nw);
}

/* ================= attention ================= */
typedef struct { int B, T, C, NH; double *qkv, *out, *att; const double *R; } att_ctx;
static void att_ref(att_ctx *a) {
    int T = a->T, C = a->C, NH = a->NH, hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const double *q = a->qkv + ((long)b * T + i) * 3 * C + h * hs;
                double *p = a->att + (((long)b * NH + h) * T + i) * T, maxv = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) { /* causal: keys up to the query */
                    const double *k = a->qkv + ((long)b * T + j) * 3 * C + C + h * hs;
                    double dotqk = 0.0;
                    for (int c = 0; c < hs; c++) dotqk += q[c] * k[c];
                    p[j] = dotqk * scale;
                    maxv = fmax(maxv, p[j]);
                }
                for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - maxv));
                for (int j = 0; j < T; j++) p[j] = j <= i ? p[j] / sum : 0.0;
                for (int c = 0; c < hs; c++) {
                    double o = 0.0;
                    for (int j = 0; j <= i; j++)
                        o += p[j] * a->qkv[((long)b * T + j) * 3 * C + 2 * C + h * hs + c];
                    a->out[((long)b * T + i) * C + h * hs + c] = o;
                }
            }
}
static double att_loss(void *p) {
    att_ctx *a = p;
    att_ref(a);
    return dot(a->out, a->R, (long)a->B * a->T * a->C);
}

static void test_attention(void **state) {
    const shape *s = *state;
    int B = s->B, T = s->T, C = s->C, NH = s->NH;
    long nq = (long)B * T * 3 * C, no = (long)B * T * C, na = (long)B * NH * T * T;
    float *qkv = frand(nq, 1.5f), *out = frand(no, 9.0f), *att = frand(na, 9.0f);
    gpt_attention_forward(out, att, qkv, B, T, C, NH);
    att_ctx a = {B, T, C, NH, to_d(qkv, nq), dbuf(no), dbuf(na), NULL};
    att_ref(&a);
    check("attention fwd att", rel_err(att, a.att, na), FWD_TOL);
    check("attention fwd out", rel_err(out, a.out, no), FWD_TOL);
    long above = 0;
    for (long r = 0; r < (long)B * NH * T; r++)
        for (int j = (int)(r % T) + 1; j < T; j++) above += att[r * T + j] != 0.0f;
    assert_int_equal(above, 0); /* exactly 0 above the diagonal */

    float *R = frand(no, 1.0f);
    a.R = to_d(R, no);
    float *dqkv = fbuf(nq);
    gpt_attention_backward(dqkv, R, qkv, att, B, T, C, NH);
    check("attention bwd dqkv (FD)", fd_err(att_loss, &a, a.qkv, dqkv, nq), BWD_TOL);
    float *old = frand(nq, 1.0f), *g = fcopy(old, nq);
    gpt_attention_backward(g, R, qkv, att, B, T, C, NH);
    check_adds("attention bwd adds dqkv", g, old, dqkv, nq);
}

/* ================= gelu, residual ================= */
typedef struct { long n; double *x, *out; const double *R; } gelu_ctx;
static void gelu_ref(gelu_ctx *g) {
    const double k = sqrt(2.0 / 3.14159265358979323846);
    for (long i = 0; i < g->n; i++) {
        double x = g->x[i];
        g->out[i] = 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
}
static double gelu_loss(void *p) {
    gelu_ctx *g = p;
    gelu_ref(g);
    return dot(g->out, g->R, g->n);
}

static void test_gelu(void **state) {
    const shape *s = *state;
    long n = (long)s->N * s->C;
    float *x = frand(n, 4.0f), *out = frand(n, 9.0f);
    x[0] = -9.0f; /* tails: gelu ~ 0 and ~ x */
    x[1] = 9.0f;
    x[2] = 0.0f;
    gpt_gelu_forward(out, x, (int)n);
    gelu_ctx g = {n, to_d(x, n), dbuf(n), NULL};
    gelu_ref(&g);
    check("gelu fwd", rel_err(out, g.out, n), FWD_TOL);

    float *R = frand(n, 1.0f), *dx = fbuf(n);
    g.R = to_d(R, n);
    gpt_gelu_backward(dx, x, R, (int)n);
    check("gelu bwd dinp (FD)", fd_err(gelu_loss, &g, g.x, dx, n), BWD_TOL);
    float *old = frand(n, 1.0f), *gx = fcopy(old, n);
    gpt_gelu_backward(gx, x, R, (int)n);
    check_adds("gelu bwd adds dinp", gx, old, dx, n);
}

static void test_residual(void **state) {
    const shape *s = *state;
    long n = (long)s->N * s->C + 1;
    float *a = frand(n, 1.0f), *b = frand(n, 3.0f), *out = frand(n, 9.0f);
    double *want = dbuf(n);
    for (long i = 0; i < n; i++) want[i] = (double)a[i] + b[i];
    gpt_residual_forward(out, a, b, (int)n);
    check("residual fwd", rel_err(out, want, n), 1e-7); /* float add rounds correctly */
}

/* ================= softmax cross-entropy ================= */
typedef struct { int N, V, Vp; const int *tgt; double *x, *loss, *lse, dloss; } xent_ctx;
static void xent_ref(xent_ctx *e) {
    for (int i = 0; i < e->N; i++) {
        const double *x = e->x + (long)i * e->Vp;
        double maxv = -INFINITY, sum = 0.0;
        for (int v = 0; v < e->V; v++) maxv = fmax(maxv, x[v]); /* only the first V */
        for (int v = 0; v < e->V; v++) sum += exp(x[v] - maxv);
        e->lse[i] = maxv + log(sum);
        e->loss[i] = e->lse[i] - x[e->tgt[i]];
    }
}
/* Mean loss, as the backward's dloss = 1/N assumes. */
static double xent_loss(void *p) {
    xent_ctx *e = p;
    xent_ref(e);
    double s = 0.0;
    for (int i = 0; i < e->N; i++) s += e->loss[i];
    return s * e->dloss;
}

static void test_softmax_xent(void **state) {
    const shape *s = *state;
    int N = s->N, V = s->V, Vp = s->Vp;
    long n = (long)N * Vp;
    float *x = frand(n, 3.0f);
    for (long i = 0; i < n; i++)
        if (i % Vp >= V) x[i] = 1e4f; /* padding: must get no probability */
    int *tgt = alloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) tgt[i] = irand(V);
    tgt[0] = V - 1;
    tgt[N - 1] = 0;
    float *loss = frand(N, 9.0f), *lse = frand(N, 9.0f);
    gpt_softmax_xent_forward(loss, lse, x, tgt, N, V, Vp);
    float dloss = 1.0f / (float)N;
    xent_ctx e = {N, V, Vp, tgt, to_d(x, n), dbuf(N), dbuf(N), dloss};
    xent_ref(&e);
    check("xent fwd losses", rel_err(loss, e.loss, N), FWD_TOL);
    check("xent fwd lse", rel_err(lse, e.lse, N), FWD_TOL);

    float *dx = frand(n, 9.0f); /* garbage: overwritten, not added to */
    gpt_softmax_xent_backward(dx, x, lse, tgt, dloss, N, V, Vp);
    check("xent bwd dlogits (FD)", fd_err(xent_loss, &e, e.x, dx, n), BWD_TOL);
    long *at_tgt = alloc(sizeof(long) * (size_t)N); /* random samples rarely hit these */
    for (int i = 0; i < N; i++) at_tgt[i] = (long)i * Vp + tgt[i];
    check("xent bwd dlogits at targets (FD)", fd_err_at(xent_loss, &e, e.x, dx, at_tgt, N), BWD_TOL);
    long pad_nonzero = 0;
    for (long i = 0; i < n; i++) pad_nonzero += i % Vp >= V && dx[i] != 0.0f;
    assert_int_equal(pad_nonzero, 0);

    float *inplace = fcopy(x, n); /* dlogits aliasing logits */
    gpt_softmax_xent_backward(inplace, inplace, lse, tgt, dloss, N, V, Vp);
    assert_memory_equal(inplace, dx, sizeof(float) * (size_t)n);
}

/* ================= adamw, sumsq ================= */
static void test_adamw(void **state) {
    const shape *s = *state;
    long n = (long)s->N * s->C + 1;
    const float lr = 0.05f, b1 = 0.9f, b2 = 0.999f, eps = 1e-3f, wd = 0.1f, gs = 0.5f;
    float *p = frand(n, 1.0f), *m = fbuf(n), *v = fbuf(n);
    double *pw = dbuf(n), *mw = dbuf(n), *vw = dbuf(n), *dp = dbuf(n);
    float *step = fbuf(n);
    for (int t = 1; t <= 2; t++) {
        /* small gradients, so that eps and grad_scale matter in the update */
        float *g = frand(n, 0.01f);
        for (long i = 0; i < n; i++) { /* the header's formula, from this step's state */
            double gi = (double)g[i] * gs;
            mw[i] = b1 * (double)m[i] + (1.0 - b1) * gi;
            vw[i] = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
            double mh = mw[i] / (1.0 - pow(b1, t)), vh = vw[i] / (1.0 - pow(b2, t));
            dp[i] = -(lr * mh / (sqrt(vh) + eps) + (double)lr * wd * p[i]);
            pw[i] = p[i];
        }
        gpt_adamw_kernel(p, g, m, v, n, t, lr, b1, b2, eps, wd, gs);
        for (long i = 0; i < n; i++) step[i] = (float)((double)p[i] - pw[i]);
        check(t == 1 ? "adamw t=1 m" : "adamw t=2 m", rel_err(m, mw, n), FWD_TOL);
        check(t == 1 ? "adamw t=1 v" : "adamw t=2 v", rel_err(v, vw, n), FWD_TOL);
        /* 1e-4: the kernel's float 1 - powf(b2, t) is only good to ~3e-5 */
        check(t == 1 ? "adamw t=1 param step" : "adamw t=2 param step", rel_err(step, dp, n), 1e-4);
    }
}

static void test_sumsq(void **state) {
    const shape *s = *state;
    long n = (long)s->N * s->C * 11 + 3; /* large: several 64Ki chunks */
    float *x = frand(n, 2.0f);
    double want = 0.0;
    for (long i = 0; i < n; i++) want += (double)x[i] * x[i];
    double got = gpt_sumsq(x, n);
    check("sumsq", fabs(got - want) / want, 1e-12);
    assert_true(gpt_sumsq(x, 0) == 0.0);
    int threads = omp_get_max_threads(); /* same bits for any thread count */
    omp_set_num_threads(3);
    double got3 = gpt_sumsq(x, n);
    omp_set_num_threads(threads);
    assert_memory_equal(&got, &got3, sizeof(double));
}

#define SIZED(f) \
    {#f "_small", f, setup, teardown, &SMALL}, {#f "_large", f, setup, teardown, &LARGE}

int main(void) {
    const struct CMUnitTest tests[] = {
        SIZED(test_encoder),   SIZED(test_layernorm), SIZED(test_matmul),
        SIZED(test_attention), SIZED(test_gelu),      SIZED(test_residual),
        SIZED(test_softmax_xent), SIZED(test_adamw),  SIZED(test_sumsq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_units_nccl.c: the host-side logic of ZeRO stages 2 and 3 on the GPU
 * (comm/units_nccl.c), on CPUs, under real mpirun with three ranks.
 *
 * units_nccl.c is linked here against fakes instead of CUDA, NCCL and the
 * CUDA model: "device" memory is host memory, kernels on the model's stream
 * run at once, and the collectives (over MPI) are deferred until someone
 * waits for their mark, the latest a real stream could run them. A slot
 * read before its collective was awaited, or reused while a reduction still
 * needs it, therefore shows wrong values. A fake model tells the unit events
 * in the CUDA model's order; its "kernels" check the gathered weights of
 * every unit they use, check that every gradient slot starts at zero, and
 * write known gradients. After each step the gradient shard must hold the
 * sum over micro-steps of the means over ranks, each rounded to bf16 as the
 * device rounds it, the weights a unit gathers must be the step's, and no
 * unit may stay bound. Units cross shard boundaries, and the embedding
 * unit's gradient is written twice (the tied head, then the encoder). At
 * stage 3 a step gathers each unit once for its first pass, and each later
 * pass reuses the embeddings and the two units the pass before ended with. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bf16_host.h"
#include "comm_internal.h"
#include "comm_nccl.h"

enum { U = 6, LAYERS = 4, MICRO = 2, STEPS = 3, MAXOPS = 256 };
static const size_t UNIT_LEN[U] = {208, 48, 48, 48, 48, 16}; /* emb, 4 layers, lnf */
static int g_rank, g_world;

/* ---- the fake CUDA runtime ---------------------------------------------- */

cudaError_t cudaMalloc(void **p, size_t n) {
    *p = calloc(1, n);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    (void)s;
    memset(p, v, n);
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) {
    (void)e;
    return "fake CUDA error";
}

/* ---- the fake NCCL backend: a queue of deferred collectives -------------- */

typedef struct {
    int gather; /* 1: allgatherv from mine, 0: reduce_scatterv_mean */
    char *buf;
    const char *mine;
    int counts[8], displs[8];
} op;

struct comm_nccl {
    op q[MAXOPS];
    int queued, done; /* ops enqueued, ops run */
    int gathers;      /* allgathervs enqueued */
};
typedef struct {
    int upto; /* the ops before the mark */
} mark;

static comm_nccl g_fake;

static void run_op(const op *o) {
    for (int k = 0; k < g_world; k++) {
        if (o->counts[k] <= 0) continue;
        uint16_t *p = (uint16_t *)o->buf + o->displs[k];
        int n = o->counts[k];
        if (o->gather) {
            if (k == g_rank) memcpy(p, o->mine, (size_t)n * 2);
            MPI_Bcast(p, n, MPI_UINT16_T, k, MPI_COMM_WORLD);
            continue;
        }
        float *f = malloc((size_t)n * sizeof *f), *sum = malloc((size_t)n * sizeof *sum);
        assert_true(f && sum);
        for (int i = 0; i < n; i++) f[i] = from_bf16(p[i]);
        MPI_Reduce(f, sum, n, MPI_FLOAT, MPI_SUM, k, MPI_COMM_WORLD);
        if (k == g_rank)
            for (int i = 0; i < n; i++) p[i] = to_bf16(sum[i] / (float)g_world);
        free(f);
        free(sum);
    }
}

static void run_until(comm_nccl *c, int upto) {
    while (c->done < upto) run_op(&c->q[c->done++]);
}

static comm_status enqueue(comm_nccl *c, int gather, const void *mine, void *buf,
                           const int *counts, const int *displs) {
    assert_true(c->queued < MAXOPS && g_world <= 8);
    op *o = &c->q[c->queued++];
    c->gathers += gather;
    o->gather = gather;
    o->buf = buf;
    o->mine = mine;
    memcpy(o->counts, counts, (size_t)g_world * sizeof(int));
    memcpy(o->displs, displs, (size_t)g_world * sizeof(int));
    return COMM_OK;
}

comm_status comm_nccl_reduce_scatterv_mean(comm_nccl *c, void *buf, const int *counts,
                                           const int *displs, comm_nccl_type t,
                                           comm_error_t err) {
    (void)err;
    assert_int_equal(t, COMM_NCCL_BF16);
    return enqueue(c, 0, NULL, buf, counts, displs);
}
comm_status comm_nccl_allgatherv(comm_nccl *c, const void *mine, void *buf, const int *counts,
                                 const int *displs, comm_nccl_type t, comm_error_t err) {
    (void)err;
    assert_int_equal(t, COMM_NCCL_BF16);
    return enqueue(c, 1, mine, buf, counts, displs);
}
comm_status comm_nccl_after(comm_nccl *c, void *stream, comm_error_t err) {
    (void)c; (void)stream; (void)err; /* the fake's kernels are done already */
    return COMM_OK;
}
comm_status comm_nccl_mark_new(comm_nccl *c, void **m, comm_error_t err) {
    (void)c; (void)err;
    *m = calloc(1, sizeof(mark));
    return *m ? COMM_OK : COMM_ERR;
}
comm_status comm_nccl_mark(comm_nccl *c, void *m, comm_error_t err) {
    (void)err;
    ((mark *)m)->upto = c->queued;
    return COMM_OK;
}
comm_status comm_nccl_await(comm_nccl *c, void *m, void *stream, comm_error_t err) {
    (void)stream; (void)err;
    run_until(c, ((mark *)m)->upto);
    return COMM_OK;
}
void comm_nccl_mark_free(void *m) { free(m); }

/* ---- the fake CUDA model ------------------------------------------------- */

struct gpt_cuda {
    size_t ulo[U + 1];
    size_t lo, hi;
    uint16_t *params; /* the shard at stage 3, else the whole table */
    uint16_t *grads;  /* the shard */
    uint16_t *up[U], *ug[U];
    gpt_cuda_unit_fn hook;
    void *ctx;
    int stage;
};

void *gpt_cuda_stream(gpt_cuda *g) { return g; }
int gpt_cuda_num_units(const gpt_cuda *g) { (void)g; return U; }
void gpt_cuda_unit_range(const gpt_cuda *g, int u, size_t *lo, size_t *hi) {
    *lo = g->ulo[u];
    *hi = g->ulo[u + 1];
}
void gpt_cuda_set_unit_hook(gpt_cuda *g, gpt_cuda_unit_fn fn, void *ctx) {
    g->hook = fn;
    g->ctx = ctx;
}
void gpt_cuda_bind_params(gpt_cuda *g, int u, void *dev) { g->up[u] = dev; }
void gpt_cuda_bind_grads(gpt_cuda *g, int u, void *dev) { g->ug[u] = dev; }
void *gpt_cuda_dev_params(gpt_cuda *g) { return g->params; }
void *gpt_cuda_dev_grads(gpt_cuda *g) { return g->grads; }
gpt_status gpt_cuda_accumulate(gpt_cuda *g, void *dst, const void *src, size_t n,
                               gpt_error_t err) {
    (void)g; (void)err;
    uint16_t *d = dst;
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++) d[i] = to_bf16(from_bf16(d[i]) + from_bf16(s[i]));
    return GPT_OK;
}

/* ---- the test's model: values, passes ------------------------------------ */

static float weight(size_t i, int step) { return (float)((i * 7 + (size_t)step * 3) % 13) - 6; }
static float grad(int rank, int micro, size_t i) {
    return (float)((i + 5 * (size_t)rank + 3 * (size_t)micro) % 9) - 4;
}

static void tell(gpt_cuda *g, gpt_unit_event ev, int u, int bwd) {
    gpt_error_t err = "";
    if (g->hook(g->ctx, g, ev, u, bwd, err)) fail_msg("unit %d event %d: %s", u, ev, err);
}

/* What a kernel sees of unit u's weights right after NEED_PARAMS. */
static void use_params(gpt_cuda *g, int u, int step, int bwd) {
    tell(g, GPT_NEED_PARAMS, u, bwd);
    assert_non_null(g->up[u]);
    for (size_t i = g->ulo[u]; i < g->ulo[u + 1]; i++)
        if (from_bf16(g->up[u][i - g->ulo[u]]) != weight(i, step))
            fail_msg("step %d unit %d element %zu: gathered %g, want %g", step, u, i,
                     (double)from_bf16(g->up[u][i - g->ulo[u]]), (double)weight(i, step));
}

/* Adds the micro-step's gradient of unit u, in `part` of 2 for the
 * embeddings (the tied head, then the encoder). */
static void add_grads(gpt_cuda *g, int u, int micro, int part) {
    for (size_t i = g->ulo[u]; i < g->ulo[u + 1]; i++) {
        float v = grad(g_rank, micro, i) * (u == 0 ? 0.5f : 1.0f);
        uint16_t *p = &g->ug[u][i - g->ulo[u]];
        if (part == 0) assert_true(*p == 0); /* a fresh slot is clear */
        *p = to_bf16(from_bf16(*p) + v);
    }
}

static void forward(gpt_cuda *g, int step) {
    use_params(g, 0, step, 0);
    for (int u = 1; u < U; u++) {
        use_params(g, u, step, 0);
        tell(g, GPT_DONE_PARAMS, u, 0);
    }
    tell(g, GPT_DONE_PARAMS, 0, 0);
}

static void backward(gpt_cuda *g, int step, int micro) {
    int order[U - 1] = {U - 1};
    for (int l = 0; l < LAYERS; l++) order[1 + l] = LAYERS - l;
    use_params(g, 0, step, 1);
    tell(g, GPT_NEED_GRADS, 0, 1);
    add_grads(g, 0, micro, 0);
    tell(g, GPT_DONE_PARAMS, 0, 1);
    for (int k = 0; k < U - 1; k++) {
        int u = order[k];
        use_params(g, u, step, 1);
        tell(g, GPT_NEED_GRADS, u, 1);
        add_grads(g, u, micro, 0);
        tell(g, GPT_DONE_PARAMS, u, 1);
        tell(g, GPT_GRADS_READY, u, 1);
    }
    add_grads(g, 0, micro, 1);
    tell(g, GPT_GRADS_READY, 0, 1);
}

/* The shard's expected gradient: per micro-step the bf16 of the mean of the
 * ranks' bf16 gradients, added into the bf16 shard in micro-step order. */
static float expected_grad(size_t i) {
    float acc = 0.0f;
    for (int k = 0; k < MICRO; k++) {
        float sum = 0.0f;
        for (int r = 0; r < g_world; r++) sum += grad(r, k, i); /* halves add up exactly */
        acc = from_bf16(to_bf16(acc + from_bf16(to_bf16(sum / (float)g_world))));
    }
    return acc;
}

static void set_weights(gpt_cuda *g, int step, size_t total) {
    size_t a = g->stage >= 3 ? g->lo : 0, b = g->stage >= 3 ? g->hi : total;
    for (size_t i = a; i < b; i++) g->params[i - a] = to_bf16(weight(i, step));
}

static void run_stage(int stage) {
    size_t total = 0;
    gpt_cuda g = {.stage = stage};
    for (int u = 0; u < U; u++) g.ulo[u + 1] = (total += UNIT_LEN[u]);
    size_t S = ((total + (size_t)g_world - 1) / (size_t)g_world + 15) / 16 * 16;
    comm_zero z = {.stage = stage, .rank = g_rank, .world = g_world, .total = total, .shard = S};
    z.counts = calloc((size_t)g_world, sizeof(int));
    z.displs = calloc((size_t)g_world, sizeof(int));
    assert_true(z.counts && z.displs);
    for (int r = 0; r < g_world; r++) {
        size_t lo = r * S < total ? r * S : total, hi = lo + S < total ? lo + S : total;
        z.counts[r] = (int)(hi - lo);
        z.displs[r] = (int)lo;
    }
    z.lo = g.lo = (size_t)z.displs[g_rank];
    z.hi = g.hi = g.lo + (size_t)z.counts[g_rank];
    g.params = calloc(total, 2);
    g.grads = calloc(total, 2);
    assert_true(g.params && g.grads);
    for (int u = 0; u < U; u++) g.up[u] = stage >= 3 ? NULL : g.params + g.ulo[u];
    memset(&g_fake, 0, sizeof g_fake);
    comm_nccl_units *units = NULL;
    comm_error_t err = "";
    if (comm_nccl_units_new(&units, &g_fake, &z, &g, err)) fail_msg("%s", err);
    set_weights(&g, 0, total);
    for (int step = 0; step < STEPS; step++) {
        int gathers = g_fake.gathers;
        memset(g.grads, 0, (g.hi - g.lo) * 2);
        for (int k = 0; k < MICRO; k++) {
            forward(&g, step);
            backward(&g, step, k);
            if (comm_nccl_units_micro_done(units, err)) fail_msg("%s", err);
        }
        forward(&g, step); /* an evaluation pass between steps changes nothing */
        run_until(&g_fake, g_fake.queued); /* comm_nccl_wait */
        for (size_t i = g.lo; i < g.hi; i++)
            if (from_bf16(g.grads[i - g.lo]) != expected_grad(i))
                fail_msg("stage %d step %d element %zu: shard holds %g, want %g", stage, step,
                         i, (double)from_bf16(g.grads[i - g.lo]), (double)expected_grad(i));
        for (int u = 0; u < U; u++) assert_null(g.ug[u]);
        /* 2 * MICRO + 1 passes: U gathers, then U - 3 per pass. */
        if (stage >= 3) assert_int_equal(g_fake.gathers - gathers, U + 2 * MICRO * (U - 3));
        if (comm_nccl_units_drop_params(units, err)) fail_msg("%s", err);
        set_weights(&g, step + 1, total); /* the update (and at stage 2 the allgather) */
    }
    comm_nccl_units_free(units);
    free(g.params);
    free(g.grads);
    free(z.counts);
    free(z.displs);
}

static void test_stage2(void **state) {
    (void)state;
    run_stage(2);
}

static void test_stage3(void **state) {
    (void)state;
    run_stage(3);
}

/* The dry run's count: three bf16 slots (the embeddings', two of the largest
 * other unit), twice at stage 3, none below stage 2. */
static void test_slot_bytes(void **state) {
    (void)state;
    size_t ulo[U + 1] = {0};
    for (int u = 0; u < U; u++) ulo[u + 1] = ulo[u] + UNIT_LEN[u];
    comm_zero z = {.stage = 1};
    assert_int_equal(comm_nccl_units_bytes(&z, ulo, U), 0);
    z.stage = 2;
    assert_int_equal(comm_nccl_units_bytes(&z, ulo, U), (208 + 2 * 48) * 2);
    z.stage = 3;
    assert_int_equal(comm_nccl_units_bytes(&z, ulo, U), (208 + 2 * 48) * 4);
}

/* Models past MPI's int range. GPT-2 1558M on one rank: a GPU run (no host
 * gradients) is accepted, a CPU run refused with a message. The split of a
 * range near the end of a 3e9-parameter model over 4 ranks, whose shard
 * offsets do not fit in an int. */
static void test_large_models(void **state) {
    (void)state;
    float *no_units[2] = {NULL, NULL}; /* a model of no layers has 2 units */
    gpt_model m;
    memset(&m, 0, sizeof m);
    m.unit_grads = no_units;
    m.table.total = 1557686400;
    comm_ctx one = {.rank = 0, .world = 1, .local_rank = 0, .local_world = 1};
    comm_zero z;
    comm_error_t err = "";
    if (comm_zero_init(&z, &m, 0, 0, 0, &one, err)) fail_msg("%s", err);
    assert_true(z.lo == 0 && z.hi == m.table.total);
    comm_zero_free(&z);
    assert_int_equal(comm_zero_init(&z, &m, 0, 0, 1, &one, err), COMM_ERR);
    assert_non_null(strstr(err, "exceeds MPI's int counts"));

    const size_t S = 750000000, a = 2900000000u;
    comm_zero big = {.rank = 3, .world = 4, .total = 4 * S, .shard = S};
    int counts[4], displs[4];
    assert_true(comm_zero_split(&big, a, a + 100, counts, displs) == a - 3 * S);
    assert_true(counts[0] == 0 && counts[1] == 0 && counts[2] == 0 && counts[3] == 100);
    assert_int_equal(displs[3], 0);
    big.rank = 2; /* a range across the shards of ranks 2 and 3 */
    assert_true(comm_zero_split(&big, 3 * S - 10, 3 * S + 5, counts, displs) == S - 10);
    assert_true(counts[2] == 10 && counts[3] == 5 && displs[3] == 10);
}

int main(void) {
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stage2),
        cmocka_unit_test(test_stage3),
        cmocka_unit_test(test_slot_bytes),
        cmocka_unit_test(test_large_models),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}

/* test_nccl.c: the NCCL backend of the gradient collectives (comm/comm_nccl.h).
 *
 * Needs a GPU: without one every GPU test is skipped and the program exits
 * 77, which ctest reports as skipped rather than passed, so a machine without
 * a GPU never claims to have checked NCCL. The one test that runs everywhere
 * is the clean failure of init when no GPU is visible. The bf16 collectives,
 * the uneven gather with its marks (ZeRO-3) and the GPU gradient buckets
 * (ZeRO stages 0 and 1) are checked the same way; ZeRO 2-3's unit slots are
 * checked end to end by cuda_train. Run as a one-rank MPI world the collectives are identities; the
 * expected values are written for any world size, so `mpirun -np 2` on a
 * two-GPU node checks real means. With TEST_NCCL_STALL set it runs only
 * the stall case of tests/nccl_watchdog.sh (see stall_in_setup). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cuda_runtime.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bf16_host.h"
#include "comm_nccl.h"

#define N 1000           /* floats per rank in each test buffer */
#define TIMEOUT_S 60.0   /* far above any small collective */

static int g_rank, g_world, g_local_rank, g_gpu;
static comm_nccl *g_nccl;

/* Value rank r holds at index i: distinct per rank, so a mean or a gather
 * that mixes up ranks or offsets shows. */
static float value(int r, size_t i) { return (float)(i % 97 + 1) * (float)(r + 1); }

static float mean_value(size_t i) {
    double sum = 0;
    for (int r = 0; r < g_world; r++) sum += value(r, i);
    return (float)(sum / g_world);
}

static float *upload(const float *host, size_t n) {
    float *dev = NULL;
    assert_int_equal(cudaMalloc((void **)&dev, n * sizeof *dev), cudaSuccess);
    assert_int_equal(cudaMemcpy(dev, host, n * sizeof *dev, cudaMemcpyHostToDevice),
                     cudaSuccess);
    /* A copy from pageable memory may return before its DMA ends, and
     * NCCL's stream does not wait for the legacy stream. */
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    return dev;
}

static void download(float *host, const float *dev, size_t n) {
    assert_int_equal(cudaMemcpy(host, dev, n * sizeof *host, cudaMemcpyDeviceToHost),
                     cudaSuccess);
}

static float *filled(size_t n, size_t offset) {
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) h[i] = value(g_rank, offset + i);
    return h;
}

static void wait_ok(const char *op) {
    comm_error_t err = "";
    if (comm_nccl_wait(g_nccl, TIMEOUT_S, op, 0, err) != COMM_OK) fail_msg("%s", err);
}

static void assert_close(float got, float want, size_t i) {
    if (fabsf(got - want) > 1e-5f * fabsf(want))
        fail_msg("index %zu: got %g, want %g", i, (double)got, (double)want);
}

static int group_setup(void **state) {
    (void)state;
    if (!g_gpu) return 0;
    comm_error_t err = "";
    if (comm_nccl_init(&g_nccl, g_rank, g_world, g_local_rank, TIMEOUT_S, err) != COMM_OK) {
        fprintf(stderr, "test_nccl: comm_nccl_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    comm_nccl_free(g_nccl);
    g_nccl = NULL;
    return 0;
}

static void test_init_fails_without_gpu(void **state) {
    (void)state;
    if (g_gpu) skip(); /* test_init_bad_local_rank covers this path on a GPU */
    static char sentinel;
    comm_nccl *c = (comm_nccl *)&sentinel; /* init must set it to NULL */
    comm_error_t err = "";
    assert_int_equal(comm_nccl_init(&c, g_rank, g_world, 0, TIMEOUT_S, err), COMM_ERR);
    assert_null(c);
    char want[COMM_ERRLEN];
    snprintf(want, sizeof want, "rank %d: local rank 0 but only 0 GPUs visible", g_rank);
    assert_string_equal(err, want);
}

/* NCCL_COMM_BLOCKING=1 would make the communicator blocking, out of the
 * watchdog's reach: refused on every rank, with or without a GPU. */
static void test_init_refuses_blocking(void **state) {
    (void)state;
    comm_nccl *c = NULL;
    comm_error_t err = "";
    setenv("NCCL_COMM_BLOCKING", "1", 1);
    comm_status st = comm_nccl_init(&c, g_rank, g_world, 0, TIMEOUT_S, err);
    unsetenv("NCCL_COMM_BLOCKING");
    assert_int_equal(st, COMM_ERR);
    assert_null(c);
    char want[COMM_ERRLEN];
    snprintf(want, sizeof want, "rank %d: NCCL_COMM_BLOCKING=1 would make", g_rank);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("got: %s", err);
}

/* With one GPU visible every local rank gets it (a launcher that gives
 * each rank its own GPU). Ranks that then share it are refused: that is
 * tests/cuda_train.sh's check, since two ranks on one GPU cannot set up
 * this program's communicator in the first place. */
static void test_init_one_visible_gpu(void **state) {
    (void)state;
    int count = 0;
    if (!g_gpu || g_world != 1 || cudaGetDeviceCount(&count) != cudaSuccess || count != 1)
        skip();
    comm_nccl *c = NULL;
    comm_error_t err = "";
    if (comm_nccl_init(&c, g_rank, g_world, g_local_rank + 3, TIMEOUT_S, err))
        fail_msg("%s", err);
    assert_int_equal(comm_nccl_device(c), 0);
    comm_nccl_free(c);
}

static void test_init_bad_local_rank(void **state) {
    (void)state;
    int count = 0;
    if (!g_gpu || cudaGetDeviceCount(&count) != cudaSuccess || count < 2) skip();
    comm_nccl *c = NULL;
    comm_error_t err = "";
    assert_int_equal(comm_nccl_init(&c, g_rank, g_world, count, TIMEOUT_S, err), COMM_ERR);
    assert_null(c);
    char want[COMM_ERRLEN];
    snprintf(want, sizeof want, "rank %d: local rank %d but only %d GPUs visible", g_rank,
             count, count);
    assert_string_equal(err, want);
}

static void test_allreduce_mean(void **state) {
    (void)state;
    if (!g_gpu) skip();
    float *h = filled(N, 0);
    float *d = upload(h, N);
    comm_error_t err = "";
    if (comm_nccl_allreduce_mean(g_nccl, d, N, COMM_NCCL_F32, err)) fail_msg("%s", err);
    wait_ok("allreduce");
    download(h, d, N);
    for (size_t i = 0; i < N; i++) assert_close(h[i], mean_value(i), i);
    cudaFree(d);
    free(h);
}

static void test_reduce_scatter_mean(void **state) {
    (void)state;
    if (!g_gpu) skip();
    float *h = filled((size_t)g_world * N, 0);
    float *send = upload(h, (size_t)g_world * N);
    float *recv = upload(h, N); /* contents overwritten */
    comm_error_t err = "";
    if (comm_nccl_reduce_scatter_mean(g_nccl, send, recv, N, COMM_NCCL_F32, err) != COMM_OK)
        fail_msg("%s", err);
    wait_ok("reduce_scatter");
    download(h, recv, N);
    for (size_t i = 0; i < N; i++)
        assert_close(h[i], mean_value((size_t)g_rank * N + i), i);
    cudaFree(send);
    cudaFree(recv);
    free(h);
}

static void test_allgather(void **state) {
    (void)state;
    if (!g_gpu) skip();
    size_t total = (size_t)g_world * N;
    float *h = filled(total, 0);
    float *send = upload(h, N);
    float *recv = upload(h, total);
    memset(h, 0, total * sizeof *h);
    comm_error_t err = "";
    if (comm_nccl_allgather(g_nccl, send, recv, N, COMM_NCCL_F32, err)) fail_msg("%s", err);
    wait_ok("allgather");
    download(h, recv, total);
    for (size_t i = 0; i < total; i++) assert_close(h[i], value((int)(i / N), i % N), i);
    cudaFree(send);
    cudaFree(recv);
    free(h);
}

static void test_broadcast(void **state) {
    (void)state;
    if (!g_gpu) skip();
    float *h = filled(N, 0);
    float *d = upload(h, N);
    comm_error_t err = "";
    if (comm_nccl_broadcast(g_nccl, d, N, COMM_NCCL_F32, 0, err) != COMM_OK) fail_msg("%s", err);
    wait_ok("broadcast");
    download(h, d, N);
    for (size_t i = 0; i < N; i++) assert_close(h[i], value(0, i), i);
    cudaFree(d);
    free(h);
}

/* ---- bf16 and the GPU gradient buckets ----------------------------------- */

/* Small integers are exact in bf16, whose bits are then the float's top
 * half, and so are their means over a power of two of ranks. NCCL's bf16
 * mean multiplies by 1/W rounded to bf16 (bf16(1/3) = 0.333984), so over
 * other world sizes it is exact only to bf16's precision. */
static float small(int r, size_t i) { return (float)(i % 7 + 1) * (float)(r + 1); }

static float small_mean(size_t i) {
    return (float)(i % 7 + 1) * (float)(g_world + 1) / 2.0f;
}

/* assert_close for a bf16 mean of small(): exact over 2^k ranks. */
static void assert_mean(float got, size_t i) {
    int pow2 = (g_world & (g_world - 1)) == 0;
    float want = small_mean(i);
    if (fabsf(got - want) > (pow2 ? 1e-5f : 0x1p-6f) * fabsf(want))
        fail_msg("index %zu: got %g, want %g (%d ranks)", i, (double)got, (double)want,
                 g_world);
}

/* n bf16 values small(rank, i) on the device. */
static uint16_t *bf16_filled(size_t n) {
    uint16_t *h = malloc(n * sizeof *h), *d = NULL;
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) h[i] = to_bf16(small(g_rank, i));
    assert_int_equal(cudaMalloc((void **)&d, n * sizeof *d), cudaSuccess);
    assert_int_equal(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice), cudaSuccess);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess); /* as upload() */
    free(h);
    return d;
}

static float *bf16_download(const uint16_t *d, size_t n) {
    uint16_t *h = malloc(n * sizeof *h);
    float *f = malloc(n * sizeof *f);
    assert_true(h && f);
    assert_int_equal(cudaMemcpy(h, d, n * sizeof *h, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < n; i++) f[i] = from_bf16(h[i]);
    free(h);
    return f;
}

static void test_bf16_allreduce_mean(void **state) {
    (void)state;
    if (!g_gpu) skip();
    uint16_t *d = bf16_filled(N);
    comm_error_t err = "";
    if (comm_nccl_allreduce_mean(g_nccl, d, N, COMM_NCCL_BF16, err)) fail_msg("%s", err);
    wait_ok("allreduce bf16");
    float *h = bf16_download(d, N);
    for (size_t i = 0; i < N; i++) assert_mean(h[i], i);
    cudaFree(d);
    free(h);
}

/* Per rank, a range of N - 10 (r + 1) elements at r * N + 5: uneven, with
 * gaps between the ranges. */
static void uneven_parts(int **counts, int **displs) {
    *counts = calloc((size_t)g_world, sizeof(int));
    *displs = calloc((size_t)g_world, sizeof(int));
    assert_true(*counts && *displs);
    for (int r = 0; r < g_world; r++) {
        (*counts)[r] = N - 10 * (r + 1);
        (*displs)[r] = r * N + 5;
    }
}

/* Uneven ranges with gaps: each rank's own range holds the mean, the rest
 * of its buffer its own values. */
static void test_reduce_scatterv(void **state) {
    (void)state;
    if (!g_gpu) skip();
    size_t total = (size_t)g_world * N;
    int *counts, *displs;
    uneven_parts(&counts, &displs);
    uint16_t *d = bf16_filled(total);
    comm_error_t err = "";
    if (comm_nccl_reduce_scatterv_mean(g_nccl, d, counts, displs, COMM_NCCL_BF16, err))
        fail_msg("%s", err);
    wait_ok("reduce_scatterv");
    float *h = bf16_download(d, total);
    size_t lo = (size_t)displs[g_rank], hi = lo + (size_t)counts[g_rank];
    for (size_t i = 0; i < total; i++) {
        if (i >= lo && i < hi) assert_mean(h[i], i);
        else assert_close(h[i], small(g_rank, i), i);
    }
    cudaFree(d);
    free(h);
    free(counts);
    free(displs);
}

/* ZeRO-1's weights: rank r's block of S sits at r * S and is gathered in
 * place. */
static void test_bf16_allgather_in_place(void **state) {
    (void)state;
    if (!g_gpu) skip();
    size_t S = N, total = (size_t)g_world * S;
    uint16_t *d = bf16_filled(total);
    comm_error_t err = "";
    if (comm_nccl_allgather(g_nccl, d + (size_t)g_rank * S, d, S, COMM_NCCL_BF16, err))
        fail_msg("%s", err);
    wait_ok("allgather bf16");
    float *h = bf16_download(d, total);
    /* Every rank filled its whole buffer with small(own rank, i). */
    for (size_t i = 0; i < total; i++) assert_close(h[i], small((int)(i / S), i), i);
    cudaFree(d);
    free(h);
}

static void CUDART_CB nap(void *ms) {
    struct timespec t = {0, (long)(intptr_t)ms * 1000000L};
    nanosleep(&t, NULL);
}

/* ZeRO-3's gather of a unit: uneven parts with gaps, each from a separate
 * source buffer (the owner's shard); the gaps keep this rank's values. The
 * communication stream is held back first (behind a 200 ms nap on another
 * stream), so a compute stream sees the gathered values only if it really
 * awaits the mark. */
static void test_allgatherv_marked(void **state) {
    (void)state;
    if (!g_gpu) skip();
    size_t total = (size_t)g_world * N;
    int *counts, *displs;
    uneven_parts(&counts, &displs);
    uint16_t *d = bf16_filled(total), *mine = bf16_filled(total), *copy = NULL;
    assert_int_equal(cudaMalloc((void **)&copy, total * 2), cudaSuccess);
    cudaStream_t s;
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    void *mark = NULL;
    comm_error_t err = "";
    const uint16_t *src = mine + displs[g_rank] + 3; /* any place, not the target's */
    cudaStream_t held;
    assert_int_equal(cudaStreamCreateWithFlags(&held, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaLaunchHostFunc(held, nap, (void *)(intptr_t)200), cudaSuccess);
    if (comm_nccl_after(g_nccl, held, err) || comm_nccl_mark_new(g_nccl, &mark, err) ||
        comm_nccl_allgatherv(g_nccl, src, d, counts, displs, COMM_NCCL_BF16, err) ||
        comm_nccl_mark(g_nccl, mark, err) || comm_nccl_await(g_nccl, mark, s, err))
        fail_msg("%s", err);
    assert_int_equal(cudaMemcpyAsync(copy, d, total * 2, cudaMemcpyDeviceToDevice, s),
                     cudaSuccess);
    assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
    wait_ok("allgatherv");
    float *h = bf16_download(copy, total);
    for (size_t i = 0; i < total; i++) {
        int owner = -1;
        for (int r = 0; r < g_world; r++)
            if (i >= (size_t)displs[r] && i < (size_t)(displs[r] + counts[r])) owner = r;
        assert_close(h[i], owner < 0 ? small(g_rank, i) : small(owner, i + 3), i);
    }
    comm_nccl_mark_free(mark);
    cudaStreamDestroy(s);
    cudaStreamDestroy(held);
    cudaFree(d);
    cudaFree(mine);
    cudaFree(copy);
    free(h);
    free(counts);
    free(displs);
}

/* The buckets at stages 0 and 1: ranges reported descending from a compute
 * stream, in 100-element buckets, over shards cut as comm_zero cuts them. */
static void bucket_round(int stage) {
    size_t total = 1000, S = ((total + g_world - 1) / g_world + 15) / 16 * 16;
    comm_zero z = {.stage = stage, .rank = g_rank, .world = g_world, .total = total,
                   .shard = S};
    z.counts = calloc((size_t)g_world, sizeof(int));
    z.displs = calloc((size_t)g_world, sizeof(int));
    assert_true(z.counts && z.displs);
    for (int r = 0; r < g_world; r++) {
        size_t lo = r * S < total ? r * S : total, hi = lo + S < total ? lo + S : total;
        z.counts[r] = (int)(hi - lo);
        z.displs[r] = (int)lo;
        if (r == g_rank) {
            z.lo = lo;
            z.hi = hi;
        }
    }
    uint16_t *d = bf16_filled(total);
    cudaStream_t compute;
    assert_int_equal(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
    comm_nccl_bucketer *b = NULL;
    comm_error_t err = "";
    if (comm_nccl_bucketer_new(&b, g_nccl, &z, d, COMM_NCCL_BF16, 200, compute, err))
        fail_msg("%s", err);
    comm_nccl_bucketer_arm(b);
    static const size_t cuts[] = {1000, 900, 700, 650, 0};
    for (int k = 0; k + 1 < 5; k++)
        if (comm_nccl_bucketer_ready(b, cuts[k + 1], cuts[k], err)) fail_msg("%s", err);
    if (comm_nccl_bucketer_finish(b, err)) fail_msg("%s", err);
    wait_ok("buckets");
    assert_int_equal(cudaStreamSynchronize(compute), cudaSuccess);
    float *h = bf16_download(d, total);
    for (size_t i = 0; i < total; i++) {
        if (stage == 0 || (i >= z.lo && i < z.hi)) assert_mean(h[i], i);
        else assert_close(h[i], small(g_rank, i), i);
    }
    comm_nccl_bucketer_free(b);
    cudaStreamDestroy(compute);
    cudaFree(d);
    free(h);
    free(z.counts);
    free(z.displs);
}

static void test_buckets_stage0(void **state) {
    (void)state;
    if (!g_gpu) skip();
    bucket_round(0);
}

static void test_buckets_stage1(void **state) {
    (void)state;
    if (!g_gpu) skip();
    bucket_round(1);
}

/* The stall mode of tests/nccl_watchdog.sh (TEST_NCCL_STALL=T): rank 1
 * stops itself where it would enter comm_nccl_init, and the others must not
 * wait for it forever. With a GPU or without, rank 0 next waits for it in
 * set-up's first agreement, where the watchdog ends the job after T s; the
 * return below is reached only if nothing did. */
static int stall_in_setup(double timeout_s) {
    comm_set_timeout(timeout_s);
    if (g_rank == 1) raise(SIGSTOP);
    comm_nccl *c = NULL;
    comm_error_t err = "";
    comm_status st = comm_nccl_init(&c, g_rank, g_world, g_local_rank, timeout_s, err);
    fprintf(stderr, "test_nccl: rank %d: comm_nccl_init returned %d (%s) with a peer "
            "stopped\n", g_rank, (int)st, err);
    comm_nccl_free(c);
    return 1;
}

int main(void) {
    comm_ctx ctx;
    comm_error_t err = "";
    if (comm_init(&ctx, 0, err) != COMM_OK) {
        fprintf(stderr, "test_nccl: %s\n", err);
        return 1;
    }
    g_rank = ctx.rank;
    g_world = ctx.world;
    g_local_rank = ctx.local_rank;
    const char *stall = getenv("TEST_NCCL_STALL");
    if (stall) return stall_in_setup(atof(stall));
    g_gpu = comm_nccl_available();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fails_without_gpu),
        cmocka_unit_test(test_init_refuses_blocking),
        cmocka_unit_test(test_init_one_visible_gpu),
        cmocka_unit_test(test_init_bad_local_rank),
        cmocka_unit_test(test_allreduce_mean),
        cmocka_unit_test(test_reduce_scatter_mean),
        cmocka_unit_test(test_allgather),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_bf16_allreduce_mean),
        cmocka_unit_test(test_reduce_scatterv),
        cmocka_unit_test(test_bf16_allgather_in_place),
        cmocka_unit_test(test_allgatherv_marked),
        cmocka_unit_test(test_buckets_stage0),
        cmocka_unit_test(test_buckets_stage1),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    comm_finalize(&ctx);
    if (failed) return 1;
    if (!g_gpu) {
        printf("test_nccl: skipped: no GPU\n");
        return 77;
    }
    return 0;
}

/* test_nccl.c: the NCCL backend of the gradient collectives (comm/comm_nccl.h).
 *
 * Needs a GPU: without one every GPU test is skipped and the program exits
 * 77, which ctest reports as skipped rather than passed, so a machine without
 * a GPU never claims to have checked NCCL. The one test that runs everywhere
 * is the clean failure of init when no GPU is visible. Run as a one-rank MPI
 * world the collectives are identities; the expected values are written for
 * any world size, so `mpirun -np 2` on a two-GPU node checks real means. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    if (comm_nccl_init(&g_nccl, g_rank, g_world, g_local_rank, err) != COMM_OK) {
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
    assert_int_equal(comm_nccl_init(&c, g_rank, g_world, 0, err), COMM_ERR);
    assert_null(c);
    char want[COMM_ERRLEN];
    snprintf(want, sizeof want, "rank %d: local rank 0 but only 0 GPUs visible", g_rank);
    assert_string_equal(err, want);
}

static void test_init_bad_local_rank(void **state) {
    (void)state;
    if (!g_gpu) skip();
    int count = 0;
    assert_int_equal(cudaGetDeviceCount(&count), cudaSuccess);
    comm_nccl *c = NULL;
    comm_error_t err = "";
    assert_int_equal(comm_nccl_init(&c, g_rank, g_world, count, err), COMM_ERR);
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
    if (comm_nccl_allreduce_mean(g_nccl, d, N, err) != COMM_OK) fail_msg("%s", err);
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
    if (comm_nccl_reduce_scatter_mean(g_nccl, send, recv, N, err) != COMM_OK)
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
    if (comm_nccl_allgather(g_nccl, send, recv, N, err) != COMM_OK) fail_msg("%s", err);
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
    if (comm_nccl_broadcast(g_nccl, d, N, 0, err) != COMM_OK) fail_msg("%s", err);
    wait_ok("broadcast");
    download(h, d, N);
    for (size_t i = 0; i < N; i++) assert_close(h[i], value(0, i), i);
    cudaFree(d);
    free(h);
}

/* The rank's index on its node, as comm_init finds it. */
static int local_rank(void) {
    MPI_Comm node;
    int r;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
}

int main(void) {
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    g_local_rank = local_rank();
    g_gpu = comm_nccl_available();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fails_without_gpu),
        cmocka_unit_test(test_init_bad_local_rank),
        cmocka_unit_test(test_allreduce_mean),
        cmocka_unit_test(test_reduce_scatter_mean),
        cmocka_unit_test(test_allgather),
        cmocka_unit_test(test_broadcast),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    MPI_Finalize();
    if (failed) return 1;
    if (!g_gpu) {
        printf("test_nccl: skipped: no GPU\n");
        return 77;
    }
    return 0;
}

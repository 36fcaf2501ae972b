/* test_cudnn_plan.c: whether cuDNN accepts the attention graphs of
 * model/cuda/attention_cudnn.c for an H100, on a machine with no GPU.
 *
 * cuDNN (9.8+) builds execution plans against a description of a device,
 * here an H100 SXM's properties as cuDNN's JSON. Its engines need a
 * libcuda.so.1 to load; ctest points LD_LIBRARY_PATH at the toolkit's stub
 * driver, with which a plan goes through the heuristics, the engine's
 * support checks and the kernel's compilation, and fails only at loading the
 * compiled kernel (cuLibraryLoadData). So a pass here means: cuDNN's fused
 * attention engine recognised the graph and compiled a kernel for sm_90. It
 * says nothing about the numbers, which test_cu_attention checks on a GPU.
 * The test can fail: a head size cuDNN's engine refuses (hs 7) must be
 * refused before compilation. It also checks which cuDNN releases and
 * sequence lengths the backward refuses (gpt_cudnn_backward_ok). Skips (77) in a build without cuDNN and where
 * no libcuda.so.1 can be loaded at all. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include "kernels_cuda.h"

/* cudaDevAttr values of an H100 SXM5 80GB (compute capability 9.0, 132 SMs).
 * cuDNN names its keys in libcudnn_graph; it reports the first one missing. */
static const char *h100 =
    "{\"deviceName\":\"NVIDIA H100 80GB HBM3\",\"deviceVer\":900,\"driverVer\":13000,"
    "\"cudaDeviceId\":0,\"multiProcessorCount\":132,\"maxGridSize\":[2147483647,65535,65535],"
    "\"maxBlockSize\":[1024,1024,64],\"regsPerBlock\":65536,\"warpSize\":32,"
    "\"maxSharedMemoryPerBlock\":49152,\"maxSharedMemoryPerBlockOptin\":232448,"
    "\"reservedSharedMemoryPerBlock\":1024,\"maxRegistersPerSM\":65536,\"maxCtasPerSM\":32,"
    "\"maxThreadsPerBlock\":1024,\"maxThreadsPerSM\":2048,\"pciDeviceId\":0,"
    "\"isTccDriver\":0,\"supportCoopLaunch\":1,\"smClockRateKHz\":1980000,"
    "\"memClockRateKHz\":2619000,\"l2CacheSize\":52428800,\"totalGlobalMem\":85045460992}";

/* Accepted: the plan finalised (a real driver), or it failed only where the
 * stub driver cannot load the kernel cuDNN compiled. */
static int accepted(gpt_status st, const char *err) {
    return st == GPT_OK || strstr(err, "cuLibraryLoadData") != NULL;
}

static void expect_accepted(int backward, int B, int T, int C, int NH) {
    gpt_error_t err = "";
    size_t ws = 0;
    gpt_status st = gpt_cudnn_attention_check(h100, backward, B, T, C, NH, &ws, err);
    if (!accepted(st, err))
        fail_msg("%s B=%d T=%d C=%d NH=%d not accepted: %s", backward ? "backward" : "forward",
                 B, T, C, NH, err);
}

static void test_gpt2_124M(void **state) {
    (void)state;
    expect_accepted(0, 4, 1024, 768, 12);
    expect_accepted(1, 4, 1024, 768, 12);
}

/* The benchmark's other model, and tests/cuda_train.sh's d2 at 8 x 64. */
static void test_gpt2_350M_and_d2(void **state) {
    (void)state;
    expect_accepted(0, 4, 1024, 1024, 16);
    expect_accepted(1, 4, 1024, 1024, 16);
    expect_accepted(0, 8, 64, 128, 2);
    expect_accepted(1, 8, 64, 128, 2);
}

static void test_hs128_tail(void **state) {
    (void)state;
    expect_accepted(0, 1, 200, 256, 2);
    expect_accepted(1, 1, 200, 256, 2);
}

static void test_refused_head_size(void **state) {
    (void)state;
    gpt_error_t err = "";
    size_t ws = 0;
    gpt_status st = gpt_cudnn_attention_check(h100, 0, 2, 64, 84, 12, &ws, err);
    assert_int_not_equal(st, GPT_OK);
    if (accepted(st, err)) fail_msg("head size 7 was compiled: %s", err);
    assert_non_null(strstr(err, "hs=7"));
}

/* The releases whose backward cudnn-frontend refuses or patches with a
 * padding mask are refused, naming the version and T; the ones loaded here
 * (9.19) and 9.15.1 on are not. */
static void test_backward_releases(void **state) {
    (void)state;
    gpt_error_t err = "";
    assert_int_equal(gpt_cudnn_backward_ok(91000, 1024, err), 0);
    assert_non_null(strstr(err, "the backward of cuDNN 9.10.0 has known bugs"));
    assert_int_equal(gpt_cudnn_backward_ok(91001, 1024, err), 0);
    assert_int_equal(gpt_cudnn_backward_ok(91002, 1024, err), 1);
    assert_int_equal(gpt_cudnn_backward_ok(91500, 1024, err), 1);
    assert_int_equal(gpt_cudnn_backward_ok(91500, 64, err), 0);
    assert_non_null(strstr(err, "cuDNN 9.15.0's backward needs a sequence length that is a "
                                "multiple of 128, not 64"));
    assert_int_equal(gpt_cudnn_backward_ok(90800, 200, err), 0);
    assert_int_equal(gpt_cudnn_backward_ok(91501, 64, err), 1);
    assert_int_equal(gpt_cudnn_backward_ok(92000, 257, err), 1);
    assert_int_equal(gpt_cudnn_backward_ok(0, 64, err), 1); /* 9.19 here */
}

int main(int argc, char **argv) {
    (void)argc;
    gpt_error_t err = "";
    size_t ws = 0;
    gpt_status st = gpt_cudnn_attention_check(h100, 0, 1, 64, 128, 2, &ws, err);
    if (st == GPT_ERR_CONFIG || strstr(err, "PREREQUISITE_MISSING")) {
        printf("%s: skipped: %s\n", argv[0], err);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_124M),
        cmocka_unit_test(test_gpt2_350M_and_d2),
        cmocka_unit_test(test_hs128_tail),
        cmocka_unit_test(test_refused_head_size),
        cmocka_unit_test(test_backward_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

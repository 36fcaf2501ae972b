/* test_checkpoint.c: model files: a save/load round trip is bitwise exact,
 * no .tmp file is left behind, a config mismatch is refused, and every kind
 * of bad file (not HDF5, truncated, a foreign HDF5 file, a version from the
 * future, a missing tensor, a tensor of the wrong shape, a flipped bit in
 * the data) is a clear error naming the file; the run directory's latest
 * pointer and pruning. (Parallel checkpoints: tests/resume.sh.) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <hdf5.h>
#include "checkpoint.h"

static char dir[] = "/tmp/gptrain_ckpt_XXXXXX";

static void path_of(char *out, const char *name) {
    snprintf(out, 256, "%s/%s", dir, name);
}

static void make_model(gpt_model *m, int vocab, uint64_t seed) {
    gpt_config c = {2, 3, 30, 12, vocab, 0};
    gpt_error_t err;
    assert_int_equal(gpt_model_create(m, &c, 1, 4, err), GPT_OK);
    gpt_init_weights(m, seed);
}

static void test_round_trip(void **state) {
    (void)state;
    char path[256], tmp[300];
    path_of(path, "m.h5");
    gpt_model a, b;
    make_model(&a, 77, 5);
    ckpt_error_t err;
    assert_int_equal(ckpt_save_model(path, &a, 12, NULL, err), CKPT_OK);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
    gpt_config cfg;
    assert_int_equal(ckpt_read_config(path, &cfg, err), CKPT_OK);
    assert_memory_equal(&cfg, &a.cfg, sizeof(cfg));
    gpt_error_t gerr;
    assert_int_equal(gpt_model_create(&b, &cfg, 1, 4, gerr), GPT_OK);
    assert_int_equal(ckpt_load_model(path, &b, err), CKPT_OK);
    assert_memory_equal(a.params, b.params, a.table.total * sizeof(float));
    /* Saving again over the same path replaces the file atomically. */
    gpt_init_weights(&a, 6);
    assert_int_equal(ckpt_save_model(path, &a, 13, NULL, err), CKPT_OK);
    assert_int_equal(ckpt_load_model(path, &b, err), CKPT_OK);
    assert_memory_equal(a.params, b.params, a.table.total * sizeof(float));
    gpt_model_free(&a);
    gpt_model_free(&b);
}

static void test_bad_files(void **state) {
    (void)state;
    char path[256], junk[256], missing[256];
    path_of(path, "v77.h5");
    path_of(junk, "junk.h5");
    path_of(missing, "missing.h5");
    gpt_model a, other;
    make_model(&a, 77, 1);
    make_model(&other, 78, 1);
    ckpt_error_t err;
    assert_int_equal(ckpt_save_model(path, &a, 1, NULL, err), CKPT_OK);
    assert_int_equal(ckpt_load_model(path, &other, err), CKPT_ERR_FORMAT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "model differs"));
    FILE *f = fopen(junk, "w");
    fputs("not hdf5 at all", f);
    fclose(f);
    gpt_config cfg;
    assert_int_equal(ckpt_read_config(junk, &cfg, err), CKPT_ERR_FORMAT);
    assert_non_null(strstr(err, junk));
    assert_int_equal(ckpt_read_config(missing, &cfg, err), CKPT_ERR_IO);
    assert_non_null(strstr(err, missing));
    char baddir[300];
    snprintf(baddir, sizeof(baddir), "%s/no/such/dir/m.h5", dir);
    assert_int_equal(ckpt_save_model(baddir, &a, 1, NULL, err), CKPT_ERR_IO);
    assert_non_null(strstr(err, "no/such/dir"));
    gpt_model_free(&a);
    gpt_model_free(&other);
}

/* Saves a fresh model file at path, then lets edit() change it with HDF5. */
static void edited(const char *path, void (*edit)(hid_t f)) {
    gpt_model a;
    make_model(&a, 77, 3);
    ckpt_error_t err;
    assert_int_equal(ckpt_save_model(path, &a, 1, NULL, err), CKPT_OK);
    gpt_model_free(&a);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    edit(f);
    H5Fclose(f);
}

static void future_version(hid_t f) {
    H5Adelete(f, "format_version");
    long v = 99;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_LONG, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void drop_tensor(hid_t f) { H5Ldelete(f, "model/h.1.mlp.c_fc.bias", H5P_DEFAULT); }

static void reshape_tensor(hid_t f) {
    H5Ldelete(f, "model/h.0.ln_1.weight", H5P_DEFAULT);
    hsize_t dims[1] = {31};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "model/h.0.ln_1.weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    float z[31] = {0};
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    H5Dclose(d);
    H5Sclose(sp);
}

/* One float of wte changed in place, as a bad disk or copy would. */
static void flip_value(hid_t f) {
    hid_t d = H5Dopen2(f, "model/wte", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t start[2] = {5, 7}, count[2] = {1, 1};
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mem = H5Screate_simple(1, count, NULL);
    float v;
    H5Dread(d, H5T_NATIVE_FLOAT, mem, sp, H5P_DEFAULT, &v);
    v = v * 1.0001f + 1e-6f;
    H5Dwrite(d, H5T_NATIVE_FLOAT, mem, sp, H5P_DEFAULT, &v);
    H5Sclose(mem);
    H5Sclose(sp);
    H5Dclose(d);
}

/* Loading path into a model of its config fails with a message naming the
 * file and containing want. */
static void expect_bad(const char *path, const char *want) {
    gpt_model b;
    make_model(&b, 77, 3);
    ckpt_error_t err;
    assert_int_not_equal(ckpt_load_model(path, &b, err), CKPT_OK);
    if (!strstr(err, path) || !strstr(err, want)) fail_msg("%s: got \"%s\"", want, err);
    gpt_model_free(&b);
}

static void test_damaged_files(void **state) {
    (void)state;
    char path[256];
    path_of(path, "future.h5");
    edited(path, future_version);
    expect_bad(path, "newer gptrain");
    path_of(path, "dropped.h5");
    edited(path, drop_tensor);
    expect_bad(path, "missing tensor /model/h.1.mlp.c_fc.bias");
    path_of(path, "reshaped.h5");
    edited(path, reshape_tensor);
    expect_bad(path, "h.0.ln_1.weight has shape (31");
    path_of(path, "flipped.h5");
    edited(path, flip_value);
    expect_bad(path, "checksum mismatch in /model");
    /* A foreign HDF5 file, and a truncated one. */
    path_of(path, "foreign.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    expect_bad(path, "not a gptrain checkpoint");
    char whole[256], cmd[700];
    path_of(whole, "whole.h5");
    path_of(path, "truncated.h5");
    gpt_model a;
    make_model(&a, 77, 3);
    ckpt_error_t err;
    assert_int_equal(ckpt_save_model(whole, &a, 1, NULL, err), CKPT_OK);
    gpt_model_free(&a);
    snprintf(cmd, sizeof cmd, "head -c 3000 %s > %s", whole, path);
    assert_int_equal(system(cmd), 0);
    expect_bad(path, "truncated");
}

static void test_latest_and_prune(void **state) {
    (void)state;
    char run[256], name[64], path[512], got[512];
    path_of(run, "run");
    assert_int_equal(mkdir(run, 0755), 0);
    ckpt_error_t err;
    assert_int_equal(ckpt_latest(run, got, sizeof got, err), CKPT_ERR_IO);
    for (long step = 1; step <= 9; step++) {
        ckpt_name(name, sizeof name, step);
        snprintf(path, sizeof path, "%s/%s", run, name);
        fclose(fopen(path, "w"));
    }
    snprintf(path, sizeof path, "%s/ckpt_00000010.h5.tmp", run);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/ckpt_00000010.h5.tmp-43057153-28270.lock", run);
    fclose(fopen(path, "w"));
    ckpt_name(name, sizeof name, 2);
    assert_int_equal(ckpt_set_latest(run, name, err), CKPT_OK);
    assert_int_equal(ckpt_latest(run, got, sizeof got, err), CKPT_OK);
    snprintf(path, sizeof path, "%s/ckpt_00000002.h5", run);
    assert_string_equal(got, path);
    /* Newest 2 (8, 9), multiples of 3 (3, 6, 9), latest (2); the .tmp and
     * the MPI-IO lock file left beside it go. */
    ckpt_prune(run, 2, 3);
    for (long step = 1; step <= 10; step++) {
        ckpt_name(name, sizeof name, step);
        snprintf(path, sizeof path, "%s/%s", run, name);
        int want = step == 2 || step == 3 || step == 6 || step == 8 || step == 9;
        if ((access(path, F_OK) == 0) != want) fail_msg("step %ld kept: %d", step, !want);
    }
    snprintf(path, sizeof path, "%s/ckpt_00000010.h5.tmp", run);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/ckpt_00000010.h5.tmp-43057153-28270.lock", run);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* llm.c's bfloat16 files (version 5): an exported float32 file (version 3)
 * rewritten as bfloat16 imports as the float32 model rounded toward zero to
 * bfloat16, every parameter in its place. */
static void test_llmc_bf16(void **state) {
    (void)state;
    char v3[256], v5[256];
    path_of(v3, "m_v3.bin");
    path_of(v5, "m_v5.bin");
    gpt_model a, b;
    make_model(&a, 77, 9);
    ckpt_error_t err;
    assert_int_equal(ckpt_export_llmc(&a, v3, err), CKPT_OK);
    FILE *in = fopen(v3, "rb"), *out = fopen(v5, "wb");
    int32_t h[256];
    assert_int_equal(fread(h, sizeof h, 1, in), 1);
    assert_int_equal(h[1], 3);
    h[1] = 5;
    fwrite(h, sizeof h, 1, out);
    float x;
    while (fread(&x, 4, 1, in) == 1) {
        uint32_t bits;
        memcpy(&bits, &x, 4);
        uint16_t top = (uint16_t)(bits >> 16);
        fwrite(&top, 2, 1, out);
    }
    fclose(in);
    fclose(out);
    assert_int_equal(ckpt_import_llmc(v5, &b, err), CKPT_OK);
    assert_memory_equal(&a.cfg, &b.cfg, sizeof(gpt_config));
    for (size_t i = 0; i < a.table.total; i++) {
        uint32_t bits;
        memcpy(&bits, &a.params[i], 4);
        bits &= 0xffff0000u;
        float want;
        memcpy(&want, &bits, 4);
        if (b.params[i] != want) fail_msg("float %zu: %g, want %g", i, b.params[i], want);
    }
    gpt_model_free(&a);
    gpt_model_free(&b);
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_latest_and_prune),
        cmocka_unit_test(test_llmc_bf16),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

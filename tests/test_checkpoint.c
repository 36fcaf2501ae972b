/* test_checkpoint.c: model files: a save/load round trip is bitwise exact,
 * no .tmp file is left behind, a config mismatch is refused,
 * and every kind of bad file is a clear error naming the file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

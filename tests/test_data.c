/* test_data.c: unit tests of the data module (data/data.h).
 *
 * Each test works in its own mkdtemp directory under /tmp, removed after
 * the test, so tests cannot see each other's shards. Error cases check both
 * the status and that the message names the file at fault, since that
 * message is all a user sees. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = malloc(sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/test_data_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static const char *tmpdir(void **state)
{
    return ((fixture *)*state)->dir;
}

/* out = dir/name; the buffers are PATH_LEN bytes. */
#define PATH_LEN 512
static void join(char *out, const char *dir, const char *name)
{
    assert_true(snprintf(out, PATH_LEN, "%s/%s", dir, name) < PATH_LEN);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A shard-like file with a chosen header and payload_bytes zero bytes. */
static void write_raw(const char *path, int32_t magic, int32_t version,
                      int32_t ntok, size_t payload_bytes)
{
    size_t n = DATA_SHARD_HEADER_INTS * sizeof(int32_t) + payload_bytes;
    int32_t *buf = calloc(1, n);
    assert_non_null(buf);
    buf[0] = magic;
    buf[1] = version;
    buf[2] = ntok;
    write_bytes(path, buf, n);
    free(buf);
}

/* Writes dir/name holding the tokens first, first+1, ..., first+n-1. */
static void write_seq(const char *dir, const char *name, int first, size_t n)
{
    char path[PATH_LEN];
    join(path, dir, name);
    uint16_t *tok = malloc(n * sizeof *tok);
    assert_non_null(tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (uint16_t)(first + (int)i);
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, n, err), DATA_OK);
    free(tok);
}

/* Opens path expecting failure st; the message must name the file. */
static void expect_open_error(const char *path, data_status st, const char *what)
{
    data_shard s;
    data_error_t err = "";
    assert_int_equal(data_shard_open(&s, path, err), st);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, what));
    assert_null(strchr(err, '\n'));
    assert_null(s.map);
}

static void test_shard_roundtrip(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "s.bin");
    uint16_t tok[1000];
    for (int i = 0; i < 1000; i++)
        tok[i] = (uint16_t)(i * 6553 + 7);
    tok[0] = 0;
    tok[999] = 65535;
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, 1000, err), DATA_OK);

    data_shard s;
    assert_int_equal(data_shard_open(&s, path, err), DATA_OK);
    assert_string_equal(s.path, path);
    assert_int_equal(s.ntok, 1000);
    assert_int_equal(s.map_len, 1024 + 2000);
    assert_memory_equal(s.tokens, tok, sizeof tok);
    const int32_t *h = s.map;
    assert_int_equal(h[0], 20240520);
    assert_int_equal(h[1], 1);
    assert_int_equal(h[2], 1000);
    for (int i = 3; i < DATA_SHARD_HEADER_INTS; i++)
        assert_int_equal(h[i], 0);
    data_shard_close(&s);
    assert_null(s.map);
    assert_int_equal(s.ntok, 0);
    data_shard_close(&s); /* closing twice is harmless */
}

static void test_shard_zero_tokens(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "empty_shard.bin");
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, NULL, 0, err), DATA_OK);
    data_shard s;
    assert_int_equal(data_shard_open(&s, path, err), DATA_OK);
    assert_int_equal(s.ntok, 0);
    assert_int_equal(s.map_len, 1024);
    data_shard_close(&s);
}

static void test_shard_bad_magic(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "x.bin");
    write_raw(path, 12345, 1, 4, 8);
    expect_open_error(path, DATA_ERR_FORMAT, "bad magic 12345 (expected 20240520)");
    write_raw(path, DATA_SHARD_MAGIC, 2, 4, 8);
    expect_open_error(path, DATA_ERR_FORMAT, "version 2");
    write_raw(path, DATA_SHARD_MAGIC, 1, -3, 8);
    expect_open_error(path, DATA_ERR_FORMAT, "-3 tokens");
}

static void test_shard_truncated(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "t.bin");
    write_seq(tmpdir(state), "t.bin", 0, 100);
    assert_int_equal(truncate(path, 1024 + 150), 0);
    expect_open_error(path, DATA_ERR_FORMAT,
                      "header says 100 tokens (1224 bytes) but the file has 1174 bytes");
    assert_int_equal(truncate(path, 500), 0);
    expect_open_error(path, DATA_ERR_FORMAT, "500 bytes");
}

static void test_shard_empty_file(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "e.bin");
    write_bytes(path, "", 0);
    expect_open_error(path, DATA_ERR_FORMAT, "empty");
}

static void test_shard_llmc_uint32(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "llama.bin");
    write_raw(path, 20240801, 7, 4, 16);
    expect_open_error(path, DATA_ERR_FORMAT, "not supported");
}

static void test_shard_missing(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "nope.bin");
    expect_open_error(path, DATA_ERR_IO, "nope.bin");
}

/* One batch must be the tokens base, base+1, ... with targets one ahead. */
static void expect_batch(data_loader *L, int base, int bt)
{
    int in[8], tg[8];
    data_error_t err = "";
    assert_true(bt <= 8);
    assert_int_equal(data_loader_next(L, in, tg, err), DATA_OK);
    for (int i = 0; i < bt; i++) {
        assert_int_equal(in[i], base + i);
        assert_int_equal(tg[i], base + i + 1);
    }
}

static void test_loader_wraps(void **state)
{
    const char *dir = tmpdir(state);
    write_seq(dir, "train_000000.bin", 0, 25);
    write_seq(dir, "train_000001.bin", 100, 17);
    write_seq(dir, "val_000000.bin", 200, 50); /* another split: never read */
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", 2, 4, 256, err), DATA_OK);
    assert_int_equal(L.nshards, 2);
    /* 25 tokens hold batches at 0, 8, 16; 17 tokens hold 0 and 8. */
    const int bases[] = {0, 8, 16, 100, 108, 0, 8};
    for (int i = 0; i < 7; i++)
        expect_batch(&L, bases[i], 8);
    data_loader_reset(&L);
    expect_batch(&L, 0, 8);
    data_loader_close(&L);
    assert_null(L.shards);
    data_loader_close(&L);
}

static void test_loader_token_outside_vocab(void **state)
{
    const char *dir = tmpdir(state);
    char path[PATH_LEN];
    join(path, dir, "train_000000.bin");
    uint16_t tok[20];
    for (int i = 0; i < 20; i++)
        tok[i] = (uint16_t)i;
    tok[13] = 300;
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, 20, err), DATA_OK);
    data_loader L;
    assert_int_equal(data_loader_open(&L, dir, "train", 1, 8, 256, err), DATA_OK);
    expect_batch(&L, 0, 8);
    int in[8], tg[8];
    assert_int_equal(data_loader_next(&L, in, tg, err), DATA_ERR_FORMAT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "token 300 at position 13"));
    assert_non_null(strstr(err, "(256)"));
    data_loader_close(&L);
}

static void test_loader_shard_too_small(void **state)
{
    const char *dir = tmpdir(state);
    write_seq(dir, "train_000000.bin", 0, 20);
    write_seq(dir, "train_000001.bin", 0, 8);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", 2, 4, 256, err),
                     DATA_ERR_FORMAT);
    assert_non_null(strstr(err, "train_000001.bin"));
    assert_non_null(strstr(err, "8 tokens"));
    assert_non_null(strstr(err, "B*T+1 = 9"));
    assert_null(L.shards);
    assert_int_equal(L.nshards, 0);
}

static void test_loader_no_shards(void **state)
{
    const char *dir = tmpdir(state);
    write_seq(dir, "val_000000.bin", 0, 20);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", 2, 4, 256, err), DATA_ERR_IO);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "no train_*.bin shards"));
}

static void test_loader_bad_args(void **state)
{
    const char *dir = tmpdir(state);
    write_seq(dir, "train_000000.bin", 0, 20);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", 0, 4, 256, err), DATA_ERR_ARG);
    assert_non_null(strstr(err, "B=0"));
    assert_int_equal(data_loader_open(&L, dir, "train", 2, -1, 256, err),
                     DATA_ERR_ARG);
    assert_int_equal(data_loader_open(&L, dir, "train", 2, 4, 0, err), DATA_ERR_ARG);
}

/* ---- prep ----------------------------------------------------------------- */

#define A_LEN 3000
#define B_LEN 2001

/* Builds in/ with two text files (one in a subdirectory), a binary file and
 * a link to the first text file; expect receives the text in walk order. */
static void make_corpus(const char *dir, unsigned char *expect)
{
    char in[PATH_LEN], sub[PATH_LEN], path[PATH_LEN], target[PATH_LEN];
    join(in, dir, "in");
    join(sub, in, "sub");
    assert_int_equal(mkdir(in, 0777), 0);
    assert_int_equal(mkdir(sub, 0777), 0);
    /* Every byte value but NUL, so the high half of the vocabulary is used. */
    for (int i = 0; i < A_LEN + B_LEN; i++)
        expect[i] = (unsigned char)((i * 37 + 11) % 255 + 1);
    join(target, in, "a.txt");
    write_bytes(target, expect, A_LEN);
    join(path, sub, "b.txt");
    write_bytes(path, expect + A_LEN, B_LEN);
    join(path, in, "bin.dat");
    write_bytes(path, "abc\0def", 7);
    join(path, in, "link.txt"); /* sorts after a.txt, so it is the duplicate */
    assert_int_equal(symlink(target, path), 0);
}

static data_prep_opts small_opts(const char *out_dir, size_t shard_tokens)
{
    return (data_prep_opts){.out_dir = out_dir, .val_fraction = 0.25,
                            .block_tokens = 100, .shard_tokens = shard_tokens,
                            .quiet = 1};
}

/* Appends every dir/<split>_%06d.bin of n shards to out; returns the count. */
static size_t read_split(const char *dir, const char *split, int n, size_t max,
                         unsigned char *out)
{
    size_t len = 0;
    data_error_t err = "";
    for (int i = 0; i <= n; i++) {
        char name[64], path[PATH_LEN];
        snprintf(name, sizeof name, "%s_%06d.bin", split, i);
        join(path, dir, name);
        if (i == n) { /* no shard past the last one */
            assert_int_equal(access(path, F_OK), -1);
            break;
        }
        data_shard s;
        assert_int_equal(data_shard_open(&s, path, err), DATA_OK);
        assert_true(s.ntok <= max);
        assert_true(i == n - 1 || s.ntok == max);
        for (size_t j = 0; j < s.ntok; j++)
            out[len++] = (unsigned char)s.tokens[j];
        data_shard_close(&s);
    }
    return len;
}

static void test_prep_corpus(void **state)
{
    const char *dir = tmpdir(state);
    unsigned char expect[A_LEN + B_LEN], train[A_LEN + B_LEN], val[A_LEN + B_LEN];
    make_corpus(dir, expect);
    char in[PATH_LEN], out[PATH_LEN];
    join(in, dir, "in");
    join(out, dir, "out/nested"); /* made with mkdir -p */
    const char *inputs[] = {in};
    data_prep_opts o = small_opts(out, 700);
    data_prep_stats st;
    data_error_t err = "";
    assert_int_equal(data_prep(inputs, 1, &o, &st, err), DATA_OK);
    assert_int_equal(st.files_used, 2);
    assert_int_equal(st.files_skipped, 1);
    assert_int_equal(st.files_duplicate, 1);
    /* 51 blocks of 100 (the last has 1 token); f = 1/4 sends 3, 7, ..., 47. */
    assert_int_equal(st.train_tokens + st.val_tokens, A_LEN + B_LEN);
    assert_int_equal(st.val_tokens, 12 * 100);
    assert_int_equal(st.train_shards, 6); /* ceil(3801 / 700) */
    assert_int_equal(st.val_shards, 2);   /* ceil(1200 / 700) */

    size_t ntrain = read_split(out, "train", st.train_shards, 700, train);
    size_t nval = read_split(out, "val", st.val_shards, 700, val);
    assert_int_equal(ntrain, st.train_tokens);
    assert_int_equal(nval, st.val_tokens);
    /* Interleaving the splits block by block gives back the text. */
    size_t ti = 0, vi = 0;
    for (size_t i = 0; i * 100 < A_LEN + B_LEN; i++) {
        size_t n = A_LEN + B_LEN - i * 100 < 100 ? A_LEN + B_LEN - i * 100 : 100;
        int to_val = i % 4 == 3;
        const unsigned char *src = to_val ? val + vi : train + ti;
        assert_memory_equal(src, expect + i * 100, n);
        *(to_val ? &vi : &ti) += n;
    }
    assert_int_equal(ti, ntrain);
    assert_int_equal(vi, nval);
}

static void test_prep_replaces_old_shards(void **state)
{
    const char *dir = tmpdir(state);
    unsigned char expect[A_LEN + B_LEN];
    make_corpus(dir, expect);
    char in[PATH_LEN], out[PATH_LEN], stale[PATH_LEN];
    join(in, dir, "in");
    join(out, dir, "out");
    const char *inputs[] = {in};
    data_prep_opts o = small_opts(out, 700);
    data_prep_stats st;
    data_error_t err = "";
    assert_int_equal(data_prep(inputs, 1, &o, &st, err), DATA_OK);
    assert_int_equal(st.train_shards, 6);
    o = small_opts(out, 100000);
    assert_int_equal(data_prep(inputs, 1, &o, &st, err), DATA_OK);
    assert_int_equal(st.train_shards, 1);
    join(stale, out, "train_000001.bin");
    assert_int_equal(access(stale, F_OK), -1);
    join(stale, out, "val_000001.bin");
    assert_int_equal(access(stale, F_OK), -1);
}

static void test_prep_missing_path(void **state)
{
    char in[PATH_LEN], out[PATH_LEN];
    join(in, tmpdir(state), "no_such_dir");
    join(out, tmpdir(state), "out");
    const char *inputs[] = {in};
    data_prep_opts o = small_opts(out, 700);
    data_error_t err = "";
    assert_int_equal(data_prep(inputs, 1, &o, NULL, err), DATA_ERR_IO);
    assert_non_null(strstr(err, in));
}

static void test_prep_no_text(void **state)
{
    char in[2][PATH_LEN], out[PATH_LEN];
    join(in[0], tmpdir(state), "blob.bin");
    join(in[1], tmpdir(state), "late.bin");
    join(out, tmpdir(state), "out");
    write_bytes(in[0], "\x01\x00\x02", 3);
    /* A NUL past the first read: the text before it must be dropped too. */
    size_t n = 3 << 19;
    char *late = malloc(n);
    assert_non_null(late);
    memset(late, 'a', n);
    late[n - 1] = '\0';
    write_bytes(in[1], late, n);
    free(late);
    const char *inputs[] = {in[0], in[1]};
    data_prep_opts o = small_opts(out, 700);
    data_prep_stats st;
    data_error_t err = "";
    assert_int_equal(data_prep(inputs, 2, &o, &st, err), DATA_ERR_ARG);
    assert_non_null(strstr(err, "no text found"));
    assert_int_equal(st.files_skipped, 2);
    assert_int_equal(st.files_used, 0);
}

/* Fails with DATA_ERR_ARG, a message naming what, and no output written. */
static void expect_bad_opts(void **state, data_prep_opts o, const char *what)
{
    char in[PATH_LEN];
    join(in, tmpdir(state), "a.txt");
    write_bytes(in, "hello", 5);
    const char *inputs[] = {in};
    data_error_t err = "";
    assert_int_equal(data_prep(inputs, 1, &o, NULL, err), DATA_ERR_ARG);
    assert_non_null(strstr(err, what));
    assert_int_equal(access(o.out_dir, F_OK), -1);
}

static void test_prep_bad_opts(void **state)
{
    char out[PATH_LEN];
    join(out, tmpdir(state), "out");
    data_prep_opts o = small_opts(out, 700);
    o.val_fraction = 1.0;
    expect_bad_opts(state, o, "val_fraction 1");
    o.val_fraction = -0.1;
    expect_bad_opts(state, o, "val_fraction -0.1");
    o.val_fraction = NAN;
    expect_bad_opts(state, o, "val_fraction");
    o = small_opts(out, 700);
    o.block_tokens = 0;
    expect_bad_opts(state, o, "block_tokens 0");
    o = small_opts(out, 0);
    expect_bad_opts(state, o, "shard_tokens 0");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_shard_roundtrip),
        T(test_shard_zero_tokens),
        T(test_shard_bad_magic),
        T(test_shard_truncated),
        T(test_shard_empty_file),
        T(test_shard_llmc_uint32),
        T(test_shard_missing),
        T(test_loader_wraps),
        T(test_loader_token_outside_vocab),
        T(test_loader_shard_too_small),
        T(test_loader_no_shards),
        T(test_loader_bad_args),
        T(test_prep_corpus),
        T(test_prep_replaces_old_shards),
        T(test_prep_missing_path),
        T(test_prep_no_text),
        T(test_prep_bad_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

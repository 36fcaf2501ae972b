/* test_data.c: unit tests of the shards and the loader (data/data.h).
 *
 * Each test works in its own mkdtemp directory under /tmp, removed after
 * the test, so tests cannot see each other's shards. Error cases check the
 * status and that the message names the file (and byte) at fault, since that
 * message is all a user sees. Loader shards hold position-encoded tokens
 * (token i of shard s is s*1000 + i), so every sample is recognisable by its
 * first token and its contents can be checked against its position. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
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

/* Writes dir/name: n tokens, token i = id*1000 + i (vocab 8192: uint16). */
#define VOCAB 8192
static void write_pos(const char *dir, const char *name, int id, size_t n)
{
    char path[PATH_LEN];
    join(path, dir, name);
    uint32_t *tok = malloc((n + 1) * sizeof *tok);
    assert_non_null(tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (uint32_t)(id * 1000 + (int)i);
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, n, VOCAB, err), DATA_OK);
    free(tok);
}

/* Opens path expecting failure st; the message must name the file and hold
 * every one of what (NULL-terminated), and *s must be left zeroed. */
static void expect_open_error(const char *path, data_status st, const char *const *what)
{
    data_shard s;
    data_error_t err = "";
    assert_int_equal(data_shard_open(&s, path, err), st);
    assert_non_null(strstr(err, path));
    for (; *what; what++)
        if (!strstr(err, *what))
            fail_msg("\"%s\" lacks \"%s\"", err, *what);
    assert_null(strchr(err, '\n'));
    assert_null(s.map);
    assert_int_equal(s.ntok, 0);
    assert_int_equal(s.path[0], '\0');
}
#define EXPECT_OPEN_ERROR(path, st, ...) \
    expect_open_error(path, st, (const char *const[]){__VA_ARGS__, NULL})

/* Writes n tokens with vocab, opens the shard and checks it all. */
static void roundtrip(const char *path, const uint32_t *tok, size_t n, int vocab,
                      int32_t magic, int32_t version, int token_bytes)
{
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, n, vocab, err), DATA_OK);
    data_shard s;
    assert_int_equal(data_shard_open(&s, path, err), DATA_OK);
    assert_string_equal(s.path, path);
    assert_int_equal(s.ntok, n);
    assert_int_equal(s.token_bytes, token_bytes);
    assert_int_equal(s.map_len, 1024 + n * (size_t)token_bytes);
    const int32_t *h = s.map;
    assert_int_equal(h[0], magic);
    assert_int_equal(h[1], version);
    assert_int_equal(h[2], (int32_t)n);
    for (int i = 3; i < DATA_SHARD_HEADER_INTS; i++)
        assert_int_equal(h[i], 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(data_shard_token(&s, i), tok[i]);
    data_shard_close(&s);
    assert_null(s.map);
    assert_int_equal(s.ntok, 0);
    data_shard_close(&s); /* closing twice is harmless */
}

static void test_shard_roundtrip_u16(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "s.bin");
    enum { N = 40000 }; /* more than one conversion chunk */
    static uint32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (uint32_t)(i * 6553 + 7) % 65536;
    tok[0] = 0;
    tok[N - 1] = 65535;
    roundtrip(path, tok, N, 65535, 20240520, 1, 2);
    roundtrip(path, tok, 0, 50257, 20240520, 1, 2);
}

static void test_shard_roundtrip_u32(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "s.bin");
    uint32_t tok[1000];
    for (int i = 0; i < 1000; i++)
        tok[i] = (uint32_t)i * 70u;
    tok[1] = 65536;
    tok[2] = 69999;
    tok[3] = 4000000000u;
    roundtrip(path, tok, 1000, 70000, 20240801, 7, 4);
}

static void test_shard_u16_rejects_wide_token(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "s.bin");
    uint32_t tok[8] = {1, 2, 3, 4, 5, 65536, 7, 8};
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, 8, 65535, err), DATA_ERR_ARG);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "token 65536 at index 5"));
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
}

static void test_shard_bad_header(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "x.bin");
    write_raw(path, 12345, 1, 4, 8);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT,
                      "bad magic 12345 at byte offset 0 (expected 20240520 or 20240801)");
    write_raw(path, DATA_SHARD_MAGIC, 7, 4, 8);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "version 7", "byte offset 4");
    write_raw(path, DATA_SHARD_MAGIC_U32, 1, 4, 16);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "version 1", "byte offset 4");
    write_raw(path, DATA_SHARD_MAGIC, 1, -3, 8);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "-3", "byte offset 8");
}

static void test_shard_wrong_size(void **state)
{
    const char *dir = tmpdir(state);
    char path[PATH_LEN];
    join(path, dir, "t.bin");
    write_pos(dir, "t.bin", 0, 100);
    assert_int_equal(truncate(path, 1024 + 150), 0);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT,
                      "header says 100 tokens (200 bytes of data) but the data ends at "
                      "byte offset 1174");
    assert_int_equal(truncate(path, 1024 + 202), 0); /* trailing garbage */
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "(200 bytes of data)", "byte offset 1226");
    write_raw(path, DATA_SHARD_MAGIC_U32, 7, 4, 8);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "4 tokens (16 bytes of data)",
                      "byte offset 1032");
}

static void test_shard_short_files(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "e.bin");
    write_bytes(path, "", 0);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT, "truncated: 0 bytes");
    char junk[500] = {0};
    write_bytes(path, junk, sizeof junk);
    EXPECT_OPEN_ERROR(path, DATA_ERR_FORMAT,
                      "truncated: 500 bytes, shorter than the 1024-byte header");
}

static void test_shard_not_a_file(void **state)
{
    char path[PATH_LEN];
    join(path, tmpdir(state), "nope.bin");
    EXPECT_OPEN_ERROR(path, DATA_ERR_IO, "cannot open");
    assert_int_equal(mkdir(path, 0777), 0);
    EXPECT_OPEN_ERROR(path, DATA_ERR_IO, "not a regular file");
}

/* ---- loader ----------------------------------------------------------------- */

#define SEQ 8
/* Shard lengths of the loader corpus; at T = SEQ = 8 they hold 12, 7, 0, 1 and 16
 * samples (36 in all): some lengths are not k*T + 1, one holds no sample,
 * one exactly one. */
static const size_t corpus_len[] = {100, 57, 8, 9, 130};
#define NSHARDS 5
#define EPOCH 36

/* train_00000i.bin for the lengths above, plus a val shard and files that
 * are not train_*.bin shards (they would fail to open), never read. */
static void make_corpus(const char *dir)
{
    for (int i = NSHARDS - 1; i >= 0; i--) {
        char name[64];
        snprintf(name, sizeof name, "train_%06d.bin", i);
        write_pos(dir, name, i, corpus_len[i]);
    }
    write_pos(dir, "val_000000.bin", 7, 50);
    const char *decoys[] = {"trainx_000000.bin", "train_000000.bin.tmp", "train.bin"};
    for (int i = 0; i < 3; i++) {
        char path[PATH_LEN];
        join(path, dir, decoys[i]);
        write_raw(path, 1, 1, 0, 0);
    }
}

static data_loader open_train(const char *dir, uint64_t seed, int shuffle)
{
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, seed, shuffle, err),
                     DATA_OK);
    assert_int_equal(L.epoch_samples, EPOCH);
    return L;
}

static void expect_state(data_loader_state st, uint64_t epoch, uint64_t cursor)
{
    assert_int_equal(st.epoch, epoch);
    assert_int_equal(st.cursor, cursor);
}

/* Reads n samples one at a time; first[i] gets sample i's first token after
 * checking that inputs and targets are the T consecutive positions. */
static void read_firsts(data_loader *L, int n, int *first)
{
    int in[SEQ], tg[SEQ];
    data_error_t err = "";
    for (int i = 0; i < n; i++) {
        assert_int_equal(data_loader_next(L, 0, 1, 1, in, tg, err), DATA_OK);
        for (int t = 0; t < SEQ; t++) {
            assert_int_equal(in[t], in[0] + t);
            assert_int_equal(tg[t], in[0] + t + 1);
        }
        first[i] = in[0];
    }
}

/* The samples of the corpus in file order, as first tokens. */
static void sequential_firsts(int *first)
{
    int n = 0;
    for (int s = 0; s < NSHARDS; s++)
        for (size_t j = 0; j < (corpus_len[s] - 1) / SEQ; j++)
            first[n++] = s * 1000 + (int)j * SEQ;
    assert_int_equal(n, EPOCH);
}

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* first[0..EPOCH) holds every sample once, and each shard's samples as one
 * run (the shard order is permuted, not interleaved). */
static void expect_epoch(const int *first)
{
    int sorted[EPOCH], want[EPOCH], runs = 1;
    memcpy(sorted, first, sizeof sorted);
    qsort(sorted, EPOCH, sizeof *sorted, cmp_int);
    sequential_firsts(want);
    assert_memory_equal(sorted, want, sizeof want);
    for (int i = 1; i < EPOCH; i++)
        runs += first[i] / 1000 != first[i - 1] / 1000;
    assert_int_equal(runs, 4); /* the shards holding samples */
}

static void test_loader_sequential(void **state)
{
    make_corpus(tmpdir(state));
    data_loader a = open_train(tmpdir(state), 1, 0), b = open_train(tmpdir(state), 2, 0);
    int want[EPOCH], got[2 * EPOCH], other[2 * EPOCH];
    sequential_firsts(want);
    read_firsts(&a, 2 * EPOCH, got);
    assert_memory_equal(got, want, sizeof want);
    assert_memory_equal(got + EPOCH, want, sizeof want);
    expect_state(data_loader_get_state(&a), 2, 0);
    read_firsts(&b, 2 * EPOCH, other); /* the seed plays no part */
    assert_memory_equal(got, other, sizeof got);
    data_loader_close(&a);
    data_loader_close(&b);
}

static void test_loader_shuffled_epochs(void **state)
{
    make_corpus(tmpdir(state));
    data_loader L = open_train(tmpdir(state), 42, 1);
    int got[2 * EPOCH], seq[EPOCH];
    read_firsts(&L, 2 * EPOCH, got);
    expect_state(data_loader_get_state(&L), 2, 0);
    expect_epoch(got);
    expect_epoch(got + EPOCH);
    sequential_firsts(seq);
    assert_memory_not_equal(got, seq, sizeof seq);
    assert_memory_not_equal(got, got + EPOCH, sizeof seq);
    /* Both the shard order and the order inside a shard are shuffled. */
    int unsorted_run = 0, unsorted_shards = 0;
    for (int i = 1; i < 2 * EPOCH; i++) {
        int same = got[i] / 1000 == got[i - 1] / 1000;
        unsorted_run |= same && got[i] < got[i - 1];
        unsorted_shards |= !same && i != EPOCH && got[i] < got[i - 1];
    }
    assert_true(unsorted_run);
    assert_true(unsorted_shards);
    data_loader_close(&L);
}

static void test_loader_seeds(void **state)
{
    make_corpus(tmpdir(state));
    int a[2 * EPOCH], b[2 * EPOCH], c[2 * EPOCH];
    data_loader L = open_train(tmpdir(state), 42, 1);
    read_firsts(&L, 2 * EPOCH, a);
    data_loader_close(&L);
    L = open_train(tmpdir(state), 42, 1);
    read_firsts(&L, 2 * EPOCH, b);
    data_loader_close(&L);
    L = open_train(tmpdir(state), 43, 1);
    read_firsts(&L, 2 * EPOCH, c);
    data_loader_close(&L);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    expect_epoch(c);
}

/* K micro-batches of P ranks x B each, every rank with its own loader, must
 * equal K micro-batches of one rank x P*B sample for sample, crossing at
 * least two epochs, and every rank must end in the reference's state. */
static void check_world(const char *dir, int shuffle, int P, int B)
{
    int K = 2 * EPOCH / (P * B) + 1;
    size_t mb = (size_t)P * B * SEQ, part = (size_t)B * SEQ;
    int *ref_in = malloc(K * mb * sizeof(int)), *ref_tg = malloc(K * mb * sizeof(int));
    int *in = malloc(part * sizeof(int)), *tg = malloc(part * sizeof(int));
    assert_true(ref_in && ref_tg && in && tg);
    data_error_t err = "";
    data_loader ref = open_train(dir, 7, shuffle);
    for (int k = 0; k < K; k++)
        assert_int_equal(data_loader_next(&ref, 0, 1, P * B, ref_in + k * mb,
                                          ref_tg + k * mb, err), DATA_OK);
    data_loader_state end = data_loader_get_state(&ref);
    assert_true(end.epoch >= 2);
    for (int r = 0; r < P; r++) {
        data_loader L = open_train(dir, 7, shuffle);
        for (int k = 0; k < K; k++) {
            assert_int_equal(data_loader_next(&L, r, P, B, in, tg, err), DATA_OK);
            assert_memory_equal(in, ref_in + k * mb + r * part, part * sizeof(int));
            assert_memory_equal(tg, ref_tg + k * mb + r * part, part * sizeof(int));
        }
        expect_state(data_loader_get_state(&L), end.epoch, end.cursor);
        data_loader_close(&L);
    }
    data_loader_close(&ref);
    free(ref_in), free(ref_tg), free(in), free(tg);
}

static void test_loader_world_size(void **state)
{
    make_corpus(tmpdir(state));
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        for (int P = 1; P <= 4; P++)
            check_world(tmpdir(state), shuffle, P, 2);
        check_world(tmpdir(state), shuffle, 3, 3);
        check_world(tmpdir(state), shuffle, 4, 10); /* a micro-batch over an epoch */
    }
}

static void test_loader_resume(void **state)
{
    const char *dir = tmpdir(state);
    make_corpus(dir);
    enum { K = 5, M = 6, MB = 8 * SEQ };
    int ref_in[(K + M) * MB], ref_tg[(K + M) * MB], in[4 * SEQ], tg[4 * SEQ];
    data_error_t err = "";
    data_loader ref = open_train(dir, 9, 1);
    for (int k = 0; k < K + M; k++)
        assert_int_equal(data_loader_next(&ref, 0, 1, 8, ref_in + k * MB, ref_tg + k * MB,
                                          err), DATA_OK);
    data_loader_close(&ref);
    /* K micro-batches at 4 ranks x 2: 40 samples, one epoch and 4. */
    data_loader_state saved = {0, 0};
    for (int r = 0; r < 4; r++) {
        data_loader L = open_train(dir, 9, 1);
        for (int k = 0; k < K; k++)
            assert_int_equal(data_loader_next(&L, r, 4, 2, in, tg, err), DATA_OK);
        saved = data_loader_get_state(&L);
        data_loader_close(&L);
    }
    expect_state(saved, 1, 4);
    /* Then M more at 2 ranks x 4, each from a fresh loader. */
    for (int r = 0; r < 2; r++) {
        data_loader L = open_train(dir, 9, 1);
        assert_int_equal(data_loader_set_state(&L, saved, err), DATA_OK);
        for (int k = K; k < K + M; k++) {
            assert_int_equal(data_loader_next(&L, r, 2, 4, in, tg, err), DATA_OK);
            assert_memory_equal(in, ref_in + k * MB + r * 4 * SEQ, sizeof in);
            assert_memory_equal(tg, ref_tg + k * MB + r * 4 * SEQ, sizeof tg);
        }
        data_loader_close(&L);
    }
}

static void test_loader_set_state_range(void **state)
{
    make_corpus(tmpdir(state));
    data_loader L = open_train(tmpdir(state), 1, 1);
    data_error_t err = "";
    assert_int_equal(data_loader_set_state(&L, (data_loader_state){3, EPOCH - 1}, err),
                     DATA_OK);
    assert_int_equal(data_loader_set_state(&L, (data_loader_state){0, EPOCH}, err),
                     DATA_ERR_ARG);
    assert_non_null(strstr(err, "cursor 36"));
    expect_state(data_loader_get_state(&L), 3, EPOCH - 1);
    int first[1], again[1];
    data_loader_reset(&L);
    expect_state(data_loader_get_state(&L), 0, 0);
    read_firsts(&L, 1, first);
    data_loader_reset(&L);
    read_firsts(&L, 1, again);
    assert_int_equal(first[0], again[0]);
    data_loader_close(&L);
}

/* Shard dir/train_000000.bin of 40 tokens i % 200 but for bad at index at;
 * the loader (no shuffle, T = 8) reads sample 0 and fails on sample 1. */
static void check_bad_token(const char *dir, int vocab, uint32_t bad, int at,
                            const char *want)
{
    char path[PATH_LEN];
    join(path, dir, "train_000000.bin");
    uint32_t tok[40];
    for (int i = 0; i < 40; i++)
        tok[i] = (uint32_t)(i % 200);
    tok[at] = bad;
    data_error_t err = "";
    assert_int_equal(data_shard_write(path, tok, 40, vocab, err), DATA_OK);
    data_loader L;
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, vocab, 0, 0, err), DATA_OK);
    int in[2 * SEQ], tg[2 * SEQ];
    assert_int_equal(data_loader_next(&L, 0, 2, 1, in, tg, err), DATA_OK);
    expect_state(data_loader_get_state(&L), 0, 2);
    assert_int_equal(data_loader_set_state(&L, (data_loader_state){0, 0}, err), DATA_OK);
    for (int tries = 0; tries < 2; tries++) {
        assert_int_equal(data_loader_next(&L, 1, 2, 1, in, tg, err), DATA_ERR_FORMAT);
        assert_non_null(strstr(err, path));
        if (!strstr(err, want))
            fail_msg("\"%s\" lacks \"%s\"", err, want);
        expect_state(data_loader_get_state(&L), 0, 0);
    }
    assert_int_equal(data_loader_next(&L, 0, 1, 2, in, tg, err), DATA_ERR_FORMAT);
    expect_state(data_loader_get_state(&L), 0, 0);
    data_loader_close(&L);
}

static void test_loader_token_outside_vocab(void **state)
{
    /* An input token of a uint16 shard: byte 1024 + 13*2. */
    check_bad_token(tmpdir(state), 256, 300, 13,
                    "token 300 at byte offset 1050 is outside the vocabulary (256)");
    /* The last target of sample 1 in a uint32 shard: byte 1024 + 16*4. */
    check_bad_token(tmpdir(state), 70000, 70000, 16,
                    "token 70000 at byte offset 1088 is outside the vocabulary (70000)");
}

static void expect_zeroed(const data_loader *L)
{
    assert_null(L->shards);
    assert_null(L->cache);
    assert_int_equal(L->nshards, 0);
}

static void test_loader_no_shards(void **state)
{
    const char *dir = tmpdir(state);
    char missing[PATH_LEN];
    write_pos(dir, "val_000000.bin", 0, 20);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, 0, 1, err),
                     DATA_ERR_IO);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "no train_*.bin shards"));
    expect_zeroed(&L);
    join(missing, dir, "missing");
    assert_int_equal(data_loader_open(&L, missing, "train", SEQ, VOCAB, 0, 1, err),
                     DATA_ERR_IO);
    assert_non_null(strstr(err, missing));
}

/* llm.c's shard names are found too: *_<split>_*.bin and *_<split>.bin,
 * but not names that only contain the split's letters. */
static void test_loader_llmc_names(void **state)
{
    const char *dir = tmpdir(state);
    write_pos(dir, "fineweb_train_000001.bin", 1, 40);
    write_pos(dir, "tiny_shakespeare_train.bin", 2, 40);
    write_pos(dir, "fineweb_val_000000.bin", 3, 40);
    write_pos(dir, "mytrain_000000.bin", 4, 40);
    write_pos(dir, "retrain.bin", 5, 40);
    write_pos(dir, "train.bin", 6, 40);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, 0, 0, err), DATA_OK);
    assert_int_equal(L.nshards, 2);
    data_loader_close(&L);
    assert_int_equal(data_loader_open(&L, dir, "val", SEQ, VOCAB, 0, 0, err), DATA_OK);
    assert_int_equal(L.nshards, 1);
    data_loader_close(&L);
}

static void test_loader_no_sample(void **state)
{
    const char *dir = tmpdir(state);
    write_pos(dir, "train_000000.bin", 0, 0);
    write_pos(dir, "train_000001.bin", 1, 5);
    write_pos(dir, "train_000002.bin", 2, 8);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, 0, 1, err),
                     DATA_ERR_FORMAT);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "no train shard holds T+1 = 9 tokens"));
    expect_zeroed(&L);
    write_pos(dir, "train_000003.bin", 3, 9); /* now one sample exists */
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, 0, 1, err), DATA_OK);
    assert_int_equal(L.epoch_samples, 1);
    int in[2 * SEQ], tg[2 * SEQ]; /* rank 1 of 2 x 2 reads epochs 2 and 3 */
    assert_int_equal(data_loader_next(&L, 1, 2, 2, in, tg, err), DATA_OK);
    assert_int_equal(in[0], 3000);
    assert_int_equal(in[SEQ], 3000);
    expect_state(data_loader_get_state(&L), 4, 0);
    data_loader_close(&L);
}

static void test_loader_bad_shard(void **state)
{
    const char *dir = tmpdir(state);
    char path[PATH_LEN];
    write_pos(dir, "train_000000.bin", 0, 100);
    join(path, dir, "train_000001.bin");
    write_raw(path, 1, 1, 0, 0);
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, dir, "train", SEQ, VOCAB, 0, 1, err),
                     DATA_ERR_FORMAT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "bad magic"));
    expect_zeroed(&L);
}

static void test_loader_bad_args(void **state)
{
    make_corpus(tmpdir(state));
    data_loader L;
    data_error_t err = "";
    assert_int_equal(data_loader_open(&L, tmpdir(state), "train", 0, VOCAB, 0, 1, err),
                     DATA_ERR_ARG);
    assert_non_null(strstr(err, "T=0"));
    assert_int_equal(data_loader_open(&L, tmpdir(state), "train", SEQ, 0, 0, 1, err),
                     DATA_ERR_ARG);
    expect_zeroed(&L);
    int in[SEQ], tg[SEQ];
    assert_int_equal(data_loader_next(&L, 0, 1, 1, in, tg, err), DATA_ERR_ARG);
    L = open_train(tmpdir(state), 0, 1);
    const int bad[][3] = {{-1, 2, 1}, {2, 2, 1}, {0, 0, 1}, {0, 1, 0}}; /* rank world B */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(data_loader_next(&L, bad[i][0], bad[i][1], bad[i][2], in, tg, err),
                         DATA_ERR_ARG);
        assert_non_null(strstr(err, "rank"));
        expect_state(data_loader_get_state(&L), 0, 0);
    }
    data_loader_close(&L);
    expect_zeroed(&L);
    data_loader_close(&L); /* closing twice is harmless */
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_shard_roundtrip_u16),
        TEST(test_shard_roundtrip_u32),
        TEST(test_shard_u16_rejects_wide_token),
        TEST(test_shard_bad_header),
        TEST(test_shard_wrong_size),
        TEST(test_shard_short_files),
        TEST(test_shard_not_a_file),
        TEST(test_loader_sequential),
        TEST(test_loader_shuffled_epochs),
        TEST(test_loader_seeds),
        TEST(test_loader_world_size),
        TEST(test_loader_resume),
        TEST(test_loader_set_state_range),
        TEST(test_loader_token_outside_vocab),
        TEST(test_loader_llmc_names),
        TEST(test_loader_no_shards),
        TEST(test_loader_no_sample),
        TEST(test_loader_bad_shard),
        TEST(test_loader_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

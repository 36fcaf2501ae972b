/* test_prep.c: `gptrain prep` end to end at the library level: the shards
 * decode back to the documents with an end-of-text token before each one;
 * chunked parallel encoding gives the same tokens as encoding each document
 * whole, for any thread count; globs, stdin, links and binary files; the
 * manifest; uint32 shards for a vocabulary over 65535; and the errors for a
 * missing path, an unmatched glob, a directory without text and no text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "data.h"

static char dir[] = "/tmp/gptrain_prep_XXXXXX";
static char path_buf[8][512];

static const char *P(int slot, const char *name) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Text with many short lines, so chunks can be cut at newlines. */
static char *make_text(size_t n, unsigned seed) {
    static const char *words[] = {"the", "quick", "brown", "fox's", "jumps", "over", "12",
                                  "lazy", "dogs", "!!", "caf\xc3\xa9", "  ", "\t"};
    char *t = malloc(n + 1);
    size_t len = 0;
    while (len < n) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % 13];
        int nl = ((seed >> 8) & 15) == 0;
        size_t wl = strlen(w);
        if (len + wl + 2 > n) break;
        memcpy(t + len, w, wl);
        len += wl;
        t[len++] = nl ? '\n' : ' ';
    }
    t[len] = '\0';
    return t;
}

/* Reassembles the token stream from the train and val shards by the block
 * rule and decodes it. */
static char *decode_dir(const char *out, const data_prep_opts *o, size_t *len) {
    data_error_t err;
    data_tokenizer *tok;
    char p[600];
    snprintf(p, sizeof p, "%s/%s", out, DATA_TOKENIZER_FILE);
    assert_int_equal(data_tok_load(&tok, p, err), DATA_OK);
    data_shard s[2];
    size_t pos[2] = {0, 0};
    snprintf(p, sizeof p, "%s/train_000000.bin", out);
    assert_int_equal(data_shard_open(&s[0], p, err), DATA_OK);
    snprintf(p, sizeof p, "%s/val_000000.bin", out);
    int have_val = data_shard_open(&s[1], p, err) == DATA_OK;
    size_t cap = 1 << 20, n = 0, total = s[0].ntok + (have_val ? s[1].ntok : 0);
    char *text = malloc(cap);
    for (size_t i = 0, k = 0; k < total; i++) {
        double f = o->val_fraction;
        int v = (size_t)((i + 1) * f) > (size_t)(i * f);
        for (size_t b = 0; b < o->block_tokens && k < total; b++, k++) {
            assert_true(v == 0 || have_val);
            size_t blen;
            const unsigned char *bytes = data_tok_token(tok, (int)data_shard_token(&s[v], pos[v]++), &blen);
            while (n + blen >= cap) text = realloc(text, cap *= 2);
            memcpy(text + n, bytes, blen);
            n += blen;
        }
    }
    data_shard_close(&s[0]);
    if (have_val) data_shard_close(&s[1]);
    data_tok_free(tok);
    *len = n;
    return text;
}

static data_prep_opts opts(const char *out) {
    return (data_prep_opts){out, NULL, 400, 0, 0.2, 64, 1 << 20, 1};
}

static void test_round_trip_and_inputs(void **state) {
    (void)state;
    mkdir(P(0, "in"), 0755);
    mkdir(P(0, "in/sub"), 0755);
    char *a = make_text(5000, 1), *b = make_text(3000, 2);
    write_file(P(1, "in/a.txt"), a, strlen(a));
    write_file(P(1, "in/sub/b.txt"), b, strlen(b));
    write_file(P(1, "in/bin.dat"), "x\0y", 3);
    assert_int_equal(symlink(P(2, "in/a.txt"), P(1, "in/z.u8")), 0);
    const char *inputs[] = {P(3, "in")};
    data_prep_opts o = opts(P(4, "out"));
    data_prep_stats st;
    data_error_t err;
    assert_int_equal(data_prep(inputs, 1, &o, &st, err), DATA_OK);
    assert_int_equal(st.files_used, 2);
    assert_int_equal(st.files_skipped, 1);
    assert_int_equal(st.files_duplicate, 1);
    assert_int_equal(st.text_bytes, strlen(a) + strlen(b));
    assert_true(st.val_tokens > 0 && st.train_tokens > 3 * st.val_tokens);
    size_t len;
    char *text = decode_dir(o.out_dir, &o, &len);
    /* a.txt sorts before sub/b.txt; an EOT precedes each document. */
    char *want;
    assert_true(asprintf(&want, "%s%s%s%s", DATA_EOT_TEXT, a, DATA_EOT_TEXT, b) > 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(text, want, len);
    FILE *m = fopen(P(5, "out/manifest.json"), "r");
    assert_non_null(m);
    char buf[8192] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, m) > 0);
    fclose(m);
    assert_non_null(strstr(buf, "\"train_tokens\""));
    assert_non_null(strstr(buf, "sub/b.txt"));
    assert_non_null(strstr(buf, "\"tokenizer\": \"tokenizer.bpe\""));
    /* A glob and standard input give the same documents. */
    const char *glob_in[] = {P(3, "in/a.t?t"), P(6, "in/sub/*.txt")};
    data_prep_opts o2 = opts(P(4, "out2"));
    o2.tokenizer = P(7, "out/tokenizer.bpe");
    assert_int_equal(data_prep(glob_in, 2, &o2, &st, err), DATA_OK);
    assert_int_equal(st.files_used, 2);
    free(decode_dir(o2.out_dir, &o2, &len));
    assert_int_equal(len, strlen(want));
    int saved = dup(0), fd = open(P(3, "in/a.txt"), O_RDONLY);
    dup2(fd, 0);
    const char *dash[] = {"-"};
    data_prep_opts o3 = opts(P(4, "out3"));
    o3.tokenizer = P(7, "out/tokenizer.bpe");
    data_status ds = data_prep(dash, 1, &o3, &st, err);
    dup2(saved, 0);
    close(fd);
    close(saved);
    assert_int_equal(ds, DATA_OK);
    assert_int_equal(st.text_bytes, strlen(a));
    free(text);
    free(want);
    free(a);
    free(b);
}

/* Encodes a document whole, with one encoder, for comparison. */
static void encode_whole(const char *tokfile, const char *text, data_tokens *out) {
    data_error_t err;
    data_tokenizer *tok;
    assert_int_equal(data_tok_load(&tok, tokfile, err), DATA_OK);
    data_encoder *enc = data_encoder_new(tok);
    uint32_t eot = (uint32_t)data_tok_eot(tok);
    out->len = 0;
    if (!out->cap) out->ids = malloc(sizeof(uint32_t) * (out->cap = 16));
    out->ids[out->len++] = eot;
    assert_int_equal(data_encode(enc, (const unsigned char *)text, strlen(text), out, err), DATA_OK);
    data_encoder_free(enc);
    data_tok_free(tok);
}

static void read_shard(const char *path, uint32_t **ids, size_t *n) {
    data_shard s;
    data_error_t err;
    assert_int_equal(data_shard_open(&s, path, err), DATA_OK);
    *n = s.ntok;
    *ids = malloc(sizeof(uint32_t) * (s.ntok + 1));
    for (size_t i = 0; i < s.ntok; i++) (*ids)[i] = data_shard_token(&s, i);
    data_shard_close(&s);
}

static void test_chunks_and_threads(void **state) {
    (void)state;
    char *big = make_text(3500000, 7); /* more than three 1 MB chunks */
    write_file(P(0, "big.txt"), big, strlen(big));
    const char *in[] = {P(0, "big.txt")};
    data_prep_stats st;
    data_error_t err;
    uint32_t *ids[2];
    size_t n[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        data_prep_opts o = {P(1, t ? "big2" : "big1"), NULL, 600, 0, 0.0, 4096, 1 << 22, 1};
        assert_int_equal(data_prep(in, 1, &o, &st, err), DATA_OK);
        char p[600];
        snprintf(p, sizeof p, "%s/train_000000.bin", o.out_dir);
        read_shard(p, &ids[t], &n[t]);
    }
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(ids[0], ids[1], n[0] * sizeof(uint32_t));
    data_tokens whole = {0};
    encode_whole(P(2, "big1/tokenizer.bpe"), big, &whole);
    assert_int_equal(whole.len, n[0]);
    assert_memory_equal(whole.ids, ids[0], n[0] * sizeof(uint32_t));
    data_tokens_free(&whole);
    free(ids[0]);
    free(ids[1]);
    free(big);
}

/* 65536 two-byte merges make a vocabulary of 65793: shards switch to uint32. */
static void test_uint32_shards(void **state) {
    (void)state;
    uint32_t (*merges)[2] = malloc(sizeof(*merges) * 65536);
    for (int i = 0; i < 65536; i++) {
        merges[i][0] = (uint32_t)(i >> 8);
        merges[i][1] = (uint32_t)(i & 255);
    }
    data_tokenizer *tok;
    data_error_t err;
    assert_int_equal(data_tok_from_merges(&tok, merges, 65536, 1, err), DATA_OK);
    assert_int_equal(data_tok_save(tok, P(0, "wide.bpe"), err), DATA_OK);
    data_tok_free(tok);
    free(merges);
    write_file(P(1, "wide.txt"), "\xff\xfe top", 6);
    const char *in[] = {P(1, "wide.txt")};
    data_prep_opts o = {P(2, "wide"), P(0, "wide.bpe"), 0, 0, 0.0, 64, 1000, 1};
    data_prep_stats st;
    assert_int_equal(data_prep(in, 1, &o, &st, err), DATA_OK);
    assert_int_equal(st.vocab_size, 65793);
    data_shard s;
    assert_int_equal(data_shard_open(&s, P(3, "wide/train_000000.bin"), err), DATA_OK);
    assert_int_equal(s.token_bytes, 4);
    assert_int_equal(data_shard_token(&s, 0), 65792); /* EOT */
    assert_int_equal(data_shard_token(&s, 1), 256 + 0xfffe); /* merge (0xff, 0xfe) */
    data_shard_close(&s);
}

static void expect_fail(const char *const *in, int n, const data_prep_opts *o,
                        const char *needle) {
    data_error_t err;
    assert_int_not_equal(data_prep(in, n, o, NULL, err), DATA_OK);
    if (!strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_errors(void **state) {
    (void)state;
    data_prep_opts o = opts(P(0, "eout"));
    const char *missing[] = {P(1, "nope.txt")};
    expect_fail(missing, 1, &o, P(1, "nope.txt"));
    const char *noglob[] = {P(2, "nothing*.txt")};
    expect_fail(noglob, 1, &o, "no file matches");
    mkdir(P(3, "bins"), 0755);
    write_file(P(4, "bins/x.dat"), "\0\1\2", 3);
    const char *bins[] = {P(3, "bins")};
    expect_fail(bins, 1, &o, "no readable text in this directory");
    write_file(P(5, "empty.txt"), "", 0);
    const char *empty[] = {P(5, "empty.txt")};
    expect_fail(empty, 1, &o, "no text found");
    write_file(P(6, "ok.txt"), "hello", 5);
    const char *ok[] = {P(6, "ok.txt")};
    data_prep_opts bad = o;
    bad.vocab_size = 100;
    expect_fail(ok, 1, &bad, "vocab size 100");
    bad = o;
    bad.tokenizer = P(7, "no-such.bpe");
    expect_fail(ok, 1, &bad, "no-such.bpe");
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_inputs),
        cmocka_unit_test(test_chunks_and_threads),
        cmocka_unit_test(test_uint32_shards),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

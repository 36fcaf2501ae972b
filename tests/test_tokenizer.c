/* test_tokenizer.c: unit tests of the byte-level BPE tokenizer (data/bpe*.c).
 *
 * A small tokenizer in GPT-2's Hugging Face layout, written here, pins down
 * encodings worked out by hand (merge priority, contractions, whitespace,
 * non-ASCII and invalid UTF-8), as do small merge lists for the corners of
 * the algorithm (overlapping pairs, ranks that do not follow creation,
 * pairs replaced before their turn). GPT-2's pre-splitting fixture checks
 * the piece boundaries. On random input, encoding must match a naive
 * transcription of GPT-2's bpe(), decode back to the input and not depend
 * on the cache. Saved tokenizers must load back the same, and every class
 * of bad tokenizer file must fail with its status, path and line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "data.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static char *new_dir(void)
{
    char tmpl[] = "/tmp/test_tok_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void rm_dir(char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static const char *path_in(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = calloc(1, 1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    fclose(f);
    b[n] = '\0';
    return b;
}

static data_tokens encode(data_encoder *enc, const void *text, size_t len)
{
    data_tokens out = {0};
    data_error_t err = "";
    assert_int_equal(data_encode(enc, text, len, &out, err), DATA_OK);
    return out;
}

/* Checks that the ids decode to text[0..len). */
static void check_decodes(const data_tokenizer *tok, const data_tokens *t,
                          const unsigned char *text, size_t len)
{
    size_t at = 0;
    for (size_t i = 0; i < t->len; i++) {
        size_t n;
        const unsigned char *b = data_tok_token(tok, (int)t->ids[i], &n);
        assert_non_null(b);
        assert_true(at + n <= len);
        assert_memory_equal(b, text + at, n);
        at += n;
    }
    assert_int_equal(at, len);
}

static void expect_ids(const data_tokenizer *tok, const char *text, size_t len,
                       const uint32_t *want, size_t n)
{
    data_encoder *enc = data_encoder_new(tok);
    data_tokens t = encode(enc, text, len);
    assert_int_equal(t.len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(t.ids[i], want[i]);
    check_decodes(tok, &t, (const unsigned char *)text, len);
    data_tokens_free(&t);
    data_encoder_free(enc);
}

#define CHECK(tok, text, ...)                                                    \
    do {                                                                         \
        uint32_t want_[] = {__VA_ARGS__};                                        \
        expect_ids(tok, text, sizeof(text) - 1, want_, sizeof want_ / sizeof *want_); \
    } while (0)

/* ---- the hand-made GPT-2-layout tokenizer ------------------------------- */

/* GPT-2's bytes_to_unicode keeps these bytes as their own code point. */
static int printable(int b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The id GPT-2's encoder.json gives byte b's symbol: printable bytes first,
 * in increasing order, then the other 68. */
static uint32_t B(int b)
{
    uint32_t k = printable(b) ? 0 : 188;
    for (int c = 0; c < b; c++)
        k += printable(c) == printable(b);
    return k;
}

/* Writes byte b's symbol as a JSON string body: printable bytes raw (UTF-8,
 * escaping '"' and '\'), the others (U+0100 and up) as \u escapes, so that
 * both paths of the parser are used. */
static void put_symbol(FILE *f, int b)
{
    if (b == '"' || b == '\\')
        fprintf(f, "\\%c", b);
    else if (b < 128 && printable(b))
        fputc(b, f);
    else if (printable(b))
        fprintf(f, "%c%c", 0xC0 | (b >> 6), 0x80 | (b & 0x3F));
    else
        fprintf(f, "\\u%04x", 256 + (B(b) - 188));
}

/* Merges in rank order; results get ids 256.. in this order. */
static const char *const hand_merges[][2] = {
    {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"},
    {"e", "r"}, {"Ġ", "in"}, {"'", "s"}, {"1", "2"},
};
enum { GT = 256, HE, GTHE, IN, GA, ER, GIN, APOS_S, D12, EOT_ID };
#define N_HAND (int)(sizeof hand_merges / sizeof *hand_merges)

/* dir/vocab.json (one member a line: the id k is on line k + 2) and
 * dir/merges.txt for the hand-made tokenizer. */
static void write_hand_hf(const char *dir)
{
    FILE *f = fopen(path_in(dir, "vocab.json"), "w");
    assert_non_null(f);
    fprintf(f, "{\n");
    for (uint32_t id = 0; id < 256; id++)
        for (int b = 0; b < 256; b++)
            if (B(b) == id) {
                fputc('"', f);
                put_symbol(f, b);
                fprintf(f, "\": %u,\n", id);
            }
    for (int i = 0; i < N_HAND; i++)
        fprintf(f, "\"%s%s\": %d,\n", hand_merges[i][0], hand_merges[i][1], 256 + i);
    fprintf(f, "\"<|endoftext|>\": %d\n}\n", EOT_ID);
    assert_int_equal(fclose(f), 0);
    f = fopen(path_in(dir, "merges.txt"), "w");
    assert_non_null(f);
    fprintf(f, "#version: 0.2\n");
    for (int i = 0; i < N_HAND; i++)
        fprintf(f, "%s %s\n", hand_merges[i][0], hand_merges[i][1]);
    assert_int_equal(fclose(f), 0);
}

static data_tokenizer *load_hand(void)
{
    char *dir = new_dir();
    write_hand_hf(dir);
    data_tokenizer *tok;
    data_error_t err = "";
    data_status st = data_tok_load(&tok, dir, err);
    if (st != DATA_OK)
        print_error("%s\n", err);
    assert_int_equal(st, DATA_OK);
    rm_dir(dir);
    return tok;
}

static void test_hand_tokenizer_shape(void **state)
{
    (void)state;
    data_tokenizer *tok = load_hand();
    assert_int_equal(data_tok_vocab_size(tok), EOT_ID + 1);
    assert_int_equal(data_tok_eot(tok), EOT_ID);
    /* GPT-2's ids: "!" is 0, the space's "Ġ" 220, the newline's "Ċ" 198. */
    assert_int_equal(B('!'), 0);
    assert_int_equal(B(' '), 220);
    assert_int_equal(B('\n'), 198);
    size_t n;
    assert_memory_equal(data_tok_token(tok, B(' '), &n), " ", 1);
    assert_int_equal(n, 1);
    assert_memory_equal(data_tok_token(tok, GTHE, &n), " the", 4);
    assert_int_equal(n, 4);
    assert_memory_equal(data_tok_token(tok, EOT_ID, &n), DATA_EOT_TEXT, 13);
    assert_int_equal(n, 13);
    assert_null(data_tok_token(tok, -1, &n));
    assert_null(data_tok_token(tok, EOT_ID + 1, &n));
    data_tok_free(tok);
}

static void test_hand_encodings(void **state)
{
    (void)state;
    data_tokenizer *tok = load_hand();
    /* Ġ t h e: (Ġ,t) rank 0 -> Ġt h e; (h,e) rank 1 -> Ġt he; (Ġt,he) rank 2. */
    CHECK(tok, " the", GTHE);
    /* No leading space: (t,h) is no merge, so only (h,e) applies. */
    CHECK(tok, "the", B('t'), HE);
    /* Ġ t h e r e: Ġt, then he, then Ġthe; (h,e) (rank 1) takes the e before
     * (e,r) (rank 5) can, and (Ġthe,r), (r,e) are no merges. */
    CHECK(tok, " there", GTHE, B('r'), B('e'));
    /* Pieces "in" and " the": (i,n) rank 3; then as above. */
    CHECK(tok, "in the", IN, GTHE);
    /* Ġ i n: (i,n) rank 3 first, then (Ġ,in) rank 6: merges build on merges. */
    CHECK(tok, " inn", GIN, B('n'));
    /* Pieces "it" and the contraction "'s" (merge 7); (i,t) is no merge. */
    CHECK(tok, "it's", B('i'), B('t'), APOS_S);
    /* Pieces "a", "\n", "b": the newline is its own piece, byte token Ċ. */
    CHECK(tok, "a\nb", B('a'), B('\n'), B('b'));
    /* Pieces "a", " ", " b": a space run leaves its last space to the word. */
    CHECK(tok, "a  b", B('a'), B(' '), B(' '), B('b'));
    /* Pieces "x", " 12345": (1,2) rank 8; (Ġ,1) is no merge. */
    CHECK(tok, "x 12345", B('x'), B(' '), D12, B('3'), B('4'), B('5'));
    /* " a" is merge 4, "é" (C3 A9) has no merge: two byte tokens. */
    CHECK(tok, " a\xc3\xa9", GA, B(0xC3), B(0xA9));
    /* 0xFF is never valid UTF-8: its own "other" piece, one byte token. */
    CHECK(tok, "a\xff" "b", B('a'), B(0xFF), B('b'));
    /* A NUL byte is an ordinary "other" character. */
    CHECK(tok, "\0\0", B(0), B(0));
    data_tok_free(tok);
}

/* "<|endoftext|>" in the text is text: bytes, never the special token. */
static void test_eot_text_is_literal(void **state)
{
    (void)state;
    data_tokenizer *tok = load_hand();
    /* Pieces "<|", "endoftext", "|>", " the": no merge applies in the first
     * three, so 2 + 9 + 2 byte tokens, then Ġthe. */
    const char *text = "<|endoftext|> the";
    data_encoder *enc = data_encoder_new(tok);
    data_tokens t = encode(enc, text, strlen(text));
    assert_int_equal(t.len, 14);
    for (size_t i = 0; i < t.len; i++)
        assert_true(t.ids[i] != EOT_ID);
    assert_int_equal(t.ids[13], GTHE);
    check_decodes(tok, &t, (const unsigned char *)text, strlen(text));
    data_tokens_free(&t);
    data_encoder_free(enc);
    data_tok_free(tok);
}

/* ---- data_tok_from_merges ----------------------------------------------- */

/* Repeated merges of a with itself: overlapping pairs go left to right, as
 * in GPT-2's bpe(). */
static void test_from_merges_runs(void **state)
{
    (void)state;
    /* 256 = aa, 257 = aaaa, ..., 265 = a^1024. */
    uint32_t merges[10][2] = {{'a', 'a'}};
    for (int i = 1; i < 10; i++)
        merges[i][0] = merges[i][1] = 255 + (uint32_t)i;
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_from_merges(&tok, merges, 10, 1, err), DATA_OK);
    assert_int_equal(data_tok_vocab_size(tok), 267);
    assert_int_equal(data_tok_eot(tok), 266);
    /* a a a: the first pair merges, the second overlapped it: aa a. */
    CHECK(tok, "aaa", 256, 'a');
    /* aa aa, then (aa,aa) -> aaaa; a 5th a stays alone. */
    CHECK(tok, "aaaa", 257);
    CHECK(tok, "aaaaa", 257, 'a');
    /* 2^20 a's: one piece that halves ten times into 1024 a^1024 tokens. */
    size_t n = (size_t)1 << 20;
    char *run = malloc(n);
    memset(run, 'a', n);
    uint32_t *want = malloc(1024 * sizeof *want);
    for (int i = 0; i < 1024; i++)
        want[i] = 265;
    expect_ids(tok, run, n, want, 1024);
    free(want);
    free(run);
    data_tok_free(tok);
}

static void test_from_merges_errors(void **state)
{
    (void)state;
    data_tokenizer *tok = (data_tokenizer *)1;
    data_error_t err = "";
    /* Merge 1 may use ids up to 256 only. */
    uint32_t ahead[2][2] = {{'a', 'b'}, {'a', 257}};
    assert_int_equal(data_tok_from_merges(&tok, ahead, 2, 0, err), DATA_ERR_ARG);
    assert_null(tok);
    assert_non_null(strstr(err, "merge 1: ids 97 257 must be below 257"));
    /* Two merges giving the same bytes "ab". */
    uint32_t dup[2][2] = {{'a', 'b'}, {'a', 'b'}};
    assert_int_equal(data_tok_from_merges(&tok, dup, 2, 1, err), DATA_ERR_ARG);
    assert_non_null(strstr(err, "token 257: token 257 has the same bytes as token 256"));
    assert_int_equal(data_tok_from_merges(&tok, NULL, -1, 0, err), DATA_ERR_ARG);
    /* No merges at all is the plain byte tokenizer. */
    assert_int_equal(data_tok_from_merges(&tok, NULL, 0, 0, err), DATA_OK);
    assert_int_equal(data_tok_vocab_size(tok), 256);
    assert_int_equal(data_tok_eot(tok), -1);
    CHECK(tok, "hi \xff", 'h', 'i', ' ', 0xff);
    data_tok_free(tok);
}

/* Merge ranks need not follow token creation: here (aa, a) outranks the
 * (a, a) that makes aa. GPT-2's bpe() applies the best pair at every one of
 * its occurrences before it looks for the next best pair. */
static void test_rank_inversion(void **state)
{
    (void)state;
    char *dir = new_dir();
    const char *path = path_in(dir, "tok.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "gptrain-tokenizer 1\nvocab 258\neot -1\n");
    for (int b = 0; b < 256; b++)
        fprintf(f, "%02x\n", b);
    fprintf(f, "6161\n616161\nmerges 2\n256 97 257\n97 97 256\n");
    assert_int_equal(fclose(f), 0);
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_load(&tok, path, err), DATA_OK);
    /* a a a: (a,a) at 0 (its overlap at 1 is gone) -> aa a; then (aa,a). */
    CHECK(tok, "aaa", 257);
    /* a a a a: the (a,a) pass makes aa aa; only then is (aa,a) looked for,
     * and there is none. Merging (aa,a) as soon as it appears would give
     * aaa a instead. */
    CHECK(tok, "aaaa", 256, 256);
    /* aa aa a after the pass; then (aa,a) at the end. */
    CHECK(tok, "aaaaa", 256, 257);
    data_tok_free(tok);
    rm_dir(dir);
}

/* Heap entries go stale: a pair that was next in line can be replaced by a
 * worse one at the same place before its turn comes (the worse one must
 * wait for its own rank), or lose its left token to a merge (it must not
 * be merged at all). */
static void test_stale_pairs(void **state)
{
    (void)state;
    /* 256 = bc, 257 = ab, 258 = bcd, 259 = abc. */
    uint32_t merges[4][2] = {{'b', 'c'}, {'a', 'b'}, {256, 'd'}, {'a', 256}};
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_from_merges(&tok, merges, 4, 0, err), DATA_OK);
    /* a b c d: (b,c) rank 0 -> a bc d, which ends (a,b) (rank 1); of the
     * new pairs, (bc,d) rank 2 beats (a,bc) rank 3 -> a bcd. */
    CHECK(tok, "abcd", 'a', 258);
    /* a b c: a bc, then (a,bc) rank 3 -> abc. */
    CHECK(tok, "abc", 259);
    /* a b a b c: (b,c) first, then (a,b) at 0 -> ab a bc, then (a,bc). */
    CHECK(tok, "ababc", 257, 259);
    data_tok_free(tok);
    /* 256 = ab, 257 = bc, 258 = de, 259 = cde. */
    uint32_t merges2[4][2] = {{'a', 'b'}, {'b', 'c'}, {'d', 'e'}, {'c', 258}};
    assert_int_equal(data_tok_from_merges(&tok, merges2, 4, 0, err), DATA_OK);
    /* a b c d e: (a,b) -> ab c d e, which ends (b,c) (its b is gone); then
     * (d,e) -> ab c de and (c,de) -> ab cde. */
    CHECK(tok, "abcde", 256, 259);
    data_tok_free(tok);
}

/* ---- GPT-2's pre-splitting fixture -------------------------------------- */

static int hexval(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void test_pretok_fixture(void **state)
{
    (void)state;
    const char *dir = getenv("GPTRAIN_TEST_DIR");
    assert_non_null(dir);
    char *text = read_text(path_in(dir, "reference/pretok_cases.txt"));
    unsigned char *s = malloc(strlen(text));
    int cases = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        size_t len = (size_t)(tab - line) / 2, at = 0;
        for (size_t i = 0; i < len; i++)
            s[i] = (unsigned char)(hexval(line[2 * i]) << 4 | hexval(line[2 * i + 1]));
        for (char *p = tab + 1; *p; p += *p == ',') {
            size_t want = strtoul(p, &p, 10);
            assert_int_equal(data_pretok_next(s + at, len - at), want);
            at += want;
        }
        assert_int_equal(at, len);
        cases++;
    }
    assert_true(cases > 10);
    free(s);
    free(text);
}

/* ---- properties over random input --------------------------------------- */

/* Random text of one of four kinds: any bytes; a mix of fragments (UTF-8,
 * broken UTF-8, contractions, whitespace); long runs of one byte; a mix of
 * three fragments only, whose pieces repeat (so the cache is used). */
static size_t random_text(uint64_t *seed, unsigned char *out, size_t cap)
{
    static const char *const frag[] = {
        "the", " ", "  ", "\n", "\r\n", "\t", "\xc3\xa9", "\xe4\xb8\xad",
        "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80", "'s", "'ll", "12", "3",
        "\xc2\xa0", ".", "in", " there", "<|endoftext|>", "ab", "aaa",
    };
    size_t n = 0, kind = rng(seed) % 4, len = rng(seed) % (kind == 2 ? cap : 300);
    unsigned char run = (unsigned char)rng(seed);
    while (n < len && n < cap) {
        if (kind == 0) {
            out[n++] = (unsigned char)rng(seed);
        } else if (kind == 2) {
            out[n++] = rng(seed) % 50 ? run : (unsigned char)rng(seed);
        } else {
            const char *f = frag[rng(seed) % (kind == 1 ? 23 : 3)];
            for (size_t k = 0; f[k] && n < cap; k++)
                out[n++] = (unsigned char)f[k];
        }
    }
    return n;
}

/* Decoding gives back the input, and the ids do not depend on the cache:
 * the same encoder twice (the second time from its cache) and a fresh
 * encoder give the same ids. */
static void check_properties(const data_tokenizer *tok, uint64_t seed, int rounds)
{
    enum { CAP = 5000 };
    unsigned char *text = malloc(CAP);
    data_encoder *a = data_encoder_new(tok);
    for (int r = 0; r < rounds; r++) {
        size_t len = random_text(&seed, text, CAP);
        data_tokens t1 = encode(a, text, len), t2 = encode(a, text, len);
        data_encoder *b = data_encoder_new(tok);
        data_tokens t3 = encode(b, text, len);
        data_encoder_free(b);
        check_decodes(tok, &t1, text, len);
        assert_int_equal(t1.len, t2.len);
        assert_int_equal(t1.len, t3.len);
        assert_memory_equal(t1.ids, t2.ids, t1.len * sizeof *t1.ids);
        assert_memory_equal(t1.ids, t3.ids, t1.len * sizeof *t1.ids);
        data_tokens_free(&t1);
        data_tokens_free(&t2);
        data_tokens_free(&t3);
    }
    data_encoder_free(a);
    free(text);
}

/* n merges learnt the naive way from text (raw bytes, no pre-splitting):
 * the most frequent adjacent pair, ties to the smallest, merged everywhere
 * left to right; stops early when no pair occurs twice. */
static int learn_merges(const unsigned char *text, size_t len, uint32_t (*merges)[2], int n)
{
    uint32_t *seq = malloc(len * sizeof *seq);
    uint32_t *count = calloc((size_t)(256 + n) * (256 + n), sizeof *count);
    for (size_t i = 0; i < len; i++)
        seq[i] = text[i];
    int m = 0;
    for (; m < n; m++) {
        size_t w = 256 + (size_t)n, best = 0;
        memset(count, 0, w * w * sizeof *count);
        for (size_t i = 0; i + 1 < len; i++)
            count[seq[i] * w + seq[i + 1]]++;
        for (size_t k = 1; k < w * w; k++)
            best = count[k] > count[best] ? k : best;
        if (count[best] < 2)
            break;
        merges[m][0] = (uint32_t)(best / w);
        merges[m][1] = (uint32_t)(best % w);
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            int hit = i + 1 < len && seq[i] == merges[m][0] && seq[i + 1] == merges[m][1];
            seq[o++] = hit ? 256 + (uint32_t)m : seq[i];
            i += (size_t)hit;
        }
        len = o;
    }
    free(count);
    free(seq);
    return m;
}

/* Up to MAX_LEARNT merges learnt from random words into merges; returns
 * how many. */
#define MAX_LEARNT 300
static int learnt_merges(uint32_t (*merges)[2])
{
    static const char *const words[] = {
        "the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog's ",
        "caf\xc3\xa9 ", "\xe4\xb8\xad\xe6\x96\x87 ", "1234 ", "\n", "there ", "in ",
    };
    enum { LEN = 6000 };
    unsigned char *text = malloc(LEN + 16);
    uint64_t seed = 7;
    size_t len = 0;
    while (len < LEN)
        for (const char *w = words[rng(&seed) % 14]; *w; w++)
            text[len++] = (unsigned char)*w;
    int n = learn_merges(text, len, merges, MAX_LEARNT);
    assert_true(n > 100);
    free(text);
    return n;
}

static data_tokenizer *learnt_tokenizer(void)
{
    uint32_t (*merges)[2] = malloc(MAX_LEARNT * sizeof *merges);
    int n = learnt_merges(merges);
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_from_merges(&tok, merges, n, 1, err), DATA_OK);
    free(merges);
    return tok;
}

/* ---- GPT-2's bpe(), naively --------------------------------------------- */

/* Rank and result of every pair of ids below w (rank UINT32_MAX: no merge). */
typedef struct {
    uint32_t w, *rank, *out;
} pair_table;

/* GPT-2's bpe() on the n ids of one piece, transcribed as directly as
 * possible: find the best-ranked adjacent pair, rewrite the word merging
 * every occurrence of it left to right, repeat until no pair has a rank.
 * Returns the new length. */
static size_t naive_bpe(const pair_table *t, uint32_t *word, size_t n)
{
    for (;;) {
        uint32_t best = UINT32_MAX, first = 0, second = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            uint32_t r = t->rank[word[i] * t->w + word[i + 1]];
            if (r < best)
                best = r, first = word[i], second = word[i + 1];
        }
        if (best == UINT32_MAX)
            return n;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            int hit = i + 1 < n && word[i] == first && word[i + 1] == second;
            word[o++] = hit ? t->out[first * t->w + second] : word[i];
            i += (size_t)hit;
        }
        n = o;
    }
}

/* Checks data_encode against naive_bpe on random text, for a tokenizer
 * whose byte tokens are ids 0..255. */
static void check_against_naive(const data_tokenizer *tok, const pair_table *t,
                                uint64_t seed, int rounds)
{
    enum { CAP = 3000 };
    unsigned char *text = malloc(CAP);
    uint32_t *want = malloc(CAP * sizeof *want);
    data_encoder *enc = data_encoder_new(tok);
    for (int r = 0; r < rounds; r++) {
        size_t len = random_text(&seed, text, CAP), n = 0;
        for (size_t at = 0, k; at < len; at += k) {
            k = data_pretok_next(text + at, len - at);
            for (size_t i = 0; i < k; i++)
                want[n + i] = text[at + i];
            n += naive_bpe(t, want + n, k);
        }
        data_tokens got = encode(enc, text, len);
        assert_int_equal(got.len, n);
        assert_memory_equal(got.ids, want, n * sizeof *want);
        data_tokens_free(&got);
    }
    data_encoder_free(enc);
    free(want);
    free(text);
}

/* The tokenizer whose merge of rank r is merges[order[r]], giving token
 * 256 + order[r]: saved from data_tok_from_merges, then its merge lines
 * rewritten in rank order and loaded back. */
static data_tokenizer *reordered_tokenizer(const uint32_t (*merges)[2], int n,
                                           const uint32_t *order)
{
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_from_merges(&tok, merges, n, 0, err), DATA_OK);
    char *dir = new_dir();
    const char *path = path_in(dir, "tok.txt");
    assert_int_equal(data_tok_save(tok, path, err), DATA_OK);
    data_tok_free(tok);
    char *text = read_text(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    *strstr(text, "merges ") = '\0';
    fprintf(f, "%smerges %d\n", text, n);
    for (int r = 0; r < n; r++) {
        const uint32_t *m = merges[order[r]];
        fprintf(f, "%u %u %u\n", m[0], m[1], 256 + order[r]);
    }
    assert_int_equal(fclose(f), 0);
    free(text);
    assert_int_equal(data_tok_load(&tok, path, err), DATA_OK);
    rm_dir(dir);
    return tok;
}

/* The learnt merges, once in their own order and once shuffled (so that
 * ranks no longer follow token creation). */
static void test_matches_naive_bpe(void **state)
{
    (void)state;
    uint32_t (*merges)[2] = malloc(MAX_LEARNT * sizeof *merges);
    int n = learnt_merges(merges);
    uint32_t w = 256 + (uint32_t)n, *order = malloc((size_t)n * sizeof *order);
    pair_table t = {w, malloc(w * w * sizeof *t.rank), calloc(w * w, sizeof *t.out)};
    uint64_t seed = 11;
    for (uint32_t i = 0; i < (uint32_t)n; i++)
        order[i] = i;
    for (int shuffled = 0; shuffled < 2; shuffled++) {
        for (uint32_t i = (uint32_t)n; shuffled && i > 1; i--) {
            uint32_t j = (uint32_t)(rng(&seed) % i), x = order[i - 1];
            order[i - 1] = order[j];
            order[j] = x;
        }
        memset(t.rank, 0xff, w * w * sizeof *t.rank);
        for (uint32_t r = 0; r < (uint32_t)n; r++) {
            const uint32_t *m = merges[order[r]];
            t.rank[m[0] * w + m[1]] = r;
            t.out[m[0] * w + m[1]] = 256 + order[r];
        }
        data_tokenizer *tok = reordered_tokenizer((const uint32_t(*)[2])merges, n, order);
        check_against_naive(tok, &t, 5 + (uint64_t)shuffled, 1500);
        data_tok_free(tok);
    }
    free(t.rank);
    free(t.out);
    free(order);
    free(merges);
}

static void test_properties_learnt(void **state)
{
    (void)state;
    data_tokenizer *tok = learnt_tokenizer();
    check_properties(tok, 1, 1500);
    data_tok_free(tok);
}

static void test_properties_hand(void **state)
{
    (void)state;
    data_tokenizer *tok = load_hand();
    check_properties(tok, 2, 1500);
    data_tok_free(tok);
}

/* ---- saving and loading ------------------------------------------------- */

/* Saves tok, loads it back, and checks that the copy is the same tokenizer:
 * same tokens, same EOT, same encodings of random text. */
static void check_save_load(const data_tokenizer *tok, uint64_t seed)
{
    char *dir = new_dir();
    const char *path = path_in(dir, "tok.txt");
    data_error_t err = "";
    assert_int_equal(data_tok_save(tok, path, err), DATA_OK);
    data_tokenizer *copy;
    assert_int_equal(data_tok_load(&copy, path, err), DATA_OK);
    assert_null(fopen(path_in(dir, "tok.txt.tmp"), "r"));
    assert_int_equal(data_tok_vocab_size(copy), data_tok_vocab_size(tok));
    assert_int_equal(data_tok_eot(copy), data_tok_eot(tok));
    for (int i = 0; i < data_tok_vocab_size(tok); i++) {
        size_t n1, n2;
        const unsigned char *b1 = data_tok_token(tok, i, &n1);
        const unsigned char *b2 = data_tok_token(copy, i, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
    }
    unsigned char *text = malloc(5000);
    data_encoder *e1 = data_encoder_new(tok), *e2 = data_encoder_new(copy);
    for (int r = 0; r < 300; r++) {
        size_t len = random_text(&seed, text, 5000);
        data_tokens t1 = encode(e1, text, len), t2 = encode(e2, text, len);
        assert_int_equal(t1.len, t2.len);
        assert_memory_equal(t1.ids, t2.ids, t1.len * sizeof *t1.ids);
        data_tokens_free(&t1);
        data_tokens_free(&t2);
    }
    data_encoder_free(e1);
    data_encoder_free(e2);
    free(text);
    data_tok_free(copy);
    rm_dir(dir);
}

static void test_save_load_learnt(void **state)
{
    (void)state;
    data_tokenizer *tok = learnt_tokenizer();
    check_save_load(tok, 3);
    data_tok_free(tok);
}

/* GPT-2's layout saved in our format: same ids, EOT included. */
static void test_save_load_hand(void **state)
{
    (void)state;
    data_tokenizer *tok = load_hand();
    check_save_load(tok, 4);
    data_tok_free(tok);
}

/* ---- bad files ---------------------------------------------------------- */

/* Loading path fails with status want and a one-line message that names
 * err_file:line (just err_file when line is 0) and contains what. */
static void expect_load_fail(const char *path, const char *err_file, data_status want,
                             int line, const char *what)
{
    data_tokenizer *tok = (data_tokenizer *)1;
    data_error_t err = "";
    assert_int_equal(data_tok_load(&tok, path, err), want);
    assert_null(tok);
    char where[600];
    snprintf(where, sizeof where, line ? "%s:%d: " : "%s", err_file, line);
    if (!strstr(err, where) || !strstr(err, what))
        print_error("message \"%s\" lacks \"%s\" or \"%s\"\n", err, where, what);
    assert_non_null(strstr(err, where));
    assert_non_null(strstr(err, what));
    assert_null(strchr(err, '\n'));
}

/* Writes good with the first `from` replaced by `to` into dir/bad.txt and
 * expects loading it to fail at line with a message containing what. */
static void expect_bad_variant(const char *dir, const char *good, const char *from,
                               const char *to, int line, const char *what)
{
    const char *hit = strstr(good, from);
    assert_non_null(hit);
    size_t pre = (size_t)(hit - good), fl = strlen(from), tl = strlen(to);
    char *bad = malloc(strlen(good) + tl + 1);
    memcpy(bad, good, pre);
    memcpy(bad + pre, to, tl);
    strcpy(bad + pre + tl, hit + fl);
    const char *path = path_in(dir, "bad.txt");
    write_file(path, bad, strlen(bad));
    expect_load_fail(path, path, DATA_ERR_FORMAT, line, what);
    free(bad);
}

/* A valid file with vocab 259: token i on line 4 + i (so "A" on line 69,
 * merge "ab" on 260, "abc" on 261, EOT on 262), "merges 2" on line 263,
 * then "97 98 256" and "256 99 257". */
static void test_bad_gptrain_files(void **state)
{
    (void)state;
    char *dir = new_dir();
    const char *good_path = path_in(dir, "good.txt");
    uint32_t merges[2][2] = {{'a', 'b'}, {256, 'c'}};
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_from_merges(&tok, merges, 2, 1, err), DATA_OK);
    assert_int_equal(data_tok_save(tok, good_path, err), DATA_OK);
    data_tok_free(tok);
    char *good = read_text(good_path);
    assert_non_null(
        strstr(good, "\n616263\n3c7c656e646f66746578747c3e\nmerges 2\n97 98 256\n"));
    const char *v = dir;
#define BAD(from, to, line, what) expect_bad_variant(v, good, from, to, line, what)
    BAD("gptrain-tokenizer 1", "gptrain-tokenizer 2", 1, "not a gptrain tokenizer");
    BAD("vocab 259", "vocab 260", 263, "wrong vocab count");
    BAD("vocab 259", "vocab 25x", 2, "vocab N");
    BAD("eot 258", "eot 259", 3, "eot N");
    BAD("eot 258", "eot -0", 3, "eot N");
    BAD("\n41\n", "\n4g\n", 69, "bad hex");
    BAD("\n41\n", "\n4A\n", 69, "bad hex");
    BAD("\n41\n", "\n414\n", 69, "even number of hex digits");
    BAD("\n41\n", "\n4141\n", 2, "no token for the byte 0x41");
    BAD("\n616263\n", "\n6162\n", 261, "same bytes as token 256");
    BAD("eot 258", "eot 257", 261, "must be <|endoftext|>");
    BAD("256 99 257", "256 100 257", 265, "is not token 256 followed by token 100");
    BAD("97 98 256", "97 98 300", 264, "out of range");
    BAD("97 98 256", "97  98 256", 264, "three decimal ids");
    BAD("97 98 256", "97 98 258", 264, "end-of-text token 258 cannot");
    BAD("256 99 257", "256 99 257\nx", 266, "after the last merge");
    BAD("256 99 257", "256 99 257\n", 266, "after the last merge");
    BAD("merges 2", "merges 3", 266, "file ends");
    BAD("256 99 257", "97 98 256", 265, "already merge 0");
    BAD(good, "", 1, "not a gptrain tokenizer");
#undef BAD
    /* The final newline is optional. */
    good[strlen(good) - 1] = '\0';
    write_file(good_path, good, strlen(good));
    assert_int_equal(data_tok_load(&tok, good_path, err), DATA_OK);
    data_tok_free(tok);
    const char *missing = path_in(dir, "missing.txt");
    expect_load_fail(missing, missing, DATA_ERR_IO, 0, "cannot open");
    free(good);
    rm_dir(dir);
}

/* Replaces dir/name by text and expects loading dir to fail at file:line
 * with a message containing what. */
static void expect_bad_hf(const char *dir, const char *name, const char *text, int line,
                          const char *what)
{
    write_hand_hf(dir);
    const char *path = path_in(dir, name);
    write_file(path, text, strlen(text));
    expect_load_fail(dir, path, DATA_ERR_FORMAT, line, what);
}

static void test_bad_hf_files(void **state)
{
    (void)state;
    char *dir = new_dir();
#define BAD_VOCAB(text, line, what) expect_bad_hf(dir, "vocab.json", text, line, what)
    BAD_VOCAB("[1, 2]", 1, "one JSON object");
    BAD_VOCAB("{\n\"a\": 0,\n\"\\q\": 1}", 3, "bad escape");
    BAD_VOCAB("{\n\"a\": 0,\n\"\\ud800\": 1}", 3, "without a low one");
    BAD_VOCAB("{\n\"a\": 0,\n\"\\ud800\\u0041\": 1}", 3, "without a low one");
    BAD_VOCAB("{\n\"a\": 0,\n\"\\udc00\": 1}", 3, "without a high one");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": 1.5}", 3, "token id");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": -1}", 3, "token id");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": 01}", 3, "token id");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": 2}", 3, "out of range");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": 0}", 3, "already used at line 2");
    BAD_VOCAB("{\n\"a\": 0,\n\"a\": 1}", 3, "same bytes");
    BAD_VOCAB("{\n\"a\": 0,\n\"\xe4\xb8\xad\": 1}", 3, "U+4E2D is not");
    BAD_VOCAB("{\n\"a\": 0,\n\"\\u00ad\": 1}", 3, "U+00AD is not");
    BAD_VOCAB("{\n\"a\": 0,\n\"\xff\": 1}", 3, "invalid UTF-8");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\t\": 1}", 3, "control character");
    BAD_VOCAB("{\n\"a\": 0\n}\n,", 4, "after the object");
    BAD_VOCAB("{\n\"a\": 0,\n\"b\": 1", 3, "expected ',' or '}'");
    BAD_VOCAB("{\n\"a\": 0,\n}", 3, "string key");
    BAD_VOCAB("{\n\"a\" 0}", 2, "':'");
    BAD_VOCAB("{\"!\": 0}", 1, "no token for the byte 0x00");
#undef BAD_VOCAB
#define BAD_MERGES(text, line, what) expect_bad_hf(dir, "merges.txt", text, line, what)
    BAD_MERGES("#version: 0.2\nh e\na b\n", 3, "merge result 'ab'");
    BAD_MERGES("h e\nzz e\n", 2, "'zz' is not a token");
    BAD_MERGES("h e\nz<|endoftext|> e\n", 2, "is not a token");
    BAD_MERGES("h e\n\n\xc4\xa0 t\n", 2, "blank line");
    BAD_MERGES("h  e\n", 1, "one space");
    BAD_MERGES("h e\nh e\n", 2, "already merge 0");
    BAD_MERGES("h \xc3\n", 1, "invalid UTF-8");
#undef BAD_MERGES
    /* Blank lines at the end are allowed. */
    write_file(path_in(dir, "merges.txt"), "#version: 0.2\nh e\n\n\n", 19);
    data_tokenizer *tok;
    data_error_t err = "";
    assert_int_equal(data_tok_load(&tok, dir, err), DATA_OK);
    CHECK(tok, "the", B('t'), HE);
    data_tok_free(tok);
    remove(path_in(dir, "merges.txt"));
    expect_load_fail(dir, path_in(dir, "merges.txt"), DATA_ERR_IO, 0, "cannot open");
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_tokenizer_shape),
        cmocka_unit_test(test_hand_encodings),
        cmocka_unit_test(test_eot_text_is_literal),
        cmocka_unit_test(test_from_merges_runs),
        cmocka_unit_test(test_from_merges_errors),
        cmocka_unit_test(test_rank_inversion),
        cmocka_unit_test(test_stale_pairs),
        cmocka_unit_test(test_pretok_fixture),
        cmocka_unit_test(test_matches_naive_bpe),
        cmocka_unit_test(test_properties_learnt),
        cmocka_unit_test(test_properties_hand),
        cmocka_unit_test(test_save_load_learnt),
        cmocka_unit_test(test_save_load_hand),
        cmocka_unit_test(test_bad_gptrain_files),
        cmocka_unit_test(test_bad_hf_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

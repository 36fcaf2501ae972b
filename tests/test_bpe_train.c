/* test_bpe_train.c: unit tests of the BPE trainer (data_bpe_trainer_*).
 *
 * The trainer's result is only visible through the tokenizer it builds, so
 * the tests read merges back as token bytes: merge i is token 256 + i. A
 * small corpus is worked out by hand (exact merges and both tie-breaks), a
 * brute-force trainer that recounts every pair at every step checks the
 * incremental one on random text full of ties, and the remaining tests pin
 * down properties: order independence, merges inside pieces only, early
 * stop, errors, and a lossless round trip through the encoder. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

static const char *const prose =
    "It's the end of the world as we know it, and I feel fine. The world's "
    "end isn't near; we'll see the    end when we've seen it. 12 monkeys, 365 "
    "days, 2024 years: numbers 1234567 and 12 and 365 again. Déjà vu, café, "
    "naïve résumé — ünïcödé wörds wörds wörds.\n\n\tIndented\n  lines\n  lines\n"
    "the the the the end end end!!! ??? ... --- *** the end.\n";

static data_tokenizer *train_docs(const char *const *docs, int ndocs, int vocab)
{
    data_bpe_trainer *t = data_bpe_trainer_new();
    data_error_t err = "";
    assert_non_null(t);
    for (int i = 0; i < ndocs; i++)
        assert_int_equal(data_bpe_trainer_add(t, (const unsigned char *)docs[i],
                                               strlen(docs[i]), err),
                         DATA_OK);
    data_tokenizer *tok = NULL;
    assert_int_equal(data_bpe_trainer_finish(t, vocab, &tok, err), DATA_OK);
    data_bpe_trainer_free(t);
    return tok;
}

static void assert_token(const data_tokenizer *tok, int id, const char *bytes)
{
    size_t len = 0;
    const unsigned char *p = data_tok_token(tok, id, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(bytes));
    assert_memory_equal(p, bytes, len);
}

static void assert_same_tokenizer(const data_tokenizer *x, const data_tokenizer *y)
{
    assert_int_equal(data_tok_vocab_size(x), data_tok_vocab_size(y));
    assert_int_equal(data_tok_eot(x), data_tok_eot(y));
    for (int id = 0; id < data_tok_vocab_size(x); id++) {
        size_t lx, ly;
        const unsigned char *px = data_tok_token(x, id, &lx), *py = data_tok_token(y, id, &ly);
        assert_int_equal(lx, ly);
        assert_memory_equal(px, py, lx);
    }
}

/* "aaabdaaabac": aa (4) -> 256; then 256a and ab tie at 2 and ab wins, its
 * ids (97, 98) being smaller than (256, 97); then 256 257 -> "aaab"; then
 * every pair occurs once and training stops with 3 of the 743 merges. */
static void test_hand_worked_merges(void **state)
{
    const char *docs[] = {"aaabdaaabac"};
    data_tokenizer *tok = train_docs(docs, 1, 1000);
    assert_int_equal(data_tok_vocab_size(tok), 260);
    assert_int_equal(data_tok_eot(tok), 259);
    assert_token(tok, 256, "aa");
    assert_token(tok, 257, "ab");
    assert_token(tok, 258, "aaab");
    assert_token(tok, 259, DATA_EOT_TEXT);
    data_tok_free(tok);

    tok = train_docs(docs, 1, 258); /* room for one merge only */
    assert_int_equal(data_tok_vocab_size(tok), 258);
    assert_int_equal(data_tok_eot(tok), 257);
    assert_token(tok, 256, "aa");
    data_tok_free(tok);
}

/* Equal counts go to the smaller left id, then the smaller right id. */
static void test_tie_break(void **state)
{
    const char *right[] = {"xz", "xy", "xz", "xy"};
    data_tokenizer *tok = train_docs(right, 4, 300);
    assert_int_equal(data_tok_vocab_size(tok), 259);
    assert_token(tok, 256, "xy");
    assert_token(tok, 257, "xz");
    data_tok_free(tok);

    const char *left[] = {"bz", "az", "bz", "az"};
    tok = train_docs(left, 4, 300);
    assert_token(tok, 256, "az");
    assert_token(tok, 257, "bz");
    data_tok_free(tok);
}

/* Each add() is its own text: "x" then "y" never form the pair xy. */
static void test_early_stop(void **state)
{
    const char *once[] = {"abcdefg hijk"};
    data_tokenizer *tok = train_docs(once, 1, 50000);
    assert_int_equal(data_tok_vocab_size(tok), 257);
    assert_int_equal(data_tok_eot(tok), 256);
    data_tok_free(tok);

    const char *apart[] = {"x", "y", "x", "y", "x", "y"};
    tok = train_docs(apart, 6, 1000);
    assert_int_equal(data_tok_vocab_size(tok), 257);
    data_tok_free(tok);

    const char *together[] = {"xy", "xy", "xy"};
    tok = train_docs(together, 3, 1000);
    assert_int_equal(data_tok_vocab_size(tok), 258);
    assert_token(tok, 256, "xy");
    data_tok_free(tok);
}

static void test_errors_and_empty(void **state)
{
    data_bpe_trainer *t = data_bpe_trainer_new();
    data_error_t err = "";
    data_tokenizer *tok = NULL;
    assert_int_equal(data_bpe_trainer_finish(t, 256, &tok, err), DATA_ERR_ARG);
    assert_null(tok);
    assert_non_null(strstr(err, "256"));
    assert_int_equal(data_bpe_trainer_finish(t, INT_MAX, &tok, err), DATA_ERR_ARG);
    assert_null(tok);
    assert_int_equal(data_bpe_trainer_add(t, NULL, 5, err), DATA_ERR_ARG);
    assert_int_equal(data_bpe_trainer_add(t, NULL, 0, err), DATA_OK);

    assert_int_equal(data_bpe_trainer_finish(t, 257, &tok, err), DATA_OK);
    assert_int_equal(data_tok_vocab_size(tok), 257);
    assert_int_equal(data_tok_eot(tok), 256);
    assert_token(tok, 256, DATA_EOT_TEXT);
    data_tok_free(tok);
    data_bpe_trainer_free(t);
    data_bpe_trainer_free(NULL);
}

/* The pieces of text, as separate strings (the caller frees them). */
static int split_pieces(const char *text, char **pieces, int max)
{
    int n = 0;
    size_t len = strlen(text);
    for (size_t i = 0; i < len; n++) {
        size_t k = data_pretok_next((const unsigned char *)text + i, len - i);
        assert_true(n < max);
        pieces[n] = strndup(text + i, k);
        i += k;
    }
    return n;
}

/* The same pieces fed whole, or piece by piece backwards (twice over, as
 * two halves of the corpus), train the same tokenizer. */
static void test_order_independent(void **state)
{
    char *pieces[1024];
    int n = split_pieces(prose, pieces, 1024);
    const char *whole[] = {prose, prose};
    data_tokenizer *a = train_docs(whole, 2, 400);

    const char *backwards[2048];
    for (int i = 0; i < n; i++)
        backwards[i] = backwards[n + i] = pieces[n - 1 - i];
    data_tokenizer *b = train_docs(backwards, 2 * n, 400);
    assert_same_tokenizer(a, b);
    assert_true(data_tok_vocab_size(a) > 300);
    data_tok_free(a);
    data_tok_free(b);
    for (int i = 0; i < n; i++)
        free(pieces[i]);
}

/* Every learned token lies inside one piece of the training text, though
 * pairs across pieces ("e", " " in "the the") are the most frequent. */
static void test_merges_stay_in_pieces(void **state)
{
    char *pieces[1024];
    int n = split_pieces(prose, pieces, 1024);
    const char *docs[] = {prose, prose, prose};
    data_tokenizer *tok = train_docs(docs, 3, 100000);
    int vocab = data_tok_vocab_size(tok);
    assert_true(vocab > 300 && vocab < 100000);
    for (int id = 256; id < vocab - 1; id++) {
        size_t len;
        const unsigned char *p = data_tok_token(tok, id, &len);
        int inside = 0;
        for (int i = 0; i < n && !inside; i++)
            inside = memmem(pieces[i], strlen(pieces[i]), p, len) != NULL;
        assert_true(inside);
    }
    data_tok_free(tok);
    for (int i = 0; i < n; i++)
        free(pieces[i]);
}

/* A huge piece is trained on in chunks of at most 256 bytes. */
static void test_long_piece(void **state)
{
    size_t n = 100000;
    char *text = malloc(n + 1);
    memset(text, ' ', n);
    text[n] = '\0';
    const char *docs[] = {text};
    data_tokenizer *tok = train_docs(docs, 1, 1000);
    int vocab = data_tok_vocab_size(tok);
    assert_int_equal(vocab, 256 + 8 + 1); /* 2, 4, ..., 256 spaces */
    size_t len;
    data_tok_token(tok, vocab - 2, &len);
    assert_int_equal(len, 256);
    data_tok_free(tok);
    free(text);
}

static void test_round_trip(void **state)
{
    const char *docs[] = {prose};
    data_tokenizer *tok = train_docs(docs, 1, 512);
    data_encoder *enc = data_encoder_new(tok);
    assert_non_null(enc);
    data_tokens out = {0};
    data_error_t err = "";
    size_t len = strlen(prose);
    assert_int_equal(data_encode(enc, (const unsigned char *)prose, len, &out, err), DATA_OK);
    assert_true(out.len < len);
    char *back = malloc(len);
    size_t at = 0;
    for (size_t i = 0; i < out.len; i++) {
        size_t k;
        const unsigned char *p = data_tok_token(tok, (int)out.ids[i], &k);
        assert_true(at + k <= len);
        memcpy(back + at, p, k);
        at += k;
    }
    assert_int_equal(at, len);
    assert_memory_equal(back, prose, len);
    free(back);
    data_tokens_free(&out);
    data_encoder_free(enc);
    data_tok_free(tok);
}

/* ---- brute force ---------------------------------------------------------- */

typedef struct {
    uint32_t sym[64];
    int len;
} bf_word;

/* The textbook trainer: recount all pairs at every step. Returns the number
 * of merges and fills merges[] with the bytes of each new token. */
static int brute_force(bf_word *w, int nw, int max_merges, char (*merges)[64])
{
    static uint64_t count[1024][1024];
    static uint32_t seen[1 << 16][2];
    int n = 0;
    for (; n < max_merges; n++) {
        int nseen = 0;
        for (int i = 0; i < nw; i++)
            for (int k = 0; k + 1 < w[i].len; k++) {
                uint32_t l = w[i].sym[k], r = w[i].sym[k + 1];
                if (!count[l][r]++)
                    seen[nseen][0] = l, seen[nseen++][1] = r;
            }
        uint32_t a = seen[0][0], b = seen[0][1];
        for (int i = 1; i < nseen; i++) {
            uint32_t l = seen[i][0], r = seen[i][1];
            if (count[l][r] > count[a][b] ||
                (count[l][r] == count[a][b] && (l < a || (l == a && r < b))))
                a = l, b = r;
        }
        uint64_t best = nseen ? count[a][b] : 0;
        for (int i = 0; i < nseen; i++)
            count[seen[i][0]][seen[i][1]] = 0;
        if (best < 2)
            break;
        snprintf(merges[n], 64, "%s%s", a < 256 ? (char[]){(char)a, 0} : merges[a - 256],
                 b < 256 ? (char[]){(char)b, 0} : merges[b - 256]);
        for (int i = 0; i < nw; i++) {
            int j = 0;
            for (int k = 0; k < w[i].len; j++) {
                int hit = k + 1 < w[i].len && w[i].sym[k] == a && w[i].sym[k + 1] == b;
                w[i].sym[j] = hit ? 256u + n : w[i].sym[k];
                k += hit ? 2 : 1;
            }
            w[i].len = j;
        }
    }
    return n;
}

/* Random words over two or three letters, mostly a: runs like "aaaa" and
 * equal counts exercise overlapping pairs and tie-breaks. */
static void test_matches_brute_force(void **state)
{
    enum { NDOCS = 300, MERGES = 200 };
    static char (*merges)[64];
    merges = malloc(MERGES * sizeof *merges);
    srand(12345);
    for (int round = 0; round < 20; round++) {
        static char text[NDOCS][40];
        const char *docs[NDOCS];
        static bf_word w[NDOCS];
        for (int d = 0; d < NDOCS; d++) {
            int len = 2 + rand() % (round < 10 ? 6 : 30);
            for (int k = 0; k < len; k++) {
                text[d][k] = (char)("aab"[rand() % 3] + (round % 2 ? rand() % 2 : 0));
                w[d].sym[k] = (unsigned char)text[d][k];
            }
            text[d][len] = '\0';
            w[d].len = len;
            docs[d] = text[d];
        }
        int n = brute_force(w, NDOCS, MERGES, merges);
        data_tokenizer *tok = train_docs(docs, NDOCS, 257 + MERGES);
        assert_int_equal(data_tok_vocab_size(tok), 257 + n);
        for (int i = 0; i < n; i++)
            assert_token(tok, 256 + i, merges[i]);
        data_tok_free(tok);
    }
    free(merges);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_worked_merges),
        cmocka_unit_test(test_tie_break),
        cmocka_unit_test(test_early_stop),
        cmocka_unit_test(test_errors_and_empty),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_merges_stay_in_pieces),
        cmocka_unit_test(test_long_piece),
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_tokenizer.c: libFuzzer harness for the tokenizer's loaders and
 * encoder (data/bpe*.c).
 *
 * An input starting with '{' is GPT-2's Hugging Face layout: vocab.json up
 * to the first NUL byte, merges.txt after it; any other input is a gptrain
 * tokenizer file. It is written to a temporary file and loaded. When it
 * loads, a fixed string and the input itself are encoded; each must decode
 * back to the bytes encoded, encoding twice must give the same ids, and the
 * ids must be those of GPT-2's bpe() done the naive way (on the tokenizer's
 * internals, bpe_internal.h). A mismatch aborts: that is a finding. Load
 * errors are expected, not findings.
 *
 * Build and run from the repository root:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -Idata data/bpe*.c data/pretok.c data/unicode_tables.c data/shard.c \
 *     tests/fuzz_tokenizer.c -o /tmp/fuzz_tok
 *   mkdir -p /tmp/fuzz_tok_corpus
 *   { echo gptrain-tokenizer 1; echo vocab 259; echo eot 258;
 *     for i in $(seq 0 255); do printf '%02x\n' $i; done;
 *     echo 6162; echo 616263; echo 3c7c656e646f66746578747c3e;
 *     echo merges 2; echo 97 98 256; echo 256 99 257; } > /tmp/fuzz_tok_corpus/seed
 *   /tmp/fuzz_tok /tmp/fuzz_tok_corpus -max_len=8192 -max_total_time=300
 * The temporary files live in a /tmp/fuzz_tok_XXXXXX directory, left behind
 * on exit (libFuzzer gives the harness no hook to remove them). */
#include "bpe_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The temporary directory and its three files, opened on the first run. */
static char dir[] = "/tmp/fuzz_tok_XXXXXX";
static char tok_path[64], vocab_path[64], merges_path[64];
static int tok_fd = -1, vocab_fd = -1, merges_fd = -1;

static int open_in_dir(char *path, const char *name)
{
    snprintf(path, 64, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    return fd;
}

static void setup(void)
{
    if (tok_fd >= 0)
        return;
    if (!mkdtemp(dir))
        abort();
    tok_fd = open_in_dir(tok_path, "tok.txt");
    vocab_fd = open_in_dir(vocab_path, "vocab.json");
    merges_fd = open_in_dir(merges_path, "merges.txt");
}

/* Replaces the contents of the file open as fd with data. */
static void put(int fd, const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
}

/* GPT-2's bpe() on the n ids of one piece, done naively: merge every
 * occurrence of the best-ranked pair, left to right, until none is ranked. */
static size_t naive_bpe(const data_tokenizer *tok, uint32_t *word, size_t n)
{
    for (;;) {
        const bpe_merge_slot *best = NULL;
        for (size_t i = 0; i + 1 < n; i++) {
            const bpe_merge_slot *m = bpe_merge_find(tok, word[i], word[i + 1]);
            if (m && (!best || m->rank < best->rank))
                best = m;
        }
        if (!best)
            return n;
        uint32_t first = (uint32_t)(best->key >> 32), second = (uint32_t)best->key;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            int hit = i + 1 < n && word[i] == first && word[i + 1] == second;
            word[o++] = hit ? best->out : word[i];
            i += (size_t)hit;
        }
        n = o;
    }
}

/* Aborts unless ids (n of them) are what naive_bpe makes of text. */
static void check_naive(const data_tokenizer *tok, const uint8_t *text, size_t len,
                        const uint32_t *ids, size_t n)
{
    uint32_t *want = malloc((len + 1) * sizeof *want);
    size_t got = 0;
    for (size_t at = 0, k; at < len; at += k) {
        k = data_pretok_next(text + at, len - at);
        for (size_t i = 0; i < k; i++)
            want[got + i] = tok->byte_id[text[at + i]];
        got += naive_bpe(tok, want + got, k);
    }
    if (got != n || (n && memcmp(want, ids, n * sizeof *ids)))
        abort();
    free(want);
}

/* Encodes text twice; aborts unless the ids agree, decode to text and match
 * the naive bpe() (skipped for long text, where it is too slow). */
static void check_encoding(const data_tokenizer *tok, data_encoder *enc,
                           const uint8_t *text, size_t len)
{
    data_tokens a = {0}, b = {0};
    data_error_t err;
    if (data_encode(enc, text, len, &a, err) != DATA_OK ||
        data_encode(enc, text, len, &b, err) != DATA_OK)
        abort();
    if (a.len != b.len || (a.len && memcmp(a.ids, b.ids, a.len * sizeof *a.ids)))
        abort();
    size_t at = 0;
    for (size_t i = 0; i < a.len; i++) {
        size_t n;
        const unsigned char *bytes = data_tok_token(tok, (int)a.ids[i], &n);
        if (!bytes || (int)a.ids[i] == data_tok_eot(tok) || at + n > len ||
            memcmp(bytes, text + at, n))
            abort();
        at += n;
    }
    if (at != len)
        abort();
    if (len <= 2048)
        check_naive(tok, text, len, a.ids, a.len);
    data_tokens_free(&a);
    data_tokens_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    const char *path = tok_path;
    if (size > 0 && data[0] == '{') {
        const uint8_t *nul = memchr(data, '\0', size);
        size_t vlen = nul ? (size_t)(nul - data) : size;
        put(vocab_fd, data, vlen);
        put(merges_fd, data + vlen + (nul != NULL), size - vlen - (nul != NULL));
        path = dir;
    } else {
        put(tok_fd, data, size);
    }
    data_tokenizer *tok;
    data_error_t err;
    if (data_tok_load(&tok, path, err) != DATA_OK)
        return 0;
    static const char fixed[] =
        "Hello, world! It's 2024: caf\xc3\xa9 \xff\xfe  \n\n<|endoftext|> ";
    data_encoder *enc = data_encoder_new(tok);
    if (!enc)
        abort();
    check_encoding(tok, enc, (const uint8_t *)fixed, sizeof fixed - 1);
    check_encoding(tok, enc, data, size);
    data_encoder_free(enc);
    data_tok_free(tok);
    return 0;
}

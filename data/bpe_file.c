/* bpe_file.c: the gptrain tokenizer file (data/TOKENIZER.md): loading,
 * saving, and data_tok_load, which also accepts GPT-2's Hugging Face layout
 * (bpe_hf.c).
 *
 * The format is line-based text, one token or merge a line, so a tokenizer
 * can be read and diffed by eye; token bytes are hex because tokens hold
 * arbitrary bytes (newlines, invalid UTF-8). The loader is strict: anything
 * it does not expect is an error naming the file and line, never a guess,
 * since a tokenizer that loads slightly wrong silently corrupts every shard
 * made with it. */
#include "bpe_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC_LINE "gptrain-tokenizer 1"
#define FIRST_TOKEN_LINE 4
/* A bound on what bpe_read_file reads, so that a wrong path (a device, a
 * huge file) fails instead of eating all memory. */
#define MAX_FILE ((size_t)1 << 30)

/* Doubles the buffer b of *cap bytes (plus one for a NUL); frees it and
 * returns NULL when out of memory. */
static char *grow(char *b, size_t *cap)
{
    char *nb = realloc(b, 2 * *cap + 1);
    if (!nb)
        free(b);
    *cap *= 2;
    return nb;
}

data_status bpe_read_file(const char *path, char **buf, size_t *len, data_error_t err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return data_fail(err, DATA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *b = malloc(cap + 1);
    while (b && n <= MAX_FILE && (got = fread(b + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap)
            b = grow(b, &cap);
    int failed = !b || ferror(f);
    int saved_errno = errno;
    fclose(f);
    if (!b)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory reading the file", path);
    if (failed || n > MAX_FILE) {
        free(b);
        return failed ? data_fail(err, DATA_ERR_IO, "%s: cannot read: %s", path,
                                  strerror(saved_errno))
                      : data_fail(err, DATA_ERR_FORMAT, "%s: larger than %zu bytes, too "
                                  "large for a tokenizer", path, MAX_FILE);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return DATA_OK;
}

/* ---- reading lines ------------------------------------------------------ */

typedef struct {
    const char *path;
    const char *p, *end;
    int line; /* of the line last read */
} reader;

/* The next line (without its '\n') in *s and *n; 0 (and an empty line) at
 * the end of the file. */
static int next_line(reader *r, const char **s, size_t *n)
{
    *s = r->p;
    *n = 0;
    if (r->p == r->end)
        return 0;
    const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    *n = (size_t)((nl ? nl : r->end) - r->p);
    r->p = nl ? nl + 1 : r->end;
    r->line++;
    return 1;
}

static data_status expect_line(reader *r, const char **s, size_t *n, const char *what,
                               data_error_t err)
{
    if (next_line(r, s, n))
        return DATA_OK;
    return data_fail(err, DATA_ERR_FORMAT, "%s:%d: the file ends where %s was expected",
                     r->path, r->line + 1, what);
}

/* A decimal number in s[0..n): no "+", no leading zeros, at most 9 digits,
 * and "-" only with allow_neg and not before 0. Returns 1 and sets *v if so. */
static int parse_num(const char *s, size_t n, int allow_neg, long *v)
{
    int neg = allow_neg && n > 0 && s[0] == '-';
    s += neg;
    n -= (size_t)neg;
    if (n == 0 || n > 9 || (s[0] == '0' && n > 1))
        return 0;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = 10 * x + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return !neg || x > 0;
}

/* Reads the line "KEY NUMBER" with lo <= NUMBER <= hi into *v. */
static data_status keyword_line(reader *r, const char *key, long lo, long hi, long *v,
                                data_error_t err)
{
    const char *s;
    size_t n, k = strlen(key);
    data_status st = expect_line(r, &s, &n, key, err);
    if (st != DATA_OK)
        return st;
    if (n <= k || memcmp(s, key, k) || s[k] != ' ' ||
        !parse_num(s + k + 1, n - k - 1, lo < 0, v) || *v < lo || *v > hi)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s:%d: expected '%s N' with %ld <= N <= %ld", r->path, r->line,
                         key, lo, hi);
    return DATA_OK;
}

/* ---- loading ------------------------------------------------------------ */

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Checks the next token line (token i of vocab) and adds its byte count. */
static data_status scan_token(reader *r, long i, long vocab, uint64_t *total,
                              data_error_t err)
{
    const char *s;
    size_t n;
    data_status st = expect_line(r, &s, &n, "a token line", err);
    if (st != DATA_OK)
        return st;
    if (n >= 7 && !memcmp(s, "merges ", 7))
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s:%d: found the merges line where token %ld of %ld was "
                         "expected (wrong vocab count?)", r->path, r->line, i, vocab);
    for (size_t k = 0; k < n; k++)
        if (hex_digit(s[k]) < 0)
            return data_fail(err, DATA_ERR_FORMAT,
                             "%s:%d: token %ld: bad hex character at column %zu "
                             "(lowercase hex expected)", r->path, r->line, i, k + 1);
    if (n == 0 || n % 2)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s:%d: token %ld: expected a non-empty even number of hex "
                         "digits, got %zu", r->path, r->line, i, n);
    *total += n / 2;
    return DATA_OK;
}

/* Decodes the vocab token lines (already checked by scan_token) into tok. */
static void read_tokens(reader *r, data_tokenizer *tok)
{
    const char *s;
    size_t n;
    for (int i = 0; i < tok->vocab && next_line(r, &s, &n); i++) {
        unsigned char *dst = tok->bytes + tok->off[i];
        for (size_t k = 0; k < n; k += 2)
            *dst++ = (unsigned char)(hex_digit(s[k]) << 4 | hex_digit(s[k + 1]));
        tok->off[i + 1] = tok->off[i] + n / 2;
    }
}

/* Reads the merge lines "L R OUT" into tok->merges. */
static data_status read_merges(reader *r, data_tokenizer *tok, data_error_t err)
{
    for (int i = 0; i < tok->n_merges; i++) {
        const char *s;
        size_t n;
        data_status st = expect_line(r, &s, &n, "a merge line", err);
        if (st != DATA_OK)
            return st;
        const char *end = s + n;
        for (int k = 0; k < 3; k++) {
            const char *stop = k < 2 ? memchr(s, ' ', (size_t)(end - s)) : end;
            long v;
            if (!stop || !parse_num(s, (size_t)(stop - s), 0, &v))
                return data_fail(err, DATA_ERR_FORMAT,
                                 "%s:%d: merge %d: expected 'L R OUT' (three decimal ids)",
                                 r->path, r->line, i);
            tok->merges[i][k] = (uint32_t)v;
            s = stop + (k < 2);
        }
    }
    if (r->p != r->end)
        return data_fail(err, DATA_ERR_FORMAT,
                         "%s:%d: unexpected text after the last merge", r->path,
                         r->line + 1);
    return DATA_OK;
}

/* Reads everything after the header (vocab tokens, eot) into a new *out. */
static data_status load_body(reader *r, long vocab, long eot, data_tokenizer **out,
                             data_error_t err)
{
    reader tokens_at = *r;
    uint64_t total = 0;
    data_status st = DATA_OK;
    for (long i = 0; i < vocab && st == DATA_OK; i++)
        st = scan_token(r, i, vocab, &total, err);
    long n_merges;
    if (st == DATA_OK)
        st = keyword_line(r, "merges", 0, BPE_MAX_VOCAB, &n_merges, err);
    if (st != DATA_OK)
        return st;
    int merge_line0 = r->line + 1;
    data_tokenizer *tok = bpe_alloc((int)vocab, total, (int)n_merges);
    if (!tok)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", r->path);
    read_tokens(&tokens_at, tok);
    tok->eot = (int)eot;
    bpe_where w = {r->path, NULL, FIRST_TOKEN_LINE, 2, r->path, merge_line0};
    st = read_merges(r, tok, err);
    if (st != DATA_OK) {
        data_tok_free(tok);
        return st;
    }
    return bpe_finish(tok, &w, out, err);
}

static data_status load_gptrain(data_tokenizer **out, const char *path, const char *buf,
                                size_t len, data_error_t err)
{
    reader r = {path, buf, buf + len, 0};
    const char *s;
    size_t n;
    if (!next_line(&r, &s, &n) || n != strlen(MAGIC_LINE) || memcmp(s, MAGIC_LINE, n))
        return data_fail(err, DATA_ERR_FORMAT, "%s:1: not a gptrain tokenizer file (the "
                         "first line must be '%s')", path, MAGIC_LINE);
    long vocab, eot;
    data_status st = keyword_line(&r, "vocab", 256, BPE_MAX_VOCAB, &vocab, err);
    if (st == DATA_OK)
        st = keyword_line(&r, "eot", -1, vocab - 1, &eot, err);
    if (st == DATA_OK)
        st = load_body(&r, vocab, eot, out, err);
    return st;
}

data_status data_tok_load(data_tokenizer **out, const char *path, data_error_t err)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return data_fail(err, DATA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return bpe_hf_load(out, path, err);
    char *buf;
    size_t len;
    data_status st = bpe_read_file(path, &buf, &len, err);
    if (st != DATA_OK)
        return st;
    st = load_gptrain(out, path, buf, len, err);
    free(buf);
    return st;
}

/* ---- saving ------------------------------------------------------------- */

static void write_body(FILE *f, const data_tokenizer *tok)
{
    static const char hex[] = "0123456789abcdef";
    fprintf(f, "%s\nvocab %d\neot %d\n", MAGIC_LINE, tok->vocab, tok->eot);
    for (int i = 0; i < tok->vocab; i++) {
        for (uint64_t k = tok->off[i]; k < tok->off[i + 1]; k++) {
            putc(hex[tok->bytes[k] >> 4], f);
            putc(hex[tok->bytes[k] & 15], f);
        }
        putc('\n', f);
    }
    fprintf(f, "merges %d\n", tok->n_merges);
    for (int i = 0; i < tok->n_merges; i++)
        fprintf(f, "%u %u %u\n", tok->merges[i][0], tok->merges[i][1], tok->merges[i][2]);
}

data_status data_tok_save(const data_tokenizer *tok, const char *path, data_error_t err)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    data_status st = DATA_OK;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        st = data_fail(err, DATA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        write_body(f, tok);
        int bad = ferror(f);
        if (fclose(f) != 0 || bad)
            st = data_fail(err, DATA_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            st = data_fail(err, DATA_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                           strerror(errno));
        if (st != DATA_OK)
            remove(tmp);
    }
    free(tmp);
    return st;
}

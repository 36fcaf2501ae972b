/* bpe_hf.c: loads GPT-2's tokenizer as Hugging Face ships it: a directory
 * with vocab.json ({"token": id, ...}, read by bpe_json.c) and merges.txt
 * ("A B" per line, in priority order, after an optional "#version" line),
 * both in GPT-2's bytes_to_unicode alphabet. The key "<|endoftext|>" is the
 * end-of-text token. Every merge must name tokens of vocab.json, its result
 * included, so that this tokenizer's ids are GPT-2's. */
#include "bpe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- merges.txt --------------------------------------------------------- */

/* Everything both files' readers share while the tokenizer is built. */
typedef struct {
    const char *vocab_path, *merges_path;
    char *vocab_buf, *merges_buf;
    size_t vocab_len, merges_len;
    const char *merges_at;   /* the first merge line */
    int merge_line0, n_merges;
    unsigned char *scratch;  /* a merge line's bytes */
} hf_files;

/* The next line of [*p, end) in *s, *n; 0 at the end. */
static int next_line(const char **p, const char *end, const char **s, size_t *n)
{
    if (*p == end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    *s = *p;
    *n = (size_t)((nl ? nl : end) - *p);
    *p = nl ? nl + 1 : end;
    return 1;
}

/* Finds the merge lines: after an optional "#version" line, up to the blank
 * lines that may end the file (blank lines elsewhere are an error). */
static data_status merges_span(hf_files *f, data_error_t err)
{
    const char *p = f->merges_buf, *end = p + f->merges_len, *s;
    size_t n;
    int line = 1, blank = 0;
    if (f->merges_len >= 8 && !memcmp(p, "#version", 8)) {
        next_line(&p, end, &s, &n);
        line++;
    }
    f->merges_at = p;
    f->merge_line0 = line;
    f->n_merges = 0;
    for (; next_line(&p, end, &s, &n); line++) {
        if (n == 0 && !blank)
            blank = line;
        if (n > 0 && blank)
            return data_fail(err, DATA_ERR_FORMAT, "%s:%d: blank line among the merges",
                             f->merges_path, blank);
        if (n > 0 && ++f->n_merges > BPE_MAX_VOCAB)
            return data_fail(err, DATA_ERR_FORMAT, "%s:%d: more than %d merges",
                             f->merges_path, line, BPE_MAX_VOCAB);
    }
    return DATA_OK;
}

/* Maps the symbols of s[0..n) to raw bytes at out; *len gets their count. */
static data_status symbols_to_bytes(const hf_files *f, int line, const unsigned char *s,
                                    size_t n, unsigned char *out, size_t *len,
                                    data_error_t err)
{
    *len = 0;
    for (size_t k = 0, step; k < n; k += step) {
        uint32_t cp;
        step = bpe_utf8_decode(s + k, n - k, &cp);
        int b = step ? bpe_symbol_byte(cp) : -1;
        if (!step)
            return data_fail(err, DATA_ERR_FORMAT, "%s:%d: invalid UTF-8", f->merges_path,
                             line);
        if (b < 0)
            return data_fail(err, DATA_ERR_FORMAT, "%s:%d: U+%04X is not one of GPT-2's "
                             "byte symbols", f->merges_path, line, cp);
        out[(*len)++] = (unsigned char)b;
    }
    return DATA_OK;
}

/* The id of the token with bytes b[0..n), spelt s[0..sn) in the file. */
static data_status find_token(const data_tokenizer *tok, const hf_files *f, int line,
                              const unsigned char *b, size_t n, const char *s, size_t sn,
                              uint32_t *id, data_error_t err)
{
    int v = bpe_find(tok, b, n);
    if (v < 0)
        return data_fail(err, DATA_ERR_FORMAT, "%s:%d: '%.*s' is not a token in %s",
                         f->merges_path, line, (int)(sn < 64 ? sn : 64), s, f->vocab_path);
    *id = (uint32_t)v;
    return DATA_OK;
}

/* Reads the merge line s[0..n) ("A B") at the given line into m. */
static data_status hf_merge(const data_tokenizer *tok, const hf_files *f, int line,
                            const char *s, size_t n, uint32_t m[3], data_error_t err)
{
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
        return data_fail(err, DATA_ERR_FORMAT, "%s:%d: expected two tokens separated by "
                         "one space", f->merges_path, line);
    const unsigned char *u = (const unsigned char *)s;
    size_t la, lb, na = (size_t)(sp - s);
    data_status st = symbols_to_bytes(f, line, u, na, f->scratch, &la, err);
    if (st == DATA_OK)
        st = symbols_to_bytes(f, line, u + na + 1, n - na - 1, f->scratch + la, &lb, err);
    if (st == DATA_OK)
        st = find_token(tok, f, line, f->scratch, la, s, na, &m[0], err);
    if (st == DATA_OK)
        st = find_token(tok, f, line, f->scratch + la, lb, sp + 1, n - na - 1, &m[1], err);
    if (st == DATA_OK && bpe_find(tok, f->scratch, la + lb) < 0)
        return data_fail(err, DATA_ERR_FORMAT, "%s:%d: the merge result '%.*s%.*s' is not "
                         "a token in %s", f->merges_path, line, (int)(na < 64 ? na : 64), s,
                         (int)(n - na - 1 < 64 ? n - na - 1 : 64), sp + 1, f->vocab_path);
    if (st == DATA_OK)
        m[2] = (uint32_t)bpe_find(tok, f->scratch, la + lb);
    return st;
}

static data_status read_merges(data_tokenizer *tok, const hf_files *f, data_error_t err)
{
    const char *p = f->merges_at, *end = f->merges_buf + f->merges_len, *s;
    size_t n;
    for (int i = 0; i < f->n_merges && next_line(&p, end, &s, &n); i++) {
        data_status st = hf_merge(tok, f, f->merge_line0 + i, s, n, tok->merges[i], err);
        if (st != DATA_OK)
            return st;
    }
    bpe_where w = {f->vocab_path, NULL, 0, 1, f->merges_path, f->merge_line0};
    return bpe_set_merges(tok, &w, err);
}

/* ---- putting it together ------------------------------------------------ */

/* slot[id] = the entry holding id, checking that the n entries use each id
 * of 0..n-1 exactly once. */
static data_status place_ids(const bpe_vocab *v, const hf_files *f, long *slot,
                             data_error_t err)
{
    long n = (long)v->n;
    for (long i = 0; i < n; i++)
        slot[i] = -1;
    for (long k = 0; k < n; k++) {
        const bpe_vocab_entry *e = &v->entries[k];
        if (e->id >= n)
            return data_fail(err, DATA_ERR_FORMAT,
                             "%s:%d: id %ld is out of range (the %ld tokens need ids 0 "
                             "to %ld)", f->vocab_path, e->line, e->id, n, n - 1);
        if (slot[e->id] >= 0)
            return data_fail(err, DATA_ERR_FORMAT,
                             "%s:%d: id %ld is already used at line %d", f->vocab_path,
                             e->line, e->id, v->entries[slot[e->id]].line);
        slot[e->id] = k;
    }
    return DATA_OK;
}

/* Puts the vocab.json tokens, by id, into a new tokenizer with room for the
 * merges, and validates them. */
static data_status build_tokens(const bpe_vocab *v, const hf_files *f,
                                data_tokenizer **out, data_error_t err)
{
    long n = (long)v->n;
    long *slot = malloc(((size_t)n + 1) * sizeof *slot);
    int *lines = malloc(((size_t)n + 1) * sizeof *lines);
    data_tokenizer *tok =
        slot && lines ? bpe_alloc((int)n, v->keys_len, f->n_merges) : NULL;
    data_status st = tok ? place_ids(v, f, slot, err)
                         : data_fail(err, DATA_ERR_NOMEM, "%s: out of memory",
                                     f->vocab_path);
    const size_t eot_len = strlen(DATA_EOT_TEXT);
    for (long i = 0; i < n && st == DATA_OK; i++) {
        const bpe_vocab_entry *e = &v->entries[slot[i]];
        memcpy(tok->bytes + tok->off[i], v->keys + e->off, e->len);
        tok->off[i + 1] = tok->off[i] + e->len;
        lines[i] = e->line;
        if (e->len == eot_len && !memcmp(v->keys + e->off, DATA_EOT_TEXT, eot_len))
            tok->eot = (int)i;
    }
    bpe_where w = {f->vocab_path, lines, 0, 1, f->merges_path, f->merge_line0};
    if (st == DATA_OK)
        st = bpe_set_tokens(tok, &w, err);
    free(slot);
    free(lines);
    if (st != DATA_OK)
        data_tok_free(tok);
    else
        *out = tok;
    return st;
}

/* dir/name, without doubling a trailing '/'; NULL when out of memory. */
static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    int slash = n > 0 && dir[n - 1] == '/';
    char *p = malloc(n + strlen(name) + 2);
    if (p)
        sprintf(p, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

/* Reads and parses both files, then builds the tokenizer into *out. */
static data_status hf_build(hf_files *f, data_tokenizer **out, data_error_t err)
{
    data_status st = bpe_read_file(f->vocab_path, &f->vocab_buf, &f->vocab_len, err);
    if (st == DATA_OK)
        st = bpe_read_file(f->merges_path, &f->merges_buf, &f->merges_len, err);
    if (st == DATA_OK)
        st = merges_span(f, err);
    if (st != DATA_OK)
        return st;
    f->scratch = malloc(f->merges_len + 1);
    if (!f->scratch)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", f->merges_path);
    bpe_vocab v;
    st = bpe_vocab_parse(&v, f->vocab_path, f->vocab_buf, f->vocab_len, err);
    if (st != DATA_OK)
        return st;
    data_tokenizer *tok = NULL;
    st = build_tokens(&v, f, &tok, err);
    bpe_vocab_free(&v);
    if (st == DATA_OK)
        st = read_merges(tok, f, err);
    if (st != DATA_OK)
        data_tok_free(tok);
    else
        *out = tok;
    return st;
}

data_status bpe_hf_load(data_tokenizer **out, const char *dir, data_error_t err)
{
    hf_files f = {0};
    char *vpath = path_join(dir, "vocab.json"), *mpath = path_join(dir, "merges.txt");
    f.vocab_path = vpath;
    f.merges_path = mpath;
    data_status st = vpath && mpath
                         ? hf_build(&f, out, err)
                         : data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", dir);
    free(f.vocab_buf);
    free(f.merges_buf);
    free(f.scratch);
    free(vpath);
    free(mpath);
    return st;
}

/* bpe.c: the byte-level BPE tokenizer's representation (bpe_internal.h):
 * building it from a merge list, validating what the file loaders read, and
 * the accessors of data.h.
 *
 * Every loader ends here, so the invariants the encoder relies on are
 * checked in one place: all 256 bytes have a token, no two tokens share
 * their bytes (merges are looked up by id, which GPT-2's string-based bpe()
 * only matches when bytes identify tokens), and each merge's result is the
 * concatenation of its two parts (so decoding gives back the input). */
#include "bpe_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t bpe_hash(const unsigned char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
    for (; len >= 8; s += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    return bpe_mix(h ^ w);
}

/* The smallest power of two >= 2n (and >= 16): hash tables stay at most half
 * full, which keeps probe runs short. */
static size_t table_size(size_t n)
{
    size_t c = 16;
    while (c < 2 * n)
        c *= 2;
    return c;
}

data_tokenizer *bpe_alloc(int vocab, uint64_t total_bytes, int n_merges)
{
    data_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return NULL;
    tok->vocab = vocab;
    tok->eot = -1;
    tok->n_merges = n_merges;
    tok->off = calloc((size_t)vocab + 1, sizeof *tok->off);
    tok->bytes = malloc(total_bytes ? (size_t)total_bytes : 1);
    tok->merges = malloc(((size_t)n_merges + 1) * sizeof *tok->merges);
    if (!tok->off || !tok->bytes || !tok->merges) {
        data_tok_free(tok);
        return NULL;
    }
    return tok;
}

/* Fails with "FILE:LINE: message" and status st, or for a tokenizer that was
 * not read from a file, whose contents are the caller's arguments, with
 * "data_tok_from_merges: ITEM INDEX: message" and DATA_ERR_ARG. */
__attribute__((format(printf, 7, 8)))
static data_status item_fail(data_error_t err, const char *file, int line,
                             const char *item, long index, data_status st,
                             const char *fmt, ...)
{
    char msg[DATA_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (file)
        return data_fail(err, st, "%s:%d: %s", file, line, msg);
    return data_fail(err, DATA_ERR_ARG, "data_tok_from_merges: %s %ld: %s", item, index,
                     msg);
}

static size_t tok_len(const data_tokenizer *tok, uint32_t id)
{
    return (size_t)(tok->off[id + 1] - tok->off[id]);
}

static const unsigned char *tok_bytes(const data_tokenizer *tok, uint32_t id)
{
    return tok->bytes + tok->off[id];
}

/* The index slot holding s, or the free slot where it would go. */
static size_t index_slot(const data_tokenizer *tok, const unsigned char *s, size_t len)
{
    size_t i = bpe_hash(s, len) & tok->index_mask;
    for (;; i = (i + 1) & tok->index_mask) {
        uint32_t v = tok->index[i];
        if (v == 0 ||
            (tok_len(tok, v - 1) == len && !memcmp(tok_bytes(tok, v - 1), s, len)))
            return i;
    }
}

int bpe_find(const data_tokenizer *tok, const unsigned char *s, size_t len)
{
    return (int)tok->index[index_slot(tok, s, len)] - 1;
}

data_status bpe_set_tokens(data_tokenizer *tok, const bpe_where *w, data_error_t err)
{
    size_t cap = table_size((size_t)tok->vocab);
    tok->index = calloc(cap, sizeof *tok->index);
    if (!tok->index)
        return data_fail(err, DATA_ERR_NOMEM, "tokenizer: out of memory");
    tok->index_mask = cap - 1;
    memset(tok->byte_id, 0xff, sizeof tok->byte_id);
    const size_t eot_len = strlen(DATA_EOT_TEXT);
    for (int i = 0; i < tok->vocab; i++) {
        int line = w->tok_lines ? w->tok_lines[i] : w->tok_line0 + i;
        const unsigned char *b = tok_bytes(tok, (uint32_t)i);
        size_t len = tok_len(tok, (uint32_t)i);
        if (len == 0)
            return item_fail(err, w->tok_file, line, "token", i, DATA_ERR_FORMAT,
                             "token %d is empty", i);
        if (i == tok->eot) {
            if (len != eot_len || memcmp(b, DATA_EOT_TEXT, eot_len))
                return item_fail(err, w->tok_file, line, "token", i, DATA_ERR_FORMAT,
                                 "the end-of-text token %d must be %s", i, DATA_EOT_TEXT);
            continue; /* kept out of the index: encoding never produces it */
        }
        size_t slot = index_slot(tok, b, len);
        if (tok->index[slot])
            return item_fail(err, w->tok_file, line, "token", i, DATA_ERR_FORMAT,
                             "token %d has the same bytes as token %u", i,
                             tok->index[slot] - 1);
        tok->index[slot] = (uint32_t)i + 1;
        if (len == 1)
            tok->byte_id[b[0]] = (uint32_t)i;
    }
    for (int c = 0; c < 256; c++)
        if (tok->byte_id[c] == UINT32_MAX)
            return item_fail(err, w->tok_file, w->vocab_line, "byte", c, DATA_ERR_FORMAT,
                             "no token for the byte 0x%02x (every byte needs one)", c);
    return DATA_OK;
}

/* Checks merge i against the tokens: ids in range, not EOT, and the result's
 * bytes the concatenation of the parts'. */
static data_status check_merge(const data_tokenizer *tok, int i, const bpe_where *w,
                               data_error_t err)
{
    const uint32_t *m = tok->merges[i];
    int line = w->merge_line0 + i;
    for (int k = 0; k < 3; k++) {
        if (m[k] >= (uint32_t)tok->vocab)
            return item_fail(err, w->merge_file, line, "merge", i, DATA_ERR_FORMAT,
                             "id %u is out of range (vocab %d)", m[k], tok->vocab);
        if ((int)m[k] == tok->eot)
            return item_fail(err, w->merge_file, line, "merge", i, DATA_ERR_FORMAT,
                             "the end-of-text token %u cannot take part in a merge", m[k]);
    }
    size_t ll = tok_len(tok, m[0]), lr = tok_len(tok, m[1]);
    const unsigned char *out = tok_bytes(tok, m[2]);
    if (tok_len(tok, m[2]) != ll + lr || memcmp(out, tok_bytes(tok, m[0]), ll) ||
        memcmp(out + ll, tok_bytes(tok, m[1]), lr))
        return item_fail(err, w->merge_file, line, "merge", i, DATA_ERR_FORMAT,
                         "token %u is not token %u followed by token %u", m[2], m[0], m[1]);
    return DATA_OK;
}

data_status bpe_set_merges(data_tokenizer *tok, const bpe_where *w, data_error_t err)
{
    size_t cap = table_size((size_t)tok->n_merges);
    tok->mtab = malloc(cap * sizeof *tok->mtab);
    if (!tok->mtab)
        return data_fail(err, DATA_ERR_NOMEM, "tokenizer: out of memory");
    tok->mtab_mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        tok->mtab[i].key = BPE_EMPTY_KEY;
    for (int i = 0; i < tok->n_merges; i++) {
        data_status st = check_merge(tok, i, w, err);
        if (st != DATA_OK)
            return st;
        const uint32_t *m = tok->merges[i];
        uint64_t key = (uint64_t)m[0] << 32 | m[1];
        size_t s = bpe_mix(key) & tok->mtab_mask;
        while (tok->mtab[s].key != BPE_EMPTY_KEY && tok->mtab[s].key != key)
            s = (s + 1) & tok->mtab_mask;
        if (tok->mtab[s].key == key)
            return item_fail(err, w->merge_file, w->merge_line0 + i, "merge", i,
                             DATA_ERR_FORMAT, "the pair %u %u is already merge %u", m[0],
                             m[1], tok->mtab[s].rank);
        tok->mtab[s] = (bpe_merge_slot){key, (uint32_t)i, m[2]};
    }
    return DATA_OK;
}

/* The byte offsets of the tokens of data_tok_from_merges into off (vocab + 1
 * entries), checking each merge's ids against the tokens before it. */
static data_status merge_offsets(const uint32_t (*merges)[2], int n, uint64_t *off,
                                 data_error_t err)
{
    for (int i = 0; i <= 256; i++)
        off[i] = (uint64_t)i;
    for (int i = 0; i < n; i++) {
        uint32_t l = merges[i][0], r = merges[i][1], next = 256 + (uint32_t)i;
        if (l >= next || r >= next)
            return data_fail(err, DATA_ERR_ARG,
                             "data_tok_from_merges: merge %d: ids %u %u must be below %u "
                             "(a merge can only use the tokens before it)", i, l, r, next);
        uint64_t len = (off[l + 1] - off[l]) + (off[r + 1] - off[r]);
        if (len > BPE_MAX_BYTES - off[next])
            return data_fail(err, DATA_ERR_ARG,
                             "data_tok_from_merges: merge %d: the tokens exceed %llu bytes",
                             i, (unsigned long long)BPE_MAX_BYTES);
        off[next + 1] = off[next] + len;
    }
    return DATA_OK;
}

/* Fills the bytes of tok from its offsets: bytes, then merge results. */
static void fill_merge_tokens(data_tokenizer *tok, const uint32_t (*merges)[2], int n)
{
    for (int c = 0; c < 256; c++)
        tok->bytes[c] = (unsigned char)c;
    for (int i = 0; i < n; i++) {
        uint32_t l = merges[i][0], r = merges[i][1], out = 256 + (uint32_t)i;
        unsigned char *dst = tok->bytes + tok->off[out];
        memcpy(dst, tok_bytes(tok, l), tok_len(tok, l));
        memcpy(dst + tok_len(tok, l), tok_bytes(tok, r), tok_len(tok, r));
        tok->merges[i][0] = l;
        tok->merges[i][1] = r;
        tok->merges[i][2] = out;
    }
}

data_status data_tok_from_merges(data_tokenizer **out, const uint32_t (*merges)[2],
                                 int n_merges, int eot, data_error_t err)
{
    *out = NULL;
    if (n_merges < 0 || n_merges > BPE_MAX_VOCAB - 257 || (n_merges > 0 && !merges))
        return data_fail(err, DATA_ERR_ARG,
                         "data_tok_from_merges: %d merges (expected 0 to %d)", n_merges,
                         BPE_MAX_VOCAB - 257);
    int vocab = 256 + n_merges + (eot ? 1 : 0);
    uint64_t *off = malloc(((size_t)vocab + 1) * sizeof *off);
    if (!off)
        return data_fail(err, DATA_ERR_NOMEM, "data_tok_from_merges: out of memory");
    data_status st = merge_offsets(merges, n_merges, off, err);
    uint64_t merged = off[256 + n_merges];
    uint64_t total = merged + (eot ? strlen(DATA_EOT_TEXT) : 0);
    data_tokenizer *tok = st == DATA_OK ? bpe_alloc(vocab, total, n_merges) : NULL;
    if (st == DATA_OK && !tok)
        st = data_fail(err, DATA_ERR_NOMEM, "data_tok_from_merges: out of memory");
    if (st != DATA_OK) {
        free(off);
        return st;
    }
    memcpy(tok->off, off, ((size_t)256 + n_merges + 1) * sizeof *off);
    free(off);
    fill_merge_tokens(tok, merges, n_merges);
    if (eot) {
        tok->eot = vocab - 1;
        tok->off[vocab] = total;
        memcpy(tok->bytes + merged, DATA_EOT_TEXT, strlen(DATA_EOT_TEXT));
    }
    bpe_where w = {0};
    return bpe_finish(tok, &w, out, err);
}

data_status bpe_finish(data_tokenizer *tok, const bpe_where *w, data_tokenizer **out,
                       data_error_t err)
{
    data_status st = bpe_set_tokens(tok, w, err);
    if (st == DATA_OK)
        st = bpe_set_merges(tok, w, err);
    if (st != DATA_OK) {
        data_tok_free(tok);
        return st;
    }
    *out = tok;
    return DATA_OK;
}

void data_tok_free(data_tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->off);
    free(tok->bytes);
    free(tok->index);
    free(tok->merges);
    free(tok->mtab);
    free(tok);
}

int data_tok_vocab_size(const data_tokenizer *tok)
{
    return tok->vocab;
}

int data_tok_eot(const data_tokenizer *tok)
{
    return tok->eot;
}

const unsigned char *data_tok_token(const data_tokenizer *tok, int id, size_t *len)
{
    if (id < 0 || id >= tok->vocab)
        return NULL;
    if (len)
        *len = tok_len(tok, (uint32_t)id);
    return tok_bytes(tok, (uint32_t)id);
}

void data_tokens_free(data_tokens *t)
{
    free(t->ids);
    t->ids = NULL;
    t->len = t->cap = 0;
}

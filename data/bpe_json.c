/* bpe_json.c: reads GPT-2's vocab.json ({"token": id, ...}) for bpe_hf.c,
 * and decodes the bytes_to_unicode alphabet that its keys and merges.txt
 * are written in.
 *
 * GPT-2 spells token bytes as characters: the bytes 33..126, 161..172 and
 * 174..255 stand for themselves, the other 68 bytes for U+0100, U+0101, ...
 * in increasing byte order (so a space is "Ġ", U+0120). Keys are mapped back
 * to raw bytes as they are read. The parser accepts only the one shape
 * vocab.json has, strictly, so a damaged file fails with its line instead
 * of loading a different vocabulary. */
#include "bpe_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bpe_symbol_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    uint32_t k = cp - 256; /* the k-th byte of 0..32, 127..160, 173 */
    return k < 33 ? (int)k : k < 67 ? (int)(127 + k - 33) : 173;
}

size_t bpe_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >> 5 == 6 ? 2 : c >> 4 == 14 ? 3 : c >> 3 == 30 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = len == 1 ? c : c & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[k] & 0x3Fu);
    }
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* ---- vocab.json --------------------------------------------------------- */

/* The parser's position, and the vocabulary read so far. */
typedef struct {
    const char *path;
    const unsigned char *p, *end;
    int line;
    bpe_vocab *v;
    size_t cap; /* of v->entries */
} json;

__attribute__((format(printf, 3, 4)))
static data_status json_fail(const json *j, data_error_t err, const char *fmt, ...)
{
    char msg[DATA_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return data_fail(err, DATA_ERR_FORMAT, "%s:%d: %s", j->path, j->line, msg);
}

static void skip_ws(json *j)
{
    for (; j->p < j->end; j->p++) {
        if (*j->p == '\n')
            j->line++;
        else if (*j->p != ' ' && *j->p != '\t' && *j->p != '\r')
            return;
    }
}

/* Four hex digits (either case) at s into *v; 0 if they are not. */
static int hex4(const unsigned char *s, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i] | 0x20; /* lowercase; digits are unchanged */
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        *v = *v << 4 | (uint32_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return 1;
}

/* The escape after a backslash at j->p: its code point in *cp. */
static data_status json_escape(json *j, uint32_t *cp, data_error_t err)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *e = j->p < j->end ? memchr(from, *j->p, 8) : NULL;
    if (e && *e) {
        *cp = (unsigned char)to[e - from];
        j->p++;
        return DATA_OK;
    }
    if (j->p >= j->end || *j->p != 'u' || j->end - j->p < 5 || !hex4(j->p + 1, cp))
        return json_fail(j, err, "bad escape in a string (expected \\\" \\\\ \\/ \\b "
                         "\\f \\n \\r \\t or \\uXXXX)");
    j->p += 5;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return json_fail(j, err, "\\u%04X: a low surrogate without a high one", *cp);
    if (*cp < 0xD800 || *cp > 0xDBFF)
        return DATA_OK;
    uint32_t lo;
    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
        return json_fail(j, err, "\\u%04X: a high surrogate without a low one", *cp);
    j->p += 6;
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    return DATA_OK;
}

/* Reads the string at j->p and appends the bytes its symbols stand for to
 * the key arena (which has room: a key's bytes never outnumber its text's). */
static data_status json_key(json *j, data_error_t err)
{
    if (j->p >= j->end || *j->p != '"')
        return json_fail(j, err, "expected a string key");
    for (j->p++;;) {
        uint32_t cp;
        if (j->p >= j->end)
            return json_fail(j, err, "unterminated string");
        if (*j->p == '"') {
            j->p++;
            return DATA_OK;
        }
        if (*j->p < 0x20)
            return json_fail(j, err, "control character 0x%02x in a string", *j->p);
        data_status st = DATA_OK;
        if (*j->p == '\\') {
            j->p++;
            st = json_escape(j, &cp, err);
        } else {
            size_t n = bpe_utf8_decode(j->p, (size_t)(j->end - j->p), &cp);
            if (!n)
                return json_fail(j, err, "invalid UTF-8 in a string");
            j->p += n;
        }
        if (st != DATA_OK)
            return st;
        int b = bpe_symbol_byte(cp);
        if (b < 0)
            return json_fail(j, err, "U+%04X is not one of GPT-2's byte symbols", cp);
        j->v->keys[j->v->keys_len++] = (unsigned char)b;
    }
}

/* A JSON number that must be a token id: a non-negative integer. */
static data_status json_id(json *j, long *id, data_error_t err)
{
    const unsigned char *s = j->p;
    long v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9' && v <= BPE_MAX_VOCAB)
        v = 10 * v + (*j->p++ - '0');
    int more = j->p < j->end && *j->p && strchr("0123456789.eE", *j->p);
    if (j->p == s || more || (*s == '0' && j->p - s > 1) || v > BPE_MAX_VOCAB)
        return json_fail(j, err, "expected a token id (an integer from 0 to %d)",
                         BPE_MAX_VOCAB - 1);
    *id = v;
    return DATA_OK;
}

/* Reads one "key": id member into a new entry. */
static data_status json_member(json *j, data_error_t err)
{
    if (j->v->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 1024;
        bpe_vocab_entry *e =
            j->v->n < BPE_MAX_VOCAB ? realloc(j->v->entries, cap * sizeof *e) : NULL;
        if (!e)
            return json_fail(j, err, "more than %d tokens, or out of memory",
                             BPE_MAX_VOCAB);
        j->v->entries = e;
        j->cap = cap;
    }
    bpe_vocab_entry *e = &j->v->entries[j->v->n];
    e->off = j->v->keys_len;
    e->line = j->line;
    data_status st = json_key(j, err);
    if (st != DATA_OK)
        return st;
    e->len = j->v->keys_len - e->off;
    skip_ws(j);
    if (j->p >= j->end || *j->p != ':')
        return json_fail(j, err, "expected ':' after a key");
    j->p++;
    skip_ws(j);
    st = json_id(j, &e->id, err);
    if (st == DATA_OK)
        j->v->n++;
    return st;
}

/* Parses the whole of vocab.json: one object of "key": id members. */
static data_status json_object(json *j, data_error_t err)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '{')
        return json_fail(j, err, "expected '{': vocab.json must be one JSON object");
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
    } else {
        for (;;) {
            data_status st = json_member(j, err);
            if (st != DATA_OK)
                return st;
            skip_ws(j);
            if (j->p >= j->end || (*j->p != ',' && *j->p != '}'))
                return json_fail(j, err, "expected ',' or '}' after a member");
            if (*j->p++ == '}')
                break;
            skip_ws(j);
        }
    }
    skip_ws(j);
    if (j->p != j->end)
        return json_fail(j, err, "unexpected text after the object");
    return DATA_OK;
}

data_status bpe_vocab_parse(bpe_vocab *v, const char *path, const char *text, size_t len,
                            data_error_t err)
{
    *v = (bpe_vocab){0};
    v->keys = malloc(len + 1); /* a key's bytes never outnumber its characters */
    if (!v->keys)
        return data_fail(err, DATA_ERR_NOMEM, "%s: out of memory", path);
    const unsigned char *t = (const unsigned char *)text;
    json j = {path, t, t + len, 1, v, 0};
    data_status st = json_object(&j, err);
    if (st != DATA_OK)
        bpe_vocab_free(v);
    return st;
}

void bpe_vocab_free(bpe_vocab *v)
{
    free(v->keys);
    free(v->entries);
    *v = (bpe_vocab){0};
}

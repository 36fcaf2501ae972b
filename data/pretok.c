/* pretok.c: GPT-2's pre-splitting of text into pieces, the units that BPE
 * merges never cross:
 *   's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^\sLN]+|\s+(?!\S)|\s+
 * written out by hand instead of with a regex engine: the alternatives are
 * tried in order at the start of the text, as the regex would, on UTF-8
 * characters classed by the generated Unicode tables (letters, numbers,
 * White_Space). A byte that does not start a valid UTF-8 character is one
 * character of the "other" class, so any byte string splits, and the pieces
 * always concatenate back to the input. */
#include "data.h"
#include "data_internal.h"

typedef enum { CL_LETTER, CL_NUMBER, CL_SPACE, CL_OTHER } char_class;

static int in_ranges(uint32_t cp, const data_cp_range *r, int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Decodes the character at t (len >= 1): returns its length in bytes and
 * sets *cp, or returns 1 with *cp = UINT32_MAX for an invalid sequence
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_char(const unsigned char *t, size_t len, uint32_t *cp) {
    unsigned char c = t[0];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    *cp = UINT32_MAX;
    if (n == 0 || n > len) return 1;
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; k < n; k++) {
        if ((t[k] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (t[k] & 0x3Fu);
    }
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return n;
}

static char_class class_of(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CL_LETTER;
        if (cp >= '0' && cp <= '9') return CL_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CL_SPACE;
        return CL_OTHER;
    }
    if (cp == UINT32_MAX) return CL_OTHER;
    if (in_ranges(cp, data_uni_letter, data_uni_letter_count)) return CL_LETTER;
    if (in_ranges(cp, data_uni_number, data_uni_number_count)) return CL_NUMBER;
    if (in_ranges(cp, data_uni_space, data_uni_space_count)) return CL_SPACE;
    return CL_OTHER;
}

/* Class of the character at t[i] (i < len) and its length in *n. */
static char_class class_at(const unsigned char *t, size_t len, size_t i, size_t *n) {
    uint32_t cp;
    *n = utf8_char(t + i, len - i, &cp);
    return class_of(cp);
}

/* End of the run of characters of class cl that starts at i. */
static size_t run_end(const unsigned char *t, size_t len, size_t i, char_class cl) {
    size_t n;
    while (i < len && class_at(t, len, i, &n) == cl) i += n;
    return i;
}

/* 's 't 'm 'd 're 've 'll: the length matched at t, or 0. */
static size_t contraction(const unsigned char *t, size_t len) {
    if (len < 2 || t[0] != '\'') return 0;
    unsigned char a = t[1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (len < 3) return 0;
    unsigned char b = t[2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

size_t data_pretok_next(const unsigned char *t, size_t len) {
    if (len == 0) return 0;
    size_t n = contraction(t, len);
    if (n) return n;
    /* ' ?L+', ' ?N+' and ' ?[^\sLN]+': one optional ASCII space, then a run. */
    size_t p = (t[0] == ' ' && len > 1) ? 1 : 0;
    char_class cl = class_at(t, len, p, &n);
    if (cl != CL_SPACE) return run_end(t, len, p, cl);
    if (p == 1) {
        cl = class_at(t, len, 0, &n);
        if (cl != CL_SPACE) return run_end(t, len, 0, cl);
    }
    /* '\s+(?!\S)' then '\s+': a whitespace run that reaches the end of the
     * text is taken whole; one followed by other text leaves its last
     * character to lead the next piece, unless it is a single character. */
    size_t i = 0, last = 0, count = 0;
    while (i < len && class_at(t, len, i, &n) == CL_SPACE) {
        last = i;
        i += n;
        count++;
    }
    if (i == len || count == 1) return i;
    return last;
}

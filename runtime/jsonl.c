/* jsonl.c: a reader of JSON Lines files whose lines are flat JSON objects
 * (string keys; number, string, true/false or null values), such as
 * RUN_DIR/metrics.jsonl. The log is written by this project, but it is read
 * back from disk, so every line is checked against the JSON grammar and a bad
 * one is named by file, line and column instead of being half-read. Lines are
 * parsed in place: keys and strings are unescaped into the line buffer, so a
 * line costs no allocation. Nested objects and arrays are refused. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

typedef struct {
    char *p;     /* next unread character */
    char *start; /* the line, for columns */
    char *err;
} cursor;

static rt_status bad(cursor *c, const char *what) {
    snprintf(c->err, RT_ERRLEN, "column %ld: %s%s", (long)(c->p - c->start) + 1, what,
             *c->p ? "" : " (the line ends there)");
    return RT_ERR_USAGE;
}

static void skip_ws(cursor *c) {
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n') c->p++;
}

static int hex4(const char *s, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = s[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v * 16 + (unsigned)d;
    }
    return 1;
}

/* Writes code point u as UTF-8 at *w (at most 4 bytes). */
static void put_utf8(char **w, unsigned u) {
    unsigned char *o = (unsigned char *)*w;
    if (u < 0x80) *o++ = (unsigned char)u;
    else if (u < 0x800) {
        *o++ = (unsigned char)(0xC0 | u >> 6);
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
    } else if (u < 0x10000) {
        *o++ = (unsigned char)(0xE0 | u >> 12);
        *o++ = (unsigned char)(0x80 | (u >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | u >> 18);
        *o++ = (unsigned char)(0x80 | (u >> 12 & 0x3F));
        *o++ = (unsigned char)(0x80 | (u >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
    }
    *w = (char *)o;
}

/* \uXXXX at c->p (after the backslash and 'u'), with a surrogate pair as
 * one character. Six or twelve input bytes give at most four output bytes,
 * so unescaping in place never overtakes the reader. */
static rt_status unicode_escape(cursor *c, char **w) {
    unsigned u, lo;
    if (!hex4(c->p, &u)) return bad(c, "\\u needs four hex digits");
    c->p += 4;
    if (u >= 0xDC00 && u <= 0xDFFF) return bad(c, "unpaired surrogate in \\u escape");
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &lo) || lo < 0xDC00 ||
            lo > 0xDFFF)
            return bad(c, "unpaired surrogate in \\u escape");
        c->p += 6;
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (u == 0) return bad(c, "\\u0000 is not supported");
    put_utf8(w, u);
    return RT_OK;
}

static rt_status escape(cursor *c, char **w) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char e = *c->p++;
    if (e == 'u') return unicode_escape(c, w);
    const char *k = e ? strchr(from, e) : NULL;
    if (!k) {
        c->p--;
        return bad(c, "invalid escape in string");
    }
    *(*w)++ = to[k - from];
    return RT_OK;
}

/* A string at c->p (on its opening quote); *out is it, unescaped in place. */
static rt_status string(cursor *c, const char **out) {
    if (*c->p != '"') return bad(c, "expected a string");
    char *w = ++c->p;
    *out = w;
    for (;;) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') break;
        if (ch == '\0') return bad(c, "unterminated string");
        if (ch < 0x20) return bad(c, "control character in string");
        c->p++;
        if (ch != '\\') *w++ = (char)ch;
        else if (escape(c, &w)) return RT_ERR_USAGE;
    }
    c->p++;
    *w = '\0';
    return RT_OK;
}

static void digits(cursor *c) {
    while (*c->p >= '0' && *c->p <= '9') c->p++;
}

/* A number in JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static rt_status number(cursor *c, double *v) {
    char *s = c->p;
    if (*c->p == '-') c->p++;
    if (*c->p == '0') c->p++;
    else if (*c->p >= '1' && *c->p <= '9') digits(c);
    else return bad(c, "invalid value");
    if (*c->p == '.') {
        c->p++;
        if (*c->p < '0' || *c->p > '9') return bad(c, "digits must follow '.'");
        digits(c);
    }
    if (*c->p == 'e' || *c->p == 'E') {
        c->p++;
        if (*c->p == '+' || *c->p == '-') c->p++;
        if (*c->p < '0' || *c->p > '9') return bad(c, "digits must follow the exponent");
        digits(c);
    }
    errno = 0;
    *v = strtod(s, NULL);
    if (errno == ERANGE && isinf(*v)) return bad(c, "number out of range");
    return RT_OK;
}

static int literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if (strncmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

static rt_status value(cursor *c, rt_json_field *f) {
    f->num = 0;
    f->str = NULL;
    if (*c->p == '"') {
        f->type = RT_JSON_STRING;
        return string(c, &f->str);
    }
    if (*c->p == '{' || *c->p == '[') return bad(c, "nested objects and arrays are not supported");
    int truth = literal(c, "true");
    if (truth || literal(c, "false")) {
        f->type = RT_JSON_BOOL;
        f->num = truth;
        return RT_OK;
    }
    if (literal(c, "null")) {
        f->type = RT_JSON_NULL;
        return RT_OK;
    }
    f->type = RT_JSON_NUMBER;
    return number(c, &f->num);
}

/* One "key": value member, then the ',' or '}' after it. */
static rt_status member(cursor *c, rt_json_object *obj, int *last) {
    if (obj->n == RT_JSON_MAX_FIELDS) return bad(c, "too many keys in one object");
    rt_json_field *f = &obj->f[obj->n++];
    skip_ws(c);
    if (string(c, &f->key)) return RT_ERR_USAGE;
    skip_ws(c);
    if (*c->p != ':') return bad(c, "expected ':' after the key");
    c->p++;
    skip_ws(c);
    if (value(c, f)) return RT_ERR_USAGE;
    skip_ws(c);
    if (*c->p != ',' && *c->p != '}') return bad(c, "expected ',' or '}'");
    *last = *c->p++ == '}';
    return RT_OK;
}

rt_status rt_json_parse_flat(char *text, rt_json_object *obj, rt_error_t err) {
    cursor c = {text, text, err};
    obj->n = 0;
    skip_ws(&c);
    if (*c.p != '{') return bad(&c, "expected '{' (a JSON object)");
    c.p++;
    skip_ws(&c);
    int last = *c.p == '}';
    if (last) c.p++;
    while (!last)
        if (member(&c, obj, &last)) return RT_ERR_USAGE;
    skip_ws(&c);
    return *c.p ? bad(&c, "text after the object") : RT_OK;
}

const rt_json_field *rt_json_find(const rt_json_object *obj, const char *key) {
    for (int i = obj->n - 1; i >= 0; i--)
        if (strcmp(obj->f[i].key, key) == 0) return &obj->f[i];
    return NULL;
}

int rt_json_number(const rt_json_object *obj, const char *key, double *v) {
    const rt_json_field *f = rt_json_find(obj, key);
    if (!f || f->type != RT_JSON_NUMBER) return 0;
    *v = f->num;
    return 1;
}

const char *rt_json_string(const rt_json_object *obj, const char *key) {
    const rt_json_field *f = rt_json_find(obj, key);
    return f && f->type == RT_JSON_STRING ? f->str : NULL;
}

rt_status rt_jsonl_open(rt_jsonl_reader *r, const char *path, rt_error_t err) {
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->f = fopen(path, "r");
    if (!r->f) {
        snprintf(err, RT_ERRLEN, "%s: cannot open (%s)", path, strerror(errno));
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

static int blank(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return *s == '\0';
}

rt_status rt_jsonl_next(rt_jsonl_reader *r, rt_json_object *obj, int *got, rt_error_t err) {
    ssize_t len;
    *got = 0;
    errno = 0;
    while ((len = getline(&r->buf, &r->cap, r->f)) >= 0) {
        r->line++;
        if (strlen(r->buf) != (size_t)len) {
            snprintf(err, RT_ERRLEN, "%s:%ld: NUL byte in the line", r->path, r->line);
            return RT_ERR_USAGE;
        }
        if (len > 0 && r->buf[len - 1] == '\n') r->buf[len - 1] = '\0';
        if (blank(r->buf)) continue;
        rt_error_t perr;
        if (rt_json_parse_flat(r->buf, obj, perr)) {
            snprintf(err, RT_ERRLEN, "%s:%ld: %s", r->path, r->line, perr);
            return RT_ERR_USAGE;
        }
        *got = 1;
        return RT_OK;
    }
    if (ferror(r->f)) {
        snprintf(err, RT_ERRLEN, "%s:%ld: read error (%s)", r->path, r->line + 1,
                 strerror(errno));
        return RT_ERR_RUN;
    }
    return RT_OK;
}

void rt_jsonl_close(rt_jsonl_reader *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    r->f = NULL;
    r->buf = NULL;
}

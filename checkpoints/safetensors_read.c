/* safetensors_read.c: `gptrain import` of a Hugging Face GPT-2
 * model.safetensors (contract in checkpoint.h; the layout is described in
 * safetensors.c). The JSON header is parsed here by a small reader that
 * knows only what the format uses: an object of tensor entries, each with a
 * dtype string, a shape array and a two-number data_offsets array, plus an
 * optional __metadata__ object that is skipped. Every offset is checked
 * against the file before any data is read. F32, F16 and BF16 are read. */
#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ckpt_internal.h"

typedef struct {
    char name[128], dtype[8];
    uint64_t shape[4], off[2];
    int ndim;
} st_entry;

typedef struct {
    const char *p, *end;
} js;

static void ws(js *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

static int lit(js *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != c) return 0;
    j->p++;
    return 1;
}

/* A string without escapes other than \" and \\ (tensor names never need
 * more); out may be NULL to skip it. */
static int str(js *j, char *out, size_t cap) {
    if (!lit(j, '"')) return 0;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\') {
            if (j->p >= j->end) return 0;
            c = *j->p++;
            if (c != '"' && c != '\\' && c != '/') c = '?';
        }
        if (out && n + 1 < cap) out[n++] = c;
    }
    if (out) out[n] = '\0';
    return lit(j, '"');
}

static int num(js *j, uint64_t *v) {
    ws(j);
    const char *s = j->p;
    *v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9' && *v < (UINT64_MAX - 9) / 10)
        *v = *v * 10 + (uint64_t)(*j->p++ - '0');
    return j->p > s;
}

/* Skips any JSON value (the metadata, unknown fields). */
static int skip(js *j, int depth) {
    ws(j);
    if (j->p >= j->end || depth > 16) return 0;
    char c = *j->p;
    if (c == '"') return str(j, NULL, 0);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (lit(j, close)) return 1;
        do {
            if (c == '{' && (!str(j, NULL, 0) || !lit(j, ':'))) return 0;
            if (!skip(j, depth + 1)) return 0;
        } while (lit(j, ','));
        return lit(j, close);
    }
    const char *s = j->p;
    while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p))) j->p++;
    return j->p > s;
}

static int num_array(js *j, uint64_t *v, int max, int *n) {
    *n = 0;
    if (!lit(j, '[')) return 0;
    if (lit(j, ']')) return 1;
    do {
        if (*n == max || !num(j, &v[*n])) return 0;
        (*n)++;
    } while (lit(j, ','));
    return lit(j, ']');
}

static int entry(js *j, st_entry *e) {
    if (!lit(j, '{')) return 0;
    int noff = 0;
    do {
        char key[32];
        if (!str(j, key, sizeof key) || !lit(j, ':')) return 0;
        int ok = !strcmp(key, "dtype") ? str(j, e->dtype, sizeof e->dtype)
               : !strcmp(key, "shape") ? num_array(j, e->shape, 4, &e->ndim)
               : !strcmp(key, "data_offsets") ? num_array(j, e->off, 2, &noff)
               : skip(j, 1);
        if (!ok) return 0;
    } while (lit(j, ','));
    return lit(j, '}') && noff == 2;
}

/* The header's entries into *out (count in *n); 0 on malformed JSON. */
static int parse_header(const char *h, size_t len, st_entry **out, int *n) {
    js j = {h, h + len};
    int cap = 0;
    *out = NULL;
    *n = 0;
    if (!lit(&j, '{')) return 0;
    if (lit(&j, '}')) return 1;
    do {
        char name[128];
        if (!str(&j, name, sizeof name) || !lit(&j, ':')) return 0;
        if (!strcmp(name, "__metadata__")) {
            if (!skip(&j, 1)) return 0;
            continue;
        }
        if (*n == cap) {
            st_entry *g = realloc(*out, sizeof(st_entry) * (size_t)(cap = cap ? 2 * cap : 64));
            if (!g) return 0;
            *out = g;
        }
        st_entry *e = &(*out)[*n];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", name);
        if (!entry(&j, e)) return 0;
        (*n)++;
    } while (lit(&j, ','));
    return lit(&j, '}');
}

/* The entry for HF name `name`, with or without transformers' prefix. */
static const st_entry *find(const st_entry *e, int n, const char *name) {
    for (int i = 0; i < n; i++) {
        const char *s = e[i].name;
        if (!strncmp(s, "transformer.", 12)) s += 12;
        if (!strcmp(s, name)) return &e[i];
    }
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 31, man = h & 1023, bits;
    if (ex == 0 && man == 0) bits = sign;
    else if (ex == 0) { /* subnormal: renormalise */
        ex = 127 - 15 + 1;
        while (!(man & 1024)) {
            man <<= 1;
            ex--;
        }
        bits = sign | (ex << 23) | ((man & 1023) << 13);
    } else if (ex == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((ex - 15 + 127) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element k of an entry's data as float. */
static float elem(const unsigned char *d, const char *dtype, size_t k) {
    float f;
    if (!strcmp(dtype, "F32")) {
        memcpy(&f, d + 4 * k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, d + 2 * k, 2);
    if (!strcmp(dtype, "F16")) return half_to_float(h);
    uint32_t bits = (uint32_t)h << 16; /* BF16 */
    memcpy(&f, &bits, 4);
    return f;
}

static size_t dtype_size(const char *dtype) {
    return !strcmp(dtype, "F32") ? 4 : !strcmp(dtype, "F16") || !strcmp(dtype, "BF16") ? 2 : 0;
}

/* n_head is not in the tensors: config.json beside the file, or heads. */
static int heads_from_config(const char *path) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s", path);
    char *slash = strrchr(cfg, '/');
    snprintf(slash ? slash + 1 : cfg, sizeof cfg - (size_t)(slash ? slash + 1 - cfg : 0),
             "config.json");
    FILE *f = fopen(cfg, "r");
    char buf[8192] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    const char *k = strstr(buf, "\"n_head\"");
    int heads = 0;
    if (k && (k = strchr(k, ':'))) heads = atoi(k + 1);
    return heads;
}

/* The config the tensors imply. */
static int infer_config(const st_entry *e, int n, int heads, gpt_config *cfg) {
    const st_entry *wte = find(e, n, "wte.weight"), *wpe = find(e, n, "wpe.weight");
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2) return 0;
    int layers = 0;
    for (int i = 0; i < n; i++) {
        const char *s = e[i].name;
        if (!strncmp(s, "transformer.", 12)) s += 12;
        int l;
        if (sscanf(s, "h.%d.", &l) == 1 && l + 1 > layers) layers = l + 1;
    }
    *cfg = (gpt_config){layers, heads, (int)wte->shape[1], (int)wpe->shape[0],
                        (int)wte->shape[0], 0};
    return 1;
}

/* Copies every tensor of the table from the file, checking dtype and shape. */
static ckpt_status fill(gpt_model *m, const st_entry *e, int n, const unsigned char *data,
                        size_t data_len, const char *path, ckpt_error_t err) {
    for (int i = 0; i < m->table.count; i++) {
        const gpt_tensor *t = &m->table.t[i];
        char name[GPT_NAME_MAX + 16];
        size_t r, c;
        st_hf_layout(m, i, name, sizeof name, &r, &c);
        const st_entry *x = find(e, n, name);
        size_t es = x ? dtype_size(x->dtype) : 0;
        int shape_ok = x && ((t->ndim == 2 && x->ndim == 2 && x->shape[0] == r &&
                              x->shape[1] == c) || (t->ndim == 1 && x->ndim == 1 &&
                                                    x->shape[0] == r));
        if (!x || !es || !shape_ok || x->off[1] < x->off[0] || x->off[1] > data_len ||
            x->off[1] - x->off[0] != r * c * es) {
            snprintf(err, CKPT_ERRLEN, "%s: tensor %s is %s", path, name,
                     !x ? "missing" : !es ? "of an unsupported dtype (F32, F16, BF16 are read)"
                     : !shape_ok ? "of the wrong shape" : "outside the file");
            return CKPT_ERR_FORMAT;
        }
        const unsigned char *d = data + x->off[0];
        float *p = m->params + t->offset;
        int tr = st_transposed(m, i);
        for (size_t a = 0; a < r; a++)
            for (size_t b = 0; b < c; b++)
                p[tr ? b * r + a : a * c + b] = elem(d, x->dtype, a * c + b);
    }
    return CKPT_OK;
}

ckpt_status ckpt_import_safetensors(const char *path, int heads, gpt_model *m,
                                    ckpt_error_t err) {
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        snprintf(err, CKPT_ERRLEN, "%s: cannot read", path);
        return CKPT_ERR_IO;
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *map = size >= 8 ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    uint64_t hlen = 0;
    if (map == MAP_FAILED) map = NULL;
    if (map) memcpy(&hlen, map, 8);
    st_entry *e = NULL;
    int n = 0;
    gpt_config cfg;
    ckpt_status st = CKPT_ERR_FORMAT;
    if (!map || hlen > size - 8 || !parse_header((const char *)map + 8, hlen, &e, &n))
        snprintf(err, CKPT_ERRLEN, "%s: not a safetensors file (bad header)", path);
    else if (!infer_config(e, n, heads > 0 ? heads : heads_from_config(path), &cfg))
        snprintf(err, CKPT_ERRLEN, "%s: no GPT-2 wte.weight and wpe.weight tensors", path);
    else if (cfg.n_head <= 0)
        snprintf(err, CKPT_ERRLEN, "%s: the number of heads is not in the tensors; pass "
                 "--heads or put config.json beside the file", path);
    else {
        gpt_error_t gerr;
        if (gpt_model_create(m, &cfg, 1, 1, gerr)) snprintf(err, CKPT_ERRLEN, "%s: %s", path, gerr);
        else if ((st = fill(m, e, n, map + 8 + hlen, size - 8 - hlen, path, err)))
            gpt_model_free(m);
    }
    free(e);
    if (map) munmap(map, size);
    return st;
}

/* config.c: --config FILE, and the effective config a run records.
 * A config file is a small subset of TOML (also valid INI): one
 * `key = value` per line, where key is a flag's name (`total-batch` or
 * `total_batch`), value a number, true/false, or a string in double quotes
 * (bare words are taken as strings too); `#` starts a comment. Sections and
 * unknown keys are errors naming the file and line. The file sets the
 * flags' values before the command line is read, so flags given on the
 * command line win. The same writer turns a command's flag table back into
 * such a file (RUN_DIR/config.toml, and inside checkpoints) and into JSON
 * keys for metrics.jsonl. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* Strings read from config files live until the process ends: the flag
 * table points at them. */
static char **kept;
static int nkept;

static void free_kept(void) {
    for (int i = 0; i < nkept; i++) free(kept[i]);
    free(kept);
    kept = NULL;
    nkept = 0;
}

static char *keep(const char *s, size_t len) {
    char **grown = realloc(kept, sizeof(char *) * (size_t)(nkept + 1));
    char *copy = malloc(len + 1);
    if (!grown || !copy) {
        free(copy);
        if (grown) kept = grown;
        return NULL;
    }
    if (!kept) atexit(free_kept);
    kept = grown;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return kept[nkept++] = copy;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* The value's text without quotes and comment, unescaped in place; NULL if
 * a quoted string is not closed. */
static char *unquote(char *v) {
    if (*v != '"') {
        char *hash = strchr(v, '#');
        if (hash) *hash = '\0';
        return trim(v);
    }
    char *out = v, *in = v + 1;
    for (; *in && *in != '"'; in++) {
        if (*in == '\\' && in[1]) in++;
        *out++ = *in;
    }
    if (*in != '"') return NULL;
    char *rest = trim(in + 1);
    if (*rest && *rest != '#') return NULL;
    *out = '\0';
    return v;
}

static const rt_flag *find_key(const rt_flag *flags, int n, const char *key) {
    for (int i = 0; i < n; i++) {
        const char *a = flags[i].name, *b = key;
        while (*a && (*a == *b || (*a == '-' && *b == '_'))) a++, b++;
        if (!*a && !*b) return &flags[i];
    }
    return NULL;
}

static rt_status set_value(const rt_flag *f, const char *v, rt_error_t err) {
    if (f->type == RT_BOOL) {
        if (strcmp(v, "true") && strcmp(v, "false")) {
            snprintf(err, RT_ERRLEN, "'%s' wants true or false, not '%s'", f->name, v);
            return RT_ERR_USAGE;
        }
        *(int *)f->ptr = strcmp(v, "true") == 0;
        return RT_OK;
    }
    if (f->type == RT_STR) {
        const char *copy = keep(v, strlen(v));
        if (!copy) {
            snprintf(err, RT_ERRLEN, "out of memory");
            return RT_ERR_RUN;
        }
        *(const char **)f->ptr = copy;
        return RT_OK;
    }
    return rt_flag_set(f, v, err);
}

/* One line; RT_OK for blank and comment lines. */
static rt_status config_line(char *line, const rt_flag *flags, int n, rt_error_t err) {
    char *s = trim(line);
    if (!*s || *s == '#') return RT_OK;
    if (*s == '[') {
        snprintf(err, RT_ERRLEN, "sections like %s are not supported; write key = value lines", s);
        return RT_ERR_USAGE;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, RT_ERRLEN, "expected key = value, got '%s'", s);
        return RT_ERR_USAGE;
    }
    *eq = '\0';
    char *key = trim(s), *val = unquote(trim(eq + 1));
    const rt_flag *f = find_key(flags, n, key);
    if (!f || strcmp(f->name, "config") == 0) {
        snprintf(err, RT_ERRLEN, "unknown key '%s' (--help lists the flags; a key is a flag's "
                 "name)", key);
        return RT_ERR_USAGE;
    }
    if (!val) {
        snprintf(err, RT_ERRLEN, "unterminated string for '%s'", key);
        return RT_ERR_USAGE;
    }
    return set_value(f, val, err);
}

rt_status rt_config_load(const char *path, const rt_flag *flags, int nflags, rt_error_t err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, RT_ERRLEN, "cannot open config file %s", path);
        return RT_ERR_USAGE;
    }
    char line[4096];
    rt_status st = RT_OK;
    for (int no = 1; !st && fgets(line, sizeof line, f); no++) {
        rt_error_t why;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(why, RT_ERRLEN, "line longer than %zu bytes", sizeof line - 1);
            st = RT_ERR_USAGE;
        } else {
            st = config_line(line, flags, nflags, why);
        }
        if (st) snprintf(err, RT_ERRLEN, "%s:%d: %s", path, no, why);
    }
    fclose(f);
    return st;
}

/* A string as a quoted TOML/JSON string (the escapes both share). */
static void put_quoted(FILE *out, const char *s) {
    fputc('"', out);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(out, "\\u%04x", *s);
        else fputc(*s, out);
    }
    fputc('"', out);
}

/* The shortest form that reads back as the same float (0.1, not 0.100000001). */
static void put_float(FILE *out, float v) {
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtof(buf, NULL) == v) break;
    }
    fputs(buf, out);
}

static void put_value(FILE *out, const rt_flag *f) {
    switch (f->type) {
    case RT_INT: fprintf(out, "%d", *(int *)f->ptr); break;
    case RT_LONG: fprintf(out, "%ld", *(long *)f->ptr); break;
    case RT_FLOAT: put_float(out, *(float *)f->ptr); break;
    case RT_STR: put_quoted(out, *(const char **)f->ptr); break;
    case RT_BOOL: fputs(*(int *)f->ptr ? "true" : "false", out); break;
    }
}

/* The flags worth recording: not --config itself, not actions like --dry-run
 * that only this invocation asked for. */
static int recorded(const rt_flag *f) {
    return strcmp(f->name, "config") && strcmp(f->name, "dry-run");
}

static void write_toml(FILE *out, const rt_flag *flags, int nflags, const char *const *skip) {
    (void)skip;
    for (int i = 0; i < nflags; i++) {
        if (!recorded(&flags[i])) continue;
        fprintf(out, "%s = ", flags[i].name);
        put_value(out, &flags[i]);
        fputc('\n', out);
    }
}

static void write_json(FILE *out, const rt_flag *flags, int nflags, const char *const *skip) {
    for (int i = 0; i < nflags; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s", flags[i].name);
        for (char *c = key; *c; c++) if (*c == '-') *c = '_';
        int skipped = !recorded(&flags[i]);
        for (int k = 0; skip && skip[k] && !skipped; k++) skipped = strcmp(skip[k], key) == 0;
        if (skipped) continue;
        fprintf(out, "\"%s\":", key);
        put_value(out, &flags[i]);
        fputc(',', out);
    }
}

/* A writer's output as a string (malloc'd; NULL when out of memory). */
static char *as_text(void (*w)(FILE *, const rt_flag *, int, const char *const *),
                     const rt_flag *flags, int nflags, const char *const *skip) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    w(f, flags, nflags, skip);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *rt_config_toml(const rt_flag *flags, int nflags) {
    return as_text(write_toml, flags, nflags, NULL);
}

char *rt_config_json(const rt_flag *flags, int nflags, const char *const *skip) {
    return as_text(write_json, flags, nflags, skip);
}

/* args.c: the table-driven flag parser shared by every subcommand. One table
 * per command drives both parsing and --help, so the help text can never
 * disagree with what the parser accepts. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

rt_status rt_flag_set(const rt_flag *f, const char *s, rt_error_t err) {
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case RT_INT:
    case RT_LONG: {
        long v = strtol(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno == ERANGE ||
            (f->type == RT_INT && (v < INT_MIN || v > INT_MAX)))
            break;
        if (f->type == RT_INT) *(int *)f->ptr = (int)v;
        else *(long *)f->ptr = v;
        return RT_OK;
    }
    case RT_FLOAT: {
        float v = strtof(s, &end);
        if (*s == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v)) break;
        *(float *)f->ptr = v;
        return RT_OK;
    }
    case RT_STR:
        *(const char **)f->ptr = s;
        return RT_OK;
    case RT_BOOL:
        break;
    }
    snprintf(err, RT_ERRLEN, "invalid value '%s' for --%s (expected %s)", s, f->name,
             f->type == RT_FLOAT ? "a finite number" : "an integer");
    return RT_ERR_USAGE;
}

static const rt_flag *find_flag(const rt_flag *flags, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(flags[i].name, name) == 0) return &flags[i];
    return NULL;
}

/* --config FILE (or --config=FILE) in argv, when the table has --config. */
static const char *config_path(int argc, char **argv, const rt_flag *flags, int nflags) {
    const rt_flag *f = find_flag(flags, nflags, "config");
    if (!f || f->type != RT_STR) return NULL;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return NULL;
        if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[++i];
    }
    return path;
}

rt_status rt_parse_flags(int argc, char **argv, const rt_flag *flags, int nflags,
                         const char **positional, int max_positional, int *npositional,
                         rt_error_t err) {
    *npositional = 0;
    /* The file first, so that the command line overrides it. */
    const char *config = config_path(argc, argv, flags, nflags);
    rt_status cst = config ? rt_config_load(config, flags, nflags, err) : RT_OK;
    if (cst) return cst;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return RT_HELP;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*npositional >= max_positional) {
                snprintf(err, RT_ERRLEN, "unexpected argument '%s'", a);
                return RT_ERR_USAGE;
            }
            positional[(*npositional)++] = a;
            continue;
        }
        /* --name=value and --name value are both accepted. */
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        snprintf(name, sizeof(name), "%.*s", (int)len, a + 2);
        const rt_flag *f = find_flag(flags, nflags, name);
        if (!f) {
            snprintf(err, RT_ERRLEN, "unknown flag '--%s'", name);
            return RT_ERR_USAGE;
        }
        if (f->type == RT_BOOL) {
            if (eq) {
                snprintf(err, RT_ERRLEN, "flag --%s takes no value", name);
                return RT_ERR_USAGE;
            }
            *(int *)f->ptr = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            snprintf(err, RT_ERRLEN, "flag --%s needs a value", name);
            return RT_ERR_USAGE;
        }
        rt_status st = rt_flag_set(f, val, err);
        if (st) return st;
    }
    return RT_OK;
}

void rt_print_help(FILE *out, const char *usage, const rt_flag *flags, int nflags) {
    fprintf(out, "%s\n%s", usage, nflags ? "\nflags (default in brackets):\n" : "");
    for (int i = 0; i < nflags; i++) {
        const rt_flag *f = &flags[i];
        char def[128];
        switch (f->type) {
        case RT_INT: snprintf(def, sizeof(def), "%d", *(int *)f->ptr); break;
        case RT_LONG: snprintf(def, sizeof(def), "%ld", *(long *)f->ptr); break;
        case RT_FLOAT: snprintf(def, sizeof(def), "%g", *(float *)f->ptr); break;
        case RT_STR: {
            const char *s = *(const char **)f->ptr;
            snprintf(def, sizeof(def), "%s", s && *s ? s : "none");
            break;
        }
        case RT_BOOL: snprintf(def, sizeof(def), "%s", *(int *)f->ptr ? "on" : "off"); break;
        }
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "--%s%s", f->name, f->type == RT_BOOL ? "" : " X");
        fprintf(out, "  %-22s %s [%s]\n", lhs, f->help, def);
    }
}

int rt_parse_command(const char *cmd, const char *usage, int argc, char **argv,
                     const rt_flag *flags, int nflags, const char **positional,
                     int max_positional, int *npositional) {
    rt_error_t err;
    rt_status st = rt_parse_flags(argc, argv, flags, nflags, positional, max_positional,
                                  npositional, err);
    if (st == RT_HELP) {
        rt_print_help(stdout, usage, flags, nflags);
        return 0;
    }
    return st ? rt_fail(cmd, st, err) : -1;
}

int rt_fail(const char *cmd, rt_status st, const char *msg) {
    fprintf(stderr, "gptrain %s: error: %s\n", cmd, msg);
    if (st == RT_ERR_USAGE)
        fprintf(stderr, "usage: gptrain %s [flags]  (gptrain %s --help lists them)\n", cmd, cmd);
    return st == RT_ERR_USAGE ? 2 : 1;
}

/* plot_metrics.c: reads the curves `gptrain plot` draws from a run's
 * metrics.jsonl: the step records (loss, step time, tokens seen) and the
 * validation records. A resumed run appends to the same file: a new config
 * line, then steps redone after the checkpoint it resumed from, so a step can
 * be logged twice; the last record of each step is the one kept. Other
 * events and unknown keys are skipped, so new fields do not break plots. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "plot_internal.h"

typedef struct {
    const rt_json_object *o;
    char where[4200];       /* "PATH:LINE", for errors */
    long line;
    double tokens_per_step; /* from the last config record; 0 before one */
} record;

static rt_status invalid(const record *r, const char *key, const char *what, rt_error_t err) {
    snprintf(err, RT_ERRLEN, "%s: \"%s\" %s", r->where, key, what);
    return RT_ERR_USAGE;
}

static rt_status push(plot_series *s, const plot_point *pt, rt_error_t err) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        plot_point *p = realloc(s->p, cap * sizeof *p);
        if (!p) {
            snprintf(err, RT_ERRLEN, "out of memory reading the metrics");
            return RT_ERR_RUN;
        }
        s->p = p;
        s->cap = cap;
    }
    s->p[s->n++] = *pt;
    return RT_OK;
}

/* Tokens per step: batch * seq * accum * ranks. */
static rt_status config(record *r, rt_error_t err) {
    static const char *const keys[] = {"batch", "seq", "accum", "ranks"};
    double tokens = 1, v;
    for (int i = 0; i < 4; i++) {
        if (!rt_json_number(r->o, keys[i], &v) || v < 1)
            return invalid(r, keys[i], "must be a number >= 1 in a config record", err);
        tokens *= v;
    }
    r->tokens_per_step = tokens;
    return RT_OK;
}

/* key's number; null (a value the writer could not put in JSON) is NaN. */
static rt_status value(const record *r, const char *key, double *v, rt_error_t err) {
    const rt_json_field *f = rt_json_find(r->o, key);
    if (f && f->type == RT_JSON_NULL) *v = NAN;
    else if (!rt_json_number(r->o, key, v)) return invalid(r, key, "must be a number or null", err);
    return RT_OK;
}

static rt_status step_of(const record *r, plot_point *pt, rt_error_t err) {
    if (r->tokens_per_step == 0) {
        snprintf(err, RT_ERRLEN, "%s: a record before the config record", r->where);
        return RT_ERR_USAGE;
    }
    double s;
    if (!rt_json_number(r->o, "step", &s) || s < 0 || s > 1e15 || s != floor(s))
        return invalid(r, "step", "must be a whole number >= 0", err);
    memset(pt, 0, sizeof *pt);
    pt->step = s;
    pt->line = r->line;
    pt->tokens = s * r->tokens_per_step;
    return RT_OK;
}

static rt_status train_record(const record *r, plot_run *run, rt_error_t err) {
    plot_point pt;
    if (step_of(r, &pt, err) || value(r, "loss", &pt.loss, err)) return RT_ERR_USAGE;
    if (!rt_json_number(r->o, "ms", &pt.ms) || !(pt.ms >= 0))
        return invalid(r, "ms", "must be a number >= 0", err);
    rt_json_number(r->o, "tokens", &pt.tokens);
    pt.tok_s = pt.ms > 0 ? r->tokens_per_step * 1e3 / pt.ms : NAN;
    return push(&run->train, &pt, err);
}

static rt_status val_record(const record *r, plot_run *run, rt_error_t err) {
    plot_point pt;
    if (step_of(r, &pt, err) || value(r, "val_loss", &pt.loss, err)) return RT_ERR_USAGE;
    return push(&run->val, &pt, err);
}

/* Records without "event" are steps; of the events, config and val count. */
static rt_status dispatch(record *r, plot_run *run, rt_error_t err) {
    if (!rt_json_find(r->o, "event")) return train_record(r, run, err);
    const char *event = rt_json_string(r->o, "event");
    if (!event) return invalid(r, "event", "must be a string", err);
    if (strcmp(event, "config") == 0) return config(r, err);
    if (strcmp(event, "val") == 0) return val_record(r, run, err);
    return RT_OK;
}

static int by_step_then_line(const void *a, const void *b) {
    const plot_point *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Sorts by step and keeps the last record logged for each step. */
static void last_per_step(plot_series *s) {
    qsort(s->p, s->n, sizeof *s->p, by_step_then_line);
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (kept > 0 && s->p[kept - 1].step == s->p[i].step) kept--;
        s->p[kept++] = s->p[i];
    }
    s->n = kept;
}

/* The legend: dir's last component, or for "." and the like the real one. */
static void run_name(const char *dir, char *name, size_t len) {
    char buf[4096];
    char *real = realpath(dir, NULL);
    snprintf(buf, sizeof buf, "%s", dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    const char *base = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
    if ((!*base || !strcmp(base, ".") || !strcmp(base, "..")) && real) {
        snprintf(buf, sizeof buf, "%s", real);
        base = strrchr(buf, '/')[1] ? strrchr(buf, '/') + 1 : buf;
    }
    snprintf(name, len, "%s", base);
    free(real);
}

static rt_status read_records(rt_jsonl_reader *rd, plot_run *run, rt_error_t err) {
    rt_json_object obj;
    record r = {.o = &obj};
    int got;
    rt_status st;
    while (!(st = rt_jsonl_next(rd, &obj, &got, err)) && got) {
        r.line = rd->line;
        snprintf(r.where, sizeof r.where, "%s:%ld", rd->path, rd->line);
        if ((st = dispatch(&r, run, err))) return st;
    }
    return st;
}

rt_status plot_run_load(plot_run *run, const char *dir, rt_error_t err) {
    memset(run, 0, sizeof *run);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rt_jsonl_reader rd;
    rt_status st = rt_jsonl_open(&rd, path, err);
    if (st) return st;
    st = read_records(&rd, run, err);
    rt_jsonl_close(&rd);
    if (!st && run->train.n == 0) {
        snprintf(err, RT_ERRLEN, "%s: no step records", path);
        st = RT_ERR_USAGE;
    }
    if (st) {
        plot_run_free(run);
        return st;
    }
    last_per_step(&run->train);
    last_per_step(&run->val);
    run_name(dir, run->name, sizeof run->name);
    return RT_OK;
}

void plot_run_free(plot_run *run) {
    free(run->train.p);
    free(run->val.p);
    memset(run, 0, sizeof *run);
}

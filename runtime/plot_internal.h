/* plot_internal.h: the curves of one run, shared by plot_metrics.c (which
 * reads them from RUN_DIR/metrics.jsonl), plot_draw.c (which draws them with
 * gnuplot) and plot.c (the command). Not a public API. */
#ifndef PLOT_INTERNAL_H
#define PLOT_INTERNAL_H

#include <stddef.h>
#include "runtime.h"

/* Runs in one picture: one colour each. */
#define PLOT_MAX_RUNS 10

/* One step record (train) or validation record (val); NaN where the log
 * has null. */
typedef struct {
    double step, tokens, loss;
    double ms;    /* train: wall time of the step */
    double tok_s; /* train: tokens per second in the step */
    long line;    /* where it was logged: the later of two records of a step wins */
} plot_point;

typedef struct {
    plot_point *p;
    size_t n, cap;
} plot_series;

typedef struct {
    char name[256];         /* the legend: the run directory's base name */
    plot_series train, val; /* in step order, one point per step (the last logged) */
} plot_run;

/* Reads dir/metrics.jsonl. A missing or malformed file, or one without step
 * records, is RT_ERR_USAGE naming the file (and line). */
rt_status plot_run_load(plot_run *run, const char *dir, rt_error_t err);
void plot_run_free(plot_run *run);

/* Writes the runs' data and a gnuplot script into tmpdir and runs gnuplot,
 * which writes png_path and svg_path. */
rt_status plot_draw(const plot_run *runs, int nruns, const char *tmpdir, const char *png_path,
                    const char *svg_path, rt_error_t err);

#endif

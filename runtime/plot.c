/* plot.c: `gptrain plot RUN_DIR... [--out PREFIX]`: the loss and throughput
 * curves of one or more runs, from their metrics.jsonl, as PREFIX.png and
 * PREFIX.svg (default RUN_DIR/loss for the first run). Every run is read
 * before anything is drawn, so bad input fails without output; gnuplot works
 * in a temporary directory and writes PREFIX.*.tmp, which are renamed into
 * place only when it succeeded. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "plot_internal.h"

#define PLOT_USAGE                                                                         \
    "usage: gptrain plot RUN_DIR [RUN_DIR...] [--out PREFIX]\n\n"                          \
    "Draws the runs' curves from RUN_DIR/metrics.jsonl into PREFIX.png and PREFIX.svg\n"   \
    "(default PREFIX: the first RUN_DIR/loss), one colour per run (at most 10), in three\n" \
    "panels: train and val loss by step, train and val loss by tokens seen, and\n"         \
    "throughput (tokens/s) over elapsed wall-clock time. Needs gnuplot (Debian:\n"         \
    "gnuplot-nox)."

/* Removes the files in dir (it has no subdirectories), then dir. */
static void remove_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4400];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* The directory of --out's prefix, created if missing. */
static rt_status out_dir(const char *prefix, rt_error_t err) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", prefix);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return RT_OK;
    *slash = '\0';
    return rt_mkdirs(dir, err);
}

/* Draws into PREFIX.png.tmp and PREFIX.svg.tmp, then renames them. */
static rt_status draw(const plot_run *runs, int nruns, const char *prefix, rt_error_t err) {
    char tmpl[4096], png[4200], svg[4200], png_tmp[4300], svg_tmp[4300];
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/gptrain-plot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl)) {
        snprintf(err, RT_ERRLEN, "%s: cannot create a temporary directory (%s)", tmpl,
                 strerror(errno));
        return RT_ERR_RUN;
    }
    snprintf(png, sizeof png, "%s.png", prefix);
    snprintf(svg, sizeof svg, "%s.svg", prefix);
    snprintf(png_tmp, sizeof png_tmp, "%s.tmp", png);
    snprintf(svg_tmp, sizeof svg_tmp, "%s.tmp", svg);
    rt_status st = plot_draw(runs, nruns, tmpl, png_tmp, svg_tmp, err);
    remove_tmpdir(tmpl);
    if (!st && (rename(png_tmp, png) != 0 || rename(svg_tmp, svg) != 0)) {
        snprintf(err, RT_ERRLEN, "%s: cannot rename into place (%s)", prefix, strerror(errno));
        st = RT_ERR_RUN;
    }
    unlink(png_tmp);
    unlink(svg_tmp);
    if (!st) printf("wrote %s\nwrote %s\n", png, svg);
    return st;
}

/* --out, or else RUN_DIR/loss for the first run directory. */
static void output_prefix(const char *out, const char *dir, char *prefix, size_t len) {
    snprintf(prefix, len, "%s", *out ? out : dir);
    if (*out) return;
    size_t n = strlen(prefix);
    while (n > 1 && prefix[n - 1] == '/') prefix[--n] = '\0';
    snprintf(prefix + n, len - n, "%sloss", n > 0 && prefix[n - 1] == '/' ? "" : "/");
}

static rt_status load_runs(plot_run *runs, const char **dirs, int n, rt_error_t err) {
    for (int i = 0; i < n; i++) {
        rt_status st = plot_run_load(&runs[i], dirs[i], err);
        if (st) {
            while (i-- > 0) plot_run_free(&runs[i]);
            return st;
        }
    }
    return RT_OK;
}

int rt_cmd_plot(int argc, char **argv) {
    const char *out = "";
    rt_flag flags[] = {
        {"out", RT_STR, &out, "write PREFIX.png and PREFIX.svg (default: the first "
                              "RUN_DIR/loss)"},
    };
    const char *dirs[PLOT_MAX_RUNS + 1];
    int ndirs, rc = rt_parse_command("plot", PLOT_USAGE, argc, argv, flags, 1, dirs,
                                     PLOT_MAX_RUNS + 1, &ndirs);
    if (rc >= 0) return rc;
    if (ndirs == 0) return rt_fail("plot", RT_ERR_USAGE, "name at least one run directory");
    rt_error_t err;
    if (ndirs > PLOT_MAX_RUNS) {
        snprintf(err, RT_ERRLEN, "at most %d run directories in one plot", PLOT_MAX_RUNS);
        return rt_fail("plot", RT_ERR_USAGE, err);
    }
    plot_run runs[PLOT_MAX_RUNS];
    rt_status st = load_runs(runs, dirs, ndirs, err);
    if (st) return rt_fail("plot", st, err);
    char prefix[4096];
    output_prefix(out, dirs[0], prefix, sizeof prefix);
    st = *out ? out_dir(prefix, err) : RT_OK;
    if (!st) st = draw(runs, ndirs, prefix, err);
    for (int i = 0; i < ndirs; i++) plot_run_free(&runs[i]);
    return st ? rt_fail("plot", st, err) : 0;
}

/* plot_draw.c: draws the curves of `gptrain plot` with gnuplot (Debian's
 * gnuplot-nox has the pngcairo and svg terminals). Each run's points go to
 * data files in a temporary directory, next to a script of three panels
 * (loss by step, loss by tokens seen, throughput over wall-clock time) that
 * is loaded once per terminal, so the PNG and the SVG show the same picture.
 * gnuplot runs as a child process; its last error line becomes ours. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "plot_internal.h"

/* Tableau 10: distinct, and readable on white. */
static const char *const colours[PLOT_MAX_RUNS] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* s as a gnuplot single-quoted string (' doubled; control characters,
 * which it cannot hold, as '?'). */
static void quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
    }
    fputc('\'', f);
}

static void num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, " %.10g", v);
    else fputs(" NaN", f);
}

static FILE *open_in(const char *dir, const char *name, char *path, size_t len,
                     rt_error_t err) {
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) snprintf(err, RT_ERRLEN, "%s: cannot create (%s)", path, strerror(errno));
    return f;
}

static rt_status close_checked(FILE *f, const char *path, rt_error_t err) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        snprintf(err, RT_ERRLEN, "%s: write failed", path);
        return RT_ERR_RUN;
    }
    return RT_OK;
}

/* train<i>.dat: step tokens loss minutes tokens/s; val<i>.dat: step tokens
 * val_loss. Minutes are the summed step times up to and including the step. */
static rt_status write_data(const char *dir, int i, const plot_run *run, rt_error_t err) {
    char name[32], path[4200];
    snprintf(name, sizeof name, "train%d.dat", i);
    FILE *f = open_in(dir, name, path, sizeof path, err);
    if (!f) return RT_ERR_RUN;
    double ms = 0;
    for (size_t k = 0; k < run->train.n; k++) {
        const plot_point *p = &run->train.p[k];
        ms += p->ms;
        fprintf(f, "%.0f", p->step);
        num(f, p->tokens);
        num(f, p->loss);
        num(f, ms / 6e4);
        num(f, p->tok_s);
        fputc('\n', f);
    }
    if (close_checked(f, path, err)) return RT_ERR_RUN;
    snprintf(name, sizeof name, "val%d.dat", i);
    if (!(f = open_in(dir, name, path, sizeof path, err))) return RT_ERR_RUN;
    for (size_t k = 0; k < run->val.n; k++) {
        fprintf(f, "%.0f", run->val.p[k].step);
        num(f, run->val.p[k].tokens);
        num(f, run->val.p[k].loss);
        fputc('\n', f);
    }
    return close_checked(f, path, err);
}

/* A power of 1000 that keeps an axis up to max in readable numbers. */
typedef struct {
    double div;
    const char *name;
} plot_scale;

static plot_scale scale_for(double max) {
    static const plot_scale s[] = {{1e9, "billion"}, {1e6, "million"}, {1e3, "thousand"}};
    for (int i = 0; i < 3; i++)
        if (max >= s[i].div) return s[i];
    return (plot_scale){1, ""};
}

/* The largest tokens seen (tok_s 0) or tokens/s (tok_s 1) of all runs. */
static double max_of(const plot_run *runs, int nruns, int tok_s) {
    double m = 0;
    for (int i = 0; i < nruns; i++)
        for (size_t k = 0; k < runs[i].train.n; k++) {
            double v = tok_s ? runs[i].train.p[k].tok_s : runs[i].train.p[k].tokens;
            if (v > m) m = v;
        }
    return m;
}

/* One panel: per run, train as a thin line, lighter ("#60RRGGBB": gnuplot's
 * ARGB, A being transparency), and with loss set, val as points on a line in
 * the run's colour. x and y are gnuplot `using` expressions of the train file
 * (val has its loss in column 3 too). */
static void panel(FILE *f, const char *dir, const plot_run *runs, int nruns, const char *x,
                  const char *y, int loss) {
    fputs("plot ", f);
    for (int i = 0; i < nruns; i++) {
        char t[4200];
        snprintf(t, sizeof t, "%s/train%d.dat", dir, i);
        quoted(f, t);
        fprintf(f, " using %s:%s with lines lw 1 lc rgb '#60%s' title ", x, y, colours[i] + 1);
        snprintf(t, sizeof t, "%s%s", runs[i].name, loss ? " train" : "");
        quoted(f, t);
        if (loss && runs[i].val.n > 0) {
            snprintf(t, sizeof t, "%s/val%d.dat", dir, i);
            fputs(", \\\n     ", f);
            quoted(f, t);
            fprintf(f, " using %s:3 with linespoints lw 2.5 pt 7 ps 1.1 lc rgb '%s' title ",
                    x, colours[i]);
            snprintf(t, sizeof t, "%s val", runs[i].name);
            quoted(f, t);
        }
        fputs(i + 1 < nruns ? ", \\\n     " : "\n", f);
    }
}

/* The picture's size in pixels: a fixed area for the axes and, to its
 * right, a legend in one column, as wide as its longest title (about 9 px a
 * character at the 12 pt font, plus the line sample) and as tall as its
 * entries (about 22 px each, two per run). */
typedef struct {
    int width, height, axes_left, key, rows;
} plot_layout;

static plot_layout layout_for(const plot_run *runs, int nruns) {
    size_t longest = 0;
    for (int i = 0; i < nruns; i++)
        if (strlen(runs[i].name) > longest) longest = strlen(runs[i].name);
    plot_layout l = {0, 0, 110, 9 * (int)(longest + sizeof " train") + 90, 2 * nruns};
    l.width = l.axes_left + 1000 + l.key;
    l.height = 3 * (l.rows * 22 + 130 > 500 ? l.rows * 22 + 130 : 500);
    return l;
}

/* panels.gp: the three panels of one picture, for whichever terminal is set.
 * Fixed margins line the x axes up; the legends sit to the right. */
static rt_status write_panels(const char *dir, const plot_run *runs, int nruns,
                              const plot_layout *l, rt_error_t err) {
    char path[4200];
    FILE *f = open_in(dir, "panels.gp", path, sizeof path, err);
    if (!f) return RT_ERR_RUN;
    plot_scale tokens = scale_for(max_of(runs, nruns, 0));
    plot_scale speed = scale_for(max_of(runs, nruns, 1));
    char x[64], y[64];
    fputs("set datafile missing NaN\nset grid lc rgb '#d0d0d0'\n"
          "set multiplot layout 3,1\n"
          "set title 'Loss by step'\nset xlabel 'step'\nset ylabel 'loss (nats/token)'\n",
          f);
    double right = 1.0 - (double)l->key / l->width;
    fprintf(f, "set lmargin at screen %.4f\nset rmargin at screen %.4f\n"
            "set key at screen %.4f, graph 1 left top Left reverse samplen 3 spacing 1.2 "
            "maxrows %d\n", (double)l->axes_left / l->width, right, right + 10.0 / l->width,
            l->rows);
    panel(f, dir, runs, nruns, "1", "3", 1);
    fprintf(f, "set title 'Loss by tokens seen'\nset xlabel 'tokens seen%s%s%s'\n",
            *tokens.name ? " (" : "", tokens.name, *tokens.name ? "s)" : "");
    snprintf(x, sizeof x, "($2/%g)", tokens.div);
    panel(f, dir, runs, nruns, x, "3", 1);
    fprintf(f, "set title 'Throughput'\nset xlabel 'elapsed wall-clock time (minutes)'\n"
            "set ylabel 'throughput (%s%stokens/s)'\n", speed.name, *speed.name ? " " : "");
    snprintf(y, sizeof y, "($5/%g)", speed.div);
    panel(f, dir, runs, nruns, "4", y, 0);
    fputs("unset multiplot\n", f);
    return close_checked(f, path, err);
}

/* plot.gp: the panels once into the PNG, once into the SVG. */
static rt_status write_script(const char *dir, const char *png, const char *svg,
                              const plot_layout *l, rt_error_t err) {
    char path[4200], panels[4200];
    FILE *f = open_in(dir, "plot.gp", path, sizeof path, err);
    if (!f) return RT_ERR_RUN;
    snprintf(panels, sizeof panels, "%s/panels.gp", dir);
    fprintf(f, "set terminal pngcairo size %d,%d font 'Sans,12' noenhanced\nset output ",
            l->width, l->height);
    quoted(f, png);
    fputs("\nload ", f);
    quoted(f, panels);
    fprintf(f, "\nunset output\nset terminal svg size %d,%d font 'Sans,16' noenhanced "
            "background '#ffffff'\nset output ", l->width, l->height);
    quoted(f, svg);
    fputs("\nload ", f);
    quoted(f, panels);
    fputs("\nunset output\n", f);
    return close_checked(f, path, err);
}

/* The last line of path that is not blank, into line. */
static void last_line(const char *path, char *line, size_t len) {
    snprintf(line, len, "(no message)");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[1024];
    while (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[strspn(buf, " \t")]) snprintf(line, len, "%s", buf);
    }
    fclose(f);
}

static rt_status gnuplot_result(int status, const char *errpath, rt_error_t err) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return RT_OK;
    char msg[900];
    last_line(errpath, msg, sizeof msg);
    if (WIFEXITED(status))
        snprintf(err, RT_ERRLEN, "gnuplot failed (exit %d): %s", WEXITSTATUS(status), msg);
    else
        snprintf(err, RT_ERRLEN, "gnuplot was killed by signal %d: %s", WTERMSIG(status), msg);
    return RT_ERR_RUN;
}

/* Runs gnuplot DIR/plot.gp with its stderr in DIR/gnuplot.err. */
static rt_status run_gnuplot(const char *dir, rt_error_t err) {
    char script[4200], errpath[4200];
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    snprintf(errpath, sizeof errpath, "%s/gnuplot.err", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char prog[] = "gnuplot";
    char *argv[] = {prog, script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc == ENOENT) {
        snprintf(err, RT_ERRLEN, "gnuplot is not installed (not on PATH): install the Debian "
                 "package gnuplot-nox (apt-get install gnuplot-nox)");
        return RT_ERR_RUN;
    }
    if (rc) {
        snprintf(err, RT_ERRLEN, "cannot start gnuplot (%s)", strerror(rc));
        return RT_ERR_RUN;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, RT_ERRLEN, "waiting for gnuplot: %s", strerror(errno));
            return RT_ERR_RUN;
        }
    return gnuplot_result(status, errpath, err);
}

rt_status plot_draw(const plot_run *runs, int nruns, const char *tmpdir, const char *png_path,
                    const char *svg_path, rt_error_t err) {
    for (int i = 0; i < nruns; i++)
        if (write_data(tmpdir, i, &runs[i], err)) return RT_ERR_RUN;
    plot_layout l = layout_for(runs, nruns);
    if (write_panels(tmpdir, runs, nruns, &l, err) ||
        write_script(tmpdir, png_path, svg_path, &l, err))
        return RT_ERR_RUN;
    return run_gnuplot(tmpdir, err);
}

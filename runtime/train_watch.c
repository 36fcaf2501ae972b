/* train_watch.c: what a training run tells the people watching it: the
 * step line (loss, LR, gradient norm, time, tokens/s, model TFLOP/s or MFU,
 * ETA), the step record in metrics.jsonl, and the straggler report. The time
 * from one step's end to the next one's (everything in between included:
 * the agreements between steps, saves, validation), minus the time spent
 * waiting in collectives (comm_wait_seconds), is the time a rank was busy;
 * fast ranks wait for slow ones, so the busiest rank is the straggler. Every --straggler-every steps the ranks share their mean busy
 * time; rank 0 logs the spread and warns when the slowest rank is more than
 * --straggler-threshold times the median, naming it and its host. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "train_internal.h"

static void fmt_eta(char *out, size_t len, double secs) {
    long s = (long)(secs + 0.5);
    if (s >= 3600) snprintf(out, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(out, len, "%ldm%02lds", s / 60, s % 60);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double busy_ms;
    char host[64];
} busy_report;

static void stragglers(trainer *tr, int step) {
    int P = tr->comm.world;
    busy_report mine = {tr->busy_sum_ms / tr->busy_steps, ""};
    gethostname(mine.host, sizeof mine.host - 1);
    busy_report *all = calloc((size_t)P, sizeof(busy_report));
    double *sorted = calloc((size_t)P, sizeof(double));
    comm_error_t cerr;
    /* Every rank takes part even if it could not allocate (a zero report). */
    int ok = all && sorted && comm_max_int(!all || !sorted) == 0;
    if (ok && !comm_allgather_bytes(&mine, all, sizeof mine, cerr) && tr->comm.rank == 0) {
        int slow = 0;
        for (int r = 0; r < P; r++) {
            sorted[r] = all[r].busy_ms;
            if (all[r].busy_ms > all[slow].busy_ms) slow = r;
        }
        qsort(sorted, (size_t)P, sizeof(double), cmp_double);
        double med = P % 2 ? sorted[P / 2] : 0.5 * (sorted[P / 2 - 1] + sorted[P / 2]);
        double spread = med > 0 ? all[slow].busy_ms / med : 0;
        rt_metrics_write(&tr->metrics, "\"event\":\"stragglers\",\"step\":%d,\"busy_ms_min\":%.2f,"
                         "\"busy_ms_median\":%.2f,\"busy_ms_max\":%.2f,\"slowest_rank\":%d,"
                         "\"slowest_host\":\"%s\"", step, sorted[0], med, sorted[P - 1], slow,
                         all[slow].host);
        if (spread > tr->o.straggler_threshold)
            fprintf(stderr, "gptrain train: warning: straggler: rank %d (host %s) was busy "
                    "%.1f ms/step over the last %d steps against a median of %.1f ms (%.2fx > "
                    "%.2fx); the others waited for it\n", slow, all[slow].host,
                    all[slow].busy_ms, tr->busy_steps, med, spread, tr->o.straggler_threshold);
    }
    free(all);
    free(sorted);
    tr->busy_sum_ms = 0;
    tr->busy_steps = 0;
}

void tr_report_step(trainer *tr, int step, double loss, float lr, float norm, double t0,
                    double w0) {
    const train_opts *o = &tr->o;
    double now = tr_now(), waited = comm_wait_seconds(), ms = (now - t0) * 1e3;
    double busy_ms = tr->mark_t > 0 ? (now - tr->mark_t - (waited - tr->mark_w)) * 1e3
                                    : ms - (waited - w0) * 1e3;
    tr->mark_t = now;
    tr->mark_w = waited;
    long tokens = (long)tr->accum * o->batch * o->seq * tr->comm.world;
    double tflops = gpt_flops_per_step(&tr->cfg, o->seq, tokens) / (ms / 1e3) / 1e12;
    double mfu = o->peak_tflops > 0 ? tflops / (o->peak_tflops * tr->comm.world) : 0;
    tr->ema_ms = tr->ema_ms > 0 ? 0.9 * tr->ema_ms + 0.1 * ms : ms;
    if (!o->quiet && ((step + 1) % o->log_every == 0 || step + 1 == o->steps)) {
        char eta[32], perf[48];
        fmt_eta(eta, sizeof eta, (o->steps - step - 1) * tr->ema_ms / 1e3);
        if (mfu > 0) snprintf(perf, sizeof perf, "MFU %.1f%%", 100 * mfu);
        else snprintf(perf, sizeof perf, "%.3g TFLOP/s", tflops);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s | %s | "
               "ETA %s\n", step + 1, o->steps, loss, lr, norm, ms, tokens / (ms / 1e3), perf,
               eta);
    }
    rt_metrics_write(&tr->metrics, "\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,"
                     "\"ms\":%.2f,\"busy_ms\":%.2f,\"tokens\":%ld,\"tflops\":%.4g,\"mfu\":%.4g",
                     step + 1, loss, lr, norm, ms, busy_ms, tokens * (step + 1), tflops, mfu);
    tr->busy_sum_ms += busy_ms;
    tr->busy_steps++;
    if (tr->comm.world > 1 && o->straggler_every > 0 && (step + 1) % o->straggler_every == 0)
        stragglers(tr, step + 1);
}

/* guard.c: the numerics guard of the training loop. Before each update it
 * looks at the step's loss and global gradient norm, which every rank holds
 * identically after the reductions, so every rank makes the same choice:
 * - a NaN or Inf loss or norm skips the update;
 * - so does a loss spike: a loss more than --spike-zscore standard
 *   deviations above the mean of the last GUARD_WINDOW accepted losses
 *   (judged once GUARD_MIN_SEEN of them are known; a falling loss is never
 *   a spike).
 * A skipped update leaves parameters, AdamW moments and its step count
 * untouched; the data and the schedule move on. --max-skips skips in a row
 * stop the run, before anything else is saved, so the newest checkpoint is
 * the last good one. Checkpoints keep the window, so a resumed run judges
 * exactly as the uninterrupted one would.
 * GPTRAIN_FAULT_LOSS="STEP:VALUE,..." (tests only) replaces the loss of
 * those steps (1-based, as printed) by VALUE (nan, inf or a number), so the
 * tests can provoke each case. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "train_internal.h"

#define GUARD_MIN_SEEN 20

double tr_guard_fault(int step, double loss) {
    const char *s = getenv("GPTRAIN_FAULT_LOSS");
    while (s && *s) {
        char *end;
        long at = strtol(s, &end, 10);
        if (*end != ':') return loss;
        double v = strtod(end + 1, &end);
        if (at == step) return v;
        s = *end == ',' ? end + 1 : NULL;
    }
    return loss;
}

int tr_guard_recent(const tr_guard *g, double *out) {
    int n = g->seen < GUARD_WINDOW ? g->seen : GUARD_WINDOW;
    for (int i = 0; i < n; i++) out[i] = g->window[(g->seen - n + i) % GUARD_WINDOW];
    return n;
}

void tr_guard_restore(tr_guard *g, const double *losses, int n) {
    g->seen = n < GUARD_WINDOW ? n : GUARD_WINDOW;
    memcpy(g->window, losses + n - g->seen, sizeof(double) * (size_t)g->seen);
}

/* The z-score of loss against the window (oldest first, so that a resumed
 * run sums in the same order), or 0 while it is too short. */
static double zscore(const tr_guard *g, double loss) {
    if (g->seen < GUARD_MIN_SEEN) return 0.0;
    double recent[GUARD_WINDOW], mean = 0.0, var = 0.0;
    int n = tr_guard_recent(g, recent);
    for (int i = 0; i < n; i++) mean += recent[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (recent[i] - mean) * (recent[i] - mean);
    /* A floor on the deviation: a flat loss must not make noise a spike. */
    double sd = fmax(sqrt(var / (n - 1)), 1e-3 * fabs(mean) + 1e-6);
    return (loss - mean) / sd;
}

const char *tr_guard_check(tr_guard *g, const train_opts *o, double loss, float norm,
                           double *z) {
    *z = 0.0;
    if (!isfinite(loss)) return "non-finite loss";
    if (!isfinite(norm)) return "non-finite gradient norm";
    *z = zscore(g, loss);
    if (o->spike_zscore > 0 && *z > o->spike_zscore) return "loss spike";
    g->window[g->seen % GUARD_WINDOW] = loss;
    g->seen++;
    return NULL;
}

/* JSON has no NaN or Inf: they are written as null. */
static void json_num(char *out, size_t len, double v) {
    if (isfinite(v)) snprintf(out, len, "%.6g", v);
    else snprintf(out, len, "null");
}

rt_status tr_guard_skip(trainer *tr, int step, const char *why, double loss, float norm,
                        double z, rt_error_t err) {
    tr->skips_in_row++;
    tr->skips_total++;
    char l[32], n[32];
    json_num(l, sizeof l, loss);
    json_num(n, sizeof n, norm);
    rt_metrics_write(&tr->metrics, "\"event\":\"skip\",\"step\":%d,\"reason\":\"%s\",\"loss\":%s,"
                     "\"grad_norm\":%s,\"zscore\":%.3g,\"in_a_row\":%d", step, why, l, n, z,
                     tr->skips_in_row);
    char spike[64] = "";
    if (strcmp(why, "loss spike") == 0)
        snprintf(spike, sizeof spike, ", z-score %.1f > --spike-zscore %g", z,
                 tr->o.spike_zscore);
    if (tr->comm.rank == 0)
        fprintf(stderr, "gptrain train: warning: step %d: skipped the update (%s: loss %.6g, "
                "gradient norm %.6g%s)\n", step, why, loss, norm, spike);
    if (tr->o.max_skips <= 0 || tr->skips_in_row < tr->o.max_skips) return RT_OK;
    snprintf(err, RT_ERRLEN, "step %d: %d updates in a row were skipped (the last for a %s); "
             "stopping. The newest checkpoint in %s is the last good state: lower --lr or "
             "check the data, then --resume", step, tr->skips_in_row, why, tr->o.run_dir);
    return RT_ERR_RUN;
}

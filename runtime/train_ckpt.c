/* train_ckpt.c: checkpoints of a training run: saving the full state
 * (parameters, AdamW moments, step, loader position) every --save-every
 * steps and at the end, pruning old ones, and resuming from one
 * (--resume auto|PATH). Each rank writes and reads only its own shard of
 * the flat buffers (checkpoint.h), so a checkpoint written by any world size
 * and ZeRO stage resumes on any other: the data order is global
 * (data.h), and the shards are only ranges of the same flat buffers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "checkpoint.h"
#include "train_internal.h"

/* This rank's part: its shard for writing. Moments live for
 * [opt_lo, opt_hi), which is the shard at stages >= 1 and the whole buffer
 * at stage 0; parameters live whole, or as the shard at stage 3. */
static ckpt_part shard_part(trainer *tr) {
    comm_zero *z = &tr->zero;
    gpt_model *m = &tr->model;
    float *p = z->pshard ? z->pshard : m->params + z->lo;
    return (ckpt_part){z->lo, z->hi, p, m->m + (z->lo - m->opt_lo), m->v + (z->lo - m->opt_lo)};
}

static long tokens_per_step(const trainer *tr) {
    return (long)tr->accum * tr->o.batch * tr->o.seq * tr->comm.world;
}

/* Rank 0, once a checkpoint is committed: latest names it, old ones go. In
 * a background save this runs on the writer thread, so a failure is kept
 * for the next wait to report. */
static void committed(void *ctx, const char *path) {
    trainer *tr = ctx;
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    ckpt_error_t cerr;
    if (ckpt_set_latest(tr->o.run_dir, name, cerr)) {
        snprintf(tr->latest_err, sizeof tr->latest_err, "%s", cerr);
        return;
    }
    ckpt_prune(tr->o.run_dir, tr->o.keep_last, tr->o.keep_every);
    struct stat sb;
    double secs = tr_now() - tr->save_t0, mb = stat(path, &sb) ? 0 : sb.st_size / 1048576.0;
    if (!tr->o.quiet)
        printf("saved %s: %.1f MB in %.2f s (%.0f MB/s)\n", path, mb, secs, mb / secs);
}

/* After a save ended well everywhere: rank 0's latest pointer, agreed;
 * the event records how long the save held up training (stall_ms). */
static rt_status saved(trainer *tr, int step, double stall_ms, rt_error_t err) {
    rt_status st = RT_OK;
    if (tr->latest_err[0]) {
        snprintf(err, RT_ERRLEN, "%s", tr->latest_err);
        tr->latest_err[0] = '\0';
        st = RT_ERR_RUN;
    }
    if ((st = tr_agree(tr, st, err))) return st;
    char name[64];
    ckpt_name(name, sizeof name, step);
    rt_metrics_write(&tr->metrics, "\"event\":\"save\",\"step\":%d,\"path\":\"%s/%s\","
                     "\"stall_ms\":%.1f", step, tr->o.run_dir, name, stall_ms);
    return RT_OK;
}

void tr_saver_start(trainer *tr) {
    tr->pending_step = -1;
    if (!tr->o.async_save) return;
    ckpt_error_t cerr;
    if (ckpt_async_new(&tr->saver, cerr) && tr->comm.rank == 0)
        fprintf(stderr, "gptrain train: note: %s; saving in the foreground\n", cerr);
}

rt_status tr_save_wait(trainer *tr, rt_error_t err) {
    if (!tr->saver || tr->pending_step < 0) return RT_OK;
    ckpt_error_t cerr;
    int step = tr->pending_step;
    tr->pending_step = -1;
    if (ckpt_async_wait(tr->saver, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    return saved(tr, step, tr->pending_stall_ms, err);
}

rt_status tr_save(trainer *tr, int step, rt_error_t err) {
    const train_opts *o = &tr->o;
    rt_status gst = tr->gpu ? tr_gpu_pull(tr, err) : RT_OK;
    if (gst) return gst;
    data_loader_state ls = data_loader_get_state(&tr->train);
    ckpt_train_state ts = {step, tokens_per_step(tr) * step, tr->model.adam_step, ls.epoch,
                           ls.cursor, o->seed, tokens_per_step(tr), o->seq, !o->no_shuffle,
                           tr->train.epoch_samples, tr->comm.world, o->zero,
                           tr->config_toml, {0}, 0};
    ts.nlosses = tr_guard_recent(&tr->guard, ts.losses);
    char name[64], path[4096];
    ckpt_name(name, sizeof name, step);
    snprintf(path, sizeof path, "%s/%s", o->run_dir, name);
    ckpt_part part = shard_part(tr);
    ckpt_error_t cerr;
    const char *tok = tr->tok ? DATA_TOKENIZER_FILE : "";
    double t0 = tr_now();
    comm_set_step(step);
    rt_status st = tr_save_wait(tr, err);
    if (st) return st;
    tr->save_t0 = tr_now();
    if (!o->quiet) printf("saving step %d to %s%s\n", step, path, tr->saver ? " in the "
                          "background" : "...");
    if (tr->saver) {
        /* Returns once this rank's part is copied; a thread writes it. */
        if (ckpt_async_save(tr->saver, path, &tr->model, &part, &ts, tok, committed, tr,
                            cerr)) {
            snprintf(err, RT_ERRLEN, "%s", cerr);
            return RT_ERR_RUN;
        }
        tr->pending_step = step;
        tr->pending_stall_ms = (tr_now() - t0) * 1e3;
        return RT_OK;
    }
    if (ckpt_save(path, &tr->model, &part, &ts, tok, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    if (tr->comm.rank == 0) committed(tr, path);
    return saved(tr, step, (tr_now() - t0) * 1e3, err);
}

void tr_link_model(trainer *tr, int step) {
    char name[64], from[4096], tmp[4096], to[4096];
    ckpt_name(name, sizeof name, step);
    snprintf(from, sizeof from, "%s/%s", tr->o.run_dir, name);
    snprintf(tmp, sizeof tmp, "%s/model.h5.tmp", tr->o.run_dir);
    snprintf(to, sizeof to, "%s/model.h5", tr->o.run_dir);
    unlink(tmp);
    if (link(from, tmp) != 0 || rename(tmp, to) != 0) {
        fprintf(stderr, "gptrain train: note: cannot link %s to %s (%s); the final model is "
                "%s\n", to, from, strerror(errno), from);
        unlink(tmp);
    }
}

/* What must match for the continuation to read the same data in the same
 * order; a mismatch names the checkpoint and the value. */
static rt_status check_state(trainer *tr, const char *path, const ckpt_train_state *ts,
                             rt_error_t err) {
    const train_opts *o = &tr->o;
    const char *what = NULL;
    long had = 0, now = 0;
    if (ts->seq != o->seq) what = "--seq", had = ts->seq, now = o->seq;
    else if (ts->seed != o->seed) what = "--seed", had = ts->seed, now = o->seed;
    else if (ts->shuffle != !o->no_shuffle) what = "shuffling", had = ts->shuffle,
        now = !o->no_shuffle;
    else if (ts->total_batch != tokens_per_step(tr))
        what = "tokens per step (--total-batch)", had = ts->total_batch,
        now = tokens_per_step(tr);
    else if (ts->epoch_samples != tr->train.epoch_samples)
        what = "train samples per epoch (the dataset changed?)", had = (long)ts->epoch_samples,
        now = (long)tr->train.epoch_samples;
    if (what) {
        snprintf(err, RT_ERRLEN, "%s: written with %s %ld, this run has %ld; resume with "
                 "the same value", path, what, had, now);
        return RT_ERR_USAGE;
    }
    if (ts->step >= o->steps) {
        snprintf(err, RT_ERRLEN, "%s: already at step %ld of --steps %d; raise --steps to "
                 "train on", path, ts->step, o->steps);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

/* The checkpoint --resume names: auto is RUN_DIR/latest, or nothing. */
static rt_status resume_path(trainer *tr, char *path, size_t len, rt_error_t err) {
    const char *r = tr->o.resume;
    ckpt_error_t cerr;
    path[0] = '\0';
    if (strcmp(r, "auto") != 0) {
        snprintf(path, len, "%s", r);
        return RT_OK;
    }
    ckpt_status cs = ckpt_latest(tr->o.run_dir, path, len, cerr);
    if (cs == CKPT_ERR_IO) {
        path[0] = '\0';
        if (!tr->o.quiet) printf("no checkpoint in %s: starting fresh\n", tr->o.run_dir);
        return RT_OK;
    }
    if (cs) snprintf(err, RT_ERRLEN, "%s", cerr);
    return cs ? RT_ERR_USAGE : RT_OK;
}

rt_status tr_resume(trainer *tr, rt_error_t err) {
    char path[4096];
    rt_status st = resume_path(tr, path, sizeof path, err);
    if (st || !path[0]) return st;
    ckpt_train_state ts;
    ckpt_error_t cerr;
    gpt_model *m = &tr->model;
    if (ckpt_read_state(path, &ts, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    if ((st = check_state(tr, path, &ts, err))) return st;
    /* Parameters whole (or this rank's shard at stage 3), moments where
     * this rank keeps them. */
    double t0 = tr_now();
    if (!tr->o.quiet) printf("resuming from %s (step %ld)...\n", path, ts.step);
    comm_zero *z = &tr->zero;
    ckpt_part params = z->pshard ? (ckpt_part){z->lo, z->hi, z->pshard, NULL, NULL}
                                 : (ckpt_part){0, m->table.total, m->params, NULL, NULL};
    ckpt_part moments = {m->opt_lo, m->opt_hi, NULL, m->m, m->v};
    data_error_t derr;
    if (ckpt_load_part(path, m, &params, cerr) || ckpt_load_part(path, m, &moments, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    comm_error_t zerr;
    if (comm_zero_params_changed(z, m, zerr)) {
        snprintf(err, RT_ERRLEN, "%s", zerr);
        return RT_ERR_RUN;
    }
    if (data_loader_set_state(&tr->train, (data_loader_state){ts.epoch, ts.cursor}, derr)) {
        snprintf(err, RT_ERRLEN, "%s: %s", path, derr);
        return RT_ERR_USAGE;
    }
    m->adam_step = (int)ts.adam_step;
    if (tr->gpu && (st = tr_gpu_push(tr, err))) return st;
    tr_guard_restore(&tr->guard, ts.losses, ts.nlosses);
    tr->start_step = (int)ts.step;
    snprintf(tr->resumed_from, sizeof tr->resumed_from, "%s", path);
    if (!tr->o.quiet)
        printf("resumed from %s at step %ld in %.2f s (written by %d rank%s at ZeRO stage "
               "%d)\n", path, ts.step, tr_now() - t0, ts.world, ts.world == 1 ? "" : "s",
               ts.zero);
    rt_metrics_write(&tr->metrics, "\"event\":\"resume\",\"step\":%ld,\"path\":\"%s\"", ts.step,
                     path);
    return RT_OK;
}

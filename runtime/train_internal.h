/* train_internal.h: the trainer shared by train.c (the loop) and
 * train_ckpt.c (saving and resuming checkpoints). Not a public API. */
#ifndef TRAIN_INTERNAL_H
#define TRAIN_INTERNAL_H

#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "runtime.h"

typedef struct {
    const char *data, *run_dir, *model, *schedule;
    int layers, heads, channels, max_seq, vocab;
    int batch, seq, steps, warmup;
    long total_batch, seed;
    float lr, final_frac, decay_frac, wd, clip, beta1, beta2, eps;
    int val_every, val_batches, sample_every, sample_tokens, log_every, quiet, no_shuffle;
    int zero, dry_run;
    float comm_timeout, bucket_mb;
    int save_every, keep_last, keep_every, async_save;
    const char *resume; /* "" (none), "auto" or a checkpoint path */
    const char *init_from; /* "" or a model file to start from */
    const char *profile;   /* "" or a cluster profile (profile.c) */
    const char *config;    /* --config FILE, or NULL */
    float peak_tflops, straggler_threshold;
    int straggler_every;
    float spike_zscore; /* numerics guard (guard.c); 0: no spike check */
    int max_skips;      /* skips in a row that stop the run; 0: never */
    const char *device; /* --device: "cpu" or "cuda" */
    int device_cuda;    /* resolved from device */
    int recompute, stochastic_rounding; /* --device cuda's memory and rounding options */
    const char *attention; /* --attention: "gptrain" or "cudnn" (--device cuda) */
} train_opts;

/* The numerics guard's memory: the last accepted losses. */
#define GUARD_WINDOW CKPT_LOSS_HISTORY /* checkpoints keep it whole */
typedef struct {
    double window[GUARD_WINDOW];
    int seen;
} tr_guard;

typedef struct {
    train_opts o;
    gpt_config cfg;
    rt_schedule sched;
    int accum;
    gpt_model model;
    data_tokenizer *tok; /* the data's tokenizer, or NULL for bare llm.c shards */
    data_loader train, val;
    int have_val;
    comm_ctx comm;
    comm_zero zero;
    rt_metrics metrics;
    int *inputs, *targets;
    int start_step;  /* steps already taken (a resumed run) */
    char resumed_from[4096];
    struct ckpt_async *saver; /* --async-save's writer, or NULL */
    int pending_step;         /* the step of the background save in flight, or -1 */
    double pending_stall_ms;  /* how long that save held the training thread */
    double save_t0;           /* when the newest save started (tr_now) */
    char latest_err[512];     /* rank 0: why the writer could not update latest */
    int preempted;            /* stopped by a signal after saving */
    char profile[4096];       /* the cluster profile's file, or "" */
    double ema_ms;            /* smoothed step time, for the ETA */
    double mark_t, mark_w;    /* clock and comm_wait_seconds at the last step's end */
    double busy_sum_ms;       /* busy time since the last straggler report */
    int busy_steps;
    tr_guard guard;
    const rt_flag *flags;  /* the command's flag table, for the effective config */
    int nflags;
    char *config_toml;     /* the effective config (config.c), for checkpoints */
    int skips_in_row, skips_total;
    struct gpt_cuda *gpu;  /* --device cuda's model (train_gpu.c), or NULL */
    struct comm_nccl *nccl; /* ... its NCCL communicator (several ranks), or NULL */
    struct comm_nccl_bucketer *gbuckets; /* ... its gradient buckets, or NULL */
    struct comm_nccl_units *gunits;      /* ... its ZeRO-2/3 unit slots, or NULL */
} trainer;

/* Seconds on a monotonic clock. */
double tr_now(void);

/* Agreement after work that can fail on one rank alone: every rank learns
 * whether any failed (see train.c). */
rt_status tr_agree(trainer *tr, rt_status st, rt_error_t err);

/* Collective: saves the full training state after `step` steps as
 * RUN_DIR/ckpt_<step>.h5, points RUN_DIR/latest at it and prunes old ones. */
rt_status tr_save(trainer *tr, int step, rt_error_t err);

/* Collective: with --resume, loads the checkpoint into the (already sharded)
 * model, the optimizer and the loader, and sets tr->start_step. */
rt_status tr_resume(trainer *tr, rt_error_t err);

/* After each step (train_watch.c): the console line and the metrics record;
 * every --straggler-every steps, collectively, the straggler report. */
void tr_report_step(trainer *tr, int step, double loss, float lr, float norm, double t0,
                    double w0);

/* The numerics guard (guard.c). tr_guard_check returns why this step's
 * update must be skipped (NaN/Inf, loss spike) or NULL, setting *z to the
 * loss's z-score; an accepted loss joins the window. tr_guard_skip logs a
 * skip and returns RT_ERR_RUN with the message once --max-skips skips came
 * in a row. tr_guard_fault is the test hook GPTRAIN_FAULT_LOSS. */
const char *tr_guard_check(tr_guard *g, const train_opts *o, double loss, float norm,
                           double *z);
rt_status tr_guard_skip(trainer *tr, int step, const char *why, double loss, float norm,
                        double z, rt_error_t err);
double tr_guard_fault(int step, double loss);
/* The window's losses, oldest first, into out (GUARD_WINDOW doubles); the
 * count. tr_guard_restore sets the window from such a list (a checkpoint's). */
int tr_guard_recent(const tr_guard *g, double *out);
void tr_guard_restore(tr_guard *g, const double *losses, int n);

/* Collective: waits for a background save in flight and reports how it
 * ended (nothing to do without --async-save). */
rt_status tr_save_wait(trainer *tr, rt_error_t err);

/* Collective: with --async-save, the background writer (or, where MPI has
 * no MPI_THREAD_MULTIPLE, a note and saves in the foreground). */
void tr_saver_start(trainer *tr);

/* Rank 0, after the final save: RUN_DIR/model.h5 becomes the final
 * checkpoint (a hard link, so pruning never takes it). */
void tr_link_model(trainer *tr, int step);

/* --device cuda (train_gpu.c; nogpu.c in a build without CUDA). The
 * CPU model keeps the host copy of the weights and optimizer state:
 * tr_gpu_open creates the GPU model from it, tr_gpu_pull brings the GPU's
 * state back into it (before saves and samples), tr_gpu_push sends it over
 * (after a resume). The rest are the GPU's halves of the step; forward's
 * loss lands in tr->model.mean_loss as on the CPU; backward arms the
 * gradient buckets on the last micro-step (last = 1); tr_gpu_reduce ends
 * the reduction and sets the global norm; tr_gpu_apply steps (opt NULL:
 * skips) and, at ZeRO stage 1, allgathers the weights. tr_gpu_overlaps is 1
 * when the last backward starts collectives (the ranks must agree before
 * it). tr_gpu_host_batch is the micro-batch the CPU model is sized for (1
 * when the GPU trains). */
int tr_gpu_host_batch(const trainer *tr);
rt_status tr_gpu_open(trainer *tr, rt_error_t err);
rt_status tr_gpu_push(trainer *tr, rt_error_t err);
rt_status tr_gpu_pull(trainer *tr, rt_error_t err);
rt_status tr_gpu_forward(trainer *tr, int training, rt_error_t err);
rt_status tr_gpu_backward(trainer *tr, int last, rt_error_t err);
rt_status tr_gpu_zero_grad(trainer *tr, rt_error_t err);
rt_status tr_gpu_reduce(trainer *tr, long step, float *norm, rt_error_t err);
rt_status tr_gpu_apply(trainer *tr, const gpt_adamw *opt, float norm, long step,
                       rt_error_t err);
int tr_gpu_overlaps(const trainer *tr);
void tr_gpu_describe(const trainer *tr, char *out, size_t len);
/* failed: the run stops on an error (collectives may be stuck). */
void tr_gpu_close(trainer *tr, int failed);

#endif

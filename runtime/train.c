/* train.c: `gptrain train`, the training loop, on one rank or many.
 * Each step accumulates gradients over total_batch / (B*T*ranks) micro-steps,
 * averages them over the ranks, clips to the global norm and steps at the
 * scheduled learning rate; with --zero 1, 2 or 3 each rank keeps and steps
 * only its shard of the optimizer state (and of the gradient, and of the
 * parameters), see comm.h. At stage 3 every forward gathers parameters, so
 * every rank runs every forward (validation and samples too). Every place where one rank
 * can fail alone (data, sampling) is followed by an agreement on the status,
 * so all ranks stop together instead of waiting in a collective.
 * Validation, samples, checkpoints and the console/JSONL logs hang off the
 * step counter; the final checkpoint is also RUN_DIR/model.h5, beside a copy
 * of the data's tokenizer (RUN_DIR/tokenizer.bpe) that `gptrain sample`
 * picks up. Checkpoints and resuming are in train_ckpt.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "checkpoint.h"
#include "train_internal.h"

double tr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A model file's config (--init-from), or the preset with any explicit
 * dimension flags on top of it. */
static rt_status build_config(trainer *tr, rt_error_t err) {
    const train_opts *o = &tr->o;
    gpt_error_t gerr;
    if (o->init_from[0]) {
        ckpt_error_t cerr;
        int tok_vocab = tr->tok ? data_tok_vocab_size(tr->tok) : 0;
        if (ckpt_read_config(o->init_from, &tr->cfg, cerr)) {
            snprintf(err, RT_ERRLEN, "%s", cerr);
            return RT_ERR_USAGE;
        }
        if (tok_vocab > tr->cfg.vocab) {
            snprintf(err, RT_ERRLEN, "%s: the model's vocab %d is smaller than the data's "
                     "tokenizer (%d tokens)", o->init_from, tr->cfg.vocab, tok_vocab);
            return RT_ERR_USAGE;
        }
        return RT_OK;
    }
    if (gpt_config_preset(o->model, &tr->cfg, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_USAGE;
    }
    if (o->layers) tr->cfg.n_layer = o->layers;
    if (o->heads) tr->cfg.n_head = o->heads;
    if (o->channels) tr->cfg.n_embd = o->channels;
    if (o->max_seq) tr->cfg.max_seq = o->max_seq;
    /* The data's tokenizer fixes the vocabulary unless --vocab widens it. */
    int tok_vocab = tr->tok ? data_tok_vocab_size(tr->tok) : 0;
    if (o->vocab && o->vocab < tok_vocab) {
        snprintf(err, RT_ERRLEN, "--vocab %d is smaller than the data's tokenizer (%d tokens)",
                 o->vocab, tok_vocab);
        return RT_ERR_USAGE;
    }
    if (o->vocab) tr->cfg.vocab = o->vocab;
    else if (tok_vocab) tr->cfg.vocab = tok_vocab;
    if (gpt_config_finish(&tr->cfg, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

static rt_status check_opts(trainer *tr, rt_error_t err) {
    const train_opts *o = &tr->o;
    long bt = (long)o->batch * o->seq * tr->comm.world;
    if (o->batch < 1 || o->seq < 1)
        snprintf(err, RT_ERRLEN, "--batch %d and --seq %d must be at least 1", o->batch, o->seq);
    else if (o->seq > tr->cfg.max_seq)
        snprintf(err, RT_ERRLEN, "--seq %d exceeds the model's max sequence length %d",
                 o->seq, tr->cfg.max_seq);
    else if (o->total_batch < 0 || (o->total_batch && o->total_batch % bt != 0))
        snprintf(err, RT_ERRLEN, "--total-batch %ld is not a positive multiple of "
                 "batch x seq x ranks = %ld tokens", o->total_batch, bt);
    else if (o->steps < 1 || o->warmup < 0 || o->log_every < 1 || o->val_every < 0 ||
             o->val_batches < 1 || o->sample_every < 0 || o->sample_tokens < 1 ||
             o->max_skips < 0 || o->spike_zscore < 0)
        snprintf(err, RT_ERRLEN, "--steps, --log-every, --val-batches and --sample-tokens "
                 "must be >= 1; --warmup, --val-every, --sample-every, --max-skips and "
                 "--spike-zscore >= 0");
    else if (!(o->lr > 0) || o->final_frac < 0 || o->decay_frac < 0 || o->decay_frac > 1 ||
             o->wd < 0 || o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1 ||
             !(o->eps > 0))
        snprintf(err, RT_ERRLEN, "optimizer settings out of range: need --lr > 0, "
                 "--final-lr-frac >= 0, 0 <= --wsd-decay-frac <= 1, --weight-decay >= 0, "
                 "0 <= --beta1, --beta2 < 1, --eps > 0");
    else if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda"))
        snprintf(err, RT_ERRLEN, "--device '%s' is not cpu or cuda", o->device);
    else if (strcmp(o->attention, "gptrain") && strcmp(o->attention, "cudnn"))
        snprintf(err, RT_ERRLEN, "--attention '%s' is not gptrain or cudnn", o->attention);
    else if (!strcmp(o->attention, "cudnn") && strcmp(o->device, "cuda"))
        snprintf(err, RT_ERRLEN, "--attention cudnn needs --device cuda");
    else
        return rt_schedule_kind(o->schedule, &tr->sched.kind, err);
    return RT_ERR_USAGE;
}

static rt_status open_data(trainer *tr, rt_error_t err) {
    const train_opts *o = &tr->o;
    data_error_t derr;
    if (data_loader_open(&tr->train, o->data, "train", o->seq, tr->cfg.vocab,
                         (uint64_t)o->seed, !o->no_shuffle, derr)) {
        snprintf(err, RT_ERRLEN, "%s", derr);
        return RT_ERR_USAGE;
    }
    data_status ds = data_loader_open(&tr->val, o->data, "val", o->seq, tr->cfg.vocab, 0, 0,
                                      derr);
    tr->have_val = ds == DATA_OK;
    if (ds == DATA_ERR_IO && o->val_every > 0 && !o->quiet)
        fprintf(stderr, "gptrain train: note: %s; validation is off\n", derr);
    else if (ds != DATA_OK && ds != DATA_ERR_IO) {
        snprintf(err, RT_ERRLEN, "%s", derr);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

/* The effective config: RUN_DIR/config.toml (which --config reads back)
 * and the first record of metrics.jsonl, every flag's value plus what was
 * resolved from them (resolved values win where the names meet). */
static rt_status write_config(trainer *tr, rt_error_t err) {
    const train_opts *o = &tr->o;
    const gpt_config *c = &tr->cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.toml", o->run_dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(tr->config_toml, f) < 0 || fclose(f)) {
        if (f) fclose(f);
        snprintf(err, RT_ERRLEN, "cannot write %s", path);
        return RT_ERR_RUN;
    }
    static const char *const resolved[] = {"max_seq", "vocab", "batch", "seq", "steps", "lr",
                                           "warmup", "seed", "data", "zero", "profile", NULL};
    char *flags = rt_config_json(tr->flags, tr->nflags, resolved);
    comm_zero_bytes mem = comm_zero_memory(&tr->zero);
    rt_metrics_write(&tr->metrics,
        "\"event\":\"config\",%s\"n_layer\":%d,\"n_head\":%d,\"n_embd\":%d,\"max_seq\":%d,"
        "\"vocab\":%d,\"padded_vocab\":%d,\"params\":%zu,\"batch\":%d,\"seq\":%d,"
        "\"accum\":%d,\"steps\":%d,\"lr\":%g,\"schedule\":\"%s\",\"warmup\":%d,"
        "\"seed\":%ld,\"shuffle\":%s,\"tokenizer\":%s,\"data\":\"%s\",\"ranks\":%d,"
        "\"zero\":%d,\"bytes_params\":%zu,\"bytes_grads\":%zu,\"bytes_optimizer\":%zu,"
        "\"bytes_scratch\":%zu,\"profile\":\"%s\"", flags ? flags : "",
        c->n_layer, c->n_head, c->n_embd, c->max_seq, c->vocab, c->padded_vocab,
        gpt_num_params(c), o->batch, o->seq, tr->accum, o->steps, o->lr, o->schedule,
        o->warmup, o->seed, o->no_shuffle ? "false" : "true",
        tr->tok ? "\"" DATA_TOKENIZER_FILE "\"" : "null", o->data, tr->comm.world, o->zero,
        mem.params, mem.grads, mem.optimizer, mem.scratch, tr->profile);
    free(flags);
    return RT_OK;
}

/* Copies the tokenizer into the run directory, so the run stands alone. */
static rt_status save_tokenizer(trainer *tr, rt_error_t err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tr->o.run_dir, DATA_TOKENIZER_FILE);
    data_error_t derr;
    if (!tr->tok || data_tok_save(tr->tok, path, derr) == DATA_OK) return RT_OK;
    snprintf(err, RT_ERRLEN, "%s", derr);
    return RT_ERR_RUN;
}

static rt_status setup(trainer *tr, rt_error_t err) {
    rt_status st;
    if ((st = rt_find_tokenizer(tr->o.data, &tr->tok, err)) || (st = build_config(tr, err)) ||
        (st = check_opts(tr, err)) || (st = open_data(tr, err)))
        return st;
    const train_opts *o = &tr->o;
    long bt = (long)o->batch * o->seq;
    tr->accum = o->total_batch ? (int)(o->total_batch / (bt * tr->comm.world)) : 1;
    tr->sched = (rt_schedule){tr->sched.kind, o->lr, o->warmup, o->steps,
                              o->final_frac, o->decay_frac};
    gpt_error_t gerr;
    tr->o.device_cuda = strcmp(o->device, "cuda") == 0;
    if (gpt_model_create(&tr->model, &tr->cfg, tr_gpu_host_batch(tr), o->seq, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_RUN;
    }
    ckpt_error_t kerr;
    if (!o->init_from[0]) gpt_init_weights(&tr->model, (uint64_t)o->seed);
    else if (ckpt_load_model(o->init_from, &tr->model, kerr)) {
        snprintf(err, RT_ERRLEN, "%s", kerr);
        return RT_ERR_USAGE;
    }
    comm_error_t cerr;
    /* Rank 0's weights for everyone, as DDP does: the seeded init already
     * agrees, but a rank must never train from weights of its own. */
    if (tr->comm.world > 1 &&
        comm_broadcast(tr->model.params, tr->model.table.total, 0, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    /* On the GPU the buckets are NCCL's (train_gpu.c), not the host model's. */
    size_t host_buckets = o->device_cuda ? 0 : (size_t)(o->bucket_mb * 1048576.0f);
    if (comm_zero_init(&tr->zero, &tr->model, o->zero, host_buckets, !o->device_cuda,
                       &tr->comm, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    if (o->device_cuda && (st = tr_gpu_open(tr, err))) return st;
    tr->inputs = malloc(sizeof(int) * bt);
    tr->targets = malloc(sizeof(int) * bt);
    if (!tr->inputs || !tr->targets) {
        snprintf(err, RT_ERRLEN, "out of memory for the batch buffers");
        return RT_ERR_RUN;
    }
    /* Rank 0 writes the run directory; a dry run writes nothing. */
    if (tr->comm.rank != 0 || o->dry_run) return RT_OK;
    if ((st = rt_mkdirs(o->run_dir, err)) || (st = save_tokenizer(tr, err)) ||
        (st = rt_metrics_open(&tr->metrics, o->run_dir, o->resume[0] != '\0', err)))
        return st;
    return write_config(tr, err);
}

static rt_status next_batch(trainer *tr, data_loader *L, rt_error_t err) {
    data_error_t derr;
    if (data_loader_next(L, tr->comm.rank, tr->comm.world, tr->o.batch, tr->inputs,
                         tr->targets, derr)) {
        snprintf(err, RT_ERRLEN, "%s", derr);
        return RT_ERR_USAGE;
    }
    return RT_OK;
}

/* training: a backward follows (the GPU's classifier then leaves the
 * logits' gradient behind). */
static rt_status forward(trainer *tr, int training, rt_error_t err) {
    if (tr->gpu) return tr_gpu_forward(tr, training, err);
    gpt_error_t gerr;
    gpt_status gs = gpt_forward(&tr->model, tr->inputs, tr->targets, tr->o.batch, tr->o.seq,
                                gerr);
    if (gs) snprintf(err, RT_ERRLEN, "%s", gerr);
    return gs == GPT_OK ? RT_OK : gs == GPT_ERR_HOOK || gs == GPT_ERR_NOMEM ? RT_ERR_RUN
                                                                         : RT_ERR_USAGE;
}

static rt_status backward(trainer *tr, int last, rt_error_t err) {
    if (tr->gpu) return tr_gpu_backward(tr, last, err);
    gpt_error_t gerr;
    if (gpt_backward(&tr->model, 1.0f / tr->accum, gerr) == GPT_OK) return RT_OK;
    snprintf(err, RT_ERRLEN, "%s", gerr);
    return RT_ERR_RUN;
}

/* Agreement after work that can fail on one rank alone: every rank learns
 * whether any failed. The failed rank keeps its own message; the others stop
 * with the same status and a message naming it. */
rt_status tr_agree(trainer *tr, rt_status st, rt_error_t err) {
    if (tr->comm.world == 1) return st;
    int worst = comm_max_int((int)st);
    if (worst == 0) return RT_OK;
    int who = comm_argmax_int((int)st);
    if (st == RT_OK)
        snprintf(err, RT_ERRLEN, "stopping: rank %d failed (its message is above)", who);
    return (rt_status)worst;
}

/* Mean loss over the first val_batches global batches (of total_batch
 * tokens each) of the val split, read in order: the same set every time and
 * for any world size. */
static rt_status validate(trainer *tr, int step, rt_error_t err) {
    comm_set_step(step);
    data_loader_reset(&tr->val);
    double sum = 0.0;
    int n = tr->o.val_batches * tr->accum, gathers = comm_zero_gathers(&tr->zero);
    rt_status st = RT_OK;
    for (int i = 0; i < n && !st; i++) {
        st = next_batch(tr, &tr->val, err);
        if (gathers) st = tr_agree(tr, st, err);
        if (!st && !(st = forward(tr, 0, err))) sum += tr->model.mean_loss;
    }
    if ((st = tr_agree(tr, st, err))) return st;
    double loss = comm_mean_double(sum / n);
    if (!tr->o.quiet) printf("step %d/%d | val loss %.4f\n", step, tr->o.steps, loss);
    rt_metrics_write(&tr->metrics, "\"event\":\"val\",\"step\":%d,\"val_loss\":%.6f", step, loss);
    return RT_OK;
}

/* Rank 0 prints; at stage 3 the others draw the same tokens silently, since
 * each forward needs them. */
static rt_status sample(trainer *tr, rt_error_t err) {
    int prompt = tr->tok && data_tok_eot(tr->tok) >= 0 ? data_tok_eot(tr->tok) : '\n';
    rt_sample_opts so = {.max_tokens = tr->o.sample_tokens, .temperature = 1.0f,
                         .top_p = 1.0f, .seed = (uint64_t)tr->o.seed};
    int speak = tr->comm.rank == 0;
    rt_status st = tr->gpu ? tr_gpu_pull(tr, err) : RT_OK;
    if (st) return st;
    if (speak) printf("--- sample ---\n");
    st = rt_generate(&tr->model, tr->tok, &prompt, 1, &so, speak ? stdout : NULL, err);
    if (speak) printf("\n--------------\n");
    return st;
}

/* Forward and backward over this rank's micro-steps; gradients accumulate.
 * Ranks agree on their status before any pass that starts collectives
 * (every forward at stage 3; every backward at stages 2-3; the last one when
 * buckets overlap backward), so a rank that failed never meets a collective
 * the others started; otherwise once, after the last micro-step. On the CPU
 * a last backward that overlaps its collectives is not followed by an
 * agreement (MPI would match it against a peer's bucket). A GPU's
 * collectives run on NCCL's own communicator, so there the ranks agree
 * after it too: a rank whose backward failed says so, and its peers stop
 * with it, instead of waiting in the next MPI collective for the watchdog. */
static rt_status micro_steps(trainer *tr, double *loss, rt_status st, rt_error_t err) {
    int per_micro = tr->zero.stage >= 2;
    int overlap = comm_zero_overlaps(&tr->zero) || tr_gpu_overlaps(tr);
    int gathers = comm_zero_gathers(&tr->zero);
    for (int k = 0; k < tr->accum; k++) {
        int last = k == tr->accum - 1, agreed = per_micro || (last && overlap);
        if (!st) st = next_batch(tr, &tr->train, err);
        if (gathers && (st = tr_agree(tr, st, err))) return st;
        if (!st) st = forward(tr, 1, err);
        if (agreed && (st = tr_agree(tr, st, err))) return st;
        if (!st) {
            if (last) comm_zero_last_backward(&tr->zero);
            st = backward(tr, last, err);
            *loss += tr->model.mean_loss / tr->accum;
        }
        comm_error_t cerr;
        if (!st && per_micro && comm_zero_micro_done(&tr->zero, &tr->model, cerr)) {
            snprintf(err, RT_ERRLEN, "%s", cerr);
            return RT_ERR_RUN;
        }
        if (last && agreed && !tr->gpu) return st;
    }
    return tr_agree(tr, st, err);
}

static rt_status train_step(trainer *tr, int step, rt_status st, rt_error_t err) {
    double t0 = tr_now(), w0 = comm_wait_seconds(), loss = 0.0;
    comm_set_step(step + 1);
    if (!tr->gpu) comm_zero_begin(&tr->zero, &tr->model);
    else if (!st) st = tr_gpu_zero_grad(tr, err);
    if ((st = micro_steps(tr, &loss, st, err))) return st;
    loss = tr_guard_fault(step + 1, comm_mean_double(loss));
    float norm;
    gpt_adamw opt = {rt_lr_at(&tr->sched, step), tr->o.beta1, tr->o.beta2, tr->o.eps,
                     tr->o.wd, tr->o.clip};
    comm_error_t cerr;
    if (tr->gpu) {
        if ((st = tr_gpu_reduce(tr, step + 1, &norm, err))) return st;
    } else if (comm_zero_reduce(&tr->zero, &tr->model, &norm, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    double z;
    const char *why = tr_guard_check(&tr->guard, &tr->o, loss, norm, &z);
    if (tr->gpu) {
        if ((st = tr_gpu_apply(tr, why ? NULL : &opt, norm, step + 1, err))) return st;
    } else if (comm_zero_apply(&tr->zero, &tr->model, why ? NULL : &opt, norm, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_RUN;
    }
    if (why) return tr_guard_skip(tr, step + 1, why, loss, norm, z, err);
    tr->skips_in_row = 0;
    tr_report_step(tr, step, loss, opt.lr, norm, t0, w0);
    return RT_OK;
}

/* The resolved model, batch, FLOPs and memory per rank: the start of every
 * run's output, and all that --dry-run prints. */
static void print_plan(const trainer *tr) {
    const train_opts *o = &tr->o;
    long tokens = (long)tr->accum * o->batch * o->seq * tr->comm.world;
    printf("model %d layers, %d heads, %d channels, max seq %d, vocab %d (padded %d), %zu "
           "params\n", tr->cfg.n_layer, tr->cfg.n_head, tr->cfg.n_embd, tr->cfg.max_seq,
           tr->cfg.vocab, tr->cfg.padded_vocab, gpt_num_params(&tr->cfg));
    printf("batch %dx%d x %d accum x %d ranks = %ld tokens/step, %.3g GFLOP/step, %d steps, "
           "lr %g (%s)\n", o->batch, o->seq, tr->accum, tr->comm.world, tokens,
           gpt_flops_per_step(&tr->cfg, o->seq, tokens) / 1e9, o->steps, o->lr, o->schedule);
    if (o->device_cuda) {
        char dev[512];
        tr_gpu_describe(tr, dev, sizeof dev);
        printf("device: %s\n", dev);
    }
    comm_zero_bytes mem = comm_zero_memory(&tr->zero);
    printf("%smemory per rank (ZeRO stage %d): params %.1f MiB, grads %.1f MiB, optimizer "
           "%.1f MiB, working buffers %.1f MiB\n", o->device_cuda ? "host " : "", o->zero,
           mem.params / 1048576.0, mem.grads / 1048576.0, mem.optimizer / 1048576.0,
           mem.scratch / 1048576.0);
}

/* The signal every rank stops for (any rank's), or 0: one small agreement
 * per step, so all ranks stop after the same step. */
static int stop_signal(trainer *tr) {
    int sig = rt_preempt_pending();
    return tr->comm.world > 1 ? comm_max_int(sig) : sig;
}

/* A stop asked by a signal: save where we are, then say how to go on. */
static rt_status stop(trainer *tr, int step, int sig, rt_error_t err) {
    rt_status st = tr_save(tr, step, err);
    if (!st) st = tr_save_wait(tr, err);
    if (st) return st;
    if (tr->comm.rank == 0)
        fprintf(stderr, "gptrain train: stopped by signal %d (%s) after step %d; saved a "
                "checkpoint; run the same command with --resume auto to continue (exit %d)\n",
                sig, strsignal(sig), step, RT_EXIT_PREEMPTED);
    rt_metrics_write(&tr->metrics, "\"event\":\"stop\",\"step\":%d,\"signal\":%d", step, sig);
    tr->preempted = 1;
    return RT_OK;
}

static rt_status run(trainer *tr, rt_error_t err) {
    const train_opts *o = &tr->o;
    if (!o->quiet || (o->dry_run && tr->comm.rank == 0)) print_plan(tr);
    if (o->dry_run) {
        if (tr->comm.rank == 0) printf("resolved config (as --config reads it):\n%s",
                                       tr->config_toml);
        return RT_OK;
    }
    rt_status st = RT_OK;
    for (int step = tr->start_step; step < o->steps && !st; step++) {
        if (tr->have_val && o->val_every > 0 && step % o->val_every == 0)
            st = validate(tr, step, err);
        if (!st && o->sample_every > 0 && step > 0 && step % o->sample_every == 0 &&
            (tr->comm.rank == 0 || comm_zero_gathers(&tr->zero)))
            st = sample(tr, err);
        /* A failed sample on rank 0 enters the step's agreement. */
        if (!st || tr->comm.world > 1) st = train_step(tr, step, st, err);
        if (!st && o->save_every > 0 && (step + 1) % o->save_every == 0 && step + 1 < o->steps)
            st = tr_save(tr, step + 1, err);
        int sig = st || step + 1 == o->steps ? 0 : stop_signal(tr);
        if (sig) return stop(tr, step + 1, sig, err);
    }
    if (!st && tr->have_val && o->val_every > 0) st = validate(tr, o->steps, err);
    if (!st) st = tr_save(tr, o->steps, err);
    if (!st) st = tr_save_wait(tr, err);
    if (!st && tr->comm.rank == 0) tr_link_model(tr, o->steps);
    return st;
}

/* Every rank must run with the same settings: a rank with other flags (or
 * another config file) would train a different model or read different
 * data, silently. */
static rt_status same_settings(trainer *tr, rt_error_t err) {
    if (!tr->config_toml) {
        snprintf(err, RT_ERRLEN, "out of memory");
        return RT_ERR_RUN;
    }
    if (tr->comm.world == 1 || comm_all_equal(tr->config_toml, strlen(tr->config_toml)))
        return RT_OK;
    snprintf(err, RT_ERRLEN, "the ranks were started with different settings (flags or "
             "--config files); every rank must run the same command");
    return RT_ERR_USAGE;
}

static void teardown(trainer *tr, rt_status st) {
    ckpt_async_free(tr->saver);
    tr_gpu_close(tr, st != RT_OK);
    comm_zero_free(&tr->zero);
    gpt_model_free(&tr->model);
    data_loader_close(&tr->train);
    if (tr->have_val) data_loader_close(&tr->val);
    rt_metrics_close(&tr->metrics);
    data_tok_free(tr->tok);
    free(tr->inputs);
    free(tr->targets);
    free(tr->config_toml);
}

int rt_cmd_train(int argc, char **argv) {
    trainer tr;
    memset(&tr, 0, sizeof(tr));
    train_opts *o = &tr.o;
    *o = (train_opts){.data = "runs/data", .run_dir = "runs/default", .model = "d4",
        .schedule = "cosine", .batch = 4, .seq = 64, .steps = 100, .warmup = 10,
        .seed = 1337, .lr = 1e-3f, .final_frac = 0.1f, .decay_frac = 0.2f, .wd = 0.1f,
        .clip = 1.0f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .val_every = 50,
        .val_batches = 10, .sample_tokens = 128, .log_every = 1, .bucket_mb = 25.0f,
        .comm_timeout = 600, .keep_last = 3, .straggler_every = 100,
        .straggler_threshold = 1.25f, .spike_zscore = 6.0f, .max_skips = 5, .resume = "",
        .init_from = "", .profile = "", .device = "cpu", .attention = "gptrain"};
    rt_flag flags[] = {
        {"config", RT_STR, &o->config, "read flags from this file (key = value lines, keys "
                                       "as the flag names); flags given here override it"},
        {"data", RT_STR, &o->data, "directory with train_*.bin and val_*.bin shards "
                                   "(and tokenizer.bpe, which sets the vocab)"},
        {"run-dir", RT_STR, &o->run_dir, "output directory (metrics.jsonl, model.h5)"},
        {"model", RT_STR, &o->model, "preset: d1..d48, gpt2-124M/350M/774M/1558M"},
        {"init-from", RT_STR, &o->init_from, "start from this model file's weights and config "
                                             "(gptrain import makes one from safetensors or "
                                             "llm.c); --model and the sizes are then unused"},
        {"layers", RT_INT, &o->layers, "override the preset's layers (0: keep)"},
        {"heads", RT_INT, &o->heads, "override the preset's heads (0: keep)"},
        {"channels", RT_INT, &o->channels, "override the preset's channels (0: keep)"},
        {"max-seq", RT_INT, &o->max_seq, "override the max sequence length (0: keep)"},
        {"vocab", RT_INT, &o->vocab, "vocab size (0: the data's tokenizer, else the preset's)"},
        {"batch", RT_INT, &o->batch, "micro-batch size B"},
        {"seq", RT_INT, &o->seq, "sequence length T"},
        {"total-batch", RT_LONG, &o->total_batch, "global tokens per step, a multiple of "
                                                   "B*T*ranks (0: B*T*ranks)"},
        {"steps", RT_INT, &o->steps, "optimizer steps"},
        {"lr", RT_FLOAT, &o->lr, "peak learning rate"},
        {"lr-schedule", RT_STR, &o->schedule, "cosine, constant or wsd"},
        {"warmup", RT_INT, &o->warmup, "linear warmup steps"},
        {"final-lr-frac", RT_FLOAT, &o->final_frac, "final lr as a fraction of the peak"},
        {"wsd-decay-frac", RT_FLOAT, &o->decay_frac, "wsd: share of steps in the decay"},
        {"weight-decay", RT_FLOAT, &o->wd, "AdamW decoupled weight decay (2-D weights)"},
        {"grad-clip", RT_FLOAT, &o->clip, "clip to this global gradient norm; 0 is off"},
        {"beta1", RT_FLOAT, &o->beta1, "AdamW beta1"},
        {"beta2", RT_FLOAT, &o->beta2, "AdamW beta2"},
        {"eps", RT_FLOAT, &o->eps, "AdamW epsilon"},
        {"seed", RT_LONG, &o->seed, "seed for the weights, the data order and samples"},
        {"bucket-mb", RT_FLOAT, &o->bucket_mb, "ZeRO 0-1: reduce gradients in buckets of "
                                               "this many MB during backward; 0 reduces "
                                               "after it (2-3 reduce each unit at once)"},
        {"zero", RT_INT, &o->zero, "ZeRO stage: 0 replicates everything, 1 shards the "
                                   "optimizer state, 2 also the gradients, 3 also the "
                                   "parameters"},
        {"no-shuffle", RT_BOOL, &o->no_shuffle, "read the shards in order (for debugging)"},
        {"val-every", RT_INT, &o->val_every, "validate every N steps; 0 is off"},
        {"val-batches", RT_INT, &o->val_batches, "global batches (of --total-batch tokens) "
                                                 "per validation"},
        {"sample-every", RT_INT, &o->sample_every, "print a sample every N steps; 0 is off"},
        {"sample-tokens", RT_INT, &o->sample_tokens, "tokens per sample"},
        {"log-every", RT_INT, &o->log_every, "print a step line every N steps"},
        {"peak-tflops", RT_FLOAT, &o->peak_tflops, "peak TFLOP/s of one rank's device: step "
                                                   "lines show MFU instead of TFLOP/s (0: off)"},
        {"straggler-every", RT_INT, &o->straggler_every, "compare the ranks' busy time every "
                                                         "N steps (0: off)"},
        {"straggler-threshold", RT_FLOAT, &o->straggler_threshold, "warn when the busiest "
                                                                   "rank exceeds the median "
                                                                   "by this factor"},
        {"spike-zscore", RT_FLOAT, &o->spike_zscore, "skip the update when the loss is this "
                                                     "many standard deviations above the "
                                                     "last 100 (0: only NaN/Inf skip)"},
        {"max-skips", RT_INT, &o->max_skips, "stop after this many skipped updates in a row "
                                             "(0: never)"},
        {"device", RT_STR, &o->device, "cpu, or cuda: train on this rank's GPU (the local "
                                       "rank's) in bf16 with fp32 master weights; NCCL "
                                       "reduces gradients; any --zero"},
        {"recompute", RT_BOOL, &o->recompute, "cuda: keep no GELU outputs, recompute them in "
                                              "backward (less memory)"},
        {"attention", RT_STR, &o->attention, "cuda: the attention kernels, gptrain (ours) or "
                                             "cudnn (cuDNN's fused flash attention)"},
        {"stochastic-rounding", RT_BOOL, &o->stochastic_rounding, "cuda: round the bf16 "
                                                                  "weights stochastically "
                                                                  "(seeded by --seed)"},
        {"quiet", RT_BOOL, &o->quiet, "no console output but errors"},
        {"dry-run", RT_BOOL, &o->dry_run, "check everything, print the model, FLOPs per "
                                         "step, memory per rank and the resolved config, "
                                         "and stop"},
        {"save-every", RT_INT, &o->save_every, "save a checkpoint every N steps (RUN_DIR/"
                                               "ckpt_<step>.h5); 0: only at the end"},
        {"keep-last", RT_INT, &o->keep_last, "keep the newest N checkpoints; 0 keeps all"},
        {"keep-every", RT_INT, &o->keep_every, "also keep every checkpoint whose step is a "
                                               "multiple of N; 0 is off"},
        {"async-save", RT_BOOL, &o->async_save, "write checkpoints in the background: the "
                                                "step stalls only to copy this rank's part"},
        {"resume", RT_STR, &o->resume, "auto (RUN_DIR/latest, if any) or a checkpoint file "
                                       "to continue from; empty starts fresh"},
        {"profile", RT_STR, &o->profile, "cluster profile: a name in launch/profiles "
                                         "(azure-ndv5, oci-bm-gpu-h100, coreweave, generic-ib, "
                                         "generic-ethernet, local) or a file; empty: "
                                         "$GPTRAIN_PROFILE"},
        {"comm-timeout", RT_FLOAT, &o->comm_timeout, "abort the job when a collective (or "
                                                    "NCCL's set-up) takes longer than this "
                                                    "many seconds; 0 is off"},
    };
    int npos, rc = rt_parse_command("train", "usage: gptrain train [flags]", argc, argv,
                                    flags, sizeof(flags) / sizeof(flags[0]), NULL, 0, &npos);
    if (rc >= 0) return rc;
    tr.flags = flags;
    tr.nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    tr.config_toml = rt_config_toml(flags, tr.nflags);
    rt_error_t err;
    comm_error_t cerr;
    rt_profile prof;
    if (rt_profile_apply(o->profile, &prof, err)) return rt_fail("train", RT_ERR_USAGE, err);
    if (comm_init(&tr.comm, o->async_save, cerr)) return rt_fail("train", RT_ERR_RUN, cerr);
    if (tr.comm.rank == 0 && !o->quiet) rt_profile_log(&prof, stdout);
    snprintf(tr.profile, sizeof tr.profile, "%s", prof.path);
    comm_set_timeout(o->comm_timeout);
    if (tr.comm.rank != 0) o->quiet = 1; /* rank 0 speaks for the job */
    rt_status st = same_settings(&tr, err);
    if (!st) st = tr_agree(&tr, setup(&tr, err), err);
    if (!st) tr_saver_start(&tr);
    if (!st && o->resume[0] && !o->dry_run) st = tr_agree(&tr, tr_resume(&tr, err), err);
    rt_preempt_install();
    if (!st) st = run(&tr, err);
    teardown(&tr, st);
    /* Every rank of a job says why it stops, naming itself, before
     * comm_finalize: that waits for every rank, and a peer's watchdog may
     * end the job there. */
    if (st && tr.comm.world > 1) {
        rt_error_t mine;
        snprintf(mine, RT_ERRLEN, "rank %d: %s", tr.comm.rank, err);
        memcpy(err, mine, RT_ERRLEN);
    }
    rc = st ? rt_fail("train", st, err) : 0;
    comm_finalize(&tr.comm);
    return !st && tr.preempted ? RT_EXIT_PREEMPTED : rc;
}

/* eval.c: `gptrain eval`: the mean cross-entropy loss and perplexity of a
 * model file on one split of token shards, as one process or under mpirun.
 * The split is read in file order (no shuffle) as the loader's samples,
 * windows of T+1 tokens; global batch i is samples [i*B, i*B + B), the last
 * one short when B does not divide the split, and rank r scores batches r,
 * r+P, r+2P, ... (a rank left without one in the last round adds nothing).
 * Batches are addressed by their first sample rather than drawn with
 * data_loader_next's rank/world rounds, which in that last round would read
 * past the split's end into its next epoch. Each rank holds the whole model
 * and sums its tokens' losses in double; one sum over the ranks then covers
 * exactly the same tokens for any world size, so the loss agrees to
 * rounding. With --device cuda each rank's forward passes run on its GPU
 * (eval_gpu.c) and the host model keeps only the weights. Ranks agree on their status after setting up and after each
 * round of batches, so a failure on one rank stops them all, and the error
 * is printed once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "checkpoint.h"
#include "runtime.h"

typedef struct {
    const char *ckpt, *data, *split, *device;
    int batch, seq, quiet, json;
    long max_batches;
} eval_opts;

typedef struct {
    eval_opts o;
    comm_ctx comm;
    gpt_model model;
    struct gpt_cuda *gpu; /* --device cuda's model, or NULL */
    data_loader split;
    int *inputs, *targets;
    long batches;  /* global batches to score */
    double sum;    /* this rank's summed token losses */
    long tokens;   /* this rank's scored tokens */
} evaluator;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Every rank learns the worst status. Only the lowest rank holding it keeps
 * its message, so the job's error is printed once. */
static rt_status agree(const evaluator *ev, rt_status st, rt_error_t err) {
    if (ev->comm.world == 1) return st;
    int worst = comm_max_int((int)st);
    if (worst && comm_argmax_int((int)st) != ev->comm.rank) err[0] = '\0';
    return (rt_status)worst;
}

/* Every rank must score with the same flags, or the sum mixes other tokens. */
static rt_status same_flags(const evaluator *ev, int argc, char **argv, rt_error_t err) {
    if (ev->comm.world == 1) return RT_OK;
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *line = calloc(len, 1);
    if (!line) {
        snprintf(err, RT_ERRLEN, "out of memory");
        return RT_ERR_RUN;
    }
    for (int i = 0; i < argc; i++) strcat(strcat(line, argv[i]), "\n");
    int same = comm_all_equal(line, len);
    free(line);
    if (same) return RT_OK;
    snprintf(err, RT_ERRLEN, "the ranks were started with different flags; every rank must "
             "run the same command");
    return RT_ERR_USAGE;
}

/* The model's config, and T: --seq, else the one the file was trained at,
 * else the model's max sequence length. */
static rt_status read_model(evaluator *ev, gpt_config *cfg, rt_error_t err) {
    ckpt_info info;
    ckpt_train_state ts = {0};
    ckpt_error_t cerr;
    if (ckpt_read_info(ev->o.ckpt, &info, cerr) ||
        (!ev->o.seq && info.has_train && ckpt_read_state(ev->o.ckpt, &ts, cerr))) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    *cfg = info.cfg;
    if (!ev->o.seq) ev->o.seq = info.has_train ? ts.seq : cfg->max_seq;
    if (ev->o.seq <= cfg->max_seq) return RT_OK;
    snprintf(err, RT_ERRLEN, "--seq %d exceeds the max sequence length %d of %s", ev->o.seq,
             cfg->max_seq, ev->o.ckpt);
    return RT_ERR_USAGE;
}

/* The data's tokenizer, if it has one, must fit the model's vocabulary. */
static rt_status check_tokenizer(const evaluator *ev, int vocab, rt_error_t err) {
    data_tokenizer *tok;
    rt_status st = rt_find_tokenizer(ev->o.data, &tok, err);
    if (!st && tok && data_tok_vocab_size(tok) > vocab) {
        snprintf(err, RT_ERRLEN, "%s/%s has %d tokens but the vocabulary of %s is %d",
                 ev->o.data, DATA_TOKENIZER_FILE, data_tok_vocab_size(tok), ev->o.ckpt, vocab);
        st = RT_ERR_USAGE;
    }
    data_tok_free(tok);
    return st;
}

static rt_status open_split(evaluator *ev, int vocab, rt_error_t err) {
    data_error_t derr;
    if (data_loader_open(&ev->split, ev->o.data, ev->o.split, ev->o.seq, vocab, 0, 0, derr)) {
        snprintf(err, RT_ERRLEN, "%s", derr);
        return RT_ERR_USAGE;
    }
    uint64_t B = (uint64_t)ev->o.batch, all = (ev->split.epoch_samples + B - 1) / B;
    uint64_t cap = (uint64_t)ev->o.max_batches;
    ev->batches = (long)(cap && cap < all ? cap : all);
    return RT_OK;
}

/* On the GPU the host model holds the weights on their way up, with the
 * activations of one token. */
static rt_status load_model(evaluator *ev, const gpt_config *cfg, rt_error_t err) {
    gpt_error_t gerr;
    ckpt_error_t cerr;
    int gpu = strcmp(ev->o.device, "cuda") == 0;
    if (gpt_model_create(&ev->model, cfg, gpu ? 1 : ev->o.batch, gpu ? 1 : ev->o.seq, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_RUN;
    }
    if (ckpt_load_model(ev->o.ckpt, &ev->model, cerr)) {
        snprintf(err, RT_ERRLEN, "%s", cerr);
        return RT_ERR_USAGE;
    }
    rt_status st;
    if (gpu && (st = rt_eval_gpu_open(&ev->gpu, &ev->model, ev->o.batch, ev->o.seq,
                                      ev->comm.local_rank, err)))
        return st;
    size_t bt = (size_t)ev->o.batch * ev->o.seq;
    ev->inputs = malloc(sizeof(int) * bt);
    ev->targets = malloc(sizeof(int) * bt);
    if (ev->inputs && ev->targets) return RT_OK;
    snprintf(err, RT_ERRLEN, "out of memory for the batch buffers");
    return RT_ERR_RUN;
}

static rt_status setup(evaluator *ev, rt_error_t err) {
    gpt_config cfg;
    rt_status st;
    if ((st = read_model(ev, &cfg, err)) || (st = check_tokenizer(ev, cfg.vocab, err)) ||
        (st = open_split(ev, cfg.vocab, err)))
        return st;
    return load_model(ev, &cfg, err);
}

/* Scores global batch i: samples [i*B, i*B + n), n = B or what is left. */
static rt_status score_batch(evaluator *ev, long i, rt_error_t err) {
    uint64_t first = (uint64_t)i * (uint64_t)ev->o.batch;
    uint64_t left = ev->split.epoch_samples - first;
    int n = left < (uint64_t)ev->o.batch ? (int)left : ev->o.batch;
    data_error_t derr;
    if (data_loader_set_state(&ev->split, (data_loader_state){0, first}, derr) ||
        data_loader_next(&ev->split, 0, 1, n, ev->inputs, ev->targets, derr)) {
        snprintf(err, RT_ERRLEN, "%s", derr);
        return RT_ERR_USAGE;
    }
    size_t bt = (size_t)n * (size_t)ev->o.seq;
    ev->tokens += (long)bt;
    if (ev->gpu) return rt_eval_gpu_score(ev->gpu, ev->inputs, ev->targets, n, ev->o.seq,
                                          &ev->sum, err);
    gpt_error_t gerr;
    if (gpt_forward(&ev->model, ev->inputs, ev->targets, n, ev->o.seq, gerr)) {
        snprintf(err, RT_ERRLEN, "%s", gerr);
        return RT_ERR_RUN;
    }
    for (size_t k = 0; k < bt; k++) ev->sum += ev->model.losses[k];
    return RT_OK;
}

/* Rank 0's progress line at every tenth of the batches or every 5 s. */
static void progress(const evaluator *ev, long done, double t0, double *last, long *tenth) {
    long total = ev->batches;
    double now = now_s();
    if (done > total) done = total;
    if (done * 10 / total <= *tenth && now - *last < 5.0) return;
    *tenth = done * 10 / total;
    *last = now;
    fprintf(stderr, "eval: %ld/%ld batches | %.0f tok/s | %.1f s\n", done, total,
            (double)done * ev->o.batch * ev->o.seq / (now - t0), now - t0);
}

/* Round by round, rank r scoring batch first + r of each round of P. The
 * ranks agree after every round, so one that fails stops the others at
 * once, and no rank waits in a collective (under the watchdog) for longer
 * than a batch takes. */
static rt_status score(evaluator *ev, rt_error_t err) {
    double t0 = now_s(), last = t0;
    long tenth = 0, P = ev->comm.world;
    rt_status st = RT_OK;
    for (long first = 0; first < ev->batches && !st; first += P) {
        long i = first + ev->comm.rank;
        if (i < ev->batches) st = score_batch(ev, i, err);
        st = agree(ev, st, err);
        if (!st && !ev->o.quiet) progress(ev, first + P, t0, &last, &tenth);
    }
    return st;
}

/* s as a JSON string. */
static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* A JSON number, or null for inf and nan (a model with broken weights). */
static void json_number(const char *key, double x) {
    if (isfinite(x)) printf(",\"%s\":%.10g", key, x);
    else printf(",\"%s\":null", key);
}

static void report(const evaluator *ev, double sum, double tokens) {
    const eval_opts *o = &ev->o;
    double loss = sum / tokens, ppl = exp(loss);
    if (!o->json) {
        printf("eval %s on %s %s at seq %d: %.0f tokens, loss %.4f, perplexity %.1f\n",
               o->ckpt, o->data, o->split, o->seq, tokens, loss, ppl);
        return;
    }
    printf("{\"ckpt\":");
    json_string(o->ckpt);
    printf(",\"data\":");
    json_string(o->data);
    printf(",\"split\":");
    json_string(o->split);
    printf(",\"seq\":%d,\"batch\":%d,\"tokens\":%.0f", o->seq, o->batch, tokens);
    json_number("loss", loss);
    json_number("perplexity", ppl);
    printf(",\"ranks\":%d}\n", ev->comm.world);
}

/* Sets up, scores and reports on an MPI world already up. */
static rt_status eval_run(evaluator *ev, int argc, char **argv, rt_error_t err) {
    rt_status st = agree(ev, same_flags(ev, argc, argv, err), err);
    if (!st) st = agree(ev, setup(ev, err), err);
    if (!st) st = score(ev, err);
    if (st) return st;
    double sum = comm_sum_double(ev->sum), tokens = comm_sum_double((double)ev->tokens);
    if (ev->comm.rank == 0) report(ev, sum, tokens);
    return RT_OK;
}

static const char *eval_usage =
    "usage: gptrain eval --ckpt FILE --data DIR [flags]\n"
    "The mean cross-entropy loss and perplexity (exp of the loss) of a model file on\n"
    "DIR/<split>_*.bin, read in order as windows of --seq tokens; run as one process\n"
    "or under mpirun with any number of ranks, for the same result. The loss depends\n"
    "on --seq: the first tokens of each window see little context. --device cuda\n"
    "scores on each rank's GPU, in bf16 as training's validation does.";

int rt_cmd_eval(int argc, char **argv) {
    evaluator ev;
    memset(&ev, 0, sizeof ev);
    eval_opts *o = &ev.o;
    *o = (eval_opts){.data = "runs/data", .split = "val", .batch = 8, .device = "cpu"};
    rt_flag flags[] = {
        {"ckpt", RT_STR, &o->ckpt, "model file: a checkpoint or model.h5 of gptrain train, or "
                                   "one gptrain import wrote (required)"},
        {"data", RT_STR, &o->data, "directory with the <split>_*.bin shards"},
        {"split", RT_STR, &o->split, "which shards: DIR/<split>_*.bin"},
        {"batch", RT_INT, &o->batch, "windows per forward pass B (speed and memory only; "
                                     "the result does not depend on it)"},
        {"seq", RT_INT, &o->seq, "window length T, at most the model's max seq; the loss "
                                 "depends on it (0: the seq the checkpoint was trained at, "
                                 "else the model's max seq)"},
        {"max-batches", RT_LONG, &o->max_batches, "score only the first N batches of B "
                                                  "windows (0: the whole split)"},
        {"device", RT_STR, &o->device, "cpu, or cuda: the forward passes on this rank's GPU "
                                       "(the local rank's), in bf16"},
        {"json", RT_BOOL, &o->json, "print the result as one JSON object"},
        {"quiet", RT_BOOL, &o->quiet, "no progress lines on stderr"},
    };
    int npos, rc = rt_parse_command("eval", eval_usage, argc, argv, flags,
                                    sizeof(flags) / sizeof(flags[0]), NULL, 0, &npos);
    if (rc >= 0) return rc;
    if (!o->ckpt) return rt_fail("eval", RT_ERR_USAGE, "--ckpt is required");
    if (o->batch < 1 || o->seq < 0 || o->max_batches < 0)
        return rt_fail("eval", RT_ERR_USAGE, "--batch must be >= 1, --seq and --max-batches "
                       ">= 0");
    if (strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) {
        rt_error_t bad;
        snprintf(bad, RT_ERRLEN, "--device '%s' is not cpu or cuda", o->device);
        return rt_fail("eval", RT_ERR_USAGE, bad);
    }
    rt_error_t err;
    comm_error_t cerr;
    if (comm_init(&ev.comm, 0, cerr)) return rt_fail("eval", RT_ERR_RUN, cerr);
    if (ev.comm.rank != 0) o->quiet = 1; /* rank 0 speaks for the job */
    rt_status st = eval_run(&ev, argc, argv, err);
    rt_eval_gpu_free(ev.gpu);
    gpt_model_free(&ev.model);
    data_loader_close(&ev.split);
    free(ev.inputs);
    free(ev.targets);
    if (st && err[0] && ev.comm.world > 1) {
        rt_error_t mine;
        snprintf(mine, RT_ERRLEN, "rank %d: %s", ev.comm.rank, err);
        memcpy(err, mine, RT_ERRLEN);
    }
    /* The message goes out before MPI ends: once a rank has exited non-zero,
     * mpirun may kill the others before they print. */
    rc = !st ? 0 : err[0] ? rt_fail("eval", st, err) : st == RT_ERR_USAGE ? 2 : 1;
    fflush(stderr);
    comm_finalize(&ev.comm);
    return rc;
}

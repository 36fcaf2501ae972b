/* runtime.h: the public API of the runtime module: the subcommands of the
 * gptrain executable, the flag parser they share, the learning-rate
 * schedules and the metrics log.
 *
 * Exit codes, decided only by main: 0 success, 1 a failure while running
 * (I/O, memory), 2 bad input (flags, configs, data files, checkpoints); and
 * 3 when the collective watchdog aborts the job (comm.h), not through main;
 * 4 when a signal stopped training after a checkpoint (preempt.c). */
#ifndef RUNTIME_H
#define RUNTIME_H

#include "comm.h"
#include <stdint.h>
#include <stdio.h>
#include "data.h"
#include "gpt.h"

typedef enum { RT_OK = 0, RT_ERR_RUN = 1, RT_ERR_USAGE = 2, RT_HELP = 3 } rt_status;

#define RT_ERRLEN 1024
typedef char rt_error_t[RT_ERRLEN];

/* ---- flags -------------------------------------------------------------- */

typedef enum { RT_INT, RT_LONG, RT_FLOAT, RT_STR, RT_BOOL } rt_flag_type;

/* One command-line flag: `--name VALUE` (or bare `--name` for RT_BOOL).
 * The value already in *ptr is the default that --help shows. */
typedef struct {
    const char *name;
    rt_flag_type type;
    void *ptr;
    const char *help;
} rt_flag;

/* Parses argv against flags. Values are checked for type and range of the C
 * type (an int flag rejects "12x" and "1e10"). Positional arguments are
 * collected into positional (up to max_positional; more is an error).
 * Returns RT_HELP for -h/--help, RT_ERR_USAGE with a one-line message for an
 * unknown flag, a missing value or a malformed number. */
rt_status rt_parse_flags(int argc, char **argv, const rt_flag *flags, int nflags,
                         const char **positional, int max_positional, int *npositional,
                         rt_error_t err);

/* Parses s as f's value (not RT_BOOL) into *f->ptr, with the checks above. */
rt_status rt_flag_set(const rt_flag *f, const char *s, rt_error_t err);

/* ---- config files (config.c) ---------------------------------------------- */

/* When flags has an RT_STR flag named "config" and argv gives --config FILE,
 * rt_parse_flags loads FILE into the flags first (so the command line wins)
 * with rt_config_load: `key = value` lines (a TOML/INI subset; keys are flag
 * names, '-' or '_'), `#` comments. Unknown keys, sections and bad values
 * are RT_ERR_USAGE as "FILE:LINE: why". Strings read stay valid until exit. */
rt_status rt_config_load(const char *path, const rt_flag *flags, int nflags, rt_error_t err);

/* The effective config of a command: every flag's value but --config and
 * --dry-run, as a config file that --config reads back (TOML), or as JSON
 * members ("key":value, each followed by a comma; keys with '_' for '-'),
 * leaving out the keys listed in skip (NULL-terminated, or NULL). The caller
 * frees the string; NULL when out of memory. */
char *rt_config_toml(const rt_flag *flags, int nflags);
char *rt_config_json(const rt_flag *flags, int nflags, const char *const *skip);

/* Prints "usage" and every flag with its current value as the default. */
void rt_print_help(FILE *out, const char *usage, const rt_flag *flags, int nflags);

/* A command's flag handling in one call: parses, prints --help or the error
 * (see rt_fail). Returns -1 when the command should go on, otherwise the exit
 * code (0 after --help, 2 for bad flags). */
int rt_parse_command(const char *cmd, const char *usage, int argc, char **argv,
                     const rt_flag *flags, int nflags, const char **positional,
                     int max_positional, int *npositional);

/* ---- learning-rate schedules -------------------------------------------- */

typedef enum { RT_SCHED_COSINE, RT_SCHED_CONSTANT, RT_SCHED_WSD } rt_sched_kind;

typedef struct {
    rt_sched_kind kind;
    float lr;             /* peak */
    int warmup;           /* linear warmup steps */
    int steps;            /* total steps */
    float final_frac;     /* final lr = lr * final_frac (cosine, wsd) */
    float decay_frac;     /* wsd: share of steps in the final linear decay */
} rt_schedule;

/* Parses "cosine", "constant" or "wsd". */
rt_status rt_schedule_kind(const char *name, rt_sched_kind *kind, rt_error_t err);

/* Learning rate at step (0-based). Warmup: lr * (step+1) / warmup. Then
 * cosine: final + (lr-final) * (1+cos(pi*p))/2 with p the post-warmup progress;
 * constant: lr; wsd: lr until the last decay_frac of steps, then linear to final. */
float rt_lr_at(const rt_schedule *s, int step);

/* ---- metrics log ---------------------------------------------------------- */

/* Appends one JSON object per line to run_dir/metrics.jsonl. */
typedef struct {
    FILE *f;
} rt_metrics;

/* Starts run_dir/metrics.jsonl afresh, or appends to it (a resumed run). */
rt_status rt_metrics_open(rt_metrics *mt, const char *run_dir, int append, rt_error_t err);
/* Writes a line built from printf-style key/value text, e.g.
 * rt_metrics_write(mt, "\"step\":%d,\"loss\":%.6f", step, loss) -> {"step":..}. */
void rt_metrics_write(rt_metrics *mt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rt_metrics_close(rt_metrics *mt);

/* Creates a directory and its parents (mkdir -p). */
rt_status rt_mkdirs(const char *path, rt_error_t err);

/* ---- sampling ------------------------------------------------------------ */

typedef struct {
    int max_tokens;
    float temperature; /* 0: greedy */
    int top_k;         /* 0: the whole vocabulary */
    float top_p;       /* nucleus mass in (0, 1]; 1: the whole vocabulary */
    uint64_t seed;
    int no_kv_cache;   /* 1: the plain reference path, O(T^2) per token */
} rt_sample_opts;

/* Continues the prompt (nprompt >= 1 tokens) by max_tokens tokens with m,
 * whose capacity must be B >= 1 and T >= 1; the context window is m->T
 * tokens (with the KV cache, a full window restarts from its newest half;
 * the plain path slides by one). Each token is decoded with tok (without one, ids < 256 are bytes
 * and others print as <id>) and written to out as soon as it is drawn; out
 * NULL draws the same tokens and writes nothing (ranks that must run every
 * forward under ZeRO-3 but do not print). */
rt_status rt_generate(gpt_model *m, const data_tokenizer *tok, const int *prompt,
                      int nprompt, const rt_sample_opts *o, FILE *out, rt_error_t err);

/* ---- eval on the GPU (eval_gpu.c; nogpu.c without CUDA) ------------------- */

struct gpt_cuda;
/* Creates the CUDA model on GPU local_rank for forward passes of up to B x T
 * tokens and uploads m's weights (bf16). A shape the kernels do not support
 * is RT_ERR_USAGE, as is a build without CUDA; a rank with no GPU of its
 * own ordinal, or a device failure, RT_ERR_RUN. *out is NULL on failure. */
rt_status rt_eval_gpu_open(struct gpt_cuda **out, const gpt_model *m, int B, int T,
                           int local_rank, rt_error_t err);
/* Forward over n windows of T tokens; adds their summed loss to *sum. */
rt_status rt_eval_gpu_score(struct gpt_cuda *g, const int *inputs, const int *targets, int n,
                            int T, double *sum, rt_error_t err);
void rt_eval_gpu_free(struct gpt_cuda *g);

/* Loads DIR/tokenizer.bpe into *tok if that file exists (*tok = NULL if not). */
rt_status rt_find_tokenizer(const char *dir, data_tokenizer **tok, rt_error_t err);

/* ---- JSON Lines of flat objects (jsonl.c) ----------------------------------- */

typedef enum { RT_JSON_NULL, RT_JSON_BOOL, RT_JSON_NUMBER, RT_JSON_STRING } rt_json_type;

/* One "key": value member. key and str point into the parsed line, unescaped
 * and NUL-terminated (\u0000 is refused); they live until the line does. */
typedef struct {
    const char *key;
    rt_json_type type;
    double num;      /* RT_JSON_NUMBER: the value; RT_JSON_BOOL: 1 or 0 */
    const char *str; /* RT_JSON_STRING: the value; NULL otherwise */
} rt_json_field;

#define RT_JSON_MAX_FIELDS 128
typedef struct {
    int n;
    rt_json_field f[RT_JSON_MAX_FIELDS];
} rt_json_object;

/* Parses text, one flat JSON object (values: numbers, strings, true, false,
 * null; no nested objects or arrays), in place. Malformed text is
 * RT_ERR_USAGE with "column N: what" in err. */
rt_status rt_json_parse_flat(char *text, rt_json_object *obj, rt_error_t err);
/* The member named key (the last one if repeated), or NULL. */
const rt_json_field *rt_json_find(const rt_json_object *obj, const char *key);
/* 1 and *v when key holds a number; 0 when it is absent or not a number. */
int rt_json_number(const rt_json_object *obj, const char *key, double *v);
/* key's string value, or NULL when it is absent or not a string. */
const char *rt_json_string(const rt_json_object *obj, const char *key);

typedef struct {
    FILE *f;
    char path[4096];
    long line; /* 1-based number of the line last read */
    char *buf;
    size_t cap;
} rt_jsonl_reader;

/* Opens path; a file that cannot be opened is RT_ERR_USAGE naming it. */
rt_status rt_jsonl_open(rt_jsonl_reader *r, const char *path, rt_error_t err);
/* Reads the next line that is not blank into *obj (valid until the next
 * call) and sets *got to 1; *got is 0 at the end of the file. A malformed
 * line is RT_ERR_USAGE and a read error RT_ERR_RUN, as "PATH:LINE: what". */
rt_status rt_jsonl_next(rt_jsonl_reader *r, rt_json_object *obj, int *got, rt_error_t err);
void rt_jsonl_close(rt_jsonl_reader *r);

/* ---- subcommands ----------------------------------------------------------- */

/* Each takes the arguments after the subcommand name and returns an exit
 * status (0, 1 or 2); errors are printed by the command as one line followed
 * by a usage line. */
/* ---- cluster profiles (profile.c) -------------------------------------------- */

typedef struct {
    char name[256], path[4096]; /* "" when none was chosen */
    char applied[4096];         /* NAME=value pairs, as applied */
} rt_profile;

/* Applies profile `name` (a name in launch/profiles, or a path with a '/';
 * NULL or "" falls back to $GPTRAIN_PROFILE; none is fine) to this
 * process's environment, without overriding variables already set. Call
 * before MPI or NCCL starts. An unknown profile or a malformed line is
 * RT_ERR_USAGE naming the file. */
rt_status rt_profile_apply(const char *name, rt_profile *p, rt_error_t err);

/* One line for the profile and one with the effective NCCL_*, UCX_* and
 * OMPI_MCA_* variables. */
void rt_profile_log(const rt_profile *p, FILE *out);

/* ---- preemption (preempt.c) ------------------------------------------------ */

/* Exit code of a run stopped by a signal after saving a checkpoint. */
#define RT_EXIT_PREEMPTED 4

/* From now on SIGTERM, SIGINT and SIGUSR1 only record that a stop was asked. */
void rt_preempt_install(void);
/* The first such signal received, or 0. */
int rt_preempt_pending(void);

int rt_cmd_train(int argc, char **argv);
int rt_cmd_prep(int argc, char **argv);
int rt_cmd_sample(int argc, char **argv);
int rt_cmd_inspect(int argc, char **argv);
int rt_cmd_export(int argc, char **argv);
int rt_cmd_import(int argc, char **argv);
/* The loss and perplexity of a model file on a split; any number of ranks. */
int rt_cmd_eval(int argc, char **argv);
/* Under mpirun: times the CPU collectives at doubling sizes; rank 0 prints
 * the table. */
int rt_cmd_commbench(int argc, char **argv);
int rt_cmd_doctor(int argc, char **argv);
/* Draws the loss and throughput curves of runs (RUN_DIR/metrics.jsonl) as
 * PNG and SVG with gnuplot (plot.c). */
int rt_cmd_plot(int argc, char **argv);

/* commbench's allreduce table from min_bytes to max_bytes, on an MPI world
 * already up: over NCCL when nccl is set and a GPU is visible (in a CUDA
 * build), else over MPI (for gptrain doctor). */
rt_status rt_commbench_sweep(const comm_ctx *ctx, int nccl, long min_bytes, long max_bytes,
                             long iters, rt_error_t err);
/* 1 when this build has NCCL and a GPU is visible. */
int rt_commbench_gpus(void);

/* Prints the error and usage lines for a failed command; returns the exit code. */
int rt_fail(const char *cmd, rt_status st, const char *msg);

#endif

/* comm.h: the public API of the comm module: the MPI control plane and the
 * collectives of data-parallel training on CPU tensors.
 *
 * MPI decides who this process is. A process started without mpirun is a
 * world of one (MPI singleton), so the debug run and `mpirun -np 1` take the
 * same path. Every collective here must be called by all ranks in the same
 * order; each is deterministic for a given world size (Open MPI picks the
 * algorithm from the size and rank count alone).
 *
 * Collective watchdog. A rank that dies or stops would otherwise leave the
 * others blocked in a collective forever. So every collective here is started
 * non-blocking and waited for by polling; one that has not finished after the
 * timeout (comm_set_timeout, 600 s by default) prints one line to stderr,
 * "gptrain: rank R (host H): collective OP (N bytes) at step S did not finish
 * within T s; ...; aborting the job", naming the ranks on this host that did
 * not arrive where it can tell, and ends the whole job with
 * MPI_Abort(MPI_COMM_WORLD, 3): the one place where library code ends the
 * process, since a hung job has no caller left to return to. Exit code 3 is
 * the watchdog's (docs/training.md). The NCCL collectives have their own
 * watchdog, comm_nccl_wait (comm_nccl.h), which returns an error instead. */
#ifndef COMM_H
#define COMM_H

#include <stddef.h>
#include "gpt.h"

typedef enum { COMM_OK = 0, COMM_ERR = 1 } comm_status;

#define COMM_ERRLEN 256
typedef char comm_error_t[COMM_ERRLEN];

typedef struct {
    int rank, world;             /* in MPI_COMM_WORLD */
    int local_rank, local_world; /* on this node (MPI_COMM_TYPE_SHARED) */
} comm_ctx;

/* Initialises MPI (if not yet) and fills ctx. threads = 1 asks for
 * MPI_THREAD_MULTIPLE, for a helper thread that runs collectives of its
 * own (the background checkpoint writer); whether MPI granted it is for
 * that helper to check. */
comm_status comm_init(comm_ctx *ctx, int threads, comm_error_t err);

/* Finalises MPI if comm_init initialised it. Collective. */
void comm_finalize(comm_ctx *ctx);

/* Seconds any one collective may take on this rank, from its start to its
 * end, before the watchdog aborts the job; <= 0 turns the watchdog off.
 * Waiting for a slow peer counts, so allow for the longest stretch of work
 * one rank does between collectives (a checkpoint, a sample). Default 600. */
void comm_set_timeout(double seconds);
double comm_get_timeout(void);

/* The training step the next collectives belong to, for the watchdog's
 * message only (0 until set: start-up). */
void comm_set_step(long step);
long comm_get_step(void);

/* Seconds this rank has spent waiting for collectives to finish, excluding
 * stretches when it was not running: a step's time minus the growth of this
 * is the time the rank was busy, which is what tells a straggler apart. */
double comm_wait_seconds(void);

/* Replaces buf[0..n) on every rank by the mean over ranks (sum, then divide
 * by the world size). n may exceed INT_MAX; it is reduced in pieces. */
comm_status comm_allreduce_mean(float *buf, size_t n, comm_error_t err);

/* In place: buf holds one block per rank, in rank order, block r of
 * counts[r] floats; buf[0..counts[rank]) becomes the mean over ranks of
 * their block `rank` (each rank gets the mean of its own block), and the
 * rest of buf is left undefined. */
comm_status comm_reduce_scatter_mean(float *buf, const int *counts, comm_error_t err);

/* In place: every rank's buf[displs[r] .. displs[r] + counts[r]) becomes rank
 * r's, for every rank r. */
comm_status comm_allgather(float *buf, const int *counts, const int *displs,
                           comm_error_t err);

/* Returns once every rank has called it (under the watchdog). */
void comm_barrier(void);

/* Copies root's buf[0..n) into buf on every rank. n may exceed INT_MAX. */
comm_status comm_broadcast(float *buf, size_t n, int root, comm_error_t err);

/* Copies rank 0's buf[0..bytes) into buf on every rank (a few bytes: an id,
 * a length). Like the agreement collectives below it has no error path. */
void comm_broadcast_bytes(void *buf, size_t bytes);

/* Every rank's `bytes` bytes, in rank order, into all (world * bytes). */
comm_status comm_allgather_bytes(const void *mine, void *all, size_t bytes, comm_error_t err);

/* Mean over ranks of one double (losses). */
double comm_mean_double(double v);

/* Sum over ranks of one double (squared gradient norms of shards). */
double comm_sum_double(double v);

/* Largest of one double over ranks (the slowest rank's time). */
double comm_max_double(double v);

/* Largest value over ranks: how ranks agree on a status, so that a failure
 * on one rank stops all of them instead of leaving the rest in a collective. */
int comm_max_int(int v);

/* Rank that holds the largest value (the lowest such rank). */
int comm_argmax_int(int v);

/* 1 when every rank passed the same bytes (same length and content): rank
 * 0's are broadcast and compared, so a rank started with other flags is
 * caught before training. Keep bytes small (a settings string). */
int comm_all_equal(const void *buf, size_t bytes);

/* ---- ZeRO ------------------------------------------------------------------ */

/* Sharding of the flat buffers. Rank r owns floats [lo, hi) = [r*S, (r+1)*S)
 * clipped to the buffer, S = ceil(total/P) rounded up to 16 floats, so any
 * buffer size and rank count work (the last shards may be short or empty).
 *   stage 0: gradients averaged whole (allreduce); every rank steps all.
 *   stage 1: AdamW moments kept for the shard only; the accumulated gradient
 *            is reduce-scattered, each rank steps its shard, and parameters
 *            are allgathered.
 *   stage 2: as 1, and each unit's gradient (gpt.h: the embeddings, one
 *            layer, the final LayerNorm) is reduce-scattered during every
 *            micro-step's backward as soon as it is final, from a slot the
 *            unit borrows; only the shard is kept between micro-steps.
 *   stage 3: as 2, and parameters too are kept as the shard only; each unit
 *            is allgathered into a slot right before forward or backward
 *            uses it (the next unit's gather starts as a prefetch); a slot
 *            keeps its weights until another unit or the update needs it,
 *            so later passes of a step reuse the embeddings and the units
 *            the last pass ended with.
 * At stages 0-1 with buckets on, the gradient is reduced in buckets of about
 * bucket_bytes while the last micro-step's backward still runs. */
typedef struct comm_bucketer comm_bucketer; /* private to bucket.c */
typedef struct comm_units comm_units;       /* private to units.c */

typedef struct {
    int stage, rank, world;
    int host_grads;       /* 0: a GPU computes and reduces the gradients */
    size_t total, lo, hi;
    size_t shard;         /* S: every shard's length before clipping */
    int *counts, *displs; /* per rank, in floats, for MPI (displs -1 past INT_MAX) */
    float *gshard;        /* stages 2-3: this rank's accumulated gradient shard */
    float *pshard;        /* stage 3: this rank's parameter shard */
    comm_bucketer *bucketer; /* stages 0-1 with several ranks and buckets on */
    comm_units *units;       /* stages 2-3 */
} comm_zero;

/* Sets up the shards of m for the stage. Stages >= 1 shrink m's AdamW
 * moments; stages >= 2 free m's whole gradient buffer and stage 3 its whole
 * parameter buffer (so initialise the weights before). It installs m's unit
 * hook when it needs one. host_grads 0 says that m never runs a backward (a
 * GPU run: the device holds and reduces the gradients): m's gradient buffer
 * is freed at every stage, and stages 2-3 keep no gradient shard or slots
 * on the host; m's passes then only read parameters (samples). */
comm_status comm_zero_init(comm_zero *z, gpt_model *m, int stage, size_t bucket_bytes,
                           int host_grads, const comm_ctx *ctx, comm_error_t err);
void comm_zero_free(comm_zero *z);

/* 1 when backward starts collectives (buckets, or stages 2-3), so the
 * ranks must agree on their status before a backward. */
int comm_zero_overlaps(const comm_zero *z);

/* 1 when forward starts collectives too (stage 3): the ranks must agree
 * before every forward, and all of them must run every forward (eval and
 * samples included). */
int comm_zero_gathers(const comm_zero *z);

/* Right before the last micro-step's backward. */
void comm_zero_last_backward(comm_zero *z);

/* Before a step's first micro-step: clears the gradients. */
void comm_zero_begin(comm_zero *z, gpt_model *m);

/* After each micro-step's backward. Stages 2-3 wait for the micro-step's
 * reduce-scatters and add the averaged shard into the accumulated one. */
comm_status comm_zero_micro_done(comm_zero *z, gpt_model *m, comm_error_t err);

/* After the last micro-step: finishes the gradient reduction (allreduce for
 * stage 0, reduce-scatter for stage 1) and sets *norm to the global norm of
 * the averaged gradient, the same on every rank. Nothing is updated yet, so
 * the caller can still decide to skip the step (the numerics guard). */
comm_status comm_zero_reduce(comm_zero *z, gpt_model *m, float *norm, comm_error_t err);

/* After comm_zero_reduce, on every rank: the AdamW step on this rank's part
 * with the global norm, then, at stages 1-2, the allgather of the
 * parameters. opt NULL skips the update (parameters, moments and the AdamW
 * step count stay as they were); every rank must make the same choice. */
comm_status comm_zero_apply(comm_zero *z, gpt_model *m, const gpt_adamw *opt, float norm,
                            comm_error_t err);

/* After the parameter shard was written from outside (a resume, a GPU's
 * update pulled to the host): at stage 3 the unit slots forget the weights
 * they gathered, which later passes of a step would otherwise reuse. */
comm_status comm_zero_params_changed(comm_zero *z, gpt_model *m, comm_error_t err);

/* Bytes this rank holds for each kind of model state, as the ZeRO paper
 * counts them (persistent state), plus the working buffers: the unit slots
 * of stages 2-3, which scale with the largest unit, not with the model. */
typedef struct {
    size_t params, grads, optimizer, scratch;
} comm_zero_bytes;
comm_zero_bytes comm_zero_memory(const comm_zero *z);

#endif

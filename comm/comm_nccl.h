/* comm_nccl.h: the NCCL backend of the gradient collectives, for training on GPUs.
 *
 * One process drives one GPU. MPI (comm.h) stays the control plane: it says
 * who this process is and carries NCCL's unique id from rank 0 to the rest;
 * NCCL moves the device buffers. Collectives are enqueued on a dedicated
 * communication stream and return at once, so a gradient reduction overlaps
 * the compute queued on other streams; comm_nccl_wait ends each one and is
 * the watchdog that turns a hung or failed collective into an error instead
 * of a silent hang. No CUDA or NCCL type appears here, so C callers need
 * neither header. As with comm.h, every collective must be called by all
 * ranks in the same order. */
#ifndef COMM_NCCL_H
#define COMM_NCCL_H

#include <stddef.h>
#include "comm.h"
#include "gpt_cuda.h"

typedef struct comm_nccl comm_nccl;

/* 1 when at least one CUDA device is visible, else 0. A missing or too old
 * driver counts as no device, without an error. */
int comm_nccl_available(void);

/* Collective over MPI_COMM_WORLD; call after comm_init. Selects this
 * rank's device for this thread, creates the NCCL communicator of the world
 * (rank 0 makes the unique id, MPI broadcasts it) and the communication
 * stream. rank and world are this process's place in MPI_COMM_WORLD.
 *
 * The device is the local rank's: device local_rank when that many GPUs
 * are visible, or device 0 when exactly one is (a launcher that gives each
 * rank its own GPU through CUDA_VISIBLE_DEVICES, as Slurm's
 * --gpus-per-task=1 does). Two ranks must never share a GPU: the ranks
 * compare their devices' UUIDs. Fails on every rank when any rank cannot
 * select its device ("rank R: local rank L but only N GPUs visible", N = 0
 * without a driver) or when two ranks got the same GPU ("ranks A and B both
 * got GPU ... on host H: more ranks on a node than GPUs"), and when
 * NCCL_COMM_BLOCKING is set to anything but 0 (it would make NCCL block
 * without a limit); *out is then NULL.
 *
 * Nothing in it waits on a peer without a limit. Its MPI steps are comm.h's
 * collectives, under the watchdog set by comm_set_timeout (a rank that never
 * arrives aborts the job with a message naming it; a rank whose NCCL set-up
 * failed at once waits timeout_s longer for the others, so that it reports
 * its own error). NCCL's own set-up, and every later NCCL call that NCCL
 * finishes in the background, fails with "... not done after T s (a peer
 * missing?); communicator aborted" once it has taken timeout_s seconds
 * (<= 0: no limit); so does freeing, which prints that to stderr. Time in
 * which this process did not run (stopped, suspended) does not count. */
comm_status comm_nccl_init(comm_nccl **out, int rank, int world, int local_rank,
                           double timeout_s, comm_error_t err);

/* The CUDA device ordinal this rank uses (the CUDA model goes there too). */
int comm_nccl_device(const comm_nccl *c);

/* Element types of the device buffers: fp32, or bf16 (the CUDA model's
 * gradients and working weights). The means are taken by NCCL in the
 * buffer's type (ncclAvg). */
typedef enum { COMM_NCCL_F32 = 0, COMM_NCCL_BF16 = 1 } comm_nccl_type;

/* Enqueues the replacement of buf[0..n) on every rank by the mean over
 * ranks (in place). Returns when enqueued; comm_nccl_wait ends it. */
comm_status comm_nccl_allreduce_mean(comm_nccl *c, void *buf, size_t n, comm_nccl_type t,
                                     comm_error_t err);

/* Enqueues recv[0..recv_count) = mean over ranks of
 * send[rank * recv_count .. (rank + 1) * recv_count): each rank gets the mean
 * of its own shard. send holds world * recv_count elements. */
comm_status comm_nccl_reduce_scatter_mean(comm_nccl *c, const void *send, void *recv,
                                          size_t recv_count, comm_nccl_type t,
                                          comm_error_t err);

/* Uneven reduce-scatter, in place, as one NCCL group: for every rank r with
 * counts[r] > 0, buf[displs[r] .. displs[r] + counts[r]) on rank r becomes
 * the mean over ranks of that range; the rest of buf is left as it was. It
 * reduces a piece of a flat buffer onto the ZeRO shards it touches
 * (comm_zero_split gives counts and displs). */
comm_status comm_nccl_reduce_scatterv_mean(comm_nccl *c, void *buf, const int *counts,
                                           const int *displs, comm_nccl_type t,
                                           comm_error_t err);

/* Enqueues recv[r * send_count .. (r + 1) * send_count) = send of rank r, for
 * every rank r. recv holds world * send_count elements; send may be recv's
 * own block (in place). */
comm_status comm_nccl_allgather(comm_nccl *c, const void *send, void *recv, size_t send_count,
                                comm_nccl_type t, comm_error_t err);

/* Uneven allgather as one NCCL group: for every rank r with counts[r] > 0,
 * buf[displs[r] .. displs[r] + counts[r]) on every rank becomes rank r's
 * mine[0 .. counts[r]) (a piece of the flat buffers gathered from the ZeRO
 * shards it touches; comm_zero_split gives counts and displs). */
comm_status comm_nccl_allgatherv(comm_nccl *c, const void *mine, void *buf, const int *counts,
                                 const int *displs, comm_nccl_type t, comm_error_t err);

/* Enqueues the copy of root's buf[0..n) into buf on every rank. */
comm_status comm_nccl_broadcast(comm_nccl *c, void *buf, size_t n, comm_nccl_type t, int root,
                                comm_error_t err);

/* Orders the communication stream against a compute stream (a
 * cudaStream_t) without blocking the host: after comm_nccl_after, the next
 * collectives start only once the work queued on `stream` so far is done;
 * after comm_nccl_before, the work queued on `stream` from then on starts
 * only once the collectives enqueued so far are done. */
comm_status comm_nccl_after(comm_nccl *c, void *stream, comm_error_t err);
comm_status comm_nccl_before(comm_nccl *c, void *stream, comm_error_t err);

/* Marks: one point of the communication stream, for waiting on one
 * collective rather than on all of them (comm_nccl_before). mark_new makes
 * one (a cudaEvent_t) on c's device; comm_nccl_mark sets it behind the
 * collectives enqueued so far, and comm_nccl_await makes the work queued on
 * `stream` from then on start only once they are done. */
comm_status comm_nccl_mark_new(comm_nccl *c, void **mark, comm_error_t err);
comm_status comm_nccl_mark(comm_nccl *c, void *mark, comm_error_t err);
comm_status comm_nccl_await(comm_nccl *c, void *mark, void *stream, comm_error_t err);
void comm_nccl_mark_free(void *mark);

/* Waits until every collective enqueued so far has finished. On an NCCL
 * async error, a CUDA error on the stream, or when they are not done
 * timeout_s seconds after the compute they wait for (comm_nccl_after) is
 * (timeout_s <= 0: no limit), aborts the communicator and returns COMM_ERR
 * with a message naming op, step, rank and the error. Every later call on
 * c then fails; only comm_nccl_free remains. */
comm_status comm_nccl_wait(comm_nccl *c, double timeout_s, const char *op, long step,
                           comm_error_t err);

/* One line about this process's GPUs: count, model and memory of each kind,
 * driver and CUDA runtime versions, NCCL's version; or why there are none.
 * Needs no communicator. */
void comm_nccl_describe(char *out, size_t len);

/* Device memory for n floats on c's device, zeroed (for benchmarks and
 * tests that have no CUDA code of their own); free with comm_nccl_release. */
comm_status comm_nccl_alloc(comm_nccl *c, size_t n, float **dev, comm_error_t err);
void comm_nccl_release(float *dev);

/* The communication stream, a cudaStream_t: callers order their own streams
 * against it with events. */
void *comm_nccl_stream(comm_nccl *c);

/* ---- ZeRO stages 0 and 1 on the GPU (bucket_nccl.c) ------------------------ */

/* The NCCL twin of bucket.c's gradient buckets. The CUDA model reports each
 * unit's gradient range as final once the kernels that finish it are queued
 * on its compute stream `stream`; the ranges come adjacent and descending
 * (last layer first). A bucket that reaches bucket_bytes is handed to the
 * communication stream at once, behind an event on the compute stream, so
 * the reduction runs while backward goes on with earlier layers and the host
 * never waits. At stage 0 a bucket is allreduced; at stage 1 it is reduced
 * onto the shards it touches (comm_nccl_reduce_scatterv_mean), so this
 * rank's shard [z->lo, z->hi) of grads holds the mean and the rest of grads
 * is left as it was. Only an armed bucketer (the last micro-step's backward)
 * reduces; bucket_bytes 0 makes one bucket of the whole buffer, reduced at
 * finish. The bucket layout depends only on the model and the size, so the
 * reductions are the same from step to step. */
typedef struct comm_nccl_bucketer comm_nccl_bucketer;

/* grads: the device gradient buffer of z->total elements of type t. */
comm_status comm_nccl_bucketer_new(comm_nccl_bucketer **out, comm_nccl *c, const comm_zero *z,
                                   void *grads, comm_nccl_type t, size_t bucket_bytes,
                                   void *stream, comm_error_t err);
void comm_nccl_bucketer_arm(comm_nccl_bucketer *b);
/* Elements [lo, hi) of grads are final on the compute stream. */
comm_status comm_nccl_bucketer_ready(comm_nccl_bucketer *b, size_t lo, size_t hi,
                                     comm_error_t err);
/* Enqueues the open bucket and makes the compute stream wait for every
 * reduction; disarms. End the collectives with comm_nccl_wait. */
comm_status comm_nccl_bucketer_finish(comm_nccl_bucketer *b, comm_error_t err);
void comm_nccl_bucketer_free(comm_nccl_bucketer *b);

/* ---- ZeRO stages 2 and 3 on the GPU (units_nccl.c) ------------------------ */

/* The NCCL twin of units.c, as the CUDA model's unit hook (gpt_cuda.h): the
 * model keeps the shards (opts.shard_grads, and shard_params at stage 3)
 * and units borrow device slots of bf16. Slot 0 of each kind is the
 * embedding unit's, slots 1 and 2 serve the others. On GRADS_READY a unit's
 * slot is reduced onto the shards it touches on the communication stream,
 * behind the kernels that wrote it; the slot's next borrower makes the
 * compute stream wait for that reduction and add this rank's part into the
 * gradient shard (gpt_cuda_accumulate) before clearing it, so neither the
 * host nor the compute stream waits while backward runs, and the order of
 * the additions is fixed. At stage 3 NEED_PARAMS gathers the unit from the
 * parameter shards into a slot (unless a prefetch already did), makes the
 * compute stream wait for it, and starts the next unit's gather at once, in
 * the pass's order (forward up, backward emb, lnf, then down); DONE_PARAMS
 * frees the slot, which a later gather overwrites only behind the compute
 * queued by then. */
typedef struct comm_nccl_units comm_nccl_units;

/* Device bytes of the slots for z's stage over the units whose first
 * elements are ulo[0 .. nunits] (ulo[nunits]: the total), bf16: what a
 * dry run adds to the model's own bytes. Needs no GPU. */
size_t comm_nccl_units_bytes(const comm_zero *z, const size_t *ulo, int nunits);

/* Allocates the slots on c's device for z (stage 2 or 3, z->lo/hi the
 * model's shard) and installs itself as g's unit hook. */
comm_status comm_nccl_units_new(comm_nccl_units **out, comm_nccl *c, const comm_zero *z,
                                gpt_cuda *g, comm_error_t err);

/* After each micro-step's backward: queues, on the compute stream, the wait
 * for every reduction still in flight and the addition of its part into the
 * gradient shard. The host does not wait; comm_nccl_wait ends the
 * collectives. */
comm_status comm_nccl_units_micro_done(comm_nccl_units *u, comm_error_t err);

/* Before the update at stage 3 (and whenever the parameter shard changes):
 * the compute stream waits for any gather still reading the shard, and
 * every parameter slot is freed. Until then a slot keeps the weights it
 * gathered, and a later pass of the same step reuses them. */
comm_status comm_nccl_units_drop_params(comm_nccl_units *u, comm_error_t err);

void comm_nccl_units_free(comm_nccl_units *u);

/* Aborts the communicator, ending its kernels still on the device, so
 * that a shutdown after a failure never waits for a collective whose peer
 * is gone (freeing device memory waits for the whole device). Safe on NULL
 * and after an abort; only comm_nccl_free remains. */
void comm_nccl_abort(comm_nccl *c);

/* Destroys the communicator and the stream. Call after comm_nccl_wait has
 * ended the last collective, or after comm_nccl_abort. Safe on NULL. */
void comm_nccl_free(comm_nccl *c);

#endif

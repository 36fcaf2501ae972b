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

typedef struct comm_nccl comm_nccl;

/* 1 when at least one CUDA device is visible, else 0. A missing or too old
 * driver counts as no device, without an error. */
int comm_nccl_available(void);

/* Collective over MPI_COMM_WORLD; call after comm_init. Selects device
 * local_rank for this thread, creates the NCCL communicator of the world
 * (rank 0 makes the unique id, MPI broadcasts it) and the communication
 * stream. rank and world are this process's place in MPI_COMM_WORLD. Fails
 * on every rank when any rank cannot select its device ("rank R: local rank
 * L but only N GPUs visible", N = 0 without a driver); *out is then NULL. */
comm_status comm_nccl_init(comm_nccl **out, int rank, int world, int local_rank,
                           comm_error_t err);

/* Enqueues the replacement of dev_buf[0..n) on every rank by the mean over
 * ranks (in place). Returns when enqueued; comm_nccl_wait ends it. */
comm_status comm_nccl_allreduce_mean(comm_nccl *c, float *dev_buf, size_t n,
                                     comm_error_t err);

/* Enqueues recv[0..recv_count) = mean over ranks of
 * send[rank * recv_count .. (rank + 1) * recv_count): each rank gets the mean
 * of its own shard. send holds world * recv_count floats. */
comm_status comm_nccl_reduce_scatter_mean(comm_nccl *c, const float *send, float *recv,
                                          size_t recv_count, comm_error_t err);

/* Enqueues recv[r * send_count .. (r + 1) * send_count) = send of rank r, for
 * every rank r. recv holds world * send_count floats. */
comm_status comm_nccl_allgather(comm_nccl *c, const float *send, float *recv,
                                size_t send_count, comm_error_t err);

/* Enqueues the copy of root's buf[0..n) into buf on every rank. */
comm_status comm_nccl_broadcast(comm_nccl *c, float *buf, size_t n, int root,
                                comm_error_t err);

/* Waits until every collective enqueued so far has finished. On an NCCL
 * async error, a CUDA error on the stream, or after timeout_s seconds
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

/* Destroys the communicator and the stream. Call after comm_nccl_wait has
 * ended the last collective. Safe on NULL and after an abort. */
void comm_nccl_free(comm_nccl *c);

#endif

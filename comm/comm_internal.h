/* comm_internal.h: what the comm module's files share beyond comm.h: the
 * watchdog's entry and wait, so every collective, wherever it is started,
 * is timed by the same watchdog. Not part of the public API. */
#ifndef COMM_INTERNAL_H
#define COMM_INTERNAL_H

#include <mpi.h>
#include "comm.h"

/* Counts this rank into the next collective (the watchdog's arrival board);
 * call right before starting it. */
void comm_enter(void);

/* Waits for a collective started with status rc into *req, under the
 * watchdog: past the timeout it prints and aborts the job. */
comm_status comm_wait(int rc, MPI_Request *req, const char *op, size_t bytes,
                      comm_error_t err);

/* ---- ZeRO's parts (zero.c, bucket.c, units.c) ---------------------------- */

/* How floats [a, b) of the flat buffers fall on the ranks' shards: rank r
 * holds counts[r] of them, starting displs[r] floats after a (0 when it
 * holds none). Returns where this rank's part starts inside its shard. */
size_t comm_zero_split(const comm_zero *z, size_t a, size_t b, int *counts, int *displs);


/* Stages 0-1 (bucket.c): buckets of the whole gradient buffer reduced while
 * the last micro-step's backward runs: an allreduce at stage 0, a
 * reduce-scatter onto the shards at stage 1, both in place. Fed by
 * comm_bucketer_ready with the ranges the model reports final, adjacent and
 * descending. finish leaves the mean (not the sum) in the buffer: whole at
 * stage 0, this rank's shard [z->lo, z->hi) at stage 1. */
comm_status comm_bucketer_new(comm_bucketer **b, const comm_zero *z, float *grads,
                              size_t bucket_bytes, comm_error_t err);
void comm_bucketer_arm(comm_bucketer *b);
void comm_bucketer_ready(comm_bucketer *b, size_t lo, size_t hi);
comm_status comm_bucketer_finish(comm_bucketer *b, comm_error_t err);
void comm_bucketer_free(comm_bucketer *b);

/* Stages 2-3 (units.c): the model's unit hook. Gradients of a unit go to a
 * slot handed out on NEED_GRADS and are reduce-scattered on GRADS_READY;
 * this rank's part of the mean is added into z->gshard once it lands; at
 * stage 3 a unit's parameters are allgathered from the
 * shards into a slot on NEED_PARAMS (the next unit's gather starts at once,
 * as a prefetch) and the slot is given back on DONE_PARAMS. finish waits
 * for every reduce-scatter, so that z->gshard then holds the micro-step. */
comm_status comm_units_new(comm_units **u, comm_zero *z, gpt_model *m, comm_error_t err);
int comm_units_event(comm_units *u, gpt_model *m, gpt_unit_event ev, int unit, int backward,
                     gpt_error_t err);
comm_status comm_units_finish(comm_units *u, comm_error_t err);
/* Stage 3: waits for any gather still running and unbinds every slot, so
 * that no stale parameters outlive an optimizer step. */
comm_status comm_units_drop_params(comm_units *u, gpt_model *m, comm_error_t err);
size_t comm_units_slot_bytes(const comm_units *u);
void comm_units_free(comm_units *u);

#endif

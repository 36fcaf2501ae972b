/* comm.h: the public API of the comm module: the MPI control plane and the
 * collectives of data-parallel training on CPU tensors.
 *
 * MPI decides who this process is. A process started without mpirun is a
 * world of one (MPI singleton), so the debug run and `mpirun -np 1` take the
 * same path. Every collective here must be called by all ranks in the same
 * order; each is deterministic for a given world size (Open MPI picks the
 * algorithm from the size and rank count alone). NCCL, bucketed overlap and
 * ZeRO sharding land here later. */
#ifndef COMM_H
#define COMM_H

typedef enum { COMM_OK = 0, COMM_ERR = 1 } comm_status;

#define COMM_ERRLEN 256
typedef char comm_error_t[COMM_ERRLEN];

typedef struct {
    int rank, world;             /* in MPI_COMM_WORLD */
    int local_rank, local_world; /* on this node (MPI_COMM_TYPE_SHARED) */
} comm_ctx;

/* Initialises MPI (if not yet) and fills ctx. */
comm_status comm_init(comm_ctx *ctx, comm_error_t err);

/* Finalises MPI if comm_init initialised it. */
void comm_finalize(comm_ctx *ctx);

/* Replaces buf[0..n) on every rank by the mean over ranks (sum, then divide
 * by the world size). n may exceed INT_MAX; it is reduced in pieces. */
comm_status comm_allreduce_mean(float *buf, size_t n, comm_error_t err);

/* Mean over ranks of one double (losses). */
double comm_mean_double(double v);

/* Largest value over ranks: how ranks agree on a status, so that a failure
 * on one rank stops all of them instead of leaving the rest in a collective. */
int comm_max_int(int v);

/* Rank that holds the largest value (the lowest such rank). */
int comm_argmax_int(int v);

/* 1 when every rank passed the same bytes (same length and content): rank
 * 0's are broadcast and compared, so a rank started with other flags is
 * caught before training. Keep bytes small (a settings string). */
int comm_all_equal(const void *buf, size_t bytes);

#endif

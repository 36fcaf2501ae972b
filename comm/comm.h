/* comm.h: the public API of the comm module: the MPI control plane.
 *
 * MPI decides who this process is. A process started without mpirun is a
 * world of one (MPI singleton), so the debug run and `mpirun -np 1` take the
 * same path. Gradient collectives and ZeRO sharding land here later. */
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

#endif

/* comm.c: MPI start-up and shutdown, and this process's place in the world.
 * The local rank comes from a shared-memory split of the world so that it is
 * right under any launcher (mpirun, srun), not read from launcher-specific
 * environment variables. */
#include <mpi.h>
#include <stdio.h>
#include "comm.h"

static int comm_we_initialised;

comm_status comm_init(comm_ctx *ctx, comm_error_t err) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
            snprintf(err, COMM_ERRLEN, "MPI_Init failed");
            return COMM_ERR;
        }
        comm_we_initialised = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &ctx->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ctx->world);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx->rank,
                        MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &ctx->local_rank);
    MPI_Comm_size(node, &ctx->local_world);
    MPI_Comm_free(&node);
    return COMM_OK;
}

void comm_finalize(comm_ctx *ctx) {
    (void)ctx;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_we_initialised && !finalized) MPI_Finalize();
}
